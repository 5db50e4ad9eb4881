//! `kms-server`: the host-mode KMS server, std TCP + rustls around the sans-IO `kms` core.
//!
//! Modules in dependency order:
//! - [`tls`]: certificate chains and keys from PEM files.
//! - [`serve`]: the I/O driver: accept on the App's listeners, a thread per connection moving
//!   bytes into a [`kms::conn::Conn`], the system clock and the OS random generator.
//! - [`store`]: `--database` choice and [`store::open_store`].
//! - [`app`]: command-line options and start-up of a server without bootstrap.
//! - [`bootstrap`]: `--bootstrap` mode: the platform (snp-emu or none) and start-up of the
//!   zero-trust workflow.
//!
//! It does not do TLS, HTTP, routing or KMIP (the `kms` core's [`kms::app::App`] does) and
//! offers no plaintext HTTP port.
#![forbid(unsafe_code)]

pub mod app;
pub mod bootstrap;
pub mod serve;
pub mod store;
pub mod tls;
