#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| kms_fuzz::certificate_request(data));
