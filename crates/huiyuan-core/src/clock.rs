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
    /// A clock that reads `start` now and runs on from there at the wall clock's pace: the date
    /// is the caller's choice (a member day, a year end), while timeouts and rate windows still
    /// see time pass.
    pub fn starting_at(start: OffsetDateTime) -> Self {
        Self(Mutex::new(start - OffsetDateTime::now_utc()))
    }

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

/// The variable that moves where test harnesses start their clocks (see [`test_start`]).
pub const TEST_CLOCK_START_VAR: &str = "HUIYUAN_TEST_CLOCK_START";

/// Where a test harness starts its clock when a test does not choose an instant itself:
/// `HUIYUAN_TEST_CLOCK_START` if set (see [`parse_start`]), else [`DEFAULT_TEST_START`].
///
/// A test whose assertions depend on the date (points on a member day, a birthday month, an
/// expiry) starts its clock at an instant chosen for what it checks; every other test starts
/// here, and CI runs the suite again with this moved to a member day, a month end, a year end
/// and a daylight-saving change, so that a test that silently depends on the date fails the day
/// it is written rather than on the 8th of some month.
///
/// # Panics
/// When the variable is set but is not an instant: a guard run must not pass on a typo.
pub fn test_start() -> OffsetDateTime {
    match std::env::var(TEST_CLOCK_START_VAR) {
        Ok(v) => parse_start(&v).unwrap_or_else(|e| panic!("{TEST_CLOCK_START_VAR}: {e}")),
        Err(_) => DEFAULT_TEST_START,
    }
}

/// Tuesday 2026-12-15, 10:00 in Asia/Shanghai: not a member day (the 8th), not the first or last
/// day of a month, not in a daylight-saving change of any zone; no date the demo programme
/// multiplies or a job closes on.
pub const DEFAULT_TEST_START: OffsetDateTime = time::macros::datetime!(2026-12-15 10:00 +08:00);

/// Parses a clock start: `now` (the wall clock), an RFC 3339 instant
/// (`2026-12-08T04:00:00+08:00`), or a date (`2027-01-31`, read as 10:00 in UTC+8, the demo
/// brand's zone).
pub fn parse_start(value: &str) -> Result<OffsetDateTime, String> {
    use time::format_description::well_known::Rfc3339;
    let value = value.trim();
    if value.eq_ignore_ascii_case("now") {
        return Ok(truncate_ms(OffsetDateTime::now_utc()));
    }
    if let Ok(t) = OffsetDateTime::parse(value, &Rfc3339) {
        return Ok(truncate_ms(t));
    }
    let date_format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(value, &date_format)
        .map(|d| {
            d.with_time(time::macros::time!(10:00))
                .assume_offset(time::macros::offset!(+8))
        })
        .map_err(|_| format!("`{value}` is not `now`, an RFC 3339 instant or a YYYY-MM-DD date"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn starts_parse_as_documented_and_typos_are_refused() {
        assert_eq!(
            parse_start("2026-12-08T04:00:00+08:00"),
            Ok(datetime!(2026-12-08 04:00 +08:00))
        );
        assert_eq!(
            parse_start(" 2027-01-31 "),
            Ok(datetime!(2027-01-31 10:00 +08:00))
        );
        let now = parse_start("now").unwrap();
        assert!((OffsetDateTime::now_utc() - now).abs() < Duration::minutes(1));
        let err = parse_start("2027-02-30").unwrap_err();
        assert!(err.contains("2027-02-30"), "{err}");
    }

    #[test]
    fn a_clock_started_at_an_instant_reads_it_and_runs_on() {
        let start = datetime!(2026-12-31 23:59:59 +08:00);
        let clock = OffsetClock::starting_at(start);
        let read = clock.now();
        assert!(read >= start - Duration::milliseconds(1) && read - start < Duration::seconds(5));
        clock.advance(Duration::days(1));
        assert!(clock.now() - start >= Duration::hours(23));
    }
}
