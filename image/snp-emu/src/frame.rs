//! The byte-stream framing between a guest (over a serial port) and the emulator. Sans-IO.
//!
//! Every frame is a 12-byte header then `len` payload bytes (all integers little-endian):
//!
//! ```text
//! 0  magic[4]   "SNPQ" guest → emulator, "SNPR" emulator → guest
//! 4  version u8 (1)
//! 5  cmd u8     (see Cmd; a reply echoes the request's cmd)
//! 6  status u16 (requests: 0; replies: see Status)
//! 8  len u32    (≤ MAX_PAYLOAD)
//! 12 payload
//! ```
//!
//! Resynchronisation: bytes that do not start a request header are garbage. The decoder reports
//! a garbage run once (the server answers it with one `BAD_FRAME` reply) and then drops bytes
//! until the next `SNPQ`. A header with a bad version or an oversized length is also reported
//! once and skipped the same way.

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
    /// The certificate table (VCEK, ASK, ARK), unencrypted.
    GetCerts = 3,
}

impl Cmd {
    /// Decodes a command byte.
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

/// A decoded frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Magic (request or reply).
    pub magic: [u8; 4],
    /// Command byte (raw, may be unknown).
    pub cmd: u8,
    /// Status (raw).
    pub status: u16,
    /// Payload length.
    pub len: u32,
}

impl Header {
    /// Encodes the header.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[..4].copy_from_slice(&self.magic);
        h[4] = VERSION;
        h[5] = self.cmd;
        h[6..8].copy_from_slice(&self.status.to_le_bytes());
        h[8..12].copy_from_slice(&self.len.to_le_bytes());
        h
    }

    /// Decodes a header with the given magic; `None` if the magic, version or length is wrong.
    pub fn decode(b: &[u8; HEADER_LEN], magic: [u8; 4]) -> Option<Header> {
        let len = u32::from_le_bytes([b[8], b[9], b[10], b[11]]);
        if b[..4] != magic
            || b[4] != VERSION
            || usize::try_from(len).map_or(true, |l| l > MAX_PAYLOAD)
        {
            return None;
        }
        Some(Header {
            magic,
            cmd: b[5],
            status: u16::from_le_bytes([b[6], b[7]]),
            len,
        })
    }
}

/// Encodes a complete frame.
pub fn encode(magic: [u8; 4], cmd: u8, status: u16, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(
        &Header {
            magic,
            cmd,
            status,
            len,
        }
        .encode(),
    );
    out.extend_from_slice(payload);
    out
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

/// Incremental frame decoder for one direction (`REQ_MAGIC` on the emulator side, `RSP_MAGIC`
/// on the guest side).
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
            if head[..4] != self.magic {
                return None; // only a partial magic is buffered
            }
            let Some(h) = Header::decode(head, self.magic) else {
                // Bad version or length: skip this magic and resynchronise.
                self.buf.drain(..1);
                if !self.in_garbage {
                    self.in_garbage = true;
                    return Some(Event::Garbage);
                }
                continue;
            };
            let total = HEADER_LEN + h.len as usize;
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
            let rest = &buf[i..];
            let n = rest.len().min(4);
            rest[..n] == magic[..n]
        })
        .unwrap_or(buf.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(cmd: u8, p: &[u8]) -> Vec<u8> {
        encode(REQ_MAGIC, cmd, 0, p)
    }

    #[test]
    fn header_round_trip() {
        let h = Header {
            magic: RSP_MAGIC,
            cmd: 2,
            status: 6,
            len: 4096,
        };
        assert_eq!(Header::decode(&h.encode(), RSP_MAGIC), Some(h));
        assert_eq!(Header::decode(&h.encode(), REQ_MAGIC), None);
        let big = Header {
            len: MAX_PAYLOAD as u32 + 1,
            ..h
        };
        assert_eq!(Header::decode(&big.encode(), RSP_MAGIC), None);
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
        .encode()
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
}
