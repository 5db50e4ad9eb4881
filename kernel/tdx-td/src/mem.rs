//! Private memory: TDG.MEM.PAGE.ACCEPT and the shared ⇄ private conversions of the shared
//! pool (MapGPA, then accept when a page comes back).
//!
//! TDX Module ABI spec §"TDG.MEM.PAGE.ACCEPT Leaf": RCX bits 2:0 = level (0 = 4 KiB, 1 = 2 MiB),
//! RCX bits 51:12 = GPA aligned to the level's size. The module zeroes the page and maps it
//! private. Statuses: TDX_SUCCESS; TDX_PAGE_ALREADY_ACCEPTED (warning); TDX_PAGE_SIZE_MISMATCH
//! (the Secure-EPT maps the range at another level: accept it as 4 KiB pages instead);
//! TDX_OPERAND_BUSY (retry).

use crate::tdcall::{
    Regs, Status, TDG_MEM_PAGE_ACCEPT, TDX_OPERAND_BUSY, TDX_PAGE_ALREADY_ACCEPTED,
    TDX_PAGE_SIZE_MISMATCH, Tdcall,
};
use crate::vmcall::{check_range, map_gpa};
use crate::{Error, PAGE_SIZE};

/// 2 MiB.
pub const PAGE_SIZE_2M: u64 = 2 << 20;
/// How often an accept returning TDX_OPERAND_BUSY is retried.
pub const ACCEPT_BUSY_RETRIES: u32 = 16;

/// Accept level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// 4 KiB.
    Page4K = 0,
    /// 2 MiB.
    Page2M = 1,
}

impl Level {
    /// Bytes covered.
    pub fn size(self) -> u64 {
        match self {
            Self::Page4K => PAGE_SIZE,
            Self::Page2M => PAGE_SIZE_2M,
        }
    }
}

/// What an accept found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// The page was pending and is now private and zeroed.
    Fresh,
    /// The page was already accepted (its contents are unchanged).
    AlreadyAccepted,
    /// The Secure-EPT maps the page at another level.
    SizeMismatch,
}

/// One TDG.MEM.PAGE.ACCEPT (TDX_OPERAND_BUSY is retried up to [`ACCEPT_BUSY_RETRIES`] times).
pub fn page_accept<T: Tdcall + ?Sized>(
    t: &mut T,
    gpa: u64,
    level: Level,
) -> Result<Accepted, Error> {
    if !gpa.is_multiple_of(level.size()) {
        return Err(Error::Misaligned {
            value: gpa,
            align: level.size(),
        });
    }
    let mut tries = 0;
    loop {
        let mut regs = Regs {
            rcx: gpa | level as u64,
            ..Regs::leaf(TDG_MEM_PAGE_ACCEPT)
        };
        t.tdcall(&mut regs);
        let status = Status(regs.rax);
        match status.class() {
            _ if status.is_success() => return Ok(Accepted::Fresh),
            TDX_PAGE_ALREADY_ACCEPTED => return Ok(Accepted::AlreadyAccepted),
            TDX_PAGE_SIZE_MISMATCH => return Ok(Accepted::SizeMismatch),
            TDX_OPERAND_BUSY if tries < ACCEPT_BUSY_RETRIES => tries += 1,
            _ => {
                return Err(Error::Tdcall {
                    leaf: TDG_MEM_PAGE_ACCEPT,
                    status,
                });
            }
        }
    }
}

/// What to do with a page that is already accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnAlreadyAccepted {
    /// Fine (unaccepted memory the firmware may have accepted in part).
    Allow,
    /// An error: the page was meant to be pending ([`make_private`]).
    Refuse,
}

/// Accepts `[start, start + len)`: 2 MiB at a time where aligned, 4 KiB pages otherwise and
/// where the module reports a size mismatch.
pub fn accept_range<T: Tdcall + ?Sized>(
    t: &mut T,
    start: u64,
    len: u64,
    shared_bit: u32,
    already: OnAlreadyAccepted,
) -> Result<(), Error> {
    let end = check_range(start, len, shared_bit)?;
    let check = |gpa, a: Accepted| match (a, already) {
        (Accepted::AlreadyAccepted, OnAlreadyAccepted::Refuse) => {
            Err(Error::AlreadyAccepted { gpa })
        }
        _ => Ok(()),
    };
    let mut gpa = start;
    while gpa < end {
        if gpa.is_multiple_of(PAGE_SIZE_2M) && end - gpa >= PAGE_SIZE_2M {
            let a = page_accept(t, gpa, Level::Page2M)?;
            if a != Accepted::SizeMismatch {
                check(gpa, a)?;
                gpa += PAGE_SIZE_2M;
                continue;
            }
        }
        let stop = if gpa.is_multiple_of(PAGE_SIZE_2M) && end - gpa >= PAGE_SIZE_2M {
            gpa + PAGE_SIZE_2M
        } else {
            gpa + PAGE_SIZE
        };
        while gpa < stop {
            match page_accept(t, gpa, Level::Page4K)? {
                Accepted::SizeMismatch => {
                    return Err(Error::Tdcall {
                        leaf: TDG_MEM_PAGE_ACCEPT,
                        status: Status(TDX_PAGE_SIZE_MISMATCH),
                    });
                }
                a => check(gpa, a)?,
            }
            gpa += PAGE_SIZE;
        }
    }
    Ok(())
}

/// Makes private pages shared (for DMA and host-visible buffers): MapGPA with the shared bit.
/// The caller maps the range with the shared bit set in its page tables afterwards and must not
/// keep secrets in it: the host owns the contents from now on.
pub fn make_shared<T: Tdcall + ?Sized>(
    t: &mut T,
    start: u64,
    len: u64,
    shared_bit: u32,
) -> Result<(), Error> {
    map_gpa(t, start, len, true, shared_bit)
}

/// Makes shared pages private again: MapGPA without the shared bit, then accept every page.
/// Each page must be pending: one that is already accepted means the host did not do the
/// conversion this guest asked for ([`Error::AlreadyAccepted`]).
pub fn make_private<T: Tdcall + ?Sized>(
    t: &mut T,
    start: u64,
    len: u64,
    shared_bit: u32,
) -> Result<(), Error> {
    map_gpa(t, start, len, false, shared_bit)?;
    accept_range(t, start, len, shared_bit, OnAlreadyAccepted::Refuse)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{FakeTdx, PageState};
    use crate::info::Attributes;

    const SB: u32 = 47;

    fn td() -> FakeTdx {
        FakeTdx::new(48, Attributes::SEPT_VE_DISABLE)
    }

    #[test]
    fn accept_fresh_already_and_errors() {
        let mut t = td();
        t.add_pending(0x20_0000, 1);
        t.write_private(0x20_0000, b"stale");
        assert_eq!(
            page_accept(&mut t, 0x20_0000, Level::Page4K),
            Ok(Accepted::Fresh)
        );
        assert_eq!(
            t.read_private(0x20_0000, 5),
            [0; 5],
            "accept zeroes the page"
        );
        assert_eq!(
            page_accept(&mut t, 0x20_0000, Level::Page4K),
            Ok(Accepted::AlreadyAccepted)
        );
        assert_eq!(
            page_accept(&mut t, 0x20_0800, Level::Page4K),
            Err(Error::Misaligned {
                value: 0x20_0800,
                align: 4096
            })
        );
        // Never added by the host.
        assert!(matches!(
            page_accept(&mut t, 0x90_0000, Level::Page4K),
            Err(Error::Tdcall { leaf: 6, status }) if status.class() == crate::tdcall::TDX_EPT_WALK_FAILED
        ));
        // Busy a few times, then accepted.
        t.add_pending(0x21_0000, 1);
        t.busy_accepts = 3;
        assert_eq!(
            page_accept(&mut t, 0x21_0000, Level::Page4K),
            Ok(Accepted::Fresh)
        );
        t.add_pending(0x22_0000, 1);
        t.busy_accepts = ACCEPT_BUSY_RETRIES + 1;
        assert!(matches!(
            page_accept(&mut t, 0x22_0000, Level::Page4K),
            Err(Error::Tdcall { status, .. }) if status.class() == TDX_OPERAND_BUSY
        ));
    }

    #[test]
    fn accept_range_2m_with_4k_fallback() {
        let mut t = td();
        // 0x20_0000..0x60_0000 pending: the first 2 MiB mapped as one 2 MiB page, the second
        // as 4 KiB pages (the fake answers SIZE_MISMATCH to a 2 MiB accept there).
        t.add_pending(0x20_0000, 1024);
        t.mapped_4k_only.insert(0x40_0000);
        assert!(matches!(
            accept_range(&mut t, 0x1F_F000, 0x40_1000, SB, OnAlreadyAccepted::Allow),
            Err(Error::Tdcall { leaf: 6, status }) if status.class() == crate::tdcall::TDX_EPT_WALK_FAILED
        ));
        let mut t = td();
        t.add_pending(0x20_0000, 1024);
        t.mapped_4k_only.insert(0x40_0000);
        accept_range(&mut t, 0x20_0000, 0x40_0000, SB, OnAlreadyAccepted::Allow).unwrap();
        assert_eq!(t.accepts_2m, 1);
        assert_eq!(t.accepts_4k, 512);
        assert_eq!(t.state(0x5F_F000), Some(PageState::Private));
        // Again: everything already accepted; allowed here, refused in strict mode.
        accept_range(&mut t, 0x20_0000, 0x40_0000, SB, OnAlreadyAccepted::Allow).unwrap();
        assert_eq!(
            accept_range(&mut t, 0x20_0000, 0x1000, SB, OnAlreadyAccepted::Refuse),
            Err(Error::AlreadyAccepted { gpa: 0x20_0000 })
        );
    }

    #[test]
    fn shared_round_trip_scrambles_and_zeroes() {
        let mut t = td();
        t.add_private(0x10_0000, 4);
        t.write_private(0x10_0000, b"secret");
        make_shared(&mut t, 0x10_0000, 4 * 4096, SB).unwrap();
        assert_eq!(t.state(0x10_0000), Some(PageState::Shared));
        // The private contents are gone: the fake host scrambles a page on every conversion.
        assert_ne!(t.read_shared(0x10_0000, 6), *b"secret");
        make_private(&mut t, 0x10_0000, 4 * 4096, SB).unwrap();
        assert_eq!(t.state(0x10_3000), Some(PageState::Private));
        assert_eq!(t.read_private(0x10_0000, 6), [0; 6]);
    }

    #[test]
    fn make_private_refuses_a_page_the_host_kept() {
        let mut t = td();
        t.add_private(0x10_0000, 2);
        make_shared(&mut t, 0x10_0000, 2 * 4096, SB).unwrap();
        // A cheating host answers MapGPA(private) with success but leaves page 1 accepted.
        t.keep_accepted_on_private = Some(0x10_1000);
        assert_eq!(
            make_private(&mut t, 0x10_0000, 2 * 4096, SB),
            Err(Error::AlreadyAccepted { gpa: 0x10_1000 })
        );
    }
}
