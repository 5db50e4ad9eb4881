//! One client connection, sans-IO: TLS ([`crate::tls::TlsConn`]) → HTTP/1.1 framing ([`Http`]) →
//! the [`App`]. The one connection type of both servers: the driver feeds received ciphertext to
//! [`Conn::on_tls`], sends [`Conn::pending_tls`], and closes the socket when told.
//!
//! Requests are framed with [`crate::http::parse_request`] (limits per phase from
//! [`App::http_limits`]); pipelined requests are answered in order; a request that cannot be
//! framed gets its status (400, 411, 413, 431, 505) and closes the connection. Consumed
//! plaintext is wiped (requests and responses can carry key material).

use alloc::format;
use alloc::vec::Vec;
use core::fmt;

use lock_api::RawMutex;
use zeroize::Zeroize;

use crate::Env;
use crate::app::{App, Effect, Generation, Listener, Peer};
use crate::http::{Limits, Response, parse_request};
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

/// HTTP/1.1 framing of one connection's plaintext, routed to the [`App`].
#[derive(Debug)]
pub struct Http {
    limits: Limits,
    pending: Vec<u8>,
    closed: bool,
}

impl Http {
    /// A new connection with the given request limits.
    pub fn new(limits: Limits) -> Self {
        Http {
            limits,
            pending: Vec::new(),
            closed: false,
        }
    }

    /// Feeds plaintext received from the peer; appends the response to every request it
    /// completes (in order) to `out`. Once closed, input is ignored.
    #[allow(clippy::too_many_arguments)]
    pub fn on_plaintext<S: Store, L: RawMutex>(
        &mut self,
        app: &App<S, L>,
        listener: Listener,
        generation: Generation,
        peer: &Peer,
        env: &mut Env<'_>,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> (Action, Option<Effect>) {
        if self.closed {
            return (Action::Close, None);
        }
        self.pending.extend_from_slice(input);
        let mut consumed = 0;
        let mut effect = None;
        let action = loop {
            let rest = self.pending.get(consumed..).unwrap_or(&[]);
            match parse_request(rest, &self.limits) {
                Ok(None) => break Action::Continue,
                Ok(Some((request, used))) => {
                    consumed += used;
                    let (mut response, e) = app.handle(listener, generation, peer, env, &request);
                    effect = effect.or(e);
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
        if let Some(done) = self.pending.get_mut(..consumed) {
            done.zeroize();
        }
        self.pending.drain(..consumed);
        if action == Action::Close {
            self.closed = true;
            self.pending.zeroize();
        }
        (action, effect)
    }
}

impl Drop for Http {
    fn drop(&mut self) {
        self.pending.zeroize();
    }
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
}

static NO_PEER: Peer = Peer {
    user: None,
    spki_der: None,
};

/// One TLS connection of a server: TLS, framing, the peer's identity, the phase it belongs to.
#[derive(Debug)]
pub struct Conn {
    tls: TlsConn,
    http: Http,
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
            http: Http::new(app.http_limits(listener, generation)),
            listener,
            generation,
            peer: None,
            close_after_write: false,
        })
    }

    /// Feeds ciphertext received from the peer: handshake, then requests to the [`App`].
    pub fn on_tls<S: Store, L: RawMutex>(
        &mut self,
        app: &App<S, L>,
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
            };
        }
        if self.peer.is_none() && self.tls.state() != TlsState::Handshaking {
            self.peer = Some(app.peer(self.generation, self.tls.peer_certificate()));
        }
        let mut out = Vec::new();
        let mut effect = None;
        let mut close = self.close_after_write;
        if !plain.is_empty() && !close {
            let (action, e) = self.http.on_plaintext(
                app,
                self.listener,
                self.generation,
                self.peer.as_ref().unwrap_or(&NO_PEER),
                env,
                &plain,
                &mut out,
            );
            effect = e;
            close = action == Action::Close;
        }
        plain.zeroize();
        let written = self.tls.write_plaintext(&out);
        out.zeroize();
        if let Err(e) = written {
            return Progress {
                close: true,
                effect,
                tls_error: Some(e),
            };
        }
        // Closing, or the peer sent close_notify: answer with ours (RFC 8446 §6.1).
        let close = close || self.tls.is_finished();
        if close && !self.close_after_write {
            let _ = self.tls.send_close_notify();
            self.close_after_write = true;
        }
        Progress {
            close,
            effect,
            tls_error: None,
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
