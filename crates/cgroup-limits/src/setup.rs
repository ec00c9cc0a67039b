//! Which cgroup setup the host has (v2 unified, hybrid, v1 legacy) and where our own cgroup is.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::CgroupError;
use crate::fsio::{self, CGROUP_SUPER_MAGIC, CGROUP2_SUPER_MAGIC};
use crate::parse::{self, MAX_MOUNTINFO, ProcCgroupEntry};

/// The usual mount point of the cgroup filesystem(s).
pub const DEFAULT_CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// One mounted cgroup hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMount {
    /// Where the hierarchy is mounted, e.g. `/sys/fs/cgroup/memory`.
    pub mount_point: PathBuf,
    /// Which cgroup of the hierarchy is visible at the mount point (mountinfo field 4), `/` for
    /// a full mount; containers without a cgroup namespace often see `/docker/<id>` here.
    pub mount_root: String,
}

impl CgroupMount {
    /// A hierarchy mounted in full at `mount_point`.
    pub fn new(mount_point: impl Into<PathBuf>) -> Self {
        Self {
            mount_point: mount_point.into(),
            mount_root: "/".to_owned(),
        }
    }

    /// The directory of cgroup `cgroup_path` (as in `/proc/self/cgroup`) in this mount.
    pub(crate) fn dir_of(&self, cgroup_path: &str) -> Result<PathBuf, CgroupError> {
        let outside = || CgroupError::OutsideMount {
            cgroup_path: cgroup_path.to_owned(),
            mount_root: self.mount_root.clone(),
            mount_point: self.mount_point.clone(),
        };
        let rel = if self.mount_root == "/" {
            cgroup_path
        } else {
            let rest = cgroup_path
                .strip_prefix(self.mount_root.as_str())
                .ok_or_else(outside)?;
            if !(rest.is_empty() || rest.starts_with('/')) {
                return Err(outside());
            }
            rest
        };
        let mut dir = self.mount_point.clone();
        for component in rel.split('/').filter(|c| !c.is_empty()) {
            if component == "." || component == ".." {
                return Err(outside());
            }
            dir.push(component);
        }
        Ok(dir)
    }
}

/// The v1 hierarchies this crate uses, each `None` when not mounted. Co-mounted controllers
/// (`cpu,cpuacct`) share one mount.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct V1Mounts {
    /// `memory`: limits, usage, OOM counters.
    pub memory: Option<CgroupMount>,
    /// `cpu`: CFS quota and shares.
    pub cpu: Option<CgroupMount>,
    /// `cpuacct`: CPU time used.
    pub cpuacct: Option<CgroupMount>,
    /// `pids`: process count limit.
    pub pids: Option<CgroupMount>,
    /// `freezer`: freeze before killing, so no member can fork or exit in between.
    pub freezer: Option<CgroupMount>,
}

impl V1Mounts {
    fn is_empty(&self) -> bool {
        self.memory.is_none()
            && self.cpu.is_none()
            && self.cpuacct.is_none()
            && self.pids.is_none()
            && self.freezer.is_none()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&'static str, &CgroupMount)> {
        [
            ("memory", &self.memory),
            ("cpu", &self.cpu),
            ("cpuacct", &self.cpuacct),
            ("pids", &self.pids),
            ("freezer", &self.freezer),
        ]
        .into_iter()
        .filter_map(|(name, m)| m.as_ref().map(|m| (name, m)))
    }
}

/// The cgroup setup of the host, as found by [`CgroupSetup::detect`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CgroupSetup {
    /// cgroup v2 only (`/sys/fs/cgroup` is cgroup2): every controller in one hierarchy.
    Unified {
        /// The v2 hierarchy.
        root: CgroupMount,
    },
    /// v1 controllers plus a v2 hierarchy (usually `/sys/fs/cgroup/unified`) without
    /// controllers; the v2 group is still used for `cgroup.kill`, `cgroup.events` and freezing.
    Hybrid {
        /// The v1 controller hierarchies.
        v1: V1Mounts,
        /// The controller-less v2 hierarchy.
        unified: CgroupMount,
    },
    /// v1 controllers only.
    Legacy {
        /// The v1 controller hierarchies.
        v1: V1Mounts,
    },
}

/// Short name of a [`CgroupSetup`], for reports: `v2`, `v1-hybrid` or `v1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub enum SetupKind {
    /// cgroup v2 only.
    #[serde(rename = "v2")]
    Unified,
    /// v1 controllers plus a controller-less v2 hierarchy.
    #[serde(rename = "v1-hybrid")]
    Hybrid,
    /// v1 only.
    #[serde(rename = "v1")]
    Legacy,
}

impl SetupKind {
    /// The short name used in reports: `v2`, `v1-hybrid` or `v1`.
    pub fn as_str(self) -> &'static str {
        match self {
            SetupKind::Unified => "v2",
            SetupKind::Hybrid => "v1-hybrid",
            SetupKind::Legacy => "v1",
        }
    }
}

impl fmt::Display for SetupKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SetupKind::Unified => "v2 (unified)",
            SetupKind::Hybrid => "v1-hybrid (cgroup v1 controllers + v2)",
            SetupKind::Legacy => "v1 (legacy)",
        })
    }
}

impl CgroupSetup {
    /// Detects the setup: `statfs("/sys/fs/cgroup")` says cgroup2 (unified) or tmpfs (v1 or
    /// hybrid); v1 controller mounts and any v2 mount are then read from
    /// `/proc/self/mountinfo`, and each is checked with `statfs` again.
    pub fn detect() -> Result<Self, CgroupError> {
        Self::detect_at(Path::new(DEFAULT_CGROUP_ROOT))
    }

    /// As [`CgroupSetup::detect`], with another place for the top cgroup mount.
    pub fn detect_at(cgroup_root: &Path) -> Result<Self, CgroupError> {
        let top_magic = fsio::fs_magic(cgroup_root)?;
        if top_magic == CGROUP2_SUPER_MAGIC {
            let mountinfo = read_mountinfo()?;
            let mount_root = mountinfo
                .iter()
                .find(|m| m.v2 && Path::new(&m.mount_point) == cgroup_root)
                .map_or_else(|| "/".to_owned(), |m| m.root.clone());
            return Ok(CgroupSetup::Unified {
                root: CgroupMount {
                    mount_point: cgroup_root.to_owned(),
                    mount_root,
                },
            });
        }
        let mountinfo = read_mountinfo()?;
        let mut v1 = V1Mounts::default();
        let mut unified: Option<CgroupMount> = None;
        for entry in &mountinfo {
            let mount = CgroupMount {
                mount_point: PathBuf::from(&entry.mount_point),
                mount_root: entry.root.clone(),
            };
            // A mount that statfs does not confirm (stale, shadowed) is not used.
            let expected = if entry.v2 {
                CGROUP2_SUPER_MAGIC
            } else {
                CGROUP_SUPER_MAGIC
            };
            if fsio::fs_magic(&mount.mount_point).ok() != Some(expected) {
                continue;
            }
            if entry.v2 {
                // Prefer the one below the cgroup root (`.../unified`) over others.
                if unified.is_none() || mount.mount_point.starts_with(cgroup_root) {
                    unified = Some(mount);
                }
                continue;
            }
            for (name, slot) in [
                ("memory", &mut v1.memory),
                ("cpu", &mut v1.cpu),
                ("cpuacct", &mut v1.cpuacct),
                ("pids", &mut v1.pids),
                ("freezer", &mut v1.freezer),
            ] {
                if slot.is_none() && entry.super_options.iter().any(|o| o == name) {
                    *slot = Some(mount.clone());
                }
            }
        }
        match (v1.is_empty(), unified) {
            (false, Some(unified)) => Ok(CgroupSetup::Hybrid { v1, unified }),
            (false, None) => Ok(CgroupSetup::Legacy { v1 }),
            (true, Some(root)) => Ok(CgroupSetup::Unified { root }),
            (true, None) => Err(CgroupError::NoCgroupMount),
        }
    }

    /// Which kind of setup this is.
    pub fn kind(&self) -> SetupKind {
        match self {
            CgroupSetup::Unified { .. } => SetupKind::Unified,
            CgroupSetup::Hybrid { .. } => SetupKind::Hybrid,
            CgroupSetup::Legacy { .. } => SetupKind::Legacy,
        }
    }

    /// The v2 hierarchy of this setup alone, as a [`CgroupSetup::Unified`] setup: on a hybrid
    /// host that is the controller-less v2 tree (groups, `cgroup.kill`, `cgroup.events` and
    /// freezing work there, limits do not). `None` on a v1-only host.
    pub fn v2_only(&self) -> Option<CgroupSetup> {
        self.v2()
            .map(|root| CgroupSetup::Unified { root: root.clone() })
    }

    /// The v1 hierarchies of this setup alone, as a [`CgroupSetup::Legacy`] setup (teardown
    /// then uses the v1 freezer instead of `cgroup.kill`). `None` on a v2-only host.
    pub fn v1_only(&self) -> Option<CgroupSetup> {
        self.v1().map(|v1| CgroupSetup::Legacy { v1: v1.clone() })
    }

    pub(crate) fn v1(&self) -> Option<&V1Mounts> {
        match self {
            CgroupSetup::Unified { .. } => None,
            CgroupSetup::Hybrid { v1, .. } | CgroupSetup::Legacy { v1 } => Some(v1),
        }
    }

    pub(crate) fn v2(&self) -> Option<&CgroupMount> {
        match self {
            CgroupSetup::Unified { root } => Some(root),
            CgroupSetup::Hybrid { unified, .. } => Some(unified),
            CgroupSetup::Legacy { .. } => None,
        }
    }
}

impl fmt::Display for CgroupSetup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind())?;
        if let Some(v1) = self.v1() {
            for (name, m) in v1.iter() {
                write!(f, "; v1 {name} at {}", m.mount_point.display())?;
            }
        }
        if let Some(v2) = self.v2() {
            write!(f, "; v2 at {}", v2.mount_point.display())?;
        }
        Ok(())
    }
}

fn read_mountinfo() -> Result<Vec<parse::CgroupMountEntry>, CgroupError> {
    let path = Path::new("/proc/self/mountinfo");
    let text = fsio::read_bounded(path, MAX_MOUNTINFO)?;
    parse::parse_mountinfo_cgroups(&text).map_err(|error| CgroupError::Parse {
        path: path.to_owned(),
        error,
    })
}

/// Our own cgroups, from `/proc/self/cgroup`.
pub(crate) fn own_cgroups() -> Result<Vec<ProcCgroupEntry>, CgroupError> {
    fsio::read_parsed(Path::new("/proc/self/cgroup"), parse::parse_proc_cgroup)
}

/// Our cgroup path in the v1 hierarchy of `controller`, or the v2 one for `None`.
pub(crate) fn own_path(
    entries: &[ProcCgroupEntry],
    controller: Option<&str>,
) -> Result<String, CgroupError> {
    let found = entries.iter().find(|e| match controller {
        Some(c) => e.hierarchy_id != 0 && e.controllers.iter().any(|x| x == c),
        None => e.hierarchy_id == 0 && e.controllers.is_empty(),
    });
    found
        .map(|e| e.path.clone())
        .ok_or_else(|| CgroupError::OwnCgroupUnknown {
            hierarchy: controller.unwrap_or("unified").to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_of_handles_mount_roots() {
        let full = CgroupMount::new("/sys/fs/cgroup/memory");
        assert_eq!(
            full.dir_of("/process_api/x").unwrap(),
            PathBuf::from("/sys/fs/cgroup/memory/process_api/x")
        );
        assert_eq!(
            full.dir_of("/").unwrap(),
            PathBuf::from("/sys/fs/cgroup/memory")
        );
        assert!(full.dir_of("/a/../b").is_err());
        let sub = CgroupMount {
            mount_point: PathBuf::from("/sys/fs/cgroup"),
            mount_root: "/docker/ab".to_owned(),
        };
        assert_eq!(
            sub.dir_of("/docker/ab/x").unwrap(),
            PathBuf::from("/sys/fs/cgroup/x")
        );
        assert!(sub.dir_of("/docker/abc").is_err());
        assert!(sub.dir_of("/other").is_err());
    }

    #[test]
    fn detect_on_this_host_names_a_setup() {
        // Every host this crate runs its tests on has cgroups mounted; say which.
        let setup = CgroupSetup::detect().unwrap();
        println!("detected: {setup}");
        if let Some(v2) = setup.v2() {
            assert!(v2.mount_point.starts_with(DEFAULT_CGROUP_ROOT));
        }
    }
}
