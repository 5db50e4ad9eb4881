//! The bootstrap HTTP API, sans-IO: a framed request and the TLS client's public key go in; a JSON response
//! and the next state come out. Framing, TLS and routing are [`crate::app`]'s job.

use alloc::format;
use alloc::string::ToString;
use alloc::sync::Arc;
use alloc::vec::Vec;

use base64ct::{Base64, Encoding};
use serde::Serialize;

use super::api::{
    AttestationResponse, CertificateRequest, CertificateResponse, ClientCaRequest, CsrRequest,
    CsrResponse, ErrorResponse, RedisFindexRequest, StartResponse, StatusResponse,
};
use super::platform::{DatabaseProbe, Evidence, Platform};
use super::state::{
    AwaitingCertificate, ClientCa, DatabaseConfig, Identity, Phase, ProvisionerAuthorized,
    ProvisionerPolicy, Started,
};
use super::x509::{self, CsrParams};
use super::{BootstrapError, DbSecret};
use crate::http::{Method, Request as HttpRequest};
use attest::ratls::encode_snp_quote;

/// A JSON response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// JSON body (`application/json`).
    pub body: Vec<u8>,
}

impl Response {
    fn json<T: Serialize>(status: u16, value: &T) -> Response {
        match serde_json::to_vec(value) {
            Ok(body) => Response { status, body },
            Err(_) => Response {
                status: 500,
                body: br#"{"error":"response encoding failed"}"#.to_vec(),
            },
        }
    }

    /// A 200 answer with `value` as JSON.
    pub fn ok<T: Serialize>(value: &T) -> Response {
        Response::json(200, value)
    }

    /// The `{"error": "..."}` answer for `err`.
    pub fn error(err: &BootstrapError) -> Response {
        Response::json(
            err.http_status(),
            &ErrorResponse {
                error: err.to_string(),
            },
        )
    }
}

/// What a request led to.
#[derive(Debug)]
pub enum Step {
    /// Still bootstrapping: answer and keep the machine.
    Continue(Bootstrap, Response),
    /// `/start` succeeded: answer, then start the KMS with [`Started`].
    Start(Started, Response),
}

/// The bootstrap server core.
#[derive(Debug)]
pub struct Bootstrap {
    identity: Arc<Identity>,
    policy: ProvisionerPolicy,
    /// Under [`ProvisionerPolicy::Open`]: SHA-256 of the SPKI of the client that provisions this session.
    locked: Option<[u8; 32]>,
    client_ca: Option<ClientCa>,
    phase: Phase,
}

/// Largest JSON body the bootstrap API accepts (a chain of 8 certificates fits easily).
pub const MAX_BODY: usize = 64 * 1024;

impl Bootstrap {
    /// A bootstrap server in its first state.
    pub fn new(identity: Arc<Identity>, policy: ProvisionerPolicy) -> Self {
        Bootstrap {
            identity,
            policy,
            locked: None,
            client_ca: None,
            phase: Phase::AwaitingCertificate(AwaitingCertificate::new()),
        }
    }

    /// The identity (certificate and key for the TLS server; shared with the RA-TLS port and `/attestation`).
    pub fn identity(&self) -> &Arc<Identity> {
        &self.identity
    }

    /// Under [`ProvisionerPolicy::Open`], SHA-256 of the SPKI of the client key this session is locked to
    /// (`None` until a client changed the state; always `None` under a pin).
    pub fn locked_provisioner(&self) -> Option<&[u8; 32]> {
        self.locked.as_ref()
    }

    /// The current state.
    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    /// Handles one request of the bootstrap API (`POST /csr`, `/certificate`, `/redis-findex`,
    /// `/client-ca`, `/start`). `client_spki_der` is the SubjectPublicKeyInfo of the TLS client
    /// certificate, when the client presented one and proved possession of its key. `GET
    /// /attestation` is not here: [`crate::app::App`] serves it in every phase.
    ///
    /// Every POST needs the provisioner's key ([`ProvisionerPolicy::authorize`]); without a pin, the first
    /// request that changes the state (every route but `/csr`, which only reads) locks the session to the
    /// client's key, even when the request is then refused.
    pub fn handle(
        mut self,
        req: &HttpRequest,
        client_spki_der: Option<&[u8]>,
        probe: &mut dyn DatabaseProbe,
    ) -> Step {
        match (req.method, req.path.as_str()) {
            (Method::Post, "/csr" | "/certificate" | "/redis-findex" | "/client-ca" | "/start") => {
                let lock = req.path != "/csr";
                let auth = match self
                    .policy
                    .authorize(client_spki_der, &mut self.locked, lock)
                {
                    Ok(a) => a,
                    Err(e) => return Step::Continue(self, Response::error(&e)),
                };
                if req.body.len() > MAX_BODY {
                    return Step::Continue(self, Response::error(&BootstrapError::BodyTooLarge));
                }
                let path = req.path.clone();
                self.post(&auth, &path, &req.body, probe)
            }
            (_, "/csr" | "/certificate" | "/redis-findex" | "/client-ca" | "/start") => {
                Step::Continue(self, Response::error(&BootstrapError::MethodNotAllowed))
            }
            _ => Step::Continue(self, Response::error(&BootstrapError::NotFound)),
        }
    }

    fn post(
        mut self,
        auth: &ProvisionerAuthorized,
        path: &str,
        body: &[u8],
        probe: &mut dyn DatabaseProbe,
    ) -> Step {
        let result = match path {
            "/csr" => self.csr(body).map(|r| Response::json(200, &r)),
            "/certificate" => return self.certificate(auth, body),
            "/redis-findex" => return self.database(auth, body, probe),
            "/client-ca" => self.client_ca(body).map(|r| Response::json(200, &r)),
            "/start" => return self.start(auth),
            _ => Err(BootstrapError::NotFound),
        };
        match result {
            Ok(resp) => Step::Continue(self, resp),
            Err(e) => Step::Continue(self, Response::error(&e)),
        }
    }

    fn csr(&self, body: &[u8]) -> Result<CsrResponse, BootstrapError> {
        let req: CsrRequest =
            serde_json::from_slice(body).map_err(|_| BootstrapError::BadJson("CsrRequest"))?;
        if req.include_quote && self.identity.quote().is_none() {
            return Err(BootstrapError::NoQuote);
        }
        let params = CsrParams {
            subject: &req.subject,
            dns_names: &req.dns_names,
            ip_addresses: &req.ip_addresses,
        };
        let quote = if req.include_quote {
            self.identity.quote()
        } else {
            None
        };
        let csr_pem =
            x509::csr_pem(self.identity.key(), &params, quote).map_err(BootstrapError::X509)?;
        Ok(CsrResponse { csr_pem })
    }

    fn certificate(self, auth: &ProvisionerAuthorized, body: &[u8]) -> Step {
        if !matches!(self.phase, Phase::AwaitingCertificate(_)) {
            return Step::Continue(
                self,
                Response::error(&BootstrapError::Conflict(
                    "the API certificate is already set for this bootstrap session and cannot be \
                     replaced (restart the server to start over)",
                )),
            );
        }
        let chain = serde_json::from_slice::<CertificateRequest>(body)
            .map_err(|_| BootstrapError::BadJson("CertificateRequest"))
            .and_then(|r| {
                x509::validate_api_chain(self.identity.key(), &r.chain_pem)
                    .map_err(BootstrapError::X509)
            });
        let chain = match chain {
            Ok(c) => c,
            Err(e) => return Step::Continue(self, Response::error(&e)),
        };
        let resp = Response::json(
            200,
            &CertificateResponse {
                status: "certificate accepted".into(),
                api_certificate_has_quote: chain.leaf_has_quote,
                chain_length: chain.der.len(),
            },
        );
        let Bootstrap {
            identity,
            policy,
            locked,
            client_ca,
            phase,
        } = self;
        let phase = match phase {
            Phase::AwaitingCertificate(s) => Phase::AwaitingDatabase(s.certificate(auth, chain)),
            other @ (Phase::AwaitingDatabase(_) | Phase::Ready(_)) => other,
        };
        Step::Continue(
            Bootstrap {
                identity,
                policy,
                locked,
                client_ca,
                phase,
            },
            resp,
        )
    }

    fn database(
        self,
        auth: &ProvisionerAuthorized,
        body: &[u8],
        probe: &mut dyn DatabaseProbe,
    ) -> Step {
        let refuse = match self.phase {
            Phase::AwaitingCertificate(_) => Some("post the API certificate first"),
            Phase::Ready(_) => Some(
                "the database is already set for this bootstrap session and cannot be \
                 replaced (restart the server to start over)",
            ),
            Phase::AwaitingDatabase(_) => None,
        };
        if let Some(why) = refuse {
            return Step::Continue(self, Response::error(&BootstrapError::Conflict(why)));
        }
        let db = serde_json::from_slice::<RedisFindexRequest>(body)
            .map_err(|_| BootstrapError::BadJson("RedisFindexRequest"))
            .and_then(|r| {
                let secret = DbSecret::from_base64(&r.db_secret)?;
                probe
                    .probe(&r.url, &secret)
                    .map_err(BootstrapError::Probe)?;
                Ok(DatabaseConfig {
                    url: r.url.clone(),
                    secret,
                })
            });
        let db = match db {
            Ok(db) => db,
            Err(e) => return Step::Continue(self, Response::error(&e)),
        };
        let resp = Response::json(
            200,
            &StatusResponse {
                status: "database configured".into(),
            },
        );
        let Bootstrap {
            identity,
            policy,
            locked,
            client_ca,
            phase,
        } = self;
        let phase = match phase {
            Phase::AwaitingDatabase(s) => Phase::Ready(s.database(auth, db)),
            other @ (Phase::AwaitingCertificate(_) | Phase::Ready(_)) => other,
        };
        Step::Continue(
            Bootstrap {
                identity,
                policy,
                locked,
                client_ca,
                phase,
            },
            resp,
        )
    }

    fn client_ca(&mut self, body: &[u8]) -> Result<StatusResponse, BootstrapError> {
        if self.client_ca.is_some() {
            return Err(BootstrapError::Conflict(
                "the client CA is already set for this bootstrap session and cannot be replaced \
                 (restart the server to start over)",
            ));
        }
        let req: ClientCaRequest =
            serde_json::from_slice(body).map_err(|_| BootstrapError::BadJson("ClientCaRequest"))?;
        let certs = x509::parse_pem_chain(&req.ca_pem).map_err(BootstrapError::X509)?;
        if certs.len() != 1 {
            // Identities are subject CNs: with several CAs, any of them could issue any user's name.
            return Err(BootstrapError::BadRequest(
                "the client CA must be exactly one certificate: with several CAs, any of them \
                 could issue a certificate for any user name",
            ));
        }
        let mut der = Vec::with_capacity(certs.len());
        for c in &certs {
            der.push(
                der::Encode::to_der(c)
                    .map_err(|_| BootstrapError::X509(x509::X509Error::BadCertificate))?,
            );
        }
        let n = der.len();
        self.client_ca = Some(ClientCa { der });
        Ok(StatusResponse {
            status: format!("client CA set ({n} certificate(s))"),
        })
    }

    fn start(self, auth: &ProvisionerAuthorized) -> Step {
        let Bootstrap {
            identity,
            policy,
            locked,
            client_ca,
            phase,
        } = self;
        match (phase, client_ca) {
            (Phase::Ready(ready), Some(ca)) => {
                let started = ready.start(auth, identity, Some(ca));
                let resp = Response::json(
                    200,
                    &StartResponse {
                        status: "started".into(),
                        ra_tls_port: started.needs_ra_tls_port(),
                        client_auth: started.client_ca.is_some(),
                    },
                );
                Step::Start(started, resp)
            }
            (phase, client_ca) => {
                // Safe default: a KMS whose users cannot authenticate is never started.
                let why = match phase {
                    Phase::AwaitingCertificate(_) => {
                        "not ready: post the API certificate and the database first"
                    }
                    Phase::AwaitingDatabase(_) => {
                        "not ready: post the database configuration first"
                    }
                    Phase::Ready(_) => {
                        "not ready: post the client CA first (users authenticate with its certificates)"
                    }
                };
                Step::Continue(
                    Bootstrap {
                        identity,
                        policy,
                        locked,
                        client_ca,
                        phase,
                    },
                    Response::error(&BootstrapError::Conflict(why)),
                )
            }
        }
    }
}

/// Parses the `nonce` query parameter (64 hex digits).
pub fn parse_nonce(query: &str) -> Result<[u8; 32], BootstrapError> {
    let value = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("nonce="))
        .ok_or(BootstrapError::BadRequest(
            "missing nonce: GET /attestation?nonce=<64 hex digits>",
        ))?;
    let mut nonce = [0u8; 32];
    let n = base16ct::mixed::decode(value, &mut nonce)
        .map_err(|_| BootstrapError::BadRequest("nonce must be 64 hex digits"))?;
    if n.len() != 32 {
        return Err(BootstrapError::BadRequest("nonce must be 64 hex digits"));
    }
    Ok(nonce)
}

/// `GET /attestation?nonce=…`: a fresh report with report_data = SHA-256(public key) ‖ nonce (SEV-SNP: report ‖
/// certificate table; TDX: the DCAP quote v4). Served by the
/// bootstrap API and, after `/start`, by the KMS and the RA-TLS port.
pub fn attestation(
    identity: &Identity,
    evidence: &mut dyn Evidence,
    query: &str,
) -> Result<AttestationResponse, BootstrapError> {
    let nonce = parse_nonce(query)?;
    let report_data = identity.key().report_data(&nonce);
    let mut event_log = None;
    let quote = match evidence.platform() {
        Platform::None => {
            return Err(BootstrapError::Evidence(
                super::platform::EvidenceError::Unsupported,
            ));
        }
        Platform::SevSnp => {
            let report = evidence
                .report(&report_data)
                .map_err(BootstrapError::Evidence)?;
            let table = evidence.cert_table().map_err(BootstrapError::Evidence)?;
            encode_snp_quote(&report, &table)
        }
        // The DCAP quote v4 as is: its signature data carries the PCK chain; and the event log
        // that explains its RTMRs.
        Platform::Tdx => {
            let quote = evidence
                .report(&report_data)
                .map_err(BootstrapError::Evidence)?;
            event_log = evidence
                .event_log()
                .map_err(BootstrapError::Evidence)?
                .map(|l| Base64::encode_string(&l));
            quote
        }
    };
    Ok(AttestationResponse {
        platform: identity.platform().name().into(),
        nonce: base16ct::lower::encode_string(&nonce),
        quote: Base64::encode_string(&quote),
        event_log,
    })
}
