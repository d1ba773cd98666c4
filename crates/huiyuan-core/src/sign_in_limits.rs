//! Limits on sign-in attempts, the same for every way in (the API's `POST /v1/auth/login` and the
//! console's form both go through [`crate::Core::login`]): per client address, so one place cannot
//! guess quickly, and per account, so guesses spread over many addresses cannot either. A refused
//! attempt gets the same answer whichever limit it met and whether or not the account exists,
//! and it is refused before its password is hashed.
//!
//! The counts are kept in memory by each process: installations that run several processes
//! behind a balancer multiply the budget by their number. A sliding window of attempt times is
//! written here by hand because the limit must count failures per account, which the rate
//! limiter the API uses for request budgets (governor) does not model.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use time::{Duration, OffsetDateTime};

/// How long failed attempts on an account count against it.
pub const ACCOUNT_WINDOW: Duration = Duration::minutes(15);
/// How long attempts from an address count against it.
const ADDRESS_WINDOW: Duration = Duration::minutes(1);
/// Keys not touched for this long are dropped when the map is swept.
const FORGET_AFTER: Duration = Duration::minutes(15);

/// Recent sign-in attempts by client address and failures by account.
#[derive(Default)]
pub(crate) struct SignInLimits {
    recent: Mutex<HashMap<String, VecDeque<OffsetDateTime>>>,
}

impl SignInLimits {
    /// Counts an attempt from `address` and admits it, or says how long to wait when the
    /// address made `per_address` attempts in the last minute or the account failed
    /// `per_account` times in the last [`ACCOUNT_WINDOW`].
    pub fn admit(
        &self,
        now: OffsetDateTime,
        address: Option<&str>,
        account: &str,
        (per_address, per_account): (u32, u32),
    ) -> Result<(), Duration> {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() > 10_000 {
            recent.retain(|_, times| times.back().is_some_and(|t| now - *t < FORGET_AFTER));
        }
        let mut wait = Duration::ZERO;
        let account_key = format!("account:{account}");
        if let Some(w) = over(&mut recent, &account_key, now, ACCOUNT_WINDOW, per_account) {
            wait = wait.max(w);
        }
        if let Some(address) = address {
            let key = format!("address:{address}");
            match over(&mut recent, &key, now, ADDRESS_WINDOW, per_address) {
                Some(w) => wait = wait.max(w),
                None if wait.is_zero() => recent.entry(key).or_default().push_back(now),
                None => {}
            }
        }
        if wait.is_zero() {
            Ok(())
        } else {
            Err(wait)
        }
    }

    /// Counts a failed attempt (unknown account, wrong password, disabled) against the account.
    pub fn failed(&self, now: OffsetDateTime, account: &str) {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent
            .entry(format!("account:{account}"))
            .or_default()
            .push_back(now);
    }
}

/// When `key` already holds `limit` times within `window`, how long until the oldest leaves it.
fn over(
    recent: &mut HashMap<String, VecDeque<OffsetDateTime>>,
    key: &str,
    now: OffsetDateTime,
    window: Duration,
    limit: u32,
) -> Option<Duration> {
    let times = recent.get_mut(key)?;
    while times.front().is_some_and(|t| now - *t >= window) {
        times.pop_front();
    }
    let oldest = *times.front()?;
    (times.len() >= limit.max(1) as usize).then(|| window - (now - oldest))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: (u32, u32) = (20, 10);

    #[test]
    fn an_address_gets_its_budget_a_minute() {
        let limits = SignInLimits::default();
        let t0 = OffsetDateTime::UNIX_EPOCH;
        for i in 0..20 {
            let account = format!("user{i}");
            assert!(limits.admit(t0, Some("10.0.0.1"), &account, LIMITS).is_ok());
        }
        let wait = limits.admit(t0, Some("10.0.0.1"), "another", LIMITS).unwrap_err();
        assert_eq!(wait, Duration::minutes(1));
        assert!(limits.admit(t0, Some("10.0.0.2"), "another", LIMITS).is_ok());
        assert!(limits
            .admit(t0 + Duration::minutes(1), Some("10.0.0.1"), "another", LIMITS)
            .is_ok());
    }

    #[test]
    fn an_account_is_closed_after_its_failures_from_anywhere() {
        let limits = SignInLimits::default();
        let t0 = OffsetDateTime::UNIX_EPOCH;
        for i in 0..10 {
            let address = format!("10.0.{i}.1");
            let at = t0 + Duration::seconds(i);
            assert!(limits.admit(at, Some(&address), "admin", LIMITS).is_ok());
            limits.failed(at, "admin");
        }
        let later = t0 + Duration::minutes(5);
        let wait = limits
            .admit(later, Some("10.9.9.9"), "admin", LIMITS)
            .unwrap_err();
        assert_eq!(wait, Duration::minutes(10));
        assert!(limits.admit(later, Some("10.9.9.9"), "someone", LIMITS).is_ok());
        assert!(limits
            .admit(t0 + ACCOUNT_WINDOW + Duration::seconds(1), None, "admin", LIMITS)
            .is_ok());
    }
}
