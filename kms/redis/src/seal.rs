//! Object records as Redis sees them: sealed with AES-256-GCM-SIV (RFC 8452).
//!
//! Value layout at the object's key: `version (8 bytes, big-endian, in clear) ‖ nonce (12) ‖
//! ciphertext ‖ tag`.
//! The clear version lets the compare-and-swap script compare versions without keys; it is also
//! bound into the associated data, so Redis cannot present an old ciphertext under a new version
//! (it can still roll a whole value back: `crate::rollback` detects that within a process
//! lifetime, see docs/security.md). A value of [`TOMBSTONE_LEN`] bytes is a *tombstone*:
//! `version ‖ AES-256-GCM-SIV tag` over an empty message with associated data
//! `"kms-redis tombstone v1" ‖ version ‖ key name`, so Redis can neither forge one nor change its
//! version. The object was deleted and the next insert of that uid continues after that
//! version, so index entries of the old incarnation stay obsolete.
//!
//! Plaintext: `u32 uid length ‖ uid ‖ u32 keyword count ‖ (u32 length ‖ keyword)* ‖ body`, all
//! lengths big-endian. Associated data: `"kms-redis object v1" ‖ version ‖ Redis key name`; the
//! key name is a PRF of the uid, and opening checks that the uid inside maps to that key, so the
//! AD binds the uid while a value can be opened without knowing its uid (listing all objects).
//! Nonce: the first 12 bytes of `HMAC(k_nonce, version, uid)`; GCM-SIV is nonce-misuse resistant,
//! so even a repeated (uid, version), after a delete and re-insert, reveals only equality of
//! identical records.

use crate::keys::{Key32, KeySet, prf};
use aes_gcm_siv::aead::{Aead, Payload};
use aes_gcm_siv::{Aes256GcmSiv, KeyInit, Nonce};
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use kms::store::{Record, Version, wipe};

const AD_LABEL: &[u8] = b"kms-redis object v1";
const TOMBSTONE_LABEL: &[u8] = b"kms-redis tombstone v1";
/// Length of a sealed tombstone: version (8) and AEAD tag (16). Sealed records are longer (at
/// least 44 bytes); the object CAS script tells them apart by this length.
pub const TOMBSTONE_LEN: usize = 24;
const CANARY_PLAIN: &[u8] = b"kms-redis canary v1: this database is sealed with this secret";
/// Redis key of the canary record.
pub const CANARY_KEY: &[u8] = b"kms:canary";
/// Prefix of object keys.
pub const OBJECT_PREFIX: &[u8] = b"kms:o:";
/// Prefix of Findex word keys.
pub const INDEX_PREFIX: &[u8] = b"kms:f:";
/// Most keywords a record may carry.
pub const MAX_KEYWORDS: usize = 4096;

/// A sealed value that does not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealError {
    /// Shorter than a version, or the plaintext structure is broken.
    Malformed,
    /// The AEAD tag does not verify (tampering, another database secret, or a value moved
    /// between keys or versions).
    Authentication,
    /// The record inside belongs to another uid.
    WrongUid,
    /// A tombstone that does not authenticate (forged, unsealed, or moved between keys or
    /// versions).
    Tombstone,
}

impl fmt::Display for SealError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SealError::Malformed => "malformed sealed object",
            SealError::Authentication => "sealed object does not authenticate",
            SealError::WrongUid => "sealed object belongs to another uid",
            SealError::Tombstone => "tombstone does not authenticate",
        })
    }
}

impl core::error::Error for SealError {}

/// What an object key holds.
#[derive(Debug)]
pub enum Stored {
    /// A live record at a version.
    Live(Record, Version),
    /// Deleted; the next incarnation starts at this version.
    Tombstone(Version),
}

/// Seals and opens records with keys derived from the database secret.
pub struct Sealer {
    aead: Aes256GcmSiv,
    canary: Aes256GcmSiv,
    nonce_key: Key32,
    names_key: Key32,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sealer(<keys redacted>)")
    }
}

/// Append the lowercase hex of `bytes` (constant-time: `base16ct`).
fn hex(bytes: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + 2 * bytes.len(), 0);
    // The room is exactly twice the input, so encoding cannot fail.
    if let Some(dst) = out.get_mut(start..) {
        let _ = base16ct::lower::encode(bytes, dst);
    }
}

/// Redis key of a Findex word: `kms:f:<hex token>`.
pub fn index_key(token: &[u8; 16]) -> Vec<u8> {
    let mut k = Vec::with_capacity(INDEX_PREFIX.len() + 32);
    k.extend_from_slice(INDEX_PREFIX);
    hex(token, &mut k);
    k
}

impl Sealer {
    /// Build from the derived keys.
    pub fn new(keys: &KeySet) -> Self {
        Sealer {
            aead: Aes256GcmSiv::new(&(*keys.objects.expose()).into()),
            canary: Aes256GcmSiv::new(&(*keys.canary.expose()).into()),
            nonce_key: keys.nonce.clone(),
            names_key: keys.names.clone(),
        }
    }

    /// Key name of an object: the first 16 bytes of `HMAC(k_name, uid)`.
    pub fn object_id(&self, uid: &str) -> [u8; 16] {
        let h = prf(&self.names_key, &[b"object", uid.as_bytes()]);
        let mut id = [0u8; 16];
        id.copy_from_slice(&h[..16]);
        id
    }

    /// Redis key of an object: `kms:o:<hex of its key name>`.
    pub fn object_key(&self, uid: &str) -> Vec<u8> {
        let mut k = Vec::with_capacity(OBJECT_PREFIX.len() + 32);
        k.extend_from_slice(OBJECT_PREFIX);
        hex(&self.object_id(uid), &mut k);
        k
    }

    /// The sealed tombstone of the object at Redis key `key`, deleted at version `v`.
    pub fn tombstone(&self, key: &[u8], v: Version) -> Vec<u8> {
        let nonce = self.tombstone_nonce(key, v);
        let tag = self.aead.encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: &[],
                aad: &Self::tombstone_ad(key, v),
            },
        );
        let mut out = Vec::with_capacity(TOMBSTONE_LEN);
        out.extend_from_slice(&v.0.to_be_bytes());
        out.extend_from_slice(&tag.unwrap_or_default());
        out
    }

    fn tombstone_nonce(&self, key: &[u8], v: Version) -> [u8; 12] {
        let h = prf(&self.nonce_key, &[b"tombstone", &v.0.to_be_bytes(), key]);
        let mut n = [0u8; 12];
        n.copy_from_slice(&h[..12]);
        n
    }

    fn tombstone_ad(key: &[u8], v: Version) -> Vec<u8> {
        let mut ad = Vec::with_capacity(TOMBSTONE_LABEL.len() + 8 + key.len());
        ad.extend_from_slice(TOMBSTONE_LABEL);
        ad.extend_from_slice(&v.0.to_be_bytes());
        ad.extend_from_slice(key);
        ad
    }

    fn nonce(&self, uid: &[u8], v: Version) -> [u8; 12] {
        let h = prf(&self.nonce_key, &[b"nonce", &v.0.to_be_bytes(), uid]);
        let mut n = [0u8; 12];
        n.copy_from_slice(&h[..12]);
        n
    }

    fn ad(key: &[u8], v: Version) -> Vec<u8> {
        let mut ad = Vec::with_capacity(AD_LABEL.len() + 8 + key.len());
        ad.extend_from_slice(AD_LABEL);
        ad.extend_from_slice(&v.0.to_be_bytes());
        ad.extend_from_slice(key);
        ad
    }

    /// Seal a record at a version: the Redis value.
    pub fn seal(&self, r: &Record, v: Version) -> Result<Vec<u8>, SealError> {
        if r.keywords.len() > MAX_KEYWORDS {
            return Err(SealError::Malformed);
        }
        let mut plain = Vec::with_capacity(
            16 + r.uid.len() + r.body.len() + r.keywords.iter().map(|k| k.len() + 4).sum::<usize>(),
        );
        let put = |p: &mut Vec<u8>, b: &[u8]| -> Result<(), SealError> {
            let n = u32::try_from(b.len()).map_err(|_| SealError::Malformed)?;
            p.extend_from_slice(&n.to_be_bytes());
            p.extend_from_slice(b);
            Ok(())
        };
        put(&mut plain, r.uid.as_bytes())?;
        plain.extend_from_slice(&(r.keywords.len() as u32).to_be_bytes());
        for k in &r.keywords {
            put(&mut plain, k.as_bytes())?;
        }
        plain.extend_from_slice(&r.body);
        let ad = Self::ad(&self.object_key(&r.uid), v);
        let nonce = self.nonce(r.uid.as_bytes(), v);
        let ct = self.aead.encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: &plain,
                aad: &ad,
            },
        );
        wipe(&mut plain);
        let ct = ct.map_err(|_| SealError::Malformed)?;
        let mut out = Vec::with_capacity(20 + ct.len());
        out.extend_from_slice(&v.0.to_be_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Open the value stored at `uid`'s key.
    pub fn open(&self, uid: &str, value: &[u8]) -> Result<Stored, SealError> {
        let s = self.open_at(&self.object_key(uid), value)?;
        if let Stored::Live(r, _) = &s
            && r.uid != uid
        {
            return Err(SealError::WrongUid);
        }
        Ok(s)
    }

    /// Open the value found at Redis key `key` (for example by `SCAN`), without knowing the uid.
    pub fn open_at(&self, key: &[u8], value: &[u8]) -> Result<Stored, SealError> {
        let v = version_of(value).ok_or(SealError::Malformed)?;
        let rest = value.get(8..).ok_or(SealError::Malformed)?;
        if value.len() <= TOMBSTONE_LEN {
            // Sealed records are longer: this is a tombstone, authentic or not.
            let nonce = self.tombstone_nonce(key, v);
            let ad = Self::tombstone_ad(key, v);
            return match self.aead.decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: rest,
                    aad: &ad,
                },
            ) {
                Ok(p) if p.is_empty() => Ok(Stored::Tombstone(v)),
                _ => Err(SealError::Tombstone),
            };
        }
        let nonce: [u8; 12] = rest
            .get(..12)
            .and_then(|n| n.try_into().ok())
            .ok_or(SealError::Malformed)?;
        let ct = rest.get(12..).ok_or(SealError::Malformed)?;
        let ad = Self::ad(key, v);
        let mut plain = self
            .aead
            .decrypt(&Nonce::from(nonce), Payload { msg: ct, aad: &ad })
            .map_err(|_| SealError::Authentication)?;
        let r = parse_plain(&plain);
        wipe(&mut plain);
        let r = r?;
        if self.object_key(&r.uid) != key {
            return Err(SealError::WrongUid);
        }
        Ok(Stored::Live(r, v))
    }

    /// The canary value (deterministic for a secret).
    pub fn canary(&self) -> Vec<u8> {
        self.canary
            .encrypt(
                &Nonce::from([0u8; 12]),
                Payload {
                    msg: CANARY_PLAIN,
                    aad: CANARY_KEY,
                },
            )
            .unwrap_or_default()
    }

    /// True if `value` is the canary of this secret.
    pub fn canary_matches(&self, value: &[u8]) -> bool {
        match self.canary.decrypt(
            &Nonce::from([0u8; 12]),
            Payload {
                msg: value,
                aad: CANARY_KEY,
            },
        ) {
            Ok(p) => p == CANARY_PLAIN,
            Err(_) => false,
        }
    }
}

/// Key name of the object at Redis key `kms:o:<32 hex>` (`None` for other keys).
pub fn object_id_of_key(key: &[u8]) -> Option<[u8; 16]> {
    let hex = key.strip_prefix(OBJECT_PREFIX)?;
    let mut id = [0u8; 16];
    match base16ct::lower::decode(hex, &mut id) {
        Ok(d) if d.len() == 16 => Some(id),
        _ => None,
    }
}

/// The clear version prefix of a stored value.
pub fn version_of(value: &[u8]) -> Option<Version> {
    let b: [u8; 8] = value.get(..8)?.try_into().ok()?;
    Some(Version(u64::from_be_bytes(b)))
}

fn parse_plain(p: &[u8]) -> Result<Record, SealError> {
    let mut at = 0usize;
    let mut take = |n: usize| -> Result<&[u8], SealError> {
        let end = at.checked_add(n).ok_or(SealError::Malformed)?;
        let s = p.get(at..end).ok_or(SealError::Malformed)?;
        at = end;
        Ok(s)
    };
    let len = |b: &[u8]| -> Result<usize, SealError> {
        let a: [u8; 4] = b.try_into().map_err(|_| SealError::Malformed)?;
        Ok(u32::from_be_bytes(a) as usize)
    };
    let n = len(take(4)?)?;
    let uid = String::from_utf8(take(n)?.to_vec()).map_err(|_| SealError::Malformed)?;
    let count = len(take(4)?)?;
    if count > MAX_KEYWORDS {
        return Err(SealError::Malformed);
    }
    let mut keywords = Vec::with_capacity(count);
    for _ in 0..count {
        let n = len(take(4)?)?;
        keywords.push(String::from_utf8(take(n)?.to_vec()).map_err(|_| SealError::Malformed)?);
    }
    let body = p.get(at..).ok_or(SealError::Malformed)?.to_vec();
    Ok(Record {
        uid,
        body,
        keywords,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    fn rec() -> Record {
        Record {
            uid: "uid-1".to_string(),
            body: b"KEYBYTES".to_vec(),
            keywords: vec!["tag=x".to_string(), "owner=al".to_string()],
        }
    }

    #[test]
    fn seal_open_round_trip_and_binding() {
        let s = Sealer::new(&KeySet::derive(&[1; 32]));
        let v = s.seal(&rec(), Version(3)).unwrap();
        assert_eq!(version_of(&v), Some(Version(3)));
        assert!(!v.windows(8).any(|w| w == b"KEYBYTES"));
        let Stored::Live(r, ver) = s.open("uid-1", &v).unwrap() else {
            panic!()
        };
        assert_eq!((r, ver), (rec(), Version(3)));
        // moved to another uid's key, or version prefix rewritten: refused
        assert_eq!(s.open("uid-2", &v).unwrap_err(), SealError::Authentication);
        let mut bumped = v.clone();
        bumped[7] = 4;
        assert_eq!(
            s.open("uid-1", &bumped).unwrap_err(),
            SealError::Authentication
        );
        // other secret: refused
        let o = Sealer::new(&KeySet::derive(&[2; 32]));
        assert_eq!(o.open("uid-1", &v).unwrap_err(), SealError::Authentication);
        let key = s.object_key("uid-1");
        let t = s.tombstone(&key, Version(9));
        assert_eq!(t.len(), TOMBSTONE_LEN);
        assert!(matches!(
            s.open("uid-1", &t).unwrap(),
            Stored::Tombstone(Version(9))
        ));
        // unsealed (8 bytes, the old format), another version, another key, another secret
        assert_eq!(
            s.open("uid-1", &9u64.to_be_bytes()).unwrap_err(),
            SealError::Tombstone
        );
        let mut bumped_t = t.clone();
        bumped_t[7] = 10;
        assert_eq!(
            s.open("uid-1", &bumped_t).unwrap_err(),
            SealError::Tombstone
        );
        assert_eq!(s.open("uid-2", &t).unwrap_err(), SealError::Tombstone);
        assert_eq!(o.open("uid-1", &t).unwrap_err(), SealError::Tombstone);
        assert_eq!(object_id_of_key(&key), Some(s.object_id("uid-1")));
        assert_eq!(object_id_of_key(b"kms:canary"), None);
        assert_eq!(s.open("uid-1", b"short").unwrap_err(), SealError::Malformed);
        assert!(
            v.len() > TOMBSTONE_LEN,
            "records are longer than tombstones"
        );
    }

    #[test]
    fn names_and_canary() {
        let s = Sealer::new(&KeySet::derive(&[1; 32]));
        let k = s.object_key("uid-1");
        assert!(k.starts_with(OBJECT_PREFIX) && k.len() == OBJECT_PREFIX.len() + 32);
        assert_ne!(k, s.object_key("uid-2"));
        assert_ne!(
            k,
            Sealer::new(&KeySet::derive(&[2; 32])).object_key("uid-1")
        );
        assert!(s.canary_matches(&s.canary()));
        assert!(!Sealer::new(&KeySet::derive(&[2; 32])).canary_matches(&s.canary()));
        assert_eq!(
            index_key(&[0xab; 16]),
            b"kms:f:abababababababababababababababab".to_vec()
        );
    }

    #[test]
    fn malformed_plaintext_is_refused() {
        assert_eq!(
            parse_plain(&[0, 0, 0, 9, b'a']).unwrap_err(),
            SealError::Malformed
        );
        assert_eq!(
            parse_plain(&[0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]).unwrap_err(),
            SealError::Malformed
        );
        let r = parse_plain(&[0, 0, 0, 1, b'u', 0, 0, 0, 0, 1, 2]).unwrap();
        assert_eq!(
            (r.uid.as_str(), r.keywords.len(), r.body.as_slice()),
            ("u", 0, [1u8, 2].as_slice())
        );
    }
}
