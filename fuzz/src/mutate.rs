//! The smoke driver's deterministic mutator: a seeded PRNG and AFL-style havoc steps (bit
//! flips, interesting values, truncation, insertion, deletion, duplication, splices with another
//! seed, random bytes). Same seed, same sequence of inputs, on every machine.

/// SplitMix64 (Steele, Lea, Flood, "Fast splittable pseudorandom number generators", 2014).
#[derive(Debug, Clone)]
pub struct Prng(u64);

impl Prng {
    /// A generator for one seed stream.
    pub fn new(seed: u64) -> Self {
        Prng(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform-enough integer in `0..n` (`0` when `n == 0`).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }
}

/// A stable 64-bit hash (FNV-1a) to derive stream seeds from names.
pub fn fnv(s: &[u8]) -> u64 {
    s.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}

const INTERESTING_8: [u8; 9] = [0, 1, 0x7f, 0x80, 0xff, b'0', b'"', b'\r', b'\n'];
const INTERESTING_32: [u32; 8] = [
    0,
    1,
    0x7f,
    0x100,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
];
const TOKENS: [&[u8]; 14] = [
    b"\r\n",
    b"\r\n\r\n",
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b":",
    b",",
    b"0x",
    b"-1",
    b"99999999999999999999",
    b"Content-Length: ",
    b"$-1\r\n",
];

/// Largest input the mutator produces.
pub const MAX_LEN: usize = 64 * 1024;

/// Apply 1 to 6 random havoc steps to `input` (in place). `other` is a second seed to splice.
pub fn mutate(rng: &mut Prng, input: &mut Vec<u8>, other: &[u8]) {
    // Mostly one or two steps: text formats (JSON, HTTP, URLs) rarely survive more.
    let steps = match rng.below(8) {
        0..=3 => 1,
        4..=5 => 2,
        _ => 3 + rng.below(6),
    };
    for _ in 0..steps {
        let len = input.len();
        match rng.below(15) {
            // Flip one bit.
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            // An interesting byte.
            1 if len > 0 => {
                let i = rng.below(len);
                input[i] = INTERESTING_8[rng.below(INTERESTING_8.len())];
            }
            // A random byte.
            2 if len > 0 => {
                let i = rng.below(len);
                input[i] = rng.next_u64() as u8;
            }
            // An interesting 32-bit little- or big-endian value.
            3 if len >= 4 => {
                let i = rng.below(len - 3);
                let v = INTERESTING_32[rng.below(INTERESTING_32.len())];
                let b = if rng.below(2) == 0 {
                    v.to_le_bytes()
                } else {
                    v.to_be_bytes()
                };
                input[i..i + 4].copy_from_slice(&b);
            }
            // Small arithmetic on a byte (lengths, digits).
            4 if len > 0 => {
                let i = rng.below(len);
                let d = 1 + rng.below(16) as u8;
                input[i] = if rng.below(2) == 0 {
                    input[i].wrapping_add(d)
                } else {
                    input[i].wrapping_sub(d)
                };
            }
            // Truncate.
            5 => input.truncate(rng.below(len + 1)),
            // Delete a range.
            6 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(64));
                input.drain(i..i + n);
            }
            // Duplicate a range.
            7 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(64));
                let chunk = input[i..i + n].to_vec();
                let at = rng.below(len + 1);
                input.splice(at..at, chunk);
            }
            // Insert random bytes.
            8 => {
                let at = rng.below(len + 1);
                let n = 1 + rng.below(32);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
                input.splice(at..at, bytes);
            }
            // Insert a format token.
            9 => {
                let at = rng.below(len + 1);
                let t = TOKENS[rng.below(TOKENS.len())];
                input.splice(at..at, t.iter().copied());
            }
            // Splice: our head, the other seed's tail.
            10 if !other.is_empty() => {
                let i = rng.below(len + 1);
                let j = rng.below(other.len());
                input.truncate(i);
                input.extend_from_slice(&other[j..]);
            }
            // Replace everything with random bytes (rarely).
            11 if rng.below(8) == 0 => {
                let n = rng.below(256);
                *input = (0..n).map(|_| rng.next_u64() as u8).collect();
            }
            // Same-class ASCII change (digit to digit, letter to letter): keeps text formats
            // well-formed while changing numbers, names and hex.
            12..=13 if len > 0 => {
                let i = rng.below(len);
                let r = rng.next_u64() as u8;
                input[i] = match input[i] {
                    b'0'..=b'9' => b'0' + r % 10,
                    b'a'..=b'z' => b'a' + r % 26,
                    b'A'..=b'Z' => b'A' + r % 26,
                    _ => b"0aA9zZ-.:_/"[usize::from(r) % 11],
                };
            }
            _ => {
                if len > 0 {
                    let i = rng.below(len);
                    input[i] = !input[i];
                }
            }
        }
        input.truncate(MAX_LEN);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic() {
        let run = || {
            let mut rng = Prng::new(fnv(b"x"));
            let mut v = b"hello world".to_vec();
            for _ in 0..100 {
                mutate(&mut rng, &mut v, b"other seed");
            }
            v
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn bounded() {
        let mut rng = Prng::new(1);
        let mut v = vec![0u8; MAX_LEN];
        for _ in 0..1000 {
            mutate(&mut rng, &mut v, &[1; 100]);
            assert!(v.len() <= MAX_LEN);
        }
    }
}
