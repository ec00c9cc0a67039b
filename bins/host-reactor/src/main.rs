//! `host-reactor`: the host side of the intent channel (see README).
use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!("host-reactor: not built yet (tracked by the intent-protocol issue)");
    ExitCode::from(1)
}
