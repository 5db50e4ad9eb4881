//! The parts of an OVMF image that a launch measures: the footer GUID table, the SEV metadata
//! sections and the SEV-ES reset block.
//!
//! Formats from EDK II: `OvmfPkg/ResetVector/Ia16/ResetVectorVtf0.asm` (the GUIDed table that
//! ends 32 bytes before the end of the image and is read backwards from its footer entry) and
//! `OvmfPkg/ResetVector/X64/OvmfSevMetadata.asm` (the "ASEV" metadata header and its
//! `{u32 gpa, u32 size, u32 type}` section descriptors). Every offset taken from the file is
//! bounds-checked: a hostile image yields an [`OvmfError`], never a panic.

use alloc::vec::Vec;
use core::fmt;

use crate::ratls::guid_le;

/// `96b582de-1fb2-45f7-baea-a366c55a082d`: the entry that ends the footer table.
pub const FOOTER_TABLE_GUID: [u8; 16] = guid_le(
    0x96b582de,
    0x1fb2,
    0x45f7,
    [0xba, 0xea, 0xa3, 0x66, 0xc5, 0x5a, 0x08, 0x2d],
);
/// `dc886566-984a-4798-a75e-5585a7bf67cc`: u32 offset (from the end of the image) of the SEV metadata.
pub const SEV_METADATA_GUID: [u8; 16] = guid_le(
    0xdc886566,
    0x984a,
    0x4798,
    [0xa7, 0x5e, 0x55, 0x85, 0xa7, 0xbf, 0x67, 0xcc],
);
/// `7255371f-3a3b-4b04-927b-1da6efa8d454`: `{u32 gpa, u32 size}` of the kernel hashes table.
pub const SEV_HASH_TABLE_RV_GUID: [u8; 16] = guid_le(
    0x7255371f,
    0x3a3b,
    0x4b04,
    [0x92, 0x7b, 0x1d, 0xa6, 0xef, 0xa8, 0xd4, 0x54],
);
/// `00f771de-1a7e-4fcb-890e-68c77e2fb44e`: u32 reset address of the APs (SEV-ES and later).
pub const SEV_ES_RESET_BLOCK_GUID: [u8; 16] = guid_le(
    0x00f771de,
    0x1a7e,
    0x4fcb,
    [0x89, 0x0e, 0x68, 0xc7, 0x7e, 0x2f, 0xb4, 0x4e],
);

/// Size of a footer-table entry header: u16 size then the GUID.
const ENTRY_HEADER: usize = 18;
/// The table ends this many bytes before the end of the image (the reset vector follows it).
const TABLE_END_FROM_FILE_END: usize = 32;
/// Size of the "ASEV" metadata header: signature, size, version, item count.
const METADATA_HEADER: usize = 16;
/// Size of one metadata section descriptor.
const SECTION_DESC: usize = 12;

/// Errors from reading an OVMF image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OvmfError {
    /// The image is empty, not a multiple of 4 KiB, or larger than 4 GiB.
    BadImageSize(usize),
    /// A footer-table entry's size is below its header size or beyond the table.
    BadTableEntry,
    /// The same GUID appears twice in the footer table.
    DuplicateGuid,
    /// A GUIDed entry is too short for the value it carries.
    ShortEntry(&'static str),
    /// The SEV metadata offset points outside the image.
    MetadataOutOfRange,
    /// The SEV metadata does not start with "ASEV".
    BadMetadataSignature,
    /// The SEV metadata version is not 1.
    BadMetadataVersion(u32),
    /// The metadata's item count does not fit in its size.
    BadMetadataSize,
    /// A section type this code does not know (so cannot measure).
    UnknownSectionType(u32),
}

impl fmt::Display for OvmfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadImageSize(n) => write!(
                f,
                "firmware size {n} is not a non-zero multiple of 4 KiB up to 4 GiB"
            ),
            Self::BadTableEntry => f.write_str("malformed OVMF footer table entry"),
            Self::DuplicateGuid => f.write_str("duplicate GUID in OVMF footer table"),
            Self::ShortEntry(what) => write!(f, "OVMF footer entry {what} is too short"),
            Self::MetadataOutOfRange => f.write_str("SEV metadata lies outside the firmware image"),
            Self::BadMetadataSignature => f.write_str("SEV metadata signature is not ASEV"),
            Self::BadMetadataVersion(v) => write!(f, "SEV metadata version {v} is not 1"),
            Self::BadMetadataSize => f.write_str("SEV metadata item count exceeds its size"),
            Self::UnknownSectionType(t) => write!(f, "unknown SEV metadata section type {t:#x}"),
        }
    }
}

impl core::error::Error for OvmfError {}

/// Kind of an OVMF SEV metadata section (`OvmfSevMetadata.asm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SectionType {
    /// 1: memory the firmware pre-validates (measured as zero pages).
    SnpSecMem,
    /// 2: the SNP secrets page.
    SnpSecrets,
    /// 3: the CPUID page.
    Cpuid,
    /// 4: the SVSM calling-area page.
    SvsmCaa,
    /// 0x10: the page holding the kernel/initrd/cmdline hashes table.
    SnpKernelHashes,
}

impl SectionType {
    /// Decode a raw section type.
    pub fn from_raw(raw: u32) -> Option<Self> {
        match raw {
            1 => Some(Self::SnpSecMem),
            2 => Some(Self::SnpSecrets),
            3 => Some(Self::Cpuid),
            4 => Some(Self::SvsmCaa),
            0x10 => Some(Self::SnpKernelHashes),
            _ => None,
        }
    }
}

/// One SEV metadata section descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Section {
    /// Guest physical address.
    pub gpa: u32,
    /// Size in bytes.
    pub size: u32,
    /// What the section is.
    pub kind: SectionType,
}

/// What a launch needs from an OVMF image.
#[derive(Debug, Clone)]
pub struct Ovmf<'a> {
    data: &'a [u8],
    table: FooterTable<'a>,
    sections: Vec<Section>,
}

impl<'a> Ovmf<'a> {
    /// Parse the footer table and the SEV metadata of `data` (the whole image, or its suffix).
    pub fn parse(data: &'a [u8]) -> Result<Self, OvmfError> {
        if data.is_empty() || !data.len().is_multiple_of(4096) || data.len() as u64 > 1 << 32 {
            return Err(OvmfError::BadImageSize(data.len()));
        }
        let table = parse_footer_table(data)?;
        let mut ovmf = Ovmf {
            data,
            table,
            sections: Vec::new(),
        };
        ovmf.sections = ovmf.parse_sev_metadata()?;
        Ok(ovmf)
    }

    /// The image bytes.
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// Where the image is mapped: it ends at 4 GiB.
    pub fn gpa(&self) -> u64 {
        (1u64 << 32) - self.data.len() as u64
    }

    /// The value of a footer-table entry.
    pub fn table_entry(&self, guid: &[u8; 16]) -> Option<&'a [u8]> {
        self.table.iter().find(|(g, _)| g == guid).map(|(_, v)| *v)
    }

    /// The SEV metadata sections in file order (empty when the image has none).
    pub fn sections(&self) -> &[Section] {
        &self.sections
    }

    /// Whether a section of this kind exists.
    pub fn has_section(&self, kind: SectionType) -> bool {
        self.sections.iter().any(|s| s.kind == kind)
    }

    /// The AP reset address from the SEV-ES reset block, if present.
    pub fn sev_es_reset_eip(&self) -> Result<Option<u32>, OvmfError> {
        self.table_entry(&SEV_ES_RESET_BLOCK_GUID)
            .map(|e| read_u32(e, 0, "SEV-ES reset block"))
            .transpose()
    }

    /// GPA of the kernel hashes table, if the image reserves one.
    pub fn sev_hashes_table_gpa(&self) -> Result<Option<u32>, OvmfError> {
        self.table_entry(&SEV_HASH_TABLE_RV_GUID)
            .map(|e| read_u32(e, 0, "SEV hash table"))
            .transpose()
    }

    fn parse_sev_metadata(&self) -> Result<Vec<Section>, OvmfError> {
        let Some(entry) = self.table_entry(&SEV_METADATA_GUID) else {
            return Ok(Vec::new());
        };
        let offset_from_end = read_u32(entry, 0, "SEV metadata")? as usize;
        let start = self
            .data
            .len()
            .checked_sub(offset_from_end)
            .ok_or(OvmfError::MetadataOutOfRange)?;
        let header = self
            .data
            .get(start..)
            .and_then(|h| h.get(..METADATA_HEADER))
            .ok_or(OvmfError::MetadataOutOfRange)?;
        if header.get(..4) != Some(b"ASEV".as_slice()) {
            return Err(OvmfError::BadMetadataSignature);
        }
        let size = read_u32(header, 4, "SEV metadata")? as usize;
        let version = read_u32(header, 8, "SEV metadata")?;
        let count = read_u32(header, 12, "SEV metadata")? as usize;
        if version != 1 {
            return Err(OvmfError::BadMetadataVersion(version));
        }
        let end = start
            .checked_add(size)
            .ok_or(OvmfError::MetadataOutOfRange)?;
        let items = self
            .data
            .get(start..end)
            .and_then(|m| m.get(METADATA_HEADER..))
            .ok_or(OvmfError::MetadataOutOfRange)?;
        if count
            .checked_mul(SECTION_DESC)
            .is_none_or(|n| n > items.len())
        {
            return Err(OvmfError::BadMetadataSize);
        }
        items
            .chunks_exact(SECTION_DESC)
            .take(count)
            .map(|d| {
                let raw_kind = read_u32(d, 8, "section")?;
                Ok(Section {
                    gpa: read_u32(d, 0, "section")?,
                    size: read_u32(d, 4, "section")?,
                    kind: SectionType::from_raw(raw_kind)
                        .ok_or(OvmfError::UnknownSectionType(raw_kind))?,
                })
            })
            .collect()
    }
}

/// The footer table: (GUID, value) pairs, last entry of the file first.
pub(crate) type FooterTable<'a> = Vec<([u8; 16], &'a [u8])>;

/// Read the GUIDed table backwards from its footer entry. Returns an empty table when the footer
/// GUID is absent (an image without one has nothing for SEV to measure beyond its pages).
pub(crate) fn parse_footer_table(data: &[u8]) -> Result<FooterTable<'_>, OvmfError> {
    let mut table = Vec::new();
    let Some(footer_start) = data
        .len()
        .checked_sub(TABLE_END_FROM_FILE_END + ENTRY_HEADER)
    else {
        return Ok(table);
    };
    let Some((footer_size, footer_guid)) = entry_header(data, footer_start) else {
        return Ok(table);
    };
    if footer_guid != FOOTER_TABLE_GUID {
        return Ok(table);
    }
    let Some(table_size) = footer_size.checked_sub(ENTRY_HEADER) else {
        return Ok(table);
    };
    let table_start = footer_start
        .checked_sub(table_size)
        .ok_or(OvmfError::BadTableEntry)?;
    let mut bytes = data
        .get(table_start..footer_start)
        .ok_or(OvmfError::BadTableEntry)?;
    while bytes.len() >= ENTRY_HEADER {
        let (size, guid) =
            entry_header(bytes, bytes.len() - ENTRY_HEADER).ok_or(OvmfError::BadTableEntry)?;
        if size < ENTRY_HEADER || size > bytes.len() {
            return Err(OvmfError::BadTableEntry);
        }
        let entry_start = bytes.len() - size;
        let value = bytes
            .get(entry_start..bytes.len() - ENTRY_HEADER)
            .ok_or(OvmfError::BadTableEntry)?;
        if table.iter().any(|(g, _)| *g == guid) {
            return Err(OvmfError::DuplicateGuid);
        }
        table.push((guid, value));
        bytes = bytes.get(..entry_start).ok_or(OvmfError::BadTableEntry)?;
    }
    Ok(table)
}

fn entry_header(data: &[u8], at: usize) -> Option<(usize, [u8; 16])> {
    let h = data.get(at..)?.get(..ENTRY_HEADER)?;
    let (size, guid) = h.split_first_chunk::<2>()?;
    Some((u16::from_le_bytes(*size) as usize, guid.try_into().ok()?))
}

fn read_u32(b: &[u8], at: usize, what: &'static str) -> Result<u32, OvmfError> {
    b.get(at..)
        .and_then(|s| s.first_chunk::<4>())
        .map(|c| u32::from_le_bytes(*c))
        .ok_or(OvmfError::ShortEntry(what))
}

#[cfg(test)]
mod tests {
    use super::*;

    const AMDSEV: &[u8] = include_bytes!("../../../testdata/snp/ovmf_AmdSev_suffix.bin");
    const OVMFX64: &[u8] = include_bytes!("../../../testdata/snp/ovmf_OvmfX64_suffix.bin");

    #[test]
    fn amdsev_suffix() {
        let o = Ovmf::parse(AMDSEV).unwrap();
        assert_eq!(o.gpa(), 0xFFFF_F000);
        assert!(o.has_section(SectionType::SnpKernelHashes));
        assert!(o.sev_es_reset_eip().unwrap().is_some());
        assert!(o.sev_hashes_table_gpa().unwrap().is_some());
        let kinds: Vec<_> = o.sections().iter().map(|s| s.kind).collect();
        assert!(kinds.contains(&SectionType::SnpSecrets));
        assert!(kinds.contains(&SectionType::Cpuid));
    }

    #[test]
    fn ovmfx64_suffix() {
        let o = Ovmf::parse(OVMFX64).unwrap();
        assert!(!o.has_section(SectionType::SnpKernelHashes));
        assert!(o.sev_es_reset_eip().unwrap().is_some());
    }

    #[test]
    fn bad_sizes() {
        assert_eq!(Ovmf::parse(&[]).unwrap_err(), OvmfError::BadImageSize(0));
        assert_eq!(
            Ovmf::parse(&AMDSEV[1..]).unwrap_err(),
            OvmfError::BadImageSize(4095)
        );
        // A page of zeros has no footer table: nothing to find, no error.
        let o = Ovmf::parse(&[0u8; 4096]).unwrap();
        assert!(o.sections().is_empty());
        assert_eq!(o.sev_es_reset_eip(), Ok(None));
    }

    /// Every single-byte corruption of the table and metadata region parses or fails cleanly.
    #[test]
    fn hostile_bytes_never_panic() {
        let mut img = AMDSEV.to_vec();
        for pos in 0..img.len() {
            for v in [0x00u8, 0xFF, 0x13] {
                let old = img[pos];
                img[pos] = v;
                let _ = Ovmf::parse(&img).map(|o| (o.sev_es_reset_eip(), o.sev_hashes_table_gpa()));
                img[pos] = old;
            }
        }
    }
}
