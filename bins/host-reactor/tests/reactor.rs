//! The real `host-reactor` binary against a recording stand-in for systemctl.
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

const BIN: &str = env!("CARGO_BIN_EXE_host-reactor");

#[derive(Debug, Deserialize)]
struct Line {
    file: String,
    intent_id: Option<String>,
    nonce: Option<String>,
    outcome: String,
    reason: Option<String>,
    commands: Vec<Cmd>,
    exit_status: Option<i32>,
    coalesced_into: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Cmd {
    argv: Vec<String>,
    status: String,
}

/// One test's world: dirs, config, stand-in systemctl, the reactor process.
struct World {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    intents: PathBuf,
    config: PathBuf,
    child: Option<Child>,
    seq: u32,
}

impl World {
    /// `extra` is appended to the config's top level (before `[allow]`).
    fn new(user_mode: bool, extra: &str) -> Self {
        Self::new_in(std::env::temp_dir(), user_mode, extra)
    }

    fn new_in(base: PathBuf, user_mode: bool, extra: &str) -> Self {
        let tmp = tempfile::tempdir_in(base).expect("tempdir");
        let root = tmp.path().to_path_buf();
        let intents = root.join("intents");
        std::fs::create_dir(&intents).expect("mkdir");
        // The stand-in: one line per call, the argv joined by '|', then the environment size.
        let script = root.join("systemctl");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\n\
                 : > {root}/began\n\
                 if [ -e {root}/slow ]; then sleep \"$(cat {root}/slow)\"; fi\n\
                 {{ printf '%s|' \"$@\"; printf '\\nHOME=%s MARKER=%s\\n' \"$HOME\" \"$MARKER\"; }} >> {root}/calls\n\
                 exit \"$(cat {root}/exit 2>/dev/null || echo 0)\"\n",
                root = root.display()
            ),
        )
        .expect("write script");
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let config = root.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "intent_dir = \"{root}/intents\"\n\
                 audit_log = \"{root}/log/audit.jsonl\"\n\
                 state_dir = \"{root}/state\"\n\
                 max_intent_bytes = 1048576\n\
                 systemctl = \"{root}/systemctl\"\n\
                 user_mode = {user_mode}\n\
                 vessel_unit = \"vessel.service\"\n\
                 {extra}\n\
                 [allow]\n\
                 units = [\"vessel.service\", \"web.service\"]\n\
                 targets = [\"vision.target\", \"voice.target\"]\n",
                root = root.display()
            ),
        )
        .expect("write config");
        Self {
            _tmp: tmp,
            root,
            intents,
            config,
            child: None,
            seq: 0,
        }
    }

    fn start(&mut self) {
        let child = Command::new(BIN)
            .args(["run", "--config"])
            .arg(&self.config)
            .env("MARKER", "leaked")
            .env("HOME", "/root-leaked")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn host-reactor");
        self.child = Some(child);
    }

    fn pid(&self) -> i32 {
        i32::try_from(self.child.as_ref().expect("running").id()).expect("pid")
    }

    fn signal(&mut self, sig: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.pid()).expect("pid");
        rustix::process::kill_process(pid, sig).expect("kill");
    }

    /// Waits for the reactor to exit and returns its exit code.
    fn wait_exit(&mut self) -> Option<i32> {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status.code();
            }
            assert!(Instant::now() < deadline, "host-reactor did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn still_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().expect("try_wait").is_none())
    }

    /// Writes a file atomically (temp dot-file, rename) under `name`.
    fn drop_file(&mut self, name: &str, body: &[u8]) {
        let temp = self.intents.join(format!(".tmp-{name}"));
        std::fs::write(&temp, body).expect("write temp");
        std::fs::rename(&temp, self.intents.join(name)).expect("rename");
    }

    /// Writes an intent with a fresh nonce; returns its file name.
    fn intent(&mut self, id: &str, payload: &str) -> String {
        self.seq += 1;
        let name = format!("t{:05}.intent.json", self.seq);
        let body = format!(
            r#"{{"intent_id":"{id}","nonce":"{:032x}","payload":{payload}}}"#,
            0xabc0_0000 + self.seq
        );
        self.drop_file(&name, body.as_bytes());
        name
    }

    fn audit(&self) -> Vec<Line> {
        let text = std::fs::read_to_string(self.root.join("log/audit.jsonl")).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("audit line {l}: {e}")))
            .collect()
    }

    /// Waits until `file` has a final record (not `started`) and returns it.
    fn outcome(&self, file: &str) -> Line {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(line) = self
                .audit()
                .into_iter()
                .find(|l| l.file == file && l.outcome != "started")
            {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no audit record for {file}: {:?}",
                self.audit()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until every one of `files` has a final record; reads the log once per round.
    fn outcomes(&self, files: &[String]) -> std::collections::HashMap<String, Line> {
        let deadline = Instant::now() + Duration::from_secs(110);
        loop {
            let mut found: std::collections::HashMap<String, Line> = self
                .audit()
                .into_iter()
                .filter(|l| l.outcome != "started")
                .map(|l| (l.file.clone(), l))
                .collect();
            if files.iter().all(|f| found.contains_key(f)) {
                found.retain(|k, _| files.contains(k));
                return found;
            }
            let missing = files.iter().filter(|f| !found.contains_key(*f)).count();
            assert!(
                Instant::now() < deadline,
                "{missing} files without an audit record"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.root.join("calls"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// What is left in the intent and claim dirs once the reactor had a moment (the file is
    /// removed just after its audit record is written).
    fn left_in_intent_dir(&self) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = self.left_now();
            if left.is_empty() || Instant::now() > deadline {
                return left;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn left_now(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.intents)
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        let claimed = self.intents.join(".host-reactor-claimed");
        if let Ok(dir) = std::fs::read_dir(claimed) {
            names.extend(
                dir.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.starts_with('.'))
                    .map(|n| format!("claimed/{n}")),
            );
        }
        names
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn argv_tail(line: &Line) -> Vec<String> {
    line.commands
        .iter()
        .map(|c| c.argv[1..].join(" "))
        .collect()
}

#[test]
fn every_built_in_runs_its_exact_argv() {
    let mut w = World::new(true, "");
    w.start();
    let cases: [(&str, &str, &[&str]); 6] = [
        (
            "INTENT_RESTART_UNIT",
            r#"{"unit":"web.service"}"#,
            &["--user restart -- web.service"],
        ),
        (
            "INTENT_SWITCH_TARGET",
            r#"{"target":"voice.target"}"#,
            &[
                "--user stop -- vision.target",
                "--user start -- voice.target",
            ],
        ),
        ("INTENT_DAEMON_RELOAD", "{}", &["--user daemon-reload"]),
        (
            "INTENT_RESTART_VESSEL",
            "{}",
            &["--user restart -- vessel.service"],
        ),
        (
            "INTENT_SWAP_COVEN",
            r#"{"target_coven":"vision.target"}"#,
            &[
                "--user stop -- voice.target",
                "--user start -- vision.target",
            ],
        ),
        ("INTENT_RELOAD_RUNES", "{}", &["--user daemon-reload"]),
    ];
    let mut expected_calls = Vec::new();
    for (id, payload, argv) in cases {
        let file = w.intent(id, payload);
        let line = w.outcome(&file);
        assert_eq!(line.outcome, "executed", "{id}: {line:?}");
        assert_eq!(line.intent_id.as_deref(), Some(id));
        assert_eq!(argv_tail(&line), argv, "{id}");
        assert!(
            line.commands
                .iter()
                .all(|c| c.status == "exit status 0" && c.argv[0].ends_with("/systemctl"))
        );
        for a in argv {
            expected_calls.push(format!("{}|", a.replace(' ', "|")));
        }
    }
    // What the stand-in saw: exactly these argvs, and none of the reactor's environment.
    let calls = w.calls();
    let argvs: Vec<&String> = calls.iter().step_by(2).collect();
    assert_eq!(argvs, expected_calls.iter().collect::<Vec<_>>());
    for env in calls.iter().skip(1).step_by(2) {
        assert_eq!(env, "HOME= MARKER=", "the environment must be cleared");
    }
    assert!(
        w.left_in_intent_dir().is_empty(),
        "{:?}",
        w.left_in_intent_dir()
    );
    w.signal(rustix::process::Signal::TERM);
    assert_eq!(w.wait_exit(), Some(0));
}

#[test]
fn system_mode_has_no_user_flag_and_failures_are_audited_with_their_status() {
    let mut w = World::new(false, "");
    w.start();
    let file = w.intent("INTENT_RESTART_UNIT", r#"{"unit":"web.service"}"#);
    assert_eq!(argv_tail(&w.outcome(&file)), ["restart -- web.service"]);
    std::fs::write(w.root.join("exit"), "5").expect("write");
    let file = w.intent("INTENT_SWITCH_TARGET", r#"{"target":"voice.target"}"#);
    let line = w.outcome(&file);
    assert_eq!(line.outcome, "failed");
    assert_eq!(line.exit_status, Some(5));
    // The first stop failed: the start never ran.
    assert_eq!(argv_tail(&line), ["stop -- vision.target"]);
    assert!(w.still_running());
}

fn hostile_cases(w: &mut World) -> Vec<(String, &'static str)> {
    let mut cases = Vec::new();
    let n = |i: u32| format!("{:032x}", 0xdead_0000_u32 + i);
    let mut put = |w: &mut World, name: &str, body: String, reason: &'static str| {
        w.drop_file(name, body.as_bytes());
        cases.push((name.to_owned(), reason));
    };
    put(
        w,
        "h01.intent.json",
        format!(
            r#"{{"intent_id":"INTENT_FORMAT_DISK","nonce":"{}","payload":{{}}}}"#,
            n(1)
        ),
        "unknown_intent",
    );
    put(
        w,
        "h02.intent.json",
        format!(
            r#"{{"intent_id":"INTENT_DAEMON_RELOAD","nonce":"{}","payload":{{}},"command":"sh"}}"#,
            n(2)
        ),
        "unknown_key",
    );
    put(
        w,
        "h03.intent.json",
        format!(
            r#"{{"intent_id":"INTENT_DAEMON_RELOAD","nonce":"{}","nonce":"{}","payload":{{}}}}"#,
            n(3),
            n(33)
        ),
        "duplicate_key",
    );
    put(
        w,
        "h04.intent.json",
        format!(
            r#"{{"intent_id":"INTENT_RESTART_UNIT","nonce":"{}","payload":{{"unit":"web.service","unit":"sshd.service"}}}}"#,
            n(4)
        ),
        "duplicate_key",
    );
    put(
        w,
        "h05.intent.json",
        format!(
            r#"{{"intent_id":"INTENT_RESTART_UNIT","nonce":"{}","payload":{{"unit":"sshd.service"}}}}"#,
            n(5)
        ),
        "not_allowed",
    );
    put(
        w,
        "h06.intent.json",
        format!(
            r#"{{"intent_id":"INTENT_RESTART_UNIT","nonce":"{}","payload":{{"unit":"web.service; reboot"}}}}"#,
            n(6)
        ),
        "bad_name",
    );
    put(
        w,
        "h07.intent.json",
        format!(
            r#"{{"intent_id":"INTENT_RESTART_UNIT","nonce":"{}","payload":{{"unit":"$(touch /tmp/pwned).service"}}}}"#,
            n(7)
        ),
        "bad_name",
    );
    put(
        w,
        "h08.intent.json",
        format!(
            r#"{{"intent_id":"INTENT_RESTART_UNIT","nonce":"{}","payload":{{"unit":"--help.service"}}}}"#,
            n(8)
        ),
        "bad_name",
    );
    put(
        w,
        "h09.intent.json",
        format!(
            r#"{{"intent_id":"INTENT_DAEMON_RELOAD","nonce":"{}","payload":{{"pad":"{}"}}}}"#,
            n(9),
            "x".repeat(2 << 20)
        ),
        "oversize",
    );
    put(
        w,
        "h10.intent.json",
        format!(
            r#"{{"intent_id":"INTENT_DAEMON_RELOAD","nonce":"{}","payload":{{"a":{}}}}}"#,
            n(10),
            "[".repeat(200_000)
        ),
        "too_deep",
    );
    put(
        w,
        "h11.intent.json",
        "not json at all".to_owned(),
        "bad_json",
    );
    put(
        w,
        "h12 evil.json",
        format!(
            r#"{{"intent_id":"INTENT_DAEMON_RELOAD","nonce":"{}","payload":{{}}}}"#,
            n(12)
        ),
        "bad_file_name",
    );
    put(
        w,
        "h13.intent.json",
        format!(
            r#"{{"intent_id":"INTENT_RESTART_UNIT","nonce":"{}","payload":{{"unit":"web.service\u0000"}}}}"#,
            n(13)
        ),
        "bad_name",
    );
    put(
        w,
        "h14.intent.json",
        format!(
            r#"{{"intent_id":"INTENT_SWITCH_TARGET","nonce":"{}","payload":{{"target":"rescue.target"}}}}"#,
            n(14)
        ),
        "not_allowed",
    );
    // Entries that only raise IN_CREATE.
    std::os::unix::fs::symlink("/etc/shadow", w.intents.join("s01.intent.json")).expect("symlink");
    cases.push(("s01.intent.json".to_owned(), "symlink"));
    let fifo = w.intents.join("s02.intent.json");
    let status = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(status.success());
    cases.push(("s02.intent.json".to_owned(), "fifo"));
    let outside = w.root.join("outside.json");
    std::fs::write(
        &outside,
        format!(
            r#"{{"intent_id":"INTENT_DAEMON_RELOAD","nonce":"{}","payload":{{}}}}"#,
            n(20)
        ),
    )
    .expect("write");
    std::fs::hard_link(&outside, w.intents.join("s03.intent.json")).expect("hard link");
    cases.push(("s03.intent.json".to_owned(), "hardlink"));
    let dir = w.root.join("a-dir");
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::write(dir.join("inner"), "x").expect("write");
    std::fs::rename(&dir, w.intents.join("s04.intent.json")).expect("rename dir");
    std::fs::create_dir(w.intents.join("s06.intent.json")).expect("mkdir");
    cases.push(("s06.intent.json".to_owned(), "directory"));
    cases.push(("s04.intent.json".to_owned(), "directory"));
    std::os::unix::net::UnixListener::bind(w.intents.join("s05.intent.json")).expect("bind");
    cases.push(("s05.intent.json".to_owned(), "socket"));
    cases
}

#[test]
fn hostile_entries_are_refused_audited_and_the_next_intent_runs() {
    let mut w = World::new(false, "");
    w.start();
    let cases = hostile_cases(&mut w);
    for (file, reason) in &cases {
        let line = w.outcome(file);
        assert_eq!(line.outcome, "rejected", "{file}: {line:?}");
        assert_eq!(line.reason.as_deref(), Some(*reason), "{file}: {line:?}");
    }
    assert!(w.calls().is_empty(), "nothing may run: {:?}", w.calls());
    assert!(w.still_running());
    let file = w.intent("INTENT_RESTART_UNIT", r#"{"unit":"web.service"}"#);
    assert_eq!(w.outcome(&file).outcome, "executed");
    // Nothing left behind to re-trigger; /etc/shadow untouched; the outside file unharmed.
    assert!(
        w.left_in_intent_dir().is_empty(),
        "{:?}",
        w.left_in_intent_dir()
    );
    assert!(Path::new("/etc/shadow").exists() || !Path::new("/etc").exists());
    assert!(w.root.join("outside.json").exists());
    assert!(!Path::new("/tmp/pwned").exists());
}

#[test]
fn replayed_nonce_and_wrong_owner_are_refused() {
    let mut w = World::new(false, "writer_uid = 0");
    w.start();
    let body = br#"{"intent_id":"INTENT_DAEMON_RELOAD","nonce":"00112233445566778899aabbccddeeff","payload":{}}"#;
    w.drop_file("r1.intent.json", body);
    assert_eq!(w.outcome("r1.intent.json").outcome, "executed");
    w.drop_file("r2.intent.json", body);
    let line = w.outcome("r2.intent.json");
    assert_eq!(
        (line.outcome.as_str(), line.reason.as_deref()),
        ("rejected", Some("replayed_nonce"))
    );
    // Upper case is the same nonce.
    w.drop_file(
        "r3.intent.json",
        br#"{"intent_id":"INTENT_DAEMON_RELOAD","nonce":"00112233445566778899AABBCCDDEEFF","payload":{}}"#,
    );
    let line = w.outcome("r3.intent.json");
    assert_eq!(line.reason.as_deref(), Some("replayed_nonce"), "{line:?}");
    let temp = w.intents.join(".o1");
    std::fs::write(&temp, br#"{"intent_id":"INTENT_DAEMON_RELOAD","nonce":"ffff2233445566778899aabbccddeeff","payload":{}}"#).expect("write");
    if std::os::unix::fs::chown(&temp, Some(4242), None).is_err() {
        eprintln!("skipping the wrong-owner case: chown needs root");
        return;
    }
    std::fs::rename(&temp, w.intents.join("o1.intent.json")).expect("rename");
    let line = w.outcome("o1.intent.json");
    assert_eq!(line.reason.as_deref(), Some("wrong_owner"), "{line:?}");
    assert_eq!(w.calls().len(), 2, "one daemon-reload: {:?}", w.calls());
    // The ledger persists: a restart still refuses the nonce.
    w.signal(rustix::process::Signal::TERM);
    assert_eq!(w.wait_exit(), Some(0));
    w.start();
    w.drop_file("r4.intent.json", body);
    assert_eq!(
        w.outcome("r4.intent.json").reason.as_deref(),
        Some("replayed_nonce")
    );
}

#[test]
fn a_flood_is_rate_limited_coalesced_and_fully_audited() {
    // On the RAM-backed /dev/shm where there is one: the test is about the reactor, not the
    // disk's fdatasync latency (10,000 audit records are each fdatasync'ed).
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let mut w = World::new_in(base, false, "");
    // Written while the reactor is down: handled at start.
    let total = 10_000;
    let mut files = Vec::with_capacity(total);
    for _ in 0..total {
        files.push(w.intent("INTENT_RESTART_UNIT", r#"{"unit":"web.service"}"#));
    }
    let started = Instant::now();
    w.start();
    // More arrive while it works.
    let mut late = Vec::new();
    for _ in 0..200 {
        late.push(w.intent("INTENT_SWITCH_TARGET", r#"{"target":"voice.target"}"#));
    }
    let all: Vec<String> = files.iter().chain(&late).cloned().collect();
    let outcomes = w.outcomes(&all);
    for (f, line) in &outcomes {
        assert!(
            ["executed", "coalesced", "rejected"].contains(&line.outcome.as_str()),
            "{f}: {line:?}"
        );
        if line.outcome == "rejected" {
            assert_eq!(line.reason.as_deref(), Some("rate_limited"), "{line:?}");
        }
        if line.outcome == "coalesced" {
            assert!(line.coalesced_into.is_some());
        }
    }
    let elapsed = started.elapsed();
    let audit = w.audit();
    let executed = audit.iter().filter(|l| l.outcome == "executed").count();
    let coalesced = audit.iter().filter(|l| l.outcome == "coalesced").count();
    let limited = audit
        .iter()
        .filter(|l| l.reason.as_deref() == Some("rate_limited"))
        .count();
    eprintln!(
        "flood: {executed} executed, {coalesced} coalesced, {limited} rate-limited in {elapsed:?}"
    );
    // The bucket allows 10 per id at once (+1 per 2 s): the flood cannot turn into 10,000 restarts.
    let per_id_bound = 10 + usize::try_from(elapsed.as_secs()).unwrap_or(0) / 2 + 1;
    assert!(executed <= 2 * per_id_bound, "{executed} executed");
    assert!(limited > 0, "the rate limit must have refused some");
    assert!(w.calls().len() / 2 <= 2 * 2 * per_id_bound);
    assert!(w.still_running());
    // The reactor is still responsive: a different intent id runs at once.
    let file = w.intent("INTENT_DAEMON_RELOAD", "{}");
    assert_eq!(w.outcome(&file).outcome, "executed");
    assert!(w.left_in_intent_dir().is_empty());
}

#[test]
fn sigkill_mid_action_loses_nothing_and_runs_nothing_twice() {
    let mut w = World::new(false, "");
    std::fs::write(w.root.join("slow"), "2").expect("write");
    w.start();
    let first = w.intent("INTENT_RESTART_UNIT", r#"{"unit":"web.service"}"#);
    // Wait until the stand-in runs (after the "started" record), then kill -9 while it sleeps.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !w.root.join("began").exists() {
        assert!(Instant::now() < deadline, "never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        w.audit()
            .iter()
            .any(|l| l.file == first && l.outcome == "started")
    );
    let second = w.intent("INTENT_DAEMON_RELOAD", "{}");
    w.signal(rustix::process::Signal::KILL);
    assert_eq!(w.wait_exit(), None, "killed by a signal");
    // Written while it is down.
    let third = w.intent("INTENT_RESTART_VESSEL", "{}");
    std::fs::remove_file(w.root.join("slow")).expect("rm");
    std::thread::sleep(Duration::from_millis(2500)); // let the orphaned stand-in finish
    w.start();
    let first_line = w.outcome(&first);
    assert_eq!(
        (first_line.outcome.as_str(), first_line.reason.as_deref()),
        ("rejected", Some("interrupted")),
        "{first_line:?}"
    );
    assert_eq!(w.outcome(&second).outcome, "executed");
    assert_eq!(w.outcome(&third).outcome, "executed");
    let calls = w.calls();
    let restarts = calls
        .iter()
        .filter(|c| c.as_str() == "restart|--|web.service|")
        .count();
    assert_eq!(
        restarts, 1,
        "the interrupted restart ran once, not twice: {calls:?}"
    );
    let started = w
        .audit()
        .iter()
        .filter(|l| l.file == first && l.outcome == "started")
        .count();
    assert_eq!(started, 1);
    assert!(w.left_in_intent_dir().is_empty());
    let _ = first_line.nonce;
}

#[test]
fn sigterm_finishes_the_intent_in_hand_then_exits_0() {
    let mut w = World::new(false, "");
    std::fs::write(w.root.join("slow"), "1").expect("write");
    w.start();
    let file = w.intent("INTENT_RESTART_UNIT", r#"{"unit":"web.service"}"#);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !w
        .audit()
        .iter()
        .any(|l| l.file == file && l.outcome == "started")
    {
        assert!(Instant::now() < deadline, "never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    w.signal(rustix::process::Signal::TERM);
    assert_eq!(w.wait_exit(), Some(0));
    assert_eq!(w.outcome(&file).outcome, "executed");
}

#[test]
fn idle_reactor_uses_no_cpu() {
    let mut w = World::new(false, "");
    w.start();
    let file = w.intent("INTENT_DAEMON_RELOAD", "{}");
    assert_eq!(w.outcome(&file).outcome, "executed");
    let ticks = |pid: i32| -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
        let after_comm = &stat[stat.rfind(')').expect("comm") + 2..];
        let fields: Vec<&str> = after_comm.split(' ').collect();
        // utime and stime are fields 14 and 15 (1-based); 12 and 13 after "state".
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
    };
    std::thread::sleep(Duration::from_millis(300));
    let before = ticks(w.pid());
    std::thread::sleep(Duration::from_secs(5));
    let after = ticks(w.pid());
    eprintln!("idle: {before} -> {after} ticks over 5 s");
    assert_eq!(before, after, "CPU ticks while idle");
}

#[test]
fn check_schema_and_units() {
    let w = World::new(true, "writer_uid = 100000");
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&w.config)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bad = w.root.join("bad.toml");
    let text = std::fs::read_to_string(&w.config)
        .expect("read")
        .replace("user_mode", "shell = \"/bin/sh\"\nuser_mode");
    std::fs::write(&bad, text).expect("write");
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&bad)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("shell") && err.lines().count() == 1, "{err}");
    let out = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&bad)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let out = Command::new(BIN).arg("frobnicate").output().expect("run");
    assert_eq!(out.status.code(), Some(2));

    let out = Command::new(BIN).arg("schema").output().expect("run");
    assert!(out.status.success());
    let schema = String::from_utf8(out.stdout).expect("utf8");
    serde_json::from_str::<serde::de::IgnoredAny>(&schema).expect("schema is JSON");
    for id in [
        "INTENT_RESTART_UNIT",
        "INTENT_SWITCH_TARGET",
        "INTENT_DAEMON_RELOAD",
        "INTENT_RESTART_VESSEL",
        "INTENT_SWAP_COVEN",
        "INTENT_RELOAD_RUNES",
    ] {
        assert!(schema.contains(id), "{id}");
    }

    let unit_dir = w.root.join("units");
    std::fs::create_dir(&unit_dir).expect("mkdir");
    let out = Command::new(BIN)
        .args(["units", "--config"])
        .arg(&w.config)
        .arg("--out-dir")
        .arg(&unit_dir)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path_unit = std::fs::read_to_string(unit_dir.join("host-reactor.path")).expect("path unit");
    let service =
        std::fs::read_to_string(unit_dir.join("host-reactor.service")).expect("service unit");
    assert!(path_unit.contains(&format!("DirectoryNotEmpty={}", w.intents.display())));
    for line in [
        "StartLimitIntervalSec=0",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "RestrictAddressFamilies=AF_UNIX",
        &format!("ExecStart={BIN} run --config {}", w.config.display()),
        &format!(
            "ReadWritePaths={} {} {}",
            w.intents.display(),
            w.root.join("state").display(),
            w.root.join("log").display()
        ),
    ] {
        assert!(
            service.lines().any(|l| l == line),
            "missing {line:?} in\n{service}"
        );
    }
    // systemd's own verdict, where systemd-analyze exists.
    let Ok(verify) = Command::new("systemd-analyze")
        .arg("verify")
        .arg(unit_dir.join("host-reactor.path"))
        .arg(unit_dir.join("host-reactor.service"))
        .output()
    else {
        eprintln!("skipping systemd-analyze verify: not installed");
        return;
    };
    assert!(
        verify.status.success(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&verify.stderr)
    );
}

#[test]
fn sigkill_at_random_points_never_loses_or_repeats_an_intent() {
    let mut w = World::new(false, "");
    let mut files = Vec::new();
    let mut seed = u64::from(std::process::id()) ^ 0x9e37_79b9_7f4a_7c15;
    for round in 0..8 {
        w.start();
        for i in 0..5 {
            let target = if (round + i) % 2 == 0 {
                "voice.target"
            } else {
                "vision.target"
            };
            files.push(w.intent(
                "INTENT_SWITCH_TARGET",
                &format!(r#"{{"target":"{target}"}}"#),
            ));
        }
        // xorshift: a different kill point every round (0..120 ms after the writes).
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(seed % 120));
        w.signal(rustix::process::Signal::KILL);
        assert_eq!(w.wait_exit(), None);
    }
    w.start();
    let outcomes = w.outcomes(&files);
    let audit = w.audit();
    let mut started_per_nonce = std::collections::HashMap::new();
    for line in audit.iter().filter(|l| l.outcome == "started") {
        *started_per_nonce.entry(line.nonce.clone()).or_insert(0) += 1;
    }
    assert!(
        started_per_nonce.values().all(|n| *n == 1),
        "an intent started twice: {started_per_nonce:?}"
    );
    for (file, line) in &outcomes {
        assert!(
            line.outcome == "executed"
                || (line.outcome == "rejected"
                    && matches!(line.reason.as_deref(), Some("interrupted" | "rate_limited"))),
            "{file}: {line:?}"
        );
    }
    // Every stand-in run belongs to a distinct started intent (2 commands per switch).
    std::thread::sleep(Duration::from_millis(300));
    let runs = w.calls().len() / 2;
    assert!(
        runs <= 2 * started_per_nonce.len(),
        "{runs} runs for {} started",
        started_per_nonce.len()
    );
    assert!(
        w.left_in_intent_dir().is_empty(),
        "{:?}",
        w.left_in_intent_dir()
    );
}
