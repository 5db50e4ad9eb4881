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
//!   SNP guest requests, plain and extended (56421 §4.1.8, §4.1.8.1): the encrypted request
//!   page is forwarded to `snp-emu` over COM2 (the emulated AMD secure processor) and its
//!   answer written to the response page, as KVM hands the pages to the firmware's
//!   `SNP_GUEST_REQUEST` (56860 §8.26); the certificate table comes from `snp-emu` at launch.
//!   Anything else is answered "malformed, invalid input", which the kernel treats as fatal.
//! - The launch ([`launch`]): the stub plays the PSP and OVMF. It takes VMPCK0 from `snp-emu`,
//!   fills a secrets page (56860 Table 73) with it and publishes a Confidential Computing blob
//!   naming that page, which the kernel then finds where it looks for OVMF's
//!   ([`cc_blob`]). The kernel reads VMPCK0 from the secrets page, exactly as on hardware.
//! - An RMP-like page-state map: making a still-validated page shared, validating a shared
//!   page or validating twice is caught ([`pvalidate`]'s "not updated" / `FAIL_INPUT`, or a
//!   panic for the hypervisor-side violation), and every conversion scrambles the page's
//!   contents, as the other encryption view would.
//! - [`host_sees`]: whether a range is entirely in pages made shared, which the virtio DMA
//!   glue asserts on every address it hands to the device.

use alloc::boxed::Box;
use alloc::collections::BTreeSet;
use core::sync::atomic::{AtomicU64, Ordering};

use alloc::vec::Vec;

use sev_guest::ccblob::{CC_BLOB_MAGIC, secrets};
use sev_guest::ghcb::{GHCB_SIZE, GhcbField};
use sev_guest::msr::{self, HvFeatures, PageOp, SevInfo};
use sev_guest::nae::{IoSize, IoioInfo, MalformedReason, exit_code};
use sev_guest::psc::{self, PSC_MAX_ENTRIES, PscEntry, PscHeader};
use sev_guest::{Ghcb, PageSize};

use crate::arch::{self, port};
use crate::console::Uart;
use crate::platform::emulated;

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
    /// The certificate table the host serves with extended guest requests (from `snp-emu`).
    certs: Vec<u8>,
    /// Guest requests seen (the first is answered BUSY once).
    guest_requests: u64,
}

static STATE: spin::Mutex<State> = spin::Mutex::new(State {
    registered: None,
    shared: BTreeSet::new(),
    unvalidated: BTreeSet::new(),
    rng: 0x9E37_79B9_7F4A_7C15,
    ghcb: None,
    certs: Vec::new(),
    guest_requests: 0,
});

/// The CC blob [`launch`] published.
static CC_BLOB: spin::Once<u64> = spin::Once::new();

/// `snp-emu`'s UART, driven with the port instructions (the stub is the host).
const EMU: Uart = Uart::raw(emulated::COM2);

/// VMM error "generic" (KVM's `SNP_GUEST_VMM_ERR_GENERIC`, `SW_EXITINFO2[63:32]` all ones):
/// the host could not reach the firmware.
const VMM_ERR_GENERIC: u64 = 0xFFFF_FFFF << 32;
/// The firmware status the stub reports when `snp-emu` refuses a request (bad sequence number,
/// authentication failure, malformed message): `INVALID_PARAM` (56860 Table 18 status codes).
const FW_INVALID_PARAM: u64 = 0x16;
/// `SW_EXITINFO2` for BUSY (VMM error 2).
const VMM_ERR_BUSY: u64 = 2 << 32;
/// `SW_EXITINFO2` for INVALID_LEN (VMM error 1).
const VMM_ERR_INVALID_LEN: u64 = 1 << 32;

/// Why [`launch`] failed.
#[derive(Debug)]
pub enum LaunchError {
    /// `snp-emu` did not hand out VMPCK0 or the certificate table.
    Emulator(crate::platform::PlatformError),
    /// VMPCK0 is not 32 bytes.
    BadVmpck,
    /// No memory for the pages.
    NoMemory,
    /// Launched twice.
    Twice,
}

impl core::fmt::Display for LaunchError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Emulator(e) => write!(f, "loopback-ghcb launch: snp-emu: {e}"),
            Self::BadVmpck => f.write_str("loopback-ghcb launch: VMPCK0 is not 32 bytes"),
            Self::NoMemory => f.write_str("loopback-ghcb launch: no memory for the pages"),
            Self::Twice => f.write_str("loopback-ghcb launch: launched twice"),
        }
    }
}

/// One zeroed page from the heap, never freed (firmware-owned from the kernel's view).
fn leak_page() -> Result<*mut u8, LaunchError> {
    let layout =
        core::alloc::Layout::from_size_align(4096, 4096).map_err(|_| LaunchError::NoMemory)?;
    // SAFETY: non-zero size; the page is never deallocated.
    let page = unsafe { alloc::alloc::alloc_zeroed(layout) };
    if page.is_null() {
        Err(LaunchError::NoMemory)
    } else {
        Ok(page)
    }
}

/// The C-bit position the stub's "hypervisor" reports (SEV information) and its CPUID page
/// holds (CPUID 0x8000_001F EBX\[5:0\]), as on EPYC Milan/Genoa.
pub const CBIT: u8 = 51;

/// The CPUID page as the hypervisor fills it and the PSP checks it (56860 §8.17.2): the real
/// `cpuid` instruction's answers for the basic leaves up to 0x1F and the extended leaves up to
/// 0x8000_0021 (sub-leaf 0; leaf 7 also its other sub-leaves), leaves answering all zeros
/// left out, at most 64 entries; 0x8000_001F as an SNP host advertises it (SEV, SEV-ES, SNP;
/// C-bit [`CBIT`]), which TCG does not.
fn fill_cpuid_page() -> [u8; 4096] {
    use sev_guest::cpuid::{CpuidFunction, CpuidPageBuilder, CpuidResult};
    let mut b = CpuidPageBuilder::new();
    let mut push = |leaf: u32, sub: u32, r: arch::Cpuid| {
        if r.eax | r.ebx | r.ecx | r.edx == 0 {
            return true;
        }
        let out = CpuidResult {
            eax: r.eax,
            ebx: r.ebx,
            ecx: r.ecx,
            edx: r.edx,
        };
        b.push(CpuidFunction::new(leaf, sub, 0, 0, out)).is_ok()
    };
    let max_ext = arch::cpuid_instruction(0x8000_0000, 0).eax;
    let mut full = false;
    for leaf in 0x8000_0000..=max_ext.clamp(0x8000_001F, 0x8000_0021) {
        let r = match leaf {
            0x8000_0000 => arch::Cpuid {
                eax: max_ext.max(0x8000_001F),
                ..arch::cpuid_instruction(leaf, 0)
            },
            // EAX: SEV (bit 1), SEV-ES (3), SNP (4); EBX[5:0] the C-bit, [11:6] no
            // physical-address reduction. APM vol. 3, CPUID Fn8000_001F.
            0x8000_001F => arch::Cpuid {
                eax: (1 << 1) | (1 << 3) | (1 << 4),
                ebx: u32::from(CBIT),
                ecx: 1,
                edx: 1,
            },
            _ => arch::cpuid_instruction(leaf, 0),
        };
        full |= !push(leaf, 0, r);
    }
    let max_basic = arch::cpuid_instruction(0, 0).eax.min(0x1F);
    for leaf in 0..=max_basic {
        let r = arch::cpuid_instruction(leaf, 0);
        full |= !push(leaf, 0, r);
        if leaf == 7 {
            for sub in 1..=r.eax.min(2) {
                full |= !push(7, sub, arch::cpuid_instruction(7, sub));
            }
        }
    }
    if full {
        raw_print("ckms: loopback-ghcb: CPUID page full (64 entries); later leaves left out\n");
    }
    b.to_bytes()
}

/// Plays the PSP's and OVMF's part of an SNP launch: VMPCK0 from `snp-emu` into a secrets
/// page (56860 Table 73: `VERSION` 3, `VMPCK0` at 20h), the certificate table kept for
/// extended guest requests, the CPUID page ([`fill_cpuid_page`]) and a CC blob (`"AMDE"`,
/// version 1, naming both pages) published for [`cc_blob`]. Returns the blob's address. Runs
/// before the GHCB session (raw COM2).
pub fn launch() -> Result<u64, LaunchError> {
    if CC_BLOB.is_completed() {
        return Err(LaunchError::Twice);
    }
    emulated::open(&EMU);
    let key =
        emulated::call(&EMU, snp_emu_proto::Cmd::GetVmpck, &[]).map_err(LaunchError::Emulator)?;
    let key = zeroize::Zeroizing::new(key);
    if key.len() != secrets::VMPCK_LEN {
        return Err(LaunchError::BadVmpck);
    }
    let certs =
        emulated::call(&EMU, snp_emu_proto::Cmd::GetCerts, &[]).map_err(LaunchError::Emulator)?;
    let secrets_page = leak_page()?;
    let cpuid_page = leak_page()?;
    let blob = leak_page()?;
    let cpuid = fill_cpuid_page();
    // SAFETY: three fresh, distinct, zeroed 4 KiB heap pages this function owns; every write
    // is inside its page (VMPCK0 ends at 40h; the CPUID page is 4096 bytes; the blob 40).
    unsafe {
        secrets_page.cast::<u32>().write(3); // VERSION
        core::ptr::copy_nonoverlapping(
            key.as_ptr(),
            secrets_page.add(secrets::VMPCK0),
            secrets::VMPCK_LEN,
        );
        core::ptr::copy_nonoverlapping(cpuid.as_ptr(), cpuid_page, cpuid.len());
        blob.cast::<u32>().write(CC_BLOB_MAGIC);
        blob.add(0x04).cast::<u16>().write(1); // VERSION
        blob.add(0x08).cast::<u64>().write(secrets_page as u64);
        blob.add(0x10).cast::<u32>().write(4096);
        blob.add(0x18).cast::<u64>().write(cpuid_page as u64);
        blob.add(0x20).cast::<u32>().write(4096);
    }
    STATE.lock().certs = certs;
    let blob = blob as u64;
    CC_BLOB.call_once(|| blob);
    Ok(blob)
}

/// The CC blob [`launch`] published (where OVMF's configuration table would point).
pub fn cc_blob() -> Option<u64> {
    CC_BLOB.get().copied()
}

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
                cbit: CBIT,
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
        let (Some(info1), rax, rbx, rcx, rdx, scratch) = (
            g.get(GhcbField::SwExitInfo1),
            g.get(GhcbField::Rax),
            g.get(GhcbField::Rbx),
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
                // (Through the host's alias when the guest's view of the BAR is unmapped.)
                let addr = crate::arch::paging::host_view(info1);
                // SAFETY: an MMIO address the kernel mapped (or its alias) and would access
                // itself with this width (the stub does the access the guest asked for, as
                // KVM would).
                let r = unsafe { mmio(addr, len, code == exit_code::MMIO_WRITE, v) };
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
            exit_code::GUEST_REQUEST => self.guest_request(info1, info2_in, None),
            exit_code::EXT_GUEST_REQUEST => {
                let (Some(certs_gpa), Some(pages)) = (rax, rbx) else {
                    return malformed(MalformedReason::MissingInput);
                };
                let needed = self.certs.len().div_ceil(4096) as u64;
                if pages < needed {
                    // 56421 §4.1.8.1: not forwarded; RBX = the pages needed.
                    g.set(GhcbField::Rbx, needed);
                    return (0, VMM_ERR_INVALID_LEN);
                }
                self.guest_request(info1, info2_in, Some((certs_gpa, pages)))
            }
            _ => malformed(MalformedReason::InvalidInput),
        }
    }
}

impl State {
    /// A (plain or extended) guest request: the request and response pages (and the
    /// certificate buffer) must be pages the guest made shared; the request page goes to
    /// `snp-emu` as the firmware's input and its answer is written to the response page.
    /// Returns `(SW_EXITINFO1, SW_EXITINFO2)`.
    fn guest_request(&mut self, req: u64, rsp: u64, certs: Option<(u64, u64)>) -> (u64, u64) {
        let malformed = (2, MalformedReason::InvalidInput.to_info2());
        let page_ok = |st: &Self, gpa: u64| gpa & 0xFFF == 0 && st.shared.contains(&(gpa >> 12));
        if !page_ok(self, req) || !page_ok(self, rsp) || req == rsp {
            raw_print("ckms: loopback-ghcb: guest-request page not shared\n");
            return malformed;
        }
        if let Some((gpa, pages)) = certs {
            let bytes = pages.saturating_mul(4096);
            if gpa & 0xFFF != 0
                || pages == 0
                || pages > 64
                || !(0..pages).all(|p| page_ok(self, gpa + p * 4096))
            {
                raw_print("ckms: loopback-ghcb: certificate buffer not shared\n");
                return malformed;
            }
            let len = self.certs.len().min(bytes as usize);
            // SAFETY: `pages` shared pages of guest RAM (checked against the page-state map),
            // identity-mapped; the guest gave them to the host for this answer.
            unsafe {
                core::ptr::write_bytes(gpa as *mut u8, 0, bytes as usize);
                core::ptr::copy_nonoverlapping(self.certs.as_ptr(), gpa as *mut u8, len);
            }
        }
        self.guest_requests += 1;
        if self.guest_requests == 1 {
            // A throttling host answers BUSY (KVM does): the guest must resend the same
            // message. Once per boot, so the resend path runs in every loopback run.
            return (0, VMM_ERR_BUSY);
        }
        let mut page = alloc::vec![0u8; 4096];
        // SAFETY: a shared guest page (checked above), identity-mapped, read by the host.
        unsafe { core::ptr::copy_nonoverlapping(req as *const u8, page.as_mut_ptr(), 4096) };
        match emulated::call(&EMU, snp_emu_proto::Cmd::GuestRequest, &page) {
            Ok(answer) if answer.len() == 4096 => {
                // SAFETY: as above, the response page.
                unsafe { core::ptr::copy_nonoverlapping(answer.as_ptr(), rsp as *mut u8, 4096) };
                (0, 0)
            }
            Ok(_) | Err(crate::platform::PlatformError::Transport(_)) => (0, VMM_ERR_GENERIC),
            Err(_) => (0, FW_INVALID_PARAM),
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
