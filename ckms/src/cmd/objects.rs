//! `ckms locate`, `ckms get-attributes`, `ckms set-attribute`.

use clap::Args;
use kms::kmip::types::{CryptographicAlgorithm, NameType, ObjectType, State};
use serde_json::json;

use super::{Ctx, Output, bad_field, response_uid};
use crate::error::CliError;
use crate::kmip::{Attributes, Ttlv, render, tag_attribute, to_json_value, uid_or_tags};

/// `locate` options: every given criterion must match.
#[derive(Args, Debug)]
pub struct LocateArgs {
    /// Tag (repeatable: objects carrying all of them).
    #[arg(long = "tag", short = 't')]
    pub tags: Vec<String>,
    /// Object type (`SymmetricKey`, `PrivateKey`, `PublicKey`, ...).
    #[arg(long = "type")]
    pub object_type: Option<String>,
    /// Cryptographic algorithm (`AES`, `ChaCha20`, `ECDSA`, `Ed25519`, ...).
    #[arg(long)]
    pub algorithm: Option<String>,
    /// State (`PreActive`, `Active`, `Deactivated`, `Compromised`, `Destroyed`, ...).
    #[arg(long)]
    pub state: Option<String>,
    /// Name attribute.
    #[arg(long)]
    pub name: Option<String>,
}

/// `get-attributes` options.
#[derive(Args, Debug)]
pub struct GetAttributesArgs {
    /// Object unique identifier.
    pub id: Option<String>,
    /// Select the object by tag instead (repeatable).
    #[arg(long = "tag", short = 't')]
    pub tags: Vec<String>,
}

/// `set-attribute` options: give one or more attributes to set.
#[derive(Args, Debug)]
pub struct SetAttributeArgs {
    /// Object unique identifier.
    pub id: String,
    /// Set the Name attribute.
    #[arg(long)]
    pub name: Option<String>,
    /// Set the tags (repeatable; replaces the tag list).
    #[arg(long = "tag", short = 't')]
    pub tags: Vec<String>,
    /// Set the ActivationDate (Unix seconds).
    #[arg(long)]
    pub activation_date: Option<i64>,
}

fn name_attribute(name: &str) -> Ttlv {
    Ttlv::structure(
        "Name",
        vec![
            Ttlv::text("NameValue", name),
            NameType::UninterpretedTextString.to_ttlv(),
        ],
    )
}

/// An enumeration value named on the command line (spec or Cosmian spelling, any case).
fn named<T>(value: &str, what: &str, parse: fn(&str) -> Option<T>) -> Result<T, CliError> {
    parse(value).ok_or_else(|| CliError::Usage(format!("unknown {what} `{value}`")))
}

/// Run `locate`.
pub fn locate(ctx: &Ctx, a: &LocateArgs) -> Result<Output, CliError> {
    let attrs = Attributes {
        object_type: a
            .object_type
            .as_deref()
            .map(|t| named(t, "object type", ObjectType::from_name))
            .transpose()?,
        cryptographic_algorithm: a
            .algorithm
            .as_deref()
            .map(|t| named(t, "algorithm", CryptographicAlgorithm::from_name))
            .transpose()?,
        state: a
            .state
            .as_deref()
            .map(|t| named(t, "state", State::from_name))
            .transpose()?,
        names: a.name.iter().cloned().collect(),
        tags: a.tags.clone(),
        ..Attributes::default()
    };
    let request = Ttlv::structure("Locate", vec![attrs.to_ttlv("Attributes")]);
    let response = ctx.client()?.kmip(&request)?;
    let ids = response
        .all("UniqueIdentifier")
        .map(|t| t.as_text("UniqueIdentifier").map(str::to_owned))
        .collect::<Result<Vec<String>, _>>()
        .map_err(|e| bad_field("LocateResponse", e))?;
    let human = if ids.is_empty() {
        "no object found".to_owned()
    } else {
        ids.join("\n")
    };
    Ok(Output::new(human, json!({"unique_identifiers": ids})))
}

/// Run `get-attributes`.
pub fn get_attributes(ctx: &Ctx, a: &GetAttributesArgs) -> Result<Output, CliError> {
    let uid = uid_or_tags(a.id.as_deref(), &a.tags).map_err(|e| CliError::Usage(e.to_string()))?;
    let request = Ttlv::structure("GetAttributes", vec![Ttlv::text("UniqueIdentifier", &uid)]);
    let response = ctx.client()?.kmip(&request)?;
    let what = "GetAttributesResponse";
    let attrs = response.req("Attributes").map_err(|e| bad_field(what, e))?;
    let uid = response_uid(&response, what)?;
    let mut lines = vec![format!("UniqueIdentifier: {uid}")];
    for a in attrs.children() {
        if a.tag == "VendorAttributes" {
            continue;
        }
        lines.push(format!("{}: {}", a.tag, render(a)));
    }
    // The Cosmian `tag` vendor attribute, decoded by the core's Attributes. Display only: attributes this
    // client cannot interpret are still listed above.
    let tags = Attributes::parse(attrs)
        .map(|parsed| parsed.tags)
        .unwrap_or_default();
    if !tags.is_empty() {
        lines.push(format!("Tags: {}", tags.join(", ")));
    }
    let mut json = json!({"unique_identifier": uid, "attributes": to_json_value(attrs)});
    if !tags.is_empty() {
        json["tags"] = json!(tags);
    }
    Ok(Output::new(lines.join("\n"), json))
}

/// Run `set-attribute` (one SetAttribute request per attribute given).
pub fn set_attribute(ctx: &Ctx, a: &SetAttributeArgs) -> Result<Output, CliError> {
    let mut new_attributes = Vec::new();
    if let Some(n) = &a.name {
        new_attributes.push(name_attribute(n));
    }
    if !a.tags.is_empty() {
        // SetAttribute carries one attribute: the vendor attribute structure itself.
        new_attributes.push(tag_attribute(&a.tags));
    }
    if let Some(t) = a.activation_date {
        new_attributes.push(Ttlv::datetime("ActivationDate", t));
    }
    if new_attributes.is_empty() {
        return Err(CliError::Usage(
            "nothing to set: give --name, --tag or --activation-date".into(),
        ));
    }
    let mut client = ctx.client()?;
    for attr in new_attributes {
        let request = Ttlv::structure(
            "SetAttribute",
            vec![
                Ttlv::text("UniqueIdentifier", &a.id),
                Ttlv::structure("NewAttribute", vec![attr]),
            ],
        );
        client.kmip(&request)?;
    }
    Ok(Output::new(
        format!("attributes set on {}", a.id),
        json!({"unique_identifier": a.id}),
    ))
}
