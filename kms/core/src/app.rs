//! The application: one type that owns the phase (bootstrap → serving), the TLS configurations of
//! each phase and port, the platform, and the one router for every route.
//!
//! Both servers (the host's `kms-server` and the image's `kms-guest`) hold one [`App`], accept
//! connections as [`crate::conn::Conn`]s on its [`Listener`]s, and feed bytes; the App answers and,
//! rarely, asks the driver for an [`Effect`] (open the provisioned store, close the RA-TLS port).
//!
//! Routes (method, path → who may call → what answers):
//!
//! | listener | phase | route | identity | answer |
//! |---|---|---|---|---|
//! | main, RA-TLS | any | `GET /attestation?nonce=` | none | fresh report bound to the bootstrap key |
//! | main | any | `GET /health`, `GET /version` | none | `{"status":"UP"}`, version string |
//! | main | bootstrap | `POST /csr`, `/certificate`, `/redis-findex`, `/client-ca`, `/start` | provisioner | [`crate::bootstrap`] |
//! | main | serving | `POST /kmip/2_1`, `POST /kmip` | client certificate | KMIP 2.1 JSON TTLV; binary TTLV `RequestMessage` when `Content-Type: application/octet-stream` |
//! | main | serving | `POST /access/grant`, `/access/revoke`; `GET /access/list/{uid}`, `/access/owned`, `/access/obtained` | client certificate | access rights |
//!
//! The KMIP listener (port 5696 by default) carries no HTTP: binary TTLV `RequestMessage`s framed
//! by their 8-byte header ([`crate::conn::TtlvStream`]), each answered with a `ResponseMessage`
//! by [`App::handle_ttlv`]; it serves only once the KMS serves, with the API certificate and
//! client authentication of the main port (same identities and rights).
//!
//! A connection belongs to the phase it was accepted in: after `/start`, bootstrap-phase
//! connections get 503 and are closed; the RA-TLS listener only ever serves `/attestation`.
//! KMS errors are a status with a plain-text body (401 without identity, 404, 405,
//! [`crate::KmsError::http_status`]); bootstrap errors are `{"error": ...}` JSON.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

use lock_api::{Mutex, RawMutex};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};
use zeroize::Zeroizing;

use crate::bootstrap::platform::{DatabaseProbe, Evidence};
use crate::bootstrap::routes::{MAX_BODY, attestation};
use crate::bootstrap::{
    self as boot, Bootstrap, BootstrapError, DbSecret, Identity, ProvisionerPolicy, Started, Step,
};
use crate::crypto::{Random, RngError};
use crate::http::{Limits, Method, Request, Response, percent_decode};
use crate::pace::{Bucket, Rate};
use crate::service::to_json;
use crate::store::Store;
use crate::tls::{ClientAuth, SharedClock, TlsConfig, TlsError, TlsLimits};
use crate::x509::PrivateKey;
use crate::{Env, Kms, KmsConfig};

/// Version string answered by `GET /version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The listeners of a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// The bootstrap API, then the KMS.
    Main,
    /// `GET /attestation` with the bootstrap certificate; closed after `/start` when the API
    /// certificate itself carries the quote.
    RaTls,
    /// Binary TTLV KMIP (no HTTP), with the main port's serving TLS identity and client
    /// authentication; nothing before the KMS serves.
    Kmip,
}

/// What the driver must do after a request (rare; returned by [`crate::conn::Conn::on_tls`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// `/start` succeeded: open the provisioned store ([`App::database`]) and call
    /// [`App::serve`]. Until then, KMS requests wait with 503.
    OpenStore,
    /// The API certificate carries the quote: stop listening on the RA-TLS port.
    CloseRaTlsPort,
}

/// A KMS request in flight: a plain future that the connection polls until it is ready. It owns
/// what it needs (the App, the request, its own randomness), so a driver can keep it across
/// poll-loop rounds while a store call waits on the network.
pub struct KmsFuture(Pin<Box<dyn Future<Output = Response>>>);

impl KmsFuture {
    /// Polls the request once (with any waker: drivers re-poll on their own schedule).
    pub fn poll(&mut self) -> Poll<Response> {
        self.0
            .as_mut()
            .poll(&mut Context::from_waker(core::task::Waker::noop()))
    }
}

impl fmt::Debug for KmsFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KmsFuture(..)")
    }
}

/// The answer to one request: ready now, or a KMS operation to poll.
#[derive(Debug)]
pub enum Handled {
    /// The response, and what the driver must do (rare).
    Ready(Response, Option<Effect>),
    /// A KMS operation that may wait on the store.
    Pending(KmsFuture),
}

/// The randomness of one request in flight: ChaCha20 seeded from the driver's generator when
/// the request starts, so the future owns it.
struct RequestRng(ChaCha20Rng);

impl Random for RequestRng {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), RngError> {
        self.0.fill_bytes(buf);
        Ok(())
    }
}

/// What the transport established about the peer (after the TLS handshake).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Peer {
    /// The user identity for authorization (subject CN of the verified client certificate, or
    /// the fixed user of an unauthenticated development deployment).
    pub user: Option<String>,
    /// SubjectPublicKeyInfo DER of the client certificate (whose key the handshake proved).
    pub spki_der: Option<Vec<u8>>,
}

/// The phase a connection was accepted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generation {
    /// Before `/start`: bootstrap certificate, bootstrap API.
    Bootstrap,
    /// After `/start` (or a server started without bootstrap): API certificate, KMS.
    Serving,
}

/// Why an [`App`] could not be built or switch phase.
#[derive(Debug)]
pub enum AppError {
    /// The bootstrap key could not be encoded.
    Key(boot::keys::KeyError),
    /// A TLS configuration was refused.
    Tls(TlsError),
    /// `/start` has not happened, or the KMS already serves.
    NotStarting,
    /// `/start` came without a client CA (the core refuses it; never serve unauthenticated).
    NoClientCa,
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppError::Key(e) => write!(f, "bootstrap key: {e}"),
            AppError::Tls(e) => write!(f, "{e}"),
            AppError::NotStarting => f.write_str("the server is not between /start and serving"),
            AppError::NoClientCa => f.write_str("no client CA was provisioned"),
        }
    }
}

impl core::error::Error for AppError {}

/// The platform as the bootstrap phase sees it: attestation reports and the database check.
pub struct Platform {
    /// Reports, certificate table, derived key.
    pub evidence: Box<dyn Evidence + Send>,
    /// `/redis-findex`: does the database answer and is the secret right.
    pub probe: Box<dyn DatabaseProbe + Send>,
}

/// Limits the App applies.
#[derive(Debug, Clone, Copy)]
pub struct AppConfig {
    /// HTTP framing of the KMS (body size → 413). The bootstrap API uses its own 64 KiB limit.
    pub http: Limits,
    /// TLS buffers per connection.
    pub tls: TlsLimits,
    /// `GET /attestation` (unauthenticated, a firmware round trip each): beyond this rate,
    /// 429 without asking the platform.
    pub attestation_rate: Rate,
}

impl Default for AppConfig {
    fn default() -> Self {
        AppConfig {
            http: Limits::DEFAULT,
            tls: TlsLimits::default(),
            attestation_rate: Rate {
                burst: 8,
                per_second: 4,
            },
        }
    }
}

/// The TLS identity of a server started without bootstrap (host mode with PEM files).
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// Certificate chain, DER, leaf first.
    pub chain: Vec<Vec<u8>>,
    /// The leaf's private key.
    pub key: PrivateKey,
    /// Client CA certificates (DER): mandatory mTLS. `None`: no client authentication, every
    /// request runs as `fixed_user` (development only).
    pub client_ca: Option<Vec<Vec<u8>>>,
    /// The identity of every request when there is no client CA.
    pub fixed_user: Option<String>,
}

enum BootState {
    Provisioning(Box<Bootstrap>),
    Starting(Box<Started>),
}

struct Serving<S: Store> {
    kms: Kms<S>,
    tls: Option<TlsConfig>,
    fixed_user: Option<String>,
}

/// The application. Shared by every connection (`&self` everywhere; the bootstrap state and the
/// platform sit behind locks of type `L`, a spin lock by default, a blocking one on a host).
pub struct App<S: Store, L: RawMutex = spin::Mutex<()>> {
    identity: Option<Arc<Identity>>,
    platform: Option<Mutex<L, Platform>>,
    attestations: Mutex<L, Bucket>,
    boot: Mutex<L, Option<BootState>>,
    serving: spin::Once<Serving<S>>,
    bootstrap_tls: Option<TlsConfig>,
    ratls_tls: Option<TlsConfig>,
    clock: Arc<SharedClock>,
    config: AppConfig,
}

impl<S: Store, L: RawMutex> fmt::Debug for App<S, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("App")
            .field("serving", &self.serving.is_completed())
            .finish_non_exhaustive()
    }
}

fn bootstrap_tls(
    identity: &Identity,
    auth: ClientAuth,
    clock: &Arc<SharedClock>,
    limits: TlsLimits,
) -> Result<TlsConfig, AppError> {
    let chain = alloc::vec![Vec::from(identity.certificate_der())];
    TlsConfig::new(&chain, &tls_key(identity)?, auth, clock.clone(), limits).map_err(AppError::Tls)
}

/// The bootstrap key as a TLS key: the bootstrap certificate and the API certificate both carry it.
fn tls_key(identity: &Identity) -> Result<PrivateKey, AppError> {
    let key = identity.key().to_pkcs8_der().map_err(AppError::Key)?;
    Ok(PrivateKey::Pkcs8(key.to_vec()))
}

impl<S: Store, L: RawMutex> App<S, L> {
    /// A server that starts in bootstrap mode: the main port serves the bootstrap API with the
    /// RA-TLS bootstrap certificate (a client certificate is always requested: provisioning is bound
    /// to the client key that [`ProvisionerPolicy`] admits), the RA-TLS port serves `/attestation`.
    pub fn bootstrap(
        identity: Arc<Identity>,
        policy: ProvisionerPolicy,
        platform: Platform,
        config: AppConfig,
    ) -> Result<Self, AppError> {
        let clock = Arc::new(SharedClock::new());
        // Provisioning is always bound to a client key (pinned, or the first one that provisions), so
        // the bootstrap port always asks for a client certificate; the core checks the key.
        let bootstrap =
            bootstrap_tls(&identity, ClientAuth::ProofOfPossession, &clock, config.tls)?;
        let ratls = bootstrap_tls(&identity, ClientAuth::None, &clock, config.tls)?;
        Ok(App {
            boot: Mutex::new(Some(BootState::Provisioning(Box::new(Bootstrap::new(
                identity.clone(),
                policy,
            ))))),
            identity: Some(identity),
            platform: Some(Mutex::new(platform)),
            attestations: Mutex::new(Bucket::new(config.attestation_rate)),
            serving: spin::Once::new(),
            bootstrap_tls: Some(bootstrap),
            ratls_tls: Some(ratls),
            clock,
            config,
        })
    }

    /// A server that serves the KMS at once (no bootstrap, no attestation), with the given TLS
    /// identity.
    pub fn serving(store: S, tls: ServerTls, config: AppConfig) -> Result<Self, AppError> {
        let clock = Arc::new(SharedClock::new());
        let auth = match tls.client_ca {
            Some(roots) => ClientAuth::WebPki {
                roots,
                mandatory: true,
            },
            None => ClientAuth::None,
        };
        let config_tls = TlsConfig::new(&tls.chain, &tls.key, auth, clock.clone(), config.tls)
            .map_err(AppError::Tls)?;
        Ok(Self::serving_inner(
            store,
            Some(config_tls),
            tls.fixed_user,
            config,
            clock,
        ))
    }

    /// [`App::serving`] with a TLS configuration built by the caller (any [`ClientAuth`], the
    /// caller's clock).
    pub fn serving_with_tls(
        store: S,
        tls: TlsConfig,
        fixed_user: Option<String>,
        config: AppConfig,
    ) -> Self {
        let clock = Arc::new(SharedClock::new());
        Self::serving_inner(store, Some(tls), fixed_user, config, clock)
    }

    /// Resume TLS sessions of the KMS listener with stateless tickets
    /// ([`TlsConfig::with_tickets`]; host servers, which have a std ticketer).
    pub fn with_session_tickets(
        mut self,
        ticketer: Arc<dyn rustls::server::ProducesTickets>,
    ) -> Self {
        if let Some(serving) = self.serving.get_mut()
            && let Some(tls) = serving.tls.take()
        {
            serving.tls = Some(tls.with_tickets(ticketer));
        }
        self
    }

    /// A KMS App without TLS (no listener accepts): for driving [`crate::conn::Http`] with
    /// plaintext in tests and fuzzing. Every request runs as the peer the caller passes.
    pub fn without_tls(store: S, config: AppConfig) -> Self {
        Self::serving_inner(store, None, None, config, Arc::new(SharedClock::new()))
    }

    fn serving_inner(
        store: S,
        tls: Option<TlsConfig>,
        fixed_user: Option<String>,
        config: AppConfig,
        clock: Arc<SharedClock>,
    ) -> Self {
        let app = App {
            identity: None,
            platform: None,
            attestations: Mutex::new(Bucket::new(config.attestation_rate)),
            boot: Mutex::new(None),
            serving: spin::Once::new(),
            bootstrap_tls: None,
            ratls_tls: None,
            clock,
            config,
        };
        app.serving.call_once(|| Serving {
            kms: Kms::new(store, KmsConfig::default()),
            tls,
            fixed_user,
        });
        app
    }

    /// The bootstrap identity, when the server started in bootstrap mode.
    pub fn identity(&self) -> Option<&Arc<Identity>> {
        self.identity.as_ref()
    }

    /// True once the KMS serves.
    pub fn is_serving(&self) -> bool {
        self.serving.is_completed()
    }

    /// The KMS, once it serves.
    pub fn kms(&self) -> Option<&Kms<S>> {
        self.serving.get().map(|s| &s.kms)
    }

    /// Sets the (untrusted) wall-clock time used for certificate validity checks.
    pub fn set_time(&self, unix_seconds: i64) {
        self.clock.set(unix_seconds);
    }

    /// The TLS configuration and phase of a new connection on `listener`; `None` when that
    /// listener has nothing to serve (a closed RA-TLS port, a server without bootstrap).
    pub fn accept(&self, listener: Listener) -> Option<(TlsConfig, Generation)> {
        match listener {
            Listener::RaTls => self.ratls_tls.clone().map(|t| (t, Generation::Bootstrap)),
            Listener::Kmip => self
                .serving
                .get()
                .and_then(|s| s.tls.clone())
                .map(|t| (t, Generation::Serving)),
            Listener::Main => match self.serving.get() {
                Some(s) => s.tls.clone().map(|t| (t, Generation::Serving)),
                None => self
                    .bootstrap_tls
                    .clone()
                    .map(|t| (t, Generation::Bootstrap)),
            },
        }
    }

    /// The HTTP limits of a connection of this phase.
    pub fn http_limits(&self, listener: Listener, generation: Generation) -> Limits {
        match (listener, generation) {
            (Listener::Main, Generation::Serving) => self.config.http,
            _ => Limits {
                max_body_bytes: MAX_BODY,
                ..Limits::DEFAULT
            },
        }
    }

    /// The largest binary TTLV message of the KMIP listener: the KMS's HTTP body limit.
    pub fn ttlv_max_bytes(&self) -> usize {
        self.config.http.max_body_bytes
    }

    /// The TLS limits.
    pub fn tls_limits(&self) -> TlsLimits {
        self.config.tls
    }

    /// The provisioned database, between `/start` ([`Effect::OpenStore`]) and [`App::serve`].
    pub fn database(&self) -> Option<(String, DbSecret)> {
        match &*self.boot.lock() {
            Some(BootState::Starting(s)) => {
                Some((s.database.url.clone(), s.database.secret.clone()))
            }
            _ => None,
        }
    }

    /// Switches to serving with the opened store: builds the KMS and the API TLS configuration
    /// (client certificates from the provisioned CA, optional at the TLS layer so that
    /// `/attestation` stays public; every KMS route requires one). Returns
    /// [`Effect::CloseRaTlsPort`] when the API certificate carries the quote.
    pub fn serve(&self, store: S) -> Result<Option<Effect>, AppError> {
        let mut boot = self.boot.lock();
        let Some(BootState::Starting(started)) = &*boot else {
            return Err(AppError::NotStarting);
        };
        let ca = started.client_ca.as_ref().ok_or(AppError::NoClientCa)?;
        let tls = TlsConfig::new(
            &started.chain.der,
            &tls_key(&started.identity)?,
            ClientAuth::WebPki {
                roots: ca.der.clone(),
                mandatory: false,
            },
            self.clock.clone(),
            self.config.tls,
        )
        .map_err(AppError::Tls)?;
        let close_ratls = !started.needs_ra_tls_port();
        self.serving.call_once(|| Serving {
            kms: Kms::new(store, KmsConfig::default()),
            tls: Some(tls),
            fixed_user: None,
        });
        *boot = None;
        Ok(close_ratls.then_some(Effect::CloseRaTlsPort))
    }

    /// The identity of a connection's peer, from its verified client certificate.
    pub fn peer(&self, generation: Generation, cert_der: Option<&[u8]>) -> Peer {
        let fixed = match generation {
            Generation::Serving => self.serving.get().and_then(|s| s.fixed_user.clone()),
            Generation::Bootstrap => None,
        };
        Peer {
            user: fixed.or_else(|| cert_der.and_then(crate::x509::subject_common_name)),
            spki_der: cert_der.and_then(crate::x509::spki_der),
        }
    }

    /// Answers one framed request of a connection accepted on `listener` in `generation`. KMS
    /// requests come back as a [`KmsFuture`]: they may wait on the store.
    pub fn handle(
        self: &Arc<Self>,
        listener: Listener,
        generation: Generation,
        peer: &Peer,
        env: &mut Env<'_>,
        req: Request,
    ) -> Handled
    where
        S: 'static,
        L: 'static,
    {
        let ready = |r: Response| Handled::Ready(r, None);
        let path = req.path.as_str();
        match (req.method, path, listener) {
            (Method::Get, "/attestation", _) => return ready(self.attestation(env.now, &req)),
            (_, "/attestation", _) => return ready(method_not_allowed()),
            (_, _, Listener::RaTls) => {
                return ready(Response::text(404, "only GET /attestation on this port"));
            }
            (_, _, Listener::Kmip) => {
                return ready(Response::text(404, "only binary TTLV on this port"));
            }
            (Method::Get, "/health", _) => {
                return ready(Response::json(200, br#"{"status":"UP"}"#.to_vec()));
            }
            (Method::Get, "/version", _) => {
                return ready(Response::json(200, json_string(VERSION)));
            }
            (_, "/health" | "/version", _) => return ready(method_not_allowed()),
            _ => {}
        }
        match (generation, self.serving.is_completed()) {
            (Generation::Serving, true) => self.kms_request(peer, env, KmsCall::Http(req)),
            (Generation::Serving, false) => ready(Response::text(503, "the KMS is not serving")),
            (Generation::Bootstrap, true) => {
                let mut r = Response::text(503, "bootstrap finished: reconnect to reach the KMS");
                r.close = true;
                ready(r)
            }
            (Generation::Bootstrap, false) => {
                let (r, e) = self.bootstrap_route(peer, &req);
                Handled::Ready(r, e)
            }
        }
    }

    /// Answers one binary TTLV message of a connection on the KMIP listener: the future's
    /// [`Response::body`] is the binary `ResponseMessage` (a failed one for a message that
    /// fails as a whole; `close` set when the connection should end: no identity, not serving).
    pub fn handle_ttlv(
        self: &Arc<Self>,
        generation: Generation,
        peer: &Peer,
        env: &mut Env<'_>,
        message: Vec<u8>,
    ) -> Handled
    where
        S: 'static,
        L: 'static,
    {
        let message = Zeroizing::new(message);
        if generation != Generation::Serving || !self.serving.is_completed() {
            let mut r = binary_error(
                env.now,
                &crate::KmsError::Store(crate::store::StoreError::Unavailable(
                    "the KMS is not serving",
                )),
            );
            r.close = true;
            return Handled::Ready(r, None);
        }
        self.kms_request(peer, env, KmsCall::Ttlv(message))
    }

    /// A KMS request as a future that owns the App, the request and its randomness.
    fn kms_request(self: &Arc<Self>, peer: &Peer, env: &mut Env<'_>, call: KmsCall) -> Handled
    where
        S: 'static,
        L: 'static,
    {
        let mut seed = Zeroizing::new([0u8; 32]);
        if env.rng.fill(seed.as_mut_slice()).is_err() {
            return Handled::Ready(Response::text(500, "no randomness"), None);
        }
        let mut rng = RequestRng(ChaCha20Rng::from_seed(*seed));
        let (app, user, now) = (self.clone(), peer.user.clone(), env.now);
        Handled::Pending(KmsFuture(Box::pin(async move {
            let Some(s) = app.serving.get() else {
                return Response::text(503, "the KMS is not serving");
            };
            let mut env = Env { now, rng: &mut rng };
            match call {
                KmsCall::Http(req) => kms_route(&s.kms, &mut env, user.as_deref(), &req).await,
                KmsCall::Ttlv(message) => {
                    let user = user.as_deref().filter(|u| !u.is_empty()).unwrap_or("");
                    match s.kms.kmip_binary(&mut env, user, &message).await {
                        Ok(body) => Response::binary(200, body),
                        Err(e) => {
                            let mut r = binary_error(env.now, &e);
                            r.close = matches!(e, crate::KmsError::Unauthenticated);
                            r
                        }
                    }
                }
            }
        })))
    }

    fn attestation(&self, now: i64, req: &Request) -> Response {
        let (Some(identity), Some(platform)) = (&self.identity, &self.platform) else {
            return Response::text(
                404,
                "this server has no attestation (started without bootstrap)",
            );
        };
        if !self.attestations.lock().take(now) {
            return Response::text(429, "too many attestation requests: retry in a second");
        }
        let query = req.query.as_deref().unwrap_or("");
        let mut platform = platform.lock();
        let r = match attestation(identity, platform.evidence.as_mut(), query) {
            Ok(a) => boot::Response::ok(&a),
            Err(e) => boot::Response::error(&e),
        };
        Response::json(r.status, r.body)
    }

    fn bootstrap_route(&self, peer: &Peer, req: &Request) -> (Response, Option<Effect>) {
        let mut boot = self.boot.lock();
        let machine = match boot.take() {
            Some(BootState::Provisioning(m)) => *m,
            other => {
                *boot = other;
                let e = BootstrapError::Conflict("bootstrap finished; the KMS is starting");
                let r = boot::Response::error(&e);
                return (Response::json(503, r.body), None);
            }
        };
        let Some(platform) = &self.platform else {
            return (Response::text(404, "no such route"), None);
        };
        let mut platform = platform.lock();
        match machine.handle(req, peer.spki_der.as_deref(), platform.probe.as_mut()) {
            Step::Continue(next, r) => {
                *boot = Some(BootState::Provisioning(Box::new(next)));
                (Response::json(r.status, r.body), None)
            }
            Step::Start(started, r) => {
                *boot = Some(BootState::Starting(Box::new(started)));
                let mut resp = Response::json(r.status, r.body);
                resp.close = true;
                (resp, Some(Effect::OpenStore))
            }
        }
    }
}

/// What a KMS request in flight answers.
enum KmsCall {
    /// An HTTP request ([`kms_route`]).
    Http(Request),
    /// A binary TTLV message of the KMIP listener.
    Ttlv(Zeroizing<Vec<u8>>),
}

/// The KMS routes.
async fn kms_route<S: Store>(
    kms: &Kms<S>,
    env: &mut Env<'_>,
    user: Option<&str>,
    req: &Request,
) -> Response {
    let path = req.path.as_str();
    let known = matches!(
        path,
        "/kmip/2_1"
            | "/kmip"
            | "/access/grant"
            | "/access/revoke"
            | "/access/owned"
            | "/access/obtained"
    ) || path.starts_with("/access/list/");
    if !known {
        return Response::text(404, "no such route");
    }
    let Some(user) = user.filter(|u| !u.is_empty()) else {
        return Response::text(401, "authentication required: no client identity");
    };
    let result = match (req.method, path) {
        // Binary TTLV (as the Cosmian KMS's `POST /kmip`): the answer, even a failure, is a
        // binary ResponseMessage (with the error's status).
        (Method::Post, "/kmip/2_1" | "/kmip") if is_octet_stream(req) => {
            return match kms.kmip_binary(env, user, &req.body).await {
                Ok(body) => Response::binary(200, body),
                Err(e) => binary_error(env.now, &e),
            };
        }
        (Method::Post, "/kmip/2_1" | "/kmip") => kms.kmip_json(env, user, &req.body).await,
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

/// Whether the body is binary TTLV (`Content-Type: application/octet-stream`, any parameters).
fn is_octet_stream(req: &Request) -> bool {
    req.header("content-type").is_some_and(|v| {
        let essence = v.split(|b| *b == b';').next().unwrap_or(v);
        essence
            .trim_ascii()
            .eq_ignore_ascii_case(crate::http::OCTET_STREAM.as_bytes())
    })
}

/// A binary KMIP client's answer to a failed message: a `ResponseMessage` with the reason.
fn binary_error(now: i64, e: &crate::KmsError) -> Response {
    match crate::kmip::binary::to_vec(&crate::kmip_error_response(now, e)) {
        Ok(body) => Response::binary(e.http_status(), body),
        Err(_) => Response::text(e.http_status(), &format!("{e}")),
    }
}

fn json_string(s: &str) -> Vec<u8> {
    serde_json::to_vec(s).unwrap_or_default()
}

fn method_not_allowed() -> Response {
    Response::text(405, "method not allowed on this route")
}
