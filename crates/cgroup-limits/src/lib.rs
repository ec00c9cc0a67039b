//! Memory, CPU and pids limits per workload on cgroup v1 and v2, with usage, OOM detection and
//! teardown.
//!
//! A [`WorkloadCgroup`] is one workload's group in every cgroup hierarchy the host uses: the v1
//! `memory`, `cpu`/`cpuacct`, `pids` and `freezer` hierarchies on a v1 or hybrid host (plus the
//! controller-less v2 tree of a hybrid host, for `cgroup.kill` and `cgroup.events`), or one v2
//! group on a unified host. [`CgroupSetup::detect`] says which setup the host has.
//!
//! - **Own subtree only.** Groups are created below the caller's own cgroup in each hierarchy
//!   (from `/proc/self/cgroup`) or below a configured delegated root
//!   ([`Options::delegated_root`]), named `<prefix>-<pid>-<n>`; the hierarchy root's control
//!   files are never written. Prefixes are validated (no `/`, `..`, interface-file names).
//! - **Limits** ([`Limits`]): memory max (and high on v2), CPU as a fraction of one CPU
//!   (CFS quota per 100 ms period) and weight, pids max. Strict by default: a limit that cannot
//!   be applied is an error carrying the file and value ([`CgroupError`]);
//!   [`Options::best_effort`] turns that into a reported skip.
//! - **Readings** ([`WorkloadCgroup::usage`]): memory current and peak, CPU time, pids current.
//!   **OOM kills**: [`WorkloadCgroup::oom_kills`] (the kernel's counter), [`OomWatch`] to wait
//!   for them without polling.
//! - **Teardown**: kill everything (v2 `cgroup.kill`, else freeze + SIGKILL + thaw until
//!   empty), then remove the directories with a bounded retry; also on drop.
//!   [`cleanup_stale`] removes groups left by a runner that was SIGKILLed.
//!
//! # Example
//!
//! ```
//! use cgroup_limits::{CgroupSetup, Limits, Options, WorkloadCgroup, parse_cpu_fraction, parse_size};
//!
//! let limits = Limits::none()
//!     .with_memory_max(parse_size("512M")?)
//!     .with_cpu_fraction(parse_cpu_fraction("0.5")?)
//!     .with_pids_max(100);
//! // Needs write access to the caller's cgroups (root, or a delegated subtree).
//! match WorkloadCgroup::create("doc-example", &limits, &Options::new()) {
//!     Ok(group) => {
//!         println!("{} in {:?}", group.setup_kind(), group.paths());
//!         let mut child = std::process::Command::new("true").spawn()?;
//!         // A real runner attaches the child before it execs; `true` is harmless either way.
//!         let _ = group.attach(child.id());
//!         child.wait()?;
//!         println!("usage: {:?}, OOM kills: {}", group.usage()?, group.oom_kills()?);
//!         group.teardown()?; // kills what is left, removes every directory
//!     }
//!     Err(e) => eprintln!("no cgroups here ({}): {e}", CgroupSetup::detect().is_ok()),
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Kernel requirements
//!
//! cgroup v1 (memory, cpu, cpuacct, pids, freezer: whichever are mounted) or v2. OOM kill
//! counters need Linux 4.13+ on v1 (`oom_kill` in `memory.oom_control`); `cgroup.kill` needs
//! 5.14+ (else the freezer path is used); v2 `memory.peak` needs 5.19+ (else no peak reading).
//!
//! # Which dependency does what
//!
//! cgroups-rs writes the limits and freezes/thaws, through its per-controller types pointed at
//! directories this crate created. Everything else is done here: setup detection (statfs +
//! mountinfo), placement below our own cgroup, name checks, `mkdir`/`rmdir`, attach, kill,
//! readings (cgroups-rs turns read errors into zeros), and OOM events (its v1 helper panics in
//! a thread, its v2 helper reads v1 files). See the README.
#![forbid(unsafe_code)]

mod error;
mod fsio;
mod group;
mod limits;
mod names;
mod parse;
mod rsbridge;
mod setup;
mod watch;

pub use error::{CgroupError, ParseError};
pub use group::{Options, Usage, WorkloadCgroup, cleanup_stale};
pub use limits::{
    AppliedLimit, AppliedLimits, Limits, SkippedLimit, parse_cpu_fraction, parse_size,
};
pub use setup::{CgroupMount, CgroupSetup, SetupKind, V1Mounts};
pub use watch::OomWatch;

/// Entry points for the fuzz targets (`fuzz/fuzz_targets/cgroup_files.rs`): every parser of a
/// file this crate reads. Not a stable API.
#[doc(hidden)]
pub mod fuzzing {
    /// Feeds `data` to every parser; none may panic.
    pub fn parse_all(data: &[u8]) {
        let text = String::from_utf8_lossy(data);
        crate::parse::fuzz_all(&text);
        let _ = crate::parse_size(&text);
        let _ = crate::parse_cpu_fraction(&text);
    }
}
