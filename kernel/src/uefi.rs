//! The few UEFI boot services the kernel uses before `ExitBootServices`, and the boot
//! information it saves from them (UEFI Specification 2.10).
//!
//! Everything the kernel needs from the firmware is copied into one [`BootInfo`] (allocated
//! as `EfiLoaderData`, which stays ours after exit): the command line (LoadOptions), the
//! configuration tables (ACPI RSDP, SEV-SNP CC blob, confidential-computing secret area),
//! the memory map, and the stacks the kernel switches to. Nothing here runs after boot
//! services are gone.

use core::ffi::c_void;
use core::mem::size_of;
use core::ptr;

use bootparams::memmap::{MAX_REGIONS, MemoryRegion};

/// `EFI_STATUS`.
pub type Status = usize;
/// `EFI_HANDLE`.
pub type Handle = *mut c_void;

const EFI_SUCCESS: Status = 0;
const ERROR_BIT: usize = 1 << 63;
const EFI_BUFFER_TOO_SMALL: Status = ERROR_BIT | 5;

/// `EFI_GUID` (UEFI 2.10, Appendix A).
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Guid {
    d1: u32,
    d2: u16,
    d3: u16,
    d4: [u8; 8],
}

impl Guid {
    /// Builds a GUID from its textual fields.
    pub const fn new(d1: u32, d2: u16, d3: u16, d4: [u8; 8]) -> Self {
        Self { d1, d2, d3, d4 }
    }
}

impl core::fmt::Display for Guid {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let d = &self.d4;
        write!(
            f,
            "{:08x}-{:04x}-{:04x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
            self.d1, self.d2, self.d3, d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]
        )
    }
}

/// `EFI_LOADED_IMAGE_PROTOCOL_GUID` (UEFI 2.10, 9.1).
const LOADED_IMAGE_GUID: Guid = Guid::new(
    0x5b1b31a1,
    0x9562,
    0x11d2,
    [0x8e, 0x3f, 0x00, 0xa0, 0xc9, 0x69, 0x72, 0x3b],
);
/// `EFI_ACPI_20_TABLE_GUID` (UEFI 2.10, 4.6.1.1).
pub const ACPI_20_GUID: Guid = Guid::new(
    0x8868e871,
    0xe4f1,
    0x11d3,
    [0xbc, 0x22, 0x00, 0x80, 0xc7, 0x3c, 0x88, 0x81],
);
/// `ACPI_TABLE_GUID` (ACPI 1.0 RSDP).
pub const ACPI_10_GUID: Guid = Guid::new(
    0xeb9d2d30,
    0x2d88,
    0x11d3,
    [0x9a, 0x16, 0x00, 0x90, 0x27, 0x3f, 0xc1, 0x4d],
);
/// EDK2 `gConfidentialComputingSevSnpBlobGuid`: the SEV-SNP "CC blob" (secrets and CPUID
/// page addresses), published by OVMF when it runs as an SNP guest.
pub const SEV_SNP_CC_BLOB_GUID: Guid = Guid::new(
    0x067b1f5f,
    0xcf26,
    0x44c5,
    [0x85, 0x54, 0x93, 0xd7, 0x77, 0x91, 0x2d, 0x42],
);
/// EDK2 `gConfidentialComputingSecretGuid`: the launch-secret area.
pub const COCO_SECRET_GUID: Guid = Guid::new(
    0xadf956ad,
    0xe98c,
    0x484c,
    [0xae, 0x11, 0xb5, 0x1c, 0x7d, 0x33, 0x64, 0x47],
);

/// `EFI_TABLE_HEADER`.
#[repr(C)]
struct TableHeader {
    signature: u64,
    revision: u32,
    header_size: u32,
    crc32: u32,
    reserved: u32,
}

/// `EFI_SYSTEM_TABLE` (UEFI 2.10, 4.3).
#[repr(C)]
pub struct SystemTable {
    hdr: TableHeader,
    firmware_vendor: *const u16,
    firmware_revision: u32,
    console_in_handle: Handle,
    con_in: *mut c_void,
    console_out_handle: Handle,
    con_out: *mut c_void,
    standard_error_handle: Handle,
    std_err: *mut c_void,
    runtime_services: *mut c_void,
    boot_services: *const BootServices,
    number_of_table_entries: usize,
    configuration_table: *const ConfigurationTable,
}

/// `EFI_CONFIGURATION_TABLE`.
#[repr(C)]
struct ConfigurationTable {
    vendor_guid: Guid,
    vendor_table: *mut c_void,
}

type Unused = usize;

/// `EFI_BOOT_SERVICES` (UEFI 2.10, 4.4), up to `ExitBootServices`.
#[repr(C)]
struct BootServices {
    hdr: TableHeader,
    raise_tpl: Unused,
    restore_tpl: Unused,
    allocate_pages: unsafe extern "efiapi" fn(u32, u32, usize, *mut u64) -> Status,
    free_pages: Unused,
    get_memory_map:
        unsafe extern "efiapi" fn(*mut usize, *mut u8, *mut usize, *mut usize, *mut u32) -> Status,
    allocate_pool: unsafe extern "efiapi" fn(u32, usize, *mut *mut u8) -> Status,
    free_pool: unsafe extern "efiapi" fn(*mut u8) -> Status,
    create_event: Unused,
    set_timer: Unused,
    wait_for_event: Unused,
    signal_event: Unused,
    close_event: Unused,
    check_event: Unused,
    install_protocol_interface: Unused,
    reinstall_protocol_interface: Unused,
    uninstall_protocol_interface: Unused,
    handle_protocol: unsafe extern "efiapi" fn(Handle, *const Guid, *mut *mut c_void) -> Status,
    reserved: Unused,
    register_protocol_notify: Unused,
    locate_handle: Unused,
    locate_device_path: Unused,
    install_configuration_table: Unused,
    load_image: Unused,
    start_image: Unused,
    exit: Unused,
    unload_image: Unused,
    exit_boot_services: unsafe extern "efiapi" fn(Handle, usize) -> Status,
}

/// `EFI_LOADED_IMAGE_PROTOCOL` (UEFI 2.10, 9.1).
#[repr(C)]
struct LoadedImage {
    revision: u32,
    parent_handle: Handle,
    system_table: *mut SystemTable,
    device_handle: Handle,
    file_path: *mut c_void,
    reserved: *mut c_void,
    load_options_size: u32,
    load_options: *const u16,
    image_base: *mut c_void,
    image_size: u64,
    image_code_type: u32,
    image_data_type: u32,
    unload: Unused,
}

/// `EFI_MEMORY_DESCRIPTOR` (UEFI 2.10, 7.2); the firmware's stride is `descriptor_size`.
#[repr(C)]
#[derive(Clone, Copy)]
struct MemoryDescriptor {
    kind: u32,
    physical_start: u64,
    virtual_start: u64,
    number_of_pages: u64,
    attribute: u64,
}

const EFI_LOADER_DATA: u32 = 2;
const ALLOCATE_ANY_PAGES: u32 = 0;

/// Longest command line kept (bytes); a longer one is a boot error, not silently cut.
pub const CMDLINE_MAX: usize = 2048;
/// Configuration tables kept for the log.
pub const MAX_CONFIG_TABLES: usize = 32;

/// Size of the stack the kernel runs on after exiting boot services.
pub const BOOT_STACK_SIZE: usize = 512 * 1024;
/// Size of each interrupt stack (IST).
pub const IST_STACK_SIZE: usize = 64 * 1024;
/// Interrupt stacks: IST1 for exceptions, IST2 for double faults.
pub const IST_STACKS: usize = 2;

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
    /// A boot service returned this status.
    Firmware(&'static str, Status),
}

fn check(what: &'static str, status: Status) -> Result<(), ExitError> {
    if status == EFI_SUCCESS {
        Ok(())
    } else {
        Err(ExitError::Firmware(what, status))
    }
}

/// Converts UCS-2 LoadOptions into the ASCII command line (trailing NULs and the spaces
/// around the line are dropped; an embedded NUL ends the line).
fn save_cmdline(info: &mut BootInfo, options: *const u16, size_bytes: u32) {
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
            ALLOCATE_ANY_PAGES,
            EFI_LOADER_DATA,
            info_pages,
            &mut info_addr,
        )
    })?;
    let info_ptr = info_addr as *mut BootInfo;
    // SAFETY: freshly allocated, page-aligned and large enough. All-zero bytes are valid for
    // every field (integers, arrays of integers, `Option<u64>` = None) except
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
        (bs.handle_protocol)(image, &LOADED_IMAGE_GUID, &mut li)
    })?;
    // SAFETY: HandleProtocol succeeded, so `li` points to the image's protocol instance.
    let li = unsafe { &*li.cast::<LoadedImage>() };
    info.image_base = li.image_base as u64;
    info.image_size = li.image_size;
    save_cmdline(info, li.load_options, li.load_options_size);

    // Configuration tables.
    info.config_table_total = st.number_of_table_entries;
    for i in 0..st.number_of_table_entries {
        // SAFETY: the system table advertises `number_of_table_entries` entries.
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
                ALLOCATE_ANY_PAGES,
                EFI_LOADER_DATA,
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
    if status != EFI_BUFFER_TOO_SMALL {
        check("GetMemoryMap(size)", status)?;
    }
    let capacity = map_size + 16 * desc_size.max(size_of::<MemoryDescriptor>());
    let mut buf: *mut u8 = ptr::null_mut();
    // SAFETY: plain pool allocation with a valid out-pointer.
    check("AllocatePool(memory map)", unsafe {
        (bs.allocate_pool)(EFI_LOADER_DATA, capacity, &mut buf)
    })?;
    info.loader_allocations += capacity as u64;
    let mut attempts = 0;
    loop {
        map_size = capacity;
        // SAFETY: `buf` holds `capacity` bytes.
        check("GetMemoryMap", unsafe {
            (bs.get_memory_map)(
                &mut map_size,
                buf,
                &mut key,
                &mut desc_size,
                &mut desc_version,
            )
        })?;
        // SAFETY: valid image handle; `key` is from the map just read. No allocation happens
        // between the two calls.
        let status = unsafe { (bs.exit_boot_services)(image, key) };
        if status == EFI_SUCCESS {
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
                    kind: d.kind,
                    start: d.physical_start,
                    pages: d.number_of_pages,
                    attribute: d.attribute,
                };
                info.memory_map_len += 1;
            }
            None => info.memory_map_dropped += 1,
        }
    }
    Ok(info)
}
