//! The cryptographic services through `Kms::kmip_json`: MAC/MACVerify, Hash, RNGRetrieve,
//! RNGSeed, RSA key pairs and their operations. Each feature with its negative cases.

mod common;
use common::*;

use kms::kmip::types::ResultReason;
use serde_json::{Value, json};

fn register_sym(alg_attr: Option<&str>, key_alg: &str, key: &[u8], mask: i64) -> Value {
    let mut attrs = vec![
        json!({"tag":"CryptographicUsageMask","type":"Integer","value":mask}),
        json!({"tag":"ActivationDate","type":"DateTime","value":"2024-01-01T00:00:00Z"}),
    ];
    if let Some(a) = alg_attr {
        attrs.push(
            json!({"tag":"CryptographicParameters","type":"Structure","value":[
            {"tag":"CryptographicAlgorithm","type":"Enumeration","value":a}]}),
        );
    }
    json!({"tag":"Register","type":"Structure","value":[
        {"tag":"ObjectType","type":"Enumeration","value":"SymmetricKey"},
        {"tag":"Attributes","type":"Structure","value":attrs},
        {"tag":"SymmetricKey","type":"Structure","value":[
            {"tag":"KeyBlock","type":"Structure","value":[
                {"tag":"KeyFormatType","type":"Enumeration","value":"Raw"},
                {"tag":"KeyValue","type":"Structure","value":[
                    {"tag":"KeyMaterial","type":"ByteString","value":hex::encode_upper(key)}]},
                {"tag":"CryptographicAlgorithm","type":"Enumeration","value":key_alg},
                {"tag":"CryptographicLength","type":"Integer","value":key.len() * 8}]}]}]})
}

fn mac_req(uid: &str, alg: Option<&str>, data: &[u8]) -> Value {
    let mut v = vec![
        json!({"tag":"UniqueIdentifier","type":"TextString","value":uid}),
        json!({"tag":"Data","type":"ByteString","value":hex::encode_upper(data)}),
    ];
    if let Some(a) = alg {
        v.push(
            json!({"tag":"CryptographicParameters","type":"Structure","value":[
            {"tag":"CryptographicAlgorithm","type":"Enumeration","value":a}]}),
        );
    }
    json!({"tag":"MAC","type":"Structure","value":v})
}

fn mac_verify_req(uid: &str, data: &[u8], mac: &[u8]) -> Value {
    json!({"tag":"MACVerify","type":"Structure","value":[
        {"tag":"UniqueIdentifier","type":"TextString","value":uid},
        {"tag":"Data","type":"ByteString","value":hex::encode_upper(data)},
        {"tag":"MACData","type":"ByteString","value":hex::encode_upper(mac)}]})
}

fn validity(v: &Value) -> String {
    field(v, "ValidityIndicator").expect("ValidityIndicator")["value"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn mac_and_mac_verify_follow_oasis_cs_ac_m_4_to_6() {
    let mut t = T::new();
    // CS-AC-M-4-21: an AES-labelled key whose CryptographicParameters name HMAC-SHA-256.
    let key = hex::decode("0123456789abcdef0123456789abcdef").unwrap();
    let data = hex::decode("01020304050607080910111213141516").unwrap();
    let want =
        hex::decode("c911e78196d64c30f631bb079ea37b97a95936d4da764d6a171df030c895ecf9").unwrap();
    let r = t.ok(
        "alice",
        register_sym(Some("HMAC_SHA256"), "AES", &key, 0x18c),
    );
    let uid = text(&r, "UniqueIdentifier");
    let r = t.ok("alice", mac_req(&uid, None, &data));
    assert_eq!(bytes(&r, "MACData"), want);
    let r = t.ok("alice", mac_verify_req(&uid, &data, &want));
    assert_eq!(validity(&r), "Valid");
    let mut bad = want.clone();
    bad[31] ^= 1;
    let r = t.ok("alice", mac_verify_req(&uid, &data, &bad));
    assert_eq!(validity(&r), "Invalid");
    let r = t.ok("alice", mac_verify_req(&uid, &data, &want[..4]));
    assert_eq!(validity(&r), "Invalid");
    // The request's parameters win over the stored ones.
    let r = t.ok("alice", mac_req(&uid, Some("HMAC_SHA512"), &data));
    assert_eq!(bytes(&r, "MACData").len(), 64);
    // An AES key with no HMAC anywhere: CMAC-AES (RFC 4493 §4 example 2: 16-byte message).
    let cmac_key = hex::decode("2b7e151628aed2a6abf7158809cf4f3c").unwrap();
    let msg = hex::decode("6bc1bee22e409f96e93d7e117393172a").unwrap();
    let tag = hex::decode("070a16b46b4d4144f79bdd9dd04a287c").unwrap();
    let r = t.ok("alice", register_sym(None, "AES", &cmac_key, 0x18c));
    let aes = text(&r, "UniqueIdentifier");
    let r = t.ok("alice", mac_req(&aes, None, &msg));
    assert_eq!(bytes(&r, "MACData"), tag);
    let r = t.ok("alice", mac_req(&aes, Some("AES"), &msg));
    assert_eq!(bytes(&r, "MACData"), tag);
    let r = t.ok("alice", mac_verify_req(&aes, &msg, &tag));
    assert_eq!(validity(&r), "Valid");
    // Truncated to 64 bits (SP 800-38B Appendix A) still verifies; shorter does not.
    let r = t.ok("alice", mac_verify_req(&aes, &msg, &tag[..8]));
    assert_eq!(validity(&r), "Valid");
    let r = t.ok("alice", mac_verify_req(&aes, &msg, &tag[..7]));
    assert_eq!(validity(&r), "Invalid");
    let r = t.ok("alice", mac_verify_req(&aes, &data, &tag));
    assert_eq!(validity(&r), "Invalid");
    // CMAC on an HMAC key is refused, not run over the HMAC key bytes.
    let r = t.ok("alice", register_sym(None, "HMAC_SHA256", &key, 0x180));
    let hk = text(&r, "UniqueIdentifier");
    let e = t.err("alice", mac_req(&hk, Some("AES"), &data));
    assert_eq!(reason(&e), ResultReason::UnsupportedCryptographicParameters);
    // No MAC for a ChaCha20 key.
    let r = t.ok("alice", register_sym(None, "ChaCha20", &[7; 32], 0x180));
    let cc = text(&r, "UniqueIdentifier");
    let e = t.err("alice", mac_req(&cc, None, &data));
    assert_eq!(reason(&e), ResultReason::UnsupportedCryptographicParameters);
    // Usage mask: Encrypt|Decrypt only.
    let r = t.ok(
        "alice",
        register_sym(Some("HMAC_SHA256"), "AES", &key, 0x0c),
    );
    let enc = text(&r, "UniqueIdentifier");
    let e = t.err("alice", mac_req(&enc, None, &data));
    assert_eq!(reason(&e), ResultReason::IncompatibleCryptographicUsageMask);
    // Rights: MAC needs `sign`, MACVerify `signatureverify`.
    let e = t.err("bob", mac_req(&uid, None, &data));
    assert_eq!(reason(&e), ResultReason::ObjectNotFound);
    t.grant("alice", &uid, "bob", &["signatureverify"]);
    let r = t.ok("bob", mac_verify_req(&uid, &data, &want));
    assert_eq!(validity(&r), "Valid");
    let e = t.err("bob", mac_req(&uid, None, &data));
    assert_eq!(reason(&e), ResultReason::PermissionDenied);
    // Streaming MAC is refused, not answered for the first chunk only.
    let mut streamed = mac_req(&uid, None, &data);
    streamed["value"]
        .as_array_mut()
        .unwrap()
        .push(json!({"tag":"InitIndicator","type":"Boolean","value":true}));
    let e = t.err("alice", streamed);
    assert_eq!(reason(&e), ResultReason::InvalidField);
}

#[test]
fn created_hmac_keys_default_to_mac_usage() {
    let mut t = T::new();
    let r = t.ok("alice", create_sym("HMACSHA384", 384, 0x180, &[], true));
    let uid = text(&r, "UniqueIdentifier");
    let r = t.ok("alice", mac_req(&uid, None, b"hello"));
    assert_eq!(bytes(&r, "MACData").len(), 48);
    let e = t.err("alice", create_sym("HMACSHA256", 64, 0x180, &[], true));
    assert_eq!(reason(&e), ResultReason::InvalidField);
    // A too-short HMAC key is refused at registration.
    let e = t.err("alice", register_sym(None, "HMACSHA256", &[7; 8], 0x180));
    assert_eq!(reason(&e), ResultReason::InvalidField);
}

#[test]
fn hash_follows_oasis_cs_ac_m_7() {
    let mut t = T::new();
    let hash = |alg: &str| {
        json!({"tag":"Hash","type":"Structure","value":[
            {"tag":"CryptographicParameters","type":"Structure","value":[
                {"tag":"HashingAlgorithm","type":"Enumeration","value":alg}]},
            {"tag":"Data","type":"ByteString","value":"01020304050607080910111213141516"}]})
    };
    let r = t.ok("alice", hash("SHA_256"));
    assert_eq!(
        hex::encode(bytes(&r, "Data")),
        "ad41233d22cf9322e3a7ff49a13da434797abed3bab80950a1a0d4e582b7ea72"
    );
    assert_eq!(bytes(&t.ok("alice", hash("SHA_512")), "Data").len(), 64);
    let e = t.err("alice", hash("SHA3_256"));
    assert_eq!(reason(&e), ResultReason::UnsupportedCryptographicParameters);
    let e = t.err(
        "alice",
        json!({"tag":"Hash","type":"Structure","value":[
            {"tag":"Data","type":"ByteString","value":"00"}]}),
    );
    assert_eq!(reason(&e), ResultReason::MissingData);
}

#[test]
fn rng_retrieve_and_seed() {
    let mut t = T::new();
    let rng = |n: i64| {
        json!({"tag":"RNGRetrieve","type":"Structure","value":[
            {"tag":"DataLength","type":"Integer","value":n}]})
    };
    let a = bytes(&t.ok("alice", rng(32)), "Data");
    let b = bytes(&t.ok("alice", rng(32)), "Data");
    assert_eq!(a.len(), 32);
    assert_ne!(a, b);
    for n in [0, -1, 65537] {
        let e = t.err("alice", rng(n));
        assert_eq!(reason(&e), ResultReason::InvalidField, "{n}");
    }
    // The test generator takes no outside input: it reports 0 bytes accepted.
    let r = t.ok(
        "alice",
        json!({"tag":"RNGSeed","type":"Structure","value":[
            {"tag":"Data","type":"ByteString","value":"00112233"}]}),
    );
    let n = field(&r, "DataLength").unwrap()["value"].as_i64().unwrap();
    assert_eq!(n, 0);
}

fn rsa_params(v: &[(&str, &str, &str)]) -> Value {
    let items: Vec<Value> = v
        .iter()
        .map(|(t, ty, val)| json!({"tag":t,"type":ty,"value":val}))
        .collect();
    json!({"tag":"CryptographicParameters","type":"Structure","value":items})
}

fn sign_req(uid: &str, data: &[u8], params: Option<Value>) -> Value {
    let mut v = vec![
        json!({"tag":"UniqueIdentifier","type":"TextString","value":uid}),
        json!({"tag":"Data","type":"ByteString","value":hex::encode_upper(data)}),
    ];
    v.extend(params);
    json!({"tag":"Sign","type":"Structure","value":v})
}

fn verify_req(uid: &str, data: &[u8], sig: &[u8], params: Option<Value>) -> Value {
    let mut v = vec![
        json!({"tag":"UniqueIdentifier","type":"TextString","value":uid}),
        json!({"tag":"Data","type":"ByteString","value":hex::encode_upper(data)}),
        json!({"tag":"SignatureData","type":"ByteString","value":hex::encode_upper(sig)}),
    ];
    v.extend(params);
    json!({"tag":"SignatureVerify","type":"Structure","value":v})
}

fn get_req(uid: &str, format: &str) -> Value {
    json!({"tag":"Get","type":"Structure","value":[
        {"tag":"UniqueIdentifier","type":"TextString","value":uid},
        {"tag":"KeyFormatType","type":"Enumeration","value":format}]})
}

/// The key bytes and format of a Get response.
fn got_key(v: &Value) -> (String, Vec<u8>) {
    let obj = v["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["tag"] == "PrivateKey" || c["tag"] == "PublicKey")
        .expect("key object");
    let kb = field(obj, "KeyBlock").unwrap();
    let kv = field(kb, "KeyValue").unwrap();
    (text(kb, "KeyFormatType"), bytes(kv, "KeyMaterial"))
}

fn register_rsa(object_type: &str, format: &str, der: &[u8], params: Option<Value>) -> Value {
    let mut attrs =
        vec![json!({"tag":"ActivationDate","type":"DateTime","value":"2024-01-01T00:00:00Z"})];
    attrs.extend(params);
    json!({"tag":"Register","type":"Structure","value":[
        {"tag":"ObjectType","type":"Enumeration","value":object_type},
        {"tag":"Attributes","type":"Structure","value":attrs},
        {"tag":object_type,"type":"Structure","value":[
            {"tag":"KeyBlock","type":"Structure","value":[
                {"tag":"KeyFormatType","type":"Enumeration","value":format},
                {"tag":"KeyValue","type":"Structure","value":[
                    {"tag":"KeyMaterial","type":"ByteString","value":hex::encode_upper(der)}]},
                {"tag":"CryptographicAlgorithm","type":"Enumeration","value":"RSA"}]}]}]})
}

#[test]
fn rsa_key_pairs_encrypt_decrypt_sign_verify_and_formats() {
    let mut t = T::new();
    let mut req = create_pair("RSA", None, &[]);
    req["value"][0]["value"]
        .as_array_mut()
        .unwrap()
        .push(json!({"tag":"CryptographicLength","type":"Integer","value":2048}));
    let r = t.ok("alice", req);
    let sk = text(&r, "PrivateKeyUniqueIdentifier");
    let pk = text(&r, "PublicKeyUniqueIdentifier");
    let attrs = t.ok("alice", uid_req("GetAttributes", &sk));
    let a = field(&attrs, "Attributes").unwrap();
    assert_eq!(text(a, "CryptographicAlgorithm"), "RSA");
    assert_eq!(field(a, "CryptographicLength").unwrap()["value"], 2048);
    assert_eq!(text(a, "KeyFormatType"), "PKCS1");

    // OAEP (default SHA-256), OAEP SHA-1 with a label, PKCS#1 v1.5.
    for params in [
        None,
        Some(rsa_params(&[
            ("PaddingMethod", "Enumeration", "OAEP"),
            ("HashingAlgorithm", "Enumeration", "SHA_1"),
            ("PSource", "ByteString", "4C4142454C"),
        ])),
        Some(rsa_params(&[(
            "PaddingMethod",
            "Enumeration",
            "PKCS1_v1_5",
        )])),
    ] {
        let r = t.ok(
            "alice",
            encrypt(&pk, b"attack at dawn", params.clone().into_iter().collect()),
        );
        assert!(field(&r, "IVCounterNonce").is_none());
        let ct = bytes(&r, "Data");
        assert_eq!(ct.len(), 256);
        let mut v = vec![
            json!({"tag":"UniqueIdentifier","type":"TextString","value":sk}),
            json!({"tag":"Data","type":"ByteString","value":hex::encode_upper(&ct)}),
        ];
        v.extend(params);
        let r = t.ok(
            "alice",
            json!({"tag":"Decrypt","type":"Structure","value":v}),
        );
        assert_eq!(bytes(&r, "Data"), b"attack at dawn");
    }

    // PSS (default), PKCS#1 v1.5 through DigitalSignatureAlgorithm.
    for params in [
        None,
        Some(rsa_params(&[(
            "DigitalSignatureAlgorithm",
            "Enumeration",
            "SHA256WithRSAEncryption",
        )])),
        Some(rsa_params(&[
            ("PaddingMethod", "Enumeration", "PSS"),
            ("HashingAlgorithm", "Enumeration", "SHA_512"),
        ])),
    ] {
        let r = t.ok("alice", sign_req(&sk, b"msg", params.clone()));
        let sig = bytes(&r, "SignatureData");
        let r = t.ok("alice", verify_req(&pk, b"msg", &sig, params.clone()));
        assert_eq!(validity(&r), "Valid");
        let r = t.ok("alice", verify_req(&pk, b"msh", &sig, params));
        assert_eq!(validity(&r), "Invalid");
    }

    // Export in every format, and back in.
    let (f, pkcs1) = got_key(&t.ok("alice", get_req(&sk, "PKCS1")));
    assert_eq!(f, "PKCS1");
    let (f, pkcs8) = got_key(&t.ok("alice", get_req(&sk, "PKCS8")));
    assert_eq!(f, "PKCS8");
    assert_ne!(pkcs1, pkcs8);
    let (_, spki) = got_key(&t.ok("alice", get_req(&pk, "X509")));
    let (_, pub1) = got_key(&t.ok("alice", get_req(&pk, "PKCS1")));
    assert_eq!(pkcs1[..4], [0x30, 0x82, 0x04, pkcs1[3]]);
    let e = t.err("alice", get_req(&pk, "TransparentECPublicKey"));
    assert_eq!(reason(&e), ResultReason::KeyFormatTypeNotSupported);

    let sk2 = text(
        &t.ok("alice", register_rsa("PrivateKey", "PKCS8", &pkcs8, None)),
        "UniqueIdentifier",
    );
    let pk2 = text(
        &t.ok("alice", register_rsa("PublicKey", "PKCS1", &pub1, None)),
        "UniqueIdentifier",
    );
    let (_, spki2) = got_key(&t.ok("alice", get_req(&pk2, "X509")));
    assert_eq!(spki2, spki);
    let ct = bytes(&t.ok("alice", encrypt(&pk2, b"x", vec![])), "Data");
    let mut d = uid_req("Decrypt", &sk2);
    d["value"]
        .as_array_mut()
        .unwrap()
        .push(json!({"tag":"Data","type":"ByteString","value":hex::encode_upper(&ct)}));
    assert_eq!(bytes(&t.ok("alice", d), "Data"), b"x");

    // Refusals.
    let e = t.err(
        "alice",
        encrypt(
            &pk,
            b"x",
            vec![rsa_params(&[("BlockCipherMode", "Enumeration", "CBC")])],
        ),
    );
    assert_eq!(reason(&e), ResultReason::UnsupportedCryptographicParameters);
    let e = t.err(
        "alice",
        encrypt(
            &pk,
            b"x",
            vec![json!({"tag":"IVCounterNonce","type":"ByteString","value":"00"})],
        ),
    );
    assert_eq!(reason(&e), ResultReason::InvalidField);
    let e = t.err("alice", encrypt(&pk, &[0u8; 300], vec![]));
    assert_eq!(reason(&e), ResultReason::InvalidField);
    let e = t.err("alice", decrypt(&pk, &ct, "IVCounterNonce", &[], &[]));
    assert_eq!(reason(&e), ResultReason::InvalidField);
    let mut d = uid_req("Decrypt", &pk);
    d["value"]
        .as_array_mut()
        .unwrap()
        .push(json!({"tag":"Data","type":"ByteString","value":hex::encode_upper(&ct)}));
    assert_eq!(reason(&t.err("alice", d)), ResultReason::InvalidObjectType);
    let e = t.err(
        "alice",
        sign_req(
            &sk,
            b"m",
            Some(rsa_params(&[("PaddingMethod", "Enumeration", "OAEP")])),
        ),
    );
    assert_eq!(reason(&e), ResultReason::UnsupportedCryptographicParameters);
    let mut req = create_pair("RSA", None, &[]);
    req["value"][0]["value"]
        .as_array_mut()
        .unwrap()
        .push(json!({"tag":"CryptographicLength","type":"Integer","value":1024}));
    assert_eq!(reason(&t.err("alice", req)), ResultReason::InvalidField);
    let e = t.err("alice", register_rsa("PrivateKey", "PKCS1", b"junk", None));
    assert_eq!(reason(&e), ResultReason::CryptographicFailure);
}

/// OASIS CS-AC-M-OAEP-{2,4,6,8}-21 through the service: register the PKCS#1 private key with
/// its CryptographicParameters, decrypt the published ciphertext with no parameters in the
/// request (the stored ones apply).
#[test]
fn rsa_oaep_oasis_vectors_through_register_and_decrypt() {
    let v: Value =
        serde_json::from_str(include_str!("data/oasis-rsa-oaep.json")).expect("vector file");
    let mut t = T::new();
    for c in v["tests"].as_array().unwrap() {
        let s = |k: &str| c[k].as_str().unwrap().to_string();
        let params = rsa_params(&[
            ("PaddingMethod", "Enumeration", "OAEP"),
            ("HashingAlgorithm", "Enumeration", &s("hash")),
            ("MaskGenerator", "Enumeration", "MGF1"),
            ("MaskGeneratorHashingAlgorithm", "Enumeration", &s("mgf")),
        ]);
        let r = t.ok(
            "alice",
            register_rsa(
                "PrivateKey",
                "PKCS1",
                &hex::decode(s("pkcs1")).unwrap(),
                Some(params),
            ),
        );
        let uid = text(&r, "UniqueIdentifier");
        let mut d = uid_req("Decrypt", &uid);
        d["value"]
            .as_array_mut()
            .unwrap()
            .push(json!({"tag":"Data","type":"ByteString","value":s("ciphertext")}));
        let r = t.ok("alice", d);
        assert_eq!(
            bytes(&r, "Data"),
            hex::decode(s("plaintext")).unwrap(),
            "{}",
            s("case")
        );
    }
}

/// KMIP 2.1 §4.37/§4.38 (OASIS CS-AC-M-8): no Sign/Encrypt after the Protect Stop Date, no
/// Decrypt/Verify before the Process Start Date.
#[test]
fn protect_stop_and_process_start_dates_are_enforced() {
    let mut t = T::new();
    let mut req = create_sym("AES", 256, 12, &[], true);
    let attrs = req["value"][1]["value"].as_array_mut().unwrap();
    attrs.push(json!({"tag":"ProtectStopDate","type":"DateTime","value":"2024-01-01T00:00:00Z"}));
    attrs.push(json!({"tag":"ProcessStartDate","type":"DateTime","value":"2099-01-01T00:00:00Z"}));
    let uid = text(&t.ok("alice", req), "UniqueIdentifier");
    let e = t.err("alice", encrypt(&uid, b"x", vec![]));
    assert_eq!(reason(&e), ResultReason::WrongKeyLifecycleState);
    let e = t.err(
        "alice",
        decrypt(&uid, &[0; 16], "IVCounterNonce", &[0; 12], &[0; 16]),
    );
    assert_eq!(reason(&e), ResultReason::WrongKeyLifecycleState);
}

fn bc_params(mode: &str, pad: Option<&str>) -> Value {
    let mut v = vec![json!({"tag":"BlockCipherMode","type":"Enumeration","value":mode})];
    if let Some(p) = pad {
        v.push(json!({"tag":"PaddingMethod","type":"Enumeration","value":p}));
    }
    json!({"tag":"CryptographicParameters","type":"Structure","value":v})
}

fn iv(tag: &str, iv: &[u8]) -> Value {
    json!({"tag":tag,"type":"ByteString","value":hex::encode_upper(iv)})
}

/// ECB, CBC and CTR through Encrypt/Decrypt (OASIS CS-BC): NIST SP 800-38A F.2.1 (CBC-AES128)
/// and F.5.1 (CTR-AES128) through the service, PKCS#5 round trips, and the refusals.
#[test]
fn block_cipher_modes_follow_sp800_38a_and_refuse_unsafe_combinations() {
    let v: Value =
        serde_json::from_str(include_str!("data/sp800-38a-modes.json")).expect("vector file");
    let pt = hex::decode(v["plaintext"].as_str().unwrap()).unwrap();
    let mut t = T::new();
    let key = hex::decode("2b7e151628aed2a6abf7158809cf4f3c").unwrap();
    let uid = text(
        &t.ok("alice", register_sym(None, "AES", &key, 12)),
        "UniqueIdentifier",
    );
    for c in v["tests"].as_array().unwrap() {
        if c["key"] != "2b7e151628aed2a6abf7158809cf4f3c" {
            continue;
        }
        let mode = c["mode"].as_str().unwrap();
        let mut extra = vec![bc_params(mode, None)];
        let ivb = c["iv"].as_str().map(|s| hex::decode(s).unwrap());
        if let Some(i) = &ivb {
            extra.push(iv("IVCounterNonce", i));
        }
        let r = t.ok("alice", encrypt(&uid, &pt, extra.clone()));
        assert_eq!(
            hex::encode(bytes(&r, "Data")),
            c["ciphertext"].as_str().unwrap(),
            "{}",
            c["name"]
        );
        assert!(field(&r, "AuthenticatedEncryptionTag").is_none());
        let mut d = vec![
            json!({"tag":"UniqueIdentifier","type":"TextString","value":uid}),
            json!({"tag":"Data","type":"ByteString","value":c["ciphertext"]}),
        ];
        d.extend(extra);
        let r = t.ok(
            "alice",
            json!({"tag":"Decrypt","type":"Structure","value":d}),
        );
        assert_eq!(bytes(&r, "Data"), pt);
    }

    // PKCS#5: the server draws the IV for CBC and returns it.
    for mode in ["ECB", "CBC"] {
        let r = t.ok(
            "alice",
            encrypt(
                &uid,
                b"seventeen bytes!!",
                vec![bc_params(mode, Some("PKCS5"))],
            ),
        );
        let ct = bytes(&r, "Data");
        assert_eq!(ct.len(), 32);
        let mut d = vec![
            json!({"tag":"UniqueIdentifier","type":"TextString","value":uid}),
            json!({"tag":"Data","type":"ByteString","value":hex::encode_upper(&ct)}),
            bc_params(mode, Some("PKCS5")),
        ];
        if mode == "CBC" {
            let n = bytes(&r, "IVCounterNonce");
            assert_eq!(n.len(), 16);
            d.push(iv("IVCounterNonce", &n));
        }
        let r = t.ok(
            "alice",
            json!({"tag":"Decrypt","type":"Structure","value":d}),
        );
        assert_eq!(bytes(&r, "Data"), b"seventeen bytes!!");
    }

    let e = t.err(
        "alice",
        encrypt(&uid, b"x", vec![bc_params("CTR", Some("PKCS5"))]),
    );
    assert_eq!(reason(&e), ResultReason::UnsupportedCryptographicParameters);
    let e = t.err(
        "alice",
        encrypt(&uid, b"x", vec![bc_params("CBC", Some("OAEP"))]),
    );
    assert_eq!(reason(&e), ResultReason::UnsupportedCryptographicParameters);
    let e = t.err(
        "alice",
        encrypt(&uid, &[0; 17], vec![bc_params("CBC", None)]),
    );
    assert_eq!(reason(&e), ResultReason::InvalidField);
    let e = t.err(
        "alice",
        encrypt(
            &uid,
            &[0; 16],
            vec![bc_params("ECB", None), iv("IVCounterNonce", &[1; 16])],
        ),
    );
    assert_eq!(reason(&e), ResultReason::InvalidField);
    let e = t.err(
        "alice",
        encrypt(
            &uid,
            &[0; 16],
            vec![
                bc_params("CBC", None),
                json!({"tag":"AuthenticatedEncryptionAdditionalData","type":"ByteString","value":"00"}),
            ],
        ),
    );
    assert_eq!(reason(&e), ResultReason::InvalidField);
    let mut d = uid_req("Decrypt", &uid);
    let a = d["value"].as_array_mut().unwrap();
    a.push(json!({"tag":"Data","type":"ByteString","value":"00".repeat(16)}));
    a.push(bc_params("CBC", None));
    // Invalid Message, as the OASIS cases CS-BC-M-11/12/13 expect for a missing IV.
    assert_eq!(reason(&t.err("alice", d)), ResultReason::InvalidMessage);
    // A grantee without the decrypt right does not pick CTR counters.
    t.grant("alice", &uid, "bob", &["encrypt"]);
    let e = t.err(
        "bob",
        encrypt(
            &uid,
            b"x",
            vec![bc_params("CTR", None), iv("IVCounterNonce", &[0; 16])],
        ),
    );
    assert_eq!(reason(&e), ResultReason::PermissionDenied);
    t.ok("bob", encrypt(&uid, b"x", vec![bc_params("CTR", None)]));
}

fn gcm_params(tag_len: Option<i64>) -> Value {
    let mut p = vec![json!({"tag":"BlockCipherMode","type":"Enumeration","value":"GCM"})];
    if let Some(t) = tag_len {
        p.push(json!({"tag":"TagLength","type":"Integer","value":t}));
    }
    json!({"tag":"CryptographicParameters","type":"Structure","value":p})
}

fn hexv(tag: &str, h: &str) -> Value {
    json!({"tag":tag,"type":"ByteString","value":h})
}

fn flag(tag: &str) -> Value {
    json!({"tag":tag,"type":"Boolean","value":true})
}

/// OASIS CS-BC-M-GCM-3 / the GCM specification's test case 5 (AES-128, 64-bit IV), encrypted
/// in two parts (KMIP multi-part Encrypt): the parts' ciphertexts concatenate to the one-shot
/// ciphertext and the final part carries the tag. The correlation value is single-use and
/// only its owner continues it.
#[test]
fn multi_part_gcm_encrypt_matches_the_one_shot_vector() {
    let mut t = T::new();
    let key = hex::decode("feffe9928665731c6d6a8f9467308308").unwrap();
    let r = t.ok("alice", register_sym(None, "AES", &key, 0x0C));
    let uid = text(&r, "UniqueIdentifier");
    t.grant("alice", &uid, "bob", &["encrypt"]);
    let p1 =
        hex::decode("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72").unwrap();
    let p2 = hex::decode("1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39").unwrap();
    let first = |t: &mut T| {
        t.ok(
            "alice",
            encrypt(
                &uid,
                &p1,
                vec![
                    gcm_params(Some(16)),
                    hexv("IVCounterNonce", "CAFEBABEFACEDBAD"),
                    flag("InitIndicator"),
                    hexv(
                        "AuthenticatedEncryptionAdditionalData",
                        "FEEDFACEDEADBEEFFEEDFACEDEADBEEFABADDAD2",
                    ),
                ],
            ),
        )
    };
    let r = first(&mut t);
    assert_eq!(
        hex::encode(bytes(&r, "Data")),
        "61353b4c2806934a777ff51fa22a4755699b2a714fcdc6f83766e5f97b6c7423"
    );
    assert!(field(&r, "AuthenticatedEncryptionTag").is_none());
    let cv = hex::encode_upper(bytes(&r, "CorrelationValue"));
    let last = |cv: &str| {
        encrypt(
            &uid,
            &p2,
            vec![
                gcm_params(Some(16)),
                hexv("CorrelationValue", cv),
                flag("FinalIndicator"),
            ],
        )
    };
    // Another user holding the encrypt right cannot continue (or end) alice's operation.
    let e = t.err("bob", last(&cv));
    assert_eq!(reason(&e), ResultReason::ItemNotFound);
    let r = t.ok("alice", last(&cv));
    assert_eq!(
        hex::encode(bytes(&r, "Data")),
        "73806900e49f24b22b097544d4896b424989b5e1ebac0f07c23f4598"
    );
    assert_eq!(
        hex::encode(bytes(&r, "AuthenticatedEncryptionTag")),
        "3612d2e79e3b0785561be14aaca2fccb"
    );
    // Finished: the correlation value is gone.
    let e = t.err("alice", last(&cv));
    assert_eq!(reason(&e), ResultReason::ItemNotFound);
    // A later part without a correlation value, or a first one with one.
    let e = t.err(
        "alice",
        encrypt(&uid, &p2, vec![gcm_params(None), flag("FinalIndicator")]),
    );
    assert_eq!(reason(&e), ResultReason::MissingData);
    let e = t.err(
        "alice",
        encrypt(
            &uid,
            &p2,
            vec![hexv("CorrelationValue", &cv), flag("InitIndicator")],
        ),
    );
    assert_eq!(reason(&e), ResultReason::InvalidField);
    // A continued part may not change the IV.
    let r = first(&mut t);
    let cv = hex::encode_upper(bytes(&r, "CorrelationValue"));
    let e = t.err(
        "alice",
        encrypt(
            &uid,
            &p2,
            vec![hexv("CorrelationValue", &cv), hexv("IVCounterNonce", "00")],
        ),
    );
    assert_eq!(reason(&e), ResultReason::InvalidField);
}

/// TagLength: 12..16 bytes for AES-GCM (a 12-byte tag is the full tag's prefix and decrypts
/// only when TagLength says 12); 8 and 32 are General Failure (OASIS CS-BC-M-GCM-1).
#[test]
fn gcm_tag_length_rules() {
    let mut t = T::new();
    let r = t.ok("alice", register_sym(None, "AES", &[0u8; 16], 0x0C));
    let uid = text(&r, "UniqueIdentifier");
    let nonce = hexv("IVCounterNonce", "000000000000000000000000");
    let full = t.ok(
        "alice",
        encrypt(&uid, &[0; 16], vec![gcm_params(None), nonce.clone()]),
    );
    let short = t.ok(
        "alice",
        encrypt(&uid, &[0; 16], vec![gcm_params(Some(12)), nonce.clone()]),
    );
    let full_tag = bytes(&full, "AuthenticatedEncryptionTag");
    let tag = bytes(&short, "AuthenticatedEncryptionTag");
    // GCM spec test case 2: C = 0388dace..., T = ab6e47d42cec13bdf53a67b21257bddf.
    assert_eq!(hex::encode(&full_tag), "ab6e47d42cec13bdf53a67b21257bddf");
    assert_eq!(tag, full_tag[..12]);
    let ct = bytes(&short, "Data");
    let mut req = decrypt(&uid, &ct, "IVCounterNonce", &[0; 12], &tag);
    let e = t.err("alice", req.clone());
    assert_eq!(reason(&e), ResultReason::InvalidField);
    req["value"]
        .as_array_mut()
        .unwrap()
        .push(gcm_params(Some(12)));
    assert_eq!(bytes(&t.ok("alice", req), "Data"), vec![0u8; 16]);
    let mut bad = tag.clone();
    bad[11] ^= 1;
    let mut req = decrypt(&uid, &ct, "IVCounterNonce", &[0; 12], &bad);
    req["value"]
        .as_array_mut()
        .unwrap()
        .push(gcm_params(Some(12)));
    assert_eq!(
        reason(&t.err("alice", req)),
        ResultReason::CryptographicFailure
    );
    for tl in [1, 8, 11, 17, 32] {
        let e = t.err(
            "alice",
            encrypt(&uid, &[0; 16], vec![gcm_params(Some(tl)), nonce.clone()]),
        );
        assert_eq!(reason(&e), ResultReason::GeneralFailure, "TagLength {tl}");
    }
}

/// KMIP 2.1 §4.56 Usage Limits (OASIS CS-BC-M-7): 16 bytes allowed, the first 16-byte Encrypt
/// passes, the next one is Permission Denied, Decrypt is not counted.
#[test]
fn usage_limits_stop_encryption() {
    let mut t = T::new();
    let mut req = register_sym(None, "AES", &[7u8; 16], 0x0C);
    req["value"][1]["value"].as_array_mut().unwrap().push(json!(
        {"tag":"UsageLimits","type":"Structure","value":[
            {"tag":"UsageLimitsTotal","type":"LongInteger","value":16},
            {"tag":"UsageLimitsUnit","type":"Enumeration","value":"Byte"}]}));
    let uid = text(&t.ok("alice", req), "UniqueIdentifier");
    let r = t.ok("alice", encrypt(&uid, &[1; 10], vec![]));
    let r2 = t.ok("alice", encrypt(&uid, &[1; 6], vec![]));
    let e = t.err("alice", encrypt(&uid, &[1; 1], vec![]));
    assert_eq!(reason(&e), ResultReason::PermissionDenied);
    for r in [r, r2] {
        let d = decrypt(
            &uid,
            &bytes(&r, "Data"),
            "IVCounterNonce",
            &bytes(&r, "IVCounterNonce"),
            &bytes(&r, "AuthenticatedEncryptionTag"),
        );
        assert_eq!(bytes(&t.ok("alice", d), "Data")[0], 1);
    }
}

/// 3DES (legacy): Create gives 24 bytes with odd DES parity and CryptographicLength 168, but
/// the key does not encrypt; Register refuses two-key TDEA (16 bytes).
#[test]
fn tdes_keys_are_kept_but_do_not_encrypt() {
    let mut t = T::new();
    let r = t.ok("alice", create_sym("DES3", 168, 0x0C, &[], true));
    let uid = text(&r, "UniqueIdentifier");
    let g = t.ok("alice", uid_req("Get", &uid));
    let kb = field(field(&g, "SymmetricKey").unwrap(), "KeyBlock").unwrap();
    let key = bytes(field(kb, "KeyValue").unwrap(), "KeyMaterial");
    assert_eq!(key.len(), 24);
    assert!(key.iter().all(|b| b.count_ones() % 2 == 1));
    let e = t.err("alice", encrypt(&uid, &[0; 8], vec![]));
    assert_eq!(reason(&e), ResultReason::UnsupportedCryptographicParameters);
    let e = t.err("alice", register_sym(None, "DES3", &[1u8; 16], 0x0C));
    assert_eq!(reason(&e), ResultReason::InvalidField);
    let e = t.err("alice", create_sym("DES3", 112, 0x0C, &[], true));
    assert_eq!(reason(&e), ResultReason::InvalidField);
}

/// Plain ChaCha20 through Encrypt/Decrypt (OASIS CS-BC-M-CHACHA20-3: 8-byte nonce ..01), and
/// a ChaCha20 key with a 12-byte nonce still gets ChaCha20-Poly1305 (a tag comes back).
#[test]
fn plain_chacha20_by_iv_length() {
    let mut t = T::new();
    let uid = text(
        &t.ok("alice", register_sym(None, "ChaCha20", &[0u8; 32], 0x0C)),
        "UniqueIdentifier",
    );
    let r = t.ok(
        "alice",
        encrypt(
            &uid,
            &[0; 60],
            vec![hexv("IVCounterNonce", "0000000000000001")],
        ),
    );
    assert_eq!(
        hex::encode(bytes(&r, "Data")),
        "de9cba7bf3d69ef5e786dc63973f653a0b49e015adbff7134fcb7df137821031\
         e85a050278a7084527214f73efc7fa5b5277062eb7a0433e445f41e3"
    );
    assert!(field(&r, "AuthenticatedEncryptionTag").is_none());
    let r = t.ok(
        "alice",
        encrypt(
            &uid,
            &[0; 4],
            vec![hexv("IVCounterNonce", "000000000000000000000000")],
        ),
    );
    assert_eq!(bytes(&r, "AuthenticatedEncryptionTag").len(), 16);
    // A missing IV on a CBC decryption is Invalid Message (OASIS CS-BC-M-11).
    let aes = text(
        &t.ok("alice", register_sym(None, "AES", &[0u8; 16], 0x0C)),
        "UniqueIdentifier",
    );
    let e = t.err(
        "alice",
        json!({"tag":"Decrypt","type":"Structure","value":[
            {"tag":"UniqueIdentifier","type":"TextString","value":aes},
            {"tag":"CryptographicParameters","type":"Structure","value":[
                {"tag":"BlockCipherMode","type":"Enumeration","value":"CBC"}]},
            {"tag":"Data","type":"ByteString","value":"00000000000000000000000000000000"}]}),
    );
    assert_eq!(reason(&e), ResultReason::InvalidMessage);
}

/// Issue 12, High #2 on the two other paths that take a caller nonce: the first part of a
/// multi-part AES-GCM encryption, and CTR IVs. An encrypt-only grantee who picks the nonce
/// could re-use the owner's and read the owner's plaintext back by XOR: refused
/// (PermissionDenied), while a server-drawn nonce, the owner, and a CBC IV stay allowed.
#[test]
fn encrypt_only_grantee_picks_no_nonce_for_streams_or_ctr() {
    let mut t = T::new();
    let uid = text(
        &t.ok("alice", register_sym(None, "AES", &[7; 32], 12)),
        "UniqueIdentifier",
    );
    t.grant("alice", &uid, "bob", &["encrypt"]);
    let first_part = |nonce: bool| {
        let mut p = vec![gcm_params(Some(16)), flag("InitIndicator")];
        if nonce {
            p.push(hexv("IVCounterNonce", "CAFEBABEFACEDBADDECAF888"));
        }
        encrypt(&uid, b"abc", p)
    };
    let e = t.err("bob", first_part(true));
    assert_eq!(reason(&e), ResultReason::PermissionDenied);
    t.ok("bob", first_part(false));
    t.ok("alice", first_part(true));

    let with_iv = |mode: &str| {
        encrypt(
            &uid,
            &[0; 16],
            vec![bc_params(mode, None), iv("IVCounterNonce", &[1; 16])],
        )
    };
    let e = t.err("bob", with_iv("CTR"));
    assert_eq!(reason(&e), ResultReason::PermissionDenied);
    t.ok("bob", encrypt(&uid, &[0; 16], vec![bc_params("CTR", None)]));
    t.ok("alice", with_iv("CTR"));
    t.ok("bob", with_iv("CBC"));
}
