//! `intent_reactor`: the intent-protocol reactor against a hand-written `inotifywait` + shell
//! loop doing the same job, in the same run, on the same directory type; prints ratios.
//!
//! Run: `cargo run --release -p benches --bin intent_reactor [-- SAMPLES]`
//! (`BENCH_DIR` picks the filesystem, default the system temp dir; needs `inotifywait` from
//! inotify-tools for the peer, else only our numbers are printed.)
//!
//! Measured:
//! - wake latency: `rename()` of an intent into the directory → the systemctl stand-in started
//!   (it writes one byte into a FIFO we read), p50/p99;
//! - executed throughput: N intents renamed in at once → N stand-ins started (bounded by
//!   spawning a process per intent, for both);
//! - refused throughput: N intents with an unknown id → all gone from the directory (no process
//!   spawned; ours still claims, checks, parses and appends + fdatasyncs an audit record each).
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use intent_protocol::EmptyPayload as Empty;
use intent_protocol::{
    ActionReport, BUILTIN, Intent, RateLimit, Reactor, ReactorConfig, Rejection, StopSignal,
    Systemctl, SystemdHost, UnitName,
};

/// A non-coalescing restart, so the executed-throughput run spawns one process per intent.
struct BenchRestart;

impl Intent for BenchRestart {
    type Host = SystemdHost;
    type Payload = Empty;
    const ID: &'static str = "INTENT_BENCH_RESTART";
    const PAYLOAD_SCHEMA: &'static str = r#"{"type":"object","additionalProperties":false}"#;
    fn validate(&self, _: &Empty, _: &SystemdHost) -> Result<(), Rejection> {
        Ok(())
    }
    fn describe(&self, _: &Empty, _: &SystemdHost) -> String {
        "restart web.service".into()
    }
    fn execute(&self, _: &Empty, host: &SystemdHost) -> ActionReport {
        ActionReport {
            commands: vec![host.systemctl.run("restart", host.allowed_units.first())],
        }
    }
}

static BENCH_REGISTRY: (BenchRestart,) = (BenchRestart,);

struct Setup {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    intents: PathBuf,
    standin: PathBuf,
    fifo: std::fs::File,
}

fn setup(base: &Path) -> Setup {
    let tmp = tempfile::tempdir_in(base).expect("tempdir");
    let root = tmp.path().to_path_buf();
    let intents = root.join("intents");
    std::fs::create_dir(&intents).expect("mkdir");
    std::fs::create_dir(root.join("state")).expect("mkdir");
    let fifo_path = root.join("started");
    let ok = Command::new("mkfifo")
        .arg(&fifo_path)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "mkfifo failed");
    // O_RDWR on a FIFO never blocks and never sees EOF: writers come and go.
    let fifo = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo_path)
        .expect("open fifo");
    let standin = root.join("systemctl");
    std::fs::write(
        &standin,
        format!("#!/bin/sh\nprintf x > {}\n", fifo_path.display()),
    )
    .expect("write");
    std::fs::set_permissions(&standin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    Setup {
        _tmp: tmp,
        root,
        intents,
        standin,
        fifo,
    }
}

fn host(standin: &Path) -> SystemdHost {
    SystemdHost {
        systemctl: Systemctl::new(standin, false).expect("absolute"),
        allowed_units: vec![UnitName::new("web.service").expect("unit")],
        switch_targets: Vec::new(),
        vessel_unit: None,
    }
}

/// Which implementation runs the directory.
enum Runner {
    Ours {
        thread: std::thread::JoinHandle<()>,
        sender: std::os::unix::net::UnixStream,
    },
    Shell(Child),
}

impl Runner {
    fn ours(s: &Setup, bench_registry: bool) -> Self {
        let mut cfg =
            ReactorConfig::new(&s.intents, s.root.join("state"), s.root.join("audit.jsonl"));
        cfg.rate_limit = RateLimit {
            burst: u32::MAX,
            per_minute: u32::MAX,
        };
        let host = host(&s.standin);
        let (stop, sender) = StopSignal::new().expect("stop");
        let thread = std::thread::spawn(move || {
            if bench_registry {
                Reactor::open(cfg, &BENCH_REGISTRY, host)
                    .expect("open")
                    .run(&stop)
                    .expect("run");
            } else {
                Reactor::open(cfg, &BUILTIN, host)
                    .expect("open")
                    .run(&stop)
                    .expect("run");
            }
        });
        std::thread::sleep(Duration::from_millis(200));
        Self::Ours { thread, sender }
    }

    /// What one would write by hand: inotifywait feeding a shell loop that checks the file
    /// name and content and runs the stand-in for the one allowed intent.
    fn shell(s: &Setup) -> Option<Self> {
        let script = format!(
            r#"cd {dir} || exit 1
inotifywait -m -q -e moved_to -e close_write --format '%f' . | while IFS= read -r f; do
  case "$f" in .*) continue ;; *.intent.json) ;; *) rm -f -- "$f"; continue ;; esac
  [ -f "$f" ] && [ ! -L "$f" ] || continue
  content=$(head -c 65536 -- "$f")
  case "$content" in
    *'"intent_id":"INTENT_RESTART_UNIT"'*'"unit":"web.service"'*|*'"intent_id":"INTENT_BENCH_RESTART"'*)
      {standin} restart -- web.service ;;
  esac
  rm -f -- "$f"
done"#,
            dir = s.intents.display(),
            standin = s.standin.display()
        );
        let child = Command::new("/bin/sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .ok()?;
        std::thread::sleep(Duration::from_millis(300));
        Some(Self::Shell(child))
    }

    fn stop(self) {
        match self {
            Self::Ours { thread, mut sender } => {
                let _ = std::io::Write::write_all(&mut sender, b"x");
                let _ = thread.join();
            }
            Self::Shell(mut child) => {
                // The whole pipeline is its own process group.
                let pgid = i32::try_from(child.id()).unwrap_or(0);
                let _ = Command::new("kill")
                    .arg("--")
                    .arg(format!("-{pgid}"))
                    .status();
                let _ = child.wait();
            }
        }
    }
}

use std::os::unix::process::CommandExt;

fn body(id: &str, i: usize) -> String {
    let payload = if id == "INTENT_RESTART_UNIT" {
        r#"{"unit":"web.service"}"#
    } else {
        "{}"
    };
    format!(
        r#"{{"intent_id":"{id}","nonce":"{:032x}","payload":{payload}}}"#,
        (i as u128) << 20 | 0xbe
    )
}

fn wait_bytes(fifo: &mut std::fs::File, n: usize) {
    let mut buf = vec![0u8; n.min(4096)];
    let mut got = 0;
    while got < n {
        let want = (n - got).min(buf.len());
        got += fifo.read(&mut buf[..want]).expect("read fifo");
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Latency: one intent at a time. Returns (p50, p99).
fn latency(s: &mut Setup, samples: usize, id: &str, seed: usize) -> (Duration, Duration) {
    let mut times = Vec::with_capacity(samples);
    for i in 0..samples {
        let name = format!("l{}-{i}.intent.json", seed);
        let temp = s.intents.join(format!(".{name}"));
        std::fs::write(&temp, body(id, seed + i)).expect("write");
        let t0 = Instant::now();
        std::fs::rename(&temp, s.intents.join(&name)).expect("rename");
        wait_bytes(&mut s.fifo, 1);
        times.push(t0.elapsed());
        // Let the runner finish its bookkeeping before the next sample.
        while s.intents.join(&name).exists() {
            std::thread::sleep(Duration::from_micros(200));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    times.sort();
    (percentile(&times, 0.5), percentile(&times, 0.99))
}

fn pending(dir: &Path) -> usize {
    let count = |d: &Path| {
        std::fs::read_dir(d).map_or(0, |r| {
            r.filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| !e.file_name().to_string_lossy().starts_with('.'))
            })
            .count()
        })
    };
    count(dir) + count(&dir.join(intent_protocol::CLAIM_DIR))
}

/// Throughput: `n` intents renamed in at once. Executed: wait for n stand-ins; refused: wait
/// until the directory is empty. Returns intents per second.
fn throughput(s: &mut Setup, n: usize, id: &str, executed: bool, seed: usize) -> f64 {
    let names: Vec<String> = (0..n)
        .map(|i| format!("t{seed}-{i:06}.intent.json"))
        .collect();
    for (i, name) in names.iter().enumerate() {
        std::fs::write(s.intents.join(format!(".{name}")), body(id, seed + i)).expect("write");
    }
    let t0 = Instant::now();
    for name in &names {
        std::fs::rename(s.intents.join(format!(".{name}")), s.intents.join(name)).expect("rename");
    }
    if executed {
        wait_bytes(&mut s.fifo, n);
    }
    while pending(&s.intents) > 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    n as f64 / t0.elapsed().as_secs_f64()
}

fn main() -> ExitCode {
    let samples: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    let base = std::env::var_os("BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    // A stuck runner must not hang the benchmark forever.
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(600));
        eprintln!("intent_reactor: timed out");
        std::process::exit(1);
    });
    let have_peer = Command::new("inotifywait").arg("--help").output().is_ok();
    println!(
        "intent_reactor: {samples} latency samples, dir on {} (ours: claim + openat2 + fstat + strict parse + audit fdatasync per file)",
        base.display()
    );
    let executed_n = samples.max(50);
    let refused_n = samples * 10;

    let mut s = setup(&base);
    let r = Runner::ours(&s, false);
    let (our_p50, our_p99) = latency(&mut s, samples, "INTENT_RESTART_UNIT", 0);
    r.stop();
    let mut s = setup(&base);
    let r = Runner::ours(&s, true);
    let our_exec = throughput(&mut s, executed_n, "INTENT_BENCH_RESTART", true, 1_000_000);
    let our_refused = throughput(&mut s, refused_n, "INTENT_NOT_REGISTERED", false, 2_000_000);
    r.stop();
    println!(
        "ours : wake latency p50 {our_p50:>10.3?}  p99 {our_p99:>10.3?}  executed {our_exec:>8.0}/s  refused {our_refused:>8.0}/s"
    );

    if !have_peer {
        println!("peer : inotifywait not installed (apt-get install inotify-tools); no ratios");
        return ExitCode::SUCCESS;
    }
    let mut s = setup(&base);
    let Some(r) = Runner::shell(&s) else {
        println!("peer : could not start the shell loop");
        return ExitCode::FAILURE;
    };
    let (sh_p50, sh_p99) = latency(&mut s, samples, "INTENT_RESTART_UNIT", 3_000_000);
    let sh_exec = throughput(&mut s, executed_n, "INTENT_BENCH_RESTART", true, 4_000_000);
    let sh_refused = throughput(&mut s, refused_n, "INTENT_NOT_REGISTERED", false, 5_000_000);
    r.stop();
    println!(
        "shell: wake latency p50 {sh_p50:>10.3?}  p99 {sh_p99:>10.3?}  executed {sh_exec:>8.0}/s  refused {sh_refused:>8.0}/s"
    );
    let ratio = |a: Duration, b: Duration| b.as_secs_f64() / a.as_secs_f64();
    println!(
        "ratio (>1 = ours better): latency p50 {:.2}x  p99 {:.2}x  executed {:.2}x  refused {:.2}x",
        ratio(our_p50, sh_p50),
        ratio(our_p99, sh_p99),
        our_exec / sh_exec,
        our_refused / sh_refused
    );
    ExitCode::SUCCESS
}
