//! Purchase lines from files (who bought which SKU when) for the recommender, its commands, and
//! the synthetic catalogue `synthesize --items` draws from.

use std::io::Write;
use std::path::Path;

use huiyuan_analytics::recommend::{evaluate, Reason, Recommender, RecommenderConfig};
use rand::{Rng, SeedableRng};
use serde_json::json;
use time::Date;

use super::{date_arg, parse_date};
use crate::AnyError;

/// Names numbered in order of first appearance.
#[derive(Default)]
struct Names {
    names: Vec<String>,
    index: std::collections::HashMap<String, u32>,
}

impl Names {
    fn number(&mut self, name: &str) -> u32 {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        let i = self.names.len() as u32;
        self.names.push(name.to_owned());
        self.index.insert(name.to_owned(), i);
        i
    }
}

/// A file's purchase lines as columns.
pub struct Baskets {
    members: Names,
    skus: Names,
    categories: Names,
    member: Vec<u32>,
    date: Vec<Date>,
    item: Vec<u32>,
    /// By item: its category (the first one the file gives it).
    item_category: Vec<Option<u32>>,
}

/// Reads a CSV with `member_id`, `date` and `sku` columns and optionally `category` (others are
/// ignored); one row per line bought. An error names the line and the reason.
pub fn load_baskets(path: &Path) -> Result<Baskets, AnyError> {
    let mut reader = csv::ReaderBuilder::new()
        .from_path(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let headers = reader.byte_headers()?.clone();
    let find = |name: &str| headers.iter().position(|h| h.trim_ascii() == name.as_bytes());
    let column = |name: &str| {
        find(name).ok_or_else(|| format!("{}: the header has no `{name}` column", path.display()))
    };
    let (id_col, date_col, sku_col) = (column("member_id")?, column("date")?, column("sku")?);
    let category_col = find("category");
    let mut b = Baskets {
        members: Names::default(),
        skus: Names::default(),
        categories: Names::default(),
        member: Vec::new(),
        date: Vec::new(),
        item: Vec::new(),
        item_category: Vec::new(),
    };
    let mut record = csv::ByteRecord::new();
    let mut line = 1;
    while reader.read_byte_record(&mut record)? {
        line += 1;
        let field = |i: usize| record.get(i).unwrap_or_default().trim_ascii();
        let text = |i: usize, what: &str| {
            std::str::from_utf8(field(i)).map_err(|_| format!("line {line}: {what} is not UTF-8"))
        };
        let id = text(id_col, "member_id")?;
        let sku = text(sku_col, "sku")?;
        if id.is_empty() || sku.is_empty() {
            return Err(format!("line {line}: member_id and sku must not be empty").into());
        }
        let date = parse_date(field(date_col)).ok_or_else(|| {
            format!(
                "line {line}: date {:?} is not YYYY-MM-DD",
                String::from_utf8_lossy(field(date_col))
            )
        })?;
        let item = b.skus.number(sku);
        if item as usize == b.item_category.len() {
            let category = match category_col {
                Some(c) => Some(text(c, "category")?).filter(|c| !c.is_empty()),
                None => None,
            };
            b.item_category.push(category.map(|c| b.categories.number(c)));
        }
        b.member.push(b.members.number(id));
        b.date.push(date);
        b.item.push(item);
    }
    Ok(b)
}

/// `analytics recommend`: each member's list, from a model of the whole file.
pub fn recommend(
    input: &Path,
    members: &[String],
    limit: usize,
    json: bool,
    out: &mut impl Write,
) -> Result<(), AnyError> {
    let b = load_baskets(input)?;
    let model = Recommender::fit(&b.member, &b.item, &b.item_category, RecommenderConfig::default())?;
    let mut history: Vec<Vec<u32>> = vec![Vec::new(); b.members.names.len()];
    for (&m, &i) in b.member.iter().zip(&b.item) {
        history[m as usize].push(i);
    }
    let category = |i: u32| b.item_category[i as usize].map(|c| b.categories.names[c as usize].as_str());
    let mut rows = Vec::new();
    for id in members {
        // A member the file does not know gets the best sellers, like a new member would.
        let owned = b
            .members
            .index
            .get(id)
            .map_or(&[][..], |&m| &history[m as usize][..]);
        for (rank, r) in model.recommend(owned, limit).into_iter().enumerate() {
            let (reason, because) = match r.reason {
                Reason::BoughtTogether { because } => {
                    ("bought_together", Some(b.skus.names[because as usize].as_str()))
                }
                Reason::PopularInCategory => ("popular_in_category", None),
                Reason::Popular => ("popular", None),
            };
            rows.push(
                json!({"member_id": id, "rank": rank + 1, "sku": b.skus.names[r.item as usize],
                             "category": category(r.item), "score": r.score, "reason": reason,
                             "because_sku": because}),
            );
        }
    }
    if json {
        serde_json::to_writer(&mut *out, &json!({ "recommendations": rows }))?;
        writeln!(out)?;
    } else {
        for r in &rows {
            writeln!(
                out,
                "{:<12} {:>2}. {:<16} {:<12} {:.3} {}{}",
                r["member_id"].as_str().unwrap_or_default(),
                r["rank"],
                r["sku"].as_str().unwrap_or_default(),
                r["category"].as_str().unwrap_or("-"),
                r["score"].as_f64().unwrap_or_default(),
                r["reason"].as_str().unwrap_or_default(),
                r["because_sku"]
                    .as_str()
                    .map(|s| format!(" (with {s})"))
                    .unwrap_or_default()
            )?;
        }
    }
    Ok(())
}

/// `analytics recommend-eval`: precision and recall at k on purchases from `split` on, of a model
/// fitted on those before, against the most-popular baseline.
pub fn evaluate_split(
    input: &Path,
    split: &str,
    k: usize,
    config: RecommenderConfig,
    json: bool,
    out: &mut impl Write,
) -> Result<(), AnyError> {
    let split = date_arg("split-date", split)?;
    let clock = std::time::Instant::now();
    let b = load_baskets(input)?;
    let read_s = clock.elapsed().as_secs_f64();
    let (mut train, mut test) = ((Vec::new(), Vec::new()), (Vec::new(), Vec::new()));
    for i in 0..b.member.len() {
        let side = if b.date[i] < split { &mut train } else { &mut test };
        side.0.push(b.member[i]);
        side.1.push(b.item[i]);
    }
    if train.0.is_empty() || test.0.is_empty() {
        return Err(format!("--split-date {split} leaves no purchases before it or none from it on").into());
    }
    let e = evaluate(
        (&train.0, &train.1),
        (&test.0, &test.1),
        &b.item_category,
        k,
        config,
    )?;
    let eval_s = clock.elapsed().as_secs_f64() - read_s;
    if json {
        serde_json::to_writer(
            &mut *out,
            &json!({"split_date": split.to_string(), "train_rows": train.0.len(), "test_rows": test.0.len(),
                    "items": b.skus.names.len(), "config": config, "evaluation": e}),
        )?;
        writeln!(out)?;
    } else {
        writeln!(
            out,
            "{} rows before {split}, {} from it on; {} items; {} members evaluated",
            train.0.len(),
            test.0.len(),
            b.skus.names.len(),
            e.members
        )?;
        writeln!(
            out,
            "{:<14} {:>14} {:>14} {:>10}",
            "",
            format!("precision@{k}"),
            format!("recall@{k}"),
            "coverage"
        )?;
        writeln!(
            out,
            "{:<14} {:>14.4} {:>14.4} {:>10.3}",
            "item-to-item", e.precision, e.recall, e.coverage
        )?;
        writeln!(
            out,
            "{:<14} {:>14.4} {:>14.4} {:>10.3}",
            "most popular", e.baseline_precision, e.baseline_recall, e.baseline_coverage
        )?;
        writeln!(out, "read {read_s:.2} s, fitted and evaluated {eval_s:.2} s")?;
    }
    Ok(())
}

/// The synthetic catalogue: `items` SKUs in categories of about 25, each SKU paired with a
/// complement in its category (`SKU00002` with `SKU00003`). Each member has a favourite category.
/// A purchase is the complement of the member's previous one with probability 0.35; otherwise
/// from the favourite category with probability 0.7, else from the whole catalogue, in both
/// cases skewed to the first (best-selling) items.
pub struct ItemChooser {
    items: u32,
    categories: u32,
    rng: rand::rngs::StdRng,
    favourite: u32,
    last: Option<u32>,
}

impl ItemChooser {
    pub fn new(items: u32, seed: u64) -> Self {
        ItemChooser {
            items,
            categories: items.div_ceil(25).max(1),
            rng: rand::rngs::StdRng::seed_from_u64(seed ^ 0x005e_ed0f_17e5),
            favourite: 0,
            last: None,
        }
    }

    fn range(&self, category: u32) -> (u32, u32) {
        let per = self.items.div_ceil(self.categories);
        (category * per, ((category + 1) * per).min(self.items))
    }

    pub fn next_member(&mut self) {
        self.favourite = self.rng.gen_range(0..self.categories);
        self.last = None;
    }

    pub fn next_item(&mut self) -> u32 {
        let skewed = |rng: &mut rand::rngs::StdRng, n: u32| {
            let u: f64 = rng.gen();
            ((u * u * f64::from(n)) as u32).min(n.saturating_sub(1))
        };
        let item = match self.last {
            Some(last) if self.rng.gen_bool(0.35) && (last ^ 1) < self.items => last ^ 1,
            _ if self.rng.gen_bool(0.7) && self.range(self.favourite).0 < self.range(self.favourite).1 => {
                let (from, to) = self.range(self.favourite);
                from + skewed(&mut self.rng, to - from)
            }
            _ => skewed(&mut self.rng, self.items),
        };
        self.last = Some(item);
        item
    }

    pub fn sku(&self, item: u32) -> String {
        format!("SKU{item:05}")
    }

    pub fn category(&self, item: u32) -> String {
        format!("cat{:03}", item / self.items.div_ceil(self.categories))
    }
}
