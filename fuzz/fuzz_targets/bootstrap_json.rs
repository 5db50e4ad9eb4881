#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| kms_fuzz::bootstrap_json(data));
