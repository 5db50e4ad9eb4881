//! Test services selected by `ckms.test=` (the KMS itself comes with the next issue).
//!
//! - [`Echo`]: a TCP echo server on the KMS port, for the transfer test.
//! - [`attest_selftest`]: obtains a report for `ckms.test_report_data` and prints it.
//! - `unmapped-bar` (loopback-GHCB build): BARs left unmapped, real `mov`s through the MMIO
//!   fault path (`crate::arch::vc::unmapped_bar_self_test`), then the echo service.
//! - `vc`: the #VC handler on synthetic frames over real instructions ([`crate::arch::vc`]).
//! - [`fault`]: reads from page 0 (unmapped), so the guard page and the exception report can
//!   be checked.

use alloc::boxed::Box;
use alloc::vec::Vec;

use bootparams::cmdline::{BootConfig, TestService};
use netstack::{ConnId, ListenerId, TcpError};

use crate::net::{NetStack, Service};
use crate::platform::{self, PlatformKind, PlatformOps};

/// Starts what the command line asks for, prints the ready line, runs the one-shot
/// self-tests, and returns the services for the poll loop.
pub fn start(
    stack: &mut NetStack,
    cfg: &BootConfig,
    platform: PlatformKind,
) -> Vec<Box<dyn Service>> {
    let mut services: Vec<Box<dyn Service>> = Vec::new();
    match cfg.test {
        Some(TestService::Echo | TestService::UnmappedBar) => match Echo::new(stack, cfg.port) {
            Ok(echo) => services.push(Box::new(echo)),
            Err(e) => crate::refuse(format_args!("echo service: {e}")),
        },
        Some(TestService::Attest | TestService::Fault | TestService::Vc) => {}
        None => log::warn!("no KMS service in this build yet: only the network is up"),
    }
    let ip = stack.ipv4_address().map(|a| a.octets()).unwrap_or([0; 4]);
    crate::println!(
        "ckms: ready ip={}.{}.{}.{} port={} measurement-mode={} boot-ms={}",
        ip[0],
        ip[1],
        ip[2],
        ip[3],
        cfg.port,
        platform,
        crate::time::Instant::now().millis_since_boot()
    );
    match (cfg.test, cfg.test_report_data) {
        (Some(TestService::Attest), Some(rd)) => attest_selftest(&rd),
        (Some(TestService::Fault), _) => fault(),
        (Some(TestService::Vc), _) => vc_selftest(),
        (Some(TestService::UnmappedBar), _) => unmapped_bar_selftest(),
        _ => {}
    }
    let hs = crate::mm::stats();
    log::info!(
        "heap: {} KiB in use, peak {} KiB of {} KiB",
        hs.in_use / 1024,
        hs.peak / 1024,
        hs.capacity / 1024
    );
    services
}

/// Most concurrent echo connections.
const MAX_CONNECTIONS: usize = 16;
/// Bytes read per connection before they are written back.
const CHUNK: usize = 16 * 1024;

struct Conn {
    id: ConnId,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
}

/// TCP echo: every byte received is sent back, until the peer closes.
pub struct Echo {
    listener: ListenerId,
    conns: Vec<Conn>,
}

impl Echo {
    /// Listens on `port`.
    pub fn new(stack: &mut NetStack, port: u16) -> Result<Self, netstack::StackError> {
        let listener = stack.listen(port, 4)?;
        Ok(Self {
            listener,
            conns: Vec::new(),
        })
    }
}

impl Service for Echo {
    fn poll(&mut self, stack: &mut NetStack, _now: netstack::Instant) {
        while self.conns.len() < MAX_CONNECTIONS {
            let Some(id) = stack.accept(self.listener) else {
                break;
            };
            log::debug!(
                "echo: connection {:?} from {:?}",
                id,
                stack.remote_endpoint(id)
            );
            self.conns.push(Conn {
                id,
                buf: alloc::vec![0; CHUNK],
                start: 0,
                end: 0,
                eof: false,
            });
        }
        self.conns.retain_mut(|c| {
            loop {
                if c.start == c.end && !c.eof {
                    c.start = 0;
                    c.end = 0;
                    match stack.read(c.id, &mut c.buf) {
                        Ok(0) => c.eof = true,
                        Ok(n) => c.end = n,
                        Err(TcpError::WouldBlock) => {}
                        Err(e) => {
                            log::debug!("echo: read: {e}");
                            let _ = stack.abort(c.id);
                            return false;
                        }
                    }
                }
                if c.start < c.end {
                    let pending = c.buf.get(c.start..c.end).unwrap_or(&[]);
                    match stack.write(c.id, pending) {
                        Ok(n) => c.start += n,
                        Err(TcpError::WouldBlock) => return true,
                        Err(e) => {
                            log::debug!("echo: write: {e}");
                            let _ = stack.abort(c.id);
                            return false;
                        }
                    }
                    continue;
                }
                if c.eof {
                    let _ = stack.close(c.id);
                    return false;
                }
                return true;
            }
        });
    }
}

/// The `attest` self-test: asks the platform for a report binding `report_data` and prints
/// it as one console line, `ckms: attest report=<hex>` (or `ckms: attest error=<message>`),
/// then checks that the derived key is stable (`ckms: attest derived-key=<verdict>`; the key
/// itself is never printed).
pub fn attest_selftest(report_data: &[u8; 64]) {
    let outcome = platform::with(|p| (p.attestation_report(report_data), derived_key_verdict(p)));
    let (report, verdict) = match outcome {
        Ok(o) => o,
        Err(e) => (Err(e), "error"),
    };
    match report {
        Ok(report) => {
            let mut line = alloc::string::String::with_capacity(report.len() * 2);
            for b in &report {
                use core::fmt::Write;
                let _ = write!(line, "{b:02x}");
            }
            crate::println!("ckms: attest report={line}");
        }
        Err(e) => crate::println!("ckms: attest error={e}"),
    }
    crate::println!("ckms: attest derived-key={verdict}");
}

/// Derives the key twice and compares (without branching on key bytes).
fn derived_key_verdict(platform: &mut dyn PlatformOps) -> &'static str {
    match (platform.derived_key(), platform.derived_key()) {
        (Ok(Some(a)), Ok(Some(b))) => {
            let diff =
                a.0.iter()
                    .zip(b.0.iter())
                    .fold(0u8, |acc, (x, y)| acc | (x ^ y));
            if diff == 0 {
                "consistent"
            } else {
                "inconsistent"
            }
        }
        (Ok(None), _) | (_, Ok(None)) => "none",
        (Err(_), _) | (_, Err(_)) => "error",
    }
}

/// The `vc` test: the #VC handler on synthetic frames (see [`crate::arch::vc::self_test`]).
fn vc_selftest() {
    match crate::arch::vc::self_test() {
        Ok(t) => crate::println!(
            "ckms: test vc ok in-rip+{} cpuid-rip+{} rdmsr-rip+{} nested=refused mismatch=refused mmio=refused npf-outside-windows=refused",
            t.in_len,
            t.cpuid_len,
            t.rdmsr_len
        ),
        Err(e) => crate::println!("ckms: test vc failed: {e}"),
    }
}

/// The `unmapped-bar` test (loopback build): real `mov`s on an unmapped BAR through the MMIO
/// fault path (see `crate::arch::vc::unmapped_bar_self_test`); the echo service then runs.
fn unmapped_bar_selftest() {
    #[cfg(feature = "loopback-ghcb")]
    match crate::arch::vc::unmapped_bar_self_test() {
        Ok(t) => crate::println!(
            "ckms: test unmapped-bar ok store-rip+{} load-rip+{} device-feature-hi={:#x} ghcb-mmio-exits={}",
            t.store_len,
            t.load_len,
            t.value,
            t.exits
        ),
        Err(e) => crate::println!("ckms: test unmapped-bar failed: {e}"),
    }
}

/// The `fault` test: a page fault whose report the host can check.
pub fn fault() -> ! {
    crate::println!(
        "ckms: test fault: reading {:#x}",
        crate::arch::UNMAPPED_TEST_ADDRESS
    );
    crate::arch::read_unmapped()
}
