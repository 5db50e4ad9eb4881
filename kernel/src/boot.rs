//! The boot steps [`crate::kernel_main`] runs in order. Each either succeeds or stops the
//! boot with a message ([`crate::refuse`]): before the network is up there is nobody to
//! report an error to but the console.

use bootparams::cmdline::{self, BootConfig, LogLevel};

use crate::drivers::{pci, virtio_net::VirtioNic};
use crate::net::NetStack;
use crate::platform::{self, Hardware, PlatformKind};
use crate::uefi::BootInfo;
use crate::{arch, console, dma, mm, net, println, refuse, rng, time};

/// Detects the confidential-computing hardware while the firmware's exception handlers are
/// still installed (they answer the #VC/#VE that `cpuid` and the console's port I/O raise on
/// SEV-ES/SNP/TDX), and stops a configuration this build cannot run, cleanly:
/// - SEV-SNP with a `SEV_STATUS` feature the guest would have to implement (vTOM, ReflectVC,
///   restricted/alternate injection, VMPL supervisor shadow stacks, Secure TSC, VMGEXIT
///   parameter, VMSA register protection, unknown bits; `sev_guest::msr::SEV_STATUS_SUPPORTED`):
///   GHCB MSR protocol termination, reason set 0xC code 0x0C (`SnpFeatureUnsupported`);
/// - SEV-ES without SNP: termination, set 0xC code 0x01 (`SnpNotActive`);
/// - plain SEV (no #VC): a console message and the usual refusal.
///
/// TDX continues: [`tdx_backend`] establishes the backend next, still under the firmware's #VE
/// handler.
///
/// SEV-SNP otherwise continues: the console is held in memory ([`console::hold`]) from here
/// until [`snp_session`] has a GHCB session (after our IDT is loaded, a bare `out` would raise
/// a #VC only that session can answer), the CPUID page is installed before the page tables
/// ([`memory`]) and the SNP backend is set up after them ([`snp_session`]).
pub fn early_platform() -> Hardware {
    use sev_guest::msr::{KmsReason, TerminateReason, unsupported_snp_features};
    let hw = platform::detect_hardware();
    match hw {
        Hardware::Plain => hw,
        Hardware::Snp { ghcb, status } => {
            let unsupported = unsupported_snp_features(status);
            if unsupported != 0 {
                println!(
                    "ckms: boot stopped: SEV-SNP with features this kernel does not implement                      (SEV_STATUS {status:#x}, unsupported bits {unsupported:#x}): GHCB MSR                      termination, reason set 0xC code 0x0C"
                );
                platform::snp::terminate(
                    ghcb,
                    TerminateReason::Kms(KmsReason::SnpFeatureUnsupported),
                )
            }
            println!(
                "ckms: SEV-SNP detected (SEV_STATUS {status:#x}): console held until the GHCB                  session exists"
            );
            console::hold();
            hw
        }
        Hardware::SevEs(ghcb) => {
            println!(
                "ckms: boot stopped: SEV-ES without SNP is not supported: GHCB MSR termination,                  reason set 0xC code 0x01"
            );
            platform::snp::terminate(ghcb, TerminateReason::Kms(KmsReason::SnpNotActive))
        }
        Hardware::Sev => refuse(format_args!("SEV without SNP is not supported")),
        Hardware::Tdx => {
            println!("ckms: Intel TDX detected (CPUID leaf 0x21): establishing the TDX backend");
            hw
        }
    }
}

/// Whether this boot runs the TDX backend: TDX hardware, or the loopback-TDX test build (whose
/// stub stands in for `TDCALL` under TCG). The same code runs in both.
fn tdx_boot() -> bool {
    cfg!(feature = "loopback-tdx") || matches!(platform::hardware(), Some(Hardware::Tdx))
}

/// TDX, right after detection and before our IDT and the page tables: TDG.VP.INFO (TDX Module
/// ABI 348551, "TDG.VP.INFO Leaf") and the policy (DEBUG clear, SEPT_VE_DISABLE set:
/// `tdx_td::info::TdInfo::check_policy`). From here on port I/O and MSRs are explicit
/// TDVMCALLs (GHCI 348552 §3.9–§3.11), so the console keeps working once our IDT replaces the
/// firmware's #VE handler; and [`memory`] gets GPAW for the shared bit of its page tables
/// (GHCI §1.3). Established before our IDT rather than after it so that a refused TD still
/// prints why: until [`crate::boot::cpu`] loads our IDT the firmware's #VE handler answers the
/// refusal's port I/O (after it, an `out` without a backend would be an unserviceable #VE).
/// Nothing to do on other platforms.
pub fn tdx_backend() {
    if !tdx_boot() {
        return;
    }
    #[cfg(feature = "loopback-tdx")]
    println!("ckms: {}", crate::loopback_tdx::MARKER);
    match platform::tdx::establish() {
        Ok(info) => println!(
            "ckms: tdx: TDG.VP.INFO gpaw {} (shared bit {}), attributes {:#x}: policy ok; port \
             I/O and MSRs are TDVMCALLs from here on",
            info.gpaw,
            info.shared_bit(),
            info.attributes.0
        ),
        Err(e) => refuse(format_args!("{e}")),
    }
}

/// Whether this boot runs the SNP backend: SEV-SNP hardware, or the loopback-GHCB test build
/// (whose stub stands in for the instructions under TCG).
fn snp_boot() -> bool {
    cfg!(feature = "loopback-ghcb") || matches!(platform::hardware(), Some(Hardware::Snp { .. }))
}

/// The SNP Confidential Computing blob: OVMF's (UEFI configuration table), or in the
/// loopback-GHCB build the one its stub published at the launch it plays.
fn cc_blob(info: &BootInfo) -> Option<u64> {
    #[cfg(feature = "loopback-ghcb")]
    return crate::loopback::cc_blob().or(info.snp_cc_blob);
    #[cfg(not(feature = "loopback-ghcb"))]
    info.snp_cc_blob
}

/// Ends an SNP boot with `reason` after saying why (the console is released first where a
/// session can carry it; otherwise the message stays in the held buffer).
fn snp_stop(what: core::fmt::Arguments<'_>, reason: sev_guest::msr::TerminateReason) -> ! {
    println!("ckms: boot stopped: {what}");
    if platform::ghcb::stats().is_some() {
        console::release();
    }
    platform::ghcb::terminate(reason)
}

/// CPU state of our own: SSE on, PIC masked, GDT/TSS with IST stacks, IDT.
pub fn cpu(info: &BootInfo) {
    arch::enable_sse();
    arch::mask_pic();
    arch::gdt::init(&info.ist_tops);
    arch::idt::init();
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

/// Parses the command line strictly and sets the log level it asks for.
pub fn command_line(info: &BootInfo) -> BootConfig {
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
    cfg
}

/// Heap from the memory map, then our page tables and guard pages.
pub fn memory(info: &BootInfo) {
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
        log::warn!(
            "memory: {} KiB were not accepted by the firmware and stay unused",
            summary.unaccepted / 1024
        );
    }
    if info.memory_map_dropped > 0 || summary.malformed > 0 {
        log::warn!(
            "memory: {} entries dropped, {} malformed",
            info.memory_map_dropped,
            summary.malformed
        );
    }
    let plan = bootparams::memmap::plan_heap(map, u64::MAX);
    // SAFETY: the plan holds only EfiConventionalMemory, free after ExitBootServices and
    // identity-mapped by the firmware's page tables (and by ours below).
    let heap = unsafe { mm::init(&plan) };
    if heap == 0 {
        refuse(format_args!("no free memory for the heap"));
    }
    log::info!("heap: {} KiB in {} spans", heap / 1024, plan.spans().len());

    let limit = summary.ram_top.max(4 << 30).next_multiple_of(1 << 30);
    let image = arch::paging::ImageLayout::current(info.image_base, info.image_size);
    log::debug!(
        "image: {image:x?}; {} KiB allocated before exit (stacks, boot info, map)",
        info.loader_allocations / 1024
    );
    // SNP: the CPUID page from the CC blob before the page tables, so the encryption mask
    // comes from its C-bit (and every `cpuid` from here on answers from it).
    if snp_boot() {
        snp_cpuid_page(info);
    }
    // The page-attribute rule: TDX's shared bit once the TDX backend gave GPAW
    // ([`tdx_backend`]), else SEV's C-bit (none without memory encryption).
    let rule = if platform::tdx::established() {
        platform::tdx::page_rule()
    } else {
        platform::snp::page_rule()
    };
    let rule = match rule {
        Ok(r) => r,
        Err(e) => refuse(format_args!("page tables: {e}")),
    };
    if rule.set_when_shared() {
        // A TD's memory lies below the shared bit (a GPA with it is the shared view, never
        // memory of its own); a map that says otherwise (under TCG: the alias DIMM taken for
        // RAM) is refused before anything is placed there.
        if summary.ram_top > rule.bits() {
            refuse(format_args!(
                "memory map: memory up to {:#x}, at or above the shared bit {:#x}",
                summary.ram_top,
                rule.bits()
            ));
        }
        log::info!(
            "paging: tdx shared bit {:#x} (RAM and tables private, bit clear; shared pool \
             pages, the GetQuote buffer, device BARs and MMIO holes shared, bit set)",
            rule.bits()
        );
    } else {
        log::info!(
            "paging: encryption mask {:#x} (RAM and tables C=1; GHCB page, shared pool pages \
             and device BARs C=0)",
            rule.bits()
        );
    }
    // RAM (private): every memory-map type but MMIO; the rest below `limit` is an MMIO hole
    // (shared).
    let ram: alloc::vec::Vec<(u64, u64)> = map
        .iter()
        .filter(|r| r.class() != bootparams::memmap::MemoryClass::Mmio)
        .filter_map(|r| Some((r.start, r.end()?)))
        .collect();
    if let Err(e) = arch::paging::init(limit, &image, rule, &ram) {
        refuse(format_args!("page tables: {e}"));
    }
    // Guard pages: page 0 (null dereferences fault) and the page below every stack
    // (overflows fault on an IST stack and get reported instead of corrupting memory).
    for page in core::iter::once(0).chain(info.stack_guards) {
        if let Err(e) = arch::paging::unmap_page(page) {
            refuse(format_args!("guard page at {page:#x}: {e}"));
        }
    }
    // The shared DMA pool: the only memory devices are ever given (virtqueues and bounce
    // buffers), carved from the heap once.
    match dma::init(dma::POOL_PAGES) {
        Ok(base) => log::info!(
            "dma: shared pool {} KiB at {base:#x} (virtio rings and bounce buffers)",
            dma::POOL_PAGES * 4
        ),
        Err(e) => refuse(format_args!("{e}")),
    }
    log::debug!(
        "firmware: {} configuration tables, rsdp {:x?}, snp cc blob {:x?}, coco secret {:x?}",
        info.config_table_total,
        info.rsdp,
        info.snp_cc_blob,
        info.coco_secret
    );
    for (guid, addr) in info.config_tables() {
        log::debug!("firmware: table {guid} at {addr:#x}");
    }
}

/// SNP, before the page tables: the CPUID page the CC blob names becomes the only CPUID source.
/// In the loopback-GHCB build the stub first plays the launch (VMPCK0 from `snp-emu` into a
/// secrets page, the CPUID page, the CC blob), which on hardware the PSP and OVMF did.
fn snp_cpuid_page(info: &BootInfo) {
    #[cfg(feature = "loopback-ghcb")]
    {
        println!("ckms: {}", crate::loopback::MARKER);
        match crate::loopback::launch() {
            Ok(blob) => log::info!(
                "loopback-ghcb: launch played: secrets page with snp-emu's VMPCK0, CPUID page \
                 from the cpuid instruction, CC blob at {blob:#x}"
            ),
            Err(e) => refuse(format_args!("{e}")),
        }
    }
    if let Err(e) = platform::snp::install_cpuid_page(cc_blob(info)) {
        snp_stop(format_args!("{e}"), e.terminate_reason());
    }
}

/// SNP, after the page tables and the DMA pool: the GHCB session (SEV information, hypervisor
/// features, GHCB page PVALIDATE-rescinded, made shared, registered, mapped C=0), the CPUID
/// page's C-bit checked against the hypervisor's, the console released onto the session, and
/// the DMA pool's conversions moved onto it. Nothing to do on other platforms.
pub fn snp_session() {
    if !snp_boot() {
        return;
    }
    let (version, hv_cbit) = match platform::ghcb::establish() {
        Ok(answer) => answer,
        Err(e) => {
            let reason = e.terminate_reason();
            snp_stop(format_args!("{e}"), reason)
        }
    };
    // Port I/O is an IOIO exit from here on: what was held goes out.
    console::release();
    let backend = if cfg!(feature = "loopback-ghcb") {
        "the loopback GHCB"
    } else {
        "the GHCB"
    };
    log::info!(
        "platform: snp backend over {backend}: protocol v{version}, C-bit {hv_cbit}; port I/O, \
         MSRs and page-state changes are GHCB calls from here on"
    );
    match platform::snp::check_cbit(hv_cbit) {
        Ok(cbit) => println!(
            "ckms: snp: C-bit {cbit} from the CPUID page (the hypervisor agrees); page-table \
             encryption mask {:#x}{}",
            arch::paging::rule().bits(),
            if arch::paging::rule().bits() == 0 {
                ": no memory encryption (SEV_STATUS 0, TCG), the same page-table code runs \
                 with mask 0"
            } else {
                ""
            }
        ),
        Err(e) => snp_stop(format_args!("{e}"), e.terminate_reason()),
    }
    if let Err(e) = dma::use_ghcb() {
        snp_stop(
            format_args!("{e}"),
            sev_guest::msr::TerminateReason::Kms(sev_guest::msr::KmsReason::PageStateChange),
        );
    }
}

/// TDX, after the page tables and the DMA pool (the backend was established by
/// [`tdx_backend`]): the pool moves onto MapGPA/accept (`dma::use_tdx`), whose shared pages
/// (virtio rings, bounce buffers, the GetQuote buffer) are mapped with the shared bit. The
/// loopback-TDX build then runs the #VE self-test through the real IDT gate. Nothing to do on
/// other platforms.
pub fn tdx_session() {
    let Some(info) = platform::tdx::info() else {
        return;
    };
    let (backend, in_ptes) = if cfg!(feature = "loopback-tdx") {
        (
            "the loopback TDCALL",
            "set in the page tables of shared memory: under TCG the alias is QEMU's second \
             mapping of guest RAM at GPA 2^47",
        )
    } else {
        ("TDCALL", "set in the page tables of shared memory")
    };
    log::info!(
        "platform: tdx backend over {backend}: gpaw {}, shared bit {} ({in_ptes}), attributes \
         {:#x}; port I/O and MSRs are TDVMCALLs, #VE is serviced",
        info.gpaw,
        info.shared_bit(),
        info.attributes.0
    );
    if let Err(e) = dma::use_tdx() {
        refuse(format_args!("{e}"));
    }
    #[cfg(feature = "loopback-tdx")]
    match arch::tdx::self_test() {
        t if t.cpuid && t.io && t.consumed_once => {
            log::info!("tdx: #VE self-test ok: cpuid, in al/dx, veinfo consumed once")
        }
        t => refuse(format_args!("tdx: #VE self-test failed: {t:?}")),
    }
    #[cfg(feature = "loopback-tdx")]
    match crate::loopback_tdx::alias_check() {
        Ok(c) => log::info!(
            "tdx: shared alias ok: pool page {:#x} pte {:#x} (shared bit set): {:#04x} written \
             through the shared mapping read back {:#04x} through the private view at {:#x}, \
             {:#04x} written there read back {:#04x} through the shared mapping",
            c.gpa,
            c.pte,
            c.shared_to_private.0,
            c.shared_to_private.1,
            c.private_va,
            c.private_to_shared.0,
            c.private_to_shared.1
        ),
        Err(e) => refuse(format_args!("tdx: shared alias check failed: {e}")),
    }
}

/// The loopback-TDX build, once the drivers mapped their BARs: the MMIO #VE self-test
/// (`arch::tdx::mmio_self_test`: EPT-violation #VEs decoded and completed by TDVMCALL).
#[cfg(feature = "loopback-tdx")]
pub fn loopback_tdx_mmio() {
    match arch::tdx::mmio_self_test() {
        Ok(t) if t.via_ve == t.via_hal && t.store_len > 0 && t.load_len > 0 && t.tdvmcalls >= 3 => {
            log::info!(
                "tdx: MMIO #VE self-test ok: store rip+{} load rip+{} device-feature-hi={:#x} \
             mmio-tdvmcalls={}",
                t.store_len,
                t.load_len,
                t.via_ve,
                t.tdvmcalls
            )
        }
        Ok(t) => refuse(format_args!("tdx: MMIO #VE self-test failed: {t:?}")),
        Err(e) => refuse(format_args!("tdx: MMIO #VE self-test failed: {e}")),
    }
}

/// TSC calibration against the PIT; the RTC only for the (untrusted) date; the APIC timer.
pub fn clocks() {
    match time::calibrate() {
        Ok(hz) => log::info!(
            "clock: tsc {} kHz; rtc (untrusted) {:?} unix",
            hz / 1000,
            time::rtc_unix_seconds()
        ),
        Err(e) => refuse(format_args!("clock calibration: {e}")),
    }
    match time::sync_wall_clock() {
        Some(secs) => {
            log::info!("clock: wall clock aligned to an rtc (untrusted) edge at {secs} unix")
        }
        None => log::warn!("clock: no rtc update edge seen; the wall clock reads the rtc directly"),
    }
    match arch::apic::init() {
        Some(per_ms) => log::info!("apic: timer {per_ms} kHz (idle wake-ups only)"),
        None => log::warn!("apic: no usable local APIC timer; the idle loop spins"),
    }
}

/// Selects the attestation backend (the hardware was checked by [`early_platform`]).
pub fn platform(cfg: &BootConfig, info: &BootInfo) -> PlatformKind {
    // Where the TDX backend looks for the firmware's CC event log (ACPI CCEL).
    platform::tdx::record_rsdp(info.rsdp);
    let kind = match platform::select(cfg.attestation, cc_blob(info)) {
        Ok(kind) => kind,
        Err(e) => refuse(format_args!("{e}")),
    };
    if let Ok(caps) = platform::with(|p| p.capabilities()) {
        log::info!("platform: {kind} ({caps:?})");
    }
    kind
}

/// Seeds the kernel CSPRNG from RDSEED/RDRAND.
pub fn entropy() {
    match rng::init() {
        Ok(source) => log::info!("rng: chacha20 seeded from {source}"),
        Err(e) => refuse(format_args!("{e}")),
    }
}

/// PCI scan, virtio-net bring-up, then the network stack with an address.
pub fn network(cfg: &BootConfig) -> NetStack {
    if cfg.test == Some(cmdline::TestService::UnmappedBar) {
        if !cfg!(feature = "loopback-ghcb") {
            refuse(format_args!(
                "ckms.test=unmapped-bar needs the loopback-GHCB build (the BAR fault stands in \
                 for the NPF #VC there)"
            ));
        }
        arch::mmio::set_unmapped_bars();
        log::info!("mmio: BARs left unmapped: MMIO by mov faults into the #VC/#PF MMIO path");
    }
    let functions = pci::enumerate();
    for f in &functions {
        let h = &f.header;
        log::debug!(
            "pci: {:02x}:{:02x}.{} {:04x}:{:04x} class {:02x}.{:02x}",
            f.df.bus,
            f.df.device,
            f.df.function,
            h.vendor,
            h.device,
            h.class,
            h.subclass
        );
    }
    let Some(nic_fn) = functions.iter().find(|f| f.header.is_virtio_net()) else {
        refuse(format_args!(
            "no virtio-net device (modern PCI, disable-legacy=on) found"
        ));
    };
    for i in 0..6 {
        log::debug!("pci: virtio-net BAR{i}: {:x?}", nic_fn.header.bar(i));
    }
    let nic = match VirtioNic::new(nic_fn.df) {
        Ok(nic) => nic,
        Err(e) => refuse(format_args!("{e}")),
    };
    let (used, shared) = dma::usage();
    log::info!(
        "dma: {used} of {} pool pages in use after virtio-net bring-up ({shared} shared)",
        dma::POOL_PAGES
    );
    platform::ghcb::log_stats("after virtio-net bring-up");
    platform::tdx::log_stats("after virtio-net bring-up");
    match net::up(nic, cfg) {
        Ok(s) => s,
        Err(e) => refuse(format_args!("{e}")),
    }
}
