//! The initial VMSA (VM save area) page of each vCPU, as the hypervisor builds it for an SNP
//! launch and the firmware measures it (`SNP_LAUNCH_UPDATE` with page type VMSA).
//!
//! The save-area layout is AMD64 APM volume 2 (publication 24593), Appendix B, Table B-4
//! ("VMSA Layout, State Save Area for SEV-ES"); the 4 KiB page is zero outside the fields set
//! here. The register values are the x86 reset state as KVM/QEMU (and the EC2 and GCE
//! hypervisors, which differ in a few fields) load it.

use super::{VcpuType, VmmType};

/// Size of a VMSA page.
pub const VMSA_SIZE: usize = 4096;
/// Reset address of the boot processor.
pub const BSP_EIP: u32 = 0xFFFF_FFF0;

// Offsets in APM vol. 2 Table B-4.
mod off {
    pub const ES: usize = 0x000;
    pub const CS: usize = 0x010;
    pub const SS: usize = 0x020;
    pub const DS: usize = 0x030;
    pub const FS: usize = 0x040;
    pub const GS: usize = 0x050;
    pub const GDTR: usize = 0x060;
    pub const LDTR: usize = 0x070;
    pub const IDTR: usize = 0x080;
    pub const TR: usize = 0x090;
    pub const EFER: usize = 0x0D0;
    pub const CR4: usize = 0x148;
    pub const CR0: usize = 0x158;
    pub const DR7: usize = 0x160;
    pub const DR6: usize = 0x168;
    pub const RFLAGS: usize = 0x170;
    pub const RIP: usize = 0x178;
    pub const G_PAT: usize = 0x268;
    pub const RDX: usize = 0x310;
    pub const SEV_FEATURES: usize = 0x3B0;
    pub const XCR0: usize = 0x3E8;
    pub const MXCSR: usize = 0x408;
    pub const X87_FCW: usize = 0x410;
}

/// Default PAT MSR value (APM vol. 2 §A.3).
const DEFAULT_G_PAT: u64 = 0x0007_0406_0007_0406;

/// Build the VMSA page of a vCPU starting at `eip`.
pub fn build(eip: u32, sev_features: u64, vcpu: VcpuType, vmm: VmmType) -> [u8; VMSA_SIZE] {
    let (cs_attr, ss_attr, tr_attr, rdx, mxcsr, fcw, g_pat) = match vmm {
        VmmType::Qemu => (
            0x9B,
            0x93,
            0x8B,
            u64::from(vcpu.signature()),
            0x1F80,
            0x37F,
            DEFAULT_G_PAT,
        ),
        // EC2 marks the BSP's code segment not-accessed and reports a fixed family 6 signature.
        VmmType::Ec2 => (
            if eip == BSP_EIP { 0x9A } else { 0x9B },
            0x92,
            0x83,
            0x600,
            0,
            0,
            DEFAULT_G_PAT,
        ),
        // GCE overwrites the default PAT.
        VmmType::Gce => (0x9B, 0x93, 0x8B, 0x600, 0, 0, 0x0007_0106),
    };
    let mut p = [0u8; VMSA_SIZE];
    let mut seg = |at: usize, selector: u16, attrib: u16, limit: u32, base: u64| {
        put(&mut p, at, &selector.to_le_bytes());
        put(&mut p, at + 2, &attrib.to_le_bytes());
        put(&mut p, at + 4, &limit.to_le_bytes());
        put(&mut p, at + 8, &base.to_le_bytes());
    };
    seg(off::ES, 0, 0x93, 0xFFFF, 0);
    seg(
        off::CS,
        0xF000,
        cs_attr,
        0xFFFF,
        u64::from(eip & 0xFFFF_0000),
    );
    seg(off::SS, 0, ss_attr, 0xFFFF, 0);
    seg(off::DS, 0, 0x93, 0xFFFF, 0);
    seg(off::FS, 0, 0x93, 0xFFFF, 0);
    seg(off::GS, 0, 0x93, 0xFFFF, 0);
    seg(off::GDTR, 0, 0, 0xFFFF, 0);
    seg(off::LDTR, 0, 0x82, 0xFFFF, 0);
    seg(off::IDTR, 0, 0, 0xFFFF, 0);
    seg(off::TR, 0, tr_attr, 0xFFFF, 0);
    let mut q = |at: usize, v: u64| put(&mut p, at, &v.to_le_bytes());
    q(off::EFER, 0x1000); // SVME, set by KVM
    q(off::CR4, 0x40); // MCE, set by KVM
    q(off::CR0, 0x10); // ET
    q(off::DR7, 0x400);
    q(off::DR6, 0xFFFF_0FF0);
    q(off::RFLAGS, 0x2);
    q(off::RIP, u64::from(eip & 0xFFFF));
    q(off::G_PAT, g_pat);
    q(off::RDX, rdx);
    q(off::SEV_FEATURES, sev_features);
    q(off::XCR0, 0x1);
    put(&mut p, off::MXCSR, &(mxcsr as u32).to_le_bytes());
    put(&mut p, off::X87_FCW, &(fcw as u16).to_le_bytes());
    p
}

fn put(page: &mut [u8; VMSA_SIZE], at: usize, v: &[u8]) {
    // Offsets are compile-time constants inside the page; `get_mut` keeps this panic-free anyway.
    if let Some(dst) = page.get_mut(at..at + v.len()) {
        dst.copy_from_slice(v);
    }
}
