//! The shared bit in page-table entries of a TD.
//!
//! In a TD the guest physical address space is split by the **shared bit**, GPA bit GPAW − 1
//! (47 with GPAW 48, 51 with GPAW 52; GPAW from TDG.VP.INFO, [`crate::info::TdInfo`]): a GPA
//! with it clear is private (Secure EPT, encrypted and integrity-protected), with it set shared
//! (the host's EPT) — GHCI 348552 §1.3 "Shared bit"; TDX Module base architecture spec,
//! "GPA Space". The guest chooses the view per mapping by that bit of the physical-address
//! field of its leaf entry; page-table pages themselves must be private (the TDX module refuses
//! a guest paging-structure walk through shared memory: the upper levels stay bit-clear).
//!
//! The polarity is the reverse of SEV's C-bit (`sev_guest::pte`: C=1 private): here the bit is
//! set for the *shared* view. [`SharedBit::entry`] takes the same `private: bool` as
//! `EncryptionMask::entry`, so the kernel's paging can call either one with the same meaning.
//! Not wired into `arch::paging` yet (TCG's physical-address width has no bit 47, so under the
//! loopback stub it would have to be 0, as SEV's C-bit is under TCG; and the kernel builds its
//! page tables before TDG.VP.INFO gives GPAW): host-tested rule only.

use core::fmt;

use crate::info::TdInfo;

/// The physical-address field of a 4-level page-table entry (bits 51:12).
pub const ADDR_FIELD: u64 = 0x000F_FFFF_FFFF_F000;

/// Why an entry cannot be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PteError {
    /// The physical address is not page-aligned, lies outside the address field, or has the
    /// shared bit (or a bit above it) set itself: it would alias the other view or exceed GPAW.
    BadAddress(u64),
    /// `flags` touch the address field.
    BadFlags(u64),
}

impl fmt::Display for PteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadAddress(a) => write!(f, "physical address {a:#x} is not a private-view GPA"),
            Self::BadFlags(x) => write!(f, "flags {x:#x} overlap the address field"),
        }
    }
}

/// The TD's shared bit, as a page-table rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SharedBit(u64);

impl SharedBit {
    /// The rule for the TD TDG.VP.INFO described (GPAW 48 or 52: `TdInfo` refuses others).
    pub fn new(info: &TdInfo) -> Self {
        Self(info.shared_mask())
    }

    /// The mask bit.
    pub fn bits(self) -> u64 {
        self.0
    }

    /// The entry for `phys` with `flags`: the shared bit clear for a `private` mapping, set for
    /// a shared one (the DMA pool, the GetQuote buffer, MMIO). `phys` must be below the shared
    /// bit (a GPA of the private view).
    pub fn entry(self, phys: u64, flags: u64, private: bool) -> Result<u64, PteError> {
        if phys & !ADDR_FIELD != 0 || phys >= self.0 {
            return Err(PteError::BadAddress(phys));
        }
        if flags & ADDR_FIELD != 0 {
            return Err(PteError::BadFlags(flags));
        }
        Ok(phys | flags | if private { 0 } else { self.0 })
    }

    /// The GPA an entry maps, in the private view (flags and the shared bit stripped).
    pub fn address(self, entry: u64) -> u64 {
        entry & ADDR_FIELD & !self.0
    }

    /// Whether an entry maps the private view.
    pub fn is_private(self, entry: u64) -> bool {
        entry & self.0 == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Regs;

    const P: u64 = 1;
    const W: u64 = 2;
    const NX: u64 = 1 << 63;

    fn td(gpaw: u64) -> TdInfo {
        TdInfo::from_regs(&Regs {
            rcx: gpaw,
            ..Regs::default()
        })
        .unwrap()
    }

    #[test]
    fn private_entries_keep_the_bit_clear_shared_ones_set_it() {
        for (gpaw, bit) in [(48, 47), (52, 51)] {
            let s = SharedBit::new(&td(gpaw));
            assert_eq!(s.bits(), 1 << bit);
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
    fn addresses_and_flags_that_would_alias_are_refused() {
        let s = SharedBit::new(&td(48));
        // Unaligned; the shared bit itself; above it (beyond GPAW); beyond the address field.
        for bad in [0x1001, 1 << 47, 1 << 48 | 0x1000, 1 << 52] {
            assert_eq!(s.entry(bad, P, true), Err(PteError::BadAddress(bad)));
        }
        // With GPAW 52 bit 47 is an ordinary address bit.
        let wide = SharedBit::new(&td(52));
        assert_eq!(wide.entry(1 << 47, P, true), Ok(1 << 47 | P));
        assert_eq!(
            s.entry(0x2000, 0x1000 | P, true),
            Err(PteError::BadFlags(0x1001))
        );
    }
}
