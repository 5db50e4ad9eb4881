//! Test harness: a PKI, a `kms-server` child process on a free loopback port (or an external
//! server, e.g. the unikernel under QEMU: [`Harness::external`]), HTTPS clients and the `ckms`
//! binary, plus the KMIP suite ([`suite`]) that any `--database` can be run against. The
//! image's VM test includes this module by path (`image/tests/kms_image.rs`).
#![allow(dead_code)] // Each test binary uses a different part of the harness.

pub mod crypto_suite;
pub mod pki;
pub mod suite;

use std::collections::HashMap;
use std::io::{BufReader, Lines};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{ChildStdout, Command, Stdio};

use ckms::http::{ClientIdentity, HttpClient, HttpResponse, client_config, load_certs};
use pki::{CertFiles, Pki};
use testkit::{ChildGuard, wait_line};

/// A running `kms-server`, killed on drop; or an external server (not ours to stop).
pub struct ServerProcess {
    child: Option<ChildGuard>,
    _stdout: Option<Lines<BufReader<ChildStdout>>>,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Where its KMIP port (binary TTLV) listens, when started with `--kmip-port`.
    pub kmip_addr: Option<SocketAddr>,
}

impl ServerProcess {
    /// Start `kms-server` with `args` plus `--port 0`; wait for its ready line.
    pub fn start(args: &[String]) -> ServerProcess {
        let bin = option_env!("CARGO_BIN_EXE_kms-server")
            .map(PathBuf::from)
            .unwrap_or_else(|| sibling_binary("kms-server"));
        let mut child = ChildGuard::spawn(
            Command::new(bin)
                .args(args)
                .args(["--port", "0", "--bind", "127.0.0.1"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit()),
            "kms-server",
        );
        let mut stdout = child.stdout_lines();
        let addr = wait_line(&mut stdout, "kms-server listening on ", "kms-server")
            .parse()
            .expect("address in the ready line");
        let kmip_addr = args.iter().any(|a| a == "--kmip-port").then(|| {
            wait_line(&mut stdout, "kms-server KMIP listening on ", "kms-server")
                .parse()
                .expect("address in the KMIP ready line")
        });
        ServerProcess {
            child: Some(child),
            _stdout: Some(stdout),
            addr,
            kmip_addr,
        }
    }

    /// A server started elsewhere, listening on `addr`.
    pub fn external(addr: SocketAddr) -> ServerProcess {
        ServerProcess {
            child: None,
            _stdout: None,
            addr,
            kmip_addr: None,
        }
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Whether the process is still running (external: whether it accepts connections).
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => TcpStream::connect(self.addr).is_ok(),
        }
    }
}

/// The `ckms` binary, built next to this test executable (`cargo build -p ckms` first).
pub fn ckms_binary() -> PathBuf {
    sibling_binary("ckms")
}

/// A workspace binary next to this test executable (`cargo build --workspace --bins` first).
pub fn sibling_binary(name: &str) -> PathBuf {
    testkit::workspace_bin(name)
}

/// Result of one `ckms` run.
#[derive(Debug)]
pub struct CkmsRun {
    /// Exit success.
    pub ok: bool,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl CkmsRun {
    /// Stdout, asserting success.
    pub fn expect_ok(self, what: &str) -> String {
        assert!(self.ok, "ckms {what} failed: {}", self.stderr);
        self.stdout
    }
    /// Stdout parsed as JSON, asserting success.
    pub fn json(self, what: &str) -> serde_json::Value {
        let out = self.expect_ok(what);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("ckms {what}: not JSON ({e}): {out}"))
    }
    /// Stderr, asserting failure.
    pub fn expect_err(self, what: &str) -> String {
        assert!(!self.ok, "ckms {what} should have failed: {}", self.stdout);
        assert!(
            !self.stderr.trim().is_empty(),
            "ckms {what}: no error message"
        );
        self.stderr
    }
}

/// A PKI, a server and the users' client certificates.
pub struct Harness {
    /// The temp dir holding certificates and files of the test.
    pub dir: tempfile::TempDir,
    /// The PKI the server trusts.
    pub pki: Pki,
    /// The server.
    pub server: ServerProcess,
    users: HashMap<String, CertFiles>,
}

impl Harness {
    /// Start a server with mTLS (`--client-ca`) and `extra_args` (e.g. `--database ...`).
    pub fn start(extra_args: &[&str]) -> Harness {
        let dir = tempfile::tempdir().expect("temp dir");
        let pki = Pki::new(dir.path(), "test");
        let mut args: Vec<String> = vec![
            "--tls-cert".into(),
            pki.server.cert.display().to_string(),
            "--tls-key".into(),
            pki.server.key.display().to_string(),
            "--client-ca".into(),
            pki.ca_cert.display().to_string(),
        ];
        args.extend(extra_args.iter().map(|s| s.to_string()));
        let server = ServerProcess::start(&args);
        Harness {
            dir,
            pki,
            server,
            users: HashMap::new(),
        }
    }

    /// A harness around a server started elsewhere at `addr` whose certificate chains to
    /// `pki`'s CA and which trusts `pki`'s CA for client certificates.
    pub fn external(dir: tempfile::TempDir, pki: Pki, addr: SocketAddr) -> Harness {
        Harness {
            dir,
            pki,
            server: ServerProcess::external(addr),
            users: HashMap::new(),
        }
    }

    /// The certificate files of `user` (issued on first use).
    pub fn user(&mut self, user: &str) -> CertFiles {
        if let Some(f) = self.users.get(user) {
            return f.clone();
        }
        let f = self.pki.client(Some(user));
        self.users.insert(user.to_owned(), f.clone());
        f
    }

    /// An HTTPS client authenticated as `user`.
    pub fn client(&mut self, user: &str) -> HttpClient {
        let files = self.user(user);
        client_for(&self.server.url(), &self.pki.ca_cert, Some(&files))
    }

    /// Run `ckms` as `user` with `args`.
    pub fn ckms(&mut self, user: &str, args: &[&str]) -> CkmsRun {
        let files = self.user(user);
        let out = Command::new(ckms_binary())
            .args(["--url", &self.server.url()])
            .arg("--ca-cert")
            .arg(&self.pki.ca_cert)
            .arg("--client-cert")
            .arg(&files.cert)
            .arg("--client-key")
            .arg(&files.key)
            .args(args)
            .env_remove("CKMS_CONF")
            .env("HOME", self.dir.path())
            .current_dir(self.dir.path())
            .output()
            .expect("run ckms");
        CkmsRun {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Run `ckms` with only `args` and `envs` (no connection flags): for configuration tests.
    pub fn ckms_bare(&self, args: &[&str], envs: &[(&str, &std::path::Path)]) -> CkmsRun {
        let mut cmd = Command::new(ckms_binary());
        cmd.args(args)
            .env_remove("CKMS_CONF")
            .env("HOME", self.dir.path())
            .current_dir(self.dir.path());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run ckms");
        CkmsRun {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// A path in the test's temp dir.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// An HTTPS client for `url` trusting `ca`, with an optional client certificate.
pub fn client_for(url: &str, ca: &std::path::Path, files: Option<&CertFiles>) -> HttpClient {
    let identity =
        files.map(|f| ClientIdentity::from_pem_files(&f.cert, &f.key).expect("client identity"));
    let tls = client_config(load_certs(ca).expect("CA"), identity).expect("TLS config");
    HttpClient::new(url, tls).expect("client")
}

/// `POST /kmip/2_1` with a JSON text body.
pub fn kmip(client: &mut HttpClient, body: &str) -> HttpResponse {
    client
        .post("/kmip/2_1", body.as_bytes())
        .expect("KMIP request")
}

/// Parse a 200 response as JSON, or panic with the status and message.
pub fn ok_json(r: HttpResponse, what: &str) -> serde_json::Value {
    assert_eq!(r.status, 200, "{what}: {}", r.text());
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{what}: invalid JSON: {e}"))
}
