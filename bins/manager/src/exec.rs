//! `manager exec`: run a program holding the singleton lock, with secrets streamed through FIFOs.
//!
//! Order matters: parse and check everything (usage errors exit 2 before any side effect), take
//! the lock (exit 3 before any secret is read or prompted for), read every secret, create the
//! FIFOs, start the watchdog, then the program in its own process group with PDEATHSIG, then one
//! sender thread per secret. When the program exits the senders are cancelled (a secret nobody
//! read is a warning, not a hang), leftovers of its group are stopped, and the lock is released.
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::CommandExt as _;
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use fifo_secrets::{
    ReadOptions, SecretBytes, SecretDir, SecretError, SecretFifo, SecretSource, SendOptions,
};
use rustix::process::{Pid, Signal};

use crate::exit::{self, fail};
use crate::watchdog::{kill_group_and_wait, reap_group};

/// How long leftovers of the program's group get between SIGTERM and SIGKILL.
const LEFTOVER_GRACE: Duration = Duration::from_secs(2);

/// Arguments of `manager exec`.
#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// A secret for the program: NAME=SOURCE, where SOURCE is env:VAR | file:PATH | stdin |
    /// prompt | cmd:PROGRAM ARG… (no shell). `{secret:NAME}` in the program's arguments becomes
    /// the path of a FIFO that streams the secret once. Repeatable.
    // Parsed in `run`, not by clap: clap's error would repeat the value, which may be a secret
    // pasted in place of its source.
    #[arg(long = "secret", value_name = "NAME=SOURCE")]
    secrets: Vec<String>,
    /// How long each FIFO waits for the program to open it (it is removed after, with a warning).
    #[arg(long, value_name = "DUR", default_value = "60s", value_parser = crate::parse_duration)]
    secret_timeout: Duration,
    /// The program and its arguments (after `--`).
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "PROGRAM [ARG]…"
    )]
    command: Vec<OsString>,
}

/// One `--secret NAME=SOURCE`.
#[derive(Debug, Clone)]
pub struct SecretSpec {
    name: String,
    source: SecretSource,
}

fn valid_secret_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn parse_secret_spec(text: &str) -> Result<SecretSpec, String> {
    let (name, source) = text
        .split_once('=')
        .ok_or_else(|| "expected NAME=SOURCE".to_owned())?;
    if !valid_secret_name(name) {
        return Err(format!(
            "secret name {name:?}: use 1 to 64 of A-Z a-z 0-9 _ . -"
        ));
    }
    let source = SecretSource::from_str(source).map_err(|err| err.to_string())?;
    Ok(SecretSpec {
        name: name.to_owned(),
        source,
    })
}

const PLACEHOLDER_OPEN: &[u8] = b"{secret:";

/// One argument cut at its `{secret:NAME}` placeholders.
enum Piece<'a> {
    Text(&'a [u8]),
    Secret(String),
}

/// Cuts an argument into text and placeholders; an unterminated placeholder is an error.
fn pieces(arg: &OsStr) -> Result<Vec<Piece<'_>>, String> {
    let mut pieces = Vec::new();
    let mut rest = arg.as_bytes();
    while let Some(start) = find(rest, PLACEHOLDER_OPEN) {
        pieces.push(Piece::Text(&rest[..start]));
        let after = &rest[start + PLACEHOLDER_OPEN.len()..];
        let end = after
            .iter()
            .position(|&b| b == b'}')
            .ok_or_else(|| format!("unterminated {{secret:…}} in {:?}", arg))?;
        pieces.push(Piece::Secret(
            String::from_utf8_lossy(&after[..end]).into_owned(),
        ));
        rest = &after[end + 1..];
    }
    pieces.push(Piece::Text(rest));
    Ok(pieces)
}

/// The secret names used by `{secret:NAME}` placeholders in one argument, in order.
fn placeholders(arg: &OsStr) -> Result<Vec<String>, String> {
    Ok(pieces(arg)?
        .into_iter()
        .filter_map(|piece| match piece {
            Piece::Secret(name) => Some(name),
            Piece::Text(_) => None,
        })
        .collect())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Replaces every `{secret:NAME}` by the FIFO path of NAME (checked before: every
/// placeholder is terminated and defined).
fn substitute(arg: &OsStr, paths: &BTreeMap<String, OsString>) -> OsString {
    let mut out = Vec::with_capacity(arg.len());
    for piece in pieces(arg).unwrap_or_default() {
        match piece {
            Piece::Text(text) => out.extend_from_slice(text),
            Piece::Secret(name) => {
                if let Some(path) = paths.get(&name) {
                    out.extend_from_slice(path.as_bytes());
                }
            }
        }
    }
    OsString::from_vec(out)
}

/// Runs `manager exec`.
pub fn run(globals: &crate::Globals, args: ExecArgs) -> ExitCode {
    // 1. Check the command line completely before any side effect.
    let mut all_specs = Vec::new();
    for text in &args.secrets {
        match parse_secret_spec(text) {
            Ok(spec) => all_specs.push(spec),
            Err(message) => return fail(exit::USAGE, format_args!("--secret: {message}")),
        }
    }
    let mut specs: BTreeMap<String, SecretSource> = BTreeMap::new();
    for spec in &all_specs {
        if specs
            .insert(spec.name.clone(), spec.source.clone())
            .is_some()
        {
            return fail(
                exit::USAGE,
                format_args!("--secret {:?} is given twice", spec.name),
            );
        }
    }
    let mut used = BTreeMap::new();
    for arg in &args.command {
        match placeholders(arg) {
            Ok(names) => {
                for name in names {
                    if !specs.contains_key(&name) {
                        return fail(
                            exit::USAGE,
                            format_args!(
                                "{{secret:{name}}} is used but no --secret {name}=SOURCE is given"
                            ),
                        );
                    }
                    used.insert(name, ());
                }
            }
            Err(message) => return fail(exit::USAGE, message),
        }
    }
    if placeholders(&args.command[0])
        .map(|n| !n.is_empty())
        .unwrap_or(false)
    {
        return fail(exit::USAGE, "the program itself cannot be a {secret:…}");
    }
    for name in specs.keys() {
        if !used.contains_key(name) {
            tracing::warn!(
                "--secret {name:?} is not used by any {{secret:{name}}}; it is not read"
            );
        }
    }
    specs.retain(|name, _| used.contains_key(name));

    // 2. The lock, before any secret is read or prompted for.
    let held = match crate::singleton::hold(globals) {
        Ok(held) => held,
        Err(code) => return code,
    };

    // 3. Secrets into protected memory, FIFOs in a private RAM-backed dir.
    let mut secrets: Vec<(String, SecretBytes)> = Vec::new();
    // A `cmd:` helper must not see the other secrets' `env:` variables.
    let read_options = ReadOptions {
        cmd_env_remove: all_specs
            .iter()
            .filter_map(|spec| match &spec.source {
                SecretSource::Env(var) => Some(var.clone()),
                _ => None,
            })
            .collect(),
        ..ReadOptions::default()
    };
    for (name, source) in &specs {
        match source.read_with(&read_options) {
            Ok(bytes) => secrets.push((name.clone(), bytes)),
            // Ctrl-C at a prompt: the shell convention for SIGINT.
            Err(err @ SecretError::Interrupted { .. }) => {
                return fail(128 + 2, format_args!("secret {name:?}: {err}"));
            }
            Err(err) => {
                return fail(exit::ERROR, format_args!("secret {name:?}: {err}"));
            }
        }
    }
    let dir = if secrets.is_empty() {
        None
    } else {
        match SecretDir::create("manager") {
            Ok(dir) => Some(dir),
            Err(err) => return fail(exit::ERROR, format_args!("secrets directory: {err}")),
        }
    };
    let mut fifos: Vec<(String, SecretFifo, SecretBytes)> = Vec::new();
    let mut paths = BTreeMap::new();
    if let Some(dir) = &dir {
        for (name, bytes) in secrets {
            match dir.fifo(&name) {
                Ok(fifo) => {
                    paths.insert(name.clone(), fifo.path().as_os_str().to_owned());
                    fifos.push((name, fifo, bytes));
                }
                Err(err) => return fail(exit::ERROR, format_args!("secret {name:?}: {err}")),
            }
        }
    }
    let argv: Vec<OsString> = args
        .command
        .iter()
        .map(|arg| substitute(arg, &paths))
        .collect();

    // 4. The watchdog holds a copy of the lock and kills the group if we die.
    let mut watchdog = match Watchdog::start(held.lock_fd()) {
        Ok(watchdog) => watchdog,
        Err(err) => {
            return fail(
                exit::ERROR,
                format_args!("cannot start the watchdog: {err}"),
            );
        }
    };

    // Signals for the program are caught before it exists and forwarded once it does.
    let pgid = Arc::new(AtomicI32::new(0));
    if let Err(err) = forward_signals(Arc::clone(&pgid)) {
        watchdog.finish();
        return fail(
            exit::ERROR,
            format_args!("cannot install signal forwarding: {err}"),
        );
    }

    // 5. The program.
    let mut command = Command::new(&argv[0]);
    command.args(&argv[1..]);
    for spec in &all_specs {
        if let SecretSource::Env(var) = &spec.source {
            // The secret's own variable never reaches the program's environ, even when no
            // `{secret:NAME}` uses it.
            command.env_remove(var);
        }
    }
    let terminal = Terminal::foreground_stdin();
    let parent = rustix::process::getpid();
    let give_terminal = terminal.is_some();
    crate::sys::before_exec(&mut command, move || child_setup(parent, give_terminal));
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(err) => {
            watchdog.finish();
            let code = match err.kind() {
                std::io::ErrorKind::NotFound => 127,
                std::io::ErrorKind::PermissionDenied => 126,
                _ if err.raw_os_error() == Some(libc::ENOEXEC) => 126,
                _ => exit::ERROR,
            };
            return fail(code, format_args!("cannot run {:?}: {err}", argv[0]));
        }
    };
    let child_pid = Pid::from_child(&child);
    pgid.store(child_pid.as_raw_nonzero().get(), Ordering::SeqCst);
    watchdog.watch(child_pid);

    // 6. One sender per secret; cancelled when the program exits.
    let cancel = Arc::new(AtomicBool::new(false));
    let senders: Vec<(String, JoinHandle<Result<(), SecretError>>)> = fifos
        .into_iter()
        .map(|(name, fifo, bytes)| {
            let options = SendOptions {
                open_timeout: args.secret_timeout,
                write_timeout: args.secret_timeout,
                cancel: Some(Arc::clone(&cancel)),
            };
            let handle = std::thread::spawn(move || fifo.send(&bytes, &options).map(|_| ()));
            (name, handle)
        })
        .collect();

    // 7. A lock that can be lost (etcd) stops the program when it is: never two holders at once.
    let lost = Arc::new(AtomicBool::new(false));
    if let Some(signal) = held.lost() {
        let lost = Arc::clone(&lost);
        let spawned = std::thread::Builder::new()
            .name("lock-lost".into())
            .spawn(move || {
                let reason = signal.wait();
                lost.store(true, Ordering::SeqCst);
                // Not `eprintln!`: it panics when stderr is gone (EPIPE), before the stop.
                let _ = writeln!(
                    std::io::stderr(),
                    "manager: lost the lock ({reason}); stopping the program"
                );
                stop_group(child_pid, LEFTOVER_GRACE);
            });
        if let Err(err) = spawned {
            stop_group(child_pid, Duration::ZERO);
            let _ = wait_for(&mut child);
            watchdog.finish();
            return fail(exit::ERROR, format_args!("cannot watch the lock: {err}"));
        }
    }

    let status = wait_for(&mut child);
    // Take the terminal back first: with `stty tostop` any warning below would stop us.
    if let Some(terminal) = terminal {
        terminal.take_back();
    }
    cancel.store(true, Ordering::SeqCst);
    for (name, handle) in senders {
        // Warnings go out with `writeln!`, not `eprintln!`: a closed stderr (EPIPE) must not
        // panic here and turn the program's exit code into 101.
        let warning = match handle.join() {
            Ok(Ok(())) => continue,
            Ok(Err(SecretError::NoReader { .. } | SecretError::Cancelled { .. })) => {
                " was never read by the program; its FIFO was removed".to_owned()
            }
            Ok(Err(err)) => format!(": {err}"),
            Err(_) => ": sender thread panicked".to_owned(),
        };
        let _ = writeln!(
            std::io::stderr(),
            "manager: warning: secret {name:?}{warning}"
        );
    }
    reap_group(child_pid);
    if rustix::process::test_kill_process_group(child_pid).is_ok() {
        tracing::warn!("the program left processes behind; stopping its process group");
        stop_group(child_pid, LEFTOVER_GRACE);
    }
    watchdog.finish();
    drop(dir);
    drop(held);
    if lost.load(Ordering::SeqCst) {
        return fail(
            exit::LOCK_LOST,
            "the program was stopped because the lock was lost",
        );
    }
    match status {
        Ok(status) => ExitCode::from(exit::from_status(status)),
        Err(err) => fail(exit::ERROR, format_args!("waiting for the program: {err}")),
    }
}

fn wait_for(child: &mut Child) -> std::io::Result<std::process::ExitStatus> {
    loop {
        match child.wait() {
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Stops a process group: SIGTERM, up to `grace` for it to empty, then SIGKILL until it is.
fn stop_group(pgid: Pid, grace: Duration) {
    if rustix::process::kill_process_group(pgid, Signal::TERM).is_err() {
        return; // ESRCH: the group is empty.
    }
    let deadline = std::time::Instant::now() + grace;
    while std::time::Instant::now() < deadline {
        reap_group(pgid);
        if rustix::process::test_kill_process_group(pgid).is_err() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    kill_group_and_wait(pgid, Duration::from_secs(5));
}

/// In the child between fork and exec: own process group (with the terminal when we had it),
/// die with the manager, and refuse to start if the manager already died.
fn child_setup(parent: Pid, give_terminal: bool) -> std::io::Result<()> {
    rustix::process::setpgid(None, None)?;
    if give_terminal {
        crate::sys::give_terminal_to_own_group();
    }
    rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
    // The manager may have died before PDEATHSIG was armed: then our parent changed.
    if rustix::process::getppid() != Some(parent) {
        // from_raw_os_error does not allocate (async-signal-safe); spawn reports ESRCH.
        return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
    }
    Ok(())
}

/// The controlling terminal, when `manager` runs in its foreground process group.
struct Terminal {
    own_group: Pid,
}

impl Terminal {
    fn foreground_stdin() -> Option<Self> {
        let stdin = std::io::stdin();
        if !rustix::termios::isatty(&stdin) {
            return None;
        }
        let foreground = rustix::termios::tcgetpgrp(&stdin).ok()?;
        let own_group = rustix::process::getpgrp();
        (foreground == own_group).then_some(Terminal { own_group })
    }

    fn take_back(self) {
        crate::sys::set_foreground_group(self.own_group);
    }
}

/// Forwards TERM, INT, HUP, QUIT, USR1 and USR2 to the program's process group.
fn forward_signals(pgid: Arc<AtomicI32>) -> std::io::Result<()> {
    use signal_hook::consts::signal::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2};
    let mut signals =
        signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                // A signal that arrives while the program starts waits for its group to exist.
                let group = loop {
                    match Pid::from_raw(pgid.load(Ordering::SeqCst)) {
                        Some(group) => break group,
                        None => std::thread::sleep(Duration::from_millis(5)),
                    }
                };
                if let Some(signal) = Signal::from_named_raw(signal) {
                    let _ = rustix::process::kill_process_group(group, signal);
                }
            }
        })?;
    Ok(())
}

/// The running watchdog process and the pipe that tells it what to do.
struct Watchdog {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Watchdog {
    fn start(lock_fd: Option<std::os::fd::BorrowedFd<'_>>) -> std::io::Result<Self> {
        let exe = std::env::current_exe()?;
        // dup(2) gives a copy without close-on-exec: the watchdog inherits the lock. Nothing
        // else is spawned until it is closed again below.
        let inherited = lock_fd.map(rustix::io::dup).transpose()?;
        let mut command = Command::new(exe);
        command
            .arg("__watchdog")
            // The watchdog is not hardened (dumpable): its environ must not carry `env:` secrets.
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .process_group(0);
        let spawned = command.spawn();
        drop(inherited);
        let mut child = spawned?;
        let stdin = child.stdin.take();
        Ok(Watchdog { child, stdin })
    }

    fn watch(&mut self, pgid: Pid) {
        if let Some(stdin) = &mut self.stdin {
            let _ = writeln!(stdin, "pgid {}", pgid.as_raw_nonzero());
        }
    }

    /// Tells the watchdog all is well and waits for it to exit (releasing its lock copy).
    fn finish(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = writeln!(stdin, "done");
        }
        let _ = self.child.wait();
    }
}
