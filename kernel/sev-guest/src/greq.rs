//! The guest-request driver: attestation reports and derived keys from the AMD secure
//! processor, over `attest::snp::guest_msg` (AMD 56860 §7 "Guest Messages", Table 100 header)
//! and the guest-request exits (AMD 56421 §4.1.8, §4.1.8.1).
//!
//! Rules (the ones the Linux `sev-guest` driver applies, `drivers/virt/coco/sev-guest` and
//! `arch/x86/coco/sev`):
//! - The message sequence number is the AES-GCM IV: it is never reused. [`GuestMessenger`]
//!   seals each request with the next number and only accepts the response numbered after it.
//! - BUSY (VMM error 2): the hypervisor did not forward the request; the **same ciphertext**
//!   is sent again (after [`crate::Vmgexit::busy_backoff`]), at most `max_busy` times.
//! - INVALID_LEN (VMM error 1) on the extended request: the certificate buffer is too small and
//!   the request was not forwarded. The same ciphertext is sent again as a *plain* request so
//!   the firmware consumes the sequence number; the report comes back with
//!   [`Certs::TooSmall`] giving the pages needed.
//! - Anything else after the request left the guest (an exit error, a firmware or unknown VMM
//!   error, a response that fails authentication or carries the wrong sequence number): the
//!   firmware may or may not have consumed the sequence number, so VMPCK0 is wiped and every
//!   later request is refused ([`GreqError::Msg`] with `KeyWiped`).
//!
//! `MSG_KEY_REQ` mixes in POLICY, MEASUREMENT and TCB_VERSION ([`KEY_FIELDS`]): a key derived
//! at one TCB does not survive a firmware update (or a rollback), so data sealed with it must
//! be re-provisioned after the platform's TCB changes (see the crate README).

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use attest::snp::guest_msg::{
    DerivedKey, GuestMessenger, GuestMsgError, KeyReq, PAGE_SIZE, Vmpck, field_select,
};
use attest::snp::report::AttestationReport;
use zeroize::Zeroizing;

use crate::nae::HvError;
use crate::pool::{SharedBuf, SharedPool};
use crate::session::{GhcbSession, GuestRequestStatus};
use crate::{Error, Vmgexit};

/// The `GUEST_FIELD_SELECT` of every key request: policy, measurement and TCB version.
pub const KEY_FIELDS: u64 =
    field_select::GUEST_POLICY | field_select::MEASUREMENT | field_select::TCB_VERSION;

/// Default bound on BUSY resends.
pub const DEFAULT_MAX_BUSY: u32 = 64;

/// Guest-request failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GreqError {
    /// The message layer (includes `KeyWiped` once the VMPCK is gone, and authenticated
    /// firmware error statuses such as `FirmwareStatus(0x16)`).
    Msg(GuestMsgError),
    /// The exit failed (VMPCK wiped).
    Hv(HvError),
    /// The pool or shared memory failed (before sending: key kept; after: wiped).
    Memory(Error),
    /// Still BUSY after `max_busy` resends (VMPCK wiped).
    BusyExhausted(u32),
    /// The hypervisor answered INVALID_LEN to a plain request (VMPCK wiped).
    InvalidLenWithoutCerts,
    /// The firmware returned this status to the hypervisor (VMPCK wiped).
    Firmware(u32),
    /// An undefined VMM error code (VMPCK wiped).
    Vmm(u32),
}

impl fmt::Display for GreqError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Msg(e) => write!(f, "guest request: {e}"),
            Self::Hv(e) => write!(f, "guest request: {e}"),
            Self::Memory(e) => write!(f, "guest request: {e}"),
            Self::BusyExhausted(n) => write!(f, "guest request: still BUSY after {n} resends"),
            Self::InvalidLenWithoutCerts => {
                f.write_str("guest request: INVALID_LEN for a request without certificates")
            }
            Self::Firmware(s) => write!(f, "guest request: firmware error {s:#x}"),
            Self::Vmm(e) => write!(f, "guest request: VMM error {e:#x}"),
        }
    }
}

impl core::error::Error for GreqError {}

impl From<GuestMsgError> for GreqError {
    fn from(e: GuestMsgError) -> Self {
        Self::Msg(e)
    }
}

/// The certificate table that came with a report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Certs {
    /// No certificate buffer was offered (plain request).
    NotRequested,
    /// The raw table (56421 §4.1.8.1: GUID/offset/length entries ended by a zero entry, then
    /// the certificates), as large as the buffer; parse it before use.
    Table(Vec<u8>),
    /// The buffer was too small: the hypervisor needs this many pages.
    TooSmall {
        /// Pages needed.
        pages: u64,
    },
}

/// A report and its certificates.
#[derive(Debug)]
pub struct ReportOutcome {
    /// The format-validated (not yet verified) report.
    pub report: AttestationReport,
    /// The certificate table.
    pub certs: Certs,
}

/// The guest-request driver for VMPCK0 (or another VMPCK at a higher VMPL).
#[derive(Debug)]
pub struct GuestRequester {
    messenger: GuestMessenger,
    request: SharedBuf,
    response: SharedBuf,
    max_busy: u32,
}

impl GuestRequester {
    /// A driver for `vmpck` (index `vmpck_id`), with its request and response pages allocated
    /// from `pool`.
    pub fn new<H: Vmgexit>(
        vmpck: Vmpck,
        vmpck_id: u8,
        pool: &mut SharedPool,
        session: &mut GhcbSession<H>,
    ) -> Result<Self, Error> {
        let request = pool.alloc(session, 1)?;
        let response = match pool.alloc(session, 1) {
            Ok(r) => r,
            Err(e) => {
                pool.free(request)?;
                return Err(e);
            }
        };
        Ok(Self {
            messenger: GuestMessenger::new(vmpck, vmpck_id),
            request,
            response,
            max_busy: DEFAULT_MAX_BUSY,
        })
    }

    /// Sets the bound on BUSY resends.
    pub fn with_max_busy(mut self, max_busy: u32) -> Self {
        self.max_busy = max_busy;
        self
    }

    /// Whether VMPCK0 is still usable.
    pub fn is_usable(&self) -> bool {
        self.messenger.is_usable()
    }

    /// The last sequence number used.
    pub fn seqno(&self) -> u64 {
        self.messenger.seqno()
    }

    /// An attestation report binding `report_data` at VMPL 0; with `certs`, the extended
    /// request fills that shared buffer with the certificate table.
    pub fn report<H: Vmgexit>(
        &mut self,
        session: &mut GhcbSession<H>,
        pool: &SharedPool,
        report_data: [u8; 64],
        certs: Option<&SharedBuf>,
    ) -> Result<ReportOutcome, GreqError> {
        let msg = self.messenger.report_request(report_data, 0)?;
        let (page, certs) = self.exchange(session, pool, &msg, certs)?;
        let report = self.messenger.report_response(&page[..])?;
        Ok(ReportOutcome { report, certs })
    }

    /// A key derived from the VCEK and [`KEY_FIELDS`] at `tcb_version` (take it from a fresh
    /// report's `COMMITTED_TCB`: the firmware refuses a newer one).
    pub fn derived_key<H: Vmgexit>(
        &mut self,
        session: &mut GhcbSession<H>,
        pool: &SharedPool,
        tcb_version: u64,
    ) -> Result<DerivedKey, GreqError> {
        let mut req = KeyReq::new(KEY_FIELDS, 0);
        req.tcb_version = tcb_version.into();
        let msg = self.messenger.key_request(&req)?;
        let (page, _) = self.exchange(session, pool, &msg, None)?;
        Ok(self.messenger.key_response(&page[..])?)
    }

    fn wipe(&mut self) {
        self.messenger.abandon();
    }

    /// Sends a sealed request and returns the response page; applies the rules of the module
    /// doc. On any failure after the request was handed out, the key is wiped.
    fn exchange<H: Vmgexit>(
        &mut self,
        session: &mut GhcbSession<H>,
        pool: &SharedPool,
        msg: &[u8],
        certs: Option<&SharedBuf>,
    ) -> Result<(Zeroizing<Vec<u8>>, Certs), GreqError> {
        let mut page = vec![0u8; PAGE_SIZE];
        if let Some(dst) = page.get_mut(..msg.len()) {
            dst.copy_from_slice(msg);
        } else {
            self.wipe();
            return Err(GreqError::Msg(GuestMsgError::PayloadTooLarge(msg.len())));
        }
        let mut ext = certs.map(|c| (c.gpa(), c.pages() as u64));
        let mut too_small = None;
        let mut busy = 0u32;
        loop {
            // The shared request page is rewritten from the private copy on every send: the
            // host may have changed it, and only this exact ciphertext may go out.
            if let Err(e) = pool.write(session, &self.request, 0, &page) {
                self.wipe();
                return Err(GreqError::Memory(e));
            }
            let status = session.guest_request(self.request.gpa(), self.response.gpa(), ext);
            match status {
                Ok(GuestRequestStatus::Done) => break,
                Ok(GuestRequestStatus::Busy) => {
                    busy += 1;
                    if busy > self.max_busy {
                        self.wipe();
                        return Err(GreqError::BusyExhausted(self.max_busy));
                    }
                    session.hv().busy_backoff(busy);
                }
                Ok(GuestRequestStatus::InvalidLen { pages }) => {
                    // Retry the same message without certificates so the sequence advances.
                    too_small = Some(pages);
                    ext = None;
                }
                Ok(GuestRequestStatus::FirmwareError(fw)) => {
                    self.wipe();
                    return Err(GreqError::Firmware(fw));
                }
                Ok(GuestRequestStatus::VmmError(v)) => {
                    self.wipe();
                    return Err(if v == crate::session::VMM_ERR_INVALID_LEN {
                        GreqError::InvalidLenWithoutCerts
                    } else {
                        GreqError::Vmm(v)
                    });
                }
                Err(e) => {
                    self.wipe();
                    return Err(GreqError::Hv(e));
                }
            }
        }
        let mut rsp = Zeroizing::new(vec![0u8; PAGE_SIZE]);
        if let Err(e) = pool.read(session, &self.response, 0, &mut rsp) {
            self.wipe();
            return Err(GreqError::Memory(e));
        }
        let certs = match (certs, too_small) {
            (_, Some(pages)) => Certs::TooSmall { pages },
            (None, None) => Certs::NotRequested,
            (Some(buf), None) => {
                let mut table = vec![0u8; buf.len()];
                if let Err(e) = pool.read(session, buf, 0, &mut table) {
                    self.wipe();
                    return Err(GreqError::Memory(e));
                }
                Certs::Table(table)
            }
        };
        Ok((rsp, certs))
    }
}
