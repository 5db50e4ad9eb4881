//! Deadlines of one connection, per phase: the rule both servers apply against slow clients
//! (slowloris), sans-IO.
//!
//! A connection is always in one [`Phase`] (the driver asks the connection, e.g.
//! `kms::conn::Conn::phase`). The clock of a phase starts when the phase starts, **not** at
//! the last byte received, so a client that sends one byte now and then cannot keep a
//! connection (and its memory and socket) forever:
//!
//! | phase | ends when | deadline |
//! |---|---|---|
//! | [`Phase::Handshake`] | the TLS handshake completes | [`Deadlines::handshake`] from accept |
//! | [`Phase::Idle`] | a request starts arriving | [`Deadlines::idle`] |
//! | [`Phase::Receiving`] | the request is complete | after [`Deadlines::grace`], at least [`Deadlines::min_rate`] bytes/s on average; at most [`Deadlines::request`] |
//! | [`Phase::Sending`] | the client has read the response | as `Receiving`, counting bytes sent |
//! | [`Phase::Waiting`] | the store answered | none here (the store's own timeouts bound it) |
//!
//! Time is a monotonic [`Duration`] since any fixed origin of the driver's choosing (the guest's
//! netstack clock, `std::time::Instant` on the host): never wall-clock time, which the host of
//! a confidential VM controls.

use core::fmt;
use core::time::Duration;

/// Where a connection is, as far as deadlines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// TLS handshake in progress.
    Handshake,
    /// Between requests: nothing buffered, nothing to send.
    Idle,
    /// Part of a request (or of a TLS record) has arrived; `request` counts the requests the
    /// connection completed before, so back-to-back requests each get their own clock.
    Receiving {
        /// Requests completed before this one.
        request: u64,
    },
    /// A response is waiting for the client to read it.
    Sending {
        /// Requests completed so far.
        request: u64,
    },
    /// A request waits on the store.
    Waiting,
}

/// The limits. `Default` gives the values the servers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// From accept to a completed TLS handshake.
    pub handshake: Duration,
    /// Between requests (keep-alive).
    pub idle: Duration,
    /// Longest time one request may take to arrive, or one response to be read.
    pub request: Duration,
    /// Time a request or response has before [`Deadlines::min_rate`] applies.
    pub grace: Duration,
    /// Lowest average rate, in bytes per second, of a request arriving or a response being
    /// read once [`Deadlines::grace`] has passed.
    pub min_rate: u32,
}

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines {
            handshake: Duration::from_secs(10),
            idle: Duration::from_secs(30),
            request: Duration::from_secs(120),
            grace: Duration::from_secs(10),
            min_rate: 1024,
        }
    }
}

/// Why a connection was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    /// The TLS handshake took longer than [`Deadlines::handshake`].
    Handshake,
    /// No request started within [`Deadlines::idle`].
    Idle,
    /// A request or response moved slower than [`Deadlines::min_rate`].
    TooSlow,
    /// A request or response took longer than [`Deadlines::request`].
    Request,
}

impl fmt::Display for Expired {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Expired::Handshake => "TLS handshake deadline passed",
            Expired::Idle => "idle deadline passed",
            Expired::TooSlow => "request or response below the minimum byte rate",
            Expired::Request => "request or response deadline passed",
        })
    }
}

/// The deadline state of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    phase: Phase,
    since: Duration,
    bytes: u64,
}

impl Pace {
    /// A connection accepted at `now` (in its handshake).
    pub fn new(now: Duration) -> Self {
        Pace {
            phase: Phase::Handshake,
            since: now,
            bytes: 0,
        }
    }

    /// Records that the connection is in `phase` at `now`, having moved `bytes` (received
    /// while receiving, sent while sending) since the last call. A new phase restarts the clock.
    pub fn observe(&mut self, now: Duration, phase: Phase, bytes: usize) {
        if phase != self.phase {
            self.phase = phase;
            self.since = now;
            self.bytes = 0;
        }
        self.bytes = self.bytes.saturating_add(bytes as u64);
    }

    /// The phase last observed.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Whether the connection has overrun its phase's deadline at `now`.
    pub fn check(&self, now: Duration, d: &Deadlines) -> Result<(), Expired> {
        let elapsed = now.saturating_sub(self.since);
        match self.phase {
            Phase::Handshake if elapsed > d.handshake => Err(Expired::Handshake),
            Phase::Idle if elapsed > d.idle => Err(Expired::Idle),
            Phase::Receiving { .. } | Phase::Sending { .. } => {
                if elapsed > d.request {
                    Err(Expired::Request)
                } else if elapsed > d.grace && self.bytes < owed(elapsed, d.min_rate) {
                    Err(Expired::TooSlow)
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }

    /// How long from `now` until [`Pace::check`] can next fail if nothing moves (for a
    /// blocking driver's read timeout); `None` while waiting on the store.
    pub fn remaining(&self, now: Duration, d: &Deadlines) -> Option<Duration> {
        let elapsed = now.saturating_sub(self.since);
        let limit = match self.phase {
            Phase::Handshake => d.handshake,
            Phase::Idle => d.idle,
            Phase::Receiving { .. } | Phase::Sending { .. } => {
                // The rate rule fails once elapsed passes max(grace, bytes / rate).
                let at_rate = if d.min_rate == 0 {
                    d.request
                } else {
                    Duration::from_millis(self.bytes.saturating_mul(1000) / u64::from(d.min_rate))
                };
                d.request.min(d.grace.max(at_rate))
            }
            Phase::Waiting => return None,
        };
        Some(limit.saturating_sub(elapsed))
    }
}

/// A token bucket over whole seconds: at most [`Rate::burst`] at once, refilled by
/// [`Rate::per_second`] each second. The servers put it in front of unauthenticated work that
/// is expensive for them (a firmware round trip for `GET /attestation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests allowed at once.
    pub burst: u32,
    /// Requests allowed per second after that.
    pub per_second: u32,
}

/// The state of a [`Rate`] limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    rate: Rate,
    tokens: u32,
    last: i64,
}

impl Bucket {
    /// A full bucket.
    pub fn new(rate: Rate) -> Self {
        Bucket {
            rate,
            tokens: rate.burst,
            last: i64::MIN,
        }
    }

    /// Takes one token at `now` (seconds on any clock that does not go backwards much; a clock
    /// that goes backwards refills nothing). False: refuse the request.
    pub fn take(&mut self, now: i64) -> bool {
        if self.last == i64::MIN {
            self.last = now;
        }
        if now > self.last {
            let secs = u32::try_from(now.saturating_sub(self.last)).unwrap_or(u32::MAX);
            let refill = secs.saturating_mul(self.rate.per_second);
            self.tokens = self.tokens.saturating_add(refill).min(self.rate.burst);
            self.last = now;
        }
        match self.tokens.checked_sub(1) {
            Some(left) => {
                self.tokens = left;
                true
            }
            None => false,
        }
    }
}

/// Bytes a phase that has lasted `elapsed` must have moved at `rate` bytes/s.
fn owed(elapsed: Duration, rate: u32) -> u64 {
    let ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
    ms.saturating_mul(u64::from(rate)) / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn handshake_has_a_deadline_from_accept_whatever_arrives() {
        let d = Deadlines::default();
        let mut p = Pace::new(s(100));
        // A byte every second does not move the handshake deadline.
        for t in 101..=110 {
            p.observe(s(t), Phase::Handshake, 1);
            assert_eq!(p.check(s(t), &d), Ok(()));
        }
        p.observe(s(111), Phase::Handshake, 1);
        assert_eq!(p.check(s(111), &d), Err(Expired::Handshake));
        assert_eq!(p.remaining(s(111), &d), Some(Duration::ZERO));
    }

    #[test]
    fn idle_clock_starts_at_the_end_of_the_last_request() {
        let d = Deadlines::default();
        let mut p = Pace::new(s(0));
        p.observe(s(1), Phase::Idle, 0);
        assert_eq!(p.check(s(31), &d), Ok(()));
        assert_eq!(p.remaining(s(21), &d), Some(s(10)));
        assert_eq!(p.check(s(32), &d), Err(Expired::Idle));
        // Observing the same phase again (junk that completes nothing) does not reset it.
        p.observe(s(20), Phase::Idle, 0);
        assert_eq!(p.check(s(32), &d), Err(Expired::Idle));
    }

    #[test]
    fn slowloris_request_is_cut_at_the_minimum_rate() {
        let d = Deadlines::default();
        let mut p = Pace::new(s(0));
        p.observe(s(1), Phase::Receiving { request: 0 }, 10);
        // Within the grace period anything goes.
        assert_eq!(p.check(s(11), &d), Ok(()));
        // 100 bytes/s is below 1 KiB/s once the grace period is over.
        for t in 2..=11 {
            p.observe(s(t), Phase::Receiving { request: 0 }, 100);
        }
        assert_eq!(p.check(s(12), &d), Err(Expired::TooSlow));
    }

    #[test]
    fn a_large_request_at_a_fair_rate_passes_until_the_request_deadline() {
        let d = Deadlines::default();
        let mut p = Pace::new(s(0));
        let phase = Phase::Receiving { request: 3 };
        for t in 1..=120 {
            p.observe(s(t), phase, 4096);
            assert_eq!(p.check(s(t), &d), Ok(()), "at {t} s");
        }
        assert_eq!(p.check(s(122), &d), Err(Expired::Request));
    }

    #[test]
    fn back_to_back_requests_each_get_their_own_clock() {
        let d = Deadlines::default();
        let mut p = Pace::new(s(0));
        for r in 0..200u64 {
            // One small request every second, always partially buffered: never idle.
            p.observe(s(r + 1), Phase::Receiving { request: r }, 200);
            assert_eq!(p.check(s(r + 1), &d), Ok(()), "request {r}");
        }
    }

    #[test]
    fn a_client_that_does_not_read_its_response_is_cut() {
        let d = Deadlines::default();
        let mut p = Pace::new(s(0));
        p.observe(s(1), Phase::Sending { request: 1 }, 0);
        assert_eq!(p.check(s(11), &d), Ok(()));
        assert_eq!(p.check(s(12), &d), Err(Expired::TooSlow));
        assert_eq!(p.remaining(s(5), &d), Some(s(6)));
    }

    #[test]
    fn waiting_on_the_store_has_no_client_deadline() {
        let d = Deadlines::default();
        let mut p = Pace::new(s(0));
        p.observe(s(1), Phase::Waiting, 0);
        assert_eq!(p.check(s(10_000), &d), Ok(()));
        assert_eq!(p.remaining(s(10_000), &d), None);
    }

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        let mut b = Bucket::new(Rate {
            burst: 3,
            per_second: 2,
        });
        assert!((0..3).all(|_| b.take(1000)));
        assert!(!b.take(1000), "burst spent");
        // One second later: two more, not three.
        assert!(b.take(1001) && b.take(1001));
        assert!(!b.take(1001));
        // A long pause refills to the burst, no further.
        assert!((0..3).all(|_| b.take(5000)));
        assert!(!b.take(5000));
        // A clock going backwards refills nothing.
        assert!(!b.take(10));
    }

    #[test]
    fn remaining_follows_the_rate_rule() {
        let d = Deadlines::default();
        let mut p = Pace::new(s(0));
        // 20 KiB received at t=0: the rate rule allows 20 s.
        p.observe(s(0), Phase::Receiving { request: 0 }, 20 * 1024);
        assert_eq!(p.remaining(s(5), &d), Some(s(15)));
        assert_eq!(p.check(s(20), &d), Ok(()));
        assert_eq!(p.check(s(21), &d), Err(Expired::TooSlow));
    }
}
