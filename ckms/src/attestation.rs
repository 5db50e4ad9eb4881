//! `ckms attestation`: compute the SEV-SNP launch measurement a user should expect from an image,
//! and verify an attestation report against it. Both run locally (no KMS connection).
//!
//! - `measure`: the launch digest of firmware + kernel + initrd + command line + vCPUs, computed
//!   by `attest::measure::snp` (the algorithm of `sev-snp-measure`).
//! - `verify-report`: `attest::verify::verify_snp_report` with a chain from AMD (built in per
//!   product, or a KDS `cert_chain` PEM) or, only when asked with `--trust-root`, a root the
//!   user supplies (e.g. the `snp-emu` test ARK). The expected measurement is always required.

use std::path::{Path, PathBuf};

use attest::{
    measure::snp::{SnpLaunch, VcpuType, VmmType, firmware_digest, launch_digest},
    ratls::{CertKind, parse_snp_quote},
    snp::{AttestationReport, Generation, report::REPORT_SIZE},
    verify::{ChainSource, Policy, TrustAnchor, VerifyError, verify_snp_report},
};
use clap::{Args, Subcommand};
use der::Encode;
use serde_json::json;
use sha2::{Digest, Sha256, Sha384};
use x509_cert::Certificate;

use crate::cmd::Output;
use crate::error::{CliError, read_file};

/// `ckms attestation ...`
#[derive(Subcommand, Debug)]
pub enum AttestationCommand {
    /// Print the SEV-SNP launch digest of an image (what MEASUREMENT must be).
    #[command(
        long_about = "Compute the SEV-SNP launch digest (MEASUREMENT) of a direct-boot launch.\n\n\
Example:\n  ckms attestation measure --firmware OVMF.fd --kernel kms.efi --cmdline 'ckms.attestation=snp' \\\n      --vcpus 2 --vcpu-type EPYC-v4"
    )]
    Measure(MeasureArgs),
    /// Verify an SEV-SNP attestation report: chain, signature, TCB, chip id, policy, measurement.
    #[command(long_about = "Verify an SEV-SNP attestation report.\n\n\
Checks, in order: report format; the chain ARK -> ASK -> VCEK (AMD's built-in roots, or --trust-root), \
each certificate valid now, and none revoked by --amd-crl if given; the VCEK's TCB and hwID against the \
report; the report signature; the guest policy (DEBUG off unless --allow-debug, MIGRATE_MA off, SMT off \
with --forbid-smt, SINGLE_SOCKET with --require-single-socket); firmware current and committed >= \
--min-abi (1.51); VMPL 0; reported, committed and launch TCB >= the product's floor (--min-tcb); \
the expected measurement; the expected report_data. Exits non-zero naming the first check that fails \
with the expected and the actual value.\n\n\
Examples:\n  ckms attestation verify-report --report report.bin --vcek vcek.der --product milan \\\n      --expected-measurement <96 hex digits>\n  \
ckms attestation verify-report --report quote.bin --chain cert_chain --trust-root ark.pem \\\n      --expected-measurement <hex> --report-data <128 hex digits>")]
    VerifyReport(VerifyArgs),
}

/// Inputs of a launch.
#[derive(Args, Debug)]
pub struct MeasureArgs {
    /// OVMF image, or the AmdSev 4 KiB suffix descriptor.
    #[arg(long, value_name = "FILE")]
    pub firmware: PathBuf,
    /// Kernel (as given to QEMU -kernel).
    #[arg(long, value_name = "FILE")]
    pub kernel: PathBuf,
    /// Initrd (none if absent).
    #[arg(long, value_name = "FILE")]
    pub initrd: Option<PathBuf>,
    /// Kernel command line.
    #[arg(long)]
    pub cmdline: String,
    /// Number of vCPUs.
    #[arg(long, default_value_t = 1)]
    pub vcpus: u32,
    /// vCPU type as sev-snp-measure names it (EPYC, EPYC-v1..v4, EPYC-Rome, EPYC-Milan, EPYC-Genoa, ...).
    #[arg(long, default_value = "EPYC-v4")]
    pub vcpu_type: String,
    /// SEV_FEATURES of the VMSAs (hex with 0x, or decimal).
    #[arg(long, default_value = "0x1")]
    pub guest_features: String,
    /// Hypervisor: qemu, ec2 or gce.
    #[arg(long, default_value = "qemu")]
    pub vmm: String,
}

/// What to verify and against what.
#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The report: 0x4A0 bytes binary, hex text, or an SNP quote (report + certificate table, the
    /// RA-TLS encoding) that carries the VCEK; or a TDX DCAP quote v4 (binary), verified against
    /// --trust-root or Intel's root with --tdx-collateral, its MRTD against --expected-measurement.
    #[arg(long, value_name = "FILE")]
    pub report: PathBuf,
    /// The VCEK certificate (DER or PEM); optional when the report file is a quote with a VCEK, or with
    /// --kds-url.
    #[arg(long, value_name = "FILE")]
    pub vcek: Option<PathBuf>,
    /// Without --vcek and a VCEK in the quote: fetch it from AMD's KDS at this base URL (by the report's
    /// product, chip id and reported TCB). Without a value: <https://kdsintf.amd.com>.
    #[arg(long, value_name = "URL", num_args = 0..=1, default_missing_value = crate::kds::DEFAULT_KDS_URL)]
    pub kds_url: Option<String>,
    /// CA certificates (PEM) that verify the KDS's HTTPS server.
    #[arg(long, value_name = "PEM", default_value = crate::kds::SYSTEM_CA_BUNDLE, requires = "kds_url")]
    pub kds_ca: PathBuf,
    /// AMD KDS `cert_chain` PEM (ASK then ARK); with --trust-root, its first certificate is the ASK.
    #[arg(long, value_name = "PEM", conflicts_with = "product")]
    pub chain: Option<PathBuf>,
    /// Use AMD's built-in ARK and ASK of this product: milan, genoa or turin.
    #[arg(long)]
    pub product: Option<String>,
    /// Expected launch measurement (96 hex digits; the MRTD for a TDX quote). Always required.
    #[arg(long, value_name = "HEX")]
    pub expected_measurement: String,
    /// Expected report_data (128 hex digits).
    #[arg(long, value_name = "HEX")]
    pub report_data: Option<String>,
    /// Accept a guest whose policy allows debugging (its memory is readable by the host).
    #[arg(long)]
    pub allow_debug: bool,
    /// Trust this root (PEM or DER) instead of AMD's, e.g. the snp-emu test ARK. Never implied.
    #[arg(long, value_name = "ARK.pem", conflicts_with = "product")]
    pub trust_root: Option<PathBuf>,
    /// Policy: minimum TCB and firmware, SMT, single socket, AMD CRL.
    #[command(flatten)]
    pub policy: crate::verify::PolicyArgs,
    /// TDX: require RTMR N (0..=3) to be HEX (repeatable), e.g. `2:<96 hex digits>`.
    #[arg(long, value_name = "N:HEX")]
    pub expected_rtmr: Vec<String>,
    /// TDX: Intel PCS collateral JSON (verification against Intel's root, without --trust-root).
    #[arg(long, value_name = "JSON")]
    pub tdx_collateral: Option<PathBuf>,
    /// TDX: minimum TEE_TCB_SVN (32 hex digits).
    #[arg(long, value_name = "HEX")]
    pub min_tee_tcb_svn: Option<String>,
}

/// Runs an attestation subcommand.
pub fn run(command: AttestationCommand) -> Result<Output, CliError> {
    match command {
        AttestationCommand::Measure(a) => measure(&a),
        AttestationCommand::VerifyReport(a) => verify_report(&a),
    }
}

fn parse_u64(s: &str) -> Result<u64, CliError> {
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse(),
    };
    r.map_err(|_| CliError::Usage(format!("not a number: `{s}`")))
}

/// Exactly `N` bytes of hex (either case, optional `0x`), e.g. a measurement; `what` names the argument.
pub(crate) fn parse_hex<const N: usize>(s: &str, what: &str) -> Result<[u8; N], CliError> {
    let mut out = [0u8; N];
    let t = s.trim();
    let t = t.strip_prefix("0x").unwrap_or(t);
    hex::decode_to_slice(t, &mut out)
        .map_err(|_| CliError::Usage(format!("{what}: expected {} hex digits", 2 * N)))?;
    Ok(out)
}

/// `ckms attestation measure`.
pub fn measure(a: &MeasureArgs) -> Result<Output, CliError> {
    let firmware = read_file(&a.firmware)?;
    let kernel = read_file(&a.kernel)?;
    let initrd = match &a.initrd {
        Some(p) => read_file(p)?,
        None => Vec::new(),
    };
    let vcpu_type: VcpuType = a
        .vcpu_type
        .parse()
        .map_err(|_| CliError::Usage(format!("unknown vCPU type `{}`", a.vcpu_type)))?;
    let vmm: VmmType = a
        .vmm
        .parse()
        .map_err(|_| CliError::Usage(format!("unknown VMM `{}` (qemu, ec2, gce)", a.vmm)))?;
    let guest_features = parse_u64(&a.guest_features)?;
    let launch = SnpLaunch {
        firmware: &firmware,
        kernel: &kernel,
        initrd: &initrd,
        cmdline: &a.cmdline,
        vcpus: a.vcpus,
        vcpu_type,
        guest_features,
        vmm,
    };
    let digest =
        launch_digest(&launch).map_err(|e| CliError::Usage(format!("cannot measure: {e}")))?;
    let ovmf =
        firmware_digest(&firmware).map_err(|e| CliError::Usage(format!("cannot measure: {e}")))?;
    let mut cmdline_nul = a.cmdline.as_bytes().to_vec();
    cmdline_nul.push(0);
    let digest_hex = hex::encode(digest);
    Ok(Output::new(
        digest_hex.clone(),
        json!({
            "launch_digest": digest_hex,
            "firmware": {"path": a.firmware, "sha256": hex::encode(Sha256::digest(&firmware)),
                         "sha384": hex::encode(Sha384::digest(&firmware)), "ovmf_hash": hex::encode(ovmf)},
            "kernel": {"path": a.kernel, "sha256": hex::encode(Sha256::digest(&kernel))},
            "initrd": {"path": a.initrd, "sha256": hex::encode(Sha256::digest(&initrd))},
            "cmdline": {"value": a.cmdline, "sha256_with_nul": hex::encode(Sha256::digest(&cmdline_nul))},
            "vcpus": a.vcpus,
            "vcpu_type": a.vcpu_type,
            "guest_features": format!("{guest_features:#x}"),
            "vmm": vmm.to_string(),
        }),
    ))
}

/// The report bytes and, for a quote, its certificate entries' VCEK.
fn load_report(path: &Path) -> Result<(Vec<u8>, Option<Vec<u8>>), CliError> {
    let raw = read_file(path)?;
    let bytes = if raw.len() >= REPORT_SIZE
        && !raw
            .iter()
            .all(|b| b.is_ascii_hexdigit() || b.is_ascii_whitespace())
    {
        raw
    } else {
        let text: String = String::from_utf8_lossy(&raw)
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        hex::decode(text).map_err(|_| {
            CliError::Usage(format!(
                "{}: neither a binary report nor hex text",
                path.display()
            ))
        })?
    };
    if bytes.len() == REPORT_SIZE {
        return Ok((bytes, None));
    }
    let quote = parse_snp_quote(&bytes).map_err(|e| {
        CliError::Negative(format!(
            "{}: {} bytes is not a report (0x4A0 bytes) and not an SNP quote: {e}",
            path.display(),
            bytes.len()
        ))
    })?;
    let vcek = quote.cert(CertKind::Vcek).map(<[u8]>::to_vec);
    let report = bytes
        .get(..REPORT_SIZE)
        .map(<[u8]>::to_vec)
        .unwrap_or_default();
    Ok((report, vcek))
}

/// The certificates of a PEM bundle, in order, each as DER.
fn pem_chain(pem: &[u8], what: &str) -> Result<Vec<Vec<u8>>, CliError> {
    let bad = || CliError::Usage(format!("{what}: not a PEM certificate chain"));
    Certificate::load_pem_chain(pem.trim_ascii())
        .map_err(|_| bad())?
        .iter()
        .map(|c| c.to_der().map_err(|_| bad()))
        .collect()
}

/// One certificate, PEM or DER, as DER.
fn one_cert(bytes: &[u8], what: &str) -> Result<Vec<u8>, CliError> {
    if bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
        let mut all = pem_chain(bytes, what)?;
        match (all.pop(), all.is_empty()) {
            (Some(one), true) => Ok(one),
            _ => Err(CliError::Usage(format!("{what}: expected one certificate"))),
        }
    } else {
        Ok(bytes.to_vec())
    }
}

/// `ckms attestation verify-report` of a TDX quote.
fn verify_tdx_report(a: &VerifyArgs, quote: &[u8]) -> Result<Output, CliError> {
    use attest::tdx::evidence::{TdxRoots, verify_tdx_quote_with};
    use attest::tdx::policy::TdxPolicy;
    let mr_td: [u8; 48] = parse_hex(&a.expected_measurement, "--expected-measurement")?;
    let mut policy = TdxPolicy::new(mr_td).allow_debug(a.allow_debug);
    for r in &a.expected_rtmr {
        let (i, h) = r
            .split_once(':')
            .and_then(|(i, h)| Some((i.parse::<usize>().ok().filter(|i| *i < 4)?, h)))
            .ok_or_else(|| {
                CliError::Usage(format!("--expected-rtmr `{r}`: expected N:HEX, N in 0..=3"))
            })?;
        policy = policy.rtmr(i, parse_hex::<48>(h, "--expected-rtmr")?);
    }
    if let Some(rd) = &a.report_data {
        policy = policy.report_data(parse_hex::<64>(rd, "--report-data")?);
    }
    if let Some(s) = &a.min_tee_tcb_svn {
        policy = policy.min_tee_tcb_svn(parse_hex::<16>(s, "--min-tee-tcb-svn")?);
    }
    let root;
    let collateral;
    let roots = match (&a.trust_root, &a.tdx_collateral) {
        (Some(p), _) => {
            root = read_file(p)?;
            TdxRoots::TrustRoot(&root)
        }
        (None, Some(p)) => {
            collateral = read_file(p)?;
            TdxRoots::Intel {
                collateral_json: &collateral,
                now_unix: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
            }
        }
        (None, None) => {
            return Err(CliError::Usage(
                "a TDX quote is verified against --trust-root (e.g. tdx-emu's root.pem) or Intel's root with --tdx-collateral FILE".into(),
            ));
        }
    };
    let v = verify_tdx_quote_with(quote, roots, &policy)
        .map_err(|e| CliError::Negative(format!("TDX quote verification failed: {e}")))?;
    let b = v.body();
    Ok(Output::new(
        format!("TDX quote verified\n  {}", crate::tdx::summary_unbound(&v)),
        json!({
            "verified": true,
            "platform": "tdx",
            "mrtd": hex::encode(b.mr_td),
            "rtmr": b.rtmr.iter().map(hex::encode).collect::<Vec<_>>(),
            "report_data": hex::encode(b.report_data),
            "td_attributes": format!("{:#x}", u64::from_le_bytes(b.td_attributes)),
            "tee_tcb_svn": hex::encode(b.tee_tcb_svn),
        }),
    ))
}

/// `ckms attestation verify-report`.
pub fn verify_report(a: &VerifyArgs) -> Result<Output, CliError> {
    let raw = read_file(&a.report)?;
    if crate::tdx::is_tdx_quote(&raw) {
        return verify_tdx_report(a, &raw);
    }
    let (report, quote_vcek) = load_report(&a.report)?;
    let vcek = match (&a.vcek, quote_vcek) {
        (Some(p), _) => read_file(p)?,
        (None, Some(v)) => v,
        (None, None) if a.kds_url.is_some() => {
            let url = a.kds_url.as_deref().unwrap_or(crate::kds::DEFAULT_KDS_URL);
            crate::kds::Kds::new(url, crate::http::load_certs(&a.kds_ca)?)?
                .vcek_for_report(&report)?
        }
        (None, None) => {
            return Err(CliError::Usage(
                "the VCEK certificate is needed: --vcek FILE (from AMD KDS or `snp-emu export-chain`) or --kds-url".into(),
            ));
        }
    };
    let measurement: [u8; 48] = parse_hex(&a.expected_measurement, "--expected-measurement")?;
    let mut policy = a
        .policy
        .load()?
        .apply(Policy::new(measurement).allow_debug(a.allow_debug));
    if let Some(rd) = &a.report_data {
        policy = policy.report_data(parse_hex::<64>(rd, "--report-data")?);
    }

    let chain_pem = match &a.chain {
        Some(p) => Some(read_file(p)?),
        None => None,
    };
    let trust_root = match &a.trust_root {
        Some(p) => Some(read_file(p)?),
        None => None,
    };
    let intermediate: Vec<u8>;
    let source = match (&trust_root, &chain_pem, &a.product) {
        (Some(root), Some(chain), _) => {
            let mut certs = pem_chain(chain, "--chain")?.into_iter();
            let Some(first) = certs.next() else {
                return Err(CliError::Usage(
                    "--chain: no PEM certificate in the file".into(),
                ));
            };
            if let Some(ark) = certs.next()
                && ark != one_cert(root, "--trust-root")?
            {
                return Err(CliError::Negative(
                    "verification failed: the chain's ARK is not the --trust-root certificate"
                        .into(),
                ));
            }
            intermediate = first;
            ChainSource::TrustRoot {
                ark: root,
                intermediate: &intermediate,
            }
        }
        (Some(_), None, _) => {
            return Err(CliError::Usage(
                "--trust-root needs --chain with the intermediate (ASK) certificate".into(),
            ));
        }
        (None, Some(chain), _) => ChainSource::AmdPem(chain),
        (None, None, Some(p)) => ChainSource::BuiltIn(p.parse::<Generation>().map_err(|()| {
            CliError::Usage(format!("unknown product `{p}` (milan, genoa, turin)"))
        })?),
        (None, None, None) => {
            // The product from the report's CPUID fields (version 3 and later).
            let g = AttestationReport::parse(&report)
                .ok()
                .and_then(|r| r.generation())
                .ok_or_else(|| {
                    CliError::Usage(
                        "the product is not in the report: give --product, --chain or --trust-root"
                            .into(),
                    )
                })?;
            ChainSource::BuiltIn(g)
        }
    };

    match verify_snp_report(&report, &vcek, source, &policy) {
        Ok(v) => {
            let r = v.report();
            let anchor = match v.anchor() {
                TrustAnchor::Amd(g) => format!("AMD {} ARK", g.name()),
                TrustAnchor::Custom => "caller-supplied root (--trust-root)".to_string(),
            };
            let tcb = v.reported_tcb();
            let mut human = String::from("attestation report verified\n");
            for c in v.checks() {
                human.push_str("  ok  ");
                human.push_str(c);
                human.push('\n');
            }
            human.push_str(&format!("  root of trust: {anchor}\n"));
            human.push_str(&format!(
                "  measurement:   {}\n",
                hex::encode(v.measurement())
            ));
            human.push_str(&format!(
                "  report_data:   {}\n",
                hex::encode(v.report_data())
            ));
            human.push_str(&format!(
                "  policy:        {:#x}, VMPL {}",
                r.policy.get(),
                r.vmpl.get()
            ));
            Ok(Output::new(
                human,
                json!({
                    "verified": true,
                    "checks": v.checks(),
                    "root_of_trust": anchor,
                    "product": v.generation().name(),
                    "measurement": hex::encode(v.measurement()),
                    "report_data": hex::encode(v.report_data()),
                    "policy": format!("{:#x}", r.policy.get()),
                    "vmpl": r.vmpl.get(),
                    "chip_id": hex::encode(r.chip_id),
                    "reported_tcb": {"fmc": tcb.fmc, "bootloader": tcb.bootloader, "tee": tcb.tee,
                                     "snp": tcb.snp, "microcode": tcb.microcode},
                }),
            ))
        }
        Err(e) => Err(CliError::Negative(format!(
            "attestation report verification failed: {}",
            describe(&e)
        ))),
    }
}

fn describe(e: &VerifyError) -> String {
    match e {
        VerifyError::UntrustedRoot => {
            format!("{e}; a test root such as snp-emu's is accepted only with --trust-root")
        }
        VerifyError::TcbTooOld { .. } | VerifyError::AbiTooOld { .. } => {
            format!("{e} (change the floor with --min-tcb / --min-abi)")
        }
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_chains_are_split() {
        use der::EncodePem;
        let chain = read_file(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/cert_chain_milan"
        )))
        .unwrap();
        let certs = pem_chain(&chain, "x").unwrap();
        assert_eq!(certs.len(), 2);
        // The second one (the ARK) alone, as PEM or DER, is the same certificate.
        let ark_pem = <Certificate as der::Decode>::from_der(&certs[1])
            .unwrap()
            .to_pem(der::pem::LineEnding::LF)
            .unwrap();
        assert_eq!(one_cert(ark_pem.as_bytes(), "x").unwrap(), certs[1]);
        assert_eq!(one_cert(&certs[1], "x").unwrap(), certs[1]);
        assert!(
            matches!(one_cert(&chain, "x"), Err(CliError::Usage(m)) if m.contains("one certificate"))
        );
        assert!(matches!(
            pem_chain(b"-----BEGIN CERTIFICATE-----\nAAAA\n", "x"),
            Err(CliError::Usage(_))
        ));
    }

    #[test]
    fn hex_arguments_are_length_checked() {
        assert_eq!(parse_hex::<2>("0x0aff", "x").unwrap(), [0x0a, 0xff]);
        assert!(
            matches!(parse_hex::<2>("0aff00", "x"), Err(CliError::Usage(m)) if m == "x: expected 4 hex digits")
        );
        assert!(matches!(
            parse_hex::<2>("zz00", "x"),
            Err(CliError::Usage(_))
        ));
        assert_eq!(parse_u64("0x21").unwrap(), 0x21);
        assert_eq!(parse_u64("33").unwrap(), 33);
        assert!(matches!(parse_u64("0xg"), Err(CliError::Usage(m)) if m.contains("0xg")));
    }
}
