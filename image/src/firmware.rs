//! The firmware a manifest is computed with, and what `image run` boots for it.
//!
//! Two kinds of file can stand in the manifest (both parsed with `attest::measure::snp::Ovmf`):
//! - the 4 KiB **AmdSev suffix descriptor** (`ovmf-config/amdsev-suffix.bin`): enough to compute a launch
//!   digest, not bootable; QEMU then boots Debian's plain OVMF, which checks nothing;
//! - a whole **AmdSevX64 OVMF** (`ovmf-config/build-amdsev.sh`): it has an `SNP_KERNEL_HASHES` metadata
//!   section and refuses a `-kernel` whose SHA-256 (or command line's, or initrd's) differs from the hashes
//!   table at the GPA its footer names. On SNP hardware QEMU (`kernel-hashes=on`) writes that table into the
//!   measured page; under TCG QEMU 7.2 writes nothing, so [`HashesTable`] builds the same bytes (with
//!   `attest`'s encoder, the one the launch digest uses) for the runner to load with `-device loader`.
//!
//! Injecting the table under TCG is only sound because the measurement covers it: `snp-emu` computes the
//! report's measurement from the same firmware, kernel and command line, so a table for another kernel gives
//! another measurement (and OVMF refuses a kernel that does not match the table).

use std::fmt;

use attest::measure::snp::{KernelHashes, Ovmf, OvmfError, SectionType};

/// Value of `firmware.kind` in the manifest for the 4 KiB descriptor (measured, not booted).
pub const KIND_SUFFIX: &str = "amdsev-suffix";
/// Value of `firmware.kind` in the manifest for a whole AmdSevX64 OVMF (measured and booted).
pub const KIND_OVMF: &str = "amdsev-ovmf";

/// What a firmware file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirmwareKind {
    /// Only the last pages of an AmdSev build (footer table and SEV metadata): measurable, not bootable.
    Suffix,
    /// A whole OVMF with an `SNP_KERNEL_HASHES` section and a hashes-table GPA: QEMU can boot it (`-bios`).
    AmdSevOvmf,
}

impl FirmwareKind {
    /// The manifest's `firmware.kind` string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Suffix => KIND_SUFFIX,
            Self::AmdSevOvmf => KIND_OVMF,
        }
    }

    /// Parses the manifest's `firmware.kind` string.
    pub fn from_manifest(s: &str) -> Option<Self> {
        match s {
            KIND_SUFFIX => Some(Self::Suffix),
            KIND_OVMF => Some(Self::AmdSevOvmf),
            _ => None,
        }
    }
}

impl fmt::Display for FirmwareKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The smallest file treated as a whole firmware volume: an OVMF image is at least 1 MiB (AmdSevX64: 4 MiB).
/// Anything smaller is a descriptor that QEMU cannot boot.
pub const MIN_BOOTABLE_SIZE: usize = 1 << 20;

/// Errors of [`classify`] and [`HashesTable::new`].
#[derive(Debug)]
pub enum FirmwareError {
    /// The footer table or SEV metadata is malformed.
    Ovmf(OvmfError),
    /// The firmware has no `SNP_KERNEL_HASHES` section, so it does not check kernel hashes.
    NoKernelHashesSection,
    /// The footer names no hashes-table GPA.
    NoHashesTableGpa,
    /// The hashes table does not fit in the `SNP_KERNEL_HASHES` section.
    TableOutsideSection {
        /// The table's GPA from the footer.
        table_gpa: u32,
        /// The section's GPA.
        section_gpa: u32,
        /// The section's size.
        section_size: u32,
    },
}

impl fmt::Display for FirmwareError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ovmf(e) => write!(f, "firmware: {e}"),
            Self::NoKernelHashesSection => {
                f.write_str("firmware has no SNP_KERNEL_HASHES section (not an AmdSevX64 build)")
            }
            Self::NoHashesTableGpa => f.write_str("firmware footer names no SEV hashes table GPA"),
            Self::TableOutsideSection {
                table_gpa,
                section_gpa,
                section_size,
            } => write!(
                f,
                "hashes table at {table_gpa:#x} is outside the SNP_KERNEL_HASHES section \
                 {section_gpa:#x}+{section_size:#x}"
            ),
        }
    }
}

impl std::error::Error for FirmwareError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Ovmf(e) => Some(e),
            _ => None,
        }
    }
}

/// Classifies a firmware file: a whole AmdSevX64 OVMF (bootable, checks kernel hashes) or a suffix.
///
/// A file that parses but has no kernel-hashes section is an error: it cannot bind kernel and command line
/// into the measurement.
pub fn classify(firmware: &[u8]) -> Result<FirmwareKind, FirmwareError> {
    let ovmf = Ovmf::parse(firmware).map_err(FirmwareError::Ovmf)?;
    // Validates section and table GPA; the table itself does not matter here.
    locate_table(&ovmf)?;
    Ok(if firmware.len() >= MIN_BOOTABLE_SIZE {
        FirmwareKind::AmdSevOvmf
    } else {
        FirmwareKind::Suffix
    })
}

/// Returns the hashes table GPA, checked to lie (with the whole table) inside the `SNP_KERNEL_HASHES` section.
fn locate_table(ovmf: &Ovmf<'_>) -> Result<u32, FirmwareError> {
    let section = ovmf
        .sections()
        .iter()
        .find(|s| s.kind == SectionType::SnpKernelHashes)
        .ok_or(FirmwareError::NoKernelHashesSection)?;
    let table_gpa = ovmf
        .sev_hashes_table_gpa()
        .map_err(FirmwareError::Ovmf)?
        .ok_or(FirmwareError::NoHashesTableGpa)?;
    let table_len = KernelHashes::new(&[], &[], "").table().len() as u64;
    let inside = u64::from(table_gpa) >= u64::from(section.gpa)
        && u64::from(table_gpa) + table_len <= u64::from(section.gpa) + u64::from(section.size);
    if !inside {
        return Err(FirmwareError::TableOutsideSection {
            table_gpa,
            section_gpa: section.gpa,
            section_size: section.size,
        });
    }
    Ok(table_gpa)
}

/// The SEV kernel-hashes table QEMU writes on SNP hardware (`kernel-hashes=on`), and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashesTable {
    /// Guest physical address: the `SNP_KERNEL_HASHES` section's page plus the table's offset in it, as the
    /// firmware's footer names it.
    pub gpa: u64,
    /// The padded table (`attest::measure::snp::KernelHashes::table`).
    pub bytes: Vec<u8>,
}

impl HashesTable {
    /// The table holding `hashes` for `firmware` (at the GPA its footer names, checked against its
    /// `SNP_KERNEL_HASHES` section).
    pub fn new(firmware: &[u8], hashes: &KernelHashes) -> Result<Self, FirmwareError> {
        let ovmf = Ovmf::parse(firmware).map_err(FirmwareError::Ovmf)?;
        let gpa = locate_table(&ovmf)?;
        Ok(Self {
            gpa: u64::from(gpa),
            bytes: hashes.table().to_vec(),
        })
    }

    /// The table for booting `kernel` with `cmdline` and no initrd, as QEMU computes it from its inputs.
    pub fn for_boot(firmware: &[u8], kernel: &[u8], cmdline: &str) -> Result<Self, FirmwareError> {
        Self::new(firmware, &KernelHashes::new(kernel, &[], cmdline))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    const SUFFIX: &[u8] = include_bytes!("../../ovmf-config/amdsev-suffix.bin");

    #[test]
    fn suffix_is_measurable_not_bootable() {
        assert_eq!(classify(SUFFIX).expect("classify"), FirmwareKind::Suffix);
        let kind = FirmwareKind::from_manifest(KIND_SUFFIX).expect("kind");
        assert_eq!(kind.to_string(), KIND_SUFFIX);
        assert_eq!(FirmwareKind::from_manifest("plain"), None);
    }

    #[test]
    fn table_is_at_the_footer_gpa_with_qemu_layout() {
        let t = HashesTable::for_boot(SUFFIX, b"kernel", "a b").expect("table");
        // ovmf-config/README.md: SEV hashes table 0x810c00 inside SNP_KERNEL_HASHES 0x810000.
        assert_eq!(t.gpa, 0x810c00);
        // QEMU target/i386/sev.c: header GUID, u16 length 168, three (GUID, u16 50, SHA-256) entries in
        // cmdline, initrd, kernel order, zero-padded to 176 bytes.
        assert_eq!(t.bytes.len(), 176);
        assert_eq!(t.bytes.get(16..18), Some(&168u16.to_le_bytes()[..]));
        let cmdline_hash = Sha256::digest(b"a b\0");
        assert_eq!(t.bytes.get(18 + 18..18 + 50), Some(&cmdline_hash[..]));
        assert_eq!(
            t.bytes.get(68 + 18..68 + 50),
            Some(&Sha256::digest(b"")[..])
        );
        assert_eq!(
            t.bytes.get(118 + 18..118 + 50),
            Some(&Sha256::digest(b"kernel")[..])
        );
        assert!(
            t.bytes
                .get(168..)
                .is_some_and(|p| p.iter().all(|&b| b == 0))
        );
        let other = HashesTable::for_boot(SUFFIX, b"kernel!", "a b").expect("table");
        assert_ne!(t.bytes, other.bytes);
    }

    #[test]
    fn rejects_firmware_without_kernel_hashes() {
        // A footer-less image parses (nothing to measure beyond its pages) but cannot check kernels.
        let blank = vec![0u8; 4096];
        assert!(matches!(
            classify(&blank),
            Err(FirmwareError::NoKernelHashesSection)
        ));
        assert!(matches!(
            HashesTable::for_boot(&blank, b"k", "c"),
            Err(FirmwareError::NoKernelHashesSection)
        ));
        assert!(matches!(classify(&[0u8; 100]), Err(FirmwareError::Ovmf(_))));
    }
}
