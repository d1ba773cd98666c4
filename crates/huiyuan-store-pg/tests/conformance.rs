//! The shared storage conformance suite, on PostgreSQL (`HUIYUAN_TEST_DATABASE_URL`).

use std::sync::Arc;

use huiyuan_store::Storage;
use huiyuan_store_pg::{testing, PgStorage};

async fn open() -> Arc<dyn Storage> {
    let options = testing::test_database().await;
    Arc::new(PgStorage::connect_with(options, 16).await.unwrap())
}

huiyuan_store::conformance_tests!(open);

/// The audit log refuses UPDATE and DELETE even from a connection that bypasses Huiyuan.
#[tokio::test]
async fn audit_log_is_append_only_in_the_database() {
    use sqlx::Connection;
    let options = testing::test_database().await;
    let storage = PgStorage::connect_with(options.clone(), 2).await.unwrap();
    let brand = huiyuan_store::conformance::new_brand(&storage).await;
    let mut conn = sqlx::PgConnection::connect_with(&options).await.unwrap();
    let id = format!("aud_{}", brand.id.as_str());
    sqlx::query(
        "INSERT INTO audit_events (id, brand_id, actor_kind, actor_id, action, target_kind, target_id, diff, created_at) \
         VALUES ($1, $2, 'system', 'system', 'x', 'brand', 'b', '{}', now())",
    )
    .bind(&id)
    .bind(brand.id.as_str())
    .execute(&mut conn)
    .await
    .unwrap();
    for sql in [
        "UPDATE audit_events SET action = 'forged' WHERE id = $1",
        "DELETE FROM audit_events WHERE id = $1",
    ] {
        let err = sqlx::query(sql).bind(&id).execute(&mut conn).await.unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
}

/// A pooled connection that the server (or a proxy, or a failover) dropped while it sat idle is
/// found dead and replaced before a request gets it: the pool skips its per-acquire ping only for
/// connections idle less than a second.
#[tokio::test]
async fn idle_connections_the_server_dropped_are_replaced() {
    use sqlx::Connection;
    let options = testing::private_test_database().await;
    let storage = PgStorage::connect_with(options.clone(), 4).await.unwrap();
    let brand = huiyuan_store::conformance::new_brand(&storage).await;
    // Two transactions at once: the pool holds two live connections afterwards.
    let (a, b) = tokio::join!(storage.read(), storage.read());
    drop((a.unwrap(), b.unwrap()));

    let mut admin = sqlx::PgConnection::connect_with(&options).await.unwrap();
    let terminated: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert!(
        terminated.len() >= 2,
        "pooled connections terminated: {terminated:?}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;

    for _ in 0..3 {
        let mut tx = storage.read().await.expect("a live connection");
        let found = tx.get_brand(&brand.id).await.expect("read on a live connection");
        assert_eq!(found.map(|b| b.id), Some(brand.id.clone()));
    }
}
