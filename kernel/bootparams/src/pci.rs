//! PCI configuration-space header parsing (PCI Local Bus Specification 3.0, 6.1–6.2.5:
//! the type 0/1 header and Base Address Registers).
//!
//! The kernel reads the first 64 bytes of a function's configuration space as 16 dwords
//! (mechanism #1, ports 0xCF8/0xCFC) and hands them here. Values come from the host's
//! device model, so every field is decoded without trusting it.

/// Vendor ID of virtio devices (virtio 1.2, 4.1.2).
pub const VIRTIO_VENDOR: u16 = 0x1af4;
/// Device ID of a modern (non-transitional) virtio-net device: 0x1040 + 1 (virtio 1.2, 4.1.2.1).
pub const VIRTIO_NET_MODERN: u16 = 0x1041;

/// A decoded configuration header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Vendor ID.
    pub vendor: u16,
    /// Device ID.
    pub device: u16,
    /// Command register.
    pub command: u16,
    /// Status register.
    pub status: u16,
    /// Class code.
    pub class: u8,
    /// Subclass.
    pub subclass: u8,
    /// Programming interface.
    pub prog_if: u8,
    /// Revision.
    pub revision: u8,
    /// Header type without the multi-function bit (0 = device, 1 = bridge).
    pub header_type: u8,
    /// Multi-function bit.
    pub multifunction: bool,
    raw_bars: [u32; 6],
}

/// A decoded Base Address Register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bar {
    /// Not implemented (zero).
    None,
    /// I/O space.
    Io {
        /// Port base.
        port: u32,
    },
    /// 32-bit memory.
    Memory32 {
        /// Base address.
        address: u32,
        /// Prefetchable.
        prefetchable: bool,
    },
    /// 64-bit memory (occupies this BAR and the next).
    Memory64 {
        /// Base address.
        address: u64,
        /// Prefetchable.
        prefetchable: bool,
    },
    /// Upper half of the previous 64-bit BAR.
    Upper,
    /// Reserved memory type (bits 2:1 = 0b01 or 0b11).
    Invalid,
}

impl Header {
    /// Decodes 16 dwords of configuration space; `None` if no function is there (vendor
    /// 0xFFFF) or the vendor is 0 (invalid).
    pub fn parse(dw: &[u32; 16]) -> Option<Self> {
        let vendor = dw[0] as u16;
        if vendor == 0xffff || vendor == 0 {
            return None;
        }
        let ht = (dw[3] >> 16) as u8;
        let header_type = ht & 0x7f;
        let mut raw_bars = [0u32; 6];
        // Type 1 (bridge) headers have only BAR0 and BAR1.
        let count = if header_type == 0 {
            6
        } else if header_type == 1 {
            2
        } else {
            0
        };
        for (i, bar) in raw_bars.iter_mut().enumerate().take(count) {
            *bar = dw[4 + i];
        }
        Some(Self {
            vendor,
            device: (dw[0] >> 16) as u16,
            command: dw[1] as u16,
            status: (dw[1] >> 16) as u16,
            revision: dw[2] as u8,
            prog_if: (dw[2] >> 8) as u8,
            subclass: (dw[2] >> 16) as u8,
            class: (dw[2] >> 24) as u8,
            header_type,
            multifunction: ht & 0x80 != 0,
            raw_bars,
        })
    }

    /// Decodes BAR `index` (0..6); `None` for an index out of range.
    pub fn bar(&self, index: usize) -> Option<Bar> {
        let raw = *self.raw_bars.get(index)?;
        // The upper half of a 64-bit BAR, unless that BAR is itself an upper half.
        if index > 0
            && let Some(prev) = self.raw_bars.get(index - 1)
            && prev & 0x7 == 0x4
            && !matches!(self.bar(index - 1), Some(Bar::Upper))
        {
            return Some(Bar::Upper);
        }
        if raw == 0 {
            return Some(Bar::None);
        }
        if raw & 1 == 1 {
            return Some(Bar::Io { port: raw & !0x3 });
        }
        let prefetchable = raw & 0x8 != 0;
        Some(match (raw >> 1) & 0x3 {
            0 => Bar::Memory32 {
                address: raw & !0xf,
                prefetchable,
            },
            2 => {
                let high = self.raw_bars.get(index + 1).copied();
                match high {
                    Some(h) => Bar::Memory64 {
                        address: (u64::from(h) << 32) | u64::from(raw & !0xf),
                        prefetchable,
                    },
                    None => Bar::Invalid,
                }
            }
            _ => Bar::Invalid,
        })
    }

    /// Whether this is a modern virtio-net device.
    pub fn is_virtio_net(&self) -> bool {
        self.vendor == VIRTIO_VENDOR && self.device == VIRTIO_NET_MODERN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Header of QEMU 7.2's `virtio-net-pci,disable-legacy=on` on q35 with the BARs OVMF
    /// assigned in a 128 MiB guest (as the kernel logs them): BAR1 32-bit MMIO (MSI-X),
    /// BAR4/5 one 64-bit prefetchable BAR above 4 GiB.
    const VIRTIO_NET: [u32; 16] = [
        0x1041_1af4,
        0x0010_0507,
        0x0200_0001,
        0x0000_0000,
        0x0000_0000,
        0xc104_1000,
        0x0000_0000,
        0x0000_0000,
        0x0000_000c,
        0x0000_00e0,
        0x0000_0000,
        0x1100_1af4,
        0x0000_0000,
        0x0000_0040,
        0x0000_0000,
        0x0000_010b,
    ];

    #[test]
    fn virtio_net_header() {
        let h = Header::parse(&VIRTIO_NET).unwrap();
        assert!(h.is_virtio_net());
        assert_eq!(
            (h.class, h.subclass, h.prog_if, h.revision),
            (0x02, 0x00, 0x00, 0x01)
        );
        assert_eq!(h.command, 0x0507);
        assert_eq!(h.header_type, 0);
        assert!(!h.multifunction);
        assert_eq!(h.bar(0), Some(Bar::None));
        assert_eq!(
            h.bar(1),
            Some(Bar::Memory32 {
                address: 0xc104_1000,
                prefetchable: false
            })
        );
        assert_eq!(
            h.bar(4),
            Some(Bar::Memory64 {
                address: 0xe0_0000_0000,
                prefetchable: true
            })
        );
        assert_eq!(h.bar(5), Some(Bar::Upper));
        assert_eq!(h.bar(6), None);
    }

    #[test]
    fn absent_function() {
        let mut dw = [0xffff_ffffu32; 16];
        assert_eq!(Header::parse(&dw), None);
        dw[0] = 0;
        assert_eq!(Header::parse(&dw), None);
    }

    #[test]
    fn io_and_invalid_bars() {
        let mut dw = VIRTIO_NET;
        dw[4] = 0x0000_c001; // I/O
        dw[5] = 0x0000_0002; // reserved type 0b01
        dw[8] = 0;
        dw[9] = 0x0000_0004; // 64-bit BAR in the last slot: no upper half
        let h = Header::parse(&dw).unwrap();
        assert_eq!(h.bar(0), Some(Bar::Io { port: 0xc000 }));
        assert_eq!(h.bar(1), Some(Bar::Invalid));
        assert_eq!(h.bar(5), Some(Bar::Invalid));
    }

    #[test]
    fn bridge_has_two_bars() {
        let mut dw = VIRTIO_NET;
        dw[3] = 0x0081_0000; // multi-function bridge
        let h = Header::parse(&dw).unwrap();
        assert_eq!((h.header_type, h.multifunction), (1, true));
        assert_eq!(h.bar(4), Some(Bar::None));
    }
}
