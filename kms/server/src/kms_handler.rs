//! The KMS as a [`Handler`]: each connection gets a [`kms::server::Connection`], the system
//! clock and the operating system's random generator.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use kms::Kms;
use kms::http::Limits;
use kms::server::{Action, Connection};

use crate::serve::{Handler, Session};
use crate::store::HostStore;

/// The store type the host server runs with (any backend chosen at run time).
pub type DynKms = Kms<Arc<HostStore>>;

/// Shares one [`Kms`] between all connections.
pub struct KmsHandler {
    kms: Arc<DynKms>,
    limits: Limits,
}

impl KmsHandler {
    /// Serve `kms` with the given per-request limits.
    pub fn new(kms: Arc<DynKms>, limits: Limits) -> Self {
        KmsHandler { kms, limits }
    }
}

impl Handler for KmsHandler {
    type Session = KmsSession;
    fn session(&self) -> KmsSession {
        KmsSession {
            kms: self.kms.clone(),
            conn: Connection::new(self.limits),
            rng: OsRandom(ring::rand::SystemRandom::new()),
        }
    }
}

/// One connection's state.
pub struct KmsSession {
    kms: Arc<DynKms>,
    conn: Connection,
    rng: OsRandom,
}

impl Session for KmsSession {
    fn on_bytes(&mut self, user: Option<&str>, input: &[u8], out: &mut Vec<u8>) -> Action {
        let mut env = kms::Env {
            now: unix_now(),
            rng: &mut self.rng,
        };
        self.conn.on_bytes(&self.kms, &mut env, user, input, out)
    }
}

/// The operating system's CSPRNG (getrandom(2) through ring).
pub struct OsRandom(pub ring::rand::SystemRandom);

impl kms::crypto::Random for OsRandom {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), kms::crypto::RngError> {
        ring::rand::SecureRandom::fill(&self.0, buf).map_err(|_| kms::crypto::RngError)
    }
}

/// Seconds since the Unix epoch from the host clock (0 if the clock is before 1970).
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
