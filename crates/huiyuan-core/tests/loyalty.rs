//! The loyalty engine's invariants on both backends: random sequences of purchases, refunds,
//! redemptions, adjustments, actions, clock jumps and jobs never break the ledger; tampering
//! with one stored entry is caught and named.

use std::sync::Arc;

use huiyuan_core::clock::OffsetClock;
use huiyuan_core::crypto::MasterKey;
use huiyuan_core::{Actor, Core, CoreConfig, CoreError};
use huiyuan_domain::ids::MemberId;
use huiyuan_domain::loyalty::programme::{ActionKind, Programme};
use huiyuan_domain::loyalty::purchase::{
    ActionInput, AdjustmentInput, LineInput, PurchaseInput, RedeemInput, RefundInput, TransferInput,
};
use huiyuan_domain::member::{Channel, EnrolInput};
use huiyuan_store::Storage;
use proptest::prelude::*;

#[derive(Clone, Copy, Debug)]
enum Backend {
    Sqlite,
    Postgres,
}

struct World {
    core: Core,
    clock: Arc<OffsetClock>,
    actor: Actor,
    member: MemberId,
    /// For raw tampering.
    sqlite_file: Option<std::path::PathBuf>,
    pg_options: Option<sqlx::postgres::PgConnectOptions>,
}

async fn world(backend: Backend) -> World {
    let mut pg_options = None;
    let (storage, sqlite_file): (Arc<dyn Storage>, _) = match backend {
        Backend::Sqlite => {
            let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("huiyuan-loyalty");
            std::fs::create_dir_all(&dir).unwrap();
            let file = dir.join(format!("{}.db", huiyuan_core::crypto::random_token(8)));
            (
                Arc::new(huiyuan_store_sqlite::SqliteStorage::open(&file).await.unwrap()),
                Some(file),
            )
        }
        Backend::Postgres => {
            // Its own database: these tests move the clock and run the installation-wide jobs.
            let options = huiyuan_store_pg::testing::private_test_database().await;
            pg_options = Some(options.clone());
            (
                Arc::new(
                    huiyuan_store_pg::PgStorage::connect_with(options, 8)
                        .await
                        .unwrap(),
                ),
                None,
            )
        }
    };
    let clock = Arc::new(OffsetClock::default());
    let core = Core::new(
        storage,
        &MasterKey::generate(),
        clock.clone(),
        CoreConfig::default(),
    );
    let slug = format!(
        "l{}",
        huiyuan_core::crypto::random_token(6)
            .to_lowercase()
            .replace(['-', '_'], "x")
    );
    let made = core
        .bootstrap_brand(
            huiyuan_core::brands::NewBrand {
                slug: slug.clone(),
                name: "Loyalty".into(),
                currency: None,
                timezone: None,
            },
            &format!("admin-{slug}"),
            "a long enough password",
        )
        .await
        .unwrap();
    let actor = Actor::system(made.brand.id.clone());
    core.publish_programme(&actor, Programme::demo()).await.unwrap();
    let enrolment = core
        .enrol(
            &actor,
            EnrolInput {
                phone: Some("13800138000".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let member = match enrolment {
        huiyuan_core::members::Enrolment::Created(m) | huiyuan_core::members::Enrolment::Existing(m) => m.id,
    };
    World {
        core,
        clock,
        actor,
        member,
        sqlite_file,
        pg_options,
    }
}

#[derive(Clone, Debug)]
enum Op {
    Buy(i64),
    RefundAll(usize),
    RefundPart(usize, u8),
    Redeem(i64),
    Adjust(i64),
    CheckIn,
    /// To and from a second member of the brand.
    GiveAway(i64),
    Receive(i64),
    Wait(i64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1i64..3_000).prop_map(Op::Buy),
        1 => (0usize..20).prop_map(Op::RefundAll),
        1 => (0usize..20, 1u8..100).prop_map(|(i, p)| Op::RefundPart(i, p)),
        2 => (1i64..2_000).prop_map(Op::Redeem),
        1 => (-500i64..500).prop_filter("non-zero", |n| *n != 0).prop_map(Op::Adjust),
        1 => Just(Op::CheckIn),
        1 => (50i64..1_500).prop_map(Op::GiveAway),
        1 => (50i64..1_500).prop_map(Op::Receive),
        2 => (0i64..400).prop_map(Op::Wait),
    ]
}

/// Business refusals are fine (not enough points, already refunded); anything else is a bug.
fn expected<T>(r: Result<T, CoreError>) {
    match r {
        Ok(_)
        | Err(CoreError::Conflict { .. })
        | Err(CoreError::NotFound(_))
        | Err(CoreError::Validation(_)) => {}
        Err(e) => panic!("unexpected error: {e:?}"),
    }
}

fn purchase(order: String, member: &MemberId, yuan: i64) -> PurchaseInput {
    PurchaseInput {
        order_id: order,
        member_id: Some(member.clone()),
        phone: None,
        member_code: None,
        enrol_if_unknown: None,
        store_id: None,
        channel: Channel::Pos,
        occurred_at: None,
        lines: vec![LineInput {
            sku: "SKU".into(),
            category: Some("apparel".into()),
            quantity: 2,
            amount: yuan * 100,
            reward: false,
        }],
        paid_amount: yuan * 100,
    }
}

async fn run(backend: Backend, ops: Vec<Op>) {
    let w = world(backend).await;
    let (core, a, m) = (&w.core, &w.actor, &w.member);
    let partner = match core
        .enrol(
            a,
            EnrolInput {
                phone: Some("13800138999".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap()
    {
        huiyuan_core::members::Enrolment::Created(p) | huiyuan_core::members::Enrolment::Existing(p) => p.id,
    };
    let mut orders = 0usize;
    for (n, op) in ops.into_iter().enumerate() {
        let before = core.points_balance(a, m).await.unwrap();
        match op {
            Op::Buy(yuan) => {
                orders += 1;
                let r = core
                    .record_purchase(a, purchase(format!("O-{orders}"), m, yuan))
                    .await
                    .unwrap();
                // Debt is repaid first.
                assert_eq!(r.debt_repaid, r.purchase.points.min(before.debt));
            }
            Op::RefundAll(i) | Op::RefundPart(i, _) if i >= orders => {}
            Op::RefundAll(i) => {
                let input = RefundInput {
                    refund_id: format!("R-{n}"),
                    amount: None,
                    lines: None,
                    reason: None,
                };
                expected(core.refund_purchase(a, &format!("O-{}", i + 1), input).await);
            }
            Op::RefundPart(i, pct) => {
                let order = format!("O-{}", i + 1);
                let p = core.get_purchase(a, &order).await.unwrap();
                let amount = (p.paid_amount - p.refunded_amount) * i64::from(pct) / 100;
                if amount > 0 {
                    let input = RefundInput {
                        refund_id: format!("R-{n}"),
                        amount: Some(amount),
                        lines: None,
                        reason: None,
                    };
                    expected(core.refund_purchase(a, &order, input).await);
                }
            }
            Op::Redeem(points) => {
                let input = RedeemInput {
                    points,
                    reference: format!("D-{n}"),
                    description: None,
                };
                let r = core.redeem_points(a, m, input).await;
                if points > before.available {
                    assert!(
                        matches!(
                            r,
                            Err(CoreError::Conflict {
                                code: "insufficient_points",
                                ..
                            })
                        ),
                        "{r:?}"
                    );
                } else {
                    r.unwrap();
                }
            }
            Op::Adjust(points) => {
                let input = AdjustmentInput {
                    points,
                    reason: "test".into(),
                    reference: format!("A-{n}"),
                };
                expected(core.adjust_points(a, m, input).await);
            }
            Op::CheckIn => {
                let input = ActionInput {
                    action: ActionKind::CheckIn,
                    reference: format!("C-{n}"),
                };
                expected(core.reward_action(a, m, input).await);
            }
            Op::GiveAway(points) => {
                let input = TransferInput {
                    to_member_id: partner.clone(),
                    points,
                    reference: format!("T-{n}"),
                    note: None,
                };
                match core.transfer_points(a, m, input).await {
                    Ok((t, _)) => assert_eq!(t.from_available_after, before.available - points),
                    Err(e) => expected::<()>(Err(e)),
                }
            }
            Op::Receive(points) => {
                let top_up = AdjustmentInput {
                    points,
                    reason: "test".into(),
                    reference: format!("P-{n}"),
                };
                core.adjust_points(a, &partner, top_up).await.unwrap();
                let input = TransferInput {
                    to_member_id: m.clone(),
                    points,
                    reference: format!("T-{n}"),
                    note: None,
                };
                match core.transfer_points(a, &partner, input).await {
                    // Debt is repaid first, as with any earning.
                    Ok((t, _)) => {
                        assert_eq!(t.debt_repaid, points.min(before.debt));
                        assert_eq!(t.to_available_after, before.available + points - t.debt_repaid);
                    }
                    Err(e) => expected::<()>(Err(e)),
                }
            }
            Op::Wait(days) => {
                w.clock.advance(time::Duration::days(days));
                for run in core.run_jobs("test", true).await.unwrap() {
                    assert!(run.error.is_none(), "{run:?}");
                }
            }
        }
        let after = core.points_balance(a, m).await.unwrap();
        assert!(
            after.available >= 0 && after.pending >= 0 && after.debt >= 0,
            "{after:?}"
        );
    }
    let report = core.verify_ledgers(Some(&a.brand_id)).await.unwrap();
    assert!(report.ok(), "{:?}", report.problems);
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn ledger_invariants_hold_on_sqlite(ops in proptest::collection::vec(op(), 1..30)) {
        runtime().block_on(run(Backend::Sqlite, ops));
    }

    #[test]
    fn ledger_invariants_hold_on_postgres(ops in proptest::collection::vec(op(), 1..30)) {
        runtime().block_on(run(Backend::Postgres, ops));
    }
}

async fn tampering(backend: Backend) {
    let w = world(backend).await;
    let (core, a, m) = (&w.core, &w.actor, &w.member);
    for i in 0..3 {
        let input = AdjustmentInput {
            points: 10,
            reason: "t".into(),
            reference: format!("T-{i}"),
        };
        core.adjust_points(a, m, input).await.unwrap();
    }
    assert!(core.verify_ledgers(Some(&a.brand_id)).await.unwrap().ok());
    let stmt = core
        .points_statement(a, m, &huiyuan_store::Page::first(10))
        .await
        .unwrap();
    let second = stmt.iter().find(|e| e.seq == 2).unwrap().id.clone();
    let third = stmt.iter().find(|e| e.seq == 3).unwrap().id.clone();
    let alter = "UPDATE ledger_entries SET available_delta = 100 WHERE id = $1";
    // Re-attributing an entry to someone else is tampering too.
    let reattribute = "UPDATE ledger_entries SET actor = 'operator opr_someone_else' WHERE id = $1";
    match backend {
        Backend::Sqlite => {
            use sqlx::Connection;
            let file = w.sqlite_file.as_ref().unwrap();
            let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", file.display()))
                .await
                .unwrap();
            sqlx::query(&alter.replace("$1", "?1"))
                .bind(&second)
                .execute(&mut c)
                .await
                .unwrap();
            sqlx::query(&reattribute.replace("$1", "?1"))
                .bind(&third)
                .execute(&mut c)
                .await
                .unwrap();
        }
        Backend::Postgres => {
            use sqlx::Connection;
            let options = w.pg_options.as_ref().unwrap();
            let mut c = sqlx::PgConnection::connect_with(options).await.unwrap();
            sqlx::query(alter).bind(&second).execute(&mut c).await.unwrap();
            sqlx::query(reattribute)
                .bind(&third)
                .execute(&mut c)
                .await
                .unwrap();
        }
    }
    let report = core.verify_ledgers(Some(&a.brand_id)).await.unwrap();
    let altered = report
        .problems
        .iter()
        .find(|p| p.entry_id.as_deref() == Some(second.as_str()))
        .unwrap_or_else(|| panic!("{:?}", report.problems));
    assert_eq!(&altered.member_id, m);
    assert!(altered.problem.contains("altered"), "{altered:?}");
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.entry_id.as_deref() == Some(third.as_str()) && p.problem.contains("altered")),
        "{:?}",
        report.problems
    );
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.problem.contains("sum of its entries")),
        "{:?}",
        report.problems
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampering_is_detected_on_sqlite() {
    tampering(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampering_is_detected_on_postgres() {
    tampering(Backend::Postgres).await;
}

/// Four more members: one with a birthday this month (×2), all earning in the same brand.
async fn members(w: &World) -> Vec<MemberId> {
    let mut ids = vec![w.member.clone()];
    let month = w.core.now().month() as u8;
    for n in 0..4 {
        let input = EnrolInput {
            phone: Some(format!("1380013810{n}")),
            birthday: (n == 0).then(|| format!("1990-{month:02}-01")),
            ..Default::default()
        };
        match w.core.enrol(&w.actor, input).await.unwrap() {
            huiyuan_core::members::Enrolment::Created(m) => ids.push(m.id),
            other => panic!("{other:?}"),
        }
    }
    ids
}

/// Sales that exercise what a batch must get right: caps per order and per day (huge
/// baskets), tier upgrades that change the multiplier of the member's next sale in the same
/// batch, sales on other days (their own cap periods), a repeated order (replayed) and an order
/// ID reused for another sale (refused).
fn sales(members: &[MemberId], base: time::OffsetDateTime) -> Vec<PurchaseInput> {
    let mut out = Vec::new();
    for i in 0..60usize {
        let member = &members[i * 7 % members.len()];
        let yuan = match i % 10 {
            0 => 1_500_000,
            3 => 40_000,
            _ => 150 + (i as i64 * 37) % 900,
        };
        let mut p = purchase(format!("S-{i}"), member, yuan);
        p.occurred_at = Some(base - time::Duration::days((i % 4) as i64) + time::Duration::minutes(i as i64));
        out.push(p);
    }
    let repeat = out[5].clone();
    out.insert(20, repeat);
    let mut reused = out[7].clone();
    reused.paid_amount += 100;
    reused.lines[0].amount += 100;
    out.insert(40, reused);
    out
}

/// What a run produced, comparable across brands: each sale's points (or error code) and each
/// member's final balance and tier.
async fn outcome_of(
    w: &World,
    members: &[MemberId],
    results: Vec<Result<huiyuan_core::loyalty::views::PurchaseOutcome, CoreError>>,
) -> (Vec<String>, Vec<(i64, i64, String)>) {
    let sales = results
        .into_iter()
        .map(|r| match r {
            Ok(o) => format!(
                "{} {} created={}",
                o.purchase.order_id, o.purchase.points, o.created
            ),
            Err(CoreError::Conflict { code, .. }) => code.to_owned(),
            Err(e) => panic!("{e:?}"),
        })
        .collect();
    let mut balances = Vec::new();
    for m in members {
        let b = w.core.points_balance(&w.actor, m).await.unwrap();
        balances.push((b.available + b.pending, b.debt, b.tier.code));
    }
    assert!(w.core.verify_ledgers(Some(&w.actor.brand_id)).await.unwrap().ok());
    (sales, balances)
}

async fn batches_earn_what_single_sales_earn(backend: Backend) {
    let base = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    let one_by_one = world(backend).await;
    let ids = members(&one_by_one).await;
    let mut results = Vec::new();
    for sale in sales(&ids, base) {
        results.push(one_by_one.core.record_purchase(&one_by_one.actor, sale).await);
    }
    let expected = outcome_of(&one_by_one, &ids, results).await;
    assert!(
        expected.0.iter().any(|s| s == "order_id_reused"),
        "{:?}",
        expected.0
    );
    assert!(
        expected.0.iter().any(|s| s.ends_with("created=false")),
        "{:?}",
        expected.0
    );
    assert!(
        expected.1.iter().any(|(_, _, tier)| tier != "regular"),
        "{:?}",
        expected.1
    );

    let batched = world(backend).await;
    let ids = members(&batched).await;
    let mut results = Vec::new();
    let all = sales(&ids, base);
    for chunk in all.chunks(25) {
        results.extend(
            batched
                .core
                .record_purchases(&batched.actor, chunk.to_vec())
                .await
                .unwrap(),
        );
    }
    assert_eq!(outcome_of(&batched, &ids, results).await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_earn_what_single_sales_earn_on_sqlite() {
    batches_earn_what_single_sales_earn(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_earn_what_single_sales_earn_on_postgres() {
    batches_earn_what_single_sales_earn(Backend::Postgres).await;
}

/// Many single sales at once share commits (group commit): each is recorded exactly once,
/// copies of the same order earn once, and every ledger verifies.
async fn concurrent_sales_are_grouped_and_counted_once(backend: Backend) {
    let w = world(backend).await;
    let ids = members(&w).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200usize {
        let (core, actor) = (w.core.clone(), w.actor.clone());
        // Every order is sent twice, from two tasks.
        let sale = purchase(
            format!("G-{}", i / 2),
            &ids[i / 2 % ids.len()],
            100 + i as i64 / 2,
        );
        tasks.spawn(async move { core.record_purchase(&actor, sale).await });
    }
    let mut created = std::collections::HashMap::new();
    let mut replayed = 0;
    let mut points = 0;
    while let Some(r) = tasks.join_next().await {
        match r.unwrap() {
            Ok(o) if o.created => {
                *created.entry(o.purchase.order_id).or_insert(0) += 1;
                points += o.purchase.points;
            }
            Ok(_) => replayed += 1,
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(created.len(), 100);
    assert!(created.values().all(|n| *n == 1), "{created:?}");
    assert_eq!(replayed, 100);
    let mut earned = 0;
    for m in &ids {
        let b = w.core.points_balance(&w.actor, m).await.unwrap();
        earned += b.available + b.pending;
    }
    assert_eq!(earned, points, "balances hold what the sales earned, each once");
    assert!(w.core.verify_ledgers(Some(&w.actor.brand_id)).await.unwrap().ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sales_are_grouped_and_counted_once_on_sqlite() {
    concurrent_sales_are_grouped_and_counted_once(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sales_are_grouped_and_counted_once_on_postgres() {
    concurrent_sales_are_grouped_and_counted_once(Backend::Postgres).await;
}
