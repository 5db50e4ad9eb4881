//! The I/O driver of the host: accept TCP connections on the [`App`]'s listeners and move bytes
//! between each socket and its [`kms::conn::Conn`]. It knows nothing about TLS, HTTP or KMIP: the
//! core does all of that, here as in the image.
//!
//! Listeners: the main port (HTTPS), the RA-TLS port of bootstrap mode, and the KMIP port
//! (binary TTLV, [`serve_with_kmip`]).
//!
//! One thread per connection, with a cap on concurrent connections per listener: beyond it, new
//! connections are closed at once (before the TLS handshake). Each connection has the core's
//! per-phase deadlines ([`kms::pace`]: handshake, idle, minimum byte rate of a request), so a
//! stalled or slowloris client holds a thread for a bounded time whatever it trickles. Effects the App asks for (open the
//! provisioned store, close the RA-TLS port) run on the connection thread that caused them,
//! before its response is sent.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kms::app::{App, Effect, Listener};
use kms::pace::Deadlines;

mod worker;

use crate::bootstrap::platform::StoreOpener;
use crate::store::HostStore;
use zeroize::{Zeroize, Zeroizing};

/// The App of the host: the store chosen at run time, blocking locks.
pub type HostApp = App<Arc<HostStore>, parking_lot::RawMutex>;

/// The connection options both modes of `kms-server` take on the command line.
#[derive(clap::Args, Debug, Clone)]
pub struct ConnectionArgs {
    /// Largest KMS request body accepted (bytes); larger requests get 413.
    #[arg(long, default_value_t = kms::http::Limits::DEFAULT.max_body_bytes)]
    pub max_body_bytes: usize,
    /// Most connections served at once (per port).
    #[arg(long, default_value_t = 512)]
    pub max_connections: usize,
    /// Seconds a connection may stay between requests before it is closed.
    #[arg(long, default_value_t = 30)]
    pub idle_timeout_secs: u64,
    /// Seconds from accept to a completed TLS handshake.
    #[arg(long, default_value_t = 10)]
    pub handshake_timeout_secs: u64,
    /// Lowest average rate (bytes/s) of a request arriving or a response being read, after a
    /// 10-second grace period: slower clients (slowloris) are disconnected.
    #[arg(long, default_value_t = 1024)]
    pub min_rate: u32,
    /// Threads serving connections, each with its own epoll (default: two per core). A request
    /// waiting on Redis holds up the other connections of its thread: more threads help a
    /// Redis-bound load (Create, Locate) at some CPU cost per request.
    #[arg(long)]
    pub workers: Option<usize>,
}

impl ConnectionArgs {
    /// The App's limits.
    pub fn app_config(&self) -> kms::app::AppConfig {
        kms::app::AppConfig {
            http: kms::http::Limits {
                max_body_bytes: self.max_body_bytes,
                ..kms::http::Limits::DEFAULT
            },
            ..kms::app::AppConfig::default()
        }
    }

    /// The driver's options.
    pub fn serve_options(&self) -> ServeOptions {
        ServeOptions {
            deadlines: Deadlines {
                idle: Duration::from_secs(self.idle_timeout_secs.max(1)),
                handshake: Duration::from_secs(self.handshake_timeout_secs.max(1)),
                min_rate: self.min_rate,
                ..Deadlines::default()
            },
            max_connections: self.max_connections,
            workers: self.workers.unwrap_or_else(default_workers).max(1),
            ..ServeOptions::default()
        }
    }
}

/// Knobs of [`serve`].
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Deadlines of each connection's phases (handshake, idle, request/response byte rate),
    /// the core's rule ([`kms::pace`]).
    pub deadlines: Deadlines,
    /// Timeout of each socket write.
    pub write_timeout: Duration,
    /// Maximum number of connections served at once, per listener.
    pub max_connections: usize,
    /// Threads serving connections (each with its own `epoll`); connections are spread over
    /// them in turn.
    pub workers: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            deadlines: Deadlines::default(),
            write_timeout: Duration::from_secs(60),
            max_connections: 512,
            workers: default_workers(),
        }
    }
}

/// Default number of connection workers: two per core. A request waiting on Redis holds up the
/// other connections of its worker, so one per core starves a Redis-bound load; more wake up more
/// often for the same load. `scripts/bench-peer --seconds 3 --conc 16`, two rounds on 2 cores
/// (ops/s with 2 / 4 / 8 workers): Create 2,531–3,081 / 4,360–4,863 / 4,280–6,650, Locate
/// 14,810–18,280 / 15,889–19,684 / 17,377–18,849, Encrypt 64 B at 20.0–21.4 / 20.6–21.3 /
/// 25.2–28.4 server CPU-µs/op.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(4, |n| 2 * usize::from(n))
}

/// The operating system's CSPRNG (getrandom(2) through ring).
pub struct OsRandom(pub ring::rand::SystemRandom);

impl OsRandom {
    /// A handle on the OS generator.
    pub fn new() -> Self {
        OsRandom(ring::rand::SystemRandom::new())
    }
}

impl Default for OsRandom {
    fn default() -> Self {
        Self::new()
    }
}

impl kms::crypto::Random for OsRandom {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), kms::crypto::RngError> {
        ring::rand::SecureRandom::fill(&self.0, buf).map_err(|_| kms::crypto::RngError)
    }
}

/// The OS generator read 512 bytes at a time: one `getrandom(2)` per 16 requests instead of one
/// per request (each request seeds its ChaCha20 with 32 bytes, [`kms::app`]). Every byte is
/// handed out once and wiped from the buffer as it is; the rest is wiped on drop.
pub struct BufferedOsRandom {
    os: OsRandom,
    pool: Zeroizing<[u8; 512]>,
    /// Bytes of `pool` already handed out (and wiped).
    used: usize,
}

impl BufferedOsRandom {
    /// An empty buffer: the first request reads the OS generator.
    pub fn new() -> Self {
        BufferedOsRandom {
            os: OsRandom::new(),
            pool: Zeroizing::new([0u8; 512]),
            used: 512,
        }
    }
}

impl Default for BufferedOsRandom {
    fn default() -> Self {
        Self::new()
    }
}

impl kms::crypto::Random for BufferedOsRandom {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), kms::crypto::RngError> {
        let size = self.pool.len();
        // Larger than the pool: straight from the OS.
        if buf.len() > size {
            return self.os.fill(buf);
        }
        if size - self.used < buf.len() {
            self.os.fill(&mut self.pool[..])?;
            self.used = 0;
        }
        let end = self.used + buf.len();
        let chunk = self
            .pool
            .get_mut(self.used..end)
            .ok_or(kms::crypto::RngError)?;
        buf.copy_from_slice(chunk);
        chunk.zeroize();
        self.used = end;
        Ok(())
    }
}

/// Seconds since the Unix epoch from the host clock (0 if the clock is before 1970).
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Everything the connection threads share.
struct Shared {
    app: Arc<HostApp>,
    opener: Option<Arc<dyn StoreOpener>>,
    options: ServeOptions,
    main_addr: SocketAddr,
    ratls_addr: Option<SocketAddr>,
    ratls_closed: AtomicBool,
    ratls_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// Serves `app` on `main` (and `ratls`, the RA-TLS port of bootstrap mode) until accepting on
/// `main` fails fatally. `opener` opens the provisioned store after `/start`.
pub fn serve(
    app: Arc<HostApp>,
    main: TcpListener,
    ratls: Option<TcpListener>,
    opener: Option<Arc<dyn StoreOpener>>,
    options: ServeOptions,
) -> io::Result<()> {
    serve_with_kmip(app, main, ratls, None, opener, options)
}

/// [`serve`], plus `kmip`: the KMIP port (binary TTLV over the main port's TLS, with the same
/// client authentication), accepted on its own thread with its own connection cap.
pub fn serve_with_kmip(
    app: Arc<HostApp>,
    main: TcpListener,
    ratls: Option<TcpListener>,
    kmip: Option<TcpListener>,
    opener: Option<Arc<dyn StoreOpener>>,
    options: ServeOptions,
) -> io::Result<()> {
    let workers = options.workers;
    let shared = Arc::new(Shared {
        app,
        opener,
        options,
        main_addr: main.local_addr()?,
        ratls_addr: ratls.as_ref().map(TcpListener::local_addr).transpose()?,
        ratls_closed: AtomicBool::new(false),
        ratls_thread: Mutex::new(None),
    });
    let workers = Arc::new(worker::Workers::start(workers, &shared)?);
    if let Some(ratls) = ratls {
        let (s, w) = (shared.clone(), workers.clone());
        let t = std::thread::Builder::new()
            .name("kms-ratls".into())
            .spawn(move || accept_loop(&s, &w, ratls, Listener::RaTls))?;
        *shared
            .ratls_thread
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(t);
    }
    if let Some(kmip) = kmip {
        let (s, w) = (shared.clone(), workers.clone());
        std::thread::Builder::new()
            .name("kms-kmip".into())
            .spawn(move || accept_loop(&s, &w, kmip, Listener::Kmip))?;
    }
    accept_loop(&shared, &workers, main, Listener::Main);
    Ok(())
}

fn accept_loop(
    shared: &Arc<Shared>,
    workers: &worker::Workers,
    listener: TcpListener,
    which: Listener,
) {
    let active = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        if which == Listener::RaTls && shared.ratls_closed.load(Ordering::Acquire) {
            break;
        }
        let stream = match stream {
            Ok(s) => s,
            // Transient accept errors (e.g. ECONNABORTED, EMFILE): keep serving.
            Err(e) => {
                eprintln!("kms-server: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let Some(slot) = Slot::take(&active, shared.options.max_connections) else {
            drop(stream);
            continue;
        };
        if let Err(e) = workers.hand(stream, slot, which) {
            eprintln!("kms-server: cannot hand a connection to a worker: {e}");
        }
    }
    if which == Listener::RaTls {
        eprintln!("kms-server: RA-TLS port closed (the API certificate carries the quote)");
    }
}

/// Errors that are a normal end of a connection, not worth a log line.
fn is_quiet(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::WouldBlock
            | io::ErrorKind::TimedOut
    ) || e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<kms::tls::TlsError>())
        .is_some_and(kms::tls::TlsError::is_peer_abort)
}

/// One of at most `max` concurrent connections; released on drop.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(active: &Arc<AtomicUsize>, max: usize) -> Option<Slot> {
        if active.fetch_add(1, Ordering::AcqRel) >= max.max(1) {
            active.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Slot(active.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Shared {
    fn run(&self, effect: Effect) {
        match effect {
            Effect::OpenStore => self.start_kms(),
            Effect::CloseRaTlsPort => self.close_ratls(),
        }
    }

    /// Opens the provisioned store and switches the App to serving, before the client hears that
    /// `/start` succeeded (so its next connection already reaches the KMS). A failure leaves no
    /// bootstrap API to retry with: the process exits with the reason, and the operator restarts
    /// it (the key is the same after a restart).
    fn start_kms(&self) {
        let result = match (&self.opener, self.app.database()) {
            (Some(opener), Some((url, secret))) => opener
                .open(&url, &secret)
                .map_err(|e| e.to_string())
                .and_then(|store| self.app.serve(store).map_err(|e| e.to_string())),
            _ => Err("no provisioned database to open".into()),
        };
        match result {
            Ok(effect) => {
                println!("kms-server started: KMS listening on {}", self.main_addr);
                if let Some(effect) = effect {
                    self.run(effect);
                }
                let _ = io::stdout().flush();
            }
            Err(e) => {
                eprintln!("kms-server: cannot start the KMS after /start: {e}");
                std::process::exit(1);
            }
        }
    }

    /// Stops the RA-TLS accept loop and waits for it, so the port is closed before the
    /// provisioner hears that `/start` succeeded.
    fn close_ratls(&self) {
        let Some(addr) = self.ratls_addr else { return };
        self.ratls_closed.store(true, Ordering::Release);
        // Wake the accept loop so it sees the flag and drops its listener.
        let _ = TcpStream::connect(addr);
        let thread = self
            .ratls_thread
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kms::crypto::Random;

    /// Each byte of the pool is handed out once and wiped; a refill reads the OS again; a
    /// request larger than the pool goes straight to the OS.
    #[test]
    fn buffered_random_hands_out_each_byte_once_and_wipes_it() {
        let mut r = BufferedOsRandom::new();
        let mut seeds = Vec::new();
        // 40 seeds of 32 bytes: more than two pools' worth (refills at 16 and 32).
        for _ in 0..40 {
            let mut s = [0u8; 32];
            r.fill(&mut s).unwrap();
            assert_ne!(s, [0u8; 32], "a seed of zeros");
            seeds.push(s);
        }
        let mut unique = seeds.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), seeds.len(), "a seed was handed out twice");
        // 40 × 32 = 1280 bytes: the pool was refilled at 1024 and 256 bytes of it are used.
        assert_eq!(r.used, 256);
        assert!(
            r.pool[..256].iter().all(|b| *b == 0),
            "handed-out bytes not wiped"
        );
        assert!(
            r.pool[256..].iter().any(|b| *b != 0),
            "the rest is still random"
        );
        let mut big = vec![0u8; 1000];
        r.fill(&mut big).unwrap();
        assert_eq!(r.used, 256, "a large request does not use the pool");
        assert!(big.iter().any(|b| *b != 0));
    }
}
