//! The vendored OASIS KMIP 2.1 mandatory test cases against `kms-server` (memory store), with
//! mutual TLS, over JSON (`POST /kmip/2_1`) and over binary TTLV (the KMIP port), and the KMIP
//! 1.4 mandatory cases over binary (protocol version 1.4 in the header). Every case listed in
//! `expected-pass.txt` (2.1 JSON), `expected-pass-binary.txt` (2.1 binary) and
//! `expected-pass-1.4.txt` (1.4 binary) must pass (a case that starts failing is a
//! regression); the scores are printed. Cases not listed yet
//! fail for a reason the conformance work has still to fix (see README.md).
//!
//! Needs the `kms-server` binary: `cargo build -p kms-server` first.

use std::collections::BTreeSet;

use kmip_conformance::{
    BinaryKmip, JsonHttps, Transport, load_dir, mandatory_1_4, mandatory_2_1, run_case,
};
use testkit::MemoryKmsServer;

fn expected(list: &str) -> BTreeSet<String> {
    list.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// Runs every case of `dir` (`count` of them) over `transport`, prints one line per case and
/// the score; the cases that passed.
fn score(
    transport: &mut dyn Transport,
    now: i64,
    dir: &std::path::Path,
    count: usize,
) -> BTreeSet<String> {
    let cases = load_dir(dir).expect("vendored cases");
    assert_eq!(cases.len(), count, "cases in {}", dir.display());
    let name = transport.name();
    let mut passed = BTreeSet::new();
    for case in &cases {
        let r = run_case(case, transport, now);
        match &r.failure {
            None => {
                println!("{name} PASS {}", r.name);
                passed.insert(r.name.clone());
            }
            Some((step, why)) => println!("{name} FAIL {} step {step}/{}: {why}", r.name, r.steps),
        }
    }
    println!("{name}: {}/{} cases passed", passed.len(), cases.len());
    passed
}

#[test]
fn oasis_kmip_2_1_mandatory_cases_over_json_and_binary() {
    let dir = tempfile::tempdir().expect("temp dir");
    let kms = MemoryKmsServer::start(dir.path(), "conformance");

    let roots = ckms::http::load_certs(&kms.ca_cert).expect("CA");
    let identity = ckms::http::ClientIdentity::from_pem_files(&kms.client.cert, &kms.client.key)
        .expect("client");
    let tls = ckms::http::client_config(roots, Some(identity)).expect("TLS");
    let http = ckms::http::HttpClient::new(&format!("https://127.0.0.1:{}", kms.port), tls.clone())
        .expect("client");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;

    let json = score(&mut JsonHttps(http), now, &mandatory_2_1(), 86);
    let binary = score(
        &mut BinaryKmip::new(kms.kmip_addr, tls.clone()),
        now,
        &mandatory_2_1(),
        86,
    );
    let v1_4 = score(
        &mut BinaryKmip::new(kms.kmip_addr, tls),
        now,
        &mandatory_1_4(),
        68,
    );
    println!(
        "score: json {}/86, binary {}/86, KMIP 1.4 binary {}/68",
        json.len(),
        binary.len(),
        v1_4.len()
    );

    let json_regressed: Vec<_> = expected(include_str!("../expected-pass.txt"))
        .difference(&json)
        .cloned()
        .collect();
    let binary_regressed: Vec<_> = expected(include_str!("../expected-pass-binary.txt"))
        .difference(&binary)
        .cloned()
        .collect();
    let v1_4_regressed: Vec<_> = expected(include_str!("../expected-pass-1.4.txt"))
        .difference(&v1_4)
        .cloned()
        .collect();
    assert!(
        json_regressed.is_empty() && binary_regressed.is_empty() && v1_4_regressed.is_empty(),
        "cases that passed before fail now: json {json_regressed:?}, binary {binary_regressed:?}, \
         KMIP 1.4 binary {v1_4_regressed:?}"
    );
}
