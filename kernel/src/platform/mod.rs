//! The platform seam: one trait, [`PlatformOps`], and the backend chosen at run time.
//!
//! One image boots on SEV-SNP, TDX and ordinary (TCG) VMs, so the backend is data
//! ([`Platform`]), picked once at boot:
//! - [`detect_hardware`] runs first, before the kernel replaces the firmware's IDT
//!   ([`crate::boot::early_platform`]): [`snp`] (CPUID 0x8000_001F + `SEV_STATUS`) and [`tdx`]
//!   (CPUID leaf 0x21). SEV-SNP continues into the SNP backend ([`snp`], [`ghcb`],
//!   [`snp_guest`], selected by [`select`] whatever `ckms.attestation` says but `emulated`);
//!   SEV-ES without SNP and SNP with features the guest would have to implement stop with the
//!   GHCB MSR protocol termination request (reason set 0xC, see `sev-guest`'s README), plain
//!   SEV with a console message. TDX continues into the TDX backend ([`tdx`], established
//!   right after detection by `crate::boot::tdx_backend`, selected by [`select`] whatever
//!   `ckms.attestation` says but `emulated`).
//! - `emulated`: the `snp-emu` firmware emulator over COM2; compiled in only with the
//!   `emulated-attestation` feature and used only when the measured command line says
//!   `ckms.attestation=emulated`.
//! - [`none`]: no attestation, no derived key.
//!
//! Backends report what they can do ([`Capabilities`]) instead of callers inferring it.
//! The selected backend is installed once by [`select`] and used through [`with`]. Memory
//! made visible to the host (virtio rings and bounce buffers) is not the backends' business
//! here: it all lives in the shared DMA pool ([`crate::dma`]).

#[cfg(feature = "emulated-attestation")]
pub mod emulated;
pub mod ghcb;
pub mod none;
pub mod snp;
pub mod snp_guest;
pub mod tdx;

use alloc::vec::Vec;
use core::fmt;

use bootparams::cmdline::AttestationMode;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Which backend runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlatformKind {
    /// No confidential computing.
    None,
    /// `snp-emu` over COM2.
    #[cfg(feature = "emulated-attestation")]
    Emulated,
    /// SEV-SNP guest requests through the GHCB (on SNP hardware; in the loopback-GHCB build
    /// its stub forwards them to `snp-emu`).
    Snp,
    /// Intel TDX: TDREPORT + GetQuote ([`tdx`]).
    Tdx,
}

impl fmt::Display for PlatformKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::None => "none",
            #[cfg(feature = "emulated-attestation")]
            Self::Emulated => "emulated",
            Self::Snp => "snp",
            Self::Tdx => "tdx",
        })
    }
}

/// What a backend can do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// Produces attestation reports.
    pub attestation: bool,
    /// Provides a measurement-bound derived (sealing) key.
    pub derived_key: bool,
    /// Guest memory is encrypted (DMA needs shared pages).
    pub memory_encryption: bool,
}

/// Platform failures. (Without `emulated-attestation`, only `NotSupported` occurs until the
/// SNP/TDX backends exist.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(feature = "emulated-attestation"), allow(dead_code))]
pub enum PlatformError {
    /// The backend does not offer this operation.
    NotSupported,
    /// The transport to the firmware failed (`&'static str` says where).
    Transport(&'static str),
    /// The firmware answered with an error status.
    Firmware(u32),
    /// The firmware's answer was malformed or failed authentication.
    Protocol(&'static str),
}

impl fmt::Display for PlatformError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotSupported => f.write_str("not supported by this platform"),
            Self::Transport(w) => write!(f, "firmware transport: {w}"),
            Self::Firmware(s) => write!(f, "firmware status {s:#x}"),
            Self::Protocol(w) => write!(f, "firmware protocol: {w}"),
        }
    }
}

impl core::error::Error for PlatformError {}

/// A 32-byte key derived by the platform firmware; wiped on drop, never printed.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct DerivedKey(pub [u8; 32]);

impl fmt::Debug for DerivedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DerivedKey(..)")
    }
}

/// The operations every backend provides.
pub trait PlatformOps {
    /// Which backend this is.
    fn kind(&self) -> PlatformKind;
    /// What it can do.
    fn capabilities(&self) -> Capabilities;
    /// An attestation report binding `report_data` (SNP: the 0x4A0-byte report).
    fn attestation_report(&mut self, report_data: &[u8; 64]) -> Result<Vec<u8>, PlatformError>;
    /// The measurement-bound derived key, `None` where the platform has none.
    fn derived_key(&mut self) -> Result<Option<DerivedKey>, PlatformError>;
    /// The certificate table that comes with reports (SNP extended guest request: VCEK and its
    /// chain, GHCB spec 56421 §4.1.8.1), raw; empty where the platform has none.
    fn cert_table(&mut self) -> Result<Vec<u8>, PlatformError> {
        Ok(Vec::new())
    }
    /// The CC event log that explains the evidence's runtime measurements (TDX: the CCEL log
    /// area); `None` where the platform has none.
    fn event_log(&mut self) -> Result<Option<Vec<u8>>, PlatformError> {
        Ok(None)
    }
}

/// The selected backend.
pub enum Platform {
    /// No attestation.
    None(none::NoPlatform),
    /// `snp-emu` over COM2 (not in the loopback-GHCB build, whose firmware is reached through
    /// the GHCB).
    #[cfg(feature = "emulated-attestation")]
    #[cfg_attr(feature = "loopback-ghcb", allow(dead_code))]
    Emulated(emulated::Emulated),
    /// SEV-SNP guest requests through the GHCB.
    Snp(snp_guest::SnpGuest),
    /// Intel TDX (once the TDX backend is established: TDX hardware, the loopback-TDX build).
    Tdx(tdx::Tdx),
}

impl Platform {
    /// The backend as the trait.
    pub fn ops(&mut self) -> &mut dyn PlatformOps {
        match self {
            Self::None(p) => p,
            #[cfg(feature = "emulated-attestation")]
            Self::Emulated(p) => p,
            Self::Snp(p) => p,
            Self::Tdx(p) => p,
        }
    }
}

/// The confidential-computing hardware under the kernel, as [`detect_hardware`] found it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hardware {
    /// An ordinary VM (or TCG): no memory encryption.
    Plain,
    /// SEV without SEV-ES.
    Sev,
    /// SEV-ES without SNP (the GHCB MSR protocol exists).
    SevEs(snp::GhcbMsr),
    /// SEV-SNP.
    Snp {
        /// The GHCB MSR protocol exists.
        ghcb: snp::GhcbMsr,
        /// `SEV_STATUS`.
        status: u64,
    },
    /// An Intel TDX trust domain.
    Tdx,
}

/// Detects SEV/SEV-ES/SNP, then TDX. Call it while the firmware's exception handlers are
/// still installed: on SEV-ES/SNP the `cpuid` raises #VC (and on TDX a leaf the TDX module
/// does not handle raises #VE), which only the firmware can answer at that point.
pub fn detect_hardware() -> Hardware {
    match snp::detect() {
        snp::SevState::Snp { ghcb, status } => return Hardware::Snp { ghcb, status },
        snp::SevState::SevEs(ghcb) => return Hardware::SevEs(ghcb),
        snp::SevState::SevOnly => return Hardware::Sev,
        snp::SevState::Absent => {}
    }
    if tdx::detect() {
        return Hardware::Tdx;
    }
    Hardware::Plain
}

static HARDWARE: spin::Once<Hardware> = spin::Once::new();

/// Keeps what [`detect_hardware`] found (once), for the exception paths.
pub fn record_hardware(hw: Hardware) {
    HARDWARE.call_once(|| hw);
}

/// What [`detect_hardware`] found, once recorded.
pub fn hardware() -> Option<Hardware> {
    HARDWARE.get().copied()
}

/// The GHCB MSR protocol, when SEV-ES/SNP was detected: fatal paths terminate through it.
pub fn ghcb_msr() -> Option<snp::GhcbMsr> {
    match HARDWARE.get()? {
        Hardware::Snp { ghcb, .. } | Hardware::SevEs(ghcb) => Some(*ghcb),
        Hardware::Plain | Hardware::Sev | Hardware::Tdx => None,
    }
}

/// Why no backend could be selected: the boot stops with this message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelectError {
    /// `ckms.attestation=emulated` in an image built without the feature.
    #[cfg(not(feature = "emulated-attestation"))]
    EmulationNotBuilt,
    /// The emulator did not answer on COM2.
    #[cfg(feature = "emulated-attestation")]
    #[cfg_attr(feature = "loopback-ghcb", allow(dead_code))]
    Emulator(PlatformError),
    /// The SNP backend could not start.
    Snp(snp_guest::SnpSetupError),
    /// `ckms.attestation=emulated` on SEV-SNP hardware: the hardware attests.
    EmulatedOnSnp,
    /// `ckms.attestation=emulated` on TDX hardware: the TDX module and the host's quote
    /// generation service attest.
    EmulatedOnTdx,
    /// TDX hardware but no established TDX backend (`crate::boot::tdx_backend` did not run).
    NoTdxBackend,
    /// A platform was already selected.
    AlreadySelected,
}

impl fmt::Display for SelectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            #[cfg(not(feature = "emulated-attestation"))]
            Self::EmulationNotBuilt => f.write_str(
                "ckms.attestation=emulated, but this image was built without the emulated-attestation feature",
            ),
            #[cfg(feature = "emulated-attestation")]
            Self::Emulator(e) => write!(f, "emulated attestation: {e}"),
            Self::Snp(e) => e.fmt(f),
            Self::EmulatedOnSnp => f.write_str(
                "ckms.attestation=emulated on SEV-SNP hardware: the hardware attests (drop it)",
            ),
            Self::EmulatedOnTdx => f.write_str(
                "ckms.attestation=emulated on TDX hardware: the hardware attests (drop it)",
            ),
            Self::NoTdxBackend => f.write_str("TDX hardware without an established TDX backend"),
            Self::AlreadySelected => f.write_str("platform selected twice"),
        }
    }
}

/// The backend selected at boot, reached through [`with`].
static PLATFORM: spin::Once<spin::Mutex<Platform>> = spin::Once::new();

/// Picks the backend the command line asks for and installs it. The hardware was detected
/// (and any confidential platform stopped) by [`detect_hardware`] before. `cc_blob` is the
/// SNP Confidential Computing blob's address (the firmware's configuration table; the
/// loopback stub's in that build).
pub fn select(mode: AttestationMode, cc_blob: Option<u64>) -> Result<PlatformKind, SelectError> {
    if PLATFORM.is_completed() {
        return Err(SelectError::AlreadySelected);
    }
    let mut platform = detect_and_create(mode, cc_blob)?;
    let kind = platform.ops().kind();
    PLATFORM.call_once(|| spin::Mutex::new(platform));
    Ok(kind)
}

/// Runs `f` on the selected backend; `NotSupported` before [`select`].
///
/// `f` must not call [`with`] again (the backend is locked meanwhile).
pub fn with<R>(f: impl FnOnce(&mut dyn PlatformOps) -> R) -> Result<R, PlatformError> {
    let cell = PLATFORM.get().ok_or(PlatformError::NotSupported)?;
    let mut guard = cell.lock();
    Ok(f(guard.ops()))
}

fn detect_and_create(mode: AttestationMode, cc_blob: Option<u64>) -> Result<Platform, SelectError> {
    // SEV-SNP hardware: the SNP backend whatever the command line says (`none` is the
    // default); emulation there would be a lie and is refused.
    if matches!(hardware(), Some(Hardware::Snp { .. })) {
        return match mode {
            AttestationMode::None => Ok(Platform::Snp(
                snp_guest::SnpGuest::new(cc_blob).map_err(SelectError::Snp)?,
            )),
            AttestationMode::Emulated => Err(SelectError::EmulatedOnSnp),
        };
    }
    // TDX hardware: the TDX backend whatever the command line says (`none` is the default);
    // emulation there would be a lie and is refused, as on SEV-SNP.
    if matches!(hardware(), Some(Hardware::Tdx)) {
        return match mode {
            AttestationMode::None => tdx::Tdx::new()
                .map(Platform::Tdx)
                .ok_or(SelectError::NoTdxBackend),
            AttestationMode::Emulated => Err(SelectError::EmulatedOnTdx),
        };
    }
    // The loopback-TDX build (TCG: no TDX hardware detected) with its established backend:
    // the TDX platform whatever the command line says, except `ckms.attestation=none`: its
    // evidence comes from the TDX module (TDREPORT) and the host's quote generation service
    // (GetQuote), not from COM2.
    if mode != AttestationMode::None
        && let Some(t) = tdx::Tdx::new()
    {
        return Ok(Platform::Tdx(t));
    }
    Ok(match mode {
        AttestationMode::None => Platform::None(none::NoPlatform),
        // The loopback-GHCB build: the SNP backend, whose firmware is `snp-emu` behind the
        // stub (the emulated backend's COM2 protocol is not used).
        #[cfg(feature = "loopback-ghcb")]
        AttestationMode::Emulated => {
            Platform::Snp(snp_guest::SnpGuest::new(cc_blob).map_err(SelectError::Snp)?)
        }
        #[cfg(all(feature = "emulated-attestation", not(feature = "loopback-ghcb")))]
        AttestationMode::Emulated => {
            Platform::Emulated(emulated::Emulated::connect().map_err(SelectError::Emulator)?)
        }
        #[cfg(not(feature = "emulated-attestation"))]
        AttestationMode::Emulated => return Err(SelectError::EmulationNotBuilt),
    })
}
