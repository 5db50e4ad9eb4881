//! The KMIP and access-rights subcommands. Each returns an [`Output`]: a line for people and a
//! JSON value for `--json`.

pub mod access;
pub mod certs;
pub mod ec;
pub mod keys;
pub mod mac;
pub mod objects;
pub mod rsa;
pub mod sym;

use kms::kmip::types::RevocationReasonCode;
use serde_json::{Value, json};

use crate::client::KmsClient;
use crate::config::Settings;
use crate::error::CliError;
use crate::kmip::{FieldError, Ttlv};

/// What a command needs: the connection settings.
pub struct Ctx {
    /// Merged settings (flags over file).
    pub settings: Settings,
}

impl Ctx {
    /// A connected-on-demand KMS client.
    pub fn client(&self) -> Result<KmsClient, CliError> {
        Ok(KmsClient::new(self.settings.client()?))
    }
}

/// The result of a command.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// For people.
    pub human: String,
    /// For scripts (`--json`).
    pub json: Value,
}

impl Output {
    /// An output whose JSON form is `{"<key>": value}` and human form is `human`.
    pub fn new(human: impl Into<String>, json: Value) -> Self {
        Output {
            human: human.into(),
            json,
        }
    }
}

/// KMIP Cryptographic Usage Mask bits (KMIP 2.1 §11.15).
pub const USAGE_BITS: &[(&str, u32)] = &[
    ("sign", 0x1),
    ("verify", 0x2),
    ("encrypt", 0x4),
    ("decrypt", 0x8),
    ("wrap-key", 0x10),
    ("unwrap-key", 0x20),
    ("mac-generate", 0x80),
    ("mac-verify", 0x100),
    ("derive-key", 0x200),
    ("key-agreement", 0x800),
];

/// Parse `encrypt,decrypt` style usage names into a mask.
pub fn usage_mask(names: &[String]) -> Result<u32, CliError> {
    let mut mask = 0;
    for n in names {
        let bit = USAGE_BITS
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(n))
            .map(|(_, b)| *b)
            .ok_or_else(|| {
                let known: Vec<&str> = USAGE_BITS.iter().map(|(n, _)| *n).collect();
                CliError::Usage(format!("unknown usage `{n}` (known: {})", known.join(", ")))
            })?;
        mask |= bit;
    }
    Ok(mask)
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A response field that is missing or malformed, as a command error naming the response.
pub fn bad_field(what: &str, e: FieldError) -> CliError {
    CliError::Response(format!("{what}: {e}"))
}

/// The text of a required TextString child of a response (e.g. its UniqueIdentifier).
pub fn response_text(response: &Ttlv, tag: &'static str, what: &str) -> Result<String, CliError> {
    response
        .req(tag)
        .and_then(|t| t.as_text(tag))
        .map(str::to_owned)
        .map_err(|e| bad_field(what, e))
}

/// The UniqueIdentifier text of a response, or an error naming the response.
pub fn response_uid(response: &Ttlv, what: &str) -> Result<String, CliError> {
    response_text(response, "UniqueIdentifier", what)
}

/// `Revoke{UniqueIdentifier, RevocationReason{RevocationReasonCode, RevocationMessage?}}`.
pub fn revoke(
    ctx: &Ctx,
    uid: &str,
    reason: Option<&str>,
    compromised: bool,
) -> Result<Output, CliError> {
    let code = if compromised {
        RevocationReasonCode::KeyCompromise
    } else {
        RevocationReasonCode::Unspecified
    };
    let mut rr = vec![code.to_ttlv()];
    if let Some(m) = reason {
        rr.push(Ttlv::text("RevocationMessage", m));
    }
    let request = Ttlv::structure(
        "Revoke",
        vec![
            Ttlv::text("UniqueIdentifier", uid),
            Ttlv::structure("RevocationReason", rr),
        ],
    );
    let response = ctx.client()?.kmip(&request)?;
    let uid = response_uid(&response, "RevokeResponse")?;
    Ok(Output::new(
        format!("revoked {uid}"),
        json!({"unique_identifier": uid}),
    ))
}

/// `Destroy{UniqueIdentifier}`.
pub fn destroy(ctx: &Ctx, uid: &str) -> Result<Output, CliError> {
    let request = Ttlv::structure("Destroy", vec![Ttlv::text("UniqueIdentifier", uid)]);
    let response = ctx.client()?.kmip(&request)?;
    let uid = response_uid(&response, "DestroyResponse")?;
    Ok(Output::new(
        format!("destroyed {uid}"),
        json!({"unique_identifier": uid}),
    ))
}
