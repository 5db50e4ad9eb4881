//! What `ckms rsa keys` and `ckms ec keys` share: export of a key as DER or as the KMIP JSON
//! object, optionally wrapped by another key (`--wrap-key-id`), and import of a PEM/DER key or
//! of a wrapped private key the KMS unwraps (`--unwrap-key-id`).

use std::path::Path;

use clap::Args;
use kms::kmip::types::{KeyFormatType, ObjectType};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivatePkcs8KeyDer, SubjectPublicKeyInfoDer};
use serde_json::json;

use super::sym::{WrappingAlgorithm, get, get_wrapped, response_file, wrapping_data};
use super::{Ctx, Output, bad_field, response_uid};
use crate::error::{CliError, write_file};
use crate::kmip::{Attributes, KeyBlock, Ttlv};

/// `--wrap-key-id` / `--wrapping-algorithm` of `rsa|ec keys export`.
#[derive(Args, Debug, Default, Clone)]
pub struct WrapArgs {
    /// Wrap the key with this key before it leaves the KMS (an AES key or an RSA public key
    /// with the wrap-key usage; needs the encrypt right on it); the file then holds the
    /// wrapped DER (PKCS#8 for a private key, SPKI for a public key).
    #[arg(long)]
    pub wrap_key_id: Option<String>,
    /// Wrapping construction (default: RFC 5649 for an AES key, RSA-OAEP SHA-256 for RSA).
    #[arg(long, value_enum, requires = "wrap_key_id")]
    pub wrapping_algorithm: Option<WrappingAlgorithm>,
}

/// `--unwrap-key-id` / `--wrapping-algorithm` of `rsa|ec keys import`.
#[derive(Args, Debug, Default, Clone)]
pub struct UnwrapArgs {
    /// The file holds a private key wrapped with this key (as `keys export --wrap-key-id`
    /// writes it): the KMS unwraps it (needs the decrypt right and the unwrap-key usage on that
    /// key) and stores the PKCS#8 key inside.
    #[arg(long, visible_alias = "unwrap")]
    pub unwrap_key_id: Option<String>,
    /// How the file was wrapped (with --unwrap-key-id).
    #[arg(long, value_enum, requires = "unwrap_key_id")]
    pub wrapping_algorithm: Option<WrappingAlgorithm>,
}

/// Whether `uid` is a private or a public key, from its attributes (no key material is
/// fetched, so this works for a key that may only leave wrapped).
pub fn object_type(ctx: &Ctx, uid: &str) -> Result<ObjectType, CliError> {
    let request = Ttlv::structure("GetAttributes", vec![Ttlv::text("UniqueIdentifier", uid)]);
    let response = ctx.client()?.kmip(&request)?;
    let what = "GetAttributesResponse";
    let attrs = response.req("Attributes").map_err(|e| bad_field(what, e))?;
    match Attributes::parse(attrs)
        .map_err(|e| bad_field(what, e))?
        .object_type
    {
        Some(t @ (ObjectType::PrivateKey | ObjectType::PublicKey)) => Ok(t),
        Some(t) => Err(CliError::Usage(format!(
            "{uid} is a {}, not a private or public key",
            t.name()
        ))),
        None => Err(CliError::Response(format!("{what}: no ObjectType"))),
    }
}

/// The DER format a wrapped export asks for when the command names none: PKCS#8 for a private
/// key, SPKI for a public key (the Transparent formats are KMIP structures, which the KMS does
/// not wrap).
pub fn der_format(ctx: &Ctx, uid: &str) -> Result<KeyFormatType, CliError> {
    Ok(match object_type(ctx, uid)? {
        ObjectType::PrivateKey => KeyFormatType::PKCS8,
        _ => KeyFormatType::X509,
    })
}

/// Export `uid` in `format` (the server's choice when `None`) to `file`: the whole JSON
/// `GetResponse` with `json`, else the DER key bytes, or, wrapped, the wrapped bytes.
pub fn export(
    ctx: &Ctx,
    uid: &str,
    format: Option<KeyFormatType>,
    json: bool,
    wrap: &WrapArgs,
    file: &Path,
) -> Result<Output, CliError> {
    let response = match &wrap.wrap_key_id {
        None => get(ctx, uid, format)?,
        Some(w) => {
            let format = match format {
                Some(f) => f,
                None => der_format(ctx, uid)?,
            };
            get_wrapped(ctx, uid, format, w, wrap.wrapping_algorithm)?
        }
    };
    let got = response_uid(&response, "GetResponse")?;
    if json {
        write_file(file, &response_file(&response)?)?;
    } else {
        let key = KeyBlock::parse_object(&response).map_err(|e| bad_field("GetResponse", e))?;
        // The transparent formats are KMIP structures, not DER (wrapped bytes always are).
        if key.wrapping.is_none()
            && matches!(
                key.key_format_type,
                KeyFormatType::TransparentSymmetricKey
                    | KeyFormatType::TransparentECPrivateKey
                    | KeyFormatType::TransparentECPublicKey
                    | KeyFormatType::TransparentRSAPrivateKey
                    | KeyFormatType::TransparentRSAPublicKey
            )
        {
            return Err(CliError::Response("GetResponse: no DER KeyMaterial".into()));
        }
        write_file(file, &key.material)?;
    }
    let human = match &wrap.wrap_key_id {
        Some(w) => format!("exported {got} wrapped by {w} to {}", file.display()),
        None => format!("exported {got} to {}", file.display()),
    };
    Ok(Output::new(
        human,
        json!({"unique_identifier": got, "file": file, "wrapping_key_id": wrap.wrap_key_id}),
    ))
}

/// A key file's object type, format and DER: a PKCS#8 private key or an SPKI public key, PEM
/// or DER.
pub fn parse_key_file(
    data: &[u8],
    file: &Path,
) -> Result<(ObjectType, KeyFormatType, zeroize::Zeroizing<Vec<u8>>), CliError> {
    const PRIVATE: (ObjectType, KeyFormatType) = (ObjectType::PrivateKey, KeyFormatType::PKCS8);
    const PUBLIC: (ObjectType, KeyFormatType) = (ObjectType::PublicKey, KeyFormatType::X509);
    let ((object_type, format), der) = if data.starts_with(b"-----BEGIN") {
        if let Ok(k) = PrivatePkcs8KeyDer::from_pem_slice(data) {
            (PRIVATE, k.secret_pkcs8_der().to_vec())
        } else if let Ok(k) = SubjectPublicKeyInfoDer::from_pem_slice(data) {
            (PUBLIC, k.as_ref().to_vec())
        } else {
            return Err(CliError::Usage(format!(
                "{}: no PRIVATE KEY (PKCS#8) or PUBLIC KEY (SPKI) PEM block",
                file.display()
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
            Some(true) => (PRIVATE, data.to_vec()),
            Some(false) => (PUBLIC, data.to_vec()),
            None => {
                return Err(CliError::Usage(format!(
                    "{}: not a DER key",
                    file.display()
                )));
            }
        }
    };
    Ok((object_type, format, zeroize::Zeroizing::new(der)))
}

/// What [`import`] sends: the key's type, format, bytes (plain DER, or wrapped) and attributes.
pub struct Import<'a> {
    /// PrivateKey or PublicKey.
    pub object_type: ObjectType,
    /// The format of the (unwrapped) key bytes.
    pub format: KeyFormatType,
    /// The key bytes, or the wrapped bytes with `unwrap`.
    pub material: Vec<u8>,
    /// Attributes (algorithm, usage, tags, dates, ...).
    pub attributes: Attributes,
    /// Unique identifier to give the key (the server's choice when `None`).
    pub key_id: Option<&'a str>,
    /// The key that wrapped `material`, if any.
    pub unwrap: &'a UnwrapArgs,
}

/// `Import` a key; prints its uid.
pub fn import(ctx: &Ctx, i: Import<'_>) -> Result<Output, CliError> {
    let wrapping = i
        .unwrap
        .unwrap_key_id
        .as_deref()
        .map(|u| wrapping_data(u, i.unwrap.wrapping_algorithm));
    let mut attrs = i.attributes;
    attrs.key_format_type = Some(i.format);
    attrs.object_type = Some(i.object_type);
    if wrapping.is_some() {
        // The KMS reads the length from the unwrapped key.
        attrs.cryptographic_length = None;
    }
    // The KeyBlock wipes the bytes (a private key) when dropped.
    let object = KeyBlock {
        key_format_type: i.format,
        material: i.material,
        curve: None,
        cryptographic_algorithm: attrs.cryptographic_algorithm,
        cryptographic_length: attrs.cryptographic_length,
        attributes: None,
        wrapping,
    }
    .to_object(i.object_type);
    let request = Ttlv::structure(
        "Import",
        vec![
            Ttlv::text("UniqueIdentifier", i.key_id.unwrap_or("")),
            i.object_type.to_ttlv(),
            Ttlv::boolean("ReplaceExisting", false),
            attrs.to_ttlv("Attributes"),
            object,
        ],
    );
    let response = ctx.client()?.kmip(&request)?;
    let uid = response_uid(&response, "ImportResponse")?;
    Ok(Output::new(
        format!("imported {} {uid}", i.object_type.name().to_lowercase()),
        json!({"unique_identifier": uid}),
    ))
}
