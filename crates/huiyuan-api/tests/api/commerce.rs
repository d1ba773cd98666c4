//! Coupons, the wallet and the till, end to end over HTTP on both backends.

use std::sync::{Arc, Mutex};

use super::*;

impl Harness {
    pub(super) async fn template(&self, body: Value) -> Value {
        let (s, b) = self.admin(Method::POST, "/v1/coupon-templates", Some(body)).await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        b
    }

    pub(super) async fn issue(&self, member: &str, template: &Value, reference: &str) -> Value {
        let (s, b) = self
            .admin(
                Method::POST,
                &format!("/v1/members/{member}/coupons"),
                Some(json!({"template_id": template["id"], "reference": reference})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        b
    }

    async fn wallet(&self, member: &str) -> Value {
        let (s, b) = self
            .admin(Method::GET, &format!("/v1/members/{member}/wallet"), None)
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        b
    }

    async fn top_up(&self, member: &str, reference: &str, amount: i64) -> Value {
        let (s, b) = self
            .admin(
                Method::POST,
                &format!("/v1/members/{member}/wallet/top-ups"),
                Some(json!({"reference": reference, "amount": amount})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        b
    }

    /// Available, pending and debt.
    async fn buckets(&self, member: &str) -> (i64, i64, i64) {
        let b = self.balance(member).await;
        let n = |k: &str| b[k].as_i64().unwrap();
        (n("available"), n("pending"), n("debt"))
    }

    async fn coupon_status(&self, code: &str) -> String {
        let (s, b) = self
            .admin(Method::GET, &format!("/v1/coupons/{code}"), None)
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        b["status"].as_str().unwrap().to_owned()
    }

    /// A member with `yuan` of points available: bought, then past the return window.
    async fn member_with_points(&self, phone: &str, yuan: i64) -> String {
        let m = self.member_id(phone).await;
        let (s, b) = self.buy(sale(&format!("EARN-{phone}"), &m, yuan)).await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        self.clock.advance(time::Duration::days(8));
        self.run_jobs().await;
        m
    }
}

/// 滿100減20.
pub(super) fn threshold_coupon() -> Value {
    json!({"name": "滿100減20", "offer": {"kind": "threshold", "min_spend": 10_000, "amount": 2_000},
           "validity": {"kind": "days_after_issue", "days": 30}, "cost_per_redemption": 2_000})
}

fn basket(order: Option<&str>, member: &str, coupons: &[&str], points: i64, wallet: i64) -> Value {
    let mut b = json!({"member_id": member, "channel": "pos",
        "lines": [{"sku": "TEE", "category": "apparel", "quantity": 2, "amount": 16_000},
                  {"sku": "CAP", "category": "apparel", "quantity": 1, "amount": 4_000}],
        "coupons": coupons, "points": points, "wallet": wallet});
    if let Some(o) = order {
        b["order_id"] = json!(o);
    }
    b
}

/// The till's whole path: a member with points, money in the wallet and a 滿100減20 coupon buys
/// 200 yuan of goods. The quote and the commit agree to the minor unit; the sale happens once;
/// the refund gives back every coupon, point and wallet minor unit; every ledger verifies.
async fn till_sale_with_coupon_points_and_wallet_then_full_refund(backend: Backend) {
    let h = Harness::start_at(backend, ORDINARY_DAY).await;
    h.publish_demo_programme().await;
    let m = h.member_with_points("13800138100", 1_000).await;
    let topped = h.top_up(&m, "PAY-1", 100_000).await;
    assert_eq!(
        (topped["amount"].as_i64(), topped["bonus"].as_i64()),
        (Some(100_000), Some(10_000))
    );
    let t = h.template(threshold_coupon()).await;
    let coupon = h.issue(&m, &t, "CRM-1").await;
    let code = coupon["code"].as_str().unwrap();
    let points_before = h.balance(&m).await;
    let wallet_before = h.wallet(&m).await;
    assert_eq!(points_before["available"], 1_000);

    let (s, q) = h
        .admin(
            Method::POST,
            "/v1/checkout/quote",
            Some(basket(None, &m, &[code], 400, 5_000)),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{q}");
    let p = &q["priced"];
    assert_eq!(p["subtotal"], 20_000);
    assert_eq!(p["tier_discount"], 0, "regular members have no tier price");
    assert_eq!(p["coupons"][0]["discount"], 2_000);
    assert_eq!(p["total"], 18_000);
    assert_eq!(
        (p["points"]["used"].as_i64(), p["points"]["value"].as_i64()),
        (Some(400), Some(2_000))
    );
    assert_eq!(p["points"]["max_usable"], 1_000);
    assert_eq!(p["wallet"]["used"], 5_000);
    assert_eq!(p["money_due"], 11_000);
    assert_eq!(q["usable_coupons"][0]["coupon"]["code"], code);
    assert_eq!(q["usable_coupons"][0]["discount"], 2_000);
    // Nothing changed.
    assert_eq!(h.balance(&m).await["available"], 1_000);
    assert_eq!(h.coupon_status(code).await, "issued");

    let (s, sale) = h
        .admin(
            Method::POST,
            "/v1/checkout/commit",
            Some(basket(Some("SO-1"), &m, &[code], 400, 5_000)),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{sale}");
    assert_eq!(
        sale["priced"], q["priced"],
        "the commit paid exactly the quoted totals"
    );
    assert_eq!(sale["purchase"]["points"], q["points_to_earn"]);
    // Points are earned on the money paid (wallet included), not on the points-paid part.
    assert_eq!(sale["purchase"]["paid_amount"], 16_000);
    assert_eq!(h.coupon_status(code).await, "redeemed");
    let (s, redemptions) = h.admin(Method::GET, "/v1/coupon-redemptions", None).await;
    assert_eq!(s, StatusCode::OK, "{redemptions}");
    assert_eq!(redemptions[0]["code"], code, "the latest redemption comes first");
    assert_eq!(redemptions[0]["redeemed_order_id"], sale["order_id"]);
    let after = h.balance(&m).await;
    assert_eq!(after["available"], 600);
    let w = h.wallet(&m).await;
    assert_eq!(w["balance"], wallet_before["balance"].as_i64().unwrap() - 5_000);
    assert_eq!(
        w["principal"].as_i64().unwrap() + sale["wallet_principal"].as_i64().unwrap(),
        wallet_before["principal"].as_i64().unwrap()
    );
    // Sent again: the same sale, nothing more; with another tender: refused.
    let (s, again) = h
        .admin(
            Method::POST,
            "/v1/checkout/commit",
            Some(basket(Some("SO-1"), &m, &[code], 400, 5_000)),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{again}");
    assert_eq!(again["purchase"], sale["purchase"]);
    let (s, b) = h
        .admin(
            Method::POST,
            "/v1/checkout/commit",
            Some(basket(Some("SO-1"), &m, &[code], 0, 5_000)),
        )
        .await;
    assert_problem(s, &b, StatusCode::CONFLICT, "order_id_reused");
    assert_eq!(h.balance(&m).await["available"], 600);
    h.verify_ok().await;

    // A till sale is refunded through the till, which gives everything back.
    let (s, b) = h
        .admin(
            Method::POST,
            "/v1/transactions/SO-1/refunds",
            Some(json!({"refund_id": "RF-0"})),
        )
        .await;
    assert_problem(s, &b, StatusCode::CONFLICT, "use_checkout_refund");
    let (s, refund) = h
        .admin(
            Method::POST,
            "/v1/checkout/SO-1/refund",
            Some(json!({"refund_id": "RF-1", "reason": "returned"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{refund}");
    assert_eq!(refund["coupons_restored"], json!([coupon["id"]]));
    assert_eq!(refund["points_restored"], 400);
    assert_eq!(refund["money_returned"], 11_000);
    assert_eq!(h.coupon_status(code).await, "issued");
    let (_, redemptions) = h.admin(Method::GET, "/v1/coupon-redemptions", None).await;
    assert!(
        redemptions.as_array().unwrap().iter().all(|c| c["code"] != code),
        "a refunded sale's coupon leaves the redemptions"
    );
    let restored = h.balance(&m).await;
    assert_eq!(restored["available"], points_before["available"]);
    assert_eq!(restored["pending"], points_before["pending"]);
    assert_eq!(restored["debt"], points_before["debt"]);
    assert_eq!(h.wallet(&m).await, wallet_before);
    let (s, again) = h
        .admin(
            Method::POST,
            "/v1/checkout/SO-1/refund",
            Some(json!({"refund_id": "RF-1"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{again}");
    assert_eq!(again, refund);
    let (s, b) = h
        .admin(
            Method::POST,
            "/v1/checkout/SO-1/refund",
            Some(json!({"refund_id": "RF-2"})),
        )
        .await;
    assert_problem(s, &b, StatusCode::CONFLICT, "already_refunded");
    let (s, got) = h.admin(Method::GET, "/v1/checkout/SO-1", None).await;
    assert_eq!((s, got["status"].as_str()), (StatusCode::OK, Some("refunded")));
    // The coupon works again, and the whole story is in the events.
    let (s, b) = h
        .admin(
            Method::POST,
            "/v1/checkout/commit",
            Some(basket(Some("SO-2"), &m, &[code], 0, 0)),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (_, events) = h.admin(Method::GET, "/v1/events?limit=1000", None).await;
    let kinds: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    for k in [
        "coupon.issued",
        "wallet.topped_up",
        "coupon.redeemed",
        "sale.committed",
        "coupon.restored",
        "sale.refunded",
    ] {
        assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
    }
    h.verify_ok().await;
}

/// 200 redemptions of one single-use coupon at once — half through the online redeem, half
/// through till commits, spread over two server nodes on one database — make exactly one
/// success; the 199 others are told where and when it was used.
async fn one_coupon_two_hundred_concurrent_redemptions_on_two_nodes(backend: Backend) {
    let h = Harness::start(backend).await;
    h.publish_demo_programme().await;
    let m = h.member_id("13800138101").await;
    let t = h.template(threshold_coupon()).await;
    let coupon = h.issue(&m, &t, "CRM-1").await;
    let code = coupon["code"].as_str().unwrap().to_owned();
    let nodes = [h.base.clone(), h.second_server().await];
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let (http, key, node) = (h.http.clone(), h.admin_key.clone(), nodes[i % 2].clone());
        let (m, code) = (m.clone(), code.clone());
        tasks.spawn(async move {
            let req = if i % 4 < 2 {
                http.post(format!("{node}/v1/coupons/{code}/redeem"))
                    .json(&json!({
                    "order_id": format!("WEB-{i}"), "member_id": m, "channel": "web_shop",
                    "lines": [{"sku": "TEE", "category": "apparel", "quantity": 1, "amount": 12_000}]}))
            } else {
                http.post(format!("{node}/v1/checkout/commit")).json(&basket(
                    Some(&format!("POS-{i}")),
                    &m,
                    &[&code],
                    0,
                    0,
                ))
            };
            let res = req.bearer_auth(key).send().await.unwrap();
            let status = res.status();
            (status, res.json::<Value>().await.unwrap())
        });
    }
    let mut ok = 0;
    let mut refused = 0;
    while let Some(r) = tasks.join_next().await {
        let (status, body) = r.unwrap();
        if status.is_success() {
            ok += 1;
        } else {
            assert_problem(status, &body, StatusCode::CONFLICT, "coupon_redeemed");
            assert!(
                body["detail"].as_str().unwrap().contains("was already used"),
                "{body}"
            );
            refused += 1;
        }
    }
    assert_eq!((ok, refused), (1, 199));
    assert_eq!(h.coupon_status(&code).await, "redeemed");
    let (_, usage) = h.admin(Method::GET, "/v1/reports/coupon-usage", None).await;
    assert_eq!(usage[0]["redeemed"], 1, "{usage}");
    h.verify_ok().await;
}

/// A commit that fails at any step between the coupons and the commit itself leaves no trace:
/// no sale, no purchase, the coupon unused, points and wallet as they were.
async fn a_commit_failing_at_any_step_changes_nothing(backend: Backend) {
    let fail_at: Arc<Mutex<Option<String>>> = Arc::default();
    let hook = {
        let fail_at = fail_at.clone();
        Arc::new(move |step: &str| match fail_at.lock().unwrap().as_deref() {
            Some(s) if s == step => Err("injected".to_owned()),
            _ => Ok(()),
        })
    };
    let h = Harness::start_with_faults(backend, hook).await;
    h.publish_demo_programme().await;
    let m = h.member_with_points("13800138102", 1_000).await;
    h.top_up(&m, "PAY-1", 100_000).await;
    let t = h.template(threshold_coupon()).await;
    let code = h.issue(&m, &t, "CRM-1").await["code"]
        .as_str()
        .unwrap()
        .to_owned();
    let (points, wallet) = (h.buckets(&m).await, h.wallet(&m).await);
    for step in [
        "priced",
        "coupons",
        "points",
        "wallet",
        "purchase",
        "before_commit",
    ] {
        *fail_at.lock().unwrap() = Some(step.to_owned());
        let (s, b) = h
            .admin(
                Method::POST,
                "/v1/checkout/commit",
                Some(basket(Some("SO-F"), &m, &[&code], 400, 5_000)),
            )
            .await;
        assert_problem(s, &b, StatusCode::SERVICE_UNAVAILABLE, "unavailable");
        assert_eq!(
            h.coupon_status(&code).await,
            "issued",
            "after a failure at {step}"
        );
        assert_eq!(h.buckets(&m).await, points, "after a failure at {step}");
        assert_eq!(h.wallet(&m).await, wallet, "after a failure at {step}");
        let (s, _) = h.admin(Method::GET, "/v1/checkout/SO-F", None).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "after a failure at {step}");
        let (s, _) = h.admin(Method::GET, "/v1/transactions/SO-F", None).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "after a failure at {step}");
        h.verify_ok().await;
    }
    *fail_at.lock().unwrap() = None;
    let (s, b) = h
        .admin(
            Method::POST,
            "/v1/checkout/commit",
            Some(basket(Some("SO-F"), &m, &[&code], 400, 5_000)),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(h.coupon_status(&code).await, "redeemed");
    h.verify_ok().await;
}

/// Refusals a clerk can act on, at the quote and at the commit; nothing changes.
async fn coupon_refusals_tell_the_clerk_what_to_change(backend: Backend) {
    let h = Harness::start(backend).await;
    h.publish_demo_programme().await;
    let m = h.member_id("13800138103").await;
    let other = h.member_id("13800138104").await;
    let t = h.template(threshold_coupon()).await;
    let code = h.issue(&m, &t, "CRM-1").await["code"]
        .as_str()
        .unwrap()
        .to_owned();
    let small = json!({"member_id": m, "channel": "pos", "coupons": [code],
        "lines": [{"sku": "TEE", "category": "apparel", "quantity": 1, "amount": 8_000}]});
    let (s, q) = h
        .admin(Method::POST, "/v1/checkout/quote", Some(small.clone()))
        .await;
    assert_eq!(s, StatusCode::OK, "{q}");
    assert_eq!(
        q["priced"]["refused_coupons"][0]["message"],
        "minimum spend 100.00, basket 80.00"
    );
    assert_eq!(q["unusable_coupons"][0]["reason"]["reason"], "min_spend");
    let mut commit = small.clone();
    commit["order_id"] = json!("SO-S");
    let (s, b) = h.admin(Method::POST, "/v1/checkout/commit", Some(commit)).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(field_of(&b), "coupons");
    assert!(
        b["errors"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("minimum spend 100.00, basket 80.00"),
        "{b}"
    );
    assert_eq!(h.coupon_status(&code).await, "issued");
    // A typo in the code is caught by its check character, before any lookup.
    let mut typo = code.clone().into_bytes();
    typo[0] = if typo[0] == b'A' { b'B' } else { b'A' };
    let (s, b) = h
        .admin(
            Method::POST,
            "/v1/checkout/quote",
            Some(basket(None, &m, &[std::str::from_utf8(&typo).unwrap()], 0, 0)),
        )
        .await;
    assert_eq!(
        (s, field_of(&b)),
        (StatusCode::UNPROCESSABLE_ENTITY, "coupons[0]"),
        "{b}"
    );
    // Someone else's coupon; points or wallet beyond the member's means; an empty wallet.
    let (s, b) = h
        .admin(
            Method::POST,
            "/v1/checkout/commit",
            Some(basket(Some("SO-O"), &other, &[&code], 0, 0)),
        )
        .await;
    assert_problem(s, &b, StatusCode::CONFLICT, "coupon_not_yours");
    let (s, b) = h
        .admin(
            Method::POST,
            "/v1/checkout/commit",
            Some(basket(Some("SO-P"), &m, &[], 10, 100)),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let fields: Vec<&str> = b["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["points", "wallet"]);
    assert_eq!(b["errors"][1]["reason"], "the wallet is empty");
    // Used once at a store: the next try says where and when.
    let (_, store) = h
        .admin(
            Method::POST,
            "/v1/stores",
            Some(json!({"code": "SH01", "name": "上海店"})),
        )
        .await;
    let mut at_store = basket(Some("SO-1"), &m, &[&code], 0, 0);
    at_store["store_id"] = store["id"].clone();
    let (s, b) = h.admin(Method::POST, "/v1/checkout/commit", Some(at_store)).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, b) = h
        .admin(
            Method::POST,
            "/v1/checkout/commit",
            Some(basket(Some("SO-2"), &m, &[&code], 0, 0)),
        )
        .await;
    assert_problem(s, &b, StatusCode::CONFLICT, "coupon_redeemed");
    let detail = b["detail"].as_str().unwrap();
    assert!(
        detail.contains(store["id"].as_str().unwrap()) && detail.contains("order SO-1"),
        "{detail}"
    );
    // Two coupons, one not stackable: refused together.
    let c2 = h.issue(&m, &t, "CRM-2").await["code"]
        .as_str()
        .unwrap()
        .to_owned();
    let c3 = h.issue(&m, &t, "CRM-3").await["code"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, b) = h
        .admin(
            Method::POST,
            "/v1/checkout/commit",
            Some(basket(Some("SO-3"), &m, &[&c2, &c3], 0, 0)),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(
        b["errors"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("cannot be combined"),
        "{b}"
    );
    h.verify_ok().await;
}

/// Top-ups earn the programme's bonus; a refund claws it back in proportion (bonus spent is kept
/// back from the money returned); the wallet's ledger verifies; an empty wallet pays nothing.
async fn wallet_bonus_payments_and_top_up_refunds(backend: Backend) {
    let h = Harness::start(backend).await;
    h.publish_demo_programme().await;
    let m = h.member_id("13800138105").await;
    let first = h.top_up(&m, "PAY-1", 100_000).await;
    assert_eq!(
        (first["principal_after"].as_i64(), first["bonus_after"].as_i64()),
        (Some(100_000), Some(10_000))
    );
    // Sent again: nothing more.
    let (s, again) = h
        .admin(
            Method::POST,
            &format!("/v1/members/{m}/wallet/top-ups"),
            Some(json!({"reference": "PAY-1", "amount": 100_000})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{again}");
    let (s, b) = h
        .admin(
            Method::POST,
            &format!("/v1/members/{m}/wallet/top-ups"),
            Some(json!({"reference": "PAY-2", "amount": 5})),
        )
        .await;
    assert_eq!((s, field_of(&b)), (StatusCode::UNPROCESSABLE_ENTITY, "amount"));
    // Pay 550 of the 1,100: 500 principal, 50 bonus.
    let pay = json!({"order_id": "SO-1", "member_id": m, "channel": "pos", "wallet": 55_000,
        "lines": [{"sku": "COAT", "category": "apparel", "quantity": 1, "amount": 55_000}]});
    let (s, sale) = h.admin(Method::POST, "/v1/checkout/commit", Some(pay)).await;
    assert_eq!(s, StatusCode::CREATED, "{sale}");
    assert_eq!(
        (sale["wallet_principal"].as_i64(), sale["wallet_bonus"].as_i64()),
        (Some(50_000), Some(5_000))
    );
    assert_eq!(sale["money"], 0);
    let refund = |id: &str, amount: Option<i64>| {
        let h = &h;
        let m = m.clone();
        let id = id.to_owned();
        async move {
            h.admin(
                Method::POST,
                &format!("/v1/members/{m}/wallet/top-ups/PAY-1/refunds"),
                Some(json!({"refund_id": id, "amount": amount})),
            )
            .await
        }
    };
    // Half the principal was spent: the whole top-up cannot go back.
    let (s, b) = refund("R-1", None).await;
    assert_problem(s, &b, StatusCode::CONFLICT, "wallet_spent");
    let (s, r) = refund("R-2", Some(50_000)).await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    assert_eq!(r["bonus_clawed_back"], 5_000);
    assert_eq!(r["money_returned"], 50_000);
    assert_eq!(h.wallet(&m).await["balance"], 0);
    let (s, again) = refund("R-2", Some(50_000)).await;
    assert_eq!((s, &again), (StatusCode::OK, &r));
    // A zero-balance wallet is refused in a sale, not accepted as paying nothing.
    let empty = json!({"order_id": "SO-2", "member_id": m, "channel": "pos", "wallet": 100,
        "lines": [{"sku": "TEE", "quantity": 1, "amount": 1_000}]});
    let (s, b) = h.admin(Method::POST, "/v1/checkout/commit", Some(empty)).await;
    assert_eq!(
        (s, field_of(&b)),
        (StatusCode::UNPROCESSABLE_ENTITY, "wallet"),
        "{b}"
    );
    // Refunding the sale puts the money back where it came from.
    let (s, b) = h
        .admin(
            Method::POST,
            "/v1/checkout/SO-1/refund",
            Some(json!({"refund_id": "RS-1"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let w = h.wallet(&m).await;
    assert_eq!(
        (w["principal"].as_i64(), w["bonus"].as_i64()),
        (Some(50_000), Some(5_000))
    );
    let (_, entries) = h
        .admin(Method::GET, &format!("/v1/members/{m}/wallet/entries"), None)
        .await;
    let kinds: Vec<&str> = entries["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["pay_refund", "top_up_refund", "pay", "top_up"]);
    // Roles: a clerk tops up; a marketer may not.
    let marketer = h.key_for("marketer").await;
    let (s, b) = h
        .call(
            Some(&marketer),
            Method::POST,
            &format!("/v1/members/{m}/wallet/top-ups"),
            Some(json!({"reference": "PAY-3", "amount": 10_000})),
        )
        .await;
    assert_problem(s, &b, StatusCode::FORBIDDEN, "forbidden");
    let clerk = h.key_for("clerk").await;
    let (s, b) = h
        .call(
            Some(&clerk),
            Method::POST,
            &format!("/v1/members/{m}/wallet/top-ups"),
            Some(json!({"reference": "PAY-3", "amount": 10_000})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, b) = h
        .call(
            Some(&clerk),
            Method::POST,
            "/v1/coupon-templates",
            Some(threshold_coupon()),
        )
        .await;
    assert_problem(s, &b, StatusCode::FORBIDDEN, "forbidden");
    let (_, verify) = h.admin(Method::GET, "/v1/ledger/verify", None).await;
    assert_eq!(verify["problems"], json!([]), "{verify}");
    assert!(
        verify["wallets"].as_i64().unwrap() >= 1 && verify["wallet_entries"].as_i64().unwrap() >= 5,
        "{verify}"
    );
}

/// Claim codes give one coupon per member within the stock; the rewards catalogue sells a
/// coupon for points in one step; coupons past their validity expire by job; the usage report
/// flags what members do not use.
async fn claims_rewards_expiry_and_the_usage_report(backend: Backend) {
    let h = Harness::start(backend).await;
    h.publish_demo_programme().await;
    let mut welcome = threshold_coupon();
    welcome["claim_code"] = json!("welcome20");
    welcome["stock"] = json!(2);
    welcome["validity"] = json!({"kind": "days_after_issue", "days": 1});
    let t = h.template(welcome).await;
    assert_eq!(t["claim_code"], "WELCOME20");
    let claim = |m: String| {
        let h = &h;
        async move {
            h.admin(
                Method::POST,
                &format!("/v1/members/{m}/coupons/claim"),
                Some(json!({"claim_code": "Welcome20"})),
            )
            .await
        }
    };
    let (a, b, c) = (
        h.member_id("13800138106").await,
        h.member_id("13800138107").await,
        h.member_id("13800138108").await,
    );
    let (s, first) = claim(a.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{first}");
    let (s, again) = claim(a.clone()).await;
    assert_eq!((s, &again["id"]), (StatusCode::OK, &first["id"]));
    let (s, _) = claim(b.clone()).await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, out) = claim(c.clone()).await;
    assert_problem(s, &out, StatusCode::CONFLICT, "coupon_out_of_stock");
    // One of the two is used; a day later the other has expired.
    let code = first["code"].as_str().unwrap();
    let (s, used) = h
        .admin(
            Method::POST,
            "/v1/checkout/commit",
            Some(basket(Some("SO-1"), &a, &[code], 0, 0)),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{used}");
    h.clock.advance(time::Duration::days(2));
    h.run_jobs().await;
    let (_, b_coupons) = h
        .admin(Method::GET, &format!("/v1/members/{b}/coupons"), None)
        .await;
    assert_eq!(b_coupons["data"][0]["status"], "expired");
    let (s, report) = h
        .admin(Method::GET, "/v1/reports/coupon-usage?threshold=0.6", None)
        .await;
    assert_eq!(s, StatusCode::OK, "{report}");
    let line = &report[0];
    assert_eq!(
        (
            line["issued"].as_i64(),
            line["redeemed"].as_i64(),
            line["expired"].as_i64()
        ),
        (Some(2), Some(1), Some(1))
    );
    assert_eq!(line["redemption_rate"], 0.5);
    assert_eq!(line["cost"], 2_000);
    assert_eq!(line["below_threshold"], true);
    // The dashboard's 核銷率: of the coupons issued in the period, the share redeemed; with a
    // channel filter, only the redemptions made there count.
    let coupon_kpis = |channel: &'static str| {
        let h = &h;
        async move {
            let (s, k) = h
                .admin(Method::GET, &format!("/v1/analytics/kpis{channel}"), None)
                .await;
            assert_eq!(s, StatusCode::OK, "{k}");
            let t = &k["total"];
            (
                t["coupons_issued"].as_u64(),
                t["coupons_redeemed"].as_u64(),
                t["coupon_redemption_rate"].as_f64(),
            )
        }
    };
    assert_eq!(coupon_kpis("").await, (Some(2), Some(1), Some(0.5)));
    assert_eq!(coupon_kpis("?channel=pos").await, (Some(2), Some(1), Some(0.5)));
    assert_eq!(
        coupon_kpis("?channel=web_shop").await,
        (Some(2), Some(0), Some(0.0))
    );

    // The rewards catalogue: 1,000 points for a 50-yuan coupon.
    let reward = h
        .template(
            json!({"name": "50元券", "offer": {"kind": "fixed_amount", "amount": 5_000},
            "validity": {"kind": "days_after_issue", "days": 30}, "points_price": 1_000}),
        )
        .await;
    let poor = h.member_with_points("13800138109", 500).await;
    let (s, b2) = h
        .admin(
            Method::POST,
            &format!("/v1/members/{poor}/rewards"),
            Some(json!({"template_id": reward["id"], "reference": "RW-1"})),
        )
        .await;
    assert_problem(s, &b2, StatusCode::CONFLICT, "insufficient_points");
    let rich = h.member_with_points("13800138110", 1_500).await;
    let (s, got) = h
        .admin(
            Method::POST,
            &format!("/v1/members/{rich}/rewards"),
            Some(json!({"template_id": reward["id"], "reference": "RW-2"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{got}");
    assert_eq!(got["offer"]["amount"], 5_000);
    assert_eq!(h.balance(&rich).await["available"], 500);
    let (s, _) = h
        .admin(
            Method::POST,
            &format!("/v1/members/{rich}/rewards"),
            Some(json!({"template_id": reward["id"], "reference": "RW-2"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h.balance(&rich).await["available"], 500);
    h.verify_ok().await;
}

/// A bulk issue runs in the background with its progress, reports the members it could not
/// serve, stops at the stock, and is idempotent; partner codes go to one member each.
async fn bulk_issue_and_partner_codes(backend: Backend) {
    let h = Harness::start(backend).await;
    let mut members = Vec::new();
    for i in 0..250 {
        members.push(h.member_id(&format!("1390000{i:04}")).await);
    }
    let t = h.template(threshold_coupon()).await;
    let mut ids: Vec<Value> = members.iter().map(|m| json!(m)).collect();
    ids.push(json!("mem_01JD4ZQ7X8Y2K3M4N5P6Q7R8S9"));
    let path = format!("/v1/coupon-templates/{}/issue-bulk", t["id"].as_str().unwrap());
    let (s, headers, job) = h
        .call_full(
            Some(&h.admin_key),
            Method::POST,
            &path,
            Some(json!({"member_ids": ids, "reference": "BULK-1"})),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{job}");
    let status_url = headers["location"].to_str().unwrap().to_owned();
    assert_eq!(
        status_url,
        format!("/v1/bulk-jobs/{}", job["id"].as_str().unwrap())
    );
    let done = wait_for_job(&h, &status_url).await;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(
        (
            done["total"].as_i64(),
            done["succeeded"].as_i64(),
            done["failed"].as_i64()
        ),
        (Some(251), Some(250), Some(1))
    );
    assert_eq!(done["errors"][0]["code"], "not_found");
    assert_eq!(done["progress"], 1.0);
    let (_, coupons) = h
        .admin(Method::GET, &format!("/v1/members/{}/coupons", members[7]), None)
        .await;
    assert_eq!(coupons["data"].as_array().unwrap().len(), 1);
    // Sent again: the same job, nothing more issued.
    let (s, again) = h
        .admin(
            Method::POST,
            &path,
            Some(json!({"member_ids": ids, "reference": "BULK-1"})),
        )
        .await;
    assert_eq!((s, &again["id"]), (StatusCode::OK, &job["id"]));
    let (_, t_now) = h
        .admin(
            Method::GET,
            &format!("/v1/coupon-templates/{}", t["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(t_now["issued"], 250);
    // Within the stock only.
    let mut limited = threshold_coupon();
    limited["stock"] = json!(100);
    let lt = h.template(limited).await;
    let (s, job) = h
        .admin(
            Method::POST,
            &format!("/v1/coupon-templates/{}/issue-bulk", lt["id"].as_str().unwrap()),
            Some(json!({"member_ids": members[..150], "reference": "BULK-2"})),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{job}");
    let failed = wait_for_job(&h, &format!("/v1/bulk-jobs/{}", job["id"].as_str().unwrap())).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["succeeded"], 100);
    assert!(
        failed["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["code"] == "coupon_out_of_stock"),
        "{failed}"
    );

    // Partner codes: imported once, each handed out once, whatever the concurrency.
    let (s, pool) = h
        .admin(
            Method::POST,
            "/v1/partner-pools",
            Some(json!({"name": "咖啡一杯", "partner": "Café Lu"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{pool}");
    let pool_id = pool["id"].as_str().unwrap().to_owned();
    let (s, imported) = h
        .admin(
            Method::POST,
            &format!("/v1/partner-pools/{pool_id}/codes"),
            Some(json!({"codes": ["LU-1", "LU-2", "LU-3", "LU-1"]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{imported}");
    assert_eq!(
        (imported["added"].as_u64(), imported["duplicates"].as_u64()),
        (Some(3), Some(1))
    );
    let mut tasks = tokio::task::JoinSet::new();
    for m in members.iter().take(20) {
        let (http, base, key, m, pool_id) = (
            h.http.clone(),
            h.base.clone(),
            h.admin_key.clone(),
            m.clone(),
            pool_id.clone(),
        );
        tasks.spawn(async move {
            let res = http
                .post(format!("{base}/v1/members/{m}/partner-codes"))
                .bearer_auth(key)
                .json(&json!({"pool_id": pool_id, "reference": format!("PC-{m}")}))
                .send()
                .await
                .unwrap();
            let status = res.status();
            (status, res.json::<Value>().await.unwrap())
        });
    }
    let mut given = Vec::new();
    while let Some(r) = tasks.join_next().await {
        let (status, body) = r.unwrap();
        if status == StatusCode::CREATED {
            given.push(body["code"].as_str().unwrap().to_owned());
        } else {
            assert_problem(status, &body, StatusCode::CONFLICT, "partner_codes_exhausted");
        }
    }
    given.sort();
    assert_eq!(given, ["LU-1", "LU-2", "LU-3"]);
    let (_, pool_now) = h
        .admin(Method::GET, &format!("/v1/partner-pools/{pool_id}"), None)
        .await;
    assert_eq!(
        (pool_now["handed_out"].as_i64(), pool_now["left"].as_i64()),
        (Some(3), Some(0))
    );
}

/// A segment — by tier (the lowest includes members who never earned), tags, channel, plan,
/// RFM segment and lifecycle stage — previewed, then issued to in bulk; bad segments are 422s
/// naming the part at fault.
async fn bulk_issue_to_a_segment(backend: Backend) {
    let h = Harness::start_at(backend, ORDINARY_DAY).await;
    h.publish_demo_programme().await;
    let enrol = |phone: &str, tags: &[&str], channel: &str| {
        let body = json!({"phone": phone, "tags": tags, "channel": channel});
        let h = &h;
        async move { h.enrol(body).await["id"].as_str().unwrap().to_owned() }
    };
    let a = enrol("13800138200", &["vip"], "app").await;
    let b = enrol("13800138201", &["vip"], "mini_program").await;
    let c = enrol("13800138202", &[], "app").await;
    let d = enrol("13800138203", &["vip"], "app").await;
    let e = enrol("13800138204", &[], "pos").await;
    let (s, body) = h.buy(sale("SEG-1", &d, 6_000)).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(body["tier_change"]["to_tier"], "silver", "{body}");
    let (s, body) = h.buy(sale("SEG-2", &e, 50)).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let (s, body) = h
        .admin(
            Method::POST,
            &format!("/v1/members/{c}/plans"),
            Some(json!({"plan": "plus", "reference": "SEG-PLUS", "pay_with": "money"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let preview = |filter: Value| {
        let h = &h;
        async move {
            let (s, body) = h.admin(Method::POST, "/v1/segments/preview", Some(filter)).await;
            assert_eq!(s, StatusCode::OK, "{body}");
            let mut ids: Vec<String> = body["sample"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m.as_str().unwrap().to_owned())
                .collect();
            assert_eq!(body["members"].as_u64(), Some(ids.len() as u64), "{body}");
            ids.sort();
            ids
        }
    };
    let sorted = |mut v: Vec<&String>| {
        v.sort();
        v.into_iter().cloned().collect::<Vec<_>>()
    };
    assert_eq!(preview(json!({})).await.len(), 5);
    assert_eq!(preview(json!({"tiers": ["silver"]})).await, vec![d.clone()]);
    // Regular: those who never earned (a, b, c) and e, who earned too little.
    assert_eq!(
        preview(json!({"tiers": ["regular"]})).await,
        sorted(vec![&a, &b, &c, &e])
    );
    assert_eq!(
        preview(json!({"tiers": ["regular"], "tags": ["vip"]})).await,
        sorted(vec![&a, &b])
    );
    assert_eq!(
        preview(json!({"tags": ["vip"], "channels": ["app"]})).await,
        sorted(vec![&a, &d])
    );
    assert_eq!(preview(json!({"plans": ["plus"]})).await, vec![c.clone()]);
    let all_rfm = json!([
        "important_value",
        "important_development",
        "important_retain",
        "important_win_back",
        "general_value",
        "general_development",
        "general_retain",
        "general_win_back"
    ]);
    assert_eq!(
        preview(json!({"rfm_segments": all_rfm})).await,
        sorted(vec![&d, &e])
    );
    assert_eq!(
        preview(json!({"lifecycle_stages": ["new"], "channels": ["pos"]})).await,
        vec![e.clone()]
    );
    assert!(preview(json!({"lifecycle_stages": ["dormant"]})).await.is_empty());
    // Bad segments name the part at fault and change nothing.
    for (filter, field) in [
        (json!({"tiers": ["ruby"]}), "tiers[0]"),
        (json!({"rfm_segments": []}), "rfm_segments"),
        (json!({"lifecycle_stages": ["asleep"]}), "lifecycle_stages[0]"),
        (json!({"channels": ["fax"]}), "channels[0]"),
        (json!({"plans": ["gold"]}), "plans[0]"),
    ] {
        let (s, body) = h.admin(Method::POST, "/v1/segments/preview", Some(filter)).await;
        assert_problem(s, &body, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        assert_eq!(body["errors"][0]["field"], field, "{body}");
    }

    let t = h.template(threshold_coupon()).await;
    let path = format!("/v1/coupon-templates/{}/issue-bulk", t["id"].as_str().unwrap());
    let segment = json!({"tags": ["vip"], "channels": ["app"]});
    for (body, field) in [
        (
            json!({"segment": segment, "member_ids": [a], "reference": "SEG-X"}),
            "segment",
        ),
        (json!({"reference": "SEG-X"}), "member_ids"),
        (
            json!({"segment": {"tiers": ["diamond"]}, "reference": "SEG-X"}),
            "segment",
        ),
    ] {
        let (s, b) = h.admin(Method::POST, &path, Some(body)).await;
        assert_problem(s, &b, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        assert_eq!(b["errors"][0]["field"], field, "{b}");
    }
    let (s, job) = h
        .admin(
            Method::POST,
            &path,
            Some(json!({"segment": segment, "reference": "SEG-BULK"})),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{job}");
    let status_url = format!("/v1/bulk-jobs/{}", job["id"].as_str().unwrap());
    let done = wait_for_job(&h, &status_url).await;
    assert_eq!(
        (
            done["status"].as_str(),
            done["total"].as_i64(),
            done["succeeded"].as_i64()
        ),
        (Some("done"), Some(2), Some(2)),
        "{done}"
    );
    for (m, held) in [(&a, 1), (&b, 0), (&c, 0), (&d, 1), (&e, 0)] {
        let (_, coupons) = h
            .admin(Method::GET, &format!("/v1/members/{m}/coupons"), None)
            .await;
        assert_eq!(coupons["data"].as_array().unwrap().len(), held, "{m}");
    }
    // Sent again after the segment grew: the same job, its members fixed when it was made.
    enrol("13800138205", &["vip"], "app").await;
    let (s, again) = h
        .admin(
            Method::POST,
            &path,
            Some(json!({"segment": segment, "reference": "SEG-BULK"})),
        )
        .await;
    assert_eq!(
        (s, &again["id"], &again["total"]),
        (StatusCode::OK, &job["id"], &json!(2))
    );
}

pub(super) async fn wait_for_job(h: &Harness, url: &str) -> Value {
    for _ in 0..200 {
        let (s, job) = h.admin(Method::GET, url, None).await;
        assert_eq!(s, StatusCode::OK, "{job}");
        if job["status"] == "done" || job["status"] == "failed" {
            return job;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the bulk job did not finish in 20 s");
}

/// A paid plan (PLUS: 99 yuan a year, 5% off, points ×2): bought, renewed ahead, its benefits
/// at the till and on earning, refunded by its rules (to the wallet when paid from it), lapsing
/// when not renewed, and the renewal rate.
async fn paid_plans_buy_renew_refund_lapse_and_report(backend: Backend) {
    let h = Harness::start(backend).await;
    h.publish_demo_programme().await;
    let m = h.member_id("13800138120").await;
    let other = h.member_id("13800138121").await;
    let buy = |member: String, reference: &str, pay_with: &str| {
        let h = &h;
        let body = json!({"plan": "plus", "reference": reference, "pay_with": pay_with});
        async move {
            h.admin(Method::POST, &format!("/v1/members/{member}/plans"), Some(body))
                .await
        }
    };
    let (s, first) = buy(m.clone(), "PLUS-1", "money").await;
    assert_eq!(s, StatusCode::CREATED, "{first}");
    assert!(first["renewal_of"].is_null());
    let (s, again) = buy(m.clone(), "PLUS-1", "money").await;
    assert_eq!((s, &again["id"]), (StatusCode::OK, &first["id"]));
    // At the till: the plan's 5% beats the regular tier's nothing, its perks are offered, and
    // its ×2 multiplier shows in the earning.
    let one_tee = json!({"member_id": m, "channel": "pos",
        "lines": [{"sku": "TEE", "category": "apparel", "quantity": 1, "amount": 10_000}]});
    let (_, q) = h
        .admin(Method::POST, "/v1/checkout/quote", Some(one_tee.clone()))
        .await;
    assert_eq!(q["member"]["plan"], "plus", "{q}");
    assert_eq!(q["priced"]["tier_discount"], 500);
    assert!(q["member"]["perks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p.as_str().unwrap().contains("Free shipping")));
    let (s, bought) = h.buy(sale("SO-P1", &m, 100)).await;
    assert_eq!(s, StatusCode::CREATED, "{bought}");
    let items = bought["purchase"]["earning"]["items"].as_array().unwrap();
    assert!(items.iter().any(|i| i["source"] == "plan:plus"), "{items:?}");
    // Renewed ahead: the new term starts where the first ends.
    let (s, second) = buy(m.clone(), "PLUS-2", "money").await;
    assert_eq!(s, StatusCode::CREATED, "{second}");
    assert_eq!(second["starts_at"], first["ends_at"]);
    assert_eq!(second["renewal_of"], first["id"]);
    let (_, plans) = h
        .admin(Method::GET, &format!("/v1/members/{m}/plans"), None)
        .await;
    assert_eq!(plans["current"], "plus");
    assert_eq!(plans["covered_until"], second["ends_at"]);
    // The renewal has not started: refunded in full.
    let refund = |member: String, term: &str, id: &str| {
        let h = &h;
        let path = format!("/v1/members/{member}/plans/{term}/refunds");
        let body = json!({ "refund_id": id });
        async move { h.admin(Method::POST, &path, Some(body)).await }
    };
    let (s, r) = refund(m.clone(), "PLUS-2", "PR-1").await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    assert_eq!(r["amount"], 9_900);
    let (s, b) = refund(m.clone(), "PLUS-2", "PR-2").await;
    assert_problem(s, &b, StatusCode::CONFLICT, "already_refunded");
    // Paid from the wallet, refunded after the cooling-off: the unused share, back to the wallet.
    h.top_up(&other, "PAY-1", 20_000).await;
    let (s, w_term) = buy(other.clone(), "PLUS-3", "wallet").await;
    assert_eq!(s, StatusCode::CREATED, "{w_term}");
    assert_eq!(h.wallet(&other).await["balance"], 20_000 - 9_900);
    h.clock.advance(time::Duration::days(30));
    let (s, r) = refund(other.clone(), "PLUS-3", "PR-3").await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let back = r["amount"].as_i64().unwrap();
    assert!(back > 9_900 * 330 / 366 && back < 9_900 * 336 / 365, "{back}");
    assert_eq!(
        h.wallet(&other).await["balance"].as_i64().unwrap(),
        20_000 - 9_900 + back
    );
    // A year on, the first term ends without a renewal: lapsed once, and no discount any more.
    h.clock.advance(time::Duration::days(370));
    h.run_jobs().await;
    h.run_jobs().await;
    let (_, events) = h.admin(Method::GET, "/v1/events?limit=1000", None).await;
    let lapsed = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "membership.lapsed")
        .count();
    assert_eq!(lapsed, 1);
    let (_, q) = h.admin(Method::POST, "/v1/checkout/quote", Some(one_tee)).await;
    assert!(q["member"]["plan"].is_null(), "{q}");
    assert_eq!(q["priced"]["tier_discount"], 0);
    // The renewal rate of the terms that ended: the first, not renewed (its renewal was refunded).
    let fmt = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
            .replace('+', "%2B")
    };
    let now = h.core.now();
    let (s, report) = h
        .admin(
            Method::GET,
            &format!(
                "/v1/reports/plan-renewals?from={}&to={}",
                fmt(now - time::Duration::days(400)),
                fmt(now)
            ),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{report}");
    assert_eq!(
        (report[0]["ended"].as_i64(), report[0]["renewed"].as_i64()),
        (Some(1), Some(0)),
        "{report}"
    );
    h.verify_ok().await;
}

/// The benefit usage report: per benefit of each tier and plan, the members entitled now and
/// those who used it — the tier's discount at the till, a perk handed over, a partner code, the
/// points multiplier on purchases, a plan's discount and perks — flagged under the threshold.
async fn benefit_usage_per_tier_and_plan(backend: Backend) {
    let h = Harness::start_at(backend, ORDINARY_DAY).await;
    h.publish_demo_programme().await;
    // Two silver members (5,000 points qualifies), two regular ones, one with the PLUS plan.
    let (s1, s2) = (h.member_id("13800138130").await, h.member_id("13800138131").await);
    for (i, m) in [&s1, &s2].into_iter().enumerate() {
        let (s, b) = h.buy(sale(&format!("UP-{i}"), m, 6_000)).await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        assert_eq!(b["tier_change"]["to_tier"], "silver", "{b}");
    }
    let (r1, r2) = (h.member_id("13800138132").await, h.member_id("13800138133").await);
    let p1 = h.member_id("13800138134").await;
    let (s, b) = h
        .admin(
            Method::POST,
            &format!("/v1/members/{p1}/plans"),
            Some(json!({"plan": "plus", "reference": "PLUS-B1", "pay_with": "money"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    // At the till: silver's 10% for s1, the plan's 5% for p1 (regular has no discount).
    for (order, m) in [("TILL-1", &s1), ("TILL-2", &p1)] {
        let (s, b) = h
            .admin(
                Method::POST,
                "/v1/checkout/commit",
                Some(basket(Some(order), m, &[], 0, 0)),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
    }
    // Perks: silver's gift wrap for s2 (once, however often it is sent); the plan's free
    // shipping for p1; refused to a regular member, naming who has it; unknown perks are 422s.
    let perk = |m: &str, perk: &str, reference: &str| {
        let h = &h;
        let (path, body) = (
            format!("/v1/members/{m}/perk-uses"),
            json!({"perk": perk, "reference": reference}),
        );
        async move { h.admin(Method::POST, &path, Some(body)).await }
    };
    let wrap = "免費禮品包裝 Free gift wrap";
    let (s, used) = perk(&s2, wrap, "WRAP-1").await;
    assert_eq!(s, StatusCode::CREATED, "{used}");
    assert_eq!(
        (used["benefit"].as_str(), used["tier"].as_str()),
        (Some("perk"), Some("silver"))
    );
    let (s, again) = perk(&s2, wrap, "WRAP-1").await;
    assert_eq!((s, &again["id"]), (StatusCode::OK, &used["id"]));
    let (s, b) = perk(&r1, wrap, "WRAP-2").await;
    assert_problem(s, &b, StatusCode::CONFLICT, "perk_not_available");
    assert!(b["detail"].as_str().unwrap().contains("銀卡"), "{b}");
    let (s, b) = perk(&r1, "a pony", "PONY-1").await;
    assert_problem(s, &b, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(b["errors"][0]["field"], "perk");
    let (s, b) = perk(&p1, "免運費 Free shipping", "SHIP-1").await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(
        (b["benefit"].as_str(), b["plan"].as_str()),
        (Some("plan_perk"), Some("plus"))
    );
    // A partner code for r2.
    let (_, pool) = h
        .admin(
            Method::POST,
            "/v1/partner-pools",
            Some(json!({"name": "咖啡一杯", "partner": "Café Lu"})),
        )
        .await;
    let pool_id = pool["id"].as_str().unwrap().to_owned();
    h.admin(
        Method::POST,
        &format!("/v1/partner-pools/{pool_id}/codes"),
        Some(json!({"codes": ["LU-1"]})),
    )
    .await;
    let (s, b) = h
        .admin(
            Method::POST,
            &format!("/v1/members/{r2}/partner-codes"),
            Some(json!({"pool_id": pool_id, "reference": "LU-R2"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");

    let (s, report) = h
        .admin(Method::GET, "/v1/reports/benefit-usage?threshold=0.6", None)
        .await;
    assert_eq!(s, StatusCode::OK, "{report}");
    let lines = report["lines"].as_array().unwrap();
    let find = |benefit: &str, holder: &str, code: Option<&str>| {
        lines
            .iter()
            .find(|l| {
                l["benefit"] == benefit
                    && (l["tier"] == holder || l["plan"] == holder)
                    && l["code"].as_str() == code
            })
            .unwrap_or_else(|| panic!("no {benefit} of {holder} in {report}"))
    };
    let figures = |l: &Value| {
        (
            l["eligible"].as_i64().unwrap(),
            l["used"].as_i64().unwrap(),
            l["below_threshold"].as_bool().unwrap(),
        )
    };
    assert_eq!(figures(find("tier_discount", "silver", None)), (2, 1, true));
    assert_eq!(find("tier_discount", "silver", None)["label"], "10% off");
    assert_eq!(figures(find("perk", "silver", Some(wrap))), (2, 1, true));
    // Both silver members earned on purchases with silver's ×1.2 (current tier).
    assert_eq!(figures(find("points_multiplier", "silver", None)), (2, 2, false));
    // Three regular members (r1, r2, p1): one partner code.
    assert_eq!(
        figures(find("partner_code", "regular", Some(&pool_id))),
        (3, 1, true)
    );
    assert_eq!(figures(find("plan_discount", "plus", None)), (1, 1, false));
    assert_eq!(
        figures(find("plan_perk", "plus", Some("免運費 Free shipping"))),
        (1, 1, false)
    );
    assert_eq!(
        figures(find("plan_points_multiplier", "plus", None)),
        (1, 1, false)
    );
    // Nobody is gold: no rate, no flag.
    let gold = find("tier_discount", "gold", None);
    assert!(
        gold["usage_rate"].is_null() && gold["below_threshold"] == false,
        "{gold}"
    );
    // Bad input is refused, naming the field.
    let (s, b) = h
        .admin(Method::GET, "/v1/reports/benefit-usage?threshold=2", None)
        .await;
    assert_problem(s, &b, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    let (s, b) = h
        .admin(Method::GET, "/v1/reports/benefit-usage?from=2026-13-01", None)
        .await;
    assert_problem(s, &b, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(b["errors"][0]["field"], "from");
    h.verify_ok().await;
}

both_backends!(
    benefit_usage_per_tier_and_plan,
    paid_plans_buy_renew_refund_lapse_and_report,
    bulk_issue_and_partner_codes,
    bulk_issue_to_a_segment,
    till_sale_with_coupon_points_and_wallet_then_full_refund,
    one_coupon_two_hundred_concurrent_redemptions_on_two_nodes,
    a_commit_failing_at_any_step_changes_nothing,
    coupon_refusals_tell_the_clerk_what_to_change,
    wallet_bonus_payments_and_top_up_refunds,
    claims_rewards_expiry_and_the_usage_report,
);
