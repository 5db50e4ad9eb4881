//! attest's local quote verification accepts tdx-emu's quotes with the emulator's root given
//! explicitly, and refuses tampered quotes and other roots with typed errors.

use attest::tdx::local::{LocalVerifyError, verify_quote_signatures};
use tdx_emu::{Chain, DEFAULT_SEED, Emulator, TdMeasurements};

fn emu(seed: &str) -> Emulator {
    Emulator::new(
        Chain::generate(seed).unwrap(),
        TdMeasurements {
            mr_td: [0x11; 48],
            rtmr: [[0x20; 48], [0x21; 48], [0x22; 48], [0x23; 48]],
            attributes: 1 << 28,
            tee_tcb_svn: [3; 16],
            ..TdMeasurements::default()
        },
    )
}

#[test]
fn quote_verifies_with_the_test_root() {
    let e = emu(DEFAULT_SEED);
    let quote = e.quote(&e.td_report(&[0xAB; 64]).unwrap()).unwrap();
    let body = verify_quote_signatures(&quote, &e.chain().root_der).unwrap();
    assert_eq!(body.mr_td, [0x11; 48]);
    assert_eq!(body.rtmr[2], [0x22; 48]);
    assert_eq!(body.report_data, [0xAB; 64]);
    assert!(!body.debug());
    // Deterministic: same seed, same bytes.
    let again = emu(DEFAULT_SEED);
    assert_eq!(
        again.quote(&again.td_report(&[0xAB; 64]).unwrap()).unwrap(),
        quote
    );
    assert_eq!(again.chain().root_der, e.chain().root_der);
}

#[test]
fn tampered_quotes_and_wrong_roots_are_refused() {
    let e = emu(DEFAULT_SEED);
    let quote = e.quote(&e.td_report(&[0xAB; 64]).unwrap()).unwrap();
    let root = &e.chain().root_der;
    // Body bytes (MRTD, REPORTDATA): the attestation key's signature breaks.
    for pos in [48 + 136, 48 + 520] {
        let mut q = quote.clone();
        q[pos] ^= 1;
        assert!(matches!(
            verify_quote_signatures(&q, root),
            Err(LocalVerifyError::QuoteSignature)
        ));
    }
    let sig = 48 + 584 + 4;
    // The attestation key: no longer the one the QE report binds.
    let mut q = quote.clone();
    q[sig + 64 + 5] ^= 1;
    assert!(matches!(
        verify_quote_signatures(&q, root),
        Err(LocalVerifyError::AttestationKeyBinding | LocalVerifyError::SignatureData)
    ));
    // The QE report: its PCK signature breaks.
    let mut q = quote.clone();
    q[sig + 128 + 6 + 10] ^= 1;
    assert!(matches!(
        verify_quote_signatures(&q, root),
        Err(LocalVerifyError::QeReportSignature)
    ));
    // Another chain's root, and a quote from another chain checked against ours.
    let other = emu("another seed");
    assert!(matches!(
        verify_quote_signatures(&quote, &other.chain().root_der),
        Err(LocalVerifyError::UntrustedRoot)
    ));
    let foreign = other.quote(&other.td_report(&[0; 64]).unwrap()).unwrap();
    assert!(matches!(
        verify_quote_signatures(&foreign, root),
        Err(LocalVerifyError::UntrustedRoot)
    ));
    // Truncated signature data.
    let mut q = quote[..sig + 100].to_vec();
    q[48 + 584..sig].copy_from_slice(&100u32.to_le_bytes());
    assert!(matches!(
        verify_quote_signatures(&q, root),
        Err(LocalVerifyError::SignatureData)
    ));
}
