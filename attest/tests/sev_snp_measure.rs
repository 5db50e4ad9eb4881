//! Cross-check of `attest::measure::snp` against the independent `sev-snp-measure` tool (PyPI).
//!
//! The tool is found, in order: `$SEV_SNP_MEASURE` (path to a `sev-snp-measure` executable),
//! `python3 -m sevsnpmeasure.cli` if the package is importable, or a virtualenv created in this
//! test's temp dir with `pip install sev-snp-measure==0.0.13`. If none works the test fails: it
//! never skips. Inputs are generated from a fixed seed (override with `ATTEST_XCHECK_SEED`).

use std::path::{Path, PathBuf};
use std::process::Command;

use attest::measure::snp::{SnpLaunch, VcpuType, VmmType, firmware_digest, launch_digest};

const AMDSEV: &[u8] = include_bytes!("../testdata/snp/ovmf_AmdSev_suffix.bin");
const OVMFX64: &[u8] = include_bytes!("../testdata/snp/ovmf_OvmfX64_suffix.bin");
const TOOL_VERSION: &str = "0.0.13";

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let p = std::env::temp_dir().join(format!("attest-xcheck-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How to run the tool: program and leading arguments.
struct Tool {
    program: PathBuf,
    prefix: Vec<String>,
}

impl Tool {
    fn find(tmp: &Path) -> Tool {
        if let Some(p) = std::env::var_os("SEV_SNP_MEASURE") {
            return Tool {
                program: PathBuf::from(p),
                prefix: vec![],
            };
        }
        let importable = Command::new("python3")
            .args(["-c", "import sevsnpmeasure.cli"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if importable {
            return Tool {
                program: "python3".into(),
                prefix: vec!["-m".into(), "sevsnpmeasure.cli".into()],
            };
        }
        let venv = testkit::pip_venv(
            tmp,
            &format!("sev-snp-measure=={TOOL_VERSION}"),
            "set SEV_SNP_MEASURE to an installed tool",
        );
        Tool {
            program: venv.join("bin/sev-snp-measure"),
            prefix: vec![],
        }
    }

    fn run(&self, args: &[String]) -> String {
        let out = Command::new(&self.program)
            .args(&self.prefix)
            .args(args)
            .output()
            .expect("run sev-snp-measure");
        assert!(
            out.status.success(),
            "sev-snp-measure {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }
}

/// xorshift64*: deterministic test inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn bytes(&mut self, max_len: u64) -> Vec<u8> {
        let len = self.below(max_len);
        (0..len).map(|_| self.next() as u8).collect()
    }
    fn cmdline(&mut self) -> String {
        let len = self.below(80) as usize;
        (0..len)
            .map(|_| (b' ' + self.below(95) as u8) as char)
            .collect()
    }
}

#[test]
fn agrees_with_sev_snp_measure() {
    let tmp = TempDir::new();
    let tool = Tool::find(&tmp.0);
    let seed = std::env::var("ATTEST_XCHECK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_0FA7_7E57_u64);
    eprintln!("cross-check seed {seed:#x}");
    let mut rng = Rng(seed | 1);

    let amdsev = tmp.0.join("amdsev.bin");
    let ovmfx64 = tmp.0.join("ovmfx64.bin");
    std::fs::write(&amdsev, AMDSEV).unwrap();
    std::fs::write(&ovmfx64, OVMFX64).unwrap();

    // Firmware-only digests.
    for (path, bytes) in [(&amdsev, AMDSEV), (&ovmfx64, OVMFX64)] {
        let theirs = tool.run(&[
            "--mode".into(),
            "snp:ovmf-hash".into(),
            "--ovmf".into(),
            path.display().to_string(),
        ]);
        assert_eq!(
            theirs,
            hex::encode(firmware_digest(bytes).unwrap()),
            "ovmf hash of {}",
            path.display()
        );
    }

    let vmms = [VmmType::Qemu, VmmType::Ec2, VmmType::Gce];
    let mut cases = 0;
    for i in 0..48usize {
        let vcpu_type = VcpuType::ALL[i % VcpuType::ALL.len()];
        let vmm = vmms[i % 3];
        let vcpus = 1 + (i / 3 % 4) as u32;
        let guest_features = match rng.below(4) {
            0 => 0x1,
            1 => 0x21,
            2 => rng.next() & 0xFFFF,
            _ => rng.next(),
        };
        let with_kernel = i % 6 != 5;
        let (fw_path, fw) = if with_kernel {
            (&amdsev, AMDSEV)
        } else {
            (&ovmfx64, OVMFX64)
        };
        let kernel = if with_kernel {
            rng.bytes(70_000)
        } else {
            vec![]
        };
        let initrd = if with_kernel && rng.below(2) == 0 {
            rng.bytes(20_000)
        } else {
            vec![]
        };
        let cmdline = if with_kernel {
            rng.cmdline()
        } else {
            String::new()
        };

        let ours = launch_digest(&SnpLaunch {
            firmware: fw,
            kernel: &kernel,
            initrd: &initrd,
            cmdline: &cmdline,
            vcpus,
            vcpu_type,
            guest_features,
            vmm,
        })
        .unwrap();

        let mut args: Vec<String> = vec![
            "--mode".into(),
            "snp".into(),
            "--ovmf".into(),
            fw_path.display().to_string(),
            "--vcpus".into(),
            vcpus.to_string(),
            "--vcpu-type".into(),
            vcpu_type.to_string(),
            "--vmm-type".into(),
            vmm.to_string(),
            format!("--guest-features={guest_features:#x}"),
        ];
        if with_kernel {
            let kpath = tmp.0.join(format!("kernel{i}"));
            std::fs::write(&kpath, &kernel).unwrap();
            args.push("--kernel".into());
            args.push(kpath.display().to_string());
            if !initrd.is_empty() {
                let ipath = tmp.0.join(format!("initrd{i}"));
                std::fs::write(&ipath, &initrd).unwrap();
                args.push("--initrd".into());
                args.push(ipath.display().to_string());
            }
            args.push(format!("--append={cmdline}"));
        }
        let theirs = tool.run(&args);
        assert_eq!(theirs, hex::encode(ours), "case {i}: {args:?}");
        cases += 1;
    }

    // A whole firmware image: the distribution's OVMF (Debian package `ovmf`, a test
    // prerequisite; it has SEV metadata but no kernel-hashes section).
    let ovmf_fd = Path::new("/usr/share/ovmf/OVMF.fd");
    {
        let fw = std::fs::read(ovmf_fd).expect("install the Debian package ovmf");
        let ours = launch_digest(&SnpLaunch {
            firmware: &fw,
            kernel: b"",
            initrd: b"",
            cmdline: "",
            vcpus: 2,
            vcpu_type: VcpuType::EpycMilan,
            guest_features: 0x1,
            vmm: VmmType::Qemu,
        })
        .unwrap();
        let theirs = tool.run(&[
            "--mode".into(),
            "snp".into(),
            "--ovmf".into(),
            ovmf_fd.display().to_string(),
            "--vcpus=2".into(),
            "--vcpu-type=EPYC-Milan".into(),
        ]);
        assert_eq!(theirs, hex::encode(ours), "{}", ovmf_fd.display());
        cases += 1;
    }
    eprintln!("{cases} launch digests agree with sev-snp-measure");
}
