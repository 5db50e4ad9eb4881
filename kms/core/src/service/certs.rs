//! X.509 certificates as KMIP objects (KMIP 2.1 §2.2.1 Certificate): the attributes the server
//! derives from a registered certificate, and which of them are read-only.
//!
//! A certificate is stored as its DER `CertificateValue` (the object's material) and travels
//! as `Certificate { CertificateType X_509, CertificateValue }`. On Register the server parses
//! it (`x509-cert`, no signature check: registering a certificate says nothing about trusting
//! it) and sets `CertificateType`, `CertificateLength` (§4.8, the DER length), the subject and
//! issuer name parts (§4.7 `CertificateSubjectCN`, `CertificateIssuerO`, ...), and the KMIP 1.x
//! `X509CertificateSubject` / `X509CertificateIssuer` / `X509CertificateIdentifier` structures
//! (DER distinguished names, serial number), so that Locate finds a certificate by any of them
//! (equality). These attributes are the server's: a client may not set or change them.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use der::{Decode, Encode};
use x509_cert::Certificate;
use x509_cert::name::Name;

use super::{KResult, kerr};
use crate::kmip::ttlv::Ttlv;
use crate::kmip::types::{Attributes, CertificateType, ResultReason};

/// Name parts mapped to KMIP 2.1 §4.7 attribute suffixes (`CertificateSubject<suffix>`,
/// `CertificateIssuer<suffix>`), by X.520 / RFC 4519 OID.
const NAME_PARTS: &[(&str, &str)] = &[
    ("2.5.4.3", "CN"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("1.2.840.113549.1.9.1", "Email"),
    ("2.5.4.6", "C"),
    ("2.5.4.8", "ST"),
    ("2.5.4.7", "L"),
    ("0.9.2342.19200300.100.1.1", "UID"),
    ("2.5.4.5", "SerialNumber"),
    ("2.5.4.12", "Title"),
    ("0.9.2342.19200300.100.1.25", "DC"),
    ("2.5.4.46", "DNQualifier"),
];

/// Attributes the server derives from the certificate and never lets a client edit.
const DERIVED: &[&str] = &[
    "CertificateType",
    "CertificateLength",
    "X509CertificateSubject",
    "X509CertificateIssuer",
    "X509CertificateIdentifier",
];

/// Whether `tag` is a certificate attribute the server maintains (read-only, KMIP 2.1 §4.7,
/// §4.8, §4.9).
pub(super) fn read_only(tag: &str) -> bool {
    DERIVED.contains(&tag)
        || ["CertificateSubject", "CertificateIssuer"].iter().any(|p| {
            tag.strip_prefix(p)
                .is_some_and(|s| NAME_PARTS.iter().any(|(_, n)| *n == s))
        })
}

/// The string value of a directory string attribute (UTF8String, PrintableString, IA5String:
/// the encodings RFC 5280 §4.1.2.4 asks for), `None` for anything else.
fn text(v: &der::Any) -> Option<String> {
    v.decode_as::<der::asn1::Utf8StringRef<'_>>()
        .map(|s| String::from(s.as_str()))
        .or_else(|_| {
            v.decode_as::<der::asn1::PrintableStringRef<'_>>()
                .map(|s| String::from(s.as_str()))
        })
        .or_else(|_| {
            v.decode_as::<der::asn1::Ia5StringRef<'_>>()
                .map(|s| String::from(s.as_str()))
        })
        .ok()
}

/// `CertificateSubject<part>` / `CertificateIssuer<part>` items for each name part we know,
/// in the order of the name.
fn name_parts(prefix: &str, name: &Name, out: &mut Vec<Ttlv>) {
    for rdn in name.as_ref().iter() {
        for atv in rdn.as_ref().iter() {
            let oid = atv.oid.to_string();
            let Some((_, part)) = NAME_PARTS.iter().find(|(o, _)| *o == oid) else {
                continue;
            };
            if let Some(t) = text(&atv.value) {
                out.push(Ttlv::text(&alloc::format!("{prefix}{part}"), &t));
            }
        }
    }
}

fn bad_certificate() -> super::KmsError {
    kerr(
        ResultReason::InvalidField,
        "CertificateValue is not a DER X.509 certificate",
    )
}

/// The attributes of a DER certificate (see the module documentation).
pub(super) fn derived_attributes(der_cert: &[u8]) -> KResult<Vec<Ttlv>> {
    let cert = Certificate::from_der(der_cert).map_err(|_| bad_certificate())?;
    let tbs = cert.tbs_certificate();
    let subject = tbs.subject().to_der().map_err(|_| bad_certificate())?;
    let issuer = tbs.issuer().to_der().map_err(|_| bad_certificate())?;
    let serial = tbs.serial_number().as_bytes();
    let mut v = alloc::vec![
        CertificateType::X509.to_ttlv(),
        Ttlv::int(
            "CertificateLength",
            i32::try_from(der_cert.len()).map_err(|_| bad_certificate())?,
        ),
        Ttlv::structure(
            "X509CertificateSubject",
            alloc::vec![Ttlv::bytes("SubjectDistinguishedName", &subject)],
        ),
        Ttlv::structure(
            "X509CertificateIssuer",
            alloc::vec![Ttlv::bytes("IssuerDistinguishedName", &issuer)],
        ),
        Ttlv::structure(
            "X509CertificateIdentifier",
            alloc::vec![
                Ttlv::bytes("IssuerDistinguishedName", &issuer),
                Ttlv::bytes("CertificateSerialNumber", serial),
            ],
        ),
    ];
    name_parts("CertificateSubject", tbs.subject(), &mut v);
    name_parts("CertificateIssuer", tbs.issuer(), &mut v);
    Ok(v)
}

/// Register of a certificate: check the value and the requested type, then replace whatever
/// certificate attributes the client sent with the derived ones.
pub(super) fn absorb_registered(attrs: &mut Attributes, der_cert: &[u8]) -> KResult<()> {
    if let Some(t) = attrs.other.iter().find(|x| x.tag == CertificateType::TAG)
        && CertificateType::parse(t)? != CertificateType::X509
    {
        return Err(kerr(
            ResultReason::InvalidField,
            "only X.509 certificates are supported",
        ));
    }
    let derived = derived_attributes(der_cert)?;
    attrs.other.retain(|x| !read_only(&x.tag));
    attrs.other.extend(derived);
    attrs.cryptographic_algorithm = None;
    attrs.cryptographic_length = None;
    attrs.recommended_curve = None;
    attrs.key_format_type = None;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert() -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "kms test");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Example");
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x01, 0x02, 0x03]));
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn derives_subject_issuer_serial_length() {
        let der_cert = cert();
        let v = derived_attributes(&der_cert).unwrap();
        let find = |t: &str| v.iter().find(|x| x.tag == t).cloned();
        assert_eq!(
            find("CertificateLength"),
            Some(Ttlv::int(
                "CertificateLength",
                i32::try_from(der_cert.len()).unwrap()
            ))
        );
        assert_eq!(
            find("CertificateSubjectCN"),
            Some(Ttlv::text("CertificateSubjectCN", "kms test"))
        );
        assert_eq!(
            find("CertificateIssuerO"),
            Some(Ttlv::text("CertificateIssuerO", "Example"))
        );
        let id = find("X509CertificateIdentifier").unwrap();
        assert_eq!(
            id.get("CertificateSerialNumber"),
            Some(&Ttlv::bytes("CertificateSerialNumber", &[1, 2, 3]))
        );
        assert!(find("CertificateSubjectOU").is_none());
    }

    #[test]
    fn garbage_and_wrong_type_are_refused() {
        let mut a = Attributes::default();
        let e = absorb_registered(&mut a, b"\x30\x03\x02\x01\x01").unwrap_err();
        assert!(e.to_string().contains("not a DER X.509"), "{e}");
        let mut a = Attributes::default();
        a.other.push(CertificateType::PGP.to_ttlv());
        let e = absorb_registered(&mut a, &cert()).unwrap_err();
        assert!(e.to_string().contains("only X.509"), "{e}");
        // A client-sent CertificateLength is replaced by the real one.
        let mut a = Attributes::default();
        a.other.push(Ttlv::int("CertificateLength", 1));
        let c = cert();
        absorb_registered(&mut a, &c).unwrap();
        let lens: Vec<_> = a
            .other
            .iter()
            .filter(|x| x.tag == "CertificateLength")
            .collect();
        assert_eq!(lens.len(), 1);
        assert_eq!(
            lens[0],
            &Ttlv::int("CertificateLength", i32::try_from(c.len()).unwrap())
        );
    }

    #[test]
    fn read_only_names() {
        assert!(read_only("CertificateLength"));
        assert!(read_only("CertificateSubjectCN"));
        assert!(read_only("CertificateIssuerDNQualifier"));
        assert!(!read_only("CertificateSubjectXY"));
        assert!(!read_only("Name"));
    }
}
