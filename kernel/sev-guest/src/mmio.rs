//! MMIO `mov` decoding and emulation, platform-neutral (the SNP #VC handler's MMIO exits and
//! TDX's #VE share it): the forms a compiler emits for volatile device-register accesses.
//!
//! Decoded (AMD64 APM vol. 3 "MOV", "MOVZX"; Intel SDM vol. 2 §2.1–2.2 for the ModRM/SIB/REX
//! encoding):
//! - `88 /r` `mov r/m8, r8`, `89 /r` `mov r/m16/32/64, r` (stores);
//! - `8A /r` `mov r8, r/m8`, `8B /r` `mov r, r/m16/32/64` (loads);
//! - `C6 /0 ib` `mov r/m8, imm8`, `C7 /0 iw/id` `mov r/m16/32/64, imm` (stores; the 64-bit
//!   form sign-extends its 32-bit immediate);
//! - `0F B6 /r` `movzx r, r/m8`, `0F B7 /r` `movzx r, r/m16` (loads, zero-extended).
//!
//! Prefixes: `66` (16-bit operand) and one REX (`40`–`4F`) right before the opcode. Refused
//! with a typed error: any other prefix (segment override, `67` address size, `F0` lock,
//! `F2`/`F3`), a register operand (`mod` = 3: not a memory access), `AH`/`CH`/`DH`/`BH`
//! (8-bit registers 4–7 without REX), and every other opcode. The effective address is
//! computed from the registers (base + index × scale + displacement, or `RIP`-relative from the
//! next instruction), so a #VC handler, which gets no fault address, can use it; a #PF
//! handler compares it with `CR2`.
//!
//! Compared with (read, not copied): Linux `arch/x86/lib/insn-eval.c` and
//! `arch/x86/coco/sev/vc-handle.c` (`vc_handle_mmio`, which uses the full decoder), Coconut
//! SVSM `kernel/src/insn_decode/` (a table-driven decoder).

use core::fmt;

use crate::msr::{KmsReason, TerminateReason};
use crate::vc::NestingGuard;

/// The longest instruction decoded: `66` + REX + `0F B7` + ModRM + SIB + disp32 (+ imm32 for
/// `C7`: 66/REX, C7, ModRM, SIB, disp32, imm32 = 12).
pub const MAX_MMIO_INSN_LEN: usize = 12;

/// Width of an MMIO access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Width {
    /// 1 byte.
    B1,
    /// 2 bytes.
    B2,
    /// 4 bytes.
    B4,
    /// 8 bytes.
    B8,
}

impl Width {
    /// Bytes.
    pub fn bytes(self) -> u8 {
        match self {
            Self::B1 => 1,
            Self::B2 => 2,
            Self::B4 => 4,
            Self::B8 => 8,
        }
    }

    fn mask(self) -> u64 {
        match self {
            Self::B1 => 0xFF,
            Self::B2 => 0xFFFF,
            Self::B4 => 0xFFFF_FFFF,
            Self::B8 => u64::MAX,
        }
    }
}

/// What the instruction does with the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmioOp {
    /// Load `width` bytes into register `reg` (0 = RAX … 15 = R15), written with
    /// `dest_width` (wider than `width` for `movzx`: zero-extended).
    Load {
        /// The register written.
        reg: u8,
        /// Size read from the device.
        width: Width,
        /// Size of the destination register operand.
        dest_width: Width,
    },
    /// Store the low `width` bytes of register `reg`.
    StoreReg {
        /// The register read.
        reg: u8,
        /// Size written to the device.
        width: Width,
    },
    /// Store an immediate (already sign-extended and masked to `width`).
    StoreImm {
        /// The value.
        value: u64,
        /// Size written to the device.
        width: Width,
    },
}

/// Where the memory operand lies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Address {
    /// `base + index * scale + disp` (registers 0–15; `None` when absent).
    Regs {
        /// Base register.
        base: Option<u8>,
        /// Index register and its scale (1, 2, 4, 8).
        index: Option<(u8, u8)>,
        /// Displacement (sign-extended).
        disp: i32,
    },
    /// `RIP` of the next instruction + `disp`.
    RipRelative(i32),
}

/// A decoded MMIO instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioInsn {
    /// The access.
    pub op: MmioOp,
    /// The memory operand.
    pub addr: Address,
    /// Instruction length (how far `RIP` advances).
    pub len: u8,
}

/// Why an instruction is not emulated (the guest terminates: reason 0x08 on SNP).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmioError {
    /// The bytes ended early.
    Truncated,
    /// A prefix this decoder refuses (the byte).
    Prefix(u8),
    /// An opcode this decoder does not emulate (the byte).
    Opcode(u8),
    /// `C6`/`C7` with a ModRM `reg` field other than 0 (not `mov`).
    BadModrmReg(u8),
    /// `mod` = 3: a register operand, not a memory access.
    NotMemory,
    /// `AH`/`CH`/`DH`/`BH` (8-bit register 4–7 without REX).
    HighByteRegister(u8),
    /// The emulated address differs from the faulting one (`#PF`: `CR2`).
    AddressMismatch {
        /// Computed from the instruction.
        decoded: u64,
        /// Reported by the fault.
        fault: u64,
    },
    /// The backend refused the access.
    Backend,
    /// The address is outside every registered MMIO window ([`Windows`]): a hypervisor that
    /// makes RAM fault must not get its contents through an MMIO write exit.
    OutsideWindows(u64),
    /// A fault while an MMIO access was being emulated ([`crate::vc::NestingGuard`]).
    Nested,
    /// No room for another MMIO window.
    TooManyWindows,
}

impl fmt::Display for MmioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("MMIO instruction bytes truncated"),
            Self::Prefix(b) => write!(f, "MMIO instruction with prefix {b:#04x} not emulated"),
            Self::Opcode(b) => write!(f, "MMIO opcode {b:#04x} not emulated"),
            Self::BadModrmReg(r) => write!(f, "MMIO C6/C7 with ModRM reg {r} is not mov"),
            Self::NotMemory => f.write_str("MMIO instruction has no memory operand"),
            Self::HighByteRegister(r) => write!(f, "MMIO to/from high-byte register {r}"),
            Self::AddressMismatch { decoded, fault } => write!(
                f,
                "MMIO address {decoded:#x} from the instruction differs from the fault's {fault:#x}"
            ),
            Self::Backend => f.write_str("MMIO access refused by the backend"),
            Self::OutsideWindows(a) => {
                write!(f, "MMIO access at {a:#x} outside every device window")
            }
            Self::Nested => f.write_str("MMIO fault while emulating an MMIO access"),
            Self::TooManyWindows => f.write_str("too many MMIO windows"),
        }
    }
}

impl core::error::Error for MmioError {}

impl MmioError {
    /// The termination reason for this failure: the backend's (the hypervisor broke the
    /// protocol) 0x0A, a nested fault 0x09, everything else (not emulated, not a device) 0x08.
    pub fn terminate_reason(&self) -> TerminateReason {
        match self {
            Self::Backend => TerminateReason::Kms(KmsReason::HvProtocol),
            Self::Nested => TerminateReason::Kms(KmsReason::VcNested),
            _ => TerminateReason::Kms(KmsReason::VcUnsupported),
        }
    }
}

/// The most device windows [`Windows`] holds.
pub const MAX_WINDOWS: usize = 16;

/// The guest-physical ranges an MMIO fault may be emulated in (the device BARs the kernel
/// mapped): anything else is refused ([`MmioError::OutsideWindows`]), as Linux refuses MMIO
/// emulation on encrypted memory (`vc_handle_mmio` → `vc_slow_virt_to_phys`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Windows {
    ranges: [(u64, u64); MAX_WINDOWS],
    n: usize,
}

impl Windows {
    /// No windows.
    pub const fn new() -> Self {
        Self {
            ranges: [(0, 0); MAX_WINDOWS],
            n: 0,
        }
    }

    /// Adds `[start, start + len)`; an empty or wrapping range is refused as outside.
    pub fn add(&mut self, start: u64, len: u64) -> Result<(), MmioError> {
        let end = start
            .checked_add(len)
            .filter(|e| *e > start)
            .ok_or(MmioError::OutsideWindows(start))?;
        if self.contains(start, len) {
            return Ok(());
        }
        let slot = self
            .ranges
            .get_mut(self.n)
            .ok_or(MmioError::TooManyWindows)?;
        *slot = (start, end);
        self.n += 1;
        Ok(())
    }

    /// Whether `[gpa, gpa + len)` lies inside one window.
    pub fn contains(&self, gpa: u64, len: u64) -> bool {
        let Some(end) = gpa.checked_add(len) else {
            return false;
        };
        self.ranges
            .iter()
            .take(self.n)
            .any(|(s, e)| *s <= gpa && end <= *e)
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn u8(&mut self) -> Result<u8, MmioError> {
        let b = self
            .bytes
            .get(self.at)
            .copied()
            .ok_or(MmioError::Truncated)?;
        self.at += 1;
        Ok(b)
    }

    fn i8(&mut self) -> Result<i32, MmioError> {
        Ok(i32::from(self.u8()? as i8))
    }

    fn u16(&mut self) -> Result<u16, MmioError> {
        Ok(u16::from_le_bytes([self.u8()?, self.u8()?]))
    }

    fn i32(&mut self) -> Result<i32, MmioError> {
        Ok(i32::from_le_bytes([
            self.u8()?,
            self.u8()?,
            self.u8()?,
            self.u8()?,
        ]))
    }
}

/// Decodes the instruction at `RIP` (`bytes`: at most [`MAX_MMIO_INSN_LEN`] are read).
pub fn decode(bytes: &[u8]) -> Result<MmioInsn, MmioError> {
    let mut c = Cursor { bytes, at: 0 };
    let mut opsize16 = false;
    let mut b = c.u8()?;
    if b == 0x66 {
        opsize16 = true;
        b = c.u8()?;
    }
    let mut rex = 0u8;
    if b & 0xF0 == 0x40 {
        rex = b;
        b = c.u8()?;
    }
    let (w, r, x, bb) = (rex & 8 != 0, (rex >> 2) & 1, (rex >> 1) & 1, rex & 1);
    let wide = if w {
        Width::B8
    } else if opsize16 {
        Width::B2
    } else {
        Width::B4
    };
    // (opcode class, operand width, source width for loads)
    enum Kind {
        Store,
        Load(Width),
        Imm,
    }
    let (kind, width) = match b {
        0x88 => (Kind::Store, Width::B1),
        0x89 => (Kind::Store, wide),
        0x8A => (Kind::Load(Width::B1), Width::B1),
        0x8B => (Kind::Load(wide), wide),
        0xC6 => (Kind::Imm, Width::B1),
        0xC7 => (Kind::Imm, wide),
        0x0F => match c.u8()? {
            0xB6 => (Kind::Load(Width::B1), wide),
            0xB7 => (Kind::Load(Width::B2), wide),
            op => return Err(MmioError::Opcode(op)),
        },
        0x26 | 0x2E | 0x36 | 0x3E | 0x64 | 0x65 | 0x66 | 0x67 | 0xF0 | 0xF2 | 0xF3 => {
            return Err(MmioError::Prefix(b));
        }
        op => return Err(MmioError::Opcode(op)),
    };
    let modrm = c.u8()?;
    let (md, reg_field, rm) = (modrm >> 6, (modrm >> 3) & 7, modrm & 7);
    if md == 3 {
        return Err(MmioError::NotMemory);
    }
    let addr = if md == 0 && rm == 5 {
        Address::RipRelative(c.i32()?)
    } else {
        let (base, index) = if rm == 4 {
            let sib = c.u8()?;
            let (ss, idx, base) = (sib >> 6, ((sib >> 3) & 7) | (x << 3), (sib & 7) | (bb << 3));
            let index = (idx != 4).then_some((idx, 1u8 << ss));
            let base = if md == 0 && base & 7 == 5 {
                None
            } else {
                Some(base)
            };
            (base, index)
        } else {
            (Some(rm | (bb << 3)), None)
        };
        let disp = match (md, base) {
            (0, None) => c.i32()?,
            (0, Some(_)) => 0,
            (1, _) => c.i8()?,
            _ => c.i32()?,
        };
        Address::Regs { base, index, disp }
    };
    let reg = reg_field | (r << 3);
    let byte_reg = |reg: u8| {
        if rex == 0 && (4..8).contains(&reg) {
            Err(MmioError::HighByteRegister(reg))
        } else {
            Ok(reg)
        }
    };
    let op = match kind {
        Kind::Store => MmioOp::StoreReg {
            reg: if width == Width::B1 {
                byte_reg(reg)?
            } else {
                reg
            },
            width,
        },
        Kind::Load(src) => MmioOp::Load {
            reg: if width == Width::B1 {
                byte_reg(reg)?
            } else {
                reg
            },
            width: src,
            dest_width: width,
        },
        Kind::Imm => {
            if reg_field != 0 {
                return Err(MmioError::BadModrmReg(reg_field));
            }
            let value = match width {
                Width::B1 => u64::from(c.u8()?),
                Width::B2 => u64::from(c.u16()?),
                Width::B4 | Width::B8 => (i64::from(c.i32()?) as u64) & width.mask(),
            };
            MmioOp::StoreImm { value, width }
        }
    };
    Ok(MmioInsn {
        op,
        addr,
        len: c.at as u8,
    })
}

/// The general-purpose registers (index 0 = RAX, 1 = RCX, 2 = RDX, 3 = RBX, 4 = RSP, 5 = RBP,
/// 6 = RSI, 7 = RDI, 8–15 = R8–R15: the ModRM numbering) and `RIP`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gprs {
    /// The sixteen registers in ModRM order.
    pub r: [u64; 16],
    /// `RIP`.
    pub rip: u64,
}

impl Gprs {
    fn get(&self, i: u8) -> u64 {
        self.r.get(usize::from(i)).copied().unwrap_or(0)
    }
}

/// The device side of an emulated access (GHCB MMIO read/write exits on SNP, TDVMCALL on TDX,
/// the plain access in a test).
pub trait MmioBackend {
    /// Reads `width` bytes at guest-physical `gpa`.
    fn read(&mut self, gpa: u64, width: Width) -> Result<u64, MmioError>;
    /// Writes the low `width` bytes of `value` at `gpa`.
    fn write(&mut self, gpa: u64, width: Width, value: u64) -> Result<(), MmioError>;
}

impl MmioInsn {
    /// The effective address with `regs` (wrapping, as the CPU computes it).
    pub fn address(&self, regs: &Gprs) -> u64 {
        match self.addr {
            Address::RipRelative(d) => regs
                .rip
                .wrapping_add(u64::from(self.len))
                .wrapping_add(d as i64 as u64),
            Address::Regs { base, index, disp } => {
                let b = base.map_or(0, |b| regs.get(b));
                let i = index.map_or(0, |(i, s)| regs.get(i).wrapping_mul(u64::from(s)));
                b.wrapping_add(i).wrapping_add(disp as i64 as u64)
            }
        }
    }
}

/// Emulates `insn` on `regs` through `backend` (identity mapping: the effective address is the
/// GPA) and advances `RIP`. With `fault` (a #PF's `CR2`), the effective address must equal it.
/// Register writes follow the CPU: a 32-bit destination zero-extends to 64 bits, 8/16-bit ones
/// keep the other bits.
pub fn emulate(
    regs: &mut Gprs,
    insn: &MmioInsn,
    fault: Option<u64>,
    backend: &mut impl MmioBackend,
) -> Result<(), MmioError> {
    let gpa = insn.address(regs);
    if let Some(f) = fault
        && f != gpa
    {
        return Err(MmioError::AddressMismatch {
            decoded: gpa,
            fault: f,
        });
    }
    match insn.op {
        MmioOp::Load {
            reg,
            width,
            dest_width,
        } => {
            let v = backend.read(gpa, width)? & width.mask();
            let slot = regs
                .r
                .get_mut(usize::from(reg))
                .ok_or(MmioError::NotMemory)?;
            *slot = match dest_width {
                Width::B4 | Width::B8 => v,
                Width::B1 | Width::B2 => (*slot & !dest_width.mask()) | v,
            };
        }
        MmioOp::StoreReg { reg, width } => {
            backend.write(gpa, width, regs.get(reg) & width.mask())?;
        }
        MmioOp::StoreImm { value, width } => backend.write(gpa, width, value)?,
    }
    regs.rip = regs.rip.wrapping_add(u64::from(insn.len));
    Ok(())
}

/// The whole MMIO fault handler minus reading the bytes and the frame (the kernel's #VC
/// `NPF` path, its #PF stand-in in the loopback build, TDX's #VE EPT-violation path): under
/// `guard`, decode the `mov` at `RIP`, check its address lies in `windows` (and equals
/// `fault` when the fault reports one), perform it through `backend` and advance `RIP`.
/// Nothing changes on refusal.
pub fn handle(
    guard: &NestingGuard,
    bytes: &[u8],
    regs: &mut Gprs,
    fault: Option<u64>,
    windows: &Windows,
    backend: &mut impl MmioBackend,
) -> Result<MmioInsn, MmioError> {
    let _token = guard.enter().map_err(|_| MmioError::Nested)?;
    let insn = decode(bytes)?;
    let gpa = insn.address(regs);
    let width = match insn.op {
        MmioOp::Load { width, .. }
        | MmioOp::StoreReg { width, .. }
        | MmioOp::StoreImm { width, .. } => width,
    };
    if !windows.contains(gpa, u64::from(width.bytes())) {
        return Err(MmioError::OutsideWindows(gpa));
    }
    emulate(regs, &insn, fault, backend)?;
    Ok(insn)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A device of 16 byte-registers at 0x1000 that records accesses.
    struct Dev {
        regs: [u8; 16],
        log: [(u64, u8, bool); 4],
        n: usize,
    }

    impl Dev {
        fn new() -> Self {
            let mut regs = [0u8; 16];
            for (i, r) in regs.iter_mut().enumerate() {
                *r = 0xA0 + i as u8;
            }
            Self {
                regs,
                log: [(0, 0, false); 4],
                n: 0,
            }
        }
    }

    impl MmioBackend for Dev {
        fn read(&mut self, gpa: u64, width: Width) -> Result<u64, MmioError> {
            let off = gpa.checked_sub(0x1000).ok_or(MmioError::Backend)? as usize;
            let bytes = self
                .regs
                .get(off..off + usize::from(width.bytes()))
                .ok_or(MmioError::Backend)?;
            self.log[self.n % 4] = (gpa, width.bytes(), false);
            self.n += 1;
            let mut v = [0u8; 8];
            v[..bytes.len()].copy_from_slice(bytes);
            Ok(u64::from_le_bytes(v))
        }

        fn write(&mut self, gpa: u64, width: Width, value: u64) -> Result<(), MmioError> {
            let off = gpa.checked_sub(0x1000).ok_or(MmioError::Backend)? as usize;
            let n = usize::from(width.bytes());
            let dst = self.regs.get_mut(off..off + n).ok_or(MmioError::Backend)?;
            dst.copy_from_slice(&value.to_le_bytes()[..n]);
            self.log[self.n % 4] = (gpa, width.bytes(), true);
            self.n += 1;
            Ok(())
        }
    }

    fn regs() -> Gprs {
        let mut g = Gprs {
            rip: 0x40_0000,
            ..Gprs::default()
        };
        for (i, r) in g.r.iter_mut().enumerate() {
            *r = 0x1111_1111_1111_1100 | i as u64;
        }
        g
    }

    // Encodings below were produced by GNU as (x86-64, Intel syntax) and are checked by hand
    // against the SDM's ModRM/SIB tables.

    #[test]
    fn loads() {
        // mov eax, dword ptr [rdi]          8b 07
        let i = decode(&[0x8b, 0x07]).unwrap();
        assert_eq!(
            i,
            MmioInsn {
                op: MmioOp::Load {
                    reg: 0,
                    width: Width::B4,
                    dest_width: Width::B4
                },
                addr: Address::Regs {
                    base: Some(7),
                    index: None,
                    disp: 0
                },
                len: 2
            }
        );
        let mut g = regs();
        g.r[7] = 0x1000;
        let mut d = Dev::new();
        emulate(&mut g, &i, Some(0x1000), &mut d).unwrap();
        // 32-bit load zero-extends.
        assert_eq!(g.r[0], 0xA3A2_A1A0);
        assert_eq!(g.rip, 0x40_0002);

        // mov r9w, word ptr [rsi + 4]       66 44 8b 4e 04
        let i = decode(&[0x66, 0x44, 0x8b, 0x4e, 0x04]).unwrap();
        assert_eq!(i.len, 5);
        let mut g = regs();
        g.r[6] = 0x1000;
        emulate(&mut g, &i, None, &mut Dev::new()).unwrap();
        // 16-bit load keeps the upper 48 bits.
        assert_eq!(g.r[9], 0x1111_1111_1111_A5A4);

        // mov rax, qword ptr [rbx + rcx*8 + 0x100]   48 8b 84 cb 00 01 00 00
        let i = decode(&[0x48, 0x8b, 0x84, 0xcb, 0x00, 0x01, 0x00, 0x00]).unwrap();
        assert_eq!(
            i.addr,
            Address::Regs {
                base: Some(3),
                index: Some((1, 8)),
                disp: 0x100
            }
        );
        assert_eq!(i.len, 8);
        let mut g = regs();
        g.r[3] = 0x0F00;
        g.r[1] = 0;
        emulate(&mut g, &i, Some(0x1000), &mut Dev::new()).unwrap();
        assert_eq!(g.r[0], 0xA7A6_A5A4_A3A2_A1A0);

        // movzx edx, byte ptr [r8 + 3]      41 0f b6 50 03
        let i = decode(&[0x41, 0x0f, 0xb6, 0x50, 0x03]).unwrap();
        assert_eq!(
            i.op,
            MmioOp::Load {
                reg: 2,
                width: Width::B1,
                dest_width: Width::B4
            }
        );
        let mut g = regs();
        g.r[8] = 0x1000;
        emulate(&mut g, &i, None, &mut Dev::new()).unwrap();
        assert_eq!(g.r[2], 0xA3);

        // movzx eax, word ptr [rip + 0x10]  0f b7 05 10 00 00 00
        let i = decode(&[0x0f, 0xb7, 0x05, 0x10, 0x00, 0x00, 0x00]).unwrap();
        assert_eq!(i.addr, Address::RipRelative(0x10));
        let mut g = regs();
        g.rip = 0x1000 - 7 - 0x10 + 2;
        emulate(&mut g, &i, Some(0x1002), &mut Dev::new()).unwrap();
        assert_eq!(g.r[0], 0xA3A2);

        // mov sil, byte ptr [rdx]           40 8a 32 (REX: SIL, not DH)
        let i = decode(&[0x40, 0x8a, 0x32]).unwrap();
        let mut g = regs();
        g.r[2] = 0x1001;
        emulate(&mut g, &i, None, &mut Dev::new()).unwrap();
        assert_eq!(g.r[6], 0x1111_1111_1111_11A1);
    }

    #[test]
    fn stores() {
        // mov dword ptr [rdi + 8], ecx      89 4f 08
        let i = decode(&[0x89, 0x4f, 0x08]).unwrap();
        let mut g = regs();
        g.r[7] = 0x1000;
        g.r[1] = 0xDEAD_BEEF_1234_5678;
        let mut d = Dev::new();
        emulate(&mut g, &i, Some(0x1008), &mut d).unwrap();
        assert_eq!(&d.regs[8..12], &[0x78, 0x56, 0x34, 0x12]);
        assert_eq!(d.log[0], (0x1008, 4, true));
        assert_eq!(g.rip, 0x40_0003);

        // mov byte ptr [rax], dl            88 10
        let i = decode(&[0x88, 0x10]).unwrap();
        let mut g = regs();
        g.r[0] = 0x100F;
        let mut d = Dev::new();
        emulate(&mut g, &i, None, &mut d).unwrap();
        assert_eq!(d.regs[15], 0x02);

        // mov word ptr [rax], 0xbeef        66 c7 00 ef be
        let i = decode(&[0x66, 0xc7, 0x00, 0xef, 0xbe]).unwrap();
        assert_eq!(
            i.op,
            MmioOp::StoreImm {
                value: 0xBEEF,
                width: Width::B2
            }
        );
        assert_eq!(i.len, 5);

        // mov qword ptr [rax], -1           48 c7 00 ff ff ff ff (sign-extended)
        let i = decode(&[0x48, 0xc7, 0x00, 0xff, 0xff, 0xff, 0xff]).unwrap();
        assert_eq!(
            i.op,
            MmioOp::StoreImm {
                value: u64::MAX,
                width: Width::B8
            }
        );
        let mut g = regs();
        g.r[0] = 0x1000;
        let mut d = Dev::new();
        emulate(&mut g, &i, None, &mut d).unwrap();
        assert_eq!(d.regs[..8], [0xFF; 8]);

        // mov byte ptr [r12 + r13*2 - 1], 7    43 c6 44 6c ff 07
        let i = decode(&[0x43, 0xc6, 0x44, 0x6c, 0xff, 0x07]).unwrap();
        assert_eq!(
            i.addr,
            Address::Regs {
                base: Some(12),
                index: Some((13, 2)),
                disp: -1
            }
        );
        assert_eq!(i.len, 6);

        // mov dword ptr [0x1004], eax: SIB with no base and no index, disp32  89 04 25 04 10 00 00
        let i = decode(&[0x89, 0x04, 0x25, 0x04, 0x10, 0x00, 0x00]).unwrap();
        assert_eq!(
            i.addr,
            Address::Regs {
                base: None,
                index: None,
                disp: 0x1004
            }
        );
        assert_eq!(i.address(&regs()), 0x1004);
    }

    #[test]
    fn windows_and_the_guarded_handler() {
        let mut w = Windows::new();
        w.add(0x1000, 16).unwrap();
        assert!(w.contains(0x1000, 16));
        assert!(w.contains(0x100C, 4));
        assert!(!w.contains(0x100D, 4), "straddles the end");
        assert!(!w.contains(0xFFF, 2), "straddles the start");
        assert!(!w.contains(u64::MAX, 2), "wraps");
        assert_eq!(w.add(0x2000, 0), Err(MmioError::OutsideWindows(0x2000)));
        assert_eq!(w.add(u64::MAX, 2), Err(MmioError::OutsideWindows(u64::MAX)));
        for i in 1..MAX_WINDOWS as u64 {
            w.add(0x10_0000 * i, 0x1000).unwrap();
        }
        // Already covered: no new slot needed.
        assert_eq!(w.add(0x1004, 4), Ok(()));
        assert_eq!(w.add(0x900_0000, 8), Err(MmioError::TooManyWindows));

        let guard = NestingGuard::new();
        let mut w = Windows::new();
        w.add(0x1000, 16).unwrap();
        // mov eax, dword ptr [rdi]   8b 07
        let mut g = regs();
        g.r[7] = 0x1004;
        let i = handle(
            &guard,
            &[0x8b, 0x07],
            &mut g,
            Some(0x1004),
            &w,
            &mut Dev::new(),
        )
        .unwrap();
        assert_eq!(i.len, 2);
        assert_eq!(g.r[0], 0xA7A6_A5A4);
        assert_eq!(g.rip, 0x40_0002);
        assert!(!guard.is_active(), "guard released");
        // RAM outside the windows: refused before any access, registers unchanged.
        let mut g = regs();
        g.r[7] = 0x3000;
        let before = g;
        let mut d = Dev::new();
        assert_eq!(
            handle(&guard, &[0x89, 0x07], &mut g, None, &w, &mut d),
            Err(MmioError::OutsideWindows(0x3000))
        );
        assert_eq!((g, d.n), (before, 0));
        // Straddling the window's end (a dword at 0x100E).
        g.r[7] = 0x100E;
        assert_eq!(
            handle(&guard, &[0x8b, 0x07], &mut g, None, &w, &mut d),
            Err(MmioError::OutsideWindows(0x100E))
        );
        // A fault while one is handled.
        let outer = guard.enter().unwrap();
        g.r[7] = 0x1000;
        assert_eq!(
            handle(&guard, &[0x8b, 0x07], &mut g, None, &w, &mut d),
            Err(MmioError::Nested)
        );
        drop(outer);
        assert_eq!(d.n, 0);
        assert_eq!(
            MmioError::Nested.terminate_reason(),
            TerminateReason::Kms(KmsReason::VcNested)
        );
        assert_eq!(
            MmioError::Backend.terminate_reason(),
            TerminateReason::Kms(KmsReason::HvProtocol)
        );
        assert_eq!(
            MmioError::OutsideWindows(0).terminate_reason(),
            TerminateReason::Kms(KmsReason::VcUnsupported)
        );
    }

    #[test]
    fn refused() {
        assert_eq!(decode(&[]), Err(MmioError::Truncated));
        assert_eq!(decode(&[0x8b]), Err(MmioError::Truncated));
        assert_eq!(decode(&[0x8b, 0x84, 0xcb, 0x00]), Err(MmioError::Truncated));
        // mov eax, ecx: no memory operand.
        assert_eq!(decode(&[0x8b, 0xc1]), Err(MmioError::NotMemory));
        // fs: mov eax, [rdi]; lock; addr32.
        assert_eq!(decode(&[0x64, 0x8b, 0x07]), Err(MmioError::Prefix(0x64)));
        assert_eq!(decode(&[0xf0, 0x89, 0x07]), Err(MmioError::Prefix(0xf0)));
        assert_eq!(decode(&[0x67, 0x8b, 0x07]), Err(MmioError::Prefix(0x67)));
        // add eax, [rdi]; movsb; 0F 0B (ud2).
        assert_eq!(decode(&[0x03, 0x07]), Err(MmioError::Opcode(0x03)));
        assert_eq!(decode(&[0xa4]), Err(MmioError::Opcode(0xa4)));
        assert_eq!(decode(&[0x0f, 0x0b, 0x00]), Err(MmioError::Opcode(0x0b)));
        // C7 /1 is not mov.
        assert_eq!(
            decode(&[0xc7, 0x08, 0, 0, 0, 0]),
            Err(MmioError::BadModrmReg(1))
        );
        // mov ah, [rdi] (8A 27) and mov [rdi], bh (88 3F): high-byte registers.
        assert_eq!(decode(&[0x8a, 0x27]), Err(MmioError::HighByteRegister(4)));
        assert_eq!(decode(&[0x88, 0x3f]), Err(MmioError::HighByteRegister(7)));
        // The address must match the fault's.
        let i = decode(&[0x8b, 0x07]).unwrap();
        let mut g = regs();
        g.r[7] = 0x1000;
        let before = g;
        assert_eq!(
            emulate(&mut g, &i, Some(0x2000), &mut Dev::new()),
            Err(MmioError::AddressMismatch {
                decoded: 0x1000,
                fault: 0x2000
            })
        );
        assert_eq!(g, before, "nothing changes on refusal");
        // The backend's refusal (outside the device) leaves RIP alone.
        g.r[7] = 0x9000;
        assert_eq!(
            emulate(&mut g, &i, None, &mut Dev::new()),
            Err(MmioError::Backend)
        );
        assert_eq!(g.rip, before.rip);
    }
}
