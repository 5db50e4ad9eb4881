//! Attesting a KMS: RA-TLS certificates, fresh-nonce `/attestation` reports, and `ckms verify`.
//!
//! What "attested" means here (checks in this order, each reported):
//! 1. the SNP quote parses (report ‖ certificate table, `attest::ratls`);
//! 2. `attest::verify::verify_snp_report`: ARK → ASK → VCEK chain (AMD's built-in roots, or the `--trust-root`
//!    given explicitly, e.g. the emulator's test ARK), VCEK TCB/chip id, the report signature, debug off, and
//!    the **expected measurement** (from `--manifest` or `--expected-measurement`; there is no way to skip it);
//! 3. report_data[0..32] = SHA-256 of the certificate's uncompressed P-256 public key (the key is bound);
//! 4. report_data[32..64] = zeros in a certificate, the verifier's fresh random nonce in `/attestation`
//!    (a replayed or stale report fails).
//!
//! `ckms verify` then also checks the API certificate chain against `--ca-cert` (WebPKI rules, by a normal
//! TLS handshake), and, when the API certificate has no quote, that the RA-TLS port's certificate carries the
//! same public key.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use attest::ratls::{CertKind, parse_snp_quote};
use attest::verify::{ChainSource, Policy, VerifiedReport, verify_snp_report};
use base64ct::{Base64, Encoding};
use der::{Decode, EncodePem, pem::LineEnding};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::cmd::{Ctx, Output};
use crate::error::CliError;
use crate::http::{self, ClientIdentity, HttpClient, HttpError};
use crate::pinned::{CAPTURED, CaptureVerifier, PinnedKeyVerifier, RecordingVerifier, spki_of};

/// RA-TLS SEV-SNP quote extension OID.
const OID_SNP: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap(attest::ratls::OID_SNP_QUOTE);

/// What the verifier expects of the server.
#[derive(Debug, Clone)]
pub struct Expectation {
    /// The SNP launch digest.
    pub measurement: [u8; 48],
    /// An explicitly trusted root (PEM or DER), e.g. `snp-emu`'s test ARK. `None`: AMD's roots only.
    pub trust_root: Option<Vec<u8>>,
}

/// Options shared by `bootstrap start` and `verify`.
#[derive(clap::Args, Debug, Clone)]
pub struct ExpectationArgs {
    /// Image manifest (`image build` output): its `snp.launch_digest` is the expected measurement.
    #[arg(
        long,
        value_name = "JSON",
        required_unless_present = "expected_measurement"
    )]
    pub manifest: Option<PathBuf>,
    /// Expected SNP launch measurement, 96 hex digits.
    #[arg(long, value_name = "HEX", conflicts_with = "manifest")]
    pub expected_measurement: Option<String>,
    /// Trust this ARK (PEM or DER) as the root of the VCEK chain. Needed for `snp-emu`; never implied.
    #[arg(long, value_name = "ARK.pem")]
    pub trust_root: Option<PathBuf>,
}

fn parse_hex<const N: usize>(hex: &str, what: &str) -> Result<[u8; N], CliError> {
    let hex = hex.trim();
    let bad = || CliError::Usage(format!("{what} must be {} hex digits", 2 * N));
    if hex.len() != 2 * N {
        return Err(bad());
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        let pair = hex.get(2 * i..2 * i + 2).ok_or_else(bad)?;
        *o = u8::from_str_radix(pair, 16).map_err(|_| bad())?;
    }
    Ok(out)
}

/// Lower-case hex.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl ExpectationArgs {
    /// Reads the manifest or the hex value, and the trust root.
    pub fn load(&self) -> Result<Expectation, CliError> {
        let measurement = match (&self.manifest, &self.expected_measurement) {
            (_, Some(hex)) => parse_hex::<48>(hex, "--expected-measurement")?,
            (Some(path), None) => {
                let text = crate::error::read_file(path)?;
                let v: Value = serde_json::from_slice(&text)
                    .map_err(|e| CliError::Usage(format!("{}: not JSON: {e}", path.display())))?;
                let digest = v
                    .pointer("/snp/launch_digest")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        CliError::Usage(format!(
                            "{}: no snp.launch_digest in the manifest",
                            path.display()
                        ))
                    })?;
                parse_hex::<48>(digest, "manifest snp.launch_digest")?
            }
            (None, None) => {
                return Err(CliError::Usage(
                    "an expected measurement is required: --manifest FILE or --expected-measurement HEX".into(),
                ));
            }
        };
        let trust_root = match &self.trust_root {
            Some(p) => Some(crate::error::read_file(p)?),
            None => None,
        };
        Ok(Expectation {
            measurement,
            trust_root,
        })
    }
}

/// Why a server failed attestation; the message names the failed check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestationFailure(pub String);

impl fmt::Display for AttestationFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<AttestationFailure> for CliError {
    fn from(e: AttestationFailure) -> Self {
        CliError::Negative(format!("attestation failed: {e}"))
    }
}

fn fail(what: impl Into<String>) -> AttestationFailure {
    AttestationFailure(what.into())
}

fn pem_of(der_bytes: &[u8]) -> Result<String, AttestationFailure> {
    let cert = x509_cert::Certificate::from_der(der_bytes)
        .map_err(|_| fail("a certificate of the quote does not parse"))?;
    cert.to_pem(LineEnding::LF)
        .map_err(|_| fail("PEM encoding"))
}

/// Verifies an SNP quote whose report must carry SHA-256(`public_key`) ‖ `nonce`. `context` names the source
/// in messages ("bootstrap certificate", "/attestation").
pub fn verify_quote(
    quote: &[u8],
    public_key: &[u8; 65],
    nonce: &[u8; 32],
    exp: &Expectation,
    context: &str,
) -> Result<VerifiedReport, AttestationFailure> {
    let q = parse_snp_quote(quote)
        .map_err(|e| fail(format!("{context}: quote does not parse: {e}")))?;
    let report = q.report.to_bytes();
    let vcek = q
        .cert(CertKind::Vcek)
        .or_else(|| q.cert(CertKind::Vlek))
        .ok_or_else(|| fail(format!("{context}: the quote has no VCEK/VLEK certificate")))?;
    let ask = q.cert(CertKind::Ask);
    let mut amd_pem = String::new();
    let chain = match (&exp.trust_root, ask) {
        (Some(root), Some(ask)) => ChainSource::TrustRoot {
            ark: root,
            intermediate: ask,
        },
        (Some(_), None) => {
            return Err(fail(format!(
                "{context}: the quote has no ASK to chain to the trust root"
            )));
        }
        (None, Some(ask)) => {
            amd_pem.push_str(&pem_of(ask)?);
            if let Some(ark) = q.cert(CertKind::Ark) {
                amd_pem.push_str(&pem_of(ark)?);
            }
            ChainSource::AmdPem(amd_pem.as_bytes())
        }
        (None, None) => match q.report.generation() {
            Some(g) => ChainSource::BuiltIn(g),
            None => {
                return Err(fail(format!(
                    "{context}: the quote has no ASK and the report names no product"
                )));
            }
        },
    };
    let policy = Policy::new(exp.measurement);
    let verified = verify_snp_report(&report, vcek, chain, &policy).map_err(|e| match e {
        attest::verify::VerifyError::MeasurementMismatch => fail(format!(
            "{context}: measurement differs from the expected one (expected {}, server reports {})",
            to_hex(&exp.measurement),
            to_hex(&q.report.measurement),
        )),
        attest::verify::VerifyError::UntrustedRoot => fail(format!(
            "{context}: the VCEK chain does not end at an AMD root (for snp-emu pass its ARK with --trust-root)"
        )),
        other => fail(format!("{context}: {other}")),
    })?;
    let rd = verified.report_data();
    let key_hash: [u8; 32] = Sha256::digest(public_key).into();
    if rd.get(..32) != Some(&key_hash[..]) {
        return Err(fail(format!(
            "{context}: report_data does not bind the server's TLS public key (SHA-256 of the key is not in report_data)"
        )));
    }
    if rd.get(32..) != Some(&nonce[..]) {
        return Err(fail(if nonce.iter().all(|b| *b == 0) {
            format!("{context}: report_data[32..64] is not zero as a certificate's must be")
        } else {
            format!(
                "{context}: report_data does not carry this request's nonce (stale or replayed report)"
            )
        }));
    }
    Ok(verified)
}

/// The P-256 public key (uncompressed SEC1) of a certificate.
pub fn p256_public_key(cert_der: &[u8]) -> Result<[u8; 65], AttestationFailure> {
    let cert = x509_cert::Certificate::from_der(cert_der)
        .map_err(|_| fail("server certificate does not parse"))?;
    let bits = cert
        .tbs_certificate()
        .subject_public_key_info()
        .subject_public_key
        .raw_bytes();
    bits.try_into()
        .map_err(|_| fail("server key is not an uncompressed P-256 public key"))
}

/// The RA-TLS quote carried by a certificate.
pub fn quote_of(cert_der: &[u8]) -> Result<Option<Vec<u8>>, AttestationFailure> {
    let cert = x509_cert::Certificate::from_der(cert_der)
        .map_err(|_| fail("server certificate does not parse"))?;
    Ok(cert
        .tbs_certificate()
        .extensions()
        .and_then(|exts| exts.iter().find(|e| e.extn_id == OID_SNP))
        .map(|e| e.extn_value.as_bytes().to_vec()))
}

/// An RA-TLS certificate that passed [`attest_certificate`].
#[derive(Debug, Clone)]
pub struct AttestedKey {
    /// DER SubjectPublicKeyInfo (to pin).
    pub spki_der: Vec<u8>,
    /// Uncompressed P-256 public key.
    pub public_key: [u8; 65],
    /// The verified report of the certificate.
    pub report: VerifiedReport,
}

/// Attests an RA-TLS certificate: its quote verifies and binds its key (zero nonce).
pub fn attest_certificate(
    cert_der: &[u8],
    exp: &Expectation,
    context: &str,
) -> Result<AttestedKey, AttestationFailure> {
    let quote = quote_of(cert_der)?.ok_or_else(|| {
        fail(format!(
            "{context}: the certificate carries no RA-TLS quote (not an attested server)"
        ))
    })?;
    let public_key = p256_public_key(cert_der)?;
    let report = verify_quote(&quote, &public_key, &[0u8; 32], exp, context)?;
    let spki_der = spki_of(cert_der).ok_or_else(|| fail("server certificate does not parse"))?;
    Ok(AttestedKey {
        spki_der,
        public_key,
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

/// `GET /attestation?nonce=…` over `client`, verified against `public_key` and `nonce`.
pub fn fresh_attestation(
    client: &mut HttpClient,
    public_key: &[u8; 65],
    nonce: &[u8; 32],
    exp: &Expectation,
) -> Result<VerifiedReport, CliError> {
    let resp = client.get(&format!("/attestation?nonce={}", to_hex(nonce)))?;
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
    Ok(verify_quote(
        &quote,
        public_key,
        nonce,
        exp,
        "/attestation",
    )?)
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
API certificate, or on the RA-TLS port with the same public key), and a fresh-nonce /attestation report.\n\n\
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
    rep.pass("expected measurement", to_hex(&exp.measurement));
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
    let api_key = p256_public_key(&leaf).map_err(|e| rep.fail("API certificate key", e.0))?;

    // 2. The quote: in the API certificate, or on the RA-TLS port with the same key.
    let quote = quote_of(&leaf).map_err(|e| rep.fail("API certificate", e.0))?;
    let (attested_url, attested) = match quote {
        Some(_) => {
            let a = attest_certificate(&leaf, exp, "API certificate quote")
                .map_err(|e| rep.fail("quote in the API certificate", e.0))?;
            rep.pass("quote in the API certificate", quote_summary(&a.report));
            (url.to_owned(), a)
        }
        None => {
            let ra = args.ra_tls_url.as_deref().ok_or_else(|| {
                rep.fail(
                    "quote",
                    "the API certificate carries no quote: give --ra-tls-url for the RA-TLS port",
                )
            })?;
            let cert = capture_certificate(ra)
                .map_err(|e| rep.fail("RA-TLS certificate", e.to_string()))?;
            let a = attest_certificate(&cert, exp, "RA-TLS certificate quote")
                .map_err(|e| rep.fail("quote on the RA-TLS port", e.0))?;
            rep.pass("quote on the RA-TLS port", quote_summary(&a.report));
            if a.public_key != api_key {
                return Err(rep.fail(
                    "same key on both ports",
                    "the RA-TLS certificate and the API certificate carry different public keys",
                ));
            }
            rep.pass(
                "same key on both ports",
                format!("SHA-256 of the key {}", to_hex(&Sha256::digest(api_key))),
            );
            (ra.to_owned(), a)
        }
    };

    // 3. A fresh report with our nonce, over a connection pinned to the attested key.
    let id = identity(ctx).map_err(|e| rep.fail("fresh attestation", e.to_string()))?;
    let mut client = pinned_client(&attested_url, &attested.spki_der, id)
        .map_err(|e| rep.fail("fresh attestation", e.to_string()))?;
    let nonce = fresh_nonce().map_err(|e| rep.fail("fresh attestation", e.to_string()))?;
    let fresh = fresh_attestation(&mut client, &attested.public_key, &nonce, exp)
        .map_err(|e| rep.fail("fresh attestation", e.to_string()))?;
    rep.pass(
        "fresh attestation",
        format!(
            "nonce {} answered; {}",
            to_hex(&nonce),
            quote_summary(&fresh)
        ),
    );
    Ok(())
}

fn quote_summary(r: &VerifiedReport) -> String {
    let anchor = match r.anchor() {
        attest::verify::TrustAnchor::Amd(g) => format!("AMD {} root", g.name()),
        attest::verify::TrustAnchor::Custom => "the given --trust-root".into(),
    };
    format!(
        "signed by a VCEK chaining to {anchor}, measurement {}, key bound",
        to_hex(r.measurement())
    )
}

/// Connects with CA verification and returns the server's leaf certificate.
fn api_leaf(ctx: &Ctx, url: &str, ca: &Path) -> Result<Vec<u8>, CliError> {
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
    let recorder = Arc::new(RecordingVerifier::new(webpki));
    let tls = http::client_config_with_verifier(recorder.clone(), identity(ctx)?)?;
    let mut client = HttpClient::new(url, tls)?;
    // Any answer will do (even 401 without a client certificate): the handshake verified the chain.
    let result = client.get("/version");
    match recorder.take() {
        Some(leaf) => Ok(leaf),
        None => Err(result.err().map_or_else(
            || CliError::Response("no server certificate".into()),
            CliError::from,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use attest::ratls::{CertEntry, encode_snp_quote};
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
            measurement: MEASUREMENT,
            trust_root: Some(psp.chain().ark_der.clone()),
        }
    }

    const KEY: [u8; 65] = [4; 65];

    #[test]
    fn genuine_quote_verifies_with_the_explicit_root() {
        let p = psp();
        let nonce = [9; 32];
        let v = verify_quote(&quote(&p, &KEY, &nonce), &KEY, &nonce, &expect(&p), "t")
            .expect("verifies");
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
            measurement: [0; 48],
            ..exp.clone()
        };
        let e = verify_quote(&q, &KEY, &nonce, &wrong, "t").unwrap_err();
        assert!(
            e.0.contains("measurement differs from the expected one"),
            "{e}"
        );
        let no_root = Expectation {
            trust_root: None,
            ..exp.clone()
        };
        let e = verify_quote(&q, &KEY, &nonce, &no_root, "t").unwrap_err();
        assert!(e.0.contains("does not end at an AMD root"), "{e}");
        let e = verify_quote(&q, &[5; 65], &nonce, &exp, "t").unwrap_err();
        assert!(
            e.0.contains("does not bind the server's TLS public key"),
            "{e}"
        );
        let e = verify_quote(&q, &KEY, &[8; 32], &exp, "t").unwrap_err();
        assert!(e.0.contains("stale or replayed"), "{e}");
        let e = verify_quote(&q, &KEY, &[0; 32], &exp, "t").unwrap_err();
        assert!(e.0.contains("is not zero"), "{e}");
        // Any flipped bit in the signed part or the signature fails.
        for at in [0x50, 0x90, 0x2A0, 0x2A8] {
            let mut bad = q.clone();
            bad[at] ^= 1;
            assert!(
                verify_quote(&bad, &KEY, &nonce, &exp, "t").is_err(),
                "flip at {at:#x}"
            );
        }
        let e = verify_quote(&q[..100], &KEY, &nonce, &exp, "t").unwrap_err();
        assert!(e.0.contains("quote does not parse"), "{e}");
    }

    #[test]
    fn expectation_needs_a_measurement() {
        let args = ExpectationArgs {
            manifest: None,
            expected_measurement: None,
            trust_root: None,
        };
        assert!(args.load().is_err());
        let args = ExpectationArgs {
            manifest: None,
            expected_measurement: Some("ab".repeat(47)),
            trust_root: None,
        };
        assert!(args.load().is_err());
        let args = ExpectationArgs {
            manifest: None,
            expected_measurement: Some("AB".repeat(48)),
            trust_root: None,
        };
        assert_eq!(args.load().unwrap().measurement, [0xAB; 48]);
    }
}
