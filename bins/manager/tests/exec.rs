//! `manager exec` and `manager lock status`, run as the real binary.
//!
//! Each test uses its own lock file, so they may run in parallel.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const MANAGER: &str = env!("CARGO_BIN_EXE_manager");

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn lock(&self) -> PathBuf {
        self.dir.path().join("manager.lock")
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn manager(&self) -> Command {
        let mut command = Command::new(MANAGER);
        command.arg("--lock-file").arg(self.lock());
        command.stdin(Stdio::null());
        command
    }
}

fn run(mut command: Command) -> Output {
    command.output().unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn pid_alive(pid: u32) -> bool {
    // A zombie counts as dead: it runs nothing.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z')
        }
        Err(_) => false,
    }
}

fn read_pid(path: &Path) -> u32 {
    let mut text = String::new();
    wait_for("pid file", Duration::from_secs(10), || {
        text = std::fs::read_to_string(path).unwrap_or_default();
        text.ends_with('\n')
    });
    text.trim().parse().unwrap()
}

#[test]
fn exit_code_of_the_program_is_returned() {
    let env = Env::new();
    let mut command = env.manager();
    command.args(["exec", "--", "sh", "-c", "exit 7"]);
    assert_eq!(run(command).status.code(), Some(7));
}

#[test]
fn a_program_killed_by_a_signal_gives_128_plus_n() {
    let env = Env::new();
    let mut command = env.manager();
    command.args(["exec", "--", "sh", "-c", "kill -TERM $$"]);
    assert_eq!(run(command).status.code(), Some(128 + 15));
}

#[test]
fn a_missing_program_is_127_and_usage_errors_are_2() {
    let env = Env::new();
    let mut command = env.manager();
    command.args(["exec", "--", "/nonexistent/program"]);
    assert_eq!(run(command).status.code(), Some(127));

    let mut command = env.manager();
    command.args(["exec", "--", "echo", "{secret:undefined}"]);
    let output = run(command);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("undefined"), "{}", stderr(&output));

    let mut command = env.manager();
    command.args(["exec", "--secret", "bad/name=env:X", "--", "true"]);
    assert_eq!(run(command).status.code(), Some(2));
}

#[test]
fn a_second_instance_exits_3_and_names_the_holder() {
    let env = Env::new();
    let ready = env.path("ready");
    let mut first = env.manager();
    first
        .args(["exec", "--", "sh", "-c"])
        .arg(format!("echo $$ > {}; sleep 30", ready.display()));
    let mut first = first.spawn().unwrap();
    read_pid(&ready);

    let mut second = env.manager();
    second.args(["exec", "--", "true"]);
    let output = run(second);
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(
        message.contains(&format!("pid {}", first.id())),
        "stderr should name holder pid {}: {message}",
        first.id()
    );

    let mut status = env.manager();
    status.args(["--json", "lock", "status"]);
    let output = run(status);
    assert_eq!(output.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["held"], true);
    assert_eq!(json["holder"]["pid"], first.id());

    kill(&mut first);
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn proc_file_contains(pid: u32, file: &str, needle: &[u8]) -> bool {
    let data = std::fs::read(format!("/proc/{pid}/{file}")).unwrap_or_default();
    data.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_secret_reaches_the_program_through_a_fifo_and_nowhere_else() {
    let env = Env::new();
    let secret = "s3cr3t-value-that-must-not-leak";
    let out = env.path("out");
    let pid_file = env.path("pid");
    let mut command = env.manager();
    command
        .env("TEST_SECRET", secret)
        .args([
            "exec",
            "--secret",
            "token=env:TEST_SECRET",
            "--",
            "sh",
            "-c",
        ])
        .arg(format!(
            "echo $$ > {pid}; read go < {go}; cat \"$1\" > {out}",
            pid = pid_file.display(),
            go = env.path("go").display(),
            out = out.display()
        ))
        .arg("sh")
        .arg("{secret:token}")
        .stderr(Stdio::piped());
    let go = env.path("go");
    rustix::fs::mkfifoat(rustix::fs::CWD, &go, rustix::fs::Mode::from_raw_mode(0o600)).unwrap();
    let child = command.spawn().unwrap();
    let pid = read_pid(&pid_file);

    // While the program runs, its argv holds only the FIFO path and its environ no secret.
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let fifo_arg = cmdline.split(|&b| b == 0).nth(4).unwrap().to_vec();
    let fifo_path = PathBuf::from(String::from_utf8(fifo_arg).unwrap());
    assert!(fifo_path.starts_with("/dev/shm") || fifo_path.starts_with("/run/user"));
    assert!(!proc_file_contains(pid, "cmdline", secret.as_bytes()));
    assert!(!proc_file_contains(pid, "environ", secret.as_bytes()));
    assert!(!proc_file_contains(pid, "environ", b"TEST_SECRET"));
    let meta = std::fs::symlink_metadata(&fifo_path).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(&meta.file_type()));
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    std::fs::OpenOptions::new()
        .write(true)
        .open(&go)
        .unwrap()
        .write_all(b"go\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), secret);
    assert!(!stderr(&output).contains(secret));
    assert!(!fifo_path.exists(), "the FIFO is removed after use");
}

#[test]
fn a_large_binary_secret_from_a_command_arrives_intact() {
    let env = Env::new();
    let source = env.path("blob");
    let blob: Vec<u8> = (0..1024 * 1024)
        .map(|i: u32| (i * 7 + i / 251) as u8)
        .collect();
    std::fs::write(&source, &blob).unwrap();
    let out = env.path("out");
    let mut command = env.manager();
    command
        .arg("exec")
        .arg("--secret")
        .arg(format!("blob=cmd:cat {}", source.display()))
        .args([
            "--",
            "sh",
            "-c",
            "cat \"$1\" > \"$2\"",
            "sh",
            "{secret:blob}",
        ])
        .arg(&out);
    let output = run(command);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        std::fs::read(&out).unwrap() == blob,
        "1 MiB binary secret differs"
    );
}

#[test]
fn a_program_that_never_reads_its_secret_does_not_hang_the_manager() {
    let env = Env::new();
    let start = Instant::now();
    let mut command = env.manager();
    command.env("UNREAD", "never-read").args([
        "exec",
        "--secret",
        "x=env:UNREAD",
        "--secret-timeout",
        "20s",
        "--",
        "sh",
        "-c",
        "exit 5",
        "sh",
        "{secret:x}",
    ]);
    let output = run(command);
    assert_eq!(output.status.code(), Some(5));
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "manager waited for a reader after the program exited"
    );
    let message = stderr(&output);
    assert!(
        message.contains("\"x\""),
        "warning names the secret: {message}"
    );
    assert!(!message.contains("never-read"));
}

#[test]
fn killing_the_manager_kills_the_program_and_its_group_and_frees_the_lock() {
    let env = Env::new();
    let pids = env.path("pids");
    let mut command = env.manager();
    command.args(["exec", "--", "sh", "-c"]).arg(format!(
        "sleep 300 & echo $! > {p}.bg; echo $$ > {p}; wait",
        p = pids.display()
    ));
    let mut manager = command.spawn().unwrap();
    let shell = read_pid(&pids);
    let background = read_pid(&env.path("pids.bg"));
    assert!(pid_alive(shell) && pid_alive(background));

    rustix::process::kill_process(
        rustix::process::Pid::from_raw(manager.id() as i32).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    manager.wait().unwrap();
    wait_for(
        "program and its group to die",
        Duration::from_secs(5),
        || !pid_alive(shell) && !pid_alive(background),
    );

    let mut again = env.manager();
    again.args(["exec", "--", "true"]);
    let mut output = run(again);
    // The watchdog may still be closing its copy of the lock for a few milliseconds.
    let start = Instant::now();
    while output.status.code() == Some(3) && start.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(50));
        let mut again = env.manager();
        again.args(["exec", "--", "true"]);
        output = run(again);
    }
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

#[test]
fn sigterm_to_the_manager_reaches_the_program() {
    let env = Env::new();
    let pid_file = env.path("pid");
    let mut command = env.manager();
    command.args(["exec", "--", "sh", "-c"]).arg(format!(
        "trap 'exit 42' TERM; echo $$ > {}; while :; do sleep 0.05; done",
        pid_file.display()
    ));
    let manager = command.stderr(Stdio::piped()).spawn().unwrap();
    read_pid(&pid_file);
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(manager.id() as i32).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let output = manager.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(42), "{}", stderr(&output));
}

/// ansible-core's `ansible-vault` reads the vault password from our FIFO.
#[test]
fn ansible_vault_decrypts_with_a_password_streamed_through_the_fifo() {
    let vault = std::env::var_os("MANAGER_TEST_ANSIBLE_VAULT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../.ci/cache/ansible-venv/bin/ansible-vault")
        });
    if !vault.exists() {
        eprintln!(
            "SKIP: ansible-vault not installed at {} (run `bash .ci/install`)",
            vault.display()
        );
        return;
    }
    let env = Env::new();
    let password = "correct horse battery staple";
    let password_file = env.path("setup-password");
    std::fs::write(&password_file, password).unwrap();
    let plain = env.path("vars.yml");
    std::fs::write(&plain, "db_password: hunter2\n").unwrap();
    let encrypted = Command::new(&vault)
        .arg("encrypt")
        .arg("--vault-password-file")
        .arg(&password_file)
        .arg(&plain)
        .env("ANSIBLE_LOCAL_TEMP", env.dir.path())
        .output()
        .unwrap();
    assert!(encrypted.status.success(), "{}", stderr(&encrypted));
    std::fs::remove_file(&password_file).unwrap();
    let mut head = String::new();
    std::fs::File::open(&plain)
        .unwrap()
        .read_to_string(&mut head)
        .unwrap();
    assert!(head.starts_with("$ANSIBLE_VAULT"));

    let mut command = env.manager();
    command
        .env("VAULT_PASS", password)
        .env("ANSIBLE_LOCAL_TEMP", env.dir.path())
        .args(["exec", "--secret", "vault=env:VAULT_PASS", "--"])
        .arg(&vault)
        .args(["view", "--vault-password-file", "{secret:vault}"])
        .arg(&plain);
    let output = run(command);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "db_password: hunter2\n"
    );
}

#[test]
fn lock_status_says_free_when_nobody_holds_it() {
    let env = Env::new();
    let mut status = env.manager();
    status.args(["--json", "lock", "status"]);
    let output = run(status);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["held"], false);
    assert_eq!(json["backend"], "local");
}

#[test]
fn a_symlink_at_the_lock_path_is_refused() {
    let env = Env::new();
    std::os::unix::fs::symlink(env.path("elsewhere"), env.lock()).unwrap();
    let mut command = env.manager();
    command.args(["exec", "--", "true"]);
    let output = run(command);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("symbolic link"),
        "{}",
        stderr(&output)
    );
    assert!(!env.path("elsewhere").exists(), "the symlink was followed");
}

#[test]
fn a_placeholder_inside_a_larger_argument_is_replaced() {
    let env = Env::new();
    let out = env.path("out");
    let mut command = env.manager();
    command
        .env("INNER", "inner-secret")
        .args(["exec", "--secret", "pw=env:INNER", "--", "sh", "-c"])
        .arg("cat \"${1#--password-file=}\" > \"$2\"")
        .arg("sh")
        .arg("--password-file={secret:pw}")
        .arg(&out);
    let output = run(command);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "inner-secret");
}

#[test]
fn background_processes_left_by_the_program_are_stopped_before_the_lock_is_released() {
    let env = Env::new();
    let bg = env.path("bg");
    let mut command = env.manager();
    command
        .args(["exec", "--", "sh", "-c"])
        .arg(format!("sleep 300 & echo $! > {}", bg.display()));
    let output = run(command);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let background = read_pid(&bg);
    assert!(
        !pid_alive(background),
        "the program's background child outlived the manager"
    );
}

#[test]
fn doctor_reports_every_check_as_json() {
    let env = Env::new();
    let mut command = env.manager();
    command.args(["--json", "doctor"]);
    let output = run(command);
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let checks = json["checks"].as_array().unwrap();
    let names: Vec<&str> = checks.iter().map(|c| c["name"].as_str().unwrap()).collect();
    for expected in [
        "userns",
        "landlock",
        "seccomp",
        "cgroups",
        "capabilities",
        "dumpable",
        "secret-memory",
        "ram-dirs",
        "lock",
    ] {
        assert!(
            names.contains(&expected),
            "missing check {expected}: {names:?}"
        );
    }
    let status_of = |name: &str| {
        checks
            .iter()
            .find(|c| c["name"] == name)
            .map(|c| c["status"].as_str().unwrap().to_owned())
            .unwrap()
    };
    // manager hardens itself at start: whatever the host, it must not be dumpable.
    assert_eq!(status_of("dumpable"), "ok");
    let failed = checks.iter().any(|c| c["status"] == "fail");
    assert_eq!(output.status.code(), Some(if failed { 1 } else { 0 }));
    assert_eq!(json["ok"], !failed);
}

/// The pid of `manager __watchdog` started by the manager `parent`.
fn watchdog_of(parent: u32) -> u32 {
    let mut found = None;
    wait_for("the watchdog process", Duration::from_secs(10), || {
        found = std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .find(|&pid| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                let ppid = stat
                    .rsplit(')')
                    .next()
                    .unwrap_or("")
                    .split_whitespace()
                    .nth(1);
                ppid == Some(parent.to_string().as_str())
                    && proc_file_contains(pid, "cmdline", b"__watchdog")
            });
        found.is_some()
    });
    found.unwrap()
}

#[test]
fn a_secret_given_but_not_used_still_never_reaches_the_program_environ() {
    let env = Env::new();
    let mut command = env.manager();
    command.env("UNUSED_SECRET", "unused-secret-value").args([
        "exec",
        "--secret",
        "x=env:UNUSED_SECRET",
        "--",
        "sh",
        "-c",
        "printf %s \"${UNUSED_SECRET-unset}\"",
    ]);
    let output = run(command);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "unset");
}

#[test]
fn the_watchdog_does_not_carry_an_env_secret_in_its_environ() {
    let env = Env::new();
    let secret = "watchdog-must-not-see-this";
    let pid_file = env.path("pid");
    let mut command = env.manager();
    command
        .env("WD_SECRET", secret)
        .args(["exec", "--secret", "t=env:WD_SECRET", "--", "sh", "-c"])
        .arg(format!(
            "cat \"$1\" > /dev/null; echo $$ > {}; sleep 30",
            pid_file.display()
        ))
        .arg("sh")
        .arg("{secret:t}");
    let mut manager = command.spawn().unwrap();
    read_pid(&pid_file);
    // The watchdog is exec'd fresh and is not hardened (dumpable): its environ is readable by
    // every process of the same uid, so it must not hold the secret.
    let watchdog = watchdog_of(manager.id());
    let leaked = proc_file_contains(watchdog, "environ", secret.as_bytes());
    kill(&mut manager);
    assert!(!leaked, "the watchdog's environ holds the env: secret");
}

#[test]
fn a_watchdog_whose_stderr_is_gone_still_kills_the_group_when_the_manager_dies() {
    let env = Env::new();
    let pids = env.path("pids");
    let mut command = env.manager();
    command
        .args(["exec", "--", "sh", "-c"])
        .arg(format!(
            "sleep 300 & echo $! > {p}.bg; echo $$ > {p}; wait",
            p = pids.display()
        ))
        .stderr(Stdio::piped());
    let mut manager = command.spawn().unwrap();
    let shell = read_pid(&pids);
    let background = read_pid(&env.path("pids.bg"));
    // Whoever read the manager's stderr (a log pipe) is gone: writes to it fail with EPIPE.
    drop(manager.stderr.take());
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(manager.id() as i32).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    manager.wait().unwrap();
    let start = Instant::now();
    while (pid_alive(shell) || pid_alive(background)) && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let survived = pid_alive(background);
    if survived {
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_raw(background as i32).unwrap(),
            rustix::process::Signal::KILL,
        );
    }
    assert!(
        !survived,
        "the program's background child outlived a SIGKILLed manager"
    );
}

#[test]
fn the_program_code_is_returned_even_when_stderr_is_gone() {
    let env = Env::new();
    let mut command = env.manager();
    command
        .env("UNREAD2", "never-read")
        .args(["exec", "--secret", "x=env:UNREAD2", "--", "sh", "-c"])
        .arg("read line; exit 5")
        .arg("sh")
        .arg("{secret:x}")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped());
    let mut manager = command.spawn().unwrap();
    // Whoever read the manager's stderr is gone before it warns about the unread secret.
    drop(manager.stderr.take());
    manager.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let status = manager.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(5),
        "a warning must not change the exit code"
    );
}

#[test]
fn a_secret_pasted_in_place_of_its_source_is_not_echoed_on_stderr() {
    let env = Env::new();
    for spec in [
        "API_KEY=sk-live-0123456789",
        "k=env:API_KEY=sk-live-0123456789",
    ] {
        let mut command = env.manager();
        command.args(["exec", "--secret", spec, "--", "true"]);
        let output = run(command);
        assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
        assert!(
            !stderr(&output).contains("sk-live-0123456789"),
            "{spec}: {}",
            stderr(&output)
        );
    }
}

#[test]
fn as_pid_1_of_a_container_leftovers_that_exited_do_not_stall_the_exit() {
    // A container entrypoint is PID 1: orphans are reparented to it and stay zombies (still
    // members of the group) until it reaps them.
    let probe = Command::new("unshare")
        .args(["-fp", "--mount-proc", "true"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        println!("SKIP: cannot create a PID namespace with unshare(1) here");
        return;
    }
    let env = Env::new();
    let start = Instant::now();
    let output = Command::new("unshare")
        .args(["-fp", "--mount-proc", MANAGER, "--lock-file"])
        .arg(env.lock())
        .args(["exec", "--", "sh", "-c", "sleep 0.1 & exit 3"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "took {:?}: {}",
        start.elapsed(),
        stderr(&output)
    );
}

#[test]
fn exit_codes_hold_when_stderr_cannot_be_written() {
    // /dev/full fails every write with ENOSPC: the message is lost, the code must not be.
    let env = Env::new();
    let full = || {
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap()
    };
    let mut command = env.manager();
    command
        .args(["exec", "--", "echo", "{secret:undefined}"])
        .stderr(full());
    assert_eq!(run(command).status.code(), Some(2));
    let mut command = env.manager();
    command
        .args(["exec", "--", "/nonexistent/program"])
        .stderr(full());
    assert_eq!(run(command).status.code(), Some(127));
}

#[test]
fn a_cmd_secret_helper_never_sees_another_secrets_env_variable() {
    // `cmd:env` makes the helper's whole environment the secret; the program writes it out.
    let env = Env::new();
    let out = env.path("out");
    let mut command = env.manager();
    command
        .env("OTHER_TOKEN", "other-secret-value")
        .args([
            "exec",
            "--secret",
            "a=env:OTHER_TOKEN",
            "--secret",
            "b=cmd:env",
        ])
        .args([
            "--",
            "sh",
            "-c",
            "cat \"$1\" > \"$2\"; cat \"$3\" > /dev/null",
        ])
        .args(["sh", "{secret:b}"])
        .arg(&out)
        .arg("{secret:a}");
    let output = run(command);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let seen = std::fs::read_to_string(&out).unwrap();
    assert!(
        seen.contains("PATH="),
        "the helper's environment was captured: {seen}"
    );
    assert!(
        !seen.contains("other-secret-value"),
        "cmd: helper saw another secret"
    );
    assert!(!seen.contains("OTHER_TOKEN"));
}
