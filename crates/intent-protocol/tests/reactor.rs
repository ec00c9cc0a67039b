//! The reactor engine with a custom (recording) registry, on the real kernel.
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use intent_protocol::{
    ActionReport, ActionStatus, CLAIM_DIR, Intent, IntentWriter, Nonce, NonceLedger, Reactor,
    ReactorConfig, ReactorError, Rejection, StopSignal,
};

/// Records what ran; the first call waits until the `gate` file exists (if set).
#[derive(Default)]
struct Recorder {
    ran: Mutex<Vec<String>>,
    gate: Option<PathBuf>,
}

impl Recorder {
    fn ran(&self) -> Vec<String> {
        self.ran.lock().expect("lock").clone()
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Named {
    name: String,
}

/// Coalesces by name.
struct Poke;

impl Intent for Poke {
    type Host = Recorder;
    type Payload = Named;
    const ID: &'static str = "INTENT_POKE";
    const PAYLOAD_SCHEMA: &'static str = r#"{"type":"object"}"#;
    fn validate(&self, p: &Named, _: &Recorder) -> Result<(), Rejection> {
        if p.name.chars().all(|c| c.is_ascii_lowercase()) {
            Ok(())
        } else {
            Err(Rejection::Invalid {
                intent_id: Self::ID,
                reason: "lower-case names only".into(),
            })
        }
    }
    fn coalesce_key(&self, p: &Named, _: &Recorder) -> Option<String> {
        Some(format!("poke {}", p.name))
    }
    fn describe(&self, p: &Named, _: &Recorder) -> String {
        format!("poke {}", p.name)
    }
    fn execute(&self, p: &Named, host: &Recorder) -> ActionReport {
        let first = {
            let mut ran = host.ran.lock().expect("lock");
            ran.push(format!("poke {}", p.name));
            ran.len() == 1
        };
        if let (true, Some(gate)) = (first, &host.gate) {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !gate.exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        ActionReport {
            commands: vec![(vec!["poke".into(), p.name.clone()], ActionStatus::Exited(0))],
        }
    }
}

static REGISTRY: (Poke,) = (Poke,);

struct Dirs {
    _tmp: tempfile::TempDir,
    intents: PathBuf,
    state: PathBuf,
    audit: PathBuf,
}

fn dirs_in(base: &Path) -> Dirs {
    let tmp = tempfile::tempdir_in(base).expect("tempdir");
    let intents = tmp.path().join("intents");
    let state = tmp.path().join("state");
    std::fs::create_dir(&intents).expect("mkdir");
    std::fs::create_dir(&state).expect("mkdir");
    let audit = tmp.path().join("audit.jsonl");
    Dirs {
        _tmp: tmp,
        intents,
        state,
        audit,
    }
}

fn dirs() -> Dirs {
    dirs_in(&std::env::temp_dir())
}

fn config(d: &Dirs) -> ReactorConfig {
    ReactorConfig::new(&d.intents, &d.state, &d.audit)
}

fn audit_lines(d: &Dirs) -> Vec<String> {
    std::fs::read_to_string(&d.audit)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn run_wakes_on_inotify_and_stops_on_request() {
    let d = dirs();
    let (stop, mut sender) = StopSignal::new().expect("stop");
    let cfg = config(&d);
    let handle = std::thread::spawn(move || {
        let mut reactor = Reactor::open(cfg, &REGISTRY, Recorder::default()).expect("open");
        let stats = reactor.run(&stop).expect("run");
        (stats, reactor.host().ran())
    });
    let writer = IntentWriter::open(&d.intents).expect("writer");
    writer
        .send_json("INTENT_POKE", r#"{"name":"a"}"#)
        .expect("send");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !audit_lines(&d)
        .iter()
        .any(|l| l.contains(r#""outcome":"executed""#))
    {
        assert!(
            Instant::now() < deadline,
            "not executed: {:?}",
            audit_lines(&d)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    writer
        .send_json("INTENT_POKE", r#"{"name":"B"}"#)
        .expect("send");
    while !audit_lines(&d)
        .iter()
        .any(|l| l.contains(r#""reason":"invalid""#))
    {
        assert!(
            Instant::now() < deadline,
            "not rejected: {:?}",
            audit_lines(&d)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::io::Write::write_all(&mut sender, b"x").expect("stop");
    let (stats, ran) = handle.join().expect("join");
    assert_eq!((stats.executed, stats.rejected), (1, 1));
    assert_eq!(ran, ["poke a"]);
}

#[test]
fn identical_pending_intents_are_coalesced_and_audited() {
    let d = dirs();
    let writer = IntentWriter::open(&d.intents).expect("writer");
    for name in ["a", "a", "b", "a", "b"] {
        writer
            .send_json("INTENT_POKE", &format!(r#"{{"name":"{name}"}}"#))
            .expect("send");
    }
    let mut reactor = Reactor::open(config(&d), &REGISTRY, Recorder::default()).expect("open");
    let stats = reactor.drain().expect("drain");
    assert_eq!((stats.executed, stats.coalesced), (2, 3));
    let mut ran = reactor.host().ran();
    ran.sort();
    assert_eq!(ran, ["poke a", "poke b"]);
    let coalesced = audit_lines(&d)
        .iter()
        .filter(|l| l.contains(r#""outcome":"coalesced""#) && l.contains(r#""coalesced_into":""#))
        .count();
    assert_eq!(coalesced, 3);
}

#[test]
fn entries_left_claimed_by_a_crash_are_handled_once() {
    let d = dirs();
    // Run once so the claim dir exists, then plant two "claimed before a crash" entries: one
    // whose nonce was committed (its action may have started), one whose nonce was not.
    let mut reactor = Reactor::open(config(&d), &REGISTRY, Recorder::default()).expect("open");
    reactor.drain().expect("drain");
    drop(reactor);
    let claim = d.intents.join(CLAIM_DIR);
    let committed = Nonce::new("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa").expect("nonce");
    let body = |nonce: &str| {
        format!(r#"{{"intent_id":"INTENT_POKE","nonce":"{nonce}","payload":{{"name":"x"}}}}"#)
    };
    std::fs::write(claim.join("1.intent.json"), body(committed.as_str())).expect("write");
    std::fs::write(
        claim.join("2.intent.json"),
        body("bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"),
    )
    .expect("write");
    {
        let fd = rustix::fs::open(
            &d.state,
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY,
            rustix::fs::Mode::empty(),
        )
        .expect("state dir");
        NonceLedger::open(&fd, &d.state, 100)
            .expect("ledger")
            .commit([&committed])
            .expect("commit");
    }
    let mut reactor = Reactor::open(config(&d), &REGISTRY, Recorder::default()).expect("open");
    let stats = reactor.drain().expect("drain");
    assert_eq!((stats.executed, stats.rejected), (1, 1));
    assert_eq!(reactor.host().ran(), ["poke x"]);
    assert!(audit_lines(&d).iter().any(
        |l| l.contains(r#""file":"1.intent.json""#) && l.contains(r#""reason":"interrupted""#)
    ));
    assert_eq!(std::fs::read_dir(&claim).expect("read_dir").count(), 0);
}

#[test]
fn a_second_reactor_is_refused_and_a_planted_claim_dir_is_moved_aside() {
    let d = dirs();
    let first = Reactor::open(config(&d), &REGISTRY, Recorder::default()).expect("open");
    assert!(matches!(
        Reactor::open(config(&d), &REGISTRY, Recorder::default()),
        Err(ReactorError::Busy { .. })
    ));
    drop(first);

    let mode = |p: &Path| {
        std::os::unix::fs::PermissionsExt::mode(
            &std::fs::symlink_metadata(p).expect("stat").permissions(),
        )
    };
    // Our own dir with a loose mode: tightened, kept (it may hold claimed intents).
    let d = dirs();
    let claim = d.intents.join(CLAIM_DIR);
    std::fs::create_dir(&claim).expect("mkdir");
    std::fs::set_permissions(&claim, std::os::unix::fs::PermissionsExt::from_mode(0o777))
        .expect("chmod");
    drop(Reactor::open(config(&d), &REGISTRY, Recorder::default()).expect("open"));
    assert_eq!(mode(&claim) & 0o777, 0o700);

    // A writer's symlink (to /etc) or a dir of another uid: moved aside, audited, never used.
    let d = dirs();
    let claim = d.intents.join(CLAIM_DIR);
    std::os::unix::fs::symlink("/etc", &claim).expect("symlink");
    let mut reactor = Reactor::open(config(&d), &REGISTRY, Recorder::default()).expect("open");
    assert!(
        !std::fs::symlink_metadata(&claim)
            .expect("stat")
            .file_type()
            .is_symlink()
    );
    let aside: Vec<String> = std::fs::read_dir(&d.intents)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("{CLAIM_DIR}.foreign-")))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert!(
        audit_lines(&d)
            .iter()
            .any(|l| l.contains(r#""reason":"foreign_claim_dir""#))
    );
    // The moved-aside entry is a dot-name: the reactor leaves it alone.
    assert_eq!(reactor.drain().expect("drain").rejected, 0);
    drop(reactor);

    let d = dirs();
    let claim = d.intents.join(CLAIM_DIR);
    std::fs::create_dir(&claim).expect("mkdir");
    if std::os::unix::fs::chown(&claim, Some(4242), None).is_err() {
        eprintln!("skipping the foreign-owner case: chown needs root");
        return;
    }
    drop(Reactor::open(config(&d), &REGISTRY, Recorder::default()).expect("open"));
    let st = std::fs::metadata(&claim).expect("stat");
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&st),
        rustix::process::geteuid().as_raw()
    );
}

#[test]
fn an_audit_failure_stops_before_any_action() {
    if !Path::new("/dev/full").exists() {
        eprintln!("skipping: no /dev/full to make the audit log fail");
        return;
    }
    let d = dirs();
    IntentWriter::open(&d.intents)
        .expect("writer")
        .send_json("INTENT_POKE", r#"{"name":"a"}"#)
        .expect("send");
    let mut cfg = config(&d);
    cfg.audit_log = PathBuf::from("/dev/full");
    let mut reactor = Reactor::open(cfg, &REGISTRY, Recorder::default()).expect("open");
    assert!(matches!(reactor.drain(), Err(ReactorError::Audit(_))));
    assert!(reactor.host().ran().is_empty(), "no unaudited action");
    // The intent is not lost: it waits in the claim dir for the next start.
    assert_eq!(
        std::fs::read_dir(d.intents.join(CLAIM_DIR))
            .expect("read_dir")
            .count(),
        1
    );
}

#[test]
fn queue_overflow_triggers_a_rescan_that_handles_everything() {
    let max_events: usize = std::fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(usize::MAX);
    if max_events > 40_000 {
        eprintln!(
            "skipping: max_queued_events is {max_events}, too many files to overflow it quickly"
        );
        return;
    }
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let d = dirs_in(&base);
    let (stop, mut sender) = StopSignal::new().expect("stop");
    let mut cfg = config(&d);
    cfg.rate_limit.burst = 1_000_000;
    // Large enough that only IN_Q_OVERFLOW (not the per-drain name bound) can cause a rescan.
    cfg.batch_max = 5_000;
    let gate = d.state.join("gate");
    let host = Recorder {
        gate: Some(gate.clone()),
        ..Recorder::default()
    };
    let handle = std::thread::spawn(move || {
        let mut reactor = Reactor::open(cfg, &REGISTRY, host).expect("open");
        reactor.run(&stop).expect("run")
    });
    // Give the reactor time to finish its (empty) start-up scan and block in poll, so the
    // first intent arrives as an event and the flood piles up in the kernel queue.
    std::thread::sleep(Duration::from_millis(500));
    let writer = IntentWriter::open(&d.intents).expect("writer");
    writer
        .send_json("INTENT_POKE", r#"{"name":"first"}"#)
        .expect("send");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !audit_lines(&d)
        .iter()
        .any(|l| l.contains(r#""outcome":"started""#))
    {
        assert!(Instant::now() < deadline, "first intent never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    // While the first action waits at the gate, overflow the event queue.
    let total = max_events + 500;
    for i in 0..total {
        let name = format!("{i:06}.intent.json");
        let body =
            format!(r#"{{"intent_id":"INTENT_POKE","nonce":"{i:032x}","payload":{{"name":"x"}}}}"#);
        std::fs::write(d.intents.join(format!(".{name}")), body).expect("write");
        std::fs::rename(d.intents.join(format!(".{name}")), d.intents.join(&name)).expect("rename");
    }
    std::fs::write(&gate, "").expect("open the gate");
    let deadline = Instant::now() + Duration::from_secs(100);
    loop {
        // Both the shared dir and the claim dir must be empty: a claimed entry is not done.
        let visible = |dir: &Path| {
            std::fs::read_dir(dir)
                .expect("read_dir")
                .filter(|e| {
                    !e.as_ref()
                        .expect("entry")
                        .file_name()
                        .to_string_lossy()
                        .starts_with('.')
                })
                .count()
        };
        let left = visible(&d.intents) + visible(&d.intents.join(CLAIM_DIR));
        if left == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{left} files never handled");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::io::Write::write_all(&mut sender, b"x").expect("stop");
    let stats = handle.join().expect("join");
    assert!(
        stats.rescans >= 2,
        "an overflow rescan must have run: {stats:?}"
    );
    assert_eq!(
        stats.executed + stats.coalesced + stats.rejected,
        u64::try_from(total).expect("fits") + 1
    );
}
