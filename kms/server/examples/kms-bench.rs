//! Benchmark: KMIP Encrypt (64 bytes) and Create over keep-alive HTTPS (mTLS) against the host
//! server with the memory store, at concurrency 1 and 16, next to in-process floors measured in
//! the same run (AES-256-GCM through the KMS's own crypto facade; the KMS core's KMIP dispatch
//! without HTTP/TLS).
//!
//! Run: `cargo run --release -p kms-server --example kms-bench -- [--seconds N]`
//!
//! The server runs in this process (same `serve` + `App` code as the `kms-server`
//! binary, on its own threads); clients are `ckms`'s HTTP client, one keep-alive connection
//! per client thread.
//!
//! Against an already running, provisioned KMS (used by `scripts/bench-vm` for the image and
//! the host server): `kms-bench --url https://127.0.0.1:P --ca-cert CA.pem --client-cert C.pem
//! --client-key C.key [--concurrency 1,4] [--seconds N] [--tsv]` measures Encrypt 64 B and
//! Create over keep-alive connections and full mTLS handshakes/s (a new connection per
//! `GET /health`, client-side resumption off), at each concurrency; no floors. `--tsv` prints
//! `workload<TAB>concurrency<TAB>ops/s<TAB>errors` lines only.

#[path = "../tests/common/pki.rs"]
#[allow(dead_code)]
mod pki;

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ckms::http::{ClientIdentity, HttpClient, client_config, load_certs};
use kms::crypto::Random;
use kms::crypto::aead::{AeadAlg, encrypt};

use kms::app::{App, AppConfig, ServerTls};
use kms_server::serve::{OsRandom, ServeOptions, serve, unix_now};
use kms_server::tls::{load_certs as server_certs, load_key};

/// Runs a future to completion (the host transport blocks inside its futures).
trait Run: std::future::Future + Sized {
    fn run(self) -> Self::Output {
        kms::block_on(self, || {})
    }
}
impl<F: std::future::Future> Run for F {}

const CREATE: &str = r#"{"tag":"Create","type":"Structure","value":[
  {"tag":"ObjectType","type":"Enumeration","value":"SymmetricKey"},
  {"tag":"Attributes","type":"Structure","value":[
    {"tag":"CryptographicAlgorithm","type":"Enumeration","value":"AES"},
    {"tag":"CryptographicLength","type":"Integer","value":256},
    {"tag":"CryptographicUsageMask","type":"Integer","value":12}]}]}"#;

fn encrypt_body(uid: &str) -> String {
    format!(
        r#"{{"tag":"Encrypt","type":"Structure","value":[
  {{"tag":"UniqueIdentifier","type":"TextString","value":"{uid}"}},
  {{"tag":"CryptographicParameters","type":"Structure","value":[
    {{"tag":"BlockCipherMode","type":"Enumeration","value":"GCM"}},
    {{"tag":"CryptographicAlgorithm","type":"Enumeration","value":"AES"}}]}},
  {{"tag":"Data","type":"ByteString","value":"{}"}}]}}"#,
        "A5".repeat(64)
    )
}

fn activate_body(uid: &str) -> String {
    format!(
        r#"{{"tag":"Activate","type":"Structure","value":[{{"tag":"UniqueIdentifier","type":"TextString","value":"{uid}"}}]}}"#
    )
}

/// Run `op` on `threads` threads for `secs`; total operations per second.
fn measure<S: Send + 'static>(
    threads: usize,
    secs: f64,
    setup: impl Fn() -> S + Sync + Send + 'static,
    op: impl Fn(&mut S) + Sync + Send + 'static,
) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let setup = Arc::new(setup);
    let op = Arc::new(op);
    let barrier = Arc::new(std::sync::Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (stop, count, setup, op, barrier) = (
                stop.clone(),
                count.clone(),
                setup.clone(),
                op.clone(),
                barrier.clone(),
            );
            std::thread::spawn(move || {
                let mut state = setup();
                op(&mut state); // warm-up (connection, handshake)
                barrier.wait();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    op(&mut state);
                    n += 1;
                }
                count.fetch_add(n, Ordering::Relaxed);
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().expect("bench thread");
    }
    count.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// The UniqueIdentifier of a JSON TTLV response.
fn uid_of(response: &serde_json::Value) -> String {
    response["value"]
        .as_array()
        .and_then(|items| items.iter().find(|c| c["tag"] == "UniqueIdentifier"))
        .and_then(|c| c["value"].as_str())
        .expect("uid")
        .to_owned()
}

fn post_ok(c: &mut HttpClient, body: &str) -> serde_json::Value {
    let r = c.post("/kmip/2_1", body.as_bytes()).expect("request");
    assert_eq!(r.status, 200, "{}", r.text());
    serde_json::from_slice(&r.body).expect("JSON")
}

/// A KMS already running elsewhere and the client identity to use with it.
struct Remote {
    url: String,
    ca_cert: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
    concurrency: Vec<usize>,
    tsv: bool,
}

const USAGE: &str = "usage: kms-bench [--seconds N]\n       kms-bench --url URL --ca-cert PEM --client-cert PEM \
--client-key PEM [--concurrency 1,4] [--seconds N] [--tsv]";

fn usage() -> ! {
    eprintln!("{USAGE}");
    std::process::exit(2)
}

/// Client side of one remote workload: runs `op` on `threads` keep-alive clients, counting
/// failed requests instead of stopping (the first failure is printed).
fn remote_row<S: Send + 'static>(
    threads: usize,
    secs: f64,
    setup: impl Fn() -> S + Sync + Send + 'static,
    op: impl Fn(&mut S) -> Result<(), String> + Sync + Send + 'static,
) -> (f64, u64) {
    let errors = Arc::new(AtomicU64::new(0));
    let errs = errors.clone();
    let ops = measure(threads, secs, setup, move |s| {
        if let Err(e) = op(s)
            && errs.fetch_add(1, Ordering::Relaxed) == 0
        {
            eprintln!("kms-bench: request failed: {e}");
        }
    });
    (ops, errors.load(Ordering::Relaxed))
}

fn run_remote(r: &Remote, secs: f64) {
    fn load<T>(what: &str, res: Result<T, ckms::http::HttpError>) -> T {
        res.unwrap_or_else(|e| {
            eprintln!("kms-bench: {what}: {e}");
            std::process::exit(1)
        })
    }
    let identity = load(
        "client certificate",
        ClientIdentity::from_pem_files(&r.client_cert, &r.client_key),
    );
    let tls = load(
        "client TLS",
        client_config(
            load("CA certificate", load_certs(&r.ca_cert)),
            Some(identity),
        ),
    );
    // Full handshakes: no session resumption from the client.
    let mut fresh = (*tls).clone();
    fresh.resumption = rustls::client::Resumption::disabled();
    let fresh = Arc::new(fresh);

    let mut c = load("client", HttpClient::new(&r.url, tls.clone()));
    let created = post_ok(&mut c, CREATE);
    let uid = uid_of(&created);
    post_ok(&mut c, &activate_body(&uid));
    let enc_body = Arc::new(encrypt_body(&uid));
    if !r.tsv {
        println!("kms-bench: {secs} s per row against {} (mTLS)\n", r.url);
    }

    let status_ok = |resp: Result<ckms::http::HttpResponse, ckms::http::HttpError>| match resp {
        Ok(x) if x.status == 200 => Ok(()),
        Ok(x) => Err(format!("HTTP {}: {}", x.status, x.text())),
        Err(e) => Err(e.to_string()),
    };
    let mut rows: Vec<(&str, usize, f64, u64)> = Vec::new();
    for &threads in &r.concurrency {
        let (url, t) = (r.url.clone(), tls.clone());
        let keep_alive = move || HttpClient::new(&url, t.clone()).expect("client");
        let body = enc_body.clone();
        let (ops, err) = remote_row(threads, secs, keep_alive.clone(), move |c| {
            status_ok(c.post("/kmip/2_1", body.as_bytes()))
        });
        rows.push(("encrypt", threads, ops, err));
        let (ops, err) = remote_row(threads, secs, keep_alive, move |c| {
            status_ok(c.post("/kmip/2_1", CREATE.as_bytes()))
        });
        rows.push(("create", threads, ops, err));
        let (url, t) = (r.url.clone(), fresh.clone());
        let (ops, err) = remote_row(
            threads,
            secs,
            move || (url.clone(), t.clone()),
            move |(url, t)| {
                let mut c = HttpClient::new(url, t.clone()).map_err(|e| e.to_string())?;
                status_ok(c.get("/health"))
            },
        );
        rows.push(("handshake", threads, ops, err));
    }
    for (name, threads, ops, err) in rows {
        if r.tsv {
            println!("{name}\t{threads}\t{ops:.1}\t{err}");
        } else {
            println!("{name:<10} concurrency {threads:>2} {ops:>10.1} ops/s  {err} errors");
        }
    }
}

fn main() {
    let mut secs = 3.0;
    let mut url = None;
    let (mut ca_cert, mut client_cert, mut client_key) = (None, None, None);
    let mut concurrency = vec![1usize, 4];
    let mut tsv = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--seconds" => secs = value().parse().unwrap_or_else(|_| usage()),
            "--url" => url = Some(value()),
            "--ca-cert" => ca_cert = Some(PathBuf::from(value())),
            "--client-cert" => client_cert = Some(PathBuf::from(value())),
            "--client-key" => client_key = Some(PathBuf::from(value())),
            "--concurrency" => {
                concurrency = value()
                    .split(',')
                    .map(|n| n.parse().ok().filter(|&n: &usize| n > 0))
                    .collect::<Option<_>>()
                    .unwrap_or_else(|| usage())
            }
            "--tsv" => tsv = true,
            _ => usage(),
        }
    }
    if let Some(url) = url {
        let (Some(ca_cert), Some(client_cert), Some(client_key)) =
            (ca_cert, client_cert, client_key)
        else {
            usage()
        };
        let remote = Remote {
            url,
            ca_cert,
            client_cert,
            client_key,
            concurrency,
            tsv,
        };
        return run_remote(&remote, secs);
    }

    // PKI and server (memory store, mTLS).
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = pki::Pki::new(dir.path(), "bench");
    let user = pki.client(Some("bench"));
    let tls = ServerTls {
        chain: server_certs(&pki.server.cert).expect("cert"),
        key: load_key(&pki.server.key).expect("key"),
        client_ca: Some(server_certs(&pki.ca_cert).expect("ca")),
        fixed_user: None,
    };
    let store = Arc::new(kms_server::store::HostStore::memory());
    let app = Arc::new(App::serving(store, tls, AppConfig::default()).expect("server TLS"));
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("https://{}", listener.local_addr().expect("addr"));
    let served = app.clone();
    std::thread::spawn(move || {
        serve(served, listener, None, None, ServeOptions::default()).expect("serve")
    });

    let client_tls = client_config(
        load_certs(&pki.ca_cert).expect("ca"),
        Some(ClientIdentity::from_pem_files(&user.cert, &user.key).expect("identity")),
    )
    .expect("client TLS");
    let new_client = {
        let (url, tls) = (url.clone(), client_tls.clone());
        move || HttpClient::new(&url, tls.clone()).expect("client")
    };

    // One active AES-256 key for Encrypt.
    let mut c = new_client();
    let created = post_ok(&mut c, CREATE);
    let uid = uid_of(&created);
    post_ok(&mut c, &activate_body(&uid));
    let enc_body = Arc::new(encrypt_body(&uid));

    println!("kms-bench: {secs} s per row, server at {url} (memory store, mTLS, TLS 1.3)\n");
    let mut rows: Vec<(String, f64)> = Vec::new();

    // Floors.
    let floor = measure(
        1,
        secs,
        || (OsRandom(ring::rand::SystemRandom::new()), [7u8; 32]),
        |(rng, key)| {
            let mut nonce = [0u8; 12];
            rng.fill(&mut nonce).expect("rng");
            let out = encrypt(AeadAlg::AesGcm, key, &nonce, b"", &[0xA5; 64], 16).expect("encrypt");
            std::hint::black_box(out);
        },
    );
    rows.push((
        "floor: AES-256-GCM 64 B in-process (kms::crypto), 1 thread".into(),
        floor,
    ));
    let core = {
        let (app, body) = (app.clone(), enc_body.clone());
        measure(
            1,
            secs,
            || OsRandom(ring::rand::SystemRandom::new()),
            move |rng| {
                let mut env = kms::Env {
                    now: unix_now(),
                    rng,
                };
                let kms = app.kms().expect("serving");
                let out = kms
                    .kmip_json(&mut env, "bench", body.as_bytes())
                    .run()
                    .expect("kmip");
                std::hint::black_box(out);
            },
        )
    };
    rows.push((
        "in-process Kms::kmip_json Encrypt 64 B, 1 thread".into(),
        core,
    ));

    for threads in [1usize, 16] {
        let body = enc_body.clone();
        let r = measure(threads, secs, new_client.clone(), move |c| {
            let resp = c.post("/kmip/2_1", body.as_bytes()).expect("request");
            assert_eq!(resp.status, 200);
        });
        rows.push((format!("HTTPS Encrypt 64 B, concurrency {threads}"), r));
        let r = measure(threads, secs, new_client.clone(), |c| {
            let resp = c.post("/kmip/2_1", CREATE.as_bytes()).expect("request");
            assert_eq!(resp.status, 200);
        });
        rows.push((format!("HTTPS Create AES-256, concurrency {threads}"), r));
    }

    println!("{:<62} {:>12} {:>14}", "workload", "ops/s", "floor / ops/s");
    println!("{}", "-".repeat(90));
    for (name, ops) in &rows {
        println!("{name:<62} {ops:>12.0} {:>13.1}x", floor / ops);
    }
    println!(
        "\ncpus: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
}
