//! `image build`: build the kernel from `kernel/`, write `kms.efi` and `manifest.json`.
//!
//! The kernel is built by `kernel/build.sh` (the kernel's own documented build: freestanding flags, path
//! remapping, PE conversion, PE timestamp zeroed). This module adds the manifest and the output directory.
//!
//! [`BuildOptions::new`] describes a real deployment: no firmware (the caller must name the AmdSevX64 OVMF
//! the host boots, [`Firmware::File`]), no kernel features (no emulated attestation), and a command line
//! without emulated attestation. [`BuildOptions::dev`] is the test and quickstart configuration: the 4 KiB
//! descriptor fixture ([`Firmware::DevFixture`]), the `emulated-attestation` feature and
//! `ckms.attestation=emulated`. [`write_image`] refuses a command line that asks for emulated attestation
//! from a kernel built without the feature (the kernel would refuse to start).

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::manifest::{Manifest, ManifestError, ManifestInputs};

/// The largest image we accept (issue 6: "the image is at most 4 MiB").
pub const MAX_IMAGE_SIZE: u64 = 4 * 1024 * 1024;
/// File name of the kernel in the image directory.
pub const KERNEL_FILE: &str = "kms.efi";
/// File name of the manifest in the image directory.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The name of the TDVF copy in the image directory (the manifest's `tdx.firmware.name`).
pub const TDX_FIRMWARE_FILE: &str = "OVMF.inteltdx.fd";
/// The firmware descriptor fixture of development and test builds, relative to the repository root: a 4 KiB
/// AmdSev descriptor that is measured but not booted ([`Firmware::DevFixture`]).
pub const DEV_FIRMWARE: &str = "ovmf-config/amdsev-suffix.bin";
/// The command line of a deployment build: DHCP; attestation is whatever the hardware provides (no
/// `ckms.attestation=emulated`).
pub const DEFAULT_CMDLINE: &str = "ckms.ip=dhcp";
/// The command line of a development build: DHCP with QEMU user networking's address as fallback, emulated
/// attestation through `snp-emu`.
pub const DEV_CMDLINE: &str =
    "ckms.ip=dhcp,fallback=10.0.2.15/24,gw=10.0.2.2 ckms.attestation=emulated";
/// The kernel feature of the emulated attestation backend (`snp-emu` on COM2, TCG only).
pub const EMULATED_FEATURE: &str = "emulated-attestation";
/// Kernel features of a development build.
pub const DEV_FEATURES: &[&str] = &[EMULATED_FEATURE];

/// Which firmware the manifest is computed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Firmware {
    /// None chosen: [`build`] and [`write_image`] fail with [`BuildError::NoFirmware`].
    Unset,
    /// The firmware the host boots (a whole AmdSevX64 OVMF for a deployment).
    File(PathBuf),
    /// The test fixture [`DEV_FIRMWARE`] (development and tests only).
    DevFixture,
}

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Repository root (holds `kernel/` and `ovmf-config/`).
    pub repo: PathBuf,
    /// Output directory (`target/image`).
    pub out_dir: PathBuf,
    /// Kernel command line recorded in the manifest and measured.
    pub cmdline: String,
    /// vCPUs.
    pub vcpus: u32,
    /// vCPU model name.
    pub vcpu_type: String,
    /// Guest policy (`POLICY`).
    pub guest_policy: u64,
    /// Guest features (`SEV_FEATURES`).
    pub guest_features: u64,
    /// Firmware the manifest is computed over.
    pub firmware: Firmware,
    /// TDVF (IntelTdx OVMF, from ovmf-config/build-inteltdx.sh) for the manifest's `tdx` section;
    /// `None`: no `tdx` section.
    pub tdx_firmware: Option<PathBuf>,
    /// Kernel cargo features.
    pub kernel_features: Vec<String>,
    /// Cargo target directory for the kernel build; `None`: `kernel/target`.
    pub cargo_target_dir: Option<PathBuf>,
}

impl BuildOptions {
    /// A deployment build of the repository at `repo`, output in `repo/target/image`: no kernel features,
    /// [`DEFAULT_CMDLINE`], 1 vCPU `EPYC-v4`, the default guest policy, and no firmware yet (set
    /// [`BuildOptions::firmware`] to [`Firmware::File`]).
    pub fn new(repo: impl Into<PathBuf>) -> Self {
        let repo = repo.into();
        Self {
            out_dir: repo.join("target/image"),
            repo,
            cmdline: DEFAULT_CMDLINE.to_owned(),
            vcpus: 1,
            vcpu_type: "EPYC-v4".to_owned(),
            guest_policy: crate::manifest::DEFAULT_GUEST_POLICY,
            guest_features: 0x1,
            firmware: Firmware::Unset,
            kernel_features: Vec::new(),
            tdx_firmware: None,
            cargo_target_dir: None,
        }
    }

    /// A development build (tests, quickstart): [`Firmware::DevFixture`], [`DEV_FEATURES`], [`DEV_CMDLINE`].
    pub fn dev(repo: impl Into<PathBuf>) -> Self {
        Self {
            cmdline: DEV_CMDLINE.to_owned(),
            firmware: Firmware::DevFixture,
            kernel_features: DEV_FEATURES.iter().map(|s| (*s).to_owned()).collect(),
            ..Self::new(repo)
        }
    }
}

/// The result of a build.
#[derive(Debug, Clone)]
pub struct Built {
    /// `out_dir/kms.efi`.
    pub kernel: PathBuf,
    /// `out_dir/manifest.json`.
    pub manifest_path: PathBuf,
    /// The manifest.
    pub manifest: Manifest,
}

/// Errors of [`build`].
#[derive(Debug)]
pub enum BuildError {
    /// A file could not be read or written.
    Io(PathBuf, io::Error),
    /// `kernel/build.sh` failed or printed no image path.
    KernelBuild(String),
    /// The kernel is larger than [`MAX_IMAGE_SIZE`].
    TooLarge(u64),
    /// The manifest could not be computed.
    Manifest(ManifestError),
    /// The command line cannot be passed to QEMU's `-append` (non-ASCII, NUL or newline).
    BadCmdline,
    /// The kernel binary does (`found`) or does not carry a loopback stub (loopback-GHCB or
    /// loopback-TDX, [`LOOPBACK_STUBS`]), and the features the manifest would record say
    /// otherwise (`declared`).
    StubMismatch {
        /// The stub's feature (`loopback-ghcb` / `loopback-tdx`).
        feature: &'static str,
        /// `feature` is among the kernel features.
        declared: bool,
        /// The binary contains the stub's marker.
        found: bool,
    },
    /// No firmware was chosen ([`Firmware::Unset`]): a deployment names the OVMF it boots.
    NoFirmware,
    /// The command line asks for `ckms.attestation=emulated` but the kernel is built without the
    /// [`EMULATED_FEATURE`] feature (it would refuse to start).
    EmulatedWithoutFeature,
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(p, e) => write!(f, "{}: {e}", p.display()),
            Self::KernelBuild(what) => write!(f, "kernel build failed: {what}"),
            Self::TooLarge(n) => write!(
                f,
                "kernel image is {n} bytes, over the {MAX_IMAGE_SIZE}-byte limit"
            ),
            Self::Manifest(e) => write!(f, "{e}"),
            Self::BadCmdline => f.write_str("command line must be printable ASCII"),
            Self::StubMismatch {
                feature,
                declared,
                found,
            } => write!(
                f,
                "kernel binary {} the {feature} stub but its features {} {feature}",
                if *found { "contains" } else { "lacks" },
                if *declared {
                    "include"
                } else {
                    "do not include"
                }
            ),
            Self::NoFirmware => f.write_str(
                "no firmware: pass --firmware <AmdSevX64 OVMF.fd> (ovmf-config/build-amdsev.sh), or \
                 --dev-firmware for a development build measured over the test descriptor",
            ),
            Self::EmulatedWithoutFeature => write!(
                f,
                "the command line asks for ckms.attestation=emulated but the kernel is built without \
                 the {EMULATED_FEATURE} feature (pass --features {EMULATED_FEATURE})"
            ),
        }
    }
}

impl std::error::Error for BuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(_, e) => Some(e),
            Self::Manifest(e) => Some(e),
            _ => None,
        }
    }
}

/// The kernel feature of the loopback-GHCB test build (VMGEXIT and PVALIDATE stubbed).
pub const LOOPBACK_FEATURE: &str = "loopback-ghcb";
/// A string only the loopback-GHCB kernel contains (`kernel/src/loopback.rs`, `MARKER`).
pub const LOOPBACK_MARKER: &[u8] = b"LOOPBACK-GHCB TEST BUILD";
/// The kernel feature of the loopback-TDX test build (TDCALL stubbed).
pub const LOOPBACK_TDX_FEATURE: &str = "loopback-tdx";
/// A string only the loopback-TDX kernel contains (`kernel/src/loopback_tdx.rs`, `MARKER`).
pub const LOOPBACK_TDX_MARKER: &[u8] = b"LOOPBACK-TDX TEST BUILD";
/// Every loopback stub: `(kernel feature, marker only that build contains)`.
pub const LOOPBACK_STUBS: [(&str, &[u8]); 2] = [
    (LOOPBACK_FEATURE, LOOPBACK_MARKER),
    (LOOPBACK_TDX_FEATURE, LOOPBACK_TDX_MARKER),
];

/// Checks that the kernel binary carries the loopback stub exactly when `features` say so, so
/// the manifest (which records the features) names the build that boots: a production
/// manifest can never describe a kernel with the stub.
pub fn check_stub(kernel: &[u8], features: &[String]) -> Result<(), BuildError> {
    for (feature, marker) in LOOPBACK_STUBS {
        let declared = features.iter().any(|f| f == feature);
        let found = kernel.windows(marker.len()).any(|w| w == marker);
        if declared != found {
            return Err(BuildError::StubMismatch {
                feature,
                declared,
                found,
            });
        }
    }
    Ok(())
}

fn read(p: &Path) -> Result<Vec<u8>, BuildError> {
    fs::read(p).map_err(|e| BuildError::Io(p.to_owned(), e))
}

/// Writes `bytes` to `path` through a temporary file and a rename, so readers never see half a file.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), BuildError> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, bytes).map_err(|e| BuildError::Io(tmp.clone(), e))?;
    fs::rename(&tmp, path).map_err(|e| BuildError::Io(path.to_owned(), e))
}

/// Runs `kernel/build.sh` and returns the path of the PE it built.
pub fn build_kernel(opts: &BuildOptions) -> Result<PathBuf, BuildError> {
    let script = opts.repo.join("kernel/build.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(&script)
        .current_dir(opts.repo.join("kernel"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if !opts.kernel_features.is_empty() {
        cmd.arg("--features").arg(opts.kernel_features.join(","));
    }
    match &opts.cargo_target_dir {
        Some(dir) => cmd.env("CARGO_TARGET_DIR", dir),
        // The caller's target dir belongs to the host workspace; the kernel keeps its own.
        None => cmd.env_remove("CARGO_TARGET_DIR"),
    };
    // Flags meant for host builds must not leak into the freestanding build.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "RUSTC_WRAPPER",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd
        .output()
        .map_err(|e| BuildError::Io(script.clone(), e))?;
    if !out.status.success() {
        return Err(BuildError::KernelBuild(format!(
            "{} exited with {}",
            script.display(),
            out.status
        )));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default()
        .trim();
    if line.is_empty() {
        return Err(BuildError::KernelBuild(
            "build.sh printed no image path".into(),
        ));
    }
    let path = PathBuf::from(line);
    Ok(if path.is_absolute() {
        path
    } else {
        opts.repo.join("kernel").join(path)
    })
}

/// Writes the image directory for an already built kernel: copies it and computes the manifest.
pub fn write_image(opts: &BuildOptions, kernel_path: &Path) -> Result<Built, BuildError> {
    check_options(opts)?;
    let kernel = read(kernel_path)?;
    let size = kernel.len() as u64;
    if size > MAX_IMAGE_SIZE {
        return Err(BuildError::TooLarge(size));
    }
    check_stub(&kernel, &opts.kernel_features)?;
    let fw_path = match &opts.firmware {
        Firmware::Unset => return Err(BuildError::NoFirmware),
        Firmware::File(p) => p.clone(),
        Firmware::DevFixture => opts.repo.join(DEV_FIRMWARE),
    };
    let firmware = read(&fw_path)?;
    let fw_name = fw_path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("firmware.bin");
    let tdx_firmware = match &opts.tdx_firmware {
        Some(p) => Some(read(p)?),
        None => None,
    };
    let manifest = Manifest::compute(&ManifestInputs {
        kernel_file: KERNEL_FILE,
        kernel: &kernel,
        kernel_features: &opts.kernel_features,
        firmware_name: fw_name,
        firmware: &firmware,
        cmdline: &opts.cmdline,
        vcpus: opts.vcpus,
        vcpu_type: &opts.vcpu_type,
        guest_policy: opts.guest_policy,
        guest_features: opts.guest_features,
        tdx_firmware: tdx_firmware.as_deref().map(|fw| (TDX_FIRMWARE_FILE, fw)),
    })
    .map_err(BuildError::Manifest)?;
    fs::create_dir_all(&opts.out_dir).map_err(|e| BuildError::Io(opts.out_dir.clone(), e))?;
    let kernel_out = opts.out_dir.join(KERNEL_FILE);
    let manifest_path = opts.out_dir.join(MANIFEST_FILE);
    write_atomic(&kernel_out, &kernel)?;
    write_atomic(&manifest_path, manifest.to_json().as_bytes())?;
    // The runner hands the same descriptor to snp-emu, so the image directory is self-contained.
    write_atomic(&opts.out_dir.join(fw_name), &firmware)?;
    if let Some(fw) = &tdx_firmware {
        write_atomic(&opts.out_dir.join(TDX_FIRMWARE_FILE), fw)?;
    }
    Ok(Built {
        kernel: kernel_out,
        manifest_path,
        manifest,
    })
}

/// The rules checked before anything is built: printable command line, a firmware chosen, emulated
/// attestation only with its feature, and a launchable guest policy.
pub fn check_options(opts: &BuildOptions) -> Result<(), BuildError> {
    if !opts.cmdline.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(BuildError::BadCmdline);
    }
    if opts.firmware == Firmware::Unset {
        return Err(BuildError::NoFirmware);
    }
    if opts
        .cmdline
        .split(' ')
        .any(|item| item == "ckms.attestation=emulated")
        && !opts.kernel_features.iter().any(|f| f == EMULATED_FEATURE)
    {
        return Err(BuildError::EmulatedWithoutFeature);
    }
    crate::manifest::check_guest_policy(opts.guest_policy).map_err(BuildError::Manifest)?;
    Ok(())
}

/// `image build`: builds the kernel and writes `kms.efi`, `manifest.json` and the firmware descriptor into
/// `opts.out_dir`. The options are checked ([`check_options`]) before the kernel is built.
pub fn build(opts: &BuildOptions) -> Result<Built, BuildError> {
    check_options(opts)?;
    let kernel = build_kernel(opts)?;
    write_image(opts, &kernel)
}

/// Finds the repository root: the first ancestor of `start` holding `kernel/build.sh` and `ovmf-config/`.
pub fn find_repo(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .find(|d| d.join("kernel/build.sh").is_file() && d.join("ovmf-config").is_dir())
        .map(Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stub_must_match_the_declared_features() {
        let prod = b"MZ...kernel...".to_vec();
        let mut loopback = prod.clone();
        loopback.extend_from_slice(LOOPBACK_MARKER);
        let none: Vec<String> = vec!["emulated-attestation".into()];
        let with: Vec<String> = vec!["emulated-attestation".into(), LOOPBACK_FEATURE.into()];
        assert!(matches!(check_stub(&prod, &none), Ok(())));
        assert!(matches!(check_stub(&loopback, &with), Ok(())));
        assert!(matches!(
            check_stub(&loopback, &none),
            Err(BuildError::StubMismatch {
                feature: LOOPBACK_FEATURE,
                declared: false,
                found: true
            })
        ));
        assert!(matches!(
            check_stub(&prod, &with),
            Err(BuildError::StubMismatch {
                feature: LOOPBACK_FEATURE,
                declared: true,
                found: false
            })
        ));
    }

    #[test]
    fn tdx_stub_must_match_the_declared_features() {
        let prod = b"MZ...kernel...".to_vec();
        let mut tdx = prod.clone();
        tdx.extend_from_slice(LOOPBACK_TDX_MARKER);
        let none: Vec<String> = vec!["emulated-attestation".into()];
        let with: Vec<String> = vec!["emulated-attestation".into(), LOOPBACK_TDX_FEATURE.into()];
        assert!(matches!(check_stub(&tdx, &with), Ok(())));
        assert!(matches!(
            check_stub(&tdx, &none),
            Err(BuildError::StubMismatch {
                feature: LOOPBACK_TDX_FEATURE,
                declared: false,
                found: true
            })
        ));
        assert!(matches!(
            check_stub(&prod, &with),
            Err(BuildError::StubMismatch {
                feature: LOOPBACK_TDX_FEATURE,
                declared: true,
                found: false
            })
        ));
        // A TDX stub declared as the GHCB one is refused too.
        let ghcb: Vec<String> = vec![LOOPBACK_FEATURE.into()];
        assert!(matches!(
            check_stub(&tdx, &ghcb),
            Err(BuildError::StubMismatch {
                feature: LOOPBACK_FEATURE,
                declared: true,
                found: false
            })
        ));
    }

    fn repo() -> PathBuf {
        find_repo(Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap_or_else(|| panic!("no repo"))
    }

    /// A stand-in kernel file (the manifest hashes any bytes; nothing is booted here).
    fn fake_kernel(dir: &Path) -> PathBuf {
        let p = dir.join("k.efi");
        fs::write(&p, b"MZ not really a kernel").unwrap_or_else(|e| panic!("{e}"));
        p
    }

    #[test]
    fn a_deployment_build_names_its_firmware() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mut opts = BuildOptions::new(repo());
        opts.out_dir = tmp.path().join("out");
        assert!(opts.kernel_features.is_empty());
        assert!(!opts.cmdline.contains("ckms.attestation=emulated"));
        assert!(matches!(check_options(&opts), Err(BuildError::NoFirmware)));
        // build() refuses before running the kernel build.
        assert!(matches!(build(&opts), Err(BuildError::NoFirmware)));
        let kernel = fake_kernel(tmp.path());
        assert!(matches!(
            write_image(&opts, &kernel),
            Err(BuildError::NoFirmware)
        ));
        assert!(!opts.out_dir.exists());
        // With a firmware file it builds, without the emulated feature.
        opts.firmware = Firmware::File(opts.repo.join(DEV_FIRMWARE));
        let built = write_image(&opts, &kernel).unwrap_or_else(|e| panic!("{e}"));
        assert!(built.manifest.kernel_features.is_empty());
        assert_eq!(built.manifest.cmdline, DEFAULT_CMDLINE);
        assert_eq!(built.manifest.guest_policy, "0x30000");
    }

    #[test]
    fn emulated_attestation_needs_its_feature() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mut opts = BuildOptions::new(repo());
        opts.out_dir = tmp.path().join("out");
        opts.firmware = Firmware::DevFixture;
        opts.cmdline = DEV_CMDLINE.to_owned();
        assert!(matches!(
            check_options(&opts),
            Err(BuildError::EmulatedWithoutFeature)
        ));
        assert!(matches!(
            build(&opts),
            Err(BuildError::EmulatedWithoutFeature)
        ));
        // The development configuration is consistent and records the fixture and the feature.
        let dev = BuildOptions {
            out_dir: tmp.path().join("dev"),
            ..BuildOptions::dev(repo())
        };
        let built = write_image(&dev, &fake_kernel(tmp.path())).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(built.manifest.kernel_features, [EMULATED_FEATURE]);
        assert_eq!(built.manifest.firmware.name, "amdsev-suffix.bin");
        assert_eq!(built.manifest.firmware.kind, "amdsev-suffix");
    }

    #[test]
    fn refuses_an_open_or_unlaunchable_guest_policy() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        for policy in [0x0, 0x10000, 0xb0000, 0x70000] {
            let opts = BuildOptions {
                out_dir: tmp.path().join("out"),
                guest_policy: policy,
                ..BuildOptions::dev(repo())
            };
            assert!(
                matches!(
                    check_options(&opts),
                    Err(BuildError::Manifest(ManifestError::GuestPolicy(p))) if p == policy
                ),
                "{policy:#x}"
            );
        }
        let opts = BuildOptions {
            cmdline: "ckms.ip=dhcp\n".into(),
            ..BuildOptions::dev(repo())
        };
        assert!(matches!(check_options(&opts), Err(BuildError::BadCmdline)));
    }
}
