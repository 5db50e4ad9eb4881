//! JSON TTLV: the KMIP JSON encoding of TTLV items, in the dialect of the Cosmian KMS.
//!
//! Each item is `{"tag": "<Name>", "type": "<ItemType>", "value": ...}` (the `type` may be
//! omitted for a Structure). Values: Structure = array of items; Integer = number (or `0x` +
//! 8/16 hex digits); LongInteger = `0x` + 16 upper-case hex digits (numbers accepted);
//! BigInteger = `0x` + hex of big-endian two's complement; Enumeration = name or `0x` + 8 hex
//! digits (numbers accepted); Boolean = bool; TextString = string; ByteString = hex (upper-case
//! when emitted); DateTime = RFC 3339 (or `0x` + 16 hex digits of seconds, the form emitted
//! for years outside 0000..=9999); Interval = number;
//! DateTimeExtended = `0x` + hex of microseconds (8 or 16 bytes).
//!
//! Parsing enforces [`Limits`] (input size, nesting depth, item count) and returns typed
//! [`JsonError`]s; emitting is infallible.

use alloc::borrow::Cow;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::Cell;
use core::fmt;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value as J;

use super::ttlv::{EnumValue, Ttlv, Value, tag_name};

/// Resource limits applied while parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum input size in bytes.
    pub max_bytes: usize,
    /// Maximum Structure nesting depth (the top-level item is depth 1).
    pub max_depth: usize,
    /// Maximum total number of items.
    pub max_items: usize,
}

impl Default for Limits {
    fn default() -> Self {
        // serde_json itself stops at 128 levels of JSON nesting; a TTLV level is 2 JSON levels.
        Limits {
            max_bytes: 4 * 1024 * 1024,
            max_depth: 32,
            max_items: 100_000,
        }
    }
}

/// Why a JSON TTLV document was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonError {
    /// Input larger than [`Limits::max_bytes`].
    TooLarge,
    /// Not JSON (syntax error, bad UTF-8, or deeper than serde_json's recursion limit).
    Syntax,
    /// Nesting deeper than [`Limits::max_depth`].
    TooDeep,
    /// More items than [`Limits::max_items`].
    TooManyItems,
    /// An item is not an object with `tag` and `value`.
    NotAnItem,
    /// `tag` is not a string, or an unknown `0x` code malformed.
    BadTag,
    /// `type` is not one of the KMIP item types.
    UnknownType,
    /// The value does not match its declared type (names the type).
    BadValue(&'static str),
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JsonError::TooLarge => f.write_str("JSON TTLV document too large"),
            JsonError::Syntax => f.write_str("malformed JSON"),
            JsonError::TooDeep => f.write_str("JSON TTLV nesting too deep"),
            JsonError::TooManyItems => f.write_str("too many TTLV items"),
            JsonError::NotAnItem => f.write_str("a TTLV item must be an object with tag and value"),
            JsonError::BadTag => f.write_str("invalid TTLV tag"),
            JsonError::UnknownType => f.write_str("unknown TTLV item type"),
            JsonError::BadValue(t) => write!(f, "invalid value for a TTLV {t}"),
        }
    }
}

impl core::error::Error for JsonError {}

/// Parse one JSON TTLV item.
///
/// The document is streamed into the TTLV tree (no intermediate `serde_json::Value` for the
/// common `tag, type, value` key order); limits are checked as items are met, so an oversized
/// or too deep document is refused before it is built.
pub fn from_slice(input: &[u8], limits: &Limits) -> Result<Ttlv, JsonError> {
    if input.len() > limits.max_bytes {
        return Err(JsonError::TooLarge);
    }
    let ctx = Ctx {
        limits,
        count: Cell::new(0),
        err: Cell::new(None),
    };
    let mut de = serde_json::Deserializer::from_slice(input);
    let r = ItemSeed {
        ctx: &ctx,
        depth: 1,
    }
    .deserialize(&mut de)
    .and_then(|t| de.end().map(|()| t));
    r.map_err(|_| ctx.err.get().unwrap_or(JsonError::Syntax))
}

struct Ctx<'l> {
    limits: &'l Limits,
    count: Cell<usize>,
    /// The typed reason behind a serde error we raised ourselves.
    err: Cell<Option<JsonError>>,
}

impl Ctx<'_> {
    fn fail<E: de::Error>(&self, e: JsonError) -> E {
        self.err.set(Some(e));
        E::custom("invalid JSON TTLV")
    }
    fn enter<E: de::Error>(&self, depth: usize) -> Result<(), E> {
        if depth > self.limits.max_depth {
            return Err(self.fail(JsonError::TooDeep));
        }
        let n = self.count.get().saturating_add(1);
        self.count.set(n);
        if n > self.limits.max_items {
            return Err(self.fail(JsonError::TooManyItems));
        }
        Ok(())
    }
}

#[derive(Clone, Copy)]
struct ItemSeed<'c, 'l> {
    ctx: &'c Ctx<'l>,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for ItemSeed<'_, '_> {
    type Value = Ttlv;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Ttlv, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ItemSeed<'_, '_> {
    type Value = Ttlv;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON TTLV item")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ttlv, A::Error> {
        let ctx = self.ctx;
        ctx.enter(self.depth)?;
        let mut tag: Option<String> = None;
        let mut ty: Option<String> = None;
        let mut value: Option<Value> = None;
        let mut pending: Option<Pending> = None;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match &*key {
                "tag" => match map.next_value::<J>()? {
                    J::String(t) => tag = Some(normalize_tag(&t).map_err(|e| ctx.fail(e))?),
                    _ => return Err(ctx.fail(JsonError::BadTag)),
                },
                "type" => match map.next_value::<J>()? {
                    J::String(t) => ty = Some(t),
                    _ => return Err(ctx.fail(JsonError::UnknownType)),
                },
                "value" => match &ty {
                    Some(t) if t == "Structure" => {
                        value = Some(Value::Structure(map.next_value_seed(StructSeed {
                            ctx,
                            depth: self.depth,
                        })?))
                    }
                    Some(t) => {
                        let mut j = map.next_value::<J>()?;
                        let v = scalar(t, &j);
                        wipe_json(&mut j);
                        value = Some(v.map_err(|e| ctx.fail(e))?);
                    }
                    // `type` after `value`, or absent (a Structure in Cosmian's newer clients):
                    // stream an array as children, keep a scalar and convert it at the end.
                    None => {
                        pending = Some(map.next_value_seed(PendingSeed {
                            ctx,
                            depth: self.depth,
                        })?)
                    }
                },
                _ => {
                    map.next_value::<de::IgnoredAny>()?;
                }
            }
        }
        let tag = tag.ok_or_else(|| ctx.fail(JsonError::BadTag))?;
        let value = match (value, pending) {
            (Some(v), _) => v,
            (None, Some(Pending::Children(c))) => match ty.as_deref() {
                None | Some("Structure") => Value::Structure(c),
                Some(t) => {
                    return Err(ctx.fail(
                        scalar(t, &J::Array(Vec::new()))
                            .err()
                            .unwrap_or(JsonError::UnknownType),
                    ));
                }
            },
            (None, Some(Pending::Scalar(mut j))) => {
                let v = match ty.as_deref() {
                    None | Some("Structure") => Err(JsonError::BadValue("Structure")),
                    Some(t) => scalar(t, &j),
                };
                wipe_json(&mut j);
                v.map_err(|e| ctx.fail(e))?
            }
            (None, None) => return Err(ctx.fail(JsonError::NotAnItem)),
        };
        Ok(Ttlv { tag, value })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Ttlv, A::Error> {
        Err(self.ctx.fail(JsonError::NotAnItem))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Ttlv, E> {
        Err(self.ctx.fail(JsonError::NotAnItem))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Ttlv, E> {
        Err(self.ctx.fail(JsonError::NotAnItem))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Ttlv, E> {
        Err(self.ctx.fail(JsonError::NotAnItem))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Ttlv, E> {
        Err(self.ctx.fail(JsonError::NotAnItem))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Ttlv, E> {
        Err(self.ctx.fail(JsonError::NotAnItem))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Ttlv, E> {
        Err(self.ctx.fail(JsonError::NotAnItem))
    }
}

struct StructSeed<'c, 'l> {
    ctx: &'c Ctx<'l>,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for StructSeed<'_, '_> {
    type Value = Vec<Ttlv>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<Ttlv>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StructSeed<'_, '_> {
    type Value = Vec<Ttlv>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of JSON TTLV items")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Ttlv>, A::Error> {
        let mut children = Vec::new();
        while let Some(c) = seq.next_element_seed(ItemSeed {
            ctx: self.ctx,
            depth: self.depth + 1,
        })? {
            children.push(c);
        }
        Ok(children)
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Vec<Ttlv>, A::Error> {
        Err(self.ctx.fail(JsonError::BadValue("Structure")))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Vec<Ttlv>, E> {
        Err(self.ctx.fail(JsonError::BadValue("Structure")))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Vec<Ttlv>, E> {
        Err(self.ctx.fail(JsonError::BadValue("Structure")))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Vec<Ttlv>, E> {
        Err(self.ctx.fail(JsonError::BadValue("Structure")))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Vec<Ttlv>, E> {
        Err(self.ctx.fail(JsonError::BadValue("Structure")))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Vec<Ttlv>, E> {
        Err(self.ctx.fail(JsonError::BadValue("Structure")))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Vec<Ttlv>, E> {
        Err(self.ctx.fail(JsonError::BadValue("Structure")))
    }
}

enum Pending {
    Children(Vec<Ttlv>),
    Scalar(J),
}

struct PendingSeed<'c, 'l> {
    ctx: &'c Ctx<'l>,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for PendingSeed<'_, '_> {
    type Value = Pending;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Pending, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for PendingSeed<'_, '_> {
    type Value = Pending;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON TTLV value")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Pending, A::Error> {
        StructSeed {
            ctx: self.ctx,
            depth: self.depth,
        }
        .visit_seq(seq)
        .map(Pending::Children)
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Pending, A::Error> {
        Err(self.ctx.fail(JsonError::BadValue("Structure")))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Pending, E> {
        Ok(Pending::Scalar(J::String(v.into())))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Pending, E> {
        Ok(Pending::Scalar(J::from(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Pending, E> {
        Ok(Pending::Scalar(J::from(v)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Pending, E> {
        Ok(Pending::Scalar(J::from(v)))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Pending, E> {
        Ok(Pending::Scalar(J::Bool(v)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Pending, E> {
        Ok(Pending::Scalar(J::Null))
    }
}

/// Byte strings arrive as hex text (key material, plaintexts): wipe the transient copy.
fn wipe_json(j: &mut J) {
    if let J::String(s) = j {
        zeroize::Zeroize::zeroize(s);
    }
}

/// A non-Structure value of item type `ty`.
fn scalar(ty: &str, value: &J) -> Result<Value, JsonError> {
    Ok(match ty {
        "Integer" => {
            let x = integer(value, "Integer")?;
            Value::Integer(i32::try_from(x).map_err(|_| JsonError::BadValue("Integer"))?)
        }
        "LongInteger" => Value::LongInteger(integer(value, "LongInteger")?),
        "BigInteger" => {
            let s = value.as_str().ok_or(JsonError::BadValue("BigInteger"))?;
            let h = s
                .strip_prefix("0x")
                .ok_or(JsonError::BadValue("BigInteger"))?;
            Value::BigInteger(unhex(h).ok_or(JsonError::BadValue("BigInteger"))?)
        }
        "Enumeration" => Value::Enumeration(match value {
            J::String(s) => match s.strip_prefix("0x") {
                Some(h) => EnumValue::Code(hex_u32(h).ok_or(JsonError::BadValue("Enumeration"))?),
                None if !s.is_empty() => EnumValue::Name(s.clone()),
                None => return Err(JsonError::BadValue("Enumeration")),
            },
            J::Number(n) => EnumValue::Code(
                n.as_u64()
                    .and_then(|x| u32::try_from(x).ok())
                    .ok_or(JsonError::BadValue("Enumeration"))?,
            ),
            _ => return Err(JsonError::BadValue("Enumeration")),
        }),
        "Boolean" => Value::Boolean(value.as_bool().ok_or(JsonError::BadValue("Boolean"))?),
        "TextString" => Value::TextString(
            value
                .as_str()
                .ok_or(JsonError::BadValue("TextString"))?
                .into(),
        ),
        "ByteString" => {
            let s = value.as_str().ok_or(JsonError::BadValue("ByteString"))?;
            Value::ByteString(unhex(s).ok_or(JsonError::BadValue("ByteString"))?)
        }
        "DateTime" => {
            let s = value.as_str().ok_or(JsonError::BadValue("DateTime"))?;
            Value::DateTime(match s.strip_prefix("0x") {
                Some(h) => i64::from_be_bytes(
                    unhex(h)
                        .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
                        .ok_or(JsonError::BadValue("DateTime"))?,
                ),
                None => parse_rfc3339(s).ok_or(JsonError::BadValue("DateTime"))?,
            })
        }
        "Interval" => Value::Interval(
            value
                .as_u64()
                .and_then(|x| u32::try_from(x).ok())
                .ok_or(JsonError::BadValue("Interval"))?,
        ),
        "DateTimeExtended" => {
            let s = value
                .as_str()
                .ok_or(JsonError::BadValue("DateTimeExtended"))?;
            let h = s
                .strip_prefix("0x")
                .ok_or(JsonError::BadValue("DateTimeExtended"))?;
            let b = unhex(h).ok_or(JsonError::BadValue("DateTimeExtended"))?;
            let micros = match b.len() {
                8 => i64::from_be_bytes(
                    b.as_slice()
                        .try_into()
                        .map_err(|_| JsonError::BadValue("DateTimeExtended"))?,
                ),
                16 => {
                    let x = i128::from_be_bytes(
                        b.as_slice()
                            .try_into()
                            .map_err(|_| JsonError::BadValue("DateTimeExtended"))?,
                    );
                    i64::try_from(x).map_err(|_| JsonError::BadValue("DateTimeExtended"))?
                }
                _ => return Err(JsonError::BadValue("DateTimeExtended")),
            };
            Value::DateTimeExtended(micros)
        }
        "Structure" => return Err(JsonError::BadValue("Structure")),
        _ => return Err(JsonError::UnknownType),
    })
}

fn normalize_tag(tag: &str) -> Result<String, JsonError> {
    if let Some(h) = tag.strip_prefix("0x") {
        let code = hex_u32(h).ok_or(JsonError::BadTag)?;
        if code > 0xFF_FFFF {
            return Err(JsonError::BadTag);
        }
        return Ok(match tag_name(code) {
            Some(n) => n.into(),
            None => alloc::format!("0x{code:06X}"),
        });
    }
    if tag.is_empty() || tag.len() > 128 {
        return Err(JsonError::BadTag);
    }
    Ok(tag.into())
}

fn integer(v: &J, ty: &'static str) -> Result<i64, JsonError> {
    match v {
        J::Number(n) => n.as_i64().ok_or(JsonError::BadValue(ty)),
        J::String(s) => {
            let h = s.strip_prefix("0x").ok_or(JsonError::BadValue(ty))?;
            let b = unhex(h).ok_or(JsonError::BadValue(ty))?;
            match b.len() {
                4 => Ok(i64::from(i32::from_be_bytes(
                    b.as_slice()
                        .try_into()
                        .map_err(|_| JsonError::BadValue(ty))?,
                ))),
                8 => Ok(i64::from_be_bytes(
                    b.as_slice()
                        .try_into()
                        .map_err(|_| JsonError::BadValue(ty))?,
                )),
                _ => Err(JsonError::BadValue(ty)),
            }
        }
        _ => Err(JsonError::BadValue(ty)),
    }
}

fn hex_u32(h: &str) -> Option<u32> {
    if h.is_empty() || h.len() > 8 {
        return None;
    }
    u32::from_str_radix(h, 16).ok()
}

/// Decode hex (either case); `None` on odd length or a non-hex digit (`base16ct`, constant time).
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    base16ct::mixed::decode_vec(s).ok()
}

/// Append upper-case hex (`base16ct`, constant time).
pub fn hex_upper(b: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + 2 * b.len(), 0);
    // The room is exactly twice the input, so encoding cannot fail.
    if let Some(dst) = out.get_mut(start..) {
        let _ = base16ct::upper::encode(b, dst);
    }
}

/// Serialize one item as compact JSON.
pub fn to_vec(t: &Ttlv) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    emit(t, &mut out);
    out
}

/// Append one item as compact JSON to `out`.
pub fn emit(t: &Ttlv, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"tag\":");
    json_str(&t.tag, out);
    out.extend_from_slice(b",\"type\":\"");
    out.extend_from_slice(t.value.type_name().as_bytes());
    out.extend_from_slice(b"\",\"value\":");
    match &t.value {
        Value::Structure(c) => {
            out.push(b'[');
            for (i, x) in c.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                emit(x, out);
            }
            out.push(b']');
        }
        Value::Integer(v) => out.extend_from_slice(alloc::format!("{v}").as_bytes()),
        Value::LongInteger(v) => {
            out.extend_from_slice(b"\"0x");
            hex_upper(&v.to_be_bytes(), out);
            out.push(b'"');
        }
        Value::BigInteger(b) => {
            out.extend_from_slice(b"\"0x");
            hex_upper(b, out);
            out.push(b'"');
        }
        Value::Enumeration(EnumValue::Name(n)) => json_str(n, out),
        Value::Enumeration(EnumValue::Code(c)) => {
            out.extend_from_slice(b"\"0x");
            hex_upper(&c.to_be_bytes(), out);
            out.push(b'"');
        }
        Value::Boolean(v) => out.extend_from_slice(if *v { b"true" } else { b"false" }),
        Value::TextString(s) => json_str(s, out),
        Value::ByteString(b) => {
            out.push(b'"');
            hex_upper(b, out);
            out.push(b'"');
        }
        // RFC 3339 §5.6 has four-digit years only: a time outside 0000..=9999 (reachable from a
        // `0x` value or a negative offset on year 0000) is emitted in the `0x` form, so it parses back.
        Value::DateTime(s) if !RFC3339_SECS.contains(s) => {
            out.extend_from_slice(b"\"0x");
            hex_upper(&s.to_be_bytes(), out);
            out.push(b'"');
        }
        Value::DateTime(s) => {
            out.push(b'"');
            out.extend_from_slice(format_rfc3339(*s).as_bytes());
            out.push(b'"');
        }
        Value::Interval(v) => out.extend_from_slice(alloc::format!("{v}").as_bytes()),
        Value::DateTimeExtended(v) => {
            out.extend_from_slice(b"\"0x");
            hex_upper(&v.to_be_bytes(), out);
            out.push(b'"');
        }
    }
    out.push(b'}');
}

/// Append a JSON string literal (RFC 8259 §7 escaping).
pub fn json_str(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(alloc::format!("\\u{:04x}", c as u32).as_bytes())
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

// --- RFC 3339 date-time <-> POSIX seconds (proleptic Gregorian, through `der::DateTime`) ---

/// `der::DateTime` covers 1970..=9999. The Gregorian calendar repeats every 400 years
/// (146 097 days, a whole number of weeks), so a date in 0000..=1969 is handled 2000 years
/// later and shifted back.
const SHIFT_YEARS: u16 = 2000;
/// [`SHIFT_YEARS`] in seconds: five 400-year cycles.
const SHIFT_SECS: i64 = 5 * 146_097 * 86_400;

/// POSIX seconds of a UTC civil date and time (`None` for an impossible date or a year past
/// 9999).
fn civil_to_secs(y: u16, mo: u8, d: u8, h: u8, mi: u8, se: u8) -> Option<i64> {
    let (year, shift) = if y < 1970 {
        (y + SHIFT_YEARS, SHIFT_SECS)
    } else {
        (y, 0)
    };
    let dt = der::DateTime::new(year, mo, d, h, mi, se).ok()?;
    i64::try_from(dt.unix_duration().as_secs())
        .ok()?
        .checked_sub(shift)
}

/// The UTC civil date and time of POSIX seconds in [`RFC3339_SECS`].
fn secs_to_civil(secs: i64) -> Option<(u16, der::DateTime)> {
    let (secs, shift) = if secs < 0 {
        (secs.checked_add(SHIFT_SECS)?, SHIFT_YEARS)
    } else {
        (secs, 0)
    };
    let dt = der::DateTime::from_unix_duration(core::time::Duration::from_secs(
        u64::try_from(secs).ok()?,
    ))
    .ok()?;
    Some((dt.year().checked_sub(shift)?, dt))
}

/// The seconds [`format_rfc3339`] can write with a four-digit year: 0000-01-01T00:00:00Z to
/// 9999-12-31T23:59:59Z.
const RFC3339_SECS: core::ops::RangeInclusive<i64> = -62_167_219_200..=253_402_300_799;

/// Format POSIX seconds as `YYYY-MM-DDTHH:MM:SSZ`. Seconds outside 0000-01-01T00:00:00Z ..=
/// 9999-12-31T23:59:59Z (not RFC 3339) are clamped to those ends; the encoder writes such
/// times in the `0x` form instead.
pub fn format_rfc3339(secs: i64) -> String {
    let secs = secs.clamp(*RFC3339_SECS.start(), *RFC3339_SECS.end());
    match secs_to_civil(secs) {
        Some((y, dt)) => alloc::format!(
            "{y:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            dt.month(),
            dt.day(),
            dt.hour(),
            dt.minutes(),
            dt.seconds()
        ),
        // Unreachable for clamped input (both ends convert); a fixed, valid value otherwise.
        None => String::from("1970-01-01T00:00:00Z"),
    }
}

/// Parse an RFC 3339 `date-time` (§5.6): `YYYY-MM-DD[Tt ]HH:MM:SS[.frac](Z|±HH:MM)`.
/// Fractional seconds are dropped.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: core::ops::Range<usize>| -> Option<i64> {
        let part = b.get(r)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        core::str::from_utf8(part).ok()?.parse().ok()
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if b.get(4) != Some(&b'-')
        || b.get(7) != Some(&b'-')
        || !matches!(b.get(10), Some(b'T' | b't' | b' '))
    {
        return None;
    }
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if b.get(13) != Some(&b':') || b.get(16) != Some(&b':') {
        return None;
    }
    if se > 60 {
        return None;
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    let offset = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() => {
            let oh = num(i + 1..i + 3)?;
            let om = num(i + 4..i + 6)?;
            if b.get(i + 3) != Some(&b':') || oh > 23 || om > 59 {
                return None;
            }
            let o = oh * 3600 + om * 60;
            if *sign == b'+' { o } else { -o }
        }
        _ => return None,
    };
    // A leap second (60) counts as 59: POSIX time has none. `der::DateTime` checks the rest
    // (month, day of that month, hour, minute).
    let narrow = |v: i64| u8::try_from(v).ok();
    let t = civil_to_secs(
        u16::try_from(y).ok()?,
        narrow(mo)?,
        narrow(d)?,
        narrow(h)?,
        narrow(mi)?,
        narrow(se.min(59))?,
    )?;
    t.checked_sub(offset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn lim() -> Limits {
        Limits::default()
    }

    #[test]
    fn every_type_round_trips() {
        let t = Ttlv::structure(
            "RequestMessage",
            vec![
                Ttlv::int("BatchCount", -7),
                Ttlv::new("LongInteger", Value::LongInteger(-2)),
                Ttlv::new("Modulus", Value::BigInteger(vec![0x00, 0xFF, 0x10])),
                Ttlv::enumeration("ObjectType", "SymmetricKey"),
                Ttlv::new("State", Value::Enumeration(EnumValue::Code(2))),
                Ttlv::boolean("Fresh", true),
                Ttlv::text("Name", "a \"quoted\"\n\u{1}é"),
                Ttlv::bytes("Data", &[0xde, 0xad, 0xbe, 0xef]),
                Ttlv::datetime("ActivationDate", 1_700_000_000),
                Ttlv::new("LeaseTime", Value::Interval(86_400)),
                Ttlv::new("TimeStamp", Value::DateTimeExtended(1_700_000_000_123_456)),
                Ttlv::structure("Empty", vec![]),
            ],
        );
        let j = to_vec(&t);
        let back = from_slice(&j, &lim()).unwrap();
        assert_eq!(back, t);
        let s = core::str::from_utf8(&j).unwrap();
        assert!(s.contains(r#""value":"DEADBEEF""#), "{s}");
        assert!(s.contains(r#""value":"0xFFFFFFFFFFFFFFFE""#), "{s}");
        assert!(s.contains(r#""value":"2023-11-14T22:13:20Z""#), "{s}");
        assert!(s.contains(r#""value":"0x00000002""#), "{s}");
    }

    #[test]
    fn accepts_cosmian_variants() {
        // Structure without "type", hex tag, hex integer, lower-case hex bytes, 16-byte
        // DateTimeExtended, DateTime with fraction and offset, numeric enumeration.
        let j = br#"{"tag":"0x420094","value":[
            {"tag":"CryptographicLength","type":"Integer","value":"0x00000100"},
            {"tag":"Data","type":"ByteString","value":"abcdef"},
            {"tag":"TimeStamp","type":"DateTimeExtended","value":"0x00000000000000000000000000000001"},
            {"tag":"ActivationDate","type":"DateTime","value":"2024-02-29T12:00:00.5+01:00"},
            {"tag":"ObjectType","type":"Enumeration","value":2}]}"#;
        let t = from_slice(j, &lim()).unwrap();
        assert_eq!(t.tag, "UniqueIdentifier");
        assert_eq!(
            t.get("CryptographicLength").unwrap().value,
            Value::Integer(256)
        );
        assert_eq!(
            t.get("Data").unwrap().value,
            Value::ByteString(vec![0xab, 0xcd, 0xef])
        );
        assert_eq!(
            t.get("TimeStamp").unwrap().value,
            Value::DateTimeExtended(1)
        );
        assert_eq!(
            t.get("ActivationDate").unwrap().value,
            Value::DateTime(1_709_204_400) // 2024-02-29T11:00:00Z
        );
        assert_eq!(
            t.get("ObjectType").unwrap().value,
            Value::Enumeration(EnumValue::Code(2))
        );
    }

    #[test]
    fn any_key_order() {
        let l = lim();
        let t = from_slice(
            br#"{"value":[{"value":5,"type":"Integer","tag":"A"},{"type":"TextString","value":"x","tag":"B"}],"tag":"S"}"#,
            &l,
        )
        .unwrap();
        assert_eq!(t.tag, "S");
        assert_eq!(t.get("A").unwrap().value, Value::Integer(5));
        assert_eq!(t.get("B").unwrap().value, Value::TextString("x".into()));
        let t = from_slice(
            br#"{"value":[],"type":"Structure","tag":"S","extra":{"a":[1]}}"#,
            &l,
        )
        .unwrap();
        assert_eq!(t.value, Value::Structure(vec![]));
        assert_eq!(
            from_slice(br#"{"tag":"S","value":[1]}"#, &l),
            Err(JsonError::NotAnItem)
        );
        assert_eq!(
            from_slice(br#"{"value":[],"type":"Integer","tag":"A"}"#, &l),
            Err(JsonError::BadValue("Integer"))
        );
        assert_eq!(
            from_slice(br#"{"tag":"A","type":"Integer","value":[]}"#, &l),
            Err(JsonError::BadValue("Integer"))
        );
        assert_eq!(
            from_slice(br#"{"tag":"A","value":"x"}"#, &l),
            Err(JsonError::BadValue("Structure"))
        );
        assert_eq!(from_slice(br#"{"tag":"A"}"#, &l), Err(JsonError::NotAnItem));
        assert_eq!(
            from_slice(br#"{"tag":"A","value":[]} trailing"#, &l),
            Err(JsonError::Syntax)
        );
    }

    #[test]
    fn rejects_bad_input_with_typed_errors() {
        let l = lim();
        assert_eq!(from_slice(b"{", &l), Err(JsonError::Syntax));
        assert_eq!(from_slice(b"[]", &l), Err(JsonError::NotAnItem));
        assert_eq!(
            from_slice(br#"{"tag":1,"value":1}"#, &l),
            Err(JsonError::BadTag)
        );
        assert_eq!(
            from_slice(br#"{"tag":"X","type":"Float","value":1}"#, &l),
            Err(JsonError::UnknownType)
        );
        assert_eq!(
            from_slice(br#"{"tag":"X","type":"Integer","value":4294967296}"#, &l),
            Err(JsonError::BadValue("Integer"))
        );
        assert_eq!(
            from_slice(br#"{"tag":"X","type":"ByteString","value":"ABC"}"#, &l),
            Err(JsonError::BadValue("ByteString"))
        );
        assert_eq!(
            from_slice(
                br#"{"tag":"X","type":"DateTime","value":"2024-13-01T00:00:00Z"}"#,
                &l
            ),
            Err(JsonError::BadValue("DateTime"))
        );
        assert_eq!(
            from_slice(br#"{"tag":"X","type":"Boolean","value":"true"}"#, &l),
            Err(JsonError::BadValue("Boolean"))
        );
        let small = Limits { max_bytes: 10, ..l };
        assert_eq!(
            from_slice(br#"{"tag":"X","value":[]}"#, &small),
            Err(JsonError::TooLarge)
        );
        let mut deep = String::new();
        for _ in 0..40 {
            deep.push_str(r#"{"tag":"S","value":["#);
        }
        for _ in 0..40 {
            deep.push_str("]}");
        }
        assert_eq!(from_slice(deep.as_bytes(), &l), Err(JsonError::TooDeep));
        let few = Limits { max_items: 2, ..l };
        assert_eq!(
            from_slice(br#"{"tag":"S","value":[{"tag":"A","type":"Integer","value":1},{"tag":"B","type":"Integer","value":1}]}"#, &few),
            Err(JsonError::TooManyItems)
        );
    }

    /// Deterministic pseudo-random TTLV trees survive emit → parse unchanged.
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
            let tag =
                ["Data", "Key", "ObjectType", "0x540001", "Weird\"Tag"][x.next() as usize % 5];
            let tag = if tag == "0x540001" { "0x540001" } else { tag };
            let value = match x.next() % if depth > 4 { 10 } else { 11 } {
                0 => Value::Integer(x.next() as i32),
                1 => Value::LongInteger(x.next() as i64),
                2 => Value::BigInteger((0..x.next() % 20).map(|_| x.next() as u8).collect()),
                3 => Value::Enumeration(EnumValue::Code(x.next() as u32)),
                4 => Value::Boolean(x.next().is_multiple_of(2)),
                5 => Value::TextString(
                    (0..x.next() % 8)
                        .map(|_| char::from_u32((x.next() % 0x3000) as u32).unwrap_or('?'))
                        .collect(),
                ),
                6 => Value::ByteString((0..x.next() % 40).map(|_| x.next() as u8).collect()),
                7 => Value::DateTime((x.next() % 8_000_000_000) as i64 - 1_000_000_000),
                8 => Value::Interval(x.next() as u32),
                9 => Value::DateTimeExtended(x.next() as i64 >> 1),
                _ => Value::Structure((0..x.next() % 5).map(|_| tree(x, depth + 1)).collect()),
            };
            Ttlv::new(tag, value)
        }
        let mut x = X(0x9E37_79B9_7F4A_7C15);
        for _ in 0..300 {
            let t = tree(&mut x, 0);
            let j = to_vec(&t);
            assert_eq!(
                from_slice(&j, &lim()).unwrap(),
                t,
                "{}",
                String::from_utf8_lossy(&j)
            );
        }
    }

    #[test]
    fn rfc3339_edges() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59Z");
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59Z"), Some(-1));
        for s in [951_782_400i64, 4_102_444_800, 1_709_208_000] {
            assert_eq!(parse_rfc3339(&format_rfc3339(s)), Some(s));
        }
        assert_eq!(parse_rfc3339("2024-01-01T00:00:00"), None);
        assert_eq!(parse_rfc3339("2024-01-01T00:00:00Zjunk"), None);
        assert_eq!(
            format_rfc3339(*RFC3339_SECS.start()),
            "0000-01-01T00:00:00Z"
        );
        assert_eq!(format_rfc3339(*RFC3339_SECS.end()), "9999-12-31T23:59:59Z");
        // Days that do not exist in that month are refused; leap years follow the Gregorian
        // rule on both sides of 1970 (dates before it go through the 400-year shift).
        assert_eq!(parse_rfc3339("2024-02-30T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("1900-02-29T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("2023-04-31T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("1600-02-29T12:00:00Z"), Some(-11_670_955_200));
        assert_eq!(format_rfc3339(-11_670_955_200), "1600-02-29T12:00:00Z");
        assert_eq!(parse_rfc3339("0000-02-29T00:00:00Z"), Some(-62_162_121_600));
        assert_eq!(parse_rfc3339("1998-12-31T23:59:60Z"), Some(915_148_799));
        assert_eq!(
            parse_rfc3339("0000-01-01T00:00:00+01:00"),
            Some(*RFC3339_SECS.start() - 3600)
        );
        for s in [
            -1i64,
            -86_400,
            -2_208_988_800,
            -62_135_596_800,
            -30_000_000_000,
        ] {
            assert_eq!(parse_rfc3339(&format_rfc3339(s)), Some(s), "{s}");
        }
    }

    /// Found by `fuzz/` (kmip_json): a DateTime outside years 0000..=9999 was emitted as a
    /// string with a 5+ digit or negative year that the parser (rightly) refuses.
    #[test]
    fn datetime_out_of_rfc3339_range_round_trips() {
        for v in [
            "0x7FFFFFFFFFFFFFFF",
            "0x8000000000000000",
            "0x000000E8D4A51000",
            "0000-01-01T00:00:00+23:59",
            "9999-12-31T23:59:59-00:01",
        ] {
            let doc =
                alloc::format!(r#"{{"tag":"ActivationDate","type":"DateTime","value":"{v}"}}"#);
            let t = from_slice(doc.as_bytes(), &lim()).unwrap();
            let j = to_vec(&t);
            assert_eq!(
                from_slice(&j, &lim()).unwrap(),
                t,
                "{}",
                String::from_utf8_lossy(&j)
            );
        }
        let t = from_slice(
            br#"{"tag":"ActivationDate","type":"DateTime","value":"0x8000000000000000"}"#,
            &lim(),
        )
        .unwrap();
        assert_eq!(
            to_vec(&t),
            br#"{"tag":"ActivationDate","type":"DateTime","value":"0x8000000000000000"}"#
        );
    }
}
