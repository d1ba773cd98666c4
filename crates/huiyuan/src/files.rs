//! `huiyuan import` and `huiyuan export`: the core's bulk import and export, from and to files,
//! as the installation's owner (who holds the master key) acting for one brand.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use huiyuan_core::files::export::ExportKind;
use huiyuan_core::files::import::{FileEncoding, ImportKind, ImportOptions, Rejection};
use huiyuan_core::files::table::Format;
use huiyuan_core::{Actor, Core};
use indicatif::{ProgressBar, ProgressStyle};

use crate::AnyError;

#[derive(clap::Args)]
pub struct ImportArgs {
    /// `members` or `transactions`.
    #[arg(value_parser = ["members", "transactions"])]
    pub kind: String,
    /// The CSV file.
    pub file: PathBuf,
    /// The brand (slug); the only brand when there is one.
    #[arg(long)]
    pub brand: Option<String>,
    /// `auto` (UTF-8, or GBK when most non-ASCII lines are not UTF-8), `utf-8` or `gbk`.
    #[arg(long, default_value = "auto", value_parser = ["auto", "utf-8", "utf8", "gbk", "gb18030"])]
    pub encoding: String,
    /// Map a header of the file to one of our fields: `--map "Mobile No=phone"`; `=ignore`
    /// silences a column. Repeatable.
    #[arg(long = "map", value_name = "HEADER=FIELD")]
    pub columns: Vec<String>,
    /// The system the file's external IDs come from (default `import`).
    #[arg(long)]
    pub source: Option<String>,
    /// Transactions: enrol phone numbers nobody has yet, instead of rejecting the line.
    #[arg(long)]
    pub enrol_unknown_phones: bool,
    /// Where to write the rejected lines (CSV: line, field, reason); default
    /// `FILE.rejected.csv` beside the input, written only when a line was rejected.
    #[arg(long)]
    pub report: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct ExportArgs {
    /// members, transactions, transaction_lines, ledger, coupons or insights.
    #[arg(value_parser = ["members", "transactions", "transaction_lines", "ledger", "coupons", "insights"])]
    pub kind: String,
    /// The brand (slug); the only brand when there is one.
    #[arg(long)]
    pub brand: Option<String>,
    /// `csv` or `parquet`.
    #[arg(long, default_value = "csv", value_parser = ["csv", "parquet"])]
    pub format: String,
    /// The file to write; standard output when absent or `-`.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Personal data and coupon codes in clear (recorded in the audit log).
    #[arg(long)]
    pub reveal: bool,
}

/// The brand named, or the only one.
async fn brand_actor(core: &Core, slug: Option<&str>, who: &str) -> Result<Actor, AnyError> {
    let brand = match slug {
        Some(slug) => core.find_brand(slug).await?.ok_or(format!("no brand {slug:?}"))?,
        None => {
            let mut all = core.list_all_brands().await?;
            match all.len() {
                1 => all.remove(0),
                0 => return Err("this database has no brand yet".into()),
                _ => {
                    let slugs: Vec<String> = all.into_iter().map(|b| b.slug).collect();
                    return Err(format!("give --brand: one of {}", slugs.join(", ")).into());
                }
            }
        }
    };
    Ok(Actor {
        id: who.into(),
        ..Actor::system(brand.id)
    })
}

fn parse_columns(pairs: &[String]) -> Result<BTreeMap<String, String>, AnyError> {
    pairs
        .iter()
        .map(|p| {
            p.rsplit_once('=')
                .map(|(theirs, ours)| (theirs.trim().to_owned(), ours.trim().to_owned()))
                .ok_or_else(|| format!("--map {p:?}: write HEADER=FIELD").into())
        })
        .collect()
}

pub async fn import(core: &Core, args: ImportArgs) -> Result<(), AnyError> {
    let kind = match args.kind.as_str() {
        "members" => ImportKind::Members,
        _ => ImportKind::Transactions,
    };
    let options = ImportOptions {
        encoding: match args.encoding.as_str() {
            "utf-8" | "utf8" => FileEncoding::Utf8,
            "gbk" | "gb18030" => FileEncoding::Gbk,
            _ => FileEncoding::Auto,
        },
        columns: parse_columns(&args.columns)?,
        source: args.source.clone(),
        enrol_unknown_phones: args.enrol_unknown_phones,
    };
    let bytes = std::fs::read(&args.file).map_err(|e| format!("{}: {e}", args.file.display()))?;
    let actor = brand_actor(core, args.brand.as_deref(), "cli-import").await?;
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new(1)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} importing [{bar:30}] {pos}/{len} {per_sec} ({elapsed})")
            .map_err(|e| e.to_string())?
            .progress_chars("=> "),
    );
    let started = std::time::Instant::now();
    let progress = |done: u64, total: u64| {
        bar.set_length(total);
        bar.set_position(done);
    };
    let result = core.import_file(&actor, kind, &bytes, &options, &progress).await;
    bar.finish_and_clear();
    let (report, rejected) = result.map_err(|e| match e {
        huiyuan_core::CoreError::Validation(v) => v
            .errors
            .iter()
            .map(|f| format!("{}: {}", f.field, f.reason))
            .collect::<Vec<_>>()
            .join("\n")
            .into(),
        e => AnyError::from(e),
    })?;
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "{}: {} {} read ({}), {} imported, {} already present, {} rejected in {:.1} s ({:.0} rows/s)",
        args.file.display(),
        report.items,
        kind.as_str(),
        report.encoding,
        report.imported,
        report.unchanged,
        report.rejected,
        seconds,
        report.items as f64 / seconds.max(1e-9),
    );
    if !report.ignored_columns.is_empty() {
        eprintln!(
            "ignored columns (map them with --map HEADER=FIELD): {}",
            report.ignored_columns.join(", ")
        );
    }
    if !rejected.is_empty() {
        let path = args.report.unwrap_or_else(|| rejected_path(&args.file));
        write_rejections(&path, &rejected)?;
        eprintln!("rejected lines and reasons: {}", path.display());
        for r in rejected.iter().take(5) {
            eprintln!(
                "  line {}: {}: {}",
                r.line,
                r.field.as_deref().unwrap_or("row"),
                r.reason
            );
        }
    }
    Ok(())
}

fn rejected_path(file: &Path) -> PathBuf {
    let mut name = file.file_stem().unwrap_or_default().to_os_string();
    name.push(".rejected.csv");
    file.with_file_name(name)
}

fn write_rejections(path: &Path, rejected: &[Rejection]) -> Result<(), AnyError> {
    std::fs::write(path, huiyuan_core::files::import::rejections_csv(rejected)?)
        .map_err(|e| format!("{}: {e}", path.display()).into())
}

pub async fn export(core: &Core, args: ExportArgs) -> Result<(), AnyError> {
    let kind = ExportKind::parse(&args.kind).ok_or("unknown export")?;
    let format = if args.format == "parquet" {
        Format::Parquet
    } else {
        Format::Csv
    };
    let actor = brand_actor(core, args.brand.as_deref(), "cli-export").await?;
    let bytes = core.export_file(&actor, kind, format, args.reveal).await?;
    match args.output.as_deref() {
        None => std::io::stdout().lock().write_all(&bytes)?,
        Some(p) if p.as_os_str() == "-" => std::io::stdout().lock().write_all(&bytes)?,
        Some(p) => {
            std::fs::write(p, &bytes).map_err(|e| format!("{}: {e}", p.display()))?;
            eprintln!("{}: {} bytes", p.display(), bytes.len());
        }
    }
    Ok(())
}
