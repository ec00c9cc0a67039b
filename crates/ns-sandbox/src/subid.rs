//! Subordinate id ranges: `/etc/subuid` and `/etc/subgid` (`owner:start:count`), and the
//! setuid helpers `newuidmap` / `newgidmap` that map them for an unprivileged caller.
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Largest `/etc/subuid` or `/etc/subgid` accepted (real ones are a few KiB).
pub(crate) const MAX_FILE_BYTES: u64 = 1 << 20;

/// Where the setuid helpers are looked for (a fixed list, not the caller's `PATH`).
const HELPER_DIRS: [&str; 4] = ["/usr/bin", "/bin", "/usr/sbin", "/sbin"];

/// Which kind of id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Uid,
    Gid,
}

impl Kind {
    pub(crate) fn file(self) -> &'static str {
        match self {
            Kind::Uid => "/etc/subuid",
            Kind::Gid => "/etc/subgid",
        }
    }
    pub(crate) fn helper(self) -> &'static str {
        match self {
            Kind::Uid => "newuidmap",
            Kind::Gid => "newgidmap",
        }
    }
}

/// One line of a subordinate id file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// User name or decimal uid.
    pub owner: String,
    /// First host id of the range.
    pub start: u32,
    /// Number of ids (at least 1; `start + count` stays within 32 bits).
    pub count: u32,
}

/// Why a subordinate id file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum ParseError {
    /// The file is larger than [`MAX_FILE_BYTES`].
    #[error("larger than {max} bytes")]
    TooLarge {
        /// The bound.
        max: u64,
    },
    /// One line is malformed.
    #[error("line {line}: {reason}: {text:?}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: &'static str,
        /// The line (cut to 80 bytes).
        text: String,
    },
}

/// Parses a whole file strictly: every line that is not empty or a `#` comment must be
/// `owner:start:count` with a non-empty owner (no whitespace or control characters), decimal
/// `start` and `count`, `count >= 1`, and `start + count <= 2^32`.
pub(crate) fn parse(data: &[u8]) -> Result<Vec<Entry>, ParseError> {
    if data.len() as u64 > MAX_FILE_BYTES {
        return Err(ParseError::TooLarge {
            max: MAX_FILE_BYTES,
        });
    }
    let mut out = Vec::new();
    for (i, raw) in data.split(|&b| b == b'\n').enumerate() {
        let bad = |reason: &'static str| ParseError::Line {
            line: i + 1,
            reason,
            text: String::from_utf8_lossy(&raw[..raw.len().min(80)]).into_owned(),
        };
        if raw.is_empty() || raw.first() == Some(&b'#') {
            continue;
        }
        let line = std::str::from_utf8(raw).map_err(|_| bad("not UTF-8"))?;
        let fields: Vec<&str> = line.split(':').collect();
        let [owner, start, count] = fields[..] else {
            return Err(bad("expected owner:start:count"));
        };
        if owner.is_empty() {
            return Err(bad("empty owner"));
        }
        if owner.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("owner contains whitespace or a control character"));
        }
        let number = |s: &str, what: &'static str| -> Result<u64, ParseError> {
            if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad(what));
            }
            s.parse::<u64>().map_err(|_| bad(what))
        };
        let start = number(start, "start is not a decimal number below 2^32")?;
        let count = number(count, "count is not a decimal number below 2^32")?;
        if count == 0 {
            return Err(bad("count is 0"));
        }
        if start + count > 1 << 32 {
            return Err(bad("start + count exceeds 2^32"));
        }
        let (Ok(start), Ok(count)) = (u32::try_from(start), u32::try_from(count)) else {
            return Err(bad("start or count exceeds 32 bits"));
        };
        out.push(Entry {
            owner: owner.to_owned(),
            start,
            count,
        });
    }
    Ok(out)
}

/// The first range granted to the user, by name first, then by decimal uid (what shadow's
/// `newuidmap` also accepts).
pub(crate) fn lookup<'a>(entries: &'a [Entry], name: Option<&str>, uid: u32) -> Option<&'a Entry> {
    let by_uid = uid.to_string();
    name.and_then(|n| entries.iter().find(|e| e.owner == n))
        .or_else(|| entries.iter().find(|e| e.owner == by_uid))
}

/// A usable grant: host ids `start..start + count` become ids `1..=count` inside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Grant {
    pub start: u32,
    pub count: u32,
    pub helper: PathBuf,
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "1 {} {}", self.start, self.count)
    }
}

/// What was found for one kind of id.
#[derive(Debug)]
pub(crate) enum Found {
    /// A range to map with the helper.
    Grant(Grant),
    /// No range (file absent, no entry, helper absent): why.
    Nothing(String),
}

/// Checks a granted range against the caller's own id: it must not contain host id 0 (the
/// sandbox never maps host root) nor the caller's own id (the kernel refuses overlapping
/// ranges, and it is already mapped to 0).
pub(crate) fn check_range(e: &Entry, own: u32) -> Result<(), &'static str> {
    let end = u64::from(e.start) + u64::from(e.count);
    if e.start == 0 {
        return Err("the range contains host id 0");
    }
    if (u64::from(e.start)..end).contains(&u64::from(own)) {
        return Err("the range contains the caller's own id");
    }
    // Inside the range is 1..=count; (uid_t)-1 is not a valid id.
    if e.count == u32::MAX {
        return Err("the range is too large");
    }
    Ok(())
}

/// Reads `path` with the size bound; `Ok(None)` when it does not exist.
pub(crate) fn read_bounded(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut data = Vec::new();
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut data)?;
    Ok(Some(data))
}

/// The helper's path, if installed in one of the fixed directories.
pub(crate) fn helper_path(kind: Kind) -> Option<PathBuf> {
    HELPER_DIRS
        .iter()
        .map(|d| Path::new(d).join(kind.helper()))
        .find(|p| p.is_file())
}

/// Looks up the caller's range of `kind`. `Err` carries the step and the reason when the
/// file exists but cannot be used (unreadable, too large, malformed, a dangerous range).
pub(crate) fn find(kind: Kind, name: Option<&str>, uid: u32, own: u32) -> Result<Found, String> {
    let path = Path::new(kind.file());
    let data = match read_bounded(path) {
        Ok(Some(d)) => d,
        Ok(None) => return Ok(Found::Nothing(format!("no {}", kind.file()))),
        Err(e) => return Err(format!("read {}: {e}", kind.file())),
    };
    let entries = parse(&data).map_err(|e| format!("{}: {e}", kind.file()))?;
    let who = match name {
        Some(n) => format!("{n} (uid {uid})"),
        None => format!("uid {uid}"),
    };
    let Some(e) = lookup(&entries, name, uid) else {
        return Ok(Found::Nothing(format!(
            "{} grants no range to {who}",
            kind.file()
        )));
    };
    check_range(e, own).map_err(|why| {
        format!(
            "{}: range {}:{} of {who}: {why}",
            kind.file(),
            e.start,
            e.count
        )
    })?;
    let Some(helper) = helper_path(kind) else {
        return Ok(Found::Nothing(format!(
            "{} grants a range to {who} but {} is not installed (Debian package uidmap)",
            kind.file(),
            kind.helper()
        )));
    };
    Ok(Found::Grant(Grant {
        start: e.start,
        count: e.count,
        helper,
    }))
}

/// Runs `helper PID 0 OWN 1 1 START COUNT`; `Err` is the helper's message.
pub(crate) fn run_helper(grant: &Grant, pid: u32, own: u32) -> Result<(), String> {
    let out = std::process::Command::new(&grant.helper)
        .args([
            pid.to_string(),
            "0".into(),
            own.to_string(),
            "1".into(),
            "1".into(),
            grant.start.to_string(),
            grant.count.to_string(),
        ])
        .env_clear()
        .env("LC_ALL", "C")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", grant.helper.display()))?;
    if out.status.success() {
        return Ok(());
    }
    let msg = String::from_utf8_lossy(&out.stderr);
    let msg: String = msg.trim().chars().take(500).collect();
    Err(format!(
        "{} ({})",
        if msg.is_empty() { "no message" } else { &msg },
        out.status
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn e(owner: &str, start: u32, count: u32) -> Entry {
        Entry {
            owner: owner.into(),
            start,
            count,
        }
    }

    #[test]
    fn parses_names_uids_comments_and_blank_lines() {
        let text = b"# comment\nalice:100000:65536\n\n65534:200000:65536\n";
        let v = parse(text).expect("valid");
        assert_eq!(v, [e("alice", 100000, 65536), e("65534", 200000, 65536)]);
        assert_eq!(lookup(&v, Some("alice"), 1000), Some(&v[0]));
        assert_eq!(lookup(&v, Some("nobody"), 65534), Some(&v[1]));
        assert_eq!(lookup(&v, None, 65534), Some(&v[1]));
        assert_eq!(lookup(&v, Some("bob"), 1001), None);
        // By name first, even when a uid line comes earlier.
        let v = parse(b"1000:300000:10\nalice:100000:5\n").expect("valid");
        assert_eq!(lookup(&v, Some("alice"), 1000), Some(&v[1]));
        assert_eq!(parse(b"").expect("empty"), []);
        assert_eq!(
            parse(b"x:4294967295:1").expect("last id"),
            [e("x", u32::MAX, 1)]
        );
    }

    #[test]
    fn refuses_malformed_lines_with_their_number() {
        for (text, reason) in [
            (&b"alice:1:2\nbob:1\n"[..], "expected owner:start:count"),
            (b"alice:1:2:3", "expected owner:start:count"),
            (b":1:2", "empty owner"),
            (
                b"al ice:1:2",
                "owner contains whitespace or a control character",
            ),
            (b"alice:-1:2", "start is not a decimal number below 2^32"),
            (b"alice:+1:2", "start is not a decimal number below 2^32"),
            (b"alice:1: 2", "count is not a decimal number below 2^32"),
            (
                b"alice:1:99999999999",
                "count is not a decimal number below 2^32",
            ),
            (b"alice:1:0", "count is 0"),
            (b"alice:4294967295:2", "start + count exceeds 2^32"),
            (b"alice:4294967296:1", "start + count exceeds 2^32"),
            (b"alice:1:2\r", "count is not a decimal number below 2^32"),
            (b"\xff:1:2", "not UTF-8"),
        ] {
            match parse(text) {
                Err(ParseError::Line {
                    reason: r, line, ..
                }) => {
                    assert_eq!(r, reason, "{text:?}");
                    assert_eq!(
                        line,
                        if text.starts_with(b"alice:1:2\n") {
                            2
                        } else {
                            1
                        }
                    );
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
        let big = vec![b'#'; MAX_FILE_BYTES as usize + 1];
        assert!(matches!(parse(&big), Err(ParseError::TooLarge { .. })));
    }

    #[test]
    fn dangerous_ranges_are_refused() {
        assert!(check_range(&e("a", 0, 10), 1000).is_err(), "host root");
        assert!(check_range(&e("a", 995, 10), 1000).is_err(), "own uid");
        assert!(check_range(&e("a", 1, u32::MAX), 0).is_err());
        assert!(check_range(&e("a", 1001, 10), 1000).is_ok());
        assert!(
            check_range(&e("a", 990, 10), 1000).is_ok(),
            "ends just below"
        );
    }

    proptest! {
        /// Hostile bytes never panic; whatever is accepted is a well-formed range.
        #[test]
        fn hostile_input_is_refused_or_well_formed(data in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(v) = parse(&data) {
                for e in v {
                    prop_assert!(!e.owner.is_empty());
                    prop_assert!(e.count >= 1);
                    prop_assert!(u64::from(e.start) + u64::from(e.count) <= 1 << 32);
                }
            }
        }

        /// Lines built from the grammar round-trip; breaking one field is an error on that line.
        #[test]
        fn grammar_round_trips(owner in "[a-z_][a-z0-9_-]{0,15}", start in 1u32..u32::MAX, count in 1u32..=65536, junk in "[ :a-z]{1,3}") {
            prop_assume!(u64::from(start) + u64::from(count) <= 1 << 32);
            let line = format!("{owner}:{start}:{count}\n");
            prop_assert_eq!(parse(line.as_bytes()), Ok(vec![e(&owner, start, count)]));
            let broken = format!("ok:1:1\n{owner}:{start}{junk}:{count}\n");
            let is_line_2_error = matches!(parse(broken.as_bytes()), Err(ParseError::Line { line: 2, .. }));
            prop_assert!(is_line_2_error);
        }
    }
}
