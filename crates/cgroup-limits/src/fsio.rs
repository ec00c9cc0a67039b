//! Reading and writing cgroup files: bounded reads, single-write updates, no symlinks.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rustix::fs::OFlags;

use crate::error::{CgroupError, ParseError};
use crate::parse::MAX_CONTROL_FILE;

/// `statfs` magic numbers (linux/magic.h).
pub(crate) const CGROUP_SUPER_MAGIC: u64 = 0x0027_e0eb;
pub(crate) const CGROUP2_SUPER_MAGIC: u64 = 0x6367_7270;

fn no_follow() -> i32 {
    // O_NOFOLLOW and O_CLOEXEC fit in an i32 on every Linux ABI.
    OFlags::NOFOLLOW.bits().cast_signed() | OFlags::CLOEXEC.bits().cast_signed()
}

/// Reads a file of at most `max` bytes as UTF-8.
pub(crate) fn read_bounded(path: &Path, max: usize) -> Result<String, CgroupError> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(no_follow())
        .open(path)
        .map_err(|source| CgroupError::Read {
            path: path.to_owned(),
            source,
        })?;
    let mut buf = Vec::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    file.take(limit)
        .read_to_end(&mut buf)
        .map_err(|source| CgroupError::Read {
            path: path.to_owned(),
            source,
        })?;
    if buf.len() > max {
        return Err(CgroupError::Parse {
            path: path.to_owned(),
            error: ParseError::TooLarge { max },
        });
    }
    String::from_utf8(buf).map_err(|_| CgroupError::Parse {
        path: path.to_owned(),
        error: ParseError::NotUtf8,
    })
}

/// Reads a control file (bounded to [`MAX_CONTROL_FILE`]).
pub(crate) fn read_control(path: &Path) -> Result<String, CgroupError> {
    read_bounded(path, MAX_CONTROL_FILE)
}

/// Reads and parses a control file, attaching the path to a parse error.
pub(crate) fn read_parsed<T>(
    path: &Path,
    parse: impl FnOnce(&str) -> Result<T, ParseError>,
) -> Result<T, CgroupError> {
    let text = read_control(path)?;
    parse(&text).map_err(|error| CgroupError::Parse {
        path: path.to_owned(),
        error,
    })
}

/// Writes `value` to an existing control file in one `write` (cgroup files act per write call).
/// Never creates or truncates, never follows a symlink.
pub(crate) fn write_control(path: &Path, value: &str) -> Result<(), CgroupError> {
    let map = |source| CgroupError::Write {
        path: path.to_owned(),
        value: value.to_owned(),
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .custom_flags(no_follow())
        .open(path)
        .map_err(map)?;
    file.write_all(value.as_bytes()).map_err(map)
}

/// The `statfs` magic of the filesystem holding `path`.
pub(crate) fn fs_magic(path: &Path) -> Result<u64, CgroupError> {
    let st = rustix::fs::statfs(path).map_err(|e| CgroupError::Inspect {
        path: path.to_owned(),
        source: e.into(),
    })?;
    // f_type's integer type differs between ABIs; magics are positive 32-bit values.
    #[allow(clippy::useless_conversion, clippy::unnecessary_cast)]
    let magic = st.f_type as u64;
    Ok(magic)
}

/// Fails unless `path` is on a cgroup (v1 or v2) filesystem.
pub(crate) fn ensure_cgroup_fs(path: &Path) -> Result<bool, CgroupError> {
    match fs_magic(path)? {
        CGROUP2_SUPER_MAGIC => Ok(true),
        CGROUP_SUPER_MAGIC => Ok(false),
        magic => Err(CgroupError::NotCgroupFs {
            path: path.to_owned(),
            magic,
        }),
    }
}
