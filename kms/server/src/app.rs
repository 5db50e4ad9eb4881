//! Command-line options and start-up of the host server.

use std::fmt;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;

use kms::app::{App, ServerTls};

use crate::serve::{ConnectionArgs, serve_with_kmip};
use crate::store::{DatabaseArgs, OpenStoreError, open_store};
use crate::tls::{TlsFileError, load_certs, load_key};

/// The user every request runs as under `--insecure-no-auth`.
pub const INSECURE_USER: &str = "admin";

/// Options of `kms-server`.
#[derive(clap::Parser, Debug, Clone)]
#[command(
    name = "kms-server",
    version,
    about = "KMIP 2.1 (JSON TTLV, Cosmian dialect; binary TTLV) key management server over HTTPS",
    long_about = "KMIP 2.1 (JSON TTLV, Cosmian dialect; binary TTLV) key management server over HTTPS, \
and binary TTLV on the KMIP port (--kmip-port).\n\n\
TLS is always on. Clients authenticate with a certificate issued by --client-ca; the subject CN of \
that certificate is the user identity (owner of the objects it creates, subject of access rights).\n\n\
Examples:\n  \
kms-server --tls-cert server.pem --tls-key server.key --client-ca ca.pem --port 9998\n  \
kms-server --tls-cert server.pem --tls-key server.key --insecure-no-auth   # development only\n\n\
On start it prints one line to stdout: `kms-server listening on <ip>:<port>`.\n\n\
Zero-trust mode: `kms-server --bootstrap --attestation emulated:SOCKET|none ...` starts with no key, no \
certificate and no database; an administrator attests and provisions it with `ckms bootstrap start` \
(see `kms-server --bootstrap --help` and docs/operations.md).",
    group(clap::ArgGroup::new("auth").required(true).args(["client_ca", "insecure_no_auth"]))
)]
pub struct ServerArgs {
    /// TCP port (0 picks a free port; the ready line tells which).
    #[arg(long, default_value_t = 9998)]
    pub port: u16,
    /// Also serve KMIP in binary TTLV (no HTTP) on this TCP port, with the same TLS identity,
    /// client authentication and access rights: `--kmip-port` alone is the KMIP port, 5696; 0
    /// picks a free port (a second ready line tells which). Absent: no KMIP port.
    #[arg(long, value_name = "PORT", num_args = 0..=1, default_missing_value = "5696")]
    pub kmip_port: Option<u16>,
    /// Address to listen on.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub bind: IpAddr,
    /// Server certificate chain (PEM).
    #[arg(long, value_name = "PEM")]
    pub tls_cert: PathBuf,
    /// Server private key (PEM: PKCS#8, SEC1 or PKCS#1).
    #[arg(long, value_name = "PEM")]
    pub tls_key: PathBuf,
    /// CA certificate(s) (PEM) that issue client certificates: enables mandatory mTLS.
    #[arg(long, value_name = "PEM")]
    pub client_ca: Option<PathBuf>,
    /// DEVELOPMENT ONLY: no client authentication, every request runs as `admin`.
    #[arg(long)]
    pub insecure_no_auth: bool,
    /// Storage backend and its options.
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Request, connection and timeout limits.
    #[command(flatten)]
    pub connections: ConnectionArgs,
}

/// Why the server could not start.
#[derive(Debug)]
pub enum StartError {
    /// TLS material.
    TlsFiles(TlsFileError),
    /// TLS configuration refused.
    Tls(kms::app::AppError),
    /// Store could not be opened.
    Store(OpenStoreError),
    /// Binding or serving the socket.
    Io(std::io::Error),
    /// The TLS session-ticket key could not be generated.
    Ticketer(rustls::Error),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::TlsFiles(e) => write!(f, "TLS: {e}"),
            StartError::Tls(e) => write!(f, "TLS: {e}"),
            StartError::Store(e) => write!(f, "{e}"),
            StartError::Io(e) => write!(f, "network: {e}"),
            StartError::Ticketer(e) => write!(f, "TLS session tickets: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// Start the server described by `args` and serve until a fatal error.
pub fn run(args: ServerArgs) -> Result<(), StartError> {
    let chain = load_certs(&args.tls_cert).map_err(StartError::TlsFiles)?;
    let key = load_key(&args.tls_key).map_err(StartError::TlsFiles)?;
    let client_ca = match &args.client_ca {
        Some(p) => Some(load_certs(p).map_err(StartError::TlsFiles)?),
        None => None,
    };
    let fixed_user = if args.insecure_no_auth {
        eprintln!(
            "\n************************************************************************\n\
             * WARNING: --insecure-no-auth: clients are NOT authenticated.          *\n\
             * Every request runs as user `{INSECURE_USER}`. Never use this in production. *\n\
             ************************************************************************\n"
        );
        Some(INSECURE_USER.to_owned())
    } else {
        None
    };
    let store = open_store(&args.database).map_err(StartError::Store)?;
    let config = args.connections.app_config();
    let tls = ServerTls {
        chain,
        key,
        client_ca,
        fixed_user,
    };
    // Reconnecting clients resume their TLS session (stateless tickets, keys in memory).
    let ticketer = rustls::crypto::ring::Ticketer::new().map_err(StartError::Ticketer)?;
    let app = App::serving(store, tls, config).map_err(StartError::Tls)?;
    let app = Arc::new(app.with_session_tickets(ticketer));
    let listener =
        TcpListener::bind(SocketAddr::new(args.bind, args.port)).map_err(StartError::Io)?;
    let local = listener.local_addr().map_err(StartError::Io)?;
    let kmip = match args.kmip_port {
        Some(port) => {
            Some(TcpListener::bind(SocketAddr::new(args.bind, port)).map_err(StartError::Io)?)
        }
        None => None,
    };
    // The machine-readable ready lines: scripts and tests wait for them.
    let mut stdout = std::io::stdout();
    writeln!(stdout, "kms-server listening on {local}").map_err(StartError::Io)?;
    if let Some(k) = &kmip {
        let addr = k.local_addr().map_err(StartError::Io)?;
        writeln!(stdout, "kms-server KMIP listening on {addr}").map_err(StartError::Io)?;
    }
    stdout.flush().map_err(StartError::Io)?;
    let options = args.connections.serve_options();
    serve_with_kmip(app, listener, None, kmip, None, options).map_err(StartError::Io)
}
