//! `manager net`: not built yet (tracked by its own issue).
use std::process::ExitCode;

/// Arguments of `manager net`.
#[derive(Debug, clap::Args)]
pub struct NetArgs {
    /// Arguments, accepted for forward compatibility.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    rest: Vec<String>,
}

/// Runs `manager net`.
pub fn run(_globals: &crate::Globals, args: NetArgs) -> ExitCode {
    eprintln!("manager: 'net' is not built yet (ignored: {:?})", args.rest);
    ExitCode::from(crate::exit::ERROR)
}
