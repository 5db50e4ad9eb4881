//! Building a `RequestMessage` (KMIP 2.1 §8 "Message Structure", KMIP 1.4 §7.1): the header with
//! the protocol version and batch count, then one `BatchItem` per operation. Used by clients, the
//! tests and the fuzz seeds; the server reads messages in [`crate::Kms`].

use alloc::vec::Vec;

use super::ttlv::Ttlv;

/// A `RequestMessage` at protocol version `major.minor` holding `items`, each an `Operation`
/// enumeration (by name, `Ttlv::enumeration("Operation", "Encrypt")`, or by code) and the
/// fields of its `RequestPayload`.
pub fn request(major: i32, minor: i32, items: Vec<(Ttlv, Vec<Ttlv>)>) -> Ttlv {
    let mut v = Vec::with_capacity(items.len() + 1);
    v.push(Ttlv::structure(
        "RequestHeader",
        alloc::vec![
            Ttlv::structure(
                "ProtocolVersion",
                alloc::vec![
                    Ttlv::int("ProtocolVersionMajor", major),
                    Ttlv::int("ProtocolVersionMinor", minor),
                ],
            ),
            Ttlv::int("BatchCount", i32::try_from(items.len()).unwrap_or(i32::MAX)),
        ],
    ));
    for (operation, payload) in items {
        v.push(Ttlv::structure(
            "BatchItem",
            alloc::vec![operation, Ttlv::structure("RequestPayload", payload)],
        ));
    }
    Ttlv::structure("RequestMessage", v)
}

/// A KMIP 2.1 `RequestMessage` of one operation, by name (`"Encrypt"`).
pub fn request_2_1(operation: &str, payload: Vec<Ttlv>) -> Ttlv {
    request(
        2,
        1,
        alloc::vec![(Ttlv::enumeration("Operation", operation), payload)],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kmip::ttlv::Value;

    #[test]
    fn header_counts_the_items_and_carries_the_version() {
        let m = request(
            1,
            4,
            alloc::vec![
                (Ttlv::enumeration("Operation", "Query"), Vec::new()),
                (Ttlv::enumeration("Operation", "Create"), Vec::new()),
            ],
        );
        let h = m.get("RequestHeader").unwrap();
        assert_eq!(h.get("BatchCount").unwrap().value, Value::Integer(2));
        let pv = h.get("ProtocolVersion").unwrap();
        assert_eq!(
            pv.get("ProtocolVersionMajor").unwrap().value,
            Value::Integer(1)
        );
        assert_eq!(
            pv.get("ProtocolVersionMinor").unwrap().value,
            Value::Integer(4)
        );
        assert_eq!(m.children().len(), 3);
    }
}
