//! The TDX arm of the bootstrap: evidence from `tdx-emu`'s library (the emulated TDX module and quoting
//! enclave: TDREPORT, then a DCAP quote v4 signed by its deterministic test PCK chain), checked with
//! `attest::tdx::local` against the emulator's root, as `ckms --trust-root` does.

use alloc::vec::Vec;

use base64ct::{Base64, Encoding};
use der::Decode;
use x509_cert::certificate::Certificate;
use x509_cert::ext::Extension;
use zeroize::Zeroizing;

use super::super::platform::{CertTableEntry, Evidence, EvidenceError, Platform};
use super::super::x509::{OID_TDX_QUOTE, quote_extension};
use super::{Bootstrap, Identity, NOW, ProvisionerPolicy, Step, TestProbe, dispatch, issue, keys};
use super::{our_spki, x509};
use attest::tdx::TdQuoteBody;
use tdx_emu::{Chain, DEFAULT_SEED, Emulator, TdMeasurements};

const MRTD: [u8; 48] = [0x5A; 48];

/// `tdx-emu` as the kernel's TDX backend presents it: `report` is TDG.MR.REPORT + GetQuote.
/// `cert_table` and `derived_key` must never be asked for on TDX: they count and fail.
struct TdxEvidence {
    emu: Emulator,
    asked: Vec<[u8; 64]>,
    not_for_tdx: usize,
    fail: Option<EvidenceError>,
}

impl TdxEvidence {
    fn new() -> Self {
        TdxEvidence {
            emu: Emulator::new(
                Chain::generate(DEFAULT_SEED).unwrap(),
                TdMeasurements {
                    mr_td: MRTD,
                    ..TdMeasurements::default()
                },
            )
            .with_event_log(event_log()),
            asked: Vec::new(),
            not_for_tdx: 0,
            fail: None,
        }
    }

    fn root(&self) -> Vec<u8> {
        self.emu.chain().root_der.clone()
    }
}

impl Evidence for TdxEvidence {
    fn platform(&self) -> Platform {
        Platform::Tdx
    }
    fn report(&mut self, report_data: &[u8; 64]) -> Result<Vec<u8>, EvidenceError> {
        if let Some(e) = self.fail {
            return Err(e);
        }
        self.asked.push(*report_data);
        let td_report = self.emu.td_report(report_data).unwrap();
        Ok(self.emu.quote(&td_report).unwrap())
    }
    fn cert_table(&mut self) -> Result<Vec<CertTableEntry>, EvidenceError> {
        self.not_for_tdx += 1;
        Err(EvidenceError::Unsupported)
    }
    fn derived_key(&mut self) -> Result<Option<Zeroizing<[u8; 32]>>, EvidenceError> {
        self.not_for_tdx += 1;
        Err(EvidenceError::Unsupported)
    }
    fn event_log(&mut self) -> Result<Option<Vec<u8>>, EvidenceError> {
        Ok(self.emu.event_log().map(<[u8]>::to_vec))
    }
}

/// The log the test TD "firmware" wrote (its RTMRs do not matter here: the bootstrap ships
/// the log, the verifier replays it).
fn event_log() -> Vec<u8> {
    attest::tdx::eventlog::direct_boot_log(&[1; 48], "ckms.ip=dhcp")
}

fn verified(quote: &[u8], root: &[u8]) -> TdQuoteBody {
    attest::tdx::local::verify_quote_signatures(quote, root)
        .unwrap_or_else(|e| panic!("quote does not verify to tdx-emu's root: {e:?}"))
}

#[test]
fn tdx_identity_is_random_each_boot_with_a_quote_binding_it() {
    let mut ev = TdxEvidence::new();
    let id = Identity::create(&mut ev, [3; 32], NOW).unwrap();
    assert_eq!(id.platform(), Platform::Tdx);
    assert_eq!(id.platform().name(), "tdx");
    // No sealing key on TDX: `sk` is the random one, and neither a derived key nor a certificate
    // table was asked for.
    assert_eq!(id.sk_origin(), keys::SkOrigin::Random);
    assert_eq!(ev.not_for_tdx, 0);

    // The certificate carries the raw DCAP quote v4 under the TDX OID, bound to the key (zero nonce).
    let cert = Certificate::from_der(id.certificate_der()).unwrap();
    let q = quote_extension(&cert).expect("quote extension");
    assert_eq!(q.oid, OID_TDX_QUOTE);
    assert_eq!(Some(&q.quote), id.quote().map(|e| &e.quote));
    let body = verified(&q.quote, &ev.root());
    assert_eq!(body.report_data, id.key().report_data(&[0; 32]));
    assert_eq!(body.mr_td, MRTD);
    assert_eq!(ev.asked, [id.key().report_data(&[0; 32])]);

    // Another boot (other random bytes) of the same TD has another key: nothing is sealed.
    let again = Identity::create(&mut TdxEvidence::new(), [4; 32], NOW).unwrap();
    assert_ne!(
        again.key().public_uncompressed(),
        id.key().public_uncompressed()
    );
    // The same random bytes give the same key (the key pair follows from `sk` as on SEV-SNP).
    let same = Identity::create(&mut TdxEvidence::new(), [3; 32], NOW).unwrap();
    assert_eq!(
        same.key().public_uncompressed(),
        id.key().public_uncompressed()
    );
}

#[test]
fn tdx_attestation_answers_a_fresh_quote_with_the_nonce() {
    let mut ev = TdxEvidence::new();
    let root = ev.root();
    let id = Identity::create(&mut ev, [3; 32], NOW).unwrap();
    let b = Bootstrap::new(alloc::sync::Arc::new(id), ProvisionerPolicy::Open);
    let nonce = "c0ffee00".repeat(8);
    let target = alloc::format!("/attestation?nonce={nonce}");
    let mut probe = TestProbe { good: [9; 32] };
    let Step::Continue(b, r) = dispatch(b, "GET", &target, b"", None, &mut ev, &mut probe) else {
        panic!("unexpected start")
    };
    assert_eq!(
        r.status,
        200,
        "{}",
        alloc::string::String::from_utf8_lossy(&r.body)
    );
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["platform"], "tdx");
    assert_eq!(v["nonce"], nonce.as_str());
    let quote = Base64::decode_vec(v["quote"].as_str().unwrap()).unwrap();
    let body = verified(&quote, &root);
    let mut want = [0u8; 32];
    want.copy_from_slice(&hex::decode(&nonce).unwrap());
    assert_eq!(body.report_data, b.identity().key().report_data(&want));
    assert_eq!(ev.not_for_tdx, 0);
    // The event log comes with the quote.
    let log = Base64::decode_vec(v["event_log"].as_str().unwrap()).unwrap();
    assert_eq!(log, event_log());

    // A failing GetQuote is the platform's error (502), not a quote.
    ev.fail = Some(EvidenceError::Firmware(1));
    let Step::Continue(_, r) = dispatch(b, "GET", &target, b"", None, &mut ev, &mut probe) else {
        panic!("unexpected start")
    };
    assert_eq!(
        r.status,
        502,
        "{}",
        alloc::string::String::from_utf8_lossy(&r.body)
    );
}

#[test]
fn tdx_evidence_failure_at_boot_is_an_evidence_error() {
    let mut ev = TdxEvidence::new();
    ev.fail = Some(EvidenceError::Transport("GetQuote"));
    assert_eq!(
        Identity::create(&mut ev, [3; 32], NOW).unwrap_err(),
        super::BootstrapError::Evidence(EvidenceError::Transport("GetQuote"))
    );
}

/// Only a TDX quote that parses and binds this server's key in the API certificate closes the
/// RA-TLS port at `/start`; garbage under the TDX OID or another TD key's quote keeps it open.
#[test]
fn tdx_quote_in_the_api_certificate_closes_the_ratls_port_only_if_it_binds_our_key() {
    let mut ev = TdxEvidence::new();
    let id = Identity::create(&mut ev, [3; 32], NOW).unwrap();
    let own = id.quote().expect("tdx quote").quote.clone();
    let b = Bootstrap::new(alloc::sync::Arc::new(id), ProvisionerPolicy::Open);
    let other = Identity::create(&mut TdxEvidence::new(), [4; 32], NOW).unwrap();
    let foreign = other.quote().expect("tdx quote").quote.clone();
    let ext = |quote: Vec<u8>| Extension {
        extn_id: OID_TDX_QUOTE,
        critical: false,
        extn_value: der::asn1::OctetString::new(quote).unwrap(),
    };
    for (quote, closes) in [
        (alloc::vec![0xAB; 700], false),
        (foreign, false),
        (own, true),
    ] {
        let (chain, _) = issue(our_spki(&b), 1, alloc::vec![ext(quote)]);
        let accepted =
            x509::validate_api_chain(b.identity().key(), &chain).expect("chain accepted");
        assert_eq!(accepted.leaf_has_quote, closes);
    }
}
