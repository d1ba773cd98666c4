//! The shared storage conformance suite, on PostgreSQL (`HUIYUAN_TEST_DATABASE_URL`).

use std::sync::Arc;

use huiyuan_store::Storage;
use huiyuan_store_pg::{testing, PgStorage};

async fn open() -> Arc<dyn Storage> {
    let options = testing::test_database().await;
    Arc::new(PgStorage::connect_with(options, 16).await.unwrap())
}

huiyuan_store::conformance_tests!(open);
