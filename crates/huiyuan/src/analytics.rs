//! `huiyuan analytics …`: the analytics crate on a CSV file of transactions, for analysts and
//! scripts. The output shapes are a stable interface (see docs/analytics.md).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use huiyuan_analytics::bgnbd::BgNbd;
use huiyuan_analytics::gamma_gamma::{lifetime_value, GammaGamma, Spenders};
use huiyuan_analytics::rfm::rfm;
use huiyuan_analytics::summary::{summarise, Period};
use huiyuan_analytics::Transactions;
use serde_json::json;
use time::Date;

use crate::AnyError;

#[derive(clap::Subcommand)]
pub enum AnalyticsCommand {
    /// BG/NBD + Gamma-Gamma: each member's P(alive), expected purchases and lifetime value.
    Clv {
        /// CSV with a header holding `member_id,date,amount` (other columns are ignored).
        #[arg(long)]
        input: PathBuf,
        #[arg(long, value_enum, default_value = "week")]
        period: PeriodArg,
        /// Last day of the calibration period; later transactions are left out.
        #[arg(long)]
        calibration_end: String,
        /// Months ahead for expected purchases and lifetime value.
        #[arg(long, default_value_t = 12)]
        horizon: u32,
        /// Monthly discount rate for lifetime value.
        #[arg(long, default_value_t = 0.01)]
        discount_rate: f64,
        #[arg(long)]
        json: bool,
    },
    /// Recency, frequency, monetary scores 1–5 and the eight classic segments.
    Rfm {
        #[arg(long)]
        input: PathBuf,
        #[arg(long)]
        as_of: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum PeriodArg {
    Day,
    Week,
    Month,
}

impl From<PeriodArg> for Period {
    fn from(p: PeriodArg) -> Self {
        match p {
            PeriodArg::Day => Period::Day,
            PeriodArg::Week => Period::Week,
            PeriodArg::Month => Period::Month,
        }
    }
}

/// A file's transactions as columns, with member IDs in order of first appearance.
pub struct Loaded {
    pub ids: Vec<String>,
    pub member: Vec<u32>,
    pub date: Vec<Date>,
    pub amount: Vec<i64>,
}

impl Loaded {
    pub fn transactions(&self) -> Transactions<'_> {
        Transactions {
            member: &self.member,
            date: &self.date,
            amount: &self.amount,
        }
    }
}

/// `YYYY-MM-DD`, or the date part of an RFC 3339 timestamp. Parsed by hand: this runs once per
/// row of files with tens of millions of rows, and a format-description parser costs more
/// than the rest of the row.
pub fn parse_date(s: &[u8]) -> Option<Date> {
    let s = if s.len() > 10 && matches!(s[10], b'T' | b' ') {
        &s[..10]
    } else {
        s
    };
    if s.len() != 10 || s[4] != b'-' || s[7] != b'-' {
        return None;
    }
    let num = |b: &[u8]| -> Option<u32> {
        b.iter().try_fold(0u32, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    let month = time::Month::try_from(num(&s[5..7])? as u8).ok()?;
    Date::from_calendar_date(num(&s[..4])? as i32, month, num(&s[8..10])? as u8).ok()
}

/// A decimal amount (`123`, `-4.5`, `0.99`) in minor units (hundredths); more than two decimals
/// are refused rather than rounded.
pub fn parse_amount(s: &[u8]) -> Option<i64> {
    let (negative, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (whole, fraction) = match digits.iter().position(|&c| c == b'.') {
        Some(dot) => (&digits[..dot], &digits[dot + 1..]),
        None => (digits, &b""[..]),
    };
    if (whole.is_empty() && fraction.is_empty()) || fraction.len() > 2 {
        return None;
    }
    let mut value: i64 = 0;
    for &c in whole {
        if !c.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(i64::from(c - b'0'))?;
    }
    let mut cents = 0;
    for (i, &c) in fraction.iter().enumerate() {
        if !c.is_ascii_digit() {
            return None;
        }
        cents += i64::from(c - b'0') * if i == 0 { 10 } else { 1 };
    }
    let v = value.checked_mul(100)?.checked_add(cents)?;
    Some(if negative { -v } else { v })
}

/// Reads a transactions CSV; an error names the line and the reason.
pub fn load_csv(path: &Path) -> Result<Loaded, AnyError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_path(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let headers = reader.byte_headers()?.clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim_ascii() == name.as_bytes())
            .ok_or_else(|| format!("{}: the header has no `{name}` column", path.display()))
    };
    let (c_member, c_date, c_amount) = (column("member_id")?, column("date")?, column("amount")?);
    let mut loaded = Loaded {
        ids: Vec::new(),
        member: Vec::new(),
        date: Vec::new(),
        amount: Vec::new(),
    };
    let mut index: HashMap<Vec<u8>, u32> = HashMap::new();
    let mut record = csv::ByteRecord::new();
    while reader.read_byte_record(&mut record)? {
        let line = record.position().map_or(0, |p| p.line());
        let field = |i: usize, name: &str| {
            record
                .get(i)
                .map(<[u8]>::trim_ascii)
                .ok_or_else(|| format!("line {line}: no `{name}` field"))
        };
        let id = field(c_member, "member_id")?;
        if id.is_empty() {
            return Err(format!("line {line}: member_id is empty").into());
        }
        let raw_date = field(c_date, "date")?;
        let date = parse_date(raw_date).ok_or_else(|| {
            format!(
                "line {line}: date {:?} is not YYYY-MM-DD",
                String::from_utf8_lossy(raw_date)
            )
        })?;
        let raw_amount = field(c_amount, "amount")?;
        let amount = parse_amount(raw_amount).ok_or_else(|| {
            format!(
                "line {line}: amount {:?} is not a number with at most two decimals",
                String::from_utf8_lossy(raw_amount)
            )
        })?;
        let next = loaded.ids.len() as u32;
        let m = *index.entry(id.to_vec()).or_insert_with(|| {
            loaded.ids.push(String::from_utf8_lossy(id).into_owned());
            next
        });
        loaded.member.push(m);
        loaded.date.push(date);
        loaded.amount.push(amount);
    }
    Ok(loaded)
}

fn date_arg(name: &str, value: &str) -> Result<Date, AnyError> {
    parse_date(value.as_bytes()).ok_or_else(|| format!("--{name} {value:?} is not YYYY-MM-DD").into())
}

/// Minor units (possibly fractional, as a mean) as major units rounded to the cent.
fn money(minor: f64) -> f64 {
    minor.round() / 100.0
}

pub fn run(command: AnalyticsCommand) -> Result<(), AnyError> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match command {
        AnalyticsCommand::Rfm { input, as_of, json } => {
            let as_of = date_arg("as-of", &as_of)?;
            let data = load_csv(&input)?;
            let report = rfm(&data.transactions(), as_of)?;
            if json {
                let members: Vec<_> = report
                    .members
                    .iter()
                    .map(|m| {
                        json!({ "member_id": data.ids[m.member as usize], "recency": m.recency_days,
                                "frequency": m.frequency, "monetary": money(m.monetary as f64),
                                "r": m.r, "f": m.f, "m": m.m, "score": format!("{}{}{}", m.r, m.f, m.m),
                                "segment": m.segment, "segment_zh": m.segment.name_zh() })
                    })
                    .collect();
                let segments: Vec<_> = report
                    .segments
                    .iter()
                    .map(|s| {
                        json!({ "segment": s.segment, "name_zh": s.name_zh, "name_en": s.name_en,
                                "members": s.members, "revenue": money(s.revenue as f64) })
                    })
                    .collect();
                serde_json::to_writer(
                    &mut out,
                    &json!({ "as_of": as_of.to_string(), "members": members, "segments": segments,
                             "mean": { "recency": report.mean_recency_days,
                                       "frequency": report.mean_frequency,
                                       "monetary": money(report.mean_monetary) } }),
                )?;
                writeln!(out)?;
            } else {
                writeln!(out, "RFM as of {as_of}: {} members", report.members.len())?;
                for s in &report.segments {
                    writeln!(
                        out,
                        "{:<6} {:<22} {:>10} members {:>16.2} revenue",
                        s.name_zh,
                        s.name_en,
                        s.members,
                        money(s.revenue as f64)
                    )?;
                }
            }
        }
        AnalyticsCommand::Clv {
            input,
            period,
            calibration_end,
            horizon,
            discount_rate,
            json,
        } => {
            let end = date_arg("calibration-end", &calibration_end)?;
            if !(0.0..1.0).contains(&discount_rate) {
                return Err("--discount-rate must be at least 0 and below 1 (monthly)".into());
            }
            let data = load_csv(&input)?;
            let period = Period::from(period);
            let summary = summarise(&data.transactions(), period, end)?;
            let bg = BgNbd::fit(&summary.customers())?;
            let gg = GammaGamma::fit(&Spenders {
                frequency: &summary.frequency,
                mean_spend: &summary.mean_spend,
            })?;
            let per_month = period.per_month();
            let ahead = f64::from(horizon) * per_month;
            let mut members = Vec::with_capacity(summary.len());
            for i in 0..summary.len() {
                let (x, tx, t) = (summary.frequency[i], summary.recency[i], summary.age[i]);
                let spend = gg.expected_spend(x, summary.mean_spend[i]);
                let clv = lifetime_value(&bg, spend, x, tx, t, horizon, discount_rate, per_month)?;
                members.push(json!({
                    "member_id": data.ids[summary.member[i] as usize],
                    "frequency": x, "recency": tx, "T": t,
                    "monetary_value": money(summary.mean_spend[i]),
                    "p_alive": bg.p_alive(x, tx, t),
                    "expected_purchases": bg.expected_purchases(ahead, x, tx, t)?,
                    "expected_spend": money(spend),
                    "clv": money(clv),
                }));
            }
            let report = json!({
                "bgnbd": bg,
                "gamma_gamma": { "p": gg.p, "q": gg.q, "gamma": money(gg.gamma),
                                 "log_likelihood": gg.log_likelihood },
                "period": period, "calibration_end": end.to_string(),
                "horizon_months": horizon, "discount_rate": discount_rate,
                "members": members,
            });
            if json {
                serde_json::to_writer(&mut out, &report)?;
                writeln!(out)?;
            } else {
                writeln!(
                    out,
                    "BG/NBD  r={:.4} alpha={:.4} a={:.4} b={:.4}  log-likelihood {:.2}",
                    bg.r, bg.alpha, bg.a, bg.b, bg.log_likelihood
                )?;
                writeln!(
                    out,
                    "Gamma-Gamma  p={:.4} q={:.4} gamma={:.2}",
                    gg.p,
                    gg.q,
                    money(gg.gamma)
                )?;
                let total: f64 = report["members"]
                    .as_array()
                    .map(|m| m.iter().filter_map(|m| m["clv"].as_f64()).sum())
                    .unwrap_or(0.0);
                writeln!(
                    out,
                    "{} customers; lifetime value over {horizon} months: {total:.2} in all",
                    summary.len()
                )?;
            }
        }
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_and_dates_parse_exactly_or_not_at_all() {
        assert_eq!(parse_amount(b"12.34"), Some(1234));
        assert_eq!(parse_amount(b"-0.5"), Some(-50));
        assert_eq!(parse_amount(b"7"), Some(700));
        assert_eq!(parse_amount(b".99"), Some(99));
        for bad in [
            &b""[..],
            b"1.234",
            b"1,5",
            b"abc",
            b"-",
            b"1e3",
            b"99999999999999999999",
        ] {
            assert_eq!(parse_amount(bad), None, "{bad:?}");
        }
        assert_eq!(
            parse_date(b"2026-02-28"),
            Some(time::macros::date!(2026 - 02 - 28))
        );
        assert_eq!(
            parse_date(b"2026-02-28T10:00:00+08:00"),
            Some(time::macros::date!(2026 - 02 - 28))
        );
        for bad in [&b"2026-02-30"[..], b"2026/02/01", b"26-02-01", b"2026-2-01"] {
            assert_eq!(parse_date(bad), None, "{bad:?}");
        }
    }
}
