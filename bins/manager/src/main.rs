//! `manager`: the orchestration manager (see the workspace README for the contract).
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod exit;
mod intent;
mod net;

/// Global options shared by every subcommand.
#[derive(Debug, clap::Args)]
pub struct Globals {
    /// Lock file of the local singleton lock.
    #[arg(long, global = true, value_name = "PATH")]
    pub lock_file: Option<PathBuf>,
    /// Print data as JSON.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Parser)]
#[command(name = "manager", version, about = "The orchestration manager")]
struct Cli {
    #[command(flatten)]
    globals: Globals,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Network bootstrap (Tailscale in userspace mode).
    Net(net::NetArgs),
    /// Send intents to the host reactor.
    Intent(intent::IntentArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() { ExitCode::from(exit::USAGE) } else { ExitCode::SUCCESS };
        }
    };
    match cli.command {
        Command::Net(args) => net::run(&cli.globals, args),
        Command::Intent(args) => intent::run(&cli.globals, args),
    }
}
