//! State-machine and API tests with a deterministic in-memory evidence source (the real platform, `snp-emu`,
//! is exercised by the end-to-end tests in `tests/`).

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::str::FromStr;

use der::{Decode, DecodePem, EncodePem, pem::LineEnding};
use p256::ecdsa::{DerSignature, SigningKey};
use sha2::{Digest, Sha256};
use spki::SubjectPublicKeyInfoOwned;
use x509_cert::builder::profile::BuilderProfile;
use x509_cert::builder::{Builder, CertificateBuilder};
use x509_cert::certificate::{Certificate, TbsCertificate};
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::request::CertReq;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};
use zeroize::Zeroizing;

use super::platform::{
    CertTableEntry, DatabaseProbe, Evidence, EvidenceError, Platform, ProbeError,
};
use super::x509::{OID_SNP_QUOTE, quote_extension};
use super::*;

mod tdx;

const NOW: i64 = 1_790_000_000;

/// Evidence with a fixed derived key; its "report" is 0x4A0 bytes with report_data at 0x50 (SNP layout),
/// remembering every report_data asked for.
struct TestEvidence {
    platform: Platform,
    derived: [u8; 32],
    asked: Vec<[u8; 64]>,
}

impl TestEvidence {
    fn snp(derived: u8) -> Self {
        TestEvidence {
            platform: Platform::SevSnp,
            derived: [derived; 32],
            asked: Vec::new(),
        }
    }
}

impl Evidence for TestEvidence {
    fn platform(&self) -> Platform {
        self.platform
    }
    fn report(&mut self, report_data: &[u8; 64]) -> Result<Vec<u8>, EvidenceError> {
        if self.platform == Platform::None {
            return Err(EvidenceError::Unsupported);
        }
        self.asked.push(*report_data);
        // A format-valid (unsigned) report: VERSION 3, SIGNATURE_ALGO 1 (ECDSA P-384), REPORT_DATA.
        let mut r = vec![0u8; 0x4A0];
        r[0..4].copy_from_slice(&3u32.to_le_bytes());
        r[0x34..0x38].copy_from_slice(&1u32.to_le_bytes());
        r[0x50..0x90].copy_from_slice(report_data);
        Ok(r)
    }
    fn cert_table(&mut self) -> Result<Vec<CertTableEntry>, EvidenceError> {
        Ok(vec![CertTableEntry {
            guid: [0x63; 16],
            der: vec![0x30, 0x00],
        }])
    }
    fn derived_key(&mut self) -> Result<Option<Zeroizing<[u8; 32]>>, EvidenceError> {
        Ok(match self.platform {
            Platform::SevSnp => Some(Zeroizing::new(self.derived)),
            Platform::Tdx | Platform::None => None,
        })
    }
}

/// A database check that accepts one secret and one URL.
struct TestProbe {
    good: [u8; 32],
}

impl DatabaseProbe for TestProbe {
    fn probe(&mut self, url: &str, secret: &DbSecret) -> Result<(), ProbeError> {
        if !url.starts_with("redis://") {
            return Err(ProbeError::BadUrl);
        }
        if url != "redis://127.0.0.1:6379" {
            return Err(ProbeError::Unreachable);
        }
        if secret.expose() != &self.good {
            return Err(ProbeError::WrongSecret);
        }
        Ok(())
    }
}

struct Harness {
    ev: TestEvidence,
    probe: TestProbe,
    /// The admin's TLS client key (SPKI DER), presented by [`Harness::ok`].
    admin: Vec<u8>,
}

/// SPKI DER of the P-256 key with this scalar.
fn spki_of_seed(seed: u8) -> Vec<u8> {
    let key = SigningKey::from_slice(&[seed; 32]).unwrap();
    der::Encode::to_der(&SubjectPublicKeyInfoOwned::from_key(key.verifying_key()).unwrap()).unwrap()
}

/// What [`crate::app::App`] does with a bootstrap-phase request: `GET /attestation` goes to
/// [`routes::attestation`], the rest to [`Bootstrap::handle`].
fn dispatch(
    b: Bootstrap,
    method: &str,
    target: &str,
    body: &[u8],
    spki: Option<&[u8]>,
    ev: &mut dyn Evidence,
    probe: &mut dyn DatabaseProbe,
) -> Step {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if path == "/attestation" && method == "GET" {
        let r = match routes::attestation(b.identity(), ev, query) {
            Ok(a) => Response::ok(&a),
            Err(e) => Response::error(&e),
        };
        return Step::Continue(b, r);
    }
    let method = match method {
        "GET" => crate::http::Method::Get,
        "POST" => crate::http::Method::Post,
        "PUT" => crate::http::Method::Put,
        "DELETE" => crate::http::Method::Delete,
        _ => crate::http::Method::Other,
    };
    let req = crate::http::Request {
        method,
        path: path.into(),
        query: (!query.is_empty()).then(|| query.into()),
        minor_version: 1,
        headers: Vec::new(),
        body: body.to_vec(),
        keep_alive: true,
    };
    b.handle(&req, spki, probe)
}

impl Harness {
    fn new() -> Self {
        Harness {
            ev: TestEvidence::snp(7),
            probe: TestProbe { good: [9; 32] },
            admin: spki_of_seed(0x11),
        }
    }
    fn bootstrap(&mut self, policy: ProvisionerPolicy) -> Bootstrap {
        Bootstrap::new(
            alloc::sync::Arc::new(Identity::create(&mut self.ev, [1; 32], NOW).unwrap()),
            policy,
        )
    }
    fn call(
        &mut self,
        b: Bootstrap,
        method: &str,
        target: &str,
        body: &str,
        spki: Option<&[u8]>,
    ) -> Step {
        dispatch(
            b,
            method,
            target,
            body.as_bytes(),
            spki,
            &mut self.ev,
            &mut self.probe,
        )
    }
    /// Calls and expects to stay in bootstrap; returns the machine, status and JSON.
    fn ok(
        &mut self,
        b: Bootstrap,
        method: &str,
        target: &str,
        body: &str,
    ) -> (Bootstrap, u16, serde_json::Value) {
        let admin = self.admin.clone();
        self.as_client(b, method, target, body, Some(&admin))
    }
    /// [`Harness::ok`] with another TLS client key (or none).
    fn as_client(
        &mut self,
        b: Bootstrap,
        method: &str,
        target: &str,
        body: &str,
        spki: Option<&[u8]>,
    ) -> (Bootstrap, u16, serde_json::Value) {
        match self.call(b, method, target, body, spki) {
            Step::Continue(b, r) => (b, r.status, serde_json::from_slice(&r.body).unwrap()),
            Step::Start(..) => panic!("unexpected start"),
        }
    }
}

/// Issues a certificate for `spki` from a P-256 test CA; returns (leaf PEM ‖ CA PEM, CA PEM).
fn issue(spki: SubjectPublicKeyInfoOwned, ca_seed: u8, extra: Vec<Extension>) -> (String, String) {
    struct Issued {
        subject: Name,
        issuer: Name,
        extra: Vec<Extension>,
    }
    impl BuilderProfile for Issued {
        fn get_issuer(&self, _s: &Name) -> Name {
            self.issuer.clone()
        }
        fn get_subject(&self) -> Name {
            self.subject.clone()
        }
        fn build_extensions(
            &self,
            _a: spki::SubjectPublicKeyInfoRef<'_>,
            _b: spki::SubjectPublicKeyInfoRef<'_>,
            _t: &TbsCertificate,
        ) -> x509_cert::builder::Result<Vec<Extension>> {
            Ok(self.extra.clone())
        }
    }
    let ca_key = SigningKey::from_slice(&[ca_seed; 32]).unwrap();
    let ca_name = Name::from_str("CN=Test CA").unwrap();
    let validity = Validity::new(
        Time::from(
            der::DateTime::from_unix_duration(core::time::Duration::from_secs(1_700_000_000))
                .unwrap(),
        ),
        Time::from(
            der::DateTime::from_unix_duration(core::time::Duration::from_secs(1_900_000_000))
                .unwrap(),
        ),
    );
    let ca_spki = SubjectPublicKeyInfoOwned::from_key(ca_key.verifying_key()).unwrap();
    let ca = CertificateBuilder::new(
        Issued {
            subject: ca_name.clone(),
            issuer: ca_name.clone(),
            extra: Vec::new(),
        },
        SerialNumber::new(&[1]).unwrap(),
        validity,
        ca_spki,
    )
    .unwrap()
    .build::<_, DerSignature>(&ca_key)
    .unwrap();
    let leaf = CertificateBuilder::new(
        Issued {
            subject: Name::from_str("CN=kms.test").unwrap(),
            issuer: ca_name,
            extra,
        },
        SerialNumber::new(&[2]).unwrap(),
        validity,
        spki,
    )
    .unwrap()
    .build::<_, DerSignature>(&ca_key)
    .unwrap();
    let ca_pem = ca.to_pem(LineEnding::LF).unwrap();
    let mut chain = leaf.to_pem(LineEnding::LF).unwrap();
    chain.push_str(&ca_pem);
    (chain, ca_pem)
}

fn our_spki(b: &Bootstrap) -> SubjectPublicKeyInfoOwned {
    SubjectPublicKeyInfoOwned::from_der(&x509::spki_der(b.identity().key()).unwrap()).unwrap()
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

fn secret_b64(byte: u8) -> String {
    use base64ct::{Base64, Encoding};
    Base64::encode_string(&[byte; 32])
}

#[test]
fn bootstrap_certificate_carries_quote_binding_its_key() {
    let mut h = Harness::new();
    let b = h.bootstrap(ProvisionerPolicy::Open);
    let cert = Certificate::from_der(b.identity().certificate_der()).unwrap();
    let spki_der = der::Encode::to_der(cert.tbs_certificate().subject_public_key_info()).unwrap();
    assert_eq!(spki_der, x509::spki_der(b.identity().key()).unwrap());
    let q = quote_extension(&cert).expect("quote extension");
    assert_eq!(q.oid, OID_SNP_QUOTE);
    let ext = cert
        .tbs_certificate()
        .extensions()
        .unwrap()
        .iter()
        .find(|e| e.extn_id == OID_SNP_QUOTE)
        .unwrap();
    assert!(!ext.critical);
    // report ‖ count 1 ‖ len 18 ‖ guid ‖ 30 00
    assert_eq!(q.quote.len(), 0x4A0 + 4 + 4 + 18);
    let rd = &q.quote[0x50..0x90];
    let key_hash = Sha256::digest(b.identity().key().public_uncompressed());
    assert_eq!(&rd[..32], key_hash.as_slice());
    assert_eq!(&rd[32..], &[0u8; 32]);
    // self-signed: the signature verifies with its own key
    let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(b.identity().key().public_uncompressed())
        .unwrap();
    let sig = p256::ecdsa::DerSignature::from_bytes(cert.signature().raw_bytes()).unwrap();
    let tbs = der::Encode::to_der(cert.tbs_certificate()).unwrap();
    signature::Verifier::verify(&vk, &tbs, &sig).unwrap();
}

/// Issue 12 (low): a certificate with two quote extensions (a duplicate) carries no quote.
#[test]
fn two_quote_extensions_are_no_quote() {
    let oid: Vec<u64> = OID_SNP_QUOTE.arcs().map(u64::from).collect();
    let make = |n: usize| {
        let mut params =
            rcgen::CertificateParams::new(vec![alloc::string::String::from("kms")]).unwrap();
        for i in 0..n {
            params
                .custom_extensions
                .push(rcgen::CustomExtension::from_oid_content(
                    &oid,
                    vec![0x30, 0x01, i as u8],
                ));
        }
        let key = rcgen::KeyPair::generate().unwrap();
        let der = params.self_signed(&key).unwrap().der().to_vec();
        Certificate::from_der(&der).unwrap()
    };
    assert_eq!(
        quote_extension(&make(1)).unwrap().quote,
        vec![0x30, 0x01, 0]
    );
    assert!(quote_extension(&make(2)).is_none());
}

#[test]
fn same_platform_key_same_bootstrap_key_across_restarts() {
    let mut a = TestEvidence::snp(7);
    let mut b = TestEvidence::snp(7);
    let mut c = TestEvidence::snp(8);
    let ia = Identity::create(&mut a, [1; 32], NOW).unwrap();
    let ib = Identity::create(&mut b, [2; 32], NOW + 5).unwrap();
    let ic = Identity::create(&mut c, [1; 32], NOW).unwrap();
    assert_eq!(
        ia.key().public_uncompressed(),
        ib.key().public_uncompressed()
    );
    assert_ne!(
        ia.key().public_uncompressed(),
        ic.key().public_uncompressed()
    );
    assert_eq!(ia.sk_origin(), keys::SkOrigin::PlatformDerived);
}

#[test]
fn platform_none_has_random_key_and_no_quote() {
    let mut ev = TestEvidence {
        platform: Platform::None,
        derived: [0; 32],
        asked: Vec::new(),
    };
    let id = Identity::create(&mut ev, [5; 32], NOW).unwrap();
    assert_eq!(id.sk_origin(), keys::SkOrigin::Random);
    assert!(id.quote().is_none());
    let cert = Certificate::from_der(id.certificate_der()).unwrap();
    assert!(quote_extension(&cert).is_none());
    let mut probe = TestProbe { good: [9; 32] };
    let b = Bootstrap::new(alloc::sync::Arc::new(id), ProvisionerPolicy::Open);
    let target = alloc::format!("/attestation?nonce={}", "ab".repeat(32));
    let Step::Continue(b, r) = dispatch(b, "GET", &target, b"", None, &mut ev, &mut probe) else {
        panic!()
    };
    assert_eq!(r.status, 501);
    let body = br#"{"subject":"CN=kms","include_quote":true}"#;
    let admin = spki_of_seed(0x11);
    let Step::Continue(_, r) = dispatch(b, "POST", "/csr", body, Some(&admin), &mut ev, &mut probe)
    else {
        panic!()
    };
    assert_eq!(r.status, 409, "{}", String::from_utf8_lossy(&r.body));
}

#[test]
fn attestation_puts_nonce_in_report_data() {
    let mut h = Harness::new();
    let b = h.bootstrap(ProvisionerPolicy::Open);
    let nonce = "0123456789abcdef".repeat(4);
    let (b, status, v) = h.ok(b, "GET", &alloc::format!("/attestation?nonce={nonce}"), "");
    assert_eq!(status, 200);
    assert_eq!(v["nonce"], nonce.as_str());
    assert_eq!(v["platform"], "sev-snp");
    let asked = h.ev.asked.last().unwrap();
    assert_eq!(
        &asked[32..],
        base16ct::lower::decode_vec(&nonce).unwrap().as_slice()
    );
    assert_eq!(
        &asked[..32],
        b.identity().key().public_key_hash().as_slice()
    );
    use base64ct::{Base64, Encoding};
    let quote = Base64::decode_vec(v["quote"].as_str().unwrap()).unwrap();
    assert_eq!(&quote[0x50..0x90], asked.as_slice());
    for bad in [
        "/attestation",
        "/attestation?nonce=12",
        "/attestation?nonce=zz",
    ] {
        let (_, status, v) = h.ok(
            Harness::new().bootstrap(ProvisionerPolicy::Open),
            "GET",
            bad,
            "",
        );
        assert_eq!(status, 400, "{bad}: {v}");
        assert!(v["error"].as_str().unwrap().contains("nonce"));
    }
}

#[test]
fn csr_is_signed_by_bootstrap_key_with_names_and_optional_quote() {
    let mut h = Harness::new();
    let b = h.bootstrap(ProvisionerPolicy::Open);
    let body = r#"{"subject":"CN=kms.example.com,O=Example","dns_names":["kms.example.com"],"ip_addresses":["127.0.0.1"],"include_quote":true}"#;
    let (b, status, v) = h.ok(b, "POST", "/csr", body);
    assert_eq!(status, 200, "{v}");
    let csr = CertReq::from_pem(v["csr_pem"].as_str().unwrap().as_bytes()).unwrap();
    let spki = der::Encode::to_der(&csr.info.public_key).unwrap();
    assert_eq!(spki, x509::spki_der(b.identity().key()).unwrap());
    let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(b.identity().key().public_uncompressed())
        .unwrap();
    let sig = p256::ecdsa::DerSignature::from_bytes(csr.signature.raw_bytes()).unwrap();
    signature::Verifier::verify(&vk, &der::Encode::to_der(&csr.info).unwrap(), &sig).unwrap();
    assert_eq!(
        alloc::format!("{}", csr.info.subject),
        "CN=kms.example.com,O=Example"
    );
    let attrs = der::Encode::to_der(&csr.info.attributes).unwrap();
    let contains = |needle: &[u8]| attrs.windows(needle.len()).any(|w| w == needle);
    assert!(contains(b"kms.example.com"));
    assert!(contains(&[0x87, 4, 127, 0, 0, 1]), "IP SAN");
    let quote = b.identity().quote().unwrap().quote.clone();
    assert!(contains(&quote), "quote extension requested");

    let (b, status, v) = h.ok(b, "POST", "/csr", r#"{"subject":"CN=kms"}"#);
    assert_eq!(status, 200, "{v}");
    let csr = CertReq::from_pem(v["csr_pem"].as_str().unwrap().as_bytes()).unwrap();
    let attrs = der::Encode::to_der(&csr.info.attributes).unwrap();
    assert!(
        !attrs.windows(64).any(|w| w == &quote[0x50..0x90]),
        "no quote unless asked"
    );

    for bad in [
        r#"{"subject":"not a dn"}"#,
        r#"{"subject":"CN=x","ip_addresses":["300.1.1.1"]}"#,
        "[1]",
        "{",
    ] {
        let (_, status, v) = h.ok(fresh(), "POST", "/csr", bad);
        assert_eq!(status, 400, "{bad}: {v}");
    }
    drop(b);
}

/// A fresh machine with the same identity key (restarts derive the same key).
fn fresh() -> Bootstrap {
    Harness::new().bootstrap(ProvisionerPolicy::Open)
}

#[test]
fn full_provisioning_sequence_starts_once() {
    let mut h = Harness::new();
    let b = h.bootstrap(ProvisionerPolicy::Open);
    let (chain, ca) = issue(our_spki(&b), 3, Vec::new());

    let (b, status, v) = h.ok(b, "POST", "/start", "");
    assert_eq!(
        (status, v["error"].as_str().unwrap()),
        (
            409,
            "not ready: post the API certificate and the database first"
        )
    );
    let db = alloc::format!(
        r#"{{"url":"redis://127.0.0.1:6379","db_secret":"{}"}}"#,
        secret_b64(9)
    );
    let (b, status, v) = h.ok(b, "POST", "/redis-findex", &db);
    assert_eq!(
        (status, v["error"].as_str().unwrap()),
        (409, "post the API certificate first")
    );

    let (b, status, v) = h.ok(
        b,
        "POST",
        "/certificate",
        &alloc::format!(r#"{{"chain_pem":{}}}"#, json_str(&chain)),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["api_certificate_has_quote"], false);
    assert_eq!(v["chain_length"], 2);
    assert_eq!(b.phase().name(), "awaiting database");
    let (b, status, _) = h.ok(b, "POST", "/start", "");
    assert_eq!(status, 409);

    // database errors keep the state
    let wrong = alloc::format!(
        r#"{{"url":"redis://127.0.0.1:6379","db_secret":"{}"}}"#,
        secret_b64(8)
    );
    let (b, status, v) = h.ok(b, "POST", "/redis-findex", &wrong);
    assert_eq!(status, 422, "{v}");
    assert!(v["error"].as_str().unwrap().contains("wrong db_secret"));
    let (b, status, _) = h.ok(
        b,
        "POST",
        "/redis-findex",
        r#"{"url":"redis://127.0.0.1:1","db_secret":"AAAA"}"#,
    );
    assert_eq!(status, 400, "short secret");
    let unreachable = alloc::format!(
        r#"{{"url":"redis://127.0.0.1:1","db_secret":"{}"}}"#,
        secret_b64(9)
    );
    let (b, status, _) = h.ok(b, "POST", "/redis-findex", &unreachable);
    assert_eq!(status, 502);
    let (b, status, v) = h.ok(b, "POST", "/redis-findex", &db);
    assert_eq!(status, 200, "{v}");
    assert_eq!(b.phase().name(), "ready");

    let (b, status, v) = h.ok(
        b,
        "POST",
        "/client-ca",
        &alloc::format!(r#"{{"ca_pem":{}}}"#, json_str(&ca)),
    );
    assert_eq!(status, 200, "{v}");

    let admin = h.admin.clone();
    match h.call(b, "POST", "/start", "", Some(&admin)) {
        Step::Start(started, r) => {
            assert_eq!(r.status, 200);
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(v["ra_tls_port"], true);
            assert_eq!(v["client_auth"], true);
            assert!(started.needs_ra_tls_port());
            assert_eq!(started.database.secret.expose(), &[9; 32]);
            assert_eq!(started.database.url, "redis://127.0.0.1:6379");
            assert_eq!(started.chain.der.len(), 2);
            assert_eq!(started.client_ca.as_ref().unwrap().der.len(), 1);
        }
        Step::Continue(_, r) => panic!("not started: {}", String::from_utf8_lossy(&r.body)),
    }
}

#[test]
fn certificate_for_another_key_is_refused() {
    let mut h = Harness::new();
    let b = h.bootstrap(ProvisionerPolicy::Open);
    let other = SigningKey::from_slice(&[0x42; 32]).unwrap();
    let (chain, _) = issue(
        SubjectPublicKeyInfoOwned::from_key(other.verifying_key()).unwrap(),
        3,
        Vec::new(),
    );
    let (b, status, v) = h.ok(
        b,
        "POST",
        "/certificate",
        &alloc::format!(r#"{{"chain_pem":{}}}"#, json_str(&chain)),
    );
    assert_eq!(status, 422);
    assert_eq!(
        v["error"],
        "the leaf certificate's public key is not this server's bootstrap key"
    );
    assert_eq!(b.phase().name(), "awaiting certificate");
    for bad in [
        r#"{"chain_pem":"garbage"}"#,
        r#"{"chain_pem":"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}"#,
        r#"{}"#,
    ] {
        let (_, status, v) = h.ok(fresh(), "POST", "/certificate", bad);
        assert_eq!(status, 400, "{bad}: {v}");
    }
}

#[test]
fn broken_chain_is_refused_and_quote_in_api_cert_is_seen() {
    let mut h = Harness::new();
    let b = h.bootstrap(ProvisionerPolicy::Open);
    let quote = b.identity().quote().unwrap().clone();
    let ext = Extension {
        extn_id: quote.oid,
        critical: false,
        extn_value: der::asn1::OctetString::new(quote.quote.clone()).unwrap(),
    };
    let (chain, ca) = issue(our_spki(&b), 3, vec![ext]);
    let leaf_only = &chain[..chain.find("-----END CERTIFICATE-----").unwrap() + 26];
    // The leaf followed by a certificate whose subject is not the leaf's issuer ("CN=Test CA").
    let mut broken = String::from(leaf_only);
    broken.push_str(&unrelated_certificate());
    let (b, status, v) = h.ok(
        b,
        "POST",
        "/certificate",
        &alloc::format!(r#"{{"chain_pem":{}}}"#, json_str(&broken)),
    );
    assert_eq!(status, 400, "{v}");
    assert_eq!(
        v["error"],
        "certificate 0 of the chain is not issued by certificate 1"
    );
    let (b, status, v) = h.ok(
        b,
        "POST",
        "/certificate",
        &alloc::format!(r#"{{"chain_pem":{}}}"#, json_str(&chain)),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["api_certificate_has_quote"], true);
    let db = alloc::format!(
        r#"{{"url":"redis://127.0.0.1:6379","db_secret":"{}"}}"#,
        secret_b64(9)
    );
    let (b, _, _) = h.ok(b, "POST", "/redis-findex", &db);
    // Safe default: never start a KMS whose users cannot authenticate.
    let (b, status, v) = h.ok(b, "POST", "/start", "");
    assert_eq!(
        (status, v["error"].as_str().unwrap()),
        (
            409,
            "not ready: post the client CA first (users authenticate with its certificates)"
        )
    );
    let (b, status, v) = h.ok(
        b,
        "POST",
        "/client-ca",
        &alloc::format!(r#"{{"ca_pem":{}}}"#, json_str(&ca)),
    );
    assert_eq!(status, 200, "{v}");
    let admin = h.admin.clone();
    let Step::Start(started, r) = h.call(b, "POST", "/start", "", Some(&admin)) else {
        panic!()
    };
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["ra_tls_port"], false);
    assert_eq!(v["client_auth"], true);
    assert!(!started.needs_ra_tls_port());
}

/// Another server's bootstrap certificate (subject "CN=KMS bootstrap (RA-TLS)").
fn unrelated_certificate() -> String {
    let mut ev = TestEvidence::snp(0x55);
    let id = Identity::create(&mut ev, [0; 32], NOW).unwrap();
    x509::cert_pem(id.certificate_der()).unwrap()
}

#[test]
fn pinned_provisioner_only() {
    let admin = SigningKey::from_slice(&[0x11; 32]).unwrap();
    let admin_spki =
        der::Encode::to_der(&SubjectPublicKeyInfoOwned::from_key(admin.verifying_key()).unwrap())
            .unwrap();
    let intruder = SigningKey::from_slice(&[0x12; 32]).unwrap();
    let intruder_spki = der::Encode::to_der(
        &SubjectPublicKeyInfoOwned::from_key(intruder.verifying_key()).unwrap(),
    )
    .unwrap();
    let hex = base16ct::lower::encode_string(&Sha256::digest(&admin_spki));
    let policy = ProvisionerPolicy::pinned_from_hex(&alloc::format!("sha256:{hex}")).unwrap();
    assert_eq!(policy, ProvisionerPolicy::pinned_from_hex(&hex).unwrap());
    for bad in ["abcd", "sha256:zz"] {
        assert_eq!(
            ProvisionerPolicy::pinned_from_hex(bad),
            Err(BootstrapError::BadRequest(
                "provisioner SPKI hash is not 64 hex digits"
            )),
            "{bad}"
        );
    }

    let mut h = Harness::new();
    let b = h.bootstrap(policy);
    let body = r#"{"subject":"CN=kms"}"#;
    for spki in [None, Some(intruder_spki.as_slice())] {
        for path in [
            "/csr",
            "/certificate",
            "/redis-findex",
            "/client-ca",
            "/start",
        ] {
            let Step::Continue(_, r) = h.call(h_pinned(&hex), "POST", path, body, spki) else {
                panic!()
            };
            assert_eq!(r.status, 403, "{path}");
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(
                v["error"],
                "provisioning is restricted: the client certificate is not the provisioner's"
            );
        }
    }
    // attestation stays public
    let Step::Continue(b, r) = h.call(
        b,
        "GET",
        &alloc::format!("/attestation?nonce={}", "00".repeat(32)),
        "",
        None,
    ) else {
        panic!()
    };
    assert_eq!(r.status, 200);
    let Step::Continue(_, r) = h.call(b, "POST", "/csr", body, Some(&admin_spki)) else {
        panic!()
    };
    assert_eq!(r.status, 200);
}

fn h_pinned(hex: &str) -> Bootstrap {
    Harness::new().bootstrap(ProvisionerPolicy::pinned_from_hex(hex).unwrap())
}

#[test]
fn unknown_routes_and_methods() {
    let mut h = Harness::new();
    let b = h.bootstrap(ProvisionerPolicy::Open);
    let (b, status, v) = h.ok(b, "GET", "/kmip/2_1", "");
    assert_eq!((status, v["error"].as_str().unwrap()), (404, "not found"));
    let (b, status, _) = h.ok(b, "GET", "/start", "");
    assert_eq!(status, 405);
    let big = " ".repeat(routes::MAX_BODY + 1);
    let (_, status, _) = h.ok(b, "POST", "/csr", &big);
    assert_eq!(status, 413);
}

#[test]
fn db_secret_parsing_and_debug() {
    let s = DbSecret::from_base64(&alloc::format!(" {} \n", secret_b64(3))).unwrap();
    assert_eq!(s.expose(), &[3; 32]);
    assert_eq!(alloc::format!("{s:?}"), "DbSecret(..)");
    use base64ct::{Base64, Encoding};
    for n in [31, 33] {
        assert!(
            matches!(
                DbSecret::from_base64(&Base64::encode_string(&vec![1u8; n])),
                Err(BootstrapError::BadRequest(
                    "db_secret must be exactly 32 bytes"
                ))
            ),
            "{n} bytes"
        );
    }
    assert!(matches!(
        DbSecret::from_base64("!!!"),
        Err(BootstrapError::BadRequest("db_secret is not base64"))
    ));
}

/// Arbitrary bytes on every route never panic and always give a JSON answer; the machine keeps its state.
#[test]
fn garbage_bodies_never_panic() {
    let mut h = Harness::new();
    let mut b = h.bootstrap(ProvisionerPolicy::Open);
    // xorshift: deterministic pseudo-random bodies
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let seeds: [&[u8]; 6] = [
        br#"{"subject":"CN=a","dns_names":[1]}"#,
        br#"{"chain_pem":"-----BEGIN CERTIFICATE-----\n"}"#,
        br#"{"url":"redis://","db_secret":"===="}"#,
        br#"{"ca_pem":""}"#,
        b"\xff\xfe\x00",
        b"",
    ];
    for round in 0..400 {
        let path = [
            "/csr",
            "/certificate",
            "/redis-findex",
            "/client-ca",
            "/start",
            "/attestation?nonce=zz",
        ][(next() % 6) as usize];
        let mut body = seeds[round % seeds.len()].to_vec();
        for _ in 0..(next() % 64) {
            let at = (next() as usize) % (body.len() + 1);
            body.insert(at, next() as u8);
        }
        let method = if path.starts_with("/attestation") {
            "GET"
        } else {
            "POST"
        };
        let admin = h.admin.clone();
        match dispatch(
            b,
            method,
            path,
            &body,
            Some(&admin),
            &mut h.ev,
            &mut h.probe,
        ) {
            Step::Continue(next_b, r) => {
                assert!(
                    r.status >= 400,
                    "{path}: {}",
                    String::from_utf8_lossy(&r.body)
                );
                let v: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON error");
                assert!(v["error"].is_string());
                assert_eq!(next_b.phase().name(), "awaiting certificate");
                b = next_b;
            }
            Step::Start(..) => panic!("garbage started the server"),
        }
    }
}

#[test]
fn api_bodies_round_trip_and_default() {
    use api::*;
    let csr: CsrRequest = serde_json::from_str(r#"{"subject":"CN=a"}"#).unwrap();
    assert_eq!(
        csr,
        CsrRequest {
            subject: "CN=a".into(),
            dns_names: vec![],
            ip_addresses: vec![],
            include_quote: false
        }
    );
    let full = CsrRequest {
        subject: "CN=b".into(),
        dns_names: vec!["b.example".into()],
        ip_addresses: vec!["::1".into()],
        include_quote: true,
    };
    assert_eq!(
        serde_json::from_slice::<CsrRequest>(&serde_json::to_vec(&full).unwrap()).unwrap(),
        full
    );
    let start = StartResponse {
        status: "started".into(),
        ra_tls_port: true,
        client_auth: false,
    };
    assert_eq!(
        serde_json::from_slice::<StartResponse>(&serde_json::to_vec(&start).unwrap()).unwrap(),
        start
    );
    let att = AttestationResponse {
        platform: "sev-snp".into(),
        nonce: "00".into(),
        quote: "AA==".into(),
        event_log: None,
    };
    // No event_log key when there is none (SEV-SNP answers are unchanged).
    assert!(!serde_json::to_string(&att).unwrap().contains("event_log"));
    assert_eq!(
        serde_json::from_slice::<AttestationResponse>(&serde_json::to_vec(&att).unwrap()).unwrap(),
        att
    );
    let db: RedisFindexRequest =
        serde_json::from_str(r#"{"url":"redis://u:p@h:1","db_secret":"c2VjcmV0"}"#).unwrap();
    assert_eq!(alloc::format!("{db:?}"), "RedisFindexRequest { .. }");
    // serde_json's error has no variants to match: check its category and message.
    let e = serde_json::from_str::<CsrRequest>(r#"{"dns_names":[]}"#)
        .err()
        .unwrap_or_else(|| panic!("subject is required"));
    assert!(e.is_data(), "{e}");
    assert!(
        alloc::format!("{e}").starts_with("missing field `subject`"),
        "{e}"
    );
}

fn sha(spki: &[u8]) -> [u8; 32] {
    Sha256::digest(spki).into()
}

fn locked_message(spki: &[u8]) -> String {
    alloc::format!("{}", BootstrapError::LockedToAnotherProvisioner(sha(spki)))
}

fn db_body() -> String {
    alloc::format!(
        r#"{{"url":"redis://127.0.0.1:6379","db_secret":"{}"}}"#,
        secret_b64(9)
    )
}

/// Issue 12 #1: without a pin, a `POST /client-ca` without a client certificate answered 200 (anyone could add
/// their own user CA). It is refused, and nothing is set.
#[test]
fn unauthenticated_client_ca_is_refused_without_pin() {
    let mut h = Harness::new();
    let b = h.bootstrap(ProvisionerPolicy::Open);
    let (_, ca) = issue(our_spki(&b), 3, Vec::new());
    let ca_body = alloc::format!(r#"{{"ca_pem":{}}}"#, json_str(&ca));
    for path in [
        "/csr",
        "/certificate",
        "/redis-findex",
        "/client-ca",
        "/start",
    ] {
        let (_, status, v) = h.as_client(fresh(), "POST", path, &ca_body, None);
        assert_eq!(status, 403, "{path}: {v}");
        assert_eq!(
            v["error"].as_str().unwrap(),
            alloc::format!("{}", BootstrapError::NoClientCertificate),
            "{path}"
        );
    }
    let (b, status, _) = h.as_client(b, "POST", "/client-ca", &ca_body, None);
    assert_eq!(status, 403);
    assert_eq!(b.locked_provisioner(), None, "no key, no lock");
    // The admin can still set it: the refused request changed nothing.
    let (b, status, v) = h.ok(b, "POST", "/client-ca", &ca_body);
    assert_eq!(status, 200, "{v}");
    assert_eq!(b.locked_provisioner(), Some(&sha(&h.admin)));
}

/// Issue 12 #1, the race: an attacker posting between the admin's steps is refused on every route, and the
/// admin finishes with their own values.
#[test]
fn attacker_between_the_admins_steps_is_refused() {
    let mut h = Harness::new();
    let attacker = spki_of_seed(0x66);
    let b = h.bootstrap(ProvisionerPolicy::Open);
    let (chain, ca) = issue(our_spki(&b), 3, Vec::new());
    let (_, evil_ca) = issue(our_spki(&b), 4, Vec::new());
    let cert_body = alloc::format!(r#"{{"chain_pem":{}}}"#, json_str(&chain));
    // The attacker may read a CSR before anyone provisions (it changes nothing and locks nothing).
    let (b, status, _) = h.as_client(b, "POST", "/csr", r#"{"subject":"CN=x"}"#, Some(&attacker));
    assert_eq!(status, 200);
    assert_eq!(b.locked_provisioner(), None);
    let (b, status, v) = h.ok(b, "POST", "/certificate", &cert_body);
    assert_eq!(status, 200, "{v}");
    assert_eq!(b.locked_provisioner(), Some(&sha(&h.admin)));

    let evil_db = r#"{"url":"redis://attacker.example:6379","db_secret":"AAAA"}"#;
    let evil_ca_body = alloc::format!(r#"{{"ca_pem":{}}}"#, json_str(&evil_ca));
    let mut b = b;
    for (path, body) in [
        ("/client-ca", evil_ca_body.as_str()),
        ("/redis-findex", evil_db),
        ("/certificate", cert_body.as_str()),
        ("/csr", r#"{"subject":"CN=x"}"#),
        ("/start", ""),
    ] {
        let (next, status, v) = h.as_client(b, "POST", path, body, Some(&attacker));
        assert_eq!(status, 403, "{path}: {v}");
        assert_eq!(
            v["error"].as_str().unwrap(),
            locked_message(&h.admin),
            "{path}"
        );
        assert!(
            v["error"]
                .as_str()
                .unwrap()
                .starts_with(LOCKED_TO_ANOTHER_PROVISIONER)
        );
        b = next;
    }
    let mut locked = Some(sha(&h.admin));
    assert!(matches!(
        ProvisionerPolicy::Open.authorize(Some(&attacker), &mut locked, true),
        Err(BootstrapError::LockedToAnotherProvisioner(k)) if k == sha(&h.admin)
    ));

    let (b, status, v) = h.ok(b, "POST", "/redis-findex", &db_body());
    assert_eq!(status, 200, "{v}");
    let (b, status, v) = h.ok(
        b,
        "POST",
        "/client-ca",
        &alloc::format!(r#"{{"ca_pem":{}}}"#, json_str(&ca)),
    );
    assert_eq!(status, 200, "{v}");
    let admin = h.admin.clone();
    let Step::Start(started, _) = h.call(b, "POST", "/start", "", Some(&admin)) else {
        panic!("the admin starts the server")
    };
    assert_eq!(started.database.url, "redis://127.0.0.1:6379");
    let ca_der = x509::parse_pem_chain(&ca).unwrap();
    assert_eq!(
        started.client_ca.unwrap().der,
        vec![der::Encode::to_der(&ca_der[0]).unwrap()]
    );
}

/// Issue 12 #1: values once accepted cannot be replaced, not even by the provisioner (409); the only reset is
/// a restart.
#[test]
fn accepted_values_cannot_be_replaced() {
    let mut h = Harness::new();
    let b = h.bootstrap(ProvisionerPolicy::Open);
    let (chain, ca) = issue(our_spki(&b), 3, Vec::new());
    let (chain2, ca2) = issue(our_spki(&b), 4, Vec::new());
    let cert = |c: &str| alloc::format!(r#"{{"chain_pem":{}}}"#, json_str(c));
    let ca_body = |c: &str| alloc::format!(r#"{{"ca_pem":{}}}"#, json_str(c));
    let (b, status, _) = h.ok(b, "POST", "/client-ca", &ca_body(&ca));
    assert_eq!(status, 200);
    let (b, status, v) = h.ok(b, "POST", "/client-ca", &ca_body(&ca2));
    assert_eq!(
        (status, v["error"].as_str().unwrap()),
        (
            409,
            "the client CA is already set for this bootstrap session and cannot be replaced \
             (restart the server to start over)"
        )
    );
    let (b, status, _) = h.ok(b, "POST", "/certificate", &cert(&chain));
    assert_eq!(status, 200);
    let (b, status, v) = h.ok(b, "POST", "/certificate", &cert(&chain2));
    assert_eq!(
        (status, v["error"].as_str().unwrap()),
        (
            409,
            "the API certificate is already set for this bootstrap session and cannot be \
             replaced (restart the server to start over)"
        )
    );
    let (b, status, _) = h.ok(b, "POST", "/redis-findex", &db_body());
    assert_eq!(status, 200);
    let (b, status, v) = h.ok(b, "POST", "/redis-findex", &db_body());
    assert_eq!(
        (status, v["error"].as_str().unwrap()),
        (
            409,
            "the database is already set for this bootstrap session and cannot be \
             replaced (restart the server to start over)"
        )
    );
    let (b, status, v) = h.ok(b, "POST", "/certificate", &cert(&chain2));
    assert_eq!(status, 409, "{v}");
    assert!(v["error"].as_str().unwrap().contains(ALREADY_SET), "{v}");
    let admin = h.admin.clone();
    let Step::Start(started, _) = h.call(b, "POST", "/start", "", Some(&admin)) else {
        panic!("start")
    };
    // The first values, not the later attempts.
    let first = x509::parse_pem_chain(&chain).unwrap();
    assert_eq!(
        started.chain.der[0],
        der::Encode::to_der(&first[0]).unwrap()
    );
    let first_ca = x509::parse_pem_chain(&ca).unwrap();
    assert_eq!(
        started.client_ca.unwrap().der[0],
        der::Encode::to_der(&first_ca[0]).unwrap()
    );
}

/// Issue 12 #1, the restart: a restarted server (same key, fresh session) belongs to whoever provisions first;
/// the admin who comes second is told whose key holds the session.
#[test]
fn after_a_restart_the_first_provisioner_wins_and_the_second_is_told() {
    let mut h = Harness::new();
    let attacker = spki_of_seed(0x66);
    let restarted = fresh();
    let (chain, _) = issue(our_spki(&restarted), 4, Vec::new());
    let (b, status, v) = h.as_client(
        restarted,
        "POST",
        "/certificate",
        &alloc::format!(r#"{{"chain_pem":{}}}"#, json_str(&chain)),
        Some(&attacker),
    );
    assert_eq!(status, 200, "{v}");
    let (_, status, v) = h.ok(b, "POST", "/csr", r#"{"subject":"CN=kms"}"#);
    assert_eq!(status, 403, "{v}");
    assert_eq!(v["error"].as_str().unwrap(), locked_message(&attacker));
    // Even a refused first request locks the session to its key.
    let (b, status, _) = h.as_client(fresh(), "POST", "/start", "", Some(&attacker));
    assert_eq!(status, 409);
    assert_eq!(b.locked_provisioner(), Some(&sha(&attacker)));
    // A pinned server never locks: only the pin counts.
    let pin = base16ct::lower::encode_string(&sha(&h.admin));
    let (b, status, _) = h.as_client(h_pinned(&pin), "POST", "/start", "", Some(&attacker));
    assert_eq!(status, 403);
    assert_eq!(b.locked_provisioner(), None);
}

/// Issue 12 #5: identity is the subject CN, so the client CA is one CA: a bundle of two (where the second CA
/// could mint any user of the first) is refused, and nothing is set.
#[test]
fn client_ca_bundle_with_two_cas_is_refused() {
    let mut h = Harness::new();
    let b = h.bootstrap(ProvisionerPolicy::Open);
    let (_, ca_a) = issue(our_spki(&b), 3, Vec::new());
    let (_, ca_b) = issue(our_spki(&b), 4, Vec::new());
    let both = alloc::format!("{ca_a}{ca_b}");
    let (b, status, v) = h.ok(
        b,
        "POST",
        "/client-ca",
        &alloc::format!(r#"{{"ca_pem":{}}}"#, json_str(&both)),
    );
    assert_eq!(
        (status, v["error"].as_str().unwrap()),
        (
            400,
            "the client CA must be exactly one certificate: with several CAs, any of them \
             could issue a certificate for any user name"
        )
    );
    let (_, status, v) = h.ok(
        b,
        "POST",
        "/client-ca",
        &alloc::format!(r#"{{"ca_pem":{}}}"#, json_str(&ca_a)),
    );
    assert_eq!(status, 200, "{v}");
}

/// Issue 12 (low): an extension with the SNP quote OID but garbage content, or a genuine quote
/// of another key, does not count as "the API certificate carries the quote" (which would close
/// the RA-TLS port at `/start`).
#[test]
fn garbage_or_foreign_quote_does_not_close_the_ratls_port() {
    let mut h = Harness::new();
    let b = h.bootstrap(ProvisionerPolicy::Open);
    let garbage = Extension {
        extn_id: OID_SNP_QUOTE,
        critical: false,
        extn_value: der::asn1::OctetString::new(vec![0xAB; 64]).unwrap(),
    };
    // Another platform key, so another bootstrap key.
    let mut h2 = Harness {
        ev: TestEvidence::snp(8),
        ..Harness::new()
    };
    let other = h2.bootstrap(ProvisionerPolicy::Open);
    assert_ne!(
        other.identity().key().public_key_hash(),
        b.identity().key().public_key_hash()
    );
    let foreign_quote = other.identity().quote().expect("snp quote").quote.clone();
    let foreign = Extension {
        extn_id: OID_SNP_QUOTE,
        critical: false,
        extn_value: der::asn1::OctetString::new(foreign_quote).unwrap(),
    };
    for ext in [garbage, foreign] {
        let (chain, _) = issue(our_spki(&b), 1, vec![ext]);
        let key = b.identity().key();
        let accepted = x509::validate_api_chain(key, &chain).expect("chain accepted");
        assert!(!accepted.leaf_has_quote, "RA-TLS port would close");
    }
    // The genuine quote of this server's own key counts.
    let own = b.identity().quote().expect("snp quote").quote.clone();
    let ext = Extension {
        extn_id: OID_SNP_QUOTE,
        critical: false,
        extn_value: der::asn1::OctetString::new(own).unwrap(),
    };
    let (chain, _) = issue(our_spki(&b), 1, vec![ext]);
    let accepted = x509::validate_api_chain(b.identity().key(), &chain).expect("chain accepted");
    assert!(accepted.leaf_has_quote);
}
