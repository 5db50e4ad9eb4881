//! `GET /attestation` in front of the KMS (main port after `/start`) or alone (RA-TLS port): a session that
//! frames requests, answers `/attestation` itself and hands every other complete request to the KMS.

use std::sync::Arc;

use kms::bootstrap::platform::EvidenceError;
use kms::bootstrap::{self as core_bootstrap, Identity};
use kms::http::{Limits, Method, parse_request};
use kms::server::Action;
use zeroize::Zeroize;

use super::platform::SharedEvidence;
use crate::kms_handler::{KmsHandler, KmsSession};
use crate::serve::{Handler, Session};

pub(super) fn to_http(r: core_bootstrap::Response, close: bool) -> kms::http::Response {
    let mut resp = kms::http::Response::json(r.status, r.body);
    resp.close = close;
    resp
}

pub(super) fn method_name(m: Method) -> &'static str {
    match m {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Delete => "DELETE",
        Method::Other => "OTHER",
    }
}

/// `GET /attestation` wrapped around a KMS session (main port after start) or alone (RA-TLS port).
pub struct AttestingHandler {
    pub(super) kms: Option<KmsHandler>,
    pub(super) identity: Arc<Identity>,
    pub(super) evidence: SharedEvidence,
    pub(super) limits: Limits,
}

impl Handler for AttestingHandler {
    type Session = AttestingSession;
    fn session(&self) -> AttestingSession {
        AttestingSession {
            kms: self.kms.as_ref().map(KmsHandler::session),
            identity: self.identity.clone(),
            evidence: self.evidence.clone(),
            limits: self.limits,
            buf: Vec::new(),
        }
    }
}

/// One connection of [`AttestingHandler`]: frames requests, answers `GET /attestation` itself and passes
/// every other complete request to the KMS session (or answers 404 on the RA-TLS port).
pub struct AttestingSession {
    kms: Option<KmsSession>,
    identity: Arc<Identity>,
    evidence: SharedEvidence,
    limits: Limits,
    buf: Vec<u8>,
}

impl AttestingSession {
    fn attestation(&self, query: &str) -> core_bootstrap::Response {
        match self.evidence.lock() {
            Ok(mut ev) => core_bootstrap::routes::attestation_response(&self.identity, ev.as_mut(), query),
            Err(_) => core_bootstrap::Response::error(&core_bootstrap::BootstrapError::Evidence(
                EvidenceError::Transport("platform lock poisoned"),
            )),
        }
    }
}

impl Session for AttestingSession {
    fn on_bytes(&mut self, user: Option<&str>, input: &[u8], out: &mut Vec<u8>) -> Action {
        self.buf.extend_from_slice(input);
        loop {
            match parse_request(&self.buf, &self.limits) {
                Ok(Some((req, used))) => {
                    let mut chunk: Vec<u8> = self.buf.drain(..used.min(self.buf.len())).collect();
                    let close = !req.keep_alive;
                    let action = if req.method == Method::Get && req.path == "/attestation" {
                        to_http(self.attestation(req.query.as_deref().unwrap_or("")), close).encode(out);
                        if close { Action::Close } else { Action::Continue }
                    } else if let Some(kms) = self.kms.as_mut() {
                        kms.on_bytes(user, &chunk, out)
                    } else {
                        let err = core_bootstrap::BootstrapError::NotFound;
                        to_http(core_bootstrap::Response::error(&err), close).encode(out);
                        if close { Action::Close } else { Action::Continue }
                    };
                    chunk.zeroize();
                    if action == Action::Close {
                        self.buf.zeroize();
                        return Action::Close;
                    }
                }
                Ok(None) => return Action::Continue,
                Err(e) => {
                    let mut rest = std::mem::take(&mut self.buf);
                    let action = match self.kms.as_mut() {
                        Some(kms) => kms.on_bytes(user, &rest, out),
                        None => {
                            let mut r = kms::http::Response::text(e.status(), &e.to_string());
                            r.close = true;
                            r.encode(out);
                            Action::Close
                        }
                    };
                    rest.zeroize();
                    return action;
                }
            }
        }
    }
}

impl Drop for AttestingSession {
    fn drop(&mut self) {
        self.buf.zeroize();
    }
}

