//! `huiyuan analytics …`: the analytics crate on a CSV file of transactions, for analysts and
//! scripts. The output shapes are a stable interface (see docs/analytics.md).

use rustc_hash::FxHashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use huiyuan_analytics::attribution::{attribute, Journey};
use huiyuan_analytics::bgnbd::BgNbd;
use huiyuan_analytics::clv::{fit_spend, outlook, score};
use huiyuan_analytics::cohort::cohort_retention;
use huiyuan_analytics::lifecycle::{lifecycle, LifecycleRules};
use huiyuan_analytics::recommend::RecommenderConfig;
use huiyuan_analytics::rfm::{rfm, rfm_of_totals, PurchaseTotals, RfmReport};
use huiyuan_analytics::summary::{summarise, Period, Summary};
use huiyuan_analytics::Transactions;
use serde_json::json;
use time::Date;

use crate::AnyError;

mod baskets;
mod parquet;
mod totals;

/// Read a brand's purchases from the database instead of a file: the same `--data` /
/// `--database` as `serve`, and the brand's slug.
#[derive(clap::Args, Clone, Default)]
pub struct DatabaseSource {
    /// Folder of the embedded SQLite database (and its master key).
    #[arg(long, requires = "brand")]
    pub data: Option<PathBuf>,
    /// PostgreSQL URL.
    #[arg(long, requires = "brand")]
    pub database: Option<String>,
    /// The brand (slug) whose purchases to read.
    #[arg(long)]
    pub brand: Option<String>,
}

impl DatabaseSource {
    pub fn is_set(&self) -> bool {
        self.data.is_some() || self.database.is_some()
    }
}

/// A brand's (or a file's) transactions as of a date.
#[derive(clap::Args)]
pub struct AsOfArgs {
    /// CSV or Parquet with `member_id,date,amount` columns (other columns are ignored).
    #[arg(long, required_unless_present_any = ["data", "database"], conflicts_with_all = ["data", "database"])]
    input: Option<PathBuf>,
    #[command(flatten)]
    db: DatabaseSource,
    #[arg(long)]
    as_of: String,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Subcommand)]
pub enum AnalyticsCommand {
    /// BG/NBD + Gamma-Gamma: each member's P(alive), expected purchases and lifetime value.
    #[command(group(clap::ArgGroup::new("source").required(true).args(["input", "summary", "data", "database"])))]
    Clv {
        /// CSV with a header holding `member_id,date,amount` (other columns are ignored).
        #[arg(long, requires = "calibration_end")]
        input: Option<PathBuf>,
        #[command(flatten)]
        db: DatabaseSource,
        /// Instead of transactions: a per-customer summary CSV in the lifetimes convention, with
        /// `member_id` (or `customer_id`, `ID`), `frequency` (or `x`), `recency` (or `t_x`), `T`
        /// and optionally `monetary_value` (or `zbar`), in the unit of `--period`.
        #[arg(long)]
        summary: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "week")]
        period: PeriodArg,
        /// Last day of the calibration period; later transactions are left out.
        #[arg(long)]
        calibration_end: Option<String>,
        /// Months ahead for expected purchases and lifetime value.
        #[arg(long, default_value_t = 12)]
        horizon: u32,
        /// Monthly discount rate for lifetime value.
        #[arg(long, default_value_t = 0.01)]
        discount_rate: f64,
        #[arg(long)]
        json: bool,
        /// Print how long reading, fitting and scoring took, on stderr.
        #[arg(long)]
        timings: bool,
    },
    /// Write a synthetic `member_id,date,amount` file from a buy-till-you-die process (for
    /// benchmarks and for trying the models): deterministic for a seed.
    Synthesize {
        #[arg(long, default_value_t = 1_000_000)]
        members: u32,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// First day of the data; purchases run for `--days` from it.
        #[arg(long, default_value = "2024-01-01")]
        start: String,
        #[arg(long, default_value_t = 730)]
        days: u32,
        /// Also write `sku,category` columns from a catalogue of this many items (0: none).
        #[arg(long, default_value_t = 0)]
        items: u32,
        #[arg(long)]
        output: PathBuf,
    },
    /// Channel attribution: first touch, last touch, linear and Markov (removal effects).
    Attribution {
        /// One journey per line: `ch1 > ch2 > ch3,converted,value`, `converted` a count of
        /// conversions (0 or 1 for one journey; `true`/`false` too), `value` their total. An
        /// optional header line starts with `path`.
        #[arg(long)]
        paths: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// "You may also like": each member's list from an item-to-item model of the whole file
    /// (CSV with `member_id,date,sku[,category]`, one row per line bought).
    Recommend {
        #[arg(long)]
        input: PathBuf,
        /// A member to recommend to; repeat for several.
        #[arg(long = "member", required = true)]
        members: Vec<String>,
        #[arg(long, default_value_t = 10)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Offline evaluation of the recommender: fit on purchases before the split date, then
    /// precision@k and recall@k on the items each member bought for the first time from it on,
    /// against recommending the most popular items.
    RecommendEval {
        #[arg(long)]
        input: PathBuf,
        #[arg(long)]
        split_date: String,
        #[arg(long, default_value_t = 10)]
        k: usize,
        /// Weight of same-category popularity against co-purchase, 0 to 1.
        #[arg(long, default_value_t = RecommenderConfig::default().category_weight)]
        category_weight: f64,
        /// Shrinkage λ of the similarity, in members.
        #[arg(long, default_value_t = RecommenderConfig::default().shrinkage)]
        shrinkage: f64,
        #[arg(long, default_value_t = RecommenderConfig::default().neighbours)]
        neighbours: usize,
        #[arg(long)]
        json: bool,
    },
    /// Lifecycle stage of every member as of a date (new, active, at risk, dormant, churned by
    /// BG/NBD P(alive)); a member's enrolment is taken to be their first purchase.
    Lifecycle(AsOfArgs),
    /// Retention by first-purchase month up to a date.
    Cohorts(AsOfArgs),
    /// Recency, frequency, monetary scores 1–5 and the eight classic segments.
    Rfm {
        #[command(flatten)]
        args: AsOfArgs,
        /// Print how long reading and scoring took, on stderr.
        #[arg(long)]
        timings: bool,
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
    huiyuan_domain::money::parse_minor_units(s)
}

/// The date and amount of one row, or why not (the caller adds the line number).
fn parse_row(id: &[u8], date: &[u8], amount: &[u8]) -> Result<(Date, i64), String> {
    if id.is_empty() {
        return Err("member_id is empty".into());
    }
    let d = parse_date(date)
        .ok_or_else(|| format!("date {:?} is not YYYY-MM-DD", String::from_utf8_lossy(date)))?;
    let a = parse_amount(amount).ok_or_else(|| {
        format!(
            "amount {:?} is not a number with at most two decimals",
            String::from_utf8_lossy(amount)
        )
    })?;
    Ok((d, a))
}

/// Where the three columns are, from the header's names.
fn columns(path: &Path, headers: &[&[u8]]) -> Result<[usize; 3], AnyError> {
    let mut found = [0; 3];
    for (slot, name) in found.iter_mut().zip(["member_id", "date", "amount"]) {
        *slot = headers
            .iter()
            .position(|h| h.trim_ascii() == name.as_bytes())
            .ok_or_else(|| format!("{}: the header has no `{name}` column", path.display()))?;
    }
    Ok(found)
}

/// Reads a transactions CSV; an error names the line and the reason.
///
/// Files without quotes or carriage returns (what exports and our own tools write) take a fast
/// path: the file is split at line ends and parsed on every core, member IDs borrowed from the
/// buffer. Anything else goes through the `csv` crate.
pub fn load_csv(path: &Path) -> Result<Loaded, AnyError> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if memchr::memchr2(b'"', b'\r', &bytes).is_some() {
        return load_csv_quoted(path);
    }
    let header_end = memchr::memchr(b'\n', &bytes).unwrap_or(bytes.len());
    let headers: Vec<&[u8]> = bytes[..header_end].split(|&b| b == b',').collect();
    let cols = columns(path, &headers)?;
    let body = bytes.get(header_end + 1..).unwrap_or_default();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(16);
    // Chunks end at line ends; each knows how many lines it holds, so the columns can be
    // allocated once and every thread fills its own part of them.
    let mut chunks: Vec<&[u8]> = Vec::with_capacity(threads);
    let mut from = 0;
    for k in 1..=threads {
        let mut to = (body.len() * k / threads).max(from);
        to = if k < threads {
            memchr::memchr(b'\n', &body[to..]).map_or(body.len(), |i| to + i + 1)
        } else {
            body.len()
        };
        chunks.push(&body[from..to]);
        from = to;
    }
    let counts: Vec<usize> = std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .iter()
            .map(|c| {
                scope.spawn(move || {
                    memchr::memchr_iter(b'\n', c).count() + usize::from(!c.ends_with(b"\n") && !c.is_empty())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).collect()
    });
    let rows: usize = counts.iter().sum();
    let mut member = vec![0u32; rows];
    let mut date = vec![Date::MIN; rows];
    let mut amount = vec![0i64; rows];
    let parsed: Vec<Result<Chunk<'_>, (usize, String)>> = std::thread::scope(|scope| {
        let (mut m_rest, mut d_rest, mut a_rest) = (&mut member[..], &mut date[..], &mut amount[..]);
        let mut handles = Vec::with_capacity(threads);
        for (chunk, &n) in chunks.iter().zip(&counts) {
            let (m, m_tail) = std::mem::take(&mut m_rest).split_at_mut(n);
            let (d, d_tail) = std::mem::take(&mut d_rest).split_at_mut(n);
            let (a, a_tail) = std::mem::take(&mut a_rest).split_at_mut(n);
            (m_rest, d_rest, a_rest) = (m_tail, d_tail, a_tail);
            handles.push(scope.spawn(move || parse_chunk(chunk, cols, m, d, a)));
        }
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err((0, "a parser thread panicked".into())))
            })
            .collect()
    });
    // Merge: the first chunk's numbering is kept; later chunks' IDs are looked up in it (new
    // ones appended), so members are numbered in order of first appearance in the file.
    let mut ids = IdIndex::with_capacity(0);
    let mut lines_before = 1; // the header is line 1
    let (mut start, mut write) = (0, 0);
    for (k, result) in parsed.into_iter().enumerate() {
        let chunk = result.map_err(|(line, why)| format!("line {}: {why}", lines_before + line))?;
        let part = start..start + chunk.rows;
        if k == 0 {
            ids = chunk.ids;
        } else {
            let global: Vec<u32> = chunk.ids.ids.iter().map(|id| ids.number(id)).collect();
            for m in &mut member[part.clone()] {
                *m = global[*m as usize];
            }
        }
        // Blank lines left unfilled slots at the end of the chunk's part: close the gap.
        if write != start {
            member.copy_within(part.clone(), write);
            date.copy_within(part.clone(), write);
            amount.copy_within(part, write);
        }
        write += chunk.rows;
        start += counts[k];
        lines_before += counts[k];
    }
    member.truncate(write);
    date.truncate(write);
    amount.truncate(write);
    Ok(Loaded {
        ids: ids
            .ids
            .iter()
            .map(|id| String::from_utf8_lossy(id).into_owned())
            .collect(),
        member,
        date,
        amount,
    })
}

/// One chunk's member IDs, numbered locally, and how many rows it filled.
struct Chunk<'a> {
    ids: IdIndex<'a>,
    rows: usize,
}

/// Member IDs numbered in order of first appearance. IDs of up to 15 bytes (nearly all) are
/// keyed by their bytes packed into a `u128`, so a lookup touches the table only, never the
/// file buffer: with a million members in random order, that second cache miss per row was a
/// third of the reading time.
struct IdIndex<'a> {
    short: FxHashMap<u128, u32>,
    long: FxHashMap<&'a [u8], u32>,
    ids: Vec<&'a [u8]>,
}

impl<'a> IdIndex<'a> {
    fn with_capacity(n: usize) -> Self {
        Self {
            short: FxHashMap::with_capacity_and_hasher(n, Default::default()),
            long: FxHashMap::default(),
            ids: Vec::with_capacity(n),
        }
    }

    fn number(&mut self, id: &'a [u8]) -> u32 {
        let next = self.ids.len() as u32;
        let slot = if id.len() < 16 {
            let mut packed = [0u8; 16];
            packed[..id.len()].copy_from_slice(id);
            packed[15] = id.len() as u8;
            self.short.entry(u128::from_le_bytes(packed)).or_insert(next)
        } else {
            self.long.entry(id).or_insert(next)
        };
        if *slot == next {
            self.ids.push(id);
        }
        *slot
    }
}

/// Parses whole lines into the given column parts; an error carries the line's number within
/// the chunk (1-based).
fn parse_chunk<'a>(
    chunk: &'a [u8],
    [c_id, c_date, c_amount]: [usize; 3],
    member: &mut [u32],
    date: &mut [Date],
    amount: &mut [i64],
) -> Result<Chunk<'a>, (usize, String)> {
    // Sized for a few purchases per member: growing a large map rehashes it each time.
    let mut out = Chunk {
        ids: IdIndex::with_capacity(member.len() / 4),
        rows: 0,
    };
    let last = c_id.max(c_date).max(c_amount);
    let mut fields: Vec<&[u8]> = Vec::with_capacity(last + 1);
    let mut line_no = 0;
    for line in chunk.split(|&b| b == b'\n') {
        line_no += 1;
        if line.is_empty() {
            continue;
        }
        fields.clear();
        fields.extend(line.splitn(last + 2, |&b| b == b',').take(last + 1));
        if fields.len() <= last {
            return Err((
                line_no,
                format!("has {} fields; expected at least {}", fields.len(), last + 1),
            ));
        }
        let id = fields[c_id].trim_ascii();
        let (d, a) = parse_row(id, fields[c_date].trim_ascii(), fields[c_amount].trim_ascii())
            .map_err(|e| (line_no, e))?;
        let m = out.ids.number(id);
        let r = out.rows;
        member[r] = m;
        date[r] = d;
        amount[r] = a;
        out.rows += 1;
    }
    Ok(out)
}

/// The general path for files with quoted fields or CRLF line ends.
fn load_csv_quoted(path: &Path) -> Result<Loaded, AnyError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_path(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let headers = reader.byte_headers()?.clone();
    let [c_member, c_date, c_amount] = columns(path, &headers.iter().collect::<Vec<_>>())?;
    let mut loaded = Loaded {
        ids: Vec::new(),
        member: Vec::new(),
        date: Vec::new(),
        amount: Vec::new(),
    };
    let mut index: FxHashMap<Vec<u8>, u32> = FxHashMap::default();
    let mut record = csv::ByteRecord::new();
    while reader.read_byte_record(&mut record)? {
        let line = record.position().map_or(0, |p| p.line());
        let field = |i: usize| record.get(i).map(<[u8]>::trim_ascii).unwrap_or_default();
        let id = field(c_member);
        let (date, amount) =
            parse_row(id, field(c_date), field(c_amount)).map_err(|e| format!("line {line}: {e}"))?;
        let m = match index.get(id) {
            Some(&m) => m,
            None => {
                let m = loaded.ids.len() as u32;
                index.insert(id.to_vec(), m);
                loaded.ids.push(String::from_utf8_lossy(id).into_owned());
                m
            }
        };
        loaded.member.push(m);
        loaded.date.push(date);
        loaded.amount.push(amount);
    }
    Ok(loaded)
}

/// Reads a per-customer summary (see `clv --summary`); monetary values are in major units.
pub fn load_summary_csv(path: &Path) -> Result<(Vec<String>, Summary), AnyError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_path(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let headers = reader.byte_headers()?.clone();
    let column = |names: &[&str]| {
        headers
            .iter()
            .position(|h| names.iter().any(|n| h.trim_ascii() == n.as_bytes()))
    };
    let need = |names: &[&str]| {
        column(names).ok_or_else(|| format!("{}: the header has no `{}` column", path.display(), names[0]))
    };
    let c_id = need(&["member_id", "customer_id", "ID"])?;
    let c_x = need(&["frequency", "x"])?;
    let c_tx = need(&["recency", "t_x"])?;
    let c_t = need(&["T"])?;
    let c_m = column(&["monetary_value", "zbar"]);
    let mut ids = Vec::new();
    let mut s = Summary::default();
    let mut record = csv::ByteRecord::new();
    while reader.read_byte_record(&mut record)? {
        let line = record.position().map_or(0, |p| p.line());
        let text = |i: usize| {
            std::str::from_utf8(record.get(i).unwrap_or_default())
                .unwrap_or("")
                .trim()
        };
        let number = |i: usize, name: &str| -> Result<f64, String> {
            text(i)
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| format!("line {line}: {name} {:?} is not a number ≥ 0", text(i)))
        };
        let x = text(c_x)
            .parse::<f64>()
            .ok()
            .filter(|v| v.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(v))
            .ok_or_else(|| format!("line {line}: frequency {:?} is not a whole number ≥ 0", text(c_x)))?;
        s.member.push(ids.len() as u32);
        ids.push(text(c_id).to_owned());
        s.frequency.push(x as u32);
        s.recency.push(number(c_tx, "recency")?);
        s.age.push(number(c_t, "T")?);
        s.mean_spend.push(match c_m {
            Some(c) => number(c, "monetary_value")? * 100.0,
            None => 0.0,
        });
    }
    s.customers().validate().map_err(|e| match e {
        huiyuan_analytics::AnalyticsError::Row { row, reason } => format!("line {}: {reason}", row + 2),
        other => other.to_string(),
    })?;
    Ok((ids, s))
}

/// One member of `rfm --json`.
#[derive(serde::Serialize)]
struct RfmRow<'a> {
    member_id: &'a str,
    recency: i64,
    frequency: u64,
    monetary: f64,
    r: u8,
    f: u8,
    m: u8,
    score: String,
    segment: huiyuan_analytics::rfm::Segment,
    segment_zh: &'static str,
}

/// One member of `clv --json`.
#[derive(serde::Serialize)]
struct ClvRow<'a> {
    member_id: &'a str,
    frequency: u32,
    recency: f64,
    #[serde(rename = "T")]
    age: f64,
    monetary_value: f64,
    p_alive: f64,
    expected_purchases: f64,
    expected_spend: f64,
    clv: f64,
}

/// Prints the time since it was made, labelled, on stderr (when `on`).
fn stopwatch(on: bool) -> impl Fn(&str) {
    let clock = std::time::Instant::now();
    move |what: &str| {
        if on {
            eprintln!("{what}: {:.1} ms", clock.elapsed().as_secs_f64() * 1e3);
        }
    }
}

pub(crate) fn date_arg(name: &str, value: &str) -> Result<Date, AnyError> {
    parse_date(value.as_bytes()).ok_or_else(|| format!("--{name} {value:?} is not YYYY-MM-DD").into())
}

/// The snake_case name serde gives an enum value.
fn enum_name<T: serde::Serialize>(v: T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

/// Minor units (possibly fractional, as a mean) as major units rounded to the cent.
fn money(minor: f64) -> f64 {
    minor.round() / 100.0
}

/// A buy-till-you-die population: each member joins on a uniform day of the first quarter of
/// the span, buys at a Poisson rate λ ~ Gamma(0.9, 1/30 per day) while alive, drops out after
/// each purchase with probability p ~ Beta(0.6, 5), and spends Gamma(6, ν/6) per purchase
/// around a personal mean ν ~ Gamma(3, 25 yuan). About ten purchases per member over two years.
///
/// With `items > 0` each row also names one SKU (`sku,category` columns) from a catalogue with
/// structure a recommender can find: see [`baskets::ItemChooser`]. The items are drawn from a
/// generator of their own, so the `member_id,date,amount` columns are the same with or without.
fn synthesize(
    members: u32,
    seed: u64,
    start: Date,
    days: u32,
    items: u32,
    output: &Path,
) -> Result<u64, AnyError> {
    use rand::{Rng, SeedableRng};
    use rand_distr::{Beta, Distribution, Exp, Gamma};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut chooser = (items > 0).then(|| baskets::ItemChooser::new(items, seed));
    let rate = Gamma::new(0.9, 1.0 / 30.0)?;
    let dropout = Beta::new(0.6, 5.0)?;
    let mean_spend = Gamma::new(3.0, 2_500.0)?;
    // (day, member, amount, item), written in day order as an export would be.
    let mut rows: Vec<(u32, u32, i64, u32)> = Vec::new();
    let span = f64::from(days);
    for m in 0..members {
        let lambda: f64 = rate.sample(&mut rng);
        let p: f64 = dropout.sample(&mut rng);
        let nu: f64 = mean_spend.sample(&mut rng);
        let spend = Gamma::new(6.0, nu / 6.0)?;
        let gap = Exp::new(lambda.max(1e-9))?;
        let mut t = rng.gen_range(0.0..span / 4.0);
        if let Some(c) = chooser.as_mut() {
            c.next_member();
        }
        loop {
            let item = chooser.as_mut().map_or(0, baskets::ItemChooser::next_item);
            rows.push((t as u32, m, (spend.sample(&mut rng) as i64).max(1), item));
            if rng.gen_bool(p) {
                break;
            }
            t += gap.sample(&mut rng);
            if t >= span {
                break;
            }
        }
    }
    rows.sort_unstable();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(output)?);
    writeln!(
        out,
        "member_id,date,amount{}",
        if items > 0 { ",sku,category" } else { "" }
    )?;
    for &(day, m, amount, item) in &rows {
        let date = start + time::Duration::days(i64::from(day));
        write!(out, "m{m:07},{date},{}.{:02}", amount / 100, amount % 100)?;
        match &chooser {
            Some(c) => writeln!(out, ",{},{}", c.sku(item), c.category(item))?,
            None => writeln!(out)?,
        }
    }
    let rows = rows.len() as u64;
    out.flush()?;
    Ok(rows)
}

/// Reads `ch1 > ch2,converted,value` lines; channels are numbered in order of appearance.
pub fn load_paths(path: &Path) -> Result<(Vec<String>, Vec<Journey>), AnyError> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut names: Vec<String> = Vec::new();
    let mut journeys = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = line.trim();
        if line.is_empty() || (i == 0 && line.starts_with("path")) {
            continue;
        }
        let mut fields = line.rsplitn(3, ',');
        let (value, converted, path) = match (fields.next(), fields.next(), fields.next()) {
            (Some(v), Some(c), Some(p)) => (v.trim(), c.trim(), p.trim()),
            _ => return Err(format!("line {line_no}: expected `path,converted,value`").into()),
        };
        let conversions: u64 = match converted {
            "true" => 1,
            "false" => 0,
            n => n
                .parse()
                .map_err(|_| format!("line {line_no}: converted {n:?} is not a count, true or false"))?,
        };
        let value = parse_amount(value.as_bytes()).ok_or_else(|| {
            format!("line {line_no}: value {value:?} is not a number with at most two decimals")
        })?;
        let mut channels = Vec::new();
        for name in path.split('>').map(str::trim) {
            if name.is_empty() {
                return Err(format!("line {line_no}: the path has an empty channel").into());
            }
            let c = match names.iter().position(|n| n == name) {
                Some(c) => c,
                None => {
                    names.push(name.to_owned());
                    names.len() - 1
                }
            };
            channels.push(c as u32);
        }
        journeys.push(Journey {
            channels,
            conversions,
            nulls: u64::from(conversions == 0),
            value,
        });
    }
    Ok((names, journeys))
}

impl AnalyticsCommand {
    /// Where the command reads the brand's purchases from, when not from a file.
    pub fn database_source(&self) -> Option<&DatabaseSource> {
        match self {
            AnalyticsCommand::Clv { db, .. }
            | AnalyticsCommand::Lifecycle(AsOfArgs { db, .. })
            | AnalyticsCommand::Cohorts(AsOfArgs { db, .. })
            | AnalyticsCommand::Rfm {
                args: AsOfArgs { db, .. },
                ..
            } => Some(db).filter(|d| d.is_set()),
            _ => None,
        }
    }
}

/// The transactions a command works on: those read from the database (`preloaded`), else the
/// file.
fn source(input: Option<&Path>, preloaded: &mut Option<Loaded>) -> Result<Loaded, AnyError> {
    match (preloaded.take(), input) {
        (Some(loaded), _) => Ok(loaded),
        (None, Some(path)) if parquet::is_parquet(path) => parquet::load_parquet(path),
        (None, Some(path)) => load_csv(path),
        (None, None) => Err("give --input FILE, or --data DIR / --database URL with --brand".into()),
    }
}

/// RFM of the command's source, with the members' IDs. A plain CSV file is summed as it is
/// read (see [`totals`]); anything else is loaded whole first.
fn rfm_of_source(
    input: Option<&Path>,
    preloaded: &mut Option<Loaded>,
    as_of: Date,
    lap: &impl Fn(&str),
) -> Result<(totals::MemberIds, RfmReport), AnyError> {
    if let (None, Some(path)) = (preloaded.as_ref(), input) {
        if !parquet::is_parquet(path) {
            if let Some(t) = totals::member_totals_csv(path, as_of, totals::ReadPlan::default())? {
                lap("read");
                let report = rfm_of_totals(
                    &PurchaseTotals {
                        last: &t.last,
                        count: &t.count,
                        sum: &t.sum,
                    },
                    as_of,
                )?;
                lap("scored");
                return Ok((t.ids, report));
            }
        }
    }
    let data = source(input, preloaded)?;
    lap("read");
    let report = rfm(&data.transactions(), as_of)?;
    lap("scored");
    Ok((data.ids.into(), report))
}

/// Runs a command; `preloaded` holds the brand's purchases when it reads the database.
pub fn run(command: AnalyticsCommand, mut preloaded: Option<Loaded>) -> Result<(), AnyError> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match command {
        AnalyticsCommand::Recommend {
            input,
            members,
            limit,
            json,
        } => baskets::recommend(&input, &members, limit, json, &mut out)?,
        AnalyticsCommand::RecommendEval {
            input,
            split_date,
            k,
            category_weight,
            shrinkage,
            neighbours,
            json,
        } => {
            let config = RecommenderConfig {
                category_weight,
                shrinkage,
                neighbours,
                ..RecommenderConfig::default()
            };
            baskets::evaluate_split(&input, &split_date, k, config, json, &mut out)?
        }
        AnalyticsCommand::Lifecycle(AsOfArgs {
            input, as_of, json, ..
        }) => {
            let as_of = date_arg("as-of", &as_of)?;
            let data = source(input.as_deref(), &mut preloaded)?;
            let tx = data.transactions();
            let outlook = outlook(&tx, as_of, 12, 0.01)?;
            if let Err(why) = &outlook.fitted {
                eprintln!("no churn model ({why}): nobody is counted as churned");
            }
            let rules = LifecycleRules::default();
            let stages = lifecycle(&tx, None, Some(&outlook.p_alive()), as_of, &rules)?;
            let mut counts = std::collections::BTreeMap::new();
            for s in stages.iter().flatten() {
                *counts.entry(enum_name(s)).or_insert(0u64) += 1;
            }
            if json {
                let members: Vec<_> = stages
                    .iter()
                    .enumerate()
                    .filter_map(|(m, s)| s.map(|s| json!({"member_id": data.ids[m], "stage": s})))
                    .collect();
                serde_json::to_writer(
                    &mut out,
                    &json!({"as_of": as_of.to_string(), "rules": rules, "stages": counts,
                            "churn_model": outlook.fitted.as_ref().ok().map(|f| f.bgnbd),
                            "members": members}),
                )?;
                writeln!(out)?;
            } else {
                writeln!(out, "lifecycle as of {as_of}")?;
                for (stage, n) in &counts {
                    writeln!(out, "{stage:<10} {n:>10}")?;
                }
            }
        }
        AnalyticsCommand::Cohorts(AsOfArgs {
            input, as_of, json, ..
        }) => {
            let as_of = date_arg("as-of", &as_of)?;
            let data = source(input.as_deref(), &mut preloaded)?;
            let cohorts = cohort_retention(&data.transactions(), as_of)?;
            if json {
                serde_json::to_writer(&mut out, &json!({"as_of": as_of.to_string(), "cohorts": cohorts}))?;
                writeln!(out)?;
            } else {
                for c in &cohorts {
                    let rates: Vec<String> = c.rate.iter().map(|r| format!("{:>5.1}%", r * 100.0)).collect();
                    writeln!(out, "{} {:>8} {}", c.month, c.size, rates.join(" "))?;
                }
            }
        }
        AnalyticsCommand::Attribution { paths, json } => {
            let (names, journeys) = load_paths(&paths)?;
            let r = attribute(&journeys, names.len()).map_err(|e| match e {
                huiyuan_analytics::AnalyticsError::Row { row, reason } => {
                    format!("journey {}: {reason}", row + 1)
                }
                other => other.to_string(),
            })?;
            let per_channel = |credit: &huiyuan_analytics::attribution::Credit| -> serde_json::Value {
                names
                    .iter()
                    .enumerate()
                    .map(|(c, name)| {
                        (
                            name.clone(),
                            json!({ "conversions": credit.conversions[c], "value": money(credit.value[c]) }),
                        )
                    })
                    .collect::<serde_json::Map<_, _>>()
                    .into()
            };
            if json {
                let removal: serde_json::Map<_, _> = names
                    .iter()
                    .zip(&r.removal_effects)
                    .map(|(n, e)| (n.clone(), json!(e)))
                    .collect();
                serde_json::to_writer(
                    &mut out,
                    &json!({
                        "journeys": journeys.len(), "conversions": r.total_conversions,
                        "value": money(r.total_value as f64),
                        "conversion_probability": r.conversion_probability,
                        "removal_effects": removal,
                        "first_touch": per_channel(&r.first_touch), "last_touch": per_channel(&r.last_touch),
                        "linear": per_channel(&r.linear), "markov": per_channel(&r.markov),
                    }),
                )?;
                writeln!(out)?;
            } else {
                writeln!(
                    out,
                    "{} journeys, {} conversions; P(conversion) = {:.4}",
                    journeys.len(),
                    r.total_conversions,
                    r.conversion_probability
                )?;
                writeln!(
                    out,
                    "{:<16} {:>12} {:>12} {:>12} {:>12} {:>10}",
                    "channel", "first", "last", "linear", "markov", "removal"
                )?;
                for (c, name) in names.iter().enumerate() {
                    writeln!(
                        out,
                        "{name:<16} {:>12.2} {:>12.2} {:>12.2} {:>12.2} {:>10.4}",
                        r.first_touch.conversions[c],
                        r.last_touch.conversions[c],
                        r.linear.conversions[c],
                        r.markov.conversions[c],
                        r.removal_effects[c]
                    )?;
                }
            }
        }
        AnalyticsCommand::Synthesize {
            members,
            seed,
            start,
            days,
            items,
            output,
        } => {
            let start = date_arg("start", &start)?;
            let rows = synthesize(members, seed, start, days, items, &output)?;
            writeln!(
                out,
                "{rows} transactions of {members} members written to {}",
                output.display()
            )?;
        }
        AnalyticsCommand::Rfm {
            args: AsOfArgs {
                input, as_of, json, ..
            },
            timings,
        } => {
            let lap = stopwatch(timings);
            let as_of = date_arg("as-of", &as_of)?;
            let (ids, report) = rfm_of_source(input.as_deref(), &mut preloaded, as_of, &lap)?;
            if json {
                // Written member by member: a million-member report never exists as one tree.
                write!(out, "{{\"as_of\":\"{as_of}\",\"members\":[")?;
                for (i, m) in report.members.iter().enumerate() {
                    if i > 0 {
                        out.write_all(b",")?;
                    }
                    serde_json::to_writer(
                        &mut out,
                        &RfmRow {
                            member_id: ids.get(m.member as usize),
                            recency: m.recency_days,
                            frequency: m.frequency,
                            monetary: money(m.monetary as f64),
                            r: m.r,
                            f: m.f,
                            m: m.m,
                            score: [m.r, m.f, m.m].map(|d| char::from(b'0' + d)).iter().collect(),
                            segment: m.segment,
                            segment_zh: m.segment.name_zh(),
                        },
                    )?;
                }
                let segments: Vec<_> = report
                    .segments
                    .iter()
                    .map(|s| {
                        json!({ "segment": s.segment, "name_zh": s.name_zh, "name_en": s.name_en,
                                "members": s.members, "revenue": money(s.revenue as f64) })
                    })
                    .collect();
                write!(out, "],\"segments\":")?;
                serde_json::to_writer(&mut out, &segments)?;
                write!(out, ",\"mean\":")?;
                serde_json::to_writer(
                    &mut out,
                    &json!({ "recency": report.mean_recency_days, "frequency": report.mean_frequency,
                             "monetary": money(report.mean_monetary) }),
                )?;
                writeln!(out, "}}")?;
                lap("written");
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
            summary,
            period,
            calibration_end,
            horizon,
            discount_rate,
            json,
            timings,
            ..
        } => {
            let lap = stopwatch(timings);
            if !(0.0..1.0).contains(&discount_rate) {
                return Err("--discount-rate must be at least 0 and below 1 (monthly)".into());
            }
            let period = Period::from(period);
            let (ids, summary, end) = match (input, summary) {
                (input, None) if input.is_some() || preloaded.is_some() => {
                    let end = calibration_end
                        .as_deref()
                        .ok_or("give --calibration-end YYYY-MM-DD")?;
                    let end = date_arg("calibration-end", end)?;
                    let data = source(input.as_deref(), &mut preloaded)?;
                    let summary = summarise(&data.transactions(), period, end)?;
                    (data.ids, summary, Some(end))
                }
                (_, Some(file)) => {
                    let (ids, summary) = load_summary_csv(&file)?;
                    (ids, summary, None)
                }
                (_, None) => {
                    return Err("give --input, --summary, or --data / --database with --brand".into())
                }
            };
            lap("read and summarised");
            // The steps of `clv::lifetimes`, one by one so that each can be timed.
            let bg = BgNbd::fit(&summary.customers())?;
            lap("BG/NBD fitted");
            let gg = fit_spend(&summary)?;
            lap("Gamma-Gamma fitted");
            let scored = score(&summary, &bg, &gg, period, horizon, discount_rate)?;
            lap("members scored");
            let row = |i: usize| -> Result<ClvRow<'_>, AnyError> {
                let m = &scored[i];
                Ok(ClvRow {
                    member_id: &ids[summary.member[i] as usize],
                    frequency: summary.frequency[i],
                    recency: summary.recency[i],
                    age: summary.age[i],
                    monetary_value: money(summary.mean_spend[i]),
                    p_alive: m.p_alive,
                    expected_purchases: m.expected_purchases,
                    expected_spend: money(m.expected_spend),
                    clv: money(m.clv),
                })
            };
            if json {
                // Written member by member, as `rfm --json` is.
                let head = serde_json::to_string(&json!({
                    "bgnbd": bg,
                    "gamma_gamma": { "p": gg.p, "q": gg.q, "gamma": money(gg.gamma),
                                     "log_likelihood": gg.log_likelihood },
                    "period": period, "calibration_end": end.map(|d| d.to_string()),
                    "horizon_months": horizon, "discount_rate": discount_rate,
                }))?;
                out.write_all(head.trim_end_matches('}').as_bytes())?;
                out.write_all(b",\"members\":[")?;
                for i in 0..summary.len() {
                    if i > 0 {
                        out.write_all(b",")?;
                    }
                    serde_json::to_writer(&mut out, &row(i)?)?;
                }
                writeln!(out, "]}}")?;
                lap("written");
            } else {
                let mut total = 0.0;
                for i in 0..summary.len() {
                    total += row(i)?.clv;
                }
                lap("written");
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
