//! The JSON examples of the KMIP 2.1 Cosmian dialect (tests/data/*.json), replayed through
//! `Kms::kmip_json` and the access-rights entry points, in order.

use kms::crypto::{Random, RngError};
use kms::kmip::types::ResultReason;
use kms::store::memory::MemoryStore;
use kms::{Env, Kms, KmsConfig, KmsError};
use serde_json::Value;

/// Runs a KMS future to completion (the memory store never waits).
trait Run: std::future::Future + Sized {
    fn run(self) -> Self::Output {
        kms::block_on(self, || {})
    }
}
impl<F: std::future::Future> Run for F {}

struct Counter(u8);
impl Random for Counter {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), RngError> {
        for b in buf {
            self.0 = self.0.wrapping_add(37);
            *b = self.0;
        }
        Ok(())
    }
}

fn data(name: &str) -> Vec<u8> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn child<'a>(v: &'a Value, tag: &str) -> &'a Value {
    v["value"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["tag"] == tag))
        .unwrap_or_else(|| panic!("no {tag} in {v}"))
}

#[test]
fn formats_examples_replay() {
    let kms = Kms::new(MemoryStore::new(), KmsConfig::default());
    let mut rng = Counter(0);
    let mut env = Env {
        now: 1_750_000_000,
        rng: &mut rng,
    };
    let mut call = |user: &str, file: &str| -> Result<Value, kms::KmsError> {
        let out = kms.kmip_json(&mut env, user, &data(file)).run()?;
        Ok(serde_json::from_slice(&out).unwrap())
    };
    // Create AES-256 with the tag MyTag -> CreateResponse{ObjectType, UniqueIdentifier}.
    let r = call("alice", "create_aes256_tag.json").unwrap();
    assert_eq!(r["tag"], "CreateResponse");
    assert_eq!(child(&r, "ObjectType")["value"], "SymmetricKey");
    let uid = child(&r, "UniqueIdentifier")["value"]
        .as_str()
        .unwrap()
        .to_string();
    // Created without an ActivationDate: PreActive, not usable yet.
    let e = call("alice", "encrypt_aes_gcm_tag.json").unwrap_err();
    assert!(
        matches!(
            &e,
            KmsError::Kmip(k) if k.reason == ResultReason::WrongKeyLifecycleState
        ),
        "{e:?}"
    );
    assert_eq!(e.http_status(), 422);
    assert!(e.to_string().contains("PreActive"), "{e}");
    let r = call("alice", "activate_tag.json").unwrap();
    assert_eq!(child(&r, "UniqueIdentifier")["value"], uid.as_str());
    let r = call("alice", "encrypt_aes_gcm_tag.json").unwrap();
    assert_eq!(r["tag"], "EncryptResponse");
    assert_eq!(child(&r, "UniqueIdentifier")["value"], uid.as_str());
    assert_eq!(
        child(&r, "IVCounterNonce")["value"].as_str().unwrap().len(),
        24
    );
    assert_eq!(
        child(&r, "AuthenticatedEncryptionTag")["value"]
            .as_str()
            .unwrap()
            .len(),
        32
    );
    let r = call("alice", "locate_tag.json").unwrap();
    assert_eq!(child(&r, "LocatedItems")["value"], 1);
    let r = call("alice", "request_message_batch.json").unwrap();
    assert_eq!(r["tag"], "ResponseMessage");
    let items: Vec<&Value> = r["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["tag"] == "BatchItem")
        .collect();
    assert_eq!(items.len(), 2);
    for i in &items {
        assert_eq!(child(i, "ResultStatus")["value"], "Success");
    }
    // Bob cannot use the key until alice grants him encrypt (by tag, singular operation_type): a
    // tag he has no right on finds nothing.
    let r = call("bob", "encrypt_aes_gcm_tag.json");
    assert!(
        matches!(&r, Err(KmsError::Kmip(k)) if k.reason == ResultReason::ObjectNotFound),
        "{r:?}"
    );
    let mut rng2 = Counter(9);
    let mut env2 = Env {
        now: 1_750_000_000,
        rng: &mut rng2,
    };
    let ok = kms
        .grant_access_json(&mut env2, "alice", &data("access_grant.json"))
        .run()
        .unwrap();
    let ok: Value = serde_json::from_slice(&ok).unwrap();
    assert!(ok["success"].is_string());
    let out = kms
        .kmip_json(&mut env2, "bob", &data("encrypt_aes_gcm_tag.json"))
        .run()
        .unwrap();
    let r: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(r["tag"], "EncryptResponse");
}
