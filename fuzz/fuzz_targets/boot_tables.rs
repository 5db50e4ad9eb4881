#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| kms_fuzz::boot_tables(data));
