//! `image relay` against a real Redis: the byte stream on stdin/stdout reaches the server and back.

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use testkit::RedisServer;

#[test]
fn relay_carries_a_redis_session_and_ends_with_it() {
    let redis = RedisServer::start();
    let port = redis.port();
    let mut relay = Command::new(env!("CARGO_BIN_EXE_image"))
        .args(["relay", &format!("127.0.0.1:{port}")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start relay");
    let mut stdin = relay.stdin.take().expect("stdin");
    let mut stdout = relay.stdout.take().expect("stdout");
    stdin
        .write_all(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n")
        .expect("write");
    stdin.flush().expect("flush");
    let want = b"+OK\r\n$5\r\nhello\r\n";
    let mut got = vec![0u8; want.len()];
    stdout.read_exact(&mut got).expect("read replies");
    assert_eq!(got, want);
    // The guest closes its side: Redis sees EOF, closes, and the relay exits cleanly.
    drop(stdin);
    let mut rest = Vec::new();
    stdout.read_to_end(&mut rest).expect("read to end");
    assert!(rest.is_empty());
    assert!(relay.wait().expect("wait").success());
}

#[test]
fn relay_refuses_non_loopback_targets() {
    for (target, why) in [
        ("10.0.2.2:6379", "is not a loopback address"),
        ("not-an-address", "is not IP:PORT"),
        ("[::1]", "is not IP:PORT"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_image"))
            .args(["relay", target])
            .stdin(Stdio::null())
            .output()
            .expect("run relay");
        assert!(!out.status.success(), "{target} accepted");
        assert!(out.stdout.is_empty());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(why), "{target}: {err}");
    }
}
