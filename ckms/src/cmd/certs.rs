//! `ckms certificates ...`: X.509 certificates as KMIP objects (Register, Get).

use std::path::PathBuf;

use clap::{Args, Subcommand};
use kms::kmip::types::{KeyFormatType, ObjectType};
use serde_json::json;

use super::sym::get;
use super::{Ctx, Output, bad_field, response_uid};
use crate::error::{CliError, read_file, write_file};
use crate::kmip::{Attributes, KeyBlock, Ttlv, uid_or_tags};

/// `ckms certificates`.
#[derive(Subcommand, Debug)]
pub enum CertCommand {
    /// Import (Register) an X.509 certificate from a PEM or DER file; prints its id.
    #[command(
        long_about = "Register an X.509 certificate in the KMS and print its id.\n\n\
The file holds one certificate, PEM (`-----BEGIN CERTIFICATE-----`) or DER. The KMS parses it\n\
(it does not verify it) and derives read-only attributes from it: CertificateSubjectCN,\n\
CertificateIssuerCN, ..., CertificateLength, X509CertificateIdentifier (issuer + serial);\n\
`ckms locate` finds certificates by them.\n\n\
Examples:\n  ckms certificates import server.pem\n  \
ckms certificates import ca.der --tag root-ca"
    )]
    Import(ImportArgs),
    /// Export a certificate to a file, as PEM (default) or DER.
    #[command(long_about = "Export a certificate held by the KMS to a file.\n\n\
Examples:\n  ckms certificates export --certificate-id 3f2a... server.pem\n  \
ckms certificates export --tag root-ca --der ca.der")]
    Export(ExportArgs),
}

/// `certificates import` options.
#[derive(Args, Debug)]
pub struct ImportArgs {
    /// PEM or DER certificate file.
    pub file: PathBuf,
    /// Tag to attach (repeatable).
    #[arg(long = "tag", short = 't')]
    pub tags: Vec<String>,
}

/// `certificates export` options.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Certificate unique identifier.
    #[arg(long = "certificate-id", short = 'c', visible_alias = "id")]
    pub id: Option<String>,
    /// Select the certificate by tag instead (repeatable: all tags must match).
    #[arg(long = "tag", short = 't')]
    pub tags: Vec<String>,
    /// Output file.
    pub file: PathBuf,
    /// Write DER instead of PEM.
    #[arg(long)]
    pub der: bool,
}

/// Run `ckms certificates ...`.
pub fn run(ctx: &Ctx, cmd: CertCommand) -> Result<Output, CliError> {
    match cmd {
        CertCommand::Import(a) => import(ctx, &a),
        CertCommand::Export(a) => export(ctx, &a),
    }
}

/// The DER of the one certificate in `bytes` (PEM or DER).
fn certificate_der(bytes: &[u8]) -> Result<Vec<u8>, CliError> {
    if bytes.starts_with(b"-----BEGIN") || bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        let mut chain = kms::x509::pem_chain_der(bytes)
            .map_err(|e| CliError::Usage(format!("not a PEM certificate: {e}")))?;
        if chain.len() != 1 {
            return Err(CliError::Usage(format!(
                "the file holds {} certificates: import one at a time",
                chain.len()
            )));
        }
        return Ok(chain.remove(0));
    }
    kms::x509::parse(bytes)
        .map_err(|e| CliError::Usage(format!("not a DER or PEM X.509 certificate: {e}")))?;
    Ok(bytes.to_vec())
}

fn import(ctx: &Ctx, a: &ImportArgs) -> Result<Output, CliError> {
    let der = certificate_der(&read_file(&a.file)?)?;
    let attrs = Attributes {
        tags: a.tags.clone(),
        ..Attributes::default()
    };
    let request = Ttlv::structure(
        "Register",
        vec![
            ObjectType::Certificate.to_ttlv(),
            attrs.to_ttlv("Attributes"),
            Ttlv::structure(
                "Certificate",
                vec![
                    kms::kmip::types::CertificateType::X509.to_ttlv(),
                    Ttlv::bytes("CertificateValue", &der),
                ],
            ),
        ],
    );
    let response = ctx.client()?.kmip(&request)?;
    let uid = response_uid(&response, "RegisterResponse")?;
    Ok(Output::new(
        format!("imported certificate {uid}"),
        json!({"unique_identifier": uid}),
    ))
}

fn export(ctx: &Ctx, a: &ExportArgs) -> Result<Output, CliError> {
    let uid = uid_or_tags(a.id.as_deref(), &a.tags).map_err(|e| CliError::Usage(e.to_string()))?;
    let response = get(ctx, &uid, Some(KeyFormatType::X509))?;
    let got = response_uid(&response, "GetResponse")?;
    if response.get("Certificate").is_none() {
        return Err(CliError::Usage(format!("{got} is not a certificate")));
    }
    let cert = KeyBlock::parse_object(&response).map_err(|e| bad_field("GetResponse", e))?;
    if a.der {
        write_file(&a.file, &cert.material)?;
    } else {
        let pem = kms::x509::cert_pem(&cert.material)
            .map_err(|e| CliError::Response(format!("GetResponse: {e}")))?;
        write_file(&a.file, pem.as_bytes())?;
    }
    Ok(Output::new(
        format!("exported {got} to {}", a.file.display()),
        json!({"unique_identifier": got, "file": a.file}),
    ))
}
