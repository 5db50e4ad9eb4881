//! PCI configuration mechanism #1 (ports 0xCF8/0xCFC; PCI Local Bus Specification 3.0,
//! 3.2.2.3.2) and bus enumeration.

use alloc::vec::Vec;

use bootparams::pci::Header;
use virtio_drivers::transport::pci::bus::{ConfigurationAccess, DeviceFunction};

use crate::arch::port;

const CONFIG_ADDRESS: u16 = 0xcf8;
const CONFIG_DATA: u16 = 0xcfc;

/// Port-I/O configuration access. One CPU, interrupts off: the address/data pair is never
/// interleaved.
pub struct PortCam;

fn address(df: DeviceFunction, offset: u8) -> u32 {
    0x8000_0000
        | (u32::from(df.bus) << 16)
        | (u32::from(df.device & 0x1f) << 11)
        | (u32::from(df.function & 0x7) << 8)
        | u32::from(offset & 0xfc)
}

impl ConfigurationAccess for PortCam {
    fn read_word(&self, df: DeviceFunction, offset: u8) -> u32 {
        port::outl(CONFIG_ADDRESS, address(df, offset));
        port::inl(CONFIG_DATA)
    }

    fn write_word(&mut self, df: DeviceFunction, offset: u8, data: u32) {
        port::outl(CONFIG_ADDRESS, address(df, offset));
        port::outl(CONFIG_DATA, data);
    }

    unsafe fn unsafe_clone(&self) -> Self {
        PortCam
    }
}

/// A function found on the bus.
#[derive(Clone, Copy, Debug)]
pub struct Function {
    /// Its address.
    pub df: DeviceFunction,
    /// Its decoded header.
    pub header: Header,
}

fn read_header(cam: &PortCam, df: DeviceFunction) -> Option<Header> {
    let mut dw = [0u32; 16];
    dw[0] = cam.read_word(df, 0);
    // No function here (vendor 0xFFFF): skip the other 15 reads (each is a GHCB exit on SNP).
    if dw[0] as u16 == 0xffff {
        return None;
    }
    for (i, d) in dw.iter_mut().enumerate().skip(1) {
        *d = cam.read_word(df, (i * 4) as u8);
    }
    Header::parse(&dw)
}

/// Scans every bus, device and function (brute force: 256 × 32 vendor reads, plus functions
/// of multi-function devices).
pub fn enumerate() -> Vec<Function> {
    let cam = PortCam;
    let mut found = Vec::new();
    for bus in 0..=255u8 {
        for device in 0..32u8 {
            let df0 = DeviceFunction {
                bus,
                device,
                function: 0,
            };
            let Some(h0) = read_header(&cam, df0) else {
                continue;
            };
            let functions = if h0.multifunction { 8 } else { 1 };
            found.push(Function {
                df: df0,
                header: h0,
            });
            for function in 1..functions {
                let df = DeviceFunction {
                    bus,
                    device,
                    function,
                };
                if let Some(header) = read_header(&cam, df) {
                    found.push(Function { df, header });
                }
            }
        }
    }
    found
}
