//! The loyalty engine's invariants on both backends: random sequences of purchases, refunds,
//! redemptions, adjustments, actions, clock jumps and jobs never break the ledger; tampering
//! with one stored entry is caught and named.

use std::sync::Arc;

use huiyuan_core::clock::{test_start, OffsetClock};
use huiyuan_core::crypto::MasterKey;
use huiyuan_core::{Actor, Core, CoreConfig, CoreError, ErrorCode};
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
    world_in(backend, None, test_start()).await
}

/// A world whose brand keeps `zone`'s calendar (the brands' default, Asia/Shanghai, when
/// `None`), on a clock that starts at `start`.
async fn world_in(backend: Backend, zone: Option<&str>, start: time::OffsetDateTime) -> World {
    let mut pg_options = None;
    let (storage, sqlite_file): (Arc<dyn Storage>, _) = match backend {
        Backend::Sqlite => {
            let dir =
                huiyuan_store_sqlite::testing::scratch_dir(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")));
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
    let clock = Arc::new(OffsetClock::starting_at(start));
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
                timezone: zone.map(str::to_owned),
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
                                code: ErrorCode::InsufficientPoints,
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
    for i in 0..2 {
        core.top_up_wallet(
            a,
            m,
            huiyuan_core::commerce::wallet::TopUpInput {
                reference: format!("W-{i}"),
                amount: 10_000,
            },
        )
        .await
        .unwrap();
    }
    assert!(core.verify_ledgers(Some(&a.brand_id)).await.unwrap().ok());
    let wallet_first = core
        .wallet_statement(a, m, &huiyuan_store::Page::first(10))
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.seq == 1)
        .unwrap()
        .id;
    let stmt = core
        .points_statement(a, m, &huiyuan_store::Page::first(10))
        .await
        .unwrap();
    let second = stmt.iter().find(|e| e.seq == 2).unwrap().id.clone();
    let third = stmt.iter().find(|e| e.seq == 3).unwrap().id.clone();
    let alter = "UPDATE ledger_entries SET available_delta = 100 WHERE id = $1";
    // A wallet entry made bigger (and the wallet with it, so that only the chain can tell).
    let alter_wallet = "UPDATE wallet_entries SET principal_delta = principal_delta + 100000 WHERE id = $1";
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
            sqlx::query(&alter_wallet.replace("$1", "?1"))
                .bind(&wallet_first)
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
            sqlx::query(alter_wallet)
                .bind(&wallet_first)
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
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.entry_id.as_deref() == Some(wallet_first.as_str())
                && p.problem.starts_with("wallet:")
                && p.problem.contains("altered")),
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

/// A brand in New York, member day on the 1st: on 1 November 2026 clocks go back at 02:00, so
/// the member day is 25 hours long and 01:30 happens twice; both sales at 01:30 are on it, the
/// minute before midnight and the minute after are not. (In Shanghai's calendar these instants
/// fall on other days: the rule reads the brand's own calendar.)
async fn member_day_is_the_brands_local_day_across_daylight_saving(backend: Backend) {
    use time::macros::datetime;
    let w = world_in(
        backend,
        Some("America/New_York"),
        datetime!(2026-11-03 12:00 -05:00),
    )
    .await;
    let mut programme = Programme::demo();
    programme.multipliers.member_day.as_mut().unwrap().day_of_month = 1;
    programme.multipliers.streak = None;
    w.core.publish_programme(&w.actor, programme).await.unwrap();
    let sales = [
        ("before", datetime!(2026-10-31 23:59 -04:00), 100),
        ("first-0130", datetime!(2026-11-01 01:30 -04:00), 300),
        ("second-0130", datetime!(2026-11-01 01:30 -05:00), 300),
        ("last-minute", datetime!(2026-11-01 23:59 -05:00), 300),
        ("after", datetime!(2026-11-02 00:00 -05:00), 100),
    ];
    for (order, at, points) in sales {
        let mut sale = purchase(order.into(), &w.member, 100);
        sale.occurred_at = Some(at);
        let outcome = w.core.record_purchase(&w.actor, sale).await.unwrap();
        assert_eq!(outcome.purchase.points, points, "{order} at {at}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_day_is_the_brands_local_day_across_daylight_saving_on_sqlite() {
    member_day_is_the_brands_local_day_across_daylight_saving(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_day_is_the_brands_local_day_across_daylight_saving_on_postgres() {
    member_day_is_the_brands_local_day_across_daylight_saving(Backend::Postgres).await;
}

/// Four more members: one with a birthday this month (×2), all earning in the same brand.
async fn members(w: &World) -> Vec<MemberId> {
    let mut ids = vec![w.member.clone()];
    let month = w.core.now().month() as u8;
    for n in 0..4 {
        let input = EnrolInput {
            phone: Some(format!("1380013810{n}").into()),
            birthday: (n == 0).then(|| format!("1990-{month:02}-01").into()),
            ..Default::default()
        };
        match w.core.enrol(&w.actor, input).await.unwrap() {
            huiyuan_core::members::Enrolment::Created(m) => ids.push(m.id),
            other => panic!("{other:?}"),
        }
    }
    ids
}

/// `count` sales, a minute apart from `base`, that exercise what a batch must get right: caps
/// per order and per day (huge baskets), tier upgrades that change the multiplier of the
/// member's next sale in the same batch, sales on other days (their own cap periods), a copy of
/// an early order half way in (replayed) and an early order ID reused for another amount two
/// thirds of the way in (refused).
fn sales(members: &[MemberId], base: time::OffsetDateTime, count: usize) -> Vec<PurchaseInput> {
    let mut out = Vec::new();
    for i in 0..count {
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
    out.insert(count / 2, repeat);
    let mut reused = out[7].clone();
    reused.paid_amount += 100;
    reused.lines[0].amount += 100;
    out.insert(2 * count / 3, reused);
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
            Err(CoreError::Conflict { code, .. }) => code.to_string(),
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

/// The same sales earn the same one by one, in batches of 25 and in one batch of 302 (whose
/// rows are written ahead in chunks on SQLite, with the copy and the reused order in later
/// chunks than their originals).
async fn batches_earn_what_single_sales_earn(backend: Backend) {
    const SALES: usize = 300;
    let base = test_start() - time::Duration::hours(6);
    let one_by_one = world(backend).await;
    let ids = members(&one_by_one).await;
    let mut results = Vec::new();
    for sale in sales(&ids, base, SALES) {
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

    for batch in [25, SALES + 2] {
        let batched = world(backend).await;
        let ids = members(&batched).await;
        let mut results = Vec::new();
        let all = sales(&ids, base, SALES);
        for chunk in all.chunks(batch) {
            let outcomes = batched
                .core
                .record_purchases(&batched.actor, chunk.to_vec())
                .await
                .unwrap();
            // One transaction per call (not one per sale, which is how a failed group is
            // retried): the sales it recorded share its time.
            let times: std::collections::BTreeSet<_> = outcomes
                .iter()
                .filter_map(|o| {
                    o.as_ref()
                        .ok()
                        .filter(|o| o.created)
                        .map(|o| o.purchase.created_at)
                })
                .collect();
            assert_eq!(times.len(), 1, "batches of {batch}: {times:?}");
            results.extend(outcomes);
        }
        assert_eq!(
            outcome_of(&batched, &ids, results).await,
            expected,
            "batches of {batch}"
        );
    }
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

// ---------------------------------------------------------------------------------------------
// Coupons, the wallet and the till.

use huiyuan_core::commerce::checkout::SaleRefundInput;
use huiyuan_core::commerce::coupons::{IssueInput, RedeemCouponInput};
use huiyuan_core::commerce::wallet::{TopUpInput, TopUpRefundInput};
use huiyuan_domain::commerce::checkout::CheckoutInput;
use huiyuan_domain::commerce::coupons::{Limits, Offer, TemplateInput, Validity};

#[derive(Clone, Debug)]
enum Till {
    TopUp(i64),
    RefundTopUp(usize, u8),
    Issue,
    /// A sale of `yuan` with the `n`-th coupon (if any), paying these percentages of the most
    /// points and wallet money the till says can pay (over 100: asking too much).
    Sell {
        yuan: i64,
        coupon: Option<usize>,
        points_pct: i64,
        wallet_pct: i64,
    },
    RefundSale(usize),
    RedeemOnline(usize),
    Earn(i64),
    Wait(i64),
}

fn till() -> impl Strategy<Value = Till> {
    prop_oneof![
        2 => (1i64..3_000).prop_map(|y| Till::TopUp(y * 100)),
        1 => (0usize..8, 1u8..=100).prop_map(|(i, p)| Till::RefundTopUp(i, p)),
        2 => Just(Till::Issue),
        6 => (1i64..800, prop::option::of(0usize..8), 0i64..=110, 0i64..=110)
            .prop_map(|(yuan, coupon, points_pct, wallet_pct)| Till::Sell { yuan, coupon, points_pct, wallet_pct }),
        2 => (0usize..10).prop_map(Till::RefundSale),
        1 => (0usize..8).prop_map(Till::RedeemOnline),
        2 => (1i64..2_000).prop_map(Till::Earn),
        1 => (0i64..40).prop_map(Till::Wait),
    ]
}

/// Random top-ups and their refunds, coupons issued and used at the till or online, sales
/// with points and the wallet and their refunds, clock jumps and jobs: the quote always equals
/// the commit; the tender always adds up; a coupon is never used twice (the model of which are
/// in use always agrees with the store); a refund gives the wallet back exactly what the sale
/// took; no balance goes negative; every ledger — points and wallet — verifies.
async fn commerce_run(backend: Backend, ops: Vec<Till>) {
    let w = world(backend).await;
    let (core, a, m) = (&w.core, &w.actor, &w.member);
    let template = core
        .create_coupon_template(
            a,
            TemplateInput {
                name: "5 off".into(),
                description: None,
                offer: Offer::FixedAmount { amount: 500 },
                validity: Validity::DaysAfterIssue { days: 30 },
                limits: Limits::default(),
                stackable: false,
                stock: None,
                cost_per_redemption: 0,
                claim_code: None,
                points_price: None,
            },
        )
        .await
        .unwrap();
    let mut coupons: Vec<(String, bool)> = Vec::new(); // (code, in use)
    let mut top_ups: Vec<String> = Vec::new();
    let mut sales: Vec<(
        String,
        usize,
        huiyuan_core::commerce::wallet::WalletView,
        Option<usize>,
    )> = Vec::new();
    for (n, op) in ops.into_iter().enumerate() {
        let wallet_before = core.wallet_balance(a, m).await.unwrap();
        match op {
            Till::TopUp(amount) => {
                let r = core
                    .top_up_wallet(
                        a,
                        m,
                        TopUpInput {
                            reference: format!("TU-{n}"),
                            amount,
                        },
                    )
                    .await;
                if let Ok((o, _)) = &r {
                    assert_eq!(o.principal_after, wallet_before.principal + amount);
                    top_ups.push(o.reference.clone());
                }
                expected(r);
            }
            Till::RefundTopUp(i, pct) => {
                if let Some(reference) = top_ups.get(i) {
                    let input = TopUpRefundInput {
                        refund_id: format!("TR-{n}"),
                        amount: Some(1.max(wallet_before.principal * i64::from(pct) / 100)),
                    };
                    let r = core.refund_top_up(a, m, reference, input).await;
                    if let Ok((o, _)) = &r {
                        assert_eq!(
                            o.principal + wallet_before.principal - o.principal,
                            wallet_before.principal
                        );
                        assert_eq!(o.money_returned + o.bonus_kept_back, o.principal);
                    }
                    expected(r);
                }
            }
            Till::Issue => {
                let (c, _) = core
                    .issue_coupon(
                        a,
                        m,
                        IssueInput {
                            template_id: template.id.clone(),
                            reference: format!("I-{n}"),
                        },
                    )
                    .await
                    .unwrap();
                coupons.push((c.code, false));
            }
            Till::Sell {
                yuan,
                coupon,
                points_pct,
                wallet_pct,
            } => {
                let code = coupon.and_then(|i| coupons.get(i)).map(|c| c.0.clone());
                let mut input = CheckoutInput {
                    order_id: Some(format!("S-{n}")),
                    member_id: Some(m.clone()),
                    phone: None,
                    member_code: None,
                    store_id: None,
                    channel: Channel::Pos,
                    lines: vec![LineInput {
                        sku: "SKU".into(),
                        category: Some("apparel".into()),
                        quantity: 1,
                        amount: yuan * 100,
                        reward: false,
                    }],
                    shipping: 0,
                    coupons: code.iter().cloned().collect(),
                    points: 0,
                    wallet: 0,
                };
                let mut quote_input = input.clone();
                quote_input.order_id = None;
                let means = core.quote(a, quote_input.clone()).await.unwrap().priced;
                input.points = means.points.max_usable * points_pct / 100;
                quote_input.points = input.points;
                let wallet_max = core
                    .quote(a, quote_input.clone())
                    .await
                    .unwrap()
                    .priced
                    .wallet
                    .max_usable;
                input.wallet = wallet_max * wallet_pct / 100;
                quote_input.wallet = input.wallet;
                let quote = core.quote(a, quote_input).await.unwrap();
                let points_before = core.points_balance(a, m).await.unwrap();
                let in_use = coupon.and_then(|i| coupons.get(i)).is_some_and(|c| c.1);
                match core.commit_sale(a, input).await {
                    Ok((sale, _)) => {
                        assert!(!in_use, "a coupon in use was accepted again");
                        assert_eq!(sale.priced, quote.priced, "quote and commit disagree");
                        let p = &sale.priced;
                        assert_eq!(p.points.value + p.wallet.used + p.money_due, p.total);
                        let after = core.points_balance(a, m).await.unwrap();
                        assert_eq!(after.available, points_before.available - p.points.used);
                        let w_after = core.wallet_balance(a, m).await.unwrap();
                        assert_eq!(
                            w_after.principal,
                            wallet_before.principal - p.wallet.from_principal
                        );
                        assert_eq!(w_after.bonus, wallet_before.bonus - p.wallet.from_bonus);
                        if let Some(i) = coupon.filter(|_| !p.coupons.is_empty()) {
                            coupons[i].1 = true;
                        }
                        sales.push((
                            sale.order_id,
                            n,
                            w_after,
                            coupon.filter(|_| !p.coupons.is_empty()),
                        ));
                    }
                    Err(CoreError::Conflict {
                        code: ErrorCode::CouponRedeemed,
                        ..
                    }) => assert!(in_use),
                    Err(CoreError::Conflict {
                        code: ErrorCode::CouponExpired,
                        ..
                    }) => {}
                    Err(CoreError::Validation(_)) => {
                        // Asked for more points or wallet money than there is, or a coupon
                        // that cannot apply: the quote said so.
                        assert!(
                            quote.priced.points.requested > quote.priced.points.used
                                || quote.priced.wallet.requested > quote.priced.wallet.used
                                || !quote.priced.refused_coupons.is_empty(),
                            "refused although the quote was fine: {quote:?}"
                        );
                    }
                    Err(e) => panic!("unexpected error: {e:?}"),
                }
            }
            Till::RefundSale(i) => {
                if let Some((order, _, _, coupon)) = sales.get(i).cloned() {
                    let refund = core
                        .refund_sale(
                            a,
                            &order,
                            SaleRefundInput {
                                refund_id: format!("SR-{order}"),
                                reason: None,
                            },
                        )
                        .await;
                    match refund {
                        Ok((r, made)) => {
                            if made {
                                let w_after = core.wallet_balance(a, m).await.unwrap();
                                assert_eq!(
                                    w_after.principal,
                                    wallet_before.principal + r.wallet_principal_restored
                                );
                                assert_eq!(w_after.bonus, wallet_before.bonus + r.wallet_bonus_restored);
                                if let Some(c) = coupon {
                                    // Back in use only when still valid.
                                    coupons[c].1 =
                                        r.coupons_restored.is_empty() && r.coupons_expired.is_empty();
                                }
                            }
                        }
                        Err(e) => panic!("unexpected error refunding {order}: {e:?}"),
                    }
                }
            }
            Till::RedeemOnline(i) => {
                if let Some((code, in_use)) = coupons.get(i).cloned() {
                    let input = RedeemCouponInput {
                        order_id: format!("WEB-{n}"),
                        member_id: m.clone(),
                        store_id: None,
                        channel: Channel::WebShop,
                        lines: vec![LineInput {
                            sku: "SKU".into(),
                            category: None,
                            quantity: 1,
                            amount: 10_000,
                            reward: false,
                        }],
                        shipping: 0,
                    };
                    match core.redeem_coupon(a, &code, input).await {
                        Ok(_) => {
                            assert!(!in_use, "a coupon in use was redeemed again");
                            coupons[i].1 = true;
                        }
                        Err(CoreError::Conflict {
                            code: ErrorCode::CouponRedeemed,
                            ..
                        }) => assert!(in_use),
                        Err(CoreError::Conflict {
                            code: ErrorCode::CouponExpired,
                            ..
                        }) => {}
                        Err(e) => panic!("unexpected error: {e:?}"),
                    }
                }
            }
            Till::Earn(yuan) => {
                core.record_purchase(a, purchase(format!("E-{n}"), m, yuan))
                    .await
                    .unwrap();
            }
            Till::Wait(days) => {
                w.clock.advance(time::Duration::days(days));
                for run in core.run_jobs("test", true).await.unwrap() {
                    assert!(run.error.is_none(), "{run:?}");
                }
            }
        }
        let wallet = core.wallet_balance(a, m).await.unwrap();
        assert!(wallet.principal >= 0 && wallet.bonus >= 0, "{wallet:?}");
        // The store agrees with the model about which coupons are in use.
        let stored = core
            .member_coupons(a, m, Some("redeemed"), &huiyuan_store::Page::first(100))
            .await
            .unwrap();
        let in_use = coupons.iter().filter(|c| c.1).count();
        assert_eq!(
            stored.len(),
            in_use,
            "coupons in use: model {in_use}, store {}",
            stored.len()
        );
    }
    let report = core.verify_ledgers(Some(&a.brand_id)).await.unwrap();
    assert!(report.ok(), "{:?}", report.problems);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn commerce_invariants_hold_on_sqlite(ops in proptest::collection::vec(till(), 1..30)) {
        runtime().block_on(commerce_run(Backend::Sqlite, ops));
    }

    #[test]
    fn commerce_invariants_hold_on_postgres(ops in proptest::collection::vec(till(), 1..30)) {
        runtime().block_on(commerce_run(Backend::Postgres, ops));
    }
}
