#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Placeholder until the parser lands; replaced by the crate's own parser call.
    let _ = data;
});
