//! `manager doctor`: can this host or container run the toolkit safely? Each check says ok,
//! warn or fail with the reason; any fail exits 1.
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};

use serde::Serialize;

use crate::exit;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Serialize)]
struct Check {
    name: &'static str,
    status: Status,
    detail: String,
}

fn check(name: &'static str, status: Status, detail: impl Into<String>) -> Check {
    Check {
        name,
        status,
        detail: detail.into(),
    }
}

/// Runs `manager doctor`.
pub fn run(globals: &crate::Globals) -> ExitCode {
    let checks = vec![
        user_namespaces(),
        landlock(),
        seccomp(),
        cgroups(),
        capabilities(),
        dumpable(),
        secret_memory(),
        ram_backed_dirs(),
        lock_location(globals),
    ];
    let failed = checks.iter().any(|c| c.status == Status::Fail);
    if globals.json {
        let value = serde_json::json!({ "ok": !failed, "checks": checks });
        println!("{value}");
    } else {
        for c in &checks {
            let status = match c.status {
                Status::Ok => "ok",
                Status::Warn => "warn",
                Status::Fail => "FAIL",
            };
            println!("{status:<5} {:<14} {}", c.name, c.detail);
        }
    }
    if failed {
        ExitCode::from(exit::ERROR)
    } else {
        ExitCode::SUCCESS
    }
}

/// Arguments of the hidden `manager __probe`.
#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// What to probe (`userns`).
    what: String,
}

/// Runs a probe in this fresh process: exit 0 if it worked, 1 with the errno on stderr if not.
pub fn probe(args: ProbeArgs) -> ExitCode {
    match args.what.as_str() {
        "userns" => match crate::sys::unshare_user_namespace() {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("{err}");
                ExitCode::from(exit::ERROR)
            }
        },
        _ => ExitCode::from(exit::USAGE),
    }
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
}

fn run_probe(as_nobody: bool) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut command = Command::new(exe);
    command
        .args(["__probe", "userns"])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    if as_nobody {
        use std::os::unix::process::CommandExt;
        command.uid(65534).gid(65534); // std drops root's supplementary groups
    }
    let output = command.output().map_err(|e| e.to_string())?;
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
    }
}

fn user_namespaces() -> Check {
    let mut notes = Vec::new();
    if let Some(max) = read_trimmed("/proc/sys/user/max_user_namespaces") {
        notes.push(format!("max_user_namespaces={max}"));
    }
    let apparmor = read_trimmed("/proc/sys/kernel/apparmor_restrict_unprivileged_userns");
    if let Some(value) = &apparmor {
        notes.push(format!("apparmor_restrict_unprivileged_userns={value}"));
    }
    let apparmor_note = if apparmor.as_deref() == Some("1") {
        ": restricted by AppArmor"
    } else {
        ""
    };
    let own = run_probe(false);
    let unprivileged = if rustix::process::geteuid().is_root() {
        Some(run_probe(true))
    } else {
        None
    };
    match (&own, &unprivileged) {
        (Ok(()), None | Some(Ok(()))) => check(
            "userns",
            Status::Ok,
            format!(
                "user namespaces work{} ({})",
                if unprivileged.is_some() {
                    ", also for an unprivileged uid (65534)"
                } else {
                    ""
                },
                notes.join(", ")
            ),
        ),
        (Ok(()), Some(Err(err))) => check(
            "userns",
            Status::Warn,
            format!(
                "root can create user namespaces but uid 65534 cannot ({err}){}; rootless sandboxes will fail",
                apparmor_note
            ),
        ),
        (Err(err), _) => check(
            "userns",
            Status::Fail,
            format!(
                "cannot create a user namespace: {err}{} ({})",
                apparmor_note,
                notes.join(", ")
            ),
        ),
    }
}

fn landlock() -> Check {
    match crate::sys::landlock_abi() {
        Ok(abi) if abi >= 1 => check("landlock", Status::Ok, format!("ABI {abi}")),
        Ok(abi) => check("landlock", Status::Fail, format!("unexpected ABI {abi}")),
        Err(err) => check(
            "landlock",
            Status::Fail,
            format!(
                "not available: {err} (kernel without CONFIG_SECURITY_LANDLOCK or lsm= lacks landlock)"
            ),
        ),
    }
}

fn status_field(name: &str) -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|line| {
        line.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(|v| v.trim().to_owned())
    })
}

fn seccomp() -> Check {
    let actions = read_trimmed("/proc/sys/kernel/seccomp/actions_avail");
    let mode = status_field("Seccomp").unwrap_or_else(|| "?".into());
    match actions {
        Some(actions) if actions.split_whitespace().any(|a| a == "errno") => check(
            "seccomp",
            Status::Ok,
            format!("filters available (actions: {actions}); this process: Seccomp={mode}"),
        ),
        Some(actions) => check(
            "seccomp",
            Status::Fail,
            format!("no errno action (actions: {actions})"),
        ),
        None => check(
            "seccomp",
            Status::Fail,
            "no /proc/sys/kernel/seccomp/actions_avail: kernel without seccomp filters",
        ),
    }
}

const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
const TMPFS_MAGIC: i64 = 0x0102_1994;
const RAMFS_MAGIC: i64 = 0x8584_58f6;

fn fs_type(path: &Path) -> Option<i64> {
    rustix::fs::statfs(path).ok().map(|s| s.f_type)
}

fn cgroups() -> Check {
    let root = Path::new("/sys/fs/cgroup");
    let Some(kind) = fs_type(root) else {
        return check("cgroups", Status::Fail, "/sys/fs/cgroup is not mounted");
    };
    let own = read_trimmed("/proc/self/cgroup").unwrap_or_default();
    let own = own.lines().take(6).collect::<Vec<_>>().join("; ");
    if kind == CGROUP2_SUPER_MAGIC {
        let controllers = read_trimmed("/sys/fs/cgroup/cgroup.controllers").unwrap_or_default();
        return check(
            "cgroups",
            Status::Ok,
            format!("v2 unified (controllers: {controllers}); own: {own}"),
        );
    }
    let mut controllers: Vec<String> = std::fs::read_dir(root)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n != "unified")
                .collect()
        })
        .unwrap_or_default();
    controllers.sort();
    let hybrid = fs_type(&root.join("unified")) == Some(CGROUP2_SUPER_MAGIC);
    let missing: Vec<&str> = ["memory", "cpu", "pids"]
        .into_iter()
        .filter(|c| !controllers.iter().any(|have| have == c))
        .collect();
    let setup = if hybrid { "v1 hybrid" } else { "v1" };
    if missing.is_empty() {
        check(
            "cgroups",
            Status::Ok,
            format!(
                "{setup} (controllers: {}); own: {own}",
                controllers.join(",")
            ),
        )
    } else {
        check(
            "cgroups",
            Status::Warn,
            format!(
                "{setup}: no {} controller; limits on it will fail",
                missing.join(", ")
            ),
        )
    }
}

fn capabilities() -> Check {
    let Some(cap_eff) = status_field("CapEff").and_then(|v| u64::from_str_radix(&v, 16).ok())
    else {
        return check("capabilities", Status::Warn, "cannot read CapEff");
    };
    const CAP_SYS_PTRACE: u32 = 19;
    const CAP_SYS_ADMIN: u32 = 21;
    let mut held = Vec::new();
    if cap_eff & (1 << CAP_SYS_PTRACE) != 0 {
        held.push("CAP_SYS_PTRACE");
    }
    if cap_eff & (1 << CAP_SYS_ADMIN) != 0 {
        held.push("CAP_SYS_ADMIN");
    }
    if held.is_empty() {
        check(
            "capabilities",
            Status::Ok,
            format!("CapEff={cap_eff:016x}: no SYS_PTRACE, no SYS_ADMIN"),
        )
    } else {
        check(
            "capabilities",
            Status::Warn,
            format!(
                "CapEff={cap_eff:016x} holds {}: a compromised process could read other processes' memory; drop them from the container",
                held.join(", ")
            ),
        )
    }
}

fn dumpable() -> Check {
    match rustix::process::dumpable_behavior() {
        Ok(rustix::process::DumpableBehavior::NotDumpable) => check(
            "dumpable",
            Status::Ok,
            "manager is not dumpable (no same-uid ptrace, no core dumps)",
        ),
        Ok(other) => check(
            "dumpable",
            Status::Fail,
            format!("manager is still dumpable ({other:?})"),
        ),
        Err(err) => check("dumpable", Status::Fail, format!("prctl: {err}")),
    }
}

fn secret_memory() -> Check {
    match fifo_secrets::SecretBytes::from_slice(b"doctor-probe") {
        Ok(secret) => {
            let p = secret.protections();
            let detail = format!(
                "memfd_secret={} mlocked={} dontdump={}",
                p.memfd_secret, p.mlocked, p.dontdump
            );
            if p.memfd_secret || (p.mlocked && p.dontdump) {
                check("secret-memory", Status::Ok, detail)
            } else {
                check(
                    "secret-memory",
                    Status::Warn,
                    format!("{detail}: secrets could reach swap or a core dump"),
                )
            }
        }
        Err(err) => check("secret-memory", Status::Fail, err.to_string()),
    }
}

fn ram_backed_dirs() -> Check {
    let mut candidates: Vec<String> = Vec::new();
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR") {
        candidates.push(dir.to_string_lossy().into_owned());
    }
    candidates.extend(["/dev/shm", "/run", "/tmp"].map(String::from));
    let mut ram = Vec::new();
    let mut disk = Vec::new();
    for dir in &candidates {
        match fs_type(Path::new(dir)) {
            Some(TMPFS_MAGIC | RAMFS_MAGIC) => ram.push(dir.clone()),
            Some(_) => disk.push(dir.clone()),
            None => {}
        }
    }
    if ram.is_empty() {
        check(
            "ram-dirs",
            Status::Fail,
            format!(
                "no RAM-backed dir among {}: secrets FIFOs would refuse to run",
                candidates.join(", ")
            ),
        )
    } else {
        check(
            "ram-dirs",
            Status::Ok,
            format!(
                "RAM-backed: {}; on disk: {}",
                ram.join(", "),
                if disk.is_empty() {
                    "none".into()
                } else {
                    disk.join(", ")
                }
            ),
        )
    }
}

fn lock_location(globals: &crate::Globals) -> Check {
    if globals.lock_backend == crate::LockBackend::Etcd {
        return check(
            "lock",
            Status::Ok,
            format!(
                "etcd backend, endpoints {}",
                globals.etcd_endpoints.join(",")
            ),
        );
    }
    let lock = crate::singleton::local_lock(globals);
    match lock.holder() {
        Ok(Some(holder)) => check(
            "lock",
            Status::Ok,
            format!("{} is held by {holder}", lock.path().display()),
        ),
        Ok(None) => check(
            "lock",
            Status::Ok,
            format!("{} is free", lock.path().display()),
        ),
        Err(err) => check("lock", Status::Fail, err.to_string()),
    }
}
