//! Real-kernel tests: groups are created, limits enforced and measured, and everything is
//! removed again. They need root (or a delegated subtree) and cgroups mounted; each test prints
//! why and returns where the host lacks what it needs. They run one at a time (`LOCK`): CPU and
//! memory measurements must not compete with each other.

use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cgroup_limits::{
    CgroupError, CgroupSetup, Limits, OomWatch, Options, SetupKind, WorkloadCgroup, cleanup_stale,
};

static LOCK: Mutex<()> = Mutex::new(());

fn lock() -> MutexGuard<'static, ()> {
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The host setup, or `None` (with the reason printed) when cgroups cannot be written here.
fn writable_setup(test: &str) -> Option<CgroupSetup> {
    let setup = match CgroupSetup::detect() {
        Ok(s) => s,
        Err(e) => {
            println!("{test}: skipped, no cgroup setup: {e}");
            return None;
        }
    };
    if !rustix::process::geteuid().is_root() {
        println!("{test}: skipped, needs root to create cgroups");
        return None;
    }
    println!("{test}: setup {setup}");
    Some(setup)
}

/// Creates a group with limits below our own cgroups. On a v2-only host whose cgroup cannot
/// pass controllers down to a child (our cgroup holds processes, or is the root, which this
/// crate never writes), prints why and gives `None`; everywhere else failure fails the test.
fn create_with_limits(prefix: &str, limits: &Limits) -> Option<WorkloadCgroup> {
    match WorkloadCgroup::create(prefix, limits, &Options::new()) {
        Ok(g) => Some(g),
        Err(e @ (CgroupError::LimitUnavailable { .. } | CgroupError::Write { .. }))
            if CgroupSetup::detect().is_ok_and(|s| s.kind() == SetupKind::Unified) =>
        {
            println!("{prefix}: skipped, v2 controllers cannot be delegated to a child here: {e}");
            None
        }
        Err(e) => panic!("create {prefix}: {e}"),
    }
}

/// Every directory named `<prefix>-…` anywhere in the cgroup mounts (depth-bounded walk).
fn listing(prefix: &str) -> BTreeSet<PathBuf> {
    fn walk(dir: &Path, depth: u32, prefix: &str, out: &mut BTreeSet<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let path = e.path();
            if e.file_name().to_string_lossy().starts_with(prefix) {
                out.insert(path.clone());
            }
            if depth > 0 {
                walk(&path, depth - 1, prefix, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(
        Path::new("/sys/fs/cgroup"),
        4,
        &format!("{prefix}-"),
        &mut out,
    );
    out
}

/// `sh -c 'read _; SCRIPT'`: the script starts only when stdin is closed, after attach.
fn gated(script: &str) -> Child {
    Command::new("sh")
        .arg("-c")
        .arg(format!("read _ ; {script}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sh")
}

fn release(child: &mut Child) {
    drop(child.stdin.take());
}

fn python() -> String {
    std::env::var("CGROUP_LIMITS_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Some(st) = child.try_wait().expect("try_wait") {
            return Some(st);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

#[test]
fn detect_names_this_hosts_setup() {
    let _g = lock();
    let Ok(setup) = CgroupSetup::detect() else {
        println!("skipped: no cgroup mounts");
        return;
    };
    let mounts = read(Path::new("/proc/self/mounts"));
    let has_v1 = mounts
        .lines()
        .any(|l| l.split(' ').nth(2) == Some("cgroup"));
    let has_v2 = mounts
        .lines()
        .any(|l| l.split(' ').nth(2) == Some("cgroup2"));
    let expected = match (has_v1, has_v2) {
        (true, true) => SetupKind::Hybrid,
        (true, false) => SetupKind::Legacy,
        _ => SetupKind::Unified,
    };
    assert_eq!(setup.kind(), expected, "{setup}");
    println!("setup: {setup} ({})", setup.kind().as_str());
}

#[test]
fn memory_hog_under_64m_is_oom_killed_and_detected() {
    let _g = lock();
    let Some(_setup) = writable_setup("memory hog") else {
        return;
    };
    let prefix = "cl-test-oom";
    assert!(listing(prefix).is_empty());
    let limits = Limits::none().with_memory_max(64 << 20);
    let Some(group) = create_with_limits(prefix, &limits) else {
        return;
    };
    let mut watch = OomWatch::new(&group).expect("oom watch");
    assert!(!watch.wait(Duration::from_millis(50)).expect("wait"));
    let mut child = gated(&format!(
        "exec {} -c 'a = bytearray(256 * 1024 * 1024); print(len(a))'",
        python()
    ));
    group.attach(child.id()).expect("attach");
    release(&mut child);
    let status = wait_timeout(&mut child, Duration::from_secs(30)).expect("hog did not end");
    assert_eq!(
        status.signal(),
        Some(9),
        "hog was not SIGKILLed: {status:?}"
    );
    assert!(group.oom_killed().expect("oom"), "OOM kill not counted");
    assert!(group.oom_kills().expect("oom") >= 1);
    assert!(
        watch.wait(Duration::from_secs(2)).expect("wait"),
        "no OOM event was signalled"
    );
    let usage = group.usage().expect("usage");
    let peak = usage.memory_peak.expect("peak");
    println!("OOM: peak {peak} bytes, usage {usage:?}");
    assert!(
        peak <= (64 << 20) + (1 << 20),
        "peak {peak} above the limit"
    );
    assert!(
        peak >= 32 << 20,
        "peak {peak}: the hog never got near the limit"
    );
    let paths: Vec<PathBuf> = group.paths().iter().map(|p| p.to_path_buf()).collect();
    group.teardown().expect("teardown");
    assert!(paths.iter().all(|p| !p.exists()));
    assert!(listing(prefix).is_empty(), "left: {:?}", listing(prefix));
}

#[test]
fn fork_bomb_under_32_pids_is_contained() {
    let _g = lock();
    let Some(_setup) = writable_setup("fork bomb") else {
        return;
    };
    let prefix = "cl-test-pids";
    assert!(listing(prefix).is_empty());
    let limits = Limits::none().with_pids_max(32);
    let Some(group) = create_with_limits(prefix, &limits) else {
        return;
    };
    let mut child = gated("while :; do sleep 30 & done");
    group.attach(child.id()).expect("attach");
    release(&mut child);
    std::thread::sleep(Duration::from_millis(1500));
    let usage = group.usage().expect("usage");
    let current = usage.pids_current.expect("pids.current");
    println!("fork bomb: pids.current {current}");
    assert!(current <= 32, "{current} processes despite pids.max 32");
    assert!(current >= 16, "the bomb did not run ({current} processes)");
    // The kernel refused forks (v1 and v2: `max` in pids.events counts them).
    let pids_dir = group
        .paths()
        .into_iter()
        .find(|p| p.join("pids.events").exists())
        .expect("pids group")
        .to_path_buf();
    let events = read(&pids_dir.join("pids.events"));
    let refused: u64 = events
        .lines()
        .find_map(|l| l.strip_prefix("max "))
        .and_then(|v| v.trim().parse().ok())
        .expect("pids.events max");
    assert!(refused > 0, "no fork was refused: {events}");
    // The host is unaffected: we can still start processes.
    let st = Command::new("true").status().expect("host can fork");
    assert!(st.success());
    let start = Instant::now();
    group.teardown().expect("teardown");
    println!("fork bomb teardown took {:?}", start.elapsed());
    assert!(wait_timeout(&mut child, Duration::from_secs(5)).is_some());
    assert!(listing(prefix).is_empty(), "left: {:?}", listing(prefix));
}

#[test]
fn busy_loop_under_quarter_cpu_uses_about_half_a_second() {
    let _g = lock();
    let Some(_setup) = writable_setup("cpu quota") else {
        return;
    };
    let prefix = "cl-test-cpu";
    let limits = Limits::none().with_cpu_fraction(0.25);
    let Some(group) = create_with_limits(prefix, &limits) else {
        return;
    };
    let mut child = gated("exec timeout 2 sh -c 'while :; do :; done'");
    group.attach(child.id()).expect("attach");
    release(&mut child);
    let st = wait_timeout(&mut child, Duration::from_secs(10)).expect("loop did not end");
    assert_eq!(
        st.code(),
        Some(124),
        "timeout did not stop the loop: {st:?}"
    );
    let cpu = group.usage().expect("usage").cpu_time.expect("cpu time");
    println!("2 s busy loop at 0.25 CPU used {cpu:?}");
    assert!(
        (Duration::from_millis(300)..=Duration::from_millis(800)).contains(&cpu),
        "cpu time {cpu:?} outside 0.3–0.8 s"
    );
    group.teardown().expect("teardown");
    assert!(listing(prefix).is_empty());
}

#[test]
fn v2_tree_create_attach_events_freeze_kill() {
    let _g = lock();
    let Some(setup) = writable_setup("v2 tree") else {
        return;
    };
    let Some(v2) = setup.v2_only() else {
        println!("v2 tree: skipped, no cgroup2 mount on this host");
        return;
    };
    let prefix = "cl-test-v2";
    let options = Options::new().setup(v2.clone());
    let group = WorkloadCgroup::create(prefix, &Limits::none(), &options).expect("create");
    assert_eq!(group.setup_kind(), SetupKind::Unified);
    let dir = group.paths()[0].to_path_buf();
    assert!(dir.join("cgroup.kill").exists());
    assert!(read(&dir.join("cgroup.events")).contains("populated 0"));
    let mut child = gated("exec sleep 60");
    group.attach(child.id()).expect("attach");
    assert!(read(&dir.join("cgroup.events")).contains("populated 1"));
    assert!(read(&dir.join("cgroup.procs")).contains(&child.id().to_string()));
    assert!(read(format!("/proc/{}/cgroup", child.id()).as_ref()).contains(group.name()));
    release(&mut child);
    // Freeze: cgroup.events says frozen once every member stopped.
    group.freeze().expect("freeze");
    let start = Instant::now();
    while !read(&dir.join("cgroup.events")).contains("frozen 1") {
        assert!(start.elapsed() < Duration::from_secs(2), "never frozen");
        std::thread::sleep(Duration::from_millis(10));
    }
    group.thaw().expect("thaw");
    let start = Instant::now();
    while !read(&dir.join("cgroup.events")).contains("frozen 0") {
        assert!(start.elapsed() < Duration::from_secs(2), "never thawed");
        std::thread::sleep(Duration::from_millis(10));
    }
    // CPU time comes from cpu.stat, which v2 groups have without the cpu controller.
    assert!(group.usage().expect("usage").cpu_time.is_some());
    // Not empty yet: the inotify wait times out.
    assert!(!group.wait_empty(Duration::from_millis(100)).expect("wait"));
    // cgroup.kill, then the inotify wait on cgroup.events sees `populated 0`.
    group.kill_all().expect("kill");
    assert!(group.wait_empty(Duration::from_secs(2)).expect("wait"));
    let st = wait_timeout(&mut child, Duration::from_secs(2)).expect("not killed");
    assert_eq!(st.signal(), Some(9));
    group.teardown().expect("teardown");
    assert!(!dir.exists());
    // Limits need controllers this tree may not have: strict is an error, nothing is left.
    let available = read(&v2_root(&v2).join("cgroup.controllers"));
    if !available.contains("memory") {
        let err =
            WorkloadCgroup::create(prefix, &Limits::none().with_memory_max(1 << 30), &options)
                .expect_err("memory limit without the memory controller");
        assert!(
            matches!(
                err,
                CgroupError::LimitUnavailable {
                    limit: "memory_max",
                    ..
                }
            ),
            "{err}"
        );
        let g = WorkloadCgroup::create(
            prefix,
            &Limits::none().with_memory_max(1 << 30),
            &options.clone().best_effort(true),
        )
        .expect("best effort");
        assert_eq!(g.applied().skipped.len(), 1);
        assert!(!g.missing().is_empty());
        g.teardown().expect("teardown");
    }
    assert!(listing(prefix).is_empty(), "left: {:?}", listing(prefix));
}

fn v2_root(setup: &CgroupSetup) -> PathBuf {
    match setup {
        CgroupSetup::Unified { root } => root.mount_point.clone(),
        _ => PathBuf::from("/sys/fs/cgroup"),
    }
}

#[test]
fn v1_teardown_uses_freezer_and_kills_every_descendant() {
    let _g = lock();
    let Some(setup) = writable_setup("v1 freezer teardown") else {
        return;
    };
    let Some(v1) = setup.v1_only() else {
        println!("v1 teardown: skipped, no v1 hierarchies");
        return;
    };
    let prefix = "cl-test-v1kill";
    let group =
        WorkloadCgroup::create(prefix, &Limits::none(), &Options::new().setup(v1)).expect("create");
    let mut child = gated("sleep 60 & sleep 60 & sleep 60 & wait");
    group.attach(child.id()).expect("attach");
    release(&mut child);
    std::thread::sleep(Duration::from_millis(200));
    let procs = group
        .paths()
        .first()
        .map(|p| read(&p.join("cgroup.procs")))
        .unwrap_or_default();
    assert!(
        procs.lines().count() >= 4,
        "children not in the group: {procs}"
    );
    let start = Instant::now();
    group.teardown().expect("teardown");
    println!("v1 freezer teardown took {:?}", start.elapsed());
    assert!(wait_timeout(&mut child, Duration::from_secs(2)).is_some());
    assert!(listing(prefix).is_empty(), "left: {:?}", listing(prefix));
}

#[test]
fn drop_tears_down() {
    let _g = lock();
    let Some(_setup) = writable_setup("drop") else {
        return;
    };
    let prefix = "cl-test-drop";
    let Some(group) = create_with_limits(prefix, &Limits::none().with_pids_max(10)) else {
        return;
    };
    let mut child = gated("exec sleep 60");
    group.attach(child.id()).expect("attach");
    assert!(!listing(prefix).is_empty());
    drop(group);
    let st = wait_timeout(&mut child, Duration::from_secs(2)).expect("not killed by drop");
    assert_eq!(st.signal(), Some(9));
    assert!(listing(prefix).is_empty(), "left: {:?}", listing(prefix));
}

#[test]
fn stale_groups_of_a_dead_runner_are_removed() {
    let _g = lock();
    let Some(setup) = writable_setup("stale") else {
        return;
    };
    let prefix = "cl-test-stale";
    // A pid that is certainly dead: a child that exited and was reaped.
    let mut dead = Command::new("true").spawn().expect("spawn");
    let dead_pid = dead.id();
    dead.wait().expect("wait");
    // Simulate a runner SIGKILLed mid-run: its groups exist and still hold a survivor.
    let live = WorkloadCgroup::create(prefix, &Limits::none(), &Options::new()).expect("create");
    let stale_name = format!("{prefix}-{dead_pid}-7");
    let mut stale_dirs = Vec::new();
    for p in live.paths() {
        let dir = p.parent().expect("parent").join(&stale_name);
        std::fs::create_dir(&dir).expect("mkdir stale");
        stale_dirs.push(dir);
    }
    let mut survivor = Command::new("sleep").arg("60").spawn().expect("spawn");
    for d in &stale_dirs {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(d.join("cgroup.procs"))
            .expect("open procs");
        f.write_all(survivor.id().to_string().as_bytes())
            .expect("attach survivor");
    }
    // Not ours: another prefix's group is never touched.
    let other = live.paths()[0]
        .parent()
        .expect("parent")
        .join(format!("cl-other-{dead_pid}-1"));
    std::fs::create_dir(&other).expect("mkdir other");
    let removed = cleanup_stale(prefix, &Options::new()).expect("cleanup");
    println!("setup {}: removed {removed:?}", setup.kind());
    assert_eq!(
        removed.iter().collect::<BTreeSet<_>>(),
        stale_dirs.iter().collect::<BTreeSet<_>>()
    );
    assert!(stale_dirs.iter().all(|d| !d.exists()));
    assert!(other.exists());
    std::fs::remove_dir(&other).expect("rmdir other");
    let st = wait_timeout(&mut survivor, Duration::from_secs(2)).expect("survivor not killed");
    assert_eq!(st.signal(), Some(9));
    // The live runner's group (our pid) is kept.
    assert!(live.paths().iter().all(|p| p.exists()));
    live.teardown().expect("teardown");
    assert!(listing(prefix).is_empty(), "left: {:?}", listing(prefix));
}

#[test]
fn names_and_roots_are_validated_before_anything_is_created() {
    let _g = lock();
    for bad in [
        "",
        "a/b",
        "..",
        ".",
        "../x",
        "cgroup.procs",
        "memory.max",
        "tasks",
        ".x",
    ] {
        let err = WorkloadCgroup::create(bad, &Limits::none(), &Options::new())
            .expect_err("bad prefix accepted");
        assert!(
            matches!(err, CgroupError::InvalidName { .. }),
            "{bad:?}: {err}"
        );
        assert!(matches!(
            cleanup_stale(bad, &Options::new()),
            Err(CgroupError::InvalidName { .. })
        ));
    }
    for bad in ["/", "relative", "/a/../b"] {
        let err =
            WorkloadCgroup::create("ok", &Limits::none(), &Options::new().delegated_root(bad))
                .expect_err("bad root accepted");
        assert!(
            matches!(err, CgroupError::InvalidName { .. }),
            "{bad:?}: {err}"
        );
    }
    let err = WorkloadCgroup::create("ok", &Limits::none().with_pids_max(0), &Options::new())
        .expect_err("pids 0 accepted");
    assert!(
        matches!(
            err,
            CgroupError::InvalidLimit {
                limit: "pids_max",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn delegated_root_is_used_and_must_exist() {
    let _g = lock();
    let Some(setup) = writable_setup("delegated root") else {
        return;
    };
    let Some(v2) = setup.v2_only() else {
        println!("delegated root: skipped, no cgroup2 mount");
        return;
    };
    let root_name = format!("cl-test-deleg-{}", std::process::id());
    let options = Options::new()
        .setup(v2.clone())
        .delegated_root(format!("/{root_name}"));
    // Missing: an error naming the path, nothing created.
    let err = WorkloadCgroup::create("job", &Limits::none(), &options).expect_err("missing root");
    assert!(err.to_string().contains(&root_name), "{err}");
    let root_dir = v2_root(&v2).join(&root_name);
    std::fs::create_dir(&root_dir).expect("mkdir delegated root");
    let group = WorkloadCgroup::create("job", &Limits::none(), &options).expect("create");
    assert_eq!(group.paths()[0].parent(), Some(root_dir.as_path()));
    group.teardown().expect("teardown");
    std::fs::remove_dir(&root_dir).expect("rmdir delegated root");
}

#[test]
fn limits_are_written_where_the_report_says() {
    let _g = lock();
    let Some(setup) = writable_setup("applied limits") else {
        return;
    };
    let prefix = "cl-test-applied";
    let limits = Limits::none()
        .with_memory_max(512 << 20)
        .with_cpu_fraction(0.5)
        .with_cpu_weight(100)
        .with_pids_max(100);
    let Some(group) = create_with_limits(prefix, &limits) else {
        return;
    };
    for a in &group.applied().applied {
        let got = read(&a.file);
        let got = got.split_whitespace().next().unwrap_or_default();
        assert_eq!(got, a.value, "{} in {}", a.limit, a.file.display());
    }
    let limits_seen: BTreeSet<&str> = group.applied().applied.iter().map(|a| a.limit).collect();
    for l in ["memory_max", "cpu_fraction", "cpu_weight", "pids_max"] {
        assert!(
            limits_seen.contains(l),
            "{l} not applied on {}",
            setup.kind()
        );
    }
    // memory.high exists only on v2: strict creation on a v1 memory hierarchy refuses it.
    if setup.kind() != SetupKind::Unified {
        let err = WorkloadCgroup::create(
            prefix,
            &Limits::none().with_memory_high(1 << 30),
            &Options::new(),
        )
        .expect_err("memory.high on v1");
        assert!(matches!(
            err,
            CgroupError::LimitUnavailable {
                limit: "memory_high",
                ..
            }
        ));
    }
    group.teardown().expect("teardown");
    assert!(listing(prefix).is_empty(), "left: {:?}", listing(prefix));
}

/// Set in the child that plays the runner (this same test binary, re-executed).
const RUNNER_ENV: &str = "CGROUP_LIMITS_TEST_RUNNER_PREFIX";

/// The runner's side: create a group, run `sleep 60` in it, print `RUNNER <pid> <dirs>…`, and
/// wait to be SIGKILLed.
fn act_as_runner(prefix: &str) {
    let limits = Limits::none().with_memory_max(64 << 20).with_pids_max(100);
    let group = WorkloadCgroup::create(prefix, &limits, &Options::new()).expect("runner create");
    let mut child = gated("exec sleep 60");
    group.attach(child.id()).expect("runner attach");
    release(&mut child);
    let dirs: Vec<String> = group
        .paths()
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    println!("RUNNER {} {}", child.id(), dirs.join(" "));
    std::io::stdout().flush().expect("flush");
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn a_sigkilled_runners_groups_are_removed_at_the_next_start() {
    if let Ok(prefix) = std::env::var(RUNNER_ENV) {
        act_as_runner(&prefix);
        return;
    }
    let _g = lock();
    let Some(_setup) = writable_setup("SIGKILLed runner") else {
        return;
    };
    let prefix = "cl-test-runner";
    assert!(listing(prefix).is_empty());
    let mut runner = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "a_sigkilled_runners_groups_are_removed_at_the_next_start",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(RUNNER_ENV, prefix)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn runner");
    let stdout = std::io::BufReader::new(runner.stdout.take().expect("stdout"));
    let line = std::io::BufRead::lines(stdout)
        .map_while(Result::ok)
        // libtest may print its own `test … ` on the same line first.
        .find_map(|l| l.find("RUNNER ").map(|i| l[i..].to_owned()))
        .expect("runner did not report its group");
    let mut words = line.split_whitespace().skip(1);
    let workload: u32 = words.next().and_then(|w| w.parse().ok()).expect("pid");
    let dirs: Vec<PathBuf> = words.map(PathBuf::from).collect();
    assert!(!dirs.is_empty(), "runner printed {line:?}");
    runner.kill().expect("SIGKILL runner");
    runner.wait().expect("reap runner");
    // The runner could not tear down: its groups and its workload survive it.
    assert!(dirs.iter().all(|d| d.exists()));
    assert!(Path::new(&format!("/proc/{workload}")).exists());
    // The next start removes them and kills the survivor.
    let removed = cleanup_stale(prefix, &Options::new()).expect("cleanup");
    assert_eq!(
        removed.iter().collect::<BTreeSet<_>>(),
        dirs.iter().collect::<BTreeSet<_>>()
    );
    let start = Instant::now();
    loop {
        let stat = read(format!("/proc/{workload}/stat").as_ref());
        // Gone, or a zombie waiting for its new parent to reap it.
        if stat.is_empty() || stat.contains(") Z ") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "survivor alive: {stat}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(listing(prefix).is_empty(), "left: {:?}", listing(prefix));
}
