//! Zero-trust workflow end to end in host mode: `snp-emu` as the platform, a real `redis-server`, the real
//! `kms-server --bootstrap` and `ckms` binaries. Build them first: `cargo build --workspace --bins`.
//!
//! Each test starts its own processes on free loopback ports in a temporary directory; guards stop them by
//! PID when the test ends (also on failure).

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use base64ct::{Base64, Encoding};
use rcgen::{CertificateParams, DnType, KeyPair, PKCS_ECDSA_P256_SHA256};
use sha2::Digest;
use testkit::{ChildGuard, RedisServer, SnpEmu, drain_lines, free_port, wait_line, workspace_bin};

// ------------------------------------------------------------------------------------------------
// Processes

fn bin(name: &str) -> PathBuf {
    workspace_bin(name)
}

/// `snp-emu serve` for one "VM".
struct Emu(SnpEmu);

impl std::ops::Deref for Emu {
    type Target = SnpEmu;
    fn deref(&self) -> &SnpEmu {
        &self.0
    }
}

impl Emu {
    fn start(dir: &Path, name: &str, cmdline: &str, secret_file: Option<&Path>) -> Emu {
        let socket = dir.join(format!("{name}.sock"));
        let kernel = dir.join("kernel.bin");
        if !kernel.exists() {
            std::fs::write(
                &kernel,
                b"stand-in kernel for the emulated launch measurement",
            )
            .expect("kernel");
        }
        let firmware = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../attest/testdata/snp/ovmf_AmdSev_suffix.bin");
        let mut args = vec![
            "--firmware".into(),
            firmware.into_os_string(),
            "--kernel".into(),
            kernel.into_os_string(),
            "--cmdline".into(),
            cmdline.into(),
        ];
        if let Some(s) = secret_file {
            args.extend(["--secret-file".into(), s.as_os_str().to_owned()]);
        }
        Emu(SnpEmu::serve(&bin("snp-emu"), socket, args))
    }
}

/// `kms-server --bootstrap`.
struct Server {
    guard: ChildGuard,
    main: u16,
    ratls: u16,
}

impl Server {
    fn start(emu: &Emu, extra: &[&str]) -> Server {
        let mut guard = ChildGuard::spawn(
            Command::new(bin("kms-server"))
                .arg("--bootstrap")
                .arg("--attestation")
                .arg(format!("emulated:{}", emu.socket.display()))
                .args(["--bootstrap-port", "0", "--ratls-port", "0"])
                .args(extra)
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit()),
            "kms-server",
        );
        let mut lines = guard.stdout_lines();
        let port = |addr: String| {
            addr.rsplit(':')
                .next()
                .and_then(|p| p.parse().ok())
                .expect("port")
        };
        let main = port(wait_line(
            &mut lines,
            "kms-server bootstrap listening on ",
            "kms-server",
        ));
        let ratls = port(wait_line(
            &mut lines,
            "kms-server ra-tls listening on ",
            "kms-server",
        ));
        drain_lines(lines);
        Server { guard, main, ratls }
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.main)
    }

    fn ratls_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.ratls)
    }
}

// ------------------------------------------------------------------------------------------------
// Certificates and files

/// The test CA ([`testkit::Pki`]) with its files in a directory.
struct Pki {
    dir: PathBuf,
    pki: testkit::Pki,
}

impl Pki {
    /// A P-256 CA; its certificate and key are written to `ca.pem` / `ca.key`.
    fn new(dir: &Path) -> Pki {
        let pki = testkit::Pki::new("Test CA");
        pki.ca().write(dir, "ca");
        Pki {
            dir: dir.to_owned(),
            pki,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A client certificate `CN=<cn>` issued by the CA, written to `<cn>.pem` / `<cn>.key`; returns the
    /// SHA-256 (hex) of its SubjectPublicKeyInfo.
    fn client(&self, cn: &str) -> String {
        let cert = self.pki.client(Some(cn));
        cert.write(&self.dir, cn);
        hex::encode(sha2::Sha256::digest(&cert.spki_der))
    }
}

fn write_secret(dir: &Path, name: &str, byte: u8) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, Base64::encode_string(&[byte; 32])).expect("secret");
    path
}

fn ckms(args: &[&str]) -> Output {
    Command::new(bin("ckms")).args(args).output().expect("ckms")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The common part of `ckms bootstrap start` (global options first).
struct Provision<'a> {
    url: String,
    ratls_url: String,
    pki: &'a Pki,
    measurement: String,
    trust_root: Option<PathBuf>,
    client: Option<&'a str>,
    redis: String,
    secret: PathBuf,
}

impl Provision<'_> {
    fn args(&self) -> Vec<String> {
        let mut a = vec![
            "--url".to_owned(),
            self.url.clone(),
            "--ca-cert".into(),
            s(&self.pki.path("ca.pem")),
        ];
        if let Some(cn) = self.client {
            a.extend([
                "--client-cert".into(),
                s(&self.pki.path(&format!("{cn}.pem"))),
            ]);
            a.extend([
                "--client-key".into(),
                s(&self.pki.path(&format!("{cn}.key"))),
            ]);
        }
        a.extend([
            "bootstrap".into(),
            "start".into(),
            "--expected-measurement".into(),
            self.measurement.clone(),
        ]);
        if let Some(t) = &self.trust_root {
            a.extend(["--trust-root".into(), s(t)]);
        }
        a.extend([
            "--subject".into(),
            "CN=kms.test".into(),
            "--ip".into(),
            "127.0.0.1".into(),
        ]);
        a.extend(["--ca-key".into(), s(&self.pki.path("ca.key"))]);
        a.extend([
            "--redis-url".into(),
            self.redis.clone(),
            "--db-secret-file".into(),
            s(&self.secret),
        ]);
        a.extend(["--client-ca".into(), s(&self.pki.path("ca.pem"))]);
        a.extend(["--ra-tls-url".into(), self.ratls_url.clone()]);
        a
    }

    fn run(&self) -> Output {
        let args = self.args();
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        ckms(&refs)
    }
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// Everything a test needs: temp dir, Redis, emulator (with its exported test ARK), CA, one server.
struct Env {
    dir: tempfile::TempDir,
    redis: RedisServer,
    emu: Emu,
    pki: Pki,
    ark: PathBuf,
    secret: PathBuf,
}

const CMDLINE: &str = "console=ttyS0 ckms.attestation=emulated";

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let redis = RedisServer::start();
        let emu = Emu::start(dir.path(), "vm1", CMDLINE, None);
        let chain = dir.path().join("chain");
        let out = Command::new(bin("snp-emu"))
            .arg("export-chain")
            .arg(&chain)
            .output()
            .expect("export-chain");
        assert!(out.status.success(), "export-chain: {}", stderr(&out));
        let pki = Pki::new(dir.path());
        pki.client("admin");
        let secret = write_secret(dir.path(), "db.secret", 0x5A);
        Env {
            ark: chain.join("ark.pem"),
            dir,
            redis,
            emu,
            pki,
            secret,
        }
    }

    fn provision(&self, server: &Server) -> Provision<'_> {
        self.provision_url(server.url(), server.ratls_url())
    }

    fn provision_url(&self, url: String, ratls_url: String) -> Provision<'_> {
        Provision {
            url,
            ratls_url,
            pki: &self.pki,
            measurement: self.emu.measurement.clone(),
            trust_root: Some(self.ark.clone()),
            client: Some("admin"),
            redis: self.redis.url(),
            secret: self.secret.clone(),
        }
    }

    /// `ckms` as user `admin` against the started KMS.
    fn kms(&self, server: &Server, args: &[&str]) -> Output {
        let mut a = vec![
            "--url".to_owned(),
            server.url(),
            "--ca-cert".into(),
            s(&self.pki.path("ca.pem")),
            "--client-cert".into(),
            s(&self.pki.path("admin.pem")),
            "--client-key".into(),
            s(&self.pki.path("admin.key")),
        ];
        a.extend(args.iter().map(|x| (*x).to_owned()));
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        ckms(&refs)
    }
}

fn assert_fails_with(o: &Output, needle: &str) {
    assert!(
        !o.status.success(),
        "expected failure containing {needle:?}; stdout: {}",
        stdout(o)
    );
    assert!(
        stderr(o).contains(needle),
        "expected {needle:?} in stderr:\n{}",
        stderr(o)
    );
}

fn assert_ok(o: &Output, what: &str) {
    assert!(
        o.status.success(),
        "{what} failed:\nstdout: {}\nstderr: {}",
        stdout(o),
        stderr(o)
    );
}

/// A client pinned to the server's attested bootstrap key (the way `ckms` talks to it).
fn pinned(
    env: &Env,
    server: &Server,
    client: Option<&str>,
) -> (ckms::http::HttpClient, ckms::verify::AttestedKey) {
    let exp = ckms::verify::Expectation {
        measurement: Some(hex48(&env.emu.measurement)),
        tdx: None,
        trust_root: Some(std::fs::read(&env.ark).expect("ark")),
        policy: Default::default(),
        extra: Default::default(),
    };
    let cert = ckms::verify::capture_certificate(&server.url()).expect("capture");
    let attested =
        ckms::verify::attest_certificate(&cert, &exp, "bootstrap certificate").expect("attest");
    let identity = client.map(|cn| {
        ckms::http::ClientIdentity::from_pem_files(
            &env.pki.path(&format!("{cn}.pem")),
            &env.pki.path(&format!("{cn}.key")),
        )
        .expect("identity")
    });
    let http =
        ckms::verify::pinned_client(&server.url(), &attested.spki_der, identity).expect("pinned");
    (http, attested)
}

fn hex48(h: &str) -> [u8; 48] {
    let mut out = [0u8; 48];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&h[2 * i..2 * i + 2], 16).expect("hex");
    }
    out
}

/// How the bootstrap API's 403 begins when the session is locked to another client key
/// (`kms::bootstrap::LOCKED_TO_ANOTHER_PROVISIONER`).
const LOCKED_TO_ANOTHER: &str = "this server is already being provisioned by another client";

fn error_of(r: &ckms::http::HttpResponse) -> String {
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON error body");
    v["error"].as_str().expect("error field").to_owned()
}

// ------------------------------------------------------------------------------------------------
// Tests

/// Fresh Redis → attested provisioning → KMS operations through ckms → verify; then the bootstrap API is
/// gone; then a restarted server (same image, same Redis and secret) is re-provisioned and finds its keys.
#[test]
fn full_workflow_then_restart_finds_keys() {
    let env = Env::new();
    let server = Server::start(&env.emu, &[]);
    let out = env.provision(&server).run();
    assert_ok(&out, "bootstrap start");
    let text = stdout(&out);
    assert!(text.contains("bootstrap certificate attested"), "{text}");
    assert!(text.contains("[ok] same key on both ports"), "{text}");
    assert!(text.contains("[ok] fresh attestation"), "{text}");

    // KMS operations as admin.
    let created = env.kms(
        &server,
        &["--json", "sym", "keys", "create", "--tag", "bootstrap-e2e"],
    );
    assert_ok(&created, "sym keys create");
    let plain = env.dir.path().join("plain.txt");
    std::fs::write(&plain, b"attested secrets").expect("write");
    let enc = env.dir.path().join("plain.enc");
    let o = env.kms(
        &server,
        &[
            "sym",
            "encrypt",
            "--tag",
            "bootstrap-e2e",
            "-i",
            &s(&plain),
            "-o",
            &s(&enc),
        ],
    );
    assert_ok(&o, "sym encrypt");

    // ckms verify, standalone, passes; the bootstrap endpoints are gone from the main port.
    let verify = ckms(&[
        "--url",
        &server.url(),
        "--ca-cert",
        &s(&env.pki.path("ca.pem")),
        "--client-cert",
        &s(&env.pki.path("admin.pem")),
        "--client-key",
        &s(&env.pki.path("admin.key")),
        "verify",
        "--ra-tls-url",
        &server.ratls_url(),
        "--expected-measurement",
        &env.emu.measurement,
        "--trust-root",
        &s(&env.ark),
    ]);
    assert_ok(&verify, "verify");
    assert!(stdout(&verify).contains("verified"));

    // Restart: a new emulator for the same image (same measurement, same derived key) and a new server.
    drop(server);
    let emu2 = Emu::start(env.dir.path(), "vm1-restart", CMDLINE, None);
    assert_eq!(emu2.measurement, env.emu.measurement);
    let server2 = Server::start(&emu2, &[]);
    let out = env.provision(&server2).run();
    assert_ok(&out, "bootstrap start after restart");
    let dec = env.dir.path().join("plain.dec");
    let o = env.kms(
        &server2,
        &[
            "sym",
            "decrypt",
            "--tag",
            "bootstrap-e2e",
            "-i",
            &s(&enc),
            "-o",
            &s(&dec),
        ],
    );
    assert_ok(&o, "sym decrypt after restart");
    assert_eq!(std::fs::read(&dec).expect("read"), b"attested secrets");
}

#[test]
fn bootstrap_endpoints_are_gone_after_start_and_attestation_stays() {
    let env = Env::new();
    let server = Server::start(&env.emu, &[]);
    assert_ok(&env.provision(&server).run(), "bootstrap start");
    // The main port now presents the API certificate (CA-verified) and serves the KMS.
    let tls = ckms::http::client_config(
        ckms::http::load_certs(&env.pki.path("ca.pem")).expect("ca"),
        Some(
            ckms::http::ClientIdentity::from_pem_files(
                &env.pki.path("admin.pem"),
                &env.pki.path("admin.key"),
            )
            .expect("id"),
        ),
    )
    .expect("tls");
    let mut http = ckms::http::HttpClient::new(&server.url(), tls).expect("client");
    for path in [
        "/csr",
        "/certificate",
        "/redis-findex",
        "/client-ca",
        "/start",
    ] {
        let r = http.post(path, b"{}").expect("post");
        assert_eq!(r.status, 404, "{path} after start: {}", r.text());
    }
    let nonce = "ab".repeat(32);
    let r = http
        .get(&format!("/attestation?nonce={nonce}"))
        .expect("attestation");
    assert_eq!(r.status, 200, "{}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(v["nonce"], nonce.as_str());
}

#[test]
fn wrong_expected_measurement_is_refused() {
    let env = Env::new();
    let server = Server::start(&env.emu, &[]);
    let mut p = env.provision(&server);
    p.measurement = "00".repeat(48);
    let out = p.run();
    assert_fails_with(&out, "measurement differs from the expected one");
    // Nothing was provisioned: /start is still refused as not ready.
    let (mut http, _) = pinned(&env, &server, Some("admin"));
    let r = http.post("/start", b"{}").expect("post");
    assert_eq!(r.status, 409);
}

#[test]
fn emulator_root_is_not_trusted_by_default() {
    let env = Env::new();
    let server = Server::start(&env.emu, &[]);
    let mut p = env.provision(&server);
    p.trust_root = None;
    assert_fails_with(&p.run(), "does not end at an AMD root");
}

#[test]
fn manifest_or_measurement_is_required() {
    let env = Env::new();
    let server = Server::start(&env.emu, &[]);
    let out = ckms(&[
        "--url",
        &server.url(),
        "verify",
        "--trust-root",
        &s(&env.ark),
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--manifest"), "{}", stderr(&out));
    // A manifest works like --expected-measurement.
    let manifest = env.dir.path().join("manifest.json");
    std::fs::write(
        &manifest,
        format!(
            r#"{{"snp": {{"launch_digest": "{}"}}}}"#,
            env.emu.measurement
        ),
    )
    .expect("w");
    let mut p = env.provision(&server);
    let mut args = p.args();
    let i = args
        .iter()
        .position(|a| a == "--expected-measurement")
        .expect("flag");
    args[i] = "--manifest".into();
    args[i + 1] = s(&manifest);
    p.measurement.clear();
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_ok(&ckms(&refs), "bootstrap start with --manifest");
}

/// A certificate that carries a genuine quote (valid signature, right measurement) for another key: the
/// binding check must refuse it.
#[test]
fn quote_not_binding_the_key_is_refused() {
    let env = Env::new();
    let server = Server::start(&env.emu, &[]);
    let genuine = ckms::verify::capture_certificate(&server.url()).expect("capture");
    let quote = match ckms::verify::quote_of(&genuine)
        .expect("parse")
        .expect("quote")
    {
        ckms::verify::RaTlsQuote::Snp(q) => q,
        other => panic!("not an SNP quote: {other:?}"),
    };

    // Same quote, another key.
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("params");
    params.custom_extensions = vec![rcgen::CustomExtension::from_oid_content(
        &[1, 2, 840, 113741, 1337, 7],
        quote,
    )];
    let forged = params.self_signed(&key).expect("forge");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![forged.der().clone()],
            rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        )
        .expect("config"),
    );
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut conn = rustls::ServerConnection::new(config.clone()).expect("conn");
            let mut stream = stream;
            let _ = conn.complete_io(&mut stream);
        }
    });
    let fake = format!("https://127.0.0.1:{port}");
    let out = ckms(&[
        "--url",
        &fake,
        "bootstrap",
        "start",
        "--expected-measurement",
        &env.emu.measurement,
        "--trust-root",
        &s(&env.ark),
        "--subject",
        "CN=x",
        "--csr-out",
        &s(&env.dir.path().join("x.csr")),
    ]);
    assert_fails_with(
        &out,
        "report_data does not bind the server's TLS public key",
    );
}

#[test]
fn certificate_for_another_key_and_early_start_are_refused() {
    let env = Env::new();
    let server = Server::start(&env.emu, &[]);
    let (mut http, _) = pinned(&env, &server, Some("admin"));
    let r = http.post("/start", b"{}").expect("post");
    assert_eq!(r.status, 409);
    assert_eq!(
        error_of(&r),
        "not ready: post the API certificate and the database first"
    );

    // A CA-issued certificate for a key that is not the server's.
    let other = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("params");
    params
        .distinguished_name
        .push(DnType::CommonName, "kms.test");
    let cert = params
        .signed_by(&other, env.pki.pki.issuer())
        .expect("sign");
    let body = serde_json::json!({"chain_pem": cert.pem()}).to_string();
    let r = http.post("/certificate", body.as_bytes()).expect("post");
    assert_eq!(r.status, 422);
    assert_eq!(
        error_of(&r),
        "the leaf certificate's public key is not this server's bootstrap key"
    );

    // Database before certificate, then a wrong Redis: refused, the server keeps waiting.
    let db =
        serde_json::json!({"url": env.redis.url(), "db_secret": Base64::encode_string(&[1u8; 32])})
            .to_string();
    let r = http.post("/redis-findex", db.as_bytes()).expect("post");
    assert_eq!(
        (r.status, error_of(&r)),
        (409, "post the API certificate first".to_owned())
    );
    let r = http.post("/start", b"{}").expect("post");
    assert_eq!(r.status, 409);
}

#[test]
fn database_checks_refuse_unreachable_redis_and_wrong_secret() {
    let env = Env::new();
    // First provisioning creates the database with secret A.
    let server = Server::start(&env.emu, &[]);
    assert_ok(&env.provision(&server).run(), "bootstrap start");
    drop(server);
    let emu2 = Emu::start(env.dir.path(), "vm1-b", CMDLINE, None);
    let server2 = Server::start(&emu2, &[]);
    let mut p = env.provision(&server2);
    p.secret = write_secret(env.dir.path(), "other.secret", 0x11);
    assert_fails_with(&p.run(), "wrong db_secret");
    let mut p = env.provision(&server2);
    p.redis = format!("redis://127.0.0.1:{}", free_port());
    assert_fails_with(&p.run(), "Redis does not answer");
    // Still waiting: the right configuration goes through.
    assert_ok(
        &env.provision(&server2).run(),
        "bootstrap start after refusals",
    );
}

#[test]
fn only_the_pinned_provisioner_may_provision() {
    let env = Env::new();
    let provisioner = env.pki.client("provisioner");
    env.pki.client("mallory");
    let server = Server::start(&env.emu, &["--provisioner-spki-sha256", &provisioner]);
    for client in [None, Some("mallory")] {
        let mut p = env.provision(&server);
        p.client = client;
        assert_fails_with(
            &p.run(),
            "provisioning is restricted: the client certificate is not the provisioner's",
        );
    }
    let mut p = env.provision(&server);
    p.client = Some("provisioner");
    // The final verify talks to the KMS as `provisioner` (a certificate of the client CA too).
    assert_ok(&p.run(), "bootstrap start as the provisioner");
}

/// Issue 12 #1: without a pin, `POST /client-ca` without a client certificate answered 200 (anyone on the
/// network could add their own user CA). It is refused and changes nothing.
#[test]
fn unauthenticated_client_ca_is_refused_without_pin() {
    let env = Env::new();
    let server = Server::start(&env.emu, &[]);
    let (mut anonymous, _) = pinned(&env, &server, None);
    let ca = std::fs::read_to_string(env.pki.path("ca.pem")).expect("ca");
    let body = serde_json::json!({"ca_pem": ca}).to_string();
    let r = anonymous.post("/client-ca", body.as_bytes()).expect("post");
    assert_eq!(
        (r.status, error_of(&r)),
        (
            403,
            "provisioning needs a TLS client certificate: the first client key that provisions \
             this server is locked in for the bootstrap session"
                .to_owned()
        )
    );
    // Nothing was set and nothing locked: the admin provisions normally.
    assert_ok(
        &env.provision(&server).run(),
        "bootstrap start after the refusal",
    );
}

/// Issue 12 #1, the race: an attacker posting between the admin's steps is refused (the session is locked to
/// the admin's key), and the admin's run completes with the admin's values.
#[test]
fn attacker_between_the_admins_steps_is_refused() {
    let env = Env::new();
    env.pki.client("mallory");
    let server = Server::start(&env.emu, &[]);
    // The admin's first step (its own client CA) locks the session to the admin's key.
    let (mut admin, _) = pinned(&env, &server, Some("admin"));
    let ca = std::fs::read_to_string(env.pki.path("ca.pem")).expect("ca");
    let r = admin
        .post(
            "/client-ca",
            serde_json::json!({"ca_pem": ca}).to_string().as_bytes(),
        )
        .expect("post");
    assert_eq!(r.status, 200, "{}", r.text());
    // Mallory, between the admin's steps: her own user CA, her own Redis, /start. All refused.
    let (mut mallory, _) = pinned(&env, &server, Some("mallory"));
    let other_ca = testkit::Pki::new("Mallory CA");
    let evil_ca = serde_json::json!({"ca_pem": other_ca.ca().pem}).to_string();
    let evil_db = serde_json::json!({"url": "redis://127.0.0.1:1", "db_secret": Base64::encode_string(&[1u8; 32])})
        .to_string();
    for (path, body) in [
        ("/client-ca", evil_ca.as_str()),
        ("/redis-findex", evil_db.as_str()),
        ("/start", "{}"),
    ] {
        let r = mallory.post(path, body.as_bytes()).expect("post");
        assert_eq!(r.status, 403, "{path}: {}", r.text());
        assert!(
            error_of(&r).starts_with(LOCKED_TO_ANOTHER),
            "{path}: {}",
            r.text()
        );
    }
    // The admin's run continues (its client CA, set above, is kept) and the KMS starts.
    let out = env.provision(&server).run();
    assert_ok(&out, "bootstrap start as the admin");
    assert!(
        stdout(&out).contains("client CA already set in this bootstrap session by this client key"),
        "{}",
        stdout(&out)
    );
}

/// Issue 12 #1, the restart: the host restarts the server (same image, same key, fresh bootstrap session) and
/// someone else provisions first. The first provisioner wins, and the admin's `ckms bootstrap start` says so
/// loudly instead of provisioning a server that trusts another party.
#[test]
fn after_a_restart_the_first_provisioner_wins_and_ckms_says_so() {
    let env = Env::new();
    env.pki.client("mallory");
    let server = Server::start(&env.emu, &[]);
    assert_ok(&env.provision(&server).run(), "first provisioning");
    drop(server);
    // The same VM restarted (same image, same chip: same bootstrap key).
    let emu2 = Emu::start(env.dir.path(), "vm1-restarted", CMDLINE, None);
    let restarted = Server::start(&emu2, &[]);
    let (mut mallory, _) = pinned(&env, &restarted, Some("mallory"));
    let r = mallory.post("/start", b"{}").expect("post");
    assert_eq!(r.status, 409, "not ready, but the session is now Mallory's");
    let out = env.provision(&restarted).run();
    assert_fails_with(&out, "WARNING: SOMEONE ELSE IS PROVISIONING THIS SERVER");
    assert_fails_with(&out, LOCKED_TO_ANOTHER);
    assert_fails_with(&out, "DO NOT TRUST THIS SERVER");
    // Without a configured client key, ckms provisions with an ephemeral one and detects it the same way.
    let mut p = env.provision(&restarted);
    p.client = None;
    let out = p.run();
    assert_fails_with(&out, "ephemeral (this run only) client key sha256:");
    assert_fails_with(&out, "WARNING: SOMEONE ELSE IS PROVISIONING THIS SERVER");
}

#[test]
fn replayed_attestation_is_refused() {
    let env = Env::new();
    let server = Server::start(&env.emu, &[]);
    let (mut http, attested) = pinned(&env, &server, None);
    let exp = ckms::verify::Expectation {
        measurement: Some(hex48(&env.emu.measurement)),
        tdx: None,
        trust_root: Some(std::fs::read(&env.ark).expect("ark")),
        policy: Default::default(),
        extra: Default::default(),
    };
    let old_nonce = [7u8; 32];
    ckms::verify::fresh_attestation(&mut http, &attested.public_key, &old_nonce, &exp)
        .expect("first answer verifies");
    // The same (genuine) answer replayed to a verifier that asked with another nonce.
    let r = http
        .get(&format!("/attestation?nonce={}", "07".repeat(32)))
        .expect("get");
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    let quote = Base64::decode_vec(v["quote"].as_str().expect("quote")).expect("b64");
    let new_nonce = [8u8; 32];
    let err = ckms::verify::verify_quote(
        &quote,
        &attested.public_key,
        &new_nonce,
        &exp,
        "/attestation",
    )
    .expect_err("replay must fail");
    assert!(err.to_string().contains("stale or replayed"), "{err}");
}

/// `ckms verify` against an API port and an RA-TLS port of another server (same image, another chip): both
/// quotes verify, but the keys differ.
#[test]
fn two_ports_with_different_keys_fail_verify() {
    let env = Env::new();
    let server = Server::start(&env.emu, &[]);
    assert_ok(&env.provision(&server).run(), "bootstrap start");
    let chip_b = env.dir.path().join("chip-b.secret");
    std::fs::write(&chip_b, b"another chip").expect("write");
    let emu_b = Emu::start(env.dir.path(), "vm-b", CMDLINE, Some(&chip_b));
    assert_eq!(emu_b.measurement, env.emu.measurement);
    let other = Server::start(&emu_b, &[]);
    let out = ckms(&[
        "--url",
        &server.url(),
        "--ca-cert",
        &s(&env.pki.path("ca.pem")),
        "--client-cert",
        &s(&env.pki.path("admin.pem")),
        "--client-key",
        &s(&env.pki.path("admin.key")),
        "verify",
        "--ra-tls-url",
        &other.ratls_url(),
        "--expected-measurement",
        &env.emu.measurement,
        "--trust-root",
        &s(&env.ark),
    ]);
    assert_fails_with(
        &out,
        "the RA-TLS certificate and the API certificate carry different public keys",
    );

    // A connection pinned to the first server's attested key refuses the second server outright.
    let exp = ckms::verify::Expectation {
        measurement: Some(hex48(&env.emu.measurement)),
        tdx: None,
        trust_root: Some(std::fs::read(&env.ark).expect("ark")),
        policy: Default::default(),
        extra: Default::default(),
    };
    let cert = ckms::verify::capture_certificate(&server.ratls_url()).expect("capture");
    let attested =
        ckms::verify::attest_certificate(&cert, &exp, "RA-TLS certificate").expect("attest");
    let mut same =
        ckms::verify::pinned_client(&server.ratls_url(), &attested.spki_der, None).expect("client");
    let r = same
        .get(&format!("/attestation?nonce={}", "11".repeat(32)))
        .expect("same key is accepted");
    assert_eq!(r.status, 200);
    let mut http =
        ckms::verify::pinned_client(&other.ratls_url(), &attested.spki_der, None).expect("client");
    let err = http
        .get("/attestation")
        .expect_err("pinned key must refuse another key");
    assert!(err.to_string().contains("not the attested key"), "{err}");
    drop(other.guard);
}

/// With `--include-quote` the API certificate is itself an RA-TLS certificate: `verify` needs no RA-TLS port,
/// and the server closes it at `/start`.
#[test]
fn api_certificate_with_quote_closes_the_ratls_port() {
    let env = Env::new();
    let server = Server::start(&env.emu, &[]);
    let mut args = env.provision(&server).args();
    let i = args.iter().position(|a| a == "--ra-tls-url").expect("flag");
    args.drain(i..i + 2);
    args.push("--include-quote".into());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = ckms(&refs);
    assert_ok(&out, "bootstrap start --include-quote");
    let text = stdout(&out);
    assert!(text.contains("quote inside: true"), "{text}");
    assert!(text.contains("[ok] quote in the API certificate"), "{text}");
    let refused =
        TcpStream::connect(("127.0.0.1", server.ratls)).expect_err("RA-TLS port must be closed");
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
}

/// External CA in two steps: `--csr-out`, the CA signs, `--cert-in`.
#[test]
fn two_step_csr_flow_with_an_external_ca() {
    let env = Env::new();
    let server = Server::start(&env.emu, &[]);
    let csr = env.dir.path().join("kms.csr");
    let out = ckms(&[
        "--url",
        &server.url(),
        "bootstrap",
        "start",
        "--expected-measurement",
        &env.emu.measurement,
        "--trust-root",
        &s(&env.ark),
        "--subject",
        "CN=kms.test",
        "--ip",
        "127.0.0.1",
        "--csr-out",
        &s(&csr),
    ]);
    assert_ok(&out, "bootstrap start --csr-out");
    // The "external" CA: same P-256 CA, signing outside the bootstrap run.
    let chain = ckms::bootstrap::sign_csr(
        &std::fs::read_to_string(&csr).expect("csr"),
        &std::fs::read(env.pki.path("ca.pem")).expect("ca"),
        &std::fs::read(env.pki.path("ca.key")).expect("key"),
        30,
    )
    .expect("sign");
    let chain_path = env.dir.path().join("chain.pem");
    std::fs::write(&chain_path, chain).expect("write");
    let mut args = env.provision(&server).args();
    let i = args.iter().position(|a| a == "--subject").expect("flag");
    args.drain(i..i + 6); // --subject … --ip … --ca-key …
    args.extend(["--cert-in".to_owned(), s(&chain_path)]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = ckms(&refs);
    assert_ok(&out, "bootstrap start --cert-in");
    assert!(stdout(&out).contains("verified"), "{}", stdout(&out));
}

/// `--attestation none`: the server runs (random key, loud warning) but nothing can attest it, so `ckms`
/// sends it nothing.
#[test]
fn server_without_attestation_is_not_provisioned() {
    let env = Env::new();
    let mut child = Command::new(bin("kms-server"))
        .args([
            "--bootstrap",
            "--attestation",
            "none",
            "--bootstrap-port",
            "0",
            "--ratls-port",
            "0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kms-server");
    let mut stderr_pipe = child.stderr.take().expect("stderr");
    let mut guard = ChildGuard::new(child);
    let mut lines = guard.stdout_lines();
    let addr = wait_line(
        &mut lines,
        "kms-server bootstrap listening on ",
        "kms-server",
    );
    let ratls = wait_line(&mut lines, "kms-server ra-tls listening on ", "kms-server");
    let mut p = env.provision_url(format!("https://{addr}"), format!("https://{ratls}"));
    p.client = None;
    let args = p.args();
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_fails_with(&ckms(&refs), "the certificate carries no RA-TLS quote");
    drop(guard);
    let mut warning = String::new();
    stderr_pipe.read_to_string(&mut warning).expect("stderr");
    assert!(
        warning.contains("WARNING: --attestation none: NO ATTESTATION"),
        "{warning}"
    );
}
