//! Fuzz target: earshot::fuzzing::login_body (see src/fuzzing.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| earshot::fuzzing::login_body(data));
