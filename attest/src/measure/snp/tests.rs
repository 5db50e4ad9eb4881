use super::*;
use crate::test_util::hex;

const AMDSEV: &[u8] = include_bytes!("../../../testdata/snp/ovmf_AmdSev_suffix.bin");
const OVMFX64: &[u8] = include_bytes!("../../../testdata/snp/ovmf_OvmfX64_suffix.bin");

fn launch(guest_features: u64) -> SnpLaunch<'static> {
    SnpLaunch {
        firmware: AMDSEV,
        kernel: b"",
        initrd: b"",
        cmdline: "console=ttyS0 loglevel=7",
        vcpus: 1,
        vcpu_type: VcpuType::EpycV4,
        guest_features,
        vmm: VmmType::Qemu,
    }
}

/// Vectors from virtee/sev `tests/measurement.rs`, reproduced with sev-snp-measure 0.0.13.
#[test]
fn published_vectors() {
    assert_eq!(
        launch_digest(&launch(0x21)).unwrap()[..],
        hex(
            "803f691094946e42068aaa3a8f9e26a5c89f36f7b73ecfb28c653360fe4b3aba7e534442e7e1e17895dfe778d0228977"
        )
    );
    assert_eq!(
        launch_digest(&launch(0x1)).unwrap()[..],
        hex(
            "6d287813eb5222d770f75005c664e34c204f385ce832cc2ce7d0d6f354454362f390ef83a92046c042e706363b4b08fa"
        )
    );
}

#[test]
fn firmware_only_digest() {
    let fw = firmware_digest(AMDSEV).unwrap();
    assert_eq!(
        fw[..],
        hex(
            "086e2e9149ebf45abdc3445fba5b2da8270bdbb04094d7a2c37faaa4b24af3aa16aff8c374c2a55c467a50da6d466b74"
        )
    );
    // Continuing from the firmware digest gives the full digest.
    let l = launch(0x1);
    assert_eq!(
        launch_digest_from(&l, Some(fw)).unwrap(),
        launch_digest(&l).unwrap()
    );
}

#[test]
fn inputs_change_the_digest() {
    let base = launch_digest(&launch(0x1)).unwrap();
    let mut l = launch(0x1);
    l.kernel = b"k";
    assert_ne!(launch_digest(&l).unwrap(), base);
    let mut l = launch(0x1);
    l.cmdline = "console=ttyS0 loglevel=8";
    assert_ne!(launch_digest(&l).unwrap(), base);
    let mut l = launch(0x1);
    l.vcpus = 2;
    assert_ne!(launch_digest(&l).unwrap(), base);
    let mut l = launch(0x1);
    l.vcpu_type = VcpuType::EpycMilan;
    assert_ne!(launch_digest(&l).unwrap(), base);
}

#[test]
fn kernel_without_hashes_section() {
    let mut l = launch(0x1);
    l.firmware = OVMFX64;
    assert_eq!(
        launch_digest(&l).unwrap_err(),
        MeasureError::KernelHashesUnsupported
    );
    l.cmdline = "";
    assert!(launch_digest(&l).is_ok());
    l.vcpus = 0;
    assert_eq!(launch_digest(&l).unwrap_err(), MeasureError::NoVcpus);
}

#[test]
fn vcpu_names_and_signatures() {
    assert_eq!("EPYC-v4".parse::<VcpuType>().unwrap(), VcpuType::EpycV4);
    assert_eq!(
        "EPYC-Genoa-v1".parse::<VcpuType>().unwrap(),
        VcpuType::EpycGenoaV1
    );
    assert_eq!("epyc".parse::<VcpuType>(), Err(UnknownName));
    // Family 17h model 1 stepping 2 -> 0x00800F12; family 19h model 11h -> 0x00A10F10.
    assert_eq!(VcpuType::Epyc.signature(), 0x0080_0F12);
    assert_eq!(VcpuType::EpycGenoa.signature(), 0x00A1_0F10);
    assert_eq!(VcpuType::EpycTurin.signature(), 0x00B0_0F00);
    for t in VcpuType::ALL {
        assert_eq!(t.name().unwrap().parse::<VcpuType>().unwrap(), *t);
    }
    assert_eq!("gce".parse::<VmmType>().unwrap(), VmmType::Gce);
}

#[test]
fn hashes_table_layout() {
    let h = KernelHashes::new(b"", b"", "");
    let t = h.table();
    assert_eq!(t.len(), 176);
    assert_eq!(t[16..18], 168u16.to_le_bytes());
    assert_eq!(t[..4], [0x06, 0xd6, 0x38, 0x94]);
    // The command line is hashed with its NUL: SHA-256("\0").
    assert_eq!(
        t[18 + 18..18 + 50],
        hex("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d")[..]
    );
    assert!(h.page(4096 - 175).is_none());
    assert!(h.page(4096 - 176).is_some());
}

#[test]
fn hostile_section_sizes_are_bounded() {
    let mut fw = AMDSEV.to_vec();
    let asev = fw.windows(4).position(|w| w == b"ASEV").unwrap();
    for i in 0..2 {
        let size_at = asev + 16 + i * 12 + 4;
        fw[size_at..size_at + 4].copy_from_slice(&0xFFFF_F000u32.to_le_bytes());
    }
    let mut l = launch(0x1);
    l.firmware = &fw;
    assert_eq!(launch_digest(&l).unwrap_err(), MeasureError::TooManyPages);
    // An unaligned zero section is refused, not rounded.
    let mut fw = AMDSEV.to_vec();
    let o = Ovmf::parse(AMDSEV).unwrap();
    let i = o
        .sections()
        .iter()
        .position(|s| s.kind == SectionType::SnpSecMem)
        .unwrap();
    let size_at = asev + 16 + i * 12 + 4;
    fw[size_at..size_at + 4].copy_from_slice(&4097u32.to_le_bytes());
    let mut l = launch(0x1);
    l.firmware = &fw;
    assert_eq!(
        launch_digest(&l).unwrap_err(),
        MeasureError::UnalignedSection
    );
}
