//! Where services read the time. They hold an `Arc<dyn Clock>` instead of calling
//! `Utc::now()`, so tests and benchmarks can put "now" where a case needs it (a window
//! opening, the day after a DST change) and move it forward without sleeping.

use std::sync::{Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, TimeDelta, Utc};

pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> DateTime<Utc>;
}

/// The real time.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that stands still until it is told otherwise.
#[derive(Debug)]
pub struct ManualClock {
    at: Mutex<DateTime<Utc>>,
}

impl ManualClock {
    pub fn new(at: DateTime<Utc>) -> Self {
        Self { at: Mutex::new(at) }
    }

    pub fn set(&self, at: DateTime<Utc>) {
        *self.lock() = at;
    }

    /// Moves the clock by `by` (backwards when negative), stopping at the ends of chrono's
    /// calendar rather than panicking.
    pub fn advance(&self, by: TimeDelta) {
        let mut at = self.lock();
        *at = at
            .checked_add_signed(by)
            .unwrap_or(if by < TimeDelta::zero() {
                DateTime::<Utc>::MIN_UTC
            } else {
                DateTime::<Utc>::MAX_UTC
            });
    }

    /// The guarded value is a plain timestamp that is always whole, so a thread that panicked
    /// while holding the lock cannot have left it half-written: keep using it.
    fn lock(&self) -> MutexGuard<'_, DateTime<Utc>> {
        self.at.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.lock()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn at(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339)
            .unwrap_or_else(|e| panic!("{rfc3339}: {e}"))
            .to_utc()
    }

    #[test]
    fn manual_clock_stands_still_until_set_or_advanced() {
        let clock = ManualClock::new(at("2026-03-08T06:30:00Z"));
        assert_eq!(clock.now(), at("2026-03-08T06:30:00Z"));
        assert_eq!(clock.now(), at("2026-03-08T06:30:00Z"));

        clock.advance(TimeDelta::minutes(45));
        assert_eq!(clock.now(), at("2026-03-08T07:15:00Z"));

        clock.advance(TimeDelta::hours(-2));
        assert_eq!(clock.now(), at("2026-03-08T05:15:00Z"));

        clock.set(at("2026-11-01T12:00:00Z"));
        assert_eq!(clock.now(), at("2026-11-01T12:00:00Z"));
    }

    #[test]
    fn advancing_past_the_calendar_stops_at_its_ends() {
        let clock = ManualClock::new(at("2026-01-01T00:00:00Z"));
        clock.advance(TimeDelta::MAX);
        assert_eq!(clock.now(), DateTime::<Utc>::MAX_UTC);

        clock.set(at("2026-01-01T00:00:00Z"));
        clock.advance(TimeDelta::MIN);
        assert_eq!(clock.now(), DateTime::<Utc>::MIN_UTC);
    }

    #[test]
    fn a_poisoned_clock_keeps_working() {
        let clock = Arc::new(ManualClock::new(at("2026-01-01T00:00:00Z")));
        let holder = Arc::clone(&clock);
        let panicked = std::thread::spawn(move || {
            let _guard = holder.lock();
            panic!("poison the lock");
        })
        .join();
        assert!(panicked.is_err());
        assert!(clock.at.is_poisoned());

        clock.advance(TimeDelta::days(1));
        assert_eq!(clock.now(), at("2026-01-02T00:00:00Z"));
    }

    #[test]
    fn services_hold_either_clock_as_a_trait_object() {
        let manual: Arc<dyn Clock> = Arc::new(ManualClock::new(at("2026-05-01T09:00:00Z")));
        assert_eq!(manual.now(), at("2026-05-01T09:00:00Z"));

        let system: Arc<dyn Clock> = Arc::new(SystemClock);
        let before = Utc::now();
        let now = system.now();
        assert!(before <= now && now <= Utc::now());
    }
}
