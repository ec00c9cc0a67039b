//! A minimal runner: `runner PREFIX` creates a group with 64M/0.5 CPU/100 pids, runs `sleep 60`
//! in it and prints `<child pid> <group dir>...` on one line, then waits for the child and
//! tears down. The kernel tests SIGKILL it mid-run to check `cleanup_stale`.
use std::io::Write;
use std::process::{Command, ExitCode, Stdio};

use cgroup_limits::{Limits, Options, WorkloadCgroup, cleanup_stale};

fn main() -> ExitCode {
    let prefix = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "runner".to_owned());
    let options = Options::new();
    if let Err(e) = cleanup_stale(&prefix, &options) {
        eprintln!("runner: stale clean-up: {e}");
    }
    let limits = Limits::none()
        .with_memory_max(64 << 20)
        .with_cpu_fraction(0.5)
        .with_pids_max(100);
    let group = match WorkloadCgroup::create(&prefix, &limits, &options) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("runner: {e}");
            return ExitCode::from(125);
        }
    };
    // `sh` waits on stdin before exec'ing sleep, so it is attached before the program runs.
    let mut child = match Command::new("sh")
        .args(["-c", "read _; exec sleep 60"])
        .stdin(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("runner: spawn: {e}");
            return ExitCode::from(127);
        }
    };
    if let Err(e) = group.attach(child.id()) {
        eprintln!("runner: {e}");
        return ExitCode::from(125);
    }
    drop(child.stdin.take());
    let dirs: Vec<String> = group
        .paths()
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{} {}", child.id(), dirs.join(" "));
    let _ = out.flush();
    drop(out);
    let status = child.wait();
    println!("usage {:?}", group.usage());
    match group.teardown() {
        Ok(()) if status.is_ok() => ExitCode::SUCCESS,
        Ok(()) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("runner: teardown: {e}");
            ExitCode::FAILURE
        }
    }
}
