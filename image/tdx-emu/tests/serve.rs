//! End-to-end tests of `tdx-emu serve`: the real binary on a unix socket, a client asking for a
//! TDREPORT and its quote, verified with attest's local checker against the exported root.

use std::{
    os::unix::net::UnixStream,
    path::Path,
    process::{Command, Stdio},
};

use attest::{
    measure::tdx::rtmr2_cmdline,
    tdx::local::{LocalVerifyError, verify_quote_signatures},
};
use snp_emu_proto::emit_frame;
use tdx_emu::proto::{Client, ClientError, Cmd, REQ_MAGIC, Status};
use testkit::{ChildGuard, drain_lines, wait_line};

const BIN: &str = env!("CARGO_BIN_EXE_tdx-emu");

struct Emu {
    _guard: ChildGuard,
    socket: std::path::PathBuf,
    mrtd: String,
    rtmr2: String,
    _dir: tempfile::TempDir,
}

fn start(args: &[&str]) -> Emu {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("tdx.sock");
    let mut guard = ChildGuard::spawn(
        Command::new(BIN)
            .arg("serve")
            .arg("--socket")
            .arg(&socket)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
        "tdx-emu",
    );
    let mut lines = guard.stdout_lines();
    let mrtd = wait_line(&mut lines, "mrtd ", "tdx-emu");
    let rtmr2 = wait_line(&mut lines, "rtmr2 ", "tdx-emu");
    wait_line(&mut lines, "listening", "tdx-emu");
    drain_lines(lines);
    Emu {
        _guard: guard,
        socket,
        mrtd,
        rtmr2,
        _dir: dir,
    }
}

fn client(e: &Emu) -> Client<UnixStream> {
    Client::new(UnixStream::connect(&e.socket).unwrap())
}

const MRTD: &str = "11111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111";

#[test]
fn quote_over_the_socket_verifies_with_the_exported_root() {
    let mrtd = format!("{MRTD}1");
    let e = start(&["--mrtd", &mrtd, "--cmdline", "console=ttyS0 x"]);
    assert_eq!(e.mrtd, mrtd);
    assert_eq!(e.rtmr2, hex::encode(rtmr2_cmdline("console=ttyS0 x")));
    let mut c = client(&e);
    let report = c.td_report(&[0x5A; 64]).unwrap();
    let quote = c.get_quote(&report).unwrap();
    // The root from the socket equals the one `export-chain` writes.
    let root = c.root().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let st = Command::new(BIN)
        .arg("export-chain")
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(std::fs::read(dir.path().join("root.der")).unwrap(), root);
    let pem = std::fs::read_to_string(dir.path().join("root.pem")).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
    let body = verify_quote_signatures(&quote, &root).unwrap();
    assert_eq!(body.mr_td, [0x11; 48]);
    assert_eq!(body.rtmr[2], rtmr2_cmdline("console=ttyS0 x"));
    assert_eq!(body.report_data, [0x5A; 64]);
    assert_eq!(body.td_attributes, (1u64 << 28).to_le_bytes());
    // Another seed's root refuses it.
    let other = tempfile::tempdir().unwrap();
    Command::new(BIN)
        .args(["export-chain", "--seed", "other"])
        .arg(other.path())
        .status()
        .unwrap();
    let other_root = std::fs::read(other.path().join("root.der")).unwrap();
    assert!(matches!(
        verify_quote_signatures(&quote, &other_root),
        Err(LocalVerifyError::UntrustedRoot)
    ));
}

#[test]
fn forged_reports_bad_lengths_and_garbage_get_their_status() {
    let e = start(&["--mrtd", &format!("{MRTD}1")]);
    let mut c = client(&e);
    let mut report = c.td_report(&[1; 64]).unwrap();
    // A TDREPORT the TD edited (RTMR2, REPORTDATA) or made up: the QE refuses it.
    report[512 + 208 + 96] ^= 1;
    assert!(matches!(
        c.get_quote(&report),
        Err(ClientError::Status(Status::BadReport))
    ));
    assert!(matches!(
        c.get_quote(&[0; 1024]),
        Err(ClientError::Status(Status::BadReport))
    ));
    assert!(matches!(
        c.call(Cmd::GetQuote, &[0; 100]),
        Err(ClientError::Status(Status::BadLength))
    ));
    assert!(matches!(
        c.call(Cmd::TdReport, &[0; 65]),
        Err(ClientError::Status(Status::BadLength))
    ));
    let root = c.root().unwrap();
    // Connections are served one at a time.
    drop(c);
    // Garbage then a valid request on the same connection: one BAD_FRAME reply is skipped.
    let mut s = UnixStream::connect(&e.socket).unwrap();
    use std::io::Write;
    s.write_all(b"garbage bytes").unwrap();
    let mut c2 = Client::new(s);
    assert_eq!(c2.root().unwrap(), root);
    drop(c2);
    // An unknown command.
    let mut s = UnixStream::connect(&e.socket).unwrap();
    s.write_all(&emit_frame(REQ_MAGIC, 9, 0, b"").unwrap())
        .unwrap();
    let mut h = [0u8; 12];
    use std::io::Read;
    s.read_exact(&mut h).unwrap();
    assert_eq!(&h[..8], b"TDXR\x01\x09\x02\x00");
}

#[test]
fn firmware_and_kernel_give_mrtd_and_rtmr1() {
    // Bad arguments are refused before listening.
    let out = Command::new(BIN)
        .args(["serve", "--socket", "/nonexistent/x", "--mrtd", "00"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--mrtd: 96 hex digits"));
    let out = Command::new(BIN)
        .args(["serve", "--socket", "/nonexistent/x", "--firmware"])
        .arg(Path::new("/nonexistent/ovmf.fd"))
        .output()
        .unwrap();
    assert!(!out.status.success());
}

/// With `--kernel` and `--cmdline`, `EVENT_LOG` serves a log that replays to the RTMRs of the
/// emulator's own quotes and names that kernel and command line; with RTMRs given as values
/// there is none (`NO_EVENT_LOG`).
#[test]
fn event_log_replays_to_the_quoted_rtmrs() {
    use attest::measure::tdx::{authenticode_sha384, cmdline_digest};
    use attest::tdx::eventlog::{EventLog, LogExpectation};
    let kernel =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../attest/testdata/tdx/tiny_pe.efi");
    let mrtd = format!("{MRTD}1");
    let e = start(&[
        "--mrtd",
        &mrtd,
        "--kernel",
        kernel.to_str().unwrap(),
        "--cmdline",
        "ckms.ip=dhcp",
    ]);
    let mut c = client(&e);
    let log = c.call(Cmd::EventLog, b"").unwrap();
    let report = c.td_report(&[5; 64]).unwrap();
    let quote = c.get_quote(&report).unwrap();
    let root = c.root().unwrap();
    let body = verify_quote_signatures(&quote, &root).unwrap();
    let parsed = EventLog::parse(&log).unwrap();
    let want = LogExpectation {
        kernel: Some(authenticode_sha384(&std::fs::read(&kernel).unwrap()).unwrap()),
        cmdline: Some(cmdline_digest("ckms.ip=dhcp")),
    };
    assert_eq!(parsed.check(&body.rtmr, &want), Ok(()));

    let e = start(&["--mrtd", &mrtd, "--rtmr2", &mrtd]);
    assert!(matches!(
        client(&e).call(Cmd::EventLog, b""),
        Err(ClientError::Status(Status::NoEventLog))
    ));
}
