//! `image relay 127.0.0.1:PORT`: copy stdin to a loopback TCP connection and the connection to stdout.
//!
//! QEMU's user networking can forward a guest connection to a program it starts for each connection
//! (`guestfwd=tcp:10.0.2.100:6379-cmd:<program>`), with the guest's byte stream on the program's stdin and
//! stdout. With this relay as the program, every guest connection to 10.0.2.100:6379 becomes its own host
//! connection to Redis, opened when the guest connects. The plain `guestfwd=…-tcp:127.0.0.1:PORT` form instead
//! opens one host connection when QEMU starts and shares it.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread;

/// Errors of [`relay`].
#[derive(Debug)]
pub enum RelayError {
    /// The target is not `IP:PORT`.
    BadTarget(String),
    /// The target is not a loopback address (the relay only reaches services on this host).
    NotLoopback(SocketAddr),
    /// Connecting or copying failed.
    Io(io::Error),
}

impl std::fmt::Display for RelayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::BadTarget(t) => write!(f, "target {t:?} is not IP:PORT"),
            Self::NotLoopback(a) => write!(f, "target {a} is not a loopback address"),
            Self::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for RelayError {}

fn pump(mut from: impl Read, mut to: impl Write) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(buf.get(..n).unwrap_or_default())?;
        to.flush()?;
    }
}

/// Relays stdin/stdout to `target` (a loopback `IP:PORT`) until the connection closes.
pub fn relay(target: &str) -> Result<(), RelayError> {
    let addr: SocketAddr = target
        .parse()
        .map_err(|_| RelayError::BadTarget(target.to_owned()))?;
    if !addr.ip().is_loopback() {
        return Err(RelayError::NotLoopback(addr));
    }
    let stream = TcpStream::connect(addr).map_err(RelayError::Io)?;
    let upstream = stream.try_clone().map_err(RelayError::Io)?;
    // stdin → target; at end of input, half-close so the server sees EOF.
    let up = thread::spawn(move || {
        let result = pump(io::stdin().lock(), &upstream);
        let _ = upstream.shutdown(Shutdown::Write);
        result
    });
    // target → stdout; when the server closes, we are done (the guest connection closes with us).
    let down = pump(&stream, io::stdout().lock());
    let _ = stream.shutdown(Shutdown::Both);
    down.map_err(RelayError::Io)?;
    // The stdin thread may still be blocked reading a guest that sends nothing more: exiting ends it.
    if up.is_finished() {
        up.join()
            .map_err(|_| RelayError::Io(io::Error::other("stdin thread panicked")))?
            .map_err(RelayError::Io)?;
    }
    Ok(())
}
