//! Everything prepared in the parent before `clone`: paths opened, mount steps, rules, argv.
use std::collections::BTreeSet;
use std::ffi::{CString, OsString};
use std::fs::OpenOptions;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use crate::builder::{Net, Profile, Rlimit, SandboxBuilder};
use crate::landlock_rules::{Class, Landlock};
use crate::report::{LandlockReport, Missing, MountReport, Report, RlimitReport};
use crate::subid::{self, Found, Grant, Kind};
use crate::sys::{self, ChildPlan, ChildRule, Op, Source, step};
use crate::{Error, Layer, seccomp};

const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";
const NOBODY: u32 = 65534;

/// The ids the sandbox maps to uid/gid 0 inside.
pub(crate) struct Ids {
    pub uid: u32,
    pub gid: u32,
    pub deny_setgroups: bool,
    /// `/etc/subuid` range mapped with `newuidmap` (unprivileged callers only).
    pub uid_grant: Option<Grant>,
    /// `/etc/subgid` range mapped with `newgidmap` (unprivileged callers only).
    pub gid_grant: Option<Grant>,
    pub best_effort: bool,
    /// Why a kind of range is not mapped (no file, no entry, no helper).
    pub subid_why: Vec<String>,
}

/// What `write_id_maps` applied, for the report and the child's "go".
pub(crate) struct Applied {
    pub uid_map: String,
    pub gid_map: String,
    pub setgroups: &'static str,
    /// newgidmap left `setgroups` allowed: the child clears its supplementary groups.
    pub clear_groups: bool,
    pub subid: String,
    pub missing: Vec<Missing>,
}

pub(crate) struct Prepared {
    pub plan: ChildPlan,
    /// Bind sources and the Landlock ruleset: the child inherits them; the parent closes its
    /// copies right after `clone`.
    pub fds: Vec<OwnedFd>,
    pub ids: Ids,
    pub report: Report,
    /// What each `Op` does, for error messages.
    op_desc: Vec<(Layer, String)>,
    /// Host path of each bind source, for error messages.
    source_desc: Vec<String>,
    /// Backing storage of `plan.argv` / `plan.envp`.
    _strings: Vec<CString>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum BindKind {
    ReadOnly,
    Work,
    Device,
}

struct Bind {
    source: PathBuf,
    dest: PathBuf,
    fd: OwnedFd,
    is_dir: bool,
    kind: BindKind,
    dev: u64,
    ino: u64,
}

/// How a profile path is used.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Entry {
    /// Bound read-only (or re-created as a symlink when it is one).
    Bind,
    /// Only re-created when it is a symlink (merged-/usr `/bin` in the minimal profile).
    LinkOnly,
}

fn profile_paths(profile: Profile) -> Vec<(PathBuf, Entry)> {
    let mut v: Vec<(PathBuf, Entry)> = Vec::new();
    let mut add = |p: &str, e: Entry| v.push((PathBuf::from(p), e));
    for p in ["/usr/lib", "/usr/lib64", "/usr/lib32", "/usr/libx32"] {
        add(p, Entry::Bind);
    }
    for p in ["/lib", "/lib64", "/lib32", "/libx32"] {
        add(p, Entry::Bind);
    }
    // ld.so reads only the cache at run time (ld.so.conf is ldconfig's input).
    add("/etc/ld.so.cache", Entry::Bind);
    let bins = if profile == Profile::Minimal {
        Entry::LinkOnly
    } else {
        Entry::Bind
    };
    add("/bin", bins);
    add("/sbin", bins);
    if profile != Profile::Minimal {
        for p in [
            "/usr/bin",
            "/usr/sbin",
            "/usr/libexec",
            "/usr/share/terminfo",
            "/etc/alternatives",
        ] {
            add(p, Entry::Bind);
        }
    }
    if profile == Profile::Python {
        for dir in ["/etc", "/usr/local/lib"] {
            if let Ok(rd) = std::fs::read_dir(dir) {
                let mut names: Vec<PathBuf> = rd
                    .filter_map(Result::ok)
                    .filter(|e| e.file_name().as_bytes().starts_with(b"python3"))
                    .map(|e| e.path())
                    .collect();
                names.sort();
                v.extend(names.into_iter().map(|p| (p, Entry::Bind)));
            }
        }
    }
    v
}

fn cstr(bytes: impl Into<Vec<u8>>, what: &str) -> Result<CString, Error> {
    CString::new(bytes).map_err(|_| Error::Config(format!("{what} contains a NUL byte")))
}

fn open_path(path: &Path, what: &'static str) -> Result<(OwnedFd, bool, u64, u64), Error> {
    let perr = |source| Error::Path {
        what,
        path: path.to_path_buf(),
        source,
    };
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_NOFOLLOW)
        .open(path)
        .map_err(perr)?;
    let meta = file.metadata().map_err(perr)?;
    Ok((OwnedFd::from(file), meta.is_dir(), meta.dev(), meta.ino()))
}

/// Mount flags that a bind must keep when remounted inside a user namespace (the kernel
/// refuses to clear flags locked by a more privileged namespace), plus the atime mode.
fn locked_flags(fd: &OwnedFd) -> libc::c_ulong {
    use rustix::fs::StatVfsMountFlags as F;
    let Ok(st) = rustix::fs::fstatvfs(fd) else {
        return 0;
    };
    let f = st.f_flag;
    let mut m: libc::c_ulong = 0;
    for (s, ms) in [
        (F::RDONLY, libc::MS_RDONLY),
        (F::NOSUID, libc::MS_NOSUID),
        (F::NODEV, libc::MS_NODEV),
        (F::NOEXEC, libc::MS_NOEXEC),
        (F::NOATIME, libc::MS_NOATIME),
        (F::NODIRATIME, libc::MS_NODIRATIME),
        (F::RELATIME, libc::MS_RELATIME),
    ] {
        if f.contains(s) {
            m |= ms;
        }
    }
    if m & (libc::MS_NOATIME | libc::MS_RELATIME) == 0 {
        m |= libc::MS_STRICTATIME;
    }
    m
}

/// A destination inside the sandbox: absolute, normal components only, not `/`, not under the
/// sandbox's own `/proc` or `/dev`.
fn check_dest(dest: &Path) -> Result<(), Error> {
    let bad = |why: &str| {
        Err(Error::Config(format!(
            "destination {}: {why}",
            dest.display()
        )))
    };
    if !dest.is_absolute() {
        return bad("must be absolute");
    }
    if dest
        .components()
        .any(|c| !matches!(c, Component::RootDir | Component::Normal(_)))
    {
        return bad("must not contain `.` or `..`");
    }
    if dest == Path::new("/") {
        return bad("cannot replace the sandbox root");
    }
    if dest.starts_with("/proc") || dest.starts_with("/dev") {
        return bad("/proc and /dev belong to the sandbox");
    }
    Ok(())
}

fn caller_ids() -> (u32, u32) {
    (
        rustix::process::geteuid().as_raw(),
        rustix::process::getegid().as_raw(),
    )
}

pub(crate) fn prepare(b: &SandboxBuilder) -> Result<Prepared, Error> {
    let mut missing: Vec<Missing> = Vec::new();
    let (euid, egid) = caller_ids();

    // Identity.
    let work_meta = match &b.work {
        Some(w) => Some(std::fs::metadata(w).map_err(|source| Error::Path {
            what: "--work",
            path: w.clone(),
            source,
        })?),
        None => None,
    };
    let ids = if euid == 0 {
        let (uid, gid) = match (b.host_uid, &work_meta) {
            (Some(0), _) => {
                return Err(Error::Config(
                    "the program never runs as host uid 0: choose an unprivileged uid".into(),
                ));
            }
            (Some(u), _) => (u, u),
            (None, Some(m)) if m.uid() != 0 => {
                (m.uid(), if m.gid() != 0 { m.gid() } else { m.uid() })
            }
            _ => (NOBODY, NOBODY),
        };
        Ids {
            uid,
            gid,
            deny_setgroups: false,
            uid_grant: None,
            gid_grant: None,
            best_effort: b.best_effort,
            subid_why: Vec::new(),
        }
    } else {
        if let Some(u) = b.host_uid
            && u != euid
        {
            let source = std::io::Error::from_raw_os_error(libc::EPERM);
            if !b.best_effort {
                return Err(Error::Layer {
                    layer: Layer::IdMap,
                    step: format!("map uid 0 to host uid {u}"),
                    source,
                    cause: Some("an unprivileged caller can only map its own uid"),
                });
            }
            missing.push(Missing {
                layer: Layer::IdMap,
                reason: format!("cannot map host uid {u} as uid {euid}; mapped the caller instead"),
            });
        }
        let (mut uid_grant, mut gid_grant) = (None, None);
        let mut subid_why = Vec::new();
        if b.subid_range {
            let pw = sys::passwd_entry(euid);
            let name = pw.as_ref().map(|(n, _)| n.as_str());
            for (kind, own) in [(Kind::Uid, euid), (Kind::Gid, egid)] {
                let grant = match subid::find(kind, name, euid, own) {
                    Ok(Found::Grant(g)) => Some(g),
                    Ok(Found::Nothing(why)) => {
                        subid_why.push(why);
                        None
                    }
                    Err(msg) if !b.best_effort => {
                        return Err(Error::Layer {
                            layer: Layer::UserNamespace,
                            step: format!("{} range for {}", kind.helper(), kind.file()),
                            source: std::io::Error::other(msg),
                            cause: Some(
                                "fix the file or disable the range (subid_range(false), --no-subid-range)",
                            ),
                        });
                    }
                    Err(msg) => {
                        missing.push(Missing {
                            layer: Layer::UserNamespace,
                            reason: format!("{} range not mapped: {msg}", kind.helper()),
                        });
                        None
                    }
                };
                match kind {
                    Kind::Uid => uid_grant = grant,
                    Kind::Gid => gid_grant = grant,
                }
            }
        }
        Ids {
            uid: euid,
            gid: egid,
            deny_setgroups: true,
            uid_grant,
            gid_grant,
            best_effort: b.best_effort,
            subid_why,
        }
    };
    let subid_note = if euid == 0 {
        "not used: a root caller maps one dedicated unprivileged id".to_string()
    } else if !b.subid_range {
        "disabled".to_string()
    } else if ids.uid_grant.is_none() && ids.gid_grant.is_none() {
        let mut why = ids.subid_why.clone();
        why.dedup();
        if why.is_empty() {
            why.push("see missing".into());
        }
        format!("only the caller's ids are mapped: {}", why.join("; "))
    } else {
        "granted; applied after clone".to_string()
    };

    // Landlock and seccomp are checked before anything starts.
    let landlock = if b.landlock {
        match Landlock::detect() {
            Ok(l) => Some(l),
            Err((errno, why)) => {
                if !b.best_effort {
                    return Err(Error::Layer {
                        layer: Layer::Landlock,
                        step: "landlock_create_ruleset(LANDLOCK_CREATE_RULESET_VERSION)".into(),
                        source: std::io::Error::from_raw_os_error(errno),
                        cause: Some(why),
                    });
                }
                missing.push(Missing {
                    layer: Layer::Landlock,
                    reason: format!("{why} ({})", std::io::Error::from_raw_os_error(errno)),
                });
                None
            }
        }
    } else {
        None
    };
    let seccomp = if b.seccomp {
        Some(seccomp::build().map_err(|m| Error::Layer {
            layer: Layer::Seccomp,
            step: "compile the BPF filter".into(),
            source: std::io::Error::other(m),
            cause: None,
        })?)
    } else {
        None
    };

    // Environment and argv (the PATH inside decides where the program is looked up).
    let mut env: Vec<(OsString, OsString)> = vec![
        ("PATH".into(), DEFAULT_PATH.into()),
        (
            "HOME".into(),
            if b.work.is_some() { "/work" } else { "/" }.into(),
        ),
    ];
    for (k, v) in &b.env {
        let kb = k.as_bytes();
        if kb.is_empty() || kb.contains(&b'=') {
            return Err(Error::Config(format!(
                "environment name {k:?} is empty or contains '='"
            )));
        }
        env.retain(|(ek, _)| ek != k);
        env.push((k.clone(), v.clone()));
    }
    let inside_path: OsString = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    if b.ramdisk_bytes < 1 << 20 {
        // tmpfs reads size=0 as "unlimited": never let that through.
        return Err(Error::Config(format!(
            "ramdisk size {} is below 1 MiB",
            b.ramdisk_bytes
        )));
    }
    if b.program.is_empty() {
        return Err(Error::Config("no program given".into()));
    }
    let prog_bytes = b.program.as_bytes();
    let candidates: Vec<PathBuf> = if prog_bytes.contains(&b'/') {
        vec![PathBuf::from(&b.program)]
    } else {
        std::env::split_paths(&inside_path)
            .filter(|d| d.is_absolute())
            .map(|d| d.join(&b.program))
            .collect()
    };

    // Binds.
    let mut binds: Vec<Bind> = Vec::new();
    let mut symlinks: Vec<(PathBuf, PathBuf)> = Vec::new();
    for (p, entry) in profile_paths(b.profile) {
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.file_type().is_symlink() {
            if let Ok(target) = std::fs::read_link(&p) {
                symlinks.push((p, target));
            }
            continue;
        }
        if entry == Entry::LinkOnly {
            continue;
        }
        let (fd, is_dir, dev, ino) = open_path(&p, "profile path")?;
        binds.push(Bind {
            source: p.clone(),
            dest: p,
            fd,
            is_dir,
            kind: BindKind::ReadOnly,
            dev,
            ino,
        });
    }
    for (src, dest) in &b.ro {
        check_dest(dest)?;
        let canon = std::fs::canonicalize(src).map_err(|source| Error::Path {
            what: "--ro",
            path: src.clone(),
            source,
        })?;
        let (fd, is_dir, dev, ino) = open_path(&canon, "--ro")?;
        binds.push(Bind {
            source: canon,
            dest: dest.clone(),
            fd,
            is_dir,
            kind: BindKind::ReadOnly,
            dev,
            ino,
        });
    }
    if let Some(w) = &b.work {
        let canon = std::fs::canonicalize(w).map_err(|source| Error::Path {
            what: "--work",
            path: w.clone(),
            source,
        })?;
        let (fd, is_dir, dev, ino) = open_path(&canon, "--work")?;
        if !is_dir {
            return Err(Error::Path {
                what: "--work",
                path: w.clone(),
                source: std::io::Error::from_raw_os_error(libc::ENOTDIR),
            });
        }
        binds.push(Bind {
            source: canon,
            dest: PathBuf::from("/work"),
            fd,
            is_dir,
            kind: BindKind::Work,
            dev,
            ino,
        });
    }
    // The program's own file, when no bind already brings it (minimal profile). It is bound
    // under its name as looked up (directories resolved, so `/bin/true` lands in `/usr/bin`
    // behind the `/bin` symlink), from the file it finally points to (`python3` → `python3.11`).
    if let Some(host) = candidates.iter().find(|c| c.is_file())
        && let Ok(canon) = std::fs::canonicalize(host)
        && let (Some(parent), Some(name)) = (host.parent(), host.file_name())
        && let Ok(dir) = std::fs::canonicalize(parent)
    {
        let dest = dir.join(name);
        let covered = binds
            .iter()
            .any(|bd| bd.dest == bd.source && dest.starts_with(&bd.dest));
        if !covered && check_dest(&dest).is_ok() {
            let (fd, is_dir, dev, ino) = open_path(&canon, "program")?;
            binds.push(Bind {
                source: canon,
                dest,
                fd,
                is_dir,
                kind: BindKind::ReadOnly,
                dev,
                ino,
            });
        }
    }
    for dev in ["null", "zero", "full", "random", "urandom", "tty"] {
        let p = Path::new("/dev").join(dev);
        if let Ok((fd, is_dir, dev, ino)) = open_path(&p, "device") {
            binds.push(Bind {
                source: p.clone(),
                dest: p,
                fd,
                is_dir,
                kind: BindKind::Device,
                dev,
                ino,
            });
        }
    }
    binds.sort_by(|a, b| {
        (a.dest.components().count(), &a.dest).cmp(&(b.dest.components().count(), &b.dest))
    });

    // Filesystem steps, below the staging mount point.
    let staging = ["/tmp", "/mnt", "/var/tmp"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_dir())
        .ok_or_else(|| Error::Config("no staging directory (/tmp, /mnt) on the host".into()))?;
    let inside = |p: &Path| -> Result<CString, Error> {
        let rel = p.strip_prefix("/").unwrap_or(p);
        cstr(staging.join(rel).into_os_string().into_vec(), "path")
    };
    let mut ops: Vec<Op> = Vec::new();
    let mut op_desc: Vec<(Layer, String)> = Vec::new();
    let mut mounts: Vec<MountReport> = vec![MountReport {
        dest: "/".into(),
        kind: "tmpfs",
        source: None,
        read_only: false,
        options: format!("size={},mode=0755,nosuid,nodev", b.ramdisk_bytes),
    }];
    let mut made: BTreeSet<PathBuf> = BTreeSet::new();
    let mut mounted: Vec<PathBuf> = Vec::new();
    let mkdir_p = |p: &Path,
                   made: &mut BTreeSet<PathBuf>,
                   mounted: &Vec<PathBuf>,
                   ops: &mut Vec<Op>,
                   op_desc: &mut Vec<(Layer, String)>|
     -> Result<(), Error> {
        let mut acc = PathBuf::from("/");
        for c in p.components().skip(1) {
            acc.push(c);
            if made.contains(&acc) || mounted.iter().any(|m| acc.starts_with(m)) {
                continue;
            }
            ops.push(Op::Mkdir {
                path: inside(&acc)?,
                mode: 0o755,
            });
            op_desc.push((Layer::Mounts, format!("mkdir {}", acc.display())));
            made.insert(acc.clone());
        }
        Ok(())
    };
    for d in ["/etc", "/tmp", "/dev/shm", "/proc"] {
        mkdir_p(Path::new(d), &mut made, &mounted, &mut ops, &mut op_desc)?;
    }
    for (dest, target) in &symlinks {
        ops.push(Op::Symlink {
            target: cstr(target.clone().into_os_string().into_vec(), "symlink target")?,
            path: inside(dest)?,
        });
        op_desc.push((
            Layer::Mounts,
            format!("symlink {} -> {}", dest.display(), target.display()),
        ));
        mounts.push(MountReport {
            dest: dest.display().to_string(),
            kind: "symlink",
            source: Some(target.display().to_string()),
            read_only: true,
            options: String::new(),
        });
        made.insert(dest.clone());
    }
    for bd in &binds {
        let under = mounted.iter().any(|m| bd.dest.starts_with(m));
        if !under {
            if let Some(parent) = bd.dest.parent() {
                mkdir_p(parent, &mut made, &mounted, &mut ops, &mut op_desc)?;
            }
            if bd.is_dir {
                mkdir_p(&bd.dest, &mut made, &mounted, &mut ops, &mut op_desc)?;
            } else {
                ops.push(Op::Touch {
                    path: inside(&bd.dest)?,
                });
                op_desc.push((
                    Layer::Mounts,
                    format!("create mount point {}", bd.dest.display()),
                ));
            }
        }
        let locked = locked_flags(&bd.fd);
        let keep = locked & !(libc::MS_RDONLY | libc::MS_NODEV | libc::MS_NOSUID | libc::MS_NOEXEC);
        let (remount, ro, opts) = match bd.kind {
            BindKind::ReadOnly => (
                keep | libc::MS_RDONLY
                    | libc::MS_NOSUID
                    | libc::MS_NODEV
                    | (locked & libc::MS_NOEXEC),
                true,
                "ro,nosuid,nodev",
            ),
            BindKind::Work => (
                keep | libc::MS_NOSUID
                    | libc::MS_NODEV
                    | (locked & (libc::MS_NOEXEC | libc::MS_RDONLY)),
                locked & libc::MS_RDONLY != 0,
                "rw,nosuid,nodev",
            ),
            BindKind::Device => (
                keep | libc::MS_NOSUID
                    | libc::MS_NOEXEC
                    | (locked & (libc::MS_NODEV | libc::MS_RDONLY)),
                false,
                "as the host's /dev",
            ),
        };
        // Device nodes keep the source mount's flags: nosuid and noexec mean nothing for a
        // character device, and skipping the remount saves a mount(2) per node.
        ops.push(Op::Bind {
            src: cstr(format!("/proc/self/fd/{}", bd.fd.as_raw_fd()), "fd path")?,
            dst: inside(&bd.dest)?,
            remount: (bd.kind != BindKind::Device).then_some(remount),
        });
        op_desc.push((
            Layer::Mounts,
            format!(
                "bind {} -> {} ({opts})",
                bd.source.display(),
                bd.dest.display()
            ),
        ));
        mounts.push(MountReport {
            dest: bd.dest.display().to_string(),
            kind: "bind",
            source: Some(bd.source.display().to_string()),
            read_only: ro,
            options: opts.into(),
        });
        mounted.push(bd.dest.clone());
    }
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        ops.push(Op::Symlink {
            target: cstr(target, "symlink")?,
            path: inside(&Path::new("/dev").join(name))?,
        });
        op_desc.push((Layer::Mounts, format!("symlink /dev/{name}")));
    }
    ops.push(Op::Proc {
        dst: inside(Path::new("/proc"))?,
    });
    op_desc.push((Layer::Proc, "mount a fresh proc on /proc".into()));
    mounts.push(MountReport {
        dest: "/proc".into(),
        kind: "proc",
        source: None,
        read_only: false,
        options: "nosuid,nodev,noexec".into(),
    });
    let hosts = format!("127.0.0.1\tlocalhost {0}\n::1\tlocalhost {0}\n", b.hostname);
    for (name, data) in [
        (
            "/etc/passwd",
            "root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
                .to_string(),
        ),
        ("/etc/group", "root:x:0:\nnogroup:x:65534:\n".to_string()),
        ("/etc/hosts", hosts),
        ("/etc/hostname", format!("{}\n", b.hostname)),
    ] {
        if binds.iter().any(|bd| bd.dest == Path::new(name)) {
            continue;
        }
        ops.push(Op::Write {
            path: inside(Path::new(name))?,
            data: data.into_bytes(),
        });
        op_desc.push((Layer::Mounts, format!("write {name}")));
        mounts.push(MountReport {
            dest: name.into(),
            kind: "file",
            source: None,
            read_only: false,
            options: "generated".into(),
        });
    }
    for d in ["/tmp", "/dev/shm"] {
        ops.push(Op::Chmod {
            path: inside(Path::new(d))?,
            mode: 0o1777,
        });
        op_desc.push((Layer::Mounts, format!("chmod 1777 {d}")));
    }

    // Landlock: host inodes in the parent, fresh mounts in the child.
    let mut fds: Vec<OwnedFd> = Vec::new();
    let mut landlock_fd = None;
    let mut landlock_rules = Vec::new();
    let mut landlock_report = None;
    if let Some(ll) = &landlock {
        let mut host_rules: Vec<(&OwnedFd, u64)> = Vec::new();
        let mut rule_names = Vec::new();
        for bd in &binds {
            let class = match bd.kind {
                BindKind::ReadOnly => Class::ReadExec,
                BindKind::Work => Class::Full,
                BindKind::Device => Class::Device,
            };
            let bits = ll.bits(class, bd.is_dir);
            host_rules.push((&bd.fd, bits));
            rule_names.push(format!("{}: {}", bd.dest.display(), Landlock::names(bits)));
        }
        for (p, class) in [
            ("/", Class::ListDir),
            ("/etc", Class::Read),
            ("/proc", Class::Read),
            ("/tmp", Class::FullNoExec),
            ("/dev/shm", Class::FullNoExec),
        ] {
            let bits = ll.bits(class, true);
            landlock_rules.push(ChildRule {
                path: cstr(p, "path")?,
                access: bits,
            });
            rule_names.push(format!("{p}: {}", Landlock::names(bits)));
        }
        match ll.create(&host_rules) {
            Ok(fd) => {
                landlock_fd = Some(fd.as_raw_fd());
                fds.push(fd);
                landlock_report = Some(LandlockReport {
                    abi: ll.abi as i32,
                    kernel_abi: ll.kernel_abi,
                    handled_fs: ll.handled_names(),
                    scoped: ll.scope_names(),
                    rules: rule_names,
                });
            }
            Err(msg) => {
                if !b.best_effort {
                    return Err(Error::Layer {
                        layer: Layer::Landlock,
                        step: "create the ruleset".into(),
                        source: std::io::Error::other(msg),
                        cause: None,
                    });
                }
                landlock_rules.clear();
                missing.push(Missing {
                    layer: Layer::Landlock,
                    reason: msg,
                });
            }
        }
    }
    let mut sources = Vec::new();
    for bd in &binds {
        sources.push(Source {
            path: cstr(bd.source.clone().into_os_string().into_vec(), "path")?,
            fd: bd.fd.as_raw_fd(),
            dev: bd.dev,
            ino: bd.ino,
        });
    }
    let source_desc: Vec<String> = binds
        .iter()
        .map(|bd| bd.source.display().to_string())
        .collect();
    fds.extend(binds.into_iter().map(|bd| bd.fd));

    // rlimits: core 0 unless the caller set it.
    let mut rl = b.rlimits.clone();
    if !rl.iter().any(|(w, _, _)| *w == Rlimit::Core) {
        rl.push((Rlimit::Core, 0, 0));
    }
    let rlimits: Vec<(libc::c_int, u64, u64)> =
        rl.iter().map(|(w, s, h)| (w.raw().0, *s, *h)).collect();
    let rlimit_report = rl
        .iter()
        .map(|(w, s, h)| RlimitReport {
            name: w.raw().1,
            soft: *s,
            hard: *h,
        })
        .collect();

    // argv / envp.
    let mut strings: Vec<CString> = Vec::new();
    let mut argv = Vec::new();
    for a in std::iter::once(&b.program).chain(b.args.iter()) {
        let c = cstr(a.as_bytes(), "argument")?;
        argv.push(c.as_ptr());
        strings.push(c);
    }
    argv.push(std::ptr::null());
    let mut envp = Vec::new();
    for (k, v) in &env {
        let mut kv = k.as_bytes().to_vec();
        kv.push(b'=');
        kv.extend_from_slice(v.as_bytes());
        let c = cstr(kv, "environment variable")?;
        envp.push(c.as_ptr());
        strings.push(c);
    }
    envp.push(std::ptr::null());
    let exec_candidates = candidates
        .iter()
        .map(|c| cstr(c.as_os_str().as_bytes(), "program path"))
        .collect::<Result<Vec<_>, _>>()?;

    if b.hostname.is_empty() || b.hostname.len() > 64 || b.hostname.contains('/') {
        return Err(Error::Config(format!(
            "host name {:?} must be 1-64 bytes without '/'",
            b.hostname
        )));
    }
    let (seccomp_prog, seccomp_report) = match seccomp {
        Some((p, r)) => (Some(p), Some(r)),
        None => (None, None),
    };
    let report = Report {
        namespaces: vec!["user", "mount", "pid", "net", "ipc", "uts", "cgroup"],
        uid_map: format!("0 {} 1", ids.uid),
        gid_map: format!("0 {} 1", ids.gid),
        setgroups: if ids.deny_setgroups {
            "deny"
        } else {
            SETGROUPS_CLEARED
        },
        subid: subid_note,
        host_uid: ids.uid,
        host_gid: ids.gid,
        hostname: b.hostname.clone(),
        net: match b.net {
            Net::None => "none",
            Net::Loopback => "loopback",
        },
        mounts,
        landlock: landlock_report,
        seccomp: seccomp_report,
        capabilities: "none (effective, permitted, inheritable, ambient and bounding sets empty; SECBIT_NOROOT locked)",
        no_new_privs: true,
        rlimits: rlimit_report,
        env: env
            .iter()
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect(),
        init: "PID 1 is a minimal init that reaps and forwards signals; the program is PID 2",
        missing,
    };
    let plan = ChildPlan {
        sync_read: -1,
        sync_write: -1,
        exec_read: -1,
        exec_write: -1,
        status_read: -1,
        status_write: -1,
        clear_groups: !ids.deny_setgroups,
        hostname: cstr(b.hostname.as_bytes(), "host name")?,
        loopback_up: b.net == Net::Loopback,
        staging: cstr(staging.into_os_string().into_vec(), "staging path")?,
        tmpfs_data: cstr(
            format!("size={},mode=0755", b.ramdisk_bytes),
            "tmpfs options",
        )?,
        sources,
        ops,
        chdir: cstr(if b.work.is_some() { "/work" } else { "/" }, "path")?,
        landlock_fd,
        landlock_rules,
        seccomp: seccomp_prog,
        rlimits,
        last_cap: last_cap(),
        exec_candidates,
        argv,
        envp,
    };
    Ok(Prepared {
        plan,
        fds,
        ids,
        report,
        op_desc,
        source_desc,
        _strings: strings,
    })
}

/// Names a known host cause for a failed `clone(CLONE_NEWUSER…)`.
pub(crate) fn userns_hint(e: &std::io::Error) -> Option<&'static str> {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim().to_string())
    };
    match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => {
            if read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref()
                == Some("1")
            {
                Some(
                    "user namespaces restricted by AppArmor: kernel.apparmor_restrict_unprivileged_userns=1",
                )
            } else if read("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
                Some("unprivileged user namespaces disabled: kernel.unprivileged_userns_clone=0")
            } else {
                Some("refused by a seccomp filter or LSM around this process (container runtime?)")
            }
        }
        Some(libc::ENOSPC) => Some("user namespace limit reached: user.max_user_namespaces"),
        Some(libc::EINVAL) => Some("kernel without CONFIG_USER_NS, or called from a chroot"),
        Some(libc::EUSERS) => Some("user namespace nesting limit (32) reached"),
        _ => None,
    }
}

fn write_proc(pid: u32, file: &str, data: &str) -> Result<(), Error> {
    let path = format!("/proc/{pid}/{file}");
    let res = OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|mut f| f.write_all(data.as_bytes()));
    res.map_err(|source| Error::Layer {
        layer: Layer::IdMap,
        step: format!("write {:?} to {path}", data.trim_end()),
        cause: (source.raw_os_error() == Some(libc::EPERM))
            .then_some("the caller may only map its own ids without CAP_SETUID/CAP_SETGID"),
        source,
    })
}

const SETGROUPS_CLEARED: &str =
    "supplementary groups cleared; setgroups needs CAP_SETGID, which the program lacks";

/// Maps one range with `newuidmap`/`newgidmap`. `Ok(true)`: mapped; `Ok(false)`: the helper
/// failed in best-effort mode (recorded in `missing`), map the single id instead.
fn map_range(
    pid: u32,
    kind: Kind,
    own: u32,
    grant: &Grant,
    best_effort: bool,
    missing: &mut Vec<Missing>,
) -> Result<bool, Error> {
    match subid::run_helper(grant, pid, own) {
        Ok(()) => Ok(true),
        Err(msg) => {
            let step = format!(
                "{} {pid} 0 {own} 1 1 {} {}",
                kind.helper(),
                grant.start,
                grant.count
            );
            if !best_effort {
                return Err(Error::Layer {
                    layer: Layer::UserNamespace,
                    step,
                    source: std::io::Error::other(msg),
                    cause: Some(match kind {
                        Kind::Uid => "the setuid helper refused the /etc/subuid range",
                        Kind::Gid => "the setuid helper refused the /etc/subgid range",
                    }),
                });
            }
            missing.push(Missing {
                layer: Layer::UserNamespace,
                reason: format!("{step} failed: {msg}; mapped the caller's id only"),
            });
            Ok(false)
        }
    }
}

/// Writes the sandbox's `uid_map`, `gid_map` and `setgroups` (an unprivileged caller's
/// `/etc/subuid` and `/etc/subgid` ranges through `newuidmap`/`newgidmap`).
pub(crate) fn write_id_maps(pid: u32, ids: &Ids) -> Result<Applied, Error> {
    let single = |id: u32| format!("0 {id} 1");
    let mut missing = Vec::new();
    let mut notes = Vec::new();
    let uid_ranged = match &ids.uid_grant {
        Some(g) => map_range(pid, Kind::Uid, ids.uid, g, ids.best_effort, &mut missing)?,
        None => false,
    };
    let uid_map = if uid_ranged {
        let g = ids
            .uid_grant
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        notes.push("uid range mapped with newuidmap (/etc/subuid)");
        format!("{}\n{g}", single(ids.uid))
    } else {
        write_proc(pid, "uid_map", &format!("{}\n", single(ids.uid)))?;
        single(ids.uid)
    };
    let gid_ranged = match &ids.gid_grant {
        Some(g) => map_range(pid, Kind::Gid, ids.gid, g, ids.best_effort, &mut missing)?,
        None => false,
    };
    let (gid_map, setgroups, clear_groups) = if gid_ranged {
        let g = ids
            .gid_grant
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        notes.push("gid range mapped with newgidmap (/etc/subgid)");
        // shadow's newgidmap leaves setgroups allowed for a subgid grant (and deny when it
        // was denied before): with "allow", the init clears the supplementary groups before
        // the program runs, and the program never has CAP_SETGID to add any.
        let path = format!("/proc/{pid}/setgroups");
        let allowed = std::fs::read_to_string(&path)
            .map_err(|source| Error::Layer {
                layer: Layer::IdMap,
                step: format!("read {path}"),
                source,
                cause: None,
            })?
            .trim()
            == "allow";
        let sg = if allowed {
            "allow (newgidmap, /etc/subgid grant): supplementary groups cleared before the program runs, which lacks CAP_SETGID"
        } else {
            "deny"
        };
        (format!("{}\n{g}", single(ids.gid)), sg, allowed)
    } else {
        if ids.deny_setgroups {
            write_proc(pid, "setgroups", "deny")?;
        }
        write_proc(pid, "gid_map", &format!("{}\n", single(ids.gid)))?;
        let sg = if ids.deny_setgroups {
            "deny"
        } else {
            SETGROUPS_CLEARED
        };
        (single(ids.gid), sg, false)
    };
    let mut notes: Vec<String> = notes.into_iter().map(String::from).collect();
    if !notes.is_empty() {
        notes.extend(ids.subid_why.iter().cloned());
    }
    let subid = if notes.is_empty() {
        if ids.uid_grant.is_some() || ids.gid_grant.is_some() {
            "granted, but newuidmap/newgidmap failed: only the caller's ids are mapped (see missing)".into()
        } else {
            String::new()
        }
    } else {
        notes.join("; ")
    };
    Ok(Applied {
        uid_map,
        gid_map,
        setgroups,
        clear_groups,
        subid,
        missing,
    })
}

/// Turns a child's (step, errno) into an error naming the layer.
pub(crate) fn step_error(prep: &Prepared, stepid: u32, errno: i32) -> Error {
    let source = std::io::Error::from_raw_os_error(errno);
    let (layer, what, cause): (Layer, String, Option<&'static str>) = match stepid {
        step::DUMPABLE | step::PDEATHSIG | step::SESSION | step::SETSID => {
            (Layer::Process, format!("process step {stepid}"), None)
        }
        step::FORK_PROGRAM => (Layer::Process, "fork the program".into(), None),
        step::CLEAR_GROUPS => (Layer::IdMap, "setgroups(0, [])".into(), None),
        step::SETGID => (Layer::IdMap, "setresgid(0, 0, 0)".into(), None),
        step::SETUID => (Layer::IdMap, "setresuid(0, 0, 0)".into(), None),
        step::CGROUP_NS => (
            Layer::CgroupNamespace,
            "unshare(CLONE_NEWCGROUP)".into(),
            Some("kernel without CONFIG_CGROUPS namespaces (needs 4.6+)"),
        ),
        step::HOSTNAME => (Layer::Hostname, "sethostname".into(), None),
        step::LOOPBACK => (Layer::Network, "bring lo up (SIOCSIFFLAGS)".into(), None),
        step::MAKE_PRIVATE => (Layer::Mounts, "make / rprivate".into(), None),
        step::ROOT_TMPFS => (Layer::Mounts, "mount the tmpfs root".into(), None),
        step::PIVOT => (Layer::Mounts, "pivot_root".into(), None),
        step::DETACH_OLD_ROOT => (Layer::Mounts, "detach the old root".into(), None),
        step::CHDIR => (Layer::Mounts, "chdir into the new root".into(), None),
        step::RLIMIT => (Layer::Rlimits, "setrlimit".into(), None),
        step::SECUREBITS | step::CAPBSET | step::AMBIENT | step::CAPSET => (
            Layer::Capabilities,
            format!("drop capabilities (step {stepid})"),
            None,
        ),
        step::NO_NEW_PRIVS => (Layer::Process, "PR_SET_NO_NEW_PRIVS".into(), None),
        step::LANDLOCK_RULE => (Layer::Landlock, "landlock_add_rule".into(), None),
        step::LANDLOCK_RESTRICT => (Layer::Landlock, "landlock_restrict_self".into(), None),
        step::CLOSE_FDS => (
            Layer::Process,
            "close_range(3, ~0, CLOSE_RANGE_CLOEXEC)".into(),
            Some("needs Linux 5.11+"),
        ),
        step::SECCOMP => (
            Layer::Seccomp,
            "seccomp(SECCOMP_SET_MODE_FILTER)".into(),
            None,
        ),
        s if s >= step::SOURCE_BASE => {
            let i = (s - step::SOURCE_BASE) as usize;
            let path = prep.source_desc.get(i).cloned().unwrap_or_default();
            (
                Layer::Mounts,
                format!("re-open bind source {path} inside the mount namespace"),
                (errno == libc::ESTALE)
                    .then_some("the path was replaced while the sandbox was being set up"),
            )
        }
        s if s >= step::OP_BASE => {
            let i = (s - step::OP_BASE) as usize;
            match prep.op_desc.get(i) {
                Some((layer, d)) => (
                    *layer,
                    d.clone(),
                    (*layer == Layer::Proc && errno == libc::EPERM)
                        .then_some("the host's /proc is partly hidden (over-mounted), so a new proc may not be mounted"),
                ),
                None => (Layer::Mounts, format!("mount step {i}"), None),
            }
        }
        other => (Layer::Process, format!("step {other}"), None),
    };
    Error::Layer {
        layer,
        step: what,
        source,
        cause,
    }
}

/// The highest capability number the kernel knows (the bounding-set loop stops there).
fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .filter(|&n: &u32| n < 64)
        .unwrap_or(63)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn destinations() {
        assert!(check_dest(Path::new("/data")).is_ok());
        assert!(check_dest(Path::new("/opt/tool/bin")).is_ok());
        for bad in ["data", "/", "/proc", "/proc/sys", "/dev/sda", "/a/../etc"] {
            assert!(check_dest(Path::new(bad)).is_err(), "{bad}");
        }
    }

    proptest! {
        /// Whatever the caller passes, an accepted destination is absolute, has only normal
        /// components and stays out of the sandbox's own /proc and /dev.
        #[test]
        fn accepted_destinations_are_confined(s in "[/a-z.]{0,24}") {
            let p = Path::new(&s);
            if check_dest(p).is_ok() {
                prop_assert!(p.is_absolute());
                prop_assert!(p.components().all(|c| matches!(c, Component::RootDir | Component::Normal(_))));
                prop_assert!(!p.starts_with("/proc") && !p.starts_with("/dev"));
                prop_assert!(p != Path::new("/"));
            }
        }
    }
}
