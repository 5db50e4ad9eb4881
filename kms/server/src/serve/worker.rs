//! The connection workers: a few threads, each with its own `epoll` (through `mio`), each serving
//! the connections handed to it, so that a busy server answers many requests per wake-up instead
//! of waking one thread per request (issue 15: the wake-ups and context switches of a thread per
//! connection were most of the kernel's share of an Encrypt).
//!
//! Per request a connection costs one `recv` and one `send`: sockets are non-blocking and
//! edge-triggered, a read shorter than the buffer means the socket was drained (new data raises
//! a new edge), and a response is written at once (the socket is registered for writability only
//! once; a wake-up for it comes only after a write found the send buffer full).
//!
//! Deadlines ([`kms::pace`]) are checked on every event of a connection and by a sweep of all the
//! worker's connections every [`SWEEP`]. A request that blocks on the store (a Redis round trip)
//! blocks its worker's other connections meanwhile: hence several workers per core by default.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant};

use kms::app::Listener;
use kms::conn::Conn;
use kms::pace::Pace;
use mio::net::TcpStream as MioStream;
use mio::{Events, Interest, Poll, Token, Waker};
use zeroize::Zeroizing;

use super::{BufferedOsRandom, Shared, Slot, is_quiet, unix_now};

/// How often a worker checks the deadlines of connections that have no events.
pub const SWEEP: Duration = Duration::from_millis(100);

/// The token of a worker's waker (new connections queued).
const WAKE: Token = Token(usize::MAX);

/// Size of a worker's read buffer.
const READ_BUF: usize = 16 * 1024;

/// A connection on its way to a worker.
struct Incoming {
    tcp: TcpStream,
    slot: Slot,
    which: Listener,
}

/// One worker as the accept loops see it.
struct Handle {
    queue: Sender<Incoming>,
    waker: Waker,
}

/// The workers; connections are handed out in turn.
pub(super) struct Workers {
    handles: Vec<Handle>,
    next: AtomicUsize,
}

impl Workers {
    /// Starts `count` (at least 1) worker threads, each waiting for its first connection.
    pub(super) fn start(count: usize, shared: &Arc<Shared>) -> io::Result<Self> {
        let mut handles = Vec::new();
        for i in 0..count.max(1) {
            let poll = Poll::new()?;
            let waker = Waker::new(poll.registry(), WAKE)?;
            let (queue, rx) = channel();
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("kms-worker-{i}"))
                .spawn(move || run(&shared, poll, &rx))?;
            handles.push(Handle { queue, waker });
        }
        Ok(Workers {
            handles,
            next: AtomicUsize::new(0),
        })
    }

    /// Gives `tcp` to the next worker.
    pub(super) fn hand(&self, tcp: TcpStream, slot: Slot, which: Listener) -> io::Result<()> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len().max(1);
        let h = self
            .handles
            .get(i)
            .ok_or_else(|| io::Error::other("no worker"))?;
        h.queue
            .send(Incoming { tcp, slot, which })
            .map_err(|_| io::Error::other("worker gone"))?;
        h.waker.wake()
    }
}

/// One connection of a worker.
struct Entry {
    tcp: MioStream,
    conn: Conn,
    pace: Pace,
    accepted: Instant,
    /// The last time output was pending and none could be written (write timeout).
    stalled_since: Option<Instant>,
    /// Close once the pending output is written.
    closing: bool,
    _slot: Slot,
}

/// What to do with a connection after an event.
enum Next {
    Keep,
    Close,
}

fn run(shared: &Shared, mut poll: Poll, rx: &Receiver<Incoming>) {
    let mut conns: HashMap<usize, Entry> = HashMap::new();
    let mut next_token = 0usize;
    let mut events = Events::with_capacity(256);
    let mut rng = BufferedOsRandom::new();
    let mut buf = Zeroizing::new(vec![0u8; READ_BUF]);
    let mut next_sweep = Instant::now() + SWEEP;
    loop {
        let timeout =
            (!conns.is_empty()).then(|| next_sweep.saturating_duration_since(Instant::now()));
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() != io::ErrorKind::Interrupted {
                eprintln!("kms-server: worker poll failed: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
            continue;
        }
        for ev in events.iter() {
            let token = ev.token();
            if token == WAKE {
                while let Ok(inc) = rx.try_recv() {
                    next_token = next_token.wrapping_add(1) % (usize::MAX - 1);
                    while conns.contains_key(&next_token) {
                        next_token = (next_token + 1) % (usize::MAX - 1);
                    }
                    if let Some(e) = admit(shared, &poll, inc, Token(next_token)) {
                        let _ = conns.insert(next_token, e);
                    }
                }
                continue;
            }
            let Some(entry) = conns.get_mut(&token.0) else {
                continue;
            };
            // A panic while serving one connection closes that connection only: the worker
            // and its other connections go on (as with the thread per connection before).
            let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                service(shared, entry, &mut rng, &mut buf)
            }));
            let next = match served {
                Ok(Ok(n)) => n,
                Err(_) => {
                    eprintln!("kms-server: a request panicked; its connection is closed");
                    Next::Close
                }
                Ok(Err(e)) => {
                    if !is_quiet(&e) {
                        match entry.tcp.peer_addr() {
                            Ok(p) => eprintln!("kms-server: connection from {p}: {e}"),
                            Err(_) => eprintln!("kms-server: connection: {e}"),
                        }
                    }
                    Next::Close
                }
            };
            if matches!(next, Next::Close)
                && let Some(mut e) = conns.remove(&token.0)
            {
                let _ = poll.registry().deregister(&mut e.tcp);
            }
        }
        let now = Instant::now();
        if now >= next_sweep {
            next_sweep = now + SWEEP;
            let expired: Vec<usize> = conns
                .iter()
                .filter(|(_, e)| expired(shared, e, now))
                .map(|(k, _)| *k)
                .collect();
            for k in expired {
                if let Some(mut e) = conns.remove(&k) {
                    let _ = poll.registry().deregister(&mut e.tcp);
                }
            }
        }
    }
}

/// Registers a new connection (non-blocking, no Nagle) with the worker's poll.
fn admit(shared: &Shared, poll: &Poll, inc: Incoming, token: Token) -> Option<Entry> {
    let conn = match Conn::accept(&shared.app, inc.which) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kms-server: connection: {e}");
            return None;
        }
    };
    if inc.tcp.set_nodelay(true).is_err() || inc.tcp.set_nonblocking(true).is_err() {
        return None;
    }
    let mut tcp = MioStream::from_std(inc.tcp);
    poll.registry()
        .register(&mut tcp, token, Interest::READABLE | Interest::WRITABLE)
        .ok()?;
    Some(Entry {
        tcp,
        conn,
        pace: Pace::new(Duration::ZERO),
        accepted: Instant::now(),
        stalled_since: None,
        closing: false,
        _slot: inc.slot,
    })
}

/// Whether `e` has overrun a deadline (its phase's, or the write timeout).
fn expired(shared: &Shared, e: &Entry, now: Instant) -> bool {
    let at = now.saturating_duration_since(e.accepted);
    e.pace.check(at, &shared.options.deadlines).is_err()
        || e.stalled_since
            .is_some_and(|t| now.saturating_duration_since(t) > shared.options.write_timeout)
}

/// Writes as much pending output as the socket takes. True when nothing is left.
fn flush(e: &mut Entry) -> io::Result<bool> {
    loop {
        let out = e.conn.pending_tls();
        if out.is_empty() {
            e.stalled_since = None;
            return Ok(true);
        }
        match e.tcp.write(out) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                e.conn.consume_tls(n);
                let at = e.accepted.elapsed();
                e.pace.observe(at, e.conn.phase(), n);
                e.stalled_since = None;
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                if e.stalled_since.is_none() {
                    e.stalled_since = Some(Instant::now());
                }
                return Ok(false);
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
}

/// Handles an event of one connection: sends what is pending, then reads and answers requests
/// until the socket is drained (or output backs up).
fn service(
    shared: &Shared,
    e: &mut Entry,
    rng: &mut BufferedOsRandom,
    buf: &mut [u8],
) -> io::Result<Next> {
    loop {
        if expired(shared, e, Instant::now()) {
            return Ok(Next::Close);
        }
        if !flush(e)? {
            // The client is not reading: stop reading too until it does.
            return Ok(Next::Keep);
        }
        if e.closing {
            let _ = e.tcp.flush();
            return Ok(Next::Close);
        }
        let n = match e.tcp.read(buf) {
            Ok(0) => return Ok(Next::Close),
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                let at = e.accepted.elapsed();
                e.pace.observe(at, e.conn.phase(), 0);
                return Ok(Next::Keep);
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        let mut env = kms::Env {
            now: unix_now(),
            rng,
        };
        let app = &shared.app;
        let at = e.accepted.elapsed();
        e.pace.observe(at, e.conn.phase(), 0);
        let mut progress = e.conn.on_tls(app, &mut env, buf.get(..n).unwrap_or(&[]));
        e.pace.observe(e.accepted.elapsed(), e.conn.phase(), n);
        // The host's stores block inside their futures: a request completes on its first
        // poll, this loop is for the general contract.
        while progress.waiting {
            std::thread::yield_now();
            progress = e.conn.poll(app, &mut env);
        }
        if let Some(effect) = progress.effect {
            shared.run(effect);
        }
        if let Some(err) = progress.tls_error {
            // Send the alert if the socket takes it at once, then close.
            let _ = flush(e);
            return Err(io::Error::other(err));
        }
        if progress.close {
            e.closing = true;
            continue;
        }
        let at = e.accepted.elapsed();
        e.pace.observe(at, e.conn.phase(), 0);
        if n < buf.len() {
            // A short read drained the socket: send the answer and wait for the next edge.
            if !flush(e)? {
                return Ok(Next::Keep);
            }
            let at = e.accepted.elapsed();
            e.pace.observe(at, e.conn.phase(), 0);
            return Ok(Next::Keep);
        }
    }
}
