//! Typed errors: which isolation layer failed, and the host's cause.
use std::fmt;
use std::io;
use std::path::PathBuf;

/// One isolation layer of the sandbox, as named in errors and in the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Layer {
    /// The new user namespace (and with it every other namespace, created in the same `clone`).
    UserNamespace,
    /// Writing `uid_map`, `gid_map` and `setgroups`, and switching to uid/gid 0 inside.
    IdMap,
    /// The cgroup namespace (entered after the caller's `before_start` hook).
    CgroupNamespace,
    /// The UTS namespace's host name.
    Hostname,
    /// The network namespace's loopback interface.
    Network,
    /// The tmpfs root, the binds, `pivot_root` and detaching the old root.
    Mounts,
    /// The fresh `/proc`.
    Proc,
    /// Landlock.
    Landlock,
    /// The seccomp filter.
    Seccomp,
    /// Dropping every capability (bounding, ambient, effective, permitted, inheritable).
    Capabilities,
    /// Resource limits.
    Rlimits,
    /// Session, parent-death signal, `no_new_privs`, closing inherited descriptors.
    Process,
    /// The caller's `before_start` hook (for example: moving the sandbox into a cgroup).
    Hook,
}

impl Layer {
    /// The layer's name as used in messages and reports.
    pub fn name(self) -> &'static str {
        match self {
            Layer::UserNamespace => "user namespace",
            Layer::IdMap => "uid/gid map",
            Layer::CgroupNamespace => "cgroup namespace",
            Layer::Hostname => "hostname",
            Layer::Network => "network namespace",
            Layer::Mounts => "mounts",
            Layer::Proc => "proc",
            Layer::Landlock => "landlock",
            Layer::Seccomp => "seccomp",
            Layer::Capabilities => "capabilities",
            Layer::Rlimits => "rlimits",
            Layer::Process => "process",
            Layer::Hook => "before_start hook",
        }
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Everything that can go wrong while building, starting or waiting for a sandbox.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid (nothing was started).
    #[error("invalid sandbox configuration: {0}")]
    Config(String),
    /// A host path given to the sandbox could not be used.
    #[error("{what} {path}: {source}")]
    Path {
        /// What the path was for (`--work`, `--ro`, profile path…).
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The host's error.
        #[source]
        source: io::Error,
    },
    /// A requested isolation layer could not be set up; the program was not run.
    #[error("{layer}: {step}: {source}{}", hint(.cause))]
    Layer {
        /// The layer that failed.
        layer: Layer,
        /// What exactly failed (the syscall and its arguments).
        step: String,
        /// The host's error.
        #[source]
        source: io::Error,
        /// A known host cause, when one can be named.
        cause: Option<&'static str>,
    },
    /// The caller's `before_start` hook refused; the program was not run.
    #[error("before_start hook: {0}")]
    Hook(String),
    /// The program was not found inside the sandbox (the sandbox was set up, nothing ran).
    #[error("{program}: not found inside the sandbox")]
    NotFound {
        /// The program as given.
        program: String,
    },
    /// The program exists inside the sandbox but could not be executed.
    #[error("{program}: cannot execute inside the sandbox: {source}")]
    NotExecutable {
        /// The program as given.
        program: String,
        /// `execve`'s error.
        #[source]
        source: io::Error,
    },
    /// Talking to or waiting for the sandbox's processes failed.
    #[error("sandbox supervision: {0}")]
    Supervise(#[source] io::Error),
}

fn hint(h: &Option<&'static str>) -> String {
    match h {
        Some(h) => format!(" ({h})"),
        None => String::new(),
    }
}

impl Error {
    /// The layer that failed, if this error is about an isolation layer.
    pub fn layer(&self) -> Option<Layer> {
        match self {
            Error::Layer { layer, .. } => Some(*layer),
            Error::Hook(_) => Some(Layer::Hook),
            _ => None,
        }
    }

    /// True when nothing ran because the sandbox could not be set up (exit code 125 in `sandbox-run`).
    pub fn is_setup_failure(&self) -> bool {
        !matches!(self, Error::NotFound { .. } | Error::NotExecutable { .. })
    }
}
