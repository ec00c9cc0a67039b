//! Parsers for every cgroup interface file and `/proc` file this crate reads.
//!
//! The kernel writes these files, but a parser must still not trust them: a mount could be
//! swapped, a file could be a FUSE imitation. Every parser is bounded, returns a typed error and
//! never panics (proptested below with hostile input).

use crate::error::ParseError;

/// Upper bound for one interface file (`memory.stat` is ~1.5 KiB; `cgroup.procs` of a workload
/// with thousands of processes stays well below this).
pub(crate) const MAX_CONTROL_FILE: usize = 256 * 1024;
/// Upper bound for `/proc/self/mountinfo` (hosts with thousands of mounts exist).
pub(crate) const MAX_MOUNTINFO: usize = 4 * 1024 * 1024;

fn check_len(text: &str, max: usize) -> Result<(), ParseError> {
    if text.len() > max {
        Err(ParseError::TooLarge { max })
    } else {
        Ok(())
    }
}

fn truncated(s: &str) -> String {
    s.chars().take(64).collect()
}

fn parse_u64_at(line: usize, token: &str) -> Result<u64, ParseError> {
    // `u64::from_str` accepts a leading '+', which the kernel never writes: refuse it.
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::BadNumber {
            line,
            value: truncated(token),
        });
    }
    token.parse().map_err(|_| ParseError::BadNumber {
        line,
        value: truncated(token),
    })
}

/// A flat-keyed file (`key value` per line): `memory.stat`, `memory.events`, `cpu.stat`,
/// `pids.events`, `memory.oom_control`, `cgroup.events`, `cpuacct.stat`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct FlatKeyed {
    entries: Vec<(String, u64)>,
}

impl FlatKeyed {
    /// The value of `key`, if present.
    pub(crate) fn get(&self, key: &str) -> Option<u64> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    /// The value of `key`, or a typed error.
    pub(crate) fn require(&self, key: &'static str) -> Result<u64, ParseError> {
        self.get(key).ok_or(ParseError::MissingKey { key })
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 128
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}

/// Parses a flat-keyed file: one `key value` pair per line, value an unsigned integer.
pub(crate) fn parse_flat_keyed(text: &str) -> Result<FlatKeyed, ParseError> {
    check_len(text, MAX_CONTROL_FILE)?;
    let mut entries: Vec<(String, u64)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let mut parts = raw.split_ascii_whitespace();
        let (Some(key), Some(value), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(ParseError::BadLine {
                line,
                reason: "expected exactly `key value`",
            });
        };
        if !valid_key(key) {
            return Err(ParseError::BadLine {
                line,
                reason: "key has characters outside [A-Za-z0-9_.-] or is too long",
            });
        }
        let value = parse_u64_at(line, value)?;
        if entries.iter().any(|(k, _)| k == key) {
            return Err(ParseError::DuplicateKey {
                line,
                key: truncated(key),
            });
        }
        entries.push((key.to_owned(), value));
    }
    Ok(FlatKeyed { entries })
}

/// Parses a single-value file: `pids.current`, `cpuacct.usage`, `memory.usage_in_bytes`,
/// `memory.max_usage_in_bytes`, `memory.current`, `memory.peak`.
pub(crate) fn parse_single_u64(text: &str) -> Result<u64, ParseError> {
    check_len(text, MAX_CONTROL_FILE)?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let Some(first) = lines.next() else {
        return Err(ParseError::Empty);
    };
    if lines.next().is_some() {
        return Err(ParseError::BadLine {
            line: 2,
            reason: "expected a single value",
        });
    }
    parse_u64_at(1, first.trim())
}

/// Parses a value that may be `max`: `pids.max`, `memory.max`, `memory.high`. `max` is `None`.
pub(crate) fn parse_max_or_u64(text: &str) -> Result<Option<u64>, ParseError> {
    check_len(text, MAX_CONTROL_FILE)?;
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(ParseError::Empty);
    }
    if trimmed == "max" {
        return Ok(None);
    }
    if trimmed.contains('\n') {
        return Err(ParseError::BadLine {
            line: 2,
            reason: "expected a single value",
        });
    }
    parse_u64_at(1, trimmed).map(Some)
}

/// v2 `cpu.max`: `$MAX $PERIOD`, `$MAX` being `max` or microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CpuMax {
    /// Microseconds per period, `None` for unlimited.
    pub(crate) quota_us: Option<u64>,
    /// Period in microseconds.
    pub(crate) period_us: u64,
}

/// Parses v2 `cpu.max`.
pub(crate) fn parse_cpu_max(text: &str) -> Result<CpuMax, ParseError> {
    check_len(text, MAX_CONTROL_FILE)?;
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(ParseError::Empty);
    }
    let mut parts = trimmed.split_ascii_whitespace();
    let (Some(quota), Some(period), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(ParseError::BadLine {
            line: 1,
            reason: "expected `$MAX $PERIOD`",
        });
    };
    let quota_us = if quota == "max" {
        None
    } else {
        Some(parse_u64_at(1, quota)?)
    };
    let period_us = parse_u64_at(1, period)?;
    Ok(CpuMax {
        quota_us,
        period_us,
    })
}

/// One line of `/proc/<pid>/cgroup`: `hierarchy-ID:controller-list:cgroup-path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProcCgroupEntry {
    /// Hierarchy id; 0 is the v2 unified hierarchy.
    pub(crate) hierarchy_id: u32,
    /// Controllers bound to the hierarchy (`name=systemd` included as is); empty for v2.
    pub(crate) controllers: Vec<String>,
    /// The cgroup path, relative to the hierarchy root (always starts with `/`).
    pub(crate) path: String,
}

/// Parses `/proc/<pid>/cgroup`.
pub(crate) fn parse_proc_cgroup(text: &str) -> Result<Vec<ProcCgroupEntry>, ParseError> {
    check_len(text, MAX_CONTROL_FILE)?;
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if raw.is_empty() {
            continue;
        }
        // The path is last and may itself contain ':'.
        let mut parts = raw.splitn(3, ':');
        let (Some(id), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(ParseError::BadLine {
                line,
                reason: "expected `id:controllers:path`",
            });
        };
        let id = parse_u64_at(line, id)?;
        let hierarchy_id = u32::try_from(id).map_err(|_| ParseError::BadNumber {
            line,
            value: id.to_string(),
        })?;
        if !path.starts_with('/') {
            return Err(ParseError::BadLine {
                line,
                reason: "cgroup path does not start with '/'",
            });
        }
        if path.bytes().any(|b| b.is_ascii_control()) {
            return Err(ParseError::BadLine {
                line,
                reason: "cgroup path contains control characters",
            });
        }
        let controllers = if ctrls.is_empty() {
            Vec::new()
        } else {
            ctrls.split(',').map(str::to_owned).collect()
        };
        out.push(ProcCgroupEntry {
            hierarchy_id,
            controllers,
            path: path.to_owned(),
        });
    }
    Ok(out)
}

/// Parses `cgroup.procs` / `tasks`: one pid per line.
pub(crate) fn parse_pid_list(text: &str) -> Result<Vec<u32>, ParseError> {
    check_len(text, MAX_CONTROL_FILE)?;
    let mut pids = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let token = raw.trim();
        if token.is_empty() {
            continue;
        }
        let value = parse_u64_at(i + 1, token)?;
        let pid = u32::try_from(value).map_err(|_| ParseError::BadNumber {
            line: i + 1,
            value: truncated(token),
        })?;
        pids.push(pid);
    }
    Ok(pids)
}

/// v1 `freezer.state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FreezerState {
    Thawed,
    Freezing,
    Frozen,
}

/// Parses v1 `freezer.state`.
pub(crate) fn parse_freezer_state(text: &str) -> Result<FreezerState, ParseError> {
    check_len(text, MAX_CONTROL_FILE)?;
    match text.trim() {
        "THAWED" => Ok(FreezerState::Thawed),
        "FREEZING" => Ok(FreezerState::Freezing),
        "FROZEN" => Ok(FreezerState::Frozen),
        "" => Err(ParseError::Empty),
        _ => Err(ParseError::BadLine {
            line: 1,
            reason: "expected THAWED, FREEZING or FROZEN",
        }),
    }
}

/// One cgroup mount from `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CgroupMountEntry {
    /// The root of the hierarchy that is visible at the mount point (field 4).
    pub(crate) root: String,
    /// Where it is mounted (field 5, octal escapes decoded).
    pub(crate) mount_point: String,
    /// `true` for cgroup2, `false` for v1 `cgroup`.
    pub(crate) v2: bool,
    /// Super options (v1: the controllers, e.g. `rw,memory`).
    pub(crate) super_options: Vec<String>,
}

/// Decodes mountinfo's `\ooo` octal escapes (space, tab, newline, backslash).
fn unescape_mountinfo(field: &str) -> Option<String> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            let digits = bytes.get(i + 1..i + 4)?;
            if !digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                return None;
            }
            let value = digits
                .iter()
                .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
            out.push(u8::try_from(value).ok()?);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Extracts the cgroup (v1 and v2) mounts from `/proc/self/mountinfo`. Lines of other
/// filesystems are skipped without being validated beyond their shape.
pub(crate) fn parse_mountinfo_cgroups(text: &str) -> Result<Vec<CgroupMountEntry>, ParseError> {
    check_len(text, MAX_MOUNTINFO)?;
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = raw.split(' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            return Err(ParseError::BadLine {
                line,
                reason: "no ` - ` separator",
            });
        };
        // The fs type, source and super options follow the separator.
        if sep < 6 || fields.len() < sep + 4 {
            return Err(ParseError::BadLine {
                line,
                reason: "too few fields",
            });
        }
        let fstype = fields[sep + 1];
        let v2 = match fstype {
            "cgroup2" => true,
            "cgroup" => false,
            _ => continue,
        };
        let (Some(root), Some(mount_point)) =
            (unescape_mountinfo(fields[3]), unescape_mountinfo(fields[4]))
        else {
            return Err(ParseError::BadLine {
                line,
                reason: "bad octal escape in root or mount point",
            });
        };
        if !root.starts_with('/') || !mount_point.starts_with('/') {
            return Err(ParseError::BadLine {
                line,
                reason: "root or mount point is not absolute",
            });
        }
        let super_options = fields[sep + 3].split(',').map(str::to_owned).collect();
        out.push(CgroupMountEntry {
            root,
            mount_point,
            v2,
            super_options,
        });
    }
    Ok(out)
}

/// Parses the space-separated controller list of v2 `cgroup.controllers` /
/// `cgroup.subtree_control`.
pub(crate) fn parse_controller_list(text: &str) -> Result<Vec<String>, ParseError> {
    check_len(text, MAX_CONTROL_FILE)?;
    let mut out = Vec::new();
    for name in text.split_ascii_whitespace() {
        if !name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') || name.len() > 32 {
            return Err(ParseError::BadLine {
                line: 1,
                reason: "controller name has characters outside [a-z_]",
            });
        }
        out.push(name.to_owned());
    }
    Ok(out)
}

/// Runs every parser on `text` (for the fuzz target); results are dropped.
pub(crate) fn fuzz_all(text: &str) {
    if let Ok(kv) = parse_flat_keyed(text) {
        let _ = kv.require("oom_kill");
    }
    let _ = parse_single_u64(text);
    let _ = parse_max_or_u64(text);
    let _ = parse_cpu_max(text);
    let _ = parse_proc_cgroup(text);
    let _ = parse_pid_list(text);
    let _ = parse_freezer_state(text);
    let _ = parse_mountinfo_cgroups(text);
    let _ = parse_controller_list(text);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn mountinfo_line_without_super_options_is_an_error_not_a_panic() {
        // Found by the cgroup_files fuzz target: fs type and source, but no super options.
        let text = "31 23 0:28 / /sys/fs/cgroup rw,relatime - cgroup cgroup";
        assert!(matches!(
            parse_mountinfo_cgroups(text),
            Err(ParseError::BadLine { line: 1, .. })
        ));
    }

    #[test]
    fn real_v1_memory_oom_control() {
        let kv = parse_flat_keyed("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n").unwrap();
        assert_eq!(kv.get("oom_kill"), Some(3));
        assert_eq!(kv.get("under_oom"), Some(0));
    }

    #[test]
    fn real_v2_memory_events_and_cpu_stat() {
        let ev = parse_flat_keyed("low 0\nhigh 12\nmax 40\noom 2\noom_kill 1\noom_group_kill 0\n")
            .unwrap();
        assert_eq!(ev.require("oom_kill").unwrap(), 1);
        let st = parse_flat_keyed(
            "usage_usec 639037014\nuser_usec 560377946\nsystem_usec 78659068\nnice_usec 0\n",
        )
        .unwrap();
        assert_eq!(st.get("usage_usec"), Some(639_037_014));
        assert_eq!(
            st.require("throttled_usec"),
            Err(ParseError::MissingKey {
                key: "throttled_usec"
            })
        );
    }

    #[test]
    fn flat_keyed_refuses_garbage() {
        assert!(matches!(
            parse_flat_keyed("a 1 2\n"),
            Err(ParseError::BadLine { line: 1, .. })
        ));
        assert!(matches!(
            parse_flat_keyed("a -1\n"),
            Err(ParseError::BadNumber { .. })
        ));
        assert!(matches!(
            parse_flat_keyed("a +1\n"),
            Err(ParseError::BadNumber { .. })
        ));
        assert!(matches!(
            parse_flat_keyed("a 1\na 2\n"),
            Err(ParseError::DuplicateKey { line: 2, .. })
        ));
        assert!(matches!(
            parse_flat_keyed("a 99999999999999999999\n"),
            Err(ParseError::BadNumber { .. })
        ));
        let big = "a 1\n".repeat(MAX_CONTROL_FILE);
        assert_eq!(
            parse_flat_keyed(&big),
            Err(ParseError::TooLarge {
                max: MAX_CONTROL_FILE
            })
        );
    }

    #[test]
    fn single_and_max_values() {
        assert_eq!(parse_single_u64("24870912\n").unwrap(), 24_870_912);
        assert_eq!(parse_single_u64(""), Err(ParseError::Empty));
        assert!(parse_single_u64("1\n2\n").is_err());
        assert_eq!(parse_max_or_u64("max\n").unwrap(), None);
        assert_eq!(parse_max_or_u64("32\n").unwrap(), Some(32));
        assert!(parse_max_or_u64("maximum\n").is_err());
    }

    #[test]
    fn cpu_max_forms() {
        assert_eq!(
            parse_cpu_max("max 100000\n").unwrap(),
            CpuMax {
                quota_us: None,
                period_us: 100_000
            }
        );
        assert_eq!(
            parse_cpu_max("25000 100000\n").unwrap(),
            CpuMax {
                quota_us: Some(25_000),
                period_us: 100_000
            }
        );
        assert!(parse_cpu_max("25000\n").is_err());
        assert!(parse_cpu_max("max max\n").is_err());
    }

    #[test]
    fn proc_cgroup_hybrid_sample() {
        let text =
            "9:name=systemd:/\n4:memory:/process_api/5fa7\n2:cpuacct:/\n0::/\n1:cpu,cpuacct:/a:b\n";
        let entries = parse_proc_cgroup(text).unwrap();
        assert_eq!(entries.len(), 5);
        assert_eq!(entries[1].controllers, vec!["memory".to_owned()]);
        assert_eq!(entries[1].path, "/process_api/5fa7");
        assert!(entries[3].controllers.is_empty());
        assert_eq!(entries[3].hierarchy_id, 0);
        assert_eq!(entries[4].path, "/a:b");
        assert!(parse_proc_cgroup("x::/\n").is_err());
        assert!(parse_proc_cgroup("0::relative\n").is_err());
        assert!(parse_proc_cgroup("0:/\n").is_err());
    }

    #[test]
    fn mountinfo_sample() {
        let text = "\
30 23 0:26 / /sys/fs/cgroup ro,nosuid shared:9 - tmpfs tmpfs ro,mode=755\n\
35 30 0:31 / /sys/fs/cgroup/memory rw,relatime shared:14 - cgroup cgroup rw,memory\n\
36 30 0:32 / /sys/fs/cgroup/cpu,cpuacct rw shared:15 - cgroup cgroup rw,cpu,cpuacct\n\
37 30 0:33 /docker/ab /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw,nsdelegate\n\
38 30 0:34 / /mnt/with\\040space rw - cgroup cgroup rw,pids\n";
        let m = parse_mountinfo_cgroups(text).unwrap();
        assert_eq!(m.len(), 4);
        assert!(!m[0].v2);
        assert!(m[0].super_options.contains(&"memory".to_owned()));
        assert_eq!(m[1].mount_point, "/sys/fs/cgroup/cpu,cpuacct");
        assert!(m[2].v2);
        assert_eq!(m[2].root, "/docker/ab");
        assert_eq!(m[3].mount_point, "/mnt/with space");
        assert!(parse_mountinfo_cgroups("1 2 3\n").is_err());
        assert!(parse_mountinfo_cgroups("1 2 0:1 / /x\\09 rw - cgroup cgroup rw\n").is_err());
    }

    #[test]
    fn freezer_and_pids_and_controllers() {
        assert_eq!(
            parse_freezer_state("FROZEN\n").unwrap(),
            FreezerState::Frozen
        );
        assert_eq!(
            parse_freezer_state("FREEZING\n").unwrap(),
            FreezerState::Freezing
        );
        assert!(parse_freezer_state("frozen").is_err());
        assert_eq!(parse_pid_list("1\n22\n333\n").unwrap(), vec![1, 22, 333]);
        assert!(parse_pid_list("4294967296\n").is_err());
        assert_eq!(
            parse_controller_list("cpuset cpu io memory pids\n")
                .unwrap()
                .len(),
            5
        );
        assert!(parse_controller_list("memory ../x").is_err());
    }

    #[test]
    fn this_hosts_files_parse() {
        // Whatever this host has of the files the crate reads must parse; absent ones are
        // named so a reader sees what was not covered.
        let flat = [
            "/sys/fs/cgroup/memory/memory.stat",
            "/sys/fs/cgroup/memory/memory.oom_control",
            "/sys/fs/cgroup/cpuacct/cpuacct.stat",
            "/sys/fs/cgroup/unified/cpu.stat",
            "/sys/fs/cgroup/cpu.stat",
            "/sys/fs/cgroup/memory.stat",
        ];
        let mut seen = 0;
        for path in flat {
            match std::fs::read_to_string(path) {
                Ok(text) => {
                    let kv = parse_flat_keyed(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
                    assert!(kv.len() > 0, "{path}");
                    seen += 1;
                }
                Err(e) => println!("not on this host: {path}: {e}"),
            }
        }
        let single = [
            "/sys/fs/cgroup/cpuacct/cpuacct.usage",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ];
        for path in single {
            if let Ok(text) = std::fs::read_to_string(path) {
                parse_single_u64(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
                seen += 1;
            }
        }
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        assert!(!parse_proc_cgroup(&own).unwrap().is_empty());
        let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!parse_mountinfo_cgroups(&mi).unwrap().is_empty());
        let procs = std::fs::read_to_string("/sys/fs/cgroup/pids/cgroup.procs")
            .or_else(|_| std::fs::read_to_string("/sys/fs/cgroup/cgroup.procs"));
        if let Ok(procs) = procs {
            assert!(!parse_pid_list(&procs).unwrap().is_empty());
        }
        println!("{seen} interface files parsed");
    }

    fn key() -> impl Strategy<Value = String> {
        "[a-z_][a-z0-9_.]{0,20}"
    }

    proptest! {
        // Hostile input: none of the parsers may panic on any string.
        #[test]
        fn no_parser_panics(s in any::<String>()) {
            let _ = parse_flat_keyed(&s);
            let _ = parse_single_u64(&s);
            let _ = parse_max_or_u64(&s);
            let _ = parse_cpu_max(&s);
            let _ = parse_proc_cgroup(&s);
            let _ = parse_pid_list(&s);
            let _ = parse_freezer_state(&s);
            let _ = parse_mountinfo_cgroups(&s);
            let _ = parse_controller_list(&s);
        }

        // Structured hostile input: cgroup-file-like lines with random tokens.
        #[test]
        fn no_parser_panics_on_near_misses(
            lines in proptest::collection::vec("[a-z0-9_:,/ \\\\-]{0,40}", 0..20)
        ) {
            let s = lines.join("\n");
            let _ = parse_flat_keyed(&s);
            let _ = parse_proc_cgroup(&s);
            let _ = parse_mountinfo_cgroups(&s);
            let _ = parse_cpu_max(&s);
        }

        // memory.stat / memory.events / cpu.stat / pids.events / memory.oom_control round-trip.
        #[test]
        fn flat_keyed_round_trip(map in proptest::collection::btree_map(key(), any::<u64>(), 0..40)) {
            let text: String = map.iter().map(|(k, v)| format!("{k} {v}\n")).collect();
            let parsed = parse_flat_keyed(&text).unwrap();
            prop_assert_eq!(parsed.len(), map.len());
            for (k, v) in &map {
                prop_assert_eq!(parsed.get(k), Some(*v));
            }
        }

        // pids.current, cpuacct.usage, memory.usage_in_bytes, memory.peak.
        #[test]
        fn single_round_trip(v in any::<u64>()) {
            prop_assert_eq!(parse_single_u64(&format!("{v}\n")).unwrap(), v);
            prop_assert_eq!(parse_max_or_u64(&format!("{v}\n")).unwrap(), Some(v));
        }

        #[test]
        fn cpu_max_round_trip(q in proptest::option::of(any::<u64>()), p in any::<u64>()) {
            let text = match q { Some(q) => format!("{q} {p}\n"), None => format!("max {p}\n") };
            prop_assert_eq!(parse_cpu_max(&text).unwrap(), CpuMax { quota_us: q, period_us: p });
        }

        #[test]
        fn proc_cgroup_round_trip(
            id in 0u32..64,
            ctrls in proptest::collection::vec("[a-z]{1,8}", 0..4),
            path in "(/[a-zA-Z0-9_.:-]{1,12}){0,5}",
        ) {
            let path = if path.is_empty() { "/".to_owned() } else { path };
            let text = format!("{id}:{}:{path}\n", ctrls.join(","));
            let parsed = parse_proc_cgroup(&text).unwrap();
            prop_assert_eq!(parsed.len(), 1);
            prop_assert_eq!(parsed[0].hierarchy_id, id);
            prop_assert_eq!(&parsed[0].controllers, &ctrls);
            prop_assert_eq!(&parsed[0].path, &path);
        }

        #[test]
        fn pid_list_round_trip(pids in proptest::collection::vec(1u32..=4_194_304, 0..200)) {
            let text: String = pids.iter().map(|p| format!("{p}\n")).collect();
            prop_assert_eq!(parse_pid_list(&text).unwrap(), pids);
        }

        // Every split of fields around the ` - ` separator: an error or a parse, never a panic;
        // a cgroup line needs 6 fields before and 3 after.
        #[test]
        fn mountinfo_any_field_count(before in 0usize..10, after in 0usize..6) {
            let mut fields: Vec<String> = ["1", "2", "0:3", "/", "/sys/fs/cgroup/x", "rw", "shared:1", "x", "y", "z"]
                .iter().take(before).map(|s| (*s).to_owned()).collect();
            fields.push("-".to_owned());
            fields.extend(["cgroup", "cgroup", "rw,memory", "extra", "more"].iter().take(after).map(|s| (*s).to_owned()));
            let r = parse_mountinfo_cgroups(&fields.join(" "));
            prop_assert_eq!(r.is_ok(), before >= 6 && after >= 3);
        }

        #[test]
        fn mountinfo_round_trip(dir in "[a-z]{1,10}", ctrl in "(memory|cpu|pids|freezer)") {
            let text = format!("1 2 0:3 / /sys/fs/cgroup/{dir} rw shared:1 - cgroup cgroup rw,{ctrl}\n");
            let m = parse_mountinfo_cgroups(&text).unwrap();
            prop_assert_eq!(m.len(), 1);
            prop_assert_eq!(&m[0].mount_point, &format!("/sys/fs/cgroup/{dir}"));
            prop_assert!(m[0].super_options.contains(&ctrl));
        }
    }
}
