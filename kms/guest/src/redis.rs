//! A non-blocking RESP transport for `kms-redis` over netstack TCP: a read, write or connect
//! that would block returns `Poll::Pending` instead of spinning the stack, so whoever drives the
//! request (the server loop) can poll the stack and serve other connections meanwhile. Every
//! poll checks the operation's deadline (taken at its first poll) and fails with
//! [`embedded_io::ErrorKind::TimedOut`] after it, which the Redis client turns into a clean
//! "Redis did not answer in time" store error.
//!
//! The futures do not poll the stack themselves: the driver must poll it between polls of a
//! pending request (today [`crate::net::block_on_stack`] does both). A pending future wakes its
//! waker at once (there is no interrupt to wait for), meaning "poll me after the next stack
//! poll".
//!
//! The Redis host must be an IPv4 literal (there is no DNS in the image); under QEMU it is the
//! `guestfwd` address.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::future::poll_fn;
use core::task::Poll;

use embedded_io::ErrorKind;
use kms_redis::client::{Client, Stream, Transport};
use kms_redis::resp::Limits;
use kms_redis::url::RedisUrl;
use kms_redis::{NoBatcher, Pool};
use netstack::{ConnId, ConnState, Duration, IpAddress, IpEndpoint, Ipv4Address, Nic, TcpError};

use crate::net::{Clock, SharedStack};

/// Timeouts of the Redis transport.
#[derive(Debug, Clone, Copy)]
pub struct RedisTimeouts {
    /// TCP connection set-up.
    pub connect: Duration,
    /// Each read or write (a reply must start arriving within this).
    pub io: Duration,
}

impl Default for RedisTimeouts {
    fn default() -> Self {
        RedisTimeouts {
            connect: Duration::from_secs(5),
            io: Duration::from_secs(10),
        }
    }
}

/// Opens [`NetStream`]s on the shared stack.
pub struct NetTransport<N: Nic> {
    stack: Arc<SharedStack<N>>,
    clock: Arc<dyn Clock>,
    timeouts: RedisTimeouts,
}

impl<N: Nic> Clone for NetTransport<N> {
    fn clone(&self) -> Self {
        NetTransport {
            stack: self.stack.clone(),
            clock: self.clock.clone(),
            timeouts: self.timeouts,
        }
    }
}

/// Parses a dotted-quad IPv4 address.
fn parse_ipv4(host: &str) -> Option<Ipv4Address> {
    let mut octets = [0u8; 4];
    let mut parts = host.split('.');
    for o in &mut octets {
        *o = parts.next()?.parse().ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(Ipv4Address::from(octets))
}

fn tcp_kind(e: TcpError) -> ErrorKind {
    embedded_io::Error::kind(&e)
}

impl<N: Nic> Transport for NetTransport<N> {
    type Stream = NetStream<N>;

    async fn connect(&self, host: &str, port: u16) -> Result<NetStream<N>, ErrorKind> {
        let ip = parse_ipv4(host).ok_or(ErrorKind::InvalidInput)?;
        let remote = IpEndpoint::new(IpAddress::Ipv4(ip), port);
        let conn = self
            .stack
            .with(|s| s.connect(remote))
            .map_err(|_| ErrorKind::Other)?
            .map_err(|_| ErrorKind::AddrNotAvailable)?;
        let stream = NetStream {
            stack: self.stack.clone(),
            clock: self.clock.clone(),
            io_timeout: self.timeouts.io,
            conn,
        };
        let deadline = self.clock.now() + self.timeouts.connect;
        poll_fn(|cx| {
            let state = match self.stack.with(|s| s.state(conn)) {
                Ok(Ok(state)) => state,
                Ok(Err(e)) => return Poll::Ready(Err(tcp_kind(e))),
                Err(_) => return Poll::Ready(Err(ErrorKind::Other)),
            };
            match state {
                ConnState::Established | ConnState::PeerClosed => Poll::Ready(Ok(())),
                ConnState::Reset => Poll::Ready(Err(ErrorKind::ConnectionRefused)),
                ConnState::Connecting if self.clock.now() >= deadline => {
                    Poll::Ready(Err(ErrorKind::TimedOut))
                }
                ConnState::Connecting => {
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
            }
        })
        .await?;
        Ok(stream)
    }
}

/// One TCP connection to Redis. Closed (FIN) when dropped.
pub struct NetStream<N: Nic> {
    stack: Arc<SharedStack<N>>,
    clock: Arc<dyn Clock>,
    io_timeout: Duration,
    conn: ConnId,
}

impl<N: Nic> NetStream<N> {
    /// Tries `op` (a non-blocking stack call) on every poll: `Pending` while it would block,
    /// [`ErrorKind::TimedOut`] once the I/O deadline (from the first poll) has passed.
    async fn io<R>(
        &mut self,
        mut op: impl FnMut(&mut netstack::Stack<N>, ConnId) -> Result<R, TcpError>,
    ) -> Result<R, ErrorKind> {
        let deadline = self.clock.now() + self.io_timeout;
        poll_fn(|cx| match self.stack.with(|s| op(s, self.conn)) {
            Err(_) => Poll::Ready(Err(ErrorKind::Other)),
            Ok(Err(TcpError::WouldBlock)) if self.clock.now() >= deadline => {
                Poll::Ready(Err(ErrorKind::TimedOut))
            }
            Ok(Err(TcpError::WouldBlock)) => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Ok(r) => Poll::Ready(r.map_err(tcp_kind)),
        })
        .await
    }
}

impl<N: Nic> Drop for NetStream<N> {
    fn drop(&mut self) {
        let _ = self.stack.with(|s| s.close(self.conn));
    }
}

impl<N: Nic> Stream for NetStream<N> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.io(|s, c| s.read(c, buf)).await
    }

    async fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.io(|s, c| s.write(c, buf)).await
    }

    async fn flush(&mut self) -> Result<(), ErrorKind> {
        // Data is handed to smoltcp's send buffer; the next polls transmit it. Waiting for the
        // ACK would only add a round trip before the reply can arrive.
        Ok(())
    }
}

/// The Redis client pool of the image: at most `max_idle` idle connections kept.
pub struct NetPool<N: Nic> {
    transport: NetTransport<N>,
    url: RedisUrl,
    limits: Limits,
    idle: spin::Mutex<Vec<Client<NetTransport<N>>>>,
    max_idle: usize,
}

impl<N: Nic> NetPool<N> {
    /// A pool for `url` (connects lazily). `limits` bound each reply (heap use).
    pub fn new(
        stack: Arc<SharedStack<N>>,
        clock: Arc<dyn Clock>,
        url: RedisUrl,
        timeouts: RedisTimeouts,
        limits: Limits,
    ) -> Self {
        NetPool {
            transport: NetTransport {
                stack,
                clock,
                timeouts,
            },
            url,
            limits,
            idle: spin::Mutex::new(Vec::new()),
            max_idle: 2,
        }
    }
}

impl<N: Nic> Pool for NetPool<N> {
    type Transport = NetTransport<N>;
    type Batcher = NoBatcher;
    type Lock = spin::Mutex<()>;

    fn acquire(&self) -> Client<NetTransport<N>> {
        let reused = self.idle.try_lock().and_then(|mut v| v.pop());
        reused.unwrap_or_else(|| Client::new(self.transport.clone(), self.url.clone(), self.limits))
    }

    fn release(&self, client: Client<NetTransport<N>>) {
        if !client.is_connected() {
            return;
        }
        if let Some(mut v) = self.idle.try_lock()
            && v.len() < self.max_idle
        {
            v.push(client);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_ipv4;

    #[test]
    fn ipv4_literals_only() {
        assert_eq!(
            parse_ipv4("10.0.2.100").map(|a| a.octets()),
            Some([10, 0, 2, 100])
        );
        for bad in [
            "",
            "10.0.2",
            "10.0.2.100.1",
            "256.0.0.1",
            "redis.local",
            "10.0.2.-1",
        ] {
            assert_eq!(parse_ipv4(bad), None, "{bad}");
        }
    }
}
