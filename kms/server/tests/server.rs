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
use kms::kmip::binary;
use kms::kmip::ttlv::{EnumValue, Ttlv, Value};
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

/// A TLS stream to the KMIP port as `user` (`None`: no client certificate).
fn kmip_port(
    h: &mut Harness,
    user: Option<&str>,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let identity = user.map(|u| {
        let files = h.user(u);
        ckms::http::ClientIdentity::from_pem_files(&files.cert, &files.key).unwrap()
    });
    let tls = client_config(load_certs(&h.pki.ca_cert).unwrap(), identity).unwrap();
    let tcp = TcpStream::connect(h.server.kmip_addr.expect("KMIP port")).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let conn =
        rustls::ClientConnection::new(tls, ServerName::try_from("127.0.0.1").unwrap()).unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

/// One binary TTLV request/response exchange: the response framed by its header.
fn ttlv_call<S: Read + Write>(s: &mut S, request: &Ttlv) -> std::io::Result<Ttlv> {
    s.write_all(&binary::to_vec(request).unwrap())?;
    s.flush()?;
    let mut head = [0u8; 8];
    s.read_exact(&mut head)?;
    let len = binary::message_len(&head, 1 << 24).unwrap().unwrap();
    let mut msg = head.to_vec();
    msg.resize(len, 0);
    s.read_exact(&mut msg[8..])?;
    Ok(binary::from_slice(&msg, &Default::default()).unwrap())
}

fn en(tag: &str, code: u32) -> Ttlv {
    Ttlv::new(tag, Value::Enumeration(EnumValue::Code(code)))
}

/// A KMIP 2.1 RequestMessage of one operation (by code) and its payload.
fn request(op: u32, payload: Vec<Ttlv>) -> Ttlv {
    kms::kmip::message::request(2, 1, vec![(en("Operation", op), payload)])
}

fn item(r: &Ttlv) -> &Ttlv {
    assert_eq!(r.tag, "ResponseMessage");
    r.get("BatchItem").expect("BatchItem")
}

fn enum_code(t: &Ttlv, tag: &str) -> u32 {
    match t.get(tag).map(|c| &c.value) {
        Some(Value::Enumeration(EnumValue::Code(c))) => *c,
        other => panic!("{tag}: {other:?}"),
    }
}

#[test]
fn kmip_port_binary_ttlv_with_mtls() {
    let mut h = Harness::start(&["--database", "memory", "--kmip-port", "0"]);
    let mut alice = kmip_port(&mut h, Some("alice"));
    // Create an AES-256 key, then Get it, on one connection.
    let r = ttlv_call(
        &mut alice,
        &request(
            0x01,
            vec![
                en("ObjectType", 2),
                Ttlv::structure(
                    "Attributes",
                    vec![
                        en("CryptographicAlgorithm", 3),
                        Ttlv::int("CryptographicLength", 256),
                        Ttlv::int("CryptographicUsageMask", 12),
                    ],
                ),
            ],
        ),
    )
    .unwrap();
    assert_eq!(enum_code(item(&r), "ResultStatus"), 0, "{r:?}");
    let uid = item(&r)
        .get("ResponsePayload")
        .and_then(|p| p.opt_text("UniqueIdentifier").ok().flatten())
        .expect("uid")
        .to_owned();
    let r = ttlv_call(
        &mut alice,
        &request(0x0A, vec![Ttlv::text("UniqueIdentifier", &uid)]),
    )
    .unwrap();
    let key = item(&r)
        .get("ResponsePayload")
        .and_then(|p| p.get("SymmetricKey"))
        .and_then(|k| k.get("KeyBlock"))
        .and_then(|b| b.get("KeyValue"))
        .and_then(|v| v.opt_bytes("KeyMaterial").ok().flatten())
        .expect("key material");
    assert_eq!(key.len(), 32);
    // The same object over HTTPS/JSON: same identities, same store.
    let mut https = h.client("alice");
    let g = ok_json(
        kmip(
            &mut https,
            &format!(
                r#"{{"tag":"GetAttributes","value":[{{"tag":"UniqueIdentifier","type":"TextString","value":"{uid}"}}]}}"#
            ),
        ),
        "GetAttributes",
    );
    assert!(g.to_string().contains("SymmetricKey"), "{g}");
    // Same rights: bob does not see alice's key.
    let mut bob = kmip_port(&mut h, Some("bob"));
    let r = ttlv_call(
        &mut bob,
        &request(0x0A, vec![Ttlv::text("UniqueIdentifier", &uid)]),
    )
    .unwrap();
    assert_eq!(enum_code(item(&r), "ResultStatus"), 1);
    assert_eq!(
        enum_code(item(&r), "ResultReason"),
        0x37,
        "Object Not Found"
    );
    // No client certificate: no TLS session, so no KMIP.
    let mut anonymous = kmip_port(&mut h, None);
    assert!(ttlv_call(&mut anonymous, &request(0x18, vec![])).is_err());
    // HTTP on the KMIP port: a failed ResponseMessage (Invalid Message), then the close.
    let mut c = kmip_port(&mut h, Some("alice"));
    c.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    c.flush().unwrap();
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    let n = binary::message_len(&out, 1 << 24).unwrap().unwrap();
    let r = binary::from_slice(&out[..n], &Default::default()).unwrap();
    assert_eq!(enum_code(item(&r), "ResultReason"), 0x04, "Invalid Message");
    assert_eq!(out.len(), n);
    // The HTTPS port still serves.
    ok_json(https.get("/access/owned").unwrap(), "owned");
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

/// A reconnecting client resumes its TLS session with the ticket of its first connection
/// (issue 15), and the resumed connection still runs as the same user.
#[test]
fn reconnecting_clients_resume_their_tls_session() {
    let mut h = Harness::start(&[]);
    let files = h.user("alice");
    let identity = ckms::http::ClientIdentity::from_pem_files(&files.cert, &files.key).unwrap();
    let config = client_config(load_certs(&h.pki.ca_cert).unwrap(), Some(identity)).unwrap();
    let addr = h.server.url().trim_start_matches("https://").to_string();
    let mut kinds = Vec::new();
    for _ in 0..3 {
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let conn = rustls::ClientConnection::new(config.clone(), name).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, TcpStream::connect(&addr).unwrap());
        // An authenticated request: the KMS answers 200 only to a known client certificate.
        let body = br#"{"tag":"Locate","type":"Structure","value":[]}"#;
        let head = format!(
            "POST /kmip/2_1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        tls.write_all(head.as_bytes()).unwrap();
        tls.write_all(body).unwrap();
        let mut out = Vec::new();
        let _ = tls.read_to_end(&mut out);
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        kinds.push(tls.conn.handshake_kind());
    }
    assert_eq!(
        kinds,
        [
            Some(rustls::HandshakeKind::Full),
            Some(rustls::HandshakeKind::Resumed),
            Some(rustls::HandshakeKind::Resumed)
        ]
    );
}

/// Issue 15: connections share a few epoll workers. With a single worker, a connection holding
/// half a request does not hold up another connection, and its request completes afterwards.
#[test]
fn one_worker_serves_interleaved_connections() {
    let mut h = Harness::start(&["--database", "memory", "--workers", "1"]);
    let files = h.user("alice");
    let identity = ckms::http::ClientIdentity::from_pem_files(&files.cert, &files.key).unwrap();
    let tls = client_config(load_certs(&h.pki.ca_cert).unwrap(), Some(identity)).unwrap();
    let tcp = TcpStream::connect(h.server.addr).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let conn =
        rustls::ClientConnection::new(tls, ServerName::try_from("127.0.0.1").unwrap()).unwrap();
    let mut a = rustls::StreamOwned::new(conn, tcp);
    let body = br#"{"tag":"Query","type":"Structure","value":[]}"#;
    let head = format!(
        "POST /kmip/2_1 HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let (first, rest) = body.split_at(10);
    a.write_all(head.as_bytes()).unwrap();
    a.write_all(first).unwrap();
    a.flush().unwrap();
    // Another connection on the same (only) worker is served meanwhile.
    let mut b = h.client("alice");
    for _ in 0..3 {
        ok_json(
            b.get("/version").unwrap(),
            "second connection while the first waits",
        );
    }
    a.write_all(rest).unwrap();
    a.flush().unwrap();
    let mut response = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&response).contains("QueryResponse") {
        let n = a.read(&mut chunk).expect("the first connection's response");
        assert!(
            n > 0,
            "closed before the response: {:?}",
            String::from_utf8_lossy(&response)
        );
        response.extend_from_slice(&chunk[..n]);
    }
    assert!(
        response.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&response)
    );
}
