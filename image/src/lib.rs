//! `image`: build the unikernel image and its manifest, and run it under QEMU.
//!
//! Modules, lowest first:
//! - [`firmware`]: what a firmware file is (4 KiB AmdSev descriptor or a whole AmdSevX64 OVMF) and the
//!   kernel-hashes table (`attest`'s encoder) the runner injects so that OVMF checks kernel and command line
//!   under TCG as it does on SNP hardware.
//! - [`manifest`]: `manifest.json` (kernel and firmware hashes, command line, vCPUs, SNP launch digest from
//!   `attest::measure::snp`), parse and emit.
//! - [`build`]: `image build` — runs `kernel/build.sh`, writes `kms.efi`, `manifest.json` and a copy of the
//!   firmware descriptor into the image directory.
//! - [`relay`]: `image relay` — the per-connection stdin/stdout ↔ loopback TCP relay QEMU can run for the
//!   guest's Redis connections.
//! - [`run`]: `image run` — [`run::Vm`] starts `snp-emu` and QEMU (TCG, user networking restricted to
//!   127.0.0.1 forwards), watches the console, and stops both on drop.
//!
//! The binary (`src/main.rs`) is a thin clap front end. This crate is host-only (std); it does not build OVMF
//! (`ovmf-config/build-amdsev.sh` does), and it does not run on SNP/TDX hardware (QEMU here has no SEV/TDX).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod build;
pub mod firmware;
pub mod manifest;
pub mod relay;
pub mod run;
