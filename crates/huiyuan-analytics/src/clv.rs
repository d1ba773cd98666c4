//! The whole lifetime-value pipeline on a summary: BG/NBD for how many purchases, Gamma-Gamma for
//! how much each, and each customer's discounted value over a horizon — one function, so the CLI
//! and the API cannot compute it differently.

use serde::Serialize;

use crate::bgnbd::BgNbd;
use crate::gamma_gamma::{lifetime_value, GammaGamma, Spenders};
use crate::summary::{Period, Summary};
use crate::AnalyticsError;

/// One customer's outlook, in the summary's order.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MemberLifetime {
    pub p_alive: f64,
    /// Over the horizon.
    pub expected_purchases: f64,
    /// Per purchase, minor units.
    pub expected_spend: f64,
    /// Discounted, minor units.
    pub clv: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Lifetimes {
    pub bgnbd: BgNbd,
    pub gamma_gamma: GammaGamma,
    pub members: Vec<MemberLifetime>,
}

/// Fits both models on `summary` (in `period` units) and scores every customer over
/// `horizon_months` at a monthly `discount_rate` (0 ≤ rate < 1).
pub fn lifetimes(
    summary: &Summary,
    period: Period,
    horizon_months: u32,
    discount_rate: f64,
) -> Result<Lifetimes, AnalyticsError> {
    check_discount_rate(discount_rate)?;
    let bgnbd = BgNbd::fit(&summary.customers())?;
    let gamma_gamma = fit_spend(summary)?;
    let members = score(
        summary,
        &bgnbd,
        &gamma_gamma,
        period,
        horizon_months,
        discount_rate,
    )?;
    Ok(Lifetimes {
        bgnbd,
        gamma_gamma,
        members,
    })
}

fn check_discount_rate(discount_rate: f64) -> Result<(), AnalyticsError> {
    if (0.0..1.0).contains(&discount_rate) {
        Ok(())
    } else {
        Err(AnalyticsError::Input(
            "the discount rate must be at least 0 and below 1 (monthly)".into(),
        ))
    }
}

/// The Gamma-Gamma spend model of `summary`'s repeat customers.
pub fn fit_spend(summary: &Summary) -> Result<GammaGamma, AnalyticsError> {
    GammaGamma::fit(&Spenders {
        frequency: &summary.frequency,
        mean_spend: &summary.mean_spend,
    })
}

/// Every customer's outlook under fitted models: the last step of [`lifetimes`], on its own
/// for callers that time or reuse the fits.
pub fn score(
    summary: &Summary,
    bgnbd: &BgNbd,
    gamma_gamma: &GammaGamma,
    period: Period,
    horizon_months: u32,
    discount_rate: f64,
) -> Result<Vec<MemberLifetime>, AnalyticsError> {
    check_discount_rate(discount_rate)?;
    let per_month = period.per_month();
    let ahead = f64::from(horizon_months) * per_month;
    (0..summary.len())
        .map(|i| {
            let (x, tx, t) = (summary.frequency[i], summary.recency[i], summary.age[i]);
            let spend = gamma_gamma.expected_spend(x, summary.mean_spend[i]);
            Ok(MemberLifetime {
                p_alive: bgnbd.p_alive(x, tx, t),
                expected_purchases: bgnbd.expected_purchases(ahead, x, tx, t)?,
                expected_spend: spend,
                clv: lifetime_value(bgnbd, spend, x, tx, t, horizon_months, discount_rate, per_month)?,
            })
        })
        .collect()
}

/// Every member's outlook from transactions: the models fitted on weekly purchases up to
/// `as_of`, and each member's line by member index (`None` for members without a purchase by
/// then, or whose figures are not finite). When the models cannot be fitted (too little data),
/// `fitted` says why and every member's line is `None`.
pub struct Outlook {
    pub fitted: Result<Lifetimes, String>,
    pub by_member: Vec<Option<MemberLifetime>>,
}

impl Outlook {
    /// P(alive) by member index, for the lifecycle's churn rule.
    pub fn p_alive(&self) -> Vec<Option<f64>> {
        self.by_member.iter().map(|m| m.map(|l| l.p_alive)).collect()
    }
}

pub fn outlook(
    tx: &crate::Transactions<'_>,
    as_of: time::Date,
    horizon_months: u32,
    discount_rate: f64,
) -> Result<Outlook, AnalyticsError> {
    let n = tx.validate()?;
    let summary = crate::summary::summarise(tx, Period::Week, as_of)?;
    let fitted = if summary.is_empty() {
        Err("no purchases by the date".to_owned())
    } else {
        lifetimes(&summary, Period::Week, horizon_months, discount_rate).map_err(|e| e.to_string())
    };
    let mut by_member = vec![None; n];
    if let Ok(f) = &fitted {
        for (k, &m) in summary.member.iter().enumerate() {
            let l = f.members[k];
            if l.p_alive.is_finite() && l.expected_purchases.is_finite() && l.clv.is_finite() {
                by_member[m as usize] = Some(l);
            }
        }
    }
    Ok(Outlook { fitted, by_member })
}
