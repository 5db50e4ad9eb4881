//! The `tdx-emu` wire protocol: the framing of `snp-emu` (`snp_emu_proto`: 12-byte header,
//! resynchronisation on the magic) with its own magics, commands and statuses, and a blocking
//! [`Client`] for the host side (tests, the loopback harness's GetQuote forwarder).
//!
//! ```text
//! 0  magic[4]   "TDXQ" client → emulator, "TDXR" emulator → client
//! 4  version u8 (1)
//! 5  cmd u8     (see Cmd; a reply echoes the request's cmd, 0 answers unframed bytes)
//! 6  status u16 (requests: 0; replies: see Status)
//! 8  len u32    (≤ 16384)
//! 12 payload
//! ```
//!
//! Documented in `docs/tdx-emu.md`.

use std::io::{self, Read, Write};

use snp_emu_proto::{Decoder, Event, FrameError, HEADER_LEN, Header, emit_frame};

/// Request magic.
pub const REQ_MAGIC: [u8; 4] = *b"TDXQ";
/// Reply magic.
pub const RSP_MAGIC: [u8; 4] = *b"TDXR";
/// TDREPORT_STRUCT size.
pub const TDREPORT_LEN: usize = 1024;
/// REPORTDATA size.
pub const REPORT_DATA_LEN: usize = 64;

/// Commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Cmd {
    /// Reply to undecodable input (never sent by a client).
    Invalid = 0,
    /// GetQuote: a 1024-byte TDREPORT in, a DCAP quote v4 out (the QGS's job).
    GetQuote = 1,
    /// TDG.MR.REPORT: 64 bytes of REPORTDATA in, the 1024-byte TDREPORT out (the TDX module's
    /// job; the loopback harness's stub TDCALL asks for it).
    TdReport = 2,
    /// The test chain's root certificate (DER), for `--trust-root`.
    GetRoot = 3,
    /// The CC event log the TD's firmware would have written (the CCEL log area), synthesised
    /// from `--kernel` and `--cmdline` (`attest::tdx::eventlog::direct_boot_log`).
    EventLog = 4,
}

impl Cmd {
    /// Decodes a command byte a client may send (not [`Cmd::Invalid`]).
    pub fn from_u8(v: u8) -> Option<Cmd> {
        match v {
            1 => Some(Cmd::GetQuote),
            2 => Some(Cmd::TdReport),
            3 => Some(Cmd::GetRoot),
            4 => Some(Cmd::EventLog),
            _ => None,
        }
    }
}

/// Reply status codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum Status {
    /// Success; the payload is the command's result.
    Ok = 0,
    /// Undecodable bytes or header (bad magic, version or length).
    BadFrame = 1,
    /// Unknown command byte.
    UnknownCommand = 2,
    /// A payload of the wrong size for the command.
    BadLength = 3,
    /// GetQuote: the TDREPORT was not made by this TDX module (MAC, hashes or type).
    BadReport = 4,
    /// The quote could not be produced (internal error).
    QuoteFailed = 5,
    /// EVENT_LOG: the RTMRs were given as values, not as a kernel and a command line, so no
    /// log agrees with them.
    NoEventLog = 6,
}

impl Status {
    /// Decodes a status value.
    pub fn from_u16(v: u16) -> Option<Status> {
        Some(match v {
            0 => Status::Ok,
            1 => Status::BadFrame,
            2 => Status::UnknownCommand,
            3 => Status::BadLength,
            4 => Status::BadReport,
            5 => Status::QuoteFailed,
            6 => Status::NoEventLog,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Ok => "ok",
            Status::BadFrame => "bad frame",
            Status::UnknownCommand => "unknown command",
            Status::BadLength => "bad payload length",
            Status::BadReport => "TDREPORT not made by this TDX module",
            Status::QuoteFailed => "quote generation failed",
            Status::NoEventLog => "no event log (RTMRs given as values)",
        })
    }
}

/// Client-side failures.
#[derive(Debug)]
pub enum ClientError {
    /// The stream failed or closed.
    Io(io::Error),
    /// A request could not be framed, or a reply header is invalid.
    Frame(FrameError),
    /// The emulator answered with this status.
    Status(Status),
    /// A status value this client does not know.
    UnknownStatus(u16),
    /// A reply to another command.
    WrongCommand(u8),
    /// A reply payload of the wrong size.
    BadReply,
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io(e) => write!(f, "tdx-emu connection: {e}"),
            Self::Frame(e) => write!(f, "tdx-emu frame: {e}"),
            Self::Status(s) => write!(f, "tdx-emu: {s}"),
            Self::UnknownStatus(s) => write!(f, "tdx-emu: unknown status {s}"),
            Self::WrongCommand(c) => write!(f, "tdx-emu: reply to command {c}"),
            Self::BadReply => f.write_str("tdx-emu: reply of the wrong size"),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// A blocking client over any stream (a unix socket to `tdx-emu serve`).
pub struct Client<S> {
    stream: S,
}

impl<S: Read + Write> Client<S> {
    /// A client on `stream`.
    pub fn new(stream: S) -> Self {
        Self { stream }
    }

    /// Sends one request and reads its reply (skipping `cmd 0` replies to stray bytes).
    pub fn call(&mut self, cmd: Cmd, payload: &[u8]) -> Result<Vec<u8>, ClientError> {
        let frame = emit_frame(REQ_MAGIC, cmd as u8, 0, payload).map_err(ClientError::Frame)?;
        self.stream.write_all(&frame)?;
        loop {
            let mut h = [0u8; HEADER_LEN];
            self.stream.read_exact(&mut h)?;
            let header = Header::parse(&h, RSP_MAGIC).map_err(ClientError::Frame)?;
            let mut body = vec![0u8; header.payload_len()];
            self.stream.read_exact(&mut body)?;
            if header.cmd == Cmd::Invalid as u8 && cmd != Cmd::Invalid {
                continue;
            }
            if header.cmd != cmd as u8 {
                return Err(ClientError::WrongCommand(header.cmd));
            }
            return match Status::from_u16(header.status) {
                Some(Status::Ok) => Ok(body),
                Some(s) => Err(ClientError::Status(s)),
                None => Err(ClientError::UnknownStatus(header.status)),
            };
        }
    }

    /// GetQuote for a TDREPORT.
    pub fn get_quote(&mut self, td_report: &[u8; TDREPORT_LEN]) -> Result<Vec<u8>, ClientError> {
        self.call(Cmd::GetQuote, td_report)
    }

    /// TDG.MR.REPORT with `report_data`.
    pub fn td_report(
        &mut self,
        report_data: &[u8; REPORT_DATA_LEN],
    ) -> Result<[u8; TDREPORT_LEN], ClientError> {
        let r = self.call(Cmd::TdReport, report_data)?;
        r.try_into().map_err(|_| ClientError::BadReply)
    }

    /// The root certificate (DER).
    pub fn root(&mut self) -> Result<Vec<u8>, ClientError> {
        self.call(Cmd::GetRoot, &[])
    }
}

/// A server-side decoder of requests.
pub fn request_decoder() -> Decoder {
    Decoder::new(REQ_MAGIC)
}

/// Re-exported for the server: one decoded request (or a garbage run).
pub type RequestEvent = Event;
