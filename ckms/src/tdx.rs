//! The TDX half of attestation: what to expect of a TD ([`TdxExpectation`], from the manifest's
//! `tdx` section or the command line) and the verification of a TDX quote against it
//! (`attest::tdx::evidence`).
//!
//! A TDX quote (DCAP quote v4, in the certificate's `1.2.840.113741.1337.8` extension or in
//! `/attestation`'s `quote`) is verified
//! - against Intel's SGX root CA with dcap-qvl and PCS collateral given with `--tdx-collateral`
//!   (production; ckms does not download collateral itself), or
//! - only against the root given explicitly with `--trust-root` (e.g. `tdx-emu export-chain`'s
//!   `root.pem`): the signatures, no TCB status;
//!
//! then against the policy: MRTD (always required), RTMR0–2 where the manifest gives them,
//! MRCONFIGID/MROWNER/MROWNERCONFIG where set, DEBUG off, SEPT_VE_DISABLE on, TEE_TCB_SVN ≥ the
//! minimum; and the key binding `REPORTDATA = SHA-256(key) ‖ nonce`, as for SEV-SNP.
//!
//! The manifest's RTMR2 is recomputed here from its `cmdline`, and RTMR1 from its kernel file
//! when that file is next to the manifest: a manifest whose values do not follow from its own
//! inputs is refused.

use std::path::Path;

use attest::measure::tdx::{authenticode_sha384, cmdline_digest, rtmr1_direct_boot, rtmr2_cmdline};
use attest::tdx::eventlog::{EventLog, EventLogError, LogExpectation, ReplayError};
use attest::tdx::evidence::{TdxRoots, VerifiedTdx, verify_tdx_evidence};
use attest::tdx::policy::TdxPolicy;
use attest::verify::ratls::RaTlsVerifyError;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::attestation::parse_hex;
use crate::error::CliError;

/// What the verifier expects of a TD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdxExpectation {
    /// MRTD (always required).
    pub mr_td: [u8; 48],
    /// RTMR0..3 where required.
    pub rtmr: [Option<[u8; 48]>; 4],
    /// MRCONFIGID, if required.
    pub mr_config_id: Option<[u8; 48]>,
    /// MROWNER, if required.
    pub mr_owner: Option<[u8; 48]>,
    /// MROWNERCONFIG, if required.
    pub mr_owner_config: Option<[u8; 48]>,
    /// Minimum TEE_TCB_SVN (component-wise).
    pub min_tee_tcb_svn: [u8; 16],
    /// PCS collateral JSON for verification against Intel's root.
    pub collateral: Option<Vec<u8>>,
    /// What the TD's event log must record (the manifest's kernel and command line), when it
    /// ships one.
    pub log: LogExpectation,
}

impl TdxExpectation {
    /// Expect `mr_td` and nothing else beyond the defaults (DEBUG off, SEPT_VE_DISABLE on).
    pub fn new(mr_td: [u8; 48]) -> Self {
        Self {
            mr_td,
            rtmr: [None; 4],
            mr_config_id: None,
            mr_owner: None,
            mr_owner_config: None,
            min_tee_tcb_svn: [0; 16],
            collateral: None,
            log: LogExpectation::default(),
        }
    }

    /// The `attest` policy.
    pub fn policy(&self) -> TdxPolicy {
        let mut p = TdxPolicy::new(self.mr_td).min_tee_tcb_svn(self.min_tee_tcb_svn);
        for (i, r) in self.rtmr.iter().enumerate() {
            if let Some(r) = r {
                p = p.rtmr(i, *r);
            }
        }
        if let Some(v) = self.mr_config_id {
            p = p.mr_config_id(v);
        }
        if let Some(v) = self.mr_owner {
            p = p.mr_owner(v);
        }
        if let Some(v) = self.mr_owner_config {
            p = p.mr_owner_config(v);
        }
        p
    }

    /// A one-line description for reports.
    pub fn describe(&self) -> String {
        let rtmrs: Vec<String> = self
            .rtmr
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.map(|r| format!("RTMR{i} {}", hex::encode(r))))
            .collect();
        format!(
            "TDX MRTD {}{}{}",
            hex::encode(self.mr_td),
            if rtmrs.is_empty() { "" } else { ", " },
            rtmrs.join(", ")
        )
    }
}

fn hex48(v: &Value, field: &str, path: &Path) -> Result<Option<[u8; 48]>, CliError> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            parse_hex::<48>(s, &format!("{}: manifest tdx.{field}", path.display())).map(Some)
        }
        Some(_) => Err(CliError::Usage(format!(
            "{}: manifest tdx.{field}: not a hex string",
            path.display()
        ))),
    }
}

/// The manifest's `tdx` section (`None` when it has none), with RTMR2 recomputed from the
/// manifest's `cmdline` and RTMR1 from its kernel file when the file is next to the manifest.
pub fn manifest_tdx(v: &Value, path: &Path) -> Result<Option<TdxExpectation>, CliError> {
    let Some(t) = v.get("tdx") else {
        return Ok(None);
    };
    let bad = |what: &str| CliError::Usage(format!("{}: manifest {what}", path.display()));
    let mr_td = hex48(t, "mrtd", path)?.ok_or_else(|| bad("tdx section has no mrtd"))?;
    let mut exp = TdxExpectation::new(mr_td);
    exp.rtmr = [
        hex48(t, "rtmr0", path)?,
        hex48(t, "rtmr1", path)?,
        hex48(t, "rtmr2", path)?,
        None,
    ];
    if let Some(p) = t.get("policy") {
        exp.mr_config_id = hex48(p, "mr_config_id", path)?;
        exp.mr_owner = hex48(p, "mr_owner", path)?;
        exp.mr_owner_config = hex48(p, "mr_owner_config", path)?;
        if let Some(s) = p.get("min_tee_tcb_svn").and_then(Value::as_str) {
            exp.min_tee_tcb_svn = parse_hex::<16>(s, "manifest tdx.policy.min_tee_tcb_svn")?;
        }
    }
    if let Some(cmdline) = v.get("cmdline").and_then(Value::as_str) {
        exp.log.cmdline = Some(cmdline_digest(cmdline));
        let want = rtmr2_cmdline(cmdline);
        match exp.rtmr[2] {
            Some(r) if r != want => {
                return Err(bad(
                    "tdx.rtmr2 is not the RTMR2 of the manifest's cmdline (edited manifest?)",
                ));
            }
            Some(_) => {}
            None => exp.rtmr[2] = Some(want),
        }
    }
    if let Some(file) = v.pointer("/kernel/file").and_then(Value::as_str) {
        let kpath = path.parent().unwrap_or(Path::new(".")).join(file);
        let sha = v.pointer("/kernel/sha256").and_then(Value::as_str);
        if let Ok(kernel) = std::fs::read(&kpath)
            && sha == Some(hex::encode(Sha256::digest(&kernel)).as_str())
        {
            let want = rtmr1_direct_boot(&kernel)
                .map_err(|e| bad(&format!("kernel {}: {e}", kpath.display())))?;
            if exp.rtmr[1].is_some_and(|r| r != want) {
                return Err(bad(
                    "tdx.rtmr1 is not the RTMR1 of the kernel next to it (edited manifest?)",
                ));
            }
            exp.rtmr[1] = Some(want);
            exp.log.kernel = Some(
                authenticode_sha384(&kernel)
                    .map_err(|e| bad(&format!("kernel {}: {e}", kpath.display())))?,
            );
        }
    }
    Ok(Some(exp))
}

/// Whether `quote` is a TDX DCAP quote v4 (version 4, ECDSA-P256 key, TEE type 0x81).
pub fn is_tdx_quote(quote: &[u8]) -> bool {
    quote.get(..8) == Some(&[4, 0, 2, 0, 0x81, 0, 0, 0][..])
}

/// Verifies a TDX quote bound to `public_key` and `nonce` against `exp`, anchored at
/// `trust_root` if given, else at Intel's root with the expectation's collateral.
pub fn verify_tdx_quote(
    quote: &[u8],
    public_key: &[u8; 65],
    nonce: &[u8; 32],
    exp: &TdxExpectation,
    trust_root: Option<&[u8]>,
    now_unix: u64,
) -> Result<VerifiedTdx, RaTlsVerifyError> {
    let roots = match (trust_root, &exp.collateral) {
        (Some(root), _) => TdxRoots::TrustRoot(root),
        (None, Some(c)) => TdxRoots::Intel {
            collateral_json: c,
            now_unix,
        },
        (None, None) => {
            return Err(RaTlsVerifyError::Tdx(
                attest::tdx::evidence::TdxEvidenceError::NoCollateral,
            ));
        }
    };
    verify_tdx_evidence(quote, public_key, nonce, roots, &exp.policy())
        .map_err(RaTlsVerifyError::Tdx)
}

/// Why a TD's CC event log (`/attestation`'s `event_log`) is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventLogFailure {
    /// The TD shipped none: its RTMRs could only be compared as values, with nothing saying
    /// which events made them. Refused (a kernel on a TDVF always ships the CCEL area).
    Missing,
    /// Not base64.
    NotBase64,
    /// It does not parse (`attest::tdx::eventlog`).
    Parse(EventLogError),
    /// It does not replay to the quote's RTMRs, or does not record the manifest's kernel and
    /// command line.
    Replay(ReplayError),
}

impl std::fmt::Display for EventLogFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing => f.write_str(
                "the TD shipped no CC event log with /attestation (a TDX verification replays it)",
            ),
            Self::NotBase64 => f.write_str("not base64"),
            Self::Parse(e) => write!(f, "{e}"),
            Self::Replay(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for EventLogFailure {}

/// [`check_event_log`] of `/attestation`'s `event_log` field: a TDX answer without one is
/// refused ([`EventLogFailure::Missing`]).
pub fn require_event_log(
    b64: Option<&str>,
    v: &VerifiedTdx,
    exp: &TdxExpectation,
) -> Result<String, EventLogFailure> {
    check_event_log(b64.ok_or(EventLogFailure::Missing)?, v, exp)
}

/// Replays the TD's CC event log (base64, as `/attestation` ships it) against the verified
/// quote: RTMR0–3 recomputed from the events must equal the quote's (TDG.MR.RTMR.EXTEND
/// semantics, MR index − 1 = RTMR, TDVF Design Guide §10.1.2), and its kernel-load and
/// command-line events must be the manifest's ([`TdxExpectation::log`]). Returns a summary.
pub fn check_event_log(
    b64: &str,
    v: &VerifiedTdx,
    exp: &TdxExpectation,
) -> Result<String, EventLogFailure> {
    use base64ct::{Base64, Encoding};
    let bytes = Base64::decode_vec(b64).map_err(|_| EventLogFailure::NotBase64)?;
    let log = EventLog::parse(&bytes).map_err(EventLogFailure::Parse)?;
    log.check(&v.body().rtmr, &exp.log)
        .map_err(EventLogFailure::Replay)?;
    let mut what = Vec::new();
    if exp.log.kernel.is_some() {
        what.push("the kernel load (Authenticode SHA-384 of the manifest's kms.efi)");
    }
    if exp.log.cmdline.is_some() {
        what.push("the manifest's command line");
    }
    Ok(format!(
        "CC event log replayed: {} events give the quote's RTMR0-3{}",
        log.events.len(),
        if what.is_empty() {
            String::new()
        } else {
            format!("; it records {}", what.join(" and "))
        }
    ))
}

/// A one-line summary of a verified TDX quote whose key binding was checked.
pub fn summary(v: &VerifiedTdx) -> String {
    format!("{}, key bound", summary_unbound(v))
}

/// A one-line summary of a verified TDX quote.
pub fn summary_unbound(v: &VerifiedTdx) -> String {
    use attest::tdx::evidence::TdxAnchor;
    let b = v.body();
    let anchor = match v.anchor() {
        TdxAnchor::Intel(status) => format!("Intel's SGX root (TCB status {status})"),
        TdxAnchor::TrustRoot => "the given --trust-root".into(),
    };
    format!(
        "TDX quote signed by a PCK chaining to {anchor}, MRTD {}, RTMR1 {}, RTMR2 {}, \
         attributes {:#x}, TEE_TCB_SVN {}",
        hex::encode(b.mr_td),
        hex::encode(b.rtmr[1]),
        hex::encode(b.rtmr[2]),
        u64::from_le_bytes(b.td_attributes),
        hex::encode(b.tee_tcb_svn)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::{Expectation, PolicyOverrides, Verified, attest_certificate, verify_quote};
    use attest::ratls::report_data_for_key;
    use attest::tdx::evidence::TdxEvidenceError;
    use attest::tdx::local::LocalVerifyError;
    use attest::tdx::policy::{TdField, TdxPolicyError};
    use kms::bootstrap::keys::Sk;
    use kms::bootstrap::x509::{OID_TDX_QUOTE, QuoteExtension, bootstrap_certificate};
    use tdx_emu::{
        ATTR_DEBUG, ATTR_SEPT_VE_DISABLE, Chain, DEFAULT_SEED, Emulator, TdMeasurements,
    };

    const MRTD: [u8; 48] = [0x7D; 48];
    const CMDLINE: &str = "console=ttyS0 ckms.attestation=emulated";

    fn td(attributes: u64, cmdline: &str) -> TdMeasurements {
        TdMeasurements {
            mr_td: MRTD,
            rtmr: [[0; 48], [0x11; 48], rtmr2_cmdline(cmdline), [0; 48]],
            attributes,
            tee_tcb_svn: [2; 16],
            mr_owner: [0x0E; 48],
            ..TdMeasurements::default()
        }
    }

    fn emu(td: TdMeasurements) -> Emulator {
        Emulator::new(Chain::generate(DEFAULT_SEED).unwrap(), td)
    }

    fn quote(e: &Emulator, key: &[u8; 65], nonce: &[u8; 32]) -> Vec<u8> {
        e.quote(&e.td_report(&report_data_for_key(key, nonce)).unwrap())
            .unwrap()
    }

    fn key() -> kms::bootstrap::keys::BootstrapKey {
        Sk::from_random([9; 32]).key_pair().unwrap()
    }

    /// What the manifest of the emulated image says.
    fn expectation(root: Option<Vec<u8>>) -> Expectation {
        let mut t = TdxExpectation::new(MRTD);
        t.rtmr[1] = Some([0x11; 48]);
        t.rtmr[2] = Some(rtmr2_cmdline(CMDLINE));
        Expectation {
            measurement: None,
            tdx: Some(t),
            trust_root: root,
            policy: PolicyOverrides::default(),
            extra: Default::default(),
        }
    }

    fn root() -> Option<Vec<u8>> {
        Some(Chain::generate(DEFAULT_SEED).unwrap().root_der)
    }

    fn tdx_err(r: Result<Verified, crate::verify::AttestationFailure>) -> RaTlsVerifyError {
        match r {
            Ok(_) => panic!("verified"),
            Err(e) => e.error,
        }
    }

    #[test]
    fn emulated_quote_with_the_key_binding_verifies() {
        let k = key();
        let pk = *k.public_uncompressed();
        let nonce = [0x42; 32];
        let e = emu(td(ATTR_SEPT_VE_DISABLE, CMDLINE));
        let exp = expectation(root());
        let v = verify_quote(&quote(&e, &pk, &nonce), &pk, &nonce, &exp, "t").unwrap();
        let Verified::Tdx(t) = &v else {
            panic!("not TDX")
        };
        assert_eq!(t.body().mr_td, MRTD);
        assert!(v.measurement_hex().starts_with("MRTD 7d7d"));
        assert!(summary(t).contains("the given --trust-root"));
        // The root as PEM works the same.
        let pem =
            der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, &root().unwrap())
                .unwrap();
        let exp_pem = expectation(Some(pem.into_bytes()));
        assert!(verify_quote(&quote(&e, &pk, &nonce), &pk, &nonce, &exp_pem, "t").is_ok());

        // In an RA-TLS certificate (zero nonce), as the guest's bootstrap server carries it.
        let q = quote(&e, &pk, &[0; 32]);
        let ext = QuoteExtension {
            oid: OID_TDX_QUOTE,
            quote: q,
        };
        let cert = bootstrap_certificate(&k, 1_800_000_000, Some(&ext)).unwrap();
        let a = attest_certificate(&cert, &exp, "bootstrap certificate").unwrap();
        assert_eq!(a.public_key, pk);
        assert!(matches!(a.report, Verified::Tdx(_)));
        // The same certificate with a fresh-nonce quote inside is refused.
        let ext = QuoteExtension {
            oid: OID_TDX_QUOTE,
            quote: quote(&e, &pk, &nonce),
        };
        let cert = bootstrap_certificate(&k, 1_800_000_000, Some(&ext)).unwrap();
        let err = match attest_certificate(&cert, &exp, "bootstrap certificate") {
            Err(crate::error::CliError::Attestation(a)) => *a,
            other => panic!("expected an attestation failure, got {other:?}"),
        };
        assert_eq!(
            err.error,
            RaTlsVerifyError::Tdx(TdxEvidenceError::NonceMismatch)
        );
    }

    #[test]
    fn tampered_quotes_and_wrong_measurements_are_refused_by_name() {
        let pk = *key().public_uncompressed();
        let nonce = [0x42; 32];
        let good = emu(td(ATTR_SEPT_VE_DISABLE, CMDLINE));
        let exp = expectation(root());
        let q = quote(&good, &pk, &nonce);
        // A body byte (MRTD) flipped: the attestation key's signature breaks.
        let mut bad = q.clone();
        bad[48 + 136] ^= 1;
        assert_eq!(
            tdx_err(verify_quote(&bad, &pk, &nonce, &exp, "t")),
            RaTlsVerifyError::Tdx(TdxEvidenceError::Signatures(
                LocalVerifyError::QuoteSignature
            ))
        );
        // Another chain's quote: not our root.
        let other = Emulator::new(
            Chain::generate("another").unwrap(),
            td(ATTR_SEPT_VE_DISABLE, CMDLINE),
        );
        let e = verify_quote(&quote(&other, &pk, &nonce), &pk, &nonce, &exp, "t").unwrap_err();
        assert_eq!(
            e.error,
            RaTlsVerifyError::Tdx(TdxEvidenceError::Signatures(
                LocalVerifyError::UntrustedRoot
            ))
        );
        assert!(e.to_string().contains("--trust-root"));
        // Wrong MRTD expected.
        let mut wrong = expectation(root());
        if let Some(t) = wrong.tdx.as_mut() {
            t.mr_td = [0x7E; 48];
        }
        let e = verify_quote(&q, &pk, &nonce, &wrong, "t").unwrap_err();
        assert!(matches!(
            &e.error,
            RaTlsVerifyError::Tdx(TdxEvidenceError::Policy(TdxPolicyError::Mismatch {
                field: TdField::MrTd,
                ..
            }))
        ));
        assert!(e.to_string().contains("TDX MRTD differs"));
        // A TD booted with another command line: RTMR2 differs.
        let changed = emu(td(ATTR_SEPT_VE_DISABLE, "console=ttyS0 ckms.debug=1"));
        assert!(matches!(
            tdx_err(verify_quote(
                &quote(&changed, &pk, &nonce),
                &pk,
                &nonce,
                &exp,
                "t"
            )),
            RaTlsVerifyError::Tdx(TdxEvidenceError::Policy(TdxPolicyError::Mismatch {
                field: TdField::Rtmr(2),
                ..
            }))
        ));
        // MROWNER, when the expectation sets it.
        let mut owner = expectation(root());
        if let Some(t) = owner.tdx.as_mut() {
            t.mr_owner = Some([0x0F; 48]);
        }
        assert!(matches!(
            tdx_err(verify_quote(&q, &pk, &nonce, &owner, "t")),
            RaTlsVerifyError::Tdx(TdxEvidenceError::Policy(TdxPolicyError::Mismatch {
                field: TdField::MrOwner,
                ..
            }))
        ));
        // Attributes: DEBUG set, SEPT_VE_DISABLE clear.
        let debug = emu(td(ATTR_SEPT_VE_DISABLE | ATTR_DEBUG, CMDLINE));
        assert_eq!(
            tdx_err(verify_quote(
                &quote(&debug, &pk, &nonce),
                &pk,
                &nonce,
                &exp,
                "t"
            )),
            RaTlsVerifyError::Tdx(TdxEvidenceError::Policy(TdxPolicyError::DebugTd))
        );
        let ve = emu(td(0, CMDLINE));
        assert_eq!(
            tdx_err(verify_quote(
                &quote(&ve, &pk, &nonce),
                &pk,
                &nonce,
                &exp,
                "t"
            )),
            RaTlsVerifyError::Tdx(TdxEvidenceError::Policy(TdxPolicyError::SeptVeNotDisabled))
        );
        // TEE TCB SVN below the floor.
        let mut floor = expectation(root());
        if let Some(t) = floor.tdx.as_mut() {
            t.min_tee_tcb_svn = [3; 16];
        }
        assert_eq!(
            tdx_err(verify_quote(&q, &pk, &nonce, &floor, "t")),
            RaTlsVerifyError::Tdx(TdxEvidenceError::Policy(TdxPolicyError::TeeTcbSvnTooLow(0)))
        );
        // Binding: another key, another nonce.
        assert_eq!(
            tdx_err(verify_quote(&q, &[4; 65], &nonce, &exp, "t")),
            RaTlsVerifyError::Tdx(TdxEvidenceError::KeyNotBound)
        );
        assert_eq!(
            tdx_err(verify_quote(&q, &pk, &[0; 32], &exp, "t")),
            RaTlsVerifyError::Tdx(TdxEvidenceError::NonceMismatch)
        );
        // No TDX expectation (an SEV-SNP-only one): refused, not skipped.
        let snp_only = Expectation {
            measurement: Some([1; 48]),
            tdx: None,
            ..expectation(root())
        };
        assert_eq!(
            tdx_err(verify_quote(&q, &pk, &nonce, &snp_only, "t")),
            RaTlsVerifyError::NoExpectationFor("TDX")
        );
        // Production: Intel's root needs collateral; bad collateral is dcap-qvl's refusal.
        let prod = expectation(None);
        assert_eq!(
            tdx_err(verify_quote(&q, &pk, &nonce, &prod, "t")),
            RaTlsVerifyError::Tdx(TdxEvidenceError::NoCollateral)
        );
        let mut with_collateral = expectation(None);
        if let Some(t) = with_collateral.tdx.as_mut() {
            t.collateral = Some(b"{}".to_vec());
        }
        assert_eq!(
            tdx_err(verify_quote(&q, &pk, &nonce, &with_collateral, "t")),
            RaTlsVerifyError::Tdx(TdxEvidenceError::Intel(
                attest::tdx::verify::TdxVerifyError::Collateral
            ))
        );
    }

    #[test]
    fn manifest_tdx_section_is_recomputed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("manifest.json");
        let v = serde_json::json!({
            "cmdline": CMDLINE,
            "kernel": {"file": "kms.efi", "size": 1, "sha256": "00"},
            "tdx": {"mrtd": hex::encode(MRTD), "rtmr2": hex::encode(rtmr2_cmdline(CMDLINE))},
        });
        let t = manifest_tdx(&v, &path).unwrap().unwrap();
        assert_eq!(t.mr_td, MRTD);
        assert_eq!(t.rtmr[2], Some(rtmr2_cmdline(CMDLINE)));
        assert_eq!(t.rtmr[1], None);
        // An edited command line (or RTMR2) no longer matches.
        let mut edited = v.clone();
        edited["cmdline"] = "console=ttyS0".into();
        assert!(matches!(
            manifest_tdx(&edited, &path),
            Err(CliError::Usage(m)) if m.contains("tdx.rtmr2")
        ));
        // No tdx section: none; a section without mrtd: refused.
        assert_eq!(manifest_tdx(&serde_json::json!({}), &path).unwrap(), None);
        assert!(matches!(
            manifest_tdx(&serde_json::json!({"tdx": {}}), &path),
            Err(CliError::Usage(m)) if m.contains("mrtd")
        ));
        assert!(is_tdx_quote(&[4, 0, 2, 0, 0x81, 0, 0, 0, 9]));
        assert!(!is_tdx_quote(&[3, 0, 0, 0, 0, 0, 0, 0]));
    }

    const TINY_PE: &[u8] = include_bytes!("../../attest/testdata/tdx/tiny_pe.efi");

    /// A manifest as `image build --tdx-firmware` writes it, with kms.efi next to it; quotes of a
    /// TD booted with that kernel and command line pass, a changed kernel or command line fails.
    #[test]
    fn manifest_values_accept_the_image_and_refuse_a_changed_kernel_or_cmdline() {
        use crate::verify::{ExpectationArgs, PolicyArgs};
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("kms.efi"), TINY_PE).unwrap();
        let rtmr1 = rtmr1_direct_boot(TINY_PE).unwrap();
        let manifest = serde_json::json!({
            "cmdline": CMDLINE,
            "kernel": {"file": "kms.efi", "size": TINY_PE.len(), "sha256": hex::encode(Sha256::digest(TINY_PE))},
            "snp": {"launch_digest": hex::encode([0x5A; 48]), "vmm": "QEMU"},
            "tdx": {"firmware": {"name": "OVMF.inteltdx.fd", "sha256": "00"},
                    "mrtd": hex::encode(MRTD), "rtmr1": hex::encode(rtmr1),
                    "rtmr2": hex::encode(rtmr2_cmdline(CMDLINE))},
        });
        let path = dir.path().join("manifest.json");
        std::fs::write(&path, manifest.to_string()).unwrap();
        let root_path = dir.path().join("root.der");
        std::fs::write(&root_path, root().unwrap()).unwrap();
        let args = ExpectationArgs {
            manifest: Some(path.clone()),
            expected_measurement: None,
            expected_mrtd: None,
            trust_root: Some(root_path),
            tdx_collateral: None,
            min_tee_tcb_svn: None,
            vcek: None,
            cert_chain: None,
            kds_url: None,
            kds_ca: crate::kds::SYSTEM_CA_BUNDLE.into(),
            policy: PolicyArgs::default(),
        };
        let exp = args.load().unwrap();
        assert_eq!(exp.measurement, Some([0x5A; 48]));
        let t = exp.tdx.clone().unwrap();
        assert_eq!(t.rtmr[1], Some(rtmr1));
        // What the TD's event log must record: this kernel, this command line.
        assert_eq!(t.log.kernel, Some(authenticode_sha384(TINY_PE).unwrap()));
        assert_eq!(t.log.cmdline, Some(cmdline_digest(CMDLINE)));
        let pk = *key().public_uncompressed();
        let nonce = [3; 32];
        let booted = |kernel: &[u8], cmdline: &str| {
            emu(TdMeasurements {
                mr_td: MRTD,
                rtmr: [
                    [0; 48],
                    rtmr1_direct_boot(kernel).unwrap(),
                    rtmr2_cmdline(cmdline),
                    [0; 48],
                ],
                ..TdMeasurements::default()
            })
        };
        let e = booted(TINY_PE, CMDLINE);
        assert!(verify_quote(&quote(&e, &pk, &nonce), &pk, &nonce, &exp, "t").is_ok());
        // Another kernel (one byte of its image changed).
        let mut other = TINY_PE.to_vec();
        let last = other.len() - 1;
        other[last] ^= 0xFF;
        assert_ne!(rtmr1_direct_boot(&other).unwrap(), rtmr1);
        let e = booted(&other, CMDLINE);
        assert!(matches!(
            tdx_err(verify_quote(
                &quote(&e, &pk, &nonce),
                &pk,
                &nonce,
                &exp,
                "t"
            )),
            RaTlsVerifyError::Tdx(TdxEvidenceError::Policy(TdxPolicyError::Mismatch {
                field: TdField::Rtmr(1),
                ..
            }))
        ));
        // Another command line.
        let e = booted(
            TINY_PE,
            "console=ttyS0 ckms.attestation=emulated init=/bin/sh",
        );
        assert!(matches!(
            tdx_err(verify_quote(
                &quote(&e, &pk, &nonce),
                &pk,
                &nonce,
                &exp,
                "t"
            )),
            RaTlsVerifyError::Tdx(TdxEvidenceError::Policy(TdxPolicyError::Mismatch {
                field: TdField::Rtmr(2),
                ..
            }))
        ));
        // A manifest whose rtmr1 was edited to match the other kernel is refused when kms.efi is
        // next to it.
        let mut edited = manifest.clone();
        edited["tdx"]["rtmr1"] = hex::encode(rtmr1_direct_boot(&other).unwrap()).into();
        std::fs::write(&path, edited.to_string()).unwrap();
        assert!(matches!(args.load(), Err(CliError::Usage(m)) if m.contains("tdx.rtmr1")));
    }

    /// The TD's CC event log is replayed against the verified quote and the manifest: the log
    /// of the booted kernel and command line passes; garbage, a log of another boot, or a log
    /// naming another kernel or command line are refused by name.
    #[test]
    fn event_log_replay_against_the_quote_and_the_manifest() {
        use attest::tdx::eventlog::direct_boot_log;
        use base64ct::{Base64, Encoding};
        let kernel = authenticode_sha384(TINY_PE).unwrap();
        let booted = |cmdline: &str| {
            emu(TdMeasurements {
                mr_td: MRTD,
                rtmr: [
                    [0; 48],
                    rtmr1_direct_boot(TINY_PE).unwrap(),
                    rtmr2_cmdline(cmdline),
                    [0; 48],
                ],
                ..TdMeasurements::default()
            })
        };
        let mut exp = expectation(root());
        let t = exp.tdx.as_mut().unwrap();
        t.rtmr = [None; 4];
        t.log = LogExpectation {
            kernel: Some(kernel),
            cmdline: Some(cmdline_digest(CMDLINE)),
        };
        let pk = *key().public_uncompressed();
        let nonce = [4; 32];
        let verified =
            |e: &Emulator| match verify_quote(&quote(e, &pk, &nonce), &pk, &nonce, &exp, "t") {
                Ok(Verified::Tdx(v)) => v,
                other => panic!("{other:?}"),
            };
        let tdx = exp.tdx.as_ref().unwrap();
        let v = verified(&booted(CMDLINE));
        let log = Base64::encode_string(&direct_boot_log(&kernel, CMDLINE));
        let note = check_event_log(&log, &v, tdx).unwrap();
        assert!(note.contains("6 events give the quote's RTMR0-3"), "{note}");
        assert_eq!(require_event_log(Some(&log), &v, tdx), Ok(note));
        // An answer without the log is refused, even though the quote's RTMRs are the expected ones.
        assert_eq!(
            require_event_log(None, &v, tdx),
            Err(EventLogFailure::Missing)
        );
        assert_eq!(
            check_event_log("not base64!", &v, tdx),
            Err(EventLogFailure::NotBase64)
        );
        assert_eq!(
            check_event_log(&Base64::encode_string(&[0xA5; 40]), &v, tdx),
            Err(EventLogFailure::Parse(EventLogError::BadSpecId))
        );
        // The log of another command line does not replay to this quote's RTMR2.
        let other = Base64::encode_string(&direct_boot_log(&kernel, "ckms.ip=dhcp"));
        assert_eq!(
            check_event_log(&other, &v, tdx),
            Err(EventLogFailure::Replay(ReplayError::RtmrMismatch {
                index: 2
            }))
        );
        // A TD that booted (and logged) another command line: the log replays, but does not
        // record the manifest's command line.
        let v2 = verified(&booted("ckms.ip=dhcp"));
        assert_eq!(
            check_event_log(&other, &v2, tdx),
            Err(EventLogFailure::Replay(ReplayError::NoCmdlineEvent))
        );
    }
}
