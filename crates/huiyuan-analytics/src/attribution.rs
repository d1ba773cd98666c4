//! Who gets the credit for a conversion: first touch, last touch, linear, and a first-order
//! Markov chain with removal effects (the model of the R/Python package ChannelAttribution).
//!
//! A journey is the sequence of channels a member touched before converting or not; journeys
//! with the same sequence can be given once with their counts.
//!
//! **Markov.** States are the channels plus start, conversion and null (no conversion). Each
//! journey walks start → c₁ → … → cₙ → conversion (or null); transition probabilities are the
//! observed transition counts, normalised per state. The conversion probability P is the chance
//! of being absorbed in conversion from start, computed exactly (a linear system, not
//! simulation). Removing a channel sends every transition into it to null; its removal effect is
//! `1 − P_without / P`. Conversions (and value) are shared in proportion to removal effects.
//! A channel repeated back to back adds a self-transition, which changes how long a walk stays
//! in a state but not where it ends, so it does not change P.

use serde::Serialize;

use crate::AnalyticsError;

/// One journey (or several identical ones).
#[derive(Debug, Clone, PartialEq)]
pub struct Journey {
    /// Channel indices, in the order touched.
    pub channels: Vec<u32>,
    /// How many such journeys converted, and how many did not.
    pub conversions: u64,
    pub nulls: u64,
    /// Total value of the conversions (minor units).
    pub value: i64,
}

/// Credit per channel under one model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Credit {
    pub conversions: Vec<f64>,
    /// Minor units, fractional (a value shared three ways is not a whole number of cents).
    pub value: Vec<f64>,
}

impl Credit {
    fn zero(channels: usize) -> Self {
        Credit {
            conversions: vec![0.0; channels],
            value: vec![0.0; channels],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attribution {
    pub first_touch: Credit,
    pub last_touch: Credit,
    pub linear: Credit,
    pub markov: Credit,
    /// Removal effect per channel (0–1).
    pub removal_effects: Vec<f64>,
    /// P(conversion) of the whole chain.
    pub conversion_probability: f64,
    pub total_conversions: u64,
    pub total_value: i64,
}

/// All four models over `channels` channels.
pub fn attribute(journeys: &[Journey], channels: usize) -> Result<Attribution, AnalyticsError> {
    for (i, j) in journeys.iter().enumerate() {
        if j.channels.is_empty() {
            return Err(AnalyticsError::Row {
                row: i,
                reason: "a journey needs at least one channel".into(),
            });
        }
        if let Some(c) = j.channels.iter().find(|&&c| c as usize >= channels) {
            return Err(AnalyticsError::Row {
                row: i,
                reason: format!("channel {c} is out of range"),
            });
        }
        if j.conversions == 0 && j.value != 0 {
            return Err(AnalyticsError::Row {
                row: i,
                reason: "a journey without conversions cannot have a value".into(),
            });
        }
    }
    let total_conversions: u64 = journeys.iter().map(|j| j.conversions).sum();
    let total_value: i64 = journeys.iter().map(|j| j.value).sum();
    let (mut first, mut last, mut linear) = (
        Credit::zero(channels),
        Credit::zero(channels),
        Credit::zero(channels),
    );
    for j in journeys.iter().filter(|j| j.conversions > 0) {
        let (conv, value) = (j.conversions as f64, j.value as f64);
        let f = j.channels[0] as usize;
        let l = j.channels[j.channels.len() - 1] as usize;
        first.conversions[f] += conv;
        first.value[f] += value;
        last.conversions[l] += conv;
        last.value[l] += value;
        let share = 1.0 / j.channels.len() as f64;
        for &c in &j.channels {
            linear.conversions[c as usize] += conv * share;
            linear.value[c as usize] += value * share;
        }
    }
    let chain = Chain::of(journeys, channels);
    let p = chain.conversion_probability(None)?;
    let mut removal_effects = vec![0.0; channels];
    if p > 0.0 {
        for (c, effect) in removal_effects.iter_mut().enumerate() {
            *effect = (1.0 - chain.conversion_probability(Some(c))? / p).clamp(0.0, 1.0);
        }
    }
    let sum: f64 = removal_effects.iter().sum();
    let mut markov = Credit::zero(channels);
    if sum > 0.0 {
        for (c, effect) in removal_effects.iter().enumerate() {
            markov.conversions[c] = total_conversions as f64 * effect / sum;
            markov.value[c] = total_value as f64 * effect / sum;
        }
    }
    Ok(Attribution {
        first_touch: first,
        last_touch: last,
        linear,
        markov,
        removal_effects,
        conversion_probability: p,
        total_conversions,
        total_value,
    })
}

/// Transition counts between transient states: 0 is start, 1 + c is channel c; plus counts
/// into conversion and null.
struct Chain {
    n: usize,
    to: Vec<Vec<f64>>,
    to_conversion: Vec<f64>,
    to_null: Vec<f64>,
}

impl Chain {
    fn of(journeys: &[Journey], channels: usize) -> Chain {
        let n = channels + 1;
        let mut chain = Chain {
            n,
            to: vec![vec![0.0; n]; n],
            to_conversion: vec![0.0; n],
            to_null: vec![0.0; n],
        };
        for j in journeys {
            let weight = (j.conversions + j.nulls) as f64;
            let mut from = 0;
            for &c in &j.channels {
                let s = 1 + c as usize;
                if s != from {
                    chain.to[from][s] += weight;
                }
                from = s;
            }
            chain.to_conversion[from] += j.conversions as f64;
            chain.to_null[from] += j.nulls as f64;
        }
        chain
    }

    /// P(absorbed in conversion | start), with one channel removed (its in-transitions go to
    /// null). Solves p = Q p + r for the transient states by Gaussian elimination: a few dozen
    /// channels make a small dense system, not worth a linear-algebra dependency.
    fn conversion_probability(&self, removed: Option<usize>) -> Result<f64, AnalyticsError> {
        let n = self.n;
        let removed = removed.map(|c| c + 1);
        // Rows of (I − Q | r).
        let mut m = vec![vec![0.0; n + 1]; n];
        for (s, row) in m.iter_mut().enumerate() {
            row[s] = 1.0;
            if Some(s) == removed {
                continue; // never reached; p = 0
            }
            let out: f64 = self.to[s].iter().sum::<f64>() + self.to_conversion[s] + self.to_null[s];
            if out == 0.0 {
                continue; // no journey leaves it: p = 0
            }
            for (t, count) in self.to[s].iter().enumerate() {
                if Some(t) != removed {
                    row[t] -= count / out;
                }
            }
            row[n] = self.to_conversion[s] / out;
        }
        for col in 0..n {
            let pivot = (col..n)
                .max_by(|&a, &b| m[a][col].abs().total_cmp(&m[b][col].abs()))
                .unwrap_or(col);
            if m[pivot][col].abs() < 1e-12 {
                return Err(AnalyticsError::Numerical(
                    "the journey chain has a loop that never ends".into(),
                ));
            }
            m.swap(col, pivot);
            let pivot_row = m[col].clone();
            for (r, row) in m.iter_mut().enumerate() {
                if r != col && row[col] != 0.0 {
                    let f = row[col] / pivot_row[col];
                    for (x, p) in row[col..].iter_mut().zip(&pivot_row[col..]) {
                        *x -= f * p;
                    }
                }
            }
        }
        Ok((m[0][n] / m[0][0]).clamp(0.0, 1.0))
    }
}
