//! The KMS service: the kernel's side of `kms-guest`. It adapts the kernel's clocks, RNG and
//! attestation platform to the service's traits, runs the bootstrap phase and then the KMS,
//! and never returns. All protocol logic (TLS, HTTP, bootstrap, KMIP, Redis) lives in
//! `kms-guest` and the crates below it, tested on the host.

use alloc::vec::Vec;

use bootparams::cmdline::BootConfig;
use kms::bootstrap::ProvisionerPolicy;
use kms::bootstrap::platform::{
    CertTableEntry, Evidence, EvidenceError, Platform, parse_cert_table,
};
use kms::crypto::{Random, RngError};
use kms_guest::{Clock, Server, Settings, SharedStack};
use zeroize::Zeroizing;

use crate::net::NetStack;
use crate::platform::{self, PlatformError, PlatformKind};

/// Monotonic TSC clock, the RTC-aligned wall clock (untrusted) and `hlt` until the APIC timer.
struct KernelClock;

impl Clock for KernelClock {
    fn now(&self) -> netstack::Instant {
        crate::net::now()
    }
    fn unix_seconds(&self) -> i64 {
        crate::time::wall_unix_seconds().unwrap_or(0)
    }
    fn idle(&self, max: netstack::Duration) {
        let us = max.total_micros().min(1_000);
        if us > 0 {
            crate::arch::apic::idle(us);
        } else {
            crate::arch::relax();
        }
    }
}

/// The kernel's CSPRNG (ChaCha20 seeded from RDSEED/RDRAND).
struct KernelRng;

impl Random for KernelRng {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), RngError> {
        crate::rng::fill(buf).map_err(|_| RngError)
    }
}

fn evidence_error(e: PlatformError) -> EvidenceError {
    match e {
        PlatformError::NotSupported => EvidenceError::Unsupported,
        PlatformError::Transport(w) => EvidenceError::Transport(w),
        PlatformError::Firmware(s) => EvidenceError::Firmware(s),
        PlatformError::Protocol(w) => EvidenceError::Malformed(w),
    }
}

/// The attestation platform selected at boot, as the bootstrap core sees it.
struct KernelEvidence {
    kind: Platform,
}

impl Evidence for KernelEvidence {
    fn platform(&self) -> Platform {
        self.kind
    }
    fn report(&mut self, report_data: &[u8; 64]) -> Result<Vec<u8>, EvidenceError> {
        platform::with(|p| p.attestation_report(report_data))
            .map_err(evidence_error)?
            .map_err(evidence_error)
    }
    fn cert_table(&mut self) -> Result<Vec<CertTableEntry>, EvidenceError> {
        let raw = platform::with(|p| p.cert_table())
            .map_err(evidence_error)?
            .map_err(evidence_error)?;
        if raw.is_empty() {
            return Ok(Vec::new());
        }
        parse_cert_table(&raw)
    }
    fn derived_key(&mut self) -> Result<Option<Zeroizing<[u8; 32]>>, EvidenceError> {
        let key = platform::with(|p| p.derived_key())
            .map_err(evidence_error)?
            .map_err(evidence_error)?;
        Ok(key.map(|k| Zeroizing::new(k.0)))
    }
    fn event_log(&mut self) -> Result<Option<Vec<u8>>, EvidenceError> {
        platform::with(|p| p.event_log())
            .map_err(evidence_error)?
            .map_err(evidence_error)
    }
}

/// Period of the heap and connection counters line on the console.
const STATS_EVERY_US: u64 = 30 * 1_000_000;

/// Runs the bootstrap phase and then the KMS on `stack`, forever.
pub fn run(stack: NetStack, cfg: &BootConfig, kind: PlatformKind) -> ! {
    let attests = platform::with(|p| p.capabilities().attestation).unwrap_or(false);
    let evidence = KernelEvidence {
        kind: match (attests, kind) {
            (false, _) => Platform::None,
            // The DCAP quote v4 (TDG.MR.REPORT + GetQuote); no sealing key, so the core takes a
            // random `sk` each boot (docs/operations.md, "TDX").
            (true, PlatformKind::Tdx) => Platform::Tdx,
            (true, _) => Platform::SevSnp,
        },
    };
    let provisioner = match cfg.provisioner {
        Some(hash) => ProvisionerPolicy::Pinned(hash),
        None => ProvisionerPolicy::Open,
    };
    let settings = Settings {
        port: cfg.port,
        ratls_port: cfg.ratls_port,
        kmip_port: cfg.kmip_port,
        provisioner,
        limits: kms_guest::Limits::default(),
    };
    let mut random_sk = Zeroizing::new([0u8; 32]);
    if let Err(e) = crate::rng::fill(random_sk.as_mut_slice()) {
        crate::refuse(format_args!("KMS: no randomness: {e}"));
    }
    let ip = stack.ipv4_address().map(|a| a.octets()).unwrap_or([0; 4]);
    let shared = SharedStack::new(stack);
    let clock = alloc::sync::Arc::new(KernelClock);
    let mut server = match Server::new(shared, clock, evidence, settings, *random_sk) {
        Ok(s) => s,
        Err(e) => crate::refuse(format_args!("KMS: cannot start the bootstrap server: {e}")),
    };
    drop(random_sk);
    log::info!(
        "bootstrap: RA-TLS on port {}, provisioner {}",
        cfg.port,
        if cfg.provisioner.is_some() {
            "pinned by the command line"
        } else {
            "open"
        }
    );
    crate::println!(
        "ckms: ready ip={}.{}.{}.{} port={} measurement-mode={} boot-ms={}",
        ip[0],
        ip[1],
        ip[2],
        ip[3],
        cfg.port,
        kind,
        crate::time::Instant::now().millis_since_boot()
    );
    let mut rng = KernelRng;
    let mut was_serving = false;
    let mut last_report = crate::time::Instant::now();
    let mut last_accepted = 0;
    loop {
        let wait = server.step(&mut rng);
        let accepted = server.stats().accepted;
        if accepted != last_accepted {
            last_accepted = accepted;
            print_exits(accepted);
        }
        if crate::time::Instant::now().micros_since(last_report) > STATS_EVERY_US {
            last_report = crate::time::Instant::now();
            let hs = crate::mm::stats();
            let st = server.stats();
            log::info!(
                "kms: heap {} KiB in use, peak {} KiB; connections {} open, {} accepted, {} refused, {} evicted, {} idle-closed, {} slow-closed, {} TLS failures",
                hs.in_use / 1024,
                hs.peak / 1024,
                server.connections(),
                st.accepted,
                st.refused,
                st.evicted,
                st.idle_closed,
                st.slow_closed,
                st.tls_failed
            );
            crate::platform::ghcb::log_stats("so far");
            crate::platform::tdx::log_stats("so far");
        }
        if !was_serving && server.serving() {
            was_serving = true;
            let hs = crate::mm::stats();
            crate::println!(
                "ckms: kms started port={} heap-kib={} heap-peak-kib={}",
                cfg.port,
                hs.in_use / 1024,
                hs.peak / 1024
            );
        }
        let us = wait.total_micros().min(1_000);
        if us > 0 {
            crate::arch::apic::idle(us);
        }
    }
}

/// The exit counters at the `accepted`-th accepted connection (`image`'s KMS suite takes the
/// differences between connections to report exits per KMIP request): GHCB exits in the
/// loopback-GHCB build and on SNP, TDVMCALLs on TDX, nothing elsewhere.
fn print_exits(accepted: u64) {
    if let Some(s) = crate::platform::ghcb::stats() {
        crate::println!(
            "ckms: exits connection={accepted} msr-protocol={} ioio={} msr={} mmio={} psc={} guest-request={}",
            s.msr_protocol,
            s.ioio,
            s.msr,
            s.mmio,
            s.psc,
            s.guest_request
        );
    }
}
