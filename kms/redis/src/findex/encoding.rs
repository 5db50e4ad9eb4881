//! Findex list entries and their packing into fixed-size words.
//!
//! An entry is a 2-byte big-endian metadata field `op (2 bits) | length (14 bits)` followed by
//! `length` payload bytes: an 8-byte big-endian version and the uid. Entries of one append are
//! packed back to back across [`super::WORD_LEN`]-byte words; the last word is padded
//! with zeros, and a metadata field never starts in the last byte of a word. Metadata `0` is
//! padding: the decoder skips to the next word.

use super::{WORD_LEN, Word};
use alloc::vec::Vec;

/// Longest uid an entry can carry.
pub const MAX_UID: usize = (1 << 14) - 1 - 8;

/// What an entry says about its uid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// The uid carries the keyword since `version`.
    Insert,
    /// Inserts of the uid below `version` are obsolete.
    Delete,
}

impl Op {
    fn code(self) -> u16 {
        match self {
            Op::Insert => 1,
            Op::Delete => 2,
        }
    }
    fn from_code(c: u16) -> Option<Op> {
        match c {
            1 => Some(Op::Insert),
            2 => Some(Op::Delete),
            _ => None,
        }
    }
}

/// One list entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Insert or delete.
    pub op: Op,
    /// Record version the entry refers to.
    pub version: u64,
    /// Record uid.
    pub uid: Vec<u8>,
}

/// Entry that cannot be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLong;

/// Entries that do not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeError;

/// Append an entry to a byte stream being packed into words.
pub fn push_entry(stream: &mut Vec<u8>, e: &Entry) -> Result<(), TooLong> {
    if e.uid.len() > MAX_UID {
        return Err(TooLong);
    }
    if stream.len() % WORD_LEN == WORD_LEN - 1 {
        stream.push(0);
    }
    let len = (8 + e.uid.len()) as u16;
    let meta = e.op.code() << 14 | len;
    stream.extend_from_slice(&meta.to_be_bytes());
    stream.extend_from_slice(&e.version.to_be_bytes());
    stream.extend_from_slice(&e.uid);
    Ok(())
}

/// Cut a stream into zero-padded words.
pub fn to_words(stream: &[u8]) -> Vec<Word> {
    stream
        .chunks(WORD_LEN)
        .map(|c| {
            let mut w = [0u8; WORD_LEN];
            w[..c.len()].copy_from_slice(c);
            w
        })
        .collect()
}

/// Decode the entries of a list's words (in list order).
pub fn decode_words(words: &[Word]) -> Result<Vec<Entry>, DecodeError> {
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.iter().copied()).collect();
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < bytes.len() {
        let in_word = WORD_LEN - pos % WORD_LEN;
        let meta = match (in_word >= 2, bytes.get(pos), bytes.get(pos + 1)) {
            (true, Some(a), Some(b)) => u16::from_be_bytes([*a, *b]),
            _ => 0,
        };
        if meta == 0 {
            pos += in_word;
            continue;
        }
        let op = Op::from_code(meta >> 14).ok_or(DecodeError)?;
        let len = usize::from(meta & 0x3fff);
        if len < 8 {
            return Err(DecodeError);
        }
        let start = pos + 2;
        let payload = bytes.get(start..start + len).ok_or(DecodeError)?;
        let mut v = [0u8; 8];
        v.copy_from_slice(payload.get(..8).ok_or(DecodeError)?);
        out.push(Entry {
            op,
            version: u64::from_be_bytes(v),
            uid: payload.get(8..).ok_or(DecodeError)?.to_vec(),
        });
        pos = start + len;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn round_trip_across_words_and_batches() {
        let es = vec![
            Entry {
                op: Op::Insert,
                version: 1,
                uid: b"0123456789abcdef0123456789abcdef-uuid".to_vec(),
            },
            Entry {
                op: Op::Delete,
                version: 7,
                uid: b"x".to_vec(),
            },
            Entry {
                op: Op::Insert,
                version: u64::MAX,
                uid: vec![],
            },
        ];
        for lead in 0..WORD_LEN + 2 {
            // a first batch of varying size, then our batch: exercise every alignment
            let mut s1 = Vec::new();
            if lead >= 10 {
                push_entry(
                    &mut s1,
                    &Entry {
                        op: Op::Insert,
                        version: 9,
                        uid: vec![b'p'; lead - 10],
                    },
                )
                .unwrap();
            }
            let mut words = to_words(&s1);
            let mut s2 = Vec::new();
            for e in &es {
                push_entry(&mut s2, e).unwrap();
            }
            words.extend(to_words(&s2));
            let got = decode_words(&words).unwrap();
            assert_eq!(&got[got.len() - 3..], &es[..]);
        }
    }

    #[test]
    fn exact_bytes() {
        let mut s = Vec::new();
        push_entry(
            &mut s,
            &Entry {
                op: Op::Delete,
                version: 2,
                uid: b"ab".to_vec(),
            },
        )
        .unwrap();
        assert_eq!(s, [0x80, 10, 0, 0, 0, 0, 0, 0, 0, 2, b'a', b'b']);
        let w = to_words(&s);
        assert_eq!(w.len(), 1);
        assert!(w[0][12..].iter().all(|b| *b == 0));
    }

    #[test]
    fn refuses_bad_input() {
        assert_eq!(
            push_entry(
                &mut Vec::new(),
                &Entry {
                    op: Op::Insert,
                    version: 0,
                    uid: vec![0; MAX_UID + 1]
                }
            ),
            Err(TooLong)
        );
        let mut w = [0u8; WORD_LEN];
        w[0] = 0xC0; // op 3
        w[1] = 9;
        assert_eq!(decode_words(&[w]), Err(DecodeError));
        w[0] = 0x40; // insert, length 3 < 8
        w[1] = 3;
        assert_eq!(decode_words(&[w]), Err(DecodeError));
        w[0] = 0x7F; // length beyond the end
        w[1] = 0xFF;
        assert_eq!(decode_words(&[w]), Err(DecodeError));
    }
}
