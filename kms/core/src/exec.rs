//! [`block_on`]: the smallest executor, for callers that run one future to completion.
//!
//! The store and the KMS operations are `async` so that a driver can keep a request pending
//! while it serves other connections (the unikernel has one thread and one poll loop). Callers
//! that do not need that run each future with [`block_on`]:
//! - drivers whose store is synchronous underneath (the host server: a thread per connection,
//!   blocking sockets with timeouts, so the future completes on its first poll);
//! - drivers that make the store's network progress in `idle` (the unikernel today: `idle`
//!   polls the network stack and waits briefly, so other connections wait meanwhile).
//!
//! There is no waker machinery: the waker is [`Waker::noop`], and the future is polled again
//! after every `idle()`. A future that returns `Pending` must therefore be ready to be polled
//! again at any time (the stores in this workspace re-check their socket and deadline on
//! every poll).

use core::future::Future;
use core::pin::pin;
use core::task::{Context, Poll, Waker};

/// Poll `future` until it completes, calling `idle()` after each poll that returned
/// `Pending`. no_std, no allocation, no waker (see the module documentation for when to use it).
///
/// ```
/// let value = kms::block_on(async { 6 * 7 }, || {});
/// assert_eq!(value, 42);
/// ```
pub fn block_on<F: Future>(future: F, mut idle: impl FnMut()) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = future.as_mut().poll(&mut cx) {
            return v;
        }
        idle();
    }
}

#[cfg(test)]
mod tests {
    //! The point of an async store: several KMS operations in flight at once over a store whose
    //! calls take several polls (a fake network), polled alternately by one thread.

    use super::*;
    use crate::store::Store;
    use crate::store::memory::MemoryStore;
    use crate::{Env, Kms, KmsConfig};
    use alloc::boxed::Box;
    use alloc::string::String;
    use alloc::vec::Vec;
    use core::cell::Cell;

    use crate::store::testing::{Delay, SlowStore};

    use crate::crypto::testing::TestRng as Counter;

    const NOW: i64 = 1_750_000_000;

    fn create(alg: &str, len: u32) -> Vec<u8> {
        alloc::format!(
            r#"{{"tag":"Create","value":[
              {{"tag":"ObjectType","type":"Enumeration","value":"SymmetricKey"}},
              {{"tag":"Attributes","value":[
                {{"tag":"CryptographicAlgorithm","type":"Enumeration","value":"{alg}"}},
                {{"tag":"CryptographicLength","type":"Integer","value":{len}}},
                {{"tag":"ActivationDate","type":"DateTime","value":"2025-01-01T00:00:00Z"}}]}}]}}"#
        )
        .into_bytes()
    }

    fn uid_of(response: &[u8]) -> String {
        let v: serde_json::Value = serde_json::from_slice(response).unwrap();
        let items = v["value"].as_array().unwrap();
        let uid = items
            .iter()
            .find(|i| i["tag"] == "UniqueIdentifier")
            .unwrap();
        String::from(uid["value"].as_str().unwrap())
    }

    #[test]
    fn operations_in_flight_interleave_and_all_complete() {
        const DELAY: usize = 3;
        let kms = Kms::new(
            SlowStore {
                inner: MemoryStore::new(),
                delay: DELAY,
                pendings: Cell::new(0),
            },
            KmsConfig::default(),
        );
        // A key to encrypt with, created before (run to completion).
        let mut rng0 = Counter(1);
        let mut env0 = Env {
            now: NOW,
            rng: &mut rng0,
        };
        let key = block_on(
            kms.kmip_json(&mut env0, "alice", &create("AES", 256)),
            || {},
        )
        .unwrap();
        let key = uid_of(&key);
        kms.store().pendings.set(0);
        let encrypt = alloc::format!(
            r#"{{"tag":"Encrypt","value":[
              {{"tag":"UniqueIdentifier","type":"TextString","value":"{key}"}},
              {{"tag":"Data","type":"ByteString","value":"48656C6C6F"}}]}}"#
        );

        // Three requests in flight, each with its own Env, polled round-robin by hand.
        let (mut r1, mut r2, mut r3) = (Counter(10), Counter(20), Counter(30));
        let (mut e1, mut e2, mut e3) = (
            Env {
                now: NOW,
                rng: &mut r1,
            },
            Env {
                now: NOW,
                rng: &mut r2,
            },
            Env {
                now: NOW,
                rng: &mut r3,
            },
        );
        let c1 = create("AES", 128);
        let c2 = create("ChaCha20", 256);
        type Op<'a> =
            core::pin::Pin<Box<dyn Future<Output = Result<Vec<u8>, crate::KmsError>> + 'a>>;
        let mut ops: Vec<Op<'_>> = alloc::vec![
            Box::pin(kms.kmip_json(&mut e1, "alice", &c1)),
            Box::pin(kms.kmip_json(&mut e2, "bob", &c2)),
            Box::pin(kms.kmip_json(&mut e3, "alice", encrypt.as_bytes())),
        ];
        let mut done: Vec<Option<Result<Vec<u8>, crate::KmsError>>> = alloc::vec![None, None, None];
        let mut order = Vec::new();
        let mut cx = Context::from_waker(Waker::noop());
        let mut rounds = 0;
        while done.iter().any(Option::is_none) {
            rounds += 1;
            assert!(rounds < 1000, "the operations do not complete");
            for (i, op) in ops.iter_mut().enumerate() {
                if done[i].is_some() {
                    continue;
                }
                if let Poll::Ready(r) = op.as_mut().poll(&mut cx) {
                    done[i] = Some(r);
                    order.push(i);
                }
            }
            if rounds == 1 {
                // After one poll each, all three are waiting on the "network" at once.
                assert!(done.iter().all(Option::is_none));
                assert_eq!(kms.store().pendings.get(), 3);
            }
        }
        // Every store call waited: the operations really were suspended and resumed.
        assert!(kms.store().pendings.get() >= 3 * DELAY);
        assert!(rounds > DELAY);
        drop(ops);

        let [Some(Ok(a)), Some(Ok(b)), Some(Ok(enc))] =
            [done[0].take(), done[1].take(), done[2].take()]
        else {
            panic!("an operation failed: {done:?}");
        };
        assert!(a.starts_with(br#"{"tag":"CreateResponse""#));
        assert!(b.starts_with(br#"{"tag":"CreateResponse""#));
        assert!(enc.starts_with(br#"{"tag":"EncryptResponse""#));
        let (ua, ub) = (uid_of(&a), uid_of(&b));
        assert_ne!(ua, ub);
        assert_eq!(uid_of(&enc), key);

        // The results are what sequential execution gives: each key exists with its owner,
        // and the ciphertext decrypts back.
        let get = |uid: &str| block_on(kms.store().inner.get(uid), || {}).unwrap();
        assert!(get(&ua).is_some() && get(&ub).is_some());
        let v: serde_json::Value = serde_json::from_slice(&enc).unwrap();
        let field = |t: &str| {
            v["value"]
                .as_array()
                .unwrap()
                .iter()
                .find(|i| i["tag"] == t)
                .unwrap()["value"]
                .as_str()
                .map(String::from)
                .unwrap()
        };
        let decrypt = alloc::format!(
            r#"{{"tag":"Decrypt","value":[
              {{"tag":"UniqueIdentifier","type":"TextString","value":"{key}"}},
              {{"tag":"Data","type":"ByteString","value":"{}"}},
              {{"tag":"IVCounterNonce","type":"ByteString","value":"{}"}},
              {{"tag":"AuthenticatedEncryptionTag","type":"ByteString","value":"{}"}}]}}"#,
            field("Data"),
            field("IVCounterNonce"),
            field("AuthenticatedEncryptionTag")
        );
        let pt = block_on(kms.kmip_json(&mut env0, "alice", decrypt.as_bytes()), || {}).unwrap();
        assert!(String::from_utf8(pt).unwrap().contains("48656C6C6F"));
        // Bob owns the key he created; Alice does not see it.
        let owned = block_on(kms.owned("bob"), || {}).unwrap();
        assert_eq!(owned.len(), 1);
        assert_eq!(owned[0].object_id, ub);
    }

    #[test]
    fn block_on_calls_idle_between_pending_polls() {
        let pendings = Cell::new(0);
        let mut idles = 0;
        block_on(
            Delay {
                left: 4,
                pendings: &pendings,
            },
            || idles += 1,
        );
        assert_eq!((pendings.get(), idles), (4, 4));
    }
}
