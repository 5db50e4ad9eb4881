//! Hashes and MACs: SHA-1 / SHA-2 digests (FIPS 180-4, the KMIP `Hash` operation and the
//! hashes RSA padding names), HMAC (RFC 2104 / FIPS 198-1) over them and CMAC-AES (NIST
//! SP 800-38B, RFC 4493), from the RustCrypto `sha1`, `sha2`, `hmac` and `cmac` crates.
//!
//! SHA-1 is here for RSA-OAEP with SHA-1 (still the most common OAEP parameter set) and for
//! interoperability in `Hash`/HMAC; nothing in the KMS relies on its collision resistance.

use alloc::vec::Vec;
use hmac::{KeyInit, Mac};
use sha2::Digest;

use super::CryptoError;

/// A hash function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlg {
    /// SHA-1 (160 bits). Legacy: OAEP/HMAC interoperability only.
    Sha1,
    /// SHA-224.
    Sha224,
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl HashAlg {
    /// Output length in bytes.
    pub fn output_len(self) -> usize {
        match self {
            HashAlg::Sha1 => 20,
            HashAlg::Sha224 => 28,
            HashAlg::Sha256 => 32,
            HashAlg::Sha384 => 48,
            HashAlg::Sha512 => 64,
        }
    }
}

/// The digest of `data`.
pub fn digest(alg: HashAlg, data: &[u8]) -> Vec<u8> {
    match alg {
        HashAlg::Sha1 => sha1::Sha1::digest(data).to_vec(),
        HashAlg::Sha224 => sha2::Sha224::digest(data).to_vec(),
        HashAlg::Sha256 => sha2::Sha256::digest(data).to_vec(),
        HashAlg::Sha384 => sha2::Sha384::digest(data).to_vec(),
        HashAlg::Sha512 => sha2::Sha512::digest(data).to_vec(),
    }
}

/// Shortest HMAC key accepted by [`hmac()`]: 112 bits, the smallest security strength NIST
/// SP 800-131A still allows for HMAC keys (SP 800-107 r1 §5.3.4).
pub const MIN_HMAC_KEY_LEN: usize = 14;

fn hmac_with<M: Mac + KeyInit>(key: &[u8], data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let mut m = <M as KeyInit>::new_from_slice(key).map_err(|_| CryptoError::InvalidKey)?;
    m.update(data);
    Ok(m.finalize().into_bytes().to_vec())
}

fn hmac_any(alg: HashAlg, key: &[u8], data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    match alg {
        HashAlg::Sha1 => hmac_with::<hmac::Hmac<sha1::Sha1>>(key, data),
        HashAlg::Sha224 => hmac_with::<hmac::Hmac<sha2::Sha224>>(key, data),
        HashAlg::Sha256 => hmac_with::<hmac::Hmac<sha2::Sha256>>(key, data),
        HashAlg::Sha384 => hmac_with::<hmac::Hmac<sha2::Sha384>>(key, data),
        HashAlg::Sha512 => hmac_with::<hmac::Hmac<sha2::Sha512>>(key, data),
    }
}

/// HMAC of `data` under `key` (full-length tag). Keys shorter than [`MIN_HMAC_KEY_LEN`] are
/// refused with [`CryptoError::InvalidKey`].
pub fn hmac(alg: HashAlg, key: &[u8], data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if key.len() < MIN_HMAC_KEY_LEN {
        return Err(CryptoError::InvalidKey);
    }
    hmac_any(alg, key, data)
}

/// Check `tag` against the HMAC of `data` in constant time. A tag may be truncated (RFC 2104
/// §5) to no less than half the output and 10 bytes; shorter or longer tags are
/// [`CryptoError::InvalidTag`].
pub fn hmac_verify(alg: HashAlg, key: &[u8], data: &[u8], tag: &[u8]) -> Result<bool, CryptoError> {
    let full = alg.output_len();
    if tag.len() > full || tag.len() < (full / 2).max(10) {
        return Err(CryptoError::InvalidTag);
    }
    let expected = hmac(alg, key, data)?;
    Ok(super::ct_eq(expected.get(..tag.len()).unwrap_or(&[]), tag))
}

/// Shortest CMAC tag [`cmac_aes_verify`] accepts: 64 bits, the floor NIST SP 800-38B
/// Appendix A sets for truncated tags.
pub const MIN_CMAC_TAG_LEN: usize = 8;

fn cmac_with<C>(key: &[u8], data: &[u8]) -> Result<[u8; 16], CryptoError>
where
    cmac::Cmac<C>: KeyInit + Mac,
    C: cmac::block_api::CmacCipher,
{
    let mut m =
        <cmac::Cmac<C> as KeyInit>::new_from_slice(key).map_err(|_| CryptoError::InvalidKey)?;
    m.update(data);
    let tag = m.finalize().into_bytes();
    let mut out = [0u8; 16];
    if tag.len() != out.len() {
        return Err(CryptoError::Unsupported);
    }
    out.copy_from_slice(&tag);
    Ok(out)
}

/// CMAC-AES (NIST SP 800-38B) of `data` under a 128-, 192- or 256-bit AES `key`: the full
/// 16-byte tag. Other key lengths are [`CryptoError::InvalidKey`].
pub fn cmac_aes(key: &[u8], data: &[u8]) -> Result<[u8; 16], CryptoError> {
    match key.len() {
        16 => cmac_with::<aes::Aes128>(key, data),
        24 => cmac_with::<aes::Aes192>(key, data),
        32 => cmac_with::<aes::Aes256>(key, data),
        _ => Err(CryptoError::InvalidKey),
    }
}

/// Check `tag` against the CMAC-AES of `data` in constant time. A tag may be truncated to its
/// leading bytes, no shorter than [`MIN_CMAC_TAG_LEN`] (SP 800-38B §5.5 / Appendix A); other
/// lengths are [`CryptoError::InvalidTag`].
pub fn cmac_aes_verify(key: &[u8], data: &[u8], tag: &[u8]) -> Result<bool, CryptoError> {
    if !(MIN_CMAC_TAG_LEN..=16).contains(&tag.len()) {
        return Err(CryptoError::InvalidTag);
    }
    let expected = cmac_aes(key, data)?;
    Ok(super::ct_eq(expected.get(..tag.len()).unwrap_or(&[]), tag))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        crate::kmip::json::unhex(s).expect("test vector is hex")
    }

    #[test]
    fn rfc4231_vectors() {
        let v: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/data/rfc4231-hmac.json")).unwrap();
        let tests = v["tests"].as_array().unwrap();
        assert_eq!(tests.len(), 6);
        for t in tests {
            let key = unhex(t["key"].as_str().unwrap());
            let data = unhex(t["data"].as_str().unwrap());
            for (alg, name) in [
                (HashAlg::Sha224, "sha224"),
                (HashAlg::Sha256, "sha256"),
                (HashAlg::Sha384, "sha384"),
                (HashAlg::Sha512, "sha512"),
            ] {
                let want = unhex(t[name].as_str().unwrap());
                // RFC 4231 case 2 uses a 4-byte key ("Jefe"): below our floor, checked raw.
                let got = hmac_any(alg, &key, &data).unwrap();
                assert_eq!(got, want, "case {} {name}", t["case"]);
                if key.len() >= MIN_HMAC_KEY_LEN {
                    assert_eq!(hmac_verify(alg, &key, &data, &want), Ok(true));
                    let mut bad = want.clone();
                    bad[0] ^= 1;
                    assert_eq!(hmac_verify(alg, &key, &data, &bad), Ok(false));
                    // RFC 4231 case 5 style truncation (to half the output) still verifies.
                    let half = &want[..want.len() / 2];
                    assert_eq!(hmac_verify(alg, &key, &data, half), Ok(true));
                } else {
                    assert_eq!(hmac(alg, &key, &data), Err(CryptoError::InvalidKey));
                }
            }
        }
    }

    #[test]
    fn oasis_cs_ac_m_4_mac() {
        // OASIS KMIP 2.1 test case CS-AC-M-4-21: HMAC-SHA-256 under a 16-byte key.
        let key = unhex("0123456789abcdef0123456789abcdef");
        let data = unhex("01020304050607080910111213141516");
        assert_eq!(
            hmac(HashAlg::Sha256, &key, &data).unwrap(),
            unhex("c911e78196d64c30f631bb079ea37b97a95936d4da764d6a171df030c895ecf9")
        );
        assert_eq!(
            hmac_verify(HashAlg::Sha256, &key, &data, &[0; 4]),
            Err(CryptoError::InvalidTag)
        );
    }

    /// RFC 4493 §4 (AES-128) and NIST SP 800-38B Appendix D.2/D.3 (AES-192/256): every key
    /// on the empty message and on 16, 40 and 64 bytes of the SP 800-38A plaintext.
    #[test]
    fn sp800_38b_cmac_vectors() {
        let msg = unhex(
            "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51\
             30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710",
        );
        let cases: [(&str, [&str; 4]); 3] = [
            (
                "2b7e151628aed2a6abf7158809cf4f3c",
                [
                    "bb1d6929e95937287fa37d129b756746",
                    "070a16b46b4d4144f79bdd9dd04a287c",
                    "dfa66747de9ae63030ca32611497c827",
                    "51f0bebf7e3b9d92fc49741779363cfe",
                ],
            ),
            (
                "8e73b0f7da0e6452c810f32b809079e562f8ead2522c6b7b",
                [
                    "d17ddf46adaacde531cac483de7a9367",
                    "9e99a7bf31e710900662f65e617c5184",
                    "8a1de5be2eb31aad089a82e6ee908b0e",
                    "a1d5df0eed790f794d77589659f39a11",
                ],
            ),
            (
                "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4",
                [
                    "028962f61b7bf89efc6b551f4667d983",
                    "28a7023f452e8f82bd4bf28d8c37c35c",
                    "aaf3d8f1de5640c232f5b169b9c911e6",
                    "e1992190549f6ed5696a2c056c315410",
                ],
            ),
        ];
        for (key, tags) in cases {
            let key = unhex(key);
            for (len, want) in [0usize, 16, 40, 64].into_iter().zip(tags) {
                let want = unhex(want);
                assert_eq!(cmac_aes(&key, &msg[..len]).unwrap().to_vec(), want);
                assert_eq!(cmac_aes_verify(&key, &msg[..len], &want), Ok(true));
                assert_eq!(cmac_aes_verify(&key, &msg[..len], &want[..8]), Ok(true));
                let mut bad = want.clone();
                bad[15] ^= 0x80;
                assert_eq!(cmac_aes_verify(&key, &msg[..len], &bad), Ok(false));
            }
        }
        let k = unhex("2b7e151628aed2a6abf7158809cf4f3c");
        assert_eq!(cmac_aes(&k[..15], b""), Err(CryptoError::InvalidKey));
        assert_eq!(
            cmac_aes_verify(&k, b"", &[0; 7]),
            Err(CryptoError::InvalidTag)
        );
        assert_eq!(
            cmac_aes_verify(&k, b"", &[0; 17]),
            Err(CryptoError::InvalidTag)
        );
    }

    #[test]
    fn fips_180_digests() {
        // FIPS 180-4 examples (NIST CSRC "Examples with Intermediate Values"): "abc".
        assert_eq!(
            digest(HashAlg::Sha1, b"abc"),
            unhex("a9993e364706816aba3e25717850c26c9cd0d89d")
        );
        assert_eq!(
            digest(HashAlg::Sha256, b"abc"),
            unhex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
        assert_eq!(
            digest(HashAlg::Sha384, b"abc"),
            unhex(
                "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed\
                 8086072ba1e7cc2358baeca134c825a7"
            )
        );
        for a in [
            HashAlg::Sha1,
            HashAlg::Sha224,
            HashAlg::Sha256,
            HashAlg::Sha384,
            HashAlg::Sha512,
        ] {
            assert_eq!(digest(a, b"").len(), a.output_len());
        }
    }
}
