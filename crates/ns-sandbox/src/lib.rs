//! Run a program in fresh Linux namespaces on a tmpfs root, with Landlock, seccomp and no
//! capabilities. Fails closed: if a requested layer cannot be set up, nothing runs.
//!
//! # What a sandbox gets (all on by default)
//!
//! - **Namespaces**: user, mount, PID, network, IPC, UTS and cgroup. The program sees uid 0;
//!   outside it is an unprivileged host uid (the caller, or a dedicated uid when the caller
//!   is root; an unprivileged caller also maps its `/etc/subuid` range through `newuidmap`
//!   where one is granted, see [`SandboxBuilder::subid_range`]). PID 1 inside is a tiny init that reaps and forwards signals.
//! - **Filesystem**: a size-limited tmpfs as root (`pivot_root`, old root detached), read-only
//!   binds from a [`Profile`] and [`SandboxBuilder::ro_bind`], one read-write work dir at
//!   `/work`, a fresh `/proc`, a minimal `/dev`, `/tmp` on the ramdisk; nosuid/nodev.
//! - **Landlock** at the best ABI the kernel has: writes only to `/work`, `/tmp`, `/dev/shm`;
//!   reads only the bound paths; abstract unix sockets and signals scoped to the sandbox.
//! - **Process**: clean environment, `no_new_privs`, every capability dropped, a seccomp
//!   deny-list (TIOCSTI/TIOCLINUX, keyctl, ptrace, bpf, io_uring, mount family, nested
//!   namespaces…, other syscall ABIs killed), new session, parent-death signal, rlimits
//!   (core 0), no inherited descriptors beyond stdio.
//!
//! # Example
//!
//! ```
//! use ns_sandbox::{Outcome, Profile, Sandbox};
//!
//! # fn main() -> Result<(), ns_sandbox::Error> {
//! let started = Sandbox::builder("/bin/sh")
//!     .args(["-c", "test \"$(id -u)\" = 0 && exit 3"])
//!     .profile(Profile::Shell)
//!     .spawn();
//! let mut child = match started {
//!     Ok(child) => child,
//!     // A host without user namespaces fails closed, naming the layer and the cause.
//!     Err(e) if e.is_setup_failure() => {
//!         eprintln!("sandbox unavailable here: {e}");
//!         return Ok(());
//!     }
//!     Err(e) => return Err(e),
//! };
//! assert_eq!(child.wait()?, Outcome::Exited(3));
//! println!("{}", serde_json::to_string(child.report()).unwrap_or_default());
//! # Ok(())
//! # }
//! ```
//!
//! # Threat model
//!
//! The program is hostile. It must not: write outside `/work` and its ramdisk, read host
//! paths that were not bound, gain privileges (setuid binaries, capabilities, nested user
//! namespaces), reach the host's network or abstract sockets, signal or ptrace host
//! processes, inject keystrokes into the caller's terminal, reach the `sandbox-run` binary
//! through `/proc/N/exe` (CVE-2019-5736), or outlive its supervisor. Not covered: kernel
//! bugs reachable through allowed syscalls, side channels, resource exhaustion (use cgroups:
//! [`SandboxBuilder::before_start`] is the hook to place the sandbox in one).
//!
//! # Kernel requirements
//!
//! Linux 5.11+ (close_range with CLOEXEC), user namespaces allowed for the caller, Landlock
//! (5.13+, ABI reported) unless turned off or best-effort, seccomp filters.
//!
//! # Soundness of the fork/exec path
//!
//! See the `sys` module: everything between `clone` and `execve` is prepared in the parent;
//! the child only issues raw syscalls on pre-built data.
#![deny(unsafe_code)]
#![deny(missing_docs)]

mod builder;
mod error;
mod landlock_rules;
mod plan;
mod report;
mod seccomp;
mod subid;
mod sys;

pub use builder::{
    Net, Outcome, Profile, Rlimit, Sandbox, SandboxBuilder, SandboxChild, Signaller,
};
pub use error::{Error, Layer};
pub use report::{LandlockReport, Missing, MountReport, Report, RlimitReport, SeccompReport};
