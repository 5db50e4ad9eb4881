//! Attestation evidence for confidential VMs: SEV-SNP reports and guest messages, the RA-TLS
//! certificate extension, launch-measurement calculators, TDX quotes, and (with `std`)
//! verification.
//!
//! Modules, in dependency order:
//! - [`snp`]: AMD SEV-SNP wire formats: [`snp::report`] (the 0x4A0-byte attestation report, TCB and
//!   policy decoding) and [`snp::guest_msg`] (the encrypted guest-request envelope with sequence
//!   numbers, and the `MSG_REPORT_*` / `MSG_KEY_*` payloads).
//! - [`tdx`]: Intel TDX quote v4 parsing (header, TD report body), the CC event log (CCEL) and
//!   its RTMR replay; with feature `tdx-verify`, verification against Intel collateral through
//!   `dcap-qvl`.
//! - [`ratls`]: the RA-TLS certificate extension (OIDs, SNP quote encoding) and the binding of a
//!   TLS public key into `report_data`.
//! - [`measure`]: expected launch measurements computed from the inputs of a launch:
//!   [`measure::snp`] (OVMF metadata, kernel hashes, VMSAs; agrees with `sev-snp-measure`) and
//!   [`measure::tdx`] (MRTD from TDVF metadata; RTMR1 from the kernel's Authenticode SHA-384,
//!   RTMR2 from the command line).
//! - `verify` (feature `std`): certificate chains ARK → ASK → VCEK / ARK → ASVK → VLEK with AMD's
//!   roots built in, the report signature, and a `Policy` that always names the expected
//!   measurement; the result is a `VerifiedReport` only `verify` can build. `verify::ratls`
//!   does the same for an RA-TLS certificate or quote: it picks the VCEK chain from the quote's
//!   certificate table and checks the binding of the key (and nonce) in `report_data`.
//!
//! The core is `no_std` + `alloc` and has no `unsafe`. Everything that parses takes untrusted
//! bytes and returns typed errors; nothing panics on input.
//!
//! # Example
//!
//! ```
//! use attest::measure::snp::{launch_digest, SnpLaunch, VcpuType, VmmType};
//!
//! // The last 4 KiB of an OVMF AmdSevX64 build (footer table, SEV metadata, reset block).
//! let firmware = include_bytes!("../testdata/snp/ovmf_AmdSev_suffix.bin");
//! let digest = launch_digest(&SnpLaunch {
//!     firmware,
//!     kernel: b"",
//!     initrd: b"",
//!     cmdline: "console=ttyS0 loglevel=7",
//!     vcpus: 1,
//!     vcpu_type: "EPYC-v4".parse().unwrap(),
//!     guest_features: 0x1,
//!     vmm: VmmType::Qemu,
//! })
//! .unwrap();
//! assert_eq!(digest[..4], [0x6d, 0x28, 0x78, 0x13]);
//!
//! // Bind a TLS key into report_data, as an RA-TLS server does.
//! let report_data = attest::ratls::report_data_for_key(&[4u8; 65], &[0u8; 32]);
//! assert_eq!(report_data[32..], [0u8; 32]);
//! # let _ = VcpuType::EpycV4;
//! ```
//!
//! # Verification
//!
//! With feature `std`, `attest::verify::verify_snp_report(report, vcek_der, chain, &policy)`
//! checks the chain to a built-in AMD root (or an explicitly given test root), the certificates'
//! validity periods at the verifier's clock and optionally an AMD CRL, the VCEK's TCB and hwID
//! extensions, the report signature and the policy (guest policy bits, firmware version, VMPL,
//! per-product minimum reported/committed/launch TCB, measurement, report_data).
//!
//! # Not done here
//!
//! No I/O: fetching certificates from AMD's KDS or collateral from Intel's PCS, talking to
//! `/dev/sev-guest` or the GHCB, and TDX guest calls belong to the callers. SEV and SEV-ES
//! (non-SNP) digests and SVSM launches are not computed; CRLs are not fetched (the caller passes
//! an offline AMD CRL file to `Policy::amd_crl`).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(any(feature = "std", test))]
extern crate std;

pub mod measure;
pub mod ratls;
pub mod snp;
pub mod tdx;
#[cfg(feature = "std")]
pub mod verify;

#[cfg(test)]
pub(crate) mod test_util;
