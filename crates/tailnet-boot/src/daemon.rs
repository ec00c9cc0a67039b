//! Starting, finding and stopping `tailscaled`.
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::BootError;

/// Environment variables removed from every process this crate starts: containerboot-style
/// images carry the key itself in them, and a child's environ is readable in `/proc`.
pub(crate) const SECRET_ENV: &[&str] = &["TS_AUTHKEY", "TS_AUTH_KEY"];

/// File names inside the state directory.
pub const SOCKET_NAME: &str = "tailscaled.sock";
/// The daemon's log (stdout and stderr), appended to.
pub const LOG_NAME: &str = "tailscaled.log";
/// `PID STARTTIME` of the daemon this crate started.
pub const PID_NAME: &str = "tailscaled.pid";
/// The daemon's state file (unless state is kept in memory).
pub const STATE_NAME: &str = "tailscaled.state";

/// How to run `tailscaled`.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// The `tailscaled` binary.
    pub tailscaled: PathBuf,
    /// State directory (created 0700): state file, socket, log, pid file.
    pub state_dir: PathBuf,
    /// The LocalAPI socket; default `STATE_DIR/tailscaled.sock`.
    pub socket: PathBuf,
    /// `--socks5-server` address; default `127.0.0.1:1055`. `None`: no SOCKS5 proxy.
    pub socks5_server: Option<String>,
    /// `--outbound-http-proxy-listen` address (may equal the SOCKS5 one).
    pub http_proxy_listen: Option<String>,
    /// `--state=mem:`: keep the node's keys in memory only (a restart needs a new login).
    pub in_memory_state: bool,
    /// Pass `--no-logs-no-support` (no log upload to Tailscale).
    pub no_logs_no_support: bool,
    /// More `tailscaled` arguments (containerboot's `TS_TAILSCALED_EXTRA_ARGS`).
    pub extra_args: Vec<String>,
    /// How long to wait for the socket to accept connections.
    pub socket_timeout: Duration,
}

impl DaemonConfig {
    /// Defaults for a state directory: socket inside it, SOCKS5 on `127.0.0.1:1055`, state on
    /// disk in the directory, 30 s socket timeout.
    pub fn new(tailscaled: impl Into<PathBuf>, state_dir: impl Into<PathBuf>) -> Self {
        let state_dir = state_dir.into();
        Self {
            tailscaled: tailscaled.into(),
            socket: state_dir.join(SOCKET_NAME),
            state_dir,
            socks5_server: Some("127.0.0.1:1055".to_owned()),
            http_proxy_listen: None,
            in_memory_state: false,
            no_logs_no_support: false,
            extra_args: Vec::new(),
            socket_timeout: Duration::from_secs(30),
        }
    }

    /// The argument list given to `tailscaled` (without the program).
    pub fn args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec!["--tun=userspace-networking".into()];
        let mut state = OsString::from("--state=");
        if self.in_memory_state {
            state.push("mem:");
        } else {
            state.push(self.state_dir.join(STATE_NAME));
        }
        args.push(state);
        let mut statedir = OsString::from("--statedir=");
        statedir.push(&self.state_dir);
        args.push(statedir);
        let mut socket = OsString::from("--socket=");
        socket.push(&self.socket);
        args.push(socket);
        if let Some(addr) = &self.socks5_server {
            args.push(format!("--socks5-server={addr}").into());
        }
        if let Some(addr) = &self.http_proxy_listen {
            args.push(format!("--outbound-http-proxy-listen={addr}").into());
        }
        if self.no_logs_no_support {
            args.push("--no-logs-no-support".into());
        }
        args.extend(self.extra_args.iter().map(OsString::from));
        args
    }

    /// The daemon's log file.
    pub fn log_path(&self) -> PathBuf {
        self.state_dir.join(LOG_NAME)
    }

    /// The pid file.
    pub fn pid_path(&self) -> PathBuf {
        self.state_dir.join(PID_NAME)
    }
}

/// A daemon found or started by [`ensure_daemon`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DaemonHandle {
    /// Its socket.
    pub socket: PathBuf,
    /// Its pid, when this crate started it (now or earlier, from the pid file).
    pub pid: Option<u32>,
    /// `true` when it was started by this call; `false` when a running one was reused.
    pub started: bool,
    /// Its log file.
    pub log: PathBuf,
}

/// `true` when something accepts connections on the unix socket.
pub fn socket_is_live(socket: &Path) -> bool {
    UnixStream::connect(socket).is_ok()
}

fn check_socket_len(socket: &Path) -> Result<(), BootError> {
    let len = socket.as_os_str().len();
    if len > 107 {
        return Err(BootError::SocketPathTooLong {
            path: socket.to_owned(),
            len,
        });
    }
    Ok(())
}

fn ensure_state_dir(dir: &Path) -> Result<(), BootError> {
    let err = |source| BootError::StateDir {
        path: dir.to_owned(),
        source,
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(err)?;
    let meta = fs::symlink_metadata(dir).map_err(err)?;
    if !meta.is_dir() {
        return Err(err(io::Error::new(
            io::ErrorKind::NotADirectory,
            "not a directory",
        )));
    }
    // Our own directory holds the node's private keys: no access for others.
    if meta.permissions().mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(err)?;
    }
    Ok(())
}

/// Start time (clock ticks since boot, field 22 of `/proc/PID/stat`) and state letter.
pub(crate) fn proc_start_and_state(pid: u32) -> Option<(u64, char)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let start = fields.nth(18)?.parse().ok()?;
    Some((start, state))
}

/// The daemon this crate started, according to the pid file, if that process still lives.
///
/// Returns `Ok(None)` when there is no pid file or it names a process that is gone (or a
/// different process that reused the pid: the start time is checked).
pub fn recorded_daemon(state_dir: &Path) -> Result<Option<u32>, BootError> {
    let path = state_dir.join(PID_NAME);
    let text = match read_small(&path, 256) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(BootError::Io { path, source }),
    };
    let bad = |reason: &str| BootError::PidFile {
        path: path.clone(),
        reason: reason.to_owned(),
    };
    let mut words = text.split_whitespace();
    let pid: u32 = words
        .next()
        .and_then(|w| w.parse().ok())
        .ok_or_else(|| bad("no pid"))?;
    let start: u64 = words
        .next()
        .and_then(|w| w.parse().ok())
        .ok_or_else(|| bad("no start time"))?;
    if pid <= 1 {
        return Err(bad("pid must be greater than 1"));
    }
    Ok(match proc_start_and_state(pid) {
        Some((seen, state)) if seen == start && state != 'Z' && state != 'X' => Some(pid),
        _ => None,
    })
}

fn read_small(path: &Path, limit: u64) -> io::Result<String> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc_o_nofollow())
        .open(path)?;
    let mut text = String::new();
    file.take(limit).read_to_string(&mut text)?;
    Ok(text)
}

fn libc_o_nofollow() -> i32 {
    rustix::fs::OFlags::NOFOLLOW.bits() as i32
}

fn write_pid_file(path: &Path, pid: u32) -> Result<(), BootError> {
    let start = proc_start_and_state(pid).map_or(0, |(start, _)| start);
    let tmp = path.with_extension("pid.tmp");
    let io_err = |source| BootError::Io {
        path: path.to_owned(),
        source,
    };
    let _ = fs::remove_file(&tmp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc_o_nofollow())
        .open(&tmp)
        .map_err(io_err)?;
    writeln!(file, "{pid} {start}").map_err(io_err)?;
    file.sync_all().map_err(io_err)?;
    fs::rename(&tmp, path).map_err(io_err)
}

/// The last `max_lines` lines of a log file (at most 8 KiB read).
pub fn log_tail(path: &Path, max_lines: usize) -> String {
    let Ok(mut file) = File::open(path) else {
        return String::from("(no log)");
    };
    let len = file.metadata().map_or(0, |m| m.len());
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(8192)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(max_lines)..].join(" | ")
}

/// What one run wrote to the log from `offset`: its first lines (where start-up errors are)
/// and its last one.
fn run_output(path: &Path, offset: u64) -> String {
    let Ok(mut file) = File::open(path) else {
        return String::from("(no log)");
    };
    let _ = file.seek(SeekFrom::Start(offset));
    let mut bytes = Vec::new();
    let _ = file.take(16 * 1024).read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if lines.len() <= 4 {
        return lines.join(" | ");
    }
    format!(
        "{} | … | {}",
        lines[..3].join(" | "),
        lines[lines.len() - 1]
    )
}

/// Finds a daemon listening on the configured socket, or starts one.
///
/// A started daemon runs in its own session (`setsid`), with stdin from `/dev/null` and
/// stdout/stderr appended to `STATE_DIR/tailscaled.log`; its pid and start time go to
/// `STATE_DIR/tailscaled.pid`. It is not a child to be waited for: it outlives the caller.
/// Returns once its socket accepts connections, or fails after `socket_timeout` (the daemon
/// is then stopped again), or as soon as the daemon exits (with the tail of its log).
pub fn ensure_daemon(config: &DaemonConfig) -> Result<DaemonHandle, BootError> {
    check_socket_len(&config.socket)?;
    ensure_state_dir(&config.state_dir)?;
    let log = config.log_path();
    if socket_is_live(&config.socket) {
        return Ok(DaemonHandle {
            socket: config.socket.clone(),
            pid: recorded_daemon(&config.state_dir)?,
            started: false,
            log,
        });
    }
    let log_file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc_o_nofollow())
        .open(&log)
        .map_err(|source| BootError::Io {
            path: log.clone(),
            source,
        })?;
    let log_offset = log_file.metadata().map_or(0, |m| m.len());
    let log_err = log_file.try_clone().map_err(|source| BootError::Io {
        path: log.clone(),
        source,
    })?;
    let mut command = Command::new(&config.tailscaled);
    command
        .args(config.args())
        .stdin(Stdio::null())
        .stdout(Stdio::from(log_file))
        .stderr(Stdio::from(log_err))
        .current_dir(&config.state_dir);
    for name in SECRET_ENV {
        command.env_remove(name);
    }
    crate::detach::new_session(&mut command);
    let mut child = command.spawn().map_err(|source| BootError::Spawn {
        program: config.tailscaled.clone(),
        source,
    })?;
    let pid = child.id();
    write_pid_file(&config.pid_path(), pid)?;
    let start = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let _ = fs::remove_file(config.pid_path());
            return Err(BootError::DaemonExited {
                pid,
                status: status.to_string(),
                socket: config.socket.clone(),
                log: log.clone(),
                log_tail: run_output(&log, log_offset),
            });
        }
        if socket_is_live(&config.socket) {
            // Dropping `child` neither kills nor waits: the daemon stays, and is reparented to
            // init (or the nearest subreaper) when we exit.
            return Ok(DaemonHandle {
                socket: config.socket.clone(),
                pid: Some(pid),
                started: true,
                log,
            });
        }
        if start.elapsed() >= config.socket_timeout {
            let _ = stop_pid(pid, Duration::from_secs(5));
            let _ = child.try_wait();
            let _ = fs::remove_file(config.pid_path());
            return Err(BootError::SocketTimeout {
                socket: config.socket.clone(),
                waited: start.elapsed(),
                log,
            });
        }
        thread::sleep(Duration::from_millis(25));
    }
}

/// How [`stop_daemon`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub enum StopOutcome {
    /// The recorded daemon was running and has exited.
    Stopped {
        /// Its pid.
        pid: u32,
    },
    /// No daemon of ours was running (no pid file, or its process is gone).
    NotRunning,
}

fn gone(pid: u32) -> bool {
    match proc_start_and_state(pid) {
        None => true,
        Some((_, state)) => {
            if state == 'Z' || state == 'X' {
                // Our own child (tests, or a caller that never exited): reap it.
                if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
                    let _ = rustix::process::waitpid(Some(p), rustix::process::WaitOptions::NOHANG);
                }
                true
            } else {
                false
            }
        }
    }
}

fn stop_pid(pid: u32, timeout: Duration) -> Result<(), BootError> {
    let Some(p) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return Ok(());
    };
    let start = Instant::now();
    let _ = rustix::process::kill_process(p, rustix::process::Signal::TERM);
    let mut killed = false;
    loop {
        if gone(pid) {
            return Ok(());
        }
        if !killed && start.elapsed() >= timeout {
            let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
            killed = true;
        }
        if start.elapsed() >= timeout + Duration::from_secs(5) {
            return Err(BootError::StopTimeout {
                pid,
                waited: start.elapsed(),
            });
        }
        thread::sleep(Duration::from_millis(25));
    }
}

/// Stops the daemon recorded in `STATE_DIR/tailscaled.pid` (SIGTERM, then SIGKILL after
/// `timeout`) and removes the pid file. A daemon this crate did not start is left alone.
pub fn stop_daemon(state_dir: &Path, timeout: Duration) -> Result<StopOutcome, BootError> {
    let pid_path = state_dir.join(PID_NAME);
    let outcome = match recorded_daemon(state_dir)? {
        Some(pid) => {
            stop_pid(pid, timeout)?;
            StopOutcome::Stopped { pid }
        }
        None => StopOutcome::NotRunning,
    };
    match fs::remove_file(&pid_path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(BootError::Io {
                path: pid_path,
                source,
            });
        }
    }
    Ok(outcome)
}
