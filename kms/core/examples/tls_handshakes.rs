//! Full TLS 1.3 handshakes per second (P-256 server certificate, X25519, one thread, client and
//! server in the same process, each handshake followed by one `GET /health`): a std rustls
//! client against (a) std rustls `ServerConnection` and (b) `kms::conn::Conn` (unbuffered
//! API + the App's router). Run with
//! `cargo run --release -p kms --features tls --example tls_handshakes [-- SECONDS]`.

#[cfg(feature = "tls")]
mod bench {
    use std::io::{Read, Write};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use kms::Env;
    use kms::app::{App, AppConfig, Listener, ServerTls};
    use kms::conn::Conn;
    use kms::crypto::{Random, RngError};
    use kms::store::memory::MemoryStore;
    use kms::x509::PrivateKey;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

    const REQ: &[u8] = b"GET /health HTTP/1.1\r\nHost: kms.test\r\n\r\n";

    struct Counter(u64);
    impl Random for Counter {
        fn fill(&mut self, buf: &mut [u8]) -> Result<(), RngError> {
            for b in buf {
                self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1);
                *b = (self.0 >> 33) as u8;
            }
            Ok(())
        }
    }

    fn client_round(
        client: &mut rustls::ClientConnection,
        to_server: &mut Vec<u8>,
        from_server: &[u8],
    ) {
        let mut rd = from_server;
        while !rd.is_empty() {
            client.read_tls(&mut rd).unwrap();
            client.process_new_packets().unwrap();
        }
        while client.wants_write() {
            client.write_tls(to_server).unwrap();
        }
    }

    fn got_answer(client: &mut rustls::ClientConnection) -> bool {
        let mut buf = [0u8; 512];
        matches!(client.reader().read(&mut buf), Ok(n) if n > 0 && buf.starts_with(b"HTTP/1.1 200"))
    }

    fn rate(seconds: f64, mut one: impl FnMut()) -> f64 {
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < Duration::from_secs_f64(seconds) {
            one();
            n += 1;
        }
        n as f64 / start.elapsed().as_secs_f64()
    }

    pub fn main() {
        let seconds: f64 = std::env::args()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(3.0);
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["kms.test".into()])
            .unwrap()
            .signed_by(&key, &rcgen::Issuer::from_params(&ca_params, &ca_key))
            .unwrap();
        let chain = vec![cert.der().to_vec()];
        let key_der = key.serialize_der();
        let provider = Arc::new(rustls::crypto::ring::default_provider());

        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der().clone()).unwrap();
        let client_cfg = Arc::new(
            rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(&[&rustls::version::TLS13])
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        );
        let name = ServerName::try_from("kms.test").unwrap();

        // (a) std rustls server, same settings as kms::tls (no tickets, no session cache).
        let mut std_cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(chain[0].clone())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_der.clone())),
            )
            .unwrap();
        std_cfg.send_tls13_tickets = 0;
        std_cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        let std_cfg = Arc::new(std_cfg);
        let std_rate = rate(seconds, || {
            let mut c = rustls::ClientConnection::new(client_cfg.clone(), name.clone()).unwrap();
            let mut s = rustls::ServerConnection::new(std_cfg.clone()).unwrap();
            c.writer().write_all(REQ).unwrap();
            let (mut to_s, mut to_c) = (Vec::new(), Vec::new());
            client_round(&mut c, &mut to_s, &[]);
            for _ in 0..8 {
                let mut rd = &to_s[..];
                while !rd.is_empty() {
                    s.read_tls(&mut rd).unwrap();
                    s.process_new_packets().unwrap();
                }
                to_s.clear();
                let mut buf = [0u8; 512];
                if let Ok(n) = s.reader().read(&mut buf)
                    && n > 0
                {
                    s.writer()
                        .write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\n{\"status\":\"UP\"}",
                        )
                        .unwrap();
                }
                while s.wants_write() {
                    s.write_tls(&mut to_c).unwrap();
                }
                client_round(&mut c, &mut to_s, &to_c);
                to_c.clear();
                if got_answer(&mut c) {
                    return;
                }
            }
            panic!("std server: no answer");
        });

        // (b) kms::conn::Conn with the App behind it.
        let tls = ServerTls {
            chain: chain.clone(),
            key: PrivateKey::Pkcs8(key_der.clone()),
            client_ca: None,
            fixed_user: None,
        };
        let app: Arc<App<MemoryStore>> =
            Arc::new(App::serving(MemoryStore::new(), tls, AppConfig::default()).unwrap());
        let mut rng = Counter(1);
        let ours_rate = rate(seconds, || {
            let mut env = Env {
                now: 1_750_000_000,
                rng: &mut rng,
            };
            let mut c = rustls::ClientConnection::new(client_cfg.clone(), name.clone()).unwrap();
            let mut s = Conn::accept(&app, Listener::Main).unwrap();
            c.writer().write_all(REQ).unwrap();
            let mut to_s = Vec::new();
            client_round(&mut c, &mut to_s, &[]);
            for _ in 0..8 {
                let _ = s.on_tls(&app, &mut env, &to_s);
                to_s.clear();
                let to_c = s.pending_tls().to_vec();
                s.consume_tls(to_c.len());
                client_round(&mut c, &mut to_s, &to_c);
                if got_answer(&mut c) {
                    return;
                }
            }
            panic!("kms::tls: no answer");
        });
        println!(
            "TLS 1.3 handshakes + GET /health per second, client and server on one thread ({seconds} s each):"
        );
        println!("  std rustls ServerConnection : {std_rate:8.0}/s");
        println!(
            "  kms::conn::Conn + App       : {ours_rate:8.0}/s  (ratio {:.2})",
            ours_rate / std_rate
        );
    }
}

fn main() {
    #[cfg(feature = "tls")]
    bench::main();
    #[cfg(not(feature = "tls"))]
    eprintln!("build with --features tls");
}
