//! The singleton lock as `manager` uses it: pick the backend, turn its errors into exit codes.
use std::os::fd::{AsFd, BorrowedFd};
use std::process::ExitCode;

use singleton_lock::{LockError, LockFile, LockGuard};

use crate::exit::{self, fail};
use crate::{Globals, LockBackend};

/// A held singleton lock; dropping it releases the lock.
pub enum Held {
    /// flock on the local lock file.
    Local(LockGuard),
}

impl Held {
    /// The fd that carries the lock, when the backend has one (an inherited copy keeps it held).
    pub fn lock_fd(&self) -> Option<BorrowedFd<'_>> {
        match self {
            Held::Local(guard) => Some(guard.as_fd()),
        }
    }
}

/// The local lock file chosen by the flags.
pub fn local_lock(globals: &Globals) -> LockFile {
    LockFile::new(
        globals
            .lock_file
            .clone()
            .unwrap_or_else(|| singleton_lock::default_lock_path("manager")),
    )
}

/// Takes the singleton lock without waiting, or returns the exit code to leave with:
/// 3 with the holder named on stderr when another instance has it.
pub fn hold(globals: &Globals) -> Result<Held, ExitCode> {
    match globals.lock_backend {
        LockBackend::Local => {
            let lock = local_lock(globals);
            match lock.try_acquire() {
                Ok(guard) => Ok(Held::Local(guard)),
                Err(err) => Err(lock_error(&err)),
            }
        }
        LockBackend::Etcd => Err(fail(
            exit::ERROR,
            "--lock-backend etcd: this build of manager has no etcd support",
        )),
    }
}

/// One line on stderr for a lock error, and its exit code.
pub fn lock_error(err: &LockError) -> ExitCode {
    match err {
        LockError::Held { path, holder } => {
            let who = holder
                .as_ref()
                .map_or_else(|| "an unknown process".to_owned(), ToString::to_string);
            fail(
                exit::LOCK_HELD,
                format_args!("another instance holds the lock {}: {who}", path.display()),
            )
        }
        other => fail(exit::ERROR, other),
    }
}
