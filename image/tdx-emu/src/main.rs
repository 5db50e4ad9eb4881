//! `tdx-emu`: the emulated TDX module + quoting enclave's command line.
//!
//! - `tdx-emu serve --socket PATH (--mrtd HEX | --firmware F) [--kernel K --cmdline C] ...`:
//!   print the TD's MRTD and RTMRs, then serve the protocol of `docs/tdx-emu.md` on a unix
//!   socket (or, with `--connect PATH`, over one connection to a socket QEMU listens on).
//! - `tdx-emu export-chain DIR [--seed S]`: write the chain a verifier needs (root.pem for
//!   `--trust-root`, root.der, pck_chain.pem).
//! - `tdx-emu gen-chain [--seed S] [--out DIR]`: write the whole chain of a seed, private keys
//!   included (test material only).
use std::{
    fs,
    io::Write,
    os::unix::{
        fs::FileTypeExt,
        net::{UnixListener, UnixStream},
    },
    path::{Path, PathBuf},
    process::ExitCode,
};

use attest::measure::tdx::{authenticode_sha384, mrtd, rtmr1_direct_boot, rtmr2_cmdline};
use attest::tdx::eventlog::direct_boot_log;
use clap::{Parser, Subcommand};
use tdx_emu::{ATTR_SEPT_VE_DISABLE, Chain, DEFAULT_SEED, Emulator, TdMeasurements, server};

#[derive(Parser)]
#[command(
    name = "tdx-emu",
    about = "Emulated TDX module + quoting enclave (test PCK chain, TDREPORT, quote v4)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the TD's measurements and serve GetQuote / TDREPORT requests on a unix socket.
    Serve(Box<ServeArgs>),
    /// Write root.pem (for `--trust-root`), root.der and pck_chain.pem (PCK, platform CA, root).
    ExportChain {
        /// Output directory (created if missing).
        dir: PathBuf,
        /// Seed of the chain.
        #[arg(long, default_value = DEFAULT_SEED)]
        seed: String,
    },
    /// Write the whole chain of a seed: the certificates and the private keys (PKCS#8 PEM).
    GenChain {
        /// Seed of the chain.
        #[arg(long, default_value = DEFAULT_SEED)]
        seed: String,
        /// Output directory.
        #[arg(long, default_value = "tdx-chain")]
        out: PathBuf,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Unix socket path to listen on (a stale socket there is removed).
    #[arg(long, required_unless_present = "connect", conflicts_with = "connect")]
    socket: Option<PathBuf>,
    /// Instead of listening, connect to a unix socket QEMU listens on; retried for 30 s, and
    /// the emulator exits when that connection closes.
    #[arg(long)]
    connect: Option<PathBuf>,
    /// Seed of the test chain.
    #[arg(long, default_value = DEFAULT_SEED)]
    seed: String,
    /// TDVF (IntelTdx OVMF) image: MRTD is computed from its TDVF metadata.
    #[arg(long, required_unless_present = "mrtd", conflicts_with = "mrtd")]
    firmware: Option<PathBuf>,
    /// MRTD (96 hex digits), instead of --firmware.
    #[arg(long)]
    mrtd: Option<String>,
    /// Kernel (UEFI PE) booted with -kernel: RTMR1 = its direct-boot value.
    #[arg(long, conflicts_with = "rtmr1")]
    kernel: Option<PathBuf>,
    /// Command line: RTMR2 = its command-line event.
    #[arg(long, conflicts_with = "rtmr2")]
    cmdline: Option<String>,
    /// RTMR0 (96 hex digits; default zero).
    #[arg(long)]
    rtmr0: Option<String>,
    /// RTMR1 (96 hex digits), instead of --kernel.
    #[arg(long)]
    rtmr1: Option<String>,
    /// RTMR2 (96 hex digits), instead of --cmdline.
    #[arg(long)]
    rtmr2: Option<String>,
    /// RTMR3 (96 hex digits; default zero).
    #[arg(long)]
    rtmr3: Option<String>,
    /// TD ATTRIBUTES (hex; default SEPT_VE_DISABLE only).
    #[arg(long)]
    attributes: Option<String>,
    /// TEE_TCB_SVN (32 hex digits; default zero).
    #[arg(long)]
    tee_tcb_svn: Option<String>,
    /// MRCONFIGID (96 hex digits; default zero).
    #[arg(long)]
    mr_config_id: Option<String>,
    /// MROWNER (96 hex digits; default zero).
    #[arg(long)]
    mr_owner: Option<String>,
    /// MROWNERCONFIG (96 hex digits; default zero).
    #[arg(long)]
    mr_owner_config: Option<String>,
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn hex_arr<const N: usize>(name: &str, v: Option<&String>) -> Result<[u8; N], String> {
    let mut out = [0u8; N];
    if let Some(h) = v {
        hex::decode_to_slice(h, &mut out).map_err(|_| format!("--{name}: {} hex digits", 2 * N))?;
    }
    Ok(out)
}

fn measurements(a: &ServeArgs) -> Result<TdMeasurements, String> {
    let mr_td = match &a.firmware {
        Some(f) => mrtd(&read(f)?).map_err(|e| format!("MRTD of {}: {e}", f.display()))?,
        None => hex_arr("mrtd", a.mrtd.as_ref())?,
    };
    let rtmr1 = match &a.kernel {
        Some(k) => {
            rtmr1_direct_boot(&read(k)?).map_err(|e| format!("RTMR1 of {}: {e}", k.display()))?
        }
        None => hex_arr("rtmr1", a.rtmr1.as_ref())?,
    };
    let rtmr2 = match &a.cmdline {
        Some(c) => rtmr2_cmdline(c),
        None => hex_arr("rtmr2", a.rtmr2.as_ref())?,
    };
    let attributes = match &a.attributes {
        Some(s) => u64::from_str_radix(s.trim_start_matches("0x"), 16)
            .map_err(|_| format!("--attributes: not a hex number: {s}"))?,
        None => ATTR_SEPT_VE_DISABLE,
    };
    Ok(TdMeasurements {
        mr_td,
        rtmr: [
            hex_arr("rtmr0", a.rtmr0.as_ref())?,
            rtmr1,
            rtmr2,
            hex_arr("rtmr3", a.rtmr3.as_ref())?,
        ],
        attributes,
        tee_tcb_svn: hex_arr("tee-tcb-svn", a.tee_tcb_svn.as_ref())?,
        mr_config_id: hex_arr("mr-config-id", a.mr_config_id.as_ref())?,
        mr_owner: hex_arr("mr-owner", a.mr_owner.as_ref())?,
        mr_owner_config: hex_arr("mr-owner-config", a.mr_owner_config.as_ref())?,
    })
}

fn serve(a: ServeArgs) -> Result<(), String> {
    let td = measurements(&a)?;
    let chain = Chain::generate(&a.seed).map_err(|e| format!("chain: {e}"))?;
    let mut out = std::io::stdout().lock();
    // The measurements first (for scripts), then a ready line.
    let _ = writeln!(out, "mrtd {}", hex::encode(td.mr_td));
    for (i, r) in td.rtmr.iter().enumerate() {
        let _ = writeln!(out, "rtmr{i} {}", hex::encode(r));
    }
    let _ = out.flush();
    let mut emu = Emulator::new(chain, td);
    // The firmware's log of what it measured: only when the RTMRs come from the kernel and the
    // command line (and RTMR0/RTMR3 stay zero), so that it replays to them.
    if let (Some(k), Some(c), None, None) = (&a.kernel, &a.cmdline, &a.rtmr0, &a.rtmr3) {
        let kernel = authenticode_sha384(&read(k)?)
            .map_err(|e| format!("Authenticode of {}: {e}", k.display()))?;
        emu = emu.with_event_log(direct_boot_log(&kernel, c));
    }
    if let Some(path) = &a.connect {
        let mut stream = connect_with_retry(path)?;
        let _ = writeln!(out, "connected {}", path.display());
        let _ = out.flush();
        drop(out);
        return server::serve_connection(&emu, &mut stream).map_err(|e| format!("serve: {e}"));
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
    server::serve(&emu, &listener).map_err(|e| format!("serve: {e}"))
}

fn connect_with_retry(path: &Path) -> Result<UnixStream, String> {
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

fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), String> {
    let p = dir.join(name);
    fs::write(&p, bytes).map_err(|e| format!("{}: {e}", p.display()))
}

fn export(dir: &Path, seed: &str, keys: bool) -> Result<(), String> {
    let chain = Chain::generate(seed).map_err(|e| format!("chain: {e}"))?;
    fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let pem = |d: &[u8]| {
        der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, d)
            .map_err(|e| format!("PEM: {e}"))
    };
    write(dir, "root.pem", pem(&chain.root_der)?.as_bytes())?;
    write(dir, "root.der", &chain.root_der)?;
    write(
        dir,
        "pck_chain.pem",
        chain.pem_chain().map_err(|e| e.to_string())?.as_bytes(),
    )?;
    if keys {
        write(
            dir,
            "intermediate.pem",
            pem(&chain.intermediate_der)?.as_bytes(),
        )?;
        write(dir, "pck.pem", pem(&chain.pck_der)?.as_bytes())?;
        for (name, key) in Chain::key_pems_for(seed).map_err(|e| e.to_string())? {
            write(dir, &format!("{name}_key.pem"), key.as_bytes())?;
        }
    }
    Ok(())
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.cmd {
        Command::Serve(a) => serve(*a),
        Command::ExportChain { dir, seed } => export(&dir, &seed, false),
        Command::GenChain { seed, out } => export(&out, &seed, true),
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tdx-emu: {e}");
            ExitCode::FAILURE
        }
    }
}
