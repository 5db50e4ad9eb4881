use super::*;
use crate::test_util::milan_report;
use der::{Encode, EncodePem};

const VCEK: &[u8] = include_bytes!("../../testdata/snp/vcek_milan.der");
const CHAIN: &[u8] = include_bytes!("../../testdata/snp/cert_chain_milan");
const TURIN_VCEK: &[u8] = include_bytes!("../../testdata/snp/vcek_turin.der");
const TURIN_CHAIN: &[u8] = include_bytes!("../../testdata/snp/cert_chain_turin");

fn measurement() -> [u8; 48] {
    let r = milan_report();
    r[0x90..0xC0].try_into().unwrap()
}

fn policy() -> Policy {
    Policy::new(measurement())
}

#[test]
fn real_milan_report_verifies() {
    let report = milan_report();
    for chain in [
        ChainSource::BuiltIn(Generation::Milan),
        ChainSource::AmdPem(CHAIN),
    ] {
        let v = verify_snp_report(&report, VCEK, chain, &policy()).unwrap();
        assert_eq!(v.anchor(), TrustAnchor::Amd(Generation::Milan));
        assert_eq!(v.generation(), Generation::Milan);
        assert_eq!(v.signing_key(), SigningKey::Vcek);
        assert_eq!(v.measurement(), &measurement());
        assert_eq!(
            v.reported_tcb(),
            TcbVersion {
                fmc: 0,
                bootloader: 3,
                tee: 0,
                snp: 8,
                microcode: 0x73
            }
        );
        assert!(v.checks().iter().any(|c| c.contains("report signature")));
    }
    // The ASK alone: the root is found among the built-in ARKs.
    let chain = certs::load_pem_bundle(CHAIN).unwrap();
    let ask_pem = chain[0].to_pem(der::pem::LineEnding::LF).unwrap();
    let v = verify_snp_report(
        &report,
        VCEK,
        ChainSource::AmdPem(ask_pem.as_bytes()),
        &policy(),
    )
    .unwrap();
    assert_eq!(v.anchor(), TrustAnchor::Amd(Generation::Milan));
    // The same as DER certificates (an RA-TLS quote's table), with or without the ARK.
    let (ask_der, ark_der) = (chain[0].to_der().unwrap(), chain[1].to_der().unwrap());
    for ark in [None, Some(&ark_der[..])] {
        let src = ChainSource::AmdCerts {
            intermediate: &ask_der,
            ark,
        };
        let v = verify_snp_report(&report, VCEK, src, &policy()).unwrap();
        assert_eq!(v.anchor(), TrustAnchor::Amd(Generation::Milan));
    }
    // The ARK in place of the intermediate is refused.
    let src = ChainSource::AmdCerts {
        intermediate: &ark_der,
        ark: None,
    };
    assert_eq!(
        verify_snp_report(&report, VCEK, src, &policy()).unwrap_err(),
        VerifyError::ChainShape
    );
    // Explicit root: same certificates, but recorded as custom.
    let (ark, ask) = builtin_pems(Generation::Milan);
    let v = verify_snp_report(
        &report,
        VCEK,
        ChainSource::TrustRoot {
            ark: ark.as_bytes(),
            intermediate: ask.as_bytes(),
        },
        &policy(),
    )
    .unwrap();
    assert_eq!(v.anchor(), TrustAnchor::Custom);
    // The report in hex or the VCEK in PEM are the caller's business; DER works.
}

#[test]
fn wrong_expectations_fail() {
    let report = milan_report();
    let chain = ChainSource::BuiltIn(Generation::Milan);
    let mut m = measurement();
    m[47] ^= 1;
    assert_eq!(
        verify_snp_report(&report, VCEK, chain, &Policy::new(m)).unwrap_err(),
        VerifyError::MeasurementMismatch
    );
    assert_eq!(
        verify_snp_report(&report, VCEK, chain, &policy().report_data([1; 64])).unwrap_err(),
        VerifyError::ReportDataMismatch
    );
    let rd: [u8; 64] = report[0x50..0x90].try_into().unwrap();
    assert!(verify_snp_report(&report, VCEK, chain, &policy().report_data(rd)).is_ok());
    assert_eq!(
        verify_snp_report(&report, VCEK, chain, &policy().host_data([1; 32])).unwrap_err(),
        VerifyError::HostDataMismatch
    );
    let min = TcbVersion {
        fmc: 0,
        bootloader: 3,
        tee: 0,
        snp: 9,
        microcode: 0,
    };
    assert_eq!(
        verify_snp_report(&report, VCEK, chain, &policy().min_tcb(min)).unwrap_err(),
        VerifyError::TcbTooOld {
            tcb: "reported",
            field: "snp",
            min: 9,
            got: 8
        }
    );
    let min = TcbVersion {
        fmc: 0,
        bootloader: 3,
        tee: 0,
        snp: 8,
        microcode: 0x73,
    };
    assert!(verify_snp_report(&report, VCEK, chain, &policy().min_tcb(min)).is_ok());
    assert_eq!(
        verify_snp_report(&report, VCEK, chain, &policy().min_guest_svn(1)).unwrap_err(),
        VerifyError::GuestSvnTooLow(0)
    );
    assert!(verify_snp_report(&report, VCEK, chain, &policy().max_vmpl(0)).is_ok());
}

#[test]
fn debug_policy() {
    let mut report = AttestationReport::parse(&milan_report()).unwrap();
    report.policy = (0x30000u64 | 1 << 19).into();
    let mut checks = Vec::new();
    assert_eq!(
        check_policy(&report, Generation::Milan, &policy(), &mut checks).unwrap_err(),
        VerifyError::DebugAllowed
    );
    assert!(
        check_policy(
            &report,
            Generation::Milan,
            &policy().allow_debug(true),
            &mut checks
        )
        .is_ok()
    );
    report.vmpl = 2.into();
    assert_eq!(
        check_policy(
            &report,
            Generation::Milan,
            &policy().allow_debug(true).max_vmpl(1),
            &mut checks
        )
        .unwrap_err(),
        VerifyError::VmplTooHigh { max: 1, got: 2 }
    );
}

#[test]
fn wrong_chain_fails() {
    let report = milan_report();
    for g in [Generation::Genoa, Generation::Turin] {
        let e = verify_snp_report(&report, VCEK, ChainSource::BuiltIn(g), &policy()).unwrap_err();
        assert!(
            matches!(
                e,
                VerifyError::NameChain(_) | VerifyError::ChainSignature(_)
            ),
            "{g:?}: {e}"
        );
    }
    // The Turin chain in PEM anchors to the Turin ARK, which did not sign the Milan VCEK.
    let e = verify_snp_report(&report, VCEK, ChainSource::AmdPem(TURIN_CHAIN), &policy());
    assert!(
        matches!(
            e,
            Err(VerifyError::NameChain(_) | VerifyError::ChainSignature(_))
        ),
        "{e:?}"
    );
    // A self-signed root that is not AMD's is refused unless given as TrustRoot: use the ASK
    // in place of the ARK (not self-issued -> chain shape) and a bundle with two ARKs.
    let (milan_ark, _) = builtin_pems(Generation::Milan);
    let (genoa_ark, _) = builtin_pems(Generation::Genoa);
    let two_roots = [milan_ark.as_bytes(), genoa_ark.as_bytes()].concat();
    assert_eq!(
        verify_snp_report(&report, VCEK, ChainSource::AmdPem(&two_roots), &policy()).unwrap_err(),
        VerifyError::ChainShape
    );
    // Empty inputs.
    assert_eq!(
        verify_snp_report(&report, b"", ChainSource::AmdPem(CHAIN), &policy()).unwrap_err(),
        VerifyError::Certificate("VCEK")
    );
    assert!(matches!(
        verify_snp_report(&[], VCEK, ChainSource::AmdPem(CHAIN), &policy()),
        Err(VerifyError::Report(_))
    ));
    assert_eq!(
        verify_snp_report(&report, VCEK, ChainSource::AmdPem(b""), &policy()).unwrap_err(),
        VerifyError::Certificate("chain PEM")
    );
}

#[test]
fn turin_chain_and_extensions() {
    let chain = certs::load_pem_bundle(TURIN_CHAIN).unwrap();
    let (ark, ask) = builtin_pems(Generation::Turin);
    let ark = certs::load_one(ark.as_bytes(), "ARK").unwrap();
    let ask = certs::load_one(ask.as_bytes(), "ASK").unwrap();
    assert_eq!(chain.len(), 2);
    assert_eq!(
        certs::builtin_ark_generation(&chain[1]).unwrap(),
        Some(Generation::Turin)
    );
    let vcek = certs::load_one(TURIN_VCEK, "VCEK").unwrap();
    certs::verify_rsa_link(&ark, &ark, "ARK").unwrap();
    certs::verify_rsa_link(&ark, &ask, "ASK").unwrap();
    certs::verify_rsa_link(&ask, &vcek, "VCEK").unwrap();
    assert_eq!(
        certs::cert_generation(&vcek).unwrap(),
        Some(Generation::Turin)
    );
    let tcb = certs::cert_tcb(&vcek, Generation::Turin).unwrap();
    assert_eq!(tcb.fmc, 0);
    assert_eq!(
        certs::extension(&vcek, &oid::HW_ID).unwrap().unwrap().len(),
        8
    );
    // The Milan VCEK says Milan and has a 64-byte hwID.
    let m = certs::load_one(VCEK, "VCEK").unwrap();
    assert_eq!(certs::cert_generation(&m).unwrap(), Some(Generation::Milan));
    assert_eq!(
        certs::extension(&m, &oid::HW_ID).unwrap().unwrap().len(),
        64
    );
    assert!(certs::p384_key(&m).is_ok());
    assert!(matches!(
        certs::p384_key(&ark),
        Err(VerifyError::UnsupportedAlgorithm("VCEK key"))
    ));
}

/// Positions to flip in a buffer: every `step`-th byte, all of the first 64 (the DER headers of
/// certificate, TBS, version, serial, algorithm) and the last 8, so that each region is hit.
fn positions(len: usize, step: usize) -> Vec<usize> {
    let mut p: Vec<usize> = (0..len).step_by(step).collect();
    p.extend(0..len.min(64));
    p.extend(len.saturating_sub(8)..len);
    p.sort_unstable();
    p.dedup();
    p
}

#[test]
fn any_flipped_report_byte_fails() {
    let report = milan_report();
    let chain = ChainSource::BuiltIn(Generation::Milan);
    // Every field of the signed part (step 7 hits every field of Table 23, the smallest being
    // 1 byte wide at 0x188..0x18B, which the explicit list covers), and the whole r and s.
    let mut pos = positions(report.len(), 7);
    pos.extend(0x188..0x18B);
    pos.extend(0x2A0..0x2A0 + 144);
    pos.sort_unstable();
    pos.dedup();
    for p in pos {
        let mut r = report.clone();
        r[p] ^= 0x01;
        let e = verify_snp_report(&r, VCEK, chain, &policy()).map(|_| ());
        assert!(
            matches!(
                e,
                Err(VerifyError::Report(_)
                    | VerifyError::ReportSignature
                    | VerifyError::TcbMismatch { .. }
                    | VerifyError::ChipIdMismatch
                    | VerifyError::SigningKeyMismatch
                    | VerifyError::ProductMismatch
                    | VerifyError::DebugAllowed
                    | VerifyError::MeasurementMismatch
                    | VerifyError::ReportDataMismatch)
            ),
            "report byte {p:#x}: {e:?}"
        );
    }
}

#[test]
fn any_flipped_vcek_byte_fails() {
    let report = milan_report();
    let chain = ChainSource::BuiltIn(Generation::Milan);
    for p in positions(VCEK.len(), 5) {
        let mut v = VCEK.to_vec();
        v[p] ^= 0x01;
        let e = verify_snp_report(&report, &v, chain, &policy()).map(|_| ());
        assert!(
            matches!(
                e,
                Err(VerifyError::Certificate(_)
                    | VerifyError::UnsupportedAlgorithm(_)
                    | VerifyError::NameChain(_)
                    | VerifyError::ChainSignature(_)
                    | VerifyError::MissingExtension(_)
                    | VerifyError::TcbMismatch { .. }
                    | VerifyError::ChipIdMismatch
                    | VerifyError::SigningKeyMismatch
                    | VerifyError::ProductMismatch
                    | VerifyError::ReportSignature)
            ),
            "VCEK byte {p}: {e:?}"
        );
    }
}

/// The errors a damaged ARK/ASK (PEM or DER) may cause.
fn is_chain_error(e: &VerifyError) -> bool {
    matches!(
        e,
        VerifyError::Certificate(_)
            | VerifyError::UnsupportedAlgorithm(_)
            | VerifyError::UntrustedRoot
            | VerifyError::ChainShape
            | VerifyError::NameChain(_)
            | VerifyError::ChainSignature(_)
    )
}

#[test]
fn any_flipped_chain_byte_fails() {
    let report = milan_report();
    // The PEM text: flip base64 characters to other base64 characters, and structural bytes.
    for p in positions(CHAIN.len(), 11) {
        let mut c = CHAIN.to_vec();
        c[p] = match c[p] {
            b'A' => b'B',
            b'/' => b'+',
            // Whitespace is not significant in PEM: change it to a non-whitespace byte.
            b'\n' => b'x',
            x => x ^ 0x01,
        };
        let e = verify_snp_report(&report, VCEK, ChainSource::AmdPem(&c), &policy()).map(|_| ());
        assert!(
            matches!(e, Err(ref e) if is_chain_error(e)),
            "chain byte {p} ({:?}): {e:?}",
            CHAIN[p] as char
        );
    }
}

#[test]
fn any_flipped_der_chain_byte_fails() {
    // Flip the DER of ASK and ARK (given as an explicit root, so only signatures protect it).
    let report = milan_report();
    let chain = certs::load_pem_bundle(CHAIN).unwrap();
    let ask = chain[0].to_der().unwrap();
    let ark = chain[1].to_der().unwrap();
    for (which, der) in [("ASK", &ask), ("ARK", &ark)] {
        for p in positions(der.len(), 13) {
            let mut d = der.clone();
            d[p] ^= 0x01;
            let (a, i) = if which == "ASK" {
                (ark.clone(), d)
            } else {
                (d, ask.clone())
            };
            let src = ChainSource::TrustRoot {
                ark: &a,
                intermediate: &i,
            };
            let e = verify_snp_report(&report, VCEK, src, &policy()).map(|_| ());
            assert!(
                matches!(e, Err(ref e) if is_chain_error(e)),
                "{which} byte {p}: {e:?}"
            );
        }
    }
}

/// A report signed with the test chain's leaf key (testdata/snp/testchain).
mod test_chain {
    use super::*;
    use crate::snp::report::Signature;
    use crate::test_util::hex;
    use p384::ecdsa::signature::Signer;
    use zerocopy::IntoBytes;

    const ARK: &[u8] = include_bytes!("../../testdata/snp/testchain/ark.pem");
    const ASK: &[u8] = include_bytes!("../../testdata/snp/testchain/ask.pem");
    const GENOA_VCEK: &[u8] = include_bytes!("../../testdata/snp/testchain/genoa_vcek.der");
    const GENOA_VLEK: &[u8] = include_bytes!("../../testdata/snp/testchain/genoa_vlek.der");
    const TURIN_VCEK: &[u8] = include_bytes!("../../testdata/snp/testchain/turin_vcek.der");

    fn chain() -> ChainSource<'static> {
        ChainSource::TrustRoot {
            ark: ARK,
            intermediate: ASK,
        }
    }

    fn chip_id(n: usize) -> [u8; 64] {
        let mut c = [0u8; 64];
        for (i, b) in c.iter_mut().enumerate().take(n) {
            *b = (i * 7 + 3) as u8;
        }
        c
    }

    /// A version-3 Genoa report matching `genoa_vcek.der`.
    fn genoa_report() -> AttestationReport {
        let mut r = AttestationReport::zeroed();
        r.version = 3.into();
        r.policy = 0x30000.into();
        r.signature_algo = 1.into();
        r.cpuid_fam_id = 0x19;
        r.cpuid_mod_id = 0x11;
        let tcb = TcbVersion {
            fmc: 0,
            bootloader: 7,
            tee: 0,
            snp: 14,
            microcode: 72,
        };
        r.reported_tcb = tcb.encode(Generation::Genoa).into();
        r.current_tcb = r.reported_tcb;
        r.committed_tcb = r.reported_tcb;
        r.launch_tcb = r.reported_tcb;
        // Firmware 1.55 build 3, current and committed.
        r.current_version = [3, 55, 1, 0];
        r.committed_version = r.current_version;
        r.chip_id = chip_id(64);
        r.measurement = [0x42; 48];
        r.report_data = [0x24; 64];
        r
    }

    fn sign(mut r: AttestationReport) -> Vec<u8> {
        let scalar = hex(include_str!("../../testdata/snp/testchain/vcek_scalar.hex"));
        let key = p384::ecdsa::SigningKey::from_slice(&scalar).unwrap();
        let sig: p384::ecdsa::Signature = key.sign(r.signed_bytes());
        let (rr, ss) = sig.split_bytes();
        r.signature = Signature::from_be(&rr.into(), &ss.into());
        r.as_bytes().to_vec()
    }

    #[test]
    fn custom_root_genoa_v3() {
        let report = sign(genoa_report());
        let v = verify_snp_report(
            &report,
            GENOA_VCEK,
            chain(),
            &Policy::new([0x42; 48]).report_data([0x24; 64]),
        )
        .unwrap();
        assert_eq!(v.anchor(), TrustAnchor::Custom);
        assert_eq!(v.generation(), Generation::Genoa);
        assert_eq!(v.reported_tcb().snp, 14);
        // The test root is not an AMD root: refused through every AMD path.
        for src in [
            ChainSource::BuiltIn(Generation::Genoa),
            ChainSource::AmdPem(&[ASK, ARK].concat()),
        ] {
            let e = verify_snp_report(&report, GENOA_VCEK, src, &Policy::new([0x42; 48]));
            assert!(
                matches!(
                    e,
                    Err(VerifyError::UntrustedRoot
                        | VerifyError::NameChain(_)
                        | VerifyError::ChainSignature(_))
                ),
                "{e:?}"
            );
        }
        assert_eq!(
            verify_snp_report(
                &report,
                GENOA_VCEK,
                ChainSource::AmdPem(&[ASK, ARK].concat()),
                &Policy::new([0x42; 48])
            )
            .unwrap_err(),
            VerifyError::UntrustedRoot
        );
    }

    #[test]
    fn debug_guest_needs_allow_debug() {
        let mut r = genoa_report();
        r.policy = (0x30000u64 | 1 << 19).into();
        let report = sign(r);
        assert_eq!(
            verify_snp_report(&report, GENOA_VCEK, chain(), &Policy::new([0x42; 48])).unwrap_err(),
            VerifyError::DebugAllowed
        );
        assert!(
            verify_snp_report(
                &report,
                GENOA_VCEK,
                chain(),
                &Policy::new([0x42; 48]).allow_debug(true)
            )
            .is_ok()
        );
    }

    #[test]
    fn tcb_and_chip_id_must_match_the_vcek() {
        let mut r = genoa_report();
        r.reported_tcb = TcbVersion {
            fmc: 0,
            bootloader: 7,
            tee: 0,
            snp: 15,
            microcode: 72,
        }
        .encode(Generation::Genoa)
        .into();
        assert_eq!(
            verify_snp_report(&sign(r), GENOA_VCEK, chain(), &Policy::new([0x42; 48])).unwrap_err(),
            VerifyError::TcbMismatch {
                field: "snpSPL",
                cert: 14,
                report: 15
            }
        );
        let mut r = genoa_report();
        r.chip_id[63] ^= 1;
        assert_eq!(
            verify_snp_report(&sign(r), GENOA_VCEK, chain(), &Policy::new([0x42; 48])).unwrap_err(),
            VerifyError::ChipIdMismatch
        );
        // The same checks without chain or signature (a VCEK fetched by chip id and TCB).
        assert_eq!(
            check_vcek_for_report(&sign(genoa_report()), GENOA_VCEK),
            Ok(Generation::Genoa)
        );
        let mut r = genoa_report();
        r.chip_id[0] ^= 1;
        assert_eq!(
            check_vcek_for_report(&sign(r), GENOA_VCEK),
            Err(VerifyError::ChipIdMismatch)
        );
        let mut r = genoa_report();
        r.reported_tcb = TcbVersion {
            fmc: 0,
            bootloader: 8,
            tee: 0,
            snp: 14,
            microcode: 72,
        }
        .encode(Generation::Genoa)
        .into();
        assert_eq!(
            check_vcek_for_report(&sign(r), GENOA_VCEK),
            Err(VerifyError::TcbMismatch {
                field: "blSPL",
                cert: 7,
                report: 8
            })
        );
        // A version-3 report from a Milan CPU with a Genoa VCEK.
        let mut r = genoa_report();
        r.cpuid_mod_id = 0x01;
        assert_eq!(
            verify_snp_report(&sign(r), GENOA_VCEK, chain(), &Policy::new([0x42; 48])).unwrap_err(),
            VerifyError::ProductMismatch
        );
    }

    #[test]
    fn vlek_path() {
        // SIGNING_KEY = 1 (VLEK) in flags bits 4:2; no hwID check.
        let mut r = genoa_report();
        r.flags = (1u32 << 2).into();
        r.chip_id = [0; 64];
        let report = sign(r);
        let v = verify_snp_report(&report, GENOA_VLEK, chain(), &Policy::new([0x42; 48])).unwrap();
        assert_eq!(v.signing_key(), SigningKey::Vlek);
        // A VLEK-signed report presented with the VCEK certificate, and the reverse.
        assert_eq!(
            verify_snp_report(&report, GENOA_VCEK, chain(), &Policy::new([0x42; 48])).unwrap_err(),
            VerifyError::SigningKeyMismatch
        );
        let report = sign(genoa_report());
        assert_eq!(
            verify_snp_report(&report, GENOA_VLEK, chain(), &Policy::new([0x42; 48])).unwrap_err(),
            VerifyError::SigningKeyMismatch
        );
    }

    #[test]
    fn turin_layout_and_short_hwid() {
        let mut r = genoa_report();
        r.version = 5.into();
        r.cpuid_fam_id = 0x1A;
        r.cpuid_mod_id = 0x02;
        r.reported_tcb = TcbVersion {
            fmc: 1,
            bootloader: 2,
            tee: 3,
            snp: 4,
            microcode: 5,
        }
        .encode(Generation::Turin)
        .into();
        r.chip_id = chip_id(8);
        r.launch_mit_vector = 3.into();
        r.committed_tcb = r.reported_tcb;
        r.launch_tcb = r.reported_tcb;
        // The test VCEK's microcode SVN (5) is below the default Turin floor (9).
        assert_eq!(
            verify_snp_report(&sign(r), TURIN_VCEK, chain(), &Policy::new([0x42; 48])).unwrap_err(),
            VerifyError::TcbTooOld {
                tcb: "reported",
                field: "microcode",
                min: 9,
                got: 5
            }
        );
        let policy = Policy::new([0x42; 48]).min_tcb_for(Generation::Turin, TcbVersion::default());
        let v = verify_snp_report(&sign(r), TURIN_VCEK, chain(), &policy).unwrap();
        assert_eq!(v.generation(), Generation::Turin);
        assert_eq!(
            v.reported_tcb(),
            TcbVersion {
                fmc: 1,
                bootloader: 2,
                tee: 3,
                snp: 4,
                microcode: 5
            }
        );
        // The Milan/Genoa reading of the same bytes would not match the certificate.
        let mut r2 = r;
        r2.reported_tcb = TcbVersion {
            fmc: 0,
            bootloader: 2,
            tee: 3,
            snp: 4,
            microcode: 5,
        }
        .encode(Generation::Turin)
        .into();
        assert_eq!(
            verify_snp_report(&sign(r2), TURIN_VCEK, chain(), &Policy::new([0x42; 48]))
                .unwrap_err(),
            VerifyError::TcbMismatch {
                field: "fmcSPL",
                cert: 1,
                report: 0
            }
        );
        // Bytes after the 8-byte hwID must be zero.
        let mut r3 = r;
        r3.chip_id[8] = 1;
        assert_eq!(
            verify_snp_report(&sign(r3), TURIN_VCEK, chain(), &Policy::new([0x42; 48]))
                .unwrap_err(),
            VerifyError::ChipIdMismatch
        );
    }

    fn verify(r: AttestationReport, policy: &Policy) -> Result<VerifiedReport, VerifyError> {
        verify_snp_report(&sign(r), GENOA_VCEK, chain(), policy)
    }

    /// Issue 12 #3: the guest policy bits, the VMPL and the firmware version are checked, each
    /// with its own error (56860 Tables 9 and 23).
    #[test]
    fn guest_policy_vmpl_and_abi_are_checked() {
        use crate::snp::report::{FirmwareVersion, GuestPolicy};
        let m = || Policy::new([0x42; 48]);
        assert!(verify(genoa_report(), &m()).is_ok());
        // MIGRATE_MA (bit 18): refused unless allowed.
        let mut r = genoa_report();
        r.policy = (0x30000 | GuestPolicy::MIGRATE_MA).into();
        assert_eq!(verify(r, &m()).unwrap_err(), VerifyError::MigrateMaAllowed);
        assert!(verify(r, &m().allow_migrate_ma(true)).is_ok());
        // SMT (bit 16, set in 0x30000): accepted by default, refused when SMT must be off.
        assert_eq!(
            verify(genoa_report(), &m().allow_smt(false)).unwrap_err(),
            VerifyError::SmtAllowed
        );
        let mut r = genoa_report();
        r.policy = 0x20000.into();
        assert!(verify(r, &m().allow_smt(false)).is_ok());
        // SINGLE_SOCKET (bit 20): required only when configured.
        assert_eq!(
            verify(genoa_report(), &m().require_single_socket(true)).unwrap_err(),
            VerifyError::SingleSocketNotRequired
        );
        let mut r = genoa_report();
        r.policy = (0x30000 | GuestPolicy::SINGLE_SOCKET).into();
        assert!(verify(r, &m().require_single_socket(true)).is_ok());
        // VMPL: 0 by default.
        let mut r = genoa_report();
        r.vmpl = 1.into();
        assert_eq!(
            verify(r, &m()).unwrap_err(),
            VerifyError::VmplTooHigh { max: 0, got: 1 }
        );
        assert!(verify(r, &m().max_vmpl(1)).is_ok());
        // Firmware versions: current, then committed, against 1.51 by default.
        let mut r = genoa_report();
        r.current_version = [0, 50, 1, 0];
        assert_eq!(
            verify(r, &m()).unwrap_err(),
            VerifyError::AbiTooOld {
                which: "current",
                min: FirmwareVersion::new(1, 51),
                got: FirmwareVersion::new(1, 50)
            }
        );
        let mut r = genoa_report();
        r.committed_version = [0, 49, 1, 0];
        assert_eq!(
            verify(r, &m()).unwrap_err(),
            VerifyError::AbiTooOld {
                which: "committed",
                min: FirmwareVersion::new(1, 51),
                got: FirmwareVersion::new(1, 49)
            }
        );
        assert_eq!(
            verify(genoa_report(), &m().min_abi(FirmwareVersion::new(1, 56))).unwrap_err(),
            VerifyError::AbiTooOld {
                which: "current",
                min: FirmwareVersion::new(1, 56),
                got: FirmwareVersion::new(1, 55)
            }
        );
        assert!(alloc::format!("{}", VerifyError::SmtAllowed).contains("SMT = 1, expected 0"));
    }

    /// Issue 12 #3: reported, committed and launch TCB each meet the per-product floor.
    #[test]
    fn reported_committed_and_launch_tcb_are_checked() {
        let lower = TcbVersion {
            fmc: 0,
            bootloader: 7,
            tee: 0,
            snp: 13,
            microcode: 72,
        }
        .encode(Generation::Genoa);
        let m = || Policy::new([0x42; 48]);
        let mut r = genoa_report();
        r.committed_tcb = lower.into();
        assert_eq!(
            verify(r, &m()).unwrap_err(),
            VerifyError::TcbTooOld {
                tcb: "committed",
                field: "snp",
                min: 14,
                got: 13
            }
        );
        let mut r = genoa_report();
        r.launch_tcb = lower.into();
        assert_eq!(
            verify(r, &m()).unwrap_err(),
            VerifyError::TcbTooOld {
                tcb: "launch",
                field: "snp",
                min: 14,
                got: 13
            }
        );
        // The reported TCB (= the VCEK's) under a raised Genoa floor; Milan's floor is not used.
        let raised = TcbVersion {
            fmc: 0,
            bootloader: 8,
            tee: 0,
            snp: 14,
            microcode: 72,
        };
        assert_eq!(
            verify(genoa_report(), &m().min_tcb_for(Generation::Genoa, raised)).unwrap_err(),
            VerifyError::TcbTooOld {
                tcb: "reported",
                field: "bootloader",
                min: 8,
                got: 7
            }
        );
        assert!(verify(genoa_report(), &m().min_tcb_for(Generation::Milan, raised)).is_ok());
        assert_eq!(
            m().min_tcb_of(Generation::Genoa),
            default_min_tcb(Generation::Genoa)
        );
    }
}

/// Issue 12 (low): the AMD certificates' validity periods are checked at the verifier's time.
#[test]
fn certificate_validity_is_checked() {
    let report = milan_report();
    let chain = ChainSource::BuiltIn(Generation::Milan);
    // 2026-01-01: everything valid.
    assert!(verify_snp_report(&report, VCEK, chain, &policy().at_time(1_767_225_600)).is_ok());
    // 2031-01-01: the VCEK (2023-04-03 .. 2030-04-03) has expired.
    assert!(matches!(
        verify_snp_report(&report, VCEK, chain, &policy().at_time(1_924_992_000)),
        Err(VerifyError::CertificateNotValidAt {
            which: "VCEK/VLEK",
            not_after: 1_901_474_623,
            ..
        })
    ));
    // 2020-01-01: before the ARK's notBefore (2020-10-22).
    assert!(matches!(
        verify_snp_report(&report, VCEK, chain, &policy().at_time(1_577_836_800)),
        Err(VerifyError::CertificateNotValidAt { which: "ARK", .. })
    ));
}

#[test]
fn exact_guest_policy_when_required() {
    let report = milan_report();
    let gp = u64::from_le_bytes(report[0x08..0x10].try_into().unwrap());
    let chain = || ChainSource::BuiltIn(Generation::Milan);
    let v = verify_snp_report(&report, VCEK, chain(), &policy().guest_policy(gp)).unwrap();
    assert!(
        v.checks()
            .iter()
            .any(|c| c == &alloc::format!("guest policy {gp:#x} as expected"))
    );
    assert_eq!(
        verify_snp_report(&report, VCEK, chain(), &policy().guest_policy(gp ^ 1 << 20))
            .unwrap_err(),
        VerifyError::GuestPolicyMismatch {
            expected: gp ^ 1 << 20,
            reported: gp
        }
    );
}
