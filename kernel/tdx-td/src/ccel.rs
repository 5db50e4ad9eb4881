//! Finding the CC event log a TDVF wrote: the ACPI CCEL table (ACPI 6.5 §5.2.34, "Confidential
//! Computing Event Log Table"; TDVF Design Guide rev 1.01 §10.2 "Event Log") reached from the
//! RSDP (ACPI 6.5 §5.2.5.3) through the XSDT (§5.2.8; the RSDT, §5.2.7, for revision-0 RSDPs).
//!
//! CCEL layout after the 36-byte table header: CC Type u8 (2 = Intel TDX), CC Subtype u8,
//! Reserved u16, LAML u64 (log area minimum length), LASA u64 (log area start address).
//!
//! Memory is read through a caller's function (the kernel reads its identity map, tests a
//! byte array): every address and length comes from firmware tables the host could have
//! written, so each is bounds-checked and every read can fail.

/// The RSDP signature.
pub const RSDP_SIGNATURE: &[u8; 8] = b"RSD PTR ";
/// CC Type of an Intel TDX CCEL.
pub const CC_TYPE_TDX: u8 = 2;
/// Largest log area accepted (a real TDVF reserves 64 KiB).
pub const MAX_LOG_AREA: u64 = 1 << 20;
/// Most XSDT/RSDT entries looked at.
pub const MAX_TABLES: usize = 256;

const HEADER_LEN: usize = 36;
const CCEL_LEN: usize = 56;

/// Why no event log area was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CcelError {
    /// An address could not be read (outside what the reader allows).
    Unreadable(u64),
    /// No "RSD PTR " at the RSDP address, or its checksum is wrong.
    BadRsdp,
    /// The XSDT/RSDT is not one (signature, length, checksum).
    BadRootTable,
    /// No CCEL table among the root table's entries.
    NoCcel,
    /// The CCEL table is malformed (length, checksum).
    BadCcel,
    /// The CCEL table is not a TDX one (its CC Type).
    NotTdx(u8),
    /// The log area is empty or larger than [`MAX_LOG_AREA`], or wraps.
    BadLogArea {
        /// LASA.
        start: u64,
        /// LAML.
        len: u64,
    },
}

impl core::fmt::Display for CcelError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Unreadable(a) => write!(f, "cannot read firmware memory at {a:#x}"),
            Self::BadRsdp => f.write_str("no valid ACPI RSDP"),
            Self::BadRootTable => f.write_str("the ACPI XSDT/RSDT is malformed"),
            Self::NoCcel => f.write_str("no ACPI CCEL table"),
            Self::BadCcel => f.write_str("the ACPI CCEL table is malformed"),
            Self::NotTdx(t) => write!(f, "the CCEL table has CC type {t}, not TDX (2)"),
            Self::BadLogArea { start, len } => {
                write!(f, "the CCEL log area {start:#x}+{len:#x} is not acceptable")
            }
        }
    }
}

/// The CCEL log area: the event log is its first bytes, free space after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogArea {
    /// LASA.
    pub start: u64,
    /// LAML.
    pub len: u64,
}

fn checksum_ok(bytes: &[u8]) -> bool {
    bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b)) == 0
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Reads a whole ACPI table at `addr` (header first, for its length; at most `max` bytes)
/// into `buf`, checks signature and checksum, and returns its length.
fn read_table<R>(read: &mut R, addr: u64, signature: &[u8; 4], buf: &mut [u8]) -> Option<usize>
where
    R: FnMut(u64, &mut [u8]) -> Result<(), CcelError>,
{
    let (head, _) = buf.split_at_mut_checked(HEADER_LEN)?;
    read(addr, head).ok()?;
    if head.get(..4)? != signature {
        return None;
    }
    let len = u32_at(head, 4)? as usize;
    let table = buf.get_mut(..len).filter(|_| len >= HEADER_LEN)?;
    read(addr, table).ok()?;
    checksum_ok(table).then_some(len)
}

/// Finds the CCEL log area from the RSDP at `rsdp`. `read(addr, out)` fills `out` from guest
/// physical memory at `addr` or fails.
pub fn find_log_area<R>(rsdp: u64, mut read: R) -> Result<LogArea, CcelError>
where
    R: FnMut(u64, &mut [u8]) -> Result<(), CcelError>,
{
    let mut r = [0u8; 36];
    read(rsdp, &mut r)?;
    if &r[..8] != RSDP_SIGNATURE || !checksum_ok(&r[..20]) {
        return Err(CcelError::BadRsdp);
    }
    // Revision ≥ 2: the XSDT (64-bit entries), its extended checksum over 36 bytes.
    let (root, sig, entry) = if r[15] >= 2 {
        if !checksum_ok(&r) {
            return Err(CcelError::BadRsdp);
        }
        (u64_at(&r, 24).ok_or(CcelError::BadRsdp)?, b"XSDT", 8)
    } else {
        (
            u64::from(u32_at(&r, 16).ok_or(CcelError::BadRsdp)?),
            b"RSDT",
            4,
        )
    };
    let mut table = [0u8; HEADER_LEN + 8 * MAX_TABLES];
    let len = read_table(&mut read, root, sig, &mut table).ok_or(CcelError::BadRootTable)?;
    let entries = table.get(HEADER_LEN..len).ok_or(CcelError::BadRootTable)?;
    for e in entries.chunks_exact(entry) {
        let addr = match entry {
            8 => u64_at(e, 0),
            _ => u32_at(e, 0).map(u64::from),
        }
        .ok_or(CcelError::BadRootTable)?;
        let mut sig = [0u8; 4];
        if read(addr, &mut sig).is_err() || &sig != b"CCEL" {
            continue;
        }
        let mut ccel = [0u8; 64];
        let n = read_table(&mut read, addr, b"CCEL", &mut ccel).ok_or(CcelError::BadCcel)?;
        if n < CCEL_LEN {
            return Err(CcelError::BadCcel);
        }
        if ccel[36] != CC_TYPE_TDX {
            return Err(CcelError::NotTdx(ccel[36]));
        }
        let len = u64_at(&ccel, 40).ok_or(CcelError::BadCcel)?;
        let start = u64_at(&ccel, 48).ok_or(CcelError::BadCcel)?;
        if len == 0 || len > MAX_LOG_AREA || start.checked_add(len).is_none() {
            return Err(CcelError::BadLogArea { start, len });
        }
        return Ok(LogArea { start, len });
    }
    Err(CcelError::NoCcel)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guest memory: a byte array from address 0x1000.
    struct Mem(Vec<u8>);

    impl Mem {
        fn reader(&self) -> impl FnMut(u64, &mut [u8]) -> Result<(), CcelError> + '_ {
            |addr, out| {
                let at = (addr as usize)
                    .checked_sub(0x1000)
                    .ok_or(CcelError::Unreadable(addr))?;
                let src = self
                    .0
                    .get(at..at + out.len())
                    .ok_or(CcelError::Unreadable(addr))?;
                out.copy_from_slice(src);
                Ok(())
            }
        }
        fn put(&mut self, addr: u64, b: &[u8]) {
            let at = addr as usize - 0x1000;
            self.0[at..at + b.len()].copy_from_slice(b);
        }
    }

    fn fix_checksum(t: &mut [u8], at: usize, over: usize) {
        t[at] = 0;
        let s = t[..over].iter().fold(0u8, |a, b| a.wrapping_add(*b));
        t[at] = 0u8.wrapping_sub(s);
    }

    fn table(sig: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut t = sig.to_vec();
        t.extend_from_slice(&((HEADER_LEN + body.len()) as u32).to_le_bytes());
        t.resize(HEADER_LEN, 0);
        t.extend_from_slice(body);
        let n = t.len();
        fix_checksum(&mut t, 9, n);
        t
    }

    fn ccel(cc_type: u8, laml: u64, lasa: u64) -> Vec<u8> {
        let mut b = vec![cc_type, 0, 0, 0];
        b.extend_from_slice(&laml.to_le_bytes());
        b.extend_from_slice(&lasa.to_le_bytes());
        table(b"CCEL", &b)
    }

    /// RSDP at 0x1000 (revision 2), XSDT at 0x2000 with a FACP-like entry then the CCEL at 0x3000.
    fn firmware(ccel_table: &[u8]) -> Mem {
        let mut m = Mem(vec![0; 0x4000]);
        let mut rsdp = RSDP_SIGNATURE.to_vec();
        rsdp.extend_from_slice(&[0; 7]); // checksum, OEMID
        rsdp.push(2);
        rsdp.extend_from_slice(&0u32.to_le_bytes());
        rsdp.extend_from_slice(&36u32.to_le_bytes());
        rsdp.extend_from_slice(&0x2000u64.to_le_bytes());
        rsdp.extend_from_slice(&[0; 4]); // extended checksum, reserved
        fix_checksum(&mut rsdp, 8, 20);
        fix_checksum(&mut rsdp, 32, 36);
        m.put(0x1000, &rsdp);
        m.put(0x2800, &table(b"FACP", &[1, 2, 3]));
        let mut entries = 0x2800u64.to_le_bytes().to_vec();
        entries.extend_from_slice(&0x3000u64.to_le_bytes());
        m.put(0x2000, &table(b"XSDT", &entries));
        m.put(0x3000, ccel_table);
        m
    }

    #[test]
    fn finds_the_log_area_of_a_tdx_ccel() {
        let m = firmware(&ccel(2, 0x10000, 0x7f00_0000));
        assert_eq!(
            find_log_area(0x1000, m.reader()),
            Ok(LogArea {
                start: 0x7f00_0000,
                len: 0x10000
            })
        );
    }

    #[test]
    fn malformed_or_missing_tables_are_refused_by_name() {
        // Not a TDX CCEL; an absurd or wrapping log area.
        let m = firmware(&ccel(1, 0x10000, 0x7f00_0000));
        assert_eq!(find_log_area(0x1000, m.reader()), Err(CcelError::NotTdx(1)));
        for (laml, lasa) in [(0, 0x1000), (MAX_LOG_AREA + 1, 0x1000), (0x1000, u64::MAX)] {
            let m = firmware(&ccel(2, laml, lasa));
            assert_eq!(
                find_log_area(0x1000, m.reader()),
                Err(CcelError::BadLogArea {
                    start: lasa,
                    len: laml
                })
            );
        }
        // A CCEL with a wrong checksum, or too short.
        let mut bad = ccel(2, 0x10000, 0x7f00_0000);
        bad[40] ^= 1;
        let m = firmware(&bad);
        assert_eq!(find_log_area(0x1000, m.reader()), Err(CcelError::BadCcel));
        let m = firmware(&table(b"CCEL", &[2, 0, 0, 0]));
        assert_eq!(find_log_area(0x1000, m.reader()), Err(CcelError::BadCcel));
        // No CCEL among the entries (the plain OVMF case).
        let m = firmware(&table(b"APIC", &[0; 8]));
        assert_eq!(find_log_area(0x1000, m.reader()), Err(CcelError::NoCcel));
        // A broken RSDP, an unreadable one, a broken XSDT.
        let mut m = firmware(&ccel(2, 0x10000, 0x7f00_0000));
        m.0[0x10] ^= 1; // inside the first 20 bytes
        assert_eq!(find_log_area(0x1000, m.reader()), Err(CcelError::BadRsdp));
        let m = firmware(&ccel(2, 0x10000, 0x7f00_0000));
        assert_eq!(
            find_log_area(0x10, m.reader()),
            Err(CcelError::Unreadable(0x10))
        );
        let mut m = firmware(&ccel(2, 0x10000, 0x7f00_0000));
        m.0[0x1000 + 40] ^= 1; // the XSDT's first entry (its checksum no longer holds)
        assert_eq!(
            find_log_area(0x1000, m.reader()),
            Err(CcelError::BadRootTable)
        );
        let mut m = firmware(&ccel(2, 0x10000, 0x7f00_0000));
        m.put(0x2004, &0xFFFF_FFFFu32.to_le_bytes()); // XSDT length beyond memory
        assert_eq!(
            find_log_area(0x1000, m.reader()),
            Err(CcelError::BadRootTable)
        );
    }
}
