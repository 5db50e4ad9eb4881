//! The seams between the sans-IO bootstrap core and the machine it runs on: the platform's evidence
//! ([`Evidence`]: attestation report, certificate table, measurement-bound derived key) and the database check
//! ([`DatabaseProbe`]: does Redis answer, is the secret right). The host server implements them with `snp-emu`
//! over a unix socket and `kms-redis` over TCP; the unikernel with the SNP guest-message protocol and smoltcp.

use alloc::vec::Vec;
use core::fmt;

use zeroize::Zeroizing;

use super::DbSecret;

/// What kind of evidence a platform produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    /// AMD SEV-SNP (real firmware or `snp-emu`): 0x4A0-byte reports, certificate table, derived keys.
    SevSnp,
    /// Intel TDX (real TDX module and quoting enclave, or `tdx-emu`): [`Evidence::report`] is the raw DCAP quote
    /// v4 whose REPORTDATA is the caller's `report_data`; no certificate table (the PCK chain is inside the
    /// quote), and no derived key: TDX has no sealing key, so `sk` is random at every boot
    /// (docs/operations.md, "TDX").
    Tdx,
    /// No attestation at all (`--attestation none`): random `sk`, no quote. For development only.
    None,
}

impl Platform {
    /// Name used in JSON answers.
    pub fn name(self) -> &'static str {
        match self {
            Platform::SevSnp => "sev-snp",
            Platform::Tdx => "tdx",
            Platform::None => "none",
        }
    }
}

/// One entry of the SNP extended-report certificate table (GHCB spec 56421, §4.1.8.1 "SNP Extended Guest
/// Request"): GUID and DER.
pub use attest::ratls::CertEntry as CertTableEntry;

/// Largest number of entries read from a certificate table.
pub const MAX_CERT_TABLE_ENTRIES: usize = 16;

/// Parses the certificate table returned by an extended guest request (GHCB spec 56421, §4.1.8.1): entries of
/// `{GUID[16], offset u32-LE, length u32-LE}` (offset from the table start) ended by an all-zero entry, then the
/// certificates. Every offset and length is checked against the buffer.
pub fn parse_cert_table(table: &[u8]) -> Result<Vec<CertTableEntry>, EvidenceError> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    loop {
        let end = pos
            .checked_add(24)
            .ok_or(EvidenceError::Malformed("certificate table"))?;
        let entry = table
            .get(pos..end)
            .ok_or(EvidenceError::Malformed("certificate table not terminated"))?;
        let (guid, rest) = entry.split_at(16);
        if guid.iter().all(|b| *b == 0) {
            return Ok(out);
        }
        if out.len() == MAX_CERT_TABLE_ENTRIES {
            return Err(EvidenceError::Malformed(
                "certificate table has too many entries",
            ));
        }
        let (off, len) = rest.split_at(4);
        let off = usize::try_from(u32::from_le_bytes([off[0], off[1], off[2], off[3]]))
            .map_err(|_| EvidenceError::Malformed("certificate offset"))?;
        let len = usize::try_from(u32::from_le_bytes([len[0], len[1], len[2], len[3]]))
            .map_err(|_| EvidenceError::Malformed("certificate length"))?;
        let stop = off
            .checked_add(len)
            .ok_or(EvidenceError::Malformed("certificate length"))?;
        let der = table
            .get(off..stop)
            .ok_or(EvidenceError::Malformed("certificate outside the table"))?;
        let mut g = [0u8; 16];
        g.copy_from_slice(guid);
        out.push(CertTableEntry {
            guid: g,
            der: der.to_vec(),
        });
        pos = end;
    }
}

/// Errors a platform backend reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvidenceError {
    /// The platform has no attestation (`none`).
    Unsupported,
    /// The transport to the firmware failed (socket closed, serial timeout, GHCB error).
    Transport(&'static str),
    /// The firmware answered with an error status.
    Firmware(u32),
    /// The firmware's answer was malformed.
    Malformed(&'static str),
}

impl fmt::Display for EvidenceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EvidenceError::Unsupported => {
                f.write_str("this server runs without an attestation platform")
            }
            EvidenceError::Transport(what) => write!(f, "attestation transport failed: {what}"),
            EvidenceError::Firmware(status) => write!(f, "firmware returned status {status:#x}"),
            EvidenceError::Malformed(what) => write!(f, "malformed firmware answer: {what}"),
        }
    }
}

impl core::error::Error for EvidenceError {}

/// The platform seam for attestation.
pub trait Evidence {
    /// Which kind of evidence this is.
    fn platform(&self) -> Platform;
    /// A fresh attestation report carrying `report_data` (SEV-SNP: MSG_REPORT_REQ, ABI spec 56860 §7.3; TDX: the
    /// DCAP quote v4 of a TDREPORT from TDG.MR.REPORT, obtained with the GetQuote TDVMCALL).
    fn report(&mut self, report_data: &[u8; 64]) -> Result<Vec<u8>, EvidenceError>;
    /// The certificate table (VCEK and its chain) the verifier needs; may be empty. Not asked for on TDX.
    fn cert_table(&mut self) -> Result<Vec<CertTableEntry>, EvidenceError>;
    /// The measurement-bound derived key (SEV-SNP: MSG_KEY_REQ with the measurement mixed in, ABI spec 56860
    /// §7.2); `None` when the platform has no such key. Not asked for on TDX (no sealing key).
    fn derived_key(&mut self) -> Result<Option<Zeroizing<[u8; 32]>>, EvidenceError>;
    /// The CC event log (TDX: the CCEL log area the firmware wrote, UEFI 2.10 §38.4 / TDVF
    /// Design Guide §10.1) that a verifier replays into the quote's RTMRs; `None` where the
    /// platform keeps none (SEV-SNP: the launch digest covers everything measured).
    fn event_log(&mut self) -> Result<Option<Vec<u8>>, EvidenceError> {
        Ok(None)
    }
}

/// Why a database configuration was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeError {
    /// The URL does not parse as `redis://[user:pass@]host:port[/db]`.
    BadUrl,
    /// Redis does not answer (connect, AUTH or PING failed).
    Unreachable,
    /// The database holds data sealed under another secret.
    WrongSecret,
    /// Another storage error.
    Storage,
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeError::BadUrl => {
                f.write_str("the Redis URL is not redis://[user:pass@]host:port[/db]")
            }
            ProbeError::Unreachable => f.write_str("Redis does not answer at that URL"),
            ProbeError::WrongSecret => {
                f.write_str("the database holds data sealed under another secret: wrong db_secret")
            }
            ProbeError::Storage => f.write_str("storage error while checking the database"),
        }
    }
}

impl core::error::Error for ProbeError {}

/// Checks a database configuration: Redis answers and, on an existing database, the secret opens it.
pub trait DatabaseProbe {
    /// Performs the check (the driver does the I/O).
    fn probe(&mut self, url: &str, secret: &DbSecret) -> Result<(), ProbeError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(entries: &[([u8; 16], &[u8])]) -> Vec<u8> {
        let mut head = Vec::new();
        let mut body = Vec::new();
        let base = 24 * (entries.len() + 1);
        for (g, der) in entries {
            head.extend_from_slice(g);
            head.extend_from_slice(&u32::try_from(base + body.len()).unwrap().to_le_bytes());
            head.extend_from_slice(&u32::try_from(der.len()).unwrap().to_le_bytes());
            body.extend_from_slice(der);
        }
        head.extend_from_slice(&[0; 24]);
        head.extend_from_slice(&body);
        head
    }

    #[test]
    fn cert_table_round_trip() {
        let t = table(&[([1; 16], b"vcek"), ([2; 16], b"ask!!"), ([3; 16], b"")]);
        let e = parse_cert_table(&t).unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!((e[0].guid, e[0].der.as_slice()), ([1; 16], &b"vcek"[..]));
        assert_eq!((e[1].guid, e[1].der.as_slice()), ([2; 16], &b"ask!!"[..]));
        assert!(e[2].der.is_empty());
        assert!(parse_cert_table(&[0; 24]).unwrap().is_empty());
    }

    #[test]
    fn cert_table_rejects_bad_bounds() {
        let t = table(&[([1; 16], b"vcek")]);
        // Cut inside the first entry: no terminator; cut after it: its certificate is missing.
        for (cut, reason) in [
            (0, "certificate table not terminated"),
            (10, "certificate table not terminated"),
            (24, "certificate outside the table"),
            (47, "certificate outside the table"),
            (t.len() - 1, "certificate outside the table"),
        ] {
            assert_eq!(
                parse_cert_table(&t[..cut]),
                Err(EvidenceError::Malformed(reason)),
                "cut {cut}"
            );
        }
        let mut t2 = t.clone();
        t2[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            parse_cert_table(&t2),
            Err(EvidenceError::Malformed("certificate outside the table"))
        );
        let mut many = Vec::new();
        for _ in 0..=MAX_CERT_TABLE_ENTRIES {
            many.extend_from_slice(&[9; 16]);
            many.extend_from_slice(&0u32.to_le_bytes());
            many.extend_from_slice(&0u32.to_le_bytes());
        }
        many.extend_from_slice(&[0; 24]);
        assert_eq!(
            parse_cert_table(&many),
            Err(EvidenceError::Malformed(
                "certificate table has too many entries"
            ))
        );
    }
}
