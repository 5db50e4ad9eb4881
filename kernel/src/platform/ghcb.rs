//! The GHCB backend of the platform HAL: `sev-guest`'s [`GhcbSession`] over the kernel's
//! [`Vmgexit`] ([`KernelVmgexit`]: the instructions of [`crate::arch::sev`] on identity-mapped
//! memory), and the HAL entry points port I/O ([`crate::arch::port`]) and MSR access
//! ([`crate::arch::rdmsr`]) take when a session is established.
//!
//! Once [`establish`] has run, every port I/O, MSR and MMIO access of the kernel is an
//! IOIO/MSR/MMIO exit (AMD 56421 §4.1.2, §4.1.3, §4.1.5; MMIO through [`crate::arch::mmio`]) and the shared DMA pool converts its pages with PVALIDATE and
//! page-state changes through this session ([`crate::dma`]). Before that (and on the `none` /
//! `emulated` platforms, where no session exists) the HAL executes the instructions.
//!
//! Where it runs: on SEV-SNP hardware ([`crate::boot::snp_session`], after the page tables and
//! the DMA pool; not run on hardware here) and in the loopback-GHCB test build
//! (`loopback-ghcb` feature), whose stub (`src/loopback.rs`) services each exit on QEMU's
//! devices: the same code, only the instructions of [`crate::arch::sev`] differ.
//!
//! Re-entrancy: the session is behind a spin lock taken with `try_lock`. A port access made
//! while an exit is in progress (a panic message printed from inside one) falls back to the
//! instruction: under TCG it works, on hardware it raises #VC and the #VC gate terminates.

use core::fmt;

use sev_guest::ghcb::GHCB_SIZE;
use sev_guest::mmio::{MmioBackend, MmioError, Width};
use sev_guest::nae::IoSize;
use sev_guest::session::ExitStats;
use sev_guest::{
    EstablishError, Ghcb, GhcbSession, PageSize, PvalidateError, SharedAccessError, Vmgexit,
};

use crate::arch::{self, sev};

/// The kernel's [`Vmgexit`]: the GHCB MSR, VMGEXIT and PVALIDATE of [`crate::arch::sev`]
/// (the loopback stub's in the test build), on identity-mapped memory.
pub struct KernelVmgexit {
    ghcb_gpa: u64,
    /// The shared pool's region: the only memory `read_shared`/`write_shared` touch.
    pool: crate::dma::PoolRegion,
}

impl Vmgexit for KernelVmgexit {
    fn msr_protocol(&mut self, request: u64) -> u64 {
        // SAFETY: a `KernelVmgexit` exists only once SEV-ES/SNP is active (or in the loopback
        // build, where the stub stands in). Page-state changes requested through the MSR
        // protocol are made by `GhcbSession` on pages it owns (the GHCB page).
        unsafe { sev::msr_protocol_exit(request) }
    }

    fn ghcb_gpa(&self) -> u64 {
        self.ghcb_gpa
    }

    fn exit(&mut self, ghcb: &mut Ghcb) {
        let page = self.ghcb_gpa as *mut u8;
        // SAFETY: `ghcb_gpa` is the GHCB page `establish` took from the heap for good (4 KiB,
        // page-aligned, identity-mapped, owned by this value); `ghcb` is a separate private
        // copy. Then VMGEXIT with the GHCB MSR holding the registered GHCB's GPA.
        unsafe {
            core::ptr::copy_nonoverlapping(ghcb.as_bytes().as_ptr(), page, GHCB_SIZE);
            sev::ghcb_msr_write(self.ghcb_gpa);
            sev::vmgexit();
            core::ptr::copy_nonoverlapping(page, ghcb.as_bytes_mut().as_mut_ptr(), GHCB_SIZE);
        }
    }

    fn pvalidate(
        &mut self,
        gpa: u64,
        size: PageSize,
        validate: bool,
    ) -> Result<(), PvalidateError> {
        let large = !matches!(size, PageSize::Size4K);
        // SAFETY: identity mapping (va = gpa); `GhcbSession` and the pool validate or rescind
        // only pages they own (the GHCB page, the pool's region).
        let (rc, not_updated) = unsafe { sev::pvalidate(gpa, large, validate) };
        match (rc, not_updated) {
            (0, false) => Ok(()),
            (0, true) => Err(PvalidateError::NoUpdate),
            (1, _) => Err(PvalidateError::FailInput),
            (6, _) => Err(PvalidateError::FailSizeMismatch),
            (c, _) => Err(PvalidateError::Unknown(c)),
        }
    }

    fn read_shared(&mut self, gpa: u64, out: &mut [u8]) -> Result<(), SharedAccessError> {
        self.pool.read(gpa, out)
    }

    fn write_shared(&mut self, gpa: u64, data: &[u8]) -> Result<(), SharedAccessError> {
        self.pool.write(gpa, data)
    }

    fn busy_backoff(&mut self, attempt: u32) {
        for _ in 0..(1u32 << attempt.min(16)) {
            core::hint::spin_loop();
        }
    }
}

/// The established session.
static SESSION: spin::Once<spin::Mutex<GhcbSession<KernelVmgexit>>> = spin::Once::new();

/// Why [`establish`] failed.
#[derive(Debug)]
pub enum GhcbSetupError {
    /// Already established.
    AlreadyEstablished,
    /// No memory for the GHCB page, or the shared pool is not set up.
    NoMemory,
    /// The protocol could not be established.
    Establish(EstablishError),
    /// The GHCB page could not be mapped C=0.
    Paging(arch::paging::PagingError),
}

impl fmt::Display for GhcbSetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AlreadyEstablished => f.write_str("GHCB session established twice"),
            Self::NoMemory => f.write_str("GHCB: no memory for the GHCB page or no shared pool"),
            Self::Establish(e) => e.fmt(f),
            Self::Paging(e) => write!(f, "GHCB page: {e}"),
        }
    }
}

impl GhcbSetupError {
    /// The termination reason (set 0xC, or the protocol's own).
    pub fn terminate_reason(&self) -> sev_guest::msr::TerminateReason {
        use sev_guest::msr::{KmsReason, TerminateReason};
        match self {
            Self::Establish(e) => e.terminate_reason(),
            Self::AlreadyEstablished | Self::NoMemory | Self::Paging(_) => {
                TerminateReason::Kms(KmsReason::GhcbRegistration)
            }
        }
    }
}

/// Establishes the GHCB protocol (SEV information, hypervisor features, GHCB page made shared
/// and registered) and installs the session: from here on, port I/O and MSR accesses are GHCB
/// exits. Returns `(protocol version, C-bit)`.
pub fn establish() -> Result<(u16, u8), GhcbSetupError> {
    if SESSION.is_completed() {
        return Err(GhcbSetupError::AlreadyEstablished);
    }
    let pool = crate::dma::region().ok_or(GhcbSetupError::NoMemory)?;
    let layout = core::alloc::Layout::from_size_align(GHCB_SIZE, GHCB_SIZE)
        .map_err(|_| GhcbSetupError::NoMemory)?;
    // SAFETY: non-zero size. The page is never freed: it is the GHCB for the kernel's life.
    let page = unsafe { alloc::alloc::alloc_zeroed(layout) };
    if page.is_null() {
        return Err(GhcbSetupError::NoMemory);
    }
    let hv = KernelVmgexit {
        ghcb_gpa: page as u64,
        pool,
    };
    let session = GhcbSession::establish(hv).map_err(GhcbSetupError::Establish)?;
    // Made shared and registered: the kernel reaches it through C=0 from now on.
    arch::paging::set_encrypted(page as u64, false).map_err(GhcbSetupError::Paging)?;
    let answer = (session.version(), session.cbit());
    SESSION.call_once(|| spin::Mutex::new(session));
    Ok(answer)
}

/// Whether a session is established.
pub fn established() -> bool {
    SESSION.is_completed()
}

/// Runs `f` on the session, `None` without one (or on re-entry).
pub fn with<R>(f: impl FnOnce(&mut GhcbSession<KernelVmgexit>) -> R) -> Option<R> {
    let mut s = SESSION.get()?.try_lock()?;
    Some(f(&mut s))
}

/// Exit counters, when a session is established.
pub fn stats() -> Option<ExitStats> {
    SESSION.get().map(|s| s.lock().stats())
}

/// Logs the exit counters (`when` says at which point), when a session is established.
pub fn log_stats(when: &str) {
    if let Some(s) = stats() {
        log::info!(
            "ghcb: exits {when}: {} msr-protocol, {} ioio, {} msr, {} mmio, {} psc, {} guest-request",
            s.msr_protocol,
            s.ioio,
            s.msr,
            s.mmio,
            s.psc,
            s.guest_request
        );
    }
}

/// A failed exit: the hypervisor broke the protocol. Terminate with the reason `sev-guest`
/// maps the error to.
fn fatal(s: &mut GhcbSession<KernelVmgexit>, e: sev_guest::Error) -> ! {
    arch::disable_interrupts();
    s.terminate(e.terminate_reason());
    arch::halt_forever()
}

/// Terminates through the session's GHCB MSR protocol request (or, without a session, the
/// early detection's; else the usual stop).
pub fn terminate(reason: sev_guest::msr::TerminateReason) -> ! {
    arch::disable_interrupts();
    if let Some(mut s) = SESSION.get().and_then(|s| s.try_lock()) {
        s.terminate(reason);
        arch::halt_forever()
    }
    if let Some(g) = crate::platform::ghcb_msr() {
        crate::platform::snp::terminate(g, reason)
    }
    arch::stop(arch::ExitCode::Fault)
}

/// `OUT` through the GHCB; `false` when no session is established (do the instruction).
pub fn io_out(port: u16, size: IoSize, value: u32) -> bool {
    with(|s| {
        if let Err(e) = s.io_out(port, size, value) {
            fatal(s, e.into());
        }
    })
    .is_some()
}

/// `IN` through the GHCB; `None` when no session is established.
pub fn io_in(port: u16, size: IoSize) -> Option<u32> {
    with(|s| s.io_in(port, size).unwrap_or_else(|e| fatal(s, e.into())))
}

/// MSR read through the GHCB; `None` when no session is established.
pub fn rdmsr(msr: u32) -> Option<u64> {
    with(|s| s.rdmsr(msr).unwrap_or_else(|e| fatal(s, e.into())))
}

/// MSR write through the GHCB; `false` when no session is established.
pub fn wrmsr(msr: u32, value: u64) -> bool {
    with(|s| {
        if let Err(e) = s.wrmsr(msr, value) {
            fatal(s, e.into());
        }
    })
    .is_some()
}

/// MMIO read through the GHCB (56421 §4.1.5); `None` when no session is established.
pub fn mmio_read(gpa: u64, width: Width) -> Option<u64> {
    with(|s| MmioBackend::read(s, gpa, width).unwrap_or_else(|_| mmio_fatal(s)))
}

/// MMIO write through the GHCB; `false` when no session is established.
pub fn mmio_write(gpa: u64, width: Width, value: u64) -> bool {
    with(|s| {
        if MmioBackend::write(s, gpa, width, value).is_err() {
            mmio_fatal(s)
        }
    })
    .is_some()
}

fn mmio_fatal(s: &mut GhcbSession<KernelVmgexit>) -> ! {
    arch::disable_interrupts();
    s.terminate(MmioError::Backend.terminate_reason());
    arch::halt_forever()
}

/// The device side of the #VC handler's MMIO path: the session's MMIO exits. A fault with no
/// session (or inside an exit) is refused ([`MmioError::Backend`]).
pub struct GhcbMmio;

impl MmioBackend for GhcbMmio {
    fn read(&mut self, gpa: u64, width: Width) -> Result<u64, MmioError> {
        with(|s| MmioBackend::read(s, gpa, width)).ok_or(MmioError::Backend)?
    }

    fn write(&mut self, gpa: u64, width: Width, value: u64) -> Result<(), MmioError> {
        with(|s| MmioBackend::write(s, gpa, width, value)).ok_or(MmioError::Backend)?
    }
}
