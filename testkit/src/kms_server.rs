//! A `kms-server` on 127.0.0.1 with the in-memory store and mTLS, for tests and benchmarks that
//! need a running server but not a database (the conformance runner, the encoding benchmark).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::{CertFiles, ChildGuard, Pki, drain_lines, free_port, wait_line, workspace_bin};

/// A running `kms-server --database memory` with its HTTPS and binary KMIP ports; killed (by
/// PID) when dropped.
pub struct MemoryKmsServer {
    /// The HTTPS port (JSON TTLV, `POST /kmip/2_1`) on 127.0.0.1.
    pub port: u16,
    /// The binary KMIP port's address.
    pub kmip_addr: SocketAddr,
    /// The CA of the server certificate and of the client certificates (PEM).
    pub ca_cert: std::path::PathBuf,
    /// A client certificate and key issued by that CA (the user `user`).
    pub client: CertFiles,
    _child: ChildGuard,
}

impl MemoryKmsServer {
    /// Write a PKI into `dir` (CA, server certificate for 127.0.0.1, a client certificate with
    /// CN `user`) and start the workspace's `kms-server` binary on free ports.
    pub fn start(dir: &Path, user: &str) -> MemoryKmsServer {
        let pki = Pki::new("kms-server test CA");
        let ca = pki.ca().write(dir, "ca");
        let server = pki.server("127.0.0.1", &["127.0.0.1"]).write(dir, "server");
        let client = pki.client(Some(user)).write(dir, "client");
        let port = free_port();
        let mut child = ChildGuard::spawn(
            Command::new(workspace_bin("kms-server"))
                .args(["--database", "memory", "--port", &port.to_string()])
                .args(["--kmip-port", "0"])
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
        let kmip = wait_line(&mut lines, "kms-server KMIP listening on ", "kms-server");
        let kmip_addr = match kmip.trim().parse() {
            Ok(a) => a,
            Err(e) => panic!("kms-server's KMIP ready line {kmip:?}: {e}"),
        };
        drain_lines(lines);
        MemoryKmsServer {
            port,
            kmip_addr,
            ca_cert: ca.cert,
            client,
            _child: child,
        }
    }
}
