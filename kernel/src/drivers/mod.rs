//! Device drivers: PCI configuration access and enumeration, virtio-net.

pub mod pci;
pub mod virtio_net;
