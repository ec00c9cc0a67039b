//! The reactor engine: watch one held directory, claim, check, audit, act.
use std::collections::{HashMap, HashSet};
use std::ffi::{CStr, CString};
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags, ResolveFlags};
use rustix::io::Errno;
use thiserror::Error;

use crate::ledger::{
    AuditCommand, AuditError, AuditLog, AuditRecord, DEFAULT_LEDGER_CAPACITY, LedgerError,
    NonceLedger, rfc3339,
};
use crate::name::{EntryName, Nonce, classify_entry_name};
use crate::parse::{DEFAULT_MAX_INTENT_BYTES, IntentFile};
use crate::registry::{ActionStatus, Prepared, Registry, check_registry};

/// The reactor's private directory inside the intent directory (a dot-name: writers' temp files
/// and this dir are both left alone by the scanner). Created 0700, owned by the reactor.
pub const CLAIM_DIR: &str = ".host-reactor-claimed";
const QUARANTINE_DIR: &str = ".quarantine";
const LOCK_FILE: &str = "reactor.lock";
/// How long `open` waits for the state dir's lock before reporting [`ReactorError::Busy`].
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// A token bucket per intent id: `burst` at once, then one more every `60 / per_minute` s.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Actions allowed back to back.
    pub burst: u32,
    /// Sustained actions per minute.
    pub per_minute: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            burst: 10,
            per_minute: 30,
        }
    }
}

/// Where the reactor works and its bounds.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ReactorConfig {
    /// The watched directory (writable by the writer).
    pub intent_dir: PathBuf,
    /// Host-private state: the nonce ledger and a lock.
    pub state_dir: PathBuf,
    /// The audit log file.
    pub audit_log: PathBuf,
    /// Only files owned by this uid are read (others are refused).
    pub writer_uid: Option<u32>,
    /// Files larger than this are refused unread.
    pub max_intent_bytes: usize,
    /// How many nonces the ledger remembers (see [`NonceLedger`]).
    pub ledger_capacity: usize,
    /// Per-intent-id rate limit.
    pub rate_limit: RateLimit,
    /// Files claimed per pass (the coalescing window; bounds memory).
    pub batch_max: usize,
}

impl ReactorConfig {
    /// A configuration with the default bounds.
    pub fn new(
        intent_dir: impl Into<PathBuf>,
        state_dir: impl Into<PathBuf>,
        audit_log: impl Into<PathBuf>,
    ) -> Self {
        Self {
            intent_dir: intent_dir.into(),
            state_dir: state_dir.into(),
            audit_log: audit_log.into(),
            writer_uid: None,
            max_intent_bytes: DEFAULT_MAX_INTENT_BYTES,
            ledger_capacity: DEFAULT_LEDGER_CAPACITY,
            rate_limit: RateLimit::default(),
            batch_max: 256,
        }
    }
}

/// A fatal reactor error: it stops rather than act unaudited or unwatched.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ReactorError {
    /// A directory or file could not be set up.
    #[error("{what} {path}: {source}")]
    Setup {
        /// What it is.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The private claim dir could not be made the reactor's own (something else keeps
    /// taking its name, or it cannot be moved aside).
    #[error("{path} is not a directory owned by uid {uid} and cannot be moved aside; remove it")]
    ClaimDirNotOurs {
        /// Its path.
        path: PathBuf,
        /// The reactor's uid.
        uid: u32,
    },
    /// Another reactor holds the state dir.
    #[error("another reactor holds {path}")]
    Busy {
        /// The lock file.
        path: PathBuf,
    },
    /// The registry has a bad or duplicated id.
    #[error("registry: {0}")]
    Registry(String),
    /// The nonce ledger failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The audit log failed.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// The watched directory was removed, moved or unmounted.
    #[error("the watched directory {path} went away")]
    WatchLost {
        /// Its path.
        path: PathBuf,
    },
    /// Waiting for events failed.
    #[error("{op} on {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Counters since the reactor was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Actions that ran and succeeded.
    pub executed: u64,
    /// Actions that ran and failed.
    pub failed: u64,
    /// Entries refused (nothing ran).
    pub rejected: u64,
    /// Intents that an identical action stood for.
    pub coalesced: u64,
    /// Full directory rescans.
    pub rescans: u64,
}

/// Asks a running reactor to stop after the intent in hand. Write a byte to the sender (a
/// signal handler may: see `signal_hook::low_level::pipe`), or drop every sender.
#[derive(Debug)]
pub struct StopSignal {
    rx: UnixStream,
}

impl StopSignal {
    /// The signal and its sending end.
    pub fn new() -> std::io::Result<(Self, UnixStream)> {
        let (rx, tx) = UnixStream::pair()?;
        rx.set_nonblocking(true)?;
        Ok((Self { rx }, tx))
    }

    fn requested(&self) -> bool {
        let mut buf = [0u8; 16];
        match (&self.rx).read(&mut buf) {
            // Any byte, or EOF (every sender dropped), is a stop request.
            Ok(_n) => true,
            Err(e) => {
                e.kind() != std::io::ErrorKind::WouldBlock
                    && e.kind() != std::io::ErrorKind::Interrupted
            }
        }
    }
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// One claimed entry.
struct Claimed {
    /// Its name in the intent dir.
    original: String,
    /// Its name in the claim dir.
    name: CString,
    since: Instant,
}

struct Valid<'r, H> {
    claimed: Claimed,
    intent_id: String,
    nonce: Nonce,
    prepared: Prepared<'r, H>,
    followers: Vec<Valid<'r, H>>,
}

struct Refusal {
    reason: &'static str,
    detail: String,
    intent_id: Option<String>,
    nonce: Option<String>,
}

impl Refusal {
    fn new(reason: &'static str, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
            intent_id: None,
            nonce: None,
        }
    }
}

/// The reactor: owns the watched dir fd, the claim dir, the ledger and the audit log.
pub struct Reactor<'r, R: Registry> {
    cfg: ReactorConfig,
    registry: &'r R,
    host: R::Host,
    intent_dir: OwnedFd,
    claim_dir: OwnedFd,
    inotify: OwnedFd,
    _lock: OwnedFd,
    ledger: NonceLedger,
    audit: AuditLog,
    buckets: HashMap<&'static str, Bucket>,
    stats: Stats,
    quarantined: u64,
    /// Handled entries whose audit records are written but not yet fdatasync'ed.
    unsynced: Vec<CString>,
    /// Whether any audit record is written but not yet fdatasync'ed.
    dirty: bool,
}

impl<'r, R: Registry> std::fmt::Debug for Reactor<'r, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reactor")
            .field("cfg", &self.cfg)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

fn setup(what: &'static str, path: &Path) -> impl FnOnce(Errno) -> ReactorError {
    let path = path.to_path_buf();
    move |e| ReactorError::Setup {
        what,
        path,
        source: e.into(),
    }
}

fn open_dir(path: &Path, what: &'static str) -> Result<OwnedFd, ReactorError> {
    rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
    )
    .map_err(setup(what, path))
}

fn display_name(name: &[u8]) -> String {
    String::from_utf8_lossy(name)
        .escape_debug()
        .take(300)
        .collect()
}

impl<'r, R: Registry> Reactor<'r, R> {
    /// Opens every file and fd the reactor needs and starts watching (events from now on are
    /// queued); nothing is processed until [`Reactor::run`] or [`Reactor::drain`].
    pub fn open(cfg: ReactorConfig, registry: &'r R, host: R::Host) -> Result<Self, ReactorError> {
        check_registry(registry).map_err(ReactorError::Registry)?;
        let state_dir = open_dir(&cfg.state_dir, "state dir")?;
        let lock_path = cfg.state_dir.join(LOCK_FILE);
        let lock = rustix::fs::openat(
            &state_dir,
            LOCK_FILE,
            OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(setup("lock file", &lock_path))?;
        // A reactor that was just killed may still have its lock held for a moment by a child
        // between fork and exec (the fd is close-on-exec): retry briefly before giving up.
        let deadline = Instant::now() + LOCK_WAIT;
        while let Err(e) =
            rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive)
        {
            if e != Errno::WOULDBLOCK || Instant::now() >= deadline {
                return Err(ReactorError::Busy { path: lock_path });
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let ledger = NonceLedger::open(&state_dir, &cfg.state_dir, cfg.ledger_capacity)?;
        let mut audit = AuditLog::open(&cfg.audit_log)?;
        let intent_dir = open_dir(&cfg.intent_dir, "intent dir")?;
        let claim_dir = open_claim_dir(&intent_dir, &cfg.intent_dir, &mut audit)?;
        let inotify = watch(&intent_dir, &cfg.intent_dir)?;
        Ok(Self {
            cfg,
            registry,
            host,
            intent_dir,
            claim_dir,
            inotify,
            _lock: lock,
            ledger,
            audit,
            buckets: HashMap::new(),
            stats: Stats::default(),
            quarantined: 0,
            unsynced: Vec::new(),
            dirty: false,
        })
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The host the intents act on.
    pub fn host(&self) -> &R::Host {
        &self.host
    }

    /// Handles everything present now: entries left claimed by an earlier run, then every entry
    /// of the intent dir. Returns when both are empty of handleable entries.
    pub fn drain(&mut self) -> Result<Stats, ReactorError> {
        self.recover(None)?;
        self.rescan(None)?;
        Ok(self.stats)
    }

    /// Handles what is present, then waits for inotify events (no timeout, no polling) and
    /// handles each new entry, until `stop` fires; the intent in hand is finished first.
    pub fn run(&mut self, stop: &StopSignal) -> Result<Stats, ReactorError> {
        if !self.recover(Some(stop))? || !self.rescan(Some(stop))? {
            return Ok(self.stats);
        }
        let mut buf = vec![std::mem::MaybeUninit::<u8>::uninit(); 64 * 1024];
        loop {
            use rustix::event::{PollFd, PollFlags, poll};
            let mut fds = [
                PollFd::new(&self.inotify, PollFlags::IN),
                PollFd::new(&stop.rx, PollFlags::IN),
            ];
            match poll(&mut fds, None) {
                Ok(_) | Err(Errno::INTR) => {}
                Err(e) => return Err(self.io_error("poll", e)),
            }
            if !fds[1].revents().is_empty() && stop.requested() {
                return Ok(self.stats);
            }
            let (names, mut need_rescan) = self.read_events(&mut buf)?;
            let keep_going = self.handle_names(names, Some(stop), &mut need_rescan)?;
            if !keep_going {
                return Ok(self.stats);
            }
            if need_rescan && !self.rescan(Some(stop))? {
                return Ok(self.stats);
            }
        }
    }

    fn io_error(&self, op: &'static str, e: Errno) -> ReactorError {
        ReactorError::Io {
            op,
            path: self.cfg.intent_dir.clone(),
            source: e.into(),
        }
    }

    /// Drains the inotify queue: the names worth a look, and whether a rescan is needed.
    fn read_events(
        &mut self,
        buf: &mut [std::mem::MaybeUninit<u8>],
    ) -> Result<(Vec<CString>, bool), ReactorError> {
        use rustix::fs::inotify::{ReadFlags, Reader};
        let limit = self.cfg.batch_max.max(1) * 8;
        let mut names: Vec<CString> = Vec::new();
        let mut seen: HashSet<CString> = HashSet::new();
        let mut rescan = false;
        let mut reader = Reader::new(&self.inotify, buf);
        loop {
            let event = match reader.next() {
                Ok(event) => event,
                Err(Errno::AGAIN) => break,
                Err(Errno::INTR) => continue,
                Err(e) => {
                    return Err(ReactorError::Io {
                        op: "read inotify",
                        path: self.cfg.intent_dir.clone(),
                        source: e.into(),
                    });
                }
            };
            let flags = event.events();
            if flags.intersects(
                ReadFlags::IGNORED
                    | ReadFlags::DELETE_SELF
                    | ReadFlags::MOVE_SELF
                    | ReadFlags::UNMOUNT,
            ) {
                return Err(ReactorError::WatchLost {
                    path: self.cfg.intent_dir.clone(),
                });
            }
            if flags.contains(ReadFlags::QUEUE_OVERFLOW) {
                rescan = true;
                continue;
            }
            let Some(name) = event.file_name() else {
                continue;
            };
            if classify_entry_name(name.to_bytes()) == EntryName::Hidden {
                continue;
            }
            if flags.contains(ReadFlags::CREATE)
                && !flags.contains(ReadFlags::ISDIR)
                && !self.worth_claiming_on_create(name)
            {
                // A regular, single-link, empty file: a writer still writing; IN_CLOSE_WRITE follows.
                continue;
            }
            if names.len() >= limit {
                rescan = true;
                continue;
            }
            if seen.insert(name.to_owned()) {
                names.push(name.to_owned());
            }
        }
        Ok((names, rescan))
    }

    fn worth_claiming_on_create(&self, name: &CStr) -> bool {
        match rustix::fs::statat(&self.intent_dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => {
                FileType::from_raw_mode(st.st_mode) != FileType::RegularFile
                    || st.st_nlink != 1
                    || st.st_size > 0
            }
            Err(_) => false,
        }
    }

    /// Lists a directory's handleable names (bounded per call).
    fn list(
        &self,
        dir: &OwnedFd,
        limit: usize,
        skip: &HashSet<CString>,
    ) -> Result<Vec<CString>, ReactorError> {
        let mut names = Vec::new();
        let listing = rustix::fs::Dir::read_from(dir).map_err(|e| self.io_error("read dir", e))?;
        for entry in listing {
            let entry = entry.map_err(|e| self.io_error("read dir", e))?;
            let name = entry.file_name();
            if classify_entry_name(name.to_bytes()) == EntryName::Hidden || skip.contains(name) {
                continue;
            }
            names.push(name.to_owned());
            if names.len() >= limit {
                break;
            }
        }
        Ok(names)
    }

    /// Handles entries left in the claim dir by an earlier run. Returns false if stopped.
    fn recover(&mut self, stop: Option<&StopSignal>) -> Result<bool, ReactorError> {
        let batch = self.cfg.batch_max.max(1);
        let mut attempted = HashSet::new();
        loop {
            let names = self.list(&self.claim_dir, batch, &attempted)?;
            if names.is_empty() {
                return Ok(true);
            }
            attempted.extend(names.iter().cloned());
            let claimed = names
                .into_iter()
                .map(|name| Claimed {
                    original: display_name(name.to_bytes()),
                    name,
                    since: Instant::now(),
                })
                .collect();
            let mut ignored = false;
            if !self.handle_claimed(claimed, stop, &mut ignored, true)? {
                return Ok(false);
            }
        }
    }

    /// Handles every entry of the intent dir, a batch at a time. Returns false if stopped.
    fn rescan(&mut self, stop: Option<&StopSignal>) -> Result<bool, ReactorError> {
        self.stats.rescans += 1;
        let batch = self.cfg.batch_max.max(1);
        // Each name is tried once per rescan: an entry that cannot be claimed is not retried
        // in a loop.
        let mut attempted = HashSet::new();
        loop {
            let names = self.list(&self.intent_dir, batch, &attempted)?;
            if names.is_empty() {
                return Ok(true);
            }
            attempted.extend(names.iter().cloned());
            let mut ignored = false;
            if !self.handle_names(names, stop, &mut ignored)? {
                return Ok(false);
            }
        }
    }

    /// Claims and handles `names` from the intent dir, in batches. Returns false if stopped.
    fn handle_names(
        &mut self,
        names: Vec<CString>,
        stop: Option<&StopSignal>,
        rate_limited: &mut bool,
    ) -> Result<bool, ReactorError> {
        let batch = self.cfg.batch_max.max(1);
        let mut claimed = Vec::with_capacity(batch.min(names.len()));
        for name in names {
            if let Some(c) = self.claim(&name)? {
                claimed.push(c);
            }
            if claimed.len() >= batch
                && !self.handle_claimed(std::mem::take(&mut claimed), stop, rate_limited, false)?
            {
                return Ok(false);
            }
        }
        self.handle_claimed(claimed, stop, rate_limited, false)
    }

    /// Moves an entry into the claim dir; `None` if it is gone (another event got it first).
    fn claim(&mut self, name: &CStr) -> Result<Option<Claimed>, ReactorError> {
        let since = Instant::now();
        let original = display_name(name.to_bytes());
        let mut target = name.to_owned();
        for attempt in 1..=64u32 {
            match rustix::fs::renameat_with(
                &self.intent_dir,
                name,
                &self.claim_dir,
                &target,
                RenameFlags::NOREPLACE,
            ) {
                Ok(()) => {
                    return Ok(Some(Claimed {
                        original,
                        name: target,
                        since,
                    }));
                }
                Err(Errno::NOENT) => return Ok(None),
                Err(Errno::EXIST) => {
                    let mut renamed = format!("dup{attempt}-").into_bytes();
                    renamed.extend_from_slice(name.to_bytes());
                    renamed.truncate(255);
                    target = CString::new(renamed).unwrap_or_else(|_| name.to_owned());
                }
                Err(e) => {
                    // Cannot move it (e.g. a writer's directory we may not rename): refuse, audit.
                    self.stats.rejected += 1;
                    self.dirty = true;
                    self.audit.write(&record(
                        &original,
                        since,
                        "rejected",
                        Some(&Refusal::new(
                            "unclaimable",
                            format!("cannot move into the claim dir: {e}"),
                        )),
                    ))?;
                    return Ok(None);
                }
            }
        }
        Ok(None)
    }

    /// Checks each claimed entry, then acts on the valid ones. Returns false if stopped.
    fn handle_claimed(
        &mut self,
        claimed: Vec<Claimed>,
        stop: Option<&StopSignal>,
        rate_limited: &mut bool,
        recovering: bool,
    ) -> Result<bool, ReactorError> {
        let mut valid: Vec<Valid<'r, R::Host>> = Vec::new();
        for c in claimed {
            match self.inspect(&c) {
                Ok((intent_id, nonce, prepared)) => {
                    let replayed = self.ledger.contains(&nonce)
                        || valid.iter().any(|v| {
                            v.nonce == nonce || v.followers.iter().any(|f| f.nonce == nonce)
                        });
                    if replayed {
                        let mut refusal = if recovering && self.ledger.contains(&nonce) {
                            // Claimed by an earlier run that committed the nonce, then stopped:
                            // the audit log has its "started" record; never run it twice.
                            Refusal::new(
                                "interrupted",
                                "claimed by an earlier run whose action may have started; not run again",
                            )
                        } else {
                            Refusal::new("replayed_nonce", "this nonce was already used")
                        };
                        refusal.intent_id = Some(intent_id);
                        refusal.nonce = Some(nonce.as_str().to_owned());
                        self.refuse(&c, &refusal)?;
                        continue;
                    }
                    let v = Valid {
                        claimed: c,
                        intent_id,
                        nonce,
                        prepared,
                        followers: Vec::new(),
                    };
                    if let Some(key) = v.prepared.coalesce_key()
                        && let Some(lead) = valid
                            .iter_mut()
                            .find(|l| l.prepared.coalesce_key() == Some(key))
                    {
                        lead.followers.push(v);
                        continue;
                    }
                    if !self.take_token(v.prepared.intent_id()) {
                        *rate_limited = true;
                        let mut refusal = Refusal::new(
                            "rate_limited",
                            format!("more than the rate limit of {}", v.prepared.intent_id()),
                        );
                        refusal.intent_id = Some(v.intent_id);
                        refusal.nonce = Some(v.nonce.as_str().to_owned());
                        self.refuse(&v.claimed, &refusal)?;
                        continue;
                    }
                    valid.push(v);
                }
                Err(refusal) => self.refuse(&c, &refusal)?,
            }
        }
        // Refusals of this batch: one fdatasync, then their files go.
        self.flush()?;
        for v in valid {
            // Before each action, and once after the batch: a stop request leaves the rest
            // claimed (nonces not committed), handled at the next start.
            if stop.is_some_and(StopSignal::requested) {
                return Ok(false);
            }
            self.act(v)?;
        }
        Ok(!stop.is_some_and(StopSignal::requested))
    }

    fn take_token(&mut self, id: &'static str) -> bool {
        let RateLimit { burst, per_minute } = self.cfg.rate_limit;
        let now = Instant::now();
        let bucket = self.buckets.entry(id).or_insert(Bucket {
            tokens: f64::from(burst),
            at: now,
        });
        let refill = now.duration_since(bucket.at).as_secs_f64() * f64::from(per_minute) / 60.0;
        bucket.tokens = (bucket.tokens + refill).min(f64::from(burst));
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Commit nonces, audit "started", run, audit the outcome, then remove the files.
    fn act(&mut self, v: Valid<'r, R::Host>) -> Result<(), ReactorError> {
        let action = v.prepared.description().to_owned();
        let mut started = record(&v.claimed.original, v.claimed.since, "started", None);
        started.intent_id = Some(v.intent_id.clone());
        started.nonce = Some(v.nonce.as_str().to_owned());
        started.action = Some(action.clone());
        // One durability barrier before the action: the ledger's fdatasync. The "started"
        // record is written (not yet synced) first, so the same journal commit usually carries
        // it; if a crash loses it anyway, the entry is still in the claim dir (it is removed only
        // after the final record is synced) and the next start audits it as `interrupted`.
        self.audit.write(&started)?;
        self.dirty = true;
        self.ledger
            .commit(std::iter::once(&v.nonce).chain(v.followers.iter().map(|f| &f.nonce)))?;
        let report = v.prepared.execute(&self.host);
        let ok = report.succeeded();
        let mut done = started.clone();
        done.time = rfc3339(SystemTime::now());
        done.duration_ms = millis(v.claimed.since);
        done.outcome = if ok { "executed" } else { "failed" };
        done.commands = report
            .commands
            .iter()
            .map(|(argv, status)| AuditCommand {
                argv: argv.clone(),
                status: status.to_string(),
            })
            .collect();
        if let Some((_, status)) = report.failure() {
            done.exit_status = match status {
                ActionStatus::Exited(code) => Some(*code),
                _ => None,
            };
            done.detail = Some(status.to_string());
        }
        self.audit.write(&done)?;
        self.dirty = true;
        self.unsynced.push(v.claimed.name.clone());
        if ok {
            self.stats.executed += 1;
        } else {
            self.stats.failed += 1;
        }
        for f in v.followers {
            let mut rec = done.clone();
            rec.time = rfc3339(SystemTime::now());
            rec.file = f.claimed.original.clone();
            rec.intent_id = Some(f.intent_id);
            rec.nonce = Some(f.nonce.as_str().to_owned());
            rec.outcome = "coalesced";
            rec.coalesced_into = Some(v.claimed.original.clone());
            rec.duration_ms = millis(f.claimed.since);
            self.audit.write(&rec)?;
            self.stats.coalesced += 1;
            self.unsynced.push(f.claimed.name.clone());
        }
        self.flush()
    }

    /// Audits a refusal; the entry is removed by the next [`Self::flush`].
    fn refuse(&mut self, c: &Claimed, refusal: &Refusal) -> Result<(), ReactorError> {
        self.audit
            .write(&record(&c.original, c.since, "rejected", Some(refusal)))?;
        self.stats.rejected += 1;
        self.dirty = true;
        self.unsynced.push(c.name.clone());
        Ok(())
    }

    /// One fdatasync for every record written since the last, then removes their entries.
    fn flush(&mut self) -> Result<(), ReactorError> {
        if self.dirty {
            self.audit.sync()?;
            self.dirty = false;
        }
        for name in std::mem::take(&mut self.unsynced) {
            self.remove(&name);
        }
        Ok(())
    }

    /// Removes a handled entry from the claim dir; a non-empty directory is quarantined.
    fn remove(&mut self, name: &CStr) {
        if rustix::fs::unlinkat(&self.claim_dir, name, AtFlags::empty()) == Err(Errno::ISDIR)
            && rustix::fs::unlinkat(&self.claim_dir, name, AtFlags::REMOVEDIR).is_err()
        {
            self.quarantined += 1;
            let _ =
                rustix::fs::mkdirat(&self.claim_dir, QUARANTINE_DIR, Mode::from_raw_mode(0o700));
            let target = format!(
                "{QUARANTINE_DIR}/{}-{}",
                std::process::id(),
                self.quarantined
            );
            let _ = rustix::fs::renameat(&self.claim_dir, name, &self.claim_dir, target.as_str());
        }
    }

    /// Opens and checks a claimed entry and prepares its intent. Reads the bytes once.
    fn inspect(&self, c: &Claimed) -> Result<(String, Nonce, Prepared<'r, R::Host>), Refusal> {
        let st = rustix::fs::statat(&self.claim_dir, &c.name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| Refusal::new("unreadable", format!("stat: {e}")))?;
        check_stat(&st, self.cfg.writer_uid, self.cfg.max_intent_bytes)?;
        if classify_entry_name(c.name.to_bytes()) != EntryName::Intent {
            return Err(Refusal::new(
                "bad_file_name",
                "names must match [A-Za-z0-9][A-Za-z0-9_.-]*.intent.json",
            ));
        }
        let flags =
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
        let fd = match rustix::fs::openat2(
            &self.claim_dir,
            &c.name,
            flags,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
        ) {
            Err(Errno::NOSYS) => rustix::fs::openat(&self.claim_dir, &c.name, flags, Mode::empty()),
            other => other,
        }
        .map_err(|e| Refusal::new("unreadable", format!("open: {e}")))?;
        let fst = rustix::fs::fstat(&fd)
            .map_err(|e| Refusal::new("unreadable", format!("fstat: {e}")))?;
        if (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino) {
            return Err(Refusal::new(
                "replaced",
                "the entry changed between stat and open",
            ));
        }
        check_stat(&fst, self.cfg.writer_uid, self.cfg.max_intent_bytes)?;
        let mut bytes = Vec::with_capacity(
            usize::try_from(fst.st_size)
                .unwrap_or(0)
                .min(self.cfg.max_intent_bytes)
                + 1,
        );
        let limit = u64::try_from(self.cfg.max_intent_bytes)
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        std::fs::File::from(fd)
            .take(limit)
            .read_to_end(&mut bytes)
            .map_err(|e| Refusal::new("unreadable", format!("read: {e}")))?;
        let file = IntentFile::parse_bounded(&bytes, self.cfg.max_intent_bytes)
            .map_err(|e| Refusal::new(e.code(), e.to_string()))?;
        let intent_id = file.intent_id().as_str().to_owned();
        let nonce = file.nonce().clone();
        match self.registry.prepare(&file, &self.host) {
            Ok(prepared) => Ok((intent_id, nonce, prepared)),
            Err(e) => Err(Refusal {
                reason: e.code(),
                detail: e.to_string(),
                intent_id: Some(intent_id),
                nonce: Some(nonce.as_str().to_owned()),
            }),
        }
    }
}

fn check_stat(st: &rustix::fs::Stat, writer_uid: Option<u32>, max: usize) -> Result<(), Refusal> {
    let kind = match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => None,
        FileType::Symlink => Some("symlink"),
        FileType::Fifo => Some("fifo"),
        FileType::Directory => Some("directory"),
        FileType::Socket => Some("socket"),
        FileType::CharacterDevice => Some("character_device"),
        FileType::BlockDevice => Some("block_device"),
        FileType::Unknown => Some("unknown_type"),
    };
    if let Some(kind) = kind {
        return Err(Refusal::new(kind, "not a regular file"));
    }
    if st.st_nlink != 1 {
        return Err(Refusal::new("hardlink", format!("{} links", st.st_nlink)));
    }
    if let Some(uid) = writer_uid
        && st.st_uid != uid
    {
        return Err(Refusal::new(
            "wrong_owner",
            format!("owned by uid {}, not {uid}", st.st_uid),
        ));
    }
    let size = u64::try_from(st.st_size).unwrap_or(u64::MAX);
    if size > u64::try_from(max).unwrap_or(u64::MAX) {
        return Err(Refusal::new(
            "oversize",
            format!("{size} bytes, more than the limit of {max}"),
        ));
    }
    Ok(())
}

fn millis(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

fn record(
    file: &str,
    since: Instant,
    outcome: &'static str,
    refusal: Option<&Refusal>,
) -> AuditRecord {
    AuditRecord {
        time: rfc3339(SystemTime::now()),
        file: file.to_owned(),
        intent_id: refusal.and_then(|r| r.intent_id.clone()),
        nonce: refusal.and_then(|r| r.nonce.clone()),
        outcome,
        reason: refusal.map(|r| r.reason),
        detail: refusal.map(|r| r.detail.clone()),
        action: None,
        commands: Vec::new(),
        exit_status: None,
        coalesced_into: None,
        duration_ms: millis(since),
    }
}

/// Opens (creating if needed) the private claim dir, owned by us and 0700. Anything else under
/// its name (a writer's directory, symlink or file planted to block the reactor) is renamed
/// aside to a dot-name (so it is never handled) and audited; a few attempts, then an error.
fn open_claim_dir(
    intent_dir: &OwnedFd,
    intent_path: &Path,
    audit: &mut AuditLog,
) -> Result<OwnedFd, ReactorError> {
    let path = intent_path.join(CLAIM_DIR);
    let uid = rustix::process::geteuid().as_raw();
    for attempt in 0..3 {
        match rustix::fs::mkdirat(intent_dir, CLAIM_DIR, Mode::from_raw_mode(0o700)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(setup("claim dir", &path)(e)),
        }
        let opened = rustix::fs::openat(
            intent_dir,
            CLAIM_DIR,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        );
        if let Ok(fd) = opened {
            let st = rustix::fs::fstat(&fd).map_err(setup("claim dir", &path))?;
            if st.st_uid == uid {
                if st.st_mode & 0o077 != 0 {
                    rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o700))
                        .map_err(setup("claim dir", &path))?;
                }
                return Ok(fd);
            }
        }
        let since = Instant::now();
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let aside = format!("{CLAIM_DIR}.foreign-{nanos}-{attempt}");
        if rustix::fs::renameat(intent_dir, CLAIM_DIR, intent_dir, aside.as_str()).is_err() {
            break;
        }
        audit.append(&record(
            CLAIM_DIR,
            since,
            "rejected",
            Some(&Refusal::new(
                "foreign_claim_dir",
                format!("not a directory of uid {uid}: moved aside to {aside}"),
            )),
        ))?;
    }
    Err(ReactorError::ClaimDirNotOurs { path, uid })
}

/// One inotify watch on the held directory: through `/proc/self/fd` so it is the same inode.
fn watch(dir: &OwnedFd, path: &Path) -> Result<OwnedFd, ReactorError> {
    use rustix::fs::inotify::{self, CreateFlags, WatchFlags};
    let ino = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK)
        .map_err(setup("inotify", path))?;
    let flags = WatchFlags::MOVED_TO
        | WatchFlags::CLOSE_WRITE
        | WatchFlags::CREATE
        | WatchFlags::DELETE_SELF
        | WatchFlags::MOVE_SELF
        | WatchFlags::ONLYDIR
        | WatchFlags::DONT_FOLLOW
        | WatchFlags::EXCL_UNLINK;
    let via_proc = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(dir));
    if inotify::add_watch(&ino, via_proc.as_str(), flags - WatchFlags::DONT_FOLLOW).is_err() {
        // No /proc: watch the path, then make sure it is still the directory we hold.
        inotify::add_watch(&ino, path, flags).map_err(setup("inotify watch", path))?;
        let held = rustix::fs::fstat(dir).map_err(setup("intent dir", path))?;
        let now = rustix::fs::stat(path).map_err(setup("intent dir", path))?;
        if (held.st_dev, held.st_ino) != (now.st_dev, now.st_ino) {
            return Err(ReactorError::WatchLost {
                path: path.to_path_buf(),
            });
        }
    }
    let _ = dir.as_fd();
    Ok(ino)
}
