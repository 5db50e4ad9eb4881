//! Typed KMIP 2.1 operation payloads (KMIP 2.1 §6.1), parsed from and emitted to [`Ttlv`].
//!
//! A request payload is parsed from the children of either a top-level operation item
//! (`{"tag":"Create", ...}`) or a batch item's `RequestPayload`; a response payload is
//! emitted under its `<Operation>Response` tag, or as a `ResponsePayload` inside a batch.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use super::ttlv::{EnumValue, FieldError, Ttlv, Value};
use super::types::*;

/// How a request spelled the nonce tag; responses answer in the same spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NonceSpelling {
    /// `IVCounterNonce` (KMIP 2.1).
    #[default]
    Spec,
    /// `IvCounterNonce` (older Cosmian clients).
    Cosmian,
}

impl NonceSpelling {
    /// The tag to use.
    pub fn tag(self) -> &'static str {
        match self {
            NonceSpelling::Spec => "IVCounterNonce",
            NonceSpelling::Cosmian => "IvCounterNonce",
        }
    }
}

/// KMIP 2.1 §7.6 Cryptographic Parameters (subset).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CryptographicParameters {
    /// Block Cipher Mode.
    pub block_cipher_mode: Option<BlockCipherMode>,
    /// Cryptographic Algorithm.
    pub cryptographic_algorithm: Option<CryptographicAlgorithm>,
    /// Hashing Algorithm.
    pub hashing_algorithm: Option<HashingAlgorithm>,
    /// Digital Signature Algorithm.
    pub digital_signature_algorithm: Option<DigitalSignatureAlgorithm>,
    /// Tag length in bytes.
    pub tag_length: Option<i32>,
    /// Padding Method.
    pub padding_method: Option<PaddingMethod>,
    /// Mask Generator Hashing Algorithm (MGF1's hash for OAEP and PSS).
    pub mask_generator_hashing_algorithm: Option<HashingAlgorithm>,
    /// Salt Length (PSS) in bytes.
    pub salt_length: Option<i32>,
    /// P Source (the OAEP label).
    pub p_source: Option<Vec<u8>>,
}

impl CryptographicParameters {
    /// Parse the optional `CryptographicParameters` child of `t`.
    pub fn opt(t: &Ttlv) -> Result<Option<Self>, FieldError> {
        let Some(c) = t.get("CryptographicParameters") else {
            return Ok(None);
        };
        Ok(Some(CryptographicParameters {
            block_cipher_mode: BlockCipherMode::opt(c)?,
            cryptographic_algorithm: CryptographicAlgorithm::opt(c)?,
            hashing_algorithm: HashingAlgorithm::opt(c)?,
            digital_signature_algorithm: DigitalSignatureAlgorithm::opt(c)?,
            tag_length: c.opt_int("TagLength")?,
            padding_method: PaddingMethod::opt(c)?,
            mask_generator_hashing_algorithm: match c.get("MaskGeneratorHashingAlgorithm") {
                Some(h) => Some(HashingAlgorithm::parse(h)?),
                None => None,
            },
            salt_length: c.opt_int("SaltLength")?,
            p_source: match c.get("PSource") {
                Some(p) => Some(p.as_bytes("PSource")?.to_vec()),
                None => None,
            },
        }))
    }
}

impl CryptographicParameters {
    /// Emit as a `CryptographicParameters` structure (fields in KMIP 2.1 §7.6 order).
    pub fn to_ttlv(&self) -> Ttlv {
        let mut v = Vec::new();
        if let Some(m) = self.block_cipher_mode {
            v.push(m.to_ttlv());
        }
        if let Some(p) = self.padding_method {
            v.push(p.to_ttlv());
        }
        if let Some(h) = self.hashing_algorithm {
            v.push(h.to_ttlv());
        }
        if let Some(d) = self.digital_signature_algorithm {
            v.push(d.to_ttlv());
        }
        if let Some(a) = self.cryptographic_algorithm {
            v.push(a.to_ttlv());
        }
        if let Some(l) = self.tag_length {
            v.push(Ttlv::int("TagLength", l));
        }
        if let Some(h) = self.mask_generator_hashing_algorithm {
            v.push(Ttlv::enumeration("MaskGeneratorHashingAlgorithm", h.name()));
        }
        if let Some(l) = self.salt_length {
            v.push(Ttlv::int("SaltLength", l));
        }
        if let Some(p) = &self.p_source {
            v.push(Ttlv::bytes("PSource", p));
        }
        Ttlv::structure("CryptographicParameters", v)
    }
}

/// KMIP 2.1 §2.1.5 Key Wrapping Data / §2.1.7 Key Wrapping Specification: how a key is (to be)
/// wrapped. Only `Encrypt` with an `EncryptionKeyInformation` is implemented; the parse keeps
/// what the request said so that the service refuses the rest with a precise error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyWrappingData {
    /// Wrapping Method.
    pub method: WrappingMethod,
    /// The wrapping key (Encryption Key Information / Unique Identifier).
    pub key_uid: Option<String>,
    /// Its Cryptographic Parameters.
    pub params: Option<CryptographicParameters>,
    /// A MAC/Signature Key Information was given (not implemented: refused).
    pub mac_signature: bool,
    /// Attribute Name(s) to wrap with the key (not implemented: refused).
    pub attribute_names: bool,
    /// Encoding Option.
    pub encoding: Option<EncodingOption>,
}

impl KeyWrappingData {
    /// Parse a `KeyWrappingSpecification` or `KeyWrappingData` structure.
    pub fn parse(t: &Ttlv) -> Result<Self, FieldError> {
        if !matches!(t.value, Value::Structure(_)) {
            return Err(FieldError::WrongType("KeyWrappingData"));
        }
        let (key_uid, params) = match t.get("EncryptionKeyInformation") {
            Some(e) => (uid_opt(e)?, CryptographicParameters::opt(e)?),
            None => (None, None),
        };
        Ok(KeyWrappingData {
            method: WrappingMethod::parse(t.req("WrappingMethod")?)?,
            key_uid,
            params,
            mac_signature: t.get("MACSignatureKeyInformation").is_some(),
            attribute_names: t.get("AttributeName").is_some(),
            encoding: EncodingOption::opt(t)?,
        })
    }

    /// Emit as `KeyWrappingData` (in a Key Block).
    pub fn to_ttlv(&self) -> Ttlv {
        let mut v = alloc::vec![self.method.to_ttlv()];
        if let Some(u) = &self.key_uid {
            let mut e = alloc::vec![Ttlv::text("UniqueIdentifier", u)];
            if let Some(p) = &self.params {
                e.push(p.to_ttlv());
            }
            v.push(Ttlv::structure("EncryptionKeyInformation", e));
        }
        if let Some(o) = self.encoding {
            v.push(o.to_ttlv());
        }
        Ttlv::structure("KeyWrappingData", v)
    }
}

fn uid_opt(t: &Ttlv) -> Result<Option<String>, FieldError> {
    Ok(t.opt_text("UniqueIdentifier")?.map(ToString::to_string))
}

fn attrs_opt(t: &Ttlv, tag: &'static str) -> Result<Attributes, FieldError> {
    match t.get(tag) {
        Some(a) => Attributes::parse(a),
        None => Ok(Attributes::default()),
    }
}

/// The key material of an object carried in a request or response (KMIP 2.1 §2.1.3 Key Block).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyBlock {
    /// Key Format Type.
    pub key_format_type: KeyFormatType,
    /// Key material bytes (the `Key` of a TransparentSymmetricKey, otherwise the ByteString).
    pub material: Vec<u8>,
    /// Recommended curve for transparent EC formats.
    pub curve: Option<RecommendedCurve>,
    /// Cryptographic Algorithm.
    pub cryptographic_algorithm: Option<CryptographicAlgorithm>,
    /// Cryptographic Length.
    pub cryptographic_length: Option<i32>,
    /// Attributes embedded in the Key Value (Cosmian puts them there).
    pub attributes: Option<Attributes>,
    /// Set when `material` is a wrapped key (KMIP 2.1 §2.1.5): then the Key Value is the
    /// wrapped ByteString and `key_format_type` the format of the key inside.
    pub wrapping: Option<KeyWrappingData>,
}

impl Drop for KeyBlock {
    fn drop(&mut self) {
        crate::store::wipe(&mut self.material);
    }
}

const OBJECT_TAGS: &[&str] = &[
    "Object",
    "SymmetricKey",
    "PrivateKey",
    "PublicKey",
    "SecretData",
];

impl KeyBlock {
    /// Parse the object: under its object-type tag (`SymmetricKey`, `PrivateKey`, ..., as KMIP
    /// and the Cosmian KMS send it), or under `Object` (older Cosmian clients).
    pub fn parse_object(parent: &Ttlv) -> Result<Self, FieldError> {
        // KMIP 2.1 §2.2.1 Certificate: no Key Block, a type and a DER value. It is carried
        // as an X509-format block whose material is the certificate.
        if let Some(c) = parent.get("Certificate") {
            let t = c.req(CertificateType::TAG)?;
            if CertificateType::parse(t)? != CertificateType::X509 {
                return Err(FieldError::Invalid(CertificateType::TAG));
            }
            return Ok(KeyBlock {
                key_format_type: KeyFormatType::X509,
                material: c
                    .req("CertificateValue")?
                    .as_bytes("CertificateValue")?
                    .to_vec(),
                curve: None,
                cryptographic_algorithm: None,
                cryptographic_length: None,
                attributes: None,
                wrapping: None,
            });
        }
        if let Some(o) = parent.get("OpaqueObject") {
            return Self::parse_opaque(o);
        }
        let obj = OBJECT_TAGS
            .iter()
            .find_map(|t| parent.get(t))
            .ok_or(FieldError::Missing("Object"))?;
        let kb = obj.req("KeyBlock")?;
        let key_format_type = KeyFormatType::parse(kb.req("KeyFormatType")?)?;
        let kv = kb.req("KeyValue")?;
        if let Some(w) = kb.get("KeyWrappingData") {
            // KMIP 2.1 §2.1.4: a wrapped Key Value is a ByteString; the Cosmian KMS keeps a
            // `KeyValue { KeyMaterial: ByteString }` structure. Both are taken.
            let material = match &kv.value {
                Value::ByteString(b) => b.clone(),
                Value::Structure(_) => kv.req("KeyMaterial")?.as_bytes("KeyMaterial")?.to_vec(),
                _ => return Err(FieldError::WrongType("KeyValue")),
            };
            let attributes = match &kv.value {
                Value::Structure(_) => kv.get("Attributes").map(Attributes::parse).transpose()?,
                _ => None,
            };
            return Ok(KeyBlock {
                key_format_type,
                material,
                curve: None,
                cryptographic_algorithm: CryptographicAlgorithm::opt(kb)?,
                cryptographic_length: kb.opt_int("CryptographicLength")?,
                attributes,
                wrapping: Some(KeyWrappingData::parse(w)?),
            });
        }
        // KMIP 2.1 §2.1.4: Key Value is a Structure, or a ByteString when wrapped.
        let km = kv.req("KeyMaterial")?;
        let mut curve = None;
        let material = match (&km.value, key_format_type) {
            (Value::ByteString(b), _) => b.clone(),
            (Value::Structure(_), KeyFormatType::TransparentSymmetricKey) => {
                km.req("Key")?.as_bytes("Key")?.to_vec()
            }
            (Value::Structure(_), KeyFormatType::TransparentECPrivateKey) => {
                curve = RecommendedCurve::opt(km)?;
                match &km.req("D")?.value {
                    Value::BigInteger(b) => b.clone(),
                    Value::ByteString(b) => b.clone(),
                    _ => return Err(FieldError::WrongType("D")),
                }
            }
            (Value::Structure(_), KeyFormatType::TransparentECPublicKey) => {
                curve = RecommendedCurve::opt(km)?;
                km.req("QString")?.as_bytes("QString")?.to_vec()
            }
            // KMIP 2.1 §2.1.7.3-6: RSA/DSA fields, kept in `transparent`'s encoding.
            (Value::Structure(_), f) if super::transparent::fields(f).is_some() => {
                super::transparent::parse(f, km)?
            }
            _ => return Err(FieldError::Invalid("KeyMaterial")),
        };
        let mut attributes = kv.get("Attributes").map(Attributes::parse).transpose()?;
        // KMIP 2.1 §2.2.7: Secret Data carries its Secret Data Type beside the Key Block; it
        // travels with the object's attributes (and comes back in a Get).
        if let Some(t) = obj.get("SecretDataType") {
            SecretDataType::parse(t)?;
            let a = attributes.get_or_insert_with(Attributes::default);
            a.other.retain(|x| x.tag != "SecretDataType");
            a.other.push(t.clone());
        }
        Ok(KeyBlock {
            key_format_type,
            material,
            curve,
            cryptographic_algorithm: CryptographicAlgorithm::opt(kb)?,
            cryptographic_length: kb.opt_int("CryptographicLength")?,
            attributes,
            wrapping: None,
        })
    }

    /// KMIP 2.1 §2.2.8 Opaque Object: `OpaqueDataType` (an enumeration, often an extension
    /// code such as 0x80123456) and `OpaqueDataValue`. Carried as Opaque material, the data
    /// type among the attributes (it comes back in a Get).
    fn parse_opaque(o: &Ttlv) -> Result<Self, FieldError> {
        let data_type = o.req("OpaqueDataType")?;
        data_type.as_enum("OpaqueDataType")?;
        let material = o
            .req("OpaqueDataValue")?
            .as_bytes("OpaqueDataValue")?
            .to_vec();
        let attributes = Attributes {
            other: alloc::vec![data_type.clone()],
            ..Attributes::default()
        };
        Ok(KeyBlock {
            key_format_type: KeyFormatType::Opaque,
            material,
            curve: None,
            cryptographic_algorithm: None,
            cryptographic_length: None,
            attributes: Some(attributes),
            wrapping: None,
        })
    }

    /// Emit the object under its object-type tag (`SymmetricKey { KeyBlock { ... } }`), as
    /// KMIP 2.1 §2 and the Cosmian KMS (its `Object` enum, serialized by variant) do.
    pub fn to_object(&self, object_type: ObjectType) -> Ttlv {
        if object_type == ObjectType::Certificate {
            return Ttlv::structure(
                "Certificate",
                alloc::vec![
                    CertificateType::X509.to_ttlv(),
                    Ttlv::bytes("CertificateValue", &self.material),
                ],
            );
        }
        if object_type == ObjectType::OpaqueObject {
            let data_type = self
                .attributes
                .as_ref()
                .and_then(|a| a.other.iter().find(|x| x.tag == "OpaqueDataType"))
                .cloned()
                .unwrap_or_else(|| {
                    Ttlv::new("OpaqueDataType", Value::Enumeration(EnumValue::Code(0)))
                });
            return Ttlv::structure(
                "OpaqueObject",
                alloc::vec![data_type, Ttlv::bytes("OpaqueDataValue", &self.material)],
            );
        }
        let km = match self.key_format_type {
            _ if self.wrapping.is_some() => Ttlv::bytes("KeyValue", &self.material),
            KeyFormatType::TransparentSymmetricKey => Ttlv::structure(
                "KeyMaterial",
                alloc::vec![Ttlv::bytes("Key", &self.material)],
            ),
            KeyFormatType::TransparentECPrivateKey => {
                let mut v = Vec::new();
                if let Some(c) = self.curve {
                    v.push(c.to_ttlv());
                }
                let mut d = alloc::vec![0u8];
                d.extend_from_slice(&self.material);
                v.push(Ttlv::new("D", Value::BigInteger(d)));
                Ttlv::structure("KeyMaterial", v)
            }
            KeyFormatType::TransparentECPublicKey => {
                let mut v = Vec::new();
                if let Some(c) = self.curve {
                    v.push(c.to_ttlv());
                }
                v.push(Ttlv::bytes("QString", &self.material));
                Ttlv::structure("KeyMaterial", v)
            }
            f if super::transparent::fields(f).is_some() => {
                // The service only emits material it encoded; an undecodable one becomes
                // an empty structure rather than a panic.
                super::transparent::emit(f, &self.material)
                    .unwrap_or_else(|_| Ttlv::structure("KeyMaterial", Vec::new()))
            }
            _ => Ttlv::bytes("KeyMaterial", &self.material),
        };
        // A wrapped key's Key Value is the wrapped ByteString itself (KMIP 2.1 §2.1.4).
        let kv = if self.wrapping.is_some() {
            km
        } else {
            let mut kv = alloc::vec![km];
            if let Some(a) = &self.attributes {
                kv.push(a.to_ttlv("Attributes"));
            }
            Ttlv::structure("KeyValue", kv)
        };
        let mut kb = alloc::vec![self.key_format_type.to_ttlv(), kv];
        if let Some(a) = self.cryptographic_algorithm {
            kb.push(a.to_ttlv());
        }
        if let Some(l) = self.cryptographic_length {
            kb.push(Ttlv::int("CryptographicLength", l));
        }
        if let Some(w) = &self.wrapping {
            kb.push(w.to_ttlv());
        }
        let mut object = Vec::with_capacity(2);
        if object_type == ObjectType::SecretData {
            object.push(
                self.attributes
                    .as_ref()
                    .and_then(|a| a.other.iter().find(|x| x.tag == "SecretDataType"))
                    .cloned()
                    .unwrap_or_else(|| SecretDataType::Seed.to_ttlv()),
            );
        }
        object.push(Ttlv::structure("KeyBlock", kb));
        Ttlv::structure(object_type.name(), object)
    }
}

/// A Locate range on a date attribute (KMIP 2.1 §6.1.27: a DateTime attribute given twice
/// selects the objects whose value lies between the two, bounds included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateRange {
    /// The attribute's tag (`ProtectStopDate`, `ActivationDate`, ...).
    pub tag: String,
    /// Earliest date (Unix seconds).
    pub from: i64,
    /// Latest date (Unix seconds).
    pub to: i64,
}

/// Locate's `Attributes`: the date attributes given twice become [`DateRange`]s, the rest is
/// matched as given. A date given more than twice is an error.
fn locate_attributes(t: &Ttlv) -> Result<(Attributes, Vec<DateRange>), FieldError> {
    let mut ranges: Vec<DateRange> = Vec::new();
    let mut seen: Vec<(&str, i64, usize)> = Vec::new();
    for c in t.children() {
        if let Value::DateTime(d) = c.value {
            match seen.iter_mut().find(|(tag, _, _)| *tag == c.tag) {
                Some(entry) => {
                    entry.2 += 1;
                    if entry.2 > 2 {
                        return Err(FieldError::Invalid("Attributes"));
                    }
                    ranges.push(DateRange {
                        tag: c.tag.clone(),
                        from: entry.1.min(d),
                        to: entry.1.max(d),
                    });
                }
                None => seen.push((&c.tag, d, 1)),
            }
        }
    }
    let mut a = Attributes::default();
    for c in t.children() {
        if !ranges.iter().any(|r| r.tag == c.tag) {
            a.absorb(c)?;
        }
    }
    Ok((a, ranges))
}

/// What Sign / SignatureVerify sign: the message (`Data`), or its hash (`DigestedData`,
/// KMIP 2.1 §6.1.50).
#[derive(Debug)]
pub enum SignInput {
    /// The message itself.
    Data(Vec<u8>),
    /// The message's digest, computed by the client.
    Digest(Vec<u8>),
}

impl SignInput {
    fn parse(p: &Ttlv) -> Result<Self, FieldError> {
        match (p.opt_bytes("Data")?, p.opt_bytes("DigestedData")?) {
            (Some(d), None) => Ok(SignInput::Data(d.to_vec())),
            (None, Some(h)) => Ok(SignInput::Digest(h.to_vec())),
            (None, None) => Err(FieldError::Missing("Data")),
            (Some(_), Some(_)) => Err(FieldError::Invalid("DigestedData")),
        }
    }
}

/// The multi-part fields of an Encrypt (KMIP 2.1 §6.1.19: `CorrelationValue`, `InitIndicator`,
/// `FinalIndicator`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamPart {
    /// The operation this part continues (absent on the first part).
    pub correlation: Option<Vec<u8>>,
    /// First part.
    pub init: bool,
    /// Last part.
    pub last: bool,
}

impl StreamPart {
    fn parse(p: &Ttlv) -> Result<Option<Self>, FieldError> {
        let correlation = p.opt_bytes("CorrelationValue")?.map(<[u8]>::to_vec);
        let init = p.opt_bool("InitIndicator")?;
        let last = p.opt_bool("FinalIndicator")?;
        if correlation.is_none() && init.is_none() && last.is_none() {
            return Ok(None);
        }
        Ok(Some(StreamPart {
            correlation,
            init: init.unwrap_or(false),
            last: last.unwrap_or(false),
        }))
    }
}

/// A parsed request payload.
#[derive(Debug)]
#[allow(missing_docs)]
pub enum Request {
    Create {
        object_type: ObjectType,
        attributes: Attributes,
    },
    CreateKeyPair {
        common: Attributes,
        private: Attributes,
        public: Attributes,
    },
    /// Register (spec) and Import (Cosmian) share a shape; `replace` only exists for Import.
    Register {
        import: bool,
        uid: Option<String>,
        object_type: ObjectType,
        replace: bool,
        attributes: Attributes,
        key: KeyBlock,
    },
    Get {
        uid: Option<String>,
        key_format_type: Option<KeyFormatType>,
        export: bool,
        /// Key Wrapping Specification: answer the key wrapped so.
        wrap: Option<KeyWrappingData>,
    },
    GetAttributes {
        uid: Option<String>,
        references: Vec<String>,
    },
    GetAttributeList {
        uid: Option<String>,
    },
    AddAttribute {
        uid: Option<String>,
        attribute: Ttlv,
    },
    SetAttribute {
        uid: Option<String>,
        attribute: Ttlv,
    },
    DeleteAttribute {
        uid: Option<String>,
        current: Option<Ttlv>,
        reference: Option<String>,
    },
    Locate {
        max_items: Option<i32>,
        offset_items: Option<i32>,
        attributes: Attributes,
        date_ranges: Vec<DateRange>,
    },
    Activate {
        uid: Option<String>,
    },
    Revoke {
        uid: Option<String>,
        reason: RevocationReasonCode,
        compromise_date: Option<i64>,
    },
    Destroy {
        uid: Option<String>,
    },
    ReKey {
        uid: Option<String>,
        attributes: Attributes,
    },
    Encrypt {
        uid: Option<String>,
        params: Option<CryptographicParameters>,
        data: Vec<u8>,
        nonce: Option<Vec<u8>>,
        aad: Option<Vec<u8>>,
        spelling: NonceSpelling,
        /// Multi-part (streaming) encryption, when the request has any of its fields.
        part: Option<StreamPart>,
    },
    Decrypt {
        uid: Option<String>,
        params: Option<CryptographicParameters>,
        data: Vec<u8>,
        nonce: Option<Vec<u8>>,
        tag: Option<Vec<u8>>,
        aad: Option<Vec<u8>>,
        spelling: NonceSpelling,
    },
    Sign {
        uid: Option<String>,
        params: Option<CryptographicParameters>,
        input: SignInput,
    },
    SignatureVerify {
        uid: Option<String>,
        params: Option<CryptographicParameters>,
        input: SignInput,
        signature: Vec<u8>,
    },
    Query {
        functions: Vec<QueryFunction>,
    },
    /// MAC (KMIP 2.1 §6.1.30), one-shot.
    Mac {
        uid: Option<String>,
        params: Option<CryptographicParameters>,
        data: Vec<u8>,
    },
    /// MAC Verify (KMIP 2.1 §6.1.31), one-shot.
    MacVerify {
        uid: Option<String>,
        params: Option<CryptographicParameters>,
        data: Vec<u8>,
        mac: Vec<u8>,
    },
    /// RNG Retrieve (KMIP 2.1 §6.1.44): `length` random bytes.
    RngRetrieve {
        length: i32,
    },
    /// RNG Seed (KMIP 2.1 §6.1.45).
    RngSeed {
        data: Vec<u8>,
    },
    /// Hash (KMIP 2.1 §6.1.26), one-shot.
    Hash {
        params: Option<CryptographicParameters>,
        data: Vec<u8>,
    },
    /// The versions the client offers (empty: it asks for all the server's).
    DiscoverVersions {
        offered: Vec<ProtocolVersion>,
    },
    /// KMIP 2.1 §6.1.32 Interop: marks the begin/end of a client's test case (no effect).
    Interop {
        function: InteropFunction,
        id: String,
    },
    /// KMIP 2.1 §6.1.33 Log: a client's message for the server's log (no effect here).
    Log {
        message: String,
    },
    /// KMIP 2.1 §6.1.4 Check: may the object be used so?
    Check {
        uid: Option<String>,
        mask: Option<u32>,
    },
    /// KMIP 2.1 §6.1.52 Set Endpoint Role: accepted, no effect (the server has one role).
    SetEndpointRole,
    /// KMIP 2.1 §6.1.6 Certify: a certificate for the public key `uid` names, or for the
    /// key of the certificate request carried in `request`.
    Certify {
        /// The public key to certify (when no request is given).
        uid: Option<String>,
        /// Certificate Request Type and Certificate Request Value.
        request: Option<(CertificateRequestType, Vec<u8>)>,
        /// Attributes: the issuer links, the subject, the validity, names and tags of the new
        /// certificate.
        attributes: Attributes,
    },
}

/// A KMIP protocol version (KMIP 2.1 §7.1 Protocol Version).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ProtocolVersion {
    /// Protocol Version Major.
    pub major: i32,
    /// Protocol Version Minor.
    pub minor: i32,
}

impl ProtocolVersion {
    /// The versions this server speaks, most preferred first (the operations are KMIP 2.x; a
    /// KMIP 1.x message is mapped to and from them by [`super::v1`]).
    pub const SUPPORTED: &'static [ProtocolVersion] = &[
        ProtocolVersion { major: 2, minor: 1 },
        ProtocolVersion { major: 2, minor: 0 },
        ProtocolVersion { major: 1, minor: 4 },
        ProtocolVersion { major: 1, minor: 3 },
        ProtocolVersion { major: 1, minor: 2 },
        ProtocolVersion { major: 1, minor: 1 },
        ProtocolVersion { major: 1, minor: 0 },
    ];

    /// Parse a `ProtocolVersion` structure (a missing minor is 0).
    pub fn parse(t: &Ttlv) -> Result<Self, FieldError> {
        Ok(ProtocolVersion {
            major: t
                .req("ProtocolVersionMajor")?
                .as_int("ProtocolVersionMajor")?,
            minor: t.opt_int("ProtocolVersionMinor")?.unwrap_or(0),
        })
    }

    /// Emit as a `ProtocolVersion` structure.
    pub fn to_ttlv(self) -> Ttlv {
        Ttlv::structure(
            "ProtocolVersion",
            alloc::vec![
                Ttlv::int("ProtocolVersionMajor", self.major),
                Ttlv::int("ProtocolVersionMinor", self.minor),
            ],
        )
    }

    /// Whether this server speaks it.
    pub fn is_supported(self) -> bool {
        Self::SUPPORTED.contains(&self)
    }
}

fn nonce(t: &Ttlv) -> Result<(Option<Vec<u8>>, NonceSpelling), FieldError> {
    if let Some(n) = t.opt_bytes("IVCounterNonce")? {
        return Ok((Some(n.to_vec()), NonceSpelling::Spec));
    }
    if let Some(n) = t.opt_bytes("IvCounterNonce")? {
        return Ok((Some(n.to_vec()), NonceSpelling::Cosmian));
    }
    Ok((None, NonceSpelling::Spec))
}

/// Streamed MAC/Hash (`CorrelationValue`, `InitIndicator`, `FinalIndicator`) is not
/// implemented: refused rather than answered as if the chunk were the whole message.
fn one_shot(p: &Ttlv) -> Result<(), FieldError> {
    for tag in ["CorrelationValue", "InitIndicator", "FinalIndicator"] {
        if p.get(tag).is_some() {
            return Err(FieldError::Invalid(tag));
        }
    }
    Ok(())
}

/// Why a request could not be turned into a typed operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestError {
    /// The operation is not one we implement.
    UnknownOperation,
    /// A field is missing, has the wrong type or an invalid value.
    Field(FieldError),
}

impl From<FieldError> for RequestError {
    fn from(e: FieldError) -> Self {
        RequestError::Field(e)
    }
}

impl Request {
    /// Parse the payload `p` of operation `op`.
    pub fn parse(op: Operation, p: &Ttlv) -> Result<Self, RequestError> {
        if !matches!(p.value, Value::Structure(_)) {
            return Err(FieldError::WrongType("RequestPayload").into());
        }
        if matches!(op, Operation::MAC | Operation::MACVerify | Operation::Hash) {
            one_shot(p)?;
        }
        Ok(match op {
            Operation::Create => Request::Create {
                object_type: ObjectType::parse(p.req("ObjectType")?)?,
                attributes: attrs_opt(p, "Attributes")?,
            },
            Operation::CreateKeyPair => Request::CreateKeyPair {
                common: attrs_opt(p, "CommonAttributes")?,
                private: attrs_opt(p, "PrivateKeyAttributes")?,
                public: attrs_opt(p, "PublicKeyAttributes")?,
            },
            Operation::Register | Operation::Import => Request::Register {
                import: op == Operation::Import,
                uid: uid_opt(p)?,
                object_type: ObjectType::parse(p.req("ObjectType")?)?,
                replace: p.opt_bool("ReplaceExisting")?.unwrap_or(false),
                attributes: attrs_opt(p, "Attributes")?,
                key: KeyBlock::parse_object(p)?,
            },
            Operation::Get | Operation::Export => Request::Get {
                uid: uid_opt(p)?,
                key_format_type: KeyFormatType::opt(p)?,
                export: op == Operation::Export,
                wrap: p
                    .get("KeyWrappingSpecification")
                    .map(KeyWrappingData::parse)
                    .transpose()?,
            },
            Operation::GetAttributes => {
                let mut references = Vec::new();
                for r in p.all("AttributeReference") {
                    references.push(match &r.value {
                        Value::Enumeration(e) => attribute_reference(e),
                        Value::TextString(n) => n.clone(),
                        Value::Structure(_) => r
                            .req("AttributeName")?
                            .as_text("AttributeName")?
                            .to_string(),
                        _ => return Err(FieldError::WrongType("AttributeReference").into()),
                    });
                }
                Request::GetAttributes {
                    uid: uid_opt(p)?,
                    references,
                }
            }
            Operation::GetAttributeList => Request::GetAttributeList { uid: uid_opt(p)? },
            Operation::AddAttribute | Operation::SetAttribute | Operation::ModifyAttribute => {
                let na = p.req("NewAttribute")?;
                // KMIP 2.1: New Attribute is a Structure holding one attribute.
                let attribute = match na.children() {
                    [one] => one.clone(),
                    _ => return Err(FieldError::Invalid("NewAttribute").into()),
                };
                if op == Operation::AddAttribute {
                    Request::AddAttribute {
                        uid: uid_opt(p)?,
                        attribute,
                    }
                } else {
                    Request::SetAttribute {
                        uid: uid_opt(p)?,
                        attribute,
                    }
                }
            }
            Operation::DeleteAttribute => {
                let current = match p.get("CurrentAttribute") {
                    Some(c) => match c.children() {
                        [one] => Some(one.clone()),
                        _ => return Err(FieldError::Invalid("CurrentAttribute").into()),
                    },
                    None => None,
                };
                let reference = match p.get("AttributeReference") {
                    Some(r) => Some(match &r.value {
                        Value::Enumeration(e) => attribute_reference(e),
                        Value::TextString(n) => n.clone(),
                        Value::Structure(_) => r
                            .req("AttributeName")?
                            .as_text("AttributeName")?
                            .to_string(),
                        _ => return Err(FieldError::WrongType("AttributeReference").into()),
                    }),
                    None => None,
                };
                if current.is_none() && reference.is_none() {
                    return Err(FieldError::Missing("CurrentAttribute").into());
                }
                Request::DeleteAttribute {
                    uid: uid_opt(p)?,
                    current,
                    reference,
                }
            }
            Operation::Locate => {
                let (attributes, date_ranges) = match p.get("Attributes") {
                    Some(a) => locate_attributes(a)?,
                    None => (Attributes::default(), Vec::new()),
                };
                Request::Locate {
                    max_items: p.opt_int("MaximumItems")?,
                    offset_items: p.opt_int("OffsetItems")?,
                    attributes,
                    date_ranges,
                }
            }
            Operation::Activate => Request::Activate { uid: uid_opt(p)? },
            Operation::Revoke => {
                let (reason, compromise_date) = match p.get("RevocationReason") {
                    Some(r) => (
                        // KMIP 2.1 §7.21: a Structure with a code and a message. Cosmian
                        // clients may send the message alone (TextString) or the code alone.
                        match (&r.value, r.get("RevocationReasonCode")) {
                            (_, Some(c)) => RevocationReasonCode::parse(c)?,
                            (Value::Enumeration(e), None) => RevocationReasonCode::from_enum(e)
                                .ok_or(FieldError::Invalid("RevocationReasonCode"))?,
                            _ => RevocationReasonCode::Unspecified,
                        },
                        p.opt_datetime("CompromiseOccurrenceDate")?,
                    ),
                    None => (RevocationReasonCode::Unspecified, None),
                };
                Request::Revoke {
                    uid: uid_opt(p)?,
                    reason,
                    compromise_date,
                }
            }
            Operation::Destroy => Request::Destroy { uid: uid_opt(p)? },
            Operation::ReKey => Request::ReKey {
                uid: uid_opt(p)?,
                attributes: attrs_opt(p, "Attributes")?,
            },
            Operation::Encrypt => {
                let (nonce, spelling) = nonce(p)?;
                Request::Encrypt {
                    uid: uid_opt(p)?,
                    params: CryptographicParameters::opt(p)?,
                    data: p.req("Data")?.as_bytes("Data")?.to_vec(),
                    nonce,
                    aad: p
                        .opt_bytes("AuthenticatedEncryptionAdditionalData")?
                        .map(<[u8]>::to_vec),
                    spelling,
                    part: StreamPart::parse(p)?,
                }
            }
            Operation::Decrypt => {
                let (nonce, spelling) = nonce(p)?;
                Request::Decrypt {
                    uid: uid_opt(p)?,
                    params: CryptographicParameters::opt(p)?,
                    data: p.req("Data")?.as_bytes("Data")?.to_vec(),
                    nonce,
                    tag: p
                        .opt_bytes("AuthenticatedEncryptionTag")?
                        .map(<[u8]>::to_vec),
                    aad: p
                        .opt_bytes("AuthenticatedEncryptionAdditionalData")?
                        .map(<[u8]>::to_vec),
                    spelling,
                }
            }
            Operation::Sign => Request::Sign {
                uid: uid_opt(p)?,
                params: CryptographicParameters::opt(p)?,
                input: SignInput::parse(p)?,
            },
            Operation::SignatureVerify => Request::SignatureVerify {
                uid: uid_opt(p)?,
                params: CryptographicParameters::opt(p)?,
                input: SignInput::parse(p)?,
                signature: p.req("SignatureData")?.as_bytes("SignatureData")?.to_vec(),
            },
            Operation::Query => {
                let mut functions = Vec::new();
                for f in p.all("QueryFunction") {
                    functions.push(QueryFunction::parse(f)?);
                }
                Request::Query { functions }
            }
            Operation::MAC => Request::Mac {
                uid: uid_opt(p)?,
                params: CryptographicParameters::opt(p)?,
                data: p.req("Data")?.as_bytes("Data")?.to_vec(),
            },
            Operation::MACVerify => Request::MacVerify {
                uid: uid_opt(p)?,
                params: CryptographicParameters::opt(p)?,
                data: p.req("Data")?.as_bytes("Data")?.to_vec(),
                mac: p.req("MACData")?.as_bytes("MACData")?.to_vec(),
            },
            Operation::RNGRetrieve => Request::RngRetrieve {
                length: p.req("DataLength")?.as_int("DataLength")?,
            },
            Operation::RNGSeed => Request::RngSeed {
                data: p.req("Data")?.as_bytes("Data")?.to_vec(),
            },
            Operation::Hash => Request::Hash {
                params: CryptographicParameters::opt(p)?,
                data: p.req("Data")?.as_bytes("Data")?.to_vec(),
            },
            Operation::DiscoverVersions => {
                let mut offered = Vec::new();
                for v in p.all("ProtocolVersion") {
                    offered.push(ProtocolVersion::parse(v)?);
                }
                Request::DiscoverVersions { offered }
            }
            Operation::Interop => Request::Interop {
                function: InteropFunction::parse(p.req("InteropFunction")?)?,
                id: p
                    .req("InteropIdentifier")?
                    .as_text("InteropIdentifier")?
                    .to_string(),
            },
            Operation::Log => Request::Log {
                message: p.req("LogMessage")?.as_text("LogMessage")?.to_string(),
            },
            Operation::Check => Request::Check {
                uid: uid_opt(p)?,
                mask: p
                    .opt_int("CryptographicUsageMask")?
                    .map(|m| u32::from_ne_bytes(m.to_ne_bytes())),
            },
            Operation::SetEndpointRole => Request::SetEndpointRole,
            Operation::Certify => Request::Certify {
                uid: uid_opt(p)?,
                request: match p.get("CertificateRequestValue") {
                    Some(v) => Some((
                        CertificateRequestType::parse(p.req(CertificateRequestType::TAG)?)?,
                        v.as_bytes("CertificateRequestValue")?.to_vec(),
                    )),
                    None => None,
                },
                attributes: attrs_opt(p, "Attributes")?,
            },
            _ => return Err(RequestError::UnknownOperation),
        })
    }
}

// `Get` carries the key block inline: responses are built once and emitted right away.
#[allow(clippy::large_enum_variant)]
/// A response payload, emitted under `<Operation>Response` (or `ResponsePayload`).
#[derive(Debug)]
#[allow(missing_docs)]
pub enum Response {
    Create {
        object_type: ObjectType,
        uid: String,
    },
    CreateKeyPair {
        private_uid: String,
        public_uid: String,
    },
    Register {
        import: bool,
        uid: String,
    },
    /// Certify: the uid of the new certificate.
    Certify {
        uid: String,
    },
    Get {
        export: bool,
        object_type: ObjectType,
        uid: String,
        attributes: Option<Attributes>,
        key: KeyBlock,
    },
    GetAttributes {
        uid: String,
        attributes: Attributes,
    },
    GetAttributeList {
        uid: String,
        references: Vec<Ttlv>,
    },
    AddAttribute {
        uid: String,
    },
    SetAttribute {
        uid: String,
    },
    DeleteAttribute {
        uid: String,
    },
    Locate {
        total: i32,
        uids: Vec<String>,
    },
    Activate {
        uid: String,
    },
    Revoke {
        uid: String,
    },
    Destroy {
        uid: String,
    },
    ReKey {
        uid: String,
    },
    Encrypt {
        uid: String,
        data: Vec<u8>,
        nonce: Vec<u8>,
        tag: Vec<u8>,
        spelling: NonceSpelling,
        /// The multi-part operation to continue (answer to a first, non-final part).
        correlation: Option<Vec<u8>>,
    },
    Decrypt {
        uid: String,
        data: Vec<u8>,
    },
    Sign {
        uid: String,
        signature: Vec<u8>,
    },
    SignatureVerify {
        uid: String,
        valid: bool,
    },
    Query {
        operations: Vec<Operation>,
        object_types: Vec<ObjectType>,
        vendor: String,
        server: String,
    },
    /// The versions both sides speak, the server's preference first.
    DiscoverVersions(Vec<ProtocolVersion>),
    /// Check passed.
    Check {
        uid: String,
    },
    /// An operation whose response payload is empty (Interop, Log, Set Endpoint Role).
    Empty(Operation),
    Mac {
        uid: String,
        mac: Vec<u8>,
    },
    MacVerify {
        uid: String,
        valid: bool,
    },
    /// Random bytes (wiped on drop: callers may use them as keys).
    RngRetrieve {
        data: Vec<u8>,
    },
    /// How many seed bytes were accepted.
    RngSeed {
        accepted: i32,
    },
    Hash {
        digest: Vec<u8>,
    },
}

impl Drop for Response {
    fn drop(&mut self) {
        if let Response::Decrypt { data, .. } | Response::RngRetrieve { data } = self {
            crate::store::wipe(data);
        }
    }
}

impl Response {
    /// The uid that becomes the batch's ID placeholder (KMIP 2.1 §7.1) after this response:
    /// the object it created, returned or named (a Locate's first; CreateKeyPair's private key).
    pub fn placeholder_uid(&self) -> Option<&str> {
        match self {
            Response::Create { uid, .. }
            | Response::Register { uid, .. }
            | Response::Certify { uid }
            | Response::Get { uid, .. }
            | Response::GetAttributes { uid, .. }
            | Response::GetAttributeList { uid, .. }
            | Response::AddAttribute { uid }
            | Response::SetAttribute { uid }
            | Response::DeleteAttribute { uid }
            | Response::Activate { uid }
            | Response::Revoke { uid }
            | Response::Destroy { uid }
            | Response::ReKey { uid }
            | Response::Encrypt { uid, .. }
            | Response::Decrypt { uid, .. }
            | Response::Sign { uid, .. }
            | Response::SignatureVerify { uid, .. }
            | Response::Mac { uid, .. }
            | Response::MacVerify { uid, .. }
            | Response::Check { uid } => Some(uid),
            Response::CreateKeyPair { private_uid, .. } => Some(private_uid),
            Response::Locate { uids, .. } => uids.first().map(String::as_str),
            Response::Query { .. }
            | Response::DiscoverVersions(_)
            | Response::Empty(_)
            | Response::RngRetrieve { .. }
            | Response::RngSeed { .. }
            | Response::Hash { .. } => None,
        }
    }

    /// The operation this answers.
    pub fn operation(&self) -> Operation {
        match self {
            Response::Create { .. } => Operation::Create,
            Response::CreateKeyPair { .. } => Operation::CreateKeyPair,
            Response::Register { import: true, .. } => Operation::Import,
            Response::Register { .. } => Operation::Register,
            Response::Certify { .. } => Operation::Certify,
            Response::Get { export: true, .. } => Operation::Export,
            Response::Get { .. } => Operation::Get,
            Response::GetAttributes { .. } => Operation::GetAttributes,
            Response::GetAttributeList { .. } => Operation::GetAttributeList,
            Response::AddAttribute { .. } => Operation::AddAttribute,
            Response::SetAttribute { .. } => Operation::SetAttribute,
            Response::DeleteAttribute { .. } => Operation::DeleteAttribute,
            Response::Locate { .. } => Operation::Locate,
            Response::Activate { .. } => Operation::Activate,
            Response::Revoke { .. } => Operation::Revoke,
            Response::Destroy { .. } => Operation::Destroy,
            Response::ReKey { .. } => Operation::ReKey,
            Response::Encrypt { .. } => Operation::Encrypt,
            Response::Decrypt { .. } => Operation::Decrypt,
            Response::Sign { .. } => Operation::Sign,
            Response::SignatureVerify { .. } => Operation::SignatureVerify,
            Response::Query { .. } => Operation::Query,
            Response::DiscoverVersions(_) => Operation::DiscoverVersions,
            Response::Check { .. } => Operation::Check,
            Response::Empty(op) => *op,
            Response::Mac { .. } => Operation::MAC,
            Response::MacVerify { .. } => Operation::MACVerify,
            Response::RngRetrieve { .. } => Operation::RNGRetrieve,
            Response::RngSeed { .. } => Operation::RNGSeed,
            Response::Hash { .. } => Operation::Hash,
        }
    }

    /// Emit under `tag` (`None` = `<Operation>Response`).
    pub fn to_ttlv(&self, tag: Option<&str>) -> Ttlv {
        let name = alloc::format!("{}Response", self.operation().name());
        let tag = tag.unwrap_or(&name);
        let uid = |u: &str| Ttlv::text("UniqueIdentifier", u);
        let v = match self {
            Response::Create {
                object_type,
                uid: u,
            } => alloc::vec![object_type.to_ttlv(), uid(u)],
            Response::CreateKeyPair {
                private_uid,
                public_uid,
            } => alloc::vec![
                Ttlv::text("PrivateKeyUniqueIdentifier", private_uid),
                Ttlv::text("PublicKeyUniqueIdentifier", public_uid),
            ],
            Response::Get {
                object_type,
                uid: u,
                attributes,
                key,
                ..
            } => {
                let mut v = alloc::vec![object_type.to_ttlv(), uid(u)];
                if let Some(a) = attributes {
                    v.push(a.to_ttlv("Attributes"));
                }
                v.push(key.to_object(*object_type));
                v
            }
            Response::GetAttributes { uid: u, attributes } => {
                alloc::vec![uid(u), attributes.to_ttlv("Attributes")]
            }
            Response::GetAttributeList { uid: u, references } => {
                let mut v = alloc::vec![uid(u)];
                v.extend(references.iter().cloned());
                v
            }
            Response::Register { uid: u, .. }
            | Response::Certify { uid: u }
            | Response::AddAttribute { uid: u }
            | Response::SetAttribute { uid: u }
            | Response::DeleteAttribute { uid: u }
            | Response::Activate { uid: u }
            | Response::Revoke { uid: u }
            | Response::Destroy { uid: u }
            | Response::ReKey { uid: u }
            | Response::Check { uid: u } => alloc::vec![uid(u)],
            Response::Empty(_) => Vec::new(),
            Response::Locate { total, uids } => {
                let mut v = alloc::vec![Ttlv::int("LocatedItems", *total)];
                v.extend(uids.iter().map(|u| uid(u)));
                v
            }
            Response::Encrypt {
                uid: u,
                data,
                nonce,
                tag,
                spelling,
                correlation,
            } => {
                let mut v = alloc::vec![uid(u), Ttlv::bytes("Data", data)];
                if let Some(c) = correlation {
                    v.push(Ttlv::bytes("CorrelationValue", c));
                }
                // RSA has neither nonce nor tag.
                if !nonce.is_empty() {
                    v.push(Ttlv::bytes(spelling.tag(), nonce));
                }
                if !tag.is_empty() {
                    v.push(Ttlv::bytes("AuthenticatedEncryptionTag", tag));
                }
                v
            }
            Response::Decrypt { uid: u, data } => alloc::vec![uid(u), Ttlv::bytes("Data", data)],
            Response::Sign { uid: u, signature } => {
                alloc::vec![uid(u), Ttlv::bytes("SignatureData", signature)]
            }
            Response::Mac { uid: u, mac } => {
                alloc::vec![uid(u), Ttlv::bytes("MACData", mac)]
            }
            Response::RngRetrieve { data } => alloc::vec![Ttlv::bytes("Data", data)],
            Response::RngSeed { accepted } => alloc::vec![Ttlv::int("DataLength", *accepted)],
            Response::Hash { digest } => alloc::vec![Ttlv::bytes("Data", digest)],
            Response::SignatureVerify { uid: u, valid } | Response::MacVerify { uid: u, valid } => {
                alloc::vec![
                    uid(u),
                    Ttlv::enumeration(
                        "ValidityIndicator",
                        if *valid { "Valid" } else { "Invalid" }
                    ),
                ]
            }
            Response::Query {
                operations,
                object_types,
                vendor,
                server,
            } => {
                let mut v: Vec<Ttlv> = operations.iter().map(|o| o.to_ttlv()).collect();
                v.extend(object_types.iter().map(|o| o.to_ttlv()));
                v.push(Ttlv::text("VendorIdentification", vendor));
                v.push(Ttlv::structure(
                    "ServerInformation",
                    alloc::vec![Ttlv::text("ServerName", server)],
                ));
                v
            }
            Response::DiscoverVersions(versions) => versions.iter().map(|v| v.to_ttlv()).collect(),
        };
        Ttlv::structure(tag, v)
    }
}

/// The tag name an `AttributeReference` enumeration names: by name (JSON), or by tag code
/// (binary TTLV, KMIP 2.1 §11.51 Tag).
fn attribute_reference(e: &super::ttlv::EnumValue) -> String {
    match e {
        super::ttlv::EnumValue::Name(n) => n.clone(),
        super::ttlv::EnumValue::Code(c) => match super::ttlv::tag_name(*c) {
            Some(n) => n.to_string(),
            None => alloc::format!("0x{c:06X}"),
        },
    }
}

/// The operation named by a top-level item tag (`Create`), if any.
pub fn operation_from_tag(tag: &str) -> Option<Operation> {
    Operation::ALL.iter().copied().find(|o| o.name() == tag)
}
