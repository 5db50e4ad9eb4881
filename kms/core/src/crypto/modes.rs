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
//!
//! Plus the plain ChaCha20 stream cipher (no Poly1305), with the RustCrypto `chacha20` crate,
//! for the OASIS CS-BC ChaCha20 cases. Its IV says which variant:
//! - 8 bytes: the original ChaCha20 of D. J. Bernstein (64-bit nonce, 64-bit block counter from
//!   0), as in draft-agl-tls-chacha20poly1305 §7 and the OASIS cases;
//! - 16 bytes: RFC 8439 §2.4 ChaCha20, the IV being the initial 32-bit block counter
//!   (little-endian) followed by the 96-bit nonce (OpenSSL's `chacha20` layout).

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
    /// The ChaCha20 stream cipher with a 256-bit key; the IV (8 or 16 bytes) picks the variant.
    ChaCha20,
}

/// IV lengths of [`Mode::ChaCha20`]: the original 64-bit nonce, RFC 8439 counter ‖ nonce.
pub const CHACHA20_IV_LENS: [usize; 2] = [8, 16];

impl Mode {
    /// Length of the IV the mode takes, or draws when the caller gives none (0 for ECB).
    pub fn iv_len(self) -> usize {
        match self {
            Mode::Ecb(_) => 0,
            Mode::Cbc(_) | Mode::Ctr | Mode::ChaCha20 => BLOCK,
        }
    }

    /// Whether the mode takes an IV of `len` bytes.
    pub fn iv_len_ok(self, len: usize) -> bool {
        match self {
            Mode::ChaCha20 => CHACHA20_IV_LENS.contains(&len),
            m => len == m.iv_len(),
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
    if !mode.iv_len_ok(iv.len()) {
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

/// ChaCha20 keystream XOR (encryption and decryption are the same).
fn chacha20(key: &[u8], iv: &[u8], data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    use cipher::StreamCipherSeek;
    let bad = |_| CryptoError::InvalidKey;
    let mut out = data.to_vec();
    let r = match iv.len() {
        8 => chacha20::ChaCha20Legacy::new_from_slices(key, iv)
            .map_err(bad)?
            .try_apply_keystream(&mut out),
        16 => {
            let (counter, nonce) = iv.split_at(4);
            let mut c = chacha20::ChaCha20::new_from_slices(key, nonce).map_err(bad)?;
            let mut block = [0u8; 4];
            block.copy_from_slice(counter);
            c.try_seek(u64::from(u32::from_le_bytes(block)) * 64)
                .map_err(|_| CryptoError::InvalidLength)?;
            c.try_apply_keystream(&mut out)
        }
        _ => return Err(CryptoError::InvalidNonce),
    };
    r.map_err(|_| CryptoError::InvalidLength)?;
    Ok(out)
}

/// Encrypt `data` with the AES key `key` (16, 24 or 32 bytes), or the ChaCha20 key (32 bytes).
pub fn encrypt(mode: Mode, key: &[u8], iv: &[u8], data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    check(mode, iv, data.len(), false)?;
    if mode == Mode::ChaCha20 {
        return chacha20(key, iv, data);
    }
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
            Mode::ChaCha20 => return Err(CryptoError::Unsupported),
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
    if mode == Mode::ChaCha20 {
        return chacha20(key, iv, data).map(Zeroizing::new);
    }
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
            Mode::ChaCha20 => return Err(CryptoError::Unsupported),
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

    /// ChaCha20 without Poly1305. 8-byte IVs: the original construction's test vectors of
    /// draft-agl-tls-chacha20poly1305-04 §7 (TC1 all-zero key and nonce, TC2 key ..01, TC4
    /// nonce ..01; the ones the OASIS cases CS-BC-M-CHACHA20-1/2/3 use). 16-byte IV: RFC 8439
    /// §2.4.2 (initial counter 1 ‖ nonce 000000000000004a00000000, the "sunscreen" text).
    #[test]
    fn chacha20_vectors() {
        let zero = [0u8; 32];
        let mut key2 = [0u8; 32];
        key2[31] = 1;
        for (key, iv, len, ct) in [
            (
                &zero,
                "0000000000000000",
                64,
                "76b8e0ada0f13d90405d6ae55386bd28bdd219b8a08ded1aa836efcc8b770dc7\
                 da41597c5157488d7724e03fb8d84a376a43b8f41518a11cc387b669b2ee6586",
            ),
            (
                &key2,
                "0000000000000000",
                64,
                "4540f05a9f1fb296d7736e7b208e3c96eb4fe1834688d2604f450952ed432d41\
                 bbe2a0b6ea7566d2a5d1e7e20d42af2c53d792b1c43fea817e9ad275ae546963",
            ),
            (
                &zero,
                "0000000000000001",
                60,
                "de9cba7bf3d69ef5e786dc63973f653a0b49e015adbff7134fcb7df137821031\
                 e85a050278a7084527214f73efc7fa5b5277062eb7a0433e445f41e3",
            ),
        ] {
            let pt = alloc::vec![0u8; len];
            let c = encrypt(Mode::ChaCha20, key, &unhex(iv), &pt).unwrap();
            assert_eq!(c, unhex(ct));
            assert_eq!(
                &decrypt(Mode::ChaCha20, key, &unhex(iv), &c).unwrap()[..],
                &pt[..]
            );
        }
        let key: Vec<u8> = (0u8..32).collect();
        let iv = unhex("01000000000000000000004a00000000");
        let pt = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
        let ct = unhex(concat!(
            "6e2e359a2568f98041ba0728dd0d6981e97e7aec1d4360c20a27afccfd9fae0b",
            "f91b65c5524733ab8f593dabcd62b3571639d624e65152ab8f530c359f0861d8",
            "07ca0dbf500d6a6156a38e088a22b65e52bc514d16ccf806818ce91ab7793736",
            "5af90bbf74a35be6b40b8eedf2785e42874d",
        ));
        assert_eq!(encrypt(Mode::ChaCha20, &key, &iv, pt).unwrap(), ct);
        assert_eq!(
            &decrypt(Mode::ChaCha20, &key, &iv, &ct).unwrap()[..],
            &pt[..]
        );
        for n in [0, 12, 24] {
            assert_eq!(
                encrypt(Mode::ChaCha20, &key, &alloc::vec![0; n], b"x").err(),
                Some(CryptoError::InvalidNonce)
            );
        }
        assert_eq!(
            encrypt(Mode::ChaCha20, &key[..16], &[0; 8], b"x").err(),
            Some(CryptoError::InvalidKey)
        );
    }
}
