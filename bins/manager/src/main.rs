//! `manager`: the orchestration manager.
//!
//! It holds the singleton lock while the work runs, hands secrets to the program through FIFOs,
//! brings up the tailnet, sends intents to the host, and checks the host (`doctor`). The contract
//! (flags, exit codes) is in the workspace README; `exit.rs` lists the codes.
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

mod doctor;
mod exec;
mod exit;
mod intent;
mod lock;
mod net;
mod singleton;
mod sys;
mod watchdog;

/// Which lock backend keeps `manager` a singleton.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LockBackend {
    /// flock(2) on `--lock-file`: one machine.
    Local,
    /// A lease-backed mutex in etcd: many machines (needs a build with the `etcd` feature).
    Etcd,
}

/// Global options shared by every subcommand.
#[derive(Debug, clap::Args)]
pub struct Globals {
    /// Lock file of the local singleton lock
    /// [default: $XDG_RUNTIME_DIR/manager/manager.lock, else /run/manager/manager.lock as root,
    /// else a private per-uid dir].
    #[arg(long, global = true, value_name = "PATH", env = "MANAGER_LOCK_FILE")]
    pub lock_file: Option<PathBuf>,
    /// Lock backend.
    #[arg(long, global = true, value_enum, default_value_t = LockBackend::Local, env = "MANAGER_LOCK_BACKEND")]
    pub lock_backend: LockBackend,
    /// etcd endpoints for `--lock-backend etcd`, comma-separated (http://127.0.0.1:2379,…).
    #[arg(
        long,
        global = true,
        value_name = "URL[,URL…]",
        value_delimiter = ',',
        env = "MANAGER_ETCD_ENDPOINTS"
    )]
    pub etcd_endpoints: Vec<String>,
    /// Name of the etcd lock (the key prefix).
    #[arg(long, global = true, value_name = "NAME", default_value = "manager")]
    pub lock_name: String,
    /// Lease TTL of the etcd lock; losing the lease for this long stops the program (exit 4).
    #[arg(long, global = true, value_name = "DUR", default_value = "10s", value_parser = parse_duration)]
    pub lock_ttl: Duration,
    /// CA certificate (PEM) to verify the etcd servers; enables TLS.
    #[arg(long, global = true, value_name = "PATH")]
    pub etcd_ca: Option<PathBuf>,
    /// Client certificate (PEM) for etcd mutual TLS.
    #[arg(long, global = true, value_name = "PATH", requires = "etcd_key")]
    pub etcd_cert: Option<PathBuf>,
    /// Client key (PEM) for etcd mutual TLS.
    #[arg(long, global = true, value_name = "PATH", requires = "etcd_cert")]
    pub etcd_key: Option<PathBuf>,
    /// etcd user name (its password comes from --etcd-password, never from argv).
    #[arg(long, global = true, value_name = "USER", requires = "etcd_password")]
    pub etcd_user: Option<String>,
    /// Where the etcd password comes from: env:VAR | file:PATH | stdin | prompt | cmd:PROGRAM ARG….
    #[arg(long, global = true, value_name = "SOURCE", requires = "etcd_user")]
    pub etcd_password: Option<String>,
    /// Print data as JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
}

/// Parses a human duration such as `10s`, `1m30s` or `250ms`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|err| format!("{text:?}: {err}"))
}

#[derive(Debug, Parser)]
#[command(
    name = "manager",
    version,
    about = "The orchestration manager: singleton lock, secrets through FIFOs, tailnet, intents",
    after_help = "Exit codes: 0 success (exec: the program's own code, 128+N if killed by signal N, \
126 not executable, 127 not found, 130 Ctrl-C at a secret prompt), 1 error, 2 usage, 3 another \
instance holds the lock, 4 the lock was lost while the program ran (the program was stopped)."
)]
struct Cli {
    #[command(flatten)]
    globals: Globals,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check that this host or container can run the toolkit safely.
    Doctor,
    /// Run a program holding the singleton lock, with secrets streamed through FIFOs.
    Exec(exec::ExecArgs),
    /// Inspect the singleton lock.
    Lock(lock::LockArgs),
    /// Network bootstrap (Tailscale in userspace mode).
    Net(net::NetArgs),
    /// Send intents to the host reactor.
    Intent(intent::IntentArgs),
    /// Internal: the watchdog that kills the program's group if the manager dies.
    #[command(name = "__watchdog", hide = true)]
    Watchdog(watchdog::WatchdogArgs),
    /// Internal: probes run in a fresh process by `doctor`.
    #[command(name = "__probe", hide = true)]
    Probe(doctor::ProbeArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() {
                ExitCode::from(exit::USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    init_tracing();
    if !matches!(cli.command, Command::Watchdog(_) | Command::Probe(_)) {
        // Not dumpable: same-uid processes cannot ptrace us or read our memory; no core dumps.
        if let Err(err) = fifo_secrets::harden_process() {
            return exit::fail(
                exit::ERROR,
                format_args!("cannot harden the process: {err}"),
            );
        }
    }
    match cli.command {
        Command::Doctor => doctor::run(&cli.globals),
        Command::Exec(args) => exec::run(&cli.globals, args),
        Command::Lock(args) => lock::run(&cli.globals, args),
        Command::Net(args) => net::run(&cli.globals, args),
        Command::Intent(args) => intent::run(&cli.globals, args),
        Command::Watchdog(args) => watchdog::run(args),
        Command::Probe(args) => doctor::probe(args),
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MANAGER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
