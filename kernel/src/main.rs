//! The KMS unikernel: a UEFI application that OVMF boots directly (`-kernel`), leaves the
//! firmware early and then owns the machine.
//!
//! Boot sequence ([`kernel_main`], one call per step, in the order of the architecture):
//! firmware hand-off ([`uefi`]) → console ([`console`]) → descriptor tables and exceptions
//! ([`arch`]) → command line (`bootparams::cmdline`) → memory (heap from the memory map,
//! [`mm`]; own page tables, [`arch::paging`]) → platform detection ([`platform`]) → entropy
//! ([`rng`]) → clocks ([`time`]) → PCI and virtio-net ([`drivers`]) → network and services
//! ([`net`]).
//!
//! The kernel runs on one CPU with interrupts disabled and polls its devices. It does not
//! implement SMP, interrupts, W^X page permissions or the SNP/TDX backends (detected, then
//! refused).
#![no_std]
#![no_main]

extern crate alloc;

mod arch;
mod console;
mod drivers;
mod mm;
mod net;
mod platform;
mod rng;
mod rt;
mod services;
mod time;
mod uefi;

use alloc::boxed::Box;
use alloc::vec::Vec;

use bootparams::cmdline::{self, LogLevel, TestService};

use core::sync::atomic::{AtomicU64, Ordering};

static IMAGE_BASE: AtomicU64 = AtomicU64::new(0);

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
            console::emergency(format_args!("ckms: firmware hand-off failed: {what}: status {status:#x}\n"));
            arch::stop(arch::ExitCode::Fault);
        }
    };
    let top = info.boot_stack_top;
    // SAFETY: the boot stack was allocated as LoaderData for exactly this and is unused.
    unsafe { arch::run_on_stack(top, kernel_main, core::ptr::from_mut(info) as usize) }
}

/// Stops the boot with a message on the console (configuration refused).
fn refuse(args: core::fmt::Arguments<'_>) -> ! {
    println!("ckms: boot stopped: {}", args);
    arch::stop(arch::ExitCode::ConfigRefused)
}

fn level_filter(level: LogLevel) -> log::LevelFilter {
    match level {
        LogLevel::Off => log::LevelFilter::Off,
        LogLevel::Error => log::LevelFilter::Error,
        LogLevel::Warn => log::LevelFilter::Warn,
        LogLevel::Info => log::LevelFilter::Info,
        LogLevel::Debug => log::LevelFilter::Debug,
        LogLevel::Trace => log::LevelFilter::Trace,
    }
}

extern "C" fn kernel_main(info: usize) -> ! {
    // SAFETY: `efi_main` passes the address of the BootInfo it owns, now handed over.
    let info: &'static uefi::BootInfo = unsafe { &*(info as *const uefi::BootInfo) };
    IMAGE_BASE.store(info.image_base, Ordering::Relaxed);

    // 1. Console first, so every later failure is visible.
    console::init();
    println!("ckms: kernel {} starting", env!("CARGO_PKG_VERSION"));

    // 2. CPU state of our own: SSE on, PIC masked, our GDT/TSS/IDT with IST stacks.
    arch::enable_sse();
    arch::mask_pic();
    arch::gdt::init(&info.ist_tops);
    arch::idt::init();

    // 3. The measured command line decides everything else, so it is parsed before any
    //    device is touched; a bad one stops the boot here.
    let line = match info.cmdline() {
        Ok(line) => line,
        Err(e) => refuse(format_args!("{e}")),
    };
    let cfg = match cmdline::parse(line) {
        Ok(cfg) => cfg,
        Err(e) => refuse(format_args!("{e}")),
    };
    console::init_logger(level_filter(cfg.log));
    log::info!("cmdline: \"{line}\"");

    // 4. Memory: heap from the free RAM of the saved map (never unaccepted memory), then our
    //    own identity-mapped page tables (table pages come from the heap).
    let map = info.memory_map();
    let summary = bootparams::memmap::summarize(map);
    log::info!(
        "memory: {} entries, free {} KiB, loader {} KiB, boot services {} KiB (kept), unaccepted {} KiB (not used)",
        map.len(),
        summary.free / 1024,
        summary.loader / 1024,
        summary.boot_services / 1024,
        summary.unaccepted / 1024,
    );
    if summary.unaccepted > 0 {
        log::warn!("memory: {} KiB were not accepted by the firmware and stay unused", summary.unaccepted / 1024);
    }
    if info.memory_map_dropped > 0 || summary.malformed > 0 {
        log::warn!("memory: {} entries dropped, {} malformed", info.memory_map_dropped, summary.malformed);
    }
    let plan = bootparams::memmap::plan_heap(map, u64::MAX);
    // SAFETY: the plan holds only EfiConventionalMemory, free after ExitBootServices and
    // identity-mapped by the firmware's page tables (and by ours below).
    let heap = unsafe { mm::init(&plan) };
    log::info!("heap: {} KiB in {} spans", heap / 1024, plan.spans().len());
    let limit = summary.ram_top.max(4 << 30).next_multiple_of(1 << 30);
    if let Err(e) = arch::paging::init(limit) {
        refuse(format_args!("page tables: {e}"));
    }
    log::debug!(
        "firmware: {} configuration tables, rsdp {:x?}, snp cc blob {:x?}, coco secret {:x?}",
        info.config_table_total, info.rsdp, info.snp_cc_blob, info.coco_secret
    );
    for (guid, addr) in info.config_tables() {
        log::debug!("firmware: table {guid} at {addr:#x}");
    }

    // 5. Clock: TSC calibrated against the PIT; the RTC only for the (untrusted) date.
    match time::calibrate() {
        Ok(hz) => log::info!("clock: tsc {} kHz; rtc (untrusted) {:?} unix", hz / 1000, time::rtc_unix_seconds()),
        Err(e) => refuse(format_args!("clock calibration: {e}")),
    }
    match arch::apic::init() {
        Some(per_ms) => log::info!("apic: timer {} kHz (idle wake-ups only)", per_ms),
        None => log::warn!("apic: no usable local APIC timer; the idle loop spins"),
    }

    // 6. Platform: SNP/TDX detection (refused until implemented), then the attestation mode.
    let mut platform = match platform::select(cfg.attestation) {
        Ok(p) => p,
        Err(e) => refuse(format_args!("{e}")),
    };
    let kind = platform.ops().kind();
    log::info!("platform: {} ({:?})", kind, platform.ops().capabilities());

    // 7. Entropy: refuse to run without a hardware source.
    match rng::init() {
        Ok(source) => log::info!("rng: chacha20 seeded from {source}"),
        Err(e) => refuse(format_args!("{e}")),
    }

    // 8. Devices: PCI scan, then the virtio-net NIC.
    let functions = drivers::pci::enumerate();
    for f in &functions {
        let h = &f.header;
        log::debug!(
            "pci: {:02x}:{:02x}.{} {:04x}:{:04x} class {:02x}.{:02x}",
            f.df.bus, f.df.device, f.df.function, h.vendor, h.device, h.class, h.subclass
        );
    }
    let Some(nic_fn) = functions.iter().find(|f| f.header.is_virtio_net()) else {
        refuse(format_args!("no virtio-net device (modern PCI, disable-legacy=on) found"));
    };
    let nic = match drivers::virtio_net::VirtioNic::new(nic_fn.df) {
        Ok(nic) => nic,
        Err(e) => refuse(format_args!("{e}")),
    };

    // 9. Network and services.
    let mut stack = match net::up(nic, &cfg) {
        Ok(s) => s,
        Err(e) => refuse(format_args!("{e}")),
    };
    let mut services: Vec<Box<dyn net::Service>> = Vec::new();
    match cfg.test {
        Some(TestService::Echo) => match services::Echo::new(&mut stack, cfg.port) {
            Ok(echo) => services.push(Box::new(echo)),
            Err(e) => refuse(format_args!("echo service: {e}")),
        },
        Some(TestService::Attest) => {}
        None => log::warn!("no KMS service in this build yet: only the network is up"),
    }
    let ip = stack.ipv4_address().map(|a| a.octets()).unwrap_or([0; 4]);
    println!(
        "ckms: ready ip={}.{}.{}.{} port={} measurement-mode={} boot-ms={}",
        ip[0], ip[1], ip[2], ip[3], cfg.port, kind, time::Instant::now().millis_since_boot()
    );
    if let (Some(TestService::Attest), Some(rd)) = (cfg.test, cfg.test_report_data) {
        services::attest_selftest(platform.ops(), &rd);
    }
    let hs = mm::stats();
    log::info!("heap: {} KiB in use, peak {} KiB of {} KiB", hs.in_use / 1024, hs.peak / 1024, hs.capacity / 1024);
    net::serve(&mut stack, services)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    console::emergency(format_args!("\nckms: panic: {info}\n"));
    arch::stop(arch::ExitCode::Fault)
}
