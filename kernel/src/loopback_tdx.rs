//! The loopback-TDX stub: TEST BUILD ONLY (`loopback-tdx` feature; never in a production
//! image — `image` checks the built binary for [`MARKER`]).
//!
//! It replaces exactly what TCG lacks of TDX — the `TDCALL` instruction (`crate::arch::tdx`
//! is the seam) — and plays the TDX module's and the host VMM's side of each call:
//! - TDG.VP.INFO (ABI 348551): GPAW 48 (shared bit 47), ATTRIBUTES = SEPT_VE_DISABLE only,
//!   one vCPU.
//! - TDG.VP.VEINFO.GET: the #VE information [`inject_ve`] armed, valid once (the self-test's
//!   `int 0x14` path; TCG never raises #VE by itself).
//! - TDG.MEM.PAGE.ACCEPT: 4 KiB pages only (a 2 MiB accept answers TDX_PAGE_SIZE_MISMATCH, so
//!   the guest's fallback runs), pending → private and zeroed; already accepted →
//!   TDX_PAGE_ALREADY_ACCEPTED; a shared page → TDX_EPT_WALK_FAILED.
//! - TDG.MR.REPORT: REPORTDATA must be in private memory; the TDREPORT is asked of `tdx-emu`
//!   (`TD_REPORT`, docs/tdx-emu.md) over COM2.
//! - TDG.VP.VMCALL (GHCI 348552 §2.4.1: RCX must expose exactly R10–R15, R10 = 0):
//!   Instruction.IO / CPUID / RDMSR / WRMSR / HLT performed on QEMU's devices with the real
//!   instructions; MapGPA with a page-state map (at most [`MAP_GPA_PAGES_PER_CALL`] pages per
//!   call, then RETRY with the resume GPA, so the guest's retry rule runs) scrambling every
//!   converted page; GetQuote on a buffer that must lie entirely in shared pages, forwarded to
//!   `tdx-emu` (`GET_QUOTE`), statuses mapped as docs/tdx-emu.md says; ReportFatalError
//!   (printed, then isa-debug-exit); #VE.RequestMMIO (GHCI §3.7) performed on QEMU's device
//!   with a volatile access through the private view (`crate::arch::paging::private_view`),
//!   after asserting the GPA carries the shared bit and, without it,
//!   lies in a registered device window (`crate::arch::mmio::windows`) — anything else is
//!   printed and answered TDG.VP.VMCALL_INVALID_OPERAND, which ends the TD. Anything else:
//!   TDG.VP.VMCALL_INVALID_OPERAND.
//! - [`alias_check`]: the boot's proof that bit 47 selects a real alias of the same frames
//!   (QEMU's second mapping of guest RAM at GPA 2^47, [`SHARED_ALIAS`]).
//! - [`host_sees`]: whether a range is entirely in pages made shared, which the virtio DMA
//!   glue asserts on every address it hands to the device.
//!
//! The stub never uses the platform HAL (it *is* the HAL's far side): COM1/COM2 and devices
//! are accessed with the `raw_*` port instructions.

use alloc::collections::BTreeSet;
use alloc::vec::Vec;

use snp_emu_proto::{HEADER_LEN, Header, MagicScanner};
use tdx_td::Regs;
use tdx_td::info::Attributes;
use tdx_td::quote::{GetQuoteStatus, Header as QuoteHeader};
use tdx_td::tdcall::{
    TDG_MEM_PAGE_ACCEPT, TDG_MR_REPORT, TDG_VP_INFO, TDG_VP_VEINFO_GET, TDG_VP_VMCALL,
    TDX_EPT_WALK_FAILED, TDX_NO_VALID_VE_INFO, TDX_OPERAND_INVALID, TDX_PAGE_ALREADY_ACCEPTED,
    TDX_PAGE_SIZE_MISMATCH, TDX_SUCCESS,
};
use tdx_td::ve::VeInfo;
use tdx_td::vmcall::{
    EXPOSE_REGS, VMCALL_CPUID, VMCALL_GET_QUOTE, VMCALL_HLT, VMCALL_IO, VMCALL_MAP_GPA,
    VMCALL_MMIO, VMCALL_RDMSR, VMCALL_REPORT_FATAL_ERROR, VMCALL_WRMSR, VmcallStatus,
};

use crate::arch::{self, port};

/// A string present only in this build (the production-image check looks for it).
pub const MARKER: &str = "LOOPBACK-TDX TEST BUILD: TDCALL is stubbed";

/// Whether the page tables select a shared alias with the shared bit
/// (`crate::arch::tdx::KernelTdcall::SHARED_ALIAS`): yes, as on hardware. TDG.VP.INFO reports
/// GPAW 48, so the page-attribute rule is `PteRule::tdx(48)`: shared pool pages, device BARs
/// and the MMIO holes are mapped with bit 47 set. Under TCG that is real only because the
/// runner (`image::run::tdx_alias_args`) starts QEMU with `phys-bits=48`, RAM in a shared
/// file and a second backend on the same file plugged as a DIMM at GPA 2^47: an access through
/// a bit-47 entry reaches the same frame through that alias ([`alias_check`] proves it at
/// boot). Device memory has no alias: the stub reaches it through its private view
/// (`crate::arch::paging::private_view`).
pub const SHARED_ALIAS: bool = true;

/// GPAW the stub reports (shared bit 47).
const GPAW: u64 = 48;
const SHARED: u64 = 1 << (GPAW - 1);
/// MapGPA converts at most this many pages per call, then answers RETRY.
pub const MAP_GPA_PAGES_PER_CALL: u64 = 64;

/// `tdx-emu`'s framing (docs/tdx-emu.md): snp-emu's header with these magics.
const REQ_MAGIC: [u8; 4] = *b"TDXQ";
const RSP_MAGIC: [u8; 4] = *b"TDXR";
const CMD_GET_QUOTE: u8 = 1;
const CMD_TD_REPORT: u8 = 2;
const CMD_EVENT_LOG: u8 = 4;
const COM2: u16 = 0x2f8;
const REPLY_TIMEOUT_US: u64 = 30 * 1_000_000;

struct State {
    /// GFNs made shared (MapGPA with the shared bit).
    shared: BTreeSet<u64>,
    /// GFNs mapped private again but not accepted yet.
    pending: BTreeSet<u64>,
    ve: Option<VeInfo>,
    rng: u64,
    com2_ready: bool,
}

static STATE: spin::Mutex<State> = spin::Mutex::new(State {
    shared: BTreeSet::new(),
    pending: BTreeSet::new(),
    ve: None,
    rng: 0x9E37_79B9_7F4A_7C15,
    com2_ready: false,
});

/// Stub of `TDCALL`: services `regs` and leaves the outputs in it, as the TDX module would.
pub fn tdcall(regs: &mut Regs) {
    let mut st = STATE.lock();
    let leaf = regs.rax;
    let input = *regs;
    // Outputs start from zero: the module writes every output register of a leaf.
    *regs = Regs::default();
    regs.rax = match leaf {
        TDG_VP_INFO => {
            regs.rcx = GPAW;
            regs.rdx = Attributes::SEPT_VE_DISABLE;
            regs.r8 = 1 | (1 << 32);
            TDX_SUCCESS
        }
        TDG_VP_VEINFO_GET => match st.ve.take() {
            Some(v) => {
                *regs = v.to_regs();
                TDX_SUCCESS
            }
            None => TDX_NO_VALID_VE_INFO,
        },
        TDG_MEM_PAGE_ACCEPT => st.accept(input.rcx),
        TDG_MR_REPORT => st.mr_report(input.rcx, input.rdx),
        TDG_VP_VMCALL => {
            if input.rcx != EXPOSE_REGS || input.r10 != 0 {
                TDX_OPERAND_INVALID
            } else {
                *regs = input;
                let status = st.vmcall(regs);
                regs.r10 = status.to_u64();
                TDX_SUCCESS
            }
        }
        _ => TDX_OPERAND_INVALID,
    };
}

/// Arms the #VE information TDG.VP.VEINFO.GET returns next (the #VE self-test).
pub fn inject_ve(v: VeInfo) {
    STATE.lock().ve = Some(v);
}

/// The CC event log the firmware would have left (plain OVMF outside a TD writes no CCEL):
/// `tdx-emu`'s `EVENT_LOG`, synthesised from the kernel and command line it was given, so it
/// replays to the RTMRs it reports (docs/tdx-emu.md).
pub fn event_log() -> Result<Vec<u8>, super::platform::PlatformError> {
    use super::platform::PlatformError;
    match STATE.lock().emu_call(CMD_EVENT_LOG, &[]) {
        Ok((0, log)) => Ok(log),
        Ok((status, _)) => {
            raw_print(format_args!(
                "ckms: loopback-tdx: tdx-emu EVENT_LOG failed, status {status}\n"
            ));
            Err(PlatformError::Firmware(u32::from(status)))
        }
        Err(e) => Err(PlatformError::Transport(e)),
    }
}

/// Whether the host could see `[gpa, gpa + len)`: every page of it was made shared.
pub fn host_sees(gpa: u64, len: u64) -> bool {
    let Some(last) = gpa.checked_add(len.max(1) - 1) else {
        return false;
    };
    let st = STATE.lock();
    (gpa >> 12..=last >> 12).all(|g| st.shared.contains(&g))
}

/// What [`alias_check`] saw.
#[derive(Debug, Clone, Copy)]
pub struct AliasCheck {
    /// The pool page (its GPA, private view).
    pub gpa: u64,
    /// Its 4 KiB page-table entry (bit 47 set: the shared view).
    pub pte: u64,
    /// Where the private view of the same frame is mapped (bit 47 clear).
    pub private_va: u64,
    /// Written through the shared mapping, read back through the private view.
    pub shared_to_private: (u8, u8),
    /// Written through the private view, read back through the shared mapping.
    pub private_to_shared: (u8, u8),
}

/// Proves the shared alias is real: takes a shared page from the DMA pool (converted by
/// MapGPA, mapped with the shared bit by `paging::set_encrypted`), checks its entry carries
/// bit 47 and that the stub counts it shared, then writes a byte through that mapping (which
/// QEMU resolves in the DIMM at 2^47) and reads it back through the private view of the same
/// frame (bit clear: QEMU's RAM), and the other way round. Without the alias the bit-47 access
/// would hit unassigned space (reads all-ones, writes dropped) and the bytes would differ.
pub fn alias_check() -> Result<AliasCheck, &'static str> {
    let gpa = crate::dma::alloc(1).map_err(|_| "no pool page")?;
    let result = alias_check_page(gpa);
    crate::dma::free(gpa).map_err(|_| "pool page not returned")?;
    result
}

fn alias_check_page(gpa: u64) -> Result<AliasCheck, &'static str> {
    use crate::arch::paging;
    let pte = paging::entry_of(gpa).map_err(|_| "no page-table entry")?;
    if pte & SHARED == 0 || paging::rule().address(pte) != gpa {
        return Err("the pool page's entry lacks the shared bit");
    }
    if !host_sees(gpa, 4096) {
        return Err("the pool page is not shared (MapGPA)");
    }
    let private_va = paging::private_view(gpa, 4096, false).map_err(|_| "no private view")?;
    let shared = (gpa + 0x123) as *mut u8;
    let private = (private_va + 0x123) as *mut u8;
    let mut seen = [(0u8, 0u8); 2];
    for (i, byte) in [0xA5u8, 0x3C].into_iter().enumerate() {
        // SAFETY: `gpa` is a pool page allocated above and owned by this check; `shared` is its
        // identity (shared-view) mapping, `private` the private view of the same frame
        // (`paging::private_view`, write-back). Byte accesses inside the page.
        let read = unsafe {
            if i == 0 {
                shared.write_volatile(byte);
                private.read_volatile()
            } else {
                private.write_volatile(byte);
                shared.read_volatile()
            }
        };
        if let Some(s) = seen.get_mut(i) {
            *s = (byte, read);
        }
        if read != byte {
            return Err(if i == 0 {
                "a byte written through the shared mapping is not in the private view"
            } else {
                "a byte written through the private view is not in the shared mapping"
            });
        }
    }
    Ok(AliasCheck {
        gpa,
        pte,
        private_va,
        shared_to_private: seen[0],
        private_to_shared: seen[1],
    })
}

/// Prints on COM1 with the instructions (the stub runs inside a TDCALL: the HAL is busy).
fn raw_print(args: core::fmt::Arguments<'_>) {
    let mut line = alloc::string::String::new();
    let _ = core::fmt::write(&mut line, args);
    for b in line.bytes() {
        for _ in 0..100_000 {
            if port::raw_inb(0x3FD) & 0x20 != 0 {
                break;
            }
        }
        port::raw_outb(0x3F8, b);
    }
}

fn stop() -> ! {
    port::raw_outb(0xf4, arch::ExitCode::Fault as u8);
    arch::halt_forever()
}

/// One memory access of the identity-mapped guest RAM at `gpa`.
fn guest_read(gpa: u64, out: &mut [u8]) {
    // SAFETY: only called on buffers the guest named in a TDCALL (TDREPORT data, the GetQuote
    // buffer), checked to be page-tracked kernel memory by the callers; the VMM reads them.
    unsafe { core::ptr::copy_nonoverlapping(gpa as *const u8, out.as_mut_ptr(), out.len()) };
}

fn guest_write(gpa: u64, data: &[u8]) {
    // SAFETY: as `guest_read`: a buffer the guest handed over for the module/VMM to write.
    unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), gpa as *mut u8, data.len()) };
}

/// GHCI §3.7 #VE.RequestMMIO as the VMM would do it on QEMU's device: R12 = size, R13 = 0
/// read / 1 write, R14 = the GPA (shared bit set), R15 = the value; a read's value in R11.
fn mmio(r: &mut Regs) -> VmcallStatus {
    let (size, write, gpa, value) = (r.r12, r.r13, r.r14, r.r15);
    let addr = gpa & !SHARED;
    let in_window = crate::arch::mmio::windows().contains(addr, size);
    if gpa & SHARED == 0 || !in_window || !matches!(size, 1 | 2 | 4 | 8) || write > 1 {
        raw_print(format_args!(
            "ckms: loopback-tdx: MMIO refused: gpa {gpa:#x} size {size} write {write} \
             (shared bit {}, in a device window {in_window})\n",
            gpa & SHARED != 0
        ));
        return VmcallStatus::InvalidOperand;
    }
    // The VMM performs the access on the device at its plain GPA: through the private view,
    // since the identity map reaches device memory with the shared bit, in QEMU's alias
    // window, where there is no device.
    let addr = match crate::arch::paging::private_view(addr, size, true) {
        Ok(va) => va,
        Err(e) => {
            raw_print(format_args!(
                "ckms: loopback-tdx: MMIO at {addr:#x}: no private view: {e}\n"
            ));
            return VmcallStatus::InvalidOperand;
        }
    };
    // SAFETY: `addr` is the private view of a device window the kernel registered (a BAR it
    // mapped, the xAPIC page), mapped uncached, and is accessed with the width the guest
    // asked for.
    unsafe {
        match (size, write) {
            (1, 0) => r.r11 = u64::from((addr as *const u8).read_volatile()),
            (2, 0) => r.r11 = u64::from((addr as *const u16).read_volatile()),
            (4, 0) => r.r11 = u64::from((addr as *const u32).read_volatile()),
            (8, 0) => r.r11 = (addr as *const u64).read_volatile(),
            (1, _) => (addr as *mut u8).write_volatile(value as u8),
            (2, _) => (addr as *mut u16).write_volatile(value as u16),
            (4, _) => (addr as *mut u32).write_volatile(value as u32),
            _ => (addr as *mut u64).write_volatile(value),
        }
    }
    VmcallStatus::Success
}

impl State {
    fn scramble(&mut self, gfn: u64) {
        let page = (gfn << 12) as *mut u8;
        for i in 0..4096 {
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            // SAFETY: the guest asked to convert this page (a pool page: its own
            // identity-mapped RAM), whose contents a conversion destroys anyway.
            unsafe { page.add(i).write_volatile(self.rng as u8) };
        }
    }

    fn is_private(&self, gfn: u64) -> bool {
        !self.shared.contains(&gfn) && !self.pending.contains(&gfn)
    }

    fn accept(&mut self, rcx: u64) -> u64 {
        let level = rcx & 7;
        let gpa = rcx & !0xFFF & (SHARED - 1);
        if rcx & !0xFFF != gpa {
            return TDX_OPERAND_INVALID;
        }
        match level {
            0 => {}
            1 => return TDX_PAGE_SIZE_MISMATCH,
            _ => return TDX_OPERAND_INVALID,
        }
        let gfn = gpa >> 12;
        if self.shared.contains(&gfn) {
            return TDX_EPT_WALK_FAILED;
        }
        if !self.pending.remove(&gfn) {
            return TDX_PAGE_ALREADY_ACCEPTED;
        }
        // SAFETY: a page the guest converted to private and now accepts: the module zeroes it.
        unsafe { core::ptr::write_bytes(gpa as *mut u8, 0, 4096) };
        TDX_SUCCESS
    }

    fn mr_report(&mut self, report_gpa: u64, data_gpa: u64) -> u64 {
        let private =
            |st: &Self, a: u64, len: u64| (a >> 12..=(a + len - 1) >> 12).all(|g| st.is_private(g));
        if !report_gpa.is_multiple_of(1024)
            || !data_gpa.is_multiple_of(64)
            || report_gpa & SHARED != 0
            || data_gpa & SHARED != 0
            || !private(self, report_gpa, 1024)
            || !private(self, data_gpa, 64)
        {
            return TDX_OPERAND_INVALID;
        }
        let mut data = [0u8; 64];
        guest_read(data_gpa, &mut data);
        match self.emu_call(CMD_TD_REPORT, &data) {
            Ok((0, report)) if report.len() == 1024 => {
                guest_write(report_gpa, &report);
                TDX_SUCCESS
            }
            Ok((status, _)) => {
                raw_print(format_args!(
                    "ckms: loopback-tdx: tdx-emu TD_REPORT failed, status {status}\n"
                ));
                TDX_OPERAND_INVALID
            }
            Err(e) => {
                raw_print(format_args!("ckms: loopback-tdx: tdx-emu: {e}\n"));
                TDX_OPERAND_INVALID
            }
        }
    }

    fn vmcall(&mut self, r: &mut Regs) -> VmcallStatus {
        match r.r11 {
            VMCALL_IO => {
                let (size, write, p, data) = (r.r12, r.r13, r.r14, r.r15);
                let Ok(p) = u16::try_from(p) else {
                    return VmcallStatus::InvalidOperand;
                };
                match (size, write) {
                    (1, 0) => r.r11 = u64::from(port::raw_inb(p)),
                    (2, 0) => r.r11 = u64::from(port::raw_inw(p)),
                    (4, 0) => r.r11 = u64::from(port::raw_inl(p)),
                    (1, 1) => port::raw_outb(p, data as u8),
                    (2, 1) => port::raw_outw(p, data as u16),
                    (4, 1) => port::raw_outl(p, data as u32),
                    _ => return VmcallStatus::InvalidOperand,
                }
                VmcallStatus::Success
            }
            VMCALL_CPUID => {
                let c = arch::cpuid(r.r12 as u32, r.r13 as u32);
                (r.r12, r.r13, r.r14, r.r15) = (
                    u64::from(c.eax),
                    u64::from(c.ebx),
                    u64::from(c.ecx),
                    u64::from(c.edx),
                );
                VmcallStatus::Success
            }
            VMCALL_RDMSR => {
                // SAFETY: the kernel reads only MSRs it would read natively under TCG.
                r.r11 = unsafe { arch::rdmsr_instruction(r.r12 as u32) };
                VmcallStatus::Success
            }
            VMCALL_WRMSR => {
                // SAFETY: the kernel writes only MSRs it would write natively.
                unsafe { arch::wrmsr_instruction(r.r12 as u32, r.r13) };
                VmcallStatus::Success
            }
            VMCALL_HLT => {
                if r.r12 != 0 {
                    raw_print(format_args!(
                        "ckms: loopback-tdx: HLT with interrupts blocked: the vCPU would never wake\n"
                    ));
                    stop();
                }
                // SAFETY: the guest asked to halt with interrupts unblocked: `sti; hlt` (the
                // STI shadow makes it atomic), then mask again as the caller expects.
                unsafe { core::arch::asm!("sti", "hlt", "cli", options(nomem, nostack)) };
                VmcallStatus::Success
            }
            VMCALL_MAP_GPA => self.map_gpa(r),
            VMCALL_MMIO => mmio(r),
            VMCALL_GET_QUOTE => self.get_quote(r.r12, r.r13),
            VMCALL_REPORT_FATAL_ERROR => {
                raw_print(format_args!(
                    "ckms: loopback-tdx: ReportFatalError, code {:#x}\n",
                    r.r12
                ));
                stop()
            }
            _ => VmcallStatus::InvalidOperand,
        }
    }

    /// GHCI §3.2 MapGPA, as a VMM that converts at most [`MAP_GPA_PAGES_PER_CALL`] pages.
    fn map_gpa(&mut self, r: &mut Regs) -> VmcallStatus {
        let (gpa, len) = (r.r12, r.r13);
        let to_shared = gpa & SHARED != 0;
        let start = gpa & !SHARED;
        if !start.is_multiple_of(4096) || !len.is_multiple_of(4096) || len == 0 {
            return VmcallStatus::AlignError;
        }
        let Some(end) = start.checked_add(len).filter(|&e| e <= SHARED) else {
            return VmcallStatus::InvalidOperand;
        };
        let pages = (end - start) / 4096;
        let n = pages.min(MAP_GPA_PAGES_PER_CALL);
        for i in 0..n {
            let gfn = (start >> 12) + i;
            if to_shared {
                self.pending.remove(&gfn);
                self.shared.insert(gfn);
            } else {
                self.shared.remove(&gfn);
                self.pending.insert(gfn);
            }
            self.scramble(gfn);
        }
        if n < pages {
            r.r11 = (start + n * 4096) | (gpa & SHARED);
            return VmcallStatus::Retry;
        }
        VmcallStatus::Success
    }

    /// GHCI §3.3 GetQuote: the buffer must be entirely shared; completed synchronously.
    fn get_quote(&mut self, gpa: u64, len: u64) -> VmcallStatus {
        if gpa & SHARED == 0 || len < 4096 || !len.is_multiple_of(4096) {
            return VmcallStatus::InvalidOperand;
        }
        let start = gpa & !SHARED;
        if !start.is_multiple_of(4096)
            || !(start >> 12..(start + len) >> 12).all(|g| self.shared.contains(&g))
        {
            raw_print(format_args!(
                "ckms: loopback-tdx: GetQuote buffer {start:#x}+{len:#x} is not entirely shared\n"
            ));
            return VmcallStatus::InvalidOperand;
        }
        let mut buf = alloc::vec![0u8; len as usize];
        guest_read(start, &mut buf);
        let status = match QuoteHeader::parse(&buf) {
            Ok(h) if h.version == 1 && h.in_len == 1024 => {
                let report = buf.get(tdx_td::quote::HEADER_LEN..tdx_td::quote::HEADER_LEN + 1024);
                match report.map(|r| self.emu_call(CMD_GET_QUOTE, r)) {
                    Some(Ok((0, quote)))
                        if quote.len() + tdx_td::quote::HEADER_LEN <= buf.len() =>
                    {
                        buf[tdx_td::quote::HEADER_LEN..][..quote.len()].copy_from_slice(&quote);
                        Ok(quote.len() as u32)
                    }
                    Some(Err(e)) => {
                        raw_print(format_args!("ckms: loopback-tdx: tdx-emu: {e}\n"));
                        Err(GetQuoteStatus::QgsUnavailable)
                    }
                    _ => Err(GetQuoteStatus::Error),
                }
            }
            _ => Err(GetQuoteStatus::Error),
        };
        let (status, out_len) = match status {
            Ok(n) => (GetQuoteStatus::Success, n),
            Err(s) => (s, 0),
        };
        let hdr = QuoteHeader {
            version: 1,
            status,
            in_len: 1024,
            out_len,
        };
        if hdr.emit(&mut buf).is_err() {
            return VmcallStatus::InvalidOperand;
        }
        guest_write(start, &buf);
        VmcallStatus::Success
    }

    /// One request/reply with `tdx-emu` on COM2: `(reply status, payload)`.
    fn emu_call(&mut self, cmd: u8, payload: &[u8]) -> Result<(u16, Vec<u8>), &'static str> {
        if !self.com2_ready {
            for (off, v) in [
                (1, 0x00),
                (3, 0x80),
                (0, 0x01),
                (1, 0x00),
                (3, 0x03),
                (2, 0xc7),
                (4, 0x03),
            ] {
                port::raw_outb(COM2 + off, v);
            }
            while port::raw_inb(COM2 + 5) & 1 != 0 {
                port::raw_inb(COM2);
            }
            self.com2_ready = true;
        }
        let frame = snp_emu_proto::emit_frame(REQ_MAGIC, cmd, 0, payload)
            .map_err(|_| "request too large")?;
        for b in frame {
            while port::raw_inb(COM2 + 5) & 0x20 == 0 {
                core::hint::spin_loop();
            }
            port::raw_outb(COM2, b);
        }
        let start = crate::time::Instant::now();
        let read = |buf: &mut [u8]| -> Result<(), &'static str> {
            for b in buf.iter_mut() {
                while port::raw_inb(COM2 + 5) & 1 == 0 {
                    if crate::time::Instant::now().micros_since(start) > REPLY_TIMEOUT_US {
                        return Err("no reply on COM2");
                    }
                    core::hint::spin_loop();
                }
                *b = port::raw_inb(COM2);
            }
            Ok(())
        };
        loop {
            let mut scanner = MagicScanner::new(RSP_MAGIC);
            loop {
                let mut b = [0u8; 1];
                read(&mut b)?;
                if scanner.push(b[0]).map_err(|_| "no reply header")? {
                    break;
                }
            }
            let mut head = [0u8; HEADER_LEN];
            let (magic, rest) = head.split_at_mut(RSP_MAGIC.len());
            magic.copy_from_slice(&RSP_MAGIC);
            read(rest)?;
            let reply = Header::parse(&head, RSP_MAGIC).map_err(|_| "bad reply header")?;
            let mut body = alloc::vec![0u8; reply.payload_len()];
            read(&mut body)?;
            if reply.cmd == 0 {
                continue; // a reply to unframed bytes (firmware output on COM2)
            }
            if reply.cmd != cmd {
                return Err("reply to another command");
            }
            return Ok((reply.status, body));
        }
    }
}
