//! A Redis client over any `embedded-io` byte stream: connection set-up (`AUTH`, `SELECT`,
//! `SCRIPT LOAD`), pipelining, `EVALSHA` with reload on `NOSCRIPT`, and reconnection.
//!
//! The client is synchronous and single-connection; a pool of clients gives concurrency
//! (`crate::host::StdPool` on the host). Timeouts belong to the stream: a read or write that
//! times out must fail with [`ErrorKind::TimedOut`] (the std transport sets socket timeouts; the
//! unikernel's smoltcp stream checks its clock). After any I/O failure the connection is dropped
//! (a late reply would desynchronize the pipeline) and the next request reconnects.

use crate::resp::{Decoded, Limits, Reply, RespError, decode_reply, encode_command};
use crate::url::RedisUrl;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use embedded_io::{Error as _, ErrorKind, Read, Write};

/// Opens byte streams to Redis.
pub trait Transport {
    /// The stream type.
    type Stream: Read + Write;
    /// Open a connection (with the transport's connect timeout).
    fn connect(&self, host: &str, port: u16) -> Result<Self::Stream, ErrorKind>;
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientError {
    /// Could not open a connection.
    Connect(ErrorKind),
    /// The connection failed during the request (timeouts are `Io(ErrorKind::TimedOut)`).
    Io(ErrorKind),
    /// The server closed the connection.
    Closed,
    /// The server sent bytes that are not an acceptable RESP2 reply.
    Protocol(RespError),
    /// `AUTH` was refused.
    Auth,
    /// `SELECT` was refused.
    Select,
    /// `SCRIPT LOAD` failed, or `EVALSHA` still answered `NOSCRIPT` after a reload.
    Script,
    /// Redis is still loading its dataset after a restart (`-LOADING`): retry later.
    Loading,
}

impl ClientError {
    /// True when the failure is a timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            ClientError::Io(ErrorKind::TimedOut) | ClientError::Connect(ErrorKind::TimedOut)
        )
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Connect(k) => write!(f, "cannot connect to Redis ({k:?})"),
            ClientError::Io(ErrorKind::TimedOut) => f.write_str("Redis did not answer in time"),
            ClientError::Io(k) => write!(f, "Redis connection failed ({k:?})"),
            ClientError::Closed => f.write_str("Redis closed the connection"),
            ClientError::Protocol(e) => write!(f, "Redis protocol error: {e}"),
            ClientError::Auth => f.write_str("Redis refused AUTH"),
            ClientError::Select => f.write_str("Redis refused SELECT"),
            ClientError::Script => f.write_str("Redis refused to load a script"),
            ClientError::Loading => f.write_str("Redis is loading its dataset"),
        }
    }
}

impl core::error::Error for ClientError {}

/// One command: plain arguments, or a call of a registered script.
#[derive(Debug, Clone)]
pub enum Command {
    /// `args[0]` is the command name.
    Plain(Vec<Vec<u8>>),
    /// `EVALSHA <sha of script> <keys.len()> keys... args...`.
    Script {
        /// Index returned by [`Client::register_script`].
        script: usize,
        /// `KEYS`.
        keys: Vec<Vec<u8>>,
        /// `ARGV`.
        args: Vec<Vec<u8>>,
    },
}

impl Command {
    /// A plain command from byte-string arguments.
    pub fn new(args: &[&[u8]]) -> Self {
        Command::Plain(args.iter().map(|a| a.to_vec()).collect())
    }
}

struct Script {
    source: &'static str,
    sha: Option<Vec<u8>>,
}

/// A Redis connection that reconnects on demand.
pub struct Client<T: Transport> {
    transport: T,
    url: RedisUrl,
    limits: Limits,
    conn: Option<T::Stream>,
    rx: Vec<u8>,
    scripts: Vec<Script>,
    /// Number of connections opened (tests and benchmarks read it).
    pub connects: u64,
    /// Number of request round trips made.
    pub round_trips: u64,
}

impl<T: Transport> Client<T> {
    /// A client that connects at its first request.
    pub fn new(transport: T, url: RedisUrl, limits: Limits) -> Self {
        Client {
            transport,
            url,
            limits,
            conn: None,
            rx: Vec::new(),
            scripts: Vec::new(),
            connects: 0,
            round_trips: 0,
        }
    }

    /// Register a Lua script; it is loaded on every new connection and after `NOSCRIPT`.
    pub fn register_script(&mut self, source: &'static str) -> usize {
        if let Some(i) = self.scripts.iter().position(|s| s.source == source) {
            return i;
        }
        self.scripts.push(Script { source, sha: None });
        self.scripts.len() - 1
    }

    /// Drop the connection (the next request reconnects).
    pub fn disconnect(&mut self) {
        self.conn = None;
        self.rx.clear();
    }

    /// True when a connection is open.
    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// Send commands in one write and read their replies in order (one round trip).
    /// Error replies are returned as [`Reply::Error`] values; `NOSCRIPT` is handled here.
    pub fn pipeline(&mut self, cmds: &[Command]) -> Result<Vec<Reply>, ClientError> {
        let mut replies = self.pipeline_with_retry(cmds)?;
        // NOSCRIPT: the script cache was flushed; reload and resend those commands (they did not run).
        let again: Vec<usize> = replies
            .iter()
            .enumerate()
            .filter(|(_, r)| r.is_error_code("NOSCRIPT"))
            .map(|(i, _)| i)
            .collect();
        if !again.is_empty() {
            self.load_scripts()?;
            let resend: Vec<Command> = again.iter().filter_map(|i| cmds.get(*i).cloned()).collect();
            let second = self.pipeline_with_retry(&resend)?;
            for (i, r) in again.into_iter().zip(second) {
                if r.is_error_code("NOSCRIPT") {
                    return Err(ClientError::Script);
                }
                if let Some(slot) = replies.get_mut(i) {
                    *slot = r;
                }
            }
        }
        Ok(replies)
    }

    /// One command, one reply.
    pub fn request(&mut self, args: &[&[u8]]) -> Result<Reply, ClientError> {
        let mut r = self.pipeline(&[Command::new(args)])?;
        r.pop().ok_or(ClientError::Closed)
    }

    fn pipeline_with_retry(&mut self, cmds: &[Command]) -> Result<Vec<Reply>, ClientError> {
        let fresh = self.ensure_connected()?;
        match self.exchange(cmds) {
            Ok(r) => Ok(r),
            // A reused connection that the server had already closed (restart, idle timeout):
            // nothing was read back, so nothing ran; retry once on a new connection.
            Err((e, 0)) if !fresh && !e.is_timeout() && !matches!(e, ClientError::Protocol(_)) => {
                self.disconnect();
                self.ensure_connected()?;
                self.exchange(cmds).map_err(|(e, _)| e)
            }
            Err((e, _)) => Err(e),
        }
    }

    /// Connect and set up the session if needed; returns true if a new connection was made.
    fn ensure_connected(&mut self) -> Result<bool, ClientError> {
        if self.conn.is_some() {
            return Ok(false);
        }
        self.rx.clear();
        let stream = self
            .transport
            .connect(&self.url.host, self.url.port)
            .map_err(ClientError::Connect)?;
        self.conn = Some(stream);
        self.connects += 1;
        let r = self.handshake();
        if r.is_err() {
            self.disconnect();
        }
        r.map(|_| true)
    }

    fn handshake(&mut self) -> Result<(), ClientError> {
        let mut setup = Vec::new();
        let auth = match (&self.url.user, &self.url.password) {
            (Some(u), Some(p)) => Some(Command::new(&[b"AUTH", u.as_bytes(), p.as_bytes()])),
            (None, Some(p)) => Some(Command::new(&[b"AUTH", p.as_bytes()])),
            (Some(u), None) => Some(Command::new(&[b"AUTH", u.as_bytes(), b""])),
            (None, None) => None,
        };
        let has_auth = auth.is_some();
        setup.extend(auth);
        let db = alloc::format!("{}", self.url.db);
        if self.url.db != 0 {
            setup.push(Command::new(&[b"SELECT", db.as_bytes()]));
        }
        if !setup.is_empty() {
            let replies = self.exchange(&setup).map_err(|(e, _)| e)?;
            let mut it = replies.iter();
            if has_auth && !matches!(it.next(), Some(Reply::Status(_))) {
                return Err(ClientError::Auth);
            }
            if self.url.db != 0 && !matches!(it.next(), Some(Reply::Status(_))) {
                return Err(ClientError::Select);
            }
        }
        self.load_scripts()
    }

    fn load_scripts(&mut self) -> Result<(), ClientError> {
        if self.scripts.is_empty() {
            return Ok(());
        }
        let cmds: Vec<Command> = self
            .scripts
            .iter()
            .map(|s| Command::new(&[b"SCRIPT", b"LOAD", s.source.as_bytes()]))
            .collect();
        let replies = self.exchange(&cmds).map_err(|(e, _)| e)?;
        for (s, r) in self.scripts.iter_mut().zip(replies) {
            match r {
                Reply::Bulk(sha) if sha.len() == 40 => s.sha = Some(sha),
                r if r.is_error_code("LOADING") => return Err(ClientError::Loading),
                _ => return Err(ClientError::Script),
            }
        }
        Ok(())
    }

    /// Write all commands, read as many replies. On error returns the error and the number of
    /// reply bytes received, and drops the connection.
    fn exchange(&mut self, cmds: &[Command]) -> Result<Vec<Reply>, (ClientError, usize)> {
        let r = self.exchange_inner(cmds);
        if r.is_err() {
            self.disconnect();
        }
        r
    }

    fn exchange_inner(&mut self, cmds: &[Command]) -> Result<Vec<Reply>, (ClientError, usize)> {
        let mut out = Vec::new();
        for c in cmds {
            match c {
                Command::Plain(args) => {
                    let a: Vec<&[u8]> = args.iter().map(|x| x.as_slice()).collect();
                    encode_command(&mut out, &a);
                }
                Command::Script { script, keys, args } => {
                    let sha = self
                        .scripts
                        .get(*script)
                        .and_then(|s| s.sha.as_deref())
                        .unwrap_or(b"0");
                    let nkeys = alloc::format!("{}", keys.len());
                    let mut a: Vec<&[u8]> = vec![b"EVALSHA", sha, nkeys.as_bytes()];
                    a.extend(keys.iter().map(|k| k.as_slice()));
                    a.extend(args.iter().map(|k| k.as_slice()));
                    encode_command(&mut out, &a);
                }
            }
        }
        let conn = self.conn.as_mut().ok_or((ClientError::Closed, 0))?;
        conn.write_all(&out)
            .map_err(|e| (ClientError::Io(e.kind()), 0))?;
        conn.flush().map_err(|e| (ClientError::Io(e.kind()), 0))?;
        self.round_trips += 1;
        let mut replies = Vec::with_capacity(cmds.len());
        let mut received = 0usize;
        let mut chunk = vec![0u8; 16 * 1024];
        while replies.len() < cmds.len() {
            match decode_reply(&self.rx, &self.limits) {
                Ok(Decoded::Frame(r, used)) => {
                    self.rx.drain(..used);
                    replies.push(r);
                    continue;
                }
                Ok(Decoded::Incomplete) => {}
                Err(e) => return Err((ClientError::Protocol(e), received.max(1))),
            }
            let n = conn
                .read(&mut chunk)
                .map_err(|e| (ClientError::Io(e.kind()), received))?;
            if n == 0 {
                return Err((ClientError::Closed, received));
            }
            received += n;
            self.rx.extend_from_slice(chunk.get(..n).unwrap_or(&[]));
        }
        Ok(replies)
    }
}
