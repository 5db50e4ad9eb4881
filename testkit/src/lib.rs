//! Dev-only helpers shared by the workspace's integration tests: a real `redis-server`
//! ([`RedisServer`]), deterministic randomness ([`TestRng`]), a throw-away PKI ([`Pki`]), and child
//! processes killed by PID on drop ([`ChildGuard`], [`SnpEmu`], [`wait_line`]), and a PyPI tool in a Python
//! venv ([`pip_venv`]), the PyKMIP client run against a KMIP port ([`pykmip`]), and a `kms-server`
//! with the in-memory store ([`MemoryKmsServer`]).
//!
//! Used only as a dev-dependency: production crates never depend on this crate. Everything here
//! panics with a clear message instead of returning errors, which is what a test wants.

mod kms_server;
mod pki;
mod process;
pub mod pykmip;
mod redis;
mod rng;

pub use kms_server::MemoryKmsServer;
pub use pki::{Cert, CertFiles, Pki};
pub use process::{ChildGuard, SnpEmu, drain_lines, free_port, pip_venv, wait_line, workspace_bin};
pub use redis::{RedisBuilder, RedisServer};
pub use rng::TestRng;
