//! Store benchmark: Create, Get, Encrypt, Locate (1 and 3 tags) at concurrency 1 and 16, on the
//! Redis-with-Findex store and on the in-memory store, with Redis commands and round trips per
//! operation. Run by `scripts/bench-redis` (which also starts Redis and runs redis-benchmark).
//!
//! `cargo run --release -p kms-redis --features std --example bench -- --redis-url URL [--ops N]`
//!
//! Level: the `kms::store::Store` API in process (what every KMIP operation reduces to):
//! Create = `insert` of a record with 6 keywords (tag, type, alg, state, owner, name),
//! Get = `get`, Encrypt = `get` + AES-256-GCM-SIV over 64 bytes with the key from the record,
//! Locate = `search` (1 tag; 3 tags).

use aes_gcm_siv::aead::{Aead, Payload};
use aes_gcm_siv::{Aes256GcmSiv, KeyInit, Nonce};
use kms::store::memory::MemoryStore;
use kms::store::{Record, Store};
use kms_redis::host::ConnectOptions;
use kms_redis::resp::Reply;
use kms_redis::{RedisFindexStore, StdPool};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

const SECRET: [u8; 32] = [0x5a; 32];

fn record(i: usize, prefix: &str) -> Record {
    let mut body = vec![0u8; 200];
    for (j, b) in body.iter_mut().enumerate() {
        *b = (i.wrapping_mul(31) ^ j) as u8;
    }
    Record {
        uid: format!("{prefix}-{i:08}"),
        body,
        keywords: vec![
            format!("tag=u{prefix}{i}"),
            format!("tag=grp{}", i % 100),
            format!("tag=kind{}", i % 10),
            "type=SymmetricKey".into(),
            "alg=AES".into(),
            "state=Active".into(),
            "owner=bench".into(),
        ],
    }
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Create,
    Get,
    Encrypt,
    Locate1,
    Locate3,
}

fn run_op<S: Store>(s: &S, op: Op, i: usize, prefix: &str, preloaded: usize) {
    match op {
        Op::Create => {
            s.insert(&record(i, prefix)).expect("insert");
        }
        Op::Get => {
            s.get(&format!("pre-{:08}", i % preloaded)).expect("get").expect("exists");
        }
        Op::Encrypt => {
            let (r, _) = s.get(&format!("pre-{:08}", i % preloaded)).expect("get").expect("exists");
            let key: [u8; 32] = r.body[..32].try_into().expect("32 bytes");
            let c = Aes256GcmSiv::new(&key.into());
            let ct = c.encrypt(&Nonce::from([1u8; 12]), Payload { msg: &[7u8; 64], aad: b"" }).expect("encrypt");
            std::hint::black_box(ct);
        }
        Op::Locate1 => {
            let n = i % preloaded;
            let hits = s.search(&[format!("tag=upre{n}")]).expect("search");
            assert_eq!(hits.len(), 1);
        }
        Op::Locate3 => {
            let n = i % preloaded;
            let q = [format!("tag=upre{n}"), format!("tag=grp{}", n % 100), format!("tag=kind{}", n % 10)];
            let hits = s.search(&q).expect("search");
            assert_eq!(hits.len(), 1);
        }
    }
}

fn measure<S: Store + 'static>(s: Arc<S>, op: Op, conc: usize, ops: usize, tag: &str, preloaded: usize) -> f64 {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let hs: Vec<_> = (0..conc)
        .map(|_| {
            let (s, next, tag) = (Arc::clone(&s), Arc::clone(&next), tag.to_string());
            std::thread::spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= ops {
                        break;
                    }
                    run_op(&*s, op, i, &tag, preloaded);
                }
            })
        })
        .collect();
    for h in hs {
        h.join().expect("worker");
    }
    ops as f64 / start.elapsed().as_secs_f64()
}

fn commandstats(url: &str) -> BTreeMap<String, u64> {
    let t = kms_redis::host::TcpTransport {
        connect_timeout: std::time::Duration::from_secs(3),
        io_timeout: std::time::Duration::from_secs(10),
    };
    let mut c = kms_redis::client::Client::new(t, kms_redis::url::RedisUrl::parse(url).expect("url"), Default::default());
    let Reply::Bulk(text) = c.request(&[b"INFO", b"commandstats"]).expect("INFO") else { panic!("INFO reply") };
    let mut out = BTreeMap::new();
    for line in String::from_utf8_lossy(&text).lines() {
        if let Some(rest) = line.strip_prefix("cmdstat_") {
            let (name, stats) = rest.split_once(':').unwrap_or((rest, ""));
            if let Some(calls) = stats.split(',').find_map(|kv| kv.strip_prefix("calls=")) {
                out.insert(name.to_string(), calls.parse().unwrap_or(0));
            }
        }
    }
    out
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let get = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    let url = get("--redis-url").expect("--redis-url redis://127.0.0.1:PORT");
    let ops: usize = get("--ops").map(|s| s.parse().expect("--ops N")).unwrap_or(2000);
    let preloaded = 1000;

    let redis = Arc::new(RedisFindexStore::connect(&url, &SECRET, ConnectOptions::default()).expect("connect"));
    let memory = Arc::new(MemoryStore::new());
    for i in 0..preloaded {
        redis.insert(&record(i, "pre")).expect("preload");
        memory.insert(&record(i, "pre")).expect("preload");
    }
    println!("Store-level benchmark ({ops} ops per cell, {preloaded} preloaded objects; ops/s)");
    println!(
        "{:<10} {:>5} {:>12} {:>12} {:>8} {:>10} {:>10}  redis commands per op",
        "op", "conc", "memory", "redis", "ratio", "rtt/op", "cmds/op"
    );
    let all = [Op::Create, Op::Get, Op::Encrypt, Op::Locate1, Op::Locate3];
    let mut round = 0;
    for conc in [1usize, 16] {
        for op in all {
            round += 1;
            let tag = format!("c{conc}r{round}");
            let m = measure(Arc::clone(&memory), op, conc, ops, &tag, preloaded);
            let before = commandstats(&url);
            let rtt_before = redis.pool().stats().1;
            let r = measure(Arc::clone(&redis), op, conc, ops, &tag, preloaded);
            let rtt = (redis.pool().stats().1 - rtt_before) as f64 / ops as f64;
            let after = commandstats(&url);
            let mut per: Vec<String> = Vec::new();
            let mut total = 0u64;
            for (k, v) in &after {
                let d = v - before.get(k).copied().unwrap_or(0);
                if k == "info" || d == 0 {
                    continue;
                }
                total += d;
                per.push(format!("{k}={:.2}", d as f64 / ops as f64));
            }
            println!(
                "{:<10} {:>5} {:>12.0} {:>12.0} {:>8.1} {:>10.2} {:>10.2}  {}",
                format!("{op:?}"),
                conc,
                m,
                r,
                m / r,
                rtt,
                total as f64 / ops as f64,
                per.join(" ")
            );
        }
    }
    let _: Option<&StdPool> = None;
}
