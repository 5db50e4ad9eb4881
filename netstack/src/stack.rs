//! [`Stack`]: one smoltcp interface over a [`Nic`], its IPv4 configuration, TCP listeners and connections.
//!
//! Everything happens in [`Stack::poll`]: frames move between the NIC and the sockets, the DHCP client runs,
//! listeners refill their listening sockets, and closed connections are freed. Nothing blocks and nothing
//! reads a clock: the caller passes `now` and asks [`Stack::poll_delay`] when to call again.
//!
//! Limits are explicit ([`Limits`]): the number of TCP sockets (listening, connected and closing together),
//! the size of each socket's buffers, and how long a closing connection may linger. A SYN that finds no
//! listening socket because the limit is reached is answered with a RST: a refused connection, not a crash.

use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use smoltcp::iface::{
    Config as IfaceConfig, Interface, PollIngressSingleResult, PollResult, SocketHandle, SocketSet,
};
use smoltcp::socket::{dhcpv4, tcp};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, IpEndpoint, Ipv4Address};

use crate::config::{Ipv4Mode, Ipv4Settings, Ipv4Source, StaticIpv4};
use crate::device::{NicDevice, NicStats};
use crate::nic::Nic;
use crate::tcp::{ConnId, ConnState, ListenerId, TcpError, TcpStream};

/// Resource limits of a [`Stack`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum number of TCP sockets: listening, connected and closing together.
    pub max_sockets: usize,
    /// Of `max_sockets`, how many only outgoing connections ([`Stack::connect`]) may use:
    /// listeners (and so clients, however many connect, linger or half-open) stop at
    /// `max_sockets - reserved_outbound`, and the service's own connections (its database)
    /// always find a socket.
    pub reserved_outbound: usize,
    /// Receive buffer per TCP socket, in bytes (the largest advertised window).
    pub rx_buffer: usize,
    /// Transmit buffer per TCP socket, in bytes.
    pub tx_buffer: usize,
    /// Idle timeout (smoltcp's socket timeout): a connection whose peer sends nothing at all (no data, no
    /// ACK, no keep-alive answer) for this long is reset. With `keep_alive` shorter than this, a live but quiet
    /// peer keeps its connection; a vanished one loses it.
    pub timeout: Option<Duration>,
    /// Send a keep-alive probe after this much silence.
    pub keep_alive: Option<Duration>,
    /// A connection closed by the application is freed at the latest this long after the close, even if the
    /// peer never finishes the shutdown.
    pub close_linger: Duration,
    /// A listener's socket still in the handshake (SYN received, no ACK yet) this long is reset and listens
    /// again, so half-open connections (a SYN flood, a vanished client) cannot hold sockets for long.
    pub handshake_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_sockets: 64,
            reserved_outbound: 8,
            rx_buffer: 64 * 1024,
            tx_buffer: 64 * 1024,
            timeout: Some(Duration::from_secs(60)),
            keep_alive: Some(Duration::from_secs(20)),
            close_linger: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// Configuration of a [`Stack`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// How the interface gets its address.
    pub ipv4: Ipv4Mode,
    /// Seed for smoltcp (TCP initial sequence numbers, DHCP transaction ids) and for local port choice. Pass
    /// fresh randomness from the platform RNG on every boot.
    pub random_seed: u64,
    /// Resource limits.
    pub limits: Limits,
}

/// Errors of [`Stack`] operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StackError {
    /// The NIC's MAC address is not a unicast address.
    BadMacAddress,
    /// A limit is zero or out of range.
    BadLimits(&'static str),
    /// The socket limit is reached.
    TooManySockets,
    /// A listener already uses this port.
    PortInUse,
    /// The interface has no IPv4 address yet.
    NoAddress,
    /// smoltcp refused to open the socket (for example an unspecified or unroutable remote address).
    Unaddressable,
    /// No free local port was found.
    NoLocalPort,
    /// The listener id is unknown.
    InvalidListener,
    /// The socket buffers could not be allocated.
    OutOfMemory,
}

impl fmt::Display for StackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadMacAddress => f.write_str("NIC MAC address is not unicast"),
            Self::BadLimits(what) => write!(f, "invalid limits: {what}"),
            Self::TooManySockets => f.write_str("TCP socket limit reached"),
            Self::PortInUse => f.write_str("port already has a listener"),
            Self::NoAddress => f.write_str("interface has no IPv4 address"),
            Self::Unaddressable => f.write_str("address cannot be used for a connection"),
            Self::NoLocalPort => f.write_str("no free local port"),
            Self::InvalidListener => f.write_str("unknown listener"),
            Self::OutOfMemory => f.write_str("out of memory for socket buffers"),
        }
    }
}

impl core::error::Error for StackError {}

/// Socket counts of one listener ([`Stack::listener_stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListenerStats {
    /// Waiting for a SYN.
    pub listening: usize,
    /// SYN received, handshake not finished.
    pub handshaking: usize,
    /// Established, waiting for [`Stack::accept`].
    pub ready: usize,
    /// Reset or aborted, about to listen again.
    pub closing: usize,
}

/// A change of the interface's IPv4 configuration, reported by [`Stack::take_event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetEvent {
    /// The interface got (or changed) its address.
    Configured(Ipv4Settings),
    /// The DHCP lease was lost; the interface has no address.
    Deconfigured,
    /// DHCP did not answer within the timeout and there is no fallback; DHCP keeps trying.
    DhcpTimedOut,
}

/// Events kept until [`Stack::take_event`] collects them; older ones are dropped first.
const MAX_EVENTS: usize = 8;
/// Frames taken from the NIC per [`Stack::poll`]; more waiting makes [`Stack::poll_delay`] return zero.
const INGRESS_BUDGET: usize = 256;
/// First local port for outgoing connections (RFC 6335 dynamic range).
const EPHEMERAL_FIRST: u16 = 49152;

#[derive(Debug)]
struct Listener {
    port: u16,
    backlog: usize,
    /// Sockets owned by the listener: listening, in the handshake, or established but not yet accepted.
    sockets: Vec<ListenSlot>,
}

#[derive(Debug, Clone, Copy)]
struct ListenSlot {
    handle: SocketHandle,
    /// When the socket was first seen in SYN-RECEIVED.
    handshake_since: Option<Instant>,
}

#[derive(Debug)]
struct Slot {
    generation: u32,
    handle: Option<SocketHandle>,
}

/// A TCP/IP stack over one NIC.
pub struct Stack<N: Nic> {
    device: NicDevice<N>,
    iface: Interface,
    sockets: SocketSet<'static>,
    limits: Limits,
    mode: Ipv4Mode,
    dhcp: Option<SocketHandle>,
    dhcp_deadline: Option<Instant>,
    settings: Option<Ipv4Settings>,
    events: VecDeque<NetEvent>,
    listeners: Vec<Option<Listener>>,
    slots: Vec<Slot>,
    /// Connections closed by the application, freed once finished or at the deadline.
    closing: Vec<(SocketHandle, Instant)>,
    tcp_sockets: usize,
    /// The last poll stopped at the ingress budget with frames possibly still waiting.
    ingress_pending: bool,
    port_rng: u64,
    now: Instant,
}

impl<N: Nic> fmt::Debug for Stack<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stack")
            .field("settings", &self.settings)
            .field("tcp_sockets", &self.tcp_sockets)
            .field("nic", &self.device.stats())
            .finish_non_exhaustive()
    }
}

fn check_limits(l: &Limits) -> Result<(), StackError> {
    if l.max_sockets == 0 {
        return Err(StackError::BadLimits("max_sockets is zero"));
    }
    if l.reserved_outbound >= l.max_sockets {
        return Err(StackError::BadLimits(
            "reserved_outbound leaves no socket for listeners",
        ));
    }
    // smoltcp's window scaling covers up to 2^30 bytes (RFC 7323 §2.3); tiny buffers would stall.
    let range = 536..=(1 << 30);
    if !range.contains(&l.rx_buffer) || !range.contains(&l.tx_buffer) {
        return Err(StackError::BadLimits(
            "socket buffers must be 536 bytes .. 1 GiB",
        ));
    }
    Ok(())
}

/// A zeroed buffer, or [`StackError::OutOfMemory`] instead of the allocator's abort.
fn zeroed_buffer(len: usize) -> Result<Vec<u8>, StackError> {
    let mut v = Vec::new();
    v.try_reserve_exact(len)
        .map_err(|_| StackError::OutOfMemory)?;
    v.resize(len, 0);
    Ok(v)
}

/// `now + d`, saturating (smoltcp's `Add` would overflow on absurd durations).
fn later(now: Instant, d: Duration) -> Instant {
    let d = i64::try_from(d.total_micros()).unwrap_or(i64::MAX);
    Instant::from_micros(now.total_micros().saturating_add(d))
}

/// SplitMix64 (Steele, Lea, Flood 2014): spreads the caller's seed for local port choice.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl<N: Nic> Stack<N> {
    /// Creates the interface. DHCP (if configured) starts with the first [`Stack::poll`].
    pub fn new(nic: N, config: Config, now: Instant) -> Result<Self, StackError> {
        check_limits(&config.limits)?;
        let mac = EthernetAddress(nic.mac_address());
        if !mac.is_unicast() {
            return Err(StackError::BadMacAddress);
        }
        let mut device = NicDevice::new(nic);
        let mut iface_config = IfaceConfig::new(HardwareAddress::Ethernet(mac));
        iface_config.random_seed = config.random_seed;
        let iface = Interface::new(iface_config, &mut device, now);
        let mut port_rng = config.random_seed ^ 0x6e65_7473_7461_636b;
        splitmix64(&mut port_rng);
        let mut stack = Self {
            device,
            iface,
            sockets: SocketSet::new(Vec::new()),
            limits: config.limits,
            mode: config.ipv4,
            dhcp: None,
            dhcp_deadline: None,
            settings: None,
            events: VecDeque::new(),
            listeners: Vec::new(),
            slots: Vec::new(),
            closing: Vec::new(),
            tcp_sockets: 0,
            ingress_pending: false,
            port_rng,
            now,
        };
        match config.ipv4 {
            Ipv4Mode::Static(s) => stack.apply(s, Ipv4Source::Static),
            Ipv4Mode::Dhcp { timeout, .. } => {
                stack.dhcp = Some(stack.sockets.add(dhcpv4::Socket::new()));
                stack.dhcp_deadline = Some(later(now, timeout));
            }
        }
        Ok(stack)
    }

    fn push_event(&mut self, event: NetEvent) {
        if self.events.len() >= MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    fn apply(&mut self, s: StaticIpv4, source: Ipv4Source) {
        self.iface.update_ip_addrs(|addrs| {
            addrs.clear();
            // Capacity is IFACE_MAX_ADDR_COUNT (>= 1) and we just cleared it.
            let _ = addrs.push(IpCidr::Ipv4(s.address));
        });
        match s.gateway {
            Some(gw) => {
                // The route table has room: we keep at most one route.
                let _ = self.iface.routes_mut().add_default_ipv4_route(gw);
            }
            None => {
                self.iface.routes_mut().remove_default_ipv4_route();
            }
        }
        let settings = Ipv4Settings {
            address: s.address,
            gateway: s.gateway,
            source,
        };
        self.settings = Some(settings);
        self.push_event(NetEvent::Configured(settings));
    }

    fn unapply(&mut self) {
        self.iface.update_ip_addrs(|addrs| addrs.clear());
        self.iface.routes_mut().remove_default_ipv4_route();
        self.settings = None;
        self.push_event(NetEvent::Deconfigured);
    }

    /// Moves frames, runs timers, DHCP and the listeners. Returns whether any socket may have changed state
    /// (so the caller should look at its connections again).
    pub fn poll(&mut self, now: Instant) -> bool {
        self.now = now;
        let mut changed = self.poll_dhcp_timeout(now);
        // One frame at a time (bounded work, see smoltcp's "DoS warning" on `Interface::poll`), refilling the
        // listeners after each one so a burst of SYNs finds fresh listening sockets up to the socket limit.
        self.ingress_pending = true;
        for _ in 0..INGRESS_BUDGET {
            match self
                .iface
                .poll_ingress_single(now, &mut self.device, &mut self.sockets)
            {
                PollIngressSingleResult::None => {
                    self.ingress_pending = false;
                    break;
                }
                PollIngressSingleResult::PacketProcessed => {}
                PollIngressSingleResult::SocketStateChanged => {
                    changed = true;
                    self.refill_listeners();
                }
            }
        }
        changed |= self
            .iface
            .poll_egress(now, &mut self.device, &mut self.sockets)
            == PollResult::SocketStateChanged;
        changed |= self.poll_dhcp();
        self.reap_closing();
        self.refill_listeners();
        changed
    }

    fn poll_dhcp_timeout(&mut self, now: Instant) -> bool {
        let (Some(deadline), Ipv4Mode::Dhcp { fallback, .. }) = (self.dhcp_deadline, self.mode)
        else {
            return false;
        };
        if self.settings.is_some() || now < deadline {
            return false;
        }
        self.dhcp_deadline = None;
        match fallback {
            Some(s) => {
                if let Some(h) = self.dhcp.take() {
                    self.sockets.remove(h);
                }
                self.apply(s, Ipv4Source::Fallback);
            }
            None => self.push_event(NetEvent::DhcpTimedOut),
        }
        true
    }

    fn poll_dhcp(&mut self) -> bool {
        let Some(h) = self.dhcp else { return false };
        let event = match self.sockets.get_mut::<dhcpv4::Socket>(h).poll() {
            None => return false,
            Some(dhcpv4::Event::Configured(c)) => Some(StaticIpv4 {
                address: c.address,
                gateway: c.router,
            }),
            Some(dhcpv4::Event::Deconfigured) => None,
        };
        match event {
            Some(s) => {
                self.dhcp_deadline = None;
                self.apply(s, Ipv4Source::Dhcp);
            }
            // smoltcp reports "deconfigured" once at start; only a lost lease is news.
            None if self.settings.is_none() => return false,
            None => self.unapply(),
        }
        true
    }

    fn reap_closing(&mut self) {
        let now = self.now;
        let sockets = &mut self.sockets;
        let before = self.closing.len();
        self.closing.retain(|&(h, deadline)| {
            let s = sockets.get_mut::<tcp::Socket>(h);
            let done = match s.state() {
                // After an abort smoltcp forgets the peer once the RST is out.
                tcp::State::Closed => s.remote_endpoint().is_none(),
                tcp::State::TimeWait => true,
                _ => false,
            };
            if done || now >= deadline {
                sockets.remove(h);
                false
            } else {
                true
            }
        });
        self.tcp_sockets -= before - self.closing.len();
    }

    /// A new socket; one for a listener (`outbound` false) leaves the reserved ones free.
    fn new_tcp_socket(&mut self, outbound: bool) -> Result<SocketHandle, StackError> {
        let limit = if outbound {
            self.limits.max_sockets
        } else {
            self.limits.max_sockets - self.limits.reserved_outbound
        };
        if self.tcp_sockets >= limit {
            return Err(StackError::TooManySockets);
        }
        let mut s = tcp::Socket::new(
            tcp::SocketBuffer::new(zeroed_buffer(self.limits.rx_buffer)?),
            tcp::SocketBuffer::new(zeroed_buffer(self.limits.tx_buffer)?),
        );
        s.set_timeout(self.limits.timeout);
        s.set_keep_alive(self.limits.keep_alive);
        s.set_nagle_enabled(false);
        self.tcp_sockets += 1;
        Ok(self.sockets.add(s))
    }

    fn refill_listeners(&mut self) {
        let now = self.now;
        let handshake_timeout = self.limits.handshake_timeout;
        for i in 0..self.listeners.len() {
            let Some(Some(l)) = self.listeners.get_mut(i) else {
                continue;
            };
            let port = l.port;
            let mut listening = 0;
            for slot in &mut l.sockets {
                let s = self.sockets.get_mut::<tcp::Socket>(slot.handle);
                match s.state() {
                    tcp::State::SynReceived => match slot.handshake_since {
                        None => slot.handshake_since = Some(now),
                        Some(since) if now >= later(since, handshake_timeout) => {
                            // The RST goes out with the next egress; the socket listens again after that.
                            s.abort();
                            slot.handshake_since = None;
                        }
                        Some(_) => {}
                    },
                    // Reset before it was accepted (and any RST of ours is out): listen again. Cannot fail
                    // on a closed socket.
                    tcp::State::Closed if s.remote_endpoint().is_none() => {
                        let _ = s.listen(port);
                        slot.handshake_since = None;
                    }
                    _ => slot.handshake_since = None,
                }
                if s.state() == tcp::State::Listen {
                    listening += 1;
                }
            }
            let missing = l.backlog.saturating_sub(listening);
            for _ in 0..missing {
                let Ok(h) = self.new_tcp_socket(false) else {
                    return;
                };
                // Port is non-zero (checked in `listen`): cannot fail on a new socket.
                let _ = self.sockets.get_mut::<tcp::Socket>(h).listen(port);
                if let Some(Some(l)) = self.listeners.get_mut(i) {
                    l.sockets.push(ListenSlot {
                        handle: h,
                        handshake_since: None,
                    });
                }
            }
        }
    }

    /// When to call [`Stack::poll`] next (`None`: only when a frame arrives). Zero means now.
    pub fn poll_delay(&mut self, now: Instant) -> Option<Duration> {
        if self.ingress_pending {
            return Some(Duration::ZERO);
        }
        let mut at = self.iface.poll_at(now, &self.sockets);
        let mut consider = |t: Instant| at = Some(at.map_or(t, |a| a.min(t)));
        if let Some(d) = self.dhcp_deadline {
            consider(d);
        }
        for &(_, deadline) in &self.closing {
            consider(deadline);
        }
        for slot in self.listeners.iter().flatten().flat_map(|l| &l.sockets) {
            if let Some(since) = slot.handshake_since {
                consider(later(since, self.limits.handshake_timeout));
            }
        }
        at.map(|t| if t > now { t - now } else { Duration::ZERO })
    }

    /// The current IPv4 settings, if the interface has an address.
    pub fn ipv4_settings(&self) -> Option<Ipv4Settings> {
        self.settings
    }

    /// The oldest configuration change not yet collected.
    pub fn take_event(&mut self) -> Option<NetEvent> {
        self.events.pop_front()
    }

    /// Frame counters of the NIC adapter.
    pub fn nic_stats(&self) -> NicStats {
        self.device.stats()
    }

    /// The NIC.
    pub fn nic(&self) -> &N {
        self.device.nic()
    }

    /// The NIC, mutably.
    pub fn nic_mut(&mut self) -> &mut N {
        self.device.nic_mut()
    }

    /// TCP sockets in use (listening, connected, closing).
    pub fn tcp_sockets(&self) -> usize {
        self.tcp_sockets
    }

    /// Keeps `backlog` sockets listening on `port` (at least one). Connections that complete the handshake
    /// wait in the listener until [`Stack::accept`] takes them; they count against the socket limit.
    pub fn listen(&mut self, port: u16, backlog: usize) -> Result<ListenerId, StackError> {
        if port == 0 {
            return Err(StackError::Unaddressable);
        }
        if self.listeners.iter().flatten().any(|l| l.port == port) {
            return Err(StackError::PortInUse);
        }
        let id = match self.listeners.iter().position(Option::is_none) {
            Some(i) => i,
            None => {
                self.listeners.push(None);
                self.listeners.len() - 1
            }
        };
        let backlog = backlog.max(1);
        // At least one listening socket now, so the caller learns about a full stack immediately.
        let h = self.new_tcp_socket(false)?;
        let _ = self.sockets.get_mut::<tcp::Socket>(h).listen(port);
        if let Some(slot) = self.listeners.get_mut(id) {
            *slot = Some(Listener {
                port,
                backlog,
                sockets: vec![ListenSlot {
                    handle: h,
                    handshake_since: None,
                }],
            });
        }
        self.refill_listeners();
        Ok(ListenerId(id))
    }

    /// Stops listening: aborts the listener's sockets, including established connections not yet accepted.
    pub fn unlisten(&mut self, id: ListenerId) -> Result<(), StackError> {
        let l = self
            .listeners
            .get_mut(id.0)
            .and_then(Option::take)
            .ok_or(StackError::InvalidListener)?;
        let deadline = self.now;
        for ListenSlot { handle: h, .. } in l.sockets {
            self.sockets.get_mut::<tcp::Socket>(h).abort();
            // Freed by the next poll, after the RST (if any) went out.
            self.closing.push((h, deadline));
        }
        Ok(())
    }

    /// What the listener's sockets are doing, or `None` for an unknown listener.
    pub fn listener_stats(&self, id: ListenerId) -> Option<ListenerStats> {
        let l = self.listeners.get(id.0)?.as_ref()?;
        let mut stats = ListenerStats::default();
        for slot in &l.sockets {
            match self.sockets.get::<tcp::Socket>(slot.handle).state() {
                tcp::State::Listen => stats.listening += 1,
                tcp::State::SynReceived => stats.handshaking += 1,
                tcp::State::Established | tcp::State::CloseWait => stats.ready += 1,
                _ => stats.closing += 1,
            }
        }
        Some(stats)
    }

    /// Takes one connection that finished its handshake on the listener, if any.
    pub fn accept(&mut self, id: ListenerId) -> Option<ConnId> {
        let l = self.listeners.get_mut(id.0)?.as_mut()?;
        let sockets = &self.sockets;
        let pos = l.sockets.iter().position(|slot| {
            let h = slot.handle;
            matches!(
                sockets.get::<tcp::Socket>(h).state(),
                tcp::State::Established | tcp::State::CloseWait
            )
        })?;
        let h = l.sockets.swap_remove(pos).handle;
        Some(self.insert_conn(h))
    }

    fn insert_conn(&mut self, h: SocketHandle) -> ConnId {
        if let Some(index) = self.slots.iter().position(|s| s.handle.is_none())
            && let Some(slot) = self.slots.get_mut(index)
        {
            slot.handle = Some(h);
            // Slots are bounded by max_sockets, so the index fits; the generation wraps after 2^32 reuses.
            return ConnId {
                index: index as u32,
                generation: slot.generation,
            };
        }
        self.slots.push(Slot {
            generation: 0,
            handle: Some(h),
        });
        ConnId {
            index: (self.slots.len() - 1) as u32,
            generation: 0,
        }
    }

    fn handle(&self, c: ConnId) -> Result<SocketHandle, TcpError> {
        match self.slots.get(c.index as usize) {
            Some(Slot {
                generation,
                handle: Some(h),
            }) if *generation == c.generation => Ok(*h),
            _ => Err(TcpError::InvalidConnection),
        }
    }

    fn socket(&mut self, c: ConnId) -> Result<&mut tcp::Socket<'static>, TcpError> {
        let h = self.handle(c)?;
        Ok(self.sockets.get_mut::<tcp::Socket>(h))
    }

    fn next_local_port(&mut self) -> Result<u16, StackError> {
        let span = u64::from(u16::MAX - EPHEMERAL_FIRST) + 1;
        for _ in 0..64 {
            let port = EPHEMERAL_FIRST + (splitmix64(&mut self.port_rng) % span) as u16;
            let sockets = &self.sockets;
            let in_use = self
                .slots
                .iter()
                .filter_map(|s| s.handle)
                .chain(self.closing.iter().map(|c| c.0))
                .any(|h| {
                    sockets
                        .get::<tcp::Socket>(h)
                        .local_endpoint()
                        .is_some_and(|e| e.port == port)
                });
            if !in_use {
                return Ok(port);
            }
        }
        Err(StackError::NoLocalPort)
    }

    /// Opens a connection to `remote`. The handshake runs in later polls: [`Stack::state`] says when it is
    /// done, and reads/writes return [`TcpError::WouldBlock`] until then.
    pub fn connect(&mut self, remote: IpEndpoint) -> Result<ConnId, StackError> {
        if self.settings.is_none() {
            return Err(StackError::NoAddress);
        }
        let port = self.next_local_port()?;
        let h = self.new_tcp_socket(true)?;
        let result =
            self.sockets
                .get_mut::<tcp::Socket>(h)
                .connect(self.iface.context(), remote, port);
        if result.is_err() {
            self.sockets.remove(h);
            self.tcp_sockets -= 1;
            return Err(StackError::Unaddressable);
        }
        Ok(self.insert_conn(h))
    }

    /// Reads what is buffered. `Ok(0)` for a non-empty `buf` means end of stream (the peer closed);
    /// [`TcpError::WouldBlock`] means nothing has arrived yet.
    pub fn read(&mut self, c: ConnId, buf: &mut [u8]) -> Result<usize, TcpError> {
        let s = self.socket(c)?;
        if buf.is_empty() {
            return Ok(0);
        }
        match s.recv_slice(buf) {
            Ok(0) => Err(TcpError::WouldBlock),
            Ok(n) => Ok(n),
            Err(tcp::RecvError::Finished) => Ok(0),
            Err(tcp::RecvError::InvalidState) => match s.state() {
                tcp::State::Listen | tcp::State::SynSent | tcp::State::SynReceived => {
                    Err(TcpError::WouldBlock)
                }
                _ => Err(TcpError::Reset),
            },
        }
    }

    /// Queues as much of `buf` as fits; [`TcpError::WouldBlock`] when the send buffer is full.
    pub fn write(&mut self, c: ConnId, buf: &[u8]) -> Result<usize, TcpError> {
        let s = self.socket(c)?;
        if buf.is_empty() {
            return Ok(0);
        }
        match s.send_slice(buf) {
            Ok(0) => Err(TcpError::WouldBlock),
            Ok(n) => Ok(n),
            Err(tcp::SendError::InvalidState) => match s.state() {
                tcp::State::Listen | tcp::State::SynSent | tcp::State::SynReceived => {
                    Err(TcpError::WouldBlock)
                }
                tcp::State::Closed => Err(TcpError::Reset),
                _ => Err(TcpError::NotWritable),
            },
        }
    }

    /// Whether [`Stack::read`] would return something other than [`TcpError::WouldBlock`].
    pub fn read_ready(&mut self, c: ConnId) -> Result<bool, TcpError> {
        let s = self.socket(c)?;
        Ok(match s.state() {
            tcp::State::Listen | tcp::State::SynSent | tcp::State::SynReceived => false,
            _ => s.can_recv() || !s.may_recv(),
        })
    }

    /// Whether [`Stack::write`] would return something other than [`TcpError::WouldBlock`].
    pub fn write_ready(&mut self, c: ConnId) -> Result<bool, TcpError> {
        let s = self.socket(c)?;
        Ok(match s.state() {
            tcp::State::Listen | tcp::State::SynSent | tcp::State::SynReceived => false,
            _ => s.can_send() || !s.may_send(),
        })
    }

    /// Bytes written but not yet acknowledged by the peer.
    pub fn unacked(&mut self, c: ConnId) -> Result<usize, TcpError> {
        let s = self.socket(c)?;
        if s.state() == tcp::State::Closed {
            return Err(TcpError::Reset);
        }
        Ok(s.send_queue())
    }

    /// The connection's state.
    pub fn state(&mut self, c: ConnId) -> Result<ConnState, TcpError> {
        Ok(match self.socket(c)?.state() {
            tcp::State::Listen | tcp::State::SynSent | tcp::State::SynReceived => {
                ConnState::Connecting
            }
            tcp::State::Established => ConnState::Established,
            tcp::State::Closed => ConnState::Reset,
            _ => ConnState::PeerClosed,
        })
    }

    /// The peer's address and port.
    pub fn remote_endpoint(&mut self, c: ConnId) -> Result<Option<IpEndpoint>, TcpError> {
        Ok(self.socket(c)?.remote_endpoint())
    }

    fn release(&mut self, c: ConnId) -> Result<SocketHandle, TcpError> {
        let slot = self
            .slots
            .get_mut(c.index as usize)
            .ok_or(TcpError::InvalidConnection)?;
        match slot.handle {
            Some(h) if slot.generation == c.generation => {
                slot.handle = None;
                slot.generation = slot.generation.wrapping_add(1);
                Ok(h)
            }
            _ => Err(TcpError::InvalidConnection),
        }
    }

    /// Closes gracefully: queued data is still sent, then a FIN. The id becomes stale at once; the socket is
    /// freed when the shutdown completes or after [`Limits::close_linger`].
    pub fn close(&mut self, c: ConnId) -> Result<(), TcpError> {
        let h = self.release(c)?;
        self.sockets.get_mut::<tcp::Socket>(h).close();
        let deadline = later(self.now, self.limits.close_linger);
        self.closing.push((h, deadline));
        Ok(())
    }

    /// Resets the connection (RST) and frees it with the next poll.
    pub fn abort(&mut self, c: ConnId) -> Result<(), TcpError> {
        let h = self.release(c)?;
        self.sockets.get_mut::<tcp::Socket>(h).abort();
        self.closing.push((h, self.now));
        Ok(())
    }

    /// A blocking `embedded-io` view of `c`; `poll` advances the stack while it waits (see [`TcpStream`]).
    pub fn stream<P>(&mut self, c: ConnId, poll: P) -> TcpStream<'_, N, P>
    where
        P: FnMut(&mut Stack<N>) -> Result<(), TcpError>,
    {
        TcpStream::new(self, c, poll)
    }

    /// The IPv4 address of the interface, if any.
    pub fn ipv4_address(&self) -> Option<Ipv4Address> {
        self.settings.map(|s| s.address.address())
    }
}
