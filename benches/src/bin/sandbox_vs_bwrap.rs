//! `sandbox_vs_bwrap`: start-up cost of `sandbox-run -- /bin/true` against bubblewrap with
//! comparable isolation and against a bare exec, interleaved in the same run; prints
//! mean/median/p90 and the ratios.
//!
//! Run: `cargo build --release -p sandbox-run && cargo run --release -p benches --bin
//! sandbox_vs_bwrap [-- RUNS]` (default 200 runs each). `SANDBOX_RUN` overrides the binary
//! path (default `$CARGO_TARGET_DIR/release/sandbox-run`, else `target/release/sandbox-run`);
//! `BWRAP` overrides `bwrap`.
//!
//! What each side does:
//! - bare: fork + exec `/bin/true`;
//! - bwrap: `--unshare-all --unshare-user --die-with-parent --new-session --clearenv`, ro-bind
//!   `/usr` with the merged-/usr symlinks, `--proc /proc`, `--dev /dev`, `--tmpfs /tmp`
//!   (no seccomp, no Landlock, caps dropped by bwrap);
//! - sandbox-run `--profile minimal` and `--profile shell`: everything in the ns-sandbox README
//!   (all namespaces, tmpfs root, binds, /proc, /dev, Landlock, seccomp, caps, init as PID 1).
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

struct Variant {
    name: &'static str,
    cmd: Vec<String>,
    samples: Vec<Duration>,
}

fn sandbox_run_path() -> PathBuf {
    if let Some(p) = std::env::var_os("SANDBOX_RUN") {
        return PathBuf::from(p);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("release/sandbox-run")
}

fn run_once(cmd: &[String]) -> Result<Duration, String> {
    let (prog, args) = cmd.split_first().ok_or("empty command")?;
    let t = Instant::now();
    let status = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("{prog}: {e}"))?;
    let elapsed = t.elapsed();
    if !status.status.success() {
        return Err(format!(
            "{}: {} ({})",
            cmd.join(" "),
            status.status,
            String::from_utf8_lossy(&status.stderr).trim()
        ));
    }
    Ok(elapsed)
}

fn stats(samples: &[Duration]) -> (f64, f64, f64) {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    let n = ms.len().max(1);
    let mean = ms.iter().sum::<f64>() / n as f64;
    let median = ms.get(n / 2).copied().unwrap_or(0.0);
    let p90 = ms.get((n * 9) / 10).copied().unwrap_or(0.0);
    (mean, median, p90)
}

fn main() -> ExitCode {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    let sr = sandbox_run_path();
    if !sr.exists() {
        eprintln!(
            "{} not found: run `cargo build --release -p sandbox-run` first (or set SANDBOX_RUN)",
            sr.display()
        );
        return ExitCode::FAILURE;
    }
    let sr = sr.display().to_string();
    let bwrap = std::env::var("BWRAP").unwrap_or_else(|_| "bwrap".into());
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_string()).collect::<Vec<_>>();
    let mut variants = vec![
        Variant {
            name: "bare exec",
            cmd: s(&["/bin/true"]),
            samples: Vec::new(),
        },
        Variant {
            name: "bwrap",
            cmd: s(&[
                &bwrap,
                "--unshare-all",
                "--unshare-user",
                "--die-with-parent",
                "--new-session",
                "--clearenv",
                "--ro-bind",
                "/usr",
                "/usr",
                "--symlink",
                "usr/lib",
                "/lib",
                "--symlink",
                "usr/lib64",
                "/lib64",
                "--symlink",
                "usr/bin",
                "/bin",
                "--proc",
                "/proc",
                "--dev",
                "/dev",
                "--tmpfs",
                "/tmp",
                "--",
                "/bin/true",
            ]),
            samples: Vec::new(),
        },
        Variant {
            name: "sandbox-run minimal",
            cmd: s(&[&sr, "--profile", "minimal", "--", "/bin/true"]),
            samples: Vec::new(),
        },
        Variant {
            name: "sandbox-run shell",
            cmd: s(&[&sr, "--profile", "shell", "--", "/bin/true"]),
            samples: Vec::new(),
        },
    ];
    // Check each side once; a missing bwrap only drops that column.
    variants.retain(|v| match run_once(&v.cmd) {
        Ok(_) => true,
        Err(e) => {
            eprintln!("skipping {}: {e}", v.name);
            false
        }
    });
    if !variants.iter().any(|v| v.name.starts_with("sandbox-run")) {
        eprintln!("sandbox-run does not work on this host; nothing to compare");
        return ExitCode::FAILURE;
    }
    // Warm-up, then interleaved runs so drift hits every variant alike.
    for v in &variants {
        for _ in 0..5 {
            let _ = run_once(&v.cmd);
        }
    }
    for _ in 0..runs {
        for v in &mut variants {
            match run_once(&v.cmd) {
                Ok(d) => v.samples.push(d),
                Err(e) => {
                    eprintln!("{}: {e}", v.name);
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    println!("start-up of /bin/true, {runs} runs each (interleaved), wall time per run:");
    println!(
        "{:<22} {:>10} {:>10} {:>10}",
        "variant", "mean ms", "median ms", "p90 ms"
    );
    let mut medians = Vec::new();
    for v in &variants {
        let (mean, median, p90) = stats(&v.samples);
        println!("{:<22} {mean:>10.3} {median:>10.3} {p90:>10.3}", v.name);
        medians.push((v.name, median, mean));
    }
    let get = |n: &str| medians.iter().find(|m| m.0 == n).map(|m| (m.1, m.2));
    for ours in ["sandbox-run minimal", "sandbox-run shell"] {
        let Some((om, oa)) = get(ours) else { continue };
        if let Some((bm, ba)) = get("bwrap") {
            println!(
                "{ours} / bwrap: median {:.2}x, mean {:.2}x",
                om / bm,
                oa / ba
            );
        }
        if let Some((xm, xa)) = get("bare exec") {
            println!(
                "{ours} / bare exec: median {:.2}x, mean {:.2}x",
                om / xm,
                oa / xa
            );
        }
    }
    ExitCode::SUCCESS
}
