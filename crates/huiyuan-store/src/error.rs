use thiserror::Error;

/// What can go wrong below the use cases. Backends map their driver errors into these once.
#[derive(Debug, Error)]
pub enum StoreError {
    /// A uniqueness rule was broken: another row already holds this value.
    #[error("conflict: {0}")]
    Conflict(String),
    /// An optimistic version check failed: the row changed since it was read.
    #[error("the record was changed by someone else; retry")]
    Stale,
    /// Stored data that this binary cannot read (a bug or a manual edit).
    #[error("corrupt data in {0}")]
    Corrupt(String),
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Database(String),
}
