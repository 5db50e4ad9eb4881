//! Key wrapping through `Kms::kmip_json`: Get/Export with a KeyWrappingSpecification (AES-KW,
//! AES-KWP, AES-GCM, RSA-OAEP), Register/Import of a wrapped key block, and the refusals: usage
//! mask, access rights, Sensitive, tampering, unsupported methods and encodings.

mod common;
use common::*;

use kms::crypto::rsa::{self, EncPadding};
use kms::crypto::wrap::{self, WrapAlg};
use kms::kmip::types::ResultReason;
use serde_json::{Value, json};
use testkit::TestRng;

const WRAP: i64 = 0x10;
const UNWRAP: i64 = 0x20;
const ENC_DEC: i64 = 0x04 | 0x08;

fn spec(kek: &str, params: Vec<Value>, extra: Vec<Value>) -> Value {
    let mut eki = vec![json!({"tag":"UniqueIdentifier","type":"TextString","value":kek})];
    if !params.is_empty() {
        eki.push(json!({"tag":"CryptographicParameters","value":params}));
    }
    let mut v = vec![
        json!({"tag":"WrappingMethod","type":"Enumeration","value":"Encrypt"}),
        json!({"tag":"EncryptionKeyInformation","value":eki}),
    ];
    v.extend(extra);
    json!({"tag":"KeyWrappingSpecification","value":v})
}

fn mode(m: &str) -> Vec<Value> {
    vec![json!({"tag":"BlockCipherMode","type":"Enumeration","value":m})]
}

fn get_wrapped(uid: &str, spec: Value) -> Value {
    json!({"tag":"Get","value":[
        {"tag":"UniqueIdentifier","type":"TextString","value":uid},
        spec]})
}

fn key_block(get: &Value, object: &str) -> Value {
    field(field(get, object).unwrap(), "KeyBlock")
        .unwrap()
        .clone()
}

/// The plain Raw key bytes of a symmetric key.
fn plain(t: &mut T, uid: &str) -> Vec<u8> {
    let g = t.ok("alice", uid_req("Get", uid));
    bytes(
        field(&key_block(&g, "SymmetricKey"), "KeyValue").unwrap(),
        "KeyMaterial",
    )
}

fn new_sym(t: &mut T, mask: i64) -> String {
    text(
        &t.ok("alice", create_sym("AES", 256, mask, &[], true)),
        "UniqueIdentifier",
    )
}

/// A Register of a wrapped symmetric key block.
fn register_wrapped(wrapped: &[u8], kek: &str, params: Vec<Value>) -> Value {
    let mut eki = vec![json!({"tag":"UniqueIdentifier","type":"TextString","value":kek})];
    if !params.is_empty() {
        eki.push(json!({"tag":"CryptographicParameters","value":params}));
    }
    json!({"tag":"Register","value":[
        {"tag":"ObjectType","type":"Enumeration","value":"SymmetricKey"},
        {"tag":"Attributes","value":[
            {"tag":"CryptographicAlgorithm","type":"Enumeration","value":"AES"},
            {"tag":"ActivationDate","type":"DateTime","value":"2024-01-01T00:00:00Z"}]},
        {"tag":"SymmetricKey","value":[{"tag":"KeyBlock","value":[
            {"tag":"KeyFormatType","type":"Enumeration","value":"Raw"},
            {"tag":"KeyValue","type":"ByteString","value":hex::encode_upper(wrapped)},
            {"tag":"KeyWrappingData","value":[
                {"tag":"WrappingMethod","type":"Enumeration","value":"Encrypt"},
                {"tag":"EncryptionKeyInformation","value":eki}]}]}]}]})
}

#[test]
fn aes_wrapping_modes_round_trip_through_get_and_register() {
    let mut t = T::new();
    let kek = new_sym(&mut t, WRAP | UNWRAP);
    let key = new_sym(&mut t, ENC_DEC);
    let kek_bytes = plain(&mut t, &kek);
    let key_bytes = plain(&mut t, &key);
    for (m, alg) in [
        (Some("NISTKeyWrap"), WrapAlg::AesKw),
        (Some("AESKeyWrapPadding"), WrapAlg::AesKwp),
        (Some("GCM"), WrapAlg::AesGcm),
        (None, WrapAlg::AesKwp),
    ] {
        let params = m.map(mode).unwrap_or_default();
        let g = t.ok(
            "alice",
            get_wrapped(&key, spec(&kek, params.clone(), vec![])),
        );
        let kb = key_block(&g, "SymmetricKey");
        assert_eq!(text(&kb, "KeyFormatType"), "Raw");
        // KMIP 2.1 §2.1.4: the wrapped Key Value is a ByteString.
        let wrapped = bytes(&kb, "KeyValue");
        let kwd = field(&kb, "KeyWrappingData").expect("KeyWrappingData");
        assert_eq!(text(kwd, "WrappingMethod"), "Encrypt");
        let eki = field(kwd, "EncryptionKeyInformation").unwrap();
        assert_eq!(text(eki, "UniqueIdentifier"), kek);
        if let Some(m) = m {
            let cp = field(eki, "CryptographicParameters").unwrap();
            assert_eq!(text(cp, "BlockCipherMode"), m);
        }
        assert_ne!(wrapped, key_bytes);
        let back = wrap::unwrap(alg, &kek_bytes, &wrapped).expect("unwraps with the KEK");
        assert_eq!(&back[..], &key_bytes[..], "{m:?}");
        // Register the wrapped block: the KMS unwraps it and stores the key.
        let r = t.ok("alice", register_wrapped(&wrapped, &kek, params));
        let uid = text(&r, "UniqueIdentifier");
        assert_eq!(plain(&mut t, &uid), key_bytes, "{m:?}");
    }
    // The RFC 3394 wrap of a known key under a known KEK, checked through Register.
    let v: Value = serde_json::from_str(include_str!("data/rfc3394-rfc5649-keywrap.json")).unwrap();
    let c = &v["kw"][5];
    let known_kek = t.ok("alice", json!({"tag":"Register","value":[
        {"tag":"ObjectType","type":"Enumeration","value":"SymmetricKey"},
        {"tag":"Attributes","value":[
            {"tag":"CryptographicUsageMask","type":"Integer","value":UNWRAP},
            {"tag":"ActivationDate","type":"DateTime","value":"2024-01-01T00:00:00Z"}]},
        {"tag":"SymmetricKey","value":[{"tag":"KeyBlock","value":[
            {"tag":"KeyFormatType","type":"Enumeration","value":"Raw"},
            {"tag":"KeyValue","value":[{"tag":"KeyMaterial","type":"ByteString","value":c["kek"]}]}]}]}]}));
    let known_kek = text(&known_kek, "UniqueIdentifier");
    let wrapped = hex::decode(c["wrapped"].as_str().unwrap()).unwrap();
    let r = t.ok(
        "alice",
        register_wrapped(&wrapped, &known_kek, mode("NISTKeyWrap")),
    );
    let uid = text(&r, "UniqueIdentifier");
    assert_eq!(hex::encode(plain(&mut t, &uid)), c["key"].as_str().unwrap());
    // Tampered: the integrity check fails, nothing is stored.
    let mut bad = wrapped.clone();
    bad[9] ^= 1;
    let e = t.err(
        "alice",
        register_wrapped(&bad, &known_kek, mode("NISTKeyWrap")),
    );
    assert_eq!(reason(&e), ResultReason::CryptographicFailure);
}

#[test]
fn rsa_oaep_wrapping_with_a_key_pair() {
    let mut t = T::new();
    let mut req = create_pair("RSA", None, &[]);
    let items = req["value"].as_array_mut().unwrap();
    items.push(json!({"tag":"PrivateKeyAttributes","value":[
        {"tag":"CryptographicUsageMask","type":"Integer","value":UNWRAP | 0x08}]}));
    items.push(json!({"tag":"PublicKeyAttributes","value":[
        {"tag":"CryptographicUsageMask","type":"Integer","value":WRAP | 0x04}]}));
    let pair = t.ok("alice", req);
    let sk = text(&pair, "PrivateKeyUniqueIdentifier");
    let pk = text(&pair, "PublicKeyUniqueIdentifier");
    let key = new_sym(&mut t, ENC_DEC);
    let key_bytes = plain(&mut t, &key);
    let oaep = |h: &str| {
        vec![
            json!({"tag":"PaddingMethod","type":"Enumeration","value":"OAEP"}),
            json!({"tag":"HashingAlgorithm","type":"Enumeration","value":h}),
        ]
    };
    let g = t.ok(
        "alice",
        get_wrapped(&key, spec(&pk, oaep("SHA256"), vec![])),
    );
    let wrapped = bytes(&key_block(&g, "SymmetricKey"), "KeyValue");
    assert_eq!(wrapped.len(), 256);
    // Decrypt outside the KMS with the private key's PKCS#8.
    let skg = t.ok(
        "alice",
        json!({"tag":"Get","value":[
            {"tag":"UniqueIdentifier","type":"TextString","value":sk},
            {"tag":"KeyFormatType","type":"Enumeration","value":"PKCS8"}]}),
    );
    let pkcs8 = bytes(
        field(&key_block(&skg, "PrivateKey"), "KeyValue").unwrap(),
        "KeyMaterial",
    );
    let pad = EncPadding::Oaep {
        hash: kms::crypto::mac::HashAlg::Sha256,
        mgf: kms::crypto::mac::HashAlg::Sha256,
        label: None,
    };
    let back = rsa::decrypt(&pkcs8, &pad, &wrapped, &mut TestRng::new(5)).unwrap();
    assert_eq!(&back[..], &key_bytes[..]);
    // Import it back, unwrapped by the private key.
    let r = t.ok("alice", register_wrapped(&wrapped, &sk, oaep("SHA256")));
    assert_eq!(plain(&mut t, &text(&r, "UniqueIdentifier")), key_bytes);
    // The wrong hash does not unwrap it (one error for every OAEP failure).
    let e = t.err("alice", register_wrapped(&wrapped, &sk, oaep("SHA1")));
    assert_eq!(reason(&e), ResultReason::CryptographicFailure);
    // PKCS#1 v1.5 wrapping and RSA-AES hybrid wrapping are refused.
    let e = t.err(
        "alice",
        get_wrapped(
            &key,
            spec(
                &pk,
                vec![json!({"tag":"PaddingMethod","type":"Enumeration","value":"PKCS1_v1_5"})],
                vec![],
            ),
        ),
    );
    assert_eq!(reason(&e), ResultReason::UnsupportedCryptographicParameters);
    // The private key does not wrap, the public key does not unwrap.
    let e = t.err("alice", get_wrapped(&key, spec(&sk, vec![], vec![])));
    assert_eq!(reason(&e), ResultReason::UnsupportedCryptographicParameters);
    let e = t.err("alice", register_wrapped(&wrapped, &pk, vec![]));
    assert_eq!(reason(&e), ResultReason::UnsupportedCryptographicParameters);
}

#[test]
fn usage_mask_rights_and_sensitive_are_enforced() {
    let mut t = T::new();
    let enc_only = new_sym(&mut t, ENC_DEC);
    let key = new_sym(&mut t, ENC_DEC);
    // A KEK without WrapKey does not wrap; without UnwrapKey does not unwrap.
    let e = t.err("alice", get_wrapped(&key, spec(&enc_only, vec![], vec![])));
    assert_eq!(reason(&e), ResultReason::IncompatibleCryptographicUsageMask);
    let wrap_only = new_sym(&mut t, WRAP);
    let g = t.ok("alice", get_wrapped(&key, spec(&wrap_only, vec![], vec![])));
    let wrapped = bytes(&key_block(&g, "SymmetricKey"), "KeyValue");
    let e = t.err("alice", register_wrapped(&wrapped, &wrap_only, vec![]));
    assert_eq!(reason(&e), ResultReason::IncompatibleCryptographicUsageMask);
    // A key does not wrap itself.
    let kek = new_sym(&mut t, WRAP | UNWRAP);
    let e = t.err("alice", get_wrapped(&kek, spec(&kek, vec![], vec![])));
    assert_eq!(reason(&e), ResultReason::InvalidField);
    // Bob may get the key but holds no right on the KEK: it does not exist for him.
    t.grant("alice", &key, "bob", &["get"]);
    let e = t.err("bob", get_wrapped(&key, spec(&kek, vec![], vec![])));
    assert_eq!(reason(&e), ResultReason::ObjectNotFound);
    // With `get` only on the KEK he may not use it to wrap; with `encrypt` he may.
    t.grant("alice", &kek, "bob", &["get"]);
    let e = t.err("bob", get_wrapped(&key, spec(&kek, vec![], vec![])));
    assert_eq!(reason(&e), ResultReason::PermissionDenied);
    t.grant("alice", &kek, "bob", &["encrypt"]);
    let g = t.ok("bob", get_wrapped(&key, spec(&kek, vec![], vec![])));
    let wrapped = bytes(&key_block(&g, "SymmetricKey"), "KeyValue");
    // Importing it needs `decrypt` on the KEK.
    let e = t.err("bob", register_wrapped(&wrapped, &kek, vec![]));
    assert_eq!(reason(&e), ResultReason::PermissionDenied);
    t.grant("alice", &kek, "bob", &["decrypt"]);
    t.ok("bob", register_wrapped(&wrapped, &kek, vec![]));
    // A Sensitive key leaves only wrapped (KMIP 2.1 §4.47).
    t.ok(
        "alice",
        json!({"tag":"SetAttribute","value":[
            {"tag":"UniqueIdentifier","type":"TextString","value":key},
            {"tag":"NewAttribute","value":[{"tag":"Sensitive","type":"Boolean","value":true}]}]}),
    );
    let e = t.err("alice", uid_req("Get", &key));
    assert_eq!(reason(&e), ResultReason::Sensitive);
    t.ok("alice", get_wrapped(&key, spec(&kek, vec![], vec![])));
    // A revoked KEK wraps no more.
    t.ok(
        "alice",
        json!({"tag":"Revoke","value":[
            {"tag":"UniqueIdentifier","type":"TextString","value":kek},
            {"tag":"RevocationReason","value":[
                {"tag":"RevocationReasonCode","type":"Enumeration","value":"Unspecified"}]}]}),
    );
    let e = t.err("alice", get_wrapped(&key, spec(&kek, vec![], vec![])));
    assert_eq!(reason(&e), ResultReason::WrongKeyLifecycleState);
}

#[test]
fn unsupported_wrapping_requests_are_refused() {
    let mut t = T::new();
    let kek = new_sym(&mut t, WRAP | UNWRAP);
    let key = new_sym(&mut t, ENC_DEC);
    let cases = [
        (
            spec(
                &kek,
                vec![],
                vec![json!({"tag":"EncodingOption","type":"Enumeration","value":"TTLVEncoding"})],
            ),
            ResultReason::EncodingOptionError,
        ),
        (
            spec(&kek, mode("CBC"), vec![]),
            ResultReason::UnsupportedCryptographicParameters,
        ),
        (
            json!({"tag":"KeyWrappingSpecification","value":[
                {"tag":"WrappingMethod","type":"Enumeration","value":"MACSign"},
                {"tag":"MACSignatureKeyInformation","value":[
                    {"tag":"UniqueIdentifier","type":"TextString","value":kek}]}]}),
            ResultReason::UnsupportedCryptographicParameters,
        ),
        (
            spec("no-such-key", vec![], vec![]),
            ResultReason::ObjectNotFound,
        ),
    ];
    for (s, want) in cases {
        let e = t.err("alice", get_wrapped(&key, s.clone()));
        assert_eq!(reason(&e), want, "{s}");
    }
    // A ChaCha20 key is not a wrapping key.
    let chacha = text(
        &t.ok("alice", create_sym("ChaCha20", 256, WRAP, &[], true)),
        "UniqueIdentifier",
    );
    let e = t.err("alice", get_wrapped(&key, spec(&chacha, vec![], vec![])));
    assert_eq!(reason(&e), ResultReason::UnsupportedCryptographicParameters);
    // RFC 3394 needs whole 8-byte blocks: garbage lengths are refused, not unwrapped.
    let e = t.err(
        "alice",
        register_wrapped(&[0u8; 23], &kek, mode("NISTKeyWrap")),
    );
    assert_eq!(reason(&e), ResultReason::InvalidField);
}
