//! snp-emu: an emulated AMD secure processor (PSP) for testing SEV-SNP guests without the hardware.
//!
//! It holds a test ARK → ASK → VCEK chain made with AMD's algorithms, signs byte-exact attestation
//! reports with the VCEK, derives MSG_KEY_REQ keys from an emulator secret and the guest's
//! measurement, and speaks a small framed protocol over a unix stream socket that a guest reaches
//! through a serial port. The protocol carries real SNP guest messages (AES-256-GCM with VMPCK0),
//! so the guest's message code is the code it would use with hardware. See `docs/snp-emu.md`.
//!
//! Modules, in dependency order:
//! - [`chain`]: the test chain (generation from a seed, fixtures, export) and the TCB layout.
//! - [`psp`]: the emulated PSP: reports, derived keys, VMPCK handout, certificate table.
//! - [`server`]: dispatch of frames to the PSP and the unix-socket loop.
//!
//! The wire protocol (framing, resynchronising decoder, command and status codes) and the
//! guest-side client live in the shared `snp-emu-proto` crate (`image/emu-proto`), which the
//! kernel and `kms-server` use too; this crate is the firmware side only.
//!
//! Not done: VMPCK1..3 and VMPL>0 guests, VLEK and VMRK keys, ID blocks (FAMILY_ID, IMAGE_ID,
//! ID_KEY_DIGEST are zero), migration agents, extended reports over one request (the certificate
//! table is its own command). Nothing here is secure: the chain's root is a test key whose
//! private half is derivable from a public seed.
pub mod chain;
pub mod psp;
pub mod server;
