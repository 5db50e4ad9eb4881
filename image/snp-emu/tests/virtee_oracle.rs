//! An independent oracle for `attest`'s SNP code (issue 10): virtee's `sev` crate (crates.io,
//! Apache-2.0, built with its pure-Rust `crypto_nossl` verifier) parses the same reports and
//! verifies the same certificate chains, and both must agree, field by field and verdict by
//! verdict, on a real Milan report (attest/testdata/snp, from virtee's public test vectors) and on
//! the emulator's reports of every version it emits.
//!
//! `sev` is only a dev-dependency: nothing of it reaches `ckms` or the image.

use attest::snp::report::{AttestationReport, Generation, TcbVersion};
use attest::verify::{ChainSource, Policy, TrustAnchor, verify_snp_report};
use sev::certs::snp::{Certificate, Chain, Verifiable, builtin, ca};
use sev::firmware::guest::AttestationReport as SevReport;
use sev::parser::ByteParser;
use snp_emu::chain::Chain as EmuChain;
use snp_emu::psp::{LaunchInfo, Psp};
use zeroize::Zeroizing;

const MILAN_REPORT_HEX: &str = include_str!("../../../attest/testdata/snp/report_milan.hex");
const MILAN_VCEK: &[u8] = include_bytes!("../../../attest/testdata/snp/vcek_milan.der");
const MILAN_CHAIN_PEM: &[u8] = include_bytes!("../../../attest/testdata/snp/cert_chain_milan");

fn milan_report() -> Vec<u8> {
    let s: String = MILAN_REPORT_HEX
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    hex::decode(s).expect("vector is hex")
}

fn sev_tcb(t: &TcbVersion) -> sev::firmware::host::TcbVersion {
    sev::firmware::host::TcbVersion {
        fmc: (t.fmc != 0).then_some(t.fmc),
        bootloader: t.bootloader,
        tee: t.tee,
        snp: t.snp,
        microcode: t.microcode,
    }
}

/// Every field both parsers expose must be equal; `generation` is the TCB layout `attest` uses.
fn assert_same_parse(bytes: &[u8], generation: Generation) {
    let ours = AttestationReport::parse(bytes).expect("attest parses");
    let theirs = SevReport::from_bytes(bytes).expect("sev parses");
    assert_eq!(theirs.version, ours.version.get());
    assert_eq!(theirs.guest_svn, ours.guest_svn.get());
    assert_eq!(u64::from(theirs.policy), ours.policy.get());
    assert_eq!(theirs.family_id, ours.family_id);
    assert_eq!(theirs.image_id, ours.image_id);
    assert_eq!(theirs.vmpl, ours.vmpl.get());
    assert_eq!(theirs.sig_algo, ours.signature_algo.get());
    assert_eq!(u64::from(theirs.plat_info), ours.platform_info.get());
    assert_eq!(theirs.report_data, ours.report_data);
    assert_eq!(theirs.measurement, ours.measurement);
    assert_eq!(theirs.host_data, ours.host_data);
    assert_eq!(theirs.id_key_digest, ours.id_key_digest);
    assert_eq!(theirs.author_key_digest, ours.author_key_digest);
    assert_eq!(theirs.report_id, ours.report_id);
    assert_eq!(theirs.report_id_ma, ours.report_id_ma);
    assert_eq!(theirs.chip_id, ours.chip_id);
    let decode = |raw: u64| sev_tcb(&TcbVersion::decode(raw, generation));
    assert_eq!(theirs.current_tcb, decode(ours.current_tcb.get()));
    assert_eq!(theirs.reported_tcb, decode(ours.reported_tcb.get()));
    assert_eq!(theirs.committed_tcb, decode(ours.committed_tcb.get()));
    assert_eq!(theirs.launch_tcb, decode(ours.launch_tcb.get()));
    if ours.version.get() >= 3 {
        assert_eq!(theirs.cpuid_fam_id, Some(ours.cpuid_fam_id));
        assert_eq!(theirs.cpuid_mod_id, Some(ours.cpuid_mod_id));
        assert_eq!(theirs.cpuid_step, Some(ours.cpuid_step));
    } else {
        assert_eq!(theirs.cpuid_fam_id, None);
    }
    assert_eq!(theirs.signature.r(), &ours.signature.r);
    assert_eq!(theirs.signature.s(), &ours.signature.s);
}

fn sev_verdict(ark: &Certificate, ask: &Certificate, vek: &[u8], report: &[u8]) -> bool {
    let chain = Chain {
        ca: ca::Chain {
            ark: ark.clone(),
            ask: ask.clone(),
        },
        vek: Certificate::from_der(vek).expect("VCEK DER"),
    };
    match SevReport::from_bytes(report) {
        Ok(r) => (&chain, &r).verify().is_ok(),
        Err(_) => false,
    }
}

#[test]
fn real_milan_report_parses_identically() {
    assert_same_parse(&milan_report(), Generation::Milan);
}

/// The same built-in AMD root: `attest` anchors `sev`'s copy of the Milan ARK/ASK to its own
/// built-in Milan ARK, and both accept the real report, and both refuse it once one byte of
/// the signed part (MEASUREMENT) or of the signature changes.
#[test]
fn real_milan_chain_and_signature_verdicts_agree() {
    let (ark, ask) = (
        builtin::milan::ark().expect("sev's Milan ARK"),
        builtin::milan::ask().expect("sev's Milan ASK"),
    );
    let mut bundle = builtin::milan::ASK.to_vec();
    bundle.extend_from_slice(builtin::milan::ARK);
    let report = milan_report();
    let measurement: [u8; 48] = report[0x90..0xC0].try_into().unwrap();
    let policy = Policy::new(measurement);
    for chain in [
        ChainSource::AmdPem(&bundle),
        ChainSource::AmdPem(MILAN_CHAIN_PEM),
    ] {
        let v = verify_snp_report(&report, MILAN_VCEK, chain, &policy).expect("attest accepts");
        assert_eq!(v.anchor(), TrustAnchor::Amd(Generation::Milan));
    }
    assert!(sev_verdict(&ark, &ask, MILAN_VCEK, &report), "sev accepts");
    for at in [0x90, 0x2A0 + 10] {
        let mut bad = report.clone();
        bad[at] ^= 1;
        let ours = verify_snp_report(
            &bad,
            MILAN_VCEK,
            ChainSource::BuiltIn(Generation::Milan),
            &Policy::new(bad[0x90..0xC0].try_into().unwrap()),
        );
        assert_eq!(
            ours.map(|_| ()),
            Err(attest::verify::VerifyError::ReportSignature),
            "attest refuses a change at {at:#x}"
        );
        assert!(
            !sev_verdict(&ark, &ask, MILAN_VCEK, &bad),
            "sev refuses too"
        );
    }
}

/// The emulator's reports (versions 2 and 3) and test chain: `sev` parses them as `attest` does
/// and verifies the chain and signature; one changed byte of REPORT_DATA is refused by both.
#[test]
fn emulator_reports_parse_and_verify_identically() {
    for version in [2u32, 3] {
        let chain = EmuChain::builtin().expect("emulator chain");
        let (ark, ask) = (
            Certificate::from_der(&chain.ark_der).expect("ARK"),
            Certificate::from_der(&chain.ask_der).expect("ASK"),
        );
        let (ark_der, ask_der, vcek_der) = (
            chain.ark_der.clone(),
            chain.ask_der.clone(),
            chain.vcek_der.clone(),
        );
        let launch = LaunchInfo {
            measurement: [0x5A; 48],
            policy: 0x30000,
            host_data: [0x11; 32],
            report_version: version,
            platform_info: 1,
            report_id: [9; 32],
        };
        let psp = Psp::new(
            chain,
            launch,
            Zeroizing::new([2; 32]),
            Zeroizing::new([3; 32]),
        )
        .expect("psp");
        let report = psp.report(&[0xC3; 64], 0).expect("report").to_bytes();
        let parsed = AttestationReport::parse(&report).unwrap();
        assert_same_parse(&report, parsed.generation().unwrap_or(Generation::Milan));
        let ours = |r: &[u8]| {
            verify_snp_report(
                r,
                &vcek_der,
                ChainSource::TrustRoot {
                    ark: &ark_der,
                    intermediate: &ask_der,
                },
                &Policy::new([0x5A; 48]),
            )
            .map(|_| ())
        };
        assert_eq!(ours(&report), Ok(()), "attest accepts v{version}");
        assert!(
            sev_verdict(&ark, &ask, &vcek_der, &report),
            "sev accepts v{version}"
        );
        let mut bad = report;
        bad[0x50] ^= 0x80; // REPORT_DATA
        assert_eq!(
            ours(&bad),
            Err(attest::verify::VerifyError::ReportSignature)
        );
        assert!(
            !sev_verdict(&ark, &ask, &vcek_der, &bad),
            "sev refuses v{version}"
        );
    }
}
