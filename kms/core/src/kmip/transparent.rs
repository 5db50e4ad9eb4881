//! Transparent RSA and DSA key material (KMIP 2.1 §2.1.7.3–§2.1.7.6): a `KeyMaterial`
//! structure of Big Integers (Modulus, PublicExponent, P, Q, G, X, Y, ...).
//!
//! A [`super::ops::KeyBlock`] carries key material as bytes; for these formats the bytes are
//! the fields in the order of the format's table, each as a 4-byte big-endian length and the
//! unsigned big-endian magnitude without leading zeros (length 0: the optional field is
//! absent). [`parse`] builds that from the TTLV structure (rejecting unknown, repeated,
//! negative or missing fields), [`emit`] turns it back into the structure with each value as
//! KMIP's canonical Big Integer (two's complement, sign octet when needed, left-padded to a
//! multiple of 8 bytes: KMIP 2.1 §9.1.1.4).

use alloc::vec::Vec;

use super::ttlv::{FieldError, Ttlv, Value};
use super::types::KeyFormatType;

/// One field of a transparent format: its tag and whether KMIP requires it.
type Field = (&'static str, bool);

const RSA_PRIVATE: &[Field] = &[
    ("Modulus", true),
    ("PrivateExponent", false),
    ("PublicExponent", false),
    ("P", false),
    ("Q", false),
    ("PrimeExponentP", false),
    ("PrimeExponentQ", false),
    ("CRTCoefficient", false),
];
const RSA_PUBLIC: &[Field] = &[("Modulus", true), ("PublicExponent", true)];
const DSA_PRIVATE: &[Field] = &[("P", true), ("Q", true), ("G", true), ("X", true)];
const DSA_PUBLIC: &[Field] = &[("P", true), ("Q", true), ("G", true), ("Y", true)];

/// The fields of a transparent RSA/DSA format, `None` for any other format.
pub fn fields(kft: KeyFormatType) -> Option<&'static [Field]> {
    match kft {
        KeyFormatType::TransparentRSAPrivateKey => Some(RSA_PRIVATE),
        KeyFormatType::TransparentRSAPublicKey => Some(RSA_PUBLIC),
        KeyFormatType::TransparentDSAPrivateKey => Some(DSA_PRIVATE),
        KeyFormatType::TransparentDSAPublicKey => Some(DSA_PUBLIC),
        _ => None,
    }
}

/// The magnitude of a two's-complement Big Integer without leading zero octets; a negative
/// value is refused.
fn magnitude<'a>(tag: &'static str, v: &'a [u8]) -> Result<&'a [u8], FieldError> {
    if v.first().is_some_and(|b| b & 0x80 != 0) {
        return Err(FieldError::Invalid(tag));
    }
    let start = v.iter().position(|b| *b != 0).unwrap_or(v.len());
    Ok(v.get(start..).unwrap_or(&[]))
}

/// KMIP's canonical Big Integer of an unsigned magnitude: a zero sign octet when the top bit
/// is set, left-padded with zeros to a multiple of 8 bytes.
pub fn big_integer(mag: &[u8]) -> Vec<u8> {
    let start = mag.iter().position(|b| *b != 0).unwrap_or(mag.len());
    let mag = mag.get(start..).unwrap_or(&[]);
    let sign = usize::from(mag.first().is_some_and(|b| b & 0x80 != 0));
    let len = (mag.len() + sign).max(1).next_multiple_of(8);
    let mut out = alloc::vec![0u8; len - mag.len()];
    out.extend_from_slice(mag);
    out
}

/// Encode the fields (`None` = absent) in the table order of the format.
pub fn encode(values: &[Option<&[u8]>]) -> Vec<u8> {
    let mut out = Vec::new();
    for v in values {
        let v = v.unwrap_or(&[]);
        let start = v.iter().position(|b| *b != 0).unwrap_or(v.len());
        let v = v.get(start..).unwrap_or(&[]);
        out.extend_from_slice(&u32::try_from(v.len()).unwrap_or(0).to_be_bytes());
        out.extend_from_slice(v);
    }
    out
}

/// Decode material of a transparent format into one magnitude per field of its table
/// (`None` = absent). Refuses a truncated or over-long encoding and a missing required field.
pub fn decode(kft: KeyFormatType, material: &[u8]) -> Result<Vec<Option<&[u8]>>, FieldError> {
    let table = fields(kft).ok_or(FieldError::Invalid("KeyFormatType"))?;
    let mut rest = material;
    let mut out = Vec::with_capacity(table.len());
    for (tag, required) in table {
        let (len, tail) = rest
            .split_first_chunk::<4>()
            .ok_or(FieldError::Invalid("KeyMaterial"))?;
        let len = usize::try_from(u32::from_be_bytes(*len))
            .map_err(|_| FieldError::Invalid("KeyMaterial"))?;
        let (v, tail) = tail
            .split_at_checked(len)
            .ok_or(FieldError::Invalid("KeyMaterial"))?;
        if len == 0 && *required {
            return Err(FieldError::Missing(tag));
        }
        out.push((len > 0).then_some(v));
        rest = tail;
    }
    if !rest.is_empty() {
        return Err(FieldError::Invalid("KeyMaterial"));
    }
    Ok(out)
}

/// Parse the `KeyMaterial` structure of a transparent RSA/DSA format into the encoding of
/// [`encode`].
pub fn parse(kft: KeyFormatType, km: &Ttlv) -> Result<Vec<u8>, FieldError> {
    let table = fields(kft).ok_or(FieldError::Invalid("KeyFormatType"))?;
    let Value::Structure(children) = &km.value else {
        return Err(FieldError::WrongType("KeyMaterial"));
    };
    let mut values: Vec<Option<&[u8]>> = alloc::vec![None; table.len()];
    for c in children {
        let (i, (tag, _)) = table
            .iter()
            .enumerate()
            .find(|(_, (t, _))| *t == c.tag)
            .ok_or(FieldError::Invalid("KeyMaterial"))?;
        let Value::BigInteger(b) = &c.value else {
            return Err(FieldError::WrongType(tag));
        };
        let slot = values.get_mut(i).ok_or(FieldError::Invalid(tag))?;
        if slot.is_some() {
            return Err(FieldError::Invalid(tag));
        }
        let m = magnitude(tag, b)?;
        if m.is_empty() {
            return Err(FieldError::Invalid(tag));
        }
        *slot = Some(m);
    }
    for ((tag, required), v) in table.iter().zip(&values) {
        if *required && v.is_none() {
            return Err(FieldError::Missing(tag));
        }
    }
    Ok(encode(&values))
}

/// The `KeyMaterial` structure of material encoded by [`encode`]/[`parse`].
pub fn emit(kft: KeyFormatType, material: &[u8]) -> Result<Ttlv, FieldError> {
    let table = fields(kft).ok_or(FieldError::Invalid("KeyFormatType"))?;
    let values = decode(kft, material)?;
    let children = table
        .iter()
        .zip(values)
        .filter_map(|((tag, _), v)| v.map(|v| Ttlv::new(tag, Value::BigInteger(big_integer(v)))))
        .collect();
    Ok(Ttlv::structure("KeyMaterial", children))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn big(tag: &str, v: &[u8]) -> Ttlv {
        Ttlv::new(tag, Value::BigInteger(v.to_vec()))
    }

    #[test]
    fn big_integer_is_canonical() {
        assert_eq!(
            big_integer(&[0x01, 0x00, 0x01]),
            vec![0, 0, 0, 0, 0, 1, 0, 1]
        );
        // Top bit set: a sign octet, then padding to 16.
        let m = [0xABu8; 8];
        let b = big_integer(&m);
        assert_eq!(b.len(), 16);
        assert_eq!(&b[..8], &[0u8; 8]);
        assert_eq!(&b[8..], &m);
        // Leading zeros of the input are dropped first.
        assert_eq!(big_integer(&[0, 0, 0x7F]), vec![0, 0, 0, 0, 0, 0, 0, 0x7F]);
        assert_eq!(big_integer(&[]), vec![0u8; 8]);
    }

    #[test]
    fn dsa_public_round_trips_canonically() {
        let km = Ttlv::structure(
            "KeyMaterial",
            vec![
                big("P", &[0, 0, 0, 0, 0, 0, 0, 0, 0xFC, 1, 2, 3, 4, 5, 6, 7]),
                big("Q", &[0, 0, 0, 0, 0, 0, 0, 0x96]),
                big("G", &[0x67]),
                big("Y", &[0, 0x05]),
            ],
        );
        let kft = KeyFormatType::TransparentDSAPublicKey;
        let m = parse(kft, &km).unwrap();
        let d = decode(kft, &m).unwrap();
        assert_eq!(d[0], Some(&[0xFC, 1, 2, 3, 4, 5, 6, 7][..]));
        assert_eq!(d[3], Some(&[0x05][..]));
        let back = emit(kft, &m).unwrap();
        assert_eq!(back.get("P"), km.get("P"));
        assert_eq!(back.get("Q"), km.get("Q"));
        assert_eq!(
            back.get("G").map(|t| &t.value),
            Some(&Value::BigInteger(vec![0, 0, 0, 0, 0, 0, 0, 0x67]))
        );
    }

    #[test]
    fn rejects_garbage_with_typed_errors() {
        let kft = KeyFormatType::TransparentRSAPublicKey;
        let n = big("Modulus", &[0x00, 0xC1]);
        let e = big("PublicExponent", &[1, 0, 1]);
        let s = |v: Vec<Ttlv>| Ttlv::structure("KeyMaterial", v);
        assert_eq!(
            parse(kft, &s(vec![n.clone()])),
            Err(FieldError::Missing("PublicExponent"))
        );
        assert_eq!(
            parse(kft, &s(vec![n.clone(), e.clone(), e.clone()])),
            Err(FieldError::Invalid("PublicExponent"))
        );
        assert_eq!(
            parse(kft, &s(vec![n.clone(), e.clone(), big("X", &[1])])),
            Err(FieldError::Invalid("KeyMaterial"))
        );
        assert_eq!(
            parse(kft, &s(vec![big("Modulus", &[0xC1]), e.clone()])),
            Err(FieldError::Invalid("Modulus"))
        );
        assert_eq!(
            parse(kft, &s(vec![n.clone(), big("PublicExponent", &[0, 0])])),
            Err(FieldError::Invalid("PublicExponent"))
        );
        assert_eq!(
            parse(
                kft,
                &s(vec![n.clone(), Ttlv::bytes("PublicExponent", &[1, 0, 1])])
            ),
            Err(FieldError::WrongType("PublicExponent"))
        );
        assert_eq!(
            parse(kft, &Ttlv::bytes("KeyMaterial", &[1])),
            Err(FieldError::WrongType("KeyMaterial"))
        );
        let m = parse(kft, &s(vec![e, n])).unwrap();
        assert_eq!(
            decode(kft, &m[..m.len() - 1]),
            Err(FieldError::Invalid("KeyMaterial"))
        );
        let mut long = m.clone();
        long.push(0);
        assert_eq!(decode(kft, &long), Err(FieldError::Invalid("KeyMaterial")));
        assert_eq!(
            decode(KeyFormatType::Raw, &m),
            Err(FieldError::Invalid("KeyFormatType"))
        );
    }
}
