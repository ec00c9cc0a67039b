//! Deadlines on `CLOCK_BOOTTIME`: unlike `Instant` (`CLOCK_MONOTONIC`), it keeps counting while
//! the machine is suspended, so a timeout or a lease never looks younger than it is.

use std::time::Duration;

/// Time since boot, suspend included.
pub(crate) fn boottime() -> Duration {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u32::try_from(ts.tv_nsec).unwrap_or(0);
    Duration::new(secs, nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boottime_advances() {
        let a = boottime();
        std::thread::sleep(Duration::from_millis(5));
        let b = boottime();
        assert!(b >= a + Duration::from_millis(5), "{a:?} then {b:?}");
    }
}
