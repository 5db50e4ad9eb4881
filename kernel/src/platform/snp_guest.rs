//! The SEV-SNP attestation backend: VMPCK0 from the secrets page, guest requests through the
//! GHCB.
//!
//! - The Confidential Computing blob (EDK2 `ConfidentialComputingSevSnpBlob.h`, found in the
//!   UEFI configuration table, [`crate::uefi::BootInfo::snp_cc_blob`]) names the secrets page;
//!   VMPCK0 is copied out of it (AMD 56860 Table 73, `VMPCK0` at 20h) into a zeroizing key and
//!   the page's four VMPCKs are wiped, so the driver holds the only copy and wiping it (below)
//!   leaves none.
//! - Requests go through `sev_guest::greq` over the established [`GhcbSession`]
//!   (AMD 56421 §4.1.8 "SNP Guest Request", §4.1.8.1 "SNP Extended Guest Request"): the request
//!   and response pages and the certificate buffer are pages of the shared DMA pool
//!   ([`crate::dma::with_ghcb_pool`]); BUSY resends the same ciphertext, INVALID_LEN on the
//!   extended request resends it as a plain request (the sequence number is consumed) and says
//!   how many pages the table needs, and any other failure wipes VMPCK0 for good, as Linux's
//!   `sev-guest` driver does.
//! - The derived key (`MSG_KEY_REQ`) mixes in POLICY, MEASUREMENT **and TCB_VERSION**
//!   (`sev_guest::greq::KEY_FIELDS`), at the `COMMITTED_TCB` of a fresh report: a firmware (TCB)
//!   update changes the key, and the KMS must then be re-provisioned (docs/operations.md).
//!
//! Where it runs: on SEV-SNP hardware (selected whatever `ckms.attestation` says but
//! `emulated`, which is refused there; not run on hardware here), and in the loopback-GHCB
//! test build, whose stub plays the PSP at launch (secrets page, CC blob) and forwards each
//! guest request to `snp-emu` (`src/loopback.rs`).
//!
//! [`GhcbSession`]: sev_guest::GhcbSession

use alloc::vec::Vec;
use core::fmt;

use attest::snp::report::AttestationReport;
use sev_guest::ccblob::{CcBlob, CcBlobError, SecretsPage, secrets};
use sev_guest::greq::{Certs, GreqError, GuestRequester};
use zeroize::Zeroizing;

use super::{Capabilities, DerivedKey, PlatformError, PlatformKind, PlatformOps};
use crate::dma::{self, DmaError};

/// Size of the CC blob's layout (`sev_guest::ccblob::CcBlobRaw`).
const CC_BLOB_LEN: usize = 40;
/// The first certificate buffer: one page. A larger table is answered INVALID_LEN with the
/// pages needed, and the buffer grows once to that size.
const FIRST_CERT_PAGES: usize = 1;
/// Most pages a certificate buffer may take (a VCEK/ASK/ARK table is a few KiB).
const MAX_CERT_PAGES: u64 = 16;

/// Why the backend could not start (the boot stops).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnpSetupError {
    /// The firmware published no CC blob.
    NoCcBlob,
    /// The CC blob or the secrets page is malformed.
    CcBlob(CcBlobError),
    /// The secrets page holds no VMPCK0.
    NoVmpck0,
    /// The request/response pages could not be taken from the shared pool.
    Pool(DmaError),
}

impl fmt::Display for SnpSetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoCcBlob => f.write_str("SNP: no Confidential Computing blob"),
            Self::CcBlob(e) => write!(f, "SNP: {e}"),
            Self::NoVmpck0 => f.write_str("SNP: the secrets page holds no VMPCK0"),
            Self::Pool(e) => write!(f, "SNP guest requests: {e}"),
        }
    }
}

/// The SNP backend.
pub struct SnpGuest {
    requester: GuestRequester,
    /// The certificate table, fetched once (it does not change while the guest runs).
    cert_table: Option<Vec<u8>>,
}

fn greq_error(e: GreqError) -> PlatformError {
    match e {
        GreqError::Firmware(s) => PlatformError::Firmware(s),
        GreqError::Msg(attest::snp::guest_msg::GuestMsgError::FirmwareStatus(s)) => {
            PlatformError::Firmware(s)
        }
        GreqError::Msg(_) => PlatformError::Protocol("guest message refused (VMPCK0 wiped)"),
        GreqError::Hv(_) => PlatformError::Transport("guest-request exit failed (VMPCK0 wiped)"),
        GreqError::Memory(_) => PlatformError::Transport("shared pool (guest request)"),
        GreqError::BusyExhausted(_) => {
            PlatformError::Transport("hypervisor still BUSY (VMPCK0 wiped)")
        }
        GreqError::InvalidLenWithoutCerts | GreqError::Vmm(_) => {
            PlatformError::Transport("hypervisor refused the guest request (VMPCK0 wiped)")
        }
    }
}

fn dma_error(_: DmaError) -> PlatformError {
    PlatformError::Transport("no GHCB session or shared pool")
}

impl SnpGuest {
    /// Reads VMPCK0 from the secrets page the CC blob at `cc_blob_gpa` names, wipes the page's
    /// VMPCKs and takes the request/response pages from the shared pool.
    pub fn new(cc_blob_gpa: Option<u64>) -> Result<Self, SnpSetupError> {
        let gpa = cc_blob_gpa.ok_or(SnpSetupError::NoCcBlob)?;
        let mut raw = [0u8; CC_BLOB_LEN];
        // SAFETY: the CC blob's address comes from the firmware's configuration table (the
        // loopback stub's, in that build): identity-mapped RAM the firmware reserved for it,
        // at least the layout's 40 bytes; read into a local buffer.
        unsafe { core::ptr::copy_nonoverlapping(gpa as *const u8, raw.as_mut_ptr(), raw.len()) };
        let blob = CcBlob::parse(&raw).map_err(SnpSetupError::CcBlob)?;
        let mut page = Zeroizing::new([0u8; 4096]);
        // SAFETY: `CcBlob::parse` checked the secrets page is page-aligned, non-zero and 4 KiB;
        // it is identity-mapped RAM the firmware reserved (validated private on SNP).
        unsafe {
            core::ptr::copy_nonoverlapping(
                blob.secrets_gpa as *const u8,
                page.as_mut_ptr(),
                page.len(),
            )
        };
        let secrets = SecretsPage::parse(&page[..]).map_err(SnpSetupError::CcBlob)?;
        // SAFETY: the same page; 4 VMPCKs from 20h end at A0h, inside it. Nothing else reads
        // them: from here on the driver's key is the only copy.
        unsafe {
            core::ptr::write_bytes(
                (blob.secrets_gpa as *mut u8).add(secrets::VMPCK0),
                0,
                4 * secrets::VMPCK_LEN,
            )
        };
        let vmpck = secrets.vmpck(0).ok_or(SnpSetupError::NoVmpck0)?;
        let requester = dma::with_ghcb_pool(|pool, s| GuestRequester::new(vmpck, 0, pool, s))
            .map_err(SnpSetupError::Pool)?
            .map_err(|e| SnpSetupError::Pool(DmaError::Pool(e)))?;
        log::info!(
            "snp: VMPCK0 from the secrets page (version {}); guest requests through the GHCB",
            secrets.version
        );
        Ok(Self {
            requester,
            cert_table: None,
        })
    }

    fn report(&mut self, report_data: [u8; 64]) -> Result<AttestationReport, PlatformError> {
        let requester = &mut self.requester;
        dma::with_ghcb_pool(|pool, s| requester.report(s, pool, report_data, None))
            .map_err(dma_error)?
            .map(|o| o.report)
            .map_err(greq_error)
    }

    /// One extended request with a `pages`-page certificate buffer taken from the pool (and
    /// returned to it afterwards; its pages stay shared for later DMA).
    fn extended(&mut self, pages: usize) -> Result<Certs, PlatformError> {
        let requester = &mut self.requester;
        dma::with_ghcb_pool(|pool, s| {
            let buf = pool
                .alloc(s, pages)
                .map_err(|_| PlatformError::Transport("shared pool (certificate buffer)"))?;
            let r = requester.report(s, pool, [0; 64], Some(&buf));
            pool.free(buf)
                .map_err(|_| PlatformError::Transport("shared pool (certificate buffer)"))?;
            r.map(|o| o.certs).map_err(greq_error)
        })
        .map_err(dma_error)?
    }
}

impl PlatformOps for SnpGuest {
    fn kind(&self) -> PlatformKind {
        PlatformKind::Snp
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            attestation: true,
            derived_key: true,
            // Not yet: the page tables carry no C-bit (kernel/README.md).
            memory_encryption: false,
        }
    }

    fn attestation_report(&mut self, report_data: &[u8; 64]) -> Result<Vec<u8>, PlatformError> {
        Ok(self.report(*report_data)?.to_bytes().to_vec())
    }

    fn derived_key(&mut self) -> Result<Option<DerivedKey>, PlatformError> {
        // The firmware refuses a TCB above COMMITTED_TCB: take it from a fresh report.
        let tcb = self.report([0; 64])?.committed_tcb.get();
        let requester = &mut self.requester;
        let key = dma::with_ghcb_pool(|pool, s| requester.derived_key(s, pool, tcb))
            .map_err(dma_error)?
            .map_err(greq_error)?;
        Ok(Some(DerivedKey(key.0)))
    }

    fn cert_table(&mut self) -> Result<Vec<u8>, PlatformError> {
        if let Some(t) = &self.cert_table {
            return Ok(t.clone());
        }
        let mut pages = FIRST_CERT_PAGES;
        for _ in 0..2 {
            match self.extended(pages)? {
                Certs::Table(t) => {
                    self.cert_table = Some(t.clone());
                    return Ok(t);
                }
                Certs::TooSmall { pages: need } if (1..=MAX_CERT_PAGES).contains(&need) => {
                    log::debug!("snp: certificate table needs {need} pages (INVALID_LEN)");
                    pages = need as usize;
                }
                Certs::TooSmall { .. } | Certs::NotRequested => break,
            }
        }
        Err(PlatformError::Protocol(
            "certificate table: no buffer size the hypervisor accepts",
        ))
    }
}
