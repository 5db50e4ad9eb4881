//! `ckms locate`, `ckms get-attributes`, `ckms set-attribute`.

use clap::Args;
use serde_json::{Value, json};

use super::{Ctx, Output, response_uid};
use crate::error::CliError;
use crate::kmip::{TtlvExt, hex_decode, item, tags_attribute};

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

fn name_attribute(name: &str) -> Value {
    item::structure(
        "Name",
        vec![
            item::text("NameValue", name),
            item::enumeration("NameType", "UninterpretedTextString"),
        ],
    )
}

/// Run `locate`.
pub fn locate(ctx: &Ctx, a: &LocateArgs) -> Result<Output, CliError> {
    let mut attrs = Vec::new();
    if let Some(t) = &a.object_type {
        attrs.push(item::enumeration("ObjectType", t));
    }
    if let Some(alg) = &a.algorithm {
        attrs.push(item::enumeration("CryptographicAlgorithm", alg));
    }
    if let Some(s) = &a.state {
        attrs.push(item::enumeration("State", s));
    }
    if let Some(n) = &a.name {
        attrs.push(name_attribute(n));
    }
    if !a.tags.is_empty() {
        attrs.push(tags_attribute(&a.tags));
    }
    let request = item::structure("Locate", vec![item::structure("Attributes", attrs)]);
    let response = ctx.client()?.kmip(&request)?;
    let ids: Vec<String> = response
        .children("UniqueIdentifier")
        .filter_map(TtlvExt::text)
        .map(str::to_owned)
        .collect();
    let human = if ids.is_empty() {
        "no object found".to_owned()
    } else {
        ids.join("\n")
    };
    Ok(Output::new(human, json!({"unique_identifiers": ids})))
}

/// Render a JSON TTLV attribute value for people.
fn render(v: &Value) -> String {
    match v.get("value") {
        Some(Value::Array(children)) => {
            let inner: Vec<String> = children
                .iter()
                .map(|c| {
                    format!(
                        "{}={}",
                        c.get("tag").and_then(Value::as_str).unwrap_or("?"),
                        render(c)
                    )
                })
                .collect();
            format!("{{{}}}", inner.join(", "))
        }
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

/// Tags from the Cosmian `tag` vendor attribute of an Attributes structure.
fn tags_of(attrs: &Value) -> Option<Vec<String>> {
    let va = attrs.children("VendorAttributes").find_map(|outer| {
        // Either VendorAttributes{VendorAttributes{...}} or a flat VendorAttribute structure.
        let inner = outer.child("VendorAttributes").unwrap_or(outer);
        (inner.child("AttributeName").and_then(TtlvExt::text) == Some("tag"))
            .then(|| inner.child("AttributeValue").and_then(TtlvExt::text))
            .flatten()
    })?;
    serde_json::from_slice(&hex_decode(va)?).ok()
}

/// Run `get-attributes`.
pub fn get_attributes(ctx: &Ctx, a: &GetAttributesArgs) -> Result<Output, CliError> {
    let uid = crate::kmip::uid_or_tags(a.id.as_deref(), &a.tags).map_err(CliError::Usage)?;
    let request = item::structure("GetAttributes", vec![item::text("UniqueIdentifier", &uid)]);
    let response = ctx.client()?.kmip(&request)?;
    let attrs = response
        .child("Attributes")
        .ok_or_else(|| CliError::Response("GetAttributesResponse: no Attributes".into()))?;
    let mut lines = vec![format!(
        "UniqueIdentifier: {}",
        response_uid(&response, "GetAttributesResponse")?
    )];
    for a in attrs
        .get("value")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let tag = a.get("tag").and_then(Value::as_str).unwrap_or("?");
        if tag == "VendorAttributes" {
            continue;
        }
        lines.push(format!("{tag}: {}", render(a)));
    }
    let tags = tags_of(attrs);
    if let Some(t) = &tags {
        lines.push(format!("Tags: {}", t.join(", ")));
    }
    let mut json = json!({"unique_identifier": response_uid(&response, "GetAttributesResponse")?, "attributes": attrs});
    if let Some(t) = tags {
        json["tags"] = json!(t);
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
        let va = tags_attribute(&a.tags);
        // SetAttribute carries one attribute: the inner vendor attribute structure.
        let inner = va.child("VendorAttributes").cloned().unwrap_or(va);
        new_attributes.push(inner);
    }
    if let Some(t) = a.activation_date {
        new_attributes.push(item::datetime("ActivationDate", t));
    }
    if new_attributes.is_empty() {
        return Err(CliError::Usage(
            "nothing to set: give --name, --tag or --activation-date".into(),
        ));
    }
    let mut client = ctx.client()?;
    for attr in new_attributes {
        let request = item::structure(
            "SetAttribute",
            vec![
                item::text("UniqueIdentifier", &a.id),
                item::structure("NewAttribute", vec![attr]),
            ],
        );
        client.kmip(&request)?;
    }
    Ok(Output::new(
        format!("attributes set on {}", a.id),
        json!({"unique_identifier": a.id}),
    ))
}
