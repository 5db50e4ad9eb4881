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
//! - `kms_bootstrap_serves_tdx_evidence_that_ckms_verifies`: without `ckms.test`, the KMS starts
//!   its bootstrap server with TDX evidence (`kms::bootstrap::platform::Platform::Tdx`: a random
//!   key, the DCAP quote v4 in the RA-TLS certificate, fresh quotes at `/attestation`), and
//!   `ckms bootstrap start --csr-out` attests it against tdx-emu's root (`--trust-root`) and a
//!   manifest whose MRTD is the emulator's and whose RTMR1/RTMR2 ckms recomputes from the kernel
//!   and the command line, then gets the CSR of the attested key. The same manifest with another
//!   command line is refused (RTMR2) before anything is posted.
//!
//! Slow (a kernel build and two TCG boots): `--features vm-tests`. Needs
//! `cargo build -p tdx-emu -p ckms` first and `qemu-system-x86_64` with `/usr/share/ovmf/OVMF.fd`.
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
    boot_then(name, cmdline, until, None, |_| ()).0
}

/// [`boot`], with host port `forward` (if any) forwarded to the guest's bootstrap port 9998,
/// and `then` run while the VM and the emulator still run.
fn boot_then<T>(
    name: &str,
    cmdline: &str,
    until: Option<&str>,
    forward: Option<u16>,
    then: impl FnOnce(&str) -> T,
) -> (Boot, T) {
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
            .arg("-netdev")
            .arg(match forward {
                Some(p) => format!("user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{p}-:9998"),
                None => "user,id=n0,restrict=on".into(),
            })
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
    let text = fs::read_to_string(&console).unwrap_or_default();
    let out = then(&text);
    (
        Boot {
            console: fs::read_to_string(&console).unwrap_or_default(),
            status,
            emu_stdout: fs::read_to_string(&emu_out).unwrap_or_default(),
        },
        out,
    )
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

/// `tdx-emu export-chain` into `dir`; returns the path of its root (PEM).
fn emu_root(dir: &Path) -> PathBuf {
    let out = Command::new(workspace_bin("tdx-emu"))
        .arg("export-chain")
        .arg(dir)
        .output()
        .expect("tdx-emu export-chain");
    assert!(out.status.success(), "{out:?}");
    dir.join("root.pem")
}

/// What `image build` would write for this kernel and command line: ckms recomputes RTMR1 from
/// the kernel next to the manifest (when its SHA-256 matches) and RTMR2 from `cmdline`.
fn manifest(dir: &Path, kernel: &Path, cmdline: &str) -> PathBuf {
    use sha2::Digest;
    let bytes = fs::read(kernel).expect("read kernel");
    fs::write(dir.join("kms.efi"), &bytes).expect("copy kernel");
    let m = serde_json::json!({
        "cmdline": cmdline,
        "kernel": {"file": "kms.efi", "sha256": hex::encode(sha2::Sha256::digest(&bytes))},
        "tdx": {"mrtd": "11".repeat(48)},
    });
    let name = format!(
        "manifest-{:x}.json",
        sha2::Sha256::digest(cmdline.as_bytes())[0]
    );
    let path = dir.join(name);
    fs::write(&path, m.to_string()).expect("write manifest");
    path
}

#[test]
fn kms_bootstrap_serves_tdx_evidence_that_ckms_verifies() {
    let cmdline = "ckms.attestation=emulated ckms.ip=dhcp";
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("loopback-tdx-ckms");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("mkdir");
    let root = emu_root(&dir.join("chain"));
    let good = manifest(&dir, kernel(), cmdline);
    let tampered = manifest(&dir, kernel(), &format!("{cmdline} ckms.port=9999"));
    let port = testkit::free_port();
    let ckms = |manifest: &Path| {
        Command::new(workspace_bin("ckms"))
            .current_dir(&dir)
            .env_remove("CKMS_CONF")
            .args(["--url", &format!("https://127.0.0.1:{port}")])
            .args(["bootstrap", "start", "--manifest"])
            .arg(manifest)
            .arg("--trust-root")
            .arg(&root)
            .args(["--subject", "CN=kms.test", "--csr-out", "kms.csr"])
            .output()
            .expect("run ckms")
    };
    let (b, (refused, accepted)) =
        boot_then("kms", cmdline, Some("ckms: ready ip="), Some(port), |_| {
            // The tampered command line first: it is refused before anything is posted, so the
            // session is not locked to its client key.
            (ckms(&tampered), ckms(&good))
        });
    let c = &b.console;
    for want in ["tdx: #VE self-test ok", "platform: tdx", "ckms: ready ip="] {
        assert!(c.contains(want), "console lacks {want:?}:\n{c}");
    }
    for refusal in ["KMS: the bootstrap core", "KMS: cannot start"] {
        assert!(!c.contains(refusal), "the KMS refused to start:\n{c}");
    }
    assert_eq!(b.status, None, "QEMU exited:\n{c}");
    let text = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    assert!(!refused.status.success(), "tampered manifest accepted");
    assert!(
        text(&refused).contains("TDX RTMR2 differs from the expected one"),
        "{}",
        text(&refused)
    );
    assert!(
        accepted.status.success(),
        "ckms failed:\n{}",
        text(&accepted)
    );
    let out = text(&accepted);
    for want in [
        "bootstrap certificate attested (measurement MRTD 1111",
        "fresh /attestation verified (nonce bound, same key)",
    ] {
        assert!(out.contains(want), "ckms output lacks {want:?}:\n{out}");
    }
    let csr = fs::read_to_string(dir.join("kms.csr")).expect("CSR written");
    assert!(
        csr.starts_with("-----BEGIN CERTIFICATE REQUEST-----"),
        "{csr}"
    );
}
