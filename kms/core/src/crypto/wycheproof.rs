//! Project Wycheproof vectors (C2SP/wycheproof `testvectors_v1`, Apache-2.0; vendored under
//! `kms/core/tests/data/wycheproof/` with its LICENSE, see the README there) run against the
//! crypto facade: every `valid` case must give the published result, every `invalid` one must
//! be refused, and `acceptable` ones may go either way (Wycheproof's own rule).

use alloc::string::ToString;
use alloc::vec::Vec;

use super::CryptoError;
use super::aead::{self, AeadAlg};
use super::mac::{self, HashAlg};
use super::modes::{self, Mode};
use super::rsa::{self, EncPadding, SigPadding};
use super::testing::TestRng;

fn unhex(s: &str) -> Vec<u8> {
    crate::kmip::json::unhex(s).expect("test vector is hex")
}

/// One Wycheproof case: hex fields by name, and its verdict.
struct Case<'a> {
    t: &'a serde_json::Value,
    id: u64,
    result: &'a str,
}

impl Case<'_> {
    fn hex(&self, k: &str) -> Vec<u8> {
        unhex(
            self.t[k]
                .as_str()
                .unwrap_or_else(|| panic!("tc {}: no {k}", self.id)),
        )
    }
    fn valid(&self) -> bool {
        self.result == "valid"
    }
    fn invalid(&self) -> bool {
        self.result == "invalid"
    }
}

/// Parse a vendored file and call `f(group, case)` for every case; returns the case count,
/// checked against the file's `numberOfTests` so that no group is skipped silently.
fn each(json: &str, mut f: impl FnMut(&serde_json::Value, &Case<'_>)) -> usize {
    let v: serde_json::Value = serde_json::from_str(json).expect("vendored JSON");
    let mut n = 0;
    for g in v["testGroups"].as_array().expect("testGroups") {
        for t in g["tests"].as_array().expect("tests") {
            let c = Case {
                t,
                id: t["tcId"].as_u64().expect("tcId"),
                result: t["result"].as_str().expect("result"),
            };
            f(g, &c);
            n += 1;
        }
    }
    assert_eq!(Some(n as u64), v["numberOfTests"].as_u64());
    n
}

fn hmac_file(json: &str, alg: HashAlg) {
    let mut checked = 0;
    each(json, |_, c| {
        let (key, msg, tag) = (c.hex("key"), c.hex("msg"), c.hex("tag"));
        if key.len() < mac::MIN_HMAC_KEY_LEN {
            // Below the KMS's 112-bit floor: refused whatever the case says.
            assert_eq!(
                mac::hmac(alg, &key, &msg),
                Err(CryptoError::InvalidKey),
                "tc {}",
                c.id
            );
            return;
        }
        let got = mac::hmac_verify(alg, &key, &msg, &tag);
        if c.valid() {
            let full = mac::hmac(alg, &key, &msg).unwrap();
            assert_eq!(&full[..tag.len()], &tag[..], "tc {}", c.id);
            // Tags truncated below max(half, 80 bits) are refused by policy (RFC 2104 §5).
            if tag.len() >= (alg.output_len() / 2).max(10) {
                assert_eq!(got, Ok(true), "tc {}", c.id);
                checked += 1;
            } else {
                assert_eq!(got, Err(CryptoError::InvalidTag), "tc {}", c.id);
            }
        } else if c.invalid() {
            assert_ne!(got, Ok(true), "tc {}", c.id);
            checked += 1;
        }
    });
    assert!(checked > 50, "only {checked} HMAC cases checked");
}

#[test]
fn wycheproof_hmac_sha256() {
    hmac_file(
        include_str!("../../tests/data/wycheproof/hmac_sha256_test.json"),
        HashAlg::Sha256,
    );
}

#[test]
fn wycheproof_hmac_sha512() {
    hmac_file(
        include_str!("../../tests/data/wycheproof/hmac_sha512_test.json"),
        HashAlg::Sha512,
    );
}

#[test]
fn wycheproof_aes_cmac() {
    let mut checked = 0;
    each(
        include_str!("../../tests/data/wycheproof/aes_cmac_test.json"),
        |_, c| {
            let (key, msg, tag) = (c.hex("key"), c.hex("msg"), c.hex("tag"));
            let got = mac::cmac_aes_verify(&key, &msg, &tag);
            if !matches!(key.len(), 16 | 24 | 32) {
                // Wycheproof's invalid key sizes (e.g. 64 or 320 bits).
                assert!(c.invalid(), "tc {}", c.id);
                assert_eq!(mac::cmac_aes(&key, &msg), Err(CryptoError::InvalidKey));
                assert_ne!(got, Ok(true), "tc {}", c.id);
                return;
            }
            if c.valid() {
                let full = mac::cmac_aes(&key, &msg).unwrap();
                assert_eq!(&full[..tag.len()], &tag[..], "tc {}", c.id);
                if tag.len() >= mac::MIN_CMAC_TAG_LEN {
                    assert_eq!(got, Ok(true), "tc {}", c.id);
                } else {
                    assert_eq!(got, Err(CryptoError::InvalidTag), "tc {}", c.id);
                }
            } else {
                assert_ne!(got, Ok(true), "tc {}", c.id);
            }
            checked += 1;
        },
    );
    assert!(checked > 200);
}

#[test]
fn wycheproof_aes_cbc_pkcs5() {
    each(
        include_str!("../../tests/data/wycheproof/aes_cbc_pkcs5_test.json"),
        |_, c| {
            let (key, iv, msg, ct) = (c.hex("key"), c.hex("iv"), c.hex("msg"), c.hex("ct"));
            let mode = Mode::Cbc(true);
            let got = modes::decrypt(mode, &key, &iv, &ct);
            if c.valid() {
                assert_eq!(modes::encrypt(mode, &key, &iv, &msg), Ok(ct), "tc {}", c.id);
                assert_eq!(got.map(|p| p.to_vec()), Ok(msg), "tc {}", c.id);
            } else {
                // Bad padding or length: refused, never a plaintext.
                assert!(
                    matches!(
                        got,
                        Err(CryptoError::AuthenticationFailed | CryptoError::InvalidLength)
                    ),
                    "tc {}: {:?}",
                    c.id,
                    got.map(|p| p.len())
                );
            }
        },
    );
}

#[test]
fn wycheproof_aes_gcm() {
    let mut checked = 0;
    each(
        include_str!("../../tests/data/wycheproof/aes_gcm_test.json"),
        |_, c| {
            let (key, iv, aad) = (c.hex("key"), c.hex("iv"), c.hex("aad"));
            let (msg, ct, tag) = (c.hex("msg"), c.hex("ct"), c.hex("tag"));
            let got = aead::decrypt(AeadAlg::AesGcm, &key, &iv, &aad, &ct, &tag);
            if !AeadAlg::AesGcm.nonce_len_ok(iv.len()) {
                // IVs of 8, 12, 16, 60 and 128 bytes are offered (the OASIS GCM cases'
                // lengths; J0 by GHASH for all but 12, SP 800-38D §7.1); others are refused.
                assert_eq!(got, Err(CryptoError::InvalidNonce), "tc {}", c.id);
                return;
            }
            if c.valid() {
                let (ct2, tag2) =
                    aead::encrypt(AeadAlg::AesGcm, &key, &iv, &aad, &msg, tag.len()).unwrap();
                assert_eq!((ct2, tag2.to_vec()), (ct, tag), "tc {}", c.id);
                assert_eq!(got, Ok(msg), "tc {}", c.id);
            } else {
                assert!(got.is_err(), "tc {}", c.id);
            }
            checked += 1;
        },
    );
    assert!(checked > 50);
}

fn oaep_file(json: &str) {
    let mut rng = TestRng(0x0ae9);
    let h = |n: &serde_json::Value| match n.as_str().unwrap() {
        "SHA-1" => HashAlg::Sha1,
        "SHA-224" => HashAlg::Sha224,
        "SHA-256" => HashAlg::Sha256,
        "SHA-384" => HashAlg::Sha384,
        "SHA-512" => HashAlg::Sha512,
        other => panic!("hash {other}"),
    };
    each(json, |g, c| {
        let sk = unhex(g["privateKeyPkcs8"].as_str().unwrap());
        let label = c.hex("label");
        let pad = EncPadding::Oaep {
            hash: h(&g["sha"]),
            mgf: h(&g["mgfSha"]),
            label: if label.is_empty() { None } else { Some(label) },
        };
        let got = rsa::decrypt(&sk, &pad, &c.hex("ct"), &mut rng);
        if c.valid() {
            assert_eq!(got.map(|p| p.to_vec()), Ok(c.hex("msg")), "tc {}", c.id);
        } else if c.invalid() {
            // One error for every OAEP failure (no Manger-style distinction).
            assert_eq!(
                got.map(|p| p.to_vec()),
                Err(CryptoError::AuthenticationFailed),
                "tc {}",
                c.id
            );
        }
    });
}

#[test]
fn wycheproof_rsa_oaep_2048_sha1() {
    oaep_file(include_str!(
        "../../tests/data/wycheproof/rsa_oaep_2048_sha1_mgf1sha1_test.json"
    ));
}

#[test]
fn wycheproof_rsa_oaep_2048_sha256() {
    oaep_file(include_str!(
        "../../tests/data/wycheproof/rsa_oaep_2048_sha256_mgf1sha256_test.json"
    ));
}

/// PKCS#1 v1.5 decryption with implicit rejection: a bad padding yields some other message
/// (never an error that would make a Bleichenbacher oracle); a ciphertext that is not an
/// integer below the modulus of the key's length is refused.
#[test]
fn wycheproof_rsa_pkcs1_2048_decrypt() {
    let mut rng = TestRng(0x9c51);
    let mut rejected_implicitly = 0;
    each(
        include_str!("../../tests/data/wycheproof/rsa_pkcs1_2048_test.json"),
        |g, c| {
            let sk = unhex(g["privateKeyPkcs8"].as_str().unwrap());
            let got = rsa::decrypt(&sk, &EncPadding::Pkcs1v15, &c.hex("ct"), &mut rng);
            let msg = c.hex("msg");
            if c.valid() {
                assert_eq!(got.map(|p| p.to_vec()), Ok(msg), "tc {}", c.id);
                return;
            }
            let flags = c.t["flags"].to_string();
            match got {
                Ok(p) => {
                    assert!(flags.contains("InvalidPkcs1Padding"), "tc {}", c.id);
                    assert_ne!(p.to_vec(), msg, "tc {}", c.id);
                    rejected_implicitly += 1;
                }
                Err(e) => {
                    assert!(flags.contains("InvalidCiphertextFormat"), "tc {}", c.id);
                    assert_eq!(e, CryptoError::AuthenticationFailed, "tc {}", c.id);
                }
            }
        },
    );
    assert!(rejected_implicitly >= 15, "{rejected_implicitly}");
}

fn sig_file(json: &str, pad: impl Fn(&serde_json::Value) -> SigPadding) {
    let mut valid = 0;
    each(json, |g, c| {
        let pk = unhex(g["publicKeyDer"].as_str().unwrap());
        let got = rsa::verify(&pk, pad(g), &c.hex("msg"), false, &c.hex("sig"));
        if c.valid() {
            assert_eq!(got, Ok(true), "tc {}", c.id);
            valid += 1;
        } else if c.invalid() {
            assert_eq!(got, Ok(false), "tc {}", c.id);
        }
    });
    assert!(valid > 0);
}

#[test]
fn wycheproof_rsa_pss_2048_sha256_salt32() {
    sig_file(
        include_str!("../../tests/data/wycheproof/rsa_pss_2048_sha256_mgf1_32_test.json"),
        |g| {
            assert_eq!(g["sha"], "SHA-256");
            assert_eq!(g["mgfSha"], "SHA-256");
            let salt = usize::try_from(g["sLen"].as_u64().unwrap()).unwrap();
            SigPadding::Pss(HashAlg::Sha256, Some(salt))
        },
    );
}

#[test]
fn wycheproof_rsa_pkcs1_2048_sha256_signatures() {
    sig_file(
        include_str!("../../tests/data/wycheproof/rsa_signature_2048_sha256_test.json"),
        |g| {
            assert_eq!(g["sha"], "SHA-256");
            SigPadding::Pkcs1v15(HashAlg::Sha256)
        },
    );
}
