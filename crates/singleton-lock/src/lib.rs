//! One instance only: a kernel file lock released when the holder dies, that reports who holds it.
//!
//! [`LockFile`] takes an exclusive `flock(2)` lock on a lock file. The kernel drops it when the
//! holder exits, however it exits (SIGKILL included), so there are no stale locks to clean up.
//! The winner writes a small holder record into the file (pid, process start time, boot id,
//! host, uid, executable, since when); a caller that finds the lock taken gets that record back,
//! checked against the live process ([`Verification`]).
//!
//! ```
//! use singleton_lock::{LockError, LockFile};
//! # let dir = tempfile::tempdir()?;
//! # let path = dir.path().join("demo.lock");
//! // Usually: LockFile::new(singleton_lock::default_lock_path("demo"))
//! let lock = LockFile::new(&path);
//! let guard = lock.try_acquire()?;
//! assert_eq!(guard.holder().pid, std::process::id());
//!
//! // A second attempt (from any process, or this one) is refused and told who holds it.
//! match LockFile::new(&path).try_acquire() {
//!     Err(LockError::Held { holder: Some(h), .. }) => {
//!         assert_eq!(h.pid, std::process::id());
//!         println!("already running: {h}"); // pid 1234 (/usr/bin/demo) on host, since …, verified
//!     }
//!     other => panic!("expected Held, got {other:?}"),
//! }
//! drop(guard); // released; the file stays (never unlinked)
//! assert!(lock.try_acquire().is_ok());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Many nodes: the etcd backend (feature `etcd`)
//!
//! A `flock` only excludes processes on one machine. With the `etcd` feature, `EtcdLock` takes
//! the same kind of lock through an etcd cluster: a lease with a TTL kept alive every TTL/3, a
//! key `<prefix>/<name>/<lease id hex>` created in a transaction, the owner being the key with
//! the smallest create revision, waiters watching their predecessor's key. The holder gets a
//! **fencing token** (its key's create revision; every later holder's is larger) and a
//! [`LostSignal`] that fires when the lock is lost (lease expired, keepalives failing past the
//! TTL, key deleted). Deadlines run on `CLOCK_BOOTTIME`, so a holder that was stopped or
//! suspended past its TTL sees the loss as soon as it checks. The API is blocking (a small tokio
//! runtime runs inside on a background thread). Without the feature, no gRPC or tokio code is
//! compiled in.
//!
//! [`LockBackend`] and [`HeldLock`] are object-safe traits over both backends, so a program can
//! choose at run time: `Box<dyn LockBackend>`.
//!
//! # Which kernel lock, and what `fork`, `exec` and threads do to it
//!
//! Linux has three kinds of file locks; this crate uses `flock(2)`, deliberately:
//!
//! | | `flock(2)` (used) | OFD locks (`F_OFD_SETLK`) | POSIX locks (`F_SETLK`) |
//! |---|---|---|---|
//! | owned by | the open file description | the open file description | the process |
//! | across `fork` | shared with the child (same description) | shared with the child | **not** inherited |
//! | across `exec` | kept if the fd survives (no `O_CLOEXEC`) | kept if the fd survives | kept |
//! | threads | one description: all threads share it; a second `open` conflicts | same | all threads are one owner |
//! | released by | `LOCK_UN`, or closing the *last* fd of the description | same | closing **any** fd of the file |
//!
//! POSIX locks are out: any library that opens and closes the lock file (even to read the
//! record) would silently drop the lock. OFD locks have the same per-description semantics as
//! `flock` and add byte ranges we do not need; `flock` is simpler, older, and shown by the kernel
//! in `/proc/locks` as `FLOCK`. (`flock` and fcntl locks do not see each other on Linux, so mixing
//! them on one file gives no exclusion.)
//!
//! Consequences:
//! - Each acquisition opens the file again, so a second `LockFile` in the same process (or any
//!   thread) conflicts with the first: the lock is per process *and* per acquisition.
//! - The fd is `O_CLOEXEC` by default: programs you `exec` do not keep the lock.
//!   [`LockFile::inherit_on_exec`] turns that off, so the lock lives while any exec'd program
//!   holding the fd lives.
//! - After `fork`, parent and child share the description: the lock stays held until both have
//!   closed it, and dropping the [`LockGuard`] in *either* one (it calls `LOCK_UN`) releases it for
//!   both. Use [`LockGuard::into_fd`] to hand the lock over without releasing it.
//! - The holder record names the process that *won*; a child that inherited the fd is not in it.
//!
//! # Safety of the file itself
//!
//! - The file is opened with `O_RDWR|O_CREAT|O_NOFOLLOW|O_CLOEXEC|O_NOCTTY`, mode 0600, relative
//!   to a directory fd that was checked first: owned by root or by us, and not writable by group
//!   or others unless sticky (like `/tmp`); the directory may be a symlink only if root or we own
//!   the link. A symlink at the lock path is refused
//!   ([`LockError::Symlink`]); an existing file must be a regular file owned by us with one link.
//! - Network filesystems (NFS, SMB/CIFS, AFS, Ceph, 9p, GFS2, OCFS2, Lustre, …, by `statfs`
//!   magic) are refused: a local lock there excludes nobody on the other machines.
//! - Nobody truncates the file before winning; the winner truncates and writes its record
//!   (≤ 4 KiB); a clean release truncates it again. The file is never unlinked: a waiter blocked
//!   on the old inode would otherwise win a lock on a deleted file while a newcomer locks a new
//!   one.
//! - The record is advisory and parsed strictly ([`RecordError`]); it is only ever reported,
//!   never acted on (this crate never signals a "holder").
//!
//! # Errors
//!
//! [`LockError`] says what failed and where: `Held`/`Timeout` carry the holder, file problems
//! carry the path (`Symlink`, `UnsafeDirectory`, `UnsafeFile`, `NetworkFilesystem`, `Io`), and
//! with the `etcd` feature `Unreachable` (no member answered within the connect timeout),
//! `LeaseExpired` (our lease ran out while waiting), `Etcd` (any other server error) and
//! `Config` are distinct.
//!
//! # Kernel requirements
//!
//! Linux with `flock(2)` and `/proc` (for start times and verification; without `/proc` holders
//! are reported as [`Verification::Unverifiable`]). `CLOCK_BOOTTIME` (Linux ≥ 2.6.39) for
//! timeouts.
#![forbid(unsafe_code)]

mod backend;
mod clock;
mod error;
#[cfg(feature = "etcd")]
mod etcd;
mod holder;
mod local;

pub use backend::{HeldLock, LockBackend, LossReason, LostSignal};
pub use error::LockError;
#[cfg(feature = "etcd")]
pub use etcd::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_KEY_PREFIX, DEFAULT_TTL, EtcdGuard, EtcdLock, EtcdLockConfig,
    EtcdTls,
};
pub use holder::{LockHolder, MAX_RECORD_LEN, RecordError, Verification};
pub use local::{LockFile, LockGuard, default_lock_path};

/// Parses a holder record as a loser would: strictly, size-bounded, then verified against the
/// running system. For fuzzing and tests.
#[doc(hidden)]
pub fn parse_holder_record(bytes: &[u8]) -> Result<LockHolder, RecordError> {
    let mut holder = holder::parse_record(bytes)?;
    holder::verify(&mut holder);
    Ok(holder)
}

/// Serializes a holder record exactly as the winner writes it. For fuzzing and tests.
#[doc(hidden)]
pub fn format_holder_record(holder: &LockHolder) -> String {
    holder.to_record()
}
