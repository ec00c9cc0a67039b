//! The watchdog: a small process that outlives a killed `manager` just long enough to kill the
//! program's process group, holding an inherited copy of the lock until the group is gone.
//!
//! Why a process: PDEATHSIG reaches only the program itself, not what it started in the
//! background. If `manager` is SIGKILLed, the watchdog sees EOF on its stdin pipe, kills the
//! whole group, waits for it to be empty, and exits; only then does the kernel drop the lock
//! (the watchdog's fd is a dup of the locked open file description). So the lock is never free
//! while the work goes on, and never held by an orphan.
//!
//! Protocol on stdin: `pgid <N>\n` once the program runs, then `done\n` when `manager` has
//! reaped it (the watchdog just exits), or EOF when `manager` died (kill the group).
use std::io::{BufRead, BufReader, Write as _};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

/// Arguments of the hidden `manager __watchdog`.
#[derive(Debug, clap::Args)]
pub struct WatchdogArgs {}

/// Runs the watchdog on stdin (see the module doc).
pub fn run(_args: WatchdogArgs) -> ExitCode {
    // Terminal signals are for manager to forward; the watchdog acts only on EOF.
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
        // Ignoring is safe to register from Rust: no handler code runs.
        let _ = signal_hook::flag::register_conditional_default(signal, ignored_flag());
    }
    let mut pgid = None;
    let mut lines = BufReader::new(std::io::stdin().lock()).lines();
    loop {
        match lines.next() {
            Some(Ok(line)) if line == "done" => return ExitCode::SUCCESS,
            Some(Ok(line)) => {
                if let Some(value) = line.strip_prefix("pgid ") {
                    pgid = value.trim().parse::<i32>().ok().and_then(Pid::from_raw);
                }
            }
            // EOF or a read error: manager is gone.
            Some(Err(_)) | None => break,
        }
    }
    if let Some(pgid) = pgid {
        // Never `eprintln!`: it panics when stderr is gone (EPIPE), and then nobody kills the group.
        let _ = writeln!(
            std::io::stderr(),
            "manager: watchdog: manager died; killing process group {}",
            pgid.as_raw_nonzero()
        );
        kill_group_and_wait(pgid, Duration::from_secs(10));
    }
    ExitCode::SUCCESS
}

/// A flag that never becomes true: `register_conditional_default` then only ever ignores.
fn ignored_flag() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false))
}

/// Reaps the group's zombies that are our own children. Orphans become our children only when
/// `manager` is PID 1 (a container entrypoint) or a subreaper; unreaped, a zombie keeps the group
/// "alive" for `kill(-pgid)` and every wait for it to empty runs to its timeout.
pub fn reap_group(pgid: Pid) {
    while let Ok(Some(_)) = rustix::process::waitpgid(pgid, rustix::process::WaitOptions::NOHANG) {}
}

/// SIGKILLs every process of the group and waits (bounded) until none is left.
pub fn kill_group_and_wait(pgid: Pid, timeout: Duration) -> bool {
    let start = Instant::now();
    loop {
        reap_group(pgid);
        if let Err(rustix::io::Errno::SRCH) =
            rustix::process::kill_process_group(pgid, Signal::KILL)
        {
            return true;
        }
        if start.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
