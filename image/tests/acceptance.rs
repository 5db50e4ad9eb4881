//! Acceptance tests of the image (issue 6): reproducible build, boot under QEMU TCG in 128 MiB, DHCP, a TCP
//! echo service moving 100 MiB each way through the host forward, an emulated attestation report whose
//! measurement is the manifest's, a changed command line changing the measurement, and a malformed command
//! line stopping the boot. With the real AmdSevX64 OVMF (`ovmf-config/build-amdsev.sh`, cached): the image boots
//! it with the injected kernel-hashes table and attests the digest computed over that whole firmware, and a
//! kernel with one byte flipped is refused by OVMF (no ready line within a bounded wait).
//!
//! Slow (two kernel builds, six boots, and the OVMF build on first use): compiled only with `--features
//! vm-tests`; `scripts/test` runs `cargo build --workspace --bins` first (for `snp-emu` and `ckms`), then this
//! file. One VM runs at a time.
//! The numbers (boot-to-ready time, throughput) are printed on stderr (`--nocapture` shows them).

use std::fs;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use attest::snp::report::AttestationReport;
use image::build::{self, BuildOptions, DEV_CMDLINE, KERNEL_FILE, MANIFEST_FILE, MAX_IMAGE_SIZE};
use image::manifest::{Manifest, ManifestInputs};
use image::run::{RunOptions, Vm};
use sha2::{Digest, Sha512};

/// How long a boot may take to reach the ready line under TCG (generous: CI shares two cores).
const BOOT_TIMEOUT: Duration = Duration::from_secs(240);
/// Bytes moved each way through the echo service.
const ECHO_BYTES: usize = 100 << 20;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("image/ has a parent")
        .to_path_buf()
}

/// The report_data the attest self-test asks for: SHA-512 of a fixed label.
fn chosen_report_data() -> [u8; 64] {
    Sha512::digest(b"ckms image acceptance test").into()
}

/// The command line the test image is built (and measured) with.
fn attest_cmdline() -> String {
    format!(
        "{DEV_CMDLINE} ckms.test=attest ckms.test_report_data={}",
        hex::encode(chosen_report_data())
    )
}

fn echo_cmdline() -> String {
    format!("{DEV_CMDLINE} ckms.test=echo")
}

/// Copies the working tree (without build outputs and git metadata).
fn copy_tree(src: &Path, dst: &Path) -> io::Result<()> {
    fs::create_dir_all(dst)?;
    for entry in fs::read_dir(src)? {
        let entry = entry?;
        let name = entry.file_name();
        if matches!(name.to_str(), Some("target" | ".git" | ".tmp")) {
            continue;
        }
        let ty = entry.file_type()?;
        let to = dst.join(&name);
        if ty.is_dir() {
            copy_tree(&entry.path(), &to)?;
        } else if ty.is_file() {
            fs::copy(entry.path(), &to)?;
        }
    }
    Ok(())
}

struct Images {
    a: PathBuf,
    b: PathBuf,
}

/// Builds the image twice, from two copies of the tree in two different directories (each with its own
/// kernel target directory). Done once per test run.
fn images() -> &'static Images {
    // A failed build is remembered, so the other tests fail at once instead of building again.
    static IMAGES: OnceLock<Result<Images, String>> = OnceLock::new();
    let result = IMAGES.get_or_init(|| {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("image-acceptance");
        // One snapshot of the working tree, copied again into a second directory: both builds see the same
        // sources even if the tree changes meanwhile.
        let (a, b) = (base.join("a"), base.join("b-other-dir"));
        for d in [&a, &b] {
            let _ = fs::remove_dir_all(d.join("src"));
        }
        copy_tree(&repo(), &a.join("src")).map_err(|e| format!("copy source tree: {e}"))?;
        copy_tree(&a.join("src"), &b.join("src")).map_err(|e| format!("copy source tree: {e}"))?;
        let build_in = |dir: &Path| -> Result<PathBuf, String> {
            let src = dir.join("src");
            let mut opts = BuildOptions::dev(&src);
            opts.out_dir = dir.join("out");
            opts.cmdline = attest_cmdline();
            opts.cargo_target_dir = Some(dir.join("kernel-target"));
            let t = Instant::now();
            let built = build::build(&opts)
                .map_err(|e| format!("image build in {}: {e}", src.display()))?;
            eprintln!(
                "image build in {}: {:.0} s, {} bytes",
                dir.display(),
                t.elapsed().as_secs_f64(),
                built.manifest.kernel.size
            );
            Ok(opts.out_dir)
        };
        Ok(Images {
            a: build_in(&a)?,
            b: build_in(&b)?,
        })
    });
    match result {
        Ok(images) => images,
        Err(e) => panic!("{e}"),
    }
}

fn vm_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A sibling binary of the workspace (built by `cargo build --workspace --bins`).
fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/acceptance-<hash> -> target/<profile>/<name>
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join(name);
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build --workspace --bins` first",
        bin.display()
    );
    bin
}

fn run_options(image_dir: &Path, cmdline: Option<String>) -> RunOptions {
    let mut opts = RunOptions::new(image_dir);
    opts.cmdline = cmdline;
    opts.memory = "128M".into();
    opts.snp_emu = Some(workspace_bin("snp-emu"));
    opts
}

fn manifest(dir: &Path) -> Manifest {
    Manifest::from_json(&fs::read_to_string(dir.join(MANIFEST_FILE)).expect("read manifest"))
        .expect("parse manifest")
}

/// Waits for the `ckms: attest report=<hex>` line and parses the report.
fn attest_report(vm: &mut Vm) -> (Vec<u8>, AttestationReport) {
    let line = vm
        .wait_for_line("the attestation report", Duration::from_secs(120), |l| {
            l.starts_with("ckms: attest ")
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let hex_report = line
        .strip_prefix("ckms: attest report=")
        .unwrap_or_else(|| panic!("guest could not get a report: {line}"));
    let bytes = hex::decode(hex_report.trim()).expect("report hex");
    let report = AttestationReport::parse(&bytes).expect("parse report");
    (bytes, report)
}

#[test]
fn build_is_reproducible_and_within_limits() {
    let imgs = images();
    for file in [KERNEL_FILE, MANIFEST_FILE] {
        let a = fs::read(imgs.a.join(file)).expect("read a");
        let b = fs::read(imgs.b.join(file)).expect("read b");
        assert!(
            a == b,
            "{file} differs between two builds in different directories"
        );
    }
    let m = manifest(&imgs.a);
    let kernel = fs::read(imgs.a.join(KERNEL_FILE)).expect("read kernel");
    assert!(
        kernel.len() as u64 <= MAX_IMAGE_SIZE,
        "image is {} bytes",
        kernel.len()
    );
    assert_eq!(m.kernel.size, kernel.len() as u64);
    // The production image carries no loopback stub, GHCB or TDX (the build checks it too).
    for (feature, marker) in image::build::LOOPBACK_STUBS {
        assert!(!m.kernel_features.iter().any(|f| f == feature), "{feature}");
        assert!(
            !kernel.windows(marker.len()).any(|w| w == marker),
            "the production kernel contains the {feature} stub"
        );
    }
    assert_eq!(m.kernel.sha256, image::manifest::sha256_hex(&kernel));
    assert_eq!(m.cmdline, attest_cmdline());
    assert_eq!(m.firmware.name, "amdsev-suffix.bin");
    assert_eq!(
        m.firmware.sha256,
        "8f765dfabc127fc0a938a0744a3103ec15864d7d794eb4c398aa976b6d6ab16c"
    );
    eprintln!(
        "image: {} bytes, launch digest {}",
        kernel.len(),
        m.snp.launch_digest
    );
}

#[test]
fn boots_with_dhcp_and_attests_its_own_measurement() {
    let imgs = images();
    let _vm = vm_lock();
    let m = manifest(&imgs.a);
    let t0 = Instant::now();
    let mut vm = Vm::start(&run_options(&imgs.a, None)).unwrap_or_else(|e| panic!("{e}"));
    let ready = vm
        .wait_ready(BOOT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "boot-to-ready under TCG: {:.1} s ({ready})",
        t0.elapsed().as_secs_f64()
    );
    assert!(ready.contains("ip=10.0.2.15"), "{ready}");
    let lines = vm.console_lines();
    let dhcp = lines.iter().find(|l| l.contains("net: 10.0.2.15/24 (dhcp"));
    assert!(
        dhcp.is_some(),
        "no DHCP address line in the console:\n{}",
        lines.join("\n")
    );

    let (bytes, report) = attest_report(&mut vm);
    assert_eq!(
        report.report_data,
        chosen_report_data(),
        "report_data is not the one the guest chose"
    );
    assert_eq!(
        hex::encode(report.measurement),
        m.snp.launch_digest,
        "measurement differs from the manifest"
    );

    // The host verifies it with the CLI, against the manifest's digest and the emulator's test chain.
    let dir = tempfile::tempdir().expect("tempdir");
    let report_path = dir.path().join("report.bin");
    fs::write(&report_path, &bytes).expect("write report");
    let chain = dir.path().join("chain");
    let export = Command::new(workspace_bin("snp-emu"))
        .arg("export-chain")
        .arg(&chain)
        .output()
        .expect("snp-emu");
    assert!(
        export.status.success(),
        "snp-emu export-chain: {}",
        String::from_utf8_lossy(&export.stderr)
    );
    let out = Command::new(workspace_bin("ckms"))
        .args(["attestation", "verify-report", "--report"])
        .arg(&report_path)
        .arg("--vcek")
        .arg(chain.join("vcek.der"))
        .arg("--chain")
        .arg(chain.join("cert_chain"))
        .arg("--trust-root")
        .arg(chain.join("ark.pem"))
        .args(["--expected-measurement", &m.snp.launch_digest])
        .args(["--report-data", &hex::encode(chosen_report_data())])
        .output()
        .expect("run ckms");
    assert!(
        out.status.success(),
        "ckms attestation verify-report failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn changed_command_line_changes_the_measurement() {
    let imgs = images();
    let _vm = vm_lock();
    let m = manifest(&imgs.a);
    let changed = format!("{} ckms.log=debug", m.cmdline);
    let mut vm =
        Vm::start(&run_options(&imgs.a, Some(changed.clone()))).unwrap_or_else(|e| panic!("{e}"));
    vm.wait_ready(BOOT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    let (_, report) = attest_report(&mut vm);
    let measured = hex::encode(report.measurement);
    assert_ne!(
        measured, m.snp.launch_digest,
        "a changed command line kept the manifest's measurement"
    );
    // ... and it is exactly the digest of the changed launch.
    let kernel = fs::read(imgs.a.join(KERNEL_FILE)).expect("kernel");
    let firmware = fs::read(imgs.a.join(&m.firmware.name)).expect("firmware");
    let expected = Manifest::compute(&ManifestInputs {
        kernel_file: KERNEL_FILE,
        kernel: &kernel,
        kernel_features: &m.kernel_features,
        firmware_name: &m.firmware.name,
        firmware: &firmware,
        cmdline: &changed,
        vcpus: m.vcpus,
        vcpu_type: &m.vcpu_type,
        guest_policy: m.guest_policy_u64().expect("policy"),
        guest_features: m.guest_features_u64().expect("features"),
        tdx_firmware: None,
    })
    .expect("compute");
    assert_eq!(measured, expected.snp.launch_digest);
}

#[test]
fn malformed_command_line_stops_the_boot() {
    let imgs = images();
    let _vm = vm_lock();
    let bad = format!("{DEV_CMDLINE} ckms.bogus=1");
    let mut vm = Vm::start(&run_options(&imgs.a, Some(bad))).unwrap_or_else(|e| panic!("{e}"));
    let line = vm
        .wait_for_line("the refusal", BOOT_TIMEOUT, |l| {
            l.starts_with("ckms: boot stopped:") || l.starts_with("ckms: ready")
        })
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        line.starts_with("ckms: boot stopped:") && line.contains("ckms.bogus=1"),
        "{line}"
    );
    let status = vm
        .wait_exit(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!status.success(), "QEMU exit status {status}");
}

/// The #VC handler on synthetic frames whose RIP points at real `in`/`cpuid`/`rdmsr`
/// instructions (TCG raises no #VC): RIP advance, registers, nesting guard, refusals.
#[test]
fn vc_handler_emulates_real_instructions_and_refuses_nesting() {
    let imgs = images();
    let _vm = vm_lock();
    let cmdline = format!("{DEV_CMDLINE} ckms.test=vc");
    let mut vm = Vm::start(&run_options(&imgs.a, Some(cmdline))).unwrap_or_else(|e| panic!("{e}"));
    let line = vm
        .wait_for_line("the vc self-test", BOOT_TIMEOUT, |l| {
            l.starts_with("ckms: test vc") || l.starts_with("ckms: boot stopped:")
        })
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        line,
        "ckms: test vc ok in-rip+1 cpuid-rip+2 rdmsr-rip+2 nested=refused mismatch=refused mmio=refused npf-outside-windows=refused"
    );
}

/// The xorshift64 stream both sides of the echo test generate.
struct Pattern(u64);
impl Pattern {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            let bytes = self.0.to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

#[test]
fn echo_service_moves_100_mib_each_way() {
    let imgs = images();
    let _vm = vm_lock();
    let mut vm =
        Vm::start(&run_options(&imgs.a, Some(echo_cmdline()))).unwrap_or_else(|e| panic!("{e}"));
    vm.wait_ready(BOOT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    let stream = TcpStream::connect(vm.addr()).expect("connect through hostfwd");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let mut writer = stream.try_clone().expect("clone");
    let t = Instant::now();
    let sender = thread::spawn(move || {
        let mut pattern = Pattern(0x9e37_79b9_7f4a_7c15);
        let mut buf = vec![0u8; 64 * 1024];
        let mut left = ECHO_BYTES;
        while left > 0 {
            let n = left.min(buf.len()) & !7;
            pattern.fill(&mut buf[..n]);
            writer.write_all(&buf[..n]).expect("send");
            left -= n;
        }
        writer.shutdown(Shutdown::Write).expect("shutdown");
    });
    let mut reader = stream;
    let mut expect = Pattern(0x9e37_79b9_7f4a_7c15);
    let mut got = vec![0u8; 64 * 1024];
    let mut want = vec![0u8; 64 * 1024];
    let mut pending = 0usize; // bytes of `want` generated but not yet compared
    let mut offset = 0usize;
    let mut received = 0usize;
    while received < ECHO_BYTES {
        let n = reader.read(&mut got).expect("receive");
        assert!(n > 0, "echo closed after {received} bytes");
        // Compare against the same stream, generated in 8-byte-aligned blocks.
        let mut i = 0;
        while i < n {
            if pending == 0 {
                let block = (ECHO_BYTES - received - i).min(want.len()) & !7;
                expect.fill(&mut want[..block]);
                pending = block;
                offset = 0;
            }
            let take = pending.min(n - i);
            assert!(
                got[i..i + take] == want[offset..offset + take],
                "echo corrupted at byte {}",
                received + i
            );
            i += take;
            offset += take;
            pending -= take;
        }
        received += n;
    }
    sender.join().expect("sender");
    let secs = t.elapsed().as_secs_f64();
    let mib = (ECHO_BYTES >> 20) as f64;
    eprintln!(
        "echo: {mib} MiB each way in {secs:.1} s = {:.1} MiB/s each way",
        mib / secs
    );
    // After our FIN the guest closes too.
    let mut rest = [0u8; 1];
    assert_eq!(reader.read(&mut rest).expect("eof"), 0);
}

// ---------------------------------------------------------------------------------------------------------
// The real AmdSevX64 firmware (ovmf-config/build-amdsev.sh): measured *and* booted, with the kernel-hashes
// table injected as QEMU writes it on SNP hardware, so OVMF checks kernel and command line under TCG.

/// How long a boot with a tampered kernel is watched for a ready line. A good boot reaches it in well under
/// this (see image/README.md); the tampered one never does (OVMF dead-loops), so this only bounds the wait.
const TAMPERED_WAIT: Duration = Duration::from_secs(60);

/// The AmdSevX64 `OVMF.fd`: built once by `ovmf-config/build-amdsev.sh` into `target/ovmf/AmdSev` (about 4 min
/// on 2 cores, with apt and a 30 MB download), reused when it has the pinned SHA-256.
fn amdsev_firmware() -> &'static Path {
    static FW: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let result = FW.get_or_init(|| {
        let t = Instant::now();
        let out = Command::new("bash")
            .arg(repo().join("ovmf-config/build-amdsev.sh"))
            .stderr(std::process::Stdio::inherit())
            .output()
            .map_err(|e| format!("running ovmf-config/build-amdsev.sh: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "ovmf-config/build-amdsev.sh failed ({})",
                out.status
            ));
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let path = stdout
            .lines()
            .last()
            .map(|l| PathBuf::from(l.trim()))
            .ok_or("build-amdsev.sh printed no path")?;
        eprintln!(
            "AmdSev firmware: {} ({:.0} s, cached or built)",
            path.display(),
            t.elapsed().as_secs_f64()
        );
        Ok(path)
    });
    match result {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

/// The test image (same kernel as [`images`], same command line) with its manifest computed over the whole
/// AmdSev firmware.
fn amdsev_image() -> &'static Path {
    static IMG: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let result = IMG.get_or_init(|| {
        let imgs = images();
        let fw = amdsev_firmware();
        let mut opts = BuildOptions::dev(repo());
        opts.out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("image-acceptance/amdsev");
        opts.cmdline = attest_cmdline();
        opts.firmware = build::Firmware::File(fw.to_path_buf());
        build::write_image(&opts, &imgs.a.join(KERNEL_FILE))
            .map_err(|e| format!("image with the AmdSev firmware: {e}"))?;
        Ok(opts.out_dir)
    });
    match result {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn amdsev_ovmf_boots_and_attests_exactly_what_booted() {
    let dir = amdsev_image();
    let _vm = vm_lock();
    let m = manifest(dir);
    let pinned = fs::read_to_string(repo().join("ovmf-config/amdsev-ovmf.sha256")).expect("pin");
    assert_eq!(m.firmware.name, "OVMF.fd");
    assert_eq!(m.firmware.kind, image::firmware::KIND_OVMF);
    assert_eq!(
        Some(m.firmware.sha256.as_str()),
        pinned.split_whitespace().next()
    );
    // Computed over the whole 4 MiB firmware: not the descriptor's digest.
    assert_eq!(
        fs::metadata(dir.join("OVMF.fd")).expect("fw").len(),
        4 << 20
    );
    assert_ne!(m.snp.launch_digest, manifest(&images().a).snp.launch_digest);

    let t0 = Instant::now();
    let mut vm = Vm::start(&run_options(dir, None)).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        matches!(
            vm.boot(),
            image::run::Boot::AmdSev {
                table_gpa: 0x810c00,
                ..
            }
        ),
        "{}",
        vm.boot()
    );
    let ready = vm
        .wait_ready(BOOT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "boot-to-ready under TCG with AmdSevX64 OVMF: {:.1} s ({ready})",
        t0.elapsed().as_secs_f64()
    );
    let (_, report) = attest_report(&mut vm);
    assert_eq!(report.report_data, chosen_report_data());
    assert_eq!(
        hex::encode(report.measurement),
        m.snp.launch_digest,
        "measurement differs from the manifest's digest over the AmdSev firmware"
    );
}

#[test]
fn amdsev_ovmf_refuses_a_tampered_kernel() {
    let good = amdsev_image();
    let _vm = vm_lock();
    // Same manifest and firmware, one kernel byte flipped.
    let dir = tempfile::tempdir().expect("tempdir");
    for f in [MANIFEST_FILE, "OVMF.fd"] {
        fs::copy(good.join(f), dir.path().join(f)).expect("copy");
    }
    let mut kernel = fs::read(good.join(KERNEL_FILE)).expect("kernel");
    let mid = kernel.len() / 2;
    kernel[mid] ^= 0x01;
    fs::write(dir.path().join(KERNEL_FILE), &kernel).expect("write kernel");

    let mut vm = Vm::start(&run_options(dir.path(), None)).unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(vm.boot(), image::run::Boot::AmdSev { .. }));
    match vm.wait_ready(TAMPERED_WAIT) {
        Err(image::run::RunError::Timeout { .. }) => {}
        Err(e) => panic!("expected OVMF to hang on the hash mismatch, got: {e}"),
        Ok(line) => panic!("a tampered kernel booted: {line}"),
    }
    // OVMF refused to start the kernel at all: not one line from it.
    let lines = vm.console_lines();
    assert!(
        !lines
            .iter()
            .any(|l| l.starts_with("ckms") || l.contains("INFO")),
        "the tampered kernel ran:\n{}",
        lines.join("\n")
    );
    assert!(vm.is_running(), "QEMU exited instead of OVMF refusing");
}
