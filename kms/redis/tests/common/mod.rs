//! Test harness: a real `redis-server` (Debian package) on a free loopback port, in a temporary
//! directory, with `appendonly yes` and `appendfsync always`; killed by PID on drop.
#![allow(dead_code)]

use kms_redis::client::Client;
use kms_redis::host::TcpTransport;
use kms_redis::resp::{Limits, Reply};
use kms_redis::url::RedisUrl;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Runs a future to completion (the host transport blocks inside its futures).
pub trait Run: std::future::Future + Sized {
    fn run(self) -> Self::Output {
        kms::block_on(self, || {})
    }
}
impl<F: std::future::Future> Run for F {}

pub struct RedisServer {
    pub port: u16,
    pub dir: PathBuf,
    child: Option<Child>,
    extra: Vec<String>,
}

pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Extra `redis-server` arguments (for example `--requirepass x`).
    pub fn start_with(extra: &[&str]) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("kms-redis-test-{}-{}", std::process::id(), n));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        let mut s = RedisServer {
            port: free_port(),
            dir,
            child: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        s.spawn();
        s
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.join("redis.log")).expect("log file");
        let mut cmd = Command::new("redis-server");
        cmd.args([
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--protected-mode",
            "yes",
        ])
        .args(["--dir", self.dir.to_str().expect("utf-8 temp dir")])
        .args([
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
        ])
        .args(["--daemonize", "no", "--logfile", ""])
        .args(&self.extra)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log);
        let child = cmd
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server)");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if self.ping() {
                return;
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                let log = std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default();
                panic!("redis-server did not start ({exited:?}); its log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `kill -9` the server (by PID).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start again on the same port and directory (the AOF is replayed).
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// PING over a fresh socket; true on `+PONG` (or `-NOAUTH` when a password is set).
    pub fn ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        if s.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut b = [0u8; 7];
        s.read_exact(&mut b).is_ok() && (&b == b"+PONG\r\n" || b.starts_with(b"-NOAUTH"))
    }

    /// A client of the crate under test for administrative commands (SCAN, CLIENT PAUSE, ...).
    pub fn admin(&self) -> Client<TcpTransport> {
        let t = TcpTransport {
            connect_timeout: Duration::from_secs(3),
            io_timeout: Duration::from_secs(10),
        };
        Client::new(
            t,
            RedisUrl::parse(&self.url()).expect("url"),
            Limits::default(),
        )
    }

    /// Every (key, value) of the current database, values of string keys only.
    pub fn dump(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut c = self.admin();
        let mut cursor = b"0".to_vec();
        let mut keys = Vec::new();
        loop {
            let Reply::Array(mut parts) = c
                .request(&[b"SCAN", &cursor, b"COUNT", b"1000"])
                .run()
                .expect("scan")
            else {
                panic!("SCAN reply")
            };
            let (Some(Reply::Array(batch)), Some(Reply::Bulk(next))) = (parts.pop(), parts.pop())
            else {
                panic!()
            };
            for k in batch {
                if let Reply::Bulk(k) = k {
                    keys.push(k);
                }
            }
            if next == b"0" {
                break;
            }
            cursor = next;
        }
        keys.into_iter()
            .map(|k| {
                let v = match c.request(&[b"GET", &k]).run().expect("get") {
                    Reply::Bulk(v) => v,
                    other => panic!(
                        "non-string key {:?}: {other:?}",
                        String::from_utf8_lossy(&k)
                    ),
                };
                (k, v)
            })
            .collect()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill9();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
