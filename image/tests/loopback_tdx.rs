//! The loopback-TDX kernel build (`emulated-attestation,loopback-tdx`) under QEMU TCG, with
//! `tdx-emu` on COM2 (kernel/README.md, "The loopback-TDX build"):
//!
//! - `attest_boot_gives_a_verifiable_tdx_quote`: the kernel establishes its TDX backend with
//!   the stub (TDG.VP.INFO), passes the #VE self-test through the real IDT gate, brings the
//!   network up with every DMA page converted by MapGPA (the stub asserts each virtio address is
//!   in a shared page), then `ckms.test=attest` obtains TDREPORT (TDG.MR.REPORT → tdx-emu
//!   `TD_REPORT`) and a quote (GetQuote in a shared pool buffer → tdx-emu `GET_QUOTE`). The quote
//!   must verify against tdx-emu's root (`attest::tdx::local::verify_quote_signatures`) and carry
//!   our REPORTDATA, the emulator's RTMR1/RTMR2 of this kernel and command line, and
//!   SEPT_VE_DISABLE without DEBUG.
//! - `kms_service_refuses_tdx_until_the_core_has_a_tdx_evidence_type`: without `ckms.test`, the
//!   boot stops with the named reason (status 35) instead of serving a TDX quote as SEV-SNP.
//!
//! Slow (a kernel build and two TCG boots): `--features vm-tests`. Needs
//! `cargo build -p tdx-emu` first and `qemu-system-x86_64` with `/usr/share/ovmf/OVMF.fd`.
#![cfg(feature = "vm-tests")]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use image::build::{self, BuildOptions};
use testkit::{ChildGuard, workspace_bin};

const BOOT_TIMEOUT: Duration = Duration::from_secs(300);

fn repo() -> PathBuf {
    build::find_repo(Path::new(env!("CARGO_MANIFEST_DIR"))).expect("repository root")
}

/// The loopback-TDX kernel, built once.
fn kernel() -> &'static Path {
    static K: OnceLock<PathBuf> = OnceLock::new();
    K.get_or_init(|| {
        let mut opts = BuildOptions::dev(repo());
        opts.kernel_features = vec!["emulated-attestation".into(), "loopback-tdx".into()];
        opts.cargo_target_dir =
            Some(Path::new(env!("CARGO_TARGET_TMPDIR")).join("loopback-tdx-kernel-target"));
        let t = Instant::now();
        let k = build::build_kernel(&opts).unwrap_or_else(|e| panic!("kernel build: {e}"));
        eprintln!(
            "loopback-tdx kernel build: {:.0} s",
            t.elapsed().as_secs_f64()
        );
        let bytes = fs::read(&k).expect("read kernel");
        // The binary carries the stub's marker, which `image build` ties to the feature.
        build::check_stub(&bytes, &opts.kernel_features).expect("stub matches the features");
        k
    })
}

struct Boot {
    console: String,
    status: Option<i32>,
    emu_stdout: String,
}

/// Boots `kernel()` with `cmdline`, `tdx-emu` on COM2, until `until` appears on the console
/// (`None`: until QEMU exits).
fn boot(name: &str, cmdline: &str, until: Option<&str>) -> Boot {
    // One VM at a time: TCG boots compete for the same cores.
    static LOCK: Mutex<()> = Mutex::new(());
    let _one = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("loopback-tdx-{name}"));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("mkdir");
    let socket = dir.join("tdx.sock");
    let emu_out = dir.join("tdx-emu.out");
    let kernel = kernel();
    let _emu = ChildGuard::spawn(
        Command::new(workspace_bin("tdx-emu"))
            .arg("serve")
            .arg("--socket")
            .arg(&socket)
            .arg("--mrtd")
            .arg("11".repeat(48))
            .arg("--kernel")
            .arg(kernel)
            .arg("--cmdline")
            .arg(cmdline)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&emu_out).expect("emu log"))
            .stderr(Stdio::inherit()),
        "tdx-emu",
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !socket.exists() {
        assert!(Instant::now() < deadline, "tdx-emu socket did not appear");
        std::thread::sleep(Duration::from_millis(50));
    }
    let console = dir.join("console.log");
    let mut qemu = ChildGuard::spawn(
        Command::new("qemu-system-x86_64")
            .args(["-machine", "q35", "-cpu", "max", "-m", "128M", "-smp", "1"])
            .args(["-bios", image::run::DEFAULT_BIOS])
            .arg("-kernel")
            .arg(kernel)
            .args(["-append", cmdline])
            .args(["-display", "none", "-no-reboot", "-monitor", "none"])
            .arg("-serial")
            .arg(format!("file:{}", console.display()))
            .arg("-chardev")
            .arg(format!("socket,id=att,path={}", socket.display()))
            .args(["-serial", "chardev:att"])
            .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
            .args(["-netdev", "user,id=n0,restrict=on"])
            .args(["-device", "virtio-net-pci,netdev=n0,disable-legacy=on"])
            .stdin(Stdio::null())
            .stdout(Stdio::null()),
        "qemu",
    );
    let t = Instant::now();
    let mut status = None;
    loop {
        let text = fs::read_to_string(&console).unwrap_or_default();
        if until.is_some_and(|u| text.contains(u)) {
            break;
        }
        if let Ok(Some(s)) = qemu.try_wait() {
            status = s.code();
            break;
        }
        assert!(
            t.elapsed() < BOOT_TIMEOUT,
            "no {until:?} within {BOOT_TIMEOUT:?}; console:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Let the line finish, then read everything.
    std::thread::sleep(Duration::from_millis(300));
    eprintln!("{name}: {:.1} s under TCG", t.elapsed().as_secs_f64());
    Boot {
        console: fs::read_to_string(&console).unwrap_or_default(),
        status,
        emu_stdout: fs::read_to_string(&emu_out).unwrap_or_default(),
    }
}

fn emu_value(out: &str, key: &str) -> [u8; 48] {
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key} ")))
        .unwrap_or_else(|| panic!("tdx-emu printed no {key}: {out}"));
    hex::decode(line.trim())
        .expect("hex")
        .try_into()
        .expect("48 bytes")
}

#[test]
fn attest_boot_gives_a_verifiable_tdx_quote() {
    let report_data: [u8; 64] = core::array::from_fn(|i| (i as u8).wrapping_mul(7) ^ 0x5C);
    let cmdline = format!(
        "ckms.test=attest ckms.attestation=emulated ckms.ip=dhcp ckms.test_report_data={}",
        hex::encode(report_data)
    );
    let b = boot("attest", &cmdline, Some("ckms: attest derived-key="));
    let c = &b.console;
    for want in [
        "LOOPBACK-TDX TEST BUILD: TDCALL is stubbed",
        "platform: tdx backend over the loopback TDCALL: gpaw 48, shared bit 47",
        "tdx: #VE self-test ok",
        "platform: tdx",
        "ckms: ready ip=",
        "ckms: attest derived-key=none",
    ] {
        assert!(c.contains(want), "console lacks {want:?}:\n{c}");
    }
    let hex_quote = c
        .lines()
        .find_map(|l| l.strip_prefix("ckms: attest report="))
        .unwrap_or_else(|| panic!("no quote on the console:\n{c}"));
    let quote = hex::decode(hex_quote.trim()).expect("quote hex");

    let chain = Path::new(env!("CARGO_TARGET_TMPDIR")).join("loopback-tdx-chain");
    let out = Command::new(workspace_bin("tdx-emu"))
        .arg("export-chain")
        .arg(&chain)
        .output()
        .expect("tdx-emu export-chain");
    assert!(out.status.success(), "{out:?}");
    let root = fs::read(chain.join("root.der")).expect("root.der");
    let body = attest::tdx::local::verify_quote_signatures(&quote, &root)
        .unwrap_or_else(|e| panic!("quote does not verify: {e:?}"));
    assert_eq!(body.report_data, report_data, "REPORTDATA not bound");
    assert_eq!(body.mr_td, [0x11; 48]);
    assert_eq!(body.rtmr[1], emu_value(&b.emu_stdout, "rtmr1"));
    assert_eq!(body.rtmr[2], emu_value(&b.emu_stdout, "rtmr2"));
    let attributes = u64::from_le_bytes(body.td_attributes);
    assert_eq!(attributes & 1, 0, "DEBUG set");
    assert_ne!(attributes & (1 << 28), 0, "SEPT_VE_DISABLE clear");

    // A quote with one byte of the body changed no longer verifies.
    let mut edited = quote.clone();
    edited[48 + 520] ^= 1;
    assert!(attest::tdx::local::verify_quote_signatures(&edited, &root).is_err());
}

#[test]
fn kms_service_refuses_tdx_until_the_core_has_a_tdx_evidence_type() {
    let b = boot("kms", "ckms.attestation=emulated ckms.ip=dhcp", None);
    assert!(
        b.console
            .contains("KMS: the bootstrap core has no TDX evidence type yet"),
        "{}",
        b.console
    );
    // After the TDX backend and the network came up; a refusal is isa-debug-exit 0x11 → 35.
    assert!(b.console.contains("tdx: #VE self-test ok"), "{}", b.console);
    assert_eq!(b.status, Some(35), "{}", b.console);
}
