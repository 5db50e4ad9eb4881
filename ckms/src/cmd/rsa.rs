//! `ckms rsa ...`: RSA key pairs (2048/3072/4096 bits), encryption (OAEP, PKCS#1 v1.5) and
//! signatures (PSS, PKCS#1 v1.5).

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use kms::kmip::types::{
    CryptographicAlgorithm, HashingAlgorithm, KeyFormatType, ObjectType, PaddingMethod,
};
use serde_json::json;

use super::ec::{SignArgs, VerifyArgs};
use super::keys::{self, UnwrapArgs, WrapArgs};
use super::sym::{KeyRef, RevokeArgs};
use super::{Ctx, Output, bad_field, now, response_text, usage_mask};
use crate::error::{CliError, read_file, write_file};
use crate::kmip::{Attributes, Ttlv, uid_or_tags};

/// `ckms rsa`.
#[derive(Subcommand, Debug)]
pub enum RsaCommand {
    /// Manage key pairs.
    #[command(subcommand)]
    Keys(RsaKeys),
    /// Encrypt a (short) file to an RSA public key held by the KMS.
    #[command(
        long_about = "Encrypt a short file (at most the key size minus the padding: 190 bytes \
for RSA-2048 with OAEP SHA-256) to an RSA public key held by the KMS.\n\n\
Examples:\n  ckms rsa encrypt --key <public key id> -i secret.bin -o secret.enc\n  \
ckms rsa encrypt --key <id> --hash sha512 --label app-v1 -i secret.bin -o secret.enc"
    )]
    Encrypt(CipherArgs),
    /// Decrypt a file with an RSA private key held by the KMS.
    #[command(
        long_about = "Decrypt with an RSA private key held by the KMS, with the padding, hash \
and label used to encrypt.\n\nPKCS#1 v1.5 decryption never reports a padding error (implicit \
rejection): a wrong ciphertext yields unrelated bytes, so prefer OAEP.\n\n\
Example:\n  ckms rsa decrypt --key <private key id> -i secret.enc -o secret.bin"
    )]
    Decrypt(CipherArgs),
    /// Sign a file with an RSA private key held by the KMS.
    #[command(
        long_about = "Sign a file with an RSA private key held by the KMS (default RSASSA-PSS \
with SHA-256).\n\nExample:\n  ckms rsa sign --key <private key id> --scheme pkcs1v15 -i doc.pdf -o doc.sig"
    )]
    Sign(RsaSignArgs),
    /// Verify a signature with an RSA public key held by the KMS (exit status 1 if invalid).
    #[command(
        long_about = "Verify an RSA signature with a key held by the KMS; prints `valid` or \
`invalid`, exit status 0 only when valid.\n\nExample:\n  ckms rsa verify --key <public key id> -i doc.pdf -s doc.sig"
    )]
    Verify(RsaVerifyArgs),
}

/// `ckms rsa keys`.
#[derive(Subcommand, Debug)]
pub enum RsaKeys {
    /// Create a key pair (activated at once); prints both ids.
    #[command(
        long_about = "Create an RSA key pair in the KMS and print the private and public key \
ids. The private key may sign and decrypt, the public key verify and encrypt.\n\n\
Examples:\n  ckms rsa keys create\n  ckms rsa keys create --size 4096 --tag backup"
    )]
    Create(RsaCreateArgs),
    /// Import a private key (PKCS#8) or a public key (SPKI), PEM or DER, or a wrapped private key.
    #[command(
        long_about = "Import an RSA key (1024 to 4096 bits; operations need 2048) from a PEM or \
DER file: a PKCS#8 private key or an SPKI (`PUBLIC KEY`) public key.\n\n\
With --unwrap-key-id the file holds a private key wrapped with that key (as `ckms rsa keys export \
--wrap-key-id` writes it): the KMS unwraps it and stores the PKCS#8 key inside, so the key never \
travels in the clear; --wrapping-algorithm must be the one used to wrap.\n\n\
Examples:\n  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:3072 -out k.pem && ckms rsa keys import k.pem\n  \
ckms rsa keys import k.wrapped --unwrap-key-id <AES key id>"
    )]
    Import(RsaImportArgs),
    /// Export a key as DER (PKCS#1, PKCS#8 or SPKI) or as the KMIP JSON object, optionally wrapped.
    #[command(
        long_about = "Export an RSA key to a file: a private key as PKCS#8 (default) or PKCS#1 \
DER, a public key as SPKI (default) or PKCS#1 DER; with --json also as the KMIP Transparent \
RSA key (--format transparent: modulus, exponents and primes as Big Integers).\n\n\
With --wrap-key-id the KMS wraps the key under another key before it leaves (an AES key with the \
wrap-key usage: RFC 5649 by default, RFC 3394 or AES-GCM with --wrapping-algorithm; or an RSA \
public key: OAEP SHA-256, for keys short enough) and the file holds the wrapped DER. You need the \
encrypt right on the wrapping key. A key marked Sensitive can only be exported wrapped; the \
transparent format is never wrapped.\n\n\
Examples:\n  ckms rsa keys export --key-id <public key id> --format pkcs1 pub.der\n  \
ckms rsa keys export --key-id <private key id> --wrap-key-id <AES key id> k.wrapped"
    )]
    Export(RsaExportArgs),
    /// Revoke a key.
    Revoke(RevokeArgs),
    /// Destroy a key.
    Destroy(KeyRef),
}

/// RSA modulus sizes.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// 2048 bits.
    #[value(name = "2048")]
    S2048,
    /// 3072 bits.
    #[value(name = "3072")]
    S3072,
    /// 4096 bits.
    #[value(name = "4096")]
    S4096,
}

/// Hash functions for OAEP and signatures.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    /// SHA-1 (OAEP only in new designs).
    Sha1,
    /// SHA-224.
    Sha224,
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl Hash {
    fn kmip(self) -> HashingAlgorithm {
        match self {
            Hash::Sha1 => HashingAlgorithm::SHA1,
            Hash::Sha224 => HashingAlgorithm::SHA224,
            Hash::Sha256 => HashingAlgorithm::SHA256,
            Hash::Sha384 => HashingAlgorithm::SHA384,
            Hash::Sha512 => HashingAlgorithm::SHA512,
        }
    }
}

/// Encryption paddings.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// RSAES-OAEP (RFC 8017 §7.1).
    Oaep,
    /// RSAES-PKCS1-v1_5 (legacy).
    Pkcs1v15,
}

/// Signature schemes.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// RSASSA-PSS (RFC 8017 §8.1).
    Pss,
    /// RSASSA-PKCS1-v1_5.
    Pkcs1v15,
}

/// Export formats.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// PKCS#1 RSAPrivateKey / RSAPublicKey DER.
    Pkcs1,
    /// PKCS#8 PrivateKeyInfo DER (private keys).
    Pkcs8,
    /// SubjectPublicKeyInfo DER (public keys).
    Spki,
    /// KMIP Transparent RSA Private/Public Key (Modulus, exponents, primes as Big Integers);
    /// a KMIP structure, so only with --json.
    Transparent,
}

/// `rsa keys create` options.
#[derive(Args, Debug)]
pub struct RsaCreateArgs {
    /// Modulus size in bits.
    #[arg(long, value_enum, default_value = "2048")]
    pub size: Size,
    /// Tag to attach to both keys (repeatable).
    #[arg(long = "tag", short = 't')]
    pub tags: Vec<String>,
}

/// `rsa keys export` options.
#[derive(Args, Debug)]
pub struct RsaExportArgs {
    /// Key unique identifier.
    #[arg(long = "key-id", short = 'k')]
    pub key_id: Option<String>,
    /// Output file.
    pub file: PathBuf,
    /// Select the key by tag instead (repeatable).
    #[arg(long = "tag", short = 't')]
    pub tags: Vec<String>,
    /// Format (default: PKCS#8 DER for a private key, SPKI DER for a public key;
    /// `transparent` only with --json).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Write the whole KMIP JSON `GetResponse` instead of the DER key.
    #[arg(long)]
    pub json: bool,
    /// Wrapping.
    #[command(flatten)]
    pub wrap: WrapArgs,
}

/// `rsa keys import` options.
#[derive(Args, Debug)]
pub struct RsaImportArgs {
    /// PEM or DER file (or the wrapped bytes, with --unwrap-key-id).
    pub file: PathBuf,
    /// Tag to attach (repeatable).
    #[arg(long = "tag", short = 't')]
    pub tags: Vec<String>,
    /// Unique identifier to give the key (default: chosen by the server).
    #[arg(long)]
    pub key_id: Option<String>,
    /// A wrapped private key to unwrap.
    #[command(flatten)]
    pub unwrap: UnwrapArgs,
}

/// `rsa encrypt` / `rsa decrypt` options.
#[derive(Args, Debug)]
pub struct CipherArgs {
    /// Key id (public key to encrypt, private key to decrypt).
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
    /// Padding.
    #[arg(long, value_enum, default_value = "oaep")]
    pub padding: Padding,
    /// OAEP hash (MGF1 uses the same unless --mgf-hash says otherwise).
    #[arg(long, value_enum, default_value = "sha256")]
    pub hash: Hash,
    /// OAEP MGF1 hash.
    #[arg(long, value_enum)]
    pub mgf_hash: Option<Hash>,
    /// OAEP label (UTF-8 text).
    #[arg(long)]
    pub label: Option<String>,
}

/// `rsa sign` options.
#[derive(Args, Debug)]
pub struct RsaSignArgs {
    /// Key and files.
    #[command(flatten)]
    pub common: SignArgs,
    /// Scheme.
    #[arg(long, value_enum, default_value = "pss")]
    pub scheme: Scheme,
    /// Hash.
    #[arg(long, value_enum, default_value = "sha256")]
    pub hash: Hash,
}

/// `rsa verify` options.
#[derive(Args, Debug)]
pub struct RsaVerifyArgs {
    /// Key and files.
    #[command(flatten)]
    pub common: VerifyArgs,
    /// Scheme.
    #[arg(long, value_enum, default_value = "pss")]
    pub scheme: Scheme,
    /// Hash.
    #[arg(long, value_enum, default_value = "sha256")]
    pub hash: Hash,
}

/// Run `ckms rsa ...`.
pub fn run(ctx: &Ctx, cmd: RsaCommand) -> Result<Output, CliError> {
    match cmd {
        RsaCommand::Keys(RsaKeys::Create(a)) => create(ctx, &a),
        RsaCommand::Keys(RsaKeys::Import(a)) => import(ctx, &a),
        RsaCommand::Keys(RsaKeys::Export(a)) => export(ctx, &a),
        RsaCommand::Keys(RsaKeys::Revoke(a)) => {
            super::revoke(ctx, &a.key.uid()?, a.reason.as_deref(), a.compromised)
        }
        RsaCommand::Keys(RsaKeys::Destroy(k)) => super::destroy(ctx, &k.uid()?),
        RsaCommand::Encrypt(a) => cipher(ctx, &a, true),
        RsaCommand::Decrypt(a) => cipher(ctx, &a, false),
        RsaCommand::Sign(a) => sign(ctx, &a),
        RsaCommand::Verify(a) => verify(ctx, &a),
    }
}

fn create(ctx: &Ctx, a: &RsaCreateArgs) -> Result<Output, CliError> {
    let bits = match a.size {
        Size::S2048 => 2048,
        Size::S3072 => 3072,
        Size::S4096 => 4096,
    };
    let common = Attributes {
        cryptographic_algorithm: Some(CryptographicAlgorithm::RSA),
        cryptographic_length: Some(bits),
        activation_date: Some(now()),
        tags: a.tags.clone(),
        ..Attributes::default()
    };
    let usage = |names: &[&str]| -> Result<Attributes, CliError> {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        Ok(Attributes {
            cryptographic_usage_mask: Some(usage_mask(&names)?),
            ..Attributes::default()
        })
    };
    let request = Ttlv::structure(
        "CreateKeyPair",
        vec![
            common.to_ttlv("CommonAttributes"),
            usage(&["sign", "decrypt"])?.to_ttlv("PrivateKeyAttributes"),
            usage(&["verify", "encrypt"])?.to_ttlv("PublicKeyAttributes"),
        ],
    );
    let response = ctx.client()?.kmip(&request)?;
    let what = "CreateKeyPairResponse";
    let private = response_text(&response, "PrivateKeyUniqueIdentifier", what)?;
    let public = response_text(&response, "PublicKeyUniqueIdentifier", what)?;
    Ok(Output::new(
        format!("created RSA-{bits} key pair\n  private key: {private}\n  public key:  {public}"),
        json!({"private_key_unique_identifier": private, "public_key_unique_identifier": public}),
    ))
}

fn import(ctx: &Ctx, a: &RsaImportArgs) -> Result<Output, CliError> {
    let data = zeroize::Zeroizing::new(read_file(&a.file)?);
    // A wrapped file is opaque: it holds a private key (PKCS#8) once unwrapped.
    let (object_type, format, der) = if a.unwrap.unwrap_key_id.is_some() {
        (ObjectType::PrivateKey, KeyFormatType::PKCS8, data)
    } else {
        keys::parse_key_file(&data, &a.file)?
    };
    let usage: &[String] = if object_type == ObjectType::PrivateKey {
        &["sign".to_owned(), "decrypt".to_owned()]
    } else {
        &["verify".to_owned(), "encrypt".to_owned()]
    };
    keys::import(
        ctx,
        keys::Import {
            object_type,
            format,
            material: der.to_vec(),
            attributes: Attributes {
                cryptographic_algorithm: Some(CryptographicAlgorithm::RSA),
                cryptographic_usage_mask: Some(usage_mask(usage)?),
                activation_date: Some(now()),
                tags: a.tags.clone(),
                ..Attributes::default()
            },
            key_id: a.key_id.as_deref(),
            unwrap: &a.unwrap,
        },
    )
}

fn export(ctx: &Ctx, a: &RsaExportArgs) -> Result<Output, CliError> {
    let uid =
        uid_or_tags(a.key_id.as_deref(), &a.tags).map_err(|e| CliError::Usage(e.to_string()))?;
    if a.format == Some(Format::Transparent) {
        if !a.json {
            return Err(CliError::Usage(
                "--format transparent is a KMIP structure, not DER: add --json".into(),
            ));
        }
        if a.wrap.wrap_key_id.is_some() {
            return Err(CliError::Usage(
                "--format transparent cannot be wrapped: use pkcs1, pkcs8 or spki".into(),
            ));
        }
    }
    // Without --format, ask for the DER form of the key's type (not its stored attribute).
    let private = || Ok::<_, CliError>(keys::object_type(ctx, &uid)? == ObjectType::PrivateKey);
    let format = match a.format {
        Some(Format::Pkcs1) => KeyFormatType::PKCS1,
        Some(Format::Pkcs8) => KeyFormatType::PKCS8,
        Some(Format::Spki) => KeyFormatType::X509,
        Some(Format::Transparent) if private()? => KeyFormatType::TransparentRSAPrivateKey,
        Some(Format::Transparent) => KeyFormatType::TransparentRSAPublicKey,
        None if private()? => KeyFormatType::PKCS8,
        None => KeyFormatType::X509,
    };
    keys::export(ctx, &uid, Some(format), a.json, &a.wrap, &a.file)
}

fn cipher(ctx: &Ctx, a: &CipherArgs, encrypt: bool) -> Result<Output, CliError> {
    let uid = uid_or_tags(a.key.as_deref(), &a.tags).map_err(|e| CliError::Usage(e.to_string()))?;
    let data = zeroize::Zeroizing::new(read_file(&a.input)?);
    let mut p = vec![CryptographicAlgorithm::RSA.to_ttlv()];
    match a.padding {
        Padding::Oaep => {
            p.push(PaddingMethod::OAEP.to_ttlv());
            p.push(a.hash.kmip().to_ttlv());
            p.push(Ttlv::enumeration("MaskGenerator", "MGF1"));
            p.push(Ttlv::enumeration(
                "MaskGeneratorHashingAlgorithm",
                a.mgf_hash.unwrap_or(a.hash).kmip().name(),
            ));
            if let Some(l) = &a.label {
                p.push(Ttlv::bytes("PSource", l.as_bytes()));
            }
        }
        Padding::Pkcs1v15 => {
            if a.label.is_some() || a.mgf_hash.is_some() {
                return Err(CliError::Usage(
                    "--label and --mgf-hash are OAEP options".into(),
                ));
            }
            p.push(PaddingMethod::PKCS1v15.to_ttlv());
        }
    }
    let op = if encrypt { "Encrypt" } else { "Decrypt" };
    let request = Ttlv::structure(
        op,
        vec![
            Ttlv::text("UniqueIdentifier", &uid),
            Ttlv::structure("CryptographicParameters", p),
            Ttlv::bytes("Data", &data),
        ],
    );
    let response = ctx.client()?.kmip(&request)?;
    let what = format!("{op}Response");
    let out = zeroize::Zeroizing::new(
        response
            .req("Data")
            .and_then(|t| t.as_bytes("Data"))
            .map_err(|e| bad_field(&what, e))?
            .to_vec(),
    );
    write_file(&a.output, &out)?;
    Ok(Output::new(
        format!(
            "{} {} bytes to {}",
            if encrypt { "encrypted" } else { "decrypted" },
            data.len(),
            a.output.display()
        ),
        json!({"unique_identifier": uid, "file": a.output}),
    ))
}

fn sig_params(scheme: Scheme, hash: Hash) -> Ttlv {
    Ttlv::structure(
        "CryptographicParameters",
        vec![
            CryptographicAlgorithm::RSA.to_ttlv(),
            match scheme {
                Scheme::Pss => PaddingMethod::PSS.to_ttlv(),
                Scheme::Pkcs1v15 => PaddingMethod::PKCS1v15.to_ttlv(),
            },
            hash.kmip().to_ttlv(),
        ],
    )
}

fn sign(ctx: &Ctx, a: &RsaSignArgs) -> Result<Output, CliError> {
    super::ec::sign_with(ctx, &a.common, Some(sig_params(a.scheme, a.hash)))
}

fn verify(ctx: &Ctx, a: &RsaVerifyArgs) -> Result<Output, CliError> {
    super::ec::verify_with(ctx, &a.common, Some(sig_params(a.scheme, a.hash)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transparent_export_needs_json() {
        let ctx = Ctx {
            settings: crate::config::Settings::default(),
        };
        let args = RsaExportArgs {
            key_id: Some("k".into()),
            file: PathBuf::from("/nonexistent/out"),
            tags: Vec::new(),
            format: Some(Format::Transparent),
            json: false,
            wrap: WrapArgs::default(),
        };
        // Refused before any request: no server is configured here.
        assert!(matches!(export(&ctx, &args), Err(CliError::Usage(m)) if m.contains("--json")));
    }

    #[test]
    fn transparent_export_is_never_wrapped() {
        let ctx = Ctx {
            settings: crate::config::Settings::default(),
        };
        let args = RsaExportArgs {
            key_id: Some("k".into()),
            file: PathBuf::from("/nonexistent/out"),
            tags: Vec::new(),
            format: Some(Format::Transparent),
            json: true,
            wrap: WrapArgs {
                wrap_key_id: Some("kek".into()),
                wrapping_algorithm: None,
            },
        };
        // Refused before any request: the KMS would answer KeyFormatTypeNotSupported.
        assert!(
            matches!(export(&ctx, &args), Err(CliError::Usage(m)) if m.contains("cannot be wrapped"))
        );
    }
}
