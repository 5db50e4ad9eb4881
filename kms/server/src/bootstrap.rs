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

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use der::{Decode, Encode};
use kms::bootstrap::platform::{
    CertTableEntry, DatabaseProbe, Evidence, EvidenceError, Platform, ProbeError, parse_cert_table,
};
use kms::bootstrap::{self as core_bootstrap, Bootstrap, DbSecret, Identity, ProvisionerPolicy, Started, Step};
use kms::http::{Limits, Method, parse_request};
use kms::server::Action;
use kms::{Kms, KmsConfig};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use zeroize::{Zeroize, Zeroizing};

use crate::app::INSECURE_USER;
use crate::kms_handler::{KmsHandler, KmsSession, unix_now};
use crate::serve::{Handler, IdentityPolicy, ServeOptions, Session, serve_connection};
use crate::tls::{provider, server_config};

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
            Some(("emulated", path)) if !path.is_empty() => Ok(AttestationSource::Emulated(PathBuf::from(path))),
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

// ---------------------------------------------------------------------------------------------------------
// Platform backends

/// MSG_KEY_REQ GUEST_FIELD_SELECT (SEV-SNP ABI spec 56860, Table 18): guest policy and launch measurement, so
/// the derived key changes when the image or its policy changes.
const KEY_FIELDS: u64 =
    attest::snp::guest_msg::field_select::GUEST_POLICY | attest::snp::guest_msg::field_select::MEASUREMENT;

/// `snp-emu` over its unix socket, speaking real SNP guest messages with VMPCK0.
pub struct EmulatedEvidence {
    client: snp_emu::client::Client<UnixStream>,
}

impl EmulatedEvidence {
    /// Connects and fetches VMPCK0 (the emulator hands it out once per lifetime, as the secrets page would).
    pub fn connect(path: &std::path::Path) -> Result<Self, String> {
        let stream = UnixStream::connect(path).map_err(|e| format!("{}: {e}", path.display()))?;
        stream.set_read_timeout(Some(Duration::from_secs(30))).map_err(|e| e.to_string())?;
        let mut client = snp_emu::client::Client::new(stream);
        client.get_vmpck().map_err(|e| format!("GET_VMPCK: {e}"))?;
        Ok(EmulatedEvidence { client })
    }
}

fn client_error(e: snp_emu::client::ClientError) -> EvidenceError {
    use snp_emu::client::ClientError as C;
    match e {
        C::Io(_) | C::Closed => EvidenceError::Transport("snp-emu socket"),
        C::Status(s) => EvidenceError::Firmware(u32::from(s)),
        C::BadReply(w) => EvidenceError::Malformed(w),
        C::Msg(_) => EvidenceError::Malformed("guest message failed (VMPCK wiped or firmware error)"),
        C::NoVmpck => EvidenceError::Transport("no VMPCK (wiped after a failed guest request)"),
    }
}

impl Evidence for EmulatedEvidence {
    fn platform(&self) -> Platform {
        Platform::SevSnp
    }

    fn report(&mut self, report_data: &[u8; 64]) -> Result<Vec<u8>, EvidenceError> {
        self.client.report(report_data, 0).map(|r| r.to_bytes().to_vec()).map_err(client_error)
    }

    fn cert_table(&mut self) -> Result<Vec<CertTableEntry>, EvidenceError> {
        let table = self.client.certs().map_err(client_error)?;
        parse_cert_table(&table)
    }

    fn derived_key(&mut self) -> Result<Option<Zeroizing<[u8; 32]>>, EvidenceError> {
        let req = attest::snp::guest_msg::KeyReq::new(KEY_FIELDS, 0);
        let key = self.client.derived_key(&req).map_err(client_error)?;
        Ok(Some(Zeroizing::new(key.0)))
    }
}

/// No platform.
pub struct NoEvidence;

impl Evidence for NoEvidence {
    fn platform(&self) -> Platform {
        Platform::None
    }
    fn report(&mut self, _: &[u8; 64]) -> Result<Vec<u8>, EvidenceError> {
        Err(EvidenceError::Unsupported)
    }
    fn cert_table(&mut self) -> Result<Vec<CertTableEntry>, EvidenceError> {
        Ok(Vec::new())
    }
    fn derived_key(&mut self) -> Result<Option<Zeroizing<[u8; 32]>>, EvidenceError> {
        Ok(None)
    }
}

type SharedEvidence = Arc<Mutex<Box<dyn Evidence + Send>>>;

// ---------------------------------------------------------------------------------------------------------
// Database

/// Opens the Redis-with-Findex store for a URL and secret; used by the probe and at `/start`.
pub trait StoreOpener: Send + Sync {
    /// Connects (and checks the secret against an existing database).
    fn open(&self, url: &str, secret: &DbSecret) -> Result<Arc<dyn kms::store::Store>, ProbeError>;
}

/// The real store: `kms_redis::RedisFindexStore`.
pub struct RedisOpener;

impl StoreOpener for RedisOpener {
    fn open(&self, url: &str, secret: &DbSecret) -> Result<Arc<dyn kms::store::Store>, ProbeError> {
        let opts = kms_redis::ConnectOptions { io_timeout: Duration::from_secs(10), ..Default::default() };
        match kms_redis::RedisFindexStore::connect(url, secret.expose(), opts) {
            Ok(store) => Ok(Arc::new(store)),
            Err(kms_redis::host::ConnectError::Url(_)) => Err(ProbeError::BadUrl),
            Err(kms_redis::host::ConnectError::Open(kms_redis::OpenError::WrongSecret)) => Err(ProbeError::WrongSecret),
            Err(kms_redis::host::ConnectError::Open(kms_redis::OpenError::Unavailable(_))) => {
                Err(ProbeError::Unreachable)
            }
            Err(kms_redis::host::ConnectError::Open(_)) => Err(ProbeError::Storage),
        }
    }
}

/// The [`DatabaseProbe`] of the host: open the store (connect, AUTH, secret check) and drop it.
pub struct RedisProbe<'a>(pub &'a dyn StoreOpener);

impl DatabaseProbe for RedisProbe<'_> {
    fn probe(&mut self, url: &str, secret: &DbSecret) -> Result<(), ProbeError> {
        self.0.open(url, secret).map(drop)
    }
}

// ---------------------------------------------------------------------------------------------------------
// TLS

/// Client-certificate verifier of the bootstrap port when a provisioner is pinned: it asks for a certificate,
/// does not require one (so `/attestation` stays public), accepts any well-formed certificate, and checks
/// the handshake signature with its key (proof of possession). The pin itself is checked by the core
/// ([`ProvisionerPolicy::authorize`]) on the SubjectPublicKeyInfo this handshake proved.
#[derive(Debug)]
struct PossessionOnly {
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ClientCertVerifier for PossessionOnly {
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
        x509_cert::Certificate::from_der(end_entity.as_ref())
            .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
        Ok(ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

fn key_der(identity: &Identity) -> Result<PrivateKeyDer<'static>, BootstrapStartError> {
    let pkcs8 = identity.key().to_pkcs8_der().map_err(|e| BootstrapStartError::Config(e.to_string()))?;
    Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8.to_vec())))
}

fn bootstrap_tls(identity: &Identity, pinned: bool) -> Result<Arc<rustls::ServerConfig>, BootstrapStartError> {
    let provider = provider();
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| BootstrapStartError::Tls(e.to_string()))?;
    let builder = if pinned {
        builder.with_client_cert_verifier(Arc::new(PossessionOnly { provider }))
    } else {
        builder.with_no_client_auth()
    };
    let cert = CertificateDer::from(identity.certificate_der().to_vec());
    let mut config =
        builder.with_single_cert(vec![cert], key_der(identity)?).map_err(|e| BootstrapStartError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// SubjectPublicKeyInfo DER of the client's (handshake-verified) certificate.
fn client_spki(conn: &rustls::ServerConnection) -> Option<Vec<u8>> {
    let leaf = conn.peer_certificates()?.first()?;
    let cert = x509_cert::Certificate::from_der(leaf.as_ref()).ok()?;
    cert.tbs_certificate().subject_public_key_info().to_der().ok()
}

// ---------------------------------------------------------------------------------------------------------
// Serving

fn to_http(r: core_bootstrap::Response, close: bool) -> kms::http::Response {
    let mut resp = kms::http::Response::json(r.status, r.body);
    resp.close = close;
    resp
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

/// `GET /attestation` wrapped around a KMS session (main port after start) or alone (RA-TLS port).
pub struct AttestingHandler {
    kms: Option<KmsHandler>,
    identity: Arc<Identity>,
    evidence: SharedEvidence,
    limits: Limits,
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

/// What the main port serves.
enum Mode {
    Bootstrap,
    Kms { tls: Arc<rustls::ServerConfig>, handler: Arc<AttestingHandler>, options: ServeOptions },
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

/// [`run`] with another store opener (tests use the memory store through this).
pub fn run_with(args: BootstrapArgs, opener: Arc<dyn StoreOpener>) -> Result<(), BootstrapStartError> {
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
        Some(hex) => ProvisionerPolicy::pinned_from_hex(hex).map_err(|e| BootstrapStartError::Config(e.to_string()))?,
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
            kms::bootstrap::keys::SkOrigin::PlatformDerived => "the platform's measurement-bound key",
            kms::bootstrap::keys::SkOrigin::Random => "the RNG (not stable across restarts)",
        },
        hex(&identity.key().public_key_hash()),
    );
    let bootstrap_tls = bootstrap_tls(&identity, matches!(policy, ProvisionerPolicy::Pinned(_)))?;
    let ratls_tls = bootstrap_tls_plain(&identity)?;

    let main = TcpListener::bind(SocketAddr::new(args.bind, args.bootstrap_port)).map_err(BootstrapStartError::Io)?;
    let ratls = TcpListener::bind(SocketAddr::new(args.bind, args.ratls_port)).map_err(BootstrapStartError::Io)?;
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
    });

    let mut stdout = io::stdout();
    writeln!(stdout, "kms-server bootstrap listening on {main_addr}")
        .and_then(|()| writeln!(stdout, "kms-server ra-tls listening on {ratls_addr}"))
        .and_then(|()| stdout.flush())
        .map_err(BootstrapStartError::Io)?;

    let ratls_handler = Arc::new(AttestingHandler { kms: None, identity, evidence, limits: Limits::DEFAULT });
    let ratls_shared = shared.clone();
    std::thread::Builder::new()
        .name("kms-ratls".into())
        .spawn(move || serve_ratls(ratls, ratls_tls, ratls_handler, ratls_shared))
        .map_err(BootstrapStartError::Io)?;

    for stream in main.incoming() {
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                eprintln!("kms-server: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let shared = shared.clone();
        let spawned = std::thread::Builder::new().name("kms-conn".into()).spawn(move || {
            let kms = match &*shared.mode.read().unwrap_or_else(|p| p.into_inner()) {
                Mode::Bootstrap => None,
                Mode::Kms { tls, handler, options } => Some((tls.clone(), handler.clone(), options.clone())),
            };
            let result = match kms {
                Some((tls, handler, options)) => serve_connection(stream, tls, &*handler, &options),
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
    ) || e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()).is_some_and(|r| {
        matches!(r, rustls::Error::AlertReceived(_))
    })
}

fn bootstrap_tls_plain(identity: &Identity) -> Result<Arc<rustls::ServerConfig>, BootstrapStartError> {
    bootstrap_tls(identity, false)
}

fn serve_ratls(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    handler: Arc<AttestingHandler>,
    shared: Arc<Shared>,
) {
    let opts = options(&shared.args, IdentityPolicy::Fixed(String::new()));
    for stream in listener.incoming() {
        if shared.ratls_closed.load(Ordering::Acquire) {
            break;
        }
        let Ok(stream) = stream else { continue };
        let (tls, handler, opts) = (tls.clone(), handler.clone(), opts.clone());
        let _ = std::thread::Builder::new().name("kms-ratls-conn".into()).spawn(move || {
            let _ = serve_connection(stream, tls, &*handler, &opts);
        });
    }
    eprintln!("kms-server: RA-TLS port {} closed (the API certificate carries the quote)", shared.ratls_addr);
}

/// One bootstrap connection: TLS with the bootstrap certificate, then requests into the core.
fn serve_bootstrap_connection(mut tcp: TcpStream, shared: &Shared) -> io::Result<()> {
    let timeout = Duration::from_secs(shared.args.read_timeout_secs.max(1));
    tcp.set_read_timeout(Some(timeout))?;
    tcp.set_write_timeout(Some(timeout))?;
    tcp.set_nodelay(true)?;
    let mut conn = rustls::ServerConnection::new(shared.bootstrap_tls.clone()).map_err(io::Error::other)?;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp)?;
    }
    let spki = client_spki(&conn);
    let limits = Limits { max_body_bytes: core_bootstrap::routes::MAX_BODY, ..Limits::DEFAULT };
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
fn handle(shared: &Shared, req: &core_bootstrap::Request<'_>) -> (core_bootstrap::Response, Option<Started>) {
    let mut slot = shared.machine.lock().unwrap_or_else(|p| p.into_inner());
    let Some(machine) = slot.take() else {
        // Started already: the bootstrap API is gone.
        return (core_bootstrap::Response::error(&core_bootstrap::BootstrapError::NotFound), None);
    };
    let mut ev = shared.evidence.lock().unwrap_or_else(|p| p.into_inner());
    let mut probe = RedisProbe(&*shared.opener);
    let step = machine.handle(req, &mut core_bootstrap::Context { evidence: ev.as_mut(), probe: &mut probe });
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
                // Wake the RA-TLS accept loop so it sees the flag and drops its listener.
                let _ = TcpStream::connect(shared.ratls_addr);
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
    let store = shared.opener.open(&started.database.url, &started.database.secret).map_err(|e| e.to_string())?;
    let kms = Arc::new(Kms::new(store, KmsConfig::default()));
    let chain: Vec<CertificateDer<'static>> =
        started.chain.der.iter().map(|d| CertificateDer::from(d.clone())).collect();
    let client_ca = started
        .client_ca
        .as_ref()
        .map(|ca| ca.der.iter().map(|d| CertificateDer::from(d.clone())).collect::<Vec<_>>());
    let identity = if client_ca.is_some() {
        IdentityPolicy::ClientCertCn
    } else {
        eprintln!(
            "\n************************************************************************\n\
             * WARNING: no client CA was provisioned: clients are NOT authenticated. *\n\
             * Every request runs as user `{INSECURE_USER}`.                               *\n\
             ************************************************************************\n"
        );
        IdentityPolicy::Fixed(INSECURE_USER.into())
    };
    let key = key_der(&started.identity).map_err(|e| e.to_string())?;
    let tls = server_config(chain, key, client_ca).map_err(|e| e.to_string())?;
    let limits = Limits { max_body_bytes: shared.args.max_body_bytes, ..Limits::DEFAULT };
    let handler = Arc::new(AttestingHandler {
        kms: Some(KmsHandler::new(kms, limits)),
        identity: shared.identity.clone(),
        evidence: shared.evidence.clone(),
        limits,
    });
    Ok(Mode::Kms { tls, handler, options: options(&shared.args, identity) })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
