//! The parts done with cgroups-rs: limit writes and freezing, through its per-controller types
//! pointed at directories this crate created (never its `Cgroup`/hierarchy layer, which assumes
//! `/sys/fs/cgroup` is the v2 root, creates directories in every hierarchy and swallows some
//! write errors in `apply()`).
//!
//! Every call is one write whose error cgroups-rs returns; it is turned into
//! [`CgroupError::Write`] with the full path and value.

use std::io;
use std::path::{Path, PathBuf};

use cgroups_rs::fs::MaxValue;
use cgroups_rs::fs::cpu::CpuController;
use cgroups_rs::fs::freezer::FreezerController;
use cgroups_rs::fs::memory::{MemController, SetMemory};
use cgroups_rs::fs::pid::PidController;

use crate::error::CgroupError;
use crate::limits::{AppliedLimit, CPU_PERIOD_US, weight_to_shares};

const WRITER: &str = "cgroups-rs";

/// Converts a cgroups-rs error into ours, keeping the OS error when there is one.
fn write_error(path: PathBuf, value: String, err: &cgroups_rs::fs::error::Error) -> CgroupError {
    let os = std::error::Error::source(err).and_then(|s| s.downcast_ref::<io::Error>());
    let source = match os {
        Some(e) => match e.raw_os_error() {
            Some(code) => io::Error::from_raw_os_error(code),
            None => io::Error::new(e.kind(), e.to_string()),
        },
        None => io::Error::other(err.to_string()),
    };
    CgroupError::Write {
        path,
        value,
        source,
    }
}

fn record(
    limit: &'static str,
    dir: &Path,
    file: &str,
    value: String,
    result: cgroups_rs::fs::error::Result<()>,
) -> Result<AppliedLimit, CgroupError> {
    let path = dir.join(file);
    match result {
        Ok(()) => Ok(AppliedLimit {
            limit,
            file: path,
            value,
            writer: WRITER,
        }),
        Err(e) => Err(write_error(path, value, &e)),
    }
}

fn to_i64(limit: &'static str, v: u64) -> Result<i64, CgroupError> {
    i64::try_from(v).map_err(|_| CgroupError::InvalidLimit {
        limit,
        value: v.to_string(),
        reason: "must fit in a signed 64-bit integer",
    })
}

/// `memory_max`: v1 `memory.limit_in_bytes` (+ `memory.memsw.limit_in_bytes` when swap is
/// accounted, so swap is no way around the limit); v2 `memory.max` (+ `memory.swap.max` = 0).
pub(crate) fn set_memory_max(
    dir: &Path,
    v2: bool,
    bytes: u64,
) -> Result<Vec<AppliedLimit>, CgroupError> {
    let mem = MemController::new(dir.to_owned(), PathBuf::new(), v2);
    let value = to_i64("memory_max", bytes)?;
    let mut out = Vec::new();
    if v2 {
        out.push(record(
            "memory_max",
            dir,
            "memory.max",
            bytes.to_string(),
            mem.set_limit(value),
        )?);
        if dir.join("memory.swap.max").exists() {
            out.push(record(
                "memory_max",
                dir,
                "memory.swap.max",
                "0".to_owned(),
                mem.set_memswap_limit(0),
            )?);
        }
    } else {
        out.push(record(
            "memory_max",
            dir,
            "memory.limit_in_bytes",
            bytes.to_string(),
            mem.set_limit(value),
        )?);
        if dir.join("memory.memsw.limit_in_bytes").exists() {
            out.push(record(
                "memory_max",
                dir,
                "memory.memsw.limit_in_bytes",
                bytes.to_string(),
                mem.set_memswap_limit(value),
            )?);
        }
    }
    Ok(out)
}

/// `memory_high` (v2 only): `memory.high`.
pub(crate) fn set_memory_high(dir: &Path, bytes: u64) -> Result<AppliedLimit, CgroupError> {
    let mem = MemController::new(dir.to_owned(), PathBuf::new(), true);
    let value = to_i64("memory_high", bytes)?;
    record(
        "memory_high",
        dir,
        "memory.high",
        bytes.to_string(),
        mem.set_mem(SetMemory {
            low: None,
            high: Some(MaxValue::Value(value)),
            min: None,
            max: None,
        }),
    )
}

/// `cpu_fraction`: v1 `cpu.cfs_period_us` then `cpu.cfs_quota_us`; v2 `cpu.max`.
pub(crate) fn set_cpu_quota(
    dir: &Path,
    v2: bool,
    quota_us: u64,
) -> Result<Vec<AppliedLimit>, CgroupError> {
    let cpu = CpuController::new(dir.to_owned(), PathBuf::new(), v2);
    let quota = to_i64("cpu_fraction", quota_us)?;
    if v2 {
        Ok(vec![record(
            "cpu_fraction",
            dir,
            "cpu.max",
            format!("{quota_us} {CPU_PERIOD_US}"),
            cpu.set_cfs_quota_and_period(Some(quota), Some(CPU_PERIOD_US)),
        )?])
    } else {
        Ok(vec![
            record(
                "cpu_fraction",
                dir,
                "cpu.cfs_period_us",
                CPU_PERIOD_US.to_string(),
                cpu.set_cfs_period(CPU_PERIOD_US),
            )?,
            record(
                "cpu_fraction",
                dir,
                "cpu.cfs_quota_us",
                quota_us.to_string(),
                cpu.set_cfs_quota(quota),
            )?,
        ])
    }
}

/// `cpu_weight`: v2 `cpu.weight`; v1 `cpu.shares` (converted).
pub(crate) fn set_cpu_weight(
    dir: &Path,
    v2: bool,
    weight: u32,
) -> Result<AppliedLimit, CgroupError> {
    let cpu = CpuController::new(dir.to_owned(), PathBuf::new(), v2);
    if v2 {
        let w = u64::from(weight);
        record(
            "cpu_weight",
            dir,
            "cpu.weight",
            w.to_string(),
            cpu.set_shares(w),
        )
    } else {
        let shares = weight_to_shares(weight);
        record(
            "cpu_weight",
            dir,
            "cpu.shares",
            shares.to_string(),
            cpu.set_shares(shares),
        )
    }
}

/// `pids_max`: `pids.max` (same file on v1 and v2).
pub(crate) fn set_pids_max(dir: &Path, v2: bool, max: u64) -> Result<AppliedLimit, CgroupError> {
    let pids = PidController::new(dir.to_owned(), PathBuf::new(), v2);
    let value = to_i64("pids_max", max)?;
    record(
        "pids_max",
        dir,
        "pids.max",
        max.to_string(),
        pids.set_pid_max(MaxValue::Value(value)),
    )
}

/// Freezes (v1 `freezer.state` = FROZEN, v2 `cgroup.freeze` = 1) or thaws the group at `dir`.
pub(crate) fn set_frozen(dir: &Path, v2: bool, frozen: bool) -> Result<(), CgroupError> {
    let freezer = FreezerController::new(dir.to_owned(), PathBuf::new(), v2);
    let (file, value) = match (v2, frozen) {
        (true, true) => ("cgroup.freeze", "1"),
        (true, false) => ("cgroup.freeze", "0"),
        (false, true) => ("freezer.state", "FROZEN"),
        (false, false) => ("freezer.state", "THAWED"),
    };
    let result = if frozen {
        freezer.freeze()
    } else {
        freezer.thaw()
    };
    result.map_err(|e| write_error(dir.join(file), value.to_owned(), &e))
}

#[cfg(test)]
mod tests {
    //! The file names and values written, checked on plain directories standing in for cgroup
    //! directories: this host has no v2 controllers, so the v2 writes are checked here.
    use super::*;

    fn read(dir: &Path, file: &str) -> String {
        std::fs::read_to_string(dir.join(file)).unwrap()
    }

    #[test]
    fn v2_files_and_values() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        std::fs::write(d.join("memory.swap.max"), "max\n").unwrap();
        std::fs::write(d.join("cpu.max"), "max 100000\n").unwrap();
        let applied = set_memory_max(d, true, 64 << 20).unwrap();
        assert_eq!(read(d, "memory.max"), "67108864");
        assert_eq!(read(d, "memory.swap.max"), "0");
        assert_eq!(applied.len(), 2);
        set_memory_high(d, 32 << 20).unwrap();
        assert_eq!(read(d, "memory.high"), "33554432");
        set_cpu_quota(d, true, 25_000).unwrap();
        assert_eq!(read(d, "cpu.max"), "25000 100000");
        set_cpu_weight(d, true, 100).unwrap();
        assert_eq!(read(d, "cpu.weight"), "100");
        set_pids_max(d, true, 32).unwrap();
        assert_eq!(read(d, "pids.max"), "32");
        set_frozen(d, true, true).unwrap();
        assert_eq!(read(d, "cgroup.freeze"), "1");
        set_frozen(d, true, false).unwrap();
        assert_eq!(read(d, "cgroup.freeze"), "0");
    }

    #[test]
    fn v1_files_and_values() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        // No memsw file: swap accounting off, only the memory limit is written.
        assert_eq!(set_memory_max(d, false, 4096).unwrap().len(), 1);
        std::fs::write(d.join("memory.memsw.limit_in_bytes"), "").unwrap();
        assert_eq!(set_memory_max(d, false, 1 << 20).unwrap().len(), 2);
        assert_eq!(read(d, "memory.limit_in_bytes"), "1048576");
        assert_eq!(read(d, "memory.memsw.limit_in_bytes"), "1048576");
        let cpu = set_cpu_quota(d, false, 50_000).unwrap();
        assert_eq!(cpu.len(), 2);
        assert_eq!(read(d, "cpu.cfs_period_us"), "100000");
        assert_eq!(read(d, "cpu.cfs_quota_us"), "50000");
        set_cpu_weight(d, false, 10_000).unwrap();
        assert_eq!(read(d, "cpu.shares"), "262144");
        set_frozen(d, false, true).unwrap();
        assert_eq!(read(d, "freezer.state"), "FROZEN");
    }

    #[test]
    fn a_failed_write_names_path_value_and_os_error() {
        let missing = Path::new("/nonexistent-cgroup-dir");
        let err = set_pids_max(missing, true, 5).unwrap_err();
        match &err {
            CgroupError::Write {
                path,
                value,
                source,
            } => {
                assert_eq!(path, &missing.join("pids.max"));
                assert_eq!(value, "5");
                assert_eq!(source.kind(), io::ErrorKind::NotFound, "{source}");
            }
            other => panic!("{other}"),
        }
        assert!(err.to_string().contains("/nonexistent-cgroup-dir/pids.max"));
    }
}
