//! Issue 12: reports the emulator signs with a guest-policy bit set, a VMPL above 0, or a lower
//! TCB (reported, committed, launch), and its chain under certificate validity periods and an
//! ARK-signed CRL, each refused by `attest::verify` with its typed error.

use attest::verify::{ChainSource, Policy, VerifiedReport, VerifyError, verify_snp_report};
use snp_emu::chain::{Chain, Tcb, TestCa};
use snp_emu::psp::{LaunchInfo, Psp};
use x509_cert::{Certificate, der::Decode};
use zeroize::Zeroizing;

const MEASUREMENT: [u8; 48] = [0x4D; 48];
/// 2026-12-01, inside the test chain's validity (2025-01-01 .. 2049-12-31).
const NOW: u64 = 1_796_083_200;

fn psp(chain: Chain, policy: u64) -> Psp {
    let launch = LaunchInfo {
        measurement: MEASUREMENT,
        policy,
        host_data: [0; 32],
        report_version: 3,
        platform_info: 1,
        report_id: [1; 32],
    };
    Psp::new(
        chain,
        launch,
        Zeroizing::new([2; 32]),
        Zeroizing::new([3; 32]),
    )
    .unwrap()
}

fn verify_with(p: &Psp, vmpl: u32, policy: &Policy) -> Result<VerifiedReport, VerifyError> {
    let report = p.report(&[7; 64], vmpl).unwrap().to_bytes();
    let c = p.chain();
    let src = ChainSource::TrustRoot {
        ark: &c.ark_der,
        intermediate: &c.ask_der,
    };
    verify_snp_report(&report, &c.vcek_der, src, policy)
}

fn policy() -> Policy {
    Policy::new(MEASUREMENT).at_time(NOW)
}

#[test]
fn guest_policy_bits_and_vmpl_are_refused() {
    let ok = psp(Chain::builtin().unwrap(), 0x30000);
    assert!(verify_with(&ok, 0, &policy()).is_ok());
    // MIGRATE_MA (bit 18) and DEBUG (bit 19).
    let ma = psp(Chain::builtin().unwrap(), 0x30000 | 1 << 18);
    assert_eq!(
        verify_with(&ma, 0, &policy()).unwrap_err(),
        VerifyError::MigrateMaAllowed
    );
    let debug = psp(Chain::builtin().unwrap(), 0x30000 | 1 << 19);
    assert_eq!(
        verify_with(&debug, 0, &policy()).unwrap_err(),
        VerifyError::DebugAllowed
    );
    // SMT allowed (bit 16) while the verifier requires it off; SINGLE_SOCKET (bit 20) missing.
    assert_eq!(
        verify_with(&ok, 0, &policy().allow_smt(false)).unwrap_err(),
        VerifyError::SmtAllowed
    );
    assert_eq!(
        verify_with(&ok, 0, &policy().require_single_socket(true)).unwrap_err(),
        VerifyError::SingleSocketNotRequired
    );
    let strict = psp(Chain::builtin().unwrap(), 0x20000 | 1 << 20);
    let p = policy().allow_smt(false).require_single_socket(true);
    assert!(verify_with(&strict, 0, &p).is_ok());
    // A report requested from VMPL 1.
    assert_eq!(
        verify_with(&ok, 1, &policy()).unwrap_err(),
        VerifyError::VmplTooHigh { max: 0, got: 1 }
    );
}

#[test]
fn a_lower_tcb_is_refused() {
    let ca = TestCa::builtin().unwrap();
    // Milan floor: bl 3, tee 0, snp 8, ucode 115. A platform at SNP SVN 7.
    let old = Tcb {
        bootloader: 4,
        tee: 0,
        snp: 7,
        microcode: 213,
    };
    let lowered = psp(
        ca.with_tcb(&Chain::builtin().unwrap(), old).unwrap(),
        0x30000,
    );
    assert_eq!(
        verify_with(&lowered, 0, &policy()).unwrap_err(),
        VerifyError::TcbTooOld {
            tcb: "reported",
            field: "snp",
            min: 8,
            got: 7
        }
    );
    // The reissued VCEK itself is fine: a lower floor accepts it.
    let floor = attest::snp::TcbVersion {
        snp: 7,
        ..attest::verify::default_min_tcb(attest::snp::Generation::Milan)
    };
    assert!(verify_with(&lowered, 0, &policy().min_tcb(floor)).is_ok());
    // Committed TCB below the floor (an uncommitted update the host can roll back), then the
    // launch TCB (the guest launched on old microcode).
    let old_ucode = Tcb {
        microcode: 100,
        ..Tcb::TEST
    };
    let mut p = psp(Chain::builtin().unwrap(), 0x30000);
    p.set_tcbs(old_ucode, Tcb::TEST);
    assert_eq!(
        verify_with(&p, 0, &policy()).unwrap_err(),
        VerifyError::TcbTooOld {
            tcb: "committed",
            field: "microcode",
            min: 115,
            got: 100
        }
    );
    p.set_tcbs(Tcb::TEST, old_ucode);
    assert_eq!(
        verify_with(&p, 0, &policy()).unwrap_err(),
        VerifyError::TcbTooOld {
            tcb: "launch",
            field: "microcode",
            min: 115,
            got: 100
        }
    );
}

fn serial(der: &[u8]) -> Vec<u8> {
    Certificate::from_der(der)
        .unwrap()
        .tbs_certificate()
        .serial_number()
        .as_bytes()
        .to_vec()
}

#[test]
fn validity_periods_and_the_amd_crl_are_checked() {
    let p = psp(Chain::builtin().unwrap(), 0x30000);
    // 2024-06-01: before the test chain's notBefore (2025-01-01).
    assert!(matches!(
        verify_with(&p, 0, &Policy::new(MEASUREMENT).at_time(1_717_200_000)),
        Err(VerifyError::CertificateNotValidAt {
            which: "ARK",
            not_before: 1_735_689_600,
            ..
        })
    ));
    let ca = TestCa::builtin().unwrap();
    let (ask, vcek) = (serial(&p.chain().ask_der), serial(&p.chain().vcek_der));
    let day = 86_400;
    let crl = |revoked: &[&[u8]]| ca.crl(revoked, NOW - day, NOW + 30 * day).unwrap();
    // A CRL that revokes something else: accepted (DER and PEM).
    let other = crl(&[&[0x7F, 0x01]]);
    let v = verify_with(&p, 0, &policy().amd_crl(other.clone())).unwrap();
    assert!(v.checks().iter().any(|c| c.contains("AMD CRL")));
    let pem = der::Document::try_from(other.as_slice())
        .unwrap()
        .to_pem("X509 CRL", der::pem::LineEnding::LF)
        .unwrap();
    assert!(verify_with(&p, 0, &policy().amd_crl(pem.into_bytes())).is_ok());
    // The ASK revoked, the VCEK revoked.
    assert_eq!(
        verify_with(&p, 0, &policy().amd_crl(crl(&[&ask]))).unwrap_err(),
        VerifyError::Revoked("ASK/ASVK")
    );
    assert_eq!(
        verify_with(&p, 0, &policy().amd_crl(crl(&[&[0x7F], &vcek]))).unwrap_err(),
        VerifyError::Revoked("VCEK/VLEK")
    );
    // Stale (past nextUpdate), tampered, or not a CRL.
    let stale = ca.crl(&[], NOW - 60 * day, NOW - day).unwrap();
    assert!(matches!(
        verify_with(&p, 0, &policy().amd_crl(stale)),
        Err(VerifyError::CrlNotCurrent { .. })
    ));
    let mut forged = crl(&[]);
    let n = forged.len() - 20;
    forged[n] ^= 1;
    assert_eq!(
        verify_with(&p, 0, &policy().amd_crl(forged)).unwrap_err(),
        VerifyError::Crl("the CRL signature does not verify with the ARK")
    );
    assert!(matches!(
        verify_with(&p, 0, &policy().amd_crl(b"junk".to_vec())),
        Err(VerifyError::Crl(_))
    ));
}
