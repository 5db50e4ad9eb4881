//! The emulator's test key chain: ARK → ASK → VCEK with AMD's algorithms.
//!
//! - ARK: RSA-4096, self-signed, RSASSA-PSS with SHA-384 / MGF1-SHA-384 / salt 48 (RFC 4055).
//! - ASK: RSA-4096, signed by the ARK the same way.
//! - VCEK: ECDSA P-384, signed by the ASK, carrying AMD's VCEK extensions (AMD "Versioned Chip
//!   Endorsement Key (VCEK) Certificate and KDS Interface Specification", #57230):
//!   `1.3.6.1.4.1.3704.1.1` structVersion, `.1.2` productName, `.1.3.1` blSPL, `.1.3.2` teeSPL,
//!   `.1.3.3` snpSPL, `.1.3.4`–`.1.3.7` spl_4..spl_7, `.1.3.8` ucodeSPL (each a DER INTEGER inside
//!   the extnValue) and `.1.4` hwID (the raw 64-byte chip id as the extnValue).
//!
//! Generating two RSA-4096 keys takes a while, so the chain is generated once
//! ([`generate`], `snp-emu gen-chain --seed`) from a seeded ChaCha20 RNG and the result is kept
//! as fixtures in `fixtures/` that are compiled into the binary ([`Chain::builtin`]).
//! The ARK and ASK private keys are kept too (`fixtures/ark_key.pem`, `ask_key.pem`; they are
//! derivable from the public seed anyway): [`TestCa`] uses them in tests to issue a VCEK for
//! another TCB and to sign CRLs.

use std::{fmt, fs, path::Path, time::Duration};

use der::{
    Decode, DecodePem, Encode, EncodePem, Sequence,
    asn1::{BitString, Ia5String, ObjectIdentifier, OctetString, Uint, UtcTime},
    pem::LineEnding,
};
use p384::{
    ecdsa::{SigningKey as VcekKey, VerifyingKey as VcekPub},
    pkcs8::{DecodePrivateKey, EncodePrivateKey},
};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use rsa::{
    pss::{Signature as PssSignature, SigningKey as PssSigningKey},
    sha2::Sha384,
    signature::{RandomizedSigner, SignatureEncoding},
};
use sha2::{Digest, Sha256};
use spki::{
    AlgorithmIdentifierOwned, DynSignatureAlgorithmIdentifier, EncodePublicKey,
    SubjectPublicKeyInfoOwned,
};
use x509_cert::{
    Certificate,
    ext::{
        Extension,
        pkix::{BasicConstraints, KeyUsage, KeyUsages},
    },
    name::Name,
    time::{Time, Validity},
};

/// Seed the committed fixtures were generated with (`snp-emu gen-chain --seed snp-emu-test-chain-v1`).
pub const DEFAULT_SEED: &str = "snp-emu-test-chain-v1";

const FIXTURE_ARK: &str = include_str!("../fixtures/ark.pem");
const FIXTURE_ASK: &str = include_str!("../fixtures/ask.pem");
const FIXTURE_VCEK: &[u8] = include_bytes!("../fixtures/vcek.der");
const FIXTURE_VCEK_KEY: &str = include_str!("../fixtures/vcek_key.pem");
const FIXTURE_ARK_KEY: &str = include_str!("../fixtures/ark_key.pem");
const FIXTURE_ASK_KEY: &str = include_str!("../fixtures/ask_key.pem");

/// AMD VCEK extension OIDs (KDS interface spec #57230, "VCEK certificate extensions").
pub mod oid {
    use der::asn1::ObjectIdentifier;
    /// structVersion.
    pub const STRUCT_VERSION: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.1");
    /// productName (IA5String, e.g. `Milan-B0`).
    pub const PRODUCT_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.2");
    /// Boot loader security patch level.
    pub const BL_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.1");
    /// TEE (PSP OS) security patch level.
    pub const TEE_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.2");
    /// SNP firmware security patch level.
    pub const SNP_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.3");
    /// Reserved SPL 4.
    pub const SPL_4: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.4");
    /// Reserved SPL 5.
    pub const SPL_5: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.5");
    /// Reserved SPL 6.
    pub const SPL_6: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.6");
    /// Reserved SPL 7.
    pub const SPL_7: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.7");
    /// Microcode security patch level.
    pub const UCODE_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.8");
    /// hwID: the chip id (64 bytes), equal to the report's CHIP_ID.
    pub const HW_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.4");
}

/// A TCB version as laid out for Milan and Genoa (SEV-SNP ABI spec #56860, "TCB_VERSION"):
/// byte 0 boot loader, byte 1 TEE, bytes 2..6 reserved, byte 6 SNP, byte 7 microcode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tcb {
    /// Boot loader SPL.
    pub bootloader: u8,
    /// TEE SPL.
    pub tee: u8,
    /// SNP firmware SPL.
    pub snp: u8,
    /// Microcode SPL.
    pub microcode: u8,
}

impl Tcb {
    /// The TCB the test VCEK is issued for.
    pub const TEST: Tcb = Tcb {
        bootloader: 4,
        tee: 0,
        snp: 22,
        microcode: 213,
    };

    /// The 64-bit TCB_VERSION value.
    pub fn to_u64(self) -> u64 {
        u64::from_le_bytes([
            self.bootloader,
            self.tee,
            0,
            0,
            0,
            0,
            self.snp,
            self.microcode,
        ])
    }

    /// Decodes a 64-bit TCB_VERSION value (reserved bytes ignored).
    pub fn from_u64(v: u64) -> Tcb {
        let b = v.to_le_bytes();
        Tcb {
            bootloader: b[0],
            tee: b[1],
            snp: b[6],
            microcode: b[7],
        }
    }
}

/// Errors of chain generation, loading and export.
#[derive(Debug)]
pub enum ChainError {
    /// ASN.1 encoding or decoding failed.
    Der(der::Error),
    /// RSA key generation or signing failed.
    Rsa(rsa::Error),
    /// A signature operation failed.
    Signature,
    /// The VCEK private key does not match the VCEK certificate, or the certificate lacks an
    /// extension the emulator needs.
    Inconsistent(&'static str),
    /// Reading or writing a file failed.
    Io(std::io::Error),
}

impl fmt::Display for ChainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChainError::Der(e) => write!(f, "ASN.1 error: {e}"),
            ChainError::Rsa(e) => write!(f, "RSA error: {e}"),
            ChainError::Signature => f.write_str("signing failed"),
            ChainError::Inconsistent(what) => write!(f, "inconsistent chain: {what}"),
            ChainError::Io(e) => write!(f, "I/O error: {e}"),
        }
    }
}

impl core::error::Error for ChainError {}

impl From<der::Error> for ChainError {
    fn from(e: der::Error) -> Self {
        ChainError::Der(e)
    }
}
impl From<spki::Error> for ChainError {
    fn from(_: spki::Error) -> Self {
        ChainError::Inconsistent("public key encoding")
    }
}
impl From<rsa::Error> for ChainError {
    fn from(e: rsa::Error) -> Self {
        ChainError::Rsa(e)
    }
}
impl From<std::io::Error> for ChainError {
    fn from(e: std::io::Error) -> Self {
        ChainError::Io(e)
    }
}

/// The chain the emulator signs with.
pub struct Chain {
    /// ARK certificate, DER.
    pub ark_der: Vec<u8>,
    /// ASK certificate, DER.
    pub ask_der: Vec<u8>,
    /// VCEK certificate, DER.
    pub vcek_der: Vec<u8>,
    /// The VCEK private key (zeroized on drop by `p384`).
    vcek_key: VcekKey,
    /// CHIP_ID = the VCEK's hwID extension.
    pub chip_id: [u8; 64],
    /// The TCB the VCEK was issued for (reported_tcb of every report).
    pub tcb: Tcb,
}

impl fmt::Debug for Chain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chain")
            .field("chip_id", &hex::encode(self.chip_id))
            .field("tcb", &self.tcb)
            .finish_non_exhaustive()
    }
}

// RFC 5280 TBSCertificate / Certificate, written out so that the encoding (extension order,
// serial numbers, names) is fully under our control, like AMD's certificates.
#[derive(Sequence)]
struct Tbs {
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT")]
    version: u8,
    serial: Uint,
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

fn name(cn: &str) -> Result<Name, ChainError> {
    // RFC 4514 strings list the last RDN first: this encodes OU, C, L, ST, O, CN like AMD's.
    let s =
        format!("CN={cn},O=snp-emu test chain (not AMD),ST=CA,L=Santa Clara,C=US,OU=Engineering");
    s.parse::<Name>().map_err(ChainError::Der)
}

fn validity() -> Result<Validity, ChainError> {
    // Fixed dates keep the fixtures reproducible: 2025-01-01 .. 2049-12-31 (UTCTime range).
    let nb = UtcTime::from_unix_duration(Duration::from_secs(1_735_689_600))?;
    let na = UtcTime::from_unix_duration(Duration::from_secs(2_524_521_600))?;
    Ok(Validity::new(Time::UtcTime(nb), Time::UtcTime(na)))
}

fn ext_der<T: Encode>(
    id: ObjectIdentifier,
    critical: bool,
    value: &T,
) -> Result<Extension, ChainError> {
    Ok(Extension {
        extn_id: id,
        critical,
        extn_value: OctetString::new(value.to_der()?)?,
    })
}

/// A non-negative DER INTEGER (`Uint` adds the leading zero byte values >= 0x80 need).
fn serial(v: u32) -> Result<Uint, ChainError> {
    Ok(Uint::new(&v.to_be_bytes())?)
}

fn sign_pss(
    tbs: Tbs,
    key: &PssSigningKey<Sha384>,
    rng: &mut ChaCha20Rng,
) -> Result<Vec<u8>, ChainError> {
    let algorithm = tbs.signature.clone();
    let msg = tbs.to_der()?;
    let sig: PssSignature = key
        .try_sign_with_rng(rng, &msg)
        .map_err(|_| ChainError::Signature)?;
    let cert = Cert {
        tbs,
        algorithm,
        signature: BitString::from_bytes(&sig.to_bytes())?,
    };
    Ok(cert.to_der()?)
}

/// Generates the whole chain deterministically from `seed` (slow: two RSA-4096 keys).
pub fn generate(seed: &str, tcb: Tcb) -> Result<(Chain, String), ChainError> {
    generate_with_ca_keys(seed, tcb).map(|(chain, vcek_key_pem, _)| (chain, vcek_key_pem))
}

/// [`generate`], also returning the ARK and ASK private keys as PKCS#8 PEM (ARK, ASK).
pub fn generate_with_ca_keys(
    seed: &str,
    tcb: Tcb,
) -> Result<(Chain, String, (String, String)), ChainError> {
    let mut rng_seed = [0u8; 32];
    rng_seed.copy_from_slice(&Sha256::digest(
        format!("snp-emu chain seed\0{seed}").as_bytes(),
    ));
    let mut rng = ChaCha20Rng::from_seed(rng_seed);

    let ark_priv = rsa::PrivateKey::new(&mut rng, 4096)?;
    let ask_priv = rsa::PrivateKey::new(&mut rng, 4096)?;
    let vcek_key = <VcekKey as rsa::Generate>::generate_from_rng(&mut rng);
    let mut chip_id = [0u8; 64];
    rand_core::Rng::fill_bytes(&mut rng, &mut chip_id);

    let ark_signer = PssSigningKey::<Sha384>::new_with_salt_len(ark_priv.clone(), 48);
    let ask_signer = PssSigningKey::<Sha384>::new_with_salt_len(ask_priv.clone(), 48);
    let pss_alg = ark_signer.signature_algorithm_identifier()?;

    let ca_ku = KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign);
    // ARK: self-signed root.
    let ark_tbs = Tbs {
        version: 2,
        serial: serial(0x10000)?,
        signature: pss_alg.clone(),
        issuer: name("ARK-Milan")?,
        validity: validity()?,
        subject: name("ARK-Milan")?,
        spki: SubjectPublicKeyInfoOwned::from_key(&ark_priv.to_public_key())?,
        extensions: vec![
            ext_der(der::oid::db::rfc5280::ID_CE_KEY_USAGE, true, &ca_ku)?,
            ext_der(
                der::oid::db::rfc5280::ID_CE_BASIC_CONSTRAINTS,
                true,
                &BasicConstraints {
                    ca: true,
                    path_len_constraint: None,
                },
            )?,
        ],
    };
    let ark_der = sign_pss(ark_tbs, &ark_signer, &mut rng)?;

    // ASK: intermediate, signed by the ARK.
    let ask_tbs = Tbs {
        version: 2,
        serial: serial(0x10001)?,
        signature: pss_alg.clone(),
        issuer: name("ARK-Milan")?,
        validity: validity()?,
        subject: name("SEV-Milan")?,
        spki: SubjectPublicKeyInfoOwned::from_key(&ask_priv.to_public_key())?,
        extensions: vec![
            ext_der(
                der::oid::db::rfc5280::ID_CE_BASIC_CONSTRAINTS,
                true,
                &BasicConstraints {
                    ca: true,
                    path_len_constraint: Some(0),
                },
            )?,
            ext_der(
                der::oid::db::rfc5280::ID_CE_KEY_USAGE,
                true,
                &KeyUsage(KeyUsages::KeyCertSign.into()),
            )?,
        ],
    };
    let ask_der = sign_pss(ask_tbs, &ark_signer, &mut rng)?;

    let vcek_tbs = vcek_tbs(pss_alg, &vcek_key, &chip_id, tcb)?;
    let vcek_der = sign_pss(vcek_tbs, &ask_signer, &mut rng)?;
    let key_pem = vcek_key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|_| ChainError::Signature)?;
    let ca_pem = |k: &rsa::PrivateKey| -> Result<String, ChainError> {
        Ok(k.to_pkcs8_pem(LineEnding::LF)
            .map_err(|_| ChainError::Signature)?
            .to_string())
    };
    let ca_keys = (ca_pem(&ark_priv)?, ca_pem(&ask_priv)?);
    let chain = Chain {
        ark_der,
        ask_der,
        vcek_der,
        vcek_key,
        chip_id,
        tcb,
    };
    Ok((chain, key_pem.to_string(), ca_keys))
}

/// The VCEK's to-be-signed certificate: a leaf signed by the ASK, with AMD's extensions in AMD's
/// order, for `tcb`.
fn vcek_tbs(
    pss_alg: AlgorithmIdentifierOwned,
    vcek_key: &VcekKey,
    chip_id: &[u8; 64],
    tcb: Tcb,
) -> Result<Tbs, ChainError> {
    let int = |v: u8| -> Result<Uint, ChainError> { serial(u32::from(v)) };
    Ok(Tbs {
        version: 2,
        serial: serial(0)?,
        signature: pss_alg,
        issuer: name("SEV-Milan")?,
        validity: validity()?,
        subject: name("SEV-VCEK")?,
        spki: SubjectPublicKeyInfoOwned::from_key(vcek_key.verifying_key())?,
        extensions: vec![
            ext_der(oid::STRUCT_VERSION, false, &int(0)?)?,
            ext_der(oid::PRODUCT_NAME, false, &Ia5String::new("Milan-B0")?)?,
            ext_der(oid::BL_SPL, false, &int(tcb.bootloader)?)?,
            ext_der(oid::TEE_SPL, false, &int(tcb.tee)?)?,
            ext_der(oid::SPL_4, false, &int(0)?)?,
            ext_der(oid::SPL_5, false, &int(0)?)?,
            ext_der(oid::SPL_6, false, &int(0)?)?,
            ext_der(oid::SPL_7, false, &int(0)?)?,
            ext_der(oid::SNP_SPL, false, &int(tcb.snp)?)?,
            ext_der(oid::UCODE_SPL, false, &int(tcb.microcode)?)?,
            Extension {
                extn_id: oid::HW_ID,
                critical: false,
                extn_value: OctetString::new(chip_id.as_slice())?,
            },
        ],
    })
}

fn u8_ext(cert: &Certificate, id: ObjectIdentifier) -> Result<u8, ChainError> {
    let ext = find_ext(cert, id)?;
    let v = u32::from_der(ext.extn_value.as_bytes())?;
    u8::try_from(v).map_err(|_| ChainError::Inconsistent("SPL extension out of range"))
}

fn find_ext(cert: &Certificate, id: ObjectIdentifier) -> Result<&Extension, ChainError> {
    cert.tbs_certificate()
        .extensions()
        .and_then(|exts| exts.iter().find(|e| e.extn_id == id))
        .ok_or(ChainError::Inconsistent("VCEK extension missing"))
}

impl Chain {
    /// The committed fixture chain compiled into the binary.
    pub fn builtin() -> Result<Chain, ChainError> {
        let ark = Certificate::from_pem(FIXTURE_ARK)?;
        let ask = Certificate::from_pem(FIXTURE_ASK)?;
        Chain::from_parts(
            ark.to_der()?,
            ask.to_der()?,
            FIXTURE_VCEK.to_vec(),
            FIXTURE_VCEK_KEY,
        )
    }

    /// Loads a chain from a directory written by `snp-emu gen-chain` (ark.pem, ask.pem,
    /// vcek.der, vcek_key.pem).
    pub fn load_dir(dir: &Path) -> Result<Chain, ChainError> {
        let ark = Certificate::from_pem(fs::read(dir.join("ark.pem"))?)?;
        let ask = Certificate::from_pem(fs::read(dir.join("ask.pem"))?)?;
        let vcek = fs::read(dir.join("vcek.der"))?;
        let key = fs::read_to_string(dir.join("vcek_key.pem"))?;
        Chain::from_parts(ark.to_der()?, ask.to_der()?, vcek, &key)
    }

    fn from_parts(
        ark_der: Vec<u8>,
        ask_der: Vec<u8>,
        vcek_der: Vec<u8>,
        key_pem: &str,
    ) -> Result<Chain, ChainError> {
        let vcek_key = VcekKey::from_pkcs8_pem(key_pem)
            .map_err(|_| ChainError::Inconsistent("VCEK key PEM"))?;
        let cert = Certificate::from_der(&vcek_der)?;
        let cert_pub = cert.tbs_certificate().subject_public_key_info().to_der()?;
        let key_pub = vcek_key.verifying_key().to_public_key_der()?;
        if cert_pub != key_pub.as_bytes() {
            return Err(ChainError::Inconsistent(
                "VCEK key does not match the VCEK certificate",
            ));
        }
        let hw = find_ext(&cert, oid::HW_ID)?;
        let chip_id: [u8; 64] = hw
            .extn_value
            .as_bytes()
            .try_into()
            .map_err(|_| ChainError::Inconsistent("hwID is not 64 bytes"))?;
        let tcb = Tcb {
            bootloader: u8_ext(&cert, oid::BL_SPL)?,
            tee: u8_ext(&cert, oid::TEE_SPL)?,
            snp: u8_ext(&cert, oid::SNP_SPL)?,
            microcode: u8_ext(&cert, oid::UCODE_SPL)?,
        };
        Ok(Chain {
            ark_der,
            ask_der,
            vcek_der,
            vcek_key,
            chip_id,
            tcb,
        })
    }

    /// The VCEK signing key.
    pub fn vcek_key(&self) -> &VcekKey {
        &self.vcek_key
    }

    /// The VCEK public key.
    pub fn vcek_public(&self) -> &VcekPub {
        self.vcek_key.verifying_key()
    }

    /// PEM of a DER certificate.
    fn pem(der: &[u8]) -> Result<String, ChainError> {
        Ok(Certificate::from_der(der)?.to_pem(LineEnding::LF)?)
    }

    /// Writes ark.pem, ask.pem, vcek.der, vcek.pem and cert_chain (ASK then ARK, PEM, like
    /// AMD's `cert_chain` download) into `dir`.
    pub fn export(&self, dir: &Path) -> Result<(), ChainError> {
        fs::create_dir_all(dir)?;
        let ark = Self::pem(&self.ark_der)?;
        let ask = Self::pem(&self.ask_der)?;
        fs::write(dir.join("ark.pem"), &ark)?;
        fs::write(dir.join("ask.pem"), &ask)?;
        fs::write(dir.join("vcek.der"), &self.vcek_der)?;
        fs::write(dir.join("vcek.pem"), Self::pem(&self.vcek_der)?)?;
        fs::write(dir.join("cert_chain"), format!("{ask}{ark}"))?;
        Ok(())
    }

    /// Writes the fixture set (export plus the VCEK private key) into `dir`.
    pub fn write_fixtures(&self, dir: &Path, vcek_key_pem: &str) -> Result<(), ChainError> {
        self.export(dir)?;
        fs::write(dir.join("vcek_key.pem"), vcek_key_pem)?;
        Ok(())
    }

    /// A chip-unique secret for key derivation (KEY_REQ), derived from the VCEK private key
    /// the way the real VCEK and the derived keys both come from the chip's secrets.
    pub fn derive_root_secret(&self) -> zeroize::Zeroizing<[u8; 32]> {
        let mut out = zeroize::Zeroizing::new([0u8; 32]);
        let ikm = zeroize::Zeroizing::new(self.vcek_key.to_bytes());
        let hk = hkdf::Hkdf::<Sha256>::new(Some(b"snp-emu root secret v1"), &ikm);
        // 32 bytes is far below HKDF-SHA-256's 255*32 limit: expand cannot fail.
        if hk.expand(b"vcek", out.as_mut_slice()).is_err() {
            unreachable!("HKDF-SHA-256 expand of 32 bytes");
        }
        out
    }
}

/// The test chain's ARK and ASK private keys (tests only: they let a test issue a VCEK for another
/// TCB, as AMD's KDS does for each TCB, and sign an AMD-style CRL).
pub struct TestCa {
    ark: PssSigningKey<Sha384>,
    ask: PssSigningKey<Sha384>,
}

impl fmt::Debug for TestCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TestCa")
    }
}

impl TestCa {
    /// The keys of the built-in fixture chain ([`Chain::builtin`]).
    pub fn builtin() -> Result<TestCa, ChainError> {
        let key = |pem: &str| -> Result<PssSigningKey<Sha384>, ChainError> {
            let k = rsa::PrivateKey::from_pkcs8_pem(pem)
                .map_err(|_| ChainError::Inconsistent("CA key PEM"))?;
            Ok(PssSigningKey::<Sha384>::new_with_salt_len(k, 48))
        };
        Ok(TestCa {
            ark: key(FIXTURE_ARK_KEY)?,
            ask: key(FIXTURE_ASK_KEY)?,
        })
    }

    fn rng() -> ChaCha20Rng {
        ChaCha20Rng::from_seed(*b"snp-emu TestCa signatures rng v1")
    }

    /// `chain` with its VCEK reissued for `tcb` (same key and chip id): the reports it then signs
    /// carry `tcb` as REPORTED_TCB, like a platform whose firmware or microcode is at `tcb`.
    pub fn with_tcb(&self, chain: &Chain, tcb: Tcb) -> Result<Chain, ChainError> {
        let alg = self.ask.signature_algorithm_identifier()?;
        let tbs = vcek_tbs(alg, &chain.vcek_key, &chain.chip_id, tcb)?;
        let vcek_der = sign_pss(tbs, &self.ask, &mut Self::rng())?;
        Ok(Chain {
            ark_der: chain.ark_der.clone(),
            ask_der: chain.ask_der.clone(),
            vcek_der,
            vcek_key: chain.vcek_key.clone(),
            chip_id: chain.chip_id,
            tcb,
        })
    }

    /// An AMD-style CRL (RFC 5280 §5, DER), issued and signed by the ARK with RSASSA-PSS SHA-384,
    /// revoking the certificates with these serial numbers (big-endian bytes), valid from
    /// `this_update` to `next_update` (seconds since the Unix epoch).
    pub fn crl(
        &self,
        revoked: &[&[u8]],
        this_update: u64,
        next_update: u64,
    ) -> Result<Vec<u8>, ChainError> {
        use x509_cert::crl::{CertificateList, RevokedCert, TbsCertList};
        use x509_cert::serial_number::SerialNumber;
        let t = |s: u64| -> Result<Time, ChainError> {
            Ok(Time::UtcTime(UtcTime::from_unix_duration(
                Duration::from_secs(s),
            )?))
        };
        let entries = revoked
            .iter()
            .map(|s| {
                Ok(RevokedCert {
                    serial_number: SerialNumber::<x509_cert::certificate::Rfc5280>::new(s)?,
                    revocation_date: t(this_update)?,
                    crl_entry_extensions: None,
                })
            })
            .collect::<Result<Vec<_>, ChainError>>()?;
        let alg = self.ark.signature_algorithm_identifier()?;
        let tbs = TbsCertList {
            version: x509_cert::Version::V2,
            signature: alg.clone(),
            issuer: name("ARK-Milan")?,
            this_update: t(this_update)?,
            next_update: Some(t(next_update)?),
            revoked_certificates: (!entries.is_empty()).then_some(entries),
            crl_extensions: None,
        };
        let sig: PssSignature = self
            .ark
            .try_sign_with_rng(&mut Self::rng(), &tbs.to_der()?)
            .map_err(|_| ChainError::Signature)?;
        Ok(CertificateList {
            tbs_cert_list: tbs,
            signature_algorithm: alg,
            signature: BitString::from_bytes(&sig.to_bytes())?,
        }
        .to_der()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pss::VerifyingKey;
    use rsa::signature::Verifier;
    use spki::DecodePublicKey;

    fn verify_pss(issuer: &[u8], subject: &[u8]) -> bool {
        let issuer = Certificate::from_der(issuer).unwrap();
        let subject = Certificate::from_der(subject).unwrap();
        let spki = issuer
            .tbs_certificate()
            .subject_public_key_info()
            .to_der()
            .unwrap();
        let key = rsa::PublicKey::from_public_key_der(&spki).unwrap();
        let vk = VerifyingKey::<Sha384>::new_with_salt_len(key, 48);
        let sig = PssSignature::try_from(subject.signature().raw_bytes()).unwrap();
        vk.verify(&subject.tbs_certificate().to_der().unwrap(), &sig)
            .is_ok()
    }

    #[test]
    fn builtin_chain_is_consistent_and_signed() {
        let c = Chain::builtin().unwrap();
        assert!(verify_pss(&c.ark_der, &c.ark_der), "ARK self-signature");
        assert!(verify_pss(&c.ark_der, &c.ask_der), "ASK signed by ARK");
        assert!(verify_pss(&c.ask_der, &c.vcek_der), "VCEK signed by ASK");
        assert!(
            !verify_pss(&c.ask_der, &c.ask_der),
            "ASK is not self-signed"
        );
        assert_eq!(c.tcb, Tcb::TEST);
        let mut bad = c.vcek_der.clone();
        let n = bad.len() - 10;
        bad[n] ^= 1;
        assert!(!verify_pss(&c.ask_der, &bad));
    }

    #[test]
    fn tcb_layout() {
        let t = Tcb {
            bootloader: 3,
            tee: 0,
            snp: 8,
            microcode: 0x73,
        };
        // reported_tcb of the real Milan vector: 03 00 00 00 00 00 08 73.
        assert_eq!(t.to_u64().to_le_bytes(), [3, 0, 0, 0, 0, 0, 8, 0x73]);
        assert_eq!(Tcb::from_u64(t.to_u64()), t);
    }

    #[test]
    fn export_round_trip() {
        let c = Chain::builtin().unwrap();
        let dir = tempfile::tempdir().unwrap();
        c.export(dir.path()).unwrap();
        assert_eq!(fs::read(dir.path().join("vcek.der")).unwrap(), c.vcek_der);
        let ark = Certificate::from_pem(fs::read(dir.path().join("ark.pem")).unwrap()).unwrap();
        assert_eq!(ark.to_der().unwrap(), c.ark_der);
        let chain = fs::read_to_string(dir.path().join("cert_chain")).unwrap();
        assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2);
    }
}
