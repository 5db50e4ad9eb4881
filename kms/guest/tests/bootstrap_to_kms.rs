//! The image's service on the host: `kms_guest::Server` on a netstack `Stack` joined by an
//! in-memory cable to a second stack (the "world"), which carries a rustls client and a byte
//! proxy to a real `redis-server`. The whole chain runs: TLS (unbuffered) → bootstrap API
//! (CSR, certificate, Redis probe over netstack, client CA, start) → the KMS with mTLS on
//! Redis-with-Findex over netstack; plus garbage, oversized bodies, idle connections and the
//! connection limit.

mod common;

use common::*;

const CREATE: &str = r#"{"tag":"Create","value":[
  {"tag":"ObjectType","type":"Enumeration","value":"SymmetricKey"},
  {"tag":"Attributes","value":[
    {"tag":"CryptographicAlgorithm","type":"Enumeration","value":"AES"},
    {"tag":"CryptographicLength","type":"Integer","value":256},
    {"tag":"ActivationDate","type":"DateTime","value":"2025-01-01T00:00:00Z"}]}]}"#;

#[test]
fn bootstrap_then_kms_on_redis_over_netstack() {
    let admin_ca = Ca::new("provisioner CA");
    let (admin_chain, admin_key) = admin_ca.issue("admin");
    let spki = kms::x509::spki_der(&admin_chain[0]).unwrap();
    let pin = {
        use sha2::Digest;
        let h: [u8; 32] = sha2::Sha256::digest(&spki).into();
        h
    };
    let mut h = Harness::new(ServiceLimits::default(), ProvisionerPolicy::Pinned(pin));
    let server_ca = Ca::new("server CA");
    let users = Ca::new("users CA");

    // Someone else cannot provision (pinned SPKI): 403 with the reason, before anything.
    let (intruder_chain, intruder_key) = admin_ca.issue("admin");
    let c = h.tcp_connect(PORT);
    let mut tls = bootstrap_client(Some((&intruder_chain, &intruder_key)));
    let (resp, _) = h.exchange(&mut tls, c, &post("/csr", r#"{"subject":"CN=kms.test"}"#));
    assert!(
        resp.starts_with("HTTP/1.1 403")
            && resp.contains("the client certificate is not the provisioner's"),
        "intruder got {resp:?}"
    );

    // The KMIP port serves only once the KMS does: before `/start`, closed at once.
    let k = h.tcp_connect(KMIP_PORT);
    let mut closed = false;
    for _ in 0..200 {
        h.step();
        let mut buf = [0u8; 16];
        if matches!(
            h.world.lock().unwrap().stack.read(k, &mut buf),
            Ok(0) | Err(TcpError::Reset | TcpError::InvalidConnection)
        ) {
            closed = true;
            break;
        }
    }
    assert!(closed, "the KMIP port accepted a connection before /start");

    // The provisioner: CSR, certificate, database, client CA, start.
    let c = h.tcp_connect(PORT);
    let mut tls = bootstrap_client(Some((&admin_chain, &admin_key)));
    let (resp, _) = h.exchange(
        &mut tls,
        c,
        &post(
            "/csr",
            r#"{"subject":"CN=kms.test","dns_names":["kms.test"]}"#,
        ),
    );
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let csr = body(&resp)["csr_pem"].as_str().unwrap().to_string();
    let chain_pem = server_ca.sign_csr(&csr);
    let req = serde_json::json!({ "chain_pem": chain_pem }).to_string();
    let (resp, _) = h.exchange(&mut tls, c, &post("/certificate", &req));
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let (resp, _) = h.exchange(&mut tls, c, &post("/start", ""));
    assert!(
        resp.starts_with("HTTP/1.1 409"),
        "start before the database: {resp}"
    );
    let secret = <base64ct::Base64 as base64ct::Encoding>::encode_string(&[42u8; 32]);
    let bad =
        serde_json::json!({ "url": "redis://10.0.2.2:6380", "db_secret": secret }).to_string();
    let (resp, _) = h.exchange(&mut tls, c, &post("/redis-findex", &bad));
    assert!(
        !resp.starts_with("HTTP/1.1 200"),
        "unreachable Redis accepted: {resp}"
    );
    let good = serde_json::json!({ "url": h.redis_url, "db_secret": secret }).to_string();
    let (resp, _) = h.exchange(&mut tls, c, &post("/redis-findex", &good));
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let ca = serde_json::json!({ "ca_pem": users.pem }).to_string();
    let (resp, _) = h.exchange(&mut tls, c, &post("/client-ca", &ca));
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let (resp, _) = h.exchange(&mut tls, c, &post("/start", ""));
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    for _ in 0..100 {
        h.step();
    }
    assert!(h.server.serving());

    // The KMS: mTLS with a user certificate, the server certificate chains to the server CA.
    let (alice_chain, alice_key) = users.issue("alice");
    let c = h.tcp_connect(PORT);
    let mut tls = client(
        std::slice::from_ref(&server_ca.der),
        Some((&alice_chain, &alice_key)),
    );
    let (resp, _) = h.exchange(&mut tls, c, &post("/kmip/2_1", CREATE));
    assert!(
        resp.starts_with("HTTP/1.1 200") && resp.contains("CreateResponse"),
        "{resp}"
    );
    let marker = r#""UniqueIdentifier","type":"TextString","value":""#;
    let at = resp.find(marker).unwrap() + marker.len();
    let uid = resp[at..at + 36].to_string();
    let get = format!(
        r#"{{"tag":"Get","value":[{{"tag":"UniqueIdentifier","type":"TextString","value":"{uid}"}}]}}"#
    );
    let (resp, _) = h.exchange(&mut tls, c, &post("/kmip/2_1", &get));
    assert!(
        resp.starts_with("HTTP/1.1 200") && resp.contains("GetResponse"),
        "{resp}"
    );

    // Binary TTLV on the KMIP port, same identity and store: Create, then Get by the ID
    // placeholder, then Get of the key made over JSON.
    let k = h.tcp_connect(KMIP_PORT);
    let mut ktls = client(
        std::slice::from_ref(&server_ca.der),
        Some((&alice_chain, &alice_key)),
    );
    let create = vec![
        Ttlv::enumeration("ObjectType", "SymmetricKey"),
        Ttlv::structure(
            "Attributes",
            vec![
                Ttlv::enumeration("CryptographicAlgorithm", "AES"),
                Ttlv::int("CryptographicLength", 256),
                Ttlv::int("CryptographicUsageMask", 12),
            ],
        ),
    ];
    let r = h
        .exchange_ttlv(
            &mut ktls,
            k,
            &request_message(vec![("Create", create), ("Get", vec![])]),
        )
        .expect("KMIP answer");
    let items: Vec<&Ttlv> = r.all("BatchItem").collect();
    assert_eq!(items.len(), 2, "{r:?}");
    for i in &items {
        assert!(
            matches!(
                &i.get("ResultStatus").unwrap().value,
                Value::Enumeration(EnumValue::Code(0))
            ),
            "{i:?}"
        );
    }
    let key = items[1]
        .get("ResponsePayload")
        .unwrap()
        .get("SymmetricKey")
        .unwrap();
    let material = key
        .get("KeyBlock")
        .unwrap()
        .get("KeyValue")
        .unwrap()
        .get("KeyMaterial")
        .unwrap();
    assert!(matches!(&material.value, Value::ByteString(b) if b.len() == 32));
    let r = h
        .exchange_ttlv(
            &mut ktls,
            k,
            &request_message(vec![("Get", vec![Ttlv::text("UniqueIdentifier", &uid)])]),
        )
        .expect("KMIP answer");
    let item = r.get("BatchItem").unwrap();
    assert!(
        matches!(
            &item.get("ResultStatus").unwrap().value,
            Value::Enumeration(EnumValue::Code(0))
        ),
        "{item:?}"
    );

    // The key is in Redis (sealed): a second KMS on the same Redis and secret would find it;
    // here: another user cannot read it.
    let (bob_chain, bob_key) = users.issue("bob");
    let c2 = h.tcp_connect(PORT);
    let mut tls2 = client(
        std::slice::from_ref(&server_ca.der),
        Some((&bob_chain, &bob_key)),
    );
    let (resp, _) = h.exchange(&mut tls2, c2, &post("/kmip/2_1", &get));
    assert!(resp.starts_with("HTTP/1.1 422"), "{resp}");

    // No client certificate: the handshake succeeds (so `GET /attestation` stays public), the
    // KMS routes answer 401, and `/attestation` is answered by the attestation route (this
    // harness has no platform: 501 "unsupported"; the VM test checks a real report).
    let c3 = h.tcp_connect(PORT);
    let mut tls3 = client(std::slice::from_ref(&server_ca.der), None);
    let (resp, _) = h.exchange(&mut tls3, c3, &post("/kmip/2_1", &get));
    assert!(resp.starts_with("HTTP/1.1 401"), "{resp}");
    let nonce = "ab".repeat(32);
    let req = format!("GET /attestation?nonce={nonce} HTTP/1.1\r\nhost: kms\r\n\r\n");
    let (resp, _) = h.exchange(&mut tls3, c3, req.as_bytes());
    assert!(
        resp.starts_with("HTTP/1.1 501") && resp.contains("error"),
        "{resp}"
    );
    // Alice's connection too, between KMIP requests.
    let (resp, _) = h.exchange(&mut tls, c, req.as_bytes());
    assert!(
        resp.starts_with("HTTP/1.1 501") && resp.contains("error"),
        "{resp}"
    );
    let (resp, _) = h.exchange(&mut tls, c, b"GET /bootstrap HTTP/1.1\r\nhost: kms\r\n\r\n");
    assert!(resp.starts_with("HTTP/1.1 404"), "{resp}");

    // Garbage on the KMS port: closed; the service keeps serving alice.
    let c4 = h.tcp_connect(PORT);
    h.world
        .lock()
        .unwrap()
        .stack
        .write(c4, b"\x16\x03\x01\xff\xffgarbage garbage")
        .unwrap();
    for _ in 0..200 {
        h.step();
    }
    let (resp, _) = h.exchange(&mut tls, c, &post("/kmip/2_1", &get));
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(h.server.stats().accepted >= 6);
}

#[test]
fn limits_refuse_cleanly() {
    let limits = ServiceLimits {
        max_connections: 2,
        deadlines: Deadlines {
            handshake: StdDuration::from_millis(300),
            idle: StdDuration::from_millis(300),
            ..Deadlines::default()
        },
        evict_after: Duration::from_secs(3600),
        ..ServiceLimits::default()
    };
    let mut h = Harness::new(limits, ProvisionerPolicy::Open);
    // Provisioning always needs a client key (the first one is locked in).
    let (ac, ak) = Ca::new("admin CA").issue("admin");
    // An oversized bootstrap body: 413 then close.
    let c = h.tcp_connect(PORT);
    let mut tls = bootstrap_client(Some((&ac, &ak)));
    let big = "x".repeat(kms::bootstrap::routes::MAX_BODY + 1);
    let (resp, _) = h.exchange(&mut tls, c, &post("/csr", &big));
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");

    // Two idle connections fill the table; a third is closed at once.
    let a = h.tcp_connect(PORT);
    let b = h.tcp_connect(PORT);
    let _ = (a, b);
    for _ in 0..50 {
        h.step();
    }
    let refused_before = h.server.stats().refused;
    let _c = h.tcp_connect(PORT);
    for _ in 0..50 {
        h.step();
    }
    assert!(
        h.server.stats().refused > refused_before,
        "{:?}",
        h.server.stats()
    );

    // Connections that never handshake are closed at the handshake deadline; then new clients
    // get in.
    let t0 = StdInstant::now();
    while h.server.connections() > 0 && t0.elapsed() < StdDuration::from_secs(20) {
        h.step();
        std::thread::sleep(StdDuration::from_millis(5));
    }
    assert_eq!(h.server.connections(), 0);
    assert!(h.server.stats().slow_closed >= 2, "{:?}", h.server.stats());
    let c = h.tcp_connect(PORT);
    let mut tls = bootstrap_client(Some((&ac, &ak)));
    let (resp, _) = h.exchange(&mut tls, c, &post("/csr", r#"{"subject":"CN=kms.test"}"#));
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
}

#[test]
fn idle_connections_make_room_for_new_clients() {
    let limits = ServiceLimits {
        max_connections: 2,
        deadlines: Deadlines {
            handshake: StdDuration::from_secs(3600),
            ..Deadlines::default()
        },
        evict_after: Duration::from_millis(200),
        ..ServiceLimits::default()
    };
    let mut h = Harness::new(limits, ProvisionerPolicy::Open);
    // Provisioning always needs a client key (the first one is locked in).
    let (ac, ak) = Ca::new("admin CA").issue("admin");
    // Two slowloris connections: a partial TLS record each, then silence.
    for _ in 0..2 {
        let c = h.tcp_connect(PORT);
        h.world
            .lock()
            .unwrap()
            .stack
            .write(c, b"\x16\x03\x01\x02")
            .unwrap();
    }
    for _ in 0..50 {
        h.step();
    }
    assert_eq!(h.server.connections(), 2);
    std::thread::sleep(StdDuration::from_millis(300));
    // A real client still gets served: the quietest slowloris connection makes room.
    let c = h.tcp_connect(PORT);
    let mut tls = bootstrap_client(Some((&ac, &ak)));
    let (resp, _) = h.exchange(&mut tls, c, &post("/csr", r#"{"subject":"CN=kms.test"}"#));
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(h.server.stats().evicted >= 1, "{:?}", h.server.stats());
}

/// Issue 12 #7: a slowloris attack against the guest service. Eviction is off, so only the
/// deadlines free the table. Two attackers trickle their ClientHello a byte at a time, two
/// complete the handshake and trickle a request; each byte used to reset the idle timer, so
/// they held the table forever. Now the handshake deadline and the minimum request byte rate
/// cut them, and a legitimate client is served.
#[test]
fn slowloris_attackers_are_cut_and_a_client_is_served() {
    let limits = ServiceLimits {
        max_connections: 4,
        deadlines: Deadlines {
            handshake: StdDuration::from_millis(1500),
            idle: StdDuration::from_secs(3600),
            grace: StdDuration::from_millis(500),
            min_rate: 2000,
            request: StdDuration::from_secs(30),
        },
        evict_after: Duration::from_secs(3600),
        ..ServiceLimits::default()
    };
    let mut h = Harness::new(limits, ProvisionerPolicy::Open);
    let (ac, ak) = Ca::new("admin CA").issue("admin");

    // Two request tricklers: a real handshake, then one byte of a request per TLS record.
    let mut tricklers = Vec::new();
    for _ in 0..2 {
        let c = h.tcp_connect(PORT);
        let mut tls = bootstrap_client(Some((&ac, &ak)));
        h.handshake(&mut tls, c);
        tricklers.push((
            c,
            tls,
            post("/csr", r#"{"subject":"CN=kms.test"}"#),
            Vec::new(),
        ));
    }
    // Two handshake tricklers: a ClientHello a byte at a time.
    let mut hello_tricklers = Vec::new();
    for _ in 0..2 {
        let c = h.tcp_connect(PORT);
        let mut hello = Vec::new();
        bootstrap_client(None).write_tls(&mut hello).unwrap();
        hello_tricklers.push((c, hello));
    }
    for _ in 0..20 {
        h.step();
    }
    assert_eq!(h.server.connections(), 4, "{:?}", h.server.stats());

    // A byte every 50 ms from each attacker, for up to 10 s: the table stays full until the
    // deadlines cut them.
    let t0 = StdInstant::now();
    let mut tick = StdInstant::now();
    while h.server.connections() > 0 && t0.elapsed() < StdDuration::from_secs(10) {
        if tick.elapsed() >= StdDuration::from_millis(50) {
            tick = StdInstant::now();
            for (c, tls, request, out) in &mut tricklers {
                if !request.is_empty() {
                    let byte = request.remove(0);
                    tls.writer().write_all(&[byte]).unwrap();
                }
                let mut w = h.world.lock().unwrap();
                while tls.wants_write() {
                    tls.write_tls(out).unwrap();
                }
                if let Ok(n) = w.stack.write(*c, out) {
                    out.drain(..n);
                }
            }
            for (c, hello) in &mut hello_tricklers {
                if !hello.is_empty() {
                    let byte = hello.remove(0);
                    let _ = h.world.lock().unwrap().stack.write(*c, &[byte]);
                }
            }
        }
        h.step();
        std::thread::sleep(StdDuration::from_millis(2));
    }
    let stats = h.server.stats();
    assert_eq!(h.server.connections(), 0, "{stats:?}");
    assert!(stats.slow_closed >= 4, "{stats:?}");
    assert_eq!((stats.idle_closed, stats.evicted), (0, 0), "{stats:?}");
    assert!(
        t0.elapsed() < StdDuration::from_secs(5),
        "cut after {:?}",
        t0.elapsed()
    );

    // A legitimate client is served.
    let c = h.tcp_connect(PORT);
    let mut tls = bootstrap_client(Some((&ac, &ak)));
    let (resp, _) = h.exchange(&mut tls, c, &post("/csr", r#"{"subject":"CN=kms.test"}"#));
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
}

/// Issue 12 #7: unauthenticated `GET /attestation` is a firmware round trip in the guest's
/// single-threaded loop. Beyond the configured rate the App answers 429 without asking the
/// platform; the rate refills with time.
#[test]
fn attestation_requests_are_rate_limited() {
    let limits = ServiceLimits {
        attestation_rate: Rate {
            burst: 2,
            per_second: 1,
        },
        ..ServiceLimits::default()
    };
    let mut h = Harness::new(limits, ProvisionerPolicy::Open);
    let before = h.reports.load(Ordering::SeqCst);
    let c = h.tcp_connect(RATLS_PORT);
    let mut tls = bootstrap_client(None);
    let get = format!(
        "GET /attestation?nonce={} HTTP/1.1\r\nhost: kms\r\n\r\n",
        "ab".repeat(32)
    );
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let (resp, _) = h.exchange(&mut tls, c, get.as_bytes());
        statuses.push(resp.get(9..12).unwrap_or("").to_string());
    }
    // Two reach the platform (which has no attestation: 501), the rest are refused before it.
    let after_burst = h.reports.load(Ordering::SeqCst);
    assert_eq!(after_burst - before, 2, "{statuses:?}");
    assert!(statuses[..2].iter().all(|s| s != "429"), "{statuses:?}");
    assert!(statuses[2..].iter().all(|s| s == "429"), "{statuses:?}");
    // The service clock is the RTC (whole seconds): after two seconds the bucket refilled.
    std::thread::sleep(StdDuration::from_millis(2100));
    let (resp, _) = h.exchange(&mut tls, c, get.as_bytes());
    assert!(!resp.starts_with("HTTP/1.1 429"), "{resp}");
    assert_eq!(h.reports.load(Ordering::SeqCst), after_burst + 1);
}

/// Issue 12 #1 on the guest: without a pin, the bootstrap port asks every client for a certificate; a request
/// without one is refused (it answered 200 before), and once a client key has provisioned, every other key
/// is refused with the lock message.
#[test]
fn unpinned_guest_locks_provisioning_to_the_first_client_key() {
    let mut h = Harness::new(ServiceLimits::default(), ProvisionerPolicy::Open);
    let users = Ca::new("users CA");
    let ca_req = serde_json::json!({ "ca_pem": users.pem }).to_string();

    let c = h.tcp_connect(PORT);
    let mut anonymous = bootstrap_client(None);
    let (resp, _) = h.exchange(&mut anonymous, c, &post("/client-ca", &ca_req));
    assert!(
        resp.starts_with("HTTP/1.1 403") && resp.contains("needs a TLS client certificate"),
        "anonymous /client-ca got {resp:?}"
    );

    let (admin_chain, admin_key) = Ca::new("admin CA").issue("admin");
    let c = h.tcp_connect(PORT);
    let mut admin = bootstrap_client(Some((&admin_chain, &admin_key)));
    let (resp, _) = h.exchange(&mut admin, c, &post("/client-ca", &ca_req));
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");

    let (other_chain, other_key) = Ca::new("mallory CA").issue("mallory");
    let c = h.tcp_connect(PORT);
    let mut mallory = bootstrap_client(Some((&other_chain, &other_key)));
    let (resp, _) = h.exchange(&mut mallory, c, &post("/client-ca", &ca_req));
    assert!(
        resp.starts_with("HTTP/1.1 403")
            && resp.contains(kms::bootstrap::LOCKED_TO_ANOTHER_PROVISIONER),
        "second key got {resp:?}"
    );
    // The admin's own second /client-ca is not a silent replacement either.
    let c = h.tcp_connect(PORT);
    let mut admin = bootstrap_client(Some((&admin_chain, &admin_key)));
    let (resp, _) = h.exchange(&mut admin, c, &post("/client-ca", &ca_req));
    assert!(
        resp.starts_with("HTTP/1.1 409") && resp.contains(kms::bootstrap::ALREADY_SET),
        "{resp}"
    );
}
