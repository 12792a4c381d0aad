//! Fuzz target: earshot::fuzzing::source_file (see src/fuzzing.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| earshot::fuzzing::source_file(data));
