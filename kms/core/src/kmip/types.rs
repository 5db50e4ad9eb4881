//! KMIP 2.1 enumerations and the `Attributes` structure, with parse/emit pairs over [`Ttlv`].
//!
//! Enumerations are accepted by name or by code. Names compare case-insensitively and ignore
//! `_`, `-` and `.`, so the spec spelling (`SHA_256`, `P_256`, `X_509`) and the Cosmian KMS
//! spelling (`SHA256`, `P256`, `X509`) are both understood; responses use the Cosmian spelling
//! so that its clients can read them. Codes from KMIP 2.1 §11 "Enumerations" (0x8XXXXXXX =
//! Cosmian extensions).

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use super::ttlv::{EnumValue, FieldError, Ttlv, Value};

fn norm_eq(a: &str, b: &str) -> bool {
    let mut x = a
        .bytes()
        .filter(|c| !matches!(c, b'_' | b'-' | b'.' | b' '));
    let mut y = b
        .bytes()
        .filter(|c| !matches!(c, b'_' | b'-' | b'.' | b' '));
    loop {
        match (x.next(), y.next()) {
            (None, None) => return true,
            (Some(p), Some(q)) if p.eq_ignore_ascii_case(&q) => continue,
            _ => return false,
        }
    }
}

macro_rules! kmip_enum {
    ($(#[$m:meta])* $name:ident : $tag:literal { $($(#[$vm:meta])* $v:ident = $code:literal $(| $alias:literal)*),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[allow(missing_docs, non_camel_case_types)]
        pub enum $name { $($(#[$vm])* $v),+ }

        impl $name {
            /// Every variant.
            pub const ALL: &'static [$name] = &[$($name::$v),+];
            /// The KMIP tag of this enumeration.
            pub const TAG: &'static str = $tag;
            /// The enumeration code.
            pub fn code(self) -> u32 {
                match self { $($name::$v => $code),+ }
            }
            /// The name we emit.
            pub fn name(self) -> &'static str {
                match self { $($name::$v => stringify!($v)),+ }
            }
            /// From a code.
            pub fn from_code(code: u32) -> Option<Self> {
                match code { $($code => Some($name::$v),)+ _ => None }
            }
            /// From a name (spec or Cosmian spelling).
            pub fn from_name(n: &str) -> Option<Self> {
                $(
                    if norm_eq(n, stringify!($v)) $(|| norm_eq(n, $alias))* {
                        return Some($name::$v);
                    }
                )+
                None
            }
            /// From a wire value.
            pub fn from_enum(v: &EnumValue) -> Option<Self> {
                match v {
                    EnumValue::Name(n) => Self::from_name(n),
                    EnumValue::Code(c) => Self::from_code(*c),
                }
            }
            /// Parse an item carrying this enumeration.
            pub fn parse(t: &Ttlv) -> Result<Self, FieldError> {
                Self::from_enum(t.as_enum($tag)?).ok_or(FieldError::Invalid($tag))
            }
            /// Parse an optional child of `parent`.
            pub fn opt(parent: &Ttlv) -> Result<Option<Self>, FieldError> {
                parent.get($tag).map(Self::parse).transpose()
            }
            /// Emit as an item with the enumeration's own tag.
            pub fn to_ttlv(self) -> Ttlv {
                Ttlv::enumeration($tag, self.name())
            }
        }
    };
}

kmip_enum!(
    /// KMIP 2.1 §11.29 Object Type.
    ObjectType: "ObjectType" {
        Certificate = 0x01, SymmetricKey = 0x02, PublicKey = 0x03, PrivateKey = 0x04,
        SplitKey = 0x05, SecretData = 0x07, OpaqueObject = 0x08, PGPKey = 0x09,
        CertificateRequest = 0x0A,
    }
);

kmip_enum!(
    /// KMIP 2.1 §11.11 Cryptographic Algorithm (subset).
    CryptographicAlgorithm: "CryptographicAlgorithm" {
        DES = 0x01, THREE_DES = 0x02 | "3DES" | "DES3", AES = 0x03, RSA = 0x04, DSA = 0x05,
        ECDSA = 0x06, HMACSHA1 = 0x07, HMACSHA224 = 0x08, HMACSHA256 = 0x09,
        HMACSHA384 = 0x0A, HMACSHA512 = 0x0B, DH = 0x0D, ECDH = 0x0E, EC = 0x1A,
        ChaCha20 = 0x1C, Poly1305 = 0x1D, ChaCha20Poly1305 = 0x1E, Ed25519 = 0x38, Ed448 = 0x39,
    }
);

kmip_enum!(
    /// KMIP 2.1 §11.28 Key Format Type (subset).
    KeyFormatType: "KeyFormatType" {
        Raw = 0x01, Opaque = 0x02, PKCS1 = 0x03, PKCS8 = 0x04, X509 = 0x05,
        ECPrivateKey = 0x06, TransparentSymmetricKey = 0x07, TransparentDSAPrivateKey = 0x08,
        TransparentDSAPublicKey = 0x09, TransparentRSAPrivateKey = 0x0A,
        TransparentRSAPublicKey = 0x0B, TransparentDHPrivateKey = 0x0C,
        TransparentDHPublicKey = 0x0D,
        TransparentECPrivateKey = 0x14, TransparentECPublicKey = 0x15, PKCS12 = 0x16,
        PKCS10 = 0x17,
    }
);

kmip_enum!(
    /// KMIP 2.1 §11.50 State.
    State: "State" {
        PreActive = 0x01, Active = 0x02, Deactivated = 0x03, Compromised = 0x04,
        Destroyed = 0x05, DestroyedCompromised = 0x06,
    }
);

kmip_enum!(
    /// KMIP 2.1 §11.5 Block Cipher Mode (subset; GCMSIV is the Cosmian extension code).
    BlockCipherMode: "BlockCipherMode" {
        CBC = 0x01, ECB = 0x02, CTR = 0x06, CCM = 0x08, GCM = 0x09, XTS = 0x0B,
        AESKeyWrapPadding = 0x0C, NISTKeyWrap = 0x0D, AEAD = 0x12, GCMSIV = 0x8000_0002,
    }
);

kmip_enum!(
    /// KMIP 2.1 §11.24 Hashing Algorithm (subset).
    HashingAlgorithm: "HashingAlgorithm" {
        SHA1 = 0x04, SHA224 = 0x05, SHA256 = 0x06, SHA384 = 0x07, SHA512 = 0x08,
        SHA3224 = 0x0E, SHA3256 = 0x0F, SHA3384 = 0x10, SHA3512 = 0x11,
    }
);

kmip_enum!(
    /// KMIP 2.1 §11.15 Digital Signature Algorithm (subset).
    DigitalSignatureAlgorithm: "DigitalSignatureAlgorithm" {
        SHA1WithRSAEncryption = 0x03, SHA224WithRSAEncryption = 0x04,
        SHA256WithRSAEncryption = 0x05, SHA384WithRSAEncryption = 0x06,
        SHA512WithRSAEncryption = 0x07, RSASSAPSS = 0x08 | "RSASSA-PSS",
        ECDSAWithSHA256 = 0x0E | "ECDSA with SHA256", ECDSAWithSHA384 = 0x0F | "ECDSA with SHA384",
        Ed25519 = 0x8000_0001,
    }
);

kmip_enum!(
    /// KMIP 2.1 §11.38 Padding Method.
    PaddingMethod: "PaddingMethod" {
        None = 0x01, OAEP = 0x02, PKCS5 = 0x03, SSL3 = 0x04, Zeros = 0x05,
        ANSIX923 = 0x06 | "ANSI X9.23", ISO10126 = 0x07, PKCS1v15 = 0x08 | "PKCS1 v1.5",
        X931 = 0x09 | "X9.31", PSS = 0x0A,
    }
);

kmip_enum!(
    /// KMIP 2.1 §11.33 Mask Generator.
    MaskGenerator: "MaskGenerator" { MGF1 = 0x01 }
);

kmip_enum!(
    /// KMIP 2.1 §11.44 Recommended Curve (subset; CURVEED25519 is the Cosmian extension code).
    RecommendedCurve: "RecommendedCurve" {
        P192 = 0x01, P224 = 0x04, P256 = 0x07, P384 = 0x0A, P521 = 0x0D,
        CURVE25519 = 0x45, CURVE448 = 0x46, CURVEED25519 = 0x8000_0001 | "Ed25519",
    }
);

kmip_enum!(
    /// KMIP 2.1 §11.47 Revocation Reason Code.
    RevocationReasonCode: "RevocationReasonCode" {
        Unspecified = 0x01, KeyCompromise = 0x02, CACompromise = 0x03,
        AffiliationChanged = 0x04, Superseded = 0x05, CessationOfOperation = 0x06,
        PrivilegeWithdrawn = 0x07,
    }
);

kmip_enum!(
    /// KMIP 2.1 §11.30 Operation (every code; [`Operation::SUPPORTED`] lists the ones served).
    Operation: "Operation" {
        Create = 0x01, CreateKeyPair = 0x02, Register = 0x03, ReKey = 0x04, DeriveKey = 0x05,
        Certify = 0x06, ReCertify = 0x07, Locate = 0x08, Check = 0x09, Get = 0x0A,
        GetAttributes = 0x0B, GetAttributeList = 0x0C, AddAttribute = 0x0D,
        ModifyAttribute = 0x0E, DeleteAttribute = 0x0F, ObtainLease = 0x10,
        GetUsageAllocation = 0x11, Activate = 0x12, Revoke = 0x13, Destroy = 0x14,
        Archive = 0x15, Recover = 0x16, Validate = 0x17, Query = 0x18, Cancel = 0x19,
        Poll = 0x1A, Notify = 0x1B, Put = 0x1C, ReKeyKeyPair = 0x1D, DiscoverVersions = 0x1E,
        Encrypt = 0x1F, Decrypt = 0x20, Sign = 0x21, SignatureVerify = 0x22, MAC = 0x23,
        MACVerify = 0x24, RNGRetrieve = 0x25, RNGSeed = 0x26, Hash = 0x27,
        CreateSplitKey = 0x28, JoinSplitKey = 0x29, Import = 0x2A, Export = 0x2B, Log = 0x2C,
        Login = 0x2D, Logout = 0x2E, DelegatedLogin = 0x2F, AdjustAttribute = 0x30,
        SetAttribute = 0x31, SetEndpointRole = 0x32, PKCS_11 = 0x33, Interop = 0x34,
        ReProvision = 0x35, SetDefaults = 0x36, SetConstraints = 0x37, GetConstraints = 0x38,
        QueryAsynchronousRequests = 0x39, Process = 0x3A, Ping = 0x3B,
    }
);

impl Operation {
    /// The operations this server serves (Query's answer, in code order).
    pub const SUPPORTED: &'static [Operation] = &[
        Operation::Create,
        Operation::CreateKeyPair,
        Operation::Register,
        Operation::ReKey,
        Operation::Certify,
        Operation::Locate,
        Operation::Check,
        Operation::Get,
        Operation::GetAttributes,
        Operation::GetAttributeList,
        Operation::AddAttribute,
        Operation::ModifyAttribute,
        Operation::DeleteAttribute,
        Operation::Activate,
        Operation::Revoke,
        Operation::Destroy,
        Operation::Query,
        Operation::DiscoverVersions,
        Operation::Encrypt,
        Operation::Decrypt,
        Operation::Sign,
        Operation::SignatureVerify,
        Operation::Import,
        Operation::Export,
        Operation::Log,
        Operation::AdjustAttribute,
        Operation::SetAttribute,
        Operation::SetEndpointRole,
        Operation::Interop,
    ];
}

kmip_enum!(
    /// KMIP 2.1 §11.46 Result Status.
    ResultStatus: "ResultStatus" {
        Success = 0x00, OperationFailed = 0x01, OperationPending = 0x02, OperationUndone = 0x03,
    }
);

kmip_enum!(
    /// KMIP 2.1 §11.45 Result Reason (subset).
    ResultReason: "ResultReason" {
        ItemNotFound = 0x01, ResponseTooLarge = 0x02, AuthenticationNotSuccessful = 0x03,
        InvalidMessage = 0x04, OperationNotSupported = 0x05, MissingData = 0x06,
        InvalidField = 0x07, FeatureNotSupported = 0x08, OperationCanceledByRequester = 0x09,
        CryptographicFailure = 0x0A, PermissionDenied = 0x0C, ObjectArchived = 0x0D,
        KeyFormatTypeNotSupported = 0x10, EncodingOptionError = 0x12, Sensitive = 0x16,
        NotExtractable = 0x17,
        ObjectAlreadyExists = 0x18, AttributeReadOnly = 0x22, AttributeSingleValued = 0x23,
        BadCryptographicParameters = 0x24, CodecError = 0x26,
        IncompatibleCryptographicUsageMask = 0x29, InternalServerError = 0x2A,
        InvalidAttributeValue = 0x2D, InvalidObjectType = 0x30, NonUniqueNameAttribute = 0x35,
        ObjectDestroyed = 0x36,
        ObjectNotFound = 0x37, UnsupportedCryptographicParameters = 0x3E,
        UnsupportedProtocolVersion = 0x3F, WrongKeyLifecycleState = 0x43,
        GeneralFailure = 0x100,
    }
);

kmip_enum!(
    /// KMIP 2.1 §11.41 Query Function (subset).
    QueryFunction: "QueryFunction" {
        QueryOperations = 0x01, QueryObjects = 0x02, QueryServerInformation = 0x03,
        QueryApplicationNamespaces = 0x04, QueryExtensionList = 0x05, QueryExtensionMap = 0x06,
        QueryAttestationTypes = 0x07, QueryRNGs = 0x08, QueryValidations = 0x09,
        QueryProfiles = 0x0A, QueryCapabilities = 0x0B, QueryClientRegistrationMethods = 0x0C,
        QueryDefaultsInformation = 0x0D, QueryStorageProtectionMasks = 0x0E,
    }
);

kmip_enum!(
    /// KMIP 2.1 §11.27 Link Type (subset).
    LinkType: "LinkType" {
        CertificateLink = 0x0101, PublicKeyLink = 0x0102, PrivateKeyLink = 0x0103,
        DerivationBaseObjectLink = 0x0104, DerivedKeyLink = 0x0105,
        ReplacementObjectLink = 0x0106, ReplacedObjectLink = 0x0107, ParentLink = 0x0108,
        ChildLink = 0x0109, PreviousLink = 0x010A, NextLink = 0x010B,
    }
);

kmip_enum!(
    /// KMIP 2.1 §11.32 Name Type.
    NameType: "NameType" { UninterpretedTextString = 0x01, URI = 0x02 }
);

kmip_enum!(
    /// KMIP 2.1 §11.4 Batch Error Continuation Option.
    BatchErrorContinuationOption: "BatchErrorContinuationOption" {
        Continue = 0x01, Stop = 0x02, Undo = 0x03,
    }
);

kmip_enum!(
    /// KMIP 2.1 §11.25 Interop Function.
    InteropFunction: "InteropFunction" { Begin = 0x01, End = 0x02, Reset = 0x03 }
);

kmip_enum!(
    /// KMIP 2.1 §11.2 Alternative Name Type.
    AlternativeNameType: "AlternativeNameType" {
        UninterpretedTextString = 0x01, URI = 0x02, ObjectSerialNumber = 0x03,
        EmailAddress = 0x04, DNSName = 0x05, X500DistinguishedName = 0x06, IPAddress = 0x07,
    }
);

kmip_enum!(
    /// KMIP 2.1 §11.50 Secret Data Type.
    SecretDataType: "SecretDataType" { Password = 0x01, Seed = 0x02 }
);

kmip_enum!(
    /// KMIP 2.1 §11.38 Protection Level.
    ProtectionLevel: "ProtectionLevel" { High = 0x01, Low = 0x02 }
);

kmip_enum!(
    /// KMIP 2.1 §11.56 Usage Limits Unit.
    UsageLimitsUnit: "UsageLimitsUnit" { Byte = 0x01, Object = 0x02 }
);

kmip_enum!(
    /// KMIP 2.1 §11.9 Certificate Type.
    CertificateType: "CertificateType" { X509 = 0x01, PGP = 0x02 }
);

kmip_enum!(
    /// KMIP 2.1 §11.8 Certificate Request Type (Certify: only PKCS#10, DER or PEM, is
    /// implemented).
    CertificateRequestType: "CertificateRequestType" { CRMF = 0x01, PKCS10 = 0x02, PEM = 0x03 }
);

kmip_enum!(
    /// KMIP 2.1 §11.59 Wrapping Method.
    WrappingMethod: "WrappingMethod" {
        Encrypt = 0x01, MACSign = 0x02, EncryptThenMACSign = 0x03, MACSignThenEncrypt = 0x04,
        TR31 = 0x05,
    }
);

kmip_enum!(
    /// KMIP 2.1 §11.20 Encoding Option (of a wrapped Key Value).
    EncodingOption: "EncodingOption" { NoEncoding = 0x01, TTLVEncoding = 0x02 }
);

kmip_enum!(
    /// KMIP 2.1 §11.44 RNG Algorithm.
    RNGAlgorithm: "RNGAlgorithm" {
        Unspecified = 0x01, FIPS186_2 = 0x02, DRBG = 0x03, NRBG = 0x04, ANSIX9_31 = 0x05,
        ANSIX9_62 = 0x06,
    }
);

kmip_enum!(
    /// KMIP 2.1 §11.57 Validity Indicator.
    ValidityIndicator: "ValidityIndicator" { Valid = 0x01, Invalid = 0x02, Unknown = 0x03 }
);

/// The code of an enumeration given by name, for the binary encoding: the enumeration is the
/// one of the item's tag (an `AttributeReference` or `Tag` names a tag: its code is the tag's,
/// KMIP 2.1 §11.51). `None` for a tag with no enumeration we know, or a name it does not have.
pub fn enum_code(tag: &str, name: &str) -> Option<u32> {
    macro_rules! by_tag {
        ($($e:ident),+) => {
            match tag {
                $(t if t == $e::TAG => $e::from_name(name).map($e::code),)+
                "AttributeReference" | "Tag" => super::ttlv::tag_code(name),
                "MaskGeneratorHashingAlgorithm" => {
                    HashingAlgorithm::from_name(name).map(HashingAlgorithm::code)
                }
                _ => None,
            }
        };
    }
    by_tag!(
        ObjectType,
        CryptographicAlgorithm,
        KeyFormatType,
        State,
        BlockCipherMode,
        HashingAlgorithm,
        DigitalSignatureAlgorithm,
        PaddingMethod,
        MaskGenerator,
        RecommendedCurve,
        RevocationReasonCode,
        Operation,
        ResultStatus,
        ResultReason,
        QueryFunction,
        LinkType,
        NameType,
        BatchErrorContinuationOption,
        ValidityIndicator,
        InteropFunction,
        AlternativeNameType,
        SecretDataType,
        ProtectionLevel,
        UsageLimitsUnit,
        CertificateType,
        WrappingMethod,
        EncodingOption,
        RNGAlgorithm
    )
}

/// KMIP 2.1 §11.12 Cryptographic Usage Mask bits we enforce.
pub mod usage {
    /// Sign.
    pub const SIGN: u32 = 0x0000_0001;
    /// Verify.
    pub const VERIFY: u32 = 0x0000_0002;
    /// Encrypt.
    pub const ENCRYPT: u32 = 0x0000_0004;
    /// Decrypt.
    pub const DECRYPT: u32 = 0x0000_0008;
    /// Wrap Key.
    pub const WRAP_KEY: u32 = 0x0000_0010;
    /// Unwrap Key.
    pub const UNWRAP_KEY: u32 = 0x0000_0020;
    /// MAC Generate.
    pub const MAC_GENERATE: u32 = 0x0000_0080;
    /// MAC Verify.
    pub const MAC_VERIFY: u32 = 0x0000_0100;
}

/// The vendor identification of the Cosmian tag attribute.
pub const VENDOR_COSMIAN: &str = "cosmian";
/// The attribute name of the Cosmian tag attribute.
pub const TAG_ATTRIBUTE: &str = "tag";

/// A KMIP 2.1 §4.56 Vendor Attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VendorAttribute {
    /// Vendor Identification.
    pub vendor: String,
    /// Attribute Name.
    pub name: String,
    /// Attribute Value (any item type).
    pub value: Ttlv,
}

/// A KMIP 2.1 §4.27 Link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Link Type.
    pub link_type: LinkType,
    /// Linked Object Identifier.
    pub uid: String,
}

/// The attributes this server understands (KMIP 2.1 §4). Unknown attributes are kept verbatim
/// in `other`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attributes {
    /// Unique Identifier.
    pub unique_identifier: Option<String>,
    /// Object Type.
    pub object_type: Option<ObjectType>,
    /// Cryptographic Algorithm.
    pub cryptographic_algorithm: Option<CryptographicAlgorithm>,
    /// Cryptographic Length (bits).
    pub cryptographic_length: Option<i32>,
    /// Cryptographic Usage Mask.
    pub cryptographic_usage_mask: Option<u32>,
    /// Key Format Type.
    pub key_format_type: Option<KeyFormatType>,
    /// Recommended Curve (from Cryptographic Domain Parameters or given directly).
    pub recommended_curve: Option<RecommendedCurve>,
    /// State.
    pub state: Option<State>,
    /// Activation Date.
    pub activation_date: Option<i64>,
    /// Deactivation Date.
    pub deactivation_date: Option<i64>,
    /// Compromise Date.
    pub compromise_date: Option<i64>,
    /// Destroy Date.
    pub destroy_date: Option<i64>,
    /// Initial Date.
    pub initial_date: Option<i64>,
    /// Last Change Date.
    pub last_change_date: Option<i64>,
    /// Name values.
    pub names: Vec<String>,
    /// Cosmian tags (`cosmian`/`tag` vendor attribute).
    pub tags: Vec<String>,
    /// Links.
    pub links: Vec<Link>,
    /// Other vendor attributes.
    pub vendor_attributes: Vec<VendorAttribute>,
    /// Attributes we do not interpret (kept verbatim, at most [`MAX_OTHER`]).
    pub other: Vec<Ttlv>,
}

/// Most uninterpreted attributes we keep on an object.
pub const MAX_OTHER: usize = 64;

/// Parse the JSON array of strings a Cosmian tag attribute holds.
pub fn parse_tags(bytes: &[u8]) -> Result<Vec<String>, FieldError> {
    let v: Vec<String> =
        serde_json::from_slice(bytes).map_err(|_| FieldError::Invalid("AttributeValue"))?;
    Ok(v)
}

/// Serialize tags as the JSON array text Cosmian stores in the tag attribute.
pub fn tags_json(tags: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    out.push(b'[');
    for (i, t) in tags.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        super::json::json_str(t, &mut out);
    }
    out.push(b']');
    out
}

fn parse_vendor(t: &Ttlv) -> Result<VendorAttribute, FieldError> {
    let vendor = t
        .req("VendorIdentification")?
        .as_text("VendorIdentification")?
        .to_string();
    let name = t
        .req("AttributeName")?
        .as_text("AttributeName")?
        .to_string();
    let value = t.req("AttributeValue")?.clone();
    Ok(VendorAttribute {
        vendor,
        name,
        value,
    })
}

impl VendorAttribute {
    /// Emit under `tag` (`VendorAttribute` or Cosmian's `VendorAttributes`).
    pub fn to_ttlv(&self, tag: &str) -> Ttlv {
        Ttlv::structure(
            tag,
            alloc::vec![
                Ttlv::text("VendorIdentification", &self.vendor),
                Ttlv::text("AttributeName", &self.name),
                self.value.clone(),
            ],
        )
    }
    fn is_tag(&self) -> bool {
        self.vendor.eq_ignore_ascii_case(VENDOR_COSMIAN) && self.name == TAG_ATTRIBUTE
    }
}

impl Attributes {
    /// Parse an `Attributes` (or `CommonAttributes`, `PrivateKeyAttributes`, ...) structure.
    pub fn parse(t: &Ttlv) -> Result<Self, FieldError> {
        let mut a = Attributes::default();
        for c in t.children() {
            a.absorb(c)?;
        }
        Ok(a)
    }

    /// Merge one attribute item into `self` (used by parse, Add/SetAttribute).
    pub fn absorb(&mut self, c: &Ttlv) -> Result<(), FieldError> {
        match c.tag.as_str() {
            "UniqueIdentifier" => {
                self.unique_identifier = Some(c.as_text("UniqueIdentifier")?.to_string())
            }
            "ObjectType" => self.object_type = Some(ObjectType::parse(c)?),
            "CryptographicAlgorithm" => {
                self.cryptographic_algorithm = Some(CryptographicAlgorithm::parse(c)?)
            }
            "CryptographicLength" => {
                let v = c.as_int("CryptographicLength")?;
                if !(0..=16384).contains(&v) {
                    return Err(FieldError::Invalid("CryptographicLength"));
                }
                self.cryptographic_length = Some(v)
            }
            "CryptographicUsageMask" => {
                self.cryptographic_usage_mask = Some(c.as_int("CryptographicUsageMask")? as u32)
            }
            "KeyFormatType" => self.key_format_type = Some(KeyFormatType::parse(c)?),
            "RecommendedCurve" => self.recommended_curve = Some(RecommendedCurve::parse(c)?),
            "CryptographicDomainParameters" => {
                if let Some(rc) = RecommendedCurve::opt(c)? {
                    self.recommended_curve = Some(rc);
                }
            }
            "State" => self.state = Some(State::parse(c)?),
            "ActivationDate" => self.activation_date = Some(c.as_datetime("ActivationDate")?),
            "DeactivationDate" => self.deactivation_date = Some(c.as_datetime("DeactivationDate")?),
            "CompromiseDate" => self.compromise_date = Some(c.as_datetime("CompromiseDate")?),
            "DestroyDate" => self.destroy_date = Some(c.as_datetime("DestroyDate")?),
            "InitialDate" => self.initial_date = Some(c.as_datetime("InitialDate")?),
            "LastChangeDate" => self.last_change_date = Some(c.as_datetime("LastChangeDate")?),
            // The Cosmian KMS wraps list attributes: `Name{Name{...}, Name{...}}`.
            "Name" | "Link" if c.get(&c.tag).is_some() => {
                for x in c.children() {
                    if x.tag == c.tag {
                        self.absorb(x)?;
                    }
                }
            }
            "Name" => {
                let v = match &c.value {
                    Value::TextString(s) => s.clone(),
                    _ => c.req("NameValue")?.as_text("NameValue")?.to_string(),
                };
                if !self.names.contains(&v) {
                    self.names.push(v);
                }
            }
            "Link" => {
                let link_type = LinkType::parse(c.req("LinkType")?)?;
                let uid = c
                    .req("LinkedObjectIdentifier")?
                    .as_text("LinkedObjectIdentifier")?;
                self.links.push(Link {
                    link_type,
                    uid: uid.to_string(),
                });
            }
            // KMIP 2.1 spells it VendorAttribute; Cosmian wraps them in VendorAttributes; some
            // Cosmian-derived clients send a bare `Attribute` with the vendor fields.
            "VendorAttribute" | "VendorAttributes" | "Attribute"
                if c.tag != "Attribute" || c.get("VendorIdentification").is_some() =>
            {
                let items: Vec<&Ttlv> = if c.get("VendorIdentification").is_some() {
                    alloc::vec![c]
                } else {
                    c.children().iter().collect()
                };
                for v in items {
                    let va = parse_vendor(v)?;
                    if va.is_tag() {
                        let bytes = match &va.value.value {
                            Value::ByteString(b) => b.clone(),
                            Value::TextString(s) => s.as_bytes().to_vec(),
                            _ => return Err(FieldError::WrongType("AttributeValue")),
                        };
                        for t in parse_tags(&bytes)? {
                            if !self.tags.contains(&t) {
                                self.tags.push(t);
                            }
                        }
                    } else {
                        self.vendor_attributes
                            .retain(|x| !(x.vendor == va.vendor && x.name == va.name));
                        self.vendor_attributes.push(va);
                    }
                }
            }
            // Kept in `other`, in our spelling, so that Locate compares like with like
            // (`X_509` and `X509` are one value).
            "CertificateType" => {
                let t = CertificateType::parse(c)?;
                self.other.retain(|x| x.tag != c.tag);
                self.other.push(t.to_ttlv());
            }
            // Structures wrapping attributes in older dialects.
            "Attribute" => {
                for x in c.children() {
                    self.absorb(x)?;
                }
            }
            _ => {
                if self.other.len() >= MAX_OTHER {
                    return Err(FieldError::Invalid("Attributes"));
                }
                self.other.retain(|x| x.tag != c.tag);
                self.other.push(c.clone());
            }
        }
        Ok(())
    }

    /// The tags Locate/Create carry, as Cosmian writes them.
    pub fn tag_vendor_attribute(&self) -> VendorAttribute {
        VendorAttribute {
            vendor: VENDOR_COSMIAN.into(),
            name: TAG_ATTRIBUTE.into(),
            value: Ttlv::new("AttributeValue", Value::ByteString(tags_json(&self.tags))),
        }
    }

    /// Emit as an `Attributes`-style structure under `tag`.
    pub fn to_ttlv(&self, tag: &str) -> Ttlv {
        let mut v = Vec::new();
        if let Some(x) = &self.unique_identifier {
            v.push(Ttlv::text("UniqueIdentifier", x));
        }
        if let Some(x) = self.object_type {
            v.push(x.to_ttlv());
        }
        if let Some(x) = self.cryptographic_algorithm {
            v.push(x.to_ttlv());
        }
        if let Some(x) = self.cryptographic_length {
            v.push(Ttlv::int("CryptographicLength", x));
        }
        if let Some(x) = self.cryptographic_usage_mask {
            v.push(Ttlv::int("CryptographicUsageMask", x as i32));
        }
        if let Some(x) = self.key_format_type {
            v.push(x.to_ttlv());
        }
        if let Some(x) = self.recommended_curve {
            v.push(Ttlv::structure(
                "CryptographicDomainParameters",
                alloc::vec![x.to_ttlv()],
            ));
        }
        if let Some(x) = self.state {
            v.push(x.to_ttlv());
        }
        for (tag, d) in [
            ("ActivationDate", self.activation_date),
            ("DeactivationDate", self.deactivation_date),
            ("CompromiseDate", self.compromise_date),
            ("DestroyDate", self.destroy_date),
            ("InitialDate", self.initial_date),
            ("LastChangeDate", self.last_change_date),
        ] {
            if let Some(d) = d {
                v.push(Ttlv::datetime(tag, d));
            }
        }
        // List attributes in the Cosmian shape: one wrapper holding the items.
        if !self.names.is_empty() {
            let items = self
                .names
                .iter()
                .map(|n| {
                    Ttlv::structure(
                        "Name",
                        alloc::vec![
                            Ttlv::text("NameValue", n),
                            NameType::UninterpretedTextString.to_ttlv(),
                        ],
                    )
                })
                .collect();
            v.push(Ttlv::structure("Name", items));
        }
        if !self.links.is_empty() {
            let items = self
                .links
                .iter()
                .map(|l| {
                    Ttlv::structure(
                        "Link",
                        alloc::vec![
                            l.link_type.to_ttlv(),
                            Ttlv::text("LinkedObjectIdentifier", &l.uid)
                        ],
                    )
                })
                .collect();
            v.push(Ttlv::structure("Link", items));
        }
        let mut vendor = Vec::new();
        if !self.tags.is_empty() {
            vendor.push(self.tag_vendor_attribute().to_ttlv("VendorAttributes"));
        }
        for va in &self.vendor_attributes {
            vendor.push(va.to_ttlv("VendorAttributes"));
        }
        if !vendor.is_empty() {
            v.push(Ttlv::structure("VendorAttributes", vendor));
        }
        v.extend(self.other.iter().cloned());
        Ttlv::structure(tag, v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn enum_names_and_codes() {
        assert_eq!(
            HashingAlgorithm::from_name("SHA_256"),
            Some(HashingAlgorithm::SHA256)
        );
        assert_eq!(
            HashingAlgorithm::from_name("sha256"),
            Some(HashingAlgorithm::SHA256)
        );
        assert_eq!(
            RecommendedCurve::from_name("P_256"),
            Some(RecommendedCurve::P256)
        );
        assert_eq!(KeyFormatType::from_name("X_509"), Some(KeyFormatType::X509));
        assert_eq!(
            KeyFormatType::from_name("PKCS_8"),
            Some(KeyFormatType::PKCS8)
        );
        assert_eq!(
            CryptographicAlgorithm::from_name("DES3"),
            Some(CryptographicAlgorithm::THREE_DES)
        );
        assert_eq!(
            CryptographicAlgorithm::from_code(3),
            Some(CryptographicAlgorithm::AES)
        );
        assert_eq!(
            BlockCipherMode::from_code(0x8000_0002),
            Some(BlockCipherMode::GCMSIV)
        );
        assert_eq!(State::from_name("Nope"), None);
        for s in State::ALL {
            assert_eq!(State::from_code(s.code()), Some(*s));
            assert_eq!(State::from_name(s.name()), Some(*s));
        }
    }

    #[test]
    fn attributes_round_trip_with_tags() {
        let a = Attributes {
            object_type: Some(ObjectType::SymmetricKey),
            cryptographic_algorithm: Some(CryptographicAlgorithm::AES),
            cryptographic_length: Some(256),
            cryptographic_usage_mask: Some(2108),
            key_format_type: Some(KeyFormatType::TransparentSymmetricKey),
            activation_date: Some(1000),
            names: vec!["n1".into()],
            tags: vec!["MyTag".into(), "t\"2".into()],
            links: vec![Link {
                link_type: LinkType::PublicKeyLink,
                uid: "u".into(),
            }],
            vendor_attributes: vec![VendorAttribute {
                vendor: "acme".into(),
                name: "x".into(),
                value: Ttlv::text("AttributeValue", "y"),
            }],
            other: vec![Ttlv::text("Description", "d")],
            ..Default::default()
        };
        let t = a.to_ttlv("Attributes");
        assert_eq!(Attributes::parse(&t).unwrap(), a);
        // The tag attribute is the hex of the JSON array text.
        let j = super::super::json::to_vec(&t);
        let s = core::str::from_utf8(&j).unwrap();
        assert!(s.contains("5B224D79546167222C22745C2232225D"), "{s}");
    }

    #[test]
    fn cosmian_list_wrappers_and_bare_vendor_attribute() {
        let link = |u: &str| {
            Ttlv::structure(
                "Link",
                vec![
                    Ttlv::enumeration("LinkType", "ParentLink"),
                    Ttlv::text("LinkedObjectIdentifier", u),
                ],
            )
        };
        let t = Ttlv::structure(
            "Attributes",
            vec![
                Ttlv::structure("Link", vec![link("a"), link("b")]),
                Ttlv::structure(
                    "Attribute",
                    vec![
                        Ttlv::text("VendorIdentification", "cosmian"),
                        Ttlv::text("AttributeName", "tag"),
                        Ttlv::text("AttributeValue", "[\"bench\",\"disk\"]"),
                    ],
                ),
            ],
        );
        let a = Attributes::parse(&t).unwrap();
        assert_eq!(a.links.len(), 2);
        assert_eq!(a.links[1].uid, "b");
        assert_eq!(a.tags, ["bench", "disk"]);
    }

    #[test]
    fn wrong_types_are_typed_errors() {
        let t = Ttlv::structure("Attributes", vec![Ttlv::text("CryptographicLength", "256")]);
        assert_eq!(
            Attributes::parse(&t),
            Err(FieldError::WrongType("CryptographicLength"))
        );
        let t = Ttlv::structure(
            "Attributes",
            vec![Ttlv::enumeration("CryptographicAlgorithm", "Rot13")],
        );
        assert_eq!(
            Attributes::parse(&t),
            Err(FieldError::Invalid("CryptographicAlgorithm"))
        );
    }
}
