//! The wall clock, read in one place.
//!
//! Everything that compares against time since the Unix epoch (token and envelope lifetimes,
//! grant expiry, the `now` of a policy decision, the time of an evidence record) reads it
//! through a [`Clock`], so that one policy holds for a broken clock and a test can fix the time.
//! A clock set before 1970 reads as [`FAR_FUTURE`]: everything that expires has expired, so a
//! broken clock refuses rather than admits.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// What a clock set before the Unix epoch reads: the far future (and still a valid `i64`, as
/// Cedar's `Long` wants).
pub const FAR_FUTURE: u64 = i64::MAX as u64;

/// Time since the Unix epoch.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Milliseconds since the Unix epoch.
    fn unix_millis(&self) -> u64;

    /// Whole seconds since the Unix epoch.
    fn unix_secs(&self) -> u64 {
        match self.unix_millis() {
            FAR_FUTURE => FAR_FUTURE,
            millis => millis / 1000,
        }
    }
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn unix_millis(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .ok()
            .and_then(|elapsed| u64::try_from(elapsed.as_millis()).ok())
            .map_or(FAR_FUTURE, |millis| millis.min(FAR_FUTURE))
    }
}

/// A clock that reads what it was set to: for tests.
#[derive(Debug, Default)]
pub struct FixedClock(AtomicU64);

impl FixedClock {
    pub fn at_millis(millis: u64) -> Self {
        Self(AtomicU64::new(millis))
    }

    pub fn advance_millis(&self, by: u64) {
        self.0.fetch_add(by, Ordering::Relaxed);
    }
}

impl Clock for FixedClock {
    fn unix_millis(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_follow_milliseconds_and_the_far_future_stays_there() {
        let clock = FixedClock::at_millis(1_999);
        assert_eq!(clock.unix_secs(), 1);
        clock.advance_millis(1);
        assert_eq!(clock.unix_secs(), 2);
        assert_eq!(FixedClock::at_millis(FAR_FUTURE).unix_secs(), FAR_FUTURE);
        assert!(i64::try_from(FAR_FUTURE).is_ok());
    }

    #[test]
    fn the_system_clock_is_after_2020() {
        assert!(SystemClock.unix_secs() > 1_577_836_800);
        assert!(SystemClock.unix_secs() < FAR_FUTURE);
    }
}
