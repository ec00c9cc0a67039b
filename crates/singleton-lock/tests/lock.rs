//! Real-kernel tests of the local (flock) backend.
//!
//! This binary has its own tiny runner (`harness = false`): when `SINGLETON_LOCK_TEST_CHILD` is
//! set it is not a test run but one of the child processes the tests spawn (racers, holders).
//! Arguments: an optional substring filter; `--list` lists the tests.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use singleton_lock::{LockError, LockFile, Verification};

const CHILD_ENV: &str = "SINGLETON_LOCK_TEST_CHILD";
const PATH_ENV: &str = "SINGLETON_LOCK_TEST_PATH";
const GO_ENV: &str = "SINGLETON_LOCK_TEST_GO";
const HOLD_MS_ENV: &str = "SINGLETON_LOCK_TEST_HOLD_MS";

/// `tests![a, b]` → `&[("a", a), ("b", b)]`.
macro_rules! tests {
    ($($f:ident),* $(,)?) => {
        &[$((stringify!($f), $f as fn())),*]
    };
}

#[cfg(feature = "etcd")]
mod etcd_tests;

type Test = (&'static str, fn());

const TESTS: &[Test] = tests![
    twenty_processes_race_exactly_one_wins,
    sigkill_of_holder_frees_the_lock_at_once,
    blocking_acquire_waits_for_release,
    timeout_is_respected,
    acquire_timeout_succeeds_when_freed,
    symlink_at_lock_path_is_refused,
    unsafe_directories_are_refused,
    unsafe_lock_files_are_refused,
    missing_directory_is_created_private,
    garbage_record_is_not_believed,
    release_clears_record_and_keeps_file,
    fd_is_cloexec_unless_asked,
    backend_trait_over_local_lock,
];

fn main() -> ExitCode {
    if let Ok(mode) = std::env::var(CHILD_ENV) {
        return child(&mode);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        #[cfg(feature = "etcd")]
        for (name, _) in etcd_tests::TESTS {
            println!("{name}: test");
        }
        for (name, _) in TESTS {
            println!("{name}: test");
        }
        return ExitCode::SUCCESS;
    }
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    #[cfg(feature = "etcd")]
    let all: Vec<&Test> = TESTS.iter().chain(etcd_tests::TESTS).collect();
    #[cfg(not(feature = "etcd"))]
    let all: Vec<&Test> = TESTS.iter().collect();
    let selected: Vec<&Test> = all
        .into_iter()
        .filter(|(name, _)| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str())))
        .collect();
    println!("\nrunning {} tests", selected.len());
    let mut failed = Vec::new();
    for (name, test) in selected {
        let start = Instant::now();
        let ok = std::panic::catch_unwind(test).is_ok();
        println!(
            "test {name} ... {} ({:.2}s)",
            if ok { "ok" } else { "FAILED" },
            start.elapsed().as_secs_f64()
        );
        if !ok {
            failed.push(*name);
        }
    }
    if failed.is_empty() {
        println!("\ntest result: ok");
        ExitCode::SUCCESS
    } else {
        println!("\ntest result: FAILED: {failed:?}");
        ExitCode::FAILURE
    }
}

/// Child process modes.
/// - `race`: wait for the GO file, `try_acquire` once, print `WON` or `HELD <pid> <verification>`;
///   the winner holds until its stdin closes.
/// - `hold`: `acquire`, print `LOCKED`, hold for HOLD_MS (or until killed).
fn child(mode: &str) -> ExitCode {
    #[cfg(feature = "etcd")]
    if mode.starts_with("etcd-") {
        return etcd_tests::child(mode);
    }
    let path = PathBuf::from(std::env::var_os(PATH_ENV).expect("lock path"));
    let lock = LockFile::new(path);
    let mut out = std::io::stdout();
    match mode {
        "race" => {
            let go = PathBuf::from(std::env::var_os(GO_ENV).expect("go file"));
            let give_up = Instant::now() + Duration::from_secs(60);
            while !go.exists() {
                assert!(Instant::now() < give_up, "no go signal");
                std::thread::sleep(Duration::from_micros(200));
            }
            match lock.try_acquire() {
                Ok(guard) => {
                    writeln!(out, "WON").expect("stdout");
                    out.flush().expect("stdout");
                    let mut sink = Vec::new();
                    let _ = std::io::stdin().read_to_end(&mut sink);
                    drop(guard);
                }
                Err(LockError::Held { holder, .. }) => {
                    let text = match holder {
                        Some(h) => format!("HELD {} {:?}", h.pid, h.verification),
                        None => "HELD none".to_string(),
                    };
                    writeln!(out, "{text}").expect("stdout");
                }
                Err(e) => writeln!(out, "ERR {e}").expect("stdout"),
            }
        }
        "hold" => {
            let guard = lock.acquire().expect("child acquire");
            writeln!(out, "LOCKED").expect("stdout");
            out.flush().expect("stdout");
            let ms = std::env::var(HOLD_MS_ENV)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(u64::MAX / 2);
            std::thread::sleep(Duration::from_millis(ms));
            drop(guard);
        }
        other => panic!("unknown child mode {other}"),
    }
    ExitCode::SUCCESS
}

/// A child process that is killed and reaped when dropped (also when a test panics).
struct Kid {
    child: Child,
    stdout: BufReader<ChildStdout>,
}

/// Tests that need a host feature print why they skip.
#[allow(dead_code)]
fn skip(why: &str) {
    println!("  SKIPPED: {why}");
}

impl Kid {
    fn spawn(mode: &str, path: &Path, extra: &[(&str, &str)]) -> Kid {
        let mut cmd = Command::new(std::env::current_exe().expect("current_exe"));
        cmd.env(CHILD_ENV, mode)
            .env(PATH_ENV, path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn child");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        Kid { child, stdout }
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read child line");
        line.trim_end().to_string()
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn sigkill_and_reap(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("wait");
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

fn twenty_processes_race_exactly_one_wins() {
    let dir = tempdir();
    let path = dir.path().join("race.lock");
    let go = dir.path().join("go");
    let go_str = go.to_str().expect("utf-8");
    let mut kids: Vec<Kid> = (0..20)
        .map(|_| Kid::spawn("race", &path, &[(GO_ENV, go_str)]))
        .collect();
    std::fs::write(&go, b"go").expect("go");
    let lines: Vec<String> = kids.iter_mut().map(Kid::line).collect();
    let winners: Vec<usize> = (0..lines.len()).filter(|&i| lines[i] == "WON").collect();
    assert_eq!(winners.len(), 1, "exactly one winner: {lines:?}");
    let winner_pid = kids[winners[0]].pid();
    for (i, line) in lines.iter().enumerate() {
        if i != winners[0] {
            assert_eq!(
                line,
                &format!("HELD {winner_pid} Verified"),
                "every loser names the verified winner: {lines:?}"
            );
        }
    }
    // Release the winner and let everyone exit.
    drop(kids[winners[0]].child.stdin.take());
    for kid in &mut kids {
        assert!(kid.child.wait().expect("wait").success());
    }
    assert!(
        LockFile::new(&path).try_acquire().is_ok(),
        "free after the race"
    );
}

fn sigkill_of_holder_frees_the_lock_at_once() {
    let dir = tempdir();
    let path = dir.path().join("kill.lock");
    let mut kid = Kid::spawn("hold", &path, &[]);
    assert_eq!(kid.line(), "LOCKED");
    let lock = LockFile::new(&path);
    let before = std::fs::read(&path).expect("read record");
    match lock.try_acquire() {
        Err(e @ LockError::Held { .. }) => {
            let h = e.holder().expect("holder reported");
            assert_eq!(h.pid, kid.pid());
            assert_eq!(h.verification, Verification::Verified);
            assert!(h.start_time.is_some() && h.boot_id.is_some() && h.since_unix.is_some());
            assert!(e.to_string().contains(&format!("pid {}", kid.pid())), "{e}");
        }
        other => panic!("expected Held, got {other:?}"),
    }
    assert_eq!(
        std::fs::read(&path).expect("read"),
        before,
        "the loser never touches the record"
    );

    kid.sigkill_and_reap();
    let stale = lock
        .holder()
        .expect("holder()")
        .expect("record left by the dead holder");
    assert_eq!(stale.pid, kid.pid());
    assert_eq!(stale.verification, Verification::NotRunning);
    let start = Instant::now();
    let guard = lock
        .try_acquire()
        .expect("free as soon as the holder is dead");
    assert!(
        start.elapsed() < Duration::from_millis(200),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(guard.holder().pid, std::process::id());
}

fn blocking_acquire_waits_for_release() {
    let dir = tempdir();
    let path = dir.path().join("wait.lock");
    let mut kid = Kid::spawn("hold", &path, &[(HOLD_MS_ENV, "400")]);
    assert_eq!(kid.line(), "LOCKED");
    let start = Instant::now();
    let guard = LockFile::new(&path).acquire().expect("acquire");
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(250),
        "returned before release: {waited:?}"
    );
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    assert_eq!(guard.holder().pid, std::process::id());
}

fn timeout_is_respected() {
    let dir = tempdir();
    let path = dir.path().join("timeout.lock");
    let _held = LockFile::new(&path).try_acquire().expect("first");
    let other = LockFile::new(&path);
    for timeout in [Duration::ZERO, Duration::from_millis(300)] {
        let start = Instant::now();
        match other.acquire_timeout(timeout) {
            Err(LockError::Timeout { waited, holder, .. }) => {
                let elapsed = start.elapsed();
                assert!(waited >= timeout, "waited {waited:?} < {timeout:?}");
                assert!(elapsed >= timeout, "{elapsed:?}");
                // Overshoot: at most one poll interval plus scheduling noise (+ record read).
                assert!(
                    elapsed < timeout + Duration::from_millis(250),
                    "{elapsed:?}"
                );
                assert_eq!(holder.map(|h| h.pid), Some(std::process::id()));
            }
            other => panic!("expected Timeout, got {other:?}"),
        }
    }
}

fn acquire_timeout_succeeds_when_freed() {
    let dir = tempdir();
    let path = dir.path().join("timeout-ok.lock");
    let mut kid = Kid::spawn("hold", &path, &[(HOLD_MS_ENV, "300")]);
    assert_eq!(kid.line(), "LOCKED");
    let start = Instant::now();
    let guard = LockFile::new(&path)
        .acquire_timeout(Duration::from_secs(10))
        .expect("freed within the timeout");
    assert!(
        start.elapsed() >= Duration::from_millis(150),
        "{:?}",
        start.elapsed()
    );
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(guard.holder().pid, std::process::id());
}

fn symlink_at_lock_path_is_refused() {
    let dir = tempdir();
    let target = dir.path().join("target");
    std::fs::write(&target, b"keep me").expect("target");
    let link = dir.path().join("link.lock");
    std::os::unix::fs::symlink(&target, &link).expect("symlink");
    let lock = LockFile::new(&link);
    assert!(matches!(lock.try_acquire(), Err(LockError::Symlink { .. })));
    assert!(matches!(lock.acquire(), Err(LockError::Symlink { .. })));
    assert!(matches!(lock.holder(), Err(LockError::Symlink { .. })));
    assert_eq!(std::fs::read(&target).expect("read"), b"keep me");

    let dangling = dir.path().join("dangling.lock");
    let nowhere = dir.path().join("created-through-link");
    std::os::unix::fs::symlink(&nowhere, &dangling).expect("symlink");
    assert!(matches!(
        LockFile::new(&dangling).try_acquire(),
        Err(LockError::Symlink { .. })
    ));
    assert!(
        !nowhere.exists(),
        "nothing created through a dangling symlink"
    );
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn unsafe_directories_are_refused() {
    let dir = tempdir();
    let ww = dir.path().join("world-writable");
    std::fs::create_dir(&ww).expect("mkdir");
    set_mode(&ww, 0o777);
    let err = LockFile::new(ww.join("x.lock"))
        .try_acquire()
        .expect_err("must refuse");
    assert!(matches!(err, LockError::UnsafeDirectory { .. }), "{err:?}");
    assert!(
        !ww.join("x.lock").exists(),
        "nothing created in an unsafe directory"
    );

    set_mode(&ww, 0o770);
    let err = LockFile::new(ww.join("x.lock"))
        .try_acquire()
        .expect_err("group-writable");
    assert!(matches!(err, LockError::UnsafeDirectory { .. }), "{err:?}");

    set_mode(&ww, 0o1777); // sticky, like /tmp
    LockFile::new(ww.join("x.lock"))
        .try_acquire()
        .expect("sticky dir is fine");

    if !rustix::process::geteuid().is_root() {
        println!("  (skipping the foreign-owner case: needs root to chown)");
        return;
    }
    // A directory symlink is fine if we own it, not if someone else does.
    let real = dir.path().join("real");
    std::fs::create_dir(&real).expect("mkdir");
    set_mode(&real, 0o700);
    let ours = dir.path().join("our-link");
    std::os::unix::fs::symlink(&real, &ours).expect("symlink");
    LockFile::new(ours.join("x.lock"))
        .try_acquire()
        .expect("our own dir symlink");
    let theirs = dir.path().join("their-link");
    std::os::unix::fs::symlink(&real, &theirs).expect("symlink");
    std::os::unix::fs::lchown(&theirs, Some(65534), Some(65534)).expect("lchown");
    let err = LockFile::new(theirs.join("y.lock"))
        .try_acquire()
        .expect_err("foreign link");
    assert!(matches!(err, LockError::UnsafeDirectory { .. }), "{err:?}");
    assert!(
        !real.join("y.lock").exists(),
        "nothing created through a foreign link"
    );

    let foreign = dir.path().join("foreign");
    std::fs::create_dir(&foreign).expect("mkdir");
    std::os::unix::fs::chown(&foreign, Some(65534), Some(65534)).expect("chown");
    let err = LockFile::new(foreign.join("x.lock"))
        .try_acquire()
        .expect_err("foreign owner");
    assert!(
        matches!(&err, LockError::UnsafeDirectory { reason, .. } if reason.contains("65534")),
        "{err:?}"
    );
}

fn unsafe_lock_files_are_refused() {
    let dir = tempdir();
    let sub = dir.path().join("d");
    std::fs::create_dir(&sub).expect("mkdir");
    set_mode(&sub, 0o700);

    let fifo = sub.join("fifo.lock");
    let status = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(status.success());
    let err = LockFile::new(&fifo).try_acquire().expect_err("fifo");
    assert!(matches!(err, LockError::UnsafeFile { .. }), "{err:?}");

    let linked = sub.join("linked.lock");
    std::fs::write(&linked, b"").expect("file");
    std::fs::hard_link(&linked, sub.join("second-name")).expect("link");
    let err = LockFile::new(&linked).try_acquire().expect_err("hard link");
    assert!(matches!(err, LockError::UnsafeFile { .. }), "{err:?}");

    if !rustix::process::geteuid().is_root() {
        println!("  (skipping the foreign-owner case: needs root to chown)");
        return;
    }
    let foreign = sub.join("foreign.lock");
    std::fs::write(&foreign, b"").expect("file");
    std::os::unix::fs::chown(&foreign, Some(65534), None).expect("chown");
    let err = LockFile::new(&foreign)
        .try_acquire()
        .expect_err("foreign owner");
    assert!(matches!(err, LockError::UnsafeFile { .. }), "{err:?}");
}

fn missing_directory_is_created_private() {
    let dir = tempdir();
    let path = dir.path().join("app").join("app.lock");
    let guard = LockFile::new(&path).try_acquire().expect("acquire");
    let dir_meta = std::fs::metadata(dir.path().join("app")).expect("dir");
    assert_eq!(dir_meta.mode() & 0o7777, 0o700);
    let file_meta = std::fs::metadata(&path).expect("file");
    assert_eq!(file_meta.mode() & 0o777, 0o600);
    assert_eq!(guard.path(), path);
}

fn garbage_record_is_not_believed() {
    let dir = tempdir();
    let path = dir.path().join("garbage.lock");
    let guard = LockFile::new(&path).try_acquire().expect("acquire");
    // Someone with write access scribbles over the record while we hold the lock.
    std::fs::write(
        &path,
        b"singleton-lock-holder 1\npid=1\nstart_time=x\nend\n",
    )
    .expect("write");
    match LockFile::new(&path).try_acquire() {
        Err(LockError::Held { holder, .. }) => assert_eq!(holder, None, "garbage is not a holder"),
        other => panic!("expected Held, got {other:?}"),
    }
    assert!(matches!(
        LockFile::new(&path).holder(),
        Err(LockError::InvalidRecord { .. })
    ));
    // A well-formed lie (pid 1 with a made-up start time) parses but does not verify.
    std::fs::write(
        &path,
        b"singleton-lock-holder 1\npid=1\nstart_time=1\nend\n",
    )
    .expect("write");
    let h = LockFile::new(&path)
        .holder()
        .expect("parses")
        .expect("some");
    assert_eq!(h.pid, 1);
    assert_ne!(h.verification, Verification::Verified);
    // Oversized: refused without reading it all.
    std::fs::write(&path, vec![b'a'; 1 << 20]).expect("write");
    assert!(matches!(
        LockFile::new(&path).holder(),
        Err(LockError::InvalidRecord { .. })
    ));
    drop(guard);
}

fn release_clears_record_and_keeps_file() {
    let dir = tempdir();
    let path = dir.path().join("release.lock");
    let lock = LockFile::new(&path);
    let guard = lock.try_acquire().expect("acquire");
    let me = lock.holder().expect("holder").expect("some");
    assert_eq!(me.pid, std::process::id());
    assert_eq!(me.verification, Verification::Verified);
    let ino = std::fs::metadata(&path).expect("meta").ino();
    guard.release().expect("release");
    let meta = std::fs::metadata(&path).expect("file still there");
    assert_eq!(meta.ino(), ino, "same inode: never unlinked");
    assert_eq!(meta.len(), 0, "record cleared on release");
    assert_eq!(lock.holder().expect("holder"), None);
    lock.try_acquire().expect("free again");
}

fn fd_is_cloexec_unless_asked() {
    use rustix::io::{FdFlags, fcntl_getfd};
    let dir = tempdir();
    let guard = LockFile::new(dir.path().join("a.lock"))
        .try_acquire()
        .expect("a");
    assert!(
        fcntl_getfd(guard.as_fd())
            .expect("getfd")
            .contains(FdFlags::CLOEXEC)
    );
    let inherit = LockFile::new(dir.path().join("b.lock"))
        .inherit_on_exec(true)
        .try_acquire()
        .expect("b");
    assert!(
        !fcntl_getfd(inherit.as_fd())
            .expect("getfd")
            .contains(FdFlags::CLOEXEC)
    );
    // into_fd keeps the lock past the guard.
    let fd = inherit.into_fd();
    assert!(matches!(
        LockFile::new(dir.path().join("b.lock")).try_acquire(),
        Err(LockError::Held { .. })
    ));
    drop(fd);
    LockFile::new(dir.path().join("b.lock"))
        .try_acquire()
        .expect("free once the fd is closed");
}

fn backend_trait_over_local_lock() {
    use singleton_lock::LockBackend;
    let dir = tempdir();
    let backend: Box<dyn LockBackend> = Box::new(LockFile::new(dir.path().join("dyn.lock")));
    assert!(backend.describe().contains("dyn.lock"));
    let held = backend.try_acquire().expect("acquire");
    assert_eq!(held.fencing_token(), None);
    assert!(!held.lost().is_lost(), "a flock cannot be lost");
    assert_eq!(held.holder().pid, std::process::id());
    let err = backend.try_acquire().expect_err("held");
    assert_eq!(err.holder().map(|h| h.pid), Some(std::process::id()));
    assert_eq!(
        backend.holder().expect("holder").map(|h| h.pid),
        Some(std::process::id())
    );
    held.release().expect("release");
    assert_eq!(backend.holder().expect("holder"), None);
}
