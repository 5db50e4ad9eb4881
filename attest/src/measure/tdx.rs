//! TDX build-time measurement (MRTD) of a TDVF image, RTMR extension, and the RTMR1/RTMR2
//! values a direct boot produces (Authenticode SHA-384 of the kernel, the command line).
//!
//! The image declares what the VMM loads in its TDVF metadata (Intel "TDX Virtual Firmware
//! Design Guide", rev 1.01, §11.1: the OVMF footer-table entry
//! `e47a6535-984a-4798-865e-4685a7bf8ec2` holds the offset from the end of the image of a
//! `TDVF_DESCRIPTOR` — "TDVF", length, version 1, section count — followed by `TDVF_SECTION`s
//! `{u32 data_offset, u32 raw_data_size, u64 memory_address, u64 memory_data_size, u32 type,
//! u32 attributes}`).
//!
//! The TDX module extends MRTD (Intel "TDX Module ABI/Base Architecture Specification",
//! TDH.MEM.PAGE.ADD and TDH.MR.EXTEND) with a 128-byte record per added page ("MEM.PAGE.ADD"
//! at offset 0, GPA at offset 16) and, for sections with the MR.EXTEND attribute, per 256-byte
//! chunk a 128-byte record ("MR.EXTEND", GPA) followed by the chunk; MRTD is the SHA-384 of all
//! records in order. The VMM adds every section (except PAGE.AUG ones) page by page in
//! metadata order, extending each page right after adding it.
//!
//! Not cross-checked against hardware here (no public TDVF image with a published MRTD was
//! available). The MRTD of the pinned IntelTdx OVMF agrees with `ovmf-config/tdvf-mrtd.py`, a
//! second implementation written from the specifications; see the tests for what is covered.

use alloc::vec::Vec;
use core::fmt;

use sha2::{Digest, Sha384};

use super::snp::ovmf::{OvmfError, parse_footer_table};
use crate::ratls::guid_le;

/// `e47a6535-984a-4798-865e-4685a7bf8ec2`: u32 offset (from the image end) of the TDVF descriptor.
pub const TDX_METADATA_GUID: [u8; 16] = guid_le(
    0xe47a6535,
    0x984a,
    0x4798,
    [0x86, 0x5e, 0x46, 0x85, 0xa7, 0xbf, 0x8e, 0xc2],
);
/// Section attribute: extend MRTD with the section's contents.
pub const ATTR_MR_EXTEND: u32 = 1 << 0;
/// Section attribute: pages are added later with TDH.MEM.PAGE.AUG (not measured).
pub const ATTR_PAGE_AUG: u32 = 1 << 1;
/// Most pages one image may add (1 GiB): bounds the work a hostile descriptor can cause.
pub const MAX_PAGES: u64 = 1 << 18;

const DESCRIPTOR_HEADER: usize = 16;
const SECTION_LEN: usize = 32;

/// Errors from measuring a TDVF image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TdxMeasureError {
    /// The footer table is malformed.
    Ovmf(OvmfError),
    /// The image has no TDX metadata entry.
    NoTdxMetadata,
    /// The descriptor lies outside the image, or its signature, version or count is wrong.
    BadDescriptor(&'static str),
    /// A section's data lies outside the image, or its sizes/addresses are not page-aligned.
    BadSection(usize),
    /// The sections add more than [`MAX_PAGES`] pages.
    TooManyPages,
}

impl fmt::Display for TdxMeasureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ovmf(e) => write!(f, "firmware: {e}"),
            Self::NoTdxMetadata => f.write_str("firmware has no TDX metadata"),
            Self::BadDescriptor(what) => write!(f, "bad TDVF descriptor: {what}"),
            Self::BadSection(i) => write!(f, "bad TDVF section {i}"),
            Self::TooManyPages => f.write_str("TDVF sections add too many pages"),
        }
    }
}

impl core::error::Error for TdxMeasureError {}

impl From<OvmfError> for TdxMeasureError {
    fn from(e: OvmfError) -> Self {
        Self::Ovmf(e)
    }
}

/// TDVF section types (TDVF Design Guide Table 11-3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TdvfSectionType {
    /// Boot firmware volume (code).
    Bfv,
    /// Configuration firmware volume (variables).
    Cfv,
    /// TD HOB built by the VMM.
    TdHob,
    /// Temporary memory.
    TempMem,
    /// Permanent memory.
    PermMem,
    /// Payload (kernel).
    Payload,
    /// Payload parameters (command line).
    PayloadParam,
    /// Any other value.
    Unknown(u32),
}

impl TdvfSectionType {
    fn from_raw(v: u32) -> Self {
        match v {
            0 => Self::Bfv,
            1 => Self::Cfv,
            2 => Self::TdHob,
            3 => Self::TempMem,
            4 => Self::PermMem,
            5 => Self::Payload,
            6 => Self::PayloadParam,
            other => Self::Unknown(other),
        }
    }
}

/// One `TDVF_SECTION`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TdvfSection {
    /// Offset of the section's data in the image.
    pub data_offset: u32,
    /// Bytes of data in the image.
    pub raw_data_size: u32,
    /// GPA where it is loaded.
    pub memory_address: u64,
    /// Bytes of guest memory (≥ raw size; the rest is zero).
    pub memory_data_size: u64,
    /// Section type.
    pub kind: TdvfSectionType,
    /// Attributes ([`ATTR_MR_EXTEND`], [`ATTR_PAGE_AUG`]).
    pub attributes: u32,
}

/// The TDVF sections of an image, checked against the image's bounds.
pub fn tdvf_sections(image: &[u8]) -> Result<Vec<TdvfSection>, TdxMeasureError> {
    let table = parse_footer_table(image)?;
    let entry = table
        .iter()
        .find(|(g, _)| *g == TDX_METADATA_GUID)
        .map(|(_, v)| *v)
        .ok_or(TdxMeasureError::NoTdxMetadata)?;
    let off = entry
        .first_chunk::<4>()
        .map(|c| u32::from_le_bytes(*c) as usize)
        .ok_or(TdxMeasureError::BadDescriptor("entry"))?;
    let start = image
        .len()
        .checked_sub(off)
        .ok_or(TdxMeasureError::BadDescriptor("offset"))?;
    let desc = image
        .get(start..)
        .ok_or(TdxMeasureError::BadDescriptor("offset"))?;
    let u32_at = |b: &[u8], at: usize| {
        b.get(at..at + 4)
            .and_then(|s| s.try_into().ok())
            .map(u32::from_le_bytes)
    };
    let u64_at = |b: &[u8], at: usize| {
        b.get(at..at + 8)
            .and_then(|s| s.try_into().ok())
            .map(u64::from_le_bytes)
    };
    if desc.get(..4) != Some(b"TDVF".as_slice()) {
        return Err(TdxMeasureError::BadDescriptor("signature"));
    }
    let length = u32_at(desc, 4).ok_or(TdxMeasureError::BadDescriptor("header"))? as usize;
    let version = u32_at(desc, 8).ok_or(TdxMeasureError::BadDescriptor("header"))?;
    let count = u32_at(desc, 12).ok_or(TdxMeasureError::BadDescriptor("header"))? as usize;
    if version != 1 {
        return Err(TdxMeasureError::BadDescriptor("version"));
    }
    let needed = count
        .checked_mul(SECTION_LEN)
        .and_then(|n| n.checked_add(DESCRIPTOR_HEADER));
    if needed.is_none_or(|n| n > length) {
        return Err(TdxMeasureError::BadDescriptor("section count"));
    }
    let body = desc
        .get(DESCRIPTOR_HEADER..length)
        .ok_or(TdxMeasureError::BadDescriptor("length"))?;
    let mut out = Vec::with_capacity(count);
    for (i, s) in body.chunks_exact(SECTION_LEN).take(count).enumerate() {
        let bad = TdxMeasureError::BadSection(i);
        let sec = TdvfSection {
            data_offset: u32_at(s, 0).ok_or(bad)?,
            raw_data_size: u32_at(s, 4).ok_or(bad)?,
            memory_address: u64_at(s, 8).ok_or(bad)?,
            memory_data_size: u64_at(s, 16).ok_or(bad)?,
            kind: TdvfSectionType::from_raw(u32_at(s, 24).ok_or(bad)?),
            attributes: u32_at(s, 28).ok_or(bad)?,
        };
        let data_end = (sec.data_offset as usize).checked_add(sec.raw_data_size as usize);
        if data_end.is_none_or(|e| e > image.len())
            || u64::from(sec.raw_data_size) > sec.memory_data_size
            || !sec.memory_address.is_multiple_of(4096)
            || !sec.memory_data_size.is_multiple_of(4096)
            || sec
                .memory_address
                .checked_add(sec.memory_data_size)
                .is_none()
        {
            return Err(bad);
        }
        out.push(sec);
    }
    Ok(out)
}

/// A running MRTD (the TDX module's SHA-384 over page-add and extend records).
#[derive(Clone, Default)]
pub struct Mrtd {
    h: Sha384,
}

impl Mrtd {
    /// A fresh measurement (TDH.MNG.INIT).
    pub fn new() -> Self {
        Self::default()
    }

    fn record(&mut self, op: &[u8], gpa: u64) {
        let mut rec = [0u8; 128];
        rec[..op.len()].copy_from_slice(op);
        rec[16..24].copy_from_slice(&gpa.to_le_bytes());
        self.h.update(rec);
    }

    /// TDH.MEM.PAGE.ADD of the page at `gpa`.
    pub fn page_add(&mut self, gpa: u64) {
        self.record(b"MEM.PAGE.ADD", gpa);
    }

    /// TDH.MR.EXTEND of the 256-byte chunk at `gpa`.
    pub fn mr_extend(&mut self, gpa: u64, chunk: &[u8; 256]) {
        self.record(b"MR.EXTEND", gpa);
        self.h.update(chunk);
    }

    /// TDH.MR.FINALIZE: the MRTD value.
    pub fn finish(self) -> [u8; 48] {
        self.h.finalize().into()
    }
}

/// MRTD of a TDVF image as a VMM loads it (every non-PAGE.AUG section, page by page).
pub fn mrtd(image: &[u8]) -> Result<[u8; 48], TdxMeasureError> {
    let sections = tdvf_sections(image)?;
    let mut pages = 0u64;
    for s in &sections {
        if s.attributes & ATTR_PAGE_AUG == 0 {
            pages = pages.saturating_add(s.memory_data_size / 4096);
        }
    }
    if pages > MAX_PAGES {
        return Err(TdxMeasureError::TooManyPages);
    }
    let mut m = Mrtd::new();
    for s in sections
        .iter()
        .filter(|s| s.attributes & ATTR_PAGE_AUG == 0)
    {
        let data = image
            .get(s.data_offset as usize..)
            .and_then(|d| d.get(..s.raw_data_size as usize))
            .unwrap_or(&[]);
        let mut off = 0u64;
        while off < s.memory_data_size {
            let gpa = s.memory_address + off;
            m.page_add(gpa);
            if s.attributes & ATTR_MR_EXTEND != 0 {
                for c in 0..16u64 {
                    let mut chunk = [0u8; 256];
                    let at = (off + c * 256) as usize;
                    if let Some(src) = data.get(at..) {
                        let n = src.len().min(256);
                        chunk[..n].copy_from_slice(&src[..n]);
                    }
                    m.mr_extend(gpa + c * 256, &chunk);
                }
            }
            off += 4096;
        }
    }
    Ok(m.finish())
}

/// TDG.MR.RTMR.EXTEND: `rtmr = SHA-384(rtmr ‖ digest)`.
pub fn rtmr_extend(rtmr: &[u8; 48], digest: &[u8; 48]) -> [u8; 48] {
    let mut h = Sha384::new();
    h.update(rtmr);
    h.update(digest);
    h.finalize().into()
}

/// Replay a sequence of event digests into an RTMR starting from zero.
pub fn rtmr_replay<'a>(digests: impl IntoIterator<Item = &'a [u8; 48]>) -> [u8; 48] {
    digests
        .into_iter()
        .fold([0u8; 48], |r, d| rtmr_extend(&r, d))
}

/// Why a PE image cannot be hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeError {
    /// No "MZ" / "PE\0\0" signature, or an unknown optional-header magic.
    NotPe,
    /// A header, the section table or the certificate table lies outside the file.
    Truncated,
    /// Section `index`'s raw data lies outside the file or overlaps the headers.
    BadSection(usize),
}

impl fmt::Display for PeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotPe => f.write_str("not a PE image"),
            Self::Truncated => f.write_str("PE headers are truncated"),
            Self::BadSection(i) => write!(f, "PE section {i} lies outside the file"),
        }
    }
}

impl core::error::Error for PeError {}

fn le_u16(b: &[u8], at: usize) -> Result<u16, PeError> {
    let x = b.get(at..at + 2).ok_or(PeError::Truncated)?;
    Ok(u16::from_le_bytes([x[0], x[1]]))
}

fn le_u32(b: &[u8], at: usize) -> Result<u32, PeError> {
    let x = b.get(at..at + 4).ok_or(PeError::Truncated)?;
    Ok(u32::from_le_bytes([x[0], x[1], x[2], x[3]]))
}

/// The Authenticode SHA-384 of a PE/COFF image: what UEFI firmware with measured boot logs as
/// the digest of an `EV_EFI_BOOT_SERVICES_APPLICATION` event (TCG PFP §10.4.4; the TDVF logs
/// it to RTMR1).
///
/// Algorithm of Microsoft's "Windows Authenticode Portable Executable Signature Format",
/// "Calculating the PE Image Hash": hash the headers up to `SizeOfHeaders` except the
/// CheckSum field and the Certificate Table data-directory entry, then the raw data of every
/// section in ascending `PointerToRawData` order, then whatever follows the last section up
/// to the attribute certificate table (excluded). PE32 and PE32+ are both handled.
pub fn authenticode_sha384(pe: &[u8]) -> Result<[u8; 48], PeError> {
    if pe.get(..2) != Some(b"MZ") {
        return Err(PeError::NotPe);
    }
    let pe_off = le_u32(pe, 0x3C)? as usize;
    let sig_end = pe_off.checked_add(4).ok_or(PeError::Truncated)?;
    if pe.get(pe_off..sig_end).ok_or(PeError::Truncated)? != b"PE\0\0" {
        return Err(PeError::NotPe);
    }
    let coff = pe_off + 4;
    let sections = usize::from(le_u16(pe, coff + 2)?);
    let opt_size = usize::from(le_u16(pe, coff + 16)?);
    let opt = coff + 20;
    // Offsets of NumberOfRvaAndSizes and the data directories (PE/COFF spec §3.4).
    let (n_dirs_at, dirs_at) = match le_u16(pe, opt)? {
        0x10B => (opt + 92, opt + 96),
        0x20B => (opt + 108, opt + 112),
        _ => return Err(PeError::NotPe),
    };
    let checksum_at = opt + 64;
    let size_of_headers = le_u32(pe, opt + 60)? as usize;
    if size_of_headers > pe.len() || size_of_headers < checksum_at + 4 {
        return Err(PeError::Truncated);
    }
    let n_dirs = le_u32(pe, n_dirs_at)?;
    let mut h = Sha384::new();
    h.update(&pe[..checksum_at]);
    // Certificate table: data directory 4 (a file offset and a size, not an RVA).
    let (cert_off, cert_size) = if n_dirs > 4 {
        let entry = dirs_at + 4 * 8;
        if entry + 8 > size_of_headers {
            return Err(PeError::Truncated);
        }
        h.update(&pe[checksum_at + 4..entry]);
        h.update(&pe[entry + 8..size_of_headers]);
        (le_u32(pe, entry)? as usize, le_u32(pe, entry + 4)? as usize)
    } else {
        h.update(&pe[checksum_at + 4..size_of_headers]);
        (0, 0)
    };
    let table = opt.checked_add(opt_size).ok_or(PeError::Truncated)?;
    let mut raw: Vec<(usize, usize, usize)> = Vec::with_capacity(sections);
    for i in 0..sections {
        let s = table + i * 40;
        let size = le_u32(pe, s + 16)? as usize;
        let ptr = le_u32(pe, s + 20)? as usize;
        if size == 0 {
            continue;
        }
        match ptr.checked_add(size) {
            Some(end) if end <= pe.len() && ptr >= size_of_headers => raw.push((ptr, size, i)),
            _ => return Err(PeError::BadSection(i)),
        }
    }
    raw.sort_unstable();
    let mut hashed = size_of_headers;
    for &(ptr, size, _) in &raw {
        h.update(&pe[ptr..ptr + size]);
        hashed += size;
    }
    // Data after the sections, excluding the certificate table (which, when present, is last).
    let end = if cert_size != 0 {
        if cert_off.checked_add(cert_size) != Some(pe.len()) {
            return Err(PeError::Truncated);
        }
        cert_off
    } else {
        pe.len()
    };
    if end > hashed {
        h.update(&pe[hashed..end]);
    }
    Ok(h.finalize().into())
}

/// The RTMR1 a TDVF (OVMF IntelTdx) direct boot of `kernel` produces when the kernel is a UEFI
/// application loaded with QEMU's `-kernel`: the firmware logs, in this order, the kernel's
/// Authenticode SHA-384 (`EV_EFI_BOOT_SERVICES_APPLICATION`, PCR 4), `EV_EFI_ACTION` "Calling
/// EFI Application from Boot Option" (PCR 4), the `EV_SEPARATOR` of PCR 4 (four zero bytes),
/// and `EV_EFI_ACTION` "Exit Boot Services Invocation" and "Exit Boot Services Returned with
/// Success" (PCR 5); PCRs 2–6 map to RTMR1 (TDVF Design Guide §10.1.2, Table 10-2).
///
/// This is the sequence virtee's `tdx-measure` replays for a direct boot (read for comparison,
/// no code taken), and the one a real TDX boot's CCEL shows (`attest/tests/real_ccel.rs`
/// replays a log captured on TDX hardware through [`rtmr1_after_kernel`]). Our own pinned
/// firmware writes no CCEL outside a TD, so for it this order is checked only by that vector.
pub fn rtmr1_direct_boot(kernel: &[u8]) -> Result<[u8; 48], PeError> {
    Ok(rtmr1_after_kernel(&authenticode_sha384(kernel)?))
}

/// [`rtmr1_direct_boot`] from the kernel's Authenticode SHA-384 (the digest of its
/// `EV_EFI_BOOT_SERVICES_APPLICATION` event).
pub fn rtmr1_after_kernel(kernel_authenticode: &[u8; 48]) -> [u8; 48] {
    let sha = |b: &[u8]| -> [u8; 48] { Sha384::digest(b).into() };
    let log = [
        *kernel_authenticode,
        sha(b"Calling EFI Application from Boot Option"),
        sha(&[0, 0, 0, 0]),
        sha(b"Exit Boot Services Invocation"),
        sha(b"Exit Boot Services Returned with Success"),
    ];
    rtmr_replay(log.iter())
}

/// The digest of a command line as UEFI passes it to the loaded image: the LoadOptions buffer,
/// UCS-2 little-endian with its terminating NUL (UEFI spec §9.1 `EFI_LOADED_IMAGE_PROTOCOL`;
/// OVMF's QEMU loader converts `-append` this way). Linux's EFI stub measures exactly this
/// buffer into PCR 9 (`EV_EVENT_TAG`), i.e. RTMR2; our kernel must do the same (through
/// `EFI_CC_MEASUREMENT_PROTOCOL` before ExitBootServices, so the CCEL records it) for RTMR2 to
/// identify the command line. Characters outside the BMP are encoded as UTF-16 surrogates.
pub fn cmdline_digest(cmdline: &str) -> [u8; 48] {
    let mut h = Sha384::new();
    for u in cmdline.encode_utf16().chain([0]) {
        h.update(u.to_le_bytes());
    }
    h.finalize().into()
}

/// RTMR2 after the command-line event alone: `extend(0, cmdline_digest(cmdline))`.
pub fn rtmr2_cmdline(cmdline: &str) -> [u8; 48] {
    rtmr_extend(&[0; 48], &cmdline_digest(cmdline))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::snp::ovmf::FOOTER_TABLE_GUID;
    use alloc::vec;

    /// Build a tiny TDVF image: one 4 KiB BFV (extended) and one 8 KiB TempMem (added only).
    fn image() -> Vec<u8> {
        let mut img = vec![0u8; 3 * 4096];
        for (i, b) in img[..4096].iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        // Descriptor at 0x2000: "TDVF", len, version 1, 2 sections.
        let d = 0x2000;
        img[d..d + 4].copy_from_slice(b"TDVF");
        img[d + 4..d + 8].copy_from_slice(&(16u32 + 64).to_le_bytes());
        img[d + 8..d + 12].copy_from_slice(&1u32.to_le_bytes());
        img[d + 12..d + 16].copy_from_slice(&2u32.to_le_bytes());
        let sec = |data_offset: u32, raw: u32, addr: u64, size: u64, ty: u32, attr: u32| {
            let mut s = Vec::new();
            s.extend_from_slice(&data_offset.to_le_bytes());
            s.extend_from_slice(&raw.to_le_bytes());
            s.extend_from_slice(&addr.to_le_bytes());
            s.extend_from_slice(&size.to_le_bytes());
            s.extend_from_slice(&ty.to_le_bytes());
            s.extend_from_slice(&attr.to_le_bytes());
            s
        };
        img[d + 16..d + 48].copy_from_slice(&sec(0, 4096, 0xFFFF_F000, 4096, 0, ATTR_MR_EXTEND));
        img[d + 48..d + 80].copy_from_slice(&sec(0, 0, 0x80_0000, 8192, 3, 0));
        // Footer table: [TDX entry (u32 offset from end), footer entry], ending 32 bytes before the end.
        let end = img.len() - 32;
        let tdx_entry_len = 4 + 18;
        let footer_len = 18;
        let table_start = end - footer_len - tdx_entry_len;
        let off_from_end = (img.len() - d) as u32;
        img[table_start..table_start + 4].copy_from_slice(&off_from_end.to_le_bytes());
        img[table_start + 4..table_start + 6]
            .copy_from_slice(&(tdx_entry_len as u16).to_le_bytes());
        img[table_start + 6..table_start + 22].copy_from_slice(&TDX_METADATA_GUID);
        let f = end - footer_len;
        img[f..f + 2].copy_from_slice(&((footer_len + tdx_entry_len) as u16).to_le_bytes());
        img[f + 2..f + 18].copy_from_slice(&FOOTER_TABLE_GUID);
        img
    }

    #[test]
    fn synthetic_image_mrtd() {
        let img = image();
        let secs = tdvf_sections(&img).unwrap();
        assert_eq!(secs.len(), 2);
        assert_eq!(secs[0].kind, TdvfSectionType::Bfv);
        assert_eq!(secs[1].kind, TdvfSectionType::TempMem);
        // The expected value, written out as the byte stream the TDX module hashes.
        let mut stream = Vec::new();
        let rec = |op: &[u8], gpa: u64| {
            let mut r = vec![0u8; 128];
            r[..op.len()].copy_from_slice(op);
            r[16..24].copy_from_slice(&gpa.to_le_bytes());
            r
        };
        stream.extend(rec(b"MEM.PAGE.ADD", 0xFFFF_F000));
        for c in 0..16 {
            stream.extend(rec(b"MR.EXTEND", 0xFFFF_F000 + c * 256));
            stream.extend_from_slice(&img[c as usize * 256..(c as usize + 1) * 256]);
        }
        stream.extend(rec(b"MEM.PAGE.ADD", 0x80_0000));
        stream.extend(rec(b"MEM.PAGE.ADD", 0x80_1000));
        let expected: [u8; 48] = Sha384::digest(&stream).into();
        assert_eq!(mrtd(&img).unwrap(), expected);
    }

    #[test]
    fn hostile_descriptors() {
        let good = image();
        assert_eq!(
            tdvf_sections(&[0u8; 4096]).unwrap_err(),
            TdxMeasureError::NoTdxMetadata
        );
        let d = 0x2000;
        let mut img = good.clone();
        img[d] = b'X';
        assert_eq!(
            tdvf_sections(&img).unwrap_err(),
            TdxMeasureError::BadDescriptor("signature")
        );
        let mut img = good.clone();
        img[d + 12..d + 16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            tdvf_sections(&img).unwrap_err(),
            TdxMeasureError::BadDescriptor("section count")
        );
        let mut img = good.clone();
        img[d + 16 + 4..d + 16 + 8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            tdvf_sections(&img).unwrap_err(),
            TdxMeasureError::BadSection(0)
        );
        let mut img = good.clone();
        img[d + 48 + 16..d + 48 + 24].copy_from_slice(&(1u64 << 40).to_le_bytes());
        assert_eq!(mrtd(&img).unwrap_err(), TdxMeasureError::TooManyPages);
        // Single-byte corruption anywhere parses or fails cleanly, never panics. (mrtd() itself
        // is bounded by MAX_PAGES, checked above; hashing up to that bound is too slow for a
        // debug-build loop.)
        for pos in 0..good.len() {
            let mut img = good.clone();
            img[pos] ^= 0xFF;
            let _ = tdvf_sections(&img);
        }
    }

    #[test]
    fn debian_ovmf_has_tdvf_metadata() {
        // The distribution's OVMF (Debian package `ovmf`, a test prerequisite) carries TDX
        // metadata: BFV (extended), CFV and temporary memory/HOB sections.
        let img =
            std::fs::read("/usr/share/ovmf/OVMF.fd").expect("install the Debian package ovmf");
        let secs = tdvf_sections(&img).unwrap();
        assert!(
            secs.iter()
                .any(|s| s.kind == TdvfSectionType::Bfv && s.attributes & ATTR_MR_EXTEND != 0)
        );
        assert!(secs.iter().any(|s| s.kind == TdvfSectionType::TdHob));
        assert_ne!(mrtd(&img).unwrap(), [0; 48]);
    }

    #[test]
    fn rtmr() {
        let d = [1u8; 48];
        let mut cat = [0u8; 96];
        cat[48..].copy_from_slice(&d);
        assert_eq!(rtmr_replay([&d]), <[u8; 48]>::from(Sha384::digest(cat)));
        assert_eq!(
            rtmr_replay([&d, &d]),
            rtmr_extend(&rtmr_extend(&[0; 48], &d), &d)
        );
    }
    /// A 1568-byte PE32+ (`testdata/tdx/tiny_pe.py`: two sections listed out of file order,
    /// 32 bytes after the last section). Expected digest from osslsigncode 2.9 (`sign -h
    /// sha384` with a throwaway key, then `verify`: "Current message digest"), an independent
    /// Authenticode implementation.
    const TINY_PE: &[u8] = include_bytes!("../../testdata/tdx/tiny_pe.efi");
    const TINY_PE_AUTHENTICODE: &str = "9cb50b9f1cc8195a7db656493f977b4c7b950bf078fd014816faf7eeb24cbce76563466797a1d8782bee326f62b58624";

    #[test]
    fn authenticode_matches_osslsigncode() {
        let d = authenticode_sha384(TINY_PE).unwrap();
        assert_eq!(hex::encode(d), TINY_PE_AUTHENTICODE);
        // CheckSum and the certificate directory entry are not hashed.
        let mut p = TINY_PE.to_vec();
        p[0x40 + 24 + 64] ^= 0xFF;
        assert_eq!(authenticode_sha384(&p).unwrap(), d);
        // Everything else is.
        let mut p = TINY_PE.to_vec();
        p[0x300] ^= 1;
        assert_ne!(authenticode_sha384(&p).unwrap(), d);
        let mut p = TINY_PE.to_vec();
        *p.last_mut().unwrap() ^= 1;
        assert_ne!(authenticode_sha384(&p).unwrap(), d);
    }

    #[test]
    fn authenticode_refuses_malformed() {
        assert_eq!(authenticode_sha384(b"MZ"), Err(PeError::Truncated));
        assert_eq!(
            authenticode_sha384(&TINY_PE[..0x100]),
            Err(PeError::Truncated)
        );
        let mut p = TINY_PE.to_vec();
        p[0] = b'X';
        assert_eq!(authenticode_sha384(&p), Err(PeError::NotPe));
        let mut p = TINY_PE.to_vec();
        p[0x40 + 24] = 0x07; // optional-header magic
        assert_eq!(authenticode_sha384(&p), Err(PeError::NotPe));
        let mut p = TINY_PE.to_vec();
        p[0x3C..0x40].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(authenticode_sha384(&p), Err(PeError::Truncated));
        // Section 1's raw data pointer beyond the file.
        let s1 = 0x40 + 24 + 240 + 40;
        let mut p = TINY_PE.to_vec();
        p[s1 + 20..s1 + 24].copy_from_slice(&0x10_0000u32.to_le_bytes());
        assert_eq!(authenticode_sha384(&p), Err(PeError::BadSection(1)));
        // A certificate table that does not end the file.
        let cert = 0x40 + 24 + 112 + 32;
        let mut p = TINY_PE.to_vec();
        p[cert..cert + 8].copy_from_slice(&[0, 6, 0, 0, 8, 0, 0, 0]);
        assert_eq!(authenticode_sha384(&p), Err(PeError::Truncated));
    }

    #[test]
    fn rtmr1_and_rtmr2_from_inputs() {
        let sha = |b: &[u8]| -> [u8; 48] { Sha384::digest(b).into() };
        // RTMR1: written out as the extend chain, independently of rtmr_replay.
        let mut r = [0u8; 48];
        for d in [
            authenticode_sha384(TINY_PE).unwrap(),
            sha(b"Calling EFI Application from Boot Option"),
            sha(&[0; 4]),
            sha(b"Exit Boot Services Invocation"),
            sha(b"Exit Boot Services Returned with Success"),
        ] {
            let mut h = Sha384::new();
            h.update(r);
            h.update(d);
            r = h.finalize().into();
        }
        assert_eq!(rtmr1_direct_boot(TINY_PE).unwrap(), r);
        assert_eq!(rtmr1_direct_boot(b"not a PE"), Err(PeError::NotPe));
        // RTMR2: UCS-2 LE with the terminating NUL.
        let c = "ckms.ip=dhcp ckms.log=info";
        let mut ucs2 = Vec::new();
        for b in c.bytes() {
            ucs2.extend_from_slice(&[b, 0]);
        }
        ucs2.extend_from_slice(&[0, 0]);
        assert_eq!(cmdline_digest(c), sha(&ucs2));
        assert_eq!(rtmr2_cmdline(c), rtmr_extend(&[0; 48], &sha(&ucs2)));
        assert_ne!(
            rtmr2_cmdline(c),
            rtmr2_cmdline("ckms.ip=dhcp ckms.log=debug")
        );
    }
}
