//! Unauthenticated AES block-cipher modes for the KMIP profiles that ask for them (OASIS
//! CS-BC): ECB, CBC and CTR (NIST SP 800-38A), with the RustCrypto `ecb`, `cbc` and `ctr`
//! crates over `aes`.
//!
//! None of these protects integrity: the KMS's own default stays AES-GCM. Each mode takes only
//! the combinations that are well defined, and refuses the rest with
//! [`CryptoError::Unsupported`] (or a length error) instead of guessing:
//! - ECB and CBC take PKCS#5 (PKCS#7 over 16-byte blocks) padding or none; without padding
//!   the data must be a whole number of blocks;
//! - ECB takes no IV, CBC and CTR a 16-byte one (CTR: the initial counter block, incremented
//!   as a 128-bit big-endian integer);
//! - CTR takes no padding.

use alloc::vec::Vec;
use cipher::block_padding::{NoPadding, Pkcs7};
use cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyInit, KeyIvInit, StreamCipher};
use zeroize::Zeroizing;

use super::CryptoError;

/// AES block size in bytes.
pub const BLOCK: usize = 16;

/// A block-cipher mode with its padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Electronic codebook; `true` = PKCS#5 padding.
    Ecb(bool),
    /// Cipher block chaining; `true` = PKCS#5 padding.
    Cbc(bool),
    /// Counter mode (no padding).
    Ctr,
}

impl Mode {
    /// Length of the IV the mode takes (0 for ECB).
    pub fn iv_len(self) -> usize {
        match self {
            Mode::Ecb(_) => 0,
            Mode::Cbc(_) | Mode::Ctr => BLOCK,
        }
    }
}

macro_rules! by_key {
    ($key:expr, $a:ident => $body:expr) => {
        match $key.len() {
            16 => {
                type $a = aes::Aes128;
                $body
            }
            24 => {
                type $a = aes::Aes192;
                $body
            }
            32 => {
                type $a = aes::Aes256;
                $body
            }
            _ => Err(CryptoError::InvalidKey),
        }
    };
}

fn check(mode: Mode, iv: &[u8], len: usize, decrypt: bool) -> Result<(), CryptoError> {
    if iv.len() != mode.iv_len() {
        return Err(CryptoError::InvalidNonce);
    }
    let whole = len.is_multiple_of(BLOCK);
    match mode {
        Mode::Ecb(false) | Mode::Cbc(false) if !whole => Err(CryptoError::InvalidLength),
        Mode::Ecb(true) | Mode::Cbc(true) if decrypt && (!whole || len == 0) => {
            Err(CryptoError::InvalidLength)
        }
        _ => Ok(()),
    }
}

/// Encrypt `data` with the AES key `key` (16, 24 or 32 bytes).
pub fn encrypt(mode: Mode, key: &[u8], iv: &[u8], data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    check(mode, iv, data.len(), false)?;
    by_key!(key, A => {
        let bad = |_| CryptoError::InvalidKey;
        Ok(match mode {
            Mode::Ecb(pad) => {
                let c = ecb::Encryptor::<A>::new_from_slice(key).map_err(bad)?;
                if pad {
                    c.encrypt_padded_vec::<Pkcs7>(data)
                } else {
                    c.encrypt_padded_vec::<NoPadding>(data)
                }
            }
            Mode::Cbc(pad) => {
                let c = cbc::Encryptor::<A>::new_from_slices(key, iv).map_err(bad)?;
                if pad {
                    c.encrypt_padded_vec::<Pkcs7>(data)
                } else {
                    c.encrypt_padded_vec::<NoPadding>(data)
                }
            }
            Mode::Ctr => {
                let mut c = ctr::Ctr128BE::<A>::new_from_slices(key, iv).map_err(bad)?;
                let mut out = data.to_vec();
                c.try_apply_keystream(&mut out)
                    .map_err(|_| CryptoError::InvalidLength)?;
                out
            }
        })
    })
}

/// Decrypt `data`. A wrong PKCS#5 padding is [`CryptoError::AuthenticationFailed`]; note that
/// CBC with padding is a padding oracle for whoever sees the difference, which is why the
/// service lets only holders of the decrypt right reach it and the default stays AES-GCM.
pub fn decrypt(
    mode: Mode,
    key: &[u8],
    iv: &[u8],
    data: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    check(mode, iv, data.len(), true)?;
    by_key!(key, A => {
        let bad = |_| CryptoError::InvalidKey;
        let unpad = |_| CryptoError::AuthenticationFailed;
        Ok(Zeroizing::new(match mode {
            Mode::Ecb(pad) => {
                let c = ecb::Decryptor::<A>::new_from_slice(key).map_err(bad)?;
                if pad {
                    c.decrypt_padded_vec::<Pkcs7>(data).map_err(unpad)?
                } else {
                    c.decrypt_padded_vec::<NoPadding>(data).map_err(unpad)?
                }
            }
            Mode::Cbc(pad) => {
                let c = cbc::Decryptor::<A>::new_from_slices(key, iv).map_err(bad)?;
                if pad {
                    c.decrypt_padded_vec::<Pkcs7>(data).map_err(unpad)?
                } else {
                    c.decrypt_padded_vec::<NoPadding>(data).map_err(unpad)?
                }
            }
            Mode::Ctr => {
                let mut c = ctr::Ctr128BE::<A>::new_from_slices(key, iv).map_err(bad)?;
                let mut out = data.to_vec();
                c.try_apply_keystream(&mut out)
                    .map_err(|_| CryptoError::InvalidLength)?;
                out
            }
        }))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        crate::kmip::json::unhex(s).expect("test vector is hex")
    }

    /// NIST SP 800-38A Appendix F: F.1 (ECB), F.2 (CBC), F.5 (CTR), for AES-128/192/256 (the
    /// four-block plaintext, keys, IVs and ciphertexts as published; see the vector file).
    #[test]
    fn sp800_38a_vectors() {
        let v: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/data/sp800-38a-modes.json")).unwrap();
        let pt = unhex(v["plaintext"].as_str().unwrap());
        let mut n = 0;
        for t in v["tests"].as_array().unwrap() {
            let mode = match t["mode"].as_str().unwrap() {
                "ECB" => Mode::Ecb(false),
                "CBC" => Mode::Cbc(false),
                _ => Mode::Ctr,
            };
            let key = unhex(t["key"].as_str().unwrap());
            let iv = t["iv"].as_str().map(unhex).unwrap_or_default();
            let ct = unhex(t["ciphertext"].as_str().unwrap());
            assert_eq!(encrypt(mode, &key, &iv, &pt).unwrap(), ct, "{}", t["name"]);
            assert_eq!(&decrypt(mode, &key, &iv, &ct).unwrap()[..], &pt[..]);
            n += 1;
        }
        assert_eq!(n, 9);
    }

    #[test]
    fn padding_and_refusals() {
        let key = [7u8; 16];
        let iv = [9u8; 16];
        for mode in [Mode::Ecb(true), Mode::Cbc(true)] {
            let iv = &iv[..mode.iv_len()];
            for len in [0, 1, 15, 16, 17] {
                let m = alloc::vec![0x42u8; len];
                let ct = encrypt(mode, &key, iv, &m).unwrap();
                assert_eq!(ct.len(), (len / 16 + 1) * 16);
                assert_eq!(&decrypt(mode, &key, iv, &ct).unwrap()[..], &m[..]);
            }
            // A ciphertext whose last block does not unpad.
            let mut ct = encrypt(mode, &key, iv, b"0123456789abcdef").unwrap();
            let last = ct.len() - 1;
            ct[last] ^= 0x55;
            assert_eq!(
                decrypt(mode, &key, iv, &ct).err(),
                Some(CryptoError::AuthenticationFailed)
            );
            assert_eq!(
                decrypt(mode, &key, iv, &[0; 15]).err(),
                Some(CryptoError::InvalidLength)
            );
        }
        assert_eq!(
            encrypt(Mode::Cbc(false), &key, &iv, &[0; 17]).err(),
            Some(CryptoError::InvalidLength)
        );
        assert_eq!(
            encrypt(Mode::Cbc(true), &key, &iv[..12], b"x").err(),
            Some(CryptoError::InvalidNonce)
        );
        assert_eq!(
            encrypt(Mode::Ecb(true), &key, &iv, b"x").err(),
            Some(CryptoError::InvalidNonce)
        );
        assert_eq!(
            encrypt(Mode::Ctr, &[0; 20], &iv, b"x").err(),
            Some(CryptoError::InvalidKey)
        );
        // CTR: any length, no expansion.
        let ct = encrypt(Mode::Ctr, &key, &iv, b"abc").unwrap();
        assert_eq!(ct.len(), 3);
        assert_eq!(&decrypt(Mode::Ctr, &key, &iv, &ct).unwrap()[..], b"abc");
    }
}
