//! KMIP over binary TTLV through `Kms::kmip_binary`, as a binary client (PyKMIP, a database, a
//! storage array) speaks it: enumerations by code, vendor attributes as `Attribute`, the
//! protocol version in the header.

use kms::kmip::binary::{self, BinaryError};
use kms::kmip::json::Limits;
use kms::kmip::ttlv::{EnumValue, Ttlv, Value};
use kms::kmip::types::{Operation, ResultReason, ResultStatus};
use kms::store::memory::MemoryStore;
use kms::{Env, Kms, KmsConfig, KmsError};
use testkit::TestRng;

const NOW: i64 = 1_750_000_000;

struct T {
    kms: Kms<MemoryStore>,
    rng: TestRng,
}

impl T {
    fn new() -> Self {
        T {
            kms: Kms::new(MemoryStore::new(), KmsConfig::default()),
            rng: TestRng::new(0x5eed),
        }
    }

    fn raw(&mut self, user: &str, body: &[u8]) -> Result<Ttlv, KmsError> {
        let mut env = Env {
            now: NOW,
            rng: &mut self.rng,
        };
        let out = kms::block_on(self.kms.kmip_binary(&mut env, user, body), || {})?;
        Ok(binary::from_slice(&out, &Limits::default()).expect("the answer is binary TTLV"))
    }

    /// Sends a RequestMessage in `version` and returns the ResponseMessage.
    fn send(&mut self, version: (i32, i32), items: Vec<(Operation, Vec<Ttlv>)>) -> Ttlv {
        let body = binary::to_vec(&message(version, items)).expect("request encodes");
        self.raw("alice", &body).expect("message answered")
    }

    /// One operation in KMIP 2.1; its payload, or a panic with the failure.
    fn one(&mut self, op: Operation, payload: Vec<Ttlv>) -> Ttlv {
        let r = self.send((2, 1), vec![(op, payload)]);
        let item = r.get("BatchItem").expect("BatchItem");
        assert_eq!(code(item, "ResultStatus"), 0, "{op:?} failed: {item:?}");
        item.get("ResponsePayload").expect("payload").clone()
    }
}

fn message(version: (i32, i32), items: Vec<(Operation, Vec<Ttlv>)>) -> Ttlv {
    let mut v = vec![Ttlv::structure(
        "RequestHeader",
        vec![
            Ttlv::structure(
                "ProtocolVersion",
                vec![
                    Ttlv::int("ProtocolVersionMajor", version.0),
                    Ttlv::int("ProtocolVersionMinor", version.1),
                ],
            ),
            Ttlv::int("BatchCount", items.len() as i32),
        ],
    )];
    for (op, payload) in items {
        v.push(Ttlv::structure(
            "BatchItem",
            vec![
                en("Operation", op.code()),
                Ttlv::structure("RequestPayload", payload),
            ],
        ));
    }
    Ttlv::structure("RequestMessage", v)
}

/// An enumeration by code, as binary clients send it.
fn en(tag: &str, c: u32) -> Ttlv {
    Ttlv::new(tag, Value::Enumeration(EnumValue::Code(c)))
}

fn code(t: &Ttlv, tag: &str) -> u32 {
    match t.get(tag).map(|c| &c.value) {
        Some(Value::Enumeration(EnumValue::Code(c))) => *c,
        other => panic!("{tag}: {other:?} in {t:?}"),
    }
}

fn uid_of(p: &Ttlv) -> String {
    p.get("UniqueIdentifier")
        .and_then(|u| u.as_text("UniqueIdentifier").ok())
        .expect("UniqueIdentifier")
        .to_string()
}

fn version_of(r: &Ttlv) -> (i32, i32) {
    let pv = r
        .get("ResponseHeader")
        .and_then(|h| h.get("ProtocolVersion"))
        .expect("ProtocolVersion");
    (
        pv.opt_int("ProtocolVersionMajor").unwrap().unwrap(),
        pv.opt_int("ProtocolVersionMinor").unwrap().unwrap(),
    )
}

fn create_aes(tags: bool) -> Vec<Ttlv> {
    let mut attrs = vec![
        en("CryptographicAlgorithm", 3),
        Ttlv::int("CryptographicLength", 256),
        Ttlv::int("CryptographicUsageMask", 12),
        Ttlv::datetime("ActivationDate", NOW - 10),
    ];
    if tags {
        attrs.push(Ttlv::structure(
            "Attribute",
            vec![
                Ttlv::text("VendorIdentification", "cosmian"),
                Ttlv::text("AttributeName", "tag"),
                Ttlv::bytes("AttributeValue", br#"["disk"]"#),
            ],
        ));
    }
    vec![en("ObjectType", 2), Ttlv::structure("Attributes", attrs)]
}

#[test]
fn create_get_encrypt_decrypt_destroy() {
    let mut t = T::new();
    let uid = uid_of(&t.one(Operation::Create, create_aes(true)));
    // Get: the key under its object-type tag, Raw, 32 bytes.
    let g = t.one(Operation::Get, vec![Ttlv::text("UniqueIdentifier", &uid)]);
    assert_eq!(code(&g, "ObjectType"), 2);
    let kb = g
        .get("SymmetricKey")
        .and_then(|o| o.get("KeyBlock"))
        .expect("SymmetricKey/KeyBlock");
    assert_eq!(code(kb, "KeyFormatType"), 1);
    let key = kb
        .get("KeyValue")
        .and_then(|v| v.opt_bytes("KeyMaterial").ok().flatten())
        .expect("KeyMaterial");
    assert_eq!(key.len(), 32);
    // Attributes come back in KMIP's shape: the tag is an `Attribute`, readable again.
    let a = t.one(
        Operation::GetAttributes,
        vec![Ttlv::text("UniqueIdentifier", &uid)],
    );
    let attrs = a.get("Attributes").expect("Attributes");
    let vendor = attrs.get("Attribute").expect("vendor Attribute");
    assert_eq!(
        vendor.opt_bytes("AttributeValue").unwrap().unwrap(),
        br#"["disk","_kk"]"#
    );
    assert!(attrs.get("VendorAttributes").is_none());
    // AttributeReference by tag code (KMIP 2.1 §11.51): only that attribute.
    let a = t.one(
        Operation::GetAttributes,
        vec![
            Ttlv::text("UniqueIdentifier", &uid),
            en("AttributeReference", 0x42_002A),
        ],
    );
    let only: Vec<&str> = a
        .get("Attributes")
        .unwrap()
        .children()
        .iter()
        .map(|c| c.tag.as_str())
        .collect();
    assert_eq!(only, ["CryptographicLength"]);
    // Encrypt then Decrypt in one batch of two messages.
    let e = t.one(
        Operation::Encrypt,
        vec![
            Ttlv::text("UniqueIdentifier", &uid),
            Ttlv::bytes("Data", b"sixty-four bytes of plaintext, give or take a few"),
        ],
    );
    let d = t.one(
        Operation::Decrypt,
        vec![
            Ttlv::text("UniqueIdentifier", &uid),
            e.get("Data").unwrap().clone(),
            e.get("IVCounterNonce").unwrap().clone(),
            e.get("AuthenticatedEncryptionTag").unwrap().clone(),
        ],
    );
    assert_eq!(
        d.opt_bytes("Data").unwrap().unwrap(),
        b"sixty-four bytes of plaintext, give or take a few"
    );
    // Revoke (reason by code) and Destroy.
    t.one(
        Operation::Revoke,
        vec![
            Ttlv::text("UniqueIdentifier", &uid),
            Ttlv::structure("RevocationReason", vec![en("RevocationReasonCode", 5)]),
        ],
    );
    t.one(
        Operation::Destroy,
        vec![Ttlv::text("UniqueIdentifier", &uid)],
    );
}

#[test]
fn protocol_version_is_echoed_and_negotiated() {
    let mut t = T::new();
    let r = t.send((2, 0), vec![(Operation::Create, create_aes(false))]);
    assert_eq!(version_of(&r), (2, 0));
    let r = t.send((2, 1), vec![(Operation::DiscoverVersions, vec![])]);
    assert_eq!(version_of(&r), (2, 1));
    let p = r
        .get("BatchItem")
        .and_then(|i| i.get("ResponsePayload"))
        .unwrap();
    let offered: Vec<(i32, i32)> = p
        .all("ProtocolVersion")
        .map(|v| {
            (
                v.opt_int("ProtocolVersionMajor").unwrap().unwrap(),
                v.opt_int("ProtocolVersionMinor").unwrap().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        offered,
        [(2, 1), (2, 0), (1, 4), (1, 3), (1, 2), (1, 1), (1, 0)]
    );
    // A client offering 0.9 and 2.0 gets 2.0 only.
    let pv = |a: i32, b: i32| {
        Ttlv::structure(
            "ProtocolVersion",
            vec![
                Ttlv::int("ProtocolVersionMajor", a),
                Ttlv::int("ProtocolVersionMinor", b),
            ],
        )
    };
    let r = t.send(
        (2, 0),
        vec![(Operation::DiscoverVersions, vec![pv(0, 9), pv(2, 0)])],
    );
    let p = r
        .get("BatchItem")
        .and_then(|i| i.get("ResponsePayload"))
        .unwrap();
    assert_eq!(p.all("ProtocolVersion").count(), 1);
    // KMIP 1.4 is answered in 1.4 (its attribute model is mapped: kms::kmip::v1).
    let r = t.send((1, 4), vec![(Operation::Create, create_aes(false))]);
    assert_eq!(version_of(&r), (1, 4));
    // A version we do not speak: a failed message in ours.
    let r = t.send((3, 0), vec![(Operation::Create, create_aes(false))]);
    assert_eq!(version_of(&r), (2, 1));
    let item = r.get("BatchItem").unwrap();
    assert_eq!(
        code(item, "ResultStatus"),
        ResultStatus::OperationFailed.code()
    );
    assert_eq!(
        code(item, "ResultReason"),
        ResultReason::UnsupportedProtocolVersion.code()
    );
}

#[test]
fn malformed_messages_get_typed_errors() {
    let mut t = T::new();
    assert_eq!(
        t.raw("alice", &[0x42, 0x00, 0x78, 0x01]),
        Err(KmsError::MalformedBinary(BinaryError::TruncatedHeader))
    );
    assert_eq!(
        t.raw(
            "alice",
            &[
                0x42, 0x00, 0x78, 0x01, 0, 0, 0, 16, 0x42, 0, 0x77, 0x01, 0, 0, 0, 0
            ]
        ),
        Err(KmsError::MalformedBinary(BinaryError::LengthBeyondInput))
    );
    let not_a_message = binary::to_vec(&Ttlv::structure("RequestPayload", vec![])).unwrap();
    let e = t.raw("alice", &not_a_message).unwrap_err();
    assert!(
        matches!(&e, KmsError::Kmip(k) if k.reason == ResultReason::InvalidMessage),
        "{e:?}"
    );
    let body = binary::to_vec(&message((2, 1), vec![])).unwrap();
    assert_eq!(t.raw("", &body), Err(KmsError::Unauthenticated));
    // A batch item with an operation we do not implement (Cancel, 0x19) fails alone.
    let mut m = message(
        (2, 1),
        vec![
            (Operation::Create, create_aes(false)),
            (Operation::Query, vec![en("QueryFunction", 1)]),
        ],
    );
    if let Value::Structure(items) = &mut m.value {
        items[2] = Ttlv::structure(
            "BatchItem",
            vec![
                en("Operation", 0x19),
                Ttlv::structure("RequestPayload", vec![]),
            ],
        );
    }
    let r = t.raw("alice", &binary::to_vec(&m).unwrap()).unwrap();
    let items: Vec<&Ttlv> = r.all("BatchItem").collect();
    assert_eq!(items.len(), 2);
    assert_eq!(code(items[0], "ResultStatus"), 0);
    assert_eq!(
        code(items[1], "ResultStatus"),
        ResultStatus::OperationFailed.code()
    );
    assert_eq!(
        code(items[1], "ResultReason"),
        ResultReason::OperationNotSupported.code()
    );
}

#[test]
fn the_error_answer_is_a_response_message() {
    let e = KmsError::MalformedBinary(BinaryError::BadPadding);
    let t = kms::kmip_error_response(NOW, &e);
    let b = binary::to_vec(&t).expect("encodes");
    let back = binary::from_slice(&b, &Limits::default()).unwrap();
    let item = back.get("BatchItem").unwrap();
    assert_eq!(
        code(item, "ResultStatus"),
        ResultStatus::OperationFailed.code()
    );
    assert_eq!(
        code(item, "ResultReason"),
        ResultReason::InvalidMessage.code()
    );
    assert_eq!(version_of(&back), (2, 1));
}

/// KMIP 1.4 over binary (kms::kmip::v1): Create with a `TemplateAttribute` of text-named
/// attributes, GetAttributes by name answered with `Attribute { AttributeName,
/// AttributeValue }` (enumerations as codes), an unknown attribute name refused.
#[test]
fn kmip_1_4_attribute_model() {
    let mut t = T::new();
    let attr = |name: &str, value: Ttlv| {
        Ttlv::structure("Attribute", vec![Ttlv::text("AttributeName", name), value])
    };
    let r = t.send(
        (1, 4),
        vec![(
            Operation::Create,
            vec![
                en("ObjectType", 2),
                Ttlv::structure(
                    "TemplateAttribute",
                    vec![
                        attr("Cryptographic Algorithm", en("AttributeValue", 3)),
                        attr("Cryptographic Length", Ttlv::int("AttributeValue", 128)),
                        attr("Cryptographic Usage Mask", Ttlv::int("AttributeValue", 12)),
                    ],
                ),
            ],
        )],
    );
    assert_eq!(version_of(&r), (1, 4));
    let item = r.get("BatchItem").unwrap();
    assert_eq!(code(item, "ResultStatus"), 0, "{item:?}");
    let uid = match &item
        .get("ResponsePayload")
        .unwrap()
        .get("UniqueIdentifier")
        .unwrap()
        .value
    {
        Value::TextString(s) => s.clone(),
        other => panic!("{other:?}"),
    };
    let r = t.send(
        (1, 4),
        vec![(
            Operation::GetAttributes,
            vec![
                Ttlv::text("UniqueIdentifier", &uid),
                Ttlv::text("AttributeName", "Cryptographic Length"),
                Ttlv::text("AttributeName", "State"),
            ],
        )],
    );
    let p = r
        .get("BatchItem")
        .and_then(|i| i.get("ResponsePayload"))
        .unwrap();
    let value_of = |name: &str| {
        p.all("Attribute")
            .find(|a| {
                a.get("AttributeName").map(|n| &n.value) == Some(&Value::TextString(name.into()))
            })
            .and_then(|a| a.get("AttributeValue"))
            .map(|v| v.value.clone())
    };
    assert_eq!(value_of("Cryptographic Length"), Some(Value::Integer(128)));
    assert_eq!(
        value_of("State"),
        Some(Value::Enumeration(EnumValue::Code(1))),
        "PreActive"
    );
    assert!(
        p.get("Attributes").is_none(),
        "no 2.x Attributes in a 1.x answer"
    );
    let e = t
        .raw(
            "alice",
            &binary::to_vec(&message(
                (1, 4),
                vec![(
                    Operation::GetAttributes,
                    vec![
                        Ttlv::text("UniqueIdentifier", &uid),
                        Ttlv::text("AttributeName", "Colour"),
                    ],
                )],
            ))
            .unwrap(),
        )
        .unwrap_err();
    assert!(
        matches!(&e, KmsError::Kmip(k) if k.reason == ResultReason::InvalidField),
        "{e:?}"
    );
}
