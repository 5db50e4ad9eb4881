//! `ckms mac ...` (HMAC keys, MAC and MACVerify) and `ckms rng` (RNGRetrieve).

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use kms::kmip::types::{CryptographicAlgorithm, KeyFormatType, ObjectType};
use serde_json::json;

use super::{Ctx, Output, bad_field, now, response_uid, usage_mask};
use crate::error::{CliError, read_file, write_file};
use crate::kmip::{Attributes, Ttlv, uid_or_tags};

/// `ckms mac`.
#[derive(Subcommand, Debug)]
pub enum MacCommand {
    /// Create an HMAC key (activated at once).
    #[command(long_about = "Create an HMAC key in the KMS and print its id.\n\n\
Examples:\n  ckms mac create\n  ckms mac create --algorithm sha512 --tag api-signing")]
    Create(MacCreateArgs),
    /// Compute the MAC of a file with a key held by the KMS; prints it in hex.
    #[command(
        long_about = "Compute the HMAC of a file with a key held by the KMS.\n\n\
The key's own algorithm (or the one stored in its CryptographicParameters) is used unless\n\
--algorithm names one. The MAC is printed in hex, and written raw with -o.\n\n\
Examples:\n  ckms mac compute --key-id 3f2a... -i message.txt\n  \
ckms mac compute --tag api-signing -i message.txt -o message.mac"
    )]
    Compute(MacArgs),
    /// Check a MAC (hex, or raw from a file) over a file; exits non-zero if it does not match.
    #[command(
        long_about = "Verify the HMAC of a file with a key held by the KMS.\n\n\
Examples:\n  ckms mac verify --key-id 3f2a... -i message.txt --mac 9f86d0...\n  \
ckms mac verify --tag api-signing -i message.txt --mac-file message.mac"
    )]
    Verify(MacVerifyArgs),
}

/// A key named by `--key-id` or by tags.
#[derive(Args, Debug)]
pub struct KeyOpt {
    /// Key unique identifier.
    #[arg(long = "key-id", short = 'k', visible_alias = "key")]
    pub key_id: Option<String>,
    /// Select the key by tag instead (repeatable: all tags must match).
    #[arg(long = "tag", short = 't')]
    pub tags: Vec<String>,
}

impl KeyOpt {
    /// The UniqueIdentifier to send.
    pub fn uid(&self) -> Result<String, CliError> {
        uid_or_tags(self.key_id.as_deref(), &self.tags).map_err(|e| CliError::Usage(e.to_string()))
    }
}

/// HMAC hash functions.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum MacAlgorithm {
    /// HMAC-SHA-256.
    Sha256,
    /// HMAC-SHA-384.
    Sha384,
    /// HMAC-SHA-512.
    Sha512,
}

impl MacAlgorithm {
    fn kmip(self) -> CryptographicAlgorithm {
        match self {
            MacAlgorithm::Sha256 => CryptographicAlgorithm::HMACSHA256,
            MacAlgorithm::Sha384 => CryptographicAlgorithm::HMACSHA384,
            MacAlgorithm::Sha512 => CryptographicAlgorithm::HMACSHA512,
        }
    }
    fn bits(self) -> i32 {
        match self {
            MacAlgorithm::Sha256 => 256,
            MacAlgorithm::Sha384 => 384,
            MacAlgorithm::Sha512 => 512,
        }
    }
}

/// `mac create` options.
#[derive(Args, Debug)]
pub struct MacCreateArgs {
    /// Hash function.
    #[arg(long, value_enum, default_value = "sha256")]
    pub algorithm: MacAlgorithm,
    /// Key length in bits (default: the hash's output length; 112 to 4096).
    #[arg(long)]
    pub length: Option<i32>,
    /// Tag to attach (repeatable).
    #[arg(long = "tag", short = 't')]
    pub tags: Vec<String>,
    /// Allowed usages (comma-separated; default: mac-generate, mac-verify).
    #[arg(long, value_delimiter = ',')]
    pub usage: Vec<String>,
}

/// `mac compute` options.
#[derive(Args, Debug)]
pub struct MacArgs {
    #[command(flatten)]
    /// The key.
    pub key: KeyOpt,
    /// Input file.
    #[arg(long, short = 'i')]
    pub input: PathBuf,
    /// Write the raw MAC to this file too.
    #[arg(long, short = 'o')]
    pub output: Option<PathBuf>,
    /// HMAC to use instead of the key's default.
    #[arg(long, value_enum)]
    pub algorithm: Option<MacAlgorithm>,
}

/// `mac verify` options.
#[derive(Args, Debug)]
pub struct MacVerifyArgs {
    #[command(flatten)]
    /// The key.
    pub key: KeyOpt,
    /// Input file.
    #[arg(long, short = 'i')]
    pub input: PathBuf,
    /// The MAC, in hex.
    #[arg(
        long,
        conflicts_with = "mac_file",
        required_unless_present = "mac_file"
    )]
    pub mac: Option<String>,
    /// A file holding the raw MAC (as written by `mac compute -o`).
    #[arg(long)]
    pub mac_file: Option<PathBuf>,
    /// HMAC to use instead of the key's default.
    #[arg(long, value_enum)]
    pub algorithm: Option<MacAlgorithm>,
}

/// `ckms rng` options.
#[derive(Args, Debug)]
pub struct RngArgs {
    /// How many random bytes to fetch from the KMS (1 to 65536).
    #[arg(long, short = 'n', default_value_t = 32)]
    pub bytes: i32,
    /// Write the raw bytes to this file instead of printing hex.
    #[arg(long, short = 'o')]
    pub output: Option<PathBuf>,
}

/// Run `ckms mac ...`.
pub fn run(ctx: &Ctx, cmd: MacCommand) -> Result<Output, CliError> {
    match cmd {
        MacCommand::Create(a) => create(ctx, &a),
        MacCommand::Compute(a) => compute(ctx, &a),
        MacCommand::Verify(a) => verify(ctx, &a),
    }
}

fn create(ctx: &Ctx, a: &MacCreateArgs) -> Result<Output, CliError> {
    let mask = if a.usage.is_empty() {
        0x180
    } else {
        usage_mask(&a.usage)?
    };
    let attrs = Attributes {
        cryptographic_algorithm: Some(a.algorithm.kmip()),
        cryptographic_length: Some(a.length.unwrap_or(a.algorithm.bits())),
        cryptographic_usage_mask: Some(mask),
        key_format_type: Some(KeyFormatType::Raw),
        object_type: Some(ObjectType::SymmetricKey),
        activation_date: Some(now()),
        tags: a.tags.clone(),
        ..Attributes::default()
    };
    let request = Ttlv::structure(
        "Create",
        vec![
            ObjectType::SymmetricKey.to_ttlv(),
            attrs.to_ttlv("Attributes"),
        ],
    );
    let response = ctx.client()?.kmip(&request)?;
    let uid = response_uid(&response, "CreateResponse")?;
    Ok(Output::new(
        format!("created HMAC key {uid}"),
        json!({"unique_identifier": uid}),
    ))
}

fn fields(uid: &str, alg: Option<MacAlgorithm>, data: &[u8]) -> Vec<Ttlv> {
    let mut v = vec![Ttlv::text("UniqueIdentifier", uid)];
    if let Some(a) = alg {
        v.push(Ttlv::structure(
            "CryptographicParameters",
            vec![a.kmip().to_ttlv()],
        ));
    }
    v.push(Ttlv::bytes("Data", data));
    v
}

fn compute(ctx: &Ctx, a: &MacArgs) -> Result<Output, CliError> {
    let data = read_file(&a.input)?;
    let response = ctx.client()?.kmip(&Ttlv::structure(
        "MAC",
        fields(&a.key.uid()?, a.algorithm, &data),
    ))?;
    let mac = response
        .req("MACData")
        .and_then(|t| t.as_bytes("MACData"))
        .map_err(|e| bad_field("MACResponse", e))?;
    if let Some(o) = &a.output {
        write_file(o, mac)?;
    }
    let h = hex::encode(mac);
    Ok(Output::new(
        h.clone(),
        json!({"unique_identifier": response_uid(&response, "MACResponse")?, "mac": h}),
    ))
}

fn verify(ctx: &Ctx, a: &MacVerifyArgs) -> Result<Output, CliError> {
    let data = read_file(&a.input)?;
    let mac = match (&a.mac, &a.mac_file) {
        (Some(h), _) => {
            hex::decode(h.trim()).map_err(|e| CliError::Usage(format!("--mac is not hex: {e}")))?
        }
        (None, Some(f)) => read_file(f)?,
        (None, None) => return Err(CliError::Usage("give --mac or --mac-file".into())),
    };
    let mut f = fields(&a.key.uid()?, a.algorithm, &data);
    f.push(Ttlv::bytes("MACData", &mac));
    let response = ctx.client()?.kmip(&Ttlv::structure("MACVerify", f))?;
    let valid = response
        .req("ValidityIndicator")
        .and_then(|t| t.as_enum("ValidityIndicator"))
        .map_err(|e| bad_field("MACVerifyResponse", e))?;
    let valid = kms::kmip::types::ValidityIndicator::from_enum(valid)
        == Some(kms::kmip::types::ValidityIndicator::Valid);
    if !valid {
        return Err(CliError::Response("the MAC does not match".into()));
    }
    Ok(Output::new(
        "MAC valid",
        json!({"unique_identifier": response_uid(&response, "MACVerifyResponse")?, "valid": true}),
    ))
}

/// `ckms rng`: RNGRetrieve.
pub fn rng(ctx: &Ctx, a: &RngArgs) -> Result<Output, CliError> {
    let request = Ttlv::structure("RNGRetrieve", vec![Ttlv::int("DataLength", a.bytes)]);
    let response = ctx.client()?.kmip(&request)?;
    let data = response
        .req("Data")
        .and_then(|t| t.as_bytes("Data"))
        .map_err(|e| bad_field("RNGRetrieveResponse", e))?;
    match &a.output {
        Some(o) => {
            write_file(o, data)?;
            Ok(Output::new(
                format!("wrote {} random bytes to {}", data.len(), o.display()),
                json!({"file": o, "length": data.len()}),
            ))
        }
        None => {
            let h = hex::encode(data);
            Ok(Output::new(h.clone(), json!({"random": h})))
        }
    }
}
