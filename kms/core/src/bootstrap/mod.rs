//! The bootstrap phase: how a KMS that starts with nothing gets its API certificate and database secret from
//! an administrator who trusts only the attested code (the zero-trust workflow).
//!
//! Modules in dependency order:
//! - [`keys`]: `sk` from the platform's measurement-bound key (or random), the P-256 key pair derived from it.
//! - [`platform`]: the seams to the machine: [`platform::Evidence`] (reports, certificate table, derived
//!   key) and [`platform::DatabaseProbe`] (does Redis answer, is the secret right). Quotes are encoded with
//!   `attest::ratls` (report ‖ certificate table), the same code the verifier parses with.
//! - [`x509`]: the self-signed RA-TLS bootstrap certificate, the CSR, validation of the posted chain.
//! - [`api`]: JSON request and answer bodies.
//! - [`state`]: the state machine, one type per state, and the [`state::ProvisionerAuthorized`] token.
//! - [`routes`]: the HTTP API (`GET /attestation`, `POST /csr`, `/certificate`, `/redis-findex`,
//!   `/client-ca`, `/start`) turning a framed request into a JSON response and the next state.
//!
//! Sans-IO: no sockets, no clock, no RNG here. Time and random bytes are arguments; the platform and the
//! database are reached through the traits in [`platform`]. The host server (`kms-server --bootstrap`) and the
//! unikernel drive the same code.
//!
//! Not done here: TLS (the driver terminates it and passes the client's verified public key), the KMS after
//! `/start` (the driver starts it from [`state::Started`]), CA signature checks on the posted chain (the
//! provisioner chose the CA; clients check the chain against their trust anchors).

pub mod api;
pub mod keys;
pub mod platform;
pub mod routes;
pub mod state;
pub mod x509;

use core::fmt;

use base64ct::{Base64, Encoding};
use zeroize::Zeroizing;

pub use routes::{Bootstrap, Response, Step};
pub use state::{Identity, ProvisionerAuthorized, ProvisionerPolicy, Started};

/// The 32-byte database secret (the root of the Redis-with-Findex key hierarchy). Zeroized on drop, never
/// printed.
#[derive(Clone)]
pub struct DbSecret(Zeroizing<[u8; 32]>);

impl DbSecret {
    /// Wraps raw bytes.
    pub fn new(bytes: [u8; 32]) -> Self {
        let mut bytes = bytes;
        let s = DbSecret(Zeroizing::new(bytes));
        zeroize::Zeroize::zeroize(&mut bytes);
        s
    }

    /// Decodes standard base64 of exactly 32 bytes (surrounding whitespace allowed).
    pub fn from_base64(text: &str) -> Result<Self, BootstrapError> {
        let mut out = Zeroizing::new([0u8; 48]);
        let decoded = Base64::decode(text.trim().as_bytes(), out.as_mut_slice())
            .map_err(|_| BootstrapError::BadRequest("db_secret is not base64"))?;
        let bytes: &[u8; 32] = decoded
            .try_into()
            .map_err(|_| BootstrapError::BadRequest("db_secret must be exactly 32 bytes"))?;
        let mut secret = Zeroizing::new([0u8; 32]);
        secret.copy_from_slice(bytes);
        Ok(DbSecret(secret))
    }

    /// The secret bytes.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for DbSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DbSecret(..)")
    }
}

/// How the answer to [`BootstrapError::LockedToAnotherProvisioner`] begins (clients look for it to warn that
/// someone else is provisioning the server).
pub const LOCKED_TO_ANOTHER_PROVISIONER: &str =
    "this server is already being provisioned by another client";

/// What the 409 answer to a second `/certificate`, `/redis-findex` or `/client-ca` contains: accepted values are
/// never replaced (the only reset is a restart of the server).
pub const ALREADY_SET: &str = "is already set for this bootstrap session";

/// Everything that can go wrong in the bootstrap API; each maps to one HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootstrapError {
    /// Unknown path (404).
    NotFound,
    /// Known path, wrong method (405).
    MethodNotAllowed,
    /// The body is not the expected JSON object (400); names the expected type.
    BadJson(&'static str),
    /// A field is invalid (400).
    BadRequest(&'static str),
    /// The body exceeds [`routes::MAX_BODY`] (413).
    BodyTooLarge,
    /// The TLS client is not the pinned provisioner (403).
    NotProvisioner,
    /// No pin and no TLS client certificate: provisioning is always bound to a client key (403).
    NoClientCertificate,
    /// No pin, and this bootstrap session is already locked to another client key (SHA-256 of its SPKI)
    /// (403): someone else is provisioning this server.
    LockedToAnotherProvisioner([u8; 32]),
    /// The request does not fit the current state (409).
    Conflict(&'static str),
    /// A quote was asked for but the platform has none (409).
    NoQuote,
    /// Certificate, CSR or chain problem (400, or 422 when the chain's key is not ours).
    X509(x509::X509Error),
    /// Key derivation failed (500).
    Key(keys::KeyError),
    /// The platform could not produce evidence (501 when unsupported, 502 otherwise).
    Evidence(platform::EvidenceError),
    /// The database check failed (400 bad URL, 422 wrong secret, 502 unreachable).
    Probe(platform::ProbeError),
}

impl BootstrapError {
    /// The HTTP status for this error.
    pub fn http_status(&self) -> u16 {
        match self {
            BootstrapError::NotFound => 404,
            BootstrapError::MethodNotAllowed => 405,
            BootstrapError::BadJson(_) | BootstrapError::BadRequest(_) => 400,
            BootstrapError::BodyTooLarge => 413,
            BootstrapError::NotProvisioner
            | BootstrapError::NoClientCertificate
            | BootstrapError::LockedToAnotherProvisioner(_) => 403,
            BootstrapError::Conflict(_) | BootstrapError::NoQuote => 409,
            BootstrapError::X509(x509::X509Error::LeafKeyMismatch) => 422,
            BootstrapError::X509(_) => 400,
            BootstrapError::Key(_) => 500,
            BootstrapError::Evidence(platform::EvidenceError::Unsupported) => 501,
            BootstrapError::Evidence(_) => 502,
            BootstrapError::Probe(platform::ProbeError::BadUrl) => 400,
            BootstrapError::Probe(platform::ProbeError::WrongSecret) => 422,
            BootstrapError::Probe(_) => 502,
        }
    }
}

impl fmt::Display for BootstrapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootstrapError::NotFound => f.write_str("not found"),
            BootstrapError::MethodNotAllowed => f.write_str("method not allowed"),
            BootstrapError::BadJson(what) => write!(f, "body is not a valid {what} JSON object"),
            BootstrapError::BadRequest(what) => f.write_str(what),
            BootstrapError::BodyTooLarge => {
                write!(f, "body larger than {} bytes", routes::MAX_BODY)
            }
            BootstrapError::NotProvisioner => f.write_str(
                "provisioning is restricted: the client certificate is not the provisioner's",
            ),
            BootstrapError::NoClientCertificate => f.write_str(
                "provisioning needs a TLS client certificate: the first client key that provisions \
                 this server is locked in for the bootstrap session",
            ),
            BootstrapError::LockedToAnotherProvisioner(hash) => write!(
                f,
                "{LOCKED_TO_ANOTHER_PROVISIONER} (key sha256:{}); only that key may continue this \
                 bootstrap session",
                base16ct::lower::encode_string(hash)
            ),
            BootstrapError::Conflict(what) => f.write_str(what),
            BootstrapError::NoQuote => {
                f.write_str("this server has no attestation platform: no quote to include")
            }
            BootstrapError::X509(e) => write!(f, "{e}"),
            BootstrapError::Key(e) => write!(f, "{e}"),
            BootstrapError::Evidence(e) => write!(f, "{e}"),
            BootstrapError::Probe(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for BootstrapError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            BootstrapError::X509(e) => Some(e),
            BootstrapError::Key(e) => Some(e),
            BootstrapError::Evidence(e) => Some(e),
            BootstrapError::Probe(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
