//! `ckms sym ...`: symmetric keys and file encryption.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use kms::kmip::ops::{CryptographicParameters, KeyWrappingData};
use kms::kmip::types::{
    BlockCipherMode, CryptographicAlgorithm, HashingAlgorithm, KeyFormatType, ObjectType,
    PaddingMethod, WrappingMethod,
};
use serde_json::json;

use super::{Ctx, Output, bad_field, now, response_uid, usage_mask};
use crate::error::{CliError, read_file, write_file};
use crate::kmip::{Attributes, KeyBlock, Ttlv, to_json_value, uid_or_tags};

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
    /// Import key bytes from a file (plain, or wrapped with `--unwrap-key-id`).
    #[command(
        long_about = "Import a symmetric key from a file of raw key bytes.\n\n\
With --unwrap-key-id the file holds a wrapped key (as `export --wrap-key-id` writes it): the KMS \
unwraps it with that key (an AES key with the unwrap-key usage, or an RSA private key) and stores \
the key inside; the key bytes never travel in the clear. --wrapping-algorithm must be the one \
used to wrap.\n\n\
Examples:\n  head -c 32 /dev/urandom > k.bin && ckms sym keys import k.bin --tag imported\n  \
ckms sym keys import k.wrapped --unwrap-key-id 9c1e... --wrapping-algorithm nist-key-wrap"
    )]
    Import(ImportArgs),
    /// Export a key to a file (raw bytes or the KMIP JSON object), optionally wrapped.
    #[command(long_about = "Export a key from the KMS into a file.\n\n\
With --wrap-key-id the KMS wraps the key under another key before it leaves, and the file holds \
the wrapped bytes: an AES key with the wrap-key usage (RFC 5649 by default; RFC 3394 or AES-GCM \
with --wrapping-algorithm) or an RSA public key (OAEP with SHA-256). You need the encrypt right \
on the wrapping key. A key marked Sensitive can only be exported wrapped.\n\n\
Examples:\n  ckms sym keys export --key-id 3f2a... k.bin\n  ckms sym keys export --tag payroll k.json --format json\n  \
ckms sym keys export --key-id 3f2a... --wrap-key-id 9c1e... k.wrapped\n  \
ckms sym keys export --key-id 3f2a... --wrap-key-id 9c1e... --wrapping-algorithm aes-gcm k.wrapped")]
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
        uid_or_tags(self.key_id.as_deref(), &self.tags).map_err(|e| CliError::Usage(e.to_string()))
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
    /// The file holds a key wrapped with this key: the KMS unwraps it (needs the decrypt right
    /// and the unwrap-key usage on that key).
    #[arg(long, visible_alias = "unwrap")]
    pub unwrap_key_id: Option<String>,
    /// How the file was wrapped (with --unwrap-key-id).
    #[arg(long, value_enum, requires = "unwrap_key_id")]
    pub wrapping_algorithm: Option<WrappingAlgorithm>,
}

/// Key wrapping constructions (`--wrapping-algorithm`).
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum WrappingAlgorithm {
    /// AES key wrap, RFC 3394 (NIST SP 800-38F KW): keys of whole 8-byte blocks.
    NistKeyWrap,
    /// AES key wrap with padding, RFC 5649 (KWP): the default for an AES wrapping key.
    AesKeyWrapPadding,
    /// AES-GCM: nonce (12) ‖ ciphertext ‖ tag (16), as the Cosmian KMS writes it.
    AesGcm,
    /// RSA-OAEP with SHA-256 (MGF1-SHA-256): the default for an RSA wrapping key.
    RsaOaep,
}

/// The Key Wrapping Specification / Data for wrapping key `uid`.
pub fn wrapping_data(uid: &str, alg: Option<WrappingAlgorithm>) -> KeyWrappingData {
    let params = alg.map(|a| {
        let mut p = CryptographicParameters::default();
        match a {
            WrappingAlgorithm::NistKeyWrap => {
                p.block_cipher_mode = Some(BlockCipherMode::NISTKeyWrap)
            }
            WrappingAlgorithm::AesKeyWrapPadding => {
                p.block_cipher_mode = Some(BlockCipherMode::AESKeyWrapPadding)
            }
            WrappingAlgorithm::AesGcm => p.block_cipher_mode = Some(BlockCipherMode::GCM),
            WrappingAlgorithm::RsaOaep => {
                p.padding_method = Some(PaddingMethod::OAEP);
                p.hashing_algorithm = Some(HashingAlgorithm::SHA256);
            }
        }
        p
    });
    KeyWrappingData {
        method: WrappingMethod::Encrypt,
        key_uid: Some(uid.to_string()),
        params,
        mac_signature: false,
        attribute_names: false,
        encoding: None,
    }
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
    /// Wrap the key with this key before it leaves the KMS (needs the encrypt right and the
    /// wrap-key usage on it); the file then holds the wrapped bytes.
    #[arg(long)]
    pub wrap_key_id: Option<String>,
    /// Wrapping construction (default: RFC 5649 for an AES key, RSA-OAEP SHA-256 for RSA).
    #[arg(long, value_enum, requires = "wrap_key_id")]
    pub wrapping_algorithm: Option<WrappingAlgorithm>,
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

fn algorithm(a: SymAlgorithm) -> CryptographicAlgorithm {
    match a {
        SymAlgorithm::Aes => CryptographicAlgorithm::AES,
        SymAlgorithm::Chacha20 => CryptographicAlgorithm::ChaCha20,
    }
}

/// Default usage: encrypt, decrypt, wrap-key, unwrap-key, key-agreement.
const DEFAULT_USAGE: u32 = 2108;

fn common_attributes(
    alg: SymAlgorithm,
    length: i32,
    usage: &[String],
    tags: &[String],
) -> Result<Attributes, CliError> {
    let mask = if usage.is_empty() {
        DEFAULT_USAGE
    } else {
        usage_mask(usage)?
    };
    Ok(Attributes {
        cryptographic_algorithm: Some(algorithm(alg)),
        cryptographic_length: Some(length),
        cryptographic_usage_mask: Some(mask),
        key_format_type: Some(KeyFormatType::TransparentSymmetricKey),
        object_type: Some(ObjectType::SymmetricKey),
        tags: tags.to_vec(),
        ..Attributes::default()
    })
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
        attrs.activation_date = Some(now());
    }
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
        format!("created symmetric key {uid}"),
        json!({"unique_identifier": uid}),
    ))
}

fn import(ctx: &Ctx, a: &ImportArgs) -> Result<Output, CliError> {
    // Moved into the KeyBlock, which wipes it.
    let key = read_file(&a.file)?;
    let length =
        i32::try_from(key.len() * 8).map_err(|_| CliError::Usage("key file too large".into()))?;
    let mut attrs = common_attributes(a.algorithm, length, &a.usage, &a.tags)?;
    attrs.activation_date = Some(now());
    let wrapping = a
        .unwrap_key_id
        .as_deref()
        .map(|u| wrapping_data(u, a.wrapping_algorithm));
    if wrapping.is_some() {
        // The length is the unwrapped key's: the KMS sets it.
        attrs.cryptographic_length = None;
    }
    let object = KeyBlock {
        key_format_type: if wrapping.is_some() {
            KeyFormatType::Raw
        } else {
            KeyFormatType::TransparentSymmetricKey
        },
        material: key,
        curve: None,
        cryptographic_algorithm: Some(algorithm(a.algorithm)),
        cryptographic_length: if wrapping.is_some() {
            None
        } else {
            Some(length)
        },
        attributes: None,
        wrapping,
    }
    .to_object(ObjectType::SymmetricKey);
    let request = Ttlv::structure(
        "Import",
        vec![
            Ttlv::text("UniqueIdentifier", a.key_id.as_deref().unwrap_or("")),
            ObjectType::SymmetricKey.to_ttlv(),
            Ttlv::boolean("ReplaceExisting", false),
            attrs.to_ttlv("Attributes"),
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
pub fn get(ctx: &Ctx, uid: &str, key_format: Option<KeyFormatType>) -> Result<Ttlv, CliError> {
    let mut fields = vec![Ttlv::text("UniqueIdentifier", uid)];
    if let Some(f) = key_format {
        fields.push(f.to_ttlv());
    }
    ctx.client()?.kmip(&Ttlv::structure("Get", fields))
}

/// `Get` the key in `format`, wrapped by the key `wrap_uid` (with `alg`, or the KMS's default
/// for that key), and return the response.
pub fn get_wrapped(
    ctx: &Ctx,
    uid: &str,
    format: KeyFormatType,
    wrap_uid: &str,
    alg: Option<WrappingAlgorithm>,
) -> Result<Ttlv, CliError> {
    let spec = wrapping_data(wrap_uid, alg).to_ttlv();
    let spec = Ttlv::structure("KeyWrappingSpecification", spec.children().to_vec());
    ctx.client()?.kmip(&Ttlv::structure(
        "Get",
        vec![Ttlv::text("UniqueIdentifier", uid), format.to_ttlv(), spec],
    ))
}

/// The whole `GetResponse` as pretty JSON TTLV (`--format json` exports).
pub fn response_file(response: &Ttlv) -> Result<zeroize::Zeroizing<Vec<u8>>, CliError> {
    serde_json::to_vec_pretty(&to_json_value(response))
        .map(zeroize::Zeroizing::new)
        .map_err(|e| CliError::Response(e.to_string()))
}

fn export(ctx: &Ctx, a: &ExportArgs) -> Result<Output, CliError> {
    let uid =
        uid_or_tags(a.key_id.as_deref(), &a.tags).map_err(|e| CliError::Usage(e.to_string()))?;
    let response = match &a.wrap_key_id {
        None => get(ctx, &uid, Some(KeyFormatType::TransparentSymmetricKey))?,
        Some(w) => get_wrapped(ctx, &uid, KeyFormatType::Raw, w, a.wrapping_algorithm)?,
    };
    let got = response_uid(&response, "GetResponse")?;
    match a.format {
        ExportFormat::Json => write_file(&a.file, &response_file(&response)?)?,
        ExportFormat::Raw => {
            // TransparentSymmetricKey: KeyMaterial{Key}; Raw: KeyMaterial is the bytes; wrapped:
            // KeyValue is the wrapped bytes.
            let key = KeyBlock::parse_object(&response).map_err(|e| bad_field("GetResponse", e))?;
            write_file(&a.file, &key.material)?;
        }
    }
    Ok(Output::new(
        format!("exported {got} to {}", a.file.display()),
        json!({"unique_identifier": got, "file": a.file}),
    ))
}

fn rekey(ctx: &Ctx, uid: &str) -> Result<Output, CliError> {
    let request = Ttlv::structure("ReKey", vec![Ttlv::text("UniqueIdentifier", uid)]);
    let response = ctx.client()?.kmip(&request)?;
    let new = response_uid(&response, "ReKeyResponse")?;
    Ok(Output::new(
        format!("re-keyed {uid}: new key {new}"),
        json!({"unique_identifier": new}),
    ))
}

fn crypto_parameters(mode: AeadMode) -> Ttlv {
    let (alg, block) = match mode {
        AeadMode::AesGcm => (CryptographicAlgorithm::AES, Some(BlockCipherMode::GCM)),
        AeadMode::AesGcmSiv => (CryptographicAlgorithm::AES, Some(BlockCipherMode::GCMSIV)),
        AeadMode::Chacha20Poly1305 => (CryptographicAlgorithm::ChaCha20Poly1305, None),
    };
    let mut params: Vec<Ttlv> = block.map(BlockCipherMode::to_ttlv).into_iter().collect();
    params.push(alg.to_ttlv());
    Ttlv::structure("CryptographicParameters", params)
}

fn encrypt(ctx: &Ctx, a: &CryptArgs) -> Result<Output, CliError> {
    let uid = uid_or_tags(a.key.as_deref(), &a.tags).map_err(|e| CliError::Usage(e.to_string()))?;
    let data = zeroize::Zeroizing::new(read_file(&a.input)?);
    let mut fields = vec![Ttlv::text("UniqueIdentifier", &uid)];
    if let Some(m) = a.mode {
        fields.push(crypto_parameters(m));
    }
    fields.push(Ttlv::bytes("Data", &data));
    let response = ctx.client()?.kmip(&Ttlv::structure("Encrypt", fields))?;
    let field = |tag: &'static str| {
        response
            .req(tag)
            .and_then(|t| t.as_bytes(tag))
            .map_err(|e| bad_field("EncryptResponse", e))
    };
    let ciphertext = field("Data")?;
    // KMIP 2.1 spelling, or older Cosmian servers'.
    let nonce = field("IVCounterNonce").or_else(|_| field("IvCounterNonce"))?;
    let tag = field("AuthenticatedEncryptionTag")?;
    if nonce.len() != NONCE_LEN || tag.len() != TAG_LEN {
        return Err(CliError::Response(format!(
            "EncryptResponse: nonce of {} bytes and tag of {} bytes (expected {NONCE_LEN} and {TAG_LEN})",
            nonce.len(),
            tag.len()
        )));
    }
    let mut out = nonce.to_vec();
    out.extend_from_slice(ciphertext);
    out.extend_from_slice(tag);
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
    let uid = uid_or_tags(a.key.as_deref(), &a.tags).map_err(|e| CliError::Usage(e.to_string()))?;
    let data = read_file(&a.input)?;
    if data.len() < NONCE_LEN + TAG_LEN {
        return Err(CliError::Usage(format!(
            "{}: too short to hold a {NONCE_LEN}-byte nonce and a {TAG_LEN}-byte tag",
            a.input.display()
        )));
    }
    let (nonce, rest) = data.split_at(NONCE_LEN);
    let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
    let mut fields = vec![Ttlv::text("UniqueIdentifier", &uid)];
    if let Some(m) = a.mode {
        fields.push(crypto_parameters(m));
    }
    fields.push(Ttlv::bytes("Data", ciphertext));
    fields.push(Ttlv::bytes("IVCounterNonce", nonce));
    fields.push(Ttlv::bytes("AuthenticatedEncryptionTag", tag));
    let response = ctx.client()?.kmip(&Ttlv::structure("Decrypt", fields))?;
    // The response wipes the plaintext when dropped.
    let plaintext = response
        .req("Data")
        .and_then(|t| t.as_bytes("Data"))
        .map_err(|e| bad_field("DecryptResponse", e))?;
    write_file(&a.output, plaintext)?;
    Ok(Output::new(
        format!(
            "decrypted {} into {}",
            a.input.display(),
            a.output.display()
        ),
        json!({"unique_identifier": response_uid(&response, "DecryptResponse")?, "file": a.output}),
    ))
}
