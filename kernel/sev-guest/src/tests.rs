//! End-to-end tests of the backend against the fake hypervisor ([`crate::fake`]): every exit
//! and every error code the backend can meet, each named in its test.

use attest::ratls::guid;
use attest::snp::guest_msg::{GuestMsgError, STATUS_INVALID_PARAM};

use crate::fake::{FakeHv, GHCB_GPA};
use crate::greq::{Certs, GreqError, GuestRequester};
use crate::msr::{HvFeatures, KmsReason, MsrProtocolError, SevInfo, TerminateReason};
use crate::nae::{HvError, IoSize, MalformedReason};
use crate::pool::{PoolError, SharedPool};
use crate::psc::{self, PageOp, PscEntry, PscError};
use crate::session::GhcbSession;
use crate::{Error, PvalidateError, SharedAccessError, Vmgexit};

const POOL_BASE: u64 = 0x11_0000;

fn session() -> GhcbSession<FakeHv> {
    GhcbSession::establish(FakeHv::new()).unwrap()
}

fn establish_with(f: impl FnOnce(&mut FakeHv)) -> Result<GhcbSession<FakeHv>, Error> {
    let mut hv = FakeHv::new();
    f(&mut hv);
    GhcbSession::establish(hv).map_err(|e| e.error)
}

#[test]
fn establish_registers_a_shared_ghcb() {
    let mut s = session();
    assert_eq!(s.version(), 2);
    assert_eq!(s.cbit(), 51);
    assert_eq!(s.features().0 & HvFeatures::SNP, HvFeatures::SNP);
    assert!(s.hv().is_shared_gfn(GHCB_GPA >> 12));
    assert!(s.hv().violations.is_empty());
    assert_eq!(s.stats().msr_protocol, 4);
}

#[test]
fn establish_errors() {
    let old = SevInfo {
        max_version: 1,
        min_version: 1,
        cbit: 51,
    }
    .emit();
    let e = establish_with(|h| h.inject.sev_info = Some(old)).unwrap_err();
    assert_eq!(
        e,
        Error::Msr(MsrProtocolError::ProtocolVersion { min: 1, max: 1 })
    );
    assert_eq!(e.terminate_reason(), TerminateReason::ProtocolVersion);

    let e = establish_with(|h| h.inject.sev_info = Some(0x013)).unwrap_err();
    assert!(matches!(
        e,
        Error::Msr(MsrProtocolError::UnexpectedResponse { expected: 1, .. })
    ));

    let e = establish_with(|h| h.inject.features = Some(0x081)).unwrap_err();
    assert_eq!(e, Error::Msr(MsrProtocolError::NoSnpFeature));
    assert_eq!(
        e.terminate_reason(),
        TerminateReason::Kms(KmsReason::HvNoSnp)
    );

    let e = establish_with(|h| h.inject.register_reply = Some(0xFFFF_FFFF_FFFF_F013)).unwrap_err();
    assert!(matches!(
        e,
        Error::Msr(MsrProtocolError::GpaMismatch {
            requested: 0x100,
            ..
        })
    ));
    assert_eq!(
        e.terminate_reason(),
        TerminateReason::Kms(KmsReason::GhcbRegistration)
    );

    let e = establish_with(|h| h.inject.msr_psc_error = Some(7)).unwrap_err();
    assert_eq!(e, Error::Msr(MsrProtocolError::PscFailed(7)));

    for pv in [
        PvalidateError::FailInput,
        PvalidateError::FailSizeMismatch,
        PvalidateError::NoUpdate,
        PvalidateError::Unknown(9),
    ] {
        let e = establish_with(|h| h.inject.pvalidate = Some(pv)).unwrap_err();
        assert_eq!(e, Error::Pvalidate(pv));
        assert_eq!(
            e.terminate_reason(),
            TerminateReason::Kms(KmsReason::Pvalidate)
        );
    }
}

#[test]
fn ioio_msr_mmio_exits() {
    let mut s = session();
    s.hv().ports.insert(0x3FD, 0x60);
    assert_eq!(s.io_in(0x3FD, IoSize::B8), Ok(0x60));
    s.io_out(0x3F8, IoSize::B8, 0x1_41).unwrap();
    s.io_out(0xCF8, IoSize::B32, 0x8000_0810).unwrap();
    assert_eq!(s.hv().port_writes, [(0x3F8, 0x41), (0xCF8, 0x8000_0810)]);
    s.wrmsr(0x1B, 0xFEE0_0900_0000_0001).unwrap();
    assert_eq!(s.rdmsr(0x1B), Ok(0xFEE0_0900_0000_0001));
    s.mmio_write(0xFEB0_0010, &0xDEAD_BEEFu32.to_le_bytes())
        .unwrap();
    let mut v = [0u8; 4];
    s.mmio_read(0xFEB0_0010, &mut v).unwrap();
    assert_eq!(u32::from_le_bytes(v), 0xDEAD_BEEF);
    assert_eq!(
        s.mmio_read(0xFEB0_0010, &mut [0u8; 3]),
        Err(Error::InvalidArgument("MMIO access length (1, 2, 4 or 8)"))
    );
    let st = s.stats();
    assert_eq!((st.ioio, st.msr, st.mmio), (3, 2, 2));
}

#[test]
fn exit_answer_errors() {
    let mut s = session();
    s.hv().inject.drop_outputs = true;
    assert_eq!(
        s.io_in(0x3FD, IoSize::B8),
        Err(HvError::MissingOutput("RAX"))
    );
    assert_eq!(s.rdmsr(0x10), Err(HvError::MissingOutput("RAX")));
    s.hv().inject.drop_outputs = false;
    s.hv().inject.exception = Some(0x8000_030D);
    assert_eq!(
        s.io_out(0x80, IoSize::B8, 0),
        Err(HvError::Exception {
            vector: 13,
            event: 0x8000_030D
        })
    );
    for r in [
        MalformedReason::NotRegistered,
        MalformedReason::InvalidUsage,
        MalformedReason::InvalidScratchArea,
        MalformedReason::MissingInput,
        MalformedReason::InvalidInput,
        MalformedReason::InvalidEvent,
        MalformedReason::Unknown(42),
    ] {
        s.hv().inject.malformed = Some(r);
        assert_eq!(s.wrmsr(0x10, 0), Err(HvError::Malformed(r)));
    }
    s.hv().inject.undefined_info1 = Some(5);
    assert_eq!(s.wrmsr(0x10, 0), Err(HvError::UnknownResponse(5)));
    assert_eq!(
        Error::Hv(HvError::UnknownResponse(5)).terminate_reason(),
        TerminateReason::Kms(KmsReason::HvProtocol)
    );
}

#[test]
fn pool_conversions_batching_and_scrambling() {
    let mut s = session();
    let mut pool = SharedPool::new(POOL_BASE, 300).unwrap();
    // 300 pages: two PSC batches (253 + 47).
    let big = pool.alloc(&mut s, 300).unwrap();
    assert_eq!(s.stats().psc, 2);
    assert_eq!(pool.shared_pages(), 300);
    for p in 0..300 {
        assert!(s.hv().is_shared_gfn((POOL_BASE >> 12) + p));
    }
    assert!(s.hv().violations.is_empty(), "{:?}", s.hv().violations);
    assert!(pool.is_shared(big.gpa() + 4096 * 299, 4096));
    assert!(!pool.is_shared(big.gpa() + 4096 * 299, 4097));
    assert!(!pool.is_shared(POOL_BASE - 1, 2));
    // Bounce in and out.
    pool.write(&mut s, &big, 4090, b"0123456789").unwrap();
    let mut out = [0u8; 10];
    pool.read(&mut s, &big, 4090, &mut out).unwrap();
    assert_eq!(&out, b"0123456789");
    assert_eq!(
        pool.write(&mut s, &big, big.len() - 1, b"xx"),
        Err(Error::Pool(PoolError::OutOfBounds))
    );
    // Free, reclaim: private and validated again, contents scrambled by the conversion.
    pool.free(big).unwrap();
    assert_eq!(pool.reclaim(&mut s), Ok(300));
    assert_eq!(pool.shared_pages(), 0);
    for p in 0..300 {
        assert!(s.hv().is_private_validated((POOL_BASE >> 12) + p));
    }
    // The guest can no longer touch the pages as shared memory.
    assert_eq!(
        s.hv().read_shared(POOL_BASE, &mut out),
        Err(SharedAccessError::NotShared { gpa: POOL_BASE })
    );
    // Reallocated pages are zeroed, not the scrambled contents.
    let b = pool.alloc(&mut s, 2).unwrap();
    let mut page = [0xAAu8; 4096];
    pool.read(&mut s, &b, 0, &mut page).unwrap();
    assert!(page.iter().all(|x| *x == 0));
    assert!(s.hv().violations.is_empty());
}

#[test]
fn pool_errors() {
    let mut s = session();
    assert_eq!(
        SharedPool::new(0x1001, 1).unwrap_err(),
        PoolError::BadRegion
    );
    assert_eq!(
        SharedPool::new(0x1000, 0).unwrap_err(),
        PoolError::BadRegion
    );
    let mut pool = SharedPool::new(POOL_BASE, 4).unwrap();
    assert_eq!(pool.alloc(&mut s, 0), Err(Error::Pool(PoolError::ZeroSize)));
    let a = pool.alloc(&mut s, 3).unwrap();
    assert_eq!(
        pool.alloc(&mut s, 2),
        Err(Error::Pool(PoolError::Exhausted { pages: 2 }))
    );
    let mut other = SharedPool::new(POOL_BASE + 0x10_0000, 2).unwrap();
    let foreign = other.alloc(&mut s, 1).unwrap();
    assert_eq!(pool.free(foreign), Err(PoolError::NotAllocated));
    pool.free(a).unwrap();
    // A page the RMP already shows in the requested state: PVALIDATE reports no update.
    s.hv().inject.pvalidate = Some(PvalidateError::NoUpdate);
    assert_eq!(
        pool.reclaim(&mut s),
        Err(Error::Pvalidate(PvalidateError::NoUpdate))
    );
}

#[test]
fn psc_partial_progress_resumes() {
    let mut s = session();
    s.hv().inject.psc_per_call = Some(7);
    let mut pool = SharedPool::new(POOL_BASE, 20).unwrap();
    pool.alloc(&mut s, 20).unwrap();
    // 20 entries at 7 per call: 3 exits.
    assert_eq!(s.stats().psc, 3);
    assert!(s.hv().violations.is_empty());
}

#[test]
fn psc_error_codes() {
    let entries = [PscEntry::page(0x150, PageOp::Private)];
    for (info2, want) in [
        (psc::PSC_ERROR_INVALID_HEADER, PscError::InvalidHeader),
        (psc::PSC_ERROR_INVALID_ENTRY, PscError::InvalidEntry),
        (psc::PSC_ERROR_GENERIC, PscError::Generic),
        (0x5, PscError::Other(5)),
    ] {
        let mut s = session();
        s.hv().inject.psc_error = Some(info2);
        assert_eq!(s.page_state_change(&entries), Err(Error::Psc(want)));
    }
    let mut s = session();
    s.hv().inject.psc_stall = true;
    assert_eq!(
        s.page_state_change(&entries),
        Err(Error::Psc(PscError::NoProgress {
            before: 0,
            after: 0
        }))
    );
    let mut s = session();
    s.hv().inject.psc_tamper_end = true;
    assert_eq!(
        s.page_state_change(&entries),
        Err(Error::Psc(PscError::HeaderTampered))
    );
    // An entry for memory the hypervisor does not know.
    let mut s = session();
    assert_eq!(
        s.page_state_change(&[PscEntry::page(0xF_FFFF, PageOp::Shared)]),
        Err(Error::Psc(PscError::InvalidEntry))
    );
    assert_eq!(
        Error::Psc(PscError::Generic).terminate_reason(),
        TerminateReason::Kms(KmsReason::PageStateChange)
    );
    // MSR-protocol page-state change.
    let mut s = session();
    s.msr_page_state_change(0x150, PageOp::Private).unwrap();
    s.hv().inject.msr_psc_error = Some(3);
    assert_eq!(
        s.msr_page_state_change(0x150, PageOp::Private),
        Err(Error::Msr(MsrProtocolError::PscFailed(3)))
    );
}

struct Guest {
    s: GhcbSession<FakeHv>,
    pool: SharedPool,
    greq: GuestRequester,
}

fn guest() -> Guest {
    let mut s = session();
    let mut pool = SharedPool::new(POOL_BASE, 16).unwrap();
    let vmpck = s.hv().psp.take_vmpck().unwrap();
    let key = attest::snp::guest_msg::Vmpck::new(*vmpck);
    let greq = GuestRequester::new(key, 0, &mut pool, &mut s).unwrap();
    Guest { s, pool, greq }
}

impl Guest {
    fn report(&mut self) -> Result<crate::greq::ReportOutcome, GreqError> {
        self.greq.report(&mut self.s, &self.pool, [7; 64], None)
    }
}

#[test]
fn report_and_extended_report() {
    let mut g = guest();
    let r = g.report().unwrap();
    assert_eq!(r.report.report_data, [7; 64]);
    assert_eq!(r.report.measurement, [0x4D; 48]);
    assert_eq!(r.certs, Certs::NotRequested);
    assert_eq!(g.greq.seqno(), 2);
    // Extended request with a large enough buffer: the table starts with the VCEK entry.
    let buf = g.pool.alloc(&mut g.s, 4).unwrap();
    let r = g
        .greq
        .report(&mut g.s, &g.pool, [8; 64], Some(&buf))
        .unwrap();
    let Certs::Table(t) = r.certs else {
        panic!("no table: {:?}", r.certs)
    };
    assert_eq!(t[..16], guid::VCEK);
    assert_eq!(t.len(), 4 * 4096);
    assert_eq!(g.greq.seqno(), 4);
    assert!(g.s.hv().violations.is_empty());
}

#[test]
fn invalid_len_retries_as_plain_request() {
    let mut g = guest();
    let needed = g.s.hv().psp.cert_table().len().div_ceil(4096) as u64;
    assert!(needed > 1, "the test chain's table must exceed a page");
    let small = g.pool.alloc(&mut g.s, 1).unwrap();
    let r = g
        .greq
        .report(&mut g.s, &g.pool, [9; 64], Some(&small))
        .unwrap();
    assert_eq!(r.certs, Certs::TooSmall { pages: needed });
    assert_eq!(r.report.report_data, [9; 64]);
    // The sequence number advanced and the key is still usable.
    assert_eq!(g.greq.seqno(), 2);
    assert!(g.greq.is_usable());
    // The same ciphertext went to the firmware once (the plain retry).
    assert_eq!(g.s.hv().forwarded.len(), 1);
    g.report().unwrap();
    // INVALID_LEN for a plain request is a protocol error: VMPCK wiped.
    g.s.hv().inject.invalid_len_plain = true;
    assert_eq!(g.report().unwrap_err(), GreqError::InvalidLenWithoutCerts);
    assert!(!g.greq.is_usable());
}

#[test]
fn busy_resends_the_same_ciphertext() {
    let mut g = guest();
    g.s.hv().inject.busy = 3;
    g.report().unwrap();
    assert_eq!(g.s.stats().guest_request, 4);
    assert_eq!(g.greq.seqno(), 2);
    // Exhausting the bound wipes the key; later requests are refused.
    let mut g = guest();
    g.greq = g.greq.with_max_busy(2);
    g.s.hv().inject.busy = 10;
    assert_eq!(g.report().unwrap_err(), GreqError::BusyExhausted(2));
    assert!(!g.greq.is_usable());
    assert_eq!(
        g.report().unwrap_err(),
        GreqError::Msg(GuestMsgError::KeyWiped)
    );
}

#[test]
fn busy_resend_is_byte_identical() {
    let mut g = guest();
    g.s.hv().inject.busy = 2;
    g.report().unwrap();
    let hv = g.s.hv();
    let got = &hv.received;
    assert_eq!(got.len(), 3);
    assert!(got.iter().all(|p| *p == got[0]));
    assert_eq!(got[0][0x20..0x28], 1u64.to_le_bytes());
    assert_eq!(hv.forwarded, got[2..]);
}

#[test]
fn errors_after_sending_wipe_vmpck0() {
    let mut g = guest();
    g.s.hv().inject.fw_error = Some(0x16);
    assert_eq!(g.report().unwrap_err(), GreqError::Firmware(0x16));
    assert!(!g.greq.is_usable());

    let mut g = guest();
    g.s.hv().inject.vmm_error = Some(0x7);
    assert_eq!(g.report().unwrap_err(), GreqError::Vmm(7));
    assert!(!g.greq.is_usable());

    let mut g = guest();
    g.s.hv().inject.corrupt_response = true;
    assert_eq!(
        g.report().unwrap_err(),
        GreqError::Msg(GuestMsgError::AuthFailed)
    );
    assert!(!g.greq.is_usable());

    let mut g = guest();
    g.s.hv().inject.exception = Some(0x8000_030D);
    assert!(matches!(
        g.report(),
        Err(GreqError::Hv(HvError::Exception { vector: 13, .. }))
    ));
    assert!(!g.greq.is_usable());
    assert_eq!(
        g.report().unwrap_err(),
        GreqError::Msg(GuestMsgError::KeyWiped)
    );
}

#[test]
fn derived_key_binds_tcb_version() {
    let mut g = guest();
    let tcb = g.report().unwrap().report.committed_tcb.get();
    let k1 = g.greq.derived_key(&mut g.s, &g.pool, tcb).unwrap();
    let k2 = g.greq.derived_key(&mut g.s, &g.pool, tcb).unwrap();
    assert_eq!(k1.0, k2.0);
    // An older TCB (the firmware allows it) gives another key: a key is tied to its TCB.
    let shift = (0..64)
        .step_by(8)
        .find(|sh| (tcb >> sh) & 0xFF != 0)
        .expect("the test TCB is not zero");
    let older = tcb - (1 << shift);
    let k3 = g.greq.derived_key(&mut g.s, &g.pool, older).unwrap();
    assert_ne!(k1.0, k3.0);
    // A newer TCB is refused by the firmware inside an authenticated response: key kept.
    let newer = tcb + (1 << shift);
    assert_eq!(
        g.greq.derived_key(&mut g.s, &g.pool, newer).unwrap_err(),
        GreqError::Msg(GuestMsgError::FirmwareStatus(STATUS_INVALID_PARAM))
    );
    assert!(g.greq.is_usable());
}

#[test]
fn terminate_request_reaches_the_hypervisor() {
    let mut s = session();
    s.terminate(TerminateReason::Kms(KmsReason::VcNested));
    assert_eq!(s.hv().terminated, Some((0xC, 0x09)));
    s.terminate(TerminateReason::SevNotSupported);
    assert_eq!(s.hv().terminated, Some((0, 1)));
}

/// A backend over plain memory (the kernel's "none"/emulated platforms): conversions are
/// no-ops, copies go to a byte array.
struct PlainBackend {
    base: u64,
    mem: alloc::vec::Vec<u8>,
    conversions: usize,
}

impl crate::pool::PoolBackend for PlainBackend {
    fn make_shared(&mut self, gpas: &[u64]) -> Result<(), Error> {
        self.conversions += gpas.len();
        Ok(())
    }
    fn make_private(&mut self, gpas: &[u64]) -> Result<(), Error> {
        self.conversions += gpas.len();
        Ok(())
    }
    fn write_shared(&mut self, gpa: u64, data: &[u8]) -> Result<(), Error> {
        let off = (gpa - self.base) as usize;
        self.mem[off..off + data.len()].copy_from_slice(data);
        Ok(())
    }
    fn read_shared(&mut self, gpa: u64, out: &mut [u8]) -> Result<(), Error> {
        let off = (gpa - self.base) as usize;
        out.copy_from_slice(&self.mem[off..off + out.len()]);
        Ok(())
    }
}

#[test]
fn pool_on_plain_memory_is_the_same_code_path() {
    let mut b = PlainBackend {
        base: POOL_BASE,
        mem: alloc::vec![0xEE; 4 * 4096],
        conversions: 0,
    };
    let mut pool = SharedPool::new(POOL_BASE, 4).unwrap();
    let x = pool.alloc(&mut b, 2).unwrap();
    assert_eq!(b.conversions, 2);
    // Allocation zeroes (the 0xEE filler is gone).
    assert!(b.mem[..2 * 4096].iter().all(|v| *v == 0));
    pool.write(&mut b, &x, 10, b"abc").unwrap();
    let mut out = [0u8; 3];
    pool.read(&mut b, &x, 10, &mut out).unwrap();
    assert_eq!(&out, b"abc");
    assert!(pool.is_shared(x.gpa() + 10, 3));
    pool.free(x).unwrap();
    assert!(!pool.is_shared(POOL_BASE, 1));
    // Freed pages stay shared: reallocating them converts nothing.
    let y = pool.alloc(&mut b, 2).unwrap();
    assert_eq!(b.conversions, 2);
    pool.free(y).unwrap();
    assert_eq!(pool.reclaim(&mut b), Ok(2));
    assert_eq!(b.conversions, 4);
}

#[test]
fn mmio_exit_encodings() {
    use crate::ghcb::SHARED_BUFFER_OFFSET;
    use crate::nae::exit_code;
    let mut s = session();
    let scratch = Some(GHCB_GPA + SHARED_BUFFER_OFFSET as u64);
    // 56421 §4.1.5: SW_EXITCODE 0x8000_0002 / 0x8000_0001, SW_EXITINFO1 = the GPA,
    // SW_EXITINFO2 = the length, SW_SCRATCH = the GHCB's shared buffer, where the data goes.
    for (len, value) in [
        (1usize, 0xA5u64),
        (2, 0xBEEF),
        (4, 0xDEAD_BEEF),
        (8, u64::MAX - 7),
    ] {
        let gpa = 0xFEB0_1000 + len as u64 * 0x10;
        s.mmio_write(gpa, &value.to_le_bytes()[..len]).unwrap();
        let mut out = [0u8; 8];
        s.mmio_read(gpa, &mut out[..len]).unwrap();
        assert_eq!(u64::from_le_bytes(out), value, "{len} bytes");
        let n = s.hv().mmio_exits.len();
        assert_eq!(
            s.hv().mmio_exits[n - 2..],
            [
                (exit_code::MMIO_WRITE, gpa, len as u64, scratch),
                (exit_code::MMIO_READ, gpa, len as u64, scratch)
            ]
        );
    }
    assert_eq!(exit_code::MMIO_READ, 0x8000_0001);
    assert_eq!(exit_code::MMIO_WRITE, 0x8000_0002);
    assert_eq!(exit_code::NPF, 0x400);
    // A width the exit cannot carry is refused before any exit.
    for bad in [0usize, 3, 5, 16] {
        let mut buf = [0u8; 16];
        assert_eq!(
            s.mmio_write(0xFEB0_1000, &buf[..bad]),
            Err(Error::InvalidArgument("MMIO access length (1, 2, 4 or 8)"))
        );
        assert_eq!(
            s.mmio_read(0xFEB0_1000, &mut buf[..bad]),
            Err(Error::InvalidArgument("MMIO access length (1, 2, 4 or 8)"))
        );
    }
    assert_eq!(s.hv().mmio_exits.len(), 8);
    assert_eq!(s.stats().mmio, 8);
}

#[test]
fn mmio_exit_errors() {
    use crate::mmio::{MmioBackend, MmioError, Width};
    let mut s = session();
    let mut out = [0u8; 4];
    // An exception to inject (#GP).
    s.hv().inject.exception = Some(0x8000_030D);
    assert_eq!(
        s.mmio_read(0xFEB0_0000, &mut out),
        Err(Error::Hv(HvError::Exception {
            vector: 13,
            event: 0x8000_030D
        }))
    );
    // Every malformed-input reason, on reads and writes.
    for r in [
        MalformedReason::NotRegistered,
        MalformedReason::InvalidUsage,
        MalformedReason::InvalidScratchArea,
        MalformedReason::MissingInput,
        MalformedReason::InvalidInput,
        MalformedReason::InvalidEvent,
        MalformedReason::Unknown(42),
    ] {
        s.hv().inject.malformed = Some(r);
        assert_eq!(
            s.mmio_read(0xFEB0_0000, &mut out),
            Err(Error::Hv(HvError::Malformed(r)))
        );
        s.hv().inject.malformed = Some(r);
        assert_eq!(
            s.mmio_write(0xFEB0_0000, &out),
            Err(Error::Hv(HvError::Malformed(r)))
        );
    }
    // An undefined SW_EXITINFO1.
    s.hv().inject.undefined_info1 = Some(3);
    assert_eq!(
        s.mmio_write(0xFEB0_0000, &out),
        Err(Error::Hv(HvError::UnknownResponse(3)))
    );
    // Through the fault handler's backend: every failure is `Backend`, reason 0x0A.
    s.hv().inject.malformed = Some(MalformedReason::InvalidScratchArea);
    assert_eq!(
        MmioBackend::read(&mut s, 0xFEB0_0000, Width::B4),
        Err(MmioError::Backend)
    );
    s.hv().inject.exception = Some(0x8000_030E);
    assert_eq!(
        MmioBackend::write(&mut s, 0xFEB0_0000, Width::B2, 1),
        Err(MmioError::Backend)
    );
    assert_eq!(
        MmioError::Backend.terminate_reason(),
        TerminateReason::Kms(KmsReason::HvProtocol)
    );
    // The fake's own checks: an MMIO exit without the shared buffer as scratch area, or
    // with a length the exit cannot carry, is malformed (what a real hypervisor answers).
    let mut hv = FakeHv::new();
    let mut g = crate::Ghcb::new();
    for (scratch, len, want) in [
        (0x1234u64, 4u64, MalformedReason::InvalidScratchArea),
        (GHCB_GPA + 0x800, 3, MalformedReason::InvalidInput),
    ] {
        g.reset(2);
        g.set(
            crate::ghcb::GhcbField::SwExitCode,
            crate::nae::exit_code::MMIO_READ,
        );
        g.set(crate::ghcb::GhcbField::SwExitInfo1, 0xFEB0_0000);
        g.set(crate::ghcb::GhcbField::SwExitInfo2, len);
        g.set(crate::ghcb::GhcbField::SwScratch, scratch);
        let mut est = GhcbSession::establish(hv).unwrap();
        est.hv().exit(&mut g);
        assert_eq!(
            crate::nae::check_response(
                g.page().sw_exit_info_1.get(),
                g.page().sw_exit_info_2.get()
            ),
            Err(HvError::Malformed(want))
        );
        hv = FakeHv::new();
    }
}

#[test]
fn mmio_fault_emulated_through_ghcb_exits() {
    use crate::ghcb::SHARED_BUFFER_OFFSET;
    use crate::mmio::{self, Gprs, MmioError, Windows};
    use crate::nae::exit_code;
    use crate::vc::NestingGuard;
    let mut s = session();
    let guard = NestingGuard::new();
    let mut w = Windows::new();
    w.add(0xFEB0_0000, 0x4000).unwrap();
    s.hv()
        .mmio
        .insert(0xFEB0_0014, 0x1122_3344u64.to_le_bytes());
    let scratch = Some(GHCB_GPA + SHARED_BUFFER_OFFSET as u64);
    // mov eax, dword ptr [rdi + 0x14]   8b 47 14  → one MMIO read exit.
    let mut g = Gprs {
        rip: 0x20_0000,
        ..Gprs::default()
    };
    g.r[0] = u64::MAX;
    g.r[7] = 0xFEB0_0000;
    let i = mmio::handle(&guard, &[0x8b, 0x47, 0x14], &mut g, None, &w, &mut s).unwrap();
    assert_eq!((i.len, g.rip, g.r[0]), (3, 0x20_0003, 0x1122_3344));
    assert_eq!(
        s.hv().mmio_exits,
        [(exit_code::MMIO_READ, 0xFEB0_0014, 4, scratch)]
    );
    // mov word ptr [rdi + 0x20], 0x7F   66 c7 47 20 7f 00  → one MMIO write exit.
    let i = mmio::handle(
        &guard,
        &[0x66, 0xc7, 0x47, 0x20, 0x7f, 0x00],
        &mut g,
        Some(0xFEB0_0020),
        &w,
        &mut s,
    )
    .unwrap();
    assert_eq!((i.len, g.rip), (6, 0x20_0009));
    assert_eq!(s.hv().mmio[&0xFEB0_0020][..2], [0x7f, 0]);
    assert_eq!(
        s.hv().mmio_exits[1],
        (exit_code::MMIO_WRITE, 0xFEB0_0020, 2, scratch)
    );
    // The hypervisor failing the exit: refused, RIP and registers unchanged.
    s.hv().inject.malformed = Some(MalformedReason::InvalidInput);
    let before = g;
    assert_eq!(
        mmio::handle(&guard, &[0x8b, 0x47, 0x14], &mut g, None, &w, &mut s),
        Err(MmioError::Backend)
    );
    assert_eq!(g, before);
    // Outside the device window: no exit at all.
    g.r[7] = 0x10_0000;
    assert_eq!(
        mmio::handle(&guard, &[0x89, 0x07], &mut g, None, &w, &mut s),
        Err(MmioError::OutsideWindows(0x10_0000))
    );
    // (The malformed answer came before the fake's device: it recorded two exits.)
    assert_eq!(s.hv().mmio_exits.len(), 2);
    assert_eq!(s.stats().mmio, 3);
}
