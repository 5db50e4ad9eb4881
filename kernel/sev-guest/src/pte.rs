//! The page-attribute rule of a confidential guest: which bit of a page-table entry's
//! physical-address field selects the private or the shared view of a page. One type,
//! [`PteRule`], for both platforms, so the kernel's paging code (`arch::paging`) is one:
//!
//! - **SEV-SNP: the C-bit, set for private.** Bit `C` selects the encrypted ("private") view;
//!   `C` is CPUID Fn8000_001F EBX\[5:0\] (AMD64 APM vol. 2 §15.34.1 "Determining Support for
//!   Secure Memory Encryption", §15.34.5 "Encrypt/Decrypt (C-bit)"; on SNP the guest takes it
//!   from the CPUID page, never from the hypervisor). [`PteRule::for_snp`]: the C-bit when SEV
//!   memory encryption is active (`SEV_STATUS` bit 0), zero otherwise — including the
//!   loopback-GHCB build under TCG, which has a CPUID page with a C-bit (51) but no memory
//!   encryption, and whose physical-address width would make bit 51 a reserved bit (#PF).
//! - **TDX: the shared bit, set for shared.** A TD's GPA space is split by GPA bit GPAW − 1
//!   (47 with GPAW 48, 51 with GPAW 52; GPAW from TDG.VP.INFO, TDX Module ABI 348551
//!   "TDG.VP.INFO Leaf"): clear is private (Secure EPT), set is shared (the host's EPT) — GHCI
//!   348552 §1.3 "Shared bit"; TDX Module base architecture spec, "GPA Space". [`PteRule::tdx`]
//!   refuses a GPAW other than 48 or 52. The polarity is the reverse of SEV's.
//! - **None** ([`PteRule::NONE`]): no memory encryption; entries carry no view bit.
//!
//! In every case the page-table pages themselves are private (the C-bit set at every level on
//! SEV: §15.34.5, the table walk follows each level's C-bit; bit-clear on TDX: the TDX module
//! refuses a guest paging-structure walk through shared memory), RAM is private, and memory the
//! host must read or write (the GHCB page, the shared DMA pool, the GetQuote buffer, MMIO) is
//! shared. [`backing`] says which parts of the identity map are RAM and which are MMIO holes.
//! The kernel builds every entry through [`PteRule::entry`] and reads every one through
//! [`PteRule::address`], in every build.

use core::fmt;

/// The physical-address field of a 4-level page-table entry (bits 51:12).
pub const ADDR_FIELD: u64 = 0x000F_FFFF_FFFF_F000;

/// Lowest and highest C-bit positions accepted: above the 4 GiB line and inside the
/// address field (AMD parts use 47 or 51).
pub const CBIT_RANGE: core::ops::RangeInclusive<u8> = 32..=51;

/// Rule and entry errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaskError {
    /// The C-bit position is outside [`CBIT_RANGE`].
    BadCbit(u8),
    /// Memory encryption is active but the CPUID page gave no C-bit.
    NoCbit,
    /// The TD's GPAW is neither 48 nor 52 (TDX Module ABI 348551, "TDG.VP.INFO Leaf").
    BadGpaw(u8),
    /// The physical address is not page-aligned, lies above the address field, or has the
    /// view bit set itself (it would alias the other view; on TDX also any bit above the
    /// shared bit: beyond GPAW).
    BadAddress(u64),
    /// The flags touch the address field.
    BadFlags(u64),
}

impl fmt::Display for MaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadCbit(c) => write!(f, "C-bit position {c} outside 32..=51"),
            Self::NoCbit => f.write_str("memory encryption active but no C-bit position"),
            Self::BadGpaw(w) => write!(f, "GPAW {w} is neither 48 nor 52"),
            Self::BadAddress(a) => {
                write!(
                    f,
                    "physical address {a:#x} not mappable under the page rule"
                )
            }
            Self::BadFlags(x) => write!(f, "page flags {x:#x} overlap the address field"),
        }
    }
}

impl core::error::Error for MaskError {}

/// Which way the view bit points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Polarity {
    /// No view bit.
    None,
    /// SEV: the bit is set for the private view (C=1).
    SetWhenPrivate,
    /// TDX: the bit is set for the shared view.
    SetWhenShared,
}

/// The page-attribute rule: no view bit, SEV's C-bit, or TDX's shared bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PteRule {
    bit: u64,
    polarity: Polarity,
}

impl PteRule {
    /// No memory encryption.
    pub const NONE: Self = Self {
        bit: 0,
        polarity: Polarity::None,
    };

    /// SEV: the C-bit at position `cbit`, set for private mappings.
    pub fn snp_cbit(cbit: u8) -> Result<Self, MaskError> {
        if CBIT_RANGE.contains(&cbit) {
            Ok(Self {
                bit: 1 << cbit,
                polarity: Polarity::SetWhenPrivate,
            })
        } else {
            Err(MaskError::BadCbit(cbit))
        }
    }

    /// SEV: the CPUID page's C-bit when memory encryption is active (`sev_status` bit 0,
    /// `SEV_STATUS` MSR), else none.
    pub fn for_snp(sev_status: u64, cpuid_cbit: Option<u8>) -> Result<Self, MaskError> {
        if sev_status & crate::msr::SEV_STATUS_SEV == 0 {
            return Ok(Self::NONE);
        }
        Self::snp_cbit(cpuid_cbit.ok_or(MaskError::NoCbit)?)
    }

    /// TDX: the shared bit GPAW − 1 (GHCI 348552 §1.3), set for shared mappings. GPAW must be
    /// 48 or 52 (the only widths the TDX module configures: ABI 348551, "TDG.VP.INFO Leaf").
    pub fn tdx(gpaw: u8) -> Result<Self, MaskError> {
        if gpaw != 48 && gpaw != 52 {
            return Err(MaskError::BadGpaw(gpaw));
        }
        Ok(Self {
            bit: 1 << (gpaw - 1),
            polarity: Polarity::SetWhenShared,
        })
    }

    /// The view bit (zero for [`PteRule::NONE`]).
    pub fn bits(self) -> u64 {
        self.bit
    }

    /// Whether the bit is set for shared mappings (TDX) rather than private ones (SEV).
    pub fn set_when_shared(self) -> bool {
        self.polarity == Polarity::SetWhenShared
    }

    /// The entry for `phys` with `flags`, `private` or shared: SEV sets the C-bit for a
    /// private mapping, TDX sets the shared bit for a shared one (the DMA pool, the GetQuote
    /// buffer, MMIO), none sets nothing. `phys` must be a page-aligned address of the private
    /// view (below the shared bit on TDX, without the C-bit on SEV); `flags` may not touch the
    /// address field.
    pub fn entry(self, phys: u64, flags: u64, private: bool) -> Result<u64, MaskError> {
        let aliases = match self.polarity {
            Polarity::None => false,
            Polarity::SetWhenPrivate => phys & self.bit != 0,
            Polarity::SetWhenShared => phys >= self.bit,
        };
        if phys & !ADDR_FIELD != 0 || aliases {
            return Err(MaskError::BadAddress(phys));
        }
        if flags & ADDR_FIELD != 0 {
            return Err(MaskError::BadFlags(flags));
        }
        let set = match self.polarity {
            Polarity::None => false,
            Polarity::SetWhenPrivate => private,
            Polarity::SetWhenShared => !private,
        };
        Ok(phys | flags | if set { self.bit } else { 0 })
    }

    /// The physical address an entry points to, in the private view (view bit and flags
    /// stripped).
    pub fn address(self, entry: u64) -> u64 {
        entry & ADDR_FIELD & !self.bit
    }

    /// Whether an entry maps the private view. Always false without memory encryption
    /// ([`PteRule::NONE`]: there is only one view).
    pub fn is_private(self, entry: u64) -> bool {
        match self.polarity {
            Polarity::None => false,
            Polarity::SetWhenPrivate => entry & self.bit != 0,
            Polarity::SetWhenShared => entry & self.bit == 0,
        }
    }
}

/// What backs a range of the identity map, from the firmware's memory map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backing {
    /// Entirely RAM: mapped private (C=1 on SEV, shared bit clear on TDX).
    Ram,
    /// No RAM at all (the low MMIO holes: LAPIC, IOAPIC, 32-bit BARs, flash; unpopulated
    /// space): mapped shared (C=0 on SEV, shared bit set on TDX: device memory is in the
    /// host's EPT, GHCI 348552 §1.3). Device memory is never encrypted — an access through C=1
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
    fn snp_rule_from_platform() {
        // SEV_STATUS bit 0 (SEV) decides; the C-bit comes from the CPUID page.
        assert_eq!(
            PteRule::for_snp(0b111, Some(51)).map(|m| m.bits()),
            Ok(1 << 51)
        );
        assert_eq!(
            PteRule::for_snp(0b001, Some(47)).map(|m| m.bits()),
            Ok(1 << 47)
        );
        // The loopback-GHCB build under TCG: C-bit 51 in the page, no encryption → none.
        assert_eq!(PteRule::for_snp(0, Some(51)), Ok(PteRule::NONE));
        assert_eq!(PteRule::for_snp(0b101, None), Err(MaskError::NoCbit));
        assert_eq!(PteRule::for_snp(1, Some(52)), Err(MaskError::BadCbit(52)));
        assert_eq!(PteRule::snp_cbit(31), Err(MaskError::BadCbit(31)));
        assert_eq!(PteRule::snp_cbit(0), Err(MaskError::BadCbit(0)));
        assert!(!PteRule::snp_cbit(51).unwrap().set_when_shared());
    }

    #[test]
    fn snp_entries_carry_the_cbit_only_when_private() {
        let m = PteRule::snp_cbit(51).unwrap();
        let private = m.entry(0x20_0000, P | W | NX, true).unwrap();
        assert_eq!(private, 0x20_0000 | (1 << 51) | P | W | NX);
        assert!(m.is_private(private));
        assert_eq!(m.address(private), 0x20_0000);
        let shared = m.entry(0x20_0000, P | W | NX, false).unwrap();
        assert_eq!(shared, 0x20_0000 | P | W | NX);
        assert!(!m.is_private(shared));
        assert_eq!(m.address(shared), 0x20_0000);
        // C-bit 47: the address field keeps bits above it for the address.
        let m47 = PteRule::snp_cbit(47).unwrap();
        let e = m47.entry(0x1_0000_0000, P, true).unwrap();
        assert_eq!(e, 0x1_0000_0000 | (1 << 47) | P);
        assert_eq!(m47.address(e), 0x1_0000_0000);
        assert_eq!(
            m47.entry(1 << 48, P, true).map(|e| m47.address(e)),
            Ok(1 << 48)
        );
    }

    #[test]
    fn tdx_entries_carry_the_shared_bit_only_when_shared() {
        // GPAW 48 → bit 47, GPAW 52 → bit 51 (GHCI 348552 §1.3): the reverse polarity.
        for (gpaw, bit) in [(48u8, 47u32), (52, 51)] {
            let s = PteRule::tdx(gpaw).unwrap();
            assert_eq!(s.bits(), 1 << bit);
            assert!(s.set_when_shared());
            let private = s.entry(0x1234_5000, P | W | NX, true).unwrap();
            assert_eq!(private, 0x1234_5000 | P | W | NX);
            assert!(s.is_private(private));
            let shared = s.entry(0x1234_5000, P | W | NX, false).unwrap();
            assert_eq!(shared, 0x1234_5000 | P | W | NX | 1 << bit);
            assert!(!s.is_private(shared));
            // Both views name the same private-view GPA.
            assert_eq!(s.address(private), 0x1234_5000);
            assert_eq!(s.address(shared), 0x1234_5000);
        }
    }

    #[test]
    fn tdx_rule_refuses_other_gpaws_and_aliasing_addresses() {
        for gpaw in [0u8, 39, 47, 49, 51, 53, 63] {
            assert_eq!(PteRule::tdx(gpaw), Err(MaskError::BadGpaw(gpaw)));
        }
        let s = PteRule::tdx(48).unwrap();
        // Unaligned; the shared bit itself; above it (beyond GPAW); beyond the address field.
        for bad in [0x1001, 1 << 47, 1 << 48 | 0x1000, 1 << 52] {
            assert_eq!(s.entry(bad, P, true), Err(MaskError::BadAddress(bad)));
            assert_eq!(s.entry(bad, P, false), Err(MaskError::BadAddress(bad)));
        }
        // With GPAW 52 bit 47 is an ordinary address bit.
        let wide = PteRule::tdx(52).unwrap();
        assert_eq!(wide.entry(1 << 47, P, true), Ok(1 << 47 | P));
        assert_eq!(
            s.entry(0x2000, 0x1000 | P, false),
            Err(MaskError::BadFlags(0x1001))
        );
    }

    #[test]
    fn no_encryption_is_the_identity() {
        let m = PteRule::NONE;
        assert!(!m.set_when_shared());
        for private in [true, false] {
            let e = m.entry(0xFEE0_0000, P | W, private).unwrap();
            assert_eq!(e, 0xFEE0_0000 | P | W);
            assert!(!m.is_private(e));
            assert_eq!(m.address(e), 0xFEE0_0000);
        }
        assert_eq!(m.entry(0x1001, P, true), Err(MaskError::BadAddress(0x1001)));
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
        let m = PteRule::snp_cbit(51).unwrap();
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
            Err(MaskError::BadFlags(P | 0x2000))
        );
    }
}
