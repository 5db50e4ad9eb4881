//! `kms-server --bootstrap`: the zero-trust start. The server comes up with nothing but its platform: it
//! derives its key from the platform's measurement-bound key, serves the bootstrap API
//! ([`kms::bootstrap`]) over RA-TLS, and, after `POST /start`, serves the KMS on the same port with the
//! provisioned API certificate, Redis-with-Findex store and client CA.
//!
//! This module provides the platform to the sans-IO core: the `snp-emu` unix socket (the emulated
//! platform, [`EmulatedEvidence`]) or none, and the Redis check ([`OpenerProbe`]).
//!
//! Ports:
//! - `--bootstrap-port` (9998): the bootstrap API with the bootstrap certificate; after `/start` the KMS with
//!   the API certificate (plus `GET /attestation`). Bootstrap endpoints then answer 404 on new connections;
//!   connections opened before `/start` get 503 and are closed.
//! - `--ratls-port` (9999): the bootstrap certificate and `GET /attestation` only. It is open from the start
//!   and closed at `/start` when the API certificate itself carries a quote.
//! - `--kmip-port` (optional; 5696 when given alone): binary TTLV KMIP with the API certificate and client
//!   CA, once the KMS serves; connections before `/start` are closed at once.
//!
//! Modules: [`platform`] (snp-emu, none, Redis check); this file holds the options and start-up. The
//! phases, TLS and routes are the core's [`kms::app::App`]; [`crate::serve`] moves the bytes.

pub mod platform;

use std::fmt;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use kms::app::{App, Platform};
use kms::bootstrap::platform::Evidence;
use kms::bootstrap::{Identity, ProvisionerPolicy};
use zeroize::Zeroize;

pub use platform::{EmulatedEvidence, NoEvidence, OpenerProbe, RedisOpener, StoreOpener};

use crate::serve::{ConnectionArgs, serve_with_kmip, unix_now};

/// Where attestation evidence comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttestationSource {
    /// `snp-emu` at this unix socket (see `docs/snp-emu.md`).
    Emulated(PathBuf),
    /// No platform: random key, no quote (development only).
    None,
}

impl FromStr for AttestationSource {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            Some(("emulated", path)) if !path.is_empty() => {
                Ok(AttestationSource::Emulated(PathBuf::from(path)))
            }
            _ if s == "none" => Ok(AttestationSource::None),
            _ => Err(format!("expected emulated:SOCKET or none, got {s:?}")),
        }
    }
}

/// Options of `kms-server --bootstrap`.
#[derive(clap::Parser, Debug, Clone)]
#[command(
    name = "kms-server --bootstrap",
    about = "Start in bootstrap mode: attest, get provisioned over RA-TLS, then serve the KMS",
    long_about = "Start in bootstrap mode (zero-trust workflow, docs/operations.md).\n\n\
The server derives its key pair from the platform's measurement-bound key, serves the bootstrap API \
(GET /attestation, POST /csr, /certificate, /redis-findex, /client-ca, /start) over RA-TLS on \
--bootstrap-port, and after /start serves the KMS on the same port.\n\n\
Ready lines on stdout: `kms-server bootstrap listening on ADDR`, `kms-server ra-tls listening on ADDR`, \
then after /start `kms-server started: KMS listening on ADDR`."
)]
pub struct BootstrapArgs {
    /// Bootstrap mode (this parser is used only when it is present).
    #[arg(long, required = true)]
    pub bootstrap: bool,
    /// Attestation platform: `emulated:SOCKET` (snp-emu) or `none` (random key, no quote: development only).
    #[arg(long, value_name = "emulated:SOCKET|none")]
    pub attestation: AttestationSource,
    /// Port of the bootstrap API, then of the KMS (0 picks a free port).
    #[arg(long, default_value_t = 9998)]
    pub bootstrap_port: u16,
    /// Port serving the bootstrap certificate and GET /attestation (0 picks a free port).
    #[arg(long, default_value_t = 9999)]
    pub ratls_port: u16,
    /// Also serve KMIP in binary TTLV on this port once the KMS serves (after /start), with the
    /// API certificate and client CA: `--kmip-port` alone is 5696; 0 picks a free port.
    #[arg(long, value_name = "PORT", num_args = 0..=1, default_missing_value = "5696")]
    pub kmip_port: Option<u16>,
    /// Address to listen on.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub bind: IpAddr,
    /// Only a TLS client whose certificate's SubjectPublicKeyInfo has this SHA-256 (hex) may provision.
    #[arg(long, value_name = "HEX")]
    pub provisioner_spki_sha256: Option<String>,
    /// Request, connection and timeout limits.
    #[command(flatten)]
    pub connections: ConnectionArgs,
}

/// Why bootstrap mode could not start.
#[derive(Debug)]
pub enum BootstrapStartError {
    /// The platform (snp-emu) could not be reached or answered badly.
    Platform(String),
    /// Key, certificate or option problem.
    Config(String),
    /// TLS configuration.
    Tls(String),
    /// Sockets.
    Io(io::Error),
}

impl fmt::Display for BootstrapStartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootstrapStartError::Platform(m) => write!(f, "attestation platform: {m}"),
            BootstrapStartError::Config(m) => write!(f, "bootstrap: {m}"),
            BootstrapStartError::Tls(m) => write!(f, "TLS: {m}"),
            BootstrapStartError::Io(e) => write!(f, "network: {e}"),
        }
    }
}

impl std::error::Error for BootstrapStartError {}

/// Starts bootstrap mode with the real platform and Redis store, and serves until a fatal error.
pub fn run(args: BootstrapArgs) -> Result<(), BootstrapStartError> {
    run_with(args, Arc::new(RedisOpener))
}

/// [`run`] with another way to open the store (the seam the `/redis-findex` check and `/start` share).
pub fn run_with(
    args: BootstrapArgs,
    opener: Arc<dyn StoreOpener>,
) -> Result<(), BootstrapStartError> {
    let mut evidence: Box<dyn Evidence + Send> = match &args.attestation {
        AttestationSource::Emulated(path) => {
            Box::new(EmulatedEvidence::connect(path).map_err(BootstrapStartError::Platform)?)
        }
        AttestationSource::None => {
            eprintln!(
                "\n************************************************************************\n\
                 * WARNING: --attestation none: NO ATTESTATION. The key pair is random, *\n\
                 * the certificates carry no quote, and nobody can verify this server. *\n\
                 * Development only.                                                    *\n\
                 ************************************************************************\n"
            );
            Box::new(NoEvidence)
        }
    };
    let policy = match &args.provisioner_spki_sha256 {
        Some(hex) => ProvisionerPolicy::pinned_from_hex(hex)
            .map_err(|e| BootstrapStartError::Config(e.to_string()))?,
        None => ProvisionerPolicy::Open,
    };
    let mut random = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random)
        .map_err(|_| BootstrapStartError::Config("no OS randomness".into()))?;
    let identity = Identity::create(evidence.as_mut(), random, unix_now())
        .map_err(|e| BootstrapStartError::Platform(e.to_string()))?;
    random.zeroize();
    let identity = Arc::new(identity);
    eprintln!(
        "kms-server: bootstrap key from {} (public key SHA-256 {})",
        match identity.sk_origin() {
            kms::bootstrap::keys::SkOrigin::PlatformDerived =>
                "the platform's measurement-bound key",
            kms::bootstrap::keys::SkOrigin::Random => "the RNG (not stable across restarts)",
        },
        base16ct::lower::encode_string(&identity.key().public_key_hash()),
    );
    let config = args.connections.app_config();
    let platform = Platform {
        evidence,
        probe: Box::new(OpenerProbe(opener.clone())),
    };
    let app = App::bootstrap(identity, policy, platform, config)
        .map_err(|e| BootstrapStartError::Tls(e.to_string()))?;

    let main = TcpListener::bind(SocketAddr::new(args.bind, args.bootstrap_port))
        .map_err(BootstrapStartError::Io)?;
    let ratls = TcpListener::bind(SocketAddr::new(args.bind, args.ratls_port))
        .map_err(BootstrapStartError::Io)?;
    let main_addr = main.local_addr().map_err(BootstrapStartError::Io)?;
    let ratls_addr = ratls.local_addr().map_err(BootstrapStartError::Io)?;
    let kmip = match args.kmip_port {
        Some(port) => Some(
            TcpListener::bind(SocketAddr::new(args.bind, port)).map_err(BootstrapStartError::Io)?,
        ),
        None => None,
    };
    let mut stdout = io::stdout();
    writeln!(stdout, "kms-server bootstrap listening on {main_addr}")
        .and_then(|()| writeln!(stdout, "kms-server ra-tls listening on {ratls_addr}"))
        .map_err(BootstrapStartError::Io)?;
    if let Some(k) = &kmip {
        let addr = k.local_addr().map_err(BootstrapStartError::Io)?;
        writeln!(stdout, "kms-server KMIP listening on {addr} (after /start)")
            .map_err(BootstrapStartError::Io)?;
    }
    stdout.flush().map_err(BootstrapStartError::Io)?;
    let options = args.connections.serve_options();
    serve_with_kmip(
        Arc::new(app),
        main,
        Some(ratls),
        kmip,
        Some(opener),
        options,
    )
    .map_err(BootstrapStartError::Io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attestation_source_parses() {
        assert_eq!(
            "none".parse::<AttestationSource>(),
            Ok(AttestationSource::None)
        );
        assert_eq!(
            "emulated:/run/snp.sock".parse::<AttestationSource>(),
            Ok(AttestationSource::Emulated(PathBuf::from("/run/snp.sock")))
        );
        for bad in ["emulated:", "snp", "", "emulated"] {
            // The error type is a `String` (clap's value parser shows it): compare the message.
            assert_eq!(
                bad.parse::<AttestationSource>(),
                Err(format!("expected emulated:SOCKET or none, got {bad:?}"))
            );
        }
    }
}
