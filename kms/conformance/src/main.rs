//! `kmip-conformance`: run the OASIS KMIP test cases against a server and print one line per
//! case and a summary.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use kmip_conformance::{BinaryKmip, JsonHttps, Transport, load_dir, mandatory_2_1, run_case};

/// Replays the OASIS KMIP 2.1 mandatory test cases (vendored in the repo) against a KMS over
/// HTTPS (JSON TTLV) or the KMIP port (binary TTLV) with mutual TLS, and compares every
/// response with the expected one (tolerances: see the crate docs). Prints `PASS name` or
/// `FAIL name step N: reason`, then a summary.
#[derive(Parser)]
struct Args {
    /// Server URL, e.g. https://127.0.0.1:9998 (JSON TTLV, `POST /kmip/2_1`).
    #[arg(
        long,
        required_unless_present = "kmip_addr",
        conflicts_with = "kmip_addr"
    )]
    url: Option<String>,
    /// KMIP port address, e.g. 127.0.0.1:5696 (binary TTLV) instead of --url.
    #[arg(long)]
    kmip_addr: Option<std::net::SocketAddr>,
    /// CA certificate (PEM) that signed the server's certificate.
    #[arg(long)]
    ca_cert: PathBuf,
    /// Client certificate (PEM).
    #[arg(long)]
    client_cert: PathBuf,
    /// Client private key (PEM).
    #[arg(long)]
    client_key: PathBuf,
    /// Directory of test cases (default: the vendored KMIP 2.1 mandatory cases).
    #[arg(long)]
    cases: Option<PathBuf>,
    /// Only cases whose name starts with this.
    #[arg(long)]
    only: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kmip-conformance: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    let roots = ckms::http::load_certs(&args.ca_cert).map_err(|e| e.to_string())?;
    let identity = ckms::http::ClientIdentity::from_pem_files(&args.client_cert, &args.client_key)
        .map_err(|e| e.to_string())?;
    let tls = ckms::http::client_config(roots, Some(identity)).map_err(|e| e.to_string())?;
    let mut transport: Box<dyn Transport> = match (&args.url, args.kmip_addr) {
        (_, Some(addr)) => Box::new(BinaryKmip::new(addr, tls)),
        (Some(url), None) => Box::new(JsonHttps(
            ckms::http::HttpClient::new(url, tls).map_err(|e| e.to_string())?,
        )),
        (None, None) => return Err("--url or --kmip-addr is required".into()),
    };
    let dir = args.cases.clone().unwrap_or_else(mandatory_2_1);
    let cases = load_dir(&dir)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (mut passed, mut total) = (0, 0);
    for case in &cases {
        if args
            .only
            .as_deref()
            .is_some_and(|p| !case.name.starts_with(p))
        {
            continue;
        }
        total += 1;
        let r = run_case(case, transport.as_mut(), now);
        match &r.failure {
            None => {
                passed += 1;
                println!("PASS {}", r.name);
            }
            Some((step, why)) => println!("FAIL {} step {step}/{}: {why}", r.name, r.steps),
        }
    }
    println!("{}: {passed}/{total} cases passed", transport.name());
    Ok(())
}
