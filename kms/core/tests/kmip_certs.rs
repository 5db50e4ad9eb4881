//! X.509 certificates as KMIP objects through `Kms::kmip_json`: Register, Get/Export, the
//! derived read-only attributes, Locate by them, links to keys, and the refusals.

mod common;
use common::*;

use kms::kmip::types::ResultReason;
use serde_json::{Value, json};

/// A self-signed certificate (DER) with the given subject CN and serial number.
fn certificate(cn: &str, serial: &[u8]) -> Vec<u8> {
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    p.distinguished_name
        .push(rcgen::DnType::OrganizationName, "Example Org");
    p.serial_number = Some(rcgen::SerialNumber::from_slice(serial));
    let key = rcgen::KeyPair::generate().unwrap();
    p.self_signed(&key).unwrap().der().to_vec()
}

fn register_cert(der: &[u8], attrs: Vec<Value>) -> Value {
    json!({"tag":"Register","type":"Structure","value":[
        {"tag":"ObjectType","type":"Enumeration","value":"Certificate"},
        {"tag":"Attributes","type":"Structure","value":attrs},
        {"tag":"Certificate","type":"Structure","value":[
            {"tag":"CertificateType","type":"Enumeration","value":"X_509"},
            {"tag":"CertificateValue","type":"ByteString","value":hex::encode_upper(der)}]}]})
}

fn uids(r: &Value) -> Vec<String> {
    let mut u: Vec<String> = r["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["tag"] == "UniqueIdentifier")
        .map(|c| c["value"].as_str().unwrap().to_string())
        .collect();
    u.sort();
    u
}

#[test]
fn register_get_export_certificate() {
    let mut t = T::new();
    let der = certificate("alice.example", &[0x42]);
    let uid = text(
        &t.ok("alice", register_cert(&der, vec![])),
        "UniqueIdentifier",
    );

    for op in ["Get", "Export"] {
        let r = t.ok("alice", uid_req(op, &uid));
        assert_eq!(text(&r, "ObjectType"), "Certificate");
        let c = field(&r, "Certificate").expect("Certificate object");
        assert_eq!(text(c, "CertificateType"), "X509");
        assert_eq!(bytes(c, "CertificateValue"), der);
    }
    // Only X.509 (the certificate's own format) is offered.
    let e = t.err(
        "alice",
        json!({"tag":"Get","value":[
            {"tag":"UniqueIdentifier","type":"TextString","value":uid},
            {"tag":"KeyFormatType","type":"Enumeration","value":"PKCS8"}]}),
    );
    assert_eq!(reason(&e), ResultReason::KeyFormatTypeNotSupported);

    // The derived attributes, as BL-M-10 asks for them.
    let r = t.ok(
        "alice",
        json!({"tag":"GetAttributes","value":[
            {"tag":"UniqueIdentifier","type":"TextString","value":uid},
            {"tag":"AttributeReference","type":"Enumeration","value":"CertificateSubjectCN"},
            {"tag":"AttributeReference","type":"Enumeration","value":"CertificateLength"},
            {"tag":"AttributeReference","type":"Enumeration","value":"CertificateIssuerO"}]}),
    );
    let a = field(&r, "Attributes").unwrap();
    assert_eq!(text(a, "CertificateSubjectCN"), "alice.example");
    assert_eq!(text(a, "CertificateIssuerO"), "Example Org");
    assert_eq!(
        field(a, "CertificateLength").unwrap()["value"].as_i64(),
        Some(der.len() as i64)
    );

    // Read-only: the server's attributes cannot be changed, added or deleted.
    for op in ["ModifyAttribute", "SetAttribute", "AddAttribute"] {
        let e = t.err(
            "alice",
            json!({"tag":op,"value":[
                {"tag":"UniqueIdentifier","type":"TextString","value":uid},
                {"tag":"NewAttribute","value":[
                    {"tag":"CertificateLength","type":"Integer","value":123}]}]}),
        );
        assert_eq!(reason(&e), ResultReason::AttributeReadOnly, "{op}");
    }
    let e = t.err(
        "alice",
        json!({"tag":"DeleteAttribute","value":[
            {"tag":"UniqueIdentifier","type":"TextString","value":uid},
            {"tag":"AttributeReference","type":"Enumeration","value":"CertificateSubjectCN"}]}),
    );
    assert_eq!(reason(&e), ResultReason::AttributeReadOnly);

    // Another user sees nothing until granted `get`.
    let e = t.err("bob", uid_req("Get", &uid));
    assert_eq!(reason(&e), ResultReason::ObjectNotFound);
    t.grant("alice", &uid, "bob", &["get"]);
    let r = t.ok("bob", uid_req("Get", &uid));
    assert_eq!(
        bytes(field(&r, "Certificate").unwrap(), "CertificateValue"),
        der
    );
}

#[test]
fn register_refuses_garbage_and_other_types() {
    let mut t = T::new();
    let e = t.err("alice", register_cert(b"\x30\x03\x02\x01\x01", vec![]));
    assert_eq!(reason(&e), ResultReason::InvalidField);
    let der = certificate("x", &[1]);
    let mut pgp = register_cert(&der, vec![]);
    pgp["value"][2]["value"][0]["value"] = json!("PGP");
    let e = t.err("alice", pgp);
    assert_eq!(reason(&e), ResultReason::InvalidField);
    // A client-sent CertificateLength does not survive: the real one is kept.
    let uid = text(
        &t.ok(
            "alice",
            register_cert(
                &der,
                vec![json!({"tag":"CertificateLength","type":"Integer","value":7})],
            ),
        ),
        "UniqueIdentifier",
    );
    let r = t.ok(
        "alice",
        json!({"tag":"GetAttributes","value":[
            {"tag":"UniqueIdentifier","type":"TextString","value":uid},
            {"tag":"AttributeReference","type":"Enumeration","value":"CertificateLength"}]}),
    );
    let a = field(&r, "Attributes").unwrap();
    assert_eq!(
        field(a, "CertificateLength").unwrap()["value"].as_i64(),
        Some(der.len() as i64)
    );
}

#[test]
fn locate_by_certificate_attributes_and_links() {
    let mut t = T::new();
    let a = certificate("a.example", &[0x0a]);
    let b = certificate("b.example", &[0x0b]);
    let key = text(
        &t.ok("alice", create_sym("AES", 256, 12, &[], true)),
        "UniqueIdentifier",
    );
    let ua = text(
        &t.ok(
            "alice",
            register_cert(
                &a,
                vec![json!({"tag":"Link","value":[
                    {"tag":"LinkType","type":"Enumeration","value":"PublicKeyLink"},
                    {"tag":"LinkedObjectIdentifier","type":"TextString","value":key}]})],
            ),
        ),
        "UniqueIdentifier",
    );
    let ub = text(
        &t.ok("alice", register_cert(&b, vec![])),
        "UniqueIdentifier",
    );
    let locate = |t: &mut T, attrs: Vec<Value>| {
        uids(&t.ok(
            "alice",
            json!({"tag":"Locate","value":[{"tag":"Attributes","value":attrs}]}),
        ))
    };
    let mut both = vec![ua.clone(), ub.clone()];
    both.sort();
    assert_eq!(
        locate(
            &mut t,
            vec![json!({"tag":"ObjectType","type":"Enumeration","value":"Certificate"})]
        ),
        both
    );
    assert_eq!(
        locate(
            &mut t,
            vec![json!({"tag":"CertificateType","type":"Enumeration","value":"X_509"})]
        ),
        both
    );
    assert_eq!(
        locate(
            &mut t,
            vec![json!({"tag":"CertificateSubjectCN","type":"TextString","value":"b.example"})]
        ),
        vec![ub.clone()]
    );
    assert_eq!(
        locate(
            &mut t,
            vec![json!({"tag":"CertificateSubjectCN","type":"TextString","value":"c.example"})]
        ),
        Vec::<String>::new()
    );
    // By issuer and serial (X509CertificateIdentifier: issuer DN DER + serial).
    let r = t.ok(
        "alice",
        json!({"tag":"GetAttributes","value":[
            {"tag":"UniqueIdentifier","type":"TextString","value":ua},
            {"tag":"AttributeReference","type":"Enumeration","value":"X509CertificateIdentifier"}]}),
    );
    let id = field(
        field(&r, "Attributes").unwrap(),
        "X509CertificateIdentifier",
    )
    .unwrap()
    .clone();
    assert_eq!(bytes(&id, "CertificateSerialNumber"), vec![0x0a]);
    assert_eq!(locate(&mut t, vec![id]), vec![ua.clone()]);
    // The link to the key is kept and returned.
    let r = t.ok(
        "alice",
        json!({"tag":"GetAttributes","value":[
            {"tag":"UniqueIdentifier","type":"TextString","value":ua},
            {"tag":"AttributeReference","type":"Enumeration","value":"Link"}]}),
    );
    let mut l = field(field(&r, "Attributes").unwrap(), "Link").unwrap();
    // The Cosmian dialect nests the Link structures under one Link.
    if let Some(inner) = field(l, "Link") {
        l = inner;
    }
    assert_eq!(text(l, "LinkType"), "PublicKeyLink");
    assert_eq!(text(l, "LinkedObjectIdentifier"), key);
}
