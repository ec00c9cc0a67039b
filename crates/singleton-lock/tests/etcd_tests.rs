//! The etcd backend against real etcd members (Debian's `etcd-server`), started by the tests on
//! loopback ports with temporary data dirs and killed afterwards.
//!
//! `SINGLETON_LOCK_TEST_ETCD` names the etcd binary (`.ci/deps/singleton-lock.sh` installs it and
//! sets it); without it `/usr/bin/etcd` is tried, and if that is missing too the tests that need
//! a server print why and return.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use singleton_lock::{EtcdLock, EtcdLockConfig, LockError, LossReason, Verification};

use super::{CHILD_ENV, GO_ENV, Kid, Test, skip};

const ENDPOINTS_ENV: &str = "SINGLETON_LOCK_TEST_ENDPOINTS";
const NAME_ENV: &str = "SINGLETON_LOCK_TEST_NAME";
const TTL_ENV: &str = "SINGLETON_LOCK_TEST_TTL";

pub const TESTS: &[Test] = tests![
    etcd_unreachable_cluster_is_a_distinct_error,
    etcd_processes_contend_exactly_one_wins,
    etcd_timeout_names_holder_and_cleans_up,
    etcd_waiters_queue_and_tokens_grow,
    etcd_deleted_key_is_reported_lost,
    etcd_sigkill_frees_after_ttl_with_larger_token,
    etcd_sigstopped_holder_learns_loss_before_working,
    etcd_outage_is_reported_never_ignored,
    etcd_three_member_cluster_survives_member_kill,
    etcd_user_and_password_auth,
    etcd_mutual_tls,
];

fn boottime_ns() -> u128 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    u128::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u128::try_from(ts.tv_nsec).unwrap_or(0)
}

fn etcd_binary() -> Option<PathBuf> {
    let path = std::env::var_os("SINGLETON_LOCK_TEST_ETCD")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/etcd"));
    path.exists().then_some(path)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Running etcd members; all killed on drop.
struct Etcd {
    bin: PathBuf,
    dir: tempfile::TempDir,
    members: Vec<Member>,
    /// `http` or `https` (client URLs).
    scheme: &'static str,
    /// Extra etcd flags (TLS files).
    extra_args: Vec<String>,
    /// Extra etcdctl flags (credentials, TLS files).
    ctl_args: Vec<String>,
}

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

impl Etcd {
    /// Starts an `n`-member cluster, or says why it cannot and returns `None`.
    fn start(n: usize) -> Option<Etcd> {
        let mut etcd = Self::prepare(n)?;
        for i in 0..n {
            etcd.spawn(i);
        }
        for i in 0..n {
            etcd.wait_healthy(i);
        }
        Some(etcd)
    }

    /// Members chosen (ports, names), nothing started yet.
    fn prepare(n: usize) -> Option<Etcd> {
        let Some(bin) = etcd_binary() else {
            skip("no etcd binary (set SINGLETON_LOCK_TEST_ETCD or run .ci/deps/singleton-lock.sh)");
            return None;
        };
        let members = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: free_port(),
                peer_port: free_port(),
                child: None,
            })
            .collect();
        Some(Etcd {
            bin,
            dir: tempfile::tempdir().expect("tempdir"),
            members,
            scheme: "http",
            extra_args: Vec::new(),
            ctl_args: Vec::new(),
        })
    }

    fn spawn(&mut self, i: usize) {
        let cluster: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect();
        let m = &self.members[i];
        let data = self.dir.path().join(&m.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{}.log", m.name)))
            .expect("log file");
        let client = format!("{}://127.0.0.1:{}", self.scheme, m.client_port);
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let child = Command::new(&self.bin)
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(&data)
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
            .args(["--initial-cluster", &cluster.join(",")])
            .args([
                "--initial-cluster-state",
                "new",
                "--initial-cluster-token",
                "singleton-lock-test",
            ])
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn etcd");
        self.members[i].child = Some(child);
    }

    /// Polls `GET /health` on the member's client port until it says healthy.
    fn wait_healthy(&self, i: usize) {
        let port = self.members[i].client_port;
        let give_up = Instant::now() + Duration::from_secs(30);
        loop {
            if health(port) {
                return;
            }
            assert!(
                Instant::now() < give_up,
                "etcd member {i} not healthy; log: {}",
                std::fs::read_to_string(self.dir.path().join(format!("m{i}.log")))
                    .unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("{}://127.0.0.1:{}", self.scheme, m.client_port))
            .collect()
    }

    fn signal(&self, i: usize, sig: rustix::process::Signal) {
        let child = self.members[i].child.as_ref().expect("running member");
        let pid =
            rustix::process::Pid::from_raw(i32::try_from(child.id()).expect("pid")).expect("pid");
        rustix::process::kill_process(pid, sig).expect("kill");
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a killed member again on the same ports and data dir.
    fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
    }

    fn etcdctl(&self, args: &[&str]) -> String {
        let ctl = self.bin.with_file_name("etcdctl");
        let out = Command::new(ctl)
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoints().join(",")))
            .args(&self.ctl_args)
            .args(args)
            .output()
            .expect("etcdctl");
        assert!(
            out.status.success(),
            "etcdctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Keys under a lock's prefix.
    fn keys(&self, lock: &EtcdLock) -> Vec<String> {
        self.etcdctl(&["get", "--prefix", "--keys-only", lock.prefix()])
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            // A SIGSTOPped member must be continued to die promptly.
            if self.members[i].child.is_some() {
                self.signal(i, rustix::process::Signal::CONT);
            }
            self.kill(i);
        }
    }
}

fn health(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.contains("\"health\":\"true\"")
}

fn config(endpoints: &[String], name: &str, ttl_secs: u64) -> EtcdLockConfig {
    let mut cfg = EtcdLockConfig::new(endpoints.iter().cloned(), name);
    cfg.ttl = Duration::from_secs(ttl_secs);
    cfg.connect_timeout = Duration::from_secs(1);
    cfg
}

fn lock(endpoints: &[String], name: &str, ttl_secs: u64) -> EtcdLock {
    EtcdLock::new(config(endpoints, name, ttl_secs)).expect("EtcdLock::new")
}

/// Child modes: `etcd-race` (wait for GO, try once, print `WON <token>` or `HELD <pid>`, the
/// winner holds until stdin closes) and `etcd-hold` (acquire, print `LOCKED <token>`, then every
/// 50 ms either `WORK <boottime ns>` or, once the lock is lost, `LOST <reason>` and exit).
pub fn child(mode: &str) -> ExitCode {
    let endpoints: Vec<String> = std::env::var(ENDPOINTS_ENV)
        .expect("endpoints")
        .split(',')
        .map(str::to_owned)
        .collect();
    let name = std::env::var(NAME_ENV).expect("name");
    let ttl = std::env::var(TTL_ENV)
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(2);
    let lock = lock(&endpoints, &name, ttl);
    let mut out = std::io::stdout();
    match mode {
        "etcd-race" => {
            let go = PathBuf::from(std::env::var_os(GO_ENV).expect("go"));
            while !go.exists() {
                std::thread::sleep(Duration::from_micros(500));
            }
            match lock.try_acquire() {
                Ok(guard) => {
                    writeln!(out, "WON {}", guard.fencing_token()).expect("stdout");
                    out.flush().expect("stdout");
                    let _ = std::io::stdin().read_to_end(&mut Vec::new());
                    drop(guard);
                }
                Err(LockError::Held { holder, .. }) => {
                    let pid = holder.map_or("none".to_string(), |h| h.pid.to_string());
                    writeln!(out, "HELD {pid}").expect("stdout");
                }
                Err(e) => writeln!(out, "ERR {e}").expect("stdout"),
            }
        }
        "etcd-hold" => {
            let guard = lock.acquire().expect("child acquire");
            writeln!(out, "LOCKED {}", guard.fencing_token()).expect("stdout");
            out.flush().expect("stdout");
            let lost = guard.lost();
            loop {
                // The rule a holder follows: check, then act (with the fencing token).
                if let Some(reason) = lost.reason() {
                    writeln!(out, "LOST {reason}").expect("stdout");
                    break;
                }
                writeln!(out, "WORK {}", boottime_ns()).expect("stdout");
                out.flush().expect("stdout");
                std::thread::sleep(Duration::from_millis(50));
            }
            drop(guard);
        }
        other => panic!("unknown child mode {other}"),
    }
    ExitCode::SUCCESS
}

fn spawn_kid(
    mode: &str,
    endpoints: &[String],
    name: &str,
    ttl: u64,
    extra: &[(&str, &str)],
) -> Kid {
    let mut env: Vec<(&str, String)> = vec![
        (ENDPOINTS_ENV, endpoints.join(",")),
        (NAME_ENV, name.to_owned()),
        (TTL_ENV, ttl.to_string()),
    ];
    env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let _ = CHILD_ENV;
    Kid::spawn(mode, std::path::Path::new("/nonexistent"), &pairs)
}

fn token_of(line: &str, prefix: &str) -> i64 {
    line.strip_prefix(prefix)
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or_else(|| panic!("expected `{prefix}<token>`, got {line:?}"))
}

fn etcd_unreachable_cluster_is_a_distinct_error() {
    // Nothing listens there: a port we just bound and released.
    let endpoints = vec![format!("http://127.0.0.1:{}", free_port())];
    let start = Instant::now();
    let err = EtcdLock::new(config(&endpoints, "unreachable", 2))
        .and_then(|l| l.try_acquire())
        .expect_err("no cluster");
    assert!(matches!(err, LockError::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains("unreachable"), "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );

    let bad = EtcdLockConfig::new(endpoints.clone(), "a/b");
    assert!(matches!(EtcdLock::new(bad), Err(LockError::Config { .. })));
    let mut bad_pw = EtcdLockConfig::new(endpoints, "x");
    bad_pw.user = Some(("root".into(), vec![0xff, 0xfe]));
    assert!(matches!(
        EtcdLock::new(bad_pw.clone()),
        Err(LockError::Config { .. })
    ));
    assert!(
        !format!("{bad_pw:?}").contains("255"),
        "password bytes never printed"
    );
}

fn etcd_processes_contend_exactly_one_wins() {
    let Some(etcd) = Etcd::start(1) else { return };
    let endpoints = etcd.endpoints();
    let dir = tempfile::tempdir().expect("tempdir");
    let go = dir.path().join("go");
    let go_str = go.to_str().expect("utf-8").to_owned();
    let mut kids: Vec<Kid> = (0..5)
        .map(|_| spawn_kid("etcd-race", &endpoints, "race", 3, &[(GO_ENV, &go_str)]))
        .collect();
    std::thread::sleep(Duration::from_millis(300)); // let them connect
    std::fs::write(&go, b"go").expect("go");
    let lines: Vec<String> = kids.iter_mut().map(Kid::line).collect();
    let winners: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].starts_with("WON "))
        .collect();
    assert_eq!(winners.len(), 1, "exactly one winner: {lines:?}");
    let winner_pid = kids[winners[0]].pid();
    for (i, line) in lines.iter().enumerate() {
        if i != winners[0] {
            assert_eq!(
                line,
                &format!("HELD {winner_pid}"),
                "losers name the winner: {lines:?}"
            );
        }
    }
    let watcher = lock(&endpoints, "race", 3);
    let holder = watcher.holder().expect("holder").expect("held");
    assert_eq!(holder.pid, winner_pid);
    assert_eq!(
        holder.verification,
        Verification::Verified,
        "same host: checked via /proc"
    );
    assert!(holder.host.is_some() && holder.since_unix.is_some());
    assert_eq!(etcd.keys(&watcher).len(), 1, "losers leave no keys behind");
    drop(kids[winners[0]].child.stdin.take());
    kids[winners[0]].child.wait().expect("wait");
    let guard = watcher
        .try_acquire()
        .expect("free after the winner released");
    assert!(guard.fencing_token() > token_of(&lines[winners[0]], "WON "));
}

fn etcd_timeout_names_holder_and_cleans_up() {
    let Some(etcd) = Etcd::start(1) else { return };
    let endpoints = etcd.endpoints();
    let a = lock(&endpoints, "timeout", 3);
    let b = lock(&endpoints, "timeout", 3);
    let guard = a.try_acquire().expect("a");
    match b.try_acquire() {
        Err(e @ LockError::Held { .. }) => {
            assert_eq!(e.holder().map(|h| h.pid), Some(std::process::id()));
            assert!(e.to_string().contains("etcd:timeout"), "{e}");
        }
        other => panic!("expected Held, got {other:?}"),
    }
    let start = Instant::now();
    match b.acquire_timeout(Duration::from_millis(1500)) {
        Err(LockError::Timeout { waited, holder, .. }) => {
            let elapsed = start.elapsed();
            assert!(waited >= Duration::from_millis(1500), "{waited:?}");
            assert!(
                elapsed < Duration::from_millis(1500) + Duration::from_secs(1),
                "{elapsed:?}"
            );
            assert_eq!(holder.map(|h| h.pid), Some(std::process::id()));
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert_eq!(
        etcd.keys(&a),
        vec![guard.key().to_owned()],
        "the waiter's key is gone"
    );
    assert!(!guard.lost().is_lost());
    guard.release().expect("release");
    assert!(etcd.keys(&a).is_empty(), "release deletes our key");
    assert_eq!(a.holder().expect("holder"), None);
}

fn etcd_waiters_queue_and_tokens_grow() {
    let Some(etcd) = Etcd::start(1) else { return };
    let endpoints = etcd.endpoints();
    let first = lock(&endpoints, "queue", 3).try_acquire().expect("first");
    let t1 = first.fencing_token();
    let waiter = std::thread::spawn({
        let endpoints = endpoints.clone();
        move || {
            let start = Instant::now();
            let g = lock(&endpoints, "queue", 3).acquire().expect("waiter");
            (g.fencing_token(), start.elapsed(), g)
        }
    });
    std::thread::sleep(Duration::from_millis(700));
    let released_at = Instant::now();
    drop(first);
    let (t2, waited, second) = waiter.join().expect("join");
    let latency = released_at.elapsed();
    println!("  handover after release: {latency:?} (waiter waited {waited:?})");
    assert!(waited >= Duration::from_millis(600), "{waited:?}");
    assert!(
        latency < Duration::from_millis(1000),
        "watch wakes the waiter: {latency:?}"
    );
    assert!(t2 > t1, "{t2} > {t1}");
    drop(second);

    // Acquire latency on an idle lock (loopback, one member).
    let l = lock(&endpoints, "latency", 3);
    let mut samples = Vec::new();
    for _ in 0..10 {
        let start = Instant::now();
        let g = l.try_acquire().expect("acquire");
        samples.push(start.elapsed());
        g.release().expect("release");
    }
    samples.sort();
    println!(
        "  try_acquire latency: median {:?}, max {:?}",
        samples[5], samples[9]
    );
}

fn etcd_deleted_key_is_reported_lost() {
    let Some(etcd) = Etcd::start(1) else { return };
    let endpoints = etcd.endpoints();
    let l = lock(&endpoints, "deleted", 3);
    let guard = l.try_acquire().expect("acquire");
    let lost = guard.lost();
    assert!(!lost.wait_timeout(Duration::from_millis(300)));
    etcd.etcdctl(&["del", guard.key()]);
    assert!(
        lost.wait_timeout(Duration::from_secs(3)),
        "deletion noticed"
    );
    assert_eq!(lost.reason(), Some(LossReason::KeyDeleted));
}

fn etcd_sigkill_frees_after_ttl_with_larger_token() {
    let Some(etcd) = Etcd::start(1) else { return };
    let endpoints = etcd.endpoints();
    let ttl = 2;
    let mut kid = spawn_kid("etcd-hold", &endpoints, "sigkill", ttl, &[]);
    let t1 = token_of(&kid.line(), "LOCKED ");
    let l = lock(&endpoints, "sigkill", ttl);
    match l.try_acquire() {
        Err(LockError::Held { holder, .. }) => assert_eq!(holder.map(|h| h.pid), Some(kid.pid())),
        other => panic!("expected Held, got {other:?}"),
    }
    kid.sigkill_and_reap();
    let killed = Instant::now();
    let guard = l
        .acquire_timeout(Duration::from_secs(15))
        .expect("freed after the TTL");
    let failover = killed.elapsed();
    println!("  failover after SIGKILL: {failover:?} (TTL {ttl}s)");
    assert!(
        failover >= Duration::from_millis(500),
        "not before the lease ran out: {failover:?}"
    );
    assert!(
        failover <= Duration::from_secs(ttl) + Duration::from_millis(1500),
        "{failover:?}"
    );
    assert!(
        guard.fencing_token() > t1,
        "{} > {t1}",
        guard.fencing_token()
    );
}

fn etcd_sigstopped_holder_learns_loss_before_working() {
    use rustix::process::{Pid, Signal, kill_process};
    let Some(etcd) = Etcd::start(1) else { return };
    let endpoints = etcd.endpoints();
    let ttl = 2;
    let mut kid = spawn_kid("etcd-hold", &endpoints, "sigstop", ttl, &[]);
    let t1 = token_of(&kid.line(), "LOCKED ");
    assert!(kid.line().starts_with("WORK "));
    let pid = Pid::from_raw(i32::try_from(kid.pid()).expect("pid")).expect("pid");
    kill_process(pid, Signal::STOP).expect("SIGSTOP");
    let stopped_at = boottime_ns();
    let l = lock(&endpoints, "sigstop", ttl);
    let guard = l
        .acquire_timeout(Duration::from_secs(15))
        .expect("the stopped holder's lease expires");
    assert!(guard.fencing_token() > t1);
    let continued_at = boottime_ns();
    kill_process(pid, Signal::CONT).expect("SIGCONT");
    let mut saw_lost = false;
    for _ in 0..200 {
        let line = kid.line();
        if let Some(ts) = line.strip_prefix("WORK ") {
            let ts: u128 = ts.parse().expect("timestamp");
            assert!(
                ts < stopped_at,
                "worked after losing the lock: {ts} ≥ stop {stopped_at}"
            );
        } else {
            assert!(line.starts_with("LOST "), "{line:?}");
            saw_lost = true;
            break;
        }
    }
    assert!(saw_lost, "the old holder reports the loss");
    assert!(continued_at > stopped_at);
    assert!(!guard.lost().is_lost(), "the new holder is unaffected");
}

fn etcd_outage_is_reported_never_ignored() {
    use rustix::process::Signal;
    let Some(mut etcd) = Etcd::start(1) else {
        return;
    };
    let endpoints = etcd.endpoints();
    let ttl = 3;
    let l = lock(&endpoints, "outage", ttl);
    let guard = l.try_acquire().expect("acquire");
    let lost = guard.lost();

    // A short freeze (well under the TTL): the lock is kept.
    etcd.signal(0, Signal::STOP);
    std::thread::sleep(Duration::from_millis(800));
    etcd.signal(0, Signal::CONT);
    assert!(
        !lost.wait_timeout(Duration::from_secs(ttl + 1)),
        "kept: {:?}",
        lost.reason()
    );
    assert_eq!(
        l.holder().expect("holder").map(|h| h.pid),
        Some(std::process::id())
    );

    // Killed and restarted at once: kept or lost, but never "kept" while the key is gone.
    etcd.restart(0);
    etcd.wait_healthy(0);
    std::thread::sleep(Duration::from_secs(ttl));
    match lost.reason() {
        None => {
            assert_eq!(
                etcd.keys(&l),
                vec![guard.key().to_owned()],
                "kept means still ours"
            );
            println!("  etcd restart within the TTL: lock kept");
        }
        Some(reason) => println!("  etcd restart within the TTL: lock reported lost ({reason})"),
    }

    // Down for longer than the TTL: reported as lost within about a TTL.
    etcd.kill(0);
    let down = Instant::now();
    assert!(
        lost.wait_timeout(Duration::from_secs(ttl + 2)),
        "loss must be reported"
    );
    let noticed = down.elapsed();
    println!(
        "  loss noticed {noticed:?} after etcd died (TTL {ttl}s): {:?}",
        lost.reason()
    );
    assert!(
        noticed <= Duration::from_secs(ttl) + Duration::from_secs(1),
        "{noticed:?}"
    );
    assert!(matches!(
        lost.reason(),
        Some(LossReason::KeepAliveFailed(_) | LossReason::LeaseExpired)
    ));
    let err = l.try_acquire().expect_err("cluster down");
    assert!(matches!(err, LockError::Unreachable { .. }), "{err:?}");
    let start = Instant::now();
    drop(guard); // revoking cannot reach the cluster: bounded by the connect timeout
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );

    // Back again: the lock works (after the old lease expires on the server).
    etcd.restart(0);
    etcd.wait_healthy(0);
    let again = l
        .acquire_timeout(Duration::from_secs(20))
        .expect("acquire after restart");
    assert!(!again.lost().is_lost());
}

fn etcd_three_member_cluster_survives_member_kill() {
    let Some(mut etcd) = Etcd::start(3) else {
        return;
    };
    let endpoints = etcd.endpoints();
    let ttl = 3;
    let l = lock(&endpoints, "cluster", ttl);
    let guard = l.try_acquire().expect("acquire on 3 members");
    let t1 = guard.fencing_token();
    etcd.kill(0);
    let lost = guard.lost();
    assert!(
        !lost.wait_timeout(Duration::from_secs(2 * ttl)),
        "one member down must not lose the lock: {:?}",
        lost.reason()
    );
    let other = lock(&endpoints, "cluster", ttl);
    match other.try_acquire() {
        Err(LockError::Held { holder, .. }) => {
            assert_eq!(holder.map(|h| h.pid), Some(std::process::id()))
        }
        other => panic!("expected Held, got {other:?}"),
    }
    guard.release().expect("release with one member down");
    let g2 = other.try_acquire().expect("acquire with one member down");
    assert!(g2.fencing_token() > t1);
}

fn etcd_user_and_password_auth() {
    let Some(mut etcd) = Etcd::start(1) else {
        return;
    };
    let endpoints = etcd.endpoints();
    etcd.etcdctl(&["user", "add", "root", "--new-user-password=s3cret pass"]);
    etcd.etcdctl(&["user", "grant-role", "root", "root"]);
    etcd.etcdctl(&["auth", "enable"]);
    etcd.ctl_args = vec!["--user=root:s3cret pass".into()];

    let mut cfg = config(&endpoints, "auth", 3);
    cfg.user = Some(("root".into(), b"s3cret pass".to_vec()));
    let l = EtcdLock::new(cfg).expect("authenticated client");
    let guard = l.try_acquire().expect("acquire with auth");
    assert_eq!(etcd.keys(&l), vec![guard.key().to_owned()]);

    let mut wrong = config(&endpoints, "auth", 3);
    wrong.user = Some(("root".into(), b"wrong-pw".to_vec()));
    let err = EtcdLock::new(wrong)
        .and_then(|l| l.try_acquire())
        .expect_err("wrong password");
    assert!(matches!(err, LockError::Etcd { .. }), "{err:?}");
    assert!(err.to_string().contains("authentication failed"), "{err}");
    assert!(
        !err.to_string().contains("wrong-pw"),
        "the password never appears: {err}"
    );

    let anonymous = lock(&endpoints, "auth", 3);
    let err = anonymous.try_acquire().expect_err("no user");
    assert!(matches!(err, LockError::Etcd { .. }), "{err:?}");
}

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A test CA, a server certificate for 127.0.0.1 and a client certificate (P-256 keys).
fn make_certificates(dir: &std::path::Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=test-ca",
    ]);
    openssl(dir, &ca);
    for (name, ext) in [
        (
            "server",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        ),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ] {
        let (key, csr, crt, extfile, subj) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
            format!("{name}.ext"),
            format!("/CN={name}"),
        );
        std::fs::write(dir.join(&extfile), ext).expect("ext file");
        let mut req = vec!["req"];
        req.extend(ec);
        req.extend(["-keyout", &key, "-out", &csr, "-subj", &subj]);
        openssl(dir, &req);
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &crt,
                "-days",
                "2",
                "-extfile",
                &extfile,
            ],
        );
    }
}

fn etcd_mutual_tls() {
    if Command::new("openssl").arg("version").output().is_err() {
        skip("no openssl binary to make test certificates");
        return;
    }
    let Some(mut etcd) = Etcd::prepare(1) else {
        return;
    };
    let dir = etcd.dir.path().to_path_buf();
    make_certificates(&dir);
    let p = |f: &str| dir.join(f).to_string_lossy().into_owned();
    etcd.scheme = "https";
    etcd.extra_args = vec![
        format!("--cert-file={}", p("server.crt")),
        format!("--key-file={}", p("server.key")),
        format!("--trusted-ca-file={}", p("ca.crt")),
        "--client-cert-auth".into(),
    ];
    etcd.ctl_args = vec![
        format!("--cacert={}", p("ca.crt")),
        format!("--cert={}", p("client.crt")),
        format!("--key={}", p("client.key")),
    ];
    etcd.spawn(0);
    let endpoints = etcd.endpoints();
    let tls_config = |with_client_cert: bool| {
        let mut tls = singleton_lock::EtcdTls::new();
        tls.ca_cert = Some(dir.join("ca.crt"));
        if with_client_cert {
            tls.client_cert = Some(dir.join("client.crt"));
            tls.client_key = Some(dir.join("client.key"));
        }
        let mut cfg = config(&endpoints, "tls", 3);
        cfg.tls = Some(tls);
        cfg
    };
    let l = EtcdLock::new(tls_config(true)).expect("TLS client");
    let give_up = Instant::now() + Duration::from_secs(30);
    let guard = loop {
        match l.try_acquire() {
            Ok(g) => break g,
            Err(e) => {
                assert!(Instant::now() < give_up, "TLS etcd never answered: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    assert_eq!(etcd.keys(&l), vec![guard.key().to_owned()]);
    let without_client_cert = EtcdLock::new(tls_config(false)).and_then(|l| l.try_acquire());
    assert!(
        without_client_cert.is_err(),
        "the server requires a client certificate"
    );
    let mut plain = tls_config(true);
    plain.endpoints = vec![endpoints[0].replace("https://", "http://")];
    assert!(
        matches!(EtcdLock::new(plain), Err(LockError::Etcd { .. })),
        "TLS settings with an http:// endpoint are refused"
    );
}
