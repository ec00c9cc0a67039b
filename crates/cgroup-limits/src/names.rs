//! Group names: validation of caller-supplied prefixes and delegated roots, and the
//! `<prefix>-<pid>-<seq>` scheme that lets a later run find groups of a dead runner.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::CgroupError;

/// Longest prefix accepted; the generated name adds at most 22 bytes (`-<pid>-<seq>`).
const MAX_PREFIX: usize = 64;

/// File-name prefixes of cgroup interface files (v1 and v2): a directory named like one of
/// them would be confusing at best, and some kernels refuse them.
const INTERFACE_PREFIXES: &[&str] = &[
    "cgroup.",
    "memory.",
    "cpu.",
    "cpuacct.",
    "cpuset.",
    "pids.",
    "io.",
    "blkio.",
    "freezer.",
    "devices.",
    "hugetlb.",
    "rdma.",
    "misc.",
    "net_cls.",
    "net_prio.",
    "perf_event.",
    "irq.",
];

/// v1 interface files without a controller prefix.
const INTERFACE_FILES: &[&str] = &["tasks", "notify_on_release", "release_agent"];

fn refuse(name: &str, reason: &'static str) -> CgroupError {
    CgroupError::InvalidName {
        name: name.chars().take(80).collect(),
        reason,
    }
}

/// Checks one path component used as (part of) a cgroup directory name.
pub(crate) fn validate_component(name: &str) -> Result<(), CgroupError> {
    if name.is_empty() {
        return Err(refuse(name, "empty"));
    }
    if name.len() > MAX_PREFIX {
        return Err(refuse(name, "longer than 64 bytes"));
    }
    if name == "." || name == ".." {
        return Err(refuse(name, "`.` and `..` are not names"));
    }
    if name.starts_with('.') {
        return Err(refuse(name, "must not start with `.`"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err(refuse(
            name,
            "only ASCII letters, digits, `-`, `_` and `.` are allowed (no `/`)",
        ));
    }
    if INTERFACE_FILES.contains(&name) || INTERFACE_PREFIXES.iter().any(|p| name.starts_with(p)) {
        return Err(refuse(name, "looks like a cgroup interface file"));
    }
    Ok(())
}

/// Checks a prefix given to [`crate::WorkloadCgroup::create`] or [`crate::cleanup_stale`].
pub(crate) fn validate_prefix(prefix: &str) -> Result<(), CgroupError> {
    validate_component(prefix)
}

/// Checks a delegated root: an absolute cgroup path (as in `/proc/self/cgroup`), each component
/// a valid name. `/` alone is refused: the hierarchy root is never ours.
pub(crate) fn validate_delegated_root(root: &str) -> Result<(), CgroupError> {
    let Some(rest) = root.strip_prefix('/') else {
        return Err(refuse(
            root,
            "a delegated root must be an absolute cgroup path",
        ));
    };
    if rest.trim_end_matches('/').is_empty() {
        return Err(refuse(root, "the hierarchy root is never a delegated root"));
    }
    if root.len() > 4096 {
        return Err(refuse(root, "longer than 4096 bytes"));
    }
    for component in rest.split('/').filter(|c| !c.is_empty()) {
        if component.len() > 255 {
            return Err(refuse(root, "a component is longer than 255 bytes"));
        }
        // Components of a delegated root are existing groups: only shape matters.
        if component == "." || component == ".." {
            return Err(refuse(root, "`.` and `..` are not allowed"));
        }
        if component.bytes().any(|b| b.is_ascii_control()) {
            return Err(refuse(root, "control characters are not allowed"));
        }
    }
    Ok(())
}

static SEQUENCE: AtomicU32 = AtomicU32::new(0);

/// A fresh group name `<prefix>-<pid>-<seq>` for this process.
pub(crate) fn fresh_name(prefix: &str) -> String {
    let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{seq}", std::process::id())
}

/// The pid embedded in a group name made by [`fresh_name`] with `prefix`, or `None` when the
/// name is not one of ours.
pub(crate) fn owner_pid(prefix: &str, name: &str) -> Option<u32> {
    let rest = name.strip_prefix(prefix)?.strip_prefix('-')?;
    let (pid, seq) = rest.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.len() <= 10 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(pid) || !digits(seq) {
        return None;
    }
    seq.parse::<u32>().ok()?;
    let pid: u32 = pid.parse().ok()?;
    (pid != 0).then_some(pid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn components() {
        for good in ["sandbox-run", "a", "job_1.x", "A-9"] {
            assert!(validate_component(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            "a/b",
            "../x",
            "a b",
            "a\nb",
            "tasks",
            "cgroup.procs",
            "memory.max",
            "cpu.weight",
            "pids.max",
            "notify_on_release",
            "ünïcode",
        ] {
            assert!(
                matches!(
                    validate_component(bad),
                    Err(CgroupError::InvalidName { .. })
                ),
                "{bad:?} accepted"
            );
        }
        assert!(validate_component(&"x".repeat(65)).is_err());
    }

    #[test]
    fn delegated_roots() {
        assert!(validate_delegated_root("/user.slice/app").is_ok());
        for bad in ["", "/", "//", "relative", "/a/../b", "/a/./b", "/a\n"] {
            assert!(validate_delegated_root(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn fresh_names_carry_our_pid() {
        let a = fresh_name("p");
        let b = fresh_name("p");
        assert_ne!(a, b);
        assert_eq!(owner_pid("p", &a), Some(std::process::id()));
        assert!(validate_component(&a).is_ok());
        assert_eq!(owner_pid("p", "p-12-3"), Some(12));
        assert_eq!(owner_pid("p", "p-x-3"), None);
        assert_eq!(owner_pid("p", "p-12"), None);
        assert_eq!(owner_pid("p", "q-12-3"), None);
        assert_eq!(owner_pid("p", "p-0-3"), None);
        assert_eq!(owner_pid("p", "p-12-3-4"), None);
        // A prefix that is itself a prefix of another: `p-x-12-3` is not `p`'s.
        assert_eq!(owner_pid("p", "p-x-12-3"), None);
    }

    proptest! {
        #[test]
        fn owner_pid_never_panics(prefix in "[a-z-]{1,8}", name in any::<String>()) {
            let _ = owner_pid(&prefix, &name);
            let _ = validate_component(&name);
            let _ = validate_delegated_root(&name);
        }

        #[test]
        fn owner_pid_round_trip(prefix in "[a-z][a-z-]{0,8}", pid in 1u32.., seq in any::<u32>()) {
            let name = format!("{prefix}-{pid}-{seq}");
            prop_assert_eq!(owner_pid(&prefix, &name), Some(pid));
        }
    }
}
