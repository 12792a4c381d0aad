//! Fuzz target: earshot::fuzzing::ws_frames (see src/fuzzing.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| earshot::fuzzing::ws_frames(data));
