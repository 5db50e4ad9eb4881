//! Host (std) transport: TCP with connect/read/write timeouts, a mutex-protected pool of
//! clients, and [`RedisFindexStore::connect`].
//!
//! **This transport blocks inside its futures**: a read waits on the socket (up to the I/O
//! timeout) instead of returning `Poll::Pending`, and [`GroupCommit`] waits on a condition
//! variable. That is right for the host server, which runs one thread per connection and runs
//! each request with `kms::block_on` (the futures complete on their first poll); do not drive
//! these futures from a single-threaded poll loop that serves other connections.

use crate::client::{Client, Stream, Transport};
use crate::resp::Limits;
use crate::store::{AppendBatcher, Changes, OpenError, Pool, RedisFindexStore, StoreOptions};
use crate::url::{RedisUrl, UrlError};
use alloc::vec::Vec;
use core::fmt;
use embedded_io::ErrorKind;
use kms::store::StoreError;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Condvar;
use std::sync::Mutex;
use std::time::Duration;

/// A blocking std TCP stream (socket timeouts) behind the async [`Stream`] trait.
///
/// [`Stream::try_read`] switches the socket to non-blocking mode for good (it is only called
/// on the connection that receives invalidation messages, which then sends nothing more).
pub struct Tcp {
    socket: TcpStream,
    nonblocking: bool,
}

impl Stream for Tcp {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        loop {
            match std::io::Read::read(&mut self.socket, buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                // Socket read timeouts surface as WouldBlock on Unix: report them as timeouts.
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    return Err(ErrorKind::TimedOut);
                }
                r => return r.map_err(|e| kind(&e)),
            }
        }
    }

    async fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        match std::io::Write::write(&mut self.socket, buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Err(ErrorKind::TimedOut),
            r => r.map_err(|e| kind(&e)),
        }
    }

    async fn flush(&mut self) -> Result<(), ErrorKind> {
        std::io::Write::flush(&mut self.socket).map_err(|e| kind(&e))
    }

    fn try_read(&mut self, buf: &mut [u8]) -> Result<Option<usize>, ErrorKind> {
        if !self.nonblocking {
            self.socket.set_nonblocking(true).map_err(|e| kind(&e))?;
            self.nonblocking = true;
        }
        loop {
            match std::io::Read::read(&mut self.socket, buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(None),
                r => return r.map(Some).map_err(|e| kind(&e)),
            }
        }
    }
}

/// TCP transport with timeouts.
#[derive(Debug, Clone, Copy)]
pub struct TcpTransport {
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Read and write timeout of every socket operation.
    pub io_timeout: Duration,
}

fn kind(e: &std::io::Error) -> ErrorKind {
    embedded_io::Error::kind(e)
}

impl Transport for TcpTransport {
    type Stream = Tcp;
    /// Blocks for up to the connect timeout (per resolved address).
    async fn connect(&self, host: &str, port: u16) -> Result<Tcp, ErrorKind> {
        let addrs = (host, port).to_socket_addrs().map_err(|e| kind(&e))?;
        let mut last = ErrorKind::NotFound;
        for a in addrs {
            match TcpStream::connect_timeout(&a, self.connect_timeout) {
                Ok(s) => {
                    s.set_read_timeout(Some(self.io_timeout))
                        .map_err(|e| kind(&e))?;
                    s.set_write_timeout(Some(self.io_timeout))
                        .map_err(|e| kind(&e))?;
                    s.set_nodelay(true).map_err(|e| kind(&e))?;
                    return Ok(Tcp {
                        socket: s,
                        nonblocking: false,
                    });
                }
                Err(e) => last = kind(&e),
            }
        }
        Err(last)
    }
}

/// Options of [`RedisFindexStore::connect`].
#[derive(Debug, Clone, Copy)]
pub struct ConnectOptions {
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Per-operation socket timeout (a stalled Redis fails requests after this long).
    pub io_timeout: Duration,
    /// Idle connections kept for reuse (more are opened under load, then closed).
    pub max_idle: usize,
    /// Reply limits.
    pub limits: Limits,
    /// Merge the index appends of concurrent requests of this process (group commit).
    pub group_commit: bool,
    /// Store tunables (index and rollback-detection limits).
    pub store: StoreOptions,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            connect_timeout: Duration::from_secs(3),
            io_timeout: Duration::from_secs(5),
            max_idle: 32,
            limits: Limits::default(),
            group_commit: true,
            store: StoreOptions::default(),
        }
    }
}

/// A pool of clients behind a `Mutex` (held only to take or return a client).
pub struct StdPool {
    idle: Mutex<Vec<Client<TcpTransport>>>,
    url: RedisUrl,
    transport: TcpTransport,
    limits: Limits,
    max_idle: usize,
    stats: Mutex<(u64, u64)>,
    batcher: Option<GroupCommit>,
}

impl fmt::Debug for StdPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StdPool").field("url", &self.url).finish()
    }
}

impl StdPool {
    /// A pool for a URL (connects lazily).
    pub fn new(url: RedisUrl, opts: &ConnectOptions) -> Self {
        StdPool {
            idle: Mutex::new(Vec::new()),
            url,
            transport: TcpTransport {
                connect_timeout: opts.connect_timeout,
                io_timeout: opts.io_timeout,
            },
            limits: opts.limits,
            max_idle: opts.max_idle,
            stats: Mutex::new((0, 0)),
            batcher: opts.group_commit.then(GroupCommit::default),
        }
    }

    /// (connections opened, request round trips) by clients that were returned to the pool.
    pub fn stats(&self) -> (u64, u64) {
        self.stats.lock().map(|s| *s).unwrap_or((0, 0))
    }
}

impl Pool for StdPool {
    type Transport = TcpTransport;
    type Batcher = GroupCommit;
    type Lock = parking_lot::RawMutex;

    fn acquire(&self) -> Client<TcpTransport> {
        let reused = self.idle.lock().ok().and_then(|mut v| v.pop());
        reused.unwrap_or_else(|| Client::new(self.transport, self.url.clone(), self.limits))
    }

    fn batcher(&self) -> Option<&GroupCommit> {
        self.batcher.as_ref()
    }

    fn release(&self, mut client: Client<TcpTransport>) {
        if let Ok(mut s) = self.stats.lock() {
            s.0 += client.connects;
            s.1 += client.round_trips;
        }
        client.connects = 0;
        client.round_trips = 0;
        if !client.is_connected() {
            return;
        }
        if let Ok(mut v) = self.idle.lock()
            && v.len() < self.max_idle
        {
            v.push(client);
        }
    }
}

/// [`AppendBatcher`] on a `Mutex` + `Condvar`: the first caller to find no batch in flight
/// becomes the leader of everything queued so far; the others wait for their batch's result,
/// blocking their thread (host only: see the module documentation).
#[derive(Default)]
pub struct GroupCommit {
    state: Mutex<BatchState>,
    done: Condvar,
}

#[derive(Default)]
struct BatchState {
    /// Changes of the batch being gathered, its number and how many callers it holds.
    queue: Changes,
    open: u64,
    open_callers: usize,
    /// A leader is appending a batch.
    busy: bool,
    /// Finished batches whose callers have not all read the result: (number, result, unread).
    results: Vec<(u64, Result<(), StoreError>, usize)>,
}

impl AppendBatcher for GroupCommit {
    async fn submit<F>(&self, changes: Changes, mut run: F) -> Result<(), StoreError>
    where
        F: AsyncFnMut(&Changes) -> Result<(), StoreError>,
    {
        let poisoned = || StoreError::Backend("index batcher lock poisoned");
        let mine = {
            let mut st = self.state.lock().map_err(|_| poisoned())?;
            st.queue.extend(changes);
            st.open_callers += 1;
            st.open
        };
        loop {
            // Under the lock: our batch's result, or the batch we lead. The guard never lives
            // across the `.await` below.
            let (batch, callers, number) = {
                let mut st = self.state.lock().map_err(|_| poisoned())?;
                loop {
                    if let Some(i) = st.results.iter().position(|(n, _, _)| *n == mine) {
                        let entry = st.results.get_mut(i).ok_or_else(poisoned)?;
                        entry.2 = entry.2.saturating_sub(1);
                        let r = entry.1.clone();
                        if entry.2 == 0 {
                            let _ = st.results.swap_remove(i);
                        }
                        return r;
                    }
                    if !st.busy {
                        // Lead the open batch: it is batch `mine` (ours is not finished, and a
                        // batch is only taken by a leader, which then finishes it before `busy`
                        // clears).
                        st.busy = true;
                        let batch = core::mem::take(&mut st.queue);
                        let callers = core::mem::take(&mut st.open_callers);
                        let number = st.open;
                        st.open += 1;
                        break (batch, callers, number);
                    }
                    st = self.done.wait(st).map_err(|_| poisoned())?;
                }
            };
            let r = run(&batch).await;
            let mut st = self.state.lock().map_err(|_| poisoned())?;
            st.busy = false;
            st.results.push((number, r, callers));
            self.done.notify_all();
        }
    }
}

#[cfg(test)]
mod batch_tests {
    use super::*;
    use crate::findex::{Entry, Op};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn group_commit_appends_everything_once_and_shares_results() {
        let g = Arc::new(GroupCommit::default());
        let appended = Arc::new(Mutex::new(Vec::new()));
        let runs = Arc::new(AtomicUsize::new(0));
        let hs: Vec<_> = (0..16u64)
            .map(|t| {
                let (g, appended, runs) =
                    (Arc::clone(&g), Arc::clone(&appended), Arc::clone(&runs));
                std::thread::spawn(move || {
                    for i in 0..50u64 {
                        let e = Entry {
                            op: Op::Insert,
                            version: t * 1000 + i,
                            uid: alloc::vec![1],
                        };
                        let fail = t == 3 && i == 7;
                        let submit =
                            g.submit(alloc::vec![(b"k".to_vec(), e)], async |batch: &Changes| {
                                runs.fetch_add(1, Ordering::SeqCst);
                                std::thread::yield_now();
                                if batch.iter().any(|(_, e)| e.version == 3007) {
                                    return Err(StoreError::Unavailable("injected"));
                                }
                                appended
                                    .lock()
                                    .unwrap()
                                    .extend(batch.iter().map(|(_, e)| e.version));
                                Ok(())
                            });
                        let r = kms::block_on(submit, || {});
                        let injected = StoreError::Unavailable("injected");
                        match r {
                            // the failing batch fails every caller in it, and only those
                            Err(e) => assert_eq!(e, injected),
                            Ok(()) => {
                                assert!(!fail);
                                assert!(appended.lock().unwrap().contains(&(t * 1000 + i)));
                            }
                        }
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        let a = appended.lock().unwrap();
        let unique: std::collections::BTreeSet<_> = a.iter().collect();
        assert_eq!(unique.len(), a.len(), "no change appended twice");
        assert!(!a.contains(&3007));
        assert!(
            g.state.lock().unwrap().results.is_empty(),
            "every result was read"
        );
        assert!(runs.load(Ordering::SeqCst) <= 16 * 50);
    }
}

/// Why [`RedisFindexStore::connect`] failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectError {
    /// The URL does not parse.
    Url(UrlError),
    /// Opening the store failed (Redis down, wrong secret, ...).
    Open(OpenError),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Url(e) => write!(f, "{e}"),
            ConnectError::Open(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for ConnectError {}

impl RedisFindexStore<StdPool> {
    /// Connect to `redis://[user:pass@]host:port[/db]` with the 32-byte database secret.
    /// Refuses a database created with another secret ([`OpenError::WrongSecret`]).
    ///
    /// Blocking (the transport blocks): [`RedisFindexStore::open`] run with `kms::block_on`.
    pub fn connect(
        url: &str,
        db_secret: &[u8; 32],
        opts: ConnectOptions,
    ) -> Result<Self, ConnectError> {
        let url = RedisUrl::parse(url).map_err(ConnectError::Url)?;
        let open = RedisFindexStore::open_with(StdPool::new(url, &opts), db_secret, opts.store);
        kms::block_on(open, || {}).map_err(ConnectError::Open)
    }
}

/// Why the database secret file was refused.
#[derive(Debug)]
pub enum SecretFileError {
    /// The file could not be read (missing, permissions, ...).
    Read(std::io::Error),
    /// The content is not standard base64.
    Encoding,
    /// The decoded secret is not 32 bytes.
    Length(usize),
}

impl fmt::Display for SecretFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretFileError::Read(e) => write!(f, "cannot read the database secret file: {e}"),
            SecretFileError::Encoding => {
                f.write_str("the database secret file must hold the secret in base64")
            }
            SecretFileError::Length(n) => {
                write!(
                    f,
                    "the database secret must be 32 bytes (base64 of 32 random bytes), found {n} bytes"
                )
            }
        }
    }
}

impl std::error::Error for SecretFileError {}

/// Read a database secret file: the base64 (RFC 4648, padded) of 32 bytes, surrounding
/// whitespace ignored. Decoding is constant-time (`base64ct`); buffers are zeroized.
pub fn read_secret_file(
    path: &std::path::Path,
) -> Result<zeroize::Zeroizing<[u8; 32]>, SecretFileError> {
    let text = zeroize::Zeroizing::new(std::fs::read(path).map_err(SecretFileError::Read)?);
    decode_secret(&text)
}

/// Decode the base64 text of a 32-byte secret (see [`read_secret_file`]).
pub fn decode_secret(text: &[u8]) -> Result<zeroize::Zeroizing<[u8; 32]>, SecretFileError> {
    use base64ct::{Base64, Encoding};
    let trimmed = text.trim_ascii();
    let mut buf = zeroize::Zeroizing::new([0u8; 64]);
    let n = Base64::decode(trimmed, &mut buf[..])
        .map_err(|_| SecretFileError::Encoding)?
        .len();
    if n != 32 {
        return Err(SecretFileError::Length(n));
    }
    let mut out = zeroize::Zeroizing::new([0u8; 32]);
    out.copy_from_slice(&buf[..32]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn secret_decoding() {
        let ok = b"QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI=\n";
        assert_eq!(*decode_secret(ok).unwrap(), [0x42; 32]);
        assert!(matches!(
            decode_secret(b"QkJC"),
            Err(SecretFileError::Length(3))
        ));
        assert!(matches!(
            decode_secret(b"not base64!"),
            Err(SecretFileError::Encoding)
        ));
        assert!(matches!(
            decode_secret(b""),
            Err(SecretFileError::Length(0))
        ));
        let e = read_secret_file(std::path::Path::new("/nonexistent/secret")).unwrap_err();
        assert!(
            matches!(&e, SecretFileError::Read(io) if io.kind() == std::io::ErrorKind::NotFound),
            "{e}"
        );
        assert!(
            e.to_string()
                .contains("cannot read the database secret file")
        );
    }
}
