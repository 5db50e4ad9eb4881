//! The attribute model and object types through `Kms::kmip_json` (issue 13): server-set
//! attributes (Digest, Random Number Generator, Always Sensitive, Never Extractable, Fresh,
//! Sensitive/Extractable defaults), Quantum Safe, Opaque Objects, Locate date ranges, the
//! KMIP (RequestMessage) vs Cosmian (bare operation) defaults. Each with its negative case.

mod common;
use common::*;

use kms::kmip::types::ResultReason;
use serde_json::{Value, json};
use sha2::Digest as _;

fn message(items: Vec<Value>) -> Value {
    let header = vec![
        json!({"tag":"ProtocolVersion","value":[
            {"tag":"ProtocolVersionMajor","type":"Integer","value":2},
            {"tag":"ProtocolVersionMinor","type":"Integer","value":1}]}),
        json!({"tag":"BatchCount","type":"Integer","value":items.len()}),
    ];
    let mut v = vec![json!({"tag":"RequestHeader","value":header})];
    v.extend(items);
    json!({"tag":"RequestMessage","value":v})
}

/// The payload of the only batch item of a `RequestMessage` answer (which must succeed).
fn one(r: &Value) -> Value {
    let item = field(r, "BatchItem").expect("batch item");
    assert_eq!(text(item, "ResultStatus"), "Success", "{item}");
    field(item, "ResponsePayload").expect("payload").clone()
}

fn in_message(op: &str, payload: Vec<Value>) -> Value {
    message(vec![json!({"tag":"BatchItem","value":[
        {"tag":"Operation","type":"Enumeration","value":op},
        {"tag":"RequestPayload","value":payload}]})])
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

fn get_attributes(t: &mut T, uid: &str, names: &[&str]) -> Value {
    let mut v = vec![json!({"tag":"UniqueIdentifier","type":"TextString","value":uid})];
    for n in names {
        v.push(json!({"tag":"AttributeReference","type":"Enumeration","value":n}));
    }
    let r = t.ok("alice", json!({"tag":"GetAttributes","value":v}));
    field(&r, "Attributes").unwrap().clone()
}

#[test]
fn digest_of_rsa_keys_is_over_their_pkcs1_encoding() {
    let mut t = T::new();
    let r = t.ok(
        "alice",
        json!({"tag":"CreateKeyPair","value":[
        {"tag":"CommonAttributes","value":[
            {"tag":"CryptographicAlgorithm","type":"Enumeration","value":"RSA"},
            {"tag":"CryptographicLength","type":"Integer","value":2048}]}]}),
    );
    for tag in ["PrivateKeyUniqueIdentifier", "PublicKeyUniqueIdentifier"] {
        let uid = text(&r, tag);
        let a = get_attributes(&mut t, &uid, &["Digest", "RandomNumberGenerator"]);
        let d = field(&a, "Digest").unwrap();
        assert_eq!(text(d, "HashingAlgorithm"), "SHA256");
        assert_eq!(text(d, "KeyFormatType"), "PKCS1");
        // The key as PKCS#1, fetched by its owner: its SHA-256 is the digest.
        let g = t.ok(
            "alice",
            json!({"tag":"Get","value":[
            {"tag":"UniqueIdentifier","type":"TextString","value":uid},
            {"tag":"KeyFormatType","type":"Enumeration","value":"PKCS1"}]}),
        );
        let obj = field(&g, "PrivateKey").or(field(&g, "PublicKey")).unwrap();
        let kv = field(field(obj, "KeyBlock").unwrap(), "KeyValue").unwrap();
        let der = bytes(kv, "KeyMaterial");
        assert_eq!(text(d, "DigestValue"), hex(&sha2::Sha256::digest(&der)));
        // A generated key names the generator.
        let rng = field(&a, "RandomNumberGenerator").unwrap();
        assert_eq!(text(rng, "RNGAlgorithm"), "Unspecified");
    }
    // A registered key was not made by our generator: no RandomNumberGenerator.
    let r = t.ok(
        "alice",
        json!({"tag":"Register","value":[
        {"tag":"ObjectType","type":"Enumeration","value":"SymmetricKey"},
        {"tag":"Attributes","value":[]},
        {"tag":"SymmetricKey","value":[{"tag":"KeyBlock","value":[
            {"tag":"KeyFormatType","type":"Enumeration","value":"Raw"},
            {"tag":"KeyValue","value":[{"tag":"KeyMaterial","type":"ByteString",
                "value":"000102030405060708090A0B0C0D0E0F"}]},
            {"tag":"CryptographicAlgorithm","type":"Enumeration","value":"AES"},
            {"tag":"CryptographicLength","type":"Integer","value":128}]}]}]}),
    );
    let a = get_attributes(
        &mut t,
        &text(&r, "UniqueIdentifier"),
        &["RandomNumberGenerator"],
    );
    assert!(field(&a, "RandomNumberGenerator").is_none(), "{a}");
}

#[test]
fn server_set_flags_and_fresh_until_served() {
    let mut t = T::new();
    let uid = text(
        &t.ok("alice", create_sym("AES", 256, 12, &[], true)),
        "UniqueIdentifier",
    );
    let flags = |t: &mut T| {
        let a = get_attributes(
            t,
            &uid,
            &[
                "AlwaysSensitive",
                "NeverExtractable",
                "Sensitive",
                "Extractable",
                "Fresh",
            ],
        );
        [
            "AlwaysSensitive",
            "NeverExtractable",
            "Sensitive",
            "Extractable",
            "Fresh",
        ]
        .map(|n| field(&a, n).map(|v| v["value"].clone()))
    };
    let f = json!(false);
    let tr = json!(true);
    assert_eq!(
        flags(&mut t),
        [
            Some(f.clone()),
            Some(f.clone()),
            Some(f.clone()),
            Some(tr.clone()),
            Some(tr.clone())
        ]
    );
    t.ok("alice", uid_req("Get", &uid));
    assert_eq!(flags(&mut t)[4], Some(f.clone()), "served: no longer Fresh");
    // Server-set attributes cannot be edited by clients.
    let e = t.err(
        "alice",
        json!({"tag":"SetAttribute","value":[
        {"tag":"UniqueIdentifier","type":"TextString","value":uid},
        {"tag":"NewAttribute","value":[{"tag":"Fresh","type":"Boolean","value":true}]}]}),
    );
    assert!(e.to_string().contains("read-only"), "{e}");
}

#[test]
fn quantum_safe_refuses_keys_a_quantum_computer_breaks() {
    let mut t = T::new();
    let create = |bits: i64| {
        json!({"tag":"Create","value":[
        {"tag":"ObjectType","type":"Enumeration","value":"SymmetricKey"},
        {"tag":"Attributes","value":[
            {"tag":"CryptographicAlgorithm","type":"Enumeration","value":"AES"},
            {"tag":"CryptographicLength","type":"Integer","value":bits},
            {"tag":"QuantumSafe","type":"Boolean","value":true}]}]})
    };
    let e = t.err("alice", create(128));
    assert_eq!(reason(&e), ResultReason::GeneralFailure);
    t.ok("alice", create(256));
    let e = t.err(
        "alice",
        json!({"tag":"CreateKeyPair","value":[
        {"tag":"CommonAttributes","value":[
            {"tag":"CryptographicAlgorithm","type":"Enumeration","value":"ECDSA"},
            {"tag":"RecommendedCurve","type":"Enumeration","value":"P256"},
            {"tag":"QuantumSafe","type":"Boolean","value":true}]}]}),
    );
    assert_eq!(reason(&e), ResultReason::GeneralFailure);
}

#[test]
fn opaque_object_register_get_and_single_valued_attributes() {
    let mut t = T::new();
    let r = t.ok(
        "alice",
        json!({"tag":"Register","value":[
        {"tag":"ObjectType","type":"Enumeration","value":"OpaqueObject"},
        {"tag":"Attributes","value":[]},
        {"tag":"OpaqueObject","value":[
            {"tag":"OpaqueDataType","type":"Enumeration","value":"0x80123456"},
            {"tag":"OpaqueDataValue","type":"ByteString","value":"0123456789ABCDEF"}]}]}),
    );
    let uid = text(&r, "UniqueIdentifier");
    let g = t.ok("alice", uid_req("Get", &uid));
    assert_eq!(text(&g, "ObjectType"), "OpaqueObject");
    let o = field(&g, "OpaqueObject").unwrap();
    assert_eq!(text(o, "OpaqueDataType"), "0x80123456");
    assert_eq!(
        bytes(o, "OpaqueDataValue"),
        [0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF]
    );
    let add = |v: &str| {
        json!({"tag":"AddAttribute","value":[
        {"tag":"UniqueIdentifier","type":"TextString","value":uid},
        {"tag":"NewAttribute","value":[{"tag":"Description","type":"TextString","value":v}]}]})
    };
    t.ok("alice", add("first"));
    let e = t.err("alice", add("second"));
    assert_eq!(reason(&e), ResultReason::AttributeSingleValued);
    // Another format than Opaque is refused; so is an opaque object without its data type.
    let e = t.err(
        "alice",
        json!({"tag":"Get","value":[
        {"tag":"UniqueIdentifier","type":"TextString","value":uid},
        {"tag":"KeyFormatType","type":"Enumeration","value":"Raw"}]}),
    );
    assert_eq!(reason(&e), ResultReason::KeyFormatTypeNotSupported);
    let e = t.err(
        "alice",
        json!({"tag":"Register","value":[
        {"tag":"ObjectType","type":"Enumeration","value":"OpaqueObject"},
        {"tag":"OpaqueObject","value":[
            {"tag":"OpaqueDataValue","type":"ByteString","value":"00"}]}]}),
    );
    assert_eq!(reason(&e), ResultReason::MissingData);
    t.ok("alice", uid_req("Destroy", &uid));
}

#[test]
fn locate_takes_a_date_attribute_twice_as_a_range() {
    let mut t = T::new();
    let register = |date: &str| {
        json!({"tag":"Register","value":[
        {"tag":"ObjectType","type":"Enumeration","value":"SecretData"},
        {"tag":"Attributes","value":[
            {"tag":"ProtectStopDate","type":"DateTime","value":date}]},
        {"tag":"SecretData","value":[
            {"tag":"SecretDataType","type":"Enumeration","value":"Password"},
            {"tag":"KeyBlock","value":[
                {"tag":"KeyFormatType","type":"Enumeration","value":"Raw"},
                {"tag":"KeyValue","value":[
                    {"tag":"KeyMaterial","type":"ByteString","value":"70617373"}]}]}]}]})
    };
    let inside = text(
        &t.ok("alice", register("2000-02-01T00:00:00Z")),
        "UniqueIdentifier",
    );
    t.ok("alice", register("2001-01-01T00:00:00Z"));
    let locate = |from: &str, to: &str| {
        json!({"tag":"Locate","value":[{"tag":"Attributes","value":[
            {"tag":"ObjectType","type":"Enumeration","value":"SecretData"},
            {"tag":"ProtectStopDate","type":"DateTime","value":from},
            {"tag":"ProtectStopDate","type":"DateTime","value":to}]}]})
    };
    let found = |r: &Value| -> Vec<String> {
        r["value"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["tag"] == "UniqueIdentifier")
            .map(|c| c["value"].as_str().unwrap().to_owned())
            .collect()
    };
    // Either order of the bounds; both bounds included.
    let r = t.ok(
        "alice",
        locate("2000-02-10T00:00:00Z", "2000-01-01T00:00:00Z"),
    );
    assert_eq!(found(&r), std::slice::from_ref(&inside));
    let r = t.ok(
        "alice",
        locate("2000-02-01T00:00:00Z", "2000-02-01T00:00:00Z"),
    );
    assert_eq!(found(&r), [inside]);
    let r = t.ok(
        "alice",
        locate("1990-01-01T00:00:00Z", "1999-01-01T00:00:00Z"),
    );
    assert!(found(&r).is_empty(), "{r}");
    // A third value is no range.
    let e = t.err(
        "alice",
        json!({"tag":"Locate","value":[{"tag":"Attributes","value":[
            {"tag":"ProtectStopDate","type":"DateTime","value":"2000-01-01T00:00:00Z"},
            {"tag":"ProtectStopDate","type":"DateTime","value":"2000-01-02T00:00:00Z"},
            {"tag":"ProtectStopDate","type":"DateTime","value":"2000-01-03T00:00:00Z"}]}]}),
    );
    assert_eq!(reason(&e), ResultReason::InvalidField);
    // An unknown uid is Object Not Found.
    let e = t.err("alice", uid_req("Get", "AAABBBCCC"));
    assert_eq!(reason(&e), ResultReason::ObjectNotFound);
}

#[test]
fn kmip_messages_get_kmip_defaults_and_shapes_bare_operations_cosmian_ones() {
    let mut t = T::new();
    let register = vec![
        json!({"tag":"ObjectType","type":"Enumeration","value":"SymmetricKey"}),
        json!({"tag":"Attributes","value":[
            {"tag":"Name","value":[
                {"tag":"NameValue","type":"TextString","value":"n1"},
                {"tag":"NameType","type":"Enumeration","value":"UninterpretedTextString"}]}]}),
        json!({"tag":"SymmetricKey","value":[{"tag":"KeyBlock","value":[
            {"tag":"KeyFormatType","type":"Enumeration","value":"TransparentSymmetricKey"},
            {"tag":"KeyValue","value":[{"tag":"KeyMaterial","value":[
                {"tag":"Key","type":"ByteString","value":"000102030405060708090A0B0C0D0E0F"}]}]},
            {"tag":"CryptographicAlgorithm","type":"Enumeration","value":"AES"},
            {"tag":"CryptographicLength","type":"Integer","value":128}]}]}),
    ];
    let uid = text(
        &one(&t.ok("alice", in_message("Register", register))),
        "UniqueIdentifier",
    );
    let uid_v = || vec![json!({"tag":"UniqueIdentifier","type":"TextString","value":uid})];
    let kft = |g: &Value| {
        text(
            field(field(g, "SymmetricKey").unwrap(), "KeyBlock").unwrap(),
            "KeyFormatType",
        )
    };
    // KMIP: as registered; Cosmian: Raw.
    assert_eq!(
        kft(&one(&t.ok("alice", in_message("Get", uid_v())))),
        "TransparentSymmetricKey"
    );
    assert_eq!(kft(&t.ok("alice", uid_req("Get", &uid))), "Raw");
    // KMIP: the Name item itself, and the derived attributes; Cosmian: the wrapper, its set.
    let a = one(&t.ok("alice", in_message("GetAttributes", uid_v())));
    let a = field(&a, "Attributes").unwrap();
    assert_eq!(text(field(a, "Name").unwrap(), "NameValue"), "n1");
    assert!(field(a, "ShortUniqueIdentifier").is_some(), "{a}");
    let b = t.ok("alice", uid_req("GetAttributes", &uid));
    let b = field(&b, "Attributes").unwrap();
    assert!(field(field(b, "Name").unwrap(), "Name").is_some(), "{b}");
    assert!(field(b, "ShortUniqueIdentifier").is_none(), "{b}");
    // A created key: Raw in KMIP's dialect, TransparentSymmetricKey in Cosmian's.
    let create = vec![
        json!({"tag":"ObjectType","type":"Enumeration","value":"SymmetricKey"}),
        json!({"tag":"Attributes","value":[
            {"tag":"CryptographicAlgorithm","type":"Enumeration","value":"AES"},
            {"tag":"CryptographicLength","type":"Integer","value":128}]}),
    ];
    let k = text(
        &one(&t.ok("alice", in_message("Create", create.clone()))),
        "UniqueIdentifier",
    );
    assert_eq!(
        text(
            &get_attributes(&mut t, &k, &["KeyFormatType"]),
            "KeyFormatType"
        ),
        "Raw"
    );
    let c = text(
        &t.ok("alice", json!({"tag":"Create","value":create})),
        "UniqueIdentifier",
    );
    assert_eq!(
        text(
            &get_attributes(&mut t, &c, &["KeyFormatType"]),
            "KeyFormatType"
        ),
        "TransparentSymmetricKey"
    );
}
