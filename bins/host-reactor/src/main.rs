//! `host-reactor`: the host side of the intent channel (see README).
//!
//! Exit codes: 0 success (`run`: stopped by SIGTERM/SIGINT after finishing the intent in hand),
//! 1 configuration error (the key at fault is named) or `check` failed, 2 usage, 3 the reactor
//! stopped on a runtime fault (audit log or nonce ledger unwritable, intent dir removed, another
//! reactor holds the state dir).
#![forbid(unsafe_code)]

mod config;
mod units;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use intent_protocol::{BUILTIN, Reactor, ReactorError, StopSignal, json_schema};

/// Exit code: configuration error.
const EXIT_CONFIG: u8 = 1;
/// Exit code: runtime fault.
const EXIT_RUNTIME: u8 = 3;

/// Watch a directory for intent files from an unprivileged writer and run allow-listed
/// systemctl actions for them.
///
/// Exit codes: 0 success; 1 configuration error (names the key) or `check` failed; 2 usage;
/// 3 runtime fault (audit log or nonce ledger unwritable, intent dir gone, state dir busy).
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// Print data as JSON (`check`: the parsed config; `units`: {file name: contents}).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Watch and react until stopped (SIGTERM/SIGINT: finish the intent in hand, exit 0).
    Run {
        /// The TOML config file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Validate the config (and that systemctl and the intent dir exist); exit 0 or 1.
    Check {
        /// The TOML config file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Print the JSON Schema of every intent this reactor knows.
    Schema,
    /// Print the systemd .path and .service units for this config.
    Units {
        /// The TOML config file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Write host-reactor.path and host-reactor.service into DIR instead of printing them.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
        /// The host-reactor binary for ExecStart= (default: this binary).
        #[arg(long, value_name = "PATH")]
        exe: Option<PathBuf>,
    },
}

fn fail(code: u8, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("host-reactor: {message}");
    ExitCode::from(code)
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HOST_REACTOR_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config } => run(&config),
        Command::Check { config } => check(&config, cli.json),
        Command::Schema => {
            print!("{}", json_schema(&BUILTIN));
            ExitCode::SUCCESS
        }
        Command::Units {
            config,
            out_dir,
            exe,
        } => units(&config, out_dir, exe, cli.json),
    }
}

fn run(config: &std::path::Path) -> ExitCode {
    let loaded = match config::load(config) {
        Ok(l) => l,
        Err(e) => return fail(EXIT_CONFIG, e),
    };
    // The state dir and the audit log's dir are host-private: create them if missing. The
    // intent dir is shared with the writer; its owner and mode are the admin's choice.
    for (key, dir) in [
        ("state_dir", loaded.raw.state_dir.as_path()),
        (
            "audit_log",
            loaded
                .raw
                .audit_log
                .parent()
                .unwrap_or(std::path::Path::new("/")),
        ),
    ] {
        if let Err(e) = create_private_dir(dir) {
            return fail(
                EXIT_CONFIG,
                format!("key `{key}`: cannot create {}: {e}", dir.display()),
            );
        }
    }
    let (stop, sender) = match StopSignal::new() {
        Ok(pair) => pair,
        Err(e) => return fail(EXIT_RUNTIME, format!("stop socket: {e}")),
    };
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        let registered = sender
            .try_clone()
            .and_then(|tx| signal_hook::low_level::pipe::register(signal, tx).map(drop));
        if let Err(e) = registered {
            return fail(EXIT_RUNTIME, format!("signal handler: {e}"));
        }
    }
    let host = loaded.host.clone();
    let mut reactor = match Reactor::open(loaded.reactor_config(), &BUILTIN, host) {
        Ok(r) => r,
        Err(e) => {
            let code = match e {
                ReactorError::Setup { .. } | ReactorError::ClaimDirNotOurs { .. } => EXIT_CONFIG,
                _ => EXIT_RUNTIME,
            };
            return fail(code, e);
        }
    };
    tracing::info!(
        intent_dir = %loaded.raw.intent_dir.display(),
        audit_log = %loaded.raw.audit_log.display(),
        user_mode = loaded.raw.user_mode,
        "watching"
    );
    match reactor.run(&stop) {
        Ok(stats) => {
            tracing::info!(
                executed = stats.executed,
                failed = stats.failed,
                rejected = stats.rejected,
                coalesced = stats.coalesced,
                "stopped"
            );
            drop(sender);
            ExitCode::SUCCESS
        }
        Err(e) => fail(EXIT_RUNTIME, e),
    }
}

fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

fn check(config: &std::path::Path, json: bool) -> ExitCode {
    let loaded = match config::load(config).and_then(|l| config::check_environment(&l).map(|()| l))
    {
        Ok(l) => l,
        Err(e) => return fail(EXIT_CONFIG, e),
    };
    if json {
        match serde_json::to_string_pretty(&loaded.raw) {
            Ok(text) => println!("{text}"),
            Err(e) => return fail(EXIT_CONFIG, e),
        }
    } else {
        println!(
            "config {} is valid: {} unit(s), {} target(s), vessel {}",
            loaded.path.display(),
            loaded.host.allowed_units.len(),
            loaded.host.switch_targets.len(),
            loaded
                .host
                .vessel_unit
                .as_ref()
                .map_or("(none)".to_owned(), ToString::to_string)
        );
    }
    ExitCode::SUCCESS
}

fn units(
    config: &std::path::Path,
    out_dir: Option<PathBuf>,
    exe: Option<PathBuf>,
    json: bool,
) -> ExitCode {
    let loaded = match config::load(config) {
        Ok(l) => l,
        Err(e) => return fail(EXIT_CONFIG, e),
    };
    let exe = match exe.map_or_else(std::env::current_exe, Ok) {
        Ok(p) => p,
        Err(e) => return fail(EXIT_CONFIG, format!("cannot find this binary: {e}")),
    };
    let files = match units::render(&loaded, &exe) {
        Ok(f) => f,
        Err(e) => return fail(EXIT_CONFIG, e),
    };
    if let Some(dir) = out_dir {
        for (name, text) in &files {
            let path = dir.join(name);
            if let Err(e) = std::fs::write(&path, text) {
                return fail(EXIT_RUNTIME, format!("{}: {e}", path.display()));
            }
            println!("{}", path.display());
        }
    } else if json {
        let map: std::collections::BTreeMap<&str, &str> = files
            .iter()
            .map(|(n, t)| (n.as_str(), t.as_str()))
            .collect();
        match serde_json::to_string_pretty(&map) {
            Ok(text) => println!("{text}"),
            Err(e) => return fail(EXIT_RUNTIME, e),
        }
    } else {
        for (name, text) in &files {
            println!("### {name}\n{text}");
        }
    }
    ExitCode::SUCCESS
}
