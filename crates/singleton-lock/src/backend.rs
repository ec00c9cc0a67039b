//! One interface over both backends, and the "lock lost" signal.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use crate::clock::boottime;
use crate::error::LockError;
use crate::holder::LockHolder;
use crate::local::{LockFile, LockGuard};

/// A lock backend: the local [`LockFile`] (default) or, with feature `etcd`, `EtcdLock`.
///
/// Object-safe, so a program can pick the backend at run time
/// (`Box<dyn LockBackend>`); guards come back boxed as [`HeldLock`]. The concrete types'
/// inherent methods of the same names return concrete guards.
pub trait LockBackend: Send + Sync + fmt::Debug {
    /// Takes the lock if it is free, else [`LockError::Held`].
    fn try_acquire(&self) -> Result<Box<dyn HeldLock>, LockError>;
    /// Waits until the lock is free, then takes it.
    fn acquire(&self) -> Result<Box<dyn HeldLock>, LockError>;
    /// Waits up to `timeout`, else [`LockError::Timeout`].
    fn acquire_timeout(&self, timeout: Duration) -> Result<Box<dyn HeldLock>, LockError>;
    /// Who holds the lock now (or last held it, for the local backend), without taking it.
    fn holder(&self) -> Result<Option<LockHolder>, LockError>;
    /// What is locked, for messages: `lock file /run/x/x.lock`, `etcd lock "x" at …`.
    fn describe(&self) -> String;
}

/// A held lock, from any backend. Dropping it releases the lock.
pub trait HeldLock: Send + fmt::Debug {
    /// Our own holder record.
    fn holder(&self) -> &LockHolder;
    /// A number that grows with every new holder, for systems that can reject writes from an
    /// older holder (etcd: the lock key's create revision). `None` for the local backend, where
    /// the kernel makes a second holder impossible while we live.
    fn fencing_token(&self) -> Option<i64>;
    /// Fires when the lock is lost while we think we hold it (etcd: lease expired, keepalive
    /// failed, key deleted). Never fires for the local backend: a `flock` cannot be taken away.
    fn lost(&self) -> LostSignal;
    /// Releases now, reporting errors.
    fn release(self: Box<Self>) -> Result<(), LockError>;
}

impl LockBackend for LockFile {
    fn try_acquire(&self) -> Result<Box<dyn HeldLock>, LockError> {
        LockFile::try_acquire(self).map(|g| Box::new(g) as Box<dyn HeldLock>)
    }
    fn acquire(&self) -> Result<Box<dyn HeldLock>, LockError> {
        LockFile::acquire(self).map(|g| Box::new(g) as Box<dyn HeldLock>)
    }
    fn acquire_timeout(&self, timeout: Duration) -> Result<Box<dyn HeldLock>, LockError> {
        LockFile::acquire_timeout(self, timeout).map(|g| Box::new(g) as Box<dyn HeldLock>)
    }
    fn holder(&self) -> Result<Option<LockHolder>, LockError> {
        LockFile::holder(self)
    }
    fn describe(&self) -> String {
        format!("lock file {}", self.path().display())
    }
}

impl HeldLock for LockGuard {
    fn holder(&self) -> &LockHolder {
        LockGuard::holder(self)
    }
    fn fencing_token(&self) -> Option<i64> {
        None
    }
    fn lost(&self) -> LostSignal {
        LostSignal::never()
    }
    fn release(self: Box<Self>) -> Result<(), LockError> {
        LockGuard::release(*self)
    }
}

/// Why a held lock was lost.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LossReason {
    /// The lease's time ran out without a confirmed keepalive (checked on `CLOCK_BOOTTIME`, so
    /// a process that was stopped or suspended past its TTL sees this at once when it resumes),
    /// or the server said the lease is gone.
    LeaseExpired,
    /// Keepalives failed (e.g. the cluster is unreachable) until the lease could no longer be
    /// trusted.
    KeepAliveFailed(String),
    /// Our lock key was deleted (by an operator, or by the server when the lease expired).
    KeyDeleted,
}

impl fmt::Display for LossReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LossReason::LeaseExpired => f.write_str("the lease expired"),
            LossReason::KeepAliveFailed(why) => write!(f, "lease keepalive failed: {why}"),
            LossReason::KeyDeleted => f.write_str("the lock key was deleted"),
        }
    }
}

/// Tells a holder that its lock was lost. Cheap to clone; usable from any thread, no async
/// runtime needed.
///
/// ```
/// # use singleton_lock::LostSignal;
/// let lost = LostSignal::never(); // what the local backend returns
/// assert!(!lost.is_lost());
/// assert!(!lost.wait_timeout(std::time::Duration::from_millis(1)));
/// ```
#[derive(Clone)]
pub struct LostSignal {
    state: Arc<LossState>,
}

impl fmt::Debug for LostSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LostSignal")
            .field("reason", &self.reason())
            .finish()
    }
}

pub(crate) struct LossState {
    reason: Mutex<Option<LossReason>>,
    changed: Condvar,
    /// `CLOCK_BOOTTIME` nanoseconds after which the lock must be presumed lost (`u64::MAX`: never).
    valid_until_ns: AtomicU64,
    /// The last keepalive failure, if the last attempt failed: names the cause when the
    /// deadline passes.
    keepalive_error: Mutex<Option<String>>,
}

impl LossState {
    pub(crate) fn new(valid_until: Option<Duration>) -> Arc<Self> {
        Arc::new(LossState {
            reason: Mutex::new(None),
            changed: Condvar::new(),
            valid_until_ns: AtomicU64::new(valid_until.map_or(u64::MAX, duration_ns)),
            keepalive_error: Mutex::new(None),
        })
    }

    /// Moves the deadline (after a confirmed keepalive). Never un-loses a lost lock.
    #[cfg_attr(not(feature = "etcd"), allow(dead_code))]
    pub(crate) fn extend_until(&self, valid_until: Duration) {
        self.valid_until_ns
            .fetch_max(duration_ns(valid_until), Ordering::SeqCst);
        self.changed.notify_all();
    }

    #[cfg_attr(not(feature = "etcd"), allow(dead_code))]
    pub(crate) fn valid_until(&self) -> Duration {
        Duration::from_nanos(self.valid_until_ns.load(Ordering::SeqCst))
    }

    /// Remembers (or clears) the last keepalive failure.
    #[cfg_attr(not(feature = "etcd"), allow(dead_code))]
    pub(crate) fn set_keepalive_error(&self, error: Option<String>) {
        *self
            .keepalive_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = error;
    }

    /// Records the first loss reason (later ones are ignored) and wakes waiters.
    pub(crate) fn mark_lost(&self, why: LossReason) {
        let mut reason = self.reason.lock().unwrap_or_else(PoisonError::into_inner);
        if reason.is_none() {
            *reason = Some(why);
        }
        drop(reason);
        self.changed.notify_all();
    }

    /// The loss reason, checking the deadline first.
    pub(crate) fn check(&self) -> Option<LossReason> {
        if duration_ns(boottime()) >= self.valid_until_ns.load(Ordering::SeqCst) {
            let failure = self
                .keepalive_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            self.mark_lost(failure.map_or(LossReason::LeaseExpired, LossReason::KeepAliveFailed));
        }
        self.reason
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX - 1)
}

impl LostSignal {
    #[cfg_attr(not(feature = "etcd"), allow(dead_code))]
    pub(crate) fn from_state(state: Arc<LossState>) -> Self {
        LostSignal { state }
    }

    /// A signal that never fires (the local backend's).
    pub fn never() -> Self {
        LostSignal {
            state: LossState::new(None),
        }
    }

    /// True once the lock is lost. Also true as soon as the lease deadline has passed on
    /// `CLOCK_BOOTTIME`, even before the background thread noticed (e.g. right after `SIGCONT`).
    pub fn is_lost(&self) -> bool {
        self.state.check().is_some()
    }

    /// Why the lock was lost, if it was.
    pub fn reason(&self) -> Option<LossReason> {
        self.state.check()
    }

    /// Blocks up to `timeout` for the loss; returns [`LostSignal::is_lost`].
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let deadline = boottime().saturating_add(timeout);
        let mut guard = self
            .state
            .reason
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        loop {
            if guard.is_some() {
                return true;
            }
            let now = boottime();
            let lease_end = self.state.valid_until();
            if now >= lease_end {
                drop(guard);
                return self.is_lost();
            }
            if now >= deadline {
                return false;
            }
            // Condvar timeouts run on CLOCK_MONOTONIC: wake at least every 100 ms to re-check
            // the BOOTTIME deadlines (which keep running in suspend).
            let nap = deadline
                .min(lease_end)
                .saturating_sub(now)
                .min(Duration::from_millis(100));
            guard = self
                .state
                .changed
                .wait_timeout(guard, nap)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Blocks until the lock is lost (forever for the local backend).
    pub fn wait(&self) -> LossReason {
        loop {
            if self.wait_timeout(Duration::from_secs(3600))
                && let Some(reason) = self.reason()
            {
                return reason;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_alone_makes_it_lost() {
        let state = LossState::new(Some(boottime() + Duration::from_millis(50)));
        let lost = LostSignal::from_state(state.clone());
        assert!(!lost.is_lost());
        let start = boottime();
        assert!(lost.wait_timeout(Duration::from_secs(5)));
        assert!(boottime() - start < Duration::from_secs(1));
        assert_eq!(lost.reason(), Some(LossReason::LeaseExpired));
    }

    #[test]
    fn extend_and_mark() {
        let state = LossState::new(Some(boottime() + Duration::from_millis(50)));
        state.extend_until(boottime() + Duration::from_secs(60));
        let lost = LostSignal::from_state(state.clone());
        assert!(!lost.wait_timeout(Duration::from_millis(100)));
        let waiter = {
            let lost = lost.clone();
            std::thread::spawn(move || lost.wait())
        };
        std::thread::sleep(Duration::from_millis(20));
        state.mark_lost(LossReason::KeyDeleted);
        state.mark_lost(LossReason::LeaseExpired); // the first reason sticks
        assert_eq!(waiter.join().ok(), Some(LossReason::KeyDeleted));
        assert_eq!(lost.reason(), Some(LossReason::KeyDeleted));
    }

    #[test]
    fn never_is_never() {
        let lost = LostSignal::never();
        assert!(!lost.wait_timeout(Duration::from_millis(30)));
        assert_eq!(lost.reason(), None);
    }
}
