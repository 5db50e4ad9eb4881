//! `RedisFindexStore` against a real redis-server: store semantics, nothing in the clear, wrong
//! secret, faults (kill -9 and restart, CLIENT PAUSE), script cache flush, AUTH/SELECT, many
//! concurrent writers.

mod common;

use base64ct::{Base64Unpadded, Encoding};
use common::{Admin, RedisServer, Run};
use kms::store::{Record, Store, StoreError, Version};
use kms_redis::client::ClientError;
use kms_redis::host::ConnectOptions;
use kms_redis::resp::Reply;
use kms_redis::{ConnectError, OpenError, RedisFindexStore, StdPool};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

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

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn open(r: &RedisServer) -> RedisFindexStore<StdPool> {
    RedisFindexStore::connect(&r.url(), &SECRET, ConnectOptions::default()).expect("connect")
}

#[test]
fn store_semantics() {
    let r = common::start();
    let s = open(&r);
    assert_eq!(
        s.insert(&rec("a", b"A1", &["tag=x", "type=SymmetricKey"]))
            .run(),
        Ok(Version(1))
    );
    assert_eq!(
        s.insert(&rec("b", b"B1", &["tag=x", "tag=y"])).run(),
        Ok(Version(1))
    );
    assert_eq!(
        s.insert(&rec("a", b"again", &[])).run(),
        Err(StoreError::AlreadyExists)
    );
    let (got, v) = s.get("a").run().unwrap().unwrap();
    assert_eq!((got.body.as_slice(), v), (b"A1".as_slice(), Version(1)));
    assert_eq!(got.keywords, kw(&["tag=x", "type=SymmetricKey"]));
    assert!(s.get("missing").run().unwrap().is_none());

    assert_eq!(
        sorted(s.search(&kw(&["tag=x"])).run().unwrap()),
        kw(&["a", "b"])
    );
    assert_eq!(
        s.search(&kw(&["tag=x", "tag=y"])).run().unwrap(),
        kw(&["b"])
    );
    assert_eq!(
        s.search(&kw(&["tag=x", "type=SymmetricKey"]))
            .run()
            .unwrap(),
        kw(&["a"])
    );
    assert!(s.search(&kw(&["tag=nope"])).run().unwrap().is_empty());
    assert_eq!(sorted(s.search(&[]).run().unwrap()), kw(&["a", "b"]));

    // CAS: update at the current version wins once; the stale writer gets Conflict.
    assert_eq!(
        s.update(
            &rec("a", b"A2", &["tag=z", "type=SymmetricKey"]),
            Version(1)
        )
        .run(),
        Ok(Version(2))
    );
    assert_eq!(
        s.update(&rec("a", b"A2'", &["tag=x"]), Version(1)).run(),
        Err(StoreError::Conflict)
    );
    assert_eq!(
        s.update(&rec("zz", b"", &[]), Version(1)).run(),
        Err(StoreError::NotFound)
    );
    assert_eq!(
        s.search(&kw(&["tag=x"])).run().unwrap(),
        kw(&["b"]),
        "re-tag removes the old tag"
    );
    assert_eq!(s.search(&kw(&["tag=z"])).run().unwrap(), kw(&["a"]));
    // tag removed then added back
    assert_eq!(
        s.update(&rec("a", b"A3", &["tag=x"]), Version(2)).run(),
        Ok(Version(3))
    );
    assert_eq!(
        sorted(s.search(&kw(&["tag=x"])).run().unwrap()),
        kw(&["a", "b"])
    );
    assert!(s.search(&kw(&["tag=z"])).run().unwrap().is_empty());

    // delete: CAS on the version; the object disappears from search
    assert_eq!(s.delete("b", Version(7)).run(), Err(StoreError::Conflict));
    assert_eq!(s.delete("b", Version(1)).run(), Ok(()));
    assert_eq!(s.delete("b", Version(1)).run(), Err(StoreError::NotFound));
    assert!(s.get("b").run().unwrap().is_none());
    assert_eq!(s.search(&kw(&["tag=x"])).run().unwrap(), kw(&["a"]));
    assert!(s.search(&kw(&["tag=y"])).run().unwrap().is_empty());
    assert_eq!(s.search(&[]).run().unwrap(), kw(&["a"]));

    // re-insert of a deleted uid: found again, old tags stay gone
    let v = s.insert(&rec("b", b"B2", &["tag=w"])).run().unwrap();
    assert!(v >= Version(1));
    assert_eq!(s.get("b").run().unwrap().unwrap().1, v);
    assert_eq!(s.search(&kw(&["tag=w"])).run().unwrap(), kw(&["b"]));
    assert!(s.search(&kw(&["tag=y"])).run().unwrap().is_empty());
    assert_eq!(
        s.update(&rec("b", b"B3", &["tag=y"]), v).run(),
        Ok(Version(v.0 + 1))
    );
    assert_eq!(s.search(&kw(&["tag=y"])).run().unwrap(), kw(&["b"]));

    // a second store on the same Redis sees everything (shared database)
    let s2 = open(&r);
    assert_eq!(s2.get("a").run().unwrap().unwrap().0.body, b"A3");
}

fn contains_any(hay: &[u8], needles: &[Vec<u8>]) -> Option<usize> {
    needles
        .iter()
        .position(|n| hay.windows(n.len()).any(|w| w == n.as_slice()))
}

#[test]
fn nothing_in_the_clear() {
    let r = common::start();
    let s = open(&r);
    let key_bytes: Vec<u8> = (0u8..32)
        .map(|i| i.wrapping_mul(37).wrapping_add(11))
        .collect();
    let mut needles: Vec<Vec<u8>> = Vec::new();
    for i in 0..20 {
        let tag = format!("SecretTag{i}-Finance");
        let name = format!("PayrollMasterKey{i}");
        let uid = format!("0b5d2f4e-uid-{i:04}");
        let mut body = b"{\"KeyMaterial\":\"".to_vec();
        body.extend_from_slice(&key_bytes);
        body.extend_from_slice(format!("\",\"Name\":\"{name}\"}}").as_bytes());
        let kws = [
            format!("tag={tag}"),
            format!("name={name}"),
            "owner=alice-owner".into(),
            "type=SymmetricKey".into(),
        ];
        let record = Record {
            uid: uid.clone(),
            body,
            keywords: kws.to_vec(),
        };
        let v = s.insert(&record).run().unwrap();
        if i % 2 == 0 {
            let mut r2 = record.clone();
            r2.keywords.push(format!("tag=Retag{i}-Finance"));
            s.update(&r2, v).run().unwrap();
        }
        for t in [tag.as_str(), name.as_str(), uid.as_str()] {
            needles.push(t.as_bytes().to_vec());
            needles.push(hex::encode(t.as_bytes()).into_bytes());
            needles.push(Base64Unpadded::encode_string(t.as_bytes()).into_bytes());
        }
    }
    for n in [
        "alice-owner",
        "SymmetricKey",
        "Finance",
        "KeyMaterial",
        "tag=",
        "owner=",
    ] {
        needles.push(n.as_bytes().to_vec());
        needles.push(Base64Unpadded::encode_string(n.as_bytes()).into_bytes());
        needles.push(hex::encode(n.as_bytes()).into_bytes());
    }
    // key material: raw, hex (both cases), base64, and any 8-byte window of it raw
    needles.push(key_bytes.clone());
    needles.push(hex::encode(&key_bytes).into_bytes());
    needles.push(hex::encode_upper(&key_bytes).into_bytes());
    needles.push(Base64Unpadded::encode_string(&key_bytes).into_bytes());
    for w in key_bytes.windows(8) {
        needles.push(w.to_vec());
    }
    // sanity: the search still works, so the data is there
    assert_eq!(
        s.search(&kw(&["tag=SecretTag3-Finance"])).run().unwrap(),
        kw(&["0b5d2f4e-uid-0003"])
    );
    let dump = r.dump();
    assert!(
        dump.len() > 40,
        "expected objects and index words, got {}",
        dump.len()
    );
    for (k, v) in &dump {
        if let Some(i) = contains_any(k, &needles) {
            panic!(
                "key {:?} contains needle {:?}",
                String::from_utf8_lossy(k),
                String::from_utf8_lossy(&needles[i])
            );
        }
        if let Some(i) = contains_any(v, &needles) {
            panic!(
                "value of {:?} contains needle {:?}",
                String::from_utf8_lossy(k),
                String::from_utf8_lossy(&needles[i])
            );
        }
    }
    // The AOF file is what Redis writes to disk: same check on it.
    let mut aof = Vec::new();
    collect_files(r.dir(), &mut aof);
    assert!(!aof.is_empty());
    if let Some(i) = contains_any(&aof, &needles) {
        panic!(
            "AOF contains needle {:?}",
            String::from_utf8_lossy(&needles[i])
        );
    }
}

fn collect_files(dir: &std::path::Path, out: &mut Vec<u8>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            collect_files(&p, out);
        } else if p.file_name().is_some_and(|n| n != "redis.log") {
            out.extend(std::fs::read(&p).unwrap());
        }
    }
}

#[test]
fn wrong_secret_is_refused() {
    let r = common::start();
    let s = open(&r);
    s.insert(&rec("k", b"v", &["tag=t"])).run().unwrap();
    drop(s);
    let other = [0x43u8; 32];
    match RedisFindexStore::connect(&r.url(), &other, ConnectOptions::default()) {
        Err(ConnectError::Open(OpenError::WrongSecret)) => {}
        other => panic!("expected WrongSecret, got {:?}", other.map(|_| ())),
    }
    let msg = ConnectError::Open(OpenError::WrongSecret).to_string();
    assert!(msg.contains("different database secret"), "{msg}");
    // same secret still works and finds the data
    assert_eq!(open(&r).search(&kw(&["tag=t"])).run().unwrap(), kw(&["k"]));
}

#[test]
fn unreachable_redis_is_a_clear_error() {
    let port = testkit::free_port();
    let opts = ConnectOptions {
        connect_timeout: Duration::from_millis(500),
        ..Default::default()
    };
    let e =
        RedisFindexStore::connect(&format!("redis://127.0.0.1:{port}"), &SECRET, opts).unwrap_err();
    assert!(
        matches!(
            e,
            ConnectError::Open(OpenError::Unavailable(ClientError::Connect(_)))
        ),
        "{e}"
    );
    assert!(e.to_string().contains("cannot connect to Redis"), "{e}");
    assert!(matches!(
        RedisFindexStore::connect("redis://127.0.0.1:0", &SECRET, opts),
        Err(ConnectError::Url(_))
    ));
}

#[test]
fn reconnects_after_kill9_and_keeps_acknowledged_writes() {
    let mut r = common::start();
    let opts = ConnectOptions {
        io_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(1),
        ..Default::default()
    };
    let s = RedisFindexStore::connect(&r.url(), &SECRET, opts).unwrap();
    let mut acked = Vec::new();
    for i in 0..50 {
        let uid = format!("obj-{i}");
        s.insert(&rec(&uid, format!("body{i}").as_bytes(), &["tag=durable"]))
            .run()
            .unwrap();
        acked.push(uid);
    }
    r.kill9();
    // During the outage: clean storage errors, no hang.
    for i in 0..3 {
        match s.get(&format!("obj-{i}")).run() {
            Err(StoreError::Unavailable(m)) => assert!(m.contains("Redis"), "{m}"),
            other => panic!("expected Unavailable, got {other:?}"),
        }
        assert!(matches!(
            s.insert(&rec("during", b"x", &["tag=durable"])).run(),
            Err(StoreError::Unavailable(_))
        ));
    }
    r.restart();
    // Same store object: reconnects by itself; every acknowledged write is there.
    for (i, uid) in acked.iter().enumerate() {
        let (got, _) = s.get(uid).run().unwrap().expect("acknowledged write lost");
        assert_eq!(got.body, format!("body{i}").as_bytes());
    }
    assert_eq!(
        sorted(s.search(&kw(&["tag=durable"])).run().unwrap()),
        sorted(acked.clone())
    );
    s.insert(&rec("after", b"y", &["tag=durable"]))
        .run()
        .unwrap();
}

#[test]
fn client_pause_times_out_cleanly() {
    let r = common::start();
    let opts = ConnectOptions {
        io_timeout: Duration::from_millis(400),
        ..Default::default()
    };
    let s = RedisFindexStore::connect(&r.url(), &SECRET, opts).unwrap();
    s.insert(&rec("p", b"v", &["tag=p"])).run().unwrap();
    let mut admin = r.admin();
    assert!(matches!(
        admin
            .request(&[b"CLIENT", b"PAUSE", b"3000", b"ALL"])
            .run()
            .unwrap(),
        Reply::Status(_)
    ));
    let e = s.get("p").run().unwrap_err();
    assert_eq!(e, StoreError::Unavailable("Redis did not answer in time"));
    let e = s
        .update(&rec("p", b"w", &["tag=q"]), Version(1))
        .run()
        .unwrap_err();
    assert_eq!(e, StoreError::Unavailable("Redis did not answer in time"));
    admin.request(&[b"CLIENT", b"UNPAUSE"]).run().unwrap();
    // After the stall the store works again (new connections; the stale replies are discarded).
    assert_eq!(s.get("p").run().unwrap().unwrap().0.body, b"v");
    assert_eq!(
        s.update(&rec("p", b"w", &["tag=q"]), Version(1)).run(),
        Ok(Version(2))
    );
}

#[test]
fn script_cache_flush_is_survived() {
    let r = common::start();
    let s = open(&r);
    s.insert(&rec("a", b"1", &["tag=a"])).run().unwrap();
    r.admin().request(&[b"SCRIPT", b"FLUSH"]).run().unwrap();
    // EVALSHA answers NOSCRIPT: the client reloads and retries.
    assert_eq!(
        s.update(&rec("a", b"2", &["tag=b"]), Version(1)).run(),
        Ok(Version(2))
    );
    assert_eq!(s.search(&kw(&["tag=b"])).run().unwrap(), kw(&["a"]));
}

#[test]
fn auth_and_select_from_url() {
    let r = RedisServer::builder().password("s3cret-pw").start();
    let bad = RedisFindexStore::connect(
        &format!("redis://:wrong@127.0.0.1:{}/2", r.port()),
        &SECRET,
        ConnectOptions::default(),
    );
    match bad {
        Err(e @ ConnectError::Open(OpenError::Unavailable(ClientError::Auth))) => {
            assert!(e.to_string().contains("AUTH"), "{e}")
        }
        other => panic!("expected AUTH refused, got {:?}", other.map(|_| ())),
    }
    let url = format!("redis://default:s3cret-pw@127.0.0.1:{}/2", r.port());
    let s = RedisFindexStore::connect(&url, &SECRET, ConnectOptions::default()).unwrap();
    assert!(
        s.cache_stats().unwrap().live,
        "the ACL allows the cache's tracking connection"
    );
    s.insert(&rec("a", b"1", &["tag=a"])).run().unwrap();
    // Everything went to database 2.
    let mut admin = kms_redis::client::Client::new(
        kms_redis::host::TcpTransport {
            connect_timeout: Duration::from_secs(2),
            io_timeout: Duration::from_secs(2),
        },
        kms_redis::url::RedisUrl::parse(&format!("redis://:s3cret-pw@127.0.0.1:{}", r.port()))
            .unwrap(),
        Default::default(),
    );
    assert_eq!(
        admin.request(&[b"DBSIZE"]).run().unwrap(),
        Reply::Integer(0)
    );
    admin.request(&[b"SELECT", b"2"]).run().unwrap();
    assert!(matches!(admin.request(&[b"DBSIZE"]).run().unwrap(), Reply::Integer(n) if n > 2));
}

#[test]
fn round_trips_per_operation() {
    let r = common::start();
    let s = open(&r);
    s.insert(&rec("a", b"1", &["tag=a", "tag=b", "tag=c", "type=T"]))
        .run()
        .unwrap();
    let rt = |f: &dyn Fn()| {
        let before = s.pool().stats().1;
        f();
        s.pool().stats().1 - before
    };
    assert_eq!(rt(&|| drop(s.get("a").run().unwrap())), 1, "get = one GET");
    assert_eq!(
        rt(&|| drop(s.get("a").run().unwrap())),
        0,
        "then from the cache"
    );
    assert_eq!(
        rt(&|| drop(
            s.search_each(&kw(&["tag=a"]), &kw(&["tag=b", "type=T"]))
                .run()
                .unwrap()
        )),
        2,
        "a disjunction is one search; its candidate is cached: headers, values"
    );
    assert_eq!(
        rt(&|| drop(s.search(&kw(&["tag=a", "tag=b", "tag=c"])).run().unwrap())),
        2,
        "constant in the tag count"
    );
    assert_eq!(
        rt(&|| {
            let _ = s
                .insert(&rec("b", b"1", &["tag=a", "tag=b"]))
                .run()
                .unwrap();
        }),
        3,
        "insert = headers, guarded writes, CAS"
    );
    assert_eq!(
        rt(&|| {
            let _ = s
                .update(&rec("b", b"2", &["tag=a", "tag=b"]), Version(1))
                .run()
                .unwrap();
        }),
        2,
        "same keywords: GET + CAS"
    );
    // "b" was just written: not in the cache.
    assert_eq!(
        rt(&|| assert_eq!(s.search(&kw(&["tag=a"])).run().unwrap(), kw(&["a", "b"]))),
        3,
        "search = headers, values, objects not in the cache"
    );
    assert_eq!(
        rt(&|| assert_eq!(s.search(&kw(&["tag=a"])).run().unwrap(), kw(&["a", "b"]))),
        2,
        "the search filled the cache"
    );
    assert_eq!(
        rt(&|| drop(s.get("b").run().unwrap())),
        0,
        "and get uses it"
    );
}

/// `search_each` answers each alternative as `search` would, in one pass.
#[test]
fn search_each_matches_one_search_per_alternative() {
    let r = common::start();
    let s = open(&r);
    let objects: [(&str, &[&str]); 6] = [
        ("a1", &["owner=alice", "type=K", "tag=x"]),
        ("a2", &["owner=alice", "type=K"]),
        ("b1", &["owner=bob", "type=K", "grant=alice", "tag=x"]),
        ("b2", &["owner=bob", "type=P", "grant=alice"]),
        ("b3", &["owner=bob", "type=K", "tag=x"]),
        ("c1", &["owner=carol", "grant=alice", "grant=bob", "type=K"]),
    ];
    for (uid, k) in objects {
        s.insert(&rec(uid, b"o", k)).run().unwrap();
    }
    let who = kw(&["owner=alice", "grant=alice", "owner=nobody"]);
    for all_of in [
        kw(&[]),
        kw(&["type=K"]),
        kw(&["type=K", "tag=x"]),
        kw(&["tag=none"]),
    ] {
        let each = s.search_each(&all_of, &who).run().unwrap();
        let one: Vec<Vec<String>> = who
            .iter()
            .map(|w| {
                let mut q = all_of.clone();
                q.push(w.clone());
                s.search(&q).run().unwrap()
            })
            .collect();
        assert_eq!(each, one, "{all_of:?}");
    }
    assert_eq!(
        s.search_each(&kw(&["type=K"]), &who).run().unwrap(),
        vec![kw(&["a1", "a2"]), kw(&["b1", "c1"]), kw(&[])]
    );
    assert_eq!(s.search_each(&kw(&["type=K"]), &[]).run(), Ok(vec![]));
}

#[test]
fn concurrent_writers_lose_no_update() {
    let r = common::start();
    let s = Arc::new(open(&r));
    const THREADS: usize = 16;
    const PER: usize = 20;
    s.insert(&rec("counter", &0u64.to_be_bytes(), &["tag=shared"]))
        .run()
        .unwrap();
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let s = Arc::clone(&s);
            std::thread::spawn(move || {
                let mut mine = BTreeSet::new();
                for i in 0..PER {
                    // each thread creates its own objects, all under one hot tag
                    let uid = format!("t{t}-o{i}");
                    s.insert(&rec(&uid, b"x", &["tag=shared", &format!("tag=thread{t}")]))
                        .run()
                        .unwrap();
                    mine.insert(uid);
                    // and increments the shared counter with a CAS retry loop
                    loop {
                        let (cur, v) = s.get("counter").run().unwrap().unwrap();
                        let n = u64::from_be_bytes(cur.body[..8].try_into().unwrap()) + 1;
                        match s
                            .update(&rec("counter", &n.to_be_bytes(), &["tag=shared"]), v)
                            .run()
                        {
                            Ok(_) => break,
                            Err(StoreError::Conflict) => continue,
                            Err(e) => panic!("{e:?}"),
                        }
                    }
                }
                // re-tag half of them
                for i in (0..PER).step_by(2) {
                    let uid = format!("t{t}-o{i}");
                    let (_, v) = s.get(&uid).run().unwrap().unwrap();
                    s.update(&rec(&uid, b"y", &["tag=shared", "tag=retagged"]), v)
                        .run()
                        .unwrap();
                }
                mine
            })
        })
        .collect();
    let mut all: BTreeSet<String> = BTreeSet::new();
    for h in handles {
        all.extend(h.join().unwrap());
    }
    let (c, _) = s.get("counter").run().unwrap().unwrap();
    assert_eq!(
        u64::from_be_bytes(c.body[..8].try_into().unwrap()),
        (THREADS * PER) as u64
    );
    let mut expected_shared: BTreeSet<String> = all.clone();
    expected_shared.insert("counter".into());
    assert_eq!(
        s.search(&kw(&["tag=shared"]))
            .run()
            .unwrap()
            .into_iter()
            .collect::<BTreeSet<_>>(),
        expected_shared
    );
    let retagged: BTreeSet<String> = all
        .iter()
        .filter(|u| u.rsplit('o').next().unwrap().parse::<usize>().unwrap() % 2 == 0)
        .cloned()
        .collect();
    assert_eq!(
        s.search(&kw(&["tag=retagged"]))
            .run()
            .unwrap()
            .into_iter()
            .collect::<BTreeSet<_>>(),
        retagged
    );
    for t in 0..THREADS {
        let expect: BTreeSet<String> = (1..PER).step_by(2).map(|i| format!("t{t}-o{i}")).collect();
        assert_eq!(
            s.search(&kw(&[&format!("tag=thread{t}")]))
                .run()
                .unwrap()
                .into_iter()
                .collect::<BTreeSet<_>>(),
            expect
        );
    }
}

#[test]
fn least_privilege_acl_user_from_the_docs_is_enough() {
    // The ACL line recommended in docs/security.md.
    let acl = "kms on >kms-pw ~kms:* &__redis__:invalidate +get +set +mget +scan +evalsha +script|load +select +client|id +client|tracking +subscribe";
    let r = RedisServer::builder().acl_user(acl).start();
    let url = format!("redis://kms:kms-pw@127.0.0.1:{}/0", r.port());
    let s = RedisFindexStore::connect(&url, &SECRET, ConnectOptions::default()).unwrap();
    assert!(
        s.cache_stats().unwrap().live,
        "the ACL allows the cache's tracking connection"
    );
    s.insert(&rec("a", b"1", &["tag=a"])).run().unwrap();
    let (_, v) = s.get("a").run().unwrap().unwrap();
    s.update(&rec("a", b"2", &["tag=b"]), v).run().unwrap();
    assert_eq!(s.search(&kw(&["tag=b"])).run().unwrap(), kw(&["a"]));
    assert_eq!(s.search(&[]).run().unwrap(), kw(&["a"]));
    s.delete("a", Version(2)).run().unwrap();
    assert!(s.search(&kw(&["tag=b"])).run().unwrap().is_empty());
    // The ACL of earlier releases (no CLIENT TRACKING): the store works, without its cache.
    let old = "kms on >kms-pw ~kms:* +get +set +mget +scan +evalsha +script|load +select";
    let r = RedisServer::builder().acl_user(old).start();
    let url = format!("redis://kms:kms-pw@127.0.0.1:{}/0", r.port());
    let s = RedisFindexStore::connect(&url, &SECRET, ConnectOptions::default()).unwrap();
    s.insert(&rec("a", b"1", &["tag=a"])).run().unwrap();
    assert_eq!(s.get("a").run().unwrap().unwrap().1, Version(1));
    assert_eq!(s.get("a").run().unwrap().unwrap().1, Version(1));
    let c = s.cache_stats().unwrap();
    assert!(!c.live && c.hits == 0 && c.len == 0, "{c:?}");
}

#[test]
fn search_with_a_hot_keyword_uses_the_small_list_and_rechecks_records() {
    let r = common::start();
    let s = open(&r);
    for i in 0..150 {
        s.insert(&rec(
            &format!("hot-{i}"),
            b"x",
            &["owner=hot", "type=SymmetricKey"],
        ))
        .run()
        .unwrap();
    }
    s.insert(&rec(
        "rare-hot",
        b"x",
        &["owner=hot", "tag=rare", "type=SymmetricKey"],
    ))
    .run()
    .unwrap();
    s.insert(&rec(
        "rare-cold",
        b"x",
        &["owner=cold", "tag=rare", "type=SymmetricKey"],
    ))
    .run()
    .unwrap();
    assert_eq!(
        s.search(&kw(&["tag=rare", "owner=hot"])).run().unwrap(),
        kw(&["rare-hot"])
    );
    assert_eq!(
        s.search(&kw(&["owner=hot", "tag=rare", "type=SymmetricKey"]))
            .run()
            .unwrap(),
        kw(&["rare-hot"])
    );
    assert_eq!(
        s.search(&kw(&["owner=cold", "tag=rare"])).run().unwrap(),
        kw(&["rare-cold"])
    );
    assert!(
        s.search(&kw(&["owner=nobody", "tag=rare"]))
            .run()
            .unwrap()
            .is_empty()
    );
    assert_eq!(s.search(&kw(&["owner=hot"])).run().unwrap().len(), 151);
    // An empty list answers after reading the headers alone.
    let before = s.pool().stats().1;
    assert!(
        s.search(&kw(&["grant=nobody", "owner=hot"]))
            .run()
            .unwrap()
            .is_empty()
    );
    assert_eq!(s.pool().stats().1 - before, 1);
    // The rare object loses owner=hot: the small list still names it, the record check drops it.
    let (_, v) = s.get("rare-hot").run().unwrap().unwrap();
    s.update(&rec("rare-hot", b"x", &["owner=cold", "tag=rare"]), v)
        .run()
        .unwrap();
    assert!(
        s.search(&kw(&["tag=rare", "owner=hot"]))
            .run()
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        sorted(s.search(&kw(&["tag=rare", "owner=cold"])).run().unwrap()),
        kw(&["rare-cold", "rare-hot"])
    );
}

#[test]
fn kill9_during_concurrent_load_keeps_every_acknowledged_write() {
    let mut r = common::start();
    let opts = ConnectOptions {
        io_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_millis(500),
        ..Default::default()
    };
    let s = Arc::new(RedisFindexStore::connect(&r.url(), &SECRET, opts).unwrap());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..8)
        .map(|t| {
            let (s, stop) = (Arc::clone(&s), Arc::clone(&stop));
            std::thread::spawn(move || {
                let (mut acked, mut failed) = (Vec::new(), 0usize);
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let uid = format!("w{t}-{i}");
                    i += 1;
                    match s
                        .insert(&rec(
                            &uid,
                            uid.as_bytes(),
                            &["tag=load", &format!("tag=w{t}")],
                        ))
                        .run()
                    {
                        Ok(_) => acked.push(uid),
                        Err(StoreError::Unavailable(_)) => failed += 1,
                        Err(e) => panic!("unexpected error during the outage: {e:?}"),
                    }
                }
                (acked, failed)
            })
        })
        .collect();
    // Let the load run until some writes are acknowledged, then kill -9 in the middle of it.
    while s
        .search(&kw(&["tag=load"]))
        .run()
        .map(|v| v.len())
        .unwrap_or(0)
        < 40
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    r.kill9();
    std::thread::sleep(Duration::from_millis(300));
    r.restart();
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut acked = BTreeSet::new();
    let mut failed = 0;
    for w in workers {
        let (a, f) = w.join().unwrap();
        acked.extend(a);
        failed += f;
    }
    assert!(failed > 0, "the outage should have failed some requests");
    // Every acknowledged insert is present and findable; nothing half-written is visible.
    let found: BTreeSet<String> = s
        .search(&kw(&["tag=load"]))
        .run()
        .unwrap()
        .into_iter()
        .collect();
    for uid in &acked {
        let (got, _) = s
            .get(uid)
            .run()
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged {uid} lost"));
        assert_eq!(got.body, uid.as_bytes());
        assert!(found.contains(uid), "{uid} not found by tag");
    }
    for uid in &found {
        assert!(s.get(uid).run().unwrap().is_some());
    }
}
