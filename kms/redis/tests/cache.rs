//! The record cache (issue 15) against a real redis-server, with two stores ("servers") sharing
//! it: a change made through one is seen by the other on its next request (Revoke, Destroy,
//! grant removal), cache hits make no Redis round trip, the cache never hides a rollback, and
//! it stops serving when its tracking connection is lost.

mod common;

use common::{Admin, Run};
use kms::kmip::types::ResultReason;
use kms::store::{Record, Store, StoreError, Version};
use kms::{Env, Kms, KmsConfig, KmsError};
use kms_redis::host::ConnectOptions;
use kms_redis::keys::KeySet;
use kms_redis::resp::Reply;
use kms_redis::seal::Sealer;
use kms_redis::{RedisFindexStore, StdPool};
use serde_json::{Value, json};
use testkit::TestRng;

const SECRET: [u8; 32] = [0x24; 32];
const ROLLBACK: StoreError =
    StoreError::Rollback("Redis returned an object older than a version already seen");

fn open(r: &common::RedisServer) -> RedisFindexStore<StdPool> {
    RedisFindexStore::connect(&r.url(), &SECRET, ConnectOptions::default()).expect("connect")
}

fn rec(uid: &str, body: &[u8], kws: &[&str]) -> Record {
    Record {
        uid: uid.into(),
        body: body.to_vec(),
        keywords: kws.iter().map(|s| s.to_string()).collect(),
    }
}

fn round_trips(s: &RedisFindexStore<StdPool>) -> u64 {
    s.pool().stats().1
}

#[test]
fn hits_make_no_round_trip_and_a_write_elsewhere_is_seen_at_once() {
    let r = common::start();
    let (a, b) = (open(&r), open(&r));
    assert!(b.cache_stats().unwrap().live, "tracking connection up");
    a.insert(&rec("k", b"v1", &["owner=alice"])).run().unwrap();
    assert_eq!(b.get("k").run().unwrap().unwrap().1, Version(1));
    let before = round_trips(&b);
    for _ in 0..10 {
        let (got, v) = b.get("k").run().unwrap().unwrap();
        assert_eq!((got.body.as_slice(), v), (b"v1".as_slice(), Version(1)));
    }
    assert_eq!(round_trips(&b), before, "cache hits do not touch Redis");
    assert!(b.cache_stats().unwrap().hits >= 10);
    // Staleness window: every read issued after the other store's write returned sees it.
    let mut v = Version(1);
    for i in 0..300u32 {
        let body = format!("v{}", i + 2);
        v = a
            .update(&rec("k", body.as_bytes(), &["owner=alice"]), v)
            .run()
            .unwrap();
        let (got, seen) = b.get("k").run().unwrap().unwrap();
        assert_eq!(
            (got.body.clone(), seen),
            (body.into_bytes(), v),
            "stale read at write {i}"
        );
        // and it is cached again until the next write
        assert_eq!(b.get("k").run().unwrap().unwrap().1, v);
    }
    let s = b.cache_stats().unwrap();
    assert!(s.invalidations >= 300 && s.hits >= 310, "{s:?}");
    a.delete("k", v).run().unwrap();
    assert_eq!(b.get("k").run(), Ok(None));
}

/// Two KMS instances on one Redis: a key used by B (so cached there) is revoked, then destroyed
/// through A; B's very next request sees each change. Same for a grant A withdraws.
#[test]
fn revoke_destroy_and_grant_removal_through_another_server_take_effect() {
    let r = common::start();
    let (ka, kb) = (
        Kms::new(open(&r), KmsConfig::default()),
        Kms::new(open(&r), KmsConfig::default()),
    );
    let mut rng = TestRng::new(15);
    let mut call = |kms: &Kms<RedisFindexStore<StdPool>>, user: &str, req: Value| {
        let mut env = Env {
            now: 1_800_000_000,
            rng: &mut rng,
        };
        kms.kmip_json(&mut env, user, req.to_string().as_bytes())
            .run()
            .map(|out| serde_json::from_slice::<Value>(&out).unwrap())
    };
    let created = call(
        &ka,
        "alice",
        json!({"tag":"Create","type":"Structure","value":[
        {"tag":"ObjectType","type":"Enumeration","value":"SymmetricKey"},
        {"tag":"Attributes","type":"Structure","value":[
            {"tag":"CryptographicAlgorithm","type":"Enumeration","value":"AES"},
            {"tag":"CryptographicLength","type":"Integer","value":256},
            {"tag":"CryptographicUsageMask","type":"Integer","value":12},
            {"tag":"ActivationDate","type":"DateTime","value":"2024-01-01T00:00:00Z"}]}]}),
    )
    .unwrap();
    let uid = created["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["tag"] == "UniqueIdentifier")
        .unwrap()["value"]
        .as_str()
        .unwrap()
        .to_string();
    let encrypt = json!({"tag":"Encrypt","type":"Structure","value":[
        {"tag":"UniqueIdentifier","type":"TextString","value":uid},
        {"tag":"CryptographicParameters","type":"Structure","value":[
            {"tag":"BlockCipherMode","type":"Enumeration","value":"GCM"}]},
        {"tag":"Data","type":"ByteString","value":"00112233"}]});
    let get = json!({"tag":"Get","type":"Structure","value":[
        {"tag":"UniqueIdentifier","type":"TextString","value":uid}]});

    // Grant: bob may Get through A's grant; B serves bob from its cache; A withdraws it.
    let mut env = Env {
        now: 1_800_000_000,
        rng: &mut TestRng::new(1),
    };
    ka.grant_access(&mut env, "alice", &uid, "bob", &["get".to_string()])
        .run()
        .unwrap();
    call(&kb, "bob", get.clone()).unwrap();
    call(&kb, "bob", get.clone()).unwrap();
    ka.revoke_access(&mut env, "alice", &uid, "bob", &["get".to_string()])
        .run()
        .unwrap();
    let e = call(&kb, "bob", get.clone()).unwrap_err();
    assert!(
        matches!(&e, KmsError::Kmip(k) if k.reason == ResultReason::ObjectNotFound),
        "{e:?}"
    );

    // Revoke on A: B's next Encrypt is refused.
    let hits = kb.store().cache_stats().unwrap().hits;
    call(&kb, "alice", encrypt.clone()).unwrap();
    call(&kb, "alice", encrypt.clone()).unwrap();
    assert!(
        kb.store().cache_stats().unwrap().hits > hits,
        "B served the key from memory"
    );
    call(
        &ka,
        "alice",
        json!({"tag":"Revoke","type":"Structure","value":[
        {"tag":"UniqueIdentifier","type":"TextString","value":uid},
        {"tag":"RevocationReason","type":"Structure","value":[
            {"tag":"RevocationReasonCode","type":"Enumeration","value":"CessationOfOperation"}]}]}),
    )
    .unwrap();
    let e = call(&kb, "alice", encrypt.clone()).unwrap_err();
    assert!(
        matches!(&e, KmsError::Kmip(k) if k.reason == ResultReason::WrongKeyLifecycleState),
        "{e:?}"
    );

    // Destroy on A: B no longer returns the key material.
    let before = call(&kb, "alice", get.clone()).unwrap().to_string();
    assert!(before.contains("KeyMaterial"), "{before}");
    call(
        &ka,
        "alice",
        json!({"tag":"Destroy","type":"Structure","value":[
        {"tag":"UniqueIdentifier","type":"TextString","value":uid}]}),
    )
    .unwrap();
    let after = call(&kb, "alice", get.clone());
    assert!(
        matches!(&after, Err(KmsError::Kmip(k)) if k.reason == ResultReason::ObjectDestroyed),
        "{after:?}"
    );
}

/// The cache never serves a record older than the rollback floor and never hides a replay:
/// Redis putting back an older record is refused even though a newer one was cached.
#[test]
fn a_cached_record_does_not_hide_a_rollback() {
    let r = common::start();
    let (a, b) = (open(&r), open(&r));
    let key = Sealer::new(&KeySet::derive(&SECRET)).object_key("k");
    a.insert(&rec("k", b"v1", &["owner=alice"])).run().unwrap();
    let old = match r.admin().request(&[b"GET", &key]).run().unwrap() {
        Reply::Bulk(v) => v,
        other => panic!("{other:?}"),
    };
    a.update(&rec("k", b"v2", &["owner=alice"]), Version(1))
        .run()
        .unwrap();
    assert_eq!(b.get("k").run().unwrap().unwrap().1, Version(2));
    assert_eq!(b.get("k").run().unwrap().unwrap().1, Version(2)); // cached
    let reply = r.admin().request(&[b"SET", &key, &old]).run().unwrap();
    assert!(matches!(reply, Reply::Status(_)), "{reply:?}");
    assert_eq!(b.get("k").run().map(|_| ()), Err(ROLLBACK));
    assert_eq!(a.get("k").run().map(|_| ()), Err(ROLLBACK));
}

/// Without invalidation messages there is no cache: a killed tracking connection empties it (the
/// write made meanwhile is read from Redis), and it comes back after the reconnection back-off.
#[test]
fn losing_the_tracking_connection_stops_the_cache_until_it_is_back() {
    let r = common::start();
    let (a, b) = (open(&r), open(&r));
    a.insert(&rec("k", b"v1", &["owner=alice"])).run().unwrap();
    b.get("k").run().unwrap();
    b.get("k").run().unwrap();
    assert_eq!(b.cache_stats().unwrap().len, 1);
    // Kill every subscriber (both stores' tracking connections), then write.
    let killed = r
        .admin()
        .request(&[b"CLIENT", b"KILL", b"TYPE", b"pubsub"])
        .run()
        .unwrap();
    assert_eq!(killed, Reply::Integer(2));
    a.update(&rec("k", b"v2", &["owner=alice"]), Version(1))
        .run()
        .unwrap();
    let (got, v) = b.get("k").run().unwrap().unwrap();
    assert_eq!((got.body.as_slice(), v), (b"v2".as_slice(), Version(2)));
    let s = b.cache_stats().unwrap();
    assert!(!s.live && s.len == 0, "{s:?}");
    // reconnected within a few reads; then cached again
    for _ in 0..4 {
        b.get("k").run().unwrap();
    }
    assert!(b.cache_stats().unwrap().live);
    b.get("k").run().unwrap();
    let hits = b.cache_stats().unwrap().hits;
    b.get("k").run().unwrap();
    assert_eq!(b.cache_stats().unwrap().hits, hits + 1);
    // FLUSHALL: everything goes, and reading finds nothing. Redis queues FLUSHALL's invalidation
    // while it runs the command, so the reply may reach the caller first (unlike a key write in
    // BCAST mode, whose invalidation is sent before the writer's reply in the same event-loop
    // pass); one more round trip on the admin connection waits for that pass to be written out.
    let mut admin = r.admin();
    admin.request(&[b"FLUSHALL"]).run().unwrap();
    assert_eq!(
        admin.request(&[b"PING"]).run().unwrap(),
        Reply::Status(b"PONG".to_vec())
    );
    assert_eq!(b.get("k").run(), Ok(None));
}
