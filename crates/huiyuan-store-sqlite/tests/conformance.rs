//! The shared storage conformance suite, on SQLite.

use std::sync::Arc;

use huiyuan_store::Storage;
use huiyuan_store_sqlite::SqliteStorage;

async fn open() -> Arc<dyn Storage> {
    let dir = huiyuan_store_sqlite::testing::scratch_dir(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")));
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

/// The audit log refuses UPDATE and DELETE even from a connection that bypasses Huiyuan.
#[tokio::test]
async fn audit_log_is_append_only_in_the_database() {
    use sqlx::Connection;
    let dir = huiyuan_store_sqlite::testing::scratch_dir(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")));
    let file = dir.join("audit.db");
    let _ = std::fs::remove_file(&file);
    let storage = SqliteStorage::open(&file).await.unwrap();
    let brand = huiyuan_store::conformance::new_brand(&storage).await;
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", file.display()))
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO audit_events (id, brand_id, actor_kind, actor_id, action, target_kind, target_id, diff, created_at) \
         VALUES ('aud_1', ?1, 'system', 'system', 'x', 'brand', 'b', '{}', 0)",
    )
    .bind(brand.id.as_str())
    .execute(&mut conn)
    .await
    .unwrap();
    for sql in [
        "UPDATE audit_events SET action = 'forged'",
        "DELETE FROM audit_events",
    ] {
        let err = sqlx::query(sql).execute(&mut conn).await.unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
}
