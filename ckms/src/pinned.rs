//! TLS server-certificate verifiers for attested servers: never "accept any certificate".
//!
//! - [`CaptureVerifier`] fetches a server's certificate *without trusting it*: it records the chain and then
//!   fails the handshake, so not a byte of application data is sent on that connection. The caller attests
//!   the captured certificate (its quote binds the key) before pinning it.
//! - [`PinnedKeyVerifier`] accepts exactly one public key: the server's leaf SubjectPublicKeyInfo must be
//!   byte-equal to the attested one. Name, validity and issuer are not what proves the server here (the quote
//!   does), but the handshake signature is still checked with that key (RFC 8446 §4.4.3), so only the holder
//!   of the attested private key completes the handshake.
//!
//! A certificate seen in `verify_server_cert` is not yet proven: the server's CertificateVerify comes after
//! it. So nothing here records a leaf for later use; `ckms verify` takes the API leaf from a *completed*
//! handshake ([`crate::http::HttpClient::handshake`]).

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

/// The reason string with which [`CaptureVerifier`] ends a handshake.
pub const CAPTURED: &str = "server certificate captured for attestation (connection not used)";

/// The handshake-signature half of `ServerCertVerifier`, checked with `self.provider`'s algorithms:
/// every verifier here still verifies the server's proof of possession of the certified key.
macro_rules! provider_signature_checks {
    () => {
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
    };
}

/// DER SubjectPublicKeyInfo of a certificate (the core's [`kms::x509::spki_der`]).
pub fn spki_of(cert_der: &[u8]) -> Option<Vec<u8>> {
    kms::x509::spki_der(cert_der)
}

/// Records the server's certificate chain and refuses the connection.
#[derive(Debug)]
pub struct CaptureVerifier {
    provider: Arc<CryptoProvider>,
    captured: Mutex<Option<Vec<CertificateDer<'static>>>>,
}

impl CaptureVerifier {
    /// A fresh verifier.
    pub fn new(provider: Arc<CryptoProvider>) -> Self {
        CaptureVerifier {
            provider,
            captured: Mutex::new(None),
        }
    }

    /// The chain seen in the last handshake (leaf first).
    pub fn take(&self) -> Option<Vec<CertificateDer<'static>>> {
        self.captured.lock().ok()?.take()
    }
}

impl ServerCertVerifier for CaptureVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut chain = vec![end_entity.clone().into_owned()];
        chain.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        if let Ok(mut slot) = self.captured.lock() {
            *slot = Some(chain);
        }
        Err(rustls::Error::General(CAPTURED.into()))
    }

    provider_signature_checks!();
}

/// Accepts only a server whose leaf certificate carries exactly this SubjectPublicKeyInfo.
#[derive(Debug)]
pub struct PinnedKeyVerifier {
    provider: Arc<CryptoProvider>,
    spki_der: Vec<u8>,
}

impl PinnedKeyVerifier {
    /// Pins `spki_der` (DER SubjectPublicKeyInfo, e.g. from an attested certificate).
    pub fn new(provider: Arc<CryptoProvider>, spki_der: Vec<u8>) -> Self {
        PinnedKeyVerifier { provider, spki_der }
    }
}

impl ServerCertVerifier for PinnedKeyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match spki_of(end_entity.as_ref()) {
            Some(spki) if spki == self.spki_der => Ok(ServerCertVerified::assertion()),
            Some(_) => Err(rustls::Error::General(
                "server public key is not the attested key (pinned-key check failed)".into(),
            )),
            None => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::BadEncoding,
            )),
        }
    }

    provider_signature_checks!();
}
