//! `image relay` against a real Redis: the byte stream on stdin/stdout reaches the server and back.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Kills the child by PID when dropped, then removes its directory.
struct Guard(Child, #[allow(dead_code)] tempfile::TempDir);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn start_redis() -> (Guard, u16) {
    let port = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .spawn()
        .expect("start redis-server (Debian package redis-server)");
    let guard = Guard(child, dir);
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        thread::sleep(Duration::from_millis(20));
    }
    (guard, port)
}

#[test]
fn relay_carries_a_redis_session_and_ends_with_it() {
    let (_redis, port) = start_redis();
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
    for target in ["10.0.2.2:6379", "not-an-address", "[::1]"] {
        let out = Command::new(env!("CARGO_BIN_EXE_image"))
            .args(["relay", target])
            .stdin(Stdio::null())
            .output()
            .expect("run relay");
        assert!(!out.status.success(), "{target} accepted");
        assert!(out.stdout.is_empty());
    }
}
