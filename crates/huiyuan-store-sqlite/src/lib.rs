//! SQLite backend: the embedded default. One file, WAL mode, every commit synced.
//!
//! Writers go through a pool of exactly one connection, so write transactions queue instead of
//! failing with `SQLITE_BUSY` (a deferred transaction that later upgrades to a write lock can
//! deadlock against another one); readers use their own pool and see committed snapshots.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use huiyuan_store::sql::{self, Dialect, Row, SqlConnection, SqlTx, Value};
use huiyuan_store::{Health, Result, Storage, StoreError, Tx};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Column, Row as _, Sqlite, SqlitePool, TypeInfo, ValueRef};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The embedded store.
#[derive(Clone)]
pub struct SqliteStorage {
    writer: SqlitePool,
    reader: SqlitePool,
}

impl SqliteStorage {
    /// Opens (creating if needed) the database file and applies pending migrations.
    pub async fn open(path: &Path) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .map_err(map_err)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit is on disk before it is acknowledged, even across power loss.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            // 64 MiB of page cache per connection (SQLite's default is 2 MiB): indexes of a
            // brand's ledger stay in memory instead of being re-read from the OS on each write.
            .pragma("cache_size", "-65536");
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await
            .map_err(map_err)?;
        MIGRATOR
            .run(&writer)
            .await
            .map_err(|e| StoreError::Database(format!("migration failed: {e}")))?;
        let reader = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.read_only(true))
            .await
            .map_err(map_err)?;
        Ok(Self { writer, reader })
    }
}

#[async_trait]
impl Storage for SqliteStorage {
    async fn write(&self) -> Result<Box<dyn Tx>> {
        let tx = self.writer.begin().await.map_err(map_err)?;
        Ok(Box::new(SqlTx::new(Box::new(SqliteConn { tx }))))
    }

    async fn read(&self) -> Result<Box<dyn Tx>> {
        let tx = self.reader.begin().await.map_err(map_err)?;
        Ok(Box::new(SqlTx::new(Box::new(SqliteConn { tx }))))
    }

    async fn health(&self) -> Result<Health> {
        let applied: Vec<i64> = match sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(&self.reader)
            .await
        {
            Ok(v) => v,
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
        "sqlite"
    }

    async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}

struct SqliteConn {
    tx: sqlx::Transaction<'static, Sqlite>,
}

/// Rewrites `$N` placeholders for SQLite, leaving string literals alone: as anonymous `?`
/// when they appear once each in order (every statement built by `Query`), else as numbered
/// `?N`. Anonymous ones matter for multi-row statements: sqlx asks SQLite each parameter's
/// name, and SQLite finds a numbered name by a linear scan — quadratic in the placeholders,
/// which made a 30,000-value insert take most of a second.
fn sqlite_placeholders(sql: &str) -> String {
    let found = placeholders(sql);
    let in_order = found.iter().enumerate().all(|(i, (_, n))| *n == i + 1);
    let mut out = String::with_capacity(sql.len());
    let mut copied = 0;
    for (range, _) in found {
        out.push_str(&sql[copied..range.start]);
        out.push('?');
        if !in_order {
            // The digits after the `$`.
            out.push_str(&sql[range.start + 1..range.end]);
        }
        copied = range.end;
    }
    out.push_str(&sql[copied..]);
    out
}

/// Each `$N` outside string literals: its byte range and its number, in order.
fn placeholders(sql: &str) -> Vec<(std::ops::Range<usize>, usize)> {
    let mut found = Vec::new();
    let mut in_string = false;
    let mut chars = sql.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        if c == '\'' {
            in_string = !in_string;
        }
        if c != '$' || in_string {
            continue;
        }
        let (mut end, mut n) = (start + 1, None::<usize>);
        while let Some((i, d)) = chars.next_if(|(_, d)| d.is_ascii_digit()) {
            n = Some(
                n.unwrap_or(0)
                    .saturating_mul(10)
                    .saturating_add(d as usize - '0' as usize),
            );
            end = i + 1;
        }
        if let Some(n) = n {
            found.push((start..end, n));
        }
    }
    found
}

fn bind<'q>(
    q: sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    v: Value,
) -> sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>> {
    match v {
        Value::Int(x) => q.bind(x),
        Value::Text(x) => q.bind(x),
        Value::Bytes(x) => q.bind(x),
        Value::Bool(x) => q.bind(x),
        Value::Time(x) => q.bind(x.map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)),
        // Read back by `json_each` (see `Dialect::member_of`).
        Value::TextList(x) => q.bind(serde_json::Value::from(x).to_string()),
    }
}

#[async_trait]
impl SqlConnection for SqliteConn {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    async fn execute(&mut self, sql: &str, args: Vec<Value>) -> Result<u64> {
        let sql = sqlite_placeholders(sql);
        let q = args.into_iter().fold(sqlx::query(&sql), bind);
        Ok(q.execute(&mut *self.tx).await.map_err(map_err)?.rows_affected())
    }

    async fn fetch_all(&mut self, sql: &str, args: Vec<Value>) -> Result<Vec<Row>> {
        let sql = sqlite_placeholders(sql);
        let q = args.into_iter().fold(sqlx::query(&sql), bind);
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

/// Decodes by the value's storage class, which SQLite reports per value.
fn decode(row: &sqlx::sqlite::SqliteRow, i: usize) -> Result<Value> {
    let raw = row.try_get_raw(i).map_err(map_err)?;
    if raw.is_null() {
        return Ok(Value::Int(None));
    }
    let class = raw.type_info().name().to_owned();
    Ok(match class.as_str() {
        "INTEGER" | "BOOLEAN" => Value::Int(Some(row.try_get::<i64, _>(i).map_err(map_err)?)),
        "TEXT" => Value::Text(Some(row.try_get::<String, _>(i).map_err(map_err)?)),
        "BLOB" => Value::Bytes(Some(row.try_get::<Vec<u8>, _>(i).map_err(map_err)?)),
        other => {
            return Err(StoreError::Corrupt(format!(
                "unexpected SQLite storage class {other}"
            )))
        }
    })
}

fn map_err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::Conflict(db.message().to_owned())
        }
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            StoreError::Unavailable(e.to_string())
        }
        _ => StoreError::Database(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::sqlite_placeholders;

    #[test]
    fn placeholders_are_rewritten_outside_strings() {
        // Out of order or repeated: numbered, so each still finds its value.
        assert_eq!(
            sqlite_placeholders("SELECT $1, '$2', $10"),
            "SELECT ?1, '$2', ?10"
        );
        assert_eq!(sqlite_placeholders("SELECT $2, $1"), "SELECT ?2, ?1");
        assert_eq!(sqlite_placeholders("SELECT $1, $1"), "SELECT ?1, ?1");
        // Once each, in order: anonymous.
        assert_eq!(
            sqlite_placeholders("INSERT INTO t VALUES ($1, '$9', $2), ($3, $4)"),
            "INSERT INTO t VALUES (?, '$9', ?), (?, ?)"
        );
    }
}
