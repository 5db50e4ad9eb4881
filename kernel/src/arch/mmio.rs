//! MMIO through the platform HAL: every device-register access of the kernel (virtio-drivers'
//! through `safe-mmio`'s `custom-mmio` backend, the xAPIC's) is [`read()`]/[`write()`] here.
//!
//! - With a GHCB session (SEV-SNP, and the loopback-GHCB build), an access is an MMIO read or
//!   write exit (AMD 56421 §4.1.5, `SVM_VMGEXIT_MMIO_READ`/`_WRITE` 0x8000_0001/2:
//!   `SW_EXITINFO1` = the GPA, `SW_EXITINFO2` = the length, `SW_SCRATCH` = the GHCB shared
//!   buffer, which carries the data; `sev_guest::session::GhcbSession::mmio_read`), and only
//!   inside a registered device window ([`add_window`]): anything else terminates (reason 0x08),
//!   since an MMIO exit hands the host what it reads or writes.
//! - With the TDX backend established (the loopback-TDX build), an access is
//!   `TDG.VP.VMCALL<#VE.RequestMMIO>` (Intel GHCI 348552 §3.7, sub-function 48: R12 = size,
//!   R13 = direction, R14 = the GPA with the shared bit set, R15 = the value written; R11 the
//!   value read; `crate::platform::tdx::mmio_read`), under the same window rule: anything
//!   else ends the TD (`TDG.VP.VMCALL<ReportFatalError>`).
//! - Without either (`none`, `emulated`, before the session) it is a volatile access.
//!
//! The windows are also what the #VC handler's MMIO path (`arch::vc`, exit code NPF 0x400,
//! decoded by `sev_guest::mmio`) and the #VE handler's (`arch::tdx`, EPT violation at a shared
//! GPA, the same decoder) accept. The loopback build's `ckms.test=unmapped-bar` leaves
//! the BARs unmapped ([`unmapped_bars`]) so real `mov`s fault into that path (as a #PF under TCG).
//!
//! Compared with (read, not copied): Linux `arch/x86/coco/sev/vc-handle.c` (`vc_do_mmio`) and
//! Oak stage0's explicit GHCB I/O.

use core::sync::atomic::{AtomicBool, Ordering};

use sev_guest::mmio::{MmioError, Width, Windows};
use sev_guest::msr::{KmsReason, TerminateReason};

/// The device windows (BARs mapped for drivers, the xAPIC page).
static WINDOWS: spin::Mutex<Windows> = spin::Mutex::new(Windows::new());

/// `ckms.test=unmapped-bar` (loopback build only): BARs are registered but never mapped.
static UNMAPPED_BARS: AtomicBool = AtomicBool::new(false);

/// The first BAR region a driver mapped (virtio's common configuration), for the self-test.
static FIRST_BAR: spin::Once<u64> = spin::Once::new();

/// The windows that are drivers' BAR regions (`paging::map_mmio`).
static BARS: spin::Mutex<Windows> = spin::Mutex::new(Windows::new());

/// Registers a driver's BAR region (`paging::map_mmio`).
pub fn add_bar(start: u64, len: u64) -> Result<(), MmioError> {
    add_window(start, len)?;
    BARS.lock().add(start, len)?;
    FIRST_BAR.call_once(|| start);
    Ok(())
}

/// Whether `gpa` lies in a driver's BAR region.
#[cfg(feature = "loopback-ghcb")]
pub fn is_bar(gpa: u64) -> bool {
    BARS.lock().contains(gpa, 1)
}

/// The first BAR region registered.
#[cfg(any(feature = "loopback-ghcb", feature = "loopback-tdx"))]
pub fn first_bar() -> Option<u64> {
    FIRST_BAR.get().copied()
}

/// Registers `[start, start + len)` as device memory.
pub fn add_window(start: u64, len: u64) -> Result<(), MmioError> {
    WINDOWS.lock().add(start, len)
}

/// A copy of the device windows.
pub fn windows() -> Windows {
    *WINDOWS.lock()
}

/// Leaves device BARs unmapped from now on (the loopback build's fault-path test mode).
pub fn set_unmapped_bars() {
    UNMAPPED_BARS.store(true, Ordering::Relaxed);
}

/// Whether BARs are left unmapped.
pub fn unmapped_bars() -> bool {
    UNMAPPED_BARS.load(Ordering::Relaxed)
}

fn outside(gpa: u64) -> ! {
    if crate::platform::tdx::established() {
        crate::platform::tdx::fatal(
            "MMIO outside every device window",
            &format_args!("{gpa:#x}"),
        );
    }
    log::error!("mmio: access at {gpa:#x} outside every device window");
    crate::platform::ghcb::terminate(TerminateReason::Kms(KmsReason::VcUnsupported))
}

/// Reads `width` bytes of device memory at `gpa` (identity-mapped).
///
/// # Safety
/// Without a GHCB session or the TDX backend this is a volatile read of `gpa`, which must be mapped device memory.
pub unsafe fn read(gpa: u64, width: Width) -> u64 {
    if crate::platform::ghcb::established() {
        if !windows().contains(gpa, u64::from(width.bytes())) {
            outside(gpa);
        }
        if let Some(v) = crate::platform::ghcb::mmio_read(gpa, width) {
            return v;
        }
    }
    if crate::platform::tdx::established() {
        if !windows().contains(gpa, u64::from(width.bytes())) {
            outside(gpa);
        }
        if let Some(v) = crate::platform::tdx::mmio_read(gpa, width) {
            return v;
        }
    }
    // SAFETY: caller contract (mapped device memory, aligned by the caller's type).
    unsafe {
        match width {
            Width::B1 => u64::from((gpa as *const u8).read_volatile()),
            Width::B2 => u64::from((gpa as *const u16).read_volatile()),
            Width::B4 => u64::from((gpa as *const u32).read_volatile()),
            Width::B8 => (gpa as *const u64).read_volatile(),
        }
    }
}

/// Writes the low `width` bytes of `value` to device memory at `gpa`.
///
/// # Safety
/// As [`read`].
pub unsafe fn write(gpa: u64, width: Width, value: u64) {
    if crate::platform::ghcb::established() {
        if !windows().contains(gpa, u64::from(width.bytes())) {
            outside(gpa);
        }
        if crate::platform::ghcb::mmio_write(gpa, width, value) {
            return;
        }
    }
    if crate::platform::tdx::established() {
        if !windows().contains(gpa, u64::from(width.bytes())) {
            outside(gpa);
        }
        if crate::platform::tdx::mmio_write(gpa, width, value) {
            return;
        }
    }
    // SAFETY: caller contract.
    unsafe {
        match width {
            Width::B1 => (gpa as *mut u8).write_volatile(value as u8),
            Width::B2 => (gpa as *mut u16).write_volatile(value as u16),
            Width::B4 => (gpa as *mut u32).write_volatile(value as u32),
            Width::B8 => (gpa as *mut u64).write_volatile(value),
        }
    }
}

/// `safe-mmio`'s backend (the accessors virtio-drivers' PCI transport uses): the HAL above.
pub struct HalMmio;

impl safe_mmio::MmioOps for HalMmio {
    unsafe fn read_u8(src: *const u8) -> u8 {
        // SAFETY: safe-mmio passes a valid, aligned MMIO pointer (the trait's contract).
        unsafe { read(src as u64, Width::B1) as u8 }
    }
    unsafe fn read_u16(src: *const u16) -> u16 {
        // SAFETY: as in `read_u8`.
        unsafe { read(src as u64, Width::B2) as u16 }
    }
    unsafe fn read_u32(src: *const u32) -> u32 {
        // SAFETY: as in `read_u8`.
        unsafe { read(src as u64, Width::B4) as u32 }
    }
    unsafe fn read_u64(src: *const u64) -> u64 {
        // SAFETY: as in `read_u8`.
        unsafe { read(src as u64, Width::B8) }
    }
    unsafe fn write_u8(dst: *mut u8, value: u8) {
        // SAFETY: as in `read_u8`.
        unsafe { write(dst as u64, Width::B1, u64::from(value)) }
    }
    unsafe fn write_u16(dst: *mut u16, value: u16) {
        // SAFETY: as in `read_u8`.
        unsafe { write(dst as u64, Width::B2, u64::from(value)) }
    }
    unsafe fn write_u32(dst: *mut u32, value: u32) {
        // SAFETY: as in `read_u8`.
        unsafe { write(dst as u64, Width::B4, u64::from(value)) }
    }
    unsafe fn write_u64(dst: *mut u64, value: u64) {
        // SAFETY: as in `read_u8`.
        unsafe { write(dst as u64, Width::B8, value) }
    }
}

safe_mmio::set_mmio_ops!(HalMmio);
