//! The public builder and the running sandbox.
use std::ffi::OsString;
use std::fmt;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::report::Report;
use crate::{Error, Layer, plan, sys};

/// Read-only system paths bound into the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Profile {
    /// What a dynamically linked binary needs: the libraries, the loader, `ld.so.cache`, and
    /// the program's own file.
    #[default]
    Minimal,
    /// Minimal plus `/usr/bin`, `/usr/sbin`, `/usr/libexec`, terminfo and `/etc/alternatives`.
    Shell,
    /// Shell plus the system Python's configuration (`/etc/python3*`, `/usr/local/lib/python3*`).
    Python,
}

impl Profile {
    /// The profile's name.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Minimal => "minimal",
            Profile::Shell => "shell",
            Profile::Python => "python",
        }
    }
}

impl FromStr for Profile {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "minimal" => Ok(Profile::Minimal),
            "shell" => Ok(Profile::Shell),
            "python" => Ok(Profile::Python),
            other => Err(Error::Config(format!(
                "unknown profile {other:?} (known: minimal, shell, python)"
            ))),
        }
    }
}

/// The sandbox's network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Net {
    /// A new network namespace with no interface up.
    None,
    /// A new network namespace with only `lo`, up.
    #[default]
    Loopback,
}

impl FromStr for Net {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "none" => Ok(Net::None),
            "loopback" => Ok(Net::Loopback),
            other => Err(Error::Config(format!(
                "unknown network mode {other:?} (known: none, loopback)"
            ))),
        }
    }
}

type Hook = Box<dyn FnOnce(u32) -> Result<(), String>>;

/// How long `spawn` waits for the sandbox's set-up (mounts, rules) to report back.
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Entry point: `Sandbox::builder(program)`.
#[derive(Debug)]
pub struct Sandbox;

impl Sandbox {
    /// Starts configuring a sandbox that will run `program` (a path inside the sandbox, or a
    /// name looked up in the sandbox's `PATH`).
    pub fn builder(program: impl Into<OsString>) -> SandboxBuilder {
        SandboxBuilder {
            program: program.into(),
            args: Vec::new(),
            work: None,
            ro: Vec::new(),
            profile: Profile::Minimal,
            ramdisk_bytes: 64 << 20,
            net: Net::Loopback,
            hostname: "sandbox".into(),
            env: Vec::new(),
            host_uid: None,
            best_effort: false,
            subid_range: true,
            rlimits: Vec::new(),
            landlock: true,
            seccomp: true,
            hook: None,
        }
    }
}

/// Configuration of one sandbox. Every layer is on unless turned off explicitly.
pub struct SandboxBuilder {
    pub(crate) program: OsString,
    pub(crate) args: Vec<OsString>,
    pub(crate) work: Option<PathBuf>,
    pub(crate) ro: Vec<(PathBuf, PathBuf)>,
    pub(crate) profile: Profile,
    pub(crate) ramdisk_bytes: u64,
    pub(crate) net: Net,
    pub(crate) hostname: String,
    pub(crate) env: Vec<(OsString, OsString)>,
    pub(crate) host_uid: Option<u32>,
    pub(crate) best_effort: bool,
    pub(crate) subid_range: bool,
    pub(crate) rlimits: Vec<(Rlimit, u64, u64)>,
    pub(crate) landlock: bool,
    pub(crate) seccomp: bool,
    hook: Option<Hook>,
}

impl fmt::Debug for SandboxBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SandboxBuilder")
            .field("program", &self.program)
            .field("args", &self.args)
            .field("work", &self.work)
            .field("ro", &self.ro)
            .field("profile", &self.profile)
            .field("net", &self.net)
            .field("best_effort", &self.best_effort)
            .field("subid_range", &self.subid_range)
            .finish_non_exhaustive()
    }
}

/// Resource limits settable with [`SandboxBuilder::rlimit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rlimit {
    /// Core file size (always 0 unless set).
    Core,
    /// Open files.
    NoFile,
    /// Processes of the (host) uid.
    NProc,
    /// Address space.
    As,
    /// CPU seconds.
    Cpu,
    /// File size.
    FSize,
}

impl Rlimit {
    pub(crate) fn raw(self) -> (libc::c_int, &'static str) {
        match self {
            Rlimit::Core => (libc::RLIMIT_CORE as _, "core"),
            Rlimit::NoFile => (libc::RLIMIT_NOFILE as _, "nofile"),
            Rlimit::NProc => (libc::RLIMIT_NPROC as _, "nproc"),
            Rlimit::As => (libc::RLIMIT_AS as _, "as"),
            Rlimit::Cpu => (libc::RLIMIT_CPU as _, "cpu"),
            Rlimit::FSize => (libc::RLIMIT_FSIZE as _, "fsize"),
        }
    }
}

impl SandboxBuilder {
    /// Adds one argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }
    /// Adds arguments.
    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }
    /// Host directory mounted read-write at `/work` (the only writable host path).
    pub fn work_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.work = Some(dir.into());
        self
    }
    /// Extra read-only bind of host `src` at `dest` inside.
    pub fn ro_bind(mut self, src: impl Into<PathBuf>, dest: impl Into<PathBuf>) -> Self {
        self.ro.push((src.into(), dest.into()));
        self
    }
    /// System paths to bind read-only.
    pub fn profile(mut self, profile: Profile) -> Self {
        self.profile = profile;
        self
    }
    /// Size of the tmpfs root in bytes (default 64 MiB).
    pub fn ramdisk_size(mut self, bytes: u64) -> Self {
        self.ramdisk_bytes = bytes;
        self
    }
    /// Network mode (default: loopback only).
    pub fn net(mut self, net: Net) -> Self {
        self.net = net;
        self
    }
    /// Host name inside (default `sandbox`).
    pub fn hostname(mut self, name: impl Into<String>) -> Self {
        self.hostname = name.into();
        self
    }
    /// Sets one environment variable (the environment is otherwise clean: `PATH` and `HOME`).
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        let key = key.into();
        self.env.retain(|(k, _)| *k != key);
        self.env.push((key, value.into()));
        self
    }
    /// Passes the caller's value of `key`, if it has one.
    pub fn keep_env(self, key: impl Into<OsString>) -> Self {
        let key = key.into();
        match std::env::var_os(&key) {
            Some(v) => self.env(key, v),
            None => self,
        }
    }
    /// Host uid to run as when the caller is root (default: the owner of the work dir when
    /// that is not root, else 65534). An unprivileged caller can only map itself.
    pub fn host_uid(mut self, uid: u32) -> Self {
        self.host_uid = Some(uid);
        self
    }
    /// For an unprivileged caller whose user `/etc/subuid` / `/etc/subgid` grant a range
    /// (`name:start:count` or `uid:start:count`) and with `newuidmap` / `newgidmap` installed:
    /// also map ids `1..=count` inside to that range (on by default; no effect for a root
    /// caller). The report's `uid_map`/`gid_map` show what was applied. A malformed file or a
    /// failing helper is a setup error, or in best-effort mode a single-id map listed in
    /// [`Report::missing`](crate::Report::missing).
    pub fn subid_range(mut self, on: bool) -> Self {
        self.subid_range = on;
        self
    }
    /// Run even if some layer is unavailable; the report lists what is missing.
    pub fn best_effort(mut self, yes: bool) -> Self {
        self.best_effort = yes;
        self
    }
    /// Sets a resource limit (core is 0 by default).
    pub fn rlimit(mut self, which: Rlimit, soft: u64, hard: u64) -> Self {
        self.rlimits.retain(|(w, _, _)| *w != which);
        self.rlimits.push((which, soft, hard));
        self
    }
    /// Turns Landlock off (it is on by default).
    pub fn landlock(mut self, on: bool) -> Self {
        self.landlock = on;
        self
    }
    /// Turns the seccomp filter off (it is on by default).
    pub fn seccomp(mut self, on: bool) -> Self {
        self.seccomp = on;
        self
    }
    /// Runs `hook` in the parent with the host pid of the sandbox's first process, after it
    /// exists and before the program runs its first instruction (for example to move it into a
    /// cgroup). An `Err` aborts the start; nothing runs.
    pub fn before_start(mut self, hook: impl FnOnce(u32) -> Result<(), String> + 'static) -> Self {
        self.hook = Some(Box::new(hook));
        self
    }

    /// Sets the sandbox up and starts the program.
    ///
    /// Returns once the program has been `execve`d inside the fully set-up sandbox. Every
    /// failure before that point is an error and nothing ran (except [`Error::NotFound`] and
    /// [`Error::NotExecutable`], for which the sandbox was set up but `execve` failed).
    ///
    /// The sandbox dies with the **thread** that calls `spawn` (parent-death signal): call it
    /// from a thread that outlives the sandbox.
    pub fn spawn(mut self) -> Result<SandboxChild, Error> {
        let hook = self.hook.take();
        let mut prep = plan::prepare(&self)?;
        let (sync_r, sync_w) = sys::pipe_cloexec().map_err(Error::Supervise)?;
        let (st_r, st_w) = sys::pipe_cloexec().map_err(Error::Supervise)?;
        let (ex_r, ex_w) = sys::pipe_cloexec().map_err(Error::Supervise)?;
        prep.plan.exec_read = ex_r.as_raw_fd();
        prep.plan.exec_write = ex_w.as_raw_fd();
        prep.plan.sync_read = sync_r.as_raw_fd();
        prep.plan.sync_write = sync_w.as_raw_fd();
        prep.plan.status_read = st_r.as_raw_fd();
        prep.plan.status_write = st_w.as_raw_fd();
        let started = Instant::now();
        let pid = sys::clone_sandbox(&prep.plan).map_err(|e| Error::Layer {
            layer: Layer::UserNamespace,
            step: "clone(CLONE_NEWUSER|CLONE_NEWNS|CLONE_NEWPID|CLONE_NEWNET|CLONE_NEWIPC|CLONE_NEWUTS)".into(),
            cause: plan::userns_hint(&e),
            source: e,
        })?;
        // `sync_r` stays open here until "go" is written: with a reader of our own, writing to
        // a child that already died is no SIGPIPE.
        drop(st_w);
        drop(ex_w);
        let _fds: Vec<OwnedFd> = std::mem::take(&mut prep.fds);
        drop(_fds);
        let mut child = SandboxChild {
            pid,
            pidfd: sys::pidfd_open(pid).map(Arc::new),
            status: Some(st_r),
            reaped: false,
            outcome: None,
            report: prep.report.clone(),
            started,
        };
        let applied = match plan::write_id_maps(pid, &prep.ids) {
            Ok(a) => a,
            Err(e) => {
                let reported = child.early_failure(&prep);
                child.abort();
                return Err(reported.unwrap_or(e));
            }
        };
        child.report.uid_map = applied.uid_map;
        child.report.gid_map = applied.gid_map;
        child.report.setgroups = applied.setgroups;
        if !applied.subid.is_empty() {
            child.report.subid = applied.subid;
        }
        child.report.missing.extend(applied.missing);
        if let Some(hook) = hook
            && let Err(msg) = hook(pid)
        {
            child.abort();
            return Err(Error::Hook(msg));
        }
        // Go: the child proceeds with the rest of the set-up.
        let go = [if applied.clear_groups {
            sys::GO_CLEAR_GROUPS
        } else {
            sys::GO
        }];
        if let Err(e) = rustix::io::write(&sync_w, &go) {
            let reported = child.early_failure(&prep);
            child.abort();
            return Err(reported.unwrap_or_else(|| Error::Supervise(e.into())));
        }
        drop(sync_r);
        // `sync_w` stays open until the program started: its hang-up tells the child we died.
        // Set-up is a few dozen syscalls; a child that says nothing for this long is stuck.
        match sys::poll_readable(ex_r.as_raw_fd(), Some(SETUP_TIMEOUT)) {
            Ok(true) => {}
            Ok(false) => {
                child.abort();
                return Err(Error::Supervise(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("the sandbox did not finish its set-up within {SETUP_TIMEOUT:?}"),
                )));
            }
            Err(e) => {
                child.abort();
                return Err(Error::Supervise(e));
            }
        }
        // The program's process reports on the exec pipe; its EOF means `execve` succeeded
        // (close-on-exec) or that init failed before starting it (then init's record is
        // already on the status pipe).
        let rec = sys::read_record(ex_r.as_raw_fd());
        drop(sync_w);
        drop(ex_r);
        match rec {
            Ok(None) => {}
            Ok(Some((sys::MSG_SETUP_FAILED, stepid, errno))) => {
                child.reap();
                return Err(plan::step_error(&prep, stepid as u32, errno));
            }
            Ok(Some((sys::MSG_EXEC_FAILED, errno, _))) => {
                child.reap();
                let program = self.program.to_string_lossy().into_owned();
                return Err(if errno == libc::ENOENT {
                    Error::NotFound { program }
                } else {
                    Error::NotExecutable {
                        program,
                        source: std::io::Error::from_raw_os_error(errno),
                    }
                });
            }
            Ok(Some(other)) => {
                child.abort();
                return Err(Error::Supervise(std::io::Error::other(format!(
                    "unexpected message {other:?} from the sandbox"
                ))));
            }
            Err(e) => {
                child.abort();
                return Err(Error::Supervise(e));
            }
        }
        let init_spoke = child
            .status
            .as_ref()
            .map(|fd| sys::poll_readable(fd.as_raw_fd(), Some(Duration::ZERO)));
        if let Some(Ok(false)) = init_spoke {
            return Ok(child);
        }
        match child.read_status() {
            Ok(Some((sys::MSG_EXITED, status, _))) => {
                // The program already ran and exited.
                child.record_exit(status);
                Ok(child)
            }
            Ok(Some((sys::MSG_SETUP_FAILED, stepid, errno))) => {
                child.reap();
                Err(plan::step_error(&prep, stepid as u32, errno))
            }
            Ok(other) => {
                let status = child.reap();
                Err(Error::Supervise(std::io::Error::other(format!(
                    "the sandbox's init ended during set-up (message {other:?}, wait status {status:?})"
                ))))
            }
            Err(e) => {
                child.abort();
                Err(Error::Supervise(e))
            }
        }
    }
}

/// Signals a running sandbox's init from any thread; see [`SandboxChild::signaller`].
#[derive(Debug, Clone)]
pub struct Signaller {
    pid: u32,
    pidfd: Option<Arc<OwnedFd>>,
}

impl Signaller {
    /// Sends `signal` to the sandbox's init (which forwards it to the program). After the
    /// sandbox ended this is an error (`ESRCH`), never a signal to an unrelated process when
    /// the kernel has pidfds (5.3+).
    pub fn send(&self, signal: i32) -> std::io::Result<()> {
        match &self.pidfd {
            Some(fd) => sys::pidfd_send_signal(fd.as_raw_fd(), signal),
            None => sys::kill(self.pid, signal),
        }
    }
}

/// How the program ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// It exited with this code.
    Exited(i32),
    /// It was killed by this signal (also when the whole sandbox was killed).
    Signaled(i32),
}

impl Outcome {
    /// The shell convention: the exit code, or 128 + signal.
    pub fn code(self) -> i32 {
        match self {
            Outcome::Exited(c) => c,
            Outcome::Signaled(s) => 128 + s,
        }
    }
}

/// A running sandbox. Dropping it kills and reaps everything inside.
#[derive(Debug)]
pub struct SandboxChild {
    pid: u32,
    pidfd: Option<Arc<OwnedFd>>,
    status: Option<OwnedFd>,
    reaped: bool,
    outcome: Option<Outcome>,
    report: Report,
    started: Instant,
}

impl SandboxChild {
    /// Host pid of the sandbox's init (PID 1 inside). Signals sent to it are forwarded to the
    /// program; SIGKILL ends the whole sandbox.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// What was applied.
    pub fn report(&self) -> &Report {
        &self.report
    }

    /// When `spawn` started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Sends `signal` to the sandbox's init, which forwards it to the program
    /// (SIGKILL kills the whole sandbox).
    pub fn signal(&self, signal: i32) -> std::io::Result<()> {
        if self.reaped {
            return Ok(());
        }
        self.signaller().send(signal)
    }

    /// A handle that can signal the sandbox from another thread (for example to forward
    /// SIGTERM), race-free through a pidfd where the kernel has them.
    pub fn signaller(&self) -> Signaller {
        Signaller {
            pid: self.pid,
            pidfd: self.pidfd.clone(),
        }
    }

    /// Kills everything in the sandbox (SIGKILL to its init; the kernel kills the rest of the
    /// PID namespace).
    pub fn kill(&self) -> std::io::Result<()> {
        self.signal(libc::SIGKILL)
    }

    /// Waits for the program to end. When this returns, everything else in the sandbox has been
    /// killed by the kernel (nothing can outlive the PID namespace's init); dropping the child
    /// or [`reap_init`](Self::reap_init) waits until the namespaces are torn down.
    pub fn wait(&mut self) -> Result<Outcome, Error> {
        match self.wait_timeout(None)? {
            Some(o) => Ok(o),
            None => Err(Error::Supervise(std::io::Error::other(
                "wait ended without status",
            ))),
        }
    }

    /// Waits up to `timeout` (forever with `None`); `Ok(None)` when it ran out (the sandbox is
    /// still running; call [`kill`](Self::kill) then [`wait`](Self::wait)).
    pub fn wait_timeout(&mut self, timeout: Option<Duration>) -> Result<Option<Outcome>, Error> {
        if let Some(o) = self.outcome {
            return Ok(Some(o));
        }
        if let Some(fd) = &self.status {
            let ready = sys::poll_readable(fd.as_raw_fd(), timeout).map_err(Error::Supervise)?;
            if !ready {
                return Ok(None);
            }
        }
        let rec = self.read_status().map_err(Error::Supervise)?;
        self.status = None;
        if let Some((sys::MSG_EXITED, status, _)) = rec {
            return Ok(Some(self.record_exit(status)));
        }
        // No status from the init: it was killed (timeout, OOM, our kill()); its status says how.
        match self.reap() {
            Some(s) => {
                let o = decode(s);
                self.outcome = Some(o);
                Ok(Some(o))
            }
            None => Err(Error::Supervise(std::io::Error::other(
                "the sandbox's init vanished",
            ))),
        }
    }

    /// Waits until the sandbox's init is gone, i.e. the kernel has finished tearing down the
    /// namespaces (dropping the child does this too).
    pub fn reap_init(&mut self) {
        if self.outcome.is_none() {
            let _ = self.kill();
        }
        self.reap();
    }

    /// For a supervisor about to exit: gives up reaping the init after the program ended.
    /// Every process left in the sandbox has already been killed by the kernel; the host's
    /// init reaps ours when we exit. Without an outcome yet, this kills and reaps as `drop`.
    pub fn detach(mut self) {
        if self.outcome.is_some() {
            self.reaped = true;
        }
    }

    /// The init reported the program's exit and is exiting: the kernel kills whatever the
    /// program left behind and tears the namespaces down. Reap it now if that is done, else on
    /// drop (waiting for the teardown here would double the cost of a short run).
    fn record_exit(&mut self, status: i32) -> Outcome {
        self.status = None;
        if sys::waitpid_nohang(self.pid).is_some() {
            self.reaped = true;
        }
        let o = decode(status);
        self.outcome = Some(o);
        o
    }

    /// A set-up failure the child already reported (it works before "go" as well).
    fn early_failure(&mut self, prep: &plan::Prepared) -> Option<Error> {
        let fd = self.status.as_ref()?.as_raw_fd();
        if !sys::poll_readable(fd, Some(Duration::ZERO)).ok()? {
            return None;
        }
        match sys::read_record(fd) {
            Ok(Some((sys::MSG_SETUP_FAILED, stepid, errno))) => {
                Some(plan::step_error(prep, stepid as u32, errno))
            }
            _ => None,
        }
    }

    fn read_status(&mut self) -> std::io::Result<Option<(u32, i32, i32)>> {
        match &self.status {
            Some(fd) => sys::read_record(fd.as_raw_fd()),
            None => Ok(None),
        }
    }

    fn abort(&mut self) {
        let _ = self.kill();
        self.reap();
    }

    /// Waits for init; returns its raw wait status.
    fn reap(&mut self) -> Option<i32> {
        if self.reaped {
            return None;
        }
        self.reaped = true;
        self.status = None;
        sys::waitpid(self.pid).ok()
    }
}

fn decode(status: i32) -> Outcome {
    if libc::WIFSIGNALED(status) {
        Outcome::Signaled(libc::WTERMSIG(status))
    } else {
        Outcome::Exited(libc::WEXITSTATUS(status))
    }
}

impl Drop for SandboxChild {
    fn drop(&mut self) {
        if !self.reaped {
            self.reap_init();
        }
    }
}
