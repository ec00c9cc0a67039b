//! The documented exit codes of `manager`, and the one-line error convention.
use std::fmt::Display;
use std::io::Write as _;
use std::process::ExitCode;

/// Generic failure.
pub const ERROR: u8 = 1;
/// Bad command line.
pub const USAGE: u8 = 2;
/// Another instance holds the singleton lock.
pub const LOCK_HELD: u8 = 3;
/// The lock was lost while the program ran; the program was stopped.
pub const LOCK_LOST: u8 = 4;

/// Prints one clear line on stderr and returns the exit code.
pub fn fail(code: u8, message: impl Display) -> ExitCode {
    // Never eprintln!: with stderr closed or full it panics and the exit code becomes 101.
    let _ = writeln!(std::io::stderr(), "manager: {message}");
    ExitCode::from(code)
}

/// Maps a child's wait status to the shell convention: its code, or 128+N for signal N.
pub fn from_status(status: std::process::ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code & 0xff).unwrap_or(u8::MAX),
        (None, Some(signal)) => u8::try_from(128 + (signal & 0x7f)).unwrap_or(u8::MAX),
        (None, None) => ERROR,
    }
}
