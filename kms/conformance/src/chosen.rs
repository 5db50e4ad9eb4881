//! Outputs the server chooses, so that no two servers answer them alike (tolerance 8 of
//! [`mod@crate::compare`]): what a step's request says about its response's `Data`, and what
//! a step teaches the rest of the case.
//!
//! A response's `Data` is server-chosen when the request is
//! - `RNGRetrieve` (random bytes);
//! - `Encrypt` with a key whose encryption is randomized: its request, or the Register/Create
//!   that made the key, names `PaddingMethod` OAEP (RSA-OAEP draws a random seed) or
//!   `RandomIV` true (the server draws the IV, which the response returns: its
//!   `IVCounterNonce` is server-chosen as well);
//! - `Encrypt` or `Decrypt` with a key the server generated in this case (Create,
//!   CreateKeyPair, ReKey): the reference server's output came from its own key.
//!
//! Such `Data` matches any byte string of the expected length, unless the expected value is one
//! the case sent (a plaintext coming back from Decrypt must be that plaintext). The server's
//! value then stands in for the literal one: a later request that sends the reference's
//! ciphertext sends the server's, so a Decrypt step still proves the round trip.

use kms::kmip::ttlv::{EnumValue, Ttlv, Value};

use crate::resolve::Context;

fn operation(item: &Ttlv) -> Option<&str> {
    match &item.get("Operation")?.value {
        Value::Enumeration(EnumValue::Name(n)) => Some(n),
        _ => None,
    }
}

fn text<'a>(t: &'a Ttlv, tag: &str) -> Option<&'a str> {
    match &t.get(tag)?.value {
        Value::TextString(s) => Some(s),
        _ => None,
    }
}

/// True if `t` (at any depth) holds a `PaddingMethod` OAEP or a `RandomIV` true.
fn names_oaep(t: &Ttlv) -> bool {
    match &t.value {
        Value::Boolean(true) => t.tag == "RandomIV",
        Value::Enumeration(EnumValue::Name(n)) if t.tag == "PaddingMethod" => {
            n.eq_ignore_ascii_case("OAEP")
        }
        Value::Enumeration(EnumValue::Code(2)) => t.tag == "PaddingMethod",
        Value::Structure(c) => c.iter().any(names_oaep),
        _ => false,
    }
}

fn batch_items(message: &Ttlv) -> impl Iterator<Item = &Ttlv> {
    message.all("BatchItem")
}

/// True if the `Data` answering `request` (a `RequestMessage`) is chosen by the server.
pub fn free_data(request: &Ttlv, ctx: &Context) -> bool {
    batch_items(request).any(|item| {
        let payload = item.get("RequestPayload");
        let key = payload.and_then(|p| text(p, "UniqueIdentifier"));
        match operation(item) {
            Some("RNGRetrieve") => true,
            Some("Encrypt") => {
                payload.is_some_and(names_oaep)
                    || key.is_some_and(|k| ctx.randomized.contains(k) || ctx.generated.contains(k))
            }
            Some("Decrypt") => key.is_some_and(|k| ctx.generated.contains(k)),
            _ => false,
        }
    })
}

/// Learns from a step that matched: the uids of the keys the server generated, and of the keys
/// whose encryption is randomized.
pub fn learn(request: &Ttlv, response: &Ttlv, ctx: &mut Context) {
    let requests: Vec<&Ttlv> = batch_items(request).collect();
    for (i, item) in batch_items(response).enumerate() {
        let Some(req) = requests.get(i) else { break };
        let Some(payload) = item.get("ResponsePayload") else {
            continue;
        };
        let uids = payload
            .children()
            .iter()
            .filter(|c| c.tag.ends_with("UniqueIdentifier"))
            .filter_map(|c| match &c.value {
                Value::TextString(s) => Some(s.clone()),
                _ => None,
            });
        let generated = matches!(
            operation(req),
            Some("Create" | "CreateKeyPair" | "ReKey" | "ReKeyKeyPair")
        );
        let oaep = matches!(
            operation(req),
            Some("Register" | "Create" | "CreateKeyPair")
        ) && req.get("RequestPayload").is_some_and(names_oaep);
        for uid in uids {
            if oaep {
                ctx.randomized.insert(uid.clone());
            }
            if generated {
                ctx.generated.insert(uid);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(op: &str, payload: Vec<Ttlv>) -> Ttlv {
        Ttlv::structure(
            "BatchItem",
            vec![
                Ttlv::enumeration("Operation", op),
                Ttlv::structure("RequestPayload", payload),
            ],
        )
    }

    fn message(items: Vec<Ttlv>) -> Ttlv {
        Ttlv::structure("RequestMessage", items)
    }

    fn answer(uid: &str) -> Ttlv {
        Ttlv::structure(
            "ResponseMessage",
            vec![Ttlv::structure(
                "BatchItem",
                vec![Ttlv::structure(
                    "ResponsePayload",
                    vec![Ttlv::text("UniqueIdentifier", uid)],
                )],
            )],
        )
    }

    #[test]
    fn generated_and_oaep_keys_make_data_free_registered_keys_do_not() {
        let mut ctx = Context::default();
        let uid = |u: &str| vec![Ttlv::text("UniqueIdentifier", u), Ttlv::bytes("Data", &[1])];
        // Before anything is learnt, nothing is free but random bytes.
        assert!(!free_data(&message(vec![item("Encrypt", uid("k1"))]), &ctx));
        assert!(free_data(&message(vec![item("RNGRetrieve", vec![])]), &ctx));

        learn(
            &message(vec![item("Create", vec![])]),
            &answer("k1"),
            &mut ctx,
        );
        assert!(free_data(&message(vec![item("Encrypt", uid("k1"))]), &ctx));
        assert!(free_data(&message(vec![item("Decrypt", uid("k1"))]), &ctx));

        // A registered key: its outputs are the case's (known key, deterministic).
        learn(
            &message(vec![item("Register", vec![])]),
            &answer("k2"),
            &mut ctx,
        );
        assert!(!free_data(&message(vec![item("Encrypt", uid("k2"))]), &ctx));
        assert!(!free_data(&message(vec![item("Decrypt", uid("k2"))]), &ctx));

        // A key registered for RSA-OAEP: encryption is randomized, decryption is not.
        let oaep = vec![Ttlv::structure(
            "Attributes",
            vec![Ttlv::structure(
                "CryptographicParameters",
                vec![Ttlv::enumeration("PaddingMethod", "OAEP")],
            )],
        )];
        learn(
            &message(vec![item("Register", oaep)]),
            &answer("k3"),
            &mut ctx,
        );
        assert!(free_data(&message(vec![item("Encrypt", uid("k3"))]), &ctx));
        assert!(!free_data(&message(vec![item("Decrypt", uid("k3"))]), &ctx));
        assert!(!ctx.generated.contains("k3"));
    }
}
