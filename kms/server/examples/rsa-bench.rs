//! RSA-2048 over KMIP against a running, provisioned KMS (the host server or the image): key
//! pair generation (CreateKeyPair), signature (Sign, RSASSA-PSS SHA-256) and decryption
//! (Decrypt, RSAES-OAEP SHA-256 / MGF1 SHA-256) per second, one keep-alive mTLS connection
//! (concurrency 1, like `openssl speed` without `-multi`). Used by `scripts/bench-rsa`.
//!
//! Run: `rsa-bench --url https://127.0.0.1:P --ca-cert CA.pem --client-cert C.pem
//! --client-key C.key [--seconds N] [--keygen-min K] [--min M] [--tsv]`
//!
//! Each row runs for at least `--seconds` and at least its minimum count (`--keygen-min`,
//! default 3, for key pairs; `--min`, default 10, for the others), so a slow target (the image
//! under QEMU TCG) still gives a few samples. With `--cpu-pid PID` (the server process, or QEMU
//! for the image) each row also gives the CPU time that process spent (utime + stime from
//! `/proc/PID/stat`), so that a loaded machine does not hide the cost per operation. `--tsv`
//! prints `workload<TAB>count<TAB>seconds<TAB>ops/s<TAB>cpu-seconds` lines only (cpu-seconds 0
//! without `--cpu-pid`). Any failed request stops the run.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ckms::http::{ClientIdentity, HttpClient, client_config, load_certs};

const USAGE: &str = "usage: rsa-bench --url URL --ca-cert PEM --client-cert PEM --client-key PEM \
[--seconds N] [--keygen-min K] [--min M] [--cpu-pid PID] [--tsv]";

/// `CryptographicUsageMask` bits (KMIP 2.1 §11.15).
const SIGN_DECRYPT: u32 = 0x01 | 0x08;
const VERIFY_ENCRYPT: u32 = 0x02 | 0x04;

fn create_key_pair() -> String {
    format!(
        r#"{{"tag":"CreateKeyPair","type":"Structure","value":[
  {{"tag":"CommonAttributes","type":"Structure","value":[
    {{"tag":"CryptographicAlgorithm","type":"Enumeration","value":"RSA"}},
    {{"tag":"CryptographicLength","type":"Integer","value":2048}}]}},
  {{"tag":"PrivateKeyAttributes","type":"Structure","value":[
    {{"tag":"CryptographicUsageMask","type":"Integer","value":{SIGN_DECRYPT}}}]}},
  {{"tag":"PublicKeyAttributes","type":"Structure","value":[
    {{"tag":"CryptographicUsageMask","type":"Integer","value":{VERIFY_ENCRYPT}}}]}}]}}"#
    )
}

fn activate(uid: &str) -> String {
    format!(
        r#"{{"tag":"Activate","type":"Structure","value":[{{"tag":"UniqueIdentifier","type":"TextString","value":"{uid}"}}]}}"#
    )
}

/// The PSS SHA-256 parameters, or the OAEP SHA-256 ones.
fn params(pss: bool) -> &'static str {
    if pss {
        r#"{"tag":"CryptographicParameters","type":"Structure","value":[
    {"tag":"CryptographicAlgorithm","type":"Enumeration","value":"RSA"},
    {"tag":"PaddingMethod","type":"Enumeration","value":"PSS"},
    {"tag":"HashingAlgorithm","type":"Enumeration","value":"SHA256"}]}"#
    } else {
        r#"{"tag":"CryptographicParameters","type":"Structure","value":[
    {"tag":"CryptographicAlgorithm","type":"Enumeration","value":"RSA"},
    {"tag":"PaddingMethod","type":"Enumeration","value":"OAEP"},
    {"tag":"HashingAlgorithm","type":"Enumeration","value":"SHA256"},
    {"tag":"MaskGenerator","type":"Enumeration","value":"MGF1"},
    {"tag":"MaskGeneratorHashingAlgorithm","type":"Enumeration","value":"SHA256"}]}"#
    }
}

fn operation(op: &str, uid: &str, pss: bool, data: &[u8]) -> String {
    format!(
        r#"{{"tag":"{op}","type":"Structure","value":[
  {{"tag":"UniqueIdentifier","type":"TextString","value":"{uid}"}},
  {},
  {{"tag":"Data","type":"ByteString","value":"{}"}}]}}"#,
        params(pss),
        hex::encode_upper(data)
    )
}

fn fail(what: &str, e: impl std::fmt::Display) -> ! {
    eprintln!("rsa-bench: {what}: {e}");
    std::process::exit(1)
}

fn usage() -> ! {
    eprintln!("{USAGE}");
    std::process::exit(2)
}

/// POST a JSON TTLV body; the response's JSON, or exit with the server's answer.
fn post(c: &mut HttpClient, what: &str, body: &str) -> serde_json::Value {
    let r = c
        .post("/kmip/2_1", body.as_bytes())
        .unwrap_or_else(|e| fail(what, e));
    if r.status != 200 {
        fail(what, format!("HTTP {}: {}", r.status, r.text()));
    }
    serde_json::from_slice(&r.body).unwrap_or_else(|e| fail(what, e))
}

/// The value of the response's top-level field `tag`.
fn field(response: &serde_json::Value, tag: &str) -> String {
    response["value"]
        .as_array()
        .and_then(|items| items.iter().find(|c| c["tag"] == tag))
        .and_then(|c| c["value"].as_str())
        .unwrap_or_else(|| fail("response", format!("no {tag}")))
        .to_owned()
}

/// CPU seconds (user + system) process `pid` has used, from `/proc/PID/stat` (fields 14 and 15,
/// in clock ticks of 1/100 s, Linux's USER_HZ on x86-64); 0 without a pid.
fn cpu_seconds(pid: Option<u32>) -> f64 {
    let Some(pid) = pid else { return 0.0 };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| fail("--cpu-pid", e));
    // The command name (field 2) is in parentheses and may hold spaces: count after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let tick = |i: usize| -> f64 {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or_else(|| fail("--cpu-pid", "unreadable /proc/PID/stat")) as f64
    };
    // After ')': state is field 3, so utime (14) and stime (15) are at 11 and 12.
    (tick(11) + tick(12)) / 100.0
}

/// Run `f` for at least `secs` seconds and at least `min` times: (count, seconds, CPU seconds
/// of `pid`).
fn rate(secs: f64, min: u32, pid: Option<u32>, mut f: impl FnMut()) -> (u32, f64, f64) {
    let cpu = cpu_seconds(pid);
    let start = Instant::now();
    let mut n = 0u32;
    while n < min || start.elapsed() < Duration::from_secs_f64(secs) {
        f();
        n += 1;
    }
    (n, start.elapsed().as_secs_f64(), cpu_seconds(pid) - cpu)
}

fn main() {
    let (mut url, mut ca, mut cert, mut key) = (None, None, None, None);
    let (mut secs, mut keygen_min, mut min, mut tsv) = (5.0f64, 3u32, 10u32, false);
    let mut pid = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--url" => url = Some(value()),
            "--ca-cert" => ca = Some(PathBuf::from(value())),
            "--client-cert" => cert = Some(PathBuf::from(value())),
            "--client-key" => key = Some(PathBuf::from(value())),
            "--seconds" => secs = value().parse().unwrap_or_else(|_| usage()),
            "--keygen-min" => keygen_min = value().parse().unwrap_or_else(|_| usage()),
            "--min" => min = value().parse().unwrap_or_else(|_| usage()),
            "--cpu-pid" => pid = Some(value().parse().unwrap_or_else(|_| usage())),
            "--tsv" => tsv = true,
            _ => usage(),
        }
    }
    let (Some(url), Some(ca), Some(cert), Some(key)) = (url, ca, cert, key) else {
        usage()
    };
    let identity =
        ClientIdentity::from_pem_files(&cert, &key).unwrap_or_else(|e| fail("client cert", e));
    let tls = client_config(
        load_certs(&ca).unwrap_or_else(|e| fail("CA", e)),
        Some(identity),
    )
    .unwrap_or_else(|e| fail("client TLS", e));
    let mut c = HttpClient::new(&url, tls).unwrap_or_else(|e| fail("client", e));
    // A key pair generation under TCG takes seconds to minutes.
    c.set_timeout(Duration::from_secs(900));

    let create = create_key_pair();
    let mut last = None;
    let keygen = rate(secs, keygen_min, pid, || {
        last = Some(post(&mut c, "CreateKeyPair", &create))
    });
    let Some(pair) = last else { usage() };
    let (private, public) = (
        field(&pair, "PrivateKeyUniqueIdentifier"),
        field(&pair, "PublicKeyUniqueIdentifier"),
    );
    post(&mut c, "Activate", &activate(&private));
    post(&mut c, "Activate", &activate(&public));

    let message = [0x5Au8; 64];
    let sign = operation("Sign", &private, true, &message);
    let signature = rate(secs, min, pid, || {
        post(&mut c, "Sign", &sign);
    });

    let secret = [0xA5u8; 32];
    let encrypted = post(
        &mut c,
        "Encrypt",
        &operation("Encrypt", &public, false, &secret),
    );
    let ciphertext = hex::decode(field(&encrypted, "Data")).unwrap_or_else(|e| fail("Data", e));
    let decrypt = operation("Decrypt", &private, false, &ciphertext);
    let answer = post(&mut c, "Decrypt", &decrypt);
    if hex::decode(field(&answer, "Data")).ok().as_deref() != Some(&secret[..]) {
        fail("Decrypt", "the plaintext differs from what was encrypted");
    }
    let decryption = rate(secs, min, pid, || {
        post(&mut c, "Decrypt", &decrypt);
    });

    let rows = [
        ("keygen", keygen),
        ("sign", signature),
        ("decrypt", decryption),
    ];
    if !tsv {
        println!(
            "rsa-bench: RSA-2048 against {url}, one connection (sign: PSS SHA-256, decrypt: OAEP SHA-256)"
        );
    }
    for (name, (n, s, cpu)) in rows {
        let ops = f64::from(n) / s;
        if tsv {
            println!("{name}\t{n}\t{s:.3}\t{ops:.3}\t{cpu:.2}");
        } else {
            println!(
                "{name:<8} {ops:>10.2} ops/s  {:>10.2} ms/op  ({n} in {s:.1} s; CPU of --cpu-pid: {:.2} ms/op)",
                1000.0 / ops,
                1000.0 * cpu / f64::from(n)
            );
        }
    }
}
