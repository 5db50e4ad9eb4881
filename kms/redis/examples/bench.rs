//! Benchmark of the Redis-with-Findex store next to the in-memory store: Create, Get, Encrypt,
//! Locate (1 and 3 tags) at concurrency 1 and 16, with Redis commands (`INFO commandstats`) and
//! request round trips (the client's own counter) per operation. Run by `scripts/bench-redis`,
//! which also starts Redis and runs `redis-benchmark` SET/GET on it.
//!
//! `cargo run --release -p kms-redis --features std --example bench -- --redis-url URL [--ops N]`
//!
//! Two levels, both in process (no HTTP/TLS, so the numbers isolate the store):
//! - **KMS**: KMIP JSON through `kms::Kms::kmip_json` (what the server runs per request):
//!   Create AES-256 with 3 tags, Get, Encrypt 64 bytes (AES-GCM), Locate by 1 and by 3 tags.
//! - **store**: the `kms::store::Store` calls those operations reduce to.

use kms::crypto::{Random, RngError};
use kms::store::memory::MemoryStore;
use kms::store::{Record, Store};
use kms::{Env, Kms, KmsConfig};
use kms_redis::host::ConnectOptions;
use kms_redis::resp::Reply;
use kms_redis::{RedisFindexStore, StdPool};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// Runs a future to completion (the host transport blocks inside its futures).
trait Run: std::future::Future + Sized {
    fn run(self) -> Self::Output {
        kms::block_on(self, || {})
    }
}
impl<F: std::future::Future> Run for F {}

const SECRET: [u8; 32] = [0x5a; 32];
const PRELOADED: usize = 1000;

struct OsRng;
impl Random for OsRng {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), RngError> {
        getrandom::fill(buf).map_err(|_| RngError)
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

trait Driver: Send + Sync + 'static {
    fn run(&self, op: Op, i: usize, prefix: &str);
}

// ---------------------------------------------------------------- KMS level

fn tag_attr(tags: &[String]) -> Value {
    let j = serde_json::to_string(tags).expect("json");
    json!({"tag":"VendorAttributes","type":"Structure","value":[
        {"tag":"VendorAttributes","type":"Structure","value":[
            {"tag":"VendorIdentification","type":"TextString","value":"cosmian"},
            {"tag":"AttributeName","type":"TextString","value":"tag"},
            {"tag":"AttributeValue","type":"ByteString","value":hex::encode_upper(j.as_bytes())}]}]})
}

fn tags(prefix: &str, i: usize) -> [String; 3] {
    [
        format!("u-{prefix}-{i}"),
        format!("grp{}", i % 100),
        format!("kind{}", i % 10),
    ]
}

struct KmsDriver<S: Store> {
    kms: Kms<S>,
    uids: Vec<String>,
}

impl<S: Store + 'static> KmsDriver<S> {
    fn call(&self, req: &Value) -> Value {
        let mut rng = OsRng;
        let mut env = Env {
            now: 1_800_000_000,
            rng: &mut rng,
        };
        match self
            .kms
            .kmip_json(&mut env, "bench", req.to_string().as_bytes())
            .run()
        {
            Ok(out) => serde_json::from_slice(&out).expect("JSON response"),
            Err(e) => panic!("{req}: {e}"),
        }
    }

    fn create(&self, t: &[String]) -> String {
        let r = self.call(&json!({"tag":"Create","type":"Structure","value":[
            {"tag":"ObjectType","type":"Enumeration","value":"SymmetricKey"},
            {"tag":"Attributes","type":"Structure","value":[
                {"tag":"CryptographicAlgorithm","type":"Enumeration","value":"AES"},
                {"tag":"CryptographicLength","type":"Integer","value":256},
                {"tag":"CryptographicUsageMask","type":"Integer","value":2108},
                {"tag":"KeyFormatType","type":"Enumeration","value":"TransparentSymmetricKey"},
                {"tag":"ActivationDate","type":"DateTime","value":"2024-01-01T00:00:00Z"},
                tag_attr(t)]}]}));
        r["value"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["tag"] == "UniqueIdentifier"))
            .and_then(|c| c["value"].as_str())
            .expect("uid")
            .to_string()
    }

    fn new(store: S) -> Self {
        let mut d = KmsDriver {
            kms: Kms::new(store, KmsConfig::default()),
            uids: Vec::new(),
        };
        d.uids = (0..PRELOADED).map(|i| d.create(&tags("pre", i))).collect();
        d
    }

    fn located(&self, t: &[String]) -> usize {
        let r = self.call(&json!({"tag":"Locate","type":"Structure","value":[
            {"tag":"Attributes","type":"Structure","value":[tag_attr(t)]}]}));
        r["value"]
            .as_array()
            .map(|a| a.iter().filter(|c| c["tag"] == "UniqueIdentifier").count())
            .unwrap_or(0)
    }
}

impl<S: Store + Send + Sync + 'static> Driver for KmsDriver<S> {
    fn run(&self, op: Op, i: usize, prefix: &str) {
        let uid = &self.uids[i % PRELOADED];
        match op {
            Op::Create => {
                self.create(&tags(prefix, i));
            }
            Op::Get => {
                self.call(&json!({"tag":"Get","type":"Structure","value":[
                    {"tag":"UniqueIdentifier","type":"TextString","value":uid}]}));
            }
            Op::Encrypt => {
                self.call(&json!({"tag":"Encrypt","type":"Structure","value":[
                    {"tag":"UniqueIdentifier","type":"TextString","value":uid},
                    {"tag":"CryptographicParameters","type":"Structure","value":[
                        {"tag":"BlockCipherMode","type":"Enumeration","value":"GCM"},
                        {"tag":"CryptographicAlgorithm","type":"Enumeration","value":"AES"}]},
                    {"tag":"Data","type":"ByteString","value":hex::encode_upper([7u8; 64])}]}));
            }
            Op::Locate1 => assert_eq!(self.located(&tags("pre", i % PRELOADED)[..1]), 1),
            Op::Locate3 => assert_eq!(self.located(&tags("pre", i % PRELOADED)), 1),
        }
    }
}

// ---------------------------------------------------------------- store level

struct StoreDriver<S: Store>(S);

fn record(i: usize, prefix: &str) -> Record {
    let mut keywords: Vec<String> = tags(prefix, i).iter().map(|t| format!("tag={t}")).collect();
    keywords.extend(
        [
            "type=SymmetricKey",
            "alg=AES",
            "state=Active",
            "owner=bench",
        ]
        .map(String::from),
    );
    Record {
        uid: format!("{prefix}-{i:08}"),
        body: vec![0x11; 300],
        keywords,
    }
}

impl<S: Store + 'static> StoreDriver<S> {
    fn new(s: S) -> Self {
        for i in 0..PRELOADED {
            s.insert(&record(i, "pre")).run().expect("preload");
        }
        StoreDriver(s)
    }
}

impl<S: Store + Send + Sync + 'static> Driver for StoreDriver<S> {
    fn run(&self, op: Op, i: usize, prefix: &str) {
        let s = &self.0;
        let n = i % PRELOADED;
        match op {
            Op::Create => {
                s.insert(&record(i, prefix)).run().expect("insert");
            }
            Op::Get | Op::Encrypt => {
                s.get(&format!("pre-{n:08}"))
                    .run()
                    .expect("get")
                    .expect("exists");
            }
            Op::Locate1 => assert_eq!(
                s.search(&[format!("tag=u-pre-{n}")])
                    .run()
                    .expect("search")
                    .len(),
                1
            ),
            Op::Locate3 => {
                let q: Vec<String> = tags("pre", n).iter().map(|t| format!("tag={t}")).collect();
                assert_eq!(s.search(&q).run().expect("search").len(), 1);
            }
        }
    }
}

// ---------------------------------------------------------------- harness

fn measure(d: &Arc<dyn Driver>, op: Op, conc: usize, ops: usize, prefix: &str) -> f64 {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let hs: Vec<_> = (0..conc)
        .map(|_| {
            let (d, next, prefix) = (Arc::clone(d), Arc::clone(&next), prefix.to_string());
            std::thread::spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= ops {
                        break;
                    }
                    d.run(op, i, &prefix);
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
    let mut c = kms_redis::client::Client::new(
        t,
        kms_redis::url::RedisUrl::parse(url).expect("url"),
        Default::default(),
    );
    let Reply::Bulk(text) = c.request(&[b"INFO", b"commandstats"]).run().expect("INFO") else {
        panic!("INFO reply")
    };
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

fn table(
    level: &str,
    url: &str,
    memory: Arc<dyn Driver>,
    redis: Arc<dyn Driver>,
    pool: &StdPool,
    ops: usize,
) {
    println!("\n{level} level ({ops} ops per cell, {PRELOADED} preloaded keys; ops/s)");
    println!(
        "{:<8} {:>4} {:>10} {:>9} {:>7} {:>7} {:>8}  Redis commands per op",
        "op", "conc", "memory", "redis", "ratio", "rtt/op", "cmds/op"
    );
    let mut round = 0;
    for conc in [1usize, 16] {
        for op in [Op::Create, Op::Get, Op::Encrypt, Op::Locate1, Op::Locate3] {
            round += 1;
            let prefix = format!("{level}{round}");
            let m = measure(&memory, op, conc, ops, &prefix);
            let before = commandstats(url);
            let rtt_before = pool.stats().1;
            let r = measure(&redis, op, conc, ops, &prefix);
            let rtt = (pool.stats().1 - rtt_before) as f64 / ops as f64;
            let after = commandstats(url);
            let mut per = Vec::new();
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
                "{:<8} {:>4} {:>10.0} {:>9.0} {:>7.1} {:>7.2} {:>8.2}  {}",
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
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let get = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let url = get("--redis-url").expect("--redis-url redis://127.0.0.1:PORT");
    let ops: usize = get("--ops")
        .map(|s| s.parse().expect("--ops N"))
        .unwrap_or(2000);
    let level = get("--level").unwrap_or_else(|| "both".into());

    if level != "store" {
        let redis = Arc::new(KmsDriver::new(
            RedisFindexStore::connect(&url, &SECRET, ConnectOptions::default()).expect("connect"),
        ));
        let memory: Arc<dyn Driver> = Arc::new(KmsDriver::new(MemoryStore::new()));
        let pool_owner = Arc::clone(&redis);
        let redis_dyn: Arc<dyn Driver> = redis;
        table(
            "KMS",
            &url,
            memory,
            redis_dyn,
            pool_owner.kms.store().pool(),
            ops,
        );
    }
    if level != "kms" {
        // Redis database 1, so both levels start from the same state.
        let store =
            RedisFindexStore::connect(&format!("{url}/1"), &SECRET, ConnectOptions::default())
                .expect("connect");
        let redis = Arc::new(StoreDriver::new(store));
        let memory: Arc<dyn Driver> = Arc::new(StoreDriver::new(MemoryStore::new()));
        let pool_owner = Arc::clone(&redis);
        let redis_dyn: Arc<dyn Driver> = redis;
        table("store", &url, memory, redis_dyn, pool_owner.0.pool(), ops);
    }
}
