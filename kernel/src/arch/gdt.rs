//! Our own GDT and TSS (Intel SDM vol. 3A, 3.4.5 and 8.7): 64-bit code and data segments and
//! a TSS whose interrupt stack table gives exceptions their own stacks.

use core::arch::asm;
use core::mem::size_of;

/// Kernel code selector.
pub const CODE: u16 = 0x08;
/// Kernel data selector.
pub const DATA: u16 = 0x10;
const TSS_SELECTOR: u16 = 0x18;

/// IST index (1-based, as in the IDT entry) used by all exceptions but #DF.
pub const IST_EXCEPTION: u8 = 1;
/// IST index used by #DF.
pub const IST_DOUBLE_FAULT: u8 = 2;
/// IST index used by #VC (its own stack: a #VC raised by another exception's handler does
/// not run on that handler's stack).
pub const IST_VC: u8 = 3;
/// IST index used by #VE (its own stack, for the same reason as #VC).
pub const IST_VE: u8 = 4;

/// 64-bit TSS (SDM vol. 3A, figure 8-11).
#[repr(C, packed(4))]
struct Tss {
    _reserved0: u32,
    rsp: [u64; 3],
    _reserved1: u64,
    ist: [u64; 7],
    _reserved2: u64,
    _reserved3: u16,
    iomap_base: u16,
}

const _: () = assert!(size_of::<Tss>() == 104);

#[repr(C, align(16))]
struct Gdt([u64; 5]);

// Both live in a `Once` (interior mutability, so in writable memory): `ltr` makes the CPU
// set the busy bit in the TSS descriptor.
static TSS: spin::Once<Tss> = spin::Once::new();
static GDT: spin::Once<Gdt> = spin::Once::new();

#[repr(C, packed(2))]
struct Pointer {
    limit: u16,
    base: u64,
}

/// Builds and loads the GDT and TSS, with `ist_tops[i]` as IST `i + 1`.
pub fn init(ist_tops: &[u64; crate::uefi::IST_STACKS]) {
    let tss = TSS.call_once(|| {
        let mut ist = [0u64; 7];
        for (slot, top) in ist.iter_mut().zip(ist_tops) {
            *slot = *top;
        }
        Tss {
            _reserved0: 0,
            rsp: [0; 3],
            _reserved1: 0,
            ist,
            _reserved2: 0,
            _reserved3: 0,
            iomap_base: size_of::<Tss>() as u16,
        }
    });
    let tss_base = core::ptr::from_ref(tss) as u64;
    let limit = (size_of::<Tss>() - 1) as u64;
    // Available 64-bit TSS descriptor (type 9, present), SDM vol. 3A figure 8-4.
    let low = (limit & 0xffff)
        | ((tss_base & 0xff_ffff) << 16)
        | (0x89 << 40)
        | (((limit >> 16) & 0xf) << 48)
        | (((tss_base >> 24) & 0xff) << 56);
    let high = tss_base >> 32;
    let gdt = GDT.call_once(|| {
        Gdt([
            0,
            0x00af_9a00_0000_ffff, // 64-bit code, DPL 0
            0x00cf_9200_0000_ffff, // data, DPL 0
            low,
            high,
        ])
    });
    let gdt_ptr = core::ptr::from_ref(gdt) as u64;
    let ptr = Pointer {
        limit: (size_of::<Gdt>() - 1) as u16,
        base: gdt_ptr,
    };
    // SAFETY: the GDT is valid and static; CS is reloaded through a far return to the new
    // code selector, data segments and TR are loaded with the new selectors.
    unsafe {
        asm!(
            "lgdt [{ptr}]",
            "push {code}",
            "lea {tmp}, [rip + 2f]",
            "push {tmp}",
            "retfq",
            "2:",
            "mov {tmp:e}, {data:e}",
            "mov ds, {tmp:e}",
            "mov es, {tmp:e}",
            "mov ss, {tmp:e}",
            "xor {tmp:e}, {tmp:e}",
            "mov fs, {tmp:e}",
            "mov gs, {tmp:e}",
            "ltr {tss:x}",
            ptr = in(reg) &ptr,
            code = const CODE as u64,
            data = in(reg) u32::from(DATA),
            tss = in(reg) TSS_SELECTOR,
            tmp = out(reg) _,
        );
    }
}
