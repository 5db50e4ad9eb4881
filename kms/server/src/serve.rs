//! The I/O driver: accept TCP connections, run TLS, and move plaintext bytes between the TLS
//! stream and a sans-IO [`Session`]. It knows nothing about HTTP or KMIP.
//!
//! One thread per connection, with a cap on concurrent connections: beyond it, new
//! connections are closed at once (before the TLS handshake). Reads have a timeout, so an idle
//! or stalled client holds a thread for at most that long.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use kms::server::Action;
use zeroize::Zeroize;

use crate::tls::subject_common_name;

/// Per-connection protocol state, driven with the plaintext bytes of one TLS connection.
pub trait Session: Send {
    /// Consume `input` (possibly a partial request), append any response bytes to `out`, and
    /// say whether the connection should stay open. `user` is the authenticated identity.
    fn on_bytes(&mut self, user: Option<&str>, input: &[u8], out: &mut Vec<u8>) -> Action;
}

/// Creates one [`Session`] per accepted connection. Shared by all connection threads.
pub trait Handler: Send + Sync + 'static {
    /// The per-connection state.
    type Session: Session + 'static;
    /// A fresh session for a new connection.
    fn session(&self) -> Self::Session;
}

/// Where the identity of a connection comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityPolicy {
    /// Subject CN of the verified client certificate (mTLS). No certificate or no CN: `None`.
    ClientCertCn,
    /// Every connection runs as this user (`--insecure-no-auth` runs as `admin`).
    Fixed(String),
}

/// Knobs of [`serve`].
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// How identity is established.
    pub identity: IdentityPolicy,
    /// Timeout of each socket read (handshake included); an idle keep-alive connection is
    /// closed after it.
    pub read_timeout: Duration,
    /// Timeout of each socket write.
    pub write_timeout: Duration,
    /// Maximum number of connections served at once.
    pub max_connections: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            identity: IdentityPolicy::ClientCertCn,
            read_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(60),
            max_connections: 512,
        }
    }
}

/// Accept connections on `listener` forever (until accepting fails fatally).
///
/// Each connection gets its own thread, TLS session (`tls`) and [`Handler::session`]. Errors of
/// one connection (bad TLS, no client certificate, timeouts, malformed requests) end only that
/// connection.
pub fn serve<H: Handler>(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    handler: Arc<H>,
    options: ServeOptions,
) -> io::Result<()> {
    let active = Arc::new(AtomicUsize::new(0));
    let options = Arc::new(options);
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(s) => s,
            // Transient accept errors (e.g. ECONNABORTED, EMFILE): keep serving.
            Err(e) => {
                eprintln!("kms-server: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        if active.fetch_add(1, Ordering::AcqRel) >= options.max_connections {
            active.fetch_sub(1, Ordering::AcqRel);
            drop(stream);
            continue;
        }
        let guard = ActiveGuard(active.clone());
        let (tls, handler, options) = (tls.clone(), handler.clone(), options.clone());
        let spawned = std::thread::Builder::new()
            .name("kms-conn".into())
            .spawn(move || {
                let _guard = guard;
                let peer = stream.peer_addr().ok();
                if let Err(e) = serve_connection(stream, tls, &*handler, &options)
                    && !is_quiet(&e)
                {
                    match peer {
                        Some(p) => eprintln!("kms-server: connection from {p}: {e}"),
                        None => eprintln!("kms-server: connection: {e}"),
                    }
                }
            });
        if let Err(e) = spawned {
            eprintln!("kms-server: cannot spawn a connection thread: {e}");
        }
    }
    Ok(())
}

struct ActiveGuard(Arc<AtomicUsize>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Errors that are a normal end of a connection, not worth a log line.
fn is_quiet(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::WouldBlock
            | io::ErrorKind::TimedOut
    )
}

/// Serve one connection until the peer closes it, the session asks to close, or an error.
pub fn serve_connection<H: Handler>(
    mut tcp: TcpStream,
    tls: Arc<rustls::ServerConfig>,
    handler: &H,
    options: &ServeOptions,
) -> io::Result<()> {
    tcp.set_read_timeout(Some(options.read_timeout))?;
    tcp.set_write_timeout(Some(options.write_timeout))?;
    tcp.set_nodelay(true)?;
    let mut conn = rustls::ServerConnection::new(tls).map_err(io::Error::other)?;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp)?;
    }
    let user = match &options.identity {
        IdentityPolicy::Fixed(u) => Some(u.clone()),
        IdentityPolicy::ClientCertCn => conn
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(subject_common_name),
    };
    let mut session = handler.session();
    let mut stream = rustls::Stream::new(&mut conn, &mut tcp);
    let mut input = vec![0u8; 16 * 1024];
    let mut out = Vec::with_capacity(16 * 1024);
    let result = loop {
        let n = match stream.read(&mut input) {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) => break Err(e),
        };
        let action = session.on_bytes(user.as_deref(), input.get(..n).unwrap_or(&[]), &mut out);
        let written = stream.write_all(&out).and_then(|()| stream.flush());
        // Responses can carry key material: wipe before reuse.
        out.zeroize();
        if let Err(e) = written {
            break Err(e);
        }
        if action == Action::Close {
            stream.conn.send_close_notify();
            let _ = stream.conn.complete_io(stream.sock);
            break Ok(());
        }
    };
    input.zeroize();
    result
}
