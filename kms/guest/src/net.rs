//! The network stack shared between the server loop and the Redis client, and the clock.
//!
//! One vCPU, no threads. The Redis transport's futures never poll the stack (they return
//! `Pending`): a KMS request waiting on Redis stays pending in its connection while the server
//! loop polls the stack and serves the others. Only the two provisioning steps (the
//! `/redis-findex` probe and opening the store at `/start`) run to completion with
//! [`block_on_stack`], which polls the stack between polls. The server loop and the Redis
//! transport reach the stack through a [`SharedStack`] lock that each holds only for one
//! non-blocking stack operation (never across a call into the KMS); a second lock attempt while
//! one is held is a logic error, reported as [`Busy`] instead of spinning forever: see
//! [`SharedStack::with`].

use alloc::sync::Arc;
use core::future::Future;

use netstack::{Duration, Instant, Nic, Stack};

/// Monotonic time, wall-clock time and idling: the platform's clocks.
pub trait Clock: Send + Sync {
    /// Monotonic time since boot.
    fn now(&self) -> Instant;
    /// Untrusted wall-clock time (RTC), Unix seconds.
    fn unix_seconds(&self) -> i64;
    /// Waits at most `max` (or until an interrupt); may return at once.
    fn idle(&self, max: Duration);
}

/// The stack behind a lock, shared by the server loop and the Redis transport.
pub struct SharedStack<N: Nic> {
    inner: spin::Mutex<Stack<N>>,
}

/// The stack was already locked: a re-entrant use (a bug), reported instead of deadlocking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

impl<N: Nic> SharedStack<N> {
    /// Wraps a configured stack.
    pub fn new(stack: Stack<N>) -> Arc<Self> {
        Arc::new(SharedStack {
            inner: spin::Mutex::new(stack),
        })
    }

    /// Runs `f` with the stack. On one CPU the lock is never contended except by re-entrance,
    /// which would deadlock a spin lock: `try_lock` turns it into [`Busy`].
    pub fn with<R>(&self, f: impl FnOnce(&mut Stack<N>) -> R) -> Result<R, Busy> {
        let mut guard = self.inner.try_lock().ok_or(Busy)?;
        Ok(f(&mut guard))
    }
}

/// Runs `future` (a store call over the Redis transport) to completion: between its polls,
/// polls the stack and idles until the stack's next deadline (at most 1 ms). Other connections
/// wait meanwhile; a driver that keeps the future pending instead would serve them.
pub fn block_on_stack<N: Nic, F: Future>(
    stack: &SharedStack<N>,
    clock: &dyn Clock,
    future: F,
) -> F::Output {
    kms::block_on(future, || {
        poll_and_idle(stack, clock, Duration::from_millis(1))
    })
}

/// Polls the stack once and idles until its next deadline (bounded by `max`).
pub fn poll_and_idle<N: Nic>(stack: &SharedStack<N>, clock: &dyn Clock, max: Duration) {
    let now = clock.now();
    let delay = stack
        .with(|s| {
            s.poll(now);
            s.poll_delay(clock.now())
        })
        .ok()
        .flatten();
    let wait = match delay {
        Some(d) if d < max => d,
        _ => max,
    };
    if wait > Duration::ZERO {
        clock.idle(wait);
    }
}
