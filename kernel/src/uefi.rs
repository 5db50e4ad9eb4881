//! The few UEFI boot services the kernel uses before `ExitBootServices`, and the boot
//! information it saves from them (UEFI Specification 2.10).
//!
//! Everything the kernel needs from the firmware is copied into one [`BootInfo`] (allocated
//! as `EfiLoaderData`, which stays ours after exit): the command line (LoadOptions), the
//! configuration tables (ACPI RSDP, SEV-SNP CC blob, confidential-computing secret area),
//! the memory map, and the stacks the kernel switches to. Nothing here runs after boot
//! services are gone.
//!
//! The table and descriptor layouts are `uefi-raw`'s; this file keeps the safe wrapper around
//! them ([`save_and_exit`] → [`BootInfo`]) and pins the offsets it relies on.

use core::ffi::c_void;
use core::mem::{offset_of, size_of};
use core::ptr;

use bootparams::memmap::{MAX_REGIONS, MemoryRegion};
use uefi_raw::guid;
use uefi_raw::protocol::loaded_image::LoadedImageProtocol;
use uefi_raw::table::boot::{AllocateType, BootServices, MemoryDescriptor, MemoryType};
use uefi_raw::table::configuration::ConfigurationTable;
pub use uefi_raw::table::system::SystemTable;
pub use uefi_raw::{Guid, Handle, Status};

/// `EFI_ACPI_20_TABLE_GUID` (UEFI 2.10, 4.6.1.1).
pub const ACPI_20_GUID: Guid = guid!("8868e871-e4f1-11d3-bc22-0080c73c8881");
/// `ACPI_TABLE_GUID` (ACPI 1.0 RSDP).
pub const ACPI_10_GUID: Guid = guid!("eb9d2d30-2d88-11d3-9a16-0090273fc14d");
/// EDK2 `gConfidentialComputingSevSnpBlobGuid`: the SEV-SNP "CC blob" (secrets and CPUID
/// page addresses), published by OVMF when it runs as an SNP guest.
pub const SEV_SNP_CC_BLOB_GUID: Guid = guid!("067b1f5f-cf26-44c5-8554-93d777912d42");
/// EDK2 `gConfidentialComputingSecretGuid`: the launch-secret area.
pub const COCO_SECRET_GUID: Guid = guid!("adf956ad-e98c-484c-ae11-b51c7d336447");

// The table layouts come from `uefi-raw`. These offsets (UEFI 2.10, 4.3, 4.4 and 9.1) are the
// ones this file dereferences or calls through before any console exists: a wrong one would
// jump into the firmware at random, so they are pinned at compile time.
const _: () = {
    assert!(offset_of!(SystemTable, boot_services) == 0x60);
    assert!(offset_of!(SystemTable, number_of_configuration_table_entries) == 0x68);
    assert!(offset_of!(SystemTable, configuration_table) == 0x70);
    assert!(size_of::<ConfigurationTable>() == 24);
    assert!(offset_of!(BootServices, allocate_pages) == 0x28);
    assert!(offset_of!(BootServices, get_memory_map) == 0x38);
    assert!(offset_of!(BootServices, allocate_pool) == 0x40);
    assert!(offset_of!(BootServices, handle_protocol) == 0x98);
    assert!(offset_of!(BootServices, exit_boot_services) == 0xe8);
    assert!(offset_of!(LoadedImageProtocol, load_options_size) == 0x30);
    assert!(offset_of!(LoadedImageProtocol, load_options) == 0x38);
    assert!(offset_of!(LoadedImageProtocol, image_base) == 0x40);
    assert!(offset_of!(LoadedImageProtocol, image_size) == 0x48);
};

/// Longest command line kept (bytes); a longer one is a boot error, not silently cut.
pub const CMDLINE_MAX: usize = 2048;
/// Configuration tables kept for the log.
pub const MAX_CONFIG_TABLES: usize = 32;

/// Size of the stack the kernel runs on after exiting boot services.
pub const BOOT_STACK_SIZE: usize = 512 * 1024;
/// Size of each interrupt stack (IST).
pub const IST_STACK_SIZE: usize = 64 * 1024;
/// Interrupt stacks: IST1 for exceptions, IST2 for double faults, IST3 for #VC, IST4 for #VE.
pub const IST_STACKS: usize = 4;

/// How the LoadOptions failed to become an ASCII command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmdlineError {
    /// Longer than [`CMDLINE_MAX`].
    TooLong,
    /// A UCS-2 character outside printable ASCII.
    NotAscii,
    /// An odd byte count or a misaligned buffer.
    Malformed,
}

impl core::fmt::Display for CmdlineError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::TooLong => "command line too long",
            Self::NotAscii => "command line is not printable ASCII",
            Self::Malformed => "command line is not UCS-2",
        })
    }
}

/// What the kernel keeps from the firmware.
pub struct BootInfo {
    /// Load address of our image.
    pub image_base: u64,
    /// Size of our image in memory.
    pub image_size: u64,
    /// The command line, ASCII (from LoadOptions, UCS-2, NUL-terminated).
    cmdline: [u8; CMDLINE_MAX],
    cmdline_len: usize,
    /// Set when LoadOptions were not a usable command line.
    pub cmdline_error: Option<CmdlineError>,
    /// ACPI RSDP (2.0 preferred).
    pub rsdp: Option<u64>,
    /// SEV-SNP CC blob, when OVMF ran as an SNP guest.
    pub snp_cc_blob: Option<u64>,
    /// Confidential-computing secret area, when present.
    pub coco_secret: Option<u64>,
    config_tables: [(Guid, u64); MAX_CONFIG_TABLES],
    config_table_count: usize,
    /// Total number of configuration tables the firmware had (may exceed what we keep).
    pub config_table_total: usize,
    memory_map: [MemoryRegion; MAX_REGIONS],
    memory_map_len: usize,
    /// Firmware entries that did not fit in `memory_map`.
    pub memory_map_dropped: usize,
    /// Top of the boot stack (16-byte aligned).
    pub boot_stack_top: u64,
    /// Tops of the interrupt stacks.
    pub ist_tops: [u64; IST_STACKS],
    /// The page below each stack (boot stack first), to be unmapped as a guard.
    pub stack_guards: [u64; 1 + IST_STACKS],
    /// Memory we allocated as LoaderData (stacks, this struct, the map buffer).
    pub loader_allocations: u64,
}

impl BootInfo {
    /// The command line, or why there is none.
    pub fn cmdline(&self) -> Result<&str, CmdlineError> {
        if let Some(e) = self.cmdline_error {
            return Err(e);
        }
        let bytes = self
            .cmdline
            .get(..self.cmdline_len)
            .ok_or(CmdlineError::TooLong)?;
        core::str::from_utf8(bytes).map_err(|_| CmdlineError::NotAscii)
    }

    /// The memory map saved at exit.
    pub fn memory_map(&self) -> &[MemoryRegion] {
        self.memory_map.get(..self.memory_map_len).unwrap_or(&[])
    }

    /// The configuration tables (GUID, address) we kept.
    pub fn config_tables(&self) -> &[(Guid, u64)] {
        self.config_tables
            .get(..self.config_table_count)
            .unwrap_or(&[])
    }
}

/// Why leaving the firmware failed. Reported by halting: there is no console of ours yet.
#[derive(Clone, Copy, Debug)]
pub enum ExitError {
    /// A boot service returned this status (`EFI_STATUS` value).
    Firmware(&'static str, usize),
}

fn check(what: &'static str, status: Status) -> Result<(), ExitError> {
    if status == Status::SUCCESS {
        Ok(())
    } else {
        Err(ExitError::Firmware(what, status.0))
    }
}

/// Converts UCS-2 LoadOptions into the ASCII command line (trailing NULs and the spaces
/// around the line are dropped; an embedded NUL ends the line).
fn save_cmdline(info: &mut BootInfo, options: *const c_void, size_bytes: u32) {
    let options = options.cast::<u16>();
    info.cmdline_len = 0;
    if options.is_null() || size_bytes == 0 {
        return;
    }
    if !size_bytes.is_multiple_of(2) {
        info.cmdline_error = Some(CmdlineError::Malformed);
        return;
    }
    let chars = (size_bytes / 2) as usize;
    let mut len = 0;
    for i in 0..chars {
        // SAFETY: the firmware says LoadOptions holds `size_bytes` bytes; `i < chars`.
        let c = unsafe { options.add(i).read_unaligned() };
        if c == 0 {
            break;
        }
        if !(0x20..0x7f).contains(&c) {
            info.cmdline_error = Some(CmdlineError::NotAscii);
            return;
        }
        let Some(slot) = info.cmdline.get_mut(len) else {
            info.cmdline_error = Some(CmdlineError::TooLong);
            return;
        };
        *slot = c as u8;
        len += 1;
    }
    info.cmdline_len = len;
}

/// Saves what the kernel needs from the firmware, allocates the kernel's stacks, and exits
/// boot services.
///
/// # Safety
/// `image` and `st` must be the values the firmware passed to the entry point, and boot
/// services must still be active. After return, no boot service may be called and no
/// memory other than `EfiLoaderCode/Data` and the types the memory map marks free may be
/// relied on.
pub unsafe fn save_and_exit(
    image: Handle,
    st: *const SystemTable,
) -> Result<&'static mut BootInfo, ExitError> {
    // SAFETY: `st` is the firmware's system table (caller contract), valid until exit.
    let st = unsafe { &*st };
    // SAFETY: boot services are active, so the table pointer is valid.
    let bs = unsafe { &*st.boot_services };

    // BootInfo lives in LoaderData pages: ours after exit.
    let info_pages = size_of::<BootInfo>().div_ceil(4096);
    let mut info_addr = 0u64;
    // SAFETY: a plain allocation request with a valid out-pointer.
    check("AllocatePages(BootInfo)", unsafe {
        (bs.allocate_pages)(
            AllocateType::ANY_PAGES,
            MemoryType::LOADER_DATA,
            info_pages,
            &mut info_addr,
        )
    })?;
    let info_ptr = info_addr as *mut BootInfo;
    // SAFETY: freshly allocated, page-aligned and large enough. All-zero bytes are valid for
    // every field (integers, arrays of integers and byte-array `Guid`s, `Option<u64>` = None) except
    // `cmdline_error`, whose niche encodes `None`: it is written before any reference to
    // the whole struct exists.
    let info = unsafe {
        ptr::write_bytes(info_ptr.cast::<u8>(), 0, info_pages * 4096);
        ptr::addr_of_mut!((*info_ptr).cmdline_error).write(None);
        &mut *info_ptr
    };
    info.loader_allocations = (info_pages * 4096) as u64;

    // Command line and image placement from the LoadedImage protocol.
    let mut li: *mut c_void = ptr::null_mut();
    // SAFETY: valid handle and out-pointer; the firmware returns its protocol instance.
    check("HandleProtocol(LoadedImage)", unsafe {
        (bs.handle_protocol)(image, &LoadedImageProtocol::GUID, &mut li)
    })?;
    // SAFETY: HandleProtocol succeeded, so `li` points to the image's protocol instance.
    let li = unsafe { &*li.cast::<LoadedImageProtocol>() };
    info.image_base = li.image_base as u64;
    info.image_size = li.image_size;
    save_cmdline(info, li.load_options, li.load_options_size);

    // Configuration tables.
    info.config_table_total = st.number_of_configuration_table_entries;
    for i in 0..st.number_of_configuration_table_entries {
        // SAFETY: the system table advertises `number_of_configuration_table_entries` entries
        // at `configuration_table`, and `i` is below that count.
        let t = unsafe { &*st.configuration_table.add(i) };
        let addr = t.vendor_table as u64;
        if t.vendor_guid == ACPI_20_GUID || (t.vendor_guid == ACPI_10_GUID && info.rsdp.is_none()) {
            info.rsdp = Some(addr);
        } else if t.vendor_guid == SEV_SNP_CC_BLOB_GUID {
            info.snp_cc_blob = Some(addr);
        } else if t.vendor_guid == COCO_SECRET_GUID {
            info.coco_secret = Some(addr);
        }
        if let Some(slot) = info.config_tables.get_mut(i) {
            *slot = (t.vendor_guid, addr);
            info.config_table_count = i + 1;
        }
    }

    // Stacks: one boot stack and the IST stacks, each with one extra page below it that
    // becomes a guard page once the kernel's page tables are in place.
    let mut alloc_stack = |size: usize| -> Result<(u64, u64), ExitError> {
        let mut base = 0u64;
        // SAFETY: plain allocation with a valid out-pointer.
        check("AllocatePages(stack)", unsafe {
            (bs.allocate_pages)(
                AllocateType::ANY_PAGES,
                MemoryType::LOADER_DATA,
                size / 4096 + 1,
                &mut base,
            )
        })?;
        info.loader_allocations += size as u64 + 4096;
        Ok((base, base + 4096 + size as u64))
    };
    let (guard, top) = alloc_stack(BOOT_STACK_SIZE)?;
    info.boot_stack_top = top;
    info.stack_guards[0] = guard;
    for i in 0..IST_STACKS {
        let (guard, top) = alloc_stack(IST_STACK_SIZE)?;
        if let (Some(t), Some(g)) = (info.ist_tops.get_mut(i), info.stack_guards.get_mut(i + 1)) {
            *t = top;
            *g = guard;
        }
    }

    // Memory map, then exit. The buffer is allocated before the final GetMemoryMap, with
    // slack for the descriptors that allocation itself adds.
    let mut map_size = 0usize;
    let mut key = 0usize;
    let mut desc_size = 0usize;
    let mut desc_version = 0u32;
    // SAFETY: a size query with a zero-length buffer.
    let status = unsafe {
        (bs.get_memory_map)(
            &mut map_size,
            ptr::null_mut(),
            &mut key,
            &mut desc_size,
            &mut desc_version,
        )
    };
    if status != Status::BUFFER_TOO_SMALL {
        check("GetMemoryMap(size)", status)?;
    }
    let capacity = map_size + 16 * desc_size.max(size_of::<MemoryDescriptor>());
    let mut buf: *mut u8 = ptr::null_mut();
    // SAFETY: plain pool allocation with a valid out-pointer.
    check("AllocatePool(memory map)", unsafe {
        (bs.allocate_pool)(MemoryType::LOADER_DATA, capacity, &mut buf)
    })?;
    info.loader_allocations += capacity as u64;
    let mut attempts = 0;
    loop {
        map_size = capacity;
        // SAFETY: `buf` holds `capacity` bytes.
        check("GetMemoryMap", unsafe {
            (bs.get_memory_map)(
                &mut map_size,
                buf.cast::<MemoryDescriptor>(),
                &mut key,
                &mut desc_size,
                &mut desc_version,
            )
        })?;
        // SAFETY: valid image handle; `key` is from the map just read. No allocation happens
        // between the two calls.
        let status = unsafe { (bs.exit_boot_services)(image, key) };
        if status == Status::SUCCESS {
            break;
        }
        // The map changed under us (an event allocated memory): read it again, once more.
        attempts += 1;
        if attempts > 3 {
            check("ExitBootServices", status)?;
        }
    }

    // Boot services are gone; copy the map (firmware stride `desc_size`) into BootInfo.
    let count = map_size.checked_div(desc_size).unwrap_or(0);
    for i in 0..count {
        // SAFETY: the firmware wrote `map_size` bytes of descriptors with stride `desc_size`.
        let d = unsafe {
            buf.add(i * desc_size)
                .cast::<MemoryDescriptor>()
                .read_unaligned()
        };
        match info.memory_map.get_mut(info.memory_map_len) {
            Some(slot) => {
                *slot = MemoryRegion {
                    kind: d.ty.0,
                    start: d.phys_start,
                    pages: d.page_count,
                    attribute: d.att.bits(),
                };
                info.memory_map_len += 1;
            }
            None => info.memory_map_dropped += 1,
        }
    }
    Ok(info)
}
