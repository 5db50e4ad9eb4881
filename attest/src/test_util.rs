//! Helpers shared by unit tests: the committed vectors.

use alloc::vec::Vec;

/// Decode hex text, ignoring whitespace (the vectors are wrapped).
pub fn hex(s: &str) -> Vec<u8> {
    let s: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    ::hex::decode(s).expect("test vector is hex")
}

pub fn milan_report() -> Vec<u8> {
    hex(include_str!("../testdata/snp/report_milan.hex"))
}
