//! AMD certificate handling: the built-in roots, PEM/DER loading, RSASSA-PSS links of the chain
//! and the VCEK/VLEK extensions.
//!
//! AMD's chain (AMD "Versioned Chip Endorsement Key (VCEK) Certificate and KDS Interface
//! Specification", publication 57230, §2.1 and Table 8): ARK (self-signed) → ASK → VCEK, or
//! ARK → ASVK → VLEK; every link is RSASSA-PSS with SHA-384, MGF1-SHA-384 and a 48-byte salt.
//! The VCEK is a P-384 key whose extensions (57230 Table 9) carry the TCB it was derived for and
//! the chip's hwID.

use alloc::vec::Vec;

use der::asn1::{Any, ObjectIdentifier};
use der::pem::LineEnding;
use der::{Decode, Encode, EncodePem};
use p384::ecdsa::VerifyingKey as P384VerifyingKey;
use rsa::pkcs1::{DecodeRsaPublicKey, RsaPssParams, TrailerField};
use rsa::signature::Verifier;
use rsa::{PublicKey, pss};
use sha2::Sha384;
use x509_cert::Certificate;
use x509_cert::spki::AlgorithmIdentifier;

use super::VerifyError;
use crate::snp::report::{Generation, TcbVersion};

/// AMD's published ARK and ASK certificates (PEM), per product, from
/// `https://kdsintf.amd.com/vcek/v1/{Milan,Genoa,Turin}/cert_chain`.
pub mod builtin {
    /// Milan ARK.
    pub const MILAN_ARK: &str = include_str!("roots/milan_ark.pem");
    /// Milan ASK.
    pub const MILAN_ASK: &str = include_str!("roots/milan_ask.pem");
    /// Genoa ARK.
    pub const GENOA_ARK: &str = include_str!("roots/genoa_ark.pem");
    /// Genoa ASK.
    pub const GENOA_ASK: &str = include_str!("roots/genoa_ask.pem");
    /// Turin ARK.
    pub const TURIN_ARK: &str = include_str!("roots/turin_ark.pem");
    /// Turin ASK.
    pub const TURIN_ASK: &str = include_str!("roots/turin_ask.pem");
}

/// The built-in (ARK, ASK) PEMs of a product.
pub fn builtin_pems(generation: Generation) -> (&'static str, &'static str) {
    match generation {
        Generation::Milan => (builtin::MILAN_ARK, builtin::MILAN_ASK),
        Generation::Genoa => (builtin::GENOA_ARK, builtin::GENOA_ASK),
        Generation::Turin => (builtin::TURIN_ARK, builtin::TURIN_ASK),
    }
}

const ALL_GENERATIONS: [Generation; 3] = [Generation::Milan, Generation::Genoa, Generation::Turin];

/// id-RSASSA-PSS (RFC 4055).
const OID_RSASSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
/// id-mgf1 (RFC 4055).
const OID_MGF1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.8");
/// id-sha384 (RFC 5758 / NIST).
const OID_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
/// id-ecPublicKey (RFC 5480).
const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// secp384r1 (RFC 5480).
const OID_SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");

/// VCEK extension OIDs (57230 Table 9).
pub mod oid {
    use der::asn1::ObjectIdentifier;
    /// productName (IA5String, e.g. "Milan-B0").
    pub const PRODUCT_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.2");
    /// blSPL.
    pub const BL_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.1");
    /// teeSPL.
    pub const TEE_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.2");
    /// snpSPL.
    pub const SNP_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.3");
    /// ucodeSPL.
    pub const UCODE_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.8");
    /// fmcSPL (Turin and later).
    pub const FMC_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.9");
    /// hwID (the chip id; 64 bytes before Turin, 8 bytes on Turin). Absent in a VLEK.
    pub const HW_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.4");
    /// cspID (VLEK only: the cloud provider).
    pub const CSP_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.5");
}

/// Parse DER strictly: the certificate must re-encode to exactly the input bytes. (A lenient
/// decoder could otherwise accept several byte strings for one certificate, e.g. a too-long
/// explicit tag, and the signature, computed over the re-encoding, would still verify.)
fn parse_der(der: &[u8], which: &'static str) -> Result<Certificate, VerifyError> {
    let cert = Certificate::from_der(der).map_err(|_| VerifyError::Certificate(which))?;
    if cert.to_der().map_err(|_| VerifyError::Certificate(which))? != der {
        return Err(VerifyError::Certificate(which));
    }
    Ok(cert)
}

/// Parse one certificate given as PEM or DER.
pub(crate) fn load_one(bytes: &[u8], which: &'static str) -> Result<Certificate, VerifyError> {
    if bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
        let mut all = load_pem_bundle(bytes)?;
        if all.len() != 1 {
            return Err(VerifyError::Certificate(which));
        }
        all.pop().ok_or(VerifyError::Certificate(which))
    } else {
        parse_der(bytes, which)
    }
}

/// Parse a PEM bundle (e.g. AMD's `cert_chain`: ASK then ARK) of `CERTIFICATE` blocks with
/// `x509_cert`'s chain loader. At least one certificate is required, and, as for DER input
/// ([`parse_der`]), the bundle must be exactly the canonical encoding of what was decoded: apart
/// from whitespace, it must equal the certificates' re-encoding as PEM.
pub(crate) fn load_pem_bundle(pem: &[u8]) -> Result<Vec<Certificate>, VerifyError> {
    let err = || VerifyError::Certificate("chain PEM");
    let certs = Certificate::load_pem_chain(pem.trim_ascii()).map_err(|_| err())?;
    if certs.is_empty() {
        return Err(err());
    }
    let mut canonical = Vec::new();
    for c in &certs {
        canonical.extend_from_slice(c.to_pem(LineEnding::LF).map_err(|_| err())?.as_bytes());
    }
    let squeeze = |b: &[u8]| -> Vec<u8> {
        b.iter()
            .filter(|c| !c.is_ascii_whitespace())
            .copied()
            .collect()
    };
    if squeeze(&canonical) != squeeze(pem) {
        return Err(err());
    }
    Ok(certs)
}

pub(crate) fn is_self_issued(c: &Certificate) -> bool {
    c.tbs_certificate().issuer() == c.tbs_certificate().subject()
}

/// Which built-in ARK `ark` is (byte-equal DER), if any.
pub(crate) fn builtin_ark_generation(ark: &Certificate) -> Result<Option<Generation>, VerifyError> {
    let der = ark.to_der().map_err(|_| VerifyError::Certificate("ARK"))?;
    for g in ALL_GENERATIONS {
        let builtin = load_one(builtin_pems(g).0.as_bytes(), "built-in ARK")?;
        if builtin
            .to_der()
            .map_err(|_| VerifyError::Certificate("built-in ARK"))?
            == der
        {
            return Ok(Some(g));
        }
    }
    Ok(None)
}

/// The RSA public key of a CA certificate (ARK, ASK, ASVK).
fn rsa_key(c: &Certificate, which: &'static str) -> Result<PublicKey, VerifyError> {
    let spki = c.tbs_certificate().subject_public_key_info();
    let bits = spki
        .subject_public_key
        .as_bytes()
        .ok_or(VerifyError::Certificate(which))?;
    PublicKey::from_pkcs1_der(bits).map_err(|_| VerifyError::Certificate(which))
}

/// Check the signature algorithm is RSASSA-PSS / SHA-384 / MGF1-SHA-384 / salt 48 / trailer 1,
/// and that the outer and to-be-signed algorithm identifiers agree (RFC 5280 §4.1.1.2).
fn check_pss_sha384(c: &Certificate, which: &'static str) -> Result<(), VerifyError> {
    check_pss_alg(
        c.signature_algorithm(),
        c.tbs_certificate().signature(),
        which,
    )
}

/// [`check_pss_sha384`] on an outer and a to-be-signed algorithm identifier (certificate or CRL).
fn check_pss_alg(
    outer: &AlgorithmIdentifier<Any>,
    inner: &AlgorithmIdentifier<Any>,
    which: &'static str,
) -> Result<(), VerifyError> {
    if outer != inner {
        return Err(VerifyError::Certificate(which));
    }
    if outer.oid != OID_RSASSA_PSS {
        return Err(VerifyError::UnsupportedAlgorithm(which));
    }
    let params_der = outer
        .parameters
        .as_ref()
        .ok_or(VerifyError::UnsupportedAlgorithm(which))?;
    let params_der = params_der
        .to_der()
        .map_err(|_| VerifyError::Certificate(which))?;
    let params: RsaPssParams<Any> = RsaPssParams::from_der(&params_der)
        .map_err(|_| VerifyError::UnsupportedAlgorithm(which))?;
    if !hash_ok(&params.hash)
        || params.mask_gen.oid != OID_MGF1
        || !params.mask_gen.parameters.as_ref().is_some_and(hash_ok)
        || params.salt_len != 48
        || params.trailer_field != TrailerField::BC
    {
        return Err(VerifyError::UnsupportedAlgorithm(which));
    }
    Ok(())
}

fn hash_ok(a: &AlgorithmIdentifier<Any>) -> bool {
    a.oid == OID_SHA384 && a.parameters.as_ref().is_none_or(|p| p.is_null())
}

/// Check that `now` (seconds since the Unix epoch, the verifier's clock) lies within the
/// certificate's validity period (RFC 5280 §4.1.2.5: notBefore and notAfter inclusive).
pub(crate) fn check_validity(
    c: &Certificate,
    now: u64,
    which: &'static str,
) -> Result<(), VerifyError> {
    let v = c.tbs_certificate().validity();
    let not_before = v.not_before.to_unix_duration().as_secs();
    let not_after = v.not_after.to_unix_duration().as_secs();
    if now < not_before || now > not_after {
        return Err(VerifyError::CertificateNotValidAt {
            which,
            now,
            not_before,
            not_after,
        });
    }
    Ok(())
}

/// An AMD CRL (RFC 5280 §5, as served by AMD's KDS at `/vcek/v1/{product}/crl`): DER or PEM
/// (`X509 CRL`), signed by the ARK with RSASSA-PSS SHA-384 like the certificates, not stale at
/// `now`. Returns the revoked serial numbers (DER INTEGER contents).
pub(crate) fn crl_revoked_serials(
    crl: &[u8],
    ark: &Certificate,
    now: u64,
) -> Result<Vec<Vec<u8>>, VerifyError> {
    use x509_cert::crl::CertificateList;
    let bad = VerifyError::Crl("the CRL does not parse (DER or PEM X509 CRL)");
    let list = if crl.trim_ascii_start().starts_with(b"-----BEGIN") {
        <CertificateList as der::DecodePem>::from_pem(crl.trim_ascii()).map_err(|_| bad.clone())?
    } else {
        let l = CertificateList::from_der(crl).map_err(|_| bad.clone())?;
        if l.to_der().map_err(|_| bad.clone())? != crl {
            return Err(bad);
        }
        l
    };
    let tbs = &list.tbs_cert_list;
    if tbs.issuer != *ark.tbs_certificate().subject() {
        return Err(VerifyError::Crl("the CRL is not issued by the ARK"));
    }
    check_pss_alg(&list.signature_algorithm, &tbs.signature, "CRL")
        .map_err(|_| VerifyError::Crl("the CRL is not signed with RSASSA-PSS SHA-384"))?;
    let key = rsa_key(ark, "ARK")?;
    let tbs_der = tbs
        .to_der()
        .map_err(|_| VerifyError::Crl("the CRL does not encode"))?;
    let sig = list
        .signature
        .as_bytes()
        .and_then(|b| pss::Signature::try_from(b).ok())
        .ok_or(VerifyError::Crl(
            "the CRL signature does not verify with the ARK",
        ))?;
    pss::VerifyingKey::<Sha384>::new(key)
        .verify(&tbs_der, &sig)
        .map_err(|_| VerifyError::Crl("the CRL signature does not verify with the ARK"))?;
    let this_update = tbs.this_update.to_unix_duration().as_secs();
    let next_update = tbs.next_update.map(|t| t.to_unix_duration().as_secs());
    if now < this_update || next_update.is_some_and(|n| now > n) {
        return Err(VerifyError::CrlNotCurrent {
            now,
            this_update,
            next_update,
        });
    }
    Ok(tbs
        .revoked_certificates
        .iter()
        .flatten()
        .map(|r| r.serial_number.as_bytes().to_vec())
        .collect())
}

/// The serial number (DER INTEGER contents) of a certificate.
pub(crate) fn serial(c: &Certificate) -> &[u8] {
    c.tbs_certificate().serial_number().as_bytes()
}

/// Verify that `issuer` signed `subject` (RSASSA-PSS SHA-384) and that the names chain.
pub(crate) fn verify_rsa_link(
    issuer: &Certificate,
    subject: &Certificate,
    which: &'static str,
) -> Result<(), VerifyError> {
    if subject.tbs_certificate().issuer() != issuer.tbs_certificate().subject() {
        return Err(VerifyError::NameChain(which));
    }
    check_pss_sha384(subject, which)?;
    let key = rsa_key(issuer, which)?;
    let tbs = subject
        .tbs_certificate()
        .to_der()
        .map_err(|_| VerifyError::Certificate(which))?;
    let sig_bytes = subject
        .signature()
        .as_bytes()
        .ok_or(VerifyError::Certificate(which))?;
    let sig =
        pss::Signature::try_from(sig_bytes).map_err(|_| VerifyError::ChainSignature(which))?;
    pss::VerifyingKey::<Sha384>::new(key)
        .verify(&tbs, &sig)
        .map_err(|_| VerifyError::ChainSignature(which))
}

/// The P-384 ECDSA key of a VCEK/VLEK.
pub(crate) fn p384_key(c: &Certificate) -> Result<P384VerifyingKey, VerifyError> {
    let spki = c.tbs_certificate().subject_public_key_info();
    if spki.algorithm.oid != OID_EC_PUBLIC_KEY {
        return Err(VerifyError::UnsupportedAlgorithm("VCEK key"));
    }
    let curve: Option<ObjectIdentifier> = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
    if curve != Some(OID_SECP384R1) {
        return Err(VerifyError::UnsupportedAlgorithm("VCEK key"));
    }
    let bits = spki
        .subject_public_key
        .as_bytes()
        .ok_or(VerifyError::Certificate("VCEK"))?;
    P384VerifyingKey::from_sec1_bytes(bits).map_err(|_| VerifyError::Certificate("VCEK"))
}

/// The raw value (extnValue contents) of an extension, if present exactly once.
pub(crate) fn extension<'c>(
    c: &'c Certificate,
    id: &ObjectIdentifier,
) -> Result<Option<&'c [u8]>, VerifyError> {
    let mut found = None;
    for e in c
        .tbs_certificate()
        .extensions()
        .map(|v| v.as_slice())
        .unwrap_or(&[])
    {
        if e.extn_id == *id {
            if found.is_some() {
                return Err(VerifyError::Certificate("duplicate extension"));
            }
            found = Some(e.extn_value.as_bytes());
        }
    }
    Ok(found)
}

/// A small DER INTEGER extension value (an SPL) as u8.
fn spl(
    c: &Certificate,
    id: &ObjectIdentifier,
    name: &'static str,
) -> Result<Option<u8>, VerifyError> {
    let Some(v) = extension(c, id)? else {
        return Ok(None);
    };
    let n = u32::from_der(v).map_err(|_| VerifyError::Certificate(name))?;
    u8::try_from(n)
        .map(Some)
        .map_err(|_| VerifyError::Certificate(name))
}

/// The TCB a VCEK/VLEK was issued for (57230 Table 9). `fmc` is required from Turin on.
pub(crate) fn cert_tcb(c: &Certificate, generation: Generation) -> Result<TcbVersion, VerifyError> {
    let req = |id, name| spl(c, id, name)?.ok_or(VerifyError::MissingExtension(name));
    let fmc = match generation {
        Generation::Turin => req(&oid::FMC_SPL, "fmcSPL")?,
        _ => spl(c, &oid::FMC_SPL, "fmcSPL")?.unwrap_or(0),
    };
    Ok(TcbVersion {
        fmc,
        bootloader: req(&oid::BL_SPL, "blSPL")?,
        tee: req(&oid::TEE_SPL, "teeSPL")?,
        snp: req(&oid::SNP_SPL, "snpSPL")?,
        microcode: req(&oid::UCODE_SPL, "ucodeSPL")?,
    })
}

/// The product named by the VCEK's productName extension ("Milan-B0", "Genoa", "Turin", ...).
pub(crate) fn cert_generation(c: &Certificate) -> Result<Option<Generation>, VerifyError> {
    let Some(v) = extension(c, &oid::PRODUCT_NAME)? else {
        return Ok(None);
    };
    let name = der::asn1::Ia5StringRef::from_der(v)
        .map_err(|_| VerifyError::Certificate("productName"))?;
    let base = name.as_str().split('-').next().unwrap_or("");
    Ok(base.parse().ok())
}
