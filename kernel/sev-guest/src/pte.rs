//! The encryption mask (C-bit) in page-table entries.
//!
//! Under SEV, bit `C` of a page-table entry's physical-address field selects the encrypted
//! ("private") view of the page; `C` is CPUID Fn8000_001F EBX\[5:0\] (AMD64 APM vol. 2
//! §15.34.1 "Determining Support for Secure Memory Encryption", §15.34.5 "Encrypt/Decrypt
//! (C-bit)"; on SNP the guest takes it from the CPUID page, never from the hypervisor). Every
//! level's entry carries it: a table page in private memory is reached through an entry with
//! C=1 (§15.34.5: the page-table walk follows the C-bit of each level). Memory the host must
//! read or write (the GHCB page, the shared DMA pool, MMIO) is mapped with C=0. [`backing`]
//! says which parts of the identity map are RAM (C=1) and which are MMIO holes (C=0).
//!
//! [`EncryptionMask::for_platform`] decides the mask: the C-bit when SEV memory encryption is
//! active (`SEV_STATUS` bit 0), zero otherwise — including the loopback-GHCB build under TCG,
//! which has a CPUID page with a C-bit (51) but no memory encryption, and whose physical
//! address width would make bit 51 a reserved bit (#PF). The kernel's page tables go through
//! [`EncryptionMask::entry`] and [`EncryptionMask::address`] in every build.

use core::fmt;

/// The physical-address field of a 4-level page-table entry (bits 51:12).
pub const ADDR_FIELD: u64 = 0x000F_FFFF_FFFF_F000;

/// Lowest and highest C-bit positions accepted: above the 4 GiB line and inside the
/// address field (AMD parts use 47 or 51).
pub const CBIT_RANGE: core::ops::RangeInclusive<u8> = 32..=51;

/// Mask errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaskError {
    /// The C-bit position is outside [`CBIT_RANGE`].
    BadCbit(u8),
    /// Memory encryption is active but the CPUID page gave no C-bit.
    NoCbit,
    /// The physical address is not page-aligned, lies above the address field, or has the
    /// C-bit set itself (it would alias the other view).
    BadAddress(u64),
}

impl fmt::Display for MaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadCbit(c) => write!(f, "C-bit position {c} outside 32..=51"),
            Self::NoCbit => f.write_str("memory encryption active but no C-bit position"),
            Self::BadAddress(a) => write!(f, "physical address {a:#x} not mappable with the C-bit"),
        }
    }
}

impl core::error::Error for MaskError {}

/// The encryption mask: zero, or the single C-bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EncryptionMask(u64);

impl EncryptionMask {
    /// No memory encryption.
    pub const NONE: Self = Self(0);

    /// The mask for C-bit position `cbit`.
    pub fn from_cbit(cbit: u8) -> Result<Self, MaskError> {
        if CBIT_RANGE.contains(&cbit) {
            Ok(Self(1 << cbit))
        } else {
            Err(MaskError::BadCbit(cbit))
        }
    }

    /// The mask for this platform: the CPUID page's C-bit when memory encryption is active
    /// (`sev_status` bit 0, `SEV_STATUS` MSR), else none.
    pub fn for_platform(sev_status: u64, cpuid_cbit: Option<u8>) -> Result<Self, MaskError> {
        if sev_status & crate::msr::SEV_STATUS_SEV == 0 {
            return Ok(Self::NONE);
        }
        Self::from_cbit(cpuid_cbit.ok_or(MaskError::NoCbit)?)
    }

    /// The mask bits.
    pub fn bits(self) -> u64 {
        self.0
    }

    /// The entry for `phys` with `flags`: C=1 for a `private` mapping, C=0 for a shared one.
    /// `flags` may not touch the address field.
    pub fn entry(self, phys: u64, flags: u64, private: bool) -> Result<u64, MaskError> {
        if phys & !ADDR_FIELD != 0 || phys & self.0 != 0 || flags & ADDR_FIELD != 0 {
            return Err(MaskError::BadAddress(phys));
        }
        Ok(phys | flags | if private { self.0 } else { 0 })
    }

    /// The physical address an entry points to (C-bit and flags stripped).
    pub fn address(self, entry: u64) -> u64 {
        entry & ADDR_FIELD & !self.0
    }

    /// Whether an entry maps the private (encrypted) view. Always false without encryption.
    pub fn is_private(self, entry: u64) -> bool {
        self.0 != 0 && entry & self.0 != 0
    }
}

/// What backs a range of the identity map, from the firmware's memory map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backing {
    /// Entirely RAM: mapped private (C=1).
    Ram,
    /// No RAM at all (the low MMIO holes: LAPIC, IOAPIC, 32-bit BARs, flash; unpopulated
    /// space): mapped shared (C=0). Device memory is never encrypted — an access through C=1
    /// would hand the device ciphertext on SNP (APM vol. 2 §15.34.5; Linux maps ioremap'd
    /// ranges decrypted, `pgprot_decrypted` in `__ioremap_caller`).
    Mmio,
    /// Both: split, and decide per 4 KiB page.
    Mixed,
}

impl Backing {
    /// The C-bit rule: private only for RAM. A mixed range has no single answer (`None`).
    pub fn private(self) -> Option<bool> {
        match self {
            Self::Ram => Some(true),
            Self::Mmio => Some(false),
            Self::Mixed => None,
        }
    }
}

/// Classifies `[start, start + len)` against `ram`, the half-open RAM ranges of the memory map
/// (every UEFI memory type but `EfiMemoryMappedIO`/`EfiMemoryMappedIOPortSpace`, in any order,
/// possibly adjacent or overlapping). Address space the map does not describe counts as MMIO.
/// An empty or wrapping range is `Mmio` (nothing of it is RAM).
pub fn backing(start: u64, len: u64, ram: &[(u64, u64)]) -> Backing {
    let Some(end) = start.checked_add(len).filter(|e| *e > start) else {
        return Backing::Mmio;
    };
    if !ram.iter().any(|(s, e)| *s < end && start < *e) {
        return Backing::Mmio;
    }
    // Walk from `start`, each step to the end of a RAM range containing the cursor.
    let mut cursor = start;
    while cursor < end {
        match ram
            .iter()
            .filter(|(s, e)| *s <= cursor && cursor < *e)
            .map(|(_, e)| *e)
            .max()
        {
            Some(next) => cursor = next,
            None => return Backing::Mixed,
        }
    }
    Backing::Ram
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: u64 = 1; // present
    const W: u64 = 2; // writable
    const NX: u64 = 1 << 63;

    #[test]
    fn mask_from_platform() {
        // SEV_STATUS bit 0 (SEV) decides; the C-bit comes from the CPUID page.
        assert_eq!(
            EncryptionMask::for_platform(0b111, Some(51)).map(|m| m.bits()),
            Ok(1 << 51)
        );
        assert_eq!(
            EncryptionMask::for_platform(0b001, Some(47)).map(|m| m.bits()),
            Ok(1 << 47)
        );
        // The loopback-GHCB build under TCG: C-bit 51 in the page, no encryption → zero.
        assert_eq!(
            EncryptionMask::for_platform(0, Some(51)),
            Ok(EncryptionMask::NONE)
        );
        assert_eq!(
            EncryptionMask::for_platform(0b101, None),
            Err(MaskError::NoCbit)
        );
        assert_eq!(
            EncryptionMask::for_platform(1, Some(52)),
            Err(MaskError::BadCbit(52))
        );
        assert_eq!(EncryptionMask::from_cbit(31), Err(MaskError::BadCbit(31)));
        assert_eq!(EncryptionMask::from_cbit(0), Err(MaskError::BadCbit(0)));
    }

    #[test]
    fn entries_carry_the_cbit_only_when_private() {
        let m = EncryptionMask::from_cbit(51).unwrap();
        let private = m.entry(0x20_0000, P | W | NX, true).unwrap();
        assert_eq!(private, 0x20_0000 | (1 << 51) | P | W | NX);
        assert!(m.is_private(private));
        assert_eq!(m.address(private), 0x20_0000);
        let shared = m.entry(0x20_0000, P | W | NX, false).unwrap();
        assert_eq!(shared, 0x20_0000 | P | W | NX);
        assert!(!m.is_private(shared));
        assert_eq!(m.address(shared), 0x20_0000);
        // C-bit 47: the address field keeps bits above it for the address.
        let m47 = EncryptionMask::from_cbit(47).unwrap();
        let e = m47.entry(0x1_0000_0000, P, true).unwrap();
        assert_eq!(e, 0x1_0000_0000 | (1 << 47) | P);
        assert_eq!(m47.address(e), 0x1_0000_0000);
    }

    #[test]
    fn no_encryption_is_the_identity() {
        let m = EncryptionMask::NONE;
        for private in [true, false] {
            let e = m.entry(0xFEE0_0000, P | W, private).unwrap();
            assert_eq!(e, 0xFEE0_0000 | P | W);
            assert!(!m.is_private(e));
            assert_eq!(m.address(e), 0xFEE0_0000);
        }
    }

    #[test]
    fn mmio_holes_are_shared() {
        // A q35 guest with 128 MiB under OVMF: RAM 0–0x9F000 and 1 MiB–128 MiB (several
        // adjacent map entries), the VGA/ROM hole and the PCI hole not described, the flash
        // as EfiMemoryMappedIO (left out of `ram`), an ACPI NVS/reserved range (RAM: the
        // SNP CPUID and secrets pages are reserved memory and must stay private).
        let ram = [
            (0, 0x9_F000),
            (0x10_0000, 0x80_0000),
            (0x80_0000, 0x80_8000),
            (0x80_8000, 0x800_0000),
            (0x7F0_0000, 0x7F8_0000), // overlapping entry
        ];
        let m = 2 << 20;
        assert_eq!(backing(0x20_0000, m, &ram), Backing::Ram);
        assert_eq!(backing(0x7E0_0000, m, &ram), Backing::Ram);
        // The first 2 MiB: RAM, the legacy hole 0xA0000–0xFFFFF, RAM again.
        assert_eq!(backing(0, m, &ram), Backing::Mixed);
        assert_eq!(backing(0, 0x9_F000, &ram), Backing::Ram);
        assert_eq!(backing(0xA_0000, 0x1000, &ram), Backing::Mmio);
        assert_eq!(backing(0x9_E000, 0x2000, &ram), Backing::Mixed);
        // Above RAM: the PCI hole, the IOAPIC, the LAPIC, the flash.
        for hole in [
            0x800_0000u64,
            0x8000_0000,
            0xC000_0000,
            0xFEC0_0000,
            0xFEE0_0000,
            0xFFE0_0000,
        ] {
            assert_eq!(backing(hole, m, &ram), Backing::Mmio, "{hole:#x}");
            assert_eq!(backing(hole, m, &ram).private(), Some(false));
        }
        assert_eq!(backing(0x20_0000, m, &ram).private(), Some(true));
        assert_eq!(Backing::Mixed.private(), None);
        // RAM ending inside a block, and a gap in the middle of a block.
        assert_eq!(backing(0x7E0_0000, 0x40_0000, &ram), Backing::Mixed);
        let gap = [(0x20_0000, 0x30_0000), (0x30_1000, 0x40_0000)];
        assert_eq!(backing(0x20_0000, m, &gap), Backing::Mixed);
        // Empty, wrapping: nothing is RAM.
        assert_eq!(backing(0x20_0000, 0, &ram), Backing::Mmio);
        assert_eq!(backing(u64::MAX - 4095, 8192, &ram), Backing::Mmio);
        assert_eq!(backing(0x20_0000, m, &[]), Backing::Mmio);
    }

    #[test]
    fn refuses_addresses_that_alias_or_overflow() {
        let m = EncryptionMask::from_cbit(51).unwrap();
        // Unaligned, above the address field, or with the C-bit already set.
        assert_eq!(m.entry(0x1001, P, true), Err(MaskError::BadAddress(0x1001)));
        assert_eq!(
            m.entry(1 << 52, P, true),
            Err(MaskError::BadAddress(1 << 52))
        );
        assert_eq!(
            m.entry((1 << 51) | 0x1000, P, false),
            Err(MaskError::BadAddress((1 << 51) | 0x1000))
        );
        // Flags may not smuggle address bits.
        assert_eq!(
            m.entry(0x1000, P | 0x2000, true),
            Err(MaskError::BadAddress(0x1000))
        );
    }
}
