//! The loopback-TDX kernel build (`emulated-attestation,loopback-tdx`) under QEMU TCG, with
//! `tdx-emu` on COM2 (kernel/README.md, "The loopback-TDX build"):
//!
//! - `attest_boot_gives_a_verifiable_tdx_quote`: the kernel establishes its TDX backend with
//!   the stub (TDG.VP.INFO), passes the #VE self-test through the real IDT gate, brings the
//!   network up with every DMA page converted by MapGPA (the stub asserts each virtio address is
//!   in a shared page) and every virtio register access a TDVMCALL<#VE.RequestMMIO> (the stub
//!   asserts it is a shared GPA inside a device window), passes the MMIO #VE self-test (real
//!   `mov`s decoded and completed by TDVMCALL), then `ckms.test=attest` obtains TDREPORT (TDG.MR.REPORT → tdx-emu
//!   `TD_REPORT`) and a quote (GetQuote in a shared pool buffer → tdx-emu `GET_QUOTE`). The quote
//!   must verify against tdx-emu's root (`attest::tdx::local::verify_quote_signatures`) and carry
//!   our REPORTDATA, the emulator's RTMR1/RTMR2 of this kernel and command line, and
//!   SEPT_VE_DISABLE without DEBUG.
//! - `tdx_kms_in_the_image`: the KMS-in-image suite on one boot of the loopback-TDX image
//!   (`image::run::Vm` with `tdx-emu`): `ckms bootstrap start` refuses, before posting anything,
//!   a manifest with another command line (RTMR2) and one with another kernel (RTMR1), then
//!   attests the image with TDX evidence against tdx-emu's root (`--trust-root`) and its own
//!   manifest (MRTD; RTMR1/RTMR2 recomputed by ckms from `kms.efi` and the command line),
//!   provisions it (CA-signed API certificate, Redis on 127.0.0.1 through QEMU's guestfwd,
//!   `/redis-findex`, client CA, `/start`); `ckms verify` passes with that manifest and fails
//!   with the other two, naming the RTMR; a user creates a key and encrypts/decrypts with it.
//!   Both ckms runs replay the CC event log the kernel ships with `/attestation` (here the log
//!   tdx-emu synthesises, fetched by the stub: plain OVMF writes no CCEL) against the quote's
//!   RTMRs and the manifest's kms.efi and command line.
//!
//! Slow (a kernel build and two TCG boots): `--features vm-tests`. Needs
//! `cargo build -p tdx-emu -p ckms -p image` first, `redis-server`, `openssl` and
//! `qemu-system-x86_64` with `/usr/share/ovmf/OVMF.fd`.
#![cfg(feature = "vm-tests")]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use image::build::{self, BuildOptions};
use image::run::{RunOptions, Vm};
use testkit::{ChildGuard, RedisServer, workspace_bin};

mod support;
use support::{provision, sym_round_trip, text, verify};

const BOOT_TIMEOUT: Duration = Duration::from_secs(300);

fn repo() -> PathBuf {
    build::find_repo(Path::new(env!("CARGO_MANIFEST_DIR"))).expect("repository root")
}

/// MRTD of the stand-in firmware, when the pinned IntelTdx OVMF is not built (QEMU then boots
/// plain OVMF and the manifest's MRTD is this value).
const STAND_IN_MRTD: [u8; 48] = [0x11; 48];

/// Set to `1` (scripts/test does) to fail instead of falling back to the stand-in when the
/// pinned IntelTdx OVMF is not in `target/ovmf/IntelTdx`.
const REQUIRE_TDVF: &str = "CKMS_REQUIRE_TDVF";

/// The pinned IntelTdx OVMF (`ovmf-config/build-inteltdx.sh` builds it into
/// `target/ovmf/IntelTdx/OVMF.fd`), when it is there with the pinned SHA-256.
fn tdvf() -> Option<&'static Path> {
    static F: OnceLock<Option<PathBuf>> = OnceLock::new();
    F.get_or_init(|| {
        use sha2::Digest;
        let root = repo();
        let pin = fs::read_to_string(root.join("ovmf-config/inteltdx-ovmf.sha256")).expect("pin");
        let pinned = pin.split_whitespace().next().expect("pinned sha256");
        let path = root.join("target/ovmf/IntelTdx/OVMF.fd");
        let found = fs::read(&path)
            .ok()
            .filter(|b| hex::encode(sha2::Sha256::digest(b)) == pinned);
        match found {
            Some(_) => eprintln!(
                "loopback-tdx firmware: the pinned IntelTdx OVMF {} (sha256 {pinned}): QEMU boots \
                 it, image build and tdx-emu compute MRTD from it",
                path.display()
            ),
            None => {
                assert!(
                    std::env::var(REQUIRE_TDVF).as_deref() != Ok("1"),
                    "{REQUIRE_TDVF}=1 but {} is absent or not the pinned {pinned} \
                     (ovmf-config/build-inteltdx.sh)",
                    path.display()
                );
                eprintln!(
                    "loopback-tdx firmware: STAND-IN: {} absent or not the pinned {pinned} \
                     (ovmf-config/build-inteltdx.sh); QEMU boots plain OVMF {}, MRTD {}",
                    path.display(),
                    image::run::DEFAULT_BIOS,
                    hex::encode(STAND_IN_MRTD)
                );
            }
        }
        found.map(|_| path)
    })
    .as_deref()
}

/// The MRTD tdx-emu reports and the manifest holds: the pinned TDVF's (computed here from the
/// file, as `image build` and tdx-emu do), or the stand-in.
fn mrtd() -> [u8; 48] {
    match tdvf() {
        Some(fw) => {
            attest::measure::tdx::mrtd(&fs::read(fw).expect("read TDVF")).expect("TDVF MRTD")
        }
        None => STAND_IN_MRTD,
    }
}

/// The loopback-TDX image, built once: its directory and build options.
struct Image {
    dir: PathBuf,
    opts: BuildOptions,
}

fn image_build() -> &'static Image {
    static I: OnceLock<Image> = OnceLock::new();
    I.get_or_init(|| {
        let mut opts = BuildOptions::dev(repo());
        opts.kernel_features = vec!["emulated-attestation".into(), "loopback-tdx".into()];
        opts.cargo_target_dir =
            Some(Path::new(env!("CARGO_TARGET_TMPDIR")).join("loopback-tdx-kernel-target"));
        opts.out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("loopback-tdx-image");
        opts.tdx_firmware = tdvf().map(Path::to_path_buf);
        let _ = fs::remove_dir_all(&opts.out_dir);
        let t = Instant::now();
        let built = build::build(&opts).unwrap_or_else(|e| panic!("image build: {e}"));
        eprintln!(
            "loopback-tdx image build: {:.0} s",
            t.elapsed().as_secs_f64()
        );
        let bytes = fs::read(&built.kernel).expect("read kernel");
        // The binary carries the stub's marker, which `image build` ties to the feature.
        build::check_stub(&bytes, &opts.kernel_features).expect("stub matches the features");
        add_tdx_section(&opts.out_dir);
        Image {
            dir: opts.out_dir.clone(),
            opts,
        }
    })
}

/// The loopback-TDX kernel.
fn kernel() -> &'static Path {
    static K: OnceLock<PathBuf> = OnceLock::new();
    K.get_or_init(|| image_build().dir.join(build::KERNEL_FILE))
}

/// With the pinned TDVF, checks the `tdx` section `image build --tdx-firmware` wrote in `dir`
/// (MRTD of that file). Without it, gives the manifest the section `image build --tdx-firmware`
/// would write, with [`STAND_IN_MRTD`] standing for the TDVF's: RTMR1 of its kernel, RTMR2 of its
/// command line.
fn add_tdx_section(dir: &Path) {
    use image::manifest::{Manifest, TdxFirmwareInfo, TdxInfo};
    use sha2::Digest;
    let path = dir.join(build::MANIFEST_FILE);
    let mut m = Manifest::from_json(&fs::read_to_string(&path).expect("manifest")).expect("parse");
    if tdvf().is_some() {
        let tdx = m
            .tdx
            .as_ref()
            .expect("image build --tdx-firmware wrote a tdx section");
        assert_eq!(tdx.mrtd, hex::encode(mrtd()), "manifest MRTD");
        assert_eq!(tdx.firmware.name, build::TDX_FIRMWARE_FILE);
        return;
    }
    let kernel = fs::read(dir.join(&m.kernel.file)).expect("kernel");
    let rtmr1 = attest::measure::tdx::rtmr1_direct_boot(&kernel).expect("RTMR1");
    m.tdx = Some(TdxInfo {
        firmware: TdxFirmwareInfo {
            name: "none (loopback-TDX: MRTD stand-in)".into(),
            sha256: hex::encode(sha2::Sha256::digest(STAND_IN_MRTD)),
        },
        mrtd: hex::encode(STAND_IN_MRTD),
        rtmr1: hex::encode(rtmr1),
        rtmr2: hex::encode(attest::measure::tdx::rtmr2_cmdline(&m.cmdline)),
    });
    fs::write(&path, m.to_json()).expect("write manifest");
}

struct Boot {
    console: String,
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
    let _one = support::vm_lock();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("loopback-tdx-{name}"));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("mkdir");
    let socket = dir.join("tdx.sock");
    let emu_out = dir.join("tdx-emu.out");
    let kernel = kernel();
    let mut emu = Command::new(workspace_bin("tdx-emu"));
    emu.arg("serve").arg("--socket").arg(&socket);
    // tdx-emu computes MRTD from the firmware QEMU boots (or is given the stand-in).
    let bios = match tdvf() {
        Some(fw) => {
            emu.arg("--firmware").arg(fw);
            fw
        }
        None => {
            emu.arg("--mrtd").arg(hex::encode(STAND_IN_MRTD));
            Path::new(image::run::DEFAULT_BIOS)
        }
    };
    let _emu = ChildGuard::spawn(
        emu.arg("--kernel")
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
    // Guest RAM in a file mapped twice: at 0 and at the shared bit (image::run::tdx_alias_args).
    let ram_file = dir.join("guest-ram");
    let layout = image::run::tdx_alias_args("max", "128M", &ram_file).expect("alias layout");
    let mut qemu = ChildGuard::spawn(
        Command::new("qemu-system-x86_64")
            .args(&layout)
            .args(["-smp", "1"])
            .arg("-bios")
            .arg(bios)
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
    loop {
        let text = fs::read_to_string(&console).unwrap_or_default();
        if until.is_some_and(|u| text.contains(u)) {
            break;
        }
        if let Ok(Some(_)) = qemu.try_wait() {
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
    drop(qemu);
    let _ = fs::remove_file(&ram_file);
    (
        Boot {
            console: fs::read_to_string(&console).unwrap_or_default(),
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
        // The page tables run the production rule: shared memory is mapped with bit 47 ...
        "paging: tdx shared bit 0x800000000000",
        // ... and under this QEMU layout bit 47 selects a real alias of the same frames.
        "tdx: shared alias ok: pool page ",
        // EPT-violation #VEs on virtio's common configuration: the store and the load are
        // decoded (3- or 2-byte `mov`s), done by TDVMCALL<#VE.RequestMMIO> on the device, and
        // the load equals the HAL's read (explicit TDVMCALL).
        "tdx: MMIO #VE self-test ok: store rip+",
        "platform: tdx",
        "ckms: ready ip=",
        "ckms: attest derived-key=none",
    ] {
        assert!(c.contains(want), "console lacks {want:?}:\n{c}");
    }
    // The alias check's pool page: its entry carries the shared bit, and a byte written through
    // it was read back through the private view of the same frame (and the other way round).
    let alias = c
        .lines()
        .find_map(|l| l.split("tdx: shared alias ok: ").nth(1))
        .unwrap_or_else(|| panic!("no shared alias line:\n{c}"));
    let pte = alias
        .split_whitespace()
        .skip_while(|w| *w != "pte")
        .nth(1)
        .and_then(|v| u64::from_str_radix(v.trim_start_matches("0x"), 16).ok())
        .unwrap_or_else(|| panic!("no pte in {alias:?}"));
    assert_ne!(
        pte & (1 << 47),
        0,
        "pool page entry {pte:#x} lacks the shared bit"
    );
    for want in [
        "0xa5 written through the shared mapping read back 0xa5 through the private view",
        "0x3c written there read back 0x3c through the shared mapping",
    ] {
        assert!(alias.contains(want), "{want:?} not in {alias:?}");
    }
    // Every virtio register access of the bring-up went through TDVMCALL<#VE.RequestMMIO>.
    let mmio_calls: u64 = c
        .lines()
        .find_map(|l| l.split("tdx: tdcalls after virtio-net bring-up: ").nth(1))
        .and_then(|l| l.split(", ").find_map(|f| f.strip_suffix(" mmio")))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no MMIO TDVMCALL count on the console:\n{c}"));
    assert!(mmio_calls > 10, "{mmio_calls} MMIO TDVMCALLs:\n{c}");
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
    assert_eq!(body.mr_td, mrtd(), "MRTD");
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

/// A variant of the image in `out` (its own manifest with a `tdx` section): `opts` with
/// `kernel` (the original's unless given).
fn variant(name: &str, opts: &BuildOptions, kernel: Option<&[u8]>) -> PathBuf {
    let img = image_build();
    let mut opts = opts.clone();
    opts.out_dir = img.dir.with_file_name(format!("loopback-tdx-image-{name}"));
    let _ = fs::remove_dir_all(&opts.out_dir);
    let original = img.dir.join(build::KERNEL_FILE);
    let kernel_path = match kernel {
        Some(bytes) => {
            let p = opts.out_dir.with_extension("efi");
            fs::write(&p, bytes).expect("write kernel");
            p
        }
        None => original,
    };
    build::write_image(&opts, &kernel_path).unwrap_or_else(|e| panic!("variant image: {e}"));
    if opts.tdx_firmware == img.opts.tdx_firmware {
        add_tdx_section(&opts.out_dir);
    }
    opts.out_dir.join(build::MANIFEST_FILE)
}

#[test]
fn tdx_kms_in_the_image() {
    let img = image_build();
    let manifest = img.dir.join(build::MANIFEST_FILE);
    // Another command line (one more, valid item) and another kernel (trailing bytes after the
    // PE image: the loader ignores them, the Authenticode hash covers them).
    let mut cmdline_opts = img.opts.clone();
    cmdline_opts.cmdline = format!("{} ckms.ratls_port=9999", img.opts.cmdline);
    let other_cmdline = variant("cmdline", &cmdline_opts, None);
    let mut k = fs::read(kernel()).expect("kernel");
    k.extend_from_slice(&[0x5a; 512]);
    let other_kernel = variant("kernel", &img.opts, Some(&k));
    // Another TDVF (the pinned one with one byte of its boot firmware volume, an MR.EXTEND
    // section, changed): its MRTD differs. Only with the pinned TDVF (the stand-in has no file).
    let mut refused = vec![(other_cmdline, "RTMR2"), (other_kernel, "RTMR1")];
    if let Some(fw) = tdvf() {
        let mut bytes = fs::read(fw).expect("TDVF");
        let at = bytes.len() - 0x1000;
        bytes[at] ^= 0x01;
        let other_mrtd = attest::measure::tdx::mrtd(&bytes).expect("MRTD");
        assert_ne!(other_mrtd, mrtd(), "the changed byte is not measured");
        let path = img.dir.with_file_name("loopback-tdx-other-tdvf.fd");
        fs::write(&path, &bytes).expect("write TDVF");
        let mut fw_opts = img.opts.clone();
        fw_opts.tdx_firmware = Some(path);
        refused.push((variant("firmware", &fw_opts, None), "MRTD"));
    }

    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("loopback-tdx-kms");
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work).expect("mkdir");
    support::pki(&work);
    support::run(
        Command::new(workspace_bin("tdx-emu"))
            .arg("export-chain")
            .arg(work.join("chain")),
    );
    let root = work.join("chain/root.pem");

    let _one = support::vm_lock();
    let redis = RedisServer::start();
    let mut opts = RunOptions::new(&img.dir);
    opts.tdx_emu = Some(workspace_bin("tdx-emu"));
    opts.cpu = Some("max".into());
    opts.redis_port = Some(redis.port());
    opts.redis_relay = Some(workspace_bin("image"));
    opts.ratls_port = Some(0);
    let t = Instant::now();
    let mut vm = Vm::start(&opts).unwrap_or_else(|e| panic!("{e}"));
    let ready = vm
        .wait_ready(BOOT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "loopback-tdx boot-to-ready under TCG: {:.1} s ({ready}); firmware: {}",
        t.elapsed().as_secs_f64(),
        vm.boot()
    );
    // The runner boots the TDVF the manifest names (and tdx-emu measures that file).
    assert_eq!(
        matches!(vm.boot(), image::run::Boot::Tdvf { .. }),
        tdvf().is_some(),
        "{}",
        vm.boot()
    );
    let checks = Instant::now();
    let bootstrap = |m: &Path| {
        Command::new(workspace_bin("ckms"))
            .current_dir(&work)
            .env_remove("CKMS_CONF")
            .args(["--url", &format!("https://{}", vm.addr())])
            .args(["bootstrap", "start", "--manifest"])
            .arg(m)
            .arg("--trust-root")
            .arg(&root)
            .args(["--subject", "CN=kms.test", "--csr-out", "refused.csr"])
            .output()
            .expect("run ckms")
    };
    // Refused before anything is posted (the session is not locked to a client key).
    for (m, rtmr) in &refused {
        let out = bootstrap(m);
        let msg = text(&out);
        assert!(!out.status.success(), "{} accepted:\n{msg}", m.display());
        assert!(
            msg.contains(&format!("TDX {rtmr} differs from the expected one")),
            "{msg}"
        );
    }
    assert!(!work.join("refused.csr").exists());

    let out = provision(&vm, &work, &manifest, &root);
    let attested = format!(
        "bootstrap certificate attested (measurement MRTD {}",
        hex::encode(&mrtd()[..4])
    );
    for want in [
        attested.as_str(),
        "fresh /attestation verified (nonce bound, same key)",
        // The kernel shipped the CC event log (here tdx-emu's synthesised one, asked by the
        // stub: plain OVMF writes no CCEL) and ckms replayed it against the quote and the
        // manifest's kms.efi and command line.
        "CC event log replayed: 6 events give the quote's RTMR0-3; it records the kernel load \
         (Authenticode SHA-384 of the manifest's kms.efi) and the manifest's command line",
    ] {
        assert!(out.contains(want), "ckms output lacks {want:?}:\n{out}");
    }
    let console = vm.console_lines().join("\n");
    for want in [
        "LOOPBACK-TDX TEST BUILD: TDCALL is stubbed",
        "tdx: #VE self-test ok",
        "tdx: MMIO #VE self-test ok",
        "platform: tdx",
        "tdx: CC event log: no firmware CCEL (no ACPI CCEL table); the loopback stub's synthesised log",
        "ckms: kms started",
    ] {
        assert!(console.contains(want), "console lacks {want:?}:\n{console}");
    }

    let ok = verify(&vm, &work, &manifest, &root);
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(text(&ok).contains("CC event log replayed"), "{}", text(&ok));
    for (m, rtmr) in &refused {
        let out = verify(&vm, &work, m, &root);
        let msg = text(&out);
        assert!(
            !out.status.success(),
            "verify passed with {}:\n{msg}",
            m.display()
        );
        assert!(
            msg.contains(&format!("TDX {rtmr} differs from the expected one")),
            "{msg}"
        );
    }

    let uid = sym_round_trip(&vm, &work, "tdx", b"a TD keeps secrets");
    let located = support::ok(support::ckms(&vm, &work, &["locate", "--tag", "tdx"]));
    assert!(located.contains(&uid), "{located}");
    assert!(vm.is_running(), "the VM stopped");
    eprintln!(
        "loopback-tdx provisioning, verify and KMIP checks: {:.1} s",
        checks.elapsed().as_secs_f64()
    );
    vm.stop();
}
