//! Integration tests of `kms-server` (memory store): the KMIP suite over mTLS, plus transport
//! behaviour (client authentication, limits, malformed HTTP, concurrency).
//!
//! Needs the `ckms` binary: `cargo build -p ckms` before `cargo test -p kms-server`.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Barrier};

use ckms::http::{HttpError, client_config, load_certs};
use common::pki::Pki;
use common::{Harness, ServerProcess, client_for, kmip, ok_json};
use rustls_pki_types::ServerName;

#[test]
fn kmip_suite_memory() {
    common::suite::run_kmip_suite(&["--database", "memory"]);
}

/// Send raw bytes over TLS (as `user`) and read until the server closes.
fn raw_exchange(h: &mut Harness, user: &str, bytes: &[u8]) -> Vec<u8> {
    let files = h.user(user);
    let identity = ckms::http::ClientIdentity::from_pem_files(&files.cert, &files.key).unwrap();
    let tls = client_config(load_certs(&h.pki.ca_cert).unwrap(), Some(identity)).unwrap();
    let tcp = TcpStream::connect(h.server.addr).unwrap();
    let conn =
        rustls::ClientConnection::new(tls, ServerName::try_from("127.0.0.1").unwrap()).unwrap();
    let mut s = rustls::StreamOwned::new(conn, tcp);
    s.write_all(bytes).unwrap();
    s.flush().unwrap();
    let mut out = Vec::new();
    // The server closes after an error response: read to the end.
    let _ = s.read_to_end(&mut out);
    out
}

#[test]
fn transport_limits_and_malformed_http() {
    let mut h = Harness::start(&["--database", "memory", "--max-body-bytes", "4096"]);

    // Oversized body: 413, refused from the head alone, connection closed.
    let mut head = b"POST /kmip/2_1 HTTP/1.1\r\nhost: x\r\ncontent-length: 5000\r\n\r\n".to_vec();
    head.extend(std::iter::repeat_n(b'{', 5000));
    let out = raw_exchange(&mut h, "alice", &head);
    assert!(
        out.starts_with(b"HTTP/1.1 413 "),
        "{}",
        String::from_utf8_lossy(&out)
    );

    // Through the client API too.
    let mut c = h.client("alice");
    let r = c.post("/kmip/2_1", &vec![b' '; 5000]).unwrap();
    assert_eq!(r.status, 413);

    // Garbage instead of a request line: 400, then close.
    let out = raw_exchange(&mut h, "alice", b"\x01\x02 garbage\r\n\r\n");
    assert!(
        out.starts_with(b"HTTP/1.1 400 "),
        "{}",
        String::from_utf8_lossy(&out)
    );
    // Chunked bodies are not supported: 411.
    let out = raw_exchange(
        &mut h,
        "alice",
        b"POST /kmip/2_1 HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
    );
    assert!(
        out.starts_with(b"HTTP/1.1 411 "),
        "{}",
        String::from_utf8_lossy(&out)
    );
    // Two pipelined requests, the second asking to close: two responses, then EOF.
    let out = raw_exchange(
        &mut h,
        "alice",
        b"GET /health HTTP/1.1\r\n\r\nGET /version HTTP/1.1\r\nconnection: close\r\n\r\n",
    );
    let text = String::from_utf8_lossy(&out);
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "{text}");

    // Still serving.
    let mut c = h.client("alice");
    ok_json(c.get("/version").unwrap(), "version after bad input");
    assert!(h.server.is_running());
}

#[test]
fn client_authentication() {
    let mut h = Harness::start(&["--database", "memory"]);
    // No client certificate: the TLS handshake fails.
    let mut anonymous = client_for(&h.server.url(), &h.pki.ca_cert, None);
    let r = anonymous.get("/version");
    assert!(
        matches!(r, Err(HttpError::Io(_))),
        "no client cert accepted: {r:?}"
    );

    // A certificate from another CA: rejected as well.
    let rogue = Pki::new(h.dir.path(), "rogue");
    let mallory = rogue.client(Some("alice"));
    let mut c = client_for(&h.server.url(), &h.pki.ca_cert, Some(&mallory));
    let r = c.get("/version");
    assert!(
        matches!(r, Err(HttpError::Io(_))),
        "foreign client cert accepted: {r:?}"
    );

    // A valid certificate without a subject CN: connected, but no identity, 401 on the API.
    let no_cn = h.pki.client(None);
    let mut c = client_for(&h.server.url(), &h.pki.ca_cert, Some(&no_cn));
    assert_eq!(c.get("/health").unwrap().status, 200);
    let r = c.get("/access/owned").unwrap();
    assert_eq!(r.status, 401, "{}", r.text());
    let r = kmip(&mut c, r#"{"tag":"Query","type":"Structure","value":[]}"#);
    assert_eq!(r.status, 401, "{}", r.text());

    // Still serving the legitimate users.
    let mut alice = h.client("alice");
    ok_json(alice.get("/access/owned").unwrap(), "owned");
}

#[test]
fn insecure_no_auth_runs_as_admin() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "dev");
    let server = ServerProcess::start(&[
        "--tls-cert".into(),
        pki.server.cert.display().to_string(),
        "--tls-key".into(),
        pki.server.key.display().to_string(),
        "--insecure-no-auth".into(),
    ]);
    let mut c = client_for(&server.url(), &pki.ca_cert, None);
    let created = ok_json(
        kmip(
            &mut c,
            r#"{"tag":"Create","type":"Structure","value":[
              {"tag":"ObjectType","type":"Enumeration","value":"SymmetricKey"},
              {"tag":"Attributes","type":"Structure","value":[
                {"tag":"CryptographicAlgorithm","type":"Enumeration","value":"AES"},
                {"tag":"CryptographicLength","type":"Integer","value":128}]}]}"#,
        ),
        "Create",
    );
    let uid = created["value"][1]["value"].as_str().unwrap().to_owned();
    let owned = ok_json(c.get("/access/owned").unwrap(), "owned");
    assert!(owned.to_string().contains(&uid), "{owned}");
}

#[test]
fn sixty_four_concurrent_keep_alive_clients() {
    const CLIENTS: usize = 64;
    let mut h = Harness::start(&["--database", "memory"]);
    let url = h.server.url();
    let ca = h.pki.ca_cert.clone();
    let files: Vec<_> = (0..CLIENTS).map(|i| h.user(&format!("user{i}"))).collect();
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let threads: Vec<_> = files
        .into_iter()
        .map(|f| {
            let (url, ca, barrier) = (url.clone(), ca.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut c = client_for(&url, &ca, Some(&f));
                ok_json(c.get("/version").unwrap(), "first request");
                // Every client holds its connection open here: 64 at once.
                barrier.wait();
                let created = ok_json(
                    kmip(
                        &mut c,
                        r#"{"tag":"Create","type":"Structure","value":[
                          {"tag":"ObjectType","type":"Enumeration","value":"SymmetricKey"},
                          {"tag":"Attributes","type":"Structure","value":[
                            {"tag":"CryptographicAlgorithm","type":"Enumeration","value":"AES"},
                            {"tag":"CryptographicLength","type":"Integer","value":256}]}]}"#,
                    ),
                    "Create",
                );
                let uid = created["value"][1]["value"].as_str().unwrap().to_owned();
                for _ in 0..5 {
                    let owned = ok_json(c.get("/access/owned").unwrap(), "owned");
                    assert!(owned.to_string().contains(&uid));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
    assert!(h.server.is_running());
}

/// Issue 12 #7 on the host: slowloris. Each byte used to restart a 60 s read timeout, so a
/// client trickling bytes held a connection (and a thread) forever. Now the core's per-phase
/// deadlines cut a trickled handshake at `--handshake-timeout-secs` and a trickled request
/// below `--min-rate` (after the 10 s grace period), and the slots are free for real clients.
#[test]
fn slowloris_clients_are_cut_and_real_clients_served() {
    use std::time::{Duration, Instant};
    let mut h = Harness::start(&[
        "--database",
        "memory",
        "--max-connections",
        "4",
        "--handshake-timeout-secs",
        "1",
        "--min-rate",
        "2000",
    ]);
    let addr = h.server.addr;
    let limit = Duration::from_secs(30);
    let mut attackers = Vec::new();
    // Two trickle a TLS record header and body, a byte every 50 ms (never a full handshake).
    for _ in 0..2 {
        attackers.push(std::thread::spawn(move || {
            let mut tcp = TcpStream::connect(addr).unwrap();
            let t0 = Instant::now();
            let record = [&[0x16u8, 0x03, 0x01, 0x40, 0x00][..], &[0u8; 1024][..]].concat();
            for b in record.iter().cycle() {
                if tcp.write_all(&[*b]).is_err() || t0.elapsed() > limit {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            t0.elapsed()
        }));
    }
    // Two complete the handshake, then trickle a request a byte (one TLS record) at a time.
    for _ in 0..2 {
        let files = h.user("mallory");
        let identity = ckms::http::ClientIdentity::from_pem_files(&files.cert, &files.key).unwrap();
        let tls = client_config(load_certs(&h.pki.ca_cert).unwrap(), Some(identity)).unwrap();
        attackers.push(std::thread::spawn(move || {
            let tcp = TcpStream::connect(addr).unwrap();
            let conn =
                rustls::ClientConnection::new(tls, ServerName::try_from("127.0.0.1").unwrap())
                    .unwrap();
            let mut s = rustls::StreamOwned::new(conn, tcp);
            let t0 = Instant::now();
            let request = b"POST /kmip/2_1 HTTP/1.1\r\nhost: x\r\ncontent-length: 100000\r\n\r\n";
            for b in request.iter().chain(std::iter::repeat(&b' ')) {
                if s.write_all(&[*b]).and_then(|()| s.flush()).is_err() || t0.elapsed() > limit {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            t0.elapsed()
        }));
    }
    let held: Vec<Duration> = attackers.into_iter().map(|t| t.join().unwrap()).collect();
    // Handshake tricklers: about 1 s; request tricklers: the grace period and a bit.
    assert!(
        held.iter().all(|d| *d < Duration::from_secs(20)),
        "{held:?}"
    );
    assert!(
        held[..2].iter().all(|d| *d < Duration::from_secs(5)),
        "{held:?}"
    );
    let mut c = h.client("alice");
    ok_json(c.get("/version").unwrap(), "a real client after the attack");
    assert!(h.server.is_running());
}
