//! RESP2 framing, sans-IO: commands to bytes, bytes to replies.
//!
//! Encoding and decoding are done by `redis-protocol`; this module adds what an untrusted server
//! requires: before a frame is handed to the decoder, [`scan`] walks its structure iteratively and
//! enforces [`Limits`] (nesting depth, element count, bulk and total size), so a hostile reply can
//! neither make us allocate without bound nor recurse deeply. "Need more bytes" is
//! [`Decoded::Incomplete`], never an error. Wire format: the Redis serialization protocol
//! specification, RESP2 (<https://redis.io/docs/latest/develop/reference/protocol-spec/>).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use redis_protocol::resp2::{
    decode::decode,
    encode::encode_borrowed,
    types::{BorrowedFrame, OwnedFrame},
};

/// One decoded reply.
#[derive(Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK` style status.
    Status(Vec<u8>),
    /// `-ERR ...` error reply (kept as data: callers decide).
    Error(String),
    /// `:n`.
    Integer(i64),
    /// `$n` bulk string.
    Bulk(Vec<u8>),
    /// `*n` array.
    Array(Vec<Reply>),
    /// `$-1` / `*-1`.
    Nil,
}

impl fmt::Debug for Reply {
    // Values can be ciphertext of secrets; print shapes only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Status(s) => write!(f, "Status({} bytes)", s.len()),
            Reply::Error(e) => write!(f, "Error({e:?})"),
            Reply::Integer(i) => write!(f, "Integer({i})"),
            Reply::Bulk(b) => write!(f, "Bulk({} bytes)", b.len()),
            Reply::Array(a) => f.debug_list().entries(a.iter()).finish(),
            Reply::Nil => f.write_str("Nil"),
        }
    }
}

impl Reply {
    fn from_frame(f: OwnedFrame) -> Reply {
        match f {
            OwnedFrame::SimpleString(s) => Reply::Status(s),
            OwnedFrame::Error(e) => Reply::Error(e),
            OwnedFrame::Integer(i) => Reply::Integer(i),
            OwnedFrame::BulkString(b) => Reply::Bulk(b),
            OwnedFrame::Array(a) => Reply::Array(a.into_iter().map(Reply::from_frame).collect()),
            OwnedFrame::Null => Reply::Nil,
        }
    }

    /// True for an error reply whose code (first word) is `code`, for example `NOSCRIPT`.
    pub fn is_error_code(&self, code: &str) -> bool {
        matches!(self, Reply::Error(e) if e.split(' ').next() == Some(code))
    }
}

/// Bounds applied to every reply before it is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest encoded reply, in bytes.
    pub max_reply: usize,
    /// Deepest array nesting (our commands never need more than 2).
    pub max_depth: usize,
    /// Most elements in one reply, all levels together.
    pub max_elements: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_reply: 64 << 20,
            max_depth: 4,
            max_elements: 1 << 20,
        }
    }
}

/// A reply the decoder refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RespError {
    /// Not RESP2 (bad type byte, length or terminator).
    Malformed,
    /// The reply exceeds [`Limits`].
    TooLarge,
    /// The reply nests deeper than [`Limits::max_depth`].
    TooDeep,
}

impl fmt::Display for RespError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RespError::Malformed => "malformed RESP reply",
            RespError::TooLarge => "RESP reply exceeds the size limit",
            RespError::TooDeep => "RESP reply nests too deeply",
        })
    }
}

impl core::error::Error for RespError {}

/// Result of a decode attempt.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A whole reply and the number of input bytes it used.
    Frame(Reply, usize),
    /// The input holds a prefix of a reply: read more bytes and call again.
    Incomplete,
}

/// Append one command (an array of bulk strings) to `out`.
pub fn encode_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    let frames: Vec<BorrowedFrame<'_>> =
        args.iter().map(|a| BorrowedFrame::BulkString(a)).collect();
    let frame = BorrowedFrame::Array(&frames);
    let start = out.len();
    out.resize(start + frame.encode_len(false), 0);
    // The buffer was sized with `encode_len`, so encoding cannot run out of room; if the encoder
    // ever disagrees, drop the partial bytes instead of sending them.
    match out
        .get_mut(start..)
        .map(|buf| encode_borrowed(buf, &frame, false))
    {
        Some(Ok(n)) => out.truncate(start + n),
        _ => out.truncate(start),
    }
}

/// Decode one reply from the front of `buf`.
pub fn decode_reply(buf: &[u8], limits: &Limits) -> Result<Decoded, RespError> {
    let len = match scan(buf, limits)? {
        None => return Ok(Decoded::Incomplete),
        Some(len) => len,
    };
    let frame_bytes = buf.get(..len).ok_or(RespError::Malformed)?;
    match decode(frame_bytes) {
        Ok(Some((frame, used))) if used == len => {
            Ok(Decoded::Frame(Reply::from_frame(frame), used))
        }
        _ => Err(RespError::Malformed),
    }
}

/// Walk the frame at the front of `buf` without allocating (an explicit stack of pending element
/// counts, no recursion) and return its length, or `None` if more bytes are needed.
pub fn scan(buf: &[u8], limits: &Limits) -> Result<Option<usize>, RespError> {
    let mut pos = 0usize;
    // pending[i] = elements still expected at depth i
    let mut pending: [u64; 8] = [0; 8];
    let max_depth = limits.max_depth.min(pending.len());
    let mut depth = 0usize;
    let mut elements = 0usize;
    loop {
        if pos > limits.max_reply {
            return Err(RespError::TooLarge);
        }
        let Some(&kind) = buf.get(pos) else {
            return if buf.len() > limits.max_reply {
                Err(RespError::TooLarge)
            } else {
                Ok(None)
            };
        };
        let Some(line_end) = find_crlf(buf, pos + 1) else {
            if buf.len().saturating_sub(pos) > 64 * 1024 && kind != b'-' && kind != b'+' {
                return Err(RespError::Malformed);
            }
            return if buf.len() > limits.max_reply {
                Err(RespError::TooLarge)
            } else {
                Ok(None)
            };
        };
        let line = buf.get(pos + 1..line_end).ok_or(RespError::Malformed)?;
        pos = line_end + 2;
        elements += 1;
        if elements > limits.max_elements {
            return Err(RespError::TooLarge);
        }
        match kind {
            b'+' | b'-' => {}
            b':' => {
                parse_int(line)?;
            }
            b'$' => {
                let n = parse_int(line)?;
                if n >= 0 {
                    let n = usize::try_from(n).map_err(|_| RespError::TooLarge)?;
                    if n > limits.max_reply {
                        return Err(RespError::TooLarge);
                    }
                    let end = pos
                        .checked_add(n)
                        .and_then(|e| e.checked_add(2))
                        .ok_or(RespError::TooLarge)?;
                    if end > limits.max_reply.saturating_add(2) {
                        return Err(RespError::TooLarge);
                    }
                    if buf.len() < end {
                        return Ok(None);
                    }
                    if buf.get(end - 2..end) != Some(b"\r\n") {
                        return Err(RespError::Malformed);
                    }
                    pos = end;
                } else if n != -1 {
                    return Err(RespError::Malformed);
                }
            }
            b'*' => {
                let n = parse_int(line)?;
                if n > 0 {
                    let n = u64::try_from(n).map_err(|_| RespError::Malformed)?;
                    if n > limits.max_elements as u64 {
                        return Err(RespError::TooLarge);
                    }
                    // this array element is consumed from its parent when the array completes
                    if depth + 1 > max_depth {
                        return Err(RespError::TooDeep);
                    }
                    depth += 1;
                    pending[depth] = n;
                    continue;
                } else if n != 0 && n != -1 {
                    return Err(RespError::Malformed);
                }
            }
            _ => return Err(RespError::Malformed),
        }
        // One complete value at the current depth: pop finished arrays.
        loop {
            if depth == 0 {
                return Ok(Some(pos));
            }
            let slot = pending.get_mut(depth).ok_or(RespError::TooDeep)?;
            *slot = slot.saturating_sub(1);
            if *slot > 0 {
                break;
            }
            depth -= 1;
        }
    }
}

fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    let tail = buf.get(from..)?;
    tail.windows(2).position(|w| w == b"\r\n").map(|i| from + i)
}

fn parse_int(line: &[u8]) -> Result<i64, RespError> {
    let s = core::str::from_utf8(line).map_err(|_| RespError::Malformed)?;
    if s.is_empty() || s.len() > 20 {
        return Err(RespError::Malformed);
    }
    s.parse::<i64>().map_err(|_| RespError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn lim() -> Limits {
        Limits::default()
    }

    #[test]
    fn encode_set() {
        let mut out = Vec::new();
        encode_command(&mut out, &[b"SET", b"k", b"v\r\n"]);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nv\r\n\r\n");
    }

    #[test]
    fn round_trip_nested_and_incomplete() {
        let wire: &[u8] = b"*3\r\n$3\r\nabc\r\n*2\r\n:-5\r\n$-1\r\n+OK\r\n-ERR x\r\n";
        let first_len = wire.len() - b"-ERR x\r\n".len();
        for cut in 0..first_len {
            assert_eq!(
                decode_reply(&wire[..cut], &lim()),
                Ok(Decoded::Incomplete),
                "cut {cut}"
            );
        }
        let Decoded::Frame(r, n) = decode_reply(wire, &lim()).unwrap() else {
            panic!()
        };
        assert_eq!(n, first_len);
        assert_eq!(
            r,
            Reply::Array(vec![
                Reply::Bulk(b"abc".to_vec()),
                Reply::Array(vec![Reply::Integer(-5), Reply::Nil]),
                Reply::Status(b"OK".to_vec())
            ])
        );
        let Decoded::Frame(e, _) = decode_reply(&wire[n..], &lim()).unwrap() else {
            panic!()
        };
        assert!(e.is_error_code("ERR"));
        // an encoded command is itself a valid RESP2 array
        let mut cmd = Vec::new();
        encode_command(&mut cmd, &[b"GET", b"\x00\xff"]);
        let Decoded::Frame(c, _) = decode_reply(&cmd, &lim()).unwrap() else {
            panic!()
        };
        assert_eq!(
            c,
            Reply::Array(vec![
                Reply::Bulk(b"GET".to_vec()),
                Reply::Bulk(vec![0, 255])
            ])
        );
    }

    #[test]
    fn hostile_replies() {
        let small = Limits {
            max_reply: 100,
            max_depth: 2,
            max_elements: 10,
        };
        assert_eq!(decode_reply(b"$1000\r\n", &small), Err(RespError::TooLarge));
        assert_eq!(
            decode_reply(b"$99999999999999999999\r\n", &small),
            Err(RespError::Malformed)
        );
        assert_eq!(
            decode_reply(b"*1\r\n*1\r\n*1\r\n:1\r\n", &small),
            Err(RespError::TooDeep)
        );
        assert_eq!(decode_reply(b"*11\r\n", &small), Err(RespError::TooLarge));
        assert_eq!(
            decode_reply(b"$3\r\nabcXY", &small),
            Err(RespError::Malformed)
        );
        assert_eq!(decode_reply(b"!3\r\n", &small), Err(RespError::Malformed));
        assert_eq!(decode_reply(b"$-2\r\n", &small), Err(RespError::Malformed));
        assert_eq!(decode_reply(b":abc\r\n", &small), Err(RespError::Malformed));
        let deep = [b"*1\r\n".as_slice(); 10000].concat();
        assert_eq!(decode_reply(&deep, &lim()), Err(RespError::TooDeep));
    }
}
