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

/// Tag names and codes (KMIP 2.1 §10.1.1 "Tags", 0x420001..=0x420165; names are the spec's
/// with spaces and punctuation removed, e.g. `IVCounterNonce`, `X509CertificateIdentifier`).
const TAGS: &[(&str, u32)] = &[
    ("ActivationDate", 0x420001),
    ("ApplicationData", 0x420002),
    ("ApplicationNamespace", 0x420003),
    ("ApplicationSpecificInformation", 0x420004),
    ("ArchiveDate", 0x420005),
    ("AsynchronousCorrelationValue", 0x420006),
    ("AsynchronousIndicator", 0x420007),
    ("Attribute", 0x420008),
    ("AttributeIndex", 0x420009),
    ("AttributeName", 0x42000A),
    ("AttributeValue", 0x42000B),
    ("Authentication", 0x42000C),
    ("BatchCount", 0x42000D),
    ("BatchErrorContinuationOption", 0x42000E),
    ("BatchItem", 0x42000F),
    ("BatchOrderOption", 0x420010),
    ("BlockCipherMode", 0x420011),
    ("CancellationResult", 0x420012),
    ("Certificate", 0x420013),
    ("CertificateIdentifier", 0x420014),
    ("CertificateIssuer", 0x420015),
    ("CertificateIssuerAlternativeName", 0x420016),
    ("CertificateIssuerDistinguishedName", 0x420017),
    ("CertificateRequest", 0x420018),
    ("CertificateRequestType", 0x420019),
    ("CertificateSubject", 0x42001A),
    ("CertificateSubjectAlternativeName", 0x42001B),
    ("CertificateSubjectDistinguishedName", 0x42001C),
    ("CertificateType", 0x42001D),
    ("CertificateValue", 0x42001E),
    ("CommonTemplateAttribute", 0x42001F),
    ("CompromiseDate", 0x420020),
    ("CompromiseOccurrenceDate", 0x420021),
    ("ContactInformation", 0x420022),
    ("Credential", 0x420023),
    ("CredentialType", 0x420024),
    ("CredentialValue", 0x420025),
    ("CriticalityIndicator", 0x420026),
    ("CRTCoefficient", 0x420027),
    ("CryptographicAlgorithm", 0x420028),
    ("CryptographicDomainParameters", 0x420029),
    ("CryptographicLength", 0x42002A),
    ("CryptographicParameters", 0x42002B),
    ("CryptographicUsageMask", 0x42002C),
    ("CustomAttribute", 0x42002D),
    ("D", 0x42002E),
    ("DeactivationDate", 0x42002F),
    ("DerivationData", 0x420030),
    ("DerivationMethod", 0x420031),
    ("DerivationParameters", 0x420032),
    ("DestroyDate", 0x420033),
    ("Digest", 0x420034),
    ("DigestValue", 0x420035),
    ("EncryptionKeyInformation", 0x420036),
    ("G", 0x420037),
    ("HashingAlgorithm", 0x420038),
    ("InitialDate", 0x420039),
    ("InitializationVector", 0x42003A),
    ("Issuer", 0x42003B),
    ("IterationCount", 0x42003C),
    ("IVCounterNonce", 0x42003D),
    ("J", 0x42003E),
    ("Key", 0x42003F),
    ("KeyBlock", 0x420040),
    ("KeyCompressionType", 0x420041),
    ("KeyFormatType", 0x420042),
    ("KeyMaterial", 0x420043),
    ("KeyPartIdentifier", 0x420044),
    ("KeyValue", 0x420045),
    ("KeyWrappingData", 0x420046),
    ("KeyWrappingSpecification", 0x420047),
    ("LastChangeDate", 0x420048),
    ("LeaseTime", 0x420049),
    ("Link", 0x42004A),
    ("LinkType", 0x42004B),
    ("LinkedObjectIdentifier", 0x42004C),
    ("MACSignature", 0x42004D),
    ("MACSignatureKeyInformation", 0x42004E),
    ("MaximumItems", 0x42004F),
    ("MaximumResponseSize", 0x420050),
    ("MessageExtension", 0x420051),
    ("Modulus", 0x420052),
    ("Name", 0x420053),
    ("NameType", 0x420054),
    ("NameValue", 0x420055),
    ("ObjectGroup", 0x420056),
    ("ObjectType", 0x420057),
    ("Offset", 0x420058),
    ("OpaqueDataType", 0x420059),
    ("OpaqueDataValue", 0x42005A),
    ("OpaqueObject", 0x42005B),
    ("Operation", 0x42005C),
    ("OperationPolicyName", 0x42005D),
    ("P", 0x42005E),
    ("PaddingMethod", 0x42005F),
    ("PrimeExponentP", 0x420060),
    ("PrimeExponentQ", 0x420061),
    ("PrimeFieldSize", 0x420062),
    ("PrivateExponent", 0x420063),
    ("PrivateKey", 0x420064),
    ("PrivateKeyTemplateAttribute", 0x420065),
    ("PrivateKeyUniqueIdentifier", 0x420066),
    ("ProcessStartDate", 0x420067),
    ("ProtectStopDate", 0x420068),
    ("ProtocolVersion", 0x420069),
    ("ProtocolVersionMajor", 0x42006A),
    ("ProtocolVersionMinor", 0x42006B),
    ("PublicExponent", 0x42006C),
    ("PublicKey", 0x42006D),
    ("PublicKeyTemplateAttribute", 0x42006E),
    ("PublicKeyUniqueIdentifier", 0x42006F),
    ("PutFunction", 0x420070),
    ("Q", 0x420071),
    ("QString", 0x420072),
    ("QLength", 0x420073),
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
    ("Salt", 0x420084),
    ("SecretData", 0x420085),
    ("SecretDataType", 0x420086),
    ("SerialNumber", 0x420087),
    ("ServerInformation", 0x420088),
    ("SplitKey", 0x420089),
    ("SplitKeyMethod", 0x42008A),
    ("SplitKeyParts", 0x42008B),
    ("SplitKeyThreshold", 0x42008C),
    ("State", 0x42008D),
    ("StorageStatusMask", 0x42008E),
    ("SymmetricKey", 0x42008F),
    ("Template", 0x420090),
    ("TemplateAttribute", 0x420091),
    ("TimeStamp", 0x420092),
    ("UniqueBatchItemID", 0x420093),
    ("UniqueIdentifier", 0x420094),
    ("UsageLimits", 0x420095),
    ("UsageLimitsCount", 0x420096),
    ("UsageLimitsTotal", 0x420097),
    ("UsageLimitsUnit", 0x420098),
    ("Username", 0x420099),
    ("ValidityDate", 0x42009A),
    ("ValidityIndicator", 0x42009B),
    ("VendorExtension", 0x42009C),
    ("VendorIdentification", 0x42009D),
    ("WrappingMethod", 0x42009E),
    ("X", 0x42009F),
    ("Y", 0x4200A0),
    ("Password", 0x4200A1),
    ("DeviceIdentifier", 0x4200A2),
    ("EncodingOption", 0x4200A3),
    ("ExtensionInformation", 0x4200A4),
    ("ExtensionName", 0x4200A5),
    ("ExtensionTag", 0x4200A6),
    ("ExtensionType", 0x4200A7),
    ("Fresh", 0x4200A8),
    ("MachineIdentifier", 0x4200A9),
    ("MediaIdentifier", 0x4200AA),
    ("NetworkIdentifier", 0x4200AB),
    ("ObjectGroupMember", 0x4200AC),
    ("CertificateLength", 0x4200AD),
    ("DigitalSignatureAlgorithm", 0x4200AE),
    ("CertificateSerialNumber", 0x4200AF),
    ("DeviceSerialNumber", 0x4200B0),
    ("IssuerAlternativeName", 0x4200B1),
    ("IssuerDistinguishedName", 0x4200B2),
    ("SubjectAlternativeName", 0x4200B3),
    ("SubjectDistinguishedName", 0x4200B4),
    ("X509CertificateIdentifier", 0x4200B5),
    ("X509CertificateIssuer", 0x4200B6),
    ("X509CertificateSubject", 0x4200B7),
    ("KeyValueLocation", 0x4200B8),
    ("KeyValueLocationValue", 0x4200B9),
    ("KeyValueLocationType", 0x4200BA),
    ("KeyValuePresent", 0x4200BB),
    ("OriginalCreationDate", 0x4200BC),
    ("PGPKey", 0x4200BD),
    ("PGPKeyVersion", 0x4200BE),
    ("AlternativeName", 0x4200BF),
    ("AlternativeNameValue", 0x4200C0),
    ("AlternativeNameType", 0x4200C1),
    ("Data", 0x4200C2),
    ("SignatureData", 0x4200C3),
    ("DataLength", 0x4200C4),
    ("RandomIV", 0x4200C5),
    ("MACData", 0x4200C6),
    ("AttestationType", 0x4200C7),
    ("Nonce", 0x4200C8),
    ("NonceID", 0x4200C9),
    ("NonceValue", 0x4200CA),
    ("AttestationMeasurement", 0x4200CB),
    ("AttestationAssertion", 0x4200CC),
    ("IVLength", 0x4200CD),
    ("TagLength", 0x4200CE),
    ("FixedFieldLength", 0x4200CF),
    ("CounterLength", 0x4200D0),
    ("InitialCounterValue", 0x4200D1),
    ("InvocationFieldLength", 0x4200D2),
    ("AttestationCapableIndicator", 0x4200D3),
    ("OffsetItems", 0x4200D4),
    ("LocatedItems", 0x4200D5),
    ("CorrelationValue", 0x4200D6),
    ("InitIndicator", 0x4200D7),
    ("FinalIndicator", 0x4200D8),
    ("RNGParameters", 0x4200D9),
    ("RNGAlgorithm", 0x4200DA),
    ("DRBGAlgorithm", 0x4200DB),
    ("FIPS186Variation", 0x4200DC),
    ("PredictionResistance", 0x4200DD),
    ("RandomNumberGenerator", 0x4200DE),
    ("ValidationInformation", 0x4200DF),
    ("ValidationAuthorityType", 0x4200E0),
    ("ValidationAuthorityCountry", 0x4200E1),
    ("ValidationAuthorityURI", 0x4200E2),
    ("ValidationVersionMajor", 0x4200E3),
    ("ValidationVersionMinor", 0x4200E4),
    ("ValidationType", 0x4200E5),
    ("ValidationLevel", 0x4200E6),
    ("ValidationCertificateIdentifier", 0x4200E7),
    ("ValidationCertificateURI", 0x4200E8),
    ("ValidationVendorURI", 0x4200E9),
    ("ValidationProfile", 0x4200EA),
    ("ProfileInformation", 0x4200EB),
    ("ProfileName", 0x4200EC),
    ("ServerURI", 0x4200ED),
    ("ServerPort", 0x4200EE),
    ("StreamingCapability", 0x4200EF),
    ("AsynchronousCapability", 0x4200F0),
    ("AttestationCapability", 0x4200F1),
    ("UnwrapMode", 0x4200F2),
    ("DestroyAction", 0x4200F3),
    ("ShreddingAlgorithm", 0x4200F4),
    ("RNGMode", 0x4200F5),
    ("ClientRegistrationMethod", 0x4200F6),
    ("CapabilityInformation", 0x4200F7),
    ("KeyWrapType", 0x4200F8),
    ("BatchUndoCapability", 0x4200F9),
    ("BatchContinueCapability", 0x4200FA),
    ("PKCS12FriendlyName", 0x4200FB),
    ("Description", 0x4200FC),
    ("Comment", 0x4200FD),
    ("AuthenticatedEncryptionAdditionalData", 0x4200FE),
    ("AuthenticatedEncryptionTag", 0x4200FF),
    ("SaltLength", 0x420100),
    ("MaskGenerator", 0x420101),
    ("MaskGeneratorHashingAlgorithm", 0x420102),
    ("PSource", 0x420103),
    ("TrailerField", 0x420104),
    ("ClientCorrelationValue", 0x420105),
    ("ServerCorrelationValue", 0x420106),
    ("DigestedData", 0x420107),
    ("CertificateSubjectCN", 0x420108),
    ("CertificateSubjectO", 0x420109),
    ("CertificateSubjectOU", 0x42010A),
    ("CertificateSubjectEmail", 0x42010B),
    ("CertificateSubjectC", 0x42010C),
    ("CertificateSubjectST", 0x42010D),
    ("CertificateSubjectL", 0x42010E),
    ("CertificateSubjectUID", 0x42010F),
    ("CertificateSubjectSerialNumber", 0x420110),
    ("CertificateSubjectTitle", 0x420111),
    ("CertificateSubjectDC", 0x420112),
    ("CertificateSubjectDNQualifier", 0x420113),
    ("CertificateIssuerCN", 0x420114),
    ("CertificateIssuerO", 0x420115),
    ("CertificateIssuerOU", 0x420116),
    ("CertificateIssuerEmail", 0x420117),
    ("CertificateIssuerC", 0x420118),
    ("CertificateIssuerST", 0x420119),
    ("CertificateIssuerL", 0x42011A),
    ("CertificateIssuerUID", 0x42011B),
    ("CertificateIssuerSerialNumber", 0x42011C),
    ("CertificateIssuerTitle", 0x42011D),
    ("CertificateIssuerDC", 0x42011E),
    ("CertificateIssuerDNQualifier", 0x42011F),
    ("Sensitive", 0x420120),
    ("AlwaysSensitive", 0x420121),
    ("Extractable", 0x420122),
    ("NeverExtractable", 0x420123),
    ("ReplaceExisting", 0x420124),
    ("Attributes", 0x420125),
    ("CommonAttributes", 0x420126),
    ("PrivateKeyAttributes", 0x420127),
    ("PublicKeyAttributes", 0x420128),
    ("ExtensionEnumeration", 0x420129),
    ("ExtensionAttribute", 0x42012A),
    ("ExtensionParentStructureTag", 0x42012B),
    ("ExtensionDescription", 0x42012C),
    ("ServerName", 0x42012D),
    ("ServerSerialNumber", 0x42012E),
    ("ServerVersion", 0x42012F),
    ("ServerLoad", 0x420130),
    ("ProductName", 0x420131),
    ("BuildLevel", 0x420132),
    ("BuildDate", 0x420133),
    ("ClusterInfo", 0x420134),
    ("AlternateFailoverEndpoints", 0x420135),
    ("ShortUniqueIdentifier", 0x420136),
    ("Tag", 0x420138),
    ("CertificateRequestUniqueIdentifier", 0x420139),
    ("NISTKeyType", 0x42013A),
    ("AttributeReference", 0x42013B),
    ("CurrentAttribute", 0x42013C),
    ("NewAttribute", 0x42013D),
    ("CertificateRequestValue", 0x420140),
    ("LogMessage", 0x420141),
    ("ProfileVersion", 0x420142),
    ("ProfileVersionMajor", 0x420143),
    ("ProfileVersionMinor", 0x420144),
    ("ProtectionLevel", 0x420145),
    ("ProtectionPeriod", 0x420146),
    ("QuantumSafe", 0x420147),
    ("QuantumSafeCapability", 0x420148),
    ("Ticket", 0x420149),
    ("TicketType", 0x42014A),
    ("TicketValue", 0x42014B),
    ("RequestCount", 0x42014C),
    ("Rights", 0x42014D),
    ("Objects", 0x42014E),
    ("Operations", 0x42014F),
    ("Right", 0x420150),
    ("EndpointRole", 0x420151),
    ("Ephemeral", 0x420154),
    ("ServerHashedPassword", 0x420155),
    ("OneTimePassword", 0x420156),
    ("HashedPassword", 0x420157),
    ("AdjustmentType", 0x420158),
    ("PKCS11Interface", 0x420159),
    ("PKCS11Function", 0x42015A),
    ("PKCS11InputParameters", 0x42015B),
    ("PKCS11OutputParameters", 0x42015C),
    ("PKCS11ReturnCode", 0x42015D),
    ("ProtectionStorageMask", 0x42015E),
    ("ProtectionStorageMasks", 0x42015F),
    ("InteropFunction", 0x420160),
    ("InteropIdentifier", 0x420161),
    ("AdjustmentValue", 0x420162),
    ("CommonProtectionStorageMasks", 0x420163),
    ("PrivateProtectionStorageMasks", 0x420164),
    ("PublicProtectionStorageMasks", 0x420165),
];

/// Other spellings we accept for a tag (never emitted): Cosmian's `IvCounterNonce`.
const TAG_ALIASES: &[(&str, u32)] = &[("IvCounterNonce", 0x42003D)];

/// The 3-byte code of a tag name we know.
pub fn tag_code(name: &str) -> Option<u32> {
    TAGS.iter()
        .chain(TAG_ALIASES)
        .find(|(n, _)| *n == name)
        .map(|(_, c)| *c)
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
