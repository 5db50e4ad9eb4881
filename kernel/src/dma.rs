//! The shared DMA pool: the only memory a device (or the host) is ever given.
//!
//! One page-aligned region is carved out of the heap at boot ([`init`]) and handed to
//! `sev-guest`'s [`SharedPool`]; it is never returned to the heap. Virtio rings are allocated
//! in it, and every buffer the driver shares is a *bounce copy* in it
//! ([`crate::drivers::virtio_net::KernelHal`]): no heap object is ever visible to the host.
//!
//! The pool's conversions and copies go through a [`PoolBackend`]. On the `none` and
//! `emulated` platforms (no memory encryption) that is [`PlainMemory`]: conversions are
//! no-ops, copies are plain memory copies restricted to the pool's region. Once a GHCB session
//! is established ([`crate::platform::ghcb`], the loopback-GHCB build), [`use_ghcb`] switches
//! to the session: PVALIDATE rescind + page-state change through the GHCB before a page is
//! shared, the reverse before it is private again. On TDX (hardware and the loopback-TDX
//! build) [`use_tdx`] switches to MapGPA / accept (`crate::platform::tdx::TdxPool`). Either
//! way the page's entry is remapped around the conversion (shared after, private before). The allocation, bounce and "is this
//! address shared" code is one on every platform.

use alloc::alloc::{Layout, alloc_zeroed};
use alloc::collections::BTreeMap;
use core::fmt;

use sev_guest::pool::{PAGE, PoolBackend, SharedBuf, SharedPool};

/// Pool size: 256 receive + 128 transmit bounce pages, the virtqueues, and headroom.
pub const POOL_PAGES: usize = 512;

/// DMA pool failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmaError {
    /// [`init`] has not run.
    NotInitialised,
    /// [`init`] ran twice.
    AlreadyInitialised,
    /// The heap has no room for the pool.
    NoMemory,
    /// No pool allocation starts at or contains this address.
    UnknownBuffer(u64),
    /// The pool (or its backend) refused.
    Pool(sev_guest::Error),
}

impl fmt::Display for DmaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotInitialised => f.write_str("dma pool: not initialised"),
            Self::AlreadyInitialised => f.write_str("dma pool: initialised twice"),
            Self::NoMemory => f.write_str("dma pool: no memory for the region"),
            Self::UnknownBuffer(a) => write!(f, "dma pool: no buffer at {a:#x}"),
            Self::Pool(e) => write!(f, "dma pool: {e}"),
        }
    }
}

impl core::error::Error for DmaError {}

impl From<sev_guest::Error> for DmaError {
    fn from(e: sev_guest::Error) -> Self {
        Self::Pool(e)
    }
}

impl From<sev_guest::pool::PoolError> for DmaError {
    fn from(e: sev_guest::pool::PoolError) -> Self {
        Self::Pool(e.into())
    }
}

/// The shared pool's region `[base, base + len)`: identity-mapped RAM carved out of the heap by
/// [`init`] and owned by the pool for the kernel's lifetime. Only [`init`] makes one, so every
/// backend that copies to or from shared memory goes through this one bounds check and copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolRegion {
    base: u64,
    len: u64,
}

impl PoolRegion {
    /// Whether `[gpa, gpa + len)` lies inside the region.
    pub fn check(&self, gpa: u64, len: usize) -> Result<(), sev_guest::SharedAccessError> {
        let inside = gpa >= self.base
            && gpa
                .checked_add(len as u64)
                .is_some_and(|end| end <= self.base + self.len);
        if inside {
            Ok(())
        } else {
            Err(sev_guest::SharedAccessError::NotShared { gpa })
        }
    }

    /// Copies `out.len()` bytes from `gpa`, inside the region.
    pub fn read(&self, gpa: u64, out: &mut [u8]) -> Result<(), sev_guest::SharedAccessError> {
        self.check(gpa, out.len())?;
        // SAFETY: `[gpa, gpa + len)` lies in the region (checked), identity-mapped RAM the
        // pool owns for the kernel's lifetime (`init` leaked it from the heap, and only `init`
        // makes a `PoolRegion`); `out` is a kernel buffer, never inside the pool.
        unsafe { core::ptr::copy_nonoverlapping(gpa as *const u8, out.as_mut_ptr(), out.len()) };
        Ok(())
    }

    /// Copies `data` to `gpa`, inside the region.
    pub fn write(&self, gpa: u64, data: &[u8]) -> Result<(), sev_guest::SharedAccessError> {
        self.check(gpa, data.len())?;
        // SAFETY: as in `read`, the other direction.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), gpa as *mut u8, data.len()) };
        Ok(())
    }
}

/// The pool backend where memory is not encrypted: no conversions; copies only inside the
/// pool's region.
pub struct PlainMemory(PoolRegion);

impl PoolBackend for PlainMemory {
    fn make_shared(&mut self, _gpas: &[u64]) -> Result<(), sev_guest::Error> {
        Ok(()) // not encrypted: the host sees this memory anyway
    }

    fn make_private(&mut self, _gpas: &[u64]) -> Result<(), sev_guest::Error> {
        Ok(())
    }

    fn write_shared(&mut self, gpa: u64, data: &[u8]) -> Result<(), sev_guest::Error> {
        Ok(self.0.write(gpa, data)?)
    }

    fn read_shared(&mut self, gpa: u64, out: &mut [u8]) -> Result<(), sev_guest::Error> {
        Ok(self.0.read(gpa, out)?)
    }
}

/// The backend in use.
enum Backend {
    /// No memory encryption.
    Plain(PlainMemory),
    /// Conversions through the GHCB session (SEV-SNP and the loopback-GHCB build).
    Ghcb,
    /// Conversions through TDX MapGPA / accept ([`crate::platform::tdx::TdxPool`]), with the
    /// page's entry remapped around them (shared bit set after MapGPA to shared, cleared before
    /// MapGPA to private and the accept).
    Tdx(crate::platform::tdx::TdxPool),
}

fn no_session() -> sev_guest::Error {
    sev_guest::Error::InvalidArgument("no GHCB session")
}

/// Maps `gpas` private or shared in the page tables (SEV: C=1 / C=0; TDX: shared bit clear /
/// set; `crate::arch::paging::set_encrypted`).
fn remap(gpas: &[u64], private: bool) -> Result<(), sev_guest::Error> {
    for &gpa in gpas {
        crate::arch::paging::set_encrypted(gpa, private)
            .map_err(|_| sev_guest::Error::InvalidArgument("page-table view-bit update"))?;
    }
    Ok(())
}

impl PoolBackend for Backend {
    fn make_shared(&mut self, gpas: &[u64]) -> Result<(), sev_guest::Error> {
        match self {
            Self::Plain(p) => p.make_shared(gpas),
            // PVALIDATE rescind + page-state change, then C=0 (Linux's order).
            Self::Ghcb => crate::platform::ghcb::with(|s| s.make_shared(gpas))
                .unwrap_or_else(|| Err(no_session()))
                .and_then(|()| remap(gpas, false)),
            // MapGPA with the shared bit (GHCI 348552 §3.2), then the shared bit in the
            // entries: the page is never reached through a view it is not in (Linux's
            // `set_memory_decrypted` order; on hardware a private-view access to a page now
            // shared would be an EPT violation).
            Self::Tdx(t) => t.make_shared(gpas).and_then(|()| remap(gpas, false)),
        }
    }

    fn make_private(&mut self, gpas: &[u64]) -> Result<(), sev_guest::Error> {
        match self {
            Self::Plain(p) => p.make_private(gpas),
            // C=1 first, then page-state change + PVALIDATE.
            Self::Ghcb => remap(gpas, true).and_then(|()| {
                crate::platform::ghcb::with(|s| s.make_private(gpas))
                    .unwrap_or_else(|| Err(no_session()))
            }),
            // Shared bit cleared first, then MapGPA without it and TDG.MEM.PAGE.ACCEPT of each
            // page (ABI 348551 "TDG.MEM.PAGE.ACCEPT Leaf"; `set_memory_encrypted`'s order).
            Self::Tdx(t) => remap(gpas, true).and_then(|()| t.make_private(gpas)),
        }
    }

    fn write_shared(&mut self, gpa: u64, data: &[u8]) -> Result<(), sev_guest::Error> {
        match self {
            Self::Plain(p) => p.write_shared(gpa, data),
            Self::Ghcb => crate::platform::ghcb::with(|s| PoolBackend::write_shared(s, gpa, data))
                .unwrap_or_else(|| Err(no_session())),
            Self::Tdx(t) => t.write_shared(gpa, data),
        }
    }

    fn read_shared(&mut self, gpa: u64, out: &mut [u8]) -> Result<(), sev_guest::Error> {
        match self {
            Self::Plain(p) => p.read_shared(gpa, out),
            Self::Ghcb => crate::platform::ghcb::with(|s| PoolBackend::read_shared(s, gpa, out))
                .unwrap_or_else(|| Err(no_session())),
            Self::Tdx(t) => t.read_shared(gpa, out),
        }
    }
}

struct Dma {
    pool: SharedPool,
    /// The pool's region.
    region: PoolRegion,
    backend: Backend,
    /// Live allocations by first address.
    bufs: BTreeMap<u64, SharedBuf>,
}

/// The allocation containing `[addr, addr + len)`, and the offset of `addr` in it.
fn containing(
    bufs: &BTreeMap<u64, SharedBuf>,
    addr: u64,
    len: usize,
) -> Result<(&SharedBuf, usize), DmaError> {
    let (_, buf) = bufs
        .range(..=addr)
        .next_back()
        .ok_or(DmaError::UnknownBuffer(addr))?;
    let offset = (addr - buf.gpa()) as usize;
    if offset.saturating_add(len) > buf.len() {
        return Err(DmaError::UnknownBuffer(addr));
    }
    Ok((buf, offset))
}

static DMA: spin::Once<spin::Mutex<Dma>> = spin::Once::new();

/// Carves the pool's region out of the heap (never returned) and installs the pool.
pub fn init(pages: usize) -> Result<u64, DmaError> {
    if DMA.is_completed() {
        return Err(DmaError::AlreadyInitialised);
    }
    let bytes = pages.checked_mul(PAGE as usize).ok_or(DmaError::NoMemory)?;
    let layout = Layout::from_size_align(bytes, PAGE as usize).map_err(|_| DmaError::NoMemory)?;
    if bytes == 0 {
        return Err(DmaError::NoMemory);
    }
    // SAFETY: non-zero size (checked above). The region is never deallocated: the pool owns
    // it for the kernel's lifetime.
    let base = unsafe { alloc_zeroed(layout) };
    if base.is_null() {
        return Err(DmaError::NoMemory);
    }
    let base = base as u64;
    let pool = SharedPool::new(base, pages)?;
    let region = PoolRegion {
        base,
        len: bytes as u64,
    };
    DMA.call_once(|| {
        spin::Mutex::new(Dma {
            pool,
            region,
            backend: Backend::Plain(PlainMemory(region)),
            bufs: BTreeMap::new(),
        })
    });
    Ok(base)
}

fn with<R>(f: impl FnOnce(&mut Dma) -> Result<R, DmaError>) -> Result<R, DmaError> {
    let cell = DMA.get().ok_or(DmaError::NotInitialised)?;
    f(&mut cell.lock())
}

/// Allocates `pages` zeroed shared pages; returns their address (identity-mapped).
pub fn alloc(pages: usize) -> Result<u64, DmaError> {
    with(|d| {
        let buf = d.pool.alloc(&mut d.backend, pages)?;
        let gpa = buf.gpa();
        d.bufs.insert(gpa, buf);
        Ok(gpa)
    })
}

/// Returns the allocation that starts at `gpa` to the pool.
pub fn free(gpa: u64) -> Result<(), DmaError> {
    with(|d| {
        let buf = d.bufs.remove(&gpa).ok_or(DmaError::UnknownBuffer(gpa))?;
        Ok(d.pool.free(buf)?)
    })
}

/// Copies `data` into the pool at `gpa` (bounce in).
pub fn write(gpa: u64, data: &[u8]) -> Result<(), DmaError> {
    with(|d| {
        let (buf, offset) = containing(&d.bufs, gpa, data.len())?;
        Ok(d.pool.write(&mut d.backend, buf, offset, data)?)
    })
}

/// Copies out of the pool at `gpa` (bounce out).
pub fn read(gpa: u64, out: &mut [u8]) -> Result<(), DmaError> {
    with(|d| {
        let (buf, offset) = containing(&d.bufs, gpa, out.len())?;
        Ok(d.pool.read(&mut d.backend, buf, offset, out)?)
    })
}

/// Whether `[gpa, gpa + len)` lies entirely in allocated shared pages: checked on every
/// address handed to a device.
pub fn is_shared(gpa: u64, len: u64) -> bool {
    DMA.get().is_some_and(|d| d.lock().pool.is_shared(gpa, len))
}

/// `(allocated pages, shared pages)` for the console.
pub fn usage() -> (usize, usize) {
    DMA.get().map_or((0, 0), |d| {
        let d = d.lock();
        (d.pool.used_pages(), d.pool.shared_pages())
    })
}

/// The pool's region, once [`init`] ran.
pub fn region() -> Option<PoolRegion> {
    Some(DMA.get()?.lock().region)
}

/// Converts the pool's pages through the GHCB session from now on (`boot::snp_session`: SEV-SNP
/// and the loopback-GHCB build). Only before the first
/// allocation (every page is still private and validated, as the session expects).
pub fn use_ghcb() -> Result<(), DmaError> {
    with(|d| {
        if d.pool.shared_pages() != 0 {
            return Err(DmaError::Pool(sev_guest::Error::InvalidArgument(
                "pool already in use",
            )));
        }
        d.backend = Backend::Ghcb;
        Ok(())
    })
}

/// Runs `f` on the pool and the GHCB session together (the guest-request driver allocates its
/// pages from the pool and bounces through the session). Only once [`use_ghcb`] ran; lock
/// order: the pool, then the session (as every pool conversion takes them).
pub fn with_ghcb_pool<R>(
    f: impl FnOnce(
        &mut SharedPool,
        &mut sev_guest::GhcbSession<crate::platform::ghcb::KernelVmgexit>,
    ) -> R,
) -> Result<R, DmaError> {
    with(|d| {
        if !matches!(d.backend, Backend::Ghcb) {
            return Err(DmaError::Pool(no_session()));
        }
        crate::platform::ghcb::with(|s| f(&mut d.pool, s)).ok_or(DmaError::Pool(no_session()))
    })
}

/// Converts the pool's pages through TDX MapGPA / accept from now on (`boot::tdx_session`: TDX
/// and the loopback-TDX build). Only before the first allocation, and only once the TDX
/// backend is established.
pub fn use_tdx() -> Result<(), DmaError> {
    with(|d| {
        if d.pool.shared_pages() != 0 {
            return Err(DmaError::Pool(sev_guest::Error::InvalidArgument(
                "pool already in use",
            )));
        }
        let backend = crate::platform::tdx::TdxPool::new(d.region).ok_or(DmaError::Pool(
            sev_guest::Error::InvalidArgument("no TDX backend"),
        ))?;
        d.backend = Backend::Tdx(backend);
        Ok(())
    })
}
