//! The GetQuote shared buffer (GHCI 1.5 §3.3, Table "`TDG.VP.VMCALL<GetQuote>` shared GPA
//! format"), all integers little-endian:
//!
//! ```text
//! 0   version  u64   1
//! 8   status   u64   written by the VMM: 0 success, u64::MAX in flight, 0x8000_0000_0000_0000
//!                    error, 0x8000_0000_0000_0001 quote generation service unavailable
//! 16  in_len   u32   bytes of request data (the TDREPORT, 1024 bytes)
//! 20  out_len  u32   bytes of response data (the quote), written by the VMM
//! 24  data     request, then replaced by the response
//! ```
//!
//! The guest emits the request with status 0 ([`emit_request`]), issues GetQuote, and polls
//! until the status leaves "in flight" ([`poll`]). The buffer is shared: every field is the
//! host's word, so `out_len` is bounded by the buffer and the quote is then verified like any
//! other untrusted bytes.

use core::fmt;

/// Header size.
pub const HEADER_LEN: usize = 24;
/// Buffer format version.
pub const VERSION: u64 = 1;

/// GetQuote buffer status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetQuoteStatus {
    /// 0: the quote is in the buffer.
    Success,
    /// u64::MAX: the request is being processed.
    InFlight,
    /// 0x8000_0000_0000_0000: generation failed.
    Error,
    /// 0x8000_0000_0000_0001: the quote generation service is unavailable.
    QgsUnavailable,
    /// Any other value.
    Unknown(u64),
}

impl GetQuoteStatus {
    /// Decode.
    pub fn from_u64(v: u64) -> Self {
        match v {
            0 => Self::Success,
            u64::MAX => Self::InFlight,
            0x8000_0000_0000_0000 => Self::Error,
            0x8000_0000_0000_0001 => Self::QgsUnavailable,
            other => Self::Unknown(other),
        }
    }
    /// Encode.
    pub fn to_u64(self) -> u64 {
        match self {
            Self::Success => 0,
            Self::InFlight => u64::MAX,
            Self::Error => 0x8000_0000_0000_0000,
            Self::QgsUnavailable => 0x8000_0000_0000_0001,
            Self::Unknown(v) => v,
        }
    }
}

/// Why a GetQuote buffer is unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum QuoteBufferError {
    /// The buffer is shorter than the header plus the data.
    TooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        have: usize,
    },
    /// The version field is not 1.
    BadVersion(u64),
    /// The VMM reported a failure.
    Status(GetQuoteStatus),
    /// `out_len` is zero or exceeds the buffer.
    BadOutLen(u32),
}

impl fmt::Display for QuoteBufferError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooSmall { needed, have } => {
                write!(f, "buffer of {have} bytes, {needed} needed")
            }
            Self::BadVersion(v) => write!(f, "buffer version {v}"),
            Self::Status(s) => write!(f, "quote generation failed: {s:?}"),
            Self::BadOutLen(n) => write!(f, "quote length {n} does not fit the buffer"),
        }
    }
}

/// The header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Version.
    pub version: u64,
    /// Status.
    pub status: GetQuoteStatus,
    /// Request length.
    pub in_len: u32,
    /// Response length.
    pub out_len: u32,
}

impl Header {
    /// Read the header (no checks beyond the length).
    pub fn parse(buf: &[u8]) -> Result<Self, QuoteBufferError> {
        let h: &[u8; HEADER_LEN] = buf.first_chunk().ok_or(QuoteBufferError::TooSmall {
            needed: HEADER_LEN,
            have: buf.len(),
        })?;
        let u64_at = |o: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&h[o..o + 8]);
            u64::from_le_bytes(b)
        };
        let u32_at = |o: usize| {
            let mut b = [0u8; 4];
            b.copy_from_slice(&h[o..o + 4]);
            u32::from_le_bytes(b)
        };
        Ok(Self {
            version: u64_at(0),
            status: GetQuoteStatus::from_u64(u64_at(8)),
            in_len: u32_at(16),
            out_len: u32_at(20),
        })
    }

    /// Write the header into the first [`HEADER_LEN`] bytes of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), QuoteBufferError> {
        let have = buf.len();
        let h: &mut [u8; HEADER_LEN] = buf.first_chunk_mut().ok_or(QuoteBufferError::TooSmall {
            needed: HEADER_LEN,
            have,
        })?;
        h[0..8].copy_from_slice(&self.version.to_le_bytes());
        h[8..16].copy_from_slice(&self.status.to_u64().to_le_bytes());
        h[16..20].copy_from_slice(&self.in_len.to_le_bytes());
        h[20..24].copy_from_slice(&self.out_len.to_le_bytes());
        Ok(())
    }
}

/// Writes a request for `data` (the TDREPORT): version 1, status 0, in_len, out_len 0, data;
/// the rest of the buffer is zeroed.
pub fn emit_request(buf: &mut [u8], data: &[u8]) -> Result<(), QuoteBufferError> {
    let needed = HEADER_LEN + data.len();
    if buf.len() < needed {
        return Err(QuoteBufferError::TooSmall {
            needed,
            have: buf.len(),
        });
    }
    let in_len = u32::try_from(data.len()).map_err(|_| QuoteBufferError::TooSmall {
        needed,
        have: buf.len(),
    })?;
    buf.fill(0);
    Header {
        version: VERSION,
        status: GetQuoteStatus::Success,
        in_len,
        out_len: 0,
    }
    .emit(buf)?;
    buf[HEADER_LEN..needed].copy_from_slice(data);
    Ok(())
}

/// Reads the buffer after GetQuote: `Ok(None)` while in flight, `Ok(Some(quote))` when done
/// (the quote borrowed from the buffer), an error for a failure status or a malformed buffer.
pub fn poll(buf: &[u8]) -> Result<Option<&[u8]>, QuoteBufferError> {
    let h = Header::parse(buf)?;
    if h.version != VERSION {
        return Err(QuoteBufferError::BadVersion(h.version));
    }
    match h.status {
        GetQuoteStatus::InFlight => Ok(None),
        GetQuoteStatus::Success => {
            let data = &buf[HEADER_LEN..];
            if h.out_len == 0 {
                return Err(QuoteBufferError::BadOutLen(0));
            }
            data.get(..h.out_len as usize)
                .map(Some)
                .ok_or(QuoteBufferError::BadOutLen(h.out_len))
        }
        other => Err(QuoteBufferError::Status(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;
    use crate::fake::{FakeTdx, QuoteBehaviour};
    use crate::info::Attributes;
    use crate::vmcall::{VMCALL_GET_QUOTE, VmcallStatus, get_quote};

    const SB: u32 = 47;
    const SHARED: u64 = 1 << SB;

    #[test]
    fn header_bytes() {
        let mut buf = [0xA5u8; 64];
        emit_request(&mut buf, &[7; 16]).unwrap();
        assert_eq!(buf[..8], 1u64.to_le_bytes());
        assert_eq!(buf[8..16], [0; 8]);
        assert_eq!(buf[16..20], 16u32.to_le_bytes());
        assert_eq!(buf[20..24], [0; 4]);
        assert_eq!(buf[24..40], [7; 16]);
        assert_eq!(buf[40..], [0; 24], "rest zeroed");
        let h = Header::parse(&buf).unwrap();
        assert_eq!(
            h,
            Header {
                version: 1,
                status: GetQuoteStatus::Success,
                in_len: 16,
                out_len: 0
            }
        );
        let mut again = [0u8; 24];
        h.emit(&mut again).unwrap();
        assert_eq!(again, buf[..24]);
        assert_eq!(
            emit_request(&mut [0; 30], &[0; 16]),
            Err(QuoteBufferError::TooSmall {
                needed: 40,
                have: 30
            })
        );
    }

    #[test]
    fn every_status() {
        for (v, s) in [
            (0, GetQuoteStatus::Success),
            (u64::MAX, GetQuoteStatus::InFlight),
            (1 << 63, GetQuoteStatus::Error),
            ((1 << 63) | 1, GetQuoteStatus::QgsUnavailable),
            (5, GetQuoteStatus::Unknown(5)),
        ] {
            assert_eq!(GetQuoteStatus::from_u64(v), s);
            assert_eq!(s.to_u64(), v);
        }
        let mut buf = [0u8; 64];
        let mut set = |status: GetQuoteStatus, out_len: u32, version: u64| {
            Header {
                version,
                status,
                in_len: 0,
                out_len,
            }
            .emit(&mut buf)
            .unwrap();
            buf
        };
        assert_eq!(poll(&set(GetQuoteStatus::InFlight, 0, 1)), Ok(None));
        assert_eq!(
            poll(&set(GetQuoteStatus::Success, 40, 1))
                .unwrap()
                .map(<[u8]>::len),
            Some(40)
        );
        assert_eq!(
            poll(&set(GetQuoteStatus::Success, 41, 1)),
            Err(QuoteBufferError::BadOutLen(41))
        );
        assert_eq!(
            poll(&set(GetQuoteStatus::Success, 0, 1)),
            Err(QuoteBufferError::BadOutLen(0))
        );
        assert_eq!(
            poll(&set(GetQuoteStatus::Error, 0, 1)),
            Err(QuoteBufferError::Status(GetQuoteStatus::Error))
        );
        assert_eq!(
            poll(&set(GetQuoteStatus::QgsUnavailable, 0, 1)),
            Err(QuoteBufferError::Status(GetQuoteStatus::QgsUnavailable))
        );
        assert_eq!(
            poll(&set(GetQuoteStatus::Unknown(9), 0, 1)),
            Err(QuoteBufferError::Status(GetQuoteStatus::Unknown(9)))
        );
        assert_eq!(
            poll(&set(GetQuoteStatus::Success, 4, 2)),
            Err(QuoteBufferError::BadVersion(2))
        );
        assert_eq!(
            poll(&buf[..10]),
            Err(QuoteBufferError::TooSmall {
                needed: 24,
                have: 10
            })
        );
    }

    #[test]
    fn get_quote_through_the_fake_vmm() {
        let mut t = FakeTdx::new(48, Attributes::SEPT_VE_DISABLE);
        t.add_shared(0x50_0000, 2);
        let mut req = [0u8; 8192];
        emit_request(&mut req, &[0x81; 1024]).unwrap();
        t.write_shared(0x50_0000, &req);
        // The fake VMM answers after two polls.
        t.quote = QuoteBehaviour::After(2, b"QUOTE-BYTES".to_vec());
        get_quote(&mut t, SHARED | 0x50_0000, 8192, SB).unwrap();
        assert_eq!(t.quote_requests, [alloc_vec(&[0x81; 1024])]);
        let mut polls = 0;
        let quote = loop {
            let buf = t.read_shared(0x50_0000, 8192);
            if let Some(q) = poll(&buf).unwrap() {
                break q.to_vec();
            }
            polls += 1;
            t.tick();
        };
        assert_eq!((quote.as_slice(), polls), (&b"QUOTE-BYTES"[..], 2));

        for (behaviour, want) in [
            (
                QuoteBehaviour::Fail(GetQuoteStatus::Error),
                GetQuoteStatus::Error,
            ),
            (
                QuoteBehaviour::Fail(GetQuoteStatus::QgsUnavailable),
                GetQuoteStatus::QgsUnavailable,
            ),
        ] {
            t.write_shared(0x50_0000, &req);
            t.quote = behaviour;
            get_quote(&mut t, SHARED | 0x50_0000, 8192, SB).unwrap();
            t.tick();
            let buf = t.read_shared(0x50_0000, 8192);
            assert_eq!(poll(&buf), Err(QuoteBufferError::Status(want)));
        }
        // The VMM refuses the call itself.
        t.quote = QuoteBehaviour::Refuse(VmcallStatus::InvalidOperand);
        assert_eq!(
            get_quote(&mut t, SHARED | 0x50_0000, 8192, SB),
            Err(Error::Vmcall {
                subfn: VMCALL_GET_QUOTE,
                status: VmcallStatus::InvalidOperand
            })
        );
        // A private (non-shared) GPA or an unaligned length never reaches the VMM.
        let calls = t.quote_calls;
        assert_eq!(
            get_quote(&mut t, 0x50_0000, 8192, SB),
            Err(Error::BadRange {
                start: 0x50_0000,
                len: 8192
            })
        );
        assert_eq!(
            get_quote(&mut t, SHARED | 0x50_0000, 100, SB),
            Err(Error::Misaligned {
                value: 100,
                align: 4096
            })
        );
        assert_eq!(t.quote_calls, calls);
    }

    fn alloc_vec(b: &[u8]) -> std::vec::Vec<u8> {
        b.to_vec()
    }
}
