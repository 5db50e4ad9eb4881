//! The GHCB page: a 4 KiB page shared with the hypervisor that carries the registers and
//! buffers of a non-automatic exit (NAE).
//!
//! AMD 56421 rev 2.03 §2.2 "GHCB Layout", Table 3 ("GHCB Save Area", offsets 000h–3EFh plus
//! the valid bitmap at 3F0h) and the fields after it (shared buffer at 800h, protocol version
//! at FFAh, usage at FFCh). The save-area offsets are those of the VMSA (APM vol. 2 Table
//! B-4); only the fields this guest uses are named, the rest are `_reserved_N`.
//!
//! The valid bitmap (§2.2, "GHCB Valid Bitmap") has one bit per quadword of the save area: bit
//! `offset / 8` says the field at `offset` was written. The guest sets the bits of the fields
//! it provides; on return it must find the bits of the fields it reads set by the hypervisor,
//! which is what [`Ghcb::get`] checks.
//!
//! [`Ghcb`] is the guest's **private** copy: a backend copies it into the shared page before
//! VMGEXIT and back after it (see [`crate::Vmgexit::exit`]), so every field the guest reads
//! is read once, from memory the hypervisor cannot change behind its back.

use core::mem::{offset_of, size_of};

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Size of the GHCB page.
pub const GHCB_SIZE: usize = 4096;
/// Offset of the shared buffer.
pub const SHARED_BUFFER_OFFSET: usize = 0x800;
/// Size of the shared buffer (800h..FF0h).
pub const SHARED_BUFFER_SIZE: usize = 0x7F0;
/// GHCB usage 0: the standard layout (§2.2).
pub const GHCB_USAGE_STANDARD: u32 = 0;

/// The GHCB page layout (56421 Table 3 and §2.2).
#[repr(C)]
#[derive(Clone, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct GhcbPage {
    _reserved_0: [u8; 0xCB],
    /// 0CBh `CPL`.
    pub cpl: u8,
    _reserved_1: [u8; 0x74],
    /// 140h `XSS`.
    pub xss: U64,
    _reserved_2: [u8; 0x18],
    /// 160h `DR7`.
    pub dr7: U64,
    _reserved_3: [u8; 0x90],
    /// 1F8h `RAX`.
    pub rax: U64,
    _reserved_4: [u8; 0x108],
    /// 308h `RCX`.
    pub rcx: U64,
    /// 310h `RDX`.
    pub rdx: U64,
    /// 318h `RBX`.
    pub rbx: U64,
    _reserved_5: [u8; 0x70],
    /// 390h `SW_EXITCODE`.
    pub sw_exit_code: U64,
    /// 398h `SW_EXITINFO1`.
    pub sw_exit_info_1: U64,
    /// 3A0h `SW_EXITINFO2`.
    pub sw_exit_info_2: U64,
    /// 3A8h `SW_SCRATCH`.
    pub sw_scratch: U64,
    _reserved_6: [u8; 0x38],
    /// 3E8h `XCR0`.
    pub xcr0: U64,
    /// 3F0h valid bitmap (128 bits, little-endian).
    pub valid_bitmap: [u8; 16],
    /// 400h `X87_STATE_GPA`.
    pub x87_state_gpa: U64,
    _reserved_7: [u8; 0x3F8],
    /// 800h shared buffer.
    pub shared_buffer: [u8; SHARED_BUFFER_SIZE],
    _reserved_8: [u8; 10],
    /// FFAh protocol version.
    pub protocol_version: U16,
    /// FFCh GHCB usage.
    pub ghcb_usage: U32,
}

const _: () = {
    assert!(size_of::<GhcbPage>() == GHCB_SIZE);
    assert!(offset_of!(GhcbPage, cpl) == 0x0CB);
    assert!(offset_of!(GhcbPage, xss) == 0x140);
    assert!(offset_of!(GhcbPage, dr7) == 0x160);
    assert!(offset_of!(GhcbPage, rax) == 0x1F8);
    assert!(offset_of!(GhcbPage, rcx) == 0x308);
    assert!(offset_of!(GhcbPage, rdx) == 0x310);
    assert!(offset_of!(GhcbPage, rbx) == 0x318);
    assert!(offset_of!(GhcbPage, sw_exit_code) == 0x390);
    assert!(offset_of!(GhcbPage, sw_exit_info_1) == 0x398);
    assert!(offset_of!(GhcbPage, sw_exit_info_2) == 0x3A0);
    assert!(offset_of!(GhcbPage, sw_scratch) == 0x3A8);
    assert!(offset_of!(GhcbPage, xcr0) == 0x3E8);
    assert!(offset_of!(GhcbPage, valid_bitmap) == 0x3F0);
    assert!(offset_of!(GhcbPage, x87_state_gpa) == 0x400);
    assert!(offset_of!(GhcbPage, shared_buffer) == SHARED_BUFFER_OFFSET);
    assert!(offset_of!(GhcbPage, protocol_version) == 0xFFA);
    assert!(offset_of!(GhcbPage, ghcb_usage) == 0xFFC);
};

/// The save-area fields this guest exchanges, each with its valid-bitmap bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GhcbField {
    /// `RAX`.
    Rax,
    /// `RBX`.
    Rbx,
    /// `RCX`.
    Rcx,
    /// `RDX`.
    Rdx,
    /// `SW_EXITCODE`.
    SwExitCode,
    /// `SW_EXITINFO1`.
    SwExitInfo1,
    /// `SW_EXITINFO2`.
    SwExitInfo2,
    /// `SW_SCRATCH`.
    SwScratch,
    /// `XCR0`.
    Xcr0,
}

impl GhcbField {
    /// Byte offset in the page.
    pub const fn offset(self) -> usize {
        match self {
            Self::Rax => offset_of!(GhcbPage, rax),
            Self::Rbx => offset_of!(GhcbPage, rbx),
            Self::Rcx => offset_of!(GhcbPage, rcx),
            Self::Rdx => offset_of!(GhcbPage, rdx),
            Self::SwExitCode => offset_of!(GhcbPage, sw_exit_code),
            Self::SwExitInfo1 => offset_of!(GhcbPage, sw_exit_info_1),
            Self::SwExitInfo2 => offset_of!(GhcbPage, sw_exit_info_2),
            Self::SwScratch => offset_of!(GhcbPage, sw_scratch),
            Self::Xcr0 => offset_of!(GhcbPage, xcr0),
        }
    }

    /// Bit in the valid bitmap (quadword index of the field).
    pub const fn valid_bit(self) -> usize {
        self.offset() / 8
    }
}

/// A private GHCB image (see the module doc).
#[derive(Clone)]
pub struct Ghcb {
    page: GhcbPage,
}

impl Default for Ghcb {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for Ghcb {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Ghcb")
            .field("sw_exit_code", &self.page.sw_exit_code.get())
            .field("sw_exit_info_1", &self.page.sw_exit_info_1.get())
            .field("sw_exit_info_2", &self.page.sw_exit_info_2.get())
            .field("valid_bitmap", &self.valid_bitmap())
            .finish_non_exhaustive()
    }
}

impl Ghcb {
    /// An all-zero GHCB.
    pub fn new() -> Self {
        Self {
            page: GhcbPage::new_zeroed(),
        }
    }

    /// Starts a new exit: zeroes the save area and the valid bitmap (the shared buffer too,
    /// so nothing of a previous exit is handed out again), then writes the protocol version
    /// and the standard usage.
    pub fn reset(&mut self, protocol_version: u16) {
        self.page = GhcbPage::new_zeroed();
        self.page.protocol_version = protocol_version.into();
        self.page.ghcb_usage = GHCB_USAGE_STANDARD.into();
    }

    /// The page bytes (what a backend copies into the shared GHCB page).
    pub fn as_bytes(&self) -> &[u8; GHCB_SIZE] {
        zerocopy::transmute_ref!(&self.page)
    }

    /// The page bytes, writable (what a backend copies the shared page back into).
    pub fn as_bytes_mut(&mut self) -> &mut [u8; GHCB_SIZE] {
        zerocopy::transmute_mut!(&mut self.page)
    }

    /// The typed layout (read).
    pub fn page(&self) -> &GhcbPage {
        &self.page
    }

    /// The typed layout (write; does not touch the valid bitmap).
    pub fn page_mut(&mut self) -> &mut GhcbPage {
        &mut self.page
    }

    /// The valid bitmap as one integer.
    pub fn valid_bitmap(&self) -> u128 {
        u128::from_le_bytes(self.page.valid_bitmap)
    }

    /// Whether the valid bit of `field` is set.
    pub fn is_valid(&self, field: GhcbField) -> bool {
        self.valid_bitmap() & (1u128 << field.valid_bit()) != 0
    }

    /// Clears the whole valid bitmap (the hypervisor does this before marking what it returns).
    pub fn clear_valid(&mut self) {
        self.page.valid_bitmap = [0; 16];
    }

    fn slot(&mut self, field: GhcbField) -> &mut U64 {
        match field {
            GhcbField::Rax => &mut self.page.rax,
            GhcbField::Rbx => &mut self.page.rbx,
            GhcbField::Rcx => &mut self.page.rcx,
            GhcbField::Rdx => &mut self.page.rdx,
            GhcbField::SwExitCode => &mut self.page.sw_exit_code,
            GhcbField::SwExitInfo1 => &mut self.page.sw_exit_info_1,
            GhcbField::SwExitInfo2 => &mut self.page.sw_exit_info_2,
            GhcbField::SwScratch => &mut self.page.sw_scratch,
            GhcbField::Xcr0 => &mut self.page.xcr0,
        }
    }

    /// Writes `field` and sets its valid bit.
    pub fn set(&mut self, field: GhcbField, value: u64) {
        *self.slot(field) = value.into();
        let bitmap = self.valid_bitmap() | (1u128 << field.valid_bit());
        self.page.valid_bitmap = bitmap.to_le_bytes();
    }

    /// Reads `field`, `None` unless its valid bit is set.
    pub fn get(&self, field: GhcbField) -> Option<u64> {
        if !self.is_valid(field) {
            return None;
        }
        let v = match field {
            GhcbField::Rax => self.page.rax,
            GhcbField::Rbx => self.page.rbx,
            GhcbField::Rcx => self.page.rcx,
            GhcbField::Rdx => self.page.rdx,
            GhcbField::SwExitCode => self.page.sw_exit_code,
            GhcbField::SwExitInfo1 => self.page.sw_exit_info_1,
            GhcbField::SwExitInfo2 => self.page.sw_exit_info_2,
            GhcbField::SwScratch => self.page.sw_scratch,
            GhcbField::Xcr0 => self.page.xcr0,
        };
        Some(v.get())
    }

    /// The shared buffer.
    pub fn shared_buffer(&self) -> &[u8; SHARED_BUFFER_SIZE] {
        &self.page.shared_buffer
    }

    /// The shared buffer, writable.
    pub fn shared_buffer_mut(&mut self) -> &mut [u8; SHARED_BUFFER_SIZE] {
        &mut self.page.shared_buffer
    }

    /// The protocol version field.
    pub fn protocol_version(&self) -> u16 {
        self.page.protocol_version.get()
    }

    /// The usage field.
    pub fn usage(&self) -> u32 {
        self.page.ghcb_usage.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_bits_match_the_specification() {
        // Bits as listed with Table 3: RAX 63, RCX 97, RDX 98, RBX 99, SW_EXITCODE 114,
        // SW_EXITINFO1 115, SW_EXITINFO2 116, SW_SCRATCH 117, XCR0 125.
        let bits: [(GhcbField, usize); 9] = [
            (GhcbField::Rax, 63),
            (GhcbField::Rcx, 97),
            (GhcbField::Rdx, 98),
            (GhcbField::Rbx, 99),
            (GhcbField::SwExitCode, 114),
            (GhcbField::SwExitInfo1, 115),
            (GhcbField::SwExitInfo2, 116),
            (GhcbField::SwScratch, 117),
            (GhcbField::Xcr0, 125),
        ];
        for (f, bit) in bits {
            assert_eq!(f.valid_bit(), bit, "{f:?}");
        }
    }

    #[test]
    fn set_get_bytes() {
        let mut g = Ghcb::new();
        // Pre-fill with a pattern: reset must clear everything.
        g.as_bytes_mut().fill(0xA5);
        g.reset(2);
        assert_eq!(g.valid_bitmap(), 0);
        assert_eq!(g.get(GhcbField::Rax), None);
        g.set(GhcbField::Rax, 0x1122_3344_5566_7788);
        g.set(GhcbField::SwExitCode, 0x7B);
        let b = g.as_bytes();
        assert_eq!(b[0x1F8..0x200], 0x1122_3344_5566_7788u64.to_le_bytes());
        assert_eq!(b[0x390..0x398], 0x7Bu64.to_le_bytes());
        // Bit 63 is byte 7 bit 7; bit 114 is byte 14 bit 2.
        assert_eq!(b[0x3F0 + 7], 0x80);
        assert_eq!(b[0x3F0 + 14], 0x04);
        assert_eq!(b[0xFFA..0xFFC], [2, 0]);
        assert_eq!(b[0xFFC..0x1000], [0, 0, 0, 0]);
        assert!(b[0x800..0xFF0].iter().all(|x| *x == 0));
        assert_eq!(g.get(GhcbField::Rax), Some(0x1122_3344_5566_7788));
        g.clear_valid();
        assert_eq!(g.get(GhcbField::Rax), None);
        assert_eq!(g.protocol_version(), 2);
        assert_eq!(g.usage(), 0);
    }
}
