//! X.509 facts the servers need, in one place: the identity of a verified client certificate,
//! SubjectPublicKeyInfo extraction, PEM certificate chains and PEM private keys.
//!
//! Parsing is `x509-cert`/`der`; nothing here verifies signatures (rustls does, in [`crate::tls`],
//! before any of these functions sees a peer certificate).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use der::pem::LineEnding;
use der::{Decode, DecodePem, Encode, EncodePem};
use x509_cert::Certificate;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Most certificates accepted in one PEM chain.
pub const MAX_CHAIN_CERTS: usize = 8;

/// Why PEM or DER input was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PemError {
    /// No `CERTIFICATE` (or private key) block in the input.
    Empty,
    /// More than [`MAX_CHAIN_CERTS`] certificates.
    TooMany,
    /// A block does not decode as PEM or its DER does not parse.
    Malformed,
    /// A private key block with a label other than `PRIVATE KEY`, `EC PRIVATE KEY`, `RSA PRIVATE KEY`.
    UnsupportedKey,
}

impl fmt::Display for PemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PemError::Empty => "no PEM block found",
            PemError::TooMany => "more than 8 certificates in the chain",
            PemError::Malformed => "malformed PEM or DER",
            PemError::UnsupportedKey => {
                "unsupported private key (expected PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY)"
            }
        })
    }
}

impl core::error::Error for PemError {}

/// The certificates of a PEM bundle, in order (at least one, at most [`MAX_CHAIN_CERTS`]).
pub fn pem_chain(pem: &[u8]) -> Result<Vec<Certificate>, PemError> {
    let certs = Certificate::load_pem_chain(pem).map_err(|_| PemError::Malformed)?;
    match certs.len() {
        0 => Err(PemError::Empty),
        n if n > MAX_CHAIN_CERTS => Err(PemError::TooMany),
        _ => Ok(certs),
    }
}

/// [`pem_chain`] as DER, leaf first.
pub fn pem_chain_der(pem: &[u8]) -> Result<Vec<Vec<u8>>, PemError> {
    pem_chain(pem)?
        .iter()
        .map(|c| c.to_der().map_err(|_| PemError::Malformed))
        .collect()
}

/// PEM of one DER certificate.
pub fn cert_pem(der: &[u8]) -> Result<String, PemError> {
    let cert = Certificate::from_der(der).map_err(|_| PemError::Malformed)?;
    cert.to_pem(LineEnding::LF).map_err(|_| PemError::Malformed)
}

/// DER SubjectPublicKeyInfo of a DER certificate.
pub fn spki_der(cert_der: &[u8]) -> Option<Vec<u8>> {
    let cert = Certificate::from_der(cert_der).ok()?;
    cert.tbs_certificate()
        .subject_public_key_info()
        .to_der()
        .ok()
}

/// The canonical DER of a public key (ECDSA P-256/P-384, Ed25519 or RSA SubjectPublicKeyInfo),
/// as the KMS stores public keys; `None` for other keys or garbage.
pub fn canonical_spki(spki: &[u8]) -> Option<Vec<u8>> {
    if let Ok((_, c)) = crate::crypto::asym::public_from_spki(None, spki) {
        return Some(c);
    }
    crate::crypto::rsa::import_public(spki, false)
        .ok()
        .map(|(_, c)| c)
}

/// Lower-case hex SHA-256 of [`canonical_spki`]: the store keyword (`spki=`) that finds the
/// public key and the certificates of one key.
pub fn spki_fingerprint(spki: &[u8]) -> Option<String> {
    use sha2::Digest;
    let c = canonical_spki(spki)?;
    let h = sha2::Sha256::digest(&c);
    let mut s = String::with_capacity(64);
    for b in h.iter() {
        s.push_str(&alloc::format!("{b:02x}"));
    }
    Some(s)
}

/// The user identity of a verified client certificate: the subject common name (OID 2.5.4.3,
/// RFC 5280 §4.1.2.6), when it is a non-empty UTF8String, PrintableString or IA5String. A subject
/// with several CN attributes (`CN=bob,CN=alice`) has no identity: which one is meant is ambiguous,
/// so none is used (the KMS answers 401). The identity is bound to the issuing CA because the
/// bootstrap API accepts exactly one client CA (see docs/security.md).
pub fn subject_common_name(cert_der: &[u8]) -> Option<String> {
    const CN: der::asn1::ObjectIdentifier = der::asn1::ObjectIdentifier::new_unwrap("2.5.4.3");
    let cert = Certificate::from_der(cert_der).ok()?;
    let mut found = None;
    for rdn in cert.tbs_certificate().subject().as_ref().iter() {
        for atv in rdn.as_ref().iter() {
            if atv.oid != CN {
                continue;
            }
            let v = &atv.value;
            let text = v
                .decode_as::<der::asn1::Utf8StringRef<'_>>()
                .map(|s| String::from(s.as_str()))
                .or_else(|_| {
                    v.decode_as::<der::asn1::PrintableStringRef<'_>>()
                        .map(|s| String::from(s.as_str()))
                })
                .or_else(|_| {
                    v.decode_as::<der::asn1::Ia5StringRef<'_>>()
                        .map(|s| String::from(s.as_str()))
                })
                .ok()?;
            if found.is_some() {
                return None;
            }
            found = Some(text);
        }
    }
    found.filter(|cn| !cn.is_empty())
}

/// A private key as DER, with its encoding. Zeroized on drop.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub enum PrivateKey {
    /// PKCS#8 `PrivateKeyInfo` (`PRIVATE KEY`).
    Pkcs8(Vec<u8>),
    /// SEC1 `ECPrivateKey` (`EC PRIVATE KEY`).
    Sec1(Vec<u8>),
    /// PKCS#1 `RSAPrivateKey` (`RSA PRIVATE KEY`).
    Pkcs1(Vec<u8>),
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PrivateKey::Pkcs8(_) => "PrivateKey::Pkcs8(..)",
            PrivateKey::Sec1(_) => "PrivateKey::Sec1(..)",
            PrivateKey::Pkcs1(_) => "PrivateKey::Pkcs1(..)",
        })
    }
}

impl PrivateKey {
    /// The first private key block of a PEM file (other blocks, e.g. certificates, are skipped).
    pub fn from_pem(pem: &[u8]) -> Result<Self, PemError> {
        let text = core::str::from_utf8(pem).map_err(|_| PemError::Malformed)?;
        let mut rest = text;
        while let Some(start) = rest.find("-----BEGIN ") {
            let block = rest.get(start..).ok_or(PemError::Malformed)?;
            let label_end = block
                .get(11..)
                .and_then(|l| l.find("-----"))
                .ok_or(PemError::Malformed)?;
            let label = block.get(11..11 + label_end).ok_or(PemError::Malformed)?;
            let end_marker = alloc::format!("-----END {label}-----");
            let end = block.find(&end_marker).ok_or(PemError::Malformed)?;
            let whole = block
                .get(..end + end_marker.len())
                .ok_or(PemError::Malformed)?;
            rest = block.get(end + end_marker.len()..).unwrap_or("");
            let wrap: fn(Vec<u8>) -> PrivateKey = match label {
                "PRIVATE KEY" => PrivateKey::Pkcs8,
                "EC PRIVATE KEY" => PrivateKey::Sec1,
                "RSA PRIVATE KEY" => PrivateKey::Pkcs1,
                "ENCRYPTED PRIVATE KEY" => return Err(PemError::UnsupportedKey),
                _ => continue,
            };
            let (_, der) =
                der::pem::decode_vec(whole.as_bytes()).map_err(|_| PemError::Malformed)?;
            return Ok(wrap(der));
        }
        Err(PemError::Empty)
    }

    /// The DER bytes.
    pub fn der(&self) -> &[u8] {
        match self {
            PrivateKey::Pkcs8(d) | PrivateKey::Sec1(d) | PrivateKey::Pkcs1(d) => d,
        }
    }
}

/// Parses a DER certificate (for callers that need the typed view).
pub fn parse(der: &[u8]) -> Result<Certificate, PemError> {
    Certificate::from_der(der).map_err(|_| PemError::Malformed)
}

/// Parses one PEM certificate.
pub fn parse_pem(pem: &[u8]) -> Result<Certificate, PemError> {
    Certificate::from_pem(pem).map_err(|_| PemError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(dn: &[(rcgen::DnType, &str)]) -> (Vec<u8>, String, String) {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        for (t, v) in dn {
            params.distinguished_name.push(t.clone(), *v);
        }
        let key = rcgen::KeyPair::generate().unwrap();
        let c = params.self_signed(&key).unwrap();
        (c.der().to_vec(), c.pem(), key.serialize_pem())
    }

    #[test]
    fn common_name_is_the_identity() {
        let (c, _, _) = cert(&[
            (rcgen::DnType::OrganizationName, "Org"),
            (rcgen::DnType::CommonName, "alice"),
        ]);
        assert_eq!(subject_common_name(&c).as_deref(), Some("alice"));
        let (c, _, _) = cert(&[(rcgen::DnType::OrganizationName, "Org")]);
        assert_eq!(subject_common_name(&c), None);
        let (c, _, _) = cert(&[(rcgen::DnType::CommonName, "")]);
        assert_eq!(subject_common_name(&c), None);
        assert_eq!(subject_common_name(&[0x30, 0x00]), None);
    }

    /// Issue 12 #5: `CN=bob,CN=alice` mapped to alice; a subject with several CNs has no identity.
    #[test]
    fn several_common_names_are_no_identity() {
        use core::str::FromStr;
        use x509_cert::builder::{Builder, CertificateBuilder, profile::BuilderProfile};
        struct Profile(x509_cert::name::Name);
        impl BuilderProfile for Profile {
            fn get_issuer(&self, _: &x509_cert::name::Name) -> x509_cert::name::Name {
                self.0.clone()
            }
            fn get_subject(&self) -> x509_cert::name::Name {
                self.0.clone()
            }
            fn build_extensions(
                &self,
                _: spki::SubjectPublicKeyInfoRef<'_>,
                _: spki::SubjectPublicKeyInfoRef<'_>,
                _: &x509_cert::TbsCertificate,
            ) -> x509_cert::builder::Result<alloc::vec::Vec<x509_cert::ext::Extension>>
            {
                Ok(alloc::vec::Vec::new())
            }
        }
        let key = p256::ecdsa::SigningKey::from_slice(&[0x31; 32]).unwrap();
        let t = |s| {
            x509_cert::time::Time::from(
                der::DateTime::from_unix_duration(core::time::Duration::from_secs(s)).unwrap(),
            )
        };
        for (dn, want) in [
            ("CN=bob,CN=alice", None),
            ("CN=alice+CN=bob", None),
            ("O=Org,CN=alice", Some("alice")),
        ] {
            let cert = CertificateBuilder::new(
                Profile(x509_cert::name::Name::from_str(dn).unwrap()),
                x509_cert::serial_number::SerialNumber::new(&[1]).unwrap(),
                x509_cert::time::Validity::new(t(1_700_000_000), t(1_900_000_000)),
                spki::SubjectPublicKeyInfoOwned::from_key(key.verifying_key()).unwrap(),
            )
            .unwrap()
            .build::<_, p256::ecdsa::DerSignature>(&key)
            .unwrap();
            let der = cert.to_der().unwrap();
            assert_eq!(subject_common_name(&der).as_deref(), want, "{dn}");
        }
    }

    #[test]
    fn pem_chains_and_keys() {
        let (a, a_pem, key_pem) = cert(&[(rcgen::DnType::CommonName, "a")]);
        let (b, b_pem, _) = cert(&[(rcgen::DnType::CommonName, "b")]);
        let both = alloc::format!("{a_pem}\n{b_pem}");
        assert_eq!(
            pem_chain_der(both.as_bytes()).unwrap(),
            alloc::vec![a.clone(), b]
        );
        assert_eq!(pem_chain_der(b""), Err(PemError::Empty));
        assert_eq!(
            pem_chain_der(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
            Err(PemError::Malformed)
        );
        let nine = a_pem.repeat(9);
        assert_eq!(pem_chain_der(nine.as_bytes()), Err(PemError::TooMany));
        assert_eq!(cert_pem(&a).unwrap().trim(), a_pem.trim());
        assert!(spki_der(&a).is_some_and(|s| s.starts_with(&[0x30])));

        let with_cert_first = alloc::format!("{a_pem}{key_pem}");
        let key = PrivateKey::from_pem(with_cert_first.as_bytes()).unwrap();
        assert!(matches!(key, PrivateKey::Pkcs8(_)));
        assert_eq!(PrivateKey::from_pem(a_pem.as_bytes()), Err(PemError::Empty));
        assert_eq!(
            PrivateKey::from_pem(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAA==\n-----END ENCRYPTED PRIVATE KEY-----\n"),
            Err(PemError::UnsupportedKey)
        );
        assert_eq!(format!("{key:?}"), "PrivateKey::Pkcs8(..)");
    }

    use alloc::format;
}
