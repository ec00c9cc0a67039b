//! The only module with `unsafe`: `clone`, and everything the sandbox's own processes do
//! between `clone` and `execve`.
//!
//! # Why this is sound
//!
//! The caller may be multi-threaded (a test harness, a tokio runtime). After `clone` only the
//! calling thread exists in the child, and any lock another thread held (malloc's, stdio's) stays
//! locked forever. So the code in this module that runs in the child:
//!
//! - never allocates, never takes a lock, never touches `std::fs`/`std::io` buffered types: every
//!   path, argument vector, mount list, the seccomp BPF program and the Landlock rules are built
//!   by the parent **before** `clone` ([`ChildPlan`]) and only read here;
//! - calls raw syscalls (through `libc`) that are async-signal-safe; the set*id family goes
//!   through `syscall(2)` directly, because glibc's wrappers would try to synchronise the
//!   parent's other threads (which do not exist in the child) and wait forever;
//! - forks its own child with the raw `clone` syscall (not glibc's `fork`, which would run
//!   `pthread_atfork` handlers and take malloc's locks);
//! - ends with `execve` or `_exit`, never by returning into the caller's code.
//!
//! Landlock: the ruleset is created by the parent with the `landlock` crate (which allocates),
//! including the rules for host paths that are bound into the sandbox (the rules follow inodes,
//! so a rule on the bind's source covers the bind). Rules for mounts that only exist in the child
//! (the tmpfs root, `/proc`) are added in the child with the raw `landlock_add_rule` syscall on
//! pre-built `CString`s, then `landlock_restrict_self`: no allocation after `clone`.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_char, c_int, c_ulong};
use std::os::fd::RawFd;
use std::ptr;

/// Record kinds sent to the parent: by init over the status pipe (`SETUP_FAILED`, `EXITED`),
/// by the program's process over the exec pipe (`SETUP_FAILED`, `EXEC_FAILED`).
pub(crate) const MSG_SETUP_FAILED: u32 = 1;
pub(crate) const MSG_EXEC_FAILED: u32 = 3;
pub(crate) const MSG_EXITED: u32 = 4;

/// The "go" byte the parent sends once the id maps are written and its hook ran.
pub(crate) const GO: u8 = 1;
/// "go", and clear the supplementary groups first (newgidmap left `setgroups` allowed).
pub(crate) const GO_CLEAR_GROUPS: u8 = 2;

/// Setup steps, sent with `MSG_SETUP_FAILED` so the parent can name the layer.
/// Values >= `STEP_OP_BASE` are `STEP_OP_BASE + index` into [`ChildPlan::ops`].
pub(crate) mod step {
    pub const DUMPABLE: u32 = 2;
    pub const PDEATHSIG: u32 = 3;
    pub const CLEAR_GROUPS: u32 = 4;
    pub const SETGID: u32 = 5;
    pub const SETUID: u32 = 6;
    pub const CGROUP_NS: u32 = 7;
    pub const HOSTNAME: u32 = 8;
    pub const LOOPBACK: u32 = 9;
    pub const MAKE_PRIVATE: u32 = 10;
    pub const ROOT_TMPFS: u32 = 11;
    pub const PIVOT: u32 = 12;
    pub const DETACH_OLD_ROOT: u32 = 13;
    pub const CHDIR: u32 = 14;
    pub const SETSID: u32 = 15;
    pub const FORK_PROGRAM: u32 = 16;
    pub const RLIMIT: u32 = 18;
    pub const SECUREBITS: u32 = 19;
    pub const CAPBSET: u32 = 20;
    pub const AMBIENT: u32 = 21;
    pub const CAPSET: u32 = 22;
    pub const NO_NEW_PRIVS: u32 = 23;
    pub const LANDLOCK_RULE: u32 = 24;
    pub const LANDLOCK_RESTRICT: u32 = 25;
    pub const CLOSE_FDS: u32 = 26;
    pub const SECCOMP: u32 = 27;
    pub const SESSION: u32 = 29;
    pub const OP_BASE: u32 = 1000;
    pub const SOURCE_BASE: u32 = 100_000;
}

/// One filesystem step in the child, on paths below the staging mount point.
pub(crate) enum Op {
    Mkdir {
        path: CString,
        mode: u32,
    },
    Touch {
        path: CString,
    },
    Symlink {
        target: CString,
        path: CString,
    },
    Bind {
        src: CString,
        dst: CString,
        remount: Option<c_ulong>,
    },
    Proc {
        dst: CString,
    },
    Write {
        path: CString,
        data: Vec<u8>,
    },
    Chmod {
        path: CString,
        mode: u32,
    },
}

/// A bind source, re-opened in the child's mount namespace (the kernel refuses to bind from
/// a mount of another namespace) and checked against the parent's descriptor (same inode),
/// then moved onto the parent's fd number so the prepared `/proc/self/fd/N` strings hold.
pub(crate) struct Source {
    pub path: CString,
    pub fd: RawFd,
    pub dev: u64,
    pub ino: u64,
}

/// A Landlock rule added in the child, after `pivot_root`.
pub(crate) struct ChildRule {
    pub path: CString,
    pub access: u64,
}

/// Everything the child needs, built before `clone`, read-only afterwards.
pub(crate) struct ChildPlan {
    pub sync_read: RawFd,
    pub sync_write: RawFd,
    pub status_read: RawFd,
    pub status_write: RawFd,
    /// Close-on-exec; the program's process reports set-up or exec failures on it.
    pub exec_read: RawFd,
    pub exec_write: RawFd,
    pub clear_groups: bool,
    pub hostname: CString,
    pub loopback_up: bool,
    pub staging: CString,
    pub tmpfs_data: CString,
    pub sources: Vec<Source>,
    pub ops: Vec<Op>,
    pub chdir: CString,
    pub landlock_fd: Option<RawFd>,
    pub landlock_rules: Vec<ChildRule>,
    pub seccomp: Option<seccompiler::BpfProgram>,
    pub rlimits: Vec<(c_int, u64, u64)>,
    pub last_cap: u32,
    pub exec_candidates: Vec<CString>,
    /// NULL-terminated; points into strings owned by the parent's `Prepared`.
    pub argv: Vec<*const c_char>,
    /// NULL-terminated; points into strings owned by the parent's `Prepared`.
    pub envp: Vec<*const c_char>,
}

/// The namespaces created by [`clone_sandbox`] (cgroup is entered later, after the hook).
pub(crate) const CLONE_NS_FLAGS: c_int = libc::CLONE_NEWUSER
    | libc::CLONE_NEWNS
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUTS;

fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// Starts the sandbox's init process in fresh namespaces.
///
/// Returns the init's host pid in the parent. The child never returns from this function.
pub(crate) fn clone_sandbox(plan: &ChildPlan) -> std::io::Result<u32> {
    let flags = (CLONE_NS_FLAGS | libc::SIGCHLD) as c_ulong;
    // SAFETY: raw `clone` with a NULL stack pointer behaves like `fork` (the child runs on a
    // copy-on-write copy of this stack); the child only runs `child_init`, which never
    // returns and honours the async-signal-safety rules at the top of this module.
    let ret = unsafe { libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, 0usize) };
    if ret < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if ret == 0 {
        child_init(plan);
    }
    u32::try_from(ret).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))
}

fn write_record(fd: RawFd, kind: u32, a: i32, b: i32) {
    let mut buf = [0u8; 12];
    buf[0..4].copy_from_slice(&kind.to_ne_bytes());
    buf[4..8].copy_from_slice(&a.to_ne_bytes());
    buf[8..12].copy_from_slice(&b.to_ne_bytes());
    // SAFETY: writes 12 bytes from a live stack buffer to an fd; a short or failed write only
    // means the parent is gone, which the parent-death signal handles.
    unsafe {
        libc::write(fd, buf.as_ptr().cast(), buf.len());
    }
}

/// Reads one 12-byte record. `Ok(None)` on EOF.
pub(crate) fn read_record(fd: RawFd) -> std::io::Result<Option<(u32, i32, i32)>> {
    let mut buf = [0u8; 12];
    let mut got = 0usize;
    while got < buf.len() {
        // SAFETY: reads into the unfilled tail of a live stack buffer.
        let n = unsafe { libc::read(fd, buf[got..].as_mut_ptr().cast(), buf.len() - got) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
        }
        got += n as usize;
    }
    let word = |i: usize| [buf[i], buf[i + 1], buf[i + 2], buf[i + 3]];
    Ok(Some((
        u32::from_ne_bytes(word(0)),
        i32::from_ne_bytes(word(4)),
        i32::from_ne_bytes(word(8)),
    )))
}

fn fail(fd: RawFd, step: u32, err: i32) -> ! {
    write_record(fd, MSG_SETUP_FAILED, step as i32, err);
    exit(125)
}

fn exit(code: c_int) -> ! {
    // SAFETY: `_exit` ends the process without running atexit handlers or unwinding, which is
    // what a forked child of a possibly multi-threaded parent must do.
    unsafe { libc::_exit(code) }
}

fn check(ret: c_int, fd: RawFd, step: u32) {
    if ret < 0 {
        fail(fd, step, errno());
    }
}

fn mount(
    src: Option<&CStr>,
    dst: &CStr,
    fstype: Option<&CStr>,
    flags: c_ulong,
    data: Option<&CStr>,
) -> c_int {
    let p = |s: Option<&CStr>| s.map_or(ptr::null(), CStr::as_ptr);
    // SAFETY: every pointer is NULL or a NUL-terminated string that outlives the call.
    unsafe { libc::mount(p(src), dst.as_ptr(), p(fstype), flags, p(data).cast()) }
}

fn prctl(option: c_int, arg: c_ulong) -> c_int {
    // SAFETY: the prctl options used here take integer arguments only.
    unsafe { libc::prctl(option, arg, 0 as c_ulong, 0 as c_ulong, 0 as c_ulong) }
}

/// The sandbox's first process: PID 1 of the new PID namespace.
fn child_init(plan: &ChildPlan) -> ! {
    let st = plan.status_write;
    // Die with the parent *thread* that cloned us. If the parent died before this line, the
    // read below sees EOF instead, so there is no window.
    check(
        prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as c_ulong),
        st,
        step::PDEATHSIG,
    );
    // The parent's ends: holding them would hide the parent's death from the read below.
    // SAFETY: closing inherited fds this process does not use.
    unsafe {
        libc::close(plan.sync_write);
        libc::close(plan.status_read);
        libc::close(plan.exec_read);
    }
    // What needs no uid map runs while the parent writes it (the new namespaces' capabilities
    // are ours from the start).
    // SAFETY: pointer and length of a live CString.
    check(
        unsafe { libc::sethostname(plan.hostname.as_ptr(), plan.hostname.as_bytes().len()) },
        st,
        step::HOSTNAME,
    );
    if plan.loopback_up {
        loopback_up(st);
    }
    // SAFETY: plain integer argument.
    check(unsafe { libc::setsid() }, st, step::SESSION);

    prepare_mounts(plan);

    // Wait for the parent: uid/gid maps written and its hook run.
    let mut go = [0u8; 1];
    loop {
        // SAFETY: reads one byte into a live stack buffer.
        let n = unsafe { libc::read(plan.sync_read, go.as_mut_ptr().cast(), 1) };
        if n == 1 {
            break;
        }
        if n < 0 && errno() == libc::EINTR {
            continue;
        }
        // The parent gave up (or died): run nothing.
        exit(125);
    }

    // Identity: become uid/gid 0 inside (the mapped host ids outside).
    // Raw syscalls, not glibc's wrappers: in a child of a multi-threaded parent, glibc's
    // set*id wrappers try to apply the change to the parent's other threads too (they do not
    // exist here) and wait for them forever.
    if plan.clear_groups || go[0] == GO_CLEAR_GROUPS {
        // SAFETY: an empty group list; the pointer is not read when the size is 0.
        let r = unsafe { libc::syscall(libc::SYS_setgroups, 0usize, ptr::null::<libc::gid_t>()) };
        check(r as c_int, st, step::CLEAR_GROUPS);
    }
    // SAFETY: plain integer arguments.
    let r = unsafe { libc::syscall(libc::SYS_setresgid, 0u32, 0u32, 0u32) };
    check(r as c_int, st, step::SETGID);
    // SAFETY: plain integer arguments.
    let r = unsafe { libc::syscall(libc::SYS_setresuid, 0u32, 0u32, 0u32) };
    check(r as c_int, st, step::SETUID);
    // The kernel clears the parent-death signal when the effective ids change: arm it again,
    // then make sure the parent did not die in between (it holds the sync pipe's write end
    // until we report back, so a hang-up means it is gone).
    check(
        prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as c_ulong),
        st,
        step::PDEATHSIG,
    );
    let mut p = libc::pollfd {
        fd: plan.sync_read,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one live pollfd, no waiting.
    let r = unsafe { libc::poll(&mut p, 1, 0) };
    if r < 0 || p.revents & libc::POLLHUP != 0 {
        exit(125);
    }
    // SAFETY: closing an fd this process owns and no longer uses.
    unsafe { libc::close(plan.sync_read) };
    // Not dumpable from here on: the program (same uid) must not reach our /proc/1/exe or
    // memory (CVE-2019-5736); our mm also belongs to the host user namespace. Not earlier: an
    // unprivileged parent must still be able to open our /proc/PID/uid_map.
    check(prctl(libc::PR_SET_DUMPABLE, 0), st, step::DUMPABLE);

    // The cgroup namespace is created now, after the hook may have moved us into a cgroup,
    // so the sandbox's cgroup root is its own group.
    // SAFETY: plain integer argument.
    check(
        unsafe { libc::unshare(libc::CLONE_NEWCGROUP) },
        st,
        step::CGROUP_NS,
    );
    setup_mounts(plan);

    // A caller that ignores SIGCHLD (inherited across execve, copied by clone) would make the
    // kernel reap the program silently: no SIGCHLD, no status, init waiting forever.
    // SAFETY: resets one signal to its default disposition; no handler pointer involved.
    unsafe { libc::signal(libc::SIGCHLD, libc::SIG_DFL) };
    // Block every signal before forking: init takes them with sigwaitinfo; the program unblocks.
    // SAFETY: `set` is a live sigset_t initialised by sigfillset before use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: see above.
    unsafe {
        libc::sigfillset(&mut set);
        libc::sigprocmask(libc::SIG_BLOCK, &set, ptr::null_mut());
    }
    // SAFETY: fork-like raw clone (NULL stack), as in `clone_sandbox`; the child only runs
    // `program_child`, which never returns.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            libc::SIGCHLD as c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if pid < 0 {
        fail(st, step::FORK_PROGRAM, errno());
    }
    if pid == 0 {
        program_child(plan, plan.exec_write);
    }
    let pid = pid as libc::pid_t;
    // The program's exec pipe goes straight to the parent (its EOF says execve succeeded): init
    // drops its copy and everything else but stdio and the status pipe.
    close_from(3, Some(st));
    init_loop(st, pid, &set)
}

/// Reaps every child, forwards signals to the program, exits when the program exits.
fn init_loop(st: RawFd, program: libc::pid_t, set: &libc::sigset_t) -> ! {
    loop {
        // SAFETY: `set` is a valid sigset; the info pointer may be NULL.
        let sig = unsafe { libc::sigwaitinfo(set, ptr::null_mut()) };
        if sig < 0 {
            continue;
        }
        if sig == libc::SIGCHLD {
            loop {
                let mut status = 0;
                // SAFETY: reaps any child without blocking; `status` is a live int.
                let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
                if pid <= 0 {
                    break;
                }
                if pid == program {
                    write_record(st, MSG_EXITED, status, 0);
                    // Exiting makes the kernel kill whatever the program left behind.
                    exit(0);
                }
            }
        } else {
            // SAFETY: plain integer arguments.
            unsafe { libc::kill(program, sig) };
        }
    }
}

fn close_from(first: c_int, keep: Option<RawFd>) {
    let close_range = |lo: c_int, hi: c_int| {
        if lo <= hi {
            // SAFETY: closes descriptors this process owns; nothing references them afterwards.
            unsafe { libc::syscall(libc::SYS_close_range, lo as u32, hi as u32, 0u32) };
        }
    };
    match keep {
        Some(k) if k >= first => {
            close_range(first, k - 1);
            close_range(k + 1, c_int::MAX);
        }
        _ => close_range(first, c_int::MAX),
    }
}

fn loopback_up(st: RawFd) {
    // SAFETY: plain integer arguments.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    check(fd, st, step::LOOPBACK);
    // SAFETY: an all-zero ifreq is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
        *d = *s as c_char;
    }
    // SAFETY: `ifr` is a live ifreq with a NUL-terminated name; SIOCGIFFLAGS fills ifru_flags.
    check(
        unsafe { libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut ifr) },
        st,
        step::LOOPBACK,
    );
    // SAFETY: reading and writing the flags member of the union SIOCGIFFLAGS just filled.
    unsafe {
        ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
    }
    // SAFETY: as above, SIOCSIFFLAGS reads the ifreq.
    check(
        unsafe { libc::ioctl(fd, libc::SIOCSIFFLAGS, &mut ifr) },
        st,
        step::LOOPBACK,
    );
    // SAFETY: closing our socket.
    unsafe { libc::close(fd) };
}

/// Mount steps that need no uid map: private propagation, re-opening the bind sources.
fn prepare_mounts(plan: &ChildPlan) {
    let st = plan.status_write;
    // Nothing we mount may propagate back to the host.
    check(
        mount(None, c"/", None, libc::MS_REC | libc::MS_PRIVATE, None),
        st,
        step::MAKE_PRIVATE,
    );
    for (i, src) in plan.sources.iter().enumerate() {
        let code = step::SOURCE_BASE + i as u32;
        // SAFETY: NUL-terminated path.
        let fd = unsafe {
            libc::open(
                src.path.as_ptr(),
                libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        check(fd, st, code);
        // SAFETY: `sb` is a live stat buffer.
        let mut sb: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fstat on our own fd into a live buffer.
        check(unsafe { libc::fstat(fd, &mut sb) }, st, code);
        if sb.st_dev != src.dev || sb.st_ino != src.ino {
            // Swapped between the parent's check and now: refuse.
            fail(st, code, libc::ESTALE);
        }
        if fd != src.fd {
            // SAFETY: replaces the inherited parent-namespace fd with ours.
            check(unsafe { libc::dup3(fd, src.fd, libc::O_CLOEXEC) }, st, code);
            // SAFETY: our own temporary fd.
            unsafe { libc::close(fd) };
        }
    }
}

fn setup_mounts(plan: &ChildPlan) {
    let st = plan.status_write;
    check(
        mount(
            Some(c"tmpfs"),
            &plan.staging,
            Some(c"tmpfs"),
            libc::MS_NOSUID | libc::MS_NODEV,
            Some(&plan.tmpfs_data),
        ),
        st,
        step::ROOT_TMPFS,
    );
    for (i, op) in plan.ops.iter().enumerate() {
        let code = step::OP_BASE + i as u32;
        let ret = match op {
            Op::Mkdir { path, mode } => {
                // SAFETY: NUL-terminated path.
                let r = unsafe { libc::mkdir(path.as_ptr(), *mode) };
                if r < 0 && errno() == libc::EEXIST {
                    0
                } else {
                    r
                }
            }
            Op::Touch { path } => {
                // SAFETY: NUL-terminated path; the fd is closed right away.
                let fd = unsafe {
                    libc::open(
                        path.as_ptr(),
                        libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
                        0o444 as libc::c_uint,
                    )
                };
                if fd >= 0 {
                    // SAFETY: our own fd.
                    unsafe { libc::close(fd) };
                }
                fd
            }
            // SAFETY: two NUL-terminated strings.
            Op::Symlink { target, path } => unsafe {
                libc::symlink(target.as_ptr(), path.as_ptr())
            },
            Op::Bind { src, dst, remount } => {
                let mut r = mount(Some(src), dst, None, libc::MS_BIND, None);
                if r == 0
                    && let Some(flags) = remount
                {
                    r = mount(
                        None,
                        dst,
                        None,
                        libc::MS_BIND | libc::MS_REMOUNT | flags,
                        None,
                    );
                }
                r
            }
            Op::Proc { dst } => mount(
                Some(c"proc"),
                dst,
                Some(c"proc"),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                None,
            ),
            Op::Write { path, data } => write_file(path, data),
            // SAFETY: NUL-terminated path.
            Op::Chmod { path, mode } => unsafe { libc::chmod(path.as_ptr(), *mode) },
        };
        check(ret, st, code);
    }
    // pivot_root(".", ".") stacks the old root on top of the new one; detaching "." then
    // removes it, so no path leads back to the host's tree.
    // SAFETY: NUL-terminated path.
    check(
        unsafe { libc::chdir(plan.staging.as_ptr()) },
        st,
        step::PIVOT,
    );
    // SAFETY: two NUL-terminated strings.
    check(
        unsafe { libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) } as c_int,
        st,
        step::PIVOT,
    );
    // SAFETY: NUL-terminated path.
    check(
        unsafe { libc::umount2(c".".as_ptr(), libc::MNT_DETACH) },
        st,
        step::DETACH_OLD_ROOT,
    );
    // SAFETY: NUL-terminated path.
    check(unsafe { libc::chdir(c"/".as_ptr()) }, st, step::CHDIR);
    // SAFETY: NUL-terminated path.
    check(unsafe { libc::chdir(plan.chdir.as_ptr()) }, st, step::CHDIR);
}

fn write_file(path: &CStr, data: &[u8]) -> c_int {
    // SAFETY: NUL-terminated path.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_EXCL,
            0o644 as libc::c_uint,
        )
    };
    if fd < 0 {
        return fd;
    }
    let mut off = 0usize;
    while off < data.len() {
        // SAFETY: writes from a live slice.
        let n = unsafe { libc::write(fd, data[off..].as_ptr().cast(), data.len() - off) };
        if n <= 0 {
            let e = errno();
            // SAFETY: our own fd.
            unsafe { libc::close(fd) };
            // SAFETY: sets errno for the caller's report.
            unsafe { *libc::__errno_location() = e };
            return -1;
        }
        off += n as usize;
    }
    // SAFETY: our own fd.
    unsafe { libc::close(fd) }
}

#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

const LANDLOCK_RULE_PATH_BENEATH: c_int = 1;

/// The program's process: drop everything, then `execve`. `ep` is the close-on-exec error pipe.
fn program_child(plan: &ChildPlan, ep: RawFd) -> ! {
    let fail = |step: u32, err: i32| -> ! {
        write_record(ep, MSG_SETUP_FAILED, step as i32, err);
        exit(125)
    };
    let check = |ret: c_int, step: u32| {
        if ret < 0 {
            fail(step, errno());
        }
    };
    // Default dispositions and an empty mask: ignored signals (Rust ignores SIGPIPE) would
    // otherwise survive execve.
    for sig in 1..65 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: resets a signal to its default disposition; no handler pointer involved.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    // SAFETY: `empty` is initialised by sigemptyset before use.
    unsafe {
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, ptr::null_mut());
    }
    // SAFETY: plain integer argument.
    check(unsafe { libc::setsid() }, step::SETSID);
    check(
        prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as c_ulong),
        step::PDEATHSIG,
    );
    for &(res, soft, hard) in &plan.rlimits {
        let lim = libc::rlimit {
            rlim_cur: soft,
            rlim_max: hard,
        };
        // SAFETY: `lim` is a live rlimit.
        check(unsafe { libc::setrlimit(res as _, &lim) }, step::RLIMIT);
    }
    // Capabilities: lock root out of regaining any (uid 0 inside would get the bounding set
    // back on execve), empty the bounding and ambient sets, then the thread's own sets.
    // NOROOT, NO_SETUID_FIXUP, KEEP_CAPS off, NO_CAP_AMBIENT_RAISE, each locked.
    let bits: c_ulong = 0x01 | 0x02 | 0x04 | 0x08 | 0x20 | 0x40 | 0x80;
    check(prctl(libc::PR_SET_SECUREBITS, bits), step::SECUREBITS);
    for cap in 0..=plan.last_cap {
        let r = prctl(libc::PR_CAPBSET_DROP, cap as c_ulong);
        if r < 0 && errno() != libc::EINVAL {
            fail(step::CAPBSET, errno());
        }
    }
    // SAFETY: integer arguments only.
    check(
        unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL as c_ulong,
                0 as c_ulong,
                0 as c_ulong,
                0 as c_ulong,
            )
        },
        step::AMBIENT,
    );
    let hdr = CapHeader {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let data = [CapData::default(), CapData::default()];
    // SAFETY: v3 header and two data structs, as capset(2) expects.
    check(
        unsafe { libc::syscall(libc::SYS_capset, &hdr, data.as_ptr()) } as c_int,
        step::CAPSET,
    );
    check(prctl(libc::PR_SET_NO_NEW_PRIVS, 1), step::NO_NEW_PRIVS);

    if let Some(rfd) = plan.landlock_fd {
        for rule in &plan.landlock_rules {
            // SAFETY: NUL-terminated path; the fd is closed after use.
            let pfd = unsafe { libc::open(rule.path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
            check(pfd, step::LANDLOCK_RULE);
            let attr = PathBeneathAttr {
                allowed_access: rule.access,
                parent_fd: pfd,
            };
            // SAFETY: a live, correctly laid out landlock_path_beneath_attr.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_landlock_add_rule,
                    rfd,
                    LANDLOCK_RULE_PATH_BENEATH,
                    &attr as *const PathBeneathAttr,
                    0u32,
                )
            };
            let e = errno();
            // SAFETY: our own fd.
            unsafe { libc::close(pfd) };
            if r < 0 {
                fail(step::LANDLOCK_RULE, e);
            }
        }
        // SAFETY: integer arguments only.
        let r = unsafe { libc::syscall(libc::SYS_landlock_restrict_self, rfd, 0u32) };
        check(r as c_int, step::LANDLOCK_RESTRICT);
        // SAFETY: our own fd.
        unsafe { libc::close(rfd) };
    }
    // Only stdio survives execve: everything else (including the error pipe) is close-on-exec.
    // SAFETY: marks descriptors of this process close-on-exec.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    check(r as c_int, step::CLOSE_FDS);
    if let Some(prog) = &plan.seccomp
        && let Err(e) = seccompiler::apply_filter(prog)
    {
        let code = match e {
            seccompiler::Error::Seccomp(io) | seccompiler::Error::Prctl(io) => {
                io.raw_os_error().unwrap_or(libc::EINVAL)
            }
            _ => libc::EINVAL,
        };
        fail(step::SECCOMP, code);
    }
    // Like execvp: remember the most telling error over all candidates.
    let mut best = libc::ENOENT;
    for cand in &plan.exec_candidates {
        // SAFETY: NUL-terminated path; argv and envp are NULL-terminated arrays of pointers
        // into strings the parent keeps alive (our copy of its memory is never freed).
        unsafe { libc::execve(cand.as_ptr(), plan.argv.as_ptr(), plan.envp.as_ptr()) };
        let e = errno();
        if e != libc::ENOENT && e != libc::ENOTDIR {
            best = e;
        }
    }
    write_record(ep, MSG_EXEC_FAILED, best, 0);
    exit(127)
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: c_int,
}

#[repr(C)]
#[derive(Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Makes a pipe whose both ends are close-on-exec.
pub(crate) fn pipe_cloexec() -> std::io::Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)> {
    use std::os::fd::FromRawFd;
    let mut fds = [0 as c_int; 2];
    // SAFETY: `fds` is a live array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pipe2 just returned two fresh descriptors that nothing else owns.
    Ok(unsafe {
        (
            std::os::fd::OwnedFd::from_raw_fd(fds[0]),
            std::os::fd::OwnedFd::from_raw_fd(fds[1]),
        )
    })
}

/// The kernel's Landlock ABI version, or the errno why there is none.
pub(crate) fn landlock_abi() -> Result<i32, i32> {
    const LANDLOCK_CREATE_RULESET_VERSION: u32 = 1;
    // SAFETY: the version query takes a NULL attr and size 0.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            ptr::null::<u8>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if v < 0 { Err(errno()) } else { Ok(v as i32) }
}

/// Sends `signal` to `pid`.
pub(crate) fn kill(pid: u32, signal: i32) -> std::io::Result<()> {
    let pid =
        libc::pid_t::try_from(pid).map_err(|_| std::io::Error::from_raw_os_error(libc::ESRCH))?;
    // SAFETY: plain integer arguments; `pid` is our unreaped child, so it cannot be recycled.
    if unsafe { libc::kill(pid, signal) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Waits for our child `pid`; returns its raw wait status.
pub(crate) fn waitpid(pid: u32) -> std::io::Result<i32> {
    let pid =
        libc::pid_t::try_from(pid).map_err(|_| std::io::Error::from_raw_os_error(libc::ECHILD))?;
    loop {
        let mut status = 0;
        // SAFETY: waits for our own child; `status` is a live int.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            return Ok(status);
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Waits until `fd` is readable (or at EOF); `false` on timeout.
pub(crate) fn poll_readable(
    fd: RawFd,
    timeout: Option<std::time::Duration>,
) -> std::io::Result<bool> {
    let deadline = timeout.map(|t| std::time::Instant::now() + t);
    loop {
        let ms: c_int = match deadline {
            None => -1,
            Some(d) => {
                let left = d.saturating_duration_since(std::time::Instant::now());
                c_int::try_from(left.as_millis()).unwrap_or(c_int::MAX)
            }
        };
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one live pollfd.
        let r = unsafe { libc::poll(&mut p, 1, ms) };
        if r > 0 {
            return Ok(true);
        }
        if r == 0 {
            if ms == 0 || deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                return Ok(false);
            }
            continue;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// A pidfd for our child `pid` (Linux 5.3+); `None` where the kernel has none.
pub(crate) fn pidfd_open(pid: u32) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: integer arguments only.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0u32) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the kernel just returned this new descriptor; nothing else owns it.
    Some(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Sends `signal` through a pidfd (no pid-reuse race).
pub(crate) fn pidfd_send_signal(pidfd: RawFd, signal: i32) -> std::io::Result<()> {
    // SAFETY: integer arguments; a NULL siginfo means "as kill(2)".
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd,
            signal,
            ptr::null::<libc::siginfo_t>(),
            0u32,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Reaps our child `pid` if it has exited; never blocks.
pub(crate) fn waitpid_nohang(pid: u32) -> Option<i32> {
    let pid = libc::pid_t::try_from(pid).ok()?;
    let mut status = 0;
    // SAFETY: non-blocking wait for our own child; `status` is a live int.
    let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    (r == pid).then_some(status)
}

/// The caller's passwd entry (name, primary gid) through NSS, as `newuidmap` sees it.
pub(crate) fn passwd_entry(uid: u32) -> Option<(String, u32)> {
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: an all-zero `passwd` is a valid value (null pointers, zero ids); it is only
        // read after getpwuid_r filled it in.
        let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = ptr::null_mut();
        // SAFETY: `pw`, `buf` and `result` are live for the call; `buf.len()` is its size.
        let r = unsafe {
            libc::getpwuid_r(
                uid,
                &mut pw,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        if r == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        if r != 0 || result.is_null() || pw.pw_name.is_null() {
            return None;
        }
        // SAFETY: getpwuid_r succeeded, so `pw_name` points to a NUL-terminated string inside
        // `buf`, which is still alive.
        let name = unsafe { CStr::from_ptr(pw.pw_name) };
        return Some((name.to_str().ok()?.to_owned(), pw.pw_gid));
    }
}
