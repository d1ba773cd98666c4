//! The analytics against published results and hand-worked fixtures.

use huiyuan_analytics::bgnbd::{BgNbd, Customers};
use huiyuan_analytics::cohort::cohort_retention;
use huiyuan_analytics::gamma_gamma::{lifetime_value, GammaGamma, Spenders};
use huiyuan_analytics::rfm::{rfm, Segment};
use huiyuan_analytics::summary::{summarise, Period};
use huiyuan_analytics::{AnalyticsError, Transactions};
use time::macros::date;
use time::Date;

/// Seven members' purchases, worked by hand below (amounts in fen). Member 6 buys only after
/// the as-of date; member 5's April purchase is after it too.
fn shop() -> (Vec<u32>, Vec<Date>, Vec<i64>) {
    let rows = [
        (0, date!(2026 - 03 - 30), 10_000),
        (0, date!(2026 - 03 - 01), 5_000),
        (0, date!(2026 - 02 - 01), 3_000),
        (1, date!(2026 - 01 - 15), 50_000),
        (2, date!(2026 - 03 - 20), 2_000),
        (2, date!(2026 - 03 - 25), 2_000),
        (3, date!(2025 - 12 - 01), 1_000),
        (4, date!(2026 - 03 - 31), 30_000),
        (4, date!(2026 - 02 - 28), 30_000),
        (5, date!(2025 - 11 - 11), 8_000),
        (5, date!(2026 - 01 - 01), 8_000),
        (5, date!(2026 - 04 - 05), 99_900),
        (6, date!(2026 - 04 - 10), 1_000),
    ];
    (
        rows.iter().map(|r| r.0).collect(),
        rows.iter().map(|r| r.1).collect(),
        rows.iter().map(|r| r.2).collect(),
    )
}

/// Recency [1, 75, 6, 120, 0, 89] days, frequency [3, 1, 2, 1, 2, 2], monetary [18,000,
/// 50,000, 4,000, 1,000, 60,000, 16,000]; a score is 1 + ⌊5·(members strictly worse)/6⌋; the
/// means are 48.5 days, 1.83 purchases and 24,833 fen.
#[test]
fn rfm_scores_and_segments_match_the_hand_worked_fixture() {
    let (member, date, amount) = shop();
    let tx = Transactions {
        member: &member,
        date: &date,
        amount: &amount,
    };
    let report = rfm(&tx, date!(2026 - 03 - 31)).unwrap();
    type Row = (u32, i64, u64, i64, u8, u8, u8, Segment);
    let rows: Vec<Row> = report
        .members
        .iter()
        .map(|m| {
            (
                m.member,
                m.recency_days,
                m.frequency,
                m.monetary,
                m.r,
                m.f,
                m.m,
                m.segment,
            )
        })
        .collect();
    use Segment::*;
    assert_eq!(
        rows,
        [
            (0, 1, 3, 18_000, 4, 5, 3, GeneralValue),
            (1, 75, 1, 50_000, 2, 1, 4, ImportantWinBack),
            (2, 6, 2, 4_000, 3, 2, 1, GeneralValue),
            (3, 120, 1, 1_000, 1, 1, 1, GeneralWinBack),
            (4, 0, 2, 60_000, 5, 2, 5, ImportantValue),
            (5, 89, 2, 16_000, 1, 2, 2, GeneralRetain),
        ]
    );
    assert_eq!(report.mean_recency_days, 48.5);
    let counts: Vec<(Segment, u64, i64)> = report
        .segments
        .iter()
        .filter(|s| s.members > 0)
        .map(|s| (s.segment, s.members, s.revenue))
        .collect();
    assert_eq!(
        counts,
        [
            (ImportantValue, 1, 60_000),
            (ImportantWinBack, 1, 50_000),
            (GeneralValue, 2, 22_000),
            (GeneralRetain, 1, 16_000),
            (GeneralWinBack, 1, 1_000),
        ]
    );
    assert_eq!(report.segments.len(), 8);
    assert_eq!(report.segments[3].name_zh, "重要挽留");

    // Equal values get equal scores; no purchases at all is an empty report, not NaN.
    let same = rfm(
        &Transactions {
            member: &[0, 1, 2],
            date: &[date!(2026 - 01 - 01); 3],
            amount: &[100; 3],
        },
        date!(2026 - 01 - 31),
    )
    .unwrap();
    assert!(same.members.iter().all(|m| (m.r, m.f, m.m) == (1, 1, 1)));
    assert!(same.members.iter().all(|m| m.segment == ImportantValue));
    let empty = rfm(
        &Transactions {
            member: &[],
            date: &[],
            amount: &[],
        },
        date!(2026 - 01 - 31),
    )
    .unwrap();
    assert!(empty.members.is_empty());
    assert_eq!(empty.mean_monetary, 0.0);
    assert!(matches!(
        rfm(
            &Transactions {
                member: &[0],
                date: &[],
                amount: &[1]
            },
            date!(2026 - 01 - 31)
        ),
        Err(AnalyticsError::Input(_))
    ));
}

#[test]
fn cohorts_match_the_hand_worked_fixture() {
    let (member, date, amount) = shop();
    let tx = Transactions {
        member: &member,
        date: &date,
        amount: &amount,
    };
    let cohorts = cohort_retention(&tx, date!(2026 - 03 - 31)).unwrap();
    let got: Vec<(&str, u64, Vec<u64>)> = cohorts
        .iter()
        .map(|c| (c.month.as_str(), c.size, c.active.clone()))
        .collect();
    assert_eq!(
        got,
        [
            ("2025-11", 1, vec![1, 0, 1, 0, 0]),
            ("2025-12", 1, vec![1, 0, 0, 0]),
            ("2026-01", 1, vec![1, 0, 0]),
            ("2026-02", 2, vec![2, 2]),
            ("2026-03", 1, vec![1]),
        ]
    );
    assert_eq!(cohorts[0].rate, [1.0, 0.0, 1.0, 0.0, 0.0]);
    let none = cohort_retention(
        &Transactions {
            member: &[],
            date: &[],
            amount: &[],
        },
        date!(2026 - 03 - 31),
    )
    .unwrap();
    assert!(none.is_empty());
}

/// Weeks start on Monday: member 0 bought in the weeks of 26 Jan, 23 Feb and 30 Mar 2026
/// (calibration ends Tuesday 31 Mar, week of 30 Mar).
#[test]
fn summaries_count_distinct_periods() {
    let (member, date, amount) = shop();
    let tx = Transactions {
        member: &member,
        date: &date,
        amount: &amount,
    };
    let s = summarise(&tx, Period::Week, date!(2026 - 03 - 31)).unwrap();
    assert_eq!(s.member, [0, 1, 2, 3, 4, 5]);
    assert_eq!(s.frequency, [2, 0, 1, 0, 1, 1]);
    assert_eq!(s.recency, [9.0, 0.0, 1.0, 0.0, 5.0, 7.0]);
    assert_eq!(s.age, [9.0, 11.0, 2.0, 17.0, 5.0, 20.0]);
    assert_eq!(s.mean_spend, [7_500.0, 0.0, 2_000.0, 0.0, 30_000.0, 8_000.0]);
    // Two purchases on one day are one purchase of their sum.
    let d = summarise(
        &Transactions {
            member: &[0, 0, 0],
            date: &[
                date!(2026 - 01 - 01),
                date!(2026 - 01 - 05),
                date!(2026 - 01 - 05),
            ],
            amount: &[100, 200, 300],
        },
        Period::Day,
        date!(2026 - 01 - 10),
    )
    .unwrap();
    assert_eq!(
        (d.frequency[0], d.recency[0], d.age[0], d.mean_spend[0]),
        (1, 4.0, 9.0, 500.0)
    );
    assert!(s.customers().validate().is_ok());
}

struct Cdnow {
    x: Vec<u32>,
    tx: Vec<f64>,
    t: Vec<f64>,
    zbar: Vec<f64>,
}

fn cdnow() -> Cdnow {
    let text = include_str!("fixtures/cdnow_summary.csv");
    let mut d = Cdnow {
        x: vec![],
        tx: vec![],
        t: vec![],
        zbar: vec![],
    };
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        d.x.push(f[1].parse().unwrap());
        d.tx.push(f[2].parse().unwrap());
        d.t.push(f[3].parse().unwrap());
        d.zbar.push(f[4].parse().unwrap());
    }
    d
}

/// Fader, Hardie & Lee (2005): r = 0.243, α = 4.414, a = 0.793, b = 2.426, LL = −9582.4.
#[test]
fn bgnbd_reproduces_the_published_cdnow_fit() {
    let d = cdnow();
    assert_eq!(d.x.len(), 2_357);
    let fit = BgNbd::fit(&Customers {
        frequency: &d.x,
        recency: &d.tx,
        age: &d.t,
    })
    .unwrap();
    for (value, published) in [(fit.r, 0.243), (fit.alpha, 4.414), (fit.a, 0.793), (fit.b, 2.426)] {
        assert_eq!(format!("{value:.3}"), format!("{published:.3}"), "{fit:?}");
    }
    assert_eq!(format!("{:.1}", fit.log_likelihood), "-9582.4", "{fit:?}");
    // Paper, section 4: a customer with x = 2, tₓ = 30.43, T = 38.86 expects 1.226 purchases in
    // the next 39 weeks.
    let e = fit.expected_purchases(39.0, 2, 30.43, 38.86).unwrap();
    assert_eq!(format!("{e:.3}"), "1.226", "{e}");
    let p = fit.p_alive(0, 0.0, 38.86);
    assert_eq!(p, 1.0);
    assert!(fit.p_alive(4, 5.0, 38.86) < fit.p_alive(4, 35.0, 38.86));
}

/// Fader & Hardie (2013): p = 6.25, q = 3.74, γ = 15.44 on the 946 repeat buyers.
#[test]
fn gamma_gamma_reproduces_the_published_cdnow_fit() {
    let d = cdnow();
    let fit = GammaGamma::fit(&Spenders {
        frequency: &d.x,
        mean_spend: &d.zbar,
    })
    .unwrap();
    assert_eq!(
        (
            format!("{:.2}", fit.p),
            format!("{:.2}", fit.q),
            format!("{:.1}", fit.gamma)
        ),
        ("6.25".into(), "3.74".into(), "15.4".into()),
        "{fit:?}"
    );
    // The population mean spend, γp/(q−1), and a customer's estimate between theirs and it.
    let population = fit.expected_spend(0, 0.0);
    assert!((population - 35.0).abs() < 1.0, "{population}");
    let own = fit.expected_spend(2, 22.35);
    assert!(own > 22.35 && own < population, "{own}");
    let bg = BgNbd::fit(&Customers {
        frequency: &d.x,
        recency: &d.tx,
        age: &d.t,
    })
    .unwrap();
    let clv = lifetime_value(&bg, own, 2, 30.43, 38.86, 12, 0.01, 4.345).unwrap();
    assert!(clv > 0.0 && clv.is_finite(), "{clv}");
}

/// Journeys A > B (converted, 100), A (not), B (converted, 50), worked by hand:
/// start → A 2/3, → B 1/3; A → B 1/2, → null 1/2; B → conversion 1. P = 2/3.
/// Without A: P = 1/3, effect ½. Without B: P = 0, effect 1. Markov shares ⅓ and ⅔.
#[test]
fn attribution_matches_the_hand_worked_fixture() {
    use huiyuan_analytics::attribution::{attribute, Journey};
    let (a, b) = (0, 1);
    let journeys = [
        Journey {
            channels: vec![a, b],
            conversions: 1,
            nulls: 0,
            value: 10_000,
        },
        Journey {
            channels: vec![a],
            conversions: 0,
            nulls: 1,
            value: 0,
        },
        Journey {
            channels: vec![b, b],
            conversions: 1,
            nulls: 0,
            value: 5_000,
        },
    ];
    let r = attribute(&journeys, 2).unwrap();
    let close = |x: f64, y: f64| (x - y).abs() < 1e-9;
    assert!(close(r.conversion_probability, 2.0 / 3.0), "{r:?}");
    assert!(close(r.removal_effects[a as usize], 0.5) && close(r.removal_effects[b as usize], 1.0));
    assert!(close(r.markov.conversions[0], 2.0 / 3.0) && close(r.markov.conversions[1], 4.0 / 3.0));
    assert!(close(r.markov.value[0], 5_000.0) && close(r.markov.value[1], 10_000.0));
    assert_eq!(r.first_touch.conversions, [1.0, 1.0]);
    assert_eq!(r.first_touch.value, [10_000.0, 5_000.0]);
    assert_eq!(r.last_touch.conversions, [0.0, 2.0]);
    // Linear counts every touch: B > B gives B both halves.
    assert_eq!(r.linear.conversions, [0.5, 1.5]);
    assert_eq!(r.linear.value, [5_000.0, 10_000.0]);
    for credit in [&r.first_touch, &r.last_touch, &r.linear, &r.markov] {
        assert!(close(credit.conversions.iter().sum(), 2.0));
        assert!(close(credit.value.iter().sum(), 15_000.0));
    }
    // Nothing converted: all zero, no NaN.
    let none = attribute(&journeys[1..2], 2).unwrap();
    assert_eq!(none.conversion_probability, 0.0);
    assert!(none.markov.conversions.iter().all(|c| *c == 0.0));
    assert!(attribute(
        &[Journey {
            channels: vec![],
            conversions: 1,
            nulls: 0,
            value: 0
        }],
        2
    )
    .is_err());
}

/// As of 31 March 2026 with the default rules (new ≤ 30 days, active ≥ 3 purchases in the 30
/// days up to the date, dormant ≥ 90 days): member 0 bought yesterday but once in the window
/// (at risk); 1 last bought 75 days ago (at risk); 2 joined 11 days ago (new); 3 last bought
/// 120 days ago (dormant); 4 joined 31 days ago (at risk); 5 last bought 89 days ago (at risk,
/// churned once its P(alive) is low); 6 joined after the date (no stage); 7 bought three times
/// in the window (active); 8 enrolled 100 days ago and never bought (dormant).
#[test]
fn lifecycle_stages_match_the_hand_worked_fixture() {
    use huiyuan_analytics::lifecycle::{lifecycle, LifecycleRules, Stage::*};
    let (mut member, mut date, mut amount) = shop();
    for d in [
        date!(2026 - 03 - 02),
        date!(2026 - 03 - 15),
        date!(2026 - 03 - 31),
    ] {
        member.push(7);
        date.push(d);
        amount.push(1_000);
    }
    // Member 7 joined long ago.
    let mut enrolled = vec![None; 9];
    enrolled[7] = Some(date!(2025 - 01 - 01));
    enrolled[8] = Some(date!(2025 - 12 - 21));
    let tx = Transactions {
        member: &member,
        date: &date,
        amount: &amount,
    };
    let as_of = date!(2026 - 03 - 31);
    let rules = LifecycleRules::default();
    let stages = lifecycle(&tx, Some(&enrolled), None, as_of, &rules).unwrap();
    assert_eq!(
        stages,
        [
            Some(AtRisk),
            Some(AtRisk),
            Some(New),
            Some(Dormant),
            Some(AtRisk),
            Some(AtRisk),
            None,
            Some(Active),
            Some(Dormant)
        ]
    );
    let mut p_alive = vec![Some(0.9); 9];
    p_alive[5] = Some(0.05);
    p_alive[2] = Some(0.01);
    let stages = lifecycle(&tx, Some(&enrolled), Some(&p_alive), as_of, &rules).unwrap();
    assert_eq!(stages[5], Some(Churned));
    assert_eq!(stages[2], Some(New), "new comes first");
    let strict = LifecycleRules {
        dormant_days: 89,
        ..rules
    };
    assert_eq!(
        lifecycle(&tx, None, None, as_of, &strict).unwrap()[5],
        Some(Dormant)
    );
    assert!(lifecycle(
        &tx,
        None,
        None,
        as_of,
        &LifecycleRules {
            dormant_days: 0,
            ..rules
        }
    )
    .is_err());
}

/// Five items, two categories (A, B, C: tops; D, E: shoes), five members:
/// m0 {A, B}, m1 {A, B}, m2 {A, C}, m3 {D}, m4 {B, D}. E was never bought.
fn basket_fixture() -> (Vec<u32>, Vec<u32>, Vec<Option<u32>>) {
    let (a, b, c, d) = (0, 1, 2, 3);
    let rows = [
        (0, a),
        (0, b),
        (1, a),
        (1, b),
        (1, a),
        (2, a),
        (2, c),
        (3, d),
        (4, b),
        (4, d),
    ];
    (
        rows.iter().map(|r| r.0).collect(),
        rows.iter().map(|r| r.1).collect(),
        vec![Some(0), Some(0), Some(0), Some(1), Some(1)],
    )
}

#[test]
fn recommendations_match_the_hand_worked_fixture() {
    use huiyuan_analytics::recommend::{Reason, Recommender, RecommenderConfig};
    let (member, item, category) = basket_fixture();
    let config = RecommenderConfig {
        shrinkage: 1.0,
        category_weight: 0.2,
        ..RecommenderConfig::default()
    };
    let model = Recommender::fit(&member, &item, &category, config).unwrap();
    // Buyers: A 3, B 3, C 1, D 2. Bought together: A–B by 2, A–C by 1, B–D by 1.
    // sim = c / √(nᵢ nⱼ) · c / (c + 1):
    let ab = 2.0 / 3.0 * 2.0 / 3.0; // 0.4444
    let ac = 1.0 / 3f64.sqrt() / 2.0; // 0.2887
    let bd = 1.0 / 6f64.sqrt() / 2.0; // 0.2041
    let close = |x: f64, y: f64| (x - y).abs() < 1e-12;
    let near_a = model.similar(0);
    assert_eq!(near_a.len(), 2);
    assert!(near_a[0].0 == 1 && close(near_a[0].1, ab), "{near_a:?}");
    assert!(near_a[1].0 == 2 && close(near_a[1].1, ac), "{near_a:?}");
    assert!(model.similar(4).is_empty());

    // History {A}: B = 0.8·1 + 0.2·(share of tops 1 × 3/3) = 1.0;
    // C = 0.8·(ac/ab) + 0.2·(1 × 1/3) = 0.5863; then D as popular filler. E has no buyer.
    let list = model.recommend(&[0, 0], 5);
    assert_eq!(list.iter().map(|r| r.item).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert!(close(list[0].score, 1.0));
    assert!(close(list[1].score, 0.8 * ac / ab + 0.2 / 3.0));
    assert_eq!(list[0].reason, Reason::BoughtTogether { because: 0 });
    assert_eq!(list[2].reason, Reason::Popular);

    // History {D}: B through co-purchase only (tops are 0 % of the history): 0.8; then the most
    // popular not yet chosen, A (3 buyers, before B by index) and C.
    let list = model.recommend(&[3], 3);
    assert_eq!(list.iter().map(|r| r.item).collect::<Vec<_>>(), vec![1, 0, 2]);
    assert!(close(list[0].score, 0.8));
    assert_eq!(list[0].reason, Reason::BoughtTogether { because: 3 });
    assert!(close(bd, model.similar(3)[0].1));
    assert_eq!(model.most_popular(&[0], 2), vec![1, 3]);
}

#[test]
fn evaluation_matches_the_hand_worked_fixture() {
    use huiyuan_analytics::recommend::{evaluate, RecommenderConfig};
    let (member, item, category) = basket_fixture();
    // Test period: m0 buys C (new to m0), m3 buys B (new), m1 buys A again (a repeat: m1 is not
    // scored), m5 (no history) buys A (not scored).
    let (test_member, test_item) = (vec![0, 3, 1, 5], vec![2, 1, 0, 0]);
    let config = RecommenderConfig {
        shrinkage: 1.0,
        category_weight: 0.2,
        ..RecommenderConfig::default()
    };
    let e = evaluate((&member, &item), (&test_member, &test_item), &category, 2, config).unwrap();
    // m0 {A, B}: C = 0.8 + 0.2/3, D = 0.8·bd/ac → [C, D]: 1 hit. Baseline [D, C]: 1 hit.
    // m3 {D}: [B, A]: 1 hit. Baseline [A, B]: 1 hit.
    assert_eq!(e.members, 2);
    assert_eq!((e.precision, e.recall), (0.5, 1.0));
    assert_eq!((e.baseline_precision, e.baseline_recall), (0.5, 1.0));
    assert_eq!((e.coverage, e.baseline_coverage), (0.8, 0.8));
    assert!(evaluate((&member, &item), (&[0], &[1, 2]), &category, 2, config).is_err());
    assert!(evaluate((&member, &item), (&test_member, &test_item), &category, 0, config).is_err());
}

/// Baskets with structure the popularity baseline cannot see: items come in complementary pairs
/// (2p, 2p + 1) bought together, and a few best-sellers everybody buys. Held out: the complement
/// of an item bought in training. Co-purchase must find it; popularity must not.
#[test]
fn co_purchase_beats_popularity_where_items_go_together() {
    use huiyuan_analytics::recommend::{evaluate, RecommenderConfig};
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n) as u32
    };
    let (pairs, best_sellers) = (100u32, 5u32);
    let n_items = 2 * pairs + best_sellers;
    let category: Vec<Option<u32>> = (0..n_items).map(|i| Some(i % 7)).collect();
    let (mut train, mut test) = ((vec![], vec![]), (vec![], vec![]));
    for m in 0..3_000u32 {
        for _ in 0..2 {
            let p = next(u64::from(pairs));
            train.0.extend([m, m]);
            train.1.extend([2 * p, 2 * p + 1]);
        }
        train.0.push(m);
        train.1.push(2 * pairs + next(u64::from(best_sellers)));
        // One half of a new pair now, its other half later.
        let p = next(u64::from(pairs));
        train.0.push(m);
        train.1.push(2 * p);
        test.0.push(m);
        test.1.push(2 * p + 1);
    }
    let e = evaluate(
        (&train.0, &train.1),
        (&test.0, &test.1),
        &category,
        10,
        RecommenderConfig::default(),
    )
    .unwrap();
    assert!(e.members > 2_500, "{e:?}");
    assert!(e.recall > 0.9, "{e:?}");
    assert!(e.baseline_recall < 0.2, "{e:?}");
    assert!(e.precision > 4.0 * e.baseline_precision, "{e:?}");
}

#[test]
fn kpis_match_the_hand_worked_fixture() {
    use huiyuan_analytics::kpi::{kpis, CouponDates, Granularity, KpiInput, PointFlow, PointMovements};
    // Enrolled: m0 5 Jan, m1 20 Jan, m2 3 Feb, m3 10 Feb (never buys).
    let enrolled = [
        date!(2026 - 01 - 05),
        date!(2026 - 01 - 20),
        date!(2026 - 02 - 03),
        date!(2026 - 02 - 10),
    ];
    let rows = [
        (0, date!(2026 - 01 - 06), 10_000),
        (0, date!(2026 - 01 - 25), 5_000),
        (1, date!(2026 - 01 - 21), 3_000),
        (0, date!(2026 - 02 - 02), 2_000),
        (2, date!(2026 - 02 - 03), 1_001),
        (2, date!(2026 - 02 - 28), 1_000),
    ];
    let member: Vec<u32> = rows.iter().map(|r| r.0).collect();
    let dates: Vec<Date> = rows.iter().map(|r| r.1).collect();
    let amount: Vec<i64> = rows.iter().map(|r| r.2).collect();
    let moves = [
        (date!(2025 - 12 - 20), PointFlow::Issued, 500),
        (date!(2026 - 01 - 06), PointFlow::Issued, 100),
        (date!(2026 - 01 - 25), PointFlow::Redeemed, -50),
        (date!(2026 - 02 - 02), PointFlow::Expired, -30),
        (date!(2026 - 02 - 15), PointFlow::Reversed, -10),
        (date!(2026 - 02 - 16), PointFlow::Adjusted, 5),
        (date!(2026 - 02 - 17), PointFlow::Moved, 0),
    ];
    let (pd, pf, pv): (Vec<Date>, Vec<PointFlow>, Vec<i64>) = (
        moves.iter().map(|m| m.0).collect(),
        moves.iter().map(|m| m.1).collect(),
        moves.iter().map(|m| m.2).collect(),
    );
    let input = KpiInput {
        enrolled: &enrolled,
        purchases: Transactions {
            member: &member,
            date: &dates,
            amount: &amount,
        },
        points: PointMovements {
            date: &pd,
            flow: &pf,
            delta: &pv,
        },
        coupons: CouponDates {
            issued: &[
                date!(2026 - 01 - 12),
                date!(2026 - 01 - 20),
                date!(2026 - 02 - 03),
                date!(2026 - 02 - 05),
            ],
            redeemed: &[
                Some(date!(2026 - 02 - 02)),
                None,
                Some(date!(2026 - 02 - 03)),
                None,
            ],
        },
        point_value_minor: 5,
    };
    let report = kpis(
        &input,
        date!(2026 - 01 - 10),
        date!(2026 - 02 - 20),
        Granularity::Month,
    )
    .unwrap();
    assert_eq!(report.buckets.len(), 2);
    let (jan, feb, total) = (&report.buckets[0], &report.buckets[1], &report.total);
    assert_eq!(
        (jan.start, jan.end),
        (date!(2026 - 01 - 01), date!(2026 - 01 - 31))
    );
    assert_eq!(
        (feb.start, feb.end),
        (date!(2026 - 02 - 01), date!(2026 - 02 - 28))
    );
    let row = |f: &huiyuan_analytics::kpi::KpiFigures| {
        (
            f.new_members,
            f.members,
            f.active_members,
            f.new_buyers,
            f.returning_buyers,
            f.orders,
            f.revenue,
        )
    };
    // January: 3 orders for 180 yuan by m0 (twice) and m1, both new buyers.
    assert_eq!(row(&jan.figures), (2, 2, 2, 2, 0, 3, 18_000));
    assert_eq!(
        (jan.figures.average_order_value, jan.figures.arpu),
        (Some(6_000), Some(9_000))
    );
    assert_eq!(jan.figures.repurchase_rate, Some(0.5));
    // February: m0 returns, m2 buys twice; 40.01 yuan / 3 orders = 13.3367 → 1,334 fen;
    // / 4 members = 10.0025 → 1,000 fen.
    assert_eq!(row(&feb.figures), (2, 4, 2, 1, 1, 3, 4_001));
    assert_eq!(
        (feb.figures.average_order_value, feb.figures.arpu),
        (Some(1_334), Some(1_000))
    );
    assert_eq!(feb.figures.repurchase_rate, Some(0.5));
    // 10 Jan – 20 Feb: m0 (bought on 6 Jan, so returning) twice, m1 and m2 once.
    assert_eq!(row(total), (3, 4, 3, 2, 1, 4, 11_001));
    assert_eq!(total.repurchase_rate, Some(1.0 / 3.0));
    assert_eq!(total.average_order_value, Some(2_750));
    // Points: 500 issued before the range still count as outstanding.
    let points = |f: &huiyuan_analytics::kpi::KpiFigures| {
        (
            f.points_issued,
            f.points_redeemed,
            f.points_expired,
            f.points_reversed,
            f.points_adjusted,
            f.points_outstanding,
            f.liability,
        )
    };
    // Coupons: January issued two (one used in February): rate 1/2, none used in January;
    // February issued two, one used at once, and saw two redemptions; the range: 2 of 4.
    let coupons = |f: &huiyuan_analytics::kpi::KpiFigures| {
        (f.coupons_issued, f.coupons_redeemed, f.coupon_redemption_rate)
    };
    assert_eq!(coupons(&jan.figures), (2, 0, Some(0.5)));
    assert_eq!(coupons(&feb.figures), (2, 2, Some(0.5)));
    assert_eq!(coupons(total), (4, 2, Some(0.5)));
    assert_eq!(points(&jan.figures), (100, 50, 0, 0, 0, 550, 2_750));
    assert_eq!(points(&feb.figures), (0, 0, 30, 10, 5, 515, 2_575));
    assert_eq!(points(total), (0, 50, 30, 10, 5, 515, 2_575));

    // Weeks start on Monday (7 Jan 2026 is a Wednesday).
    let weekly = kpis(
        &input,
        date!(2026 - 01 - 07),
        date!(2026 - 01 - 12),
        Granularity::Week,
    )
    .unwrap();
    assert_eq!(
        weekly.buckets.iter().map(|b| b.start).collect::<Vec<_>>(),
        vec![date!(2026 - 01 - 05), date!(2026 - 01 - 12)]
    );
}

#[test]
fn kpis_of_nothing_have_no_ratios_and_bad_ranges_are_refused() {
    use huiyuan_analytics::kpi::{kpis, CouponDates, Granularity, KpiInput, PointMovements};
    let input = KpiInput {
        enrolled: &[],
        purchases: Transactions {
            member: &[],
            date: &[],
            amount: &[],
        },
        points: PointMovements {
            date: &[],
            flow: &[],
            delta: &[],
        },
        coupons: CouponDates::default(),
        point_value_minor: 5,
    };
    let r = kpis(
        &input,
        date!(2026 - 01 - 01),
        date!(2026 - 01 - 03),
        Granularity::Day,
    )
    .unwrap();
    assert_eq!(r.buckets.len(), 3);
    assert!(r.buckets.iter().all(|b| b.figures.average_order_value.is_none()
        && b.figures.arpu.is_none()
        && b.figures.repurchase_rate.is_none()));
    let json = serde_json::to_string(&r).unwrap();
    assert!(!json.contains("NaN"), "{json}");
    assert!(kpis(
        &input,
        date!(2026 - 01 - 03),
        date!(2026 - 01 - 01),
        Granularity::Day
    )
    .is_err());
    assert!(kpis(
        &input,
        date!(2020 - 01 - 01),
        date!(2026 - 01 - 01),
        Granularity::Day
    )
    .is_err());
    assert!(kpis(
        &input,
        date!(2020 - 01 - 01),
        date!(2026 - 01 - 01),
        Granularity::Month
    )
    .is_ok());
}
