//! `ckms sym ...`: symmetric keys and file encryption.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;

use super::{Ctx, Output, now, response_uid, usage_mask};
use crate::error::{CliError, read_file, write_file};
use crate::kmip::{TtlvExt, item, tags_attribute, uid_or_tags};

/// Nonce and tag sizes of every AEAD the KMS offers (AES-GCM, AES-GCM-SIV, ChaCha20-Poly1305).
pub const NONCE_LEN: usize = 12;
/// AEAD tag size.
pub const TAG_LEN: usize = 16;

/// `ckms sym`.
#[derive(Subcommand, Debug)]
pub enum SymCommand {
    /// Manage symmetric keys.
    #[command(subcommand)]
    Keys(SymKeys),
    /// Encrypt a file with a key held by the KMS: writes `nonce ‖ ciphertext ‖ tag`.
    #[command(long_about = "Encrypt a file with a key held by the KMS.\n\n\
The output file is `nonce (12 bytes) ‖ ciphertext ‖ tag (16 bytes)`.\n\n\
Examples:\n  ckms sym encrypt --key-id 3f2a... -i secret.txt -o secret.enc\n  \
ckms sym encrypt --tag payroll --mode chacha20-poly1305 -i a.bin -o a.enc")]
    Encrypt(CryptArgs),
    /// Decrypt a file produced by `ckms sym encrypt`.
    #[command(
        long_about = "Decrypt a file in the `nonce ‖ ciphertext ‖ tag` format.\n\n\
Example:\n  ckms sym decrypt --key-id 3f2a... -i secret.enc -o secret.txt"
    )]
    Decrypt(CryptArgs),
}

/// `ckms sym keys`.
#[derive(Subcommand, Debug)]
pub enum SymKeys {
    /// Create a new symmetric key (activated at once).
    #[command(
        long_about = "Create a new symmetric key in the KMS and print its id.\n\n\
The key is created with an activation date of now, so it can be used at once.\n\n\
Examples:\n  ckms sym keys create\n  ckms sym keys create --algorithm aes --length 128 --tag payroll\n  \
ckms sym keys create --algorithm chacha20 --usage encrypt"
    )]
    Create(CreateArgs),
    /// Import key bytes from a file.
    #[command(
        long_about = "Import a symmetric key from a file of raw key bytes.\n\n\
Example:\n  head -c 32 /dev/urandom > k.bin && ckms sym keys import k.bin --tag imported"
    )]
    Import(ImportArgs),
    /// Export a key to a file (raw bytes or the KMIP JSON object).
    #[command(long_about = "Export a key from the KMS into a file.\n\n\
Examples:\n  ckms sym keys export --key-id 3f2a... k.bin\n  ckms sym keys export --tag payroll k.json --format json")]
    Export(ExportArgs),
    /// Revoke a key: it can no longer be used to encrypt.
    Revoke(RevokeArgs),
    /// Destroy a key: its material is erased (revoke it first if it is active).
    Destroy(KeyRef),
    /// Create a new key replacing this one (ReKey); prints the new id.
    Rekey(KeyRef),
}

/// Symmetric algorithms.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum SymAlgorithm {
    /// AES (128, 192 or 256 bits).
    Aes,
    /// ChaCha20 (256 bits).
    Chacha20,
}

/// `sym keys create` options.
#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Algorithm.
    #[arg(long, value_enum, default_value = "aes")]
    pub algorithm: SymAlgorithm,
    /// Key length in bits.
    #[arg(long, default_value_t = 256)]
    pub length: i32,
    /// Tag to attach (repeatable).
    #[arg(long = "tag", short = 't')]
    pub tags: Vec<String>,
    /// Allowed usages (comma-separated; default: encrypt, decrypt, wrap-key, unwrap-key,
    /// key-agreement).
    #[arg(long, value_delimiter = ',')]
    pub usage: Vec<String>,
    /// Leave the key pre-active (not usable until activated).
    #[arg(long)]
    pub no_activate: bool,
}

/// A key named by id or by tags.
#[derive(Args, Debug)]
pub struct KeyRef {
    /// Key unique identifier.
    pub key_id: Option<String>,
    /// Select the key by tag instead (repeatable: all tags must match).
    #[arg(long = "tag", short = 't')]
    pub tags: Vec<String>,
}

impl KeyRef {
    /// The UniqueIdentifier to send.
    pub fn uid(&self) -> Result<String, CliError> {
        uid_or_tags(self.key_id.as_deref(), &self.tags).map_err(CliError::Usage)
    }
}

/// `revoke` options.
#[derive(Args, Debug)]
pub struct RevokeArgs {
    #[command(flatten)]
    /// The key.
    pub key: KeyRef,
    /// Revocation message.
    #[arg(long)]
    pub reason: Option<String>,
    /// Revoke as compromised (reason code KeyCompromise).
    #[arg(long)]
    pub compromised: bool,
}

/// `sym keys import` options.
#[derive(Args, Debug)]
pub struct ImportArgs {
    /// File with the raw key bytes.
    pub file: PathBuf,
    /// Algorithm of the key.
    #[arg(long, value_enum, default_value = "aes")]
    pub algorithm: SymAlgorithm,
    /// Tag to attach (repeatable).
    #[arg(long = "tag", short = 't')]
    pub tags: Vec<String>,
    /// Unique identifier to give the key (default: chosen by the server).
    #[arg(long)]
    pub key_id: Option<String>,
    /// Allowed usages (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub usage: Vec<String>,
}

/// Export formats.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// Raw key bytes.
    Raw,
    /// The KMIP JSON TTLV `GetResponse`.
    Json,
}

/// `export` options.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Key unique identifier.
    #[arg(long = "key-id", short = 'k')]
    pub key_id: Option<String>,
    /// Output file.
    pub file: PathBuf,
    /// Select the key by tag instead (repeatable).
    #[arg(long = "tag", short = 't')]
    pub tags: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "raw")]
    pub format: ExportFormat,
}

/// AEAD modes.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum AeadMode {
    /// AES-GCM (AES keys).
    AesGcm,
    /// AES-GCM-SIV (AES-128/256 keys; misuse-resistant).
    AesGcmSiv,
    /// ChaCha20-Poly1305 (ChaCha20 keys).
    Chacha20Poly1305,
}

/// `encrypt` / `decrypt` options.
#[derive(Args, Debug)]
pub struct CryptArgs {
    /// Key unique identifier.
    #[arg(long = "key-id", short = 'k', visible_alias = "key")]
    pub key: Option<String>,
    /// Select the key by tag instead (repeatable).
    #[arg(long = "tag", short = 't')]
    pub tags: Vec<String>,
    /// Input file.
    #[arg(long, short = 'i')]
    pub input: PathBuf,
    /// Output file.
    #[arg(long, short = 'o')]
    pub output: PathBuf,
    /// AEAD mode (default: the server's default for the key: AES-GCM or ChaCha20-Poly1305).
    #[arg(long, value_enum)]
    pub mode: Option<AeadMode>,
}

fn algorithm_name(a: SymAlgorithm) -> &'static str {
    match a {
        SymAlgorithm::Aes => "AES",
        SymAlgorithm::Chacha20 => "ChaCha20",
    }
}

fn common_attributes(
    algorithm: SymAlgorithm,
    length: i32,
    usage: &[String],
    tags: &[String],
) -> Result<Vec<serde_json::Value>, CliError> {
    let mask = if usage.is_empty() {
        2108
    } else {
        usage_mask(usage)?
    };
    let mut attrs = vec![
        item::enumeration("CryptographicAlgorithm", algorithm_name(algorithm)),
        item::integer("CryptographicLength", length),
        item::integer("CryptographicUsageMask", mask),
        item::enumeration("KeyFormatType", "TransparentSymmetricKey"),
        item::enumeration("ObjectType", "SymmetricKey"),
    ];
    if !tags.is_empty() {
        attrs.push(tags_attribute(tags));
    }
    Ok(attrs)
}

/// Run `ckms sym ...`.
pub fn run(ctx: &Ctx, cmd: SymCommand) -> Result<Output, CliError> {
    match cmd {
        SymCommand::Keys(SymKeys::Create(a)) => create(ctx, &a),
        SymCommand::Keys(SymKeys::Import(a)) => import(ctx, &a),
        SymCommand::Keys(SymKeys::Export(a)) => export(ctx, &a),
        SymCommand::Keys(SymKeys::Revoke(a)) => {
            super::revoke(ctx, &a.key.uid()?, a.reason.as_deref(), a.compromised)
        }
        SymCommand::Keys(SymKeys::Destroy(k)) => super::destroy(ctx, &k.uid()?),
        SymCommand::Keys(SymKeys::Rekey(k)) => rekey(ctx, &k.uid()?),
        SymCommand::Encrypt(a) => encrypt(ctx, &a),
        SymCommand::Decrypt(a) => decrypt(ctx, &a),
    }
}

fn create(ctx: &Ctx, a: &CreateArgs) -> Result<Output, CliError> {
    let mut attrs = common_attributes(a.algorithm, a.length, &a.usage, &a.tags)?;
    if !a.no_activate {
        attrs.push(item::datetime("ActivationDate", now()));
    }
    let request = item::structure(
        "Create",
        vec![
            item::enumeration("ObjectType", "SymmetricKey"),
            item::structure("Attributes", attrs),
        ],
    );
    let response = ctx.client()?.kmip(&request)?;
    let uid = response_uid(&response, "CreateResponse")?;
    Ok(Output::new(
        format!("created symmetric key {uid}"),
        json!({"unique_identifier": uid}),
    ))
}

fn import(ctx: &Ctx, a: &ImportArgs) -> Result<Output, CliError> {
    let key = read_file(&a.file)?;
    let length =
        i32::try_from(key.len() * 8).map_err(|_| CliError::Usage("key file too large".into()))?;
    let mut attrs = common_attributes(a.algorithm, length, &a.usage, &a.tags)?;
    attrs.push(item::datetime("ActivationDate", now()));
    let object = item::structure(
        "Object",
        vec![item::structure(
            "KeyBlock",
            vec![
                item::enumeration("KeyFormatType", "TransparentSymmetricKey"),
                item::structure(
                    "KeyValue",
                    vec![item::structure(
                        "KeyMaterial",
                        vec![item::bytes("Key", &key)],
                    )],
                ),
                item::enumeration("CryptographicAlgorithm", algorithm_name(a.algorithm)),
                item::integer("CryptographicLength", length),
            ],
        )],
    );
    let request = item::structure(
        "Import",
        vec![
            item::text("UniqueIdentifier", a.key_id.as_deref().unwrap_or("")),
            item::enumeration("ObjectType", "SymmetricKey"),
            item::boolean("ReplaceExisting", false),
            item::structure("Attributes", attrs),
            object,
        ],
    );
    let response = ctx.client()?.kmip(&request)?;
    let uid = response_uid(&response, "ImportResponse")?;
    Ok(Output::new(
        format!("imported symmetric key {uid}"),
        json!({"unique_identifier": uid}),
    ))
}

/// `Get` the key in `format` and return the response.
pub fn get(ctx: &Ctx, uid: &str, key_format: Option<&str>) -> Result<serde_json::Value, CliError> {
    let mut fields = vec![item::text("UniqueIdentifier", uid)];
    if let Some(f) = key_format {
        fields.push(item::enumeration("KeyFormatType", f));
    }
    ctx.client()?.kmip(&item::structure("Get", fields))
}

fn export(ctx: &Ctx, a: &ExportArgs) -> Result<Output, CliError> {
    let uid = uid_or_tags(a.key_id.as_deref(), &a.tags).map_err(CliError::Usage)?;
    let response = get(ctx, &uid, Some("TransparentSymmetricKey"))?;
    let got = response_uid(&response, "GetResponse")?;
    match a.format {
        ExportFormat::Json => {
            let text = serde_json::to_vec_pretty(&response)
                .map_err(|e| CliError::Response(e.to_string()))?;
            write_file(&a.file, &text)?;
        }
        ExportFormat::Raw => {
            let material = response
                .find("KeyMaterial")
                .ok_or_else(|| CliError::Response("GetResponse: no KeyMaterial".into()))?;
            // TransparentSymmetricKey: KeyMaterial{Key}; Raw: KeyMaterial is the bytes.
            let key = material
                .child("Key")
                .and_then(TtlvExt::bytes)
                .or_else(|| material.bytes())
                .ok_or_else(|| CliError::Response("GetResponse: no key bytes".into()))?;
            write_file(&a.file, &key)?;
        }
    }
    Ok(Output::new(
        format!("exported {got} to {}", a.file.display()),
        json!({"unique_identifier": got, "file": a.file}),
    ))
}

fn rekey(ctx: &Ctx, uid: &str) -> Result<Output, CliError> {
    let request = item::structure("ReKey", vec![item::text("UniqueIdentifier", uid)]);
    let response = ctx.client()?.kmip(&request)?;
    let new = response_uid(&response, "ReKeyResponse")?;
    Ok(Output::new(
        format!("re-keyed {uid}: new key {new}"),
        json!({"unique_identifier": new}),
    ))
}

fn crypto_parameters(mode: AeadMode) -> serde_json::Value {
    let (alg, block) = match mode {
        AeadMode::AesGcm => ("AES", Some("GCM")),
        AeadMode::AesGcmSiv => ("AES", Some("GCMSIV")),
        AeadMode::Chacha20Poly1305 => ("ChaCha20Poly1305", None),
    };
    let mut params = vec![item::enumeration("CryptographicAlgorithm", alg)];
    if let Some(b) = block {
        params.insert(0, item::enumeration("BlockCipherMode", b));
    }
    item::structure("CryptographicParameters", params)
}

fn encrypt(ctx: &Ctx, a: &CryptArgs) -> Result<Output, CliError> {
    let uid = uid_or_tags(a.key.as_deref(), &a.tags).map_err(CliError::Usage)?;
    let data = read_file(&a.input)?;
    let mut fields = vec![item::text("UniqueIdentifier", &uid)];
    if let Some(m) = a.mode {
        fields.push(crypto_parameters(m));
    }
    fields.push(item::bytes("Data", &data));
    let response = ctx.client()?.kmip(&item::structure("Encrypt", fields))?;
    let field = |tag: &str| {
        response
            .child(tag)
            .and_then(TtlvExt::bytes)
            .ok_or_else(|| CliError::Response(format!("EncryptResponse: no {tag}")))
    };
    let ciphertext = field("Data")?;
    let nonce = field("IVCounterNonce").or_else(|_| field("IvCounterNonce"))?;
    let tag = field("AuthenticatedEncryptionTag")?;
    if nonce.len() != NONCE_LEN || tag.len() != TAG_LEN {
        return Err(CliError::Response(format!(
            "EncryptResponse: nonce of {} bytes and tag of {} bytes (expected {NONCE_LEN} and {TAG_LEN})",
            nonce.len(),
            tag.len()
        )));
    }
    let mut out = nonce;
    out.extend_from_slice(&ciphertext);
    out.extend_from_slice(&tag);
    write_file(&a.output, &out)?;
    Ok(Output::new(
        format!(
            "encrypted {} into {}",
            a.input.display(),
            a.output.display()
        ),
        json!({"unique_identifier": response_uid(&response, "EncryptResponse")?, "file": a.output}),
    ))
}

fn decrypt(ctx: &Ctx, a: &CryptArgs) -> Result<Output, CliError> {
    let uid = uid_or_tags(a.key.as_deref(), &a.tags).map_err(CliError::Usage)?;
    let data = read_file(&a.input)?;
    if data.len() < NONCE_LEN + TAG_LEN {
        return Err(CliError::Usage(format!(
            "{}: too short to hold a {NONCE_LEN}-byte nonce and a {TAG_LEN}-byte tag",
            a.input.display()
        )));
    }
    let (nonce, rest) = data.split_at(NONCE_LEN);
    let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
    let mut fields = vec![item::text("UniqueIdentifier", &uid)];
    if let Some(m) = a.mode {
        fields.push(crypto_parameters(m));
    }
    fields.push(item::bytes("Data", ciphertext));
    fields.push(item::bytes("IVCounterNonce", nonce));
    fields.push(item::bytes("AuthenticatedEncryptionTag", tag));
    let response = ctx.client()?.kmip(&item::structure("Decrypt", fields))?;
    let plaintext = response
        .child("Data")
        .and_then(TtlvExt::bytes)
        .ok_or_else(|| CliError::Response("DecryptResponse: no Data".into()))?;
    write_file(&a.output, &plaintext)?;
    Ok(Output::new(
        format!(
            "decrypted {} into {}",
            a.input.display(),
            a.output.display()
        ),
        json!({"unique_identifier": response_uid(&response, "DecryptResponse")?, "file": a.output}),
    ))
}
