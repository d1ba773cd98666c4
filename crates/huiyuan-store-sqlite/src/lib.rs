//! SQLite backend: the embedded default. One file, WAL mode, every commit synced.
//!
//! Each connection lives on a thread of its own and runs what it is sent, in order: one writer
//! (so write transactions queue instead of failing with `SQLITE_BUSY`) and a few readers,
//! which see committed snapshots. A statement is one message to the thread and one reply with
//! all its rows, and a bulk insert is one message for all its rows, run as one prepared
//! single-row statement: in-process, that is the cheapest way to feed SQLite.
//!
//! Why rusqlite rather than sqlx's SQLite driver (still used here to apply the migrations):
//! sqlx runs each connection on a thread too, but hands every result row across a channel and
//! binds every value through its generic layer, which cost more than SQLite's own work on the
//! purchase path (docs/benchmarks.md).

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use huiyuan_store::sql::{expect_changed, Dialect, Row, SqlConnection, SqlTx, Value};
use huiyuan_store::{Health, Result, Storage, StoreError, Tx};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Reader connections (and threads); more would only queue on two cores' worth of work.
const READERS: usize = 8;
/// How long a caller waits for a connection before the database counts as unavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a connection waits for another process's lock (`huiyuan jobs run-once` beside
/// `serve`, say) before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// The checkpointer copies the WAL back into the database at most this often while writes go on. (SQLite's own automatic checkpoint runs on the committing
/// connection, after the commit but before the writer can go on: a bulk write of a thousand
/// purchases fills a thousand pages, and checkpointing after every one doubled its commit.)
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);
/// WAL pages beyond which the checkpointer makes writers wait while it restarts the log, so
/// that it cannot grow without bound when passive checkpoints never catch up (400 MiB).
const WAL_RESTART_PAGES: i64 = 100_000;

/// The embedded store.
#[derive(Clone)]
pub struct SqliteStorage {
    writer: Arc<Worker>,
    checkpointer: Arc<Checkpointer>,
    /// One write transaction at a time, first come first served.
    write_gate: Arc<Semaphore>,
    readers: Arc<ReaderPool>,
}

impl SqliteStorage {
    /// Opens (creating if needed) the database file and applies pending migrations.
    pub async fn open(path: &Path) -> Result<Self> {
        make_private(path).map_err(|e| StoreError::Unavailable(format!("{}: {e}", path.display())))?;
        migrate(path).await?;
        let writer = Worker::open("huiyuan-sqlite-writer", path.to_owned(), false).await?;
        let checkpointer = Checkpointer::start(path.to_owned())?;
        let mut idle = Vec::with_capacity(READERS);
        for i in 0..READERS {
            idle.push(Arc::new(
                Worker::open(&format!("huiyuan-sqlite-reader-{i}"), path.to_owned(), true).await?,
            ));
        }
        Ok(Self {
            writer: Arc::new(writer),
            checkpointer: Arc::new(checkpointer),
            write_gate: Arc::new(Semaphore::new(1)),
            readers: Arc::new(ReaderPool {
                idle: Mutex::new(idle),
                gate: Arc::new(Semaphore::new(READERS)),
            }),
        })
    }
}

/// Makes the database file readable by its owner only, creating it empty if need be (an empty
/// file is an empty database), as its folder is: it holds the ledger, keyed hashes of phones
/// and, encrypted, personal data. SQLite gives its `-wal` and `-shm` files the database file's
/// permissions.
fn make_private(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        if path.exists() {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        } else {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)?;
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Applies the migrations through sqlx's migrator (whose `_sqlx_migrations` table earlier
/// builds' data folders already carry), on a connection used for nothing else.
async fn migrate(path: &Path) -> Result<()> {
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
    use sqlx::Connection as _;
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
        .map_err(|e| StoreError::Database(e.to_string()))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(BUSY_TIMEOUT)
        .foreign_keys(true);
    let mut conn = sqlx::SqliteConnection::connect_with(&options)
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
    MIGRATOR
        .run(&mut conn)
        .await
        .map_err(|e| StoreError::Database(format!("migration failed: {e}")))?;
    conn.close()
        .await
        .map_err(|e| StoreError::Database(e.to_string()))
}

/// Work for a connection's thread.
enum Message {
    Run(Box<dyn FnOnce(&mut Connection) + Send>),
    /// Close the connection (checkpointing the WAL if it is the last) and end the thread.
    Close(oneshot::Sender<()>),
}

/// A thread that owns one connection and runs the jobs it is sent, in order.
struct Worker {
    jobs: Mutex<mpsc::Sender<Message>>,
}

impl Worker {
    async fn open(name: &str, path: PathBuf, read_only: bool) -> Result<Self> {
        let (jobs, inbox) = mpsc::channel::<Message>();
        let (opened, open_result) = oneshot::channel();
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let mut conn = match connect(&path, read_only) {
                    Ok(conn) => {
                        let _ = opened.send(Ok(()));
                        conn
                    }
                    Err(e) => {
                        let _ = opened.send(Err(e));
                        return;
                    }
                };
                while let Ok(message) = inbox.recv() {
                    match message {
                        Message::Run(job) => {
                            // A panicking job drops its reply (its caller sees an error); the
                            // connection and its thread carry on.
                            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut conn)));
                        }
                        Message::Close(done) => {
                            let _ = conn.close();
                            let _ = done.send(());
                            return;
                        }
                    }
                }
            })
            .map_err(|e| StoreError::Unavailable(format!("cannot start a SQLite thread: {e}")))?;
        open_result
            .await
            .map_err(|_| StoreError::Unavailable("the SQLite thread stopped while opening".into()))??;
        Ok(Self {
            jobs: Mutex::new(jobs),
        })
    }

    fn send(&self, message: Message) -> Result<()> {
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(message)
            .map_err(|_| StoreError::Unavailable("the database is closed".into()))
    }

    /// Runs `job` on the connection's thread and waits for its answer.
    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (reply, answer) = oneshot::channel();
        self.send(Message::Run(Box::new(move |conn| {
            let _ = reply.send(job(conn));
        })))?;
        answer
            .await
            .map_err(|_| StoreError::Database("a SQLite statement panicked".into()))?
    }

    async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.send(Message::Close(done)).is_ok() {
            let _ = closed.await;
        }
    }
}

fn connect(path: &Path, read_only: bool) -> Result<Connection> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags).map_err(map_err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(map_err)?;
    conn.set_prepared_statement_cache_capacity(256);
    // FULL: a commit is on disk before it is acknowledged, even across power loss. 64 MiB of
    // page cache per connection (SQLite's default is 2 MiB): indexes of a brand's ledger stay in
    // memory instead of being re-read from the OS on each write.
    let mut pragmas = String::from("PRAGMA synchronous = FULL; PRAGMA cache_size = -65536;");
    if !read_only {
        // Checkpoints are the checkpointer's (see [`Checkpointer`]).
        pragmas
            .push_str("PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; PRAGMA wal_autocheckpoint = 0;");
    }
    conn.execute_batch(&pragmas).map_err(map_err)?;
    Ok(conn)
}

/// A thread with a connection of its own that copies the WAL back into the database file
/// (a passive checkpoint: it never blocks the writer or readers) after commits, at most once
/// per [`CHECKPOINT_EVERY`], so that the writer's commits never wait for it.
struct Checkpointer {
    nudges: Mutex<Option<mpsc::SyncSender<()>>>,
    stopped: Mutex<Option<oneshot::Receiver<()>>>,
}

impl Checkpointer {
    fn start(path: PathBuf) -> Result<Self> {
        let conn = connect(&path, false)?;
        let (nudges, inbox) = mpsc::sync_channel::<()>(1);
        let (done, stopped) = oneshot::channel();
        std::thread::Builder::new()
            .name("huiyuan-sqlite-checkpointer".into())
            .spawn(move || {
                loop {
                    match inbox.recv_timeout(CHECKPOINT_EVERY) {
                        Ok(()) => {
                            checkpoint(&conn);
                            // At most one checkpoint a period: commits meanwhile leave one
                            // nudge waiting, and the next checkpoint takes them all.
                            std::thread::sleep(CHECKPOINT_EVERY);
                        }
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        Err(mpsc::RecvTimeoutError::Disconnected) => break,
                    }
                }
                let _ = conn.close();
                let _ = done.send(());
            })
            .map_err(|e| StoreError::Unavailable(format!("cannot start a SQLite thread: {e}")))?;
        Ok(Self {
            nudges: Mutex::new(Some(nudges)),
            stopped: Mutex::new(Some(stopped)),
        })
    }

    /// Tells the checkpointer that a commit happened (never waits).
    fn nudge(&self) {
        if let Some(nudges) = &*self.nudges.lock().unwrap_or_else(|e| e.into_inner()) {
            let _ = nudges.try_send(());
        }
    }

    /// Ends the thread (after a last checkpoint if commits are waiting for one).
    async fn stop(&self) {
        self.nudges.lock().unwrap_or_else(|e| e.into_inner()).take();
        let stopped = self.stopped.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(stopped) = stopped {
            let _ = stopped.await;
        }
    }
}

/// One passive checkpoint; a restart of the log when it has grown past [`WAL_RESTART_PAGES`]
/// (readers holding old snapshots can keep passive checkpoints from ever finishing).
fn checkpoint(conn: &Connection) {
    let result = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?))
    });
    match result {
        Ok((_, log_pages)) if log_pages > WAL_RESTART_PAGES => {
            if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(())) {
                tracing::warn!(error = %e, "restarting the SQLite WAL failed; it will be tried again");
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "a SQLite checkpoint failed; it will be tried again"),
    }
}

/// Reader connections waiting for work.
struct ReaderPool {
    idle: Mutex<Vec<Arc<Worker>>>,
    gate: Arc<Semaphore>,
}

async fn acquire(gate: &Arc<Semaphore>, what: &str) -> Result<OwnedSemaphorePermit> {
    match tokio::time::timeout(ACQUIRE_TIMEOUT, gate.clone().acquire_owned()).await {
        Ok(Ok(permit)) => Ok(permit),
        Ok(Err(_)) => Err(StoreError::Unavailable("the database is closed".into())),
        Err(_) => Err(StoreError::Unavailable(format!(
            "timed out waiting for a {what} connection"
        ))),
    }
}

#[async_trait]
impl Storage for SqliteStorage {
    async fn write(&self) -> Result<Box<dyn Tx>> {
        let permit = acquire(&self.write_gate, "writer").await?;
        // IMMEDIATE: the write lock is taken now, not at the first write, so a transaction never
        // fails half-way because another process wrote in between.
        self.writer
            .run(|c| c.execute_batch("BEGIN IMMEDIATE").map_err(map_err))
            .await?;
        let mut conn = SqliteConn::new(self.writer.clone(), permit, None, Some(self.checkpointer.clone()));
        conn.open = true;
        Ok(Box::new(SqlTx::new(Box::new(conn))))
    }

    async fn read(&self) -> Result<Box<dyn Tx>> {
        let mut conn = self.reader().await?;
        // The snapshot starts at the first read (WAL mode) and lasts until the transaction ends.
        conn.worker
            .run(|c| c.execute_batch("BEGIN").map_err(map_err))
            .await?;
        conn.open = true;
        Ok(Box::new(SqlTx::new(Box::new(conn))))
    }

    async fn health(&self) -> Result<Health> {
        let applied = self
            .with_reader(|c| {
                let mut statement = c
                    .prepare("SELECT version FROM _sqlx_migrations WHERE success")
                    .map_err(map_err)?;
                let versions = statement
                    .query_map([], |row| row.get::<_, i64>(0))
                    .map_err(map_err)?
                    .collect::<rusqlite::Result<Vec<i64>>>()
                    .map_err(map_err)?;
                Ok(versions)
            })
            .await;
        let Ok(applied) = applied else {
            return Ok(Health {
                reachable: false,
                migrations_current: false,
            });
        };
        Ok(Health {
            reachable: true,
            migrations_current: MIGRATOR.iter().all(|m| applied.contains(&m.version)),
        })
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn refresh_statistics(&self) -> Result<()> {
        let _permit = acquire(&self.write_gate, "writer").await?;
        // 0x10002: analyse every table whose statistics are missing or stale, not only those
        // this connection queried; the limit keeps it to a sample on large tables.
        self.writer
            .run(|c| {
                c.execute_batch("PRAGMA analysis_limit = 1000; PRAGMA optimize = 0x10002;")
                    .map_err(map_err)
            })
            .await
    }

    async fn close(&self) {
        // Waits (a while) for the transactions in progress; the writer closes last, so that its
        // close (the last connection's) checkpoints the WAL into the database file.
        let readers =
            tokio::time::timeout(ACQUIRE_TIMEOUT, self.readers.gate.acquire_many(READERS as u32)).await;
        if let Ok(Ok(_all)) = readers {
            self.readers.gate.close();
            let idle = std::mem::take(&mut *self.readers.idle.lock().unwrap_or_else(|e| e.into_inner()));
            for reader in idle {
                reader.close().await;
            }
        }
        if let Ok(Ok(_turn)) = tokio::time::timeout(ACQUIRE_TIMEOUT, self.write_gate.acquire()).await {
            self.write_gate.close();
            self.checkpointer.stop().await;
            self.writer.close().await;
        }
    }
}

impl SqliteStorage {
    /// A reader connection of the pool, back in the pool when dropped.
    async fn reader(&self) -> Result<SqliteConn> {
        let permit = acquire(&self.readers.gate, "reader").await?;
        let worker = self
            .readers
            .idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .ok_or_else(|| StoreError::Unavailable("the database is closed".into()))?;
        Ok(SqliteConn::new(worker, permit, Some(self.readers.clone()), None))
    }

    /// Runs `job` on a reader connection outside any transaction.
    async fn with_reader<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.reader().await?.worker.run(job).await
    }
}

/// One open transaction on one connection's thread.
struct SqliteConn {
    worker: Arc<Worker>,
    /// A transaction is open: it is rolled back if this is dropped before the commit.
    open: bool,
    /// The writer's turn, or a reader's place in the pool.
    _permit: OwnedSemaphorePermit,
    /// Where a reader goes back to when done.
    pool: Option<Arc<ReaderPool>>,
    /// Told of the writer's commits.
    checkpointer: Option<Arc<Checkpointer>>,
    /// Answers of writes queued ahead ([`SqlConnection::execute_each_ahead`]), in order.
    ahead: Vec<oneshot::Receiver<Result<()>>>,
    /// Set by the first write ahead that fails: the ones queued after it do nothing.
    ahead_failed: Arc<AtomicBool>,
}

impl SqliteConn {
    fn new(
        worker: Arc<Worker>,
        permit: OwnedSemaphorePermit,
        pool: Option<Arc<ReaderPool>>,
        checkpointer: Option<Arc<Checkpointer>>,
    ) -> Self {
        Self {
            worker,
            open: false,
            _permit: permit,
            pool,
            checkpointer,
            ahead: Vec::new(),
            ahead_failed: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Waits for the writes queued ahead; the first failure among them is the answer.
    async fn settle(&mut self) -> Result<()> {
        let mut outcome = Ok(());
        for answer in self.ahead.drain(..) {
            let result = answer
                .await
                .unwrap_or_else(|_| Err(StoreError::Database("a SQLite statement panicked".into())));
            if outcome.is_ok() {
                outcome = result;
            }
        }
        outcome
    }
}

impl Drop for SqliteConn {
    fn drop(&mut self) {
        if self.open {
            // Queued on the connection's thread before anyone else can send it work: the next
            // transaction there starts after this one is gone.
            let _ = self.worker.send(Message::Run(Box::new(|c| {
                let _ = c.execute_batch("ROLLBACK");
            })));
        }
        if let Some(pool) = &self.pool {
            pool.idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(self.worker.clone());
        }
    }
}

#[async_trait]
impl SqlConnection for SqliteConn {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    async fn execute(&mut self, sql: &str, args: Vec<Value>) -> Result<u64> {
        self.settle().await?;
        let sql = sqlite_placeholders(sql);
        self.worker.run(move |c| execute(c, &sql, &args)).await
    }

    async fn execute_each(&mut self, sql: &str, rows: Vec<Vec<Value>>) -> Result<u64> {
        self.settle().await?;
        let sql = sqlite_placeholders(sql);
        self.worker.run(move |c| execute_each(c, &sql, &rows)).await
    }

    fn writes_ahead(&self) -> bool {
        true
    }

    async fn execute_each_ahead(
        &mut self,
        sql: &str,
        rows: Vec<Vec<Value>>,
        expect: Option<u64>,
    ) -> Result<()> {
        let sql = sqlite_placeholders(sql);
        let failed = self.ahead_failed.clone();
        let (reply, answer) = oneshot::channel();
        self.worker.send(Message::Run(Box::new(move |c| {
            let result = if failed.load(Ordering::Acquire) {
                // The failure before this one is the transaction's answer.
                Ok(())
            } else if c.is_autocommit() {
                // SQLite ends a transaction by itself on some errors (a full disk, say):
                // these rows must not be written on their own.
                Err(StoreError::Database(
                    "the transaction ended before rows written ahead".into(),
                ))
            } else {
                execute_each(c, &sql, &rows).and_then(|changed| expect_changed(changed, expect))
            };
            if result.is_err() {
                failed.store(true, Ordering::Release);
            }
            let _ = reply.send(result);
        })))?;
        self.ahead.push(answer);
        Ok(())
    }

    async fn fetch_all(&mut self, sql: &str, args: Vec<Value>) -> Result<Vec<Row>> {
        self.settle().await?;
        let sql = sqlite_placeholders(sql);
        self.worker.run(move |c| fetch_all(c, &sql, &args)).await
    }

    async fn commit(mut self: Box<Self>) -> Result<()> {
        // A write ahead that failed leaves the transaction open: dropping it rolls it back.
        self.settle().await?;
        self.worker
            .run(|c| c.execute_batch("COMMIT").map_err(map_err))
            .await?;
        self.open = false;
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.nudge();
        }
        Ok(())
    }
}

/// Runs one statement (kept prepared for the next time); returns the rows it changed.
fn execute(conn: &Connection, sql: &str, args: &[Value]) -> Result<u64> {
    let mut statement = conn.prepare_cached(sql).map_err(map_err)?;
    run(conn, &mut statement, args)
}

/// Runs one statement once for each row of values; returns the rows changed in all.
fn execute_each(conn: &Connection, sql: &str, rows: &[Vec<Value>]) -> Result<u64> {
    let mut statement = conn.prepare_cached(sql).map_err(map_err)?;
    let mut changed = 0;
    for args in rows {
        changed += run(conn, &mut statement, args)?;
    }
    Ok(changed)
}

/// Binds `args` to a prepared statement and steps it to the end (rows it returns are dropped);
/// returns the rows it changed. The statement is reset for its next use.
fn run(conn: &Connection, statement: &mut rusqlite::CachedStatement<'_>, args: &[Value]) -> Result<u64> {
    bind_all(statement, args)?;
    let mut rows = statement.raw_query();
    while rows.next().map_err(map_err)?.is_some() {}
    Ok(conn.changes())
}

fn fetch_all(conn: &Connection, sql: &str, args: &[Value]) -> Result<Vec<Row>> {
    let mut statement = conn.prepare_cached(sql).map_err(map_err)?;
    bind_all(&mut statement, args)?;
    let columns = Arc::new(
        statement
            .column_names()
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>(),
    );
    let width = columns.len();
    let mut out = Vec::new();
    let mut rows = statement.raw_query();
    while let Some(row) = rows.next().map_err(map_err)? {
        let values = (0..width)
            .map(|i| decode(row.get_ref(i).map_err(map_err)?))
            .collect::<Result<Vec<_>>>()?;
        out.push(Row {
            columns: columns.clone(),
            values,
        });
    }
    Ok(out)
}

/// Binds `args` to `?1`, `?2`, … in SQLite's own types.
fn bind_all(statement: &mut rusqlite::CachedStatement<'_>, args: &[Value]) -> Result<()> {
    for (i, value) in args.iter().enumerate() {
        let at = i + 1;
        let bound = match value {
            Value::Int(v) => statement.raw_bind_parameter(at, v),
            Value::Text(v) => statement.raw_bind_parameter(at, v),
            Value::Bytes(v) => statement.raw_bind_parameter(at, v),
            Value::Bool(v) => statement.raw_bind_parameter(at, v.map(i64::from)),
            Value::Time(v) => {
                statement.raw_bind_parameter(at, v.map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64))
            }
            // Read back by `json_each` (see `Dialect::member_of`).
            Value::TextList(v) => {
                statement.raw_bind_parameter(at, serde_json::Value::from(v.clone()).to_string())
            }
            Value::Column(_) => {
                return Err(StoreError::Database(
                    "a column of values is bound only on PostgreSQL".into(),
                ))
            }
        };
        bound.map_err(map_err)?;
    }
    Ok(())
}

/// Decodes by the value's storage class, which SQLite reports per value.
fn decode(value: ValueRef<'_>) -> Result<Value> {
    Ok(match value {
        ValueRef::Null => Value::Int(None),
        ValueRef::Integer(i) => Value::Int(Some(i)),
        ValueRef::Text(t) => Value::Text(Some(
            String::from_utf8(t.to_vec())
                .map_err(|_| StoreError::Corrupt("text that is not UTF-8".into()))?,
        )),
        ValueRef::Blob(b) => Value::Bytes(Some(b.to_vec())),
        ValueRef::Real(_) => return Err(StoreError::Corrupt("unexpected SQLite storage class REAL".into())),
    })
}

/// Rewrites `$N` placeholders as SQLite's `?N`, leaving string literals alone. (SQLite reads
/// `$N` as a *named* parameter, numbered by first appearance, which would bind `$2, $1` the
/// wrong way round.)
fn sqlite_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut in_string = false;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\'' {
            in_string = !in_string;
        }
        if c == '$' && !in_string && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

fn map_err(e: rusqlite::Error) -> StoreError {
    use rusqlite::ffi::ErrorCode;
    match &e {
        rusqlite::Error::SqliteFailure(f, message) => {
            let message = message.clone().unwrap_or_else(|| f.to_string());
            match f.code {
                ErrorCode::ConstraintViolation
                    if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                        || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
                {
                    StoreError::Conflict(message)
                }
                ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked | ErrorCode::CannotOpen => {
                    StoreError::Unavailable(message)
                }
                _ => StoreError::Database(message),
            }
        }
        _ => StoreError::Database(e.to_string()),
    }
}

/// Helpers for the test suites of this and the crates above it.
pub mod testing {
    use std::path::{Path, PathBuf};

    /// A directory of this test process's own under `base` (a test crate's
    /// `CARGO_TARGET_TMPDIR`), for its database files and whatever else it writes. The
    /// directories of test processes that have ended are removed first (see
    /// `huiyuan_store::testing`): a suite run leaves the last few behind, not one per test.
    pub fn scratch_dir(base: &Path) -> PathBuf {
        let scratch = base.join("huiyuan-scratch");
        if let Ok(entries) = std::fs::read_dir(&scratch) {
            for entry in entries.flatten() {
                let ended = entry
                    .file_name()
                    .to_str()
                    .and_then(|name| name.parse::<u32>().ok())
                    .is_some_and(huiyuan_store::testing::process_has_ended);
                if ended {
                    // Another test may be removing it too; either way it goes.
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        let dir = scratch.join(std::process::id().to_string());
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        dir
    }
}

#[cfg(test)]
mod tests {
    use super::sqlite_placeholders;

    #[test]
    fn placeholders_are_rewritten_outside_strings() {
        assert_eq!(
            sqlite_placeholders("SELECT $1, '$2', $10"),
            "SELECT ?1, '$2', ?10"
        );
        assert_eq!(sqlite_placeholders("SELECT $2, $1"), "SELECT ?2, ?1");
        assert_eq!(sqlite_placeholders("SELECT $1, $1"), "SELECT ?1, ?1");
        assert_eq!(
            sqlite_placeholders("INSERT INTO t VALUES ($1, '$9', $2), ($3, $4)"),
            "INSERT INTO t VALUES (?1, '$9', ?2), (?3, ?4)"
        );
        assert_eq!(sqlite_placeholders("SELECT '$' || $1"), "SELECT '$' || ?1");
    }
}
