//! A throw-away PKI for tests and the benchmark: a CA, a server certificate for 127.0.0.1 /
//! localhost, and client certificates whose subject CN is the user name.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// PEM files of a certificate and its key.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// Certificate (PEM).
    pub cert: PathBuf,
    /// Private key (PEM, PKCS#8).
    pub key: PathBuf,
}

/// A CA that can issue client certificates, with its files in `dir`.
pub struct Pki {
    dir: PathBuf,
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate (PEM).
    pub ca_cert: PathBuf,
    /// The CA key (PEM, PKCS#8), for tools that issue server certificates (`ckms bootstrap`).
    pub ca_key: PathBuf,
    /// The server's certificate and key.
    pub server: CertFiles,
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

impl Pki {
    /// A new CA (named `ca_name`) and server certificate, written into `dir`.
    pub fn new(dir: &Path, ca_name: &str) -> Pki {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.distinguished_name = DistinguishedName::new();
        ca.distinguished_name.push(DnType::CommonName, ca_name);
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca.self_signed(&ca_key).expect("CA cert");
        let ca_path = dir.join(format!("{ca_name}-ca.pem"));
        write(&ca_path, &ca_cert.pem());
        let ca_key_path = dir.join(format!("{ca_name}-ca.key"));
        write(&ca_key_path, &ca_key.serialize_pem());
        let issuer = Issuer::new(ca, ca_key);

        let mut server = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        server
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        server.distinguished_name = DistinguishedName::new();
        server
            .distinguished_name
            .push(DnType::CommonName, "kms-server");
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_key = KeyPair::generate().expect("server key");
        let server_cert = server.signed_by(&server_key, &issuer).expect("server cert");
        let files = CertFiles {
            cert: dir.join(format!("{ca_name}-server.pem")),
            key: dir.join(format!("{ca_name}-server.key")),
        };
        write(&files.cert, &server_cert.pem());
        write(&files.key, &server_key.serialize_pem());
        Pki {
            dir: dir.to_owned(),
            issuer,
            ca_cert: ca_path,
            ca_key: ca_key_path,
            server: files,
        }
    }

    /// Issue a client certificate with subject CN `cn` (no CN at all when `None`).
    pub fn client(&self, cn: Option<&str>) -> CertFiles {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name = DistinguishedName::new();
        if let Some(cn) = cn {
            params.distinguished_name.push(DnType::CommonName, cn);
        } else {
            params
                .distinguished_name
                .push(DnType::OrganizationName, "no common name");
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().expect("client key");
        let cert = params.signed_by(&key, &self.issuer).expect("client cert");
        let stem = cn.unwrap_or("no-cn");
        let files = CertFiles {
            cert: self.dir.join(format!("client-{stem}.pem")),
            key: self.dir.join(format!("client-{stem}.key")),
        };
        write(&files.cert, &cert.pem());
        write(&files.key, &key.serialize_pem());
        files
    }
}
