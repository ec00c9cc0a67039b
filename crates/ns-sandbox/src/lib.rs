//! Run a command in fresh Linux namespaces on a tmpfs root, with Landlock, seccomp and no capabilities; fails closed.
//!
//! This crate is being built; see the workspace README for its planned contract.
#![forbid(unsafe_code)]

/// The crate's name, for diagnostics.
pub const CRATE_NAME: &str = "ns-sandbox";
