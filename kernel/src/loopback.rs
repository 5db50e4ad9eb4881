//! The loopback-GHCB stub: TEST BUILD ONLY (`loopback-ghcb` feature; never in a production
//! image — `image` checks the built binary for [`MARKER`]).
//!
//! It replaces exactly what TCG lacks of SEV-SNP — `VMGEXIT`, `PVALIDATE` and the GHCB MSR
//! they talk through ([`crate::arch::sev`] is the seam) — and plays the hypervisor's side of
//! AMD 56421 for each exit, on QEMU's real devices:
//! - GHCB MSR protocol: SEV information (protocol 1..2, C-bit 51), hypervisor features
//!   (SNP), GHCB GPA registration (refused unless the page was made shared first), page-state
//!   change, termination (printed, then isa-debug-exit).
//! - GHCB exits, refused unless the GHCB page is registered and shared: IOIO and MSR on the
//!   real ports and MSRs, MMIO on the identity-mapped address, page-state change.
//!   Anything else (guest requests among them, not routed through the GHCB yet) is answered
//!   "malformed, invalid input", which the kernel treats as fatal.
//! - An RMP-like page-state map: making a still-validated page shared, validating a shared
//!   page or validating twice is caught ([`pvalidate`]'s "not updated" / `FAIL_INPUT`, or a
//!   panic for the hypervisor-side violation), and every conversion scrambles the page's
//!   contents, as the other encryption view would.
//! - [`host_sees`]: whether a range is entirely in pages made shared, which the virtio DMA
//!   glue asserts on every address it hands to the device.

use alloc::boxed::Box;
use alloc::collections::BTreeSet;
use core::sync::atomic::{AtomicU64, Ordering};

use sev_guest::ghcb::{GHCB_SIZE, GhcbField};
use sev_guest::msr::{self, HvFeatures, PageOp, SevInfo};
use sev_guest::nae::{IoSize, IoioInfo, MalformedReason, exit_code};
use sev_guest::psc::{self, PSC_MAX_ENTRIES, PscEntry, PscHeader};
use sev_guest::{Ghcb, PageSize};

use crate::arch::{self, port};

/// A string present only in this build (the production-image check looks for it).
pub const MARKER: &str = "LOOPBACK-GHCB TEST BUILD: VMGEXIT/PVALIDATE are stubbed";

/// The GHCB MSR TCG does not have.
static GHCB_MSR: AtomicU64 = AtomicU64::new(0);

struct State {
    registered: Option<u64>,
    /// GFNs the "hypervisor" owns (made shared).
    shared: BTreeSet<u64>,
    /// Private GFNs whose validation was rescinded (or never redone after a conversion).
    unvalidated: BTreeSet<u64>,
    rng: u64,
    ghcb: Option<Box<Ghcb>>,
}

static STATE: spin::Mutex<State> = spin::Mutex::new(State {
    registered: None,
    shared: BTreeSet::new(),
    unvalidated: BTreeSet::new(),
    rng: 0x9E37_79B9_7F4A_7C15,
    ghcb: None,
});

/// Stub of the GHCB MSR write.
///
/// # Safety
/// None beyond the real one's contract (kept `unsafe` so the seam has one signature).
pub unsafe fn ghcb_msr_write(value: u64) {
    GHCB_MSR.store(value, Ordering::SeqCst);
}

/// Stub of the GHCB MSR read.
///
/// # Safety
/// As [`ghcb_msr_write`].
pub unsafe fn ghcb_msr_read() -> u64 {
    GHCB_MSR.load(Ordering::SeqCst)
}

/// Stub of `VMGEXIT`: services the GHCB MSR protocol request or the GHCB exit.
///
/// # Safety
/// As the real one: for a GHCB exit, the GHCB MSR holds the GHCB page's identity address.
pub unsafe fn vmgexit() {
    let v = GHCB_MSR.load(Ordering::SeqCst);
    let mut st = STATE.lock();
    if v & 0xFFF != 0 {
        let r = st.msr_protocol(v);
        GHCB_MSR.store(r, Ordering::SeqCst);
    } else {
        // SAFETY: caller contract: `v` is the GHCB page.
        unsafe { st.exit(v) };
    }
}

/// Stub of `PVALIDATE`: `(EAX, CF)` as the instruction returns them.
///
/// # Safety
/// As the real one.
pub unsafe fn pvalidate(va: u64, large: bool, validate: bool) -> (u32, bool) {
    if large || va & 0xFFF != 0 {
        return (1, false); // FAIL_INPUT
    }
    let gfn = va >> 12;
    let mut st = STATE.lock();
    if st.shared.contains(&gfn) {
        return (1, false); // not assigned to the guest
    }
    let validated = !st.unvalidated.contains(&gfn);
    if validated == validate {
        return (0, true); // not updated
    }
    if validate {
        st.unvalidated.remove(&gfn);
    } else {
        st.unvalidated.insert(gfn);
    }
    (0, false)
}

/// Whether the host could see `[gpa, gpa + len)`: every page of it was made shared.
pub fn host_sees(gpa: u64, len: u64) -> bool {
    let Some(last) = gpa.checked_add(len.max(1) - 1) else {
        return false;
    };
    let st = STATE.lock();
    (gpa >> 12..=last >> 12).all(|g| st.shared.contains(&g))
}

/// Prints on COM1 with the instructions (the stub runs inside an exit: the HAL is busy).
fn raw_print(s: &str) {
    for b in s.bytes() {
        for _ in 0..100_000 {
            if port::raw_inb(0x3FD) & 0x20 != 0 {
                break;
            }
        }
        port::raw_outb(0x3F8, b);
    }
}

impl State {
    fn scramble(&mut self, gfn: u64) {
        let page = (gfn << 12) as *mut u8;
        for i in 0..4096 {
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            // SAFETY: the guest asked to convert this page: its own identity-mapped RAM (the
            // GHCB page or a pool page), whose contents a conversion destroys anyway.
            unsafe { page.add(i).write_volatile(self.rng as u8) };
        }
    }

    /// RMPUPDATE for a page-state change; false for a violation the hypervisor refuses.
    fn convert(&mut self, gfn: u64, op: PageOp) -> bool {
        match op {
            PageOp::Shared => {
                if !self.shared.contains(&gfn) && !self.unvalidated.contains(&gfn) {
                    raw_print("ckms: loopback-ghcb: page made shared while still validated\n");
                    return false;
                }
                self.unvalidated.remove(&gfn);
                self.shared.insert(gfn);
            }
            PageOp::Private => {
                self.shared.remove(&gfn);
                self.unvalidated.insert(gfn);
            }
        }
        self.scramble(gfn);
        true
    }

    fn msr_protocol(&mut self, request: u64) -> u64 {
        match (request & 0xFFF) as u16 {
            msr::info::SEV_INFO_REQ => SevInfo {
                max_version: 2,
                min_version: 1,
                cbit: 51,
            }
            .emit(),
            msr::info::HV_FEATURES_REQ => HvFeatures(HvFeatures::SNP).emit(),
            msr::info::REGISTER_GPA_REQ => {
                let gfn = request >> 12;
                if !self.shared.contains(&gfn) {
                    return 0xFFFF_FFFF_FFFF_F013;
                }
                self.registered = Some(gfn);
                (gfn << 12) | 0x013
            }
            msr::info::PSC_REQ => match msr::parse_psc_request(request) {
                Some((gfn, op)) if self.convert(gfn, op) => msr::psc_response(0),
                _ => msr::psc_response(0x10),
            },
            msr::info::TERMINATE_REQ => {
                if let Some((set, code)) = msr::parse_terminate_request(request) {
                    let mut line = alloc::string::String::new();
                    let _ = core::fmt::write(
                        &mut line,
                        format_args!(
                            "ckms: loopback-ghcb: termination request, reason set {set:#x} code {code:#x}\n"
                        ),
                    );
                    raw_print(&line);
                }
                port::raw_outb(0xf4, arch::ExitCode::Fault as u8);
                arch::halt_forever()
            }
            _ => 0,
        }
    }

    fn psc(&mut self, g: &mut Ghcb) -> u64 {
        let hdr = PscHeader::read(g.shared_buffer());
        if usize::from(hdr.end_entry) >= PSC_MAX_ENTRIES || hdr.reserved != 0 {
            return psc::PSC_ERROR_INVALID_HEADER;
        }
        let mut cur = hdr.cur_entry;
        while cur <= hdr.end_entry {
            let Some(e) =
                psc::read_entry(g.shared_buffer(), usize::from(cur)).and_then(PscEntry::decode)
            else {
                return psc::PSC_ERROR_INVALID_ENTRY;
            };
            if e.size != PageSize::Size4K || !self.convert(e.gfn, e.op) {
                return psc::PSC_ERROR_INVALID_ENTRY;
            }
            cur += 1;
        }
        PscHeader {
            cur_entry: cur,
            end_entry: hdr.end_entry,
            reserved: 0,
        }
        .write(g.shared_buffer_mut());
        0
    }

    /// One GHCB exit on the page at `gpa`.
    ///
    /// # Safety
    /// `gpa` is the identity-mapped GHCB page.
    unsafe fn exit(&mut self, gpa: u64) {
        let mut g = self.ghcb.take().unwrap_or_else(|| Box::new(Ghcb::new()));
        // SAFETY: caller contract: a 4 KiB page, distinct from the private `g`.
        unsafe {
            core::ptr::copy_nonoverlapping(
                gpa as *const u8,
                g.as_bytes_mut().as_mut_ptr(),
                GHCB_SIZE,
            )
        };
        let (info1, info2) = self.service(&mut g, gpa);
        g.set(GhcbField::SwExitInfo1, info1);
        g.set(GhcbField::SwExitInfo2, info2);
        // SAFETY: as above, the other direction.
        unsafe { core::ptr::copy_nonoverlapping(g.as_bytes().as_ptr(), gpa as *mut u8, GHCB_SIZE) };
        self.ghcb = Some(g);
    }

    /// Services the exit in `g`; returns `(SW_EXITINFO1, SW_EXITINFO2)`.
    fn service(&mut self, g: &mut Ghcb, gpa: u64) -> (u64, u64) {
        let malformed = |r: MalformedReason| (2, r.to_info2());
        if self.registered != Some(gpa >> 12) || !self.shared.contains(&(gpa >> 12)) {
            return malformed(MalformedReason::NotRegistered);
        }
        let code = g.page().sw_exit_code.get();
        let (Some(info1), rax, rcx, rdx, scratch) = (
            g.get(GhcbField::SwExitInfo1),
            g.get(GhcbField::Rax),
            g.get(GhcbField::Rcx),
            g.get(GhcbField::Rdx),
            g.get(GhcbField::SwScratch),
        ) else {
            return malformed(MalformedReason::MissingInput);
        };
        let info2_in = g.page().sw_exit_info_2.get();
        if g.protocol_version() != 2 || g.usage() != 0 {
            return malformed(MalformedReason::InvalidUsage);
        }
        g.clear_valid();
        match code {
            exit_code::IOIO => {
                let Ok(io) = IoioInfo::decode(info1) else {
                    return malformed(MalformedReason::InvalidInput);
                };
                if io.string || io.rep {
                    return malformed(MalformedReason::InvalidInput);
                }
                if io.is_in {
                    let v = match io.size {
                        IoSize::B8 => u32::from(port::raw_inb(io.port)),
                        IoSize::B16 => u32::from(port::raw_inw(io.port)),
                        IoSize::B32 => port::raw_inl(io.port),
                    };
                    g.set(GhcbField::Rax, u64::from(v));
                } else {
                    let Some(v) = rax else {
                        return malformed(MalformedReason::MissingInput);
                    };
                    match io.size {
                        IoSize::B8 => port::raw_outb(io.port, v as u8),
                        IoSize::B16 => port::raw_outw(io.port, v as u16),
                        IoSize::B32 => port::raw_outl(io.port, v as u32),
                    }
                }
                (0, 0)
            }
            exit_code::MSR => {
                let Some(msr) = rcx.map(|c| c as u32) else {
                    return malformed(MalformedReason::MissingInput);
                };
                if info1 == 0 {
                    // SAFETY: the kernel reads only MSRs it would read natively under TCG.
                    let v = unsafe { arch::rdmsr_instruction(msr) };
                    g.set(GhcbField::Rax, v & 0xFFFF_FFFF);
                    g.set(GhcbField::Rdx, v >> 32);
                } else {
                    let (Some(a), Some(d)) = (rax, rdx) else {
                        return malformed(MalformedReason::MissingInput);
                    };
                    // SAFETY: the kernel writes only MSRs it would write natively.
                    unsafe { arch::wrmsr_instruction(msr, (a & 0xFFFF_FFFF) | (d << 32)) };
                }
                (0, 0)
            }
            exit_code::MMIO_READ | exit_code::MMIO_WRITE => {
                if scratch != Some(gpa + sev_guest::ghcb::SHARED_BUFFER_OFFSET as u64) {
                    return malformed(MalformedReason::InvalidScratchArea);
                }
                let len = info2_in as usize;
                if !matches!(len, 1 | 2 | 4 | 8) || !info1.is_multiple_of(len as u64) {
                    return malformed(MalformedReason::InvalidInput);
                }
                let buf = g.shared_buffer_mut();
                let mut v = [0u8; 8];
                if code == exit_code::MMIO_WRITE {
                    v[..len].copy_from_slice(&buf[..len]);
                }
                let v = u64::from_le_bytes(v);
                // SAFETY: an MMIO address the kernel mapped and would access itself with
                // this width (the stub does the access the guest asked for, as KVM would).
                let r = unsafe { mmio(info1, len, code == exit_code::MMIO_WRITE, v) };
                if code == exit_code::MMIO_READ {
                    buf[..len].copy_from_slice(&r.to_le_bytes()[..len]);
                }
                (0, 0)
            }
            exit_code::PSC => {
                if scratch != Some(gpa + sev_guest::ghcb::SHARED_BUFFER_OFFSET as u64) {
                    return malformed(MalformedReason::InvalidScratchArea);
                }
                (0, self.psc(g))
            }
            _ => malformed(MalformedReason::InvalidInput),
        }
    }
}

/// One MMIO access of `len` bytes at `addr`; returns the value read (0 for a write).
///
/// # Safety
/// `addr` is mapped device memory, aligned to `len` (1, 2, 4 or 8).
unsafe fn mmio(addr: u64, len: usize, write: bool, value: u64) -> u64 {
    // SAFETY: caller contract.
    unsafe {
        match (len, write) {
            (1, false) => u64::from((addr as *const u8).read_volatile()),
            (2, false) => u64::from((addr as *const u16).read_volatile()),
            (4, false) => u64::from((addr as *const u32).read_volatile()),
            (_, false) => (addr as *const u64).read_volatile(),
            (1, true) => {
                (addr as *mut u8).write_volatile(value as u8);
                0
            }
            (2, true) => {
                (addr as *mut u16).write_volatile(value as u16);
                0
            }
            (4, true) => {
                (addr as *mut u32).write_volatile(value as u32);
                0
            }
            (_, true) => {
                (addr as *mut u64).write_volatile(value);
                0
            }
        }
    }
}
