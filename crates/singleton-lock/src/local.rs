//! The local backend: `flock(2)` on a lock file.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::fs::{FileType, FlockOperation, Mode, OFlags};
use rustix::io::Errno;

use crate::clock::boottime;
use crate::error::LockError;
use crate::holder::{self, LockHolder, MAX_RECORD_LEN, RecordError};

/// A lock file: an exclusive `flock(2)` lock that the kernel drops when the holder exits.
///
/// Creating a `LockFile` touches nothing; each `try_acquire`/`acquire`/`acquire_timeout` opens
/// the file afresh (a new open file description), so two `LockFile`s, or two calls on the same
/// one, exclude each other even inside one process.
#[derive(Debug, Clone)]
pub struct LockFile {
    path: PathBuf,
    inherit_on_exec: bool,
}

/// Proof that we hold a [`LockFile`]. Dropping it releases the lock (the file stays: it is never
/// unlinked, so a waiter never locks an orphaned inode).
///
/// The guard owns the locked file descriptor (close-on-exec unless
/// [`LockFile::inherit_on_exec`] was set). See the crate docs for what `fork` and `exec` do to it.
#[derive(Debug)]
pub struct LockGuard {
    fd: Option<OwnedFd>,
    holder: LockHolder,
    path: PathBuf,
}

/// How long a loser keeps re-reading a record that is empty or half-written (the winner writes it
/// right after winning).
const RECORD_SETTLE: Duration = Duration::from_millis(500);
/// Polling interval bounds for [`LockFile::acquire_timeout`].
const POLL_MIN: Duration = Duration::from_millis(1);
const POLL_MAX: Duration = Duration::from_millis(20);

impl LockFile {
    /// A lock at `path`. Nothing is opened or created until a lock is attempted.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        LockFile {
            path: path.into(),
            inherit_on_exec: false,
        }
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Open the lock fd *without* `O_CLOEXEC`, so programs this process `exec`s keep the lock
    /// alive as long as they run (the lock lives as long as any copy of the descriptor). Off by
    /// default.
    #[must_use]
    pub fn inherit_on_exec(mut self, inherit: bool) -> Self {
        self.inherit_on_exec = inherit;
        self
    }

    /// Takes the lock if it is free; otherwise fails at once with [`LockError::Held`], naming the
    /// holder when its record can be read.
    pub fn try_acquire(&self) -> Result<LockGuard, LockError> {
        let fd = self.open_for_lock()?;
        if self.flock(&fd, FlockOperation::NonBlockingLockExclusive)? {
            self.won(fd)
        } else {
            Err(LockError::Held {
                path: self.path.clone(),
                holder: read_holder_settled(&fd),
            })
        }
    }

    /// Waits (forever) until the lock is free, then takes it. A blocking `flock(2)`: the kernel
    /// wakes us when the holder releases or dies.
    pub fn acquire(&self) -> Result<LockGuard, LockError> {
        let fd = self.open_for_lock()?;
        while !self.flock(&fd, FlockOperation::LockExclusive)? {}
        self.won(fd)
    }

    /// Waits up to `timeout` for the lock, then fails with [`LockError::Timeout`].
    ///
    /// Polls a non-blocking `flock` (1 ms, doubling to 20 ms between tries, never sleeping past
    /// the deadline; one last try at the deadline). The deadline runs on `CLOCK_BOOTTIME`, so a
    /// suspend counts as time waited. A zero timeout is one try.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<LockGuard, LockError> {
        let start = boottime();
        let deadline = start.saturating_add(timeout);
        let fd = self.open_for_lock()?;
        let mut pause = POLL_MIN;
        loop {
            if self.flock(&fd, FlockOperation::NonBlockingLockExclusive)? {
                return self.won(fd);
            }
            let now = boottime();
            if now >= deadline {
                return Err(LockError::Timeout {
                    path: self.path.clone(),
                    waited: now.saturating_sub(start),
                    holder: read_holder_settled(&fd),
                });
            }
            std::thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(POLL_MAX);
        }
    }

    /// Reads and verifies the holder record without taking or disturbing the lock.
    ///
    /// `Ok(None)`: no lock file, or an empty record (never taken, or released cleanly).
    /// `Ok(Some(h))`: the record of the current or last holder; `h.verification` says whether
    /// that process is still alive ([`crate::Verification::NotRunning`] means it died without
    /// releasing, e.g. SIGKILL: the lock itself is free then). A record that does not parse is
    /// [`LockError::InvalidRecord`].
    pub fn holder(&self) -> Result<Option<LockHolder>, LockError> {
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
        let fd = match rustix::fs::open(&self.path, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(None),
            Err(Errno::LOOP) => {
                return Err(LockError::Symlink {
                    path: self.path.clone(),
                });
            }
            Err(e) => return Err(LockError::io(&self.path, "open", e)),
        };
        let st = rustix::fs::fstat(&fd).map_err(|e| LockError::io(&self.path, "fstat", e))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(LockError::UnsafeFile {
                path: self.path.clone(),
                reason: "not a regular file".into(),
            });
        }
        match read_holder_record(&fd) {
            Ok(h) => Ok(Some(h)),
            Err(RecordError::Empty) => Ok(None),
            Err(source) => Err(LockError::InvalidRecord {
                path: self.path.clone(),
                source,
            }),
        }
    }

    /// `flock` with EINTR retried; `Ok(false)` when the lock is held elsewhere.
    fn flock(&self, fd: &OwnedFd, op: FlockOperation) -> Result<bool, LockError> {
        loop {
            match rustix::fs::flock(fd, op) {
                Ok(()) => return Ok(true),
                Err(Errno::INTR) => continue,
                Err(Errno::WOULDBLOCK) => return Ok(false),
                Err(e) => return Err(LockError::io(&self.path, "flock", e)),
            }
        }
    }

    /// We hold the lock on `fd`: now (and only now) replace the record.
    fn won(&self, fd: OwnedFd) -> Result<LockGuard, LockError> {
        let holder = LockHolder::for_current_process();
        let record = holder.to_record();
        rustix::fs::ftruncate(&fd, 0).map_err(|e| LockError::io(&self.path, "truncate", e))?;
        write_all_at(&fd, record.as_bytes())
            .map_err(|e| LockError::io(&self.path, "write holder record to", e))?;
        Ok(LockGuard {
            fd: Some(fd),
            holder,
            path: self.path.clone(),
        })
    }

    /// Opens (creating if needed) the lock file after checking its directory.
    fn open_for_lock(&self) -> Result<OwnedFd, LockError> {
        let name = self
            .path
            .file_name()
            .ok_or_else(|| LockError::InvalidPath {
                path: self.path.clone(),
            })?;
        let dir_path = match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let dir = open_checked_dir(dir_path)?;
        let mut flags = OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::NOCTTY;
        if !self.inherit_on_exec {
            flags |= OFlags::CLOEXEC;
        }
        // No O_TRUNC: only the winner may change the contents.
        let fd = match rustix::fs::openat(&dir, name, flags, Mode::from_raw_mode(0o600)) {
            Ok(fd) => fd,
            Err(Errno::LOOP) => {
                return Err(LockError::Symlink {
                    path: self.path.clone(),
                });
            }
            Err(e) => return Err(LockError::io(&self.path, "open", e)),
        };
        let st = rustix::fs::fstat(&fd).map_err(|e| LockError::io(&self.path, "fstat", e))?;
        let unsafe_file = |reason: String| LockError::UnsafeFile {
            path: self.path.clone(),
            reason,
        };
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(unsafe_file("not a regular file".into()));
        }
        let euid = rustix::process::geteuid().as_raw();
        if st.st_uid != euid {
            return Err(unsafe_file(format!(
                "owned by uid {}, not by us (uid {euid})",
                st.st_uid
            )));
        }
        if st.st_nlink != 1 {
            return Err(unsafe_file(format!(
                "has {} links (a hard link elsewhere, or unlinked)",
                st.st_nlink
            )));
        }
        check_local_fs(&fd, &self.path)?;
        Ok(fd)
    }
}

impl LockGuard {
    /// The record we wrote (our own pid, start time, …; verification `Verified`).
    pub fn holder(&self) -> &LockHolder {
        &self.holder
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Releases the lock now, reporting errors (dropping the guard does the same, silently).
    pub fn release(mut self) -> Result<(), LockError> {
        match self.fd.take() {
            Some(fd) => release_fd(&fd, &self.path),
            None => Ok(()),
        }
    }

    /// Gives up the guard *without* releasing: the lock lives as long as the returned descriptor
    /// (and any copy of it, e.g. in a child that inherited it). The record stays as written.
    pub fn into_fd(mut self) -> OwnedFd {
        // Invariant: `fd` is only `None` after `release`/`into_fd`, which consume the guard.
        match self.fd.take() {
            Some(fd) => fd,
            None => unreachable_fd(),
        }
    }
}

#[cold]
fn unreachable_fd() -> ! {
    panic!("LockGuard used after release")
}

impl AsFd for LockGuard {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.fd {
            Some(fd) => fd.as_fd(),
            None => unreachable_fd(),
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Some(fd) = self.fd.take() {
            let _ = release_fd(&fd, &self.path);
        }
    }
}

/// Clears our record (we still hold the lock, so no one else is writing), then unlocks.
/// `LOCK_UN` releases the lock of the open file description, i.e. for every copy of the fd.
fn release_fd(fd: &OwnedFd, path: &Path) -> Result<(), LockError> {
    let cleared = rustix::fs::ftruncate(fd, 0).map_err(|e| LockError::io(path, "truncate", e));
    rustix::fs::flock(fd, FlockOperation::Unlock).map_err(|e| LockError::io(path, "unlock", e))?;
    cleared
}

fn write_all_at(fd: &OwnedFd, mut buf: &[u8]) -> std::io::Result<()> {
    let mut offset = 0u64;
    while !buf.is_empty() {
        match rustix::io::pwrite(fd, buf, offset) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                buf = buf.get(n..).unwrap_or_default();
                offset += n as u64;
            }
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Reads at most `MAX_RECORD_LEN + 1` bytes from offset 0 and parses and verifies them.
fn read_holder_record(fd: &OwnedFd) -> Result<LockHolder, RecordError> {
    let mut buf = vec![0u8; MAX_RECORD_LEN + 1];
    let mut len = 0;
    while len < buf.len() {
        let Some(rest) = buf.get_mut(len..) else {
            break;
        };
        match rustix::io::pread(fd, rest, len as u64) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(Errno::INTR) => continue,
            Err(_) => return Err(RecordError::Empty),
        }
    }
    let mut holder = holder::parse_record(buf.get(..len).unwrap_or_default())?;
    holder::verify(&mut holder);
    Ok(holder)
}

/// For a loser: the winner may be between winning and writing its record, so an empty or torn
/// record is re-read for a short while. Anything still unreadable yields `None`.
fn read_holder_settled(fd: &OwnedFd) -> Option<Box<LockHolder>> {
    let give_up = boottime().saturating_add(RECORD_SETTLE);
    loop {
        match read_holder_record(fd) {
            Ok(h) => return Some(Box::new(h)),
            Err(RecordError::Empty | RecordError::Truncated) if boottime() < give_up => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(_) => return None,
        }
    }
}

/// Opens the lock's directory (creating the last component, mode 0700, if it is missing) and
/// checks it through the fd: owned by root or by us, and not group/world-writable unless sticky.
fn open_checked_dir(dir_path: &Path) -> Result<OwnedFd, LockError> {
    let euid = rustix::process::geteuid().as_raw();
    let unsafe_dir = |reason: String| LockError::UnsafeDirectory {
        path: dir_path.to_path_buf(),
        reason,
    };
    // The directory may itself be a symlink (Debian's /var/lock -> /run/lock), but only one
    // that root or we own: anyone else's could send our lock file anywhere. (In a sticky
    // directory nobody else can replace a link we or root own, so checking first is enough.)
    if let Ok(st) = rustix::fs::lstat(dir_path)
        && FileType::from_raw_mode(st.st_mode) == FileType::Symlink
        && st.st_uid != 0
        && st.st_uid != euid
    {
        return Err(unsafe_dir(format!(
            "is a symbolic link owned by uid {}",
            st.st_uid
        )));
    }
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let dir = match rustix::fs::open(dir_path, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => {
            match rustix::fs::mkdir(dir_path, Mode::from_raw_mode(0o700)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(LockError::io(dir_path, "create directory", e)),
            }
            rustix::fs::open(dir_path, flags, Mode::empty())
                .map_err(|e| LockError::io(dir_path, "open directory", e))?
        }
        Err(e) => return Err(LockError::io(dir_path, "open directory", e)),
    };
    let st = rustix::fs::fstat(&dir).map_err(|e| LockError::io(dir_path, "fstat", e))?;
    if st.st_uid != 0 && st.st_uid != euid {
        return Err(unsafe_dir(format!(
            "owned by uid {}, neither root nor us (uid {euid})",
            st.st_uid
        )));
    }
    let mode = st.st_mode & 0o7777;
    if mode & 0o022 != 0 && mode & 0o1000 == 0 {
        return Err(unsafe_dir(format!(
            "mode {mode:04o} is writable by group or others without the sticky bit"
        )));
    }
    check_local_fs(&dir, dir_path)?;
    Ok(dir)
}

fn check_local_fs(fd: &OwnedFd, path: &Path) -> Result<(), LockError> {
    let st = rustix::fs::fstatfs(fd).map_err(|e| LockError::io(path, "statfs", e))?;
    // f_type is a C long; the magic numbers are 32-bit (CIFS's has the top bit set).
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let magic = st.f_type as u32;
    match network_fs_name(magic) {
        Some(fs_type) => Err(LockError::NetworkFilesystem {
            path: path.to_path_buf(),
            fs_type,
        }),
        None => Ok(()),
    }
}

/// Filesystems where a local `flock` does not exclude other machines (or is emulated with
/// different semantics), by `statfs` magic number (linux/magic.h and the filesystems' sources).
pub(crate) fn network_fs_name(magic: u32) -> Option<&'static str> {
    Some(match magic {
        0x0000_6969 => "nfs",
        0x0000_517B => "smb",
        0xFF53_4D42 => "cifs",
        0xFE53_4D42 => "smb2",
        0x0000_564C => "ncp",
        0x7375_7245 => "coda",
        0x5346_414F | 0x6B41_4653 => "afs",
        0x00C3_6400 => "ceph",
        0x0102_1997 => "9p",
        0x0116_1970 => "gfs2",
        0x7461_636F => "ocfs2",
        0x0BD0_0BD0 => "lustre",
        _ => return None,
    })
}

/// The conventional lock path for an application named `app`:
///
/// - `$XDG_RUNTIME_DIR/<app>/<app>.lock` when `XDG_RUNTIME_DIR` is set to an absolute path;
/// - else `/run/<app>/<app>.lock` when running as root;
/// - else `/tmp/<app>-<uid>/<app>.lock` (a per-uid directory).
///
/// The directory is created (mode 0700) and checked when the lock is first attempted; a
/// per-uid directory that another user created first is refused
/// ([`LockError::UnsafeDirectory`]), never used. Characters of `app` other than ASCII letters,
/// digits, `.`, `_` and `-` are replaced by `_` (and a leading `.` too), so `app` can never
/// escape the directory.
pub fn default_lock_path(app: &str) -> PathBuf {
    let mut name: String = app
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() {
        name.push_str("app");
    }
    if name.starts_with('.') {
        name.replace_range(..1, "_");
    }
    let file = format!("{name}.lock");
    if let Some(runtime) = std::env::var_os("XDG_RUNTIME_DIR") {
        let runtime = PathBuf::from(runtime);
        if runtime.is_absolute() {
            return runtime.join(&name).join(file);
        }
    }
    let euid = rustix::process::geteuid();
    if euid.is_root() {
        return Path::new("/run").join(&name).join(file);
    }
    Path::new("/tmp")
        .join(format!("{name}-{}", euid.as_raw()))
        .join(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_filesystems_are_named() {
        assert_eq!(network_fs_name(0x6969), Some("nfs"));
        assert_eq!(network_fs_name(0xFF53_4D42), Some("cifs"));
        assert_eq!(network_fs_name(0xFE53_4D42), Some("smb2"));
        assert_eq!(network_fs_name(0xEF53), None, "ext4 is local");
        assert_eq!(network_fs_name(0x0102_1994), None, "tmpfs is local");
    }

    #[test]
    fn default_path_sanitizes_the_name() {
        let p = default_lock_path("../evil/x");
        assert_eq!(
            p.file_name().and_then(|f| f.to_str()),
            Some("_._evil_x.lock")
        );
        assert!(p.components().all(|c| c.as_os_str() != ".."));
        let p = default_lock_path("");
        assert_eq!(p.file_name().and_then(|f| f.to_str()), Some("app.lock"));
    }
}
