//! The A/B helper for campaigns: did variant B convert better than A?
//!
//! A two-sided two-proportion z-test (pooled standard error) and a confidence interval for the
//! difference of rates (unpooled, Wald). When neither variant has any variation (all converted,
//! or none did) there is no evidence of a difference: z = 0 and p = 1, never NaN.

use serde::Serialize;
use statrs::distribution::{ContinuousCDF, Normal};

use crate::AnalyticsError;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ZTest {
    pub rate_a: f64,
    pub rate_b: f64,
    /// rate_b − rate_a.
    pub difference: f64,
    pub z: f64,
    /// Two-sided.
    pub p_value: f64,
    pub confidence: f64,
    pub ci_low: f64,
    pub ci_high: f64,
}

/// Tests `successes_b / trials_b` against `successes_a / trials_a`.
pub fn two_proportion_z_test(
    successes_a: u64,
    trials_a: u64,
    successes_b: u64,
    trials_b: u64,
    confidence: f64,
) -> Result<ZTest, AnalyticsError> {
    if trials_a == 0 || trials_b == 0 {
        return Err(AnalyticsError::Input(
            "each variant needs at least one trial".into(),
        ));
    }
    if successes_a > trials_a || successes_b > trials_b {
        return Err(AnalyticsError::Input("successes cannot exceed trials".into()));
    }
    if !(confidence > 0.0 && confidence < 1.0) {
        return Err(AnalyticsError::Input("confidence must be between 0 and 1".into()));
    }
    let (na, nb) = (trials_a as f64, trials_b as f64);
    let (pa, pb) = (successes_a as f64 / na, successes_b as f64 / nb);
    let pooled = (successes_a + successes_b) as f64 / (na + nb);
    let se = (pooled * (1.0 - pooled) * (1.0 / na + 1.0 / nb)).sqrt();
    let normal = Normal::standard();
    let (z, p_value) = if se > 0.0 {
        let z = (pb - pa) / se;
        (z, (2.0 * normal.sf(z.abs())).min(1.0))
    } else {
        (0.0, 1.0)
    };
    let q = normal.inverse_cdf(0.5 + confidence / 2.0);
    let unpooled = (pa * (1.0 - pa) / na + pb * (1.0 - pb) / nb).sqrt();
    let difference = pb - pa;
    Ok(ZTest {
        rate_a: pa,
        rate_b: pb,
        difference,
        z,
        p_value,
        confidence,
        ci_low: difference - q * unpooled,
        ci_high: difference + q * unpooled,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against SciPy (`norm.sf`, `norm.ppf`) on 200/1000 vs 250/1000.
    #[test]
    fn matches_an_independent_computation() {
        let t = two_proportion_z_test(200, 1_000, 250, 1_000, 0.95).unwrap();
        let close = |x: f64, y: f64| (x - y).abs() < 1e-9;
        assert!(close(t.z, 2.677397763008329), "{t:?}");
        assert!(close(t.p_value, 0.007419649261025687), "{t:?}");
        assert!(close(t.ci_low, 0.01346362168753984), "{t:?}");
        assert!(close(t.ci_high, 0.08653637831246014), "{t:?}");
    }

    #[test]
    fn degenerate_inputs_are_defined_or_refused() {
        let same = two_proportion_z_test(0, 50, 0, 80, 0.95).unwrap();
        assert_eq!((same.z, same.p_value, same.difference), (0.0, 1.0, 0.0));
        let all = two_proportion_z_test(50, 50, 80, 80, 0.9).unwrap();
        assert_eq!((all.z, all.p_value), (0.0, 1.0));
        assert!(two_proportion_z_test(1, 0, 1, 10, 0.95).is_err());
        assert!(two_proportion_z_test(11, 10, 1, 10, 0.95).is_err());
        assert!(two_proportion_z_test(1, 10, 1, 10, 1.0).is_err());
    }
}
