//! The `snp-emu` wire protocol, shared by both ends: the guest (the kernel over COM2, host
//! tools over a unix socket, see [`client`]) and the emulator (`image/snp-emu`). Sans-IO,
//! `no_std` + `alloc`.
//!
//! Every frame is a 12-byte header then `len` payload bytes (all integers little-endian):
//!
//! ```text
//! 0  magic[4]   "SNPQ" guest → emulator, "SNPR" emulator → guest
//! 4  version u8 (1)
//! 5  cmd u8     (see Cmd; a reply echoes the request's cmd, 0 answers unframed bytes)
//! 6  status u16 (requests: 0; replies: see Status)
//! 8  len u32    (≤ MAX_PAYLOAD)
//! 12 payload
//! ```
//!
//! Resynchronisation ([`Decoder`]): bytes that do not start a header with the expected magic
//! are garbage. The decoder reports a garbage run once (the emulator answers it with one
//! `BAD_FRAME` reply) and then drops bytes until the next magic. A header with a bad version
//! or an oversized length is also reported once and skipped the same way. The guest side that
//! reads a byte at a time uses [`MagicScanner`] instead, which gives up after a bounded run.
//!
//! The protocol is documented in `docs/snp-emu.md`.
#![no_std]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

#[cfg(feature = "std")]
pub mod client;

use alloc::vec::Vec;
use core::fmt;

/// Request magic.
pub const REQ_MAGIC: [u8; 4] = *b"SNPQ";
/// Reply magic.
pub const RSP_MAGIC: [u8; 4] = *b"SNPR";
/// Protocol version.
pub const VERSION: u8 = 1;
/// Header size.
pub const HEADER_LEN: usize = 12;
/// Largest payload in either direction.
pub const MAX_PAYLOAD: usize = 16 * 1024;

/// Commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Cmd {
    /// Reply to undecodable input (never sent by a guest).
    Invalid = 0,
    /// Get VMPCK0 (32 bytes); answered once per emulator lifetime.
    GetVmpck = 1,
    /// A 4 KiB SNP guest-request page; the reply is the 4 KiB response page.
    GuestRequest = 2,
    /// The certificate table (VCEK, ASK, ARK; GHCB spec 56421 §4.1.8.1 layout), unencrypted.
    GetCerts = 3,
}

impl Cmd {
    /// Decodes a command byte a guest may send (not [`Cmd::Invalid`]).
    pub fn from_u8(v: u8) -> Option<Cmd> {
        match v {
            1 => Some(Cmd::GetVmpck),
            2 => Some(Cmd::GuestRequest),
            3 => Some(Cmd::GetCerts),
            _ => None,
        }
    }
}

/// Reply status codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum Status {
    /// Success; the payload is the command's result.
    Ok = 0,
    /// Undecodable bytes or header (bad magic, version or length).
    BadFrame = 1,
    /// Unknown command byte.
    UnknownCommand = 2,
    /// GET_VMPCK was already answered in this emulator lifetime.
    VmpckTaken = 3,
    /// The guest-request page is malformed (size, header fields, message type, VMPCK id).
    BadMessage = 4,
    /// The guest-request sequence number is not the expected one.
    BadSeqno = 5,
    /// The guest-request authentication tag does not verify.
    AuthFailed = 6,
    /// A payload was sent with a command that takes none, or is the wrong size.
    BadLength = 7,
}

impl Status {
    /// Decodes a status value.
    pub fn from_u16(v: u16) -> Option<Status> {
        Some(match v {
            0 => Status::Ok,
            1 => Status::BadFrame,
            2 => Status::UnknownCommand,
            3 => Status::VmpckTaken,
            4 => Status::BadMessage,
            5 => Status::BadSeqno,
            6 => Status::AuthFailed,
            7 => Status::BadLength,
            _ => return None,
        })
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Ok => "ok",
            Status::BadFrame => "bad frame",
            Status::UnknownCommand => "unknown command",
            Status::VmpckTaken => "VMPCK already handed out",
            Status::BadMessage => "malformed guest message",
            Status::BadSeqno => "wrong sequence number",
            Status::AuthFailed => "authentication failed",
            Status::BadLength => "bad payload length",
        })
    }
}

/// Why bytes are not a frame (or a payload cannot be framed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The header does not start with the expected magic.
    BadMagic,
    /// A header with another protocol version.
    BadVersion(u8),
    /// A payload (length) over [`MAX_PAYLOAD`].
    TooLarge(u32),
    /// More than a frame's worth of bytes without the magic ([`MagicScanner`]).
    NoMagic,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadMagic => f.write_str("bad frame magic"),
            Self::BadVersion(v) => write!(f, "frame version {v}"),
            Self::TooLarge(n) => write!(f, "payload of {n} bytes (at most {MAX_PAYLOAD})"),
            Self::NoMagic => f.write_str("no frame header in the byte stream"),
        }
    }
}

impl core::error::Error for FrameError {}

/// A frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Magic ([`REQ_MAGIC`] or [`RSP_MAGIC`]).
    pub magic: [u8; 4],
    /// Command byte (raw, may be unknown).
    pub cmd: u8,
    /// Status (raw).
    pub status: u16,
    /// Payload length.
    pub len: u32,
}

impl Header {
    /// The wire bytes (version [`VERSION`]). Writes `len` as is: [`emit_frame`] is the checked
    /// way to frame a payload; this also builds invalid headers for tests.
    pub fn emit(&self) -> [u8; HEADER_LEN] {
        let [m0, m1, m2, m3] = self.magic;
        let [s0, s1] = self.status.to_le_bytes();
        let [l0, l1, l2, l3] = self.len.to_le_bytes();
        [m0, m1, m2, m3, VERSION, self.cmd, s0, s1, l0, l1, l2, l3]
    }

    /// Parses a header that must carry `magic`.
    pub fn parse(b: &[u8; HEADER_LEN], magic: [u8; 4]) -> Result<Header, FrameError> {
        let [m0, m1, m2, m3, version, cmd, s0, s1, l0, l1, l2, l3] = *b;
        if [m0, m1, m2, m3] != magic {
            return Err(FrameError::BadMagic);
        }
        if version != VERSION {
            return Err(FrameError::BadVersion(version));
        }
        let len = u32::from_le_bytes([l0, l1, l2, l3]);
        if usize::try_from(len).map_or(true, |l| l > MAX_PAYLOAD) {
            return Err(FrameError::TooLarge(len));
        }
        Ok(Header {
            magic,
            cmd,
            status: u16::from_le_bytes([s0, s1]),
            len,
        })
    }

    /// The payload length as a `usize` (at most [`MAX_PAYLOAD`] for a parsed header).
    pub fn payload_len(&self) -> usize {
        self.len as usize
    }
}

/// A complete frame: header then payload. Refuses payloads over [`MAX_PAYLOAD`].
pub fn emit_frame(
    magic: [u8; 4],
    cmd: u8,
    status: u16,
    payload: &[u8],
) -> Result<Vec<u8>, FrameError> {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    if payload.len() > MAX_PAYLOAD {
        return Err(FrameError::TooLarge(len));
    }
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(
        &Header {
            magic,
            cmd,
            status,
            len,
        }
        .emit(),
    );
    out.extend_from_slice(payload);
    Ok(out)
}

/// What the decoder found in the byte stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// A complete frame.
    Frame {
        /// Command byte (raw).
        cmd: u8,
        /// Status field (raw).
        status: u16,
        /// Payload.
        payload: Vec<u8>,
    },
    /// The start of a run of undecodable bytes (reported once per run).
    Garbage,
}

/// Incremental frame decoder for one direction ([`REQ_MAGIC`] on the emulator side,
/// [`RSP_MAGIC`] on the guest side). The buffer holds at most one frame plus what the caller
/// pushed since the last [`Decoder::next_event`] that returned `None`.
#[derive(Debug)]
pub struct Decoder {
    magic: [u8; 4],
    buf: Vec<u8>,
    in_garbage: bool,
}

impl Decoder {
    /// A decoder for frames starting with `magic`.
    pub fn new(magic: [u8; 4]) -> Decoder {
        Decoder {
            magic,
            buf: Vec::new(),
            in_garbage: false,
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes buffered but not yet decoded.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next event, or `None` if more bytes are needed.
    pub fn next_event(&mut self) -> Option<Event> {
        loop {
            // Resynchronise on the magic: keep a possible magic prefix at the end of the buffer.
            let start = find_magic(&self.buf, &self.magic);
            if start > 0 {
                self.buf.drain(..start);
                if !self.in_garbage {
                    self.in_garbage = true;
                    return Some(Event::Garbage);
                }
            }
            let head: &[u8; HEADER_LEN] = self.buf.get(..HEADER_LEN)?.try_into().ok()?;
            let h = match Header::parse(head, self.magic) {
                Ok(h) => h,
                // Only a partial magic is buffered (`find_magic` kept it): wait for more.
                Err(FrameError::BadMagic) => return None,
                // Bad version or length: skip this magic and resynchronise.
                Err(_) => {
                    self.buf.drain(..1);
                    if !self.in_garbage {
                        self.in_garbage = true;
                        return Some(Event::Garbage);
                    }
                    continue;
                }
            };
            let total = HEADER_LEN + h.payload_len();
            let payload = self.buf.get(HEADER_LEN..total)?.to_vec();
            self.buf.drain(..total);
            self.in_garbage = false;
            return Some(Event::Frame {
                cmd: h.cmd,
                status: h.status,
                payload,
            });
        }
    }
}

/// Index of the first position where `magic` starts or could start (a magic prefix at the end);
/// `buf.len()` if neither.
fn find_magic(buf: &[u8], magic: &[u8; 4]) -> usize {
    (0..buf.len())
        .find(|&i| {
            let rest = buf.get(i..).unwrap_or_default();
            let n = rest.len().min(4);
            rest.get(..n) == magic.get(..n)
        })
        .unwrap_or(buf.len())
}

/// Finds a magic in a byte stream one byte at a time, giving up after more than a frame's
/// worth of bytes ([`FrameError::NoMagic`]).
#[derive(Clone, Debug)]
pub struct MagicScanner {
    magic: [u8; 4],
    window: [u8; 4],
    seen: usize,
}

impl MagicScanner {
    /// A scanner for `magic` ([`RSP_MAGIC`] on the guest side).
    pub fn new(magic: [u8; 4]) -> Self {
        Self {
            magic,
            window: [0; 4],
            seen: 0,
        }
    }

    /// Feeds one byte: `Ok(true)` when the last four bytes are the magic (the scanner then
    /// starts over).
    pub fn push(&mut self, byte: u8) -> Result<bool, FrameError> {
        let [_, a, b, c] = self.window;
        self.window = [a, b, c, byte];
        self.seen += 1;
        if self.seen >= 4 && self.window == self.magic {
            *self = Self::new(self.magic);
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
    use alloc::vec;

    fn frame(cmd: u8, p: &[u8]) -> Vec<u8> {
        emit_frame(REQ_MAGIC, cmd, 0, p).unwrap()
    }

    #[test]
    fn header_round_trip_and_errors() {
        let h = Header {
            magic: RSP_MAGIC,
            cmd: 2,
            status: 6,
            len: 4096,
        };
        assert_eq!(
            h.emit(),
            [b'S', b'N', b'P', b'R', 1, 2, 6, 0, 0x00, 0x10, 0, 0]
        );
        assert_eq!(Header::parse(&h.emit(), RSP_MAGIC), Ok(h));
        assert_eq!(
            Header::parse(&h.emit(), REQ_MAGIC),
            Err(FrameError::BadMagic)
        );
        let big = Header {
            len: MAX_PAYLOAD as u32 + 1,
            ..h
        };
        assert_eq!(
            Header::parse(&big.emit(), RSP_MAGIC),
            Err(FrameError::TooLarge(MAX_PAYLOAD as u32 + 1))
        );
        let mut v2 = h.emit();
        v2[4] = 2;
        assert_eq!(
            Header::parse(&v2, RSP_MAGIC),
            Err(FrameError::BadVersion(2))
        );
    }

    #[test]
    fn emit_frame_checks_the_length() {
        assert_eq!(
            frame(Cmd::GuestRequest as u8, &[0; 4096]).get(..HEADER_LEN),
            Some(&[b'S', b'N', b'P', b'Q', 1, 2, 0, 0, 0x00, 0x10, 0, 0][..])
        );
        assert_eq!(
            emit_frame(REQ_MAGIC, 1, 0, &[0; MAX_PAYLOAD + 1]),
            Err(FrameError::TooLarge(MAX_PAYLOAD as u32 + 1))
        );
    }

    #[test]
    fn frames_split_byte_by_byte() {
        let mut d = Decoder::new(REQ_MAGIC);
        let mut bytes = frame(1, b"");
        bytes.extend(frame(2, &[9u8; 300]));
        let mut events = Vec::new();
        for b in &bytes {
            d.push(&[*b]);
            while let Some(e) = d.next_event() {
                events.push(e);
            }
        }
        assert_eq!(
            events,
            vec![
                Event::Frame {
                    cmd: 1,
                    status: 0,
                    payload: vec![]
                },
                Event::Frame {
                    cmd: 2,
                    status: 0,
                    payload: vec![9u8; 300]
                }
            ]
        );
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn garbage_reported_once_then_resync() {
        let mut d = Decoder::new(REQ_MAGIC);
        d.push(b"hello SNP garbage SN");
        assert_eq!(d.next_event(), Some(Event::Garbage));
        assert_eq!(d.next_event(), None);
        d.push(b"Xmore garbage");
        assert_eq!(d.next_event(), None, "same garbage run: no second report");
        d.push(&frame(3, b""));
        assert_eq!(
            d.next_event(),
            Some(Event::Frame {
                cmd: 3,
                status: 0,
                payload: vec![]
            })
        );
        // A header with an absurd length is garbage too, and the following frame decodes.
        let mut bad = Header {
            magic: REQ_MAGIC,
            cmd: 2,
            status: 0,
            len: u32::MAX,
        }
        .emit()
        .to_vec();
        bad.extend(frame(1, b""));
        d.push(&bad);
        assert_eq!(d.next_event(), Some(Event::Garbage));
        assert_eq!(
            d.next_event(),
            Some(Event::Frame {
                cmd: 1,
                status: 0,
                payload: vec![]
            })
        );
        assert_eq!(d.next_event(), None);
    }

    #[test]
    fn magic_after_garbage() {
        let mut s = MagicScanner::new(RSP_MAGIC);
        let stream = b"\x1b[2J\x1b[01;01HSNPSNPR";
        let mut hits = 0;
        for b in stream {
            if s.push(*b) == Ok(true) {
                hits += 1;
            }
        }
        assert_eq!(hits, 1);
        assert_eq!(s.push(b'S'), Ok(false));
    }

    #[test]
    fn endless_garbage_is_refused() {
        let mut s = MagicScanner::new(RSP_MAGIC);
        let r = (0..=MAX_PAYLOAD + HEADER_LEN)
            .map(|_| s.push(b'x'))
            .find(Result::is_err);
        assert_eq!(r, Some(Err(FrameError::NoMagic)));
    }
}
