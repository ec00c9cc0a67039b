//! What the sandbox applied, for `--report` and for callers who want to check.
use serde::Serialize;

use crate::Layer;

/// Every layer applied to one sandbox (and, in best-effort mode, the ones that are missing).
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Report {
    /// Namespaces the sandbox runs in.
    pub namespaces: Vec<&'static str>,
    /// The sandbox's `/proc/PID/uid_map` as applied, one `inside outside count` line per
    /// range: `0 UID 1`, plus `1 START COUNT` when an unprivileged caller's `/etc/subuid`
    /// range was mapped with `newuidmap`.
    pub uid_map: String,
    /// The sandbox's `/proc/PID/gid_map` as applied (same format; `/etc/subgid`, `newgidmap`).
    pub gid_map: String,
    /// `deny` (unprivileged caller) or how supplementary groups were handled (root caller,
    /// or a subgid range mapped by `newgidmap`, which leaves `setgroups` allowed).
    pub setgroups: &'static str,
    /// Subordinate id ranges (`/etc/subuid`, `/etc/subgid`): which were mapped, or why none.
    pub subid: String,
    /// Host uid the program runs as (uid 0 inside).
    pub host_uid: u32,
    /// Host gid the program runs as (gid 0 inside).
    pub host_gid: u32,
    /// Host name inside.
    pub hostname: String,
    /// `none` or `loopback`.
    pub net: &'static str,
    /// Mounts of the sandbox's root, in the order they were made.
    pub mounts: Vec<MountReport>,
    /// Landlock, when applied.
    pub landlock: Option<LandlockReport>,
    /// The seccomp filter, when applied.
    pub seccomp: Option<SeccompReport>,
    /// Capabilities left to the program.
    pub capabilities: &'static str,
    /// `PR_SET_NO_NEW_PRIVS` is set.
    pub no_new_privs: bool,
    /// Resource limits set (name, soft, hard).
    pub rlimits: Vec<RlimitReport>,
    /// Names (not values) of the environment variables passed in.
    pub env: Vec<String>,
    /// How the process tree looks inside.
    pub init: &'static str,
    /// Layers that were requested but could not be applied (best-effort mode only).
    pub missing: Vec<Missing>,
}

/// One mount inside the sandbox.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct MountReport {
    /// Path inside the sandbox.
    pub dest: String,
    /// `tmpfs`, `bind`, `proc`, `symlink`, `file`.
    pub kind: &'static str,
    /// Host source (binds, symlink targets), if any.
    pub source: Option<String>,
    /// Read-only.
    pub read_only: bool,
    /// Options (tmpfs size, nosuid…).
    pub options: String,
}

/// The Landlock layer.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct LandlockReport {
    /// The ABI the ruleset was built for.
    pub abi: i32,
    /// The ABI the kernel reports.
    pub kernel_abi: i32,
    /// Handled filesystem access rights.
    pub handled_fs: Vec<String>,
    /// Scopes (abstract unix sockets, signals) restricted to the sandbox.
    pub scoped: Vec<String>,
    /// `path: rights` for every rule.
    pub rules: Vec<String>,
}

/// The seccomp layer.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct SeccompReport {
    /// The only syscall ABI allowed.
    pub arch: &'static str,
    /// Syscalls refused with `action`.
    pub denied_syscalls: Vec<String>,
    /// ioctl requests refused.
    pub denied_ioctls: Vec<String>,
    /// clone flags refused.
    pub clone_flags_denied: Vec<String>,
    /// What clone3 does.
    pub clone3: &'static str,
    /// Which personality calls are allowed.
    pub personality: &'static str,
    /// What happens to other syscall ABIs.
    pub other_abis: &'static str,
    /// The errno returned for denied calls.
    pub action: &'static str,
    /// BPF program length.
    pub instructions: usize,
}

/// One resource limit.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct RlimitReport {
    /// `core`, `nofile`, …
    pub name: &'static str,
    /// Soft limit.
    pub soft: u64,
    /// Hard limit.
    pub hard: u64,
}

/// A layer that was requested but not applied (best-effort mode).
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Missing {
    /// The layer.
    pub layer: Layer,
    /// Why (the host's cause).
    pub reason: String,
}
