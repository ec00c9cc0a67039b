//! Process hardening: not dumpable, no core files.

use rustix::process::{DumpableBehavior, Resource, Rlimit};

use crate::SecretError;

/// What [`harden_process`] applied, as read back from the kernel afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct HardeningReport {
    /// `PR_GET_DUMPABLE` is 0: no core dumps, and processes of the same uid can neither
    /// `ptrace` us nor read `/proc/<pid>/mem`, `environ`, `fd/…` (those become root-owned).
    pub not_dumpable: bool,
    /// `RLIMIT_CORE` soft and hard limits are both 0 (inherited by children across exec).
    pub core_limit_zero: bool,
}

/// Makes this process not dumpable (`prctl(PR_SET_DUMPABLE, 0)`) and sets `RLIMIT_CORE` to 0
/// (soft and hard). This is the in-process form of dropping `CAP_SYS_PTRACE` from a
/// container: a same-uid attacker can no longer attach a debugger or read our memory, and a
/// crash leaves no core file with secrets in it.
///
/// Caveats: the dumpable flag is reset by `execve` of a normal binary, so it protects this
/// process, not the programs it starts (those inherit `RLIMIT_CORE` 0 though). Root
/// (`CAP_SYS_PTRACE`) is not stopped. Call it early, before reading any secret.
///
/// # Errors
/// [`SecretError::Io`] when either call fails (neither is expected to for an ordinary process:
/// lowering limits and clearing the flag need no privilege).
pub fn harden_process() -> Result<HardeningReport, SecretError> {
    rustix::process::set_dumpable_behavior(DumpableBehavior::NotDumpable)
        .map_err(|e| SecretError::io("<self>", "prctl(PR_SET_DUMPABLE, 0)", e))?;
    rustix::process::setrlimit(
        Resource::Core,
        Rlimit {
            current: Some(0),
            maximum: Some(0),
        },
    )
    .map_err(|e| SecretError::io("<self>", "setrlimit(RLIMIT_CORE, 0)", e))?;
    Ok(current_hardening())
}

/// Reads the current state of what [`harden_process`] sets, without changing anything.
#[must_use]
pub fn current_hardening() -> HardeningReport {
    let core = rustix::process::getrlimit(Resource::Core);
    HardeningReport {
        not_dumpable: matches!(
            rustix::process::dumpable_behavior(),
            Ok(DumpableBehavior::NotDumpable)
        ),
        core_limit_zero: core.current == Some(0) && core.maximum == Some(0),
    }
}
