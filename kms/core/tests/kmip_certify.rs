//! KMIP Certify through `Kms::kmip_json`: a self-signed CA certificate, a certificate from a
//! PKCS#10 request and from a public key, each checked by parsing it and verifying its signature
//! with the CA public key; the automatic certificate ↔ public key links; the refusals (bad
//! request signature, missing rights, a key that may not sign, no issuer).

mod common;
use common::*;

use der::{Decode, Encode};
use kms::kmip::types::ResultReason;
use serde_json::{Value, json};
use spki::DecodePublicKey;
use x509_cert::Certificate;
use x509_cert::ext::pkix::BasicConstraints;

fn link(t: &str, uid: &str) -> Value {
    json!({"tag":"Link","value":[
        {"tag":"LinkType","type":"Enumeration","value":t},
        {"tag":"LinkedObjectIdentifier","type":"TextString","value":uid}]})
}

fn cn(v: &str) -> Value {
    json!({"tag":"CertificateSubjectCN","type":"TextString","value":v})
}

fn days(d: &str) -> Value {
    json!({"tag":"VendorAttributes","type":"Structure","value":[
        {"tag":"VendorAttributes","type":"Structure","value":[
            {"tag":"VendorIdentification","type":"TextString","value":"cosmian"},
            {"tag":"AttributeName","type":"TextString","value":"requested_validity_days"},
            {"tag":"AttributeValue","type":"TextString","value":d}]}]})
}

fn certify_key(public_uid: &str, attrs: Vec<Value>) -> Value {
    json!({"tag":"Certify","type":"Structure","value":[
        {"tag":"UniqueIdentifier","type":"TextString","value":public_uid},
        {"tag":"Attributes","type":"Structure","value":attrs}]})
}

fn certify_csr(csr: &[u8], attrs: Vec<Value>) -> Value {
    json!({"tag":"Certify","type":"Structure","value":[
        {"tag":"CertificateRequestType","type":"Enumeration","value":"PKCS10"},
        {"tag":"CertificateRequestValue","type":"ByteString","value":hex::encode_upper(csr)},
        {"tag":"Attributes","type":"Structure","value":attrs}]})
}

/// (private uid, public uid) of a new key pair.
fn pair(t: &mut T, user: &str, alg: &str, curve: Option<&str>) -> (String, String) {
    let r = t.ok(user, create_pair(alg, curve, &[]));
    (
        text(&r, "PrivateKeyUniqueIdentifier"),
        text(&r, "PublicKeyUniqueIdentifier"),
    )
}

fn der_of(t: &mut T, user: &str, uid: &str) -> Vec<u8> {
    let r = t.ok(user, uid_req("Get", uid));
    bytes(field(&r, "Certificate").unwrap(), "CertificateValue")
}

fn public_spki(t: &mut T, user: &str, uid: &str) -> Vec<u8> {
    let r = t.ok(
        user,
        json!({"tag":"Get","value":[
            {"tag":"UniqueIdentifier","type":"TextString","value":uid},
            {"tag":"KeyFormatType","type":"Enumeration","value":"X509"}]}),
    );
    let kb = field(field(&r, "PublicKey").unwrap(), "KeyBlock").unwrap();
    let kv = field(kb, "KeyValue").unwrap();
    bytes(kv, "KeyMaterial")
}

/// The links of an object, as (type, uid).
fn links(t: &mut T, user: &str, uid: &str) -> Vec<(String, String)> {
    let r = t.ok(
        user,
        json!({"tag":"GetAttributes","value":[
            {"tag":"UniqueIdentifier","type":"TextString","value":uid},
            {"tag":"AttributeReference","type":"Enumeration","value":"Link"}]}),
    );
    let a = field(&r, "Attributes").unwrap();
    let mut out = Vec::new();
    for l in a["value"].as_array().unwrap() {
        if l["tag"] != "Link" {
            continue;
        }
        let inner: Vec<&Value> = match l["value"].as_array() {
            Some(v) if v.iter().all(|x| x["tag"] == "Link") => v.iter().collect(),
            _ => vec![l],
        };
        for x in inner {
            out.push((text(x, "LinkType"), text(x, "LinkedObjectIdentifier")));
        }
    }
    out.sort();
    out
}

/// ECDSA P-256 / SHA-256 check of a certificate's signature with the CA public key.
fn verifies_p256(cert: &Certificate, ca_spki: &[u8]) -> bool {
    use p256::ecdsa::signature::Verifier;
    let vk = p256::ecdsa::VerifyingKey::from_public_key_der(ca_spki).unwrap();
    let sig = p256::ecdsa::DerSignature::from_bytes(cert.signature().raw_bytes()).unwrap();
    let tbs = cert.tbs_certificate().to_der().unwrap();
    vk.verify(&tbs, &sig).is_ok()
}

fn is_ca(cert: &Certificate) -> bool {
    cert.tbs_certificate()
        .get_extension::<BasicConstraints>()
        .unwrap()
        .map(|(_, b)| b.ca)
        .unwrap_or(false)
}

fn subject(cert: &Certificate) -> String {
    cert.tbs_certificate().subject().to_string()
}

/// A CA on P-256: (private uid, public uid, self-signed certificate uid).
fn ca(t: &mut T) -> (String, String, String) {
    let (sk, pk) = pair(t, "alice", "ECDSA", Some("P_256"));
    let r = t.ok(
        "alice",
        certify_key(&pk, vec![link("PrivateKeyLink", &sk), cn("Test CA")]),
    );
    (sk, pk, text(&r, "UniqueIdentifier"))
}

fn csr(cn: &str, alg: &'static rcgen::SignatureAlgorithm) -> Vec<u8> {
    let mut p = rcgen::CertificateParams::new(vec!["leaf.example".to_string()]).unwrap();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    let key = rcgen::KeyPair::generate_for(alg).unwrap();
    p.serialize_request(&key).unwrap().der().to_vec()
}

#[test]
fn self_signed_ca_then_certificate_from_csr() {
    let mut t = T::new();
    let (sk, pk, ca_uid) = ca(&mut t);
    let ca_spki = public_spki(&mut t, "alice", &pk);
    let ca_der = der_of(&mut t, "alice", &ca_uid);
    let ca_cert = Certificate::from_der(&ca_der).unwrap();
    assert_eq!(subject(&ca_cert), "CN=Test CA");
    assert_eq!(ca_cert.tbs_certificate().issuer().to_string(), "CN=Test CA");
    assert!(is_ca(&ca_cert));
    assert!(verifies_p256(&ca_cert, &ca_spki));
    // The CA certificate and its public key are linked both ways (and to the private key).
    assert_eq!(
        links(&mut t, "alice", &ca_uid),
        vec![
            ("PrivateKeyLink".to_string(), sk.clone()),
            ("PublicKeyLink".to_string(), pk.clone())
        ]
    );
    assert!(links(&mut t, "alice", &pk).contains(&("CertificateLink".to_string(), ca_uid.clone())));

    // A PKCS#10 request, the issuer named by its certificate only (the private key is found
    // through the certificate's PrivateKeyLink).
    let req = csr("leaf.example", &rcgen::PKCS_ED25519);
    let r = t.ok(
        "alice",
        certify_csr(&req, vec![link("CertificateLink", &ca_uid), days("30")]),
    );
    let leaf_uid = text(&r, "UniqueIdentifier");
    let leaf = Certificate::from_der(&der_of(&mut t, "alice", &leaf_uid)).unwrap();
    let tbs = leaf.tbs_certificate();
    assert_eq!(subject(&leaf), "CN=leaf.example");
    assert_eq!(tbs.issuer().to_string(), "CN=Test CA");
    assert!(!is_ca(&leaf));
    assert!(verifies_p256(&leaf, &ca_spki));
    // 16 random bytes, positive: 16 bytes without a sign octet.
    assert_eq!(tbs.serial_number().as_bytes().len(), 16);
    assert!(tbs.serial_number().as_bytes()[0] < 0x80);
    assert_ne!(
        tbs.serial_number().as_bytes(),
        ca_cert.tbs_certificate().serial_number().as_bytes()
    );
    let v = tbs.validity();
    assert_eq!(v.not_before.to_unix_duration().as_secs() as i64, NOW);
    assert_eq!(
        v.not_after.to_unix_duration().as_secs() as i64,
        NOW + 30 * 86_400
    );
    // The request's public key is the certificate's.
    let csr_key = x509_cert::request::CertReq::from_der(&req)
        .unwrap()
        .info
        .public_key;
    assert_eq!(tbs.subject_public_key_info(), &csr_key);
    // Its key is not in the KMS: the certificate links only to its issuer.
    assert_eq!(
        links(&mut t, "alice", &leaf_uid),
        vec![("CertificateLink".to_string(), ca_uid.clone())]
    );
    // The default validity is one year.
    let r = t.ok(
        "alice",
        certify_csr(
            &csr("p384.example", &rcgen::PKCS_ECDSA_P384_SHA384),
            vec![link("PrivateKeyLink", &sk)],
        ),
    );
    let c = Certificate::from_der(&der_of(&mut t, "alice", &text(&r, "UniqueIdentifier"))).unwrap();
    assert_eq!(
        c.tbs_certificate()
            .validity()
            .not_after
            .to_unix_duration()
            .as_secs() as i64,
        NOW + 365 * 86_400
    );
    assert_eq!(c.tbs_certificate().issuer().to_string(), "CN=Test CA");
}

#[test]
fn certify_a_kms_public_key_links_both_ways() {
    let mut t = T::new();
    let (sk, _, ca_uid) = ca(&mut t);
    let (leaf_sk, leaf_pk) = pair(&mut t, "alice", "ECDSA", Some("P_384"));
    let r = t.ok(
        "alice",
        certify_key(
            &leaf_pk,
            vec![
                link("PrivateKeyLink", &sk),
                cn("server.example"),
                json!({"tag":"CertificateSubjectO","type":"TextString","value":"Example, Inc"}),
            ],
        ),
    );
    let cert_uid = text(&r, "UniqueIdentifier");
    let der = der_of(&mut t, "alice", &cert_uid);
    let cert = Certificate::from_der(&der).unwrap();
    assert_eq!(subject(&cert), "CN=server.example,O=Example\\, Inc");
    assert_eq!(
        cert.tbs_certificate()
            .subject_public_key_info()
            .to_der()
            .unwrap(),
        public_spki(&mut t, "alice", &leaf_pk)
    );
    assert_eq!(
        links(&mut t, "alice", &cert_uid),
        vec![
            ("CertificateLink".to_string(), ca_uid.clone()),
            ("PrivateKeyLink".to_string(), leaf_sk.clone()),
            ("PublicKeyLink".to_string(), leaf_pk.clone()),
        ]
    );
    assert!(links(&mut t, "alice", &leaf_pk).contains(&("CertificateLink".to_string(), cert_uid)));

    // Registering a certificate of a KMS public key links them too.
    let r = t.ok(
        "alice",
        json!({"tag":"Register","type":"Structure","value":[
            {"tag":"ObjectType","type":"Enumeration","value":"Certificate"},
            {"tag":"Attributes","type":"Structure","value":[]},
            {"tag":"Certificate","type":"Structure","value":[
                {"tag":"CertificateType","type":"Enumeration","value":"X_509"},
                {"tag":"CertificateValue","type":"ByteString","value":hex::encode_upper(&der)}]}]}),
    );
    let again = text(&r, "UniqueIdentifier");
    assert!(
        links(&mut t, "alice", &again).contains(&("PublicKeyLink".to_string(), leaf_pk.clone()))
    );
    assert!(links(&mut t, "alice", &leaf_pk).contains(&("CertificateLink".to_string(), again)));
    // Another user's registration of the same certificate links nothing of alice's.
    let r = t.ok(
        "bob",
        json!({"tag":"Register","type":"Structure","value":[
            {"tag":"ObjectType","type":"Enumeration","value":"Certificate"},
            {"tag":"Attributes","type":"Structure","value":[]},
            {"tag":"Certificate","type":"Structure","value":[
                {"tag":"CertificateType","type":"Enumeration","value":"X_509"},
                {"tag":"CertificateValue","type":"ByteString","value":hex::encode_upper(&der)}]}]}),
    );
    assert_eq!(links(&mut t, "bob", &text(&r, "UniqueIdentifier")), vec![]);
}

#[test]
fn bad_request_signature_is_refused() {
    let mut t = T::new();
    let (sk, _, _) = ca(&mut t);
    let mut req = csr("x.example", &rcgen::PKCS_ECDSA_P256_SHA256);
    // The signature is the last element: change a byte of its last integer.
    let n = req.len();
    req[n - 1] ^= 0x01;
    let e = t.err(
        "alice",
        certify_csr(&req, vec![link("PrivateKeyLink", &sk)]),
    );
    assert_eq!(reason(&e), ResultReason::CryptographicFailure);
    assert!(
        e.to_string()
            .contains("certificate request's signature does not verify"),
        "{e}"
    );
    // Garbage is not a request.
    let e = t.err(
        "alice",
        certify_csr(b"garbage", vec![link("PrivateKeyLink", &sk)]),
    );
    assert_eq!(reason(&e), ResultReason::InvalidField);
    assert!(e.to_string().contains("not a DER or PEM PKCS#10"), "{e}");
}

#[test]
fn issuer_rights_and_usage_are_enforced() {
    let mut t = T::new();
    let (sk, _, ca_uid) = ca(&mut t);
    let req = csr("bob.example", &rcgen::PKCS_ECDSA_P256_SHA256);
    // No right at all on the CA key: it does not exist for bob.
    let e = t.err("bob", certify_csr(&req, vec![link("PrivateKeyLink", &sk)]));
    assert_eq!(reason(&e), ResultReason::ObjectNotFound);
    // `get` is not enough: issuing is signing.
    t.grant("alice", &sk, "bob", &["get"]);
    let e = t.err("bob", certify_csr(&req, vec![link("PrivateKeyLink", &sk)]));
    assert_eq!(reason(&e), ResultReason::PermissionDenied);
    // `sign` on the key, but the CA certificate it links to is alice's alone.
    t.grant("alice", &sk, "bob", &["sign"]);
    let e = t.err(
        "bob",
        certify_csr(
            &req,
            vec![
                link("PrivateKeyLink", &sk),
                link("CertificateLink", &ca_uid),
            ],
        ),
    );
    assert_eq!(reason(&e), ResultReason::ObjectNotFound);
    t.grant("alice", &ca_uid, "bob", &["get"]);
    let r = t.ok(
        "bob",
        certify_csr(
            &req,
            vec![
                link("PrivateKeyLink", &sk),
                link("CertificateLink", &ca_uid),
            ],
        ),
    );
    let c = Certificate::from_der(&der_of(&mut t, "bob", &text(&r, "UniqueIdentifier"))).unwrap();
    assert_eq!(c.tbs_certificate().issuer().to_string(), "CN=Test CA");

    // A key whose usage mask does not allow signing is no CA.
    let (sk2, _) = pair(&mut t, "alice", "ECDSA", Some("P_256"));
    t.ok(
        "alice",
        json!({"tag":"SetAttribute","value":[
            {"tag":"UniqueIdentifier","type":"TextString","value":sk2},
            {"tag":"NewAttribute","value":[
                {"tag":"CryptographicUsageMask","type":"Integer","value":2}]}]}),
    );
    let e = t.err(
        "alice",
        certify_csr(&req, vec![link("PrivateKeyLink", &sk2)]),
    );
    assert_eq!(reason(&e), ResultReason::IncompatibleCryptographicUsageMask);
    // A symmetric key is no CA either.
    let aes = text(
        &t.ok("alice", create_sym("AES", 256, 12, &[], true)),
        "UniqueIdentifier",
    );
    let e = t.err(
        "alice",
        certify_csr(&req, vec![link("PrivateKeyLink", &aes)]),
    );
    assert_eq!(reason(&e), ResultReason::InvalidObjectType);
    assert!(e.to_string().contains("not a private key"), "{e}");
}

#[test]
fn missing_issuer_subject_and_self_signature_are_refused() {
    let mut t = T::new();
    let (sk, pk) = pair(&mut t, "alice", "ECDSA", Some("P_256"));
    let (_, other_pk) = pair(&mut t, "alice", "Ed25519", None);
    let req = csr("x.example", &rcgen::PKCS_ECDSA_P256_SHA256);
    let e = t.err("alice", certify_csr(&req, vec![]));
    assert_eq!(reason(&e), ResultReason::MissingData);
    assert!(e.to_string().contains("needs the issuer"), "{e}");
    let e = t.err("alice", certify_key(&pk, vec![link("PrivateKeyLink", &sk)]));
    assert_eq!(reason(&e), ResultReason::MissingData);
    assert!(e.to_string().contains("needs a subject"), "{e}");
    // Without an issuer certificate, only the CA key's own public key can be certified.
    let e = t.err(
        "alice",
        certify_key(&other_pk, vec![link("PrivateKeyLink", &sk), cn("y")]),
    );
    assert_eq!(reason(&e), ResultReason::InvalidField);
    assert!(e.to_string().contains("self-signed"), "{e}");
    let e = t.err(
        "alice",
        certify_key(&pk, vec![link("PrivateKeyLink", &sk), cn("y"), days("0")]),
    );
    assert!(e.to_string().contains("1 to 36500 days"), "{e}");
    let e = t.err(
        "alice",
        json!({"tag":"Certify","type":"Structure","value":[
            {"tag":"Attributes","type":"Structure","value":[link("PrivateKeyLink", &sk)]}]}),
    );
    assert_eq!(reason(&e), ResultReason::MissingData);
}

#[test]
fn ed25519_ca() {
    let mut t = T::new();
    let (sk, pk) = pair(&mut t, "alice", "Ed25519", None);
    let r = t.ok(
        "alice",
        certify_key(&pk, vec![link("PrivateKeyLink", &sk), cn("Ed CA")]),
    );
    let c = Certificate::from_der(&der_of(&mut t, "alice", &text(&r, "UniqueIdentifier"))).unwrap();
    assert_eq!(c.signature_algorithm().oid.to_string(), "1.3.101.112");
    let spki = public_spki(&mut t, "alice", &pk);
    let vk = ed25519_dalek::VerifyingKey::from_public_key_der(&spki).unwrap();
    let sig = ed25519_dalek::Signature::from_slice(c.signature().raw_bytes()).unwrap();
    vk.verify_strict(&c.tbs_certificate().to_der().unwrap(), &sig)
        .unwrap();
}

#[test]
fn rsa_ca_signs_with_pkcs1v15_sha256() {
    use rsa::signature::Verifier;
    let mut t = T::new();
    let mut req = create_pair("RSA", None, &[]);
    req["value"][0]["value"]
        .as_array_mut()
        .unwrap()
        .push(json!({"tag":"CryptographicLength","type":"Integer","value":2048}));
    let r = t.ok("alice", req);
    let sk = text(&r, "PrivateKeyUniqueIdentifier");
    let pk = text(&r, "PublicKeyUniqueIdentifier");
    let r = t.ok(
        "alice",
        certify_key(&pk, vec![link("PrivateKeyLink", &sk), cn("RSA CA")]),
    );
    let ca_uid = text(&r, "UniqueIdentifier");
    let r = t.ok(
        "alice",
        certify_csr(
            &csr("rsa-leaf.example", &rcgen::PKCS_ECDSA_P256_SHA256),
            vec![link("CertificateLink", &ca_uid)],
        ),
    );
    let leaf =
        Certificate::from_der(&der_of(&mut t, "alice", &text(&r, "UniqueIdentifier"))).unwrap();
    // sha256WithRSAEncryption, NULL parameters (RFC 4055 §5).
    assert_eq!(
        leaf.signature_algorithm().oid.to_string(),
        "1.2.840.113549.1.1.11"
    );
    assert!(leaf.signature_algorithm().parameters.is_some());
    assert_eq!(leaf.tbs_certificate().issuer().to_string(), "CN=RSA CA");
    let spki = public_spki(&mut t, "alice", &pk);
    let vk = rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::from_public_key_der(&spki).unwrap();
    let sig = rsa::pkcs1v15::Signature::try_from(leaf.signature().raw_bytes()).unwrap();
    vk.verify(&leaf.tbs_certificate().to_der().unwrap(), &sig)
        .expect("the RSA CA's signature verifies");
    // A changed TBS does not verify with the signature.
    let mut tbs = leaf.tbs_certificate().to_der().unwrap();
    let n = tbs.len();
    tbs[n - 1] ^= 1;
    assert!(vk.verify(&tbs, &sig).is_err());
}

#[test]
fn p384_ca_signs_with_sha384() {
    let mut t = T::new();
    let (sk, pk) = pair(&mut t, "alice", "ECDSA", Some("P_384"));
    let r = t.ok(
        "alice",
        certify_key(&pk, vec![link("PrivateKeyLink", &sk), cn("P384 CA")]),
    );
    let c = Certificate::from_der(&der_of(&mut t, "alice", &text(&r, "UniqueIdentifier"))).unwrap();
    assert_eq!(
        c.signature_algorithm().oid.to_string(),
        "1.2.840.10045.4.3.3"
    );
    use p384::ecdsa::signature::Verifier;
    let vk =
        p384::ecdsa::VerifyingKey::from_public_key_der(&public_spki(&mut t, "alice", &pk)).unwrap();
    let sig = p384::ecdsa::DerSignature::from_bytes(c.signature().raw_bytes()).unwrap();
    vk.verify(&c.tbs_certificate().to_der().unwrap(), &sig)
        .expect("ECDSA P-384/SHA-384 verifies");
}

#[test]
fn recertifying_the_ca_key_gives_a_new_root_and_certificates_are_active() {
    let mut t = T::new();
    let (sk, pk, first) = ca(&mut t);
    // The CA key now links to its root; certifying its own key again is still self-signed.
    let r = t.ok(
        "alice",
        certify_key(&pk, vec![link("PrivateKeyLink", &sk), cn("Test CA 2")]),
    );
    let second = text(&r, "UniqueIdentifier");
    let c = Certificate::from_der(&der_of(&mut t, "alice", &second)).unwrap();
    assert_eq!(c.tbs_certificate().issuer().to_string(), "CN=Test CA 2");
    assert!(is_ca(&c));
    assert_ne!(first, second);
    let r = t.ok("alice", uid_req("GetAttributes", &second));
    assert_eq!(text(field(&r, "Attributes").unwrap(), "State"), "Active");
    // The keys link to the newest certificate.
    assert!(links(&mut t, "alice", &pk).contains(&("CertificateLink".to_string(), second.clone())));
    assert!(links(&mut t, "alice", &sk).contains(&("CertificateLink".to_string(), second)));
}

/// Requests made by OpenSSL (tests/data/csr/README.md): RSA 2048 with SHA-256 (PEM, with a
/// subjectAltName) and P-384 with SHA-256 (DER).
#[test]
fn openssl_requests_rsa_and_p384_with_sha256() {
    let mut t = T::new();
    let (sk, _, _) = ca(&mut t);
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/csr");
    let rsa_pem = std::fs::read(data.join("rsa2048.csr.pem")).unwrap();
    let r = t.ok(
        "alice",
        certify_csr(&rsa_pem, vec![link("PrivateKeyLink", &sk)]),
    );
    let c = Certificate::from_der(&der_of(&mut t, "alice", &text(&r, "UniqueIdentifier"))).unwrap();
    assert_eq!(subject(&c), "O=Example,CN=rsa-csr.example");
    let (_, san) = c
        .tbs_certificate()
        .get_extension::<x509_cert::ext::pkix::SubjectAltName>()
        .unwrap()
        .expect("the request's subjectAltName is kept");
    assert_eq!(san.0.len(), 1);
    let p384 = std::fs::read(data.join("p384-sha256.csr.der")).unwrap();
    let r = t.ok(
        "alice",
        certify_csr(&p384, vec![link("PrivateKeyLink", &sk)]),
    );
    let c = Certificate::from_der(&der_of(&mut t, "alice", &text(&r, "UniqueIdentifier"))).unwrap();
    assert_eq!(subject(&c), "CN=p384-csr.example");
    // Changing a letter of the subject (still valid DER) breaks either request's signature.
    for mut req in [p384, rsa_der(&rsa_pem)] {
        let at = req.windows(8).position(|w| w == b"csr.exam").unwrap();
        req[at] = b'C';
        let e = t.err(
            "alice",
            certify_csr(&req, vec![link("PrivateKeyLink", &sk)]),
        );
        assert_eq!(reason(&e), ResultReason::CryptographicFailure, "{e}");
        assert!(e.to_string().contains("signature does not verify"), "{e}");
    }
}

fn rsa_der(pem: &[u8]) -> Vec<u8> {
    use der::DecodePem;
    x509_cert::request::CertReq::from_pem(pem)
        .unwrap()
        .to_der()
        .unwrap()
}

/// In a batch, Certify right after CreateKeyPair uses the ID placeholder (the new private key),
/// which stands for its public key.
#[test]
fn batch_create_key_pair_then_certify_by_placeholder() {
    let mut t = T::new();
    let (ca_sk, _, _) = ca(&mut t);
    let msg = json!({"tag":"RequestMessage","value":[
        {"tag":"RequestHeader","value":[
            {"tag":"ProtocolVersion","value":[
                {"tag":"ProtocolVersionMajor","type":"Integer","value":2},
                {"tag":"ProtocolVersionMinor","type":"Integer","value":1}]},
            {"tag":"BatchCount","type":"Integer","value":2}]},
        {"tag":"BatchItem","value":[
            {"tag":"Operation","type":"Enumeration","value":"CreateKeyPair"},
            {"tag":"RequestPayload","value":[
                {"tag":"CommonAttributes","value":[
                    {"tag":"CryptographicAlgorithm","type":"Enumeration","value":"ECDSA"},
                    {"tag":"RecommendedCurve","type":"Enumeration","value":"P_256"},
                    {"tag":"ActivationDate","type":"DateTime","value":"2024-01-01T00:00:00Z"}]}]}]},
        {"tag":"BatchItem","value":[
            {"tag":"Operation","type":"Enumeration","value":"Certify"},
            {"tag":"RequestPayload","value":[
                {"tag":"Attributes","value":[link("PrivateKeyLink", &ca_sk), cn("batch.example")]}]}]}]});
    let r = t.ok("alice", msg);
    let items: Vec<&Value> = r["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["tag"] == "BatchItem")
        .collect();
    assert_eq!(text(items[1], "ResultStatus"), "Success", "{r}");
    let pk = text(
        field(items[0], "ResponsePayload").unwrap(),
        "PublicKeyUniqueIdentifier",
    );
    let cert = text(
        field(items[1], "ResponsePayload").unwrap(),
        "UniqueIdentifier",
    );
    assert!(links(&mut t, "alice", &cert).contains(&("PublicKeyLink".to_string(), pk.clone())));
    let c = Certificate::from_der(&der_of(&mut t, "alice", &cert)).unwrap();
    assert_eq!(subject(&c), "CN=batch.example");
    assert_eq!(
        c.tbs_certificate()
            .subject_public_key_info()
            .to_der()
            .unwrap(),
        public_spki(&mut t, "alice", &pk)
    );
}
