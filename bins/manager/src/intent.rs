//! `manager intent`: not built yet (tracked by its own issue).
use std::process::ExitCode;

/// Arguments of `manager intent`.
#[derive(Debug, clap::Args)]
pub struct IntentArgs {
    /// Arguments, accepted for forward compatibility.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    rest: Vec<String>,
}

/// Runs `manager intent`.
pub fn run(_globals: &crate::Globals, args: IntentArgs) -> ExitCode {
    eprintln!("manager: 'intent' is not built yet (ignored: {:?})", args.rest);
    ExitCode::from(crate::exit::ERROR)
}
