//! `ckms ec ...`: elliptic-curve key pairs (ECDSA P-256/P-384, Ed25519), sign and verify.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivatePkcs8KeyDer, SubjectPublicKeyInfoDer};
use serde_json::json;

use super::sym::{KeyRef, RevokeArgs};
use super::{Ctx, Output, now, usage_mask};
use crate::error::{CliError, read_file, write_file};
use crate::kmip::{TtlvExt, item, tags_attribute, uid_or_tags};

/// `ckms ec`.
#[derive(Subcommand, Debug)]
pub enum EcCommand {
    /// Manage key pairs.
    #[command(subcommand)]
    Keys(EcKeys),
    /// Sign a file with a private key held by the KMS.
    #[command(
        long_about = "Sign a file with a private key held by the KMS; writes the signature \
(ECDSA: DER; Ed25519: 64 bytes).\n\nExample:\n  ckms ec sign --key <private key id> -i doc.pdf -o doc.sig"
    )]
    Sign(SignArgs),
    /// Verify a signature with a public key held by the KMS (exit status 1 if invalid).
    #[command(
        long_about = "Verify a signature with a public key held by the KMS.\n\n\
Prints `valid` or `invalid`; the exit status is 0 only for a valid signature.\n\n\
Example:\n  ckms ec verify --key <public key id> -i doc.pdf -s doc.sig"
    )]
    Verify(VerifyArgs),
}

/// `ckms ec keys`.
#[derive(Subcommand, Debug)]
pub enum EcKeys {
    /// Create a key pair (activated at once); prints both ids.
    #[command(
        long_about = "Create a key pair in the KMS and print the private and public key ids.\n\n\
Examples:\n  ckms ec keys create --curve p256 --tag signing\n  ckms ec keys create --curve ed25519"
    )]
    Create(EcCreateArgs),
    /// Import a private key (PKCS#8) or a public key (SPKI), PEM or DER.
    #[command(
        long_about = "Import an EC key from a PEM or DER file: a PKCS#8 private key or an \
SPKI (`PUBLIC KEY`) public key.\n\nExample:\n  openssl genpkey -algorithm ed25519 -out k.pem && ckms ec keys import k.pem"
    )]
    Import(EcImportArgs),
    /// Export a key (DER: PKCS#8 private key or SPKI public key, or the KMIP JSON object).
    #[command(
        long_about = "Export a private key (PKCS#8 DER) or a public key (SPKI DER) to a file.\n\n\
Example:\n  ckms ec keys export --key-id <public key id> pub.der"
    )]
    Export(EcExportArgs),
    /// Revoke a key.
    Revoke(RevokeArgs),
    /// Destroy a key.
    Destroy(KeyRef),
}

/// Curves.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    /// NIST P-256 (ECDSA with SHA-256).
    P256,
    /// NIST P-384 (ECDSA with SHA-384).
    P384,
    /// Ed25519 (EdDSA).
    Ed25519,
}

impl Curve {
    /// (CryptographicAlgorithm, RecommendedCurve, CryptographicLength).
    fn kmip(self) -> (&'static str, &'static str, i32) {
        match self {
            Curve::P256 => ("ECDSA", "P256", 256),
            Curve::P384 => ("ECDSA", "P384", 384),
            Curve::Ed25519 => ("Ed25519", "CURVEED25519", 256),
        }
    }
}

/// `ec keys create` options.
#[derive(Args, Debug)]
pub struct EcCreateArgs {
    /// Curve.
    #[arg(long, value_enum, default_value = "p256")]
    pub curve: Curve,
    /// Tag to attach to both keys (repeatable).
    #[arg(long = "tag", short = 't')]
    pub tags: Vec<String>,
}

/// `ec keys import` options.
#[derive(Args, Debug)]
pub struct EcImportArgs {
    /// PEM or DER file.
    pub file: PathBuf,
    /// Tag to attach (repeatable).
    #[arg(long = "tag", short = 't')]
    pub tags: Vec<String>,
    /// Unique identifier to give the key (default: chosen by the server).
    #[arg(long)]
    pub key_id: Option<String>,
    /// Curve of the key.
    #[arg(long, value_enum, default_value = "p256")]
    pub curve: Curve,
}

/// `ec keys export` options.
#[derive(Args, Debug)]
pub struct EcExportArgs {
    /// Key unique identifier.
    #[arg(long = "key-id", short = 'k')]
    pub key_id: Option<String>,
    /// Output file.
    pub file: PathBuf,
    /// Select the key by tag instead (repeatable).
    #[arg(long = "tag", short = 't')]
    pub tags: Vec<String>,
    /// Write the whole KMIP JSON `GetResponse` instead of the DER key.
    #[arg(long)]
    pub json: bool,
}

/// `ec sign` options.
#[derive(Args, Debug)]
pub struct SignArgs {
    /// Private key id.
    #[arg(long = "key-id", short = 'k', visible_alias = "key")]
    pub key: Option<String>,
    /// Select the key by tag instead (repeatable).
    #[arg(long = "tag", short = 't')]
    pub tags: Vec<String>,
    /// File to sign.
    #[arg(long, short = 'i')]
    pub input: PathBuf,
    /// Signature file to write.
    #[arg(long, short = 'o')]
    pub output: PathBuf,
}

/// `ec verify` options.
#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Public key id.
    #[arg(long = "key-id", short = 'k', visible_alias = "key")]
    pub key: Option<String>,
    /// Select the key by tag instead (repeatable).
    #[arg(long = "tag", short = 't')]
    pub tags: Vec<String>,
    /// Signed file.
    #[arg(long, short = 'i')]
    pub input: PathBuf,
    /// Signature file.
    #[arg(long, short = 's')]
    pub signature: PathBuf,
}

/// Run `ckms ec ...`.
pub fn run(ctx: &Ctx, cmd: EcCommand) -> Result<Output, CliError> {
    match cmd {
        EcCommand::Keys(EcKeys::Create(a)) => create(ctx, &a),
        EcCommand::Keys(EcKeys::Import(a)) => import(ctx, &a),
        EcCommand::Keys(EcKeys::Export(a)) => export(ctx, &a),
        EcCommand::Keys(EcKeys::Revoke(a)) => {
            super::revoke(ctx, &a.key.uid()?, a.reason.as_deref(), a.compromised)
        }
        EcCommand::Keys(EcKeys::Destroy(k)) => super::destroy(ctx, &k.uid()?),
        EcCommand::Sign(a) => sign(ctx, &a),
        EcCommand::Verify(a) => verify(ctx, &a),
    }
}

fn create(ctx: &Ctx, a: &EcCreateArgs) -> Result<Output, CliError> {
    let (alg, curve, length) = a.curve.kmip();
    let mut common = vec![
        item::enumeration("CryptographicAlgorithm", alg),
        item::integer("CryptographicLength", length),
        item::structure(
            "CryptographicDomainParameters",
            vec![item::enumeration("RecommendedCurve", curve)],
        ),
        item::datetime("ActivationDate", now()),
    ];
    if !a.tags.is_empty() {
        common.push(tags_attribute(&a.tags));
    }
    let sign = usage_mask(&["sign".into()])?;
    let verify = usage_mask(&["verify".into()])?;
    let request = item::structure(
        "CreateKeyPair",
        vec![
            item::structure("CommonAttributes", common),
            item::structure(
                "PrivateKeyAttributes",
                vec![item::integer("CryptographicUsageMask", sign)],
            ),
            item::structure(
                "PublicKeyAttributes",
                vec![item::integer("CryptographicUsageMask", verify)],
            ),
        ],
    );
    let response = ctx.client()?.kmip(&request)?;
    let get = |tag: &str| {
        response
            .child(tag)
            .and_then(TtlvExt::text)
            .map(str::to_owned)
            .ok_or_else(|| CliError::Response(format!("CreateKeyPairResponse: no {tag}")))
    };
    let private = get("PrivateKeyUniqueIdentifier")?;
    let public = get("PublicKeyUniqueIdentifier")?;
    Ok(Output::new(
        format!("created key pair\n  private key: {private}\n  public key:  {public}"),
        json!({"private_key_unique_identifier": private, "public_key_unique_identifier": public}),
    ))
}

fn import(ctx: &Ctx, a: &EcImportArgs) -> Result<Output, CliError> {
    let data = read_file(&a.file)?;
    let (object_type, format, der, usage) = if data.starts_with(b"-----BEGIN") {
        if let Ok(k) = PrivatePkcs8KeyDer::from_pem_slice(&data) {
            ("PrivateKey", "PKCS8", k.secret_pkcs8_der().to_vec(), "sign")
        } else if let Ok(k) = SubjectPublicKeyInfoDer::from_pem_slice(&data) {
            ("PublicKey", "X509", k.as_ref().to_vec(), "verify")
        } else {
            return Err(CliError::Usage(format!(
                "{}: no PRIVATE KEY (PKCS#8) or PUBLIC KEY (SPKI) PEM block",
                a.file.display()
            )));
        }
    } else {
        // DER: a PKCS#8 PrivateKeyInfo starts with SEQUENCE { INTEGER version, ... }, an SPKI
        // with SEQUENCE { SEQUENCE AlgorithmIdentifier, ... } (RFC 5958 §2, RFC 5280 §4.1).
        let second_is_integer = match (data.first(), data.get(1)) {
            (Some(0x30), Some(len)) => {
                // Short-form length: the first element follows at 2; long form 0x8N: at 2 + N.
                let skip = if len & 0x80 != 0 {
                    usize::from(len & 0x7F)
                } else {
                    0
                };
                Some(data.get(2 + skip) == Some(&0x02))
            }
            _ => None,
        };
        match second_is_integer {
            Some(true) => ("PrivateKey", "PKCS8", data.clone(), "sign"),
            Some(false) => ("PublicKey", "X509", data.clone(), "verify"),
            None => {
                return Err(CliError::Usage(format!(
                    "{}: not a DER key",
                    a.file.display()
                )));
            }
        }
    };
    let (alg, curve, length) = a.curve.kmip();
    let mut attrs = vec![
        item::enumeration("CryptographicAlgorithm", alg),
        item::integer("CryptographicLength", length),
        item::structure(
            "CryptographicDomainParameters",
            vec![item::enumeration("RecommendedCurve", curve)],
        ),
        item::integer("CryptographicUsageMask", usage_mask(&[usage.into()])?),
        item::enumeration("KeyFormatType", format),
        item::enumeration("ObjectType", object_type),
        item::datetime("ActivationDate", now()),
    ];
    if !a.tags.is_empty() {
        attrs.push(tags_attribute(&a.tags));
    }
    let object = item::structure(
        "Object",
        vec![item::structure(
            "KeyBlock",
            vec![
                item::enumeration("KeyFormatType", format),
                item::structure("KeyValue", vec![item::bytes("KeyMaterial", &der)]),
                item::enumeration("CryptographicAlgorithm", alg),
                item::integer("CryptographicLength", length),
            ],
        )],
    );
    let request = item::structure(
        "Import",
        vec![
            item::text("UniqueIdentifier", a.key_id.as_deref().unwrap_or("")),
            item::enumeration("ObjectType", object_type),
            item::boolean("ReplaceExisting", false),
            item::structure("Attributes", attrs),
            object,
        ],
    );
    let response = ctx.client()?.kmip(&request)?;
    let uid = super::response_uid(&response, "ImportResponse")?;
    Ok(Output::new(
        format!("imported {} {uid}", object_type.to_lowercase()),
        json!({"unique_identifier": uid}),
    ))
}

fn export(ctx: &Ctx, a: &EcExportArgs) -> Result<Output, CliError> {
    let uid = uid_or_tags(a.key_id.as_deref(), &a.tags).map_err(CliError::Usage)?;
    let response = super::sym::get(ctx, &uid, None)?;
    let got = super::response_uid(&response, "GetResponse")?;
    if a.json {
        let text =
            serde_json::to_vec_pretty(&response).map_err(|e| CliError::Response(e.to_string()))?;
        write_file(&a.file, &text)?;
    } else {
        let der = response
            .find("KeyMaterial")
            .and_then(TtlvExt::bytes)
            .ok_or_else(|| CliError::Response("GetResponse: no DER KeyMaterial".into()))?;
        write_file(&a.file, &der)?;
    }
    Ok(Output::new(
        format!("exported {got} to {}", a.file.display()),
        json!({"unique_identifier": got, "file": a.file}),
    ))
}

fn sign(ctx: &Ctx, a: &SignArgs) -> Result<Output, CliError> {
    let uid = uid_or_tags(a.key.as_deref(), &a.tags).map_err(CliError::Usage)?;
    let data = read_file(&a.input)?;
    let request = item::structure(
        "Sign",
        vec![
            item::text("UniqueIdentifier", &uid),
            item::bytes("Data", &data),
        ],
    );
    let response = ctx.client()?.kmip(&request)?;
    let signature = response
        .child("SignatureData")
        .and_then(TtlvExt::bytes)
        .ok_or_else(|| CliError::Response("SignResponse: no SignatureData".into()))?;
    write_file(&a.output, &signature)?;
    Ok(Output::new(
        format!("signature written to {}", a.output.display()),
        json!({"unique_identifier": uid, "file": a.output}),
    ))
}

fn verify(ctx: &Ctx, a: &VerifyArgs) -> Result<Output, CliError> {
    let uid = uid_or_tags(a.key.as_deref(), &a.tags).map_err(CliError::Usage)?;
    let data = read_file(&a.input)?;
    let signature = read_file(&a.signature)?;
    let request = item::structure(
        "SignatureVerify",
        vec![
            item::text("UniqueIdentifier", &uid),
            item::bytes("Data", &data),
            item::bytes("SignatureData", &signature),
        ],
    );
    let response = ctx.client()?.kmip(&request)?;
    let validity = response
        .child("ValidityIndicator")
        .and_then(TtlvExt::text)
        .ok_or_else(|| {
            CliError::Response("SignatureVerifyResponse: no ValidityIndicator".into())
        })?;
    if validity == "Valid" {
        Ok(Output::new("valid", json!({"valid": true})))
    } else {
        Err(CliError::Negative(format!(
            "signature is {}",
            validity.to_lowercase()
        )))
    }
}
