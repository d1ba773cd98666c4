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
    ActionInput, AdjustmentInput, LineInput, PurchaseInput, RedeemInput, RefundInput,
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
    let alter = "UPDATE ledger_entries SET available_delta = 100 WHERE id = $1";
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
        }
        Backend::Postgres => {
            use sqlx::Connection;
            let options = w.pg_options.as_ref().unwrap();
            let mut c = sqlx::PgConnection::connect_with(options).await.unwrap();
            sqlx::query(alter).bind(&second).execute(&mut c).await.unwrap();
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
