//! The holder record: who holds the lock, written by the winner, parsed strictly by everyone else.
//!
//! Format (UTF-8, one `key=value` per line, every line ends in `\n`, at most
//! [`MAX_RECORD_LEN`] bytes in all):
//!
//! ```text
//! singleton-lock-holder 1
//! pid=1234
//! start_time=987654
//! boot_id=0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0
//! host=node-a
//! uid=1000
//! argv0=/usr/bin/manager
//! since=1795446000
//! end
//! ```
//!
//! Only `pid` is required; every other key is optional, known keys only, each at most once, in any
//! order. The closing `end` line makes a torn or truncated record detectable: a record cut at any
//! byte never parses.

use std::fmt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// The largest holder record we write or read, in bytes.
pub const MAX_RECORD_LEN: usize = 4096;
/// Longest value accepted for the free-text fields (`host`, `argv0`).
const MAX_TEXT_LEN: usize = 1024;
const HEADER: &str = "singleton-lock-holder 1";
const TRAILER: &str = "end";

/// Who holds (or last held) a lock, as read from its holder record, and whether that was checked
/// against the live process.
///
/// The record is advisory: it is written by whoever won the lock and read by anyone who can read
/// the lock file. [`LockHolder::verification`] says how far the claim was confirmed. Never act on
/// an unverified holder (and never signal a holder at all: the pid may belong to someone else).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct LockHolder {
    /// The holder's process id (in the writer's pid namespace).
    pub pid: u32,
    /// The holder's start time, in clock ticks since boot (`/proc/<pid>/stat` field 22).
    pub start_time: Option<u64>,
    /// The boot id of the writer's kernel (`/proc/sys/kernel/random/boot_id`).
    pub boot_id: Option<String>,
    /// The writer's host name (for the etcd backend: the node name).
    pub host: Option<String>,
    /// The writer's effective uid.
    pub uid: Option<u32>,
    /// The holder's executable (or argv\[0\]), possibly shortened and with control characters
    /// replaced.
    pub argv0: Option<String>,
    /// When the lock was taken, in seconds since the Unix epoch.
    pub since_unix: Option<u64>,
    /// How far the record was checked against the live system.
    pub verification: Verification,
}

/// The outcome of checking a holder record against the running system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Verification {
    /// The pid is alive with the recorded start time (and uid), on this boot and host: this is
    /// the process that wrote the record.
    Verified,
    /// No process with that pid exists (on this host, this boot).
    NotRunning,
    /// A process with that pid exists, but its start time (or uid) differs: the pid was reused.
    PidReused,
    /// The record was written during another boot of this machine.
    OtherBoot,
    /// Not enough data to check: no start time in the record, another host (or pid namespace),
    /// or `/proc` unreadable. For the etcd backend: the holder runs on another node.
    Unverifiable,
}

impl Verification {
    /// A short lowercase description, as used by [`LockHolder`]'s `Display`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verification::Verified => "verified",
            Verification::NotRunning => "not running",
            Verification::PidReused => "pid reused by another process",
            Verification::OtherBoot => "from another boot",
            Verification::Unverifiable => "unverified",
        }
    }
}

impl fmt::Display for Verification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for LockHolder {
    /// `pid 1234 (/usr/bin/foo) on host, since 2026-11-23T15:00:00Z, verified`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pid {}", self.pid)?;
        if let Some(argv0) = &self.argv0 {
            write!(f, " ({argv0})")?;
        }
        if let Some(host) = &self.host {
            write!(f, " on {host}")?;
        }
        if let Some(since) = self.since_unix {
            write!(f, ", since {}", format_rfc3339(since))?;
        }
        write!(f, ", {}", self.verification)
    }
}

/// Why a holder record was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The record is larger than [`MAX_RECORD_LEN`].
    #[error("holder record is larger than {max} bytes", max = MAX_RECORD_LEN)]
    TooLarge,
    /// The record is empty (nobody holds the lock, or the winner has not written it yet).
    #[error("holder record is empty")]
    Empty,
    /// The record is not UTF-8.
    #[error("holder record is not UTF-8")]
    NotUtf8,
    /// The first line is not the expected header.
    #[error("holder record has no `{HEADER}` header")]
    BadHeader,
    /// The record does not end with the `end` line (torn or truncated write).
    #[error("holder record is truncated (no `{TRAILER}` line)")]
    Truncated,
    /// Data after the `end` line.
    #[error("holder record has data after the `{TRAILER}` line")]
    TrailingData,
    /// A line is not `key=value`.
    #[error("holder record line {line} is not key=value")]
    BadLine {
        /// 1-based line number.
        line: usize,
    },
    /// A key this version does not know.
    #[error("holder record line {line} has an unknown key")]
    UnknownKey {
        /// 1-based line number.
        line: usize,
    },
    /// A key given twice.
    #[error("holder record repeats key `{key}`")]
    DuplicateKey {
        /// The repeated key.
        key: &'static str,
    },
    /// A value that is out of range or malformed.
    #[error("holder record has an invalid `{key}` value")]
    BadValue {
        /// The key whose value was rejected.
        key: &'static str,
    },
    /// The required `pid` key is missing.
    #[error("holder record has no pid")]
    MissingPid,
}

impl LockHolder {
    /// A record describing the calling process, as the winner writes it.
    pub(crate) fn for_current_process() -> Self {
        let pid = rustix::process::getpid().as_raw_nonzero().get();
        let pid = u32::try_from(pid).unwrap_or(0);
        let argv0 = std::env::current_exe()
            .ok()
            .map(|p| p.to_string_lossy().into_owned())
            .or_else(|| {
                std::env::args_os()
                    .next()
                    .map(|a| a.to_string_lossy().into_owned())
            })
            .map(|s| sanitize_text(&s));
        let host = sanitize_text(&rustix::system::uname().nodename().to_string_lossy());
        LockHolder {
            pid,
            start_time: read_start_time(Path::new("/proc/self/stat")),
            boot_id: read_boot_id(),
            host: (!host.is_empty()).then_some(host),
            uid: Some(rustix::process::geteuid().as_raw()),
            argv0: argv0.filter(|s| !s.is_empty()),
            since_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .ok()
                .map(|d| d.as_secs()),
            verification: Verification::Verified,
        }
    }

    /// A record with only a pid; the parser fills in the rest.
    pub(crate) fn bare(pid: u32) -> Self {
        LockHolder {
            pid,
            start_time: None,
            boot_id: None,
            host: None,
            uid: None,
            argv0: None,
            since_unix: None,
            verification: Verification::Unverifiable,
        }
    }

    /// Serializes the record (always parseable by [`parse_record`], at most [`MAX_RECORD_LEN`]).
    pub(crate) fn to_record(&self) -> String {
        let mut out = String::with_capacity(256);
        out.push_str(HEADER);
        out.push('\n');
        push_kv(&mut out, "pid", &self.pid.to_string());
        if let Some(v) = self.start_time {
            push_kv(&mut out, "start_time", &v.to_string());
        }
        if let Some(v) = self.boot_id.as_deref().filter(|b| valid_boot_id(b)) {
            push_kv(&mut out, "boot_id", v);
        }
        if let Some(v) = &self.host {
            push_kv(&mut out, "host", &sanitize_text(v));
        }
        if let Some(v) = self.uid {
            push_kv(&mut out, "uid", &v.to_string());
        }
        if let Some(v) = &self.argv0 {
            push_kv(&mut out, "argv0", &sanitize_text(v));
        }
        if let Some(v) = self.since_unix {
            push_kv(&mut out, "since", &v.to_string());
        }
        out.push_str(TRAILER);
        out.push('\n');
        out
    }
}

fn push_kv(out: &mut String, key: &str, value: &str) {
    if value.is_empty() {
        return;
    }
    out.push_str(key);
    out.push('=');
    out.push_str(value);
    out.push('\n');
}

/// Replaces control characters and shortens to [`MAX_TEXT_LEN`] bytes on a char boundary.
fn sanitize_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_TEXT_LEN));
    for c in s.chars() {
        let c = if c.is_control() { '?' } else { c };
        if out.len() + c.len_utf8() > MAX_TEXT_LEN {
            break;
        }
        out.push(c);
    }
    out
}

/// Parses a holder record strictly. The result's `verification` is
/// [`Verification::Unverifiable`]; call [`verify`] to check it against the system.
pub fn parse_record(bytes: &[u8]) -> Result<LockHolder, RecordError> {
    if bytes.len() > MAX_RECORD_LEN {
        return Err(RecordError::TooLarge);
    }
    if bytes.is_empty() {
        return Err(RecordError::Empty);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| RecordError::NotUtf8)?;
    // Every line, the last one included, ends in '\n'.
    let Some(body) = text.strip_suffix('\n') else {
        return Err(RecordError::Truncated);
    };
    let mut lines = body.split('\n');
    if lines.next() != Some(HEADER) {
        return Err(RecordError::BadHeader);
    }
    let mut holder = LockHolder::bare(0);
    let mut pid = None;
    let mut seen_end = false;
    for (index, line) in lines.enumerate() {
        let line_no = index + 2;
        if seen_end {
            return Err(RecordError::TrailingData);
        }
        if line == TRAILER {
            seen_end = true;
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or(RecordError::BadLine { line: line_no })?;
        match key {
            "pid" => {
                let v = parse_decimal(value, "pid")?;
                let v = u32::try_from(v)
                    .ok()
                    .filter(|&p| p >= 1 && p <= i32::MAX as u32)
                    .ok_or(RecordError::BadValue { key: "pid" })?;
                set_once(&mut pid, v, "pid")?;
            }
            "start_time" => set_once(
                &mut holder.start_time,
                parse_decimal(value, "start_time")?,
                "start_time",
            )?,
            "boot_id" => {
                if !valid_boot_id(value) {
                    return Err(RecordError::BadValue { key: "boot_id" });
                }
                set_once(&mut holder.boot_id, value.to_owned(), "boot_id")?
            }
            "host" => set_once(&mut holder.host, parse_text(value, "host")?, "host")?,
            "uid" => {
                let v = u32::try_from(parse_decimal(value, "uid")?)
                    .map_err(|_| RecordError::BadValue { key: "uid" })?;
                set_once(&mut holder.uid, v, "uid")?
            }
            "argv0" => set_once(&mut holder.argv0, parse_text(value, "argv0")?, "argv0")?,
            "since" => set_once(
                &mut holder.since_unix,
                parse_decimal(value, "since")?,
                "since",
            )?,
            _ => return Err(RecordError::UnknownKey { line: line_no }),
        }
    }
    if !seen_end {
        return Err(RecordError::Truncated);
    }
    holder.pid = pid.ok_or(RecordError::MissingPid)?;
    Ok(holder)
}

fn set_once<T>(slot: &mut Option<T>, value: T, key: &'static str) -> Result<(), RecordError> {
    if slot.is_some() {
        return Err(RecordError::DuplicateKey { key });
    }
    *slot = Some(value);
    Ok(())
}

/// Plain decimal digits only: no sign, no spaces, no leading zeros (except "0"), at most 20 digits.
fn parse_decimal(value: &str, key: &'static str) -> Result<u64, RecordError> {
    let bad = RecordError::BadValue { key };
    if value.is_empty()
        || value.len() > 20
        || !value.bytes().all(|b| b.is_ascii_digit())
        || (value.len() > 1 && value.starts_with('0'))
    {
        return Err(bad);
    }
    value.parse().map_err(|_| bad)
}

fn parse_text(value: &str, key: &'static str) -> Result<String, RecordError> {
    if value.is_empty() || value.len() > MAX_TEXT_LEN || value.chars().any(char::is_control) {
        return Err(RecordError::BadValue { key });
    }
    Ok(value.to_owned())
}

fn valid_boot_id(value: &str) -> bool {
    value.len() == 36
        && value.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
        })
}

/// Reads this kernel's boot id.
pub(crate) fn read_boot_id() -> Option<String> {
    let raw = read_small("/proc/sys/kernel/random/boot_id".as_ref(), 64)?;
    let id = std::str::from_utf8(&raw).ok()?.trim_end_matches('\n');
    valid_boot_id(id).then(|| id.to_owned())
}

/// Reads field 22 (starttime) of a `/proc/<pid>/stat` file.
fn read_start_time(stat_path: &Path) -> Option<u64> {
    let raw = read_small(stat_path, 4096)?;
    parse_stat_start_time(&raw)
}

/// Field 22 of `/proc/<pid>/stat`. The command name (field 2) is in parentheses and may itself
/// contain spaces and parentheses, so fields are counted after the *last* `)`.
fn parse_stat_start_time(raw: &[u8]) -> Option<u64> {
    let close = raw.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(raw.get(close + 1..)?).ok()?;
    // rest starts with " <field 3> <field 4> ...": field 22 is the 20th item.
    rest.split_ascii_whitespace().nth(19)?.parse().ok()
}

/// The `Tgid:` line of a `/proc/<pid>/status` file.
fn read_tgid(status_path: &Path) -> Option<u32> {
    let raw = read_small(status_path, 16 * 1024)?;
    let text = std::str::from_utf8(&raw).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("Tgid:"))?
        .trim()
        .parse()
        .ok()
}

fn read_small(path: &Path, limit: u64) -> Option<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path).ok()?;
    let mut buf = Vec::new();
    file.take(limit).read_to_end(&mut buf).ok()?;
    Some(buf)
}

/// Checks a parsed record against the running system and sets `verification`.
///
/// `Verified` needs all of: the record's boot id (when present) is this boot's; its host (when
/// present) is this host; a recorded start time; `/proc/<pid>` exists with exactly that start
/// time; and the recorded uid (when present) owns that process.
pub fn verify(holder: &mut LockHolder) {
    holder.verification = check(holder);
}

fn check(holder: &LockHolder) -> Verification {
    if let (Some(theirs), Some(ours)) = (holder.boot_id.as_deref(), read_boot_id())
        && theirs != ours
    {
        return Verification::OtherBoot;
    }
    if let Some(host) = &holder.host {
        let ours = sanitize_text(&rustix::system::uname().nodename().to_string_lossy());
        if *host != ours {
            return Verification::Unverifiable;
        }
    }
    let proc_dir = Path::new("/proc").join(holder.pid.to_string());
    let meta = match std::fs::metadata(&proc_dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Only conclusive if /proc is really mounted here.
            return if Path::new("/proc/self/stat").exists() {
                Verification::NotRunning
            } else {
                Verification::Unverifiable
            };
        }
        Err(_) => return Verification::Unverifiable,
    };
    let Some(recorded) = holder.start_time else {
        return Verification::Unverifiable;
    };
    let Some(actual) = read_start_time(&proc_dir.join("stat")) else {
        // Raced with its exit, or hidden from us.
        return if proc_dir.exists() {
            Verification::Unverifiable
        } else {
            Verification::NotRunning
        };
    };
    if actual != recorded {
        return Verification::PidReused;
    }
    // `/proc/<tid>` of a thread is reachable too: the pid must be a thread group leader.
    if read_tgid(&proc_dir.join("status")) != Some(holder.pid) {
        return Verification::PidReused;
    }
    if let Some(uid) = holder.uid {
        use std::os::unix::fs::MetadataExt;
        if meta.uid() != uid {
            return Verification::PidReused;
        }
    }
    Verification::Verified
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the epoch (proleptic Gregorian, UTC).
pub(crate) fn format_rfc3339(unix: u64) -> String {
    let days = unix / 86_400;
    let secs = unix % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Days since 1970-01-01 to (year, month, day); Howard Hinnant's algorithm for non-negative days.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> LockHolder {
        LockHolder {
            pid: 1234,
            start_time: Some(987_654),
            boot_id: Some("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0".into()),
            host: Some("node-a".into()),
            uid: Some(1000),
            argv0: Some("/usr/bin/manager".into()),
            since_unix: Some(1_795_446_000),
            verification: Verification::Unverifiable,
        }
    }

    #[test]
    fn round_trip() {
        let h = sample();
        let rec = h.to_record();
        assert!(rec.len() <= MAX_RECORD_LEN);
        assert_eq!(parse_record(rec.as_bytes()), Ok(h));
    }

    #[test]
    fn display_names_pid_command_host_since_and_verification() {
        let mut h = sample();
        h.verification = Verification::Verified;
        assert_eq!(
            h.to_string(),
            "pid 1234 (/usr/bin/manager) on node-a, since 2026-11-23T15:00:00Z, verified"
        );
    }

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn strictness() {
        let ok = "singleton-lock-holder 1\npid=5\nend\n";
        assert_eq!(parse_record(ok.as_bytes()).map(|h| h.pid), Ok(5));
        let cases: &[(&str, RecordError)] = &[
            ("", RecordError::Empty),
            (
                "singleton-lock-holder 1\npid=5\nend",
                RecordError::Truncated,
            ),
            ("singleton-lock-holder 1\npid=5\n", RecordError::Truncated),
            (
                "singleton-lock-holder 2\npid=5\nend\n",
                RecordError::BadHeader,
            ),
            (
                "singleton-lock-holder 1\npid=5\nend\nx\n",
                RecordError::TrailingData,
            ),
            (
                "singleton-lock-holder 1\npid=5\npid=6\nend\n",
                RecordError::DuplicateKey { key: "pid" },
            ),
            (
                "singleton-lock-holder 1\npid=+5\nend\n",
                RecordError::BadValue { key: "pid" },
            ),
            (
                "singleton-lock-holder 1\npid=05\nend\n",
                RecordError::BadValue { key: "pid" },
            ),
            (
                "singleton-lock-holder 1\npid=0\nend\n",
                RecordError::BadValue { key: "pid" },
            ),
            (
                "singleton-lock-holder 1\npid=4294967296\nend\n",
                RecordError::BadValue { key: "pid" },
            ),
            (
                "singleton-lock-holder 1\npid= 5\nend\n",
                RecordError::BadValue { key: "pid" },
            ),
            (
                "singleton-lock-holder 1\npid=5\nfoo=1\nend\n",
                RecordError::UnknownKey { line: 3 },
            ),
            (
                "singleton-lock-holder 1\npid=5\nfoo\nend\n",
                RecordError::BadLine { line: 3 },
            ),
            (
                "singleton-lock-holder 1\nhost=a\nend\n",
                RecordError::MissingPid,
            ),
            (
                "singleton-lock-holder 1\npid=5\nhost=a\tb\nend\n",
                RecordError::BadValue { key: "host" },
            ),
            (
                "singleton-lock-holder 1\npid=5\nboot_id=xyz\nend\n",
                RecordError::BadValue { key: "boot_id" },
            ),
            (
                "singleton-lock-holder 1\r\npid=5\nend\n",
                RecordError::BadHeader,
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                parse_record(input.as_bytes()).as_ref(),
                Err(want),
                "input {input:?}"
            );
        }
        assert_eq!(parse_record(&[0xff, b'\n']), Err(RecordError::NotUtf8));
        let big = vec![b'a'; MAX_RECORD_LEN + 1];
        assert_eq!(parse_record(&big), Err(RecordError::TooLarge));
    }

    #[test]
    fn stat_start_time_handles_hostile_comm() {
        let stat = b"42 (a) b) (c) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 123456 20\n";
        assert_eq!(parse_stat_start_time(stat), Some(123_456));
        assert_eq!(parse_stat_start_time(b"42 (x"), None);
        assert_eq!(parse_stat_start_time(b"42 (x) S 1"), None);
    }

    #[test]
    fn own_record_verifies_and_tampered_ones_do_not() {
        let mut me = LockHolder::for_current_process();
        assert!(
            me.start_time.is_some(),
            "/proc/self/stat must give a start time"
        );
        let mut parsed = parse_record(me.to_record().as_bytes()).expect("own record parses");
        verify(&mut parsed);
        assert_eq!(parsed.verification, Verification::Verified);

        me.start_time = me.start_time.map(|t| t + 1);
        verify(&mut me);
        assert_eq!(me.verification, Verification::PidReused);

        let mut other_boot = LockHolder::for_current_process();
        other_boot.boot_id = Some("00000000-0000-0000-0000-000000000000".into());
        verify(&mut other_boot);
        assert_eq!(other_boot.verification, Verification::OtherBoot);

        let mut no_start = LockHolder::for_current_process();
        no_start.start_time = None;
        verify(&mut no_start);
        assert_eq!(no_start.verification, Verification::Unverifiable);

        let mut other_host = LockHolder::for_current_process();
        other_host.host = Some("surely-not-this-host.invalid".into());
        verify(&mut other_host);
        assert_eq!(other_host.verification, Verification::Unverifiable);

        let mut dead = LockHolder::for_current_process();
        dead.pid = i32::MAX as u32; // above any pid_max
        verify(&mut dead);
        assert_eq!(dead.verification, Verification::NotRunning);
    }

    fn valid_record_bytes() -> Vec<u8> {
        LockHolder::for_current_process().to_record().into_bytes()
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..6000)) {
            if let Ok(mut h) = parse_record(&bytes) {
                // A record that parses must re-serialize to something that parses the same way.
                let again = parse_record(h.to_record().as_bytes());
                prop_assert_eq!(again.as_ref(), Ok(&h));
                verify(&mut h);
            }
        }

        #[test]
        fn every_truncation_is_rejected(cut in 0usize..4096) {
            let full = valid_record_bytes();
            let cut = cut % full.len();
            prop_assert!(parse_record(&full[..cut]).is_err());
        }

        #[test]
        fn single_byte_corruption_never_verifies(pos in 0usize..4096, byte in any::<u8>()) {
            let mut bytes = valid_record_bytes();
            let pos = pos % bytes.len();
            let original = bytes[pos];
            prop_assume!(byte != original);
            bytes[pos] = byte;
            if let Ok(mut h) = parse_record(&bytes) {
                verify(&mut h);
                // Only a change that leaves pid, start time, uid, boot id and host intact may
                // still verify (e.g. a changed argv0 or since): the identity fields decide.
                let me = LockHolder::for_current_process();
                if h.verification == Verification::Verified {
                    prop_assert_eq!(h.pid, me.pid);
                    prop_assert_eq!(h.start_time, me.start_time);
                    prop_assert!(h.uid.is_none() || h.uid == me.uid);
                }
            }
        }

        #[test]
        fn hostile_lines_never_panic(lines in proptest::collection::vec("[a-z_]{0,12}=?[ -~\t\r]{0,40}", 0..20)) {
            let mut text = String::from("singleton-lock-holder 1\n");
            for l in &lines {
                text.push_str(l);
                text.push('\n');
            }
            text.push_str("end\n");
            if let Ok(h) = parse_record(text.as_bytes()) {
                prop_assert!(h.pid >= 1);
                prop_assert_eq!(h.verification, Verification::Unverifiable);
            }
        }

        #[test]
        fn oversized_text_is_rejected(len in (MAX_TEXT_LEN + 1)..3000) {
            let text = format!("singleton-lock-holder 1\npid=5\nargv0={}\nend\n", "x".repeat(len));
            prop_assert_eq!(parse_record(text.as_bytes()), Err(RecordError::BadValue { key: "argv0" }));
        }
    }
}
