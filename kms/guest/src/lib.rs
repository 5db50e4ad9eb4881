//! `kms-guest`: the KMS service of the unikernel, over netstack, no_std.
//!
//! The kernel brings up the NIC, the stack, clocks, RNG and the attestation platform, then
//! hands them to [`Server`] and calls [`Server::step`] in its poll loop. Everything above TCP is
//! here and in the sans-IO cores it drives, so the same code is built and unit-tested on the host.
//!
//! Modules, lowest first:
//! - [`net`]: [`net::SharedStack`] (the stack behind a lock, shared by the server loop and the
//!   Redis transport) and the platform [`net::Clock`].
//! - [`redis`]: a non-blocking RESP transport for `kms-redis` over netstack TCP (`Poll::Pending`
//!   while the socket would block, deadlines checked on every poll), and the image's client pool.
//! - [`server`]: listeners → `kms::conn::Conn` (TLS → HTTP → `kms::app::App`: the bootstrap API,
//!   then the KMS on `RedisFindexStore` over [`redis`]); requests waiting on Redis stay pending
//!   while the other connections are served; connection, request, buffer and reply limits; idle
//!   timeouts.
//!
//! It does no attestation itself (the kernel passes a `kms::bootstrap::platform::Evidence`),
//! reads no clock directly, and has no DNS (the Redis host is an IPv4 literal).
#![no_std]
#![warn(missing_docs)]

extern crate alloc;

pub mod net;
pub mod redis;
pub mod server;

pub use net::{Clock, SharedStack};
pub use server::{Limits, Server, ServiceError, Settings, Stats};
