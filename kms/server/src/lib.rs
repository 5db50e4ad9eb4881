//! `kms-server`: the host-mode KMS server, std TCP + rustls around the sans-IO `kms` core.
//!
//! Modules in dependency order:
//! - [`tls`]: rustls server configuration from PEM files; client identity (certificate CN).
//! - [`serve`]: the I/O driver: accept, TLS, and a thread per connection moving plaintext
//!   bytes into a [`serve::Session`]; reusable with any [`serve::Handler`].
//! - [`store`]: `--database` choice and [`store::open_store`].
//! - [`kms_handler`]: the KMS as a handler (one `kms::server::Connection` per connection,
//!   system clock, OS randomness).
//! - [`app`]: command-line options and start-up.
//! - [`bootstrap`]: `--bootstrap` mode: RA-TLS bootstrap API, then the KMS (zero-trust start).
//!
//! It does not parse HTTP or KMIP (the `kms` core does) and offers no plaintext HTTP port.
#![forbid(unsafe_code)]

pub mod app;
pub mod bootstrap;
pub mod kms_handler;
pub mod serve;
pub mod store;
pub mod tls;
