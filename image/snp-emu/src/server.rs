//! Request dispatch (sans-IO) and the unix-socket serving loop.

use std::{
    io::{self, Read, Write},
    os::unix::net::{UnixListener, UnixStream},
};

use attest::snp::guest_msg::GuestMsgError;

use snp_emu_proto::{Cmd, Decoder, Event, FrameError, REQ_MAGIC, RSP_MAGIC, Status, emit_frame};

use crate::psp::{PAGE_SIZE, Psp, RequestError};

/// One reply frame.
#[derive(Debug, PartialEq, Eq)]
pub struct Reply {
    /// The command it answers (0 for garbage).
    pub cmd: u8,
    /// The status.
    pub status: Status,
    /// The payload (empty unless `status` is `Ok`).
    pub payload: Vec<u8>,
}

impl Reply {
    /// The wire bytes; fails only for a payload over `MAX_PAYLOAD` (never produced by
    /// [`handle`]: the largest is the certificate table, a few KiB).
    pub fn encode(&self) -> Result<Vec<u8>, FrameError> {
        emit_frame(RSP_MAGIC, self.cmd, self.status as u16, &self.payload)
    }
}

fn reply(cmd: u8, status: Status, payload: &[u8]) -> Reply {
    Reply {
        cmd,
        status,
        payload: payload.to_vec(),
    }
}

/// Answers one decoded event with one reply.
pub fn handle(psp: &mut Psp, event: Event) -> Reply {
    let (cmd, payload) = match event {
        Event::Garbage => return reply(Cmd::Invalid as u8, Status::BadFrame, &[]),
        Event::Frame { cmd, payload, .. } => (cmd, payload),
    };
    match Cmd::from_u8(cmd) {
        None | Some(Cmd::Invalid) => reply(cmd, Status::UnknownCommand, &[]),
        Some(Cmd::GetVmpck | Cmd::GetCerts) if !payload.is_empty() => {
            reply(cmd, Status::BadLength, &[])
        }
        Some(Cmd::GetVmpck) => match psp.take_vmpck() {
            Some(key) => reply(cmd, Status::Ok, key.as_slice()),
            None => reply(cmd, Status::VmpckTaken, &[]),
        },
        Some(Cmd::GetCerts) => reply(cmd, Status::Ok, &psp.cert_table()),
        Some(Cmd::GuestRequest) if payload.len() != PAGE_SIZE => reply(cmd, Status::BadLength, &[]),
        Some(Cmd::GuestRequest) => match psp.guest_request(&payload) {
            Ok(page) => reply(cmd, Status::Ok, &page[..]),
            Err(RequestError::Msg(
                GuestMsgError::SeqnoMismatch { .. } | GuestMsgError::SeqnoExhausted,
            )) => reply(cmd, Status::BadSeqno, &[]),
            Err(RequestError::Msg(GuestMsgError::AuthFailed)) => {
                reply(cmd, Status::AuthFailed, &[])
            }
            Err(_) => reply(cmd, Status::BadMessage, &[]),
        },
    }
}

fn describe(event: &Event) -> String {
    match event {
        Event::Garbage => "garbage".into(),
        Event::Frame { cmd, payload, .. } => format!("cmd {cmd} ({} bytes)", payload.len()),
    }
}

/// Serves one connection until the peer closes it.
pub fn serve_connection(psp: &mut Psp, stream: &mut UnixStream) -> io::Result<()> {
    let mut dec = Decoder::new(REQ_MAGIC);
    let mut buf = [0u8; 8192];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        dec.push(buf.get(..n).unwrap_or_default());
        while let Some(event) = dec.next_event() {
            let what = describe(&event);
            let reply = handle(psp, event);
            eprintln!("snp-emu: {what} -> {}", reply.status);
            stream.write_all(&reply.encode().map_err(io::Error::other)?)?;
        }
    }
}

/// Accepts connections one at a time, forever; state (VMPCK handout, sequence numbers) lives
/// for the emulator's lifetime, not the connection's.
pub fn serve(psp: &mut Psp, listener: &UnixListener) -> io::Result<()> {
    loop {
        let (mut stream, _) = listener.accept()?;
        eprintln!("snp-emu: connection accepted");
        match serve_connection(psp, &mut stream) {
            Ok(()) => eprintln!("snp-emu: connection closed"),
            Err(e) => eprintln!("snp-emu: connection error: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        chain::Chain,
        psp::{LaunchInfo, Psp},
    };
    use zeroize::Zeroizing;

    fn psp() -> Psp {
        let chain = Chain::builtin().unwrap();
        let root = chain.derive_root_secret();
        let launch = LaunchInfo {
            measurement: [0; 48],
            policy: 0x30000,
            host_data: [0; 32],
            report_version: 3,
            platform_info: 1,
            report_id: [0; 32],
        };
        Psp::new(chain, launch, root, Zeroizing::new([5; 32])).unwrap()
    }

    fn frame(cmd: u8, payload: &[u8]) -> Event {
        Event::Frame {
            cmd,
            status: 0,
            payload: payload.to_vec(),
        }
    }

    #[test]
    fn dispatch() {
        let mut p = psp();
        assert_eq!(
            handle(&mut p, Event::Garbage),
            reply(0, Status::BadFrame, &[])
        );
        assert_eq!(handle(&mut p, frame(0, b"")).status, Status::UnknownCommand);
        assert_eq!(handle(&mut p, frame(9, b"")).status, Status::UnknownCommand);
        assert_eq!(handle(&mut p, frame(1, b"x")).status, Status::BadLength);
        assert_eq!(handle(&mut p, frame(3, b"x")).status, Status::BadLength);
        assert_eq!(
            handle(&mut p, frame(2, &[0; 4095])).status,
            Status::BadLength
        );
        assert_eq!(
            handle(&mut p, frame(2, &[0; 4096])).status,
            Status::BadMessage
        );
        assert_eq!(
            handle(&mut p, frame(1, b"")),
            reply(1, Status::Ok, &[5; 32])
        );
        assert_eq!(
            handle(&mut p, frame(1, b"")),
            reply(1, Status::VmpckTaken, &[])
        );
        let certs = handle(&mut p, frame(3, b""));
        assert_eq!(certs.status, Status::Ok);
        assert_eq!(certs.payload, p.cert_table());
        let wire = certs.encode().unwrap();
        assert_eq!(&wire[..8], b"SNPR\x01\x03\x00\x00");
        assert_eq!(wire.len(), 12 + certs.payload.len());
    }
}
