//! Decoded objects in memory (issue 15): a memo of [`ManagedObject::from_record`].
//!
//! Decoding a record (its attribute TTLV tree, then [`crate::kmip::types::Attributes`]) was the
//! largest user-space cost of an Encrypt on a cached key (~14% of the server's CPU under `wrk`).
//! Decoding is a pure function of the uid and the record body, so this memo keys on the uid and
//! keeps a copy of the body: an entry is used only when the body the store returned is
//! byte-for-byte the one it was decoded from (compared in constant time). No invalidation is
//! needed and no store state is trusted: whatever the store returns, the object is the one
//! `from_record` would have produced.
//!
//! Bounded ([`CAPACITY`] entries of bodies up to [`MAX_BODY`] bytes, the least recently used
//! evicted first); bodies and key material are zeroized when an entry is dropped. The lock is
//! only ever *tried*: a thread that finds it held decodes the record itself instead of waiting,
//! so the memo never makes a request wait on another (no spinning on the spin lock of the
//! no_std core, whatever the number of threads per core).

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use zeroize::Zeroizing;

use crate::object::{DecodeError, ManagedObject};
use crate::store::Record;

/// Most objects kept.
pub(super) const CAPACITY: usize = 128;
/// Largest record body kept (bigger objects, e.g. RSA keys with certificates, are decoded every time).
pub(super) const MAX_BODY: usize = 8 * 1024;

/// One decoded object and the body it came from.
struct Entry {
    body: Zeroizing<Vec<u8>>,
    object: ManagedObject,
}

#[derive(Default)]
struct Map {
    /// uid → (last use, entry).
    entries: BTreeMap<String, (u64, Arc<Entry>)>,
    clock: u64,
}

/// The memo (see the module documentation).
#[derive(Default)]
pub(super) struct Decoded(spin::Mutex<Map>);

impl core::fmt::Debug for Decoded {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Decoded")
    }
}

impl Decoded {
    /// `ManagedObject::from_record(r)`, from memory when `r` is the record an entry was decoded from.
    pub(super) fn decode(&self, r: &Record) -> Result<ManagedObject, DecodeError> {
        let hit = self.0.try_lock().and_then(|mut m| {
            m.clock += 1;
            let now = m.clock;
            m.entries.get_mut(&r.uid).map(|(used, e)| {
                *used = now;
                e.clone()
            })
        });
        if let Some(e) = hit
            && crate::crypto::ct_eq(&e.body, &r.body)
        {
            return Ok(e.object.clone());
        }
        let object = ManagedObject::from_record(r)?;
        if r.body.len() <= MAX_BODY {
            let entry = Arc::new(Entry {
                body: Zeroizing::new(r.body.clone()),
                object: object.clone(),
            });
            if let Some(mut m) = self.0.try_lock() {
                m.clock += 1;
                let now = m.clock;
                if m.entries.len() >= CAPACITY && !m.entries.contains_key(&r.uid) {
                    let oldest = m
                        .entries
                        .iter()
                        .min_by_key(|(_, (used, _))| *used)
                        .map(|(k, _)| k.clone());
                    if let Some(k) = oldest {
                        m.entries.remove(&k);
                    }
                }
                m.entries.insert(r.uid.clone(), (now, entry));
            }
        }
        Ok(object)
    }

    /// Number of objects kept (tests).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.0.lock().entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kmip::types::{ObjectType, State};
    use alloc::string::ToString;
    use alloc::vec;

    fn object(uid: &str, state: State, material: u8) -> ManagedObject {
        ManagedObject {
            uid: uid.to_string(),
            object_type: ObjectType::SymmetricKey,
            state,
            owner: "alice".to_string(),
            material: Some(Zeroizing::new(vec![material; 32])),
            grants: vec![("bob".to_string(), 1)],
            attributes: Default::default(),
        }
    }

    #[test]
    fn a_changed_body_is_decoded_again() {
        let memo = Decoded::default();
        let v1 = object("u1", State::Active, 1).to_record();
        let a = memo.decode(&v1).expect("decodes");
        assert_eq!(a.state, State::Active);
        assert_eq!(memo.len(), 1);
        // Same uid, another body (revoked, other material): never the memo's object.
        let v2 = object("u1", State::Deactivated, 2).to_record();
        let b = memo.decode(&v2).expect("decodes");
        assert_eq!(b.state, State::Deactivated);
        assert_eq!(b.material.as_deref().map(|m| m[0]), Some(2));
        assert_eq!(memo.len(), 1);
        // And back: the body decides, not the order.
        let c = memo.decode(&v1).expect("decodes");
        assert_eq!(c.state, State::Active);
        assert_eq!(c.grants, vec![("bob".to_string(), 1)]);
    }

    #[test]
    fn the_uid_is_part_of_the_key() {
        let memo = Decoded::default();
        let r = object("u1", State::Active, 1).to_record();
        memo.decode(&r).expect("decodes");
        // The same body under another uid decodes to an object with that uid.
        let mut other = object("u1", State::Active, 1).to_record();
        other.uid = "u2".to_string();
        assert_eq!(memo.decode(&other).expect("decodes").uid, "u2");
    }

    #[test]
    fn a_corrupt_body_is_an_error_even_after_a_hit() {
        let memo = Decoded::default();
        let r = object("u1", State::Active, 1).to_record();
        memo.decode(&r).expect("decodes");
        let mut bad = object("u1", State::Active, 1).to_record();
        bad.body.truncate(bad.body.len() - 1);
        assert!(matches!(
            memo.decode(&bad),
            Err(DecodeError::Truncated | DecodeError::Invalid(_))
        ));
        bad.body.clear();
        assert_eq!(memo.decode(&bad).err(), Some(DecodeError::Truncated));
    }

    #[test]
    fn bounded_least_recently_used_first() {
        let memo = Decoded::default();
        let records: Vec<Record> = (0..=CAPACITY)
            .map(|i| object(&alloc::format!("u{i}"), State::Active, 1).to_record())
            .collect();
        for r in &records[..CAPACITY] {
            memo.decode(r).expect("decodes");
        }
        // u0 used again: u1 is now the least recently used.
        memo.decode(&records[0]).expect("decodes");
        memo.decode(&records[CAPACITY]).expect("decodes");
        assert_eq!(memo.len(), CAPACITY);
        let m = memo.0.lock();
        assert!(m.entries.contains_key("u0"));
        assert!(!m.entries.contains_key("u1"));
        assert!(m.entries.contains_key(&alloc::format!("u{CAPACITY}")));
    }

    #[test]
    fn large_bodies_are_not_kept() {
        let memo = Decoded::default();
        let mut o = object("big", State::Active, 1);
        o.material = Some(Zeroizing::new(vec![7; MAX_BODY]));
        let r = o.to_record();
        assert!(r.body.len() > MAX_BODY);
        assert_eq!(memo.decode(&r).expect("decodes").uid, "big");
        assert_eq!(memo.len(), 0);
    }
}
