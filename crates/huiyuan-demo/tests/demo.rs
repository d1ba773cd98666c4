//! The demo generator: deterministic for a seed, verifiable ledgers, and data the lifetime
//! models can fit — on SQLite and PostgreSQL.

use std::sync::Arc;

use huiyuan_core::clock::OffsetClock;
use huiyuan_core::crypto::MasterKey;
use huiyuan_core::files::export::ExportKind;
use huiyuan_core::files::table::Format;
use huiyuan_core::{Actor, Core, CoreConfig};
use huiyuan_demo::{generate, DemoBrand, DemoOptions};
use huiyuan_store::Storage;
use time::macros::date;

async fn sqlite() -> Arc<dyn Storage> {
    let dir = huiyuan_store_sqlite::testing::scratch_dir(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")));
    let file = dir.join(format!("{}.db", huiyuan_core::crypto::random_token(8)));
    Arc::new(huiyuan_store_sqlite::SqliteStorage::open(&file).await.unwrap())
}

async fn postgres() -> Arc<dyn Storage> {
    // Its own database: the demo brand's slug is `demo`, and jobs run installation-wide.
    let options = huiyuan_store_pg::testing::private_test_database().await;
    Arc::new(
        huiyuan_store_pg::PgStorage::connect_with(options, 4)
            .await
            .unwrap(),
    )
}

fn options(seed: u64) -> DemoOptions {
    DemoOptions {
        members: 300,
        months: 12,
        seed,
        until: UNTIL,
    }
}

/// The last simulated day.
const UNTIL: time::Date = date!(2026 - 11 - 30);

/// The engine after the demo: its clock starts the morning after the last simulated day, so
/// what it computes for "today" is the same whatever day the suite runs.
fn morning_after() -> Arc<OffsetClock> {
    let morning = UNTIL
        .next_day()
        .unwrap()
        .with_time(time::macros::time!(10:00))
        .assume_offset(time::macros::offset!(+8));
    Arc::new(OffsetClock::starting_at(morning))
}

async fn make(storage: Arc<dyn Storage>, seed: u64) -> (Arc<dyn Storage>, DemoBrand) {
    make_with_key(storage, seed, &MasterKey::generate()).await
}

async fn make_with_key(
    storage: Arc<dyn Storage>,
    seed: u64,
    key: &MasterKey,
) -> (Arc<dyn Storage>, DemoBrand) {
    let made = generate(storage.clone(), key, &options(seed), &|_, _, _| {})
        .await
        .unwrap();
    (storage, made)
}

/// Every export but the model results (dated today) in both formats.
async fn exports(storage: Arc<dyn Storage>, key: &MasterKey, made: &DemoBrand) -> Vec<Vec<u8>> {
    let core = Core::new(storage, key, morning_after(), CoreConfig::default());
    let actor = Actor::system(made.brand_id.clone());
    let mut files = Vec::new();
    for kind in ExportKind::ALL.into_iter().filter(|k| *k != ExportKind::Insights) {
        for format in [Format::Csv, Format::Parquet] {
            files.push(core.export_file(&actor, kind, format, false).await.unwrap());
        }
    }
    files
}

/// Every points account as (member, balance, tier, hash of its latest ledger entry): the chain
/// hash covers every entry's ID, time, kind and amount, so equal fingerprints mean equal ledgers.
async fn fingerprint(storage: &Arc<dyn Storage>) -> Vec<String> {
    let mut tx = storage.read().await.unwrap();
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = tx.list_accounts(None, after.as_ref(), 500).await.unwrap();
        if page.is_empty() {
            break;
        }
        for a in &page {
            out.push(format!(
                "{} {} {} {} {:?} {:x?}",
                a.member_id, a.available, a.pending, a.debt, a.tier_code, a.last_hash
            ));
        }
        let last = page.last().unwrap();
        after = Some((last.brand_id.clone(), last.member_id.clone()));
    }
    out
}

#[tokio::test]
async fn same_seed_same_data_other_seed_other_data() {
    let (key_a, key_b, key_c) = (
        MasterKey::generate(),
        MasterKey::generate(),
        MasterKey::generate(),
    );
    let (a, made_a) = make_with_key(sqlite().await, 7, &key_a).await;
    let (b, made_b) = make_with_key(sqlite().await, 7, &key_b).await;
    let (c, made_c) = make_with_key(sqlite().await, 8, &key_c).await;
    assert_eq!(made_a.stats, made_b.stats);
    assert_eq!(made_a.brand_id, made_b.brand_id);
    let fa = fingerprint(&a).await;
    assert!(fa.len() > 200, "{} accounts", fa.len());
    assert_eq!(fa, fingerprint(&b).await);
    assert_ne!(fa, fingerprint(&c).await);
    // Byte for byte, whatever the master key the personal data is sealed with.
    let (ea, eb, ec) = (
        exports(a, &key_a, &made_a).await,
        exports(b, &key_b, &made_b).await,
        exports(c, &key_c, &made_c).await,
    );
    assert_eq!(ea.len(), 10);
    for (i, file) in ea.iter().enumerate() {
        assert!(file.len() > 1_000, "export {i} is nearly empty");
        assert!(*file == eb[i], "export {i} differs between two runs of one seed");
        assert!(*file != ec[i], "export {i} is the same for two seeds");
    }
}

async fn verifies_and_fits(storage: Arc<dyn Storage>) {
    let (storage, made) = make(storage, 11).await;
    let s = &made.stats;
    assert_eq!(s.members, 300);
    assert!(s.purchases + s.coupon_sales > 600, "{s:?}");
    assert!(
        s.refunds > 0 && s.coupon_sales > 0 && s.check_ins > 0 && s.coupons_issued > 300,
        "{s:?}"
    );
    let core = Core::new(
        storage,
        &MasterKey::generate(),
        morning_after(),
        CoreConfig::default(),
    );
    let report = core.verify_ledgers(Some(&made.brand_id)).await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(report.accounts >= 250, "{report:?}");
    let clv = core
        .clv_report(&Actor::system(made.brand_id.clone()), Some(date!(2026 - 11 - 29)))
        .await
        .unwrap();
    let b = &clv.bgnbd;
    for p in [b.r, b.alpha, b.a, b.b] {
        assert!(p.is_finite() && p > 0.0, "{b:?}");
    }
    assert!(clv.mean_p_alive > 0.0 && clv.mean_p_alive < 1.0, "{clv:?}");
}

#[tokio::test]
async fn sqlite_demo_verifies_and_the_lifetime_models_fit() {
    verifies_and_fits(sqlite().await).await;
}

#[tokio::test]
async fn postgres_demo_verifies_and_the_lifetime_models_fit() {
    verifies_and_fits(postgres().await).await;
}
