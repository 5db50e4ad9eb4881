//! A CC event log written by TDVF on real Intel TDX hardware, read by our parser.
//!
//! `testdata/tdx/ccel_real_tdx.bin` is the 64 KiB CCEL log area of a TD booted by TDVF on TDX
//! hardware, as published by Phala Network's dstack (github.com/Dstack-TEE/dstack,
//! `cc-eventlog/samples/ccel.bin` at commit da51524e9a992088f20d17a25888eabc8e8e8012,
//! Apache-2.0; SHA-256 08e8363d55f4e4aa88f2439a4d8baa806c646c0ab93f683faa2ba640a6fc29d4).
//! It is data, not code. Our pinned IntelTdx OVMF writes no CCEL outside a TD and TCG cannot run
//! a TD, so this is the one real firmware log the tests have. It checks what the synthetic log
//! (`ccel_synthetic.bin`, written to our own reading of the specifications) cannot:
//!
//! - the parser reads a log a real firmware wrote, to its last event: 18 events after the Spec
//!   ID event, as dstack's parser also counts (its snapshot of the same file), and
//!   `eventlog::used_len` trims exactly the 0xFF free space after them;
//! - the replay gives the RTMRs Intel's pytdxmeasure 0.0.9 (PyPI, intel/tdx-tools) replays from
//!   the same file (pinned below);
//! - the digest rules we compute RTMR1 with hold in the real log: EV_SEPARATOR, EV_EFI_ACTION
//!   and EV_EFI_VARIABLE_DRIVER_CONFIG events digest their event data (TCG PC Client PFP rev
//!   1.05 §10.4.4, TDVF Design Guide §10.1.2);
//! - the RTMR1 order `measure::tdx::rtmr1_direct_boot` puts in the manifest (kernel, "Calling
//!   EFI Application from Boot Option", separator, the two ExitBootServices actions) is the one
//!   real TDVF extends: for the Authenticode digest of the application this TD booted, our
//!   calculator gives the log's RTMR1.
//!
//! No quote was published with the log, so its RTMRs are not checked against a TDX module's
//! report here; that needs TDX hardware (`scripts/hw-acceptance-tdx`).

use attest::measure::tdx::rtmr1_after_kernel;
use attest::tdx::eventlog::{
    EV_EFI_ACTION, EV_EFI_BOOT_SERVICES_APPLICATION, EV_NO_ACTION, EV_SEPARATOR, EventLog,
    EventLogError, LogExpectation, ReplayError, used_len,
};
use sha2::{Digest, Sha384};

const AREA: &[u8] = include_bytes!("../testdata/tdx/ccel_real_tdx.bin");

/// EV_EFI_VARIABLE_DRIVER_CONFIG (TCG PC Client PFP rev 1.05 §10.4.1).
const EV_EFI_VARIABLE_DRIVER_CONFIG: u32 = 0x8000_0001;

/// RTMR0..3 as Intel's pytdxmeasure 0.0.9 replays `ccel_real_tdx.bin`
/// (`TDEventLogActor(0, len).replay()` with `_read` returning the file's bytes).
const PYTDXMEASURE_RTMRS: [&str; 4] = [
    "274c2344116db7c663470693b5ba62b8621eac28cb41d2f816ddf188f9f423f900a1c44d32386fd3c993dc814e62af9d",
    "bdcf4ee0f7fdfe7c73fbb19ded73193aee23a6726b86d3b282ea097cf4c9ed7a0db21b5c1ccd513e410d90e310836b26",
    "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
];

fn log() -> EventLog<'static> {
    EventLog::parse(AREA).expect("the real CCEL parses")
}

fn sha384(b: &[u8]) -> [u8; 48] {
    Sha384::digest(b).into()
}

#[test]
fn real_ccel_parses_to_its_last_event_and_trims_to_it() {
    let log = log();
    assert_eq!(AREA.len(), 64 * 1024);
    assert_eq!(log.algorithms, vec![(0x000C, 48)], "SHA-384 only");
    assert_eq!(log.events.len(), 18, "dstack's parser counts 18 events too");
    let used = used_len(AREA).expect("used_len");
    assert_eq!(used, log.len);
    assert_eq!(used, 1933);
    assert!(
        AREA[used..].iter().all(|b| *b == 0xFF),
        "free space is 0xFF"
    );
    // What the kernel ships (the trimmed log) parses to the same events.
    let trimmed = EventLog::parse(&AREA[..used]).expect("trimmed log parses");
    assert_eq!(trimmed.events, log.events);
    // The first event is TDVF's TdxTable handoff in RTMR0 (CC MR index 1).
    assert_eq!(log.events[0].mr_index, 1);
    assert_eq!(log.events[0].rtmr(), Some(0));
}

#[test]
fn real_ccel_replays_to_the_rtmrs_intels_pytdxmeasure_replays() {
    let replayed = log().replay();
    for (i, (ours, theirs)) in replayed.iter().zip(PYTDXMEASURE_RTMRS).enumerate() {
        assert_eq!(hex::encode(ours), theirs, "RTMR{i}");
    }
}

#[test]
fn real_ccel_events_digest_their_data_where_the_rules_say_so() {
    let mut checked = 0;
    for (i, e) in log().events.iter().enumerate() {
        if matches!(
            e.event_type,
            EV_SEPARATOR | EV_EFI_ACTION | EV_EFI_VARIABLE_DRIVER_CONFIG
        ) {
            assert_eq!(
                e.sha384,
                sha384(e.data),
                "event {} (type {:#x})",
                i + 1,
                e.event_type
            );
            checked += 1;
        }
    }
    // 5 Secure Boot variables, 2 separators, 3 actions.
    assert_eq!(checked, 10);
}

#[test]
fn real_ccel_rtmr1_is_the_sequence_the_manifest_computes() {
    let log = log();
    let rtmr1: Vec<_> = log.events.iter().filter(|e| e.rtmr() == Some(1)).collect();
    let kinds: Vec<(u32, &[u8])> = rtmr1.iter().map(|e| (e.event_type, e.data)).collect();
    assert_eq!(kinds.len(), 5, "{kinds:?}");
    assert_eq!(kinds[0].0, EV_EFI_BOOT_SERVICES_APPLICATION);
    assert_eq!(
        kinds[1..],
        [
            (
                EV_EFI_ACTION,
                &b"Calling EFI Application from Boot Option"[..]
            ),
            (EV_SEPARATOR, &[0u8; 4][..]),
            (EV_EFI_ACTION, &b"Exit Boot Services Invocation"[..]),
            (
                EV_EFI_ACTION,
                &b"Exit Boot Services Returned with Success"[..]
            ),
        ]
    );
    // The manifest's RTMR1 for a kernel with this Authenticode digest is the real RTMR1, and
    // `check` accepts the log as evidence of that kernel.
    let kernel = rtmr1[0].sha384;
    let replayed = log.replay();
    assert_eq!(rtmr1_after_kernel(&kernel), replayed[1]);
    let want = LogExpectation {
        kernel: Some(kernel),
        cmdline: None,
    };
    assert_eq!(log.check(&replayed, &want), Ok(()));
    let mut other = kernel;
    other[0] ^= 1;
    assert_eq!(
        log.check(
            &replayed,
            &LogExpectation {
                kernel: Some(other),
                cmdline: None
            }
        ),
        Err(ReplayError::KernelMismatch { index: 12 })
    );
}

#[test]
fn real_ccel_with_one_flipped_digest_bit_no_longer_vouches_for_its_rtmrs() {
    let good = log().replay();
    let used = used_len(AREA).expect("used_len");
    // The digest of the separator in RTMR0 (event 8): flip one bit of it in the bytes.
    let sep = log()
        .events
        .iter()
        .position(|e| e.event_type == EV_SEPARATOR)
        .expect("a separator");
    assert_eq!(sep, 7);
    let digest = sha384(&[0; 4]);
    let at = AREA
        .windows(48)
        .position(|w| w == digest)
        .expect("the separator digest is in the log");
    let mut bytes = AREA[..used].to_vec();
    bytes[at] ^= 0x01;
    let tampered = EventLog::parse(&bytes).expect("still well formed");
    assert_eq!(
        tampered.check(&good, &LogExpectation::default()),
        Err(ReplayError::RtmrMismatch { index: 0 })
    );
    // Cut inside the last event: a typed error, not a shorter log.
    assert!(matches!(
        EventLog::parse(&AREA[..used - 1]),
        Err(EventLogError::Truncated { index: 18 })
    ));
    // The Spec ID event is the only EV_NO_ACTION; none is among the events.
    assert!(log().events.iter().all(|e| e.event_type != EV_NO_ACTION));
}
