//! "You may also like" (猜你喜歡): item-to-item collaborative filtering blended with the
//! popularity of items in the categories a member buys from.
//!
//! **Similarity.** Over the binary member × item matrix (did the member ever buy the item), two
//! items are as similar as the cosine of their buyer sets, shrunk towards zero when few members
//! bought both: `sim(i, j) = c / √(nᵢ·nⱼ) · c / (c + λ)`, with `c` the members who bought both,
//! `nᵢ` the buyers of `i` and `λ` the shrinkage. Shrinkage keeps a pair bought together by two
//! people from outranking one bought together by two hundred. Each item keeps its
//! [`RecommenderConfig::neighbours`] most similar items.
//!
//! **Scoring.** For a member who bought the set `H`, a candidate `j ∉ H` scores
//! `(1 − w) · cf(j) / max cf + w · share(cat j) · pop(j) / max pop(cat j)`: `cf(j) = Σ_{i∈H}
//! sim(i, j)`; `share(c)` the fraction of `H` in category `c`; `pop` the number of buyers. `w` is
//! [`RecommenderConfig::category_weight`]. Items already bought are never recommended. When
//! neither part finds `k` items (a new member, a tiny history) the rest are the most popular items
//! overall, so a list is never short while the catalogue has items left.
//!
//! **Outliers.** Members with more than [`RecommenderConfig::history_limit`] distinct items
//! (resellers, staff cards) are left out of the co-purchase counts — they would add a quadratic
//! number of pairs that say little — but still count for popularity.

use serde::Serialize;

use crate::AnalyticsError;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
pub struct RecommenderConfig {
    /// Most similar items kept per item.
    pub neighbours: usize,
    /// λ in `c / (c + λ)`.
    pub shrinkage: f64,
    /// w: the weight of same-category popularity against co-purchase, 0 to 1.
    pub category_weight: f64,
    /// Members with more distinct items than this are left out of co-purchase counts.
    pub history_limit: usize,
}

impl Default for RecommenderConfig {
    /// λ = 10 and w = 0.2: on the synthetic baskets of docs/analytics.md, w from 0.1 to 0.3 with
    /// λ = 10 scored best (within 0.5 % of each other); w = 0.5 or λ = 50 scored a little lower.
    fn default() -> Self {
        RecommenderConfig {
            neighbours: 50,
            shrinkage: 10.0,
            category_weight: 0.2,
            history_limit: 500,
        }
    }
}

impl RecommenderConfig {
    fn validate(&self) -> Result<(), AnalyticsError> {
        if self.neighbours == 0 || self.history_limit < 2 {
            return Err(AnalyticsError::Input(
                "neighbours must be at least 1 and history_limit at least 2".into(),
            ));
        }
        if !(self.shrinkage >= 0.0 && self.shrinkage.is_finite()) {
            return Err(AnalyticsError::Input("shrinkage must be a number ≥ 0".into()));
        }
        if !(0.0..=1.0).contains(&self.category_weight) {
            return Err(AnalyticsError::Input(
                "category_weight must be between 0 and 1".into(),
            ));
        }
        Ok(())
    }
}

/// Why an item is on a member's list: shown to the member ("because you bought …") and to the
/// operator checking the model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reason {
    /// Mostly co-purchase: bought by many who also bought `because` (an item of the history).
    BoughtTogether { because: u32 },
    /// Mostly popularity within a category the member buys from.
    PopularInCategory,
    /// Filler for short lists: popular overall.
    Popular,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Recommendation {
    pub item: u32,
    /// 0 to 1; 0 for [`Reason::Popular`] filler.
    pub score: f64,
    pub reason: Reason,
}

/// A fitted item-to-item model: each item's nearest neighbours and the popularity figures.
#[derive(Debug, Clone)]
pub struct Recommender {
    config: RecommenderConfig,
    /// Neighbours of item `i` are `neighbour[offset[i]..offset[i + 1]]`, most similar first.
    offset: Vec<usize>,
    neighbour: Vec<(u32, f64)>,
    /// Distinct buyers per item.
    buyers: Vec<u32>,
    category: Vec<Option<u32>>,
    /// Items of each category, most bought first (index: category).
    by_category: Vec<Vec<u32>>,
    /// Every item with a buyer, most bought first.
    by_popularity: Vec<u32>,
}

/// Distinct (member, item) pairs, grouped by member, items ascending.
fn distinct_pairs(member: &[u32], item: &[u32]) -> Vec<u64> {
    let mut pairs: Vec<u64> = member
        .iter()
        .zip(item)
        .map(|(&m, &i)| (u64::from(m) << 32) | u64::from(i))
        .collect();
    pairs.sort_unstable();
    pairs.dedup();
    pairs
}

/// A compressed sparse row: the values of row `r` are `values[offset[r]..offset[r + 1]]`.
struct Rows {
    offset: Vec<usize>,
    values: Vec<u32>,
}

impl Rows {
    fn row(&self, r: usize) -> &[u32] {
        &self.values[self.offset[r]..self.offset[r + 1]]
    }

    /// Rows from (row, value) pairs, in the order given.
    fn build(n_rows: usize, pairs: impl Iterator<Item = (u32, u32)> + Clone) -> Rows {
        let mut offset = vec![0usize; n_rows + 1];
        for (r, _) in pairs.clone() {
            offset[r as usize + 1] += 1;
        }
        for r in 0..n_rows {
            offset[r + 1] += offset[r];
        }
        let mut fill = offset.clone();
        let mut values = vec![0u32; offset[n_rows]];
        for (r, v) in pairs {
            values[fill[r as usize]] = v;
            fill[r as usize] += 1;
        }
        Rows { offset, values }
    }
}

impl Recommender {
    /// Fits on purchases as columns: `member[i]` bought `item[i]` (dense indices; repeats are
    /// fine). `category[item]` is the item's category index, if it has one; its length is the
    /// catalogue size (items never bought included).
    pub fn fit(
        member: &[u32],
        item: &[u32],
        category: &[Option<u32>],
        config: RecommenderConfig,
    ) -> Result<Recommender, AnalyticsError> {
        config.validate()?;
        if member.len() != item.len() {
            return Err(AnalyticsError::Input(
                "member and item columns must have the same length".into(),
            ));
        }
        let n_items = category.len();
        if let Some(row) = item.iter().position(|&i| i as usize >= n_items) {
            return Err(AnalyticsError::Row {
                row,
                reason: format!("item {} is not in the catalogue of {n_items}", item[row]),
            });
        }
        let pairs = distinct_pairs(member, item);
        let n_members = member.iter().max().map_or(0, |&m| m as usize + 1);
        let split = |p: &u64| ((p >> 32) as u32, *p as u32);
        let items_of = Rows::build(n_members, pairs.iter().map(split));
        let mut buyers = vec![0u32; n_items];
        for &p in &pairs {
            buyers[split(&p).1 as usize] += 1;
        }
        // Buyers per item, leaving out the outliers, for the co-purchase counts.
        let counted = |m: usize| items_of.row(m).len() <= config.history_limit;
        let buyers_of = Rows::build(
            n_items,
            pairs
                .iter()
                .map(split)
                .filter(|&(m, _)| counted(m as usize))
                .map(|(m, i)| (i, m)),
        );

        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(n_items.max(1));
        let chunk = n_items.div_ceil(threads.max(1)).max(1);
        let parts: Vec<Vec<Vec<(u32, f64)>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..n_items)
                .step_by(chunk)
                .map(|start| {
                    let (items_of, buyers_of) = (&items_of, &buyers_of);
                    // Cosine over the counted members: their buyer counts, not everyone's.
                    let counted_buyers = |i: usize| buyers_of.row(i).len() as f64;
                    scope.spawn(move || {
                        let mut together = vec![0u32; n_items];
                        let mut touched = Vec::new();
                        (start..(start + chunk).min(n_items))
                            .map(|i| {
                                for &m in buyers_of.row(i) {
                                    for &j in items_of.row(m as usize) {
                                        if j as usize != i {
                                            if together[j as usize] == 0 {
                                                touched.push(j);
                                            }
                                            together[j as usize] += 1;
                                        }
                                    }
                                }
                                let ni = counted_buyers(i);
                                let mut near: Vec<(u32, f64)> = touched
                                    .drain(..)
                                    .map(|j| {
                                        let c = f64::from(std::mem::take(&mut together[j as usize]));
                                        let nj = counted_buyers(j as usize);
                                        (j, c / (ni * nj).sqrt() * c / (c + config.shrinkage))
                                    })
                                    .collect();
                                let by_similarity =
                                    |a: &(u32, f64), b: &(u32, f64)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
                                if near.len() > config.neighbours {
                                    near.select_nth_unstable_by(config.neighbours, by_similarity);
                                    near.truncate(config.neighbours);
                                }
                                near.sort_unstable_by(by_similarity);
                                near
                            })
                            .collect()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect()
        });
        let mut offset = Vec::with_capacity(n_items + 1);
        offset.push(0);
        let mut neighbour = Vec::new();
        for near in parts.into_iter().flatten() {
            neighbour.extend(near);
            offset.push(neighbour.len());
        }

        let mut by_popularity: Vec<u32> = (0..n_items as u32).filter(|&i| buyers[i as usize] > 0).collect();
        by_popularity.sort_by(|&a, &b| buyers[b as usize].cmp(&buyers[a as usize]).then(a.cmp(&b)));
        let n_categories = category.iter().flatten().max().map_or(0, |&c| c as usize + 1);
        let mut by_category = vec![Vec::new(); n_categories];
        for &i in &by_popularity {
            if let Some(c) = category[i as usize] {
                by_category[c as usize].push(i);
            }
        }
        Ok(Recommender {
            config,
            offset,
            neighbour,
            buyers,
            category: category.to_vec(),
            by_category,
            by_popularity,
        })
    }

    pub fn items(&self) -> usize {
        self.buyers.len()
    }

    /// Distinct buyers of an item in the data the model was fitted on.
    pub fn buyers(&self, item: u32) -> u32 {
        self.buyers.get(item as usize).copied().unwrap_or(0)
    }

    /// An item's most similar items, most similar first.
    pub fn similar(&self, item: u32) -> &[(u32, f64)] {
        let i = item as usize;
        if i >= self.buyers.len() {
            return &[];
        }
        &self.neighbour[self.offset[i]..self.offset[i + 1]]
    }

    /// Up to `k` items for a member who bought `history` (items, repeats fine; unknown items are
    /// ignored), best first; none of them in the history.
    pub fn recommend(&self, history: &[u32], k: usize) -> Vec<Recommendation> {
        let n = self.buyers.len();
        let mut owned: Vec<u32> = history.iter().copied().filter(|&i| (i as usize) < n).collect();
        owned.sort_unstable();
        owned.dedup();
        let is_owned = |j: u32| owned.binary_search(&j).is_ok();

        // Co-purchase: the sum of similarities, and the history item that contributed most.
        let mut cf: Vec<(u32, f64, u32, f64)> = Vec::new(); // (item, sum, because, best)
        let mut slot: std::collections::HashMap<u32, usize> = std::collections::HashMap::new();
        for &i in &owned {
            for &(j, s) in self.similar(i) {
                if is_owned(j) {
                    continue;
                }
                let at = *slot.entry(j).or_insert_with(|| {
                    cf.push((j, 0.0, i, f64::NEG_INFINITY));
                    cf.len() - 1
                });
                let e = &mut cf[at];
                e.1 += s;
                if s > e.3 {
                    e.2 = i;
                    e.3 = s;
                }
            }
        }
        let max_cf = cf.iter().map(|e| e.1).fold(0.0, f64::max);

        // Category affinity: which share of the history each category holds.
        let mut share = vec![0.0; self.by_category.len()];
        for &i in &owned {
            if let Some(c) = self.category[i as usize] {
                share[c as usize] += 1.0 / owned.len() as f64;
            }
        }
        let popular_in = |j: u32| -> f64 {
            match self.category[j as usize] {
                Some(c) => {
                    let top = self.by_category[c as usize]
                        .first()
                        .map_or(0, |&t| self.buyers[t as usize]);
                    if top == 0 {
                        0.0
                    } else {
                        share[c as usize] * f64::from(self.buyers[j as usize]) / f64::from(top)
                    }
                }
                None => 0.0,
            }
        };

        let w = self.config.category_weight;
        let mut scored: Vec<Recommendation> = Vec::with_capacity(cf.len() + k);
        let score = |cf_sum: f64, j: u32| -> (f64, f64) {
            let co = if max_cf > 0.0 {
                (1.0 - w) * cf_sum / max_cf
            } else {
                0.0
            };
            (co, w * popular_in(j))
        };
        for &(j, sum, because, _) in &cf {
            let (co, pop) = score(sum, j);
            let reason = if co >= pop {
                Reason::BoughtTogether { because }
            } else {
                Reason::PopularInCategory
            };
            scored.push(Recommendation {
                item: j,
                score: co + pop,
                reason,
            });
        }
        // Same-category candidates co-purchase did not reach: enough of each category's most
        // popular to fill the list on their own.
        if w > 0.0 {
            for (c, items) in self.by_category.iter().enumerate() {
                if share[c] == 0.0 {
                    continue;
                }
                for &j in items
                    .iter()
                    .filter(|&&j| !is_owned(j) && !slot.contains_key(&j))
                    .take(k)
                {
                    scored.push(Recommendation {
                        item: j,
                        score: w * popular_in(j),
                        reason: Reason::PopularInCategory,
                    });
                }
            }
        }
        scored.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then(self.buyers[b.item as usize].cmp(&self.buyers[a.item as usize]))
                .then(a.item.cmp(&b.item))
        });
        scored.truncate(k);
        if scored.len() < k {
            let chosen: std::collections::HashSet<u32> = scored.iter().map(|r| r.item).collect();
            let filler: Vec<u32> = self
                .by_popularity
                .iter()
                .copied()
                .filter(|&j| !is_owned(j) && !chosen.contains(&j))
                .take(k - scored.len())
                .collect();
            scored.extend(filler.into_iter().map(|item| Recommendation {
                item,
                score: 0.0,
                reason: Reason::Popular,
            }));
        }
        scored
    }

    /// The baseline: the `k` most bought items the member does not have yet.
    pub fn most_popular(&self, history: &[u32], k: usize) -> Vec<u32> {
        let mut owned = history.to_vec();
        owned.sort_unstable();
        self.by_popularity
            .iter()
            .copied()
            .filter(|j| owned.binary_search(j).is_err())
            .take(k)
            .collect()
    }
}

/// Precision and recall at k of the model and of the most-popular baseline, averaged over the
/// members evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Evaluation {
    pub k: usize,
    /// Members with a training history who bought at least one item new to them in the test
    /// period.
    pub members: u64,
    pub precision: f64,
    pub recall: f64,
    pub baseline_precision: f64,
    pub baseline_recall: f64,
    /// Distinct items recommended to anyone, as a share of the catalogue.
    pub coverage: f64,
    pub baseline_coverage: f64,
}

/// Hold-out evaluation: fit on the training purchases, then for each member who bought before
/// and bought something *new to them* in the test purchases, compare the top `k` with those new
/// items. Repeat purchases are not scored: the model never recommends what a member already has.
pub fn evaluate(
    train: (&[u32], &[u32]),
    test: (&[u32], &[u32]),
    category: &[Option<u32>],
    k: usize,
    config: RecommenderConfig,
) -> Result<Evaluation, AnalyticsError> {
    if k == 0 {
        return Err(AnalyticsError::Input("k must be at least 1".into()));
    }
    if test.0.len() != test.1.len() {
        return Err(AnalyticsError::Input(
            "member and item columns must have the same length".into(),
        ));
    }
    let model = Recommender::fit(train.0, train.1, category, config)?;
    let n_members = train.0.iter().chain(test.0).max().map_or(0, |&m| m as usize + 1);
    let history = Rows::build(
        n_members,
        distinct_pairs(train.0, train.1)
            .iter()
            .map(|&p| ((p >> 32) as u32, p as u32)),
    );
    let bought = Rows::build(
        n_members,
        distinct_pairs(test.0, test.1)
            .iter()
            .map(|&p| ((p >> 32) as u32, p as u32)),
    );
    let (mut members, mut precision, mut recall, mut base_precision, mut base_recall) =
        (0u64, 0.0, 0.0, 0.0, 0.0);
    let mut seen = vec![false; model.items()];
    let mut base_seen = vec![false; model.items()];
    for m in 0..n_members {
        let owned = history.row(m);
        if owned.is_empty() {
            continue;
        }
        let new: Vec<u32> = bought
            .row(m)
            .iter()
            .copied()
            .filter(|i| owned.binary_search(i).is_err() && (*i as usize) < model.items())
            .collect();
        if new.is_empty() {
            continue;
        }
        members += 1;
        let hits = |list: &mut dyn Iterator<Item = u32>, seen: &mut [bool]| {
            list.filter(|&j| {
                seen[j as usize] = true;
                new.binary_search(&j).is_ok()
            })
            .count() as f64
        };
        let h = hits(
            &mut model.recommend(owned, k).into_iter().map(|r| r.item),
            &mut seen,
        );
        let b = hits(&mut model.most_popular(owned, k).into_iter(), &mut base_seen);
        precision += h / k as f64;
        recall += h / new.len() as f64;
        base_precision += b / k as f64;
        base_recall += b / new.len() as f64;
    }
    let mean = |s: f64| if members == 0 { 0.0 } else { s / members as f64 };
    let share = |s: &[bool]| {
        if s.is_empty() {
            0.0
        } else {
            s.iter().filter(|&&x| x).count() as f64 / s.len() as f64
        }
    };
    Ok(Evaluation {
        k,
        members,
        precision: mean(precision),
        recall: mean(recall),
        baseline_precision: mean(base_precision),
        baseline_recall: mean(base_recall),
        coverage: share(&seen),
        baseline_coverage: share(&base_seen),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(shrinkage: f64, category_weight: f64) -> RecommenderConfig {
        RecommenderConfig {
            shrinkage,
            category_weight,
            ..RecommenderConfig::default()
        }
    }

    #[test]
    fn rejects_bad_configuration_and_items_outside_the_catalogue() {
        assert!(Recommender::fit(&[0], &[0], &[None], cfg(-1.0, 0.2)).is_err());
        assert!(Recommender::fit(&[0], &[0], &[None], cfg(1.0, 1.5)).is_err());
        assert!(matches!(
            Recommender::fit(&[0, 0], &[0, 3], &[None, None], cfg(1.0, 0.2)),
            Err(AnalyticsError::Row { row: 1, .. })
        ));
    }

    #[test]
    fn an_empty_history_gets_the_most_popular_and_an_empty_model_gets_nothing() {
        let model =
            Recommender::fit(&[0, 1, 1, 2], &[1, 1, 0, 1], &[None, None, None], cfg(0.0, 0.2)).unwrap();
        let list = model.recommend(&[], 5);
        assert_eq!(list.iter().map(|r| r.item).collect::<Vec<_>>(), vec![1, 0]);
        assert!(list.iter().all(|r| r.reason == Reason::Popular && r.score == 0.0));
        let empty = Recommender::fit(&[], &[], &[None; 3], cfg(0.0, 0.2)).unwrap();
        assert!(empty.recommend(&[0], 5).is_empty());
    }

    #[test]
    fn outliers_count_for_popularity_but_not_for_co_purchase() {
        let config = RecommenderConfig {
            history_limit: 2,
            ..cfg(0.0, 0.0)
        };
        // Member 0 bought three items: over the limit.
        let model = Recommender::fit(&[0, 0, 0, 1, 1], &[0, 1, 2, 0, 1], &[None; 3], config).unwrap();
        assert_eq!(model.buyers(2), 1);
        assert!(model.similar(2).is_empty());
        assert_eq!(model.similar(0), &[(1, 1.0)]);
    }
}
