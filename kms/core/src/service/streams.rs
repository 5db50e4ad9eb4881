//! Multi-part (streaming) Encrypt, KMIP 2.1 §6.1.19: a first request with `InitIndicator`
//! true gets a `CorrelationValue`; the next ones send it back, the last with `FinalIndicator`
//! true, which answers the rest of the ciphertext and the tag. AES-GCM and ChaCha20-Poly1305
//! only (the OASIS case CS-BC-M-GCM-3).
//!
//! The AEAD crates seal whole messages only, so an operation keeps its plaintext so far (in a
//! zeroizing buffer, in this server's memory) and each part re-seals it and answers the
//! ciphertext bytes not yet sent: both constructions encrypt position by position, so the
//! bytes already answered stay the same, and the final tag covers the whole ciphertext.
//! Bounds: [`MAX_STREAMS`] operations at once, [`MAX_STREAM_BYTES`] of plaintext each, and an
//! operation not continued for [`STREAM_TTL_SECS`] is dropped. The state lives in one server's
//! memory: the parts of one operation must reach the same server (one connection does).

use super::*;
use crate::kmip::ops::{NonceSpelling, StreamPart};
use alloc::collections::BTreeMap;

/// Most unfinished multi-part operations kept at once (all users).
pub(super) const MAX_STREAMS: usize = 64;
/// Most plaintext bytes one multi-part operation takes.
pub(super) const MAX_STREAM_BYTES: usize = 1 << 20;
/// Seconds an unfinished operation is kept after its last part.
pub(super) const STREAM_TTL_SECS: i64 = 300;

/// One unfinished operation.
struct Stream {
    user: String,
    uid: String,
    alg: AeadAlg,
    nonce: Vec<u8>,
    aad: Vec<u8>,
    tag_len: usize,
    plaintext: Zeroizing<Vec<u8>>,
    sent: usize,
    touched: i64,
}

/// The unfinished multi-part operations, by correlation value.
#[derive(Default)]
pub(super) struct Streams(spin::Mutex<BTreeMap<Vec<u8>, Stream>>);

impl core::fmt::Debug for Streams {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Streams")
    }
}

const UNKNOWN: KmsError = kerr(
    ResultReason::ItemNotFound,
    "no multi-part operation with this CorrelationValue (finished, expired or not yours)",
);

impl<S: Store> Kms<S> {
    /// One part of a multi-part Encrypt with the symmetric key `o` (already resolved with the
    /// Encrypt right).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn encrypt_part(
        &self,
        env: &mut Env<'_>,
        user: &str,
        o: &ManagedObject,
        params: Option<&CryptographicParameters>,
        data: &[u8],
        nonce: Option<Vec<u8>>,
        aad: Option<Vec<u8>>,
        part: StreamPart,
        spelling: NonceSpelling,
    ) -> KResult<Response> {
        let (alg, key, tag_len) = self.symmetric_for(o, env.now, usage::ENCRYPT, params)?;
        let mut st = match (part.init, part.correlation) {
            (true, None) => {
                let nonce = super::caller_nonce_or_random(
                    env,
                    user,
                    o,
                    !alg.nonce_misuse_resistant(),
                    aead::NONCE_LEN,
                    nonce,
                )?;
                Stream {
                    user: user.into(),
                    uid: o.uid.clone(),
                    alg,
                    nonce,
                    aad: aad.unwrap_or_default(),
                    tag_len: tag_len.unwrap_or(aead::TAG_LEN),
                    plaintext: Zeroizing::new(Vec::new()),
                    sent: 0,
                    touched: env.now,
                }
            }
            (false, Some(cv)) => {
                if nonce.is_some() || aad.is_some() {
                    return Err(kerr(
                        ResultReason::InvalidField,
                        "only the first part of a multi-part Encrypt carries the IVCounterNonce \
                         and the AuthenticatedEncryptionAdditionalData",
                    ));
                }
                let mut map = self.streams.0.lock();
                // Someone else's operation is not revealed, nor ended, by a guess.
                match map.get(&cv) {
                    Some(s) if s.user == user && s.uid == o.uid && s.alg == alg => {}
                    _ => return Err(UNKNOWN),
                }
                let mut st = map.remove(&cv).ok_or(UNKNOWN)?;
                drop(map);
                if tag_len.is_some_and(|t| t != st.tag_len) {
                    return Err(kerr(
                        ResultReason::InvalidField,
                        "TagLength changed within a multi-part Encrypt",
                    ));
                }
                st.touched = env.now;
                return self.advance(env, o, key, st, Some(cv), data, part.last, spelling);
            }
            (true, Some(_)) => {
                return Err(kerr(
                    ResultReason::InvalidField,
                    "InitIndicator starts a multi-part Encrypt: it takes no CorrelationValue",
                ));
            }
            (false, None) => {
                return Err(kerr(
                    ResultReason::MissingData,
                    "a part after the first of a multi-part Encrypt needs its CorrelationValue",
                ));
            }
        };
        st.touched = env.now;
        self.advance(env, o, key, st, None, data, part.last, spelling)
    }

    /// Add `data` to `st`, answer the new ciphertext bytes, and keep `st` unless `last`.
    #[allow(clippy::too_many_arguments)]
    fn advance(
        &self,
        env: &mut Env<'_>,
        o: &ManagedObject,
        key: &[u8],
        mut st: Stream,
        cv: Option<Vec<u8>>,
        data: &[u8],
        last: bool,
        spelling: NonceSpelling,
    ) -> KResult<Response> {
        if st.plaintext.len() + data.len() > MAX_STREAM_BYTES {
            return Err(kerr(
                ResultReason::InvalidField,
                "a multi-part Encrypt takes at most 1 MiB in all",
            ));
        }
        st.plaintext.extend_from_slice(data);
        let (ct, tag) = aead::encrypt(st.alg, key, &st.nonce, &st.aad, &st.plaintext, st.tag_len)?;
        let out = ct.get(st.sent..).unwrap_or_default().to_vec();
        st.sent = ct.len();
        let first = cv.is_none();
        let nonce = if first { st.nonce.clone() } else { Vec::new() };
        if last {
            return Ok(Response::Encrypt {
                uid: o.uid.clone(),
                data: out,
                nonce,
                tag,
                spelling,
                correlation: None,
            });
        }
        let cv = match cv {
            Some(cv) => cv,
            None => {
                let mut cv = alloc::vec![0u8; 16];
                env.rng
                    .fill(&mut cv)
                    .map_err(|_| KmsError::Internal("random number generator failure"))?;
                cv
            }
        };
        let mut map = self.streams.0.lock();
        let now = env.now;
        map.retain(|_, s| s.touched.saturating_add(STREAM_TTL_SECS) > now);
        if first && map.len() >= MAX_STREAMS {
            return Err(kerr(
                ResultReason::GeneralFailure,
                "too many unfinished multi-part operations: finish one or retry later",
            ));
        }
        map.insert(cv.clone(), st);
        Ok(Response::Encrypt {
            uid: o.uid.clone(),
            data: out,
            nonce,
            tag: Vec::new(),
            spelling,
            correlation: Some(cv),
        })
    }
}
