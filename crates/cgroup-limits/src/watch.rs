//! Waiting for cgroup events without polling: inotify `IN_MODIFY` on v2 event files
//! (`memory.events`, `cgroup.events`), and on v1 an eventfd registered on
//! `memory.oom_control` through `cgroup.event_control`.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use inotify::{Inotify, WatchMask};
use rustix::event::{EventfdFlags, PollFd, PollFlags, Timespec};

use crate::WorkloadCgroup;
use crate::error::CgroupError;
use crate::fsio;

/// A source of "this file changed" wake-ups.
#[derive(Debug)]
enum Source {
    Inotify(Inotify),
    /// The eventfd; the `memory.oom_control` file must stay open while it is registered.
    Eventfd {
        efd: OwnedFd,
        _control: File,
    },
}

/// Waits for OOM events of a workload. The kernel's counter
/// ([`WorkloadCgroup::oom_kills`]) stays the truth: a wake-up only says "look again".
///
/// v2: inotify on `memory.events` (which the kernel modifies on every event); v1: an eventfd
/// registered on `memory.oom_control`, signalled when the group hits its limit.
#[derive(Debug)]
pub struct OomWatch {
    source: Source,
    path: PathBuf,
}

impl OomWatch {
    /// Starts watching `group`'s memory events. Needs a memory group
    /// ([`CgroupError::NotTracked`] otherwise).
    pub fn new(group: &WorkloadCgroup) -> Result<Self, CgroupError> {
        let Some((dir, v2)) = group.memory_dir() else {
            return Err(CgroupError::NotTracked {
                controller: "memory",
                operation: "watch OOM events",
            });
        };
        if v2 {
            let path = dir.join("memory.events");
            Ok(Self {
                source: Source::Inotify(inotify_on(&path)?),
                path,
            })
        } else {
            let path = dir.join("memory.oom_control");
            let watch_err = |source: io::Error| CgroupError::Watch {
                path: path.clone(),
                source,
            };
            let control = File::open(&path).map_err(watch_err)?;
            let efd = rustix::event::eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)
                .map_err(|e| watch_err(e.into()))?;
            let line = format!("{} {}", efd.as_raw_fd(), control.as_raw_fd());
            fsio::write_control(&dir.join("cgroup.event_control"), &line)?;
            Ok(Self {
                source: Source::Eventfd {
                    efd,
                    _control: control,
                },
                path,
            })
        }
    }

    /// Blocks until an event arrives (`true`) or `timeout` passes (`false`).
    pub fn wait(&mut self, timeout: Duration) -> Result<bool, CgroupError> {
        wait_source(&mut self.source, &self.path, timeout)
    }
}

fn inotify_on(path: &Path) -> Result<Inotify, CgroupError> {
    let err = |source| CgroupError::Watch {
        path: path.to_owned(),
        source,
    };
    let inotify = Inotify::init().map_err(err)?;
    inotify
        .watches()
        .add(path, WatchMask::MODIFY)
        .map_err(err)?;
    Ok(inotify)
}

/// Waits for one wake-up of `source`, draining what is pending.
fn wait_source(source: &mut Source, path: &Path, timeout: Duration) -> Result<bool, CgroupError> {
    let err = |source: io::Error| CgroupError::Watch {
        path: path.to_owned(),
        source,
    };
    let ready = {
        let fd = match &*source {
            Source::Inotify(i) => i.as_fd(),
            Source::Eventfd { efd, .. } => efd.as_fd(),
        };
        poll_readable(fd, timeout).map_err(err)?
    };
    if !ready {
        return Ok(false);
    }
    match source {
        Source::Inotify(i) => {
            let mut buf = [0u8; 1024];
            match i.read_events(&mut buf) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(err(e)),
            }
        }
        Source::Eventfd { efd, .. } => {
            let mut buf = [0u8; 8];
            match rustix::io::read(&*efd, &mut buf) {
                Ok(_) | Err(rustix::io::Errno::AGAIN) => {}
                Err(e) => return Err(err(e.into())),
            }
        }
    }
    Ok(true)
}

fn poll_readable(fd: std::os::fd::BorrowedFd<'_>, timeout: Duration) -> io::Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ts = Timespec {
            tv_sec: i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(left.subsec_nanos()),
        };
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        match rustix::event::poll(&mut fds, Some(&ts)) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Waits until the group at `dir` (v2) has no process: `cgroup.events` `populated 0`, woken
/// by inotify. Returns `false` on timeout.
pub(crate) fn wait_unpopulated(dir: &Path, timeout: Duration) -> Result<bool, CgroupError> {
    let path = dir.join("cgroup.events");
    let mut source = Source::Inotify(inotify_on(&path)?);
    let deadline = Instant::now() + timeout;
    loop {
        // Read after the watch is in place, so no change is missed in between.
        let populated = fsio::read_parsed(&path, |t| {
            crate::parse::parse_flat_keyed(t)?.require("populated")
        })?;
        if populated == 0 {
            return Ok(true);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || !wait_source(&mut source, &path, left)? {
            return Ok(false);
        }
    }
}
