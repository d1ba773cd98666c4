//! The BG/NBD model of repeat buying (Fader, Hardie & Lee 2005, "Counting Your Customers the
//! Easy Way"): while alive, a customer buys at a Poisson rate λ ~ Gamma(r, α); after each
//! purchase they drop out with probability p ~ Beta(a, b).
//!
//! Fitted by maximum likelihood in log-parameter space with L-BFGS and the analytic gradient.
//! Customers with the same (x, tₓ, T) share one term, and the parts of the likelihood that
//! depend on x alone (ratios of gamma functions, which for whole x are finite sums) are worked
//! out once per distinct x: a fit costs a few logarithms per *distinct* customer.

use std::collections::HashMap;

use serde::Serialize;

use crate::optimise::minimise;
use crate::special::hyp2f1;
use crate::AnalyticsError;

/// Fitted BG/NBD parameters and the log-likelihood they reach.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BgNbd {
    pub r: f64,
    pub alpha: f64,
    pub a: f64,
    pub b: f64,
    /// Total log-likelihood of the data at these parameters.
    pub log_likelihood: f64,
}

/// Customers in the lifetimes convention, as columns: `frequency` repeat purchases (counted by
/// distinct period), `recency` the period of the last purchase since the first, `age` (T) the
/// periods from the first purchase to the end of observation.
#[derive(Debug, Clone, Copy)]
pub struct Customers<'a> {
    pub frequency: &'a [u32],
    pub recency: &'a [f64],
    pub age: &'a [f64],
}

impl Customers<'_> {
    /// Checks the columns: same length, finite, 0 ≤ recency ≤ age, recency 0 without repeats.
    pub fn validate(&self) -> Result<(), AnalyticsError> {
        let n = self.frequency.len();
        if self.recency.len() != n || self.age.len() != n {
            return Err(AnalyticsError::Input(
                "frequency, recency and age must have the same length".into(),
            ));
        }
        if n == 0 {
            return Err(AnalyticsError::Input("no customers to fit".into()));
        }
        for i in 0..n {
            let (x, tx, t) = (self.frequency[i], self.recency[i], self.age[i]);
            let bad = |why: &str| {
                Err(AnalyticsError::Row {
                    row: i,
                    reason: why.into(),
                })
            };
            if !tx.is_finite() || !t.is_finite() {
                return bad("recency and age must be finite");
            }
            if tx < 0.0 || t < tx {
                return bad("needs 0 ≤ recency ≤ age");
            }
            if x == 0 && tx != 0.0 {
                return bad("recency must be 0 for a customer without repeat purchases");
            }
            if x > 0 && tx == 0.0 {
                return bad("repeat purchases need a recency above 0");
            }
        }
        Ok(())
    }
}

/// Distinct (x, tₓ, T) with how many customers share them.
struct Distinct {
    x: Vec<u32>,
    tx: Vec<f64>,
    t: Vec<f64>,
    weight: Vec<f64>,
    total: f64,
    max_x: u32,
}

impl Distinct {
    fn of(c: &Customers<'_>) -> Self {
        let mut index: HashMap<(u32, u64, u64), usize> = HashMap::with_capacity(c.frequency.len() / 4);
        let mut d = Distinct {
            x: Vec::new(),
            tx: Vec::new(),
            t: Vec::new(),
            weight: Vec::new(),
            total: c.frequency.len() as f64,
            max_x: 0,
        };
        for i in 0..c.frequency.len() {
            let key = (c.frequency[i], c.recency[i].to_bits(), c.age[i].to_bits());
            let slot = *index.entry(key).or_insert_with(|| {
                d.x.push(key.0);
                d.tx.push(c.recency[i]);
                d.t.push(c.age[i]);
                d.weight.push(0.0);
                d.x.len() - 1
            });
            d.weight[slot] += 1.0;
            d.max_x = d.max_x.max(key.0);
        }
        d
    }

    /// Log-likelihood and its gradient with respect to (r, α, a, b).
    fn log_likelihood(&self, r: f64, alpha: f64, a: f64, b: f64) -> (f64, [f64; 4]) {
        // Per distinct x: Σ_{j<x} ln(r+j), ln(b+j), ln(a+b+j) and their derivatives (1/…),
        // i.e. lnΓ(r+x)−lnΓ(r) and friends for whole x.
        let m = self.max_x as usize + 1;
        let (mut lr, mut lb, mut lab) = (vec![0.0; m], vec![0.0; m], vec![0.0; m]);
        let (mut dr, mut db, mut dab) = (vec![0.0; m], vec![0.0; m], vec![0.0; m]);
        for x in 1..m {
            let j = (x - 1) as f64;
            lr[x] = lr[x - 1] + (r + j).ln();
            lb[x] = lb[x - 1] + (b + j).ln();
            lab[x] = lab[x - 1] + (a + b + j).ln();
            dr[x] = dr[x - 1] + 1.0 / (r + j);
            db[x] = db[x - 1] + 1.0 / (b + j);
            dab[x] = dab[x - 1] + 1.0 / (a + b + j);
        }
        let ln_alpha = alpha.ln();
        let mut ll = 0.0;
        let mut g = [0.0; 4];
        for i in 0..self.x.len() {
            let xi = self.x[i] as usize;
            let x = self.x[i] as f64;
            let w = self.weight[i];
            let rx = r + x;
            let a1 = lr[xi] + r * ln_alpha;
            let a2 = lb[xi] - lab[xi];
            let ln_at = (alpha + self.t[i]).ln();
            let a3 = -rx * ln_at;
            // ∂/∂(r, α, a, b) of A1 + A2.
            let mut gr = dr[xi] + ln_alpha;
            let mut galpha = r / alpha;
            let mut ga = -dab[xi];
            let mut gb = db[xi] - dab[xi];
            let tail = if xi > 0 {
                let ln_atx = (alpha + self.tx[i]).ln();
                let a4 = a.ln() - (b + x - 1.0).ln() - rx * ln_atx;
                let top = a3.max(a4);
                let (e3, e4) = ((a3 - top).exp(), (a4 - top).exp());
                let (w3, w4) = (e3 / (e3 + e4), e4 / (e3 + e4));
                gr += w3 * -ln_at + w4 * -ln_atx;
                galpha += w3 * (-rx / (alpha + self.t[i])) + w4 * (-rx / (alpha + self.tx[i]));
                ga += w4 / a;
                gb += w4 * (-1.0 / (b + x - 1.0));
                top + (e3 + e4).ln()
            } else {
                gr += -ln_at;
                galpha += -rx / (alpha + self.t[i]);
                a3
            };
            ll += w * (a1 + a2 + tail);
            g[0] += w * gr;
            g[1] += w * galpha;
            g[2] += w * ga;
            g[3] += w * gb;
        }
        (ll, g)
    }
}

fn params(theta: &[f64]) -> Result<[f64; 4], AnalyticsError> {
    crate::optimise::positive(theta)
}

impl BgNbd {
    /// Maximum-likelihood fit.
    pub fn fit(customers: &Customers<'_>) -> Result<BgNbd, AnalyticsError> {
        customers.validate()?;
        let distinct = Distinct::of(customers);
        if distinct.max_x == 0 {
            return Err(AnalyticsError::Input(
                "no customer made a repeat purchase; the model cannot be fitted".into(),
            ));
        }
        // The mean negative log-likelihood and its gradient in θ = ln p (chain rule: ·p).
        let n = distinct.total;
        let theta = minimise(
            |theta| {
                let p = params(theta)?;
                let (ll, g) = distinct.log_likelihood(p[0], p[1], p[2], p[3]);
                Ok((-ll / n, (0..4).map(|i| -g[i] * p[i] / n).collect()))
            },
            vec![0.0; 4],
        )?;
        let [r, alpha, a, b] = params(&theta)?;
        let (log_likelihood, _) = distinct.log_likelihood(r, alpha, a, b);
        if !log_likelihood.is_finite() {
            return Err(AnalyticsError::Numerical(
                "the fit ended at a non-finite likelihood".into(),
            ));
        }
        Ok(BgNbd {
            r,
            alpha,
            a,
            b,
            log_likelihood,
        })
    }

    /// The log-likelihood of these parameters on other data (e.g. a hold-out).
    pub fn log_likelihood_of(&self, customers: &Customers<'_>) -> Result<f64, AnalyticsError> {
        customers.validate()?;
        Ok(Distinct::of(customers)
            .log_likelihood(self.r, self.alpha, self.a, self.b)
            .0)
    }

    /// The factor (a/(b+x−1))·((α+T)/(α+tₓ))^(r+x) that both P(alive) and the conditional
    /// expectation divide by (as 1 + it); 0 without repeat purchases.
    fn dropout_odds(&self, x: u32, tx: f64, t: f64) -> f64 {
        if x == 0 {
            return 0.0;
        }
        let x = f64::from(x);
        let log = (self.a / (self.b + x - 1.0)).ln()
            + (self.r + x) * ((self.alpha + t).ln() - (self.alpha + tx).ln());
        log.exp()
    }

    /// P(the customer is still alive) after x repeats, the last at tₓ, observed for T.
    pub fn p_alive(&self, x: u32, tx: f64, t: f64) -> f64 {
        1.0 / (1.0 + self.dropout_odds(x, tx, t))
    }

    /// Expected purchases in the next `horizon` periods, given the customer's history.
    pub fn expected_purchases(&self, horizon: f64, x: u32, tx: f64, t: f64) -> Result<f64, AnalyticsError> {
        if horizon <= 0.0 {
            return Ok(0.0);
        }
        let xf = f64::from(x);
        let (r, alpha, a, b) = (self.r, self.alpha, self.a, self.b);
        let z = horizon / (alpha + t + horizon);
        let f = hyp2f1(r + xf, b + xf, a + b + xf - 1.0, z)?;
        let ratio = ((alpha + t) / (alpha + t + horizon)).powf(r + xf);
        let numerator = (a + b + xf - 1.0) / (a - 1.0) * (1.0 - ratio * f);
        let value = numerator / (1.0 + self.dropout_odds(x, tx, t));
        if value.is_finite() {
            Ok(value.max(0.0))
        } else {
            Err(AnalyticsError::Numerical(format!(
                "expected purchases are not finite for x={x}, tx={tx}, T={t}"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The gradient matches finite differences of the likelihood.
    #[test]
    fn gradient_matches_finite_differences() {
        let c = Customers {
            frequency: &[0, 1, 3, 7, 2],
            recency: &[0.0, 4.0, 20.5, 30.0, 11.0],
            age: &[39.0, 38.0, 35.0, 38.5, 12.0],
        };
        let d = Distinct::of(&c);
        let p = [0.4, 3.0, 0.9, 2.2];
        let (_, g) = d.log_likelihood(p[0], p[1], p[2], p[3]);
        for i in 0..4 {
            let h = 1e-6;
            let (mut up, mut down) = (p, p);
            up[i] += h;
            down[i] -= h;
            let f = |q: [f64; 4]| d.log_likelihood(q[0], q[1], q[2], q[3]).0;
            let numeric = (f(up) - f(down)) / (2.0 * h);
            assert!(
                (numeric - g[i]).abs() < 1e-5 * (1.0 + g[i].abs()),
                "{i}: {numeric} vs {}",
                g[i]
            );
        }
    }

    #[test]
    fn bad_rows_are_named() {
        let c = Customers {
            frequency: &[0, 1],
            recency: &[0.0, 5.0],
            age: &[3.0, 4.0],
        };
        match c.validate() {
            Err(AnalyticsError::Row { row: 1, .. }) => {}
            other => panic!("{other:?}"),
        }
        let none = Customers {
            frequency: &[0, 0],
            recency: &[0.0, 0.0],
            age: &[3.0, 4.0],
        };
        assert!(BgNbd::fit(&none).is_err());
    }
}
