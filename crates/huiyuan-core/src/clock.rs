//! Time, passed in so tests can move it (a member code expires after 60 s without a test
//! waiting 60 s).

use std::sync::Mutex;
use time::{Duration, OffsetDateTime};

pub trait Clock: Send + Sync + 'static {
    /// Now, in UTC, to the millisecond (the precision both backends keep).
    fn now(&self) -> OffsetDateTime;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        truncate_ms(OffsetDateTime::now_utc())
    }
}

/// The system clock shifted by an adjustable offset: time runs on, and a test can jump ahead
/// (a member code expires after 60 s without a test waiting 60 s).
#[derive(Default)]
pub struct OffsetClock(Mutex<Duration>);

impl OffsetClock {
    pub fn advance(&self, by: Duration) {
        let mut offset = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *offset += by;
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> OffsetDateTime {
        truncate_ms(OffsetDateTime::now_utc() + *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// A clock that stands still until it is set: the demo generator walks it through the months
/// it simulates, so records carry the simulated times.
pub struct ManualClock(Mutex<OffsetDateTime>);

impl ManualClock {
    pub fn new(at: OffsetDateTime) -> Self {
        Self(Mutex::new(truncate_ms(at)))
    }

    pub fn set(&self, at: OffsetDateTime) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = truncate_ms(at);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub fn truncate_ms(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(t.millisecond() as u32 * 1_000_000)
        .unwrap_or(t)
}
