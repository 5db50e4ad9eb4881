//! TLS configuration (rustls 0.23, ring provider) from PEM files, and client identity.
//!
//! The only module of this crate that configures rustls. Identity is the subject common name
//! (CN, OID 2.5.4.3) of the client certificate, which rustls has already verified against the
//! configured client CA when [`server_config`] was given one.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use der::Decode;
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why a TLS configuration could not be built.
#[derive(Debug)]
pub enum TlsConfigError {
    /// A PEM file could not be read or holds no usable item.
    Pem {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// rustls refused the configuration (key does not match certificate, bad CA, ...).
    Rustls(String),
}

impl fmt::Display for TlsConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsConfigError::Pem { path, reason } => write!(f, "{}: {reason}", path.display()),
            TlsConfigError::Rustls(m) => write!(f, "TLS configuration rejected: {m}"),
        }
    }
}

impl std::error::Error for TlsConfigError {}

/// The crypto provider used everywhere in the host server and its tests (ring).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Read all certificates of a PEM file (at least one).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let pem_err = |reason: String| TlsConfigError::Pem {
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(e.to_string()))?;
    if certs.is_empty() {
        return Err(pem_err("no CERTIFICATE in file".into()));
    }
    Ok(certs)
}

/// Read the first private key (PKCS#8, SEC1 or PKCS#1) of a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsConfigError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsConfigError::Pem {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// Build the server configuration: certificate chain + key, and, when `client_ca` is given,
/// mandatory client authentication against that CA (mTLS). Without it no client certificate is
/// requested (the caller then needs another identity policy, e.g. `--insecure-no-auth`).
pub fn server_config(
    cert_chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_ca: Option<Vec<CertificateDer<'static>>>,
) -> Result<Arc<rustls::ServerConfig>, TlsConfigError> {
    let provider = provider();
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsConfigError::Rustls(e.to_string()))?;
    let builder = match client_ca {
        Some(cas) => {
            let mut roots = RootCertStore::empty();
            for ca in cas {
                roots
                    .add(ca)
                    .map_err(|e| TlsConfigError::Rustls(e.to_string()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsConfigError::Rustls(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(cert_chain, key)
        .map_err(|e| TlsConfigError::Rustls(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The subject common name of a (verified) client certificate, if it has exactly one usable CN.
///
/// The CN is read from the last CN attribute of the subject RDN sequence (RFC 5280 §4.1.2.6;
/// X.520 commonName). Only UTF8String, PrintableString and IA5String values are accepted.
pub fn subject_common_name(cert: &CertificateDer<'_>) -> Option<String> {
    const CN: der::asn1::ObjectIdentifier = der::asn1::ObjectIdentifier::new_unwrap("2.5.4.3");
    let cert = x509_cert::Certificate::from_der(cert.as_ref()).ok()?;
    let mut found = None;
    for rdn in cert.tbs_certificate().subject().as_ref().iter() {
        for atv in rdn.as_ref().iter() {
            if atv.oid != CN {
                continue;
            }
            let value = &atv.value;
            let text = value
                .decode_as::<der::asn1::Utf8StringRef<'_>>()
                .map(|s| s.as_str().to_owned())
                .or_else(|_| {
                    value
                        .decode_as::<der::asn1::PrintableStringRef<'_>>()
                        .map(|s| s.as_str().to_owned())
                })
                .or_else(|_| {
                    value
                        .decode_as::<der::asn1::Ia5StringRef<'_>>()
                        .map(|s| s.as_str().to_owned())
                })
                .ok()?;
            found = Some(text);
        }
    }
    found.filter(|cn| !cn.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};

    fn cert_with(dn: &[(DnType, &str)]) -> CertificateDer<'static> {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = DistinguishedName::new();
        for (t, v) in dn {
            params.distinguished_name.push(t.clone(), *v);
        }
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn common_name_is_the_identity() {
        let c = cert_with(&[
            (DnType::OrganizationName, "Org"),
            (DnType::CommonName, "alice"),
        ]);
        assert_eq!(subject_common_name(&c).as_deref(), Some("alice"));
        let c = cert_with(&[(DnType::OrganizationName, "Org")]);
        assert_eq!(subject_common_name(&c), None);
        let c = cert_with(&[(DnType::CommonName, "")]);
        assert_eq!(subject_common_name(&c), None);
        assert_eq!(
            subject_common_name(&CertificateDer::from(vec![0x30, 0x00])),
            None
        );
    }
}
