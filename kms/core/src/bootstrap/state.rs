//! The bootstrap state machine: one type per state, each holding exactly what that state has collected.
//!
//! ```text
//!   AwaitingCertificate --POST /certificate--> AwaitingDatabase --POST /redis-findex--> Ready --POST /start--> Started
//! ```
//! `/client-ca` may be posted once, in any state. Nothing accepted can be replaced: the states have no
//! "replace" transition, and the routes answer 409 to a second `/certificate`, `/redis-findex` or
//! `/client-ca`. The only reset is a restart of the server (a fresh bootstrap session).
//!
//! Every transition takes a [`ProvisionerAuthorized`] token, which only [`ProvisionerPolicy::authorize`]
//! creates, so no handler can skip the provisioner check. That check always needs a TLS client key: the pinned
//! one ([`ProvisionerPolicy::Pinned`]) or, without a pin, the first key that changed the state of this session
//! ([`ProvisionerPolicy::Open`], trust on first use). [`Ready::start`] consumes `Ready`: once started, the
//! bootstrap API cannot be driven again.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::keys::{BootstrapKey, Sk, SkOrigin};
use super::platform::{Evidence, Platform};
use super::x509::{self, ApiChain, OID_SNP_QUOTE, OID_TDX_QUOTE, QuoteExtension};
use super::{BootstrapError, DbSecret};
use attest::ratls::encode_snp_quote;

/// The server's bootstrap identity: key pair, self-signed RA-TLS certificate and the quote in it.
pub struct Identity {
    key: BootstrapKey,
    platform: Platform,
    certificate_der: Vec<u8>,
    quote: Option<QuoteExtension>,
}

impl Identity {
    /// Creates the identity: `sk` from the platform's derived key (or from `random_sk` when the platform has
    /// none; always on TDX, which has no sealing key), the key pair, a report with report_data =
    /// SHA-256(public key) ‖ zeros, and the certificate (SEV-SNP: report ‖ certificate table under
    /// [`OID_SNP_QUOTE`]; TDX: the DCAP quote v4 under [`OID_TDX_QUOTE`]).
    /// `now` (untrusted unix seconds) only sets the certificate's validity window.
    pub fn create(
        evidence: &mut dyn Evidence,
        random_sk: [u8; 32],
        now: i64,
    ) -> Result<Self, BootstrapError> {
        let platform = evidence.platform();
        let sk = match platform {
            Platform::SevSnp => match evidence.derived_key().map_err(BootstrapError::Evidence)? {
                Some(k) => Sk::from_platform_key(&k).map_err(BootstrapError::Key)?,
                None => Sk::from_random(random_sk),
            },
            // TDX has no sealing key: a fresh key each boot, re-provisioned (docs/operations.md, "TDX").
            Platform::Tdx | Platform::None => Sk::from_random(random_sk),
        };
        let key = sk.key_pair().map_err(BootstrapError::Key)?;
        let quote = match platform {
            Platform::SevSnp => {
                let report = evidence
                    .report(&key.report_data(&[0u8; 32]))
                    .map_err(BootstrapError::Evidence)?;
                let table = evidence.cert_table().map_err(BootstrapError::Evidence)?;
                Some(QuoteExtension {
                    oid: OID_SNP_QUOTE,
                    quote: encode_snp_quote(&report, &table),
                })
            }
            Platform::Tdx => {
                let quote = evidence
                    .report(&key.report_data(&[0u8; 32]))
                    .map_err(BootstrapError::Evidence)?;
                Some(QuoteExtension {
                    oid: OID_TDX_QUOTE,
                    quote,
                })
            }
            Platform::None => None,
        };
        let certificate_der =
            x509::bootstrap_certificate(&key, now, quote.as_ref()).map_err(BootstrapError::X509)?;
        Ok(Identity {
            key,
            platform,
            certificate_der,
            quote,
        })
    }

    /// The key pair (bootstrap and API certificates share it).
    pub fn key(&self) -> &BootstrapKey {
        &self.key
    }

    /// The platform the evidence comes from.
    pub fn platform(&self) -> Platform {
        self.platform
    }

    /// Whether `sk` is measurement-bound (stable across restarts of the same image) or random.
    pub fn sk_origin(&self) -> SkOrigin {
        self.key.origin()
    }

    /// DER of the self-signed bootstrap certificate.
    pub fn certificate_der(&self) -> &[u8] {
        &self.certificate_der
    }

    /// The quote in the bootstrap certificate, if the platform has one.
    pub fn quote(&self) -> Option<&QuoteExtension> {
        self.quote.as_ref()
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("platform", &self.platform)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// Who may provision. Either way, provisioning is bound to one authenticated client key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProvisionerPolicy {
    /// No pin (trust on first use): the first TLS client key that changes the state of the bootstrap session
    /// (`/certificate`, `/redis-findex`, `/client-ca`, `/start`) is locked in, and every later provisioning
    /// request must come from that key. A client that finds the session locked to another key
    /// ([`BootstrapError::LockedToAnotherProvisioner`]) knows that someone else is provisioning the server.
    Open,
    /// Only a TLS client whose certificate's SubjectPublicKeyInfo (DER) hashes (SHA-256) to this value.
    Pinned([u8; 32]),
}

impl ProvisionerPolicy {
    /// Parses `HEX` or `sha256:HEX` (64 hex digits).
    pub fn pinned_from_hex(text: &str) -> Result<Self, BootstrapError> {
        let hex = text.trim();
        let hex = hex.strip_prefix("sha256:").unwrap_or(hex);
        let mut out = [0u8; 32];
        let decoded = base16ct::mixed::decode(hex, &mut out).map_err(|_| {
            BootstrapError::BadRequest("provisioner SPKI hash is not 64 hex digits")
        })?;
        if decoded.len() != 32 {
            return Err(BootstrapError::BadRequest(
                "provisioner SPKI hash is not 64 hex digits",
            ));
        }
        Ok(ProvisionerPolicy::Pinned(out))
    }

    /// Checks the TLS client. The driver passes the client certificate's SubjectPublicKeyInfo DER only after
    /// the TLS layer verified the handshake signature with that key.
    ///
    /// `locked` is the session's provisioner under [`ProvisionerPolicy::Open`] (SHA-256 of its SPKI); `lock`
    /// says whether this request changes the state, in which case a still-unlocked session is locked to this
    /// client's key. Under [`ProvisionerPolicy::Pinned`], `locked` is not used.
    pub fn authorize(
        &self,
        client_spki_der: Option<&[u8]>,
        locked: &mut Option<[u8; 32]>,
        lock: bool,
    ) -> Result<ProvisionerAuthorized, BootstrapError> {
        match self {
            ProvisionerPolicy::Open => {
                let spki = client_spki_der.ok_or(BootstrapError::NoClientCertificate)?;
                let got: [u8; 32] = Sha256::digest(spki).into();
                match locked {
                    Some(want) if bool::from(got.ct_eq(want)) => Ok(ProvisionerAuthorized(())),
                    Some(want) => Err(BootstrapError::LockedToAnotherProvisioner(*want)),
                    None => {
                        if lock {
                            *locked = Some(got);
                        }
                        Ok(ProvisionerAuthorized(()))
                    }
                }
            }
            ProvisionerPolicy::Pinned(want) => {
                let spki = client_spki_der.ok_or(BootstrapError::NotProvisioner)?;
                let got: [u8; 32] = Sha256::digest(spki).into();
                if bool::from(got.ct_eq(want)) {
                    Ok(ProvisionerAuthorized(()))
                } else {
                    Err(BootstrapError::NotProvisioner)
                }
            }
        }
    }
}

/// Proof that the provisioner check ran and passed; only [`ProvisionerPolicy::authorize`] makes one.
#[derive(Debug)]
pub struct ProvisionerAuthorized(());

/// A database configuration that passed the probe.
pub struct DatabaseConfig {
    /// `redis://…` (may hold a password: never logged).
    pub url: String,
    /// The 32-byte database secret.
    pub secret: DbSecret,
}

impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseConfig").finish_non_exhaustive()
    }
}

impl Drop for DatabaseConfig {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.url);
    }
}

/// The client CA that authenticates users after `/start`.
#[derive(Debug, Clone)]
pub struct ClientCa {
    /// DER of each CA certificate.
    pub der: Vec<Vec<u8>>,
}

/// Nothing provisioned yet.
#[derive(Debug)]
pub struct AwaitingCertificate(());

/// The API certificate is set; the database is not.
#[derive(Debug)]
pub struct AwaitingDatabase {
    chain: ApiChain,
}

/// Certificate and database set: `/start` may run.
#[derive(Debug)]
pub struct Ready {
    chain: ApiChain,
    db: DatabaseConfig,
}

/// What the driver needs to start the KMS; produced once, by [`Ready::start`].
#[derive(Debug)]
pub struct Started {
    /// The bootstrap identity (its key is the API certificate's key).
    pub identity: Arc<Identity>,
    /// The API certificate chain, leaf first.
    pub chain: ApiChain,
    /// The database to open.
    pub database: DatabaseConfig,
    /// The user CA; `None` means no client authentication was configured.
    pub client_ca: Option<ClientCa>,
}

impl Started {
    /// Whether the RA-TLS port must stay open (the API certificate carries no quote).
    pub fn needs_ra_tls_port(&self) -> bool {
        !self.chain.leaf_has_quote
    }
}

impl AwaitingCertificate {
    /// The initial state.
    pub fn new() -> Self {
        AwaitingCertificate(())
    }

    /// Accepts the API certificate.
    pub fn certificate(self, _auth: &ProvisionerAuthorized, chain: ApiChain) -> AwaitingDatabase {
        AwaitingDatabase { chain }
    }
}

impl Default for AwaitingCertificate {
    fn default() -> Self {
        Self::new()
    }
}

impl AwaitingDatabase {
    /// Accepts the (probed) database.
    pub fn database(self, _auth: &ProvisionerAuthorized, db: DatabaseConfig) -> Ready {
        Ready {
            chain: self.chain,
            db,
        }
    }

    /// The accepted chain.
    pub fn chain(&self) -> &ApiChain {
        &self.chain
    }
}

impl Ready {
    /// Ends the bootstrap phase.
    pub fn start(
        self,
        _auth: &ProvisionerAuthorized,
        identity: Arc<Identity>,
        client_ca: Option<ClientCa>,
    ) -> Started {
        Started {
            identity,
            chain: self.chain,
            database: self.db,
            client_ca,
        }
    }

    /// The accepted chain.
    pub fn chain(&self) -> &ApiChain {
        &self.chain
    }
}

/// Current state before `/start`.
#[derive(Debug)]
pub enum Phase {
    /// See [`AwaitingCertificate`].
    AwaitingCertificate(AwaitingCertificate),
    /// See [`AwaitingDatabase`].
    AwaitingDatabase(AwaitingDatabase),
    /// See [`Ready`].
    Ready(Ready),
}

impl Phase {
    /// Name for logs and status answers.
    pub fn name(&self) -> &'static str {
        match self {
            Phase::AwaitingCertificate(_) => "awaiting certificate",
            Phase::AwaitingDatabase(_) => "awaiting database",
            Phase::Ready(_) => "ready",
        }
    }
}
