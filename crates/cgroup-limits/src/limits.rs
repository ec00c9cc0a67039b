//! What a workload may use, and the record of what was applied.

use std::path::PathBuf;

use crate::error::CgroupError;

/// CFS period used for `cpu_fraction` (100 ms, the kernel default).
pub(crate) const CPU_PERIOD_US: u64 = 100_000;
/// The kernel refuses quotas below 1 ms.
const MIN_CPU_QUOTA_US: u64 = 1_000;
/// 1024 CPUs: far beyond any host this runs on, small enough that quotas stay in range.
const MAX_CPU_FRACTION: f64 = 1024.0;

/// Resource limits of one workload. `None` leaves a resource unlimited (inherited from the
/// parent group).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct Limits {
    /// Hard memory limit in bytes (v2 `memory.max`; v1 `memory.limit_in_bytes`, and
    /// `memory.memsw.limit_in_bytes` set to the same value where swap accounting exists, so the
    /// workload cannot escape to swap). Reaching it triggers the OOM killer in the group.
    pub memory_max: Option<u64>,
    /// Memory throttling threshold in bytes (v2 `memory.high` only; v1 has no equivalent).
    pub memory_high: Option<u64>,
    /// CPU bandwidth as a fraction of one CPU (0.25 = a quarter of one CPU, 2.0 = two CPUs),
    /// at least 0.01. Enforced with a 100 ms CFS period.
    pub cpu_fraction: Option<f64>,
    /// Relative CPU weight, 1..=10000 (v2 `cpu.weight`; default 100). On v1 converted to
    /// `cpu.shares` (100 ↦ 1024 is not exact: the OCI conversion is used).
    pub cpu_weight: Option<u32>,
    /// Maximum number of processes and threads (`pids.max`), at least 1.
    pub pids_max: Option<u64>,
}

impl Limits {
    /// No limits: the group still tracks usage and can be killed as a unit.
    pub fn none() -> Self {
        Self::default()
    }

    /// Sets [`Limits::memory_max`].
    #[must_use]
    pub fn with_memory_max(mut self, bytes: u64) -> Self {
        self.memory_max = Some(bytes);
        self
    }

    /// Sets [`Limits::memory_high`].
    #[must_use]
    pub fn with_memory_high(mut self, bytes: u64) -> Self {
        self.memory_high = Some(bytes);
        self
    }

    /// Sets [`Limits::cpu_fraction`].
    #[must_use]
    pub fn with_cpu_fraction(mut self, fraction_of_one_cpu: f64) -> Self {
        self.cpu_fraction = Some(fraction_of_one_cpu);
        self
    }

    /// Sets [`Limits::cpu_weight`].
    #[must_use]
    pub fn with_cpu_weight(mut self, weight: u32) -> Self {
        self.cpu_weight = Some(weight);
        self
    }

    /// Sets [`Limits::pids_max`].
    #[must_use]
    pub fn with_pids_max(mut self, max: u64) -> Self {
        self.pids_max = Some(max);
        self
    }

    /// Checks every value's range, before anything is created.
    pub fn validate(&self) -> Result<(), CgroupError> {
        // v1 files take an i64; anything above is "unlimited" there anyway.
        let i64_max = u64::try_from(i64::MAX).unwrap_or(u64::MAX);
        for (limit, value) in [
            ("memory_max", self.memory_max),
            ("memory_high", self.memory_high),
        ] {
            if let Some(v) = value {
                if v == 0 {
                    return Err(invalid(limit, v, "must be at least 1 byte"));
                }
                if v > i64_max {
                    return Err(invalid(limit, v, "must fit in a signed 64-bit integer"));
                }
            }
        }
        if let Some(f) = self.cpu_fraction {
            cpu_quota_us(f)?;
        }
        if let Some(w) = self.cpu_weight
            && !(1..=10_000).contains(&w)
        {
            return Err(invalid("cpu_weight", w, "must be within 1..=10000"));
        }
        if let Some(p) = self.pids_max {
            if p == 0 {
                return Err(invalid("pids_max", p, "must be at least 1"));
            }
            if p > i64_max {
                return Err(invalid(
                    "pids_max",
                    p,
                    "must fit in a signed 64-bit integer",
                ));
            }
        }
        Ok(())
    }
}

fn invalid(limit: &'static str, value: impl ToString, reason: &'static str) -> CgroupError {
    CgroupError::InvalidLimit {
        limit,
        value: value.to_string(),
        reason,
    }
}

/// Quota in µs per [`CPU_PERIOD_US`] for a fraction of one CPU.
pub(crate) fn cpu_quota_us(fraction: f64) -> Result<u64, CgroupError> {
    if !fraction.is_finite() || fraction <= 0.0 {
        return Err(invalid(
            "cpu_fraction",
            fraction,
            "must be a positive number",
        ));
    }
    if fraction > MAX_CPU_FRACTION {
        return Err(invalid(
            "cpu_fraction",
            fraction,
            "must be at most 1024 CPUs",
        ));
    }
    // Bounded above, so the product fits comfortably in u64.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let quota = (fraction * CPU_PERIOD_US as f64).round() as u64;
    if quota < MIN_CPU_QUOTA_US {
        return Err(invalid(
            "cpu_fraction",
            fraction,
            "must be at least 0.01 (the kernel's 1 ms minimum quota)",
        ));
    }
    Ok(quota)
}

/// v2 `cpu.weight` (1..=10000) to v1 `cpu.shares` (2..=262144): the inverse of the OCI/runc
/// conversion `weight = 1 + (shares - 2) * 9999 / 262142`.
pub(crate) fn weight_to_shares(weight: u32) -> u64 {
    let w = u64::from(weight.clamp(1, 10_000));
    2 + ((w - 1) * 262_142).div_ceil(9_999)
}

/// Longest size or fraction text accepted (`"18446744073709551615"` is 20 bytes).
const MAX_LIMIT_TEXT: usize = 32;

/// Parses a memory size: an integer number of bytes with an optional binary suffix `K`, `M`,
/// `G` or `T` (case-insensitive, optionally followed by `i`, `B` or `iB`): `"512M"`,
/// `"64MiB"`, `"1g"`, `"1048576"`. Fractions and `max` are refused; zero is refused.
///
/// ```
/// assert_eq!(cgroup_limits::parse_size("512M").unwrap(), 512 << 20);
/// assert!(cgroup_limits::parse_size("0.5G").is_err());
/// ```
pub fn parse_size(text: &str) -> Result<u64, CgroupError> {
    let bad = |reason| invalid("memory", truncate(text), reason);
    if text.len() > MAX_LIMIT_TEXT {
        return Err(bad("longer than 32 bytes"));
    }
    let t = text.trim();
    let digits_end = t
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(t.len());
    let (digits, suffix) = t.split_at(digits_end);
    if digits.is_empty() {
        return Err(bad(
            "expected an integer with an optional K, M, G or T suffix",
        ));
    }
    let shift = match suffix.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "ki" | "kib" => 10,
        "m" | "mb" | "mi" | "mib" => 20,
        "g" | "gb" | "gi" | "gib" => 30,
        "t" | "tb" | "ti" | "tib" => 40,
        _ => {
            return Err(bad(
                "unknown suffix (use K, M, G or T; fractions are not accepted)",
            ));
        }
    };
    let n: u64 = digits.parse().map_err(|_| bad("number too large"))?;
    let bytes = n
        .checked_mul(1u64 << shift)
        .ok_or_else(|| bad("number too large"))?;
    if bytes == 0 {
        return Err(bad("must be at least 1 byte"));
    }
    Ok(bytes)
}

/// Parses a CPU fraction of one CPU: a decimal number such as `"0.5"`, `"2"` or `"1.25"`, between
/// 0.01 and 1024. Signs, exponents, `inf` and `nan` are refused.
///
/// ```
/// assert_eq!(cgroup_limits::parse_cpu_fraction("0.25").unwrap(), 0.25);
/// assert!(cgroup_limits::parse_cpu_fraction("1e3").is_err());
/// ```
pub fn parse_cpu_fraction(text: &str) -> Result<f64, CgroupError> {
    let bad = |reason| invalid("cpu_fraction", truncate(text), reason);
    if text.len() > MAX_LIMIT_TEXT {
        return Err(bad("longer than 32 bytes"));
    }
    let t = text.trim();
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() && frac.is_empty() || !all_digits(int) || !all_digits(frac) {
        return Err(bad("expected a decimal number such as 0.5 or 2"));
    }
    if t.ends_with('.') {
        return Err(bad("expected digits after the decimal point"));
    }
    let value: f64 = t.parse().map_err(|_| bad("not a number"))?;
    cpu_quota_us(value)?;
    Ok(value)
}

fn truncate(text: &str) -> String {
    text.chars().take(40).collect()
}

/// One limit that was written.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct AppliedLimit {
    /// `memory_max`, `memory_high`, `cpu_fraction`, `cpu_weight` or `pids_max`.
    pub limit: &'static str,
    /// The control file written.
    pub file: PathBuf,
    /// What was written.
    pub value: String,
    /// Who wrote it: `cgroups-rs` or `cgroup-limits`.
    pub writer: &'static str,
}

/// One requested limit that could not be applied (only with best-effort creation).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct SkippedLimit {
    /// The limit.
    pub limit: &'static str,
    /// Why.
    pub reason: String,
}

/// What [`crate::WorkloadCgroup::create`] applied, for reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct AppliedLimits {
    /// Each file written.
    pub applied: Vec<AppliedLimit>,
    /// Requested limits that were not applied.
    pub skipped: Vec<SkippedLimit>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn quota_examples() {
        assert_eq!(cpu_quota_us(0.25).unwrap(), 25_000);
        assert_eq!(cpu_quota_us(0.5).unwrap(), 50_000);
        assert_eq!(cpu_quota_us(2.0).unwrap(), 200_000);
        assert!(cpu_quota_us(0.001).is_err());
        assert!(cpu_quota_us(f64::NAN).is_err());
        assert!(cpu_quota_us(-1.0).is_err());
        assert!(cpu_quota_us(f64::INFINITY).is_err());
    }

    #[test]
    fn weight_conversion_endpoints() {
        assert_eq!(weight_to_shares(1), 2);
        assert_eq!(weight_to_shares(10_000), 262_144);
        // runc maps shares 1024 to weight 39; the inverse lands close to 1024.
        let s = weight_to_shares(39);
        assert!((990..=1030).contains(&s), "{s}");
    }

    #[test]
    fn validation_refuses_out_of_range() {
        assert!(Limits::none().with_memory_max(0).validate().is_err());
        assert!(Limits::none().with_pids_max(0).validate().is_err());
        assert!(Limits::none().with_cpu_weight(0).validate().is_err());
        assert!(Limits::none().with_cpu_weight(10_001).validate().is_err());
        assert!(Limits::none().with_memory_max(u64::MAX).validate().is_err());
        assert!(
            Limits::none()
                .with_memory_max(512 << 20)
                .with_cpu_fraction(0.5)
                .with_pids_max(100)
                .validate()
                .is_ok()
        );
    }

    #[test]
    fn size_examples() {
        assert_eq!(parse_size("512M").unwrap(), 512 << 20);
        assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("1g").unwrap(), 1 << 30);
        assert_eq!(parse_size("2T").unwrap(), 2 << 40);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("10k").unwrap(), 10_240);
        for bad in [
            "",
            "M",
            "0",
            "0M",
            "-1M",
            "+1M",
            "1.5G",
            "1 G",
            "1X",
            "max",
            "99999999999T",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
        let e = parse_size("12Q").unwrap_err().to_string();
        assert!(e.contains("12Q"), "{e}");
    }

    #[test]
    fn fraction_examples() {
        assert_eq!(parse_cpu_fraction("0.5").unwrap(), 0.5);
        assert_eq!(parse_cpu_fraction("2").unwrap(), 2.0);
        assert_eq!(parse_cpu_fraction(".25").unwrap(), 0.25);
        for bad in [
            "", ".", "1.", "-1", "+1", "1e3", "inf", "nan", "0", "0.001", "2000", "1.2.3",
        ] {
            assert!(parse_cpu_fraction(bad).is_err(), "{bad:?} accepted");
        }
    }

    proptest! {
        #[test]
        fn shares_stay_in_v1_range(w in 1u32..=10_000) {
            let s = weight_to_shares(w);
            prop_assert!((2..=262_144).contains(&s));
            // The OCI forward conversion gets back the same weight (or one off by rounding).
            let back = 1 + (s - 2) * 9_999 / 262_142;
            prop_assert!(back.abs_diff(u64::from(w)) <= 1);
        }

        #[test]
        fn quota_is_proportional(f in 0.01f64..1024.0) {
            let q = cpu_quota_us(f).unwrap();
            prop_assert!(q >= 1_000);
            let expected = f * 100_000.0;
            prop_assert!((q as f64 - expected).abs() <= 0.5 + f64::EPSILON * expected);
        }

        #[test]
        fn size_parser_never_panics(s in any::<String>()) {
            let _ = parse_size(&s);
            let _ = parse_cpu_fraction(&s);
        }

        #[test]
        fn size_round_trip(n in 1u64..1_000_000, unit in 0usize..5) {
            let suffix = ["", "K", "M", "G", "T"][unit];
            let expected = n.checked_mul(1u64 << (10 * unit));
            let got = parse_size(&format!("{n}{suffix}")).ok();
            prop_assert_eq!(got, expected);
        }

        #[test]
        fn fraction_round_trip(hundredths in 1u32..100_000) {
            let text = format!("{}.{:02}", hundredths / 100, hundredths % 100);
            let f = parse_cpu_fraction(&text).unwrap();
            prop_assert!((f - f64::from(hundredths) / 100.0).abs() < 1e-9);
        }
    }
}
