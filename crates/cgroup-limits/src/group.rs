//! One workload's groups: creation inside our own subtree, limits, attach, readings, OOM
//! counters, kill and teardown; and the clean-up of groups left by a dead runner.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::CgroupError;
use crate::fsio;
use crate::limits::{AppliedLimits, Limits, SkippedLimit, cpu_quota_us};
use crate::names;
use crate::parse;
use crate::rsbridge;
use crate::setup::{self, CgroupMount, CgroupSetup, SetupKind};

/// Default bound for killing a group's processes and waiting until it is empty.
const DEFAULT_TEARDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// `rmdir` attempts (10 ms, doubling: about 1.3 s in all) after the group is empty.
const RMDIR_ATTEMPTS: u32 = 8;
/// Bound for `cgroup.procs`: 8 MiB holds about a million pids.
const MAX_PROCS_FILE: usize = 8 * 1024 * 1024;

/// How [`WorkloadCgroup::create`] and [`cleanup_stale`] find and use the hierarchy.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options {
    delegated_root: Option<String>,
    best_effort: bool,
    setup: Option<CgroupSetup>,
    teardown_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            delegated_root: None,
            best_effort: false,
            setup: None,
            teardown_timeout: DEFAULT_TEARDOWN_TIMEOUT,
        }
    }
}

impl Options {
    /// Strict, below the caller's own cgroups, setup detected, 5 s teardown bound.
    pub fn new() -> Self {
        Self::default()
    }

    /// Create groups below this cgroup path (as `/proc/self/cgroup` writes it, e.g.
    /// `/user.slice/app.service/workloads`) in every hierarchy, instead of below our own
    /// cgroups. It must exist and be delegated to us.
    #[must_use]
    pub fn delegated_root(mut self, cgroup_path: impl Into<String>) -> Self {
        self.delegated_root = Some(cgroup_path.into());
        self
    }

    /// With `true`, a limit that cannot be applied is skipped and reported
    /// ([`WorkloadCgroup::applied`]) instead of failing creation.
    #[must_use]
    pub fn best_effort(mut self, yes: bool) -> Self {
        self.best_effort = yes;
        self
    }

    /// Use this setup instead of [`CgroupSetup::detect`] (for instance
    /// [`CgroupSetup::v2_only`] of a hybrid host).
    #[must_use]
    pub fn setup(mut self, setup: CgroupSetup) -> Self {
        self.setup = Some(setup);
        self
    }

    /// How long killing may take before teardown reports the group as not empty.
    #[must_use]
    pub fn teardown_timeout(mut self, timeout: Duration) -> Self {
        self.teardown_timeout = timeout;
        self
    }
}

/// What a group directory is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Role {
    Memory,
    Cpu,
    CpuTime,
    Pids,
    Freezer,
    /// The v2 group: `cgroup.kill`, `cgroup.events`.
    Unified,
}

impl Role {
    fn label(self) -> &'static str {
        match self {
            Role::Memory => "memory",
            Role::Cpu => "cpu",
            Role::CpuTime => "cpu time",
            Role::Pids => "pids",
            Role::Freezer => "freezer",
            Role::Unified => "v2 group",
        }
    }
}

/// One directory of a workload (one per mounted hierarchy used).
#[derive(Debug, Clone)]
struct GroupDir {
    dir: PathBuf,
    v2: bool,
    roles: Vec<Role>,
}

/// A hierarchy in which to create a group: its parent directory and what it serves.
#[derive(Debug)]
struct Placement {
    parent: PathBuf,
    mount: CgroupMount,
    v2: bool,
    roles: Vec<Role>,
    /// A v2-only host: limits live in this hierarchy, controllers must be passed down.
    carries_limits: bool,
}

/// Resource usage of a workload. A field is `None` when this setup cannot measure it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Usage {
    /// Memory charged now, bytes (v1 `memory.usage_in_bytes`, v2 `memory.current`).
    pub memory_current: Option<u64>,
    /// Highest memory charged, bytes (v1 `memory.max_usage_in_bytes`, v2 `memory.peak`,
    /// Linux 5.19+).
    pub memory_peak: Option<u64>,
    /// CPU time used by all members, live and exited (v1 `cpuacct.usage`, v2 `cpu.stat`
    /// `usage_usec`; the v2 file exists without the cpu controller, so hybrid hosts without a
    /// v1 cpuacct hierarchy still measure it).
    pub cpu_time: Option<Duration>,
    /// Processes and threads now (`pids.current`).
    pub pids_current: Option<u64>,
}

/// The groups of one workload, with limits applied. Dropping it tears it down (kills every
/// member, removes the directories); [`WorkloadCgroup::teardown`] does the same and reports
/// errors.
#[derive(Debug)]
pub struct WorkloadCgroup {
    name: String,
    kind: SetupKind,
    set: GroupSet,
    limits: Limits,
    applied: AppliedLimits,
    missing: Vec<String>,
}

impl WorkloadCgroup {
    /// Creates the groups of a new workload named `<prefix>-<our pid>-<n>` below our own cgroup
    /// in every hierarchy used (or below [`Options::delegated_root`]), and applies `limits`.
    ///
    /// Strict by default: a requested limit that this host cannot apply, or any failed write,
    /// is an error and nothing is left behind. With [`Options::best_effort`], such limits are
    /// skipped and listed in [`WorkloadCgroup::applied`].
    pub fn create(prefix: &str, limits: &Limits, options: &Options) -> Result<Self, CgroupError> {
        names::validate_prefix(prefix)?;
        limits.validate()?;
        let setup = match &options.setup {
            Some(s) => s.clone(),
            None => CgroupSetup::detect()?,
        };
        let name = names::fresh_name(prefix);
        let (placements, unplaced) = placements(&setup, options)?;
        let required = required_roles(limits);
        let mut missing = Vec::new();
        let nowhere = placements.is_empty();
        for (roles, e) in unplaced {
            if nowhere || !options.best_effort && roles.iter().any(|r| required.contains(r)) {
                return Err(e);
            }
            missing.push(format!("{} group not created: {e}", labels(&roles)));
        }
        let mut group = WorkloadCgroup {
            name: name.clone(),
            kind: setup.kind(),
            set: GroupSet {
                dirs: Vec::new(),
                timeout: options.teardown_timeout,
                live: true,
            },
            limits: limits.clone(),
            applied: AppliedLimits::default(),
            missing: Vec::new(),
        };
        match group.build(&name, placements, &required, limits, options) {
            Ok(()) => {
                missing.append(&mut group.missing);
                group.missing = missing;
                Ok(group)
            }
            Err(e) => {
                // Nothing half-made is left: remove what was created, report the first cause.
                if let Err(cleanup) = group.set.teardown() {
                    tracing::warn!("removing the half-made group {name}: {cleanup}");
                }
                Err(e)
            }
        }
    }

    fn build(
        &mut self,
        name: &str,
        placements: Vec<Placement>,
        required: &BTreeSet<Role>,
        limits: &Limits,
        options: &Options,
    ) -> Result<(), CgroupError> {
        let mut first_error = None;
        for p in placements {
            // On a v2-only host the one group is the workload: it can never be skipped.
            let needed = p.carries_limits || p.roles.iter().any(|r| required.contains(r));
            match create_in(&p, name, required, options) {
                Ok((dir, notes)) => {
                    self.missing.extend(notes);
                    self.set.dirs.push(dir);
                }
                Err(e) if needed && !options.best_effort => return Err(e),
                Err(e) => {
                    self.missing
                        .push(format!("{} group not created: {e}", labels(&p.roles)));
                    first_error.get_or_insert(e);
                }
            }
        }
        if self.set.dirs.is_empty() {
            return Err(first_error.unwrap_or(CgroupError::NoCgroupMount));
        }
        self.apply_limits(limits, options.best_effort)
    }

    fn apply_limits(&mut self, limits: &Limits, best_effort: bool) -> Result<(), CgroupError> {
        let mut results: Vec<(&'static str, Result<Vec<crate::AppliedLimit>, CgroupError>)> =
            Vec::new();
        let dir_of = |role| self.set.dir(role).map(|d| (d.dir.clone(), d.v2));
        let unavailable = |limit: &'static str, role: Role| CgroupError::LimitUnavailable {
            limit,
            reason: format!("no {} hierarchy group for this workload", role.label()),
        };
        if let Some(bytes) = limits.memory_max {
            let r = match dir_of(Role::Memory) {
                Some((d, v2)) => rsbridge::set_memory_max(&d, v2, bytes),
                None => Err(unavailable("memory_max", Role::Memory)),
            };
            results.push(("memory_max", r));
        }
        if let Some(bytes) = limits.memory_high {
            let r = match dir_of(Role::Memory) {
                Some((d, true)) => rsbridge::set_memory_high(&d, bytes).map(|a| vec![a]),
                Some((_, false)) => Err(CgroupError::LimitUnavailable {
                    limit: "memory_high",
                    reason: "cgroup v1 has no memory.high".to_owned(),
                }),
                None => Err(unavailable("memory_high", Role::Memory)),
            };
            results.push(("memory_high", r));
        }
        if let Some(fraction) = limits.cpu_fraction {
            let r = match dir_of(Role::Cpu) {
                Some((d, v2)) => {
                    cpu_quota_us(fraction).and_then(|q| rsbridge::set_cpu_quota(&d, v2, q))
                }
                None => Err(unavailable("cpu_fraction", Role::Cpu)),
            };
            results.push(("cpu_fraction", r));
        }
        if let Some(weight) = limits.cpu_weight {
            let r = match dir_of(Role::Cpu) {
                Some((d, v2)) => rsbridge::set_cpu_weight(&d, v2, weight).map(|a| vec![a]),
                None => Err(unavailable("cpu_weight", Role::Cpu)),
            };
            results.push(("cpu_weight", r));
        }
        if let Some(max) = limits.pids_max {
            let r = match dir_of(Role::Pids) {
                Some((d, v2)) => rsbridge::set_pids_max(&d, v2, max).map(|a| vec![a]),
                None => Err(unavailable("pids_max", Role::Pids)),
            };
            results.push(("pids_max", r));
        }
        for (limit, r) in results {
            match r {
                Ok(mut applied) => self.applied.applied.append(&mut applied),
                Err(e) if best_effort => {
                    self.missing.push(format!("{limit}: {e}"));
                    self.applied.skipped.push(SkippedLimit {
                        limit,
                        reason: e.to_string(),
                    });
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The group name (`<prefix>-<pid>-<n>`), the same in every hierarchy.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Which setup the groups live in.
    pub fn setup_kind(&self) -> SetupKind {
        self.kind
    }

    /// The limits requested.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Every control file written for the limits, and the limits skipped in best-effort mode.
    pub fn applied(&self) -> &AppliedLimits {
        &self.applied
    }

    /// What this workload lacks on this host, one line each (skipped limits, hierarchies
    /// without a group, readings that cannot be taken).
    pub fn missing(&self) -> &[String] {
        &self.missing
    }

    /// The directories of the workload, one per hierarchy.
    pub fn paths(&self) -> Vec<&Path> {
        self.set.dirs.iter().map(|d| d.dir.as_path()).collect()
    }

    /// Moves process `pid` (the whole thread group) into every group of the workload, by
    /// writing it to each `cgroup.procs`. To have the program run no instruction outside the
    /// groups, attach it while it waits before `execve` (for instance on a pipe).
    pub fn attach(&self, pid: u32) -> Result<(), CgroupError> {
        for d in &self.set.dirs {
            let path = d.dir.join("cgroup.procs");
            if pid == 0 {
                return Err(CgroupError::Attach {
                    pid,
                    path,
                    source: io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "pid 0 would move the caller itself",
                    ),
                });
            }
            fsio::write_control(&path, &pid.to_string()).map_err(|e| match e {
                CgroupError::Write { source, .. } => CgroupError::Attach { pid, path, source },
                other => other,
            })?;
        }
        Ok(())
    }

    /// Current readings. Files that this setup does not have give `None`; a file that exists
    /// but cannot be read or parsed is an error.
    pub fn usage(&self) -> Result<Usage, CgroupError> {
        let mut u = Usage::default();
        if let Some(d) = self.set.dir(Role::Memory) {
            let (current, peak) = if d.v2 {
                ("memory.current", "memory.peak")
            } else {
                ("memory.usage_in_bytes", "memory.max_usage_in_bytes")
            };
            u.memory_current = read_optional(&d.dir.join(current), parse::parse_single_u64)?;
            u.memory_peak = read_optional(&d.dir.join(peak), parse::parse_single_u64)?;
        }
        if let Some(d) = self.set.dir(Role::CpuTime) {
            u.cpu_time = if d.v2 {
                read_optional(&d.dir.join("cpu.stat"), |t| {
                    parse::parse_flat_keyed(t)?.require("usage_usec")
                })?
                .map(Duration::from_micros)
            } else {
                read_optional(&d.dir.join("cpuacct.usage"), parse::parse_single_u64)?
                    .map(Duration::from_nanos)
            };
        }
        if let Some(d) = self.set.dir(Role::Pids) {
            u.pids_current = read_optional(&d.dir.join("pids.current"), parse::parse_single_u64)?;
        }
        Ok(u)
    }

    /// How many processes the kernel's OOM killer killed in the group (v1 `memory.oom_control`
    /// `oom_kill`, v2 `memory.events` `oom_kill`). Errors with [`CgroupError::NotTracked`]
    /// when there is no memory group.
    pub fn oom_kills(&self) -> Result<u64, CgroupError> {
        let Some(d) = self.set.dir(Role::Memory) else {
            return Err(CgroupError::NotTracked {
                controller: "memory",
                operation: "count OOM kills",
            });
        };
        let file = if d.v2 {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        fsio::read_parsed(&d.dir.join(file), |t| {
            parse::parse_flat_keyed(t)?.require("oom_kill")
        })
    }

    /// Whether the OOM killer killed anything in the group.
    pub fn oom_killed(&self) -> Result<bool, CgroupError> {
        Ok(self.oom_kills()? > 0)
    }

    /// The file whose changes signal OOM kills: v2 `memory.events` (watch it with inotify
    /// `IN_MODIFY`), v1 `memory.oom_control` (register an eventfd on it through
    /// `cgroup.event_control`). See [`crate::OomWatch`].
    pub(crate) fn memory_dir(&self) -> Option<(&Path, bool)> {
        self.set.dir(Role::Memory).map(|d| (d.dir.as_path(), d.v2))
    }

    /// The v2 group directory (`cgroup.events`, `cgroup.kill`), if any.
    pub(crate) fn v2_dir(&self) -> Option<&Path> {
        self.set.dir(Role::Unified).map(|d| d.dir.as_path())
    }

    /// Waits until the workload has no process left, up to `timeout` (`false` on timeout): on
    /// v2 woken by inotify on `cgroup.events` (`populated 0`), on v1 by polling `cgroup.procs`.
    pub fn wait_empty(&self, timeout: Duration) -> Result<bool, CgroupError> {
        if let Some(dir) = self.v2_dir() {
            return crate::watch::wait_unpopulated(dir, timeout);
        }
        let start = Instant::now();
        loop {
            if self.set.members()?.is_empty() {
                return Ok(true);
            }
            if start.elapsed() >= timeout {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Freezes every member (v1 freezer or v2 `cgroup.freeze`).
    pub fn freeze(&self) -> Result<(), CgroupError> {
        self.set.set_frozen(true)
    }

    /// Thaws every member.
    pub fn thaw(&self) -> Result<(), CgroupError> {
        self.set.set_frozen(false)
    }

    /// Kills every process of the workload and waits until every group is empty (bounded by
    /// [`Options::teardown_timeout`]): v2 `cgroup.kill` where there is one, then in every
    /// hierarchy freeze, SIGKILL each listed process, thaw, until the lists are empty.
    pub fn kill_all(&self) -> Result<(), CgroupError> {
        self.set.kill_all()
    }

    /// Kills everything, waits until empty, removes every directory (bounded retry). Errors
    /// are collected, not stopped at: everything that can be removed is.
    pub fn teardown(mut self) -> Result<(), CgroupError> {
        self.set.teardown()
    }
}

impl Drop for WorkloadCgroup {
    fn drop(&mut self) {
        if let Err(e) = self.set.teardown() {
            tracing::warn!(group = %self.name, "cgroup teardown on drop: {e}");
        }
    }
}

/// Directories to kill and remove: a workload's, or a stale one's.
#[derive(Debug)]
struct GroupSet {
    dirs: Vec<GroupDir>,
    timeout: Duration,
    live: bool,
}

impl GroupSet {
    fn dir(&self, role: Role) -> Option<&GroupDir> {
        self.dirs.iter().find(|d| d.roles.contains(&role))
    }

    fn set_frozen(&self, frozen: bool) -> Result<(), CgroupError> {
        let Some(d) = self.dir(Role::Freezer) else {
            return Err(CgroupError::NotTracked {
                controller: "freezer",
                operation: if frozen { "freeze" } else { "thaw" },
            });
        };
        rsbridge::set_frozen(&d.dir, d.v2, frozen)
    }

    /// Every pid listed in any of the groups.
    fn members(&self) -> Result<BTreeSet<u32>, CgroupError> {
        let mut all = BTreeSet::new();
        for d in &self.dirs {
            let path = d.dir.join("cgroup.procs");
            match fsio::read_bounded(&path, MAX_PROCS_FILE) {
                Ok(text) => {
                    let pids = parse::parse_pid_list(&text)
                        .map_err(|error| CgroupError::Parse { path, error })?;
                    all.extend(pids);
                }
                // Already removed: nothing in it.
                Err(CgroupError::Read { source, .. })
                    if source.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(all)
    }

    fn kill_all(&self) -> Result<(), CgroupError> {
        let start = Instant::now();
        let mut errors = Vec::new();
        // v2: one write kills every member, including ones forking right now.
        let v2_kill = self
            .dir(Role::Unified)
            .map(|d| d.dir.join("cgroup.kill"))
            .filter(|p| p.exists());
        if let Some(path) = &v2_kill
            && let Err(e) = fsio::write_control(path, "1")
        {
            errors.push(e);
        }
        // Every hierarchy: freeze (no fork between listing and killing), SIGKILL, thaw; again
        // until empty. A v1 freezer cannot deliver SIGKILL to a frozen task: thawing is needed.
        let freezer = self
            .dir(Role::Freezer)
            .filter(|d| !d.v2 || v2_kill.is_none());
        let own = std::process::id();
        let mut delay = Duration::from_millis(1);
        loop {
            let members = match self.members() {
                Ok(m) => m,
                Err(e) => {
                    errors.push(e);
                    break;
                }
            };
            if members.is_empty() {
                break;
            }
            if members.contains(&own) {
                errors.push(CgroupError::SelfInGroup {
                    path: self.dirs.first().map(|d| d.dir.clone()).unwrap_or_default(),
                });
                break;
            }
            if start.elapsed() > self.timeout {
                errors.push(CgroupError::NotEmpty {
                    path: self.dirs.first().map(|d| d.dir.clone()).unwrap_or_default(),
                    remaining: members.into_iter().take(16).collect(),
                    waited: start.elapsed(),
                });
                break;
            }
            // A failed freeze is reported; killing goes on without it.
            let frozen = match freezer.map(|d| rsbridge::set_frozen(&d.dir, d.v2, true)) {
                Some(Ok(())) => true,
                Some(Err(e)) => {
                    errors.push(e);
                    false
                }
                None => false,
            };
            for pid in &members {
                if let Err(e) = sigkill(*pid) {
                    errors.push(CgroupError::Signal {
                        pid: *pid,
                        path: self.dirs.first().map(|d| d.dir.clone()).unwrap_or_default(),
                        source: e,
                    });
                }
            }
            if frozen
                && let Some(d) = freezer
                && let Err(e) = rsbridge::set_frozen(&d.dir, d.v2, false)
            {
                errors.push(e);
            }
            if errors.len() > 16 {
                break;
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(20));
        }
        collect(errors)
    }

    fn teardown(&mut self) -> Result<(), CgroupError> {
        if !self.live {
            return Ok(());
        }
        self.live = false;
        let mut errors = Vec::new();
        if let Err(e) = self.kill_all() {
            errors.push(e);
        }
        // Leaves were created last; remove in reverse order.
        for d in self.dirs.iter().rev() {
            if let Err(e) = remove_dir(&d.dir) {
                errors.push(e);
            }
        }
        collect(errors)
    }
}

fn collect(mut errors: Vec<CgroupError>) -> Result<(), CgroupError> {
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0)),
        _ => Err(CgroupError::Teardown { errors }),
    }
}

fn sigkill(pid: u32) -> Result<(), io::Error> {
    let pid = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "pid out of range"))?;
    match rustix::process::kill_process(pid, rustix::process::Signal::KILL) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// `rmdir` with a bounded retry: a group can stay busy for a moment after its last member died.
fn remove_dir(dir: &Path) -> Result<(), CgroupError> {
    let mut delay = Duration::from_millis(10);
    let mut attempt = 1;
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(source) if attempt >= RMDIR_ATTEMPTS => {
                return Err(CgroupError::Remove {
                    path: dir.to_owned(),
                    attempts: attempt,
                    source,
                });
            }
            Err(_) => {
                std::thread::sleep(delay);
                delay *= 2;
                attempt += 1;
            }
        }
    }
}

/// Reads and parses a file that may not exist on this kernel/setup.
fn read_optional<T>(
    path: &Path,
    parse: impl FnOnce(&str) -> Result<T, crate::ParseError>,
) -> Result<Option<T>, CgroupError> {
    match fsio::read_parsed(path, parse) {
        Ok(v) => Ok(Some(v)),
        Err(CgroupError::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// The roles the requested limits need.
fn required_roles(limits: &Limits) -> BTreeSet<Role> {
    let mut r = BTreeSet::new();
    if limits.memory_max.is_some() || limits.memory_high.is_some() {
        r.insert(Role::Memory);
    }
    if limits.cpu_fraction.is_some() || limits.cpu_weight.is_some() {
        r.insert(Role::Cpu);
    }
    if limits.pids_max.is_some() {
        r.insert(Role::Pids);
    }
    r
}

fn labels(roles: &[Role]) -> String {
    roles
        .iter()
        .map(|r| r.label())
        .collect::<Vec<_>>()
        .join("+")
}

/// A hierarchy that got no placement: the roles it would have served, and why.
type Unplaced = (Vec<Role>, CgroupError);

/// Where to create groups: one placement per mounted hierarchy used. Hierarchies whose parent
/// cannot be found are returned apart, with the reason.
fn placements(
    setup: &CgroupSetup,
    options: &Options,
) -> Result<(Vec<Placement>, Vec<Unplaced>), CgroupError> {
    if let Some(root) = &options.delegated_root {
        names::validate_delegated_root(root)?;
    }
    let own = match &options.delegated_root {
        Some(_) => Vec::new(),
        None => setup::own_cgroups()?,
    };
    let base = |controller: Option<&str>| -> Result<String, CgroupError> {
        match &options.delegated_root {
            Some(root) => Ok(root.clone()),
            None => setup::own_path(&own, controller),
        }
    };
    let mut out: Vec<Placement> = Vec::new();
    let mut missing = Vec::new();
    let carries_limits = matches!(setup, CgroupSetup::Unified { .. });
    let mut place = |mount: &CgroupMount, controller: Option<&str>, v2: bool, roles: Vec<Role>| {
        let parent = base(controller).and_then(|b| mount.dir_of(&b));
        match parent {
            Ok(parent) => out.push(Placement {
                parent,
                mount: mount.clone(),
                v2,
                roles,
                carries_limits,
            }),
            Err(e) => missing.push((roles, e)),
        }
    };
    match setup {
        CgroupSetup::Unified { root } => {
            // Which controllers the group gets is known once it exists.
            place(
                root,
                None,
                true,
                vec![Role::Unified, Role::Freezer, Role::CpuTime],
            );
        }
        CgroupSetup::Hybrid { v1, .. } | CgroupSetup::Legacy { v1 } => {
            // Co-mounted controllers (`cpu,cpuacct`) share one directory.
            let mut by_mount: Vec<(&CgroupMount, &'static str, Vec<Role>)> = Vec::new();
            for (name, mount) in v1.iter() {
                let role = match name {
                    "memory" => Role::Memory,
                    "cpu" => Role::Cpu,
                    "cpuacct" => Role::CpuTime,
                    "pids" => Role::Pids,
                    _ => Role::Freezer,
                };
                match by_mount
                    .iter_mut()
                    .find(|(m, _, _)| m.mount_point == mount.mount_point)
                {
                    Some((_, _, roles)) => roles.push(role),
                    None => by_mount.push((mount, name, vec![role])),
                }
            }
            for (mount, name, roles) in by_mount {
                place(mount, Some(name), false, roles);
            }
            if let CgroupSetup::Hybrid { unified, .. } = setup {
                let mut roles = vec![Role::Unified];
                // Without a v1 cpuacct, the v2 group's cpu.stat still measures CPU time.
                if v1.cpuacct.is_none() {
                    roles.push(Role::CpuTime);
                }
                if v1.freezer.is_none() {
                    roles.push(Role::Freezer);
                }
                place(unified, None, true, roles);
            }
        }
    }
    Ok((out, missing))
}

/// Creates the group `name` of one placement; on v2 first makes sure the parent passes down
/// the controllers that required limits need.
fn create_in(
    p: &Placement,
    name: &str,
    required: &BTreeSet<Role>,
    options: &Options,
) -> Result<(GroupDir, Vec<String>), CgroupError> {
    let mut notes = Vec::new();
    let is_v2 = fsio::ensure_cgroup_fs(&p.parent)?;
    if is_v2 != p.v2 {
        return Err(CgroupError::NotCgroupFs {
            path: p.parent.clone(),
            magic: fsio::fs_magic(&p.parent)?,
        });
    }
    let mut roles = p.roles.clone();
    if p.carries_limits {
        roles.extend(unified_controllers(p, required, options, &mut notes)?);
    }
    let dir = p.parent.join(name);
    match std::fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(CgroupError::AlreadyExists { path: dir });
        }
        Err(source) => return Err(CgroupError::Create { path: dir, source }),
    }
    Ok((
        GroupDir {
            dir,
            v2: p.v2,
            roles,
        },
        notes,
    ))
}

/// On a unified (v2-only) setup: the controllers available to a child of `p.parent`, enabling
/// in the parent's `cgroup.subtree_control` the ones required limits need. The hierarchy's
/// root is never written. Returns the roles the new group will serve.
fn unified_controllers(
    p: &Placement,
    required: &BTreeSet<Role>,
    options: &Options,
    notes: &mut Vec<String>,
) -> Result<Vec<Role>, CgroupError> {
    let subtree_path = p.parent.join("cgroup.subtree_control");
    let available = fsio::read_parsed(
        &p.parent.join("cgroup.controllers"),
        parse::parse_controller_list,
    )?;
    let mut enabled = fsio::read_parsed(&subtree_path, parse::parse_controller_list)?;
    let is_root = p.parent == p.mount.mount_point && p.mount.mount_root == "/";
    let mut roles = Vec::new();
    for (controller, role) in [
        ("memory", Role::Memory),
        ("cpu", Role::Cpu),
        ("pids", Role::Pids),
    ] {
        if enabled.iter().any(|c| c == controller) {
            roles.push(role);
            continue;
        }
        if !required.contains(&role) {
            notes.push(format!(
                "{controller} readings: controller not enabled in {}",
                subtree_path.display()
            ));
            continue;
        }
        let reason = if !available.iter().any(|c| c == controller) {
            Some(format!(
                "the {controller} controller is not available in {} (cgroup.controllers: {:?})",
                p.parent.display(),
                available.join(" ")
            ))
        } else if is_root {
            Some(format!(
                "the {controller} controller is not enabled in {} and this crate never writes \
                 the hierarchy root's control files; use a delegated root",
                subtree_path.display()
            ))
        } else {
            match fsio::write_control(&subtree_path, &format!("+{controller}")) {
                Ok(()) => {
                    enabled.push(controller.to_owned());
                    roles.push(role);
                    None
                }
                Err(e) if !options.best_effort => return Err(e),
                Err(e) => Some(e.to_string()),
            }
        };
        if let Some(reason) = reason {
            if !options.best_effort {
                return Err(CgroupError::LimitUnavailable {
                    limit: match role {
                        Role::Memory => "memory_max",
                        Role::Cpu => "cpu_fraction",
                        _ => "pids_max",
                    },
                    reason,
                });
            }
            notes.push(reason);
        }
    }
    Ok(roles)
}

/// Removes the groups of `prefix` whose runner is dead (its pid, embedded in the group name,
/// no longer exists): kills what is left in them, then removes the directories. Returns the
/// directories removed. Run it at start, before creating new groups.
///
/// Limits: the pid is checked in our pid namespace, and a reused pid keeps a stale group
/// until that process is gone too.
pub fn cleanup_stale(prefix: &str, options: &Options) -> Result<Vec<PathBuf>, CgroupError> {
    names::validate_prefix(prefix)?;
    let setup = match &options.setup {
        Some(s) => s.clone(),
        None => CgroupSetup::detect()?,
    };
    let (placements, _unplaced) = placements(&setup, options)?;
    // name -> its directories in every hierarchy
    let mut stale: Vec<(String, Vec<GroupDir>)> = Vec::new();
    let mut errors = Vec::new();
    for p in &placements {
        // One unreadable hierarchy does not keep the others from being cleaned.
        let entries = match std::fs::read_dir(&p.parent) {
            Ok(e) => e,
            Err(source) => {
                errors.push(CgroupError::Inspect {
                    path: p.parent.clone(),
                    source,
                });
                continue;
            }
        };
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(source) => {
                    errors.push(CgroupError::Inspect {
                        path: p.parent.clone(),
                        source,
                    });
                    break;
                }
            };
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let Some(pid) = names::owner_pid(prefix, &name) else {
                continue;
            };
            if !entry.file_type().is_ok_and(|t| t.is_dir()) || pid_alive(pid) {
                continue;
            }
            let dir = GroupDir {
                dir: entry.path(),
                v2: p.v2,
                roles: p.roles.clone(),
            };
            match stale.iter_mut().find(|(n, _)| *n == name) {
                Some((_, dirs)) => dirs.push(dir),
                None => stale.push((name, vec![dir])),
            }
        }
    }
    let mut removed = Vec::new();
    for (_name, dirs) in stale {
        let paths: Vec<PathBuf> = dirs.iter().map(|d| d.dir.clone()).collect();
        let mut set = GroupSet {
            dirs,
            timeout: options.teardown_timeout,
            live: true,
        };
        match set.teardown() {
            Ok(()) => removed.extend(paths),
            Err(e) => errors.push(e),
        }
    }
    collect(errors).map(|()| removed)
}

fn pid_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    // EPERM means it exists but is not ours to signal: alive.
    !matches!(
        rustix::process::test_kill_process(pid),
        Err(rustix::io::Errno::SRCH)
    )
}

#[cfg(test)]
mod tests {
    //! Readings and OOM counters from v2 and v1 file names, on plain directories standing in
    //! for cgroup directories (this host's v2 tree has no controllers).
    use super::*;

    fn fake(dir: &Path, v2: bool, roles: Vec<Role>) -> WorkloadCgroup {
        WorkloadCgroup {
            name: "fake".to_owned(),
            kind: if v2 {
                SetupKind::Unified
            } else {
                SetupKind::Legacy
            },
            set: GroupSet {
                dirs: vec![GroupDir {
                    dir: dir.to_owned(),
                    v2,
                    roles,
                }],
                timeout: Duration::from_millis(100),
                // Never kill or remove anything for a fake.
                live: false,
            },
            limits: Limits::none(),
            applied: AppliedLimits::default(),
            missing: Vec::new(),
        }
    }

    #[test]
    fn v2_readings_and_oom_counter() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        std::fs::write(d.join("memory.current"), "1000\n").unwrap();
        std::fs::write(d.join("memory.peak"), "5000\n").unwrap();
        std::fs::write(d.join("cpu.stat"), "usage_usec 250000\nuser_usec 1\n").unwrap();
        std::fs::write(d.join("pids.current"), "3\n").unwrap();
        std::fs::write(
            d.join("memory.events"),
            "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\noom_group_kill 0\n",
        )
        .unwrap();
        let g = fake(
            d,
            true,
            vec![Role::Memory, Role::CpuTime, Role::Pids, Role::Unified],
        );
        let u = g.usage().unwrap();
        assert_eq!(u.memory_current, Some(1000));
        assert_eq!(u.memory_peak, Some(5000));
        assert_eq!(u.cpu_time, Some(Duration::from_millis(250)));
        assert_eq!(u.pids_current, Some(3));
        assert_eq!(g.oom_kills().unwrap(), 1);
        // memory.peak is 5.19+: absent means no reading, not an error.
        std::fs::remove_file(d.join("memory.peak")).unwrap();
        assert_eq!(g.usage().unwrap().memory_peak, None);
        // A garbled file is an error naming it.
        std::fs::write(d.join("memory.events"), "oom_kill lots\n").unwrap();
        let e = g.oom_kills().unwrap_err().to_string();
        assert!(e.contains("memory.events"), "{e}");
    }

    #[test]
    fn v1_readings_and_oom_counter() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        std::fs::write(d.join("memory.usage_in_bytes"), "4096\n").unwrap();
        std::fs::write(d.join("memory.max_usage_in_bytes"), "8192\n").unwrap();
        std::fs::write(d.join("cpuacct.usage"), "1500000000\n").unwrap();
        std::fs::write(
            d.join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .unwrap();
        let g = fake(d, false, vec![Role::Memory, Role::CpuTime]);
        let u = g.usage().unwrap();
        assert_eq!(u.memory_current, Some(4096));
        assert_eq!(u.memory_peak, Some(8192));
        assert_eq!(u.cpu_time, Some(Duration::from_millis(1500)));
        assert_eq!(u.pids_current, None);
        assert!(g.oom_killed().unwrap());
        let none = fake(d, false, vec![Role::CpuTime]);
        assert!(matches!(
            none.oom_kills(),
            Err(CgroupError::NotTracked {
                controller: "memory",
                ..
            })
        ));
    }

    #[test]
    fn v2_oom_watch_wakes_on_memory_events_change() {
        // inotify IN_MODIFY behaves the same on a regular file as on memory.events.
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        std::fs::write(d.join("memory.events"), "oom_kill 0\n").unwrap();
        let g = fake(d, true, vec![Role::Memory]);
        let mut watch = crate::OomWatch::new(&g).unwrap();
        assert!(!watch.wait(Duration::from_millis(50)).unwrap());
        let path = d.join("memory.events");
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            std::fs::write(path, "oom_kill 1\n").unwrap();
        });
        assert!(watch.wait(Duration::from_secs(5)).unwrap());
        writer.join().unwrap();
        assert_eq!(g.oom_kills().unwrap(), 1);
    }
}
