//! The crate's one error type.

use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// Everything that can go wrong. No variant ever carries secret bytes.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Nobody opened the FIFO for reading within the open timeout; the FIFO was removed.
    #[error("no reader opened {path} within {waited:?}; the FIFO was removed")]
    NoReader {
        /// The FIFO.
        path: PathBuf,
        /// How long the sender waited.
        waited: Duration,
    },
    /// The caller's cancel flag was raised while waiting; the FIFO was removed.
    #[error("sending to {path} was cancelled; the FIFO was removed")]
    Cancelled {
        /// The FIFO.
        path: PathBuf,
    },
    /// The reader did not take all bytes within the write timeout.
    #[error("reader of {path} took only {written} of {total} bytes within the write timeout")]
    WriteTimeout {
        /// The FIFO.
        path: PathBuf,
        /// Bytes accepted by the pipe.
        written: usize,
        /// Bytes of the secret.
        total: usize,
    },
    /// The reader closed its end before all bytes were written (`EPIPE`).
    #[error("reader of {path} closed it after {written} of {total} bytes")]
    ReaderGone {
        /// The FIFO.
        path: PathBuf,
        /// Bytes accepted by the pipe.
        written: usize,
        /// Bytes of the secret.
        total: usize,
    },
    /// The path no longer names the FIFO this process created; nothing was written.
    #[error("{path} is not the FIFO we created ({reason}); nothing was written")]
    Swapped {
        /// The FIFO path.
        path: PathBuf,
        /// What was found instead.
        reason: &'static str,
    },
    /// The directory is on a filesystem that may write pages to disk.
    #[error("{path} is on {fs_type}, not a RAM-backed filesystem (tmpfs/ramfs)")]
    NotRamBacked {
        /// The directory.
        path: PathBuf,
        /// Filesystem name when known, and its `statfs` magic number.
        fs_type: String,
    },
    /// A directory fails the ownership/permission checks.
    #[error("{path} is not a safe place for secrets: {reason}")]
    UnsafeDir {
        /// The directory.
        path: PathBuf,
        /// Which check failed.
        reason: String,
    },
    /// A secret source specification could not be parsed. `input` is the specification, cut
    /// to 80 characters, or withheld entirely when it does not start with a known kind (it
    /// might be a secret pasted in by mistake).
    #[error("bad secret source {input}: {reason}")]
    BadSource {
        /// The (bounded or withheld) specification.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An application or FIFO name is not `[A-Za-z0-9_.-]{1,64}` (or starts with a dot).
    #[error("bad name {name:?}: {reason}")]
    BadName {
        /// The name (bounded to 80 characters).
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `env:VAR` names a variable that is not set.
    #[error("environment variable {var} is not set")]
    NotSet {
        /// The variable name.
        var: String,
    },
    /// The source gave no bytes (refused unless `ReadOptions::allow_empty`).
    #[error("secret source {source_spec} gave an empty secret")]
    Empty {
        /// The source, as its specification (never the secret).
        source_spec: String,
    },
    /// The user pressed the interrupt (Ctrl-C) or quit key at a `prompt`. The terminal was
    /// restored first; a program would normally exit now as if killed by `SIGINT` (code 130).
    #[error("reading a secret from {path} was interrupted")]
    Interrupted {
        /// The terminal.
        path: PathBuf,
    },
    /// The secret is longer than the configured bound.
    #[error("secret is longer than the limit of {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// A system call on a path failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// The path (or a description such as `<stdin>`).
        path: PathBuf,
        /// The operation, e.g. `mkfifo`, `open`, `write`.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Memory for a secret could not be mapped.
    #[error("{op} of {bytes} bytes for a secret failed: {source}")]
    Memory {
        /// The operation.
        op: &'static str,
        /// Requested size.
        bytes: usize,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// `cmd:` program exited unsuccessfully; its output was discarded (zeroed).
    #[error("secret command {program} failed: {status}")]
    CommandFailed {
        /// The program as given.
        program: String,
        /// Its exit status.
        status: ExitStatus,
    },
}

impl SecretError {
    pub(crate) fn io(
        path: impl Into<PathBuf>,
        op: &'static str,
        source: impl Into<io::Error>,
    ) -> Self {
        Self::Io {
            path: path.into(),
            op,
            source: source.into(),
        }
    }
}

/// Cuts `s` to at most `max` characters, marking the cut.
pub(crate) fn bounded(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_owned(),
        Some((at, _)) => format!("{}…", &s[..at]),
    }
}
