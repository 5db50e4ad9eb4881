//! KMIP 1.x (1.0–1.4) messages mapped to and from the server's KMIP 2.x model, chosen per
//! message by the request header's `ProtocolVersion` (major 1).
//!
//! KMIP 1.x names attributes by text: `Attribute { AttributeName, AttributeIndex?,
//! AttributeValue }`, grouped in `TemplateAttribute` (Create, Register, ReKey, …),
//! `Common`/`PrivateKey`/`PublicKeyTemplateAttribute` (CreateKeyPair) or listed directly
//! (Locate); `GetAttributes` asks by `AttributeName`; Add/Modify/DeleteAttribute carry one
//! `Attribute` and answer with it. KMIP 2.x (KMIP 2.0 §5 "Attributes") uses each attribute's
//! own tag inside `Attributes`, `AttributeReference`, `NewAttribute`, `CurrentAttribute`.
//!
//! - [`request_to_v2`]: a 1.x `RequestMessage` in 2.x shapes (the header keeps its version, so
//!   the server answers in it), and per batch item what the 1.x response must echo;
//! - [`response_to_v1`]: the 2.x `ResponseMessage` (in its wire shape,
//!   [`super::binary::wire_shape`]) in 1.x shapes.
//!
//! Custom attributes (`x-…`, `y-…`, KMIP 1.4 §3.39) are 2.x vendor attributes with vendor
//! identification `x`/`y` and the rest of the name; 2.x attributes KMIP 1.x lacks (Key Format
//! Type, Protection Storage Masks, …) are left out of 1.x responses. Enumerations inside an
//! `AttributeValue` are sent as codes (the binary encoder knows the enumeration of a tag, and
//! `AttributeValue` has none).

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use super::ops::ProtocolVersion;
use super::ttlv::{EnumValue, Ttlv, Value};
use super::types::{Operation, ResultReason, enum_code};
use crate::error::KmsError;

/// KMIP 1.4 attribute names (KMIP 1.4 §3) and the KMIP 2.x tags of the same attributes.
pub const ATTRIBUTE_NAMES: &[(&str, &str)] = &[
    ("Unique Identifier", "UniqueIdentifier"),
    ("Name", "Name"),
    ("Object Type", "ObjectType"),
    ("Cryptographic Algorithm", "CryptographicAlgorithm"),
    ("Cryptographic Length", "CryptographicLength"),
    ("Cryptographic Parameters", "CryptographicParameters"),
    (
        "Cryptographic Domain Parameters",
        "CryptographicDomainParameters",
    ),
    ("Certificate Type", "CertificateType"),
    ("Certificate Length", "CertificateLength"),
    ("X.509 Certificate Identifier", "X509CertificateIdentifier"),
    ("X.509 Certificate Subject", "X509CertificateSubject"),
    ("X.509 Certificate Issuer", "X509CertificateIssuer"),
    ("Certificate Identifier", "CertificateIdentifier"),
    ("Certificate Subject", "CertificateSubject"),
    ("Certificate Issuer", "CertificateIssuer"),
    ("Digital Signature Algorithm", "DigitalSignatureAlgorithm"),
    ("Digest", "Digest"),
    ("Operation Policy Name", "OperationPolicyName"),
    ("Cryptographic Usage Mask", "CryptographicUsageMask"),
    ("Lease Time", "LeaseTime"),
    ("Usage Limits", "UsageLimits"),
    ("State", "State"),
    ("Initial Date", "InitialDate"),
    ("Activation Date", "ActivationDate"),
    ("Process Start Date", "ProcessStartDate"),
    ("Protect Stop Date", "ProtectStopDate"),
    ("Deactivation Date", "DeactivationDate"),
    ("Destroy Date", "DestroyDate"),
    ("Compromise Occurrence Date", "CompromiseOccurrenceDate"),
    ("Compromise Date", "CompromiseDate"),
    ("Revocation Reason", "RevocationReason"),
    ("Archive Date", "ArchiveDate"),
    ("Object Group", "ObjectGroup"),
    ("Fresh", "Fresh"),
    ("Link", "Link"),
    (
        "Application Specific Information",
        "ApplicationSpecificInformation",
    ),
    ("Contact Information", "ContactInformation"),
    ("Last Change Date", "LastChangeDate"),
    ("Alternative Name", "AlternativeName"),
    ("Key Value Present", "KeyValuePresent"),
    ("Key Value Location", "KeyValueLocation"),
    ("Original Creation Date", "OriginalCreationDate"),
    ("Random Number Generator", "RandomNumberGenerator"),
    ("PKCS#12 Friendly Name", "PKCS12FriendlyName"),
    ("Description", "Description"),
    ("Comment", "Comment"),
    ("Sensitive", "Sensitive"),
    ("Always Sensitive", "AlwaysSensitive"),
    ("Extractable", "Extractable"),
    ("Never Extractable", "NeverExtractable"),
];

/// The 2.x tag of a KMIP 1.x attribute name.
pub fn tag_of(name: &str) -> Option<&'static str> {
    ATTRIBUTE_NAMES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| *t)
}

/// The KMIP 1.x name of a 2.x attribute tag.
pub fn name_of(tag: &str) -> Option<&'static str> {
    ATTRIBUTE_NAMES
        .iter()
        .find(|(_, t)| *t == tag)
        .map(|(n, _)| *n)
}

/// A custom attribute name (`x-…` client-defined, `y-…` server-defined): (vendor, rest).
fn custom(name: &str) -> Option<(&'static str, &str)> {
    if let Some(rest) = name.strip_prefix("x-") {
        Some(("x", rest))
    } else {
        name.strip_prefix("y-").map(|rest| ("y", rest))
    }
}

/// Why a KMIP 1.x request cannot be mapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum V1Error {
    /// An `Attribute` without a text `AttributeName`.
    AttributeName,
    /// An `Attribute` without an `AttributeValue` where one is required.
    AttributeValue,
    /// An attribute name KMIP 1.x does not define (and not a custom `x-`/`y-` name).
    UnknownAttribute,
    /// A structure expected to hold the 1.x shape does not (e.g. a primitive `TemplateAttribute`).
    NotAStructure(&'static str),
}

impl fmt::Display for V1Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl V1Error {
    fn message(&self) -> &'static str {
        match self {
            V1Error::AttributeName => "KMIP 1.x Attribute without a text Attribute Name",
            V1Error::AttributeValue => "KMIP 1.x Attribute without an Attribute Value",
            V1Error::UnknownAttribute => "KMIP 1.x attribute name not defined by KMIP 1.4",
            V1Error::NotAStructure(_) => "KMIP 1.x field is not a structure",
        }
    }
}

impl From<V1Error> for KmsError {
    fn from(e: V1Error) -> Self {
        let reason = match e {
            V1Error::UnknownAttribute => ResultReason::InvalidField,
            _ => ResultReason::InvalidMessage,
        };
        KmsError::kmip(reason, e.message())
    }
}

/// The request's protocol version when it is KMIP 1.x (`None`: 2.x or no header version).
pub fn request_version(msg: &Ttlv) -> Option<ProtocolVersion> {
    let pv = msg.get("RequestHeader")?.get("ProtocolVersion")?;
    let v = ProtocolVersion::parse(pv).ok()?;
    (v.major == 1).then_some(v)
}

/// What a 1.x response item must carry that the 2.x answer lacks: the `Attribute` that
/// Add/Modify/DeleteAttribute answer with (KMIP 1.4 §4.13–4.15).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Echo(Vec<Option<Ttlv>>);

impl Echo {
    /// The batch items (by position) that are a DeleteAttribute: their 1.x answer carries the
    /// deleted attribute with its value (KMIP 1.4 §4.15), which the caller reads before the
    /// batch runs and hands to [`Echo::set_deleted`].
    pub fn deletes(v2: &Ttlv) -> Vec<(usize, Ttlv)> {
        v2.children()
            .iter()
            .filter(|c| c.tag == "BatchItem")
            .enumerate()
            .filter(|(_, c)| {
                c.get("Operation").and_then(|o| Operation::parse(o).ok())
                    == Some(Operation::DeleteAttribute)
            })
            .filter_map(|(i, c)| Some((i, c.get("RequestPayload")?.clone())))
            .collect()
    }

    /// Item `i` answers with `attribute` (a 2.x typed attribute, as GetAttributes returns it)
    /// as a 1.x `Attribute { AttributeName, AttributeValue }`; nothing if it has no 1.x name.
    pub fn set_deleted(&mut self, i: usize, attribute: &Ttlv) {
        if let (Some(slot), Some((name, value))) = (self.0.get_mut(i), untyped(attribute)) {
            *slot = Some(Ttlv::structure(
                "Attribute",
                alloc::vec![Ttlv::text("AttributeName", &name), value],
            ));
        }
    }
}

/// A KMIP 1.x `RequestMessage` in 2.x shapes, and the echoes for [`response_to_v1`].
pub fn request_to_v2(msg: &Ttlv) -> Result<(Ttlv, Echo), V1Error> {
    let mut echo = Vec::new();
    let mut out = Vec::with_capacity(msg.children().len());
    for c in msg.children() {
        if c.tag != "BatchItem" {
            out.push(c.clone());
            continue;
        }
        let op = c.get("Operation").and_then(|o| Operation::parse(o).ok());
        let mut item = Vec::with_capacity(c.children().len());
        let mut e = None;
        for f in c.children() {
            match (op, f.tag.as_str()) {
                (Some(op), "RequestPayload") => {
                    let (p, x) = payload_to_v2(op, f)?;
                    item.push(p);
                    e = x;
                }
                _ => item.push(f.clone()),
            }
        }
        echo.push(e);
        out.push(Ttlv::structure(&c.tag, item));
    }
    Ok((Ttlv::structure(&msg.tag, out), Echo(echo)))
}

fn payload_to_v2(op: Operation, p: &Ttlv) -> Result<(Ttlv, Option<Ttlv>), V1Error> {
    let mut out = Vec::with_capacity(p.children().len());
    let mut echo = None;
    let mut located = Vec::new();
    for c in p.children() {
        match (op, c.tag.as_str()) {
            (_, "TemplateAttribute") => out.push(template(c, "Attributes")?),
            (_, "CommonTemplateAttribute") => out.push(template(c, "CommonAttributes")?),
            (_, "PrivateKeyTemplateAttribute") => {
                out.push(template(c, "PrivateKeyAttributes")?);
            }
            (_, "PublicKeyTemplateAttribute") => out.push(template(c, "PublicKeyAttributes")?),
            (Operation::Locate, "Attribute") => located.push(typed(c)?),
            (Operation::GetAttributes, "AttributeName") => out.push(reference(c)?),
            (
                Operation::AddAttribute | Operation::ModifyAttribute | Operation::SetAttribute,
                "Attribute",
            ) => {
                out.push(Ttlv::structure("NewAttribute", alloc::vec![typed(c)?]));
                echo = Some(c.clone());
            }
            (Operation::DeleteAttribute, "AttributeName") => {
                out.push(reference(c)?);
                echo = Some(Ttlv::structure("Attribute", alloc::vec![c.clone()]));
            }
            // 1.x Delete Attribute's index: 2.x deletes by reference (all instances) or by
            // current value; index 0 (the default) is the only one mapped.
            (Operation::DeleteAttribute, "AttributeIndex") => {}
            _ => out.push(strip_key_value_attributes(c)),
        }
    }
    if !located.is_empty() {
        out.push(Ttlv::structure("Attributes", located));
    }
    Ok((Ttlv::structure(&p.tag, out), echo))
}

/// `TemplateAttribute { Name*, Attribute* }` → `Attributes { <typed>* }` under `tag`; the
/// template names (templates are deprecated in 1.3 and gone in 2.0) are dropped.
fn template(t: &Ttlv, tag: &str) -> Result<Ttlv, V1Error> {
    let Value::Structure(children) = &t.value else {
        return Err(V1Error::NotAStructure("TemplateAttribute"));
    };
    let attrs = children
        .iter()
        .filter(|c| c.tag == "Attribute")
        .map(typed)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Ttlv::structure(tag, attrs))
}

fn attribute_name(a: &Ttlv) -> Result<&str, V1Error> {
    match a.get("AttributeName").map(|n| &n.value) {
        Some(Value::TextString(s)) => Ok(s),
        _ => Err(V1Error::AttributeName),
    }
}

/// `Attribute { AttributeName, AttributeIndex?, AttributeValue }` → the typed 2.x attribute.
fn typed(a: &Ttlv) -> Result<Ttlv, V1Error> {
    let name = attribute_name(a)?;
    let value = a.get("AttributeValue").ok_or(V1Error::AttributeValue)?;
    if let Some((vendor, rest)) = custom(name) {
        return Ok(Ttlv::structure(
            "VendorAttribute",
            alloc::vec![
                Ttlv::text("VendorIdentification", vendor),
                Ttlv::text("AttributeName", rest),
                value.clone(),
            ],
        ));
    }
    let tag = tag_of(name).ok_or(V1Error::UnknownAttribute)?;
    Ok(Ttlv {
        tag: tag.to_string(),
        value: value.value.clone(),
    })
}

/// A 1.x `AttributeName` → a 2.x `AttributeReference` (the tag, or vendor and name).
fn reference(n: &Ttlv) -> Result<Ttlv, V1Error> {
    let Value::TextString(name) = &n.value else {
        return Err(V1Error::AttributeName);
    };
    if let Some((vendor, rest)) = custom(name) {
        return Ok(Ttlv::structure(
            "AttributeReference",
            alloc::vec![
                Ttlv::text("VendorIdentification", vendor),
                Ttlv::text("AttributeName", rest),
            ],
        ));
    }
    let tag = tag_of(name).ok_or(V1Error::UnknownAttribute)?;
    Ok(Ttlv {
        tag: "AttributeReference".to_string(),
        value: Value::Enumeration(EnumValue::Name(tag.to_string())),
    })
}

/// A 1.x `KeyValue` may list `Attribute`s after the `KeyMaterial`; the 2.x object has none.
fn strip_key_value_attributes(t: &Ttlv) -> Ttlv {
    let Value::Structure(children) = &t.value else {
        return t.clone();
    };
    let keep = children
        .iter()
        .filter(|c| !(t.tag == "KeyValue" && c.tag == "Attribute"))
        .map(strip_key_value_attributes)
        .collect();
    Ttlv::structure(&t.tag, keep)
}

/// The 2.x `ResponseMessage` (wire shape) in KMIP 1.x shapes, with the request's `echo`.
pub fn response_to_v1(msg: &Ttlv, echo: &Echo) -> Ttlv {
    let mut echoes = echo.0.iter();
    let mut out = Vec::with_capacity(msg.children().len());
    for c in msg.children() {
        if c.tag != "BatchItem" {
            out.push(c.clone());
            continue;
        }
        let e = echoes.next().and_then(Option::as_ref);
        let op = c.get("Operation").and_then(|o| Operation::parse(o).ok());
        let item = c
            .children()
            .iter()
            .map(|f| match op {
                Some(op) if f.tag == "ResponsePayload" => payload_to_v1(op, f, e),
                _ if f.tag == "ResultReason" => result_reason_v1(f),
                _ => f.clone(),
            })
            .collect();
        out.push(Ttlv::structure(&c.tag, item));
    }
    Ttlv::structure(&msg.tag, out)
}

/// KMIP 1.4 §9.1.3.2.29 Result Reason stops at Object Already Exists (0x18) and General
/// Failure (0x100); the reasons 2.0 added are answered with the 1.x reason for the same
/// failure (a state or usage violation was Permission Denied in 1.x).
fn result_reason_v1(f: &Ttlv) -> Ttlv {
    let code = match &f.value {
        Value::Enumeration(EnumValue::Code(c)) => Some(*c),
        Value::Enumeration(EnumValue::Name(n)) => enum_code("ResultReason", n),
        _ => None,
    };
    let Some(code) = code else {
        return f.clone();
    };
    let mapped = match ResultReason::from_code(code) {
        _ if code <= 0x18 || code == ResultReason::GeneralFailure.code() => return f.clone(),
        Some(
            ResultReason::WrongKeyLifecycleState | ResultReason::IncompatibleCryptographicUsageMask,
        ) => ResultReason::PermissionDenied,
        Some(
            ResultReason::BadCryptographicParameters
            | ResultReason::InvalidAttributeValue
            | ResultReason::InvalidObjectType
            | ResultReason::CodecError,
        ) => ResultReason::InvalidField,
        Some(ResultReason::UnsupportedCryptographicParameters) => ResultReason::FeatureNotSupported,
        Some(ResultReason::ObjectDestroyed | ResultReason::ObjectNotFound) => {
            ResultReason::ItemNotFound
        }
        _ => ResultReason::GeneralFailure,
    };
    Ttlv {
        tag: f.tag.clone(),
        value: Value::Enumeration(EnumValue::Code(mapped.code())),
    }
}

fn payload_to_v1(op: Operation, p: &Ttlv, echo: Option<&Ttlv>) -> Ttlv {
    let mut out = Vec::with_capacity(p.children().len());
    for c in p.children() {
        match (op, c.tag.as_str()) {
            (Operation::GetAttributes, "Attributes") => out.extend(untyped_all(c)),
            (Operation::GetAttributeList, "AttributeReference") => {
                if let Some(n) = reference_name(c) {
                    out.push(Ttlv::text("AttributeName", &n));
                }
            }
            (_, "Attributes") => out.push(Ttlv::structure("TemplateAttribute", untyped_all(c))),
            (_, "CommonAttributes") => {
                out.push(Ttlv::structure("CommonTemplateAttribute", untyped_all(c)));
            }
            (_, "PrivateKeyAttributes") => {
                out.push(Ttlv::structure(
                    "PrivateKeyTemplateAttribute",
                    untyped_all(c),
                ));
            }
            (_, "PublicKeyAttributes") => {
                out.push(Ttlv::structure(
                    "PublicKeyTemplateAttribute",
                    untyped_all(c),
                ));
            }
            _ => out.push(c.clone()),
        }
    }
    if matches!(
        op,
        Operation::AddAttribute | Operation::ModifyAttribute | Operation::DeleteAttribute
    ) && let Some(e) = echo
    {
        out.push(e.clone());
    }
    Ttlv::structure(&p.tag, out)
}

/// The typed attributes of an `Attributes` structure as 1.x `Attribute`s; repeated ones
/// (Name, Link, …) numbered by `AttributeIndex` from the second on.
fn untyped_all(attrs: &Ttlv) -> Vec<Ttlv> {
    let mut out: Vec<Ttlv> = Vec::new();
    let mut seen: Vec<(String, i32)> = Vec::new();
    for a in attrs.children() {
        let Some((name, value)) = untyped(a) else {
            continue;
        };
        let index = match seen.iter_mut().find(|(n, _)| *n == name) {
            Some((_, i)) => {
                *i += 1;
                *i
            }
            None => {
                seen.push((name.clone(), 0));
                0
            }
        };
        let mut fields = alloc::vec![Ttlv::text("AttributeName", &name)];
        if index > 0 {
            fields.push(Ttlv::int("AttributeIndex", index));
        }
        fields.push(value);
        out.push(Ttlv::structure("Attribute", fields));
    }
    out
}

/// One typed 2.x attribute → (1.x name, `AttributeValue`); `None` for attributes KMIP 1.x lacks.
fn untyped(a: &Ttlv) -> Option<(String, Ttlv)> {
    if a.get("VendorIdentification").is_some()
        && matches!(a.tag.as_str(), "Attribute" | "VendorAttribute")
    {
        let vendor = match &a.get("VendorIdentification")?.value {
            Value::TextString(s) => s.clone(),
            _ => return None,
        };
        let name = match &a.get("AttributeName")?.value {
            Value::TextString(s) => s.clone(),
            _ => return None,
        };
        let value = a.get("AttributeValue")?.clone();
        let full = if vendor == "x" || vendor == "y" {
            alloc::format!("{vendor}-{name}")
        } else {
            alloc::format!("x-{vendor}-{name}")
        };
        return Some((full, value));
    }
    let name = name_of(&a.tag)?;
    let value = match &a.value {
        Value::Enumeration(EnumValue::Name(n)) => {
            Value::Enumeration(EnumValue::Code(enum_code(&a.tag, n)?))
        }
        v => v.clone(),
    };
    Some((
        name.to_string(),
        Ttlv {
            tag: "AttributeValue".to_string(),
            value,
        },
    ))
}

/// A 2.x `AttributeReference` (tag enumeration, or vendor structure) as a 1.x name.
fn reference_name(r: &Ttlv) -> Option<String> {
    match &r.value {
        Value::Enumeration(EnumValue::Name(tag)) => name_of(tag).map(ToString::to_string),
        Value::Enumeration(EnumValue::Code(c)) => super::ttlv::tag_name(*c)
            .and_then(name_of)
            .map(ToString::to_string),
        Value::Structure(_) => {
            let (name, value) = untyped(&Ttlv::structure(
                "VendorAttribute",
                alloc::vec![
                    r.get("VendorIdentification")?.clone(),
                    r.get("AttributeName")?.clone(),
                    Ttlv::text("AttributeValue", ""),
                ],
            ))?;
            drop(value);
            Some(name)
        }
        Value::TextString(tag) => name_of(tag).map(ToString::to_string),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn attr(name: &str, value: Value) -> Ttlv {
        Ttlv::structure(
            "Attribute",
            vec![
                Ttlv::text("AttributeName", name),
                Ttlv {
                    tag: "AttributeValue".into(),
                    value,
                },
            ],
        )
    }

    fn message(major: i32, op: u32, payload: Vec<Ttlv>) -> Ttlv {
        let operation = Ttlv::new("Operation", Value::Enumeration(EnumValue::Code(op)));
        crate::kmip::message::request(major, 4, vec![(operation, payload)])
    }

    /// A 2.x `ResponseMessage` whose one item answers `op` with only the object's uid.
    fn uid_answer(op: &str, uid: &str) -> Ttlv {
        Ttlv::structure(
            "ResponseMessage",
            vec![Ttlv::structure(
                "BatchItem",
                vec![
                    Ttlv {
                        tag: "Operation".into(),
                        value: Value::Enumeration(EnumValue::Name(op.into())),
                    },
                    Ttlv::structure("ResponsePayload", vec![Ttlv::text("UniqueIdentifier", uid)]),
                ],
            )],
        )
    }

    fn payload(m: &Ttlv) -> &Ttlv {
        m.get("BatchItem")
            .and_then(|b| b.get("RequestPayload"))
            .unwrap()
    }

    #[test]
    fn names_and_tags_map_both_ways() {
        for (name, tag) in ATTRIBUTE_NAMES {
            assert_eq!(tag_of(name), Some(*tag));
            assert_eq!(name_of(tag), Some(*name));
            assert!(
                super::super::ttlv::tag_code(tag).is_some(),
                "{tag} has a binary tag code"
            );
        }
        assert_eq!(tag_of("Key Format Type"), None);
        assert_eq!(name_of("KeyFormatType"), None);
    }

    #[test]
    fn only_major_1_is_v1() {
        let m = message(1, 1, vec![]);
        assert_eq!(
            request_version(&m),
            Some(ProtocolVersion { major: 1, minor: 4 })
        );
        assert_eq!(request_version(&message(2, 1, vec![])), None);
    }

    /// KMIP 1.4 Create (SKLC-M-1-14): TemplateAttribute → Attributes with typed children.
    #[test]
    fn template_attribute_becomes_attributes() {
        let m = message(
            1,
            Operation::Create.code(),
            vec![
                Ttlv {
                    tag: "ObjectType".into(),
                    value: Value::Enumeration(EnumValue::Code(2)),
                },
                Ttlv::structure(
                    "TemplateAttribute",
                    vec![
                        attr(
                            "Cryptographic Algorithm",
                            Value::Enumeration(EnumValue::Code(3)),
                        ),
                        attr("Cryptographic Length", Value::Integer(256)),
                        attr("x-ID", Value::TextString("abc".into())),
                    ],
                ),
            ],
        );
        let (v2, echo) = request_to_v2(&m).unwrap();
        assert_eq!(echo, Echo(vec![None]));
        let attrs = payload(&v2).get("Attributes").unwrap();
        assert_eq!(
            attrs.get("CryptographicAlgorithm").unwrap().value,
            Value::Enumeration(EnumValue::Code(3))
        );
        assert_eq!(
            attrs.get("CryptographicLength").unwrap().value,
            Value::Integer(256)
        );
        let va = attrs.get("VendorAttribute").unwrap();
        assert_eq!(
            va.get("VendorIdentification").unwrap().value,
            Value::TextString("x".into())
        );
        assert_eq!(
            va.get("AttributeName").unwrap().value,
            Value::TextString("ID".into())
        );
        assert!(payload(&v2).get("TemplateAttribute").is_none());
    }

    #[test]
    fn garbage_attributes_are_typed_errors() {
        let bad_name = message(
            1,
            Operation::Create.code(),
            vec![Ttlv::structure(
                "TemplateAttribute",
                vec![attr("Colour", Value::Integer(1))],
            )],
        );
        assert_eq!(request_to_v2(&bad_name), Err(V1Error::UnknownAttribute));
        let no_value = message(
            1,
            Operation::AddAttribute.code(),
            vec![Ttlv::structure(
                "Attribute",
                vec![Ttlv::text("AttributeName", "Name")],
            )],
        );
        assert_eq!(request_to_v2(&no_value), Err(V1Error::AttributeValue));
        let no_name = message(
            1,
            Operation::Locate.code(),
            vec![Ttlv::structure(
                "Attribute",
                vec![Ttlv::int("AttributeName", 3)],
            )],
        );
        assert_eq!(request_to_v2(&no_name), Err(V1Error::AttributeName));
        let flat = message(
            1,
            Operation::Create.code(),
            vec![Ttlv::int("TemplateAttribute", 1)],
        );
        assert_eq!(
            request_to_v2(&flat),
            Err(V1Error::NotAStructure("TemplateAttribute"))
        );
    }

    #[test]
    fn get_attributes_by_name_and_answer_as_attribute_list() {
        let m = message(
            1,
            Operation::GetAttributes.code(),
            vec![
                Ttlv::text("UniqueIdentifier", "k1"),
                Ttlv::text("AttributeName", "State"),
                Ttlv::text("AttributeName", "x-ID"),
            ],
        );
        let (v2, echo) = request_to_v2(&m).unwrap();
        let refs: Vec<&Ttlv> = payload(&v2).all("AttributeReference").collect();
        assert_eq!(
            refs[0].value,
            Value::Enumeration(EnumValue::Name("State".into()))
        );
        assert!(refs[1].get("VendorIdentification").is_some());

        let resp = Ttlv::structure(
            "ResponseMessage",
            vec![Ttlv::structure(
                "BatchItem",
                vec![
                    Ttlv {
                        tag: "Operation".into(),
                        value: Value::Enumeration(EnumValue::Code(Operation::GetAttributes.code())),
                    },
                    Ttlv::structure(
                        "ResponsePayload",
                        vec![
                            Ttlv::text("UniqueIdentifier", "k1"),
                            Ttlv::structure(
                                "Attributes",
                                vec![
                                    Ttlv {
                                        tag: "State".into(),
                                        value: Value::Enumeration(EnumValue::Name(
                                            "PreActive".into(),
                                        )),
                                    },
                                    Ttlv::text("KeyFormatType", "dropped"),
                                    Ttlv::structure("Name", vec![Ttlv::text("NameValue", "a")]),
                                    Ttlv::structure("Name", vec![Ttlv::text("NameValue", "b")]),
                                    Ttlv::structure(
                                        "Attribute",
                                        vec![
                                            Ttlv::text("VendorIdentification", "x"),
                                            Ttlv::text("AttributeName", "ID"),
                                            Ttlv::text("AttributeValue", "abc"),
                                        ],
                                    ),
                                ],
                            ),
                        ],
                    ),
                ],
            )],
        );
        let v1 = response_to_v1(&resp, &echo);
        let p = v1
            .get("BatchItem")
            .and_then(|b| b.get("ResponsePayload"))
            .unwrap();
        let attrs: Vec<&Ttlv> = p.all("Attribute").collect();
        assert_eq!(attrs.len(), 4, "Key Format Type is not a 1.x attribute");
        assert_eq!(attribute_name(attrs[0]).unwrap(), "State");
        assert_eq!(
            attrs[0].get("AttributeValue").unwrap().value,
            Value::Enumeration(EnumValue::Code(1)),
            "PreActive as its code"
        );
        assert!(attrs[1].get("AttributeIndex").is_none());
        assert_eq!(
            attrs[2].get("AttributeIndex").unwrap().value,
            Value::Integer(1)
        );
        assert_eq!(attribute_name(attrs[3]).unwrap(), "x-ID");
    }

    #[test]
    fn result_reasons_2x_added_are_answered_the_1x_way() {
        let item = |reason: &str| {
            Ttlv::structure(
                "ResponseMessage",
                vec![Ttlv::structure(
                    "BatchItem",
                    vec![
                        Ttlv::enumeration("Operation", "Destroy"),
                        Ttlv::enumeration("ResultStatus", "OperationFailed"),
                        Ttlv::enumeration("ResultReason", reason),
                    ],
                )],
            )
        };
        let reason = |m: &Ttlv| {
            m.get("BatchItem")
                .and_then(|b| b.get("ResultReason"))
                .map(|r| r.value.clone())
        };
        let code = |r: ResultReason| Some(Value::Enumeration(EnumValue::Code(r.code())));
        let none = Echo(vec![None]);
        assert_eq!(
            reason(&response_to_v1(&item("WrongKeyLifecycleState"), &none)),
            code(ResultReason::PermissionDenied)
        );
        assert_eq!(
            reason(&response_to_v1(&item("ObjectNotFound"), &none)),
            code(ResultReason::ItemNotFound)
        );
        // 1.x reasons are kept as they are.
        assert_eq!(
            reason(&response_to_v1(&item("ItemNotFound"), &none)),
            Some(Value::Enumeration(EnumValue::Name("ItemNotFound".into())))
        );
    }

    #[test]
    fn add_attribute_answers_with_the_attribute() {
        let link = attr(
            "Link",
            Value::Structure(vec![Ttlv::text("LinkedObjectIdentifier", "k2")]),
        );
        let m = message(
            1,
            Operation::AddAttribute.code(),
            vec![Ttlv::text("UniqueIdentifier", "k1"), link.clone()],
        );
        let (v2, echo) = request_to_v2(&m).unwrap();
        let na = payload(&v2).get("NewAttribute").unwrap();
        assert!(na.get("Link").is_some());
        let resp = uid_answer("AddAttribute", "k1");
        let v1 = response_to_v1(&resp, &echo);
        let p = v1
            .get("BatchItem")
            .and_then(|b| b.get("ResponsePayload"))
            .unwrap();
        assert_eq!(p.get("Attribute"), Some(&link));
    }

    #[test]
    fn delete_attribute_answers_with_the_value_read_before() {
        let m = message(
            1,
            Operation::DeleteAttribute.code(),
            vec![
                Ttlv::text("UniqueIdentifier", "k1"),
                Ttlv::text("AttributeName", "x-attribute1"),
            ],
        );
        let (v2, mut echo) = request_to_v2(&m).unwrap();
        let deletes = Echo::deletes(&v2);
        assert_eq!(deletes.len(), 1);
        assert_eq!(deletes[0].0, 0);
        assert!(deletes[0].1.get("AttributeReference").is_some());
        // What GetAttributes answered before the delete, in the 2.x shape.
        let vendor = Ttlv::structure(
            "VendorAttribute",
            vec![
                Ttlv::text("VendorIdentification", "x"),
                Ttlv::text("AttributeName", "attribute1"),
                Ttlv::text("AttributeValue", "ModifiedValue1"),
            ],
        );
        echo.set_deleted(0, &vendor);
        let resp = uid_answer("DeleteAttribute", "k1");
        let v1 = response_to_v1(&resp, &echo);
        let a = v1
            .get("BatchItem")
            .and_then(|b| b.get("ResponsePayload"))
            .and_then(|p| p.get("Attribute"))
            .unwrap();
        assert_eq!(
            a.get("AttributeName"),
            Some(&Ttlv::text("AttributeName", "x-attribute1"))
        );
        assert_eq!(
            a.get("AttributeValue"),
            Some(&Ttlv::text("AttributeValue", "ModifiedValue1"))
        );
    }
}
