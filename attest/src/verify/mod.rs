//! Verification of SEV-SNP evidence (feature `std`).
//!
//! [`verify_snp_report`] checks, in order, and stops at the first failure:
//! 1. the report's format ([`AttestationReport::validate`]);
//! 2. the certificate chain: ARK (a built-in AMD root, or a root the caller explicitly trusts)
//!    → ASK/ASVK → VCEK/VLEK, each link RSASSA-PSS SHA-384 with matching names; each
//!    certificate valid at the verifier's time ([`Policy::at_time`], else the system clock); and,
//!    with [`Policy::amd_crl`], an AMD CRL signed by the ARK and current that revokes neither the
//!    ASK/ASVK nor the VCEK/VLEK serial;
//! 3. the VCEK against the report: its TCB extensions equal `REPORTED_TCB`, its hwID equals
//!    `CHIP_ID` (VCEK only), and the report's `SIGNING_KEY` names the kind of certificate given;
//! 4. the report signature: ECDSA P-384 over SHA-384 of bytes `[0, 0x2A0)`;
//! 5. the [`Policy`] (see the `policy` module for the AMD 56860 table of every field): guest
//!    policy bits (debug and migration agent off, SMT / single socket as configured), minimum
//!    firmware (ABI) version, VMPL, the per-product minimum TCB for the reported, committed and
//!    launch TCB, the expected measurement (always), and the optional expected `REPORT_DATA`,
//!    host data and guest SVN bound.
//!
//! Success yields a [`VerifiedReport`], which only this module can construct.
//!
//! [`ratls`] applies this to an RA-TLS server certificate (quote extension + key binding).

mod certs;
mod policy;
pub mod ratls;

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use x509_cert::Certificate;

pub use certs::{builtin, builtin_pems, oid};
use policy::check_policy;
pub use policy::{DEFAULT_MIN_ABI, Policy, default_min_tcb};

use crate::snp::report::{
    AttestationReport, FirmwareVersion, Generation, ReportError, SigningKey, TcbVersion,
};

/// Why verification failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum VerifyError {
    /// The report is malformed.
    Report(ReportError),
    /// A certificate (named) does not parse or is inconsistent.
    Certificate(&'static str),
    /// A certificate (named) uses an algorithm other than AMD's.
    UnsupportedAlgorithm(&'static str),
    /// The chain's root is not one of AMD's published ARKs (and no custom root was given).
    UntrustedRoot,
    /// The chain PEM does not hold exactly one intermediate and at most one root.
    ChainShape,
    /// A certificate's issuer is not its parent's subject (the link is named).
    NameChain(&'static str),
    /// A certificate's signature does not verify (the link is named).
    ChainSignature(&'static str),
    /// A required VCEK extension is missing.
    MissingExtension(&'static str),
    /// A VCEK TCB component differs from the report's `REPORTED_TCB`.
    TcbMismatch {
        field: &'static str,
        cert: u8,
        report: u8,
    },
    /// The VCEK hwID differs from the report's `CHIP_ID`.
    ChipIdMismatch,
    /// The report's `SIGNING_KEY` does not match the certificate (VCEK vs VLEK) given.
    SigningKeyMismatch,
    /// The product of the report, the VCEK and the chain disagree.
    ProductMismatch,
    /// The report signature does not verify with the VCEK.
    ReportSignature,
    /// The guest policy allows debugging and the verification policy does not.
    DebugAllowed,
    /// The guest policy allows a migration agent (`MIGRATE_MA`) and the verification policy
    /// does not.
    MigrateMaAllowed,
    /// The guest policy allows SMT and the verification policy requires it off.
    SmtAllowed,
    /// The verification policy requires `SINGLE_SOCKET` and the guest policy does not set it.
    SingleSocketNotRequired,
    /// The guest policy is not the one required ([`Policy::guest_policy`]).
    GuestPolicyMismatch {
        /// The required `POLICY`.
        expected: u64,
        /// The report's `POLICY`.
        reported: u64,
    },
    /// The firmware version (`which`: "current" or "committed") is below the minimum.
    AbiTooOld {
        which: &'static str,
        min: FirmwareVersion,
        got: FirmwareVersion,
    },
    /// A TCB (`tcb`: "reported", "committed" or "launch") is below the minimum in one component
    /// (`field`).
    TcbTooOld {
        tcb: &'static str,
        field: &'static str,
        min: u8,
        got: u8,
    },
    /// The measurement is not the expected one.
    MeasurementMismatch,
    /// `REPORT_DATA` is not the expected one.
    ReportDataMismatch,
    /// `HOST_DATA` is not the expected one.
    HostDataMismatch,
    /// The report was requested from a VMPL above the maximum.
    VmplTooHigh { max: u32, got: u32 },
    /// `GUEST_SVN` is below the minimum.
    GuestSvnTooLow(u32),
    /// A certificate (named) is not valid at the verifier's time `now` (seconds since the Unix
    /// epoch): before its notBefore or after its notAfter.
    CertificateNotValidAt {
        which: &'static str,
        now: u64,
        not_before: u64,
        not_after: u64,
    },
    /// The AMD CRL given is unusable (the reason is named): it does not parse, is not issued or
    /// signed by the chain's ARK.
    Crl(&'static str),
    /// The AMD CRL is not current at `now`: before its thisUpdate or after its nextUpdate.
    CrlNotCurrent {
        now: u64,
        this_update: u64,
        next_update: Option<u64>,
    },
    /// The AMD CRL revokes a certificate of the chain (named: "ASK/ASVK" or "VCEK/VLEK").
    Revoked(&'static str),
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Report(e) => write!(f, "malformed report: {e}"),
            Self::Certificate(w) => write!(f, "bad certificate: {w}"),
            Self::UnsupportedAlgorithm(w) => write!(f, "unsupported algorithm in {w}"),
            Self::UntrustedRoot => {
                f.write_str("the chain's root is not an AMD ARK (give a trust root explicitly)")
            }
            Self::ChainShape => f.write_str("the chain must hold one ASK/ASVK and at most one ARK"),
            Self::NameChain(w) => write!(f, "issuer/subject mismatch in {w}"),
            Self::ChainSignature(w) => write!(f, "signature of {w} does not verify"),
            Self::MissingExtension(w) => write!(f, "VCEK lacks the {w} extension"),
            Self::TcbMismatch {
                field,
                cert,
                report,
            } => {
                write!(
                    f,
                    "VCEK {field} is {cert} but the report's reported TCB has {report}"
                )
            }
            Self::ChipIdMismatch => f.write_str("VCEK hwID differs from the report's chip id"),
            Self::SigningKeyMismatch => {
                f.write_str("report signing key kind does not match the certificate")
            }
            Self::ProductMismatch => {
                f.write_str("report, VCEK and chain are for different products")
            }
            Self::ReportSignature => f.write_str("report signature does not verify with the VCEK"),
            Self::DebugAllowed => f.write_str(
                "guest policy allows debugging (POLICY bit 19 DEBUG = 1, expected 0)",
            ),
            Self::MigrateMaAllowed => f.write_str(
                "guest policy allows a migration agent (POLICY bit 18 MIGRATE_MA = 1, expected 0)",
            ),
            Self::SmtAllowed => {
                f.write_str("guest policy allows SMT (POLICY bit 16 SMT = 1, expected 0)")
            }
            Self::SingleSocketNotRequired => f.write_str(
                "guest policy does not require a single socket (POLICY bit 20 SINGLE_SOCKET = 0, expected 1)",
            ),
            Self::GuestPolicyMismatch { expected, reported } => write!(
                f,
                "guest policy {reported:#x} is not the expected {expected:#x}"
            ),
            Self::AbiTooOld { which, min, got } => write!(
                f,
                "{which} firmware version {got} is below the minimum {min}"
            ),
            Self::TcbTooOld {
                tcb,
                field,
                min,
                got,
            } => {
                write!(
                    f,
                    "{tcb} TCB {field} SVN {got} is below the minimum {min}"
                )
            }
            Self::MeasurementMismatch => f.write_str("measurement differs from the expected one"),
            Self::ReportDataMismatch => f.write_str("report_data differs from the expected one"),
            Self::HostDataMismatch => f.write_str("host_data differs from the expected one"),
            Self::VmplTooHigh { max, got } => write!(
                f,
                "report requested from VMPL {got}, expected VMPL {max} or lower"
            ),
            Self::GuestSvnTooLow(v) => write!(f, "guest SVN {v} is below the minimum"),
            Self::CertificateNotValidAt {
                which,
                now,
                not_before,
                not_after,
            } => write!(
                f,
                "{which} certificate is not valid now (unix time {now}): valid from {not_before} to {not_after}"
            ),
            Self::Crl(why) => write!(f, "AMD CRL: {why}"),
            Self::CrlNotCurrent {
                now,
                this_update,
                next_update,
            } => match next_update {
                Some(n) => write!(
                    f,
                    "AMD CRL is not current (unix time {now}): thisUpdate {this_update}, nextUpdate {n}; fetch a fresh one"
                ),
                None => write!(
                    f,
                    "AMD CRL is not current (unix time {now}): thisUpdate {this_update} is in the future"
                ),
            },
            Self::Revoked(which) => write!(f, "the AMD CRL revokes the {which} certificate"),
        }
    }
}

impl core::error::Error for VerifyError {}

impl From<ReportError> for VerifyError {
    fn from(e: ReportError) -> Self {
        Self::Report(e)
    }
}

/// Where the ARK and the intermediate (ASK or ASVK) come from.
#[derive(Debug, Clone, Copy)]
pub enum ChainSource<'a> {
    /// AMD's ARK and ASK for this product, built in (VCEK-signed reports).
    BuiltIn(Generation),
    /// A PEM bundle as served by AMD's KDS (`cert_chain`: ASK or ASVK, then ARK; the ARK may be
    /// left out). The root must be one of the built-in AMD ARKs.
    AmdPem(&'a [u8]),
    /// AMD certificates given one by one, each PEM or DER (e.g. the entries of an RA-TLS quote's
    /// certificate table): the intermediate (ASK or ASVK) and optionally the ARK, which must be
    /// one of the built-in AMD ARKs. Without an ARK, the built-in ARK that issued the
    /// intermediate is used.
    AmdCerts {
        /// The intermediate (ASK or ASVK).
        intermediate: &'a [u8],
        /// The ARK, if given.
        ark: Option<&'a [u8]>,
    },
    /// A root the caller explicitly trusts (e.g. an emulator's test ARK) and its intermediate,
    /// each PEM or DER. Never used unless the caller asks for it.
    TrustRoot {
        /// The self-signed root.
        ark: &'a [u8],
        /// The intermediate it signed (ASK or ASVK).
        intermediate: &'a [u8],
    },
}

/// The root a verified report chains to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrustAnchor {
    /// AMD's ARK for this product.
    Amd(Generation),
    /// A root the caller supplied explicitly.
    Custom,
}

/// A report that passed [`verify_snp_report`]. Only this module can build one.
#[derive(Debug, Clone)]
pub struct VerifiedReport {
    report: AttestationReport,
    generation: Generation,
    anchor: TrustAnchor,
    signing_key: SigningKey,
    checks: Vec<String>,
}

impl VerifiedReport {
    /// The verified report.
    pub fn report(&self) -> &AttestationReport {
        &self.report
    }
    /// The product whose TCB layout was used.
    pub fn generation(&self) -> Generation {
        self.generation
    }
    /// The root of trust.
    pub fn anchor(&self) -> TrustAnchor {
        self.anchor
    }
    /// VCEK or VLEK.
    pub fn signing_key(&self) -> SigningKey {
        self.signing_key
    }
    /// The measurement (equal to the policy's).
    pub fn measurement(&self) -> &[u8; 48] {
        &self.report.measurement
    }
    /// `REPORT_DATA`.
    pub fn report_data(&self) -> &[u8; 64] {
        &self.report.report_data
    }
    /// `REPORTED_TCB`, decoded.
    pub fn reported_tcb(&self) -> TcbVersion {
        self.report.reported_tcb(self.generation)
    }
    /// One line per check that passed, in order (for a human-readable summary).
    pub fn checks(&self) -> &[String] {
        &self.checks
    }
}

/// The VCEK/VLEK against the report: its TCB extensions equal `REPORTED_TCB` (in `generation`'s
/// layout), and for a VCEK its hwID equals `CHIP_ID` (Turin's hwID is the first 8 bytes). Returns the
/// reported TCB.
fn match_vcek(
    report: &AttestationReport,
    vcek: &Certificate,
    generation: Generation,
    is_vlek: bool,
) -> Result<TcbVersion, VerifyError> {
    let cert_tcb = certs::cert_tcb(vcek, generation)?;
    let rep_tcb = report.reported_tcb(generation);
    for (field, c, r) in [
        ("fmcSPL", cert_tcb.fmc, rep_tcb.fmc),
        ("blSPL", cert_tcb.bootloader, rep_tcb.bootloader),
        ("teeSPL", cert_tcb.tee, rep_tcb.tee),
        ("snpSPL", cert_tcb.snp, rep_tcb.snp),
        ("ucodeSPL", cert_tcb.microcode, rep_tcb.microcode),
    ] {
        if c != r {
            return Err(VerifyError::TcbMismatch {
                field,
                cert: c,
                report: r,
            });
        }
    }
    if !is_vlek {
        let hwid =
            certs::extension(vcek, &oid::HW_ID)?.ok_or(VerifyError::MissingExtension("hwID"))?;
        let (head, tail) = report
            .chip_id
            .split_at_checked(hwid.len())
            .ok_or(VerifyError::ChipIdMismatch)?;
        if hwid.is_empty() || head != hwid || tail.iter().any(|b| *b != 0) {
            return Err(VerifyError::ChipIdMismatch);
        }
    }
    Ok(rep_tcb)
}

/// Whether `vcek_der` (DER or PEM) is the VCEK of the chip and TCB `report` names: the VCEK part of
/// [`verify_snp_report`]'s step 3 (TCB extensions = `REPORTED_TCB`, hwID = `CHIP_ID`), without the
/// chain or the signature. For a VCEK obtained by chip id and TCB (AMD's KDS), before the full
/// verification. The product comes from the report (version 3 and later), else the VCEK's
/// productName, else Milan; it is returned.
pub fn check_vcek_for_report(report: &[u8], vcek_der: &[u8]) -> Result<Generation, VerifyError> {
    let report = AttestationReport::parse(report)?;
    let vcek = certs::load_one(vcek_der, "VCEK")?;
    let from_cert = certs::cert_generation(&vcek)?;
    let generation = match (report.generation(), from_cert) {
        (Some(r), Some(c)) if r != c => return Err(VerifyError::ProductMismatch),
        (Some(g), _) | (None, Some(g)) => g,
        (None, None) => Generation::Milan,
    };
    if certs::extension(&vcek, &oid::CSP_ID)?.is_some() {
        return Err(VerifyError::SigningKeyMismatch);
    }
    match_vcek(&report, &vcek, generation, false)?;
    Ok(generation)
}

/// Verify an SNP attestation report with its VCEK (or VLEK) certificate (DER or PEM).
///
/// The product (which selects the TCB layout) comes from the report's CPUID fields (version 3
/// and later), the VCEK's productName extension and the AMD root; they must agree. If none says
/// (a version-2 report, a custom root and a VCEK without productName), Milan is assumed.
pub fn verify_snp_report(
    report: &[u8],
    vcek_der: &[u8],
    chain: ChainSource<'_>,
    policy: &Policy,
) -> Result<VerifiedReport, VerifyError> {
    use alloc::format;
    let mut checks = Vec::new();
    let report = AttestationReport::parse(report)?;
    checks.push(format!(
        "report format: version {}, ECDSA P-384 SHA-384",
        report.version.get()
    ));

    // Chain: root and intermediate.
    let (ark, inter, anchor) = load_chain(chain)?;
    certs::verify_rsa_link(&ark, &ark, "ARK (self-signed)")?;
    certs::verify_rsa_link(&ark, &inter, "ASK/ASVK")?;
    let vcek = certs::load_one(vcek_der, "VCEK")?;
    certs::verify_rsa_link(&inter, &vcek, "VCEK/VLEK")?;
    let now = policy.now();
    for (c, which) in [(&ark, "ARK"), (&inter, "ASK/ASVK"), (&vcek, "VCEK/VLEK")] {
        certs::check_validity(c, now, which)?;
    }
    checks.push(match anchor {
        TrustAnchor::Amd(g) => format!(
            "certificate chain: AMD {} ARK -> ASK/ASVK -> VCEK/VLEK",
            g.name()
        ),
        TrustAnchor::Custom => {
            String::from("certificate chain: caller-supplied root -> intermediate -> VCEK/VLEK")
        }
    });
    checks.push(format!(
        "ARK, ASK/ASVK and VCEK/VLEK valid at unix time {now}"
    ));
    if let Some(crl) = policy.crl() {
        let revoked = certs::crl_revoked_serials(crl, &ark, now)?;
        for (c, which) in [(&inter, "ASK/ASVK"), (&vcek, "VCEK/VLEK")] {
            if revoked.iter().any(|s| s.as_slice() == certs::serial(c)) {
                return Err(VerifyError::Revoked(which));
            }
        }
        checks.push(format!(
            "AMD CRL signed by the ARK, current; ASK/ASVK and VCEK/VLEK not among its {} revoked serials",
            revoked.len()
        ));
    }

    // Product: the report (v3+), the VCEK's productName and the AMD root must agree.
    let from_report = report.generation();
    let from_cert = certs::cert_generation(&vcek)?;
    let from_chain = match anchor {
        TrustAnchor::Amd(g) => Some(g),
        TrustAnchor::Custom => None,
    };
    let mut generation = None;
    for g in [from_report, from_cert, from_chain].into_iter().flatten() {
        match generation {
            None => generation = Some(g),
            Some(prev) if prev != g => return Err(VerifyError::ProductMismatch),
            Some(_) => {}
        }
    }
    let generation = generation.unwrap_or(Generation::Milan);

    // The certificate kind must be the one the report names.
    let is_vlek = certs::extension(&vcek, &oid::CSP_ID)?.is_some();
    let signing_key = report.signing_key();
    match (signing_key, is_vlek) {
        (SigningKey::Vcek, false) | (SigningKey::Vlek, true) => {}
        _ => return Err(VerifyError::SigningKeyMismatch),
    }

    let rep_tcb = match_vcek(&report, &vcek, generation, is_vlek)?;
    checks.push(format!(
        "VCEK TCB = reported TCB ({} layout): fmc {} bl {} tee {} snp {} ucode {}",
        generation.name(),
        rep_tcb.fmc,
        rep_tcb.bootloader,
        rep_tcb.tee,
        rep_tcb.snp,
        rep_tcb.microcode
    ));
    if !is_vlek {
        checks.push(String::from("VCEK hwID = report chip_id"));
    }

    // The report signature.
    let key = certs::p384_key(&vcek)?;
    let rs = report
        .signature
        .to_be_rs()
        .map_err(|_| VerifyError::ReportSignature)?;
    let sig = p384::ecdsa::Signature::from_slice(&rs).map_err(|_| VerifyError::ReportSignature)?;
    p384::ecdsa::signature::Verifier::verify(&key, report.signed_bytes(), &sig)
        .map_err(|_| VerifyError::ReportSignature)?;
    checks.push(String::from(
        "report signature (ECDSA P-384, SHA-384 over bytes 0..0x2A0)",
    ));

    check_policy(&report, generation, policy, &mut checks)?;

    Ok(VerifiedReport {
        report,
        generation,
        anchor,
        signing_key,
        checks,
    })
}

fn load_chain(
    chain: ChainSource<'_>,
) -> Result<(Certificate, Certificate, TrustAnchor), VerifyError> {
    match chain {
        ChainSource::BuiltIn(g) => {
            let (ark, ask) = builtin_pems(g);
            Ok((
                certs::load_one(ark.as_bytes(), "ARK")?,
                certs::load_one(ask.as_bytes(), "ASK")?,
                TrustAnchor::Amd(g),
            ))
        }
        ChainSource::AmdPem(pem) => {
            let all = certs::load_pem_bundle(pem)?;
            let (roots, inters): (Vec<_>, Vec<_>) =
                all.into_iter().partition(certs::is_self_issued);
            let [inter] =
                <[Certificate; 1]>::try_from(inters).map_err(|_| VerifyError::ChainShape)?;
            if roots.len() > 1 {
                return Err(VerifyError::ChainShape);
            }
            amd_chain(inter, roots.into_iter().next())
        }
        ChainSource::AmdCerts { intermediate, ark } => {
            let inter = certs::load_one(intermediate, "ASK/ASVK")?;
            if certs::is_self_issued(&inter) {
                return Err(VerifyError::ChainShape);
            }
            let ark = ark.map(|a| certs::load_one(a, "ARK")).transpose()?;
            amd_chain(inter, ark)
        }
        ChainSource::TrustRoot { ark, intermediate } => Ok((
            certs::load_one(ark, "trust root")?,
            certs::load_one(intermediate, "intermediate")?,
            TrustAnchor::Custom,
        )),
    }
}

/// An AMD chain from its intermediate and (optionally) its ARK, which must be a built-in one;
/// without an ARK, the built-in ARK whose subject issued the intermediate.
fn amd_chain(
    inter: Certificate,
    ark: Option<Certificate>,
) -> Result<(Certificate, Certificate, TrustAnchor), VerifyError> {
    match ark {
        Some(ark) => {
            let g = certs::builtin_ark_generation(&ark)?.ok_or(VerifyError::UntrustedRoot)?;
            Ok((ark, inter, TrustAnchor::Amd(g)))
        }
        None => {
            for g in [Generation::Milan, Generation::Genoa, Generation::Turin] {
                let ark = certs::load_one(builtin_pems(g).0.as_bytes(), "ARK")?;
                if ark.tbs_certificate().subject() == inter.tbs_certificate().issuer() {
                    return Ok((ark, inter, TrustAnchor::Amd(g)));
                }
            }
            Err(VerifyError::UntrustedRoot)
        }
    }
}

#[cfg(test)]
mod tests;
