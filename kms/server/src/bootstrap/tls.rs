//! TLS of the bootstrap and RA-TLS ports: the server configuration with the bootstrap certificate, and the
//! client-certificate verifier used when a provisioner is pinned.

use std::sync::Arc;

use der::{Decode, Encode};
use kms::bootstrap::Identity;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use super::BootstrapStartError;
use crate::tls::provider;

/// Client-certificate verifier of the bootstrap port when a provisioner is pinned: it asks for a certificate,
/// does not require one (so `/attestation` stays public), accepts any well-formed certificate, and checks
/// the handshake signature with its key (proof of possession). The pin itself is checked by the core
/// ([`ProvisionerPolicy::authorize`]) on the SubjectPublicKeyInfo this handshake proved.
#[derive(Debug)]
struct PossessionOnly {
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ClientCertVerifier for PossessionOnly {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        false
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        x509_cert::Certificate::from_der(end_entity.as_ref()).map_err(|_| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
        })?;
        Ok(ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

pub(super) fn key_der(identity: &Identity) -> Result<PrivateKeyDer<'static>, BootstrapStartError> {
    let pkcs8 = identity
        .key()
        .to_pkcs8_der()
        .map_err(|e| BootstrapStartError::Config(e.to_string()))?;
    Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        pkcs8.to_vec(),
    )))
}

pub(super) fn bootstrap_tls(
    identity: &Identity,
    pinned: bool,
) -> Result<Arc<rustls::ServerConfig>, BootstrapStartError> {
    let provider = provider();
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| BootstrapStartError::Tls(e.to_string()))?;
    let builder = if pinned {
        builder.with_client_cert_verifier(Arc::new(PossessionOnly { provider }))
    } else {
        builder.with_no_client_auth()
    };
    let cert = CertificateDer::from(identity.certificate_der().to_vec());
    let mut config = builder
        .with_single_cert(vec![cert], key_der(identity)?)
        .map_err(|e| BootstrapStartError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// SubjectPublicKeyInfo DER of the client's (handshake-verified) certificate.
pub(super) fn client_spki(conn: &rustls::ServerConnection) -> Option<Vec<u8>> {
    let leaf = conn.peer_certificates()?.first()?;
    let cert = x509_cert::Certificate::from_der(leaf.as_ref()).ok()?;
    cert.tbs_certificate()
        .subject_public_key_info()
        .to_der()
        .ok()
}
