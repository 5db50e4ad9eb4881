//! The network-interface trait the kernel's driver implements.
//!
//! The shape follows smoltcp's `phy::Device`: the stack asks for one received frame at a time and hands over
//! one frame at a time to send. Frames are Ethernet II frames without the FCS (IEEE 802.3 clause 3), exactly
//! what a virtio-net device delivers after its `virtio_net_hdr` (virtio 1.2 §5.1.6). Memory stays with the
//! caller: the stack copies a received frame into a buffer it owns, and passes a built frame as a slice, so a
//! driver can keep its DMA buffers (shared with the host on SNP/TDX) private.

use core::fmt;

/// Length of an Ethernet II header (destination, source, EtherType).
pub const ETHERNET_HEADER_LEN: usize = 14;

/// Errors a NIC reports for one frame. None of them is fatal for the stack: the frame is dropped and counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NicError {
    /// The received frame does not fit the buffer the stack passed (the NIC drops it).
    FrameTooLarge {
        /// Length of the frame that was dropped.
        len: usize,
    },
    /// No transmit descriptor is free right now.
    QueueFull,
    /// The device reported an error.
    Device(&'static str),
}

impl fmt::Display for NicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::FrameTooLarge { len } => {
                write!(f, "received frame of {len} bytes does not fit the buffer")
            }
            Self::QueueFull => f.write_str("transmit queue full"),
            Self::Device(what) => write!(f, "device error: {what}"),
        }
    }
}

impl core::error::Error for NicError {}

/// An Ethernet NIC.
///
/// All methods are non-blocking: the stack calls them from its poll loop.
pub trait Nic {
    /// The interface's unicast MAC address.
    fn mac_address(&self) -> [u8; 6];

    /// The IP MTU (the largest Ethernet payload; 1500 for virtio-net without `VIRTIO_NET_F_MTU`). Frames are
    /// at most `mtu() + ETHERNET_HEADER_LEN` bytes long.
    fn mtu(&self) -> usize;

    /// Copies the next received frame into `frame` and returns its length, or `Ok(None)` when no frame is
    /// waiting. A frame longer than `frame` is dropped with [`NicError::FrameTooLarge`].
    fn receive(&mut self, frame: &mut [u8]) -> Result<Option<usize>, NicError>;

    /// Whether [`Nic::transmit`] can accept a frame now.
    fn can_transmit(&mut self) -> bool;

    /// Queues `frame` for sending. The NIC copies it; `frame` can be reused when this returns.
    fn transmit(&mut self, frame: &[u8]) -> Result<(), NicError>;
}

impl<T: Nic + ?Sized> Nic for &mut T {
    fn mac_address(&self) -> [u8; 6] {
        (**self).mac_address()
    }
    fn mtu(&self) -> usize {
        (**self).mtu()
    }
    fn receive(&mut self, frame: &mut [u8]) -> Result<Option<usize>, NicError> {
        (**self).receive(frame)
    }
    fn can_transmit(&mut self) -> bool {
        (**self).can_transmit()
    }
    fn transmit(&mut self, frame: &[u8]) -> Result<(), NicError> {
        (**self).transmit(frame)
    }
}
