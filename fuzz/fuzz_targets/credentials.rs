//! Fuzz target: earshot::fuzzing::credentials (see src/fuzzing.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| earshot::fuzzing::credentials(data));
