//! Fuzz target: earshot::fuzzing::client_message (see src/fuzzing.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| earshot::fuzzing::client_message(data));
