//! virtio-net (modern PCI transport, virtio 1.2 section 5.1) through `virtio-drivers`, as a
//! `netstack::Nic`.
//!
//! All DMA memory goes through [`KernelHal`], which allocates page-aligned heap memory and
//! asks the platform to share it with the host ([`crate::platform::share`]): identity today,
//! host-visible bounce pages on SNP/TDX later. Received frames are copied into the stack's
//! private buffer before smoltcp parses them.

use alloc::alloc::{alloc_zeroed, dealloc, Layout};
use core::ptr::NonNull;

use netstack::{Nic, NicError};
use virtio_drivers::device::net::VirtIONet;
use virtio_drivers::transport::pci::bus::{Command, DeviceFunction, PciRoot};
use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::{BufferDirection, Hal, PhysAddr, PAGE_SIZE};

use super::pci::PortCam;
use crate::arch::paging;

/// Descriptors per virtqueue.
const QUEUE_SIZE: usize = 256;
/// Receive buffer size (virtio_net_hdr + a 1514-byte frame, rounded up).
const RX_BUFFER_LEN: usize = 2048;
/// Largest Ethernet payload (no VIRTIO_NET_F_MTU negotiation).
const MTU: usize = 1500;

/// The DMA/MMIO glue for `virtio-drivers`.
pub struct KernelHal;

fn dma_layout(pages: usize) -> Option<Layout> {
    Layout::from_size_align(pages.checked_mul(PAGE_SIZE)?, PAGE_SIZE).ok()
}

// SAFETY: `dma_alloc` returns zeroed, page-aligned memory owned by the caller until
// `dma_dealloc`, identity-mapped (physical = virtual); `mmio_phys_to_virt` maps the BAR
// before returning its identity address; `share` returns the buffer's identity address,
// valid for device access once the platform shared it.
unsafe impl Hal for KernelHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let Some(layout) = dma_layout(pages) else { return (0, NonNull::dangling()) };
        // SAFETY: non-zero size (virtio-drivers never asks for 0 pages; checked by layout).
        let p = unsafe { alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(p) else {
            log::error!("virtio: out of memory for {pages} DMA pages");
            return (0, NonNull::dangling());
        };
        if crate::platform::share(p as u64, layout.size()).is_err() {
            // SAFETY: allocated just above with this layout.
            unsafe { dealloc(p, layout) };
            return (0, NonNull::dangling());
        }
        (p as u64, ptr)
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        let Some(layout) = dma_layout(pages) else { return -1 };
        if crate::platform::unshare(vaddr.as_ptr() as u64, layout.size()).is_err() {
            return -1;
        }
        // SAFETY: the caller returns memory from `dma_alloc` with the same page count.
        unsafe { dealloc(vaddr.as_ptr(), layout) };
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, size: usize) -> NonNull<u8> {
        if let Err(e) = paging::map_mmio(paddr, size as u64) {
            log::error!("virtio: cannot map BAR region {paddr:#x}+{size:#x}: {e}");
        }
        NonNull::new(paddr as *mut u8).unwrap_or(NonNull::dangling())
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        let addr = buffer.as_ptr().cast::<u8>() as u64;
        // Identity on the current backends; the SNP/TDX backends will copy into shared
        // bounce pages here and return their address.
        let _ = crate::platform::share(addr, buffer.len());
        addr
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
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

/// A virtio-net device.
pub struct VirtioNic {
    net: VirtIONet<KernelHal, PciTransport, QUEUE_SIZE>,
}

impl VirtioNic {
    /// Brings up the device at `df`: enables memory decoding and bus mastering, negotiates
    /// features, fills the receive queue.
    pub fn new(df: DeviceFunction) -> Result<Self, VirtioNetError> {
        let mut root = PciRoot::new(PortCam);
        let (_, command) = root.get_status_command(df);
        root.set_command(df, command | Command::MEMORY_SPACE | Command::BUS_MASTER);
        let transport =
            PciTransport::new::<KernelHal, _>(&mut root, df).map_err(VirtioNetError::Transport)?;
        let net = VirtIONet::new(transport, RX_BUFFER_LEN).map_err(VirtioNetError::Device)?;
        Ok(Self { net })
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
        let rx = match self.net.receive() {
            Ok(rx) => rx,
            Err(virtio_drivers::Error::NotReady) => return Ok(None),
            Err(_) => return Err(NicError::Device("receive")),
        };
        let packet = rx.packet();
        let len = packet.len();
        let result = match frame.get_mut(..len) {
            Some(dst) => {
                dst.copy_from_slice(packet);
                Ok(Some(len))
            }
            None => Err(NicError::FrameTooLarge { len }),
        };
        self.net.recycle_rx_buffer(rx).map_err(|_| NicError::Device("recycle"))?;
        result
    }

    fn can_transmit(&mut self) -> bool {
        self.net.can_send()
    }

    fn transmit(&mut self, frame: &[u8]) -> Result<(), NicError> {
        if !self.net.can_send() {
            return Err(NicError::QueueFull);
        }
        let mut tx = self.net.new_tx_buffer(frame.len());
        tx.packet_mut().copy_from_slice(frame);
        self.net.send(tx).map_err(|_| NicError::Device("send"))
    }
}
