//! `ckms`: the KMS command-line client.
//!
//! Adding a subcommand: a module (here or in the library), one variant of [`Command`] and one
//! arm in [`dispatch`].
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use ckms::cmd::{self, Ctx, Output};
use ckms::config::{self, Settings};
use ckms::error::CliError;
use clap::{Parser, Subcommand};

const LONG_ABOUT: &str = "\
ckms talks to the KMS over HTTPS (KMIP 2.1 JSON, Cosmian dialect).

Connection settings come from flags or from a TOML file ($CKMS_CONF, else
~/.config/ckms/ckms.toml) with the same names:

    url = \"https://127.0.0.1:9998\"
    ca_cert = \"ca.pem\"          # CA that signed the server certificate
    client_cert = \"alice.pem\"   # your certificate: its CN is your KMS identity
    client_key = \"alice.key\"

Examples:
    ckms sym keys create --tag payroll
    ckms sym encrypt --tag payroll -i salaries.csv -o salaries.enc
    ckms sym decrypt --tag payroll -i salaries.enc -o salaries.csv
    ckms ec keys create --curve ed25519
    ckms locate --tag payroll
    ckms access-rights grant bob <key id> encrypt decrypt
    ckms --json server-version";

/// Command line.
#[derive(Parser, Debug)]
#[command(name = "ckms", version, about = "KMS command-line client", long_about = LONG_ABOUT)]
struct Cli {
    /// KMS URL (`https://host:port`).
    #[arg(long, global = true)]
    url: Option<String>,
    /// CA certificate (PEM) that signed the server certificate.
    #[arg(long, global = true, value_name = "PEM")]
    ca_cert: Option<PathBuf>,
    /// Client certificate (PEM) for mTLS.
    #[arg(long, global = true, value_name = "PEM")]
    client_cert: Option<PathBuf>,
    /// Client private key (PEM) for mTLS.
    #[arg(long, global = true, value_name = "PEM")]
    client_key: Option<PathBuf>,
    /// Configuration file (default: $CKMS_CONF, else ~/.config/ckms/ckms.toml).
    #[arg(long, global = true, value_name = "TOML")]
    conf: Option<PathBuf>,
    /// Print results as JSON (for scripts).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
enum Command {
    /// Symmetric keys and file encryption.
    #[command(subcommand)]
    Sym(cmd::sym::SymCommand),
    /// Elliptic-curve key pairs, signatures.
    #[command(subcommand)]
    Ec(cmd::ec::EcCommand),
    /// RSA key pairs, encryption (OAEP, PKCS#1 v1.5) and signatures (PSS, PKCS#1 v1.5).
    #[command(subcommand)]
    Rsa(cmd::rsa::RsaCommand),
    /// HMAC keys, MAC computation and verification.
    #[command(subcommand)]
    Mac(cmd::mac::MacCommand),
    /// X.509 certificates: import (Register), export, and certify (issue one with a KMS-held CA key).
    #[command(subcommand)]
    Certificates(cmd::certs::CertCommand),
    /// Random bytes from the KMS's generator (RNGRetrieve).
    #[command(
        long_about = "Fetch random bytes from the KMS's generator (KMIP RNGRetrieve).

Examples:
  ckms rng
  ckms rng --bytes 64 -o seed.bin"
    )]
    Rng(cmd::mac::RngArgs),
    /// Find objects by tags, type, algorithm, state or name.
    #[command(long_about = "Find objects; every criterion given must match.\n\n\
Examples:\n  ckms locate --tag payroll\n  ckms locate --type SymmetricKey --algorithm AES --state Active")]
    Locate(cmd::objects::LocateArgs),
    /// Show the attributes of an object.
    GetAttributes(cmd::objects::GetAttributesArgs),
    /// Set attributes (name, tags, activation date) of an object.
    #[command(long_about = "Set attributes of an object.\n\n\
Examples:\n  ckms set-attribute <id> --name backup-key\n  ckms set-attribute <id> --activation-date 1700000000")]
    SetAttribute(cmd::objects::SetAttributeArgs),
    /// Manage who may use your objects.
    #[command(subcommand)]
    AccessRights(cmd::access::AccessCommand),
    /// Print the server version.
    ServerVersion,
    /// SEV-SNP launch measurement and attestation-report verification (local).
    #[command(subcommand)]
    Attestation(Box<ckms::attestation::AttestationCommand>),
    /// Zero-trust provisioning of a KMS in bootstrap mode.
    #[command(subcommand)]
    Bootstrap(Box<ckms::bootstrap::BootstrapCommand>),
    /// Verify a running KMS: API certificate chain, quote, fresh attestation.
    Verify(Box<ckms::verify::VerifyArgs>),
}

fn dispatch(ctx: &Ctx, command: Command) -> Result<Output, CliError> {
    match command {
        Command::Sym(c) => cmd::sym::run(ctx, c),
        Command::Ec(c) => cmd::ec::run(ctx, c),
        Command::Rsa(c) => cmd::rsa::run(ctx, c),
        Command::Mac(c) => cmd::mac::run(ctx, c),
        Command::Certificates(c) => cmd::certs::run(ctx, c),
        Command::Rng(a) => cmd::mac::rng(ctx, &a),
        Command::Locate(a) => cmd::objects::locate(ctx, &a),
        Command::GetAttributes(a) => cmd::objects::get_attributes(ctx, &a),
        Command::SetAttribute(a) => cmd::objects::set_attribute(ctx, &a),
        Command::AccessRights(c) => cmd::access::run(ctx, c),
        Command::Attestation(c) => ckms::attestation::run(*c),
        Command::Bootstrap(c) => ckms::bootstrap::run(ctx, *c),
        Command::Verify(a) => ckms::verify::verify(ctx, &a),
        Command::ServerVersion => {
            let v = ctx.client()?.get_json("/version")?;
            let human = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
            Ok(Output::new(human, serde_json::json!({"version": v})))
        }
    }
}

fn settings(cli: &Cli) -> Result<Settings, CliError> {
    let flags = Settings {
        url: cli.url.clone(),
        ca_cert: cli.ca_cert.clone(),
        client_cert: cli.client_cert.clone(),
        client_key: cli.client_key.clone(),
    };
    let (path, required) = match &cli.conf {
        Some(p) => (Some(p.clone()), true),
        None => (
            config::default_path(),
            std::env::var_os("CKMS_CONF").is_some(),
        ),
    };
    let file = match &path {
        Some(p) => Settings::from_file(p, required)?,
        None => Settings::default(),
    };
    Ok(Settings::merge(
        flags,
        file,
        path.as_deref().and_then(std::path::Path::parent),
    ))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    let result = settings(&cli).and_then(|settings| dispatch(&Ctx { settings }, cli.command));
    match result {
        Ok(out) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&out.json).unwrap_or_default()
                );
            } else {
                println!("{}", out.human);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            if json {
                let msg = serde_json::json!({"error": e.to_string()});
                eprintln!("{msg}");
            } else {
                eprintln!("ckms: error: {e}");
            }
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// clap's own consistency checks (argument order, name clashes) over every subcommand.
    #[test]
    fn command_line_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
