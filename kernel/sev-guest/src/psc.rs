//! SNP page-state change through the GHCB (NAE `0x8000_0010`).
//!
//! AMD 56421 rev 2.03 §4.1.6 "SNP Page State Change": `SW_SCRATCH` points to a descriptor in
//! the GHCB shared buffer, an 8-byte header (`CUR_ENTRY` u16, `END_ENTRY` u16, reserved u32)
//! followed by up to 253 8-byte entries (`[11:0]` current page, `[51:12]` GFN, `[55:52]`
//! operation, `[56]` page size, `[63:57]` reserved). The hypervisor processes entries from
//! `CUR_ENTRY` to `END_ENTRY` and may return before the end with `CUR_ENTRY` advanced; the
//! guest then issues the exit again until `CUR_ENTRY > END_ENTRY`. `SW_EXITINFO2` = 0 means
//! success; otherwise it holds the error.
//!
//! The guest trusts nothing it reads back: it only takes the hypervisor's `CUR_ENTRY`, checks
//! that it moved forward and that `END_ENTRY` and the reserved field are unchanged, and
//! rewrites the entries from its own private list on every resume (as the Linux guest checks
//! the same header rules in `vmgexit_psc`).

use core::fmt;

use crate::ghcb::SHARED_BUFFER_SIZE;
pub use crate::msr::PageOp;

/// Entries that fit the shared buffer after the header: (2032 - 8) / 8.
pub const PSC_MAX_ENTRIES: usize = 253;
const HEADER: usize = 8;
const _: () = assert!(HEADER + 8 * PSC_MAX_ENTRIES <= SHARED_BUFFER_SIZE);

/// Page size of an entry (and of PVALIDATE).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageSize {
    /// 4 KiB.
    Size4K,
    /// 2 MiB.
    Size2M,
}

/// One page-state change entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PscEntry {
    /// Guest frame number (40 bits).
    pub gfn: u64,
    /// Private or shared.
    pub op: PageOp,
    /// Page size.
    pub size: PageSize,
    /// `CUR_PAGE`: 4 KiB pages of a 2 MiB entry already done (0 from the guest).
    pub cur_page: u16,
}

/// Errors of a page-state change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PscError {
    /// `SW_EXITINFO2` = `1 << 32 | 1`: invalid header.
    InvalidHeader,
    /// `SW_EXITINFO2` = `1 << 32 | 2`: invalid entry.
    InvalidEntry,
    /// `SW_EXITINFO2` = `0x100 << 32`: generic hypervisor error.
    Generic,
    /// Any other non-zero `SW_EXITINFO2` (e.g. a firmware RMPUPDATE status in bits 31:0).
    Other(u64),
    /// The hypervisor changed `END_ENTRY` or the reserved header field.
    HeaderTampered,
    /// `CUR_ENTRY` went backwards or did not move.
    NoProgress {
        /// `CUR_ENTRY` before the exit.
        before: u16,
        /// `CUR_ENTRY` after it.
        after: u16,
    },
    /// A GFN does not fit 40 bits.
    GfnTooLarge(u64),
}

impl fmt::Display for PscError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidHeader => f.write_str("page-state change: invalid header"),
            Self::InvalidEntry => f.write_str("page-state change: invalid entry"),
            Self::Generic => f.write_str("page-state change: generic error"),
            Self::Other(v) => write!(f, "page-state change: error {v:#x}"),
            Self::HeaderTampered => f.write_str("page-state change: header changed by the host"),
            Self::NoProgress { before, after } => {
                write!(f, "page-state change: CUR_ENTRY {before} -> {after}")
            }
            Self::GfnTooLarge(g) => write!(f, "page-state change: GFN {g:#x} too large"),
        }
    }
}

impl core::error::Error for PscError {}

/// `SW_EXITINFO2` for an invalid header.
pub const PSC_ERROR_INVALID_HEADER: u64 = (1 << 32) | 1;
/// `SW_EXITINFO2` for an invalid entry.
pub const PSC_ERROR_INVALID_ENTRY: u64 = (1 << 32) | 2;
/// `SW_EXITINFO2` for a generic error.
pub const PSC_ERROR_GENERIC: u64 = 0x100 << 32;

impl PscError {
    /// Decodes a non-zero `SW_EXITINFO2`.
    pub fn from_info2(v: u64) -> Self {
        match v {
            PSC_ERROR_INVALID_HEADER => Self::InvalidHeader,
            PSC_ERROR_INVALID_ENTRY => Self::InvalidEntry,
            PSC_ERROR_GENERIC => Self::Generic,
            other => Self::Other(other),
        }
    }
}

impl PscEntry {
    /// A 4 KiB entry.
    pub const fn page(gfn: u64, op: PageOp) -> Self {
        Self {
            gfn,
            op,
            size: PageSize::Size4K,
            cur_page: 0,
        }
    }

    /// Encode.
    pub fn encode(&self) -> Result<u64, PscError> {
        if self.gfn >= 1 << 40 {
            return Err(PscError::GfnTooLarge(self.gfn));
        }
        let size = match self.size {
            PageSize::Size4K => 0,
            PageSize::Size2M => 1u64 << 56,
        };
        Ok(u64::from(self.cur_page & 0xFFF) | (self.gfn << 12) | (self.op.to_bits() << 52) | size)
    }

    /// Decode (hypervisor side): `None` for an unknown operation or reserved bits.
    pub fn decode(v: u64) -> Option<Self> {
        if v >> 57 != 0 {
            return None;
        }
        Some(Self {
            cur_page: (v & 0xFFF) as u16,
            gfn: (v >> 12) & ((1 << 40) - 1),
            op: PageOp::from_bits((v >> 52) & 0xF)?,
            size: if v & (1 << 56) != 0 {
                PageSize::Size2M
            } else {
                PageSize::Size4K
            },
        })
    }
}

/// The descriptor header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PscHeader {
    /// Next entry to process.
    pub cur_entry: u16,
    /// Last entry (inclusive).
    pub end_entry: u16,
    /// Reserved (must be zero).
    pub reserved: u32,
}

impl PscHeader {
    /// Reads the header from a shared buffer.
    pub fn read(buf: &[u8; SHARED_BUFFER_SIZE]) -> Self {
        let [a, b, c, d, e, f, g, h, ..] = *buf;
        Self {
            cur_entry: u16::from_le_bytes([a, b]),
            end_entry: u16::from_le_bytes([c, d]),
            reserved: u32::from_le_bytes([e, f, g, h]),
        }
    }

    /// Writes the header into a shared buffer.
    pub fn write(&self, buf: &mut [u8; SHARED_BUFFER_SIZE]) {
        let (head, _) = buf.split_at_mut(HEADER);
        head[..2].copy_from_slice(&self.cur_entry.to_le_bytes());
        head[2..4].copy_from_slice(&self.end_entry.to_le_bytes());
        head[4..].copy_from_slice(&self.reserved.to_le_bytes());
    }
}

/// Writes a descriptor for `entries` (at most [`PSC_MAX_ENTRIES`], at least one) starting at
/// `cur_entry`.
pub fn write_descriptor(
    buf: &mut [u8; SHARED_BUFFER_SIZE],
    cur_entry: u16,
    entries: &[PscEntry],
) -> Result<PscHeader, PscError> {
    let n = entries.len();
    if n == 0 || n > PSC_MAX_ENTRIES {
        return Err(PscError::InvalidHeader);
    }
    let hdr = PscHeader {
        cur_entry,
        end_entry: (n - 1) as u16,
        reserved: 0,
    };
    hdr.write(buf);
    for (slot, e) in buf[HEADER..].chunks_exact_mut(8).zip(entries.iter()) {
        slot.copy_from_slice(&e.encode()?.to_le_bytes());
    }
    Ok(hdr)
}

/// Reads entry `i` of a descriptor (hypervisor side); `None` past the buffer.
pub fn read_entry(buf: &[u8; SHARED_BUFFER_SIZE], i: usize) -> Option<u64> {
    let at = HEADER.checked_add(i.checked_mul(8)?)?;
    let b: [u8; 8] = buf.get(at..at.checked_add(8)?)?.try_into().ok()?;
    Some(u64::from_le_bytes(b))
}

/// Checks the header the hypervisor returned against the one the guest sent; returns the new
/// `CUR_ENTRY` (past `END_ENTRY` when done).
pub fn check_progress(sent: PscHeader, got: PscHeader) -> Result<u16, PscError> {
    if got.end_entry != sent.end_entry || got.reserved != 0 {
        return Err(PscError::HeaderTampered);
    }
    if got.cur_entry <= sent.cur_entry {
        return Err(PscError::NoProgress {
            before: sent.cur_entry,
            after: got.cur_entry,
        });
    }
    if got.cur_entry > sent.end_entry.saturating_add(1) {
        return Err(PscError::HeaderTampered);
    }
    Ok(got.cur_entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_encoding() {
        let e = PscEntry::page(0x12345, PageOp::Shared);
        assert_eq!(e.encode(), Ok(0x0020_0000_1234_5000));
        assert_eq!(PscEntry::decode(0x0020_0000_1234_5000), Some(e));
        let big = PscEntry {
            gfn: 0x200,
            op: PageOp::Private,
            size: PageSize::Size2M,
            cur_page: 3,
        };
        assert_eq!(big.encode(), Ok(0x0110_0000_0020_0003));
        assert_eq!(PscEntry::decode(0x0110_0000_0020_0003), Some(big));
        assert_eq!(PscEntry::decode(1 << 60), None);
        assert_eq!(PscEntry::decode(0x0030_0000_0000_0000), None);
        assert_eq!(
            PscEntry::page(1 << 40, PageOp::Shared).encode(),
            Err(PscError::GfnTooLarge(1 << 40))
        );
    }

    #[test]
    fn descriptor_and_progress() {
        let mut buf = [0xEEu8; SHARED_BUFFER_SIZE];
        let entries: [PscEntry; 3] =
            core::array::from_fn(|i| PscEntry::page(0x100 + i as u64, PageOp::Shared));
        let hdr = write_descriptor(&mut buf, 0, &entries).unwrap();
        assert_eq!(buf[..8], [0, 0, 2, 0, 0, 0, 0, 0]);
        assert_eq!(read_entry(&buf, 1), Some(entries[1].encode().unwrap()));
        assert_eq!(PscHeader::read(&buf), hdr);
        assert_eq!(read_entry(&buf, PSC_MAX_ENTRIES + 1), None);
        // Partial progress, then completion.
        let mid = PscHeader {
            cur_entry: 2,
            ..hdr
        };
        assert_eq!(check_progress(hdr, mid), Ok(2));
        let done = PscHeader {
            cur_entry: 3,
            ..hdr
        };
        assert_eq!(check_progress(mid, done), Ok(3));
        // Backwards, stalled, tampered.
        assert_eq!(
            check_progress(mid, hdr),
            Err(PscError::NoProgress {
                before: 2,
                after: 0
            })
        );
        assert_eq!(
            check_progress(hdr, hdr),
            Err(PscError::NoProgress {
                before: 0,
                after: 0
            })
        );
        let grown = PscHeader {
            cur_entry: 1,
            end_entry: 9,
            reserved: 0,
        };
        assert_eq!(check_progress(hdr, grown), Err(PscError::HeaderTampered));
        let rsv = PscHeader {
            cur_entry: 1,
            reserved: 1,
            ..hdr
        };
        assert_eq!(check_progress(hdr, rsv), Err(PscError::HeaderTampered));
        let past = PscHeader {
            cur_entry: 7,
            ..hdr
        };
        assert_eq!(check_progress(hdr, past), Err(PscError::HeaderTampered));
        assert_eq!(
            write_descriptor(&mut buf, 0, &[]),
            Err(PscError::InvalidHeader)
        );
        let many = [entries[0]; PSC_MAX_ENTRIES + 1];
        assert_eq!(
            write_descriptor(&mut buf, 0, &many),
            Err(PscError::InvalidHeader)
        );
        assert!(write_descriptor(&mut buf, 0, &many[..PSC_MAX_ENTRIES]).is_ok());
    }

    #[test]
    fn error_codes() {
        assert_eq!(
            PscError::from_info2(PSC_ERROR_INVALID_HEADER),
            PscError::InvalidHeader
        );
        assert_eq!(
            PscError::from_info2(PSC_ERROR_INVALID_ENTRY),
            PscError::InvalidEntry
        );
        assert_eq!(PscError::from_info2(PSC_ERROR_GENERIC), PscError::Generic);
        assert_eq!(PscError::from_info2(0x10), PscError::Other(0x10));
    }
}
