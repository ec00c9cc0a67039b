//! A one-way, file-based, strictly typed JSON intent channel from an unprivileged writer to a privileged reactor.
//!
//! This crate is being built; see the workspace README for its planned contract.
#![forbid(unsafe_code)]

/// The crate's name, for diagnostics.
pub const CRATE_NAME: &str = "intent-protocol";
