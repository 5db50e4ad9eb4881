//! The security review's database items (issue 12), each against a real redis-server: a shared
//! index list filled by one user must not block the others (medium #6), Redis replaying older
//! states must be refused (medium #8), and a deleted canary must not disable the wrong-secret
//! check (low).

mod common;

use common::Run;
use kms::store::{Record, Store, StoreError, Version};
use kms_redis::host::ConnectOptions;
use kms_redis::{RedisFindexStore, StdPool, StoreOptions};

const SECRET: [u8; 32] = [0x42; 32];

fn rec(uid: &str, body: &[u8], kws: &[&str]) -> Record {
    Record {
        uid: uid.into(),
        body: body.to_vec(),
        keywords: kws.iter().map(|s| s.to_string()).collect(),
    }
}

fn kw(k: &[&str]) -> Vec<String> {
    k.iter().map(|s| s.to_string()).collect()
}

fn open_with(r: &common::RedisServer, store: StoreOptions) -> RedisFindexStore<StdPool> {
    let opts = ConnectOptions {
        store,
        ..Default::default()
    };
    RedisFindexStore::connect(&r.url(), &SECRET, opts).expect("connect")
}

/// Medium #6: `type=SymmetricKey` and `state=Active` are shared by every user. One user creating
/// more keys than the list limit (lowered here to 32 words so that the test is fast; 2^20 in
/// production) used to make every later Create, Revoke and Destroy fail for everyone.
#[test]
fn one_user_filling_a_shared_list_does_not_block_another() {
    let r = common::start();
    let limit = 32u64;
    let s = open_with(
        &r,
        StoreOptions {
            max_read_words: limit,
            ..Default::default()
        },
    );
    let shared = ["type=SymmetricKey", "state=Active"];
    for i in 0..3 * limit {
        let uid = format!("mallory-{i:04}");
        let v = s
            .insert(&rec(&uid, b"k", &[shared[0], shared[1], "owner=mallory"]))
            .run();
        assert_eq!(v, Ok(Version(1)), "mallory's Create {i}");
    }
    // alice: Create, Revoke (state change), Locate, Destroy all work
    let a = ["type=SymmetricKey", "state=Active", "owner=alice"];
    assert_eq!(s.insert(&rec("alice-1", b"A", &a)).run(), Ok(Version(1)));
    let revoked = ["type=SymmetricKey", "state=Deactivated", "owner=alice"];
    assert_eq!(
        s.update(&rec("alice-1", b"A", &revoked), Version(1)).run(),
        Ok(Version(2))
    );
    assert_eq!(
        s.search(&kw(&["owner=alice", "type=SymmetricKey"])).run(),
        Ok(kw(&["alice-1"]))
    );
    assert_eq!(s.delete("alice-1", Version(2)).run(), Ok(()));
    assert_eq!(s.search(&kw(&["owner=alice"])).run(), Ok(vec![]));
    // Only a query whose every list is longer than the read limit is refused, with its own
    // error (mallory's unfiltered listing of her own keys); it blocks nobody else.
    assert_eq!(
        s.search(&kw(&["owner=mallory"])).run(),
        Err(StoreError::Backend(
            "index list too long to read: add a narrower keyword to the query"
        ))
    );
    // a second server on the same Redis is not blocked either
    let s2 = open_with(&r, StoreOptions::default());
    assert_eq!(s2.insert(&rec("bob-1", b"B", &shared)).run(), Ok(Version(1)));
    assert_eq!(
        s2.search(&kw(&["owner=mallory"])).run().map(|v| v.len()),
        Ok(3 * limit as usize)
    );
}
