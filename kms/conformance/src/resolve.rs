//! From the XML tree to a KMIP [`Ttlv`] request: the XML encoding's value forms (KMIP 2.1
//! profiles §5.4: hex byte strings, masks as flag names, enumerations by name or `0x` code,
//! ISO 8601 dates) and the test cases' placeholders.

use std::collections::HashMap;
use std::fmt;

use kms::kmip::ttlv::{EnumValue, Ttlv, Value};

use crate::xml::Node;

/// What a test case has learnt so far: values its responses carried under a placeholder
/// (`$UNIQUE_IDENTIFIER_0`, `$IV_COUNTER_NONCE`, …), and the time `$NOW` means.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// Placeholder name (with its `$`) → value.
    pub captures: HashMap<String, Value>,
    /// Unix seconds for `$NOW`.
    pub now: i64,
}

/// Why an XML value cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolveError {
    /// A placeholder no earlier response defined.
    UnknownPlaceholder(String),
    /// A `type` this encoding does not have.
    UnknownType(String),
    /// The value does not parse as its type.
    BadValue {
        /// Element.
        tag: String,
        /// Value as written.
        value: String,
    },
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResolveError::UnknownPlaceholder(p) => write!(f, "placeholder {p} was never defined"),
            ResolveError::UnknownType(t) => write!(f, "unknown item type {t}"),
            ResolveError::BadValue { tag, value } => write!(f, "<{tag}> value {value:?}"),
        }
    }
}

impl std::error::Error for ResolveError {}

/// Flag names of the mask-valued attributes (KMIP 2.1 §11.15 Cryptographic Usage Mask,
/// §11.20 Protection Storage Mask, §11.33 Storage Status Mask).
fn mask_bit(tag: &str, name: &str) -> Option<u32> {
    let table: &[(&str, u32)] = match tag {
        "CryptographicUsageMask" => &[
            ("Sign", 0x1),
            ("Verify", 0x2),
            ("Encrypt", 0x4),
            ("Decrypt", 0x8),
            ("WrapKey", 0x10),
            ("UnwrapKey", 0x20),
            ("Export", 0x40),
            ("MACGenerate", 0x80),
            ("MACVerify", 0x100),
            ("DeriveKey", 0x200),
            ("ContentCommitment", 0x400),
            ("KeyAgreement", 0x800),
            ("CertificateSign", 0x1000),
            ("CRLSign", 0x2000),
            ("GenerateCryptogram", 0x4000),
            ("ValidateCryptogram", 0x8000),
            ("TranslateEncrypt", 0x10000),
            ("TranslateDecrypt", 0x20000),
            ("TranslateWrap", 0x40000),
            ("TranslateUnwrap", 0x80000),
            ("Authenticate", 0x100000),
            ("Unrestricted", 0x200000),
            ("FPEEncrypt", 0x400000),
            ("FPEDecrypt", 0x800000),
        ],
        "ProtectionStorageMask" | "ProtectionStorageMasks" => &[
            ("Software", 0x1),
            ("Hardware", 0x2),
            ("OnProcessor", 0x4),
            ("OnSystem", 0x8),
            ("OffSystem", 0x10),
            ("Hypervisor", 0x20),
            ("OperatingSystem", 0x40),
            ("Container", 0x80),
            ("OnPremises", 0x100),
            ("OffPremises", 0x200),
            ("SelfManaged", 0x400),
            ("Outsourced", 0x800),
            ("Validated", 0x1000),
            ("SameJurisdiction", 0x2000),
        ],
        "StorageStatusMask" => &[
            ("OnLineStorage", 0x1),
            ("ArchivalStorage", 0x2),
            ("DestroyedStorage", 0x4),
        ],
        _ => &[],
    };
    table.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}

fn bad(node: &Node) -> ResolveError {
    ResolveError::BadValue {
        tag: node.tag.clone(),
        value: node.value.clone(),
    }
}

/// `$NOW`, `$NOW-3600`, `$NOW+3600` relative to `now`.
pub fn now_offset(value: &str, now: i64) -> Option<i64> {
    let rest = value.strip_prefix("$NOW")?;
    if rest.is_empty() {
        return Some(now);
    }
    let (sign, digits) = match rest.split_at_checked(1)? {
        ("+", d) => (1, d),
        ("-", d) => (-1, d),
        _ => return None,
    };
    Some(now + sign * digits.parse::<i64>().ok()?)
}

fn parse_hex(s: &str) -> Option<Vec<u8>> {
    let s = s.strip_prefix("0x").unwrap_or(s);
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect()
}

fn parse_u32(s: &str) -> Option<u32> {
    match s.strip_prefix("0x") {
        Some(h) => u32::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// The value an XML primitive stands for (placeholders looked up in `ctx`).
pub fn value(node: &Node, ctx: &Context) -> Result<Value, ResolveError> {
    let Some(ty) = node.ty.as_deref() else {
        return Ok(Value::Structure(
            node.children
                .iter()
                .map(|c| resolve(c, ctx))
                .collect::<Result<_, _>>()?,
        ));
    };
    let v = node.value.as_str();
    if ty == "DateTime"
        && let Some(t) = now_offset(v, ctx.now)
    {
        return Ok(Value::DateTime(t));
    }
    if v.starts_with('$') {
        return ctx
            .captures
            .get(v)
            .cloned()
            .ok_or_else(|| ResolveError::UnknownPlaceholder(v.to_owned()));
    }
    Ok(match ty {
        "Integer" => {
            if let Ok(i) = v.parse::<i32>() {
                Value::Integer(i)
            } else if let Some(h) = v.strip_prefix("0x") {
                Value::Integer(u32::from_str_radix(h, 16).map_err(|_| bad(node))? as i32)
            } else {
                // Flag names, separated by spaces or '|'.
                let mut bits = 0u32;
                for name in v.split([' ', '|']).filter(|s| !s.is_empty()) {
                    bits |= mask_bit(&node.tag, name).ok_or_else(|| bad(node))?;
                }
                Value::Integer(bits as i32)
            }
        }
        "LongInteger" => Value::LongInteger(v.parse().map_err(|_| bad(node))?),
        "BigInteger" => Value::BigInteger(parse_hex(v).ok_or_else(|| bad(node))?),
        "Enumeration" => Value::Enumeration(match v.strip_prefix("0x") {
            Some(_) => EnumValue::Code(parse_u32(v).ok_or_else(|| bad(node))?),
            None => EnumValue::Name(v.to_owned()),
        }),
        "Boolean" => Value::Boolean(match v {
            "true" | "1" => true,
            "false" | "0" => false,
            _ => return Err(bad(node)),
        }),
        "TextString" => Value::TextString(v.to_owned()),
        "ByteString" => Value::ByteString(parse_hex(v).ok_or_else(|| bad(node))?),
        "DateTime" => Value::DateTime(
            time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
                .map_err(|_| bad(node))?
                .unix_timestamp(),
        ),
        "Interval" => Value::Interval(v.parse().map_err(|_| bad(node))?),
        "DateTimeExtended" => Value::DateTimeExtended(v.parse().map_err(|_| bad(node))?),
        other => return Err(ResolveError::UnknownType(other.to_owned())),
    })
}

/// The TTLV item an XML element stands for.
pub fn resolve(node: &Node, ctx: &Context) -> Result<Ttlv, ResolveError> {
    Ok(Ttlv {
        tag: node.tag.clone(),
        value: value(node, ctx)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prim(tag: &str, ty: &str, value: &str) -> Node {
        Node {
            tag: tag.into(),
            ty: Some(ty.into()),
            value: value.into(),
            children: Vec::new(),
        }
    }

    #[test]
    fn xml_value_forms() {
        let ctx = Context {
            now: 1_000_000,
            ..Context::default()
        };
        let v = |t, ty, val| value(&prim(t, ty, val), &ctx).unwrap();
        assert_eq!(
            v("CryptographicUsageMask", "Integer", "Encrypt Decrypt"),
            Value::Integer(12)
        );
        assert_eq!(v("X", "Integer", "0x00000010"), Value::Integer(16));
        assert_eq!(v("X", "DateTime", "$NOW-3600"), Value::DateTime(996_400));
        assert_eq!(
            v("X", "DateTime", "2000-02-02T00:00:00+10:00"),
            Value::DateTime(949_413_600)
        );
        assert_eq!(
            v("X", "ByteString", "0aFF"),
            Value::ByteString(vec![10, 255])
        );
        assert_eq!(
            v("X", "Enumeration", "0x80000001"),
            Value::Enumeration(EnumValue::Code(0x8000_0001))
        );
        assert_eq!(
            v("X", "Enumeration", "AES"),
            Value::Enumeration(EnumValue::Name("AES".into()))
        );
    }

    #[test]
    fn bad_values_and_unknown_placeholders_are_typed_errors() {
        let ctx = Context::default();
        assert_eq!(
            value(
                &prim("UniqueIdentifier", "TextString", "$UNIQUE_IDENTIFIER_3"),
                &ctx
            ),
            Err(ResolveError::UnknownPlaceholder(
                "$UNIQUE_IDENTIFIER_3".into()
            ))
        );
        assert!(matches!(
            value(
                &prim("CryptographicUsageMask", "Integer", "Encrypt Fly"),
                &ctx
            ),
            Err(ResolveError::BadValue { .. })
        ));
        assert!(matches!(
            value(&prim("X", "ByteString", "abc"), &ctx),
            Err(ResolveError::BadValue { .. })
        ));
        assert_eq!(
            value(&prim("X", "Float", "1"), &ctx),
            Err(ResolveError::UnknownType("Float".into()))
        );
    }
}
