//! The error every command returns; `main` prints it on stderr and exits non-zero.

use std::fmt;
use std::path::PathBuf;

use crate::config::ConfigError;
use crate::http::HttpError;
use crate::verify::AttestationFailure;

/// Why a command failed.
#[derive(Debug)]
pub enum CliError {
    /// Configuration (URL, certificates, config file).
    Config(ConfigError),
    /// Network or TLS.
    Http(HttpError),
    /// The server answered with an error status; `message` is its body.
    Server {
        /// HTTP status.
        status: u16,
        /// The server's message.
        message: String,
    },
    /// The server's answer is not what the request calls for.
    Response(String),
    /// A local file could not be read or written.
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Invalid arguments that clap cannot check.
    Usage(String),
    /// The operation ran, and its answer is negative (e.g. a signature that does not verify).
    Negative(String),
    /// A server's attestation evidence failed a check (`attest::verify::ratls`).
    Attestation(Box<AttestationFailure>),
    /// The TD's CC event log does not parse, does not replay to its quote's RTMRs, or records
    /// another kernel or command line than the manifest's.
    EventLog(crate::tdx::EventLogFailure),
    /// The VCEK or AMD chain for a quote without a certificate table could not be had from the KDS.
    Kds(crate::kds::KdsError),
    /// A key the server presented for signing or pinning is not the attested one (`what` names it): the
    /// SubjectPublicKeyInfo, algorithm and curve OIDs included, differs from the attested certificate's.
    NotAttestedKey {
        /// Which key (e.g. "the CSR's key").
        what: &'static str,
    },
    /// `ckms bootstrap start` found the server being (or already) provisioned by another client: someone
    /// else controls what this server will trust. The message says what the server answered.
    ProvisionedByAnother(String),
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Config(e) => write!(f, "{e}"),
            CliError::Http(e) => write!(f, "cannot talk to the KMS: {e}"),
            CliError::Server { status, message } => {
                write!(f, "the KMS refused the request (HTTP {status}): {message}")
            }
            CliError::Response(m) => write!(f, "unexpected answer from the KMS: {m}"),
            CliError::File { path, source } => write!(f, "{}: {source}", path.display()),
            CliError::Usage(m) => write!(f, "{m}"),
            CliError::Negative(m) => write!(f, "{m}"),
            CliError::Attestation(e) => write!(f, "attestation failed: {e}"),
            CliError::Kds(e) => write!(f, "VCEK from AMD KDS: {e}"),
            CliError::EventLog(e) => write!(f, "the TD's CC event log is refused: {e}"),
            CliError::NotAttestedKey { what } => write!(
                f,
                "{what} is not the attested key (its SubjectPublicKeyInfo, algorithm and curve \
                 included, differs from the one the RA-TLS quote binds): refusing to certify it"
            ),
            CliError::ProvisionedByAnother(m) => write!(
                f,
                "!!! WARNING: SOMEONE ELSE IS PROVISIONING THIS SERVER !!!\n\
                 {m}\n\
                 Another client reached the bootstrap API first, so it chooses the database, the \
                 API certificate and the users of this KMS. DO NOT TRUST THIS SERVER and send it \
                 nothing. Find out who provisioned it; restart it and provision it again \
                 (preferably with a pinned provisioner: --provisioner-spki-sha256 / \
                 ckms.provisioner=), then run ckms bootstrap start again."
            ),
        }
    }
}

impl std::error::Error for CliError {}

impl From<ConfigError> for CliError {
    fn from(e: ConfigError) -> Self {
        CliError::Config(e)
    }
}

impl From<crate::kds::KdsError> for CliError {
    fn from(e: crate::kds::KdsError) -> Self {
        CliError::Kds(e)
    }
}

impl From<HttpError> for CliError {
    fn from(e: HttpError) -> Self {
        CliError::Http(e)
    }
}

/// Read a whole file.
pub fn read_file(path: &std::path::Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|source| CliError::File {
        path: path.to_owned(),
        source,
    })
}

/// Write a whole file.
pub fn write_file(path: &std::path::Path, data: &[u8]) -> Result<(), CliError> {
    std::fs::write(path, data).map_err(|source| CliError::File {
        path: path.to_owned(),
        source,
    })
}
