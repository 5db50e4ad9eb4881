//! End-to-end tests of `snp-emu serve`: the real binary on a unix socket, a guest speaking the
//! protocol with `attest`'s guest-message code.

use std::{
    ffi::OsStr,
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use attest::{
    measure::snp::{SnpLaunch, VmmType, launch_digest},
    ratls::guid,
    snp::guest_msg::{KeyReq, field_select},
};
use p384::ecdsa::{Signature, VerifyingKey, signature::hazmat::PrehashVerifier};
use sha2::{Digest, Sha384};
use snp_emu_proto::{
    Cmd, REQ_MAGIC, Status,
    client::{Client, ClientError},
    emit_frame,
};
use testkit::{ChildGuard, SnpEmu};
use x509_cert::{Certificate, der::Decode};

const FIRMWARE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/ovmf_AmdSev_suffix.bin"
);

/// A running emulator ([`SnpEmu`], killed by PID on drop) and its temp dir.
struct Emu {
    emu: SnpEmu,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for Emu {
    type Target = SnpEmu;
    fn deref(&self) -> &SnpEmu {
        &self.emu
    }
}

impl Emu {
    fn start(kernel: &[u8], cmdline: &str) -> Emu {
        let dir = tempfile::tempdir().unwrap();
        let kpath = dir.path().join("kernel");
        std::fs::write(&kpath, kernel).unwrap();
        let socket = dir.path().join("snp.sock");
        let emu = SnpEmu::serve(
            Path::new(env!("CARGO_BIN_EXE_snp-emu")),
            socket,
            [
                "--firmware".as_ref(),
                FIRMWARE.as_ref(),
                "--kernel".as_ref(),
                kpath.as_os_str(),
                "--cmdline".as_ref(),
                OsStr::new(cmdline),
                "--vcpus".as_ref(),
                "1".as_ref(),
                "--vcpu-type".as_ref(),
                "EPYC-v4".as_ref(),
                "--guest-features".as_ref(),
                "0x1".as_ref(),
            ],
        );
        Emu { emu, _dir: dir }
    }

    fn connect(&self) -> Client<UnixStream> {
        Client::new(UnixStream::connect(&self.socket).unwrap())
    }
}

fn expected_digest(kernel: &[u8], cmdline: &str) -> String {
    let firmware = std::fs::read(FIRMWARE).unwrap();
    hex::encode(
        launch_digest(&SnpLaunch {
            firmware: &firmware,
            kernel,
            initrd: b"",
            cmdline,
            vcpus: 1,
            vcpu_type: "EPYC-v4".parse().unwrap(),
            guest_features: 1,
            vmm: VmmType::Qemu,
        })
        .unwrap(),
    )
}

/// Parses the certificate table into (guid, der) entries.
fn cert_table(t: &[u8]) -> Vec<([u8; 16], Vec<u8>)> {
    let mut out = Vec::new();
    for e in t.chunks(24) {
        let g: [u8; 16] = e[..16].try_into().unwrap();
        if g == [0; 16] {
            break;
        }
        let off = u32::from_le_bytes(e[16..20].try_into().unwrap()) as usize;
        let len = u32::from_le_bytes(e[20..24].try_into().unwrap()) as usize;
        out.push((g, t[off..off + len].to_vec()));
    }
    out
}

fn vcek_key(vcek_der: &[u8]) -> VerifyingKey {
    let cert = Certificate::from_der(vcek_der).unwrap();
    let spki = cert.tbs_certificate().subject_public_key_info();
    VerifyingKey::from_sec1_bytes(spki.subject_public_key.raw_bytes()).unwrap()
}

#[test]
fn report_with_chosen_report_data_is_signed_by_the_exported_vcek() {
    let emu = Emu::start(b"kernel A", "console=ttyS0 ckms.attestation=emulated");
    assert_eq!(
        emu.measurement,
        expected_digest(b"kernel A", "console=ttyS0 ckms.attestation=emulated")
    );
    let mut c = emu.connect();
    c.get_vmpck().unwrap();
    let rd: [u8; 64] = core::array::from_fn(|i| i as u8);
    let report = c.report(&rd, 0).unwrap();
    assert_eq!(report.report_data, rd);
    assert_eq!(hex::encode(report.measurement), emu.measurement);
    assert_eq!(report.version.get(), 3);
    assert_eq!(report.signature_algo.get(), 1);

    let certs = cert_table(&c.certs().unwrap());
    let kinds: Vec<[u8; 16]> = certs.iter().map(|(g, _)| *g).collect();
    assert_eq!(kinds, vec![guid::VCEK, guid::ASK, guid::ARK]);
    // The table carries the same chain `export-chain` writes.
    let dir = tempfile::tempdir().unwrap();
    let st = Command::new(env!("CARGO_BIN_EXE_snp-emu"))
        .arg("export-chain")
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(
        std::fs::read(dir.path().join("vcek.der")).unwrap(),
        certs[0].1
    );
    assert_eq!(report.chip_id.to_vec(), chip_id_of(&certs[0].1));

    let vk = vcek_key(&certs[0].1);
    let sig = Signature::from_slice(&report.signature.to_be_rs().unwrap()).unwrap();
    let digest = Sha384::digest(report.signed_bytes());
    assert!(vk.verify_prehash(&digest, &sig).is_ok());
    let mut tampered = report;
    tampered.report_data[0] ^= 1;
    // `signature::Error` is opaque: its message is the only thing to compare.
    let err = vk
        .verify_prehash(&Sha384::digest(tampered.signed_bytes()), &sig)
        .unwrap_err();
    assert_eq!(err.to_string(), "signature error");
}

fn chip_id_of(vcek_der: &[u8]) -> Vec<u8> {
    let cert = Certificate::from_der(vcek_der).unwrap();
    let ext = cert.tbs_certificate().extensions().unwrap();
    let hw = ext
        .iter()
        .find(|e| e.extn_id.to_string() == "1.3.6.1.4.1.3704.1.4")
        .unwrap();
    hw.extn_value.as_bytes().to_vec()
}

fn key_for(kernel: &[u8], cmdline: &str) -> [u8; 32] {
    let emu = Emu::start(kernel, cmdline);
    let mut c = emu.connect();
    c.get_vmpck().unwrap();
    c.derived_key(&KeyReq::new(
        field_select::MEASUREMENT | field_select::GUEST_POLICY,
        0,
    ))
    .unwrap()
    .0
}

#[test]
fn derived_key_follows_kernel_and_cmdline() {
    let base = key_for(b"kernel A", "console=ttyS0");
    assert_eq!(
        base,
        key_for(b"kernel A", "console=ttyS0"),
        "same launch, same key (new VMPCK, new emulator)"
    );
    assert_ne!(
        base,
        key_for(b"kernel B", "console=ttyS0"),
        "kernel changed"
    );
    assert_ne!(
        base,
        key_for(b"kernel A", "console=ttyS0 x=1"),
        "cmdline changed"
    );
}

#[test]
fn garbage_gets_an_error_and_the_session_continues() {
    let emu = Emu::start(b"k", "c");
    let mut c = emu.connect();
    c.get_vmpck().unwrap();
    c.send_raw(b"this is not a frame").unwrap();
    let (cmd, status, payload) = c.read_reply().unwrap();
    assert_eq!(
        (cmd, status, payload.len()),
        (Cmd::Invalid as u8, Status::BadFrame as u16, 0)
    );
    // Unknown command, wrong page size, VMPCK handed out only once.
    c.send_raw(&emit_frame(REQ_MAGIC, 99, 0, b"").unwrap())
        .unwrap();
    assert_eq!(c.read_reply().unwrap().1, Status::UnknownCommand as u16);
    c.send_raw(&emit_frame(REQ_MAGIC, Cmd::GuestRequest as u8, 0, &[0u8; 100]).unwrap())
        .unwrap();
    assert_eq!(c.read_reply().unwrap().1, Status::BadLength as u16);
    // A page of zeros is not a valid message (ALGO 0): refused, counter unchanged.
    c.send_raw(&emit_frame(REQ_MAGIC, Cmd::GuestRequest as u8, 0, &[0u8; 4096]).unwrap())
        .unwrap();
    assert_eq!(c.read_reply().unwrap().1, Status::BadMessage as u16);
    assert!(
        matches!(c.call(Cmd::GetVmpck, &[]), Err(ClientError::Status(s)) if s == Status::VmpckTaken as u16)
    );
    let report = c.report(&[7; 64], 0).unwrap();
    assert_eq!(report.report_data, [7; 64]);

    // The connection drops; the emulator accepts the next one and keeps its state.
    c.replace_stream(UnixStream::connect(&emu.socket).unwrap());
    assert!(
        matches!(c.call(Cmd::GetVmpck, &[]), Err(ClientError::Status(s)) if s == Status::VmpckTaken as u16)
    );
    assert_eq!(c.report(&[8; 64], 0).unwrap().report_data, [8; 64]);
}

#[test]
fn wrong_key_or_replayed_seqno_is_refused_like_the_psp() {
    use attest::snp::guest_msg::{GuestMessenger, MsgType, ReportReq, Vmpck, seal};
    use zerocopy::IntoBytes;
    let emu = Emu::start(b"k", "c");
    let mut c = emu.connect();
    let key: [u8; 32] = c.call(Cmd::GetVmpck, &[]).unwrap().try_into().unwrap();
    let page = |msg: Vec<u8>| {
        let mut p = msg;
        p.resize(4096, 0);
        emit_frame(REQ_MAGIC, Cmd::GuestRequest as u8, 0, &p).unwrap()
    };
    let body = ReportReq::new([1; 64], 0);
    // Wrong key: AUTH_FAILED, and the firmware counter does not move.
    c.send_raw(&page(
        seal(
            &Vmpck::new([0; 32]),
            0,
            1,
            MsgType::ReportReq,
            1,
            body.as_bytes(),
        )
        .unwrap(),
    ))
    .unwrap();
    assert_eq!(c.read_reply().unwrap().1, Status::AuthFailed as u16);
    let mut g = GuestMessenger::new(Vmpck::new(key), 0);
    let req = g.report_request([2; 64], 0).unwrap();
    c.send_raw(&page(req.clone())).unwrap();
    let (_, st, rsp) = c.read_reply().unwrap();
    assert_eq!(st, Status::Ok as u16);
    assert_eq!(g.report_response(&rsp).unwrap().report_data, [2; 64]);
    // Replaying the same request (seqno 1) is refused.
    c.send_raw(&page(req)).unwrap();
    assert_eq!(c.read_reply().unwrap().1, Status::BadSeqno as u16);
    let req = g.report_request([3; 64], 0).unwrap();
    c.send_raw(&page(req)).unwrap();
    let (_, st, rsp) = c.read_reply().unwrap();
    assert_eq!(st, Status::Ok as u16);
    assert_eq!(g.report_response(&rsp).unwrap().report_data, [3; 64]);
}

#[test]
fn report_verifies_with_attest_only_under_the_explicit_test_root() {
    use attest::{
        snp::Generation,
        verify::{ChainSource, Policy, TrustAnchor, VerifyError, verify_snp_report},
    };
    let emu = Emu::start(b"kernel", "ckms.attestation=emulated");
    let mut c = emu.connect();
    c.get_vmpck().unwrap();
    let rd = [0xC3; 64];
    let report = c.report(&rd, 0).unwrap().to_bytes();
    let dir = tempfile::tempdir().unwrap();
    let st = Command::new(env!("CARGO_BIN_EXE_snp-emu"))
        .arg("export-chain")
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(st.success());
    let ark = std::fs::read(dir.path().join("ark.pem")).unwrap();
    let ask = std::fs::read(dir.path().join("ask.pem")).unwrap();
    let vcek = std::fs::read(dir.path().join("vcek.der")).unwrap();
    let chain = std::fs::read(dir.path().join("cert_chain")).unwrap();
    let measurement: [u8; 48] = hex::decode(&emu.measurement).unwrap().try_into().unwrap();
    let policy = Policy::new(measurement).report_data(rd);

    let v = verify_snp_report(
        &report,
        &vcek,
        ChainSource::TrustRoot {
            ark: &ark,
            intermediate: &ask,
        },
        &policy,
    )
    .unwrap();
    assert_eq!(v.anchor(), TrustAnchor::Custom);
    assert_eq!(v.report_data(), &rd);
    assert_eq!(v.generation(), Generation::Milan);

    // Never trusted by default: not as a KDS chain, not against AMD's Milan root.
    assert_eq!(
        verify_snp_report(&report, &vcek, ChainSource::AmdPem(&chain), &policy).unwrap_err(),
        VerifyError::UntrustedRoot
    );
    let e = verify_snp_report(
        &report,
        &vcek,
        ChainSource::BuiltIn(Generation::Milan),
        &policy,
    )
    .unwrap_err();
    assert_eq!(e, VerifyError::NameChain("VCEK/VLEK"));
    // Wrong expectations fail.
    let trust = ChainSource::TrustRoot {
        ark: &ark,
        intermediate: &ask,
    };
    let mut other = measurement;
    other[0] ^= 1;
    assert_eq!(
        verify_snp_report(&report, &vcek, trust, &Policy::new(other)).unwrap_err(),
        VerifyError::MeasurementMismatch
    );
    assert_eq!(
        verify_snp_report(
            &report,
            &vcek,
            trust,
            &Policy::new(measurement).report_data([0; 64])
        )
        .unwrap_err(),
        VerifyError::ReportDataMismatch
    );
}

#[test]
fn gen_chain_reproduces_the_committed_fixtures() {
    let dir = tempfile::tempdir().unwrap();
    let st = Command::new(env!("CARGO_BIN_EXE_snp-emu"))
        .args(["gen-chain", "--seed", "snp-emu-test-chain-v1", "--out"])
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(st.success());
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    for f in [
        "ark.pem",
        "ask.pem",
        "vcek.der",
        "vcek_key.pem",
        "cert_chain",
        "ark_key.pem",
        "ask_key.pem",
    ] {
        assert_eq!(
            std::fs::read(dir.path().join(f)).unwrap(),
            std::fs::read(fixtures.join(f)).unwrap(),
            "{f}"
        );
    }
}

#[test]
fn connect_mode_serves_one_connection_to_a_listening_qemu() {
    let dir = tempfile::tempdir().unwrap();
    let kpath = dir.path().join("kernel");
    std::fs::write(&kpath, b"kernel").unwrap();
    let socket = dir.path().join("qemu.sock");
    // The test plays QEMU with `-chardev socket,server=on`: it listens, the emulator connects.
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_snp-emu"))
        .args(["serve", "--connect"])
        .arg(&socket)
        .args(["--firmware", FIRMWARE, "--kernel"])
        .arg(&kpath)
        .args(["--cmdline", "c"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut emu = ChildGuard::new(child);
    let (stream, _) = listener.accept().unwrap();
    let mut c = Client::new(stream);
    c.get_vmpck().unwrap();
    let report = c.report(&[9; 64], 0).unwrap();
    assert_eq!(
        hex::encode(report.measurement),
        expected_digest(b"kernel", "c")
    );
    drop(c);
    // The connection is gone: the emulator exits by itself.
    assert!(emu.wait().unwrap().success());
    drop(dir);
}
