//! The server loop: netstack listeners → [`kms::conn::Conn`] (TLS → HTTP → [`kms::app::App`]).
//!
//! One call to [`Server::step`] polls the stack, accepts connections (beyond
//! [`Limits::max_connections`] they are closed at once), moves bytes between each socket and
//! its connection, and closes connections that overrun their phase's deadline
//! ([`kms::pace`]: handshake, idle, minimum byte rate of a request or response — a byte now and
//! then does not keep a connection). A connection is read only when its previous output was
//! fully handed to TCP, so a client that does not read cannot make the server buffer without
//! bound. Unauthenticated `GET /attestation` (a firmware round trip in this single-threaded
//! loop) is rate-limited by the App; Redis has sockets of its own that clients cannot take
//! (`netstack::Limits::reserved_outbound`).
//!
//! Everything above TCP is the core's: the phases (bootstrap on `port` until `POST /start`,
//! then the KMS), the TLS configurations, the routes (`GET /attestation` on both ports), the
//! identities. This loop only carries out the App's [`Effect`]s: open the provisioned Redis
//! store (over the same stack; retried every 5 s while it fails) and close the RA-TLS port when
//! the API certificate carries the quote. The KMIP port (`Settings::kmip_port`), when opened,
//! serves binary TTLV ([`Listener::Kmip`]) with the KMS port's TLS, once the KMS serves.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;

use kms::Env;
use kms::app::{App, AppConfig, AppError, Effect, Generation, Listener, Platform};
use kms::bootstrap::platform::{DatabaseProbe, Evidence, ProbeError};
use kms::bootstrap::{self as boot, DbSecret, Identity, ProvisionerPolicy};
use kms::conn::Conn as AppConn;
use kms::crypto::Random;
use kms::http::Limits as HttpLimits;
use kms::pace::{Deadlines, Expired, Pace, Rate};
use kms::tls::TlsLimits;
use kms_redis::url::RedisUrl;
use kms_redis::{OpenError, RedisFindexStore};
use netstack::{ConnId, Duration, Instant, ListenerId, Nic, TcpError};

use crate::net::{Clock, SharedStack, block_on_stack};
use crate::redis::{NetPool, RedisTimeouts};

/// Every resource limit of the service.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Open client connections, all ports together; more are closed on accept.
    pub max_connections: usize,
    /// Deadlines per connection phase (handshake, idle, request byte rate).
    pub deadlines: Deadlines,
    /// `GET /attestation` rate (a firmware round trip each, in this single-threaded loop).
    pub attestation_rate: Rate,

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
            deadlines: Deadlines::default(),
            attestation_rate: AppConfig::default().attestation_rate,

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
    /// KMIP port (binary TTLV over mutual TLS, `ckms.kmip_port`), if opened: it serves once the
    /// KMS does (after `/start`), with the KMS port's certificate, client CA, limits and
    /// rights; connections before that are closed at once.
    pub kmip_port: Option<u16>,
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
    /// The application refused its configuration or the phase switch.
    App(AppError),
    /// The provisioned database could not be opened.
    Store(OpenError),
    /// The provisioned Redis URL does not parse.
    RedisUrl,
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceError::Listen(e) => write!(f, "listen: {e}"),
            ServiceError::Busy => f.write_str("network stack locked re-entrantly"),
            ServiceError::Bootstrap(e) => write!(f, "bootstrap: {e}"),
            ServiceError::App(e) => write!(f, "{e}"),
            ServiceError::Store(e) => write!(f, "store: {e}"),
            ServiceError::RedisUrl => f.write_str("the provisioned Redis URL does not parse"),
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
    /// Connections closed for idleness between requests.
    pub idle_closed: u64,
    /// Connections closed for a slow handshake, request or response ([`kms::pace`]).
    pub slow_closed: u64,
    /// Quiet connections closed to make room for a new one (table full).
    pub evicted: u64,
    /// Connections whose TLS failed (garbage, bad certificate, ...).
    pub tls_failed: u64,
    /// Polls after which a request was still waiting on the store (the loop served others).
    pub store_waits: u64,
    /// Most requests waiting on the store at the same time.
    pub waiting_peak: u64,
}

type Store<N> = RedisFindexStore<NetPool<N>>;

struct Conn {
    id: ConnId,
    last_input: Instant,
    pace: Pace,
    conn: Box<AppConn>,
    closing: bool,
}

/// The KMS service of the image.
pub struct Server<N: Nic + Send + 'static> {
    stack: Arc<SharedStack<N>>,
    clock: Arc<dyn Clock>,
    settings: Settings,
    app: Arc<App<Store<N>>>,
    main: ListenerId,
    ratls: Option<ListenerId>,
    kmip: Option<ListenerId>,
    conns: Vec<Conn>,
    buf: Vec<u8>,
    stats: Stats,
    start_pending: bool,
    last_start_attempt: Option<Instant>,
    /// Bytes moved during the current step.
    active: bool,
}

impl<N: Nic + Send + 'static> Server<N> {
    /// Creates the bootstrap identity (sk from the platform's derived key, else `random_sk`; a
    /// report binding its key), and listens on the bootstrap and RA-TLS ports.
    pub fn new<E: Evidence + Send + 'static>(
        stack: Arc<SharedStack<N>>,
        clock: Arc<dyn Clock>,
        mut evidence: E,
        settings: Settings,
        random_sk: [u8; 32],
    ) -> Result<Self, ServiceError> {
        let identity = Arc::new(
            Identity::create(&mut evidence, random_sk, clock.unix_seconds())
                .map_err(ServiceError::Bootstrap)?,
        );
        let platform = Platform {
            evidence: Box::new(evidence),
            probe: Box::new(RedisProbe {
                stack: stack.clone(),
                clock: clock.clone(),
                limits: settings.limits,
            }),
        };
        let config = AppConfig {
            http: settings.limits.http,
            tls: settings.limits.tls,
            attestation_rate: settings.limits.attestation_rate,
        };
        let app = Arc::new(
            App::bootstrap(identity, settings.provisioner.clone(), platform, config)
                .map_err(ServiceError::App)?,
        );
        let listen = |port: u16, backlog: usize| {
            stack
                .with(|s| s.listen(port, backlog))
                .map_err(|_| ServiceError::Busy)?
                .map_err(ServiceError::Listen)
        };
        let main = listen(settings.port, 4)?;
        let ratls = Some(listen(settings.ratls_port, 2)?);
        let kmip = settings.kmip_port.map(|p| listen(p, 4)).transpose()?;
        Ok(Server {
            buf: alloc::vec![0; settings.limits.read_chunk],
            stack,
            clock,
            settings,
            app,
            main,
            ratls,
            kmip,
            conns: Vec::new(),
            stats: Stats::default(),
            start_pending: false,
            last_start_attempt: None,
            active: false,
        })
    }

    /// The bootstrap identity (its public key hash is printed on the console).
    pub fn identity(&self) -> Option<&Arc<Identity>> {
        self.app.identity()
    }

    /// True once `/start` succeeded and the KMS serves.
    pub fn serving(&self) -> bool {
        self.app.is_serving()
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
        let now = self.clock.now();
        let accepted = self.stats.accepted;
        self.active = matches!(self.stack.with(|s| s.poll(now)), Ok(true));
        if self.start_pending
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
        let waiting = self.conns.iter().filter(|c| c.conn.is_waiting()).count() as u64;
        self.stats.waiting_peak = self.stats.waiting_peak.max(waiting);
        let now = self.clock.now();
        let delay = self.stack.with(|s| {
            let polled = s.poll(now);
            (polled, s.poll_delay(now))
        });
        if self.active || self.stats.accepted != accepted || matches!(delay, Ok((true, _))) {
            return Duration::ZERO;
        }
        if waiting > 0 {
            // Requests wait on Redis: come back soon (the reply wakes the idle CPU anyway).
            return Duration::from_millis(1);
        }
        match delay.map(|(_, d)| d) {
            Ok(Some(d)) if d < Duration::from_millis(100) => d,
            _ => Duration::from_millis(100),
        }
    }

    fn accept(&mut self, now: Instant) {
        let listeners = [
            (Some(self.main), Listener::Main),
            (self.ratls, Listener::RaTls),
            (self.kmip, Listener::Kmip),
        ];
        for (l, which) in listeners {
            let Some(l) = l else { continue };
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
                match AppConn::accept(&self.app, which) {
                    Ok(conn) => self.conns.push(Conn {
                        id,
                        last_input: now,
                        pace: Pace::new(mono(now)),
                        conn: Box::new(conn),
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

    /// Moves bytes for connection `i`; false when it is finished (or overran a deadline).
    fn service(&mut self, i: usize, now: Instant, rng: &mut dyn Random) -> bool {
        let keep = self.move_bytes(i, now, rng);
        let Some(c) = self.conns.get_mut(i) else {
            return false;
        };
        c.pace.observe(mono(now), c.conn.phase(), 0);
        if !keep || c.closing {
            return keep;
        }
        match c.pace.check(mono(now), &self.settings.limits.deadlines) {
            Ok(()) => true,
            Err(e) => {
                if e == Expired::Idle {
                    self.stats.idle_closed += 1;
                } else {
                    self.stats.slow_closed += 1;
                }
                log::debug!("closing a connection: {e}");
                false
            }
        }
    }

    fn move_bytes(&mut self, i: usize, now: Instant, rng: &mut dyn Random) -> bool {
        // 1. Flush what is pending; read only when nothing is.
        if !self.flush(i, now) {
            return false;
        }
        let Some(conn) = self.conns.get(i) else {
            return false;
        };
        if !conn.conn.pending_tls().is_empty() {
            return true;
        }
        if conn.closing {
            return false;
        }
        // A request waiting on the store: poll it (its Redis reply may have arrived with this
        // round's stack poll); read nothing more from this client until it is answered.
        if conn.conn.is_waiting() {
            self.poll_waiting(i, rng);
            return self.flush(i, now);
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
            Ok(Err(TcpError::WouldBlock)) | Err(_) => return true,
            Ok(Err(_)) => return false,
        };
        let input = core::mem::take(&mut self.buf);
        self.on_input(i, input.get(..n).unwrap_or(&[]), now, rng);
        self.buf = input;
        self.flush(i, now)
    }

    /// Writes pending TLS bytes to the socket; false if the socket failed.
    fn flush(&mut self, i: usize, now: Instant) -> bool {
        let Some(conn) = self.conns.get_mut(i) else {
            return false;
        };
        if conn.conn.pending_tls().is_empty() {
            return true;
        }
        let id = conn.id;
        let written = self.stack.with(|s| s.write(id, conn.conn.pending_tls()));
        match written {
            Ok(Ok(n)) => {
                // Bytes sent count for the response's rate (before the phase can change).
                conn.pace.observe(mono(now), conn.conn.phase(), n);
                conn.conn.consume_tls(n);
                self.active |= n > 0;
                true
            }
            Ok(Err(TcpError::WouldBlock)) | Err(_) => true,
            Ok(Err(_)) => false,
        }
    }

    /// Polls the request connection `i` has in flight.
    fn poll_waiting(&mut self, i: usize, rng: &mut dyn Random) {
        let Some(c) = self.conns.get_mut(i) else {
            return;
        };
        let mut env = Env {
            now: self.clock.unix_seconds(),
            rng,
        };
        let progress = c.conn.poll(&self.app, &mut env);
        self.after(i, progress);
    }

    /// Hands received ciphertext to connection `i` and carries out what the App asks for.
    fn on_input(&mut self, i: usize, input: &[u8], now: Instant, rng: &mut dyn Random) {
        let Some(c) = self.conns.get_mut(i) else {
            return;
        };
        let mut env = Env {
            now: self.clock.unix_seconds(),
            rng,
        };
        let progress = c.conn.on_tls(&self.app, &mut env, input);
        c.last_input = now;
        // The bytes count for the request they belong to (or start).
        c.pace.observe(mono(now), c.conn.phase(), input.len());
        self.after(i, progress);
    }

    fn after(&mut self, i: usize, progress: kms::conn::Progress) {
        if let Some(c) = self.conns.get_mut(i) {
            c.closing |= progress.close;
            // While its request waits on the store the client is not idle.
            if progress.waiting {
                c.last_input = self.clock.now();
            }
        }
        if progress.waiting {
            self.stats.store_waits += 1;
        } else {
            self.active = true;
        }
        if progress.tls_error.is_some() {
            self.stats.tls_failed += 1;
        }
        match progress.effect {
            Some(Effect::OpenStore) => {
                self.start_pending = true;
                self.last_start_attempt = None;
                self.try_start();
            }
            Some(Effect::CloseRaTlsPort) => self.close_ratls(),
            None => {}
        }
    }

    /// Opens the store and switches to the KMS; on failure (Redis went away since the probe)
    /// keeps the provisioned state and retries on later steps.
    fn try_start(&mut self) {
        self.last_start_attempt = Some(self.clock.now());
        match self.open_and_serve() {
            Ok(effect) => {
                self.start_pending = false;
                if effect == Some(Effect::CloseRaTlsPort) {
                    self.close_ratls();
                }
                log::info!(
                    "bootstrap finished: the KMS serves on port {}{}",
                    self.settings.port,
                    if self.ratls.is_some() {
                        " (and RA-TLS on its port)"
                    } else {
                        ""
                    }
                );
                // Bootstrap connections of the main port end with their current output.
                for c in &mut self.conns {
                    if c.conn.listener() == Listener::Main
                        && c.conn.generation() == Generation::Bootstrap
                    {
                        c.conn.close();
                        c.closing = true;
                    }
                }
            }
            Err(e) => log::error!("cannot start the KMS yet: {e}; retrying"),
        }
    }

    fn open_and_serve(&mut self) -> Result<Option<Effect>, ServiceError> {
        let (url, secret) = self
            .app
            .database()
            .ok_or(ServiceError::App(AppError::NotStarting))?;
        let url = RedisUrl::parse(&url).map_err(|_| ServiceError::RedisUrl)?;
        let pool = NetPool::new(
            self.stack.clone(),
            self.clock.clone(),
            url,
            self.settings.limits.redis,
            self.settings.limits.redis_reply,
        );
        let open = RedisFindexStore::open(pool, secret.expose());
        let store = block_on_stack(&self.stack, &*self.clock, open).map_err(ServiceError::Store)?;
        self.app.serve(store).map_err(ServiceError::App)
    }

    fn close_ratls(&mut self) {
        if let Some(l) = self.ratls.take() {
            let _ = self.stack.with(|s| s.unlisten(l));
            for c in &mut self.conns {
                if c.conn.listener() == Listener::RaTls {
                    c.conn.close();
                    c.closing = true;
                }
            }
        }
    }
}

/// The netstack clock as the monotonic time [`kms::pace`] takes.
fn mono(now: Instant) -> core::time::Duration {
    core::time::Duration::from_micros(u64::try_from(now.total_micros()).unwrap_or(0))
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
