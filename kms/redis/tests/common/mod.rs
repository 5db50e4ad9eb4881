//! Test harness: a real `redis-server` ([`testkit::RedisServer`], append-only with
//! `appendfsync always` for the durability tests) plus administration through the crate under
//! test ([`Admin`]).
#![allow(dead_code)]

use kms_redis::client::Client;
use kms_redis::host::TcpTransport;
use kms_redis::resp::{Limits, Reply};
use kms_redis::url::RedisUrl;
use std::time::Duration;

pub use testkit::RedisServer;

/// Runs a future to completion (the host transport blocks inside its futures).
pub trait Run: std::future::Future + Sized {
    fn run(self) -> Self::Output {
        kms::block_on(self, || {})
    }
}
impl<F: std::future::Future> Run for F {}

/// A server persisting every write (`appendonly yes`, `appendfsync always`).
pub fn start() -> RedisServer {
    RedisServer::builder().append_only().start()
}

/// Administration of a [`RedisServer`] with the crate's own client.
pub trait Admin {
    /// A client of the crate under test for administrative commands (SCAN, CLIENT PAUSE, ...).
    fn admin(&self) -> Client<TcpTransport>;
    /// Every (key, value) of the current database, values of string keys only.
    fn dump(&self) -> Vec<(Vec<u8>, Vec<u8>)>;
}

impl Admin for RedisServer {
    fn admin(&self) -> Client<TcpTransport> {
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

    fn dump(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
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
