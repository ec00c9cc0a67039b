//! The crate's error type.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::holder::{LockHolder, RecordError};

/// Why a lock could not be taken or inspected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// Someone else holds the lock (for [`crate::LockFile::try_acquire`]).
    #[error("lock {} is held by {}", path.display(), HolderText(holder.as_deref()))]
    Held {
        /// The lock file (or, for etcd, `etcd:<lock name>`).
        path: PathBuf,
        /// Who holds it, if the record could be read (boxed: keeps `Result<_, LockError>` small).
        holder: Option<Box<LockHolder>>,
    },
    /// The lock stayed held for the whole timeout.
    #[error(
        "lock {} is still held after waiting {waited:?}: held by {}",
        path.display(),
        HolderText(holder.as_deref())
    )]
    Timeout {
        /// The lock file (or, for etcd, `etcd:<lock name>`).
        path: PathBuf,
        /// How long we waited.
        waited: Duration,
        /// Who held it when we gave up, if known.
        holder: Option<Box<LockHolder>>,
    },
    /// The lock path is a symbolic link (refused: it could point anywhere).
    #[error("lock path {} is a symbolic link; refusing to follow it", path.display())]
    Symlink {
        /// The lock file path.
        path: PathBuf,
    },
    /// The lock path has no file name (e.g. ends in `/` or `..`).
    #[error("lock path {} does not name a file", path.display())]
    InvalidPath {
        /// The lock file path.
        path: PathBuf,
    },
    /// The lock's directory could let another user swap or pre-create the lock file.
    #[error("directory {} of the lock file is unsafe: {reason}", path.display())]
    UnsafeDirectory {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it (owner or mode).
        reason: String,
    },
    /// The existing lock file is not one we can trust (not a regular file, another owner, hard
    /// links).
    #[error("lock file {} is unsafe: {reason}", path.display())]
    UnsafeFile {
        /// The lock file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The lock file is on a network filesystem, where a local `flock` excludes nobody on other
    /// machines.
    #[error(
        "lock file {} is on a network filesystem ({fs_type}); a local lock means nothing there",
        path.display()
    )]
    NetworkFilesystem {
        /// The lock file or its directory.
        path: PathBuf,
        /// The filesystem type (from `statfs`'s `f_type`).
        fs_type: &'static str,
    },
    /// The holder record in the lock file could not be parsed (from [`crate::LockFile::holder`]).
    #[error("lock file {} holds an invalid holder record: {source}", path.display())]
    InvalidRecord {
        /// The lock file.
        path: PathBuf,
        /// What was wrong with it.
        source: RecordError,
    },
    /// A system call failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// What we were doing (`"open"`, `"flock"`, …).
        op: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// The etcd cluster could not be reached (no endpoint answered in time).
    #[cfg(feature = "etcd")]
    #[error("etcd cluster {endpoints} is unreachable: {reason}")]
    Unreachable {
        /// The endpoints tried, comma-separated.
        endpoints: String,
        /// The last error seen.
        reason: String,
    },
    /// Our etcd lease expired (or was revoked) before or while we held the lock.
    #[cfg(feature = "etcd")]
    #[error("etcd lease {lease_id:x} for lock {name} expired")]
    LeaseExpired {
        /// The lock name.
        name: String,
        /// The lease id.
        lease_id: i64,
    },
    /// An etcd request failed (other than unreachable/expired).
    #[cfg(feature = "etcd")]
    #[error("etcd {op} for lock {name} failed: {reason}")]
    Etcd {
        /// The lock name.
        name: String,
        /// What we were doing.
        op: &'static str,
        /// The error from the client.
        reason: String,
    },
    /// Invalid etcd lock configuration.
    #[cfg(feature = "etcd")]
    #[error("invalid etcd lock configuration: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
}

impl LockError {
    /// The holder named by a [`LockError::Held`] or [`LockError::Timeout`], if known.
    pub fn holder(&self) -> Option<&LockHolder> {
        match self {
            LockError::Held { holder, .. } | LockError::Timeout { holder, .. } => holder.as_deref(),
            _ => None,
        }
    }

    /// True for [`LockError::Held`] and [`LockError::Timeout`]: someone else has the lock.
    pub fn is_contended(&self) -> bool {
        matches!(self, LockError::Held { .. } | LockError::Timeout { .. })
    }

    pub(crate) fn io(
        path: impl Into<PathBuf>,
        op: &'static str,
        source: impl Into<io::Error>,
    ) -> Self {
        LockError::Io {
            path: path.into(),
            op,
            source: source.into(),
        }
    }
}

struct HolderText<'a>(Option<&'a LockHolder>);

impl fmt::Display for HolderText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(h) => write!(f, "{h}"),
            None => f.write_str("an unknown process (no readable holder record)"),
        }
    }
}
