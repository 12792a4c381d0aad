//! Fuzz target: earshot::fuzzing::upgrade (see src/fuzzing.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| earshot::fuzzing::upgrade(data));
