//! The shared pool: one page-granular region of guest memory, the only memory this guest ever
//! makes shared (C=0). Device rings and buffers, the guest-request pages and the certificate
//! buffer are allocated here; callers copy data in and out (bounce buffers), so no heap
//! object is ever handed to the hypervisor or to a device.
//!
//! Conversions follow AMD 56421 §4.1.6 and the SNP rule of PVALIDATE (AMD64 APM vol. 3,
//! `PVALIDATE`; 56860 §"Page Validation"): before a page becomes shared the guest rescinds its
//! validation (PVALIDATE with validate = 0) and then asks for the page-state change; after a
//! page becomes private again the guest asks first and validates after. A page that is already
//! in the state asked for (PVALIDATE "not updated") is an error: it means the RMP changed
//! behind the guest's back.
//!
//! Pages start private (validated launch RAM). [`SharedPool::alloc`] converts lazily;
//! [`SharedPool::free`] keeps pages shared for reuse (and zeroes them on the next alloc);
//! [`SharedPool::reclaim`] makes every free page private again.
//!
//! The conversions and the copies go through [`PoolBackend`]: on SNP that is the
//! [`GhcbSession`] (PVALIDATE through [`Vmgexit`], page-state change through the GHCB); on the
//! emulated and the "none" platforms the kernel passes a backend (plain memory) whose
//! conversions are no-ops, so the pool's code path (allocation, bounce copies, the
//! "is this address shared" check) is one on every platform.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use crate::psc::{PageOp, PscEntry};
use crate::session::GhcbSession;
use crate::{Error, PageSize, Vmgexit};

/// What the pool needs from the platform: page conversions and copies in and out of shared
/// memory.
pub trait PoolBackend {
    /// Makes the private, validated pages at `gpas` shared: PVALIDATE rescind of each page,
    /// then one page-state change (AMD 56421 §4.1.6).
    fn make_shared(&mut self, gpas: &[u64]) -> Result<(), Error>;
    /// Makes the shared pages at `gpas` private again: page-state change first, then
    /// PVALIDATE of each page.
    fn make_private(&mut self, gpas: &[u64]) -> Result<(), Error>;
    /// Copies `data` into shared memory at `gpa`.
    fn write_shared(&mut self, gpa: u64, data: &[u8]) -> Result<(), Error>;
    /// Copies out of shared memory at `gpa`.
    fn read_shared(&mut self, gpa: u64, out: &mut [u8]) -> Result<(), Error>;
}

impl<H: Vmgexit> PoolBackend for GhcbSession<H> {
    fn make_shared(&mut self, gpas: &[u64]) -> Result<(), Error> {
        for &gpa in gpas {
            self.hv().pvalidate(gpa, PageSize::Size4K, false)?;
        }
        if gpas.is_empty() {
            return Ok(());
        }
        let entries: Vec<PscEntry> = gpas
            .iter()
            .map(|&gpa| PscEntry::page(gpa / PAGE, PageOp::Shared))
            .collect();
        self.page_state_change(&entries)
    }

    fn make_private(&mut self, gpas: &[u64]) -> Result<(), Error> {
        if gpas.is_empty() {
            return Ok(());
        }
        let entries: Vec<PscEntry> = gpas
            .iter()
            .map(|&gpa| PscEntry::page(gpa / PAGE, PageOp::Private))
            .collect();
        self.page_state_change(&entries)?;
        for &gpa in gpas {
            self.hv().pvalidate(gpa, PageSize::Size4K, true)?;
        }
        Ok(())
    }

    fn write_shared(&mut self, gpa: u64, data: &[u8]) -> Result<(), Error> {
        Ok(self.hv().write_shared(gpa, data)?)
    }

    fn read_shared(&mut self, gpa: u64, out: &mut [u8]) -> Result<(), Error> {
        Ok(self.hv().read_shared(gpa, out)?)
    }
}

/// Page size of the pool.
pub const PAGE: u64 = 4096;

/// Pool failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolError {
    /// The region is empty, unaligned or wraps around.
    BadRegion,
    /// No run of free pages is long enough.
    Exhausted {
        /// Pages asked for.
        pages: usize,
    },
    /// Zero pages asked for.
    ZeroSize,
    /// The buffer does not belong to this pool or was freed already.
    NotAllocated,
    /// An access outside the buffer.
    OutOfBounds,
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadRegion => f.write_str("shared pool: bad region"),
            Self::Exhausted { pages } => write!(f, "shared pool: no {pages} free pages"),
            Self::ZeroSize => f.write_str("shared pool: zero-size allocation"),
            Self::NotAllocated => f.write_str("shared pool: buffer not allocated"),
            Self::OutOfBounds => f.write_str("shared pool: access outside the buffer"),
        }
    }
}

impl core::error::Error for PoolError {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PageState {
    /// Private and validated (not shared).
    Private,
    /// Shared, not allocated.
    Free,
    /// Shared, allocated; `true` on the first page of an allocation.
    Used { first: bool },
}

/// A buffer in the shared pool (an ownership token: not `Clone`).
#[derive(Debug, PartialEq, Eq)]
pub struct SharedBuf {
    gpa: u64,
    pages: usize,
}

impl SharedBuf {
    /// Guest-physical address (what a device or the hypervisor is given).
    pub fn gpa(&self) -> u64 {
        self.gpa
    }

    /// Size in pages.
    pub fn pages(&self) -> usize {
        self.pages
    }

    /// Size in bytes.
    pub fn len(&self) -> usize {
        self.pages * PAGE as usize
    }

    /// Always false (an allocation has at least one page).
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// The shared pool.
#[derive(Debug)]
pub struct SharedPool {
    base: u64,
    state: Vec<PageState>,
}

impl SharedPool {
    /// A pool over `[base_gpa, base_gpa + pages * 4096)`, all pages private and validated.
    pub fn new(base_gpa: u64, pages: usize) -> Result<Self, PoolError> {
        let bytes = (pages as u64)
            .checked_mul(PAGE)
            .ok_or(PoolError::BadRegion)?;
        if pages == 0 || !base_gpa.is_multiple_of(PAGE) || base_gpa.checked_add(bytes).is_none() {
            return Err(PoolError::BadRegion);
        }
        Ok(Self {
            base: base_gpa,
            state: vec![PageState::Private; pages],
        })
    }

    /// The region's first GPA.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Pages currently shared (free or used).
    pub fn shared_pages(&self) -> usize {
        self.state
            .iter()
            .filter(|s| !matches!(s, PageState::Private))
            .count()
    }

    /// Pages currently allocated.
    pub fn used_pages(&self) -> usize {
        self.state
            .iter()
            .filter(|s| matches!(s, PageState::Used { .. }))
            .count()
    }

    fn gpa_of(&self, index: usize) -> u64 {
        self.base + index as u64 * PAGE
    }

    /// Whether `[gpa, gpa + len)` lies entirely in allocated pages of this pool: the check a
    /// DMA path makes on every address it hands to a device.
    pub fn is_shared(&self, gpa: u64, len: u64) -> bool {
        let Some(end) = gpa.checked_add(len) else {
            return false;
        };
        if gpa < self.base || len == 0 {
            return false;
        }
        let first = ((gpa - self.base) / PAGE) as usize;
        let last = ((end - 1 - self.base) / PAGE) as usize;
        (first..=last).all(|i| matches!(self.state.get(i), Some(PageState::Used { .. })))
    }

    /// Allocates `pages` contiguous shared pages, converting private ones (PVALIDATE rescind,
    /// then one batched page-state change), and zeroes them.
    pub fn alloc<B: PoolBackend + ?Sized>(
        &mut self,
        backend: &mut B,
        pages: usize,
    ) -> Result<SharedBuf, Error> {
        if pages == 0 {
            return Err(PoolError::ZeroSize.into());
        }
        let start = self.find_run(pages).ok_or(PoolError::Exhausted { pages })?;
        let to_share: Vec<u64> = (start..start + pages)
            .filter(|i| self.state.get(*i) == Some(&PageState::Private))
            .map(|i| self.gpa_of(i))
            .collect();
        backend.make_shared(&to_share)?;
        for (n, s) in self.state[start..start + pages].iter_mut().enumerate() {
            *s = PageState::Used { first: n == 0 };
        }
        let buf = SharedBuf {
            gpa: self.gpa_of(start),
            pages,
        };
        let zero = [0u8; PAGE as usize];
        for p in 0..pages {
            backend.write_shared(buf.gpa + p as u64 * PAGE, &zero)?;
        }
        Ok(buf)
    }

    fn find_run(&self, pages: usize) -> Option<usize> {
        let mut run = 0;
        for (i, s) in self.state.iter().enumerate() {
            if matches!(s, PageState::Used { .. }) {
                run = 0;
            } else {
                run += 1;
                if run == pages {
                    return Some(i + 1 - pages);
                }
            }
        }
        None
    }

    fn index_of(&self, buf: &SharedBuf) -> Result<usize, PoolError> {
        let off = buf
            .gpa
            .checked_sub(self.base)
            .ok_or(PoolError::NotAllocated)?;
        let i = (off / PAGE) as usize;
        let run = self
            .state
            .get(i..i.checked_add(buf.pages).ok_or(PoolError::NotAllocated)?)
            .ok_or(PoolError::NotAllocated)?;
        let ok = run
            .iter()
            .enumerate()
            .all(|(n, s)| *s == PageState::Used { first: n == 0 });
        if !ok {
            return Err(PoolError::NotAllocated);
        }
        Ok(i)
    }

    /// Returns a buffer to the pool (its pages stay shared).
    pub fn free(&mut self, buf: SharedBuf) -> Result<(), PoolError> {
        let i = self.index_of(&buf)?;
        for s in &mut self.state[i..i + buf.pages] {
            *s = PageState::Free;
        }
        Ok(())
    }

    /// Makes every free shared page private again (page-state change first, then PVALIDATE);
    /// returns how many.
    pub fn reclaim<B: PoolBackend + ?Sized>(&mut self, backend: &mut B) -> Result<usize, Error> {
        let free: Vec<usize> = (0..self.state.len())
            .filter(|i| self.state.get(*i) == Some(&PageState::Free))
            .collect();
        if free.is_empty() {
            return Ok(0);
        }
        let gpas: Vec<u64> = free.iter().map(|&i| self.gpa_of(i)).collect();
        backend.make_private(&gpas)?;
        for &i in &free {
            if let Some(s) = self.state.get_mut(i) {
                *s = PageState::Private;
            }
        }
        Ok(free.len())
    }

    fn range(&self, buf: &SharedBuf, offset: usize, len: usize) -> Result<u64, PoolError> {
        self.index_of(buf)?;
        let end = offset.checked_add(len).ok_or(PoolError::OutOfBounds)?;
        if end > buf.len() {
            return Err(PoolError::OutOfBounds);
        }
        Ok(buf.gpa + offset as u64)
    }

    /// Copies `data` into the buffer at `offset` (bounce in).
    pub fn write<B: PoolBackend + ?Sized>(
        &self,
        backend: &mut B,
        buf: &SharedBuf,
        offset: usize,
        data: &[u8],
    ) -> Result<(), Error> {
        let gpa = self.range(buf, offset, data.len())?;
        backend.write_shared(gpa, data)
    }

    /// Copies out of the buffer at `offset` (bounce out).
    pub fn read<B: PoolBackend + ?Sized>(
        &self,
        backend: &mut B,
        buf: &SharedBuf,
        offset: usize,
        out: &mut [u8],
    ) -> Result<(), Error> {
        let gpa = self.range(buf, offset, out.len())?;
        backend.read_shared(gpa, out)
    }
}
