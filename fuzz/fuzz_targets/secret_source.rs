//! Fuzzes the secret-source specification parser (`SecretSource::from_str`). It never reads a
//! source: parsing must not panic, must bound what an error repeats, and must round-trip.
#![no_main]
use std::str::FromStr;

use fifo_secrets::{SecretError, SecretSource};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(spec) = std::str::from_utf8(data) else {
        return;
    };
    match SecretSource::from_str(spec) {
        Ok(source) => {
            // Display gives a specification that parses back to the same source.
            let again = SecretSource::from_str(&source.to_string());
            assert_eq!(again.ok().as_ref(), Some(&source));
        }
        Err(SecretError::BadSource { input, .. }) => {
            // Error text stays bounded whatever the input length.
            assert!(input.chars().count() <= 90, "error echoes too much: {} chars", input.len());
        }
        Err(other) => panic!("unexpected error kind from the parser: {other}"),
    }
});
