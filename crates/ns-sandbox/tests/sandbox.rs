//! The builder API on the real kernel: layers really on (read from inside), the
//! `before_start` hook, timeouts, errors.
use std::cell::Cell;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ns_sandbox::{Error, Layer, Net, Outcome, Profile, Sandbox};

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// A work dir the mapped uid can write (root callers map to the dir's owner).
fn work() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    if is_root() {
        std::os::unix::fs::chown(dir.path(), Some(4242), Some(4242)).expect("chown");
    }
    dir
}

fn shell(script: &str, work: &Path) -> ns_sandbox::SandboxBuilder {
    Sandbox::builder("/bin/sh")
        .args(["-c", script])
        .profile(Profile::Shell)
        .work_dir(work)
}

fn read(work: &Path, name: &str) -> String {
    std::fs::read_to_string(work.join(name)).unwrap_or_default()
}

#[test]
fn every_layer_is_on_inside() {
    let w = work();
    let mut child = shell(
        "cat /proc/self/status > /work/status; cat /proc/self/mountinfo > /work/mountinfo; \
         cat /proc/self/uid_map > /work/uid_map; stat -f -c %T / > /work/rootfs; \
         readlink /proc/1/exe > /work/exe 2>&1; echo $$ > /work/pid; hostname > /work/host; \
         ls /proc/self/ns > /work/ns",
        w.path(),
    )
    .spawn()
    .expect("spawn");
    assert_eq!(child.wait().expect("wait"), Outcome::Exited(0));
    let status = read(w.path(), "status");
    assert!(status.contains("CapEff:\t0000000000000000"), "{status}");
    assert!(status.contains("CapBnd:\t0000000000000000"), "{status}");
    assert!(status.contains("NoNewPrivs:\t1"), "{status}");
    assert!(status.contains("Seccomp:\t2"), "{status}");
    assert_eq!(read(w.path(), "rootfs").trim(), "tmpfs");
    assert_eq!(read(w.path(), "pid").trim(), "2");
    assert_eq!(read(w.path(), "host").trim(), "sandbox");
    let uid_map: Vec<String> = read(w.path(), "uid_map")
        .split_whitespace()
        .map(String::from)
        .collect();
    assert_eq!(uid_map[0], "0");
    assert_ne!(uid_map[1], "0", "never host root");
    let mountinfo = read(w.path(), "mountinfo");
    // Root is the tmpfs; nothing of the host's root file system is mounted at /.
    let root_line = mountinfo
        .lines()
        .find(|l| l.split_whitespace().nth(4) == Some("/"))
        .expect("root mount");
    assert!(root_line.contains("tmpfs"), "{root_line}");
    assert!(root_line.contains("nosuid") && root_line.contains("nodev"));
    let work_line = mountinfo
        .lines()
        .find(|l| l.split_whitespace().nth(4) == Some("/work"))
        .expect("work mount");
    assert!(
        work_line.contains(" rw,") && work_line.contains("nosuid"),
        "{work_line}"
    );
    let usr_line = mountinfo
        .lines()
        .find(|l| l.split_whitespace().nth(4) == Some("/usr/bin"))
        .expect("/usr/bin mount");
    assert!(usr_line.contains(" ro,"), "{usr_line}");
    assert!(!read(w.path(), "exe").starts_with('/'), "init's exe leaked");
    let report = child.report();
    assert_eq!(report.namespaces.len(), 7);
    assert!(
        report
            .mounts
            .iter()
            .any(|m| m.dest == "/work" && !m.read_only)
    );
}

#[test]
fn before_start_hook_runs_first_and_can_refuse() {
    let w = work();
    let seen = Rc::new(Cell::new(0u32));
    let seen2 = Rc::clone(&seen);
    let marker = w.path().join("ran");
    let mut child = shell("echo yes > /work/ran", w.path())
        .before_start(move |pid| {
            // The sandbox's first process exists (in its own user namespace) and has not
            // run the program yet.
            let uid_map = std::fs::read_to_string(format!("/proc/{pid}/uid_map"))
                .map_err(|e| e.to_string())?;
            assert!(
                !uid_map.trim().is_empty(),
                "maps are written before the hook"
            );
            seen2.set(pid);
            Ok(())
        })
        .spawn()
        .expect("spawn");
    assert_eq!(seen.get(), child.pid());
    assert_eq!(child.wait().expect("wait"), Outcome::Exited(0));
    assert!(marker.exists());

    let w = work();
    let err = shell("echo yes > /work/ran", w.path())
        .before_start(|_| Err("no cgroup for you".into()))
        .spawn()
        .expect_err("hook refused");
    assert!(matches!(err, Error::Hook(_)), "{err}");
    assert_eq!(err.layer(), Some(Layer::Hook));
    assert!(err.is_setup_failure());
    assert!(
        !w.path().join("ran").exists(),
        "nothing may run after a refusal"
    );
}

#[test]
fn timeout_then_kill_leaves_nothing() {
    let w = work();
    let mut child = shell("sleep 30 & sleep 30", w.path())
        .spawn()
        .expect("spawn");
    let init = child.pid();
    let started = Instant::now();
    assert_eq!(
        child
            .wait_timeout(Some(Duration::from_millis(200)))
            .expect("wait"),
        None
    );
    assert!(started.elapsed() >= Duration::from_millis(150));
    child.kill().expect("kill");
    assert_eq!(child.wait().expect("wait"), Outcome::Signaled(9));
    assert!(!Path::new(&format!("/proc/{init}")).exists());
}

#[test]
fn errors_name_what_failed() {
    let err = Sandbox::builder("no-such-program-xyz")
        .spawn()
        .expect_err("missing");
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
    assert!(!err.is_setup_failure());
    let err = Sandbox::builder("/bin/true")
        .ro_bind("/etc/hostname", "/proc/evil")
        .spawn()
        .expect_err("bad dest");
    assert!(matches!(err, Error::Config(_)), "{err}");
    let err = Sandbox::builder("/bin/true")
        .work_dir("/no/such/dir")
        .spawn()
        .expect_err("missing work dir");
    assert!(err.to_string().contains("/no/such/dir"), "{err}");
    let err = Sandbox::builder("/bin/true")
        .ramdisk_size(0)
        .spawn()
        .expect_err("unlimited ramdisk");
    assert!(matches!(err, Error::Config(_)), "{err}");
    assert!("bogus".parse::<Profile>().is_err());
    assert!("bogus".parse::<Net>().is_err());
}

#[test]
fn ramdisk_is_size_limited_and_ro_binds_are_read_only() {
    let w = work();
    let extra = tempfile::tempdir().expect("tempdir");
    std::fs::write(extra.path().join("data"), "hello").expect("write");
    let mut child = shell(
        "cat /data/data > /work/copied; echo x > /data/new 2>/dev/null && echo wrote > /work/wrote; \
         head -c 16777216 /dev/zero > /tmp/big 2>/dev/null || echo full > /work/full; \
         df -k / | tail -1 > /work/df",
        w.path(),
    )
    .ro_bind(extra.path(), "/data")
    .ramdisk_size(8 << 20)
    .spawn()
    .expect("spawn");
    assert_eq!(child.wait().expect("wait"), Outcome::Exited(0));
    assert_eq!(read(w.path(), "copied"), "hello");
    assert!(!w.path().join("wrote").exists(), "ro bind was writable");
    assert!(!extra.path().join("new").exists());
    assert_eq!(read(w.path(), "full").trim(), "full", "ramdisk not limited");
    let df = read(w.path(), "df");
    let size_kb: u64 = df
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("df size");
    assert_eq!(size_kb, 8192, "{df}");
}

#[test]
fn exit_status_and_environment() {
    let w = work();
    let mut child = shell("env > /work/env; exit 42", w.path())
        .env("GREETING", "hi")
        .spawn()
        .expect("spawn");
    assert_eq!(child.wait().expect("wait"), Outcome::Exited(42));
    assert_eq!(Outcome::Exited(42).code(), 42);
    assert_eq!(Outcome::Signaled(15).code(), 143);
    let env = read(w.path(), "env");
    assert!(env.contains("GREETING=hi"), "{env}");
    assert!(env.contains("HOME=/work"), "{env}");
    // Only what we passed (plus what the shell itself sets).
    for line in env.lines() {
        let key = line.split('=').next().unwrap_or_default();
        assert!(
            ["GREETING", "HOME", "PATH", "PWD", "SHLVL", "_", "OLDPWD"].contains(&key),
            "unexpected variable {line}"
        );
    }
}
