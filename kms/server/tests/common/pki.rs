//! A throw-away PKI for tests and the benchmark: a CA, a server certificate for 127.0.0.1 /
//! localhost, and client certificates whose subject CN is the user name, as PEM files in a
//! directory (the certificates themselves come from [`testkit::Pki`]).

use std::path::{Path, PathBuf};

pub use testkit::CertFiles;

/// A CA that can issue client certificates, with its files in `dir`.
pub struct Pki {
    dir: PathBuf,
    pki: testkit::Pki,
    /// The CA certificate (PEM).
    pub ca_cert: PathBuf,
    /// The CA key (PEM, PKCS#8), for tools that issue server certificates (`ckms bootstrap`).
    pub ca_key: PathBuf,
    /// The server's certificate and key.
    pub server: CertFiles,
}

impl Pki {
    /// A new CA (named `ca_name`) and server certificate, written into `dir`.
    pub fn new(dir: &Path, ca_name: &str) -> Pki {
        let pki = testkit::Pki::new(ca_name);
        let ca = pki.ca().write(dir, &format!("{ca_name}-ca"));
        let server = pki
            .server("kms-server", &["localhost", "127.0.0.1"])
            .write(dir, &format!("{ca_name}-server"));
        Pki {
            dir: dir.to_owned(),
            pki,
            ca_cert: ca.cert,
            ca_key: ca.key,
            server,
        }
    }

    /// Issue a client certificate with subject CN `cn` (no CN at all when `None`).
    pub fn client(&self, cn: Option<&str>) -> CertFiles {
        let stem = format!("client-{}", cn.unwrap_or("no-cn"));
        self.pki.client(cn).write(&self.dir, &stem)
    }
}
