//! `kms-server --database redis-findex` against a real redis-server: the whole KMIP suite, two
//! servers × 8 clients on one Redis, restart with the same / another secret, Redis killed and
//! stalled under a running server. Needs `redis-server` (Debian package) and `cargo build -p ckms`.

mod common;
#[path = "../../redis/tests/common/mod.rs"]
mod redis_harness;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use ckms::http::HttpClient;
use common::{Harness, ServerProcess, client_for, kmip};
use redis_harness::{Admin, RedisServer};
use serde_json::{Value, json};

/// Runs a future to completion (the host transport blocks inside its futures).
trait Run: std::future::Future + Sized {
    fn run(self) -> Self::Output {
        kms::block_on(self, || {})
    }
}
impl<F: std::future::Future> Run for F {}

const SECRET_B64: &str = "QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI="; // 32 × 0x42
const OTHER_SECRET_B64: &str = "Q0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0M="; // 32 × 0x43

fn write_secret(dir: &std::path::Path, name: &str, b64: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("{b64}\n")).expect("write secret");
    p
}

fn redis_args(redis: &RedisServer, secret: &std::path::Path) -> Vec<String> {
    vec![
        "--database".into(),
        "redis-findex".into(),
        "--redis-url".into(),
        redis.url(),
        "--db-secret-file".into(),
        secret.display().to_string(),
        "--redis-timeout-secs".into(),
        "1".into(),
    ]
}

fn tag_attr(tags: &[&str]) -> Value {
    let j = serde_json::to_string(tags).unwrap();
    json!({"tag":"VendorAttributes","type":"Structure","value":[
        {"tag":"VendorAttributes","type":"Structure","value":[
            {"tag":"VendorIdentification","type":"TextString","value":"cosmian"},
            {"tag":"AttributeName","type":"TextString","value":"tag"},
            {"tag":"AttributeValue","type":"ByteString","value":hex::encode_upper(j.as_bytes())}]}]})
}

fn create_aes(tags: &[&str]) -> Value {
    json!({"tag":"Create","type":"Structure","value":[
        {"tag":"ObjectType","type":"Enumeration","value":"SymmetricKey"},
        {"tag":"Attributes","type":"Structure","value":[
            {"tag":"CryptographicAlgorithm","type":"Enumeration","value":"AES"},
            {"tag":"CryptographicLength","type":"Integer","value":256},
            {"tag":"CryptographicUsageMask","type":"Integer","value":2108},
            {"tag":"KeyFormatType","type":"Enumeration","value":"TransparentSymmetricKey"},
            {"tag":"ActivationDate","type":"DateTime","value":"2024-01-01T00:00:00Z"},
            tag_attr(tags)]}]})
}

fn uid_req(op: &str, uid: &str) -> Value {
    json!({"tag":op,"type":"Structure","value":[{"tag":"UniqueIdentifier","type":"TextString","value":uid}]})
}

fn field<'a>(v: &'a Value, tag: &str) -> Option<&'a Value> {
    v["value"].as_array()?.iter().find(|c| c["tag"] == tag)
}

fn call(c: &mut HttpClient, req: &Value) -> (u16, String) {
    let r = kmip(c, &req.to_string());
    (r.status, r.text())
}

fn ok(c: &mut HttpClient, req: &Value) -> Value {
    let (status, body) = call(c, req);
    assert_eq!(status, 200, "{req}: {body}");
    serde_json::from_str(&body).expect("JSON response")
}

fn create(c: &mut HttpClient, tags: &[&str]) -> String {
    let r = ok(c, &create_aes(tags));
    field(&r, "UniqueIdentifier").expect("uid")["value"]
        .as_str()
        .unwrap()
        .to_string()
}

fn locate(c: &mut HttpClient, tags: &[&str]) -> BTreeSet<String> {
    let r = ok(
        c,
        &json!({"tag":"Locate","type":"Structure","value":[
        {"tag":"Attributes","type":"Structure","value":[tag_attr(tags)]}]}),
    );
    r["value"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["tag"] == "UniqueIdentifier")
        .map(|c| c["value"].as_str().unwrap().to_string())
        .collect()
}

fn set_tags(c: &mut HttpClient, uid: &str, tags: &[&str]) {
    ok(
        c,
        &json!({"tag":"SetAttribute","type":"Structure","value":[
        {"tag":"UniqueIdentifier","type":"TextString","value":uid},
        {"tag":"NewAttribute","type":"Structure","value":[tag_attr(tags)]}]}),
    );
}

fn add_name(c: &mut HttpClient, uid: &str, name: &str) -> (u16, String) {
    call(
        c,
        &json!({"tag":"AddAttribute","type":"Structure","value":[
        {"tag":"UniqueIdentifier","type":"TextString","value":uid},
        {"tag":"NewAttribute","type":"Structure","value":[
            {"tag":"Name","type":"Structure","value":[
                {"tag":"NameValue","type":"TextString","value":name},
                {"tag":"NameType","type":"Enumeration","value":"UninterpretedTextString"}]}]}]}),
    )
}

fn destroy(c: &mut HttpClient, uid: &str) {
    ok(
        c,
        &json!({"tag":"Revoke","type":"Structure","value":[
        {"tag":"UniqueIdentifier","type":"TextString","value":uid},
        {"tag":"RevocationReason","type":"Structure","value":[
            {"tag":"RevocationReasonCode","type":"Enumeration","value":"CessationOfOperation"}]}]}),
    );
    ok(c, &uid_req("Destroy", uid));
}

#[test]
fn kmip_suite_redis_findex() {
    let redis = redis_harness::start();
    let secret = write_secret(redis.dir(), "secret.b64", SECRET_B64);
    let args = redis_args(&redis, &secret);
    let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    common::suite::run_kmip_suite(&args);
}

#[test]
fn two_servers_eight_clients_each_one_redis() {
    let redis = redis_harness::start();
    let secret = write_secret(redis.dir(), "secret.b64", SECRET_B64);
    let rargs = redis_args(&redis, &secret);
    let rargs_ref: Vec<&str> = rargs.iter().map(|s| s.as_str()).collect();
    let mut h = Harness::start(&rargs_ref);
    let mut b_args = vec![
        "--tls-cert".to_string(),
        h.pki.server.cert.display().to_string(),
        "--tls-key".into(),
        h.pki.server.key.display().to_string(),
        "--client-ca".into(),
        h.pki.ca_cert.display().to_string(),
    ];
    b_args.extend(rargs.iter().cloned());
    let server_b = ServerProcess::start(&b_args);
    let alice = h.user("alice");
    let ca = h.pki.ca_cert.clone();
    let urls = [h.server.url(), server_b.url()];
    let shared = create(
        &mut client_for(&urls[0], &ca, Some(&alice)),
        &["shared-obj"],
    );

    const CLIENTS: usize = 16; // 8 per server
    const KEYS: usize = 6;
    let alice = Arc::new(alice);
    let handles: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (url, ca, alice, shared) = (
                urls[c % 2].clone(),
                ca.clone(),
                Arc::clone(&alice),
                shared.clone(),
            );
            std::thread::spawn(move || {
                let mut cl = client_for(&url, &ca, Some(&alice));
                let me = format!("client{c}");
                let uids: Vec<String> = (0..KEYS).map(|_| create(&mut cl, &[&me, "run"])).collect();
                // re-tag two keys, destroy one
                set_tags(&mut cl, &uids[0], &[&me, "retagged"]);
                set_tags(&mut cl, &uids[1], &["retagged"]);
                destroy(&mut cl, &uids[2]);
                // every client adds its name to the same object, through either server
                let (status, body) = add_name(&mut cl, &shared, &format!("name-of-{me}"));
                assert_eq!(status, 200, "AddAttribute Name: {body}");
                uids
            })
        })
        .collect();
    let all: Vec<Vec<String>> = handles
        .into_iter()
        .map(|h| h.join().expect("client thread"))
        .collect();

    // Check through both servers: Locate per tag returns exactly the expected set.
    for url in &urls {
        let mut cl = client_for(url, &ca, Some(&alice));
        let mut run = BTreeSet::new();
        let mut retagged = BTreeSet::new();
        for (c, uids) in all.iter().enumerate() {
            let mine: BTreeSet<String> = [&uids[0], &uids[3], &uids[4], &uids[5]]
                .into_iter()
                .cloned()
                .collect();
            assert_eq!(
                locate(&mut cl, &[&format!("client{c}")]),
                mine,
                "tag client{c} via {url}"
            );
            run.extend(uids[3..].iter().cloned());
            retagged.insert(uids[0].clone());
            retagged.insert(uids[1].clone());
        }
        assert_eq!(locate(&mut cl, &["run"]), run);
        assert_eq!(locate(&mut cl, &["retagged"]), retagged);
        assert_eq!(
            locate(&mut cl, &["client3", "retagged"]),
            BTreeSet::from([all[3][0].clone()])
        );
        // no update lost: the shared object carries all 16 names
        let ga = ok(&mut cl, &uid_req("GetAttributes", &shared));
        let text = ga.to_string();
        for c in 0..CLIENTS {
            assert!(
                text.contains(&format!("\"name-of-client{c}\"")),
                "name of client{c} lost: {text}"
            );
        }
        // destroyed keys are gone for Get
        let (status, _) = call(&mut cl, &uid_req("Get", &all[5][2]));
        assert_ne!(status, 200);
    }
}

#[test]
fn restart_same_secret_finds_objects_other_secret_refused() {
    let redis = redis_harness::start();
    let secret = write_secret(redis.dir(), "secret.b64", SECRET_B64);
    let rargs = redis_args(&redis, &secret);
    let rargs_ref: Vec<&str> = rargs.iter().map(|s| s.as_str()).collect();
    let mut h = Harness::start(&rargs_ref);
    let mut cl = h.client("alice");
    let uid = create(&mut cl, &["persist-me"]);
    let server_args = |secret: &std::path::Path, h: &Harness| {
        let mut a = vec![
            "--tls-cert".to_string(),
            h.pki.server.cert.display().to_string(),
            "--tls-key".into(),
            h.pki.server.key.display().to_string(),
            "--client-ca".into(),
            h.pki.ca_cert.display().to_string(),
        ];
        a.extend(redis_args(&redis, secret));
        a
    };
    // A second server process with the same secret (the first one could just as well be gone).
    let again = ServerProcess::start(&server_args(&secret, &h));
    let alice = h.user("alice");
    let mut c2 = client_for(&again.url(), &h.pki.ca_cert, Some(&alice));
    assert_eq!(
        locate(&mut c2, &["persist-me"]),
        BTreeSet::from([uid.clone()])
    );
    ok(&mut c2, &uid_req("Get", &uid));

    // Another secret: refuses to start, with a clear message.
    let other = write_secret(redis.dir(), "other.b64", OTHER_SECRET_B64);
    let out = run_server_expect_exit(&server_args(&other, &h));
    assert!(out.contains("different database secret"), "{out}");
    // Missing, short and unreadable secrets: refused with a clear message.
    let out = run_server_expect_exit(&server_args(&redis.dir().join("nope.b64"), &h));
    assert!(
        out.contains("cannot read the database secret file"),
        "{out}"
    );
    let short = write_secret(redis.dir(), "short.b64", "QkJC");
    let out = run_server_expect_exit(&server_args(&short, &h));
    assert!(out.contains("must be 32 bytes"), "{out}");
}

/// Run kms-server expecting it to exit (not serve); returns its stderr.
fn run_server_expect_exit(args: &[String]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_kms-server"))
        .args(args)
        .args(["--port", "0"])
        .stdin(Stdio::null())
        .output()
        .expect("run kms-server");
    assert!(
        !out.status.success(),
        "kms-server should have refused to start"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("listening"), "it started: {stdout}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A storage failure: HTTP 500, or 503 which the core uses for "unavailable, retry later",
/// with a message naming the storage.
fn assert_storage_error(status: u16, body: &str) {
    assert!(status == 500 || status == 503, "status {status}: {body}");
    assert!(body.to_lowercase().contains("storage"), "{body}");
}

#[test]
fn redis_killed_and_stalled_under_a_running_server() {
    let mut redis = redis_harness::start();
    let secret = write_secret(redis.dir(), "secret.b64", SECRET_B64);
    let rargs = redis_args(&redis, &secret);
    let rargs_ref: Vec<&str> = rargs.iter().map(|s| s.as_str()).collect();
    let mut h = Harness::start(&rargs_ref);
    let mut cl = h.client("alice");
    cl.set_timeout(Duration::from_secs(30));
    let acked: Vec<String> = (0..20).map(|_| create(&mut cl, &["durable"])).collect();

    redis.kill9();
    // During the outage: HTTP 500 with a storage message, for reads and writes.
    for req in [uid_req("Get", &acked[0]), create_aes(&["during-outage"])] {
        let (status, body) = call(&mut cl, &req);
        assert_storage_error(status, &body);
    }
    redis.restart();
    // The server reconnects by itself; every acknowledged write is there.
    assert_eq!(
        locate(&mut cl, &["durable"]),
        acked.iter().cloned().collect()
    );
    for u in &acked {
        ok(&mut cl, &uid_req("Get", u));
    }

    // Stall: requests that need Redis time out cleanly (--redis-timeout-secs 1), then work
    // again. A key read since the restart is in the key cache and is still served: no write
    // can happen while Redis is paused, so the cached record is current. (The first Get of a
    // key clears its Fresh attribute, a write that drops it from the cache: read it again.)
    ok(&mut cl, &uid_req("Get", &acked[1]));
    let fresh = create(&mut cl, &["after-restart"]);
    let mut admin = redis.admin();
    admin
        .request(&[b"CLIENT", b"PAUSE", b"4000", b"ALL"])
        .run()
        .expect("CLIENT PAUSE");
    let (status, body) = call(&mut cl, &uid_req("Get", &fresh));
    assert_storage_error(status, &body);
    assert!(body.contains("did not answer in time"), "{body}");
    ok(&mut cl, &uid_req("Get", &acked[1]));
    admin
        .request(&[b"CLIENT", b"UNPAUSE"])
        .run()
        .expect("CLIENT UNPAUSE");
    ok(&mut cl, &uid_req("Get", &fresh));
}
