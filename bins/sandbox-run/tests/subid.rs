//! Subordinate id ranges for an unprivileged caller: `/etc/subuid` + `newuidmap`.
//!
//! Hermetic: the host's `/etc` is never edited. As root, each run gets a private mount
//! namespace (`unshare --mount --propagation private`) with an overlay on `/etc` in which
//! `/etc/subuid` and `/etc/subgid` are written; `sandbox-run` runs there as uid 65534 through
//! `setpriv` (`newuidmap` is setuid root and sees the overlay).
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

const NOBODY: u32 = 65534;
const GRANT_UID: &str = "65534:200000:65536\n";
const GRANT_GID: &str = "nobody:200000:65536\n";

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// Why this host cannot run the test, if it cannot.
fn unsupported() -> Option<String> {
    if !is_root() {
        return Some("not root: cannot switch to uid 65534 or mount an overlay on /etc".into());
    }
    for tool in ["/usr/bin/newuidmap", "/usr/bin/newgidmap"] {
        if !Path::new(tool).exists() {
            return Some(format!("{tool} missing (Debian package uidmap)"));
        }
    }
    for tool in ["setpriv", "unshare"] {
        let ok = Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            return Some(format!("{tool} missing (util-linux)"));
        }
    }
    None
}

/// A copy of the binary that uid 65534 can execute (the target dir may be private).
fn binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let tmp = std::env::temp_dir();
        if let Ok(rd) = std::fs::read_dir(&tmp) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(pid) = name.strip_prefix("sandbox-run-subid-")
                    && !Path::new(&format!("/proc/{pid}")).exists()
                {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let dir = tmp.join(format!("sandbox-run-subid-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("bin dir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let bin = dir.join("sandbox-run");
        std::fs::copy(env!("CARGO_BIN_EXE_sandbox-run"), &bin).expect("copy binary");
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        bin
    })
}

/// A directory owned by `uid` (the work dir, the report's directory).
fn dir_owned_by(uid: u32) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("sandbox-subid")
        .tempdir()
        .expect("tempdir");
    std::os::unix::fs::chown(dir.path(), Some(uid), Some(uid)).expect("chown");
    dir
}

/// Runs `sandbox-run ARGS` as uid 65534 (gid `gid`), with `/etc/subuid` and `/etc/subgid`
/// replaced by `grant` in a private mount namespace (`None`: the host's `/etc` as it is).
fn run(grant: Option<(&str, &str)>, gid: u32, args: &[&str]) -> Output {
    run_with_groups(grant, gid, "--clear-groups", args)
}

/// [`run`] with `setpriv`'s supplementary-groups option (`--clear-groups`, `--groups=…`).
fn run_with_groups(grant: Option<(&str, &str)>, gid: u32, groups: &str, args: &[&str]) -> Output {
    let overlay = tempfile::tempdir().expect("overlay dir");
    let (upper, scratch) = (overlay.path().join("upper"), overlay.path().join("work"));
    std::fs::create_dir_all(&upper).expect("upper");
    std::fs::create_dir_all(&scratch).expect("workdir");
    let mut c = Command::new("unshare");
    c.args(["--mount", "--propagation", "private", "sh", "-c"]);
    let script = match grant {
        Some(_) => {
            r#"mount -t overlay overlay -o "lowerdir=/etc,upperdir=$1,workdir=$2" /etc || exit 99
               printf '%s' "$3" > /etc/subuid && printf '%s' "$4" > /etc/subgid || exit 99
               shift 4; exec "$@""#
        }
        None => r#"shift 4; exec "$@""#,
    };
    let (subuid, subgid) = grant.unwrap_or(("", ""));
    c.arg(script).arg("sh");
    c.arg(&upper).arg(&scratch).arg(subuid).arg(subgid);
    c.arg("setpriv")
        .arg(format!("--reuid={NOBODY}"))
        .arg(format!("--regid={gid}"))
        .arg(groups)
        .arg(binary())
        .args(args)
        .stdin(Stdio::null());
    let out = c.output().expect("run unshare");
    assert_ne!(
        out.status.code(),
        Some(99),
        "overlay on /etc failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `/proc/self/*_map` lines with the column padding squeezed.
fn map_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

const PROBE: &str = "cat /proc/self/uid_map > /work/uid_map; cat /proc/self/gid_map > /work/gid_map; \
     cat /proc/self/setgroups > /work/setgroups; grep '^Groups:' /proc/self/status > /work/groups; \
     grep '^CapEff:' /proc/self/status > /work/capeff; stat -c %u:%g /work/y > /work/y_owner; \
     chown 1000 /work/x 2> /work/chown_err; echo $? > /work/chown_rc";

struct Probe {
    code: Option<i32>,
    stderr: String,
    report: serde_json::Value,
    read: Box<dyn Fn(&str) -> String>,
    x_uid: u32,
    _work: tempfile::TempDir,
}

/// Runs [`PROBE`] in a sandbox whose work dir holds `x` (owned by 65534) and `y` (owned by
/// host uid/gid 200999, i.e. 1000 inside when the range is mapped).
fn probe(grant: Option<(&str, &str)>, extra: &[&str]) -> Probe {
    probe_with_groups(grant, "--clear-groups", extra)
}

/// [`probe`] with `setpriv`'s supplementary-groups option.
fn probe_with_groups(grant: Option<(&str, &str)>, groups: &str, extra: &[&str]) -> Probe {
    let work = dir_owned_by(NOBODY);
    let rdir = dir_owned_by(NOBODY);
    for (name, id) in [("x", NOBODY), ("y", 200_999)] {
        let p = work.path().join(name);
        std::fs::write(&p, b"data").expect("write");
        std::os::unix::fs::chown(&p, Some(id), Some(id)).expect("chown");
    }
    let report = rdir.path().join("report.json");
    let (w, r) = (
        work.path().display().to_string(),
        report.display().to_string(),
    );
    let mut args = vec!["--profile", "shell", "--work", &w, "--report", &r];
    args.extend_from_slice(extra);
    args.extend(["--", "/bin/sh", "-c", PROBE]);
    let o = run_with_groups(grant, NOBODY, groups, &args);
    let report = std::fs::read_to_string(&report)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or(serde_json::Value::Null);
    let x_uid = std::fs::metadata(work.path().join("x"))
        .map(|m| m.uid())
        .unwrap_or(0);
    let dir = work.path().to_path_buf();
    Probe {
        code: o.status.code(),
        stderr: stderr(&o),
        report,
        read: Box::new(move |name| {
            let s = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
            s.trim().to_string()
        }),
        x_uid,
        _work: work,
    }
}

#[test]
fn a_granted_range_is_mapped_with_newuidmap() {
    if let Some(why) = unsupported() {
        eprintln!("skipped: {why}");
        return;
    }
    let p = probe(Some((GRANT_UID, GRANT_GID)), &[]);
    assert_eq!(p.code, Some(0), "{}", p.stderr);
    let both = ["0 65534 1", "1 200000 65536"];
    assert_eq!(map_lines(&(p.read)("uid_map")), both);
    assert_eq!(map_lines(&(p.read)("gid_map")), both);
    // newgidmap leaves setgroups allowed for a subgid grant: the init cleared the groups, and
    // the program has no capability to add any.
    assert_eq!((p.read)("setgroups"), "allow");
    assert_eq!((p.read)("groups"), "Groups:");
    assert_eq!((p.read)("capeff"), "CapEff:\t0000000000000000");
    // Host 200999 = 200000 + 999 is uid 1000 inside (without the range it is the overflow id).
    assert_eq!((p.read)("y_owner"), "1000:1000");
    // Every capability is dropped, CAP_CHOWN too: the program cannot give files away, even to
    // a mapped uid, and the host file keeps its owner.
    assert_eq!((p.read)("chown_rc"), "1", "{}", (p.read)("chown_err"));
    assert!(
        (p.read)("chown_err").contains("Operation not permitted"),
        "{}",
        (p.read)("chown_err")
    );
    assert_eq!(p.x_uid, NOBODY);
    assert_eq!(p.report["uid_map"], "0 65534 1\n1 200000 65536");
    assert_eq!(p.report["gid_map"], "0 65534 1\n1 200000 65536");
    let subid = p.report["subid"].as_str().unwrap_or_default();
    assert!(
        subid.contains("newuidmap") && subid.contains("newgidmap"),
        "{subid}"
    );
    let sg = p.report["setgroups"].as_str().unwrap_or_default();
    assert!(sg.starts_with("allow") && sg.contains("cleared"), "{sg}");
    assert_eq!(p.report["missing"], serde_json::json!([]));

    // A caller with supplementary groups: newgidmap leaves setgroups allowed, and the init
    // drops the groups before the program runs (with `deny` they would stay, unchangeable).
    let p = probe_with_groups(Some((GRANT_UID, GRANT_GID)), "--groups=4000,4001", &[]);
    assert_eq!(p.code, Some(0), "{}", p.stderr);
    assert_eq!((p.read)("setgroups"), "allow");
    assert_eq!((p.read)("groups"), "Groups:");
    let p = probe_with_groups(Some(("", "")), "--groups=4000,4001", &[]);
    assert_eq!(p.code, Some(0), "{}", p.stderr);
    assert_eq!((p.read)("setgroups"), "deny");
    assert_eq!(
        (p.read)("groups"),
        "Groups:\t65534 65534",
        "the caller's, unmapped"
    );
}

/// A grant (subuid, subgid), extra flags, what the report's `subid` says.
type Case<'a> = (Option<(&'a str, &'a str)>, &'a [&'a str], &'a str);

#[test]
fn without_a_grant_or_with_the_range_off_only_the_caller_is_mapped() {
    if let Some(why) = unsupported() {
        eprintln!("skipped: {why}");
        return;
    }
    let cases: [Case; 3] = [
        (Some(("", "")), &[], "grants no range"),
        (
            Some(("someone:300000:10\n", "someone:300000:10\n")),
            &[],
            "grants no range",
        ),
        (
            Some((GRANT_UID, GRANT_GID)),
            &["--no-subid-range"],
            "disabled",
        ),
    ];
    for (grant, extra, why) in cases {
        let p = probe(grant, extra);
        assert_eq!(p.code, Some(0), "{why}: {}", p.stderr);
        assert_eq!(map_lines(&(p.read)("uid_map")), ["0 65534 1"], "{why}");
        assert_eq!(map_lines(&(p.read)("gid_map")), ["0 65534 1"], "{why}");
        assert_eq!((p.read)("setgroups"), "deny", "{why}");
        assert_eq!(
            (p.read)("y_owner"),
            "65534:65534",
            "{why}: unmapped = overflow id"
        );
        assert_eq!(p.report["uid_map"], "0 65534 1", "{why}");
        let subid = p.report["subid"].as_str().unwrap_or_default();
        assert!(subid.contains(why), "{why}: {subid}");
    }
    // The host's /etc as it is (no file on this host, or whatever it grants): runs.
    let o = run(None, NOBODY, &["--", "/bin/true"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn a_failing_newuidmap_fails_closed_and_best_effort_maps_the_caller() {
    if let Some(why) = unsupported() {
        eprintln!("skipped: {why}");
        return;
    }
    // newuidmap refuses a caller whose real gid is not its passwd group (65534): gid 4321.
    let args = ["--report", "-", "--", "/bin/cat", "/proc/self/uid_map"];
    let o = run(Some((GRANT_UID, GRANT_GID)), 4321, &args);
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("user namespace: newuidmap "), "{err}");
    assert!(err.contains("1 200000 65536"), "{err}");
    assert!(err.contains("refused the /etc/subuid range"), "{err}");
    // Nothing ran: stdout holds only the report, which says so.
    let report: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("report json");
    assert_eq!(report["outcome"]["result"], "setup_failed", "{report}");

    let mut be = vec!["--best-effort"];
    be.extend(args);
    let o = run(Some((GRANT_UID, GRANT_GID)), 4321, &be);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert_eq!(map_lines(&out)[0], "0 65534 1");
    let json = &out[out.find('{').expect("report")..];
    let report: serde_json::Value = serde_json::from_str(json).expect("report json");
    assert_eq!(report["uid_map"], "0 65534 1");
    assert_eq!(report["gid_map"], "0 4321 1");
    let missing = report["missing"].to_string();
    assert!(
        missing.contains("user_namespace") && missing.contains("newuidmap"),
        "{missing}"
    );
}

#[test]
fn a_malformed_subuid_fails_closed_naming_the_line() {
    if let Some(why) = unsupported() {
        eprintln!("skipped: {why}");
        return;
    }
    let bad = "65534:200000:65536\nnobody:abc:1\n";
    let o = run(Some((bad, GRANT_GID)), NOBODY, &["--", "/bin/true"]);
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("user namespace: newuidmap range for /etc/subuid"),
        "{err}"
    );
    assert!(
        err.contains("line 2: start is not a decimal number"),
        "{err}"
    );
    // A range over host root is refused as well.
    let o = run(Some(("65534:0:100\n", "")), NOBODY, &["--", "/bin/true"]);
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    assert!(stderr(&o).contains("contains host id 0"), "{}", stderr(&o));
    // Best-effort runs with the caller's id only and says why.
    let o = run(
        Some((bad, GRANT_GID)),
        NOBODY,
        &["--best-effort", "--report", "-", "--", "/bin/true"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("report json");
    assert_eq!(report["uid_map"], "0 65534 1");
    assert_eq!(report["gid_map"], "0 65534 1\n1 200000 65536");
    assert!(report["missing"].to_string().contains("line 2"), "{report}");
}
