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
//! - [`proto`] and [`server`]: the framed protocol `tdx-emu serve` speaks on a unix socket
//!   (GetQuote: TDREPORT in, quote v4 out; see docs/tdx-emu.md).
//!
//! **Nothing it produces is evidence of anything**: the keys come from a public seed. The
//! quotes pass `attest::tdx::local::verify_quote_signatures` with the emulator's root given
//! explicitly; they do not pass `dcap-qvl` (no TCB info, QE identity or CRLs are signed by the
//! test chain, and the PCK carries no SGX extensions; see docs/tdx-emu.md).

pub mod proto;
pub mod server;

use der::asn1::{BitString, OctetString, UtcTime};
use der::{Encode, Sequence, oid::ObjectIdentifier};
use hmac::{Hmac, KeyInit, Mac};
use p256::ecdsa::{Signature, SigningKey, signature::Signer};
use sha2::{Digest, Sha256, Sha384};
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
    /// A TDREPORT given to the quoting enclave is not one this TDX module made (its MAC does
    /// not verify, or it is not a TDX report): the QE's local report check.
    ReportMac,
}

impl std::fmt::Display for EmuError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Der(e) => write!(f, "DER: {e}"),
            Self::Key => f.write_str("key derivation failed"),
            Self::ReportMac => f.write_str("TDREPORT MAC does not verify"),
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
    report_mac_key: [u8; 32],
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
            report_mac_key: Sha256::digest(format!("{seed}\0report MAC key").as_bytes()).into(),
        })
    }

    /// The private keys as PKCS#8 PEM: `(name, pem)` for root, intermediate, pck and
    /// attestation (the root and intermediate keys are re-derived from `seed`).
    pub fn key_pems_for(seed: &str) -> Result<Vec<(&'static str, String)>, EmuError> {
        use p256::pkcs8::EncodePrivateKey;
        let mut out = Vec::new();
        for (name, label) in [
            ("root", "root"),
            ("intermediate", "intermediate"),
            ("pck", "pck"),
            ("attestation", "attestation key"),
        ] {
            let pem = key(seed, label)?
                .to_pkcs8_pem(p256::pkcs8::LineEnding::LF)
                .map_err(|_| EmuError::Key)?;
            out.push((name, pem.to_string()));
        }
        Ok(out)
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

/// `ATTRIBUTES.DEBUG` (bit 0): the TD is debuggable, so its evidence means nothing.
pub const ATTR_DEBUG: u64 = 1 << 0;
/// `ATTRIBUTES.SEPT_VE_DISABLE` (bit 28): EPT violations on pending pages do not become #VE.
pub const ATTR_SEPT_VE_DISABLE: u64 = 1 << 28;

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
    /// MRCONFIGID (zero unless the VMM sets one).
    pub mr_config_id: [u8; 48],
    /// MROWNER.
    pub mr_owner: [u8; 48],
    /// MROWNERCONFIG.
    pub mr_owner_config: [u8; 48],
}

impl Default for TdMeasurements {
    /// All zero, with `SEPT_VE_DISABLE` set and DEBUG clear (what a production TD has).
    fn default() -> Self {
        Self {
            mr_td: [0; 48],
            rtmr: [[0; 48]; 4],
            attributes: ATTR_SEPT_VE_DISABLE,
            tee_tcb_svn: [0; 16],
            mr_config_id: [0; 48],
            mr_owner: [0; 48],
            mr_owner_config: [0; 48],
        }
    }
}

/// Byte ranges of a TDREPORT_STRUCT (`attest::tdx::report`): REPORTMACSTRUCT, TEE_TCB_INFO,
/// TDINFO, and the MAC inside REPORTMACSTRUCT.
const MAC_COVERED: core::ops::Range<usize> = 0..224;
const MAC: core::ops::Range<usize> = 224..256;
const TEE_TCB_INFO: core::ops::Range<usize> = 256..495;
const TD_INFO: core::ops::Range<usize> = 512..1024;

/// The emulated TDX module + quoting enclave.
pub struct Emulator {
    chain: Chain,
    td: TdMeasurements,
    event_log: Option<Vec<u8>>,
}

impl Emulator {
    /// An emulator with `chain` reporting `td`, without an event log.
    pub fn new(chain: Chain, td: TdMeasurements) -> Self {
        Self {
            chain,
            td,
            event_log: None,
        }
    }

    /// Also serve `log` as the TD's CC event log (`EVENT_LOG`). The caller makes it agree with
    /// the RTMRs (`attest::tdx::eventlog::direct_boot_log` of the same kernel and command line).
    pub fn with_event_log(mut self, log: Vec<u8>) -> Self {
        self.event_log = Some(log);
        self
    }

    /// The event log served, if any.
    pub fn event_log(&self) -> Option<&[u8]> {
        self.event_log.as_deref()
    }

    /// The chain.
    pub fn chain(&self) -> &Chain {
        &self.chain
    }

    /// What the TD reports.
    pub fn measurements(&self) -> &TdMeasurements {
        &self.td
    }

    /// TDG.MR.REPORT: a TDREPORT_STRUCT for `report_data`. As in the TDX module, the
    /// REPORTMACSTRUCT carries SHA-384 of TEE_TCB_INFO and of TDINFO, and a MAC over itself
    /// under a key only this module (and its quoting enclave) knows — here HMAC-SHA-256 with a
    /// key derived from the seed — so the QE quotes only reports made by this module.
    pub fn td_report(&self, report_data: &[u8; 64]) -> Result<[u8; 1024], EmuError> {
        let mut r = [0u8; 1024];
        r[0] = 0x81; // REPORTTYPE: TDX
        r[128..192].copy_from_slice(report_data);
        r[256..264].copy_from_slice(&u64::MAX.to_le_bytes()); // TEE_TCB_INFO.VALID
        r[256 + 8..256 + 24].copy_from_slice(&self.td.tee_tcb_svn);
        let ti = 512;
        r[ti..ti + 8].copy_from_slice(&self.td.attributes.to_le_bytes());
        r[ti + 8..ti + 16].copy_from_slice(&0xE7u64.to_le_bytes()); // XFAM
        r[ti + 16..ti + 64].copy_from_slice(&self.td.mr_td);
        r[ti + 64..ti + 112].copy_from_slice(&self.td.mr_config_id);
        r[ti + 112..ti + 160].copy_from_slice(&self.td.mr_owner);
        r[ti + 160..ti + 208].copy_from_slice(&self.td.mr_owner_config);
        for (i, m) in self.td.rtmr.iter().enumerate() {
            let o = ti + 208 + 48 * i;
            r[o..o + 48].copy_from_slice(m);
        }
        let tcb_hash = Sha384::digest(&r[TEE_TCB_INFO]);
        r[32..80].copy_from_slice(&tcb_hash);
        let info_hash = Sha384::digest(&r[TD_INFO]);
        r[80..128].copy_from_slice(&info_hash);
        let mac = self.report_mac(&r)?;
        r[MAC].copy_from_slice(&mac);
        Ok(r)
    }

    fn report_mac(&self, r: &[u8; 1024]) -> Result<[u8; 32], EmuError> {
        let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.chain.report_mac_key)
            .map_err(|_| EmuError::Key)?;
        m.update(&r[MAC_COVERED]);
        Ok(m.finalize().into_bytes().into())
    }

    /// The quoting enclave's local check of a TDREPORT (EVERIFYREPORT2 on hardware): type TDX,
    /// the two hashes match TEE_TCB_INFO and TDINFO, the MAC verifies.
    pub fn check_report(&self, r: &[u8; 1024]) -> Result<(), EmuError> {
        let mac = self.report_mac(r)?;
        let ok = r[0] == 0x81
            && r[32..80] == Sha384::digest(&r[TEE_TCB_INFO])[..]
            && r[80..128] == Sha384::digest(&r[TD_INFO])[..]
            && bool::from(subtle::ConstantTimeEq::ct_eq(&r[MAC], &mac[..]));
        if ok { Ok(()) } else { Err(EmuError::ReportMac) }
    }

    /// The quoting enclave: a quote v4 over a TDREPORT made by [`Emulator::td_report`] (any
    /// other TDREPORT is refused with [`EmuError::ReportMac`]).
    pub fn quote(&self, td_report: &[u8; 1024]) -> Result<Vec<u8>, EmuError> {
        self.check_report(td_report)?;
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
