//! The Confidential Computing blob and the SNP secrets page.
//!
//! The CC blob is the UEFI configuration-table entry OVMF publishes for an SNP guest
//! (EDK2 `gConfidentialComputingSevSnpBlobGuid`, `067b1f5f-cf26-44c5-8554-93d777912d42`;
//! `OvmfPkg/Include/Guid/ConfidentialComputingSevSnpBlob.h`): `MAGIC` u32 (`"AMDE"`),
//! `VERSION` u16, reserved u16, `SECRETS_PHYS` u64, `SECRETS_LEN` u32, reserved u32,
//! `CPUID_PHYS` u64, `CPUID_LEN` u32, reserved u32 (40 bytes). Linux reads the same structure
//! (`struct cc_blob_sev_info`).
//!
//! The secrets page: AMD 56860 rev 1.58 §8.17.2, Table 73 "Secrets Page Format": `VERSION`
//! (00h), `IMI_EN` (04h bit 0), `FMS` (08h), `GOSVW` (10h), `VMPCK0`..`VMPCK3` (20h, 40h, 60h,
//! 80h, 32 bytes each), then the OS area. The VMPCKs are copied out into zeroizing keys; the
//! kernel should wipe its mapping of the page afterwards.

use core::fmt;
use core::mem::{offset_of, size_of};

use attest::snp::guest_msg::Vmpck;
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};
use zeroize::Zeroizing;

/// `MAGIC`: "AMDE" little-endian.
pub const CC_BLOB_MAGIC: u32 = 0x4544_4d41;
/// The configuration-table GUID in EFI byte order.
pub const CC_BLOB_GUID: [u8; 16] = [
    0x5f, 0x1f, 0x7b, 0x06, 0x26, 0xcf, 0xc5, 0x44, 0x85, 0x54, 0x93, 0xd7, 0x77, 0x91, 0x2d, 0x42,
];

/// The CC blob layout.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct CcBlobRaw {
    /// 00h `MAGIC`.
    pub magic: U32,
    /// 04h `VERSION`.
    pub version: U16,
    _reserved_0: U16,
    /// 08h secrets page GPA.
    pub secrets_phys: U64,
    /// 10h secrets page length.
    pub secrets_len: U32,
    _reserved_1: U32,
    /// 18h CPUID page GPA.
    pub cpuid_phys: U64,
    /// 20h CPUID page length.
    pub cpuid_len: U32,
    _reserved_2: U32,
}

const _: () = {
    assert!(size_of::<CcBlobRaw>() == 40);
    assert!(offset_of!(CcBlobRaw, secrets_phys) == 0x08);
    assert!(offset_of!(CcBlobRaw, cpuid_phys) == 0x18);
    assert!(offset_of!(CcBlobRaw, cpuid_len) == 0x20);
};

/// CC blob and secrets-page errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CcBlobError {
    /// Shorter than the layout.
    Truncated,
    /// `MAGIC` is not "AMDE".
    BadMagic(u32),
    /// A page address is zero or not page-aligned (named).
    BadAddress(&'static str),
    /// A page length is not 4096 (named).
    BadLength(&'static str),
    /// The secrets page version is not 2 or 3.
    SecretsVersion(u32),
}

impl fmt::Display for CcBlobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("CC blob truncated"),
            Self::BadMagic(m) => write!(f, "CC blob magic {m:#x}"),
            Self::BadAddress(w) => write!(f, "CC blob: bad {w} address"),
            Self::BadLength(w) => write!(f, "CC blob: bad {w} length"),
            Self::SecretsVersion(v) => write!(f, "secrets page version {v}"),
        }
    }
}

impl core::error::Error for CcBlobError {}

/// The validated CC blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CcBlob {
    /// Blob version.
    pub version: u16,
    /// Secrets page GPA.
    pub secrets_gpa: u64,
    /// CPUID page GPA.
    pub cpuid_gpa: u64,
}

fn check_page(gpa: u64, len: u32, what: &'static str) -> Result<(), CcBlobError> {
    if gpa == 0 || !gpa.is_multiple_of(4096) {
        return Err(CcBlobError::BadAddress(what));
    }
    if len != 4096 {
        return Err(CcBlobError::BadLength(what));
    }
    Ok(())
}

impl CcBlob {
    /// Parses the blob bytes (from the configuration table's pointer).
    pub fn parse(bytes: &[u8]) -> Result<Self, CcBlobError> {
        let (raw, _) = CcBlobRaw::read_from_prefix(bytes).map_err(|_| CcBlobError::Truncated)?;
        if raw.magic.get() != CC_BLOB_MAGIC {
            return Err(CcBlobError::BadMagic(raw.magic.get()));
        }
        check_page(
            raw.secrets_phys.get(),
            raw.secrets_len.get(),
            "secrets page",
        )?;
        check_page(raw.cpuid_phys.get(), raw.cpuid_len.get(), "CPUID page")?;
        Ok(Self {
            version: raw.version.get(),
            secrets_gpa: raw.secrets_phys.get(),
            cpuid_gpa: raw.cpuid_phys.get(),
        })
    }
}

/// Offsets in the secrets page (56860 Table 73).
pub mod secrets {
    /// `VERSION`.
    pub const VERSION: usize = 0x00;
    /// `IMI_EN` (bit 0).
    pub const IMI_EN: usize = 0x04;
    /// `FMS`.
    pub const FMS: usize = 0x08;
    /// `VMPCK0`; VMPCK1..3 follow every 32 bytes.
    pub const VMPCK0: usize = 0x20;
    /// Length of a VMPCK.
    pub const VMPCK_LEN: usize = 32;
}

/// What the guest keeps of the secrets page.
pub struct SecretsPage {
    /// `VERSION`.
    pub version: u32,
    /// `IMI_EN`.
    pub imi_en: bool,
    /// `FMS` (family/model/stepping).
    pub fms: u32,
    vmpck: [Zeroizing<[u8; 32]>; 4],
}

impl fmt::Debug for SecretsPage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretsPage")
            .field("version", &self.version)
            .field("imi_en", &self.imi_en)
            .field("fms", &self.fms)
            .finish_non_exhaustive()
    }
}

fn u32_at(page: &[u8], at: usize) -> Result<u32, CcBlobError> {
    let b: [u8; 4] = page
        .get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .ok_or(CcBlobError::Truncated)?;
    Ok(u32::from_le_bytes(b))
}

impl SecretsPage {
    /// Parses a secrets page (4096 bytes) and copies the four VMPCKs out.
    pub fn parse(page: &[u8]) -> Result<Self, CcBlobError> {
        if page.len() < 4096 {
            return Err(CcBlobError::Truncated);
        }
        let version = u32_at(page, secrets::VERSION)?;
        if !(2..=3).contains(&version) {
            return Err(CcBlobError::SecretsVersion(version));
        }
        let vmpck = core::array::from_fn(|i| {
            let at = secrets::VMPCK0 + i * secrets::VMPCK_LEN;
            let mut k = Zeroizing::new([0u8; 32]);
            if let Some(src) = page.get(at..at + secrets::VMPCK_LEN) {
                k.copy_from_slice(src);
            }
            k
        });
        Ok(Self {
            version,
            imi_en: u32_at(page, secrets::IMI_EN)? & 1 != 0,
            fms: u32_at(page, secrets::FMS)?,
            vmpck,
        })
    }

    /// VMPCK `index` (0–3) as a key for the guest-message layer. `None` if out of range or if
    /// the key is all zero (a VMPCK the firmware did not install, or one already wiped).
    pub fn vmpck(&self, index: u8) -> Option<Vmpck> {
        let k = self.vmpck.get(usize::from(index))?;
        if k.iter().all(|b| *b == 0) {
            return None;
        }
        Some(Vmpck::new(**k))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::FromZeros;

    fn blob() -> CcBlobRaw {
        let mut b = CcBlobRaw::new_zeroed();
        b.magic = CC_BLOB_MAGIC.into();
        b.version = 1.into();
        b.secrets_phys = 0x80_6000.into();
        b.secrets_len = 4096.into();
        b.cpuid_phys = 0x80_7000.into();
        b.cpuid_len = 4096.into();
        b
    }

    #[test]
    fn cc_blob() {
        let b = blob();
        assert_eq!(&b.as_bytes()[..4], b"AMDE");
        assert_eq!(
            CcBlob::parse(b.as_bytes()),
            Ok(CcBlob {
                version: 1,
                secrets_gpa: 0x80_6000,
                cpuid_gpa: 0x80_7000
            })
        );
        let mut bad = blob();
        bad.magic = 0.into();
        assert_eq!(CcBlob::parse(bad.as_bytes()), Err(CcBlobError::BadMagic(0)));
        let mut bad = blob();
        bad.cpuid_phys = 0x80_7001.into();
        assert_eq!(
            CcBlob::parse(bad.as_bytes()),
            Err(CcBlobError::BadAddress("CPUID page"))
        );
        let mut bad = blob();
        bad.secrets_len = 8192.into();
        assert_eq!(
            CcBlob::parse(bad.as_bytes()),
            Err(CcBlobError::BadLength("secrets page"))
        );
        assert_eq!(
            CcBlob::parse(&b.as_bytes()[..39]),
            Err(CcBlobError::Truncated)
        );
        // The GUID matches the kernel's (uefi.rs, EFI byte order of 067b1f5f-cf26-44c5-...).
        assert_eq!(CC_BLOB_GUID[..4], 0x067b_1f5fu32.to_le_bytes());
    }

    #[test]
    fn secrets_page() {
        let mut page = [0u8; 4096];
        page[0] = 3;
        page[4] = 1;
        page[8..12].copy_from_slice(&0x00A0_0F11u32.to_le_bytes());
        for (i, b) in page[0x20..0xA0].iter_mut().enumerate() {
            *b = (i / 32) as u8 + 1;
        }
        page[0x80..0xA0].fill(0); // VMPCK3 not installed
        let s = SecretsPage::parse(&page).unwrap();
        assert_eq!((s.version, s.imi_en, s.fms), (3, true, 0x00A0_0F11));
        assert!(s.vmpck(0).is_some());
        assert!(s.vmpck(2).is_some());
        assert!(s.vmpck(3).is_none());
        assert!(s.vmpck(4).is_none());
        // The key is VMPCK0's bytes: a message sealed with it opens with [1; 32].
        use attest::snp::guest_msg::{MsgType, open, seal};
        let msg = seal(&s.vmpck(0).unwrap(), 0, 1, MsgType::KeyReq, 1, &[0; 0x20]).unwrap();
        assert!(open(&Vmpck::new([1; 32]), &msg).is_ok());
        page[0] = 1;
        assert!(matches!(
            SecretsPage::parse(&page),
            Err(CcBlobError::SecretsVersion(1))
        ));
        assert!(matches!(
            SecretsPage::parse(&page[..4095]),
            Err(CcBlobError::Truncated)
        ));
    }
}
