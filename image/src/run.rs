//! `image run`: boot the image under QEMU (TCG) next to `snp-emu`, and stop both when done.
//!
//! [`Vm::start`] starts the emulator (if asked) on a unix socket in a private temp directory, then QEMU with
//! COM1 on a pipe (the console, copied to a log file and kept in memory for [`Vm::wait_for_line`]) and COM2
//! connected to the emulator's socket. Networking is QEMU user mode with `restrict=on`: the guest reaches
//! nothing but the forwards set up here, all bound to 127.0.0.1. Dropping the [`Vm`] kills both processes by
//! PID and removes the temp directory.
//!
//! Firmware ([`Boot`]): when the manifest's firmware is a whole AmdSevX64 OVMF (`firmware.kind` =
//! `amdsev-ovmf`), QEMU boots *that* file (`-bios`) and gets the SEV kernel-hashes table that QEMU writes on
//! SNP hardware (`kernel-hashes=on`), loaded with `-device loader` at the GPA the firmware's metadata names
//! ([`crate::firmware::HashesTable`]). OVMF then checks kernel and command line against it exactly as on SNP,
//! and `snp-emu` measures the same firmware, so the emulated measurement describes what booted. With the 4 KiB
//! descriptor (or `plain_ovmf`), QEMU boots Debian's plain OVMF, which checks nothing.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use attest::measure::snp::KernelHashes;

use crate::firmware::{FirmwareKind, HashesTable};
use crate::manifest::{Manifest, ManifestError, sha256_hex};

/// Debian's OVMF (plain OvmfX64), which QEMU TCG boots here.
pub const DEFAULT_BIOS: &str = "/usr/share/ovmf/OVMF.fd";
/// The line prefix the kernel prints when its services listen (see image/README.md, "Console contract").
pub const READY_PREFIX: &str = "ckms: ready";
/// Guest port of the main (bootstrap, then KMS) service.
pub const GUEST_PORT: u16 = 9998;
/// Guest port of the RA-TLS service.
pub const GUEST_RATLS_PORT: u16 = 9999;
/// Guest KMIP port (binary TTLV), when the command line opens it (`ckms.kmip_port=5696`).
pub const GUEST_KMIP_PORT: u16 = 5696;
/// Address under which the guest reaches the host's Redis (QEMU `guestfwd`).
pub const GUEST_REDIS: &str = "10.0.2.100:6379";

/// How to run the image.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Directory written by `image build` (`kms.efi`, `manifest.json`, the firmware descriptor).
    pub image_dir: PathBuf,
    /// Command line to boot with instead of the manifest's (the measurement then differs).
    pub cmdline: Option<String>,
    /// Guest memory, QEMU syntax.
    pub memory: String,
    /// Host port forwarded to guest port 9998 (`None` or 0: a free port).
    pub port: Option<u16>,
    /// Host port forwarded to guest port 9999 (`None`: no forward; 0: a free port).
    pub ratls_port: Option<u16>,
    /// Host port forwarded to guest port 5696, the KMIP port the command line opens with
    /// `ckms.kmip_port=5696` (`None`: no forward; 0: a free port).
    pub kmip_port: Option<u16>,
    /// Host port of Redis, reachable from the guest at 10.0.2.100:6379 (`None`: no forward).
    pub redis_port: Option<u16>,
    /// An `image` binary to run as `image relay` for each guest connection to Redis (`guestfwd=…-cmd:`).
    /// `None`: QEMU's `guestfwd=…-tcp:` form, one host connection opened at start (Redis must be up).
    pub redis_relay: Option<PathBuf>,
    /// Path of the `snp-emu` binary (`None`: no emulator; COM2 stays unconnected).
    pub snp_emu: Option<PathBuf>,
    /// Path of the `tdx-emu` binary, for a loopback-TDX image (`None`: no TDX emulator). When the
    /// image directory holds the manifest's TDX firmware (`image build --tdx-firmware`), QEMU boots
    /// that file under TCG and tdx-emu computes MRTD from it ([`Boot::Tdvf`]); else QEMU boots
    /// `bios` and tdx-emu is given the manifest's `tdx.mrtd`. It computes RTMR1/RTMR2 from the
    /// kernel and the command line booted. Exclusive with `snp_emu`.
    pub tdx_emu: Option<PathBuf>,
    /// Plain firmware QEMU boots when the manifest's firmware is not bootable or `plain_ovmf` is set.
    pub bios: PathBuf,
    /// Boot `bios` even when the manifest's firmware is a bootable AmdSevX64 OVMF (then the emulated
    /// measurement describes that firmware, not the one that ran).
    pub plain_ovmf: bool,
    /// QEMU binary.
    pub qemu: PathBuf,
    /// QEMU CPU model. `None`: the manifest's `vcpu_type` when this QEMU has that model (its TCG then
    /// emulates what it can of it), else `max` ([`choose_cpu`]; [`Vm::cpu`] says which and why).
    pub cpu: Option<String>,
    /// Console log file (`None`: `console.log` in the temp directory).
    pub log: Option<PathBuf>,
    /// Also copy the console to our stderr.
    pub echo_console: bool,
}

impl RunOptions {
    /// Defaults for the image in `image_dir`: 128 MiB, free ports, no Redis, no emulator.
    pub fn new(image_dir: impl Into<PathBuf>) -> Self {
        Self {
            image_dir: image_dir.into(),
            cmdline: None,
            memory: "128M".to_owned(),
            port: None,
            ratls_port: None,
            kmip_port: None,
            redis_port: None,
            redis_relay: None,
            snp_emu: None,
            tdx_emu: None,
            bios: PathBuf::from(DEFAULT_BIOS),
            plain_ovmf: false,
            qemu: PathBuf::from("qemu-system-x86_64"),
            cpu: None,
            log: None,
            echo_console: false,
        }
    }
}

/// Errors of [`Vm`].
#[derive(Debug)]
pub enum RunError {
    /// A file or process operation failed.
    Io(String, io::Error),
    /// The image directory's manifest is invalid.
    Manifest(ManifestError),
    /// The command line cannot be passed to QEMU (non-printable or non-ASCII).
    BadCmdline,
    /// `snp-emu` / `tdx-emu` exited or did not create its socket.
    Emulator(String),
    /// QEMU exited before the awaited line appeared.
    Exited {
        /// QEMU's exit status.
        status: Option<ExitStatus>,
        /// The last console lines and QEMU's stderr.
        context: String,
    },
    /// The image directory's firmware does not match the manifest or cannot hold a kernel-hashes table.
    Firmware(String),
    /// The loopback-TDX memory layout cannot be set up ([`tdx_alias_args`]).
    TdxAlias(String),
    /// The awaited line did not appear in time.
    Timeout {
        /// What was awaited.
        what: String,
        /// The last console lines.
        context: String,
    },
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(what, e) => write!(f, "{what}: {e}"),
            Self::Manifest(e) => write!(f, "{e}"),
            Self::BadCmdline => f.write_str("command line must be printable ASCII"),
            Self::Emulator(what) => write!(f, "emulator: {what}"),
            Self::Firmware(what) => write!(f, "firmware: {what}"),
            Self::TdxAlias(what) => write!(f, "loopback-TDX shared alias: {what}"),
            Self::Exited { status, context } => {
                write!(f, "QEMU exited")?;
                if let Some(s) = status {
                    write!(f, " ({s})")?;
                }
                write!(f, "; last output:\n{context}")
            }
            Self::Timeout { what, context } => {
                write!(f, "timed out waiting for {what}; last output:\n{context}")
            }
        }
    }
}

impl std::error::Error for RunError {}

/// Where the loopback-TDX layout plugs the alias of guest RAM: GPA 2^47, the shared bit of
/// GPAW 48 (kernel/README.md, "The loopback-TDX build").
pub const TDX_ALIAS_GPA: u64 = 1 << 47;

/// The most guest memory the loopback-TDX layout takes: all of it must lie below q35's 4 GiB
/// split (RAM above 4 GiB sits at another offset of the file than GPA − 4 GiB + 2^47).
pub const TDX_ALIAS_MAX_MEMORY: u64 = 2 << 30;

/// Guest memory in QEMU's `-m` syntax (a number with an optional `K`/`M`/`G`/`T` suffix,
/// mebibytes without one), in bytes.
pub fn parse_memory(memory: &str) -> Option<u64> {
    let (digits, unit) = match memory.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&memory[..i], c.to_ascii_uppercase()),
        _ => (memory, 'M'),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let shift = match unit {
        'K' => 10,
        'M' => 20,
        'G' => 30,
        'T' => 40,
        _ => return None,
    };
    digits.parse::<u64>().ok()?.checked_mul(1 << shift)
}

/// QEMU arguments that give a loopback-TDX guest a real shared alias (TCG has one view of
/// memory): machine, CPU, memory and the alias, replacing `-machine q35 -cpu CPU -m MEMORY`.
///
/// - `-cpu CPU,phys-bits=48`: GPAs up to 2^48, so bit 47 (the shared bit of GPAW 48) is an
///   address bit, not a reserved one;
/// - guest RAM from `memory-backend-file` on `ram_file` with `share=on`, and a second backend on
///   the same file plugged as a `pc-dimm` at [`TDX_ALIAS_GPA`]: GPA `x + 2^47` is the same byte
///   of the file as GPA `x`, so a page-table entry with bit 47 reaches the frame through the
///   alias, as a TD's shared view does on hardware (devices DMA to the plain GPA: same bytes);
/// - `-m MEMORY,slots=1,maxmem=200T` to make room for the DIMM, on machine type
///   `pc-q35-2.4`: its `broken_reserved_end` leaves fw_cfg `etc/reserved-memory-end` at the
///   start of the device-memory region (4 GiB) instead of its end (~200 TiB). OVMF plans its
///   address space from that value and hangs before the kernel when it lies beyond what it
///   maps (seen with q35 7.2 and maxmem ≥ 63T, both the IntelTdx and the plain OVMF). The DIMM
///   is in no E820 entry, so it is not in the UEFI memory map (the kernel refuses a map with
///   memory above the shared bit). The old machine type's virtio default (legacy only) is
///   undone with `-global virtio-net-pci.disable-modern=off`.
///
/// `ram_file` must not exist yet or be disposable (it is created or truncated to `memory`); the
/// caller deletes it after QEMU exits.
pub fn tdx_alias_args(cpu: &str, memory: &str, ram_file: &Path) -> Result<Vec<String>, RunError> {
    let bytes = parse_memory(memory)
        .filter(|&b| b > 0 && b <= TDX_ALIAS_MAX_MEMORY && b.is_multiple_of(1 << 20))
        .ok_or_else(|| {
            RunError::TdxAlias(format!(
                "memory {memory:?}: must be a QEMU size of whole MiB, at most {} MiB",
                TDX_ALIAS_MAX_MEMORY >> 20
            ))
        })?;
    let path = ram_file
        .to_str()
        .filter(|p| !p.contains(','))
        .ok_or_else(|| RunError::TdxAlias("RAM file path is not UTF-8 or has a comma".into()))?;
    if cpu.contains(',') {
        return Err(RunError::TdxAlias(format!("CPU model {cpu:?} has options")));
    }
    File::create(ram_file)
        .and_then(|f| f.set_len(bytes))
        .map_err(io_err(format!("guest RAM file {path}")))?;
    let backend =
        |id: &str| format!("memory-backend-file,id={id},size={bytes},mem-path={path},share=on");
    Ok(vec![
        "-machine".into(),
        "pc-q35-2.4,memory-backend=ram0".into(),
        "-cpu".into(),
        format!("{cpu},phys-bits=48"),
        "-m".into(),
        // `-m` without a suffix counts MiB.
        format!("{}M,slots=1,maxmem=200T", bytes >> 20),
        "-object".into(),
        backend("ram0"),
        "-object".into(),
        backend("alias0"),
        "-device".into(),
        format!("pc-dimm,id=shared-alias,memdev=alias0,addr={TDX_ALIAS_GPA:#x}"),
        "-global".into(),
        "virtio-net-pci.disable-modern=off".into(),
    ])
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> RunError {
    let what = what.into();
    move |e| RunError::Io(what, e)
}

/// Whether the manifest in `image_dir` has a command line with `ckms.attestation=emulated` (false if the
/// manifest cannot be read; [`Vm::start`] reports that).
pub fn manifest_wants_emulator(image_dir: &Path) -> bool {
    fs::read_to_string(image_dir.join(crate::build::MANIFEST_FILE))
        .ok()
        .and_then(|t| Manifest::from_json(&t).ok())
        .is_some_and(|m| {
            m.cmdline
                .split(' ')
                .any(|item| item == "ckms.attestation=emulated")
        })
}

/// A free TCP port on 127.0.0.1 (bound and released; QEMU binds it right after).
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// The QEMU CPU model a VM runs with, and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CpuChoice {
    /// The manifest's `vcpu_type` (QEMU and `sev-snp-measure` use the same names).
    Manifest(String),
    /// Given by the caller ([`RunOptions::cpu`]).
    Explicit(String),
    /// This QEMU has no model of the manifest's vCPU type: `max` (every feature TCG emulates), and why.
    Fallback {
        /// The manifest's vCPU type.
        wanted: String,
        /// Why it cannot be used.
        reason: String,
    },
}

impl CpuChoice {
    /// The `-cpu` argument.
    pub fn model(&self) -> &str {
        match self {
            Self::Manifest(m) | Self::Explicit(m) => m,
            Self::Fallback { .. } => "max",
        }
    }
}

impl fmt::Display for CpuChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Manifest(m) => write!(
                f,
                "-cpu {m} (the manifest's vCPU type; TCG drops the features it cannot emulate, see qemu.stderr)"
            ),
            Self::Explicit(m) => write!(f, "-cpu {m} (given explicitly)"),
            Self::Fallback { wanted, reason } => write!(
                f,
                "-cpu max: cannot run the manifest's vCPU type {wanted} ({reason}); the measurement still \
                 uses {wanted}"
            ),
        }
    }
}

/// The x86 CPU model names in the output of `qemu-system-x86_64 -cpu help` (lines `x86 NAME  description`).
pub fn parse_cpu_help(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("x86")).then(|| w.next()).flatten()
        })
        .map(str::to_owned)
        .collect()
}

/// Picks the `-cpu` model: `explicit` if given, else the manifest's `vcpu_type` when it is one of QEMU's
/// `models`, else `max` with the reason.
pub fn choose_cpu(explicit: Option<&str>, vcpu_type: &str, models: &[String]) -> CpuChoice {
    if let Some(m) = explicit {
        return CpuChoice::Explicit(m.to_owned());
    }
    if vcpu_type.parse::<attest::measure::snp::VcpuType>().is_err() {
        return CpuChoice::Fallback {
            wanted: vcpu_type.to_owned(),
            reason: "not a named model".into(),
        };
    }
    if models.iter().any(|m| m == vcpu_type) {
        CpuChoice::Manifest(vcpu_type.to_owned())
    } else {
        CpuChoice::Fallback {
            wanted: vcpu_type.to_owned(),
            reason: "this QEMU has no such model (see `qemu-system-x86_64 -cpu help`)".into(),
        }
    }
}

/// The CPU models `qemu` offers (empty if it cannot be asked).
fn qemu_cpu_models(qemu: &Path) -> Vec<String> {
    Command::new(qemu)
        .args(["-cpu", "help"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map(|o| parse_cpu_help(&String::from_utf8_lossy(&o.stdout)))
        .unwrap_or_default()
}

/// Which firmware QEMU boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Boot {
    /// The manifest's AmdSevX64 OVMF, with the kernel-hashes table injected: the measured firmware ran.
    AmdSev {
        /// The firmware file (in the image directory).
        firmware: PathBuf,
        /// Its SHA-256 (hex), equal to the manifest's.
        sha256: String,
        /// Where the table was loaded.
        table_gpa: u64,
    },
    /// The manifest's TDX firmware (the IntelTdx OVMF of its `tdx` section, copied into the image
    /// directory by `image build --tdx-firmware`), for a loopback-TDX image with `tdx-emu`: the
    /// emulator computes MRTD from this same file. Under TCG it is no TD: it measures nothing
    /// into RTMRs and writes no CCEL (tdx-emu reports RTMR1/RTMR2 and synthesises the log).
    Tdvf {
        /// The firmware file (in the image directory).
        firmware: PathBuf,
        /// Its SHA-256 (hex), equal to the manifest's `tdx.firmware.sha256`.
        sha256: String,
    },
    /// A plain OVMF that does not check kernel hashes: the measurement covers kernel and command line, but
    /// describes the manifest's firmware, not this one.
    Plain {
        /// The firmware file.
        bios: PathBuf,
        /// The manifest's `firmware.kind`.
        measured_kind: String,
    },
}

impl fmt::Display for Boot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AmdSev {
                firmware,
                sha256,
                table_gpa,
            } => write!(
                f,
                "AmdSevX64 OVMF {} (sha256 {sha256}), kernel-hashes table injected at {table_gpa:#x}; \
                 the measured firmware is the one that boots",
                firmware.display()
            ),
            Self::Tdvf { firmware, sha256 } => write!(
                f,
                "IntelTdx OVMF {} (sha256 {sha256}), the manifest's TDX firmware; tdx-emu computes \
                 MRTD from this file (under TCG no TD: it writes no CCEL)",
                firmware.display()
            ),
            Self::Plain {
                bios,
                measured_kind,
            } => write!(
                f,
                "plain OVMF {} (checks no kernel hashes); the measurement uses the manifest's {measured_kind} \
                 firmware, not this one",
                bios.display()
            ),
        }
    }
}

/// Decides what to boot for `manifest`, and for an AmdSev boot writes the hashes table to `dir/hashes-table.bin`.
///
/// The table holds the manifest's kernel SHA-256 (what the deployment expects) and the command line being
/// booted. A kernel file that differs from the manifest is therefore refused by OVMF, as on SNP hardware when
/// the measured table does not describe the kernel the host passes.
fn choose_boot(
    opts: &RunOptions,
    manifest: &Manifest,
    cmdline: &str,
    dir: &Path,
) -> Result<(Boot, Option<PathBuf>), RunError> {
    let plain = || Boot::Plain {
        bios: opts.bios.clone(),
        measured_kind: manifest.firmware.kind.clone(),
    };
    if let (Some(_), Some(tdx), false) = (&opts.tdx_emu, &manifest.tdx, opts.plain_ovmf) {
        // The TDVF `image build --tdx-firmware` copied beside the kernel, when it is there (a
        // manifest whose MRTD is a stand-in names no file).
        let path = opts.image_dir.join(&tdx.firmware.name);
        if let Ok(bytes) = fs::read(&path) {
            let sha256 = sha256_hex(&bytes);
            if sha256 != tdx.firmware.sha256 {
                return Err(RunError::Firmware(format!(
                    "{} has sha256 {sha256}, the manifest's tdx section says {}",
                    path.display(),
                    tdx.firmware.sha256
                )));
            }
            return Ok((
                Boot::Tdvf {
                    firmware: path,
                    sha256,
                },
                None,
            ));
        }
        return Ok((plain(), None));
    }
    if opts.plain_ovmf
        || FirmwareKind::from_manifest(&manifest.firmware.kind) != Some(FirmwareKind::AmdSevOvmf)
    {
        return Ok((plain(), None));
    }
    let path = opts.image_dir.join(&manifest.firmware.name);
    let bytes = fs::read(&path).map_err(io_err(path.display().to_string()))?;
    let sha256 = sha256_hex(&bytes);
    if sha256 != manifest.firmware.sha256 {
        return Err(RunError::Firmware(format!(
            "{} has sha256 {sha256}, the manifest says {}",
            path.display(),
            manifest.firmware.sha256
        )));
    }
    let mut kernel = [0u8; 32];
    hex::decode_to_slice(&manifest.kernel.sha256, &mut kernel)
        .map_err(|_| RunError::Manifest(ManifestError::Field("kernel.sha256")))?;
    let hashes = KernelHashes {
        kernel,
        ..KernelHashes::new(&[], &[], cmdline)
    };
    let table = HashesTable::new(&bytes, &hashes).map_err(|e| RunError::Firmware(e.to_string()))?;
    let table_path = dir.join("hashes-table.bin");
    fs::write(&table_path, &table.bytes).map_err(io_err("hashes table file"))?;
    Ok((
        Boot::AmdSev {
            firmware: path,
            sha256,
            table_gpa: table.gpa,
        },
        Some(table_path),
    ))
}

#[derive(Default)]
struct Console {
    lines: Vec<String>,
    eof: bool,
}

type Shared = Arc<(Mutex<Console>, Condvar)>;

/// A running VM (QEMU, and `snp-emu` when asked). Dropping it stops both.
pub struct Vm {
    qemu: Option<Child>,
    emulator: Option<Child>,
    console: Shared,
    reader: Option<thread::JoinHandle<()>>,
    dir: tempfile::TempDir,
    log: PathBuf,
    manifest: Manifest,
    cmdline: String,
    boot: Boot,
    table: Option<PathBuf>,
    cpu: CpuChoice,
    /// 127.0.0.1 port forwarded to guest 9998.
    pub port: u16,
    /// 127.0.0.1 port forwarded to guest 9999, if any.
    pub ratls_port: Option<u16>,
    /// 127.0.0.1 port forwarded to guest 5696 (KMIP), if any.
    pub kmip_port: Option<u16>,
    started: Instant,
}

impl fmt::Debug for Vm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vm")
            .field("port", &self.port)
            .field("log", &self.log)
            .finish_non_exhaustive()
    }
}

fn stop_child(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        // Child::kill sends SIGKILL to exactly this PID.
        let _ = c.kill();
        let _ = c.wait();
    }
}

impl Vm {
    /// Starts the emulator (if configured) and QEMU. Returns once QEMU runs; use [`Vm::wait_ready`].
    pub fn start(opts: &RunOptions) -> Result<Self, RunError> {
        let manifest_path = opts.image_dir.join(crate::build::MANIFEST_FILE);
        let text = fs::read_to_string(&manifest_path)
            .map_err(io_err(manifest_path.display().to_string()))?;
        let manifest = Manifest::from_json(&text).map_err(RunError::Manifest)?;
        let cmdline = opts
            .cmdline
            .clone()
            .unwrap_or_else(|| manifest.cmdline.clone());
        if !cmdline.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err(RunError::BadCmdline);
        }
        let kernel = opts.image_dir.join(&manifest.kernel.file);
        let dir = tempfile::Builder::new()
            .prefix("ckms-vm-")
            .tempdir()
            .map_err(io_err("temp dir"))?;
        let log = opts
            .log
            .clone()
            .unwrap_or_else(|| dir.path().join("console.log"));
        let port = match opts.port {
            Some(p) if p != 0 => p,
            _ => free_port().map_err(io_err("free port"))?,
        };
        let ratls_port = match opts.ratls_port {
            None => None,
            Some(0) => Some(free_port().map_err(io_err("free port"))?),
            Some(p) => Some(p),
        };
        let kmip_port = match opts.kmip_port {
            None => None,
            Some(0) => Some(free_port().map_err(io_err("free port"))?),
            Some(p) => Some(p),
        };

        let (boot, table) = choose_boot(opts, &manifest, &cmdline, dir.path())?;
        let cpu = match &opts.cpu {
            Some(c) => choose_cpu(Some(c), &manifest.vcpu_type, &[]),
            None => choose_cpu(None, &manifest.vcpu_type, &qemu_cpu_models(&opts.qemu)),
        };
        let mut vm = Self {
            qemu: None,
            emulator: None,
            console: Arc::default(),
            reader: None,
            dir,
            log,
            manifest,
            cmdline,
            boot,
            table,
            cpu,
            port,
            ratls_port,
            kmip_port,
            started: Instant::now(),
        };
        let socket = vm.dir.path().join("snp-emu.sock");
        match (&opts.snp_emu, &opts.tdx_emu) {
            (Some(_), Some(_)) => {
                return Err(RunError::Emulator(
                    "snp-emu and tdx-emu cannot both serve COM2".into(),
                ));
            }
            (Some(emu), None) => vm.start_emulator(emu, &opts.image_dir, &kernel, &socket)?,
            (None, Some(emu)) => vm.start_tdx_emulator(emu, &kernel, &socket)?,
            (None, None) => {}
        }
        let emulated = opts.snp_emu.is_some() || opts.tdx_emu.is_some();
        vm.start_qemu(opts, &kernel, emulated.then_some(socket.as_path()))?;
        Ok(vm)
    }

    fn start_emulator(
        &mut self,
        emu: &Path,
        image_dir: &Path,
        kernel: &Path,
        socket: &Path,
    ) -> Result<(), RunError> {
        let firmware = image_dir.join(&self.manifest.firmware.name);
        let err_log = self.dir.path().join("snp-emu.log");
        let err_file = File::create(&err_log).map_err(io_err("snp-emu log"))?;
        let mut cmd = Command::new(emu);
        cmd.arg("serve")
            .arg("--socket")
            .arg(socket)
            .arg("--firmware")
            .arg(&firmware)
            .arg("--kernel")
            .arg(kernel)
            .arg("--cmdline")
            .arg(&self.cmdline)
            .arg("--vcpus")
            .arg(self.manifest.vcpus.to_string())
            .arg("--vcpu-type")
            .arg(&self.manifest.vcpu_type)
            .arg("--guest-features")
            .arg(&self.manifest.guest_features)
            .arg("--policy")
            .arg(&self.manifest.guest_policy);
        self.spawn_emulator(emu, cmd, err_file, &err_log, socket)
    }

    /// `tdx-emu serve` for a loopback-TDX image: MRTD from the manifest's `tdx` section, RTMR1 and
    /// RTMR2 from what is booted.
    fn start_tdx_emulator(
        &mut self,
        emu: &Path,
        kernel: &Path,
        socket: &Path,
    ) -> Result<(), RunError> {
        let mrtd = match &self.manifest.tdx {
            Some(t) => t.mrtd.clone(),
            None => {
                return Err(RunError::Emulator(
                    "tdx-emu needs the manifest's tdx section (its MRTD)".into(),
                ));
            }
        };
        let err_log = self.dir.path().join("snp-emu.log");
        let err_file = File::create(&err_log).map_err(io_err("tdx-emu log"))?;
        let mut cmd = Command::new(emu);
        cmd.arg("serve").arg("--socket").arg(socket);
        match &self.boot {
            // MRTD computed by tdx-emu from the firmware QEMU boots.
            Boot::Tdvf { firmware, .. } => cmd.arg("--firmware").arg(firmware),
            _ => cmd.args(["--mrtd", &mrtd]),
        };
        cmd.arg("--kernel")
            .arg(kernel)
            .arg("--cmdline")
            .arg(&self.cmdline);
        self.spawn_emulator(emu, cmd, err_file, &err_log, socket)
    }

    fn spawn_emulator(
        &mut self,
        emu: &Path,
        mut cmd: Command,
        err_file: File,
        err_log: &Path,
        socket: &Path,
    ) -> Result<(), RunError> {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err_file)
            .spawn()
            .map_err(io_err(format!("starting {}", emu.display())))?;
        self.emulator = Some(child);
        // QEMU connects to the socket as a client when it starts: wait until it exists.
        let deadline = Instant::now() + Duration::from_secs(20);
        while !socket.exists() {
            if let Some(c) = self.emulator.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                let log = fs::read_to_string(err_log).unwrap_or_default();
                return Err(RunError::Emulator(format!(
                    "exited with {status}: {}",
                    log.trim()
                )));
            }
            if Instant::now() > deadline {
                return Err(RunError::Emulator(
                    "socket did not appear within 20 s".into(),
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    fn start_qemu(
        &mut self,
        opts: &RunOptions,
        kernel: &Path,
        socket: Option<&Path>,
    ) -> Result<(), RunError> {
        let mut netdev = format!(
            "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{}-:{GUEST_PORT}",
            self.port
        );
        if let Some(p) = self.ratls_port {
            netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{p}-:{GUEST_RATLS_PORT}"));
        }
        if let Some(p) = self.kmip_port {
            netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{p}-:{GUEST_KMIP_PORT}"));
        }
        match (opts.redis_port, &opts.redis_relay) {
            (Some(r), None) => {
                netdev.push_str(&format!(",guestfwd=tcp:{GUEST_REDIS}-tcp:127.0.0.1:{r}"))
            }
            (Some(r), Some(bin)) => {
                // QEMU splits the option at commas and slirp the command at spaces.
                let bin = bin
                    .to_str()
                    .filter(|b| !b.contains([',', ' ']))
                    .ok_or_else(|| {
                        RunError::Io(
                            "relay binary path".into(),
                            io::Error::other("path must be UTF-8 without ',' or ' '"),
                        )
                    })?;
                netdev.push_str(&format!(
                    ",guestfwd=tcp:{GUEST_REDIS}-cmd:{bin} relay 127.0.0.1:{r}"
                ));
            }
            (None, _) => {}
        }
        let mut cmd = Command::new(&opts.qemu);
        // The loopback-TDX kernel maps shared memory with bit 47: it needs the alias layout.
        let machine = if opts.tdx_emu.is_some() {
            tdx_alias_args(
                self.cpu.model(),
                &opts.memory,
                &self.dir.path().join("guest-ram"),
            )?
        } else {
            [
                "-machine",
                "q35",
                "-cpu",
                self.cpu.model(),
                "-m",
                &opts.memory,
            ]
            .map(String::from)
            .to_vec()
        };
        cmd.args(machine)
            .args([
                "-accel",
                "tcg",
                "-nodefaults",
                "-no-user-config",
                "-display",
                "none",
            ])
            .args(["-no-reboot", "-smp", &self.manifest.vcpus.to_string()])
            .arg("-bios")
            .arg(match &self.boot {
                Boot::AmdSev { firmware, .. } | Boot::Tdvf { firmware, .. } => firmware,
                Boot::Plain { bios, .. } => bios,
            });
        if let (Boot::AmdSev { table_gpa, .. }, Some(table)) = (&self.boot, &self.table) {
            let path = table.to_str().filter(|p| !p.contains(',')).ok_or_else(|| {
                RunError::Firmware("table path is not UTF-8 or has a comma".into())
            })?;
            // Written into guest RAM at reset, where QEMU's kernel-hashes=on would put it on SNP.
            cmd.args([
                "-device",
                &format!("loader,file={path},addr={table_gpa:#x},force-raw=on"),
            ]);
        }
        cmd.arg("-kernel")
            .arg(kernel)
            .args(["-append", &self.cmdline])
            .args([
                "-netdev",
                &netdev,
                "-device",
                "virtio-net-pci,netdev=n0,disable-legacy=on",
            ])
            // COM1: the console, on our pipe.
            .args([
                "-chardev",
                "stdio,id=com1,signal=off",
                "-serial",
                "chardev:com1",
            ]);
        // COM2: the emulated secure processor (or nothing).
        match socket {
            Some(s) => {
                let path = s
                    .to_str()
                    .ok_or_else(|| RunError::Emulator("socket path is not UTF-8".into()))?;
                if path.contains(',') {
                    return Err(RunError::Emulator("socket path contains a comma".into()));
                }
                cmd.args([
                    "-chardev",
                    &format!("socket,id=com2,path={path}"),
                    "-serial",
                    "chardev:com2",
                ]);
            }
            None => {
                cmd.args(["-serial", "null"]);
            }
        }
        cmd.args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]);
        let stderr = File::create(self.dir.path().join("qemu.stderr"))
            .map_err(io_err("qemu stderr file"))?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        let mut child = cmd
            .spawn()
            .map_err(io_err(format!("starting {}", opts.qemu.display())))?;
        self.started = Instant::now();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| RunError::Io("qemu stdout".into(), io::ErrorKind::Other.into()))?;
        self.qemu = Some(child);

        let mut log = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&self.log)
            .map_err(io_err(self.log.display().to_string()))?;
        let console = Arc::clone(&self.console);
        let echo = opts.echo_console;
        self.reader = Some(thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let _ = log.write_all(&buf);
                        let line = String::from_utf8_lossy(&buf)
                            .trim_end_matches(['\r', '\n'])
                            .to_owned();
                        if echo {
                            eprintln!("{line}");
                        }
                        let (lock, cv) = &*console;
                        if let Ok(mut c) = lock.lock() {
                            c.lines.push(line);
                        }
                        cv.notify_all();
                    }
                }
            }
            let _ = log.flush();
            let (lock, cv) = &*console;
            if let Ok(mut c) = lock.lock() {
                c.eof = true;
            }
            cv.notify_all();
        }));
        Ok(())
    }

    fn context(&self) -> String {
        let lines = self.console_lines();
        let start = lines.len().saturating_sub(20);
        let mut s = lines[start..].join("\n");
        let stderr = fs::read_to_string(self.dir.path().join("qemu.stderr")).unwrap_or_default();
        if !stderr.trim().is_empty() {
            s.push_str("\n[qemu stderr] ");
            s.push_str(stderr.trim());
        }
        let emu = fs::read_to_string(self.dir.path().join("snp-emu.log")).unwrap_or_default();
        if !emu.trim().is_empty() {
            s.push_str("\n[snp-emu] ");
            s.push_str(emu.trim());
        }
        s
    }

    /// Every console line so far.
    pub fn console_lines(&self) -> Vec<String> {
        let (lock, _) = &*self.console;
        lock.lock().map(|c| c.lines.clone()).unwrap_or_default()
    }

    /// Waits until a console line (from the start of the boot) satisfies `pred` and returns it.
    pub fn wait_for_line(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Result<String, RunError> {
        let deadline = Instant::now() + timeout;
        let mut seen = 0;
        let (lock, cv) = &*Arc::clone(&self.console);
        let mut guard = lock
            .lock()
            .map_err(|_| RunError::Io("console lock".into(), io::ErrorKind::Other.into()))?;
        loop {
            if let Some(l) = guard
                .lines
                .get(seen..)
                .and_then(|new| new.iter().find(|l| pred(l)))
            {
                return Ok(l.clone());
            }
            seen = guard.lines.len();
            if guard.eof {
                drop(guard);
                let status = self.qemu.as_mut().and_then(|c| c.wait().ok());
                return Err(RunError::Exited {
                    status,
                    context: self.context(),
                });
            }
            let now = Instant::now();
            if now >= deadline {
                drop(guard);
                return Err(RunError::Timeout {
                    what: what.to_owned(),
                    context: self.context(),
                });
            }
            guard = cv
                .wait_timeout(guard, deadline - now)
                .map_err(|_| RunError::Io("console lock".into(), io::ErrorKind::Other.into()))?
                .0;
        }
    }

    /// Waits for the kernel's ready line ([`READY_PREFIX`]) and returns it.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<String, RunError> {
        self.wait_for_line("the kernel's ready line", timeout, |l| {
            l.starts_with(READY_PREFIX)
        })
    }

    /// Waits for QEMU to exit (the kernel stops the VM through `isa-debug-exit` or a triple fault).
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus, RunError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(c) = self.qemu.as_mut()
                && let Some(status) = c.try_wait().map_err(io_err("waiting for QEMU"))?
            {
                // Let the reader drain the pipe.
                if let Some(r) = self.reader.take() {
                    let _ = r.join();
                }
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(RunError::Timeout {
                    what: "QEMU to exit".into(),
                    context: self.context(),
                });
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether QEMU is still running.
    pub fn is_running(&mut self) -> bool {
        self.qemu
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Time since QEMU was started.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// 127.0.0.1:port forwarded to guest port 9998.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The console log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The command line the VM was booted with.
    pub fn cmdline(&self) -> &str {
        &self.cmdline
    }

    /// Which firmware QEMU booted.
    pub fn boot(&self) -> &Boot {
        &self.boot
    }

    /// The QEMU CPU model and why.
    pub fn cpu(&self) -> &CpuChoice {
        &self.cpu
    }

    /// The image's manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Stops QEMU and the emulator.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        stop_child(&mut self.qemu);
        stop_child(&mut self.emulator);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELP: &str = "Available CPUs:\nx86 EPYC                  (alias configured by machine type)\n\
x86 EPYC-Milan-v1         AMD EPYC-Milan Processor\nx86 EPYC-v3               AMD EPYC Processor\n\
x86 max                   Enables all features supported by the accelerator in the current host\n\
\nRecognized CPUID flags:\n  3dnow 3dnowext\n";

    #[test]
    fn parses_qemu_cpu_help() {
        assert_eq!(
            parse_cpu_help(HELP),
            ["EPYC", "EPYC-Milan-v1", "EPYC-v3", "max"]
        );
    }

    #[test]
    fn runs_the_manifest_vcpu_type_where_qemu_has_it() {
        let models = parse_cpu_help(HELP);
        assert_eq!(
            choose_cpu(None, "EPYC-Milan-v1", &models),
            CpuChoice::Manifest("EPYC-Milan-v1".into())
        );
        assert_eq!(choose_cpu(None, "EPYC-v3", &models).model(), "EPYC-v3");
        // QEMU 7.2 has no EPYC-v4: `max`, and the reason is printed.
        let c = choose_cpu(None, "EPYC-v4", &models);
        assert!(matches!(&c, CpuChoice::Fallback { wanted, .. } if wanted == "EPYC-v4"));
        assert_eq!(c.model(), "max");
        assert!(
            c.to_string()
                .contains("cannot run the manifest's vCPU type EPYC-v4")
        );
        // A name sev-snp-measure does not know is never passed to QEMU.
        assert!(matches!(
            choose_cpu(None, "max", &models),
            CpuChoice::Fallback { reason, .. } if reason == "not a named model"
        ));
        assert_eq!(
            choose_cpu(Some("host"), "EPYC-v4", &models),
            CpuChoice::Explicit("host".into())
        );
    }

    #[test]
    fn parses_qemu_memory_sizes() {
        assert_eq!(parse_memory("128M"), Some(128 << 20));
        assert_eq!(parse_memory("512"), Some(512 << 20));
        assert_eq!(parse_memory("2g"), Some(2 << 30));
        assert_eq!(parse_memory("64K"), Some(64 << 10));
        for bad in ["", "M", "12X", "1.5G", "-1M", "99999999999999999999T"] {
            assert_eq!(parse_memory(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn tdx_alias_layout_maps_the_ram_file_twice() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("guest-ram");
        let args = tdx_alias_args("max", "128M", &file).expect("layout");
        let joined = args.join(" ");
        for want in [
            "-machine pc-q35-2.4,memory-backend=ram0",
            "-cpu max,phys-bits=48",
            "-m 128M,slots=1,maxmem=200T",
            "-device pc-dimm,id=shared-alias,memdev=alias0,addr=0x800000000000",
            "-global virtio-net-pci.disable-modern=off",
        ] {
            assert!(joined.contains(want), "{want:?} not in {joined}");
        }
        let backends: Vec<&String> = args
            .iter()
            .filter(|a| a.starts_with("memory-backend-file"))
            .collect();
        assert_eq!(backends.len(), 2);
        for b in backends {
            assert!(
                b.ends_with(&format!(
                    "size=134217728,mem-path={},share=on",
                    file.display()
                )),
                "{b}"
            );
        }
        assert_eq!(fs::metadata(&file).expect("RAM file").len(), 128 << 20);
    }

    #[test]
    fn tdx_alias_layout_refuses_what_it_cannot_alias() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("guest-ram");
        // RAM above q35's 4 GiB split would not sit at GPA + 2^47 in the file.
        assert!(matches!(
            tdx_alias_args("max", "4G", &file),
            Err(RunError::TdxAlias(_))
        ));
        assert!(matches!(
            tdx_alias_args("max", "1536K", &file),
            Err(RunError::TdxAlias(_))
        ));
        assert!(matches!(
            tdx_alias_args("max", "lots", &file),
            Err(RunError::TdxAlias(_))
        ));
        assert!(matches!(
            tdx_alias_args("max,phys-bits=40", "128M", &file),
            Err(RunError::TdxAlias(_))
        ));
        assert!(matches!(
            tdx_alias_args("max", "128M", &dir.path().join("a,b")),
            Err(RunError::TdxAlias(_))
        ));
        assert!(!file.exists(), "a refused layout created the RAM file");
    }
}
