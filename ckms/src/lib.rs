//! `ckms`: the KMS command-line client, as a library the `ckms` binary (and tests, benchmarks,
//! other subcommands) build on.
//!
//! Modules in dependency order:
//! - [`http`]: HTTP/1.1 over rustls (ring): TLS client configurations (CA-verified, or any
//!   custom verifier) and a keep-alive client.
//! - [`config`]: settings from flags and the TOML file (`$CKMS_CONF`, `~/.config/ckms/ckms.toml`).
//! - [`kmip`]: KMIP 2.1 JSON TTLV (Cosmian dialect) with the KMS core's codec and typed items
//!   (`kms::kmip`); requests are built and responses read with them.
//! - [`client`]: the KMS REST API (`/kmip/2_1`, `/access/*`, `/version`).
//! - [`error`]: the command error type.
//! - [`cmd`]: the KMIP and access-rights subcommands.
//! - [`pinned`]: TLS verifiers for attested servers (capture without trust, pinned key, recording).
//! - [`kds`]: the VCEK and ASK/ARK from AMD's Key Distribution Service URL layout, for quotes without a
//!   certificate table.
//! - [`tdx`]: the TDX expectation (manifest `tdx` section) and TDX quote verification
//!   (`attest::tdx::evidence`: dcap-qvl with Intel collateral, or an explicit `--trust-root`).
//! - [`verify`]: attestation of RA-TLS certificates and fresh reports of either platform
//!   (`attest::verify::ratls`, [`tdx`]); `ckms verify`.
//! - [`bootstrap`]: `ckms bootstrap start` (attest, provision, start, verify).
//! - [`attestation`]: `ckms attestation measure | verify-report` (local, no KMS connection).
//!
//! It does not keep any key material on disk except the files the user asks it to write.
#![forbid(unsafe_code)]

pub mod attestation;
pub mod bootstrap;
pub mod client;
pub mod cmd;
pub mod config;
pub mod error;
pub mod http;
pub mod kds;
pub mod kmip;
pub mod pinned;
pub mod tdx;
pub mod verify;
