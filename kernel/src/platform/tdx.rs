//! Intel TDX: detection, and the TDX backend behind the platform seam.
//!
//! Detection per the Intel TDX Guest-Hypervisor Communication Interface (GHCI, 348552) §2.4.1:
//! CPUID leaf 0x21, sub-leaf 0 returns the vendor string "IntelTDX    " in EBX, EDX, ECX.
//!
//! The backend ([`establish`], then everything below) runs `tdx-td`'s host-tested logic over
//! [`KernelTdcall`] (`crate::arch::tdx`: the `TDCALL` instruction, or the loopback stub):
//! - TDG.VP.INFO (TDX Module ABI 348551, "TDG.VP.INFO Leaf"): GPAW gives the shared bit
//!   (GHCI §1.3: bit GPAW − 1); the TD is refused if its ATTRIBUTES allow DEBUG or leave
//!   SEPT_VE_DISABLE clear (ABI "ATTRIBUTES Definition"; `tdx_td::info::TdInfo::check_policy`).
//! - The platform HAL: port I/O ([`io_in`]/[`io_out`], GHCI §3.9 TDG.VP.VMCALL<Instruction.IO>)
//!   and MSRs ([`rdmsr`]/[`wrmsr`], GHCI §3.10/§3.11 Instruction.RDMSR/WRMSR) are explicit
//!   TDVMCALLs once the backend is established, the way the GHCB session makes them IOIO/MSR
//!   exits on SNP (`crate::arch::port`, `crate::arch::rdmsr` ask here first).
//! - MMIO ([`mmio_read`]/[`mmio_write`], asked by `crate::arch::mmio` inside its device
//!   windows; [`TdxMmio`] for the #VE path): TDG.VP.VMCALL<#VE.RequestMMIO> (GHCI §3.7) at the
//!   GPA with the shared bit set.
//! - #VE ([`handle_ve`], reached from `crate::arch::tdx::on_ve`): VEINFO.GET first, then
//!   `tdx_td::ve::handle_ve`; an EPT violation at a shared GPA is returned to `on_ve`, which
//!   decodes and completes the `mov`; a #VE the kernel does not service ends the TD through
//!   `TDG.VP.VMCALL<ReportFatalError>` (GHCI §3.4).
//! - The shared DMA pool ([`TdxPool`], `crate::dma`'s backend once [`crate::dma::use_tdx`]
//!   ran): pages made shared with `TDG.VP.VMCALL<MapGPA>` (GHCI §3.2, shared bit set) and made
//!   private again with MapGPA (shared bit clear) plus TDG.MEM.PAGE.ACCEPT of every page (ABI
//!   "TDG.MEM.PAGE.ACCEPT Leaf"; an already-accepted page is refused: `tdx_td::mem`).
//! - Evidence ([`Tdx`], `PlatformOps`): TDG.MR.REPORT (ABI "TDG.MR.REPORT Leaf") with the
//!   caller's 64-byte REPORTDATA — the bootstrap's key binding, the same bytes the SNP report
//!   carries — then `TDG.VP.VMCALL<GetQuote>` (GHCI §3.3) with the TDREPORT in a GetQuote
//!   buffer allocated in the shared pool, polled until the host completes it. The evidence is
//!   the DCAP quote v4 (it contains the TD quote body copied from the TDREPORT). TDX has no
//!   sealing key: `derived_key` is `None`.
//! - The page-attribute rule ([`page_rule`]): the shared bit GPAW − 1 set in the page-table
//!   entries of shared memory (the pool's shared pages, hence the GetQuote buffer; device BARs
//!   and the MMIO holes), clear for private RAM (`sev_guest::pte::PteRule::tdx`). The pool's
//!   conversions remap the page around MapGPA in Linux's `set_memory_decrypted` order
//!   (`crate::dma`).
//!
//! Where it runs: on TDX hardware (CPUID leaf 0x21) and in the loopback-TDX test build, the
//! same code: [`establish`] right after detection, under the firmware's #VE handler, before our
//! IDT and before the page tables (`crate::boot::tdx_backend`), so a refused TD says why on
//! the console and the page tables get GPAW. The loopback build differs only in
//! [`KernelTdcall`] (a stub instead of the instruction); its `SHARED_ALIAS` is true as on
//! hardware, because the loopback runner gives QEMU a real alias of guest RAM at GPA 2^47
//! (see `crate::loopback_tdx::SHARED_ALIAS`).

use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use sev_guest::mmio::{MmioBackend, MmioError, Width};
use tdx_td::info::TdInfo;
use tdx_td::mr::ReportBuffers;
use tdx_td::quote::{self, GetQuoteStatus, QuoteBufferError};
use tdx_td::ve::{VeFrame, VeOutcome};
use tdx_td::vmcall;

use super::{Capabilities, DerivedKey, PlatformError, PlatformKind, PlatformOps};
use crate::arch::cpuid;
use crate::arch::tdx::KernelTdcall;

/// Whether we run inside a TD.
pub fn detect() -> bool {
    if cpuid(0, 0).eax < 0x21 {
        return false;
    }
    let r = cpuid(0x21, 0);
    let mut id = [0u8; 12];
    id[..4].copy_from_slice(&r.ebx.to_le_bytes());
    id[4..8].copy_from_slice(&r.edx.to_le_bytes());
    id[8..].copy_from_slice(&r.ecx.to_le_bytes());
    &id == b"IntelTDX    "
}

/// The established backend: what TDG.VP.INFO said (immutable afterwards).
static INFO: spin::Once<TdInfo> = spin::Once::new();

/// TDCALL counters, for the console.
#[derive(Default)]
struct Counters {
    io: AtomicU64,
    msr: AtomicU64,
    map_gpa_pages: AtomicU64,
    accept_pages: AtomicU64,
    ve: AtomicU64,
    mmio: AtomicU64,
    report: AtomicU64,
    quote: AtomicU64,
}

static COUNTERS: Counters = Counters {
    io: AtomicU64::new(0),
    msr: AtomicU64::new(0),
    map_gpa_pages: AtomicU64::new(0),
    accept_pages: AtomicU64::new(0),
    ve: AtomicU64::new(0),
    mmio: AtomicU64::new(0),
    report: AtomicU64::new(0),
    quote: AtomicU64::new(0),
};

fn count(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// Why [`establish`] failed.
#[derive(Debug)]
pub enum TdxSetupError {
    /// Already established.
    AlreadyEstablished,
    /// TDG.VP.INFO failed or the TD's attributes are refused (`tdx_td::Error::Policy`).
    Info(tdx_td::Error),
}

impl fmt::Display for TdxSetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AlreadyEstablished => f.write_str("TDX backend established twice"),
            Self::Info(e) => write!(f, "TDG.VP.INFO: {e}"),
        }
    }
}

/// TDG.VP.INFO with the policy check; installs the backend: from here on port I/O and MSR
/// accesses are TDVMCALLs and #VE is serviced.
pub fn establish() -> Result<TdInfo, TdxSetupError> {
    if INFO.is_completed() {
        return Err(TdxSetupError::AlreadyEstablished);
    }
    let info = tdx_td::info::vp_info(&mut KernelTdcall).map_err(TdxSetupError::Info)?;
    Ok(*INFO.call_once(|| info))
}

/// The page-attribute rule of this TD (`sev_guest::pte::PteRule`): the shared bit GPAW − 1,
/// set for shared mappings (GHCI 348552 §1.3), once [`establish`] ran; none when the TDCALL
/// seam reports no shared alias or no TDX backend exists.
pub fn page_rule() -> Result<sev_guest::pte::PteRule, sev_guest::pte::MaskError> {
    match INFO.get() {
        Some(info) if KernelTdcall::SHARED_ALIAS => sev_guest::pte::PteRule::tdx(info.gpaw),
        _ => Ok(sev_guest::pte::PteRule::NONE),
    }
}

/// The TD information, once [`establish`] ran.
pub fn info() -> Option<TdInfo> {
    INFO.get().copied()
}

/// Set by the first [`fatal`]: a second one (the console's own port I/O failing) skips the
/// message instead of recursing.
static FATAL: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// The host broke the protocol (or refused an access the kernel needs): ask it to end the TD
/// (ReportFatalError, GHCI §3.4), then halt whatever it does.
pub fn fatal(what: &str, e: &dyn fmt::Display) -> ! {
    crate::arch::disable_interrupts();
    if !FATAL.swap(true, Ordering::SeqCst) {
        // The console is port I/O, i.e. TDVMCALLs: it works as long as the host answers those.
        crate::console::emergency(format_args!("\nckms: TDX: {what}: {e}\n"));
    }
    let _ = vmcall::report_fatal_error(&mut KernelTdcall, 0);
    crate::arch::halt_forever()
}

/// `OUT` through TDVMCALL<Instruction.IO>; `false` when the backend is not established.
pub fn io_out(port: u16, size: u8, value: u32) -> bool {
    if INFO.get().is_none() {
        return false;
    }
    count(&COUNTERS.io, 1);
    if let Err(e) = vmcall::io_out(&mut KernelTdcall, port, size, value) {
        fatal("port output", &e);
    }
    true
}

/// `IN` through TDVMCALL<Instruction.IO>; `None` when the backend is not established.
pub fn io_in(port: u16, size: u8) -> Option<u32> {
    INFO.get()?;
    count(&COUNTERS.io, 1);
    match vmcall::io_in(&mut KernelTdcall, port, size) {
        Ok(v) => Some(v),
        Err(e) => fatal("port input", &e),
    }
}

/// RDMSR through TDVMCALL<Instruction.RDMSR>; `None` when the backend is not established.
pub fn rdmsr(msr: u32) -> Option<u64> {
    INFO.get()?;
    count(&COUNTERS.msr, 1);
    match vmcall::rdmsr(&mut KernelTdcall, msr) {
        Ok(v) => Some(v),
        Err(e) => fatal("rdmsr", &e),
    }
}

/// WRMSR through TDVMCALL<Instruction.WRMSR>; `false` when the backend is not established.
pub fn wrmsr(msr: u32, value: u64) -> bool {
    if INFO.get().is_none() {
        return false;
    }
    count(&COUNTERS.msr, 1);
    if let Err(e) = vmcall::wrmsr(&mut KernelTdcall, msr, value) {
        fatal("wrmsr", &e);
    }
    true
}

/// Whether the backend is established (port I/O, MSRs and MMIO are TDVMCALLs).
pub fn established() -> bool {
    INFO.get().is_some()
}

/// MMIO read through `TDG.VP.VMCALL<#VE.RequestMMIO>` (GHCI 348552 §3.7, sub-function 48:
/// R12 = size, R13 = 0 read, R14 = the GPA, with the shared bit: device memory is shared),
/// `None` when the backend is not established. The caller checked the device window.
pub fn mmio_read(gpa: u64, width: Width) -> Option<u64> {
    let info = INFO.get()?;
    count(&COUNTERS.mmio, 1);
    match vmcall::mmio_read(&mut KernelTdcall, gpa | info.shared_mask(), width.bytes()) {
        Ok(v) => Some(v),
        Err(e) => fatal("MMIO read", &e),
    }
}

/// MMIO write through `TDG.VP.VMCALL<#VE.RequestMMIO>` (R13 = 1 write, R15 = the value);
/// `false` when the backend is not established.
pub fn mmio_write(gpa: u64, width: Width, value: u64) -> bool {
    let Some(info) = INFO.get() else {
        return false;
    };
    count(&COUNTERS.mmio, 1);
    if let Err(e) = vmcall::mmio_write(
        &mut KernelTdcall,
        gpa | info.shared_mask(),
        width.bytes(),
        value,
    ) {
        fatal("MMIO write", &e);
    }
    true
}

/// The MMIO TDVMCALLs done so far (the #VE MMIO self-test counts its own).
#[cfg_attr(not(feature = "loopback-tdx"), allow(dead_code))]
pub fn mmio_calls() -> u64 {
    COUNTERS.mmio.load(Ordering::Relaxed)
}

/// The device side of the #VE MMIO path (`sev_guest::mmio::handle`): TDVMCALL
/// #VE.RequestMMIO; a TDVMCALL the host fails is a `MmioError::Backend` (the TD then ends).
pub struct TdxMmio;

impl MmioBackend for TdxMmio {
    fn read(&mut self, gpa: u64, width: Width) -> Result<u64, MmioError> {
        let info = INFO.get().ok_or(MmioError::Backend)?;
        count(&COUNTERS.mmio, 1);
        vmcall::mmio_read(&mut KernelTdcall, gpa | info.shared_mask(), width.bytes()).map_err(|e| {
            log::error!("tdx: TDVMCALL<#VE.RequestMMIO> read at {gpa:#x}: {e}");
            MmioError::Backend
        })
    }

    fn write(&mut self, gpa: u64, width: Width, value: u64) -> Result<(), MmioError> {
        let info = INFO.get().ok_or(MmioError::Backend)?;
        count(&COUNTERS.mmio, 1);
        vmcall::mmio_write(
            &mut KernelTdcall,
            gpa | info.shared_mask(),
            width.bytes(),
            value,
        )
        .map_err(|e| {
            log::error!("tdx: TDVMCALL<#VE.RequestMMIO> write at {gpa:#x}: {e}");
            MmioError::Backend
        })
    }
}

/// Why a #VE was not serviced.
#[derive(Debug)]
pub enum VeError {
    /// No TDX backend: the #VE is not expected at all.
    NoBackend,
    /// `tdx-td` refused it (VEINFO.GET failed, an exit the kernel does not service, a
    /// TDVMCALL the host failed).
    Td(tdx_td::Error),
}

impl fmt::Display for VeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoBackend => f.write_str("#VE without an established TDX backend"),
            Self::Td(e) => e.fmt(f),
        }
    }
}

/// The #VE handler body: VEINFO.GET first (inside `tdx_td::ve::handle_ve`), then the
/// service. `VeOutcome::Mmio` (an EPT violation at a shared GPA) is left to the caller, which
/// has all the registers the decoder needs (`crate::arch::tdx::on_ve`). On an error the TD is
/// asked to end (ReportFatalError) after the caller printed the reason.
pub fn handle_ve(frame: &mut VeFrame) -> Result<VeOutcome, VeError> {
    let info = INFO.get().ok_or(VeError::NoBackend)?;
    count(&COUNTERS.ve, 1);
    tdx_td::ve::handle_ve(&mut KernelTdcall, frame, info.shared_bit()).map_err(VeError::Td)
}

/// Logs the TDCALL counters (`when` says at which point), when the backend is established.
pub fn log_stats(when: &str) {
    if INFO.get().is_none() {
        return;
    }
    let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
    log::info!(
        "tdx: tdcalls {when}: {} io, {} msr, {} mmio, {} map-gpa pages, {} accepted pages, {} #ve, {} report, {} quote",
        c(&COUNTERS.io),
        c(&COUNTERS.msr),
        c(&COUNTERS.mmio),
        c(&COUNTERS.map_gpa_pages),
        c(&COUNTERS.accept_pages),
        c(&COUNTERS.ve),
        c(&COUNTERS.report),
        c(&COUNTERS.quote),
    );
}

/// The shared pool's backend on TDX: MapGPA / accept conversions, copies inside the pool's
/// region (identity-mapped: a shared page's entry carries the shared bit once converted,
/// `crate::dma` remaps it around the conversion).
pub struct TdxPool {
    region: crate::dma::PoolRegion,
    shared_bit: u32,
}

impl TdxPool {
    /// The backend for the pool's region; `None` before [`establish`].
    pub fn new(region: crate::dma::PoolRegion) -> Option<Self> {
        let info = INFO.get()?;
        Some(Self {
            region,
            shared_bit: info.shared_bit(),
        })
    }

    /// Runs `f` on each run of consecutive pages in `gpas` (`(start, bytes)`).
    fn runs(
        &self,
        gpas: &[u64],
        mut f: impl FnMut(u64, u64) -> Result<(), tdx_td::Error>,
    ) -> Result<(), sev_guest::Error> {
        let page = tdx_td::PAGE_SIZE;
        let mut i = 0;
        while let Some(&start) = gpas.get(i) {
            self.region.check(start, page as usize)?;
            let mut n = 1u64;
            while gpas
                .get(i + n as usize)
                .is_some_and(|&g| Some(g) == start.checked_add(n * page))
            {
                self.region.check(start + n * page, page as usize)?;
                n += 1;
            }
            if let Err(e) = f(start, n * page) {
                log::error!("tdx: conversion of {start:#x}+{:#x} failed: {e}", n * page);
                return Err(sev_guest::Error::InvalidArgument(
                    "TDX page conversion failed (see the log)",
                ));
            }
            i += n as usize;
        }
        Ok(())
    }
}

impl sev_guest::pool::PoolBackend for TdxPool {
    fn make_shared(&mut self, gpas: &[u64]) -> Result<(), sev_guest::Error> {
        let sb = self.shared_bit;
        self.runs(gpas, |start, len| {
            count(&COUNTERS.map_gpa_pages, len / tdx_td::PAGE_SIZE);
            tdx_td::mem::make_shared(&mut KernelTdcall, start, len, sb)
        })
    }

    fn make_private(&mut self, gpas: &[u64]) -> Result<(), sev_guest::Error> {
        let sb = self.shared_bit;
        self.runs(gpas, |start, len| {
            count(&COUNTERS.map_gpa_pages, len / tdx_td::PAGE_SIZE);
            count(&COUNTERS.accept_pages, len / tdx_td::PAGE_SIZE);
            tdx_td::mem::make_private(&mut KernelTdcall, start, len, sb)
        })
    }

    fn write_shared(&mut self, gpa: u64, data: &[u8]) -> Result<(), sev_guest::Error> {
        Ok(self.region.write(gpa, data)?)
    }

    fn read_shared(&mut self, gpa: u64, out: &mut [u8]) -> Result<(), sev_guest::Error> {
        Ok(self.region.read(gpa, out)?)
    }
}

/// GetQuote buffer size: header + the quote (a v4 quote with its PEM chain is ~5 KiB; the
/// emulator's is smaller than 8 KiB, hardware's usually below 16 KiB).
const QUOTE_BUFFER_PAGES: usize = 8;
/// How long the host may take to complete a GetQuote.
const QUOTE_TIMEOUT_US: u64 = 60 * 1_000_000;

/// The firmware's ACPI RSDP (from the UEFI configuration table), for the CCEL.
static RSDP: spin::Once<Option<u64>> = spin::Once::new();

/// Records the RSDP the firmware gave (once), where [`Tdx`] looks for the CCEL table.
pub fn record_rsdp(rsdp: Option<u64>) {
    RSDP.call_once(|| rsdp);
}

/// Lowest and highest address the CCEL walk reads: page 0 is our guard page, and the identity
/// map covers at least 4 GiB (`arch::paging::init`), where firmware puts its ACPI tables.
const FIRMWARE_MEMORY: core::ops::Range<u64> = 0x1000..(4 << 30);

/// Reads firmware memory (ACPI tables, the log area) through the identity map.
fn read_firmware(addr: u64, out: &mut [u8]) -> Result<(), tdx_td::ccel::CcelError> {
    let end = addr.checked_add(out.len() as u64);
    if addr < FIRMWARE_MEMORY.start || end.is_none_or(|e| e > FIRMWARE_MEMORY.end) {
        return Err(tdx_td::ccel::CcelError::Unreadable(addr));
    }
    // SAFETY: the range lies in the identity map (checked above) and is only read; in a TD
    // the ACPI tables and the CCEL log area are private memory the TDVF wrote and measured.
    unsafe { core::ptr::copy_nonoverlapping(addr as *const u8, out.as_mut_ptr(), out.len()) };
    Ok(())
}

/// The CC event log: the ACPI CCEL log area (ACPI 6.5 §5.2.34, TDVF Design Guide §10.2) up to
/// the end of its last event (`attest::tdx::eventlog::used_len`); in
/// the loopback-TDX build, whose plain OVMF writes none, the log `tdx-emu` synthesised for the
/// RTMRs it reports (asked by the stub, as the firmware's part).
fn read_event_log() -> Result<Vec<u8>, PlatformError> {
    let found = match RSDP.get().copied().flatten() {
        Some(rsdp) => tdx_td::ccel::find_log_area(rsdp, read_firmware),
        None => Err(tdx_td::ccel::CcelError::BadRsdp),
    };
    match found {
        Ok(area) => {
            let mut log = alloc::vec![0u8; area.len as usize];
            read_firmware(area.start, &mut log).map_err(|e| {
                log::error!("tdx: CCEL: {e}");
                PlatformError::Protocol("CCEL log area unreadable")
            })?;
            // Ship the log, not the whole area: the free space after the last event (a TDVF
            // reserves 64 KiB and fills it with 0xFF) ends where the parser the verifier uses
            // stops. A log that does not parse is shipped whole, so the verifier names why.
            match attest::tdx::eventlog::used_len(&log) {
                Ok(used) => {
                    log.truncate(used);
                    log::info!(
                        "tdx: CC event log: ACPI CCEL log area {:#x}+{:#x}, {used} bytes used",
                        area.start,
                        area.len
                    );
                }
                Err(e) => log::warn!(
                    "tdx: CC event log: ACPI CCEL log area {:#x}+{:#x} does not parse ({e}); shipped whole",
                    area.start,
                    area.len
                ),
            }
            Ok(log)
        }
        #[cfg(feature = "loopback-tdx")]
        Err(e) => {
            let log = crate::loopback_tdx::event_log()?;
            log::info!(
                "tdx: CC event log: no firmware CCEL ({e}); the loopback stub's synthesised log, {} bytes",
                log.len()
            );
            Ok(log)
        }
        #[cfg(not(feature = "loopback-tdx"))]
        Err(e) => {
            log::error!("tdx: CC event log: {e}");
            Err(PlatformError::Protocol("no CC event log"))
        }
    }
}

/// The TDX attestation backend.
pub struct Tdx {
    info: TdInfo,
    /// The CC event log, read once.
    event_log: Option<Vec<u8>>,
}

impl Tdx {
    /// The backend, once [`establish`] ran.
    pub fn new() -> Option<Self> {
        Some(Self {
            info: info()?,
            event_log: None,
        })
    }

    /// TDG.MR.REPORT for `report_data` into private, aligned kernel memory.
    fn td_report(
        &mut self,
        report_data: &[u8; 64],
    ) -> Result<alloc::boxed::Box<ReportBuffers>, PlatformError> {
        let mut bufs = alloc::boxed::Box::new(ReportBuffers::default());
        bufs.report_data = *report_data;
        let report_gpa = core::ptr::from_ref(&bufs.report) as u64;
        let data_gpa = core::ptr::from_ref(&bufs.report_data) as u64;
        count(&COUNTERS.report, 1);
        tdx_td::mr::mr_report(&mut KernelTdcall, report_gpa, data_gpa).map_err(|e| {
            log::error!("tdx: TDG.MR.REPORT: {e}");
            match e {
                // The status class (bits 63:32) is the TDX module's error code.
                tdx_td::Error::Tdcall { status, .. } => {
                    PlatformError::Firmware((status.0 >> 32) as u32)
                }
                _ => PlatformError::Protocol("TDG.MR.REPORT buffers"),
            }
        })?;
        Ok(bufs)
    }

    /// GetQuote with the TDREPORT in a shared-pool buffer, polled until the host is done.
    fn quote(&mut self, td_report: &[u8]) -> Result<Vec<u8>, PlatformError> {
        let pages = QUOTE_BUFFER_PAGES;
        let len = pages * tdx_td::PAGE_SIZE as usize;
        let gpa = crate::dma::alloc(pages)
            .map_err(|_| PlatformError::Transport("no shared pages for GetQuote"))?;
        let result = self.quote_in(gpa, len, td_report);
        if let Err(e) = crate::dma::free(gpa) {
            log::warn!("tdx: GetQuote buffer not returned to the pool: {e}");
        }
        result
    }

    fn quote_in(
        &mut self,
        gpa: u64,
        len: usize,
        td_report: &[u8],
    ) -> Result<Vec<u8>, PlatformError> {
        let mut buf = alloc::vec![0u8; len];
        quote::emit_request(&mut buf, td_report).map_err(quote_error)?;
        crate::dma::write(gpa, &buf).map_err(|_| PlatformError::Transport("GetQuote buffer"))?;
        count(&COUNTERS.quote, 1);
        let shared = gpa | self.info.shared_mask();
        vmcall::get_quote(
            &mut KernelTdcall,
            shared,
            len as u64,
            self.info.shared_bit(),
        )
        .map_err(|e| {
            log::error!("tdx: TDG.VP.VMCALL<GetQuote>: {e}");
            PlatformError::Transport("GetQuote refused by the host")
        })?;
        let start = crate::time::Instant::now();
        loop {
            crate::dma::read(gpa, &mut buf)
                .map_err(|_| PlatformError::Transport("GetQuote buffer"))?;
            if let Some(q) = quote::poll(&buf).map_err(quote_error)? {
                return Ok(q.to_vec());
            }
            if crate::time::Instant::now().micros_since(start) > QUOTE_TIMEOUT_US {
                return Err(PlatformError::Transport("GetQuote did not complete"));
            }
            crate::arch::relax();
        }
    }
}

fn quote_error(e: QuoteBufferError) -> PlatformError {
    log::error!("tdx: GetQuote buffer: {e}");
    match e {
        QuoteBufferError::Status(GetQuoteStatus::QgsUnavailable) => {
            PlatformError::Transport("quote generation service unavailable")
        }
        QuoteBufferError::Status(_) => PlatformError::Protocol("quote generation failed"),
        _ => PlatformError::Protocol("malformed GetQuote buffer"),
    }
}

impl PlatformOps for Tdx {
    fn kind(&self) -> PlatformKind {
        PlatformKind::Tdx
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            attestation: true,
            derived_key: false,
            memory_encryption: true,
        }
    }

    /// The DCAP quote v4 for a TDREPORT binding `report_data`.
    fn attestation_report(&mut self, report_data: &[u8; 64]) -> Result<Vec<u8>, PlatformError> {
        let bufs = self.td_report(report_data)?;
        self.quote(&bufs.report)
    }

    fn derived_key(&mut self) -> Result<Option<DerivedKey>, PlatformError> {
        // TDX has no sealing key (docs/operations.md).
        Ok(None)
    }

    fn event_log(&mut self) -> Result<Option<Vec<u8>>, PlatformError> {
        if self.event_log.is_none() {
            self.event_log = Some(read_event_log()?);
        }
        Ok(self.event_log.clone())
    }
}
