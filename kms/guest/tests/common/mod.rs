//! The harness of the guest service tests and of the host-path benchmark
//! (`examples/host_path.rs`): the service's stack joined by an in-memory cable to a "world"
//! stack carrying rustls clients and a byte proxy to a real `redis-server`.

#![allow(dead_code, unused_imports)]

pub use std::collections::VecDeque;
pub use std::io::{Read, Write};
pub use std::net::TcpStream;
pub use std::sync::atomic::{AtomicUsize, Ordering};
pub use std::sync::{Arc, Mutex};
pub use std::time::{Duration as StdDuration, Instant as StdInstant};

pub use kms::bootstrap::ProvisionerPolicy;
pub use kms::bootstrap::platform::{CertTableEntry, Evidence, EvidenceError, Platform};
pub use kms::kmip::binary;
pub use kms::kmip::ttlv::{EnumValue, Ttlv, Value};
pub use kms::pace::{Deadlines, Rate};
pub use kms_guest::server::Limits as ServiceLimits;
pub use kms_guest::{Clock, Server, Settings, SharedStack};
pub use netstack::{
    Config, ConnId, Duration, Instant, IpEndpoint, Ipv4Address, Ipv4Cidr, Ipv4Mode, ListenerId,
    Nic, NicError, Stack, StaticIpv4, TcpError,
};
pub use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
pub use testkit::{Pki, RedisServer, TestRng};

// ------------------------------------------------------------------------------- the cable

pub type Queue = Arc<Mutex<VecDeque<Vec<u8>>>>;

pub struct PipeNic {
    pub mac: [u8; 6],
    pub rx: Queue,
    pub tx: Queue,
}

impl Nic for PipeNic {
    fn mac_address(&self) -> [u8; 6] {
        self.mac
    }
    fn mtu(&self) -> usize {
        1500
    }
    fn receive(&mut self, frame: &mut [u8]) -> Result<Option<usize>, NicError> {
        let Some(f) = self.rx.lock().unwrap().pop_front() else {
            return Ok(None);
        };
        let dst = frame
            .get_mut(..f.len())
            .ok_or(NicError::FrameTooLarge { len: f.len() })?;
        dst.copy_from_slice(&f);
        Ok(Some(f.len()))
    }
    fn can_transmit(&mut self) -> bool {
        self.tx.lock().unwrap().len() < 512
    }
    fn transmit(&mut self, frame: &[u8]) -> Result<(), NicError> {
        self.tx.lock().unwrap().push_back(frame.to_vec());
        Ok(())
    }
}

pub fn stack(nic: PipeNic, last: u8, max_sockets: usize) -> Stack<PipeNic> {
    let config = Config {
        ipv4: Ipv4Mode::Static(StaticIpv4 {
            address: Ipv4Cidr::new(Ipv4Address::new(10, 0, 2, last), 24),
            gateway: None,
        }),
        random_seed: u64::from(last) * 7919,
        limits: netstack::Limits {
            max_sockets,
            ..netstack::Limits::default()
        },
    };
    Stack::new(nic, config, now()).unwrap()
}

pub fn now() -> Instant {
    static START: std::sync::OnceLock<StdInstant> = std::sync::OnceLock::new();
    let start = *START.get_or_init(StdInstant::now);
    Instant::from_micros(start.elapsed().as_micros() as i64 + 1_000_000)
}

// ------------------------------------------------------------------------------- the world

/// Everything outside the guest: a stack at 10.0.2.2 with a Redis proxy on port 6379.
pub struct World {
    pub stack: Stack<PipeNic>,
    pub redis_port: u16,
    pub redis_listener: ListenerId,
    pub proxies: Vec<Proxy>,
}

pub struct Proxy {
    pub conn: ConnId,
    pub tcp: TcpStream,
    pub to_guest: Vec<u8>,
}

impl World {
    pub fn pump(&mut self) {
        let t = now();
        self.stack.poll(t);
        while let Some(conn) = self.stack.accept(self.redis_listener) {
            let tcp = TcpStream::connect(("127.0.0.1", self.redis_port)).unwrap();
            tcp.set_nonblocking(true).unwrap();
            self.proxies.push(Proxy {
                conn,
                tcp,
                to_guest: Vec::new(),
            });
        }
        let mut buf = vec![0u8; 65536];
        let stack = &mut self.stack;
        self.proxies.retain_mut(|p| {
            loop {
                match stack.read(p.conn, &mut buf) {
                    Ok(0) => return false,
                    Ok(n) => {
                        p.tcp.set_nonblocking(false).unwrap();
                        p.tcp.write_all(&buf[..n]).unwrap();
                        p.tcp.set_nonblocking(true).unwrap();
                    }
                    Err(TcpError::WouldBlock) => break,
                    Err(_) => return false,
                }
            }
            loop {
                match p.tcp.read(&mut buf) {
                    Ok(0) => {
                        let _ = stack.close(p.conn);
                        return false;
                    }
                    Ok(n) => p.to_guest.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(_) => return false,
                }
            }
            if !p.to_guest.is_empty() {
                match stack.write(p.conn, &p.to_guest) {
                    Ok(n) => {
                        p.to_guest.drain(..n);
                    }
                    Err(TcpError::WouldBlock) => {}
                    Err(_) => return false,
                }
            }
            true
        });
        self.stack.poll(now());
    }
}

/// CPU nanoseconds of this thread spent in the guest's `Server::step` (including
/// [`IDLE_NANOS`]), for the host-path benchmark.
pub static GUEST_NANOS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// CPU nanoseconds spent pumping the world from [`TestClock::idle`] (inside a guest step): the
/// host-path benchmark subtracts them from the guest's time.
pub static IDLE_NANOS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// This thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), in nanoseconds.
pub fn thread_cpu_nanos() -> u64 {
    cpu_time::ThreadTime::now()
        .as_duration()
        .as_nanos()
        .try_into()
        .unwrap_or(u64::MAX)
}

/// The guest's clock: real time; idling pumps the world (so Redis replies arrive while the
/// guest blocks in a store call).
pub struct TestClock(pub Arc<Mutex<World>>);

impl Clock for TestClock {
    fn now(&self) -> Instant {
        now()
    }
    fn unix_seconds(&self) -> i64 {
        // A fixed date that advances with the test.
        1_800_000_000 + (now().total_millis() / 1000)
    }
    fn idle(&self, max: Duration) {
        let t = thread_cpu_nanos();
        if let Ok(mut w) = self.0.try_lock() {
            w.pump();
        }
        IDLE_NANOS.fetch_add(thread_cpu_nanos().saturating_sub(t), Ordering::Relaxed);
        std::thread::sleep(StdDuration::from_micros(max.total_micros().min(200)));
    }
}

/// The `none` platform: no reports, random sk.
/// No attestation hardware; counts how often the platform was asked anything.
pub struct NoPlatform(pub Arc<AtomicUsize>);

impl Evidence for NoPlatform {
    fn platform(&self) -> Platform {
        self.0.fetch_add(1, Ordering::SeqCst);
        Platform::None
    }
    fn report(&mut self, _: &[u8; 64]) -> Result<Vec<u8>, EvidenceError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Err(EvidenceError::Unsupported)
    }
    fn cert_table(&mut self) -> Result<Vec<CertTableEntry>, EvidenceError> {
        Ok(Vec::new())
    }
    fn derived_key(&mut self) -> Result<Option<zeroize::Zeroizing<[u8; 32]>>, EvidenceError> {
        Ok(None)
    }
}

// ------------------------------------------------------------------------------- harness

pub struct Harness {
    pub _redis: RedisServer,
    pub world: Arc<Mutex<World>>,
    pub server: Server<PipeNic>,
    pub rng: TestRng,
    pub redis_url: String,
    /// Reports asked of the platform.
    pub reports: Arc<AtomicUsize>,
}

pub const PORT: u16 = 9998;
pub const RATLS_PORT: u16 = 9999;
pub const KMIP_PORT: u16 = 5696;

impl Harness {
    pub fn new(limits: ServiceLimits, provisioner: ProvisionerPolicy) -> Harness {
        let redis = RedisServer::start();
        let a: Queue = Arc::default();
        let b: Queue = Arc::default();
        let guest = stack(
            PipeNic {
                mac: [2, 0, 0, 0, 0, 1],
                rx: a.clone(),
                tx: b.clone(),
            },
            1,
            64,
        );
        let mut world_stack = stack(
            PipeNic {
                mac: [2, 0, 0, 0, 0, 2],
                rx: b,
                tx: a,
            },
            2,
            64,
        );
        let redis_listener = world_stack.listen(6379, 4).unwrap();
        let world = Arc::new(Mutex::new(World {
            stack: world_stack,
            redis_port: redis.port(),
            redis_listener,
            proxies: Vec::new(),
        }));
        let clock: Arc<dyn Clock> = Arc::new(TestClock(world.clone()));
        let reports = Arc::new(AtomicUsize::new(0));
        let settings = Settings {
            port: PORT,
            ratls_port: RATLS_PORT,
            kmip_port: Some(KMIP_PORT),
            provisioner,
            limits,
        };
        let server = Server::new(
            SharedStack::new(guest),
            clock,
            NoPlatform(reports.clone()),
            settings,
            [9u8; 32],
        )
        .unwrap();
        Harness {
            _redis: redis,
            world,
            server,
            rng: TestRng::new(0x9e37_79b9_7f4a_7c15),
            redis_url: "redis://10.0.2.2:6379".into(),
            reports,
        }
    }

    pub fn step(&mut self) {
        let t = thread_cpu_nanos();
        self.server.step(&mut self.rng);
        GUEST_NANOS.fetch_add(thread_cpu_nanos().saturating_sub(t), Ordering::Relaxed);
        self.world.lock().unwrap().pump();
    }

    /// One round of a TLS client on TCP `conn`: sends what it has (through `out`, which keeps
    /// what TCP did not take), reads what arrived. True when the server closed.
    pub fn pump_client(
        &mut self,
        tls: &mut rustls::ClientConnection,
        conn: ConnId,
        out: &mut Vec<u8>,
    ) -> bool {
        let mut w = self.world.lock().unwrap();
        let mut closed = false;
        while tls.wants_write() {
            tls.write_tls(out).unwrap();
        }
        if !out.is_empty() {
            match w.stack.write(conn, out) {
                Ok(n) => {
                    out.drain(..n);
                }
                Err(TcpError::WouldBlock) => {}
                Err(_) => closed = true,
            }
        }
        let mut buf = vec![0u8; 65536];
        loop {
            match w.stack.read(conn, &mut buf) {
                Ok(0) => return true,
                Ok(n) => {
                    let mut rd = &buf[..n];
                    while !rd.is_empty() {
                        tls.read_tls(&mut rd).unwrap();
                        if tls.process_new_packets().is_err() {
                            return true;
                        }
                    }
                }
                Err(TcpError::WouldBlock) => return closed,
                Err(_) => return true,
            }
        }
    }

    /// Runs the TLS handshake of `tls` on TCP `conn` to completion.
    pub fn handshake(&mut self, tls: &mut rustls::ClientConnection, conn: ConnId) {
        let mut out = Vec::new();
        for _ in 0..100_000 {
            assert!(
                !self.pump_client(tls, conn, &mut out),
                "closed in the handshake"
            );
            if !tls.is_handshaking() && out.is_empty() {
                return;
            }
            self.step();
        }
        panic!("handshake did not complete");
    }

    pub fn tcp_connect(&mut self, port: u16) -> ConnId {
        let remote = IpEndpoint::new(Ipv4Address::new(10, 0, 2, 1).into(), port);
        let c = self.world.lock().unwrap().stack.connect(remote).unwrap();
        for _ in 0..10_000 {
            self.step();
            if self.world.lock().unwrap().stack.state(c) == Ok(netstack::ConnState::Established) {
                return c;
            }
        }
        panic!("TCP connect to {port} did not complete");
    }

    /// Sends `request` over a TLS client on TCP `conn`; returns the HTTP response (or what
    /// arrived before the server closed) and whether the server closed.
    pub fn exchange(
        &mut self,
        tls: &mut rustls::ClientConnection,
        conn: ConnId,
        request: &[u8],
    ) -> (String, bool) {
        if !request.is_empty() {
            tls.writer().write_all(request).unwrap();
        }
        let mut answer = Vec::new();
        let mut closed = false;
        let mut out = Vec::new();
        let deadline = StdInstant::now() + StdDuration::from_secs(60);
        while StdInstant::now() < deadline {
            closed |= self.pump_client(tls, conn, &mut out);
            let _ = tls.reader().read_to_end(&mut answer);
            if complete(&answer) || closed {
                break;
            }
            self.step();
        }
        (String::from_utf8_lossy(&answer).into_owned(), closed)
    }
}

impl Harness {
    /// Sends one binary TTLV message over a TLS client on TCP `conn` (the KMIP port); returns
    /// the response message framed by its TTLV header (`None` if the server closed first).
    pub fn exchange_ttlv(
        &mut self,
        tls: &mut rustls::ClientConnection,
        conn: ConnId,
        request: &Ttlv,
    ) -> Option<Ttlv> {
        tls.writer()
            .write_all(&binary::to_vec(request).unwrap())
            .unwrap();
        let mut answer = Vec::new();
        let mut out = Vec::new();
        let deadline = StdInstant::now() + StdDuration::from_secs(60);
        while StdInstant::now() < deadline {
            let closed = self.pump_client(tls, conn, &mut out);
            let _ = tls.reader().read_to_end(&mut answer);
            if let Ok(Some(len)) = binary::message_len(&answer, 1 << 24)
                && answer.len() >= len
            {
                return Some(binary::from_slice(&answer[..len], &Default::default()).unwrap());
            }
            if closed {
                return None;
            }
            self.step();
        }
        panic!("no TTLV answer");
    }
}

/// A KMIP 2.1 `RequestMessage` of `items` (operation, payload).
pub fn request_message(items: Vec<(&str, Vec<Ttlv>)>) -> Ttlv {
    let items = items
        .into_iter()
        .map(|(op, payload)| (Ttlv::enumeration("Operation", op), payload))
        .collect();
    kms::kmip::message::request(2, 1, items)
}

/// A full HTTP/1.1 response (head and Content-Length body) is in `buf`.
pub fn complete(buf: &[u8]) -> bool {
    let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let len = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("content-length:")
                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
        })
        .unwrap_or(0);
    buf.len() >= head_end + 4 + len
}

pub fn post(path: &str, body: &str) -> Vec<u8> {
    format!("POST {path} HTTP/1.1\r\nHost: kms\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len())
        .into_bytes()
}

pub fn body(resp: &str) -> serde_json::Value {
    let at = resp.find("\r\n\r\n").expect("head") + 4;
    serde_json::from_str(&resp[at..]).unwrap_or_else(|e| panic!("{e}: {resp}"))
}

/// A client that trusts exactly one certificate (the bootstrap certificate is self-signed: the
/// real `ckms` pins it after attestation; here the test pins it by DER as its only root).
pub fn client(
    roots_der: &[Vec<u8>],
    cert: Option<(&[Vec<u8>], &[u8])>,
) -> rustls::ClientConnection {
    let mut roots = rustls::RootCertStore::empty();
    for r in roots_der {
        roots.add(CertificateDer::from(r.clone())).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let cfg = match cert {
        Some((chain, key)) => b
            .with_client_auth_cert(
                chain
                    .iter()
                    .map(|c| CertificateDer::from(c.clone()))
                    .collect(),
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.to_vec())),
            )
            .unwrap(),
        None => b.with_no_client_auth(),
    };
    let mut c =
        rustls::ClientConnection::new(Arc::new(cfg), ServerName::try_from("kms.test").unwrap())
            .unwrap();
    c.set_buffer_limit(None);
    c
}

/// Accepts the bootstrap certificate whatever it is (test only: the real client attests it).
#[derive(Debug)]
pub struct AcceptAny;
impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            m,
            c,
            d,
            &rustls::crypto::ring::default_provider().signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            m,
            c,
            d,
            &rustls::crypto::ring::default_provider().signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

pub fn bootstrap_client(cert: Option<(&[Vec<u8>], &[u8])>) -> rustls::ClientConnection {
    let b = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(AcceptAny));
    let cfg = match cert {
        Some((chain, key)) => b
            .with_client_auth_cert(
                chain
                    .iter()
                    .map(|c| CertificateDer::from(c.clone()))
                    .collect(),
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.to_vec())),
            )
            .unwrap(),
        None => b.with_no_client_auth(),
    };
    let mut c =
        rustls::ClientConnection::new(Arc::new(cfg), ServerName::try_from("kms.test").unwrap())
            .unwrap();
    c.set_buffer_limit(None);
    c
}

/// A CA of the test (certificates from [`testkit::Pki`]).
pub struct Ca {
    pub pki: Pki,
    pub der: Vec<u8>,
    pub pem: String,
}

impl Ca {
    pub fn new(cn: &str) -> Ca {
        let pki = Pki::new(cn);
        Ca {
            der: pki.ca().der.clone(),
            pem: pki.ca().pem.clone(),
            pki,
        }
    }
    pub fn issue(&self, cn: &str) -> (Vec<Vec<u8>>, Vec<u8>) {
        let cert = self.pki.client(Some(cn));
        (vec![cert.der.clone()], cert.key_der.to_vec())
    }
    pub fn sign_csr(&self, csr_pem: &str) -> String {
        let csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem).unwrap();
        let cert = csr.signed_by(self.pki.issuer()).unwrap();
        format!("{}{}", cert.pem(), self.pem)
    }
}

/// A provisioned, serving guest: CSR signed by a server CA, Redis over netstack, a users CA,
/// `/start`. Returns the harness, the server CA's DER and the users CA.
pub fn provisioned(limits: ServiceLimits) -> (Harness, Vec<u8>, Ca) {
    let admin_ca = Ca::new("provisioner CA");
    let (admin_chain, admin_key) = admin_ca.issue("admin");
    let spki = kms::x509::spki_der(&admin_chain[0]).unwrap();
    let pin: [u8; 32] = {
        use sha2::Digest;
        sha2::Sha256::digest(&spki).into()
    };
    let mut h = Harness::new(limits, ProvisionerPolicy::Pinned(pin));
    let server_ca = Ca::new("server CA");
    let users = Ca::new("users CA");
    let c = h.tcp_connect(PORT);
    let mut tls = bootstrap_client(Some((&admin_chain, &admin_key)));
    let (resp, _) = h.exchange(
        &mut tls,
        c,
        &post(
            "/csr",
            r#"{"subject":"CN=kms.test","dns_names":["kms.test"]}"#,
        ),
    );
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let csr = body(&resp)["csr_pem"].as_str().unwrap().to_string();
    let req = serde_json::json!({ "chain_pem": server_ca.sign_csr(&csr) }).to_string();
    let secret = <base64ct::Base64 as base64ct::Encoding>::encode_string(&[42u8; 32]);
    let db = serde_json::json!({ "url": h.redis_url, "db_secret": secret }).to_string();
    let ca = serde_json::json!({ "ca_pem": users.pem }).to_string();
    for (path, body) in [
        ("/certificate", req.as_str()),
        ("/redis-findex", db.as_str()),
        ("/client-ca", ca.as_str()),
        ("/start", ""),
    ] {
        let (resp, _) = h.exchange(&mut tls, c, &post(path, body));
        assert!(resp.starts_with("HTTP/1.1 200"), "{path}: {resp}");
    }
    for _ in 0..100 {
        h.step();
    }
    assert!(h.server.serving());
    (h, server_ca.der.clone(), users)
}
