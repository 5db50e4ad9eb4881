//! `snp-emu`: the emulated AMD secure processor's command line.
//!
//! - `snp-emu serve --socket PATH --firmware F --kernel K --cmdline C ...`: compute the launch
//!   digest, print it, and serve the protocol of `docs/snp-emu.md` on a unix socket (or, with
//!   `--connect PATH`, over one connection to a socket QEMU listens on).
//! - `snp-emu export-chain DIR`: write the test chain (ark.pem, ask.pem, vcek.der, vcek.pem,
//!   cert_chain).
//! - `snp-emu gen-chain [--seed S] [--out DIR]`: regenerate the fixture chain deterministically.
use std::{
    fs,
    io::Write,
    os::unix::{
        fs::FileTypeExt,
        net::{UnixListener, UnixStream},
    },
    path::PathBuf,
    process::ExitCode,
};

use attest::measure::snp::{SnpLaunch, VcpuType, VmmType, launch_digest};
use clap::{Parser, Subcommand};
use sha2::Sha256;
use snp_emu::{
    chain::{self, Chain, Tcb},
    psp::{LaunchInfo, Psp},
    server,
};
use zeroize::Zeroizing;

#[derive(Parser)]
#[command(
    name = "snp-emu",
    about = "Emulated AMD SEV-SNP secure processor (test chain, reports, derived keys)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compute the launch digest of the given launch and serve guest requests on a unix socket.
    Serve(Box<ServeArgs>),
    /// Write the test chain: ark.pem, ask.pem, vcek.der, vcek.pem, cert_chain (ASK then ARK).
    ExportChain {
        /// Output directory (created if missing).
        dir: PathBuf,
        /// Use the chain in this directory instead of the built-in fixtures.
        #[arg(long)]
        chain_dir: Option<PathBuf>,
    },
    /// Regenerate the chain deterministically from a seed (writes the fixture set).
    GenChain {
        /// Seed of the ChaCha20 generator.
        #[arg(long, default_value = chain::DEFAULT_SEED)]
        seed: String,
        /// Output directory.
        #[arg(long, default_value = "fixtures")]
        out: PathBuf,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Unix socket path to listen on (a stale socket there is removed). QEMU connects to it:
    /// `-chardev socket,id=snp,path=PATH -serial ... -serial chardev:snp`.
    #[arg(long, required_unless_present = "connect", conflicts_with = "connect")]
    socket: Option<PathBuf>,
    /// Instead of listening, connect to a unix socket QEMU listens on (`server=on,wait=off`);
    /// retried for 30 s, and the emulator exits when that connection closes.
    #[arg(long)]
    connect: Option<PathBuf>,
    /// OVMF image or AmdSev suffix descriptor.
    #[arg(long)]
    firmware: PathBuf,
    /// Kernel as passed to QEMU -kernel.
    #[arg(long)]
    kernel: PathBuf,
    /// Initrd (none if absent).
    #[arg(long)]
    initrd: Option<PathBuf>,
    /// Kernel command line.
    #[arg(long)]
    cmdline: String,
    /// Number of vCPUs.
    #[arg(long, default_value_t = 1)]
    vcpus: u32,
    /// vCPU type (sev-snp-measure names, e.g. EPYC-v4, EPYC-Milan).
    #[arg(long, default_value = "EPYC-v4")]
    vcpu_type: String,
    /// SEV_FEATURES of the VMSAs (hex or decimal).
    #[arg(long, default_value = "0x1")]
    guest_features: String,
    /// Guest policy (hex).
    #[arg(long, default_value = "0x30000")]
    policy: String,
    /// VMM type: qemu, ec2 or gce.
    #[arg(long, default_value = "qemu")]
    vmm: String,
    /// File whose contents seed the key-derivation secret (default: derived from the VCEK key).
    #[arg(long)]
    secret_file: Option<PathBuf>,
    /// Use the chain in this directory (gen-chain layout) instead of the built-in fixtures.
    #[arg(long)]
    chain_dir: Option<PathBuf>,
    /// Report format version (2 or 3).
    #[arg(long, default_value_t = 3)]
    report_version: u32,
    /// HOST_DATA (64 hex digits).
    #[arg(long)]
    host_data: Option<String>,
}

fn parse_u64(s: &str) -> Result<u64, String> {
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse(),
    };
    r.map_err(|_| format!("not a number: {s}"))
}

fn parse_hex_u64(s: &str) -> Result<u64, String> {
    let h = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    u64::from_str_radix(h, 16).map_err(|_| format!("not a hex number: {s}"))
}

fn read(path: &PathBuf) -> Result<Vec<u8>, String> {
    fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn load_chain(dir: Option<&PathBuf>) -> Result<Chain, String> {
    match dir {
        Some(d) => Chain::load_dir(d),
        None => Chain::builtin(),
    }
    .map_err(|e| format!("chain: {e}"))
}

fn random32() -> Result<[u8; 32], String> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| format!("system RNG: {e}"))?;
    Ok(b)
}

fn serve(a: ServeArgs) -> Result<(), String> {
    let firmware = read(&a.firmware)?;
    let kernel = read(&a.kernel)?;
    let initrd = match &a.initrd {
        Some(p) => read(p)?,
        None => Vec::new(),
    };
    let vcpu_type: VcpuType = a
        .vcpu_type
        .parse()
        .map_err(|_| format!("unknown vCPU type {}", a.vcpu_type))?;
    let vmm: VmmType = a
        .vmm
        .parse()
        .map_err(|_| format!("unknown VMM type {}", a.vmm))?;
    let launch = SnpLaunch {
        firmware: &firmware,
        kernel: &kernel,
        initrd: &initrd,
        cmdline: &a.cmdline,
        vcpus: a.vcpus,
        vcpu_type,
        guest_features: parse_u64(&a.guest_features)?,
        vmm,
    };
    let measurement = launch_digest(&launch).map_err(|e| format!("launch digest: {e}"))?;
    let mut host_data = [0u8; 32];
    if let Some(h) = &a.host_data {
        hex::decode_to_slice(h, &mut host_data)
            .map_err(|_| "--host-data: 64 hex digits".to_string())?;
    }
    let chain = load_chain(a.chain_dir.as_ref())?;
    let root_secret = match &a.secret_file {
        Some(p) => {
            let ikm = Zeroizing::new(read(p)?);
            let mut out = Zeroizing::new([0u8; 32]);
            hkdf::Hkdf::<Sha256>::new(Some(b"snp-emu root secret v1"), &ikm)
                .expand(b"secret-file", out.as_mut_slice())
                .map_err(|_| "HKDF".to_string())?;
            out
        }
        None => chain.derive_root_secret(),
    };
    let info = LaunchInfo {
        measurement,
        policy: parse_hex_u64(&a.policy)?,
        host_data,
        report_version: a.report_version,
        platform_info: 1, // SMT enabled
        report_id: random32()?,
    };
    let mut psp = Psp::new(chain, info, root_secret, Zeroizing::new(random32()?))
        .map_err(|e| format!("launch: {e}"))?;

    let mut out = std::io::stdout().lock();
    // The first stdout line is the measurement, for scripts; then a ready line.
    let _ = writeln!(out, "measurement {}", hex::encode(measurement));
    let _ = out.flush();
    if let Some(path) = &a.connect {
        let mut stream = connect_with_retry(path)?;
        let _ = writeln!(out, "connected {}", path.display());
        let _ = out.flush();
        drop(out);
        return server::serve_connection(&mut psp, &mut stream).map_err(|e| format!("serve: {e}"));
    }
    let Some(socket) = &a.socket else {
        return Err("--socket or --connect is required".into());
    };
    if let Ok(meta) = fs::symlink_metadata(socket)
        && meta.file_type().is_socket()
    {
        fs::remove_file(socket).map_err(|e| format!("{}: {e}", socket.display()))?;
    }
    let listener = UnixListener::bind(socket).map_err(|e| format!("{}: {e}", socket.display()))?;
    let _ = writeln!(out, "listening {}", socket.display());
    let _ = out.flush();
    drop(out);
    server::serve(&mut psp, &listener).map_err(|e| format!("serve: {e}"))
}

fn connect_with_retry(path: &PathBuf) -> Result<UnixStream, String> {
    let mut last = None;
    for _ in 0..300 {
        match UnixStream::connect(path) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Err(format!(
        "{}: {}",
        path.display(),
        last.map_or_else(String::new, |e| e.to_string())
    ))
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.cmd {
        Command::Serve(a) => serve(*a),
        Command::ExportChain { dir, chain_dir } => load_chain(chain_dir.as_ref())?
            .export(&dir)
            .map_err(|e| format!("export: {e}")),
        Command::GenChain { seed, out } => chain::generate_with_ca_keys(&seed, Tcb::TEST)
            .and_then(|(c, key, (ark_key, ask_key))| {
                c.write_fixtures(&out, &key)?;
                std::fs::write(out.join("ark_key.pem"), ark_key)?;
                std::fs::write(out.join("ask_key.pem"), ask_key)?;
                Ok(())
            })
            .map_err(|e| format!("gen-chain: {e}")),
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("snp-emu: {e}");
            ExitCode::FAILURE
        }
    }
}
