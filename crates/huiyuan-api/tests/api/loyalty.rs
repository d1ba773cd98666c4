//! The loyalty engine: purchases and refunds, multipliers, tiers, streaks, transfers, the preview, expiry.

use super::*;

async fn purchases_earn_itemised_points_once(backend: Backend) {
    let h = Harness::start_at(backend, ORDINARY_DAY).await;
    let m = h.enrol(json!({"phone": "13800138000"})).await;
    let id = m["id"].as_str().unwrap();
    // Without a programme: a clear conflict, nothing recorded.
    let (s, b) = h.buy(sale("SO-1", id, 100)).await;
    assert_problem(s, &b, StatusCode::CONFLICT, "no_programme");
    h.publish_demo_programme().await;
    let (s, b) = h.buy(sale("SO-1", id, 100)).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["purchase"]["points"], 100);
    let items = b["purchase"]["earning"]["items"].as_array().unwrap();
    assert_eq!(
        items.iter().map(|i| i["points"].as_i64().unwrap()).sum::<i64>(),
        100
    );
    assert_eq!(items[0]["source"], "base");
    // The same order again: the first answer, nothing earned twice.
    let (s, again) = h.buy(sale("SO-1", id, 100)).await;
    assert_eq!(s, StatusCode::OK, "{again}");
    assert_eq!(again["created"], false);
    assert_eq!(again["purchase"]["id"], b["purchase"]["id"]);
    // The same order number for another sale is refused.
    let (s, b) = h.buy(sale("SO-1", id, 120)).await;
    assert_problem(s, &b, StatusCode::CONFLICT, "order_id_reused");
    let bal = h.balance(id).await;
    assert_eq!(
        (bal["available"].as_i64(), bal["pending"].as_i64()),
        (Some(0), Some(100)),
        "{bal}"
    );
    assert_eq!(bal["tier"]["code"], "regular");
    assert_eq!(bal["tier"]["next"]["missing"]["points"], 4_900);
    // Pay and you are a member: an unknown phone is enrolled by its first purchase.
    let (s, b) = h
        .buy(
            json!({"order_id": "SO-2", "phone": "139 0013 9000", "channel": "pos",
                    "lines": [{"sku": "A", "quantity": 2, "amount": 5000}], "paid_amount": 5000}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["member_enrolled"], true);
    assert_eq!(b["purchase"]["points"], 50);
    // The statement says why.
    let (s, st) = h
        .admin(Method::GET, &format!("/v1/members/{id}/points/entries"), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(st["data"][0]["kind"], "earn");
    assert_eq!(st["data"][0]["programme_version"], 1);
    assert_eq!(st["data"][0]["detail"]["items"][0]["source"], "base");
    // The batch endpoint: good items recorded, a bad one reported with its own status.
    let (s, b) = h
        .admin(
            Method::POST,
            "/v1/transactions/batch",
            Some(json!({"purchases": [
                sale("B-1", id, 10), sale("SO-1", id, 100),
                {"order_id": "B-2", "member_id": id, "channel": "pos", "lines": [], "paid_amount": 0}
            ]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let statuses: Vec<_> = b["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [201, 200, 422]);
    assert_eq!(b["results"][2]["problem"]["errors"][0]["field"], "lines");
    h.verify_ok().await;
}

async fn concurrent_copies_of_an_order_earn_once(backend: Backend) {
    let h = Arc::new(Harness::start_at(backend, ORDINARY_DAY).await);
    h.publish_demo_programme().await;
    let m = h.enrol(json!({"phone": "13800138001"})).await;
    let id = m["id"].as_str().unwrap().to_owned();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let h = h.clone();
        let id = id.clone();
        tasks.push(tokio::spawn(
            async move { h.buy(sale("SO-RACE", &id, 300)).await.0 },
        ));
    }
    let mut created = 0;
    for t in tasks {
        let s = t.await.unwrap();
        assert!(s == StatusCode::CREATED || s == StatusCode::OK, "{s}");
        created += usize::from(s == StatusCode::CREATED);
    }
    assert_eq!(created, 1);
    assert_eq!(h.balance(&id).await["pending"], 300);
    h.verify_ok().await;
}

async fn refund_after_spending_becomes_a_debt_repaid_first(backend: Backend) {
    let h = Harness::start_at(backend, ORDINARY_DAY).await;
    h.publish_demo_programme().await;
    let id = h.member_id("13800138002").await;
    let (s, b) = h.buy(sale("SO-1", &id, 1000)).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    // Inside the return window the points are pending and cannot be spent.
    let redeem = |n: i64, r: &str| json!({"points": n, "reference": r});
    let (s, b) = h
        .admin(
            Method::POST,
            &format!("/v1/members/{id}/points/redemptions"),
            Some(redeem(800, "R-0")),
        )
        .await;
    assert_problem(s, &b, StatusCode::CONFLICT, "insufficient_points");
    h.clock.advance(time::Duration::days(8));
    h.run_jobs().await;
    assert_eq!(h.balance(&id).await["available"], 1000);
    let (s, b) = h
        .admin(
            Method::POST,
            &format!("/v1/members/{id}/points/redemptions"),
            Some(redeem(800, "R-1")),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    // A partial refund by amount reverses in proportion.
    let (s, b) = h
        .admin(
            Method::POST,
            "/v1/transactions/SO-1/refunds",
            Some(json!({"refund_id": "RF-1", "amount": 25000})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(
        (b["points_reversed"].as_i64(), b["from_available"].as_i64()),
        (Some(250), Some(200)),
        "{b}"
    );
    assert_eq!(b["debt_added"], 50);
    // The rest: everything left is reversed; what was spent becomes debt, not a lost reversal.
    let (s, b) = h
        .admin(
            Method::POST,
            "/v1/transactions/SO-1/refunds",
            Some(json!({"refund_id": "RF-2"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(
        (b["points_reversed"].as_i64(), b["debt_added"].as_i64()),
        (Some(750), Some(750)),
        "{b}"
    );
    let bal = h.balance(&id).await;
    assert_eq!(
        (bal["available"].as_i64(), bal["debt"].as_i64()),
        (Some(0), Some(800)),
        "{bal}"
    );
    // Refunded twice? No: the same refund replays, a new one is refused.
    let (s, b) = h
        .admin(
            Method::POST,
            "/v1/transactions/SO-1/refunds",
            Some(json!({"refund_id": "RF-2"})),
        )
        .await;
    assert_eq!((s, b["debt_added"].as_i64()), (StatusCode::OK, Some(750)));
    let (s, b) = h
        .admin(
            Method::POST,
            "/v1/transactions/SO-1/refunds",
            Some(json!({"refund_id": "RF-3"})),
        )
        .await;
    assert_problem(s, &b, StatusCode::CONFLICT, "already_refunded");
    // The next earnings repay the debt first.
    let (s, b) = h.buy(sale("SO-2", &id, 500)).await;
    assert_eq!(
        (s, b["debt_repaid"].as_i64()),
        (StatusCode::CREATED, Some(500)),
        "{b}"
    );
    let bal = h.balance(&id).await;
    assert_eq!(
        (bal["pending"].as_i64(), bal["debt"].as_i64()),
        (Some(0), Some(300)),
        "{bal}"
    );
    let (_, st) = h
        .admin(
            Method::GET,
            &format!("/v1/members/{id}/points/entries?limit=3"),
            None,
        )
        .await;
    let kinds: Vec<_> = st["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["earn", "refund_reversal", "refund_reversal"]);
    assert_eq!(st["data"][0]["debt_delta"], -500);
    h.verify_ok().await;
}

async fn tier_upgrades_on_the_crossing_purchase_and_downgrades_after_grace(backend: Backend) {
    let h = Harness::start(backend).await;
    h.publish_demo_programme().await;
    let id = h.member_id("13800138003").await;
    let now = h.core.now();
    let at = |days: i64| {
        (now - time::Duration::days(days))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let mut a = sale("T-1", &id, 4_999);
    a["occurred_at"] = json!(at(20));
    let (_, b) = h.buy(a).await;
    assert!(b["tier_change"].is_null(), "{b}");
    let mut c = sale("T-2", &id, 1);
    c["occurred_at"] = json!(at(19));
    let (_, b) = h.buy(c).await;
    assert_eq!(b["tier_change"]["to_tier"], "silver", "{b}");
    // Refunds count against qualification, but the downgrade waits for the review.
    for (order, refund) in [("T-1", "TR-1"), ("T-2", "TR-2")] {
        let (s, b) = h
            .admin(
                Method::POST,
                &format!("/v1/transactions/{order}/refunds"),
                Some(json!({"refund_id": refund})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
    }
    let bal = h.balance(&id).await;
    assert_eq!(bal["tier"]["code"], "silver", "{bal}");
    assert_eq!(bal["tier"]["qualifying"]["points"], 0);
    // At the review (12 months on) the grace starts; the member keeps silver.
    h.clock.advance(time::Duration::days(366));
    h.run_jobs().await;
    let bal = h.balance(&id).await;
    assert_eq!(bal["tier"]["code"], "silver", "{bal}");
    assert!(bal["tier"]["grace_until"].is_string(), "{bal}");
    // After the grace: down to the tier they qualify for, with the reason.
    h.clock.advance(time::Duration::days(31));
    h.run_jobs().await;
    assert_eq!(h.balance(&id).await["tier"]["code"], "regular");
    let (_, history) = h
        .admin(Method::GET, &format!("/v1/members/{id}/tier/history"), None)
        .await;
    let changes: Vec<_> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["to_tier"].as_str().unwrap())
        .collect();
    assert_eq!(changes, ["regular", "silver"]);
    assert!(
        history[0]["reason"]
            .as_str()
            .unwrap()
            .contains("review after grace"),
        "{history}"
    );
    assert!(
        history[1]["reason"].as_str().unwrap().contains("purchase T-2"),
        "{history}"
    );
    h.verify_ok().await;
}

async fn member_day_birthday_and_tier_multipliers_stack(backend: Backend) {
    // The morning after the sales it backdates (no sale may be in the future).
    let h = Harness::start_at(backend, time::macros::datetime!(2026-11-09 10:00 +08:00)).await;
    h.publish_demo_programme().await;
    let id = h
        .enrol(json!({"phone": "13800138004", "birthday": "1990-11-20"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // 8 November (Shanghai): member day ×3 in the birthday month ×2.
    let mut s1 = sale("M-1", &id, 200);
    s1["occurred_at"] = json!("2026-11-08T10:00:00+08:00");
    let (s, b) = h.buy(s1).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let items: Vec<(String, i64)> = b["purchase"]["earning"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["source"].as_str().unwrap().to_owned(),
                i["points"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        items,
        [
            ("base".to_owned(), 200),
            ("member_day".to_owned(), 400),
            ("birthday_month".to_owned(), 600)
        ]
    );
    assert_eq!(b["purchase"]["points"], 1_200);
    // 7 November 23:59 Shanghai is not member day, whatever UTC says.
    let mut s2 = sale("M-2", &id, 100);
    s2["occurred_at"] = json!("2026-11-07T23:59:00+08:00");
    let (_, b) = h.buy(s2).await;
    assert_eq!(b["purchase"]["points"], 200, "{b}");
}

/// The demo's streak bonus: a purchase in each of three calendar months running earns ×1.2 on
/// the third; a month without a purchase starts the count again.
async fn consecutive_months_earn_the_streak_bonus(backend: Backend) {
    let h = Harness::start(backend).await;
    h.publish_demo_programme().await;
    let today = h.core.now().to_offset(time::macros::offset!(+8)).date();
    // The 15th (never member day) of the month `k` months before this one, Shanghai time.
    let months_ago = |k: i32| {
        let index = today.year() * 12 + i32::from(u8::from(today.month())) - 1 - k;
        format!("{}-{:02}-15T12:00:00+08:00", index / 12, index % 12 + 1)
    };
    let steady = h.member_id("13800138006").await;
    let gappy = h.member_id("13800138007").await;
    let mut points = Vec::new();
    for (member, months) in [(&steady, [3, 2, 1]), (&gappy, [4, 2, 1])] {
        for k in months {
            let mut s = sale(&format!("ST-{member}-{k}"), member, 100);
            s["occurred_at"] = json!(months_ago(k));
            let (status, b) = h.buy(s).await;
            assert_eq!(status, StatusCode::CREATED, "{b}");
            points.push(b["purchase"]["points"].as_i64().unwrap());
        }
    }
    assert_eq!(points, [100, 100, 120, 100, 100, 100]);
    let mut third = sale("ST-again", &steady, 100);
    third["occurred_at"] = json!(months_ago(1));
    let (_, b) = h.buy(third).await;
    let streak = &b["purchase"]["earning"]["items"][1];
    assert_eq!(streak["source"], "streak", "{b}");
    assert_eq!(streak["points"], 20, "{b}");
    h.verify_ok().await;
}

/// Tiers that name visits or spend (not points) still upgrade on the sale that crosses, alone
/// or inside a batch: a sale asks the database only for the sums its rules name.
async fn tiers_on_visits_or_spend_upgrade_on_the_crossing_sale(backend: Backend) {
    let h = Harness::start(backend).await;
    let mut doc: Value =
        serde_json::from_str(huiyuan_domain::loyalty::programme::DEMO_PROGRAMME_JSON).unwrap();
    let levels = doc["tiers"]["levels"].as_array_mut().unwrap();
    levels.truncate(3);
    levels[1]["thresholds"] = json!({"visits": 3});
    levels[2]["thresholds"] = json!({"spend": 500_000});
    let (s, b) = h.admin(Method::PUT, "/v1/programme", Some(doc)).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");

    let single = h.member_id("13800138021").await;
    let mut changes = Vec::new();
    for (n, yuan) in [(1, 10), (2, 10), (3, 10), (4, 4_960), (5, 10)] {
        let (s, b) = h.buy(sale(&format!("V-{n}"), &single, yuan)).await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        changes.push(b["tier_change"]["to_tier"].as_str().map(str::to_owned));
    }
    let to = |t: &str| Some(t.to_owned());
    assert_eq!(changes, [None, None, to("silver"), None, to("gold")]);

    let batched = h.member_id("13800138022").await;
    let purchases: Vec<Value> = [10, 10, 10, 4_960, 10]
        .iter()
        .enumerate()
        .map(|(n, yuan)| sale(&format!("VB-{n}"), &batched, *yuan))
        .collect();
    let (s, b) = h
        .admin(
            Method::POST,
            "/v1/transactions/batch",
            Some(json!({ "purchases": purchases })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let changes: Vec<_> = b["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["result"]["tier_change"]["to_tier"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(changes, [None, None, to("silver"), None, to("gold")], "{b}");
    let (_, history) = h
        .admin(Method::GET, &format!("/v1/members/{batched}/tier/history"), None)
        .await;
    let reasons: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        [
            "purchase VB-4: spend 500000 / 500000",
            "purchase VB-2: visits 3 / 3"
        ],
        "{history}"
    );
    h.verify_ok().await;
}

/// Points move oldest first, each piece keeping its expiry; the receiver's debt takes the first
/// ones; a retry moves nothing more; the programme's limits hold; every ledger verifies.
async fn transfers_keep_expiry_repay_debt_and_happen_once(backend: Backend) {
    let h = Harness::start(backend).await;
    h.publish_demo_programme().await;
    let a = h.member_id("13800138008").await;
    let b = h.member_id("13800138009").await;
    let ten_days_ago = (h.core.now() - time::Duration::days(10))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    for (order, member, yuan) in [("TA-1", &a, 500), ("TB-1", &b, 100)] {
        let mut s = sale(order, member, yuan);
        s["occurred_at"] = json!(ten_days_ago);
        assert_eq!(h.buy(s).await.0, StatusCode::CREATED);
    }
    h.run_jobs().await;
    let purchase_expiry = h.balance(&a).await["next_expiry"]["at"].clone();
    let (s, body) = post(
        &h,
        &format!("/v1/members/{a}/points/adjustments"),
        json!({"points": 300, "reason": "goodwill", "reference": "TA-adj"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    // B spends the points of a sale that is then refunded: a debt of 100.
    let (s, body) = post(
        &h,
        &format!("/v1/members/{b}/points/redemptions"),
        json!({"points": 100, "reference": "TB-r"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let (s, body) = post(&h, "/v1/transactions/TB-1/refunds", json!({"refund_id": "TB-rf"})).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(h.balance(&b).await["debt"], 100);

    let path = format!("/v1/members/{a}/points/transfers");
    let transfer = |to: &str, points: i64, reference: &str| json!({"to_member_id": to, "points": points, "reference": reference, "note": "for mum"});
    let (s, t) = post(&h, &path, transfer(&b, 600, "TR-1")).await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    assert_eq!(
        (
            &t["points"],
            &t["debt_repaid"],
            &t["from_available_after"],
            &t["to_available_after"]
        ),
        (&json!(600), &json!(100), &json!(200), &json!(500)),
        "{t}"
    );
    let pieces: Vec<(i64, bool)> = t["lots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["points"].as_i64().unwrap(), l["to_lot"].is_string()))
        .collect();
    assert_eq!(pieces, [(100, false), (400, true), (100, true)], "{t}");
    assert_eq!(t["lots"][1]["expires_at"], purchase_expiry, "{t}");
    let received = h.balance(&b).await;
    assert_eq!(
        (&received["available"], &received["debt"]),
        (&json!(500), &json!(0))
    );
    assert_eq!(
        received["next_expiry"]["at"], purchase_expiry,
        "the points keep their expiry"
    );
    assert_eq!(received["next_expiry"]["points"], 400);

    // A retry answers the first outcome and moves nothing; the same reference for another
    // transfer is refused.
    let (s, again) = post(&h, &path, transfer(&b, 600, "TR-1")).await;
    assert_eq!(s, StatusCode::OK, "{again}");
    assert_eq!(again, t);
    let (s, e) = post(&h, &path, transfer(&b, 700, "TR-1")).await;
    assert_problem(s, &e, StatusCode::CONFLICT, "reference_reused");
    let (s, e) = post(&h, &path, transfer(&b, 1_000, "TR-2")).await;
    assert_problem(s, &e, StatusCode::CONFLICT, "insufficient_points");
    let (s, e) = post(&h, &path, transfer(&b, 50, "TR-2")).await;
    assert_problem(s, &e, StatusCode::CONFLICT, "transfer_too_small");
    let (s, e) = post(&h, &path, transfer(&a, 100, "TR-2")).await;
    assert_problem(s, &e, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(field_of(&e), "to_member_id");
    let (s, e) = post(&h, &path, transfer("mem_0000000000000000000000000", 100, "TR-2")).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(field_of(&e), "to_member_id");
    // Three transfers a day in the demo programme.
    for r in ["TR-3", "TR-4"] {
        assert_eq!(post(&h, &path, transfer(&b, 100, r)).await.0, StatusCode::CREATED);
    }
    let (s, e) = post(&h, &path, transfer(&b, 100, "TR-5")).await;
    assert_problem(s, &e, StatusCode::CONFLICT, "transfer_limit_reached");
    assert_eq!(h.balance(&a).await["available"], 0);
    assert_eq!(h.balance(&b).await["available"], 700);
    let (_, entries) = h
        .admin(Method::GET, &format!("/v1/members/{b}/points/entries"), None)
        .await;
    assert_eq!(entries["data"][0]["kind"], "transfer_in", "{entries}");
    h.verify_ok().await;
}

/// Two members sending to each other at the same moment, many times: accounts are locked in
/// one order, so there is no deadlock, and no point is spent twice or lost.
async fn opposite_transfers_at_once_neither_deadlock_nor_double_spend(backend: Backend) {
    let h = Arc::new(Harness::start(backend).await);
    let mut programme: Value =
        serde_json::from_str(huiyuan_domain::loyalty::programme::DEMO_PROGRAMME_JSON).unwrap();
    programme["transfers"] = json!({"min_points": 1});
    let (s, b) = h.admin(Method::PUT, "/v1/programme", Some(programme)).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let a = h.member_id("13800138010").await;
    let b = h.member_id("13800138011").await;
    for m in [&a, &b] {
        let (s, body) = post(
            &h,
            &format!("/v1/members/{m}/points/adjustments"),
            json!({"points": 300, "reason": "seed", "reference": format!("seed-{m}")}),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
    }
    let mut tasks = Vec::new();
    for i in 0..24 {
        let h = h.clone();
        let (from, to) = if i % 2 == 0 {
            (a.clone(), b.clone())
        } else {
            (b.clone(), a.clone())
        };
        tasks.push(tokio::spawn(async move {
            let body = json!({"to_member_id": to, "points": 100, "reference": format!("X-{i}")});
            let (s, e) = post(&h, &format!("/v1/members/{from}/points/transfers"), body).await;
            assert!(
                s == StatusCode::CREATED || (s == StatusCode::CONFLICT && e["code"] == "insufficient_points"),
                "{s} {e}"
            );
            (i % 2 == 0, s == StatusCode::CREATED)
        }));
    }
    let mut net_to_b = 0;
    for t in tasks {
        let (a_to_b, ok) = t.await.unwrap();
        if ok {
            net_to_b += if a_to_b { 100 } else { -100 };
        }
    }
    let (ba, bb) = (h.balance(&a).await, h.balance(&b).await);
    assert_eq!(ba["available"], json!(300 - net_to_b));
    assert_eq!(bb["available"], json!(300 + net_to_b));
    h.verify_ok().await;
}

/// The console's "what would this earn" before a version is published.
async fn preview_shows_what_a_basket_would_earn_without_recording_it(backend: Backend) {
    let h = Harness::start(backend).await;
    let basket = json!({"channel": "pos", "occurred_at": "2026-11-08T10:00:00+08:00",
        "lines": [{"sku": "TEE", "category": "apparel", "quantity": 1, "amount": 20000}],
        "paid_amount": 20000, "member": {"tier": "gold", "birth_month": 11}});
    let (s, e) = post(&h, "/v1/programme/preview", basket.clone()).await;
    assert_problem(s, &e, StatusCode::CONFLICT, "no_programme");
    // A draft can be tried before anything is published.
    let mut draft = basket.clone();
    draft["programme"] =
        serde_json::from_str(huiyuan_domain::loyalty::programme::DEMO_PROGRAMME_JSON).unwrap();
    let (s, p) = post(&h, "/v1/programme/preview", draft.clone()).await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert!(p["version"].is_null());
    // 200 yuan, gold ×1.5, member day ×3, birthday month ×2.
    assert_eq!(p["earning"]["points"], 1_800, "{p}");
    assert_eq!(
        (&p["local_date"], &p["tier"]),
        (&json!("2026-11-08"), &json!("gold"))
    );
    draft["programme"]["multipliers"]["member_day"]["multiplier"] = json!("0.5");
    let (s, e) = post(&h, "/v1/programme/preview", draft).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(field_of(&e), "programme.multipliers.member_day.multiplier");

    h.publish_demo_programme().await;
    let (s, p) = post(&h, "/v1/programme/preview", basket.clone()).await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(p["version"], 1);
    assert_eq!(p["earning"]["points"], 1_800);
    // The caps see what the member earned already today.
    let mut capped = basket.clone();
    capped["member"]["earned_today"] = json!(199_000);
    let (_, p) = post(&h, "/v1/programme/preview", capped).await;
    assert_eq!(p["earning"]["points"], 1_000, "{p}");
    let mut bad = basket;
    bad["member"]["tier"] = json!("bronze");
    let (s, e) = post(&h, "/v1/programme/preview", bad).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(field_of(&e), "member.tier");
    // Nothing was recorded.
    let (_, events) = h.admin(Method::GET, "/v1/events", None).await;
    assert!(!events.to_string().contains("purchase.recorded"), "{events}");
}

async fn points_expire_after_maturing_and_ledger_verifies(backend: Backend) {
    let h = Harness::start_at(backend, ORDINARY_DAY).await;
    h.publish_demo_programme().await;
    let id = h.member_id("13800138005").await;
    h.buy(sale("E-1", &id, 100)).await;
    h.clock.advance(time::Duration::days(8));
    h.run_jobs().await;
    let bal = h.balance(&id).await;
    assert_eq!(bal["available"], 100, "{bal}");
    h.clock.advance(time::Duration::days(340));
    h.run_jobs().await;
    let bal = h.balance(&id).await;
    assert_eq!(bal["expiring_soon"], 100, "{bal}");
    // Running the jobs twice changes nothing more (one reminder, one expiry).
    h.clock.advance(time::Duration::days(30));
    h.run_jobs().await;
    h.run_jobs().await;
    let bal = h.balance(&id).await;
    assert_eq!(bal["available"], 0, "{bal}");
    let (_, st) = h
        .admin(Method::GET, &format!("/v1/members/{id}/points/entries"), None)
        .await;
    let kinds: Vec<_> = st["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["expire", "activate", "earn"]);
    let (_, events) = h.admin(Method::GET, "/v1/events?limit=1000", None).await;
    let count = |t: &str| {
        events
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == t)
            .count()
    };
    assert_eq!(
        (
            count("points.expiring_soon"),
            count("points.expired"),
            count("points.activated")
        ),
        (1, 1, 1)
    );
    h.verify_ok().await;
}

async fn bad_purchases_name_the_field_and_roles_are_enforced(backend: Backend) {
    let h = Harness::start(backend).await;
    h.publish_demo_programme().await;
    let id = h.member_id("13800138006").await;
    let (s, b) = h
        .buy(
            json!({"order_id": "X-1", "member_id": id, "channel": "pos", "paid_amount": 100,
                    "lines": [{"sku": "A", "quantity": 1, "amount": -5}]}),
        )
        .await;
    assert_problem(s, &b, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(field_of(&b), "lines[0].amount");
    let (s, b) = h
        .buy(json!({"order_id": "X-2", "member_id": id, "channel": "pos", "paid_amount": 100, "store_id": "sto_01JD4ZQ7X8Y2K3M4N5P6Q7R8S9",
                    "lines": [{"sku": "A", "quantity": 1, "amount": 100}]}))
        .await;
    assert_problem(s, &b, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(field_of(&b), "store_id");
    let (s, b) = h.admin(Method::GET, "/v1/transactions/X-1", None).await;
    assert_problem(s, &b, StatusCode::NOT_FOUND, "not_found");
    let (s, b) = h
        .admin(
            Method::POST,
            &format!("/v1/members/{id}/points/adjustments"),
            Some(json!({"points": 10, "reason": "", "reference": "T-1"})),
        )
        .await;
    assert_problem(s, &b, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(field_of(&b), "reason");
    let auditor = h.key_for("auditor").await;
    let (s, _) = h
        .call(
            Some(&auditor),
            Method::POST,
            "/v1/transactions",
            Some(sale("X-3", &id, 1)),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let clerk = h.key_for("clerk").await;
    let (s, _) = h
        .call(
            Some(&clerk),
            Method::POST,
            &format!("/v1/members/{id}/points/adjustments"),
            Some(json!({"points": 10, "reason": "goodwill", "reference": "T-2"})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = h
        .call(Some(&clerk), Method::PUT, "/v1/programme", Some(json!({})))
        .await;
    assert!(s == StatusCode::FORBIDDEN || s == StatusCode::UNPROCESSABLE_ENTITY);
    // An adjustment by a marketer is audited with its reason.
    let marketer = h.key_for("marketer").await;
    let (s, b) = h
        .call(
            Some(&marketer),
            Method::POST,
            &format!("/v1/members/{id}/points/adjustments"),
            Some(json!({"points": 30, "reason": "missing points for SO-9", "reference": "T-3"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (_, audit) = h
        .admin(Method::GET, "/v1/audit-events?action=points.adjusted", None)
        .await;
    assert_eq!(
        audit["data"][0]["diff"]["reason"], "missing points for SO-9",
        "{audit}"
    );
    assert_eq!(h.balance(&id).await["available"], 30);
}

both_backends!(
    purchases_earn_itemised_points_once,
    concurrent_copies_of_an_order_earn_once,
    refund_after_spending_becomes_a_debt_repaid_first,
    tier_upgrades_on_the_crossing_purchase_and_downgrades_after_grace,
    member_day_birthday_and_tier_multipliers_stack,
    consecutive_months_earn_the_streak_bonus,
    tiers_on_visits_or_spend_upgrade_on_the_crossing_sale,
    transfers_keep_expiry_repay_debt_and_happen_once,
    opposite_transfers_at_once_neither_deadlock_nor_double_spend,
    preview_shows_what_a_basket_would_earn_without_recording_it,
    points_expire_after_maturing_and_ledger_verifies,
    bad_purchases_name_the_field_and_roles_are_enforced,
);
