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
use huiyuan_domain::member::MemberStatus;
use std::collections::HashMap;
use std::sync::Arc;
use time::OffsetDateTime;

use crate::records::*;
use crate::{Result, StoreError, Tx};

mod commerce;

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

const BRAND_COLS: &str = "id, slug, name, currency, timezone, code_key_ciphertext, created_at";
fn brand_row(r: &Row) -> Result<BrandRecord> {
    Ok(BrandRecord {
        id: r.parsed("id")?,
        slug: r.text("slug")?,
        name: r.text("name")?,
        currency: r.text("currency")?,
        timezone: r.text("timezone")?,
        code_key_ciphertext: r.bytes("code_key_ciphertext")?,
        created_at: r.time("created_at")?,
    })
}

const STORE_COLS: &str = "id, brand_id, code, name, city, region, active, created_at";
fn store_row(r: &Row) -> Result<StoreRecord> {
    Ok(StoreRecord {
        id: r.parsed("id")?,
        brand_id: r.parsed("brand_id")?,
        code: r.text("code")?,
        name: r.text("name")?,
        city: r.opt_text("city")?,
        region: r.opt_text("region")?,
        active: r.bool("active")?,
        created_at: r.time("created_at")?,
    })
}

const OPERATOR_COLS: &str = "id, brand_id, username, display_name, role, password_hash, disabled, created_at";
fn operator_row(r: &Row) -> Result<OperatorRecord> {
    Ok(OperatorRecord {
        id: r.parsed("id")?,
        brand_id: r.parsed("brand_id")?,
        username: r.text("username")?,
        display_name: r.text("display_name")?,
        role: r.role("role")?,
        password_hash: r.text("password_hash")?,
        disabled: r.bool("disabled")?,
        created_at: r.time("created_at")?,
    })
}

const API_KEY_COLS: &str =
    "id, brand_id, name, role, prefix, secret_hash, created_by, created_at, revoked_at";
fn api_key_row(r: &Row) -> Result<ApiKeyRecord> {
    Ok(ApiKeyRecord {
        id: r.parsed("id")?,
        brand_id: r.parsed("brand_id")?,
        name: r.text("name")?,
        role: r.role("role")?,
        prefix: r.text("prefix")?,
        secret_hash: r.bytes("secret_hash")?,
        created_by: r.text("created_by")?,
        created_at: r.time("created_at")?,
        revoked_at: r.opt_time("revoked_at")?,
    })
}

const MEMBER_COLS: &str =
    "m.id, m.brand_id, m.status, m.merged_into, m.pii_ciphertext, m.birth_month, m.gender, \
     m.city, m.household_size, m.channel, m.store_id, m.consents, m.attributes, m.enrolled_at, m.updated_at, \
     m.erased_at, m.version";
fn member_row(r: &Row) -> Result<MemberRecord> {
    let status = r.text("status")?;
    Ok(MemberRecord {
        id: r.parsed("id")?,
        brand_id: r.parsed("brand_id")?,
        status: MemberStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("status {status:?}")))?,
        merged_into: r.opt_parsed("merged_into")?,
        pii_ciphertext: r.opt_bytes("pii_ciphertext")?,
        birth_month: r.opt_u8("birth_month")?,
        gender: r.opt_text("gender")?,
        city: r.opt_text("city")?,
        household_size: r.opt_u8("household_size")?,
        channel: r.text("channel")?,
        store_id: r.opt_parsed("store_id")?,
        consents: r.text("consents")?,
        attributes: r.text("attributes")?,
        enrolled_at: r.time("enrolled_at")?,
        updated_at: r.time("updated_at")?,
        erased_at: r.opt_time("erased_at")?,
        version: r.i64("version")?,
    })
}

fn identity_row(r: &Row) -> Result<IdentityRecord> {
    Ok(IdentityRecord {
        brand_id: r.parsed("brand_id")?,
        kind: r.text("kind")?,
        hash: r.bytes("hash")?,
        member_id: r.parsed("member_id")?,
        value_ciphertext: r.bytes("value_ciphertext")?,
    })
}

const CODE_COLS: &str = "brand_id, nonce, code_hash, member_id, expires_at, used_at, used_by";
fn code_row(r: &Row) -> Result<MemberCodeRecord> {
    Ok(MemberCodeRecord {
        brand_id: r.parsed("brand_id")?,
        nonce: r.text("nonce")?,
        code_hash: r.bytes("code_hash")?,
        member_id: r.parsed("member_id")?,
        expires_at: r.time("expires_at")?,
        used_at: r.opt_time("used_at")?,
        used_by: r.opt_text("used_by")?,
    })
}

const AUDIT_COLS: &str =
    "id, brand_id, actor_kind, actor_id, action, target_kind, target_id, diff, request_id, created_at";
fn audit_row(r: &Row) -> Result<AuditRecord> {
    Ok(AuditRecord {
        id: r.parsed("id")?,
        brand_id: r.parsed("brand_id")?,
        actor_kind: r.text("actor_kind")?,
        actor_id: r.text("actor_id")?,
        action: r.text("action")?,
        target_kind: r.text("target_kind")?,
        target_id: r.text("target_id")?,
        diff: r.text("diff")?,
        request_id: r.opt_text("request_id")?,
        created_at: r.time("created_at")?,
    })
}

const IDEMPOTENCY_COLS: &str = "brand_id, scope, idem_key, request_hash, status, body, created_at";
fn idempotency_row(r: &Row) -> Result<IdempotencyRecord> {
    Ok(IdempotencyRecord {
        brand_id: r.parsed("brand_id")?,
        scope: r.text("scope")?,
        key: r.text("idem_key")?,
        request_hash: r.bytes("request_hash")?,
        status: r
            .opt_i64("status")?
            .map(|s| u16::try_from(s).map_err(|_| StoreError::Corrupt(format!("status {s}"))))
            .transpose()?,
        body: r.opt_bytes("body")?,
        created_at: r.time("created_at")?,
    })
}

const PROGRAMME_COLS: &str = "brand_id, version, document, created_by, created_at";
fn programme_row(r: &Row) -> Result<ProgrammeRecord> {
    Ok(ProgrammeRecord {
        brand_id: r.parsed("brand_id")?,
        version: r.i64("version")?,
        document: r.text("document")?,
        created_by: r.text("created_by")?,
        created_at: r.time("created_at")?,
    })
}

const ACCOUNT_COLS: &str = "brand_id, member_id, available, pending, debt, last_seq, last_hash, tier_code, \
     tier_since, tier_review_at, tier_grace_until, updated_at";
fn account_row(r: &Row) -> Result<AccountRecord> {
    Ok(AccountRecord {
        brand_id: r.parsed("brand_id")?,
        member_id: r.parsed("member_id")?,
        available: r.i64("available")?,
        pending: r.i64("pending")?,
        debt: r.i64("debt")?,
        last_seq: r.i64("last_seq")?,
        last_hash: r.bytes("last_hash")?,
        tier_code: r.opt_text("tier_code")?,
        tier_since: r.opt_time("tier_since")?,
        tier_review_at: r.opt_time("tier_review_at")?,
        tier_grace_until: r.opt_time("tier_grace_until")?,
        updated_at: r.time("updated_at")?,
    })
}
fn account_values(a: &AccountRecord) -> Vec<Value> {
    vec![
        v(a.brand_id.as_str()),
        v(a.member_id.as_str()),
        v(a.available),
        v(a.pending),
        v(a.debt),
        v(a.last_seq),
        v(&a.last_hash),
        v(a.tier_code.clone()),
        v(a.tier_since),
        v(a.tier_review_at),
        v(a.tier_grace_until),
        v(a.updated_at),
    ]
}

fn lot_values(l: &LotRecord) -> Vec<Value> {
    vec![
        v(&l.id),
        v(l.brand_id.as_str()),
        v(l.member_id.as_str()),
        v(&l.status),
        v(&l.source),
        v(l.reference.clone()),
        v(l.amount),
        v(l.remaining),
        v(l.earned_at),
        v(l.matures_at),
        v(l.expires_at),
        v(l.expiry_notified),
    ]
}

fn entry_values(e: &LedgerEntryRecord) -> Vec<Value> {
    vec![
        v(&e.id),
        v(e.brand_id.as_str()),
        v(e.member_id.as_str()),
        v(e.seq),
        v(&e.kind),
        v(e.available_delta),
        v(e.pending_delta),
        v(e.debt_delta),
        v(e.lot_id.clone()),
        v(e.reference.clone()),
        Value::Int(e.programme_version),
        v(&e.detail),
        v(&e.actor),
        v(e.created_at),
        v(&e.prev_hash),
        v(&e.hash),
    ]
}

fn purchase_values(p: &PurchaseRecord) -> Vec<Value> {
    vec![
        v(p.brand_id.as_str()),
        v(&p.order_id),
        v(&p.id),
        v(p.member_id.as_str()),
        v(p.store_id.as_ref().map(|s| s.as_str())),
        v(&p.channel),
        v(p.occurred_at),
        v(p.paid_amount),
        v(p.eligible_amount),
        v(p.points),
        v(p.points_reversed),
        v(p.refunded_amount),
        v(&p.status),
        v(&p.lines),
        v(&p.earning),
        v(p.programme_version),
        v(p.created_at),
    ]
}

const LOT_COLS: &str = "id, brand_id, member_id, status, source, reference, amount, remaining, earned_at, \
     matures_at, expires_at, expiry_notified";
fn lot_row(r: &Row) -> Result<LotRecord> {
    Ok(LotRecord {
        id: r.text("id")?,
        brand_id: r.parsed("brand_id")?,
        member_id: r.parsed("member_id")?,
        status: r.text("status")?,
        source: r.text("source")?,
        reference: r.opt_text("reference")?,
        amount: r.i64("amount")?,
        remaining: r.i64("remaining")?,
        earned_at: r.time("earned_at")?,
        matures_at: r.opt_time("matures_at")?,
        expires_at: r.opt_time("expires_at")?,
        expiry_notified: r.bool("expiry_notified")?,
    })
}

const ENTRY_COLS: &str =
    "id, brand_id, member_id, seq, kind, available_delta, pending_delta, debt_delta, lot_id, \
     reference, programme_version, detail, actor, created_at, prev_hash, hash";
fn entry_row(r: &Row) -> Result<LedgerEntryRecord> {
    Ok(LedgerEntryRecord {
        id: r.text("id")?,
        brand_id: r.parsed("brand_id")?,
        member_id: r.parsed("member_id")?,
        seq: r.i64("seq")?,
        kind: r.text("kind")?,
        available_delta: r.i64("available_delta")?,
        pending_delta: r.i64("pending_delta")?,
        debt_delta: r.i64("debt_delta")?,
        lot_id: r.opt_text("lot_id")?,
        reference: r.opt_text("reference")?,
        programme_version: r.opt_i64("programme_version")?,
        detail: r.text("detail")?,
        actor: r.text("actor")?,
        created_at: r.time("created_at")?,
        prev_hash: r.bytes("prev_hash")?,
        hash: r.bytes("hash")?,
    })
}

const PURCHASE_COLS: &str = "brand_id, order_id, id, member_id, store_id, channel, occurred_at, paid_amount, \
     eligible_amount, points, points_reversed, refunded_amount, status, lines, earning, programme_version, created_at";
fn purchase_row(r: &Row) -> Result<PurchaseRecord> {
    Ok(PurchaseRecord {
        brand_id: r.parsed("brand_id")?,
        order_id: r.text("order_id")?,
        id: r.text("id")?,
        member_id: r.parsed("member_id")?,
        store_id: r.opt_parsed("store_id")?,
        channel: r.text("channel")?,
        occurred_at: r.time("occurred_at")?,
        paid_amount: r.i64("paid_amount")?,
        eligible_amount: r.i64("eligible_amount")?,
        points: r.i64("points")?,
        points_reversed: r.i64("points_reversed")?,
        refunded_amount: r.i64("refunded_amount")?,
        status: r.text("status")?,
        lines: r.text("lines")?,
        earning: r.text("earning")?,
        programme_version: r.i64("programme_version")?,
        created_at: r.time("created_at")?,
    })
}

const REFUND_COLS: &str =
    "brand_id, refund_id, order_id, member_id, amount, points_reversed, detail, created_at";
fn refund_row(r: &Row) -> Result<RefundRecord> {
    Ok(RefundRecord {
        brand_id: r.parsed("brand_id")?,
        refund_id: r.text("refund_id")?,
        order_id: r.text("order_id")?,
        member_id: r.parsed("member_id")?,
        amount: r.i64("amount")?,
        points_reversed: r.i64("points_reversed")?,
        detail: r.text("detail")?,
        created_at: r.time("created_at")?,
    })
}

const OPERATION_COLS: &str = "brand_id, kind, reference, member_id, result, created_at";
fn operation_row(r: &Row) -> Result<OperationRecord> {
    Ok(OperationRecord {
        brand_id: r.parsed("brand_id")?,
        kind: r.text("kind")?,
        reference: r.text("reference")?,
        member_id: r.parsed("member_id")?,
        result: r.text("result")?,
        created_at: r.time("created_at")?,
    })
}

const TIER_CHANGE_COLS: &str = "id, brand_id, member_id, from_tier, to_tier, reason, created_at";
fn tier_change_row(r: &Row) -> Result<TierChangeRecord> {
    Ok(TierChangeRecord {
        id: r.text("id")?,
        brand_id: r.parsed("brand_id")?,
        member_id: r.parsed("member_id")?,
        from_tier: r.opt_text("from_tier")?,
        to_tier: r.text("to_tier")?,
        reason: r.text("reason")?,
        created_at: r.time("created_at")?,
    })
}

const EVENT_COLS: &str = "id, brand_id, event_type, subject, payload, dedupe_key, created_at";
fn event_values(e: &OutboxRecord) -> Vec<Value> {
    vec![
        v(&e.id),
        v(e.brand_id.as_str()),
        v(&e.event_type),
        v(&e.subject),
        v(&e.payload),
        v(e.dedupe_key.clone()),
        v(e.created_at),
    ]
}

/// Skips rows whose key is taken: a purchase whose order ID the brand has, an event whose
/// dedupe key was used, an account that exists.
const SKIP_EXISTING: &str = " ON CONFLICT DO NOTHING";
/// An upsert for several rows per statement; the lots exist, so only the update applies.
const LOT_UPDATE: &str = " ON CONFLICT (id) DO UPDATE SET status = excluded.status, \
     remaining = excluded.remaining, expiry_notified = excluded.expiry_notified";
/// An upsert rather than UPDATE … FROM (VALUES …): one form both dialects share. The rows
/// exist and are locked by the caller, so it always takes the update branch.
const ACCOUNT_SAVE: &str =
    " ON CONFLICT (brand_id, member_id) DO UPDATE SET available = excluded.available, \
     pending = excluded.pending, debt = excluded.debt, last_seq = excluded.last_seq, \
     last_hash = excluded.last_hash, tier_code = excluded.tier_code, tier_since = excluded.tier_since, \
     tier_review_at = excluded.tier_review_at, tier_grace_until = excluded.tier_grace_until, \
     updated_at = excluded.updated_at";

fn tier_change_values(c: &TierChangeRecord) -> Vec<Value> {
    vec![
        v(&c.id),
        v(c.brand_id.as_str()),
        v(c.member_id.as_str()),
        v(c.from_tier.clone()),
        v(&c.to_tier),
        v(&c.reason),
        v(c.created_at),
    ]
}

/// One multi-row insert: the table and columns, the rows, what follows them.
type InsertParts = (String, Vec<Vec<Value>>, &'static str);

fn lot_inserts(lots: &[LotRecord], tail: &'static str) -> InsertParts {
    (
        format!("point_lots ({LOT_COLS})"),
        lots.iter().map(lot_values).collect(),
        tail,
    )
}

fn account_inserts(accounts: &[AccountRecord], tail: &'static str) -> InsertParts {
    (
        format!("point_accounts ({ACCOUNT_COLS})"),
        accounts.iter().map(account_values).collect(),
        tail,
    )
}

fn event_inserts(events: &[OutboxRecord], tail: &'static str) -> InsertParts {
    (
        format!("outbox_events ({EVENT_COLS})"),
        events.iter().map(event_values).collect(),
        tail,
    )
}

/// A posting's events are new (fresh IDs), so only a dedupe key can collide. Most have none,
/// and a plain insert then spares PostgreSQL the speculative insertion (an extra WAL record and
/// index probe per row) that ON CONFLICT costs even when nothing conflicts.
fn new_events_tail(events: &[OutboxRecord]) -> &'static str {
    if events.iter().any(|e| e.dedupe_key.is_some()) {
        SKIP_EXISTING
    } else {
        ""
    }
}

/// The inserts of [`Tx::write_postings`], referenced rows first; purchases first of all.
fn posting_inserts(w: &crate::PostingWrites<'_>) -> [InsertParts; 7] {
    [
        (
            format!("purchases ({PURCHASE_COLS})"),
            w.purchases.iter().map(purchase_values).collect(),
            SKIP_EXISTING,
        ),
        lot_inserts(w.new_lots, ""),
        (
            format!("ledger_entries ({ENTRY_COLS})"),
            w.entries.iter().map(entry_values).collect(),
            "",
        ),
        lot_inserts(w.changed_lots, LOT_UPDATE),
        account_inserts(w.accounts, ACCOUNT_SAVE),
        (
            format!("tier_changes ({TIER_CHANGE_COLS})"),
            w.tier_changes.iter().map(tier_change_values).collect(),
            "",
        ),
        event_inserts(w.events, new_events_tail(w.events)),
    ]
}

/// `INSERT INTO {into} VALUES ($1, …) {tail}`, one placeholder per column of `rows`.
fn single_row_insert(into: &str, rows: &[Vec<Value>], tail: &str) -> String {
    let width = rows.first().map_or(1, Vec::len).max(1);
    let mut q = Query::new(&format!("INSERT INTO {into} VALUES "));
    q.tuple(vec![Value::Int(None); width]);
    q.push(tail);
    q.sql
}

/// [`posting_inserts`] as one PostgreSQL statement of data-modifying CTEs (all run to
/// completion whether or not the final SELECT reads them), returning how many purchases were
/// written; `None` when a part cannot be unnested.
fn postings_statement(parts: [InsertParts; 7]) -> Option<Query> {
    let mut q = Query::new("WITH ");
    let mut any = false;
    let mut purchases = false;
    for (i, (into, rows, tail)) in parts.into_iter().enumerate() {
        if rows.is_empty() {
            continue;
        }
        if any {
            q.push(", ");
        }
        any = true;
        q.push(&format!("w{i} AS ("));
        push_unnest_insert(&mut q, &into, rows, tail).ok()?;
        // Purchases come first: their count is the statement's answer.
        purchases |= i == 0;
        q.push(if i == 0 { " RETURNING 1)" } else { ")" });
    }
    if !any {
        return None;
    }
    q.push(if purchases {
        " SELECT COUNT(*) AS written FROM w0"
    } else {
        " SELECT CAST(0 AS BIGINT) AS written"
    });
    Some(q)
}
fn event_row(r: &Row) -> Result<OutboxRecord> {
    Ok(OutboxRecord {
        id: r.text("id")?,
        brand_id: r.parsed("brand_id")?,
        event_type: r.text("event_type")?,
        subject: r.text("subject")?,
        payload: r.text("payload")?,
        dedupe_key: r.opt_text("dedupe_key")?,
        created_at: r.time("created_at")?,
    })
}

const JOB_COLS: &str =
    "name, due_at, lease_owner, lease_until, last_started_at, last_finished_at, last_error, runs";
fn job_row(r: &Row) -> Result<JobRecord> {
    Ok(JobRecord {
        name: r.text("name")?,
        due_at: r.time("due_at")?,
        lease_owner: r.opt_text("lease_owner")?,
        lease_until: r.opt_time("lease_until")?,
        last_started_at: r.opt_time("last_started_at")?,
        last_finished_at: r.opt_time("last_finished_at")?,
        last_error: r.opt_text("last_error")?,
        runs: r.i64("runs")?,
    })
}

fn member_pair(r: &Row) -> Result<(BrandId, MemberId)> {
    Ok((r.parsed("brand_id")?, r.parsed("member_id")?))
}

fn v(x: impl Into<Value>) -> Value {
    x.into()
}

#[async_trait]
impl Tx for SqlTx {
    async fn commit(self: Box<Self>) -> Result<()> {
        self.conn.commit().await
    }

    async fn insert_brand(&mut self, b: &BrandRecord) -> Result<()> {
        self.exec(
            "INSERT INTO brands (id, slug, name, currency, timezone, code_key_ciphertext, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            vec![
                v(b.id.as_str()),
                v(&b.slug),
                v(&b.name),
                v(&b.currency),
                v(&b.timezone),
                v(&b.code_key_ciphertext),
                v(b.created_at),
            ],
        )
        .await
        .map(drop)
    }

    async fn get_brand(&mut self, id: &BrandId) -> Result<Option<BrandRecord>> {
        self.one(
            &format!("SELECT {BRAND_COLS} FROM brands WHERE id = $1"),
            vec![v(id.as_str())],
            brand_row,
        )
        .await
    }

    async fn get_brand_by_slug(&mut self, slug: &str) -> Result<Option<BrandRecord>> {
        self.one(
            &format!("SELECT {BRAND_COLS} FROM brands WHERE slug = $1"),
            vec![v(slug)],
            brand_row,
        )
        .await
    }

    async fn list_brands(&mut self) -> Result<Vec<BrandRecord>> {
        self.all(
            &format!("SELECT {BRAND_COLS} FROM brands ORDER BY id"),
            vec![],
            brand_row,
        )
        .await
    }

    async fn update_brand(&mut self, b: &BrandRecord) -> Result<()> {
        self.exec(
            "UPDATE brands SET name = $2, currency = $3, timezone = $4 WHERE id = $1",
            vec![v(b.id.as_str()), v(&b.name), v(&b.currency), v(&b.timezone)],
        )
        .await
        .map(drop)
    }

    async fn insert_store(&mut self, s: &StoreRecord) -> Result<()> {
        self.exec(
            "INSERT INTO stores (id, brand_id, code, name, city, region, active, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            vec![
                v(s.id.as_str()),
                v(s.brand_id.as_str()),
                v(&s.code),
                v(&s.name),
                v(s.city.clone()),
                v(s.region.clone()),
                v(s.active),
                v(s.created_at),
            ],
        )
        .await
        .map(drop)
    }

    async fn update_store(&mut self, s: &StoreRecord) -> Result<()> {
        self.exec(
            "UPDATE stores SET code = $3, name = $4, city = $5, region = $6, active = $7 WHERE brand_id = $1 AND id = $2",
            vec![v(s.brand_id.as_str()), v(s.id.as_str()), v(&s.code), v(&s.name), v(s.city.clone()), v(s.region.clone()), v(s.active)],
        )
        .await
        .map(drop)
    }

    async fn get_store(&mut self, brand: &BrandId, id: &StoreId) -> Result<Option<StoreRecord>> {
        self.one(
            &format!("SELECT {STORE_COLS} FROM stores WHERE brand_id = $1 AND id = $2"),
            vec![v(brand.as_str()), v(id.as_str())],
            store_row,
        )
        .await
    }

    async fn list_stores(&mut self, brand: &BrandId, page: &Page) -> Result<Vec<StoreRecord>> {
        let mut q = Query::new(&format!("SELECT {STORE_COLS} FROM stores WHERE brand_id = "));
        q.bind(brand.as_str());
        paginate(&mut q, "id", page);
        self.query_all(q, store_row).await
    }

    async fn insert_operator(&mut self, o: &OperatorRecord) -> Result<()> {
        self.exec(
            "INSERT INTO operators (id, brand_id, username, display_name, role, password_hash, disabled, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            vec![v(o.id.as_str()), v(o.brand_id.as_str()), v(&o.username), v(&o.display_name), v(o.role.as_str()), v(&o.password_hash), v(o.disabled), v(o.created_at)],
        )
        .await
        .map(drop)
    }

    async fn update_operator(&mut self, o: &OperatorRecord) -> Result<()> {
        self.exec(
            "UPDATE operators SET display_name = $3, role = $4, password_hash = $5, disabled = $6 WHERE brand_id = $1 AND id = $2",
            vec![v(o.brand_id.as_str()), v(o.id.as_str()), v(&o.display_name), v(o.role.as_str()), v(&o.password_hash), v(o.disabled)],
        )
        .await
        .map(drop)
    }

    async fn get_operator(&mut self, brand: &BrandId, id: &OperatorId) -> Result<Option<OperatorRecord>> {
        self.one(
            &format!("SELECT {OPERATOR_COLS} FROM operators WHERE brand_id = $1 AND id = $2"),
            vec![v(brand.as_str()), v(id.as_str())],
            operator_row,
        )
        .await
    }

    async fn find_operator_by_username(&mut self, username: &str) -> Result<Option<OperatorRecord>> {
        self.one(
            &format!("SELECT {OPERATOR_COLS} FROM operators WHERE username = $1"),
            vec![v(username)],
            operator_row,
        )
        .await
    }

    async fn list_operators(&mut self, brand: &BrandId, page: &Page) -> Result<Vec<OperatorRecord>> {
        let mut q = Query::new(&format!(
            "SELECT {OPERATOR_COLS} FROM operators WHERE brand_id = "
        ));
        q.bind(brand.as_str());
        paginate(&mut q, "id", page);
        self.query_all(q, operator_row).await
    }

    async fn insert_session(&mut self, s: &SessionRecord) -> Result<()> {
        self.exec(
            "INSERT INTO sessions (token_hash, operator_id, brand_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
            vec![v(&s.token_hash), v(s.operator_id.as_str()), v(s.brand_id.as_str()), v(s.created_at), v(s.expires_at)],
        )
        .await
        .map(drop)
    }

    async fn find_session(&mut self, token_hash: &[u8]) -> Result<Option<SessionRecord>> {
        self.one(
            "SELECT token_hash, operator_id, brand_id, created_at, expires_at FROM sessions WHERE token_hash = $1",
            vec![v(token_hash)],
            |r| {
                Ok(SessionRecord {
                    token_hash: r.bytes("token_hash")?,
                    operator_id: r.parsed("operator_id")?,
                    brand_id: r.parsed("brand_id")?,
                    created_at: r.time("created_at")?,
                    expires_at: r.time("expires_at")?,
                })
            },
        )
        .await
    }

    async fn delete_session(&mut self, token_hash: &[u8]) -> Result<bool> {
        Ok(self
            .exec("DELETE FROM sessions WHERE token_hash = $1", vec![v(token_hash)])
            .await?
            > 0)
    }

    async fn delete_sessions_of(&mut self, operator: &OperatorId) -> Result<u64> {
        self.exec(
            "DELETE FROM sessions WHERE operator_id = $1",
            vec![v(operator.as_str())],
        )
        .await
    }

    async fn insert_api_key(&mut self, k: &ApiKeyRecord) -> Result<()> {
        self.exec(
            "INSERT INTO api_keys (id, brand_id, name, role, prefix, secret_hash, created_by, created_at, revoked_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            vec![v(k.id.as_str()), v(k.brand_id.as_str()), v(&k.name), v(k.role.as_str()), v(&k.prefix), v(&k.secret_hash), v(&k.created_by), v(k.created_at), v(k.revoked_at)],
        )
        .await
        .map(drop)
    }

    async fn find_api_key_by_prefix(&mut self, prefix: &str) -> Result<Option<ApiKeyRecord>> {
        self.one(
            &format!("SELECT {API_KEY_COLS} FROM api_keys WHERE prefix = $1"),
            vec![v(prefix)],
            api_key_row,
        )
        .await
    }

    async fn get_api_key(&mut self, brand: &BrandId, id: &ApiKeyId) -> Result<Option<ApiKeyRecord>> {
        self.one(
            &format!("SELECT {API_KEY_COLS} FROM api_keys WHERE brand_id = $1 AND id = $2"),
            vec![v(brand.as_str()), v(id.as_str())],
            api_key_row,
        )
        .await
    }

    async fn list_api_keys(&mut self, brand: &BrandId, page: &Page) -> Result<Vec<ApiKeyRecord>> {
        let mut q = Query::new(&format!("SELECT {API_KEY_COLS} FROM api_keys WHERE brand_id = "));
        q.bind(brand.as_str());
        paginate(&mut q, "id", page);
        self.query_all(q, api_key_row).await
    }

    async fn revoke_api_key(&mut self, brand: &BrandId, id: &ApiKeyId, at: OffsetDateTime) -> Result<bool> {
        Ok(self
            .exec(
                "UPDATE api_keys SET revoked_at = $3 WHERE brand_id = $1 AND id = $2 AND revoked_at IS NULL",
                vec![v(brand.as_str()), v(id.as_str()), v(at)],
            )
            .await?
            > 0)
    }

    async fn insert_member(&mut self, m: &MemberRecord) -> Result<()> {
        self.exec(
            "INSERT INTO members (id, brand_id, status, merged_into, pii_ciphertext, birth_month, gender, city, \
             household_size, channel, store_id, consents, attributes, enrolled_at, updated_at, erased_at, version) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
            member_values(m),
        )
        .await
        .map(drop)
    }

    async fn update_member(&mut self, m: &MemberRecord) -> Result<()> {
        let mut args = member_values(m);
        args.push(v(m.version - 1));
        let changed = self
            .exec(
                "UPDATE members SET status = $3, merged_into = $4, pii_ciphertext = $5, birth_month = $6, gender = $7, \
                 city = $8, household_size = $9, channel = $10, store_id = $11, consents = $12, attributes = $13, \
                 enrolled_at = $14, updated_at = $15, erased_at = $16, version = $17 \
                 WHERE id = $1 AND brand_id = $2 AND version = $18",
                args,
            )
            .await?;
        if changed == 0 {
            return Err(StoreError::Stale);
        }
        Ok(())
    }

    async fn get_member(&mut self, brand: &BrandId, id: &MemberId) -> Result<Option<MemberRecord>> {
        self.one(
            &format!("SELECT {MEMBER_COLS} FROM members m WHERE m.brand_id = $1 AND m.id = $2"),
            vec![v(brand.as_str()), v(id.as_str())],
            member_row,
        )
        .await
    }

    async fn get_members(&mut self, brand: &BrandId, ids: &[MemberId]) -> Result<Vec<MemberRecord>> {
        self.select_in(
            &format!("SELECT {MEMBER_COLS} FROM members m WHERE m.brand_id = $1"),
            vec![v(brand.as_str())],
            "m.id",
            ids.iter().map(|m| m.as_str().to_owned()).collect(),
            "",
            member_row,
        )
        .await
    }

    async fn lock_member(&mut self, brand: &BrandId, id: &MemberId) -> Result<Option<MemberRecord>> {
        let lock = self.conn.dialect().for_update();
        self.one(
            &format!("SELECT {MEMBER_COLS} FROM members m WHERE m.brand_id = $1 AND m.id = $2{lock}"),
            vec![v(brand.as_str()), v(id.as_str())],
            member_row,
        )
        .await
    }

    async fn members_in_order(
        &mut self,
        brand: &BrandId,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<MemberRecord>> {
        self.in_id_order(("members", "m", MEMBER_COLS), brand, after, limit, member_row)
            .await
    }

    async fn purchases_in_order(
        &mut self,
        brand: &BrandId,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<PurchaseRecord>> {
        self.in_id_order(
            ("purchases", "p", PURCHASE_COLS),
            brand,
            after,
            limit,
            purchase_row,
        )
        .await
    }

    async fn entries_in_order(
        &mut self,
        brand: &BrandId,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<LedgerEntryRecord>> {
        self.in_id_order(
            ("ledger_entries", "e", ENTRY_COLS),
            brand,
            after,
            limit,
            entry_row,
        )
        .await
    }

    async fn list_members(
        &mut self,
        brand: &BrandId,
        f: &MemberFilter,
        page: &Page,
    ) -> Result<Vec<MemberRecord>> {
        let mut q = Query::new(&format!(
            "SELECT {MEMBER_COLS} FROM members m WHERE m.brand_id = "
        ));
        q.bind(brand.as_str());
        if let Some((kind, hash)) = &f.identity {
            q.push(" AND m.id IN (SELECT member_id FROM member_identities WHERE brand_id = ")
                .bind(brand.as_str())
                .push(" AND kind = ")
                .bind(kind.as_str())
                .push(" AND hash = ")
                .bind(hash.clone())
                .push(")");
        }
        if let Some(hash) = &f.name_prefix_hash {
            q.push(" AND m.id IN (SELECT member_id FROM member_name_prefixes WHERE brand_id = ")
                .bind(brand.as_str())
                .push(" AND hash = ")
                .bind(hash.clone())
                .push(")");
        }
        if let Some(tag) = &f.tag {
            q.push(" AND m.id IN (SELECT member_id FROM member_tags WHERE brand_id = ")
                .bind(brand.as_str())
                .push(" AND tag = ")
                .bind(tag.as_str())
                .push(")");
        }
        if let Some(into) = &f.merged_into {
            q.push(" AND m.merged_into = ").bind(into.as_str());
        }
        if let Some(status) = f.status {
            q.push(" AND m.status = ").bind(status.as_str());
        }
        paginate(&mut q, "m.id", page);
        self.query_all(q, member_row).await
    }

    async fn count_members(&mut self, brand: &BrandId) -> Result<i64> {
        self.one(
            "SELECT COUNT(*) AS n FROM members WHERE brand_id = $1 AND status = 'active'",
            vec![v(brand.as_str())],
            |r| r.i64("n"),
        )
        .await
        .map(Option::unwrap_or_default)
    }

    async fn segment_members(
        &mut self,
        brand: &BrandId,
        segment: &SegmentQuery,
        after: Option<&MemberId>,
        limit: u32,
    ) -> Result<Vec<MemberId>> {
        let d = self.conn.dialect();
        let mut q = Query::new(
            "SELECT m.id FROM members m LEFT JOIN point_accounts a \
             ON a.brand_id = m.brand_id AND a.member_id = m.id WHERE m.brand_id = ",
        );
        q.bind(brand.as_str())
            .push(" AND m.status = 'active' AND m.id > ")
            .bind(after.map_or("", MemberId::as_str));
        match &segment.tiers {
            Some(TierSet::AnyOf(codes)) => {
                q.push(" AND ").one_of(d, "a.tier_code", codes.clone());
            }
            Some(TierSet::NoneOf(codes)) => {
                q.push(" AND (a.tier_code IS NULL OR NOT (")
                    .one_of(d, "a.tier_code", codes.clone())
                    .push("))");
            }
            None => {}
        }
        if let Some(tags) = &segment.tags {
            q.push(" AND EXISTS (SELECT 1 FROM member_tags t WHERE t.brand_id = m.brand_id AND t.member_id = m.id AND ")
                .one_of(d, "t.tag", tags.clone())
                .push(")");
        }
        if let Some((plans, at)) = &segment.plans {
            q.push(
                " AND EXISTS (SELECT 1 FROM memberships s WHERE s.brand_id = m.brand_id AND s.member_id = m.id \
                 AND s.status = 'active' AND s.starts_at <= ",
            )
            .bind(*at)
            .push(" AND s.ends_at > ")
            .bind(*at)
            .push(" AND ")
            .one_of(d, "s.plan_code", plans.clone())
            .push(")");
        }
        if let Some(channels) = &segment.channels {
            q.push(" AND ").one_of(d, "m.channel", channels.clone());
        }
        q.push(" ORDER BY m.id LIMIT ")
            .bind(i64::from(limit.clamp(1, 100_000)));
        self.query_all(q, |r| r.parsed("id")).await
    }

    async fn members_born_in(
        &mut self,
        brand: &BrandId,
        month: u8,
        after: Option<&MemberId>,
        limit: u32,
    ) -> Result<Vec<MemberId>> {
        let mut q = Query::new("SELECT id FROM members WHERE brand_id = ");
        q.bind(brand.as_str()).push(" AND birth_month = ").bind(month);
        q.push(" AND status = 'active'");
        if let Some(after) = after {
            q.push(" AND id > ").bind(after.as_str());
        }
        q.push(" ORDER BY id LIMIT ")
            .bind(i64::from(limit.clamp(1, 10_000)));
        self.query_all(q, |r| r.parsed("id")).await
    }

    async fn insert_identity(&mut self, i: &IdentityRecord) -> Result<()> {
        // DO NOTHING rather than a unique violation: PostgreSQL aborts a transaction on any
        // error, and the caller wants to go on (look up the owner) in the same transaction.
        let inserted = self
            .exec(
                "INSERT INTO member_identities (brand_id, kind, hash, member_id, value_ciphertext) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                vec![
                    v(i.brand_id.as_str()),
                    v(&i.kind),
                    v(&i.hash),
                    v(i.member_id.as_str()),
                    v(&i.value_ciphertext),
                ],
            )
            .await?;
        if inserted == 0 {
            return Err(StoreError::Conflict(format!(
                "identity {} already claimed",
                i.kind
            )));
        }
        Ok(())
    }

    async fn find_identity(&mut self, brand: &BrandId, kind: &str, hash: &[u8]) -> Result<Option<MemberId>> {
        self.one(
            "SELECT member_id FROM member_identities WHERE brand_id = $1 AND kind = $2 AND hash = $3",
            vec![v(brand.as_str()), v(kind), v(hash)],
            |r| r.parsed("member_id"),
        )
        .await
    }

    async fn list_identities(&mut self, brand: &BrandId, member: &MemberId) -> Result<Vec<IdentityRecord>> {
        // Sorted here, not by ORDER BY: given `ORDER BY kind, hash`, SQLite walks the primary
        // key (brand, kind, hash) through every identity of the brand instead of using the
        // member index — an enrolment then cost time in proportion to the brand's size.
        let mut found = self
            .all(
                "SELECT brand_id, kind, hash, member_id, value_ciphertext FROM member_identities \
                 WHERE brand_id = $1 AND member_id = $2",
                vec![v(brand.as_str()), v(member.as_str())],
                identity_row,
            )
            .await?;
        found.sort_unstable_by(|a, b| (&a.kind, &a.hash).cmp(&(&b.kind, &b.hash)));
        Ok(found)
    }

    async fn delete_identity(&mut self, brand: &BrandId, kind: &str, hash: &[u8]) -> Result<bool> {
        Ok(self
            .exec(
                "DELETE FROM member_identities WHERE brand_id = $1 AND kind = $2 AND hash = $3",
                vec![v(brand.as_str()), v(kind), v(hash)],
            )
            .await?
            > 0)
    }

    async fn delete_identities_of(&mut self, brand: &BrandId, member: &MemberId) -> Result<u64> {
        self.exec(
            "DELETE FROM member_identities WHERE brand_id = $1 AND member_id = $2",
            vec![v(brand.as_str()), v(member.as_str())],
        )
        .await
    }

    async fn move_identities(&mut self, brand: &BrandId, from: &MemberId, to: &MemberId) -> Result<u64> {
        self.exec(
            "UPDATE member_identities SET member_id = $3 WHERE brand_id = $1 AND member_id = $2",
            vec![v(brand.as_str()), v(from.as_str()), v(to.as_str())],
        )
        .await
    }

    async fn replace_name_prefixes(
        &mut self,
        brand: &BrandId,
        member: &MemberId,
        hashes: &[Vec<u8>],
    ) -> Result<()> {
        self.exec(
            "DELETE FROM member_name_prefixes WHERE brand_id = $1 AND member_id = $2",
            vec![v(brand.as_str()), v(member.as_str())],
        )
        .await?;
        if !hashes.is_empty() {
            self.insert_rows(
                "member_name_prefixes (brand_id, member_id, hash)",
                hashes
                    .iter()
                    .map(|h| vec![v(brand.as_str()), v(member.as_str()), v(h)])
                    .collect(),
                " ON CONFLICT DO NOTHING",
            )
            .await?;
        }
        Ok(())
    }

    async fn add_tags(&mut self, brand: &BrandId, member: &MemberId, tags: &[String]) -> Result<()> {
        if !tags.is_empty() {
            self.insert_rows(
                "member_tags (brand_id, member_id, tag)",
                tags.iter()
                    .map(|t| vec![v(brand.as_str()), v(member.as_str()), v(t)])
                    .collect(),
                " ON CONFLICT DO NOTHING",
            )
            .await?;
        }
        Ok(())
    }

    async fn remove_tags(&mut self, brand: &BrandId, member: &MemberId, tags: &[String]) -> Result<()> {
        for t in tags {
            self.exec(
                "DELETE FROM member_tags WHERE brand_id = $1 AND member_id = $2 AND tag = $3",
                vec![v(brand.as_str()), v(member.as_str()), v(t)],
            )
            .await?;
        }
        Ok(())
    }

    async fn list_tags(&mut self, brand: &BrandId, member: &MemberId) -> Result<Vec<String>> {
        self.all(
            "SELECT tag FROM member_tags WHERE brand_id = $1 AND member_id = $2 ORDER BY tag",
            vec![v(brand.as_str()), v(member.as_str())],
            |r| r.text("tag"),
        )
        .await
    }

    async fn move_tags(&mut self, brand: &BrandId, from: &MemberId, to: &MemberId) -> Result<()> {
        self.exec(
            "INSERT INTO member_tags (brand_id, member_id, tag) SELECT brand_id, $3, tag FROM member_tags \
             WHERE brand_id = $1 AND member_id = $2 ON CONFLICT DO NOTHING",
            vec![v(brand.as_str()), v(from.as_str()), v(to.as_str())],
        )
        .await?;
        self.exec(
            "DELETE FROM member_tags WHERE brand_id = $1 AND member_id = $2",
            vec![v(brand.as_str()), v(from.as_str())],
        )
        .await
        .map(drop)
    }

    async fn insert_member_code(&mut self, c: &MemberCodeRecord) -> Result<()> {
        self.exec(
            "INSERT INTO member_codes (brand_id, nonce, code_hash, member_id, expires_at, used_at, used_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            vec![
                v(c.brand_id.as_str()),
                v(&c.nonce),
                v(&c.code_hash),
                v(c.member_id.as_str()),
                v(c.expires_at),
                v(c.used_at),
                v(c.used_by.clone()),
            ],
        )
        .await
        .map(drop)
    }

    async fn find_member_code_by_nonce(
        &mut self,
        brand: &BrandId,
        nonce: &str,
    ) -> Result<Option<MemberCodeRecord>> {
        self.one(
            &format!("SELECT {CODE_COLS} FROM member_codes WHERE brand_id = $1 AND nonce = $2"),
            vec![v(brand.as_str()), v(nonce)],
            code_row,
        )
        .await
    }

    async fn find_member_code_by_hash(
        &mut self,
        brand: &BrandId,
        code_hash: &[u8],
    ) -> Result<Option<MemberCodeRecord>> {
        self.one(
            &format!("SELECT {CODE_COLS} FROM member_codes WHERE brand_id = $1 AND code_hash = $2"),
            vec![v(brand.as_str()), v(code_hash)],
            code_row,
        )
        .await
    }

    async fn use_member_code(
        &mut self,
        brand: &BrandId,
        nonce: &str,
        at: OffsetDateTime,
        by: &str,
    ) -> Result<bool> {
        Ok(self
            .exec(
                "UPDATE member_codes SET used_at = $3, used_by = $4 WHERE brand_id = $1 AND nonce = $2 AND used_at IS NULL",
                vec![v(brand.as_str()), v(nonce), v(at), v(by)],
            )
            .await?
            == 1)
    }

    async fn purge_member_codes(&mut self, expired_before: OffsetDateTime) -> Result<u64> {
        self.exec(
            "DELETE FROM member_codes WHERE expires_at < $1",
            vec![v(expired_before)],
        )
        .await
    }

    async fn insert_audit(&mut self, a: &AuditRecord) -> Result<()> {
        self.exec(
            "INSERT INTO audit_events (id, brand_id, actor_kind, actor_id, action, target_kind, target_id, diff, request_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            vec![v(a.id.as_str()), v(a.brand_id.as_str()), v(&a.actor_kind), v(&a.actor_id), v(&a.action), v(&a.target_kind), v(&a.target_id), v(&a.diff), v(a.request_id.clone()), v(a.created_at)],
        )
        .await
        .map(drop)
    }

    async fn list_audit(
        &mut self,
        brand: &BrandId,
        f: &AuditFilter,
        page: &Page,
    ) -> Result<Vec<AuditRecord>> {
        let mut q = Query::new(&format!(
            "SELECT {AUDIT_COLS} FROM audit_events WHERE brand_id = "
        ));
        q.bind(brand.as_str());
        if let Some(t) = &f.target_id {
            q.push(" AND target_id = ").bind(t.as_str());
        }
        if let Some(a) = &f.actor_id {
            q.push(" AND actor_id = ").bind(a.as_str());
        }
        if let Some(a) = &f.action {
            q.push(" AND action = ").bind(a.as_str());
        }
        paginate(&mut q, "id", page);
        self.query_all(q, audit_row).await
    }

    async fn claim_idempotency_key(&mut self, c: &IdempotencyRecord) -> Result<Option<IdempotencyRecord>> {
        let inserted = self
            .exec(
                "INSERT INTO idempotency_keys (brand_id, scope, idem_key, request_hash, status, body, created_at) \
                 VALUES ($1, $2, $3, $4, NULL, NULL, $5) ON CONFLICT DO NOTHING",
                vec![v(c.brand_id.as_str()), v(&c.scope), v(&c.key), v(&c.request_hash), v(c.created_at)],
            )
            .await?;
        if inserted == 1 {
            return Ok(None);
        }
        self.one(
            &format!("SELECT {IDEMPOTENCY_COLS} FROM idempotency_keys WHERE brand_id = $1 AND scope = $2 AND idem_key = $3"),
            vec![v(c.brand_id.as_str()), v(&c.scope), v(&c.key)],
            idempotency_row,
        )
        .await?
        .map(Some)
        .ok_or_else(|| StoreError::Database("idempotency key vanished while claimed".into()))
    }

    async fn complete_idempotency_key(
        &mut self,
        brand: &BrandId,
        scope: &str,
        key: &str,
        status: u16,
        body: &[u8],
    ) -> Result<()> {
        self.exec(
            "UPDATE idempotency_keys SET status = $4, body = $5 WHERE brand_id = $1 AND scope = $2 AND idem_key = $3",
            vec![v(brand.as_str()), v(scope), v(key), v(i64::from(status)), v(body)],
        )
        .await
        .map(drop)
    }

    async fn release_idempotency_key(&mut self, brand: &BrandId, scope: &str, key: &str) -> Result<()> {
        self.exec(
            "DELETE FROM idempotency_keys WHERE brand_id = $1 AND scope = $2 AND idem_key = $3 AND status IS NULL",
            vec![v(brand.as_str()), v(scope), v(key)],
        )
        .await
        .map(drop)
    }

    async fn purge_idempotency_keys(&mut self, created_before: OffsetDateTime) -> Result<u64> {
        self.exec(
            "DELETE FROM idempotency_keys WHERE created_at < $1",
            vec![v(created_before)],
        )
        .await
    }
    async fn insert_programme(&mut self, p: &ProgrammeRecord) -> Result<()> {
        let inserted = self
            .exec(
                "INSERT INTO programmes (brand_id, version, document, created_by, created_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                vec![
                    v(p.brand_id.as_str()),
                    v(p.version),
                    v(&p.document),
                    v(&p.created_by),
                    v(p.created_at),
                ],
            )
            .await?;
        if inserted == 0 {
            return Err(StoreError::Conflict(format!(
                "programme version {} exists",
                p.version
            )));
        }
        Ok(())
    }

    async fn latest_programme_version(&mut self, brand: &BrandId) -> Result<Option<i64>> {
        self.one(
            "SELECT MAX(version) AS version FROM programmes WHERE brand_id = $1",
            vec![v(brand.as_str())],
            |r| r.opt_i64("version"),
        )
        .await
        .map(Option::flatten)
    }

    async fn get_programme(&mut self, brand: &BrandId, version: i64) -> Result<Option<ProgrammeRecord>> {
        self.one(
            &format!("SELECT {PROGRAMME_COLS} FROM programmes WHERE brand_id = $1 AND version = $2"),
            vec![v(brand.as_str()), v(version)],
            programme_row,
        )
        .await
    }

    async fn list_programmes(&mut self, brand: &BrandId, limit: u32) -> Result<Vec<ProgrammeRecord>> {
        self.all(
            &format!(
                "SELECT {PROGRAMME_COLS} FROM programmes WHERE brand_id = $1 ORDER BY version DESC LIMIT $2"
            ),
            vec![v(brand.as_str()), v(i64::from(limit.clamp(1, 1000)))],
            programme_row,
        )
        .await
    }

    async fn ensure_accounts(&mut self, accounts: &[AccountRecord]) -> Result<()> {
        self.insert_parts(account_inserts(accounts, SKIP_EXISTING))
            .await
            .map(drop)
    }

    async fn get_account(&mut self, brand: &BrandId, member: &MemberId) -> Result<Option<AccountRecord>> {
        self.one(
            &format!("SELECT {ACCOUNT_COLS} FROM point_accounts WHERE brand_id = $1 AND member_id = $2"),
            vec![v(brand.as_str()), v(member.as_str())],
            account_row,
        )
        .await
    }

    async fn lock_account(&mut self, brand: &BrandId, member: &MemberId) -> Result<Option<AccountRecord>> {
        let lock = self.conn.dialect().for_update();
        self.one(
            &format!(
                "SELECT {ACCOUNT_COLS} FROM point_accounts WHERE brand_id = $1 AND member_id = $2{lock}"
            ),
            vec![v(brand.as_str()), v(member.as_str())],
            account_row,
        )
        .await
    }

    async fn lock_accounts(&mut self, brand: &BrandId, members: &[MemberId]) -> Result<Vec<AccountRecord>> {
        let lock = self.conn.dialect().for_update();
        self.select_in(
            &format!("SELECT {ACCOUNT_COLS} FROM point_accounts WHERE brand_id = $1"),
            vec![v(brand.as_str())],
            "member_id",
            members.iter().map(|m| m.as_str().to_owned()).collect(),
            &format!(" ORDER BY member_id{lock}"),
            account_row,
        )
        .await
    }

    async fn update_account(&mut self, a: &AccountRecord) -> Result<()> {
        let changed = self
            .exec(
                "UPDATE point_accounts SET available = $3, pending = $4, debt = $5, last_seq = $6, last_hash = $7, \
                 tier_code = $8, tier_since = $9, tier_review_at = $10, tier_grace_until = $11, updated_at = $12 \
                 WHERE brand_id = $1 AND member_id = $2",
                account_values(a),
            )
            .await?;
        if changed == 0 {
            return Err(StoreError::Database("point account vanished".into()));
        }
        Ok(())
    }

    async fn list_accounts(
        &mut self,
        brand: Option<&BrandId>,
        after: Option<&(BrandId, MemberId)>,
        limit: u32,
    ) -> Result<Vec<AccountRecord>> {
        let mut q = Query::new(&format!("SELECT {ACCOUNT_COLS} FROM point_accounts WHERE 1 = 1"));
        by_member_after(&mut q, brand, after, limit);
        self.query_all(q, account_row).await
    }

    async fn accounts_due_for_review(
        &mut self,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<AccountRecord>> {
        self.all(
            &format!(
                "SELECT {ACCOUNT_COLS} FROM point_accounts WHERE tier_review_at <= $1 \
                 ORDER BY tier_review_at, brand_id, member_id LIMIT $2"
            ),
            vec![v(now), v(i64::from(limit.clamp(1, 10_000)))],
            account_row,
        )
        .await
    }

    async fn point_totals(&mut self, brand: &BrandId) -> Result<PointTotals> {
        self.one(
            "SELECT COUNT(*) AS members, CAST(COALESCE(SUM(available), 0) AS BIGINT) AS available, \
             CAST(COALESCE(SUM(pending), 0) AS BIGINT) AS pending, CAST(COALESCE(SUM(debt), 0) AS BIGINT) AS debt \
             FROM point_accounts WHERE brand_id = $1",
            vec![v(brand.as_str())],
            |r| {
                Ok(PointTotals {
                    members: r.i64("members")?,
                    available: r.i64("available")?,
                    pending: r.i64("pending")?,
                    debt: r.i64("debt")?,
                })
            },
        )
        .await
        .map(Option::unwrap_or_default)
    }

    async fn insert_lots(&mut self, lots: &[LotRecord]) -> Result<()> {
        self.insert_parts(lot_inserts(lots, "")).await.map(drop)
    }

    async fn update_lots(&mut self, lots: &[LotRecord]) -> Result<()> {
        self.insert_parts(lot_inserts(lots, LOT_UPDATE)).await.map(drop)
    }

    async fn get_lots(&mut self, brand: &BrandId, ids: &[String]) -> Result<Vec<LotRecord>> {
        self.select_in(
            &format!("SELECT {LOT_COLS} FROM point_lots WHERE brand_id = $1"),
            vec![v(brand.as_str())],
            "id",
            ids.to_vec(),
            " ORDER BY earned_at, id",
            lot_row,
        )
        .await
    }

    async fn open_lots(&mut self, brand: &BrandId, member: &MemberId) -> Result<Vec<LotRecord>> {
        self.all(
            &format!(
                "SELECT {LOT_COLS} FROM point_lots WHERE brand_id = $1 AND member_id = $2 \
                 AND status IN ('pending', 'active') ORDER BY earned_at, id"
            ),
            vec![v(brand.as_str()), v(member.as_str())],
            lot_row,
        )
        .await
    }

    async fn members_with_maturing_lots(
        &mut self,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<(BrandId, MemberId)>> {
        self.all(
            // No DISTINCT or ORDER BY: either would read every due lot before the first row.
            "SELECT brand_id, member_id FROM point_lots WHERE status = 'pending' AND matures_at <= $1 LIMIT $2",
            vec![v(now), v(i64::from(limit.clamp(1, 100_000)))],
            member_pair,
        )
        .await
    }

    async fn members_with_expiring_lots(
        &mut self,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<(BrandId, MemberId)>> {
        self.all(
            "SELECT brand_id, member_id FROM point_lots WHERE status IN ('pending', 'active') \
             AND expires_at <= $1 LIMIT $2",
            vec![v(now), v(i64::from(limit.clamp(1, 100_000)))],
            member_pair,
        )
        .await
    }

    async fn lots_to_remind(
        &mut self,
        now: OffsetDateTime,
        until: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<LotRecord>> {
        self.all(
            &format!(
                "SELECT {LOT_COLS} FROM point_lots WHERE status = 'active' AND expires_at > $1 AND expires_at <= $2 \
                 AND expiry_notified = $3 AND remaining > 0 ORDER BY expires_at, id LIMIT $4"
            ),
            vec![v(now), v(until), v(false), v(i64::from(limit.clamp(1, 100_000)))],
            lot_row,
        )
        .await
    }

    async fn list_entries(
        &mut self,
        brand: &BrandId,
        member: &MemberId,
        page: &Page,
    ) -> Result<Vec<LedgerEntryRecord>> {
        let mut q = Query::new(&format!(
            "SELECT {ENTRY_COLS} FROM ledger_entries WHERE brand_id = "
        ));
        q.bind(brand.as_str())
            .push(" AND member_id = ")
            .bind(member.as_str());
        if let Some(after) = &page.starting_after {
            q.push(" AND seq < (SELECT seq FROM ledger_entries WHERE id = ")
                .bind(after.as_str());
            q.push(")");
        }
        q.push(" ORDER BY seq DESC LIMIT ")
            .bind(i64::from(page.limit.clamp(1, 1000)));
        self.query_all(q, entry_row).await
    }

    async fn chain(&mut self, brand: &BrandId, member: &MemberId) -> Result<Vec<LedgerEntryRecord>> {
        self.all(
            &format!(
                "SELECT {ENTRY_COLS} FROM ledger_entries WHERE brand_id = $1 AND member_id = $2 ORDER BY seq"
            ),
            vec![v(brand.as_str()), v(member.as_str())],
            entry_row,
        )
        .await
    }

    async fn write_postings(&mut self, writes: &crate::PostingWrites<'_>) -> Result<u64> {
        if self.conn.dialect() == Dialect::Postgres {
            if let Some(q) = postings_statement(posting_inserts(writes)) {
                let rows = self.rows(&q.sql, q.args).await?;
                return rows.first().map_or(Ok(0), |r| r.i64("written")).map(|n| n as u64);
            }
        }
        let mut written = 0;
        for (i, parts) in posting_inserts(writes).into_iter().enumerate() {
            if parts.1.is_empty() {
                continue;
            }
            let n = self.insert_parts(parts).await?;
            if i == 0 {
                written = n;
            }
        }
        Ok(written)
    }

    fn writes_ahead(&self) -> bool {
        self.conn.writes_ahead()
    }

    async fn write_postings_ahead(&mut self, writes: &crate::PostingWrites<'_>) -> Result<()> {
        if !self.conn.writes_ahead() {
            let written = self.write_postings(writes).await?;
            return expect_changed(written, Some(writes.purchases.len() as u64));
        }
        for (i, (into, rows, tail)) in posting_inserts(writes).into_iter().enumerate() {
            if rows.is_empty() {
                continue;
            }
            let expect = (i == 0).then_some(rows.len() as u64);
            let sql = single_row_insert(&into, &rows, tail);
            self.conn.execute_each_ahead(&sql, rows, expect).await?;
        }
        Ok(())
    }

    async fn get_purchases(&mut self, brand: &BrandId, order_ids: &[String]) -> Result<Vec<PurchaseRecord>> {
        self.select_in(
            &format!("SELECT {PURCHASE_COLS} FROM purchases WHERE brand_id = $1"),
            vec![v(brand.as_str())],
            "order_id",
            order_ids.to_vec(),
            "",
            purchase_row,
        )
        .await
    }

    async fn get_purchase(&mut self, brand: &BrandId, order_id: &str) -> Result<Option<PurchaseRecord>> {
        self.one(
            &format!("SELECT {PURCHASE_COLS} FROM purchases WHERE brand_id = $1 AND order_id = $2"),
            vec![v(brand.as_str()), v(order_id)],
            purchase_row,
        )
        .await
    }

    async fn update_purchase_refund(&mut self, p: &PurchaseRecord) -> Result<()> {
        self.exec(
            "UPDATE purchases SET points_reversed = $3, refunded_amount = $4, status = $5, lines = $6 \
             WHERE brand_id = $1 AND order_id = $2",
            vec![
                v(p.brand_id.as_str()),
                v(&p.order_id),
                v(p.points_reversed),
                v(p.refunded_amount),
                v(&p.status),
                v(&p.lines),
            ],
        )
        .await
        .map(drop)
    }

    async fn list_purchases(
        &mut self,
        brand: &BrandId,
        member: &MemberId,
        page: &Page,
    ) -> Result<Vec<PurchaseRecord>> {
        let mut q = Query::new(&format!(
            "SELECT {PURCHASE_COLS} FROM purchases WHERE brand_id = "
        ));
        q.bind(brand.as_str())
            .push(" AND member_id = ")
            .bind(member.as_str());
        paginate(&mut q, "id", page);
        self.query_all(q, purchase_row).await
    }

    async fn purchase_facts(
        &mut self,
        brand: &BrandId,
        filter: &PurchaseFilter,
        after: Option<&MemberId>,
        limit: u32,
    ) -> Result<Vec<PurchaseFact>> {
        // Unfiltered, served from the covering index purchases_member_totals, in its order.
        let mut q = Query::new(
            "SELECT member_id, occurred_at, paid_amount - refunded_amount AS net, status FROM purchases \
             WHERE brand_id = ",
        );
        q.bind(brand.as_str())
            .push(" AND member_id > ")
            .bind(after.map_or("", MemberId::as_str));
        if let Some(store) = &filter.store_id {
            q.push(" AND store_id = ").bind(store.as_str());
        }
        if let Some(channel) = &filter.channel {
            q.push(" AND channel = ").bind(channel.as_str());
        }
        q.push(" ORDER BY member_id, occurred_at LIMIT ")
            .bind(i64::from(limit.clamp(1, 1_000_000)));
        self.query_all(q, |r| {
            Ok(PurchaseFact {
                member_id: r.parsed("member_id")?,
                occurred_at: r.time("occurred_at")?,
                net_amount: r.i64("net")?,
                refunded: r.text("status")? == "refunded",
            })
        })
        .await
    }

    async fn purchase_baskets(
        &mut self,
        brand: &BrandId,
        after: Option<&MemberId>,
        limit: u32,
    ) -> Result<Vec<PurchaseBasket>> {
        self.all(
            "SELECT member_id, occurred_at, lines, status FROM purchases \
             WHERE brand_id = $1 AND member_id > $2 ORDER BY member_id, occurred_at LIMIT $3",
            vec![
                v(brand.as_str()),
                v(after.map_or("", MemberId::as_str)),
                v(i64::from(limit.clamp(1, 1_000_000))),
            ],
            |r| {
                Ok(PurchaseBasket {
                    member_id: r.parsed("member_id")?,
                    occurred_at: r.time("occurred_at")?,
                    lines: r.text("lines")?,
                    refunded: r.text("status")? == "refunded",
                })
            },
        )
        .await
    }

    async fn member_enrolments(
        &mut self,
        brand: &BrandId,
        after: Option<&MemberId>,
        limit: u32,
    ) -> Result<Vec<MemberEnrolment>> {
        self.all(
            "SELECT id, enrolled_at, channel, store_id FROM members \
             WHERE brand_id = $1 AND id > $2 AND status <> 'merged' ORDER BY id LIMIT $3",
            vec![
                v(brand.as_str()),
                v(after.map_or("", MemberId::as_str)),
                v(i64::from(limit.clamp(1, 1_000_000))),
            ],
            |r| {
                Ok(MemberEnrolment {
                    member_id: r.parsed("id")?,
                    enrolled_at: r.time("enrolled_at")?,
                    channel: r.text("channel")?,
                    store_id: r.opt_parsed("store_id")?,
                })
            },
        )
        .await
    }

    async fn ledger_flows(
        &mut self,
        brand: &BrandId,
        slot_seconds: u32,
        since: Option<OffsetDateTime>,
    ) -> Result<Vec<LedgerFlow>> {
        let slot_seconds = slot_seconds.max(1);
        let slot = self.conn.dialect().epoch_slot("created_at", slot_seconds);
        let mut params = vec![v(brand.as_str())];
        let from = match since {
            Some(t) => {
                params.push(v(t));
                " AND created_at >= $2"
            }
            None => "",
        };
        let sql = format!(
            "SELECT kind, {slot} AS slot, CAST(SUM(available_delta + pending_delta) AS BIGINT) AS points, \
             CAST(SUM(debt_delta) AS BIGINT) AS debt, COUNT(*) AS entries \
             FROM ledger_entries WHERE brand_id = $1{from} GROUP BY kind, {slot} ORDER BY 2, 1"
        );
        self.all(&sql, params, |r| {
            let start = r.i64("slot")? * i64::from(slot_seconds);
            Ok(LedgerFlow {
                kind: r.text("kind")?,
                slot: OffsetDateTime::from_unix_timestamp(start)
                    .map_err(|_| StoreError::Corrupt(format!("slot {start} is out of range")))?,
                points: r.i64("points")?,
                debt: r.i64("debt")?,
                entries: r.i64("entries")?,
            })
        })
        .await
    }

    async fn points_outstanding(&mut self, brand: &BrandId) -> Result<i64> {
        let rows = self
            .rows(
                "SELECT CAST(COALESCE(SUM(available + pending), 0) AS BIGINT) AS n FROM point_accounts WHERE brand_id = $1",
                vec![v(brand.as_str())],
            )
            .await?;
        rows.first().map_or(Ok(0), |r| r.i64("n"))
    }

    async fn tier_counts(&mut self, brand: &BrandId) -> Result<Vec<(Option<String>, i64)>> {
        self.all(
            "SELECT a.tier_code, COUNT(*) AS n FROM point_accounts a \
             JOIN members m ON m.id = a.member_id \
             WHERE a.brand_id = $1 AND m.status <> 'merged' GROUP BY a.tier_code ORDER BY 1",
            vec![v(brand.as_str())],
            |r| Ok((r.opt_text("tier_code")?, r.i64("n")?)),
        )
        .await
    }

    async fn purchase_totals(
        &mut self,
        brand: &BrandId,
        member: &MemberId,
        since: OffsetDateTime,
    ) -> Result<PurchaseTotals> {
        self.one(
            "SELECT CAST(COALESCE(SUM(points - points_reversed), 0) AS BIGINT) AS points, \
             CAST(COALESCE(SUM(paid_amount - refunded_amount), 0) AS BIGINT) AS spend, \
             COUNT(CASE WHEN status <> 'refunded' THEN 1 END) AS visits \
             FROM purchases WHERE brand_id = $1 AND member_id = $2 AND occurred_at >= $3",
            vec![v(brand.as_str()), v(member.as_str()), v(since)],
            |r| {
                Ok(PurchaseTotals {
                    points: r.i64("points")?,
                    spend: r.i64("spend")?,
                    visits: r.i64("visits")?,
                })
            },
        )
        .await
        .map(Option::unwrap_or_default)
    }

    async fn purchase_totals_since(
        &mut self,
        brand: &BrandId,
        members: &[MemberId],
        sinces: &[(OffsetDateTime, Sums)],
    ) -> Result<Vec<(MemberId, Vec<PurchaseTotals>)>> {
        let Some(earliest) = sinces.iter().map(|(at, _)| *at).min() else {
            return Ok(Vec::new());
        };
        if sinces.len() > SUMS_PER_QUERY {
            let instants: Vec<OffsetDateTime> = sinces.iter().map(|(at, _)| *at).collect();
            return self
                .purchase_totals_from_rows(brand, members, &instants, earliest)
                .await;
        }
        // Only the sums asked for: each is an aggregate over every row since the earliest
        // instant, and a batch of sales asks for 5 instants but 7 of their 15 sums.
        let mut q = Query::new("SELECT member_id");
        for (i, (since, wanted)) in sinces.iter().enumerate() {
            if wanted.points {
                q.push(", CAST(COALESCE(SUM(CASE WHEN occurred_at >= ")
                    .bind(*since)
                    .push(&format!(
                        " THEN points - points_reversed END), 0) AS BIGINT) AS points{i}"
                    ));
            }
            if wanted.spend {
                q.push(", CAST(COALESCE(SUM(CASE WHEN occurred_at >= ")
                    .bind(*since)
                    .push(&format!(
                        " THEN paid_amount - refunded_amount END), 0) AS BIGINT) AS spend{i}"
                    ));
            }
            if wanted.visits {
                q.push(", COUNT(CASE WHEN occurred_at >= ")
                    .bind(*since)
                    .push(&format!(" AND status <> 'refunded' THEN 1 END) AS visits{i}"));
            }
        }
        q.push(" FROM purchases WHERE brand_id = ")
            .bind(brand.as_str())
            .push(" AND occurred_at >= ")
            .bind(earliest);
        q.push(" AND ").one_of(
            self.conn.dialect(),
            "member_id",
            members.iter().map(|m| m.as_str().to_owned()).collect(),
        );
        q.push(" GROUP BY member_id");
        // Column names made once, not per row.
        let names: Vec<[String; 3]> = (0..sinces.len())
            .map(|i| [format!("points{i}"), format!("spend{i}"), format!("visits{i}")])
            .collect();
        let sum = |r: &Row, wanted: bool, name: &str| if wanted { r.i64(name) } else { Ok(0) };
        let found = self
            .query_all(q, |r| {
                let totals = sinces
                    .iter()
                    .zip(&names)
                    .map(|((_, wanted), [points, spend, visits])| {
                        Ok(PurchaseTotals {
                            points: sum(r, wanted.points, points)?,
                            spend: sum(r, wanted.spend, spend)?,
                            visits: sum(r, wanted.visits, visits)?,
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok((r.parsed("member_id")?, totals))
            })
            .await?;
        Ok(found)
    }

    async fn move_purchases(&mut self, brand: &BrandId, from: &MemberId, to: &MemberId) -> Result<u64> {
        self.exec(
            "UPDATE purchases SET member_id = $3 WHERE brand_id = $1 AND member_id = $2",
            vec![v(brand.as_str()), v(from.as_str()), v(to.as_str())],
        )
        .await
    }

    async fn insert_refund(&mut self, r: &RefundRecord) -> Result<bool> {
        let inserted = self
            .exec(
                &format!("INSERT INTO refunds ({REFUND_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING"),
                vec![
                    v(r.brand_id.as_str()),
                    v(&r.refund_id),
                    v(&r.order_id),
                    v(r.member_id.as_str()),
                    v(r.amount),
                    v(r.points_reversed),
                    v(&r.detail),
                    v(r.created_at),
                ],
            )
            .await?;
        Ok(inserted == 1)
    }

    async fn get_refund(&mut self, brand: &BrandId, refund_id: &str) -> Result<Option<RefundRecord>> {
        self.one(
            &format!("SELECT {REFUND_COLS} FROM refunds WHERE brand_id = $1 AND refund_id = $2"),
            vec![v(brand.as_str()), v(refund_id)],
            refund_row,
        )
        .await
    }

    async fn insert_operation(&mut self, o: &OperationRecord) -> Result<bool> {
        let inserted = self
            .exec(
                &format!("INSERT INTO point_operations ({OPERATION_COLS}) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING"),
                vec![
                    v(o.brand_id.as_str()),
                    v(&o.kind),
                    v(&o.reference),
                    v(o.member_id.as_str()),
                    v(&o.result),
                    v(o.created_at),
                ],
            )
            .await?;
        Ok(inserted == 1)
    }

    async fn get_operation(
        &mut self,
        brand: &BrandId,
        kind: &str,
        reference: &str,
    ) -> Result<Option<OperationRecord>> {
        self.one(
            &format!("SELECT {OPERATION_COLS} FROM point_operations WHERE brand_id = $1 AND kind = $2 AND reference = $3"),
            vec![v(brand.as_str()), v(kind), v(reference)],
            operation_row,
        )
        .await
    }

    async fn count_operations(
        &mut self,
        brand: &BrandId,
        member: &MemberId,
        kind: &str,
        since: Option<OffsetDateTime>,
    ) -> Result<i64> {
        let mut q = Query::new("SELECT COUNT(*) AS n FROM point_operations WHERE brand_id = ");
        q.bind(brand.as_str())
            .push(" AND member_id = ")
            .bind(member.as_str());
        q.push(" AND kind = ").bind(kind);
        if let Some(since) = since {
            q.push(" AND created_at >= ").bind(since);
        }
        self.one(&q.sql, q.args, |r| r.i64("n"))
            .await
            .map(Option::unwrap_or_default)
    }

    async fn insert_tier_change(&mut self, c: &TierChangeRecord) -> Result<()> {
        self.exec(
            &format!("INSERT INTO tier_changes ({TIER_CHANGE_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"),
            tier_change_values(c),
        )
        .await
        .map(drop)
    }

    async fn list_tier_changes(
        &mut self,
        brand: &BrandId,
        member: &MemberId,
    ) -> Result<Vec<TierChangeRecord>> {
        self.all(
            &format!(
                "SELECT {TIER_CHANGE_COLS} FROM tier_changes WHERE brand_id = $1 AND member_id = $2 \
                 ORDER BY created_at DESC, id DESC LIMIT 200"
            ),
            vec![v(brand.as_str()), v(member.as_str())],
            tier_change_row,
        )
        .await
    }

    async fn insert_event(&mut self, e: &OutboxRecord) -> Result<bool> {
        Ok(self.insert_events(std::slice::from_ref(e)).await? == 1)
    }

    async fn insert_events(&mut self, events: &[OutboxRecord]) -> Result<u64> {
        self.insert_parts(event_inserts(events, SKIP_EXISTING)).await
    }

    async fn list_events(
        &mut self,
        brand: &BrandId,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<OutboxRecord>> {
        let mut q = Query::new(&format!(
            "SELECT {EVENT_COLS} FROM outbox_events WHERE brand_id = "
        ));
        q.bind(brand.as_str());
        if let Some(after) = after {
            q.push(" AND id > ").bind(after);
        }
        q.push(" ORDER BY id LIMIT ")
            .bind(i64::from(limit.clamp(1, 1000)));
        self.query_all(q, event_row).await
    }

    async fn ensure_job(&mut self, name: &str, due_at: OffsetDateTime) -> Result<()> {
        self.exec(
            "INSERT INTO jobs (name, due_at, runs) VALUES ($1, $2, 0) ON CONFLICT DO NOTHING",
            vec![v(name), v(due_at)],
        )
        .await
        .map(drop)
    }

    async fn claim_job(
        &mut self,
        name: &str,
        owner: &str,
        now: OffsetDateTime,
        due_by: OffsetDateTime,
        lease_until: OffsetDateTime,
    ) -> Result<bool> {
        let skip = self.conn.dialect().for_update_skip_locked();
        let free = self
            .rows(
                &format!(
                    "SELECT name FROM jobs WHERE name = $1 AND due_at <= $3 \
                     AND (lease_until IS NULL OR lease_until < $2){skip}"
                ),
                vec![v(name), v(now), v(due_by)],
            )
            .await?;
        if free.is_empty() {
            return Ok(false);
        }
        let changed = self
            .exec(
                "UPDATE jobs SET lease_owner = $2, lease_until = $3, last_started_at = $4, runs = runs + 1 \
                 WHERE name = $1 AND (lease_until IS NULL OR lease_until < $4)",
                vec![v(name), v(owner), v(lease_until), v(now)],
            )
            .await?;
        Ok(changed == 1)
    }

    async fn finish_job(
        &mut self,
        name: &str,
        owner: &str,
        finished_at: OffsetDateTime,
        next_due: OffsetDateTime,
        error: Option<&str>,
    ) -> Result<()> {
        self.exec(
            "UPDATE jobs SET lease_owner = NULL, lease_until = NULL, last_finished_at = $3, due_at = $4, last_error = $5 \
             WHERE name = $1 AND lease_owner = $2",
            vec![v(name), v(owner), v(finished_at), v(next_due), v(error)],
        )
        .await
        .map(drop)
    }

    async fn list_jobs(&mut self) -> Result<Vec<JobRecord>> {
        self.all(
            &format!("SELECT {JOB_COLS} FROM jobs ORDER BY name"),
            vec![],
            job_row,
        )
        .await
    }
}

fn member_values(m: &MemberRecord) -> Vec<Value> {
    vec![
        v(m.id.as_str()),
        v(m.brand_id.as_str()),
        v(m.status.as_str()),
        v(m.merged_into.as_ref().map(|i| i.as_str())),
        v(m.pii_ciphertext.clone()),
        v(m.birth_month),
        v(m.gender.clone()),
        v(m.city.clone()),
        v(m.household_size),
        v(&m.channel),
        v(m.store_id.as_ref().map(|s| s.as_str())),
        v(&m.consents),
        v(&m.attributes),
        v(m.enrolled_at),
        v(m.updated_at),
        v(m.erased_at),
        v(m.version),
    ]
}
