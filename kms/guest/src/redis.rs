//! A blocking RESP transport for `kms-redis` over netstack TCP: each read or write runs the
//! stack's poll loop until it makes progress or its deadline passes (then
//! [`embedded_io::ErrorKind::TimedOut`], which the Redis client turns into a clean
//! "Redis did not answer in time" store error).
//!
//! The Redis host must be an IPv4 literal (there is no DNS in the image); under QEMU it is the
//! `guestfwd` address.

use alloc::sync::Arc;
use alloc::vec::Vec;

use embedded_io::ErrorKind;
use kms_redis::Pool;
use kms_redis::client::{Client, Transport};
use kms_redis::resp::Limits;
use kms_redis::url::RedisUrl;
use netstack::{ConnId, ConnState, Duration, IpAddress, IpEndpoint, Ipv4Address, Nic, TcpError};

use crate::net::{Clock, SharedStack, poll_and_idle};

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

    fn connect(&self, host: &str, port: u16) -> Result<NetStream<N>, ErrorKind> {
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
        loop {
            let state = self
                .stack
                .with(|s| s.state(conn))
                .map_err(|_| ErrorKind::Other)?;
            match state.map_err(tcp_kind)? {
                ConnState::Established | ConnState::PeerClosed => return Ok(stream),
                ConnState::Reset => return Err(ErrorKind::ConnectionRefused),
                ConnState::Connecting => {}
            }
            if self.clock.now() >= deadline {
                return Err(ErrorKind::TimedOut);
            }
            poll_and_idle(&self.stack, &*self.clock, Duration::from_millis(1));
        }
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
    /// Retries `op` (a non-blocking stack call) while it would block, polling the stack between
    /// attempts, until the I/O deadline.
    fn blocking<R>(
        &mut self,
        mut op: impl FnMut(&mut netstack::Stack<N>, ConnId) -> Result<R, TcpError>,
    ) -> Result<R, ErrorKind> {
        let deadline = self.clock.now() + self.io_timeout;
        loop {
            let r = self
                .stack
                .with(|s| op(s, self.conn))
                .map_err(|_| ErrorKind::Other)?;
            match r {
                Err(TcpError::WouldBlock) => {}
                other => return other.map_err(tcp_kind),
            }
            if self.clock.now() >= deadline {
                return Err(ErrorKind::TimedOut);
            }
            poll_and_idle(&self.stack, &*self.clock, Duration::from_millis(1));
        }
    }
}

impl<N: Nic> Drop for NetStream<N> {
    fn drop(&mut self) {
        let _ = self.stack.with(|s| s.close(self.conn));
    }
}

impl<N: Nic> embedded_io::ErrorType for NetStream<N> {
    type Error = ErrorKind;
}

impl<N: Nic> embedded_io::Read for NetStream<N> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.blocking(|s, c| s.read(c, buf))
    }
}

impl<N: Nic> embedded_io::Write for NetStream<N> {
    fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.blocking(|s, c| s.write(c, buf))
    }

    fn flush(&mut self) -> Result<(), ErrorKind> {
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

impl<N: Nic + Send> Pool for NetPool<N> {
    type Transport = NetTransport<N>;

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
