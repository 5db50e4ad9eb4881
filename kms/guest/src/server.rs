//! The server loop: netstack listeners → [`kms::tls`] → the bootstrap API, then the KMS.
//!
//! One call to [`Server::step`] polls the stack, accepts connections (beyond
//! [`Limits::max_connections`] they are closed at once), moves bytes between each socket and
//! its TLS connection, answers complete requests and closes idle connections (slowloris). A
//! connection is read only when its previous output was fully handed to TCP, so a client that
//! does not read cannot make the server buffer without bound.
//!
//! Phases: *bootstrap* (port `port`, bootstrap certificate, [`ProvisionerPolicy`]) until
//! `POST /start` succeeds; then the store is opened on Redis (blocking, over the same stack) and
//! the KMS serves on `port` with the API certificate, plus the RA-TLS port when the API
//! certificate carries no quote (`GET /attestation` and the bootstrap certificate). After `/start`
//! the main port also answers `GET /attestation` itself (a fresh report bound to the same key);
//! client certificates are then optional at the TLS layer so that this stays public, and every
//! KMS route still requires one (401 without).

use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;

use kms::bootstrap::platform::{DatabaseProbe, Evidence, ProbeError};
use kms::bootstrap::{
    self as boot, Bootstrap, DbSecret, Identity, ProvisionerPolicy, Started, Step,
};
use kms::crypto::Random;
use kms::http::{HttpError, Limits as HttpLimits, Method, Response, parse_request};
use kms::server::{Action, Connection as HttpConn};
use kms::tls::{ClientAuth, SharedClock, TlsConfig, TlsConn, TlsError, TlsLimits, TlsState};
use kms::{Env, Kms, KmsConfig};
use kms_redis::url::RedisUrl;
use kms_redis::{OpenError, RedisFindexStore};
use netstack::{ConnId, Duration, Instant, ListenerId, Nic, TcpError};
use zeroize::Zeroize;

use crate::net::{Clock, SharedStack, block_on_stack, poll_and_idle};
use crate::redis::{NetPool, RedisTimeouts};

/// Every resource limit of the service.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Open client connections, all ports together; more are closed on accept.
    pub max_connections: usize,
    /// A connection with no byte received for this long is closed.
    pub idle_timeout: Duration,
    /// With the table full, a new connection replaces the longest-quiet one if that one has
    /// been quiet this long (else the new one is closed).
    pub evict_after: Duration,
    /// HTTP framing of the KMS port (body size → 413).
    pub http: HttpLimits,
    /// TLS buffers per connection.
    pub tls: TlsLimits,
    /// Redis timeouts.
    pub redis: RedisTimeouts,
    /// Largest Redis reply.
    pub redis_reply: kms_redis::resp::Limits,
    /// Bytes read from one socket per step.
    pub read_chunk: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 32,
            idle_timeout: Duration::from_secs(30),
            evict_after: Duration::from_secs(2),
            http: HttpLimits {
                max_body_bytes: 1024 * 1024,
                ..HttpLimits::DEFAULT
            },
            tls: TlsLimits {
                max_incoming: 64 * 1024,
                max_outgoing: 2 * 1024 * 1024,
            },
            redis: RedisTimeouts::default(),
            redis_reply: kms_redis::resp::Limits {
                max_reply: 8 << 20,
                max_depth: 4,
                max_elements: 1 << 16,
            },
            read_chunk: 16 * 1024,
        }
    }
}

/// What the service is configured with (from the measured command line).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Bootstrap port, then KMS port.
    pub port: u16,
    /// RA-TLS port after `/start` (when the API certificate has no quote).
    pub ratls_port: u16,
    /// Who may provision (`ckms.provisioner=sha256:<hex>`).
    pub provisioner: ProvisionerPolicy,
    /// Limits.
    pub limits: Limits,
}

/// Why the service could not start or switch phase.
#[derive(Debug)]
pub enum ServiceError {
    /// A listener could not be opened.
    Listen(netstack::StackError),
    /// The stack was locked re-entrantly (a bug).
    Busy,
    /// The bootstrap identity could not be made (platform, key, certificate).
    Bootstrap(boot::BootstrapError),
    /// A TLS configuration was refused.
    Tls(TlsError),
    /// The provisioned database could not be opened.
    Store(OpenError),
    /// The provisioned Redis URL does not parse.
    RedisUrl,
    /// A key could not be encoded.
    Key,
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceError::Listen(e) => write!(f, "listen: {e}"),
            ServiceError::Busy => f.write_str("network stack locked re-entrantly"),
            ServiceError::Bootstrap(e) => write!(f, "bootstrap: {e}"),
            ServiceError::Tls(e) => write!(f, "{e}"),
            ServiceError::Store(e) => write!(f, "store: {e}"),
            ServiceError::RedisUrl => f.write_str("the provisioned Redis URL does not parse"),
            ServiceError::Key => f.write_str("cannot encode the server key"),
        }
    }
}

impl core::error::Error for ServiceError {}

/// Counters for the console and the benchmark.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections closed at accept because of `max_connections`.
    pub refused: u64,
    /// Connections closed for idleness.
    pub idle_closed: u64,
    /// Quiet connections closed to make room for a new one (table full).
    pub evicted: u64,
    /// Connections whose TLS failed (garbage, bad certificate, ...).
    pub tls_failed: u64,
}

type Store<N> = RedisFindexStore<NetPool<N>>;

enum Phase<N: Nic> {
    Bootstrap {
        core: Option<Bootstrap>,
        tls: TlsConfig,
    },
    Serving {
        kms: Box<Kms<Store<N>>>,
        tls: TlsConfig,
        fallback_user: Option<String>,
        ratls: Option<TlsConfig>,
    },
}

/// A bootstrap-API (or RA-TLS port) connection: TLS + request framing.
struct ApiConn {
    tls: TlsConn,
    pending: Vec<u8>,
    close_after_write: bool,
}

/// A KMS-port connection after `/start`: TLS, request framing (`GET /attestation` is answered
/// here), the KMS HTTP connection for every other request.
struct KmsConn {
    tls: TlsConn,
    http: HttpConn,
    limits: HttpLimits,
    fallback_user: Option<String>,
    user: Option<String>,
    pending: Vec<u8>,
    close_after_write: bool,
}

impl Drop for KmsConn {
    fn drop(&mut self) {
        self.pending.zeroize();
    }
}

enum Kind {
    Kms(Box<KmsConn>),
    Bootstrap(Box<ApiConn>),
    RaTls(Box<ApiConn>),
}

struct Conn {
    id: ConnId,
    last_input: Instant,
    kind: Kind,
    closing: bool,
}

impl Conn {
    fn pending_tls(&self) -> &[u8] {
        match &self.kind {
            Kind::Kms(c) => c.tls.pending_tls(),
            Kind::Bootstrap(c) | Kind::RaTls(c) => c.tls.pending_tls(),
        }
    }
    fn consume_tls(&mut self, n: usize) {
        match &mut self.kind {
            Kind::Kms(c) => c.tls.consume_tls(n),
            Kind::Bootstrap(c) | Kind::RaTls(c) => c.tls.consume_tls(n),
        }
    }
}

/// The KMS service of the image.
pub struct Server<N: Nic, E: Evidence> {
    stack: Arc<SharedStack<N>>,
    clock: Arc<dyn Clock>,
    tls_clock: Arc<SharedClock>,
    evidence: E,
    settings: Settings,
    identity: Arc<Identity>,
    main: ListenerId,
    ratls: Option<ListenerId>,
    phase: Phase<N>,
    conns: Vec<Conn>,
    buf: Vec<u8>,
    stats: Stats,
    pending_start: Option<Started>,
    last_start_attempt: Option<Instant>,
    /// Bytes moved during the current step.
    active: bool,
}

fn tls_clock(clock: &dyn Clock) -> Arc<SharedClock> {
    let c = Arc::new(SharedClock::new());
    c.set(clock.unix_seconds());
    c
}

impl<N: Nic, E: Evidence> Server<N, E> {
    /// Creates the bootstrap identity (sk from the platform's derived key, else `random_sk`; a
    /// report binding its key), and listens on the bootstrap port.
    pub fn new(
        stack: Arc<SharedStack<N>>,
        clock: Arc<dyn Clock>,
        mut evidence: E,
        settings: Settings,
        random_sk: [u8; 32],
    ) -> Result<Self, ServiceError> {
        let tls_clock = tls_clock(&*clock);
        let identity = Arc::new(
            Identity::create(&mut evidence, random_sk, clock.unix_seconds())
                .map_err(ServiceError::Bootstrap)?,
        );
        let tls = bootstrap_tls(&identity, &settings, tls_clock.clone())?;
        let main = stack
            .with(|s| s.listen(settings.port, 4))
            .map_err(|_| ServiceError::Busy)?
            .map_err(ServiceError::Listen)?;
        let core = Bootstrap::new(identity.clone(), settings.provisioner.clone());
        Ok(Server {
            stack,
            clock,
            tls_clock,
            evidence,
            buf: alloc::vec![0; settings.limits.read_chunk],
            settings,
            identity,
            main,
            ratls: None,
            phase: Phase::Bootstrap {
                core: Some(core),
                tls,
            },
            conns: Vec::new(),
            stats: Stats::default(),
            pending_start: None,
            last_start_attempt: None,
            active: false,
        })
    }

    /// The bootstrap identity (its public key hash is printed on the console).
    pub fn identity(&self) -> &Arc<Identity> {
        &self.identity
    }

    /// True once `/start` succeeded and the KMS serves.
    pub fn serving(&self) -> bool {
        matches!(self.phase, Phase::Serving { .. })
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Open connections.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// One round of work. Returns how long the caller may idle before the next call: zero
    /// when anything moved (call again at once), else the stack's next deadline (at most 100 ms).
    pub fn step(&mut self, rng: &mut dyn Random) -> Duration {
        self.tls_clock.set(self.clock.unix_seconds());
        let now = self.clock.now();
        let accepted = self.stats.accepted;
        self.active = matches!(self.stack.with(|s| s.poll(now)), Ok(true));
        if self.pending_start.is_some()
            && self
                .last_start_attempt
                .is_none_or(|t| now - t > Duration::from_secs(5))
        {
            self.try_start();
        }
        self.accept(now);
        let mut i = 0;
        while i < self.conns.len() {
            let keep = self.service(i, now, rng);
            if keep {
                i += 1;
            } else {
                let c = self.conns.swap_remove(i);
                let _ = self.stack.with(|s| {
                    if c.closing {
                        s.close(c.id)
                    } else {
                        s.abort(c.id)
                    }
                });
            }
        }
        let now = self.clock.now();
        let delay = self.stack.with(|s| {
            let polled = s.poll(now);
            (polled, s.poll_delay(now))
        });
        if self.active || self.stats.accepted != accepted || matches!(delay, Ok((true, _))) {
            return Duration::ZERO;
        }
        match delay.map(|(_, d)| d) {
            Ok(Some(d)) if d < Duration::from_millis(100) => d,
            _ => Duration::from_millis(100),
        }
    }

    fn accept(&mut self, now: Instant) {
        let listeners = [Some(self.main), self.ratls];
        for (n, l) in listeners.iter().enumerate() {
            let Some(l) = *l else { continue };
            while let Ok(Some(id)) = self.stack.with(|s| s.accept(l)) {
                self.stats.accepted += 1;
                if self.conns.len() >= self.settings.limits.max_connections && !self.evict_idle(now)
                {
                    self.stats.refused += 1;
                    log::warn!(
                        "connection limit ({}) reached: closing a new connection",
                        self.settings.limits.max_connections
                    );
                    let _ = self.stack.with(|s| s.abort(id));
                    continue;
                }
                match self.new_conn(n == 1) {
                    Ok(kind) => self.conns.push(Conn {
                        id,
                        last_input: now,
                        kind,
                        closing: false,
                    }),
                    Err(e) => {
                        log::warn!("new connection: {e}");
                        let _ = self.stack.with(|s| s.abort(id));
                    }
                }
            }
        }
    }

    /// With the table full, closes the connection that has been quiet longest, if it has been
    /// quiet for at least [`Limits::evict_after`]: idle clients (slowloris) cannot lock others
    /// out, busy ones are never cut.
    fn evict_idle(&mut self, now: Instant) -> bool {
        let oldest = self
            .conns
            .iter()
            .enumerate()
            .min_by_key(|(_, c)| c.last_input)
            .map(|(i, c)| (i, c.last_input));
        match oldest {
            Some((i, last)) if now - last >= self.settings.limits.evict_after => {
                let c = self.conns.swap_remove(i);
                let _ = self.stack.with(|s| s.abort(c.id));
                self.stats.evicted += 1;
                true
            }
            _ => false,
        }
    }

    fn new_conn(&self, ratls_port: bool) -> Result<Kind, TlsError> {
        match &self.phase {
            Phase::Bootstrap { tls, .. } => Ok(Kind::Bootstrap(Box::new(ApiConn {
                tls: TlsConn::new(tls)?,
                pending: Vec::new(),
                close_after_write: false,
            }))),
            Phase::Serving { ratls: Some(r), .. } if ratls_port => {
                Ok(Kind::RaTls(Box::new(ApiConn {
                    tls: TlsConn::new(r)?,
                    pending: Vec::new(),
                    close_after_write: false,
                })))
            }
            Phase::Serving {
                tls, fallback_user, ..
            } => Ok(Kind::Kms(Box::new(KmsConn {
                tls: TlsConn::new(tls)?,
                http: HttpConn::new(self.settings.limits.http),
                limits: self.settings.limits.http,
                fallback_user: fallback_user.clone(),
                user: None,
                pending: Vec::new(),
                close_after_write: false,
            }))),
        }
    }

    /// Moves bytes for connection `i`; false when it is finished.
    fn service(&mut self, i: usize, now: Instant, rng: &mut dyn Random) -> bool {
        // 1. Flush what is pending; read only when nothing is.
        if !self.flush(i) {
            return false;
        }
        let Some(conn) = self.conns.get(i) else {
            return false;
        };
        if !conn.pending_tls().is_empty() {
            return true;
        }
        if conn.closing {
            return false;
        }
        let id = conn.id;
        let buf = &mut self.buf;
        let read = self.stack.with(|s| s.read(id, buf));
        let n = match read {
            Ok(Ok(0)) => return false,
            Ok(Ok(n)) => {
                self.active = true;
                n
            }
            Ok(Err(TcpError::WouldBlock)) | Err(_) => {
                if now - conn.last_input > self.settings.limits.idle_timeout {
                    self.stats.idle_closed += 1;
                    return false;
                }
                return true;
            }
            Ok(Err(_)) => return false,
        };
        let input = core::mem::take(&mut self.buf);
        let close = self.on_input(i, input.get(..n).unwrap_or(&[]), rng);
        self.buf = input;
        if let Some(c) = self.conns.get_mut(i) {
            c.last_input = now;
            if close {
                c.closing = true;
            }
        }
        self.flush(i)
    }

    /// Writes pending TLS bytes to the socket; false if the socket failed.
    fn flush(&mut self, i: usize) -> bool {
        let Some(conn) = self.conns.get_mut(i) else {
            return false;
        };
        if conn.pending_tls().is_empty() {
            return true;
        }
        let id = conn.id;
        let written = self.stack.with(|s| s.write(id, conn.pending_tls()));
        match written {
            Ok(Ok(n)) => {
                conn.consume_tls(n);
                self.active |= n > 0;
                true
            }
            Ok(Err(TcpError::WouldBlock)) | Err(_) => true,
            Ok(Err(_)) => false,
        }
    }

    /// Handles received ciphertext; true when the connection should close after its output.
    fn on_input(&mut self, i: usize, input: &[u8], rng: &mut dyn Random) -> bool {
        let unix = self.clock.unix_seconds();
        let Some(conn) = self.conns.get_mut(i) else {
            return true;
        };
        let mut started = None;
        let close = match (&mut conn.kind, &mut self.phase) {
            (Kind::Kms(c), Phase::Serving { kms, .. }) => {
                let mut env = Env { now: unix, rng };
                let identity = self.identity.clone();
                let evidence = &mut self.evidence;
                let (stack, clock) = (self.stack.clone(), self.clock.clone());
                let mut idle = || poll_and_idle(&stack, &*clock, Duration::from_millis(1));
                kms_input(
                    c,
                    input,
                    &mut self.stats,
                    |http, chunk, req, user, out| match req {
                        Some(req) if req.method == Method::Get && req.path == "/attestation" => {
                            let query = req.query.as_deref().unwrap_or("");
                            let r = boot::routes::attestation_response(&identity, evidence, query);
                            let mut resp = Response::json(r.status, r.body);
                            resp.close = !req.keep_alive;
                            resp.encode(out);
                            if resp.close {
                                Action::Close
                            } else {
                                Action::Continue
                            }
                        }
                        _ => http.on_bytes_with(&**kms, &mut env, user, chunk, out, &mut idle),
                    },
                )
            }
            (Kind::RaTls(c), _) => {
                let identity = self.identity.clone();
                let evidence = &mut self.evidence;
                api_input(
                    c,
                    input,
                    &mut self.stats,
                    self.settings.limits.http,
                    |req, _| {
                        if req.method == Method::Get && req.path == "/attestation" {
                            let query = req.query.as_deref().unwrap_or("");
                            let r = boot::routes::attestation_response(&identity, evidence, query);
                            Response::json(r.status, r.body)
                        } else {
                            Response::text(404, "only GET /attestation on this port")
                        }
                    },
                )
            }
            (Kind::Bootstrap(c), Phase::Bootstrap { core, .. }) => {
                let evidence = &mut self.evidence;
                let mut probe = RedisProbe {
                    stack: self.stack.clone(),
                    clock: self.clock.clone(),
                    limits: self.settings.limits,
                };
                api_input(
                    c,
                    input,
                    &mut self.stats,
                    bootstrap_limits(),
                    |req, spki| {
                        let Some(machine) = core.take() else {
                            return Response::text(503, "bootstrap finished; the KMS is starting");
                        };
                        let target = match &req.query {
                            Some(q) => alloc::format!("{}?{}", req.path, q),
                            None => req.path.clone(),
                        };
                        let breq = boot::Request {
                            method: method_name(req.method),
                            target: &target,
                            body: &req.body,
                            client_spki_der: spki,
                        };
                        let mut cx = boot::Context {
                            evidence: &mut *evidence,
                            probe: &mut probe,
                        };
                        match machine.handle(&breq, &mut cx) {
                            Step::Continue(next, r) => {
                                *core = Some(next);
                                Response::json(r.status, r.body)
                            }
                            Step::Start(s, r) => {
                                started = Some(s);
                                let mut resp = Response::json(r.status, r.body);
                                resp.close = true;
                                resp
                            }
                        }
                    },
                )
            }
            // A connection from the previous phase: close it.
            _ => true,
        };
        if let Some(s) = started {
            self.pending_start = Some(s);
            self.try_start();
        }
        close
    }

    /// Opens the store and switches to the KMS; on failure (Redis went away since the probe)
    /// keeps the provisioned state and retries on later steps.
    fn try_start(&mut self) {
        let Some(started) = self.pending_start.take() else {
            return;
        };
        self.last_start_attempt = Some(self.clock.now());
        match self.build_serving(&started) {
            Ok(phase) => {
                log::info!(
                    "bootstrap finished: the KMS serves on port {}{}",
                    self.settings.port,
                    if self.ratls.is_some() {
                        " (and RA-TLS on its port)"
                    } else {
                        ""
                    }
                );
                self.phase = phase;
                // Bootstrap connections end with their current output.
                for c in &mut self.conns {
                    if matches!(c.kind, Kind::Bootstrap(_)) {
                        c.closing = true;
                    }
                }
            }
            Err(e) => {
                log::error!("cannot start the KMS yet: {e}; retrying");
                self.pending_start = Some(started);
            }
        }
    }

    fn build_serving(&mut self, started: &Started) -> Result<Phase<N>, ServiceError> {
        let url = RedisUrl::parse(&started.database.url).map_err(|_| ServiceError::RedisUrl)?;
        let pool = NetPool::new(
            self.stack.clone(),
            self.clock.clone(),
            url,
            self.settings.limits.redis,
            self.settings.limits.redis_reply,
        );
        let open = RedisFindexStore::open(pool, started.database.secret.expose());
        let store = block_on_stack(&self.stack, &*self.clock, open).map_err(ServiceError::Store)?;
        let kms = Box::new(Kms::new(store, KmsConfig::default()));
        let key = started
            .identity
            .key()
            .to_pkcs8_der()
            .map_err(|_| ServiceError::Key)?;
        let (auth, fallback_user) = match &started.client_ca {
            Some(ca) => (
                // Optional at the TLS layer so `GET /attestation` stays public; every KMS route
                // answers 401 without a verified client certificate.
                ClientAuth::WebPki {
                    roots: ca.der.clone(),
                    mandatory: false,
                },
                None,
            ),
            None => {
                log::warn!(
                    "no client CA was provisioned: clients are NOT authenticated; every request runs as `admin`"
                );
                (ClientAuth::None, Some(String::from("admin")))
            }
        };
        let tls = TlsConfig::new(
            &started.chain.der,
            &key,
            auth,
            self.tls_clock.clone(),
            self.settings.limits.tls,
        )
        .map_err(ServiceError::Tls)?;
        let ratls = if started.needs_ra_tls_port() {
            let l = self
                .stack
                .with(|s| s.listen(self.settings.ratls_port, 2))
                .map_err(|_| ServiceError::Busy)?
                .map_err(ServiceError::Listen)?;
            self.ratls = Some(l);
            Some(bootstrap_tls(
                &self.identity,
                &Settings {
                    provisioner: ProvisionerPolicy::Open,
                    ..self.settings.clone()
                },
                self.tls_clock.clone(),
            )?)
        } else {
            None
        };
        Ok(Phase::Serving {
            kms,
            tls,
            fallback_user,
            ratls,
        })
    }
}

/// Bootstrap API framing limits: JSON bodies up to the core's limit.
fn bootstrap_limits() -> HttpLimits {
    HttpLimits {
        max_body_bytes: boot::routes::MAX_BODY,
        ..HttpLimits::DEFAULT
    }
}

fn method_name(m: Method) -> &'static str {
    match m {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Delete => "DELETE",
        Method::Other => "OTHER",
    }
}

/// Runs the TLS input of an API connection through HTTP framing and `handle`; true when the
/// connection should close after its output.
fn api_input(
    c: &mut ApiConn,
    input: &[u8],
    stats: &mut Stats,
    limits: HttpLimits,
    mut handle: impl FnMut(&kms::http::Request, Option<&[u8]>) -> Response,
) -> bool {
    if c.tls.read_tls(input, &mut c.pending).is_err() {
        stats.tls_failed += 1;
        return true;
    }
    // The client's key, proven in the handshake that may just have completed.
    let spki = c.tls.peer_spki_der();
    let mut out = Vec::new();
    let mut consumed = 0;
    let mut close = c.close_after_write;
    loop {
        let rest = c.pending.get(consumed..).unwrap_or(&[]);
        match parse_request(rest, &limits) {
            Ok(None) => break,
            Ok(Some((req, used))) => {
                consumed += used;
                let mut resp = handle(&req, spki.as_deref());
                if !req.keep_alive {
                    resp.close = true;
                }
                resp.encode(&mut out);
                if resp.close {
                    close = true;
                    break;
                }
            }
            Err(e) => {
                let e: HttpError = e;
                let mut resp = Response::text(e.status(), &alloc::format!("{e}"));
                resp.close = true;
                resp.encode(&mut out);
                close = true;
                break;
            }
        }
    }
    if let Some(done) = c.pending.get_mut(..consumed) {
        done.zeroize();
    }
    c.pending.drain(..consumed);
    let written = c.tls.write_plaintext(&out);
    out.zeroize();
    if written.is_err() {
        return true;
    }
    if close {
        let _ = c.tls.send_close_notify();
        c.close_after_write = true;
    }
    close || c.tls.is_finished()
}

/// Runs the TLS input of a KMS connection: frames requests, hands each one (its exact bytes, the
/// parsed request or `None` when it cannot be framed, the user) to `handle`, which writes the
/// response. True when the connection should close after its output.
fn kms_input(
    c: &mut KmsConn,
    input: &[u8],
    stats: &mut Stats,
    mut handle: impl FnMut(
        &mut HttpConn,
        &[u8],
        Option<&kms::http::Request>,
        Option<&str>,
        &mut Vec<u8>,
    ) -> Action,
) -> bool {
    if c.tls.read_tls(input, &mut c.pending).is_err() {
        stats.tls_failed += 1;
        return true;
    }
    if c.user.is_none() && c.tls.state() != TlsState::Handshaking {
        c.user = c.tls.peer_common_name().or_else(|| c.fallback_user.clone());
    }
    let mut out = Vec::new();
    let mut close = c.close_after_write;
    while !close {
        match parse_request(&c.pending, &c.limits) {
            Ok(None) => break,
            Ok(Some((req, used))) => {
                let mut chunk: Vec<u8> = c.pending.drain(..used.min(c.pending.len())).collect();
                close = handle(&mut c.http, &chunk, Some(&req), c.user.as_deref(), &mut out)
                    == Action::Close;
                chunk.zeroize();
            }
            Err(_) => {
                // The KMS connection answers the framing error (400, 413, ...) and closes.
                let mut rest = core::mem::take(&mut c.pending);
                let _ = handle(&mut c.http, &rest, None, c.user.as_deref(), &mut out);
                rest.zeroize();
                close = true;
            }
        }
    }
    let written = c.tls.write_plaintext(&out);
    out.zeroize();
    if written.is_err() {
        return true;
    }
    if close && !c.close_after_write {
        let _ = c.tls.send_close_notify();
        c.close_after_write = true;
    }
    close || c.tls.is_finished()
}

fn bootstrap_tls(
    identity: &Identity,
    settings: &Settings,
    clock: Arc<SharedClock>,
) -> Result<TlsConfig, ServiceError> {
    let key = identity
        .key()
        .to_pkcs8_der()
        .map_err(|_| ServiceError::Key)?;
    let auth = match &settings.provisioner {
        ProvisionerPolicy::Open => ClientAuth::None,
        ProvisionerPolicy::Pinned(h) => ClientAuth::PinnedSpki(*h),
    };
    let chain = alloc::vec![Vec::from(identity.certificate_der())];
    TlsConfig::new(&chain, &key, auth, clock, settings.limits.tls).map_err(ServiceError::Tls)
}

/// `/redis-findex`: open the store over the network and drop it.
struct RedisProbe<N: Nic> {
    stack: Arc<SharedStack<N>>,
    clock: Arc<dyn Clock>,
    limits: Limits,
}

impl<N: Nic> DatabaseProbe for RedisProbe<N> {
    fn probe(&mut self, url: &str, secret: &DbSecret) -> Result<(), ProbeError> {
        let url = RedisUrl::parse(url).map_err(|_| ProbeError::BadUrl)?;
        let pool = NetPool::new(
            self.stack.clone(),
            self.clock.clone(),
            url,
            self.limits.redis,
            self.limits.redis_reply,
        );
        let open = RedisFindexStore::open(pool, secret.expose());
        match block_on_stack(&self.stack, &*self.clock, open) {
            Ok(_) => Ok(()),
            Err(OpenError::WrongSecret) => Err(ProbeError::WrongSecret),
            Err(OpenError::Unavailable(_)) => Err(ProbeError::Unreachable),
            Err(_) => Err(ProbeError::Storage),
        }
    }
}
