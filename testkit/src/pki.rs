//! A throw-away PKI for tests: an rcgen CA (P-256) issuing server and client certificates.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData,
};
use zeroize::Zeroizing;

/// A certificate and its private key, DER and PEM.
pub struct Cert {
    /// The certificate (DER).
    pub der: Vec<u8>,
    /// The certificate (PEM).
    pub pem: String,
    /// The private key (PKCS#8 DER).
    pub key_der: Zeroizing<Vec<u8>>,
    /// The private key (PKCS#8 PEM).
    pub key_pem: Zeroizing<String>,
    /// The certificate's SubjectPublicKeyInfo (DER).
    pub spki_der: Vec<u8>,
}

/// Paths of a certificate and its key written by [`Cert::write`].
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// Certificate (PEM).
    pub cert: PathBuf,
    /// Private key (PEM, PKCS#8).
    pub key: PathBuf,
}

impl Cert {
    fn new(cert: &rcgen::Certificate, key: &KeyPair) -> Cert {
        Cert {
            der: cert.der().to_vec(),
            pem: cert.pem(),
            key_der: Zeroizing::new(key.serialize_der()),
            key_pem: Zeroizing::new(key.serialize_pem()),
            spki_der: key.subject_public_key_info(),
        }
    }

    /// Write `<stem>.pem` (certificate) and `<stem>.key` (key) into `dir`.
    pub fn write(&self, dir: &Path, stem: &str) -> CertFiles {
        let files = CertFiles {
            cert: dir.join(format!("{stem}.pem")),
            key: dir.join(format!("{stem}.key")),
        };
        write(&files.cert, self.pem.as_bytes());
        write(&files.key, self.key_pem.as_bytes());
        files
    }
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn key() -> KeyPair {
    KeyPair::generate().unwrap_or_else(|e| panic!("generate a P-256 key: {e}"))
}

fn params(names: &[&str]) -> CertificateParams {
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let mut p = CertificateParams::new(names).unwrap_or_else(|e| panic!("certificate params: {e}"));
    p.distinguished_name = DistinguishedName::new();
    p
}

/// A CA (subject `CN=<name>`, P-256) that issues certificates.
pub struct Pki {
    issuer: Issuer<'static, KeyPair>,
    ca: Cert,
}

impl Pki {
    /// A new self-signed CA with subject `CN=<ca_cn>`.
    pub fn new(ca_cn: &str) -> Pki {
        let ca_key = key();
        let mut ca = params(&[]);
        ca.distinguished_name.push(DnType::CommonName, ca_cn);
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = ca
            .self_signed(&ca_key)
            .unwrap_or_else(|e| panic!("self-sign the CA: {e}"));
        Pki {
            ca: Cert::new(&cert, &ca_key),
            issuer: Issuer::new(ca, ca_key),
        }
    }

    /// The CA certificate and key.
    pub fn ca(&self) -> &Cert {
        &self.ca
    }

    /// The CA as an rcgen issuer, for certificates the helpers here do not make (e.g. from a CSR).
    pub fn issuer(&self) -> &Issuer<'static, KeyPair> {
        &self.issuer
    }

    /// A server certificate `CN=<cn>` for `names` (DNS names or IP addresses), EKU serverAuth.
    pub fn server(&self, cn: &str, names: &[&str]) -> Cert {
        let mut p = params(names);
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(&p)
    }

    /// The parameters of a client certificate: subject `CN=<cn>` (an organization name only when
    /// `None`), EKU clientAuth. Adjust them and [`issue`](Self::issue) for unusual certificates.
    pub fn client_params(cn: Option<&str>) -> CertificateParams {
        let mut p = params(&[]);
        match cn {
            Some(cn) => p.distinguished_name.push(DnType::CommonName, cn),
            None => p
                .distinguished_name
                .push(DnType::OrganizationName, "no common name"),
        }
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p
    }

    /// A client certificate made from [`client_params`](Self::client_params).
    pub fn client(&self, cn: Option<&str>) -> Cert {
        self.issue(&Self::client_params(cn))
    }

    /// A certificate with `params` for a new P-256 key, signed by the CA.
    pub fn issue(&self, params: &CertificateParams) -> Cert {
        let key = key();
        let cert = params
            .signed_by(&key, &self.issuer)
            .unwrap_or_else(|e| panic!("sign a certificate: {e}"));
        Cert::new(&cert, &key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_and_writes() {
        let pki = Pki::new("t");
        let server = pki.server("kms.test", &["kms.test", "127.0.0.1"]);
        let client = pki.client(None);
        assert_ne!(server.der, client.der);
        assert!(pki.ca().pem.starts_with("-----BEGIN CERTIFICATE-----"));
        let dir = tempfile::tempdir().expect("temp dir");
        let files = client.write(dir.path(), "client");
        assert_eq!(files.key, dir.path().join("client.key"));
        let key = std::fs::read_to_string(&files.key).expect("read key");
        assert!(key.contains("PRIVATE KEY"));
    }
}
