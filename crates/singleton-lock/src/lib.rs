//! One instance only: a kernel file lock released when the holder dies, that reports who holds it.
//!
//! This crate is being built; see the workspace README for its planned contract.
#![forbid(unsafe_code)]

/// The crate's name, for diagnostics.
pub const CRATE_NAME: &str = "singleton-lock";
