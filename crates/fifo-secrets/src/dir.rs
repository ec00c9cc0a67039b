//! The private RAM-backed directory and the FIFOs inside it.

use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::error::bounded;
use crate::{SecretBytes, SecretError};

/// `statfs` magic of tmpfs (also what `/dev/shm` and most `$XDG_RUNTIME_DIR`s are).
const TMPFS_MAGIC: u64 = 0x0102_1994;
/// `statfs` magic of ramfs.
const RAMFS_MAGIC: u64 = 0x8584_58f6;
/// Longest FIFO or application name.
const MAX_NAME: usize = 64;
/// Upper bound of the sleep between two attempts to open a FIFO for writing.
const OPEN_POLL_MAX: Duration = Duration::from_millis(10);
/// Upper bound of one `poll(2)` while writing, so the cancel flag is seen promptly.
const WRITE_POLL_SLICE: Duration = Duration::from_millis(20);

/// Options for [`SecretFifo::send`].
#[derive(Debug, Clone)]
pub struct SendOptions {
    /// How long to wait for a reader to open the FIFO (default 30 s).
    pub open_timeout: Duration,
    /// How long the reader may take to read every byte once it has opened the FIFO
    /// (a total, not an idle timeout; default 30 s; `Duration::MAX` waits without limit).
    pub write_timeout: Duration,
    /// Raise this flag (from any thread) to stop waiting: the send ends with
    /// [`SecretError::Cancelled`] within about 20 ms. Dropping the [`SecretDir`] also ends
    /// a send that is still waiting for its reader with `Cancelled`.
    pub cancel: Option<Arc<AtomicBool>>,
}

impl Default for SendOptions {
    fn default() -> Self {
        Self {
            open_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            cancel: None,
        }
    }
}

/// What a successful [`SecretFifo::send`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendReport {
    /// Bytes written (the whole secret).
    pub bytes: usize,
    /// How long it took until a reader opened the FIFO.
    pub waited_for_reader: Duration,
}

/// A private directory (mode 0700, owned by this uid) on a RAM-backed filesystem, holding
/// the FIFOs through which secrets are handed out.
///
/// Dropping it removes every entry left in it and then the directory itself.
#[derive(Debug)]
pub struct SecretDir {
    path: PathBuf,
    fd: Arc<OwnedFd>,
    parent: OwnedFd,
    name: String,
    dev: u64,
    ino: u64,
    ram_backed: bool,
    removed_stale: Vec<PathBuf>,
}

/// A FIFO (mode 0600) in a [`SecretDir`], to be opened by exactly one reader.
///
/// It is removed by [`SecretFifo::send`] on every outcome, by its own drop if never sent,
/// and with its directory.
#[derive(Debug)]
pub struct SecretFifo {
    path: PathBuf,
    dir: Arc<OwnedFd>,
    name: String,
    dev: u64,
    ino: u64,
    uid: u32,
    armed: bool,
}

fn validate_name(name: &str, max: usize) -> Result<(), SecretError> {
    let fail = |reason| {
        Err(SecretError::BadName {
            name: bounded(name, 80),
            reason,
        })
    };
    if name.is_empty() {
        return fail("empty");
    }
    if name.len() > max {
        return fail("too long");
    }
    if name.starts_with('.') {
        return fail("starts with a dot");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return fail("only A-Z a-z 0-9 _ . - are allowed");
    }
    Ok(())
}

fn fs_type_name(magic: u64) -> String {
    let name = match magic {
        TMPFS_MAGIC => "tmpfs",
        RAMFS_MAGIC => "ramfs",
        0xef53 => "ext2/3/4",
        0x5846_5342 => "xfs",
        0x9123_683e => "btrfs",
        0x794c_7630 => "overlayfs",
        0x6969 => "nfs",
        0xff53_4d42 | 0xfe53_4d42 => "cifs/smb",
        0x0102_1997 => "9p",
        0x6573_5546 => "fuse",
        _ => "an unknown filesystem",
    };
    format!("{name} (0x{magic:x})")
}

/// The filesystem magic of `fd`.
fn fs_magic(fd: impl AsFd, path: &Path) -> Result<u64, SecretError> {
    let st = rustix::fs::fstatfs(fd).map_err(|e| SecretError::io(path, "statfs", e))?;
    // f_type is a signed word on some targets; the magic numbers are 32-bit patterns.
    #[allow(clippy::cast_sign_loss, clippy::unnecessary_cast)]
    Ok(st.f_type as u64 & 0xffff_ffff)
}

/// Whether the filesystem holding `fd` keeps its pages in RAM only (tmpfs, ramfs).
fn is_ram_backed(magic: u64) -> bool {
    matches!(magic, TMPFS_MAGIC | RAMFS_MAGIC)
}

fn random_suffix() -> Result<String, SecretError> {
    let mut bytes = [0u8; 8];
    rustix::rand::getrandom(&mut bytes, rustix::rand::GetRandomFlags::empty())
        .map_err(|e| SecretError::io("<getrandom>", "read", e))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Start time of `pid` in clock ticks since boot (field 22 of `/proc/<pid>/stat`), or `None`
/// when the process does not exist (or /proc is unavailable).
pub(crate) fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain anything: skip past the
    // last ')'; the state is field 3, so start time is the 20th field after it.
    let after = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(stat.get(after + 1..)?).ok()?;
    rest.split_ascii_whitespace().nth(19)?.parse().ok()
}

/// Whether the process that recorded (`pid`, `start`) in a directory name still runs.
fn recorded_process_alive(pid: u32, start: u64) -> bool {
    if let Some(now) = process_start_time(pid) {
        return now == start;
    }
    // No /proc (or no such pid): ask the kernel directly.
    match rustix::process::Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX)) {
        Some(p) => !matches!(rustix::process::test_kill_process(p), Err(Errno::SRCH)),
        None => false,
    }
}

/// Removes every non-directory entry of `dir` (FIFOs, and anything else a same-uid process
/// put there). Never follows symlinks: `unlinkat` removes the link itself.
fn purge(dir: &OwnedFd) {
    let Ok(entries) = rustix::fs::Dir::read_from(dir) else {
        return;
    };
    let names: Vec<Vec<u8>> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type() != FileType::Directory)
        .map(|e| e.file_name().to_bytes().to_vec())
        .filter(|n| n != b"." && n != b"..")
        .collect();
    for name in names {
        let _ = rustix::fs::unlinkat(dir, OsStr::from_bytes(&name), AtFlags::empty());
    }
}

impl SecretDir {
    /// Creates `<app>-secrets-<uid>-<pid>-<start>-<random>` in `$XDG_RUNTIME_DIR` when that is
    /// set, absolute, owned by this uid, mode 0700 and RAM-backed; else in `/dev/shm`.
    /// Directories of the same app and uid whose recorded process is gone (a crashed run) are
    /// removed first; see [`SecretDir::removed_stale`].
    ///
    /// # Errors
    /// [`SecretError::BadName`] for an `app` outside `[A-Za-z0-9_.-]{1,64}`,
    /// [`SecretError::NotRamBacked`] when `/dev/shm` is not tmpfs, and the errors of
    /// [`SecretDir::create_in`].
    pub fn create(app: &str) -> Result<Self, SecretError> {
        validate_name(app, MAX_NAME)?;
        if let Some(xdg) = std::env::var_os("XDG_RUNTIME_DIR") {
            let xdg = PathBuf::from(xdg);
            if xdg.is_absolute() && xdg_usable(&xdg) {
                return Self::create_in(&xdg, app, false);
            }
        }
        Self::create_in(Path::new("/dev/shm"), app, false)
    }

    /// Creates the directory under `parent`. `parent` must be owned by this uid or root and,
    /// if others may write to it, sticky. Unless `allow_disk`, it must be on tmpfs or ramfs
    /// ([`SecretError::NotRamBacked`] otherwise): a disk-backed FIFO never holds the data
    /// (pipe buffers live in kernel memory) but the directory reveals names and timing, and
    /// the caller asked for RAM.
    ///
    /// # Errors
    /// [`SecretError::BadName`], [`SecretError::NotRamBacked`], [`SecretError::UnsafeDir`],
    /// [`SecretError::Io`] (with the path and the failing operation).
    pub fn create_in(parent: &Path, app: &str, allow_disk: bool) -> Result<Self, SecretError> {
        validate_name(app, MAX_NAME)?;
        let parent_fd = rustix::fs::open(
            parent,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| SecretError::io(parent, "open", e))?;
        let pst = rustix::fs::fstat(&parent_fd).map_err(|e| SecretError::io(parent, "fstat", e))?;
        let uid = rustix::process::geteuid().as_raw();
        if pst.st_uid != uid && pst.st_uid != 0 {
            return Err(SecretError::UnsafeDir {
                path: parent.to_owned(),
                reason: format!("owned by uid {}, neither us ({uid}) nor root", pst.st_uid),
            });
        }
        if pst.st_mode & 0o002 != 0 && pst.st_mode & 0o1000 == 0 {
            return Err(SecretError::UnsafeDir {
                path: parent.to_owned(),
                reason: "world-writable without the sticky bit".to_owned(),
            });
        }
        let magic = fs_magic(&parent_fd, parent)?;
        let ram_backed = is_ram_backed(magic);
        if !ram_backed && !allow_disk {
            return Err(SecretError::NotRamBacked {
                path: parent.to_owned(),
                fs_type: fs_type_name(magic),
            });
        }

        let prefix = format!("{app}-secrets-{uid}-");
        let removed_stale = remove_stale(&parent_fd, parent, &prefix, uid);

        let pid = std::process::id();
        let start = process_start_time(pid).unwrap_or(0);
        let name = format!("{prefix}{pid}-{start}-{}", random_suffix()?);
        let path = parent.join(&name);
        // The mode is masked by the umask; it is forced to 0700 below through the fd.
        rustix::fs::mkdirat(&parent_fd, name.as_str(), Mode::from_raw_mode(0o700))
            .map_err(|e| SecretError::io(&path, "mkdir", e))?;
        let opened = rustix::fs::openat(
            &parent_fd,
            name.as_str(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        );
        let fd = match opened {
            Ok(fd) => fd,
            Err(e) => {
                let _ = rustix::fs::unlinkat(&parent_fd, name.as_str(), AtFlags::REMOVEDIR);
                return Err(SecretError::io(&path, "open", e));
            }
        };
        let dir = Self {
            path,
            fd: Arc::new(fd),
            parent: parent_fd,
            name,
            dev: 0,
            ino: 0,
            ram_backed,
            removed_stale,
        };
        // From here on, Drop cleans up on any error.
        dir.verify_fresh()
    }

    /// Forces mode 0700 and checks owner, mode, type and filesystem through the dir fd.
    fn verify_fresh(mut self) -> Result<Self, SecretError> {
        // Record the identity first, so Drop removes the directory if a check below fails.
        let st =
            rustix::fs::fstat(&*self.fd).map_err(|e| SecretError::io(&self.path, "fstat", e))?;
        self.dev = st.st_dev;
        self.ino = st.st_ino;
        rustix::fs::fchmod(&*self.fd, Mode::from_raw_mode(0o700))
            .map_err(|e| SecretError::io(&self.path, "chmod", e))?;
        let st =
            rustix::fs::fstat(&*self.fd).map_err(|e| SecretError::io(&self.path, "fstat", e))?;
        let uid = rustix::process::geteuid().as_raw();
        if st.st_uid != uid {
            return Err(SecretError::UnsafeDir {
                path: self.path.clone(),
                reason: format!("owned by uid {}, not us ({uid})", st.st_uid),
            });
        }
        if FileType::from_raw_mode(st.st_mode) != FileType::Directory
            || st.st_mode & 0o7777 != 0o700
        {
            return Err(SecretError::UnsafeDir {
                path: self.path.clone(),
                reason: format!("mode {:o}, expected a directory with 0700", st.st_mode),
            });
        }
        let magic = fs_magic(&*self.fd, &self.path)?;
        if is_ram_backed(magic) != self.ram_backed {
            return Err(SecretError::NotRamBacked {
                path: self.path.clone(),
                fs_type: fs_type_name(magic),
            });
        }
        Ok(self)
    }

    /// The directory's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the directory is on tmpfs/ramfs (false only with `allow_disk`).
    #[must_use]
    pub fn ram_backed(&self) -> bool {
        self.ram_backed
    }

    /// Directories of a crashed earlier run (same app and uid, recorded process gone) that
    /// were removed when this one was created.
    #[must_use]
    pub fn removed_stale(&self) -> &[PathBuf] {
        &self.removed_stale
    }

    /// Creates the FIFO `name` (mode 0600) in this directory.
    ///
    /// # Errors
    /// [`SecretError::BadName`] unless `name` matches `[A-Za-z0-9_.-]{1,64}` without a leading
    /// dot; [`SecretError::Io`] when `mkfifo` fails (e.g. `EEXIST` for a name used twice);
    /// [`SecretError::Swapped`] if the new entry is not the FIFO just made.
    pub fn fifo(&self, name: &str) -> Result<SecretFifo, SecretError> {
        validate_name(name, MAX_NAME)?;
        let path = self.path.join(name);
        rustix::fs::mkfifoat(&*self.fd, name, Mode::from_raw_mode(0o600))
            .map_err(|e| SecretError::io(&path, "mkfifo", e))?;
        let uid = rustix::process::geteuid().as_raw();
        let mut fifo = SecretFifo {
            path,
            dir: Arc::clone(&self.fd),
            name: name.to_owned(),
            dev: 0,
            ino: 0,
            uid,
            armed: true,
        };
        let mut st = fifo.lstat()?;
        if st.st_mode & 0o7777 != 0o600 && FileType::from_raw_mode(st.st_mode) == FileType::Fifo {
            // The umask took bits away; restore exactly 0600 (the entry was just checked to be
            // a FIFO, not a symlink, and only our uid can enter the directory).
            rustix::fs::chmodat(
                &*self.fd,
                name,
                Mode::from_raw_mode(0o600),
                AtFlags::empty(),
            )
            .map_err(|e| SecretError::io(&fifo.path, "chmod", e))?;
            st = fifo.lstat()?;
        }
        if FileType::from_raw_mode(st.st_mode) != FileType::Fifo
            || st.st_uid != uid
            || st.st_mode & 0o7777 != 0o600
        {
            return Err(SecretError::Swapped {
                path: fifo.path.clone(),
                reason: "the new entry is not a 0600 FIFO owned by us",
            });
        }
        fifo.dev = st.st_dev;
        fifo.ino = st.st_ino;
        Ok(fifo)
    }
}

/// `$XDG_RUNTIME_DIR` is used only when it is ours, private and in RAM.
fn xdg_usable(path: &Path) -> bool {
    let Ok(fd) = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return false;
    };
    let Ok(st) = rustix::fs::fstat(&fd) else {
        return false;
    };
    st.st_uid == rustix::process::geteuid().as_raw()
        && st.st_mode & 0o077 == 0
        && fs_magic(&fd, path).is_ok_and(is_ram_backed)
}

/// Removes `<prefix><pid>-<start>-<random>` directories in `parent` owned by `uid` whose
/// recorded process no longer runs. Best effort: anything odd is left alone.
fn remove_stale(parent_fd: &OwnedFd, parent: &Path, prefix: &str, uid: u32) -> Vec<PathBuf> {
    let Ok(entries) = rustix::fs::Dir::read_from(parent_fd) else {
        return Vec::new();
    };
    let candidates: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().ok().map(str::to_owned))
        .filter(|n| n.starts_with(prefix))
        .collect();
    let mut removed = Vec::new();
    for name in candidates {
        let mut parts = name[prefix.len()..].split('-');
        let (Some(pid), Some(start), Some(rand), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let (Ok(pid), Ok(start)) = (pid.parse::<u32>(), start.parse::<u64>()) else {
            continue;
        };
        if rand.len() != 16 || !rand.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        if recorded_process_alive(pid, start) {
            continue;
        }
        let Ok(fd) = rustix::fs::openat(
            parent_fd,
            name.as_str(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) else {
            continue;
        };
        let Ok(st) = rustix::fs::fstat(&fd) else {
            continue;
        };
        // Only our own private directories: never touch what another uid made look like one.
        if st.st_uid != uid || st.st_mode & 0o7777 != 0o700 {
            continue;
        }
        purge(&fd);
        if rustix::fs::unlinkat(parent_fd, name.as_str(), AtFlags::REMOVEDIR).is_ok() {
            removed.push(parent.join(&name));
        }
    }
    removed
}

impl Drop for SecretDir {
    fn drop(&mut self) {
        purge(&self.fd);
        // Remove the name only if it still is our directory.
        if let Ok(st) =
            rustix::fs::statat(&self.parent, self.name.as_str(), AtFlags::SYMLINK_NOFOLLOW)
            && st.st_dev == self.dev
            && st.st_ino == self.ino
        {
            let _ = rustix::fs::unlinkat(&self.parent, self.name.as_str(), AtFlags::REMOVEDIR);
        }
    }
}

impl SecretFifo {
    /// The FIFO's path: give this to the reader.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lstat(&self) -> Result<rustix::fs::Stat, SecretError> {
        rustix::fs::statat(&*self.dir, self.name.as_str(), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| SecretError::io(&self.path, "lstat", e))
    }

    fn unlink(&mut self) {
        if self.armed {
            self.armed = false;
            let _ = rustix::fs::unlinkat(&*self.dir, self.name.as_str(), AtFlags::empty());
        }
    }

    /// Checks that the path still names our FIFO, without opening it.
    fn still_ours(&self) -> Result<(), SecretError> {
        let st = match rustix::fs::statat(&*self.dir, self.name.as_str(), AtFlags::SYMLINK_NOFOLLOW)
        {
            Ok(st) => st,
            Err(Errno::NOENT) => return Err(self.vanished()),
            Err(e) => return Err(SecretError::io(&self.path, "lstat", e)),
        };
        self.check_stat(&st)
    }

    /// The FIFO's name is gone. If its whole directory was removed (its `SecretDir` was
    /// dropped), that is how the owner cancels outstanding sends; otherwise someone else
    /// removed it.
    fn vanished(&self) -> SecretError {
        match rustix::fs::fstat(&*self.dir) {
            Ok(st) if st.st_nlink == 0 => SecretError::Cancelled {
                path: self.path.clone(),
            },
            _ => SecretError::Swapped {
                path: self.path.clone(),
                reason: "the FIFO was removed by someone else",
            },
        }
    }

    fn check_stat(&self, st: &rustix::fs::Stat) -> Result<(), SecretError> {
        let reason = match FileType::from_raw_mode(st.st_mode) {
            FileType::Fifo if st.st_dev != self.dev || st.st_ino != self.ino => "another FIFO",
            FileType::Fifo if st.st_uid != self.uid => "a FIFO owned by another uid",
            FileType::Fifo => return Ok(()),
            FileType::Symlink => "a symlink",
            FileType::RegularFile => "a regular file",
            FileType::Directory => "a directory",
            _ => "not a FIFO",
        };
        Err(SecretError::Swapped {
            path: self.path.clone(),
            reason,
        })
    }

    /// Writes `secret` to the first process that opens the FIFO for reading, then removes it.
    ///
    /// 1. Opens the FIFO `O_WRONLY|O_NONBLOCK|O_NOFOLLOW|O_CLOEXEC` repeatedly (`ENXIO`: no
    ///    reader yet), sleeping at most 10 ms between attempts, until a reader appears, the
    ///    cancel flag rises or `open_timeout` passes. While waiting it also checks that the path
    ///    still names our FIFO.
    /// 2. `fstat`s the opened fd: it must be a FIFO with the device/inode recorded at
    ///    `mkfifo` time, owned by us. A path swapped for a regular file, a symlink or another
    ///    FIFO gets nothing ([`SecretError::Swapped`]).
    /// 3. Unlinks the FIFO at once, so nobody else can open it: a second `open` of the path
    ///    fails with `ENOENT`. The reader that holds it keeps reading.
    /// 4. Writes every byte, waiting with `poll(2)` for pipe space, within `write_timeout`.
    ///
    /// Success means the kernel accepted every byte into the pipe; a reader that then closes
    /// without reading them loses them silently (a pipe has no acknowledgement). `SIGPIPE` is
    /// blocked in this thread while writing, so a vanished reader is [`SecretError::ReaderGone`],
    /// never a killed process.
    ///
    /// # Errors
    /// [`SecretError::NoReader`], [`SecretError::Cancelled`], [`SecretError::Swapped`],
    /// [`SecretError::ReaderGone`], [`SecretError::WriteTimeout`], [`SecretError::Io`]. The
    /// FIFO is removed on every path.
    pub fn send(
        mut self,
        secret: &SecretBytes,
        opts: &SendOptions,
    ) -> Result<SendReport, SecretError> {
        let out = self.send_inner(secret, opts);
        self.unlink();
        out
    }

    fn cancelled(opts: &SendOptions) -> bool {
        opts.cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::SeqCst))
    }

    fn send_inner(
        &mut self,
        secret: &SecretBytes,
        opts: &SendOptions,
    ) -> Result<SendReport, SecretError> {
        let start = Instant::now();
        let mut pause = Duration::from_millis(1);
        let fd = loop {
            if Self::cancelled(opts) {
                return Err(SecretError::Cancelled {
                    path: self.path.clone(),
                });
            }
            match rustix::fs::openat(
                &*self.dir,
                self.name.as_str(),
                OFlags::WRONLY
                    | OFlags::NONBLOCK
                    | OFlags::NOFOLLOW
                    | OFlags::CLOEXEC
                    | OFlags::NOCTTY,
                Mode::empty(),
            ) {
                Ok(fd) => break fd,
                Err(Errno::NXIO) => {}
                Err(Errno::INTR) => continue,
                Err(Errno::LOOP) => {
                    return Err(SecretError::Swapped {
                        path: self.path.clone(),
                        reason: "a symlink",
                    });
                }
                Err(Errno::NOENT) => return Err(self.vanished()),
                Err(e) => return Err(SecretError::io(&self.path, "open", e)),
            }
            // No reader yet. A path swapped for another FIFO would also say ENXIO: check.
            self.still_ours()?;
            let waited = start.elapsed();
            if waited >= opts.open_timeout {
                return Err(SecretError::NoReader {
                    path: self.path.clone(),
                    waited,
                });
            }
            std::thread::sleep(pause.min(opts.open_timeout - waited));
            pause = (pause * 2).min(OPEN_POLL_MAX);
        };
        let waited_for_reader = start.elapsed();
        let st = rustix::fs::fstat(&fd).map_err(|e| SecretError::io(&self.path, "fstat", e))?;
        self.check_stat(&st)?;
        // Verified: take the name away so no second reader can open it.
        self.unlink();
        let bytes = secret.expose();
        crate::sys::with_sigpipe_blocked(|| self.write_all(&fd, bytes, opts))?;
        Ok(SendReport {
            bytes: bytes.len(),
            waited_for_reader,
        })
    }

    fn write_all(&self, fd: &OwnedFd, bytes: &[u8], opts: &SendOptions) -> Result<(), SecretError> {
        let total = bytes.len();
        // A timeout too large to add (e.g. Duration::MAX) means no deadline.
        let deadline = Instant::now().checked_add(opts.write_timeout);
        let mut written = 0;
        while written < total {
            match rustix::io::write(fd, &bytes[written..]) {
                // A pipe never takes 0 of a non-empty write; if it did, wait rather than spin.
                Ok(0) | Err(Errno::AGAIN) => {}
                Ok(n) => {
                    written += n;
                    continue;
                }
                Err(Errno::INTR) => continue,
                Err(Errno::PIPE) => {
                    return Err(SecretError::ReaderGone {
                        path: self.path.clone(),
                        written,
                        total,
                    });
                }
                Err(e) => return Err(SecretError::io(&self.path, "write", e)),
            }
            // The pipe is full: wait for space, the reader leaving, the deadline or cancel.
            if Self::cancelled(opts) {
                return Err(SecretError::Cancelled {
                    path: self.path.clone(),
                });
            }
            let now = Instant::now();
            let left = deadline.map_or(WRITE_POLL_SLICE, |d| d.saturating_duration_since(now));
            if left.is_zero() {
                return Err(SecretError::WriteTimeout {
                    path: self.path.clone(),
                    written,
                    total,
                });
            }
            let slice = left.min(WRITE_POLL_SLICE);
            let timeout = Timespec::try_from(slice).unwrap_or(Timespec {
                tv_sec: 0,
                tv_nsec: 20_000_000,
            });
            let mut fds = [PollFd::new(fd, PollFlags::OUT)];
            match rustix::event::poll(&mut fds, Some(&timeout)) {
                Ok(_) | Err(Errno::INTR) => {}
                Err(e) => return Err(SecretError::io(&self.path, "poll", e)),
            }
        }
        Ok(())
    }
}

impl Drop for SecretFifo {
    fn drop(&mut self) {
        self.unlink();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_parses_past_a_hostile_command_name() {
        // The command name in /proc/<pid>/stat comes from the executable's file name, which may
        // hold spaces and parentheses: the parser must skip to the last ')'.
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("x) 1 2 3 (y");
        std::os::unix::fs::symlink("/bin/sleep", &link).unwrap();
        let mut child = std::process::Command::new(&link).arg("5").spawn().unwrap();
        let pid = child.id();
        let theirs = process_start_time(pid);
        let ours = process_start_time(std::process::id());
        let alive = theirs.is_some_and(|t| recorded_process_alive(pid, t));
        child.kill().unwrap();
        child.wait().unwrap();
        let (theirs, ours) = (theirs.unwrap(), ours.unwrap());
        assert!(theirs >= ours, "child started after us: {theirs} vs {ours}");
        assert!(alive);
        assert!(!recorded_process_alive(pid, theirs), "reaped child is dead");
    }

    #[test]
    fn names_are_validated() {
        assert!(validate_name("a-b_c.d", 64).is_ok());
        for bad in ["", ".x", "a/b", "a b", "ä", "x\n"] {
            assert!(validate_name(bad, 64).is_err(), "{bad:?}");
        }
        assert!(validate_name(&"a".repeat(65), 64).is_err());
    }

    #[test]
    fn filesystem_names_are_reported() {
        assert_eq!(fs_type_name(0xef53), "ext2/3/4 (0xef53)");
        assert!(is_ram_backed(TMPFS_MAGIC) && is_ram_backed(RAMFS_MAGIC) && !is_ram_backed(0xef53));
    }
}
