//! What a verifier requires of a verified report: [`Policy`] and its defaults.
//!
//! Every field checked is cited from AMD publication 56860 ("SEV Secure Nested Paging Firmware ABI
//! Specification", revision 1.58):
//!
//! | check | report field (Table 23) | layout |
//! |---|---|---|
//! | debug off | `POLICY` (08h) bit 19 `DEBUG` | Table 9 |
//! | no migration agent | `POLICY` bit 18 `MIGRATE_MA` | Table 9 |
//! | SMT off (if required) | `POLICY` bit 16 `SMT` | Table 9 |
//! | single socket (if required) | `POLICY` bit 20 `SINGLE_SOCKET` | Table 9 |
//! | minimum ABI | `CURRENT_MAJOR`/`_MINOR` (1EAh/1E9h), `COMMITTED_MAJOR`/`_MINOR` (1EEh/1EDh), and `POLICY` bits 15:0 `ABI_MAJOR`/`ABI_MINOR` | Tables 23, 9 |
//! | VMPL | `VMPL` (30h) | Table 23 |
//! | minimum TCB | `REPORTED_TCB` (180h), `COMMITTED_TCB` (1E0h), `LAUNCH_TCB` (1F0h): boot loader, TEE, SNP, microcode (and FMC on Turin) SVNs | Table 3 (`TCB_VERSION`; Turin layout: Table 4) |
//!
//! The minimum TCB differs per product ([`default_min_tcb`]): SVNs are numbered per product line.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use subtle::ConstantTimeEq;

use super::VerifyError;
use crate::snp::report::{AttestationReport, FirmwareVersion, Generation, TcbVersion};

/// The default minimum firmware (ABI) version: 1.51, the first SNP firmware release for Milan
/// (Genoa and Turin shipped with later versions).
pub const DEFAULT_MIN_ABI: FirmwareVersion = FirmwareVersion::new(1, 51);

/// The default minimum TCB of a product (each component is a floor; all three TCBs of the report
/// must meet it):
///
/// - Milan: boot loader 3, TEE 0, SNP 8, microcode 115 (0x73);
/// - Genoa: boot loader 7, TEE 0, SNP 14, microcode 72 (0x48);
/// - Turin: FMC 0, boot loader 0, TEE 0, SNP 0, microcode 9 (the TCB of the earliest Turin VCEK
///   AMD's KDS served for our test vector).
///
/// These are floors known to be met by production firmware; an operator should raise them to the
/// TCB AMD's latest security bulletins require (manifest `snp.min_tcb`, `ckms --min-tcb`).
pub const fn default_min_tcb(generation: Generation) -> TcbVersion {
    match generation {
        Generation::Milan => TcbVersion {
            fmc: 0,
            bootloader: 3,
            tee: 0,
            snp: 8,
            microcode: 115,
        },
        Generation::Genoa => TcbVersion {
            fmc: 0,
            bootloader: 7,
            tee: 0,
            snp: 14,
            microcode: 72,
        },
        Generation::Turin => TcbVersion {
            fmc: 0,
            bootloader: 0,
            tee: 0,
            snp: 0,
            microcode: 9,
        },
    }
}

/// What to require of a report. Built with [`Policy::new`], which takes the expected
/// measurement: there is no policy without one.
///
/// Defaults: debug off, no migration agent, SMT allowed, single socket not required, firmware
/// (current and committed) at least [`DEFAULT_MIN_ABI`], VMPL 0, and per product the TCB floor
/// [`default_min_tcb`] for the reported, committed and launch TCB.
#[derive(Debug, Clone)]
pub struct Policy {
    measurement: [u8; 48],
    report_data: Option<[u8; 64]>,
    host_data: Option<[u8; 32]>,
    allow_debug: bool,
    allow_migrate_ma: bool,
    allow_smt: bool,
    require_single_socket: bool,
    min_abi: FirmwareVersion,
    /// Milan, Genoa, Turin.
    min_tcb: [TcbVersion; 3],
    max_vmpl: u32,
    min_guest_svn: Option<u32>,
    /// The exact `POLICY` the launch must have used (e.g. an image manifest's `guest_policy`).
    guest_policy: Option<u64>,
    /// Unix seconds; `None`: the system clock.
    now: Option<u64>,
    crl: Option<Vec<u8>>,
}

fn index(g: Generation) -> usize {
    match g {
        Generation::Milan => 0,
        Generation::Genoa => 1,
        Generation::Turin => 2,
    }
}

impl Policy {
    /// A policy requiring `expected_measurement` and the defaults above.
    pub fn new(expected_measurement: [u8; 48]) -> Self {
        Self {
            measurement: expected_measurement,
            report_data: None,
            host_data: None,
            allow_debug: false,
            allow_migrate_ma: false,
            allow_smt: true,
            require_single_socket: false,
            min_abi: DEFAULT_MIN_ABI,
            min_tcb: [
                default_min_tcb(Generation::Milan),
                default_min_tcb(Generation::Genoa),
                default_min_tcb(Generation::Turin),
            ],
            max_vmpl: 0,
            min_guest_svn: None,
            guest_policy: None,
            now: None,
            crl: None,
        }
    }
    /// Require this `REPORT_DATA`.
    pub fn report_data(mut self, report_data: [u8; 64]) -> Self {
        self.report_data = Some(report_data);
        self
    }
    /// Require this `HOST_DATA`.
    pub fn host_data(mut self, host_data: [u8; 32]) -> Self {
        self.host_data = Some(host_data);
        self
    }
    /// Accept guests whose policy allows debugging (their memory is readable by the host).
    pub fn allow_debug(mut self, allow: bool) -> Self {
        self.allow_debug = allow;
        self
    }
    /// Accept guests whose policy allows a migration agent (which can export the guest's memory).
    pub fn allow_migrate_ma(mut self, allow: bool) -> Self {
        self.allow_migrate_ma = allow;
        self
    }
    /// Accept guests whose policy allows SMT (default: yes). `false` requires policy bit 16
    /// clear: the firmware then runs the guest only with SMT disabled.
    pub fn allow_smt(mut self, allow: bool) -> Self {
        self.allow_smt = allow;
        self
    }
    /// Require policy bit 20 (`SINGLE_SOCKET`): the guest runs on one socket only.
    pub fn require_single_socket(mut self, require: bool) -> Self {
        self.require_single_socket = require;
        self
    }
    /// Require the firmware the report was produced with (`CURRENT_MAJOR.CURRENT_MINOR`) and the
    /// committed firmware (the oldest the host can roll back to) to be at least `min`. (The guest
    /// policy's `ABI_MAJOR.ABI_MINOR` is the floor the launch itself asked of the firmware; the
    /// versions checked here are what actually ran, so they are what is compared.)
    pub fn min_abi(mut self, min: FirmwareVersion) -> Self {
        self.min_abi = min;
        self
    }
    /// Require every component of the reported, committed and launch TCB to be at least `min`,
    /// whatever the product (replaces every per-product floor).
    pub fn min_tcb(mut self, min: TcbVersion) -> Self {
        self.min_tcb = [min; 3];
        self
    }
    /// The TCB floor for one product (replaces its default).
    pub fn min_tcb_for(mut self, generation: Generation, min: TcbVersion) -> Self {
        if let Some(slot) = self.min_tcb.get_mut(index(generation)) {
            *slot = min;
        }
        self
    }
    /// Require the report to come from VMPL `max` or a more privileged one (default 0).
    pub fn max_vmpl(mut self, max: u32) -> Self {
        self.max_vmpl = max;
        self
    }
    /// Require `GUEST_SVN >= min`.
    pub fn min_guest_svn(mut self, min: u32) -> Self {
        self.min_guest_svn = Some(min);
        self
    }
    /// Require the report's `POLICY` to be exactly `expected` (what the deployment launched with, e.g.
    /// an image manifest's `guest_policy`), in addition to the bit checks above.
    pub fn guest_policy(mut self, expected: u64) -> Self {
        self.guest_policy = Some(expected);
        self
    }
    /// Check certificate validity periods (and the CRL's) at this time, in seconds since the
    /// Unix epoch, instead of the system clock.
    pub fn at_time(mut self, unix_secs: u64) -> Self {
        self.now = Some(unix_secs);
        self
    }
    /// Check the ASK/ASVK and VCEK/VLEK serial numbers against this AMD CRL (DER or PEM, as
    /// AMD's KDS serves it at `/vcek/v1/{product}/crl`), which must be signed by the chain's ARK
    /// and current.
    pub fn amd_crl(mut self, crl: Vec<u8>) -> Self {
        self.crl = Some(crl);
        self
    }
    /// The verifier's time: [`Policy::at_time`], else the system clock.
    pub fn now(&self) -> u64 {
        self.now.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        })
    }
    /// The AMD CRL, if one was given.
    pub fn crl(&self) -> Option<&[u8]> {
        self.crl.as_deref()
    }
    /// The expected measurement.
    pub fn measurement(&self) -> &[u8; 48] {
        &self.measurement
    }
    /// The TCB floor applied to reports of `generation`.
    pub fn min_tcb_of(&self, generation: Generation) -> TcbVersion {
        self.min_tcb
            .get(index(generation))
            .copied()
            .unwrap_or_else(|| default_min_tcb(generation))
    }
    /// The minimum firmware version.
    pub fn min_abi_version(&self) -> FirmwareVersion {
        self.min_abi
    }
}

/// The first component of `got` below `min`, as (field, min, got).
fn tcb_shortfall(min: &TcbVersion, got: &TcbVersion) -> Option<(&'static str, u8, u8)> {
    [
        ("fmc", min.fmc, got.fmc),
        ("bootloader", min.bootloader, got.bootloader),
        ("tee", min.tee, got.tee),
        ("snp", min.snp, got.snp),
        ("microcode", min.microcode, got.microcode),
    ]
    .into_iter()
    .find(|(_, m, g)| g < m)
}

fn tcb_text(t: &TcbVersion) -> String {
    format!(
        "fmc {} bl {} tee {} snp {} ucode {}",
        t.fmc, t.bootloader, t.tee, t.snp, t.microcode
    )
}

/// The policy part of verification (after the signature has been checked).
pub(super) fn check_policy(
    report: &AttestationReport,
    generation: Generation,
    policy: &Policy,
    checks: &mut Vec<String>,
) -> Result<(), VerifyError> {
    let gp = report.policy();
    if gp.debug_allowed() && !policy.allow_debug {
        return Err(VerifyError::DebugAllowed);
    }
    if gp.migrate_ma_allowed() && !policy.allow_migrate_ma {
        return Err(VerifyError::MigrateMaAllowed);
    }
    if gp.smt_allowed() && !policy.allow_smt {
        return Err(VerifyError::SmtAllowed);
    }
    if !gp.single_socket_required() && policy.require_single_socket {
        return Err(VerifyError::SingleSocketNotRequired);
    }
    if let Some(expected) = policy.guest_policy {
        if gp.0 != expected {
            return Err(VerifyError::GuestPolicyMismatch {
                expected,
                reported: gp.0,
            });
        }
        checks.push(format!("guest policy {expected:#x} as expected"));
    }
    checks.push(format!(
        "guest policy {:#x}: debug {}, migration agent {}, SMT {}, single socket {}",
        gp.0,
        gp.debug_allowed(),
        gp.migrate_ma_allowed(),
        gp.smt_allowed(),
        gp.single_socket_required()
    ));
    for (which, got) in [
        ("current", report.current_firmware()),
        ("committed", report.committed_firmware()),
    ] {
        if got < policy.min_abi {
            return Err(VerifyError::AbiTooOld {
                which,
                min: policy.min_abi,
                got,
            });
        }
    }
    checks.push(format!(
        "firmware current {} committed {} >= {} (guest policy ABI minimum {})",
        report.current_firmware(),
        report.committed_firmware(),
        policy.min_abi,
        gp.abi()
    ));
    let vmpl = report.vmpl.get();
    if vmpl > policy.max_vmpl {
        return Err(VerifyError::VmplTooHigh {
            max: policy.max_vmpl,
            got: vmpl,
        });
    }
    checks.push(format!("VMPL {vmpl} <= {}", policy.max_vmpl));
    let min = policy.min_tcb_of(generation);
    for (tcb, got) in [
        ("reported", report.reported_tcb(generation)),
        ("committed", report.committed_tcb(generation)),
        ("launch", report.launch_tcb(generation)),
    ] {
        if let Some((field, m, g)) = tcb_shortfall(&min, &got) {
            return Err(VerifyError::TcbTooOld {
                tcb,
                field,
                min: m,
                got: g,
            });
        }
    }
    checks.push(format!(
        "reported, committed and launch TCB >= {} minimum ({})",
        generation.name(),
        tcb_text(&min)
    ));
    if !bool::from(report.measurement.ct_eq(&policy.measurement)) {
        return Err(VerifyError::MeasurementMismatch);
    }
    checks.push(String::from("measurement = expected measurement"));
    if let Some(rd) = &policy.report_data {
        if !bool::from(report.report_data.ct_eq(rd)) {
            return Err(VerifyError::ReportDataMismatch);
        }
        checks.push(String::from("report_data = expected report_data"));
    }
    if let Some(hd) = &policy.host_data {
        if !bool::from(report.host_data.ct_eq(hd)) {
            return Err(VerifyError::HostDataMismatch);
        }
        checks.push(String::from("host_data = expected host_data"));
    }
    if let Some(min) = policy.min_guest_svn {
        let svn = report.guest_svn.get();
        if svn < min {
            return Err(VerifyError::GuestSvnTooLow(svn));
        }
        checks.push(format!("guest SVN {svn} >= {min}"));
    }
    Ok(())
}
