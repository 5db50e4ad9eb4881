//! The TD event log (CCEL) and its replay into RTMR0–3.
//!
//! Format: the TCG PC Client Platform Firmware Profile (PFP) crypto-agile log, rev 1.05 §10.2:
//! - the first event is a `TCG_PCClientPCREvent` in SHA-1 format (u32 index, u32 type =
//!   EV_NO_ACTION, 20-byte digest, u32 size, data) whose data is the `TCG_EfiSpecIDEvent`
//!   ("Spec ID Event03\0", platform class, version, uintn size, the list of
//!   `{u16 algorithm id, u16 digest size}`, vendor info);
//! - then `TCG_PCR_EVENT2`s: u32 index, u32 type, `TPML_DIGEST_VALUES` (u32 count, then per
//!   digest a u16 algorithm id and that algorithm's digest, sizes taken from the Spec ID event),
//!   u32 event size, event data.
//!
//! In a TD the log is the CC event log of the UEFI spec 2.10 §38.4 (`EFI_CC_EVENT`): the first
//! field is the CC measurement-register index, 0 = MRTD, 1..=4 = RTMR0..3 (TDVF Design Guide
//! rev 1.01 §10.1.2, Table 10-2 maps PCR 0 → MRTD, PCR 1, 7 → RTMR0, PCR 2–6 → RTMR1, PCR 8–15
//! → RTMR2, and the log carries the MR index, so RTMR index = MR index − 1). The ACPI CCEL table
//! gives the log area; free space after the last event is filled with 0xFF (or zeros), which
//! ends the log here.
//!
//! Replay (TDX Module ABI, TDG.MR.RTMR.EXTEND): every RTMR starts at 48 zero bytes and each
//! event that is not EV_NO_ACTION extends RTMR[MR index − 1] with its SHA-384 digest.

use alloc::vec::Vec;
use core::fmt;

use sha2::{Digest, Sha384};
use subtle::ConstantTimeEq;

use crate::measure::tdx::rtmr_extend;

/// TCG algorithm id of SHA-384.
pub const TPM_ALG_SHA384: u16 = 0x000C;
/// TCG algorithm id of SHA-1.
pub const TPM_ALG_SHA1: u16 = 0x0004;
/// EV_NO_ACTION: informational, never extended.
pub const EV_NO_ACTION: u32 = 0x0000_0003;
/// EV_SEPARATOR (TCG PFP §10.4.1).
pub const EV_SEPARATOR: u32 = 0x0000_0004;
/// EV_EVENT_TAG: the command line (Linux's EFI stub and TDVF measure the LoadOptions this way).
pub const EV_EVENT_TAG: u32 = 0x0000_0006;
/// EV_EFI_BOOT_SERVICES_APPLICATION: a UEFI application loaded; the digest is its PE
/// Authenticode hash (TCG PFP §10.4.4 / §3.3.4.4).
pub const EV_EFI_BOOT_SERVICES_APPLICATION: u32 = 0x8000_0003;
/// EV_EFI_ACTION: a string describing a firmware action, digested as is.
pub const EV_EFI_ACTION: u32 = 0x8000_0007;
/// Largest event data accepted (bounds what a hostile log can make a verifier allocate/hash).
pub const MAX_EVENT_DATA: usize = 1 << 20;
/// Most events accepted in one log.
pub const MAX_EVENTS: usize = 4096;
/// Most digest algorithms in the Spec ID event.
pub const MAX_ALGORITHMS: usize = 8;

const SPEC_ID_SIGNATURE: &[u8; 16] = b"Spec ID Event03\0";

/// Why an event log does not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventLogError {
    /// The log ends inside event `index` (its header, digests or data).
    Truncated {
        /// Event number (0 = the Spec ID event).
        index: usize,
    },
    /// Event `index` declares more data than [`MAX_EVENT_DATA`].
    Oversized {
        /// Event number.
        index: usize,
        /// Declared size.
        size: u32,
    },
    /// The first event is not a valid Spec ID event (type, signature, algorithm list).
    BadSpecId,
    /// The Spec ID event does not list SHA-384.
    NoSha384,
    /// Event `index` uses an algorithm the Spec ID event does not declare, or lists more
    /// digests than algorithms.
    BadDigests {
        /// Event number.
        index: usize,
    },
    /// Event `index` carries no SHA-384 digest.
    MissingSha384 {
        /// Event number.
        index: usize,
    },
    /// Event `index` extends MR index `mr` (only 1..=4, RTMR0..3, can be extended).
    BadMrIndex {
        /// Event number.
        index: usize,
        /// The MR index.
        mr: u32,
    },
    /// More than [`MAX_EVENTS`] events.
    TooManyEvents,
}

impl fmt::Display for EventLogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { index } => write!(f, "event log truncated in event {index}"),
            Self::Oversized { index, size } => {
                write!(f, "event {index} declares {size} bytes of data")
            }
            Self::BadSpecId => f.write_str("the first event is not a Spec ID event"),
            Self::NoSha384 => f.write_str("the event log has no SHA-384 digests"),
            Self::BadDigests { index } => write!(f, "event {index} has malformed digests"),
            Self::MissingSha384 { index } => write!(f, "event {index} has no SHA-384 digest"),
            Self::BadMrIndex { index, mr } => {
                write!(f, "event {index} extends measurement register {mr}")
            }
            Self::TooManyEvents => f.write_str("too many events"),
        }
    }
}

impl core::error::Error for EventLogError {}

/// Why a parsed event log does not vouch for the quote and the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplayError {
    /// RTMR`index` recomputed from the events differs from the quote's.
    RtmrMismatch {
        /// RTMR number (0..=3).
        index: usize,
    },
    /// RTMR1 has no EV_EFI_BOOT_SERVICES_APPLICATION event: the kernel load is not in the log.
    NoKernelEvent,
    /// An EV_EFI_BOOT_SERVICES_APPLICATION event of RTMR1 is not the expected kernel's
    /// Authenticode SHA-384 (another or a second application was loaded).
    KernelMismatch {
        /// Event number (1 = the first after the Spec ID event).
        index: usize,
    },
    /// RTMR2 has no event whose digest is the expected command line's.
    NoCmdlineEvent,
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RtmrMismatch { index } => write!(
                f,
                "RTMR{index} replayed from the event log differs from the quote's"
            ),
            Self::NoKernelEvent => f.write_str("the event log records no kernel load in RTMR1"),
            Self::KernelMismatch { index } => write!(
                f,
                "event {index} loads an application that is not the expected kernel"
            ),
            Self::NoCmdlineEvent => {
                f.write_str("the event log records no event for the expected command line")
            }
        }
    }
}

impl core::error::Error for ReplayError {}

/// What a replayed log must show besides the quote's RTMRs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogExpectation {
    /// The kernel's Authenticode SHA-384 (`measure::tdx::authenticode_sha384`): every
    /// EV_EFI_BOOT_SERVICES_APPLICATION event of RTMR1 must carry it, and there must be one.
    pub kernel: Option<[u8; 48]>,
    /// The command line's digest (`measure::tdx::cmdline_digest`): some RTMR2 event carries it.
    pub cmdline: Option<[u8; 48]>,
}

/// One event, borrowing the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event<'a> {
    /// CC measurement-register index (0 = MRTD, 1..=4 = RTMR0..3).
    pub mr_index: u32,
    /// Event type (TCG PFP §10.4.1).
    pub event_type: u32,
    /// The SHA-384 digest.
    pub sha384: [u8; 48],
    /// Event data.
    pub data: &'a [u8],
}

impl Event<'_> {
    /// The RTMR this event extends (`None` for EV_NO_ACTION).
    pub fn rtmr(&self) -> Option<usize> {
        if self.event_type == EV_NO_ACTION {
            return None;
        }
        (self.mr_index as usize).checked_sub(1)
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    index: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], EventLogError> {
        let (head, rest) = self
            .bytes
            .split_at_checked(n)
            .ok_or(EventLogError::Truncated { index: self.index })?;
        self.bytes = rest;
        Ok(head)
    }
    fn u16(&mut self) -> Result<u16, EventLogError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, EventLogError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn data(&mut self) -> Result<&'a [u8], EventLogError> {
        let size = self.u32()?;
        if size as usize > MAX_EVENT_DATA {
            return Err(EventLogError::Oversized {
                index: self.index,
                size,
            });
        }
        self.take(size as usize)
    }
    /// Free space: nothing left, or the next event header is all 0xFF or all zero.
    fn at_end(&self) -> bool {
        match self.bytes.get(..8) {
            None => self.bytes.iter().all(|b| *b == 0xFF || *b == 0),
            Some(h) => h.iter().all(|b| *b == 0xFF) || h.iter().all(|b| *b == 0),
        }
    }
}

/// A parsed event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventLog<'a> {
    /// The digest algorithms and sizes the Spec ID event declares.
    pub algorithms: Vec<(u16, u16)>,
    /// The events after the Spec ID event, in order.
    pub events: Vec<Event<'a>>,
    /// Bytes the Spec ID event and the events occupy: the offset of the free space after the
    /// last event (see [`used_len`]).
    pub len: usize,
}

impl<'a> EventLog<'a> {
    /// Parse a crypto-agile log (the CCEL log area; trailing free space is allowed).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, EventLogError> {
        let mut r = Reader { bytes, index: 0 };
        // TCG_PCClientPCREvent (SHA-1 format) holding TCG_EfiSpecIDEvent.
        let _mr = r.u32()?;
        if r.u32()? != EV_NO_ACTION {
            return Err(EventLogError::BadSpecId);
        }
        r.take(20)?;
        let spec = r.data()?;
        let algorithms = parse_spec_id(spec)?;
        if !algorithms
            .iter()
            .any(|&(a, s)| a == TPM_ALG_SHA384 && s == 48)
        {
            return Err(EventLogError::NoSha384);
        }
        let mut events = Vec::new();
        while !r.at_end() {
            if events.len() == MAX_EVENTS {
                return Err(EventLogError::TooManyEvents);
            }
            r.index = events.len() + 1;
            let index = r.index;
            let mr_index = r.u32()?;
            let event_type = r.u32()?;
            let count = r.u32()? as usize;
            if count > algorithms.len() {
                return Err(EventLogError::BadDigests { index });
            }
            let mut sha384 = None;
            for _ in 0..count {
                let alg = r.u16()?;
                let &(_, size) = algorithms
                    .iter()
                    .find(|(a, _)| *a == alg)
                    .ok_or(EventLogError::BadDigests { index })?;
                let d = r.take(size as usize)?;
                if alg == TPM_ALG_SHA384 {
                    let mut x = [0u8; 48];
                    x.copy_from_slice(d);
                    sha384 = Some(x);
                }
            }
            let data = r.data()?;
            let sha384 = sha384.ok_or(EventLogError::MissingSha384 { index })?;
            let ev = Event {
                mr_index,
                event_type,
                sha384,
                data,
            };
            if event_type != EV_NO_ACTION && !(1..=4).contains(&mr_index) {
                return Err(EventLogError::BadMrIndex {
                    index,
                    mr: mr_index,
                });
            }
            events.push(ev);
        }
        let len = bytes.len() - r.bytes.len();
        Ok(Self {
            algorithms,
            events,
            len,
        })
    }

    /// Recompute RTMR0..3 from the events.
    pub fn replay(&self) -> [[u8; 48]; 4] {
        let mut rtmr = [[0u8; 48]; 4];
        for ev in &self.events {
            if let Some(slot) = ev.rtmr().and_then(|i| rtmr.get_mut(i)) {
                *slot = rtmr_extend(slot, &ev.sha384);
            }
        }
        rtmr
    }

    /// Replays the log and checks it against the quote's RTMR0..3 (all four must be equal) and
    /// `want`: the kernel-load events of RTMR1 and the command-line event of RTMR2. Only after
    /// this do the events' *meaning* (which kernel, which command line) follow from the quote.
    pub fn check(
        &self,
        quote_rtmr: &[[u8; 48]; 4],
        want: &LogExpectation,
    ) -> Result<(), ReplayError> {
        let replayed = self.replay();
        for (index, (r, q)) in replayed.iter().zip(quote_rtmr).enumerate() {
            if !bool::from(r.ct_eq(q)) {
                return Err(ReplayError::RtmrMismatch { index });
            }
        }
        let in_rtmr = |i: usize| {
            self.events
                .iter()
                .enumerate()
                .filter(move |(_, e)| e.rtmr() == Some(i))
        };
        if let Some(kernel) = &want.kernel {
            let mut loads = in_rtmr(1)
                .filter(|(_, e)| e.event_type == EV_EFI_BOOT_SERVICES_APPLICATION)
                .peekable();
            if loads.peek().is_none() {
                return Err(ReplayError::NoKernelEvent);
            }
            if let Some((i, _)) = loads.find(|(_, e)| e.sha384 != *kernel) {
                return Err(ReplayError::KernelMismatch { index: i + 1 });
            }
        }
        if let Some(cmdline) = &want.cmdline
            && !in_rtmr(2).any(|(_, e)| e.sha384 == *cmdline)
        {
            return Err(ReplayError::NoCmdlineEvent);
        }
        Ok(())
    }
}

/// The length of the log at the start of a CCEL log area (`area`): up to the end of its last
/// event, without the free space (0xFF or zeros) after it. A TD ships only these bytes with its
/// evidence; a verifier parses them exactly as the whole area ([`EventLog::parse`]).
pub fn used_len(area: &[u8]) -> Result<usize, EventLogError> {
    EventLog::parse(area).map(|l| l.len)
}

/// The log a TDVF direct boot of a UEFI kernel writes for RTMR1 and RTMR2 (the sequence
/// [`crate::measure::tdx::rtmr1_direct_boot`] and [`crate::measure::tdx::rtmr2_cmdline`]
/// assume): the kernel's Authenticode SHA-384 (EV_EFI_BOOT_SERVICES_APPLICATION), EV_EFI_ACTION
/// "Calling EFI Application from Boot Option", the EV_SEPARATOR, the two ExitBootServices
/// EV_EFI_ACTIONs (MR index 2 = RTMR1), then the command line as UCS-2 with its NUL
/// (EV_EVENT_TAG, MR index 3 = RTMR2). TDVF Design Guide §10.1.2 (Table 10-2, PCR → RTMR).
///
/// `tdx-emu` serves it for the loopback-TDX build, whose firmware (plain OVMF outside a TD)
/// writes no CCEL: a log *synthesised* to agree with the RTMRs the emulator reports, not one a
/// firmware wrote.
pub fn direct_boot_log(kernel_authenticode: &[u8; 48], cmdline: &str) -> Vec<u8> {
    let action = |s: &[u8]| -> [u8; 48] { Sha384::digest(s).into() };
    let calling = b"Calling EFI Application from Boot Option";
    let exit = b"Exit Boot Services Invocation";
    let exited = b"Exit Boot Services Returned with Success";
    let ucs2: Vec<u8> = cmdline
        .encode_utf16()
        .chain([0])
        .flat_map(u16::to_le_bytes)
        .collect();
    EventLogBuilder::new()
        .event(
            2,
            EV_EFI_BOOT_SERVICES_APPLICATION,
            kernel_authenticode,
            b"kms.efi (direct boot)",
        )
        .event(2, EV_EFI_ACTION, &action(calling), calling)
        .event(2, EV_SEPARATOR, &action(&[0; 4]), &[0; 4])
        .event(2, EV_EFI_ACTION, &action(exit), exit)
        .event(2, EV_EFI_ACTION, &action(exited), exited)
        .event(
            3,
            EV_EVENT_TAG,
            &crate::measure::tdx::cmdline_digest(cmdline),
            &ucs2,
        )
        .finish()
}

fn parse_spec_id(spec: &[u8]) -> Result<Vec<(u16, u16)>, EventLogError> {
    let bad = |_| EventLogError::BadSpecId;
    let mut r = Reader {
        bytes: spec,
        index: 0,
    };
    if r.take(16).map_err(bad)? != SPEC_ID_SIGNATURE {
        return Err(EventLogError::BadSpecId);
    }
    // platformClass u32, specVersionMinor, specVersionMajor, specErrata, uintnSize (u8 each).
    r.take(8).map_err(bad)?;
    let n = r.u32().map_err(bad)? as usize;
    if n == 0 || n > MAX_ALGORITHMS {
        return Err(EventLogError::BadSpecId);
    }
    let mut algorithms = Vec::with_capacity(n);
    for _ in 0..n {
        let alg = r.u16().map_err(bad)?;
        let size = r.u16().map_err(bad)?;
        if size == 0 || size > 64 {
            return Err(EventLogError::BadSpecId);
        }
        algorithms.push((alg, size));
    }
    let vendor = r.take(1).map_err(bad)?;
    r.take(usize::from(vendor[0])).map_err(bad)?;
    Ok(algorithms)
}

/// Builds logs in the format [`EventLog::parse`] reads (for emulators and tests): a Spec ID
/// event declaring SHA-384 only, then `TCG_PCR_EVENT2`s.
#[derive(Debug, Clone)]
pub struct EventLogBuilder {
    bytes: Vec<u8>,
}

impl Default for EventLogBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl EventLogBuilder {
    /// A log with the Spec ID event.
    pub fn new() -> Self {
        let mut spec = Vec::new();
        spec.extend_from_slice(SPEC_ID_SIGNATURE);
        spec.extend_from_slice(&0u32.to_le_bytes()); // platform class: client
        spec.extend_from_slice(&[0, 2, 0, 2]); // version 2.0, errata 0, uintn size 2 (64-bit)
        spec.extend_from_slice(&1u32.to_le_bytes());
        spec.extend_from_slice(&TPM_ALG_SHA384.to_le_bytes());
        spec.extend_from_slice(&48u16.to_le_bytes());
        spec.push(0);
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&0u32.to_le_bytes());
        bytes.extend_from_slice(&EV_NO_ACTION.to_le_bytes());
        bytes.extend_from_slice(&[0; 20]);
        bytes.extend_from_slice(&(spec.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&spec);
        Self { bytes }
    }
    /// Append an event with this SHA-384 digest.
    pub fn event(mut self, mr_index: u32, event_type: u32, sha384: &[u8; 48], data: &[u8]) -> Self {
        self.bytes.extend_from_slice(&mr_index.to_le_bytes());
        self.bytes.extend_from_slice(&event_type.to_le_bytes());
        self.bytes.extend_from_slice(&1u32.to_le_bytes());
        self.bytes.extend_from_slice(&TPM_ALG_SHA384.to_le_bytes());
        self.bytes.extend_from_slice(sha384);
        self.bytes
            .extend_from_slice(&(data.len() as u32).to_le_bytes());
        self.bytes.extend_from_slice(data);
        self
    }
    /// The log bytes.
    pub fn finish(self) -> Vec<u8> {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::tdx::{
        authenticode_sha384, cmdline_digest, rtmr_replay, rtmr1_direct_boot, rtmr2_cmdline,
    };

    fn h(b: &[u8]) -> [u8; 48] {
        Sha384::digest(b).into()
    }

    fn log() -> Vec<u8> {
        EventLogBuilder::new()
            .event(1, EV_SEPARATOR, &h(&[0; 4]), &[0; 4])
            .event(2, 0x8000_0003, &h(b"kernel"), b"image path")
            .event(
                2,
                EV_EFI_ACTION,
                &h(b"Exit Boot Services Invocation"),
                b"Exit Boot Services Invocation",
            )
            .event(0, EV_NO_ACTION, &[9; 48], b"informational")
            .event(3, 0x0000_0006, &h(b"cmdline"), b"")
            .finish()
    }

    #[test]
    fn parse_and_replay() {
        let mut bytes = log();
        bytes.extend_from_slice(&[0xFF; 64]); // free log area
        let l = EventLog::parse(&bytes).unwrap();
        assert_eq!(l.algorithms, [(TPM_ALG_SHA384, 48)]);
        assert_eq!(l.events.len(), 5);
        assert_eq!(l.events[1].data, b"image path");
        assert_eq!(l.events[3].rtmr(), None);
        let r = l.replay();
        // An independent fold over the expected per-RTMR digests.
        assert_eq!(r[0], rtmr_replay([&h(&[0; 4])]));
        assert_eq!(
            r[1],
            rtmr_replay([&h(b"kernel"), &h(b"Exit Boot Services Invocation")])
        );
        assert_eq!(r[2], rtmr_replay([&h(b"cmdline")]));
        assert_eq!(r[3], [0; 48]);
        // Zero-filled free space ends the log too.
        let mut z = log();
        z.extend_from_slice(&[0; 100]);
        assert_eq!(EventLog::parse(&z).unwrap().replay(), r);
    }

    #[test]
    fn multi_algorithm_log() {
        // A Spec ID event listing SHA-1 and SHA-384; events carry both, SHA-1 first.
        let mut b = EventLogBuilder::new().finish();
        // Patch the Spec ID event: 2 algorithms.
        let spec_start = 32;
        let mut spec = Vec::new();
        spec.extend_from_slice(SPEC_ID_SIGNATURE);
        spec.extend_from_slice(&[0, 0, 0, 0, 0, 2, 0, 2]);
        spec.extend_from_slice(&2u32.to_le_bytes());
        spec.extend_from_slice(&[0x04, 0, 20, 0, 0x0C, 0, 48, 0, 0]);
        b.truncate(spec_start - 4);
        b.extend_from_slice(&(spec.len() as u32).to_le_bytes());
        b.extend_from_slice(&spec);
        b.extend_from_slice(&2u32.to_le_bytes());
        b.extend_from_slice(&4u32.to_le_bytes());
        b.extend_from_slice(&2u32.to_le_bytes());
        b.extend_from_slice(&[0x04, 0]);
        b.extend_from_slice(&[1; 20]);
        b.extend_from_slice(&[0x0C, 0]);
        b.extend_from_slice(&[2; 48]);
        b.extend_from_slice(&0u32.to_le_bytes());
        let l = EventLog::parse(&b).unwrap();
        assert_eq!(l.algorithms, [(TPM_ALG_SHA1, 20), (TPM_ALG_SHA384, 48)]);
        assert_eq!(l.events[0].sha384, [2; 48]);
        assert_eq!(l.replay()[1], rtmr_extend(&[0; 48], &[2; 48]));
    }

    #[test]
    fn malformed_logs() {
        let good = log();
        // Every truncation inside an event is reported with that event's number.
        let first_event_end = 32 + 16 + 8 + 4 + 4 + 1;
        assert_eq!(first_event_end, EventLogBuilder::new().finish().len());
        for cut in [3, 20, 40, first_event_end - 1] {
            assert_eq!(
                EventLog::parse(&good[..cut]),
                Err(EventLogError::Truncated { index: 0 }),
                "cut {cut}"
            );
        }
        for cut in [
            first_event_end + 9,
            first_event_end + 12 + 30,
            first_event_end + 12 + 50 + 2,
        ] {
            assert_eq!(
                EventLog::parse(&good[..cut]),
                Err(EventLogError::Truncated { index: 1 }),
                "cut {cut}"
            );
        }
        // Oversized data length in event 1.
        let mut b = good.clone();
        let size_at = first_event_end + 12 + 50;
        b[size_at..size_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            EventLog::parse(&b),
            Err(EventLogError::Oversized {
                index: 1,
                size: u32::MAX
            })
        );
        // More digests than declared algorithms; an undeclared algorithm.
        let mut b = good.clone();
        b[first_event_end + 8] = 2;
        assert_eq!(
            EventLog::parse(&b),
            Err(EventLogError::BadDigests { index: 1 })
        );
        let mut b = good.clone();
        b[first_event_end + 12] = 0x0B; // SHA-256
        assert_eq!(
            EventLog::parse(&b),
            Err(EventLogError::BadDigests { index: 1 })
        );
        // MR index 5 (no such RTMR), and MRTD (0) extended by a measured event.
        for mr in [5u32, 0] {
            let b = EventLogBuilder::new()
                .event(mr, EV_SEPARATOR, &[0; 48], b"")
                .finish();
            assert_eq!(
                EventLog::parse(&b),
                Err(EventLogError::BadMrIndex { index: 1, mr })
            );
        }
        // Spec ID: wrong type, wrong signature, no SHA-384.
        let mut b = good.clone();
        b[4] = 4;
        assert_eq!(EventLog::parse(&b), Err(EventLogError::BadSpecId));
        let mut b = good.clone();
        b[32] = b'X';
        assert_eq!(EventLog::parse(&b), Err(EventLogError::BadSpecId));
        let mut b = good.clone();
        b[32 + 28] = 0x0B; // the only algorithm becomes SHA-256
        assert_eq!(EventLog::parse(&b), Err(EventLogError::NoSha384));
    }

    /// `testdata/tdx/ccel_synthetic.bin` (written by `ccel_synthetic.py` in the same directory: the
    /// event sequence of a TDVF direct boot, SHA-384 only, 0xFF fill) replays to the RTMRs Intel's
    /// pytdxmeasure 0.0.9 (`TDEventLogActor.replay`, an independent parser and replay) printed.
    #[test]
    fn synthetic_ccel_matches_pytdxmeasure() {
        let bytes = include_bytes!("../../testdata/tdx/ccel_synthetic.bin");
        let log = EventLog::parse(bytes).unwrap();
        let expected = [
            "4831bc6b5c18403015b3b29d53253f5501dbf3a5422833e98e53778c972a9da82ffa0a2399fb6b6d331352ceabae09a8",
            "8f450cd2f1ff2ee03e02cb8ef94f0b0a2241f87f1d8545d2c8adddfccdc38592d60b0134fae04341a9f3c720dd1bb4d0",
            "80643275409c10b9947290c0d041627f4d7bee55d0dd7fb7b778ae75377b51e712d4a6e4fc73877ffd4d9f45cec047b6",
            "b592ccecd032c87f14d351f5408140602b24919fd7a9d57ba1be541e4ca54c20c3588d4420bccdb93b9b4e5a2c9f18df",
        ];
        let replayed = log.replay();
        for (i, want) in expected.iter().enumerate() {
            let mut w = [0u8; 48];
            for (j, b) in w.iter_mut().enumerate() {
                *b = u8::from_str_radix(&want[2 * j..2 * j + 2], 16).unwrap();
            }
            assert_eq!(replayed[i], w, "RTMR{i}");
        }
        // RTMR1 is the direct-boot sequence `measure::tdx::rtmr1_direct_boot` assumes, with the
        // kernel digest of the log.
        let rtmr1 = rtmr_replay(
            [
                h(b"kms.efi authenticode stand-in"),
                h(b"Calling EFI Application from Boot Option"),
                h(&[0, 0, 0, 0]),
                h(b"Exit Boot Services Invocation"),
                h(b"Exit Boot Services Returned with Success"),
            ]
            .iter(),
        );
        assert_eq!(replayed[1], rtmr1);
        // RTMR2: the command-line event as `measure::tdx::rtmr2_cmdline` computes it.
        assert_eq!(
            replayed[2],
            crate::measure::tdx::rtmr2_cmdline("ckms.ip=dhcp")
        );
    }

    const TINY_PE: &[u8] = include_bytes!("../../testdata/tdx/tiny_pe.efi");

    /// The kernel ships a CCEL log area trimmed to [`used_len`]: the synthetic vector's area is
    /// its events then 512 bytes of 0xFF (`ccel_synthetic.py`), a 64 KiB area after a direct-boot
    /// log is mostly zeros or 0xFF; the trimmed bytes parse to the same events, and a trim one
    /// byte shorter no longer parses. A log area that does not parse has no used length.
    #[test]
    fn used_len_trims_the_log_area_to_its_last_event() {
        let area = include_bytes!("../../testdata/tdx/ccel_synthetic.bin");
        let used = used_len(area).unwrap();
        assert_eq!(used, area.len() - 512);
        let whole = EventLog::parse(area).unwrap();
        let trimmed = EventLog::parse(&area[..used]).unwrap();
        assert_eq!(trimmed.events, whole.events);
        assert_eq!(trimmed.len, used);
        assert_eq!(
            EventLog::parse(&area[..used - 1]),
            Err(EventLogError::Truncated {
                index: whole.events.len()
            })
        );

        let kernel = authenticode_sha384(TINY_PE).unwrap();
        let log = direct_boot_log(&kernel, "ckms.ip=dhcp");
        for fill in [0xFFu8, 0] {
            let mut area = log.clone();
            area.resize(64 << 10, fill);
            assert_eq!(used_len(&area), Ok(log.len()), "fill {fill:#x}");
        }
        // Exactly full (no free space) is its own length.
        assert_eq!(used_len(&log), Ok(log.len()));
        assert_eq!(used_len(&[0xA5; 64]), Err(EventLogError::BadSpecId));
    }

    #[test]
    fn direct_boot_log_replays_to_the_manifest_rtmrs_and_checks() {
        let kernel = authenticode_sha384(TINY_PE).unwrap();
        let bytes = direct_boot_log(&kernel, "ckms.ip=dhcp");
        let log = EventLog::parse(&bytes).unwrap();
        let rtmr = log.replay();
        // The same values `image build` writes into the manifest (an independent fold).
        assert_eq!(rtmr[1], rtmr1_direct_boot(TINY_PE).unwrap());
        assert_eq!(rtmr[2], rtmr2_cmdline("ckms.ip=dhcp"));
        assert_eq!((rtmr[0], rtmr[3]), ([0; 48], [0; 48]));
        let want = LogExpectation {
            kernel: Some(kernel),
            cmdline: Some(cmdline_digest("ckms.ip=dhcp")),
        };
        assert_eq!(log.check(&rtmr, &want), Ok(()));
        // The quote's RTMRs differ: named.
        for i in 0..4 {
            let mut q = rtmr;
            q[i][7] ^= 1;
            assert_eq!(
                log.check(&q, &want),
                Err(ReplayError::RtmrMismatch { index: i })
            );
        }
        // Another kernel or command line expected.
        let other = LogExpectation {
            kernel: Some([7; 48]),
            ..want
        };
        assert_eq!(
            log.check(&rtmr, &other),
            Err(ReplayError::KernelMismatch { index: 1 })
        );
        let other = LogExpectation {
            cmdline: Some(cmdline_digest("ckms.ip=dhcp ckms.port=1")),
            ..want
        };
        assert_eq!(log.check(&rtmr, &other), Err(ReplayError::NoCmdlineEvent));
    }

    #[test]
    fn a_log_without_the_kernel_or_with_a_second_application_is_refused() {
        let kernel = [3u8; 48];
        let want = LogExpectation {
            kernel: Some(kernel),
            cmdline: None,
        };
        // No application load in RTMR1 (the kernel's digest only under another event type).
        let b = EventLogBuilder::new()
            .event(2, EV_EFI_ACTION, &kernel, b"")
            .finish();
        let l = EventLog::parse(&b).unwrap();
        assert_eq!(l.check(&l.replay(), &want), Err(ReplayError::NoKernelEvent));
        // The kernel, then a second application: the second is named.
        let b = EventLogBuilder::new()
            .event(2, EV_EFI_BOOT_SERVICES_APPLICATION, &kernel, b"")
            .event(2, EV_EFI_BOOT_SERVICES_APPLICATION, &[4; 48], b"")
            .finish();
        let l = EventLog::parse(&b).unwrap();
        assert_eq!(
            l.check(&l.replay(), &want),
            Err(ReplayError::KernelMismatch { index: 2 })
        );
        // The right digest in RTMR2 (MR index 3) is not a kernel load of RTMR1.
        let b = EventLogBuilder::new()
            .event(3, EV_EFI_BOOT_SERVICES_APPLICATION, &kernel, b"")
            .finish();
        let l = EventLog::parse(&b).unwrap();
        assert_eq!(l.check(&l.replay(), &want), Err(ReplayError::NoKernelEvent));
    }

    /// The synthetic TDVF log checked against pytdxmeasure's RTMRs: its command-line event is
    /// found, its kernel event carries the stand-in digest.
    #[test]
    fn synthetic_ccel_checks_against_its_own_rtmrs() {
        let bytes = include_bytes!("../../testdata/tdx/ccel_synthetic.bin");
        let log = EventLog::parse(bytes).unwrap();
        let want = LogExpectation {
            kernel: Some(h(b"kms.efi authenticode stand-in")),
            cmdline: Some(cmdline_digest("ckms.ip=dhcp")),
        };
        assert_eq!(log.check(&log.replay(), &want), Ok(()));
    }
}
