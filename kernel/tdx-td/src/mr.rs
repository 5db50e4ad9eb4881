//! Measurement and report calls: TDG.MR.REPORT and TDG.MR.RTMR.EXTEND (TDX Module ABI spec,
//! the leaves of the same names).
//!
//! - TDG.MR.REPORT: RCX = GPA of the 1024-byte TDREPORT_STRUCT output (1024-byte aligned),
//!   RDX = GPA of the 64-byte REPORTDATA (64-byte aligned), R8 = report subtype (0).
//! - TDG.MR.RTMR.EXTEND: RCX = GPA of the 48-byte SHA-384 digest (64-byte aligned), RDX = RTMR
//!   index (0..=3). RTMR i becomes SHA-384(RTMR i ‖ digest).
//!
//! The buffers are the caller's memory (private pages); [`ReportBuffers`] and [`RtmrDigest`]
//! have the alignment the calls need, so the kernel can pass their addresses directly.

use crate::Error;
use crate::tdcall::{Regs, TDG_MR_REPORT, TDG_MR_RTMR_EXTEND, Tdcall, call_ok};

/// Size of a TDREPORT_STRUCT.
pub const TDREPORT_LEN: usize = 1024;

/// A TDREPORT output buffer followed by its REPORTDATA input, aligned for TDG.MR.REPORT.
#[repr(C, align(1024))]
#[derive(Debug, Clone)]
pub struct ReportBuffers {
    /// TDREPORT_STRUCT, written by the TDX module.
    pub report: [u8; TDREPORT_LEN],
    /// REPORTDATA (offset 1024: 64-byte aligned).
    pub report_data: [u8; 64],
}

impl Default for ReportBuffers {
    fn default() -> Self {
        Self {
            report: [0; TDREPORT_LEN],
            report_data: [0; 64],
        }
    }
}

/// A digest for TDG.MR.RTMR.EXTEND, 64-byte aligned.
#[repr(C, align(64))]
#[derive(Debug, Clone, Copy)]
pub struct RtmrDigest(pub [u8; 48]);

fn check_align(gpa: u64, align: u64) -> Result<(), Error> {
    if gpa.is_multiple_of(align) {
        Ok(())
    } else {
        Err(Error::Misaligned { value: gpa, align })
    }
}

/// TDG.MR.REPORT with the TDREPORT at `report_gpa` and REPORTDATA at `report_data_gpa`.
pub fn mr_report<T: Tdcall + ?Sized>(
    t: &mut T,
    report_gpa: u64,
    report_data_gpa: u64,
) -> Result<(), Error> {
    check_align(report_gpa, TDREPORT_LEN as u64)?;
    check_align(report_data_gpa, 64)?;
    let mut regs = Regs {
        rcx: report_gpa,
        rdx: report_data_gpa,
        r8: 0,
        ..Regs::leaf(TDG_MR_REPORT)
    };
    call_ok(t, &mut regs)
}

/// TDG.MR.RTMR.EXTEND of RTMR `index` with the digest at `digest_gpa`.
pub fn rtmr_extend<T: Tdcall + ?Sized>(
    t: &mut T,
    digest_gpa: u64,
    index: u64,
) -> Result<(), Error> {
    if index > 3 {
        return Err(Error::RtmrIndex(index));
    }
    check_align(digest_gpa, 64)?;
    let mut regs = Regs {
        rcx: digest_gpa,
        rdx: index,
        ..Regs::leaf(TDG_MR_RTMR_EXTEND)
    };
    call_ok(t, &mut regs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeTdx;
    use crate::info::Attributes;
    use crate::tdcall::{Status, TDX_OPERAND_INVALID};

    #[test]
    fn buffer_layout() {
        assert_eq!(core::mem::align_of::<ReportBuffers>(), 1024);
        assert_eq!(core::mem::offset_of!(ReportBuffers, report_data), 1024);
        assert_eq!(core::mem::align_of::<RtmrDigest>(), 64);
    }

    #[test]
    fn report_through_the_fake_module() {
        let mut t = FakeTdx::new(48, Attributes::SEPT_VE_DISABLE);
        t.add_private(0x40_0000, 1);
        let data = [0x5A; 64];
        t.write_private(0x40_0400, &data);
        mr_report(&mut t, 0x40_0000, 0x40_0400).unwrap();
        let report = t.read_private(0x40_0000, TDREPORT_LEN);
        assert_eq!(report[0], 0x81, "REPORTTYPE.TYPE = TDX");
        assert_eq!(report[128..192], data, "REPORTMACSTRUCT.REPORTDATA");
        assert_eq!(
            mr_report(&mut t, 0x40_0200, 0x40_0400),
            Err(Error::Misaligned {
                value: 0x40_0200,
                align: 1024
            })
        );
        assert_eq!(
            mr_report(&mut t, 0x40_0000, 0x40_0410),
            Err(Error::Misaligned {
                value: 0x40_0410,
                align: 64
            })
        );
        // A buffer in shared memory is refused by the module.
        assert_eq!(
            mr_report(&mut t, 0x80_0000, 0x40_0400),
            Err(Error::Tdcall {
                leaf: TDG_MR_REPORT,
                status: Status(TDX_OPERAND_INVALID)
            })
        );
    }

    #[test]
    fn rtmr_extend_through_the_fake_module() {
        let mut t = FakeTdx::new(48, Attributes::SEPT_VE_DISABLE);
        t.add_private(0x40_0000, 1);
        t.write_private(0x40_0040, &[1; 48]);
        rtmr_extend(&mut t, 0x40_0040, 2).unwrap();
        assert_eq!(t.rtmr_extends, [(2, [1; 48])]);
        assert_eq!(rtmr_extend(&mut t, 0x40_0040, 4), Err(Error::RtmrIndex(4)));
        assert_eq!(
            rtmr_extend(&mut t, 0x40_0008, 3),
            Err(Error::Misaligned {
                value: 0x40_0008,
                align: 64
            })
        );
    }
}
