//! KMIP 2.1 JSON TTLV on the client side, with the KMS core's codec and types (`kms::kmip`): requests are
//! built as [`Ttlv`] trees from the typed enumerations, [`Attributes`] and [`KeyBlock`], emitted by
//! `kms::kmip::json`, and responses are parsed by the same codec (with [`LIMITS`]) and read with its typed
//! accessors. This module adds only what is particular to a command-line client: selecting an object by id
//! or tags, rendering values for people, and the JSON form of items for `--json`.

use kms::kmip::json;
use kms::kmip::ttlv::{EnumValue, Value};
use kms::kmip::types::tags_json;

pub use kms::kmip::json::JsonError;
pub use kms::kmip::ops::KeyBlock;
pub use kms::kmip::ttlv::{FieldError, Ttlv};
pub use kms::kmip::types::Attributes;

/// Limits for parsing responses: the HTTP client's body limit, the core's depth and item limits.
pub const LIMITS: json::Limits = json::Limits {
    max_bytes: crate::http::MAX_BODY,
    max_depth: 32,
    max_items: 100_000,
};

/// Emit a request as compact JSON TTLV.
pub fn encode(item: &Ttlv) -> Vec<u8> {
    json::to_vec(item)
}

/// Parse a JSON TTLV response.
pub fn decode(body: &[u8]) -> Result<Ttlv, JsonError> {
    json::from_slice(body, &LIMITS)
}

/// The JSON form of an item (as the server wrote it), for `--json` output and exported files.
pub fn to_json_value(item: &Ttlv) -> serde_json::Value {
    // The core's emitter writes valid JSON; parsing it back cannot fail.
    serde_json::from_slice(&json::to_vec(item)).unwrap_or(serde_json::Value::Null)
}

/// The Cosmian tag attribute alone (`VendorAttributes{VendorIdentification = "cosmian", AttributeName =
/// "tag", AttributeValue = JSON array of the tags}`), as SetAttribute carries it.
pub fn tag_attribute(tags: &[String]) -> Ttlv {
    Attributes {
        tags: tags.to_vec(),
        ..Attributes::default()
    }
    .tag_vendor_attribute()
    .to_ttlv("VendorAttributes")
}

/// Why a UniqueIdentifier argument is unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectError {
    /// Both an id and tags.
    Both,
    /// Neither an id nor a tag.
    Neither,
}

impl std::fmt::Display for SelectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SelectError::Both => "give either a key id or --tag, not both",
            SelectError::Neither => "give a key id or at least one --tag",
        })
    }
}

/// A UniqueIdentifier argument: a uid, or `["tag1","tag2"]` built from `--tag` options.
pub fn uid_or_tags(uid: Option<&str>, tags: &[String]) -> Result<String, SelectError> {
    match (uid, tags.is_empty()) {
        (Some(u), true) => Ok(u.to_owned()),
        (None, false) => Ok(String::from_utf8_lossy(&tags_json(tags)).into_owned()),
        (Some(_), false) => Err(SelectError::Both),
        (None, true) => Err(SelectError::Neither),
    }
}

/// An item's value for people, as it reads in JSON TTLV: structures as `{Tag=value, ...}`, byte strings
/// in upper-case hex, enumerations by name, dates in RFC 3339.
pub fn render(item: &Ttlv) -> String {
    match &item.value {
        Value::Structure(children) => {
            let inner: Vec<String> = children
                .iter()
                .map(|c| format!("{}={}", c.tag, render(c)))
                .collect();
            format!("{{{}}}", inner.join(", "))
        }
        Value::TextString(s) => s.clone(),
        Value::Enumeration(EnumValue::Name(n)) => n.clone(),
        Value::Integer(v) => v.to_string(),
        Value::Interval(v) => v.to_string(),
        Value::Boolean(v) => v.to_string(),
        // The other types read as the codec writes them (hex, dates).
        _ => match to_json_value(item).get("value") {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_attribute_is_the_formats_example() {
        let v = tag_attribute(&["MyTag".into()]);
        assert_eq!(
            v.get("AttributeValue").map(|a| &a.value),
            Some(&Value::ByteString(b"[\"MyTag\"]".to_vec()))
        );
        let json = String::from_utf8(encode(&v)).unwrap();
        assert!(json.contains("\"5B224D79546167225D\""), "{json}");
        assert_eq!(uid_or_tags(None, &["a".into()]).unwrap(), "[\"a\"]");
        assert_eq!(uid_or_tags(Some("u"), &[]).unwrap(), "u");
        assert_eq!(uid_or_tags(None, &[]), Err(SelectError::Neither));
        assert_eq!(
            uid_or_tags(Some("u"), &["a".into()]),
            Err(SelectError::Both)
        );
    }

    #[test]
    fn responses_round_trip_and_render() {
        let body = br#"{"tag":"GetAttributesResponse","type":"Structure","value":[
            {"tag":"UniqueIdentifier","type":"TextString","value":"u1"},
            {"tag":"Attributes","type":"Structure","value":[
                {"tag":"CryptographicAlgorithm","type":"Enumeration","value":"AES"},
                {"tag":"CryptographicLength","type":"Integer","value":256},
                {"tag":"ActivationDate","type":"DateTime","value":"2023-11-14T22:13:20Z"},
                {"tag":"Name","type":"Structure","value":[{"tag":"Name","type":"Structure","value":[
                    {"tag":"NameValue","type":"TextString","value":"n"},
                    {"tag":"NameType","type":"Enumeration","value":"UninterpretedTextString"}]}]},
                {"tag":"Digest","type":"ByteString","value":"00ab"}]}]}"#;
        let r = decode(body).unwrap();
        assert_eq!(
            r.req("UniqueIdentifier")
                .unwrap()
                .as_text("UniqueIdentifier"),
            Ok("u1")
        );
        let attrs = r.req("Attributes").unwrap();
        let shown: Vec<String> = attrs
            .children()
            .iter()
            .map(|a| format!("{}: {}", a.tag, render(a)))
            .collect();
        assert_eq!(
            shown,
            [
                "CryptographicAlgorithm: AES",
                "CryptographicLength: 256",
                "ActivationDate: 2023-11-14T22:13:20Z",
                "Name: {Name={NameValue=n, NameType=UninterpretedTextString}}",
                "Digest: 00AB",
            ]
        );
        assert_eq!(
            to_json_value(attrs)["value"][0],
            serde_json::json!({"tag": "CryptographicAlgorithm", "type": "Enumeration", "value": "AES"})
        );
        assert_eq!(decode(b"{\"tag\":1}"), Err(JsonError::BadTag));
        assert_eq!(decode(b"nope"), Err(JsonError::Syntax));
    }
}
