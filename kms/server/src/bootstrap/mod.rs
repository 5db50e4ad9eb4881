//! `kms-server --bootstrap`: the zero-trust start. The server comes up with nothing but its platform: it
//! derives its key from the platform's measurement-bound key, serves the bootstrap API
//! ([`kms::bootstrap`]) over RA-TLS, and, after `POST /start`, serves the KMS on the same port with the
//! provisioned API certificate, Redis-with-Findex store and client CA.
//!
//! This module is the I/O driver around the sans-IO core: sockets, rustls, the `snp-emu` unix socket (the
//! emulated platform, [`EmulatedEvidence`]), and the Redis check ([`RedisProbe`]).
//!
//! Ports:
//! - `--bootstrap-port` (9998): the bootstrap API with the bootstrap certificate; after `/start` the KMS with
//!   the API certificate (plus `GET /attestation`). Bootstrap endpoints then answer 404 (the KMS router does
//!   not know them).
//! - `--ratls-port` (9999): the bootstrap certificate and `GET /attestation` only. It is open from the start
//!   and closed at `/start` when the API certificate itself carries a quote.
//!
//! Modules: [`platform`] (snp-emu, none, Redis check), `tls` (bootstrap certificate, pinned-provisioner
//! verifier), `attesting` (`GET /attestation` beside the KMS); this file holds the options, start-up and
//! the accept loops.

mod attesting;
pub mod platform;
mod tls;

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use kms::bootstrap::platform::Evidence;
use kms::bootstrap::{
    self as core_bootstrap, Bootstrap, Identity, ProvisionerPolicy, Started, Step,
};
use kms::http::{Limits, parse_request};
use kms::{Kms, KmsConfig};
use rustls::pki_types::CertificateDer;
use zeroize::{Zeroize, Zeroizing};

pub use attesting::{AttestingHandler, AttestingSession};
pub use platform::{EmulatedEvidence, NoEvidence, RedisOpener, RedisProbe, StoreOpener};

use crate::kms_handler::{KmsHandler, unix_now};
use crate::serve::{IdentityPolicy, ServeOptions, serve_connection};
use crate::tls::server_config;
use attesting::{method_name, to_http};
use platform::SharedEvidence;
use tls::{bootstrap_tls, client_spki, key_der};

/// Where attestation evidence comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttestationSource {
    /// `snp-emu` at this unix socket (see `docs/snp-emu.md`).
    Emulated(PathBuf),
    /// No platform: random key, no quote (development only).
    None,
}

impl FromStr for AttestationSource {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            Some(("emulated", path)) if !path.is_empty() => {
                Ok(AttestationSource::Emulated(PathBuf::from(path)))
            }
            _ if s == "none" => Ok(AttestationSource::None),
            _ => Err(format!("expected emulated:SOCKET or none, got {s:?}")),
        }
    }
}

/// Options of `kms-server --bootstrap`.
#[derive(clap::Parser, Debug, Clone)]
#[command(
    name = "kms-server --bootstrap",
    about = "Start in bootstrap mode: attest, get provisioned over RA-TLS, then serve the KMS",
    long_about = "Start in bootstrap mode (zero-trust workflow, docs/operations.md).\n\n\
The server derives its key pair from the platform's measurement-bound key, serves the bootstrap API \
(GET /attestation, POST /csr, /certificate, /redis-findex, /client-ca, /start) over RA-TLS on \
--bootstrap-port, and after /start serves the KMS on the same port.\n\n\
Ready lines on stdout: `kms-server bootstrap listening on ADDR`, `kms-server ra-tls listening on ADDR`, \
then after /start `kms-server started: KMS listening on ADDR`."
)]
pub struct BootstrapArgs {
    /// Bootstrap mode (this parser is used only when it is present).
    #[arg(long, required = true)]
    pub bootstrap: bool,
    /// Attestation platform: `emulated:SOCKET` (snp-emu) or `none` (random key, no quote: development only).
    #[arg(long, value_name = "emulated:SOCKET|none")]
    pub attestation: AttestationSource,
    /// Port of the bootstrap API, then of the KMS (0 picks a free port).
    #[arg(long, default_value_t = 9998)]
    pub bootstrap_port: u16,
    /// Port serving the bootstrap certificate and GET /attestation (0 picks a free port).
    #[arg(long, default_value_t = 9999)]
    pub ratls_port: u16,
    /// Address to listen on.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub bind: IpAddr,
    /// Only a TLS client whose certificate's SubjectPublicKeyInfo has this SHA-256 (hex) may provision.
    #[arg(long, value_name = "HEX")]
    pub provisioner_spki_sha256: Option<String>,
    /// Largest request body accepted by the KMS after start (bytes).
    #[arg(long, default_value_t = Limits::DEFAULT.max_body_bytes)]
    pub max_body_bytes: usize,
    /// Most connections served at once (per port).
    #[arg(long, default_value_t = 512)]
    pub max_connections: usize,
    /// Seconds a connection may stay silent before it is closed.
    #[arg(long, default_value_t = 60)]
    pub read_timeout_secs: u64,
}

/// Why bootstrap mode could not start.
#[derive(Debug)]
pub enum BootstrapStartError {
    /// The platform (snp-emu) could not be reached or answered badly.
    Platform(String),
    /// Key, certificate or option problem.
    Config(String),
    /// TLS configuration.
    Tls(String),
    /// Sockets.
    Io(io::Error),
}

impl fmt::Display for BootstrapStartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootstrapStartError::Platform(m) => write!(f, "attestation platform: {m}"),
            BootstrapStartError::Config(m) => write!(f, "bootstrap: {m}"),
            BootstrapStartError::Tls(m) => write!(f, "TLS: {m}"),
            BootstrapStartError::Io(e) => write!(f, "network: {e}"),
        }
    }
}

impl std::error::Error for BootstrapStartError {}

enum Mode {
    Bootstrap,
    Kms {
        tls: Arc<rustls::ServerConfig>,
        handler: Arc<AttestingHandler>,
        options: ServeOptions,
    },
}

/// State shared by the connection threads of bootstrap mode.
struct Shared {
    machine: Mutex<Option<Bootstrap>>,
    mode: RwLock<Mode>,
    evidence: SharedEvidence,
    identity: Arc<Identity>,
    bootstrap_tls: Arc<rustls::ServerConfig>,
    opener: Arc<dyn StoreOpener>,
    args: BootstrapArgs,
    main_addr: SocketAddr,
    ratls_addr: SocketAddr,
    ratls_closed: AtomicBool,
    ratls_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

fn options(args: &BootstrapArgs, identity: IdentityPolicy) -> ServeOptions {
    ServeOptions {
        identity,
        read_timeout: Duration::from_secs(args.read_timeout_secs.max(1)),
        write_timeout: Duration::from_secs(args.read_timeout_secs.max(1)),
        max_connections: args.max_connections.max(1),
    }
}

/// Starts bootstrap mode with the real platform and Redis store, and serves until a fatal error.
pub fn run(args: BootstrapArgs) -> Result<(), BootstrapStartError> {
    run_with(args, Arc::new(RedisOpener))
}

/// [`run`] with another way to open the store (the seam the `/redis-findex` check and `/start` share).
pub fn run_with(
    args: BootstrapArgs,
    opener: Arc<dyn StoreOpener>,
) -> Result<(), BootstrapStartError> {
    let mut evidence: Box<dyn Evidence + Send> = match &args.attestation {
        AttestationSource::Emulated(path) => {
            Box::new(EmulatedEvidence::connect(path).map_err(BootstrapStartError::Platform)?)
        }
        AttestationSource::None => {
            eprintln!(
                "\n************************************************************************\n\
                 * WARNING: --attestation none: NO ATTESTATION. The key pair is random, *\n\
                 * the certificates carry no quote, and nobody can verify this server. *\n\
                 * Development only.                                                    *\n\
                 ************************************************************************\n"
            );
            Box::new(NoEvidence)
        }
    };
    let policy = match &args.provisioner_spki_sha256 {
        Some(hex) => ProvisionerPolicy::pinned_from_hex(hex)
            .map_err(|e| BootstrapStartError::Config(e.to_string()))?,
        None => ProvisionerPolicy::Open,
    };
    let mut random = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random)
        .map_err(|_| BootstrapStartError::Config("no OS randomness".into()))?;
    let identity = Identity::create(evidence.as_mut(), random, unix_now())
        .map_err(|e| BootstrapStartError::Platform(e.to_string()))?;
    random.zeroize();
    let identity = Arc::new(identity);
    eprintln!(
        "kms-server: bootstrap key from {} (public key SHA-256 {})",
        match identity.sk_origin() {
            kms::bootstrap::keys::SkOrigin::PlatformDerived =>
                "the platform's measurement-bound key",
            kms::bootstrap::keys::SkOrigin::Random => "the RNG (not stable across restarts)",
        },
        hex(&identity.key().public_key_hash()),
    );
    let ratls_tls = bootstrap_tls(&identity, false)?;
    let bootstrap_tls = bootstrap_tls(&identity, matches!(policy, ProvisionerPolicy::Pinned(_)))?;

    let main = TcpListener::bind(SocketAddr::new(args.bind, args.bootstrap_port))
        .map_err(BootstrapStartError::Io)?;
    let ratls = TcpListener::bind(SocketAddr::new(args.bind, args.ratls_port))
        .map_err(BootstrapStartError::Io)?;
    let main_addr = main.local_addr().map_err(BootstrapStartError::Io)?;
    let ratls_addr = ratls.local_addr().map_err(BootstrapStartError::Io)?;
    let evidence: SharedEvidence = Arc::new(Mutex::new(evidence));
    let shared = Arc::new(Shared {
        machine: Mutex::new(Some(Bootstrap::new(identity.clone(), policy))),
        mode: RwLock::new(Mode::Bootstrap),
        evidence: evidence.clone(),
        identity: identity.clone(),
        bootstrap_tls,
        opener,
        args: args.clone(),
        main_addr,
        ratls_addr,
        ratls_closed: AtomicBool::new(false),
        ratls_thread: Mutex::new(None),
    });

    let mut stdout = io::stdout();
    writeln!(stdout, "kms-server bootstrap listening on {main_addr}")
        .and_then(|()| writeln!(stdout, "kms-server ra-tls listening on {ratls_addr}"))
        .and_then(|()| stdout.flush())
        .map_err(BootstrapStartError::Io)?;

    let ratls_handler = Arc::new(AttestingHandler {
        kms: None,
        identity,
        evidence,
        limits: Limits::DEFAULT,
    });
    let ratls_shared = shared.clone();
    let ratls_thread = std::thread::Builder::new()
        .name("kms-ratls".into())
        .spawn(move || serve_ratls(ratls, ratls_tls, ratls_handler, ratls_shared))
        .map_err(BootstrapStartError::Io)?;
    *shared
        .ratls_thread
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = Some(ratls_thread);

    let active = Arc::new(AtomicUsize::new(0));
    for stream in main.incoming() {
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                eprintln!("kms-server: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let Some(slot) = Slot::take(&active, args.max_connections) else {
            drop(stream);
            continue;
        };
        let shared = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("kms-conn".into())
            .spawn(move || {
                let _slot = slot;
                let kms = match &*shared.mode.read().unwrap_or_else(|p| p.into_inner()) {
                    Mode::Bootstrap => None,
                    Mode::Kms {
                        tls,
                        handler,
                        options,
                    } => Some((tls.clone(), handler.clone(), options.clone())),
                };
                let result = match kms {
                    Some((tls, handler, options)) => {
                        serve_connection(stream, tls, &*handler, &options)
                    }
                    None => serve_bootstrap_connection(stream, &shared),
                };
                if let Err(e) = result
                    && !is_quiet(&e)
                {
                    eprintln!("kms-server: connection: {e}");
                }
            });
        if let Err(e) = spawned {
            eprintln!("kms-server: cannot spawn a connection thread: {e}");
        }
    }
    Ok(())
}

/// Connection ends not worth a log line: the peer went away, timed out, or aborted the handshake on purpose
/// (`ckms` fetches the bootstrap certificate with a connection it aborts before using it).
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
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|r| matches!(r, rustls::Error::AlertReceived(_)))
}

/// One of at most `max` concurrent connections; released on drop. Beyond the cap, new connections are closed
/// at once (before TLS), as in [`crate::serve::serve`].
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

fn serve_ratls(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    handler: Arc<AttestingHandler>,
    shared: Arc<Shared>,
) {
    let opts = options(&shared.args, IdentityPolicy::Fixed(String::new()));
    let active = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        if shared.ratls_closed.load(Ordering::Acquire) {
            break;
        }
        let Ok(stream) = stream else { continue };
        let Some(slot) = Slot::take(&active, opts.max_connections) else {
            continue;
        };
        let (tls, handler, opts) = (tls.clone(), handler.clone(), opts.clone());
        let _ = std::thread::Builder::new()
            .name("kms-ratls-conn".into())
            .spawn(move || {
                let _slot = slot;
                let _ = serve_connection(stream, tls, &*handler, &opts);
            });
    }
    eprintln!(
        "kms-server: RA-TLS port {} closed (the API certificate carries the quote)",
        shared.ratls_addr
    );
}

/// One bootstrap connection: TLS with the bootstrap certificate, then requests into the core.
fn serve_bootstrap_connection(mut tcp: TcpStream, shared: &Shared) -> io::Result<()> {
    let timeout = Duration::from_secs(shared.args.read_timeout_secs.max(1));
    tcp.set_read_timeout(Some(timeout))?;
    tcp.set_write_timeout(Some(timeout))?;
    tcp.set_nodelay(true)?;
    let mut conn =
        rustls::ServerConnection::new(shared.bootstrap_tls.clone()).map_err(io::Error::other)?;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp)?;
    }
    let spki = client_spki(&conn);
    let limits = Limits {
        max_body_bytes: core_bootstrap::routes::MAX_BODY,
        ..Limits::DEFAULT
    };
    let mut stream = rustls::Stream::new(&mut conn, &mut tcp);
    let mut buf: Zeroizing<Vec<u8>> = Zeroizing::new(Vec::new());
    let mut input = Zeroizing::new(vec![0u8; 16 * 1024]);
    loop {
        let (resp, close, started) = match parse_request(&buf, &limits) {
            Ok(Some((req, used))) => {
                let used = used.min(buf.len());
                buf.drain(..used);
                let target = match &req.query {
                    Some(q) => format!("{}?{q}", req.path),
                    None => req.path.clone(),
                };
                let core_req = core_bootstrap::Request {
                    method: method_name(req.method),
                    target: &target,
                    body: &req.body,
                    client_spki_der: spki.as_deref(),
                };
                let (resp, started) = handle(shared, &core_req);
                (resp, !req.keep_alive || started.is_some(), started)
            }
            Ok(None) => {
                let n = stream.read(&mut input)?;
                if n == 0 {
                    return Ok(());
                }
                buf.extend_from_slice(input.get(..n).unwrap_or_default());
                continue;
            }
            Err(e) => {
                let err = if e.status() == 413 {
                    core_bootstrap::BootstrapError::BodyTooLarge
                } else {
                    core_bootstrap::BootstrapError::BadRequest("malformed HTTP request")
                };
                (core_bootstrap::Response::error(&err), true, None)
            }
        };
        // The KMS takes over the port before the client learns that /start succeeded, so its next
        // connection already reaches the KMS.
        if let Some(started) = started {
            start_kms(shared, started);
        }
        let mut out = Vec::new();
        to_http(resp, close).encode(&mut out);
        stream.write_all(&out)?;
        stream.flush()?;
        if close {
            stream.conn.send_close_notify();
            let _ = stream.conn.complete_io(stream.sock);
            return Ok(());
        }
    }
}

/// Runs one request through the core state machine.
fn handle(
    shared: &Shared,
    req: &core_bootstrap::Request<'_>,
) -> (core_bootstrap::Response, Option<Started>) {
    let mut slot = shared.machine.lock().unwrap_or_else(|p| p.into_inner());
    let Some(machine) = slot.take() else {
        // Started already: the bootstrap API is gone.
        return (
            core_bootstrap::Response::error(&core_bootstrap::BootstrapError::NotFound),
            None,
        );
    };
    let mut ev = shared.evidence.lock().unwrap_or_else(|p| p.into_inner());
    let mut probe = RedisProbe(&*shared.opener);
    let step = machine.handle(
        req,
        &mut core_bootstrap::Context {
            evidence: ev.as_mut(),
            probe: &mut probe,
        },
    );
    match step {
        Step::Continue(machine, resp) => {
            *slot = Some(machine);
            (resp, None)
        }
        Step::Start(started, resp) => (resp, Some(started)),
    }
}

/// Switches the main port to the KMS. A failure here leaves no bootstrap API to retry with: the process
/// exits with the reason, and the operator restarts it (the key is the same after a restart).
fn start_kms(shared: &Shared, started: Started) {
    match build_kms(shared, &started) {
        Ok(mode) => {
            let has_quote = !started.needs_ra_tls_port();
            *shared.mode.write().unwrap_or_else(|p| p.into_inner()) = mode;
            println!("kms-server started: KMS listening on {}", shared.main_addr);
            if has_quote {
                shared.ratls_closed.store(true, Ordering::Release);
                // Wake the RA-TLS accept loop so it sees the flag and drops its listener; wait for it, so
                // the port is closed before the provisioner hears that /start succeeded.
                let _ = TcpStream::connect(shared.ratls_addr);
                if let Some(t) = shared
                    .ratls_thread
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take()
                {
                    let _ = t.join();
                }
            }
            let _ = io::stdout().flush();
        }
        Err(e) => {
            eprintln!("kms-server: cannot start the KMS after /start: {e}");
            std::process::exit(1);
        }
    }
}

fn build_kms(shared: &Shared, started: &Started) -> Result<Mode, String> {
    let store = shared
        .opener
        .open(&started.database.url, &started.database.secret)
        .map_err(|e| e.to_string())?;
    let kms = Arc::new(Kms::new(store, KmsConfig::default()));
    let chain: Vec<CertificateDer<'static>> = started
        .chain
        .der
        .iter()
        .map(|d| CertificateDer::from(d.clone()))
        .collect();
    let client_ca = started.client_ca.as_ref().map(|ca| {
        ca.der
            .iter()
            .map(|d| CertificateDer::from(d.clone()))
            .collect::<Vec<_>>()
    });
    // The core refuses `/start` without a client CA; never serve unauthenticated after bootstrap.
    if client_ca.is_none() {
        return Err(
            "no client CA was provisioned: refusing to serve unauthenticated clients".into(),
        );
    }
    let identity = IdentityPolicy::ClientCertCn;
    let key = key_der(&started.identity).map_err(|e| e.to_string())?;
    let tls = server_config(chain, key, client_ca).map_err(|e| e.to_string())?;
    let limits = Limits {
        max_body_bytes: shared.args.max_body_bytes,
        ..Limits::DEFAULT
    };
    let handler = Arc::new(AttestingHandler {
        kms: Some(KmsHandler::new(kms, limits)),
        identity: shared.identity.clone(),
        evidence: shared.evidence.clone(),
        limits,
    });
    Ok(Mode::Kms {
        tls,
        handler,
        options: options(&shared.args, identity),
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attestation_source_parses() {
        assert_eq!(
            "none".parse::<AttestationSource>(),
            Ok(AttestationSource::None)
        );
        assert_eq!(
            "emulated:/run/snp.sock".parse::<AttestationSource>(),
            Ok(AttestationSource::Emulated(PathBuf::from("/run/snp.sock")))
        );
        for bad in ["emulated:", "snp", "", "emulated"] {
            assert!(bad.parse::<AttestationSource>().is_err(), "{bad}");
        }
    }
}
