//! Building KMIP 2.1 JSON TTLV requests and reading responses (the Cosmian dialect: items are
//! `{"tag", "type", "value"}`, byte strings are upper-case hex, enumerations by name).

use serde_json::{Value, json};

/// Typed constructors of JSON TTLV items.
pub mod item {
    use super::*;

    /// A Structure.
    pub fn structure(tag: &str, children: Vec<Value>) -> Value {
        json!({"tag": tag, "type": "Structure", "value": children})
    }
    /// An Enumeration, by name.
    pub fn enumeration(tag: &str, name: &str) -> Value {
        json!({"tag": tag, "type": "Enumeration", "value": name})
    }
    /// An Integer.
    pub fn integer(tag: &str, v: i32) -> Value {
        json!({"tag": tag, "type": "Integer", "value": v})
    }
    /// A TextString.
    pub fn text(tag: &str, v: &str) -> Value {
        json!({"tag": tag, "type": "TextString", "value": v})
    }
    /// A ByteString (upper-case hex).
    pub fn bytes(tag: &str, v: &[u8]) -> Value {
        json!({"tag": tag, "type": "ByteString", "value": hex_upper(v)})
    }
    /// A Boolean.
    pub fn boolean(tag: &str, v: bool) -> Value {
        json!({"tag": tag, "type": "Boolean", "value": v})
    }
    /// A DateTime (RFC 3339, UTC).
    pub fn datetime(tag: &str, unix_secs: i64) -> Value {
        json!({"tag": tag, "type": "DateTime", "value": rfc3339(unix_secs)})
    }
}

/// Upper-case hexadecimal.
pub fn hex_upper(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xF)]));
    }
    s
}

/// Decode hexadecimal (either case).
pub fn hex_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.as_bytes();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.chunks(2)
        .map(|p| {
            let v = |c: u8| char::from(c).to_digit(16);
            u8::try_from(v(*p.first()?)? << 4 | v(*p.get(1)?)?).ok()
        })
        .collect()
}

/// Format Unix seconds as RFC 3339 UTC (`1970-01-01T00:00:00Z`).
pub fn rfc3339(unix_secs: i64) -> String {
    let days = unix_secs.div_euclid(86_400);
    let rem = unix_secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm), proleptic Gregorian calendar.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The Cosmian tag vendor attribute: `VendorAttributes{VendorAttributes{VendorIdentification =
/// "cosmian", AttributeName = "tag", AttributeValue = hex of the JSON array of tags}}`.
pub fn tags_attribute(tags: &[String]) -> Value {
    let json = serde_json::to_vec(tags).unwrap_or_default();
    item::structure(
        "VendorAttributes",
        vec![item::structure(
            "VendorAttributes",
            vec![
                item::text("VendorIdentification", "cosmian"),
                item::text("AttributeName", "tag"),
                item::bytes("AttributeValue", &json),
            ],
        )],
    )
}

/// A UniqueIdentifier argument: a uid, or `["tag1","tag2"]` built from `--tag` options.
pub fn uid_or_tags(uid: Option<&str>, tags: &[String]) -> Result<String, String> {
    match (uid, tags.is_empty()) {
        (Some(u), true) => Ok(u.to_owned()),
        (None, false) => serde_json::to_string(tags).map_err(|e| e.to_string()),
        (Some(_), false) => Err("give either a key id or --tag, not both".into()),
        (None, true) => Err("give a key id or at least one --tag".into()),
    }
}

/// Read-only helpers over a JSON TTLV item.
pub trait TtlvExt {
    /// The first direct child with this tag.
    fn child(&self, tag: &str) -> Option<&Value>;
    /// All direct children with this tag.
    fn children<'a>(&'a self, tag: &'a str) -> Box<dyn Iterator<Item = &'a Value> + 'a>;
    /// The first item with this tag anywhere below (depth-first).
    fn find(&self, tag: &str) -> Option<&Value>;
    /// The `value` as text (TextString, Enumeration name, DateTime).
    fn text(&self) -> Option<&str>;
    /// The `value` of a ByteString, decoded.
    fn bytes(&self) -> Option<Vec<u8>>;
}

impl TtlvExt for Value {
    fn child(&self, tag: &str) -> Option<&Value> {
        self.get("value")?
            .as_array()?
            .iter()
            .find(|c| c.get("tag").and_then(Value::as_str) == Some(tag))
    }
    fn children<'a>(&'a self, tag: &'a str) -> Box<dyn Iterator<Item = &'a Value> + 'a> {
        match self.get("value").and_then(Value::as_array) {
            Some(a) => Box::new(
                a.iter()
                    .filter(move |c| c.get("tag").and_then(Value::as_str) == Some(tag)),
            ),
            None => Box::new(std::iter::empty()),
        }
    }
    fn find(&self, tag: &str) -> Option<&Value> {
        if self.get("tag").and_then(Value::as_str) == Some(tag) {
            return Some(self);
        }
        self.get("value")?
            .as_array()?
            .iter()
            .find_map(|c| c.find(tag))
    }
    fn text(&self) -> Option<&str> {
        self.get("value")?.as_str()
    }
    fn bytes(&self) -> Option<Vec<u8>> {
        hex_decode(self.get("value")?.as_str()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        assert_eq!(hex_upper(&[0x00, 0xAB, 0x5f]), "00AB5F");
        assert_eq!(hex_decode("00ab5F").unwrap(), vec![0, 0xAB, 0x5F]);
        assert!(hex_decode("0").is_none());
        assert!(hex_decode("zz").is_none());
    }

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn tag_attribute_is_the_formats_example() {
        let v = tags_attribute(&["MyTag".into()]);
        let inner = v.child("VendorAttributes").unwrap();
        assert_eq!(
            inner.child("AttributeValue").unwrap().text(),
            Some("5B224D79546167225D")
        );
        assert_eq!(uid_or_tags(None, &["a".into()]).unwrap(), "[\"a\"]");
        assert!(uid_or_tags(None, &[]).is_err());
    }

    #[test]
    fn navigation() {
        let v = item::structure(
            "CreateResponse",
            vec![
                item::enumeration("ObjectType", "SymmetricKey"),
                item::text("UniqueIdentifier", "u1"),
            ],
        );
        assert_eq!(
            v.child("UniqueIdentifier").and_then(TtlvExt::text),
            Some("u1")
        );
        assert_eq!(
            v.find("ObjectType").and_then(TtlvExt::text),
            Some("SymmetricKey")
        );
        assert!(v.child("Nope").is_none());
    }
}
