//! SNP guest messages: the encrypted envelope a guest uses to talk to the AMD secure processor.
//!
//! AMD 56860 rev 1.58, §8.26 ("SNP_GUEST_REQUEST"): a message is a 0x60-byte header
//! (Table 100, "Message Header Format") followed by the payload encrypted with AES-256-GCM under
//! one of the four VMPCKs from the secrets page. The IV is the 64-bit message sequence number
//! (little-endian, zero-extended to 96 bits); the additional data is the header from `ALGO`
//! (offset 30h) to its end; the 16-byte tag sits in `AUTHTAG`. A request carries the guest's
//! next sequence number and the response the one after it, so each exchange consumes two.
//! A sequence number must never be reused with the same key, and a guest must stop using a
//! VMPCK after any failure to authenticate a response (the firmware's counter may have moved).
//!
//! Payloads: `MSG_REPORT_REQ` (Table 21), `MSG_REPORT_RSP` (Table 25), `MSG_KEY_REQ`
//! (Table 18), `MSG_KEY_RSP` (Table 19).
//!
//! [`GuestMessenger`] is the guest's side (it wipes its key on failure);
//! [`FirmwareMessenger`] is the secure processor's side (used by an emulator). Both are
//! sans-IO: they turn payloads into message bytes and back.

use alloc::vec::Vec;
use core::fmt;
use core::mem::{offset_of, size_of};

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Tag};
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::report::{AttestationReport, REPORT_SIZE, ReportError};

/// Size of the message header.
pub const HEADER_SIZE: usize = 0x60;
/// A message occupies one 4 KiB page.
pub const PAGE_SIZE: usize = 4096;
/// Largest payload that fits in a page after the header.
pub const MAX_PAYLOAD: usize = PAGE_SIZE - HEADER_SIZE;
/// `ALGO` value for AES-256-GCM (Table 99, "AEAD Algorithm Encodings").
pub const ALGO_AES_256_GCM: u8 = 1;
/// Header format version.
pub const HDR_VERSION: u8 = 1;
/// Offset of the authenticated part of the header (`ALGO` .. end).
const AAD_START: usize = 0x30;
/// GCM tag length used in `AUTHTAG`.
const TAG_LEN: usize = 16;
/// The 96-bit GCM nonce.
type Nonce = aes_gcm::Nonce<aes_gcm::aead::consts::U12>;

/// Firmware status: success.
pub const STATUS_SUCCESS: u32 = 0;
/// Firmware status `INVALID_PARAM` (Table 26, "Status Codes").
pub const STATUS_INVALID_PARAM: u32 = 0x16;
/// Firmware status `INVALID_KEY_SELECTION`.
pub const STATUS_INVALID_KEY_SELECTION: u32 = 0x27;

/// Errors of the guest-message layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum GuestMsgError {
    /// Shorter than a header, or than the header's `MSG_SZ` says.
    Truncated,
    /// A header field has a value we do not accept (named).
    BadHeader(&'static str),
    /// The payload does not fit in one page.
    PayloadTooLarge(usize),
    /// Decryption failed: the message was not produced with our key and sequence number.
    AuthFailed,
    /// The sequence number is not the expected one.
    SeqnoMismatch { expected: u64, got: u64 },
    /// The sequence numbers are exhausted.
    SeqnoExhausted,
    /// The message type or version is not the expected one.
    UnexpectedType { expected: u8, got: u8 },
    /// The key was wiped after a failure; the messenger is unusable.
    KeyWiped,
    /// A request is outstanding; its response must be processed (or the request abandoned) first.
    RequestPending,
    /// A response arrived but no request is outstanding.
    NoRequestPending,
    /// The payload has the wrong size for its type (named).
    BadPayload(&'static str),
    /// The firmware answered with a non-zero status.
    FirmwareStatus(u32),
    /// The report inside a `MSG_REPORT_RSP` is malformed.
    Report(ReportError),
}

impl fmt::Display for GuestMsgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("guest message truncated"),
            Self::BadHeader(what) => write!(f, "guest message header: bad {what}"),
            Self::PayloadTooLarge(n) => {
                write!(f, "guest message payload of {n} bytes does not fit a page")
            }
            Self::AuthFailed => f.write_str("guest message authentication failed"),
            Self::SeqnoMismatch { expected, got } => {
                write!(
                    f,
                    "guest message sequence number {got}, expected {expected}"
                )
            }
            Self::SeqnoExhausted => f.write_str("guest message sequence numbers exhausted"),
            Self::UnexpectedType { expected, got } => {
                write!(f, "guest message type {got}, expected {expected}")
            }
            Self::KeyWiped => f.write_str("VMPCK was wiped after a failure"),
            Self::RequestPending => f.write_str("a guest request is already outstanding"),
            Self::NoRequestPending => f.write_str("no guest request is outstanding"),
            Self::BadPayload(what) => write!(f, "bad {what} payload"),
            Self::FirmwareStatus(s) => write!(f, "firmware status {s:#x}"),
            Self::Report(e) => write!(f, "report: {e}"),
        }
    }
}

impl core::error::Error for GuestMsgError {}

impl From<ReportError> for GuestMsgError {
    fn from(e: ReportError) -> Self {
        Self::Report(e)
    }
}

/// Message types (Table 101, "Message Type Encodings").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsgType {
    /// `MSG_CPUID_REQ`.
    CpuidReq,
    /// `MSG_CPUID_RSP`.
    CpuidRsp,
    /// `MSG_KEY_REQ`.
    KeyReq,
    /// `MSG_KEY_RSP`.
    KeyRsp,
    /// `MSG_REPORT_REQ`.
    ReportReq,
    /// `MSG_REPORT_RSP`.
    ReportRsp,
    /// Any other value (kept so it round-trips).
    Unknown(u8),
}

impl MsgType {
    /// The wire value.
    pub fn to_u8(self) -> u8 {
        match self {
            Self::CpuidReq => 1,
            Self::CpuidRsp => 2,
            Self::KeyReq => 3,
            Self::KeyRsp => 4,
            Self::ReportReq => 5,
            Self::ReportRsp => 6,
            Self::Unknown(v) => v,
        }
    }

    /// From the wire value.
    pub fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::CpuidReq,
            2 => Self::CpuidRsp,
            3 => Self::KeyReq,
            4 => Self::KeyRsp,
            5 => Self::ReportReq,
            6 => Self::ReportRsp,
            other => Self::Unknown(other),
        }
    }

    /// The response type that answers this request type (request + 1).
    pub fn response(self) -> Option<Self> {
        match self {
            Self::CpuidReq => Some(Self::CpuidRsp),
            Self::KeyReq => Some(Self::KeyRsp),
            Self::ReportReq => Some(Self::ReportRsp),
            _ => None,
        }
    }
}

/// The message header (56860 Table 100).
#[repr(C)]
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct MsgHeader {
    /// 00h `AUTHTAG` (AES-GCM uses the first 16 bytes).
    pub auth_tag: [u8; 32],
    /// 20h `MSG_SEQNO`.
    pub msg_seqno: U64,
    _reserved_0: [u8; 8],
    /// 30h `ALGO`.
    pub algo: u8,
    /// 31h `HDR_VERSION`.
    pub hdr_version: u8,
    /// 32h `HDR_SIZE`.
    pub hdr_size: U16,
    /// 34h `MSG_TYPE`.
    pub msg_type: u8,
    /// 35h `MSG_VERSION`.
    pub msg_version: u8,
    /// 36h `MSG_SIZE` (payload bytes).
    pub msg_size: U16,
    _reserved_1: U32,
    /// 3Ch `MSG_VMPCK`: which VMPCK (0–3) protects the message.
    pub msg_vmpck: u8,
    _reserved_2: [u8; 35],
}

const _: () = {
    assert!(size_of::<MsgHeader>() == HEADER_SIZE);
    assert!(offset_of!(MsgHeader, msg_seqno) == 0x20);
    assert!(offset_of!(MsgHeader, algo) == AAD_START);
    assert!(offset_of!(MsgHeader, hdr_size) == 0x32);
    assert!(offset_of!(MsgHeader, msg_type) == 0x34);
    assert!(offset_of!(MsgHeader, msg_size) == 0x36);
    assert!(offset_of!(MsgHeader, msg_vmpck) == 0x3C);
};

/// A VM platform communication key (32 bytes from the secrets page). Zeroed on drop; never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Vmpck([u8; 32]);

impl Vmpck {
    /// Wrap key bytes.
    pub fn new(key: [u8; 32]) -> Self {
        Self(key)
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(&self.0.into())
    }
}

/// Offset of VMPCK0 in the SNP secrets page (56860 Table 73, "Secrets Page Format"); VMPCK1..3
/// follow at 32-byte steps.
pub const SECRETS_VMPCK0_OFFSET: usize = 0x20;

impl Vmpck {
    /// Copy VMPCK `index` (0–3) out of the secrets page (which must be at least 0xA0 bytes).
    pub fn from_secrets_page(page: &[u8], index: u8) -> Option<Self> {
        if index > 3 {
            return None;
        }
        let at = SECRETS_VMPCK0_OFFSET + 32 * usize::from(index);
        let key: [u8; 32] = page.get(at..at + 32)?.try_into().ok()?;
        Some(Self(key))
    }
}

impl fmt::Debug for Vmpck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Vmpck(..)")
    }
}

/// A decrypted message.
#[derive(Clone, PartialEq, Eq)]
pub struct Opened {
    /// The header's sequence number.
    pub seqno: u64,
    /// The message type.
    pub msg_type: MsgType,
    /// The message version.
    pub msg_version: u8,
    /// The VMPCK index.
    pub vmpck_id: u8,
    /// The plaintext payload.
    pub payload: Vec<u8>,
}

impl fmt::Debug for Opened {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The payload may hold a derived key: only its length is shown.
        f.debug_struct("Opened")
            .field("seqno", &self.seqno)
            .field("msg_type", &self.msg_type)
            .field("msg_version", &self.msg_version)
            .field("vmpck_id", &self.vmpck_id)
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

impl Drop for Opened {
    fn drop(&mut self) {
        self.payload.zeroize();
    }
}

fn nonce(seqno: u64) -> Nonce {
    let mut iv = [0u8; 12];
    iv[..8].copy_from_slice(&seqno.to_le_bytes());
    iv.into()
}

/// Encrypt `payload` into a message (header ‖ ciphertext).
pub fn seal(
    key: &Vmpck,
    vmpck_id: u8,
    seqno: u64,
    msg_type: MsgType,
    msg_version: u8,
    payload: &[u8],
) -> Result<Vec<u8>, GuestMsgError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(GuestMsgError::PayloadTooLarge(payload.len()));
    }
    let mut hdr = MsgHeader::new_zeroed();
    hdr.msg_seqno = seqno.into();
    hdr.algo = ALGO_AES_256_GCM;
    hdr.hdr_version = HDR_VERSION;
    hdr.hdr_size = (HEADER_SIZE as u16).into();
    hdr.msg_type = msg_type.to_u8();
    hdr.msg_version = msg_version;
    hdr.msg_size = (payload.len() as u16).into();
    hdr.msg_vmpck = vmpck_id;
    let mut out = Vec::with_capacity(HEADER_SIZE + payload.len());
    out.extend_from_slice(hdr.as_bytes());
    out.extend_from_slice(payload);
    let (head, body) = out.split_at_mut(HEADER_SIZE);
    let tag = key
        .cipher()
        .encrypt_inout_detached(&nonce(seqno), &head[AAD_START..], body.into())
        .map_err(|_| GuestMsgError::PayloadTooLarge(payload.len()))?;
    head[..TAG_LEN].copy_from_slice(&tag);
    Ok(out)
}

/// Check the header and decrypt a message (`bytes` may be a whole page).
pub fn open(key: &Vmpck, bytes: &[u8]) -> Result<Opened, GuestMsgError> {
    let (hdr, rest) = MsgHeader::read_from_prefix(bytes).map_err(|_| GuestMsgError::Truncated)?;
    if hdr.algo != ALGO_AES_256_GCM {
        return Err(GuestMsgError::BadHeader("ALGO"));
    }
    if hdr.hdr_version != HDR_VERSION {
        return Err(GuestMsgError::BadHeader("HDR_VERSION"));
    }
    if usize::from(hdr.hdr_size.get()) != HEADER_SIZE {
        return Err(GuestMsgError::BadHeader("HDR_SIZE"));
    }
    if hdr.msg_vmpck > 3 {
        return Err(GuestMsgError::BadHeader("MSG_VMPCK"));
    }
    let size = usize::from(hdr.msg_size.get());
    if size > MAX_PAYLOAD {
        return Err(GuestMsgError::BadHeader("MSG_SIZE"));
    }
    let ct = rest.get(..size).ok_or(GuestMsgError::Truncated)?;
    let seqno = hdr.msg_seqno.get();
    let mut payload = ct.to_vec();
    let tag = Tag::try_from(&hdr.auth_tag[..TAG_LEN]).map_err(|_| GuestMsgError::Truncated)?;
    let aad = hdr
        .as_bytes()
        .get(AAD_START..)
        .ok_or(GuestMsgError::Truncated)?;
    key.cipher()
        .decrypt_inout_detached(&nonce(seqno), aad, payload.as_mut_slice().into(), &tag)
        .map_err(|_| GuestMsgError::AuthFailed)?;
    Ok(Opened {
        seqno,
        msg_type: MsgType::from_u8(hdr.msg_type),
        msg_version: hdr.msg_version,
        vmpck_id: hdr.msg_vmpck,
        payload,
    })
}

/// `MSG_REPORT_REQ` (56860 Table 21).
#[repr(C)]
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct ReportReq {
    /// 00h data placed in the report's `REPORT_DATA`.
    pub report_data: [u8; 64],
    /// 40h VMPL to put in the report (at least the requester's).
    pub vmpl: U32,
    /// 44h bits 1:0 `KEY_SEL` (0 = VLEK if installed else VCEK, 1 = VCEK, 2 = VLEK).
    pub key_sel: U32,
    _reserved_0: [u8; 0x18],
}

const _: () = {
    assert!(size_of::<ReportReq>() == 0x60);
    assert!(offset_of!(ReportReq, vmpl) == 0x40);
};

impl ReportReq {
    /// A request for `report_data` at `vmpl`, default key selection.
    pub fn new(report_data: [u8; 64], vmpl: u32) -> Self {
        let mut r = Self::new_zeroed();
        r.report_data = report_data;
        r.vmpl = vmpl.into();
        r
    }

    /// Parse a payload (exact size, reserved bytes zero).
    pub fn parse(b: &[u8]) -> Result<Self, GuestMsgError> {
        let r =
            Self::read_from_bytes(b).map_err(|_| GuestMsgError::BadPayload("MSG_REPORT_REQ"))?;
        if r.key_sel.get() > 2 || r._reserved_0.iter().any(|x| *x != 0) {
            return Err(GuestMsgError::BadPayload("MSG_REPORT_REQ"));
        }
        Ok(r)
    }
}

/// `MSG_REPORT_RSP` (56860 Table 25).
#[repr(C)]
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct ReportRsp {
    /// 00h `STATUS`.
    pub status: U32,
    /// 04h `REPORT_SIZE`.
    pub report_size: U32,
    _reserved_0: [u8; 0x18],
    /// 20h `REPORT`.
    pub report: AttestationReport,
}

const _: () = {
    assert!(size_of::<ReportRsp>() == 0x20 + REPORT_SIZE);
    assert!(offset_of!(ReportRsp, report) == 0x20);
};

impl ReportRsp {
    /// A successful response carrying `report`.
    pub fn success(report: AttestationReport) -> Self {
        let mut r = Self::new_zeroed();
        r.report_size = (REPORT_SIZE as u32).into();
        r.report = report;
        r
    }

    /// An error response: the firmware returns only the status (the rest is zero).
    pub fn error(status: u32) -> Self {
        let mut r = Self::new_zeroed();
        r.status = status.into();
        r
    }

    /// Parse a payload and return the validated report (non-zero status is an error).
    pub fn parse_report(b: &[u8]) -> Result<AttestationReport, GuestMsgError> {
        let r =
            Self::read_from_bytes(b).map_err(|_| GuestMsgError::BadPayload("MSG_REPORT_RSP"))?;
        if r.status.get() != STATUS_SUCCESS {
            return Err(GuestMsgError::FirmwareStatus(r.status.get()));
        }
        if r.report_size.get() as usize != REPORT_SIZE {
            return Err(GuestMsgError::BadPayload("MSG_REPORT_RSP size"));
        }
        r.report.validate()?;
        Ok(r.report)
    }
}

/// `GUEST_FIELD_SELECT` bits of `MSG_KEY_REQ` (Table 18): which launch values are mixed in.
pub mod field_select {
    /// Guest policy.
    pub const GUEST_POLICY: u64 = 1 << 0;
    /// Image ID.
    pub const IMAGE_ID: u64 = 1 << 1;
    /// Family ID.
    pub const FAMILY_ID: u64 = 1 << 2;
    /// Launch measurement.
    pub const MEASUREMENT: u64 = 1 << 3;
    /// Guest SVN.
    pub const GUEST_SVN: u64 = 1 << 4;
    /// TCB version.
    pub const TCB_VERSION: u64 = 1 << 5;
    /// All bits defined here.
    pub const ALL: u64 = 0x3F;
}

/// `MSG_KEY_REQ` (56860 Table 18).
#[repr(C)]
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct KeyReq {
    /// 00h bit 0 `ROOT_KEY_SELECT` (0 = VCEK, 1 = VMRK), bits 2:1 `KEY_SEL`.
    pub root_key_select: U32,
    _reserved_0: U32,
    /// 08h `GUEST_FIELD_SELECT` (see [`field_select`]).
    pub guest_field_select: U64,
    /// 10h `VMPL` to mix in.
    pub vmpl: U32,
    /// 14h `GUEST_SVN` to mix in.
    pub guest_svn: U32,
    /// 18h `TCB_VERSION` to mix in.
    pub tcb_version: U64,
}

const _: () = {
    assert!(size_of::<KeyReq>() == 0x20);
    assert!(offset_of!(KeyReq, guest_field_select) == 0x08);
    assert!(offset_of!(KeyReq, vmpl) == 0x10);
    assert!(offset_of!(KeyReq, tcb_version) == 0x18);
};

impl KeyReq {
    /// A request for a key derived from the VCEK and the selected guest fields.
    pub fn new(guest_field_select: u64, vmpl: u32) -> Self {
        let mut r = Self::new_zeroed();
        r.guest_field_select = guest_field_select.into();
        r.vmpl = vmpl.into();
        r
    }

    /// Parse a payload (exact size, reserved bits zero).
    pub fn parse(b: &[u8]) -> Result<Self, GuestMsgError> {
        let r = Self::read_from_bytes(b).map_err(|_| GuestMsgError::BadPayload("MSG_KEY_REQ"))?;
        if r.root_key_select.get() & !0x7 != 0
            || r._reserved_0.get() != 0
            || r.guest_field_select.get() & !field_select::ALL != 0
        {
            return Err(GuestMsgError::BadPayload("MSG_KEY_REQ"));
        }
        Ok(r)
    }
}

/// `MSG_KEY_RSP` (56860 Table 19). The derived key is zeroed on drop and not shown by Debug.
#[repr(C)]
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct KeyRsp {
    /// 00h `STATUS`.
    pub status: U32,
    _reserved_0: [u8; 0x1C],
    /// 20h `DERIVED_KEY`.
    pub derived_key: [u8; 32],
}

const _: () = {
    assert!(size_of::<KeyRsp>() == 0x40);
    assert!(offset_of!(KeyRsp, derived_key) == 0x20);
};

impl Drop for KeyRsp {
    fn drop(&mut self) {
        self.derived_key.zeroize();
    }
}

impl fmt::Debug for KeyRsp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRsp")
            .field("status", &self.status.get())
            .finish_non_exhaustive()
    }
}

impl KeyRsp {
    /// A successful response.
    pub fn success(key: [u8; 32]) -> Self {
        let mut r = Self::new_zeroed();
        r.derived_key = key;
        r
    }

    /// An error response.
    pub fn error(status: u32) -> Self {
        let mut r = Self::new_zeroed();
        r.status = status.into();
        r
    }
}

/// A key derived by the firmware (`MSG_KEY_RSP`), zeroed on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct DerivedKey(pub [u8; 32]);

impl fmt::Debug for DerivedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DerivedKey(..)")
    }
}

/// The guest's side of the channel to the secure processor for one VMPCK.
///
/// Each exchange is [`request`](Self::request) then [`response`](Self::response) (or the typed
/// helpers). A failed response check wipes the key; so does [`abandon`](Self::abandon), for a
/// request whose fate is unknown, because its sequence number may have been consumed.
#[derive(Debug)]
pub struct GuestMessenger {
    key: Option<Vmpck>,
    vmpck_id: u8,
    /// The last sequence number used (by either side).
    seqno: u64,
    pending: Option<(u64, MsgType, u8)>,
}

impl GuestMessenger {
    /// A messenger for VMPCK `vmpck_id` (0–3); sequence numbers start at 1.
    pub fn new(key: Vmpck, vmpck_id: u8) -> Self {
        Self {
            key: Some(key),
            vmpck_id,
            seqno: 0,
            pending: None,
        }
    }

    /// Whether the key is still usable.
    pub fn is_usable(&self) -> bool {
        self.key.is_some()
    }

    /// The last sequence number used.
    pub fn seqno(&self) -> u64 {
        self.seqno
    }

    /// Seal a request with the next sequence number.
    pub fn request(
        &mut self,
        msg_type: MsgType,
        msg_version: u8,
        payload: &[u8],
    ) -> Result<Vec<u8>, GuestMsgError> {
        let key = self.key.as_ref().ok_or(GuestMsgError::KeyWiped)?;
        if self.pending.is_some() {
            return Err(GuestMsgError::RequestPending);
        }
        let seqno = self
            .seqno
            .checked_add(1)
            .filter(|s| s.checked_add(1).is_some())
            .ok_or(GuestMsgError::SeqnoExhausted)?;
        let rsp_type = msg_type
            .response()
            .ok_or(GuestMsgError::BadHeader("MSG_TYPE"))?;
        let msg = seal(key, self.vmpck_id, seqno, msg_type, msg_version, payload)?;
        self.pending = Some((seqno, rsp_type, msg_version));
        Ok(msg)
    }

    /// Open the response to the outstanding request. Any failure wipes the key.
    pub fn response(&mut self, bytes: &[u8]) -> Result<Opened, GuestMsgError> {
        let key = self.key.as_ref().ok_or(GuestMsgError::KeyWiped)?;
        let (req_seqno, rsp_type, version) = self.pending.ok_or(GuestMsgError::NoRequestPending)?;
        let result = open(key, bytes).and_then(|o| {
            let expected = req_seqno + 1;
            if o.seqno != expected {
                return Err(GuestMsgError::SeqnoMismatch {
                    expected,
                    got: o.seqno,
                });
            }
            if o.msg_type != rsp_type {
                return Err(GuestMsgError::UnexpectedType {
                    expected: rsp_type.to_u8(),
                    got: o.msg_type.to_u8(),
                });
            }
            if o.msg_version != version || o.vmpck_id != self.vmpck_id {
                return Err(GuestMsgError::BadHeader("MSG_VERSION/MSG_VMPCK"));
            }
            Ok(o)
        });
        match result {
            Ok(o) => {
                self.seqno = req_seqno + 1;
                self.pending = None;
                Ok(o)
            }
            Err(e) => {
                self.wipe();
                Err(e)
            }
        }
    }

    /// Give up on the outstanding request (e.g. the transport failed). The key is wiped: the
    /// firmware may or may not have consumed the sequence number, so none can be used safely.
    pub fn abandon(&mut self) {
        self.wipe();
    }

    fn wipe(&mut self) {
        self.key = None; // Vmpck zeroizes on drop
        self.pending = None;
    }

    /// Seal a `MSG_REPORT_REQ`.
    pub fn report_request(
        &mut self,
        report_data: [u8; 64],
        vmpl: u32,
    ) -> Result<Vec<u8>, GuestMsgError> {
        self.request(
            MsgType::ReportReq,
            1,
            ReportReq::new(report_data, vmpl).as_bytes(),
        )
    }

    /// Open a `MSG_REPORT_RSP` and return its (format-validated) report.
    pub fn report_response(&mut self, bytes: &[u8]) -> Result<AttestationReport, GuestMsgError> {
        let o = self.response(bytes)?;
        ReportRsp::parse_report(&o.payload)
    }

    /// Seal a `MSG_KEY_REQ`.
    pub fn key_request(&mut self, req: &KeyReq) -> Result<Vec<u8>, GuestMsgError> {
        self.request(MsgType::KeyReq, 1, req.as_bytes())
    }

    /// Open a `MSG_KEY_RSP` and return the derived key.
    pub fn key_response(&mut self, bytes: &[u8]) -> Result<DerivedKey, GuestMsgError> {
        let o = self.response(bytes)?;
        let rsp = KeyRsp::read_from_bytes(&o.payload)
            .map_err(|_| GuestMsgError::BadPayload("MSG_KEY_RSP"))?;
        if rsp.status.get() != STATUS_SUCCESS {
            return Err(GuestMsgError::FirmwareStatus(rsp.status.get()));
        }
        Ok(DerivedKey(rsp.derived_key))
    }
}

/// The secure processor's side of the channel for one VMPCK (for an emulator): it accepts a
/// request only with the next sequence number and answers with the one after it.
#[derive(Debug)]
pub struct FirmwareMessenger {
    key: Vmpck,
    vmpck_id: u8,
    seqno: u64,
    pending: Option<(u64, MsgType, u8)>,
}

impl FirmwareMessenger {
    /// A firmware context for VMPCK `vmpck_id`.
    pub fn new(key: Vmpck, vmpck_id: u8) -> Self {
        Self {
            key,
            vmpck_id,
            seqno: 0,
            pending: None,
        }
    }

    /// The last sequence number used.
    pub fn seqno(&self) -> u64 {
        self.seqno
    }

    /// Authenticate and decrypt a request. A request that fails leaves the state unchanged.
    pub fn open_request(&mut self, bytes: &[u8]) -> Result<Opened, GuestMsgError> {
        let o = open(&self.key, bytes)?;
        let expected = self
            .seqno
            .checked_add(1)
            .ok_or(GuestMsgError::SeqnoExhausted)?;
        if o.seqno != expected {
            return Err(GuestMsgError::SeqnoMismatch {
                expected,
                got: o.seqno,
            });
        }
        if o.vmpck_id != self.vmpck_id {
            return Err(GuestMsgError::BadHeader("MSG_VMPCK"));
        }
        let rsp = o
            .msg_type
            .response()
            .ok_or(GuestMsgError::BadHeader("MSG_TYPE"))?;
        self.seqno = expected;
        self.pending = Some((expected, rsp, o.msg_version));
        Ok(o)
    }

    /// Seal the response to the request just opened.
    pub fn seal_response(&mut self, payload: &[u8]) -> Result<Vec<u8>, GuestMsgError> {
        let (req, rsp_type, version) = self.pending.ok_or(GuestMsgError::NoRequestPending)?;
        let seqno = req.checked_add(1).ok_or(GuestMsgError::SeqnoExhausted)?;
        let msg = seal(&self.key, self.vmpck_id, seqno, rsp_type, version, payload)?;
        self.seqno = seqno;
        self.pending = None;
        Ok(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::milan_report;

    fn pair() -> (GuestMessenger, FirmwareMessenger) {
        let k = [0x42u8; 32];
        (
            GuestMessenger::new(Vmpck::new(k), 0),
            FirmwareMessenger::new(Vmpck::new(k), 0),
        )
    }

    #[test]
    fn header_layout_and_seal_bytes() {
        let key = Vmpck::new([1; 32]);
        let msg = seal(&key, 2, 7, MsgType::ReportReq, 1, &[0xAA; 0x60]).unwrap();
        assert_eq!(msg.len(), HEADER_SIZE + 0x60);
        assert_eq!(msg[0x20..0x28], 7u64.to_le_bytes());
        assert_eq!(msg[0x30..0x38], [1, 1, 0x60, 0, 5, 1, 0x60, 0]);
        assert_eq!(msg[0x3C], 2);
        assert!(msg[0x10..0x20].iter().all(|b| *b == 0));
        // Ciphertext differs from plaintext; opening recovers it.
        assert_ne!(msg[HEADER_SIZE..], [0xAA; 0x60]);
        let o = open(&key, &msg).unwrap();
        assert_eq!(
            (o.seqno, o.msg_type, o.vmpck_id),
            (7, MsgType::ReportReq, 2)
        );
        assert_eq!(o.payload, [0xAA; 0x60]);
        // Independent check of the construction: AES-256-GCM, IV = seqno LE, AAD = header[0x30..].
        let mut body = [0xAAu8; 0x60];
        let tag = Aes256Gcm::new(&[1u8; 32].into())
            .encrypt_inout_detached(&nonce(7), &msg[0x30..0x60], body.as_mut_slice().into())
            .unwrap();
        assert_eq!(msg[..16], tag[..]);
        assert_eq!(msg[HEADER_SIZE..], body);
        // Whole page with trailing bytes is accepted.
        let mut page = msg.clone();
        page.resize(PAGE_SIZE, 0xEE);
        assert!(open(&key, &page).is_ok());
    }

    #[test]
    fn tampering_fails_authentication() {
        let key = Vmpck::new([1; 32]);
        let msg = seal(&key, 0, 1, MsgType::KeyReq, 1, &[0; 0x20]).unwrap();
        for pos in [
            0,
            15,
            0x20,
            0x34,
            0x35,
            0x38,
            0x3D,
            0x5F,
            0x60,
            msg.len() - 1,
        ] {
            let mut m = msg.clone();
            m[pos] ^= 0x01;
            let r = open(&key, &m);
            assert!(
                matches!(
                    r,
                    Err(GuestMsgError::AuthFailed | GuestMsgError::BadHeader(_))
                ),
                "pos {pos:#x}: {r:?}"
            );
        }
        // Bytes 16..32 of AUTHTAG are not covered (AES-GCM tags are 16 bytes) and ignored.
        let mut m = msg.clone();
        m[20] ^= 1;
        assert!(open(&key, &m).is_ok());
        assert_eq!(
            open(&Vmpck::new([2; 32]), &msg).unwrap_err(),
            GuestMsgError::AuthFailed
        );
        assert_eq!(
            open(&key, &msg[..HEADER_SIZE - 1]).unwrap_err(),
            GuestMsgError::Truncated
        );
        assert_eq!(
            open(&key, &msg[..msg.len() - 1]).unwrap_err(),
            GuestMsgError::Truncated
        );
        assert!(matches!(
            seal(&key, 0, 1, MsgType::KeyReq, 1, &[0; MAX_PAYLOAD + 1]),
            Err(GuestMsgError::PayloadTooLarge(_))
        ));
    }

    #[test]
    fn report_exchange_and_seqnos() {
        let (mut guest, mut fw) = pair();
        let report = AttestationReport::parse(&milan_report()).unwrap();
        for round in 0..3u64 {
            let req = guest.report_request([round as u8; 64], 0).unwrap();
            assert_eq!(req[0x20..0x28], (2 * round + 1).to_le_bytes());
            let o = fw.open_request(&req).unwrap();
            assert_eq!(o.msg_type, MsgType::ReportReq);
            let rr = ReportReq::parse(&o.payload).unwrap();
            assert_eq!(rr.report_data, [round as u8; 64]);
            let rsp = fw
                .seal_response(ReportRsp::success(report).as_bytes())
                .unwrap();
            assert_eq!(rsp[0x20..0x28], (2 * round + 2).to_le_bytes());
            let got = guest.report_response(&rsp).unwrap();
            assert_eq!(got.as_bytes(), report.as_bytes());
            assert_eq!(guest.seqno(), 2 * round + 2);
            assert_eq!(fw.seqno(), 2 * round + 2);
        }
    }

    #[test]
    fn key_exchange() {
        let (mut guest, mut fw) = pair();
        let req = guest
            .key_request(&KeyReq::new(field_select::MEASUREMENT, 0))
            .unwrap();
        let o = fw.open_request(&req).unwrap();
        let kr = KeyReq::parse(&o.payload).unwrap();
        assert_eq!(kr.guest_field_select.get(), field_select::MEASUREMENT);
        let rsp = fw
            .seal_response(KeyRsp::success([9; 32]).as_bytes())
            .unwrap();
        assert_eq!(guest.key_response(&rsp).unwrap().0, [9; 32]);
        // A firmware error status is reported, and (being a valid message) keeps the key.
        let req = guest.key_request(&KeyReq::new(0, 0)).unwrap();
        fw.open_request(&req).unwrap();
        let rsp = fw
            .seal_response(KeyRsp::error(STATUS_INVALID_PARAM).as_bytes())
            .unwrap();
        assert_eq!(
            guest.key_response(&rsp).unwrap_err(),
            GuestMsgError::FirmwareStatus(0x16)
        );
        assert!(guest.is_usable());
        let mut bad = KeyReq::new(1 << 40, 0).as_bytes().to_vec();
        let r = KeyReq::parse(&bad);
        assert!(matches!(r, Err(GuestMsgError::BadPayload(_))), "{r:?}");
        bad.pop();
        let r = KeyReq::parse(&bad);
        assert!(matches!(r, Err(GuestMsgError::BadPayload(_))), "{r:?}");
    }

    #[test]
    fn replayed_or_forged_response_wipes_key() {
        let (mut guest, mut fw) = pair();
        let req = guest.report_request([0; 64], 0).unwrap();
        fw.open_request(&req).unwrap();
        let report = AttestationReport::parse(&milan_report()).unwrap();
        let rsp = fw
            .seal_response(ReportRsp::success(report).as_bytes())
            .unwrap();
        guest.report_response(&rsp).unwrap();
        // Replay of the old response to a new request: wrong seqno -> key wiped.
        let _req2 = guest.report_request([0; 64], 0).unwrap();
        assert_eq!(
            guest.report_response(&rsp).unwrap_err(),
            GuestMsgError::SeqnoMismatch {
                expected: 4,
                got: 2
            }
        );
        assert!(!guest.is_usable());
        assert_eq!(
            guest.report_request([0; 64], 0).unwrap_err(),
            GuestMsgError::KeyWiped
        );

        // A tampered response also wipes.
        let (mut guest, mut fw) = pair();
        let req = guest.report_request([0; 64], 0).unwrap();
        fw.open_request(&req).unwrap();
        let mut rsp = fw
            .seal_response(ReportRsp::success(report).as_bytes())
            .unwrap();
        rsp[HEADER_SIZE + 100] ^= 1;
        assert_eq!(
            guest.report_response(&rsp).unwrap_err(),
            GuestMsgError::AuthFailed
        );
        assert!(!guest.is_usable());
    }

    #[test]
    fn firmware_rejects_bad_seqno_and_keeps_serving() {
        let (mut guest, mut fw) = pair();
        let key = Vmpck::new([0x42; 32]);
        let stale = seal(
            &key,
            0,
            5,
            MsgType::ReportReq,
            1,
            ReportReq::new([0; 64], 0).as_bytes(),
        )
        .unwrap();
        assert_eq!(
            fw.open_request(&stale).unwrap_err(),
            GuestMsgError::SeqnoMismatch {
                expected: 1,
                got: 5
            }
        );
        assert_eq!(
            fw.open_request(&[0; 10]).unwrap_err(),
            GuestMsgError::Truncated
        );
        assert_eq!(
            fw.seal_response(&[]).unwrap_err(),
            GuestMsgError::NoRequestPending
        );
        let req = guest.report_request([0; 64], 0).unwrap();
        assert!(fw.open_request(&req).is_ok());
        // Only one outstanding request on the guest side.
        assert_eq!(
            guest.report_request([0; 64], 0).unwrap_err(),
            GuestMsgError::RequestPending
        );
        guest.abandon();
        assert!(!guest.is_usable());
    }

    #[test]
    fn vmpck_from_secrets_page() {
        let mut page = [0u8; 4096];
        for (i, b) in page.iter_mut().enumerate() {
            *b = (i / 32) as u8;
        }
        let k2 = Vmpck::from_secrets_page(&page, 2).unwrap();
        // VMPCK2 is at 0x60: every byte of that 32-byte slot is 3.
        let msg = seal(&k2, 2, 1, MsgType::KeyReq, 1, &[0; 0x20]).unwrap();
        assert!(open(&Vmpck::new([3; 32]), &msg).is_ok());
        assert!(Vmpck::from_secrets_page(&page, 4).is_none());
        assert!(Vmpck::from_secrets_page(&page[..0x9F], 3).is_none());
        assert!(Vmpck::from_secrets_page(&page[..0xA0], 3).is_some());
    }

    #[test]
    fn garbage_never_panics() {
        let key = Vmpck::new([3; 32]);
        let good = seal(&key, 0, 1, MsgType::ReportReq, 1, &[0; 0x60]).unwrap();
        let mut x: u32 = 0x1234_5678;
        for len in [0, 1, 0x5F, 0x60, 0x61, 0x100, PAGE_SIZE, PAGE_SIZE + 1] {
            let mut buf = alloc::vec![0u8; len];
            for b in buf.iter_mut() {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                *b = x as u8;
            }
            // Keep a plausible header so the decryption path is reached too.
            if len >= HEADER_SIZE {
                buf[0x30..0x38].copy_from_slice(&good[0x30..0x38]);
            }
            let garbage = |r: &Result<_, GuestMsgError>| {
                matches!(
                    r,
                    Err(GuestMsgError::Truncated
                        | GuestMsgError::BadHeader(_)
                        | GuestMsgError::PayloadTooLarge(_)
                        | GuestMsgError::AuthFailed)
                )
            };
            let r = open(&key, &buf).map(|_| ());
            assert!(garbage(&r), "len {len}: {r:?}");
            let mut fw = FirmwareMessenger::new(key.clone(), 0);
            let r = fw.open_request(&buf).map(|_| ());
            assert!(garbage(&r), "len {len}: {r:?}");
            let r = ReportReq::parse(&buf).map(|_| ());
            assert!(
                matches!(r, Err(GuestMsgError::BadPayload(_))) || len == 0x60,
                "len {len}: {r:?}"
            );
            let r = KeyReq::parse(&buf).map(|_| ());
            assert!(
                matches!(r, Err(GuestMsgError::BadPayload(_))) || len == 0x20,
                "len {len}: {r:?}"
            );
        }
    }

    #[test]
    fn report_rsp_errors() {
        assert_eq!(
            ReportRsp::parse_report(ReportRsp::error(STATUS_INVALID_PARAM).as_bytes()).unwrap_err(),
            GuestMsgError::FirmwareStatus(0x16)
        );
        let r = ReportRsp::parse_report(&[0; 10]).map(|_| ());
        assert!(matches!(r, Err(GuestMsgError::BadPayload(_))), "{r:?}");
        let mut r = ReportRsp::success(AttestationReport::parse(&milan_report()).unwrap());
        r.report_size = 0x400.into();
        let r = ReportRsp::parse_report(r.as_bytes()).map(|_| ());
        assert!(matches!(r, Err(GuestMsgError::BadPayload(_))), "{r:?}");
    }
}
