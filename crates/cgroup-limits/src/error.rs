//! Error types: one enum for every operation of the crate, each variant carrying the path,
//! value or limit that failed.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Why a cgroup or `/proc` file could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The file is bigger than the bound this crate reads.
    #[error("input exceeds the {max}-byte bound")]
    TooLarge {
        /// The bound, in bytes.
        max: usize,
    },
    /// The file is not UTF-8.
    #[error("input is not UTF-8")]
    NotUtf8,
    /// The file is empty where a value was expected.
    #[error("input is empty")]
    Empty,
    /// A line does not have the expected shape.
    #[error("line {line}: {reason}")]
    BadLine {
        /// 1-based line number.
        line: usize,
        /// What was wrong with it.
        reason: &'static str,
    },
    /// A value is not an unsigned integer (or `max` where that is allowed).
    #[error("line {line}: {value:?} is not a valid number")]
    BadNumber {
        /// 1-based line number.
        line: usize,
        /// The offending text (truncated to 64 bytes).
        value: String,
    },
    /// A key appears twice in a keyed file.
    #[error("line {line}: key {key:?} appears twice")]
    DuplicateKey {
        /// 1-based line number of the second occurrence.
        line: usize,
        /// The key.
        key: String,
    },
    /// An expected key is missing.
    #[error("key {key:?} is missing")]
    MissingKey {
        /// The key.
        key: &'static str,
    },
}

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CgroupError {
    /// `statfs` or a directory listing of a cgroup path failed.
    #[error("cannot inspect {path}: {source}")]
    Inspect {
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// No cgroup filesystem is mounted where expected.
    #[error("no cgroup filesystem found at /sys/fs/cgroup or in /proc/self/mountinfo")]
    NoCgroupMount,
    /// A path that should be on a cgroup filesystem is not.
    #[error("{path} is not on a cgroup filesystem (statfs magic {magic:#x})")]
    NotCgroupFs {
        /// The path.
        path: PathBuf,
        /// The filesystem magic that statfs reported.
        magic: u64,
    },
    /// A cgroup or `/proc` file could not be parsed.
    #[error("cannot parse {path}: {error}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        #[source]
        error: ParseError,
    },
    /// `/proc/self/cgroup` does not list our cgroup for a hierarchy we need.
    #[error("/proc/self/cgroup has no entry for the {hierarchy} hierarchy")]
    OwnCgroupUnknown {
        /// The controller name, or `unified`.
        hierarchy: String,
    },
    /// Our cgroup (or the delegated root) lies outside the part of the hierarchy that is mounted.
    #[error(
        "cgroup path {cgroup_path} is outside the root {mount_root} of the mount {mount_point}"
    )]
    OutsideMount {
        /// The cgroup path from `/proc/self/cgroup` or the options.
        cgroup_path: String,
        /// The root of the hierarchy that is mounted (mountinfo field 4).
        mount_root: String,
        /// Where it is mounted.
        mount_point: PathBuf,
    },
    /// A workload name, prefix or delegated root was refused.
    #[error("invalid cgroup name {name:?}: {reason}")]
    InvalidName {
        /// The refused name.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// A limit value is out of range.
    #[error("invalid limit {limit} = {value}: {reason}")]
    InvalidLimit {
        /// The limit (`memory_max`, `cpu_fraction`, ...).
        limit: &'static str,
        /// The requested value.
        value: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A requested limit cannot be applied with this host's cgroup setup.
    #[error("limit {limit} cannot be applied: {reason}")]
    LimitUnavailable {
        /// The limit (`memory_max`, `memory_high`, `cpu_fraction`, `cpu_weight`, `pids_max`).
        limit: &'static str,
        /// Why (which controller or file is missing).
        reason: String,
    },
    /// The group directory already exists: it is not ours to reuse.
    #[error("cgroup {path} already exists and is not ours to reuse")]
    AlreadyExists {
        /// The directory.
        path: PathBuf,
    },
    /// `mkdir` of a group failed.
    #[error("cannot create cgroup {path}: {source}")]
    Create {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Writing a control file failed (our own writer or cgroups-rs).
    #[error("cannot write {value:?} to {path}: {source}")]
    Write {
        /// The control file.
        path: PathBuf,
        /// What we tried to write.
        value: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Reading a control file failed.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Moving a process into the group failed.
    #[error("cannot move pid {pid} into {path}: {source}")]
    Attach {
        /// The process (thread group id).
        pid: u32,
        /// The `cgroup.procs` file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Sending SIGKILL to a member failed for a reason other than "already gone".
    #[error("cannot kill pid {pid} of {path}: {source}")]
    Signal {
        /// The process.
        pid: u32,
        /// The group it was listed in.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The caller's own process is a member of the group it was asked to kill.
    #[error("refusing to kill our own process, which is a member of {path}")]
    SelfInGroup {
        /// The group directory.
        path: PathBuf,
    },
    /// The group still has processes after the wait.
    #[error("cgroup {path} still has processes {remaining:?} after {waited:?}")]
    NotEmpty {
        /// The group directory.
        path: PathBuf,
        /// Pids still listed (first few).
        remaining: Vec<u32>,
        /// How long we waited.
        waited: Duration,
    },
    /// `rmdir` kept failing.
    #[error("cannot remove cgroup {path} after {attempts} attempts: {source}")]
    Remove {
        /// The directory.
        path: PathBuf,
        /// How many times we tried.
        attempts: u32,
        /// The last OS error.
        #[source]
        source: io::Error,
    },
    /// The operation needs a controller this group does not have.
    #[error("no {controller} controller in this group; cannot {operation}")]
    NotTracked {
        /// The missing controller.
        controller: &'static str,
        /// What was asked.
        operation: &'static str,
    },
    /// Setting up or reading an event source (inotify, eventfd) failed.
    #[error("cannot watch {path} for events: {source}")]
    Watch {
        /// The file being watched.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Teardown hit one or more errors; the group may be partly left.
    #[error("teardown failed: {}", TeardownErrors(errors))]
    Teardown {
        /// Every error, in order.
        errors: Vec<CgroupError>,
    },
}

struct TeardownErrors<'a>(&'a [CgroupError]);

impl fmt::Display for TeardownErrors<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}
