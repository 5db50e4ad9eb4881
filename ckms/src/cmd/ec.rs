//! `ckms ec ...`: elliptic-curve key pairs (ECDSA P-256/P-384, Ed25519), sign and verify.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use kms::kmip::ttlv::EnumValue;
use kms::kmip::types::{CryptographicAlgorithm, KeyFormatType, ObjectType, RecommendedCurve};
use serde_json::json;

use super::keys::{self, UnwrapArgs, WrapArgs};
use super::sym::{KeyRef, RevokeArgs};
use super::{Ctx, Output, bad_field, now, response_text, usage_mask};
use crate::error::{CliError, read_file, write_file};
use crate::kmip::{Attributes, Ttlv, uid_or_tags};

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
SPKI (`PUBLIC KEY`) public key.\n\n\
With --unwrap-key-id the file holds a private key wrapped with that key (as `ckms ec keys export \
--wrap-key-id` writes it): the KMS unwraps it and stores the PKCS#8 key inside, so the key never \
travels in the clear; --wrapping-algorithm must be the one used to wrap.\n\n\
Examples:\n  openssl genpkey -algorithm ed25519 -out k.pem && ckms ec keys import --curve ed25519 k.pem\n  \
ckms ec keys import k.wrapped --unwrap-key-id <AES key id>"
    )]
    Import(EcImportArgs),
    /// Export a key (DER: PKCS#8 private key or SPKI public key, or the KMIP JSON object).
    #[command(
        long_about = "Export a private key (PKCS#8 DER) or a public key (SPKI DER) to a file.\n\n\
With --wrap-key-id the KMS wraps the key under another key before it leaves (an AES key with the \
wrap-key usage: RFC 5649 by default, RFC 3394 or AES-GCM with --wrapping-algorithm; or an RSA \
public key: OAEP SHA-256) and the file holds the wrapped DER. You need the encrypt right on the \
wrapping key. A key marked Sensitive can only be exported wrapped.\n\n\
Examples:\n  ckms ec keys export --key-id <public key id> pub.der\n  \
ckms ec keys export --key-id <private key id> --wrap-key-id <AES key id> k.wrapped"
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
    /// The attributes of a key on this curve: CryptographicAlgorithm, RecommendedCurve (as
    /// CryptographicDomainParameters), CryptographicLength, and ActivationDate now.
    fn attributes(self, tags: &[String]) -> Attributes {
        let (alg, curve, length) = match self {
            Curve::P256 => (CryptographicAlgorithm::ECDSA, RecommendedCurve::P256, 256),
            Curve::P384 => (CryptographicAlgorithm::ECDSA, RecommendedCurve::P384, 384),
            Curve::Ed25519 => (
                CryptographicAlgorithm::Ed25519,
                RecommendedCurve::CURVEED25519,
                256,
            ),
        };
        Attributes {
            cryptographic_algorithm: Some(alg),
            cryptographic_length: Some(length),
            recommended_curve: Some(curve),
            activation_date: Some(now()),
            tags: tags.to_vec(),
            ..Attributes::default()
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
    /// A wrapped private key to unwrap.
    #[command(flatten)]
    pub unwrap: UnwrapArgs,
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
    /// Wrapping.
    #[command(flatten)]
    pub wrap: WrapArgs,
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
    let common = a.curve.attributes(&a.tags);
    let usage = |name: &str| -> Result<Attributes, CliError> {
        Ok(Attributes {
            cryptographic_usage_mask: Some(usage_mask(&[name.into()])?),
            ..Attributes::default()
        })
    };
    let request = Ttlv::structure(
        "CreateKeyPair",
        vec![
            common.to_ttlv("CommonAttributes"),
            usage("sign")?.to_ttlv("PrivateKeyAttributes"),
            usage("verify")?.to_ttlv("PublicKeyAttributes"),
        ],
    );
    let response = ctx.client()?.kmip(&request)?;
    let what = "CreateKeyPairResponse";
    let private = response_text(&response, "PrivateKeyUniqueIdentifier", what)?;
    let public = response_text(&response, "PublicKeyUniqueIdentifier", what)?;
    Ok(Output::new(
        format!("created key pair\n  private key: {private}\n  public key:  {public}"),
        json!({"private_key_unique_identifier": private, "public_key_unique_identifier": public}),
    ))
}

fn import(ctx: &Ctx, a: &EcImportArgs) -> Result<Output, CliError> {
    let data = zeroize::Zeroizing::new(read_file(&a.file)?);
    // A wrapped file is opaque: it holds a private key (PKCS#8) once unwrapped.
    let (object_type, format, der) = if a.unwrap.unwrap_key_id.is_some() {
        (ObjectType::PrivateKey, KeyFormatType::PKCS8, data)
    } else {
        keys::parse_key_file(&data, &a.file)?
    };
    let usage = if object_type == ObjectType::PrivateKey {
        "sign"
    } else {
        "verify"
    };
    keys::import(
        ctx,
        keys::Import {
            object_type,
            format,
            material: der.to_vec(),
            attributes: Attributes {
                cryptographic_usage_mask: Some(usage_mask(&[usage.into()])?),
                ..a.curve.attributes(&a.tags)
            },
            key_id: a.key_id.as_deref(),
            unwrap: &a.unwrap,
        },
    )
}

fn export(ctx: &Ctx, a: &EcExportArgs) -> Result<Output, CliError> {
    let uid =
        uid_or_tags(a.key_id.as_deref(), &a.tags).map_err(|e| CliError::Usage(e.to_string()))?;
    keys::export(ctx, &uid, None, a.json, &a.wrap, &a.file)
}

fn sign(ctx: &Ctx, a: &SignArgs) -> Result<Output, CliError> {
    sign_with(ctx, a, None)
}

/// Sign with optional `CryptographicParameters` (`ckms rsa sign` names its scheme).
pub(super) fn sign_with(ctx: &Ctx, a: &SignArgs, params: Option<Ttlv>) -> Result<Output, CliError> {
    let uid = uid_or_tags(a.key.as_deref(), &a.tags).map_err(|e| CliError::Usage(e.to_string()))?;
    let data = read_file(&a.input)?;
    let mut fields = vec![Ttlv::text("UniqueIdentifier", &uid)];
    fields.extend(params);
    fields.push(Ttlv::bytes("Data", &data));
    let request = Ttlv::structure("Sign", fields);
    let response = ctx.client()?.kmip(&request)?;
    let signature = response
        .req("SignatureData")
        .and_then(|t| t.as_bytes("SignatureData"))
        .map_err(|e| bad_field("SignResponse", e))?;
    write_file(&a.output, signature)?;
    Ok(Output::new(
        format!("signature written to {}", a.output.display()),
        json!({"unique_identifier": uid, "file": a.output}),
    ))
}

fn verify(ctx: &Ctx, a: &VerifyArgs) -> Result<Output, CliError> {
    verify_with(ctx, a, None)
}

/// Verify with optional `CryptographicParameters` (`ckms rsa verify` names its scheme).
pub(super) fn verify_with(
    ctx: &Ctx,
    a: &VerifyArgs,
    params: Option<Ttlv>,
) -> Result<Output, CliError> {
    let uid = uid_or_tags(a.key.as_deref(), &a.tags).map_err(|e| CliError::Usage(e.to_string()))?;
    let data = read_file(&a.input)?;
    let signature = read_file(&a.signature)?;
    let mut fields = vec![Ttlv::text("UniqueIdentifier", &uid)];
    fields.extend(params);
    fields.push(Ttlv::bytes("Data", &data));
    fields.push(Ttlv::bytes("SignatureData", &signature));
    let request = Ttlv::structure("SignatureVerify", fields);
    let response = ctx.client()?.kmip(&request)?;
    // KMIP 2.1 §11.57 Validity Indicator: Valid = 0, Invalid = 1, Unknown = 2.
    let validity = match response
        .req("ValidityIndicator")
        .and_then(|t| t.as_enum("ValidityIndicator"))
        .map_err(|e| bad_field("SignatureVerifyResponse", e))?
    {
        EnumValue::Name(n) => n.clone(),
        EnumValue::Code(0) => "Valid".to_owned(),
        EnumValue::Code(1) => "Invalid".to_owned(),
        EnumValue::Code(_) => "Unknown".to_owned(),
    };
    if validity == "Valid" {
        Ok(Output::new("valid", json!({"valid": true})))
    } else {
        Err(CliError::Negative(format!(
            "signature is {}",
            validity.to_lowercase()
        )))
    }
}
