//! `ckms` end-to-end scenarios for the cryptographic services of issue 14 (MAC, RNG, RSA),
//! listed in [`super::suite::SCENARIOS`] so that every storage backend runs them.

use super::Harness;

pub fn ckms_mac_and_rng(h: &mut Harness) {
    let uid = h
        .ckms(
            "frank",
            &[
                "--json",
                "mac",
                "create",
                "--algorithm",
                "sha384",
                "--tag",
                "frank-mac",
            ],
        )
        .json("mac create")["unique_identifier"]
        .as_str()
        .expect("uid")
        .to_owned();
    let msg = h.path("mac-message.txt");
    std::fs::write(&msg, b"what do ya want for nothing?").unwrap();
    let m = msg.display().to_string();
    let out = h.path("mac-message.mac");
    let o = out.display().to_string();
    let mac = h
        .ckms(
            "frank",
            &[
                "--json", "mac", "compute", "--key-id", &uid, "-i", &m, "-o", &o,
            ],
        )
        .json("mac compute")["mac"]
        .as_str()
        .expect("mac")
        .to_owned();
    assert_eq!(mac.len(), 96, "HMAC-SHA-384 is 48 bytes: {mac}");
    assert_eq!(std::fs::read(&out).unwrap(), hex::decode(&mac).unwrap());
    h.ckms(
        "frank",
        &[
            "mac",
            "verify",
            "--tag",
            "frank-mac",
            "-i",
            &m,
            "--mac",
            &mac,
        ],
    )
    .expect_ok("mac verify by tag");
    h.ckms(
        "frank",
        &[
            "mac",
            "verify",
            "--key-id",
            &uid,
            "-i",
            &m,
            "--mac-file",
            &o,
        ],
    )
    .expect_ok("mac verify from file");
    let mut bad = hex::decode(&mac).unwrap();
    bad[0] ^= 1;
    let err = h
        .ckms(
            "frank",
            &[
                "mac",
                "verify",
                "--key-id",
                &uid,
                "-i",
                &m,
                "--mac",
                &hex::encode(bad),
            ],
        )
        .expect_err("a wrong MAC");
    assert!(err.contains("does not match"), "{err}");
    // Another user does not see the key.
    let err = h
        .ckms("grace", &["mac", "compute", "--key-id", &uid, "-i", &m])
        .expect_err("MAC with someone else's key");
    assert!(err.contains("ItemNotFound"), "{err}");

    let a = h
        .ckms("frank", &["--json", "rng", "--bytes", "48"])
        .json("rng")["random"]
        .as_str()
        .expect("random")
        .to_owned();
    assert_eq!(a.len(), 96);
    let b = h.ckms("frank", &["rng"]).expect_ok("rng");
    assert_eq!(b.trim().len(), 64);
    let err = h
        .ckms("frank", &["rng", "--bytes", "0"])
        .expect_err("zero random bytes");
    assert!(err.contains("InvalidField"), "{err}");
}
