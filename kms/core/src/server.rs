//! Per-connection sans-IO driver and router: bytes in, bytes out.
//!
//! A [`Connection`] buffers the plaintext bytes of one TLS connection, frames HTTP/1.1 requests
//! with [`crate::http::parse_request`], routes them to the [`Kms`] and appends encoded responses
//! to the caller's output buffer. Its caller (the host server or the unikernel's network loop)
//! only moves bytes and authenticates the peer.
//!
//! Routes (the REST surface of the Cosmian KMS):
//!
//! | method | path | identity | answer |
//! |---|---|---|---|
//! | POST | `/kmip/2_1` | required | KMIP 2.1 JSON TTLV response |
//! | POST | `/access/grant`, `/access/revoke` | required | `{"success": "..."}` (body `{unique_identifier, user_id, operation_types}`) |
//! | GET | `/access/list/{uid}`, `/access/owned`, `/access/obtained` | required | JSON array |
//! | GET | `/version` | not required | JSON string |
//! | GET | `/health` | not required | `{"status":"UP"}` |
//!
//! Errors are a status code with the message as a plain-text body: 401 without identity, 404
//! for an unknown route, 405 for a known path with the wrong method, the status of
//! [`crate::KmsError::http_status`] for KMS errors, and the [`HttpError`] status (400, 411, 413, 431,
//! 505) for requests that cannot be framed, after which the connection is closed.

use alloc::format;
use alloc::vec::Vec;

use zeroize::Zeroize;

use crate::http::{HttpError, Limits, Method, Request, Response, parse_request, percent_decode};
use crate::service::to_json;
use crate::store::Store;
use crate::{Env, Kms};

/// What the caller must do with the connection after [`Connection::on_bytes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Action {
    /// Write the output bytes, then read more input.
    Continue,
    /// Write the output bytes, then close the connection.
    Close,
}

/// Version string answered by `GET /version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The state of one client connection: bytes received but not yet framed into a request.
#[derive(Debug)]
pub struct Connection {
    limits: Limits,
    pending: Vec<u8>,
    closed: bool,
}

impl Connection {
    /// A new connection with the given request limits.
    pub fn new(limits: Limits) -> Self {
        Connection {
            limits,
            pending: Vec::new(),
            closed: false,
        }
    }

    /// Feed the bytes received from the peer; append the responses to every request completed
    /// by them (in order) to `out`.
    ///
    /// `user` is the authenticated identity of the peer (client certificate CN), `None` when the
    /// transport authenticated nobody. Returns [`Action::Close`] after a request that cannot be
    /// framed (the error response is in `out`) or when the client asked to close; once closed,
    /// further input is ignored.
    ///
    /// Each request runs to completion ([`crate::block_on`] without an idle step): for stores
    /// that never wait (memory) or block inside their futures (the host's Redis transport).
    pub fn on_bytes<S: Store>(
        &mut self,
        kms: &Kms<S>,
        env: &mut Env<'_>,
        user: Option<&str>,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Action {
        self.on_bytes_with(kms, env, user, input, out, &mut || {})
    }

    /// [`Connection::on_bytes`] for a store that waits on a network: `idle` runs whenever a
    /// request's store call is pending (for example: poll the network stack, wait briefly).
    pub fn on_bytes_with<S: Store>(
        &mut self,
        kms: &Kms<S>,
        env: &mut Env<'_>,
        user: Option<&str>,
        input: &[u8],
        out: &mut Vec<u8>,
        idle: &mut dyn FnMut(),
    ) -> Action {
        if self.closed {
            return Action::Close;
        }
        self.pending.extend_from_slice(input);
        let mut consumed = 0;
        let action = loop {
            let rest = self.pending.get(consumed..).unwrap_or(&[]);
            match parse_request(rest, &self.limits) {
                Ok(None) => break Action::Continue,
                Ok(Some((request, used))) => {
                    consumed += used;
                    let mut response = crate::block_on(route(kms, env, user, &request), &mut *idle);
                    if !request.keep_alive {
                        response.close = true;
                    }
                    response.encode(out);
                    if response.close {
                        break Action::Close;
                    }
                }
                Err(e) => {
                    let mut response = Response::text(e.status(), &format!("{e}"));
                    response.close = true;
                    response.encode(out);
                    break Action::Close;
                }
            }
        };
        // Requests can carry key material: wipe what was consumed before shifting the rest.
        if let Some(done) = self.pending.get_mut(..consumed) {
            done.zeroize();
        }
        self.pending.drain(..consumed);
        if action == Action::Close {
            self.closed = true;
            self.pending.zeroize();
        }
        action
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.pending.zeroize();
    }
}

/// Dispatch one framed request.
async fn route<S: Store>(
    kms: &Kms<S>,
    env: &mut Env<'_>,
    user: Option<&str>,
    req: &Request,
) -> Response {
    let path = req.path.as_str();
    // Public endpoints: liveness and version need no identity.
    match (req.method, path) {
        (Method::Get, "/health") => {
            return Response::json(200, Vec::from(&br#"{"status":"UP"}"#[..]));
        }
        (Method::Get, "/version") => return Response::json(200, json_string(VERSION)),
        (_, "/health" | "/version") => return method_not_allowed(),
        _ => {}
    }
    let known = matches!(
        path,
        "/kmip/2_1" | "/access/grant" | "/access/revoke" | "/access/owned" | "/access/obtained"
    ) || path.starts_with("/access/list/");
    if !known {
        return Response::text(404, "no such route");
    }
    let Some(user) = user.filter(|u| !u.is_empty()) else {
        return Response::text(401, "authentication required: no client identity");
    };
    let result = match (req.method, path) {
        (Method::Post, "/kmip/2_1") => kms.kmip_json(env, user, &req.body).await,
        (Method::Post, "/access/grant") => kms.grant_access_json(env, user, &req.body).await,
        (Method::Post, "/access/revoke") => kms.revoke_access_json(env, user, &req.body).await,
        (Method::Get, "/access/owned") => kms.owned(user).await.and_then(|v| to_json(&v)),
        (Method::Get, "/access/obtained") => kms.obtained(user).await.and_then(|v| to_json(&v)),
        (Method::Get, p) => match p.strip_prefix("/access/list/") {
            Some(uid) => match percent_decode(uid) {
                Ok(uid) if !uid.is_empty() && !uid.contains('/') => {
                    kms.list_access(user, &uid).await.and_then(|v| to_json(&v))
                }
                Ok(_) => return Response::text(404, "no such route"),
                Err(e) => return Response::text(e.status(), &format!("{e}")),
            },
            None => return method_not_allowed(),
        },
        _ => return method_not_allowed(),
    };
    match result {
        Ok(body) => Response::json(200, body),
        Err(e) => Response::text(e.http_status(), &format!("{e}")),
    }
}

fn json_string(s: &str) -> Vec<u8> {
    serde_json::to_vec(s).unwrap_or_default()
}

fn method_not_allowed() -> Response {
    Response::text(405, "method not allowed on this route")
}

impl From<HttpError> for Response {
    fn from(e: HttpError) -> Self {
        let mut r = Response::text(e.status(), &format!("{e}"));
        r.close = true;
        r
    }
}

#[cfg(test)]
mod tests {
    use alloc::format;
    use alloc::string::String;
    use alloc::vec::Vec;

    use super::*;
    use crate::KmsConfig;
    use crate::crypto::{Random, RngError};
    use crate::store::memory::MemoryStore;

    /// Deterministic test generator (xorshift): tests only.
    struct TestRng(u64);
    impl Random for TestRng {
        fn fill(&mut self, buf: &mut [u8]) -> Result<(), RngError> {
            for b in buf {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                *b = self.0 as u8;
            }
            Ok(())
        }
    }

    struct Fixture {
        kms: Kms<MemoryStore>,
        rng: TestRng,
        conn: Connection,
    }

    impl Fixture {
        fn new(limits: Limits) -> Self {
            Fixture {
                kms: Kms::new(MemoryStore::new(), KmsConfig::default()),
                rng: TestRng(0x9E37_79B9_7F4A_7C15),
                conn: Connection::new(limits),
            }
        }
        fn feed(&mut self, user: Option<&str>, input: &[u8]) -> (Action, Vec<u8>) {
            let mut out = Vec::new();
            let mut env = Env {
                now: 1_700_000_000,
                rng: &mut self.rng,
            };
            let action = self
                .conn
                .on_bytes(&self.kms, &mut env, user, input, &mut out);
            (action, out)
        }
    }

    /// Split an output buffer into (status, body) pairs.
    fn responses(mut out: &[u8]) -> Vec<(u16, String)> {
        let mut v = Vec::new();
        while !out.is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; 8];
            let mut r = httparse::Response::new(&mut headers);
            let httparse::Status::Complete(n) = r.parse(out).unwrap() else {
                panic!("partial")
            };
            let len: usize = r
                .headers
                .iter()
                .find(|h| h.name == "content-length")
                .map(|h| core::str::from_utf8(h.value).unwrap().parse().unwrap())
                .unwrap();
            let code = r.code.unwrap();
            v.push((code, String::from_utf8(out[n..n + len].to_vec()).unwrap()));
            out = &out[n + len..];
        }
        v
    }

    #[test]
    fn health_exact_bytes() {
        let mut f = Fixture::new(Limits::DEFAULT);
        let (action, out) = f.feed(None, b"GET /health HTTP/1.1\r\nHost: kms\r\n\r\n");
        assert_eq!(action, Action::Continue);
        assert_eq!(
            out,
            &b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 15\r\n\r\n{\"status\":\"UP\"}"[..]
        );
    }

    #[test]
    fn byte_by_byte_pipelined_requests() {
        let mut f = Fixture::new(Limits::DEFAULT);
        let input =
            b"GET /version HTTP/1.1\r\n\r\nGET /health HTTP/1.1\r\nConnection: close\r\n\r\n";
        let mut all = Vec::new();
        let mut last = Action::Continue;
        for b in input.iter() {
            let (a, out) = f.feed(None, core::slice::from_ref(b));
            all.extend_from_slice(&out);
            last = a;
        }
        assert_eq!(last, Action::Close);
        let r = responses(&all);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0], (200, format!("\"{VERSION}\"")));
        assert_eq!(r[1].0, 200);
        // Closed: nothing more is answered.
        assert_eq!(
            f.feed(None, b"GET /health HTTP/1.1\r\n\r\n"),
            (Action::Close, Vec::new())
        );
    }

    #[test]
    fn routing_errors() {
        let mut f = Fixture::new(Limits::DEFAULT);
        let (_, out) = f.feed(Some("alice"), b"GET /nope HTTP/1.1\r\n\r\n");
        assert_eq!(responses(&out)[0].0, 404);
        let (_, out) = f.feed(
            None,
            b"POST /kmip/2_1 HTTP/1.1\r\ncontent-length: 2\r\n\r\n{}",
        );
        assert_eq!(responses(&out)[0].0, 401);
        let (_, out) = f.feed(Some(""), b"GET /access/owned HTTP/1.1\r\n\r\n");
        assert_eq!(responses(&out)[0].0, 401);
        let (_, out) = f.feed(Some("alice"), b"GET /kmip/2_1 HTTP/1.1\r\n\r\n");
        assert_eq!(responses(&out)[0].0, 405);
        let (_, out) = f.feed(Some("alice"), b"GET /access/list/%ZZ HTTP/1.1\r\n\r\n");
        assert_eq!(responses(&out)[0].0, 400);
        let (a, out) = f.feed(
            Some("alice"),
            b"POST /access/grant HTTP/1.1\r\ncontent-length: 3\r\n\r\n{x}",
        );
        assert_eq!(a, Action::Continue);
        assert_eq!(responses(&out)[0].0, 400);
        let (_, out) = f.feed(
            Some("alice"),
            b"GET /access/list/unknown-uid HTTP/1.1\r\n\r\n",
        );
        assert_eq!(responses(&out)[0].0, 404);
    }

    #[test]
    fn malformed_and_oversized_close_the_connection() {
        let mut f = Fixture::new(Limits {
            max_body_bytes: 10,
            ..Limits::DEFAULT
        });
        let (a, out) = f.feed(
            Some("alice"),
            b"POST /kmip/2_1 HTTP/1.1\r\ncontent-length: 11\r\n\r\n",
        );
        assert_eq!(a, Action::Close);
        let r = responses(&out);
        assert_eq!(r[0].0, 413);
        assert!(out.windows(17).any(|w| w == b"connection: close"));

        let mut f = Fixture::new(Limits::DEFAULT);
        let (a, out) = f.feed(Some("alice"), b"\x16\x03\x01 not http\r\n\r\n");
        assert_eq!(a, Action::Close);
        assert_eq!(responses(&out)[0].0, 400);
    }

    #[test]
    fn kmip_create_and_access_through_the_router() {
        let mut f = Fixture::new(Limits::DEFAULT);
        let create = br#"{"tag":"Create","type":"Structure","value":[
            {"tag":"ObjectType","type":"Enumeration","value":"SymmetricKey"},
            {"tag":"Attributes","type":"Structure","value":[
              {"tag":"CryptographicAlgorithm","type":"Enumeration","value":"AES"},
              {"tag":"CryptographicLength","type":"Integer","value":256}]}]}"#;
        let mut req = format!(
            "POST /kmip/2_1 HTTP/1.1\r\ncontent-length: {}\r\n\r\n",
            create.len()
        )
        .into_bytes();
        req.extend_from_slice(create);
        let (_, out) = f.feed(Some("alice"), &req);
        let (status, body) = responses(&out).remove(0);
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["tag"], "CreateResponse");
        let uid = v["value"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["tag"] == "UniqueIdentifier")
            .unwrap()["value"]
            .as_str()
            .map(String::from)
            .unwrap();

        let grant =
            format!(r#"{{"unique_identifier":"{uid}","user_id":"bob","operation_types":["get"]}}"#);
        let req = format!(
            "POST /access/grant HTTP/1.1\r\ncontent-length: {}\r\n\r\n{grant}",
            grant.len()
        );
        let (_, out) = f.feed(Some("alice"), req.as_bytes());
        let (status, body) = responses(&out).remove(0);
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("success"));

        let (_, out) = f.feed(Some("bob"), b"GET /access/obtained HTTP/1.1\r\n\r\n");
        let (status, body) = responses(&out).remove(0);
        assert_eq!(status, 200);
        assert!(body.contains(&uid), "{body}");
        let (_, out) = f.feed(
            Some("alice"),
            format!("GET /access/list/{uid} HTTP/1.1\r\n\r\n").as_bytes(),
        );
        let (status, body) = responses(&out).remove(0);
        assert_eq!(status, 200);
        assert!(body.contains("bob"), "{body}");
    }
}
