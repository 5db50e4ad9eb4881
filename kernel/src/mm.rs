//! The kernel heap: talc over the free RAM the memory-map plan hands us, with use and
//! high-water accounting.

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicUsize, Ordering};

use bootparams::memmap::HeapPlan;
use talc::{ErrOnOom, Span, Talc, Talck};

struct KernelAlloc {
    talc: Talck<spin::Mutex<()>, ErrOnOom>,
    in_use: AtomicUsize,
    peak: AtomicUsize,
    capacity: AtomicUsize,
}

// SAFETY: defers to talc's `GlobalAlloc` (a correct allocator behind a lock) and only adds
// counters.
unsafe impl GlobalAlloc for KernelAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: our caller upholds `GlobalAlloc::alloc`'s contract (non-zero size), which
        // is the one talc's `alloc` needs.
        let p = unsafe { self.talc.alloc(layout) };
        if !p.is_null() {
            let now = self.in_use.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            self.peak.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator (hence from talc) with `layout`, as our
        // caller guarantees.
        unsafe { self.talc.dealloc(ptr, layout) };
        self.in_use.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from talc with `layout` and `new_size` is non-zero (our caller's
        // `GlobalAlloc::realloc` contract, passed through unchanged).
        let p = unsafe { self.talc.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            self.in_use.fetch_sub(layout.size(), Ordering::Relaxed);
            let now = self.in_use.fetch_add(new_size, Ordering::Relaxed) + new_size;
            self.peak.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: KernelAlloc = KernelAlloc {
    talc: Talc::new(ErrOnOom).lock(),
    in_use: AtomicUsize::new(0),
    peak: AtomicUsize::new(0),
    capacity: AtomicUsize::new(0),
};

/// Heap usage numbers.
#[derive(Clone, Copy, Debug)]
pub struct HeapStats {
    /// Bytes given to the allocator.
    pub capacity: usize,
    /// Bytes currently allocated.
    pub in_use: usize,
    /// Highest `in_use` seen.
    pub peak: usize,
}

/// Current heap statistics.
pub fn stats() -> HeapStats {
    HeapStats {
        capacity: ALLOCATOR.capacity.load(Ordering::Relaxed),
        in_use: ALLOCATOR.in_use.load(Ordering::Relaxed),
        peak: ALLOCATOR.peak.load(Ordering::Relaxed),
    }
}

/// Gives the planned regions to the allocator.
///
/// # Safety
/// Every span of `plan` must be RAM that nothing else uses for the rest of the kernel's life
/// (the plan takes only `EfiConventionalMemory` after `ExitBootServices`), identity-mapped.
pub unsafe fn init(plan: &HeapPlan) -> usize {
    let mut talc = ALLOCATOR.talc.lock();
    let mut total = 0;
    for span in plan.spans() {
        let base = span.start as usize as *mut u8;
        let size = span.len as usize;
        // SAFETY: caller contract: free, identity-mapped RAM owned by the heap from now on.
        if let Ok(claimed) = unsafe { talc.claim(Span::from_base_size(base, size)) } {
            total += claimed.size();
        }
    }
    ALLOCATOR.capacity.store(total, Ordering::Relaxed);
    total
}
