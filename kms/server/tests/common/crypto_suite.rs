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
    assert!(err.contains("ObjectNotFound"), "{err}");

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

pub fn ckms_rsa(h: &mut Harness) {
    let pair = h
        .ckms(
            "frank",
            &["--json", "rsa", "keys", "create", "--tag", "frank-rsa"],
        )
        .json("rsa keys create");
    let sk = pair["private_key_unique_identifier"]
        .as_str()
        .expect("private uid")
        .to_owned();
    let pk = pair["public_key_unique_identifier"]
        .as_str()
        .expect("public uid")
        .to_owned();
    let p = |n: &str| h.path(n).display().to_string();
    let (msg, enc, dec, sig, der) = (
        p("rsa-msg"),
        p("rsa-enc"),
        p("rsa-dec"),
        p("rsa-sig"),
        p("rsa-key.der"),
    );
    std::fs::write(&msg, b"the rsa secret").unwrap();

    for extra in [
        &[][..],
        &["--hash", "sha384", "--label", "app-v1"][..],
        &["--padding", "pkcs1v15"][..],
    ] {
        let mut a = vec!["rsa", "encrypt", "--key", &pk, "-i", &msg, "-o", &enc];
        a.extend_from_slice(extra);
        h.ckms("frank", &a).expect_ok("rsa encrypt");
        assert_eq!(std::fs::read(&enc).unwrap().len(), 256);
        let mut a = vec!["rsa", "decrypt", "--key", &sk, "-i", &enc, "-o", &dec];
        a.extend_from_slice(extra);
        h.ckms("frank", &a).expect_ok("rsa decrypt");
        assert_eq!(std::fs::read(&dec).unwrap(), b"the rsa secret");
    }
    // The wrong label is an OAEP failure.
    h.ckms(
        "frank",
        &[
            "rsa", "encrypt", "--key", &pk, "--label", "a", "-i", &msg, "-o", &enc,
        ],
    )
    .expect_ok("rsa encrypt with a label");
    let err = h
        .ckms(
            "frank",
            &[
                "rsa", "decrypt", "--key", &sk, "--label", "b", "-i", &enc, "-o", &dec,
            ],
        )
        .expect_err("decrypt with another label");
    assert!(err.contains("CryptographicFailure"), "{err}");

    for scheme in ["pss", "pkcs1v15"] {
        h.ckms(
            "frank",
            &[
                "rsa", "sign", "--key", &sk, "--scheme", scheme, "-i", &msg, "-o", &sig,
            ],
        )
        .expect_ok("rsa sign");
        h.ckms(
            "frank",
            &[
                "rsa", "verify", "--key", &pk, "--scheme", scheme, "-i", &msg, "-s", &sig,
            ],
        )
        .expect_ok("rsa verify");
    }
    let err = h
        .ckms(
            "frank",
            &[
                "rsa", "verify", "--key", &pk, "--scheme", "pss", "-i", &msg, "-s", &sig,
            ],
        )
        .expect_err("a v1.5 signature checked as PSS");
    assert!(err.contains("invalid"), "{err}");

    h.ckms(
        "frank",
        &[
            "rsa", "keys", "export", "--key-id", &pk, "--format", "pkcs1", &der,
        ],
    )
    .expect_ok("rsa export pkcs1");
    let pkcs1 = std::fs::read(&der).unwrap();
    assert_eq!(pkcs1[0], 0x30);
    h.ckms("frank", &["rsa", "keys", "export", "--key-id", &sk, &der])
        .expect_ok("rsa export pkcs8");
    assert!(std::fs::read(&der).unwrap().len() > 1000);
    // Another user sees nothing.
    let err = h
        .ckms(
            "grace",
            &["rsa", "decrypt", "--key", &sk, "-i", &enc, "-o", &dec],
        )
        .expect_err("decrypt with someone else's key");
    assert!(err.contains("ObjectNotFound"), "{err}");
}
