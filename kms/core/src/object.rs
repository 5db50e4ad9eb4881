//! A managed object as the KMS keeps it, and its serialization into a [`Record`].
//!
//! Record body (version 1), all integers big-endian, every length checked on decode:
//! `"KMO1" ‖ u8 object_type ‖ u8 state ‖ str owner ‖ u8 has_material ‖ [bytes material] ‖
//! u16 n_grants ‖ n × (str user ‖ u32 rights) ‖ bytes attributes`, where `str`/`bytes` are a
//! u32 length then the bytes, and `attributes` is the object's `Attributes` structure as a
//! compact TTLV item: `u8 item type ‖ u8 tag length ‖ tag ‖ value` with fixed-size big-endian
//! numbers, `bytes` for strings, big integers and byte strings, `u32 count ‖ items` for a
//! Structure, and an enumeration as `u8 0 ‖ str name` or `u8 1 ‖ u32 code` (nesting ≤ 32).
//!
//! Keywords (the store's index terms): `type=`, `alg=`, `state=`, `owner=`, `grant=`, `tag=`,
//! `name=`. A destroyed object keeps only `state=`, `owner=` and `grant=`, so it drops out of
//! every Locate except one asking for the destroyed state.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use zeroize::Zeroizing;

use crate::kmip::ttlv::{EnumValue, Ttlv, Value};
use crate::kmip::types::{Attributes, CryptographicAlgorithm, ObjectType, State};
use crate::store::Record;

/// A KMS object.
#[derive(Clone)]
pub struct ManagedObject {
    /// Unique identifier.
    pub uid: String,
    /// Object type.
    pub object_type: ObjectType,
    /// Stored lifecycle state (see [`ManagedObject::effective_state`]).
    pub state: State,
    /// The owner (creator).
    pub owner: String,
    /// Key material in canonical form (raw symmetric key, PKCS#8 private key, SPKI public
    /// key). `None` once destroyed.
    pub material: Option<Zeroizing<Vec<u8>>>,
    /// Grants: user → rights bit mask ([`crate::access::Right`]).
    pub grants: Vec<(String, u32)>,
    /// Attributes (algorithm, length, usage mask, dates, names, tags, links, ...).
    pub attributes: Attributes,
}

impl fmt::Debug for ManagedObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagedObject")
            .field("uid", &self.uid)
            .field("object_type", &self.object_type)
            .field("state", &self.state)
            .field("owner", &self.owner)
            .field("has_material", &self.material.is_some())
            .finish()
    }
}

/// Why a record body could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Wrong magic / version.
    Magic,
    /// Truncated or oversized field.
    Truncated,
    /// A field holds an invalid value.
    Invalid(&'static str),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Magic => f.write_str("object record has an unknown format"),
            DecodeError::Truncated => f.write_str("object record is truncated"),
            DecodeError::Invalid(m) => write!(f, "object record field is invalid: {m}"),
        }
    }
}

impl core::error::Error for DecodeError {}

const MAGIC: &[u8; 4] = b"KMO1";

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(*self.take(1)?.first().ok_or(DecodeError::Truncated)?)
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes(
            b.try_into().map_err(|_| DecodeError::Truncated)?,
        ))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes(
            b.try_into().map_err(|_| DecodeError::Truncated)?,
        ))
    }
    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = usize::try_from(self.u32()?).map_err(|_| DecodeError::Truncated)?;
        self.take(n)
    }
    fn str(&mut self) -> Result<String, DecodeError> {
        let b = self.bytes()?;
        core::str::from_utf8(b)
            .map(ToString::to_string)
            .map_err(|_| DecodeError::Invalid("utf-8"))
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    // Lengths are bounded by the request size limit, far below 4 GiB.
    out.extend_from_slice(&u32::try_from(b.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(b);
}

const MAX_DEPTH: usize = 32;

fn put_ttlv(out: &mut Vec<u8>, t: &Ttlv) {
    let ty: u8 = match &t.value {
        Value::Structure(_) => 1,
        Value::Integer(_) => 2,
        Value::LongInteger(_) => 3,
        Value::BigInteger(_) => 4,
        Value::Enumeration(_) => 5,
        Value::Boolean(_) => 6,
        Value::TextString(_) => 7,
        Value::ByteString(_) => 8,
        Value::DateTime(_) => 9,
        Value::Interval(_) => 10,
        Value::DateTimeExtended(_) => 11,
    };
    out.push(ty);
    // Tags are at most 128 bytes (checked by the JSON codec) and ASCII names here.
    let tag = t.tag.as_bytes();
    let n = u8::try_from(tag.len()).unwrap_or(u8::MAX);
    out.push(n);
    out.extend_from_slice(tag.get(..usize::from(n)).unwrap_or(tag));
    match &t.value {
        Value::Structure(c) => {
            out.extend_from_slice(&u32::try_from(c.len()).unwrap_or(u32::MAX).to_be_bytes());
            for x in c {
                put_ttlv(out, x);
            }
        }
        Value::Integer(v) => out.extend_from_slice(&v.to_be_bytes()),
        Value::LongInteger(v) | Value::DateTime(v) | Value::DateTimeExtended(v) => {
            out.extend_from_slice(&v.to_be_bytes())
        }
        Value::BigInteger(b) | Value::ByteString(b) => put_bytes(out, b),
        Value::TextString(s) => put_bytes(out, s.as_bytes()),
        Value::Enumeration(EnumValue::Name(n)) => {
            out.push(0);
            put_bytes(out, n.as_bytes());
        }
        Value::Enumeration(EnumValue::Code(c)) => {
            out.push(1);
            out.extend_from_slice(&c.to_be_bytes());
        }
        Value::Boolean(b) => out.push(u8::from(*b)),
        Value::Interval(v) => out.extend_from_slice(&v.to_be_bytes()),
    }
}

fn get_ttlv(r: &mut Reader<'_>, depth: usize) -> Result<Ttlv, DecodeError> {
    if depth > MAX_DEPTH {
        return Err(DecodeError::Invalid("nesting"));
    }
    let ty = r.u8()?;
    let n = usize::from(r.u8()?);
    let tag = core::str::from_utf8(r.take(n)?).map_err(|_| DecodeError::Invalid("utf-8"))?;
    let i64v = |r: &mut Reader<'_>| -> Result<i64, DecodeError> {
        let b = r.take(8)?;
        Ok(i64::from_be_bytes(
            b.try_into().map_err(|_| DecodeError::Truncated)?,
        ))
    };
    let text = |r: &mut Reader<'_>| -> Result<String, DecodeError> { r.str() };
    let value = match ty {
        1 => {
            let count = r.u32()?;
            let mut c = Vec::with_capacity(usize::try_from(count).unwrap_or(0).min(64));
            for _ in 0..count {
                c.push(get_ttlv(r, depth + 1)?);
            }
            Value::Structure(c)
        }
        2 => Value::Integer(r.u32()? as i32),
        3 => Value::LongInteger(i64v(r)?),
        4 => Value::BigInteger(r.bytes()?.to_vec()),
        5 => match r.u8()? {
            0 => Value::Enumeration(EnumValue::Name(text(r)?)),
            1 => Value::Enumeration(EnumValue::Code(r.u32()?)),
            _ => return Err(DecodeError::Invalid("enumeration")),
        },
        6 => Value::Boolean(r.u8()? != 0),
        7 => Value::TextString(text(r)?),
        8 => Value::ByteString(r.bytes()?.to_vec()),
        9 => Value::DateTime(i64v(r)?),
        10 => Value::Interval(r.u32()?),
        11 => Value::DateTimeExtended(i64v(r)?),
        _ => return Err(DecodeError::Invalid("item type")),
    };
    Ok(Ttlv::new(tag, value))
}

impl ManagedObject {
    /// The state at time `now`: a PreActive object whose Activation Date has passed is Active,
    /// an Active object whose Deactivation Date has passed is Deactivated (KMIP 2.1 §3.22).
    pub fn effective_state(&self, now: i64) -> State {
        match self.state {
            State::PreActive if self.attributes.activation_date.is_some_and(|d| d <= now) => {
                if self.attributes.deactivation_date.is_some_and(|d| d <= now) {
                    State::Deactivated
                } else {
                    State::Active
                }
            }
            State::Active if self.attributes.deactivation_date.is_some_and(|d| d <= now) => {
                State::Deactivated
            }
            s => s,
        }
    }

    /// The rights mask `user` holds (all rights for the owner).
    pub fn rights_of(&self, user: &str) -> u32 {
        if user == self.owner {
            return u32::MAX;
        }
        self.grants
            .iter()
            .find(|(u, _)| u == user)
            .map_or(0, |(_, m)| *m)
    }

    /// Index terms for the store.
    pub fn keywords(&self) -> Vec<String> {
        let mut k = Vec::new();
        let state = self.state;
        k.push(alloc::format!("state={}", state.name()));
        k.push(alloc::format!("owner={}", self.owner));
        for (u, m) in &self.grants {
            if *m != 0 {
                k.push(alloc::format!("grant={u}"));
            }
        }
        if matches!(state, State::Destroyed | State::DestroyedCompromised) {
            return k;
        }
        k.push(alloc::format!("type={}", self.object_type.name()));
        if let Some(a) = self.attributes.cryptographic_algorithm {
            k.push(alloc::format!("alg={}", a.name()));
        }
        for t in &self.attributes.tags {
            k.push(alloc::format!("tag={t}"));
        }
        for n in &self.attributes.names {
            k.push(alloc::format!("name={n}"));
        }
        // The key of a public key or certificate, so that Register and Certify find the public
        // key a certificate certifies (and link them).
        let spki = match (self.object_type, &self.material) {
            (ObjectType::PublicKey, Some(m)) => Some(m.to_vec()),
            (ObjectType::Certificate, Some(m)) => crate::x509::spki_der(m),
            _ => None,
        };
        if let Some(fp) = spki.as_deref().and_then(crate::x509::spki_fingerprint) {
            k.push(alloc::format!("spki={fp}"));
        }
        k.sort();
        k.dedup();
        k
    }

    /// Serialize into a store record.
    pub fn to_record(&self) -> Record {
        let mut b = Vec::with_capacity(256);
        b.extend_from_slice(MAGIC);
        b.push(self.object_type.code() as u8);
        b.push(self.state.code() as u8);
        put_bytes(&mut b, self.owner.as_bytes());
        match &self.material {
            Some(m) => {
                b.push(1);
                put_bytes(&mut b, m);
            }
            None => b.push(0),
        }
        let n = u16::try_from(self.grants.len()).unwrap_or(u16::MAX);
        b.extend_from_slice(&n.to_be_bytes());
        for (u, m) in self.grants.iter().take(usize::from(n)) {
            put_bytes(&mut b, u.as_bytes());
            b.extend_from_slice(&m.to_be_bytes());
        }
        put_bytes(&mut b, &{
            let mut a = Vec::with_capacity(128);
            put_ttlv(&mut a, &self.attributes.to_ttlv("Attributes"));
            a
        });
        Record {
            uid: self.uid.clone(),
            body: b,
            keywords: self.keywords(),
        }
    }

    /// Deserialize from a store record.
    pub fn from_record(r: &Record) -> Result<Self, DecodeError> {
        let mut rd = Reader { buf: &r.body };
        if rd.take(4)? != MAGIC {
            return Err(DecodeError::Magic);
        }
        let object_type = ObjectType::from_code(u32::from(rd.u8()?))
            .ok_or(DecodeError::Invalid("object type"))?;
        let state = State::from_code(u32::from(rd.u8()?)).ok_or(DecodeError::Invalid("state"))?;
        let owner = rd.str()?;
        let material = match rd.u8()? {
            0 => None,
            1 => Some(Zeroizing::new(rd.bytes()?.to_vec())),
            _ => return Err(DecodeError::Invalid("material flag")),
        };
        let n = rd.u16()?;
        let mut grants = Vec::with_capacity(usize::from(n).min(64));
        for _ in 0..n {
            let u = rd.str()?;
            let m = rd.u32()?;
            grants.push((u, m));
        }
        let attrs = rd.bytes()?;
        let t = {
            let mut ar = Reader { buf: attrs };
            let t = get_ttlv(&mut ar, 1)?;
            if !ar.buf.is_empty() {
                return Err(DecodeError::Invalid("attributes"));
            }
            t
        };
        let attributes = Attributes::parse(&t).map_err(|_| DecodeError::Invalid("attributes"))?;
        if !rd.buf.is_empty() {
            return Err(DecodeError::Invalid("trailing bytes"));
        }
        Ok(ManagedObject {
            uid: r.uid.clone(),
            object_type,
            state,
            owner,
            material,
            grants,
            attributes,
        })
    }

    /// Cryptographic algorithm attribute.
    pub fn algorithm(&self) -> Option<CryptographicAlgorithm> {
        self.attributes.cryptographic_algorithm
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn obj() -> ManagedObject {
        ManagedObject {
            uid: "u1".into(),
            object_type: ObjectType::SymmetricKey,
            state: State::Active,
            owner: "alice".into(),
            material: Some(Zeroizing::new(vec![1; 32])),
            grants: vec![("bob".into(), 5)],
            attributes: Attributes {
                cryptographic_algorithm: Some(CryptographicAlgorithm::AES),
                cryptographic_length: Some(256),
                tags: vec!["t1".into()],
                names: vec!["n".into()],
                ..Default::default()
            },
        }
    }

    #[test]
    fn record_round_trip_and_keywords() {
        let o = obj();
        let r = o.to_record();
        let back = ManagedObject::from_record(&r).unwrap();
        assert_eq!(back.owner, "alice");
        assert_eq!(
            back.material.as_deref().map(Vec::as_slice),
            Some(&[1u8; 32][..])
        );
        assert_eq!(back.grants, o.grants);
        assert_eq!(back.attributes, o.attributes);
        assert!(r.keywords.contains(&"tag=t1".into()));
        assert!(r.keywords.contains(&"grant=bob".into()));
        assert!(r.keywords.contains(&"alg=AES".into()));
        let mut d = o.clone();
        d.state = State::Destroyed;
        d.material = None;
        let k = d.keywords();
        assert!(!k.iter().any(|x| x.starts_with("tag=")));
        assert!(k.contains(&"state=Destroyed".into()));
    }

    #[test]
    fn compact_ttlv_round_trips_every_type_and_limits_depth() {
        let t = Ttlv::structure(
            "S",
            vec![
                Ttlv::int("I", -5),
                Ttlv::new("L", Value::LongInteger(-1)),
                Ttlv::new("B", Value::BigInteger(vec![0, 0xFF])),
                Ttlv::enumeration("E", "AES"),
                Ttlv::new("C", Value::Enumeration(EnumValue::Code(0x8000_0002))),
                Ttlv::boolean("O", true),
                Ttlv::text("T", "héllo"),
                Ttlv::bytes("Y", &[1, 2, 3]),
                Ttlv::datetime("D", -86_400),
                Ttlv::new("V", Value::Interval(7)),
                Ttlv::new("X", Value::DateTimeExtended(123_456)),
                Ttlv::structure("Empty", vec![]),
            ],
        );
        let mut b = Vec::new();
        put_ttlv(&mut b, &t);
        assert_eq!(get_ttlv(&mut Reader { buf: &b }, 1).unwrap(), t);
        for cut in 0..b.len() {
            assert_eq!(
                get_ttlv(&mut Reader { buf: &b[..cut] }, 1),
                Err(DecodeError::Truncated),
                "cut {cut}"
            );
        }
        let mut deep = Ttlv::structure("S", vec![]);
        for _ in 0..40 {
            deep = Ttlv::structure("S", vec![deep]);
        }
        let mut b = Vec::new();
        put_ttlv(&mut b, &deep);
        assert_eq!(
            get_ttlv(&mut Reader { buf: &b }, 1),
            Err(DecodeError::Invalid("nesting"))
        );
    }

    #[test]
    fn truncated_records_are_rejected() {
        let r = obj().to_record();
        for cut in [0, 3, 4, 6, 10, r.body.len() - 1] {
            let t = Record {
                uid: r.uid.clone(),
                body: r.body[..cut].to_vec(),
                keywords: vec![],
            };
            assert!(
                matches!(ManagedObject::from_record(&t), Err(DecodeError::Truncated)),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn effective_state_follows_dates() {
        let mut o = obj();
        o.state = State::PreActive;
        o.attributes.activation_date = Some(100);
        assert_eq!(o.effective_state(99), State::PreActive);
        assert_eq!(o.effective_state(100), State::Active);
        o.attributes.deactivation_date = Some(200);
        assert_eq!(o.effective_state(250), State::Deactivated);
    }
}
