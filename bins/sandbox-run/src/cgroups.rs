//! cgroup limits for sandbox-run (--memory, --cpus, --pids), composed from the cgroup-limits crate.
//!
//! Wiring only: flags are parsed with the crate's parsers, groups are created (strict unless
//! `--best-effort`) below sandbox-run's own cgroups as `sandbox-run-<pid>-<n>`, groups left by a
//! SIGKILLed earlier run are removed first, and [`ActiveCgroup::finish`] turns readings into
//! the report's `cgroup` object before tearing everything down.

use cgroup_limits::{
    CgroupError, Limits, Options, WorkloadCgroup, cleanup_stale, parse_cpu_fraction, parse_size,
};
use serde_json::{Value, json};

/// Prefix of every group sandbox-run creates; also what stale clean-up looks for.
const PREFIX: &str = "sandbox-run";

/// Resource limits of the sandboxed program (cgroups; all processes it starts share them).
#[derive(Debug, Clone, clap::Args)]
pub struct CgroupArgs {
    /// memory limit e.g. 512M (K, M, G, T suffixes; swap is included in the limit)
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<String>,
    /// CPU limit as a fraction of one CPU, e.g. 0.5 (2 = two CPUs)
    #[arg(long, value_name = "FRACTION")]
    pub cpus: Option<String>,
    /// maximum number of processes and threads
    #[arg(long, value_name = "N")]
    pub pids: Option<u64>,
}

/// The program's cgroups while it runs. Dropping it tears them down too.
#[derive(Debug)]
pub struct ActiveCgroup {
    group: WorkloadCgroup,
    requested: Value,
}

/// The flag a crate-level limit name or control file belongs to, for error messages.
fn flag_for(limit_or_file: &str) -> &'static str {
    if limit_or_file.starts_with("memory") {
        "--memory"
    } else if limit_or_file.starts_with("cpu") {
        "--cpus"
    } else if limit_or_file.starts_with("pids") {
        "--pids"
    } else {
        "--memory/--cpus/--pids"
    }
}

fn describe(e: &CgroupError) -> String {
    let flag = match e {
        CgroupError::LimitUnavailable { limit, .. } | CgroupError::InvalidLimit { limit, .. } => {
            flag_for(limit)
        }
        CgroupError::Write { path, .. } => flag_for(
            path.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default(),
        ),
        _ => "--memory/--cpus/--pids",
    };
    format!("cannot apply {flag}: {e}")
}

/// Sets up the cgroups for the requested limits. `Ok(None)` when no limit was requested.
/// `Err(msg)` names the limit and the host's cause; sandbox-run then exits 125 having run
/// nothing. With `best_effort`, limits this host cannot apply are skipped and listed in the
/// report's `missing`.
pub fn prepare(args: &CgroupArgs, best_effort: bool) -> Result<Option<ActiveCgroup>, String> {
    if args.memory.is_none() && args.cpus.is_none() && args.pids.is_none() {
        return Ok(None);
    }
    let mut limits = Limits::none();
    if let Some(m) = &args.memory {
        limits = limits.with_memory_max(parse_size(m).map_err(|e| format!("--memory: {e}"))?);
    }
    if let Some(c) = &args.cpus {
        limits =
            limits.with_cpu_fraction(parse_cpu_fraction(c).map_err(|e| format!("--cpus: {e}"))?);
    }
    if let Some(p) = args.pids {
        limits = limits.with_pids_max(p);
    }
    limits.validate().map_err(|e| describe(&e))?;
    let options = Options::new().best_effort(best_effort);
    // A run that was SIGKILLed could not tear down: its groups carry its dead pid.
    match cleanup_stale(PREFIX, &options) {
        Ok(removed) if !removed.is_empty() => {
            tracing::info!(?removed, "removed cgroups of earlier runs that died");
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("stale cgroup clean-up: {e}"),
    }
    let group = WorkloadCgroup::create(PREFIX, &limits, &options).map_err(|e| describe(&e))?;
    tracing::debug!(group = group.name(), paths = ?group.paths(), "cgroups ready");
    let requested = json!({
        "memory_max_bytes": limits.memory_max,
        "cpu_fraction": limits.cpu_fraction,
        "pids_max": limits.pids_max,
    });
    Ok(Some(ActiveCgroup { group, requested }))
}

impl ActiveCgroup {
    /// Moves process `pid` into the groups; call it before the program execs.
    pub fn attach(&self, pid: u32) -> Result<(), String> {
        self.group
            .attach(pid)
            .map_err(|e| format!("cannot place the program in its cgroups: {e}"))
    }

    /// Whether the kernel's OOM killer killed a process of the sandbox.
    pub fn oom_killed(&self) -> bool {
        match self.group.oom_killed() {
            Ok(killed) => killed,
            Err(e) => {
                tracing::debug!("no OOM reading: {e}");
                false
            }
        }
    }

    /// Kills every process in the groups (on timeout or error) and waits until they are gone.
    pub fn kill_all(&self) {
        if let Err(e) = self.group.kill_all() {
            tracing::warn!("killing the sandbox's cgroups: {e}");
        }
    }

    /// Readings for the report, then teardown (kill what is left, remove the groups).
    pub fn finish(self) -> Value {
        let mut missing: Vec<Value> = self
            .group
            .missing()
            .iter()
            .map(|m| Value::from(m.as_str()))
            .collect();
        let usage = match self.group.usage() {
            Ok(u) => json!({
                "memory_peak_bytes": u.memory_peak,
                "memory_current_bytes": u.memory_current,
                "cpu_time_usec": u.cpu_time.map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
                "pids_current": u.pids_current,
            }),
            Err(e) => {
                missing.push(Value::from(format!("usage: {e}")));
                Value::Null
            }
        };
        let (oom_killed, oom_kills) = match self.group.oom_kills() {
            Ok(n) => (n > 0, Some(n)),
            Err(e) => {
                missing.push(Value::from(format!("oom: {e}")));
                (false, None)
            }
        };
        let applied: Vec<Value> = self
            .group
            .applied()
            .applied
            .iter()
            .map(|a| json!({"limit": a.limit, "file": a.file.display().to_string(), "value": a.value}))
            .collect();
        let mut report = json!({
            "setup": self.group.setup_kind().as_str(),
            "group": self.group.name(),
            "limits": self.requested,
            "applied": applied,
            "usage": usage,
            "oom_killed": oom_killed,
            "oom_kills": oom_kills,
            "missing": missing,
        });
        if let Err(e) = self.group.teardown() {
            tracing::warn!("cgroup teardown: {e}");
            report["teardown_error"] = Value::from(e.to_string());
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(memory: Option<&str>, cpus: Option<&str>, pids: Option<u64>) -> CgroupArgs {
        CgroupArgs {
            memory: memory.map(str::to_owned),
            cpus: cpus.map(str::to_owned),
            pids,
        }
    }

    #[test]
    fn no_limit_means_no_cgroup() {
        assert!(prepare(&args(None, None, None), false).unwrap().is_none());
    }

    #[test]
    fn bad_values_name_their_flag_before_anything_is_created() {
        let e = prepare(&args(Some("12Q"), None, None), false).unwrap_err();
        assert!(e.starts_with("--memory") && e.contains("12Q"), "{e}");
        let e = prepare(&args(None, Some("1e3"), None), false).unwrap_err();
        assert!(e.starts_with("--cpus"), "{e}");
        let e = prepare(&args(None, None, Some(0)), false).unwrap_err();
        assert!(e.contains("--pids"), "{e}");
    }

    #[test]
    fn files_map_to_flags() {
        assert_eq!(flag_for("memory.memsw.limit_in_bytes"), "--memory");
        assert_eq!(flag_for("cpu_fraction"), "--cpus");
        assert_eq!(flag_for("pids.max"), "--pids");
    }
}
