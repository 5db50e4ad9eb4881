//! Asymmetric key formats through `Kms::kmip_json` (issues 13/14): Transparent RSA and DSA
//! key material on Register and Get, PKCS#1 <-> PKCS#8 <-> Transparent conversions of the
//! published 1024-bit OASIS key (BL-M-7/9/11-21), which is stored and exported but refused for
//! operations, and the typed errors for inconsistent fields.

mod common;
use common::*;

use kms::kmip::ttlv::{Ttlv, Value as TValue};
use kms::kmip::types::ResultReason;
use serde_json::{Value, json};
use sha2::Digest as _;

const BL_M_7: &str = include_str!("../../conformance/cases/kmip-2.1/mandatory/BL-M-7-21.xml");
const BL_M_8: &str = include_str!("../../conformance/cases/kmip-2.1/mandatory/BL-M-8-21.xml");
const BL_M_9: &str = include_str!("../../conformance/cases/kmip-2.1/mandatory/BL-M-9-21.xml");
const BL_M_11: &str = include_str!("../../conformance/cases/kmip-2.1/mandatory/BL-M-11-21.xml");
const BL_M_13: &str = include_str!("../../conformance/cases/kmip-2.1/mandatory/BL-M-13-21.xml");

/// The hex `value` of the first `<tag type=...` element of an OASIS case.
fn case_hex(xml: &str, tag: &str) -> String {
    let start = xml.find(&format!("<{tag} type=")).expect("tag in case");
    let v = &xml[start..];
    let v = &v[v.find("value=\"").unwrap() + 7..];
    v[..v.find('"').unwrap()].to_string()
}

fn big(tag: &str, hex: &str) -> Value {
    json!({"tag":tag,"type":"BigInteger","value":format!("0x{}", hex.to_uppercase())})
}

fn register(object_type: &str, format: &str, alg: &str, km: Value, attrs: Vec<Value>) -> Value {
    json!({"tag":"Register","type":"Structure","value":[
        {"tag":"ObjectType","type":"Enumeration","value":object_type},
        {"tag":"Attributes","type":"Structure","value":attrs},
        {"tag":object_type,"type":"Structure","value":[
            {"tag":"KeyBlock","type":"Structure","value":[
                {"tag":"KeyFormatType","type":"Enumeration","value":format},
                {"tag":"KeyValue","type":"Structure","value":[km]},
                {"tag":"CryptographicAlgorithm","type":"Enumeration","value":alg}]}]}]})
}

fn transparent(fields: &[(&str, String)]) -> Value {
    let v: Vec<Value> = fields.iter().map(|(t, h)| big(t, h)).collect();
    json!({"tag":"KeyMaterial","type":"Structure","value":v})
}

fn bytes_km(hex: &str) -> Value {
    json!({"tag":"KeyMaterial","type":"ByteString","value":hex.to_uppercase()})
}

fn get(uid: &str, format: Option<&str>) -> Value {
    let mut v = vec![json!({"tag":"UniqueIdentifier","type":"TextString","value":uid})];
    if let Some(f) = format {
        v.push(json!({"tag":"KeyFormatType","type":"Enumeration","value":f}));
    }
    json!({"tag":"Get","type":"Structure","value":v})
}

/// (KeyFormatType, KeyMaterial) of a Get response.
fn key_of(r: &Value) -> (String, Value) {
    let obj = r["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["tag"] == "PrivateKey" || c["tag"] == "PublicKey")
        .expect("key object");
    let kb = field(obj, "KeyBlock").unwrap();
    let kv = field(kb, "KeyValue").unwrap();
    (
        text(kb, "KeyFormatType"),
        field(kv, "KeyMaterial").unwrap().clone(),
    )
}

fn big_of(km: &Value, tag: &str) -> String {
    text(km, tag).trim_start_matches("0x").to_lowercase()
}

const RSA_FIELDS: [&str; 7] = [
    "Modulus",
    "PrivateExponent",
    "PublicExponent",
    "P",
    "Q",
    "PrimeExponentP",
    "PrimeExponentQ",
];

fn sign(uid: &str) -> Value {
    json!({"tag":"Sign","type":"Structure","value":[
        {"tag":"UniqueIdentifier","type":"TextString","value":uid},
        {"tag":"Data","type":"ByteString","value":"00"}]})
}

#[test]
fn oasis_rsa_1024_key_in_every_format() {
    let mut t = T::new();
    let fields: Vec<(&str, String)> = RSA_FIELDS
        .iter()
        .map(|f| (*f, case_hex(BL_M_9, f)))
        .collect();
    let r = t.ok(
        "alice",
        register(
            "PrivateKey",
            "TransparentRSAPrivateKey",
            "RSA",
            transparent(&fields),
            vec![],
        ),
    );
    let uid = text(&r, "UniqueIdentifier");
    let a = field(&t.ok("alice", uid_req("GetAttributes", &uid)), "Attributes")
        .unwrap()
        .clone();
    assert_eq!(field(&a, "CryptographicLength").unwrap()["value"], 1024);

    // As registered by default: the fields come back as canonical Big Integers, the
    // CRT coefficient computed.
    let (f, km) = key_of(&t.ok("alice", get(&uid, None)));
    assert_eq!(f, "TransparentRSAPrivateKey");
    for (tag, hex) in &fields {
        assert_eq!(big_of(&km, tag), *hex, "{tag}");
    }
    assert!(field(&km, "CRTCoefficient").is_some());

    // PKCS#1 is BL-M-7's key, PKCS#8 BL-M-11's: the same published key.
    let (f, km) = key_of(&t.ok("alice", get(&uid, Some("PKCS1"))));
    assert_eq!(f, "PKCS1");
    assert_eq!(
        km["value"].as_str().unwrap().to_lowercase(),
        case_hex(BL_M_7, "KeyMaterial")
    );
    let (f, km) = key_of(&t.ok("alice", get(&uid, Some("PKCS8"))));
    assert_eq!(f, "PKCS8");
    let pkcs8 = km["value"].as_str().unwrap().to_lowercase();

    // Registered as PKCS#8 (BL-M-11) it is the same key again.
    let r = t.ok(
        "alice",
        register(
            "PrivateKey",
            "PKCS8",
            "RSA",
            bytes_km(&case_hex(BL_M_11, "KeyMaterial")),
            vec![],
        ),
    );
    let uid11 = text(&r, "UniqueIdentifier");
    let (_, km) = key_of(&t.ok("alice", get(&uid11, Some("PKCS8"))));
    assert_eq!(km["value"].as_str().unwrap().to_lowercase(), pkcs8);

    // Stored and exported, never used: below 2048 bits.
    t.ok("alice", uid_req("Activate", &uid));
    let e = t.err("alice", sign(&uid));
    assert_eq!(reason(&e), ResultReason::UnsupportedCryptographicParameters);
    assert!(e.to_string().contains("too short"), "{e}");
}

#[test]
fn inconsistent_or_malformed_transparent_rsa_is_refused() {
    let mut t = T::new();
    let mut fields: Vec<(&str, String)> = RSA_FIELDS
        .iter()
        .map(|f| (*f, case_hex(BL_M_9, f)))
        .collect();
    // A wrong CRT exponent (last hex digit changed).
    let dp = &mut fields[5].1;
    let last = dp.pop().unwrap();
    dp.push(if last == '0' { '2' } else { '0' });
    let e = t.err(
        "alice",
        register(
            "PrivateKey",
            "TransparentRSAPrivateKey",
            "RSA",
            transparent(&fields),
            vec![],
        ),
    );
    assert_eq!(reason(&e), ResultReason::CryptographicFailure);
    // A public key without its exponent.
    let n = case_hex(BL_M_8, "Modulus");
    let e = t.err(
        "alice",
        register(
            "PublicKey",
            "TransparentRSAPublicKey",
            "RSA",
            transparent(&[("Modulus", n.clone())]),
            vec![],
        ),
    );
    assert_eq!(reason(&e), ResultReason::MissingData);
    // A DSA field in an RSA structure.
    let e = t.err(
        "alice",
        register(
            "PublicKey",
            "TransparentRSAPublicKey",
            "RSA",
            transparent(&[
                ("Modulus", n),
                ("PublicExponent", "010001".into()),
                ("G", "02".into()),
            ]),
            vec![],
        ),
    );
    assert_eq!(reason(&e), ResultReason::InvalidField);
}

#[test]
fn transparent_rsa_public_key_round_trips_and_encrypts() {
    let mut t = T::new();
    let n = case_hex(BL_M_8, "Modulus");
    let e = case_hex(BL_M_8, "PublicExponent");
    let r = t.ok(
        "alice",
        register(
            "PublicKey",
            "TransparentRSAPublicKey",
            "RSA",
            transparent(&[("Modulus", n.clone()), ("PublicExponent", e.clone())]),
            vec![],
        ),
    );
    let uid = text(&r, "UniqueIdentifier");
    let (f, km) = key_of(&t.ok("alice", get(&uid, None)));
    assert_eq!(f, "TransparentRSAPublicKey");
    assert_eq!(big_of(&km, "Modulus"), n);
    assert_eq!(big_of(&km, "PublicExponent"), e);
    let (f, _) = key_of(&t.ok("alice", get(&uid, Some("X509"))));
    assert_eq!(f, "X509");
    let (f, _) = key_of(&t.ok("alice", get(&uid, Some("PKCS1"))));
    assert_eq!(f, "PKCS1");
    // 2048 bits: usable.
    t.ok("alice", uid_req("Activate", &uid));
    let r = t.ok("alice", encrypt(&uid, b"m", vec![]));
    assert_eq!(bytes(&r, "Data").len(), 256);
}

#[test]
fn dsa_keys_are_stored_and_returned_as_transparent_fields() {
    let mut t = T::new();
    let f: Vec<(&str, String)> = ["P", "Q", "G", "X"]
        .iter()
        .map(|x| (*x, case_hex(BL_M_13, x)))
        .collect();
    let r = t.ok(
        "alice",
        register(
            "PrivateKey",
            "TransparentDSAPrivateKey",
            "DSA",
            transparent(&f),
            vec![],
        ),
    );
    let uid = text(&r, "UniqueIdentifier");
    let (fmt, km) = key_of(&t.ok("alice", get(&uid, None)));
    assert_eq!(fmt, "TransparentDSAPrivateKey");
    for (tag, hex) in &f {
        // The case's values are KMIP's canonical Big Integers: returned byte for byte.
        assert_eq!(big_of(&km, tag), *hex, "{tag}");
    }
    let e = t.err("alice", get(&uid, Some("PKCS8")));
    assert_eq!(reason(&e), ResultReason::KeyFormatTypeNotSupported);
    // Wrapped bytes are a DER key; a transparent structure is not wrapped.
    let kek = text(
        &t.ok("alice", create_sym("AES", 256, 0x10, &[], true)),
        "UniqueIdentifier",
    );
    let e = t.err(
        "alice",
        json!({"tag":"Get","value":[
            {"tag":"UniqueIdentifier","type":"TextString","value":uid},
            {"tag":"KeyWrappingSpecification","value":[
                {"tag":"WrappingMethod","type":"Enumeration","value":"Encrypt"},
                {"tag":"EncryptionKeyInformation","value":[
                    {"tag":"UniqueIdentifier","type":"TextString","value":kek}]}]}]}),
    );
    assert_eq!(reason(&e), ResultReason::KeyFormatTypeNotSupported);
    // Digest: SHA-256 of the binary TTLV KeyMaterial structure, in the transparent format.
    let r = t.ok(
        "alice",
        json!({"tag":"GetAttributes","value":[
            {"tag":"UniqueIdentifier","type":"TextString","value":uid},
            {"tag":"AttributeReference","type":"Enumeration","value":"Digest"}]}),
    );
    let d = field(field(&r, "Attributes").unwrap(), "Digest").unwrap();
    assert_eq!(text(d, "KeyFormatType"), "TransparentDSAPrivateKey");
    let km = Ttlv::structure(
        "KeyMaterial",
        f.iter()
            .map(|(tag, h)| Ttlv::new(tag, TValue::BigInteger(hex::decode(h).unwrap())))
            .collect(),
    );
    let want = sha2::Sha256::digest(kms::kmip::binary::to_vec(&km).unwrap());
    assert_eq!(bytes(d, "DigestValue"), want.to_vec());
    // X must be below Q.
    let mut bad = f.clone();
    bad[3].1 = f[1].1.clone();
    let e = t.err(
        "alice",
        register(
            "PrivateKey",
            "TransparentDSAPrivateKey",
            "DSA",
            transparent(&bad),
            vec![],
        ),
    );
    assert_eq!(reason(&e), ResultReason::InvalidField);
    // A DSA public key under the private format.
    let e = t.err(
        "alice",
        register(
            "PublicKey",
            "TransparentDSAPrivateKey",
            "DSA",
            transparent(&f),
            vec![],
        ),
    );
    assert_eq!(reason(&e), ResultReason::KeyFormatTypeNotSupported);
}

#[test]
fn adding_a_name_the_object_has_is_non_unique() {
    let mut t = T::new();
    let name = json!({"tag":"Name","type":"Structure","value":[
        {"tag":"NameValue","type":"TextString","value":"dup"},
        {"tag":"NameType","type":"Enumeration","value":"UninterpretedTextString"}]});
    let r = t.ok("alice", create_sym("AES", 256, 0x0C, &[], false));
    let uid = text(&r, "UniqueIdentifier");
    let add = json!({"tag":"AddAttribute","type":"Structure","value":[
        {"tag":"UniqueIdentifier","type":"TextString","value":uid},
        {"tag":"NewAttribute","type":"Structure","value":[name]}]});
    t.ok("alice", add.clone());
    let e = t.err("alice", add);
    assert_eq!(reason(&e), ResultReason::NonUniqueNameAttribute);
}
