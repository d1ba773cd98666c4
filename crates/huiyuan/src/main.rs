//! `huiyuan`: one binary for the API, the console (later) and background jobs.

mod analytics;
mod config;
mod demo;
mod files;

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use huiyuan_api::{app_with_pages, AppState};
use huiyuan_core::crypto::MasterKey;
use huiyuan_core::{Core, CoreConfig};
use huiyuan_store::Storage;
use huiyuan_store_pg::PgStorage;
use huiyuan_store_sqlite::SqliteStorage;

use crate::config::Config;
use huiyuan_tools::{bench, reliability};

#[derive(Parser)]
#[command(
    name = "huiyuan",
    version,
    about = "Huiyuan (會員): membership and loyalty operations"
)]
struct Cli {
    /// A TOML configuration file (default: ./huiyuan.toml when present).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// Where the data lives; the same options for every command that opens the database.
#[derive(clap::Args, Clone, Default)]
struct StorageArgs {
    /// Folder for the embedded SQLite database and the master key.
    #[arg(long)]
    data: Option<PathBuf>,
    /// PostgreSQL URL (`postgres://user@host/db`); overrides --data for the database.
    #[arg(long)]
    database: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API.
    Serve {
        #[command(flatten)]
        storage: StorageArgs,
        /// Address to listen on, e.g. 127.0.0.1:8080.
        #[arg(long)]
        listen: Option<String>,
        /// Do not apply pending migrations at start (PostgreSQL); `/readyz` reports them.
        #[arg(long)]
        no_migrate: bool,
    },
    /// Apply pending database migrations and exit.
    Migrate {
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Create (or reuse) a data folder with a demo brand and serve it on 127.0.0.1.
    Demo {
        /// The data folder.
        #[arg(long, default_value = "huiyuan-data")]
        data: PathBuf,
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// How many members the demo brand has (made on first run only).
        #[arg(long, default_value_t = 20_000)]
        members: usize,
        /// How many months of history to simulate, up to today.
        #[arg(long, default_value_t = 24)]
        months: u32,
        /// The same seed makes the same data.
        #[arg(long, default_value_t = 2026)]
        seed: u64,
        /// The day the history runs up to (YYYY-MM-DD, brand-local); today when absent.
        #[arg(long)]
        until: Option<String>,
    },
    /// The points ledger.
    Ledger {
        #[command(subcommand)]
        command: LedgerCommand,
    },
    /// The maintenance jobs (maturation, expiry, reminders, birthdays, tier review).
    Jobs {
        #[command(subcommand)]
        command: JobsCommand,
    },
    /// Measure the engine on this machine (figures in docs/benchmarks.md). Each run makes a
    /// brand of its own; without --data or --database it uses a scratch folder.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// RFM and lifetime value (BG/NBD + Gamma-Gamma) on a CSV of transactions.
    Analytics {
        #[command(subcommand)]
        command: analytics::AnalyticsCommand,
    },
    /// Import members or purchases from a CSV file (UTF-8 or GBK) through the engine;
    /// rejected lines are reported with their line number, and running a file again adds nothing.
    Import {
        #[command(flatten)]
        storage: StorageArgs,
        #[command(flatten)]
        args: files::ImportArgs,
    },
    /// Export members, purchases, the ledger, coupons or model results as CSV or Parquet
    /// (personal data masked unless --reveal).
    Export {
        #[command(flatten)]
        storage: StorageArgs,
        #[command(flatten)]
        args: files::ExportArgs,
    },
    /// Installation-level brand management.
    Brand {
        #[command(subcommand)]
        command: BrandCommand,
    },
}

#[derive(Subcommand)]
enum LedgerCommand {
    /// Prove that no ledger entry was altered, removed or reordered and that every balance
    /// equals the sum of its entries and lots. Exits 1 naming each member and entry at fault.
    Verify {
        #[command(flatten)]
        storage: StorageArgs,
        /// Only this brand (slug); every brand when absent.
        #[arg(long)]
        brand: Option<String>,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    #[command(flatten)]
    Engine(EngineBench),
    /// A realistic mix against running servers (70% purchases, 15% quotes, 10% member reads,
    /// 5% coupon redemptions) at fixed rates: throughput and p50/p99/p99.9 per route, and the
    /// rate at which p99 passes 50 ms.
    Load {
        /// Base URL of a node; give it once per node to spread the load over several.
        #[arg(long = "url", required = true)]
        urls: Vec<String>,
        /// An API key of the brand (admin: the load issues coupons and may enrol members).
        #[arg(long, env = "HUIYUAN_BENCH_KEY", hide_env_values = true)]
        key: String,
        /// Requests per second, one step per value.
        #[arg(long, value_delimiter = ',', default_value = "100,200,400,800",
              value_parser = clap::value_parser!(u32).range(1..))]
        rates: Vec<u32>,
        /// Seconds per step.
        #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..))]
        seconds: u64,
        /// Requests in flight at most; beyond it the schedule slips and latency shows it.
        #[arg(long, default_value_t = 256)]
        connections: usize,
    },
    /// Crash safety: runs `serve` processes of its own, loads them, kills one with SIGKILL at a
    /// random moment `kills` times, restarts it, and checks after each kill that every
    /// acknowledged request is there, every retried one had one effect, no coupon was redeemed
    /// twice and every ledger and wallet verifies. Exits 1 on any broken invariant.
    Crash {
        #[arg(long, default_value_t = 20)]
        kills: usize,
        /// PostgreSQL URL (an empty database of its own); embedded SQLite when absent.
        #[arg(long)]
        database: Option<String>,
        /// Server processes on the same database (SQLite: 1).
        #[arg(long, default_value_t = 1)]
        nodes: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Folder for the installation's key, SQLite files and server logs (kept on failure).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// Benchmarks of the engine itself, in this process, on a database of their own.
#[derive(Subcommand)]
enum EngineBench {
    /// Purchase ingestion (rules, ledger, tier; durably committed): the batch use case, or with
    /// --http single `POST /v1/transactions` requests to an in-process server.
    Purchases {
        #[command(flatten)]
        storage: StorageArgs,
        #[arg(long, default_value_t = 2_000)]
        members: usize,
        /// Purchases to record (batch mode).
        #[arg(long, default_value_t = 100_000)]
        purchases: usize,
        /// Purchases per batch call (batch mode).
        #[arg(long, default_value_t = 1_000)]
        batch: usize,
        /// Batches in flight (batch mode) or HTTP connections (--http).
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
        /// Single requests over HTTP instead of the batch use case.
        #[arg(long)]
        http: bool,
        /// Requests per second, open loop (--http); without it, back to back.
        #[arg(long)]
        rate: Option<u32>,
        /// With --http: batch calls of --batch purchases run back to back beside the single
        /// sales (a bulk import during trading), and their rate is reported too.
        #[arg(long, requires = "http")]
        beside_batches: bool,
        /// How long an HTTP run lasts.
        #[arg(long, default_value_t = 15)]
        seconds: u64,
        /// Seconds of the same load before the measured run (--http), not counted: connections
        /// to the server and the database are opened and statements prepared on first use.
        #[arg(long, default_value_t = 2)]
        warmup: u64,
    },
    /// Till commits, each with one coupon, points and the wallet (the checkout use case, with
    /// `concurrency` sales in flight).
    Checkout {
        #[command(flatten)]
        storage: StorageArgs,
        #[arg(long, default_value_t = 500)]
        members: usize,
        #[arg(long, default_value_t = 3_000)]
        sales: usize,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
    },
    /// The expiry sweep: earns `lots` lots dated more than a year ago, then times the job that
    /// expires them.
    Expiry {
        #[command(flatten)]
        storage: StorageArgs,
        #[arg(long, default_value_t = 1_000_000)]
        lots: usize,
        #[arg(long, default_value_t = 10_000)]
        members: usize,
    },
}

#[derive(Subcommand)]
enum JobsCommand {
    /// Run every job now, once (each under its lease, so safe beside running servers).
    RunOnce {
        #[command(flatten)]
        storage: StorageArgs,
    },
}

#[derive(Subcommand)]
enum BrandCommand {
    /// Create a brand with an admin operator and an admin API key (printed once).
    Create {
        #[command(flatten)]
        storage: StorageArgs,
        #[arg(long)]
        slug: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        admin_username: String,
        /// The admin's password; read from HUIYUAN_ADMIN_PASSWORD when not given.
        #[arg(long, env = "HUIYUAN_ADMIN_PASSWORD", hide_env_values = true)]
        admin_password: String,
        #[arg(long)]
        currency: Option<String>,
        #[arg(long)]
        timezone: Option<String>,
    },
}

type AnyError = Box<dyn std::error::Error + Send + Sync>;

/// mimalloc rather than the C library's allocator: requests hand buffers between threads (the
/// server's workers and the SQLite connection's thread), which glibc's arenas handle poorly.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let mut config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: configuration: {e}");
            std::process::exit(2);
        }
    };
    init_logging(&config.log_format);
    if let Err(e) = run(cli.command, &mut config).await {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "text" {
        builder.init();
    } else {
        builder.json().flatten_event(true).init();
    }
}

async fn run(command: Command, config: &mut Config) -> Result<(), AnyError> {
    match command {
        Command::Serve {
            storage,
            listen,
            no_migrate,
        } => {
            apply(config, &storage);
            if let Some(l) = listen {
                config.listen = l;
            }
            let (store, key) = open(config, !no_migrate).await?;
            serve(config, store, &key, config.listen.parse()?).await
        }
        Command::Migrate { storage } => {
            apply(config, &storage);
            let (store, _) = open(config, true).await?;
            println!("{}: migrations applied", store.backend());
            Ok(())
        }
        Command::Demo {
            data,
            port,
            members,
            months,
            seed,
            until,
        } => {
            // Checked before the folder is made: a bad date changes nothing.
            let until = match until {
                Some(d) => analytics::date_arg("until", &d)?,
                None => config.clock().now().to_offset(time::macros::offset!(+8)).date(),
            };
            config.data = Some(data.clone());
            config.database = None;
            let (store, key) = open(config, true).await?;
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            let options = huiyuan_demo::DemoOptions {
                members,
                months,
                seed,
                until,
            };
            let creds = demo::prepare(store.clone(), &key, &data, &options).await?;
            // The password, the key and a member's sign-in link go to a terminal only: output
            // sent to a file (a log, usually readable by others) names the private file instead.
            let banner = if std::io::stdout().is_terminal() {
                let member_link = demo::member_link(&core(config, store.clone(), &key), &creds).await?;
                format!(
                    "\nHuiyuan demo is running\n  Console:  http://{addr}/console/\n  API docs: http://{addr}/docs\n  \
                     Login:    {} / {}\n  Member:   http://{addr}{member_link}\n            (a member's own page; the link works once, for 30 minutes)\n\
                     API key: {}\n\nTry: curl -H 'Authorization: Bearer {}' http://{addr}/v1/members\n",
                    creds.username, creds.password, creds.api_key, creds.api_key
                )
            } else {
                format!(
                    "\nHuiyuan demo is running\n  Console:  http://{addr}/console/\n  API docs: http://{addr}/docs\n  \
                     Login and API key: in {} (readable by you only; not printed, as this output is not a terminal)\n",
                    demo::credentials_file(&data).display()
                )
            };
            // Not `println!`: a closed stdout (`huiyuan demo | head`) must not stop the server.
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(banner.as_bytes()).and_then(|()| out.flush());
            drop(out);
            serve(config, store, &key, addr).await
        }
        Command::Import { storage, args } => {
            apply(config, &storage);
            let (store, key) = open(config, false).await?;
            let result = files::import(&core(config, store.clone(), &key), args).await;
            store.close().await;
            result
        }
        Command::Export { storage, args } => {
            apply(config, &storage);
            let (store, key) = open(config, false).await?;
            let result = files::export(&core(config, store.clone(), &key), args).await;
            store.close().await;
            result
        }
        Command::Ledger {
            command: LedgerCommand::Verify { storage, brand },
        } => {
            apply(config, &storage);
            let (store, key) = open(config, false).await?;
            let core = core(config, store.clone(), &key);
            let brand_id = match brand {
                None => None,
                Some(slug) => Some(
                    core.find_brand(&slug)
                        .await?
                        .ok_or(format!("no brand {slug:?}"))?
                        .id,
                ),
            };
            let report = core.verify_ledgers(brand_id.as_ref()).await?;
            store.close().await;
            for p in &report.problems {
                let entry = match (&p.entry_id, p.seq) {
                    (Some(id), Some(seq)) => format!(" entry {id} (#{seq})"),
                    _ => String::new(),
                };
                println!(
                    "FAIL brand {} member {}{entry}: {}",
                    p.brand_id, p.member_id, p.problem
                );
            }
            println!(
                "{} accounts, {} entries, {} wallets, {} wallet entries verified: {}",
                report.accounts,
                report.entries,
                report.wallets,
                report.wallet_entries,
                if report.ok() {
                    "OK".to_owned()
                } else {
                    format!("{} problem(s)", report.problems.len())
                }
            );
            if !report.ok() {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Jobs {
            command: JobsCommand::RunOnce { storage },
        } => {
            apply(config, &storage);
            let (store, key) = open(config, true).await?;
            let core = core(config, store.clone(), &key);
            let runs = core.run_jobs(&job_owner(), true).await?;
            store.close().await;
            let mut failed = false;
            for r in runs {
                let state = match (&r.error, r.ran) {
                    (Some(e), _) => {
                        failed = true;
                        format!("failed: {e}")
                    }
                    (None, true) => format!("{} processed", r.processed),
                    (None, false) => "skipped (another process holds it)".into(),
                };
                println!("{:<24} {state}", r.job);
            }
            if failed {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Bench { command } => run_bench(command, config).await,
        Command::Analytics { command } => {
            let preloaded = match command.database_source() {
                Some(db) => Some(load_brand_transactions(config, db).await?),
                None => None,
            };
            analytics::run(command, preloaded)
        }
        Command::Brand {
            command:
                BrandCommand::Create {
                    storage,
                    slug,
                    name,
                    admin_username,
                    admin_password,
                    currency,
                    timezone,
                },
        } => {
            apply(config, &storage);
            let (store, key) = open(config, true).await?;
            let core = core(config, store, &key);
            let made = core
                .bootstrap_brand(
                    huiyuan_core::brands::NewBrand {
                        slug,
                        name,
                        currency,
                        timezone,
                    },
                    &admin_username,
                    &admin_password,
                )
                .await?;
            println!(
                "Brand {} ({}) created; admin operator {}",
                made.brand.slug, made.brand.id, made.admin.username
            );
            println!("API key: {}", made.api_key.secret);
            Ok(())
        }
    }
}

async fn run_bench(command: BenchCommand, config: &mut Config) -> Result<(), AnyError> {
    match command {
        // These two talk to servers over HTTP, not to a database.
        BenchCommand::Load {
            urls,
            key,
            rates,
            seconds,
            connections,
        } => reliability::load(urls, &key, &rates, seconds, connections).await,
        BenchCommand::Crash {
            kills,
            database,
            nodes,
            seed,
            dir,
        } => reliability::crash_command(kills, database, nodes, seed, dir).await,
        BenchCommand::Engine(bench) => run_engine_bench(bench, config).await,
    }
}

async fn run_engine_bench(command: EngineBench, config: &mut Config) -> Result<(), AnyError> {
    let storage = match &command {
        EngineBench::Purchases { storage, .. }
        | EngineBench::Checkout { storage, .. }
        | EngineBench::Expiry { storage, .. } => storage.clone(),
    };
    apply(config, &storage);
    let scratch = (config.data.is_none() && config.database.is_none())
        .then(|| std::env::temp_dir().join(format!("huiyuan-bench-{}", std::process::id())));
    if let Some(dir) = &scratch {
        config.data = Some(dir.clone());
    }
    if config.database.is_some() && config.data.is_none() && config.master_key.is_none() {
        // The benchmark's brand is thrown away: a key of its own will do.
        config.master_key = Some(MasterKey::generate().to_base64());
    }
    let (store, key) = open(config, true).await?;
    eprintln!("backend: {}", store.backend());
    let core = core(config, store.clone(), &key);
    let result = bench_on(&core, command).await;
    store.close().await;
    if let Some(dir) = scratch {
        let _ = std::fs::remove_dir_all(dir);
    }
    result
}

async fn bench_on(core: &Core, command: EngineBench) -> Result<(), AnyError> {
    match command {
        EngineBench::Purchases {
            members,
            purchases,
            batch,
            concurrency,
            http,
            rate,
            beside_batches,
            seconds,
            warmup,
            ..
        } => {
            let brand = Arc::new(bench::setup(core, members).await?);
            if http {
                let addr = bench::serve(core).await?;
                if warmup > 0 {
                    bench::http(addr, &brand, "warmup", concurrency, rate, warmup).await?;
                    // The warm-up made the accounts and the first purchases: measured with the
                    // statistics a running brand has (autovacuum's, within a minute), not those
                    // of empty tables.
                    core.refresh_statistics().await;
                }
                let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
                let beside = beside_batches.then(|| {
                    tokio::spawn(bench::batches_until(
                        core.clone(),
                        brand.clone(),
                        batch,
                        stop.clone(),
                    ))
                });
                let figures = bench::http(addr, &brand, "run", concurrency, rate, seconds).await;
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
                let mode = rate.map_or(format!("{concurrency} connections back to back"), |r| {
                    format!("{r}/s open loop, up to {concurrency} in flight")
                });
                println!("HTTP POST /v1/transactions, {mode}: {}", figures?);
                if let Some(beside) = beside {
                    let (recorded, seconds) = beside.await??;
                    println!(
                        "beside them, batch calls of {batch}, one at a time: {recorded} purchases in {seconds:.1} s = {:.0}/s",
                        recorded as f64 / seconds
                    );
                }
            } else {
                let per_second = bench::batches(core, &brand, purchases, batch, concurrency, None).await?;
                println!(
                    "batch use case: {purchases} purchases in batches of {batch}, {concurrency} in flight: \
                     {per_second:.0} purchases/s"
                );
            }
            Ok(())
        }
        EngineBench::Checkout {
            members,
            sales,
            concurrency,
            ..
        } => {
            let brand = bench::setup(core, members).await?;
            let per_second = bench::checkout(core, &brand, sales, concurrency).await?;
            println!(
                "checkout commits (one coupon, points and wallet each): {sales} sales, {concurrency} in flight: \
                 {per_second:.0} commits/s"
            );
            Ok(())
        }
        EngineBench::Expiry { lots, members, .. } => {
            let brand = bench::setup(core, members).await?;
            let long_ago = core.now() - time::Duration::days(400);
            let started = std::time::Instant::now();
            let rate = bench::batches(core, &brand, lots, 1_000, 1, Some(long_ago)).await?;
            eprintln!(
                "earned {lots} lots in {:.1} s ({rate:.0} purchases/s)",
                started.elapsed().as_secs_f64()
            );
            let started = std::time::Instant::now();
            let run = core
                .run_job(huiyuan_core::loyalty::jobs::EXPIRE, &job_owner(), true)
                .await?;
            let elapsed = started.elapsed().as_secs_f64();
            if let Some(e) = run.error {
                return Err(format!("the expiry job failed: {e}").into());
            }
            println!(
                "expiry sweep: {} lots expired in {elapsed:.1} s ({:.0} lots/s)",
                run.processed,
                run.processed as f64 / elapsed
            );
            Ok(())
        }
    }
}

/// Who holds a job lease: this host and process.
fn job_owner() -> String {
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    format!("{}:{}", host.trim(), std::process::id())
}

/// A brand's purchases from the database, as the analytics commands' columns.
async fn load_brand_transactions(
    config: &mut Config,
    db: &analytics::DatabaseSource,
) -> Result<analytics::Loaded, AnyError> {
    apply(
        config,
        &StorageArgs {
            data: db.data.clone(),
            database: db.database.clone(),
        },
    );
    let (store, key) = open(config, false).await?;
    let core = core(config, store.clone(), &key);
    let slug = db.brand.as_deref().ok_or("give --brand SLUG")?;
    let brand = core.find_brand(slug).await?.ok_or(format!("no brand {slug:?}"))?;
    let data = core
        .brand_transactions(&huiyuan_core::Actor::system(brand.id))
        .await?;
    store.close().await;
    Ok(analytics::Loaded {
        ids: data.ids.iter().map(|m| m.as_str().to_owned()).collect(),
        member: data.member,
        date: data.date,
        amount: data.amount,
    })
}

fn apply(config: &mut Config, args: &StorageArgs) {
    if args.data.is_some() {
        config.data.clone_from(&args.data);
    }
    if args.database.is_some() {
        config.database.clone_from(&args.database);
    }
}

fn core(config: &Config, storage: Arc<dyn Storage>, key: &MasterKey) -> Core {
    let core_config = CoreConfig {
        credential_cache_ttl: time::Duration::seconds(i64::from(config.credential_cache_seconds)),
        backdate_window: time::Duration::days(i64::from(config.backdate_days)),
        sign_in_per_minute: config.sign_in_per_minute,
        sign_in_failures_per_account: config.sign_in_failures_per_account,
        ..CoreConfig::default()
    };
    Core::new(storage, key, config.clock(), core_config)
}

/// Opens the configured database (migrating when asked) and the master key.
async fn open(config: &Config, migrate: bool) -> Result<(Arc<dyn Storage>, MasterKey), AnyError> {
    let key = master_key(config)?;
    let storage: Arc<dyn Storage> = match &config.database {
        Some(url) => {
            let pg = PgStorage::connect(url, config.database_max_connections).await?;
            if migrate {
                pg.migrate().await?;
            }
            Arc::new(pg)
        }
        None => {
            let dir = config
                .data
                .clone()
                .ok_or("give --data DIR (embedded SQLite) or --database postgres://…")?;
            create_private_dir(&dir)?;
            Arc::new(SqliteStorage::open(&dir.join("huiyuan.db")).await?)
        }
    };
    Ok((storage, key))
}

/// The master key: from configuration, else `<data>/master.key`, created (0600) on first use.
fn master_key(config: &Config) -> Result<MasterKey, AnyError> {
    if let Some(k) = &config.master_key {
        return Ok(MasterKey::from_base64(k)?);
    }
    let dir = config
        .data
        .as_ref()
        .ok_or("no master key: set HUIYUAN_MASTER_KEY or give --data DIR")?;
    create_private_dir(dir)?;
    let path = dir.join("master.key");
    if path.exists() {
        return Ok(MasterKey::from_base64(&std::fs::read_to_string(&path)?)?);
    }
    if config.database.is_none() && dir.join("huiyuan.db").exists() {
        // A new key would make every encrypted field of the existing database unreadable.
        return Err(format!(
            "{} holds a database but no master.key: restore the key file (or set HUIYUAN_MASTER_KEY) \
             rather than start with a new key",
            dir.display()
        )
        .into());
    }
    let key = MasterKey::generate();
    write_private(&path, &key.to_base64())?;
    Ok(key)
}

/// Creates the data folder readable by its owner only (it holds the database and the key).
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Writes a file only its owner can read.
pub fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    options.open(path)?.write_all(contents.as_bytes())
}

async fn serve(
    config: &Config,
    storage: Arc<dyn Storage>,
    key: &MasterKey,
    addr: SocketAddr,
) -> Result<(), AnyError> {
    let core = core(config, storage.clone(), key);
    let state = AppState::new(core.clone(), config.api());
    let limits = state.limits.clone();
    let jobs_core = core.clone();
    let jobs = tokio::spawn(async move {
        // Every minute: each job runs when due, in one process of the cluster at a time.
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        let owner = job_owner();
        loop {
            tick.tick().await;
            match jobs_core.run_jobs(&owner, false).await {
                Ok(runs) => {
                    for r in runs.iter().filter(|r| r.ran) {
                        tracing::info!(job = %r.job, processed = r.processed, error = ?r.error, "job ran");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "jobs could not run"),
            }
        }
    });
    let insights_core = core.clone();
    let insights = tokio::spawn(async move {
        // The analytics models (member insights on the console's member page) are built in the
        // background at start and refreshed before they expire, so no request waits for one.
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        let mut first = true;
        loop {
            tick.tick().await;
            match insights_core.refresh_insights(first).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(brands = n, "analytics models built"),
                Err(e) => tracing::warn!(error = %e, "analytics models could not be built"),
            }
            first = false;
        }
    });
    let maintenance = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(600));
        loop {
            tick.tick().await;
            match core.purge_expired().await {
                Ok((keys, codes)) => {
                    tracing::info!(keys, codes, "purged expired idempotency keys and member codes")
                }
                Err(e) => tracing::warn!(error = %e, "purge failed"),
            }
            limits.shrink();
        }
    });
    let console = huiyuan_console::router(state.core.clone());
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, backend = storage.backend(), "listening");
    axum::serve(
        listener,
        app_with_pages(state, console).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await?;
    maintenance.abort();
    insights.abort();
    jobs.abort();
    storage.close().await;
    tracing::info!("shut down");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}
