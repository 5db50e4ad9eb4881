//! `ckms certificates ...`: X.509 certificates as KMIP objects (Register, Get, Certify).

use std::path::PathBuf;

use clap::{Args, Subcommand};
use std::str::FromStr;

use kms::kmip::types::{
    CertificateRequestType, KeyFormatType, Link, LinkType, ObjectType, VENDOR_COSMIAN,
    VendorAttribute,
};
use serde_json::json;

use super::sym::get;
use super::{Ctx, Output, bad_field, response_uid};
use crate::error::{CliError, read_file, write_file};
use crate::kmip::{Attributes, KeyBlock, Ttlv, uid_or_tags};

/// `ckms certificates`.
#[derive(Subcommand, Debug)]
pub enum CertCommand {
    /// Import (Register) an X.509 certificate from a PEM or DER file; prints its id.
    #[command(
        long_about = "Register an X.509 certificate in the KMS and print its id.\n\n\
The file holds one certificate, PEM (`-----BEGIN CERTIFICATE-----`) or DER. The KMS parses it\n\
(it does not verify it) and derives read-only attributes from it: CertificateSubjectCN,\n\
CertificateIssuerCN, ..., CertificateLength, X509CertificateIdentifier (issuer + serial);\n\
`ckms locate` finds certificates by them.\n\n\
Examples:\n  ckms certificates import server.pem\n  \
ckms certificates import ca.der --tag root-ca"
    )]
    Import(ImportArgs),
    /// Export a certificate to a file, as PEM (default) or DER.
    #[command(long_about = "Export a certificate held by the KMS to a file.\n\n\
Examples:\n  ckms certificates export --certificate-id 3f2a... server.pem\n  \
ckms certificates export --tag root-ca --der ca.der")]
    Export(ExportArgs),
    /// Issue an X.509 certificate signed by a CA key held in the KMS; prints the new id.
    #[command(
        long_about = "Issue an X.509 v3 certificate with the KMS (KMIP Certify) and print \
the id of the new certificate object (export it with `ckms certificates export`).\n\n\
What is certified, one of:\n  \
--csr FILE            the public key of a PKCS#10 certificate signing request (PEM or DER);\n                        \
the KMS verifies the request's signature and keeps its subject and\n                        \
subjectAltName (other requested extensions are ignored)\n  \
--public-key-id UID   a public key held in the KMS (needs --subject)\n\n\
The issuer: --issuer-private-key-id names the CA private key (you need the `sign` right on it,\n\
and its usage mask must allow Sign); --issuer-certificate-id names the CA certificate, whose\n\
subject becomes the issuer name. Either one is enough when the KMS links them (a certificate\n\
issued or imported for a KMS key is linked to it). With a CA key and no CA certificate, the\n\
certificate is self-signed: that works only for the CA key's own public key (a new root CA,\n\
marked CA:true).\n\n\
The certificate gets a random 16-byte serial number, a validity of --days (default 365)\n\
from now, subject/authority key identifiers, and a signature by the CA key: ECDSA P-256 with\n\
SHA-256, P-384 with SHA-384, Ed25519, or RSA PKCS#1 v1.5 with SHA-256. The KMS links the new\n\
certificate with its public key (and private key) when you own them.\n\n\
Examples:\n  \
# a root CA: certify the CA key pair's own public key\n  \
ckms ec keys create --curve p256 --tag ca\n  \
ckms certificates certify --public-key-id <ca public id> --issuer-private-key-id <ca private id> \\\n      \
--subject \"CN=Example Root CA,O=Example\" --days 3650\n  \
# a server certificate from a CSR made elsewhere (openssl req -new ...)\n  \
ckms certificates certify --csr server.csr --issuer-certificate-id <ca certificate id> --days 90"
    )]
    Certify(CertifyArgs),
}

/// `certificates certify` options.
#[derive(Args, Debug)]
pub struct CertifyArgs {
    /// PKCS#10 certificate signing request file (PEM or DER).
    #[arg(
        long,
        conflicts_with = "public_key_id",
        required_unless_present = "public_key_id"
    )]
    pub csr: Option<PathBuf>,
    /// Certify this public key held in the KMS instead of a CSR (needs --subject).
    #[arg(long = "public-key-id", short = 'p')]
    pub public_key_id: Option<String>,
    /// The CA private key that signs the certificate.
    #[arg(long = "issuer-private-key-id", short = 'k')]
    pub issuer_private_key_id: Option<String>,
    /// The CA certificate (its subject is the issuer name).
    #[arg(long = "issuer-certificate-id", short = 'i')]
    pub issuer_certificate_id: Option<String>,
    /// Subject distinguished name, RFC 4514 (`CN=host.example,O=Example,C=FR`); overrides the
    /// CSR's subject. Known attributes: CN, O, OU, C, ST, L, DC, UID, emailAddress,
    /// serialNumber, title, dnQualifier.
    #[arg(long, short = 's')]
    pub subject: Option<String>,
    /// Validity in days from now (default 365).
    #[arg(long, short = 'd')]
    pub days: Option<u32>,
    /// Tag to attach to the new certificate (repeatable).
    #[arg(long = "tag", short = 't')]
    pub tags: Vec<String>,
}

/// `certificates import` options.
#[derive(Args, Debug)]
pub struct ImportArgs {
    /// PEM or DER certificate file.
    pub file: PathBuf,
    /// Tag to attach (repeatable).
    #[arg(long = "tag", short = 't')]
    pub tags: Vec<String>,
}

/// `certificates export` options.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Certificate unique identifier.
    #[arg(long = "certificate-id", short = 'c', visible_alias = "id")]
    pub id: Option<String>,
    /// Select the certificate by tag instead (repeatable: all tags must match).
    #[arg(long = "tag", short = 't')]
    pub tags: Vec<String>,
    /// Output file.
    pub file: PathBuf,
    /// Write DER instead of PEM.
    #[arg(long)]
    pub der: bool,
}

/// Run `ckms certificates ...`.
pub fn run(ctx: &Ctx, cmd: CertCommand) -> Result<Output, CliError> {
    match cmd {
        CertCommand::Import(a) => import(ctx, &a),
        CertCommand::Export(a) => export(ctx, &a),
        CertCommand::Certify(a) => certify(ctx, &a),
    }
}

/// The DER of the one certificate in `bytes` (PEM or DER).
fn certificate_der(bytes: &[u8]) -> Result<Vec<u8>, CliError> {
    if bytes.starts_with(b"-----BEGIN") || bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        let mut chain = kms::x509::pem_chain_der(bytes)
            .map_err(|e| CliError::Usage(format!("not a PEM certificate: {e}")))?;
        if chain.len() != 1 {
            return Err(CliError::Usage(format!(
                "the file holds {} certificates: import one at a time",
                chain.len()
            )));
        }
        return Ok(chain.remove(0));
    }
    kms::x509::parse(bytes)
        .map_err(|e| CliError::Usage(format!("not a DER or PEM X.509 certificate: {e}")))?;
    Ok(bytes.to_vec())
}

fn import(ctx: &Ctx, a: &ImportArgs) -> Result<Output, CliError> {
    let der = certificate_der(&read_file(&a.file)?)?;
    let attrs = Attributes {
        tags: a.tags.clone(),
        ..Attributes::default()
    };
    let request = Ttlv::structure(
        "Register",
        vec![
            ObjectType::Certificate.to_ttlv(),
            attrs.to_ttlv("Attributes"),
            Ttlv::structure(
                "Certificate",
                vec![
                    kms::kmip::types::CertificateType::X509.to_ttlv(),
                    Ttlv::bytes("CertificateValue", &der),
                ],
            ),
        ],
    );
    let response = ctx.client()?.kmip(&request)?;
    let uid = response_uid(&response, "RegisterResponse")?;
    Ok(Output::new(
        format!("imported certificate {uid}"),
        json!({"unique_identifier": uid}),
    ))
}

fn export(ctx: &Ctx, a: &ExportArgs) -> Result<Output, CliError> {
    let uid = uid_or_tags(a.id.as_deref(), &a.tags).map_err(|e| CliError::Usage(e.to_string()))?;
    let response = get(ctx, &uid, Some(KeyFormatType::X509))?;
    let got = response_uid(&response, "GetResponse")?;
    if response.get("Certificate").is_none() {
        return Err(CliError::Usage(format!("{got} is not a certificate")));
    }
    let cert = KeyBlock::parse_object(&response).map_err(|e| bad_field("GetResponse", e))?;
    if a.der {
        write_file(&a.file, &cert.material)?;
    } else {
        let pem = kms::x509::cert_pem(&cert.material)
            .map_err(|e| CliError::Response(format!("GetResponse: {e}")))?;
        write_file(&a.file, pem.as_bytes())?;
    }
    Ok(Output::new(
        format!("exported {got} to {}", a.file.display()),
        json!({"unique_identifier": got, "file": a.file}),
    ))
}

/// RFC 4514 attribute types and the KMIP `CertificateSubject<suffix>` attributes they become.
const SUBJECT_PARTS: &[(&str, &str)] = &[
    ("2.5.4.3", "CN"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("2.5.4.6", "C"),
    ("2.5.4.8", "ST"),
    ("2.5.4.7", "L"),
    ("0.9.2342.19200300.100.1.25", "DC"),
    ("0.9.2342.19200300.100.1.1", "UID"),
    ("1.2.840.113549.1.9.1", "Email"),
    ("2.5.4.5", "SerialNumber"),
    ("2.5.4.12", "Title"),
    ("2.5.4.46", "DNQualifier"),
];

/// `CertificateSubject<part>` attributes of an RFC 4514 subject.
fn subject_attributes(subject: &str) -> Result<Vec<Ttlv>, CliError> {
    let name = x509_cert::name::Name::from_str(subject).map_err(|_| {
        CliError::Usage(format!(
            "--subject `{subject}` is not a distinguished name like \"CN=host.example,O=Example\""
        ))
    })?;
    let mut out = Vec::new();
    for rdn in name.as_ref().iter() {
        for atv in rdn.as_ref().iter() {
            let oid = atv.oid.to_string();
            let part = SUBJECT_PARTS
                .iter()
                .find(|(o, _)| *o == oid)
                .map(|(_, p)| *p)
                .ok_or_else(|| {
                    CliError::Usage(format!("--subject: attribute {oid} is not supported"))
                })?;
            let value = atv
                .value
                .decode_as::<der::asn1::Utf8StringRef<'_>>()
                .map(|s| s.as_str().to_string())
                .or_else(|_| {
                    atv.value
                        .decode_as::<der::asn1::PrintableStringRef<'_>>()
                        .map(|s| s.as_str().to_string())
                })
                .or_else(|_| {
                    atv.value
                        .decode_as::<der::asn1::Ia5StringRef<'_>>()
                        .map(|s| s.as_str().to_string())
                })
                .map_err(|_| CliError::Usage(format!("--subject: {oid} is not text")))?;
            out.push(Ttlv::text(&format!("CertificateSubject{part}"), &value));
        }
    }
    if out.is_empty() {
        return Err(CliError::Usage("--subject is empty".into()));
    }
    Ok(out)
}

fn certify(ctx: &Ctx, a: &CertifyArgs) -> Result<Output, CliError> {
    let mut links = Vec::new();
    if let Some(k) = &a.issuer_private_key_id {
        links.push(Link {
            link_type: LinkType::PrivateKeyLink,
            uid: k.clone(),
        });
    }
    if let Some(c) = &a.issuer_certificate_id {
        links.push(Link {
            link_type: LinkType::CertificateLink,
            uid: c.clone(),
        });
    }
    if links.is_empty() {
        return Err(CliError::Usage(
            "name the issuer: --issuer-private-key-id and/or --issuer-certificate-id".into(),
        ));
    }
    if a.public_key_id.is_some() && a.subject.is_none() {
        return Err(CliError::Usage(
            "--public-key-id needs --subject (the certificate's subject name)".into(),
        ));
    }
    let mut attrs = Attributes {
        tags: a.tags.clone(),
        links,
        ..Attributes::default()
    };
    if let Some(d) = a.days {
        attrs.vendor_attributes.push(VendorAttribute {
            vendor: VENDOR_COSMIAN.into(),
            name: "requested_validity_days".into(),
            value: Ttlv::text("AttributeValue", &d.to_string()),
        });
    }
    if let Some(s) = &a.subject {
        attrs.other.extend(subject_attributes(s)?);
    }
    let mut v = Vec::new();
    match (&a.csr, &a.public_key_id) {
        (Some(f), _) => {
            v.push(CertificateRequestType::PKCS10.to_ttlv());
            v.push(Ttlv::bytes("CertificateRequestValue", &read_file(f)?));
        }
        (None, Some(uid)) => v.push(Ttlv::text("UniqueIdentifier", uid)),
        (None, None) => {
            return Err(CliError::Usage(
                "give --csr FILE or --public-key-id UID".into(),
            ));
        }
    }
    v.push(attrs.to_ttlv("Attributes"));
    let response = ctx.client()?.kmip(&Ttlv::structure("Certify", v))?;
    let uid = response_uid(&response, "CertifyResponse")?;
    Ok(Output::new(
        format!("issued certificate {uid}"),
        json!({"unique_identifier": uid}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_becomes_certificate_subject_attributes() {
        let v =
            subject_attributes("CN=host.example,O=Example\\, Inc,C=FR,emailAddress=a@b.example")
                .unwrap();
        let got: Vec<(String, String)> = v
            .iter()
            .map(|t| (t.tag.clone(), t.as_text("x").unwrap().to_string()))
            .collect();
        let want = [
            ("CertificateSubjectEmail", "a@b.example"),
            ("CertificateSubjectC", "FR"),
            ("CertificateSubjectO", "Example, Inc"),
            ("CertificateSubjectCN", "host.example"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        let mut g = got.clone();
        g.sort();
        let mut w = want.clone();
        w.sort();
        assert_eq!(g, w);
        assert!(matches!(
            subject_attributes("not a name"),
            Err(CliError::Usage(_))
        ));
        // An attribute type KMIP has no CertificateSubject attribute for.
        let e = subject_attributes("street=Main Street").unwrap_err();
        assert!(e.to_string().contains("not supported"), "{e}");
    }
}
