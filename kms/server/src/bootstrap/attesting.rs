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
            Ok(mut ev) => {
                core_bootstrap::routes::attestation_response(&self.identity, ev.as_mut(), query)
            }
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
                        to_http(self.attestation(req.query.as_deref().unwrap_or("")), close)
                            .encode(out);
                        if close {
                            Action::Close
                        } else {
                            Action::Continue
                        }
                    } else if let Some(kms) = self.kms.as_mut() {
                        kms.on_bytes(user, &chunk, out)
                    } else {
                        let err = core_bootstrap::BootstrapError::NotFound;
                        to_http(core_bootstrap::Response::error(&err), close).encode(out);
                        if close {
                            Action::Close
                        } else {
                            Action::Continue
                        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bootstrap::platform::NoEvidence;
    use kms::store::memory::MemoryStore;
    use kms::{Kms, KmsConfig};
    use std::sync::Mutex;

    fn session(with_kms: bool) -> AttestingSession {
        let mut ev = NoEvidence;
        let identity = Arc::new(Identity::create(&mut ev, [1; 32], 1_790_000_000).unwrap());
        let kms = with_kms.then(|| {
            let store = Arc::new(crate::store::HostStore::Memory(MemoryStore::with_lock()));
            KmsHandler::new(
                Arc::new(Kms::new(store, KmsConfig::default())),
                Limits::DEFAULT,
            )
        });
        let handler = AttestingHandler {
            kms,
            identity,
            evidence: Arc::new(Mutex::new(Box::new(NoEvidence))),
            limits: Limits::DEFAULT,
        };
        handler.session()
    }

    fn statuses(out: &[u8]) -> Vec<u16> {
        let text = String::from_utf8_lossy(out);
        text.match_indices("HTTP/1.1 ")
            .filter_map(|(i, _)| text.get(i + 9..i + 12).and_then(|s| s.parse().ok()))
            .collect()
    }

    #[test]
    fn attestation_is_answered_and_the_rest_goes_to_the_kms_in_order() {
        let mut s = session(true);
        let nonce = "00".repeat(32);
        let pipelined = format!(
            "GET /attestation?nonce={nonce} HTTP/1.1\r\nhost: x\r\n\r\nGET /version HTTP/1.1\r\nhost: x\r\n\r\n\
             POST /csr HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{{}}"
        );
        let mut out = Vec::new();
        // Byte by byte: framing must not depend on how TCP splits the stream.
        for b in pipelined.as_bytes() {
            assert_eq!(
                s.on_bytes(Some("admin"), std::slice::from_ref(b), &mut out),
                Action::Continue
            );
        }
        // 501: no platform (`none`); 200: the KMS's /version; 404: no bootstrap API after start.
        assert_eq!(statuses(&out), vec![501, 200, 404]);
    }

    #[test]
    fn ratls_port_serves_only_attestation() {
        let mut s = session(false);
        let mut out = Vec::new();
        let req =
            b"GET /version HTTP/1.1\r\nhost: x\r\n\r\nGET /attestation HTTP/1.1\r\nhost: x\r\n\r\n";
        assert_eq!(s.on_bytes(None, req, &mut out), Action::Continue);
        assert_eq!(statuses(&out), vec![404, 400]);
        let mut out = Vec::new();
        assert_eq!(
            s.on_bytes(None, b"NOT HTTP\r\n\r\n", &mut out),
            Action::Close
        );
        assert_eq!(statuses(&out), vec![400]);
    }
}
