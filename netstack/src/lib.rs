//! `netstack`: a small TCP/IPv4 stack for the unikernel, built on [smoltcp].
//!
//! The kernel's virtio-net driver implements [`Nic`]; [`Stack`] runs smoltcp over it, gets an address by
//! DHCPv4 or from a static configuration (with DHCP falling back to static after a timeout), keeps TCP
//! listeners supplied with listening sockets so many clients can connect at once, and exposes connections
//! both as a non-blocking API for a single-threaded poll loop and as [`TcpStream`], which implements
//! `embedded-io`'s `Read`/`Write` for code that wants a blocking byte stream.
//!
//! Modules, lowest first:
//! - [`nic`]: the [`Nic`] trait (Ethernet frames in and out of caller buffers, MAC address, MTU).
//! - [`device`]: the adapter from a [`Nic`] to smoltcp's `phy::Device`.
//! - [`config`]: IPv4 configuration ([`Ipv4Mode`]) and its strict command-line parser.
//! - [`tcp`]: connection ids, [`TcpError`], [`TcpStream`].
//! - [`stack`]: [`Stack`]: `poll(now)` / `poll_delay(now)`, DHCP, listeners, connections, limits.
//!
//! Time and randomness come from the caller: every call that needs time takes an [`Instant`], and the seed for
//! TCP sequence numbers, DHCP transaction ids and local ports is part of [`Config`]. The crate is `no_std` +
//! `alloc` and has no `unsafe`.
//!
//! What it does not do: no TLS, no HTTP, no DNS, no UDP sockets for the application, no IPv6, no IP
//! fragmentation, no checksum offload. It does not block and does not sleep: idling until the next deadline is
//! the caller's job.
//!
//! Features: `embedded-io-06` also implements the `embedded-io` 0.6 traits (0.7 is always implemented).
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

pub mod config;
pub mod device;
pub mod nic;
pub mod stack;
pub mod tcp;

pub use config::{ConfigError, Ipv4Mode, Ipv4Settings, Ipv4Source, StaticIpv4};
pub use device::NicStats;
pub use nic::{Nic, NicError};
pub use stack::{Config, Limits, ListenerStats, NetEvent, Stack, StackError};
pub use tcp::{ConnId, ConnState, ListenerId, TcpError, TcpStream};

/// smoltcp's time and address types, re-exported so callers need not depend on smoltcp themselves.
pub use smoltcp::time::{Duration, Instant};
pub use smoltcp::wire::{IpAddress, IpEndpoint, Ipv4Address, Ipv4Cidr};
