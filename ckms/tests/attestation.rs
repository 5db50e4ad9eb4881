//! `ckms attestation measure | verify-report`: the real binary against the real Milan vector
//! (AMD's chain built in or given as a KDS PEM) and against reports of the `snp-emu` PSP, whose
//! test root is accepted only with `--trust-root`.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use attest::ratls::{CertEntry, CertKind, encode_snp_quote};
use snp_emu::{
    chain::Chain,
    psp::{LaunchInfo, Psp},
};
use zeroize::Zeroizing;

const MILAN_MEASUREMENT: &str = "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f";

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn ckms(args: &[&str]) -> Output {
    // No config file: attestation commands need no KMS connection.
    Command::new(env!("CARGO_BIN_EXE_ckms"))
        .env_remove("CKMS_CONF")
        .env("HOME", std::env::temp_dir())
        .args(args)
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn milan_vector_verifies_with_builtin_and_kds_chain() {
    let report = data("report_milan.hex");
    let vcek = data("vcek_milan.der");
    let ok = ckms(&[
        "attestation",
        "verify-report",
        "--report",
        p(&report),
        "--vcek",
        p(&vcek),
        "--product",
        "milan",
        "--expected-measurement",
        MILAN_MEASUREMENT,
    ]);
    assert!(ok.status.success(), "{}", text(&ok));
    let out = text(&ok);
    assert!(out.contains("attestation report verified"), "{out}");
    assert!(out.contains("AMD Milan ARK"), "{out}");
    assert!(out.contains("report signature"), "{out}");

    let kds = ckms(&[
        "--json",
        "attestation",
        "verify-report",
        "--report",
        p(&report),
        "--vcek",
        p(&vcek),
        "--chain",
        p(&data("cert_chain_milan")),
        "--expected-measurement",
        MILAN_MEASUREMENT,
    ]);
    assert!(kds.status.success(), "{}", text(&kds));
    let v: serde_json::Value = serde_json::from_slice(&kds.stdout).unwrap();
    assert_eq!(v["verified"], true);
    assert_eq!(v["measurement"], MILAN_MEASUREMENT);
    assert_eq!(v["reported_tcb"]["microcode"], 0x73);
}

#[test]
fn milan_vector_fails_with_wrong_measurement_or_report_data_or_tampering() {
    let report = data("report_milan.hex");
    let vcek = data("vcek_milan.der");
    let mut wrong = MILAN_MEASUREMENT.to_string();
    wrong.replace_range(0..2, "7b");
    let bad = ckms(&[
        "attestation",
        "verify-report",
        "--report",
        p(&report),
        "--vcek",
        p(&vcek),
        "--product",
        "milan",
        "--expected-measurement",
        &wrong,
    ]);
    assert!(!bad.status.success());
    assert!(text(&bad).contains("measurement differs"), "{}", text(&bad));

    let bad_rd = ckms(&[
        "attestation",
        "verify-report",
        "--report",
        p(&report),
        "--vcek",
        p(&vcek),
        "--product",
        "milan",
        "--expected-measurement",
        MILAN_MEASUREMENT,
        "--report-data",
        &"00".repeat(64),
    ]);
    assert!(!bad_rd.status.success());
    assert!(text(&bad_rd).contains("report_data"), "{}", text(&bad_rd));

    // One flipped byte in the signed part (as binary this time) breaks the signature.
    let dir = tempfile::tempdir().unwrap();
    let mut bin = hex::decode(std::fs::read_to_string(&report).unwrap().trim()).unwrap();
    bin[0x50] ^= 1;
    let tampered = dir.path().join("tampered.bin");
    std::fs::write(&tampered, &bin).unwrap();
    let bad_sig = ckms(&[
        "attestation",
        "verify-report",
        "--report",
        p(&tampered),
        "--vcek",
        p(&vcek),
        "--product",
        "milan",
        "--expected-measurement",
        MILAN_MEASUREMENT,
    ]);
    assert!(!bad_sig.status.success());
    assert!(text(&bad_sig).contains("signature"), "{}", text(&bad_sig));
    // Genoa's root does not sign a Milan VCEK.
    let genoa = ckms(&[
        "attestation",
        "verify-report",
        "--report",
        p(&report),
        "--vcek",
        p(&vcek),
        "--product",
        "genoa",
        "--expected-measurement",
        MILAN_MEASUREMENT,
    ]);
    assert!(!genoa.status.success(), "{}", text(&genoa));
}

/// A report from the emulated PSP, the exported chain, and the measurement.
fn emulator_evidence(dir: &Path, report_data: [u8; 64]) -> (Vec<u8>, String) {
    let chain = Chain::builtin().unwrap();
    chain.export(dir).unwrap();
    let root = chain.derive_root_secret();
    let measurement = [0x5C; 48];
    let launch = LaunchInfo {
        measurement,
        policy: 0x30000,
        host_data: [0; 32],
        report_version: 3,
        platform_info: 1,
        report_id: [1; 32],
    };
    let psp = Psp::new(chain, launch, root, Zeroizing::new([2; 32])).unwrap();
    let report = psp.report(&report_data, 0).unwrap().to_bytes().to_vec();
    (report, hex::encode(measurement))
}

#[test]
fn emulator_report_verifies_only_with_trust_root() {
    let dir = tempfile::tempdir().unwrap();
    let rd = [0xA5; 64];
    let (report, m) = emulator_evidence(dir.path(), rd);
    let report_path = dir.path().join("report.bin");
    std::fs::write(&report_path, &report).unwrap();
    let (ark, chain, vcek) = (
        dir.path().join("ark.pem"),
        dir.path().join("cert_chain"),
        dir.path().join("vcek.der"),
    );
    let rd_hex = hex::encode(rd);
    let base = [
        "attestation",
        "verify-report",
        "--report",
        p(&report_path),
        "--vcek",
        p(&vcek),
    ];

    let mut args = base.to_vec();
    args.extend([
        "--chain",
        p(&chain),
        "--trust-root",
        p(&ark),
        "--expected-measurement",
        &m,
        "--report-data",
        &rd_hex,
    ]);
    let ok = ckms(&args);
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(text(&ok).contains("caller-supplied root"), "{}", text(&ok));

    // The same chain without --trust-root: untrusted.
    let mut args = base.to_vec();
    args.extend(["--chain", p(&chain), "--expected-measurement", &m]);
    let untrusted = ckms(&args);
    assert!(!untrusted.status.success());
    assert!(
        text(&untrusted).contains("--trust-root"),
        "{}",
        text(&untrusted)
    );
    // Against AMD's built-in Milan root (given explicitly or inferred from the report): fails.
    let mut args = base.to_vec();
    args.extend(["--product", "milan", "--expected-measurement", &m]);
    assert!(!ckms(&args).status.success());
    let mut args = base.to_vec();
    args.extend(["--expected-measurement", &m]);
    assert!(!ckms(&args).status.success());
    // Trusted root but wrong expectations.
    let zeros = "00".repeat(48);
    let mut args = base.to_vec();
    args.extend([
        "--chain",
        p(&chain),
        "--trust-root",
        p(&ark),
        "--expected-measurement",
        &zeros,
    ]);
    let wrong = ckms(&args);
    assert!(!wrong.status.success());
    assert!(text(&wrong).contains("measurement"), "{}", text(&wrong));
}

#[test]
fn emulator_quote_carries_its_vcek() {
    let dir = tempfile::tempdir().unwrap();
    let (report, m) = emulator_evidence(dir.path(), [0; 64]);
    let vcek = std::fs::read(dir.path().join("vcek.der")).unwrap();
    let quote = encode_snp_quote(&report, &[CertEntry::new(CertKind::Vcek, vcek)]);
    let qpath = dir.path().join("quote.hex");
    std::fs::write(&qpath, hex::encode(quote)).unwrap();
    let out = ckms(&[
        "attestation",
        "verify-report",
        "--report",
        p(&qpath),
        "--chain",
        p(&dir.path().join("cert_chain")),
        "--trust-root",
        p(&dir.path().join("ark.pem")),
        "--expected-measurement",
        &m,
    ]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn measure_matches_known_digests() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::write(&empty, b"").unwrap();
    let fw = data("ovmf_AmdSev_suffix.bin");
    for (features, expected) in [
        (
            "0x1",
            "6d287813eb5222d770f75005c664e34c204f385ce832cc2ce7d0d6f354454362f390ef83a92046c042e706363b4b08fa",
        ),
        (
            "0x21",
            "803f691094946e42068aaa3a8f9e26a5c89f36f7b73ecfb28c653360fe4b3aba7e534442e7e1e17895dfe778d0228977",
        ),
    ] {
        let out = ckms(&[
            "attestation",
            "measure",
            "--firmware",
            p(&fw),
            "--kernel",
            p(&empty),
            "--initrd",
            p(&empty),
            "--cmdline",
            "console=ttyS0 loglevel=7",
            "--vcpus",
            "1",
            "--vcpu-type",
            "EPYC-v4",
            "--guest-features",
            features,
            "--vmm",
            "qemu",
        ]);
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), expected);
    }
    let out = ckms(&[
        "--json",
        "attestation",
        "measure",
        "--firmware",
        p(&fw),
        "--kernel",
        p(&empty),
        "--cmdline",
        "console=ttyS0 loglevel=7",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["launch_digest"],
        "6d287813eb5222d770f75005c664e34c204f385ce832cc2ce7d0d6f354454362f390ef83a92046c042e706363b4b08fa"
    );
    // SHA-256 of the empty kernel.
    assert_eq!(
        v["kernel"]["sha256"],
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    let bad = ckms(&[
        "attestation",
        "measure",
        "--firmware",
        p(&fw),
        "--kernel",
        p(&empty),
        "--cmdline",
        "x",
        "--vcpu-type",
        "Pentium",
    ]);
    assert!(!bad.status.success());
}

/// Issue 12 #3 and low: `verify-report` refuses a platform below the TCB floor (naming the
/// component and both values) unless `--min-tcb` lowers it, and an `--amd-crl` that revokes the
/// ASK or the VCEK.
#[test]
fn emulator_report_below_the_tcb_floor_or_revoked_fails() {
    use snp_emu::chain::{Tcb, TestCa};
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::builtin().unwrap();
    let chain = ca
        .with_tcb(
            &Chain::builtin().unwrap(),
            Tcb {
                snp: 7,
                ..Tcb::TEST
            },
        )
        .unwrap();
    chain.export(dir.path()).unwrap();
    let (ask_serial, vcek_serial) = {
        use x509_cert::{Certificate, der::Decode};
        let s = |d: &[u8]| {
            Certificate::from_der(d)
                .unwrap()
                .tbs_certificate()
                .serial_number()
                .as_bytes()
                .to_vec()
        };
        (s(&chain.ask_der), s(&chain.vcek_der))
    };
    let measurement = [0x5C; 48];
    let launch = LaunchInfo {
        measurement,
        policy: 0x30000,
        host_data: [0; 32],
        report_version: 3,
        platform_info: 1,
        report_id: [1; 32],
    };
    let psp = Psp::new(
        chain,
        launch,
        Zeroizing::new([1; 32]),
        Zeroizing::new([2; 32]),
    )
    .unwrap();
    let report = psp.report(&[0; 64], 0).unwrap().to_bytes();
    let report_path = dir.path().join("report.bin");
    std::fs::write(&report_path, report).unwrap();
    let m = hex::encode(measurement);
    let (ark, chain_pem, vcek) = (
        dir.path().join("ark.pem"),
        dir.path().join("cert_chain"),
        dir.path().join("vcek.der"),
    );
    let base = vec![
        "attestation",
        "verify-report",
        "--report",
        p(&report_path),
        "--vcek",
        p(&vcek),
        "--chain",
        p(&chain_pem),
        "--trust-root",
        p(&ark),
        "--expected-measurement",
        &m,
    ];
    let low = ckms(&base);
    assert!(!low.status.success());
    assert!(
        text(&low).contains("reported TCB snp SVN 7 is below the minimum 8")
            && text(&low).contains("--min-tcb"),
        "{}",
        text(&low)
    );
    let mut args = base.clone();
    args.extend(["--min-tcb", "milan:bl=4,tee=0,snp=7,ucode=213"]);
    let ok = ckms(&args);
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(text(&ok).contains("reported, committed and launch TCB >= Milan minimum"));

    // CRLs signed by the test ARK: one revoking the ASK, one the VCEK, one neither.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for (name, revoked, expect) in [
        ("ask.crl", ask_serial.clone(), Some("revokes the ASK/ASVK")),
        (
            "vcek.crl",
            vcek_serial.clone(),
            Some("revokes the VCEK/VLEK"),
        ),
        ("other.crl", vec![0x55, 0x55], None),
    ] {
        let crl = ca.crl(&[&revoked], now - 3600, now + 86_400).unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, crl).unwrap();
        let mut args = base.clone();
        args.extend(["--min-tcb", "milan:bl=4,tee=0,snp=7,ucode=213"]);
        args.extend(["--amd-crl", p(&path)]);
        let out = ckms(&args);
        match expect {
            Some(msg) => {
                assert!(!out.status.success(), "{name}");
                assert!(text(&out).contains(msg), "{name}: {}", text(&out));
            }
            None => assert!(out.status.success(), "{name}: {}", text(&out)),
        }
    }
}
