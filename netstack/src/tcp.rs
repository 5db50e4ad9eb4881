//! TCP connection identifiers, errors, and [`TcpStream`]: a connection seen through `embedded-io`.
//!
//! The stack's own API ([`Stack::read`], [`Stack::write`]) never blocks: it returns
//! [`TcpError::WouldBlock`] and the caller's poll loop decides what to do, which is how a single-threaded
//! server drives many connections. [`TcpStream`] is the blocking view for code written against
//! `embedded_io::{Read, Write}` (the Redis client): when the socket has nothing to give, it calls the caller's
//! `poll` closure, which advances the stack (and may idle the CPU, or give up with [`TcpError::TimedOut`]).

use core::fmt;

use crate::nic::Nic;
use crate::stack::Stack;

/// Identifies one TCP connection of a [`Stack`]. Stale after [`Stack::close`]/[`Stack::abort`]: using it then
/// gives [`TcpError::InvalidConnection`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

/// Identifies a listener created by [`Stack::listen`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListenerId(pub(crate) usize);

/// Errors of TCP operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpError {
    /// Nothing to read or no room to write right now; poll the stack and retry.
    WouldBlock,
    /// The connection was reset by the peer or timed out.
    Reset,
    /// The connection id is stale (closed) or unknown.
    InvalidConnection,
    /// The caller's poll closure gave up waiting.
    TimedOut,
    /// Writing after the peer can no longer receive (or after a local shutdown).
    NotWritable,
}

impl fmt::Display for TcpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::WouldBlock => "operation would block",
            Self::Reset => "connection reset or timed out",
            Self::InvalidConnection => "stale or unknown connection",
            Self::TimedOut => "timed out waiting for the network",
            Self::NotWritable => "connection is not writable",
        })
    }
}

impl core::error::Error for TcpError {}

impl embedded_io::Error for TcpError {
    fn kind(&self) -> embedded_io::ErrorKind {
        use embedded_io::ErrorKind;
        match self {
            Self::WouldBlock => ErrorKind::Other,
            Self::Reset => ErrorKind::ConnectionReset,
            Self::InvalidConnection => ErrorKind::NotConnected,
            Self::TimedOut => ErrorKind::TimedOut,
            Self::NotWritable => ErrorKind::BrokenPipe,
        }
    }
}

/// The state of a connection as the application sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnState {
    /// The handshake has not finished.
    Connecting,
    /// Data can flow both ways.
    Established,
    /// The peer sent FIN: reads drain what is buffered then return end of stream; writes still work.
    PeerClosed,
    /// Reset or timed out: reads and writes fail.
    Reset,
}

/// A blocking `embedded-io` view of one connection.
///
/// Made by [`Stack::stream`]. `poll` is called whenever the socket cannot make progress; it must advance the
/// stack (`stack.poll(now)`) and may wait for the next deadline or an interrupt. Returning an error ends the
/// wait with that error (use [`TcpError::TimedOut`] for deadlines).
pub struct TcpStream<'a, N: Nic, P> {
    stack: &'a mut Stack<N>,
    conn: ConnId,
    poll: P,
}

impl<N: Nic, P> fmt::Debug for TcpStream<'_, N, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpStream")
            .field("conn", &self.conn)
            .finish_non_exhaustive()
    }
}

impl<'a, N, P> TcpStream<'a, N, P>
where
    N: Nic,
    P: FnMut(&mut Stack<N>) -> Result<(), TcpError>,
{
    pub(crate) fn new(stack: &'a mut Stack<N>, conn: ConnId, poll: P) -> Self {
        Self { stack, conn, poll }
    }

    /// The connection this stream reads and writes.
    pub fn conn(&self) -> ConnId {
        self.conn
    }

    /// The stack, for anything the stream does not cover.
    pub fn stack(&mut self) -> &mut Stack<N> {
        self.stack
    }

    /// Waits until the handshake completes (for connections made with [`Stack::connect`]).
    pub fn wait_connected(&mut self) -> Result<(), TcpError> {
        loop {
            match self.stack.state(self.conn)? {
                ConnState::Connecting => (self.poll)(self.stack)?,
                ConnState::Established | ConnState::PeerClosed => return Ok(()),
                ConnState::Reset => return Err(TcpError::Reset),
            }
        }
    }

    /// Reads at least one byte; `Ok(0)` only at end of stream or for an empty `buf`.
    pub fn read_blocking(&mut self, buf: &mut [u8]) -> Result<usize, TcpError> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            match self.stack.read(self.conn, buf) {
                Err(TcpError::WouldBlock) => (self.poll)(self.stack)?,
                other => return other,
            }
        }
    }

    /// Writes at least one byte of a non-empty `buf`.
    pub fn write_blocking(&mut self, buf: &[u8]) -> Result<usize, TcpError> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            match self.stack.write(self.conn, buf) {
                Err(TcpError::WouldBlock) => (self.poll)(self.stack)?,
                other => return other,
            }
        }
    }

    /// Waits until the peer has acknowledged everything written.
    pub fn flush_blocking(&mut self) -> Result<(), TcpError> {
        while self.stack.unacked(self.conn)? > 0 {
            (self.poll)(self.stack)?;
        }
        Ok(())
    }
}

impl<N: Nic, P> embedded_io::ErrorType for TcpStream<'_, N, P> {
    type Error = TcpError;
}

impl<N, P> embedded_io::Read for TcpStream<'_, N, P>
where
    N: Nic,
    P: FnMut(&mut Stack<N>) -> Result<(), TcpError>,
{
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, TcpError> {
        self.read_blocking(buf)
    }
}

impl<N, P> embedded_io::Write for TcpStream<'_, N, P>
where
    N: Nic,
    P: FnMut(&mut Stack<N>) -> Result<(), TcpError>,
{
    fn write(&mut self, buf: &[u8]) -> Result<usize, TcpError> {
        self.write_blocking(buf)
    }

    fn flush(&mut self) -> Result<(), TcpError> {
        self.flush_blocking()
    }
}

impl<N, P> embedded_io::ReadReady for TcpStream<'_, N, P>
where
    N: Nic,
    P: FnMut(&mut Stack<N>) -> Result<(), TcpError>,
{
    fn read_ready(&mut self) -> Result<bool, TcpError> {
        self.stack.read_ready(self.conn)
    }
}

impl<N, P> embedded_io::WriteReady for TcpStream<'_, N, P>
where
    N: Nic,
    P: FnMut(&mut Stack<N>) -> Result<(), TcpError>,
{
    fn write_ready(&mut self) -> Result<bool, TcpError> {
        self.stack.write_ready(self.conn)
    }
}

/// The same traits for `embedded-io` 0.6 users (feature `embedded-io-06`).
#[cfg(feature = "embedded-io-06")]
mod eio06 {
    use super::{Nic, Stack, TcpError, TcpStream};
    use embedded_io_06 as eio;

    impl eio::Error for TcpError {
        fn kind(&self) -> eio::ErrorKind {
            match self {
                Self::WouldBlock => eio::ErrorKind::Other,
                Self::Reset => eio::ErrorKind::ConnectionReset,
                Self::InvalidConnection => eio::ErrorKind::NotConnected,
                Self::TimedOut => eio::ErrorKind::TimedOut,
                Self::NotWritable => eio::ErrorKind::BrokenPipe,
            }
        }
    }

    impl<N: Nic, P> eio::ErrorType for TcpStream<'_, N, P> {
        type Error = TcpError;
    }

    impl<N, P> eio::Read for TcpStream<'_, N, P>
    where
        N: Nic,
        P: FnMut(&mut Stack<N>) -> Result<(), TcpError>,
    {
        fn read(&mut self, buf: &mut [u8]) -> Result<usize, TcpError> {
            self.read_blocking(buf)
        }
    }

    impl<N, P> eio::Write for TcpStream<'_, N, P>
    where
        N: Nic,
        P: FnMut(&mut Stack<N>) -> Result<(), TcpError>,
    {
        fn write(&mut self, buf: &[u8]) -> Result<usize, TcpError> {
            self.write_blocking(buf)
        }

        fn flush(&mut self) -> Result<(), TcpError> {
            self.flush_blocking()
        }
    }
}
