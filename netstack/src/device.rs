//! The adapter from a [`Nic`] to smoltcp's [`smoltcp::phy::Device`].
//!
//! smoltcp asks for a token pair on receive (so it can answer an ARP request or a TCP segment right away) and
//! builds outgoing frames inside a closure. The adapter owns one receive and one transmit buffer, each the size
//! of the largest frame, copies between them and the NIC, and counts what it had to drop.

use alloc::vec;
use alloc::vec::Vec;

use smoltcp::phy::{self, Checksum, ChecksumCapabilities, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

use crate::nic::{ETHERNET_HEADER_LEN, Nic};

/// Frame counters kept by the adapter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NicStats {
    /// Frames handed to the stack.
    pub rx_frames: u64,
    /// Frames the NIC reported as errors (too large, device error).
    pub rx_errors: u64,
    /// Frames handed to the NIC.
    pub tx_frames: u64,
    /// Frames built by the stack but refused by the NIC (queue full, device error, too large).
    pub tx_dropped: u64,
}

/// A [`Nic`] seen as a smoltcp [`phy::Device`].
#[derive(Debug)]
pub struct NicDevice<N> {
    nic: N,
    rx_buf: Vec<u8>,
    tx_buf: Vec<u8>,
    stats: NicStats,
}

impl<N: Nic> NicDevice<N> {
    /// Wraps `nic`; allocates two buffers of `nic.mtu() + 14` bytes.
    pub fn new(nic: N) -> Self {
        let frame_len = nic.mtu().saturating_add(ETHERNET_HEADER_LEN);
        Self {
            nic,
            rx_buf: vec![0; frame_len],
            tx_buf: vec![0; frame_len],
            stats: NicStats::default(),
        }
    }

    /// The wrapped NIC.
    pub fn nic(&self) -> &N {
        &self.nic
    }

    /// The wrapped NIC, mutably (for example to acknowledge an interrupt).
    pub fn nic_mut(&mut self) -> &mut N {
        &mut self.nic
    }

    /// Frame counters.
    pub fn stats(&self) -> NicStats {
        self.stats
    }

    /// Unwraps the NIC.
    pub fn into_inner(self) -> N {
        self.nic
    }
}

/// A received frame, borrowed from the adapter's receive buffer.
#[derive(Debug)]
pub struct RxToken<'a> {
    frame: &'a [u8],
}

/// Permission to send one frame through the NIC.
#[derive(Debug)]
pub struct TxToken<'a, N> {
    nic: &'a mut N,
    buf: &'a mut [u8],
    stats: &'a mut NicStats,
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(self.frame)
    }
}

impl<N: Nic> phy::TxToken for TxToken<'_, N> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        // smoltcp never asks for more than the MTU it was given; if it did, build into a scratch buffer so
        // `f` still runs (its result is needed) and drop the frame.
        match self.buf.get_mut(..len) {
            Some(frame) => {
                let r = f(frame);
                match self.nic.transmit(frame) {
                    Ok(()) => self.stats.tx_frames += 1,
                    Err(_) => self.stats.tx_dropped += 1,
                }
                r
            }
            None => {
                self.stats.tx_dropped += 1;
                let mut scratch = vec![0; len];
                f(&mut scratch)
            }
        }
    }
}

impl<N: Nic> phy::Device for NicDevice<N> {
    type RxToken<'a>
        = RxToken<'a>
    where
        Self: 'a;
    type TxToken<'a>
        = TxToken<'a, N>
    where
        Self: 'a;

    fn receive(&mut self, _timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        // Skip frames the NIC reports as errors, but only a bounded number per call.
        for _ in 0..8 {
            match self.nic.receive(&mut self.rx_buf) {
                Ok(None) => return None,
                Ok(Some(len)) => {
                    let frame = self.rx_buf.get(..len)?;
                    self.stats.rx_frames += 1;
                    return Some((
                        RxToken { frame },
                        TxToken {
                            nic: &mut self.nic,
                            buf: &mut self.tx_buf,
                            stats: &mut self.stats,
                        },
                    ));
                }
                Err(_) => self.stats.rx_errors += 1,
            }
        }
        None
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<Self::TxToken<'_>> {
        if self.nic.can_transmit() {
            Some(TxToken {
                nic: &mut self.nic,
                buf: &mut self.tx_buf,
                stats: &mut self.stats,
            })
        } else {
            None
        }
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.rx_buf.len();
        caps.max_burst_size = None;
        // virtio-net without negotiated offloads: checksums are computed and checked in software.
        let mut checksum = ChecksumCapabilities::default();
        checksum.ipv4 = Checksum::Both;
        checksum.tcp = Checksum::Both;
        checksum.udp = Checksum::Both;
        caps.checksum = checksum;
        caps
    }
}
