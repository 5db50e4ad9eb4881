//! TLS termination, sans-IO: the only module of the core that names rustls (feature `tls`).
//!
//! It wraps the rustls 0.23 *unbuffered* server API (`UnbufferedServerConnection`, the surface
//! rustls offers without `std`), with the ring provider and a [`Clock`] supplied by the caller
//! (the image's RTC, untrusted; it only matters for client-certificate validity periods).
//!
//! - [`TlsConfig`]: server certificate chain + key, client authentication ([`ClientAuth`]:
//!   none, WebPKI against a CA, or a pinned SubjectPublicKeyInfo for the provisioner), limits.
//! - [`TlsConn`]: one connection. Ciphertext in ([`TlsConn::read_tls`]) gives plaintext out;
//!   plaintext in ([`TlsConn::write_plaintext`]) gives ciphertext that the caller sends
//!   ([`TlsConn::pending_tls`], [`TlsConn::consume_tls`]). Buffers are bounded by
//!   [`TlsLimits`]; garbage gets a typed [`TlsError`] (and a fatal alert when rustls queued one),
//!   never a panic.
//! - [`crate::conn::Conn`] (outside this module) puts HTTP framing and the [`crate::app::App`]
//!   on top of a [`TlsConn`]: what both servers drive.
//!
//! Session resumption: none by default (rustls has no ticketer without std, and the image has
//! no trusted clock to rotate ticket keys); a std host hands a ticketer to
//! [`TlsConfig::with_tickets`] (stateless tickets, TLS 1.3 and 1.2; no server-side cache).
//!
//! Not done here: sockets (the caller moves bytes), early data, client side.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
    UnixTime,
};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{NoServerSessionStorage, UnbufferedServerConnection, WebPkiClientVerifier};
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, UnbufferedStatus};
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
};
use zeroize::Zeroize;

use crate::x509::{PrivateKey, spki_der, subject_common_name};

// ---------------------------------------------------------------------------------------------
// Errors

/// What went wrong building a configuration or driving a connection.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum TlsError {
    /// The configuration was refused (key does not match the certificate, unusable CA, ...).
    Config(rustls::Error),
    /// A configuration input is malformed (context in the message).
    BadInput(&'static str),
    /// The peer broke the protocol or failed authentication; a fatal alert is in
    /// [`TlsConn::pending_tls`] when rustls produced one. The connection is dead.
    Protocol(rustls::Error),
    /// The peer sent a handshake message larger than [`TlsLimits::max_incoming`].
    IncomingTooLarge,
    /// More than [`TlsLimits::max_outgoing`] ciphertext waits to be sent (the peer is not reading).
    OutgoingFull,
    /// Application data was written before the handshake allows it.
    NotReady,
    /// The connection already failed or was closed.
    Closed,
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Config(e) => write!(f, "TLS configuration refused: {e}"),
            TlsError::BadInput(m) => write!(f, "TLS configuration input: {m}"),
            TlsError::Protocol(e) => write!(f, "TLS: {e}"),
            TlsError::IncomingTooLarge => {
                f.write_str("TLS: peer message exceeds the incoming buffer limit")
            }
            TlsError::OutgoingFull => f.write_str("TLS: outgoing buffer limit reached"),
            TlsError::NotReady => {
                f.write_str("TLS: application data before the handshake completed")
            }
            TlsError::Closed => f.write_str("TLS: connection closed"),
        }
    }
}

impl core::error::Error for TlsError {}

impl TlsError {
    /// The peer ended the handshake on purpose (it sent an alert, e.g. a client that only
    /// fetched the certificate): a normal end, not worth a log line.
    pub fn is_peer_abort(&self) -> bool {
        matches!(self, TlsError::Protocol(rustls::Error::AlertReceived(_)))
    }
}

// ---------------------------------------------------------------------------------------------
// Time

/// Wall-clock source for certificate validity checks. Untrusted (the host sets the RTC); return
/// `None` when unknown, which makes rustls refuse time-dependent validation.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Seconds since the Unix epoch.
    fn unix_seconds(&self) -> Option<u64>;
}

/// A [`Clock`] the driver sets from its own time source (e.g. once per poll loop iteration).
#[derive(Debug, Default)]
pub struct SharedClock(AtomicU64);

impl SharedClock {
    /// A clock that reads "unknown" until [`SharedClock::set`] is called.
    pub const fn new() -> Self {
        SharedClock(AtomicU64::new(0))
    }

    /// Sets the current time (Unix seconds); negative values mean "unknown".
    pub fn set(&self, unix_seconds: i64) {
        self.0
            .store(u64::try_from(unix_seconds).unwrap_or(0), Ordering::Relaxed);
    }
}

impl Clock for SharedClock {
    fn unix_seconds(&self) -> Option<u64> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            t => Some(t),
        }
    }
}

/// Adapter from our [`Clock`] to rustls' time provider.
#[derive(Debug)]
struct ClockTime(Arc<dyn Clock>);

impl rustls::time_provider::TimeProvider for ClockTime {
    fn current_time(&self) -> Option<UnixTime> {
        self.0
            .unix_seconds()
            .map(|s| UnixTime::since_unix_epoch(Duration::from_secs(s)))
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration

/// Who the server asks for a client certificate, and what it accepts.
#[derive(Debug, Clone)]
pub enum ClientAuth {
    /// No client certificate is requested (identity comes from elsewhere, or there is none).
    None,
    /// Client certificates must chain (WebPKI path validation, validity period from the
    /// [`Clock`]) to one of these CA certificates (DER). When `mandatory` is false a client may
    /// connect without one (then it has no identity).
    WebPki {
        /// Trust anchors, DER.
        roots: Vec<Vec<u8>>,
        /// Refuse the handshake without a client certificate.
        mandatory: bool,
    },
    /// The bootstrap port: a certificate is requested but not required (so `GET /attestation`
    /// stays public); any well-formed certificate is accepted and the handshake proves possession
    /// of its key. No CA is involved: the bootstrap core checks the pin, or the key the session is
    /// locked to ([`crate::bootstrap::ProvisionerPolicy::authorize`]), on the SubjectPublicKeyInfo
    /// this handshake proved, and answers a clear 403 to anyone else.
    ProofOfPossession,
}

/// Per-connection buffer limits.
#[derive(Debug, Clone, Copy)]
pub struct TlsLimits {
    /// Ciphertext buffered while a record or handshake message is incomplete. A TLS record is at
    /// most 16 KiB + 256 + 5 (RFC 8446 §5.2); a handshake message spanning records (a long
    /// client certificate chain) needs more. Default 64 KiB.
    pub max_incoming: usize,
    /// Ciphertext produced but not yet taken by [`TlsConn::consume_tls`]. Default 1 MiB.
    pub max_outgoing: usize,
}

impl Default for TlsLimits {
    fn default() -> Self {
        TlsLimits {
            max_incoming: 64 * 1024,
            max_outgoing: 1024 * 1024,
        }
    }
}

/// A server configuration: shared by all connections of one listener.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    inner: Arc<ServerConfig>,
    limits: TlsLimits,
}

/// The crypto provider: ring, the one used by the host server too.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl TlsConfig {
    /// Builds a configuration from the certificate chain (DER, leaf first), the leaf's private
    /// key, the client authentication policy, a clock and the limits. TLS 1.3 and
    /// 1.2 with rustls' safe defaults, ALPN `http/1.1`, no resumption, no early data.
    pub fn new(
        cert_chain: &[Vec<u8>],
        key: &PrivateKey,
        client_auth: ClientAuth,
        clock: Arc<dyn Clock>,
        limits: TlsLimits,
    ) -> Result<Self, TlsError> {
        if cert_chain.is_empty() {
            return Err(TlsError::BadInput("empty certificate chain"));
        }
        if limits.max_incoming < MIN_INCOMING {
            return Err(TlsError::BadInput("max_incoming is below one TLS record"));
        }
        let provider = provider();
        let builder =
            ServerConfig::builder_with_details(provider.clone(), Arc::new(ClockTime(clock)))
                .with_safe_default_protocol_versions()
                .map_err(TlsError::Config)?;
        let builder = match client_auth {
            ClientAuth::None => builder.with_no_client_auth(),
            ClientAuth::WebPki { roots, mandatory } => {
                let mut store = RootCertStore::empty();
                for ca in roots {
                    store
                        .add(CertificateDer::from(ca))
                        .map_err(TlsError::Config)?;
                }
                let b = WebPkiClientVerifier::builder_with_provider(Arc::new(store), provider);
                let b = if mandatory {
                    b
                } else {
                    b.allow_unauthenticated()
                };
                let verifier = b
                    .build()
                    .map_err(|_| TlsError::BadInput("client CA set refused"))?;
                builder.with_client_cert_verifier(verifier)
            }
            ClientAuth::ProofOfPossession => {
                builder.with_client_cert_verifier(Arc::new(ProofOfPossession { provider }))
            }
        };
        let chain = cert_chain
            .iter()
            .map(|c| CertificateDer::from(c.clone()))
            .collect();
        let key = match key {
            PrivateKey::Pkcs8(d) => PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(d.clone())),
            PrivateKey::Sec1(d) => PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(d.clone())),
            PrivateKey::Pkcs1(d) => PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(d.clone())),
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(TlsError::Config)?;
        config.alpn_protocols = alloc::vec![b"http/1.1".to_vec()];
        // Bounded memory, same behaviour with and without std: no session cache, no tickets.
        config.session_storage = Arc::new(NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        config.max_early_data_size = 0;
        Ok(TlsConfig {
            inner: Arc::new(config),
            limits,
        })
    }

    /// The same configuration, resuming sessions with stateless tickets from `ticketer` (the
    /// host's `rustls::crypto::ring::Ticketer`, whose keys live in memory and rotate every 6
    /// hours): a reconnecting client skips the certificate exchange and signatures. The ticket
    /// carries the client certificate chain of the full handshake, so a resumed connection runs
    /// as the same user. Sends one TLS 1.3 ticket per full handshake.
    pub fn with_tickets(self, ticketer: Arc<dyn rustls::server::ProducesTickets>) -> Self {
        let mut config = (*self.inner).clone();
        config.ticketer = ticketer;
        config.send_tls13_tickets = 1;
        TlsConfig {
            inner: Arc::new(config),
            limits: self.limits,
        }
    }

    /// The limits each connection gets.
    pub fn limits(&self) -> TlsLimits {
        self.limits
    }
}

/// One full record: 2^14 plaintext + 256 expansion + 5 header (RFC 8446 §5.2).
const MIN_INCOMING: usize = 16 * 1024 + 256 + 5;

/// Client-certificate verifier of [`ClientAuth::ProofOfPossession`].
#[derive(Debug)]
struct ProofOfPossession {
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for ProofOfPossession {
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
        spki_der(end_entity.as_ref()).ok_or(rustls::Error::InvalidCertificate(
            rustls::CertificateError::BadEncoding,
        ))?;
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

// ---------------------------------------------------------------------------------------------
// Certificates

// ---------------------------------------------------------------------------------------------
// One connection

/// Where a [`TlsConn`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsState {
    /// The handshake is in progress.
    Handshaking,
    /// Application data flows both ways.
    Open,
    /// The peer sent close_notify; we may still send.
    PeerClosed,
    /// Both sides closed, or the connection failed: send what is pending, then close the socket.
    Closed,
}

/// What the state loop should do after one rustls state.
enum Next {
    Again,
    Stop,
}

/// At most this many rustls states per call: a guard against a loop that makes no progress.
const MAX_STEPS: usize = 4096;

/// One server-side TLS connection, sans-IO. See the module docs.
pub struct TlsConn {
    conn: UnbufferedServerConnection,
    limits: TlsLimits,
    /// Received ciphertext not yet consumed by rustls (a partial record or handshake message).
    incoming: Vec<u8>,
    /// Ciphertext to send, in order.
    outgoing: Vec<u8>,
    /// Plaintext decrypted while writing (delivered by the next `read_tls`).
    stash: Vec<u8>,
    peer_closed: bool,
    closed: bool,
    failed: bool,
    handshaking: bool,
}

impl fmt::Debug for TlsConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConn")
            .field("state", &self.state())
            .field("incoming", &self.incoming.len())
            .field("outgoing", &self.outgoing.len())
            .finish_non_exhaustive()
    }
}

impl TlsConn {
    /// A new connection waiting for a ClientHello.
    pub fn new(config: &TlsConfig) -> Result<Self, TlsError> {
        Ok(TlsConn {
            conn: UnbufferedServerConnection::new(config.inner.clone())
                .map_err(TlsError::Config)?,
            limits: config.limits,
            incoming: Vec::new(),
            outgoing: Vec::new(),
            stash: Vec::new(),
            peer_closed: false,
            closed: false,
            failed: false,
            handshaking: true,
        })
    }

    /// True while part of a TLS record (or handshake message) is buffered.
    pub fn has_partial_input(&self) -> bool {
        !self.incoming.is_empty()
    }

    /// Where the connection is.
    pub fn state(&self) -> TlsState {
        if self.closed || self.failed {
            TlsState::Closed
        } else if self.peer_closed {
            TlsState::PeerClosed
        } else if self.handshaking {
            TlsState::Handshaking
        } else {
            TlsState::Open
        }
    }

    /// True once nothing more will be sent or received: the caller closes the socket after
    /// sending [`TlsConn::pending_tls`].
    pub fn is_finished(&self) -> bool {
        self.closed || self.failed || self.peer_closed
    }

    /// Feeds ciphertext received from the peer (all of it is consumed) and appends the
    /// application data it completes to `plaintext`. Handshake replies go to
    /// [`TlsConn::pending_tls`].
    ///
    /// On error the connection is dead: send what [`TlsConn::pending_tls`] holds (an alert, when
    /// rustls queued one), then close.
    pub fn read_tls(&mut self, mut input: &[u8], plaintext: &mut Vec<u8>) -> Result<(), TlsError> {
        if self.failed || self.closed {
            return Err(TlsError::Closed);
        }
        crate::wipe::append(plaintext, &mut self.stash);
        loop {
            let room = self.limits.max_incoming.saturating_sub(self.incoming.len());
            if room == 0 {
                self.failed = true;
                return Err(TlsError::IncomingTooLarge);
            }
            let (now, rest) = input.split_at(room.min(input.len()));
            crate::wipe::extend(&mut self.incoming, now);
            input = rest;
            self.pump(plaintext, None, false)?;
            if input.is_empty() {
                return Ok(());
            }
        }
    }

    /// Encrypts application data into [`TlsConn::pending_tls`].
    pub fn write_plaintext(&mut self, data: &[u8]) -> Result<(), TlsError> {
        if self.failed || self.closed {
            return Err(TlsError::Closed);
        }
        if data.is_empty() {
            return Ok(());
        }
        let mut stash = core::mem::take(&mut self.stash);
        let r = self.pump(&mut stash, Some(data), false);
        self.stash = stash;
        r
    }

    /// Queues a close_notify alert (the connection then accepts no more application data).
    pub fn send_close_notify(&mut self) -> Result<(), TlsError> {
        if self.failed || self.closed {
            return Ok(());
        }
        let mut stash = core::mem::take(&mut self.stash);
        let r = self.pump(&mut stash, None, true);
        self.stash = stash;
        self.closed = true;
        r
    }

    /// Ciphertext waiting to be sent, oldest first.
    pub fn pending_tls(&self) -> &[u8] {
        &self.outgoing
    }

    /// Marks `n` bytes of [`TlsConn::pending_tls`] as sent.
    pub fn consume_tls(&mut self, n: usize) {
        let n = n.min(self.outgoing.len());
        self.outgoing.drain(..n);
    }

    /// The verified client certificate (leaf, DER), if the client presented one.
    pub fn peer_certificate(&self) -> Option<&[u8]> {
        if self.handshaking {
            return None;
        }
        self.conn.peer_certificates()?.first().map(|c| c.as_ref())
    }

    /// SubjectPublicKeyInfo DER of the verified client certificate.
    pub fn peer_spki_der(&self) -> Option<Vec<u8>> {
        spki_der(self.peer_certificate()?)
    }

    /// Subject CN of the verified client certificate: the user identity of the KMS.
    pub fn peer_common_name(&self) -> Option<String> {
        subject_common_name(self.peer_certificate()?)
    }

    /// Drives rustls' state machine until it needs more input (or, with `app_data`, until that
    /// data is encrypted; with `close`, until close_notify is queued).
    fn pump(
        &mut self,
        plaintext: &mut Vec<u8>,
        mut app_data: Option<&[u8]>,
        mut close: bool,
    ) -> Result<(), TlsError> {
        for _ in 0..MAX_STEPS {
            let UnbufferedStatus { mut discard, state } =
                self.conn.process_tls_records(&mut self.incoming);
            let outcome = match state {
                Err(e) => Err(TlsError::Protocol(e)),
                Ok(ConnectionState::ReadTraffic(mut r)) => {
                    let mut res = Ok(Next::Again);
                    while let Some(rec) = r.next_record() {
                        match rec {
                            Ok(rec) => {
                                discard = discard.saturating_add(rec.discard);
                                crate::wipe::extend(plaintext, rec.payload);
                            }
                            Err(e) => {
                                res = Err(TlsError::Protocol(e));
                                break;
                            }
                        }
                    }
                    res
                }
                Ok(ConnectionState::EncodeTlsData(mut e)) => {
                    encode_into(&mut self.outgoing, self.limits.max_outgoing, |buf| match e
                        .encode(buf)
                    {
                        Ok(n) => Ok(n),
                        Err(EncodeError::InsufficientSize(s)) => Err(Some(s.required_size)),
                        Err(_) => Err(None),
                    })
                    .map(|()| Next::Again)
                }
                Ok(ConnectionState::TransmitTlsData(t)) => {
                    // The encoded records are queued in `outgoing`, which the caller sends in
                    // order before anything written later: that is "transmitted" for rustls.
                    t.done();
                    Ok(Next::Again)
                }
                Ok(ConnectionState::BlockedHandshake) => {
                    if app_data.is_some() {
                        Err(TlsError::NotReady)
                    } else {
                        Ok(Next::Stop)
                    }
                }
                Ok(ConnectionState::WriteTraffic(mut w)) => {
                    self.handshaking = false;
                    if let Some(data) = app_data.take() {
                        encode_into(&mut self.outgoing, self.limits.max_outgoing, |buf| match w
                            .encrypt(data, buf)
                        {
                            Ok(n) => Ok(n),
                            Err(EncryptError::InsufficientSize(s)) => Err(Some(s.required_size)),
                            Err(_) => Err(None),
                        })
                        .map(|()| Next::Again)
                    } else if close {
                        close = false;
                        encode_into(&mut self.outgoing, self.limits.max_outgoing, |buf| match w
                            .queue_close_notify(buf)
                        {
                            Ok(n) => Ok(n),
                            Err(EncryptError::InsufficientSize(s)) => Err(Some(s.required_size)),
                            Err(_) => Err(None),
                        })
                        .map(|()| Next::Stop)
                    } else {
                        Ok(Next::Stop)
                    }
                }
                Ok(ConnectionState::PeerClosed) => {
                    self.peer_closed = true;
                    Ok(Next::Again)
                }
                Ok(ConnectionState::Closed) => {
                    self.closed = true;
                    Ok(Next::Stop)
                }
                // Early data is disabled (max_early_data_size = 0); anything else is unknown.
                Ok(_) => Err(TlsError::Protocol(rustls::Error::General(String::from(
                    "unexpected TLS state",
                )))),
            };
            // rustls decrypts records in place: what is discarded held plaintext.
            crate::wipe::drain_front(&mut self.incoming, discard);
            match outcome {
                Ok(Next::Again) => {}
                Ok(Next::Stop) => {
                    return if app_data.is_some() {
                        Err(TlsError::Closed)
                    } else {
                        Ok(())
                    };
                }
                Err(e) => {
                    self.fail();
                    return Err(e);
                }
            }
        }
        self.fail();
        Err(TlsError::Protocol(rustls::Error::General(String::from(
            "TLS state loop made no progress",
        ))))
    }

    /// Marks the connection dead and moves any alert rustls queued into `outgoing`.
    fn fail(&mut self) {
        self.failed = true;
        // rustls queues the alert before it reports the error and hands queued records out
        // before it reads more input. Only call it while something is queued: with nothing
        // queued it would parse the offending input again.
        for _ in 0..4 {
            if !self.conn.wants_write() {
                break;
            }
            let status = self.conn.process_tls_records(&mut self.incoming);
            match status.state {
                Ok(ConnectionState::EncodeTlsData(mut e)) => {
                    let r =
                        encode_into(&mut self.outgoing, self.limits.max_outgoing, |buf| match e
                            .encode(buf)
                        {
                            Ok(n) => Ok(n),
                            Err(EncodeError::InsufficientSize(s)) => Err(Some(s.required_size)),
                            Err(_) => Err(None),
                        });
                    if r.is_err() {
                        break;
                    }
                }
                Ok(ConnectionState::TransmitTlsData(t)) => t.done(),
                _ => break,
            }
        }
        self.incoming.zeroize();
        self.incoming.clear();
    }
}

impl Drop for TlsConn {
    fn drop(&mut self) {
        // Decrypted records (in place) and plaintext decrypted while writing.
        self.incoming.zeroize();
        self.stash.zeroize();
    }
}

/// Appends what `write` produces to `out`, growing it to the size rustls asks for, within `max`.
/// `write` returns the bytes written, or `Err(Some(required))` / `Err(None)` (cannot encode).
fn encode_into(
    out: &mut Vec<u8>,
    max: usize,
    mut write: impl FnMut(&mut [u8]) -> Result<usize, Option<usize>>,
) -> Result<(), TlsError> {
    let start = out.len();
    let mut want = 2 * 1024;
    for _ in 0..2 {
        let end = start.checked_add(want).ok_or(TlsError::OutgoingFull)?;
        if end > max {
            return Err(TlsError::OutgoingFull);
        }
        out.resize(end, 0);
        let r = out.get_mut(start..).map(&mut write).unwrap_or(Err(None));
        match r {
            Ok(n) => {
                out.truncate(start.saturating_add(n).min(end));
                return Ok(());
            }
            Err(Some(required)) if required > want => {
                out.truncate(start);
                want = required;
            }
            Err(_) => {
                out.truncate(start);
                return Err(TlsError::Closed);
            }
        }
    }
    out.truncate(start);
    Err(TlsError::Closed)
}
