//! The shared storage conformance suite, on SQLite.

use std::sync::Arc;

use huiyuan_store::Storage;
use huiyuan_store_sqlite::SqliteStorage;

async fn open() -> Arc<dyn Storage> {
    let dir = std::env::temp_dir().join(format!(
        "huiyuan-conf-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!(
        "{}.db",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    Arc::new(SqliteStorage::open(&file).await.unwrap())
}

huiyuan_store::conformance_tests!(open);
