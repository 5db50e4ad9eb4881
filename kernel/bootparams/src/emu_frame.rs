//! Framing of the `snp-emu` serial protocol, guest side (sans-IO): the kernel's emulated
//! attestation backend writes request frames to COM2 and reads reply frames back.
//!
//! Every frame is a 12-byte header, then `len` payload bytes (integers little-endian):
//!
//! ```text
//! 0  magic[4]   "SNPQ" guest → emulator, "SNPR" emulator → guest
//! 4  version u8 (1)
//! 5  cmd u8     (a reply echoes the request's cmd; 0 answers unframed bytes)
//! 6  status u16 (requests: 0; replies: 0 = ok)
//! 8  len u32    (≤ MAX_PAYLOAD)
//! ```
//!
//! The emulator defines the format (`image/snp-emu/src/frame.rs`, `docs/snp-emu.md`).
//! Bytes before a reply's magic (for example the firmware's console output echoed back) are
//! skipped, up to a bound.

use core::fmt;

/// Request magic.
pub const REQ_MAGIC: [u8; 4] = *b"SNPQ";
/// Reply magic.
pub const RSP_MAGIC: [u8; 4] = *b"SNPR";
/// Protocol version.
pub const VERSION: u8 = 1;
/// Header length.
pub const HEADER_LEN: usize = 12;
/// Largest payload either way.
pub const MAX_PAYLOAD: usize = 16 * 1024;
/// `GET_VMPCK`: VMPCK0 (32 bytes), answered once per emulator lifetime.
pub const CMD_GET_VMPCK: u8 = 1;
/// `GUEST_REQUEST`: one 4 KiB SNP guest-message page each way.
pub const CMD_GUEST_REQUEST: u8 = 2;
/// `GET_CERTS`: the certificate table (VCEK, ASK, ARK; GHCB spec 56421 §4.1.8.1 layout).
pub const CMD_GET_CERTS: u8 = 3;
/// The command of replies to unframed bytes.
pub const CMD_INVALID: u8 = 0;

/// Framing errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// A payload longer than [`MAX_PAYLOAD`].
    TooLarge,
    /// A reply header with another version.
    BadVersion(u8),
    /// More than a frame's worth of bytes without a reply magic.
    NoMagic,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge => f.write_str("payload too large"),
            Self::BadVersion(v) => write!(f, "reply version {v}"),
            Self::NoMagic => f.write_str("no reply header in the byte stream"),
        }
    }
}

impl core::error::Error for FrameError {}

/// The header of a request carrying `len` payload bytes.
pub fn request_header(cmd: u8, len: usize) -> Result<[u8; HEADER_LEN], FrameError> {
    if len > MAX_PAYLOAD {
        return Err(FrameError::TooLarge);
    }
    let mut h = [0u8; HEADER_LEN];
    h[..4].copy_from_slice(&REQ_MAGIC);
    h[4] = VERSION;
    h[5] = cmd;
    h[8..].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(h)
}

/// A reply header (after its magic).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyHeader {
    /// The command answered.
    pub cmd: u8,
    /// 0 = ok.
    pub status: u16,
    /// Payload length (checked against [`MAX_PAYLOAD`]).
    pub len: usize,
}

impl ReplyHeader {
    /// Parses the 8 header bytes that follow the reply magic.
    pub fn parse(rest: &[u8; HEADER_LEN - 4]) -> Result<Self, FrameError> {
        let [version, cmd, s0, s1, l0, l1, l2, l3] = *rest;
        if version != VERSION {
            return Err(FrameError::BadVersion(version));
        }
        let len = u32::from_le_bytes([l0, l1, l2, l3]) as usize;
        if len > MAX_PAYLOAD {
            return Err(FrameError::TooLarge);
        }
        Ok(Self {
            cmd,
            status: u16::from_le_bytes([s0, s1]),
            len,
        })
    }
}

/// Finds the reply magic in a byte stream, one byte at a time.
#[derive(Clone, Debug, Default)]
pub struct MagicScanner {
    window: [u8; 4],
    seen: usize,
}

impl MagicScanner {
    /// Feeds one byte: `Ok(true)` when the last four bytes are the reply magic.
    pub fn push(&mut self, byte: u8) -> Result<bool, FrameError> {
        self.window.copy_within(1.., 0);
        self.window[3] = byte;
        self.seen += 1;
        if self.seen >= 4 && self.window == RSP_MAGIC {
            *self = Self::default();
            return Ok(true);
        }
        if self.seen > MAX_PAYLOAD + HEADER_LEN {
            return Err(FrameError::NoMagic);
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_header_bytes() {
        assert_eq!(
            request_header(CMD_GUEST_REQUEST, 4096),
            Ok([b'S', b'N', b'P', b'Q', 1, 2, 0, 0, 0x00, 0x10, 0, 0])
        );
        assert_eq!(
            request_header(CMD_GET_VMPCK, MAX_PAYLOAD + 1),
            Err(FrameError::TooLarge)
        );
    }

    #[test]
    fn reply_header() {
        assert_eq!(
            ReplyHeader::parse(&[1, 2, 6, 0, 0x00, 0x10, 0, 0]),
            Ok(ReplyHeader {
                cmd: 2,
                status: 6,
                len: 4096
            })
        );
        assert_eq!(
            ReplyHeader::parse(&[2, 2, 0, 0, 0, 0, 0, 0]),
            Err(FrameError::BadVersion(2))
        );
        assert_eq!(
            ReplyHeader::parse(&[1, 2, 0, 0, 0x01, 0x40, 0, 0]),
            Err(FrameError::TooLarge)
        );
        assert_eq!(
            ReplyHeader::parse(&[1, 1, 0, 0, 0xff, 0xff, 0xff, 0xff]),
            Err(FrameError::TooLarge)
        );
    }

    #[test]
    fn magic_after_garbage() {
        let mut s = MagicScanner::default();
        let stream = b"\x1b[2J\x1b[01;01HSNPSNPR";
        let hits: usize = stream
            .iter()
            .map(|b| usize::from(s.push(*b).unwrap()))
            .sum();
        assert_eq!(hits, 1);
        assert!(s.push(b'S').is_ok_and(|hit| !hit));
    }

    #[test]
    fn endless_garbage_is_refused() {
        let mut s = MagicScanner::default();
        let r = (0..=MAX_PAYLOAD + HEADER_LEN)
            .map(|_| s.push(b'x'))
            .find(Result::is_err);
        assert_eq!(r, Some(Err(FrameError::NoMagic)));
    }
}
