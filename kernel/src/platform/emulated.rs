//! The `emulated` backend: `snp-emu` (an emulated AMD secure processor) reached over COM2.
//!
//! Wire format (the emulator's framing, `image/snp-emu/src/frame.rs`): a 12-byte header —
//! magic `SNPQ` (guest → emulator) or `SNPR` (reply), version 1, command, status (u16 LE),
//! payload length (u32 LE) — then the payload. Commands: `GET_VMPCK` (1; answered once per
//! emulator lifetime), `GUEST_REQUEST` (2; one 4 KiB SNP guest-message page each way).
//!
//! The guest-message envelope is the real one (AMD SEV-SNP ABI spec 56860, §8.26,
//! `attest::snp::guest_msg`): AES-256-GCM under VMPCK0 with sequence numbers, so this code
//! path is the one hardware will use; only the transport (COM2 instead of the GHCB) and the
//! trust root (a test chain) differ. Nothing here is secure on its own: the VMPCK crosses the
//! host in the clear. It exists for tests, behind the `emulated-attestation` feature.

use alloc::vec::Vec;

use attest::snp::guest_msg::{field_select, GuestMessenger, KeyReq, Vmpck, PAGE_SIZE};

use super::{Capabilities, DerivedKey, PlatformError, PlatformKind, PlatformOps};
use crate::console::Uart;
use crate::time::Instant;

const COM2: u16 = 0x2f8;
const REQ_MAGIC: [u8; 4] = *b"SNPQ";
const RSP_MAGIC: [u8; 4] = *b"SNPR";
const VERSION: u8 = 1;
const HEADER_LEN: usize = 12;
/// Largest reply payload accepted (the emulator's limit).
const MAX_PAYLOAD: usize = 16 * 1024;
const CMD_GET_VMPCK: u8 = 1;
const CMD_GUEST_REQUEST: u8 = 2;
/// How long one reply may take.
const REPLY_TIMEOUT_US: u64 = 30 * 1_000_000;

/// The emulated platform.
pub struct Emulated {
    uart: Uart,
    messenger: GuestMessenger,
}

impl Emulated {
    /// Opens COM2 and fetches VMPCK0 from the emulator.
    pub fn connect() -> Result<Self, PlatformError> {
        let uart = Uart::new(COM2);
        uart.init();
        // Drop whatever is waiting (stale bytes from an earlier boot).
        while uart.try_read_byte().is_some() {}
        let key = call(&uart, CMD_GET_VMPCK, &[])?;
        let key: [u8; 32] = key.as_slice().try_into().map_err(|_| PlatformError::Protocol("VMPCK is not 32 bytes"))?;
        Ok(Self { uart, messenger: GuestMessenger::new(Vmpck::new(key), 0) })
    }

    /// Sends a sealed guest message (padded to a page) and returns the response page. On any
    /// failure the messenger abandons its key: the sequence number's fate is unknown.
    fn exchange(&mut self, mut msg: Vec<u8>) -> Result<Vec<u8>, PlatformError> {
        msg.resize(PAGE_SIZE, 0);
        match call(&self.uart, CMD_GUEST_REQUEST, &msg) {
            Ok(rsp) => Ok(rsp),
            Err(e) => {
                self.messenger.abandon();
                Err(e)
            }
        }
    }
}

/// One request/reply exchange.
fn call(uart: &Uart, cmd: u8, payload: &[u8]) -> Result<Vec<u8>, PlatformError> {
    let len = u32::try_from(payload.len()).map_err(|_| PlatformError::Protocol("request too large"))?;
    let mut header = [0u8; HEADER_LEN];
    header[..4].copy_from_slice(&REQ_MAGIC);
    header[4] = VERSION;
    header[5] = cmd;
    header[8..12].copy_from_slice(&len.to_le_bytes());
    uart.write_all(&header);
    uart.write_all(payload);

    let start = Instant::now();
    let mut read = |buf: &mut [u8]| -> Result<(), PlatformError> {
        for b in buf.iter_mut() {
            loop {
                if let Some(v) = uart.try_read_byte() {
                    *b = v;
                    break;
                }
                if Instant::now().micros_since(start) > REPLY_TIMEOUT_US {
                    return Err(PlatformError::Transport("no reply from snp-emu on COM2"));
                }
                core::hint::spin_loop();
            }
        }
        Ok(())
    };
    // Replies to garbage (cmd 0, e.g. the firmware's console output on COM2 before we took
    // over) may come first: skip them and wait for the reply to our command.
    loop {
        let (rcmd, status, body) = read_frame(&mut read)?;
        if rcmd == 0 && cmd != 0 {
            log::debug!("snp-emu: skipped a reply to unframed bytes (status {status})");
            continue;
        }
        if rcmd != cmd {
            return Err(PlatformError::Protocol("reply to another command"));
        }
        if status != 0 {
            return Err(PlatformError::Firmware(u32::from(status)));
        }
        return Ok(body);
    }
}

/// Reads one reply frame: finds the reply magic (skipping bytes before it), then the rest of
/// the header and the payload.
fn read_frame(
    read: &mut impl FnMut(&mut [u8]) -> Result<(), PlatformError>,
) -> Result<(u8, u16, Vec<u8>), PlatformError> {
    let mut window = [0u8; 4];
    let mut seen = 0usize;
    while window != RSP_MAGIC {
        let mut b = [0u8; 1];
        read(&mut b)?;
        window.copy_within(1.., 0);
        window[3] = b[0];
        seen += 1;
        if seen > MAX_PAYLOAD + HEADER_LEN {
            return Err(PlatformError::Protocol("no reply header"));
        }
    }
    let mut rest = [0u8; HEADER_LEN - 4];
    read(&mut rest)?;
    let [version, rcmd, s0, s1, l0, l1, l2, l3] = rest;
    let status = u16::from_le_bytes([s0, s1]);
    let rlen = u32::from_le_bytes([l0, l1, l2, l3]) as usize;
    if version != VERSION {
        return Err(PlatformError::Protocol("reply version"));
    }
    if rlen > MAX_PAYLOAD {
        return Err(PlatformError::Protocol("reply too large"));
    }
    let mut body = alloc::vec![0u8; rlen];
    read(&mut body)?;
    Ok((rcmd, status, body))
}

impl PlatformOps for Emulated {
    fn kind(&self) -> PlatformKind {
        PlatformKind::Emulated
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { attestation: true, derived_key: true, memory_encryption: false }
    }

    fn attestation_report(&mut self, report_data: &[u8; 64]) -> Result<Vec<u8>, PlatformError> {
        let msg = self
            .messenger
            .report_request(*report_data, 0)
            .map_err(|_| PlatformError::Protocol("cannot seal report request"))?;
        let rsp = self.exchange(msg)?;
        let report = self
            .messenger
            .report_response(&rsp)
            .map_err(|_| PlatformError::Protocol("report response rejected"))?;
        Ok(report.to_bytes().to_vec())
    }

    fn derived_key(&mut self) -> Result<Option<DerivedKey>, PlatformError> {
        // Bound to the launch measurement and the guest policy (a debug-enabled launch gets a
        // different key).
        let req = KeyReq::new(field_select::MEASUREMENT | field_select::GUEST_POLICY, 0);
        let msg = self
            .messenger
            .key_request(&req)
            .map_err(|_| PlatformError::Protocol("cannot seal key request"))?;
        let rsp = self.exchange(msg)?;
        let key = self
            .messenger
            .key_response(&rsp)
            .map_err(|_| PlatformError::Protocol("key response rejected"))?;
        Ok(Some(DerivedKey(key.0)))
    }
}
