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

/// `ckms sym keys export --wrap-key-id` and `import --unwrap-key-id` through the server: each
/// wrapping construction round-trips to the same key bytes, and a key without the wrap-key usage
/// is refused.
pub fn ckms_key_wrapping(h: &mut Harness) {
    let create = |h: &mut Harness, extra: &[&str]| {
        let mut a = vec!["--json", "sym", "keys", "create"];
        a.extend_from_slice(extra);
        h.ckms("grace", &a).json("sym keys create")["unique_identifier"]
            .as_str()
            .expect("uid")
            .to_owned()
    };
    // The default usage (2108) includes wrap-key and unwrap-key.
    let kek = create(h, &[]);
    let key = create(h, &[]);
    let p = |n: &str| h.path(n).display().to_string();
    let (plain, wrapped, plain2) = (p("wrap-plain"), p("wrap-wrapped"), p("wrap-plain2"));
    h.ckms(
        "grace",
        &["sym", "keys", "export", "--key-id", &key, &plain],
    )
    .expect_ok("plain export");
    let key_bytes = std::fs::read(&plain).unwrap();
    assert_eq!(key_bytes.len(), 32);
    for (alg, len) in [
        (None, 40),
        (Some("nist-key-wrap"), 40),
        (Some("aes-key-wrap-padding"), 40),
        (Some("aes-gcm"), 12 + 32 + 16),
    ] {
        let mut a = vec![
            "sym",
            "keys",
            "export",
            "--key-id",
            &key,
            "--wrap-key-id",
            &kek,
            &wrapped,
        ];
        let mut b = vec![
            "--json",
            "sym",
            "keys",
            "import",
            &wrapped,
            "--unwrap-key-id",
            &kek,
        ];
        if let Some(alg) = alg {
            a.extend_from_slice(&["--wrapping-algorithm", alg]);
            b.extend_from_slice(&["--wrapping-algorithm", alg]);
        }
        h.ckms("grace", &a).expect_ok("wrapped export");
        let w = std::fs::read(&wrapped).unwrap();
        assert_eq!(w.len(), len, "{alg:?}");
        assert!(
            !w.windows(32).any(|x| x == key_bytes),
            "{alg:?}: key in clear"
        );
        let uid = h.ckms("grace", &b).json("unwrapping import")["unique_identifier"]
            .as_str()
            .expect("uid")
            .to_owned();
        h.ckms(
            "grace",
            &["sym", "keys", "export", "--key-id", &uid, &plain2],
        )
        .expect_ok("export of the unwrapped import");
        assert_eq!(std::fs::read(&plain2).unwrap(), key_bytes, "{alg:?}");
    }
    // The wrong construction fails the integrity check.
    h.ckms(
        "grace",
        &[
            "sym",
            "keys",
            "export",
            "--key-id",
            &key,
            "--wrap-key-id",
            &kek,
            &wrapped,
        ],
    )
    .expect_ok("wrapped export");
    let err = h
        .ckms(
            "grace",
            &[
                "sym",
                "keys",
                "import",
                &wrapped,
                "--unwrap-key-id",
                &kek,
                "--wrapping-algorithm",
                "aes-gcm",
            ],
        )
        .expect_err("unwrap with the wrong construction");
    assert!(err.contains("CryptographicFailure"), "{err}");
    // A key without the wrap-key usage does not wrap.
    let enc_only = create(h, &["--usage", "encrypt,decrypt"]);
    let err = h
        .ckms(
            "grace",
            &[
                "sym",
                "keys",
                "export",
                "--key-id",
                &key,
                "--wrap-key-id",
                &enc_only,
                &wrapped,
            ],
        )
        .expect_err("wrap with an encrypt-only key");
    assert!(err.contains("IncompatibleCryptographicUsageMask"), "{err}");
}

/// `ckms rsa|ec keys export --wrap-key-id` and `rsa|ec keys import --unwrap-key-id` through
/// the server: an RSA-2048 and a P-256 private key leave wrapped under an AES key (RFC 5649 by
/// default, AES-GCM), never in clear, come back through the unwrapping import as the same
/// PKCS#8 key, and the imported key signs what the original public key verifies. Unwrapping
/// with the wrong construction is `CryptographicFailure`; an EC key as the wrapping key is
/// `UnsupportedCryptographicParameters`; a transparent RSA export is never wrapped.
pub fn ckms_asym_key_wrapping(h: &mut Harness) {
    let kek = h
        .ckms("grace", &["--json", "sym", "keys", "create"])
        .json("sym keys create")["unique_identifier"]
        .as_str()
        .expect("uid")
        .to_owned();
    let pair = |h: &mut Harness, args: &[&str]| {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let v = h.ckms("grace", &a).json("keys create");
        (
            v["private_key_unique_identifier"]
                .as_str()
                .expect("private uid")
                .to_owned(),
            v["public_key_unique_identifier"]
                .as_str()
                .expect("public uid")
                .to_owned(),
        )
    };
    let rsa = pair(h, &["rsa", "keys", "create"]);
    let ec = pair(h, &["ec", "keys", "create", "--curve", "p256"]);
    let p = |n: &str| h.path(n).display().to_string();
    let (plain, wrapped, plain2, msg, sig) = (
        p("awrap-plain"),
        p("awrap-wrapped"),
        p("awrap-plain2"),
        p("awrap-msg"),
        p("awrap-sig"),
    );
    std::fs::write(&msg, b"signed by an unwrapped key").unwrap();
    for (kind, (sk, pk), import_extra) in [
        ("rsa", &rsa, &[][..]),
        ("ec", &ec, &["--curve", "p256"][..]),
    ] {
        h.ckms("grace", &[kind, "keys", "export", "--key-id", sk, &plain])
            .expect_ok("plain export");
        let der = std::fs::read(&plain).unwrap();
        assert_eq!(der.first(), Some(&0x30), "{kind}: PKCS#8 DER");
        for (alg, overhead) in [
            (None, 8),
            (Some("aes-key-wrap-padding"), 8),
            (Some("aes-gcm"), 12 + 16),
        ] {
            let mut a = vec![
                kind,
                "keys",
                "export",
                "--key-id",
                sk,
                "--wrap-key-id",
                &kek,
                &wrapped,
            ];
            let mut b = vec![
                "--json",
                kind,
                "keys",
                "import",
                &wrapped,
                "--unwrap-key-id",
                &kek,
            ];
            b.extend_from_slice(import_extra);
            if let Some(alg) = alg {
                a.extend_from_slice(&["--wrapping-algorithm", alg]);
                b.extend_from_slice(&["--wrapping-algorithm", alg]);
            }
            h.ckms("grace", &a).expect_ok("wrapped export");
            let w = std::fs::read(&wrapped).unwrap();
            // RFC 5649 pads to whole 8-byte blocks and adds one; GCM adds nonce and tag.
            let expected = if overhead == 8 {
                der.len().div_ceil(8) * 8 + 8
            } else {
                der.len() + overhead
            };
            assert_eq!(w.len(), expected, "{kind} {alg:?}");
            // 32 bytes from the middle of the key (secret material) do not appear.
            let probe = &der[der.len() / 2..der.len() / 2 + 32];
            assert!(
                !w.windows(32).any(|x| x == probe),
                "{kind} {alg:?}: key bytes in clear"
            );
            let uid = h.ckms("grace", &b).json("unwrapping import")["unique_identifier"]
                .as_str()
                .expect("uid")
                .to_owned();
            h.ckms(
                "grace",
                &[kind, "keys", "export", "--key-id", &uid, &plain2],
            )
            .expect_ok("export of the unwrapped import");
            assert_eq!(std::fs::read(&plain2).unwrap(), der, "{kind} {alg:?}");
            // The imported private key signs; the original public key verifies.
            h.ckms(
                "grace",
                &[kind, "sign", "--key", &uid, "-i", &msg, "-o", &sig],
            )
            .expect_ok("sign with the unwrapped key");
            h.ckms(
                "grace",
                &[kind, "verify", "--key", pk, "-i", &msg, "-s", &sig],
            )
            .expect_ok("verify with the original public key");
        }
        // A public key leaves wrapped too (SPKI inside).
        h.ckms(
            "grace",
            &[
                kind,
                "keys",
                "export",
                "--key-id",
                pk,
                "--wrap-key-id",
                &kek,
                &wrapped,
            ],
        )
        .expect_ok("wrapped public key export");
        h.ckms("grace", &[kind, "keys", "export", "--key-id", pk, &plain])
            .expect_ok("plain public key export");
        let spki = std::fs::read(&plain).unwrap();
        assert_eq!(
            std::fs::read(&wrapped).unwrap().len(),
            spki.len().div_ceil(8) * 8 + 8
        );
    }
    // Unwrapping RFC 5649 bytes as AES-GCM fails the integrity check.
    h.ckms(
        "grace",
        &[
            "rsa",
            "keys",
            "export",
            "--key-id",
            &rsa.0,
            "--wrap-key-id",
            &kek,
            &wrapped,
        ],
    )
    .expect_ok("wrapped export");
    let err = h
        .ckms(
            "grace",
            &[
                "rsa",
                "keys",
                "import",
                &wrapped,
                "--unwrap-key-id",
                &kek,
                "--wrapping-algorithm",
                "aes-gcm",
            ],
        )
        .expect_err("unwrap with the wrong construction");
    assert!(err.contains("CryptographicFailure"), "{err}");
    // An EC key does not wrap.
    let err = h
        .ckms(
            "grace",
            &[
                "rsa",
                "keys",
                "export",
                "--key-id",
                &rsa.0,
                "--wrap-key-id",
                &ec.1,
                &wrapped,
            ],
        )
        .expect_err("wrap with an EC public key");
    assert!(err.contains("UnsupportedCryptographicParameters"), "{err}");
    // The transparent format is a KMIP structure: never wrapped (refused by ckms).
    let err = h
        .ckms(
            "grace",
            &[
                "rsa",
                "keys",
                "export",
                "--key-id",
                &rsa.0,
                "--format",
                "transparent",
                "--json",
                "--wrap-key-id",
                &kek,
                &wrapped,
            ],
        )
        .expect_err("wrapped transparent export");
    assert!(err.contains("cannot be wrapped"), "{err}");
}

/// `ckms certificates import|export`: a PEM certificate goes in, comes back as the same PEM and
/// as the same DER, is found by its subject CN, and a non-certificate file is refused.
pub fn ckms_certificates(h: &mut Harness) {
    let cert = testkit::Pki::new("grace CA").client(Some("grace-e2e.example"));
    let pem_in = h.path("grace-cert.pem");
    std::fs::write(&pem_in, &cert.pem).unwrap();
    let i = pem_in.display().to_string();
    let uid = h
        .ckms(
            "grace",
            &[
                "--json",
                "certificates",
                "import",
                &i,
                "--tag",
                "grace-cert",
            ],
        )
        .json("certificates import")["unique_identifier"]
        .as_str()
        .expect("uid")
        .to_owned();
    let der_out = h.path("grace-cert.der");
    let d = der_out.display().to_string();
    h.ckms(
        "grace",
        &[
            "certificates",
            "export",
            "--certificate-id",
            &uid,
            "--der",
            &d,
        ],
    )
    .expect_ok("certificates export --der");
    assert_eq!(std::fs::read(&der_out).unwrap(), cert.der.clone());
    let pem_out = h.path("grace-cert-out.pem");
    let o = pem_out.display().to_string();
    h.ckms(
        "grace",
        &["certificates", "export", "--tag", "grace-cert", &o],
    )
    .expect_ok("certificates export by tag");
    let back = std::fs::read_to_string(&pem_out).unwrap();
    assert!(back.starts_with("-----BEGIN CERTIFICATE-----"), "{back}");
    assert_eq!(
        kms::x509::pem_chain_der(back.as_bytes()).unwrap(),
        vec![cert.der.clone()]
    );
    // Another user does not see it.
    h.ckms(
        "heidi",
        &["certificates", "export", "--certificate-id", &uid, &o],
    )
    .expect_err("export by a stranger");
    // Garbage is refused by ckms before it reaches the server.
    let junk = h.path("junk.bin");
    std::fs::write(&junk, b"not a certificate").unwrap();
    let j = junk.display().to_string();
    let err = h
        .ckms("grace", &["certificates", "import", &j])
        .expect_err("import garbage");
    assert!(err.contains("certificate"), "{err}");
}

/// The signed part and the signature of a DER certificate (`SEQUENCE {tbs, algorithm, BIT
/// STRING}`), split by hand: the image's copy of this suite has no X.509 crate. Test data only.
fn tbs_and_signature(der: &[u8]) -> (Vec<u8>, Vec<u8>) {
    // (header length, content length) of the TLV at the start of `b`.
    fn tlv(b: &[u8]) -> (usize, usize) {
        match b[1] {
            n if n < 0x80 => (2, n as usize),
            n => {
                let k = (n & 0x7f) as usize;
                let len = b[2..2 + k]
                    .iter()
                    .fold(0usize, |a, x| (a << 8) | *x as usize);
                (2 + k, len)
            }
        }
    }
    let (h, _) = tlv(der);
    let body = &der[h..];
    let (th, tl) = tlv(body);
    let tbs = body[..th + tl].to_vec();
    let rest = &body[th + tl..];
    let (ah, al) = tlv(rest);
    let bits = &rest[ah + al..];
    let (bh, bl) = tlv(bits);
    // Skip the BIT STRING's unused-bits octet.
    (tbs, bits[bh + 1..bh + bl].to_vec())
}

/// `ckms certificates certify`: a root CA from a KMS key pair (self-signed), then a certificate
/// from a PKCS#10 request made by OpenSSL (kms/core/tests/data/csr); both signatures verify with
/// the root's public key, the names are right. Issuing needs the `sign` right on the CA key, and
/// a tampered request is refused.
pub fn ckms_certify(h: &mut Harness) {
    use kms::crypto::asym::{Curve, verify};

    let pair = h
        .ckms(
            "ivan",
            &["--json", "ec", "keys", "create", "--curve", "p256"],
        )
        .json("ec keys create");
    let ca_sk = pair["private_key_unique_identifier"]
        .as_str()
        .unwrap()
        .to_owned();
    let ca_pk = pair["public_key_unique_identifier"]
        .as_str()
        .unwrap()
        .to_owned();
    let ca = h
        .ckms(
            "ivan",
            &[
                "--json",
                "certificates",
                "certify",
                "--public-key-id",
                &ca_pk,
                "--issuer-private-key-id",
                &ca_sk,
                "--subject",
                "CN=Ivan Root CA,O=Example",
                "--days",
                "3650",
            ],
        )
        .json("certify root")["unique_identifier"]
        .as_str()
        .expect("uid")
        .to_owned();

    let csr: &[u8] = include_bytes!("../../../core/tests/data/csr/rsa2048.csr.pem");
    let csr_path = h.path("rsa.csr");
    std::fs::write(&csr_path, csr).unwrap();
    let c = csr_path.display().to_string();
    let out = h
        .ckms(
            "ivan",
            &[
                "certificates",
                "certify",
                "--csr",
                &c,
                "--issuer-certificate-id",
                &ca,
                "--days",
                "30",
            ],
        )
        .expect_ok("certify csr");
    let leaf = out
        .trim()
        .strip_prefix("issued certificate ")
        .unwrap_or_else(|| panic!("{out}"))
        .to_owned();

    let export = |h: &mut Harness, uid: &str, name: &str| {
        let f = h.path(name);
        let fs = f.display().to_string();
        h.ckms(
            "ivan",
            &[
                "certificates",
                "export",
                "--certificate-id",
                uid,
                "--der",
                &fs,
            ],
        )
        .expect_ok("certificates export");
        std::fs::read(&f).unwrap()
    };
    let ca_der = export(h, &ca, "ivan-ca.der");
    let leaf_der = export(h, &leaf, "ivan-leaf.der");
    let ca_spki = kms::x509::spki_der(&ca_der).unwrap();
    for der in [&ca_der, &leaf_der] {
        let (tbs, sig) = tbs_and_signature(der);
        assert_eq!(verify(Curve::P256, &ca_spki, &tbs, &sig), Ok(true));
        let mut other = tbs.clone();
        let n = other.len();
        other[n - 1] ^= 1;
        assert_eq!(verify(Curve::P256, &ca_spki, &other, &sig), Ok(false));
    }
    let leaf_cert = kms::x509::parse(&leaf_der).unwrap();
    assert_eq!(
        leaf_cert.tbs_certificate().issuer().to_string(),
        "CN=Ivan Root CA,O=Example"
    );
    assert_eq!(
        kms::x509::subject_common_name(&leaf_der).as_deref(),
        Some("rsa-csr.example")
    );
    // The certificate holds the request's (RSA) key.
    assert_eq!(
        kms::x509::spki_der(&leaf_der).map(|k| kms::x509::canonical_spki(&k)),
        Some(kms::x509::canonical_spki(
            &kms::check_certificate_request(kms::kmip::types::CertificateRequestType::PEM, csr)
                .unwrap()
        ))
    );

    // Another user without the `sign` right on the CA key cannot issue with it.
    let err = h
        .ckms(
            "judy",
            &[
                "certificates",
                "certify",
                "--csr",
                &c,
                "--issuer-private-key-id",
                &ca_sk,
            ],
        )
        .expect_err("certify without rights");
    assert!(
        err.contains("ObjectNotFound") || err.contains("not found"),
        "{err}"
    );
    // A tampered request (a letter of its subject changed) is refused by the server.
    let mut der = include_bytes!("../../../core/tests/data/csr/p384-sha256.csr.der").to_vec();
    let at = der.windows(8).position(|w| w == b"csr.exam").unwrap();
    der[at] = b'C';
    let bad = h.path("bad.csr");
    std::fs::write(&bad, der).unwrap();
    let b = bad.display().to_string();
    let err = h
        .ckms(
            "ivan",
            &[
                "certificates",
                "certify",
                "--csr",
                &b,
                "--issuer-certificate-id",
                &ca,
            ],
        )
        .expect_err("certify a tampered request");
    assert!(err.contains("signature does not verify"), "{err}");
}
