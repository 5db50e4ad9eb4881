//! The `emulated` backend: `snp-emu` (an emulated AMD secure processor) reached over COM2.
//!
//! Wire format: the emulator's framing (`snp-emu-proto`, shared with the emulator and
//! host-tested there). Commands:
//! `GET_VMPCK` (answered once per emulator lifetime), `GUEST_REQUEST` (one 4 KiB SNP
//! guest-message page each way), `GET_CERTS` (the certificate table).
//!
//! The guest-message envelope is the real one (AMD SEV-SNP ABI spec 56860, §8.26,
//! `attest::snp::guest_msg`): AES-256-GCM under VMPCK0 with sequence numbers, so this code
//! path is the one hardware will use; only the transport (COM2 instead of the GHCB) and the
//! trust root (a test chain) differ. Nothing here is secure on its own: the VMPCK crosses the
//! host in the clear. It exists for tests, behind the `emulated-attestation` feature.

use alloc::vec::Vec;

use attest::snp::guest_msg::{GuestMessenger, KeyReq, PAGE_SIZE, Vmpck, field_select};
use snp_emu_proto::{Cmd, HEADER_LEN, Header, MagicScanner, RSP_MAGIC, Status};

use super::{Capabilities, DerivedKey, PlatformError, PlatformKind, PlatformOps};
use crate::console::Uart;
use crate::time::Instant;

/// COM2, where `snp-emu` listens.
pub(crate) const COM2: u16 = 0x2f8;
/// How long one reply may take.
const REPLY_TIMEOUT_US: u64 = 30 * 1_000_000;
/// Polls of the UART before giving up while the clock is not calibrated yet (the
/// loopback-GHCB stub fetches VMPCK0 before the clocks step): tens of seconds under TCG.
const REPLY_TIMEOUT_POLLS: u64 = 1 << 27;

/// The emulated platform.
pub struct Emulated {
    uart: Uart,
    messenger: GuestMessenger,
}

impl Emulated {
    /// Opens COM2 and fetches VMPCK0 from the emulator.
    #[cfg_attr(feature = "loopback-ghcb", allow(dead_code))]
    pub fn connect() -> Result<Self, PlatformError> {
        let uart = Uart::new(COM2);
        open(&uart);
        let key = call(&uart, Cmd::GetVmpck, &[])?;
        let key: [u8; 32] = key
            .as_slice()
            .try_into()
            .map_err(|_| PlatformError::Protocol("VMPCK is not 32 bytes"))?;
        Ok(Self {
            uart,
            messenger: GuestMessenger::new(Vmpck::new(key), 0),
        })
    }

    /// Sends a sealed guest message (padded to a page) and returns the response page. On any
    /// failure the messenger abandons its key: the sequence number's fate is unknown.
    fn exchange(&mut self, mut msg: Vec<u8>) -> Result<Vec<u8>, PlatformError> {
        msg.resize(PAGE_SIZE, 0);
        match call(&self.uart, Cmd::GuestRequest, &msg) {
            Ok(rsp) => Ok(rsp),
            Err(e) => {
                self.messenger.abandon();
                Err(e)
            }
        }
    }
}

/// Initialises the UART and drops whatever is waiting (stale bytes from an earlier boot).
pub(crate) fn open(uart: &Uart) {
    uart.init();
    while uart.try_read_byte().is_some() {}
}

/// One request/reply exchange (also the loopback-GHCB stub's transport, over a raw UART).
pub(crate) fn call(uart: &Uart, cmd: Cmd, payload: &[u8]) -> Result<Vec<u8>, PlatformError> {
    let request = snp_emu_proto::emit_frame(snp_emu_proto::REQ_MAGIC, cmd as u8, 0, payload)
        .map_err(|_| PlatformError::Protocol("request too large"))?;
    uart.write_all(&request);

    let start = Instant::now();
    let mut polls = 0u64;
    let mut read = |buf: &mut [u8]| -> Result<(), PlatformError> {
        for b in buf.iter_mut() {
            loop {
                if let Some(v) = uart.try_read_byte() {
                    *b = v;
                    break;
                }
                polls += 1;
                let now = Instant::now();
                let timed_out = if now.micros_since_boot() == 0 {
                    polls > REPLY_TIMEOUT_POLLS
                } else {
                    now.micros_since(start) > REPLY_TIMEOUT_US
                };
                if timed_out {
                    return Err(PlatformError::Transport("no reply from snp-emu on COM2"));
                }
                core::hint::spin_loop();
            }
        }
        Ok(())
    };
    // Replies to unframed bytes (the firmware's console output on COM2 before we took over)
    // may come first: skip them and wait for the reply to our command.
    loop {
        let mut scanner = MagicScanner::new(RSP_MAGIC);
        loop {
            let mut b = [0u8; 1];
            read(&mut b)?;
            if scanner
                .push(b[0])
                .map_err(|_| PlatformError::Protocol("no reply header"))?
            {
                break;
            }
        }
        let mut head = [0u8; HEADER_LEN];
        let (magic, rest) = head.split_at_mut(RSP_MAGIC.len());
        magic.copy_from_slice(&RSP_MAGIC);
        read(rest)?;
        let reply = Header::parse(&head, RSP_MAGIC)
            .map_err(|_| PlatformError::Protocol("bad reply header"))?;
        let mut body = alloc::vec![0u8; reply.payload_len()];
        read(&mut body)?;
        if reply.cmd == Cmd::Invalid as u8 {
            log::debug!(
                "snp-emu: skipped a reply to unframed bytes (status {})",
                reply.status
            );
            continue;
        }
        if reply.cmd != cmd as u8 {
            return Err(PlatformError::Protocol("reply to another command"));
        }
        if reply.status != Status::Ok as u16 {
            return Err(PlatformError::Firmware(u32::from(reply.status)));
        }
        return Ok(body);
    }
}

impl PlatformOps for Emulated {
    fn kind(&self) -> PlatformKind {
        PlatformKind::Emulated
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            attestation: true,
            derived_key: true,
            memory_encryption: false,
        }
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

    fn cert_table(&mut self) -> Result<Vec<u8>, PlatformError> {
        // Hardware returns it with the extended report request; the emulator has its own command.
        call(&self.uart, Cmd::GetCerts, &[])
    }
}
