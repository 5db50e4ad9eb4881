//! Issue 15: the guest's software path measured on the host, where TCG does not hide it.
//!
//! The image's service (`kms_guest::Server`: netstack TCP, `kms::conn` TLS and HTTP, the KMS on
//! Redis-with-Findex over netstack) runs on one thread behind an in-memory NIC (the harness of
//! `tests/common`); a rustls client on the other side of the cable sends Encrypt requests
//! (64 B, AES-256-GCM, one keep-alive mTLS connection, sequential). Only the time spent inside
//! `Server::step` counts, minus the time it idled waiting for Redis. The host server
//! (`kms-server`, same Redis, same mTLS) gets the same requests over loopback TCP; its CPU time
//! (every thread's run time, from /proc/<pid>/task/*/schedstat) is the cost. Both are CPU-µs per Encrypt, so the ratio is the
//! guest path's per-core throughput as a fraction of the host server's.
//!
//! ```sh
//! cargo build --release -p kms-server && cargo run --release -p kms-guest --example host_path -- [N]
//! ```
//! Needs `redis-server` on PATH. Not run by CI (no timed assertion anywhere).

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

use common::*;

fn encrypt_body(uid: &str) -> String {
    format!(
        r#"{{"tag":"Encrypt","value":[{{"tag":"UniqueIdentifier","type":"TextString","value":"{uid}"}},{{"tag":"CryptographicParameters","value":[{{"tag":"BlockCipherMode","type":"Enumeration","value":"GCM"}}]}},{{"tag":"Data","type":"ByteString","value":"{}"}}]}}"#,
        "AB".repeat(64)
    )
}

fn uid_of(resp: &str) -> String {
    let marker = r#""UniqueIdentifier","type":"TextString","value":""#;
    let at = resp.find(marker).expect("a UniqueIdentifier") + marker.len();
    resp[at..at + 36].to_string()
}

/// CPU time of process `pid`, all threads, in seconds: the run time (ns) of each thread from
/// `/proc/<pid>/task/*/schedstat` (threads that exited meanwhile are lost: kms-server's are
/// long-lived).
fn cpu_seconds(pid: u32) -> f64 {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("/proc/<pid>/task");
    let mut ns = 0u64;
    for t in tasks.flatten() {
        if let Ok(s) = std::fs::read_to_string(t.path().join("schedstat")) {
            ns += s
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    ns as f64 / 1e9
}

fn guest_path(n: usize) -> (f64, f64, String) {
    let (mut h, server_ca, users) = provisioned(ServiceLimits::default());
    let (alice_chain, alice_key) = users.issue("alice");
    let c = h.tcp_connect(PORT);
    let mut tls = client(
        std::slice::from_ref(&server_ca),
        Some((&alice_chain, &alice_key)),
    );
    let (resp, _) = h.exchange(&mut tls, c, &post("/kmip/2_1", CREATE_AES));
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let req = post("/kmip/2_1", &encrypt_body(&uid_of(&resp)));
    for _ in 0..200 {
        let (resp, _) = h.exchange(&mut tls, c, &req);
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    }
    let (g0, i0) = (
        GUEST_NANOS.load(Ordering::Relaxed),
        IDLE_NANOS.load(Ordering::Relaxed),
    );
    let wall = StdInstant::now();
    for _ in 0..n {
        let (resp, _) = h.exchange(&mut tls, c, &req);
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    }
    let wall = wall.elapsed().as_secs_f64();
    let guest_ns = GUEST_NANOS.load(Ordering::Relaxed) - g0;
    let idle_ns = IDLE_NANOS.load(Ordering::Relaxed) - i0;
    let us = guest_ns.saturating_sub(idle_ns) as f64 / 1000.0 / n as f64;
    let stats = format!("{:?}", h.server.stats());
    (us, wall, stats)
}

fn host_path(n: usize) -> f64 {
    let redis = RedisServer::start();
    let dir = std::env::temp_dir().join(format!("host-path-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let server_ca = Ca::new("server CA");
    let users = Ca::new("users CA");
    let cert = server_ca.pki.server("kms.test", &["kms.test"]);
    let files = cert.write(&dir, "server");
    std::fs::write(dir.join("users.pem"), &users.pem).unwrap();
    let secret = <base64ct::Base64 as base64ct::Encoding>::encode_string(&[42u8; 32]);
    std::fs::write(dir.join("db-secret.b64"), secret).unwrap();
    let bin = testkit::workspace_bin("kms-server");
    let mut child = testkit::ChildGuard::spawn(
        Command::new(&bin)
            .args(["--port", "0", "--tls-cert"])
            .arg(&files.cert)
            .arg("--tls-key")
            .arg(&files.key)
            .arg("--client-ca")
            .arg(dir.join("users.pem"))
            .args(["--database", "redis-findex", "--redis-url", &redis.url()])
            .arg("--db-secret-file")
            .arg(dir.join("db-secret.b64"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
        "kms-server",
    );
    let mut lines = child.stdout_lines();
    let addr = testkit::wait_line(&mut lines, "kms-server listening on", "kms-server");
    testkit::drain_lines(lines);
    let (alice_chain, alice_key) = users.issue("alice");
    let mut tls = client(
        std::slice::from_ref(&server_ca.der),
        Some((&alice_chain, &alice_key)),
    );
    let mut tcp = TcpStream::connect(&addr).unwrap();
    tcp.set_nodelay(true).unwrap();
    let mut call = |req: &[u8]| -> String {
        let mut s = rustls::Stream::new(&mut tls, &mut tcp);
        s.write_all(req).unwrap();
        let mut answer = Vec::new();
        let mut buf = [0u8; 16384];
        while !complete(&answer) {
            let k = s.read(&mut buf).unwrap();
            assert!(k > 0, "kms-server closed");
            answer.extend_from_slice(&buf[..k]);
        }
        String::from_utf8_lossy(&answer).into_owned()
    };
    let resp = call(&post("/kmip/2_1", CREATE_AES));
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let req = post("/kmip/2_1", &encrypt_body(&uid_of(&resp)));
    for _ in 0..200 {
        call(&req);
    }
    let pid = child.id();
    let c0 = cpu_seconds(pid);
    for _ in 0..n {
        let resp = call(&req);
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    }
    let us = (cpu_seconds(pid) - c0) * 1e6 / n as f64;
    drop(child);
    let _ = std::fs::remove_dir_all(&dir);
    us
}

const CREATE_AES: &str = r#"{"tag":"Create","value":[
  {"tag":"ObjectType","type":"Enumeration","value":"SymmetricKey"},
  {"tag":"Attributes","value":[
    {"tag":"CryptographicAlgorithm","type":"Enumeration","value":"AES"},
    {"tag":"CryptographicLength","type":"Integer","value":256},
    {"tag":"CryptographicUsageMask","type":"Integer","value":12},
    {"tag":"ActivationDate","type":"DateTime","value":"2025-01-01T00:00:00Z"}]}]}"#;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("N: a number of requests"))
        .unwrap_or(20_000);
    let (guest_us, wall, stats) = guest_path(n);
    let host_us = host_path(n);
    println!(
        "Encrypt 64 B, AES-256-GCM, one keep-alive mTLS connection, {n} requests, Redis-with-Findex"
    );
    println!(
        "guest service on the host (netstack + kms::conn + KMS): {guest_us:.1} CPU-us/op ({:.0} ops/s per core; whole loop incl. client and cable {:.0} ops/s)",
        1e6 / guest_us,
        n as f64 / wall
    );
    println!(
        "kms-server (tokio, kernel TCP):                         {host_us:.1} CPU-us/op ({:.0} ops/s per core)",
        1e6 / host_us
    );
    println!(
        "guest path per-core throughput / host server's: {:.2}",
        host_us / guest_us
    );
    println!("guest stats: {stats}");
}
