//! TDG.VP.INFO (TDX Module ABI spec §"TDG.VP.INFO Leaf"): the guest physical address width,
//! the TD ATTRIBUTES and the vCPU counts, and the policy this kernel applies to them.
//!
//! Outputs: RCX bits 5:0 = GPAW (48 or 52; the shared bit is GPAW − 1, GHCI §1.3 "Shared bit"),
//! RDX = ATTRIBUTES, R8 bits 31:0 = NUM_VCPUS, R8 bits 63:32 = MAX_VCPUS, R9 bits 31:0 = VCPU_INDEX.

use core::fmt;

use crate::Error;
use crate::tdcall::{Regs, TDG_VP_INFO, Tdcall, call_ok};

/// TD ATTRIBUTES (ABI spec Table "ATTRIBUTES Definition").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attributes(pub u64);

impl Attributes {
    /// Bit 0 DEBUG: the host can read and write the TD's state (off-TD debug).
    pub const DEBUG: u64 = 1 << 0;
    /// Bit 28 SEPT_VE_DISABLE: EPT violations on pending private pages do not raise #VE (the
    /// host cannot make the guest take #VE at arbitrary private accesses).
    pub const SEPT_VE_DISABLE: u64 = 1 << 28;
    /// Bit 29 MIGRATABLE.
    pub const MIGRATABLE: u64 = 1 << 29;
    /// Bit 30 PKS (supervisor protection keys).
    pub const PKS: u64 = 1 << 30;
    /// Bit 31 KL (key locker).
    pub const KL: u64 = 1 << 31;
    /// Bit 63 PERFMON (the TD may use the performance monitoring unit).
    pub const PERFMON: u64 = 1 << 63;

    /// DEBUG is set.
    pub fn debug(self) -> bool {
        self.0 & Self::DEBUG != 0
    }
    /// SEPT_VE_DISABLE is set.
    pub fn sept_ve_disable(self) -> bool {
        self.0 & Self::SEPT_VE_DISABLE != 0
    }
}

/// Why the kernel refuses to run in a TD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyError {
    /// ATTRIBUTES.DEBUG is set: the host can read the TD's memory and registers.
    Debug,
    /// ATTRIBUTES.SEPT_VE_DISABLE is clear: the host could raise #VE on any private access
    /// (by removing pages), including inside the #VE handler before VEINFO.GET.
    SeptVeNotDisabled,
    /// GPAW is neither 48 nor 52.
    BadGpaw(u8),
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Debug => f.write_str("TD attributes allow DEBUG"),
            Self::SeptVeNotDisabled => f.write_str("TD attributes leave SEPT_VE_DISABLE clear"),
            Self::BadGpaw(w) => write!(f, "GPAW {w} is neither 48 nor 52"),
        }
    }
}

/// TDG.VP.INFO output, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TdInfo {
    /// Guest physical address width (48 or 52).
    pub gpaw: u8,
    /// TD ATTRIBUTES.
    pub attributes: Attributes,
    /// vCPUs initialised.
    pub num_vcpus: u32,
    /// vCPUs allowed.
    pub max_vcpus: u32,
    /// This vCPU's index.
    pub vcpu_index: u32,
}

impl TdInfo {
    /// Decode the output registers of TDG.VP.INFO.
    pub fn from_regs(r: &Regs) -> Result<Self, PolicyError> {
        let gpaw = (r.rcx & 0x3F) as u8;
        if gpaw != 48 && gpaw != 52 {
            return Err(PolicyError::BadGpaw(gpaw));
        }
        Ok(Self {
            gpaw,
            attributes: Attributes(r.rdx),
            num_vcpus: r.r8 as u32,
            max_vcpus: (r.r8 >> 32) as u32,
            vcpu_index: r.r9 as u32,
        })
    }

    /// Bit number of the shared bit: GPAW − 1 (47 or 51).
    pub fn shared_bit(&self) -> u32 {
        u32::from(self.gpaw) - 1
    }

    /// The shared-bit mask to OR into a GPA (or a page-table entry) to make it shared.
    pub fn shared_mask(&self) -> u64 {
        1 << self.shared_bit()
    }

    /// This kernel's policy: refuse a TD with DEBUG set or SEPT_VE_DISABLE clear.
    pub fn check_policy(&self) -> Result<(), PolicyError> {
        if self.attributes.debug() {
            return Err(PolicyError::Debug);
        }
        if !self.attributes.sept_ve_disable() {
            return Err(PolicyError::SeptVeNotDisabled);
        }
        Ok(())
    }
}

/// Calls TDG.VP.INFO, decodes it and applies [`TdInfo::check_policy`].
pub fn vp_info<T: Tdcall + ?Sized>(t: &mut T) -> Result<TdInfo, Error> {
    let mut regs = Regs::leaf(TDG_VP_INFO);
    call_ok(t, &mut regs)?;
    let info = TdInfo::from_regs(&regs)?;
    info.check_policy()?;
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeTdx;

    #[test]
    fn decode_and_shared_bit() {
        let r = Regs {
            rcx: 52,
            rdx: Attributes::SEPT_VE_DISABLE,
            r8: (8 << 32) | 2,
            r9: 1,
            ..Regs::default()
        };
        let i = TdInfo::from_regs(&r).unwrap();
        assert_eq!((i.gpaw, i.shared_bit(), i.shared_mask()), (52, 51, 1 << 51));
        assert_eq!((i.num_vcpus, i.max_vcpus, i.vcpu_index), (2, 8, 1));
        let r = Regs { rcx: 48, ..r };
        assert_eq!(TdInfo::from_regs(&r).unwrap().shared_bit(), 47);
        let r = Regs {
            rcx: 0x40 | 39,
            ..r
        };
        assert_eq!(TdInfo::from_regs(&r), Err(PolicyError::BadGpaw(39)));
    }

    #[test]
    fn policy_through_the_fake_module() {
        let mut t = FakeTdx::new(48, Attributes::SEPT_VE_DISABLE);
        assert_eq!(vp_info(&mut t).unwrap().shared_bit(), 47);
        let mut t = FakeTdx::new(48, Attributes::SEPT_VE_DISABLE | Attributes::DEBUG);
        assert_eq!(vp_info(&mut t), Err(Error::Policy(PolicyError::Debug)));
        let mut t = FakeTdx::new(52, 0);
        assert_eq!(
            vp_info(&mut t),
            Err(Error::Policy(PolicyError::SeptVeNotDisabled))
        );
        let mut t = FakeTdx::new(40, Attributes::SEPT_VE_DISABLE);
        assert_eq!(
            vp_info(&mut t),
            Err(Error::Policy(PolicyError::BadGpaw(40)))
        );
    }
}
