//! Request dispatch (sans-IO) and the unix-socket serving loop of `tdx-emu serve`.

use std::{
    io::{self, Read, Write},
    os::unix::net::{UnixListener, UnixStream},
};

use snp_emu_proto::{Event, FrameError, emit_frame};

use crate::{
    EmuError, Emulator,
    proto::{Cmd, REPORT_DATA_LEN, RSP_MAGIC, Status, TDREPORT_LEN, request_decoder},
};

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
    /// The wire bytes; fails only for a payload over the frame limit (a quote is ~4 KiB).
    pub fn encode(&self) -> Result<Vec<u8>, FrameError> {
        emit_frame(RSP_MAGIC, self.cmd, self.status as u16, &self.payload)
    }
}

fn reply(cmd: u8, status: Status, payload: Vec<u8>) -> Reply {
    Reply {
        cmd,
        status,
        payload,
    }
}

/// Answers one decoded event with one reply.
pub fn handle(emu: &Emulator, event: Event) -> Reply {
    let (cmd, payload) = match event {
        Event::Garbage => return reply(Cmd::Invalid as u8, Status::BadFrame, Vec::new()),
        Event::Frame { cmd, payload, .. } => (cmd, payload),
    };
    match Cmd::from_u8(cmd) {
        None | Some(Cmd::Invalid) => reply(cmd, Status::UnknownCommand, Vec::new()),
        Some(Cmd::GetQuote) => match <&[u8; TDREPORT_LEN]>::try_from(payload.as_slice()) {
            Err(_) => reply(cmd, Status::BadLength, Vec::new()),
            Ok(r) => match emu.quote(r) {
                Ok(q) => reply(cmd, Status::Ok, q),
                Err(EmuError::ReportMac) => reply(cmd, Status::BadReport, Vec::new()),
                Err(_) => reply(cmd, Status::QuoteFailed, Vec::new()),
            },
        },
        Some(Cmd::TdReport) => match <&[u8; REPORT_DATA_LEN]>::try_from(payload.as_slice()) {
            Err(_) => reply(cmd, Status::BadLength, Vec::new()),
            Ok(rd) => match emu.td_report(rd) {
                Ok(r) => reply(cmd, Status::Ok, r.to_vec()),
                Err(_) => reply(cmd, Status::QuoteFailed, Vec::new()),
            },
        },
        Some(Cmd::GetRoot) if !payload.is_empty() => reply(cmd, Status::BadLength, Vec::new()),
        Some(Cmd::GetRoot) => reply(cmd, Status::Ok, emu.chain().root_der.clone()),
        Some(Cmd::EventLog) if !payload.is_empty() => reply(cmd, Status::BadLength, Vec::new()),
        Some(Cmd::EventLog) => match emu.event_log() {
            Some(log) => reply(cmd, Status::Ok, log.to_vec()),
            None => reply(cmd, Status::NoEventLog, Vec::new()),
        },
    }
}

/// Serves one connection until the peer closes it.
pub fn serve_connection(emu: &Emulator, stream: &mut UnixStream) -> io::Result<()> {
    let mut dec = request_decoder();
    let mut buf = [0u8; 8192];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        dec.push(buf.get(..n).unwrap_or_default());
        while let Some(event) = dec.next_event() {
            let reply = handle(emu, event);
            eprintln!("tdx-emu: cmd {} -> {}", reply.cmd, reply.status);
            stream.write_all(&reply.encode().map_err(io::Error::other)?)?;
        }
    }
}

/// Accepts connections one at a time, forever (the emulator is stateless between requests).
pub fn serve(emu: &Emulator, listener: &UnixListener) -> io::Result<()> {
    loop {
        let (mut stream, _) = listener.accept()?;
        match serve_connection(emu, &mut stream) {
            Ok(()) => eprintln!("tdx-emu: connection closed"),
            Err(e) => eprintln!("tdx-emu: connection error: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Chain, DEFAULT_SEED, TdMeasurements};

    fn frame(cmd: u8, payload: &[u8]) -> Event {
        Event::Frame {
            cmd,
            status: 0,
            payload: payload.to_vec(),
        }
    }

    #[test]
    fn dispatch() {
        let emu = Emulator::new(
            Chain::generate(DEFAULT_SEED).unwrap(),
            TdMeasurements::default(),
        );
        assert_eq!(handle(&emu, Event::Garbage).status, Status::BadFrame);
        assert_eq!(handle(&emu, frame(0, b"")).status, Status::UnknownCommand);
        assert_eq!(handle(&emu, frame(9, b"")).status, Status::UnknownCommand);
        assert_eq!(handle(&emu, frame(1, &[0; 1023])).status, Status::BadLength);
        assert_eq!(handle(&emu, frame(2, &[0; 63])).status, Status::BadLength);
        assert_eq!(handle(&emu, frame(3, b"x")).status, Status::BadLength);
        assert_eq!(handle(&emu, frame(1, &[0; 1024])).status, Status::BadReport);
        let r = handle(&emu, frame(2, &[7; 64]));
        assert_eq!(r.status, Status::Ok);
        assert_eq!(r.payload.len(), 1024);
        let q = handle(&emu, frame(1, &r.payload));
        assert_eq!(q.status, Status::Ok);
        let wire = q.encode().unwrap();
        assert_eq!(&wire[..6], b"TDXR\x01\x01");
        let root = handle(&emu, frame(3, b""));
        assert_eq!(root.payload, emu.chain().root_der);
        // No event log unless one was given; a payload is refused.
        assert_eq!(handle(&emu, frame(4, b"")).status, Status::NoEventLog);
        let emu = emu.with_event_log(b"log".to_vec());
        assert_eq!(handle(&emu, frame(4, b"x")).status, Status::BadLength);
        let log = handle(&emu, frame(4, b""));
        assert_eq!(
            (log.status, log.payload.as_slice()),
            (Status::Ok, &b"log"[..])
        );
    }
}
