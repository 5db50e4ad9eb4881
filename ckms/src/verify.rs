//! Attesting a KMS: RA-TLS certificates, fresh-nonce `/attestation` reports, and `ckms verify`.
//!
//! What "attested" means here is `attest::verify::ratls` (checks in this order; the first failure is a typed
//! `RaTlsVerifyError`, which [`AttestationFailure`] turns into a message naming the check):
//! 1. the SNP quote parses (report ‖ certificate table, `attest::ratls`);
//! 2. the VCEK chain: the quote's ASK (and ARK) anchored at AMD's built-in roots, AMD's built-in chain of the
//!    report's product, or only the `--trust-root` given explicitly (e.g. the emulator's test ARK);
//! 3. `attest::verify::verify_snp_report`: the chain (validity periods, `--amd-crl`), VCEK TCB/chip id, the
//!    report signature, the [`Policy`] (guest policy bits, firmware version, VMPL 0, per-product minimum
//!    reported/committed/launch TCB; [`PolicyOverrides`] from the manifest's `snp.policy`/`snp.min_tcb` and
//!    the command line; the manifest's `guest_policy`, when present, as the exact `POLICY`), and the **expected measurement** (from `--manifest` or `--expected-measurement`;
//!    there is no way to skip it);
//! 4. report_data[0..32] = SHA-256 of the certificate's uncompressed P-256 public key (the key is bound);
//! 5. report_data[32..64] = zeros in a certificate, the verifier's fresh random nonce in `/attestation`
//!    (a replayed or stale report fails).
//!
//! A TDX quote (DCAP v4, RA-TLS OID `1.2.840.113741.1337.8`, or `/attestation`'s quote told apart by its
//! header) goes through [`crate::tdx`] instead: dcap-qvl with Intel's root and `--tdx-collateral`, or the
//! explicit `--trust-root`; the policy on MRTD / RTMR0–2 / owner fields / attributes / TEE TCB SVN from the
//! manifest's `tdx` section or `--expected-mrtd`; the same key binding and nonce (`RaTlsVerifyError::Tdx`);
//! the CC event log of `/attestation`, required and replayed ([`crate::tdx::require_event_log`]).
//! Evidence of a platform the expectation names no measurement for is refused (`NoExpectationFor`).
//!
//! `ckms verify` then also checks the API certificate chain against `--ca-cert` (WebPKI rules, by a normal
//! TLS handshake, the leaf taken only once the handshake completed), and, when the API certificate has no quote, that the RA-TLS port's certificate carries the
//! same public key.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use attest::ratls::{CertKind, SnpQuote, parse_snp_quote};
use attest::snp::{FirmwareVersion, Generation, TcbVersion};
use attest::tdx::evidence::{TdxEvidenceError, VerifiedTdx};
use attest::tdx::local::LocalVerifyError;
use attest::tdx::policy::TdxPolicyError;
/// The quote a certificate carries ([`quote_of`]): SEV-SNP or TDX.
pub use attest::verify::ratls::RaTlsQuote;
use attest::verify::ratls::{
    RaTlsEvidence, RaTlsRoots, RaTlsVerifyError, certificate_public_key, extract_evidence,
    verify_snp_quote,
};
use attest::verify::{ChainSource, Policy, VerifiedReport, VerifyError};
use base64ct::{Base64, Encoding};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use x509_cert::Certificate;

use crate::cmd::{Ctx, Output};
use crate::error::CliError;
use crate::http::{self, ClientIdentity, HttpClient, HttpError};
use crate::pinned::{CAPTURED, CaptureVerifier, PinnedKeyVerifier, spki_of};
use crate::tdx::TdxExpectation;

/// What the verifier expects of the server.
#[derive(Debug, Clone)]
pub struct Expectation {
    /// The SNP launch digest (`None`: SEV-SNP evidence is refused).
    pub measurement: Option<[u8; 48]>,
    /// What a TD must report (`None`: TDX evidence is refused).
    pub tdx: Option<TdxExpectation>,
    /// An explicitly trusted root (PEM or DER), e.g. `snp-emu`'s test ARK or `tdx-emu`'s test root.
    /// `None`: AMD's roots only (SEV-SNP), Intel's root with `--tdx-collateral` (TDX).
    pub trust_root: Option<Vec<u8>>,
    /// Changes to `attest`'s default policy (manifest `snp.policy` / `snp.min_tcb`, command line).
    pub policy: PolicyOverrides,
    /// Certificates for quotes that carry no certificate table.
    pub extra: ExtraCerts,
}

/// Where the VCEK and the intermediate come from when a quote's certificate table lacks them: files
/// (`--vcek`, `--cert-chain`), else AMD's KDS (`--kds-url`, [`crate::kds`]), fetched per quote.
#[derive(Debug, Clone, Default)]
pub struct ExtraCerts {
    /// The VCEK (DER or PEM), used when the quote carries none.
    pub vcek: Option<Vec<u8>>,
    /// A KDS `cert_chain` (PEM: ASK then ARK), used when the quote carries no ASK.
    pub cert_chain: Option<Vec<u8>>,
    /// The KDS to ask for what is still missing: base URL and the CA certificates of its HTTPS server.
    pub kds: Option<(String, Vec<rustls_pki_types::CertificateDer<'static>>)>,
}

/// Changes to the default [`Policy`] of `attest::verify` (debug and migration agent off, SMT
/// allowed, single socket not required, firmware >= 1.51, VMPL 0, per-product TCB floors): from
/// the manifest's optional `snp.policy` and `snp.min_tcb`, then the command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyOverrides {
    /// `Some(false)`: require the guest policy's SMT bit clear.
    pub allow_smt: Option<bool>,
    /// `Some(true)`: require the guest policy's SINGLE_SOCKET bit.
    pub require_single_socket: Option<bool>,
    /// Minimum current and committed firmware version.
    pub min_abi: Option<FirmwareVersion>,
    /// Per-product TCB floors (replacing the defaults of those products).
    pub min_tcb: Vec<(Generation, TcbVersion)>,
    /// An offline AMD CRL (DER or PEM), checked against the ASK and VCEK.
    pub amd_crl: Option<Vec<u8>>,
    /// The exact guest policy (the image manifest's `guest_policy`, format 2).
    pub guest_policy: Option<u64>,
}

impl PolicyOverrides {
    /// `policy` with these changes.
    pub fn apply(&self, mut policy: Policy) -> Policy {
        if let Some(a) = self.allow_smt {
            policy = policy.allow_smt(a);
        }
        if let Some(r) = self.require_single_socket {
            policy = policy.require_single_socket(r);
        }
        if let Some(m) = self.min_abi {
            policy = policy.min_abi(m);
        }
        for (g, t) in &self.min_tcb {
            policy = policy.min_tcb_for(*g, *t);
        }
        if let Some(crl) = &self.amd_crl {
            policy = policy.amd_crl(crl.clone());
        }
        if let Some(gp) = self.guest_policy {
            policy = policy.guest_policy(gp);
        }
        policy
    }

    /// `self` (the manifest's) with `over` (the command line's) taking precedence.
    fn overridden_by(mut self, over: PolicyOverrides) -> PolicyOverrides {
        self.allow_smt = over.allow_smt.or(self.allow_smt);
        self.require_single_socket = over.require_single_socket.or(self.require_single_socket);
        self.min_abi = over.min_abi.or(self.min_abi);
        self.min_tcb.extend(over.min_tcb);
        self.amd_crl = over.amd_crl.or(self.amd_crl);
        self.guest_policy = over.guest_policy.or(self.guest_policy);
        self
    }
}

/// Policy options shared by `bootstrap start`, `verify` and `attestation verify-report`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct PolicyArgs {
    /// Minimum TCB of one product, replacing its default floor (repeatable, one per product). Every SVN
    /// of the report's reported, committed and launch TCB must be at least this. Components: bl
    /// (boot loader), tee, snp, ucode (microcode), and fmc (Turin); the first four are required.
    /// Defaults: milan:bl=3,tee=0,snp=8,ucode=115 genoa:bl=7,tee=0,snp=14,ucode=72
    /// turin:fmc=0,bl=0,tee=0,snp=0,ucode=9.
    #[arg(long, value_name = "PRODUCT:bl=N,tee=N,snp=N,ucode=N[,fmc=N]")]
    pub min_tcb: Vec<String>,
    /// Minimum firmware version (current and committed), MAJOR.MINOR. Default 1.51.
    #[arg(long, value_name = "MAJOR.MINOR")]
    pub min_abi: Option<String>,
    /// Require the guest policy to forbid SMT (policy bit 16 clear). Default: SMT allowed.
    #[arg(long)]
    pub forbid_smt: bool,
    /// Require the guest policy's SINGLE_SOCKET bit (bit 20). Default: not required.
    #[arg(long)]
    pub require_single_socket: bool,
    /// An AMD CRL file (DER or PEM, e.g. from <https://kdsintf.amd.com/vcek/v1/Milan/crl>), signed by the
    /// chain's ARK: verification fails if it revokes the ASK or the VCEK, or is not current.
    #[arg(long, value_name = "FILE")]
    pub amd_crl: Option<PathBuf>,
}

/// Parses `PRODUCT:bl=N,tee=N,snp=N,ucode=N[,fmc=N]` (full names bootloader/microcode accepted).
pub fn parse_min_tcb(s: &str) -> Result<(Generation, TcbVersion), CliError> {
    let usage = || {
        CliError::Usage(format!(
            "--min-tcb `{s}`: expected PRODUCT:bl=N,tee=N,snp=N,ucode=N[,fmc=N] (PRODUCT milan, genoa or turin; N 0-255)"
        ))
    };
    let (product, rest) = s.split_once(':').ok_or_else(usage)?;
    let g: Generation = product.trim().parse().map_err(|()| usage())?;
    let (mut bl, mut tee, mut snp, mut ucode, mut fmc) = (None, None, None, None, None);
    for part in rest.split(',') {
        let (k, v) = part.split_once('=').ok_or_else(usage)?;
        let v: u8 = v.trim().parse().map_err(|_| usage())?;
        let slot = match k.trim() {
            "bl" | "bootloader" => &mut bl,
            "tee" => &mut tee,
            "snp" => &mut snp,
            "ucode" | "microcode" => &mut ucode,
            "fmc" => &mut fmc,
            _ => return Err(usage()),
        };
        if slot.replace(v).is_some() {
            return Err(usage());
        }
    }
    Ok((
        g,
        TcbVersion {
            fmc: fmc.unwrap_or(0),
            bootloader: bl.ok_or_else(usage)?,
            tee: tee.ok_or_else(usage)?,
            snp: snp.ok_or_else(usage)?,
            microcode: ucode.ok_or_else(usage)?,
        },
    ))
}

fn parse_min_abi(s: &str, what: &str) -> Result<FirmwareVersion, CliError> {
    s.trim()
        .parse()
        .map_err(|()| CliError::Usage(format!("{what} `{s}`: expected MAJOR.MINOR, e.g. 1.51")))
}

impl PolicyArgs {
    /// The overrides these options give.
    pub fn load(&self) -> Result<PolicyOverrides, CliError> {
        Ok(PolicyOverrides {
            allow_smt: self.forbid_smt.then_some(false),
            require_single_socket: self.require_single_socket.then_some(true),
            min_abi: self
                .min_abi
                .as_deref()
                .map(|s| parse_min_abi(s, "--min-abi"))
                .transpose()?,
            min_tcb: self
                .min_tcb
                .iter()
                .map(|s| parse_min_tcb(s))
                .collect::<Result<_, _>>()?,
            amd_crl: match &self.amd_crl {
                Some(p) => Some(crate::error::read_file(p)?),
                None => None,
            },
            guest_policy: None,
        })
    }
}

/// The manifest's optional `snp.policy` section.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestPolicy {
    allow_smt: Option<bool>,
    require_single_socket: Option<bool>,
    min_abi: Option<String>,
}

/// One product's entry of the manifest's optional `snp.min_tcb` section.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestTcb {
    #[serde(default)]
    fmc: u8,
    bootloader: u8,
    tee: u8,
    snp: u8,
    microcode: u8,
}

/// The policy overrides of a manifest (`snp.policy`, `snp.min_tcb`, and `guest_policy`, the exact launch
/// policy `image build` pins; all optional).
pub fn manifest_policy(v: &Value, path: &Path) -> Result<PolicyOverrides, CliError> {
    let bad = |what: &str, e: &dyn fmt::Display| {
        CliError::Usage(format!("{}: manifest {what}: {e}", path.display()))
    };
    let mut out = PolicyOverrides::default();
    if let Some(gp) = v.get("guest_policy") {
        let text = gp
            .as_str()
            .ok_or_else(|| bad("guest_policy", &"not a string"))?;
        let hex = text
            .strip_prefix("0x")
            .ok_or_else(|| bad("guest_policy", &"not 0x-prefixed hex"))?;
        out.guest_policy = Some(u64::from_str_radix(hex, 16).map_err(|e| bad("guest_policy", &e))?);
    }
    if let Some(p) = v.pointer("/snp/policy") {
        let p: ManifestPolicy =
            serde_json::from_value(p.clone()).map_err(|e| bad("snp.policy", &e))?;
        out.allow_smt = p.allow_smt;
        out.require_single_socket = p.require_single_socket;
        out.min_abi = p
            .min_abi
            .as_deref()
            .map(|s| parse_min_abi(s, "manifest snp.policy.min_abi"))
            .transpose()?;
    }
    if let Some(t) = v.pointer("/snp/min_tcb") {
        let map: std::collections::BTreeMap<String, ManifestTcb> =
            serde_json::from_value(t.clone()).map_err(|e| bad("snp.min_tcb", &e))?;
        for (product, t) in map {
            let g: Generation = product
                .parse()
                .map_err(|()| bad("snp.min_tcb", &format!("unknown product `{product}`")))?;
            out.min_tcb.push((
                g,
                TcbVersion {
                    fmc: t.fmc,
                    bootloader: t.bootloader,
                    tee: t.tee,
                    snp: t.snp,
                    microcode: t.microcode,
                },
            ));
        }
    }
    Ok(out)
}

/// Options shared by `bootstrap start` and `verify`.
#[derive(clap::Args, Debug, Clone)]
pub struct ExpectationArgs {
    /// Image manifest (`image build` output): its `snp.launch_digest` is the expected SEV-SNP measurement,
    /// its `tdx` section (MRTD, RTMR1, RTMR2, optional policy) what a TD must report.
    #[arg(
        long,
        value_name = "JSON",
        required_unless_present_any = ["expected_measurement", "expected_mrtd"]
    )]
    pub manifest: Option<PathBuf>,
    /// Expected SNP launch measurement, 96 hex digits.
    #[arg(long, value_name = "HEX", conflicts_with = "manifest")]
    pub expected_measurement: Option<String>,
    /// Expected TDX MRTD, 96 hex digits (TDX evidence without a manifest; no RTMR is then checked).
    #[arg(long, value_name = "HEX", conflicts_with = "manifest")]
    pub expected_mrtd: Option<String>,
    /// Trust this root (PEM or DER): the ARK of the VCEK chain (SEV-SNP, e.g. `snp-emu`'s) or the root of
    /// the PCK chain (TDX, e.g. `tdx-emu export-chain`'s root.pem). Never implied.
    #[arg(long, value_name = "ROOT.pem")]
    pub trust_root: Option<PathBuf>,
    /// Intel PCS collateral (JSON: TCB info, QE identity, CRLs, as dcap-qvl's QuoteCollateralV3) to verify
    /// TDX quotes against Intel's root. Not needed with --trust-root.
    #[arg(long, value_name = "JSON")]
    pub tdx_collateral: Option<PathBuf>,
    /// Minimum TDX TEE_TCB_SVN (32 hex digits, each byte a component; over the manifest's).
    #[arg(long, value_name = "HEX")]
    pub min_tee_tcb_svn: Option<String>,
    /// The VCEK (DER or PEM) for quotes without a certificate table (the host ran no extended guest
    /// request), e.g. downloaded once from AMD's KDS. Offline alternative to --kds-url.
    #[arg(long, value_name = "FILE")]
    pub vcek: Option<PathBuf>,
    /// AMD's `cert_chain` (PEM: ASK then ARK) for quotes without an ASK.
    #[arg(long, value_name = "PEM")]
    pub cert_chain: Option<PathBuf>,
    /// Fetch a missing VCEK (and cert_chain) from AMD's Key Distribution Service at this base URL
    /// (`/vcek/v1/{product}/{hwid}?blSPL=..&teeSPL=..&snpSPL=..&ucodeSPL=..`, `/vcek/v1/{product}/cert_chain`).
    /// Without a value: <https://kdsintf.amd.com>. Not asked unless given.
    #[arg(long, value_name = "URL", num_args = 0..=1, default_missing_value = crate::kds::DEFAULT_KDS_URL)]
    pub kds_url: Option<String>,
    /// CA certificates (PEM) that verify the KDS's HTTPS server.
    #[arg(long, value_name = "PEM", default_value = crate::kds::SYSTEM_CA_BUNDLE, requires = "kds_url")]
    pub kds_ca: PathBuf,
    /// Policy: minimum TCB and firmware, SMT, single socket, AMD CRL (over the manifest's).
    #[command(flatten)]
    pub policy: PolicyArgs,
}

impl Expectation {
    /// The VCEK chains accepted: AMD's, or only the explicit trust root.
    pub fn roots(&self) -> RaTlsRoots<'_> {
        match &self.trust_root {
            Some(root) => RaTlsRoots::TrustRoot(root),
            None => RaTlsRoots::Amd,
        }
    }

    /// The VCEK and chain for `quote`: its own certificate table first; what it lacks from
    /// [`ExtraCerts`] (`--vcek`, `--cert-chain`: an intermediate under `--trust-root`, else a KDS chain
    /// anchored at AMD's built-in roots).
    fn evidence_for<'a>(
        &'a self,
        quote: &SnpQuote,
        ask: &'a mut Option<Vec<u8>>,
    ) -> (Option<&'a [u8]>, RaTlsRoots<'a>) {
        let has_vcek = quote.cert(CertKind::Vcek).is_some() || quote.cert(CertKind::Vlek).is_some();
        let vcek = if has_vcek {
            None
        } else {
            self.extra.vcek.as_deref()
        };
        let roots = match (&self.extra.cert_chain, quote.cert(CertKind::Ask)) {
            (Some(chain), None) => match &self.trust_root {
                Some(ark) => {
                    *ask = Certificate::load_pem_chain(chain.trim_ascii())
                        .ok()
                        .and_then(|c| c.first().and_then(|c| der::Encode::to_der(c).ok()));
                    match ask.as_deref() {
                        Some(intermediate) => {
                            RaTlsRoots::Chain(ChainSource::TrustRoot { ark, intermediate })
                        }
                        None => RaTlsRoots::TrustRoot(ark),
                    }
                }
                None => RaTlsRoots::Chain(ChainSource::AmdPem(chain)),
            },
            _ => self.roots(),
        };
        (vcek, roots)
    }

    /// This expectation with what `quote` lacks fetched from the KDS (if one is configured and the
    /// files do not already provide it).
    pub fn with_kds(&self, quote: &[u8]) -> Result<Expectation, CliError> {
        let mut out = self.clone();
        let (Some((url, ca)), Ok(q)) = (&self.extra.kds, parse_snp_quote(quote)) else {
            return Ok(out);
        };
        let need_vcek = q.cert(CertKind::Vcek).is_none()
            && q.cert(CertKind::Vlek).is_none()
            && self.extra.vcek.is_none();
        let need_chain = q.cert(CertKind::Ask).is_none() && self.extra.cert_chain.is_none();
        if !need_vcek && !need_chain {
            return Ok(out);
        }
        let mut kds = crate::kds::Kds::new(url, ca.clone())?;
        let report = quote
            .get(..attest::snp::report::REPORT_SIZE)
            .unwrap_or_default();
        if need_vcek {
            out.extra.vcek = Some(kds.vcek_for_report(report)?);
        }
        if need_chain {
            let g = q
                .report
                .generation()
                .ok_or(crate::kds::KdsError::UnknownProduct)?;
            out.extra.cert_chain = Some(kds.cert_chain(g)?);
        }
        Ok(out)
    }

    /// The SEV-SNP policy: the expected measurement and `attest`'s defaults (debug and migration
    /// agent off, firmware >= 1.51, VMPL 0, per-product TCB floors) with [`PolicyOverrides`]
    /// applied; an error without an expected SEV-SNP measurement.
    pub fn policy(&self) -> Result<Policy, RaTlsVerifyError> {
        self.measurement
            .map(|m| self.policy.apply(Policy::new(m)))
            .ok_or(RaTlsVerifyError::NoExpectationFor("SEV-SNP"))
    }

    /// What is expected, for reports.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(m) = &self.measurement {
            parts.push(format!("SEV-SNP {}", hex::encode(m)));
        }
        if let Some(t) = &self.tdx {
            parts.push(t.describe());
        }
        parts.join("; ")
    }
}

impl ExpectationArgs {
    /// Reads the manifest or the hex value, and the trust root.
    pub fn load(&self) -> Result<Expectation, CliError> {
        let mut from_manifest = PolicyOverrides::default();
        let mut tdx = match &self.expected_mrtd {
            Some(h) => Some(TdxExpectation::new(crate::attestation::parse_hex::<48>(
                h,
                "--expected-mrtd",
            )?)),
            None => None,
        };
        let measurement = match (&self.manifest, &self.expected_measurement) {
            (_, Some(hex)) => Some(crate::attestation::parse_hex::<48>(
                hex,
                "--expected-measurement",
            )?),
            (Some(path), None) => {
                let text = crate::error::read_file(path)?;
                let v: Value = serde_json::from_slice(&text)
                    .map_err(|e| CliError::Usage(format!("{}: not JSON: {e}", path.display())))?;
                tdx = crate::tdx::manifest_tdx(&v, path)?;
                match v.pointer("/snp/launch_digest").and_then(Value::as_str) {
                    Some(digest) => {
                        from_manifest = manifest_policy(&v, path)?;
                        Some(crate::attestation::parse_hex::<48>(
                            digest,
                            "manifest snp.launch_digest",
                        )?)
                    }
                    None if tdx.is_some() => None,
                    None => {
                        return Err(CliError::Usage(format!(
                            "{}: no snp.launch_digest and no tdx section in the manifest",
                            path.display()
                        )));
                    }
                }
            }
            (None, None) if tdx.is_some() => None,
            (None, None) => {
                return Err(CliError::Usage(
                    "an expected measurement is required: --manifest FILE, --expected-measurement HEX or --expected-mrtd HEX".into(),
                ));
            }
        };
        if let Some(t) = &mut tdx {
            if let Some(p) = &self.tdx_collateral {
                t.collateral = Some(crate::error::read_file(p)?);
            }
            if let Some(s) = &self.min_tee_tcb_svn {
                t.min_tee_tcb_svn = crate::attestation::parse_hex::<16>(s, "--min-tee-tcb-svn")?;
            }
        }
        let trust_root = match &self.trust_root {
            Some(p) => Some(crate::error::read_file(p)?),
            None => None,
        };
        let extra = ExtraCerts {
            vcek: self
                .vcek
                .as_deref()
                .map(crate::error::read_file)
                .transpose()?,
            cert_chain: self
                .cert_chain
                .as_deref()
                .map(crate::error::read_file)
                .transpose()?,
            kds: match &self.kds_url {
                Some(url) => Some((url.clone(), http::load_certs(&self.kds_ca)?)),
                None => None,
            },
        };
        Ok(Expectation {
            measurement,
            tdx,
            trust_root,
            policy: from_manifest.overridden_by(self.policy.load()?),
            extra,
        })
    }
}

/// Why a server failed attestation: where (`context`, e.g. "bootstrap certificate", "/attestation") and
/// which check (`error`). The message names the check and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestationFailure {
    /// The evidence that failed.
    pub context: String,
    /// The check that failed.
    pub error: RaTlsVerifyError,
    /// The expected nonce was zero (a certificate's quote), not a fresh one.
    pub zero_nonce: bool,
}

impl AttestationFailure {
    fn new(context: &str, nonce: &[u8; 32], error: RaTlsVerifyError) -> Self {
        AttestationFailure {
            context: context.to_owned(),
            error,
            zero_nonce: nonce.iter().all(|b| *b == 0),
        }
    }
}

impl fmt::Display for AttestationFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.context)?;
        match &self.error {
            RaTlsVerifyError::NoQuote => f.write_str(
                "the certificate carries no RA-TLS quote (not an attested server)",
            ),
            RaTlsVerifyError::Measurement { expected, reported } => write!(
                f,
                "measurement differs from the expected one (expected {}, server reports {})",
                hex::encode(expected.as_slice()),
                hex::encode(reported.as_slice()),
            ),
            RaTlsVerifyError::Report(VerifyError::UntrustedRoot) => f.write_str(
                "the VCEK chain does not end at an AMD root (for snp-emu pass its ARK with --trust-root)",
            ),
            RaTlsVerifyError::Report(
                e @ (VerifyError::TcbTooOld { .. } | VerifyError::AbiTooOld { .. }),
            ) => write!(
                f,
                "{e} (the platform's firmware or microcode is older than required: update it, or \
                 change the floor with the manifest's snp.min_tcb / snp.policy.min_abi or --min-tcb / --min-abi)"
            ),
            RaTlsVerifyError::Report(
                e @ (VerifyError::DebugAllowed
                | VerifyError::MigrateMaAllowed
                | VerifyError::SmtAllowed
                | VerifyError::SingleSocketNotRequired
                | VerifyError::GuestPolicyMismatch { .. }
                | VerifyError::VmplTooHigh { .. }),
            ) => write!(f, "guest policy check failed: {e}"),
            RaTlsVerifyError::Report(e @ VerifyError::Revoked(_)) => {
                write!(f, "{e} (given with --amd-crl): do not trust this platform")
            }
            RaTlsVerifyError::Tdx(TdxEvidenceError::Policy(TdxPolicyError::Mismatch {
                field,
                expected,
                reported,
            })) => write!(
                f,
                "TDX {field} differs from the expected one (expected {}, server reports {})",
                hex::encode(expected.as_slice()),
                hex::encode(reported.as_slice()),
            ),
            RaTlsVerifyError::Tdx(TdxEvidenceError::Signatures(LocalVerifyError::UntrustedRoot)) => {
                f.write_str(
                    "the TDX quote's PCK chain does not end at the --trust-root given (for tdx-emu pass its root.pem)",
                )
            }
            RaTlsVerifyError::Tdx(TdxEvidenceError::NoCollateral) => f.write_str(
                "a TDX quote is verified against Intel's root with PCS collateral (--tdx-collateral FILE), \
                 or against an explicit --trust-root",
            ),
            RaTlsVerifyError::NoExpectationFor(p) => write!(
                f,
                "the server presents {p} evidence but no {p} measurement is expected (manifest section or \
                 --expected-measurement / --expected-mrtd)"
            ),
            RaTlsVerifyError::KeyNotBound => f.write_str(
                "report_data does not bind the server's TLS public key (SHA-256 of the key is not in report_data)",
            ),
            RaTlsVerifyError::NonceMismatch if self.zero_nonce => {
                f.write_str("report_data[32..64] is not zero as a certificate's must be")
            }
            RaTlsVerifyError::NonceMismatch => f.write_str(
                "report_data does not carry this request's nonce (stale or replayed report)",
            ),
            other => write!(f, "{other}"),
        }
    }
}

impl std::error::Error for AttestationFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl From<AttestationFailure> for CliError {
    fn from(e: AttestationFailure) -> Self {
        CliError::Attestation(Box::new(e))
    }
}

/// A verified quote of either platform.
#[derive(Debug, Clone)]
pub enum Verified {
    /// An SEV-SNP report.
    Snp(Box<VerifiedReport>),
    /// A TDX quote.
    Tdx(Box<VerifiedTdx>),
}

impl Verified {
    /// The measurement that identifies the image (SNP: launch digest; TDX: MRTD), hex.
    pub fn measurement_hex(&self) -> String {
        match self {
            Self::Snp(r) => hex::encode(r.measurement()),
            Self::Tdx(t) => format!("MRTD {}", hex::encode(t.body().mr_td)),
        }
    }

    /// The SEV-SNP report, if this is one.
    pub fn snp(&self) -> Option<&VerifiedReport> {
        match self {
            Self::Snp(r) => Some(r),
            Self::Tdx(_) => None,
        }
    }
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn verify_evidence(
    quote: &RaTlsQuote,
    public_key: &[u8; 65],
    nonce: &[u8; 32],
    exp: &Expectation,
) -> Result<Verified, RaTlsVerifyError> {
    match quote {
        RaTlsQuote::Snp(q) => {
            let parsed = parse_snp_quote(q).map_err(RaTlsVerifyError::Quote)?;
            let mut ask = None;
            let (vcek, roots) = exp.evidence_for(&parsed, &mut ask);
            verify_snp_quote(q, public_key, nonce, vcek, roots, &exp.policy()?)
                .map(|r| Verified::Snp(Box::new(r)))
        }
        RaTlsQuote::Tdx(q) => {
            let tdx = exp
                .tdx
                .as_ref()
                .ok_or(RaTlsVerifyError::NoExpectationFor("TDX"))?;
            crate::tdx::verify_tdx_quote(
                q,
                public_key,
                nonce,
                tdx,
                exp.trust_root.as_deref(),
                now_unix(),
            )
            .map(|v| Verified::Tdx(Box::new(v)))
        }
    }
}

/// Verifies a quote — SEV-SNP (`attest::verify::ratls`) or TDX DCAP v4 (`crate::tdx`), told
/// apart by its header — whose report data must be SHA-256(`public_key`) ‖ `nonce`. `context`
/// names the source in messages ("bootstrap certificate", "/attestation").
pub fn verify_quote(
    quote: &[u8],
    public_key: &[u8; 65],
    nonce: &[u8; 32],
    exp: &Expectation,
    context: &str,
) -> Result<Verified, AttestationFailure> {
    let q = if crate::tdx::is_tdx_quote(quote) {
        RaTlsQuote::Tdx(quote.to_vec())
    } else {
        RaTlsQuote::Snp(quote.to_vec())
    };
    verify_evidence(&q, public_key, nonce, exp)
        .map_err(|e| AttestationFailure::new(context, nonce, e))
}

/// The P-256 public key (uncompressed SEC1) of a certificate.
pub fn p256_public_key(cert_der: &[u8], context: &str) -> Result<[u8; 65], AttestationFailure> {
    certificate_public_key(cert_der).map_err(|e| AttestationFailure::new(context, &[0; 32], e))
}

/// The RA-TLS quote (SEV-SNP or TDX) carried by a certificate (`Ok(None)`: no quote at all).
pub fn quote_of(cert_der: &[u8]) -> Result<Option<RaTlsQuote>, AttestationFailure> {
    let fail = |e| AttestationFailure::new("server certificate", &[0; 32], e);
    match extract_evidence(cert_der) {
        Ok(RaTlsEvidence { quote, .. }) => Ok(Some(quote)),
        Err(RaTlsVerifyError::NoQuote) => Ok(None),
        Err(e) => Err(fail(e)),
    }
}

/// An RA-TLS certificate that passed [`attest_certificate`].
#[derive(Debug, Clone)]
pub struct AttestedKey {
    /// DER SubjectPublicKeyInfo (to pin).
    pub spki_der: Vec<u8>,
    /// Uncompressed P-256 public key.
    pub public_key: [u8; 65],
    /// The verified report (SEV-SNP) or quote (TDX) of the certificate.
    pub report: Verified,
}

/// Attests an RA-TLS certificate: its quote verifies and binds its key (zero nonce). A VCEK or ASK the
/// quote lacks comes from `exp`'s files or the KDS ([`Expectation::with_kds`]).
pub fn attest_certificate(
    cert_der: &[u8],
    exp: &Expectation,
    context: &str,
) -> Result<AttestedKey, CliError> {
    let zero = [0u8; 32];
    let fail = |e| AttestationFailure::new(context, &zero, e);
    let ev = extract_evidence(cert_der).map_err(fail)?;
    let exp = match &ev.quote {
        RaTlsQuote::Snp(q) => exp.with_kds(q)?,
        RaTlsQuote::Tdx(_) => exp.clone(),
    };
    let report = verify_evidence(&ev.quote, &ev.public_key, &zero, &exp).map_err(fail)?;
    let spki_der = spki_of(cert_der).ok_or_else(|| fail(RaTlsVerifyError::Certificate))?;
    Ok(AttestedKey {
        spki_der,
        public_key: ev.public_key,
        report,
    })
}

/// Fetches a server's leaf certificate without trusting it (the handshake is aborted after the capture).
pub fn capture_certificate(url: &str) -> Result<Vec<u8>, CliError> {
    let verifier = Arc::new(CaptureVerifier::new(http::provider()));
    let tls = http::client_config_with_verifier(verifier.clone(), None)?;
    let mut client = HttpClient::new(url, tls)?;
    client.set_timeout(std::time::Duration::from_secs(30));
    match client.get("/attestation") {
        Err(HttpError::Io(e)) if e.to_string().contains(CAPTURED) => {}
        Err(e) => return Err(e.into()),
        Ok(_) => {
            return Err(CliError::Response(
                "capture connection unexpectedly succeeded".into(),
            ));
        }
    }
    let chain = verifier
        .take()
        .ok_or_else(|| CliError::Response("the server sent no certificate".into()))?;
    chain
        .into_iter()
        .next()
        .map(|c| c.as_ref().to_vec())
        .ok_or_else(|| CliError::Response("empty chain".into()))
}

/// A client pinned to an attested key (with the optional client identity).
pub fn pinned_client(
    url: &str,
    spki_der: &[u8],
    identity: Option<ClientIdentity>,
) -> Result<HttpClient, CliError> {
    let verifier = Arc::new(PinnedKeyVerifier::new(http::provider(), spki_der.to_vec()));
    let tls = http::client_config_with_verifier(verifier, identity)?;
    Ok(HttpClient::new(url, tls)?)
}

/// A fresh random nonce.
pub fn fresh_nonce() -> Result<[u8; 32], CliError> {
    let mut nonce = [0u8; 32];
    http::provider()
        .secure_random
        .fill(&mut nonce)
        .map_err(|_| CliError::Usage("no randomness available".into()))?;
    Ok(nonce)
}

/// Retries of `GET /attestation` answered 429 (rate-limited), a second apart.
const ATTESTATION_RETRIES: usize = 5;

/// `GET /attestation?nonce=…` over `client`, verified against `public_key` and `nonce`. For
/// TDX, the second value says what became of the TD's CC event log: replayed against the quote
/// and the manifest ([`crate::tdx::require_event_log`]; a log that fails, or none, is an error).
pub fn fresh_attestation(
    client: &mut HttpClient,
    public_key: &[u8; 65],
    nonce: &[u8; 32],
    exp: &Expectation,
) -> Result<(Verified, Option<String>), CliError> {
    let path = format!("/attestation?nonce={}", hex::encode(nonce));
    let mut resp = client.get(&path)?;
    // The server rate-limits attestation (each is a firmware round trip): 429 means "retry in a
    // second"; give up after a few tries.
    for _ in 0..ATTESTATION_RETRIES {
        if resp.status != 429 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
        resp = client.get(&path)?;
    }
    if resp.status != 200 {
        return Err(CliError::Server {
            status: resp.status,
            message: resp.text(),
        });
    }
    let v: Value = serde_json::from_slice(&resp.body)
        .map_err(|e| CliError::Response(format!("/attestation: not JSON: {e}")))?;
    let quote = v
        .get("quote")
        .and_then(Value::as_str)
        .and_then(|q| Base64::decode_vec(q).ok())
        .ok_or_else(|| CliError::Response("/attestation: no base64 quote".into()))?;
    let exp = exp.with_kds(&quote)?;
    let verified = verify_quote(&quote, public_key, nonce, &exp, "/attestation")?;
    let log = match (&verified, &exp.tdx) {
        (Verified::Tdx(t), Some(tdx)) => Some(
            crate::tdx::require_event_log(v.get("event_log").and_then(Value::as_str), t, tdx)
                .map_err(CliError::EventLog)?,
        ),
        _ => None,
    };
    Ok((verified, log))
}

/// The client identity from the settings, if any.
pub fn identity(ctx: &Ctx) -> Result<Option<ClientIdentity>, CliError> {
    match (&ctx.settings.client_cert, &ctx.settings.client_key) {
        (Some(c), Some(k)) => Ok(Some(ClientIdentity::from_pem_files(c, k)?)),
        (None, None) => Ok(None),
        _ => Err(CliError::Usage(
            "--client-cert and --client-key go together".into(),
        )),
    }
}

// -----------------------------------------------------------------------------------------------------------
// `ckms verify`

/// `ckms verify`.
#[derive(clap::Args, Debug, Clone)]
#[command(
    long_about = "Verify a running KMS: the API certificate chain (against --ca-cert), the quote (in the \
API certificate, or on the RA-TLS port with the same public key), and a fresh-nonce /attestation report. \
For TDX, /attestation must also carry the CC event log, which is replayed against the quote's RTMRs and the \
manifest's kms.efi and command line (a TD without one is refused).\n\n\
Examples:\n  ckms verify --url https://kms:9998 --ra-tls-url https://kms:9999 --ca-cert ca.pem --manifest manifest.json\n  \
ckms verify --url https://127.0.0.1:9998 --ca-cert ca.pem --expected-measurement <96 hex> --trust-root ark.pem"
)]
pub struct VerifyArgs {
    /// The RA-TLS port, needed when the API certificate carries no quote.
    #[arg(long, value_name = "URL")]
    pub ra_tls_url: Option<String>,
    /// What to expect.
    #[command(flatten)]
    pub expect: ExpectationArgs,
}

/// One check and its outcome.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Check {
    /// What was checked.
    pub check: String,
    /// Passed?
    pub ok: bool,
    /// Detail or failure reason.
    pub detail: String,
}

struct Report {
    checks: Vec<Check>,
}

impl Report {
    fn pass(&mut self, check: &str, detail: impl Into<String>) {
        self.checks.push(Check {
            check: check.into(),
            ok: true,
            detail: detail.into(),
        });
    }
    fn fail(&mut self, check: &str, detail: impl Into<String>) -> String {
        let detail = detail.into();
        self.checks.push(Check {
            check: check.into(),
            ok: false,
            detail: detail.clone(),
        });
        format!("{check}: {detail}")
    }
    fn output(self, failure: Option<String>) -> Result<Output, CliError> {
        let human: Vec<String> = self
            .checks
            .iter()
            .map(|c| {
                format!(
                    "[{}] {}: {}",
                    if c.ok { "ok" } else { "FAIL" },
                    c.check,
                    c.detail
                )
            })
            .collect();
        match failure {
            None => Ok(Output::new(
                format!("{}\nverified", human.join("\n")),
                json!({"verified": true, "checks": self.checks}),
            )),
            Some(f) => {
                eprintln!("{}", human.join("\n"));
                Err(CliError::Negative(format!("verification failed: {f}")))
            }
        }
    }
}

/// Runs `ckms verify`.
pub fn verify(ctx: &Ctx, args: &VerifyArgs) -> Result<Output, CliError> {
    let exp = args.expect.load()?;
    let url = ctx
        .settings
        .url
        .as_deref()
        .ok_or_else(|| CliError::Usage("--url is required".into()))?;
    let mut rep = Report { checks: Vec::new() };
    rep.pass("expected measurement", exp.describe());
    let failure = run_verify(ctx, args, &exp, url, &mut rep).err();
    rep.output(failure)
}

fn run_verify(
    ctx: &Ctx,
    args: &VerifyArgs,
    exp: &Expectation,
    url: &str,
    rep: &mut Report,
) -> Result<(), String> {
    // 1. The API certificate chain, by a normal CA-verified handshake.
    let ca = ctx
        .settings
        .ca_cert
        .as_deref()
        .ok_or_else(|| rep.fail("API certificate chain", "--ca-cert is required"))?;
    let leaf =
        api_leaf(ctx, url, ca).map_err(|e| rep.fail("API certificate chain", e.to_string()))?;
    rep.pass(
        "API certificate chain",
        format!("{url} presents a certificate issued by {}", ca.display()),
    );
    let api_key = p256_public_key(&leaf, "API certificate")
        .map_err(|e| rep.fail("API certificate key", e.to_string()))?;

    // 2. The quote: in the API certificate, or on the RA-TLS port with the same key.
    let quote = quote_of(&leaf).map_err(|e| rep.fail("API certificate", e.to_string()))?;
    let (attested_url, attested) = if quote.is_some() {
        {
            let a = attest_certificate(&leaf, exp, "API certificate quote")
                .map_err(|e| rep.fail("quote in the API certificate", e.to_string()))?;
            rep.pass("quote in the API certificate", quote_summary(&a.report));
            (url.to_owned(), a)
        }
    } else {
        {
            let ra = args.ra_tls_url.as_deref().ok_or_else(|| {
                rep.fail(
                    "quote",
                    "the API certificate carries no quote: give --ra-tls-url for the RA-TLS port",
                )
            })?;
            let cert = capture_certificate(ra)
                .map_err(|e| rep.fail("RA-TLS certificate", e.to_string()))?;
            let a = attest_certificate(&cert, exp, "RA-TLS certificate quote")
                .map_err(|e| rep.fail("quote on the RA-TLS port", e.to_string()))?;
            rep.pass("quote on the RA-TLS port", quote_summary(&a.report));
            if a.public_key != api_key {
                return Err(rep.fail(
                    "same key on both ports",
                    "the RA-TLS certificate and the API certificate carry different public keys",
                ));
            }
            rep.pass(
                "same key on both ports",
                format!(
                    "SHA-256 of the key {}",
                    hex::encode(Sha256::digest(api_key))
                ),
            );
            (ra.to_owned(), a)
        }
    };

    // 3. A fresh report with our nonce, over a connection pinned to the attested key.
    let id = identity(ctx).map_err(|e| rep.fail("fresh attestation", e.to_string()))?;
    let mut client = pinned_client(&attested_url, &attested.spki_der, id)
        .map_err(|e| rep.fail("fresh attestation", e.to_string()))?;
    let nonce = fresh_nonce().map_err(|e| rep.fail("fresh attestation", e.to_string()))?;
    let (fresh, log) = fresh_attestation(&mut client, &attested.public_key, &nonce, exp)
        .map_err(|e| rep.fail("fresh attestation", e.to_string()))?;
    rep.pass(
        "fresh attestation",
        format!(
            "nonce {} answered; {}",
            hex::encode(nonce),
            quote_summary(&fresh)
        ),
    );
    if let Some(log) = log {
        rep.pass("event log", log);
    }
    Ok(())
}

fn quote_summary(v: &Verified) -> String {
    let r = match v {
        Verified::Snp(r) => r,
        Verified::Tdx(t) => return crate::tdx::summary(t),
    };
    let anchor = match r.anchor() {
        attest::verify::TrustAnchor::Amd(g) => format!("AMD {} root", g.name()),
        attest::verify::TrustAnchor::Custom => "the given --trust-root".into(),
    };
    let t = r.reported_tcb();
    format!(
        "signed by a VCEK chaining to {anchor}, measurement {}, key bound; guest policy {:#x}, \
         VMPL {}, {} TCB bl {} tee {} snp {} ucode {} (>= floor)",
        hex::encode(r.measurement()),
        r.report().policy.get(),
        r.report().vmpl.get(),
        r.generation().name(),
        t.bootloader,
        t.tee,
        t.snp,
        t.microcode
    )
}

/// Connects with CA verification and returns the server's leaf certificate, taken from the completed
/// handshake: a server that presents the genuine certificate without holding its key fails here.
fn api_leaf(ctx: &Ctx, url: &str, ca: &Path) -> Result<Vec<u8>, CliError> {
    api_leaf_with(url, ca, identity(ctx)?)
}

fn api_leaf_with(
    url: &str,
    ca: &Path,
    identity: Option<ClientIdentity>,
) -> Result<Vec<u8>, CliError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in http::load_certs(ca)? {
        roots.add(c).map_err(|e| HttpError::Tls(e.to_string()))?;
    }
    let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        http::provider(),
    )
    .build()
    .map_err(|e| HttpError::Tls(e.to_string()))?;
    let tls = http::client_config_with_verifier(webpki, identity)?;
    let mut client = HttpClient::new(url, tls)?;
    Ok(client.handshake()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use attest::ratls::{CertEntry, CertKind, encode_snp_quote};
    use snp_emu::chain::Chain;
    use snp_emu::psp::{LaunchInfo, Psp};
    use zeroize::Zeroizing;

    const MEASUREMENT: [u8; 48] = [0x4D; 48];

    /// The emulator's PSP in-process: real signed reports and the real test chain.
    fn psp() -> Psp {
        let chain = Chain::builtin().expect("builtin chain");
        let launch = LaunchInfo {
            measurement: MEASUREMENT,
            policy: 0x30000,
            host_data: [0; 32],
            report_version: 3,
            platform_info: 0,
            report_id: [1; 32],
        };
        Psp::new(
            chain,
            launch,
            Zeroizing::new([2; 32]),
            Zeroizing::new([3; 32]),
        )
        .expect("psp")
    }

    fn quote(psp: &Psp, key: &[u8; 65], nonce: &[u8; 32]) -> Vec<u8> {
        let rd = attest::ratls::report_data_for_key(key, nonce);
        let report = psp.report(&rd, 0).expect("report").to_bytes();
        let c = psp.chain();
        let certs = [
            CertEntry::new(CertKind::Vcek, c.vcek_der.clone()),
            CertEntry::new(CertKind::Ask, c.ask_der.clone()),
            CertEntry::new(CertKind::Ark, c.ark_der.clone()),
        ];
        encode_snp_quote(&report, &certs)
    }

    fn expect(psp: &Psp) -> Expectation {
        Expectation {
            measurement: Some(MEASUREMENT),
            tdx: None,
            trust_root: Some(psp.chain().ark_der.clone()),
            policy: PolicyOverrides::default(),
            extra: ExtraCerts::default(),
        }
    }

    const KEY: [u8; 65] = [4; 65];

    /// A quote with an empty certificate table (the host ran no extended guest request).
    fn bare_quote(psp: &Psp, key: &[u8; 65], nonce: &[u8; 32]) -> Vec<u8> {
        let rd = attest::ratls::report_data_for_key(key, nonce);
        encode_snp_quote(&psp.report(&rd, 0).expect("report").to_bytes(), &[])
    }

    /// The KDS routes of the emulator's chain for `report` (VCEK at its chip and TCB, cert_chain).
    fn kds_routes(
        report: &[u8],
        vcek: &[u8],
        psp: &Psp,
    ) -> std::collections::HashMap<String, (u16, Vec<u8>)> {
        use der::EncodePem;
        let r = attest::snp::AttestationReport::parse(report).expect("report");
        let g = r.generation().expect("product");
        let pem = |d: &[u8]| {
            <Certificate as der::Decode>::from_der(d)
                .expect("cert")
                .to_pem(der::pem::LineEnding::LF)
                .expect("pem")
        };
        let c = psp.chain();
        [
            (
                crate::kds::vcek_path(g, &r.chip_id, &r.reported_tcb(g)),
                (200, vcek.to_vec()),
            ),
            (
                crate::kds::cert_chain_path(g),
                (
                    200,
                    format!("{}{}", pem(&c.ask_der), pem(&c.ark_der)).into_bytes(),
                ),
            ),
        ]
        .into_iter()
        .collect()
    }

    fn with_kds(exp: &Expectation, kds: &crate::kds::stand_in::StandIn) -> Expectation {
        let mut e = exp.clone();
        e.extra.kds = Some((kds.url.clone(), kds.ca.clone()));
        e
    }

    #[test]
    fn a_quote_without_certificates_needs_a_vcek_source() {
        let p = psp();
        let nonce = [9; 32];
        let q = bare_quote(&p, &KEY, &nonce);
        let e = verify_quote(&q, &KEY, &nonce, &expect(&p), "t").unwrap_err();
        assert_eq!(e.error, RaTlsVerifyError::NoVcek, "{e}");
        // Offline: the VCEK and the cert_chain from files, as AMD's KDS serves them.
        let routes = kds_routes(&q[..0x4A0], &p.chain().vcek_der, &p);
        let chain = routes
            .iter()
            .find(|(k, _)| k.ends_with("/cert_chain"))
            .map(|(_, (_, b))| b.clone());
        let mut exp = expect(&p);
        exp.extra.vcek = Some(p.chain().vcek_der.clone());
        // The VCEK alone is not enough under a test root: the quote has no ASK either.
        let e = verify_quote(&q, &KEY, &nonce, &exp, "t").unwrap_err();
        assert_eq!(e.error, RaTlsVerifyError::NoIntermediate, "{e}");
        exp.extra.cert_chain = chain;
        let v = verify_quote(&q, &KEY, &nonce, &exp, "t").expect("offline VCEK verifies");
        assert_eq!(v.snp().map(|r| *r.measurement()), Some(MEASUREMENT));
        // Without the trust root, the test chain is not AMD's.
        exp.trust_root = None;
        let e = verify_quote(&q, &KEY, &nonce, &exp, "t").unwrap_err();
        assert!(
            matches!(
                e.error,
                RaTlsVerifyError::Report(VerifyError::UntrustedRoot)
            ),
            "{e}"
        );
    }

    #[test]
    fn the_vcek_and_chain_come_from_the_kds_url_layout() {
        let p = psp();
        let nonce = [9; 32];
        let q = bare_quote(&p, &KEY, &nonce);
        let routes = kds_routes(&q[..0x4A0], &p.chain().vcek_der, &p);
        let kds = crate::kds::stand_in::StandIn::start(routes.clone());
        let exp = with_kds(&expect(&p), &kds)
            .with_kds(&q)
            .expect("KDS answers");
        let v = verify_quote(&q, &KEY, &nonce, &exp, "t").expect("verifies");
        assert_eq!(v.snp().map(|r| *r.measurement()), Some(MEASUREMENT));
        let asked = kds.asked();
        assert_eq!(asked.len(), 2, "{asked:?}");
        assert!(
            asked[0].starts_with(&format!(
                "/vcek/v1/Milan/{}?blSPL=",
                hex::encode(p.chain().chip_id)
            )),
            "{asked:?}"
        );
        assert_eq!(asked[1], "/vcek/v1/Milan/cert_chain");
        // A quote that carries its certificates asks nothing.
        let full = quote(&p, &KEY, &nonce);
        with_kds(&expect(&p), &kds)
            .with_kds(&full)
            .expect("no fetch");
        assert_eq!(kds.asked().len(), 2);
    }

    #[test]
    fn kds_failures_are_typed() {
        use crate::kds::KdsError;
        use snp_emu::chain::{Tcb, TestCa};
        let p = psp();
        let nonce = [9; 32];
        let q = bare_quote(&p, &KEY, &nonce);
        let report = &q[..0x4A0];
        let vcek_path = |r: &[u8]| {
            let r = attest::snp::AttestationReport::parse(r).expect("report");
            crate::kds::vcek_path(
                attest::snp::Generation::Milan,
                &r.chip_id,
                &r.reported_tcb(attest::snp::Generation::Milan),
            )
        };
        let fetch = |routes| {
            let kds = crate::kds::stand_in::StandIn::start(routes);
            with_kds(&expect(&p), &kds).with_kds(&q).map(|_| ())
        };
        // Nothing served: not found.
        let r = fetch(Default::default());
        assert!(
            matches!(&r, Err(CliError::Kds(KdsError::NotFound { url })) if url.contains("/vcek/v1/Milan/")),
            "{r:?}"
        );
        // Not a certificate.
        let mut routes = kds_routes(report, b"not DER", &p);
        let r = fetch(routes.clone());
        assert!(
            matches!(&r, Err(CliError::Kds(KdsError::BadDer { .. }))),
            "{r:?}"
        );
        // A rate limit or server error keeps its status.
        routes.insert(vcek_path(report), (503, Vec::new()));
        let r = fetch(routes);
        assert!(
            matches!(&r, Err(CliError::Kds(KdsError::Status { status: 503, .. }))),
            "{r:?}"
        );
        // The same chip's VCEK for another TCB.
        let other = TestCa::builtin()
            .expect("test CA")
            .with_tcb(
                p.chain(),
                Tcb {
                    snp: Tcb::TEST.snp - 1,
                    ..Tcb::TEST
                },
            )
            .expect("reissue");
        let r = fetch(kds_routes(report, &other.vcek_der, &p));
        assert!(
            matches!(
                &r,
                Err(CliError::Kds(KdsError::WrongTcb { field: "snpSPL", cert, report }))
                    if *cert + 1 == *report
            ),
            "{r:?}"
        );
        // Another chip: the KDS answers the report's chip-id path with a VCEK whose hwID differs.
        let mut flipped = q.clone();
        flipped[0x1A0] ^= 1;
        let kds = crate::kds::stand_in::StandIn::start(kds_routes(
            &flipped[..0x4A0],
            &p.chain().vcek_der,
            &p,
        ));
        let r = with_kds(&expect(&p), &kds).with_kds(&flipped).map(|_| ());
        assert!(
            matches!(&r, Err(CliError::Kds(KdsError::WrongChip))),
            "{r:?}"
        );
        // A bad cert_chain.
        let mut routes = kds_routes(report, &p.chain().vcek_der, &p);
        routes.insert(
            crate::kds::cert_chain_path(attest::snp::Generation::Milan),
            (200, b"-----BEGIN CERTIFICATE-----\n".to_vec()),
        );
        let r = fetch(routes);
        assert!(
            matches!(&r, Err(CliError::Kds(KdsError::BadChain { .. }))),
            "{r:?}"
        );
        // An unreachable KDS.
        let mut exp = expect(&p);
        exp.extra.kds = Some(("https://127.0.0.1:1".into(), Vec::new()));
        let r = exp.with_kds(&q).map(|_| ());
        assert!(
            matches!(&r, Err(CliError::Kds(KdsError::Http { .. }))),
            "{r:?}"
        );
    }

    #[test]
    fn genuine_quote_verifies_with_the_explicit_root() {
        let p = psp();
        let nonce = [9; 32];
        let v = verify_quote(&quote(&p, &KEY, &nonce), &KEY, &nonce, &expect(&p), "t")
            .expect("verifies");
        let v = v.snp().unwrap();
        assert_eq!(v.anchor(), attest::verify::TrustAnchor::Custom);
        assert_eq!(v.measurement(), &MEASUREMENT);
    }

    #[test]
    fn each_failure_names_its_check() {
        let p = psp();
        let exp = expect(&p);
        let nonce = [9; 32];
        let q = quote(&p, &KEY, &nonce);
        let wrong = Expectation {
            measurement: Some([0; 48]),
            tdx: None,
            ..exp.clone()
        };
        let e = verify_quote(&q, &KEY, &nonce, &wrong, "t").unwrap_err();
        assert!(
            matches!(&e.error, RaTlsVerifyError::Measurement { reported, .. } if **reported == MEASUREMENT),
            "{e}"
        );
        assert!(
            e.to_string().contains(&format!(
                "measurement differs from the expected one (expected {}, server reports {})",
                "00".repeat(48),
                "4d".repeat(48)
            )),
            "{e}"
        );
        let no_root = Expectation {
            trust_root: None,
            ..exp.clone()
        };
        let e = verify_quote(&q, &KEY, &nonce, &no_root, "t").unwrap_err();
        assert_eq!(
            e.error,
            RaTlsVerifyError::Report(VerifyError::UntrustedRoot),
            "{e}"
        );
        assert!(e.to_string().contains("does not end at an AMD root"), "{e}");
        let e = verify_quote(&q, &[5; 65], &nonce, &exp, "t").unwrap_err();
        assert_eq!(e.error, RaTlsVerifyError::KeyNotBound, "{e}");
        assert!(
            e.to_string()
                .contains("does not bind the server's TLS public key"),
            "{e}"
        );
        let e = verify_quote(&q, &KEY, &[8; 32], &exp, "t").unwrap_err();
        assert_eq!(e.error, RaTlsVerifyError::NonceMismatch, "{e}");
        assert!(e.to_string().contains("stale or replayed"), "{e}");
        let e = verify_quote(&q, &KEY, &[0; 32], &exp, "t").unwrap_err();
        assert_eq!(e.error, RaTlsVerifyError::NonceMismatch, "{e}");
        assert!(e.to_string().contains("is not zero"), "{e}");
        // Any flipped bit in the signed part or the signature fails.
        for at in [0x50, 0x90, 0x2A0, 0x2A8] {
            let mut bad = q.clone();
            bad[at] ^= 1;
            let e = verify_quote(&bad, &KEY, &nonce, &exp, "t").unwrap_err();
            assert_eq!(
                e.error,
                RaTlsVerifyError::Report(VerifyError::ReportSignature),
                "flip at {at:#x}: {e}"
            );
        }
        let e = verify_quote(&q[..100], &KEY, &nonce, &exp, "t").unwrap_err();
        assert!(matches!(e.error, RaTlsVerifyError::Quote(_)), "{e}");
        assert!(e.to_string().contains("quote does not parse"), "{e}");
        // The CLI error keeps the message.
        let cli = CliError::from(e.clone());
        assert!(matches!(&cli, CliError::Attestation(f) if **f == e));
        assert!(
            cli.to_string().starts_with("attestation failed: t: "),
            "{cli}"
        );
    }

    /// Issue 12 #3: an emulator report with MIGRATE_MA set, or from a platform below the TCB
    /// floor, fails with the check named and the expected/actual values; --min-tcb and the
    /// manifest's snp.min_tcb / snp.policy change the floor and the requirements.
    #[test]
    fn policy_and_tcb_failures_name_the_check() {
        use snp_emu::chain::{Tcb, TestCa};
        let nonce = [9; 32];
        let migratable = {
            let launch = LaunchInfo {
                measurement: MEASUREMENT,
                policy: 0x30000 | 1 << 18,
                host_data: [0; 32],
                report_version: 3,
                platform_info: 0,
                report_id: [1; 32],
            };
            let chain = Chain::builtin().expect("chain");
            Psp::new(
                chain,
                launch,
                Zeroizing::new([2; 32]),
                Zeroizing::new([3; 32]),
            )
            .expect("psp")
        };
        let e = verify_quote(
            &quote(&migratable, &KEY, &nonce),
            &KEY,
            &nonce,
            &expect(&migratable),
            "t",
        )
        .unwrap_err();
        assert_eq!(
            e.error,
            RaTlsVerifyError::Report(VerifyError::MigrateMaAllowed)
        );
        assert!(
            e.to_string()
                .contains("guest policy check failed: guest policy allows a migration agent (POLICY bit 18 MIGRATE_MA = 1, expected 0)"),
            "{e}"
        );

        // A platform at SNP SVN 7, below Milan's floor of 8.
        let ca = TestCa::builtin().expect("ca");
        let old = Tcb {
            snp: 7,
            ..Tcb::TEST
        };
        let p = psp();
        let lowered = Psp::new(
            ca.with_tcb(&Chain::builtin().expect("chain"), old)
                .expect("reissue"),
            p.launch().clone(),
            Zeroizing::new([2; 32]),
            Zeroizing::new([3; 32]),
        )
        .expect("psp");
        let q = quote(&lowered, &KEY, &nonce);
        let e = verify_quote(&q, &KEY, &nonce, &expect(&lowered), "t").unwrap_err();
        assert_eq!(
            e.error,
            RaTlsVerifyError::Report(VerifyError::TcbTooOld {
                tcb: "reported",
                field: "snp",
                min: 8,
                got: 7
            })
        );
        assert!(
            e.to_string()
                .contains("reported TCB snp SVN 7 is below the minimum 8 (the platform's firmware"),
            "{e}"
        );
        // The command line lowers the floor.
        let args = PolicyArgs {
            min_tcb: vec!["milan:bl=4,tee=0,snp=7,ucode=213".into()],
            ..PolicyArgs::default()
        };
        let mut exp = expect(&lowered);
        exp.policy = args.load().expect("args");
        assert!(verify_quote(&q, &KEY, &nonce, &exp, "t").is_ok());
        // So does the manifest; its snp.policy can also require SINGLE_SOCKET, which this guest
        // policy (0x30000) does not set.
        let dir = tempfile::tempdir().expect("dir");
        let manifest = dir.path().join("manifest.json");
        let text = serde_json::json!({"snp": {
            "launch_digest": hex::encode(MEASUREMENT),
            "min_tcb": {"milan": {"bootloader": 4, "tee": 0, "snp": 7, "microcode": 213}},
        }});
        std::fs::write(&manifest, text.to_string()).expect("write");
        let margs = ExpectationArgs {
            manifest: Some(manifest.clone()),
            expected_measurement: None,
            expected_mrtd: None,
            trust_root: None,
            tdx_collateral: None,
            min_tee_tcb_svn: None,
            vcek: None,
            cert_chain: None,
            kds_url: None,
            kds_ca: crate::kds::SYSTEM_CA_BUNDLE.into(),
            policy: PolicyArgs::default(),
        };
        let mut exp = margs.load().expect("manifest");
        exp.trust_root = Some(lowered.chain().ark_der.clone());
        assert!(verify_quote(&q, &KEY, &nonce, &exp, "t").is_ok());
        // ... but the command line wins over the manifest.
        let strict = ExpectationArgs {
            policy: PolicyArgs {
                min_tcb: vec!["milan:bl=4,tee=0,snp=8,ucode=213".into()],
                ..PolicyArgs::default()
            },
            ..margs
        };
        let mut exp = strict.load().expect("manifest");
        exp.trust_root = Some(lowered.chain().ark_der.clone());
        assert!(matches!(
            verify_quote(&q, &KEY, &nonce, &exp, "t").unwrap_err().error,
            RaTlsVerifyError::Report(VerifyError::TcbTooOld { min: 8, got: 7, .. })
        ));
        let text = serde_json::json!({"snp": {
            "launch_digest": hex::encode(MEASUREMENT),
            "policy": {"require_single_socket": true, "min_abi": "1.51"},
        }});
        std::fs::write(&manifest, text.to_string()).expect("write");
        let mut exp = strict.load().expect("manifest");
        exp.trust_root = Some(p.chain().ark_der.clone());
        let e = verify_quote(&quote(&p, &KEY, &nonce), &KEY, &nonce, &exp, "t").unwrap_err();
        assert_eq!(
            e.error,
            RaTlsVerifyError::Report(VerifyError::SingleSocketNotRequired)
        );
        // The manifest's guest_policy (image build, format 2) must be the report's POLICY exactly.
        for (gp, ok) in [("0x30000", true), ("0x20000", false)] {
            let text = serde_json::json!({"guest_policy": gp, "snp": {
                "launch_digest": hex::encode(MEASUREMENT),
            }});
            std::fs::write(&manifest, text.to_string()).expect("write");
            let mut exp = margs_plain(&manifest).load().expect("manifest");
            exp.trust_root = Some(p.chain().ark_der.clone());
            let r = verify_quote(&quote(&p, &KEY, &nonce), &KEY, &nonce, &exp, "t");
            if ok {
                assert!(r.is_ok(), "{r:?}");
            } else {
                let e = r.unwrap_err();
                assert_eq!(
                    e.error,
                    RaTlsVerifyError::Report(VerifyError::GuestPolicyMismatch {
                        expected: 0x20000,
                        reported: 0x30000
                    })
                );
                assert!(e.to_string().contains("guest policy check failed"), "{e}");
            }
        }
        std::fs::write(
            &manifest,
            r#"{"guest_policy": 196608, "snp": {"launch_digest": ""}}"#,
        )
        .expect("write");
        assert!(matches!(
            margs_plain(&manifest).load(),
            Err(CliError::Usage(m)) if m.contains("manifest guest_policy")
        ));
        // Malformed overrides are usage errors naming the option.
        assert!(matches!(
            parse_min_tcb("milan:bl=4,snp=7"),
            Err(CliError::Usage(m)) if m.contains("--min-tcb `milan:bl=4,snp=7`")
        ));
        assert!(matches!(
            parse_min_tcb("epyc:bl=1,tee=1,snp=1,ucode=1"),
            Err(CliError::Usage(_))
        ));
        let text = serde_json::json!({"snp": {"launch_digest": hex::encode(MEASUREMENT),
            "policy": {"allow_debug": true}}});
        std::fs::write(&manifest, text.to_string()).expect("write");
        assert!(matches!(
            strict.load(),
            Err(CliError::Usage(m)) if m.contains("snp.policy") && m.contains("allow_debug")
        ));
    }

    /// A one-connection TLS server on 127.0.0.1 presenting `chain_pem` and signing the handshake with
    /// `key` (which need not be the certificate's key). Returns its URL.
    fn tls_server(chain_pem: &str, key: &p256::ecdsa::SigningKey) -> String {
        use p256::pkcs8::EncodePrivateKey;
        use rustls::server::{ClientHello, ResolvesServerCert};
        use rustls::sign::CertifiedKey;
        #[derive(Debug)]
        struct Fixed(Arc<CertifiedKey>);
        impl ResolvesServerCert for Fixed {
            fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
                Some(self.0.clone())
            }
        }
        let chain: Vec<_> = x509_cert::Certificate::load_pem_chain(chain_pem.as_bytes())
            .expect("chain")
            .iter()
            .map(|c| rustls_pki_types::CertificateDer::from(der::Encode::to_der(c).expect("der")))
            .collect();
        let der = key.to_pkcs8_der().expect("pkcs8");
        let signer = http::provider()
            .key_provider
            .load_private_key(rustls_pki_types::PrivateKeyDer::Pkcs8(
                der.as_bytes().to_vec().into(),
            ))
            .expect("key");
        let config = rustls::ServerConfig::builder_with_provider(http::provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Fixed(Arc::new(CertifiedKey::new(chain, signer)))));
        let config = Arc::new(config);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            if let Ok((tcp, _)) = listener.accept() {
                let conn = rustls::ServerConnection::new(config).expect("conn");
                let mut s = rustls::StreamOwned::new(conn, tcp);
                let mut buf = [0u8; 512];
                if std::io::Read::read(&mut s, &mut buf).is_ok() {
                    let _ = std::io::Write::write_all(
                        &mut s,
                        b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
                    );
                }
            }
        });
        format!("https://localhost:{port}")
    }

    /// Issue 12 #4: the API leaf comes only from a completed handshake. A server presenting the
    /// genuine (CA-issued) chain but holding another key fails, where the leaf used to be recorded
    /// before CertificateVerify and used anyway.
    #[test]
    fn api_leaf_needs_a_server_holding_the_key() {
        use x509_cert::builder::Builder;
        use x509_cert::ext::pkix::SubjectAltName;
        use x509_cert::ext::pkix::name::GeneralName;
        let (ca_pem, ca_key) = crate::bootstrap::tests::ca();
        let key = p256::ecdsa::SigningKey::from_slice(&[0x31; 32]).expect("key");
        let mut b = x509_cert::request::RequestBuilder::new("CN=localhost".parse().expect("name"))
            .expect("builder");
        b.add_extension(&SubjectAltName(vec![GeneralName::DnsName(
            der::asn1::Ia5String::new("localhost").expect("dns"),
        )]))
        .expect("san");
        let csr = der::EncodePem::to_pem(
            &b.build::<_, p256::ecdsa::DerSignature>(&key).expect("csr"),
            der::pem::LineEnding::LF,
        )
        .expect("pem");
        let chain = crate::bootstrap::sign_csr(&csr, ca_pem.as_bytes(), ca_key.as_bytes(), 1)
            .expect("sign");
        let dir = tempfile::tempdir().expect("dir");
        let ca_path = dir.path().join("ca.pem");
        std::fs::write(&ca_path, &ca_pem).expect("write");

        // The genuine server: the leaf is returned.
        let leaf = api_leaf_with(&tls_server(&chain, &key), &ca_path, None).expect("genuine");
        assert_eq!(
            crate::pinned::spki_of(&leaf),
            crate::pinned::spki_of(
                &der::Encode::to_der(
                    &x509_cert::Certificate::load_pem_chain(chain.as_bytes()).expect("chain")[0]
                )
                .expect("der")
            )
        );
        // The same chain, another key: no leaf.
        let other = p256::ecdsa::SigningKey::from_slice(&[0x32; 32]).expect("key");
        let e = api_leaf_with(&tls_server(&chain, &other), &ca_path, None).unwrap_err();
        assert!(
            matches!(&e, CliError::Http(HttpError::Io(_) | HttpError::Tls(_))),
            "{e}"
        );
    }

    fn margs_plain(manifest: &Path) -> ExpectationArgs {
        ExpectationArgs {
            manifest: Some(manifest.to_owned()),
            expected_measurement: None,
            expected_mrtd: None,
            tdx_collateral: None,
            min_tee_tcb_svn: None,
            trust_root: None,
            vcek: None,
            cert_chain: None,
            kds_url: None,
            kds_ca: crate::kds::SYSTEM_CA_BUNDLE.into(),
            policy: PolicyArgs::default(),
        }
    }

    #[test]
    fn expectation_needs_a_measurement() {
        let args = ExpectationArgs {
            manifest: None,
            expected_measurement: None,
            expected_mrtd: None,
            trust_root: None,
            tdx_collateral: None,
            min_tee_tcb_svn: None,
            vcek: None,
            cert_chain: None,
            kds_url: None,
            kds_ca: crate::kds::SYSTEM_CA_BUNDLE.into(),
            policy: PolicyArgs::default(),
        };
        assert!(matches!(args.load(), Err(CliError::Usage(_))));
        let args = ExpectationArgs {
            manifest: None,
            expected_measurement: Some("ab".repeat(47)),
            expected_mrtd: None,
            trust_root: None,
            tdx_collateral: None,
            min_tee_tcb_svn: None,
            vcek: None,
            cert_chain: None,
            kds_url: None,
            kds_ca: crate::kds::SYSTEM_CA_BUNDLE.into(),
            policy: PolicyArgs::default(),
        };
        assert!(matches!(args.load(), Err(CliError::Usage(m)) if m.contains("96 hex digits")));
        let args = ExpectationArgs {
            manifest: None,
            expected_measurement: Some("AB".repeat(48)),
            expected_mrtd: None,
            trust_root: None,
            tdx_collateral: None,
            min_tee_tcb_svn: None,
            vcek: None,
            cert_chain: None,
            kds_url: None,
            kds_ca: crate::kds::SYSTEM_CA_BUNDLE.into(),
            policy: PolicyArgs::default(),
        };
        assert_eq!(args.load().unwrap().measurement, Some([0xAB; 48]));
    }
}
