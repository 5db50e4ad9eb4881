//! UEFI memory map classification and heap planning.
//!
//! Memory types are those of the UEFI Specification 2.10, section 7.2 (`EFI_MEMORY_TYPE`),
//! including `EfiUnacceptedMemoryType` (15), which a confidential VM's firmware uses for
//! memory it has not accepted (SNP `PVALIDATE`, TDX `TDG.MEM.PAGE.ACCEPT`): touching it
//! before acceptance faults, so the plan never hands it to the heap and only reports it.

/// Most memory-map entries the kernel keeps.
pub const MAX_REGIONS: usize = 256;
/// Most separate spans the heap is built from.
pub const MAX_HEAP_SPANS: usize = 32;
/// Smallest region worth giving to the heap.
pub const MIN_HEAP_SPAN: u64 = 64 * 1024;
/// Memory below this address is left alone (real-mode structures, legacy regions).
pub const LOW_MEMORY_END: u64 = 1 << 20;

const PAGE: u64 = 4096;

/// One memory-map entry, as the firmware reported it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryRegion {
    /// `EFI_MEMORY_TYPE`.
    pub kind: u32,
    /// Physical start address.
    pub start: u64,
    /// Number of 4 KiB pages.
    pub pages: u64,
    /// `EFI_MEMORY_*` attribute bits.
    pub attribute: u64,
}

impl MemoryRegion {
    /// Size in bytes, `None` on overflow.
    pub fn size(&self) -> Option<u64> {
        self.pages.checked_mul(PAGE)
    }

    /// End address (exclusive), `None` on overflow.
    pub fn end(&self) -> Option<u64> {
        self.start.checked_add(self.size()?)
    }

    /// The classified type.
    pub fn class(&self) -> MemoryClass {
        MemoryClass::from_efi(self.kind)
    }
}

/// What a region is, for the kernel's purposes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryClass {
    /// `EfiConventionalMemory`: free after `ExitBootServices`.
    Free,
    /// `EfiLoaderCode/Data`: our image and what we allocated before exit.
    Loader,
    /// `EfiBootServicesCode/Data`: firmware memory, reclaimable after exit, not used
    /// (it holds the firmware's page tables until ours are loaded).
    BootServices,
    /// Runtime services, ACPI tables and NVS, reserved, persistent: never touched.
    Firmware,
    /// `EfiMemoryMappedIO*`.
    Mmio,
    /// `EfiUnacceptedMemoryType`: not accepted by the firmware; never used.
    Unaccepted,
    /// Unusable or unknown type: never touched.
    Other(u32),
}

impl MemoryClass {
    /// Maps an `EFI_MEMORY_TYPE`.
    pub fn from_efi(kind: u32) -> Self {
        match kind {
            7 => Self::Free,
            1 | 2 => Self::Loader,
            3 | 4 => Self::BootServices,
            0 | 5 | 6 | 9 | 10 | 14 => Self::Firmware,
            11 | 12 => Self::Mmio,
            15 => Self::Unaccepted,
            other => Self::Other(other),
        }
    }
}

/// Byte totals per class.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Free RAM.
    pub free: u64,
    /// Our image and allocations.
    pub loader: u64,
    /// Firmware boot-services memory.
    pub boot_services: u64,
    /// Runtime/ACPI/reserved.
    pub firmware: u64,
    /// MMIO ranges.
    pub mmio: u64,
    /// Unaccepted memory.
    pub unaccepted: u64,
    /// Other types.
    pub other: u64,
    /// Highest end address of any RAM-like region (not MMIO).
    pub ram_top: u64,
    /// Entries whose size or end overflowed (ignored).
    pub malformed: usize,
}

/// Sums the map by class.
pub fn summarize(regions: &[MemoryRegion]) -> Summary {
    let mut s = Summary::default();
    for r in regions {
        let (Some(len), Some(end)) = (r.size(), r.end()) else {
            s.malformed += 1;
            continue;
        };
        let class = r.class();
        let slot = match class {
            MemoryClass::Free => &mut s.free,
            MemoryClass::Loader => &mut s.loader,
            MemoryClass::BootServices => &mut s.boot_services,
            MemoryClass::Firmware => &mut s.firmware,
            MemoryClass::Mmio => &mut s.mmio,
            MemoryClass::Unaccepted => &mut s.unaccepted,
            MemoryClass::Other(_) => &mut s.other,
        };
        *slot = slot.saturating_add(len);
        if class != MemoryClass::Mmio {
            s.ram_top = s.ram_top.max(end);
        }
    }
    s
}

/// A contiguous span for the heap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    /// Start address (page aligned).
    pub start: u64,
    /// Length in bytes (page multiple).
    pub len: u64,
}

/// The heap plan: which free spans the allocator gets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeapPlan {
    spans: [Span; MAX_HEAP_SPANS],
    count: usize,
    /// Free bytes left out (too small, below 1 MiB, or beyond the span limit).
    pub skipped: u64,
}

impl HeapPlan {
    /// The spans, largest first.
    pub fn spans(&self) -> &[Span] {
        self.spans.get(..self.count).unwrap_or(&[])
    }

    /// Total bytes planned.
    pub fn total(&self) -> u64 {
        self.spans().iter().map(|s| s.len).sum()
    }
}

/// Plans the heap: every free region (after clipping away the first MiB) of at least
/// [`MIN_HEAP_SPAN`], largest first, at most [`MAX_HEAP_SPANS`], capped at `max_bytes` in
/// total. Overlapping or malformed entries from the firmware are dropped, never trusted.
pub fn plan_heap(regions: &[MemoryRegion], max_bytes: u64) -> HeapPlan {
    let mut plan = HeapPlan::default();
    let mut candidates = [Span::default(); MAX_REGIONS];
    let mut n = 0;
    for (i, r) in regions.iter().enumerate() {
        if r.class() != MemoryClass::Free {
            continue;
        }
        let Some(end) = r.end() else { continue };
        if r.start % PAGE != 0 {
            continue;
        }
        // Free memory must not overlap any other entry: a map that claims so is malformed
        // in that spot, and the spot is left alone.
        let overlaps = regions
            .iter()
            .enumerate()
            .any(|(j, o)| j != i && o.end().is_some_and(|oe| o.start < end && r.start < oe));
        if overlaps {
            plan.skipped = plan.skipped.saturating_add(end - r.start);
            continue;
        }
        let start = r.start.max(LOW_MEMORY_END);
        if start >= end {
            plan.skipped = plan.skipped.saturating_add(end - r.start);
            continue;
        }
        plan.skipped = plan.skipped.saturating_add(start - r.start);
        let len = end - start;
        if len < MIN_HEAP_SPAN {
            plan.skipped = plan.skipped.saturating_add(len);
            continue;
        }
        if let Some(slot) = candidates.get_mut(n) {
            *slot = Span { start, len };
            n += 1;
        }
    }
    let candidates = candidates.get_mut(..n).unwrap_or(&mut []);
    candidates.sort_unstable_by(|a, b| b.len.cmp(&a.len).then(a.start.cmp(&b.start)));
    let mut remaining = max_bytes;
    for c in candidates.iter() {
        let take = (c.len.min(remaining) / PAGE) * PAGE;
        if take < MIN_HEAP_SPAN || plan.count == MAX_HEAP_SPANS {
            plan.skipped = plan.skipped.saturating_add(c.len);
            continue;
        }
        if let Some(slot) = plan.spans.get_mut(plan.count) {
            *slot = Span {
                start: c.start,
                len: take,
            };
            plan.count += 1;
        }
        plan.skipped = plan.skipped.saturating_add(c.len - take);
        remaining -= take;
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(kind: u32, start: u64, pages: u64) -> MemoryRegion {
        MemoryRegion {
            kind,
            start,
            pages,
            attribute: 0xf,
        }
    }

    /// Shape of OVMF's map for a 128 MiB q35 guest (abridged).
    fn ovmf_like() -> [MemoryRegion; 8] {
        [
            r(3, 0, 1),
            r(7, 0x1000, 0x9f),
            r(7, 0x10_0000, 0x700),
            r(9, 0x80_0000, 0x8),
            r(7, 0x90_0000, 0x6000),
            r(2, 0x690_0000, 0x100),
            r(4, 0x6a0_0000, 0x800),
            r(11, 0xffc0_0000, 0x400),
        ]
    }

    #[test]
    fn summary_counts_by_class() {
        let s = summarize(&ovmf_like());
        assert_eq!(s.free, (0x9f + 0x700 + 0x6000) * 4096);
        assert_eq!(s.loader, 0x100 * 4096);
        assert_eq!(s.boot_services, (1 + 0x800) * 4096);
        assert_eq!(s.firmware, 8 * 4096);
        assert_eq!(s.mmio, 0x400 * 4096);
        assert_eq!(s.ram_top, 0x6a0_0000 + 0x800 * 4096);
        assert_eq!(s.malformed, 0);
    }

    #[test]
    fn heap_takes_free_memory_above_1mib_largest_first() {
        let plan = plan_heap(&ovmf_like(), u64::MAX);
        assert_eq!(
            plan.spans(),
            &[
                Span {
                    start: 0x90_0000,
                    len: 0x6000 * 4096
                },
                Span {
                    start: 0x10_0000,
                    len: 0x700 * 4096
                }
            ]
        );
        assert_eq!(plan.skipped, 0x9f * 4096);
    }

    #[test]
    fn heap_respects_cap() {
        let plan = plan_heap(&ovmf_like(), 1 << 20);
        assert_eq!(
            plan.spans(),
            &[Span {
                start: 0x90_0000,
                len: 1 << 20
            }]
        );
        assert_eq!(plan.total(), 1 << 20);
    }

    #[test]
    fn unaccepted_memory_is_counted_never_planned() {
        let map = [r(7, 0x10_0000, 0x100), r(15, 0x100_0000, 0x10000)];
        let s = summarize(&map);
        assert_eq!(s.unaccepted, 0x10000 * 4096);
        let plan = plan_heap(&map, u64::MAX);
        assert_eq!(
            plan.spans(),
            &[Span {
                start: 0x10_0000,
                len: 0x100 * 4096
            }]
        );
    }

    #[test]
    fn overlapping_and_overflowing_entries_are_refused() {
        let map = [
            r(7, 0x10_0000, 0x100),
            r(4, 0x18_0000, 0x10),    // overlaps the free entry
            r(7, u64::MAX - 4095, 2), // end overflows
            r(7, 0x20_0001, 0x100),   // misaligned
        ];
        let plan = plan_heap(&map, u64::MAX);
        assert!(plan.spans().is_empty());
        assert_eq!(summarize(&map).malformed, 1);
    }

    #[test]
    fn small_regions_are_skipped() {
        let plan = plan_heap(&[r(7, 0x10_0000, 4)], u64::MAX);
        assert!(plan.spans().is_empty());
        assert_eq!(plan.skipped, 4 * 4096);
    }

    #[test]
    fn classes() {
        assert_eq!(MemoryClass::from_efi(15), MemoryClass::Unaccepted);
        assert_eq!(MemoryClass::from_efi(7), MemoryClass::Free);
        assert_eq!(MemoryClass::from_efi(99), MemoryClass::Other(99));
    }
}
