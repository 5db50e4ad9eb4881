//! The KMS unikernel: a UEFI application that OVMF boots directly (`-kernel`), leaves the
//! firmware early and then owns the machine.
//!
//! Boot sequence ([`kernel_main`], one call per step, the steps in [`boot`]): firmware
//! hand-off ([`uefi`]) → console ([`console`]) → SEV/SNP/TDX detection under the firmware's
//! exception handlers ([`platform::detect_hardware`]) → on TDX the TDX backend (TDG.VP.INFO and
//! policy, [`boot::tdx_backend`]) → descriptor tables and exceptions ([`arch`]) →
//! command line (`bootparams::cmdline`) → memory (heap from the memory map, [`mm`]; own page
//! tables, [`arch::paging`]) → clocks ([`time`], [`arch::apic`]) → attestation backend
//! ([`platform`]) → entropy ([`rng`]) → PCI, virtio-net and the network ([`drivers`],
//! [`net`]) → services ([`services`]).
//!
//! The kernel runs on one CPU with interrupts disabled (but for idle wake-ups) and polls its
//! devices. It does not implement SMP or device interrupts (SEV-ES without SNP is terminated
//! through the GHCB MSR protocol). On SEV-SNP it sets up the SNP backend (CPUID page before
//! the page tables, GHCB session after them, [`boot::snp_session`]); on TDX the TDX backend
//! (before the page tables, so they carry the shared bit; the pool on MapGPA/accept after
//! them, [`boot::tdx_session`]). Neither path has run on hardware.
#![no_std]
#![no_main]

extern crate alloc;
// memcpy & co. (C ABI symbols): linked only if named.
extern crate freestanding_rt;

mod arch;
mod boot;
mod console;
mod dma;
mod drivers;
mod kms_service;
#[cfg(feature = "loopback-ghcb")]
mod loopback;
#[cfg(feature = "loopback-tdx")]
mod loopback_tdx;

#[cfg(all(feature = "loopback-ghcb", feature = "loopback-tdx"))]
compile_error!("loopback-ghcb and loopback-tdx are two different test platforms: pick one");
mod mm;
mod net;
mod platform;
mod rng;
mod rt;
mod services;
mod time;
mod uefi;

use core::sync::atomic::{AtomicU64, Ordering};

static IMAGE_BASE: AtomicU64 = AtomicU64::new(0);
static IMAGE_END: AtomicU64 = AtomicU64::new(0);

/// One past the last byte of the loaded image.
pub fn image_end() -> u64 {
    IMAGE_END.load(Ordering::Relaxed)
}

/// Load address of the image (for exception reports: `rip - base` is an offset in the ELF).
pub fn image_base() -> u64 {
    IMAGE_BASE.load(Ordering::Relaxed)
}

/// The UEFI entry point, reached from `rt::_start` after self-relocation.
extern "efiapi" fn efi_main(image: uefi::Handle, st: *const uefi::SystemTable) -> uefi::Status {
    // SAFETY: the firmware's arguments, boot services active; nothing else calls them.
    let info = match unsafe { uefi::save_and_exit(image, st) } {
        Ok(info) => info,
        Err(uefi::ExitError::Firmware(what, status)) => {
            console::init();
            console::emergency(format_args!(
                "ckms: firmware hand-off failed: {what}: status {status:#x}\n"
            ));
            arch::stop(arch::ExitCode::Fault);
        }
    };
    let top = info.boot_stack_top;
    // SAFETY: the boot stack was allocated as LoaderData for exactly this and is unused.
    unsafe { arch::run_on_stack(top, kernel_main, core::ptr::from_mut(info) as usize) }
}

/// Stops the boot with a message on the console (configuration refused): QEMU exits with
/// status 35 through isa-debug-exit.
fn refuse(args: core::fmt::Arguments<'_>) -> ! {
    println!("ckms: boot stopped: {}", args);
    arch::stop(arch::ExitCode::ConfigRefused)
}

extern "C" fn kernel_main(info: usize) -> ! {
    // SAFETY: `efi_main` passes the address of the BootInfo it owns, now handed over.
    let info: &'static uefi::BootInfo = unsafe { &*(info as *const uefi::BootInfo) };
    IMAGE_BASE.store(info.image_base, Ordering::Relaxed);
    IMAGE_END.store(
        info.image_base.saturating_add(info.image_size),
        Ordering::Relaxed,
    );

    // 1. Console first, so every later failure is visible.
    console::init();
    println!("ckms: kernel {} starting", env!("CARGO_PKG_VERSION"));
    // 2. SEV/SNP/TDX detection while the firmware's #VC/#VE handlers are still live: a
    //    confidential platform this build cannot run stops here (GHCB MSR termination on
    //    SEV-ES/SNP), before our IDT would turn its first port I/O into an unanswerable #VC.
    platform::record_hardware(boot::early_platform());
    // 2a. TDX (hardware, or the loopback-TDX test build's stub): TDG.VP.INFO and the TD policy
    //     while the firmware's #VE handler still answers a refusal's port I/O; from here on
    //     port I/O and MSRs are TDVMCALLs, and GPAW gives the page tables' shared bit.
    boot::tdx_backend();
    // 2b. CPU state of our own: SSE on, PIC masked, our GDT/TSS/IDT with IST stacks.
    boot::cpu(info);
    // 3. The measured command line decides everything else: parsed before any device is
    //    touched; a bad one stops the boot here.
    let cfg = boot::command_line(info);
    // 4. Memory: heap from the free RAM of the saved map (never unaccepted memory), then our
    //    own page tables (their pages come from the heap) with guard pages.
    boot::memory(info);
    // 4b. SEV-SNP (and the loopback-GHCB test build, whose stub stands in for VMGEXIT and
    //     PVALIDATE): the GHCB session; from here on port I/O, MSRs and the DMA pool's
    //     conversions are GHCB calls, and the held console goes out.
    boot::snp_session();
    // 4c. TDX: the DMA pool converts with MapGPA/accept (its shared pages mapped with the shared
    //     bit); the loopback-TDX build also runs its #VE self-test.
    boot::tdx_session();
    // 5. Clocks: TSC against the PIT (needed by the RNG reseed timer and the network), the
    //    APIC timer for idle wake-ups.
    boot::clocks();
    // 6. Platform: the attestation backend the command line asks for.
    let platform = boot::platform(&cfg, info);
    // 7. Entropy: refuse to run without a hardware source.
    boot::entropy();
    // 8. Devices: PCI scan, the virtio-net NIC, then the network stack with an address.
    let mut stack = boot::network(&cfg);
    // 8b. The loopback-TDX test build: MMIO through the #VE path on the NIC's BAR.
    #[cfg(feature = "loopback-tdx")]
    boot::loopback_tdx_mmio();
    // 9. The KMS (bootstrap first, then KMIP on Redis) unless a test service was asked for.
    if cfg.test.is_none() {
        kms_service::run(stack, &cfg, platform);
    }
    // 10. Test services, the ready line, and the poll loop.
    let services = services::start(&mut stack, &cfg, platform);
    net::serve(&mut stack, services)
}

/// Reports the panic (an allocation failure arrives here too, as "memory allocation of N
/// bytes failed") with the heap numbers, then stops the VM.
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let heap = mm::stats();
    console::emergency(format_args!(
        "\nckms: panic: {info}\nckms: heap: {} KiB in use, peak {} KiB, capacity {} KiB\n",
        heap.in_use / 1024,
        heap.peak / 1024,
        heap.capacity / 1024
    ));
    arch::stop(arch::ExitCode::Fault)
}
