//! `tdx-emu`: an emulated TDX module and quoting enclave for tests on machines without TDX.
//!
//! - [`Chain`]: a deterministic test PCK chain (root CA → intermediate → PCK, ECDSA P-256 with
//!   SHA-256, keys derived from a seed string), the shape of Intel's SGX/TDX PCK chain.
//! - [`Emulator::td_report`]: a TDREPORT_STRUCT (`attest::tdx::report` layout) with the MRTD,
//!   RTMRs, attributes and REPORTDATA it is given.
//! - [`Emulator::quote`]: a DCAP quote v4 over that report: header, TD quote body, ECDSA
//!   signature by an attestation key that the QE report certifies (QE report_data = SHA-256
//!   of the attestation key ‖ QE authentication data), the QE report signed by the PCK key, and
//!   the PEM chain — as DCAP's quoting enclave lays it out.
//!
//! **Nothing it produces is evidence of anything**: the keys come from a public seed. The
//! quotes pass `attest::tdx::local::verify_quote_signatures` with the emulator's root given
//! explicitly; they do not pass `dcap-qvl` (no TCB info, QE identity or CRLs are signed by the
//! test chain, and the PCK carries no SGX extensions; see docs/tdx-emu.md).

use der::asn1::{BitString, OctetString, UtcTime};
use der::{Encode, Sequence, oid::ObjectIdentifier};
use p256::ecdsa::{Signature, SigningKey, signature::Signer};
use sha2::{Digest, Sha256};
use spki::{AlgorithmIdentifierOwned, EncodePublicKey, SubjectPublicKeyInfoOwned};
use std::time::Duration;
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::BasicConstraints;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};

use attest::tdx::quote::{ATT_KEY_ECDSA_P256, QUOTE_VERSION_4, TEE_TYPE_TDX};

/// The default seed of the test chain.
pub const DEFAULT_SEED: &str = "tdx-emu test chain v1";
/// Intel's QE vendor id (939a7233-f79c-4ca9-940a-0db3957f0607), as DCAP quotes carry it.
pub const QE_VENDOR_ID: [u8; 16] = [
    0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07,
];
/// ecdsa-with-SHA256 (RFC 5758).
const ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");

/// Errors building the chain.
#[derive(Debug)]
pub enum EmuError {
    /// DER encoding failed.
    Der(der::Error),
    /// A key could not be derived or encoded.
    Key,
}

impl std::fmt::Display for EmuError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Der(e) => write!(f, "DER: {e}"),
            Self::Key => f.write_str("key derivation failed"),
        }
    }
}

impl std::error::Error for EmuError {}

impl From<der::Error> for EmuError {
    fn from(e: der::Error) -> Self {
        Self::Der(e)
    }
}

#[derive(Sequence)]
struct Tbs {
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT")]
    version: u8,
    serial: SerialNumber,
    signature: AlgorithmIdentifierOwned,
    issuer: Name,
    validity: Validity,
    subject: Name,
    spki: SubjectPublicKeyInfoOwned,
    #[asn1(context_specific = "3", tag_mode = "EXPLICIT")]
    extensions: Vec<Extension>,
}

#[derive(Sequence)]
struct Cert {
    tbs: Tbs,
    algorithm: AlgorithmIdentifierOwned,
    signature: BitString,
}

fn key(seed: &str, label: &str) -> Result<SigningKey, EmuError> {
    let d = Sha256::digest(format!("{seed}\0{label}").as_bytes());
    SigningKey::from_slice(&d).map_err(|_| EmuError::Key)
}

fn cert(
    serial: u8,
    issuer: &str,
    subject: &str,
    subject_key: &SigningKey,
    issuer_key: &SigningKey,
    ca: bool,
) -> Result<Vec<u8>, EmuError> {
    let alg = AlgorithmIdentifierOwned {
        oid: ECDSA_SHA256,
        parameters: None,
    };
    let name = |cn: &str| -> Result<Name, EmuError> {
        format!("CN={cn},O=tdx-emu test chain (not Intel),C=US")
            .parse::<Name>()
            .map_err(EmuError::Der)
    };
    let nb = UtcTime::from_unix_duration(Duration::from_secs(1_735_689_600))?;
    let na = UtcTime::from_unix_duration(Duration::from_secs(2_524_521_600))?;
    let mut extensions = Vec::new();
    if ca {
        extensions.push(Extension {
            extn_id: der::oid::db::rfc5280::ID_CE_BASIC_CONSTRAINTS,
            critical: true,
            extn_value: OctetString::new(
                BasicConstraints {
                    ca: true,
                    path_len_constraint: None,
                }
                .to_der()?,
            )?,
        });
    }
    let spki_der = subject_key
        .verifying_key()
        .to_public_key_der()
        .map_err(|_| EmuError::Key)?;
    let tbs = Tbs {
        version: 2,
        serial: SerialNumber::new(&[serial])?,
        signature: alg.clone(),
        issuer: name(issuer)?,
        validity: Validity::new(Time::UtcTime(nb), Time::UtcTime(na)),
        subject: name(subject)?,
        spki: der::Decode::from_der(spki_der.as_bytes())?,
        extensions,
    };
    let sig: Signature = issuer_key.sign(&tbs.to_der()?);
    Ok(Cert {
        tbs,
        algorithm: alg,
        signature: BitString::from_bytes(&sig.to_der().to_bytes())?,
    }
    .to_der()?)
}

/// The test PCK chain and the quoting enclave's attestation key.
pub struct Chain {
    /// Root CA certificate (DER): the trust root to give a verifier.
    pub root_der: Vec<u8>,
    /// Intermediate (platform CA) certificate (DER).
    pub intermediate_der: Vec<u8>,
    /// PCK certificate (DER).
    pub pck_der: Vec<u8>,
    pck_key: SigningKey,
    attestation_key: SigningKey,
}

impl Chain {
    /// Derives the whole chain from `seed` (deterministic: RFC 6979 signatures).
    pub fn generate(seed: &str) -> Result<Self, EmuError> {
        let root = key(seed, "root")?;
        let inter = key(seed, "intermediate")?;
        let pck = key(seed, "pck")?;
        Ok(Self {
            root_der: cert(1, "tdx-emu root CA", "tdx-emu root CA", &root, &root, true)?,
            intermediate_der: cert(
                2,
                "tdx-emu root CA",
                "tdx-emu platform CA",
                &inter,
                &root,
                true,
            )?,
            pck_der: cert(3, "tdx-emu platform CA", "tdx-emu PCK", &pck, &inter, false)?,
            pck_key: pck,
            attestation_key: key(seed, "attestation key")?,
        })
    }

    /// PCK ‖ intermediate ‖ root as PEM (the certification data of type 5).
    pub fn pem_chain(&self) -> Result<String, EmuError> {
        let mut s = String::new();
        for d in [&self.pck_der, &self.intermediate_der, &self.root_der] {
            let p = der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, d)
                .map_err(|_| EmuError::Key)?;
            s.push_str(&p);
        }
        Ok(s)
    }
}

/// What the emulated TD reports.
#[derive(Debug, Clone)]
pub struct TdMeasurements {
    /// MRTD.
    pub mr_td: [u8; 48],
    /// RTMR0..3.
    pub rtmr: [[u8; 48]; 4],
    /// TD ATTRIBUTES (little-endian u64; 0x1000_0000 = SEPT_VE_DISABLE).
    pub attributes: u64,
    /// TEE_TCB_SVN.
    pub tee_tcb_svn: [u8; 16],
}

/// The emulated TDX module + quoting enclave.
pub struct Emulator {
    chain: Chain,
    td: TdMeasurements,
}

impl Emulator {
    /// An emulator with `chain` reporting `td`.
    pub fn new(chain: Chain, td: TdMeasurements) -> Self {
        Self { chain, td }
    }

    /// The chain.
    pub fn chain(&self) -> &Chain {
        &self.chain
    }

    /// TDG.MR.REPORT: a TDREPORT_STRUCT for `report_data` (the MAC is zero: nothing local
    /// checks it, the quote is what is verified).
    pub fn td_report(&self, report_data: &[u8; 64]) -> [u8; 1024] {
        let mut r = [0u8; 1024];
        r[0] = 0x81; // REPORTTYPE: TDX
        r[128..192].copy_from_slice(report_data);
        r[256 + 8..256 + 24].copy_from_slice(&self.td.tee_tcb_svn);
        let ti = 512;
        r[ti..ti + 8].copy_from_slice(&self.td.attributes.to_le_bytes());
        r[ti + 8..ti + 16].copy_from_slice(&0xE7u64.to_le_bytes()); // XFAM
        r[ti + 16..ti + 64].copy_from_slice(&self.td.mr_td);
        for (i, m) in self.td.rtmr.iter().enumerate() {
            let o = ti + 208 + 48 * i;
            r[o..o + 48].copy_from_slice(m);
        }
        r
    }

    /// The quoting enclave: a quote v4 over a TDREPORT made by [`Emulator::td_report`].
    pub fn quote(&self, td_report: &[u8; 1024]) -> Result<Vec<u8>, EmuError> {
        let mut q = Vec::with_capacity(5000);
        // Header (48 bytes).
        q.extend_from_slice(&QUOTE_VERSION_4.to_le_bytes());
        q.extend_from_slice(&ATT_KEY_ECDSA_P256.to_le_bytes());
        q.extend_from_slice(&TEE_TYPE_TDX.to_le_bytes());
        q.extend_from_slice(&[0; 4]);
        q.extend_from_slice(&QE_VENDOR_ID);
        q.extend_from_slice(&[0; 20]);
        // TD quote body (584 bytes) from the TDREPORT.
        let ti = &td_report[512..];
        q.extend_from_slice(&td_report[256 + 8..256 + 24]); // tee_tcb_svn
        q.extend_from_slice(&td_report[256 + 24..256 + 72]); // mr_seam
        q.extend_from_slice(&td_report[256 + 72..256 + 120]); // mr_signer_seam
        q.extend_from_slice(&td_report[256 + 120..256 + 128]); // seam attributes
        q.extend_from_slice(&ti[0..8]); // td attributes
        q.extend_from_slice(&ti[8..16]); // xfam
        q.extend_from_slice(&ti[16..16 + 48 * 4]); // mr_td, mr_config_id, mr_owner, mr_owner_config
        q.extend_from_slice(&ti[208..208 + 48 * 4]); // rtmr0..3
        q.extend_from_slice(&td_report[128..192]); // report_data
        debug_assert_eq!(q.len(), 48 + 584);
        let quote_sig: Signature = self.chain.attestation_key.sign(&q);
        let att_pub = self
            .chain
            .attestation_key
            .verifying_key()
            .to_sec1_point(false);
        let att_xy = &att_pub.as_bytes()[1..];
        // QE report: an SGX report body whose report_data binds the attestation key.
        let auth_data = b"tdx-emu QE authentication data";
        let mut qe_report = [0u8; 384];
        let mut h = Sha256::new();
        h.update(att_xy);
        h.update(auth_data);
        qe_report[320..352].copy_from_slice(&h.finalize());
        let qe_sig: Signature = self.chain.pck_key.sign(&qe_report);
        let pem = self.chain.pem_chain()?;
        let mut cert = Vec::new();
        cert.extend_from_slice(&qe_report);
        cert.extend_from_slice(&qe_sig.to_bytes());
        cert.extend_from_slice(&(auth_data.len() as u16).to_le_bytes());
        cert.extend_from_slice(auth_data);
        cert.extend_from_slice(&5u16.to_le_bytes());
        cert.extend_from_slice(&(pem.len() as u32).to_le_bytes());
        cert.extend_from_slice(pem.as_bytes());
        let mut sig_data = Vec::new();
        sig_data.extend_from_slice(&quote_sig.to_bytes());
        sig_data.extend_from_slice(att_xy);
        sig_data.extend_from_slice(&6u16.to_le_bytes());
        sig_data.extend_from_slice(&(cert.len() as u32).to_le_bytes());
        sig_data.extend_from_slice(&cert);
        q.extend_from_slice(&(sig_data.len() as u32).to_le_bytes());
        q.extend_from_slice(&sig_data);
        Ok(q)
    }
}
