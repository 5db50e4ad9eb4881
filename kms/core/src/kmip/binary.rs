//! Binary TTLV: the KMIP message encoding of KMIP 1.0–1.4, 2.0 and 2.1 (KMIP 2.1 §9.1 "TTLV
//! Encoding"), as spoken on the KMIP port (5696) and in `application/octet-stream` bodies.
//!
//! An item is an 8-byte header, then the value padded to a multiple of 8 bytes:
//!
//! | bytes | field |
//! |---|---|
//! | 3 | Tag (`0x42XXXX` KMIP, `0x54XXXX` extensions) |
//! | 1 | Item Type (§9.1.1.2: `0x01` Structure … `0x0B` DateTimeExtended) |
//! | 4 | Length of the value, big-endian, padding excluded |
//! | n | Value, then zero bytes up to the next multiple of 8 |
//!
//! Fixed lengths (§9.1.1.4): Integer, Enumeration and Interval 4 (+4 padding), LongInteger,
//! DateTime, DateTimeExtended and Boolean 8; a Big Integer is a multiple of 8 bytes of big-endian
//! two's complement, sign-extended on the left. A Structure's length is the sum of its
//! children's padded encodings.
//!
//! Tags map to the names of [`super::ttlv`]'s tag table (unknown ones stay `0x42XXXX`);
//! enumerations decode by code ([`EnumValue::Code`]) and encode a name through the enumeration
//! of their tag ([`super::types::enum_code`]). Decoding enforces the same [`Limits`] as the JSON
//! form and returns a typed [`BinaryError`] for every malformed input; for any input that
//! decodes, [`to_vec`] gives back the same bytes.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use super::json::Limits;
use super::ttlv::{EnumValue, Ttlv, Value, tag_code, tag_name};
use super::types::enum_code;

/// Size of an item header (tag, type, length).
pub const HEADER_LEN: usize = 8;

/// Why binary TTLV input was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryError {
    /// Input (or a message's declared length) larger than [`Limits::max_bytes`].
    TooLarge,
    /// Fewer than 8 bytes where an item header should be.
    TruncatedHeader,
    /// A declared length (with its padding) runs past the input or the enclosing Structure.
    LengthBeyondInput,
    /// A padding byte is not zero.
    BadPadding,
    /// The item type byte is not one of §9.1.1.2's (carries the byte).
    UnknownType(u8),
    /// A fixed-size type with another length, or a Big Integer not a multiple of 8 (names the
    /// type).
    BadLength(&'static str),
    /// A Boolean other than 0 or 1.
    BadBoolean,
    /// A Text String that is not UTF-8.
    BadUtf8,
    /// A tag outside `0x420000..=0x42FFFF` and `0x540000..=0x54FFFF` (carries the tag).
    BadTag(u32),
    /// Bytes after the top-level item.
    TrailingBytes,
    /// Nesting deeper than [`Limits::max_depth`].
    TooDeep,
    /// More items than [`Limits::max_items`].
    TooManyItems,
}

impl fmt::Display for BinaryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BinaryError::TooLarge => f.write_str("TTLV message too large"),
            BinaryError::TruncatedHeader => f.write_str("truncated TTLV item header"),
            BinaryError::LengthBeyondInput => {
                f.write_str("TTLV item length runs past the input or its structure")
            }
            BinaryError::BadPadding => f.write_str("non-zero TTLV padding"),
            BinaryError::UnknownType(t) => write!(f, "unknown TTLV item type 0x{t:02X}"),
            BinaryError::BadLength(t) => write!(f, "wrong length for a TTLV {t}"),
            BinaryError::BadBoolean => f.write_str("TTLV Boolean neither 0 nor 1"),
            BinaryError::BadUtf8 => f.write_str("TTLV Text String is not UTF-8"),
            BinaryError::BadTag(t) => write!(f, "invalid TTLV tag 0x{t:06X}"),
            BinaryError::TrailingBytes => f.write_str("bytes after the TTLV message"),
            BinaryError::TooDeep => f.write_str("TTLV nesting too deep"),
            BinaryError::TooManyItems => f.write_str("too many TTLV items"),
        }
    }
}

impl core::error::Error for BinaryError {}

/// Why a [`Ttlv`] tree could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodeError {
    /// A tag name with no code (not in the tag table, not `0x42XXXX`/`0x54XXXX`).
    UnknownTag,
    /// An enumeration given by a name its tag's enumeration does not know.
    UnknownEnumeration,
    /// A value or Structure longer than the 32-bit length field.
    TooLong,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::UnknownTag => f.write_str("a tag has no binary TTLV code"),
            EncodeError::UnknownEnumeration => {
                f.write_str("an enumeration name has no binary TTLV code")
            }
            EncodeError::TooLong => f.write_str("a TTLV value is too long"),
        }
    }
}

impl core::error::Error for EncodeError {}

/// Item types (KMIP 2.1 §9.1.1.2).
mod ty {
    pub const STRUCTURE: u8 = 0x01;
    pub const INTEGER: u8 = 0x02;
    pub const LONG_INTEGER: u8 = 0x03;
    pub const BIG_INTEGER: u8 = 0x04;
    pub const ENUMERATION: u8 = 0x05;
    pub const BOOLEAN: u8 = 0x06;
    pub const TEXT_STRING: u8 = 0x07;
    pub const BYTE_STRING: u8 = 0x08;
    pub const DATE_TIME: u8 = 0x09;
    pub const INTERVAL: u8 = 0x0A;
    pub const DATE_TIME_EXTENDED: u8 = 0x0B;
}

/// The total length (header + value + padding) of the message whose first bytes are `head`,
/// or `None` while fewer than [`HEADER_LEN`] bytes have arrived: the framing of a TTLV stream
/// (the KMIP port). The top-level item must be a Structure with a KMIP tag, and its length a
/// multiple of 8 within `max_bytes`.
pub fn message_len(head: &[u8], max_bytes: usize) -> Result<Option<usize>, BinaryError> {
    let Some(h) = head.first_chunk::<HEADER_LEN>() else {
        return Ok(None);
    };
    let tag = u32::from_be_bytes([0, h[0], h[1], h[2]]);
    check_tag(tag)?;
    if h[3] != ty::STRUCTURE {
        return Err(BinaryError::UnknownType(h[3]));
    }
    let len = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
    if len % 8 != 0 {
        return Err(BinaryError::BadLength("Structure"));
    }
    let total = usize::try_from(len)
        .ok()
        .and_then(|l| l.checked_add(HEADER_LEN))
        .ok_or(BinaryError::TooLarge)?;
    if total > max_bytes {
        return Err(BinaryError::TooLarge);
    }
    Ok(Some(total))
}

fn check_tag(tag: u32) -> Result<(), BinaryError> {
    match tag >> 16 {
        0x42 | 0x54 => Ok(()),
        _ => Err(BinaryError::BadTag(tag)),
    }
}

/// Decode one binary TTLV item that fills `input` exactly.
pub fn from_slice(input: &[u8], limits: &Limits) -> Result<Ttlv, BinaryError> {
    if input.len() > limits.max_bytes {
        return Err(BinaryError::TooLarge);
    }
    let mut d = Decoder { limits, items: 0 };
    let (t, used) = d.item(input, 1)?;
    if used != input.len() {
        return Err(BinaryError::TrailingBytes);
    }
    Ok(t)
}

struct Decoder<'l> {
    limits: &'l Limits,
    items: usize,
}

impl Decoder<'_> {
    /// One item at the start of `input`: the item and the bytes it used (padding included).
    fn item(&mut self, input: &[u8], depth: usize) -> Result<(Ttlv, usize), BinaryError> {
        if depth > self.limits.max_depth {
            return Err(BinaryError::TooDeep);
        }
        self.items = self.items.saturating_add(1);
        if self.items > self.limits.max_items {
            return Err(BinaryError::TooManyItems);
        }
        let h = input
            .first_chunk::<HEADER_LEN>()
            .ok_or(BinaryError::TruncatedHeader)?;
        let code = u32::from_be_bytes([0, h[0], h[1], h[2]]);
        check_tag(code)?;
        let item_type = h[3];
        let len = usize::try_from(u32::from_be_bytes([h[4], h[5], h[6], h[7]]))
            .map_err(|_| BinaryError::LengthBeyondInput)?;
        let padded = len
            .checked_next_multiple_of(8)
            .ok_or(BinaryError::LengthBeyondInput)?;
        let end = HEADER_LEN
            .checked_add(padded)
            .ok_or(BinaryError::LengthBeyondInput)?;
        let body = input
            .get(HEADER_LEN..end)
            .ok_or(BinaryError::LengthBeyondInput)?;
        let (v, pad) = body
            .split_at_checked(len)
            .ok_or(BinaryError::LengthBeyondInput)?;
        if pad.iter().any(|b| *b != 0) {
            return Err(BinaryError::BadPadding);
        }
        let fixed = |n: usize, name: &'static str| {
            if len == n {
                Ok(())
            } else {
                Err(BinaryError::BadLength(name))
            }
        };
        let value = match item_type {
            ty::STRUCTURE => {
                let mut children = Vec::new();
                let mut rest = v;
                while !rest.is_empty() {
                    let (c, used) = self.item(rest, depth + 1)?;
                    children.push(c);
                    rest = rest.get(used..).ok_or(BinaryError::LengthBeyondInput)?;
                }
                Value::Structure(children)
            }
            ty::INTEGER => {
                fixed(4, "Integer")?;
                Value::Integer(i32::from_be_bytes(be4(v)?))
            }
            ty::LONG_INTEGER => {
                fixed(8, "LongInteger")?;
                Value::LongInteger(i64::from_be_bytes(be8(v)?))
            }
            ty::BIG_INTEGER => {
                if len % 8 != 0 {
                    return Err(BinaryError::BadLength("BigInteger"));
                }
                Value::BigInteger(v.to_vec())
            }
            ty::ENUMERATION => {
                fixed(4, "Enumeration")?;
                Value::Enumeration(EnumValue::Code(u32::from_be_bytes(be4(v)?)))
            }
            ty::BOOLEAN => {
                fixed(8, "Boolean")?;
                match u64::from_be_bytes(be8(v)?) {
                    0 => Value::Boolean(false),
                    1 => Value::Boolean(true),
                    _ => return Err(BinaryError::BadBoolean),
                }
            }
            ty::TEXT_STRING => Value::TextString(String::from(
                core::str::from_utf8(v).map_err(|_| BinaryError::BadUtf8)?,
            )),
            ty::BYTE_STRING => Value::ByteString(v.to_vec()),
            ty::DATE_TIME => {
                fixed(8, "DateTime")?;
                Value::DateTime(i64::from_be_bytes(be8(v)?))
            }
            ty::INTERVAL => {
                fixed(4, "Interval")?;
                Value::Interval(u32::from_be_bytes(be4(v)?))
            }
            ty::DATE_TIME_EXTENDED => {
                fixed(8, "DateTimeExtended")?;
                Value::DateTimeExtended(i64::from_be_bytes(be8(v)?))
            }
            other => return Err(BinaryError::UnknownType(other)),
        };
        let tag = match tag_name(code) {
            Some(n) => String::from(n),
            None => alloc::format!("0x{code:06X}"),
        };
        Ok((Ttlv { tag, value }, end))
    }
}

fn be4(v: &[u8]) -> Result<[u8; 4], BinaryError> {
    v.try_into().map_err(|_| BinaryError::BadLength("Integer"))
}

fn be8(v: &[u8]) -> Result<[u8; 8], BinaryError> {
    v.try_into()
        .map_err(|_| BinaryError::BadLength("LongInteger"))
}

/// The 3-byte code of a tag as the tree names it: a known name, or `0x42XXXX`/`0x54XXXX`.
pub fn code_of(tag: &str) -> Option<u32> {
    if let Some(c) = tag_code(tag) {
        return Some(c);
    }
    let h = tag.strip_prefix("0x")?;
    if h.len() != 6 {
        return None;
    }
    let c = u32::from_str_radix(h, 16).ok()?;
    check_tag(c).ok().map(|()| c)
}

/// Encode one item.
pub fn to_vec(t: &Ttlv) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(256);
    emit(t, &mut out)?;
    Ok(out)
}

/// Append one item to `out`. On error, `out` may hold part of the item.
pub fn emit(t: &Ttlv, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let code = code_of(&t.tag).ok_or(EncodeError::UnknownTag)?;
    let [_, a, b, c] = code.to_be_bytes();
    out.extend_from_slice(&[a, b, c]);
    let start = out.len();
    let fixed = |out: &mut Vec<u8>, ty: u8, v: &[u8]| {
        out.push(ty);
        put_len(out, v.len())?;
        out.extend_from_slice(v);
        pad(out, v.len());
        Ok(())
    };
    match &t.value {
        Value::Structure(children) => {
            out.push(ty::STRUCTURE);
            out.extend_from_slice(&[0; 4]);
            let body = out.len();
            for c in children {
                emit(c, out)?;
            }
            let len = u32::try_from(out.len() - body).map_err(|_| EncodeError::TooLong)?;
            if let Some(l) = out.get_mut(start + 1..body) {
                l.copy_from_slice(&len.to_be_bytes());
            }
            Ok(())
        }
        Value::Integer(v) => fixed(out, ty::INTEGER, &v.to_be_bytes()),
        Value::LongInteger(v) => fixed(out, ty::LONG_INTEGER, &v.to_be_bytes()),
        Value::BigInteger(v) => {
            // Sign-extend on the left to a multiple of 8 bytes (§9.1.1.4).
            let ext = v.len().next_multiple_of(8) - v.len();
            let fill = if v.first().is_some_and(|b| b & 0x80 != 0) {
                0xFF
            } else {
                0x00
            };
            out.push(ty::BIG_INTEGER);
            put_len(out, v.len() + ext)?;
            out.resize(out.len() + ext, fill);
            out.extend_from_slice(v);
            Ok(())
        }
        Value::Enumeration(e) => {
            let c = match e {
                EnumValue::Code(c) => *c,
                EnumValue::Name(n) => {
                    enum_code(&t.tag, n).ok_or(EncodeError::UnknownEnumeration)?
                }
            };
            fixed(out, ty::ENUMERATION, &c.to_be_bytes())
        }
        Value::Boolean(v) => fixed(out, ty::BOOLEAN, &u64::from(*v).to_be_bytes()),
        Value::TextString(s) => fixed(out, ty::TEXT_STRING, s.as_bytes()),
        Value::ByteString(v) => fixed(out, ty::BYTE_STRING, v),
        Value::DateTime(v) => fixed(out, ty::DATE_TIME, &v.to_be_bytes()),
        Value::Interval(v) => fixed(out, ty::INTERVAL, &v.to_be_bytes()),
        Value::DateTimeExtended(v) => fixed(out, ty::DATE_TIME_EXTENDED, &v.to_be_bytes()),
    }
}

fn put_len(out: &mut Vec<u8>, len: usize) -> Result<(), EncodeError> {
    let l = u32::try_from(len).map_err(|_| EncodeError::TooLong)?;
    out.extend_from_slice(&l.to_be_bytes());
    Ok(())
}

fn pad(out: &mut Vec<u8>, len: usize) {
    out.resize(out.len() + (len.next_multiple_of(8) - len), 0);
}

/// A response in KMIP's own shapes, for the binary encoding: the Cosmian JSON dialect's
/// wrappers have no tag code. `VendorAttributes { VendorAttributes {..}, .. }` becomes one
/// `Attribute { VendorIdentification, AttributeName, AttributeValue }` per vendor attribute
/// (KMIP 2.1 §7.2 Attribute), and list wrappers (`Name { Name {..}, .. }`, same for `Link`)
/// become the repeated items; the attributes the Cosmian dialect copies into a `KeyValue` are
/// left out (binary clients such as PyKMIP read only the Key Material there).
/// [`super::types::Attributes::parse`] reads both shapes.
pub fn wire_shape(t: &Ttlv) -> Ttlv {
    let Value::Structure(children) = &t.value else {
        return t.clone();
    };
    let mut out = Vec::with_capacity(children.len());
    for c in children {
        let wrapped = |inner: &str| matches!(&c.value, Value::Structure(v) if !v.is_empty() && v.iter().all(|x| x.tag == inner));
        if c.tag == "VendorAttributes" && wrapped("VendorAttributes") {
            for v in c.children() {
                let mut a = wire_shape(v);
                a.tag = String::from("Attribute");
                out.push(a);
            }
        } else if (c.tag == "Name" || c.tag == "Link") && wrapped(&c.tag) {
            out.extend(c.children().iter().map(wire_shape));
        } else if t.tag == "KeyValue" && c.tag == "Attributes" {
            // The Cosmian KMS copies the attributes into the Key Value; binary clients
            // (PyKMIP) read only the Key Material there. GetAttributes has them.
        } else {
            out.push(wire_shape(c));
        }
    }
    Ttlv::structure(&t.tag, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn lim() -> Limits {
        Limits::default()
    }

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
        super::super::json::unhex(&s).unwrap()
    }

    /// KMIP 2.1 §9.1.2 "Examples" (tag 0x420020 is Compromise Date in the tag table): each
    /// vector decodes to the value, and the value encodes to the vector.
    #[test]
    fn spec_examples() {
        let cases: Vec<(&str, Value)> = vec![
            ("420020 02 00000004 00000008 00000000", Value::Integer(8)),
            (
                "420020 03 00000008 01B69B4BA5749200",
                Value::LongInteger(123_456_789_000_000_000),
            ),
            (
                "420020 04 00000010 0000000003FD35EB 6BC2DF4618080000",
                Value::BigInteger(hex("0000000003FD35EB6BC2DF4618080000")),
            ),
            (
                "420020 05 00000004 000000FF 00000000",
                Value::Enumeration(EnumValue::Code(255)),
            ),
            ("420020 06 00000008 0000000000000001", Value::Boolean(true)),
            (
                "420020 07 0000000B 48656C6C6F20576F 726C640000000000",
                Value::TextString("Hello World".into()),
            ),
            (
                "420020 08 00000003 0102030000000000",
                Value::ByteString(vec![1, 2, 3]),
            ),
            (
                "420020 09 00000008 0000000047DA67F8",
                Value::DateTime(1_205_495_800),
            ),
            (
                "420020 0A 00000004 000D2F00 00000000",
                Value::Interval(864_000),
            ),
        ];
        for (bytes, value) in cases {
            let b = hex(bytes);
            let t = Ttlv::new("CompromiseDate", value);
            assert_eq!(from_slice(&b, &lim()).unwrap(), t, "{bytes}");
            assert_eq!(to_vec(&t).unwrap(), b, "{bytes}");
        }
        // The Structure example: an Enumeration 254 (tag 420004) then an Integer 255 (420005).
        let b = hex("420020 01 00000020 420004 05 00000004 000000FE 00000000 \
             420005 02 00000004 000000FF 00000000");
        let t = from_slice(&b, &lim()).unwrap();
        assert_eq!(
            t,
            Ttlv::structure(
                "CompromiseDate",
                vec![
                    Ttlv::new(
                        "ApplicationSpecificInformation",
                        Value::Enumeration(EnumValue::Code(254))
                    ),
                    Ttlv::new("ArchiveDate", Value::Integer(255)),
                ]
            )
        );
        assert_eq!(to_vec(&t).unwrap(), b);
    }

    #[test]
    fn date_time_extended_and_unknown_tags() {
        // 2008-03-14T11:56:40.123456Z in microseconds.
        let b = hex("420092 0B 00000008 000448645CF1D040");
        let t = from_slice(&b, &lim()).unwrap();
        assert_eq!(
            t,
            Ttlv::new("TimeStamp", Value::DateTimeExtended(1_205_495_800_123_456))
        );
        assert_eq!(to_vec(&t).unwrap(), b);
        // A tag we have no name for keeps its code; so does an extension tag.
        let b = hex("4201FF 02 00000004 00000001 00000000");
        let t = from_slice(&b, &lim()).unwrap();
        assert_eq!(t.tag, "0x4201FF");
        assert_eq!(to_vec(&t).unwrap(), b);
        let b = hex("540001 07 00000000");
        assert_eq!(from_slice(&b, &lim()).unwrap().tag, "0x540001");
        assert_eq!(to_vec(&from_slice(&b, &lim()).unwrap()).unwrap(), b);
    }

    #[test]
    fn enumeration_names_encode_by_their_tag() {
        let t = Ttlv::structure(
            "RequestPayload",
            vec![
                Ttlv::enumeration("ObjectType", "SymmetricKey"),
                Ttlv::enumeration("CryptographicAlgorithm", "AES"),
                Ttlv::enumeration("AttributeReference", "CryptographicLength"),
                Ttlv::enumeration("ValidityIndicator", "Valid"),
                Ttlv::enumeration("BatchErrorContinuationOption", "Stop"),
            ],
        );
        let b = to_vec(&t).unwrap();
        let back = from_slice(&b, &lim()).unwrap();
        let codes: Vec<&EnumValue> = back
            .children()
            .iter()
            .map(|c| c.as_enum("x").unwrap())
            .collect();
        assert_eq!(
            codes,
            [
                &EnumValue::Code(2),
                &EnumValue::Code(3),
                &EnumValue::Code(0x42_002A),
                &EnumValue::Code(1),
                &EnumValue::Code(2),
            ]
        );
        assert_eq!(
            to_vec(&Ttlv::enumeration("ObjectType", "Teapot")),
            Err(EncodeError::UnknownEnumeration)
        );
        assert_eq!(
            to_vec(&Ttlv::enumeration("NoSuchTag", "AES")),
            Err(EncodeError::UnknownTag)
        );
        assert_eq!(
            to_vec(&Ttlv::int("0x430001", 1)),
            Err(EncodeError::UnknownTag)
        );
        // Cosmian's nonce spelling has the spec's code.
        assert_eq!(
            to_vec(&Ttlv::bytes("IvCounterNonce", &[])).unwrap(),
            hex("42003D 08 00000000")
        );
    }

    #[test]
    fn cosmian_wrappers_get_kmip_shapes() {
        use super::super::types::{Attributes, Link, LinkType};
        let a = Attributes {
            names: vec!["n1".into(), "n2".into()],
            tags: vec!["t".into()],
            links: vec![Link {
                link_type: LinkType::PublicKeyLink,
                uid: "u".into(),
            }],
            ..Default::default()
        };
        let t = a.to_ttlv("Attributes");
        let w = wire_shape(&t);
        let tags: Vec<&str> = w.children().iter().map(|c| c.tag.as_str()).collect();
        assert_eq!(tags, ["Name", "Name", "Link", "Attribute"]);
        let b = to_vec(&w).unwrap();
        let back = from_slice(&b, &lim()).unwrap();
        assert_eq!(Attributes::parse(&back).unwrap(), a);
        // The Cosmian shape itself has no binary form.
        assert_eq!(to_vec(&t), Err(EncodeError::UnknownTag));
        // Attributes copied into a Key Value are left out; the Key Material stays.
        let kv = Ttlv::structure(
            "KeyValue",
            vec![Ttlv::bytes("KeyMaterial", &[1; 16]), t.clone()],
        );
        assert_eq!(
            wire_shape(&kv),
            Ttlv::structure("KeyValue", vec![Ttlv::bytes("KeyMaterial", &[1; 16])])
        );
    }

    #[test]
    fn big_integers_are_sign_extended() {
        let t = Ttlv::new("Modulus", Value::BigInteger(vec![0x80, 0x01]));
        assert_eq!(
            to_vec(&t).unwrap(),
            hex("420052 04 00000008 FFFFFFFFFFFF8001")
        );
        let t = Ttlv::new("Modulus", Value::BigInteger(vec![0x7F]));
        assert_eq!(
            to_vec(&t).unwrap(),
            hex("420052 04 00000008 000000000000007F")
        );
    }

    #[test]
    fn every_malformed_input_is_named() {
        let l = lim();
        let e = |s: &str| from_slice(&hex(s), &l);
        assert_eq!(e(""), Err(BinaryError::TruncatedHeader));
        assert_eq!(e("420020 02 000000"), Err(BinaryError::TruncatedHeader));
        assert_eq!(
            e("420020 02 00000004 00000008"),
            Err(BinaryError::LengthBeyondInput)
        );
        assert_eq!(
            e("420020 02 00000004 00000008 00000001"),
            Err(BinaryError::BadPadding)
        );
        assert_eq!(e("420020 0C 00000000"), Err(BinaryError::UnknownType(0x0C)));
        assert_eq!(e("420020 00 00000000"), Err(BinaryError::UnknownType(0)));
        assert_eq!(
            e("420020 02 00000008 0000000000000008"),
            Err(BinaryError::BadLength("Integer"))
        );
        assert_eq!(
            e("420020 03 00000004 00000008 00000000"),
            Err(BinaryError::BadLength("LongInteger"))
        );
        assert_eq!(
            e("420020 04 00000004 00000008 00000000"),
            Err(BinaryError::BadLength("BigInteger"))
        );
        assert_eq!(
            e("420020 06 00000008 0000000000000002"),
            Err(BinaryError::BadBoolean)
        );
        assert_eq!(
            e("420020 07 00000002 FFFE000000000000"),
            Err(BinaryError::BadUtf8)
        );
        assert_eq!(
            e("430020 02 00000004 00000008 00000000"),
            Err(BinaryError::BadTag(0x43_0020))
        );
        assert_eq!(
            e("420020 02 00000004 00000008 00000000 00"),
            Err(BinaryError::TrailingBytes)
        );
        assert_eq!(
            e("420020 02 FFFFFFFF 00000008 00000000"),
            Err(BinaryError::LengthBeyondInput)
        );
        // A child that runs past its Structure (but not past the input).
        assert_eq!(
            e("420020 01 00000008 420004 02 00000004 00000001 00000000"),
            Err(BinaryError::LengthBeyondInput)
        );
        let small = Limits { max_bytes: 8, ..l };
        assert_eq!(
            from_slice(&hex("420020 08 00000001 0100000000000000"), &small),
            Err(BinaryError::TooLarge)
        );
        let few = Limits { max_items: 2, ..l };
        assert_eq!(
            from_slice(
                &hex("420020 01 00000020 420004 02 00000004 00000001 00000000 \
                      420005 02 00000004 00000001 00000000"),
                &few
            ),
            Err(BinaryError::TooManyItems)
        );
        // 40 nested Structures.
        let mut deep = Vec::new();
        for i in 0..40u32 {
            deep.extend_from_slice(&hex("420020 01"));
            deep.extend_from_slice(&((39 - i) * 8).to_be_bytes());
        }
        assert_eq!(from_slice(&deep, &l), Err(BinaryError::TooDeep));
    }

    #[test]
    fn stream_framing() {
        let m = 1 << 20;
        assert_eq!(message_len(&hex("420078 01 0000"), m), Ok(None));
        assert_eq!(message_len(&hex("420078 01 00000010"), m), Ok(Some(24)));
        assert_eq!(
            message_len(&hex("420078 02 00000004"), m),
            Err(BinaryError::UnknownType(2))
        );
        assert_eq!(
            message_len(&hex("420078 01 00000004"), m),
            Err(BinaryError::BadLength("Structure"))
        );
        assert_eq!(
            message_len(&hex("420078 01 00100000"), m),
            Err(BinaryError::TooLarge)
        );
        assert_eq!(
            message_len(&hex("160301 01 00000010"), m),
            Err(BinaryError::BadTag(0x16_0301))
        );
    }

    /// Deterministic pseudo-random trees: encode → decode → encode gives the same bytes, and
    /// the decoded tree carries the same values (enumerations by code).
    #[test]
    fn random_trees_round_trip() {
        struct X(u64);
        impl X {
            fn next(&mut self) -> u64 {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                self.0
            }
        }
        fn tree(x: &mut X, depth: usize) -> Ttlv {
            let tag = ["Data", "Key", "ObjectType", "0x540001", "0x4201FF"][x.next() as usize % 5];
            let value = match x.next() % if depth > 4 { 10 } else { 11 } {
                0 => Value::Integer(x.next() as i32),
                1 => Value::LongInteger(x.next() as i64),
                2 => Value::BigInteger((0..(x.next() % 3) * 8).map(|_| x.next() as u8).collect()),
                3 => Value::Enumeration(EnumValue::Code(x.next() as u32)),
                4 => Value::Boolean(x.next().is_multiple_of(2)),
                5 => Value::TextString(
                    (0..x.next() % 12)
                        .map(|_| char::from_u32((x.next() % 0x3000) as u32).unwrap_or('?'))
                        .collect(),
                ),
                6 => Value::ByteString((0..x.next() % 40).map(|_| x.next() as u8).collect()),
                7 => Value::DateTime(x.next() as i64),
                8 => Value::Interval(x.next() as u32),
                9 => Value::DateTimeExtended(x.next() as i64),
                _ => Value::Structure((0..x.next() % 5).map(|_| tree(x, depth + 1)).collect()),
            };
            Ttlv::new(tag, value)
        }
        let mut x = X(0x9E37_79B9_7F4A_7C15);
        for _ in 0..300 {
            let t = tree(&mut x, 0);
            let b = to_vec(&t).unwrap();
            assert_eq!(b.len() % 8, 0);
            let back = from_slice(&b, &lim()).unwrap();
            assert_eq!(back, t);
            assert_eq!(to_vec(&back).unwrap(), b);
        }
    }
}
