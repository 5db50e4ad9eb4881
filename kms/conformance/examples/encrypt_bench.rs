//! Encrypt (64 B) throughput of `kms-server`, binary TTLV on the KMIP port vs JSON TTLV over
//! HTTPS (`POST /kmip/2_1`), in the same run against the same server and key, one client
//! connection each, sequential requests (latency-bound: what one client sees). Not run by CI.
//!
//! ```text
//! cargo build -p kms-server
//! cargo run -p kmip-conformance --release --example encrypt_bench -- [requests per encoding]
//! ```
//! (`--release` builds this client only; the server is the `target/debug` or `target/release`
//! binary next to it: build `kms-server` in the same profile.)

use std::time::Instant;

use kmip_conformance::{BinaryKmip, JsonHttps, Transport};
use kms::kmip::message::request_2_1;
use kms::kmip::ttlv::{Ttlv, Value};
use testkit::MemoryKmsServer;

/// The payload of the only batch item, if it succeeded.
fn payload(r: &Ttlv) -> Result<&Ttlv, String> {
    let item = r.get("BatchItem").ok_or("no batch item")?;
    match item.get("ResponsePayload") {
        Some(p) => Ok(p),
        None => Err(format!("failed: {item:?}")),
    }
}

fn uid(p: &Ttlv) -> Result<String, String> {
    match p.get("UniqueIdentifier").map(|u| &u.value) {
        Some(Value::TextString(s)) => Ok(s.clone()),
        _ => Err("no UniqueIdentifier".into()),
    }
}

/// `n` Encrypt requests of 64 bytes over `t`; requests per second.
fn run(t: &mut dyn Transport, key: &str, n: u32) -> Result<f64, String> {
    let req = request_2_1(
        "Encrypt",
        vec![
            Ttlv::text("UniqueIdentifier", key),
            Ttlv::bytes("Data", &[0x5a; 64]),
        ],
    );
    // Warm-up (connection, TLS handshake) outside the measurement.
    payload(&t.send(&req)?)?;
    let start = Instant::now();
    for _ in 0..n {
        let r = t.send(&req)?;
        let p = payload(&r)?;
        if p.get("Data").is_none() {
            return Err("Encrypt answered without Data".into());
        }
    }
    Ok(f64::from(n) / start.elapsed().as_secs_f64())
}

fn main() -> Result<(), String> {
    let n: u32 = match std::env::args().nth(1) {
        Some(a) => a.parse().map_err(|_| format!("not a count: {a}"))?,
        None => 2000,
    };
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let kms = MemoryKmsServer::start(dir.path(), "bench");

    let roots = ckms::http::load_certs(&kms.ca_cert).map_err(|e| e.to_string())?;
    let identity = ckms::http::ClientIdentity::from_pem_files(&kms.client.cert, &kms.client.key)
        .map_err(|e| e.to_string())?;
    let tls = ckms::http::client_config(roots, Some(identity)).map_err(|e| e.to_string())?;
    let http = ckms::http::HttpClient::new(&format!("https://127.0.0.1:{}", kms.port), tls.clone())
        .map_err(|e| e.to_string())?;
    let mut json = JsonHttps(http);
    let mut binary = BinaryKmip::new(kms.kmip_addr, tls);

    let created = json.send(&request_2_1(
        "Create",
        vec![
            Ttlv::enumeration("ObjectType", "SymmetricKey"),
            Ttlv::structure(
                "Attributes",
                vec![
                    Ttlv::enumeration("CryptographicAlgorithm", "AES"),
                    Ttlv::int("CryptographicLength", 256),
                    Ttlv::int("CryptographicUsageMask", 0x4 | 0x8),
                ],
            ),
        ],
    ))?;
    let key = uid(payload(&created)?)?;
    payload(&json.send(&request_2_1(
        "Activate",
        vec![Ttlv::text("UniqueIdentifier", &key)],
    ))?)?;

    // Interleaved rounds so that machine load drifts hit both encodings alike.
    let (mut b, mut j) = (0.0, 0.0);
    for _ in 0..3 {
        b += run(&mut binary, &key, n)? / 3.0;
        j += run(&mut json, &key, n)? / 3.0;
    }
    println!("Encrypt 64 B, {n} requests x 3 rounds per encoding, one connection each:");
    println!("  binary TTLV (KMIP port): {b:.0} req/s");
    println!("  JSON TTLV (HTTPS /kmip/2_1): {j:.0} req/s");
    println!("  binary/JSON throughput ratio: {:.2}", b / j);
    Ok(())
}
