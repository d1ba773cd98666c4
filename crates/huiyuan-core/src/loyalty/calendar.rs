//! Calendar days in a brand's time zone: member days, birthday months, daily caps, expiry at
//! the end of a local day, calendar-year windows.

use huiyuan_domain::loyalty::programme::StreakPeriod;
use jiff::tz::TimeZone;
use time::{Date, Duration, Month, OffsetDateTime};

use crate::{CoreError, Result};

/// A brand's time zone, resolved from the bundled IANA database (no system files needed).
#[derive(Debug, Clone)]
pub struct BrandCalendar {
    tz: TimeZone,
}

impl BrandCalendar {
    pub fn new(zone: &str) -> Result<Self> {
        let tz =
            TimeZone::get(zone).map_err(|_| CoreError::Corrupt(format!("unknown time zone {zone:?}")))?;
        Ok(Self { tz })
    }

    /// Is this an IANA zone the binary knows? (Used to validate brand settings.)
    pub fn is_known(zone: &str) -> bool {
        TimeZone::get(zone).is_ok()
    }

    /// The local calendar date of an instant.
    pub fn date_of(&self, t: OffsetDateTime) -> Date {
        let ts =
            jiff::Timestamp::from_nanosecond(t.unix_timestamp_nanos()).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        let d = ts.to_zoned(self.tz.clone()).date();
        Month::try_from(d.month() as u8)
            .ok()
            .and_then(|m| Date::from_calendar_date(i32::from(d.year()), m, d.day() as u8).ok())
            .unwrap_or(Date::MIN)
    }

    /// The instant a local date begins (the first valid instant, should midnight be skipped).
    pub fn start_of(&self, date: Date) -> OffsetDateTime {
        let civil =
            jiff::civil::Date::new(date.year() as i16, u8::from(date.month()) as i8, date.day() as i8);
        civil
            .ok()
            .and_then(|d| d.to_zoned(self.tz.clone()).ok())
            .and_then(|z| OffsetDateTime::from_unix_timestamp_nanos(z.timestamp().as_nanosecond()).ok())
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    /// The instant of a local wall-clock time (the earlier one when clocks go back, the first
    /// valid one after a gap): how a till's or an import's local time becomes an instant.
    pub fn at(&self, date: Date, time: time::Time) -> Option<OffsetDateTime> {
        let civil = jiff::civil::DateTime::new(
            date.year() as i16,
            u8::from(date.month()) as i8,
            date.day() as i8,
            time.hour() as i8,
            time.minute() as i8,
            time.second() as i8,
            0,
        )
        .ok()?;
        let zoned = civil.to_zoned(self.tz.clone()).ok()?;
        OffsetDateTime::from_unix_timestamp_nanos(zoned.timestamp().as_nanosecond()).ok()
    }

    /// The instant in the brand's local offset, for files people read.
    pub fn local(&self, t: OffsetDateTime) -> OffsetDateTime {
        let ts = jiff::Timestamp::from_second(t.unix_timestamp()).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        let seconds = self.tz.to_offset(ts).seconds();
        time::UtcOffset::from_whole_seconds(seconds).map_or(t, |o| t.to_offset(o))
    }

    /// The first day of the local month of `date`.
    pub fn month_start(date: Date) -> Date {
        date.replace_day(1).unwrap_or(date)
    }

    /// When each of the `n` periods ending with the one holding `date` begins, newest first
    /// (weeks start on Monday).
    pub fn period_starts(&self, date: Date, period: StreakPeriod, n: u8) -> Vec<OffsetDateTime> {
        let mut first = match period {
            StreakPeriod::Week => date - Duration::days(i64::from(date.weekday().number_days_from_monday())),
            StreakPeriod::Month => Self::month_start(date),
        };
        let mut starts = Vec::with_capacity(usize::from(n));
        for _ in 0..n {
            starts.push(self.start_of(first));
            first = match period {
                StreakPeriod::Week => first - Duration::days(7),
                StreakPeriod::Month => Self::month_start(first.previous_day().unwrap_or(first)),
            };
        }
        starts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    #[test]
    fn shanghai_days_start_at_16_utc() {
        let c = BrandCalendar::new("Asia/Shanghai").unwrap();
        assert_eq!(c.date_of(datetime!(2026-11-07 16:30 UTC)), date!(2026 - 11 - 08));
        assert_eq!(c.date_of(datetime!(2026-11-07 15:59 UTC)), date!(2026 - 11 - 07));
        assert_eq!(c.start_of(date!(2026 - 11 - 08)), datetime!(2026-11-07 16:00 UTC));
        assert!(BrandCalendar::is_known("UTC"));
        assert!(!BrandCalendar::is_known("Mars/Olympus"));
    }

    #[test]
    fn streak_periods_go_back_by_local_weeks_and_months() {
        let c = BrandCalendar::new("Asia/Shanghai").unwrap();
        // Wednesday 2026-01-14.
        let weeks = c.period_starts(date!(2026 - 01 - 14), StreakPeriod::Week, 3);
        assert_eq!(
            weeks,
            [
                datetime!(2026-01-11 16:00 UTC),
                datetime!(2026-01-04 16:00 UTC),
                datetime!(2025-12-28 16:00 UTC)
            ]
        );
        let months = c.period_starts(date!(2026 - 01 - 31), StreakPeriod::Month, 3);
        assert_eq!(
            months,
            [
                datetime!(2025-12-31 16:00 UTC),
                datetime!(2025-11-30 16:00 UTC),
                datetime!(2025-10-31 16:00 UTC)
            ]
        );
    }

    /// Brands in zones with daylight saving: a local day is 23 or 25 hours long, a wall-clock
    /// time in the spring gap becomes the instant after it, one in the autumn fold the earlier
    /// of the two, and where midnight is skipped the day starts at the first instant it has.
    #[test]
    fn days_follow_daylight_saving_changes() {
        let ny = BrandCalendar::new("America/New_York").unwrap();
        // Spring: 14 March 2027 has no 02:00–03:00.
        let (spring, next) = (date!(2027 - 03 - 14), date!(2027 - 03 - 15));
        assert_eq!(ny.start_of(spring), datetime!(2027-03-14 05:00 UTC));
        assert_eq!(ny.start_of(next) - ny.start_of(spring), Duration::hours(23));
        assert_eq!(
            ny.at(spring, time::macros::time!(02:30)),
            Some(datetime!(2027-03-14 03:30 -04:00))
        );
        // Autumn: 1 November 2026 has 01:00–02:00 twice.
        let (autumn, next) = (date!(2026 - 11 - 01), date!(2026 - 11 - 02));
        assert_eq!(ny.start_of(next) - ny.start_of(autumn), Duration::hours(25));
        assert_eq!(
            ny.at(autumn, time::macros::time!(01:30)),
            Some(datetime!(2026-11-01 01:30 -04:00))
        );
        assert_eq!(ny.date_of(datetime!(2026-11-01 01:30 -05:00)), autumn);
        assert_eq!(ny.date_of(datetime!(2026-11-02 04:59 UTC)), autumn);
        assert_eq!(ny.date_of(datetime!(2026-11-02 05:00 UTC)), next);
        assert_eq!(
            ny.local(datetime!(2026-11-01 06:30 UTC)).offset().whole_hours(),
            -5
        );
        // Santiago skips midnight when its clocks go forward (6 September 2026).
        let santiago = BrandCalendar::new("America/Santiago").unwrap();
        assert_eq!(
            santiago.start_of(date!(2026 - 09 - 06)),
            datetime!(2026-09-06 01:00 -03:00)
        );
        assert_eq!(
            santiago.date_of(datetime!(2026-09-06 03:59 UTC)),
            date!(2026 - 09 - 05)
        );
    }
}
