//! A guest-side client of the emulator protocol over any byte stream (feature `std`): the host
//! server's emulated platform (`kms-server`, unix socket), tests and host tools. The kernel
//! drives the same framing over COM2 itself. The SNP messages are built and checked by
//! `attest`'s `GuestMessenger`, the code a guest uses with real hardware.

use std::{
    fmt,
    io::{self, Read, Write},
    vec::Vec,
};

use attest::snp::{
    AttestationReport,
    guest_msg::{DerivedKey, GuestMessenger, GuestMsgError, KeyReq, Vmpck},
};
use zeroize::Zeroizing;

use crate::{Cmd, Decoder, Event, FrameError, REQ_MAGIC, RSP_MAGIC, Status, emit_frame};

/// Client errors.
#[derive(Debug)]
pub enum ClientError {
    /// Transport failure.
    Io(io::Error),
    /// The peer closed the stream.
    Closed,
    /// The emulator answered with an error status.
    Status(u16),
    /// The reply could not be decoded.
    BadReply(&'static str),
    /// The request could not be framed (payload too large).
    Frame(FrameError),
    /// The guest-message layer failed (includes a non-zero firmware STATUS).
    Msg(GuestMsgError),
    /// No VMPCK yet (call `get_vmpck` first).
    NoVmpck,
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Io(e) => write!(f, "I/O: {e}"),
            ClientError::Closed => f.write_str("emulator closed the connection"),
            ClientError::Status(s) => match Status::from_u16(*s) {
                Some(st) => write!(f, "emulator error: {st}"),
                None => write!(f, "emulator error status {s}"),
            },
            ClientError::BadReply(w) => write!(f, "bad reply: {w}"),
            ClientError::Frame(e) => write!(f, "request: {e}"),
            ClientError::Msg(e) => write!(f, "guest message: {e}"),
            ClientError::NoVmpck => f.write_str("no VMPCK"),
        }
    }
}

impl core::error::Error for ClientError {}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> Self {
        ClientError::Io(e)
    }
}

impl From<GuestMsgError> for ClientError {
    fn from(e: GuestMsgError) -> Self {
        ClientError::Msg(e)
    }
}

/// Guest-side session over a stream to the emulator.
pub struct Client<S> {
    stream: S,
    dec: Decoder,
    messenger: Option<GuestMessenger>,
}

impl<S: Read + Write> Client<S> {
    /// A client over `stream`.
    pub fn new(stream: S) -> Self {
        Client {
            stream,
            dec: Decoder::new(RSP_MAGIC),
            messenger: None,
        }
    }

    /// Continues the session over a new stream (the emulator keeps its state across connections,
    /// as QEMU's chardev may reconnect); undelivered reply bytes of the old stream are dropped.
    pub fn replace_stream(&mut self, stream: S) {
        self.stream = stream;
        self.dec = Decoder::new(RSP_MAGIC);
    }

    /// Sends raw bytes (for tests of the emulator's error handling).
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.stream.write_all(bytes)?;
        Ok(())
    }

    /// Reads the next reply frame: (cmd, status, payload).
    pub fn read_reply(&mut self) -> Result<(u8, u16, Vec<u8>), ClientError> {
        let mut buf = [0u8; 8192];
        loop {
            match self.dec.next_event() {
                Some(Event::Frame {
                    cmd,
                    status,
                    payload,
                }) => return Ok((cmd, status, payload)),
                Some(Event::Garbage) => {
                    return Err(ClientError::BadReply("undecodable reply bytes"));
                }
                None => {}
            }
            let n = self.stream.read(&mut buf)?;
            if n == 0 {
                return Err(ClientError::Closed);
            }
            self.dec.push(buf.get(..n).unwrap_or_default());
        }
    }

    /// Sends one request frame and returns the payload of a successful reply.
    pub fn call(&mut self, cmd: Cmd, payload: &[u8]) -> Result<Vec<u8>, ClientError> {
        let request = emit_frame(REQ_MAGIC, cmd as u8, 0, payload).map_err(ClientError::Frame)?;
        self.send_raw(&request)?;
        let (rcmd, status, payload) = self.read_reply()?;
        if rcmd != cmd as u8 {
            return Err(ClientError::BadReply("reply to another command"));
        }
        if status != Status::Ok as u16 {
            return Err(ClientError::Status(status));
        }
        Ok(payload)
    }

    /// GET_VMPCK: fetches VMPCK0 (works once per emulator lifetime).
    pub fn get_vmpck(&mut self) -> Result<(), ClientError> {
        let key = Zeroizing::new(self.call(Cmd::GetVmpck, &[])?);
        let key: [u8; 32] = key
            .as_slice()
            .try_into()
            .map_err(|_| ClientError::BadReply("VMPCK is not 32 bytes"))?;
        self.messenger = Some(GuestMessenger::new(Vmpck::new(key), 0));
        Ok(())
    }

    /// Whether the VMPCK is held and usable (it is wiped after a failed exchange).
    pub fn has_vmpck(&self) -> bool {
        self.messenger
            .as_ref()
            .is_some_and(GuestMessenger::is_usable)
    }

    /// GET_CERTS: the certificate table.
    pub fn certs(&mut self) -> Result<Vec<u8>, ClientError> {
        self.call(Cmd::GetCerts, &[])
    }

    /// Pads a sealed message to a page and exchanges it; on a transport or emulator error the
    /// request is abandoned (the messenger wipes its key, as the sequence number may be spent).
    fn exchange(&mut self, msg: Vec<u8>) -> Result<Vec<u8>, ClientError> {
        let mut page = msg;
        page.resize(attest::snp::guest_msg::PAGE_SIZE, 0);
        match self.call(Cmd::GuestRequest, &page) {
            Ok(rsp) => Ok(rsp),
            Err(e) => {
                if let Some(m) = self.messenger.as_mut() {
                    m.abandon();
                }
                Err(e)
            }
        }
    }

    /// MSG_REPORT_REQ: an attestation report with `report_data` at VMPL `vmpl`.
    pub fn report(
        &mut self,
        report_data: &[u8; 64],
        vmpl: u32,
    ) -> Result<AttestationReport, ClientError> {
        let msg = self
            .messenger
            .as_mut()
            .ok_or(ClientError::NoVmpck)?
            .report_request(*report_data, vmpl)?;
        let rsp = self.exchange(msg)?;
        Ok(self
            .messenger
            .as_mut()
            .ok_or(ClientError::NoVmpck)?
            .report_response(&rsp)?)
    }

    /// MSG_KEY_REQ: a 32-byte key bound to the selected guest fields.
    pub fn derived_key(&mut self, req: &KeyReq) -> Result<DerivedKey, ClientError> {
        let msg = self
            .messenger
            .as_mut()
            .ok_or(ClientError::NoVmpck)?
            .key_request(req)?;
        let rsp = self.exchange(msg)?;
        Ok(self
            .messenger
            .as_mut()
            .ok_or(ClientError::NoVmpck)?
            .key_response(&rsp)?)
    }
}
