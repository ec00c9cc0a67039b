//! Sizes such as `64M`, `512k`, `1G`, `65536` (binary multiples; optional `i`/`B`).

/// Largest accepted size: 1 TiB (a ramdisk larger than that is a typo).
const MAX: u64 = 1 << 40;

/// Parses `NUMBER[K|M|G|T][i][B]` (case-insensitive, binary multiples).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    if t.is_empty() || t.len() > 32 {
        return Err(format!("{text:?}: expected a size such as 64M"));
    }
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, suffix) = t.split_at(digits_end);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{text:?}: expected a size such as 64M"))?;
    let s = suffix.to_ascii_lowercase();
    let s = s.strip_suffix('b').unwrap_or(&s);
    let s = s.strip_suffix('i').unwrap_or(s);
    let mult: u64 = match s {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => return Err(format!("{text:?}: unknown unit (use K, M, G or T)")),
    };
    let v = n
        .checked_mul(mult)
        .filter(|v| *v <= MAX)
        .ok_or_else(|| format!("{text:?}: larger than 1T"))?;
    if v == 0 {
        return Err(format!("{text:?}: must be more than 0"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn units() {
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("0").is_err());
        assert!(parse_size("-1M").is_err());
        assert!(parse_size("2T").is_err());
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("99999999999999999999999").is_err());
    }

    proptest! {
        #[test]
        fn never_panics_and_stays_bounded(s in "\\PC{0,40}") {
            if let Ok(v) = parse_size(&s) {
                prop_assert!(v > 0 && v <= MAX);
            }
        }

        #[test]
        fn round_trips_megabytes(n in 1u64..=1024) {
            prop_assert_eq!(parse_size(&format!("{n}M")), Ok(n << 20));
        }
    }
}
