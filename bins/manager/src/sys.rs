//! The few raw libc calls `manager` needs for terminal job control; everything else goes
//! through rustix's safe API.
#![allow(unsafe_code)]

use std::os::unix::process::CommandExt;
use std::process::Command;

use rustix::process::Pid;

/// Runs `setup` in the child between fork and exec.
///
/// `setup` must be async-signal-safe: raw syscalls only, no allocation, no locks (the parent
/// may have other threads holding the allocator's lock at fork time).
pub fn before_exec(
    command: &mut Command,
    setup: impl FnMut() -> std::io::Result<()> + Send + Sync + 'static,
) {
    // SAFETY: callers pass closures that only make raw syscalls (setpgid, sigprocmask,
    // tcsetpgrp, prctl, getppid) and return; see `exec::child_setup`.
    unsafe {
        command.pre_exec(setup);
    }
}

/// Runs `f` with SIGTTOU blocked in the calling thread: a process that is not in the terminal's
/// foreground group gets SIGTTOU (and stops) when it calls tcsetpgrp, unless it blocks it.
/// Async-signal-safe: only sigemptyset, sigaddset and pthread_sigmask.
fn with_sigttou_blocked(f: impl FnOnce()) {
    // SAFETY: sigset_t is plain data; zeroed then initialised by sigemptyset before use.
    let mut block: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above; `old` is written by pthread_sigmask before it is read.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers to live sigset_t values on our stack.
    unsafe {
        libc::sigemptyset(&mut block);
        libc::sigaddset(&mut block, libc::SIGTTOU);
        libc::pthread_sigmask(libc::SIG_BLOCK, &block, &mut old);
    }
    f();
    // SAFETY: restores the mask saved above; valid pointer.
    unsafe {
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
    }
}

/// In the child after fork: make its own (new) process group the terminal's foreground group.
/// Async-signal-safe: raw syscalls only, no allocation.
pub fn give_terminal_to_own_group() {
    with_sigttou_blocked(|| {
        // SAFETY: getpgrp and tcsetpgrp take plain integers; fd 0 is the terminal (checked by
        // the parent before fork); failure leaves the terminal where it was, which is harmless.
        unsafe {
            libc::tcsetpgrp(0, libc::getpgrp());
        }
    });
}

/// In `manager` after the program exits: take the terminal's foreground back.
pub fn set_foreground_group(group: Pid) {
    with_sigttou_blocked(|| {
        // SAFETY: plain integer arguments; failure (no terminal any more) is harmless.
        unsafe {
            libc::tcsetpgrp(0, group.as_raw_nonzero().get());
        }
    });
}

/// Creates a new user namespace for the calling process (used only by `doctor`'s probe, in a
/// fresh single-threaded child process).
pub fn unshare_user_namespace() -> std::io::Result<()> {
    // SAFETY: unshare(CLONE_NEWUSER) takes a plain flag and affects only this process's
    // credentials; the probe process is single-threaded and exits right after.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWUSER) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The highest Landlock ABI version the kernel offers, or the errno why none.
pub fn landlock_abi() -> std::io::Result<i64> {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: landlock_create_ruleset(NULL, 0, VERSION) only returns the ABI version; it reads
    // no memory and creates no fd.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}
