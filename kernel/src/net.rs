//! The network phase: netstack over virtio-net, address configuration, the ready line, and
//! the poll loop that drives the services.

use alloc::boxed::Box;
use alloc::vec::Vec;

use bootparams::cmdline::BootConfig;
use netstack::{Config, Limits, NetEvent, Stack};

use crate::drivers::virtio_net::VirtioNic;
use crate::time::Instant;

/// The stack type the services run on.
pub type NetStack = Stack<VirtioNic>;

/// A service driven by the poll loop.
pub trait Service {
    /// Called after every stack poll; does whatever work is ready without blocking.
    fn poll(&mut self, stack: &mut NetStack, now: netstack::Instant);
}

/// Converts our monotonic clock to netstack's.
pub fn now() -> netstack::Instant {
    netstack::Instant::from_micros(Instant::now().micros_since_boot() as i64)
}

/// Errors before the network is ready.
#[derive(Debug)]
pub enum NetError {
    /// The stack refused its configuration.
    Stack(netstack::StackError),
    /// The RNG failed to seed the stack.
    Rng(crate::rng::RngError),
}

impl core::fmt::Display for NetError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Stack(e) => write!(f, "network stack: {e}"),
            Self::Rng(e) => write!(f, "network seed: {e}"),
        }
    }
}

/// Brings the interface up and waits until it has an address.
pub fn up(nic: VirtioNic, cfg: &BootConfig) -> Result<NetStack, NetError> {
    let random_seed = crate::rng::u64().map_err(NetError::Rng)?;
    let mut stack = Stack::new(
        nic,
        Config {
            ipv4: cfg.ip,
            random_seed,
            limits: Limits::default(),
        },
        now(),
    )
    .map_err(NetError::Stack)?;
    let mut last_active = Instant::now();
    loop {
        let active = stack.poll(now());
        while let Some(event) = stack.take_event() {
            match event {
                NetEvent::Configured(settings) => {
                    log::info!("net: {settings}");
                    return Ok(stack);
                }
                NetEvent::DhcpTimedOut => log::warn!("net: no DHCP answer yet, still trying"),
                NetEvent::Deconfigured => log::warn!("net: address lost"),
            }
        }
        maybe_idle(&mut stack, active, &mut last_active);
    }
}

/// Idle for this long without network activity before halting between polls.
const IDLE_AFTER_US: u64 = 10_000;
/// Longest halt: a received frame waits at most this long (the NIC is polled, not
/// interrupt-driven).
const MAX_HALT_US: u64 = 1_000;

/// Halts the CPU briefly when the stack has been quiet, so an idle guest does not spin a host
/// core; never while frames are flowing.
fn maybe_idle(stack: &mut NetStack, active: bool, last_active: &mut Instant) {
    let t = Instant::now();
    if active {
        *last_active = t;
        return;
    }
    if t.micros_since(*last_active) < IDLE_AFTER_US {
        crate::arch::relax();
        return;
    }
    let delay = stack
        .poll_delay(now())
        .map_or(MAX_HALT_US, |d| d.total_micros().min(MAX_HALT_US));
    if delay > 0 {
        crate::arch::apic::idle(delay);
    }
}

/// Runs the services forever.
pub fn serve(stack: &mut NetStack, mut services: Vec<Box<dyn Service>>) -> ! {
    let mut last_active = Instant::now();
    loop {
        let now = now();
        let active = stack.poll(now);
        while let Some(event) = stack.take_event() {
            match event {
                NetEvent::Configured(settings) => log::info!("net: {settings}"),
                NetEvent::DhcpTimedOut => log::warn!("net: DHCP timed out"),
                NetEvent::Deconfigured => log::warn!("net: address lost"),
            }
        }
        for s in services.iter_mut() {
            s.poll(stack, now);
        }
        maybe_idle(stack, active, &mut last_active);
    }
}
