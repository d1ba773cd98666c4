//! The Gamma-Gamma model of spend per transaction (Fader & Hardie 2013) and customer lifetime
//! value with BG/NBD.
//!
//! A customer's transaction values vary around their own mean ν, Gamma(p, ν); across customers
//! ν ~ Gamma(q, γ). Fitted on customers with at least one repeat purchase, on their mean repeat
//! spend; the model assumes spend is independent of frequency.

use serde::Serialize;
use statrs::function::gamma::{digamma, ln_gamma};

use crate::bgnbd::BgNbd;
use crate::optimise::{minimise, positive};
use crate::AnalyticsError;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GammaGamma {
    pub p: f64,
    pub q: f64,
    pub gamma: f64,
    pub log_likelihood: f64,
}

/// Customers who made repeat purchases, and the mean value of those purchases.
#[derive(Debug, Clone, Copy)]
pub struct Spenders<'a> {
    pub frequency: &'a [u32],
    pub mean_spend: &'a [f64],
}

struct Objective<'a> {
    x: &'a [f64],
    m: &'a [f64],
}

impl Objective<'_> {
    fn log_likelihood(&self, p: f64, q: f64, g: f64) -> (f64, [f64; 3]) {
        let (mut ll, mut grad) = (0.0, [0.0; 3]);
        let (lg_q, dg_q, ln_g) = (ln_gamma(q), digamma(q), g.ln());
        for (&x, &m) in self.x.iter().zip(self.m) {
            let px = p * x;
            let ln_gxm = (g + x * m).ln();
            ll += ln_gamma(px + q) - ln_gamma(px) - lg_q + q * ln_g + (px - 1.0) * m.ln() + px * x.ln()
                - (px + q) * ln_gxm;
            let dg_pxq = digamma(px + q);
            grad[0] += x * (dg_pxq - digamma(px) + m.ln() + x.ln() - ln_gxm);
            grad[1] += dg_pxq - dg_q + ln_g - ln_gxm;
            grad[2] += q / g - (px + q) / (g + x * m);
        }
        (ll, grad)
    }
}

impl GammaGamma {
    /// Maximum-likelihood fit on the customers with `frequency > 0` (others are skipped).
    pub fn fit(spenders: &Spenders<'_>) -> Result<GammaGamma, AnalyticsError> {
        if spenders.frequency.len() != spenders.mean_spend.len() {
            return Err(AnalyticsError::Input(
                "frequency and mean spend must have the same length".into(),
            ));
        }
        let (mut x, mut m) = (Vec::new(), Vec::new());
        for (i, (&f, &s)) in spenders.frequency.iter().zip(spenders.mean_spend).enumerate() {
            if f == 0 {
                continue;
            }
            if !s.is_finite() || s <= 0.0 {
                return Err(AnalyticsError::Row {
                    row: i,
                    reason: "a repeat buyer's mean spend must be above 0".into(),
                });
            }
            x.push(f64::from(f));
            m.push(s);
        }
        if x.len() < 2 {
            return Err(AnalyticsError::Input(
                "the spend model needs at least two customers with repeat purchases".into(),
            ));
        }
        let objective = Objective { x: &x, m: &m };
        let n = x.len() as f64;
        let theta = minimise(
            |theta| {
                let v: [f64; 3] = positive(theta)?;
                let (ll, g) = objective.log_likelihood(v[0], v[1], v[2]);
                Ok((-ll / n, (0..3).map(|i| -g[i] * v[i] / n).collect()))
            },
            vec![0.0; 3],
        )?;
        let [p, q, gamma]: [f64; 3] = positive(&theta)?;
        let log_likelihood = objective.log_likelihood(p, q, gamma).0;
        if !log_likelihood.is_finite() || q <= 1.0 {
            return Err(AnalyticsError::Numerical(format!(
                "the spend model did not reach a usable fit (q = {q}; it must exceed 1)"
            )));
        }
        Ok(GammaGamma {
            p,
            q,
            gamma,
            log_likelihood,
        })
    }

    /// Expected mean spend per transaction of a customer with `x` repeats averaging `mean`:
    /// a weighted mean of the population's and their own. Without repeats, the population's.
    pub fn expected_spend(&self, x: u32, mean: f64) -> f64 {
        let (p, q, g) = (self.p, self.q, self.gamma);
        if x == 0 || !mean.is_finite() || mean <= 0.0 {
            return g * p / (q - 1.0);
        }
        let px = p * f64::from(x);
        (g + f64::from(x) * mean) * p / (px + q - 1.0)
    }
}

/// Discounted value of a customer's next `months` of purchases, as lifetimes computes it: for
/// each month, the expected purchases in it × expected spend, discounted by
/// `(1 + monthly_rate)^month`. `periods_per_month` converts the model's period (4.345 for
/// weeks, 30 for days, 1 for months).
#[allow(clippy::too_many_arguments)]
pub fn lifetime_value(
    transactions: &BgNbd,
    expected_spend: f64,
    x: u32,
    tx: f64,
    t: f64,
    months: u32,
    monthly_rate: f64,
    periods_per_month: f64,
) -> Result<f64, AnalyticsError> {
    let mut value = 0.0;
    let mut before = 0.0;
    for month in 1..=months {
        let until = f64::from(month) * periods_per_month;
        let by_then = transactions.expected_purchases(until, x, tx, t)?;
        value += expected_spend * (by_then - before) / (1.0 + monthly_rate).powf(f64::from(month));
        before = by_then;
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gradient_matches_finite_differences() {
        let x = [1.0, 2.0, 5.0, 3.0];
        let m = [10.0, 35.5, 20.0, 7.25];
        let o = Objective { x: &x, m: &m };
        let v = [2.0, 3.5, 12.0];
        let (_, g) = o.log_likelihood(v[0], v[1], v[2]);
        for i in 0..3 {
            let h = 1e-6;
            let (mut up, mut down) = (v, v);
            up[i] += h;
            down[i] -= h;
            let f = |w: [f64; 3]| o.log_likelihood(w[0], w[1], w[2]).0;
            let numeric = (f(up) - f(down)) / (2.0 * h);
            assert!(
                (numeric - g[i]).abs() < 1e-5 * (1.0 + g[i].abs()),
                "{i}: {numeric} vs {}",
                g[i]
            );
        }
    }
}
