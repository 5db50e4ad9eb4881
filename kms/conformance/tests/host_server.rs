//! The vendored OASIS KMIP 2.1 mandatory test cases against `kms-server` (memory store) over
//! JSON/HTTPS with mutual TLS. Every case listed in `expected-pass.txt` must pass (a case that
//! starts failing is a regression); the score is printed. Cases not listed yet fail for a
//! reason the conformance work has still to fix (see README.md).
//!
//! Needs the `kms-server` binary: `cargo build -p kms-server` first.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};

use kmip_conformance::{JsonHttps, load_dir, mandatory_2_1, run_case};
use testkit::{ChildGuard, Pki, drain_lines, free_port, wait_line, workspace_bin};

#[test]
fn oasis_kmip_2_1_mandatory_cases_over_json() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = Pki::new("conformance CA");
    let ca = pki.ca().write(dir.path(), "ca");
    let server = pki
        .server("127.0.0.1", &["127.0.0.1"])
        .write(dir.path(), "server");
    let client = pki.client(Some("conformance")).write(dir.path(), "client");
    let port = free_port();
    let mut child = ChildGuard::spawn(
        Command::new(workspace_bin("kms-server"))
            .args(["--database", "memory", "--port", &port.to_string()])
            .arg("--tls-cert")
            .arg(&server.cert)
            .arg("--tls-key")
            .arg(&server.key)
            .arg("--client-ca")
            .arg(&ca.cert)
            .stdout(Stdio::piped()),
        "kms-server",
    );
    let mut lines = child.stdout_lines();
    wait_line(&mut lines, "kms-server listening on", "kms-server");
    drain_lines(lines);

    let roots = ckms::http::load_certs(&ca.cert).expect("CA");
    let identity =
        ckms::http::ClientIdentity::from_pem_files(&client.cert, &client.key).expect("client");
    let tls = ckms::http::client_config(roots, Some(identity)).expect("TLS");
    let http =
        ckms::http::HttpClient::new(&format!("https://127.0.0.1:{port}"), tls).expect("client");
    let mut transport = JsonHttps(http);

    let cases = load_dir(&mandatory_2_1()).expect("vendored cases");
    assert_eq!(cases.len(), 86, "the KMIP 2.1 mandatory set has 86 cases");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let mut passed = BTreeSet::new();
    for case in &cases {
        let r = run_case(case, &mut transport, now);
        match &r.failure {
            None => {
                println!("PASS {}", r.name);
                passed.insert(r.name.clone());
            }
            Some((step, why)) => println!("FAIL {} step {step}/{}: {why}", r.name, r.steps),
        }
    }
    println!("json: {}/{} cases passed", passed.len(), cases.len());

    let expected: BTreeSet<String> = include_str!("../expected-pass.txt")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    let regressed: Vec<_> = expected.difference(&passed).collect();
    assert!(
        regressed.is_empty(),
        "cases that passed before fail now: {regressed:?}"
    );
}
