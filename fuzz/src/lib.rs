//! Fuzz target bodies for every parser of the KMS, shared by two drivers (the td-shim
//! `fuzzlib` layout):
//!
//! - `fuzz_targets/<name>.rs`: one libFuzzer entry point per body (`cargo fuzz run <name>`);
//! - `tests/smoke.rs`: a deterministic driver that runs every body over the committed seeds in
//!   `seeds/<name>/` plus seeded mutations of them ([`mutate`]), for CI.
//!
//! Each body takes arbitrary bytes and must not panic. Where a format has an emitter, the body
//! also asserts the round trip (parse → emit → same bytes, or parse → emit → parse → same
//! value); where input arrives as a stream, it asserts that any split of the stream gives the
//! same result as the whole. A failed assertion is a panic, hence a finding.
//!
//! Modules: the bodies (this file, one `pub fn` per target, listed in [`TARGETS`]) and
//! [`mutate`] (the smoke driver's PRNG and mutator).
#![forbid(unsafe_code)]

pub mod mutate;

use std::sync::OnceLock;

use attest::snp::guest_msg::{
    self, FirmwareMessenger, KeyReq, MsgType, ReportReq, ReportRsp, Vmpck,
};
use attest::snp::report::AttestationReport;
use kms::crypto::{Random, RngError};
use kms::store::memory::MemoryStore;
use kms::{Env, Kms, KmsConfig};

/// A target: its name (the seeds directory and the libFuzzer binary) and its body.
pub type Target = (&'static str, fn(&[u8]));

/// Every target, in the order the smoke driver runs them.
pub const TARGETS: &[Target] = &[
    ("kmip_json", kmip_json),
    ("kmip_binary", kmip_binary),
    ("certificate_request", certificate_request),
    ("http_request", http_request),
    ("server_connection", server_connection),
    ("resp_reply", resp_reply),
    ("redis_url", redis_url),
    ("redis_seal", redis_seal),
    ("snp_report", snp_report),
    ("ratls_quote", ratls_quote),
    ("guest_msg", guest_msg),
    ("ovmf_metadata", ovmf_metadata),
    ("tdx_quote", tdx_quote),
    ("bootstrap_json", bootstrap_json),
    ("bootstrap_x509", bootstrap_x509),
    ("snp_emu_frame", snp_emu_frame),
    ("boot_cmdline", boot_cmdline),
    ("boot_tables", boot_tables),
];

/// The VMPCK the `guest_msg` and `snp_emu_frame` seeds are sealed with.
pub const FUZZ_VMPCK: [u8; 32] = [2; 32];

/// Deterministic "randomness" for the KMS (tests only): an xorshift stream.
struct FuzzRng(u64);

impl Random for FuzzRng {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), RngError> {
        for b in buf.iter_mut() {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            *b = self.0 as u8;
        }
        Ok(())
    }
}

const NOW: i64 = 1_750_000_000;

/// Splits derived from the input itself, so a failure reproduces from the input alone.
fn split_points(data: &[u8], n: usize) -> Vec<usize> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h = (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
    }
    let len = data.len() + 1;
    let mut v: Vec<usize> = (0..n)
        .map(|i| {
            h = h
                .rotate_left(17)
                .wrapping_add(i as u64)
                .wrapping_mul(0x9e37_79b9_7f4a_7c15);
            (h % len as u64) as usize
        })
        .collect();
    v.sort_unstable();
    v
}

// ---------------------------------------------------------------------------------------------
// kms

/// KMIP JSON TTLV: parse; if it parses, emit and re-parse to the same tree, and emit again to
/// the same bytes. Then run the typed-payload parser and the whole KMS on the document.
pub fn kmip_json(data: &[u8]) {
    use kms::kmip::json::{Limits, from_slice, to_vec};
    let limits = Limits {
        max_bytes: 64 * 1024,
        max_depth: 8,
        max_items: 512,
    };
    let Ok(t) = from_slice(data, &limits) else {
        // What the KMS's own (default) limits refuse, it must refuse with a 4xx.
        kms_answer(data, from_slice(data, &Limits::default()).is_err());
        return;
    };
    let enc = to_vec(&t);
    let Ok(t2) = from_slice(&enc, &Limits::default()) else {
        panic!(
            "re-encoded TTLV does not parse: {}",
            String::from_utf8_lossy(&enc)
        );
    };
    assert!(
        t == t2,
        "TTLV changed in a round trip: {}",
        String::from_utf8_lossy(&enc)
    );
    assert!(to_vec(&t2) == enc, "emit is not stable");
    if let Some(op) = kms::kmip::ops::operation_from_tag(&t.tag) {
        let _ = kms::kmip::ops::Request::parse(op, &t);
    }
    kms_answer(data, false);
}

/// Binary TTLV (`kms::kmip::binary`): whatever decodes re-encodes to the same bytes, is framed
/// at its exact length when it is a message, and survives the JSON form unchanged; the KMS
/// answers any input with a binary ResponseMessage or a 4xx error.
pub fn kmip_binary(data: &[u8]) {
    kms_binary_answer(data);
    use kms::kmip::binary::{from_slice, message_len, to_vec};
    use kms::kmip::json::{self, Limits};
    use kms::kmip::ttlv::Value;
    let limits = Limits {
        max_bytes: 64 * 1024,
        max_depth: 8,
        max_items: 512,
    };
    let framed = message_len(data, limits.max_bytes);
    let Ok(t) = from_slice(data, &limits) else {
        return;
    };
    match to_vec(&t) {
        Ok(enc) => assert!(enc == data, "binary TTLV changed in a round trip"),
        Err(e) => panic!("a decoded tree does not encode: {e}"),
    }
    if matches!(t.value, Value::Structure(_)) {
        assert!(
            framed == Ok(Some(data.len())),
            "framing disagrees with the decoder: {framed:?}"
        );
    }
    let j = json::to_vec(&t);
    let unbounded = Limits {
        max_bytes: usize::MAX,
        ..Limits::default()
    };
    match json::from_slice(&j, &unbounded) {
        Ok(t2) => assert!(
            t2 == t,
            "binary TTLV changed through JSON: {}",
            String::from_utf8_lossy(&j)
        ),
        Err(e) => panic!("JSON of a binary tree does not parse: {e}"),
    }
}

/// The KMS's answer to a binary `body` from alice on an empty store: a ResponseMessage that
/// decodes, or a 4xx error (a 5xx here would be a response with no binary form).
fn kms_binary_answer(body: &[u8]) {
    let kms = Kms::new(MemoryStore::new(), KmsConfig::default());
    let mut rng = FuzzRng(0x9e37_79b9_7f4a_7c15);
    let mut env = Env {
        now: NOW,
        rng: &mut rng,
    };
    match kms::block_on(kms.kmip_binary(&mut env, "alice", body), || {}) {
        Ok(out) => match kms::kmip::binary::from_slice(&out, &Default::default()) {
            Ok(t) => assert!(t.tag == "ResponseMessage", "answer is {}", t.tag),
            Err(e) => panic!("the binary answer does not decode: {e}"),
        },
        Err(e) => {
            let status = e.http_status();
            assert!((400..500).contains(&status), "{status}: {e}");
        }
    }
}

/// The KMS's answer to `body` from alice on an empty store: JSON, or an error with a 4xx/5xx
/// status (a 4xx when `must_refuse`).
fn kms_answer(body: &[u8], must_refuse: bool) {
    let kms = Kms::new(MemoryStore::new(), KmsConfig::default());
    let mut rng = FuzzRng(0x9e37_79b9_7f4a_7c15);
    let mut env = Env {
        now: NOW,
        rng: &mut rng,
    };
    match kms::block_on(kms.kmip_json(&mut env, "alice", body), || {}) {
        Ok(out) => {
            assert!(
                !must_refuse,
                "the KMS accepted a document its parser refuses"
            );
            assert!(
                out.first() == Some(&b'{'),
                "KMIP answer is not a JSON object"
            );
        }
        Err(e) => {
            let s = e.http_status();
            let range = if must_refuse { 400..500 } else { 400..600 };
            assert!(range.contains(&s), "error status {s}");
            let _ = e.to_string();
        }
    }
}

/// HTTP/1.1 request framing: the whole buffer parsed once, then every prefix: a prefix shorter
/// than the request must ask for more bytes (or report the same error), a longer one must give
/// the same request.
pub fn http_request(data: &[u8]) {
    use kms::http::{Limits, parse_request};
    let limits = Limits {
        max_head_bytes: 2048,
        max_headers: 16,
        max_body_bytes: 4096,
    };
    let _ = parse_request(data, &Limits::default());
    let whole = parse_request(data, &limits);
    if let Ok(Some((_, used))) = &whole {
        assert!(
            *used > 0 && *used <= data.len(),
            "used {used} of {}",
            data.len()
        );
    }
    // Every prefix for small inputs, a stride of them for large ones.
    let step = (data.len() / 512).max(1);
    for k in (0..data.len()).step_by(step) {
        let part = parse_request(&data[..k], &limits);
        match (&whole, &part) {
            (_, Ok(None)) => {}
            (Ok(Some((w, wu))), Ok(Some((p, pu)))) => {
                assert!(
                    k >= *wu,
                    "prefix {k} framed a request the whole input framed at {wu}"
                );
                assert!(w == p && wu == pu, "prefix {k} framed a different request");
            }
            (Err(we), Err(pe)) => assert_eq!(we, pe, "prefix {k}: different errors"),
            (w, p) => panic!(
                "prefix {k}: whole {:?} but prefix {:?}",
                w.as_ref().map(|o| o.as_ref().map(|x| x.1)),
                p.as_ref().map(|o| o.as_ref().map(|x| x.1))
            ),
        }
    }
}

fn run_connection(chunks: &[&[u8]], user: Option<&str>) -> (Vec<u8>, kms::conn::Action) {
    use kms::app::{App, AppConfig, Generation, Listener, Peer};
    use kms::conn::{Action, Http};
    let app: std::sync::Arc<App<MemoryStore>> =
        std::sync::Arc::new(App::without_tls(MemoryStore::new(), AppConfig::default()));
    let peer = Peer {
        user: user.map(String::from),
        spki_der: None,
    };
    let mut rng = FuzzRng(0x2545_f491_4f6c_dd1d);
    let mut env = Env {
        now: NOW,
        rng: &mut rng,
    };
    let mut conn = Http::new(kms::http::Limits {
        max_head_bytes: 2048,
        max_headers: 16,
        max_body_bytes: 16 * 1024,
    });
    let (main, serving) = (Listener::Main, Generation::Serving);
    let mut out = Vec::new();
    let mut action = Action::Continue;
    for c in chunks {
        let before = out.len();
        let outcome = conn.on_plaintext(&app, main, serving, &peer, &mut env, c, &mut out);
        // The memory store never waits.
        assert!(!outcome.waiting, "memory store request left waiting");
        action = outcome.action;
        if action == Action::Close {
            assert!(out.len() > before, "closed without an answer");
            // Once closed, the connection ignores input.
            let n = out.len();
            assert_eq!(
                conn.on_plaintext(
                    &app,
                    main,
                    serving,
                    &peer,
                    &mut env,
                    b"GET /health HTTP/1.1\r\n\r\n",
                    &mut out
                )
                .action,
                Action::Close
            );
            assert_eq!(out.len(), n, "answered after close");
            break;
        }
    }
    if !out.is_empty() {
        assert!(out.starts_with(b"HTTP/1.1 "), "not an HTTP response");
    }
    (out, action)
}

/// `kms::conn::Http` (framing) over an `App<MemoryStore>`: arbitrary bytes never panic; the
/// answer is HTTP; a close always comes with an answer; and the bytes split in three at points
/// derived from the input give the same answers as in one piece.
pub fn server_connection(data: &[u8]) {
    let (whole, action) = run_connection(&[data], Some("alice"));
    let p = split_points(data, 2);
    let (a, b) = (p[0], p[1]);
    let (parts, action2) = run_connection(&[&data[..a], &data[a..b], &data[b..]], Some("alice"));
    assert_eq!(action, action2, "split at {a},{b} changed the action");
    assert!(whole == parts, "split at {a},{b} changed the answers");
    let _ = run_connection(&[data], None);
}

// ---------------------------------------------------------------------------------------------
// kms-redis

/// RESP2 replies: decode; a decoded frame's every strict prefix is `Incomplete`; and commands
/// built from the input encode and decode back to themselves.
pub fn resp_reply(data: &[u8]) {
    use kms_redis::resp::{Decoded, Limits, Reply, decode_reply, encode_command};
    let limits = Limits {
        max_reply: 64 * 1024,
        max_depth: 4,
        max_elements: 1024,
    };
    let _ = decode_reply(data, &Limits::default());
    if let Ok(Decoded::Frame(reply, used)) = decode_reply(data, &limits) {
        assert!(used > 0 && used <= data.len());
        let step = (used / 256).max(1);
        for k in (0..used).step_by(step) {
            assert_eq!(
                decode_reply(&data[..k], &limits),
                Ok(Decoded::Incomplete),
                "prefix {k} of {used}"
            );
        }
        assert_eq!(
            decode_reply(&data[..used], &limits),
            Ok(Decoded::Frame(reply, used))
        );
    }
    let args: Vec<&[u8]> = data.split(|b| *b == b' ').take(64).collect();
    let mut cmd = Vec::new();
    encode_command(&mut cmd, &args);
    let expect = Reply::Array(args.iter().map(|a| Reply::Bulk(a.to_vec())).collect());
    assert_eq!(
        decode_reply(&cmd, &Limits::default()),
        Ok(Decoded::Frame(expect, cmd.len()))
    );
}

/// `redis://` URLs: parse; a parsed URL without a password prints to a URL that parses back to
/// the same value.
pub fn redis_url(data: &[u8]) {
    use kms_redis::url::RedisUrl;
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(u) = RedisUrl::parse(s) else { return };
    let _ = format!("{u:?}");
    if u.password.is_none() && u.user.is_none() {
        let printed = u.to_string();
        let again = RedisUrl::parse(&printed);
        assert!(
            again.as_ref() == Ok(&u),
            "{printed} does not parse back: {:?}",
            again.map(|_| ())
        );
    }
}

fn sealer() -> &'static kms_redis::seal::Sealer {
    static S: OnceLock<kms_redis::seal::Sealer> = OnceLock::new();
    S.get_or_init(|| kms_redis::seal::Sealer::new(&kms_redis::keys::KeySet::derive(&[7; 32])))
}

/// Sealed object records: opening arbitrary values fails cleanly, and a record built from the
/// input seals and opens back to itself.
pub fn redis_seal(data: &[u8]) {
    use kms::store::{Record, Version};
    use kms_redis::seal::Stored;
    let s = sealer();
    let (key, value) = data.split_at(
        data.len()
            .min(data.first().map_or(0, |b| usize::from(*b & 63))),
    );
    let _ = s.open_at(key, value);
    let _ = s.open("uid", data);
    // A sealed tombstone opens as itself under its key, and under no other key.
    let tv = Version(u64::from(data.len() as u32));
    let t = s.tombstone(key, tv);
    assert!(
        matches!(s.open_at(key, &t), Ok(Stored::Tombstone(v)) if v == tv),
        "sealed tombstone does not open"
    );
    let mut other = key.to_vec();
    other.push(0);
    assert!(
        !matches!(s.open_at(&other, &t), Ok(Stored::Tombstone(_))),
        "a tombstone opened under another key"
    );
    let _ = s.canary_matches(data);
    let mut parts = data.split(|b| *b == 0);
    let uid = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let body = parts.next().unwrap_or_default().to_vec();
    let keywords: Vec<String> = parts
        .take(16)
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    let v = Version(u64::from(data.len() as u32) + 1);
    let r = Record {
        uid: uid.clone(),
        body: body.clone(),
        keywords: keywords.clone(),
    };
    if let Ok(sealed) = s.seal(&r, v) {
        match s.open(&uid, &sealed) {
            Ok(Stored::Live(o, ov)) => {
                assert!(
                    o.uid == uid && o.body == body && o.keywords == keywords && ov == v,
                    "seal/open changed the record"
                )
            }
            other => panic!("sealed record does not open: {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// attest

/// SNP attestation report: parse; a parsed report emits the same bytes; getters never panic.
pub fn snp_report(data: &[u8]) {
    if let Ok(r) = AttestationReport::ref_from_bytes_checked(data) {
        let _ = r.validate();
        report_getters(r);
    }
    if let Ok(r) = AttestationReport::parse(data) {
        assert_eq!(&r.to_bytes()[..], data, "report emit differs");
        report_getters(&r);
    }
    let _ = ReportRsp::parse_report(data);
}

fn report_getters(r: &AttestationReport) {
    let p = r.policy();
    let _ = (
        p.abi_major(),
        p.abi_minor(),
        p.debug_allowed(),
        p.smt_allowed(),
        p.page_swap_disabled(),
    );
    let i = r.platform_info();
    let _ = (
        i.smt_enabled(),
        i.tsme_enabled(),
        i.ecc_enabled(),
        i.ciphertext_hiding_enabled(),
    );
    let _ = (
        r.signing_key(),
        r.author_key_en(),
        r.mask_chip_key(),
        r.signed_bytes().len(),
    );
    if let Some(g) = r.generation() {
        let _ = g.name();
        for t in [
            r.reported_tcb(g),
            r.current_tcb(g),
            r.committed_tcb(g),
            r.launch_tcb(g),
        ] {
            let _ = t.meets(&t);
            let _ = t.encode(g);
        }
    }
}

/// RA-TLS SNP quote (`report ‖ certificate entries`): parse; a parsed quote re-encodes to the
/// same bytes.
pub fn ratls_quote(data: &[u8]) {
    if let Ok(q) = attest::ratls::parse_snp_quote(data) {
        assert_eq!(q.encode(), data, "quote emit differs");
        for c in &q.certs {
            let _ = c.kind();
        }
    }
}

/// SNP guest messages opened with a fixed VMPCK ([`FUZZ_VMPCK`]): header checks never panic, a
/// message that opens re-seals and opens to the same contents, and the firmware side and the
/// plaintext payload parsers (which the fuzzer cannot reach through the AEAD) take the raw
/// bytes.
pub fn guest_msg(data: &[u8]) {
    let key = Vmpck::new(FUZZ_VMPCK);
    if let Ok(o) = guest_msg::open(&key, data) {
        let again = guest_msg::seal(
            &key,
            o.vmpck_id,
            o.seqno,
            o.msg_type,
            o.msg_version,
            &o.payload,
        )
        .expect("an opened payload fits");
        let o2 = guest_msg::open(&key, &again).expect("re-sealed message opens");
        assert!(o == o2, "guest message changed in a round trip");
        assert_eq!(MsgType::from_u8(o.msg_type.to_u8()), o.msg_type);
    }
    let mut fw = FirmwareMessenger::new(Vmpck::new(FUZZ_VMPCK), 0);
    if fw.open_request(data).is_ok() {
        let _ = fw.seal_response(data.get(..64).unwrap_or(data));
    }
    let _ = ReportReq::parse(data);
    let _ = KeyReq::parse(data);
    let _ = ReportRsp::parse_report(data);
    let _ = Vmpck::from_secrets_page(data, data.first().copied().unwrap_or(0) & 7);
}

/// OVMF metadata and the SNP launch digest of arbitrary firmware bytes (with the kernel-hashes
/// inputs and vCPU settings taken from the first bytes).
pub fn ovmf_metadata(data: &[u8]) {
    use attest::measure::snp::{Ovmf, SnpLaunch, VcpuType, VmmType, launch_digest};
    let (ctl, fw) = data.split_at(data.len().min(2));
    let c0 = ctl.first().copied().unwrap_or(0);
    let c1 = ctl.get(1).copied().unwrap_or(0);
    if let Ok(o) = Ovmf::parse(fw) {
        let _ = (
            o.gpa(),
            o.sections().len(),
            o.sev_es_reset_eip(),
            o.sev_hashes_table_gpa(),
        );
    }
    let vmm = match c0 & 3 {
        0 => VmmType::Qemu,
        1 => VmmType::Ec2,
        _ => VmmType::Gce,
    };
    let vcpu_types: [&str; 3] = ["EPYC-v4", "EPYC-Milan", "EPYC-Genoa"];
    let Ok(vcpu_type) = vcpu_types[usize::from(c1) % 3].parse::<VcpuType>() else {
        return;
    };
    let with_kernel = c0 & 4 != 0;
    let _ = launch_digest(&SnpLaunch {
        firmware: fw,
        kernel: if with_kernel { b"kernel" } else { b"" },
        initrd: b"",
        cmdline: if with_kernel { "console=ttyS0" } else { "" },
        vcpus: u32::from(c0 >> 4),
        vcpu_type,
        guest_features: u64::from(c1),
        vmm,
    });
}

/// TDX quote v4: parse; the signed bytes are the input's first 632 bytes; the TDREPORT parser
/// takes the raw bytes too.
pub fn tdx_quote(data: &[u8]) {
    if let Ok(q) = attest::tdx::Quote::parse(data) {
        assert_eq!(q.signed, &data[..632]);
        let _ = (q.body.debug(), format!("{q:?}"), q.signature_data.len());
    }
    if let Some(r) = attest::tdx::report::TdReport::parse(data) {
        let _ = r.debug();
    }
}

// ---------------------------------------------------------------------------------------------
// bootstrap

/// Bootstrap JSON bodies, the secret's base64, the attestation nonce query, the certificate
/// table of an extended report.
pub fn bootstrap_json(data: &[u8]) {
    use kms::bootstrap::api::{
        CertificateRequest, ClientCaRequest, CsrRequest, RedisFindexRequest,
    };
    let _ = serde_json_from::<CsrRequest>(data);
    let _ = serde_json_from::<CertificateRequest>(data);
    let _ = serde_json_from::<ClientCaRequest>(data);
    if let Some(r) = serde_json_from::<RedisFindexRequest>(data) {
        let _ = kms::bootstrap::DbSecret::from_base64(&r.db_secret);
        let _ = kms_redis::url::RedisUrl::parse(&r.url);
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = kms::bootstrap::DbSecret::from_base64(s);
        let _ = kms::bootstrap::routes::parse_nonce(s);
    }
    let _ = kms::bootstrap::platform::parse_cert_table(data);
}

fn serde_json_from<T: for<'de> kms_serde::Deserialize<'de>>(data: &[u8]) -> Option<T> {
    kms_serde::from_slice(data)
}

/// `serde_json` as the kms crate uses it (through its own dependency, so no version skew).
mod kms_serde {
    pub use serde::Deserialize;
    pub fn from_slice<T: for<'de> Deserialize<'de>>(data: &[u8]) -> Option<T> {
        serde_json::from_slice(data).ok()
    }
}

fn bootstrap_key() -> &'static kms::bootstrap::keys::BootstrapKey {
    static K: OnceLock<kms::bootstrap::keys::BootstrapKey> = OnceLock::new();
    K.get_or_init(|| {
        kms::bootstrap::keys::Sk::from_random([7; 32])
            .key_pair()
            .expect("a fixed key derives")
    })
}

/// The posted API certificate chain (PEM) and single DER certificates.
/// Certify's PKCS#10 parser and self-signature check (`kms::check_certificate_request`) as DER,
/// PEM and CRMF: a request that verifies names a key the KMS can hold (its SPKI canonicalizes).
pub fn certificate_request(data: &[u8]) {
    use kms::kmip::types::CertificateRequestType as K;
    for kind in [K::PKCS10, K::PEM, K::CRMF] {
        if let Ok(spki) = kms::check_certificate_request(kind, data) {
            assert!(kind != K::CRMF, "CRMF is refused");
            assert!(
                kms::x509::canonical_spki(&spki).is_some(),
                "a verified request has a usable key"
            );
        }
    }
}

pub fn bootstrap_x509(data: &[u8]) {
    use kms::bootstrap::x509;
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(certs) = x509::parse_pem_chain(s) {
            for c in &certs {
                let _ = x509::quote_extension(c);
            }
        }
        let _ = x509::validate_api_chain(bootstrap_key(), s);
    }
    if let Ok(pem) = x509::cert_pem(data) {
        // A DER certificate that parses comes back from its PEM.
        let certs = x509::parse_pem_chain(&pem).expect("our own PEM parses");
        assert_eq!(certs.len(), 1);
    }
}

// ---------------------------------------------------------------------------------------------
// snp-emu and the kernel's host-facing parsers

fn decode_all(chunks: &[&[u8]]) -> Vec<snp_emu_proto::Event> {
    let mut d = snp_emu_proto::Decoder::new(snp_emu_proto::REQ_MAGIC);
    let mut events = Vec::new();
    for c in chunks {
        d.push(c);
        while let Some(e) = d.next_event() {
            events.push(e);
            assert!(events.len() <= 4 * (c.len() + 1) + 4096, "decoder loops");
        }
    }
    events
}

/// The shared protocol crate (`snp-emu-proto`): the emulator's frame decoder (any split of the
/// stream gives the same events, once garbage reports are merged) and the emulator's answers to
/// the decoded frames; the guest side's header parser (whose `Ok` must emit back to the same
/// bytes) and magic scanner on the same bytes.
pub fn snp_emu_frame(data: &[u8]) {
    use snp_emu_proto::{Event, HEADER_LEN, Header, MagicScanner, RSP_MAGIC};
    let whole = decode_all(&[data]);
    let p = split_points(data, 2);
    let parts = decode_all(&[&data[..p[0]], &data[p[0]..p[1]], &data[p[1]..]]);
    let frames = |v: &[Event]| -> Vec<(u8, u16, Vec<u8>)> {
        v.iter()
            .filter_map(|e| match e {
                Event::Frame {
                    cmd,
                    status,
                    payload,
                } => Some((*cmd, *status, payload.clone())),
                Event::Garbage => None,
            })
            .collect()
    };
    assert_eq!(
        frames(&whole),
        frames(&parts),
        "split at {p:?} changed the frames"
    );
    // Only GET_VMPCK and a page-sized GUEST_REQUEST change the emulator's state: other inputs
    // share one emulator (building one costs a millisecond), these get a fresh one.
    let stateful = whole.iter().take(8).any(|e| {
        matches!(e, Event::Frame { cmd: 1, .. })
            || matches!(e, Event::Frame { cmd: 2, payload, .. } if payload.len() == guest_msg::PAGE_SIZE)
    });
    thread_local! {
        static SHARED: std::cell::RefCell<Option<snp_emu::psp::Psp>> = const { std::cell::RefCell::new(None) };
    }
    let answer = |psp: &mut snp_emu::psp::Psp| {
        for e in whole.into_iter().take(8) {
            let reply = snp_emu::server::handle(psp, e);
            // Every reply the emulator builds must be framable.
            if let Err(e) = reply.encode() {
                panic!("reply to cmd {} cannot be framed: {e}", reply.cmd);
            }
        }
    };
    if stateful {
        if let Some(mut psp) = emulator() {
            answer(&mut psp);
        }
    } else {
        SHARED.with(|s| {
            let mut s = s.borrow_mut();
            if s.is_none() {
                *s = emulator();
            }
            if let Some(psp) = s.as_mut() {
                answer(psp);
            }
        });
    }
    if let Some(h) = data
        .get(..HEADER_LEN)
        .and_then(|h| <&[u8; HEADER_LEN]>::try_from(h).ok())
    {
        for magic in [RSP_MAGIC, snp_emu_proto::REQ_MAGIC] {
            if let Ok(parsed) = Header::parse(h, magic) {
                assert_eq!(&parsed.emit(), h, "header parse/emit round trip");
            }
        }
    }
    let mut scan = MagicScanner::new(RSP_MAGIC);
    for b in data {
        if scan.push(*b).is_err() {
            break;
        }
    }
}

fn emulator() -> Option<snp_emu::psp::Psp> {
    use snp_emu::psp::{LaunchInfo, Psp};
    use zeroize::Zeroizing;
    let chain = snp_emu::chain::Chain::builtin().ok()?;
    let launch = LaunchInfo {
        measurement: [0x11; 48],
        policy: 0x3_0000,
        host_data: [0; 32],
        report_version: 3,
        platform_info: 1,
        report_id: [0x22; 32],
    };
    Psp::new(
        chain,
        launch,
        Zeroizing::new([1; 32]),
        Zeroizing::new(FUZZ_VMPCK),
    )
    .ok()
}

/// The kernel's measured command line.
pub fn boot_cmdline(data: &[u8]) {
    if let Ok(s) = std::str::from_utf8(data)
        && let Err(e) = bootparams::cmdline::parse(s)
    {
        let _ = e.to_string();
    }
}

/// Host-provided tables the kernel decodes: the UEFI memory map (24-byte records) and heap
/// plan, a PCI configuration header (16 dwords), the RTC registers.
pub fn boot_tables(data: &[u8]) {
    use bootparams::memmap::{MemoryRegion, plan_heap, summarize};
    let (sel, rest) = data.split_first().unwrap_or((&0, &[]));
    match sel % 3 {
        0 => {
            let regions: Vec<MemoryRegion> = rest
                .chunks_exact(28)
                .take(bootparams::memmap::MAX_REGIONS + 8)
                .map(|c| MemoryRegion {
                    kind: u32::from_le_bytes(c[0..4].try_into().unwrap_or_default()),
                    start: u64::from_le_bytes(c[4..12].try_into().unwrap_or_default()),
                    pages: u64::from_le_bytes(c[12..20].try_into().unwrap_or_default()),
                    attribute: u64::from_le_bytes(c[20..28].try_into().unwrap_or_default()),
                })
                .collect();
            for r in &regions {
                let _ = (r.size(), r.end(), r.class());
            }
            let _ = summarize(&regions);
            let plan = plan_heap(&regions, 1 << 30);
            let total: u64 = plan.spans().iter().map(|s| s.len).sum();
            assert_eq!(total, plan.total());
            assert!(total <= 1 << 30, "heap plan over budget");
        }
        1 => {
            let mut dw = [0u32; 16];
            for (d, c) in dw.iter_mut().zip(rest.chunks(4)) {
                let mut b = [0u8; 4];
                b[..c.len()].copy_from_slice(c);
                *d = u32::from_le_bytes(b);
            }
            if let Some(h) = bootparams::pci::Header::parse(&dw) {
                for i in 0..8 {
                    let _ = h.bar(i);
                }
                let _ = h.is_virtio_net();
            }
        }
        _ => {
            let r = |i: usize| rest.get(i).copied().unwrap_or(0);
            let regs = bootparams::rtc::RtcRegisters {
                seconds: r(0),
                minutes: r(1),
                hours: r(2),
                day: r(3),
                month: r(4),
                year: r(5),
                century: r(6),
                status_b: r(7),
            };
            let _ = regs.unix_seconds();
        }
    }
}
