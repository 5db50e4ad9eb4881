//! RSA-2048 operations per second through `kms::crypto::rsa`, one thread, to put next to
//! `openssl speed -seconds 3 rsa2048`: key generation, signature (PSS SHA-256, blinded) and
//! decryption (OAEP SHA-256, blinded). Run with
//! `cargo run --release -p kms --example rsa_speed [-- SECONDS]`.
//!
//! The random source is testkit's deterministic generator: its cost is negligible next to
//! RSA, and the figures do not depend on it.

use std::time::{Duration, Instant};

use kms::crypto::mac::HashAlg;
use kms::crypto::rsa::{self, EncPadding, SigPadding};
use testkit::TestRng;

/// Run `f` repeatedly for about `secs` seconds (at least `min` times); operations per second.
fn rate(secs: f64, min: u32, mut f: impl FnMut()) -> (u32, f64) {
    let start = Instant::now();
    let mut n = 0u32;
    while n < min || start.elapsed() < Duration::from_secs_f64(secs) {
        f();
        n += 1;
    }
    (n, f64::from(n) / start.elapsed().as_secs_f64())
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
}
