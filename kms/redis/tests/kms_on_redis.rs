//! The KMS core (`kms::Kms`) on the Redis-with-Findex store, in process: Register and Create keys
//! with known key bytes, names and tags, use them, then SCAN Redis (and read its AOF) and assert
//! that none of those appear raw, in hex or in base64. Also: Locate and Get by tag work on Redis.

mod common;

use base64ct::{Base64Unpadded, Encoding};
use common::{Admin, Run};
use kms::{Env, Kms, KmsConfig};
use kms_redis::RedisFindexStore;
use kms_redis::host::ConnectOptions;
use serde_json::{Value, json};
use testkit::TestRng;

fn tag_attr(tags: &[&str]) -> Value {
    let j = serde_json::to_string(tags).unwrap();
    json!({"tag":"VendorAttributes","type":"Structure","value":[
        {"tag":"VendorAttributes","type":"Structure","value":[
            {"tag":"VendorIdentification","type":"TextString","value":"cosmian"},
            {"tag":"AttributeName","type":"TextString","value":"tag"},
            {"tag":"AttributeValue","type":"ByteString","value":hex::encode_upper(j.as_bytes())}]}]})
}

fn name(n: &str) -> Value {
    json!({"tag":"Name","type":"Structure","value":[
        {"tag":"NameValue","type":"TextString","value":n},
        {"tag":"NameType","type":"Enumeration","value":"UninterpretedTextString"}]})
}

fn uid_of(v: &Value) -> String {
    v["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["tag"] == "UniqueIdentifier")
        .unwrap()["value"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn kms_objects_on_redis_leave_nothing_in_the_clear() {
    let r = common::start();
    let store = RedisFindexStore::connect(&r.url(), &[9u8; 32], ConnectOptions::default()).unwrap();
    let kms = Kms::new(store, KmsConfig::default());
    let mut rng = TestRng::new(0x9e37_79b9_7f4a_7c15);
    let mut call = |user: &str, req: Value| -> Value {
        let mut env = Env {
            now: 1_800_000_000,
            rng: &mut rng,
        };
        let out = kms
            .kmip_json(&mut env, user, req.to_string().as_bytes())
            .run()
            .unwrap_or_else(|e| panic!("{req}: {e}"));
        serde_json::from_slice(&out).unwrap()
    };

    let mut needles: Vec<Vec<u8>> = Vec::new();
    fn push(needles: &mut Vec<Vec<u8>>, s: &[u8]) {
        needles.push(s.to_vec());
        needles.push(hex::encode_upper(s).into_bytes());
        needles.push(hex::encode(s).into_bytes());
        needles.push(Base64Unpadded::encode_string(s).into_bytes());
    }
    let mut registered = Vec::new();
    for i in 0..8u8 {
        let key: Vec<u8> = (0..32u8)
            .map(|j| {
                j.wrapping_mul(29)
                    .wrapping_add(i.wrapping_mul(71))
                    .wrapping_add(5)
            })
            .collect();
        let tag = format!("TopSecretProject{i}");
        let nm = format!("HrPayrollMaster{i}");
        let reg = call(
            "carol-owner",
            json!({"tag":"Register","type":"Structure","value":[
            {"tag":"ObjectType","type":"Enumeration","value":"SymmetricKey"},
            {"tag":"Attributes","type":"Structure","value":[
                {"tag":"CryptographicAlgorithm","type":"Enumeration","value":"AES"},
                {"tag":"ActivationDate","type":"DateTime","value":"2024-01-01T00:00:00Z"},
                name(&nm), tag_attr(&[&tag])]},
            {"tag":"SymmetricKey","type":"Structure","value":[{"tag":"KeyBlock","type":"Structure","value":[
                {"tag":"KeyFormatType","type":"Enumeration","value":"TransparentSymmetricKey"},
                {"tag":"KeyValue","type":"Structure","value":[{"tag":"KeyMaterial","type":"Structure","value":[
                    {"tag":"Key","type":"ByteString","value":hex::encode_upper(&key)}]}]}]}]}]}),
        );
        let uid = uid_of(&reg);
        for w in key.windows(8) {
            needles.push(w.to_vec());
        }
        push(&mut needles, &key);
        push(&mut needles, tag.as_bytes());
        push(&mut needles, nm.as_bytes());
        push(&mut needles, uid.as_bytes());
        registered.push((uid, tag, key));
    }
    // Created keys too: their generated material comes back from Get.
    let mut created = Vec::new();
    for i in 0..4 {
        let tag = format!("GeneratedKeyTag{i}");
        let c = call(
            "carol-owner",
            json!({"tag":"Create","type":"Structure","value":[
            {"tag":"ObjectType","type":"Enumeration","value":"SymmetricKey"},
            {"tag":"Attributes","type":"Structure","value":[
                {"tag":"CryptographicAlgorithm","type":"Enumeration","value":"AES"},
                {"tag":"CryptographicLength","type":"Integer","value":256},
                {"tag":"CryptographicUsageMask","type":"Integer","value":2108},
                {"tag":"ActivationDate","type":"DateTime","value":"2024-01-01T00:00:00Z"},
                tag_attr(&[&tag])]}]}),
        );
        let uid = uid_of(&c);
        let g = call(
            "carol-owner",
            json!({"tag":"Get","type":"Structure","value":[
            {"tag":"UniqueIdentifier","type":"TextString","value":uid}]}),
        );
        let text = g.to_string();
        // the Raw key material: the longest upper-case hex string of 64 characters
        let key_hex = text
            .split('"')
            .find(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .expect("key material in Get response")
            .to_string();
        let key: Vec<u8> = (0..32)
            .map(|i| u8::from_str_radix(&key_hex[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        push(&mut needles, &key);
        push(&mut needles, tag.as_bytes());
        push(&mut needles, uid.as_bytes());
        created.push(uid);
    }
    for s in [
        "carol-owner",
        "TopSecretProject",
        "HrPayrollMaster",
        "GeneratedKeyTag",
        "SymmetricKey",
        "owner=",
        "tag=",
    ] {
        push(&mut needles, s.as_bytes());
    }

    // The data is there and usable: Locate by tag, Get by tag placeholder.
    for (uid, tag, key) in &registered {
        let l = call(
            "carol-owner",
            json!({"tag":"Locate","type":"Structure","value":[
            {"tag":"Attributes","type":"Structure","value":[tag_attr(&[tag])]}]}),
        );
        assert!(l.to_string().contains(uid.as_str()), "{l}");
        let by_tag = serde_json::to_string(&[tag]).unwrap();
        let g = call(
            "carol-owner",
            json!({"tag":"Get","type":"Structure","value":[
            {"tag":"UniqueIdentifier","type":"TextString","value":by_tag}]}),
        );
        assert!(
            g.to_string().contains(&hex::encode_upper(key)),
            "Get by tag returns the key"
        );
    }

    let dump = r.dump();
    assert!(dump.len() > 12);
    for (k, v) in &dump {
        for n in &needles {
            let hit = |h: &[u8]| h.windows(n.len()).any(|w| w == n.as_slice());
            assert!(
                !hit(k),
                "key {:?} contains {:?}",
                String::from_utf8_lossy(k),
                String::from_utf8_lossy(n)
            );
            assert!(
                !hit(v),
                "value of {:?} contains {:?}",
                String::from_utf8_lossy(k),
                String::from_utf8_lossy(n)
            );
        }
    }
}
