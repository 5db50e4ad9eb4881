//! Helpers shared by unit tests: the committed vectors.

use alloc::vec::Vec;

pub fn hex(s: &str) -> Vec<u8> {
    let s: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    s.chunks(2)
        .map(|c| {
            let h = |x: u8| (x as char).to_digit(16).unwrap() as u8;
            h(c[0]) << 4 | h(c[1])
        })
        .collect()
}

pub fn milan_report() -> Vec<u8> {
    hex(include_str!("../testdata/snp/report_milan.hex"))
}
