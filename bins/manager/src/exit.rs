//! The documented exit codes of `manager`.

/// Generic failure.
pub const ERROR: u8 = 1;
/// Bad command line.
pub const USAGE: u8 = 2;
