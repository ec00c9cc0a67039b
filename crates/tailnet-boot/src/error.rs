//! The crate's error type: one enum, each variant naming the path, program or value that failed.
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::status::{BackendState, StatusError};

/// Why a key was rejected, as recognised from `tailscale up`'s output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[non_exhaustive]
pub enum KeyFailureKind {
    /// The control server does not know the key (never existed, revoked, malformed).
    Invalid,
    /// The key has expired.
    Expired,
    /// A single-use key that was already consumed.
    Reused,
}

impl fmt::Display for KeyFailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Invalid => "invalid",
            Self::Expired => "expired",
            Self::Reused => "already used",
        })
    }
}

/// One rejected key: which attempt, what kind, and the (redacted) line that said so.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyFailure {
    /// The `tailscale up` attempt (1-based) whose key was rejected.
    pub attempt: u32,
    /// The kind of rejection, from the matching [`KeyPatterns`](crate::KeyPatterns) entry.
    pub kind: KeyFailureKind,
    /// The output line that matched, with anything that looks like a key redacted.
    pub message: String,
}

impl fmt::Display for KeyFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "attempt {}: key {}: {}",
            self.attempt, self.kind, self.message
        )
    }
}

/// Everything that can go wrong while starting, driving or inspecting Tailscale.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BootError {
    /// The state directory could not be created or secured.
    #[error("state directory {path}: {source}")]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A unix socket path longer than the kernel's `sun_path` allows.
    #[error("socket path {path} is {len} bytes; unix socket paths must be at most 107 bytes")]
    SocketPathTooLong {
        /// The socket path.
        path: PathBuf,
        /// Its length in bytes.
        len: usize,
    },
    /// A program could not be started.
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// The program.
        program: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// tailscaled exited before its socket became ready.
    #[error(
        "tailscaled (pid {pid}) exited ({status}) before socket {socket} was ready; log {log}: {log_tail}"
    )]
    DaemonExited {
        /// Its pid.
        pid: u32,
        /// How it ended.
        status: String,
        /// The socket it should have created.
        socket: PathBuf,
        /// Its log file.
        log: PathBuf,
        /// The last lines of its log.
        log_tail: String,
    },
    /// tailscaled is running but its socket did not accept connections in time.
    #[error("tailscaled socket {socket} not ready after {waited:?} (log: {log})")]
    SocketTimeout {
        /// The socket.
        socket: PathBuf,
        /// How long we waited.
        waited: Duration,
        /// The daemon's log file.
        log: PathBuf,
    },
    /// Nothing listens on the daemon socket (the CLI said so, or connect failed).
    #[error("tailscaled is not running on socket {socket}")]
    DaemonNotRunning {
        /// The socket.
        socket: PathBuf,
    },
    /// The pid file is unreadable, malformed, or names another process.
    #[error("pid file {path}: {reason}")]
    PidFile {
        /// The pid file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A process we started did not stop after SIGTERM and SIGKILL.
    #[error("tailscaled pid {pid} did not exit within {waited:?} of SIGTERM/SIGKILL")]
    StopTimeout {
        /// Its pid.
        pid: u32,
        /// How long we waited.
        waited: Duration,
    },
    /// A CLI command did not finish within its bound and was killed.
    #[error("{program} {what} did not finish within {timeout:?} (killed)")]
    CommandTimeout {
        /// The program.
        program: PathBuf,
        /// Which subcommand.
        what: &'static str,
        /// The bound.
        timeout: Duration,
    },
    /// A CLI command failed.
    #[error("{program} {what} failed (exit {code:?}): {message}")]
    CommandFailed {
        /// The program.
        program: PathBuf,
        /// Which subcommand.
        what: &'static str,
        /// Its exit code, if it exited.
        code: Option<i32>,
        /// Its last output (redacted).
        message: String,
    },
    /// `tailscale status --json` printed something we do not accept.
    #[error("tailscale status --json: {0}")]
    Status(#[from] StatusError),
    /// Every allowed attempt ended with a rejected key.
    #[error("the auth key was rejected on all {attempts} attempts (the bound); last: {last}")]
    KeyAttemptsExhausted {
        /// How many `tailscale up` runs were made.
        attempts: u32,
        /// The last rejection.
        last: KeyFailure,
    },
    /// The key provider could not give a key.
    #[error("no auth key for attempt {attempt}: {source}")]
    KeyProvider {
        /// The attempt that needed a key.
        attempt: u32,
        /// The provider's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// `tailscale up` did not reach Running within its `--timeout` (or our grace after it).
    #[error("tailscale up did not reach Running within {timeout:?}: {message}")]
    UpTimeout {
        /// The `--timeout` given.
        timeout: Duration,
        /// What it said (redacted).
        message: String,
    },
    /// `tailscale up` refused because the node's settings differ (needs `--reset` or all flags).
    #[error(
        "tailscale up refused the settings (pass all non-default flags, or --reset): {message}"
    )]
    SettingsConflict {
        /// What it said.
        message: String,
    },
    /// An argument that must never be passed to `tailscale up` by this crate.
    #[error("refusing tailscale up argument {arg:?}: {why}")]
    ForbiddenUpArg {
        /// The argument.
        arg: String,
        /// Why.
        why: &'static str,
    },
    /// The node is logged in but waits for a tailnet admin to approve it.
    #[error("the node waits for approval by a tailnet admin (NeedsMachineAuth)")]
    NeedsMachineAuth,
    /// The node needs a login but no key provider was given and no login URL appeared.
    #[error("the node needs a login (state {state}) and no auth key source was given")]
    NoKeyProvider {
        /// The state seen.
        state: BackendState,
    },
    /// A value (address, host name, argument) that cannot be used safely.
    #[error("invalid {what} {value:?}: {why}")]
    InvalidValue {
        /// What the value is.
        what: &'static str,
        /// The value.
        value: String,
        /// Why it is refused.
        why: &'static str,
    },
    /// A SOCKS5 connection through the proxy failed.
    #[error("SOCKS5 proxy {proxy} to {target}: {reason}")]
    Socks5 {
        /// The proxy address.
        proxy: String,
        /// The target `host:port`.
        target: String,
        /// What failed.
        reason: String,
    },
    /// I/O on a file of ours failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

/// A failed bring-up: the cause, how far it got, and the state the daemon was left in.
///
/// The daemon is never stopped on failure (it may hold a working login): this says what state it
/// is in so the caller can report it ("never half up without saying so").
#[derive(Debug)]
pub struct UpError {
    /// What went wrong.
    pub cause: Box<BootError>,
    /// How many `tailscale up` runs were made.
    pub attempts: u32,
    /// The daemon's state after the failure, when it could be read.
    pub daemon_state: Option<BackendState>,
}

impl fmt::Display for UpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.cause)?;
        match &self.daemon_state {
            Some(BackendState::Running) => write!(f, " (tailscaled running, state Running)"),
            Some(state) => write!(
                f,
                " (tailscaled left running, state {state}: not connected)"
            ),
            None => write!(f, " (tailscaled state unknown)"),
        }
    }
}

impl std::error::Error for UpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.cause)
    }
}
