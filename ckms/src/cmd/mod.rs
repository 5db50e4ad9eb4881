//! The KMIP and access-rights subcommands. Each returns an [`Output`]: a line for people and a
//! JSON value for `--json`.

pub mod access;
pub mod ec;
pub mod objects;
pub mod sym;

use serde_json::{Value, json};

use crate::client::KmsClient;
use crate::config::Settings;
use crate::error::CliError;
use crate::kmip::{TtlvExt, item};

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
pub const USAGE_BITS: &[(&str, i32)] = &[
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
pub fn usage_mask(names: &[String]) -> Result<i32, CliError> {
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

/// The UniqueIdentifier text of a response, or an error naming the response.
pub fn response_uid(response: &Value, what: &str) -> Result<String, CliError> {
    response
        .child("UniqueIdentifier")
        .and_then(TtlvExt::text)
        .map(str::to_owned)
        .ok_or_else(|| CliError::Response(format!("{what}: no UniqueIdentifier")))
}

/// `Revoke{UniqueIdentifier, RevocationReason{RevocationReasonCode, RevocationMessage?}}`.
pub fn revoke(
    ctx: &Ctx,
    uid: &str,
    reason: Option<&str>,
    compromised: bool,
) -> Result<Output, CliError> {
    let mut rr = vec![item::enumeration(
        "RevocationReasonCode",
        if compromised {
            "KeyCompromise"
        } else {
            "Unspecified"
        },
    )];
    if let Some(m) = reason {
        rr.push(item::text("RevocationMessage", m));
    }
    let request = item::structure(
        "Revoke",
        vec![
            item::text("UniqueIdentifier", uid),
            item::structure("RevocationReason", rr),
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
    let request = item::structure("Destroy", vec![item::text("UniqueIdentifier", uid)]);
    let response = ctx.client()?.kmip(&request)?;
    let uid = response_uid(&response, "DestroyResponse")?;
    Ok(Output::new(
        format!("destroyed {uid}"),
        json!({"unique_identifier": uid}),
    ))
}
