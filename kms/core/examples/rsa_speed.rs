//! RSA-2048 operations per second through `kms::crypto::rsa`, one thread, to put next to
//! `openssl speed -seconds 3 rsa2048`: key generation, signature (PSS SHA-256, blinded) and
//! decryption (OAEP SHA-256, blinded). Run with
//! `cargo run --release -p kms --example rsa_speed [-- SECONDS]` (`scripts/bench-rsa` does).
//!
//! The decryption is measured three ways, to show what the RFC 8017 leading-octet check of
//! `kms::crypto::rsa::decrypt` costs: the KMS's decrypt (the `rsa` crate's OAEP decryption plus
//! the check's own blinded private operation), the `rsa` crate's OAEP decryption alone (one
//! private operation, accepts a nonzero leading octet), and one blinded, CRT-checked private
//! operation (`rsa::hazmat::rsa_decrypt_and_check`).
//!
//! The random source is testkit's deterministic generator: its cost is negligible next to
//! RSA, and the figures do not depend on it.

use std::time::{Duration, Instant};

use ::rsa::pkcs8::DecodePrivateKey;
use ::rsa::traits::PublicKeyParts;
use kms::crypto::Random;
use kms::crypto::mac::HashAlg;
use kms::crypto::rsa::{self, EncPadding, SigPadding};
use testkit::TestRng;

/// `TestRng` as the `rand_core` generator the `rsa` crate takes (the crate-only rows).
struct Bridge<'a>(&'a mut TestRng);

impl rand_core::TryRng for Bridge<'_> {
    type Error = kms::crypto::RngError;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(self.0.next_u32())
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut b = [0u8; 8];
        self.0.fill(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        self.0.fill(dst)
    }
}

impl rand_core::TryCryptoRng for Bridge<'_> {}

/// CPU seconds (user + system) of this process (one thread), from `/proc/self/stat` in ticks of
/// 1/100 s; `None` where it cannot be read.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i)?.parse::<u64>().ok();
    Some((tick(11)? + tick(12)?) as f64 / 100.0)
}

/// Run `f` repeatedly for about `secs` seconds (at least `min` times); operations per second
/// of wall time. Also prints the operations per CPU second, which a loaded machine changes
/// much less (`openssl speed` divides by CPU time too, unless `-elapsed`).
fn rate(secs: f64, min: u32, mut f: impl FnMut()) -> (u32, f64) {
    let cpu = cpu_seconds();
    let start = Instant::now();
    let mut n = 0u32;
    while n < min || start.elapsed() < Duration::from_secs_f64(secs) {
        f();
        n += 1;
    }
    let wall = f64::from(n) / start.elapsed().as_secs_f64();
    if let (Some(a), Some(b)) = (cpu, cpu_seconds())
        && b > a
    {
        println!("  (per CPU second: {:.2}/s)", f64::from(n) / (b - a));
    }
    (n, wall)
}

fn main() {
    let secs: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let mut rng = TestRng::new(0x5eed);
    let (n, keygen) = rate(secs, 3, || {
        rsa::generate(2048, &mut rng).expect("keygen");
    });
    println!("rsa2048 keygen:  {keygen:8.2}/s ({n} keys)");
    let kp = rsa::generate(2048, &mut rng).expect("keygen");
    let pss = SigPadding::Pss(HashAlg::Sha256, None);
    let (n, sign) = rate(secs, 10, || {
        rsa::sign(&kp.private_pkcs8, pss, b"message", false, &mut rng).expect("sign");
    });
    println!("rsa2048 sign:    {sign:8.1}/s ({n} PSS SHA-256 signatures)");
    let sig = rsa::sign(&kp.private_pkcs8, pss, b"message", false, &mut rng).expect("sign");
    let (n, verify) = rate(secs, 10, || {
        assert_eq!(
            rsa::verify(&kp.public_spki, pss, b"message", false, &sig),
            Ok(true)
        );
    });
    println!("rsa2048 verify:  {verify:8.1}/s ({n})");
    let oaep = EncPadding::Oaep {
        hash: HashAlg::Sha256,
        mgf: HashAlg::Sha256,
        label: None,
    };
    let ct = rsa::encrypt(&kp.public_spki, &oaep, &[7u8; 32], &mut rng).expect("encrypt");
    let (n, decrypt) = rate(secs, 10, || {
        rsa::decrypt(&kp.private_pkcs8, &oaep, &ct, &mut rng).expect("decrypt");
    });
    println!("rsa2048 decrypt: {decrypt:8.1}/s ({n} OAEP SHA-256 decryptions)");

    // The same decryption without the leading-octet check, and one private operation.
    let sk = ::rsa::PrivateKey::from_pkcs8_der(&kp.private_pkcs8).expect("PKCS#8");
    let (n, crate_only) = rate(secs, 10, || {
        let oaep = ::rsa::Oaep::<sha2::Sha256, sha2::Sha256>::new_with_mgf_hash();
        let m = sk
            .decrypt_blinded(&mut Bridge(&mut rng), oaep, &ct)
            .expect("decrypt");
        assert_eq!(m, [7u8; 32]);
    });
    println!(
        "rsa2048 decrypt-crate-only: {crate_only:8.1}/s ({n} with the rsa crate alone, no leading-octet check)"
    );
    let c = ::rsa::BoxedUint::from_be_slice(&ct, sk.n_bits_precision()).expect("ciphertext");
    let (n, private_op) = rate(secs, 10, || {
        ::rsa::hazmat::rsa_decrypt_and_check(&sk, Some(&mut Bridge(&mut rng)), &c)
            .expect("private operation");
    });
    println!(
        "rsa2048 private-op: {private_op:8.1}/s ({n} blinded CRT c^d mod n with the m^e check)"
    );
    println!(
        "rsa2048 leading-octet check cost: {:.0} us per decryption ({:.2}x the crate-only time)",
        1e6 / decrypt - 1e6 / crate_only,
        crate_only / decrypt
    );
}
