//! Host-testable logic of the KMS kernel: everything the kernel decides from bytes the
//! firmware or the host hands it, kept free of hardware access so `cargo test` runs it.
//!
//! Modules, in dependency order:
//! - [`cmdline`]: the strict parser of the measured `ckms.*` command line.
//! - [`memmap`]: UEFI memory-map classification and heap planning (unaccepted memory is
//!   counted and never used).
//! - [`pci`]: PCI configuration-space header parsing (type 0 headers, BARs, capabilities).
//! - [`rtc`]: CMOS RTC register decoding and civil-date to Unix-time conversion.
//!
//! This crate does no I/O and holds no state; the kernel reads the hardware and passes the
//! bytes in. (The `snp-emu` serial framing is the shared `snp-emu-proto` crate,
//! `image/emu-proto`.)
#![no_std]
#![forbid(unsafe_code)]

pub mod cmdline;
pub mod memmap;
pub mod pci;
pub mod rtc;
