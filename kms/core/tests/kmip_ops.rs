//! Every KMIP operation through `Kms::kmip_json`, including the negative cases: wrong types,
//! unknown operation, non-owner, revoked key, usage-mask violation, destroyed key.

mod common;
use common::*;

use std::sync::Arc;

use kms::kmip::json::JsonError;
use kms::kmip::types::ResultReason;
use kms::object::ManagedObject;
use kms::store::Store;
use kms::store::memory::MemoryStore;
use kms::{Env, Kms, KmsConfig, KmsError};
use serde_json::{Value, json};
use testkit::TestRng;

#[test]
fn aes_create_encrypt_decrypt_by_tag_all_sizes_and_modes() {
    let mut t = T::new();
    for (bits, mode) in [
        (128, "GCM"),
        (192, "GCM"),
        (256, "GCM"),
        (128, "GCMSIV"),
        (256, "GCMSIV"),
    ] {
        let tag = format!("k{bits}{mode}");
        let r = t.ok("alice", create_sym("AES", bits, 2108, &[&tag], true));
        assert_eq!(r["tag"], "CreateResponse");
        assert_eq!(text(&r, "ObjectType"), "SymmetricKey");
        let uid = text(&r, "UniqueIdentifier");
        let by_tag = format!("[\"{tag}\"]");
        let params = json!({"tag":"CryptographicParameters","type":"Structure","value":[
            {"tag":"BlockCipherMode","type":"Enumeration","value":mode},
            {"tag":"CryptographicAlgorithm","type":"Enumeration","value":"AES"}]});
        let e = t.ok(
            "alice",
            encrypt(&by_tag, b"secret message", vec![params.clone()]),
        );
        assert_eq!(text(&e, "UniqueIdentifier"), uid);
        let (ct, nonce, tg) = (
            bytes(&e, "Data"),
            bytes(&e, "IVCounterNonce"),
            bytes(&e, "AuthenticatedEncryptionTag"),
        );
        assert_eq!((ct.len(), nonce.len(), tg.len()), (14, 12, 16));
        let mut req = decrypt(&uid, &ct, "IVCounterNonce", &nonce, &tg);
        req["value"].as_array_mut().unwrap().push(params);
        let d = t.ok("alice", req);
        assert_eq!(bytes(&d, "Data"), b"secret message");
        // Tampering is an authentication failure (KMIP Cryptographic Failure, 422).
        let mut bad = ct.clone();
        bad[0] ^= 1;
        let e = t.err("alice", decrypt(&uid, &bad, "IVCounterNonce", &nonce, &tg));
        assert_eq!(reason(&e), ResultReason::CryptographicFailure);
        assert_eq!(e.http_status(), 422);
    }
}

#[test]
fn chacha20_and_nonce_spelling() {
    let mut t = T::new();
    let uid = text(
        &t.ok("alice", create_sym("ChaCha20", 256, 12, &[], true)),
        "UniqueIdentifier",
    );
    // The client supplies its nonce with the older spelling: the answer uses it too.
    let e = t.ok("alice", encrypt(&uid, b"hi", vec![json!({"tag":"IvCounterNonce","type":"ByteString","value":"000102030405060708090A0B"})]));
    assert!(field(&e, "IVCounterNonce").is_none());
    assert_eq!(bytes(&e, "IvCounterNonce"), (0..12).collect::<Vec<u8>>());
    let d = t.ok(
        "alice",
        decrypt(
            &uid,
            &bytes(&e, "Data"),
            "IvCounterNonce",
            &bytes(&e, "IvCounterNonce"),
            &bytes(&e, "AuthenticatedEncryptionTag"),
        ),
    );
    assert_eq!(bytes(&d, "Data"), b"hi");
    // nonce ‖ ciphertext ‖ tag in Data alone also decrypts.
    let mut blob = bytes(&e, "IvCounterNonce");
    blob.extend(bytes(&e, "Data"));
    blob.extend(bytes(&e, "AuthenticatedEncryptionTag"));
    let d = t.ok(
        "alice",
        json!({"tag":"Decrypt","type":"Structure","value":[
        {"tag":"UniqueIdentifier","type":"TextString","value":uid},
        {"tag":"Data","type":"ByteString","value":hex::encode_upper(&blob)}]}),
    );
    assert_eq!(bytes(&d, "Data"), b"hi");
    // Wrong lengths are refused.
    let e = t.err("alice", create_sym("ChaCha20", 128, 12, &[], true));
    assert_eq!(reason(&e), ResultReason::InvalidField);
}

#[test]
fn lifecycle_preactive_activate_revoke_destroy() {
    let mut t = T::new();
    let uid = text(
        &t.ok("alice", create_sym("AES", 256, 12, &["life"], false)),
        "UniqueIdentifier",
    );
    let e = t.err("alice", encrypt(&uid, b"x", vec![]));
    assert_eq!(reason(&e), ResultReason::WrongKeyLifecycleState);
    let a = t.ok("alice", uid_req("Activate", &uid));
    assert_eq!(text(&a, "UniqueIdentifier"), uid);
    assert_eq!(
        reason(&t.err("alice", uid_req("Activate", &uid))),
        ResultReason::WrongKeyLifecycleState
    );
    t.ok("alice", encrypt(&uid, b"x", vec![]));
    // An active key cannot be destroyed.
    assert_eq!(
        reason(&t.err("alice", uid_req("Destroy", &uid))),
        ResultReason::WrongKeyLifecycleState
    );
    t.ok(
        "alice",
        json!({"tag":"Revoke","type":"Structure","value":[
        {"tag":"UniqueIdentifier","type":"TextString","value":uid},
        {"tag":"RevocationReason","type":"Structure","value":[
            {"tag":"RevocationReasonCode","type":"Enumeration","value":"CessationOfOperation"}]}]}),
    );
    let e = t.err("alice", encrypt(&uid, b"x", vec![]));
    assert_eq!(reason(&e), ResultReason::WrongKeyLifecycleState);
    assert!(e.to_string().contains("revoked"), "{e}");
    let attrs = t.ok("alice", uid_req("GetAttributes", &uid));
    let a = field(&attrs, "Attributes").unwrap();
    assert_eq!(text(a, "State"), "Deactivated");
    t.ok("alice", uid_req("Destroy", &uid));
    // The material is gone from the stored record, not just hidden.
    let (rec, _) = t.kms.store().get(&uid).run().unwrap().unwrap();
    let o = ManagedObject::from_record(&rec).unwrap();
    assert!(o.material.is_none());
    assert_eq!(
        reason(&t.err("alice", uid_req("Get", &uid))),
        ResultReason::ObjectDestroyed
    );
    assert_eq!(
        reason(&t.err("alice", encrypt(&uid, b"x", vec![]))),
        ResultReason::ObjectDestroyed
    );
    // Destroyed objects leave the tag index; only a Locate by state finds them.
    let l = t.ok(
        "alice",
        json!({"tag":"Locate","value":[{"tag":"Attributes","value":[tag_attr(&["life"])]}]}),
    );
    assert_eq!(field(&l, "LocatedItems").unwrap()["value"], 0);
    let l = t.ok(
        "alice",
        json!({"tag":"Locate","value":[{"tag":"Attributes","value":[
        {"tag":"State","type":"Enumeration","value":"Destroyed"}]}]}),
    );
    assert_eq!(text(&l, "UniqueIdentifier"), uid);
}

#[test]
fn activation_date_in_the_future_then_reached() {
    let mut t = T::new();
    let req = json!({"tag":"Create","value":[
        {"tag":"ObjectType","type":"Enumeration","value":"SymmetricKey"},
        {"tag":"Attributes","value":[
            {"tag":"CryptographicAlgorithm","type":"Enumeration","value":"AES"},
            {"tag":"CryptographicLength","type":"Integer","value":128},
            {"tag":"ActivationDate","type":"DateTime","value":"2030-01-01T00:00:00Z"}]}]});
    let uid = text(&t.ok("alice", req), "UniqueIdentifier");
    assert_eq!(
        reason(&t.err("alice", encrypt(&uid, b"x", vec![]))),
        ResultReason::WrongKeyLifecycleState
    );
    t.now = 1_900_000_000;
    t.ok("alice", encrypt(&uid, b"x", vec![]));
}

#[test]
fn usage_mask_is_enforced() {
    let mut t = T::new();
    // Decrypt (8) only.
    let uid = text(
        &t.ok("alice", create_sym("AES", 256, 8, &[], true)),
        "UniqueIdentifier",
    );
    let e = t.err("alice", encrypt(&uid, b"x", vec![]));
    assert_eq!(reason(&e), ResultReason::IncompatibleCryptographicUsageMask);
    // Sign-only private key cannot verify through its public half if that lacks Verify.
    let r = t.ok(
        "alice",
        json!({"tag":"CreateKeyPair","value":[
        {"tag":"CommonAttributes","value":[
            {"tag":"CryptographicAlgorithm","type":"Enumeration","value":"ECDSA"},
            {"tag":"RecommendedCurve","type":"Enumeration","value":"P_256"},
            {"tag":"ActivationDate","type":"DateTime","value":"2024-01-01T00:00:00Z"}]},
        {"tag":"PublicKeyAttributes","value":[
            {"tag":"CryptographicUsageMask","type":"Integer","value":4}]}]}),
    );
    let pk = text(&r, "PublicKeyUniqueIdentifier");
    let e = t.err(
        "alice",
        json!({"tag":"SignatureVerify","value":[
        {"tag":"UniqueIdentifier","type":"TextString","value":pk},
        {"tag":"Data","type":"ByteString","value":"00"},
        {"tag":"SignatureData","type":"ByteString","value":"00"}]}),
    );
    assert_eq!(reason(&e), ResultReason::IncompatibleCryptographicUsageMask);
}

#[test]
fn key_pairs_sign_verify_export_import() {
    let mut t = T::new();
    for (alg, curve, hash) in [
        ("ECDSA", Some("P256"), "SHA256"),
        ("EC", Some("P_384"), "SHA_384"),
        ("Ed25519", None, "SHA512"),
    ] {
        let tag = format!("pair-{alg}");
        let r = t.ok("alice", create_pair(alg, curve, &[&tag]));
        let sk = text(&r, "PrivateKeyUniqueIdentifier");
        let pk = text(&r, "PublicKeyUniqueIdentifier");
        let params = json!({"tag":"CryptographicParameters","value":[
            {"tag":"HashingAlgorithm","type":"Enumeration","value":hash}]});
        let s = t.ok(
            "alice",
            json!({"tag":"Sign","value":[
            {"tag":"UniqueIdentifier","type":"TextString","value":sk},
            params.clone(),
            {"tag":"Data","type":"ByteString","value":hex::encode_upper(b"to be signed")}]}),
        );
        let sig = bytes(&s, "SignatureData");
        let verify = |t: &mut T, uid: &str, data: &[u8]| {
            let v = t.ok(
                "alice",
                json!({"tag":"SignatureVerify","value":[
                {"tag":"UniqueIdentifier","type":"TextString","value":uid},
                {"tag":"Data","type":"ByteString","value":hex::encode_upper(data)},
                {"tag":"SignatureData","type":"ByteString","value":hex::encode_upper(&sig)}]}),
            );
            text(&v, "ValidityIndicator")
        };
        assert_eq!(verify(&mut t, &pk, b"to be signed"), "Valid");
        assert_eq!(verify(&mut t, &pk, b"to be signeD"), "Invalid");
        // Export the private key as PKCS#8, import it under a new uid, sign again, verify.
        let g = t.ok(
            "alice",
            json!({"tag":"Export","value":[
            {"tag":"UniqueIdentifier","type":"TextString","value":sk},
            {"tag":"KeyFormatType","type":"Enumeration","value":"PKCS8"}]}),
        );
        assert_eq!(g["tag"], "ExportResponse");
        let obj = field(&g, "PrivateKey").unwrap();
        let kb = field(obj, "KeyBlock").unwrap();
        assert_eq!(text(kb, "KeyFormatType"), "PKCS8");
        let der = bytes(field(kb, "KeyValue").unwrap(), "KeyMaterial");
        assert_eq!(der[0], 0x30, "DER SEQUENCE");
        let imp = t.ok("alice", json!({"tag":"Import","value":[
            {"tag":"UniqueIdentifier","type":"TextString","value":format!("imported-{alg}")},
            {"tag":"ObjectType","type":"Enumeration","value":"PrivateKey"},
            {"tag":"ReplaceExisting","type":"Boolean","value":false},
            {"tag":"Attributes","value":[
                {"tag":"ActivationDate","type":"DateTime","value":"2024-01-01T00:00:00Z"}]},
            {"tag":"Object","value":[{"tag":"KeyBlock","value":[
                {"tag":"KeyFormatType","type":"Enumeration","value":"PKCS8"},
                {"tag":"KeyValue","value":[{"tag":"KeyMaterial","type":"ByteString","value":hex::encode_upper(&der)}]}]}]}]}));
        let imported = text(&imp, "UniqueIdentifier");
        assert_eq!(imported, format!("imported-{alg}"));
        let s2 = t.ok(
            "alice",
            json!({"tag":"Sign","value":[
            {"tag":"UniqueIdentifier","type":"TextString","value":imported},
            {"tag":"Data","type":"ByteString","value":hex::encode_upper(b"again")}]}),
        );
        let v = t.ok(
            "alice",
            json!({"tag":"SignatureVerify","value":[
            {"tag":"UniqueIdentifier","type":"TextString","value":pk},
            {"tag":"Data","type":"ByteString","value":hex::encode_upper(b"again")},
            {"tag":"SignatureData","type":"ByteString","value":text(&s2, "SignatureData")}]}),
        );
        assert_eq!(text(&v, "ValidityIndicator"), "Valid");
        // Public key: SPKI (X509) by default, raw on request; re-import the raw form.
        let g = t.ok("alice", uid_req("Get", &pk));
        let kb = field(field(&g, "PublicKey").unwrap(), "KeyBlock").unwrap();
        assert_eq!(text(kb, "KeyFormatType"), "X509");
        let g = t.ok(
            "alice",
            json!({"tag":"Get","value":[
            {"tag":"UniqueIdentifier","type":"TextString","value":pk},
            {"tag":"KeyFormatType","type":"Enumeration","value":"Raw"}]}),
        );
        let kb = field(field(&g, "PublicKey").unwrap(), "KeyBlock").unwrap();
        let raw = bytes(field(kb, "KeyValue").unwrap(), "KeyMaterial");
        let curve_name = curve.unwrap_or("CURVEED25519");
        let r = t.ok("alice", json!({"tag":"Register","value":[
            {"tag":"ObjectType","type":"Enumeration","value":"PublicKey"},
            {"tag":"Attributes","value":[
                {"tag":"RecommendedCurve","type":"Enumeration","value":curve_name},
                {"tag":"ActivationDate","type":"DateTime","value":"2024-01-01T00:00:00Z"}]},
            {"tag":"PublicKey","value":[{"tag":"KeyBlock","value":[
                {"tag":"KeyFormatType","type":"Enumeration","value":"Raw"},
                {"tag":"KeyValue","value":[{"tag":"KeyMaterial","type":"ByteString","value":hex::encode_upper(&raw)}]}]}]}]}));
        assert_eq!(r["tag"], "RegisterResponse");
        let pk2 = text(&r, "UniqueIdentifier");
        assert_eq!(verify(&mut t, &pk2, b"to be signed"), "Valid");
        // Signing with the public key is refused.
        let e = t.err(
            "alice",
            json!({"tag":"Sign","value":[
            {"tag":"UniqueIdentifier","type":"TextString","value":pk},
            {"tag":"Data","type":"ByteString","value":"00"}]}),
        );
        assert_eq!(reason(&e), ResultReason::InvalidObjectType);
    }
    // Mismatched signature parameters.
    let r = t.ok("alice", create_pair("ECDSA", Some("P256"), &[]));
    let e = t.err("alice", json!({"tag":"Sign","value":[
        {"tag":"UniqueIdentifier","type":"TextString","value":text(&r, "PrivateKeyUniqueIdentifier")},
        {"tag":"CryptographicParameters","value":[{"tag":"HashingAlgorithm","type":"Enumeration","value":"SHA384"}]},
        {"tag":"Data","type":"ByteString","value":"00"}]}));
    assert_eq!(reason(&e), ResultReason::UnsupportedCryptographicParameters);
}

#[test]
fn register_symmetric_and_get_formats() {
    let mut t = T::new();
    let key: Vec<u8> = (0..32).collect();
    let r = t.ok(
        "alice",
        json!({"tag":"Register","value":[
        {"tag":"ObjectType","type":"Enumeration","value":"SymmetricKey"},
        {"tag":"Attributes","value":[
            {"tag":"CryptographicAlgorithm","type":"Enumeration","value":"AES"},
            {"tag":"ActivationDate","type":"DateTime","value":"2024-01-01T00:00:00Z"}]},
        {"tag":"SymmetricKey","value":[{"tag":"KeyBlock","value":[
            {"tag":"KeyFormatType","type":"Enumeration","value":"TransparentSymmetricKey"},
            {"tag":"KeyValue","value":[{"tag":"KeyMaterial","value":[
                {"tag":"Key","type":"ByteString","value":hex::encode_upper(&key)}]}]}]}]}]}),
    );
    let uid = text(&r, "UniqueIdentifier");
    // Raw by default (as the Cosmian KMS answers), TransparentSymmetricKey on request.
    let g = t.ok("alice", uid_req("Get", &uid));
    assert_eq!(g["tag"], "GetResponse");
    assert_eq!(text(&g, "ObjectType"), "SymmetricKey");
    let kb = field(field(&g, "SymmetricKey").unwrap(), "KeyBlock").unwrap();
    // KMIP and the Cosmian KMS carry the key under its object-type tag, not `Object`.
    assert!(field(&g, "Object").is_none());
    assert_eq!(text(kb, "KeyFormatType"), "Raw");
    assert_eq!(bytes(field(kb, "KeyValue").unwrap(), "KeyMaterial"), key);
    let g = t.ok(
        "alice",
        json!({"tag":"Get","value":[
        {"tag":"UniqueIdentifier","type":"TextString","value":uid},
        {"tag":"KeyFormatType","type":"Enumeration","value":"TransparentSymmetricKey"},
        {"tag":"KeyWrapType","type":"Enumeration","value":"AsRegistered"}]}),
    );
    let kb = field(field(&g, "SymmetricKey").unwrap(), "KeyBlock").unwrap();
    assert_eq!(text(kb, "CryptographicAlgorithm"), "AES");
    assert_eq!(field(kb, "CryptographicLength").unwrap()["value"], 256);
    let km = field(field(kb, "KeyValue").unwrap(), "KeyMaterial").unwrap();
    assert_eq!(bytes(km, "Key"), key);
    let g = t.ok(
        "alice",
        json!({"tag":"Get","value":[
        {"tag":"UniqueIdentifier","type":"TextString","value":uid},
        {"tag":"KeyFormatType","type":"Enumeration","value":"0x00000001"}]}),
    );
    let kb = field(field(&g, "SymmetricKey").unwrap(), "KeyBlock").unwrap();
    assert_eq!(text(kb, "KeyFormatType"), "Raw");
    assert_eq!(bytes(field(kb, "KeyValue").unwrap(), "KeyMaterial"), key);
    let e = t.err(
        "alice",
        json!({"tag":"Get","value":[
        {"tag":"UniqueIdentifier","type":"TextString","value":uid},
        {"tag":"KeyFormatType","type":"Enumeration","value":"PKCS8"}]}),
    );
    assert_eq!(reason(&e), ResultReason::KeyFormatTypeNotSupported);
    let e = t.err(
        "alice",
        json!({"tag":"Get","value":[
        {"tag":"UniqueIdentifier","type":"TextString","value":uid},
        {"tag":"KeyWrappingSpecification","value":[
            {"tag":"WrappingMethod","type":"Enumeration","value":"Encrypt"}]}]}),
    );
    // A wrapping specification naming no wrapping key (tests/kmip_wrap.rs has the rest).
    assert_eq!(reason(&e), ResultReason::MissingData);
    // A known-answer check through the KMS: AES-256-GCM of empty data with a zero key.
    let zero = t.ok("alice", json!({"tag":"Register","value":[
        {"tag":"ObjectType","type":"Enumeration","value":"SymmetricKey"},
        {"tag":"Attributes","value":[{"tag":"ActivationDate","type":"DateTime","value":"2024-01-01T00:00:00Z"}]},
        {"tag":"SymmetricKey","value":[{"tag":"KeyBlock","value":[
            {"tag":"KeyFormatType","type":"Enumeration","value":"Raw"},
            {"tag":"KeyValue","value":[{"tag":"KeyMaterial","type":"ByteString","value":hex::encode_upper([0; 32])}]}]}]}]}));
    let e = t.ok(
        "alice",
        encrypt(
            &text(&zero, "UniqueIdentifier"),
            b"",
            vec![json!({"tag":"IVCounterNonce","type":"ByteString","value":hex::encode_upper([0; 12])})],
        ),
    );
    // AES-256-GCM, K = 0^256, IV = 0^96, P = A = empty (McGrew & Viega test case 13).
    assert_eq!(
        text(&e, "AuthenticatedEncryptionTag"),
        "530F8AFBC74536B9A963B4F1C4CB738B"
    );
    // Wrong key sizes and object types.
    let e = t.err("alice", json!({"tag":"Register","value":[
        {"tag":"ObjectType","type":"Enumeration","value":"SymmetricKey"},
        {"tag":"Attributes","value":[]},
        {"tag":"Object","value":[{"tag":"KeyBlock","value":[
            {"tag":"KeyFormatType","type":"Enumeration","value":"Raw"},
            {"tag":"KeyValue","value":[{"tag":"KeyMaterial","type":"ByteString","value":"0011"}]}]}]}]}));
    assert_eq!(reason(&e), ResultReason::InvalidField);
}

#[test]
fn attributes_get_list_add_set_delete() {
    let mut t = T::new();
    let uid = text(
        &t.ok("alice", create_sym("AES", 256, 12, &["a1"], true)),
        "UniqueIdentifier",
    );
    let nm = |v: &str| {
        json!({"tag":"Name","value":[
        {"tag":"NameValue","type":"TextString","value":v},
        {"tag":"NameType","type":"Enumeration","value":"UninterpretedTextString"}]})
    };
    t.ok(
        "alice",
        json!({"tag":"AddAttribute","value":[
        {"tag":"UniqueIdentifier","type":"TextString","value":uid},
        {"tag":"NewAttribute","value":[nm("first")]}]}),
    );
    t.ok(
        "alice",
        json!({"tag":"SetAttribute","value":[
        {"tag":"UniqueIdentifier","type":"TextString","value":uid},
        {"tag":"NewAttribute","value":[tag_attr(&["b1", "b2"])]}]}),
    );
    t.ok("alice", json!({"tag":"AddAttribute","value":[
        {"tag":"UniqueIdentifier","type":"TextString","value":uid},
        {"tag":"NewAttribute","value":[{"tag":"Description","type":"TextString","value":"hello"}]}]}));
    let e = t.err("alice", json!({"tag":"AddAttribute","value":[
        {"tag":"UniqueIdentifier","type":"TextString","value":uid},
        {"tag":"NewAttribute","value":[{"tag":"Description","type":"TextString","value":"again"}]}]}));
    assert_eq!(reason(&e), ResultReason::AttributeSingleValued);
    let e = t.err("alice", json!({"tag":"SetAttribute","value":[
        {"tag":"UniqueIdentifier","type":"TextString","value":uid},
        {"tag":"NewAttribute","value":[{"tag":"CryptographicLength","type":"Integer","value":128}]}]}));
    assert!(e.to_string().contains("read-only"), "{e}");
    let ga = t.ok("alice", uid_req("GetAttributes", &uid));
    let a = field(&ga, "Attributes").unwrap();
    let s = a.to_string();
    assert!(s.contains("first") && s.contains("hello"), "{s}");
    // The tag attribute holds ["_kk","b1","b2"] (a1 was replaced; the system tag stays).
    let va = field(field(a, "VendorAttributes").unwrap(), "VendorAttributes").unwrap();
    let tags: Vec<String> = serde_json::from_slice(&bytes(va, "AttributeValue")).unwrap();
    assert_eq!(tags, ["_kk", "b1", "b2"]);
    // Filtered GetAttributes.
    let ga = t.ok(
        "alice",
        json!({"tag":"GetAttributes","value":[
        {"tag":"UniqueIdentifier","type":"TextString","value":uid},
        {"tag":"AttributeReference","type":"Enumeration","value":"CryptographicLength"}]}),
    );
    let a = field(&ga, "Attributes").unwrap();
    assert_eq!(a["value"].as_array().unwrap().len(), 1);
    assert_eq!(field(a, "CryptographicLength").unwrap()["value"], 256);
    let gl = t.ok("alice", uid_req("GetAttributeList", &uid));
    let refs: Vec<&str> = gl["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["tag"] == "AttributeReference" && c["type"] == "Enumeration")
        .map(|c| c["value"].as_str().unwrap())
        .collect();
    assert!(
        refs.contains(&"CryptographicAlgorithm")
            && refs.contains(&"Name")
            && refs.contains(&"State"),
        "{refs:?}"
    );
    t.ok(
        "alice",
        json!({"tag":"DeleteAttribute","value":[
        {"tag":"UniqueIdentifier","type":"TextString","value":uid},
        {"tag":"CurrentAttribute","value":[nm("first")]}]}),
    );
    t.ok(
        "alice",
        json!({"tag":"DeleteAttribute","value":[
        {"tag":"UniqueIdentifier","type":"TextString","value":uid},
        {"tag":"AttributeReference","type":"Enumeration","value":"Description"}]}),
    );
    let s = field(&t.ok("alice", uid_req("GetAttributes", &uid)), "Attributes")
        .unwrap()
        .to_string();
    assert!(!s.contains("first") && !s.contains("hello"), "{s}");
    // Locate by the new name after SetAttribute.
    t.ok(
        "alice",
        json!({"tag":"SetAttribute","value":[
        {"tag":"UniqueIdentifier","type":"TextString","value":uid},
        {"tag":"NewAttribute","value":[nm("named")]}]}),
    );
    let l = t.ok(
        "alice",
        json!({"tag":"Locate","value":[{"tag":"Attributes","value":[nm("named")]}]}),
    );
    assert_eq!(text(&l, "UniqueIdentifier"), uid);
}

#[test]
fn locate_filters_and_paging() {
    let mut t = T::new();
    let a = text(
        &t.ok("alice", create_sym("AES", 256, 12, &["x", "y"], true)),
        "UniqueIdentifier",
    );
    let b = text(
        &t.ok("alice", create_sym("ChaCha20", 256, 12, &["x"], false)),
        "UniqueIdentifier",
    );
    let p = t.ok("alice", create_pair("ECDSA", Some("P256"), &["x"]));
    t.ok("bob", create_sym("AES", 256, 12, &["x"], true));
    let locate = |t: &mut T, attrs: Vec<Value>, extra: Vec<Value>| -> (i64, Vec<String>) {
        let mut v = extra;
        v.push(json!({"tag":"Attributes","value":attrs}));
        let r = t.ok("alice", json!({"tag":"Locate","value":v}));
        let n = field(&r, "LocatedItems").unwrap()["value"]
            .as_i64()
            .unwrap();
        let mut u: Vec<String> = r["value"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["tag"] == "UniqueIdentifier")
            .map(|c| c["value"].as_str().unwrap().to_string())
            .collect();
        u.sort();
        (n, u)
    };
    assert_eq!(
        locate(&mut t, vec![tag_attr(&["x"])], vec![]).0,
        4,
        "alice sees her 4 objects, not bob's"
    );
    assert_eq!(
        locate(&mut t, vec![tag_attr(&["x", "y"])], vec![]).1,
        vec![a.clone()]
    );
    assert_eq!(
        locate(
            &mut t,
            vec![json!({"tag":"CryptographicAlgorithm","type":"Enumeration","value":"ChaCha20"})],
            vec![]
        )
        .1,
        vec![b.clone()]
    );
    assert_eq!(
        locate(
            &mut t,
            vec![json!({"tag":"ObjectType","type":"Enumeration","value":"PrivateKey"})],
            vec![]
        )
        .1,
        vec![text(&p, "PrivateKeyUniqueIdentifier")]
    );
    assert_eq!(
        locate(
            &mut t,
            vec![json!({"tag":"State","type":"Enumeration","value":"PreActive"})],
            vec![]
        )
        .1,
        vec![b.clone()]
    );
    assert_eq!(locate(&mut t, vec![tag_attr(&["_kk"])], vec![]).0, 2);
    let (n, page) = locate(
        &mut t,
        vec![],
        vec![
            json!({"tag":"MaximumItems","type":"Integer","value":2}),
            json!({"tag":"OffsetItems","type":"Integer","value":1}),
        ],
    );
    assert_eq!((n, page.len()), (4, 2));
    // A tag list that matches several objects cannot name one object.
    let e = t.err("alice", encrypt("[\"x\"]", b"x", vec![]));
    assert_eq!(reason(&e), ResultReason::InvalidField);
    let e = t.err("alice", encrypt("[\"nope\"]", b"x", vec![]));
    assert_eq!(reason(&e), ResultReason::ObjectNotFound);
}

#[test]
fn rekey_moves_tags_and_keeps_old_key_usable() {
    let mut t = T::new();
    let old = text(
        &t.ok("alice", create_sym("AES", 128, 12, &["rk"], true)),
        "UniqueIdentifier",
    );
    let e = t.ok("alice", encrypt(&old, b"before", vec![]));
    let r = t.ok("alice", uid_req("ReKey", "[\"rk\"]"));
    assert_eq!(r["tag"], "ReKeyResponse");
    let new = text(&r, "UniqueIdentifier");
    assert_ne!(new, old);
    let e2 = t.ok("alice", encrypt("[\"rk\"]", b"after", vec![]));
    assert_eq!(text(&e2, "UniqueIdentifier"), new);
    let d = t.ok(
        "alice",
        decrypt(
            &old,
            &bytes(&e, "Data"),
            "IVCounterNonce",
            &bytes(&e, "IVCounterNonce"),
            &bytes(&e, "AuthenticatedEncryptionTag"),
        ),
    );
    assert_eq!(bytes(&d, "Data"), b"before");
    let g = t.ok("alice", uid_req("GetAttributes", &new)).to_string();
    assert!(g.contains("ReplacedObjectLink") && g.contains(&old), "{g}");
    let g = t.ok(
        "alice",
        json!({"tag":"Get","value":[
        {"tag":"UniqueIdentifier","type":"TextString","value":new}]}),
    );
    let kb = field(field(&g, "SymmetricKey").unwrap(), "KeyBlock").unwrap();
    assert_eq!(field(kb, "CryptographicLength").unwrap()["value"], 128);
}

#[test]
fn access_rights_like_cosmian() {
    let mut t = T::new();
    let uid = text(
        &t.ok("alice", create_sym("AES", 256, 12, &["shared"], true)),
        "UniqueIdentifier",
    );
    // Bob has no right at all: to him the object does not exist (issue 12; this was
    // PermissionDenied, which told him the guessed uid exists).
    let e = t.err("bob", encrypt(&uid, b"x", vec![]));
    assert_eq!(reason(&e), ResultReason::ObjectNotFound);
    assert_eq!(e.http_status(), 422);
    assert_eq!(
        reason(&t.err("bob", uid_req("Get", &uid))),
        ResultReason::ObjectNotFound
    );
    // By tag, bob cannot even see it.
    assert_eq!(
        reason(&t.err("bob", encrypt("[\"shared\"]", b"x", vec![]))),
        ResultReason::ObjectNotFound
    );
    // Only the owner grants.
    let e = t
        .kms
        .grant_access(
            &mut Env {
                now: NOW,
                rng: &mut TestRng::new(1),
            },
            "bob",
            &uid,
            "bob",
            &["encrypt".into()],
        )
        .run()
        .unwrap_err();
    assert!(matches!(e, KmsError::UnknownObject), "{e:?}");
    let ok = t.kms.grant_access_json(&mut Env { now: NOW, rng: &mut TestRng::new(7) }, "alice", format!(
        r#"{{"unique_identifier":"{uid}","user_id":"bob","operation_types":["encrypt","get_attributes"]}}"#).as_bytes()).run().unwrap();
    let ok: Value = serde_json::from_slice(&ok).unwrap();
    assert!(ok["success"].as_str().unwrap().contains("bob"));
    t.kms
        .grant_access_json(
            &mut Env {
                now: NOW,
                rng: &mut TestRng::new(7),
            },
            "alice",
            format!(
                r#"{{"unique_identifier":"{uid}","user_id":"carol","operation_type":"decrypt"}}"#
            )
            .as_bytes(),
        )
        .run()
        .unwrap();
    let e = t.ok("bob", encrypt("[\"shared\"]", b"x", vec![]));
    let e = t.err(
        "bob",
        decrypt(
            &uid,
            &bytes(&e, "Data"),
            "IVCounterNonce",
            &bytes(&e, "IVCounterNonce"),
            &bytes(&e, "AuthenticatedEncryptionTag"),
        ),
    );
    assert_eq!(reason(&e), ResultReason::PermissionDenied);
    t.ok("bob", uid_req("GetAttributes", &uid));
    assert_eq!(
        reason(&t.err("bob", uid_req("Destroy", &uid))),
        ResultReason::PermissionDenied
    );
    let list = serde_json::to_value(t.kms.list_access("alice", &uid).run().unwrap()).unwrap();
    assert_eq!(
        list,
        json!([{"user_id":"bob","operations":["encrypt","getattributes"]},{"user_id":"carol","operations":["decrypt"]}])
    );
    assert_eq!(
        reason(&t.kms.list_access("bob", &uid).run().unwrap_err()),
        ResultReason::PermissionDenied
    );
    let e = t
        .kms
        .list_access("alice", "no-such-object")
        .run()
        .unwrap_err();
    assert!(matches!(e, KmsError::UnknownObject), "{e:?}");
    assert_eq!(e.http_status(), 404);
    let obtained = serde_json::to_value(t.kms.obtained("bob").run().unwrap()).unwrap();
    assert_eq!(
        obtained,
        json!([{"object_id":uid,"owner_id":"alice","state":"Active","operations":["encrypt","getattributes"],"is_wrapped":false}])
    );
    let owned = serde_json::to_value(t.kms.owned("alice").run().unwrap()).unwrap();
    assert_eq!(owned[0]["object_id"], uid);
    assert_eq!(owned[0]["state"], "Active");
    assert_eq!(owned[0]["attributes"]["CryptographicAlgorithm"], "AES");
    assert_eq!(owned[0]["is_wrapped"], false);
    assert_eq!(t.kms.owned("bob").run().unwrap().len(), 0);
    // Bob locates what was shared with him, once he holds the locate right (issue 12: any
    // right used to be enough).
    let l = t.ok(
        "bob",
        json!({"tag":"Locate","value":[{"tag":"Attributes","value":[tag_attr(&["shared"])]}]}),
    );
    assert_eq!(field(&l, "LocatedItems").unwrap()["value"], 0);
    t.grant("alice", &uid, "bob", &["locate"]);
    let l = t.ok(
        "bob",
        json!({"tag":"Locate","value":[{"tag":"Attributes","value":[tag_attr(&["shared"])]}]}),
    );
    assert_eq!(text(&l, "UniqueIdentifier"), uid);
    t.kms
        .revoke_access(
            &mut Env {
                now: NOW,
                rng: &mut TestRng::new(7),
            },
            "alice",
            &uid,
            "bob",
            &["encrypt".into(), "get_attributes".into(), "locate".into()],
        )
        .run()
        .unwrap();
    assert_eq!(
        reason(&t.err("bob", encrypt(&uid, b"x", vec![]))),
        ResultReason::ObjectNotFound
    );
    assert!(t.kms.obtained("bob").run().unwrap().is_empty());
    let e = t
        .kms
        .grant_access(
            &mut Env {
                now: NOW,
                rng: &mut TestRng::new(7),
            },
            "alice",
            &uid,
            "bob",
            &["fly".into()],
        )
        .run()
        .unwrap_err();
    assert_eq!(reason(&e), ResultReason::InvalidField);
    let e = t
        .kms
        .grant_access_json(
            &mut Env {
                now: NOW,
                rng: &mut TestRng::new(7),
            },
            "alice",
            b"{not json",
        )
        .run()
        .unwrap_err();
    assert!(matches!(e, KmsError::Malformed(JsonError::Syntax)), "{e:?}");
    assert_eq!(e.http_status(), 400);
}

#[test]
fn malformed_and_unknown_requests() {
    let mut t = T::new();
    let e = t.call_raw("alice", b"{\"tag\":").unwrap_err();
    assert!(matches!(e, KmsError::Malformed(JsonError::Syntax)), "{e:?}");
    assert_eq!(e.http_status(), 400);
    let e = t.err("alice", json!({"tag":"Frobnicate","value":[]}));
    assert_eq!(reason(&e), ResultReason::OperationNotSupported);
    assert_eq!(e.http_status(), 422);
    // Wrong item types.
    let e = t.err(
        "alice",
        json!({"tag":"Create","value":[
        {"tag":"ObjectType","type":"TextString","value":"SymmetricKey"}]}),
    );
    assert_eq!(reason(&e), ResultReason::InvalidField);
    assert!(e.to_string().contains("ObjectType"), "{e}");
    let e = t.err("alice", json!({"tag":"Create","value":[
        {"tag":"ObjectType","type":"Enumeration","value":"SymmetricKey"},
        {"tag":"Attributes","value":[{"tag":"CryptographicLength","type":"TextString","value":"256"}]}]}));
    assert_eq!(reason(&e), ResultReason::InvalidField);
    let e = t.err(
        "alice",
        json!({"tag":"Encrypt","value":[{"tag":"Data","type":"ByteString","value":"00"}]}),
    );
    assert_eq!(reason(&e), ResultReason::MissingData);
    let e = t.err("alice", json!({"tag":"Create","type":"Integer","value":1}));
    assert_eq!(reason(&e), ResultReason::InvalidField);
    let e = t.err("alice", json!({"tag":"Get","value":[{"tag":"UniqueIdentifier","type":"TextString","value":"nope"}]}));
    assert_eq!(reason(&e), ResultReason::ObjectNotFound);
    let e = t.call_raw("", b"{}").unwrap_err();
    assert!(matches!(e, KmsError::Unauthenticated), "{e:?}");
    assert_eq!(e.http_status(), 401);
    let big = vec![b' '; KmsConfig::default().json_limits.max_bytes + 1];
    let e = t.call_raw("alice", &big).unwrap_err();
    assert!(matches!(e, KmsError::TooLarge), "{e:?}");
    assert_eq!(e.http_status(), 413);
    let e = t.err("alice", json!({"tag":"Create","value":[
        {"tag":"ObjectType","type":"Enumeration","value":"SymmetricKey"},
        {"tag":"Attributes","value":[{"tag":"CryptographicAlgorithm","type":"Enumeration","value":"RSA"}]}]}));
    assert_eq!(reason(&e), ResultReason::UnsupportedCryptographicParameters);
}

#[test]
fn batch_request_message() {
    let mut t = T::new();
    let r = t.ok("alice", json!({"tag":"RequestMessage","value":[
        {"tag":"RequestHeader","value":[
            {"tag":"ProtocolVersion","value":[
                {"tag":"ProtocolVersionMajor","type":"Integer","value":2},
                {"tag":"ProtocolVersionMinor","type":"Integer","value":1}]},
            {"tag":"BatchErrorContinuationOption","type":"Enumeration","value":"Continue"},
            {"tag":"BatchCount","type":"Integer","value":3}]},
        {"tag":"BatchItem","value":[
            {"tag":"Operation","type":"Enumeration","value":"Create"},
            {"tag":"UniqueBatchItemID","type":"ByteString","value":"01"},
            {"tag":"RequestPayload","value":create_sym("AES", 256, 12, &["b"], true)["value"]}]},
        {"tag":"BatchItem","value":[
            {"tag":"Operation","type":"Enumeration","value":"Get"},
            {"tag":"RequestPayload","value":[{"tag":"UniqueIdentifier","type":"TextString","value":"missing"}]}]},
        {"tag":"BatchItem","value":[
            {"tag":"Operation","type":"Enumeration","value":"Locate"},
            {"tag":"RequestPayload","value":[{"tag":"Attributes","value":[tag_attr(&["b"])]}]}]}]}));
    assert_eq!(r["tag"], "ResponseMessage");
    let items: Vec<&Value> = r["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["tag"] == "BatchItem")
        .collect();
    assert_eq!(items.len(), 3);
    assert_eq!(text(items[0], "ResultStatus"), "Success");
    assert_eq!(text(items[0], "UniqueBatchItemID"), "01");
    let created = text(
        field(items[0], "ResponsePayload").unwrap(),
        "UniqueIdentifier",
    );
    assert_eq!(text(items[1], "ResultStatus"), "OperationFailed");
    assert_eq!(text(items[1], "ResultReason"), "ObjectNotFound");
    assert!(text(items[1], "ResultMessage").contains("not found"));
    assert_eq!(
        text(
            field(items[2], "ResponsePayload").unwrap(),
            "UniqueIdentifier"
        ),
        created
    );
    let header = field(&r, "ResponseHeader").unwrap();
    assert_eq!(field(header, "BatchCount").unwrap()["value"], 3);
}

fn message(option: Option<&str>, items: Vec<Value>) -> Value {
    let mut header = vec![json!({"tag":"ProtocolVersion","value":[
        {"tag":"ProtocolVersionMajor","type":"Integer","value":2},
        {"tag":"ProtocolVersionMinor","type":"Integer","value":1}]})];
    if let Some(o) = option {
        header.push(json!({"tag":"BatchErrorContinuationOption","type":"Enumeration","value":o}));
    }
    header.push(json!({"tag":"ClientCorrelationValue","type":"TextString","value":"c-1"}));
    header.push(json!({"tag":"BatchCount","type":"Integer","value":items.len()}));
    let mut v = vec![json!({"tag":"RequestHeader","value":header})];
    v.extend(items);
    json!({"tag":"RequestMessage","value":v})
}

fn item(op: &str, payload: Value) -> Value {
    json!({"tag":"BatchItem","value":[
        {"tag":"Operation","type":"Enumeration","value":op},
        {"tag":"RequestPayload","value":payload}]})
}

fn batch_items(r: &Value) -> Vec<Value> {
    r["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["tag"] == "BatchItem")
        .cloned()
        .collect()
}

#[test]
fn batch_id_placeholder_check_interop_log_and_header() {
    let mut t = T::new();
    // Create, then Get / Check / Activate naming no object: the ID placeholder (the uid the
    // Create returned) is theirs. Interop and Log answer empty payloads.
    let r = t.ok(
        "alice",
        message(
            None,
            vec![
                item(
                    "Interop",
                    json!([
                    {"tag":"InteropFunction","type":"Enumeration","value":"Begin"},
                    {"tag":"InteropIdentifier","type":"TextString","value":"T-1"}]),
                ),
                item(
                    "Create",
                    create_sym("AES", 128, 4, &[], false)["value"].clone(),
                ),
                item(
                    "Check",
                    json!([{"tag":"CryptographicUsageMask","type":"Integer","value":4}]),
                ),
                item("Get", json!([])),
                item(
                    "Log",
                    json!([{"tag":"LogMessage","type":"TextString","value":"hi"}]),
                ),
            ],
        ),
    );
    let items = batch_items(&r);
    assert_eq!(items.len(), 5);
    for i in &items {
        assert_eq!(text(i, "ResultStatus"), "Success", "{i}");
    }
    assert_eq!(
        field(&items[0], "ResponsePayload").unwrap()["value"],
        json!([])
    );
    let uid = text(
        field(&items[1], "ResponsePayload").unwrap(),
        "UniqueIdentifier",
    );
    assert_eq!(
        text(
            field(&items[2], "ResponsePayload").unwrap(),
            "UniqueIdentifier"
        ),
        uid
    );
    assert_eq!(
        text(
            field(&items[3], "ResponsePayload").unwrap(),
            "UniqueIdentifier"
        ),
        uid
    );
    let header = field(&r, "ResponseHeader").unwrap();
    assert_eq!(text(header, "ClientCorrelationValue"), "c-1");
    assert_eq!(text(header, "ServerCorrelationValue").len(), 16);

    // Check with a use the mask does not allow; by default (Stop) what follows is not run.
    let r = t.ok(
        "alice",
        message(
            None,
            vec![
                item(
                    "Check",
                    json!([
                    {"tag":"UniqueIdentifier","type":"TextString","value":uid},
                    {"tag":"CryptographicUsageMask","type":"Integer","value":8}]),
                ),
                item(
                    "Activate",
                    json!([{"tag":"UniqueIdentifier","type":"TextString","value":uid}]),
                ),
            ],
        ),
    );
    let items = batch_items(&r);
    assert_eq!(
        text(&items[0], "ResultReason"),
        "IncompatibleCryptographicUsageMask"
    );
    assert_eq!(
        text(&items[1], "ResultReason"),
        "OperationCanceledByRequester"
    );
}

#[test]
fn batch_undo_restores_what_earlier_items_did() {
    let mut t = T::new();
    let created = t.ok("alice", create_sym("AES", 128, 4, &[], false));
    let uid = text(&created, "UniqueIdentifier");
    // Activate succeeds, Create succeeds, Check fails: Undo rolls both back.
    let r = t.ok(
        "alice",
        message(
            Some("Undo"),
            vec![
                item(
                    "Activate",
                    json!([{"tag":"UniqueIdentifier","type":"TextString","value":uid}]),
                ),
                item(
                    "Create",
                    create_sym("AES", 128, 4, &[], false)["value"].clone(),
                ),
                item(
                    "Check",
                    json!([
                    {"tag":"UniqueIdentifier","type":"TextString","value":uid},
                    {"tag":"CryptographicUsageMask","type":"Integer","value":8}]),
                ),
            ],
        ),
    );
    let items = batch_items(&r);
    assert_eq!(text(&items[0], "ResultStatus"), "OperationUndone");
    assert_eq!(text(&items[1], "ResultStatus"), "OperationUndone");
    assert_eq!(text(&items[2], "ResultStatus"), "OperationFailed");
    let other = text(
        field(&items[1], "ResponsePayload").unwrap(),
        "UniqueIdentifier",
    );
    let a = t.ok(
        "alice",
        json!({"tag":"GetAttributes","value":[
            {"tag":"UniqueIdentifier","type":"TextString","value":uid},
            {"tag":"AttributeReference","type":"Enumeration","value":"State"}]}),
    );
    assert_eq!(text(field(&a, "Attributes").unwrap(), "State"), "PreActive");
    let e = t.err(
        "alice",
        json!({"tag":"Get","value":[{"tag":"UniqueIdentifier","type":"TextString","value":other}]}),
    );
    assert_eq!(reason(&e), ResultReason::ObjectNotFound);
}

#[test]
fn maximum_response_size_fails_every_item() {
    let mut t = T::new();
    let mut m = message(
        None,
        vec![item(
            "Query",
            json!([
            {"tag":"QueryFunction","type":"Enumeration","value":"QueryOperations"}]),
        )],
    );
    m["value"][0]["value"].as_array_mut().unwrap().insert(
        1,
        json!({"tag":"MaximumResponseSize","type":"Integer","value":64}),
    );
    let r = t.ok("alice", m);
    let items = batch_items(&r);
    assert_eq!(text(&items[0], "ResultReason"), "ResponseTooLarge");
}

#[test]
fn query_and_discover_versions() {
    let mut t = T::new();
    let q = t.ok(
        "alice",
        json!({"tag":"Query","value":[
        {"tag":"QueryFunction","type":"Enumeration","value":"QueryOperations"},
        {"tag":"QueryFunction","type":"Enumeration","value":"QueryObjects"}]}),
    );
    let ops: Vec<&str> = q["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["tag"] == "Operation")
        .map(|c| c["value"].as_str().unwrap())
        .collect();
    for op in [
        "Create",
        "CreateKeyPair",
        "Encrypt",
        "Decrypt",
        "Sign",
        "SignatureVerify",
        "Locate",
        "ReKey",
    ] {
        assert!(ops.contains(&op), "{op} missing from {ops:?}");
    }
    let d = t.ok("alice", json!({"tag":"DiscoverVersions","value":[]}));
    let pv = field(&d, "ProtocolVersion").unwrap();
    assert_eq!(field(pv, "ProtocolVersionMajor").unwrap()["value"], 2);
    assert_eq!(field(pv, "ProtocolVersionMinor").unwrap()["value"], 1);
}

#[test]
fn concurrent_grants_are_all_kept() {
    let mut t = T::new();
    let uid = text(
        &t.ok("alice", create_sym("AES", 256, 12, &[], true)),
        "UniqueIdentifier",
    );
    let kms = Arc::new(t.kms);
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let kms = Arc::clone(&kms);
            let uid = uid.clone();
            std::thread::spawn(move || {
                let mut rng = TestRng::new(i + 1);
                let mut env = Env {
                    now: NOW,
                    rng: &mut rng,
                };
                for op in ["get", "encrypt", "decrypt"] {
                    kms.grant_access(&mut env, "alice", &uid, &format!("user{i}"), &[op.into()])
                        .run()
                        .unwrap();
                }
            })
        })
        .collect();
    for th in threads {
        th.join().unwrap();
    }
    let list = kms.list_access("alice", &uid).run().unwrap();
    assert_eq!(list.len(), 8);
    assert!(
        list.iter()
            .all(|u| u.operations == ["get", "encrypt", "decrypt"])
    );
}

#[test]
fn kms_is_shareable_between_threads() {
    fn assert_sync_send<T: Sync + Send>() {}
    assert_sync_send::<Kms<MemoryStore>>();
}

/// Every single-byte corruption of valid requests gets an answer or an error, never a panic.
#[test]
fn mutated_requests_never_panic() {
    let mut t = T::new();
    let uid = text(
        &t.ok("alice", create_sym("AES", 256, 12, &["m"], true)),
        "UniqueIdentifier",
    );
    let seeds = [
        create_sym("AES", 256, 2108, &["z"], true).to_string(),
        encrypt(&uid, b"abc", vec![json!({"tag":"IVCounterNonce","type":"ByteString","value":"000102030405060708090A0B"})]).to_string(),
        uid_req("GetAttributes", "[\"m\"]").to_string(),
        json!({"tag":"Locate","value":[{"tag":"Attributes","value":[tag_attr(&["m"])]}]}).to_string(),
    ];
    let mut n = 0;
    for s in &seeds {
        let b = s.as_bytes();
        for i in 0..b.len() {
            for v in [b'"', b'0', b'}', 0xFF] {
                let mut m = b.to_vec();
                m[i] = v;
                let _ = t.call_raw("alice", &m);
                n += 1;
            }
        }
    }
    assert!(n > 500);
}

#[test]
fn compromise_and_key_pair_halves() {
    let mut t = T::new();
    let r = t.ok("alice", create_pair("Ed25519", None, &["cp"]));
    let (sk, pk) = (
        text(&r, "PrivateKeyUniqueIdentifier"),
        text(&r, "PublicKeyUniqueIdentifier"),
    );
    // Reason given as a bare enumeration (Cosmian clients) and as a text message.
    t.ok(
        "alice",
        json!({"tag":"Revoke","value":[
        {"tag":"UniqueIdentifier","type":"TextString","value":sk},
        {"tag":"RevocationReason","type":"Enumeration","value":"KeyCompromise"},
        {"tag":"CompromiseOccurrenceDate","type":"DateTime","value":"1970-01-01T00:00:06Z"}]}),
    );
    let state = |t: &mut T, uid: &str| {
        let g = t.ok("alice", uid_req("GetAttributes", uid));
        text(field(&g, "Attributes").unwrap(), "State")
    };
    assert_eq!(state(&mut t, &sk), "Compromised");
    // The revocation is recorded: reason, when the client says it happened, when we learnt it.
    let g = t.ok("alice", uid_req("GetAttributes", &sk));
    let a = field(&g, "Attributes").unwrap();
    assert_eq!(
        text(
            field(a, "RevocationReason").unwrap(),
            "RevocationReasonCode"
        ),
        "KeyCompromise"
    );
    assert_eq!(text(a, "CompromiseOccurrenceDate"), "1970-01-01T00:00:06Z");
    assert_ne!(text(a, "CompromiseDate"), "1970-01-01T00:00:06Z");
    // Each half keeps its own lifecycle (OASIS AKLC-M-1/3): the public key is untouched until
    // it is revoked and destroyed by itself.
    let before = state(&mut t, &pk);
    assert!(before == "Active" || before == "PreActive", "{before}");
    t.ok(
        "alice",
        json!({"tag":"Revoke","value":[
        {"tag":"UniqueIdentifier","type":"TextString","value":pk},
        {"tag":"RevocationReason","type":"Enumeration","value":"Superseded"}]}),
    );
    assert_eq!(state(&mut t, &pk), "Deactivated");
    let e = t.err(
        "alice",
        json!({"tag":"SignatureVerify","value":[
        {"tag":"UniqueIdentifier","type":"TextString","value":pk},
        {"tag":"Data","type":"ByteString","value":"00"},
        {"tag":"SignatureData","type":"ByteString","value":"00"}]}),
    );
    assert_eq!(reason(&e), ResultReason::WrongKeyLifecycleState);
    t.ok("alice", uid_req("Destroy", &pk));
    assert_eq!(state(&mut t, &pk), "Destroyed");
    assert_eq!(
        state(&mut t, &sk),
        "Compromised",
        "the private half is untouched"
    );
    t.ok("alice", uid_req("Destroy", &sk));
    assert_eq!(state(&mut t, &sk), "DestroyedCompromised");
    let uid = text(
        &t.ok("alice", create_sym("AES", 128, 12, &[], true)),
        "UniqueIdentifier",
    );
    t.ok(
        "alice",
        json!({"tag":"Revoke","value":[
        {"tag":"UniqueIdentifier","type":"TextString","value":uid},
        {"tag":"RevocationReason","type":"TextString","value":"no longer needed"}]}),
    );
    assert_eq!(state(&mut t, &uid), "Deactivated");
    assert_eq!(
        reason(&t.err("alice", uid_req("Revoke", &uid))),
        ResultReason::WrongKeyLifecycleState
    );
}

#[test]
fn sign_digested_data() {
    let mut t = T::new();
    let r = t.ok("alice", create_pair("ECDSA", Some("P256"), &[]));
    let (sk, pk) = (
        text(&r, "PrivateKeyUniqueIdentifier"),
        text(&r, "PublicKeyUniqueIdentifier"),
    );
    let digest = kms::crypto::sha256(b"hello");
    let s = t.ok(
        "alice",
        json!({"tag":"Sign","value":[
        {"tag":"UniqueIdentifier","type":"TextString","value":sk},
        {"tag":"DigestedData","type":"ByteString","value":hex::encode_upper(digest)}]}),
    );
    // Verifiable as a signature over the message itself.
    let v = t.ok(
        "alice",
        json!({"tag":"SignatureVerify","value":[
        {"tag":"UniqueIdentifier","type":"TextString","value":pk},
        {"tag":"Data","type":"ByteString","value":hex::encode_upper(b"hello")},
        {"tag":"SignatureData","type":"ByteString","value":text(&s, "SignatureData")}]}),
    );
    assert_eq!(text(&v, "ValidityIndicator"), "Valid");
    let e = t.err(
        "alice",
        json!({"tag":"Sign","value":[
        {"tag":"UniqueIdentifier","type":"TextString","value":sk},
        {"tag":"DigestedData","type":"ByteString","value":"00"}]}),
    );
    assert_eq!(reason(&e), ResultReason::UnsupportedCryptographicParameters);
    let e = t.err(
        "alice",
        json!({"tag":"Sign","value":[
        {"tag":"UniqueIdentifier","type":"TextString","value":sk}]}),
    );
    assert_eq!(reason(&e), ResultReason::MissingData);
}

fn nonce_param(n: &[u8]) -> Value {
    json!({"tag":"IVCounterNonce","type":"ByteString","value":hex::encode_upper(n)})
}

fn mode_param(mode: &str) -> Value {
    json!({"tag":"CryptographicParameters","type":"Structure","value":[
        {"tag":"BlockCipherMode","type":"Enumeration","value":mode}]})
}

/// Issue 12, High #2: a grantee holding only `encrypt` re-uses the owner's nonce on zeros and
/// XORs the owner's ciphertext back to plaintext. Refused for AES-GCM and ChaCha20-Poly1305.
#[test]
fn encrypt_only_grantee_cannot_reuse_a_nonce() {
    let mut t = T::new();
    for (alg, mode) in [("AES", None), ("AES", Some("GCM")), ("ChaCha20", None)] {
        let uid = text(
            &t.ok("alice", create_sym(alg, 256, 12, &[], true)),
            "UniqueIdentifier",
        );
        let extra: Vec<Value> = mode.map(mode_param).into_iter().collect();
        let secret = b"the owner's secret";
        let e = t.ok("alice", encrypt(&uid, secret, extra.clone()));
        let (ct, nonce) = (bytes(&e, "Data"), bytes(&e, "IVCounterNonce"));
        t.grant("alice", &uid, "bob", &["encrypt"]);
        // The attack: encrypt zeros under the owner's nonce.
        let mut req = extra.clone();
        req.push(nonce_param(&nonce));
        let r = t.call("bob", encrypt(&uid, &vec![0u8; ct.len()], req.clone()));
        assert!(
            matches!(&r, Err(KmsError::Kmip(k)) if k.reason == ResultReason::PermissionDenied
                && k.detail.to_string().contains("IVCounterNonce")),
            "{alg} {mode:?}: {r:?}"
        );
        // Without a nonce bob still encrypts (the server picks a fresh one).
        t.ok("bob", encrypt(&uid, b"x", extra.clone()));
        // Who may decrypt anyway may choose the nonce: the owner and a decrypt grantee.
        t.ok("alice", encrypt(&uid, b"x", req.clone()));
        t.grant("alice", &uid, "carol", &["encrypt", "decrypt"]);
        t.ok("carol", encrypt(&uid, b"x", req));
    }
    // AES-GCM-SIV is nonce-misuse resistant: a caller nonce stays allowed.
    let uid = text(
        &t.ok("alice", create_sym("AES", 256, 12, &[], true)),
        "UniqueIdentifier",
    );
    t.grant("alice", &uid, "bob", &["encrypt"]);
    t.ok(
        "bob",
        encrypt(
            &uid,
            b"x",
            vec![mode_param("GCMSIV"), nonce_param(&[7; 12])],
        ),
    );
}

fn create_activated_at(alg: &str, activation: i64) -> Value {
    json!({"tag":"Create","value":[
        {"tag":"ObjectType","type":"Enumeration","value":"SymmetricKey"},
        {"tag":"Attributes","value":[
            {"tag":"CryptographicAlgorithm","type":"Enumeration","value":alg},
            {"tag":"ActivationDate","type":"DateTime","value":format!("0x{activation:016X}")}]}]})
}

/// Issue 12, Medium #9: ckms stamps ActivationDate with its own clock; the server's clock (the
/// guest RTC, set by the host) may lag or lead it. A fresh key must be usable either way, within
/// the documented tolerance (`KmsConfig::activation_skew_secs`, 300 s).
#[test]
fn activation_does_not_depend_on_clocks_agreeing() {
    let client_now = NOW;
    let mut t = T::new();
    assert_eq!(t.kms.config().activation_skew_secs, 300);
    // Server clock behind the client's (the quickstart failure), then ahead of it.
    for server_skew in [-1, -60, -299, -300, 1, 3600, 86_400] {
        t.now = client_now + server_skew;
        let uid = text(
            &t.ok("alice", create_activated_at("AES", client_now)),
            "UniqueIdentifier",
        );
        t.ok("alice", encrypt(&uid, b"x", vec![]));
        let a = t.ok("alice", uid_req("GetAttributes", &uid));
        assert_eq!(text(field(&a, "Attributes").unwrap(), "State"), "Active");
        // The same through a key pair and through SetAttribute on a PreActive key.
        let pair = t.ok(
            "alice",
            json!({"tag":"CreateKeyPair","value":[{"tag":"CommonAttributes","value":[
                {"tag":"CryptographicAlgorithm","type":"Enumeration","value":"ECDSA"},
                {"tag":"RecommendedCurve","type":"Enumeration","value":"P_256"},
                {"tag":"ActivationDate","type":"DateTime","value":format!("0x{client_now:016X}")}]}]}),
        );
        let sk = text(&pair, "PrivateKeyUniqueIdentifier");
        t.ok(
            "alice",
            json!({"tag":"Sign","value":[
                {"tag":"UniqueIdentifier","type":"TextString","value":sk},
                {"tag":"Data","type":"ByteString","value":"00"}]}),
        );
        let uid = text(
            &t.ok("alice", create_sym("AES", 256, 12, &[], false)),
            "UniqueIdentifier",
        );
        t.ok(
            "alice",
            json!({"tag":"SetAttribute","value":[
                {"tag":"UniqueIdentifier","type":"TextString","value":uid},
                {"tag":"NewAttribute","value":[
                    {"tag":"ActivationDate","type":"DateTime","value":format!("0x{client_now:016X}")}]}]}),
        );
        t.ok("alice", encrypt(&uid, b"x", vec![]));
    }
    // Beyond the tolerance a future date is a planned activation: the key waits for it.
    t.now = client_now - 301;
    let uid = text(
        &t.ok("alice", create_activated_at("AES", client_now)),
        "UniqueIdentifier",
    );
    let r = t.call("alice", encrypt(&uid, b"x", vec![]));
    assert!(
        matches!(&r, Err(KmsError::Kmip(k)) if k.reason == ResultReason::WrongKeyLifecycleState),
        "{r:?}"
    );
    t.now = client_now;
    t.ok("alice", encrypt(&uid, b"x", vec![]));
}

fn locate_tag(tag: &str) -> Value {
    json!({"tag":"Locate","value":[{"tag":"Attributes","value":[tag_attr(&[tag])]}]})
}

fn located(v: &Value) -> Vec<String> {
    v["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["tag"] == "UniqueIdentifier")
        .map(|c| c["value"].as_str().unwrap().to_string())
        .collect()
}

fn set_attr(uid: &str, attr: Value) -> Value {
    json!({"tag":"SetAttribute","value":[
        {"tag":"UniqueIdentifier","type":"TextString","value":uid},
        {"tag":"NewAttribute","value":[attr]}]})
}

fn add_attr(uid: &str, attr: Value) -> Value {
    json!({"tag":"AddAttribute","value":[
        {"tag":"UniqueIdentifier","type":"TextString","value":uid},
        {"tag":"NewAttribute","value":[attr]}]})
}

fn delete_attr(uid: &str, name: &str) -> Value {
    json!({"tag":"DeleteAttribute","value":[
        {"tag":"UniqueIdentifier","type":"TextString","value":uid},
        {"tag":"AttributeReference","type":"Enumeration","value":name}]})
}

/// Issue 12 (Low): Locate lists only objects the caller owns or holds the `locate` right on.
#[test]
fn locate_honours_the_locate_right() {
    let mut t = T::new();
    let uid = text(
        &t.ok("alice", create_sym("AES", 256, 12, &["loc"], true)),
        "UniqueIdentifier",
    );
    t.grant("alice", &uid, "bob", &["encrypt", "get"]);
    for req in [
        locate_tag("loc"),
        json!({"tag":"Locate","value":[{"tag":"Attributes","value":[
            {"tag":"ObjectType","type":"Enumeration","value":"SymmetricKey"}]}]}),
        json!({"tag":"Locate","value":[{"tag":"Attributes","value":[]}]}),
        json!({"tag":"Locate","value":[{"tag":"Attributes","value":[
            {"tag":"State","type":"Enumeration","value":"Active"}]}]}),
    ] {
        assert!(located(&t.ok("bob", req.clone())).is_empty(), "{req}");
        assert_eq!(located(&t.ok("alice", req.clone())), vec![uid.clone()]);
    }
    // Bob's other rights still work on the uid he was given.
    t.ok("bob", encrypt(&uid, b"x", vec![]));
    t.grant("alice", &uid, "carol", &["locate"]);
    assert_eq!(
        located(&t.ok("carol", locate_tag("loc"))),
        vec![uid.clone()]
    );
}

/// Issue 12 (Low): to a user without any right on it, an existing object and a missing uid
/// answer the same error.
#[test]
fn no_right_means_the_same_error_as_no_object() {
    let mut t = T::new();
    let uid = text(
        &t.ok("alice", create_sym("AES", 256, 12, &[], true)),
        "UniqueIdentifier",
    );
    for op in ["Get", "GetAttributes", "Revoke", "Destroy", "Activate"] {
        let exists = t.err("mallory", uid_req(op, &uid));
        let missing = t.err(
            "mallory",
            uid_req(op, "00000000-0000-4000-8000-000000000000"),
        );
        assert_eq!(reason(&exists), ResultReason::ObjectNotFound, "{op}");
        assert_eq!(exists, missing, "{op}");
        assert_eq!(exists.to_string(), missing.to_string(), "{op}");
    }
    let exists = t.kms.list_access("mallory", &uid).run();
    let missing = t.kms.list_access("mallory", "no-such-object").run();
    assert!(matches!(exists, Err(KmsError::UnknownObject)), "{exists:?}");
    assert!(
        matches!(missing, Err(KmsError::UnknownObject)),
        "{missing:?}"
    );
    // A grantee knows the object exists: a missing right is PermissionDenied.
    t.grant("alice", &uid, "bob", &["encrypt"]);
    assert_eq!(
        reason(&t.err("bob", uid_req("Get", &uid))),
        ResultReason::PermissionDenied
    );
    let r = t.kms.list_access("bob", &uid).run();
    assert!(
        matches!(&r, Err(KmsError::Kmip(k)) if k.reason == ResultReason::PermissionDenied),
        "{r:?}"
    );
}

/// Issue 12 (Low): `Sensitive` and `Extractable` are enforced on Get and Export, and cannot be
/// undone once set.
#[test]
fn sensitive_and_non_extractable_keys_are_not_released() {
    let mut t = T::new();
    for (flag, value, why) in [
        ("Sensitive", true, ResultReason::Sensitive),
        ("Extractable", false, ResultReason::NotExtractable),
    ] {
        let mut req = create_sym("AES", 256, 12, &[], true);
        req["value"][1]["value"]
            .as_array_mut()
            .unwrap()
            .push(json!({"tag":flag,"type":"Boolean","value":value}));
        let uid = text(&t.ok("alice", req), "UniqueIdentifier");
        for op in ["Get", "Export"] {
            assert_eq!(
                reason(&t.err("alice", uid_req(op, &uid))),
                why,
                "{flag} {op}"
            );
        }
        // The key still works inside the KMS, and its attributes are readable.
        t.ok("alice", encrypt(&uid, b"x", vec![]));
        t.ok("alice", uid_req("GetAttributes", &uid));
        // The flag is one-way, for the owner too.
        let undo = json!({"tag":flag,"type":"Boolean","value":!value});
        assert_eq!(
            reason(&t.err("alice", set_attr(&uid, undo))),
            ResultReason::PermissionDenied
        );
        assert_eq!(
            reason(&t.err("alice", delete_attr(&uid, flag))),
            ResultReason::PermissionDenied
        );
        assert_eq!(reason(&t.err("alice", uid_req("Get", &uid))), why);
    }
    // Setting them later (the tightening direction) works and takes effect.
    let uid = text(
        &t.ok("alice", create_sym("AES", 256, 12, &[], true)),
        "UniqueIdentifier",
    );
    t.ok("alice", uid_req("Get", &uid));
    t.ok(
        "alice",
        set_attr(
            &uid,
            json!({"tag":"Sensitive","type":"Boolean","value":true}),
        ),
    );
    assert_eq!(
        reason(&t.err("alice", uid_req("Get", &uid))),
        ResultReason::Sensitive
    );
    // Not a Boolean: refused.
    assert_eq!(
        reason(&t.err(
            "alice",
            set_attr(
                &uid,
                json!({"tag":"Extractable","type":"Integer","value":1})
            )
        )),
        ResultReason::InvalidAttributeValue
    );
}

/// Issue 12 (Low): the `get` right alone does not release a private key (neither Export nor
/// Get); the `export` right does. Public halves and symmetric keys keep Cosmian's rule (`get`
/// implies Export).
#[test]
fn get_right_alone_does_not_release_private_keys() {
    let mut t = T::new();
    let r = t.ok("alice", create_pair("ECDSA", Some("P256"), &[]));
    let (sk, pk) = (
        text(&r, "PrivateKeyUniqueIdentifier"),
        text(&r, "PublicKeyUniqueIdentifier"),
    );
    t.grant("alice", &sk, "bob", &["get"]);
    t.grant("alice", &pk, "bob", &["get"]);
    for op in ["Export", "Get"] {
        assert_eq!(
            reason(&t.err("bob", uid_req(op, &sk))),
            ResultReason::PermissionDenied,
            "{op}"
        );
        t.ok("bob", uid_req(op, &pk));
    }
    t.ok("bob", uid_req("GetAttributes", &sk));
    let sym = text(
        &t.ok("alice", create_sym("AES", 256, 12, &[], true)),
        "UniqueIdentifier",
    );
    t.grant("alice", &sym, "bob", &["get"]);
    t.ok("bob", uid_req("Export", &sym));
    // The export right releases the private key; the owner always may.
    t.grant("alice", &sk, "carol", &["export"]);
    t.ok("carol", uid_req("Export", &sk));
    t.grant("alice", &sk, "bob", &["export"]);
    t.ok("bob", uid_req("Get", &sk));
    t.ok("alice", uid_req("Export", &sk));
}

/// Issue 12 (Low): a grantee with setattribute/addattribute/deleteattribute cannot widen the
/// usage mask or remove/postpone the DeactivationDate; it may narrow them. The owner may all.
#[test]
fn attribute_grantee_cannot_widen_usage_or_drop_deactivation() {
    let mut t = T::new();
    // Encrypt-only key (mask 4) with a DeactivationDate.
    let uid = text(
        &t.ok("alice", create_sym("AES", 256, 4, &[], true)),
        "UniqueIdentifier",
    );
    let deact = NOW + 1000;
    let date =
        |d: i64| json!({"tag":"DeactivationDate","type":"DateTime","value":format!("0x{d:016X}")});
    let mask = |m: i64| json!({"tag":"CryptographicUsageMask","type":"Integer","value":m});
    t.ok("alice", set_attr(&uid, date(deact)));
    t.grant(
        "alice",
        &uid,
        "bob",
        &["setattribute", "deleteattribute", "addattribute", "encrypt"],
    );
    for req in [
        set_attr(&uid, mask(12)),
        delete_attr(&uid, "CryptographicUsageMask"),
        delete_attr(&uid, "DeactivationDate"),
        set_attr(&uid, date(deact + 1)),
    ] {
        assert_eq!(
            reason(&t.err("bob", req.clone())),
            ResultReason::PermissionDenied,
            "{req}"
        );
    }
    // Nothing changed: decrypt is still outside the mask, the date still stands.
    let a = t.ok("alice", uid_req("GetAttributes", &uid));
    let a = field(&a, "Attributes").unwrap();
    assert_eq!(field(a, "CryptographicUsageMask").unwrap()["value"], 4);
    assert!(field(a, "DeactivationDate").is_some());
    // Narrowing is allowed: an earlier deactivation.
    t.ok("bob", set_attr(&uid, date(deact - 1)));
    // The owner may widen and remove.
    t.ok("alice", set_attr(&uid, mask(12)));
    t.ok("alice", delete_attr(&uid, "DeactivationDate"));
}

/// Issue 12 (Low, left over): a grantee with `setattribute` cannot activate a PreActive key
/// early by adding an ActivationDate or moving one earlier; postponing it is narrowing, allowed.
#[test]
fn attribute_grantee_cannot_advance_activation() {
    let mut t = T::new();
    let date =
        |d: i64| json!({"tag":"ActivationDate","type":"DateTime","value":format!("0x{d:016X}")});
    // No ActivationDate: PreActive until someone with the right activates it.
    let none = text(
        &t.ok("alice", create_sym("AES", 256, 12, &[], false)),
        "UniqueIdentifier",
    );
    let later = text(
        &t.ok("alice", create_sym("AES", 256, 12, &[], false)),
        "UniqueIdentifier",
    );
    let act = NOW + 100_000;
    t.ok("alice", set_attr(&later, date(act)));
    for uid in [&none, &later] {
        t.grant(
            "alice",
            uid,
            "bob",
            &["setattribute", "addattribute", "encrypt"],
        );
    }
    for req in [
        set_attr(&none, date(NOW - 10)),
        add_attr(&none, date(NOW - 10)),
        set_attr(&later, date(NOW - 10)),
        set_attr(&later, date(act - 1)),
    ] {
        assert_eq!(
            reason(&t.err("bob", req.clone())),
            ResultReason::PermissionDenied,
            "{req}"
        );
    }
    // Both keys are still PreActive: bob cannot encrypt with them.
    for uid in [&none, &later] {
        let a = t.ok("alice", uid_req("GetAttributes", uid));
        assert_eq!(text(field(&a, "Attributes").unwrap(), "State"), "PreActive");
        assert_eq!(
            reason(&t.err("bob", encrypt(uid, b"x", vec![]))),
            ResultReason::WrongKeyLifecycleState
        );
    }
    // Postponing is allowed to the grantee; advancing to now is the owner's.
    t.ok("bob", set_attr(&later, date(act + 1)));
    t.ok("alice", set_attr(&later, date(NOW - 10)));
    t.ok("bob", encrypt(&later, b"x", vec![]));
}

/// Issue 12 (Low): a grantee with the `import` right cannot replace the key material behind
/// the owner's uid (Import with ReplaceExisting is the owner's).
#[test]
fn import_grantee_cannot_replace_key_material() {
    let mut t = T::new();
    let import = |uid: &str, key: &[u8]| {
        json!({"tag":"Import","value":[
            {"tag":"UniqueIdentifier","type":"TextString","value":uid},
            {"tag":"ObjectType","type":"Enumeration","value":"SymmetricKey"},
            {"tag":"ReplaceExisting","type":"Boolean","value":true},
            {"tag":"Attributes","value":[
                {"tag":"CryptographicAlgorithm","type":"Enumeration","value":"AES"},
                {"tag":"ActivationDate","type":"DateTime","value":"2024-01-01T00:00:00Z"}]},
            {"tag":"Object","value":[{"tag":"KeyBlock","value":[
                {"tag":"KeyFormatType","type":"Enumeration","value":"Raw"},
                {"tag":"KeyValue","value":[{"tag":"KeyMaterial","type":"ByteString","value":hex::encode_upper(key)}]}]}]}]})
    };
    t.ok("alice", import("owned-by-alice", &[1; 32]));
    t.grant("alice", "owned-by-alice", "bob", &["import", "get"]);
    assert_eq!(
        reason(&t.err("bob", import("owned-by-alice", &[2; 32]))),
        ResultReason::PermissionDenied
    );
    // Without any right, the uid is not even found for replacement.
    assert_eq!(
        reason(&t.err("mallory", import("owned-by-alice", &[3; 32]))),
        ResultReason::ObjectNotFound
    );
    let g = t.ok("alice", uid_req("Get", "owned-by-alice"));
    let kb = field(field(&g, "SymmetricKey").unwrap(), "KeyBlock").unwrap();
    assert_eq!(
        bytes(field(kb, "KeyValue").unwrap(), "KeyMaterial"),
        vec![1; 32]
    );
    // The owner replaces her own key.
    t.ok("alice", import("owned-by-alice", &[4; 32]));
    let g = t.ok("alice", uid_req("Get", "owned-by-alice"));
    let kb = field(field(&g, "SymmetricKey").unwrap(), "KeyBlock").unwrap();
    assert_eq!(
        bytes(field(kb, "KeyValue").unwrap(), "KeyMaterial"),
        vec![4; 32]
    );
}

#[test]
fn derived_attributes_digest_short_uid_original_creation_date() {
    use sha2::Digest as _;
    let mut t = T::new();
    let r = t.ok(
        "alice",
        json!({"tag":"Register","value":[
            {"tag":"ObjectType","type":"Enumeration","value":"SymmetricKey"},
            {"tag":"Attributes","value":[
                {"tag":"CryptographicAlgorithm","type":"Enumeration","value":"AES"},
                {"tag":"CryptographicLength","type":"Integer","value":128}]},
            {"tag":"SymmetricKey","value":[{"tag":"KeyBlock","value":[
                {"tag":"KeyFormatType","type":"Enumeration","value":"Raw"},
                {"tag":"KeyValue","value":[{"tag":"KeyMaterial","type":"ByteString",
                    "value":"000102030405060708090A0B0C0D0E0F"}]},
                {"tag":"CryptographicAlgorithm","type":"Enumeration","value":"AES"},
                {"tag":"CryptographicLength","type":"Integer","value":128}]}]}]}),
    );
    let uid = text(&r, "UniqueIdentifier");
    let a = t.ok(
        "alice",
        json!({"tag":"GetAttributes","value":[
            {"tag":"UniqueIdentifier","type":"TextString","value":uid},
            {"tag":"AttributeReference","type":"Enumeration","value":"Digest"},
            {"tag":"AttributeReference","type":"Enumeration","value":"ShortUniqueIdentifier"},
            {"tag":"AttributeReference","type":"Enumeration","value":"OriginalCreationDate"}]}),
    );
    let attrs = field(&a, "Attributes").unwrap();
    let digest = field(attrs, "Digest").unwrap();
    let key: Vec<u8> = (0u8..16).collect();
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02X}")).collect::<String>();
    assert_eq!(
        text(digest, "DigestValue"),
        hex(&sha2::Sha256::digest(&key))
    );
    assert_eq!(text(digest, "HashingAlgorithm"), "SHA256");
    assert_eq!(
        text(attrs, "ShortUniqueIdentifier"),
        hex(&sha2::Sha256::digest(uid.as_bytes()))
    );
    assert!(field(attrs, "OriginalCreationDate").is_some());
    // Asking for every attribute in a bare (Cosmian) operation keeps the Cosmian set.
    let all = t.ok(
        "alice",
        json!({"tag":"GetAttributes","value":[
            {"tag":"UniqueIdentifier","type":"TextString","value":uid}]}),
    );
    assert!(field(field(&all, "Attributes").unwrap(), "Digest").is_none());
    // GetAttributeList names them.
    let list = t.ok(
        "alice",
        json!({"tag":"GetAttributeList","value":[
            {"tag":"UniqueIdentifier","type":"TextString","value":uid}]}),
    );
    let names: Vec<&str> = list["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["tag"] == "AttributeReference")
        .filter_map(|c| c["value"].as_str())
        .collect();
    assert!(
        names.contains(&"Digest") && names.contains(&"ShortUniqueIdentifier"),
        "{names:?}"
    );
}

#[test]
fn secret_data_register_and_get() {
    let mut t = T::new();
    let r = t.ok(
        "alice",
        json!({"tag":"Register","value":[
            {"tag":"ObjectType","type":"Enumeration","value":"SecretData"},
            {"tag":"Attributes","value":[]},
            {"tag":"SecretData","value":[
                {"tag":"SecretDataType","type":"Enumeration","value":"Password"},
                {"tag":"KeyBlock","value":[
                    {"tag":"KeyFormatType","type":"Enumeration","value":"Raw"},
                    {"tag":"KeyValue","value":[{"tag":"KeyMaterial","type":"ByteString",
                        "value":"70617373776F7264"}]}]}]}]}),
    );
    let uid = text(&r, "UniqueIdentifier");
    let g = t.ok(
        "alice",
        json!({"tag":"Get","value":[{"tag":"UniqueIdentifier","type":"TextString","value":uid}]}),
    );
    assert_eq!(text(&g, "ObjectType"), "SecretData");
    let sd = field(&g, "SecretData").unwrap();
    assert_eq!(text(sd, "SecretDataType"), "Password");
    let kb = field(sd, "KeyBlock").unwrap();
    assert_eq!(text(kb, "KeyFormatType"), "Raw");
    assert_eq!(
        text(field(kb, "KeyValue").unwrap(), "KeyMaterial"),
        "70617373776F7264"
    );
    // A format a secret cannot take.
    let e = t.err(
        "alice",
        json!({"tag":"Get","value":[
            {"tag":"UniqueIdentifier","type":"TextString","value":uid},
            {"tag":"KeyFormatType","type":"Enumeration","value":"TransparentSymmetricKey"}]}),
    );
    assert_eq!(reason(&e), ResultReason::KeyFormatTypeNotSupported);
}

#[test]
fn locate_by_other_attributes_and_activation_date_only_while_preactive() {
    let mut t = T::new();
    let asi = |ns: &str| {
        json!({"tag":"ApplicationSpecificInformation","value":[
            {"tag":"ApplicationNamespace","type":"TextString","value":ns},
            {"tag":"ApplicationData","type":"TextString","value":"d"}]})
    };
    let mut uids = Vec::new();
    for ns in ["A", "B"] {
        let mut c = create_sym("AES", 128, 12, &[], false);
        c["value"][1]["value"].as_array_mut().unwrap().push(asi(ns));
        uids.push(text(&t.ok("alice", c), "UniqueIdentifier"));
    }
    let found = t.ok(
        "alice",
        json!({"tag":"Locate","value":[{"tag":"Attributes","value":[
            {"tag":"ObjectType","type":"Enumeration","value":"SymmetricKey"}, asi("B")]}]}),
    );
    let located: Vec<&str> = found["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["tag"] == "UniqueIdentifier")
        .filter_map(|c| c["value"].as_str())
        .collect();
    assert_eq!(located, vec![uids[1].as_str()]);

    t.ok("alice", uid_req("Activate", &uids[0]));
    let e = t.err(
        "alice",
        json!({"tag":"SetAttribute","value":[
            {"tag":"UniqueIdentifier","type":"TextString","value":uids[0]},
            {"tag":"NewAttribute","value":[
                {"tag":"ActivationDate","type":"DateTime","value":"2030-01-01T00:00:00Z"}]}]}),
    );
    assert_eq!(reason(&e), ResultReason::WrongKeyLifecycleState);
}
