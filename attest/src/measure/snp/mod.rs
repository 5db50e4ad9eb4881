//! The SEV-SNP launch digest: what `MEASUREMENT` in an attestation report must be for a guest
//! launched from given firmware, kernel, initrd, command line and vCPU configuration.
//!
//! The firmware extends the digest once per page given to `SNP_LAUNCH_UPDATE` (AMD 56860 rev 1.58,
//! §8.17 and Table 67, "PAGE_INFO"): `ld = SHA-384(ld ‖ contents ‖ 0x70u16 ‖ page_type ‖ is_imi ‖
//! vmpl3..1 perms ‖ 0 ‖ gpa)`. The hypervisor (QEMU) gives, in order:
//! 1. every page of the firmware image as NORMAL pages mapped to end at 4 GiB;
//! 2. the OVMF SEV metadata sections in file order (zero, secrets, CPUID pages, and the page that
//!    holds the kernel hashes table);
//! 3. one VMSA per vCPU (BSP at the reset vector, APs at the SEV-ES reset block's address).
//!
//! This is the algorithm of the `sev-snp-measure` tool (PyPI), including its EC2 and GCE
//! variants; the tests check both its published vectors and the tool itself on random inputs.

pub(crate) mod ovmf;
pub mod vmsa;

use core::fmt;
use core::str::FromStr;

use sha2::{Digest, Sha256, Sha384};

use crate::ratls::guid_le;
pub use ovmf::{Ovmf, OvmfError, Section, SectionType};

/// A SHA-384 launch digest.
pub type Digest384 = [u8; 48];

/// Most pages the SEV metadata sections of one image may add (4 GiB): bounds the work a
/// hostile image can cause.
pub const MAX_METADATA_PAGES: u64 = 1 << 20;

/// GPA the firmware records for VMSA pages: `-1` page-aligned with bits above 51 clear.
pub const VMSA_GPA: u64 = 0xFFFF_FFFF_F000;

/// Page types of `SNP_LAUNCH_UPDATE` (56860 Table 68, "PAGE_TYPE Field Encodings").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum PageType {
    /// Normal data page (contents measured).
    Normal = 1,
    /// VMSA page (contents measured).
    Vmsa = 2,
    /// Zero page.
    Zero = 3,
    /// Unmeasured page.
    Unmeasured = 4,
    /// Secrets page.
    Secrets = 5,
    /// CPUID page.
    Cpuid = 6,
}

/// Errors from computing a launch digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MeasureError {
    /// The firmware image is malformed.
    Ovmf(OvmfError),
    /// The firmware has no SEV-ES reset block, so AP VMSAs cannot be built.
    MissingResetBlock,
    /// A kernel, initrd or command line was given but the firmware has no `SNP_KERNEL_HASHES`
    /// section to measure them (QEMU would refuse the launch with `kernel-hashes=on`).
    KernelHashesUnsupported,
    /// The firmware has a kernel-hashes section but no hashes-table GPA entry.
    MissingHashTableGpa,
    /// The kernel-hashes section is not exactly one page.
    BadKernelHashesSection,
    /// A zero/unmeasured section size is not a multiple of 4 KiB.
    UnalignedSection,
    /// `vcpus` is zero.
    NoVcpus,
    /// The metadata sections add more than [`MAX_METADATA_PAGES`] pages.
    TooManyPages,
}

impl fmt::Display for MeasureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ovmf(e) => write!(f, "firmware: {e}"),
            Self::MissingResetBlock => f.write_str("firmware has no SEV-ES reset block"),
            Self::KernelHashesUnsupported => f.write_str(
                "kernel/initrd/cmdline given but the firmware has no SNP_KERNEL_HASHES section",
            ),
            Self::MissingHashTableGpa => f.write_str("firmware has no SEV hash table GPA entry"),
            Self::BadKernelHashesSection => {
                f.write_str("SNP_KERNEL_HASHES section is not one page")
            }
            Self::UnalignedSection => {
                f.write_str("SEV metadata section size is not a multiple of 4 KiB")
            }
            Self::NoVcpus => f.write_str("at least one vCPU is required"),
            Self::TooManyPages => f.write_str("SEV metadata sections add too many pages"),
        }
    }
}

impl core::error::Error for MeasureError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Ovmf(e) => Some(e),
            _ => None,
        }
    }
}

impl From<OvmfError> for MeasureError {
    fn from(e: OvmfError) -> Self {
        Self::Ovmf(e)
    }
}

/// The hypervisor that builds the initial vCPU state; they differ in a few VMSA fields and in
/// how they add the metadata pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VmmType {
    /// QEMU/KVM.
    #[default]
    Qemu,
    /// Amazon EC2 (CPUID page measured last).
    Ec2,
    /// Google Compute Engine (SEC memory unmeasured, own PAT).
    Gce,
}

impl FromStr for VmmType {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, UnknownName> {
        match s.to_ascii_lowercase().as_str() {
            "qemu" => Ok(Self::Qemu),
            "ec2" => Ok(Self::Ec2),
            "gce" => Ok(Self::Gce),
            _ => Err(UnknownName),
        }
    }
}

impl fmt::Display for VmmType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The spelling `sev-snp-measure --vmm-type` takes.
        f.write_str(match self {
            Self::Qemu => "QEMU",
            Self::Ec2 => "ec2",
            Self::Gce => "gce",
        })
    }
}

/// A name that is not a known vCPU or VMM type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownName;

impl fmt::Display for UnknownName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unknown name")
    }
}

impl core::error::Error for UnknownName {}

macro_rules! vcpu_types {
    ($( $variant:ident = $name:literal => ($fam:literal, $model:literal, $step:literal), )*) => {
        /// A vCPU model of QEMU (`builtin_x86_defs`), named as `sev-snp-measure --vcpu-type` takes it.
        /// The VMSA carries its CPUID signature (family/model/stepping) in RDX.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum VcpuType {
            $( #[doc = $name] $variant, )*
            /// Any other model, by family, model and stepping.
            Custom { family: u32, model: u32, stepping: u32 },
        }

        impl VcpuType {
            /// Every named type.
            pub const ALL: &'static [VcpuType] = &[ $( VcpuType::$variant, )* ];

            /// (family, model, stepping).
            pub fn fms(self) -> (u32, u32, u32) {
                match self {
                    $( VcpuType::$variant => ($fam, $model, $step), )*
                    VcpuType::Custom { family, model, stepping } => (family, model, stepping),
                }
            }

            /// The name, or `None` for [`VcpuType::Custom`].
            pub fn name(self) -> Option<&'static str> {
                match self {
                    $( VcpuType::$variant => Some($name), )*
                    VcpuType::Custom { .. } => None,
                }
            }
        }

        impl FromStr for VcpuType {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<Self, UnknownName> {
                match s {
                    $( $name => Ok(VcpuType::$variant), )*
                    _ => Err(UnknownName),
                }
            }
        }
    };
}

vcpu_types! {
    Epyc = "EPYC" => (23, 1, 2),
    EpycV1 = "EPYC-v1" => (23, 1, 2),
    EpycV2 = "EPYC-v2" => (23, 1, 2),
    EpycIbpb = "EPYC-IBPB" => (23, 1, 2),
    EpycV3 = "EPYC-v3" => (23, 1, 2),
    EpycV4 = "EPYC-v4" => (23, 1, 2),
    EpycRome = "EPYC-Rome" => (23, 49, 0),
    EpycRomeV1 = "EPYC-Rome-v1" => (23, 49, 0),
    EpycRomeV2 = "EPYC-Rome-v2" => (23, 49, 0),
    EpycRomeV3 = "EPYC-Rome-v3" => (23, 49, 0),
    EpycMilan = "EPYC-Milan" => (25, 1, 1),
    EpycMilanV1 = "EPYC-Milan-v1" => (25, 1, 1),
    EpycMilanV2 = "EPYC-Milan-v2" => (25, 1, 1),
    EpycGenoa = "EPYC-Genoa" => (25, 17, 0),
    EpycGenoaV1 = "EPYC-Genoa-v1" => (25, 17, 0),
    EpycTurin = "EPYC-Turin" => (26, 0, 0),
}

impl VcpuType {
    /// The CPUID Fn0000_0001 EAX signature (AMD CPUID specification 25481, "Family, Model,
    /// Stepping Identifiers"): families above 0Fh put 0Fh in the base field and the rest in the
    /// extended family.
    pub fn signature(self) -> u32 {
        let (family, model, stepping) = self.fms();
        let (fam_low, fam_high) = if family > 0xF {
            (0xF, (family - 0xF) & 0xFF)
        } else {
            (family, 0)
        };
        (fam_high << 20)
            | (((model >> 4) & 0xF) << 16)
            | (fam_low << 8)
            | ((model & 0xF) << 4)
            | (stepping & 0xF)
    }
}

impl fmt::Display for VcpuType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => {
                let (fam, model, step) = self.fms();
                write!(f, "family {fam} model {model} stepping {step}")
            }
        }
    }
}

/// The inputs of an SNP launch.
#[derive(Debug, Clone, Copy)]
pub struct SnpLaunch<'a> {
    /// The OVMF image (whole file, or the AmdSev 4 KiB suffix descriptor).
    pub firmware: &'a [u8],
    /// The kernel as given to QEMU `-kernel`.
    pub kernel: &'a [u8],
    /// The initrd (empty for none).
    pub initrd: &'a [u8],
    /// The kernel command line (QEMU hashes it with a trailing NUL).
    pub cmdline: &'a str,
    /// Number of vCPUs (one VMSA each).
    pub vcpus: u32,
    /// vCPU model.
    pub vcpu_type: VcpuType,
    /// `SEV_FEATURES` of the VMSAs (QEMU's default for SNP is 0x1, SNPActive).
    pub guest_features: u64,
    /// The hypervisor.
    pub vmm: VmmType,
}

/// The running launch digest (the firmware's guest context `LD`).
#[derive(Clone, PartialEq, Eq)]
pub struct LaunchDigest {
    ld: Digest384,
}

impl Default for LaunchDigest {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for LaunchDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LaunchDigest({})", crate::snp::report::Hex(&self.ld))
    }
}

impl LaunchDigest {
    /// A fresh context (48 zero bytes).
    pub fn new() -> Self {
        Self { ld: [0; 48] }
    }

    /// Continue from a digest computed earlier (e.g. the firmware-only digest).
    pub fn from_digest(ld: Digest384) -> Self {
        Self { ld }
    }

    /// The current value.
    pub fn digest(&self) -> Digest384 {
        self.ld
    }

    /// Extend with one `PAGE_INFO` (56860 Table 67).
    pub fn update(&mut self, page_type: PageType, gpa: u64, contents: &Digest384) {
        let mut h = Sha384::new();
        h.update(self.ld);
        h.update(contents);
        h.update(0x70u16.to_le_bytes()); // PAGE_INFO length
        h.update([page_type as u8, 0]); // page type, IS_IMI
        h.update([0u8; 4]); // VMPL3..1 permissions, reserved
        h.update(gpa.to_le_bytes());
        self.ld.copy_from_slice(&h.finalize());
    }

    /// Extend with NORMAL pages holding `data` (whole 4 KiB pages; a short tail is zero-padded).
    pub fn update_normal_pages(&mut self, gpa: u64, data: &[u8]) {
        for (i, page) in data.chunks(4096).enumerate() {
            let contents: Digest384 = if page.len() == 4096 {
                Sha384::digest(page).into()
            } else {
                let mut full = [0u8; 4096];
                full[..page.len()].copy_from_slice(page);
                Sha384::digest(full).into()
            };
            self.update(PageType::Normal, gpa + (i as u64) * 4096, &contents);
        }
    }

    /// Extend with `len / 4096` pages of a contents-less type (zero, unmeasured, ...).
    pub fn update_empty_pages(&mut self, page_type: PageType, gpa: u64, len: u64) {
        let mut off = 0;
        while off < len {
            self.update(page_type, gpa + off, &[0; 48]);
            off += 4096;
        }
    }

    /// Extend with a VMSA page.
    pub fn update_vmsa(&mut self, page: &[u8; vmsa::VMSA_SIZE]) {
        self.update(PageType::Vmsa, VMSA_GPA, &Sha384::digest(page).into());
    }
}

/// The SHA-256 hashes QEMU writes into the kernel hashes table (`-kernel`, `-initrd`, `-append`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelHashes {
    /// SHA-256 of the command line including its trailing NUL.
    pub cmdline: [u8; 32],
    /// SHA-256 of the initrd (of nothing when there is none).
    pub initrd: [u8; 32],
    /// SHA-256 of the kernel.
    pub kernel: [u8; 32],
}

/// `9438d606-4f22-4cc9-b479-a793d411fd21`: header of the SEV hashes table.
pub const SEV_HASH_TABLE_HEADER_GUID: [u8; 16] = guid_le(
    0x9438d606,
    0x4f22,
    0x4cc9,
    [0xb4, 0x79, 0xa7, 0x93, 0xd4, 0x11, 0xfd, 0x21],
);
/// `4de79437-abd2-427f-b835-d5b172d2045b`: kernel entry.
pub const SEV_KERNEL_ENTRY_GUID: [u8; 16] = guid_le(
    0x4de79437,
    0xabd2,
    0x427f,
    [0xb8, 0x35, 0xd5, 0xb1, 0x72, 0xd2, 0x04, 0x5b],
);
/// `44baf731-3a2f-4bd7-9af1-41e29169781d`: initrd entry.
pub const SEV_INITRD_ENTRY_GUID: [u8; 16] = guid_le(
    0x44baf731,
    0x3a2f,
    0x4bd7,
    [0x9a, 0xf1, 0x41, 0xe2, 0x91, 0x69, 0x78, 0x1d],
);
/// `97d02dd8-bd20-4c94-aa78-e7714d36ab2a`: command-line entry.
pub const SEV_CMDLINE_ENTRY_GUID: [u8; 16] = guid_le(
    0x97d02dd8,
    0xbd20,
    0x4c94,
    [0xaa, 0x78, 0xe7, 0x71, 0x4d, 0x36, 0xab, 0x2a],
);

/// Size of the hashes table: header (GUID, u16) and three entries (GUID, u16, SHA-256).
const HASH_TABLE_LEN: usize = 18 + 3 * 50;
/// ... padded to a multiple of 16 bytes.
const HASH_TABLE_PADDED_LEN: usize = HASH_TABLE_LEN.next_multiple_of(16);

impl KernelHashes {
    /// Hash the inputs as QEMU does.
    pub fn new(kernel: &[u8], initrd: &[u8], cmdline: &str) -> Self {
        let mut c = Sha256::new();
        c.update(cmdline.as_bytes());
        c.update([0u8]);
        Self {
            cmdline: c.finalize().into(),
            initrd: Sha256::digest(initrd).into(),
            kernel: Sha256::digest(kernel).into(),
        }
    }

    /// The padded table (QEMU `target/i386/sev.c`, `SevHashTable` / `PaddedSevHashTable`).
    pub fn table(&self) -> [u8; HASH_TABLE_PADDED_LEN] {
        let mut t = [0u8; HASH_TABLE_PADDED_LEN];
        t[..16].copy_from_slice(&SEV_HASH_TABLE_HEADER_GUID);
        t[16..18].copy_from_slice(&(HASH_TABLE_LEN as u16).to_le_bytes());
        for (i, (guid, hash)) in [
            (SEV_CMDLINE_ENTRY_GUID, &self.cmdline),
            (SEV_INITRD_ENTRY_GUID, &self.initrd),
            (SEV_KERNEL_ENTRY_GUID, &self.kernel),
        ]
        .into_iter()
        .enumerate()
        {
            let e = 18 + i * 50;
            t[e..e + 16].copy_from_slice(&guid);
            t[e + 16..e + 18].copy_from_slice(&50u16.to_le_bytes());
            t[e + 18..e + 50].copy_from_slice(hash);
        }
        t
    }

    /// The 4 KiB page holding the table at `offset` (the table GPA's offset in its page).
    pub fn page(&self, offset: usize) -> Option<[u8; 4096]> {
        let mut page = [0u8; 4096];
        let end = offset.checked_add(HASH_TABLE_PADDED_LEN)?;
        page.get_mut(offset..end)?.copy_from_slice(&self.table());
        Some(page)
    }
}

/// The digest of the firmware pages alone (`sev-snp-measure --mode snp:ovmf-hash`), which
/// [`launch_digest_from`] can continue from.
pub fn firmware_digest(firmware: &[u8]) -> Result<Digest384, MeasureError> {
    let ovmf = Ovmf::parse(firmware)?;
    let mut ld = LaunchDigest::new();
    ld.update_normal_pages(ovmf.gpa(), ovmf.data());
    Ok(ld.digest())
}

/// The expected launch digest of `launch`.
///
/// When the firmware has an `SNP_KERNEL_HASHES` section the kernel, initrd and command line are
/// always measured (as `sev-snp-measure --kernel` and QEMU `kernel-hashes=on` do, even for empty
/// inputs). When it has none, they must all be empty.
pub fn launch_digest(launch: &SnpLaunch<'_>) -> Result<Digest384, MeasureError> {
    launch_digest_from(launch, None)
}

/// [`launch_digest`], optionally starting from a precomputed [`firmware_digest`] instead of
/// hashing the firmware pages (the firmware is still parsed for its metadata).
pub fn launch_digest_from(
    launch: &SnpLaunch<'_>,
    firmware_digest: Option<Digest384>,
) -> Result<Digest384, MeasureError> {
    if launch.vcpus == 0 {
        return Err(MeasureError::NoVcpus);
    }
    let ovmf = Ovmf::parse(launch.firmware)?;
    let mut ld = match firmware_digest {
        Some(d) => LaunchDigest::from_digest(d),
        None => {
            let mut ld = LaunchDigest::new();
            ld.update_normal_pages(ovmf.gpa(), ovmf.data());
            ld
        }
    };
    let hashes = if ovmf.has_section(SectionType::SnpKernelHashes) {
        Some(KernelHashes::new(
            launch.kernel,
            launch.initrd,
            launch.cmdline,
        ))
    } else if launch.kernel.is_empty() && launch.initrd.is_empty() && launch.cmdline.is_empty() {
        None
    } else {
        return Err(MeasureError::KernelHashesUnsupported);
    };
    update_metadata_pages(&mut ld, &ovmf, hashes.as_ref(), launch.vmm)?;

    let ap_eip = ovmf
        .sev_es_reset_eip()?
        .ok_or(MeasureError::MissingResetBlock)?;
    let bsp = vmsa::build(
        vmsa::BSP_EIP,
        launch.guest_features,
        launch.vcpu_type,
        launch.vmm,
    );
    ld.update_vmsa(&bsp);
    if launch.vcpus > 1 {
        let ap = vmsa::build(ap_eip, launch.guest_features, launch.vcpu_type, launch.vmm);
        for _ in 1..launch.vcpus {
            ld.update_vmsa(&ap);
        }
    }
    Ok(ld.digest())
}

fn update_metadata_pages(
    ld: &mut LaunchDigest,
    ovmf: &Ovmf<'_>,
    hashes: Option<&KernelHashes>,
    vmm: VmmType,
) -> Result<(), MeasureError> {
    let total: u64 = ovmf
        .sections()
        .iter()
        .map(|s| u64::from(s.size).div_ceil(4096))
        .sum();
    if total > MAX_METADATA_PAGES {
        return Err(MeasureError::TooManyPages);
    }
    let pages = |size: u32| -> Result<u64, MeasureError> {
        if size.is_multiple_of(4096) {
            Ok(u64::from(size))
        } else {
            Err(MeasureError::UnalignedSection)
        }
    };
    for s in ovmf.sections() {
        let gpa = u64::from(s.gpa);
        match s.kind {
            SectionType::SnpSecMem if vmm == VmmType::Gce => {
                ld.update_empty_pages(PageType::Unmeasured, gpa, pages(s.size)?)
            }
            SectionType::SnpSecMem | SectionType::SvsmCaa => {
                ld.update_empty_pages(PageType::Zero, gpa, pages(s.size)?)
            }
            SectionType::SnpSecrets => ld.update(PageType::Secrets, gpa, &[0; 48]),
            // EC2 adds the CPUID page after all other metadata pages.
            SectionType::Cpuid if vmm == VmmType::Ec2 => {}
            SectionType::Cpuid => ld.update(PageType::Cpuid, gpa, &[0; 48]),
            SectionType::SnpKernelHashes => match hashes {
                Some(h) => {
                    if s.size != 4096 {
                        return Err(MeasureError::BadKernelHashesSection);
                    }
                    let table_gpa = ovmf
                        .sev_hashes_table_gpa()?
                        .ok_or(MeasureError::MissingHashTableGpa)?;
                    let page = h
                        .page((table_gpa & 0xFFF) as usize)
                        .ok_or(MeasureError::BadKernelHashesSection)?;
                    ld.update_normal_pages(gpa, &page);
                }
                None => ld.update_empty_pages(PageType::Zero, gpa, pages(s.size)?),
            },
        }
    }
    if vmm == VmmType::Ec2 {
        for s in ovmf
            .sections()
            .iter()
            .filter(|s| s.kind == SectionType::Cpuid)
        {
            ld.update(PageType::Cpuid, u64::from(s.gpa), &[0; 48]);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
