//! The TTLV data model (KMIP 2.1 §9.1 "TTLV Encoding"): an item is a tag, a type and a value.
//!
//! This module holds the owned representation and typed accessors only; the JSON form
//! (KMIP profiles "JSON encoding", as spoken by the Cosmian KMS) lives in [`super::json`].
//! Tags are carried by name (the KMIP 2.1 spec names); [`tag_code`] / [`tag_name`] map the
//! names we know to their 3-byte codes so that `"0x42000A"` style tags are accepted too.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// One TTLV item.
#[derive(Clone, PartialEq, Eq)]
pub struct Ttlv {
    /// Tag name (KMIP 2.1 spec spelling), or `0x42XXXX` for a tag we have no name for.
    pub tag: String,
    /// Typed value.
    pub value: Value,
}

/// An enumeration value as it appeared on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnumValue {
    /// By name (`"AES"`).
    Name(String),
    /// By code (`"0x00000003"` or a JSON number).
    Code(u32),
}

/// A TTLV value (KMIP 2.1 §9.1.1.3 Item Type).
#[derive(Clone, PartialEq, Eq)]
pub enum Value {
    /// 0x01: ordered children.
    Structure(Vec<Ttlv>),
    /// 0x02: signed 32-bit.
    Integer(i32),
    /// 0x03: signed 64-bit.
    LongInteger(i64),
    /// 0x04: big-endian two's complement bytes.
    BigInteger(Vec<u8>),
    /// 0x05: enumeration.
    Enumeration(EnumValue),
    /// 0x06.
    Boolean(bool),
    /// 0x07: UTF-8 text.
    TextString(String),
    /// 0x08: bytes.
    ByteString(Vec<u8>),
    /// 0x09: POSIX time, seconds.
    DateTime(i64),
    /// 0x0A: seconds, unsigned 32-bit.
    Interval(u32),
    /// 0x0B: POSIX time, microseconds.
    DateTimeExtended(i64),
}

impl Value {
    /// The KMIP item type name, as used in the JSON `type` field.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Structure(_) => "Structure",
            Value::Integer(_) => "Integer",
            Value::LongInteger(_) => "LongInteger",
            Value::BigInteger(_) => "BigInteger",
            Value::Enumeration(_) => "Enumeration",
            Value::Boolean(_) => "Boolean",
            Value::TextString(_) => "TextString",
            Value::ByteString(_) => "ByteString",
            Value::DateTime(_) => "DateTime",
            Value::Interval(_) => "Interval",
            Value::DateTimeExtended(_) => "DateTimeExtended",
        }
    }
}

impl fmt::Debug for Ttlv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Byte strings may be key material: print lengths only.
        match &self.value {
            Value::Structure(c) => f
                .debug_struct("Ttlv")
                .field("tag", &self.tag)
                .field("children", c)
                .finish(),
            Value::ByteString(b) => write!(f, "{}: ByteString[{}]", self.tag, b.len()),
            Value::BigInteger(b) => write!(f, "{}: BigInteger[{}]", self.tag, b.len()),
            Value::TextString(s) => write!(f, "{}: {:?}", self.tag, s),
            Value::Integer(v) => write!(f, "{}: {}", self.tag, v),
            Value::LongInteger(v) => write!(f, "{}: {}", self.tag, v),
            Value::Enumeration(v) => write!(f, "{}: {:?}", self.tag, v),
            Value::Boolean(v) => write!(f, "{}: {}", self.tag, v),
            Value::DateTime(v) => write!(f, "{}: DateTime({})", self.tag, v),
            Value::Interval(v) => write!(f, "{}: Interval({})", self.tag, v),
            Value::DateTimeExtended(v) => write!(f, "{}: DateTimeExtended({})", self.tag, v),
        }
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(
            &Ttlv {
                tag: String::new(),
                value: self.clone(),
            },
            f,
        )
    }
}

impl Drop for Ttlv {
    fn drop(&mut self) {
        // Byte strings carry key material and plaintexts.
        if let Value::ByteString(b) = &mut self.value {
            crate::store::wipe(b);
        }
    }
}

/// Errors of the typed accessors: the message is structurally valid TTLV but not what the
/// operation expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldError {
    /// A required child is absent (names the tag).
    Missing(&'static str),
    /// A child has the wrong item type (names the tag).
    WrongType(&'static str),
    /// A value is out of range or not one we support (names the tag).
    Invalid(&'static str),
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldError::Missing(t) => write!(f, "missing field {t}"),
            FieldError::WrongType(t) => write!(f, "field {t} has the wrong type"),
            FieldError::Invalid(t) => write!(f, "invalid or unsupported value for {t}"),
        }
    }
}

impl core::error::Error for FieldError {}

impl Ttlv {
    /// A new item.
    pub fn new(tag: &str, value: Value) -> Self {
        Ttlv {
            tag: String::from(tag),
            value,
        }
    }
    /// A Structure.
    pub fn structure(tag: &str, children: Vec<Ttlv>) -> Self {
        Self::new(tag, Value::Structure(children))
    }
    /// A TextString.
    pub fn text(tag: &str, v: &str) -> Self {
        Self::new(tag, Value::TextString(String::from(v)))
    }
    /// A ByteString.
    pub fn bytes(tag: &str, v: &[u8]) -> Self {
        Self::new(tag, Value::ByteString(v.to_vec()))
    }
    /// An Integer.
    pub fn int(tag: &str, v: i32) -> Self {
        Self::new(tag, Value::Integer(v))
    }
    /// An Enumeration by name.
    pub fn enumeration(tag: &str, name: &str) -> Self {
        Self::new(tag, Value::Enumeration(EnumValue::Name(String::from(name))))
    }
    /// A DateTime.
    pub fn datetime(tag: &str, secs: i64) -> Self {
        Self::new(tag, Value::DateTime(secs))
    }
    /// A Boolean.
    pub fn boolean(tag: &str, v: bool) -> Self {
        Self::new(tag, Value::Boolean(v))
    }

    /// Children of a Structure (empty for other types).
    pub fn children(&self) -> &[Ttlv] {
        match &self.value {
            Value::Structure(c) => c,
            _ => &[],
        }
    }

    /// First child with this tag.
    pub fn get(&self, tag: &str) -> Option<&Ttlv> {
        self.children().iter().find(|c| c.tag == tag)
    }

    /// All children with this tag.
    pub fn all<'a>(&'a self, tag: &'a str) -> impl Iterator<Item = &'a Ttlv> + 'a {
        self.children().iter().filter(move |c| c.tag == tag)
    }

    /// Required child.
    pub fn req(&self, tag: &'static str) -> Result<&Ttlv, FieldError> {
        self.get(tag).ok_or(FieldError::Missing(tag))
    }

    /// This item as a TextString.
    pub fn as_text(&self, tag: &'static str) -> Result<&str, FieldError> {
        match &self.value {
            Value::TextString(s) => Ok(s),
            _ => Err(FieldError::WrongType(tag)),
        }
    }
    /// This item as a ByteString.
    pub fn as_bytes(&self, tag: &'static str) -> Result<&[u8], FieldError> {
        match &self.value {
            Value::ByteString(s) => Ok(s),
            _ => Err(FieldError::WrongType(tag)),
        }
    }
    /// This item as an Integer (LongInteger accepted when it fits).
    pub fn as_int(&self, tag: &'static str) -> Result<i32, FieldError> {
        match &self.value {
            Value::Integer(v) => Ok(*v),
            Value::LongInteger(v) => i32::try_from(*v).map_err(|_| FieldError::Invalid(tag)),
            _ => Err(FieldError::WrongType(tag)),
        }
    }
    /// This item as a Boolean.
    pub fn as_bool(&self, tag: &'static str) -> Result<bool, FieldError> {
        match &self.value {
            Value::Boolean(v) => Ok(*v),
            _ => Err(FieldError::WrongType(tag)),
        }
    }
    /// This item as a DateTime (seconds); DateTimeExtended is truncated to seconds.
    pub fn as_datetime(&self, tag: &'static str) -> Result<i64, FieldError> {
        match &self.value {
            Value::DateTime(v) => Ok(*v),
            Value::DateTimeExtended(v) => Ok(v.div_euclid(1_000_000)),
            _ => Err(FieldError::WrongType(tag)),
        }
    }
    /// This item as an Enumeration.
    pub fn as_enum(&self, tag: &'static str) -> Result<&EnumValue, FieldError> {
        match &self.value {
            Value::Enumeration(v) => Ok(v),
            _ => Err(FieldError::WrongType(tag)),
        }
    }

    /// Optional TextString child.
    pub fn opt_text(&self, tag: &'static str) -> Result<Option<&str>, FieldError> {
        self.get(tag).map(|c| c.as_text(tag)).transpose()
    }
    /// Optional ByteString child.
    pub fn opt_bytes(&self, tag: &'static str) -> Result<Option<&[u8]>, FieldError> {
        self.get(tag).map(|c| c.as_bytes(tag)).transpose()
    }
    /// Optional Integer child.
    pub fn opt_int(&self, tag: &'static str) -> Result<Option<i32>, FieldError> {
        self.get(tag).map(|c| c.as_int(tag)).transpose()
    }
    /// Optional Boolean child.
    pub fn opt_bool(&self, tag: &'static str) -> Result<Option<bool>, FieldError> {
        self.get(tag).map(|c| c.as_bool(tag)).transpose()
    }
    /// Optional DateTime child.
    pub fn opt_datetime(&self, tag: &'static str) -> Result<Option<i64>, FieldError> {
        self.get(tag).map(|c| c.as_datetime(tag)).transpose()
    }
}

/// Tag names and codes we know (KMIP 2.1 §10.1.1 "Tags"; 0x42XXXX).
const TAGS: &[(&str, u32)] = &[
    ("ActivationDate", 0x420001),
    ("Attribute", 0x420008),
    ("AttributeName", 0x42000A),
    ("AttributeValue", 0x42000B),
    ("Authentication", 0x42000C),
    ("BatchCount", 0x42000D),
    ("BatchErrorContinuationOption", 0x42000E),
    ("BatchItem", 0x42000F),
    ("BatchOrderOption", 0x420010),
    ("BlockCipherMode", 0x420011),
    ("CompromiseDate", 0x420020),
    ("CompromiseOccurrenceDate", 0x420021),
    ("ContactInformation", 0x420022),
    ("CryptographicAlgorithm", 0x420028),
    ("CryptographicDomainParameters", 0x420029),
    ("CryptographicLength", 0x42002A),
    ("CryptographicParameters", 0x42002B),
    ("CryptographicUsageMask", 0x42002C),
    ("DeactivationDate", 0x42002F),
    ("DestroyDate", 0x420033),
    ("HashingAlgorithm", 0x420038),
    ("InitialDate", 0x420039),
    ("IVCounterNonce", 0x42003D),
    ("Key", 0x42003F),
    ("KeyBlock", 0x420040),
    ("KeyCompressionType", 0x420041),
    ("KeyFormatType", 0x420042),
    ("KeyMaterial", 0x420043),
    ("KeyValue", 0x420045),
    ("KeyWrappingData", 0x420046),
    ("LastChangeDate", 0x420048),
    ("Link", 0x42004A),
    ("LinkType", 0x42004B),
    ("LinkedObjectIdentifier", 0x42004C),
    ("MaximumItems", 0x42004F),
    ("MaximumResponseSize", 0x420050),
    ("Name", 0x420053),
    ("NameType", 0x420054),
    ("NameValue", 0x420055),
    ("ObjectGroup", 0x420056),
    ("ObjectType", 0x420057),
    ("Operation", 0x42005C),
    ("PaddingMethod", 0x42005F),
    ("PrivateKey", 0x420064),
    ("PrivateKeyUniqueIdentifier", 0x420066),
    ("ProtocolVersion", 0x420069),
    ("ProtocolVersionMajor", 0x42006A),
    ("ProtocolVersionMinor", 0x42006B),
    ("PublicKey", 0x42006D),
    ("PublicKeyUniqueIdentifier", 0x42006F),
    ("QueryFunction", 0x420074),
    ("RecommendedCurve", 0x420075),
    ("ReplacedUniqueIdentifier", 0x420076),
    ("RequestHeader", 0x420077),
    ("RequestMessage", 0x420078),
    ("RequestPayload", 0x420079),
    ("ResponseHeader", 0x42007A),
    ("ResponseMessage", 0x42007B),
    ("ResponsePayload", 0x42007C),
    ("ResultMessage", 0x42007D),
    ("ResultReason", 0x42007E),
    ("ResultStatus", 0x42007F),
    ("RevocationMessage", 0x420080),
    ("RevocationReason", 0x420081),
    ("RevocationReasonCode", 0x420082),
    ("KeyRoleType", 0x420083),
    ("ServerInformation", 0x420088),
    ("State", 0x42008D),
    ("StorageStatusMask", 0x42008E),
    ("SymmetricKey", 0x42008F),
    ("TimeStamp", 0x420092),
    ("UniqueBatchItemID", 0x420093),
    ("UniqueIdentifier", 0x420094),
    ("VendorIdentification", 0x42009D),
    ("ObjectGroupMember", 0x4200AC),
    ("DigitalSignatureAlgorithm", 0x4200AE),
    ("Data", 0x4200C2),
    ("SignatureData", 0x4200C3),
    ("DataLength", 0x4200C4),
    ("RandomIV", 0x4200C5),
    ("ValidityIndicator", 0x42009B),
    ("TagLength", 0x4200CE),
    ("OffsetItems", 0x4200D4),
    ("LocatedItems", 0x4200D5),
    ("KeyWrapType", 0x4200F8),
    ("Description", 0x4200FC),
    ("Comment", 0x4200FD),
    ("AuthenticatedEncryptionAdditionalData", 0x4200FE),
    ("AuthenticatedEncryptionTag", 0x4200FF),
    ("DigestedData", 0x420107),
    ("ReplaceExisting", 0x420124),
    ("Attributes", 0x420125),
    ("CommonAttributes", 0x420126),
    ("PrivateKeyAttributes", 0x420127),
    ("PublicKeyAttributes", 0x420128),
    ("ServerName", 0x42012D),
    ("AttributeReference", 0x42013B),
    ("CurrentAttribute", 0x42013C),
    ("NewAttribute", 0x42013D),
    ("D", 0x42002E),
    ("QString", 0x420072),
];

/// The 3-byte code of a tag name we know.
pub fn tag_code(name: &str) -> Option<u32> {
    TAGS.iter().find(|(n, _)| *n == name).map(|(_, c)| *c)
}

/// The name of a tag code we know.
pub fn tag_name(code: u32) -> Option<&'static str> {
    TAGS.iter().find(|(_, c)| *c == code).map(|(n, _)| *n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_table_is_a_bijection() {
        for (n, c) in TAGS {
            assert_eq!(tag_code(n), Some(*c), "{n}");
            assert_eq!(tag_name(*c), Some(*n), "{c:#x}");
            assert!((0x42_0000..=0x42_FFFF).contains(c), "{n}");
        }
        assert_eq!(tag_code("UniqueIdentifier"), Some(0x42_0094));
        assert_eq!(tag_name(0x42_0125), Some("Attributes"));
    }

    #[test]
    fn accessors_report_typed_errors() {
        let t = Ttlv::structure("S", alloc::vec![Ttlv::int("A", 1), Ttlv::text("B", "x")]);
        assert_eq!(t.opt_int("A"), Ok(Some(1)));
        assert_eq!(t.opt_text("A"), Err(FieldError::WrongType("A")));
        assert_eq!(t.req("C").unwrap_err(), FieldError::Missing("C"));
        assert_eq!(t.opt_bytes("Z"), Ok(None));
        // Debug never prints byte strings.
        let k = Ttlv::bytes("Key", &[0xAA; 4]);
        assert_eq!(alloc::format!("{k:?}"), "Key: ByteString[4]");
    }
}
