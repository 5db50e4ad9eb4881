//! Our own 4-level page tables (Intel SDM vol. 3A, 4.5): an identity map of RAM and low MMIO
//! with 2 MiB pages, no-execute everywhere except our `.text` (read-only, as are `.rodata` and
//! the headers: W^X), 4 KiB guard pages (page 0, below each stack), and uncached identity
//! mappings of device BARs added on demand.
//!
//! Table pages come from the kernel heap, which is itself identity-mapped (by the firmware's
//! tables before the switch, by ours after), so a table's virtual address is its physical
//! address.
//!
//! Memory encryption: every entry goes through one page-attribute rule,
//! `sev_guest::pte::PteRule` (host-tested there), fixed by [`init`] for the whole boot:
//! - SEV-SNP: the C-bit, set for private (RAM and the tables themselves C=1; the GHCB page,
//!   the DMA pool's shared pages and device memory C=0). The CPUID page's C-bit when
//!   `SEV_STATUS` says memory encryption is active, else none: under TCG (the loopback-GHCB
//!   build included) the same code runs with no bit, because TCG encrypts nothing and its
//!   physical-address width makes bit 51 a reserved bit.
//! - TDX: the shared bit GPAW − 1 (GHCI 348552 §1.3), set for shared: RAM and the tables
//!   bit-clear (private, Secure EPT), the DMA pool's shared pages (virtio rings, bounce
//!   buffers, the GetQuote buffer) and device memory with the bit (the host's EPT). GPAW comes
//!   from TDG.VP.INFO, which is why the TDX backend is established before this module's
//!   [`init`] (`crate::boot::tdx_backend`). The loopback-TDX build uses the same rule
//!   (`crate::arch::tdx::KernelTdcall::SHARED_ALIAS`): its runner gives QEMU 48 physical
//!   address bits and a second mapping of guest RAM at GPA 2^47, so a bit-47 entry reaches the
//!   same frame through a real alias; the stub reaches devices through `private_view`.
//! - Elsewhere: none.
//!
//! The identity map follows the firmware's memory map (`sev_guest::pte::backing`): 2 MiB
//! blocks entirely RAM are private, blocks with no RAM (the low MMIO holes: LAPIC, IOAPIC,
//! 32-bit BARs, flash) shared, and mixed blocks (the first 2 MiB with the legacy VGA/ROM hole)
//! are split, each 4 KiB page private only if it is RAM.

use alloc::alloc::{Layout, alloc_zeroed};
use core::arch::asm;

use sev_guest::pte::{self, Backing, MaskError, PteRule};

const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
const WRITE_THROUGH: u64 = 1 << 3;
const CACHE_DISABLE: u64 = 1 << 4;
const HUGE: u64 = 1 << 7;
const NO_EXECUTE: u64 = 1 << 63;
/// The attribute bits a split 2 MiB page passes to its 4 KiB entries.
const KEEP: u64 = WRITABLE | WRITE_THROUGH | CACHE_DISABLE | NO_EXECUTE;

const SIZE_2M: u64 = 2 << 20;

/// Paging failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PagingError {
    /// No memory for a table page.
    OutOfMemory,
    /// The range wraps or lies beyond 4-level paging's 256 TiB.
    BadRange,
    /// An address does not fit an entry under the page-attribute rule.
    Mask(MaskError),
}

impl core::fmt::Display for PagingError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::OutOfMemory => f.write_str("out of memory for page tables"),
            Self::BadRange => f.write_str("address range not mappable"),
            Self::Mask(e) => e.fmt(f),
        }
    }
}

struct Root(u64);

static ROOT: spin::Mutex<Option<Root>> = spin::Mutex::new(None);

/// The page-attribute rule, fixed by [`init`].
static RULE: spin::Once<PteRule> = spin::Once::new();

fn current() -> PteRule {
    RULE.get().copied().unwrap_or(PteRule::NONE)
}

/// The page-attribute rule the page tables use (none before [`init`]).
pub fn rule() -> PteRule {
    current()
}

/// An entry for `phys` with `flags`, private or shared (under the rule: C=1 private on SEV,
/// shared bit set on TDX).
fn entry(phys: u64, flags: u64, private: bool) -> Result<u64, PagingError> {
    current()
        .entry(phys, flags, private)
        .map_err(PagingError::Mask)
}

fn new_table() -> Result<*mut u64, PagingError> {
    let layout = Layout::from_size_align(4096, 4096).map_err(|_| PagingError::OutOfMemory)?;
    // SAFETY: `alloc_zeroed` only requires a layout of non-zero size; this one is 4096 bytes.
    let p = unsafe { alloc_zeroed(layout) };
    if p.is_null() {
        Err(PagingError::OutOfMemory)
    } else {
        Ok(p.cast())
    }
}

/// Returns the next-level table behind `table[index]`, creating it when absent.
///
/// # Safety
/// `table` must be a live page table page of ours (identity-mapped).
unsafe fn next(table: *mut u64, index: usize) -> Result<Option<*mut u64>, PagingError> {
    // SAFETY: `index < 512` (callers mask it) and `table` is a 512-entry table.
    let entry = unsafe { table.add(index) };
    // SAFETY: `entry` is inside the live, identity-mapped table page (above), aligned to 8.
    let value = unsafe { entry.read_volatile() };
    if value & PRESENT != 0 {
        if value & HUGE != 0 {
            return Ok(None); // already covered by a large page
        }
        return Ok(Some(current().address(value) as *mut u64));
    }
    let t = new_table()?;
    // Tables live in private heap memory: reached through private entries (C=1 on SEV,
    // shared bit clear on TDX).
    let value = self::entry(t as u64, PRESENT | WRITABLE, true)?;
    // SAFETY: as above; the new table is zeroed (all entries not present).
    unsafe { entry.write_volatile(value) };
    Ok(Some(t))
}

/// Identity-maps `[start, end)` rounded out to 2 MiB with `flags`, private or shared.
fn map_range(
    root: u64,
    start: u64,
    end: u64,
    flags: u64,
    private: bool,
) -> Result<(), PagingError> {
    map_range_at(root, start, end, flags, private, 0)
}

/// Maps `[start, end)` (physical, rounded out to 2 MiB) at virtual `physical + va_offset`.
fn map_range_at(
    root: u64,
    start: u64,
    end: u64,
    flags: u64,
    private: bool,
    va_offset: u64,
) -> Result<(), PagingError> {
    if end <= start || end.checked_add(va_offset).is_none_or(|e| e > (1 << 47)) {
        return Err(PagingError::BadRange);
    }
    let mut addr = start & !(SIZE_2M - 1);
    while addr < end {
        let va = addr + va_offset;
        let i4 = ((va >> 39) & 511) as usize;
        let i3 = ((va >> 30) & 511) as usize;
        let i2 = ((va >> 21) & 511) as usize;
        // SAFETY: `root` and every table reached from it are ours (created by `new_table`).
        unsafe {
            if let Some(pdpt) = next(root as *mut u64, i4)?
                && let Some(pd) = next(pdpt, i3)?
            {
                let e = pd.add(i2);
                if e.read_volatile() & PRESENT == 0 {
                    e.write_volatile(entry(addr, PRESENT | WRITABLE | HUGE | flags, private)?);
                }
            }
        }
        addr += SIZE_2M;
    }
    Ok(())
}

/// Where our image's sections lie (page-aligned runtime addresses).
#[derive(Clone, Copy, Debug)]
pub struct ImageLayout {
    /// Load address (PE headers).
    pub base: u64,
    /// Start of `.text`.
    pub text_start: u64,
    /// End of `.text`.
    pub text_end: u64,
    /// End of the read-only sections (`.reloc`, `.rodata`).
    pub rodata_end: u64,
    /// End of the image in memory.
    pub end: u64,
}

impl ImageLayout {
    /// The running image's layout, from the linker's section symbols (`link.ld`) and the
    /// image size the loader reported.
    pub fn current(base: u64, size: u64) -> Self {
        unsafe extern "C" {
            static __text_start: u8;
            static __text_end: u8;
            static __rodata_end: u8;
        }
        Self {
            base,
            text_start: (&raw const __text_start) as u64,
            text_end: (&raw const __text_end) as u64,
            rodata_end: (&raw const __rodata_end) as u64,
            end: base.saturating_add(size).next_multiple_of(4096),
        }
    }
}

/// The 4 KiB page table behind directory entry `pde`, splitting a 2 MiB page into 512 4 KiB
/// entries with the same attributes and encryption first.
///
/// # Safety
/// `pde` must be a present entry of one of our page directories.
unsafe fn split(pde: *mut u64) -> Result<*mut u64, PagingError> {
    // SAFETY: caller contract: a live, aligned entry of our tables.
    let value = unsafe { pde.read_volatile() };
    if value & HUGE == 0 {
        return Ok(current().address(value) as *mut u64);
    }
    let m = current();
    let pt = new_table()?;
    let base = m.address(value) & !(SIZE_2M - 1);
    let (keep, private) = (value & KEEP, m.is_private(value));
    for i in 0..512u64 {
        let e = entry(base + i * 4096, PRESENT | keep, private)?;
        // SAFETY: `pt` is a fresh 512-entry table of ours; `i < 512`.
        unsafe { pt.add(i as usize).write_volatile(e) };
    }
    // The directory entry grants everything; the table entries restrict. Same frames, same
    // attributes: nothing changes for running code.
    let e = entry(pt as u64, PRESENT | WRITABLE, true)?;
    // SAFETY: caller contract.
    unsafe { pde.write_volatile(e) };
    Ok(pt)
}

/// The 4 KiB entry for `addr` (splitting its 2 MiB page).
///
/// # Safety
/// `root` must be our root table.
unsafe fn pte_of(root: u64, addr: u64) -> Result<*mut u64, PagingError> {
    let i4 = ((addr >> 39) & 511) as usize;
    let i3 = ((addr >> 30) & 511) as usize;
    let i2 = ((addr >> 21) & 511) as usize;
    let i1 = ((addr >> 12) & 511) as usize;
    // SAFETY: all tables reached are ours (caller contract); indices are masked to 0..512.
    unsafe {
        let Some(pdpt) = next(root as *mut u64, i4)? else {
            return Err(PagingError::BadRange);
        };
        let Some(pd) = next(pdpt, i3)? else {
            return Err(PagingError::BadRange);
        };
        let pde = pd.add(i2);
        if pde.read_volatile() & PRESENT == 0 {
            return Err(PagingError::BadRange);
        }
        Ok(split(pde)?.add(i1))
    }
}

/// Sets the 4 KiB mapping of `addr` to `addr | flags` (private), splitting its 2 MiB page first.
///
/// # Safety
/// `root` must be our root table, and the new permissions must not remove access that
/// running code relies on.
unsafe fn set_4k(root: u64, addr: u64, flags: u64) -> Result<(), PagingError> {
    // SAFETY: caller contract.
    unsafe {
        let pte = pte_of(root, addr)?;
        pte.write_volatile(entry(addr, flags, true)?);
    }
    Ok(())
}

/// Builds the identity map of `[0, limit)` (write-back; the firmware's MTRRs keep MMIO holes
/// uncached) with W^X: nothing is executable except our `.text`, which is read-only; the
/// image headers, `.reloc` and `.rodata` are read-only. RAM is private under `rule`, which
/// stays fixed from here on. Then switches CR3 to it.
///
/// `ram`: the memory map's RAM ranges (every type but MMIO); the rest of `[0, limit)` is an
/// MMIO hole, mapped shared.
pub fn init(
    limit: u64,
    image: &ImageLayout,
    rule: PteRule,
    ram: &[(u64, u64)],
) -> Result<(), PagingError> {
    if *RULE.call_once(|| rule) != rule {
        return Err(PagingError::BadRange);
    }
    let root = new_table()? as u64;
    let mut block = 0;
    while block < limit {
        match pte::backing(block, SIZE_2M, ram) {
            Backing::Ram => map_range(root, block, block + SIZE_2M, NO_EXECUTE, true)?,
            Backing::Mmio => map_range(root, block, block + SIZE_2M, NO_EXECUTE, false)?,
            Backing::Mixed => {
                map_range(root, block, block + SIZE_2M, NO_EXECUTE, true)?;
                let mut page = block;
                while page < block + SIZE_2M {
                    if pte::backing(page, 4096, ram) != Backing::Ram {
                        // SAFETY: `root` is ours and not loaded yet.
                        unsafe {
                            pte_of(root, page)?.write_volatile(entry(
                                page,
                                PRESENT | WRITABLE | NO_EXECUTE,
                                false,
                            )?)
                        };
                    }
                    page += 4096;
                }
            }
        }
        block += SIZE_2M;
    }
    let mut page = image.base;
    while page < image.end {
        let flags = if (image.text_start..image.text_end).contains(&page) {
            PRESENT
        } else if page < image.rodata_end {
            PRESENT | NO_EXECUTE
        } else {
            PRESENT | WRITABLE | NO_EXECUTE
        };
        // SAFETY: `root` is ours and not loaded yet.
        unsafe { set_4k(root, page, flags)? };
        page += 4096;
    }
    // SAFETY: EFER.NXE (AMD APM vol. 2, 3.1.7; Intel SDM vol. 3A, 4.1.4) makes bit 63 mean
    // no-execute, and CR0.WP makes read-only pages bind the kernel too. The new tables
    // identity-map everything below `limit` (this code, the stacks, the heap and every
    // structure in use) with execute permission exactly for our `.text`, where all code we
    // run lives, and write permission everywhere but our read-only sections, which nothing
    // writes after relocation; so execution continues unchanged. EFER and CR0 are written only
    // when the bit is not already set: in a TD, WRMSR(IA32_EFER) raises #VE (the TDX module
    // owns EFER and the firmware left NXE set; Linux avoids the write for the same reason,
    // "x86/boot: Avoid #VE during boot for TDX platforms").
    unsafe {
        asm!(
            "mov ecx, 0xc0000080",
            "rdmsr",
            "bt eax, 11",
            "jc 2f",
            "or eax, 1 << 11",
            "wrmsr",
            "2:",
            "mov rax, cr0",
            "bt rax, 16",
            "jc 3f",
            "or rax, 1 << 16",
            "mov cr0, rax",
            "3:",
            "mov cr3, {root}",
            root = in(reg) root,
            out("eax") _, out("ecx") _, out("edx") _,
            options(nostack),
        );
    }
    *ROOT.lock() = Some(Root(root));
    Ok(())
}

/// Makes the 4 KiB page at `addr` not present (a guard page: any access faults), splitting
/// the 2 MiB page that covers it into 4 KiB pages with the same attributes.
pub fn unmap_page(addr: u64) -> Result<(), PagingError> {
    if !addr.is_multiple_of(4096) || addr >= (1 << 47) {
        return Err(PagingError::BadRange);
    }
    let guard = ROOT.lock();
    let Some(root) = guard.as_ref() else {
        return Err(PagingError::BadRange);
    };
    // SAFETY: every table reached from our root is ours. Splitting replaces a 2 MiB mapping
    // by 512 4 KiB mappings of the same frames with the same flags, so nothing but the
    // guard page changes for code running now.
    unsafe {
        pte_of(root.0, addr)?.write_volatile(0);
        asm!("mov {0}, cr3", "mov cr3, {0}", out(reg) _, options(nostack, preserves_flags));
    }
    Ok(())
}

/// Maps the 4 KiB page at `addr` private or shared under the rule (SEV: C=1 / C=0; TDX:
/// shared bit clear / set), keeping its other attributes, and flushes it from the TLB. The
/// caller converts the page itself, in the order of Linux's `set_memory_decrypted` /
/// `set_memory_encrypted`: a page is mapped shared *after* its conversion to shared (SEV:
/// PVALIDATE rescind + page-state change, `sev_guest::pool`; TDX: `TDG.VP.VMCALL<MapGPA>` with
/// the shared bit, GHCI 348552 §3.2) and mapped private *before* its conversion back (SEV:
/// page-state change + PVALIDATE; TDX: MapGPA without the bit, then TDG.MEM.PAGE.ACCEPT, ABI
/// 348551 "TDG.MEM.PAGE.ACCEPT Leaf"), so no access ever goes through a view the page is
/// not in. Without memory encryption the entry is unchanged but for the 2 MiB split.
pub fn set_encrypted(addr: u64, private: bool) -> Result<(), PagingError> {
    if !addr.is_multiple_of(4096) || addr >= (1 << 47) {
        return Err(PagingError::BadRange);
    }
    let guard = ROOT.lock();
    let Some(root) = guard.as_ref() else {
        return Err(PagingError::BadRange);
    };
    // SAFETY: every table reached from our root is ours; the entry keeps its frame and
    // attributes and changes only the view bit of a page the caller owns and has converted (or
    // is about to), so no other memory changes meaning. `invlpg` flushes that one page.
    unsafe {
        let pte = pte_of(root.0, addr)?;
        let value = pte.read_volatile();
        if value & PRESENT == 0 {
            return Err(PagingError::BadRange);
        }
        let m = current();
        let flags = value & (PRESENT | KEEP);
        pte.write_volatile(entry(m.address(value), flags, private)?);
        asm!("invlpg [{0}]", in(reg) addr, options(nostack, preserves_flags));
    }
    Ok(())
}

/// Where the loopback stubs' second view of memory lies: virtual = physical + this (64 TiB;
/// BARs lie below 64 TiB on q35). The loopback-GHCB build's alias of an unmapped BAR
/// (`ckms.test=unmapped-bar`); the loopback-TDX build's private view (`private_view`).
pub const HOST_VIEW_OFFSET: u64 = 1 << 46;

/// The address the loopback stub uses to reach device memory at `phys`: the alias when BARs
/// are left unmapped, else the identity address.
#[cfg(feature = "loopback-ghcb")]
pub fn host_view(phys: u64) -> u64 {
    if super::mmio::unmapped_bars() && super::mmio::is_bar(phys) {
        phys + HOST_VIEW_OFFSET
    } else {
        phys
    }
}

/// The loopback-TDX stub's private view of `[phys, phys + len)` (rounded out to 2 MiB),
/// mapped without the shared bit at `phys +` [`HOST_VIEW_OFFSET`] — the same second mapping
/// the loopback-GHCB build uses for unmapped BARs — and its address. With the shared alias on
/// (`crate::loopback_tdx::SHARED_ALIAS`), the identity map reaches device memory and the MMIO
/// holes with bit 47 set, i.e. in QEMU's alias window, where there is no device: the stub,
/// playing the VMM, performs #VE.RequestMMIO on the device at its plain GPA through this view
/// (`device`: uncached). The alias self-test reads a shared pool page through it (`device`
/// false: write-back), bypassing the alias.
#[cfg(feature = "loopback-tdx")]
pub fn private_view(phys: u64, len: u64, device: bool) -> Result<u64, PagingError> {
    let end = phys
        .checked_add(len.max(1))
        .filter(|&e| e <= HOST_VIEW_OFFSET)
        .ok_or(PagingError::BadRange)?;
    let guard = ROOT.lock();
    let Some(root) = guard.as_ref() else {
        return Err(PagingError::BadRange);
    };
    let flags = if device {
        WRITE_THROUGH | CACHE_DISABLE | NO_EXECUTE
    } else {
        NO_EXECUTE
    };
    // New entries only (`map_range_at` never changes a present one): no TLB flush needed.
    map_range_at(root.0, phys, end, flags, true, HOST_VIEW_OFFSET)?;
    Ok(phys + HOST_VIEW_OFFSET)
}

/// The 4 KiB page-table entry that maps `addr` (its 2 MiB page split first), for the
/// loopback-TDX alias self-test, which checks it carries the shared bit.
#[cfg(feature = "loopback-tdx")]
pub fn entry_of(addr: u64) -> Result<u64, PagingError> {
    if addr >= HOST_VIEW_OFFSET {
        return Err(PagingError::BadRange);
    }
    let guard = ROOT.lock();
    let Some(root) = guard.as_ref() else {
        return Err(PagingError::BadRange);
    };
    // SAFETY: every table reached from our root is ours; splitting keeps frames and
    // attributes, and the entry is only read.
    unsafe { Ok(pte_of(root.0, addr & !0xFFF)?.read_volatile()) }
}

/// Identity-maps a device region uncached (e.g. a PCI BAR above 4 GiB) and registers it as
/// an MMIO window (`arch::mmio`). With `ckms.test=unmapped-bar` (loopback build) the region is
/// registered but left unmapped (its pages made not present if the identity map covers them),
/// so a `mov` on it faults into the MMIO emulation.
pub fn map_mmio(phys: u64, len: u64) -> Result<(), PagingError> {
    let end = phys.checked_add(len).ok_or(PagingError::BadRange)?;
    super::mmio::add_bar(phys, len).map_err(|_| PagingError::BadRange)?;
    if super::mmio::unmapped_bars() {
        // The stub (the "host") reaches the device through its own alias of the BAR; the
        // guest's identity view stays not present.
        {
            let guard = ROOT.lock();
            let Some(root) = guard.as_ref() else {
                return Err(PagingError::BadRange);
            };
            map_range_at(
                root.0,
                phys,
                end,
                WRITE_THROUGH | CACHE_DISABLE | NO_EXECUTE,
                false,
                HOST_VIEW_OFFSET,
            )?;
        }
        let mut page = phys & !0xFFF;
        while page < end {
            // Not mapped at all (above the identity map) is as good as not present.
            match unmap_page(page) {
                Ok(()) | Err(PagingError::BadRange) => {}
                Err(e) => return Err(e),
            }
            page += 4096;
        }
        return Ok(());
    }
    let guard = ROOT.lock();
    let Some(root) = guard.as_ref() else {
        return Err(PagingError::BadRange);
    };
    // Devices are never encrypted: shared (C=0 on SEV, shared bit set on TDX).
    map_range(root.0, phys, end, WRITE_THROUGH | CACHE_DISABLE, false)?;
    // New mappings only (never changed ones), but flush anyway to be plain about it.
    // SAFETY: reloading CR3 with the same root only flushes the TLB.
    unsafe { asm!("mov {0}, cr3", "mov cr3, {0}", out(reg) _, options(nostack, preserves_flags)) };
    Ok(())
}
