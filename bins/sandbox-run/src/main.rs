//! `sandbox-run`: run a program in a fail-closed namespace sandbox (see README).
//!
//! Exit codes: the program's own; 128+N if it was killed by signal N (137 also when the OOM
//! killer ended it); 124 timeout; 125 the sandbox could not be set up (nothing was run);
//! 126 the program is not executable; 127 not found.
#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

use clap::Parser;
use ns_sandbox::{Error, Net, Outcome, Profile, Sandbox};

mod cgroups;
mod size;

/// Exit code: timeout.
const EXIT_TIMEOUT: u8 = 124;
/// Exit code: the sandbox could not be set up; nothing was run.
const EXIT_SETUP_FAILED: u8 = 125;
/// Exit code: the program is not executable.
const EXIT_NOT_EXECUTABLE: u8 = 126;
/// Exit code: the program was not found.
const EXIT_NOT_FOUND: u8 = 127;
/// Exit code: the OOM killer ended the program (128 + SIGKILL).
const EXIT_OOM: u8 = 137;

/// Run PROGRAM in fresh namespaces on a tmpfs root, with Landlock, seccomp and no capabilities.
///
/// Every isolation layer is on; if one cannot be set up, nothing runs (exit 125) unless
/// --best-effort is given. Exit codes: the program's own; 128+N killed by signal N (137 for
/// OOM); 124 timeout; 125 sandbox set-up failed; 126 not executable; 127 not found.
#[derive(Debug, Parser)]
#[command(name = "sandbox-run", version)]
struct Cli {
    /// Host directory mounted read-write at /work (the only writable host path).
    #[arg(long, value_name = "DIR")]
    work: Option<PathBuf>,
    /// Extra read-only bind of host PATH (at DEST, default the same path); repeatable.
    #[arg(long, value_name = "PATH[:DEST]")]
    ro: Vec<String>,
    /// Read-only system paths the program needs: minimal, shell, python.
    #[arg(long, value_name = "NAME", default_value = "minimal")]
    profile: String,
    /// Size of the tmpfs root (K, M, G suffixes, binary).
    #[arg(long, value_name = "SIZE", default_value = "64M", value_parser = size::parse_size)]
    ramdisk: u64,
    /// Network: none (no interface up) or loopback (own netns with only lo, up).
    #[arg(long, value_name = "none|loopback", default_value = "loopback")]
    net: String,
    /// Host name inside.
    #[arg(long, value_name = "NAME", default_value = "sandbox")]
    hostname: String,
    /// Set an environment variable inside (the environment is clean otherwise: PATH, HOME).
    #[arg(long, value_name = "K=V")]
    env: Vec<String>,
    /// Pass this variable from our environment; repeatable.
    #[arg(long, value_name = "K")]
    keep_env: Vec<String>,
    /// Host uid to run as when sandbox-run runs as root [default: owner of --work when not
    /// root, else 65534]. An unprivileged caller always runs as itself.
    #[arg(long, value_name = "UID")]
    uid: Option<u32>,
    /// Map only the caller's own ids, even when /etc/subuid and /etc/subgid grant it a range
    /// (by default an unprivileged caller also maps that range with newuidmap/newgidmap).
    #[arg(long)]
    no_subid_range: bool,
    /// Kill the whole sandbox after DUR (e.g. 10s, 1m) and exit 124.
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// Write a JSON report of the isolation applied and the outcome to PATH ("-" = stdout).
    #[arg(long, value_name = "PATH|-")]
    report: Option<String>,
    /// Run even if some isolation layer is unavailable (the report lists what is missing).
    #[arg(long)]
    best_effort: bool,
    #[command(flatten)]
    cgroups: cgroups::CgroupArgs,
    /// The program and its arguments.
    #[arg(required = true, last = true, value_name = "PROGRAM [ARG]...")]
    command: Vec<OsString>,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|err| format!("{text:?}: {err}"))
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SANDBOX_RUN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let cli = Cli::parse();
    let started = Instant::now();
    let (code, report) = run(&cli, started);
    if let Some(dest) = &cli.report {
        let text = serde_json::to_string_pretty(&report).unwrap_or_else(|_| "{}".into());
        if dest == "-" {
            println!("{text}");
        } else if let Err(e) = std::fs::write(dest, text + "\n") {
            eprintln!("sandbox-run: cannot write the report to {dest}: {e}");
        }
    }
    ExitCode::from(code)
}

fn setup_failed(msg: String, started: Instant) -> (u8, serde_json::Value) {
    eprintln!("sandbox-run: {msg}; nothing was run");
    (
        EXIT_SETUP_FAILED,
        serde_json::json!({
            "outcome": {
                "result": "setup_failed",
                "error": msg,
                "exit_code": EXIT_SETUP_FAILED,
                "wall_time_ms": started.elapsed().as_millis() as u64,
            }
        }),
    )
}

fn run(cli: &Cli, started: Instant) -> (u8, serde_json::Value) {
    let builder = match build(cli) {
        Ok(b) => b,
        Err(msg) => return setup_failed(msg, started),
    };
    // Limits first: the program must start inside its cgroups.
    let mut missing_cgroup: Option<String> = None;
    let cgroup = match cgroups::prepare(&cli.cgroups, cli.best_effort) {
        Ok(c) => c.map(Rc::new),
        Err(msg) if cli.best_effort => {
            eprintln!("sandbox-run: {msg}; running without cgroup limits (--best-effort)");
            missing_cgroup = Some(msg);
            None
        }
        Err(msg) => return setup_failed(msg, started),
    };
    let builder = match &cgroup {
        Some(cg) => {
            let cg = Rc::clone(cg);
            builder.before_start(move |pid| cg.attach(pid))
        }
        None => builder,
    };
    let spawned = builder.spawn();
    let cgroup = cgroup.and_then(|cg| Rc::try_unwrap(cg).ok());
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            let code = match &e {
                Error::NotFound { .. } => EXIT_NOT_FOUND,
                Error::NotExecutable { .. } => EXIT_NOT_EXECUTABLE,
                _ => {
                    if let Some(cg) = cgroup {
                        cg.finish();
                    }
                    return setup_failed(e.to_string(), started);
                }
            };
            eprintln!("sandbox-run: {e}");
            let mut report = serde_json::json!({
                "outcome": {
                    "result": "exec_failed",
                    "error": e.to_string(),
                    "exit_code": code,
                    "wall_time_ms": started.elapsed().as_millis() as u64,
                }
            });
            if let Some(cg) = cgroup {
                report["cgroup"] = cg.finish();
            }
            return (code, report);
        }
    };
    tracing::debug!(pid = child.pid(), "sandbox started");
    forward_signals(child.signaller());
    let mut timed_out = false;
    let outcome = match child.wait_timeout(cli.timeout) {
        Ok(Some(o)) => Ok(o),
        Ok(None) => {
            timed_out = true;
            if let Err(e) = child.kill() {
                tracing::warn!("killing the sandbox: {e}");
            }
            if let Some(cg) = &cgroup {
                cg.kill_all();
            }
            child.wait()
        }
        Err(e) => Err(e),
    };
    let oom_killed = cgroup.as_ref().is_some_and(|cg| cg.oom_killed());
    let mut report = serde_json::to_value(child.report()).unwrap_or_default();
    let wall = started.elapsed().as_millis() as u64;
    let (code, outcome_json) = match outcome {
        // Also when the killed init could not be waited for (a parent that ignores SIGCHLD
        // makes the kernel reap it on its own): the sandbox was killed all the same.
        _ if timed_out => {
            eprintln!(
                "sandbox-run: timed out after {}; the sandbox was killed",
                humantime::format_duration(cli.timeout.unwrap_or_default())
            );
            (EXIT_TIMEOUT, serde_json::json!({"result": "timeout"}))
        }
        Err(e) => {
            eprintln!("sandbox-run: {e}");
            (
                EXIT_SETUP_FAILED,
                serde_json::json!({"result": "error", "error": e.to_string()}),
            )
        }
        // The program itself (or the shell it ran, 128+9) died of the OOM killer. A program
        // that exits on its own keeps its code even when something else in the group was
        // OOM-killed; the report's cgroup section still says oom_killed.
        Ok(o) if oom_killed && matches!(o, Outcome::Signaled(9) | Outcome::Exited(137)) => {
            eprintln!("sandbox-run: the program was killed by the OOM killer (--memory)");
            (
                EXIT_OOM,
                serde_json::json!({"result": "oom", "signal": libc_sigkill()}),
            )
        }
        Ok(Outcome::Exited(c)) => (
            u8::try_from(c).unwrap_or(1),
            serde_json::json!({"result": "exited", "exit_code": c}),
        ),
        Ok(Outcome::Signaled(s)) => (
            u8::try_from(128 + s).unwrap_or(255),
            serde_json::json!({"result": "signaled", "signal": s}),
        ),
        Ok(other) => (
            u8::try_from(other.code()).unwrap_or(1),
            serde_json::json!({"result": "other", "code": other.code()}),
        ),
    };
    let mut outcome_json = outcome_json;
    if let Some(o) = outcome_json.as_object_mut() {
        o.insert("exit_code".into(), code.into());
        o.insert("timed_out".into(), timed_out.into());
        o.insert("oom_killed".into(), oom_killed.into());
        o.insert("wall_time_ms".into(), wall.into());
        o.insert(
            "timeout_ms".into(),
            cli.timeout
                .map(|t| serde_json::Value::from(t.as_millis() as u64))
                .unwrap_or(serde_json::Value::Null),
        );
    }
    if let Some(msg) = missing_cgroup
        && let Some(missing) = report.get_mut("missing").and_then(|m| m.as_array_mut())
    {
        missing.push(serde_json::json!({"layer": "cgroup", "reason": msg}));
    }
    if let Some(r) = report.as_object_mut() {
        r.insert("outcome".into(), outcome_json);
        if let Some(cg) = cgroup {
            r.insert("cgroup".into(), cg.finish());
        }
    }
    // We exit right away: the kernel finishes tearing the namespaces down on its own.
    child.detach();
    (code, report)
}

/// SIGKILL's number, for the OOM outcome.
fn libc_sigkill() -> i32 {
    signal_hook::consts::SIGKILL
}

/// Forwards the signals a supervisor sends us (TERM, INT, HUP, QUIT, USR1, USR2) to the
/// sandbox's init, which passes them to the program.
fn forward_signals(target: ns_sandbox::Signaller) {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2};
    let mut signals = match signal_hook::iterator::Signals::new([
        SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2,
    ]) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot forward signals: {e}");
            return;
        }
    };
    let spawned = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if let Err(e) = target.send(sig) {
                    tracing::debug!("forwarding signal {sig}: {e}");
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot forward signals: {e}");
    }
}

fn build(cli: &Cli) -> Result<ns_sandbox::SandboxBuilder, String> {
    let (program, args) = cli
        .command
        .split_first()
        .ok_or_else(|| "no program given".to_string())?;
    let profile: Profile = cli.profile.parse().map_err(|e: Error| e.to_string())?;
    let net: Net = cli.net.parse().map_err(|e: Error| e.to_string())?;
    let mut b = Sandbox::builder(program.clone())
        .args(args.iter().cloned())
        .profile(profile)
        .net(net)
        .hostname(cli.hostname.clone())
        .ramdisk_size(cli.ramdisk)
        .best_effort(cli.best_effort)
        .subid_range(!cli.no_subid_range);
    if let Some(w) = &cli.work {
        b = b.work_dir(w.clone());
    }
    for spec in &cli.ro {
        let (src, dest) = match spec.split_once(':') {
            Some((s, d)) => (s, d),
            None => (spec.as_str(), spec.as_str()),
        };
        b = b.ro_bind(src, dest);
    }
    for kv in &cli.env {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| format!("--env {kv:?}: expected K=V"))?;
        b = b.env(k, v);
    }
    for k in &cli.keep_env {
        b = b.keep_env(k);
    }
    if let Some(uid) = cli.uid {
        b = b.host_uid(uid);
    }
    Ok(b)
}
