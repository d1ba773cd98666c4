//! Analytics from the recorded purchases: RFM segments and retention, the dashboard, insights and recommendations.

use super::*;

/// Two buyers (a third's only purchase is refunded): as of 28 Feb, recency 18 and 8 days,
/// frequency 2 and 1, monetary 300 and 50 yuan; the means are 13 days, 1.5 and 175 yuan, so the
/// first is 重要保持 (important to retain) and the second 一般發展 (general to develop).
async fn analytics_segment_and_retain_from_the_recorded_purchases(backend: Backend) {
    let h = Harness::start(backend).await;
    h.publish_demo_programme().await;
    let (a, b, c) = (
        h.member_id("13800138012").await,
        h.member_id("13800138013").await,
        h.member_id("13800138014").await,
    );
    for (order, member, yuan, at) in [
        ("AN-1", &a, 100, "2026-01-10T12:00:00+08:00"),
        ("AN-2", &a, 200, "2026-02-10T12:00:00+08:00"),
        ("AN-3", &b, 50, "2026-02-20T12:00:00+08:00"),
        ("AN-4", &c, 500, "2026-01-05T12:00:00+08:00"),
    ] {
        let mut s = sale(order, member, yuan);
        s["occurred_at"] = json!(at);
        assert_eq!(h.buy(s).await.0, StatusCode::CREATED);
    }
    let (s, body) = post(
        &h,
        "/v1/transactions/AN-4/refunds",
        json!({"refund_id": "AN-4-R"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");

    let analyst = h.key_for("analyst").await;
    let (s, r) = h
        .call(
            Some(&analyst),
            Method::GET,
            "/v1/analytics/rfm?as_of=2026-02-28",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["members"], 2);
    assert_eq!(r["mean_recency_days"], 13.0);
    let counts: Vec<(&str, i64, i64)> = r["segments"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["members"].as_u64() > Some(0))
        .map(|s| {
            (
                s["segment"].as_str().unwrap(),
                s["members"].as_i64().unwrap(),
                s["revenue"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        counts,
        [("important_retain", 1, 30_000), ("general_development", 1, 5_000)]
    );
    let (s, cohorts) = h
        .call(
            Some(&analyst),
            Method::GET,
            "/v1/analytics/cohorts?as_of=2026-02-28",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{cohorts}");
    assert_eq!(
        cohorts,
        json!([
            {"month": "2026-01", "size": 1, "active": [1, 1], "rate": [1.0, 1.0]},
            {"month": "2026-02", "size": 1, "active": [1], "rate": [1.0]}
        ])
    );
    let clerk = h.key_for("clerk").await;
    let (s, e) = h.call(Some(&clerk), Method::GET, "/v1/analytics/rfm", None).await;
    assert_problem(s, &e, StatusCode::FORBIDDEN, "forbidden");
    let (s, e) = h
        .call(
            Some(&analyst),
            Method::GET,
            "/v1/analytics/rfm?as_of=28/02/2026",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(field_of(&e), "as_of");
}

async fn dashboard_insights_and_recommendations_follow_the_purchases(backend: Backend) {
    let h = Harness::start(backend).await;
    h.publish_demo_programme().await;
    let (_, store) = h
        .admin(
            Method::POST,
            "/v1/stores",
            Some(json!({"code": "SH01", "name": "上海店"})),
        )
        .await;
    let store = store["id"].as_str().unwrap().to_owned();
    let (a, b, c, d) = (
        h.member_id("13800138021").await,
        h.member_id("13800138022").await,
        h.member_id("13800138023").await,
        h.member_id("13800138024").await,
    );
    let line = |sku: &str, yuan: i64| json!({"sku": sku, "category": "apparel", "quantity": 1, "amount": yuan * 100});
    let basket = |order: &str, member: &str, at: &str, lines: Vec<Value>| {
        let paid: i64 = lines.iter().map(|l| l["amount"].as_i64().unwrap()).sum();
        json!({"order_id": order, "member_id": member, "channel": "pos", "occurred_at": at,
               "lines": lines, "paid_amount": paid})
    };
    // TEE and JEANS go together (a and b); a also bought SOCKS; c only a TEE; d nothing.
    let mut at_store = basket(
        "DB-1",
        &a,
        "2026-01-10T12:00:00+08:00",
        vec![line("TEE", 100), line("JEANS", 200)],
    );
    at_store["store_id"] = json!(store);
    for sale in [
        at_store,
        basket("DB-2", &a, "2026-02-10T12:00:00+08:00", vec![line("SOCKS", 20)]),
        basket(
            "DB-3",
            &b,
            "2026-02-12T12:00:00+08:00",
            vec![line("TEE", 100), line("JEANS", 200)],
        ),
        basket("DB-4", &c, "2026-02-20T12:00:00+08:00", vec![line("TEE", 100)]),
    ] {
        let (s, body) = h.buy(sale).await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
    }

    let analyst = h.key_for("analyst").await;
    let get = |key: &str, path: &str| {
        let (h, key, path) = (&h, key.to_owned(), path.to_owned());
        async move { h.call(Some(&key), Method::GET, &path, None).await }
    };
    let (s, k) = get(
        &analyst,
        "/v1/analytics/kpis?from=2026-01-01&to=2026-02-28&granularity=month",
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{k}");
    assert_eq!(k["currency"], "CNY");
    let buckets = k["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 2);
    let (jan, feb) = (&buckets[0], &buckets[1]);
    assert_eq!(
        (jan["start"].as_str(), jan["end"].as_str()),
        (Some("2026-01-01"), Some("2026-01-31"))
    );
    assert_eq!(
        (jan["orders"].as_u64(), jan["revenue"].as_i64()),
        (Some(1), Some(30_000))
    );
    assert_eq!(
        (feb["orders"].as_u64(), feb["revenue"].as_i64()),
        (Some(3), Some(42_000))
    );
    assert_eq!(
        (feb["active_members"].as_u64(), feb["returning_buyers"].as_u64()),
        (Some(3), Some(1))
    );
    assert_eq!(feb["average_order_value"], 14_000);
    assert_eq!(feb["repurchase_rate"], 0.0);
    // The members enrolled today, after these (back-dated) purchases: no ARPU in January.
    assert_eq!((jan["members"].as_u64(), jan["arpu"].is_null()), (Some(0), true));
    assert_eq!(k["total"]["orders"], 4);
    let tiers: Vec<(&str, u64)> = k["tiers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["code"].as_str().unwrap(), t["members"].as_u64().unwrap()))
        .collect();
    assert_eq!(tiers[0], ("regular", 4), "{tiers:?}");
    assert!(tiers[1..].iter().all(|t| t.1 == 0), "{tiers:?}");

    // The last 30 days (the default): four members joined; the points were recorded today.
    let (s, k) = get(&analyst, "/v1/analytics/kpis").await;
    assert_eq!(s, StatusCode::OK, "{k}");
    assert_eq!(k["buckets"].as_array().unwrap().len(), 30);
    let total = &k["total"];
    assert_eq!(
        (total["new_members"].as_u64(), total["members"].as_u64()),
        (Some(4), Some(4))
    );
    assert_eq!(
        (
            total["points_issued"].as_i64(),
            total["points_outstanding"].as_i64()
        ),
        (Some(720), Some(720))
    );
    assert_eq!(total["liability"], 720 * 5);
    assert_eq!(total["orders"], 0);
    // Outstanding points at a bucket's end count what was held before the window: nothing in
    // February (the points came later), all of it in a window after they were recorded.
    assert_eq!(feb["points_outstanding"], 0);
    let tomorrow = (h.core.now().to_offset(time::macros::offset!(+8)) + time::Duration::days(1)).date();
    let (s, k) = get(
        &analyst,
        &format!("/v1/analytics/kpis?from={tomorrow}&to={tomorrow}"),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{k}");
    assert_eq!(
        (
            k["total"]["points_issued"].as_i64(),
            k["total"]["points_outstanding"].as_i64()
        ),
        (Some(0), Some(720))
    );

    // One store: only its sale.
    let (s, k) = get(
        &analyst,
        &format!("/v1/analytics/kpis?from=2026-01-01&to=2026-02-28&store_id={store}"),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{k}");
    assert_eq!(
        (k["total"]["orders"].as_u64(), k["total"]["revenue"].as_i64()),
        (Some(1), Some(30_000))
    );
    let (s, k) = get(
        &analyst,
        "/v1/analytics/kpis?from=2026-01-01&to=2026-02-28&channel=web_shop",
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{k}");
    assert_eq!(k["total"]["orders"], 0);

    // Member insights: the RFM segment, the lifecycle stage, and a lifetime model or the reason
    // there is none; never a NaN.
    let (s, i) = get(&analyst, &format!("/v1/members/{a}/insights")).await;
    assert_eq!(s, StatusCode::OK, "{i}");
    assert_eq!(i["rfm"]["frequency"], 2);
    assert_eq!(i["rfm"]["monetary"], 32_000);
    assert!(i["computed_at"].as_str().is_some_and(|t| t.contains('T')), "{i}");
    // Joined at the first purchase (10 January), before the member record was made.
    assert_eq!(i["lifecycle_stage"], "dormant");
    assert!(
        i["lifetime"].is_null() != i["lifetime_unavailable"].is_null(),
        "{i}"
    );
    let (s, i) = get(&analyst, &format!("/v1/members/{d}/insights")).await;
    assert_eq!(s, StatusCode::OK, "{i}");
    assert!(i["rfm"].is_null(), "{i}");
    assert_eq!(i["lifecycle_stage"], "new");
    assert!(
        i["lifetime"].is_null() && i["lifetime_unavailable"].is_string(),
        "{i}"
    );
    let (s, l) = get(&analyst, "/v1/analytics/lifecycle").await;
    assert_eq!(s, StatusCode::OK, "{l}");
    let stages: Vec<(&str, u64)> = l["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["stage"].as_str().unwrap(), s["members"].as_u64().unwrap()))
        .collect();
    // d enrolled today; a, b and c last bought in February: dormant, or churned when the model
    // fits (it may not, on three customers).
    assert_eq!(l["members"], 4);
    assert_eq!(
        (stages[0], stages[1], stages[2]),
        (("new", 1), ("active", 0), ("at_risk", 0)),
        "{l}"
    );
    assert_eq!(stages[3].1 + stages[4].1, 3, "{l}");

    // Recommendations: c bought a TEE, which goes with JEANS (twice) and SOCKS (once, via a).
    let clerk = h.key_for("clerk").await;
    let items = |v: &Value| -> Vec<(String, String)> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["sku"].as_str().unwrap().to_owned(),
                    r["reason"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let (s, r) = get(&clerk, &format!("/v1/members/{c}/recommendations")).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(
        items(&r),
        [
            ("JEANS".into(), "bought_together".into()),
            ("SOCKS".into(), "bought_together".into())
        ]
    );
    assert_eq!(r["items"][0]["because_sku"], "TEE");
    // Nothing bought: the best sellers.
    let (_, r) = get(&clerk, &format!("/v1/members/{d}/recommendations?limit=2")).await;
    assert_eq!(
        items(&r),
        [
            ("TEE".into(), "popular".into()),
            ("JEANS".into(), "popular".into())
        ]
    );
    // What c buys now is left out at once, though the model was built before.
    let (s, body) = h
        .buy(basket(
            "DB-5",
            &c,
            "2026-03-01T12:00:00+08:00",
            vec![line("JEANS", 200)],
        ))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let (_, r) = get(&clerk, &format!("/v1/members/{c}/recommendations")).await;
    assert_eq!(items(&r)[0].0, "SOCKS", "{r}");

    // Roles and bad input.
    for path in [
        "/v1/analytics/kpis".to_owned(),
        format!("/v1/members/{a}/insights"),
    ] {
        let (s, e) = get(&clerk, &path).await;
        assert_problem(s, &e, StatusCode::FORBIDDEN, "forbidden");
    }
    for (path, field) in [
        ("/v1/analytics/kpis?granularity=year".to_owned(), "granularity"),
        (
            "/v1/analytics/kpis?from=2026-03-01&to=2026-02-01".to_owned(),
            "from",
        ),
        (
            "/v1/analytics/kpis?from=2020-01-01&to=2026-01-01".to_owned(),
            "granularity",
        ),
        ("/v1/analytics/kpis?store_id=sto_nope".to_owned(), "store_id"),
        ("/v1/analytics/kpis?channel=fax".to_owned(), "channel"),
        (format!("/v1/members/{a}/recommendations?limit=0"), "limit"),
        ("/v1/analytics/lifecycle?as_of=2026-13-01".to_owned(), "as_of"),
    ] {
        let (s, e) = get(&analyst, &path).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {e}");
        assert_eq!(field_of(&e), field, "{path}: {e}");
    }
}

both_backends!(
    analytics_segment_and_retain_from_the_recorded_purchases,
    dashboard_insights_and_recommendations_follow_the_purchases,
);
