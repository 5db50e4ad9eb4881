//! JSON bodies of the bootstrap API (requests in, answers out). Every error answer is `{"error": "..."}`.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use serde::{Deserialize, Serialize};

/// `POST /csr`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CsrRequest {
    /// RFC 4514 subject, e.g. `CN=kms.example.com,O=Example`.
    pub subject: String,
    /// DNS subjectAltNames.
    #[serde(default)]
    pub dns_names: Vec<String>,
    /// IP subjectAltNames.
    #[serde(default)]
    pub ip_addresses: Vec<String>,
    /// Ask for the RA-TLS quote extension in the CSR.
    #[serde(default)]
    pub include_quote: bool,
}

/// Answer to `POST /csr`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CsrResponse {
    /// PKCS#10 request, PEM.
    pub csr_pem: String,
}

/// `POST /certificate`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CertificateRequest {
    /// The API certificate then its issuers, PEM.
    pub chain_pem: String,
}

/// Answer to `POST /certificate`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CertificateResponse {
    /// Always `"certificate accepted"`.
    pub status: String,
    /// Whether the API certificate carries a quote (if not, the RA-TLS port stays open after `/start`).
    pub api_certificate_has_quote: bool,
    /// Number of certificates in the accepted chain.
    pub chain_length: usize,
}

/// `POST /redis-findex`. The URL may carry a password and the secret is the database key: no `Debug` of
/// either.
#[derive(Clone, Serialize, Deserialize)]
pub struct RedisFindexRequest {
    /// `redis://[user:pass@]host:port[/db]`.
    pub url: String,
    /// Base64 of the 32-byte database secret.
    pub db_secret: String,
}

impl fmt::Debug for RedisFindexRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisFindexRequest").finish_non_exhaustive()
    }
}

impl Drop for RedisFindexRequest {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.db_secret);
        zeroize::Zeroize::zeroize(&mut self.url);
    }
}

/// `POST /client-ca`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClientCaRequest {
    /// The CA certificate(s) that issue user certificates, PEM.
    pub ca_pem: String,
}

/// Plain status answer (`/redis-findex`, `/client-ca`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StatusResponse {
    /// What happened.
    pub status: String,
}

/// Answer to `POST /start`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StartResponse {
    /// Always `"started"`.
    pub status: String,
    /// Whether a separate RA-TLS port serves the bootstrap certificate (the API certificate has no quote).
    pub ra_tls_port: bool,
    /// Whether users must present client certificates (a client CA was posted).
    pub client_auth: bool,
}

/// Answer to `GET /attestation?nonce=…`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AttestationResponse {
    /// `"sev-snp"` (the only platform with reports for now).
    pub platform: String,
    /// The nonce, echoed (hex): report_data = SHA-256(server public key) ‖ nonce.
    pub nonce: String,
    /// The RA-TLS quote encoding (report ‖ certificate table), base64; same format as the certificate
    /// extension, so one parser serves both.
    pub quote: String,
    /// TDX: the CC event log (CCEL log area, TCG crypto-agile format), base64, when the platform
    /// ships one; a verifier replays it into the quote's RTMRs (`attest::tdx::eventlog`). Absent
    /// on SEV-SNP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_log: Option<String>,
}

/// Every error answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorResponse {
    /// Human-readable reason; never contains secrets.
    pub error: String,
}
