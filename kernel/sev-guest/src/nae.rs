//! Non-automatic exits (NAE): exit codes, the IOIO exit-information encoding and the
//! decoding of the hypervisor's answer.
//!
//! AMD 56421 rev 2.03 §4 "GHCB Protocol", Table 6 ("List of Supported Non-Automatic Events"):
//! the exit codes below and which GHCB fields each one reads and writes. §4.1.2 (IOIO), §4.1.3
//! (MSR), §4.1.5 (MMIO), §4.1.6 (SNP page-state change), §4.1.8 (SNP guest request) and
//! §4.1.8.1 (extended guest request). The IOIO exit information is the SVM one (AMD64 APM
//! vol. 2 §15.10.2, Figure 15-2 "EXITINFO1 for IOIO Intercept").
//!
//! The answer (§4.1 "Invoking VMGEXIT", the `SW_EXITINFO1[31:0]` return values): 0 = done,
//! 1 = error with an exception to inject described in `SW_EXITINFO2`, 2 = the hypervisor
//! found the input malformed (reason in `SW_EXITINFO2`). Everything else is a protocol error.

use core::fmt;

/// `SW_EXITCODE` values (56421 Table 6).
pub mod exit_code {
    /// CPUID (not used: CPUID is answered from the CPUID page).
    pub const CPUID: u64 = 0x72;
    /// IN/OUT.
    pub const IOIO: u64 = 0x7B;
    /// RDMSR/WRMSR.
    pub const MSR: u64 = 0x7C;
    /// Nested page fault (`SVM_EXIT_NPF`, APM vol. 2 Table C-1): the #VC error code of an
    /// access to MMIO the hypervisor reserved in the nested page tables (56421 §4.1.5: the guest
    /// decodes the instruction and makes an MMIO read/write exit for it).
    pub const NPF: u64 = 0x400;
    /// MMIO read.
    pub const MMIO_READ: u64 = 0x8000_0001;
    /// MMIO write.
    pub const MMIO_WRITE: u64 = 0x8000_0002;
    /// SNP page-state change.
    pub const PSC: u64 = 0x8000_0010;
    /// SNP guest request.
    pub const GUEST_REQUEST: u64 = 0x8000_0011;
    /// SNP extended guest request (with the certificate table).
    pub const EXT_GUEST_REQUEST: u64 = 0x8000_0012;
    /// Hypervisor feature support.
    pub const HV_FEATURES: u64 = 0x8000_FFFD;
    /// Termination request.
    pub const TERMINATE: u64 = 0x8000_FFFE;
}

/// Operand size of an I/O access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoSize {
    /// 8 bits.
    B8,
    /// 16 bits.
    B16,
    /// 32 bits.
    B32,
}

impl IoSize {
    /// Bytes moved.
    pub const fn bytes(self) -> usize {
        match self {
            Self::B8 => 1,
            Self::B16 => 2,
            Self::B32 => 4,
        }
    }

    /// Mask of the value bits.
    pub const fn mask(self) -> u64 {
        match self {
            Self::B8 => 0xFF,
            Self::B16 => 0xFFFF,
            Self::B32 => 0xFFFF_FFFF,
        }
    }
}

/// Address size of a string I/O instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddrSize {
    /// 16-bit addressing.
    A16,
    /// 32-bit addressing.
    A32,
    /// 64-bit addressing.
    A64,
}

/// The IOIO `EXITINFO1` (APM vol. 2 Figure 15-2): bit 0 `TYPE` (1 = IN), bit 2 `STR`, bit 3
/// `REP`, bits 6:4 `SZ8/SZ16/SZ32`, bits 9:7 `A16/A32/A64`, bits 12:10 `SEG`, bits 31:16 port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoioInfo {
    /// The port.
    pub port: u16,
    /// `IN` (true) or `OUT`.
    pub is_in: bool,
    /// Operand size.
    pub size: IoSize,
    /// Address size.
    pub addr: AddrSize,
    /// `INS`/`OUTS`.
    pub string: bool,
    /// `REP` prefix.
    pub rep: bool,
    /// Effective segment of a string instruction (`SEG`, 0 = ES .. 5 = GS).
    pub segment: u8,
}

/// Why an IOIO `EXITINFO1` does not decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoioDecodeError {
    /// Not exactly one of `SZ8/SZ16/SZ32` is set.
    OperandSize,
    /// Not exactly one of `A16/A32/A64` is set.
    AddressSize,
    /// Bit 1, bits 15:13 or bits 63:32 are set.
    Reserved,
    /// `SEG` is above 5.
    Segment,
}

impl fmt::Display for IoioDecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::OperandSize => "IOIO exit info: operand size",
            Self::AddressSize => "IOIO exit info: address size",
            Self::Reserved => "IOIO exit info: reserved bits",
            Self::Segment => "IOIO exit info: segment",
        })
    }
}

impl core::error::Error for IoioDecodeError {}

impl IoioInfo {
    /// A plain (non-string) `IN`/`OUT` with a 16-bit address size, as Linux and Oak encode it.
    pub const fn simple(port: u16, is_in: bool, size: IoSize) -> Self {
        Self {
            port,
            is_in,
            size,
            addr: AddrSize::A16,
            string: false,
            rep: false,
            segment: 0,
        }
    }

    /// Encode.
    pub fn encode(&self) -> u64 {
        let mut v = u64::from(self.port) << 16;
        v |= u64::from(self.is_in);
        v |= u64::from(self.string) << 2;
        v |= u64::from(self.rep) << 3;
        v |= match self.size {
            IoSize::B8 => 1 << 4,
            IoSize::B16 => 1 << 5,
            IoSize::B32 => 1 << 6,
        };
        v |= match self.addr {
            AddrSize::A16 => 1 << 7,
            AddrSize::A32 => 1 << 8,
            AddrSize::A64 => 1 << 9,
        };
        v | (u64::from(self.segment & 7) << 10)
    }

    /// Decode (strict: exactly one size and one address-size bit, reserved bits clear).
    pub fn decode(v: u64) -> Result<Self, IoioDecodeError> {
        if v & 0b10 != 0 || v & (0b111 << 13) != 0 || v >> 32 != 0 {
            return Err(IoioDecodeError::Reserved);
        }
        let size = match (v >> 4) & 0b111 {
            0b001 => IoSize::B8,
            0b010 => IoSize::B16,
            0b100 => IoSize::B32,
            _ => return Err(IoioDecodeError::OperandSize),
        };
        let addr = match (v >> 7) & 0b111 {
            0b001 => AddrSize::A16,
            0b010 => AddrSize::A32,
            0b100 => AddrSize::A64,
            _ => return Err(IoioDecodeError::AddressSize),
        };
        let segment = ((v >> 10) & 0b111) as u8;
        if segment > 5 {
            return Err(IoioDecodeError::Segment);
        }
        Ok(Self {
            port: (v >> 16) as u16,
            is_in: v & 1 != 0,
            size,
            addr,
            string: v & (1 << 2) != 0,
            rep: v & (1 << 3) != 0,
            segment,
        })
    }
}

/// `SW_EXITINFO1` for the MSR exit (§4.1.3): 0 = RDMSR, 1 = WRMSR.
pub const MSR_READ: u64 = 0;
/// See [`MSR_READ`].
pub const MSR_WRITE: u64 = 1;

/// Why the hypervisor refused the input of an exit (`SW_EXITINFO1` = 2, reason in
/// `SW_EXITINFO2[31:0]`; §4.1 "Invoking VMGEXIT").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MalformedReason {
    /// 1: the GHCB GPA is not registered.
    NotRegistered,
    /// 2: the GHCB usage is not supported.
    InvalidUsage,
    /// 3: the scratch area is invalid.
    InvalidScratchArea,
    /// 4: a required input field is missing.
    MissingInput,
    /// 5: an input value is invalid.
    InvalidInput,
    /// 6: an event to inject is invalid.
    InvalidEvent,
    /// Any other value.
    Unknown(u64),
}

impl MalformedReason {
    /// From `SW_EXITINFO2`.
    pub fn from_info2(v: u64) -> Self {
        match v {
            1 => Self::NotRegistered,
            2 => Self::InvalidUsage,
            3 => Self::InvalidScratchArea,
            4 => Self::MissingInput,
            5 => Self::InvalidInput,
            6 => Self::InvalidEvent,
            other => Self::Unknown(other),
        }
    }

    /// To `SW_EXITINFO2` (hypervisor side).
    pub fn to_info2(self) -> u64 {
        match self {
            Self::NotRegistered => 1,
            Self::InvalidUsage => 2,
            Self::InvalidScratchArea => 3,
            Self::MissingInput => 4,
            Self::InvalidInput => 5,
            Self::InvalidEvent => 6,
            Self::Unknown(v) => v,
        }
    }
}

/// The hypervisor's answer to an exit, when it is not plain success.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HvError {
    /// `SW_EXITINFO1` = 1: inject this exception (`SW_EXITINFO2` in the EVENTINJ format:
    /// bit 31 valid, bits 10:8 type, bits 7:0 vector).
    Exception {
        /// The vector.
        vector: u8,
        /// The raw `SW_EXITINFO2`.
        event: u64,
    },
    /// `SW_EXITINFO1` = 2: the hypervisor found the input malformed.
    Malformed(MalformedReason),
    /// `SW_EXITINFO1` has a value the specification does not define.
    UnknownResponse(u64),
    /// The answer lacks a field the exit returns (its valid bit is clear).
    MissingOutput(&'static str),
    /// The answer has a value the exit cannot return (named).
    BadOutput(&'static str),
}

impl fmt::Display for HvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exception { vector, event } => {
                write!(f, "hypervisor injects exception {vector} ({event:#x})")
            }
            Self::Malformed(r) => write!(f, "hypervisor: malformed input ({r:?})"),
            Self::UnknownResponse(v) => write!(f, "hypervisor response {v:#x} is undefined"),
            Self::MissingOutput(w) => write!(f, "hypervisor did not return {w}"),
            Self::BadOutput(w) => write!(f, "hypervisor returned an impossible {w}"),
        }
    }
}

impl core::error::Error for HvError {}

/// Decodes `SW_EXITINFO1`/`SW_EXITINFO2` after an exit (`None` for info1/2 not marked
/// valid counts as success only for info1 = 0, which is how KVM answers).
pub fn check_response(info1: u64, info2: u64) -> Result<(), HvError> {
    match info1 & 0xFFFF_FFFF {
        0 => Ok(()),
        1 => Err(HvError::Exception {
            vector: info2 as u8,
            event: info2,
        }),
        2 => Err(HvError::Malformed(MalformedReason::from_info2(
            info2 & 0xFFFF_FFFF,
        ))),
        other => Err(HvError::UnknownResponse(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioio_encoding() {
        // `out dx, al` to COM1 (0x3F8): SZ8 | A16 | port << 16.
        let out = IoioInfo::simple(0x3F8, false, IoSize::B8);
        assert_eq!(out.encode(), 0x03F8_0090);
        // `in eax, dx` from PCI config data (0xCFC): TYPE | SZ32 | A16.
        let inl = IoioInfo::simple(0xCFC, true, IoSize::B32);
        assert_eq!(inl.encode(), 0x0CFC_00C1);
        assert_eq!(IoioInfo::decode(0x0CFC_00C1), Ok(inl));
        // `rep outsw` with 64-bit addressing, DS (3).
        let s = IoioInfo {
            port: 0x1F0,
            is_in: false,
            size: IoSize::B16,
            addr: AddrSize::A64,
            string: true,
            rep: true,
            segment: 3,
        };
        assert_eq!(s.encode(), 0x01F0_0E2C);
        assert_eq!(IoioInfo::decode(s.encode()), Ok(s));
        assert_eq!(
            IoioInfo::decode(0x03F8_00B0),
            Err(IoioDecodeError::OperandSize)
        );
        assert_eq!(
            IoioInfo::decode(0x03F8_0010),
            Err(IoioDecodeError::AddressSize)
        );
        assert_eq!(
            IoioInfo::decode(0x03F8_0092),
            Err(IoioDecodeError::Reserved)
        );
        assert_eq!(
            IoioInfo::decode(1 << 40 | 0x90),
            Err(IoioDecodeError::Reserved)
        );
        assert_eq!(IoioInfo::decode(0x0000_1890), Err(IoioDecodeError::Segment));
        assert_eq!(IoSize::B16.bytes(), 2);
        assert_eq!(IoSize::B16.mask(), 0xFFFF);
    }

    #[test]
    fn responses() {
        assert_eq!(check_response(0, 0), Ok(()));
        // #GP (13) as a hardware exception: valid | type 3 | vector.
        assert_eq!(
            check_response(1, 0x8000_030D),
            Err(HvError::Exception {
                vector: 13,
                event: 0x8000_030D
            })
        );
        for (code, reason) in [
            (1, MalformedReason::NotRegistered),
            (2, MalformedReason::InvalidUsage),
            (3, MalformedReason::InvalidScratchArea),
            (4, MalformedReason::MissingInput),
            (5, MalformedReason::InvalidInput),
            (6, MalformedReason::InvalidEvent),
            (77, MalformedReason::Unknown(77)),
        ] {
            assert_eq!(check_response(2, code), Err(HvError::Malformed(reason)));
            assert_eq!(reason.to_info2(), code);
        }
        assert_eq!(check_response(3, 0), Err(HvError::UnknownResponse(3)));
    }
}
