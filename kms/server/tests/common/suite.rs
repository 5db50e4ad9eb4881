//! The KMIP-over-HTTPS suite: raw JSON requests (the `formats.md` examples verbatim), `ckms`
//! round trips and negative cases. [`run_kmip_suite`] starts one server with the given extra
//! arguments (e.g. `--database memory`) and runs every scenario against it, so the same suite
//! checks every storage backend.

use serde_json::{Value, json};

use super::{Harness, kmip, ok_json};

/// A scenario: runs against a started server.
pub type Scenario = fn(&mut Harness);

/// Every scenario, by name.
pub const SCENARIOS: &[(&str, Scenario)] = &[
    ("version_and_health", version_and_health),
    ("formats_examples_verbatim", formats_examples_verbatim),
    ("batch_request_message", batch_request_message),
    ("malformed_and_wrong_requests", malformed_and_wrong_requests),
    ("lifecycle_and_usage_rules", lifecycle_and_usage_rules),
    ("access_rights", access_rights),
    ("ckms_symmetric_round_trip", ckms_symmetric_round_trip),
    ("ckms_ec_round_trip", ckms_ec_round_trip),
    ("ckms_objects_and_access", ckms_objects_and_access),
    ("ckms_errors", ckms_errors),
    ("ckms_config_file", ckms_config_file),
    ("ckms_mac_and_rng", super::crypto_suite::ckms_mac_and_rng),
    ("ckms_rsa", super::crypto_suite::ckms_rsa),
    ("ckms_key_wrapping", super::crypto_suite::ckms_key_wrapping),
    (
        "ckms_asym_key_wrapping",
        super::crypto_suite::ckms_asym_key_wrapping,
    ),
    ("ckms_certificates", super::crypto_suite::ckms_certificates),
    ("ckms_certify", super::crypto_suite::ckms_certify),
    (
        "query_discover_and_locate_by_type",
        query_discover_and_locate_by_type,
    ),
];

/// Start a server with `extra_args` and run every scenario against it.
pub fn run_kmip_suite(extra_args: &[&str]) {
    let mut h = Harness::start(extra_args);
    for (name, scenario) in SCENARIOS {
        eprintln!("scenario {name}");
        scenario(&mut h);
        assert!(h.server.is_running(), "server died during {name}");
    }
}

/// The Create example of formats.md: AES-256, usage mask 2108, tag given as the Cosmian vendor
/// attribute (hex of the JSON text `["<tag>"]`).
fn create_aes_request(tag: &str) -> String {
    let tag_hex = hex_upper(serde_json::to_string(&[tag]).unwrap().as_bytes());
    format!(
        r#"{{"tag":"Create","type":"Structure","value":[
  {{"tag":"ObjectType","type":"Enumeration","value":"SymmetricKey"}},
  {{"tag":"Attributes","type":"Structure","value":[
    {{"tag":"CryptographicAlgorithm","type":"Enumeration","value":"AES"}},
    {{"tag":"CryptographicLength","type":"Integer","value":256}},
    {{"tag":"CryptographicUsageMask","type":"Integer","value":2108}},
    {{"tag":"KeyFormatType","type":"Enumeration","value":"TransparentSymmetricKey"}},
    {{"tag":"VendorAttributes","type":"Structure","value":[
      {{"tag":"VendorAttributes","type":"Structure","value":[
        {{"tag":"VendorIdentification","type":"TextString","value":"cosmian"}},
        {{"tag":"AttributeName","type":"TextString","value":"tag"}},
        {{"tag":"AttributeValue","type":"ByteString","value":"{tag_hex}"}}]}}]}}]}}]}}"#
    )
}

/// A JSON text string literal.
fn js(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

fn activate_request(uid: &str) -> String {
    format!(
        r#"{{"tag":"Activate","type":"Structure","value":[{{"tag":"UniqueIdentifier","type":"TextString","value":{}}}]}}"#,
        js(uid)
    )
}

/// The Encrypt example of formats.md.
fn encrypt_request(uid: &str, data: &[u8]) -> String {
    format!(
        r#"{{"tag":"Encrypt","type":"Structure","value":[
  {{"tag":"UniqueIdentifier","type":"TextString","value":{}}},
  {{"tag":"CryptographicParameters","type":"Structure","value":[
    {{"tag":"BlockCipherMode","type":"Enumeration","value":"GCM"}},
    {{"tag":"CryptographicAlgorithm","type":"Enumeration","value":"AES"}}]}},
  {{"tag":"Data","type":"ByteString","value":"{}"}}]}}"#,
        js(uid),
        hex_upper(data)
    )
}

fn decrypt_request(uid: &str, nonce_tag: &str, nonce: &str, data: &str, tag: &str) -> String {
    format!(
        r#"{{"tag":"Decrypt","type":"Structure","value":[
  {{"tag":"UniqueIdentifier","type":"TextString","value":{}}},
  {{"tag":"CryptographicParameters","type":"Structure","value":[
    {{"tag":"BlockCipherMode","type":"Enumeration","value":"GCM"}},
    {{"tag":"CryptographicAlgorithm","type":"Enumeration","value":"AES"}}]}},
  {{"tag":"Data","type":"ByteString","value":"{data}"}},
  {{"tag":"{nonce_tag}","type":"ByteString","value":"{nonce}"}},
  {{"tag":"AuthenticatedEncryptionTag","type":"ByteString","value":"{tag}"}}]}}"#,
        js(uid)
    )
}

fn revoke_request(uid: &str) -> String {
    format!(
        r#"{{"tag":"Revoke","type":"Structure","value":[
  {{"tag":"UniqueIdentifier","type":"TextString","value":{}}},
  {{"tag":"RevocationReason","type":"Structure","value":[
    {{"tag":"RevocationReasonCode","type":"Enumeration","value":"Unspecified"}}]}}]}}"#,
        js(uid)
    )
}

fn text_of<'a>(v: &'a Value, tag: &str) -> &'a str {
    v.child(tag)
        .and_then(TtlvExt::text)
        .unwrap_or_else(|| panic!("no {tag} in {v}"))
}

/// Create an AES key as `user` with a fresh tag, activate it, return its uid.
fn active_key(h: &mut Harness, user: &str, tag: &str) -> String {
    let mut c = h.client(user);
    let created = ok_json(kmip(&mut c, &create_aes_request(tag)), "Create");
    let uid = text_of(&created, "UniqueIdentifier").to_owned();
    ok_json(kmip(&mut c, &activate_request(&uid)), "Activate");
    uid
}

fn version_and_health(h: &mut Harness) {
    let mut c = h.client("alice");
    let v = ok_json(c.get("/version").unwrap(), "version");
    assert!(v.as_str().is_some_and(|s| !s.is_empty()), "version: {v}");
    let health = c.get("/health").unwrap();
    assert_eq!(health.status, 200);
    assert_eq!(c.get("/no/such/route").unwrap().status, 404);
    assert_eq!(c.get("/kmip/2_1").unwrap().status, 405);
}

fn formats_examples_verbatim(h: &mut Harness) {
    let mut c = h.client("alice");
    let created = ok_json(kmip(&mut c, &create_aes_request("MyTag")), "Create");
    assert_eq!(
        created.get("tag").and_then(Value::as_str),
        Some("CreateResponse")
    );
    assert_eq!(text_of(&created, "ObjectType"), "SymmetricKey");
    let uid = text_of(&created, "UniqueIdentifier").to_owned();

    // Created without ActivationDate: PreActive, so Encrypt is refused until Activate.
    let r = kmip(&mut c, &encrypt_request(&uid, b"hello"));
    assert_eq!(r.status, 422, "encrypt with a pre-active key: {}", r.text());
    ok_json(kmip(&mut c, &activate_request(&uid)), "Activate");

    // Encrypt by tag: `["MyTag"]` as the UniqueIdentifier.
    let plaintext = [0x5Au8; 64];
    let enc = ok_json(
        kmip(&mut c, &encrypt_request("[\"MyTag\"]", &plaintext)),
        "Encrypt",
    );
    assert_eq!(
        enc.get("tag").and_then(Value::as_str),
        Some("EncryptResponse")
    );
    assert_eq!(text_of(&enc, "UniqueIdentifier"), uid);
    let nonce = enc
        .child("IVCounterNonce")
        .and_then(TtlvExt::bytes)
        .expect("IVCounterNonce");
    let tag = enc
        .child("AuthenticatedEncryptionTag")
        .and_then(TtlvExt::bytes)
        .expect("tag");
    let data = enc.child("Data").and_then(TtlvExt::bytes).expect("Data");
    assert_eq!(nonce.len(), 12);
    assert_eq!(tag.len(), 16);
    assert_eq!(data.len(), plaintext.len());
    assert_ne!(data, plaintext);
    // Byte strings are upper-case hex.
    let hex = enc.child("Data").and_then(TtlvExt::text).unwrap();
    assert_eq!(hex, hex.to_uppercase());

    // Decrypt, with both spellings of the nonce tag.
    for spelling in ["IVCounterNonce", "IvCounterNonce"] {
        let dec = ok_json(
            kmip(
                &mut c,
                &decrypt_request(
                    &uid,
                    spelling,
                    &hex_upper(&nonce),
                    &hex_upper(&data),
                    &hex_upper(&tag),
                ),
            ),
            "Decrypt",
        );
        assert_eq!(
            dec.child("Data").and_then(TtlvExt::bytes).unwrap(),
            plaintext
        );
    }
    // A flipped ciphertext bit does not authenticate.
    let mut bad = data.clone();
    bad[0] ^= 1;
    let r = kmip(
        &mut c,
        &decrypt_request(
            &uid,
            "IVCounterNonce",
            &hex_upper(&nonce),
            &hex_upper(&bad),
            &hex_upper(&tag),
        ),
    );
    assert!(
        r.status == 422 || r.status == 500,
        "tampered decrypt: {} {}",
        r.status,
        r.text()
    );
}

fn batch_request_message(h: &mut Harness) {
    let mut c = h.client("alice");
    let body = format!(
        r#"{{"tag":"RequestMessage","type":"Structure","value":[
  {{"tag":"RequestHeader","type":"Structure","value":[
    {{"tag":"ProtocolVersion","type":"Structure","value":[
      {{"tag":"ProtocolVersionMajor","type":"Integer","value":2}},
      {{"tag":"ProtocolVersionMinor","type":"Integer","value":1}}]}},
    {{"tag":"BatchCount","type":"Integer","value":2}}]}},
  {{"tag":"BatchItem","type":"Structure","value":[
    {{"tag":"Operation","type":"Enumeration","value":"Create"}},
    {{"tag":"RequestPayload","type":"Structure","value":{create}}}]}},
  {{"tag":"BatchItem","type":"Structure","value":[
    {{"tag":"Operation","type":"Enumeration","value":"Frobnicate"}},
    {{"tag":"RequestPayload","type":"Structure","value":[]}}]}}]}}"#,
        create = serde_json::from_str::<Value>(&create_aes_request("batch-tag")).unwrap()["value"]
    );
    let r = kmip(&mut c, &body);
    // A batch answers 200 with one result per item; the unknown operation fails on its own.
    let v = ok_json(r, "RequestMessage");
    assert_eq!(
        v.get("tag").and_then(Value::as_str),
        Some("ResponseMessage")
    );
    let items: Vec<&Value> = v.children("BatchItem").collect();
    assert_eq!(items.len(), 2, "{v}");
    assert_eq!(text_of(items[0], "ResultStatus"), "Success");
    assert_eq!(text_of(items[1], "ResultStatus"), "OperationFailed");
}

fn malformed_and_wrong_requests(h: &mut Harness) {
    let mut c = h.client("alice");
    let cases: &[(&str, &str)] = &[
        (
            "malformed JSON",
            r#"{"tag":"Create","type":"Structure","value":["#,
        ),
        ("not TTLV", r#"{"hello":"world"}"#),
        (
            "wrong type (Integer given as text)",
            r#"{"tag":"Create","type":"Structure","value":[
              {"tag":"ObjectType","type":"Enumeration","value":"SymmetricKey"},
              {"tag":"Attributes","type":"Structure","value":[
                {"tag":"CryptographicAlgorithm","type":"Enumeration","value":"AES"},
                {"tag":"CryptographicLength","type":"Integer","value":"256"}]}]}"#,
        ),
        (
            "ByteString that is not hex",
            r#"{"tag":"Encrypt","type":"Structure","value":[
              {"tag":"UniqueIdentifier","type":"TextString","value":"x"},
              {"tag":"Data","type":"ByteString","value":"not hex"}]}"#,
        ),
        (
            "unknown operation",
            r#"{"tag":"Frobnicate","type":"Structure","value":[]}"#,
        ),
        (
            "unknown object",
            r#"{"tag":"Get","type":"Structure","value":[
              {"tag":"UniqueIdentifier","type":"TextString","value":"does-not-exist"}]}"#,
        ),
    ];
    for (what, body) in cases {
        let r = kmip(&mut c, body);
        assert!(
            r.status == 422 || r.status == 404 || r.status == 400,
            "{what}: got {} {}",
            r.status,
            r.text()
        );
        assert!(!r.body.is_empty(), "{what}: empty error message");
    }
    // The same keep-alive connection still works after all of that.
    ok_json(c.get("/version").unwrap(), "version after errors");
}

fn lifecycle_and_usage_rules(h: &mut Harness) {
    let mut c = h.client("alice");
    // Usage mask: a key that may only Decrypt (8) cannot Encrypt.
    let body = create_aes_request("decrypt-only").replace("2108", "8");
    let created = ok_json(kmip(&mut c, &body), "Create decrypt-only");
    let uid = text_of(&created, "UniqueIdentifier").to_owned();
    ok_json(kmip(&mut c, &activate_request(&uid)), "Activate");
    let r = kmip(&mut c, &encrypt_request(&uid, b"data"));
    assert_eq!(r.status, 422, "usage-mask violation: {}", r.text());

    // Revoked keys cannot encrypt.
    let uid = active_key(h, "alice", "to-revoke");
    let mut c = h.client("alice");
    ok_json(
        kmip(&mut c, &encrypt_request(&uid, b"data")),
        "Encrypt before revoke",
    );
    ok_json(kmip(&mut c, &revoke_request(&uid)), "Revoke");
    let r = kmip(&mut c, &encrypt_request(&uid, b"data"));
    assert_eq!(r.status, 422, "encrypt with a revoked key: {}", r.text());

    // Destroyed: the material is gone.
    let destroy = format!(
        r#"{{"tag":"Destroy","type":"Structure","value":[{{"tag":"UniqueIdentifier","type":"TextString","value":{}}}]}}"#,
        js(&uid)
    );
    ok_json(kmip(&mut c, &destroy), "Destroy");
    let get = format!(
        r#"{{"tag":"Get","type":"Structure","value":[{{"tag":"UniqueIdentifier","type":"TextString","value":{}}}]}}"#,
        js(&uid)
    );
    let r = kmip(&mut c, &get);
    assert_ne!(r.status, 200, "Get of a destroyed key: {}", r.text());
}

fn access_rights(h: &mut Harness) {
    let uid = active_key(h, "alice", "shared");
    let mut alice = h.client("alice");
    let mut bob = h.client("bob");

    // Not the owner: refused.
    let r = kmip(&mut bob, &encrypt_request(&uid, b"x"));
    assert!(
        matches!(r.status, 401 | 403 | 404 | 422),
        "non-owner encrypt: {} {}",
        r.status,
        r.text()
    );
    let r = bob
        .post(
            "/access/grant",
            json!({"unique_identifier": uid, "user_id": "bob", "operation_types": ["encrypt"]})
                .to_string()
                .as_bytes(),
        )
        .unwrap();
    assert_ne!(r.status, 200, "bob granted himself access: {}", r.text());

    // The owner grants encrypt.
    let grant = json!({"unique_identifier": uid, "user_id": "bob", "operation_types": ["encrypt"]});
    let g = ok_json(
        alice
            .post("/access/grant", grant.to_string().as_bytes())
            .unwrap(),
        "grant",
    );
    assert!(g.get("success").is_some(), "{g}");
    ok_json(
        kmip(&mut bob, &encrypt_request(&uid, b"x")),
        "bob encrypts after grant",
    );
    // ... and only encrypt.
    let r = kmip(&mut bob, &revoke_request(&uid));
    assert_ne!(r.status, 200, "bob revoked alice's key: {}", r.text());

    let list = ok_json(alice.get(&format!("/access/list/{uid}")).unwrap(), "list");
    assert!(list.to_string().contains("bob"), "list: {list}");
    let owned = ok_json(alice.get("/access/owned").unwrap(), "owned");
    assert!(owned.to_string().contains(&uid), "owned: {owned}");
    let obtained = ok_json(bob.get("/access/obtained").unwrap(), "obtained");
    assert!(obtained.to_string().contains(&uid), "obtained: {obtained}");
    let bob_owned = ok_json(bob.get("/access/owned").unwrap(), "bob owned");
    assert!(
        !bob_owned.to_string().contains(&uid),
        "bob owns alice's key: {bob_owned}"
    );

    // Older clients send a single `operation_type`.
    let revoke = json!({"unique_identifier": uid, "user_id": "bob", "operation_type": "encrypt"});
    ok_json(
        alice
            .post("/access/revoke", revoke.to_string().as_bytes())
            .unwrap(),
        "revoke access",
    );
    let r = kmip(&mut bob, &encrypt_request(&uid, b"x"));
    assert_ne!(
        r.status,
        200,
        "bob still encrypts after revoke: {}",
        r.text()
    );

    // Malformed access request body.
    let r = alice.post("/access/grant", b"{not json").unwrap();
    assert!(
        matches!(r.status, 400 | 422),
        "bad grant body: {} {}",
        r.status,
        r.text()
    );
}

fn ckms_symmetric_round_trip(h: &mut Harness) {
    let created = h
        .ckms(
            "carol",
            &["--json", "sym", "keys", "create", "--tag", "ckms-sym"],
        )
        .json("sym keys create");
    let uid = created["unique_identifier"]
        .as_str()
        .expect("uid")
        .to_owned();

    let plain = h.path("plain.txt");
    let content: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&plain, &content).unwrap();
    let enc = h.path("plain.enc");
    let dec = h.path("plain.dec");
    let (p, e, d) = (
        plain.display().to_string(),
        enc.display().to_string(),
        dec.display().to_string(),
    );
    h.ckms(
        "carol",
        &["sym", "encrypt", "--key", &uid, "-i", &p, "-o", &e],
    )
    .expect_ok("sym encrypt");
    let encrypted = std::fs::read(&enc).unwrap();
    assert_eq!(
        encrypted.len(),
        12 + content.len() + 16,
        "nonce ‖ ciphertext ‖ tag"
    );
    h.ckms(
        "carol",
        &["sym", "decrypt", "--tag", "ckms-sym", "-i", &e, "-o", &d],
    )
    .expect_ok("sym decrypt by tag");
    assert_eq!(std::fs::read(&dec).unwrap(), content);

    // Export raw, re-import, and decrypt with the imported copy.
    let raw = h.path("key.bin").display().to_string();
    h.ckms("carol", &["sym", "keys", "export", "--key-id", &uid, &raw])
        .expect_ok("export");
    assert_eq!(std::fs::read(&raw).unwrap().len(), 32);
    let imported = h
        .ckms(
            "carol",
            &["--json", "sym", "keys", "import", &raw, "--tag", "imported"],
        )
        .json("import");
    let uid2 = imported["unique_identifier"].as_str().unwrap().to_owned();
    assert_ne!(uid, uid2);
    std::fs::remove_file(&dec).unwrap();
    h.ckms(
        "carol",
        &["sym", "decrypt", "--key", &uid2, "-i", &e, "-o", &d],
    )
    .expect_ok("decrypt with imported key");
    assert_eq!(std::fs::read(&dec).unwrap(), content);

    // ChaCha20-Poly1305 and AES-GCM-SIV.
    let chacha = h
        .ckms(
            "carol",
            &["--json", "sym", "keys", "create", "--algorithm", "chacha20"],
        )
        .json("create chacha20")["unique_identifier"]
        .as_str()
        .unwrap()
        .to_owned();
    for (key, mode) in [(&chacha, "chacha20-poly1305"), (&uid, "aes-gcm-siv")] {
        h.ckms(
            "carol",
            &[
                "sym", "encrypt", "--key", key, "--mode", mode, "-i", &p, "-o", &e,
            ],
        )
        .expect_ok(mode);
        std::fs::remove_file(&dec).unwrap();
        h.ckms(
            "carol",
            &[
                "sym", "decrypt", "--key", key, "--mode", mode, "-i", &e, "-o", &d,
            ],
        )
        .expect_ok(mode);
        assert_eq!(std::fs::read(&dec).unwrap(), content, "{mode}");
    }

    // ReKey gives a new key; revoke then destroy the old one.
    let rekeyed = h
        .ckms("carol", &["--json", "sym", "keys", "rekey", &uid])
        .json("rekey");
    assert_ne!(rekeyed["unique_identifier"].as_str().unwrap(), uid);
    h.ckms(
        "carol",
        &["sym", "keys", "revoke", &uid2, "--reason", "test"],
    )
    .expect_ok("revoke");
    let err = h
        .ckms(
            "carol",
            &["sym", "encrypt", "--key", &uid2, "-i", &p, "-o", &e],
        )
        .expect_err("encrypt with revoked key");
    assert!(
        err.contains("(HTTP 422)") && err.contains("WrongKeyLifecycleState"),
        "{err}"
    );
    h.ckms("carol", &["sym", "keys", "destroy", &uid2])
        .expect_ok("destroy");
}

fn ckms_ec_round_trip(h: &mut Harness) {
    let doc = h.path("doc.txt");
    std::fs::write(&doc, b"to be signed").unwrap();
    let other = h.path("other.txt");
    std::fs::write(&other, b"something else").unwrap();
    let sig = h.path("doc.sig");
    let (doc, other, sig) = (
        doc.display().to_string(),
        other.display().to_string(),
        sig.display().to_string(),
    );
    for curve in ["p256", "p384", "ed25519"] {
        let pair = h
            .ckms(
                "dave",
                &["--json", "ec", "keys", "create", "--curve", curve],
            )
            .json("ec keys create");
        let private = pair["private_key_unique_identifier"]
            .as_str()
            .unwrap()
            .to_owned();
        let public = pair["public_key_unique_identifier"]
            .as_str()
            .unwrap()
            .to_owned();
        h.ckms(
            "dave",
            &["ec", "sign", "--key", &private, "-i", &doc, "-o", &sig],
        )
        .expect_ok("sign");
        let out = h
            .ckms(
                "dave",
                &["ec", "verify", "--key", &public, "-i", &doc, "-s", &sig],
            )
            .expect_ok("verify");
        assert!(out.contains("valid"), "{curve}: {out}");
        let err = h
            .ckms(
                "dave",
                &["ec", "verify", "--key", &public, "-i", &other, "-s", &sig],
            )
            .expect_err("verify of another document");
        assert!(err.contains("signature is invalid"), "{err}");

        // Export the public key (SPKI DER) and import it back as a new object.
        let der = h.path(&format!("{curve}-pub.der")).display().to_string();
        h.ckms("dave", &["ec", "keys", "export", "--key-id", &public, &der])
            .expect_ok("export public");
        let imported = h
            .ckms(
                "dave",
                &["--json", "ec", "keys", "import", &der, "--curve", curve],
            )
            .json("import public");
        let pub2 = imported["unique_identifier"].as_str().unwrap().to_owned();
        h.ckms(
            "dave",
            &["ec", "verify", "--key", &pub2, "-i", &doc, "-s", &sig],
        )
        .expect_ok("verify with imported public key");

        // Private key export (PKCS#8) and import.
        let p8 = h.path(&format!("{curve}-priv.der")).display().to_string();
        h.ckms("dave", &["ec", "keys", "export", "--key-id", &private, &p8])
            .expect_ok("export private");
        let priv2 = h
            .ckms(
                "dave",
                &["--json", "ec", "keys", "import", &p8, "--curve", curve],
            )
            .json("import private")["unique_identifier"]
            .as_str()
            .unwrap()
            .to_owned();
        h.ckms(
            "dave",
            &["ec", "sign", "--key", &priv2, "-i", &doc, "-o", &sig],
        )
        .expect_ok("sign with imported private key");
        h.ckms(
            "dave",
            &["ec", "verify", "--key", &public, "-i", &doc, "-s", &sig],
        )
        .expect_ok("verify signature of the imported private key");

        h.ckms("dave", &["ec", "keys", "revoke", &private])
            .expect_ok("revoke");
        let err = h
            .ckms(
                "dave",
                &["ec", "sign", "--key", &private, "-i", &doc, "-o", &sig],
            )
            .expect_err("sign with a revoked key");
        assert!(err.contains("WrongKeyLifecycleState"), "{err}");
        h.ckms("dave", &["ec", "keys", "destroy", &private])
            .expect_ok("destroy");
    }
}

fn ckms_objects_and_access(h: &mut Harness) {
    let uid = h
        .ckms(
            "erin",
            &[
                "--json", "sym", "keys", "create", "--tag", "erin-a", "--tag", "erin-b",
            ],
        )
        .json("create")["unique_identifier"]
        .as_str()
        .unwrap()
        .to_owned();
    let found = h
        .ckms(
            "erin",
            &["--json", "locate", "--tag", "erin-a", "--tag", "erin-b"],
        )
        .json("locate");
    assert_eq!(found["unique_identifiers"], json!([uid]));
    let none = h
        .ckms("erin", &["--json", "locate", "--tag", "no-such-tag"])
        .json("locate");
    assert_eq!(none["unique_identifiers"], json!([]));
    let by_type = h
        .ckms(
            "erin",
            &[
                "--json",
                "locate",
                "--type",
                "SymmetricKey",
                "--algorithm",
                "AES",
                "--state",
                "Active",
            ],
        )
        .json("locate by type");
    assert!(
        by_type["unique_identifiers"]
            .as_array()
            .unwrap()
            .contains(&json!(uid))
    );

    h.ckms("erin", &["set-attribute", &uid, "--name", "erin-backup"])
        .expect_ok("set-attribute");
    let found = h
        .ckms("erin", &["--json", "locate", "--name", "erin-backup"])
        .json("locate by name");
    assert_eq!(found["unique_identifiers"], json!([uid]));
    let attrs = h
        .ckms("erin", &["--json", "get-attributes", &uid])
        .json("get-attributes");
    assert_eq!(attrs["unique_identifier"], json!(uid));
    let text = attrs["attributes"].to_string();
    assert!(
        text.contains("AES") && text.contains("erin-backup"),
        "{text}"
    );
    let human = h
        .ckms("erin", &["get-attributes", &uid])
        .expect_ok("get-attributes");
    assert!(human.contains("CryptographicAlgorithm: AES"), "{human}");

    // Locate is scoped to what the caller may see.
    let others = h
        .ckms("frank", &["--json", "locate", "--tag", "erin-a"])
        .json("locate other");
    assert_eq!(others["unique_identifiers"], json!([]));

    h.ckms(
        "erin",
        &["access-rights", "grant", "frank", &uid, "encrypt", "get"],
    )
    .expect_ok("grant");
    let list = h
        .ckms("erin", &["--json", "access-rights", "list", &uid])
        .json("list");
    assert!(list.to_string().contains("frank"), "{list}");
    let obtained = h
        .ckms("frank", &["--json", "access-rights", "obtained"])
        .json("obtained");
    assert!(obtained.to_string().contains(&uid), "{obtained}");
    let owned = h
        .ckms("erin", &["--json", "access-rights", "owned"])
        .json("owned");
    assert!(owned.to_string().contains(&uid), "{owned}");
    let f = h.path("frank.txt");
    std::fs::write(&f, b"frank").unwrap();
    let (fi, fo) = (
        f.display().to_string(),
        h.path("frank.enc").display().to_string(),
    );
    h.ckms(
        "frank",
        &["sym", "encrypt", "--key", &uid, "-i", &fi, "-o", &fo],
    )
    .expect_ok("frank encrypts with a granted key");
    let err = h
        .ckms("frank", &["sym", "keys", "revoke", &uid])
        .expect_err("frank revokes erin's key");
    assert!(err.contains("PermissionDenied"), "{err}");
    h.ckms(
        "erin",
        &["access-rights", "revoke", "frank", &uid, "encrypt", "get"],
    )
    .expect_ok("revoke access");
    let err = h
        .ckms(
            "frank",
            &["sym", "encrypt", "--key", &uid, "-i", &fi, "-o", &fo],
        )
        .expect_err("frank encrypts after revoke");
    // With no right left the key does not exist for frank (issue 12: PermissionDenied told
    // a user without rights that the uid exists).
    assert!(err.contains("ObjectNotFound"), "{err}");

    let v = h
        .ckms("erin", &["server-version"])
        .expect_ok("server-version");
    assert!(!v.trim().is_empty());
}

fn ckms_errors(h: &mut Harness) {
    let err = h
        .ckms(
            "erin",
            &[
                "sym",
                "encrypt",
                "--key",
                "nope",
                "-i",
                "/nonexistent/file",
                "-o",
                "/tmp/x",
            ],
        )
        .expect_err("missing input file");
    assert!(err.contains("/nonexistent/file"), "{err}");
    let err = h
        .ckms(
            "erin",
            &[
                "sym",
                "keys",
                "export",
                "--key-id",
                "no-such-key",
                "/tmp/never-written",
            ],
        )
        .expect_err("export of an unknown key");
    assert!(
        err.contains("(HTTP 422)") && err.contains("ObjectNotFound"),
        "{err}"
    );
    let err = h
        .ckms("erin", &["sym", "encrypt", "-i", "a", "-o", "b"])
        .expect_err("no key");
    assert!(err.contains("--tag"), "{err}");
    let json_err = h
        .ckms("erin", &["--json", "sym", "keys", "destroy", "no-such-key"])
        .expect_err("json error");
    let v: Value = serde_json::from_str(json_err.trim()).expect("JSON error on stderr");
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("ObjectNotFound")),
        "{v}"
    );
}

fn ckms_config_file(h: &mut Harness) {
    let files = h.user("gina");
    // $CKMS_CONF, with paths relative to the file's directory.
    let conf_dir = h.path("conf");
    std::fs::create_dir_all(&conf_dir).unwrap();
    std::fs::copy(&h.pki.ca_cert, conf_dir.join("ca.pem")).unwrap();
    std::fs::copy(&files.cert, conf_dir.join("gina.pem")).unwrap();
    std::fs::copy(&files.key, conf_dir.join("gina.key")).unwrap();
    let conf = conf_dir.join("ckms.toml");
    std::fs::write(
        &conf,
        format!(
            "url = \"{}\"\nca_cert = \"ca.pem\"\nclient_cert = \"gina.pem\"\nclient_key = \"gina.key\"\n",
            h.server.url()
        ),
    )
    .unwrap();
    let created = h
        .ckms_bare(
            &["--json", "sym", "keys", "create"],
            &[("CKMS_CONF", &conf)],
        )
        .json("create with $CKMS_CONF");
    let uid = created["unique_identifier"].as_str().unwrap().to_owned();
    // ~/.config/ckms/ckms.toml when $CKMS_CONF is unset (HOME is the test dir).
    let home_conf = h.path(".config/ckms");
    std::fs::create_dir_all(&home_conf).unwrap();
    std::fs::copy(&conf, home_conf.join("ckms.toml")).unwrap();
    for f in ["ca.pem", "gina.pem", "gina.key"] {
        std::fs::copy(conf_dir.join(f), home_conf.join(f)).unwrap();
    }
    let owned = h
        .ckms_bare(&["--json", "access-rights", "owned"], &[])
        .json("owned with ~/.config");
    assert!(owned.to_string().contains(&uid), "{owned}");
    // A flag wins over the file: a wrong URL fails.
    let err = h
        .ckms_bare(&["--url", "https://127.0.0.1:1", "server-version"], &[])
        .expect_err("flag overrides file");
    assert!(err.contains("cannot talk to the KMS"), "{err}");
    // A broken file is an error with its path.
    let bad = h.path("bad.toml");
    std::fs::write(&bad, "url = [").unwrap();
    let err = h
        .ckms_bare(&["server-version"], &[("CKMS_CONF", &bad)])
        .expect_err("broken config");
    assert!(err.contains("bad.toml"), "{err}");
    // No configuration at all: a message naming the missing setting.
    let empty = tempfile::tempdir().unwrap();
    let err = h
        .ckms_bare(&["server-version"], &[("HOME", empty.path())])
        .expect_err("no configuration");
    assert!(err.contains("url"), "{err}");
}

fn query_discover_and_locate_by_type(h: &mut Harness) {
    let mut c = h.client("hana");
    let q = ok_json(
        kmip(
            &mut c,
            r#"{"tag":"Query","type":"Structure","value":[
              {"tag":"QueryFunction","type":"Enumeration","value":"QueryOperations"},
              {"tag":"QueryFunction","type":"Enumeration","value":"QueryObjects"}]}"#,
        ),
        "Query",
    );
    let ops: Vec<&str> = q.children("Operation").filter_map(TtlvExt::text).collect();
    for op in [
        "Create",
        "CreateKeyPair",
        "Encrypt",
        "Decrypt",
        "Sign",
        "SignatureVerify",
        "Locate",
        "ReKey",
    ] {
        assert!(ops.contains(&op), "{op} missing from {ops:?}");
    }
    let d = ok_json(
        kmip(
            &mut c,
            r#"{"tag":"DiscoverVersions","type":"Structure","value":[]}"#,
        ),
        "DiscoverVersions",
    );
    let pv = d.child("ProtocolVersion").expect("ProtocolVersion");
    assert_eq!(
        pv.child("ProtocolVersionMajor")
            .and_then(|v| v.get("value")),
        Some(&json!(2))
    );
    assert_eq!(
        pv.child("ProtocolVersionMinor")
            .and_then(|v| v.get("value")),
        Some(&json!(1))
    );

    // Locate by object type: the new symmetric key is found as a SymmetricKey only.
    let created = ok_json(kmip(&mut c, &create_aes_request("by-type")), "Create");
    let uid = text_of(&created, "UniqueIdentifier").to_owned();
    let locate = |c: &mut ckms::http::HttpClient, ty: &str| {
        ok_json(
            kmip(
                c,
                &format!(
                    r#"{{"tag":"Locate","type":"Structure","value":[{{"tag":"Attributes","type":"Structure","value":[
                      {{"tag":"ObjectType","type":"Enumeration","value":"{ty}"}}]}}]}}"#
                ),
            ),
            "Locate",
        )
    };
    let sym = locate(&mut c, "SymmetricKey");
    assert!(
        sym.children("UniqueIdentifier")
            .filter_map(TtlvExt::text)
            .any(|u| u == uid),
        "{sym}"
    );
    let private = locate(&mut c, "PrivateKey");
    assert!(!private.to_string().contains(&uid), "{private}");
}

/// Upper-case hex, as JSON TTLV byte strings are written (the core's encoder).
fn hex_upper(bytes: &[u8]) -> String {
    let mut out = Vec::new();
    kms::kmip::json::hex_upper(bytes, &mut out);
    String::from_utf8(out).expect("hex is ASCII")
}

/// Reads raw JSON TTLV answers as they are on the wire (this suite checks the wire format itself,
/// so it looks at the JSON rather than at the decoded items).
trait TtlvExt {
    /// The first direct child with this tag.
    fn child(&self, tag: &str) -> Option<&Value>;
    /// All direct children with this tag.
    fn children<'a>(&'a self, tag: &'a str) -> impl Iterator<Item = &'a Value> + 'a;
    /// The `value` as text.
    fn text(&self) -> Option<&str>;
    /// The `value` of a ByteString, decoded.
    fn bytes(&self) -> Option<Vec<u8>>;
}

impl TtlvExt for Value {
    fn child(&self, tag: &str) -> Option<&Value> {
        self["value"].as_array()?.iter().find(|c| c["tag"] == tag)
    }
    fn children<'a>(&'a self, tag: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self["value"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(move |c| c["tag"] == tag)
    }
    fn text(&self) -> Option<&str> {
        self["value"].as_str()
    }
    fn bytes(&self) -> Option<Vec<u8>> {
        kms::kmip::json::unhex(self.text()?)
    }
}
