//! Shared by the `Kms::kmip_json` integration tests: a KMS on the memory store with a fixed clock and
//! test randomness, and builders for the JSON TTLV requests they send.
#![allow(dead_code)]

use kms::kmip::types::ResultReason;
use kms::store::memory::MemoryStore;
use kms::{Env, Kms, KmsConfig, KmsError};
use serde_json::{Value, json};
use testkit::TestRng;

/// Runs a KMS future to completion (the memory store never waits).
pub trait Run: std::future::Future + Sized {
    fn run(self) -> Self::Output {
        kms::block_on(self, || {})
    }
}
impl<F: std::future::Future> Run for F {}

pub const NOW: i64 = 1_750_000_000;

pub struct T {
    pub kms: Kms<MemoryStore>,
    pub rng: TestRng,
    pub now: i64,
}

impl T {
    pub fn new() -> Self {
        T {
            kms: Kms::new(MemoryStore::new(), KmsConfig::default()),
            rng: TestRng::new(0x1234_5678_9abc_def1),
            now: NOW,
        }
    }
    pub fn call_raw(&mut self, user: &str, body: &[u8]) -> Result<Value, KmsError> {
        let mut env = Env {
            now: self.now,
            rng: &mut self.rng,
        };
        let out = self.kms.kmip_json(&mut env, user, body).run()?;
        Ok(serde_json::from_slice(&out).expect("response is JSON"))
    }
    pub fn call(&mut self, user: &str, req: Value) -> Result<Value, KmsError> {
        self.call_raw(user, req.to_string().as_bytes())
    }
    pub fn ok(&mut self, user: &str, req: Value) -> Value {
        match self.call(user, req.clone()) {
            Ok(v) => v,
            Err(e) => panic!("{req} failed: {e}"),
        }
    }
    pub fn grant(&mut self, owner: &str, uid: &str, grantee: &str, ops: &[&str]) {
        let ops: Vec<String> = ops.iter().map(|o| o.to_string()).collect();
        let mut env = Env {
            now: self.now,
            rng: &mut self.rng,
        };
        self.kms
            .grant_access(&mut env, owner, uid, grantee, &ops)
            .run()
            .expect("grant");
    }
    pub fn err(&mut self, user: &str, req: Value) -> KmsError {
        match self.call(user, req.clone()) {
            Ok(v) => panic!("{req} unexpectedly succeeded: {v}"),
            Err(e) => e,
        }
    }
}

pub fn reason(e: &KmsError) -> ResultReason {
    match e {
        KmsError::Kmip(k) => k.reason,
        other => panic!("not a KMIP error: {other:?}"),
    }
}

pub fn field<'a>(v: &'a Value, tag: &str) -> Option<&'a Value> {
    v["value"].as_array()?.iter().find(|c| c["tag"] == tag)
}

pub fn text(v: &Value, tag: &str) -> String {
    field(v, tag).unwrap_or_else(|| panic!("no {tag} in {v}"))["value"]
        .as_str()
        .unwrap()
        .to_string()
}

pub fn bytes(v: &Value, tag: &str) -> Vec<u8> {
    hex::decode(text(v, tag)).unwrap()
}

pub fn tag_attr(tags: &[&str]) -> Value {
    let j = serde_json::to_string(tags).unwrap();
    json!({"tag":"VendorAttributes","type":"Structure","value":[
        {"tag":"VendorAttributes","type":"Structure","value":[
            {"tag":"VendorIdentification","type":"TextString","value":"cosmian"},
            {"tag":"AttributeName","type":"TextString","value":"tag"},
            {"tag":"AttributeValue","type":"ByteString","value":hex::encode_upper(j.as_bytes())}]}]})
}

pub fn create_sym(alg: &str, bits: i64, mask: i64, tags: &[&str], activate: bool) -> Value {
    let mut attrs = vec![
        json!({"tag":"CryptographicAlgorithm","type":"Enumeration","value":alg}),
        json!({"tag":"CryptographicLength","type":"Integer","value":bits}),
        json!({"tag":"CryptographicUsageMask","type":"Integer","value":mask}),
        json!({"tag":"KeyFormatType","type":"Enumeration","value":"TransparentSymmetricKey"}),
    ];
    if activate {
        attrs
            .push(json!({"tag":"ActivationDate","type":"DateTime","value":"2024-01-01T00:00:00Z"}));
    }
    if !tags.is_empty() {
        attrs.push(tag_attr(tags));
    }
    json!({"tag":"Create","type":"Structure","value":[
        {"tag":"ObjectType","type":"Enumeration","value":"SymmetricKey"},
        {"tag":"Attributes","type":"Structure","value":attrs}]})
}

pub fn uid_req(op: &str, uid: &str) -> Value {
    json!({"tag":op,"type":"Structure","value":[{"tag":"UniqueIdentifier","type":"TextString","value":uid}]})
}

pub fn encrypt(uid: &str, data: &[u8], extra: Vec<Value>) -> Value {
    let mut v = vec![
        json!({"tag":"UniqueIdentifier","type":"TextString","value":uid}),
        json!({"tag":"Data","type":"ByteString","value":hex::encode_upper(data)}),
    ];
    v.extend(extra);
    json!({"tag":"Encrypt","type":"Structure","value":v})
}

pub fn decrypt(uid: &str, data: &[u8], nonce_tag: &str, nonce: &[u8], tag: &[u8]) -> Value {
    json!({"tag":"Decrypt","type":"Structure","value":[
        {"tag":"UniqueIdentifier","type":"TextString","value":uid},
        {"tag":"Data","type":"ByteString","value":hex::encode_upper(data)},
        {"tag":nonce_tag,"type":"ByteString","value":hex::encode_upper(nonce)},
        {"tag":"AuthenticatedEncryptionTag","type":"ByteString","value":hex::encode_upper(tag)}]})
}

pub fn create_pair(alg: &str, curve: Option<&str>, tags: &[&str]) -> Value {
    let mut common = vec![
        json!({"tag":"CryptographicAlgorithm","type":"Enumeration","value":alg}),
        json!({"tag":"ActivationDate","type":"DateTime","value":"2024-01-01T00:00:00Z"}),
    ];
    if let Some(c) = curve {
        common.push(
            json!({"tag":"CryptographicDomainParameters","type":"Structure","value":[
            {"tag":"RecommendedCurve","type":"Enumeration","value":c}]}),
        );
    }
    if !tags.is_empty() {
        common.push(tag_attr(tags));
    }
    json!({"tag":"CreateKeyPair","type":"Structure","value":[
        {"tag":"CommonAttributes","type":"Structure","value":common}]})
}
