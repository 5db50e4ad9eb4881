//! virtio-net (modern PCI transport, virtio 1.2 section 5.1) through `virtio-drivers`, as a
//! `netstack::Nic`.
//!
//! All DMA memory goes through [`KernelHal`] and lives in the shared pool ([`crate::dma`]):
//! the virtqueues are allocated there, and every buffer the driver hands to the device is a
//! bounce copy there (copied in before a driver-to-device transfer, copied out after a
//! device-to-driver one). No heap object is ever visible to the device or the host. Received
//! frames are then copied into the stack's private buffer before smoltcp parses them.

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use core::ptr::NonNull;

use netstack::{Nic, NicError};
use virtio_drivers::device::net::VirtIONetRaw;
use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::transport::pci::bus::{Command, DeviceFunction, PciRoot};
use virtio_drivers::{BufferDirection, Hal, PAGE_SIZE, PhysAddr};

use super::pci::PortCam;
use crate::arch::paging;
use crate::dma;

/// Descriptors per virtqueue.
const QUEUE_SIZE: usize = 256;
/// Receive buffer size (virtio_net_hdr + a 1514-byte frame, rounded up).
const RX_BUFFER_LEN: usize = 2048;
/// Largest Ethernet payload (no VIRTIO_NET_F_MTU negotiation).
const MTU: usize = 1500;

/// The DMA/MMIO glue for `virtio-drivers`: every DMA address it returns is in the shared pool.
pub struct KernelHal;

/// A bounce-buffer failure inside a `Hal` method, which cannot return an error: handing the
/// device an address outside the pool would expose private memory, so the kernel stops.
fn dma_fatal(what: &str, e: dma::DmaError) -> ! {
    panic!("virtio: {what}: {e}")
}

// SAFETY: `dma_alloc` returns zeroed, page-aligned pool memory owned by the caller until
// `dma_dealloc`, identity-mapped (physical = virtual); `mmio_phys_to_virt` maps the BAR
// before returning its identity address; `share` returns the address of a pool bounce copy
// of the buffer, valid for device access until `unshare` copies it back and frees it.
unsafe impl Hal for KernelHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        match dma::alloc(pages) {
            #[cfg(feature = "loopback-ghcb")]
            Ok(gpa) if !crate::loopback::host_sees(gpa, (pages * PAGE_SIZE) as u64) => dma_fatal(
                "ring pages not shared with the host",
                dma::DmaError::UnknownBuffer(gpa),
            ),
            #[cfg(feature = "loopback-tdx")]
            Ok(gpa) if !crate::loopback_tdx::host_sees(gpa, (pages * PAGE_SIZE) as u64) => {
                dma_fatal(
                    "ring pages not shared with the host (MapGPA)",
                    dma::DmaError::UnknownBuffer(gpa),
                )
            }
            Ok(gpa) => match NonNull::new(gpa as *mut u8) {
                Some(ptr) => (gpa, ptr),
                None => dma_fatal("dma_alloc", dma::DmaError::UnknownBuffer(0)),
            },
            Err(e) => {
                log::error!("virtio: no {pages} DMA pages: {e}");
                (0, NonNull::dangling())
            }
        }
    }

    unsafe fn dma_dealloc(paddr: PhysAddr, _vaddr: NonNull<u8>, _pages: usize) -> i32 {
        match dma::free(paddr) {
            Ok(()) => 0,
            Err(_) => -1,
        }
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, size: usize) -> NonNull<u8> {
        if let Err(e) = paging::map_mmio(paddr, size as u64) {
            log::error!("virtio: cannot map BAR region {paddr:#x}+{size:#x}: {e}");
        }
        NonNull::new(paddr as *mut u8).unwrap_or(NonNull::dangling())
    }

    unsafe fn share(buffer: NonNull<[u8]>, direction: BufferDirection) -> PhysAddr {
        let len = buffer.len();
        let pages = len.div_ceil(PAGE_SIZE).max(1);
        let gpa = match dma::alloc(pages) {
            Ok(gpa) => gpa,
            Err(e) => dma_fatal("bounce buffer", e),
        };
        if direction != BufferDirection::DeviceToDriver {
            // SAFETY: virtio-drivers passes a buffer valid for reads for the duration of
            // this call (the `Hal::share` contract).
            let data = unsafe { buffer.as_ref() };
            if let Err(e) = dma::write(gpa, data) {
                dma_fatal("bounce in", e);
            }
        }
        #[cfg(feature = "loopback-ghcb")]
        if !crate::loopback::host_sees(gpa, len.max(1) as u64) {
            dma_fatal(
                "bounce page not shared with the host",
                dma::DmaError::UnknownBuffer(gpa),
            );
        }
        #[cfg(feature = "loopback-tdx")]
        if !crate::loopback_tdx::host_sees(gpa, len.max(1) as u64) {
            dma_fatal(
                "bounce page not shared with the host (MapGPA)",
                dma::DmaError::UnknownBuffer(gpa),
            );
        }
        if !dma::is_shared(gpa, len.max(1) as u64) {
            dma_fatal(
                "device address outside the pool",
                dma::DmaError::UnknownBuffer(gpa),
            );
        }
        gpa
    }

    unsafe fn unshare(paddr: PhysAddr, mut buffer: NonNull<[u8]>, direction: BufferDirection) {
        if direction != BufferDirection::DriverToDevice {
            // SAFETY: virtio-drivers passes the buffer it shared, valid for writes and not
            // accessed elsewhere for the duration of this call (the `Hal::unshare` contract).
            let out = unsafe { buffer.as_mut() };
            if let Err(e) = dma::read(paddr, out) {
                dma_fatal("bounce out", e);
            }
        }
        if let Err(e) = dma::free(paddr) {
            dma_fatal("bounce free", e);
        }
    }
}

/// Errors bringing the device up.
#[derive(Debug)]
pub enum VirtioNetError {
    /// The transport could not be set up.
    Transport(virtio_drivers::transport::pci::VirtioPciError),
    /// The device refused initialisation.
    Device(virtio_drivers::Error),
}

impl core::fmt::Display for VirtioNetError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Transport(e) => write!(f, "virtio PCI transport: {e}"),
            Self::Device(e) => write!(f, "virtio-net device: {e}"),
        }
    }
}

/// Frames in flight towards the device at most (each holds one transmit buffer).
const TX_BUFFERS: usize = QUEUE_SIZE / 2;
/// Transmit buffer size (virtio_net_hdr + a 1514-byte frame).
const TX_BUFFER_LEN: usize = 2048;

/// A virtio-net device, driven without blocking: receive buffers stay posted, transmitted
/// frames are reaped when the device reports them used.
pub struct VirtioNic {
    net: VirtIONetRaw<KernelHal, PciTransport, QUEUE_SIZE>,
    /// Posted receive buffers, by descriptor token.
    rx: Vec<Option<Box<[u8]>>>,
    /// Transmit buffers the device still owns, by descriptor token.
    tx_in_flight: Vec<Option<Box<[u8]>>>,
    /// Transmit buffers ready for use.
    tx_free: Vec<Box<[u8]>>,
}

impl VirtioNic {
    /// Brings up the device at `df`: enables memory decoding and bus mastering, negotiates
    /// features, posts every receive buffer.
    pub fn new(df: DeviceFunction) -> Result<Self, VirtioNetError> {
        let mut root = PciRoot::new(PortCam);
        let (_, command) = root.get_status_command(df);
        root.set_command(df, command | Command::MEMORY_SPACE | Command::BUS_MASTER);
        let transport =
            PciTransport::new::<KernelHal, _>(&mut root, df).map_err(VirtioNetError::Transport)?;
        let net = VirtIONetRaw::new(transport).map_err(VirtioNetError::Device)?;
        let mut nic = Self {
            net,
            rx: (0..QUEUE_SIZE).map(|_| None).collect(),
            tx_in_flight: (0..QUEUE_SIZE).map(|_| None).collect(),
            tx_free: (0..TX_BUFFERS)
                .map(|_| vec![0u8; TX_BUFFER_LEN].into_boxed_slice())
                .collect(),
        };
        for _ in 0..QUEUE_SIZE {
            nic.post_rx(vec![0u8; RX_BUFFER_LEN].into_boxed_slice())
                .map_err(VirtioNetError::Device)?;
        }
        Ok(nic)
    }

    /// Hands a receive buffer to the device.
    fn post_rx(&mut self, mut buf: Box<[u8]>) -> Result<(), virtio_drivers::Error> {
        // SAFETY: the buffer is kept in `self.rx` (its heap allocation does not move) and not
        // touched until the device returns its token, then passed back unchanged to
        // `receive_complete`.
        let token = unsafe { self.net.receive_begin(&mut buf) }?;
        let slot = self
            .rx
            .get_mut(usize::from(token))
            .ok_or(virtio_drivers::Error::WrongToken)?;
        *slot = Some(buf);
        Ok(())
    }

    /// Takes back the transmit buffers the device is done with.
    fn reap_tx(&mut self) -> Result<(), NicError> {
        while let Some(token) = self.net.poll_transmit() {
            let buf = self
                .tx_in_flight
                .get_mut(usize::from(token))
                .and_then(Option::take)
                .ok_or(NicError::Device("transmit token without buffer"))?;
            // SAFETY: `buf` is the buffer `transmit_begin` returned this token for.
            unsafe { self.net.transmit_complete(token, &buf) }
                .map_err(|_| NicError::Device("transmit complete"))?;
            self.tx_free.push(buf);
        }
        Ok(())
    }
}

impl Nic for VirtioNic {
    fn mac_address(&self) -> [u8; 6] {
        self.net.mac_address()
    }

    fn mtu(&self) -> usize {
        MTU
    }

    fn receive(&mut self, frame: &mut [u8]) -> Result<Option<usize>, NicError> {
        let Some(token) = self.net.poll_receive() else {
            return Ok(None);
        };
        let mut buf = self
            .rx
            .get_mut(usize::from(token))
            .and_then(Option::take)
            .ok_or(NicError::Device("receive token without buffer"))?;
        // SAFETY: `buf` is the buffer `receive_begin` returned this token for.
        let done = unsafe { self.net.receive_complete(token, &mut buf) };
        // Copy out of the (host-visible) DMA buffer before anything parses the frame.
        let result = match done {
            Ok((header, len)) => match (
                buf.get(header..header.saturating_add(len)),
                frame.get_mut(..len),
            ) {
                (Some(src), Some(dst)) => {
                    dst.copy_from_slice(src);
                    Ok(Some(len))
                }
                (None, _) => Err(NicError::Device("received length beyond the buffer")),
                (_, None) => Err(NicError::FrameTooLarge { len }),
            },
            Err(_) => Err(NicError::Device("receive complete")),
        };
        self.post_rx(buf)
            .map_err(|_| NicError::Device("repost receive buffer"))?;
        result
    }

    fn can_transmit(&mut self) -> bool {
        self.reap_tx().is_ok() && !self.tx_free.is_empty() && self.net.can_send()
    }

    fn transmit(&mut self, frame: &[u8]) -> Result<(), NicError> {
        self.reap_tx()?;
        if !self.net.can_send() {
            return Err(NicError::QueueFull);
        }
        let mut buf = self.tx_free.pop().ok_or(NicError::QueueFull)?;
        let header = self
            .net
            .fill_buffer_header(&mut buf)
            .map_err(|_| NicError::Device("header"))?;
        let end = header.checked_add(frame.len()).filter(|e| *e <= buf.len());
        let Some(end) = end else {
            self.tx_free.push(buf);
            return Err(NicError::FrameTooLarge { len: frame.len() });
        };
        if let Some(dst) = buf.get_mut(header..end) {
            dst.copy_from_slice(frame);
        }
        let started = {
            let data = buf.get(..end).unwrap_or(&[]);
            // SAFETY: `buf` moves into `tx_in_flight` (its heap allocation does not move) and
            // is not touched until `reap_tx` sees the token used and passes it back.
            unsafe { self.net.transmit_begin(data) }
        };
        match started {
            Ok(token) => match self.tx_in_flight.get_mut(usize::from(token)) {
                Some(slot) => {
                    *slot = Some(buf);
                    Ok(())
                }
                None => {
                    // The device owns the buffer now; leak it rather than free memory it may
                    // still read. (virtio-drivers never returns a token >= QUEUE_SIZE.)
                    Box::leak(buf);
                    Err(NicError::Device("transmit token out of range"))
                }
            },
            Err(_) => {
                self.tx_free.push(buf);
                Err(NicError::QueueFull)
            }
        }
    }
}
