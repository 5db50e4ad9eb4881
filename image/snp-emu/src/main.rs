//! snp-emu: emulated AMD secure processor (test key chain, byte-exact SNP reports, derived keys)
fn main() {}
