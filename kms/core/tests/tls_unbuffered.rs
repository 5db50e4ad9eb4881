//! `kms::tls` on the host: a std rustls client talks through in-memory pipes to `TlsConn` /
//! `kms::conn::Conn` + `kms::app::App` + `Kms<MemoryStore>`: mTLS identities, TLS 1.2 and
//! 1.3, the pinned-SPKI provisioner mode, the injected clock, and garbage that must give a typed
//! error (and an alert) rather than a panic.
#![cfg(feature = "tls")]

use std::io::{Read, Write};
use std::sync::Arc;

use kms::Env;
use kms::app::{App, AppConfig, Listener};
use kms::conn::{Action, Conn};
use kms::http::Limits;
use kms::store::memory::MemoryStore;
use kms::tls::{ClientAuth, SharedClock, TlsConfig, TlsConn, TlsError, TlsLimits, TlsState};
use kms::x509::PrivateKey;
use rcgen::KeyPair;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use testkit::TestRng;

const NOW: i64 = 1_750_000_000;

/// A CA, the server certificate it signed, and helpers to issue client certificates.
struct Pki {
    pki: testkit::Pki,
    ca_der: Vec<u8>,
    server_chain: Vec<Vec<u8>>,
    server_key: PrivateKey,
}

struct Client {
    chain: Vec<Vec<u8>>,
    key: Vec<u8>,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let pki = testkit::Pki::new(&format!("{name} test CA"));
        let server = pki.server("kms.test", &["kms.test"]);
        Pki {
            ca_der: pki.ca().der.clone(),
            server_chain: vec![server.der.clone(), pki.ca().der.clone()],
            server_key: PrivateKey::Pkcs8(server.key_der.to_vec()),
            pki,
        }
    }

    fn client(&self, cn: &str, expired: bool) -> Client {
        let mut p = testkit::Pki::client_params(Some(cn));
        if expired {
            p.not_before = rcgen::date_time_ymd(2000, 1, 1);
            p.not_after = rcgen::date_time_ymd(2001, 1, 1);
        }
        let cert = self.pki.issue(&p);
        Client {
            chain: vec![cert.der.clone()],
            key: cert.key_der.to_vec(),
        }
    }

    fn config(&self, auth: ClientAuth) -> TlsConfig {
        TlsConfig::new(
            &self.server_chain,
            &self.server_key,
            auth,
            clock(NOW),
            TlsLimits::default(),
        )
        .unwrap()
    }
}

fn clock(now: i64) -> Arc<SharedClock> {
    let c = SharedClock::new();
    c.set(now);
    Arc::new(c)
}

fn client_config(
    pki: &Pki,
    client: Option<&Client>,
    version: &'static rustls::SupportedProtocolVersion,
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(pki.ca_der.clone())).unwrap();
    let b = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[version])
    .unwrap()
    .with_root_certificates(roots);
    let mut cfg = match client {
        Some(c) => b
            .with_client_auth_cert(
                c.chain
                    .iter()
                    .map(|d| CertificateDer::from(d.clone()))
                    .collect(),
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(c.key.clone())),
            )
            .unwrap(),
        None => b.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

fn connect(cfg: Arc<rustls::ClientConfig>) -> rustls::ClientConnection {
    rustls::ClientConnection::new(cfg, ServerName::try_from("kms.test").unwrap()).unwrap()
}

/// The server side under test: one store shared by every connection's App.
struct Server {
    store: Arc<MemoryStore>,
    rng: TestRng,
}

impl Server {
    fn new() -> Server {
        Server {
            store: Arc::new(MemoryStore::new()),
            rng: TestRng::new(0x1234_5678_9abc_def1),
        }
    }
}

/// A KMS served with the TLS configuration a test chose: an [`App`] over the server's store and
/// one [`Conn`] of it.
struct Served {
    app: Arc<App<Arc<MemoryStore>>>,
    conn: Conn,
}

impl Served {
    fn new(
        srv: &Server,
        config: &TlsConfig,
        http: Limits,
        fixed_user: Option<String>,
    ) -> Option<Self> {
        let app_config = AppConfig {
            http,
            tls: config.limits(),
            ..AppConfig::default()
        };
        let app = Arc::new(App::serving_with_tls(
            srv.store.clone(),
            config.clone(),
            fixed_user,
            app_config,
        ));
        let conn = Conn::accept(&app, Listener::Main).ok()?;
        Some(Served { app, conn })
    }
    fn on_ciphertext(&mut self, env: &mut Env<'_>, input: &[u8]) -> Action {
        let mut p = self.conn.on_tls(&self.app, env, input);
        while p.waiting {
            p = self.conn.poll(&self.app, env);
        }
        if p.close {
            Action::Close
        } else {
            Action::Continue
        }
    }
    fn pending_tls(&self) -> &[u8] {
        self.conn.pending_tls()
    }
    fn consume_tls(&mut self, n: usize) {
        self.conn.consume_tls(n)
    }
    fn user(&self) -> Option<&str> {
        self.conn.peer().and_then(|p| p.user.as_deref())
    }
    fn spki(&self) -> Option<&[u8]> {
        self.conn.peer().and_then(|p| p.spki_der.as_deref())
    }
}

/// Moves bytes both ways until neither side has anything to say. Returns the server's last
/// action and whether the client saw a TLS error.
fn pump(
    client: &mut rustls::ClientConnection,
    conn: &mut Served,
    srv: &mut Server,
) -> (Action, Option<rustls::Error>) {
    let mut action = Action::Continue;
    for _ in 0..64 {
        let mut to_server = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut to_server).unwrap();
        }
        if !to_server.is_empty() && action == Action::Continue {
            let mut env = Env {
                now: NOW,
                rng: &mut srv.rng,
            };
            action = conn.on_ciphertext(&mut env, &to_server);
        }
        let to_client = conn.pending_tls().to_vec();
        conn.consume_tls(to_client.len());
        if !to_client.is_empty() {
            let mut rd = &to_client[..];
            while !rd.is_empty() {
                if client.read_tls(&mut rd).unwrap() == 0 {
                    break;
                }
                if let Err(e) = client.process_new_packets() {
                    return (action, Some(e));
                }
            }
        }
        if to_server.is_empty() && to_client.is_empty() {
            break;
        }
    }
    (action, None)
}

/// Sends one HTTP request through TLS and returns the raw HTTP response.
fn request(
    client: &mut rustls::ClientConnection,
    conn: &mut Served,
    srv: &mut Server,
    req: &[u8],
) -> String {
    client.writer().write_all(req).unwrap();
    let (action, err) = pump(client, conn, srv);
    assert!(err.is_none(), "client TLS error {err:?}");
    let _ = action;
    let mut buf = Vec::new();
    let mut tmp = [0u8; 65536];
    loop {
        match client.reader().read(&mut tmp) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("read: {e}"),
        }
    }
    String::from_utf8(buf).unwrap()
}

fn post(path: &str, body: &str) -> Vec<u8> {
    format!("POST {path} HTTP/1.1\r\nHost: kms.test\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len())
        .into_bytes()
}

const CREATE: &str = r#"{"tag":"Create","value":[
  {"tag":"ObjectType","type":"Enumeration","value":"SymmetricKey"},
  {"tag":"Attributes","value":[
    {"tag":"CryptographicAlgorithm","type":"Enumeration","value":"AES"},
    {"tag":"CryptographicLength","type":"Integer","value":256},
    {"tag":"ActivationDate","type":"DateTime","value":"2025-01-01T00:00:00Z"}]}]}"#;

fn uid_of(response: &str) -> String {
    let marker = r#""UniqueIdentifier","type":"TextString","value":""#;
    let at = response.find(marker).expect("uid in response") + marker.len();
    response[at..at + 36].to_string()
}

fn get(uid: &str) -> String {
    format!(
        r#"{{"tag":"Get","value":[{{"tag":"UniqueIdentifier","type":"TextString","value":"{uid}"}}]}}"#
    )
}

fn mtls_roundtrip(version: &'static rustls::SupportedProtocolVersion) {
    let pki = Pki::new("users");
    let config = pki.config(ClientAuth::WebPki {
        roots: vec![pki.ca_der.clone()],
        mandatory: true,
    });
    let mut srv = Server::new();
    let alice = pki.client("alice", false);
    let bob = pki.client("bob", false);

    let mut c = connect(client_config(&pki, Some(&alice), version));
    let mut conn = Served::new(&srv, &config, Limits::DEFAULT, None).unwrap();
    let health = request(
        &mut c,
        &mut conn,
        &mut srv,
        b"GET /health HTTP/1.1\r\nHost: kms.test\r\n\r\n",
    );
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert_eq!(c.protocol_version(), Some(version.version));
    assert_eq!(conn.conn.tls_state(), TlsState::Open);
    assert_eq!(conn.user(), Some("alice"));
    // Pipelined on the same connection: Create then Get as alice.
    let created = request(&mut c, &mut conn, &mut srv, &post("/kmip/2_1", CREATE));
    assert!(created.starts_with("HTTP/1.1 200"), "{created}");
    assert!(created.contains("CreateResponse"), "{created}");
    let uid = uid_of(&created);
    let got = request(&mut c, &mut conn, &mut srv, &post("/kmip/2_1", &get(&uid)));
    assert!(
        got.starts_with("HTTP/1.1 200") && got.contains("GetResponse"),
        "{got}"
    );

    // bob is a different identity: the KMS refuses him alice's key.
    let mut c2 = connect(client_config(&pki, Some(&bob), version));
    let mut conn2 = Served::new(&srv, &config, Limits::DEFAULT, None).unwrap();
    let denied = request(
        &mut c2,
        &mut conn2,
        &mut srv,
        &post("/kmip/2_1", &get(&uid)),
    );
    assert!(denied.starts_with("HTTP/1.1 422"), "{denied}");

    // The client closes: the server answers with its own close_notify and Close.
    c.send_close_notify();
    let (action, err) = pump(&mut c, &mut conn, &mut srv);
    assert!(err.is_none());
    assert_eq!(action, Action::Close);
    assert_eq!(conn.conn.tls_state(), TlsState::Closed);
}

#[test]
fn mtls_kmip_over_tls13() {
    mtls_roundtrip(&rustls::version::TLS13);
}

#[test]
fn mtls_kmip_over_tls12() {
    mtls_roundtrip(&rustls::version::TLS12);
}

#[test]
fn mandatory_client_auth_refuses_anonymous_and_foreign_clients() {
    let pki = Pki::new("users");
    let other = Pki::new("mallory");
    let config = pki.config(ClientAuth::WebPki {
        roots: vec![pki.ca_der.clone()],
        mandatory: true,
    });
    let mut srv = Server::new();
    // No certificate; a certificate from another CA; an expired certificate (per the clock).
    let foreign = other.client("alice", false);
    let expired = pki.client("alice", true);
    let cases: [Option<&Client>; 3] = [None, Some(&foreign), Some(&expired)];
    for client in cases {
        // The client trusts the server's CA; only its own certificate differs.
        let cfg = client_config(&pki, client, &rustls::version::TLS13);
        let mut c = connect(cfg);
        let mut conn = Served::new(&srv, &config, Limits::DEFAULT, None).unwrap();
        c.writer()
            .write_all(b"GET /health HTTP/1.1\r\n\r\n")
            .unwrap();
        let (action, err) = pump(&mut c, &mut conn, &mut srv);
        assert_eq!(action, Action::Close);
        assert_eq!(conn.conn.tls_state(), TlsState::Closed);
        // The server told the client why (a fatal alert), and never answered the request.
        assert!(
            matches!(err, Some(rustls::Error::AlertReceived(_))),
            "{err:?}"
        );
    }
}

#[test]
fn clock_decides_certificate_validity() {
    let pki = Pki::new("users");
    let alice = pki.client("alice", false);
    let mut srv = Server::new();
    for (now, ok) in [(NOW, true), (i64::from(u32::MAX) * 40, false), (-1, false)] {
        // rcgen certificates end in 4096; 40 * 2^32 s is after that; -1 means "unknown".
        let config = TlsConfig::new(
            &pki.server_chain,
            &pki.server_key,
            ClientAuth::WebPki {
                roots: vec![pki.ca_der.clone()],
                mandatory: true,
            },
            clock(now),
            TlsLimits::default(),
        )
        .unwrap();
        let mut c = connect(client_config(&pki, Some(&alice), &rustls::version::TLS13));
        let mut conn = Served::new(&srv, &config, Limits::DEFAULT, None).unwrap();
        c.writer()
            .write_all(b"GET /health HTTP/1.1\r\n\r\n")
            .unwrap();
        let (action, _) = pump(&mut c, &mut conn, &mut srv);
        let mut resp = String::new();
        let _ = c.reader().read_to_string(&mut resp);
        assert_eq!(resp.starts_with("HTTP/1.1 200"), ok, "now={now}: {resp}");
        assert_eq!(action == Action::Continue, ok, "now={now}");
    }
}

#[test]
fn without_client_auth_the_fallback_user_or_none() {
    let pki = Pki::new("users");
    let config = pki.config(ClientAuth::None);
    let mut srv = Server::new();
    let mut c = connect(client_config(&pki, None, &rustls::version::TLS13));
    let mut conn = Served::new(&srv, &config, Limits::DEFAULT, None).unwrap();
    let r = request(&mut c, &mut conn, &mut srv, &post("/kmip/2_1", CREATE));
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");
    let mut c = connect(client_config(&pki, None, &rustls::version::TLS13));
    let mut conn = Served::new(&srv, &config, Limits::DEFAULT, Some("admin".into())).unwrap();
    let r = request(&mut c, &mut conn, &mut srv, &post("/kmip/2_1", CREATE));
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
}

#[test]
fn proof_of_possession_records_the_key_the_handshake_proved() {
    let pki = Pki::new("users");
    let admin = pki.client("admin", false);
    let intruder = pki.client("admin", false);
    let admin_spki = kms::x509::spki_der(&admin.chain[0]).unwrap();
    let config = pki.config(ClientAuth::ProofOfPossession);
    let srv = Server::new();

    // The provisioner: the handshake proves its key; the SPKI is what the bootstrap core checks.
    let mut srv = srv;
    let mut c = connect(client_config(&pki, Some(&admin), &rustls::version::TLS13));
    let mut conn = Served::new(&srv, &config, Limits::DEFAULT, None).unwrap();
    let r = request(&mut c, &mut conn, &mut srv, b"GET /health HTTP/1.1\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert_eq!(conn.spki(), Some(&admin_spki[..]));

    // Anyone without a certificate still gets in (GET /attestation is public), with no SPKI.
    let mut c = connect(client_config(&pki, None, &rustls::version::TLS13));
    let mut conn = Served::new(&srv, &config, Limits::DEFAULT, None).unwrap();
    let r = request(&mut c, &mut conn, &mut srv, b"GET /health HTTP/1.1\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert_eq!(conn.spki(), None);

    // Same CN, same CA, other key: the recorded key is the intruder's, not the admin's (the
    // bootstrap core then refuses it with 403: kms/core/src/bootstrap/tests.rs).
    let mut c = connect(client_config(
        &pki,
        Some(&intruder),
        &rustls::version::TLS13,
    ));
    let mut conn = Served::new(&srv, &config, Limits::DEFAULT, None).unwrap();
    let r = request(&mut c, &mut conn, &mut srv, b"GET /health HTTP/1.1\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let intruder_spki = kms::x509::spki_der(&intruder.chain[0]).unwrap();
    assert_eq!(conn.spki(), Some(&intruder_spki[..]));
    assert_ne!(conn.spki(), Some(&admin_spki[..]));
}

#[test]
fn garbage_gives_errors_not_panics() {
    let pki = Pki::new("users");
    let config = pki.config(ClientAuth::None);
    let mut plain = Vec::new();

    // Plain HTTP to the TLS port: a protocol error and a fatal alert record (content type 21).
    let mut t = TlsConn::new(&config).unwrap();
    let e = t
        .read_tls(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", &mut plain)
        .unwrap_err();
    assert!(matches!(e, TlsError::Protocol(_)), "{e}");
    assert_eq!(t.pending_tls().first(), Some(&21));
    assert_eq!(t.state(), TlsState::Closed);
    assert!(matches!(
        t.read_tls(b"more", &mut plain),
        Err(TlsError::Closed)
    ));
    assert!(matches!(t.write_plaintext(b"x"), Err(TlsError::Closed)));

    // A real ClientHello, then mutated copies of it and random bytes: never a panic, never
    // plaintext out of an unauthenticated peer.
    let mut c = connect(client_config(&pki, None, &rustls::version::TLS13));
    let mut hello = Vec::new();
    c.write_tls(&mut hello).unwrap();
    let mut rng = TestRng::new(7);
    let mut errors = 0;
    for round in 0..2000 {
        let mut input = hello.clone();
        match round % 4 {
            0 => {
                let i = (rng.next_u32() as usize) % input.len();
                input[i] ^= 1 << (rng.next_u32() % 8);
            }
            1 => input.truncate((rng.next_u32() as usize) % input.len()),
            2 => {
                input = (0..(rng.next_u32() % 300))
                    .map(|_| rng.next_u32() as u8)
                    .collect()
            }
            _ => {
                let i = (rng.next_u32() as usize) % input.len();
                input[i] = rng.next_u32() as u8;
                input.extend((0..(rng.next_u32() % 64)).map(|_| rng.next_u32() as u8));
            }
        }
        let mut t = TlsConn::new(&config).unwrap();
        // Byte by byte for some rounds: the record reassembly path.
        let r = if round % 7 == 0 {
            input.chunks(1).try_for_each(|b| t.read_tls(b, &mut plain))
        } else {
            t.read_tls(&input, &mut plain)
        };
        if r.is_err() {
            errors += 1;
            assert_eq!(t.state(), TlsState::Closed);
        }
        assert!(plain.is_empty());
    }
    assert!(
        errors > 1000,
        "only {errors} of 2000 garbage inputs were refused"
    );

    // Garbage after a completed handshake: a forged application-data record fails the AEAD.
    let mut srv = Server::new();
    let mut c = connect(client_config(&pki, None, &rustls::version::TLS13));
    let mut conn = Served::new(&srv, &config, Limits::DEFAULT, Some("admin".into())).unwrap();
    let r = request(&mut c, &mut conn, &mut srv, b"GET /health HTTP/1.1\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let mut forged = vec![23, 3, 3, 0, 40];
    forged.extend([0xAB; 40]);
    let mut env = Env {
        now: NOW,
        rng: &mut srv.rng,
    };
    assert_eq!(conn.on_ciphertext(&mut env, &forged), Action::Close);
    assert_eq!(conn.conn.tls_state(), TlsState::Closed);
    assert_eq!(conn.pending_tls().first(), Some(&23)); // the alert, encrypted
}

#[test]
fn oversized_handshake_message_hits_the_incoming_limit() {
    let pki = Pki::new("users");
    let limits = TlsLimits {
        max_incoming: 20 * 1024,
        ..TlsLimits::default()
    };
    let config = TlsConfig::new(
        &pki.server_chain,
        &pki.server_key,
        ClientAuth::None,
        clock(NOW),
        limits,
    )
    .unwrap();
    // A 60 000-byte ClientHello announced in its header, sent as full 16 KiB handshake records:
    // rustls must buffer the whole message before parsing it.
    let body_len: usize = 60_000;
    let mut msg = vec![1u8, 0, (body_len >> 8) as u8, body_len as u8];
    msg.extend(std::iter::repeat_n(0u8, body_len));
    let mut wire = Vec::new();
    for chunk in msg.chunks(16 * 1024) {
        wire.extend([22, 3, 1, (chunk.len() >> 8) as u8, chunk.len() as u8]);
        wire.extend_from_slice(chunk);
    }
    let mut t = TlsConn::new(&config).unwrap();
    let mut plain = Vec::new();
    let e = t.read_tls(&wire, &mut plain).unwrap_err();
    assert!(matches!(e, TlsError::IncomingTooLarge), "{e}");
    assert_eq!(t.state(), TlsState::Closed);
}

#[test]
fn oversized_body_gets_413_then_close() {
    let pki = Pki::new("users");
    let config = pki.config(ClientAuth::None);
    let mut srv = Server::new();
    let limits = Limits {
        max_body_bytes: 1024,
        ..Limits::DEFAULT
    };
    let mut c = connect(client_config(&pki, None, &rustls::version::TLS13));
    let mut conn = Served::new(&srv, &config, limits, Some("admin".into())).unwrap();
    let body = "x".repeat(4096);
    c.writer().write_all(&post("/kmip/2_1", &body)).unwrap();
    let (action, err) = pump(&mut c, &mut conn, &mut srv);
    assert!(err.is_none());
    assert_eq!(action, Action::Close);
    let mut resp = String::new();
    let _ = c.reader().read_to_string(&mut resp);
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
}

#[test]
fn config_errors_are_typed() {
    let pki = Pki::new("users");
    let bad = TlsConfig::new(
        &[],
        &pki.server_key,
        ClientAuth::None,
        clock(NOW),
        TlsLimits::default(),
    );
    assert!(matches!(bad, Err(TlsError::BadInput(_))));
    // A key that does not match the certificate.
    let other = PrivateKey::Pkcs8(KeyPair::generate().unwrap().serialize_der());
    let bad = TlsConfig::new(
        &pki.server_chain,
        &other,
        ClientAuth::None,
        clock(NOW),
        TlsLimits::default(),
    );
    assert!(matches!(bad, Err(TlsError::Config(_))), "{bad:?}");
    let bad = TlsConfig::new(
        &pki.server_chain,
        &pki.server_key,
        ClientAuth::WebPki {
            roots: vec![b"not a certificate".to_vec()],
            mandatory: true,
        },
        clock(NOW),
        TlsLimits::default(),
    );
    assert!(
        matches!(
            bad,
            Err(TlsError::Config(rustls::Error::InvalidCertificate(
                rustls::CertificateError::BadEncoding
            )))
        ),
        "{bad:?}"
    );
}
