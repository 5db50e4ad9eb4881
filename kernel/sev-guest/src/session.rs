//! [`GhcbSession`]: the GHCB protocol established with the hypervisor, and every exit this
//! guest makes, built on [`Vmgexit`] and checked on return.
//!
//! Establishing (AMD 56421 §2.3.1 and §3 "GHCB Protocol Negotiation"): SEV information → the
//! protocol version (2) and C-bit; hypervisor features → SNP required; the GHCB page is made
//! shared (PVALIDATE rescind, then an MSR-protocol page-state change, the order Linux's
//! `early_set_pages_state` uses) and its GPA registered (§2.3.2 "GHCB GPA Registration").
//!
//! Exits (56421 §4.1.2 IOIO, §4.1.3 MSR, §4.1.5 MMIO, §4.1.6 page-state change, §4.1.8 guest
//! request): each one resets the private GHCB image, sets the fields it provides (valid bitmap),
//! calls [`Vmgexit::exit`], checks `SW_EXITINFO1` ([`nae::check_response`]) and reads only
//! fields the hypervisor marked valid.

use alloc::boxed::Box;
use core::fmt;

use crate::ghcb::{Ghcb, GhcbField, SHARED_BUFFER_OFFSET, SHARED_BUFFER_SIZE};
use crate::mmio::{MmioBackend, MmioError, Width};
use crate::msr::{self, HvFeatures, PageOp, SevInfo, TerminateReason};
use crate::nae::{self, HvError, IoSize, IoioInfo, exit_code};
use crate::psc::{self, PSC_MAX_ENTRIES, PscEntry, PscError, PscHeader};
use crate::{Error, PageSize, Vmgexit};

/// Why the GHCB protocol could not be established (and the reason to terminate with).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EstablishError {
    /// The failure.
    pub error: Error,
}

impl EstablishError {
    /// The termination reason for this failure.
    pub fn terminate_reason(&self) -> TerminateReason {
        self.error.terminate_reason()
    }
}

impl fmt::Display for EstablishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GHCB protocol: {}", self.error)
    }
}

impl core::error::Error for EstablishError {}

impl<E: Into<Error>> From<E> for EstablishError {
    fn from(e: E) -> Self {
        Self { error: e.into() }
    }
}

/// Exit counters (for the console and the loopback run's numbers).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExitStats {
    /// GHCB MSR protocol round trips.
    pub msr_protocol: u64,
    /// IOIO exits.
    pub ioio: u64,
    /// MSR exits.
    pub msr: u64,
    /// MMIO exits.
    pub mmio: u64,
    /// Page-state change exits (each resume counts).
    pub psc: u64,
    /// Guest-request exits (each resend counts).
    pub guest_request: u64,
}

/// The outcome of a guest-request exit (56421 §4.1.8: `SW_EXITINFO2` = 0, or `[63:32]` a
/// hypervisor error and `[31:0]` a firmware error).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestRequestStatus {
    /// The firmware processed the request; the response page holds its answer.
    Done,
    /// VMM error 2 (BUSY): the request was not forwarded; resend the same message.
    Busy,
    /// VMM error 1 (INVALID_LEN): the certificate buffer is too small; `pages` were asked for
    /// (in `RBX`, extended request only). The request was not forwarded.
    InvalidLen {
        /// The certificate-buffer size the hypervisor needs, in pages.
        pages: u64,
    },
    /// Another VMM error code.
    VmmError(u32),
    /// The firmware returned this status to the hypervisor.
    FirmwareError(u32),
}

/// VMM error codes (`SW_EXITINFO2[63:32]` of a guest request).
pub const VMM_ERR_INVALID_LEN: u32 = 1;
/// See [`VMM_ERR_INVALID_LEN`].
pub const VMM_ERR_BUSY: u32 = 2;

/// An established GHCB protocol.
pub struct GhcbSession<H: Vmgexit> {
    hv: H,
    ghcb: Box<Ghcb>,
    version: u16,
    cbit: u8,
    features: HvFeatures,
    stats: ExitStats,
}

impl<H: Vmgexit> fmt::Debug for GhcbSession<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GhcbSession")
            .field("version", &self.version)
            .field("cbit", &self.cbit)
            .field("features", &self.features)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<H: Vmgexit> GhcbSession<H> {
    /// Negotiates the protocol, checks the hypervisor features, makes the GHCB page (at
    /// `hv.ghcb_gpa()`, validated private RAM until now) shared and registers it.
    pub fn establish(mut hv: H) -> Result<Self, EstablishError> {
        let info = SevInfo::parse(hv.msr_protocol(msr::sev_info_request()))?;
        let version = info.negotiate()?;
        let features = HvFeatures::parse(hv.msr_protocol(msr::hv_features_request()))?;
        let gpa = hv.ghcb_gpa();
        let gfn = gpa >> 12;
        hv.pvalidate(gpa, PageSize::Size4K, false)?;
        msr::parse_psc_response(hv.msr_protocol(msr::psc_request(gfn, PageOp::Shared)?))?;
        msr::parse_register_ghcb_response(hv.msr_protocol(msr::register_ghcb_request(gfn)?), gfn)?;
        Ok(Self {
            hv,
            ghcb: Box::new(Ghcb::new()),
            version,
            cbit: info.cbit,
            features,
            stats: ExitStats {
                msr_protocol: 4,
                ..ExitStats::default()
            },
        })
    }

    /// The negotiated protocol version.
    pub fn version(&self) -> u16 {
        self.version
    }

    /// The C-bit position the hypervisor reported (cross-check it with the CPUID page).
    pub fn cbit(&self) -> u8 {
        self.cbit
    }

    /// The hypervisor's features.
    pub fn features(&self) -> HvFeatures {
        self.features
    }

    /// Exit counters.
    pub fn stats(&self) -> ExitStats {
        self.stats
    }

    /// The backend.
    pub fn hv(&mut self) -> &mut H {
        &mut self.hv
    }

    /// Asks the hypervisor to terminate the guest. Returns only if the hypervisor ignores it
    /// (the kernel then halts forever).
    pub fn terminate(&mut self, reason: TerminateReason) {
        self.hv.msr_protocol(msr::terminate_request(reason));
    }

    /// One exit: fills the GHCB with `fill`, sets the exit code and infos, VMGEXITs and checks
    /// `SW_EXITINFO1`.
    fn call(
        &mut self,
        code: u64,
        info1: u64,
        info2: u64,
        fill: impl FnOnce(&mut Ghcb),
    ) -> Result<(), HvError> {
        self.ghcb.reset(self.version);
        self.ghcb.set(GhcbField::SwExitCode, code);
        self.ghcb.set(GhcbField::SwExitInfo1, info1);
        self.ghcb.set(GhcbField::SwExitInfo2, info2);
        fill(&mut self.ghcb);
        self.hv.exit(&mut self.ghcb);
        // SW_EXITINFO1/2 are read whether or not the hypervisor marked them valid (as Linux's
        // `verify_exception_info` does): an unanswered exit still holds the guest's own
        // values, which decode as an error for every exit whose SW_EXITINFO1 is not zero.
        let r1 = self.ghcb.page().sw_exit_info_1.get();
        let r2 = self.ghcb.page().sw_exit_info_2.get();
        nae::check_response(r1, r2)
    }

    /// The GPA of the GHCB's shared buffer (for `SW_SCRATCH`).
    fn shared_buffer_gpa(&self) -> u64 {
        self.hv.ghcb_gpa() + SHARED_BUFFER_OFFSET as u64
    }

    /// `OUT` of `value` (masked to `size`) to `port` (§4.1.2).
    pub fn io_out(&mut self, port: u16, size: IoSize, value: u32) -> Result<(), HvError> {
        self.stats.ioio += 1;
        let info = IoioInfo::simple(port, false, size).encode();
        self.call(exit_code::IOIO, info, 0, |g| {
            g.set(GhcbField::Rax, u64::from(value) & size.mask());
        })
    }

    /// `IN` of `size` from `port` (§4.1.2): the hypervisor must return `RAX`.
    pub fn io_in(&mut self, port: u16, size: IoSize) -> Result<u32, HvError> {
        self.stats.ioio += 1;
        let info = IoioInfo::simple(port, true, size).encode();
        self.call(exit_code::IOIO, info, 0, |g| g.set(GhcbField::Rax, 0))?;
        let rax = self
            .ghcb
            .get(GhcbField::Rax)
            .ok_or(HvError::MissingOutput("RAX"))?;
        Ok((rax & size.mask()) as u32)
    }

    /// `RDMSR` (§4.1.3): `RCX` in, `RAX`/`RDX` (low 32 bits each) out.
    pub fn rdmsr(&mut self, msr: u32) -> Result<u64, HvError> {
        self.stats.msr += 1;
        self.call(exit_code::MSR, nae::MSR_READ, 0, |g| {
            g.set(GhcbField::Rcx, u64::from(msr));
        })?;
        let lo = self
            .ghcb
            .get(GhcbField::Rax)
            .ok_or(HvError::MissingOutput("RAX"))?;
        let hi = self
            .ghcb
            .get(GhcbField::Rdx)
            .ok_or(HvError::MissingOutput("RDX"))?;
        Ok((lo & 0xFFFF_FFFF) | (hi << 32))
    }

    /// `WRMSR` (§4.1.3).
    pub fn wrmsr(&mut self, msr: u32, value: u64) -> Result<(), HvError> {
        self.stats.msr += 1;
        self.call(exit_code::MSR, nae::MSR_WRITE, 0, |g| {
            g.set(GhcbField::Rcx, u64::from(msr));
            g.set(GhcbField::Rax, value & 0xFFFF_FFFF);
            g.set(GhcbField::Rdx, value >> 32);
        })
    }

    /// MMIO read of `out.len()` bytes (1, 2, 4 or 8) at `gpa` (§4.1.5: `SW_EXITINFO1` = GPA,
    /// `SW_EXITINFO2` = length, `SW_SCRATCH` = the shared buffer, where the data comes back).
    pub fn mmio_read(&mut self, gpa: u64, out: &mut [u8]) -> Result<(), Error> {
        check_mmio_len(out.len())?;
        self.stats.mmio += 1;
        let scratch = self.shared_buffer_gpa();
        self.call(exit_code::MMIO_READ, gpa, out.len() as u64, |g| {
            g.set(GhcbField::SwScratch, scratch);
        })?;
        let n = out.len();
        out.copy_from_slice(&self.ghcb.shared_buffer()[..n]);
        Ok(())
    }

    /// MMIO write of `data` (1, 2, 4 or 8 bytes) at `gpa` (§4.1.5).
    pub fn mmio_write(&mut self, gpa: u64, data: &[u8]) -> Result<(), Error> {
        check_mmio_len(data.len())?;
        self.stats.mmio += 1;
        let scratch = self.shared_buffer_gpa();
        self.call(exit_code::MMIO_WRITE, gpa, data.len() as u64, |g| {
            g.set(GhcbField::SwScratch, scratch);
            g.shared_buffer_mut()[..data.len()].copy_from_slice(data);
        })?;
        Ok(())
    }

    /// Page-state change of `entries` through the GHCB (§4.1.6), in batches of at most
    /// [`PSC_MAX_ENTRIES`], resuming on partial progress. PVALIDATE is the caller's (see
    /// [`crate::pool`] for the order).
    pub fn page_state_change(&mut self, entries: &[PscEntry]) -> Result<(), Error> {
        for batch in entries.chunks(PSC_MAX_ENTRIES) {
            let mut cur = 0u16;
            loop {
                self.stats.psc += 1;
                let scratch = self.shared_buffer_gpa();
                let mut sent: Option<Result<PscHeader, PscError>> = None;
                self.call(exit_code::PSC, 0, 0, |g| {
                    g.set(GhcbField::SwScratch, scratch);
                    sent = Some(psc::write_descriptor(g.shared_buffer_mut(), cur, batch));
                })?;
                let sent = sent.ok_or(PscError::InvalidHeader)??;
                match self.ghcb.page().sw_exit_info_2.get() {
                    0 => {}
                    e => return Err(PscError::from_info2(e).into()),
                }
                let got = PscHeader::read(self.ghcb.shared_buffer());
                cur = psc::check_progress(sent, got)?;
                if cur > sent.end_entry {
                    break;
                }
            }
        }
        Ok(())
    }

    /// Page-state change of one page through the MSR protocol (before a GHCB exists, or for
    /// the GHCB page itself).
    pub fn msr_page_state_change(&mut self, gfn: u64, op: PageOp) -> Result<(), Error> {
        self.stats.msr_protocol += 1;
        let r = self.hv.msr_protocol(msr::psc_request(gfn, op)?);
        Ok(msr::parse_psc_response(r)?)
    }

    /// One guest-request exit (§4.1.8): the request and response pages are shared pages;
    /// `certs` = `(GPA, pages)` of the certificate buffer makes it the extended request
    /// (§4.1.8.1: `RAX` = buffer GPA, `RBX` = pages; on INVALID_LEN `RBX` returns the pages
    /// needed).
    pub fn guest_request(
        &mut self,
        request_gpa: u64,
        response_gpa: u64,
        certs: Option<(u64, u64)>,
    ) -> Result<GuestRequestStatus, HvError> {
        self.stats.guest_request += 1;
        let code = if certs.is_some() {
            exit_code::EXT_GUEST_REQUEST
        } else {
            exit_code::GUEST_REQUEST
        };
        self.call(code, request_gpa, response_gpa, |g| {
            if let Some((gpa, pages)) = certs {
                g.set(GhcbField::Rax, gpa);
                g.set(GhcbField::Rbx, pages);
            }
        })?;
        let info2 = self.ghcb.page().sw_exit_info_2.get();
        let vmm = (info2 >> 32) as u32;
        let fw = info2 as u32;
        Ok(match (vmm, fw) {
            (0, 0) => GuestRequestStatus::Done,
            (VMM_ERR_BUSY, _) => GuestRequestStatus::Busy,
            (VMM_ERR_INVALID_LEN, _) if certs.is_some() => {
                let pages = self
                    .ghcb
                    .get(GhcbField::Rbx)
                    .ok_or(HvError::MissingOutput("RBX"))?;
                GuestRequestStatus::InvalidLen { pages }
            }
            (0, fw) => GuestRequestStatus::FirmwareError(fw),
            (vmm, _) => GuestRequestStatus::VmmError(vmm),
        })
    }
}

/// The MMIO fault handler's device side over the GHCB: each emulated `mov` is one MMIO
/// read/write exit (56421 §4.1.5), its data in the GHCB shared buffer. Any failure of the
/// exit is [`MmioError::Backend`] (the guest terminates, reason 0x0A).
impl<H: Vmgexit> MmioBackend for GhcbSession<H> {
    fn read(&mut self, gpa: u64, width: Width) -> Result<u64, MmioError> {
        let mut v = [0u8; 8];
        let out = v
            .get_mut(..usize::from(width.bytes()))
            .ok_or(MmioError::Backend)?;
        self.mmio_read(gpa, out).map_err(|_| MmioError::Backend)?;
        Ok(u64::from_le_bytes(v))
    }

    fn write(&mut self, gpa: u64, width: Width, value: u64) -> Result<(), MmioError> {
        let v = value.to_le_bytes();
        let data = v
            .get(..usize::from(width.bytes()))
            .ok_or(MmioError::Backend)?;
        self.mmio_write(gpa, data).map_err(|_| MmioError::Backend)
    }
}

fn check_mmio_len(n: usize) -> Result<(), Error> {
    if matches!(n, 1 | 2 | 4 | 8) && n <= SHARED_BUFFER_SIZE {
        Ok(())
    } else {
        Err(Error::InvalidArgument("MMIO access length (1, 2, 4 or 8)"))
    }
}
