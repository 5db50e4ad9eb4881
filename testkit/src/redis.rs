//! A real `redis-server` for tests.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::free_port;

/// How long `redis-server` may take to answer its first `PING`.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Options of a [`RedisServer`] ([`RedisServer::builder`]).
#[derive(Debug, Clone, Default)]
pub struct RedisBuilder {
    password: Option<String>,
    append_only: bool,
    users: Vec<String>,
}

impl RedisBuilder {
    /// Require this password (`--requirepass`).
    pub fn password(mut self, password: &str) -> RedisBuilder {
        self.password = Some(password.to_owned());
        self
    }

    /// Add an ACL user from a rule line without the `user` keyword (`--user kms on >pw ~kms:* …`).
    pub fn acl_user(mut self, rule: &str) -> RedisBuilder {
        self.users.push(rule.to_owned());
        self
    }

    /// Persist every write in an append-only file (`appendfsync always`), replayed by
    /// [`RedisServer::restart`]. Without it the server keeps nothing on disk.
    pub fn append_only(mut self) -> RedisBuilder {
        self.append_only = true;
        self
    }

    /// Start the server and wait until it answers `PING`.
    pub fn start(self) -> RedisServer {
        let dir = tempfile::Builder::new()
            .prefix("testkit-redis-")
            .tempdir()
            .unwrap_or_else(|e| panic!("create a temp dir for redis-server: {e}"));
        let mut server = RedisServer {
            port: free_port(),
            dir,
            options: self,
            child: None,
        };
        server.spawn();
        server
    }
}

/// A `redis-server` (Debian package `redis-server`) on 127.0.0.1 and a free port, with its
/// directory and log (`redis.log`) in a temp dir; killed by PID on drop.
pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    options: RedisBuilder,
    child: Option<Child>,
}

impl RedisServer {
    /// A server without password and without persistence.
    pub fn start() -> RedisServer {
        RedisBuilder::default().start()
    }

    /// Options (password, persistence), then [`RedisBuilder::start`].
    pub fn builder() -> RedisBuilder {
        RedisBuilder::default()
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT` (without the password).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Its working directory (append-only files, `redis.log`); removed on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `PING` over a fresh socket: true on `+PONG` (or `-NOAUTH` when a password is set).
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

    /// Kill the server (SIGKILL, by PID) and reap it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kill it, then start it again on the same port and directory (an append-only file is
    /// replayed).
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    fn spawn(&mut self) {
        let log_path = self.dir.path().join("redis.log");
        let log = std::fs::File::create(&log_path)
            .unwrap_or_else(|e| panic!("create {}: {e}", log_path.display()));
        let log2 = log
            .try_clone()
            .unwrap_or_else(|e| panic!("clone {}: {e}", log_path.display()));
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--protected-mode", "yes"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--save", "", "--daemonize", "no", "--logfile", ""]);
        if self.options.append_only {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        if let Some(pw) = &self.options.password {
            cmd.args(["--requirepass", pw]);
        }
        for rule in &self.options.users {
            cmd.arg("--user").args(rule.split(' '));
        }
        cmd.stdin(Stdio::null()).stdout(log).stderr(log2);
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) if e.kind() == ErrorKind::NotFound => panic!(
                "redis-server not found: install it with `apt-get install redis-server` ({e})"
            ),
            Err(e) => panic!("start redis-server: {e}"),
        };
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if self.ping() {
                return;
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                self.kill9();
                let log =
                    std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default();
                panic!("redis-server did not start ({exited:?}); its log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_answers_and_stops() {
        let mut r = RedisServer::builder().password("pw").start();
        assert!(r.ping());
        assert!(r.url().ends_with(&r.port().to_string()));
        r.kill9();
        assert!(!r.ping());
        r.restart();
        assert!(r.ping());
    }
}
