//! Regenerates `seeds/<target>/` from real bytes: the KMIP examples in `kms/core/tests/data`,
//! the SNP vectors in `attest/testdata`, the emulator's fixture chain, messages sealed with
//! [`kms_fuzz::FUZZ_VMPCK`]. Run from `fuzz/`: `cargo run --release --no-default-features
//! --example gen_seeds`. The output is committed; the run is deterministic.

use std::path::{Path, PathBuf};

use attest::ratls::{CertEntry, CertKind, encode_snp_quote};
use attest::snp::guest_msg::{self, KeyReq, MsgType, ReportReq, ReportRsp, Vmpck};
use attest::snp::report::AttestationReport;
use zeroize::Zeroizing;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo")
        .to_path_buf()
}

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn put(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("seeds")
        .join(target);
    std::fs::create_dir_all(&dir).expect("seeds dir");
    std::fs::write(dir.join(name), bytes).expect("write seed");
}

fn unhex(s: &str) -> Vec<u8> {
    let s: Vec<u8> = s.bytes().filter(|b| b.is_ascii_hexdigit()).collect();
    s.chunks(2)
        .map(|c| u8::from_str_radix(std::str::from_utf8(c).expect("ascii"), 16).expect("hex"))
        .collect()
}

fn post(path: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST {path} HTTP/1.1\r\nHost: kms\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// A bare operation (`{"tag":"Create",...}`, the Cosmian JSON shortcut) as the one batch item
/// of a KMIP 2.1 RequestMessage: binary TTLV has only messages.
fn as_message(t: kms::kmip::ttlv::Ttlv) -> kms::kmip::ttlv::Ttlv {
    let Some(op) = kms::kmip::ops::operation_from_tag(&t.tag) else {
        return t;
    };
    kms::kmip::message::request(2, 1, vec![(op.to_ttlv(), t.children().to_vec())])
}

fn main() {
    // KMIP JSON: the Cosmian-dialect examples, plus a few operations on a fixed uid.
    let mut kmip = Vec::new();
    for f in [
        "access_grant.json",
        "activate_tag.json",
        "create_aes256_tag.json",
        "encrypt_aes_gcm_tag.json",
        "locate_tag.json",
        "request_message_batch.json",
    ] {
        let b = read(&format!("kms/core/tests/data/{f}"));
        if f != "access_grant.json" {
            put("kmip_json", f, &b);
        }
        kmip.push((f, b));
    }
    let uid = "8a5c3b4e-1d2f-4a6b-9c8d-7e6f5a4b3c2d";
    for op in ["Get", "Destroy", "Revoke", "GetAttributes"] {
        let body = format!(
            r#"{{"tag":"{op}","value":[{{"tag":"UniqueIdentifier","type":"TextString","value":"{uid}"}}]}}"#
        );
        put(
            "kmip_json",
            &format!("{}.json", op.to_lowercase()),
            body.as_bytes(),
        );
    }
    put(
        "kmip_json",
        "types.json",
        br#"{"tag":"Attributes","value":[{"tag":"CryptographicLength","type":"Integer","value":"0x00000100"},{"tag":"0x540001","type":"LongInteger","value":"0x0000000000000001"},{"tag":"Nonce","type":"ByteString","value":"00FF"},{"tag":"X","type":"BigInteger","value":"0x00FF"},{"tag":"ActivationDate","type":"DateTime","value":"2025-01-01T00:00:00Z"},{"tag":"Sensitive","type":"Boolean","value":true},{"tag":"Y","type":"Interval","value":5},{"tag":"Z","type":"DateTimeExtended","value":"0x0000000000000001"},{"tag":"CryptographicAlgorithm","type":"Enumeration","value":"0x00000003"}]}"#,
    );

    put(
        "kmip_json",
        "datetime_extremes.json",
        br#"{"tag":"Attributes","value":[{"tag":"ActivationDate","type":"DateTime","value":"0x7FFFFFFFFFFFFFFF"},{"tag":"DeactivationDate","type":"DateTime","value":"0000-01-01T00:00:00+23:59"},{"tag":"X","type":"Integer","value":-2147483648},{"tag":"Y","type":"LongInteger","value":"0x8000000000000000"}]}"#,
    );

    // Binary TTLV: the KMIP JSON seeds in the binary encoding, and KMIP 2.1 §9.1.2's Structure
    // example.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("seeds")
        .join("kmip_json");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("kmip_json seeds")
        .map(|e| e.expect("seed").path())
        .collect();
    names.sort();
    for f in names {
        let t = kms::kmip::json::from_slice(&std::fs::read(&f).expect("seed"), &Default::default())
            .expect("JSON seed");
        if let Ok(b) = kms::kmip::binary::to_vec(&kms::kmip::binary::wire_shape(&as_message(t))) {
            let stem = f.file_stem().and_then(|s| s.to_str()).expect("name");
            put("kmip_binary", &format!("{stem}.ttlv"), &b);
        }
    }
    put(
        "kmip_binary",
        "spec_structure.ttlv",
        &unhex("42002001000000204200040500000004000000FE000000004200050200000004000000FF00000000"),
    );

    // HTTP and the server: the same bodies framed, plus the other routes and pipelining.
    let create = &kmip[2].1;
    let reqs: Vec<(&str, Vec<u8>)> = vec![
        (
            "health",
            b"GET /health HTTP/1.1\r\nHost: kms\r\n\r\n".to_vec(),
        ),
        (
            "version_close",
            b"GET /version HTTP/1.0\r\nConnection: close\r\n\r\n".to_vec(),
        ),
        ("create", post("/kmip/2_1", create)),
        ("batch", post("/kmip/2_1", &kmip[5].1)),
        ("locate", post("/kmip/2_1", &kmip[4].1)),
        ("grant", post("/access/grant", &kmip[0].1)),
        ("owned", b"GET /access/owned HTTP/1.1\r\n\r\n".to_vec()),
        (
            "list",
            format!("GET /access/list/{uid}?x=%41 HTTP/1.1\r\n\r\n").into_bytes(),
        ),
        (
            "chunked",
            b"POST /kmip/2_1 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
        ),
        (
            "pipelined",
            [
                post("/kmip/2_1", create),
                b"GET /health HTTP/1.1\r\n\r\n".to_vec(),
                post("/kmip/2_1", &kmip[4].1),
            ]
            .concat(),
        ),
    ];
    for (n, r) in &reqs {
        put("http_request", n, r);
        put("server_connection", n, r);
    }

    // RESP replies.
    for (n, r) in [
        ("ok", &b"+OK\r\n"[..]),
        (
            "noscript",
            b"-NOSCRIPT No matching script. Please use EVAL.\r\n",
        ),
        ("int", b":42\r\n"),
        ("bulk", b"$5\r\nhello\r\n"),
        ("nil", b"$-1\r\n"),
        ("nil_array", b"*-1\r\n"),
        ("array", b"*3\r\n$3\r\nfoo\r\n:1\r\n*2\r\n+a\r\n$0\r\n\r\n"),
        (
            "scan",
            b"*2\r\n$1\r\n0\r\n*2\r\n$14\r\nkms:o:00112233\r\n$8\r\nkms:f:ab\r\n",
        ),
    ] {
        put("resp_reply", n, r);
    }

    // Redis URLs.
    for (n, u) in [
        ("plain", "redis://127.0.0.1:6379"),
        ("db", "redis://localhost:6380/3"),
        ("auth", "redis://kms:p%40ss@redis.internal:6379/0"),
        ("legacy", "redis://:secret@10.0.0.1"),
        ("v6", "redis://[::1]:6379/1"),
    ] {
        put("redis_url", n, u.as_bytes());
    }

    // Sealed records: `key length ‖ key ‖ value` for open_at, and record sources.
    let keys = kms_redis::keys::KeySet::derive(&[7; 32]);
    let sealer = kms_redis::seal::Sealer::new(&keys);
    let rec = kms::store::Record {
        uid: "uid-1".into(),
        body: b"{\"object\":1}".to_vec(),
        keywords: vec!["tag=payroll".into(), "owner=alice".into()],
    };
    let sealed = sealer.seal(&rec, kms::store::Version(3)).expect("seal");
    let key = sealer.object_key("uid-1");
    let mut v = vec![key.len() as u8];
    v.extend_from_slice(&key);
    v.extend_from_slice(&sealed);
    put("redis_seal", "sealed", &v);
    let mut t = vec![key.len() as u8];
    t.extend_from_slice(&key);
    t.extend_from_slice(&sealer.tombstone(&key, kms::store::Version(9)));
    put("redis_seal", "tombstone", &t);
    put(
        "redis_seal",
        "record",
        b"uid-1\0body bytes\0tag=a\0owner=bob",
    );

    // SNP reports: the Milan vector and an emulator report.
    let milan =
        unhex(std::str::from_utf8(&read("attest/testdata/snp/report_milan.hex")).expect("hex"));
    assert_eq!(milan.len(), 0x4A0);
    let chain = snp_emu::chain::Chain::builtin().expect("chain");
    let launch = snp_emu::psp::LaunchInfo {
        measurement: [0x11; 48],
        policy: 0x3_0000,
        host_data: [0; 32],
        report_version: 3,
        platform_info: 1,
        report_id: [0x22; 32],
    };
    let psp = snp_emu::psp::Psp::new(
        chain,
        launch,
        Zeroizing::new([1; 32]),
        Zeroizing::new(kms_fuzz::FUZZ_VMPCK),
    )
    .expect("psp");
    let emu = psp.report(&[0x33; 64], 0).expect("report");
    let emu_bytes = emu.to_bytes();
    put("snp_report", "milan", &milan);
    put("snp_report", "emulator_v3", &emu_bytes);
    AttestationReport::parse(&milan).expect("milan parses");

    // RA-TLS quotes.
    let vcek = read("attest/testdata/snp/vcek_milan.der");
    put(
        "ratls_quote",
        "milan_vcek",
        &encode_snp_quote(&milan, &[CertEntry::new(CertKind::Vcek, vcek.clone())]),
    );
    put(
        "ratls_quote",
        "emulator_nocerts",
        &encode_snp_quote(&emu_bytes, &[]),
    );
    put("ratls_quote", "emulator_table", &{
        let fixture = read("image/snp-emu/fixtures/vcek.der");
        encode_snp_quote(
            &emu_bytes,
            &[
                CertEntry::new(CertKind::Vcek, fixture),
                CertEntry::new(CertKind::Ask, vec![0x30, 0x03, 0x02, 0x01, 0x01]),
            ],
        )
    });

    // Guest messages sealed with the fuzz VMPCK.
    let key = Vmpck::new(kms_fuzz::FUZZ_VMPCK);
    let rr = ReportReq::new([0x44; 64], 0);
    let rr_bytes = zerocopy::IntoBytes::as_bytes(&rr).to_vec();
    let kr = KeyReq::new(1, 0);
    let kr_bytes = zerocopy::IntoBytes::as_bytes(&kr).to_vec();
    let rsp = ReportRsp::success(emu);
    let rsp_bytes = zerocopy::IntoBytes::as_bytes(&rsp).to_vec();
    let report_req = guest_msg::seal(&key, 0, 1, MsgType::ReportReq, 1, &rr_bytes).expect("seal");
    put("guest_msg", "report_req", &report_req);
    put(
        "guest_msg",
        "key_req",
        &guest_msg::seal(&key, 0, 3, MsgType::KeyReq, 1, &kr_bytes).expect("seal"),
    );
    put(
        "guest_msg",
        "report_rsp",
        &guest_msg::seal(&key, 0, 2, MsgType::ReportRsp, 1, &rsp_bytes).expect("seal"),
    );
    put("guest_msg", "report_req_plain", &rr_bytes);
    put("guest_msg", "report_rsp_plain", &rsp_bytes);

    // OVMF: two control bytes (vCPUs, VMM, kernel hashes; vCPU type, guest features), then
    // the firmware.
    for (n, f, ctl) in [
        (
            "amdsev_kernel",
            "attest/testdata/snp/ovmf_AmdSev_suffix.bin",
            [0x14u8, 0x01],
        ),
        (
            "amdsev_2cpu_ec2",
            "attest/testdata/snp/ovmf_AmdSev_suffix.bin",
            [0x21, 0x21],
        ),
        (
            "ovmfx64",
            "attest/testdata/snp/ovmf_OvmfX64_suffix.bin",
            [0x10, 0x01],
        ),
    ] {
        put("ovmf_metadata", n, &[&ctl[..], &read(f)].concat());
    }

    // TDX quote.
    put(
        "tdx_quote",
        "quote_v4",
        &read("attest/testdata/tdx/tdx_quote"),
    );

    // Bootstrap.
    let ark_pem = read("image/snp-emu/fixtures/ark.pem");
    let chain_pem = read("attest/testdata/snp/cert_chain_milan");
    let pem_str = String::from_utf8(chain_pem.clone()).expect("pem");
    put("bootstrap_json", "csr", br#"{"subject":"CN=kms.example.com,O=Example","dns_names":["kms.example.com"],"ip_addresses":["10.0.0.5"],"include_quote":true}"#);
    put(
        "bootstrap_json",
        "certificate",
        format!("{{\"chain_pem\":{:?}}}", pem_str).as_bytes(),
    );
    put("bootstrap_json", "redis", br#"{"url":"redis://:pw@127.0.0.1:6379/0","db_secret":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="}"#);
    put(
        "bootstrap_json",
        "client_ca",
        format!("{{\"ca_pem\":{:?}}}", String::from_utf8_lossy(&ark_pem)).as_bytes(),
    );
    put(
        "bootstrap_json",
        "nonce",
        b"nonce=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
    );
    put("bootstrap_json", "cert_table", &psp.cert_table());
    put("bootstrap_x509", "milan_chain.pem", &chain_pem);
    put(
        "bootstrap_x509",
        "emu_chain.pem",
        &[
            read("image/snp-emu/fixtures/vcek.pem"),
            read("image/snp-emu/fixtures/ask.pem"),
            ark_pem,
        ]
        .concat(),
    );
    put("bootstrap_x509", "vcek.der", &vcek);
    // PKCS#10 requests made by OpenSSL (kms/core/tests/data/csr/README.md).
    for f in ["rsa2048.csr.pem", "p384-sha256.csr.der"] {
        put(
            "certificate_request",
            f,
            &read(&format!("kms/core/tests/data/csr/{f}")),
        );
    }

    // snp-emu frames (requests to the emulator).
    let frame = |cmd: u8, p: &[u8]| {
        snp_emu_proto::emit_frame(snp_emu_proto::REQ_MAGIC, cmd, 0, p).expect("seed frame")
    };
    let mut page = report_req.clone();
    page.resize(4096, 0);
    put("snp_emu_frame", "get_vmpck", &frame(1, &[]));
    put("snp_emu_frame", "get_certs", &frame(3, &[]));
    put(
        "snp_emu_frame",
        "session",
        &[frame(1, &[]), frame(2, &page), frame(3, &[])].concat(),
    );
    put(
        "snp_emu_frame",
        "garbage_then_frame",
        &[&b"\x1b[2J console SNP"[..], &frame(1, &[])].concat(),
    );

    // Kernel command lines and tables.
    for (n, c) in [
        ("default", ""),
        (
            "dhcp",
            "ckms.ip=dhcp ckms.attestation=emulated ckms.log=debug",
        ),
        (
            "static",
            "ckms.ip=10.0.2.15/24 ckms.gw=10.0.2.2 ckms.port=9998 ckms.ratls_port=9999",
        ),
        (
            "fallback",
            "ckms.ip=dhcp,fallback=10.0.2.15/24,gw=10.0.2.2 ckms.provisioner=sha256:0000000000000000000000000000000000000000000000000000000000000000",
        ),
        (
            "test",
            "ckms.test=attest ckms.test_report_data=00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        ),
    ] {
        put("boot_cmdline", n, c.as_bytes());
    }
    let region = |kind: u32, start: u64, pages: u64| {
        [
            &kind.to_le_bytes()[..],
            &start.to_le_bytes(),
            &pages.to_le_bytes(),
            &0xfu64.to_le_bytes(),
        ]
        .concat()
    };
    let mut mm = vec![0u8];
    for (k, s, p) in [
        (7, 0, 0xa0),
        (2, 0xa0000, 0x60),
        (7, 0x100000, 0x7000),
        (15, 0x8000000, 0x8000),
        (4, 0x7100000, 0x100),
        (7, 0x1_0000_0000, 0x40000),
    ] {
        mm.extend_from_slice(&region(k, s, p));
    }
    put("boot_tables", "memmap", &mm);
    let mut pci = vec![1u8];
    for dw in [
        0x1041_1af4u32,
        0x0010_0007,
        0x0200_0001,
        0,
        0xfebf_1000,
        0,
        0,
        0,
        0,
        0xfe00_000c,
        0,
        0x0001_1af4,
        0,
        0x40,
        0,
        0x0000_010b,
    ] {
        pci.extend_from_slice(&dw.to_le_bytes());
    }
    put("boot_tables", "pci_virtio_net", &pci);
    put(
        "boot_tables",
        "rtc",
        &[2, 0x59, 0x59, 0x23, 0x31, 0x12, 0x25, 0x20, 0x02, 20],
    );
}
