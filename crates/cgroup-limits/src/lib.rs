//! Memory, CPU and pids limits per workload on cgroup v1 and v2, with usage, OOM detection and teardown.
//!
//! This crate is being built; see the workspace README for its planned contract.
#![forbid(unsafe_code)]

/// The crate's name, for diagnostics.
pub const CRATE_NAME: &str = "cgroup-limits";
