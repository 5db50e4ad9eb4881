//! TLS material of the host server from PEM files. The TLS itself is the core's
//! ([`kms::tls`], driven through [`kms::conn::Conn`]); this module only reads files.

use std::fmt;
use std::path::{Path, PathBuf};

use kms::x509::{PemError, PrivateKey, pem_chain_der};

/// Why TLS material could not be read.
#[derive(Debug)]
pub enum TlsFileError {
    /// The file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The file holds no usable item.
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        error: PemError,
    },
}

impl fmt::Display for TlsFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsFileError::Read { path, error } => write!(f, "{}: {error}", path.display()),
            TlsFileError::Pem { path, error } => write!(f, "{}: {error}", path.display()),
        }
    }
}

impl std::error::Error for TlsFileError {}

fn read(path: &Path) -> Result<zeroize::Zeroizing<Vec<u8>>, TlsFileError> {
    std::fs::read(path)
        .map(zeroize::Zeroizing::new)
        .map_err(|error| TlsFileError::Read {
            path: path.to_owned(),
            error,
        })
}

/// All certificates of a PEM file (DER, in file order; at least one).
pub fn load_certs(path: &Path) -> Result<Vec<Vec<u8>>, TlsFileError> {
    pem_chain_der(&read(path)?).map_err(|error| TlsFileError::Pem {
        path: path.to_owned(),
        error,
    })
}

/// The first private key (PKCS#8, SEC1 or PKCS#1) of a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKey, TlsFileError> {
    PrivateKey::from_pem(&read(path)?).map_err(|error| TlsFileError::Pem {
        path: path.to_owned(),
        error,
    })
}
