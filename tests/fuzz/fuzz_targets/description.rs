#![no_main]

#[path = "../harness.rs"]
#[allow(dead_code)] // each target uses one of its bodies
mod harness;

// GStreamer starts before the first input, so its one-time allocations are not taken for a
// leak of the input that happened to come first.
libfuzzer_sys::fuzz_target!(init: harness::init(), |data: &[u8]| harness::description(data));
