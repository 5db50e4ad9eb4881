//! Compares a server's response with the one a test case expects.
//!
//! Tolerances (what may differ and still pass), and nothing else:
//! 1. **Placeholders.** An expected value `$NAME` matches any value of the right type the first
//!    time and is captured (later requests send it); afterwards it must equal the captured
//!    value. This covers generated uids, IVs, tags, signatures and random bytes.
//! 2. **Times.** `$NOW`, `$NOW±N` match any DateTime (the server's clock is its own); literal
//!    dates must be equal.
//! 3. **Extra fields.** A structure may hold fields the case does not list (servers return more
//!    attributes than the reference); every listed field must be there. Repeated fields are
//!    matched without regard to order (attribute lists are unordered).
//! 4. **Messages.** `ResultMessage` text is free (the `ResultReason` must match); the header's
//!    `TimeStamp` and `ServerCorrelationValue` (a value each server chooses: the cases show
//!    the reference server's) must be there with their type, their values are not compared;
//!    so is Query's `VendorIdentification` (directly in the `ResponsePayload`: the server's
//!    vendor, not a vendor attribute's).
//!
//! 5. **Generated keys.** A `KeyMaterial` byte string that no request of the case sent is key
//!    material the server generated (Create, ReKey): any value of the same length matches; so
//!    does a `DigestValue` that is not the SHA-256 of a byte string the case sent.
//! 6. **Enumerations and masks.** Masks compare as numbers (flag names resolved), enumerations
//!    by name or by code (a binary response carries codes: the expected name is looked up in
//!    the enumeration of its tag; in a KMIP 1.x `Attribute`, in the enumeration of the
//!    attribute its `AttributeName` names, resolved when the case is loaded:
//!    [`crate::resolve::type_attribute_values`]).
//! 7. **`$MAC_DATA`.** CS-AC-M-6 sends `$MAC_DATA`, which no response defines as a placeholder:
//!    it stands for the `MACData` of the last MAC response that matched (the case's literal).
//! 8. **Server-chosen `Data`** ([`mod@crate::chosen`]): random bytes (RNGRetrieve), RSA-OAEP
//!    ciphertexts, and the output of Encrypt/Decrypt with a key the server generated match any
//!    byte string of the expected length, unless the expected value is one the case sent; the
//!    server's value then replaces the literal in later requests (a later Decrypt of the
//!    reference's ciphertext decrypts the server's, and must give the plaintext exactly).
//! 9. **Random Number Generator.** A `RandomNumberGenerator` attribute describes the server's
//!    own generator (the cases show the reference server's ANSI X9.31 AES-256): it must be a
//!    structure with an `RNGAlgorithm`; its fields are not compared.
//! 10. **Lease Time.** How long a client may keep what it got is the server's policy (the
//!     reference server grants 3600 s): any `Interval` matches.
//! 11. **Capabilities.** A Query response's `Operation` and `ObjectType` entries are the
//!     server's own list: expected ones it does not list are allowed (see `capability_list`).

use std::fmt;

use kms::kmip::ttlv::{EnumValue, Ttlv, Value, tag_code};

use crate::resolve::{Context, now_offset, value};
use crate::xml::Node;

/// Where and why a response differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// Path of tags to the difference.
    pub path: String,
    /// What differs.
    pub reason: String,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)
    }
}

/// Fields whose content is free-form.
const FREE: &[&str] = &["ResultMessage", "TimeStamp", "ServerCorrelationValue"];

fn same_tag(expected: &str, actual: &str) -> bool {
    expected == actual
        || matches!((tag_code(expected), tag_code(actual)), (Some(a), Some(b)) if a == b)
}

/// Compares `actual` with `expected`, capturing placeholders into `ctx` (only on success).
pub fn compare(expected: &Node, actual: &Ttlv, ctx: &mut Context) -> Result<(), Mismatch> {
    let mut trial = ctx.clone();
    walk(expected, actual, &mut trial, &expected.tag)?;
    *ctx = trial;
    Ok(())
}

/// Tolerance 9: a `RandomNumberGenerator` structure the server filled with its own generator.
fn rng_described(children: &[Ttlv]) -> Result<(), String> {
    match children.iter().any(|c| same_tag("RNGAlgorithm", &c.tag)) {
        true => Ok(()),
        false => Err("no RNGAlgorithm".into()),
    }
}

fn walk(e: &Node, a: &Ttlv, ctx: &mut Context, path: &str) -> Result<(), Mismatch> {
    let fail = |reason: String| Mismatch {
        path: path.to_owned(),
        reason,
    };
    if !same_tag(&e.tag, &a.tag) {
        return Err(fail(format!("tag {} instead of {}", a.tag, e.tag)));
    }
    let Some(ty) = e.ty.as_deref() else {
        let Value::Structure(children) = &a.value else {
            return Err(fail(format!(
                "{} instead of a structure",
                a.value.type_name()
            )));
        };
        if e.tag == "RandomNumberGenerator" {
            // The server describes its own generator (tolerance 9).
            return rng_described(children).map_err(fail);
        }
        let mut used = vec![false; children.len()];
        let mut waived = Vec::new();
        // In a KMIP 1.x `Attribute`, the value of a server-policy attribute (tolerances 9 and
        // 10) is `AttributeValue`, named by its sibling `AttributeName`.
        let v1_policy = (e.tag == "Attribute")
            .then(|| e.children.iter().find(|c| c.tag == "AttributeName"))
            .flatten()
            .and_then(|n| kms::kmip::v1::tag_of(&n.value))
            .filter(|t| matches!(*t, "RandomNumberGenerator" | "LeaseTime"));
        for ec in &e.children {
            let child_path = format!("{path}/{}", ec.tag);
            if let Some(policy) = v1_policy
                && ec.tag == "AttributeValue"
            {
                let i = children
                    .iter()
                    .enumerate()
                    .position(|(i, c)| !used[i] && c.tag == "AttributeValue")
                    .ok_or_else(|| Mismatch {
                        path: child_path.clone(),
                        reason: "missing".into(),
                    })?;
                used[i] = true;
                let check = match (policy, &children[i].value) {
                    ("RandomNumberGenerator", Value::Structure(c)) => rng_described(c),
                    ("LeaseTime", Value::Interval(_)) => Ok(()),
                    (_, v) => Err(format!("{} instead of the attribute's type", v.type_name())),
                };
                check.map_err(|reason| Mismatch {
                    path: child_path,
                    reason,
                })?;
                continue;
            }
            let mut first_error = None;
            let mut matched = false;
            for (i, ac) in children.iter().enumerate() {
                if used[i] || !same_tag(&ec.tag, &ac.tag) {
                    continue;
                }
                let mut trial = ctx.clone();
                match walk(ec, ac, &mut trial, &child_path) {
                    Ok(()) => {
                        *ctx = trial;
                        used[i] = true;
                        matched = true;
                        break;
                    }
                    Err(m) => {
                        first_error.get_or_insert(m);
                    }
                }
            }
            if !matched && capability_list(e, &ec.tag, path) {
                waived.push((ec.tag.as_str(), child_path, first_error));
                continue;
            }
            if !matched {
                return Err(first_error.unwrap_or(Mismatch {
                    path: child_path,
                    reason: "missing".into(),
                }));
            }
        }
        // A waived capability needs the server to list at least one matching entry of its tag.
        for (tag, child_path, first_error) in waived {
            let listed = children
                .iter()
                .zip(&used)
                .any(|(c, u)| *u && same_tag(tag, &c.tag));
            if !listed {
                return Err(first_error.unwrap_or(Mismatch {
                    path: child_path,
                    reason: "missing".into(),
                }));
            }
        }
        return Ok(());
    };
    if a.value.type_name() != ty {
        return Err(fail(format!("{} instead of {ty}", a.value.type_name())));
    }
    if FREE.contains(&e.tag.as_str()) || path.ends_with("ResponsePayload/VendorIdentification") {
        return Ok(());
    }
    if e.tag == "LeaseTime" {
        // The server's lease policy (tolerance 10).
        return Ok(());
    }
    if ty == "DateTime" && now_offset(&e.value, 0).is_some() {
        return Ok(());
    }
    if e.value.starts_with('$') {
        return match ctx.captures.get(&e.value) {
            Some(v) if *v == a.value => Ok(()),
            Some(_) => Err(fail(format!(
                "{} differs from the value captured earlier",
                e.value
            ))),
            None => {
                ctx.captures.insert(e.value.clone(), a.value.clone());
                Ok(())
            }
        };
    }
    let want = value(e, ctx).map_err(|err| fail(err.to_string()))?;
    if let (Value::ByteString(w), Value::ByteString(g)) = (&want, &a.value)
        && w.len() == g.len()
    {
        if (e.tag == "KeyMaterial" && !ctx.sent.contains(w))
            || (e.tag == "DigestValue" && !ctx.sent.iter().any(|s| sha2_256(s) == *w))
        {
            return Ok(());
        }
        if ctx.free_data
            && (path.ends_with("ResponsePayload/Data")
                || path.ends_with("ResponsePayload/IVCounterNonce"))
            && !ctx.sent.contains(w)
        {
            ctx.substitutes.insert(w.clone(), g.clone());
            return Ok(());
        }
    }
    if equal(&e.tag, &want, &a.value) {
        if e.tag == "MACData" {
            // CS-AC-M-6 verifies "$MAC_DATA", which no response defines: the MAC just made.
            ctx.captures.insert("$MAC_DATA".into(), a.value.clone());
        }
        Ok(())
    } else {
        Err(fail(format!(
            "{} instead of {}",
            show(&a.value),
            show(&want)
        )))
    }
}

/// Tolerance 6: a Query response's `Operation` and `ObjectType` lists are what the server
/// supports (the cases show the reference server's, e.g. Poll, Certify, SplitKey in
/// MSGENC-*-M-1): an expected entry the server does not list is allowed, as long as at least
/// one expected entry of that tag matches one of the server's. Only in a `ResponsePayload` that
/// lists operations (Query's; no other response carries `Operation` there).
fn capability_list(e: &Node, tag: &str, path: &str) -> bool {
    matches!(tag, "Operation" | "ObjectType")
        && path.ends_with("ResponsePayload")
        && e.children.iter().any(|c| c.tag == "Operation")
}

fn sha2_256(b: &[u8]) -> Vec<u8> {
    use sha2::Digest as _;
    sha2::Sha256::digest(b).to_vec()
}

fn equal(tag: &str, want: &Value, got: &Value) -> bool {
    match (want, got) {
        // Two spellings of one value of the tag's enumeration (`DES3` and `THREE_DES`, KMIP's
        // and the Cosmian dialect's names of 3DES) are equal too.
        (Value::Enumeration(EnumValue::Name(w)), Value::Enumeration(EnumValue::Name(g))) => {
            norm(w) == norm(g)
                || kms::kmip::types::enum_code(tag, w)
                    .is_some_and(|c| kms::kmip::types::enum_code(tag, g) == Some(c))
        }
        (Value::Enumeration(EnumValue::Name(n)), Value::Enumeration(EnumValue::Code(c)))
        | (Value::Enumeration(EnumValue::Code(c)), Value::Enumeration(EnumValue::Name(n))) => {
            kms::kmip::types::enum_code(tag, n) == Some(*c)
        }
        _ => want == got,
    }
}

/// Enumeration names as the spec writes them (`SHA_256`, `RSA`) and as JSON dialects spell them
/// (`SHA256`) compare equal: the case and underscores carry no meaning.
fn norm(name: &str) -> String {
    name.chars()
        .filter(|c| *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

fn show(v: &Value) -> String {
    match v {
        Value::TextString(s) => format!("{s:?}"),
        Value::Integer(i) => format!("{i} (0x{i:x})"),
        Value::Enumeration(EnumValue::Name(n)) => n.clone(),
        Value::Enumeration(EnumValue::Code(c)) => format!("0x{c:08x}"),
        Value::ByteString(b) => {
            let head: String = b.iter().take(8).map(|x| format!("{x:02x}")).collect();
            format!("{} bytes ({head}…)", b.len())
        }
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::parse_case;

    fn t(tag: &str, value: Value) -> Ttlv {
        Ttlv {
            tag: tag.into(),
            value,
        }
    }

    fn expected(xml: &str) -> Node {
        let case = parse_case("T", &format!("<KMIP><RequestMessage/>{xml}</KMIP>")).unwrap();
        case.steps[0].response.clone()
    }

    #[test]
    fn placeholders_capture_then_must_repeat() {
        let e = expected(
            r#"<ResponseMessage><UniqueIdentifier type="TextString" value="$UNIQUE_IDENTIFIER_0"/>
               <TimeStamp type="DateTime" value="$NOW"/></ResponseMessage>"#,
        );
        let a = |uid: &str| {
            t(
                "ResponseMessage",
                Value::Structure(vec![
                    t("UniqueIdentifier", Value::TextString(uid.into())),
                    t("TimeStamp", Value::DateTime(5)),
                    t("Extra", Value::Boolean(true)),
                ]),
            )
        };
        let mut ctx = Context::default();
        compare(&e, &a("u1"), &mut ctx).unwrap();
        assert_eq!(
            ctx.captures.get("$UNIQUE_IDENTIFIER_0"),
            Some(&Value::TextString("u1".into()))
        );
        compare(&e, &a("u1"), &mut ctx).unwrap();
        let m = compare(&e, &a("u2"), &mut ctx).unwrap_err();
        assert_eq!(m.path, "ResponseMessage/UniqueIdentifier");
        assert!(m.reason.contains("captured earlier"), "{m}");
    }

    #[test]
    fn missing_fields_wrong_values_and_types_fail() {
        let e = expected(
            r#"<ResponseMessage><ResultStatus type="Enumeration" value="Success"/>
               <CryptographicUsageMask type="Integer" value="Encrypt Decrypt"/></ResponseMessage>"#,
        );
        let mut ctx = Context::default();
        let ok = t(
            "ResponseMessage",
            Value::Structure(vec![
                t("CryptographicUsageMask", Value::Integer(12)),
                t(
                    "ResultStatus",
                    Value::Enumeration(EnumValue::Name("Success".into())),
                ),
            ]),
        );
        compare(&e, &ok, &mut ctx).unwrap();
        let failed = t(
            "ResponseMessage",
            Value::Structure(vec![t(
                "ResultStatus",
                Value::Enumeration(EnumValue::Name("OperationFailed".into())),
            )]),
        );
        let m = compare(&e, &failed, &mut ctx).unwrap_err();
        assert_eq!(m.path, "ResponseMessage/ResultStatus");
        let missing = t(
            "ResponseMessage",
            Value::Structure(vec![t(
                "ResultStatus",
                Value::Enumeration(EnumValue::Name("Success".into())),
            )]),
        );
        let m = compare(&e, &missing, &mut ctx).unwrap_err();
        assert_eq!(
            (m.path.as_str(), m.reason.as_str()),
            ("ResponseMessage/CryptographicUsageMask", "missing")
        );
        let wrong_type = t(
            "ResponseMessage",
            Value::Structure(vec![
                t("ResultStatus", Value::TextString("Success".into())),
                t("CryptographicUsageMask", Value::Integer(12)),
            ]),
        );
        assert!(
            compare(&e, &wrong_type, &mut ctx)
                .unwrap_err()
                .reason
                .contains("TextString instead of Enumeration")
        );
    }

    #[test]
    fn generated_key_material_matches_by_length_sent_material_exactly() {
        let e = expected(
            r#"<ResponseMessage><KeyMaterial type="ByteString" value="2a2a2a2a"/></ResponseMessage>"#,
        );
        let a = |b: &[u8]| {
            t(
                "ResponseMessage",
                Value::Structure(vec![t("KeyMaterial", Value::ByteString(b.to_vec()))]),
            )
        };
        let mut ctx = Context::default();
        compare(&e, &a(&[1, 2, 3, 4]), &mut ctx).unwrap();
        let m = compare(&e, &a(&[1, 2, 3]), &mut ctx).unwrap_err();
        assert!(m.reason.contains("3 bytes"), "{m}");
        ctx.sent.insert(vec![0x2a; 4]);
        let m = compare(&e, &a(&[1, 2, 3, 4]), &mut ctx).unwrap_err();
        assert_eq!(m.path, "ResponseMessage/KeyMaterial");
        compare(&e, &a(&[0x2a; 4]), &mut ctx).unwrap();
    }

    #[test]
    fn server_chosen_data_matches_by_length_unless_the_case_sent_it() {
        let e = expected(
            r#"<ResponseMessage><ResponsePayload><Data type="ByteString" value="fd912d10"/>
               </ResponsePayload></ResponseMessage>"#,
        );
        let a = |b: &[u8]| {
            t(
                "ResponseMessage",
                Value::Structure(vec![t(
                    "ResponsePayload",
                    Value::Structure(vec![t("Data", Value::ByteString(b.to_vec()))]),
                )]),
            )
        };
        let mut ctx = Context::default();
        // Not server-chosen: the literal must be there.
        let m = compare(&e, &a(&[9, 9, 9, 9]), &mut ctx).unwrap_err();
        assert_eq!(m.path, "ResponseMessage/ResponsePayload/Data");
        ctx.free_data = true;
        let m = compare(&e, &a(&[9, 9, 9]), &mut ctx).unwrap_err();
        assert!(m.reason.contains("3 bytes"), "{m}");
        compare(&e, &a(&[9, 9, 9, 9]), &mut ctx).unwrap();
        // The server's value now replaces the literal in requests.
        let literal = vec![0xfd, 0x91, 0x2d, 0x10];
        assert_eq!(ctx.substitutes.get(&literal), Some(&vec![9, 9, 9, 9]));
        let req = crate::resolve::resolve(
            &Node {
                tag: "Data".into(),
                ty: Some("ByteString".into()),
                value: "fd912d10".into(),
                children: vec![],
            },
            &ctx,
        )
        .unwrap();
        assert_eq!(req.value, Value::ByteString(vec![9, 9, 9, 9]));
        // A plaintext the case sent must come back exactly.
        ctx.sent.insert(literal.clone());
        assert!(compare(&e, &a(&[8, 8, 8, 8]), &mut ctx).is_err());
        compare(&e, &a(&literal), &mut ctx).unwrap();
    }

    #[test]
    fn random_number_generator_needs_an_algorithm_not_the_reference_one() {
        let e = expected(
            r#"<ResponseMessage><RandomNumberGenerator>
               <RNGAlgorithm type="Enumeration" value="ANSIX9_31"/>
               <CryptographicLength type="Integer" value="256"/>
               </RandomNumberGenerator></ResponseMessage>"#,
        );
        let a = |c: Vec<Ttlv>| {
            t(
                "ResponseMessage",
                Value::Structure(vec![t("RandomNumberGenerator", Value::Structure(c))]),
            )
        };
        let mut ctx = Context::default();
        compare(
            &e,
            &a(vec![t(
                "RNGAlgorithm",
                Value::Enumeration(EnumValue::Name("Unspecified".into())),
            )]),
            &mut ctx,
        )
        .unwrap();
        let m = compare(&e, &a(vec![]), &mut ctx).unwrap_err();
        assert_eq!(m.reason, "no RNGAlgorithm");
    }

    #[test]
    fn mac_data_is_captured_for_the_mac_verify_step() {
        let e = expected(
            r#"<ResponseMessage><MACData type="ByteString" value="c911"/></ResponseMessage>"#,
        );
        let a = |b: &[u8]| {
            t(
                "ResponseMessage",
                Value::Structure(vec![t("MACData", Value::ByteString(b.to_vec()))]),
            )
        };
        let mut ctx = Context::default();
        assert!(compare(&e, &a(&[0xc9, 0x12]), &mut ctx).is_err());
        assert!(!ctx.captures.contains_key("$MAC_DATA"));
        compare(&e, &a(&[0xc9, 0x11]), &mut ctx).unwrap();
        assert_eq!(
            ctx.captures.get("$MAC_DATA"),
            Some(&Value::ByteString(vec![0xc9, 0x11]))
        );
    }

    #[test]
    fn enumeration_spellings_compare_equal() {
        assert!(equal(
            "HashingAlgorithm",
            &Value::Enumeration(EnumValue::Name("SHA_256".into())),
            &Value::Enumeration(EnumValue::Name("SHA256".into()))
        ));
        // A binary response carries the code.
        assert!(equal(
            "HashingAlgorithm",
            &Value::Enumeration(EnumValue::Name("SHA_256".into())),
            &Value::Enumeration(EnumValue::Code(6))
        ));
        assert!(!equal(
            "HashingAlgorithm",
            &Value::Enumeration(EnumValue::Name("SHA_256".into())),
            &Value::Enumeration(EnumValue::Code(7))
        ));
        assert!(!equal(
            "HashingAlgorithm",
            &Value::Enumeration(EnumValue::Name("SHA_256".into())),
            &Value::Enumeration(EnumValue::Name("SHA384".into()))
        ));
        // Aliases of one code: KMIP's DES3 is the Cosmian dialect's THREE_DES; not DES.
        assert!(equal(
            "CryptographicAlgorithm",
            &Value::Enumeration(EnumValue::Name("DES3".into())),
            &Value::Enumeration(EnumValue::Name("THREE_DES".into()))
        ));
        assert!(!equal(
            "CryptographicAlgorithm",
            &Value::Enumeration(EnumValue::Name("DES3".into())),
            &Value::Enumeration(EnumValue::Name("DES".into()))
        ));
    }

    #[test]
    fn query_capability_lists_are_the_servers_own() {
        let e = expected(
            r#"<ResponseMessage><ResponsePayload>
               <Operation type="Enumeration" value="Query"/>
               <Operation type="Enumeration" value="Poll"/>
               <ObjectType type="Enumeration" value="SplitKey"/>
               <ObjectType type="Enumeration" value="SymmetricKey"/>
               </ResponsePayload></ResponseMessage>"#,
        );
        let en = |tag: &str, v: &str| t(tag, Value::Enumeration(EnumValue::Name(v.into())));
        let resp = |items: Vec<Ttlv>| {
            t(
                "ResponseMessage",
                Value::Structure(vec![t("ResponsePayload", Value::Structure(items))]),
            )
        };
        let mut ctx = Context::default();
        // Poll and SplitKey are not this server's: allowed.
        compare(
            &e,
            &resp(vec![
                en("Operation", "Query"),
                en("ObjectType", "SymmetricKey"),
            ]),
            &mut ctx,
        )
        .unwrap();
        // But a Query answer without any expected object type, or a wrong type, still fails.
        assert!(compare(&e, &resp(vec![en("Operation", "Query")]), &mut ctx).is_err());
        assert!(
            compare(
                &e,
                &resp(vec![en("Operation", "Query"), en("ObjectType", "PGPKey")]),
                &mut ctx
            )
            .is_err()
        );
        let m = compare(
            &e,
            &resp(vec![
                t("Operation", Value::Integer(1)),
                en("ObjectType", "SymmetricKey"),
            ]),
            &mut ctx,
        )
        .unwrap_err();
        assert!(m.reason.contains("Integer"), "{m}");
        // Elsewhere (a Create's ObjectType) nothing is waived.
        let e = expected(
            r#"<ResponseMessage><ResponsePayload>
               <ObjectType type="Enumeration" value="SymmetricKey"/>
               </ResponsePayload></ResponseMessage>"#,
        );
        assert!(compare(&e, &resp(vec![en("ObjectType", "PrivateKey")]), &mut ctx).is_err());
    }
}
