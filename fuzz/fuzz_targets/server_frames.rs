//! Fuzz target: earshot::fuzzing::server_frames (see src/fuzzing.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| earshot::fuzzing::server_frames(data));
