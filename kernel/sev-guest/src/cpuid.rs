//! The SNP CPUID page: CPUID results the firmware checked at launch (SNP_LAUNCH_UPDATE of a
//! CPUID page), the only CPUID source this guest trusts.
//!
//! AMD 56860 rev 1.58 §8.17.2 "SNP_LAUNCH_UPDATE", "CPUID Page" (Table 14 "CPUID_FUNCTION"
//! entries): a 16-byte header (`COUNT` u32, reserved u32, reserved u64) then up to 64 entries
//! of 48 bytes: `EAX_IN`, `ECX_IN` (u32), `XCR0_IN`, `XSS_IN` (u64), `EAX`, `EBX`, `ECX`,
//! `EDX` (u32), reserved u64.
//!
//! Lookup rules (compared with Linux `snp_cpuid_get_validated_func`): the leaf must match;
//! for leaves whose output depends on ECX (sub-leaf indexed) the sub-leaf must match too; for
//! leaf 0xD sub-leaves 0 and 1 (XSAVE sizes, which depend on the enabled state components)
//! `XCR0_IN`/`XSS_IN` must equal the caller's XCR0/XSS. An absent leaf is a typed error:
//! there is no fallback to the hypervisor.

use core::fmt;
use core::mem::{offset_of, size_of};

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Most entries a CPUID page holds.
pub const MAX_ENTRIES: usize = 64;

/// One entry (56860 Table 14).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct CpuidFunction {
    /// 00h `EAX_IN`: the leaf.
    pub eax_in: U32,
    /// 04h `ECX_IN`: the sub-leaf.
    pub ecx_in: U32,
    /// 08h `XCR0_IN`.
    pub xcr0_in: U64,
    /// 10h `XSS_IN`.
    pub xss_in: U64,
    /// 18h `EAX`.
    pub eax: U32,
    /// 1Ch `EBX`.
    pub ebx: U32,
    /// 20h `ECX`.
    pub ecx: U32,
    /// 24h `EDX`.
    pub edx: U32,
    _reserved_0: U64,
}

/// The page (header + entries).
#[repr(C)]
#[derive(Clone, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct CpuidPage {
    /// 00h `COUNT`.
    pub count: U32,
    _reserved_0: U32,
    _reserved_1: U64,
    /// 10h the entries (the first `COUNT` are meaningful).
    pub functions: [CpuidFunction; MAX_ENTRIES],
}

const _: () = {
    assert!(size_of::<CpuidFunction>() == 0x30);
    assert!(offset_of!(CpuidFunction, xcr0_in) == 0x08);
    assert!(offset_of!(CpuidFunction, xss_in) == 0x10);
    assert!(offset_of!(CpuidFunction, eax) == 0x18);
    assert!(offset_of!(CpuidFunction, edx) == 0x24);
    assert!(offset_of!(CpuidPage, functions) == 0x10);
    assert!(size_of::<CpuidPage>() == 0x10 + 0x30 * MAX_ENTRIES);
    assert!(size_of::<CpuidPage>() <= 4096);
};

/// CPUID page errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuidError {
    /// The buffer is shorter than the page layout.
    Truncated,
    /// `COUNT` is above 64.
    BadCount(u32),
    /// A reserved field is not zero.
    Reserved,
    /// No entry for this leaf/sub-leaf.
    LeafAbsent {
        /// Leaf.
        leaf: u32,
        /// Sub-leaf.
        subleaf: u32,
    },
    /// Leaf 0xD sub-leaf 0/1 exists, but not for the XCR0/XSS in use.
    XsaveMismatch {
        /// The caller's XCR0.
        xcr0: u64,
    },
}

impl fmt::Display for CpuidError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("CPUID page truncated"),
            Self::BadCount(n) => write!(f, "CPUID page count {n} above {MAX_ENTRIES}"),
            Self::Reserved => f.write_str("CPUID page: reserved field set"),
            Self::LeafAbsent { leaf, subleaf } => {
                write!(f, "CPUID leaf {leaf:#x}.{subleaf:#x} not in the CPUID page")
            }
            Self::XsaveMismatch { xcr0 } => {
                write!(f, "CPUID page has no leaf 0xD entry for XCR0 {xcr0:#x}")
            }
        }
    }
}

impl core::error::Error for CpuidError {}

/// A CPUID result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuidResult {
    /// EAX.
    pub eax: u32,
    /// EBX.
    pub ebx: u32,
    /// ECX.
    pub ecx: u32,
    /// EDX.
    pub edx: u32,
}

impl CpuidFunction {
    /// An entry: `leaf`.`subleaf` answers `out`; `xcr0`/`xss` are the inputs it was computed
    /// for (they matter only for leaf 0xD sub-leaves 0 and 1, zero elsewhere).
    pub fn new(leaf: u32, subleaf: u32, xcr0: u64, xss: u64, out: CpuidResult) -> Self {
        Self {
            eax_in: leaf.into(),
            ecx_in: subleaf.into(),
            xcr0_in: xcr0.into(),
            xss_in: xss.into(),
            eax: out.eax.into(),
            ebx: out.ebx.into(),
            ecx: out.ecx.into(),
            edx: out.edx.into(),
            _reserved_0: 0.into(),
        }
    }
}

/// Builds a CPUID page as the hypervisor fills it before `SNP_LAUNCH_UPDATE` (56860 §8.17.2,
/// page type CPUID), which the PSP then checks against the CPU. The loopback-GHCB stub uses it
/// to play that launch; [`Cpuid::parse`] reads what it builds.
#[derive(Clone)]
pub struct CpuidPageBuilder {
    page: CpuidPage,
}

impl Default for CpuidPageBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl CpuidPageBuilder {
    /// An empty page (`COUNT` 0).
    pub fn new() -> Self {
        Self {
            page: CpuidPage::new_zeroed(),
        }
    }

    /// Entries so far.
    pub fn len(&self) -> usize {
        self.page.count.get() as usize
    }

    /// No entries yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends an entry; `BadCount` once the page holds [`MAX_ENTRIES`].
    pub fn push(&mut self, f: CpuidFunction) -> Result<(), CpuidError> {
        let n = self.len();
        let slot = self
            .page
            .functions
            .get_mut(n)
            .ok_or(CpuidError::BadCount(n as u32 + 1))?;
        *slot = f;
        self.page.count = (n as u32 + 1).into();
        Ok(())
    }

    /// The 4 KiB page.
    pub fn to_bytes(&self) -> [u8; 4096] {
        let mut out = [0u8; 4096];
        out[..size_of::<CpuidPage>()].copy_from_slice(self.page.as_bytes());
        out
    }
}

/// Leaves whose output depends on ECX (Intel SDM / AMD APM CPUID chapters; the same list
/// Linux's `cpuid_function_is_indexed` uses plus AMD's extended ones).
pub fn is_indexed(leaf: u32) -> bool {
    matches!(
        leaf,
        0x4 | 0x7
            | 0xB
            | 0xD
            | 0xF
            | 0x10
            | 0x12
            | 0x14
            | 0x17
            | 0x18
            | 0x1D
            | 0x1E
            | 0x1F
            | 0x24
            | 0x8000_001D
            | 0x8000_0020
            | 0x8000_0026
    )
}

/// A validated CPUID page.
#[derive(Clone)]
pub struct Cpuid {
    page: CpuidPage,
}

impl fmt::Debug for Cpuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cpuid")
            .field("count", &self.page.count.get())
            .finish()
    }
}

impl Cpuid {
    /// Parses a CPUID page (a copy of the firmware's page; at least the layout's size).
    pub fn parse(bytes: &[u8]) -> Result<Self, CpuidError> {
        let (page, _) = CpuidPage::read_from_prefix(bytes).map_err(|_| CpuidError::Truncated)?;
        let count = page.count.get();
        if count as usize > MAX_ENTRIES {
            return Err(CpuidError::BadCount(count));
        }
        if page._reserved_0.get() != 0 || page._reserved_1.get() != 0 {
            return Err(CpuidError::Reserved);
        }
        Ok(Self { page })
    }

    /// The meaningful entries.
    pub fn entries(&self) -> &[CpuidFunction] {
        let n = (self.page.count.get() as usize).min(MAX_ENTRIES);
        &self.page.functions[..n]
    }

    /// Looks up `leaf`/`subleaf` for the given XCR0/XSS (see the module doc).
    pub fn get(
        &self,
        leaf: u32,
        subleaf: u32,
        xcr0: u64,
        xss: u64,
    ) -> Result<CpuidResult, CpuidError> {
        let indexed = is_indexed(leaf);
        let xsave = leaf == 0xD && subleaf <= 1;
        let mut leaf_seen = false;
        for e in self.entries() {
            if e.eax_in.get() != leaf || (indexed && e.ecx_in.get() != subleaf) {
                continue;
            }
            leaf_seen = true;
            if xsave && (e.xcr0_in.get() != xcr0 || e.xss_in.get() != xss) {
                continue;
            }
            return Ok(CpuidResult {
                eax: e.eax.get(),
                ebx: e.ebx.get(),
                ecx: e.ecx.get(),
                edx: e.edx.get(),
            });
        }
        if leaf_seen {
            Err(CpuidError::XsaveMismatch { xcr0 })
        } else {
            Err(CpuidError::LeafAbsent { leaf, subleaf })
        }
    }

    /// The C-bit position: CPUID 0x8000_001F EBX\[5:0\] (APM vol. 2 §15.34.1).
    pub fn cbit(&self) -> Result<u8, CpuidError> {
        Ok((self.get(0x8000_001F, 0, 0, 0)?.ebx & 0x3F) as u8)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use zerocopy::FromZeros;

    pub(crate) fn entry(leaf: u32, sub: u32, xcr0: u64, out: [u32; 4]) -> CpuidFunction {
        let mut e = CpuidFunction::new_zeroed();
        e.eax_in = leaf.into();
        e.ecx_in = sub.into();
        e.xcr0_in = xcr0.into();
        e.eax = out[0].into();
        e.ebx = out[1].into();
        e.ecx = out[2].into();
        e.edx = out[3].into();
        e
    }

    pub(crate) fn page(entries: &[CpuidFunction]) -> [u8; 4096] {
        let mut p = CpuidPage::new_zeroed();
        p.count = (entries.len() as u32).into();
        p.functions[..entries.len()].copy_from_slice(entries);
        let mut out = [0u8; 4096];
        out[..size_of::<CpuidPage>()].copy_from_slice(p.as_bytes());
        out
    }

    #[test]
    fn lookup_rules() {
        let bytes = page(&[
            entry(0x0, 0, 0, [0x10, 1, 2, 3]),
            // Leaf 1 is not indexed: ECX_IN is ignored.
            entry(0x1, 0, 0, [0xA00F11, 0, 0, 0]),
            entry(0x7, 0, 0, [0, 0x219C_07AB, 0, 0]),
            entry(0x7, 1, 0, [0x10, 0, 0, 0]),
            entry(0xD, 0, 0x1, [0x1, 0x240, 0x240, 0]),
            entry(0xD, 0, 0x7, [0x7, 0x340, 0x340, 0]),
            entry(0xD, 2, 0, [0x100, 0x240, 0, 0]),
            entry(0x8000_001F, 0, 0, [0x1_B, 0x0000_0173, 0, 0]),
        ]);
        let c = Cpuid::parse(&bytes).unwrap();
        assert_eq!(c.entries().len(), 8);
        assert_eq!(c.get(0x1, 5, 0, 0).unwrap().eax, 0xA00F11);
        assert_eq!(c.get(0x7, 1, 0, 0).unwrap().eax, 0x10);
        assert_eq!(
            c.get(0x7, 2, 0, 0),
            Err(CpuidError::LeafAbsent {
                leaf: 7,
                subleaf: 2
            })
        );
        assert_eq!(c.get(0xD, 0, 0x7, 0).unwrap().ebx, 0x340);
        assert_eq!(c.get(0xD, 0, 0x1, 0).unwrap().ebx, 0x240);
        assert_eq!(
            c.get(0xD, 0, 0x3, 0),
            Err(CpuidError::XsaveMismatch { xcr0: 3 })
        );
        // Sub-leaf 2 does not depend on XCR0.
        assert_eq!(c.get(0xD, 2, 0x7, 0).unwrap().eax, 0x100);
        assert_eq!(
            c.get(0x4000_0000, 0, 0, 0),
            Err(CpuidError::LeafAbsent {
                leaf: 0x4000_0000,
                subleaf: 0
            })
        );
        assert_eq!(c.cbit(), Ok(51));
    }

    #[test]
    fn builder_round_trip() {
        let r = |eax| CpuidResult {
            eax,
            ebx: eax + 1,
            ecx: eax + 2,
            edx: eax + 3,
        };
        let mut b = CpuidPageBuilder::new();
        assert!(b.is_empty());
        b.push(CpuidFunction::new(0, 0, 0, 0, r(0x10))).unwrap();
        b.push(CpuidFunction::new(7, 1, 0, 0, r(0x70))).unwrap();
        b.push(CpuidFunction::new(0xD, 0, 0x7, 0, r(0xD0))).unwrap();
        b.push(CpuidFunction::new(0x8000_001F, 0, 0, 0, r(0x1B)))
            .unwrap();
        let bytes = b.to_bytes();
        // Layout: COUNT at 0, the second entry at 10h + 30h with EAX_IN, ECX_IN, outputs at 18h.
        assert_eq!(bytes[0], 4);
        assert_eq!(bytes[0x40..0x48], [7, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(bytes[0x58..0x5C], 0x70u32.to_le_bytes());
        assert_eq!(bytes[0x70 + 8..0x70 + 16], 7u64.to_le_bytes()); // XCR0_IN of the third
        let c = Cpuid::parse(&bytes).unwrap();
        assert_eq!(c.get(7, 1, 0, 0), Ok(r(0x70)));
        assert_eq!(c.get(0xD, 0, 0x7, 0), Ok(r(0xD0)));
        assert_eq!(
            c.get(0xD, 0, 0x1, 0),
            Err(CpuidError::XsaveMismatch { xcr0: 1 })
        );
        assert_eq!(c.cbit(), Ok(0x1C & 0x3F));
        assert_eq!(
            c.get(7, 0, 0, 0),
            Err(CpuidError::LeafAbsent {
                leaf: 7,
                subleaf: 0
            })
        );
        // Full at 64 entries: the 65th is refused, the page stays parseable.
        let mut full = CpuidPageBuilder::new();
        for leaf in 0..MAX_ENTRIES as u32 {
            full.push(CpuidFunction::new(leaf, 0, 0, 0, r(leaf)))
                .unwrap();
        }
        assert_eq!(
            full.push(CpuidFunction::new(0x99, 0, 0, 0, r(0))),
            Err(CpuidError::BadCount(65))
        );
        let c = Cpuid::parse(&full.to_bytes()).unwrap();
        assert_eq!(c.entries().len(), MAX_ENTRIES);
        assert_eq!(c.get(63, 0, 0, 0), Ok(r(63)));
    }

    #[test]
    fn malformed_pages() {
        let mut bytes = page(&[]);
        bytes[0] = 65;
        assert!(matches!(
            Cpuid::parse(&bytes),
            Err(CpuidError::BadCount(65))
        ));
        let mut bytes = page(&[]);
        bytes[8] = 1;
        assert!(matches!(Cpuid::parse(&bytes), Err(CpuidError::Reserved)));
        assert!(matches!(
            Cpuid::parse(&bytes[..100]),
            Err(CpuidError::Truncated)
        ));
        let empty = Cpuid::parse(&page(&[])).unwrap();
        assert_eq!(
            empty.cbit(),
            Err(CpuidError::LeafAbsent {
                leaf: 0x8000_001F,
                subleaf: 0
            })
        );
    }
}
