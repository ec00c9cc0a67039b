#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Filled by the crate's owner: calls the crate's own parser on hostile bytes.
    let _ = data;
});
