//! `sandbox-run`: run a program in a fail-closed namespace sandbox (see README).
use std::process::ExitCode;

/// Exit code for "the sandbox could not be set up; nothing was run".
const EXIT_SETUP_FAILED: u8 = 125;

fn main() -> ExitCode {
    eprintln!("sandbox-run: not built yet (tracked by the ns-sandbox issue); nothing was run");
    ExitCode::from(EXIT_SETUP_FAILED)
}
