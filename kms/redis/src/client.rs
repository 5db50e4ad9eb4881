//! A Redis client over any async byte [`Stream`]: connection set-up (`AUTH`, `SELECT`,
//! `SCRIPT LOAD`), pipelining, `EVALSHA` with reload on `NOSCRIPT`, and reconnection.
//!
//! The client is single-connection and `async`: every round trip is awaited, so a stream that
//! would block returns `Poll::Pending` up to whoever drives the request (the unikernel's poll
//! loop), and a stream that blocks inside its futures (the host's std socket) simply completes
//! on the first poll. A pool of clients gives concurrency (`crate::host::StdPool` on the host).
//! Timeouts belong to the stream: a read or write that times out must fail with
//! [`ErrorKind::TimedOut`] (the std transport sets socket timeouts; the unikernel's smoltcp
//! stream checks its clock on every poll). After any I/O failure the connection is dropped (a
//! late reply would desynchronize the pipeline) and the next request reconnects; so is a
//! connection whose exchange was abandoned half-way (its future dropped while pending).

use crate::resp::{Decoded, Limits, Reply, RespError, decode_reply, encode_command};
use crate::url::RedisUrl;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use core::future::Future;
use embedded_io::ErrorKind;

/// A byte stream to Redis, with async reads and writes.
///
/// A stream that has to wait returns `Poll::Pending` from these futures (and must be ready to
/// be polled again at any time: drivers may poll without a waker, see `kms::block_on`); one that
/// blocks inside them (std sockets with timeouts) is fine where blocking is acceptable.
// `async fn` in a public trait: the futures carry no `Send` bound on purpose (single-threaded
// drivers; the host's futures never cross threads either).
#[allow(async_fn_in_trait)]
pub trait Stream {
    /// Read at least one byte into `buf` (0: the peer closed the connection).
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind>;
    /// Write some of `buf` (at least one byte unless `buf` is empty).
    async fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind>;
    /// Push buffered bytes towards the peer.
    async fn flush(&mut self) -> Result<(), ErrorKind>;
    /// Read what has already arrived, without waiting: `Ok(None)` when nothing has.
    ///
    /// The default polls [`Stream::read`] once (a stream that would wait returns
    /// `Poll::Pending`, and the future is dropped). A stream whose `read` blocks must override
    /// it (the host's [`crate::host::Tcp`] switches its socket to non-blocking mode).
    fn try_read(&mut self, buf: &mut [u8]) -> Result<Option<usize>, ErrorKind> {
        let fut = core::pin::pin!(self.read(buf));
        let mut cx = core::task::Context::from_waker(core::task::Waker::noop());
        match fut.poll(&mut cx) {
            core::task::Poll::Ready(r) => r.map(Some),
            core::task::Poll::Pending => Ok(None),
        }
    }
}

/// Write all of `buf`.
async fn write_all<S: Stream>(stream: &mut S, mut buf: &[u8]) -> Result<(), ErrorKind> {
    while !buf.is_empty() {
        match stream.write(buf).await? {
            0 => return Err(ErrorKind::WriteZero),
            n => buf = buf.get(n..).unwrap_or(&[]),
        }
    }
    Ok(())
}

/// Opens byte streams to Redis.
#[allow(async_fn_in_trait)]
pub trait Transport {
    /// The stream type.
    type Stream: Stream;
    /// Open a connection (with the transport's connect timeout).
    async fn connect(&self, host: &str, port: u16) -> Result<Self::Stream, ErrorKind>;
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
    /// `CLIENT TRACKING` or `SUBSCRIBE` was refused (ACL, or a Redis older than 6).
    Tracking,
}

/// The channel Redis publishes invalidation messages on to RESP2 connections.
pub const INVALIDATE_CHANNEL: &[u8] = b"__redis__:invalidate";

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
            ClientError::Tracking => f.write_str("Redis refused CLIENT TRACKING"),
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
    /// An exchange started and has not finished: if it never does (its future was dropped),
    /// replies may still be on the way and the connection must not be reused.
    in_flight: bool,
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
            in_flight: false,
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
        self.in_flight = false;
    }

    /// True when a connection is open and usable (not left half-way through an exchange).
    pub fn is_connected(&self) -> bool {
        self.conn.is_some() && !self.in_flight
    }

    /// Send commands in one write and read their replies in order (one round trip).
    /// Error replies are returned as [`Reply::Error`] values; `NOSCRIPT` is handled here.
    pub async fn pipeline(&mut self, cmds: &[Command]) -> Result<Vec<Reply>, ClientError> {
        let mut replies = self.pipeline_with_retry(cmds).await?;
        // NOSCRIPT: the script cache was flushed; reload and resend those commands (they did not run).
        let again: Vec<usize> = replies
            .iter()
            .enumerate()
            .filter(|(_, r)| r.is_error_code("NOSCRIPT"))
            .map(|(i, _)| i)
            .collect();
        if !again.is_empty() {
            self.load_scripts().await?;
            let resend: Vec<Command> = again.iter().filter_map(|i| cmds.get(*i).cloned()).collect();
            let second = self.pipeline_with_retry(&resend).await?;
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
    pub async fn request(&mut self, args: &[&[u8]]) -> Result<Reply, ClientError> {
        let mut r = self.pipeline(&[Command::new(args)]).await?;
        r.pop().ok_or(ClientError::Closed)
    }

    async fn pipeline_with_retry(&mut self, cmds: &[Command]) -> Result<Vec<Reply>, ClientError> {
        let fresh = self.ensure_connected().await?;
        match self.exchange(cmds).await {
            Ok(r) => Ok(r),
            // A reused connection that the server had already closed (restart, idle timeout):
            // nothing was read back, so nothing ran; retry once on a new connection.
            Err((e, 0)) if !fresh && !e.is_timeout() && !matches!(e, ClientError::Protocol(_)) => {
                self.disconnect();
                self.ensure_connected().await?;
                self.exchange(cmds).await.map_err(|(e, _)| e)
            }
            Err((e, _)) => Err(e),
        }
    }

    /// Connect and set up the session if needed; returns true if a new connection was made.
    async fn ensure_connected(&mut self) -> Result<bool, ClientError> {
        if self.in_flight {
            // The previous exchange was abandoned half-way: its replies may still arrive.
            self.disconnect();
        }
        if self.conn.is_some() {
            return Ok(false);
        }
        self.rx.clear();
        let stream = self
            .transport
            .connect(&self.url.host, self.url.port)
            .await
            .map_err(ClientError::Connect)?;
        self.conn = Some(stream);
        self.connects += 1;
        let r = self.handshake().await;
        if r.is_err() {
            self.disconnect();
        }
        r.map(|_| true)
    }

    async fn handshake(&mut self) -> Result<(), ClientError> {
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
            let replies = self.exchange(&setup).await.map_err(|(e, _)| e)?;
            let mut it = replies.iter();
            if has_auth && !matches!(it.next(), Some(Reply::Status(_))) {
                return Err(ClientError::Auth);
            }
            if self.url.db != 0 && !matches!(it.next(), Some(Reply::Status(_))) {
                return Err(ClientError::Select);
            }
        }
        self.load_scripts().await
    }

    async fn load_scripts(&mut self) -> Result<(), ClientError> {
        if self.scripts.is_empty() {
            return Ok(());
        }
        let cmds: Vec<Command> = self
            .scripts
            .iter()
            .map(|s| Command::new(&[b"SCRIPT", b"LOAD", s.source.as_bytes()]))
            .collect();
        let replies = self.exchange(&cmds).await.map_err(|(e, _)| e)?;
        for (s, r) in self.scripts.iter_mut().zip(replies) {
            match r {
                Reply::Bulk(sha) if sha.len() == 40 => s.sha = Some(sha),
                r if r.is_error_code("LOADING") => return Err(ClientError::Loading),
                _ => return Err(ClientError::Script),
            }
        }
        Ok(())
    }

    /// Turn this connection into the receiver of Redis's invalidation messages for every key
    /// starting with `prefix` (server-assisted client-side caching, broadcasting mode):
    /// `CLIENT ID`, then `CLIENT TRACKING ON REDIRECT <own id> BCAST PREFIX <prefix>` and
    /// `SUBSCRIBE __redis__:invalidate` pipelined (2 round trips). The connection stays RESP2 (a
    /// connection may redirect to itself); afterwards it only receives, through
    /// [`Client::poll_invalidations`]. A refusal (ACL, Redis older than 6) is
    /// [`ClientError::Tracking`].
    pub async fn track_invalidations(&mut self, prefix: &[u8]) -> Result<(), ClientError> {
        self.ensure_connected().await?;
        let id = match self.exchange(&[Command::new(&[b"CLIENT", b"ID"])]).await {
            Ok(mut r) => match r.pop() {
                Some(Reply::Integer(id)) => alloc::format!("{id}"),
                _ => return Err(ClientError::Tracking),
            },
            Err((e, _)) => return Err(e),
        };
        let cmds = [
            Command::new(&[
                b"CLIENT",
                b"TRACKING",
                b"ON",
                b"REDIRECT",
                id.as_bytes(),
                b"BCAST",
                b"PREFIX",
                prefix,
            ]),
            Command::new(&[b"SUBSCRIBE", INVALIDATE_CHANNEL]),
        ];
        let r = self.exchange(&cmds).await.map_err(|(e, _)| e)?;
        match r.as_slice() {
            [Reply::Status(_), Reply::Array(sub)]
                if sub.first() == Some(&Reply::Bulk(b"subscribe".to_vec())) =>
            {
                Ok(())
            }
            _ => {
                self.disconnect();
                Err(ClientError::Tracking)
            }
        }
    }

    /// Apply every invalidation message that has already arrived on a connection set up by
    /// [`Client::track_invalidations`], without waiting: `keys(Some(list))` for each message,
    /// `keys(None)` when Redis invalidates everything (`FLUSHALL`/`FLUSHDB`) or sends something
    /// else (treated as "everything"). An error means the connection is gone (and dropped):
    /// messages may have been lost.
    pub fn poll_invalidations(
        &mut self,
        mut keys: impl FnMut(Option<&[Reply]>),
    ) -> Result<(), ClientError> {
        if self.in_flight {
            self.disconnect();
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err(ClientError::Closed);
        };
        let mut chunk = [0u8; 4096];
        loop {
            match conn.try_read(&mut chunk) {
                Ok(None) => break,
                Ok(Some(0)) => {
                    self.disconnect();
                    return Err(ClientError::Closed);
                }
                Ok(Some(n)) => self.rx.extend_from_slice(chunk.get(..n).unwrap_or(&[])),
                Err(e) => {
                    self.disconnect();
                    return Err(ClientError::Io(e));
                }
            }
        }
        loop {
            match decode_reply(&self.rx, &self.limits) {
                Ok(Decoded::Frame(r, used)) => {
                    self.rx.drain(..used);
                    match &r {
                        Reply::Array(m) => match m.as_slice() {
                            [Reply::Bulk(kind), Reply::Bulk(ch), Reply::Array(list)]
                                if kind == b"message" && ch == INVALIDATE_CHANNEL =>
                            {
                                keys(Some(list))
                            }
                            _ => keys(None),
                        },
                        _ => keys(None),
                    }
                }
                Ok(Decoded::Incomplete) => return Ok(()),
                Err(e) => {
                    self.disconnect();
                    return Err(ClientError::Protocol(e));
                }
            }
        }
    }

    /// Write all commands, read as many replies. On error returns the error and the number of
    /// reply bytes received, and drops the connection.
    async fn exchange(&mut self, cmds: &[Command]) -> Result<Vec<Reply>, (ClientError, usize)> {
        self.in_flight = true;
        let r = self.exchange_inner(cmds).await;
        self.in_flight = false;
        if r.is_err() {
            self.disconnect();
        }
        r
    }

    async fn exchange_inner(
        &mut self,
        cmds: &[Command],
    ) -> Result<Vec<Reply>, (ClientError, usize)> {
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
        write_all(conn, &out)
            .await
            .map_err(|e| (ClientError::Io(e), 0))?;
        conn.flush().await.map_err(|e| (ClientError::Io(e), 0))?;
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
                .await
                .map_err(|e| (ClientError::Io(e), received))?;
            if n == 0 {
                return Err((ClientError::Closed, received));
            }
            received += n;
            self.rx.extend_from_slice(chunk.get(..n).unwrap_or(&[]));
        }
        Ok(replies)
    }
}
