//! The escape suite: every attack from inside, asserted refused, as root and as uid 65534;
//! plus exit codes, the report, and strict vs best-effort. Runs the real binary on the real
//! kernel (CI runs as root).
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Who runs `sandbox-run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    /// The test's own user (root in CI).
    Caller,
    /// uid/gid 65534 via `setpriv`: the rootless path.
    Nobody,
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// A copy of the binary that uid 65534 can execute (the target dir may be private). It lives
/// in `/tmp/sandbox-run-bin-<pid>`; copies of test runs that are gone are removed first.
fn binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let tmp = std::env::temp_dir();
        if let Ok(rd) = std::fs::read_dir(&tmp) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(pid) = name.strip_prefix("sandbox-run-bin-")
                    && !Path::new(&format!("/proc/{pid}")).exists()
                {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let dir = tmp.join(format!("sandbox-run-bin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("bin dir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let bin = dir.join("sandbox-run");
        std::fs::copy(env!("CARGO_BIN_EXE_sandbox-run"), &bin).expect("copy binary");
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        bin
    })
}

/// Identities to test with: the caller, and uid 65534 when we can switch to it.
fn identities() -> Vec<Who> {
    if is_root() {
        vec![Who::Caller, Who::Nobody]
    } else {
        eprintln!(
            "not root: the uid 65534 (rootless) variants need root to switch uid; running as the caller only"
        );
        vec![Who::Caller]
    }
}

fn command(who: Who, args: &[&str]) -> Command {
    let mut c = match who {
        Who::Caller => Command::new(binary()),
        Who::Nobody => {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups"]);
            c.arg(binary());
            c
        }
    };
    c.args(args).stdin(Stdio::null());
    c
}

fn run(who: Who, args: &[&str]) -> Output {
    command(who, args).output().expect("run sandbox-run")
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A work dir owned by the uid the sandbox will map to.
fn work_dir(who: Who) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("sandbox-work")
        .tempdir()
        .expect("tempdir");
    let uid = match who {
        Who::Nobody => Some(65534),
        Who::Caller if is_root() => Some(4242),
        Who::Caller => None,
    };
    if let Some(uid) = uid {
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(uid)).expect("chown work dir");
    }
    dir
}

fn host_uid(who: Who) -> u32 {
    match who {
        Who::Nobody => 65534,
        Who::Caller if is_root() => 4242,
        Who::Caller => std::fs::metadata("/proc/self")
            .map(|m| m.uid())
            .unwrap_or(0),
    }
}

fn sh(who: Who, work: Option<&Path>, script: &str) -> Output {
    let mut args: Vec<String> = vec!["--profile".into(), "shell".into()];
    if let Some(w) = work {
        args.push("--work".into());
        args.push(w.display().to_string());
    }
    args.extend(["--".into(), "/bin/sh".into(), "-c".into(), script.into()]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    run(who, &refs)
}

/// Runs a Python probe under `--profile python`.
fn py(who: Who, work: Option<&Path>, script: &str) -> Output {
    let mut args: Vec<String> = vec!["--profile".into(), "python".into()];
    if let Some(w) = work {
        args.push("--work".into());
        args.push(w.display().to_string());
    }
    args.extend([
        "--".into(),
        "/usr/bin/python3".into(),
        "-c".into(),
        script.into(),
    ]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    run(who, &refs)
}

fn have_python() -> bool {
    let ok = Path::new("/usr/bin/python3").exists();
    if !ok {
        eprintln!("/usr/bin/python3 missing: python probes skipped");
    }
    ok
}

/// Pids of host processes whose command line contains `marker`.
fn processes_with(marker: &str) -> Vec<u32> {
    let mut found = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return found;
    };
    for e in rd.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        if let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline"))
            && String::from_utf8_lossy(&cmd).contains(marker)
        {
            found.push(pid);
        }
    }
    found
}

fn wait_gone(marker: &str) -> Vec<u32> {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let left = processes_with(marker);
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn exit_codes_are_the_documented_ones() {
    for who in identities() {
        assert_eq!(code(&run(who, &["--", "/bin/true"])), 0, "{who:?}");
        assert_eq!(code(&sh(who, None, "exit 3")), 3, "{who:?}");
        assert_eq!(code(&sh(who, None, "kill -TERM $$")), 128 + 15, "{who:?}");
        assert_eq!(code(&sh(who, None, "kill -KILL $$")), 128 + 9, "{who:?}");
        let nf = run(who, &["--", "no-such-program"]);
        assert_eq!(code(&nf), 127, "{who:?}: {}", stderr(&nf));
        assert!(stderr(&nf).contains("not found"), "{}", stderr(&nf));
        let work = work_dir(who);
        let f = work.path().join("not-exec");
        std::fs::write(&f, "#!/bin/sh\n").expect("write");
        std::os::unix::fs::chown(&f, Some(host_uid(who)), Some(host_uid(who))).ok();
        let ne = run(
            who,
            &[
                "--work",
                &work.path().display().to_string(),
                "--",
                "/work/not-exec",
            ],
        );
        assert_eq!(code(&ne), 126, "{who:?}: {}", stderr(&ne));
        // A missing bind source fails closed before anything runs.
        let bad = run(who, &["--ro", "/definitely/not/here", "--", "/bin/true"]);
        assert_eq!(code(&bad), 125, "{who:?}");
        assert!(stderr(&bad).contains("nothing was run"), "{}", stderr(&bad));
    }
}

#[test]
fn timeout_kills_everything_and_exits_124() {
    for who in identities() {
        let marker = format!("31.{}{}", std::process::id(), who as u8);
        let script = format!("sleep {marker} & sleep {marker} & sleep {marker}");
        let started = Instant::now();
        let o = run(
            who,
            &[
                "--profile",
                "shell",
                "--timeout",
                "500ms",
                "--",
                "/bin/sh",
                "-c",
                &script,
            ],
        );
        assert_eq!(code(&o), 124, "{who:?}: {}", stderr(&o));
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(wait_gone(&marker), Vec::<u32>::new(), "{who:?}: leftovers");
    }
}

#[test]
fn dies_with_its_parent() {
    for who in identities() {
        let marker = format!("32.{}{}", std::process::id(), who as u8);
        let mut child = command(who, &["--profile", "shell", "--", "/bin/sleep", &marker])
            .spawn()
            .expect("spawn");
        let deadline = Instant::now() + Duration::from_secs(5);
        // sandbox-run, its init and the program.
        while processes_with(&marker).len() < 3 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        // Kill sandbox-run itself (for Nobody, setpriv exec'd into it: same pid).
        child.kill().expect("kill");
        child.wait().expect("wait");
        assert_eq!(
            wait_gone(&marker),
            Vec::<u32>::new(),
            "{who:?}: orphan survived"
        );
    }
}

#[test]
fn identity_is_root_inside_and_unprivileged_outside() {
    for who in identities() {
        let work = work_dir(who);
        let o = sh(
            who,
            Some(work.path()),
            "id -u; id -g; cat /proc/self/uid_map; cat /proc/self/gid_map; cat /proc/self/setgroups; touch /work/made",
        );
        assert_eq!(code(&o), 0, "{who:?}: {}", stderr(&o));
        let out = stdout(&o);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "0");
        assert_eq!(lines[1], "0");
        let map: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(map, ["0", &host_uid(who).to_string(), "1"], "{who:?}");
        assert_ne!(map[1], "0", "never host root");
        let setgroups = lines[4];
        if who == Who::Nobody {
            assert_eq!(setgroups, "deny");
        }
        let made = std::fs::metadata(work.path().join("made")).expect("file made in /work");
        assert_eq!(made.uid(), host_uid(who), "{who:?}");
    }
}

#[test]
fn uts_hostname_and_pid_namespace() {
    for who in identities() {
        let o = sh(
            who,
            None,
            "hostname; echo $$; cat /proc/1/comm; ls /proc | grep -c '^[0-9]'",
        );
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        let out = stdout(&o);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "sandbox");
        assert_eq!(lines[1], "2", "the program is not PID 1");
        assert_ne!(lines[2], "sh", "PID 1 is the init, not the program");
        // init, sh, ls, grep: nothing of the host.
        let n: u32 = lines[3].trim().parse().expect("count");
        assert!(n <= 4, "{who:?}: {n} processes visible");
        let o = run(
            who,
            &[
                "--hostname",
                "box7",
                "--profile",
                "shell",
                "--",
                "/bin/hostname",
            ],
        );
        assert_eq!(stdout(&o).trim(), "box7");
    }
}

#[test]
fn host_paths_are_absent_and_writes_are_confined() {
    for who in identities() {
        let work = work_dir(who);
        let o = sh(
            who,
            Some(work.path()),
            r#"
            for p in /etc/shadow /root /home /var /run /sys /boot; do
              if [ -e "$p" ]; then echo "present $p"; fi
            done
            for p in /x /etc/x /usr/x /proc/x /dev/x /bin/x /proc/sys/kernel/hostname /proc/sysrq-trigger /proc/1/oom_score_adj; do
              if (echo pwned > "$p") 2>/dev/null; then echo "wrote $p"; fi
            done
            echo ok > /tmp/t && cat /tmp/t
            echo ok > /work/t && cat /work/t
            echo ok > /dev/null && echo devnull
            "#,
        );
        let out = stdout(&o);
        assert_eq!(code(&o), 0, "{who:?}: {}", stderr(&o));
        assert!(!out.contains("present"), "{who:?}: {out}");
        assert!(!out.contains("wrote"), "{who:?}: {out}");
        assert_eq!(out.matches("ok").count(), 2, "{out}");
        assert!(out.contains("devnull"));
    }
}

#[test]
fn landlock_denies_what_mount_flags_would_allow() {
    // The ramdisk root is a writable tmpfs: only Landlock stops writes outside /tmp there.
    let o = sh(
        Who::Caller,
        None,
        "mkdir /newdir 2>&1; touch /etc/new 2>&1; echo x > /tmp/ok && echo tmp-ok",
    );
    let out = stdout(&o);
    assert!(out.contains("tmp-ok"), "{out}");
    assert!(
        out.matches("Permission denied").count() >= 2,
        "landlock should refuse: {out}"
    );
}

#[test]
fn no_capabilities_no_new_privs_seccomp_on() {
    for who in identities() {
        let o = sh(
            who,
            None,
            "grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status",
        );
        let out = stdout(&o);
        for cap in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
            assert!(
                out.contains(&format!("{cap}:\t0000000000000000")),
                "{who:?} {cap}: {out}"
            );
        }
        assert!(out.contains("NoNewPrivs:\t1"), "{out}");
        assert!(out.contains("Seccomp:\t2"), "{out}");
    }
}

/// Each probe prints `name errno` (0 when the call succeeded).
const SECCOMP_PROBE: &str = r#"
import ctypes, os, errno
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def call(name, nr, *args):
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_ulong(a) for a in args])
    print(name, ctypes.get_errno() if r == -1 else 0, flush=True)
call("tiocsti", 16, 0, 0x5412, 0)
call("tiocsti_high_bits", 16, 0, 0xdead00005412, 0)
call("tioclinux", 16, 0, 0x541C, 0)
call("ptrace", 101, 0, 0, 0, 0)
call("keyctl", 250, 0, 0, 0, 0)
call("add_key", 248, 0, 0, 0, 0)
call("unshare_user", 272, 0x10000000)
call("unshare_ns", 272, 0x00020000)
call("setns", 308, 0, 0)
call("mount", 165, 0, 0, 0, 0, 0)
call("umount2", 166, 0, 0)
call("pivot_root", 155, 0, 0)
call("bpf", 321, 0, 0, 0)
call("perf_event_open", 298, 0, 0, 0, 0, 0)
call("userfaultfd", 323, 0)
call("io_uring_setup", 425, 1, 0)
call("kexec_load", 246, 0, 0, 0, 0)
call("init_module", 175, 0, 0, 0)
call("process_vm_readv", 310, 1, 0, 0, 0, 0, 0)
call("personality_norandom", 135, 0x0040000)
call("clone3", 435, 0, 0)
call("clone_newuser", 56, 0x10000000 | 17, 0, 0, 0, 0)
call("open_by_handle_at", 304, 0, 0, 0)
call("personality_query", 135, 0xffffffff)
"#;

#[test]
fn seccomp_refuses_escape_syscalls() {
    if !have_python() {
        return;
    }
    for who in identities() {
        let o = py(who, None, SECCOMP_PROBE);
        assert_eq!(code(&o), 0, "{who:?}: {}", stderr(&o));
        let out = stdout(&o);
        let result = |name: &str| -> i32 {
            out.lines()
                .find_map(|l| {
                    let (n, e) = l.split_once(' ')?;
                    (n == name).then(|| e.parse().ok())?
                })
                .unwrap_or_else(|| panic!("{name} missing in {out}"))
        };
        for name in [
            "tiocsti",
            "tiocsti_high_bits",
            "tioclinux",
            "ptrace",
            "keyctl",
            "add_key",
            "unshare_user",
            "unshare_ns",
            "setns",
            "mount",
            "umount2",
            "pivot_root",
            "bpf",
            "perf_event_open",
            "userfaultfd",
            "io_uring_setup",
            "kexec_load",
            "init_module",
            "process_vm_readv",
            "personality_norandom",
            "clone_newuser",
            "open_by_handle_at",
        ] {
            assert_eq!(
                result(name),
                libc::EPERM,
                "{who:?}: {name} not refused: {out}"
            );
        }
        assert_eq!(result("clone3"), libc::ENOSYS, "{out}");
        assert_eq!(result("personality_query"), 0, "{out}");
    }
}

#[test]
fn foreign_syscall_abi_is_killed() {
    if !have_python() {
        return;
    }
    // An x32 getpid (bit 30 set): the filter kills the process (SIGSYS = 31).
    let o = py(
        Who::Caller,
        None,
        "import ctypes; ctypes.CDLL(None).syscall(ctypes.c_long(0x40000000 | 39)); print('survived')",
    );
    assert_eq!(code(&o), 128 + 31, "{}", stdout(&o));
    assert!(!stdout(&o).contains("survived"));

    // An i386 getpid through `int 0x80` (AUDIT_ARCH_I386): killed as well, where the kernel
    // has IA-32 emulation at all (outside the sandbox it must work).
    let probe = "import ctypes, mmap\n\
        m = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)\n\
        m.write(b'\\xb8\\x14\\x00\\x00\\x00\\xcd\\x80\\xc3')\n\
        f = ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(m)))\n\
        print('i386 getpid', f(), flush=True)\n";
    let outside = Command::new("/usr/bin/python3")
        .args(["-c", probe])
        .output()
        .expect("python");
    if !outside.status.success() {
        eprintln!("no IA-32 emulation on this kernel: i386 probe skipped");
        return;
    }
    let o = py(Who::Caller, None, probe);
    assert_eq!(code(&o), 128 + 31, "{} {}", stdout(&o), stderr(&o));
    assert!(!stdout(&o).contains("i386 getpid"));
}

#[test]
fn init_is_not_reachable_cve_2019_5736() {
    for who in identities() {
        let o = sh(
            who,
            None,
            "cat /proc/1/exe > /dev/null 2>&1 && echo exe-readable; \
             readlink /proc/1/exe && echo exe-link; \
             cat /proc/1/environ > /dev/null 2>&1 && echo environ-readable; \
             cat /proc/1/maps 2>/dev/null | head -1 | grep -q . && echo maps-readable; \
             echo done",
        );
        let out = stdout(&o);
        assert!(out.contains("done"), "{who:?}: {}", stderr(&o));
        for leak in [
            "exe-readable",
            "exe-link",
            "environ-readable",
            "maps-readable",
        ] {
            assert!(!out.contains(leak), "{who:?}: {leak}: {out}");
        }
    }
}

#[test]
fn only_stdio_is_inherited() {
    for who in identities() {
        // fd 7 is open (and inheritable) in the shell that execs sandbox-run.
        let mut c = Command::new("/bin/sh");
        c.arg("-c");
        let prefix = match who {
            Who::Caller => String::new(),
            Who::Nobody => "setpriv --reuid=65534 --regid=65534 --clear-groups ".into(),
        };
        c.arg(format!(
            "exec 7</etc/hostname; exec {prefix}\"$0\" --profile shell -- /bin/ls /proc/self/fd"
        ));
        c.arg(binary());
        let o = c.output().expect("run");
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        let fds: Vec<String> = stdout(&o).split_whitespace().map(String::from).collect();
        // 0-2 and ls's own directory fd.
        assert!(fds.len() <= 4, "{who:?}: {fds:?}");
        assert!(!fds.contains(&"7".to_string()), "{who:?}: {fds:?}");
    }
}

#[test]
fn network_is_loopback_only_and_host_sockets_are_unreachable() {
    if !have_python() {
        return;
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
    let port = listener.local_addr().expect("addr").port();
    let name = format!("sandbox-test-{}", std::process::id());
    let abs_addr =
        <std::os::unix::net::SocketAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(
            name.as_bytes(),
        )
        .expect("abstract name");
    let _abs = std::os::unix::net::UnixListener::bind_addr(&abs_addr).expect("abstract listen");
    let probe = format!(
        r#"
import socket
print("ifaces", sorted(l.split(":")[0].strip() for l in open("/proc/net/dev").readlines()[2:]))
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(); p = s.getsockname()[1]
c = socket.create_connection(("127.0.0.1", p), timeout=2); print("loopback ok")
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=2); print("host tcp reached")
except OSError as e: print("host tcp refused", e.errno)
u = socket.socket(socket.AF_UNIX)
try:
    u.connect("\0{name}"); print("host abstract reached")
except OSError as e: print("host abstract refused", e.errno)
"#
    );
    for who in identities() {
        let o = py(who, None, &probe);
        let out = stdout(&o);
        assert_eq!(code(&o), 0, "{who:?}: {}", stderr(&o));
        assert!(out.contains("ifaces ['lo']"), "{out}");
        assert!(out.contains("loopback ok"), "{out}");
        assert!(out.contains("host tcp refused"), "{out}");
        assert!(out.contains("host abstract refused"), "{out}");
    }
    let o = run(
        Who::Caller,
        &[
            "--net",
            "none",
            "--profile",
            "python",
            "--",
            "/usr/bin/python3",
            "-c",
            "import socket\ntry:\n socket.create_connection(('127.0.0.1', 9), timeout=2)\nexcept OSError as e: print('errno', e.errno)",
        ],
    );
    assert!(
        stdout(&o).contains(&format!("errno {}", libc::ENETUNREACH)),
        "lo must be down with --net none: {}",
        stdout(&o)
    );
}

#[test]
fn planted_symlinks_setuid_and_kill_all_stay_inside() {
    for who in identities() {
        let work = work_dir(who);
        std::os::unix::fs::symlink("/etc/shadow", work.path().join("shadow")).expect("symlink");
        std::os::unix::fs::symlink("/root", work.path().join("roothome")).expect("symlink");
        // A host process of the same host uid must survive `kill -9 -1` from inside.
        let marker = format!("33.{}{}", std::process::id(), who as u8);
        let mut victim = Command::new("setpriv")
            .args([
                &format!("--reuid={}", host_uid(who)),
                &format!("--regid={}", host_uid(who)),
                "--clear-groups",
                "/bin/sleep",
                &marker,
            ])
            .spawn();
        if !is_root() {
            victim = Command::new("/bin/sleep").arg(&marker).spawn();
        }
        let mut victim = victim.expect("victim");
        let o = sh(
            who,
            Some(work.path()),
            "cat /work/shadow 2>/dev/null && echo read-shadow; \
             ls /work/roothome/ 2>/dev/null && echo read-root; \
             su -c true root </dev/null >/dev/null 2>&1 && echo su-worked; \
             grep -E ' /usr/bin | /work ' /proc/self/mountinfo; \
             kill -9 -1; echo survived",
        );
        let out = stdout(&o);
        assert!(out.contains("survived"), "{who:?}: {}", stderr(&o));
        assert!(!out.contains("read-shadow"), "{out}");
        assert!(!out.contains("read-root"), "{out}");
        assert!(!out.contains("su-worked"), "{out}");
        for line in out
            .lines()
            .filter(|l| l.contains(" /usr/bin ") || l.contains(" /work "))
        {
            assert!(line.contains("nosuid"), "{line}");
            assert!(line.contains("nodev"), "{line}");
        }
        assert!(
            victim.try_wait().expect("try_wait").is_none(),
            "{who:?}: host process was killed from inside"
        );
        victim.kill().ok();
        victim.wait().ok();
    }
}

#[test]
fn report_describes_layers_and_outcome() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("report.json");
    let o = run(
        Who::Caller,
        &[
            "--report",
            &path.display().to_string(),
            "--profile",
            "shell",
            "--",
            "/bin/sh",
            "-c",
            "exit 7",
        ],
    );
    assert_eq!(code(&o), 7);
    let mut text = String::new();
    std::fs::File::open(&path)
        .expect("report written")
        .read_to_string(&mut text)
        .expect("read");
    let r: serde_json::Value = serde_json::from_str(&text).expect("json");
    for ns in ["user", "mount", "pid", "net", "ipc", "uts", "cgroup"] {
        assert!(
            r["namespaces"]
                .as_array()
                .expect("array")
                .iter()
                .any(|v| v == ns),
            "{ns}"
        );
    }
    assert!(r["uid_map"].as_str().expect("uid_map").starts_with("0 "));
    assert!(
        r["mounts"]
            .as_array()
            .expect("mounts")
            .iter()
            .any(|m| m["dest"] == "/proc")
    );
    assert!(
        r["seccomp"]["denied_syscalls"]
            .as_array()
            .expect("seccomp")
            .iter()
            .any(|s| s == "ptrace")
    );
    assert!(
        r["rlimits"]
            .as_array()
            .expect("rlimits")
            .iter()
            .any(|l| l["name"] == "core" && l["hard"] == 0)
    );
    match ns_kernel_landlock_abi() {
        Some(abi) => assert_eq!(r["landlock"]["kernel_abi"], abi, "{text}"),
        None => eprintln!("kernel without Landlock: landlock report not checked"),
    }
    assert_eq!(r["outcome"]["result"], "exited");
    assert_eq!(r["outcome"]["exit_code"], 7);
    assert_eq!(r["outcome"]["timed_out"], false);
    assert!(r["outcome"]["wall_time_ms"].as_u64().is_some());
    assert_eq!(r["missing"].as_array().map(Vec::len), Some(0));

    // A timeout and a setup failure are reported too, on stdout with `-`.
    let o = run(
        Who::Caller,
        &[
            "--report",
            "-",
            "--timeout",
            "200ms",
            "--",
            "/bin/sleep",
            "5",
        ],
    );
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(r["outcome"]["result"], "timeout");
    assert_eq!(r["outcome"]["exit_code"], 124);
    let o = run(
        Who::Caller,
        &["--report", "-", "--ro", "/nope/nope", "--", "/bin/true"],
    );
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(r["outcome"]["result"], "setup_failed");
}

fn ns_kernel_landlock_abi() -> Option<i64> {
    // SAFETY: the version query takes a NULL attr and size 0.
    #[allow(unsafe_code)]
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            1u32,
        )
    };
    (v > 0).then_some(v)
}

/// Runs sandbox-run under a seccomp filter that makes `nr` fail with `errno` when `arg0` has
/// the bits `arg0_mask` (0: always), which is how a container runtime or a hardened kernel
/// takes a layer away.
fn run_without(nr: i64, arg0_mask: u64, errno: u32, args: &[&str]) -> Output {
    use seccompiler::{
        BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
        SeccompRule,
    };
    use std::os::unix::process::CommandExt;
    let rule = if arg0_mask == 0 {
        vec![]
    } else {
        vec![
            SeccompRule::new(vec![
                SeccompCondition::new(
                    0,
                    SeccompCmpArgLen::Qword,
                    SeccompCmpOp::MaskedEq(arg0_mask),
                    arg0_mask,
                )
                .expect("cond"),
            ])
            .expect("rule"),
        ]
    };
    let filter = SeccompFilter::new(
        [(nr, rule)].into_iter().collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(errno),
        std::env::consts::ARCH.try_into().expect("arch"),
    )
    .expect("filter");
    let prog: BpfProgram = filter.try_into().expect("bpf");
    let mut c = Command::new(binary());
    c.args(args).stdin(Stdio::null());
    // SAFETY: between fork and exec the closure only installs a pre-built filter
    // (prctl + seccomp syscalls, no allocation).
    #[allow(unsafe_code)]
    unsafe {
        c.pre_exec(move || seccompiler::apply_filter(&prog).map_err(std::io::Error::other));
    }
    c.output().expect("run")
}

#[test]
fn strict_fails_closed_and_best_effort_reports_what_is_missing() {
    // No Landlock (ENOSYS, as on a kernel without it).
    let strict = run_without(
        libc::SYS_landlock_create_ruleset,
        0,
        libc::ENOSYS as u32,
        &["--", "/bin/true"],
    );
    assert_eq!(code(&strict), 125, "{}", stderr(&strict));
    assert!(stderr(&strict).contains("landlock"), "{}", stderr(&strict));
    assert!(stderr(&strict).contains("nothing was run"));
    let be = run_without(
        libc::SYS_landlock_create_ruleset,
        0,
        libc::ENOSYS as u32,
        &["--best-effort", "--report", "-", "--", "/bin/true"],
    );
    assert_eq!(code(&be), 0, "{}", stderr(&be));
    let r: serde_json::Value = serde_json::from_slice(&be.stdout).expect("json");
    assert_eq!(r["missing"][0]["layer"], "landlock", "{r}");
    assert!(r["landlock"].is_null());
    // No user namespaces (clone(CLONE_NEWUSER) refused): nothing runs, the cause is named.
    let marker = format!("/tmp/sandbox-ran-{}", std::process::id());
    let o = run_without(
        libc::SYS_clone,
        libc::CLONE_NEWUSER as u64,
        libc::EPERM as u32,
        &["--profile", "shell", "--", "/bin/touch", &marker],
    );
    assert_eq!(code(&o), 125, "{}", stderr(&o));
    assert!(stderr(&o).contains("user namespace"), "{}", stderr(&o));
    assert!(!Path::new(&marker).exists());
}

#[test]
fn unprivileged_caller_cannot_pick_another_uid() {
    if !is_root() {
        eprintln!("not root: cannot switch to uid 65534");
        return;
    }
    let o = run(Who::Nobody, &["--uid", "1234", "--", "/bin/true"]);
    assert_eq!(code(&o), 125, "{}", stderr(&o));
    assert!(stderr(&o).contains("uid/gid map"), "{}", stderr(&o));
    let o = run(Who::Caller, &["--uid", "0", "--", "/bin/true"]);
    assert_eq!(code(&o), 125, "{}", stderr(&o));
}

#[test]
fn environment_is_clean() {
    let o = Command::new(binary())
        .env("SECRET_TOKEN", "hunter2")
        .env("KEEP_ME", "yes")
        .args([
            "--profile",
            "shell",
            "--env",
            "A=1",
            "--keep-env",
            "KEEP_ME",
            "--",
            "/usr/bin/env",
        ])
        .output()
        .expect("run");
    let out = stdout(&o);
    assert!(!out.contains("hunter2"), "{out}");
    assert!(out.contains("A=1"));
    assert!(out.contains("KEEP_ME=yes"));
    assert!(out.contains("PATH="));
}

/// `sandbox-run-*` cgroup directories anywhere under /sys/fs/cgroup (depth-limited walk).
fn our_cgroups() -> Vec<PathBuf> {
    fn walk(dir: &Path, depth: u32, out: &mut Vec<PathBuf>) {
        if depth == 0 {
            return;
        }
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if !e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                continue;
            }
            if e.file_name().to_string_lossy().starts_with("sandbox-run-") {
                out.push(p.clone());
            }
            walk(&p, depth - 1, out);
        }
    }
    let mut out = Vec::new();
    walk(Path::new("/sys/fs/cgroup"), 5, &mut out);
    out.sort();
    out
}

fn memory_controller() -> bool {
    Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists()
        || std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
            .map(|c| c.split_whitespace().any(|w| w == "memory"))
            .unwrap_or(false)
}

#[test]
fn cgroup_limits_oom_and_pids_are_enforced_and_cleaned_up() {
    if !is_root() || !memory_controller() {
        eprintln!("needs root and a memory cgroup controller: skipped");
        return;
    }
    if !have_python() {
        return;
    }
    let before = our_cgroups();
    let o = run(
        Who::Caller,
        &[
            "--memory",
            "64M",
            "--report",
            "-",
            "--profile",
            "python",
            "--",
            "/usr/bin/python3",
            "-c",
            "x = bytearray(256 << 20); print('allocated')",
        ],
    );
    assert_eq!(code(&o), 137, "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(r["outcome"]["result"], "oom", "{r}");
    assert_eq!(r["outcome"]["oom_killed"], true);
    assert_eq!(r["cgroup"]["oom_killed"], true);
    assert_eq!(r["cgroup"]["limits"]["memory_max_bytes"], 64 << 20);

    // A child of the program is OOM-killed but the program exits on its own: its code stands.
    let o = run(
        Who::Caller,
        &[
            "--memory",
            "64M",
            "--report",
            "-",
            "--profile",
            "python",
            "--",
            "/usr/bin/python3",
            "-c",
            "import subprocess, sys\nsubprocess.run([sys.executable, '-c', 'x = bytearray(256 << 20)'])\nsys.exit(3)",
        ],
    );
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(r["outcome"]["result"], "exited", "{r}");
    assert_eq!(r["cgroup"]["oom_killed"], true, "{r}");

    // A fork bomb under --pids 16 is contained (fork fails inside), the host is unaffected.
    let dir = tempfile::tempdir().expect("tempdir");
    let report = dir.path().join("r.json");
    let o = run(
        Who::Caller,
        &[
            "--pids",
            "16",
            "--timeout",
            "20s",
            "--report",
            &report.display().to_string(),
            "--profile",
            "python",
            "--",
            "/usr/bin/python3",
            "-c",
            "import os, time\nn = 0\nfor i in range(64):\n    try:\n        if os.fork() == 0:\n            time.sleep(5); os._exit(0)\n        n += 1\n    except OSError:\n        pass\nprint('forked', n)",
        ],
    );
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("json");
    assert_eq!(r["cgroup"]["limits"]["pids_max"], 16, "{r}");
    assert_eq!(r["outcome"]["result"], "exited", "{r}");
    let err = stderr(&o);
    let forked: u64 = stdout(&o)
        .lines()
        .chain(err.lines())
        .find_map(|l| l.strip_prefix("forked "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(u64::MAX);
    assert!(
        (1..16).contains(&forked),
        "{forked} forks succeeded under --pids 16"
    );
    assert_eq!(our_cgroups(), before, "cgroup directories left behind");
}

#[test]
fn signals_to_sandbox_run_reach_the_program() {
    let mut child = command(
        Who::Caller,
        &["--profile", "shell", "--", "/bin/sleep", "30"],
    )
    .spawn()
    .expect("spawn");
    // Once sandbox-run catches SIGTERM (it does so right after the program started), stop it
    // politely.
    let pid = libc::pid_t::try_from(child.id()).expect("pid");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let caught = status
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
            .unwrap_or(0);
        if caught & (1 << (libc::SIGTERM - 1)) != 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "sandbox-run never caught SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: plain kill(2) on our own child.
    #[allow(unsafe_code)]
    let r = unsafe { libc::kill(pid, libc::SIGTERM) };
    assert_eq!(r, 0);
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(128 + libc::SIGTERM), "{status:?}");
}

#[test]
fn minimal_profile_binds_only_the_libraries_and_the_program() {
    // The shell itself is bound, the rest of /usr/bin is not.
    let o = run(
        Who::Caller,
        &["--profile", "minimal", "--", "/bin/sh", "-c", "ls /"],
    );
    assert_eq!(code(&o), 127, "{}", stderr(&o));
    if have_python() {
        // Looked up by name in PATH; the python3 -> python3.11 symlink is resolved.
        let o = run(
            Who::Caller,
            &[
                "--",
                "python3",
                "-c",
                "import sys; print(sys.version_info[0])",
            ],
        );
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        assert_eq!(stdout(&o).trim(), "3");
    }
}

#[test]
fn cgroup_limits_strict_vs_best_effort_for_an_unprivileged_caller() {
    if !is_root() {
        eprintln!("not root: cannot switch to uid 65534");
        return;
    }
    // uid 65534 owns no cgroup: --memory cannot be applied.
    let strict = run(Who::Nobody, &["--memory", "64M", "--", "/bin/true"]);
    if code(&strict) == 0 {
        eprintln!("this host delegates a memory cgroup to uid 65534: nothing to refuse");
        return;
    }
    assert_eq!(code(&strict), 125, "{}", stderr(&strict));
    assert!(stderr(&strict).contains("--memory"), "{}", stderr(&strict));
    assert!(stderr(&strict).contains("nothing was run"));
    let be = run(
        Who::Nobody,
        &[
            "--memory",
            "64M",
            "--best-effort",
            "--report",
            "-",
            "--",
            "/bin/true",
        ],
    );
    assert_eq!(code(&be), 0, "{}", stderr(&be));
    let r: serde_json::Value = serde_json::from_slice(&be.stdout).expect("json");
    assert!(
        r["missing"]
            .as_array()
            .expect("missing")
            .iter()
            .any(|m| m["layer"] == "cgroup"),
        "{r}"
    );
}

#[test]
fn failures_inside_the_sandbox_name_their_layer() {
    // The init's own set-up (host name) and the program's process (Landlock) both report
    // back before anything runs.
    let marker = format!("/tmp/sandbox-ran-inside-{}", std::process::id());
    for (nr, layer) in [
        (libc::SYS_sethostname, "hostname"),
        (libc::SYS_landlock_restrict_self, "landlock"),
        (libc::SYS_pivot_root, "mounts"),
    ] {
        let o = run_without(
            nr,
            0,
            libc::EPERM as u32,
            &["--profile", "shell", "--", "/bin/touch", &marker],
        );
        assert_eq!(code(&o), 125, "{layer}: {}", stderr(&o));
        assert!(stderr(&o).contains(layer), "{layer}: {}", stderr(&o));
        assert!(stderr(&o).contains("nothing was run"), "{}", stderr(&o));
        assert!(!Path::new(&marker).exists(), "{layer}: the program ran");
    }
}

/// Runs sandbox-run with SIGCHLD ignored, as a parent that ignores SIGCHLD leaves it (Linux
/// keeps that disposition across execve, and `clone` copies it into the sandbox's init).
fn run_with_sigchld_ignored(args: &[&str]) -> Output {
    use std::os::unix::process::CommandExt;
    let mut c = Command::new(binary());
    c.args(args).stdin(Stdio::null());
    // SAFETY: between fork and exec the closure only calls signal(2), which is
    // async-signal-safe.
    #[allow(unsafe_code)]
    unsafe {
        c.pre_exec(|| {
            libc::signal(libc::SIGCHLD, libc::SIG_IGN);
            Ok(())
        });
    }
    c.output().expect("run")
}

#[test]
fn an_inherited_ignored_sigchld_neither_hangs_nor_changes_the_exit_code() {
    // The program exits 3: sandbox-run must report 3 right away (before the fix, init never
    // saw the program exit, and only --timeout ended the run).
    let started = Instant::now();
    let o = run_with_sigchld_ignored(&[
        "--timeout",
        "20s",
        "--profile",
        "shell",
        "--",
        "/bin/sh",
        "-c",
        "exit 3",
    ]);
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "hung until the timeout"
    );
    // A timeout is still 124 when our own init is reaped by the kernel on its own.
    let o = run_with_sigchld_ignored(&[
        "--timeout",
        "300ms",
        "--profile",
        "shell",
        "--",
        "/bin/sleep",
        "30",
    ]);
    assert_eq!(code(&o), 124, "{}", stderr(&o));
}
