//! `manager --lock-backend etcd` against a real single-member etcd on loopback.
#![allow(clippy::unwrap_used)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const MANAGER: &str = env!("CARGO_BIN_EXE_manager");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

struct Etcd {
    child: Child,
    endpoint: String,
    _dir: tempfile::TempDir,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Etcd {
    fn start() -> Option<Etcd> {
        let bin = std::env::var_os("SINGLETON_LOCK_TEST_ETCD")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/bin/etcd"));
        if !bin.exists() {
            eprintln!(
                "SKIP: no etcd at {} (run `bash .ci/install`)",
                bin.display()
            );
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let client = format!("http://127.0.0.1:{}", free_port());
        let peer = format!("http://127.0.0.1:{}", free_port());
        let child = Command::new(bin)
            .args(["--name", "m0", "--data-dir"])
            .arg(dir.path().join("data"))
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &format!("m0={peer}")])
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let etcd = Etcd {
            child,
            endpoint: client,
            _dir: dir,
        };
        let start = Instant::now();
        while !etcd.etcdctl(&["endpoint", "health"]).status.success() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "etcd not healthy"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(etcd)
    }

    fn etcdctl(&self, args: &[&str]) -> Output {
        Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoint))
            .args(args)
            .output()
            .unwrap()
    }

    fn manager(&self, name: &str) -> Command {
        let mut command = Command::new(MANAGER);
        command
            .args(["--lock-backend", "etcd", "--lock-ttl", "3s"])
            .args(["--etcd-endpoints", &self.endpoint, "--lock-name", name])
            .stdin(Stdio::null());
        command
    }
}

fn read_pid(path: &Path) -> u32 {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.ends_with('\n') {
            return text.trim().parse().unwrap();
        }
        assert!(start.elapsed() < Duration::from_secs(20), "no pid file");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn pid_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            !stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

#[test]
fn etcd_backend_second_instance_exits_3_and_a_lost_lock_stops_the_program_with_exit_4() {
    let Some(etcd) = Etcd::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let mut first = etcd.manager("jobs");
    first
        .args(["exec", "--", "sh", "-c"])
        .arg(format!("echo $$ > {}; exec sleep 60", pid_file.display()))
        .stderr(Stdio::piped());
    let first = first.spawn().unwrap();
    let program = read_pid(&pid_file);

    // A second node (process) is refused and told who holds the lock.
    let mut second = etcd.manager("jobs");
    second.args(["exec", "--", "true"]);
    let output = second.output().unwrap();
    let message = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{message}");
    assert!(
        message.contains(&format!("pid {}", first.id())),
        "{message}"
    );

    let mut status = etcd.manager("jobs");
    status.args(["--json", "lock", "status"]);
    let output = status.output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["held"], true);
    assert_eq!(json["backend"], "etcd");
    assert_eq!(json["holder"]["pid"], first.id());

    // An operator deletes the lock key: the holder has lost it and must stop its program.
    let deleted = etcd.etcdctl(&["del", "--prefix", "/singleton-lock/jobs/"]);
    assert!(deleted.status.success());
    assert_eq!(String::from_utf8_lossy(&deleted.stdout).trim(), "1");
    let output = first.wait_with_output().unwrap();
    let message = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(4), "{message}");
    assert!(message.contains("lost the lock"), "{message}");
    assert!(!pid_alive(program), "the program outlived the lost lock");

    // Free again: the next instance runs.
    let mut again = etcd.manager("jobs");
    again.args(["exec", "--", "true"]);
    assert_eq!(again.output().unwrap().status.code(), Some(0));
}

#[test]
fn etcd_backend_unreachable_cluster_is_a_clear_error() {
    let mut command = Command::new(MANAGER);
    command
        .args(["--lock-backend", "etcd", "--etcd-endpoints"])
        .arg(format!("http://127.0.0.1:{}", free_port()))
        .args(["exec", "--", "true"]);
    let output = command.output().unwrap();
    let message = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{message}");
    assert!(message.contains("unreachable"), "{message}");

    let mut command = Command::new(MANAGER);
    command.args(["--lock-backend", "etcd", "exec", "--", "true"]);
    assert_eq!(command.output().unwrap().status.code(), Some(2));
}

#[test]
fn a_lost_lock_stops_the_program_even_when_stderr_is_gone() {
    let Some(etcd) = Etcd::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let mut command = etcd.manager("gone");
    command
        .args(["exec", "--", "sh", "-c"])
        .arg(format!("echo $$ > {}; exec sleep 60", pid_file.display()))
        .stderr(Stdio::piped());
    let mut manager = command.spawn().unwrap();
    let program = read_pid(&pid_file);
    // Whoever read the manager's stderr (a log pipe) is gone: writes to it fail with EPIPE.
    drop(manager.stderr.take());
    let deleted = etcd.etcdctl(&["del", "--prefix", "/singleton-lock/gone/"]);
    assert!(deleted.status.success());
    let start = Instant::now();
    while pid_alive(program) && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let survived = pid_alive(program);
    let _ = manager.kill();
    let _ = manager.wait();
    if survived {
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_raw(program as i32).unwrap(),
            rustix::process::Signal::KILL,
        );
    }
    assert!(
        !survived,
        "the program kept running after the lock was lost"
    );
}
