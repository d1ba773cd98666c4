//! PostgreSQL backend: for brands that outgrow one machine, with several API nodes sharing it.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use huiyuan_store::sql::{self, ColumnValues, Dialect, Row, SqlConnection, SqlTx, Value};
use huiyuan_store::{Health, Result, Storage, StoreError, Tx};
/// Connection options (host, database, credentials, TLS), for callers that connect with [`PgStorage::connect_with`].
pub use sqlx::postgres::PgConnectOptions;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Column, PgPool, Postgres, Row as _, TypeInfo, ValueRef};
use time::OffsetDateTime;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A pooled connection idle at least this long is pinged before use, in case the server or a
/// proxy dropped it meanwhile. sqlx pings every connection on every acquire by default: one
/// extra round trip per transaction, which under load (connections idle for microseconds)
/// catches nothing and costs about as much as a small query.
const IDLE_BEFORE_PING: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct PgStorage {
    pool: PgPool,
}

impl PgStorage {
    /// Connects without migrating; see [`PgStorage::migrate`].
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        let options = PgConnectOptions::from_str(url).map_err(map_err)?;
        Self::connect_with(options, max_connections).await
    }

    pub async fn connect_with(options: PgConnectOptions, max_connections: u32) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= IDLE_BEFORE_PING {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .connect_with(options)
            .await
            .map_err(map_err)?;
        Ok(Self { pool })
    }

    /// Applies pending migrations. Safe to run from several nodes at once: sqlx serialises
    /// them with an advisory lock.
    pub async fn migrate(&self) -> Result<()> {
        MIGRATOR
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Database(format!("migration failed: {e}")))
    }
}

#[async_trait]
impl Storage for PgStorage {
    async fn write(&self) -> Result<Box<dyn Tx>> {
        let tx = self.pool.begin().await.map_err(map_err)?;
        Ok(Box::new(SqlTx::new(Box::new(PgConn { tx }))))
    }

    async fn read(&self) -> Result<Box<dyn Tx>> {
        // A snapshot, as the trait promises: READ COMMITTED would let a multi-query read (the
        // ledger verifier, a statement with its balance) see a write land half-way through.
        // One round trip: the isolation level is part of BEGIN.
        let tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await
            .map_err(map_err)?;
        Ok(Box::new(SqlTx::new(Box::new(PgConn { tx }))))
    }

    async fn health(&self) -> Result<Health> {
        let applied: Vec<i64> = match sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(&self.pool)
            .await
        {
            Ok(v) => v,
            Err(sqlx::Error::Database(_)) => {
                return Ok(Health {
                    reachable: true,
                    migrations_current: false,
                })
            }
            Err(_) => {
                return Ok(Health {
                    reachable: false,
                    migrations_current: false,
                })
            }
        };
        let current = MIGRATOR.iter().all(|m| applied.contains(&m.version));
        Ok(Health {
            reachable: true,
            migrations_current: current,
        })
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    async fn refresh_statistics(&self) -> Result<()> {
        sqlx::query("ANALYZE")
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(map_err)
    }
}

struct PgConn {
    tx: sqlx::Transaction<'static, Postgres>,
}

fn bind<'q>(
    q: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    v: Value,
) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
    match v {
        Value::Int(x) => q.bind(x),
        Value::Text(x) => q.bind(x),
        Value::Bytes(x) => q.bind(x),
        Value::Bool(x) => q.bind(x),
        Value::Time(x) => q.bind(x),
        Value::TextList(x) => q.bind(x),
        Value::Column(c) => match *c {
            ColumnValues::Int(x) => q.bind(x),
            ColumnValues::Text(x) => q.bind(x),
            ColumnValues::Bytes(x) => q.bind(x),
            ColumnValues::Bool(x) => q.bind(x),
            ColumnValues::Time(x) => q.bind(x),
        },
    }
}

#[async_trait]
impl SqlConnection for PgConn {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    async fn execute(&mut self, sql: &str, args: Vec<Value>) -> Result<u64> {
        let q = args.into_iter().fold(sqlx::query(sql), bind);
        Ok(q.execute(&mut *self.tx).await.map_err(map_err)?.rows_affected())
    }

    async fn fetch_all(&mut self, sql: &str, args: Vec<Value>) -> Result<Vec<Row>> {
        let q = args.into_iter().fold(sqlx::query(sql), bind);
        let rows = q.fetch_all(&mut *self.tx).await.map_err(map_err)?;
        sql::decode_rows(
            &rows,
            |r| r.columns().iter().map(|c| c.name().to_owned()).collect(),
            decode,
        )
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        self.tx.commit().await.map_err(map_err)
    }
}

fn decode(row: &sqlx::postgres::PgRow, i: usize) -> Result<Value> {
    let raw = row.try_get_raw(i).map_err(map_err)?;
    if raw.is_null() {
        return Ok(Value::Int(None));
    }
    let ty = raw.type_info().name().to_owned();
    let get_err = |e| map_err(e);
    Ok(match ty.as_str() {
        "INT8" => Value::Int(Some(row.try_get::<i64, _>(i).map_err(get_err)?)),
        "INT4" => Value::Int(Some(i64::from(row.try_get::<i32, _>(i).map_err(get_err)?))),
        "INT2" => Value::Int(Some(i64::from(row.try_get::<i16, _>(i).map_err(get_err)?))),
        "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" => {
            Value::Text(Some(row.try_get::<String, _>(i).map_err(get_err)?))
        }
        "BYTEA" => Value::Bytes(Some(row.try_get::<Vec<u8>, _>(i).map_err(get_err)?)),
        "BOOL" => Value::Bool(Some(row.try_get::<bool, _>(i).map_err(get_err)?)),
        "TIMESTAMPTZ" => Value::Time(Some(row.try_get::<OffsetDateTime, _>(i).map_err(get_err)?)),
        other => return Err(StoreError::Corrupt(format!("unexpected PostgreSQL type {other}"))),
    })
}

fn map_err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::Conflict(db.constraint().unwrap_or(db.message()).to_owned())
        }
        // Deadlock detected, serialization failure: PostgreSQL gave this transaction up so that
        // another could proceed; running it again is safe.
        sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("40P01" | "40001")) => {
            StoreError::Stale
        }
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            StoreError::Unavailable(e.to_string())
        }
        _ => StoreError::Database(e.to_string()),
    }
}

/// Helpers for the test suites of this and the crates above it.
pub mod testing {
    use super::*;

    /// The server the tests use: `HUIYUAN_TEST_DATABASE_URL`, or the local default.
    pub fn admin_url() -> String {
        std::env::var("HUIYUAN_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
    }

    /// Connection options for a test database whose schema is this build's migrations.
    ///
    /// Tests that isolate themselves by brand share one database; its name carries a digest of
    /// the migrations, so a changed schema gets a fresh database. Panics with a clear message
    /// when PostgreSQL is unreachable: a run that cannot test PostgreSQL must fail.
    pub async fn test_database() -> PgConnectOptions {
        prepare_database(&format!("huiyuan_test_{:016x}", migrations_digest())).await
    }

    /// A database of the caller's own, for tests that brand isolation cannot separate: the
    /// maintenance jobs work across every brand, so a test that moves its clock a year ahead
    /// and runs them would mature and expire other tests' points in a shared database.
    ///
    /// Its name carries the creating process's id, and every call first drops the private
    /// databases whose process has ended, whatever their schema (see `huiyuan_store::testing`).
    pub async fn private_test_database() -> PgConnectOptions {
        let pool = admin_pool().await;
        let names: Vec<String> =
            sqlx::query_scalar("SELECT datname::text FROM pg_database WHERE datname LIKE $1")
                .bind(format!("{PRIVATE_PREFIX}%"))
                .fetch_all(&pool)
                .await
                .expect("query pg_database");
        for name in names.iter().filter(|n| left_behind(n)) {
            // Another test may be dropping it too; either way it goes.
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&pool)
                .await;
        }
        pool.close().await;
        prepare_database(&format!(
            "{PRIVATE_PREFIX}{:08x}_{}_{:08x}",
            migrations_digest() as u32,
            std::process::id(),
            rand_suffix()
        ))
        .await
    }

    const PRIVATE_PREFIX: &str = "huiyuan_priv_";

    /// Whether a private database's process has ended. Names from before the process id was
    /// in them held the creation time there, which is no live process either.
    fn left_behind(name: &str) -> bool {
        name.strip_prefix(PRIVATE_PREFIX)
            .and_then(|rest| rest.split('_').nth(1))
            .and_then(|pid| pid.parse::<u32>().ok())
            .is_some_and(huiyuan_store::testing::process_has_ended)
    }

    fn migrations_digest() -> u64 {
        MIGRATOR
            .iter()
            .flat_map(|m| m.checksum.iter().copied())
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            })
    }

    /// Unique enough for database names within one run: time and process mixed.
    fn rand_suffix() -> u32 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        nanos ^ std::process::id().rotate_left(16) ^ n.wrapping_mul(0x9e37_79b9)
    }

    async fn admin_pool() -> PgPool {
        let url = admin_url();
        let admin = PgConnectOptions::from_str(&url)
            .unwrap_or_else(|e| panic!("HUIYUAN_TEST_DATABASE_URL {url:?} is not a URL: {e}"));
        PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(admin)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "PostgreSQL is not reachable at {url} ({e}); start it or set HUIYUAN_TEST_DATABASE_URL"
                )
            })
    }

    /// Creates the database unless it exists, migrates it, and returns its options.
    async fn prepare_database(name: &str) -> PgConnectOptions {
        let pool = admin_pool().await;
        let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
            .bind(name)
            .fetch_optional(&pool)
            .await
            .expect("query pg_database");
        if exists.is_none() {
            if let Err(e) = sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&pool)
                .await
            {
                // Another test process may have created it a moment ago.
                let duplicate = e
                    .as_database_error()
                    .and_then(|d| d.code())
                    .is_some_and(|c| c == "42P04" || c == "23505");
                assert!(duplicate, "cannot create test database {name}: {e}");
            }
        }
        pool.close().await;
        let admin = PgConnectOptions::from_str(&admin_url()).expect("checked by admin_pool");
        let options = admin.database(name);
        let storage = PgStorage::connect_with(options.clone(), 1)
            .await
            .expect("connect to test database");
        storage.migrate().await.expect("migrate test database");
        storage.close().await;
        options
    }
}
