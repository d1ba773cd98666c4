//! The SQL behind [`Tx`], written once for both backends.
//!
//! Why not sqlx's `Any` driver: it has no BYTEA/BLOB or TIMESTAMPTZ mapping, no per-backend
//! migrations and no way to say where dialects differ. Why not generic code over
//! `sqlx::Database`: every function would repeat a dozen higher-ranked bounds. Instead a backend
//! implements [`SqlConnection`] — bind typed [`Value`]s natively, decode rows into them — and
//! everything else lives here, so a query is written and reviewed once.

use async_trait::async_trait;
use huiyuan_domain::access::Role;
use huiyuan_domain::ids::{ApiKeyId, BrandId, MemberId, OperatorId, StoreId};
use std::collections::HashMap;
use std::sync::Arc;
use time::OffsetDateTime;

use crate::records::*;
use crate::{AuditTx, BrandsTx, JobsTx, LoyaltyTx, MembersTx, Result, StoreError, Tx};

mod audit;
mod brands;
mod commerce;
mod jobs;
mod loyalty;
mod members;
mod rows;
mod table;

use rows::*;

/// A typed SQL value. Nulls keep their type because PostgreSQL needs it to plan the statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(Option<i64>),
    Text(Option<String>),
    Bytes(Option<Vec<u8>>),
    Bool(Option<bool>),
    /// Stored as TIMESTAMPTZ on PostgreSQL and as Unix milliseconds on SQLite.
    Time(Option<OffsetDateTime>),
    /// A list of texts for a membership test ([`Dialect::member_of`]): a `text[]` on
    /// PostgreSQL, a JSON array on SQLite.
    TextList(Vec<String>),
    /// One column of many rows, for a PostgreSQL insert that unnests arrays (see
    /// [`SqlTx::insert_rows`]); never sent to SQLite.
    Column(Box<ColumnValues>),
}

/// The values of one column, as the array PostgreSQL binds in one parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnValues {
    Int(Vec<Option<i64>>),
    Text(Vec<Option<String>>),
    Bytes(Vec<Option<Vec<u8>>>),
    Bool(Vec<Option<bool>>),
    Time(Vec<Option<OffsetDateTime>>),
}

impl ColumnValues {
    /// An empty column of `like`'s type, with room for `rows`.
    fn like(like: &Value, rows: usize) -> Option<Self> {
        Some(match like {
            Value::Int(_) => Self::Int(Vec::with_capacity(rows)),
            Value::Text(_) => Self::Text(Vec::with_capacity(rows)),
            Value::Bytes(_) => Self::Bytes(Vec::with_capacity(rows)),
            Value::Bool(_) => Self::Bool(Vec::with_capacity(rows)),
            Value::Time(_) => Self::Time(Vec::with_capacity(rows)),
            Value::TextList(_) | Value::Column(_) => return None,
        })
    }

    /// Appends a value; `Err` gives it back when its type is not the column's (a NULL of any
    /// type fits).
    fn push(&mut self, v: Value) -> std::result::Result<(), Value> {
        match (self, v) {
            (Self::Int(c), Value::Int(x)) => c.push(x),
            (Self::Text(c), Value::Text(x)) => c.push(x),
            (Self::Bytes(c), Value::Bytes(x)) => c.push(x),
            (Self::Bool(c), Value::Bool(x)) => c.push(x),
            (Self::Time(c), Value::Time(x)) => c.push(x),
            (Self::Int(c), v) if v.is_null() => c.push(None),
            (Self::Text(c), v) if v.is_null() => c.push(None),
            (Self::Bytes(c), v) if v.is_null() => c.push(None),
            (Self::Bool(c), v) if v.is_null() => c.push(None),
            (Self::Time(c), v) if v.is_null() => c.push(None),
            (_, v) => return Err(v),
        }
        Ok(())
    }

    fn sql_type(&self) -> &'static str {
        match self {
            Self::Int(_) => "bigint[]",
            Self::Text(_) => "text[]",
            Self::Bytes(_) => "bytea[]",
            Self::Bool(_) => "boolean[]",
            Self::Time(_) => "timestamptz[]",
        }
    }

    /// Rows as columns, each typed by its first non-NULL value (`None` for a column of NULLs
    /// only, whose type the values cannot tell: a value read back from a database is an
    /// untyped NULL); the rows back when a column mixes types or a row is short.
    fn transpose(rows: Vec<Vec<Value>>) -> std::result::Result<Vec<Option<ColumnValues>>, Vec<Vec<Value>>> {
        let width = rows.first().map_or(0, Vec::len);
        let same_kind = |a: &Value, b: &Value| std::mem::discriminant(a) == std::mem::discriminant(b);
        let mut columns = Vec::with_capacity(width);
        for i in 0..width {
            let like = rows.iter().filter_map(|r| r.get(i)).find(|v| !v.is_null());
            let fits = |like: &Value| {
                rows.iter()
                    .all(|r| r.len() == width && (r[i].is_null() || same_kind(&r[i], like)))
            };
            match like {
                None if rows.iter().all(|r| r.len() == width) => columns.push(None),
                Some(like) if fits(like) => match Self::like(like, rows.len()) {
                    Some(c) => columns.push(Some(c)),
                    None => return Err(rows),
                },
                _ => return Err(rows),
            }
        }
        for row in rows {
            for (column, v) in columns.iter_mut().zip(row) {
                if let Some(column) = column {
                    column
                        .push(v)
                        .map_err(|_| ())
                        .expect("every value was checked to fit its column");
                }
            }
        }
        Ok(columns)
    }
}

/// `INSERT INTO {into} SELECT … FROM unnest(…){tail}` with one array per column, its
/// placeholders numbered on from `q`'s: the same text whatever the number of rows, so
/// PostgreSQL parses and plans it once per connection (a VALUES list of n rows is a new
/// statement for every n). A column of NULLs only is written as a NULL literal, which the
/// target column's type applies to. The rows back when there are none or they cannot be
/// columns.
fn push_unnest_insert(
    q: &mut Query,
    into: &str,
    rows: Vec<Vec<Value>>,
    tail: &str,
) -> std::result::Result<(), Vec<Vec<Value>>> {
    if rows.is_empty() {
        return Err(rows);
    }
    let columns = ColumnValues::transpose(rows)?;
    let mut select = Vec::with_capacity(columns.len());
    let mut arrays = Vec::with_capacity(columns.len());
    let mut names = Vec::with_capacity(columns.len());
    for (i, column) in columns.into_iter().enumerate() {
        match column {
            None => select.push("NULL".to_owned()),
            Some(c) => {
                let ty = c.sql_type();
                q.args.push(Value::Column(Box::new(c)));
                arrays.push(format!("${}::{ty}", q.args.len()));
                names.push(format!("c{i}"));
                select.push(format!("c{i}"));
            }
        }
    }
    q.push(&format!(
        "INSERT INTO {into} SELECT {} FROM unnest({}) AS t({}){tail}",
        select.join(", "),
        arrays.join(", "),
        names.join(", ")
    ));
    Ok(())
}

macro_rules! value_from {
    ($t:ty, $variant:ident, $conv:expr) => {
        impl From<$t> for Value {
            fn from(v: $t) -> Self {
                Value::$variant(Some($conv(v)))
            }
        }
        impl From<Option<$t>> for Value {
            fn from(v: Option<$t>) -> Self {
                Value::$variant(v.map($conv))
            }
        }
    };
}
value_from!(i64, Int, |v| v);
value_from!(u8, Int, i64::from);
value_from!(String, Text, |v| v);
value_from!(&str, Text, str::to_owned);
value_from!(&String, Text, String::clone);
value_from!(Vec<u8>, Bytes, |v| v);
value_from!(&[u8], Bytes, <[u8]>::to_vec);
value_from!(&Vec<u8>, Bytes, Vec::clone);
value_from!(bool, Bool, |v| v);
value_from!(OffsetDateTime, Time, |v| v);

impl Value {
    pub fn is_null(&self) -> bool {
        match self {
            Value::Int(v) => v.is_none(),
            Value::Text(v) => v.is_none(),
            Value::Bytes(v) => v.is_none(),
            Value::Bool(v) => v.is_none(),
            Value::Time(v) => v.is_none(),
            Value::TextList(_) | Value::Column(_) => false,
        }
    }
}

/// Where the two dialects differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// Row locking: PostgreSQL needs it; SQLite serialises writers, so it has none.
    pub fn for_update(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE",
        }
    }

    /// `column` is one of the texts bound at `$n` (a [`Value::TextList`]): one parameter however
    /// long the list, so the statement text (and its cached plan) is the same for every batch.
    pub fn member_of(self, column: &str, n: usize) -> String {
        match self {
            Dialect::Sqlite => format!("{column} IN (SELECT value FROM json_each(${n}))"),
            Dialect::Postgres => format!("{column} = ANY(${n})"),
        }
    }

    /// The number of the `seconds`-long slot (from the Unix epoch) a stored time falls in:
    /// times are milliseconds in SQLite's integers and `timestamptz` in PostgreSQL.
    pub fn epoch_slot(self, column: &str, seconds: u32) -> String {
        match self {
            Dialect::Sqlite => format!("({column} / {})", u64::from(seconds) * 1_000),
            Dialect::Postgres => {
                format!("CAST(floor(extract(epoch FROM {column}) / {seconds}) AS BIGINT)")
            }
        }
    }

    /// Row locking that passes over rows another transaction holds (job claims).
    pub fn for_update_skip_locked(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
        }
    }
}

/// A result row decoded into [`Value`]s, read by column name.
#[derive(Debug, Clone)]
pub struct Row {
    pub columns: Arc<Vec<String>>,
    pub values: Vec<Value>,
}

impl Row {
    fn value(&self, col: &str) -> Result<&Value> {
        self.columns
            .iter()
            .position(|c| c == col)
            .map(|i| &self.values[i])
            .ok_or_else(|| StoreError::Corrupt(format!("missing column {col}")))
    }

    fn corrupt(col: &str, v: &Value) -> StoreError {
        StoreError::Corrupt(format!("column {col} holds {v:?}"))
    }

    /// The value, or `None` for SQL NULL of whatever type the backend reported.
    fn non_null(&self, col: &str) -> Result<Option<&Value>> {
        let v = self.value(col)?;
        Ok(if v.is_null() { None } else { Some(v) })
    }

    pub fn opt_i64(&self, col: &str) -> Result<Option<i64>> {
        match self.non_null(col)? {
            None => Ok(None),
            Some(Value::Int(Some(i))) => Ok(Some(*i)),
            Some(Value::Bool(Some(b))) => Ok(Some(i64::from(*b))),
            Some(v) => Err(Self::corrupt(col, v)),
        }
    }
    pub fn i64(&self, col: &str) -> Result<i64> {
        self.opt_i64(col)?
            .ok_or_else(|| StoreError::Corrupt(format!("{col} is null")))
    }
    pub fn opt_text(&self, col: &str) -> Result<Option<String>> {
        match self.non_null(col)? {
            None => Ok(None),
            Some(Value::Text(Some(t))) => Ok(Some(t.clone())),
            Some(v) => Err(Self::corrupt(col, v)),
        }
    }
    pub fn text(&self, col: &str) -> Result<String> {
        self.opt_text(col)?
            .ok_or_else(|| StoreError::Corrupt(format!("{col} is null")))
    }
    pub fn opt_bytes(&self, col: &str) -> Result<Option<Vec<u8>>> {
        match self.non_null(col)? {
            None => Ok(None),
            Some(Value::Bytes(Some(b))) => Ok(Some(b.clone())),
            Some(v) => Err(Self::corrupt(col, v)),
        }
    }
    pub fn bytes(&self, col: &str) -> Result<Vec<u8>> {
        self.opt_bytes(col)?
            .ok_or_else(|| StoreError::Corrupt(format!("{col} is null")))
    }
    pub fn bool(&self, col: &str) -> Result<bool> {
        match self.non_null(col)? {
            Some(Value::Bool(Some(b))) => Ok(*b),
            Some(Value::Int(Some(i))) => Ok(*i != 0),
            Some(v) => Err(Self::corrupt(col, v)),
            None => Err(StoreError::Corrupt(format!("{col} is null"))),
        }
    }
    pub fn opt_time(&self, col: &str) -> Result<Option<OffsetDateTime>> {
        match self.non_null(col)? {
            None => Ok(None),
            Some(Value::Time(t)) => Ok(*t),
            Some(Value::Int(Some(ms))) => {
                OffsetDateTime::from_unix_timestamp_nanos(i128::from(*ms) * 1_000_000)
                    .map(Some)
                    .map_err(|_| StoreError::Corrupt(format!("{col} is out of range")))
            }
            Some(v) => Err(Self::corrupt(col, v)),
        }
    }
    pub fn time(&self, col: &str) -> Result<OffsetDateTime> {
        self.opt_time(col)?
            .ok_or_else(|| StoreError::Corrupt(format!("{col} is null")))
    }
    fn parsed<T: std::str::FromStr>(&self, col: &str) -> Result<T> {
        let s = self.text(col)?;
        s.parse()
            .map_err(|_| StoreError::Corrupt(format!("{col} holds {s:?}")))
    }
    fn opt_parsed<T: std::str::FromStr>(&self, col: &str) -> Result<Option<T>> {
        match self.opt_text(col)? {
            None => Ok(None),
            Some(s) => s
                .parse()
                .map(Some)
                .map_err(|_| StoreError::Corrupt(format!("{col} holds {s:?}"))),
        }
    }
    /// A word-coded enum (`huiyuan_domain::coded!`): a word this build does not know is corrupt.
    fn word<T>(&self, col: &str, parse: impl Fn(&str) -> Option<T>) -> Result<T> {
        let s = self.text(col)?;
        parse(&s).ok_or_else(|| StoreError::Corrupt(format!("{col} holds {s:?}")))
    }
    fn role(&self, col: &str) -> Result<Role> {
        let s = self.text(col)?;
        Role::parse(&s).ok_or_else(|| StoreError::Corrupt(format!("{col} holds {s:?}")))
    }
    fn opt_u8(&self, col: &str) -> Result<Option<u8>> {
        self.opt_i64(col)?
            .map(|v| u8::try_from(v).map_err(|_| StoreError::Corrupt(format!("{col} holds {v}"))))
            .transpose()
    }
}

/// Builds [`Row`]s from a backend's native rows: the column names are read once and shared,
/// each value is decoded by the backend's `decode(row, index)`.
pub fn decode_rows<R>(
    rows: &[R],
    column_names: impl FnOnce(&R) -> Vec<String>,
    decode: impl Fn(&R, usize) -> Result<Value>,
) -> Result<Vec<Row>> {
    let Some(first) = rows.first() else {
        return Ok(Vec::new());
    };
    let columns = Arc::new(column_names(first));
    rows.iter()
        .map(|row| {
            let values = (0..columns.len())
                .map(|i| decode(row, i))
                .collect::<Result<Vec<_>>>()?;
            Ok(Row {
                columns: columns.clone(),
                values,
            })
        })
        .collect()
}

/// What a backend provides: one open transaction that runs SQL written with `$1, $2, …`.
#[async_trait]
pub trait SqlConnection: Send {
    fn dialect(&self) -> Dialect;
    /// Runs a statement; returns the number of rows it changed.
    async fn execute(&mut self, sql: &str, args: Vec<Value>) -> Result<u64>;
    async fn fetch_all(&mut self, sql: &str, args: Vec<Value>) -> Result<Vec<Row>>;
    /// Runs one statement once for each row of values; returns the rows changed in all. An
    /// embedded database runs a prepared statement again for almost nothing, so bulk writes
    /// come here on SQLite; the default sends the rows one by one.
    async fn execute_each(&mut self, sql: &str, rows: Vec<Vec<Value>>) -> Result<u64> {
        let mut changed = 0;
        for args in rows {
            changed += self.execute(sql, args).await?;
        }
        Ok(changed)
    }
    /// [`SqlConnection::execute_each`] without waiting: the default runs the rows at once,
    /// while an embedded database queues them on its own thread and answers what went wrong
    /// (or a changed-row count other than `expect`, as [`StoreError::Stale`]) at the next call
    /// on this connection, commit included.
    async fn execute_each_ahead(
        &mut self,
        sql: &str,
        rows: Vec<Vec<Value>>,
        expect: Option<u64>,
    ) -> Result<()> {
        let changed = self.execute_each(sql, rows).await?;
        expect_changed(changed, expect)
    }
    /// Whether [`SqlConnection::execute_each_ahead`] returns before the rows are written.
    fn writes_ahead(&self) -> bool {
        false
    }
    async fn commit(self: Box<Self>) -> Result<()>;
}

/// A write that skipped rows it was expected to write (another transaction wrote them first)
/// is [`StoreError::Stale`]: the caller retries its transaction.
pub fn expect_changed(changed: u64, expect: Option<u64>) -> Result<()> {
    match expect {
        Some(expected) if expected != changed => Err(StoreError::Stale),
        _ => Ok(()),
    }
}

/// A statement built piece by piece, numbering its placeholders as values are pushed.
#[derive(Debug, Default)]
pub struct Query {
    pub sql: String,
    pub args: Vec<Value>,
}

impl Query {
    pub fn new(sql: &str) -> Self {
        Self {
            sql: sql.to_owned(),
            args: Vec::new(),
        }
    }
    pub fn push(&mut self, sql: &str) -> &mut Self {
        self.sql.push_str(sql);
        self
    }
    /// Appends `column` is one of `values`, the list bound as one parameter.
    pub fn one_of(&mut self, dialect: Dialect, column: &str, values: Vec<String>) -> &mut Self {
        self.args.push(Value::TextList(values));
        self.sql.push_str(&dialect.member_of(column, self.args.len()));
        self
    }
    /// Appends a placeholder for `value`.
    pub fn bind(&mut self, value: impl Into<Value>) -> &mut Self {
        self.args.push(value.into());
        self.sql.push_str(&format!("${}", self.args.len()));
        self
    }
}

/// Most placeholders one statement carries: under SQLite's limit (32,766) and PostgreSQL's
/// (65,535), so bulk writes are split into statements of at most this many values.
const MAX_PARAMS: usize = 30_000;

impl Query {
    /// Appends `(v1, v2, …)`.
    fn tuple(&mut self, values: Vec<Value>) -> &mut Self {
        self.push("(");
        for (i, value) in values.into_iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.bind(value);
        }
        self.push(")")
    }
}

/// Instants summed by one aggregate query in [`Tx::purchase_totals_since`]; beyond, the rows
/// are summed in memory.
const SUMS_PER_QUERY: usize = 16;

/// [`Tx`] over any [`SqlConnection`].
pub struct SqlTx {
    conn: Box<dyn SqlConnection>,
}

impl SqlTx {
    pub fn new(conn: Box<dyn SqlConnection>) -> Self {
        Self { conn }
    }

    async fn exec(&mut self, sql: &str, args: Vec<Value>) -> Result<u64> {
        self.conn.execute(sql, args).await
    }

    async fn rows(&mut self, sql: &str, args: Vec<Value>) -> Result<Vec<Row>> {
        self.conn.fetch_all(sql, args).await
    }

    async fn one<T>(
        &mut self,
        sql: &str,
        args: Vec<Value>,
        map: impl Fn(&Row) -> Result<T>,
    ) -> Result<Option<T>> {
        self.rows(sql, args).await?.first().map(map).transpose()
    }

    async fn all<T>(
        &mut self,
        sql: &str,
        args: Vec<Value>,
        map: impl Fn(&Row) -> Result<T>,
    ) -> Result<Vec<T>> {
        self.rows(sql, args).await?.iter().map(map).collect()
    }

    /// [`Tx::purchase_totals_since`] for many instants: an import's batch spans months, and
    /// asks for each sale's own day and month. Summing in the database would rescan the
    /// members' purchases since the earliest instant once per [`SUMS_PER_QUERY`] instants (on
    /// PostgreSQL, slower with every month of history imported); instead the purchases are read
    /// once and summed here, each member's sorted by time with suffix sums, so that each
    /// instant costs one binary search.
    async fn purchase_totals_from_rows(
        &mut self,
        brand: &BrandId,
        members: &[MemberId],
        sinces: &[OffsetDateTime],
        earliest: OffsetDateTime,
    ) -> Result<Vec<(MemberId, Vec<PurchaseTotals>)>> {
        let mut q = Query::new(
            "SELECT member_id, occurred_at, CAST(points - points_reversed AS BIGINT) AS points, \
             CAST(paid_amount - refunded_amount AS BIGINT) AS spend, \
             CAST(CASE WHEN status <> 'refunded' THEN 1 ELSE 0 END AS BIGINT) AS visit \
             FROM purchases WHERE brand_id = ",
        );
        q.bind(brand.as_str())
            .push(" AND occurred_at >= ")
            .bind(earliest)
            .push(" AND ")
            .one_of(
                self.conn.dialect(),
                "member_id",
                members.iter().map(|m| m.as_str().to_owned()).collect(),
            );
        let rows = self
            .query_all(q, |r| {
                Ok((
                    r.parsed::<MemberId>("member_id")?,
                    r.time("occurred_at")?,
                    PurchaseTotals {
                        points: r.i64("points")?,
                        spend: r.i64("spend")?,
                        visits: r.i64("visit")?,
                    },
                ))
            })
            .await?;
        let mut by_member: HashMap<MemberId, Vec<(OffsetDateTime, PurchaseTotals)>> = HashMap::new();
        for (member, at, t) in rows {
            by_member.entry(member).or_default().push((at, t));
        }
        Ok(by_member
            .into_iter()
            .map(|(member, mut rows)| {
                rows.sort_unstable_by_key(|(at, _)| *at);
                // suffix[i]: the totals of rows[i..].
                let mut suffix = vec![PurchaseTotals::default(); rows.len() + 1];
                for i in (0..rows.len()).rev() {
                    let (next, t) = (suffix[i + 1], rows[i].1);
                    suffix[i] = PurchaseTotals {
                        points: next.points + t.points,
                        spend: next.spend + t.spend,
                        visits: next.visits + t.visits,
                    };
                }
                let totals = sinces
                    .iter()
                    .map(|since| suffix[rows.partition_point(|(at, _)| at < since)])
                    .collect();
                (member, totals)
            })
            .collect())
    }

    /// A page of a brand's rows of `table` in ID order after `after`: what exports walk.
    /// `alias` prefixes the columns when `cols` name one (`m.` for members).
    async fn in_id_order<T>(
        &mut self,
        (table, alias, cols): (&str, &str, &str),
        brand: &BrandId,
        after: Option<&str>,
        limit: u32,
        map: impl Fn(&Row) -> Result<T>,
    ) -> Result<Vec<T>> {
        let mut q = Query::new(&format!(
            "SELECT {cols} FROM {table} {alias} WHERE {alias}.brand_id = "
        ));
        q.bind(brand.as_str());
        if let Some(after) = after {
            q.push(&format!(" AND {alias}.id > ")).bind(after);
        }
        q.push(&format!(" ORDER BY {alias}.id LIMIT "))
            .bind(i64::from(limit.clamp(1, 10_000)));
        self.query_all(q, map).await
    }

    async fn query_all<T>(&mut self, q: Query, map: impl Fn(&Row) -> Result<T>) -> Result<Vec<T>> {
        self.all(&q.sql, q.args, map).await
    }

    /// [`SqlTx::insert_rows`] of one of the per-table inserts that [`Tx::write_postings`]
    /// also sends together.
    async fn insert_parts(&mut self, (into, rows, tail): InsertParts) -> Result<u64> {
        self.insert_rows(&into, rows, tail).await
    }

    /// `INSERT INTO {into} … {tail}` for every row: on PostgreSQL one statement that unnests
    /// one array per column ([`push_unnest_insert`]; multi-row `VALUES` statements, as few as
    /// the placeholder limit allows, when the rows cannot be columns), on SQLite one prepared
    /// statement run per row. Returns the rows written.
    async fn insert_rows(&mut self, into: &str, rows: Vec<Vec<Value>>, tail: &str) -> Result<u64> {
        let width = rows.first().map_or(1, Vec::len).max(1);
        if self.conn.dialect() == Dialect::Sqlite {
            // In-process, one prepared single-row statement beats parsing a statement of
            // thousands of placeholders; a network database wants the fewest round trips.
            return self
                .conn
                .execute_each(&single_row_insert(into, &rows, tail), rows)
                .await;
        }
        let mut q = Query::default();
        let rows = match push_unnest_insert(&mut q, into, rows, tail) {
            Ok(()) => return self.exec(&q.sql, q.args).await,
            Err(rows) => rows,
        };
        let mut written = 0;
        let mut rows = rows.into_iter().peekable();
        while rows.peek().is_some() {
            let mut q = Query::new(&format!("INSERT INTO {into} VALUES "));
            for (i, row) in rows.by_ref().take(MAX_PARAMS / width).enumerate() {
                if i > 0 {
                    q.push(", ");
                }
                q.tuple(row);
            }
            q.push(tail);
            written += self.exec(&q.sql, q.args).await?;
        }
        Ok(written)
    }

    /// `{select} AND {column} is one of keys{tail}`, the keys bound as one list.
    async fn select_in<T>(
        &mut self,
        select: &str,
        fixed: Vec<Value>,
        column: &str,
        keys: Vec<String>,
        tail: &str,
        map: impl Fn(&Row) -> Result<T>,
    ) -> Result<Vec<T>> {
        let n = fixed.len() + 1;
        let mut args = fixed;
        args.push(Value::TextList(keys));
        let sql = format!("{select} AND {}{tail}", self.conn.dialect().member_of(column, n));
        self.all(&sql, args, map).await
    }
}

/// Appends a page of per-member rows (accounts, wallets) in (brand, member) order after the
/// cursor, of one brand when given: how the verifier and the jobs walk a whole database.
fn by_member_after(q: &mut Query, brand: Option<&BrandId>, after: Option<&(BrandId, MemberId)>, limit: u32) {
    if let Some(b) = brand {
        q.push(" AND brand_id = ").bind(b.as_str());
    }
    if let Some((b, m)) = after {
        q.push(" AND (brand_id > ").bind(b.as_str());
        q.push(" OR (brand_id = ").bind(b.as_str());
        q.push(" AND member_id > ").bind(m.as_str());
        q.push("))");
    }
    q.push(" ORDER BY brand_id, member_id LIMIT ")
        .bind(i64::from(limit.clamp(1, 10_000)));
}

/// Appends the cursor condition and order for newest-first pages on `column`.
fn paginate(q: &mut Query, column: &str, page: &Page) {
    if let Some(after) = &page.starting_after {
        q.push(&format!(" AND {column} < ")).bind(after.as_str());
    }
    q.push(&format!(" ORDER BY {column} DESC LIMIT "))
        .bind(i64::from(page.limit.clamp(1, 1000)));
}

fn v(x: impl Into<Value>) -> Value {
    x.into()
}

#[async_trait]
impl Tx for SqlTx {
    async fn commit(self: Box<Self>) -> Result<()> {
        self.conn.commit().await
    }
}
