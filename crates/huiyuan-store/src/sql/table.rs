//! A table's one declaration: its name, its columns, and how a record becomes values and a row
//! becomes a record. The generic insert and selects below are built on it, so a new table is
//! one [`table!`] line per column (in `rows.rs`) plus the queries that are really its own
//! (updates, claims, aggregates); hot paths keep their hand-written statements.

use super::{Query, Row, SqlTx, Value};
use crate::Result;

pub(super) trait Table: Sized {
    /// The table's name.
    const NAME: &'static str;
    /// Its columns, in the order [`Table::encode`] gives their values.
    const COLUMNS: &'static [&'static str];
    /// The record's values, one per column of [`Table::COLUMNS`].
    fn encode(&self) -> Vec<Value>;
    /// The record a row selected with [`Table::COLUMNS`] holds.
    fn decode(row: &Row) -> Result<Self>;

    /// `SELECT <columns> FROM <table>`, to which a caller appends its conditions.
    fn select() -> String {
        format!("SELECT {} FROM {}", Self::COLUMNS.join(", "), Self::NAME)
    }

    /// `INSERT INTO <table> (<columns>) VALUES ($1, …)`.
    fn insert() -> String {
        let placeholders: Vec<String> = (1..=Self::COLUMNS.len()).map(|i| format!("${i}")).collect();
        format!(
            "INSERT INTO {} ({}) VALUES ({})",
            Self::NAME,
            Self::COLUMNS.join(", "),
            placeholders.join(", ")
        )
    }
}

/// Declares a record's table: `table! { Record in "table" { column: kind, … } }`, each column a
/// field of the record of the same name, its kind one of `id` (an ID type), `text`,
/// `opt_text`, `bool`, `i64`, `opt_i64`, `time`, `opt_time`, `bytes`, `role`. The kind says how
/// the value is bound and read back, so that a column is named once.
macro_rules! table {
    ($record:ident in $name:literal { $($column:ident: $kind:ident),* $(,)? }) => {
        impl $crate::sql::table::Table for $record {
            const NAME: &'static str = $name;
            const COLUMNS: &'static [&'static str] = &[$(stringify!($column)),*];
            fn encode(&self) -> Vec<$crate::sql::Value> {
                vec![$(table!(@encode $kind, self.$column)),*]
            }
            fn decode(row: &$crate::sql::Row) -> $crate::Result<Self> {
                Ok($record { $($column: table!(@decode $kind, row, stringify!($column))),* })
            }
        }
    };
    (@encode id, $e:expr) => { $crate::sql::Value::from($e.as_str()) };
    (@encode role, $e:expr) => { $crate::sql::Value::from($e.as_str()) };
    (@encode text, $e:expr) => { $crate::sql::Value::from(&$e) };
    (@encode bytes, $e:expr) => { $crate::sql::Value::from(&$e) };
    (@encode opt_text, $e:expr) => { $crate::sql::Value::from($e.clone()) };
    (@encode $other:ident, $e:expr) => { $crate::sql::Value::from($e) };
    (@decode id, $r:ident, $c:expr) => { $r.parsed($c)? };
    (@decode text, $r:ident, $c:expr) => { $r.text($c)? };
    (@decode opt_text, $r:ident, $c:expr) => { $r.opt_text($c)? };
    (@decode bool, $r:ident, $c:expr) => { $r.bool($c)? };
    (@decode i64, $r:ident, $c:expr) => { $r.i64($c)? };
    (@decode opt_i64, $r:ident, $c:expr) => { $r.opt_i64($c)? };
    (@decode time, $r:ident, $c:expr) => { $r.time($c)? };
    (@decode opt_time, $r:ident, $c:expr) => { $r.opt_time($c)? };
    (@decode bytes, $r:ident, $c:expr) => { $r.bytes($c)? };
    (@decode role, $r:ident, $c:expr) => { $r.role($c)? };
}
pub(super) use table;

impl SqlTx {
    /// Inserts a record, every column.
    pub(super) async fn insert_record<T: Table>(&mut self, record: &T) -> Result<()> {
        self.exec(&T::insert(), record.encode()).await.map(drop)
    }

    /// The first record `<rest>` selects (`rest` follows `FROM <table>`: `WHERE id = $1`).
    pub(super) async fn select_one<T: Table>(&mut self, rest: &str, args: Vec<Value>) -> Result<Option<T>> {
        self.one(&format!("{} {rest}", T::select()), args, T::decode)
            .await
    }

    /// Every record `<rest>` selects.
    pub(super) async fn select_all<T: Table>(&mut self, rest: &str, args: Vec<Value>) -> Result<Vec<T>> {
        self.all(&format!("{} {rest}", T::select()), args, T::decode)
            .await
    }

    /// The records a query built on [`Table::select`] returns (for conditions bound one by one,
    /// paging).
    pub(super) async fn select_query<T: Table>(&mut self, q: Query) -> Result<Vec<T>> {
        self.query_all(q, T::decode).await
    }
}
