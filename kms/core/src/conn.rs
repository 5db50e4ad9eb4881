//! One client connection, sans-IO: TLS ([`crate::tls::TlsConn`]) → HTTP/1.1 framing ([`Http`]), or
//! binary TTLV framing ([`TtlvStream`]) on the KMIP listener → the [`App`]. The one connection type
//! of both servers: the driver feeds received ciphertext to [`Conn::on_tls`], sends
//! [`Conn::pending_tls`], and closes the socket when told.
//!
//! On the KMIP listener, a message is framed by its 8-byte TTLV header
//! ([`crate::kmip::binary::message_len`]): the length is checked against the limit before the
//! body is buffered; messages are answered in order; a header that is not a KMIP message (wrong
//! tag or type, too long) gets a failed `ResponseMessage` and closes the connection.
//!
//! Requests are framed with [`crate::http::parse_request`] (limits per phase from
//! [`App::http_limits`]); pipelined requests are answered in order; a request that cannot be
//! framed gets its status (400, 411, 413, 431, 505) and closes the connection. Consumed
//! plaintext is wiped (requests and responses can carry key material).

use alloc::format;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::task::Poll;

use lock_api::RawMutex;
use zeroize::Zeroize;

use crate::Env;
use crate::app::{App, Effect, Generation, Handled, KmsFuture, Listener, Peer};
use crate::http::{Limits, Response, parse_request};
use crate::kmip::binary::message_len;
use crate::pace::Phase;
use crate::store::Store;
use crate::tls::{TlsConn, TlsError, TlsState};

/// What the caller must do with the connection after feeding it bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Action {
    /// Write the output bytes, then read more input.
    Continue,
    /// Write the output bytes, then close the connection.
    Close,
}

/// What [`Http::on_plaintext`] and [`Http::drive`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Outcome {
    /// Continue or close after the output.
    pub action: Action,
    /// What the driver must do (rare).
    pub effect: Option<Effect>,
    /// A KMS request is in flight (waiting on the store): call [`Http::drive`] again later.
    pub waiting: bool,
}

/// HTTP/1.1 framing of one connection's plaintext, routed to the [`App`]. Requests are answered
/// in order: while a KMS request waits on the store, the requests behind it wait too.
#[derive(Debug)]
pub struct Http {
    limits: Limits,
    pending: Vec<u8>,
    closed: bool,
    /// The request in flight, and whether the connection closes after it.
    in_flight: Option<(KmsFuture, bool)>,
    /// Requests framed so far.
    framed: u64,
}

impl Http {
    /// A new connection with the given request limits.
    pub fn new(limits: Limits) -> Self {
        Http {
            limits,
            pending: Vec::new(),
            closed: false,
            in_flight: None,
            framed: 0,
        }
    }

    /// Feeds plaintext received from the peer; appends the response to every request it
    /// completes (in order) to `out`. Once closed, input is ignored.
    #[allow(clippy::too_many_arguments)]
    pub fn on_plaintext<S: Store + 'static, L: RawMutex + 'static>(
        &mut self,
        app: &Arc<App<S, L>>,
        listener: Listener,
        generation: Generation,
        peer: &Peer,
        env: &mut Env<'_>,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Outcome {
        if self.closed {
            return Outcome {
                action: Action::Close,
                effect: None,
                waiting: false,
            };
        }
        crate::wipe::extend(&mut self.pending, input);
        self.drive(app, listener, generation, peer, env, out)
    }

    /// True while a KMS request waits on the store.
    pub fn is_waiting(&self) -> bool {
        self.in_flight.is_some()
    }

    /// True while part of a request is buffered.
    pub fn has_partial(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Requests framed so far.
    pub fn framed(&self) -> u64 {
        self.framed
    }

    /// Polls the request in flight, then frames and answers the requests buffered behind it,
    /// until one waits or none is complete.
    pub fn drive<S: Store + 'static, L: RawMutex + 'static>(
        &mut self,
        app: &Arc<App<S, L>>,
        listener: Listener,
        generation: Generation,
        peer: &Peer,
        env: &mut Env<'_>,
        out: &mut Vec<u8>,
    ) -> Outcome {
        let mut effect = None;
        let action = loop {
            if self.closed {
                break Action::Close;
            }
            if let Some((future, close)) = &mut self.in_flight {
                let close = *close;
                let Poll::Ready(mut response) = future.poll() else {
                    return Outcome {
                        action: Action::Continue,
                        effect,
                        waiting: true,
                    };
                };
                self.in_flight = None;
                response.close |= close;
                response.encode(out);
                if response.close {
                    break Action::Close;
                }
            }
            match parse_request(&self.pending, &self.limits) {
                Ok(None) => break Action::Continue,
                Ok(Some((request, used))) => {
                    self.framed += 1;
                    // Requests can carry key material: wipe what was consumed and what the
                    // shift leaves behind.
                    crate::wipe::drain_front(&mut self.pending, used);
                    let keep_alive = request.keep_alive;
                    match app.handle(listener, generation, peer, env, request) {
                        Handled::Ready(mut response, e) => {
                            effect = effect.or(e);
                            response.close |= !keep_alive;
                            response.encode(out);
                            if response.close {
                                break Action::Close;
                            }
                        }
                        Handled::Pending(future) => self.in_flight = Some((future, !keep_alive)),
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
        if action == Action::Close {
            self.closed = true;
            self.in_flight = None;
            self.pending.zeroize();
        }
        Outcome {
            action,
            effect,
            waiting: false,
        }
    }
}

impl Drop for Http {
    fn drop(&mut self) {
        self.pending.zeroize();
    }
}

/// Binary TTLV framing of one KMIP-listener connection's plaintext, routed to
/// [`App::handle_ttlv`]. Messages are answered in order: while one waits on the store, the
/// ones behind it wait too.
#[derive(Debug)]
pub struct TtlvStream {
    max_bytes: usize,
    pending: Vec<u8>,
    closed: bool,
    /// The message in flight.
    in_flight: Option<KmsFuture>,
    /// Messages framed so far.
    framed: u64,
}

impl TtlvStream {
    /// A new connection taking messages of at most `max_bytes` (header included).
    pub fn new(max_bytes: usize) -> Self {
        TtlvStream {
            max_bytes,
            pending: Vec::new(),
            closed: false,
            in_flight: None,
            framed: 0,
        }
    }

    /// True while part of a message is buffered.
    pub fn has_partial(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Messages framed so far.
    pub fn framed(&self) -> u64 {
        self.framed
    }

    /// Feeds plaintext received from the peer; appends the answer to every message it
    /// completes (in order) to `out`. Once closed, input is ignored.
    pub fn on_plaintext<S: Store + 'static, L: RawMutex + 'static>(
        &mut self,
        app: &Arc<App<S, L>>,
        generation: Generation,
        peer: &Peer,
        env: &mut Env<'_>,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Outcome {
        if !self.closed {
            crate::wipe::extend(&mut self.pending, input);
        }
        self.drive(app, generation, peer, env, out)
    }

    /// True while a message waits on the store.
    pub fn is_waiting(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Polls the message in flight, then frames and answers the messages buffered behind it,
    /// until one waits or none is complete.
    pub fn drive<S: Store + 'static, L: RawMutex + 'static>(
        &mut self,
        app: &Arc<App<S, L>>,
        generation: Generation,
        peer: &Peer,
        env: &mut Env<'_>,
        out: &mut Vec<u8>,
    ) -> Outcome {
        let action = loop {
            if self.closed {
                break Action::Close;
            }
            if let Some(future) = &mut self.in_flight {
                let Poll::Ready(response) = future.poll() else {
                    return Outcome {
                        action: Action::Continue,
                        effect: None,
                        waiting: true,
                    };
                };
                self.in_flight = None;
                crate::wipe::extend(out, &response.body);
                if response.close {
                    break Action::Close;
                }
            }
            let len = match message_len(&self.pending, self.max_bytes) {
                Ok(Some(len)) if len <= self.pending.len() => len,
                Ok(_) => break Action::Continue,
                Err(e) => {
                    let e = crate::KmsError::MalformedBinary(e);
                    if let Ok(b) =
                        crate::kmip::binary::to_vec(&crate::kmip_error_response(env.now, &e))
                    {
                        crate::wipe::extend(out, &b);
                    }
                    break Action::Close;
                }
            };
            let message = self
                .pending
                .get(..len)
                .map(<[u8]>::to_vec)
                .unwrap_or_default();
            // Messages can carry key material: wipe what was consumed and what the shift
            // leaves behind.
            crate::wipe::drain_front(&mut self.pending, len);
            self.framed += 1;
            match app.handle_ttlv(generation, peer, env, message) {
                Handled::Ready(response, _) => {
                    crate::wipe::extend(out, &response.body);
                    if response.close {
                        break Action::Close;
                    }
                }
                Handled::Pending(future) => self.in_flight = Some(future),
            }
        };
        if action == Action::Close {
            self.closed = true;
            self.in_flight = None;
            self.pending.zeroize();
        }
        Outcome {
            action,
            effect: None,
            waiting: false,
        }
    }
}

impl Drop for TtlvStream {
    fn drop(&mut self) {
        self.pending.zeroize();
    }
}

/// The framing of a connection: HTTP, or binary TTLV on the KMIP listener.
#[derive(Debug)]
enum Framing {
    Http(Http),
    Ttlv(TtlvStream),
}

/// Why a connection could not be accepted.
#[derive(Debug, Clone)]
pub enum AcceptError {
    /// The App serves nothing on this listener (the RA-TLS port was closed).
    NotListening,
    /// rustls refused to create the connection.
    Tls(TlsError),
}

impl fmt::Display for AcceptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcceptError::NotListening => f.write_str("nothing is served on this listener"),
            AcceptError::Tls(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for AcceptError {}

/// The outcome of [`Conn::on_tls`].
#[derive(Debug, Clone)]
#[must_use]
pub struct Progress {
    /// Send [`Conn::pending_tls`], then close the socket.
    pub close: bool,
    /// Something the driver must do ([`Effect`]).
    pub effect: Option<Effect>,
    /// The TLS layer failed (garbage, bad certificate, limits); a fatal alert may be pending.
    pub tls_error: Option<TlsError>,
    /// A KMS request waits on the store: call [`Conn::poll`] on a later round (and do not feed
    /// more input until it is done).
    pub waiting: bool,
}

static NO_PEER: Peer = Peer {
    user: None,
    spki_der: None,
};

/// One TLS connection of a server: TLS, framing, the peer's identity, the phase it belongs to.
#[derive(Debug)]
pub struct Conn {
    tls: TlsConn,
    framing: Framing,
    listener: Listener,
    generation: Generation,
    peer: Option<Peer>,
    close_after_write: bool,
}

impl Conn {
    /// A new connection on `listener`, with the TLS configuration of the App's current phase.
    pub fn accept<S: Store, L: RawMutex>(
        app: &App<S, L>,
        listener: Listener,
    ) -> Result<Self, AcceptError> {
        let (config, generation) = app.accept(listener).ok_or(AcceptError::NotListening)?;
        Ok(Conn {
            tls: TlsConn::new(&config).map_err(AcceptError::Tls)?,
            framing: match listener {
                Listener::Kmip => Framing::Ttlv(TtlvStream::new(app.ttlv_max_bytes())),
                _ => Framing::Http(Http::new(app.http_limits(listener, generation))),
            },
            listener,
            generation,
            peer: None,
            close_after_write: false,
        })
    }

    /// Feeds ciphertext received from the peer: handshake, then requests to the [`App`].
    pub fn on_tls<S: Store + 'static, L: RawMutex + 'static>(
        &mut self,
        app: &Arc<App<S, L>>,
        env: &mut Env<'_>,
        input: &[u8],
    ) -> Progress {
        app.set_time(env.now);
        let mut plain = Vec::new();
        if let Err(e) = self.tls.read_tls(input, &mut plain) {
            plain.zeroize();
            return Progress {
                close: true,
                effect: None,
                tls_error: Some(e),
                waiting: false,
            };
        }
        if self.peer.is_none() && self.tls.state() != TlsState::Handshaking {
            self.peer = Some(app.peer(self.generation, self.tls.peer_certificate()));
        }
        let mut out = Vec::new();
        let outcome = if plain.is_empty() || self.close_after_write {
            Outcome {
                action: Action::Continue,
                effect: None,
                waiting: self.is_waiting(),
            }
        } else {
            let peer = self.peer.as_ref().unwrap_or(&NO_PEER);
            match &mut self.framing {
                Framing::Http(h) => h.on_plaintext(
                    app,
                    self.listener,
                    self.generation,
                    peer,
                    env,
                    &plain,
                    &mut out,
                ),
                Framing::Ttlv(t) => {
                    t.on_plaintext(app, self.generation, peer, env, &plain, &mut out)
                }
            }
        };
        plain.zeroize();
        self.finish(outcome, out)
    }

    /// Polls the KMS request in flight (and the requests buffered behind it).
    pub fn poll<S: Store + 'static, L: RawMutex + 'static>(
        &mut self,
        app: &Arc<App<S, L>>,
        env: &mut Env<'_>,
    ) -> Progress {
        let mut out = Vec::new();
        let peer = self.peer.as_ref().unwrap_or(&NO_PEER);
        let outcome = match &mut self.framing {
            Framing::Http(h) => h.drive(app, self.listener, self.generation, peer, env, &mut out),
            Framing::Ttlv(t) => t.drive(app, self.generation, peer, env, &mut out),
        };
        self.finish(outcome, out)
    }

    /// True while a KMS request waits on the store.
    pub fn is_waiting(&self) -> bool {
        match &self.framing {
            Framing::Http(h) => h.is_waiting(),
            Framing::Ttlv(t) => t.is_waiting(),
        }
    }

    /// Where the connection is, for its deadlines ([`crate::pace`]).
    pub fn phase(&self) -> Phase {
        let (request, partial) = match &self.framing {
            Framing::Http(h) => (h.framed(), h.has_partial()),
            Framing::Ttlv(t) => (t.framed(), t.has_partial()),
        };
        if self.tls.state() == TlsState::Handshaking {
            Phase::Handshake
        } else if !self.pending_tls().is_empty() {
            Phase::Sending { request }
        } else if self.is_waiting() {
            Phase::Waiting
        } else if self.tls.has_partial_input() || partial {
            Phase::Receiving { request }
        } else {
            Phase::Idle
        }
    }

    /// Encrypts the output; closes when asked or when the peer sent close_notify.
    fn finish(&mut self, outcome: Outcome, mut out: Vec<u8>) -> Progress {
        let written = self.tls.write_plaintext(&out);
        out.zeroize();
        if let Err(e) = written {
            return Progress {
                close: true,
                effect: outcome.effect,
                tls_error: Some(e),
                waiting: false,
            };
        }
        // Closing, or the peer sent close_notify (answer with ours, RFC 8446 §6.1) once nothing
        // is in flight.
        let close = outcome.action == Action::Close || (self.tls.is_finished() && !outcome.waiting);
        if close && !self.close_after_write {
            let _ = self.tls.send_close_notify();
            self.close_after_write = true;
        }
        Progress {
            close,
            effect: outcome.effect,
            tls_error: None,
            waiting: outcome.waiting && !close,
        }
    }

    /// Ciphertext waiting to be sent.
    pub fn pending_tls(&self) -> &[u8] {
        self.tls.pending_tls()
    }

    /// Marks `n` bytes of [`Conn::pending_tls`] as sent.
    pub fn consume_tls(&mut self, n: usize) {
        self.tls.consume_tls(n);
    }

    /// Sends close_notify (the server is closing the connection).
    pub fn close(&mut self) {
        if !self.close_after_write {
            let _ = self.tls.send_close_notify();
            self.close_after_write = true;
        }
    }

    /// True once the connection only has its last output left to send.
    pub fn is_closing(&self) -> bool {
        self.close_after_write || self.tls.is_finished()
    }

    /// The listener it was accepted on.
    pub fn listener(&self) -> Listener {
        self.listener
    }

    /// The phase it was accepted in.
    pub fn generation(&self) -> Generation {
        self.generation
    }

    /// The peer, once the handshake completed.
    pub fn peer(&self) -> Option<&Peer> {
        self.peer.as_ref()
    }

    /// The TLS state.
    pub fn tls_state(&self) -> TlsState {
        self.tls.state()
    }
}
#[cfg(test)]
mod tests {
    use alloc::format;
    use alloc::string::String;
    use alloc::vec::Vec;

    use super::*;
    use crate::app::{AppConfig, VERSION};
    use crate::store::memory::MemoryStore;

    use crate::crypto::testing::TestRng;

    struct Fixture {
        app: Arc<App<MemoryStore>>,
        rng: TestRng,
        conn: Http,
    }

    impl Fixture {
        fn new(limits: Limits) -> Self {
            Fixture {
                app: Arc::new(App::without_tls(MemoryStore::new(), AppConfig::default())),
                rng: TestRng(0x9E37_79B9_7F4A_7C15),
                conn: Http::new(limits),
            }
        }
        fn feed(&mut self, user: Option<&str>, input: &[u8]) -> (Action, Vec<u8>) {
            self.feed_on(Listener::Main, user, input)
        }
        fn feed_on(
            &mut self,
            listener: Listener,
            user: Option<&str>,
            input: &[u8],
        ) -> (Action, Vec<u8>) {
            let mut out = Vec::new();
            let mut env = Env {
                now: 1_700_000_000,
                rng: &mut self.rng,
            };
            let peer = Peer {
                user: user.map(String::from),
                spki_der: None,
            };
            let outcome = self.conn.on_plaintext(
                &self.app,
                listener,
                Generation::Serving,
                &peer,
                &mut env,
                input,
                &mut out,
            );
            // The memory store never waits.
            assert_eq!((outcome.effect, outcome.waiting), (None, false));
            (outcome.action, out)
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

    /// `POST /kmip/2_1` with a Create of an AES-256 key.
    fn create_request() -> Vec<u8> {
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
        req
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
        let req = create_request();
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

    /// One response's status, content type and raw body.
    fn raw_response(out: &[u8]) -> (u16, String, Vec<u8>) {
        let mut headers = [httparse::EMPTY_HEADER; 8];
        let mut r = httparse::Response::new(&mut headers);
        let httparse::Status::Complete(n) = r.parse(out).unwrap() else {
            panic!("partial")
        };
        let ct = r
            .headers
            .iter()
            .find(|h| h.name == "content-type")
            .map(|h| String::from_utf8(h.value.to_vec()).unwrap())
            .unwrap();
        (r.code.unwrap(), ct, out[n..].to_vec())
    }

    #[test]
    fn binary_kmip_through_the_router() {
        use crate::kmip::binary;
        use crate::kmip::json::Limits as TtlvLimits;
        use crate::kmip::ttlv::{EnumValue, Ttlv, Value};
        let en = |t: &str, c: u32| Ttlv::new(t, Value::Enumeration(EnumValue::Code(c)));
        let create = alloc::vec![
            en("ObjectType", 2),
            Ttlv::structure(
                "Attributes",
                alloc::vec![
                    en("CryptographicAlgorithm", 3),
                    Ttlv::int("CryptographicLength", 128)
                ],
            ),
        ];
        let msg = crate::kmip::message::request(2, 0, alloc::vec![(en("Operation", 1), create)]);
        let body = binary::to_vec(&msg).unwrap();
        let post = |path: &str, ct: &str, body: &[u8]| {
            let mut r = format!(
                "POST {path} HTTP/1.1\r\ncontent-type: {ct}\r\ncontent-length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            r.extend_from_slice(body);
            r
        };
        let mut f = Fixture::new(Limits::DEFAULT);
        for path in ["/kmip", "/kmip/2_1"] {
            let (_, out) = f.feed(
                Some("alice"),
                &post(path, "application/octet-stream", &body),
            );
            let (status, ct, b) = raw_response(&out);
            assert_eq!((status, ct.as_str()), (200, "application/octet-stream"));
            let r = binary::from_slice(&b, &TtlvLimits::default()).unwrap();
            assert_eq!(r.tag, "ResponseMessage");
            let item = r.get("BatchItem").unwrap();
            assert_eq!(
                item.get("ResultStatus").unwrap().value,
                Value::Enumeration(EnumValue::Code(0))
            );
        }
        // Garbage: 422 with a binary ResponseMessage naming Invalid Message.
        let (_, out) = f.feed(
            Some("alice"),
            &post(
                "/kmip",
                "Application/Octet-Stream; x=y",
                b"\x42\x00\x78\x01\x00",
            ),
        );
        let (status, ct, b) = raw_response(&out);
        assert_eq!((status, ct.as_str()), (422, "application/octet-stream"));
        let r = binary::from_slice(&b, &TtlvLimits::default()).unwrap();
        assert_eq!(
            r.get("BatchItem")
                .unwrap()
                .get("ResultReason")
                .unwrap()
                .value,
            Value::Enumeration(EnumValue::Code(4))
        );
        // No identity: 401, as for JSON.
        let (_, out) = f.feed(None, &post("/kmip", "application/octet-stream", &body));
        assert_eq!(raw_response(&out).0, 401);
    }

    /// A KMIP 2.1 RequestMessage holding one Create of an AES-128 key, in binary TTLV.
    fn ttlv_create() -> Vec<u8> {
        use crate::kmip::ttlv::{EnumValue, Ttlv, Value};
        let en = |t: &str, c: u32| Ttlv::new(t, Value::Enumeration(EnumValue::Code(c)));
        let create = alloc::vec![
            en("ObjectType", 2),
            Ttlv::structure(
                "Attributes",
                alloc::vec![
                    en("CryptographicAlgorithm", 3),
                    Ttlv::int("CryptographicLength", 128)
                ],
            ),
        ];
        let msg = crate::kmip::message::request(2, 1, alloc::vec![(en("Operation", 1), create)]);
        crate::kmip::binary::to_vec(&msg).unwrap()
    }

    /// Splits a TTLV output stream into its messages, decoded.
    fn ttlv_messages(mut out: &[u8]) -> Vec<crate::kmip::ttlv::Ttlv> {
        let mut v = Vec::new();
        while !out.is_empty() {
            let n = message_len(out, usize::MAX).unwrap().unwrap();
            v.push(crate::kmip::binary::from_slice(&out[..n], &Default::default()).unwrap());
            out = &out[n..];
        }
        v
    }

    fn result(m: &crate::kmip::ttlv::Ttlv, tag: &str) -> Option<u32> {
        match &m.get("BatchItem")?.get(tag)?.value {
            crate::kmip::ttlv::Value::Enumeration(crate::kmip::ttlv::EnumValue::Code(c)) => {
                Some(*c)
            }
            _ => None,
        }
    }

    struct TtlvFixture {
        app: Arc<App<MemoryStore>>,
        rng: TestRng,
        conn: TtlvStream,
    }

    impl TtlvFixture {
        fn new(max: usize) -> Self {
            TtlvFixture {
                app: Arc::new(App::without_tls(MemoryStore::new(), AppConfig::default())),
                rng: TestRng(7),
                conn: TtlvStream::new(max),
            }
        }
        fn feed(&mut self, user: Option<&str>, input: &[u8]) -> (Action, Vec<u8>) {
            let mut out = Vec::new();
            let mut env = Env {
                now: 1_700_000_000,
                rng: &mut self.rng,
            };
            let peer = Peer {
                user: user.map(String::from),
                spki_der: None,
            };
            let o = self.conn.on_plaintext(
                &self.app,
                Generation::Serving,
                &peer,
                &mut env,
                input,
                &mut out,
            );
            assert!(!o.waiting);
            (o.action, out)
        }
    }

    #[test]
    fn ttlv_stream_frames_by_header_in_any_split() {
        let one = ttlv_create();
        let mut two = one.clone();
        two.extend_from_slice(&one);
        // Byte by byte: nothing until each message is complete, then its answer.
        let mut f = TtlvFixture::new(1 << 20);
        let mut answers = Vec::new();
        for (i, b) in two.iter().enumerate() {
            let (action, out) = f.feed(Some("alice"), core::slice::from_ref(b));
            assert_eq!(action, Action::Continue);
            if i + 1 != one.len() && i + 1 != two.len() {
                assert!(out.is_empty(), "answer before the message was complete");
            }
            answers.extend_from_slice(&out);
        }
        let msgs = ttlv_messages(&answers);
        assert_eq!(msgs.len(), 2);
        for m in &msgs {
            assert_eq!(m.tag, "ResponseMessage");
            assert_eq!(result(m, "ResultStatus"), Some(0));
        }
        // Both pipelined in one read.
        let mut f = TtlvFixture::new(1 << 20);
        let (action, out) = f.feed(Some("alice"), &two);
        assert_eq!(action, Action::Continue);
        assert_eq!(ttlv_messages(&out).len(), 2);
    }

    #[test]
    fn ttlv_stream_refuses_what_is_not_a_kmip_message() {
        // HTTP on the KMIP port: Invalid Message, then close; later input is ignored.
        let mut f = TtlvFixture::new(1 << 20);
        let (action, out) = f.feed(Some("alice"), b"GET /health HTTP/1.1\r\n\r\n");
        assert_eq!(action, Action::Close);
        let m = ttlv_messages(&out);
        assert_eq!(result(&m[0], "ResultReason"), Some(4));
        assert_eq!(
            f.feed(Some("alice"), &ttlv_create()),
            (Action::Close, Vec::new())
        );
        // A header announcing more than the limit: refused before the body arrives.
        let msg = ttlv_create();
        let mut f = TtlvFixture::new(msg.len() - 8);
        let (action, out) = f.feed(Some("alice"), &msg[..8]);
        assert_eq!(action, Action::Close);
        assert_eq!(result(&ttlv_messages(&out)[0], "ResultReason"), Some(4));
        // A well-framed message whose inside is not TTLV: answered, connection kept.
        let mut f = TtlvFixture::new(1 << 20);
        let bad = [
            0x42, 0x00, 0x78, 0x01, 0, 0, 0, 8, 0x42, 0, 0x77, 0x01, 0, 0, 0, 9,
        ];
        let (action, out) = f.feed(Some("alice"), &bad);
        assert_eq!(action, Action::Continue);
        assert_eq!(result(&ttlv_messages(&out)[0], "ResultReason"), Some(4));
        // No identity: Authentication Not Successful, then close.
        let mut f = TtlvFixture::new(1 << 20);
        let (action, out) = f.feed(None, &ttlv_create());
        assert_eq!(action, Action::Close);
        assert_eq!(result(&ttlv_messages(&out)[0], "ResultReason"), Some(3));
    }

    #[test]
    fn attestation_needs_a_bootstrap_identity_and_ratls_serves_nothing_else() {
        let mut f = Fixture::new(Limits::DEFAULT);
        let (_, out) = f.feed(None, b"GET /attestation?nonce=00 HTTP/1.1\r\n\r\n");
        let (status, body) = responses(&out).remove(0);
        assert_eq!(status, 404);
        assert!(body.contains("started without bootstrap"), "{body}");
        let (_, out) = f.feed_on(
            Listener::RaTls,
            Some("alice"),
            b"GET /health HTTP/1.1\r\n\r\nPOST /attestation HTTP/1.1\r\ncontent-length: 0\r\n\r\n",
        );
        let r = responses(&out);
        assert_eq!(
            (r[0].0, r[0].1.as_str()),
            (404, "only GET /attestation on this port")
        );
        assert_eq!(r[1].0, 405);
    }

    #[test]
    fn requests_of_several_connections_wait_on_the_store_together() {
        use crate::store::testing::SlowStore;
        let store = SlowStore {
            inner: MemoryStore::new(),
            delay: 3,
            pendings: core::cell::Cell::new(0),
        };
        // Single-threaded test: the fake store is not `Sync`, the App only needs an `Arc`.
        #[allow(clippy::arc_with_non_send_sync)]
        let app: Arc<App<SlowStore>> = Arc::new(App::without_tls(store, AppConfig::default()));
        let mut rng = TestRng(7);
        let req = create_request();
        // Two pipelined requests on the first connection, one on the second.
        let mut twice = req.clone();
        twice.extend_from_slice(&req);
        let peers = [
            Peer {
                user: Some("alice".into()),
                spki_der: None,
            },
            Peer {
                user: Some("bob".into()),
                spki_der: None,
            },
        ];
        let mut conns = [Http::new(Limits::DEFAULT), Http::new(Limits::DEFAULT)];
        let mut outs = [Vec::new(), Vec::new()];
        let mut waiting = [false; 2];
        for (i, input) in [&twice, &req].into_iter().enumerate() {
            let mut env = Env {
                now: 1_700_000_000,
                rng: &mut rng,
            };
            let o = conns[i].on_plaintext(
                &app,
                Listener::Main,
                Generation::Serving,
                &peers[i],
                &mut env,
                input,
                &mut outs[i],
            );
            waiting[i] = o.waiting;
        }
        // Both connections have a request in flight at the same time, nothing answered yet.
        assert_eq!(waiting, [true, true]);
        assert!(outs.iter().all(Vec::is_empty));
        let mut rounds = 0;
        while waiting.iter().any(|w| *w) {
            rounds += 1;
            assert!(rounds < 1000, "no progress");
            for i in 0..2 {
                let mut env = Env {
                    now: 1_700_000_000,
                    rng: &mut rng,
                };
                let o = conns[i].drive(
                    &app,
                    Listener::Main,
                    Generation::Serving,
                    &peers[i],
                    &mut env,
                    &mut outs[i],
                );
                assert_eq!(o.action, Action::Continue);
                waiting[i] = o.waiting;
            }
        }
        let a = responses(&outs[0]);
        let b = responses(&outs[1]);
        assert_eq!(a.len(), 2, "both pipelined requests answered in order");
        assert_eq!(b.len(), 1);
        for (status, body) in a.iter().chain(&b) {
            assert_eq!(*status, 200, "{body}");
            assert!(body.starts_with(r#"{"tag":"CreateResponse""#), "{body}");
        }
        assert!(app.kms().is_some_and(|k| k.store().pendings.get() > 0));
    }
}
