//! Hand a secret to a child process through a named pipe in a private RAM-backed directory.
//!
//! This crate is being built; see the workspace README for its planned contract.
#![forbid(unsafe_code)]

/// The crate's name, for diagnostics.
pub const CRATE_NAME: &str = "fifo-secrets";
