//! The persistent, bounded nonce ledger (replay protection) and the append-only audit log.
use std::collections::{HashSet, VecDeque};
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};
use serde::Serialize;
use thiserror::Error;

use crate::name::Nonce;

/// The default number of nonces the ledger remembers.
pub const DEFAULT_LEDGER_CAPACITY: usize = 100_000;

/// A ledger failure (fatal to the reactor: it never acts without a committed nonce).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// A system call failed on the ledger file.
    #[error("nonce ledger {path}: {op}: {source}")]
    Io {
        /// The ledger file.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The cause.
        source: std::io::Error,
    },
    /// A complete line of the ledger is not a nonce.
    #[error("nonce ledger {path}: line {line} is not a nonce")]
    Corrupt {
        /// The ledger file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
    },
}

/// Remembers the nonces of executed intents, on disk, so a replayed file is refused.
///
/// The file (`nonce-ledger` in the state dir) holds one nonce per line and is appended and
/// fdatasync'ed before each action. **Window:** the ledger remembers at least the last
/// `capacity` committed nonces and at most `2 × capacity`: when the file reaches `2 × capacity`
/// lines it is rewritten atomically with the newest `capacity`. A nonce older than that window
/// is forgotten and would be accepted again. A torn last line (a crash mid-append, before the
/// action could start) is dropped at load.
#[derive(Debug)]
pub struct NonceLedger {
    dir: OwnedFd,
    path: PathBuf,
    file: std::fs::File,
    set: HashSet<String>,
    order: VecDeque<String>,
    lines_in_file: usize,
    capacity: usize,
}

const LEDGER_FILE: &str = "nonce-ledger";
const LEDGER_TEMP: &str = ".nonce-ledger.tmp";

impl NonceLedger {
    /// Opens (or creates) the ledger in `state_dir`, an open directory fd at `state_path`.
    pub fn open(
        state_dir: &impl AsFd,
        state_path: &Path,
        capacity: usize,
    ) -> Result<Self, LedgerError> {
        let capacity = capacity.max(1);
        let path = state_path.join(LEDGER_FILE);
        let io = |op, source: rustix::io::Errno| LedgerError::Io {
            path: path.clone(),
            op,
            source: source.into(),
        };
        let dir = rustix::fs::openat(
            state_dir,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io("open state dir", e))?;
        let fd = rustix::fs::openat(
            &dir,
            LEDGER_FILE,
            OFlags::RDWR | OFlags::CREATE | OFlags::APPEND | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| io("open", e))?;
        let mut file = std::fs::File::from(fd);
        let mut text = Vec::new();
        file.read_to_end(&mut text)
            .map_err(|source| LedgerError::Io {
                path: path.clone(),
                op: "read",
                source,
            })?;
        let torn = !text.is_empty() && !text.ends_with(b"\n");
        let complete = text.rsplit_once_newline();
        let mut order = VecDeque::new();
        let mut lines = 0;
        for (n, line) in complete.split(|b| *b == b'\n').enumerate() {
            if line.is_empty() {
                continue;
            }
            let nonce = std::str::from_utf8(line)
                .ok()
                .and_then(|s| Nonce::new(s).ok())
                .ok_or_else(|| LedgerError::Corrupt {
                    path: path.clone(),
                    line: n + 1,
                })?;
            lines += 1;
            order.push_back(nonce.as_str().to_owned());
            if order.len() > capacity {
                order.pop_front();
            }
        }
        let set = order.iter().cloned().collect();
        let mut ledger = Self {
            dir,
            path,
            file,
            set,
            order,
            lines_in_file: lines,
            capacity,
        };
        if torn || lines >= 2 * capacity {
            ledger.compact()?;
        }
        Ok(ledger)
    }

    /// Whether `nonce` was committed within the window.
    pub fn contains(&self, nonce: &Nonce) -> bool {
        self.set.contains(nonce.as_str())
    }

    /// How many nonces are remembered.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether no nonce is remembered.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Appends `nonces` and fdatasyncs: when this returns, a restart will refuse them.
    pub fn commit<'a>(
        &mut self,
        nonces: impl IntoIterator<Item = &'a Nonce>,
    ) -> Result<(), LedgerError> {
        let mut buf = Vec::new();
        let mut added = Vec::new();
        for nonce in nonces {
            buf.extend_from_slice(nonce.as_str().as_bytes());
            buf.push(b'\n');
            added.push(nonce.as_str().to_owned());
        }
        if added.is_empty() {
            return Ok(());
        }
        let io = |op, source| LedgerError::Io {
            path: self.path.clone(),
            op,
            source,
        };
        self.file.write_all(&buf).map_err(|e| io("append", e))?;
        self.file.sync_data().map_err(|e| io("fdatasync", e))?;
        self.lines_in_file += added.len();
        for nonce in added {
            if self.set.insert(nonce.clone()) {
                self.order.push_back(nonce);
            }
            while self.order.len() > self.capacity {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
        if self.lines_in_file >= 2 * self.capacity {
            self.compact()?;
        }
        Ok(())
    }

    /// Rewrites the file with the remembered nonces (temp file, fsync, rename, fsync dir).
    fn compact(&mut self) -> Result<(), LedgerError> {
        let path = self.path.clone();
        let io = |op, source: std::io::Error| LedgerError::Io {
            path: path.clone(),
            op,
            source,
        };
        let _ = rustix::fs::unlinkat(&self.dir, LEDGER_TEMP, rustix::fs::AtFlags::empty());
        let fd = rustix::fs::openat(
            &self.dir,
            LEDGER_TEMP,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| io("create temp", e.into()))?;
        let mut temp = std::fs::File::from(fd);
        let mut buf = Vec::with_capacity(self.order.len() * 33);
        for nonce in &self.order {
            buf.extend_from_slice(nonce.as_bytes());
            buf.push(b'\n');
        }
        temp.write_all(&buf).map_err(|e| io("write temp", e))?;
        temp.sync_all().map_err(|e| io("fsync temp", e))?;
        rustix::fs::renameat(&self.dir, LEDGER_TEMP, &self.dir, LEDGER_FILE)
            .map_err(|e| io("rename", e.into()))?;
        rustix::fs::fsync(&self.dir).map_err(|e| io("fsync dir", e.into()))?;
        let fd = rustix::fs::openat(
            &self.dir,
            LEDGER_FILE,
            OFlags::WRONLY | OFlags::APPEND | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io("reopen", e.into()))?;
        self.file = std::fs::File::from(fd);
        self.lines_in_file = self.order.len();
        Ok(())
    }
}

trait CompleteLines {
    fn rsplit_once_newline(&self) -> &[u8];
}

impl CompleteLines for Vec<u8> {
    /// The bytes up to and including the last newline (a torn tail is dropped).
    fn rsplit_once_newline(&self) -> &[u8] {
        self.iter()
            .rposition(|b| *b == b'\n')
            .map_or(&[], |i| &self[..=i])
    }
}

/// An audit failure (fatal: no action runs unaudited).
#[derive(Debug, Error)]
#[non_exhaustive]
#[error("audit log {path}: {op}: {source}")]
pub struct AuditError {
    /// The log file.
    pub path: PathBuf,
    /// What was being done.
    pub op: &'static str,
    /// The cause.
    pub source: std::io::Error,
}

/// One line of the audit log.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AuditRecord {
    /// UTC, RFC 3339 with milliseconds.
    pub time: String,
    /// The entry's name in the intent directory (non-UTF-8 bytes escaped).
    pub file: String,
    /// The intent id, when the envelope parsed.
    pub intent_id: Option<String>,
    /// The nonce, when the envelope parsed.
    pub nonce: Option<String>,
    /// `started`, `executed`, `failed`, `rejected` or `coalesced`.
    pub outcome: &'static str,
    /// For `rejected`: a stable code (`symlink`, `duplicate_key`, `replayed_nonce`, …).
    pub reason: Option<&'static str>,
    /// A human-readable detail.
    pub detail: Option<String>,
    /// What the action does (`restart web.service`).
    pub action: Option<String>,
    /// For `executed`/`failed`: each command's argv and how it ended.
    pub commands: Vec<AuditCommand>,
    /// For `failed`: the first failing command's exit status (`null` if killed or not started).
    pub exit_status: Option<i32>,
    /// For `coalesced`: the file whose action stood for this one.
    pub coalesced_into: Option<String>,
    /// Milliseconds from claim to this record.
    pub duration_ms: u64,
}

/// One command in an [`AuditRecord`].
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AuditCommand {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// `exit status N`, `killed by signal N`, `timed out`, or `could not start: …`.
    pub status: String,
}

/// The append-only audit log: one JSON object per line, each appended and fdatasync'ed.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    file: std::fs::File,
}

impl AuditLog {
    /// Opens (or creates, 0640) the log for appending, not following a symlink.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, AuditError> {
        let path = path.as_ref().to_path_buf();
        let fd = rustix::fs::open(
            &path,
            OFlags::WRONLY | OFlags::CREATE | OFlags::APPEND | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o640),
        )
        .map_err(|e| AuditError {
            path: path.clone(),
            op: "open",
            source: e.into(),
        })?;
        Ok(Self {
            path,
            file: std::fs::File::from(fd),
        })
    }

    /// Appends one record in a single write, then fdatasyncs.
    pub fn append(&mut self, record: &AuditRecord) -> Result<(), AuditError> {
        self.write(record)?;
        self.sync()
    }

    /// Appends one record in a single write without syncing: call [`AuditLog::sync`] before
    /// acting on it (the reactor batches refusals this way: many records, one fdatasync, then
    /// the files are removed).
    pub fn write(&mut self, record: &AuditRecord) -> Result<(), AuditError> {
        let mut line = serde_json::to_vec(record).map_err(|e| AuditError {
            path: self.path.clone(),
            op: "serialize",
            source: std::io::Error::other(e),
        })?;
        line.push(b'\n');
        self.file.write_all(&line).map_err(|source| AuditError {
            path: self.path.clone(),
            op: "append",
            source,
        })
    }

    /// fdatasyncs what was written.
    pub fn sync(&mut self) -> Result<(), AuditError> {
        self.file.sync_data().map_err(|source| AuditError {
            path: self.path.clone(),
            op: "fdatasync",
            source,
        })
    }
}

/// Formats a time as RFC 3339 UTC with milliseconds (`2026-11-23T15:04:05.123Z`).
pub fn rfc3339(time: std::time::SystemTime) -> String {
    let since = time
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        since.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn open(dir: &Path, cap: usize) -> NonceLedger {
        let fd =
            rustix::fs::open(dir, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).expect("dir");
        NonceLedger::open(&fd, dir, cap).expect("ledger")
    }

    fn nonce(i: usize) -> Nonce {
        Nonce::new(&format!("{i:032x}")).expect("nonce")
    }

    #[test]
    fn persists_and_bounds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut l = open(dir.path(), 10);
        for i in 0..25 {
            l.commit([&nonce(i)]).expect("commit");
        }
        assert_eq!(l.len(), 10);
        assert!(l.contains(&nonce(24)) && l.contains(&nonce(15)) && !l.contains(&nonce(14)));
        drop(l);
        let l = open(dir.path(), 10);
        assert!(l.contains(&nonce(24)) && l.contains(&nonce(15)) && !l.contains(&nonce(14)));
        let lines = std::fs::read_to_string(dir.path().join(LEDGER_FILE))
            .expect("read")
            .lines()
            .count();
        assert!(lines <= 20, "{lines}");
    }

    #[test]
    fn drops_a_torn_tail_and_refuses_corruption() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = format!("{:032x}\n", 1);
        std::fs::write(dir.path().join(LEDGER_FILE), format!("{good}abcdef0123")).expect("write");
        let mut l = open(dir.path(), 10);
        assert_eq!(l.len(), 1);
        l.commit([&nonce(2)]).expect("commit");
        let text = std::fs::read_to_string(dir.path().join(LEDGER_FILE)).expect("read");
        assert_eq!(text, format!("{good}{:032x}\n", 2));
        std::fs::write(dir.path().join(LEDGER_FILE), "not a nonce\n").expect("write");
        let fd = rustix::fs::open(
            dir.path(),
            OFlags::RDONLY | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .expect("dir");
        assert!(matches!(
            NonceLedger::open(&fd, dir.path(), 10),
            Err(LedgerError::Corrupt { line: 1, .. })
        ));
    }

    #[test]
    fn formats_time() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_millis(1_795_446_245_123)),
            "2026-11-23T15:04:05.123Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000Z"
        );
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(32))]
            #[test]
            fn window_holds_the_newest_capacity(cap in 1usize..20, n in 0usize..80) {
                let dir = tempfile::tempdir().expect("tempdir");
                let mut l = open(dir.path(), cap);
                for i in 0..n {
                    l.commit([&nonce(i)]).expect("commit");
                }
                drop(l);
                let l = open(dir.path(), cap);
                for i in 0..n {
                    prop_assert_eq!(l.contains(&nonce(i)), i + cap >= n, "i={} n={} cap={}", i, n, cap);
                }
            }

            #[test]
            fn garbage_ledgers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
                let dir = tempfile::tempdir().expect("tempdir");
                std::fs::write(dir.path().join(LEDGER_FILE), &bytes).expect("write");
                let fd = rustix::fs::open(dir.path(), OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).expect("dir");
                let _ = NonceLedger::open(&fd, dir.path(), 5);
            }
        }
    }
}
