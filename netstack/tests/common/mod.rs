//! Test network: two NICs joined by in-memory queues, an optional fault injector, a virtual clock.
#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use netstack::{
    Config, Duration, Instant, Ipv4Address, Ipv4Cidr, Ipv4Mode, Limits, Nic, NicError, Stack,
    StaticIpv4,
};

type Queue = Rc<RefCell<VecDeque<Vec<u8>>>>;

/// Drops (and optionally corrupts) frames, deterministically from a seed.
#[derive(Debug, Clone, Copy)]
pub struct Faults {
    pub seed: u64,
    /// Drop one frame in `drop_one_in` on transmit (0: never).
    pub drop_one_in: u64,
    /// Flip a byte in one frame in `corrupt_one_in` (0: never); checksums must catch it.
    pub corrupt_one_in: u64,
}

/// One end of a cable.
pub struct PipeNic {
    mac: [u8; 6],
    mtu: usize,
    rx: Queue,
    tx: Queue,
    /// Frames in flight in one direction are capped, like a NIC's ring.
    queue_limit: usize,
    faults: Option<Faults>,
    rng: u64,
    pub dropped: u64,
    pub corrupted: u64,
}

fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

impl PipeNic {
    pub fn pair(faults: Option<Faults>) -> (PipeNic, PipeNic) {
        let a: Queue = Rc::default();
        let b: Queue = Rc::default();
        let seed = faults.map_or(1, |f| f.seed | 1);
        let mk = |mac_last, rx: &Queue, tx: &Queue, rng| PipeNic {
            mac: [0x02, 0, 0, 0, 0, mac_last],
            mtu: 1500,
            rx: rx.clone(),
            tx: tx.clone(),
            queue_limit: 256,
            faults,
            rng,
            dropped: 0,
            corrupted: 0,
        };
        (mk(1, &a, &b, seed), mk(2, &b, &a, seed.wrapping_mul(3)))
    }

    pub fn in_flight(&self) -> usize {
        self.rx.borrow().len() + self.tx.borrow().len()
    }
}

impl Nic for PipeNic {
    fn mac_address(&self) -> [u8; 6] {
        self.mac
    }
    fn mtu(&self) -> usize {
        self.mtu
    }
    fn receive(&mut self, frame: &mut [u8]) -> Result<Option<usize>, NicError> {
        let Some(f) = self.rx.borrow_mut().pop_front() else {
            return Ok(None);
        };
        let dst = frame
            .get_mut(..f.len())
            .ok_or(NicError::FrameTooLarge { len: f.len() })?;
        dst.copy_from_slice(&f);
        Ok(Some(f.len()))
    }
    fn can_transmit(&mut self) -> bool {
        self.tx.borrow().len() < self.queue_limit
    }
    fn transmit(&mut self, frame: &[u8]) -> Result<(), NicError> {
        if !self.can_transmit() {
            return Err(NicError::QueueFull);
        }
        let mut frame = frame.to_vec();
        if let Some(f) = self.faults {
            if f.drop_one_in > 0 && xorshift(&mut self.rng).is_multiple_of(f.drop_one_in) {
                self.dropped += 1;
                return Ok(());
            }
            if f.corrupt_one_in > 0
                && xorshift(&mut self.rng).is_multiple_of(f.corrupt_one_in)
                && frame.len() > 14
            {
                let i = 14 + (xorshift(&mut self.rng) as usize) % (frame.len() - 14);
                frame[i] ^= 0x40;
                self.corrupted += 1;
            }
        }
        self.tx.borrow_mut().push_back(frame);
        Ok(())
    }
}

pub fn addr(last: u8) -> Ipv4Address {
    Ipv4Address::new(10, 0, 2, last)
}

pub fn static_config(last: u8, seed: u64, limits: Limits) -> Config {
    Config {
        ipv4: Ipv4Mode::Static(StaticIpv4 {
            address: Ipv4Cidr::new(addr(last), 24),
            gateway: None,
        }),
        random_seed: seed,
        limits,
    }
}

/// Two stacks on one cable and a virtual clock.
pub struct Net {
    pub now: Instant,
    pub a: Stack<PipeNic>,
    pub b: Stack<PipeNic>,
}

impl Net {
    pub fn new(faults: Option<Faults>, limits_a: Limits, limits_b: Limits) -> Net {
        let (na, nb) = PipeNic::pair(faults);
        let now = Instant::from_millis(1_000);
        let a = Stack::new(na, static_config(1, 11, limits_a), now).expect("stack a");
        let b = Stack::new(nb, static_config(2, 22, limits_b), now).expect("stack b");
        Net { now, a, b }
    }

    /// Polls both stacks; when no frame is in flight, moves the clock to the next deadline (at most 50 ms).
    pub fn step(&mut self) {
        self.a.poll(self.now);
        self.b.poll(self.now);
        if self.a.nic().in_flight() == 0 {
            let d = [self.a.poll_delay(self.now), self.b.poll_delay(self.now)]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(Duration::from_millis(50))
                .min(Duration::from_millis(50))
                .max(Duration::from_millis(1));
            self.now += d;
        }
    }
}

/// Deterministic test data.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut s = seed | 1;
    (0..len).map(|_| xorshift(&mut s) as u8).collect()
}
