//! The IDT and the CPU exception handlers (Intel SDM vol. 3A, 6.14–6.15).
//!
//! Each of the 32 exception vectors has a naked stub that pushes a uniform frame (a zero
//! error code where the CPU pushes none, the vector number, then the general registers) and
//! calls [`exception`], which prints a readable report on COM1 and stops the VM (#VC goes to
//! [`super::vc`] first, which emulates and resumes). Every gate runs on an IST stack (#DF
//! and #VC on their own), so a fault with a corrupt or exhausted stack (or code that uses the
//! red zone) still gets reported. No external interrupt is ever enabled: the kernel polls.

use core::arch::{asm, naked_asm};
use core::mem::size_of;

use super::gdt;

/// The registers saved by the stubs, lowest address first, followed by the CPU's frame.
#[repr(C)]
#[derive(Debug)]
pub struct Frame {
    pub(super) r15: u64,
    pub(super) r14: u64,
    pub(super) r13: u64,
    pub(super) r12: u64,
    pub(super) r11: u64,
    pub(super) r10: u64,
    pub(super) r9: u64,
    pub(super) r8: u64,
    pub(super) rbp: u64,
    pub(super) rdi: u64,
    pub(super) rsi: u64,
    pub(super) rdx: u64,
    pub(super) rcx: u64,
    pub(super) rbx: u64,
    pub(super) rax: u64,
    pub(super) vector: u64,
    pub(super) error_code: u64,
    pub(super) rip: u64,
    pub(super) cs: u64,
    pub(super) rflags: u64,
    pub(super) rsp: u64,
    pub(super) ss: u64,
}

impl Frame {
    /// A frame as the stubs would save it for `vector` with `error_code` at `rip`, every
    /// register zero (for the #VC self-test's synthetic frames).
    pub(super) fn synthetic(vector: u64, error_code: u64, rip: u64) -> Self {
        Self {
            r15: 0,
            r14: 0,
            r13: 0,
            r12: 0,
            r11: 0,
            r10: 0,
            r9: 0,
            r8: 0,
            rbp: 0,
            rdi: 0,
            rsi: 0,
            rdx: 0,
            rcx: 0,
            rbx: 0,
            rax: 0,
            vector,
            error_code,
            rip,
            cs: u64::from(gdt::CODE),
            rflags: 0x2,
            rsp: 0,
            ss: u64::from(gdt::DATA),
        }
    }
}

/// Saves the registers, calls `exception` with the frame, restores and returns (`iretq`),
/// so handlers that fix something up (a future #VC/#VE) can resume.
#[unsafe(naked)]
unsafe extern "C" fn common_stub() {
    naked_asm!(
        "push rax", "push rbx", "push rcx", "push rdx", "push rsi", "push rdi", "push rbp",
        "push r8", "push r9", "push r10", "push r11", "push r12", "push r13", "push r14", "push r15",
        "mov rdi, rsp",
        "mov rbp, rsp",
        "and rsp, -16",
        "cld",
        "call {handler}",
        "mov rsp, rbp",
        "pop r15", "pop r14", "pop r13", "pop r12", "pop r11", "pop r10", "pop r9", "pop r8",
        "pop rbp", "pop rdi", "pop rsi", "pop rdx", "pop rcx", "pop rbx", "pop rax",
        "add rsp, 16",
        "iretq",
        handler = sym exception,
    )
}

macro_rules! stubs {
    ($( $name:ident = $vec:literal $kind:ident ),* $(,)?) => {
        $(
            #[unsafe(naked)]
            unsafe extern "C" fn $name() {
                stubs!(@body $vec $kind)
            }
        )*
        const STUBS: [unsafe extern "C" fn(); 32] = [$($name),*];
    };
    (@body $vec:literal noerr) => {
        naked_asm!("push 0", "push {v}", "jmp {c}", v = const $vec, c = sym common_stub)
    };
    (@body $vec:literal err) => {
        naked_asm!("push {v}", "jmp {c}", v = const $vec, c = sym common_stub)
    };
}

stubs! {
    v0 = 0 noerr, v1 = 1 noerr, v2 = 2 noerr, v3 = 3 noerr, v4 = 4 noerr, v5 = 5 noerr,
    v6 = 6 noerr, v7 = 7 noerr, v8 = 8 err, v9 = 9 noerr, v10 = 10 err, v11 = 11 err,
    v12 = 12 err, v13 = 13 err, v14 = 14 err, v15 = 15 noerr, v16 = 16 noerr, v17 = 17 err,
    v18 = 18 noerr, v19 = 19 noerr, v20 = 20 noerr, v21 = 21 err, v22 = 22 noerr,
    v23 = 23 noerr, v24 = 24 noerr, v25 = 25 noerr, v26 = 26 noerr, v27 = 27 noerr,
    v28 = 28 noerr, v29 = 29 err, v30 = 30 err, v31 = 31 noerr,
}

const NAMES: [&str; 32] = [
    "#DE divide error",
    "#DB debug",
    "NMI",
    "#BP breakpoint",
    "#OF overflow",
    "#BR bound range",
    "#UD invalid opcode",
    "#NM device not available",
    "#DF double fault",
    "coprocessor segment overrun",
    "#TS invalid TSS",
    "#NP segment not present",
    "#SS stack fault",
    "#GP general protection",
    "#PF page fault",
    "reserved",
    "#MF x87 floating point",
    "#AC alignment check",
    "#MC machine check",
    "#XM SIMD floating point",
    "#VE virtualization exception",
    "#CP control protection",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "#HV hypervisor injection",
    "#VC VMM communication",
    "#SX security",
    "reserved",
];

extern "C" fn exception(frame: &mut Frame) {
    if frame.vector == 29 {
        // #VC: emulate and resume, or terminate (never returns then).
        super::vc::on_vc(frame);
        return;
    }
    #[cfg(feature = "loopback-ghcb")]
    if frame.vector == 14 && super::vc::on_page_fault(frame) {
        // The loopback build's stand-in for an NPF #VC on an unmapped BAR: emulated.
        return;
    }
    if frame.vector == 20 {
        // #VE: service through TDVMCALL and resume, or stop (never returns then).
        super::tdx::on_ve(frame);
        return;
    }
    report_and_stop(frame)
}

/// Prints the exception report on COM1 and stops the VM.
pub(super) fn report_and_stop(frame: &Frame) -> ! {
    let name = NAMES
        .get(frame.vector as usize)
        .copied()
        .unwrap_or("unknown");
    let e = crate::console::emergency;
    e(format_args!(
        "\n*** CPU exception {} ({}), error code {:#x}\n",
        frame.vector, name, frame.error_code
    ));
    if frame.vector == 14 {
        e(format_args!(
            "    cr2 {:#018x} (faulting address)\n",
            super::cr2()
        ));
    }
    e(format_args!(
        "    rip {:#018x} cs {:#x} rflags {:#x} rsp {:#018x} ss {:#x}\n",
        frame.rip, frame.cs, frame.rflags, frame.rsp, frame.ss
    ));
    e(format_args!(
        "    rax {:#018x} rbx {:#018x} rcx {:#018x} rdx {:#018x}\n",
        frame.rax, frame.rbx, frame.rcx, frame.rdx
    ));
    e(format_args!(
        "    rsi {:#018x} rdi {:#018x} rbp {:#018x} r8  {:#018x}\n",
        frame.rsi, frame.rdi, frame.rbp, frame.r8
    ));
    e(format_args!(
        "    r9  {:#018x} r10 {:#018x} r11 {:#018x} r12 {:#018x}\n",
        frame.r9, frame.r10, frame.r11, frame.r12
    ));
    e(format_args!(
        "    r13 {:#018x} r14 {:#018x} r15 {:#018x} cr3 {:#018x}\n",
        frame.r13,
        frame.r14,
        frame.r15,
        super::cr3()
    ));
    e(format_args!(
        "    image base {:#x}: rip offset {:#x}\n",
        crate::image_base(),
        frame.rip.wrapping_sub(crate::image_base())
    ));
    e(format_args!("ckms: stopped after a CPU exception\n"));
    super::stop(super::ExitCode::Fault);
}

/// A 64-bit interrupt gate (SDM vol. 3A, figure 6-8).
#[repr(C)]
#[derive(Clone, Copy)]
struct Entry {
    offset_low: u16,
    selector: u16,
    ist: u8,
    type_attr: u8,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}

const _: () = assert!(size_of::<Entry>() == 16);

impl Entry {
    const MISSING: Self = Self {
        offset_low: 0,
        selector: 0,
        ist: 0,
        type_attr: 0,
        offset_mid: 0,
        offset_high: 0,
        reserved: 0,
    };

    fn gate(handler: u64, ist: u8) -> Self {
        Self {
            offset_low: handler as u16,
            selector: gdt::CODE,
            ist,
            type_attr: 0x8e, // present, DPL 0, 64-bit interrupt gate (IF cleared on entry)
            offset_mid: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            reserved: 0,
        }
    }
}

#[repr(C, align(16))]
struct Idt([Entry; 256]);

static IDT: spin::Once<Idt> = spin::Once::new();

#[repr(C, packed(2))]
struct Pointer {
    limit: u16,
    base: u64,
}

/// Builds and loads the IDT: the 32 exception gates, plus the local APIC timer and spurious
/// vectors (used only while [`super::apic::idle`] halts). Must follow [`gdt::init`] (the gates
/// use its code selector and IST stacks).
pub fn init() {
    let idt = IDT.call_once(|| {
        let mut entries = [Entry::MISSING; 256];
        for (i, stub) in STUBS.iter().enumerate() {
            let ist = match i {
                8 => gdt::IST_DOUBLE_FAULT,
                29 => gdt::IST_VC,
                20 => gdt::IST_VE,
                _ => gdt::IST_EXCEPTION,
            };
            if let Some(e) = entries.get_mut(i) {
                *e = Entry::gate(*stub as usize as u64, ist);
            }
        }
        let gates: [(u8, unsafe extern "C" fn()); 2] = [
            (super::apic::TIMER_VECTOR, super::apic::timer_stub),
            (super::apic::SPURIOUS_VECTOR, super::apic::spurious_stub),
        ];
        for (vector, stub) in gates {
            if let Some(e) = entries.get_mut(usize::from(vector)) {
                *e = Entry::gate(stub as usize as u64, gdt::IST_EXCEPTION);
            }
        }
        Idt(entries)
    });
    let ptr = Pointer {
        limit: (size_of::<Idt>() - 1) as u16,
        base: core::ptr::from_ref(idt) as u64,
    };
    // SAFETY: the IDT is static and every present gate points to a stub above.
    unsafe { asm!("lidt [{}]", in(reg) &ptr, options(readonly, nostack, preserves_flags)) };
}
