//! The SEV-SNP attestation report (`ATTESTATION_REPORT`).
//!
//! Layout from AMD "SEV Secure Nested Paging Firmware ABI Specification", publication 56860,
//! revision 1.58, Table 23 ("ATTESTATION_REPORT Structure"); guest policy from Table 9
//! ("Guest Policy Structure"); `TCB_VERSION` from Table 3 (Milan/Genoa) and its Turin variant
//! (Table 4 of revision 1.58: FMC, boot loader, TEE, SNP, microcode).
//!
//! [`AttestationReport`] is a byte-exact `repr(C)` view (alignment 1, every integer little-endian
//! as on the wire), so `AttestationReport::ref_from_bytes(bytes)` is the parse and
//! `report.as_bytes()` the emit: a round trip is the identity. Typed getters decode the raw fields;
//! [`AttestationReport::validate`] checks version, signature algorithm and reserved areas. A
//! validated report is still *unauthenticated*: only `crate::verify` says who signed it.

use core::fmt;
use core::mem::{offset_of, size_of};

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Size of an attestation report in bytes (0x4A0).
pub const REPORT_SIZE: usize = 0x4A0;
/// The report is signed over bytes `[0, SIGNED_LEN)` (56860 Table 23, "SIGNATURE" covers 0h–29Fh).
pub const SIGNED_LEN: usize = 0x2A0;
/// Lowest report version we accept (the first SNP firmware generation).
pub const MIN_VERSION: u32 = 2;
/// Highest report version whose layout we know.
pub const MAX_VERSION: u32 = 5;
/// `SIGNATURE_ALGO` value for ECDSA P-384 with SHA-384 (56860 Table 142, "Signature Algorithms").
pub const SIG_ALGO_ECDSA_P384_SHA384: u32 = 1;

/// Errors from parsing or validating a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReportError {
    /// The buffer is not exactly [`REPORT_SIZE`] bytes.
    Length { got: usize },
    /// `VERSION` is outside [`MIN_VERSION`]..=[`MAX_VERSION`].
    UnsupportedVersion(u32),
    /// `SIGNATURE_ALGO` is not ECDSA P-384/SHA-384.
    UnsupportedSignatureAlgo(u32),
    /// A reserved field (named) is not zero.
    ReservedNotZero(&'static str),
    /// The signature's r or s does not fit in 48 bytes (non-zero high bytes).
    SignatureRange,
}

impl fmt::Display for ReportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Length { got } => write!(
                f,
                "attestation report must be {REPORT_SIZE} bytes, got {got}"
            ),
            Self::UnsupportedVersion(v) => write!(f, "unsupported attestation report version {v}"),
            Self::UnsupportedSignatureAlgo(a) => {
                write!(f, "unsupported report signature algorithm {a}")
            }
            Self::ReservedNotZero(what) => write!(f, "reserved field {what} is not zero"),
            Self::SignatureRange => f.write_str("report signature component out of range"),
        }
    }
}

impl core::error::Error for ReportError {}

/// The AMD product line that signed a report; selects the TCB layout and the root of trust.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Generation {
    /// 3rd generation EPYC (family 19h, models 00h–0Fh).
    Milan,
    /// 4th generation EPYC (family 19h, models 10h–1Fh and A0h–AFh).
    Genoa,
    /// 5th generation EPYC (family 1Ah).
    Turin,
}

impl Generation {
    /// Identify a product from CPUID family and model (as carried by report versions 3 and later).
    pub fn from_family_model(family: u8, model: u8) -> Option<Self> {
        match (family, model) {
            (0x19, 0x00..=0x0F) => Some(Self::Milan),
            (0x19, 0x10..=0x1F) | (0x19, 0xA0..=0xAF) => Some(Self::Genoa),
            (0x1A, _) => Some(Self::Turin),
            _ => None,
        }
    }

    /// The product name as AMD's KDS spells it in URLs ("Milan", "Genoa", "Turin").
    pub fn name(self) -> &'static str {
        match self {
            Self::Milan => "Milan",
            Self::Genoa => "Genoa",
            Self::Turin => "Turin",
        }
    }
}

impl core::str::FromStr for Generation {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s.to_ascii_lowercase().as_str() {
            "milan" => Ok(Self::Milan),
            "genoa" => Ok(Self::Genoa),
            "turin" => Ok(Self::Turin),
            _ => Err(()),
        }
    }
}

/// A decoded `TCB_VERSION` (56860 Table 3; Turin layout adds FMC and moves fields).
///
/// The raw form is a u64; bytes are: Milan/Genoa `[bl, tee, 0, 0, 0, 0, snp, ucode]`,
/// Turin `[fmc, bl, tee, snp, 0, 0, 0, ucode]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcbVersion {
    /// FMC SPL (Turin and later; 0 on earlier products).
    pub fmc: u8,
    /// Boot loader SPL.
    pub bootloader: u8,
    /// PSP OS (TEE) SPL.
    pub tee: u8,
    /// SNP firmware SPL.
    pub snp: u8,
    /// CPU microcode SPL.
    pub microcode: u8,
}

impl TcbVersion {
    /// Decode a raw `TCB_VERSION` for a product generation.
    pub fn decode(raw: u64, generation: Generation) -> Self {
        let b = raw.to_le_bytes();
        match generation {
            Generation::Milan | Generation::Genoa => Self {
                fmc: 0,
                bootloader: b[0],
                tee: b[1],
                snp: b[6],
                microcode: b[7],
            },
            Generation::Turin => Self {
                fmc: b[0],
                bootloader: b[1],
                tee: b[2],
                snp: b[3],
                microcode: b[7],
            },
        }
    }

    /// Encode back to the raw u64 for a product generation (`fmc` is dropped before Turin).
    pub fn encode(&self, generation: Generation) -> u64 {
        let b = match generation {
            Generation::Milan | Generation::Genoa => [
                self.bootloader,
                self.tee,
                0,
                0,
                0,
                0,
                self.snp,
                self.microcode,
            ],
            Generation::Turin => [
                self.fmc,
                self.bootloader,
                self.tee,
                self.snp,
                0,
                0,
                0,
                self.microcode,
            ],
        };
        u64::from_le_bytes(b)
    }

    /// True when every component of `self` is at least the one in `min` (a TCB is only "newer"
    /// if no component went backwards).
    pub fn meets(&self, min: &TcbVersion) -> bool {
        self.fmc >= min.fmc
            && self.bootloader >= min.bootloader
            && self.tee >= min.tee
            && self.snp >= min.snp
            && self.microcode >= min.microcode
    }
}

/// A firmware (SNP ABI) version, `major.minor`: the report's `CURRENT_MAJOR`/`CURRENT_MINOR`
/// and `COMMITTED_MAJOR`/`COMMITTED_MINOR` (56860 Table 23, offsets 1EAh/1E9h and 1EEh/1EDh), and
/// the guest policy's `ABI_MAJOR`/`ABI_MINOR` (Table 9, bits 15:8 and 7:0). Ordered by major,
/// then minor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct FirmwareVersion {
    /// Major version.
    pub major: u8,
    /// Minor version.
    pub minor: u8,
}

impl FirmwareVersion {
    /// `major.minor`.
    pub const fn new(major: u8, minor: u8) -> Self {
        Self { major, minor }
    }
}

impl fmt::Display for FirmwareVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl core::str::FromStr for FirmwareVersion {
    type Err = ();
    /// Parses `major.minor` (decimal, e.g. `1.51`).
    fn from_str(s: &str) -> Result<Self, ()> {
        let (major, minor) = s.split_once('.').ok_or(())?;
        Ok(Self {
            major: major.parse().map_err(|_| ())?,
            minor: minor.parse().map_err(|_| ())?,
        })
    }
}

/// Guest policy (56860 Table 9, "Guest Policy Structure"), the raw u64 with typed accessors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GuestPolicy(pub u64);

impl GuestPolicy {
    /// Bit 17 is reserved and must be one.
    pub const RESERVED_MUST_BE_ONE: u64 = 1 << 17;
    /// Bit 16: SMT is allowed.
    pub const SMT: u64 = 1 << 16;
    /// Bit 18: association with a migration agent is allowed.
    pub const MIGRATE_MA: u64 = 1 << 18;
    /// Bit 19: debugging is allowed.
    pub const DEBUG: u64 = 1 << 19;
    /// Bit 20: the guest may only be activated on one socket.
    pub const SINGLE_SOCKET: u64 = 1 << 20;
    /// The minimum ABI version the guest owner required at launch (bits 15:0).
    pub fn abi(self) -> FirmwareVersion {
        FirmwareVersion::new(self.abi_major(), self.abi_minor())
    }
    /// Minimum ABI minor version (bits 7:0).
    pub fn abi_minor(self) -> u8 {
        self.0 as u8
    }
    /// Minimum ABI major version (bits 15:8).
    pub fn abi_major(self) -> u8 {
        (self.0 >> 8) as u8
    }
    /// Bit 16: SMT is allowed.
    pub fn smt_allowed(self) -> bool {
        self.0 & (1 << 16) != 0
    }
    /// Bit 18: association with a migration agent is allowed.
    pub fn migrate_ma_allowed(self) -> bool {
        self.0 & (1 << 18) != 0
    }
    /// Bit 19: debugging is allowed (the hypervisor may read and write guest memory).
    pub fn debug_allowed(self) -> bool {
        self.0 & (1 << 19) != 0
    }
    /// Bit 20: the guest may only be activated on one socket.
    pub fn single_socket_required(self) -> bool {
        self.0 & (1 << 20) != 0
    }
    /// Bit 21: CXL may be populated with devices or memory.
    pub fn cxl_allowed(self) -> bool {
        self.0 & (1 << 21) != 0
    }
    /// Bit 22: AES-256-XTS is required for memory encryption.
    pub fn mem_aes_256_xts_required(self) -> bool {
        self.0 & (1 << 22) != 0
    }
    /// Bit 23: Running Average Power Limit must be disabled.
    pub fn rapl_disabled_required(self) -> bool {
        self.0 & (1 << 23) != 0
    }
    /// Bit 24: ciphertext hiding must be enabled.
    pub fn ciphertext_hiding_required(self) -> bool {
        self.0 & (1 << 24) != 0
    }
    /// Bit 25: guest page swap is disabled.
    pub fn page_swap_disabled(self) -> bool {
        self.0 & (1 << 25) != 0
    }
}

/// `PLATFORM_INFO` (56860 Table 23, offset 40h) with typed accessors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PlatformInfo(pub u64);

impl PlatformInfo {
    /// Bit 0: SMT is enabled in the system.
    pub fn smt_enabled(self) -> bool {
        self.0 & 1 != 0
    }
    /// Bit 1: TSME is enabled in the system.
    pub fn tsme_enabled(self) -> bool {
        self.0 & (1 << 1) != 0
    }
    /// Bit 2: the platform is using ECC memory.
    pub fn ecc_enabled(self) -> bool {
        self.0 & (1 << 2) != 0
    }
    /// Bit 3: RAPL is disabled.
    pub fn rapl_disabled(self) -> bool {
        self.0 & (1 << 3) != 0
    }
    /// Bit 4: ciphertext hiding is enabled.
    pub fn ciphertext_hiding_enabled(self) -> bool {
        self.0 & (1 << 4) != 0
    }
}

/// Which key signed the report (`SIGNING_KEY`, bits 4:2 of the flags word at 48h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningKey {
    /// Versioned Chip Endorsement Key.
    Vcek,
    /// Versioned Loaded Endorsement Key.
    Vlek,
    /// No key (the report is unsigned).
    None,
    /// A reserved value.
    Unknown(u8),
}

/// The report signature (56860 Table 142, "ECDSA P-384 with SHA-384 Signature"):
/// r and s as 72-byte little-endian integers, then reserved bytes.
#[repr(C)]
#[derive(Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct Signature {
    /// R component, little-endian, zero-extended to 72 bytes.
    pub r: [u8; 72],
    /// S component, little-endian, zero-extended to 72 bytes.
    pub s: [u8; 72],
    _reserved_0: [u8; 368],
}

const _: () = assert!(size_of::<Signature>() == 0x200);

impl Signature {
    /// Build a signature from big-endian 48-byte r and s (as P-384 libraries produce them).
    pub fn from_be(r: &[u8; 48], s: &[u8; 48]) -> Self {
        let mut sig = Signature {
            r: [0; 72],
            s: [0; 72],
            _reserved_0: [0; 368],
        };
        for (d, v) in sig.r.iter_mut().zip(r.iter().rev()) {
            *d = *v;
        }
        for (d, v) in sig.s.iter_mut().zip(s.iter().rev()) {
            *d = *v;
        }
        sig
    }

    /// r ‖ s as 96 big-endian bytes (the fixed-size P-384 signature encoding), checking that the
    /// 24 high bytes of each component are zero.
    pub fn to_be_rs(&self) -> Result<[u8; 96], ReportError> {
        let mut out = [0u8; 96];
        for (comp, dst) in [(&self.r, 0usize), (&self.s, 48usize)] {
            if comp[48..].iter().any(|b| *b != 0) {
                return Err(ReportError::SignatureRange);
            }
            for (i, v) in comp[..48].iter().enumerate() {
                out[dst + 47 - i] = *v;
            }
        }
        Ok(out)
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signature")
            .field("r", &Hex(&self.r[..48]))
            .field("s", &Hex(&self.s[..48]))
            .finish()
    }
}

/// The SEV-SNP `ATTESTATION_REPORT` (56860 rev 1.58, Table 23), byte-exact.
///
/// Fields keep their wire types; use the getters for typed values. Fields that appeared in later
/// report versions (CPUID identifiers in v3, mitigation vectors in v5) read as zero in earlier ones.
#[repr(C)]
#[derive(Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct AttestationReport {
    /// 00h `VERSION`.
    pub version: U32,
    /// 04h `GUEST_SVN`.
    pub guest_svn: U32,
    /// 08h `POLICY` (see [`GuestPolicy`]).
    pub policy: U64,
    /// 10h `FAMILY_ID`.
    pub family_id: [u8; 16],
    /// 20h `IMAGE_ID`.
    pub image_id: [u8; 16],
    /// 30h `VMPL` that requested the report (FFFFFFFFh when the host requested it).
    pub vmpl: U32,
    /// 34h `SIGNATURE_ALGO`.
    pub signature_algo: U32,
    /// 38h `CURRENT_TCB`.
    pub current_tcb: U64,
    /// 40h `PLATFORM_INFO`.
    pub platform_info: U64,
    /// 48h bit 0 `AUTHOR_KEY_EN`, bit 1 `MASK_CHIP_KEY`, bits 4:2 `SIGNING_KEY`.
    pub flags: U32,
    _reserved_0: U32,
    /// 50h `REPORT_DATA`, supplied by the guest.
    pub report_data: [u8; 64],
    /// 90h `MEASUREMENT`, the launch digest.
    pub measurement: [u8; 48],
    /// C0h `HOST_DATA`, supplied by the hypervisor at launch.
    pub host_data: [u8; 32],
    /// E0h `ID_KEY_DIGEST`.
    pub id_key_digest: [u8; 48],
    /// 110h `AUTHOR_KEY_DIGEST`.
    pub author_key_digest: [u8; 48],
    /// 140h `REPORT_ID`.
    pub report_id: [u8; 32],
    /// 160h `REPORT_ID_MA`.
    pub report_id_ma: [u8; 32],
    /// 180h `REPORTED_TCB`, the TCB the VCEK was derived from.
    pub reported_tcb: U64,
    /// 188h `CPUID_FAM_ID` (version 3+).
    pub cpuid_fam_id: u8,
    /// 189h `CPUID_MOD_ID` (version 3+).
    pub cpuid_mod_id: u8,
    /// 18Ah `CPUID_STEP` (version 3+).
    pub cpuid_step: u8,
    _reserved_1: [u8; 21],
    /// 1A0h `CHIP_ID` (zero when `MASK_CHIP_ID` is set).
    pub chip_id: [u8; 64],
    /// 1E0h `COMMITTED_TCB`.
    pub committed_tcb: U64,
    /// 1E8h `CURRENT_BUILD`, `CURRENT_MINOR`, `CURRENT_MAJOR`, reserved.
    pub current_version: [u8; 4],
    /// 1ECh `COMMITTED_BUILD`, `COMMITTED_MINOR`, `COMMITTED_MAJOR`, reserved.
    pub committed_version: [u8; 4],
    /// 1F0h `LAUNCH_TCB`.
    pub launch_tcb: U64,
    /// 1F8h `LAUNCH_MIT_VECTOR` (version 5+).
    pub launch_mit_vector: U64,
    /// 200h `CURRENT_MIT_VECTOR` (version 5+).
    pub current_mit_vector: U64,
    _reserved_2: [u8; 0x98],
    /// 2A0h `SIGNATURE`.
    pub signature: Signature,
}

// Layout pinned to 56860 Table 23.
const _: () = {
    assert!(size_of::<AttestationReport>() == REPORT_SIZE);
    assert!(offset_of!(AttestationReport, guest_svn) == 0x04);
    assert!(offset_of!(AttestationReport, policy) == 0x08);
    assert!(offset_of!(AttestationReport, family_id) == 0x10);
    assert!(offset_of!(AttestationReport, image_id) == 0x20);
    assert!(offset_of!(AttestationReport, vmpl) == 0x30);
    assert!(offset_of!(AttestationReport, signature_algo) == 0x34);
    assert!(offset_of!(AttestationReport, current_tcb) == 0x38);
    assert!(offset_of!(AttestationReport, platform_info) == 0x40);
    assert!(offset_of!(AttestationReport, flags) == 0x48);
    assert!(offset_of!(AttestationReport, report_data) == 0x50);
    assert!(offset_of!(AttestationReport, measurement) == 0x90);
    assert!(offset_of!(AttestationReport, host_data) == 0xC0);
    assert!(offset_of!(AttestationReport, id_key_digest) == 0xE0);
    assert!(offset_of!(AttestationReport, author_key_digest) == 0x110);
    assert!(offset_of!(AttestationReport, report_id) == 0x140);
    assert!(offset_of!(AttestationReport, report_id_ma) == 0x160);
    assert!(offset_of!(AttestationReport, reported_tcb) == 0x180);
    assert!(offset_of!(AttestationReport, cpuid_fam_id) == 0x188);
    assert!(offset_of!(AttestationReport, chip_id) == 0x1A0);
    assert!(offset_of!(AttestationReport, committed_tcb) == 0x1E0);
    assert!(offset_of!(AttestationReport, current_version) == 0x1E8);
    assert!(offset_of!(AttestationReport, committed_version) == 0x1EC);
    assert!(offset_of!(AttestationReport, launch_tcb) == 0x1F0);
    assert!(offset_of!(AttestationReport, launch_mit_vector) == 0x1F8);
    assert!(offset_of!(AttestationReport, current_mit_vector) == 0x200);
    assert!(offset_of!(AttestationReport, signature) == SIGNED_LEN);
};

impl AttestationReport {
    /// View `bytes` as a report. Checks only the length: call [`validate`](Self::validate) next.
    pub fn ref_from_bytes_checked(bytes: &[u8]) -> Result<&Self, ReportError> {
        Self::ref_from_bytes(bytes).map_err(|_| ReportError::Length { got: bytes.len() })
    }

    /// Parse and validate: the usual entry point for untrusted bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, ReportError> {
        let report =
            Self::read_from_bytes(bytes).map_err(|_| ReportError::Length { got: bytes.len() })?;
        report.validate()?;
        Ok(report)
    }

    /// A report with every field zero (useful to build one, e.g. in an emulator).
    pub fn zeroed() -> Self {
        <Self as zerocopy::FromZeros>::new_zeroed()
    }

    /// The wire bytes (emit).
    pub fn to_bytes(&self) -> [u8; REPORT_SIZE] {
        let mut out = [0u8; REPORT_SIZE];
        out.copy_from_slice(self.as_bytes());
        out
    }

    /// The signed part, bytes `[0, 0x2A0)`.
    pub fn signed_bytes(&self) -> &[u8] {
        let b = self.as_bytes();
        b.get(..SIGNED_LEN).unwrap_or(b)
    }

    /// Check version, signature algorithm and the reserved areas that are reserved in every version.
    pub fn validate(&self) -> Result<(), ReportError> {
        let v = self.version.get();
        if !(MIN_VERSION..=MAX_VERSION).contains(&v) {
            return Err(ReportError::UnsupportedVersion(v));
        }
        let algo = self.signature_algo.get();
        if algo != SIG_ALGO_ECDSA_P384_SHA384 {
            return Err(ReportError::UnsupportedSignatureAlgo(algo));
        }
        if self._reserved_0.get() != 0 {
            return Err(ReportError::ReservedNotZero("0x4C"));
        }
        if self._reserved_1.iter().any(|b| *b != 0) {
            return Err(ReportError::ReservedNotZero("0x18B..0x1A0"));
        }
        if self._reserved_2.iter().any(|b| *b != 0) {
            return Err(ReportError::ReservedNotZero("0x208..0x2A0"));
        }
        if v < 3 && (self.cpuid_fam_id != 0 || self.cpuid_mod_id != 0 || self.cpuid_step != 0) {
            return Err(ReportError::ReservedNotZero("0x188..0x18B (version 2)"));
        }
        if v < 5 && (self.launch_mit_vector.get() != 0 || self.current_mit_vector.get() != 0) {
            return Err(ReportError::ReservedNotZero("0x1F8..0x208 (version < 5)"));
        }
        if self.signature._reserved_0.iter().any(|b| *b != 0) {
            return Err(ReportError::ReservedNotZero("signature 0x90..0x200"));
        }
        Ok(())
    }

    /// The guest policy.
    pub fn policy(&self) -> GuestPolicy {
        GuestPolicy(self.policy.get())
    }

    /// The platform information.
    pub fn platform_info(&self) -> PlatformInfo {
        PlatformInfo(self.platform_info.get())
    }

    /// Which key signed the report.
    pub fn signing_key(&self) -> SigningKey {
        match ((self.flags.get() >> 2) & 0x7) as u8 {
            0 => SigningKey::Vcek,
            1 => SigningKey::Vlek,
            7 => SigningKey::None,
            other => SigningKey::Unknown(other),
        }
    }

    /// `AUTHOR_KEY_EN`: the author key digest is present.
    pub fn author_key_en(&self) -> bool {
        self.flags.get() & 1 != 0
    }

    /// `MASK_CHIP_KEY`: the chip key is masked (signature is zero).
    pub fn mask_chip_key(&self) -> bool {
        self.flags.get() & 2 != 0
    }

    /// The product, from CPUID family/model (report version 3 and later); `None` for version 2.
    pub fn generation(&self) -> Option<Generation> {
        if self.version.get() < 3 {
            return None;
        }
        Generation::from_family_model(self.cpuid_fam_id, self.cpuid_mod_id)
    }

    /// `REPORTED_TCB` decoded for `generation`.
    pub fn reported_tcb(&self, generation: Generation) -> TcbVersion {
        TcbVersion::decode(self.reported_tcb.get(), generation)
    }

    /// `CURRENT_TCB` decoded for `generation`.
    pub fn current_tcb(&self, generation: Generation) -> TcbVersion {
        TcbVersion::decode(self.current_tcb.get(), generation)
    }

    /// `COMMITTED_TCB` decoded for `generation`.
    pub fn committed_tcb(&self, generation: Generation) -> TcbVersion {
        TcbVersion::decode(self.committed_tcb.get(), generation)
    }

    /// The firmware version the report was produced with (`CURRENT_MAJOR.CURRENT_MINOR`).
    pub fn current_firmware(&self) -> FirmwareVersion {
        FirmwareVersion::new(self.current_version[2], self.current_version[1])
    }

    /// The committed firmware version (`COMMITTED_MAJOR.COMMITTED_MINOR`): the oldest firmware
    /// the host can still roll the platform back to.
    pub fn committed_firmware(&self) -> FirmwareVersion {
        FirmwareVersion::new(self.committed_version[2], self.committed_version[1])
    }

    /// `LAUNCH_TCB` decoded for `generation`.
    pub fn launch_tcb(&self, generation: Generation) -> TcbVersion {
        TcbVersion::decode(self.launch_tcb.get(), generation)
    }
}

impl fmt::Debug for AttestationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttestationReport")
            .field("version", &self.version.get())
            .field("guest_svn", &self.guest_svn.get())
            .field("policy", &format_args!("{:#x}", self.policy.get()))
            .field("vmpl", &self.vmpl.get())
            .field(
                "current_tcb",
                &format_args!("{:#018x}", self.current_tcb.get()),
            )
            .field(
                "reported_tcb",
                &format_args!("{:#018x}", self.reported_tcb.get()),
            )
            .field(
                "platform_info",
                &format_args!("{:#x}", self.platform_info.get()),
            )
            .field("flags", &format_args!("{:#x}", self.flags.get()))
            .field("report_data", &Hex(&self.report_data))
            .field("measurement", &Hex(&self.measurement))
            .field("host_data", &Hex(&self.host_data))
            .field("chip_id", &Hex(&self.chip_id))
            .field("signature", &self.signature)
            .finish_non_exhaustive()
    }
}

/// Lower-case hex formatting of a byte slice (for Debug output).
pub(crate) struct Hex<'a>(pub &'a [u8]);

impl fmt::Debug for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::milan_report;

    #[test]
    fn deconstruct_real_milan_report() {
        let bytes = milan_report();
        let r = AttestationReport::parse(&bytes).unwrap();
        assert_eq!(r.version.get(), 2);
        assert_eq!(r.policy.get(), 0x30000);
        assert!(r.policy().smt_allowed());
        assert!(!r.policy().debug_allowed());
        assert_eq!(r.vmpl.get(), 0);
        assert_eq!(r.signing_key(), SigningKey::Vcek);
        assert_eq!(r.generation(), None);
        let tcb = r.reported_tcb(Generation::Milan);
        assert_eq!(
            tcb,
            TcbVersion {
                fmc: 0,
                bootloader: 3,
                tee: 0,
                snp: 8,
                microcode: 0x73
            }
        );
        assert_eq!(
            TcbVersion::encode(&tcb, Generation::Milan),
            r.reported_tcb.get()
        );
        assert_eq!(r.measurement[..], bytes[0x90..0xC0]);
        assert_eq!(r.chip_id[..], bytes[0x1A0..0x1E0]);
        assert!(r.platform_info().smt_enabled());
        assert_eq!(r.current_version, [4, 0x34, 1, 0]);
    }

    #[test]
    fn emit_is_identity() {
        let bytes = milan_report();
        let r = AttestationReport::parse(&bytes).unwrap();
        assert_eq!(r.to_bytes()[..], bytes[..]);
        let view = AttestationReport::ref_from_bytes_checked(&bytes).unwrap();
        assert_eq!(view.as_bytes(), &bytes[..]);
    }

    #[test]
    fn construct_from_fields() {
        let bytes = milan_report();
        let orig = AttestationReport::parse(&bytes).unwrap();
        // Pre-fill with garbage (smoltcp style): every field must be written explicitly.
        let mut r = AttestationReport::read_from_bytes(&[0xA5u8; REPORT_SIZE][..]).unwrap();
        r.version = 2.into();
        r.guest_svn = 0.into();
        r.policy = 0x30000.into();
        r.family_id = orig.family_id;
        r.image_id = orig.image_id;
        r.vmpl = 0.into();
        r.signature_algo = 1.into();
        r.current_tcb = orig.current_tcb;
        r.platform_info = orig.platform_info;
        r.flags = 0.into();
        r._reserved_0 = 0.into();
        r.report_data = orig.report_data;
        r.measurement = orig.measurement;
        r.host_data = orig.host_data;
        r.id_key_digest = orig.id_key_digest;
        r.author_key_digest = orig.author_key_digest;
        r.report_id = orig.report_id;
        r.report_id_ma = orig.report_id_ma;
        r.reported_tcb = orig.reported_tcb;
        r.cpuid_fam_id = 0;
        r.cpuid_mod_id = 0;
        r.cpuid_step = 0;
        r._reserved_1 = [0; 21];
        r.chip_id = orig.chip_id;
        r.committed_tcb = orig.committed_tcb;
        r.current_version = orig.current_version;
        r.committed_version = orig.committed_version;
        r.launch_tcb = orig.launch_tcb;
        r.launch_mit_vector = 0.into();
        r.current_mit_vector = 0.into();
        r._reserved_2 = [0; 0x98];
        let be = orig.signature.to_be_rs().unwrap();
        let (rr, ss) = be.split_at(48);
        r.signature = Signature::from_be(rr.try_into().unwrap(), ss.try_into().unwrap());
        assert_eq!(r.to_bytes()[..], bytes[..]);
    }

    #[test]
    fn impossible_lengths() {
        let bytes = milan_report();
        for len in [0, 1, REPORT_SIZE - 1, REPORT_SIZE + 1] {
            let mut b = bytes.clone();
            b.resize(len, 0);
            assert_eq!(
                AttestationReport::parse(&b).unwrap_err(),
                ReportError::Length { got: len }
            );
        }
    }

    #[test]
    fn validate_rejects() {
        let good = milan_report();
        let cases: &[(usize, u8, ReportError)] = &[
            (0x00, 1, ReportError::UnsupportedVersion(1)),
            (0x00, 6, ReportError::UnsupportedVersion(6)),
            (0x34, 2, ReportError::UnsupportedSignatureAlgo(2)),
            (0x4C, 1, ReportError::ReservedNotZero("0x4C")),
            (0x190, 1, ReportError::ReservedNotZero("0x18B..0x1A0")),
            (
                0x188,
                0x19,
                ReportError::ReservedNotZero("0x188..0x18B (version 2)"),
            ),
            (
                0x1F8,
                1,
                ReportError::ReservedNotZero("0x1F8..0x208 (version < 5)"),
            ),
            (0x250, 1, ReportError::ReservedNotZero("0x208..0x2A0")),
            (
                0x2A0 + 0x100,
                1,
                ReportError::ReservedNotZero("signature 0x90..0x200"),
            ),
        ];
        for (off, val, err) in cases {
            let mut b = good.clone();
            b[*off] = *val;
            assert_eq!(
                AttestationReport::parse(&b).unwrap_err(),
                *err,
                "offset {off:#x}"
            );
        }
        // Version 3 with a Genoa CPUID is fine and identifies the product.
        let mut b = good.clone();
        b[0] = 3;
        b[0x188] = 0x19;
        b[0x189] = 0x11;
        let r = AttestationReport::parse(&b).unwrap();
        assert_eq!(r.generation(), Some(Generation::Genoa));
        // A signature with high bytes set is out of range.
        let mut b = good;
        b[0x2A0 + 60] = 1;
        let r = AttestationReport::parse(&b).unwrap();
        assert_eq!(
            r.signature.to_be_rs().unwrap_err(),
            ReportError::SignatureRange
        );
    }

    #[test]
    fn turin_tcb_layout() {
        let raw = u64::from_le_bytes([1, 2, 3, 4, 0, 0, 0, 5]);
        let t = TcbVersion::decode(raw, Generation::Turin);
        assert_eq!(
            t,
            TcbVersion {
                fmc: 1,
                bootloader: 2,
                tee: 3,
                snp: 4,
                microcode: 5
            }
        );
        assert_eq!(t.encode(Generation::Turin), raw);
        let m = TcbVersion::decode(raw, Generation::Milan);
        assert_eq!(
            m,
            TcbVersion {
                fmc: 0,
                bootloader: 1,
                tee: 2,
                snp: 0,
                microcode: 5
            }
        );
        assert!(t.meets(&TcbVersion {
            fmc: 1,
            bootloader: 2,
            tee: 3,
            snp: 4,
            microcode: 5
        }));
        assert!(!t.meets(&TcbVersion {
            fmc: 0,
            bootloader: 0,
            tee: 0,
            snp: 5,
            microcode: 0
        }));
    }

    #[test]
    fn policy_bits() {
        let p = GuestPolicy(0x30000 | (1 << 19) | (1 << 20) | 0x0102);
        assert!(p.debug_allowed());
        assert!(p.single_socket_required());
        assert!(!p.migrate_ma_allowed());
        assert_eq!((p.abi_major(), p.abi_minor()), (1, 2));
    }
}
