//! `image`: build the unikernel image and its manifest (`image build`), run it under QEMU (`image run`).
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use image::build::{self, BuildOptions};
use image::manifest::parse_u64;
use image::run::{RunOptions, Vm};

#[derive(Parser)]
#[command(name = "image", about = "Build and run the KMS unikernel image")]
struct Cli {
    /// Repository root (default: found from the current directory).
    #[arg(long, global = true)]
    repo: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build kernel/ into <out>/kms.efi and write <out>/manifest.json.
    Build(BuildArgs),
    /// Boot the image under QEMU (TCG) with snp-emu; stop everything on exit or Ctrl-C.
    Run(RunArgs),
    /// Copy stdin/stdout to a loopback TCP address (QEMU runs this per guest Redis connection).
    Relay {
        /// Target, e.g. 127.0.0.1:6379 (loopback only).
        target: String,
    },
}

#[derive(Args)]
struct BuildArgs {
    /// Kernel command line (measured).
    #[arg(long, default_value = build::DEFAULT_CMDLINE)]
    cmdline: String,
    /// Number of vCPUs.
    #[arg(long, default_value_t = 1)]
    vcpus: u32,
    /// vCPU model (sev-snp-measure names).
    #[arg(long, default_value = "EPYC-v4")]
    vcpu_type: String,
    /// Guest policy of the launch (SEV-SNP POLICY; bit 17 set, debug and migration agent clear).
    #[arg(long, default_value = "0x30000", value_parser = parse_u64)]
    guest_policy: u64,
    /// SEV_FEATURES of the VMSAs.
    #[arg(long, default_value = "0x1", value_parser = parse_u64)]
    guest_features: u64,
    /// Firmware the host boots and the measurement is computed over: the AmdSevX64 OVMF built by
    /// ovmf-config/build-amdsev.sh (`image run` boots it too). Required unless --dev-firmware.
    #[arg(long, required_unless_present = "dev_firmware")]
    firmware: Option<PathBuf>,
    /// IntelTdx OVMF (from ovmf-config/build-inteltdx.sh): adds the manifest's `tdx` section (MRTD of this
    /// firmware, RTMR1 of the kernel, RTMR2 of the command line) and copies it as OVMF.inteltdx.fd.
    #[arg(long)]
    tdx_firmware: Option<PathBuf>,
    /// Development/test build: measure over the 4 KiB descriptor fixture ovmf-config/amdsev-suffix.bin
    /// (measured only; `image run` boots Debian's plain OVMF). Not for a deployment.
    #[arg(long, conflicts_with = "firmware")]
    dev_firmware: bool,
    /// Kernel cargo features (comma-separated; default none). `emulated-attestation` adds the snp-emu
    /// backend (development and tests; required by `ckms.attestation=emulated`).
    #[arg(long, default_value = "")]
    features: String,
    /// Output directory (default: <repo>/target/image).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Cargo target directory for the kernel build (default: kernel/target).
    #[arg(long, env = "CKMS_KERNEL_TARGET_DIR")]
    kernel_target_dir: Option<PathBuf>,
}

#[derive(Args)]
struct RunArgs {
    /// Image directory (default: <repo>/target/image).
    #[arg(long)]
    image_dir: Option<PathBuf>,
    /// Host port of a local Redis; the guest reaches it at 10.0.2.100:6379.
    #[arg(long)]
    redis: Option<u16>,
    /// Give each guest Redis connection its own host connection (QEMU runs `image relay` per connection)
    /// instead of one shared connection opened at start.
    #[arg(long, requires = "redis")]
    redis_relay: bool,
    /// Host port forwarded to guest port 9998 (default: a free port).
    #[arg(long)]
    port: Option<u16>,
    /// Host port forwarded to guest port 9999 (RA-TLS); 0 picks a free one.
    #[arg(long)]
    ratls_port: Option<u16>,
    /// Host port forwarded to guest port 5696 (KMIP, binary TTLV; the command line must open it
    /// with `ckms.kmip_port=5696`); 0 picks a free one.
    #[arg(long)]
    kmip_port: Option<u16>,
    /// Start snp-emu on COM2 (found next to this binary unless --snp-emu-bin is given). The default when
    /// the command line says `ckms.attestation=emulated`.
    #[arg(long)]
    snp_emu: bool,
    /// Do not start snp-emu even if the command line asks for emulated attestation.
    #[arg(long, conflicts_with_all = ["snp_emu", "snp_emu_bin"])]
    no_snp_emu: bool,
    /// Path of the snp-emu binary.
    #[arg(long)]
    snp_emu_bin: Option<PathBuf>,
    /// Console log file (default: <image-dir>/console.log).
    #[arg(long)]
    log: Option<PathBuf>,
    /// Boot with this command line instead of the manifest's (the measurement changes).
    #[arg(long)]
    cmdline: Option<String>,
    /// Guest memory.
    #[arg(long, default_value = "128M")]
    memory: String,
    /// Seconds to wait for the ready line.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// Also print the console on stderr.
    #[arg(long)]
    echo: bool,
    /// Boot Debian's plain OVMF even when the manifest's firmware is a bootable AmdSevX64 OVMF (which is
    /// then measured but does not run, and nothing checks the kernel hashes).
    #[arg(long)]
    plain_ovmf: bool,
    /// The plain OVMF to boot when the manifest's firmware is not bootable or with --plain-ovmf.
    #[arg(long, default_value = image::run::DEFAULT_BIOS)]
    bios: PathBuf,
}

fn repo(cli: &Option<PathBuf>) -> Result<PathBuf, String> {
    if let Some(r) = cli {
        return Ok(r.clone());
    }
    let cwd = std::env::current_dir().map_err(|e| format!("current directory: {e}"))?;
    build::find_repo(&cwd)
        .ok_or_else(|| "not inside the repository (no kernel/build.sh above); use --repo".into())
}

fn do_build(repo: PathBuf, a: BuildArgs) -> Result<(), String> {
    let mut opts = BuildOptions::new(&repo);
    if let Some(out) = a.out {
        opts.out_dir = out;
    }
    opts.cmdline = a.cmdline;
    opts.vcpus = a.vcpus;
    opts.vcpu_type = a.vcpu_type;
    opts.guest_policy = a.guest_policy;
    opts.guest_features = a.guest_features;
    opts.firmware = match (a.firmware, a.dev_firmware) {
        (Some(f), _) => build::Firmware::File(f),
        (None, true) => build::Firmware::DevFixture,
        (None, false) => build::Firmware::Unset,
    };
    opts.tdx_firmware = a.tdx_firmware;
    opts.cargo_target_dir = a.kernel_target_dir;
    opts.kernel_features = a
        .features
        .split(',')
        .filter(|f| !f.is_empty())
        .map(str::to_owned)
        .collect();
    let built = build::build(&opts).map_err(|e| e.to_string())?;
    println!(
        "kernel:   {} ({} bytes, sha256 {})",
        built.kernel.display(),
        built.manifest.kernel.size,
        built.manifest.kernel.sha256
    );
    println!("manifest: {}", built.manifest_path.display());
    println!("cmdline:  {}", built.manifest.cmdline);
    println!(
        "firmware: {} ({}, sha256 {})",
        built.manifest.firmware.name, built.manifest.firmware.kind, built.manifest.firmware.sha256
    );
    println!(
        "vCPUs:    {} x {}, guest policy {}, guest features {}",
        built.manifest.vcpus,
        built.manifest.vcpu_type,
        built.manifest.guest_policy,
        built.manifest.guest_features
    );
    println!("features: {}", built.manifest.kernel_features.join(","));
    println!("SNP launch digest: {}", built.manifest.snp.launch_digest);
    if let Some(t) = &built.manifest.tdx {
        println!("TDX MRTD:  {} ({})", t.mrtd, t.firmware.name);
        println!("TDX RTMR1: {}", t.rtmr1);
        println!("TDX RTMR2: {}", t.rtmr2);
    }
    Ok(())
}

fn do_run(repo: PathBuf, a: RunArgs) -> Result<(), String> {
    let image_dir = a.image_dir.unwrap_or_else(|| repo.join("target/image"));
    let mut opts = RunOptions::new(&image_dir);
    opts.cmdline = a.cmdline;
    opts.memory = a.memory;
    opts.port = a.port;
    opts.ratls_port = a.ratls_port;
    opts.kmip_port = a.kmip_port;
    opts.redis_port = a.redis;
    if a.redis_relay {
        opts.redis_relay =
            Some(std::env::current_exe().map_err(|e| format!("locating image: {e}"))?);
    }
    opts.echo_console = a.echo;
    opts.plain_ovmf = a.plain_ovmf;
    opts.bios = a.bios;
    opts.log = Some(a.log.unwrap_or_else(|| image_dir.join("console.log")));
    let emulated = match &opts.cmdline {
        Some(c) => c.split(' ').any(|item| item == "ckms.attestation=emulated"),
        None => image::run::manifest_wants_emulator(&image_dir),
    };
    if !a.no_snp_emu && (a.snp_emu || a.snp_emu_bin.is_some() || emulated) {
        let bin = match a.snp_emu_bin {
            Some(b) => b,
            None => std::env::current_exe()
                .map_err(|e| format!("locating snp-emu: {e}"))?
                .with_file_name("snp-emu"),
        };
        opts.snp_emu = Some(bin);
    }

    let (tx, rx) = mpsc::channel::<()>();
    ctrlc::set_handler(move || {
        let _ = tx.send(());
    })
    .map_err(|e| format!("Ctrl-C handler: {e}"))?;

    let mut vm = Vm::start(&opts).map_err(|e| e.to_string())?;
    eprintln!("image: firmware: {}", vm.boot());
    eprintln!("image: vCPU: {}", vm.cpu());
    eprintln!("image: console -> {}", vm.log_path().display());
    let ready = vm
        .wait_ready(Duration::from_secs(a.timeout))
        .map_err(|e| e.to_string())?;
    eprintln!(
        "image: {ready}  ({:.1} s after start)",
        vm.uptime().as_secs_f64()
    );
    println!("ckms service: https://{}", vm.addr());
    if let Some(p) = vm.ratls_port {
        println!("RA-TLS:       https://127.0.0.1:{p}");
    }
    if let Some(p) = vm.kmip_port {
        println!("KMIP:         127.0.0.1:{p} (binary TTLV, mutual TLS)");
    }
    eprintln!("image: running; Ctrl-C (or SIGTERM) stops QEMU and snp-emu");
    loop {
        if rx.recv_timeout(Duration::from_millis(200)).is_ok() {
            eprintln!("image: stopping");
            vm.stop();
            return Ok(());
        }
        if !vm.is_running() {
            let status = vm
                .wait_exit(Duration::from_secs(1))
                .map_err(|e| e.to_string())?;
            return Err(format!(
                "QEMU exited ({status}); see {}",
                opts.log
                    .as_ref()
                    .map_or_else(String::new, |l| l.display().to_string())
            ));
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Cmd::Relay { target } = &cli.command {
        // No repository needed; stdout carries data, so errors go to stderr only.
        return match image::relay::relay(target) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("image relay: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let result = repo(&cli.repo).and_then(|r| match cli.command {
        Cmd::Build(a) => do_build(r, a),
        Cmd::Run(a) => do_run(r, a),
        Cmd::Relay { .. } => Ok(()),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("image: {e}");
            ExitCode::FAILURE
        }
    }
}
