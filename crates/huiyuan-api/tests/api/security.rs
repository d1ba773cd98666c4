//! Security over HTTP on both backends: every route × every role, with the expected outcome
//! written down once (`ROUTE_ROLES`); hostile and oversized input on search.

use super::*;

/// A route anyone may call, without a key.
const PUBLIC: &str = "public";
/// Every role of a brand.
const EVERYONE: &str = "admin marketer clerk analyst auditor";
const ROLES: [&str; 5] = ["admin", "marketer", "clerk", "analyst", "auditor"];

/// Who may call each operation of the OpenAPI document: `PUBLIC`, or the roles that may (every
/// other role gets `403 forbidden`, no key gets `401`). This table is the one place the expected
/// outcome is written; an operation missing here, or listed here but not served, fails the test,
/// so no route ships without a decision about who may call it. It is written from
/// docs/permissions.md by hand, not from the code it checks.
const ROUTE_ROLES: &[(&str, &str, &str)] = &[
    ("get", "/healthz", PUBLIC),
    ("get", "/readyz", PUBLIC),
    ("get", "/metrics", PUBLIC),
    ("post", "/v1/auth/login", PUBLIC),
    ("post", "/v1/auth/logout", EVERYONE),
    ("get", "/v1/me", EVERYONE),
    // Analytics: analytics.read.
    ("get", "/v1/analytics/clv", "admin marketer analyst"),
    ("get", "/v1/analytics/cohorts", "admin marketer analyst"),
    ("get", "/v1/analytics/kpis", "admin marketer analyst"),
    ("get", "/v1/analytics/lifecycle", "admin marketer analyst"),
    ("get", "/v1/analytics/rfm", "admin marketer analyst"),
    ("get", "/v1/members/{id}/insights", "admin marketer analyst"),
    // Next-best offers are shown at the till: members.read.
    ("get", "/v1/members/{id}/recommendations", EVERYONE),
    // A count and a sample of member IDs, which every role may list anyway: members.read.
    ("post", "/v1/segments/preview", EVERYONE),
    ("get", "/v1/reports/benefit-usage", "admin marketer analyst"),
    ("get", "/v1/reports/coupon-usage", "admin marketer analyst"),
    ("get", "/v1/reports/plan-renewals", "admin marketer analyst"),
    // Access: api_keys.manage, operators.manage, audit.read.
    ("get", "/v1/api-keys", "admin"),
    ("post", "/v1/api-keys", "admin"),
    ("post", "/v1/api-keys/{id}/revoke", "admin"),
    ("get", "/v1/operators", "admin"),
    ("post", "/v1/operators", "admin"),
    ("patch", "/v1/operators/{id}", "admin"),
    ("get", "/v1/audit-events", "admin auditor"),
    // Brand and stores.
    ("get", "/v1/brand", EVERYONE),
    ("patch", "/v1/brand", "admin"),
    ("get", "/v1/stores", EVERYONE),
    ("post", "/v1/stores", "admin"),
    ("get", "/v1/stores/{id}", EVERYONE),
    ("patch", "/v1/stores/{id}", "admin"),
    // Members.
    ("get", "/v1/members", EVERYONE),
    ("post", "/v1/members", "admin marketer clerk"),
    ("post", "/v1/members/search", EVERYONE),
    ("get", "/v1/members/{id}", EVERYONE),
    ("patch", "/v1/members/{id}", "admin marketer clerk"),
    ("post", "/v1/members/{id}/merge", "admin marketer"),
    ("post", "/v1/members/{id}/erase", "admin"),
    ("get", "/v1/members/{id}/export", "admin"),
    ("post", "/v1/members/{id}/code", "admin marketer"),
    ("post", "/v1/codes/verify", "admin clerk"),
    // Identifying reads (the body here does not enrol; enrolling needs members.enrol).
    ("post", "/v1/till/identify", EVERYONE),
    // Programme.
    ("get", "/v1/programme", EVERYONE),
    ("put", "/v1/programme", "admin marketer"),
    ("get", "/v1/programme/versions", EVERYONE),
    ("post", "/v1/programme/preview", EVERYONE),
    // Purchases and points.
    ("post", "/v1/transactions", "admin marketer clerk"),
    ("post", "/v1/transactions/batch", "admin marketer clerk"),
    ("get", "/v1/transactions/{order_id}", EVERYONE),
    ("post", "/v1/transactions/{order_id}/refunds", "admin clerk"),
    ("get", "/v1/members/{id}/purchases", EVERYONE),
    ("get", "/v1/members/{id}/points", EVERYONE),
    ("get", "/v1/members/{id}/points/entries", EVERYONE),
    ("post", "/v1/members/{id}/points/adjustments", "admin marketer"),
    (
        "post",
        "/v1/members/{id}/points/redemptions",
        "admin marketer clerk",
    ),
    (
        "post",
        "/v1/members/{id}/points/transfers",
        "admin marketer clerk",
    ),
    ("post", "/v1/members/{id}/points/actions", "admin marketer clerk"),
    ("get", "/v1/members/{id}/points/verify", "admin auditor"),
    ("get", "/v1/members/{id}/tier/history", EVERYONE),
    ("get", "/v1/ledger/verify", "admin auditor"),
    ("get", "/v1/events", "admin auditor"),
    ("post", "/v1/jobs/run", "admin"),
    // Coupons.
    ("get", "/v1/coupon-templates", EVERYONE),
    ("get", "/v1/coupon-redemptions", "admin marketer"),
    ("post", "/v1/coupon-templates", "admin marketer"),
    ("get", "/v1/coupon-templates/{id}", EVERYONE),
    ("post", "/v1/coupon-templates/{id}/archive", "admin marketer"),
    ("post", "/v1/coupon-templates/{id}/issue-bulk", "admin marketer"),
    ("get", "/v1/bulk-jobs/{id}", "admin marketer clerk"),
    ("get", "/v1/bulk-jobs/{id}/rejected", "admin marketer clerk"),
    ("get", "/v1/members/{id}/coupons", EVERYONE),
    ("post", "/v1/members/{id}/coupons", "admin marketer"),
    ("post", "/v1/members/{id}/coupons/claim", "admin marketer clerk"),
    ("post", "/v1/members/{id}/rewards", "admin marketer clerk"),
    ("get", "/v1/coupons/{code}", EVERYONE),
    ("post", "/v1/coupons/{code}/redeem", "admin marketer clerk"),
    // Pools show counts, never codes.
    ("get", "/v1/partner-pools", EVERYONE),
    ("post", "/v1/partner-pools", "admin marketer"),
    ("get", "/v1/partner-pools/{id}", EVERYONE),
    ("post", "/v1/partner-pools/{id}/codes", "admin marketer"),
    ("get", "/v1/members/{id}/partner-codes", EVERYONE),
    ("post", "/v1/members/{id}/partner-codes", "admin marketer"),
    // Paid plans and perks.
    ("get", "/v1/members/{id}/plans", EVERYONE),
    ("post", "/v1/members/{id}/plans", "admin marketer clerk"),
    (
        "post",
        "/v1/members/{id}/plans/{reference}/refunds",
        "admin clerk",
    ),
    ("post", "/v1/members/{id}/perk-uses", "admin marketer clerk"),
    // Wallet.
    ("get", "/v1/members/{id}/wallet", EVERYONE),
    ("get", "/v1/members/{id}/wallet/entries", EVERYONE),
    ("post", "/v1/members/{id}/wallet/top-ups", "admin clerk"),
    (
        "post",
        "/v1/members/{id}/wallet/top-ups/{reference}/refunds",
        "admin clerk",
    ),
    // The till.
    ("post", "/v1/checkout/quote", "admin marketer clerk"),
    ("post", "/v1/checkout/commit", "admin marketer clerk"),
    ("get", "/v1/checkout/{order_id}", EVERYONE),
    ("post", "/v1/checkout/{order_id}/refund", "admin clerk"),
    // Bulk data.
    ("post", "/v1/imports/members", "admin marketer clerk"),
    ("post", "/v1/imports/transactions", "admin marketer clerk"),
    ("get", "/v1/exports/{kind}", "admin marketer analyst auditor"),
];

/// The records the matrix calls routes on, made by the brand's admin beforehand.
struct Fixtures {
    member: String,
    /// Receives transfers.
    other: String,
    /// Erased by the first role allowed to.
    erased: String,
    /// Merged into `member` by the first role allowed to.
    merged: String,
    store: String,
    operator: String,
    /// A key that the first role allowed to revoke revokes (not one the test calls with).
    spare_key: String,
    template: String,
    coupon: String,
    pool: String,
    job: String,
}

impl Harness {
    async fn fixtures(&self) -> Fixtures {
        self.publish_demo_programme().await;
        let member = self.member_id("13800138000").await;
        let ok = |s: StatusCode, b: &Value| assert!(s.is_success(), "{s} {b}");
        let (s, b) = self.buy(sale("ORD-1", &member, 500)).await;
        ok(s, &b);
        self.clock.advance(time::Duration::days(8));
        self.run_jobs().await;
        let post = |path: String, body: Value| async move {
            let (s, b) = self.admin(Method::POST, &path, Some(body)).await;
            assert!(s.is_success(), "{path}: {s} {b}");
            b
        };
        post(
            format!("/v1/members/{member}/wallet/top-ups"),
            json!({"reference": "TOP-1", "amount": 100_000}),
        )
        .await;
        post(
            format!("/v1/members/{member}/plans"),
            json!({"plan": "plus", "reference": "PLAN-1", "pay_with": "money"}),
        )
        .await;
        post(
            "/v1/checkout/commit".into(),
            json!({"order_id": "SALE-1", "member_id": member, "channel": "pos",
                   "lines": [{"sku": "TEE", "quantity": 1, "amount": 10_000}]}),
        )
        .await;
        let store = post("/v1/stores".into(), json!({"code": "S1", "name": "一号店"})).await;
        let operator = post(
            "/v1/operators".into(),
            json!({"username": format!("op-{}", huiyuan_core::crypto::random_token(6).to_lowercase()),
                   "display_name": "店員", "role": "clerk", "password": "long enough pw"}),
        )
        .await;
        let spare = post("/v1/api-keys".into(), json!({"name": "spare", "role": "clerk"})).await;
        let template = post(
            "/v1/coupon-templates".into(),
            json!({"name": "滿100減20", "offer": {"kind": "threshold", "min_spend": 10_000, "amount": 2_000},
                   "validity": {"kind": "days_after_issue", "days": 30}}),
        )
        .await;
        let coupon = post(
            format!("/v1/members/{member}/coupons"),
            json!({"template_id": template["id"], "reference": "CPN-1"}),
        )
        .await;
        let pool = post(
            "/v1/partner-pools".into(),
            json!({"name": "咖啡", "partner": "Café Lu"}),
        )
        .await;
        let (s, job) = self
            .upload("/v1/imports/members", b"phone\n13800138111\n".to_vec())
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{job}");
        let id = |v: &Value| v["id"].as_str().unwrap().to_owned();
        Fixtures {
            other: self.member_id("13800138001").await,
            erased: self.member_id("13800138002").await,
            merged: self.member_id("13800138003").await,
            member,
            store: id(&store),
            operator: id(&operator),
            spare_key: spare["key"]["id"].as_str().unwrap().to_owned(),
            template: id(&template),
            coupon: coupon["code"].as_str().unwrap().to_owned(),
            pool: id(&pool),
            job: id(&job),
        }
    }
}

impl Fixtures {
    /// The concrete path for a route template.
    fn path(&self, template: &str) -> String {
        let id = if template.starts_with("/v1/members/{id}/erase") {
            &self.erased
        } else if template.starts_with("/v1/members") {
            &self.member
        } else if template.starts_with("/v1/stores") {
            &self.store
        } else if template.starts_with("/v1/operators") {
            &self.operator
        } else if template.starts_with("/v1/api-keys") {
            &self.spare_key
        } else if template.starts_with("/v1/coupon-templates") {
            &self.template
        } else if template.starts_with("/v1/partner-pools") {
            &self.pool
        } else if template.starts_with("/v1/bulk-jobs") {
            &self.job
        } else {
            ""
        };
        assert!(
            !template.contains("{id}") || !id.is_empty(),
            "{template} takes an ID this test does not know how to fill: add it to Fixtures::path"
        );
        let order = if template.starts_with("/v1/checkout") {
            "SALE-1"
        } else {
            "ORD-1"
        };
        let reference = if template.contains("/plans/") {
            "PLAN-1"
        } else {
            "TOP-1"
        };
        template
            .replace("{id}", id)
            .replace("{order_id}", order)
            .replace("{code}", &self.coupon)
            .replace("{reference}", reference)
            .replace("{kind}", "members")
            + match template {
                "/v1/reports/plan-renewals" => "?from=2026-01-01T00:00:00Z&to=2027-01-01T00:00:00Z",
                "/v1/reports/benefit-usage" => "?from=2026-01-01&to=2026-12-31",
                _ => "",
            }
    }

    /// A body the route accepts, unique to the role calling it (so that two roles' calls are
    /// two requests, not replays), or `None` for routes without a body.
    fn body(&self, method: &str, template: &str, role: &str, h: &Harness) -> Option<Value> {
        let r = |prefix: &str| format!("{prefix}-{role}");
        let sale_lines = json!([{"sku": "TEE", "category": "apparel", "quantity": 1, "amount": 20_000}]);
        let phone = |n: usize| {
            let i = ROLES.iter().position(|x| *x == role).unwrap_or(9);
            format!("139{n:04}{i:04}")
        };
        Some(match (method, template) {
            ("patch", _) => json!({}),
            ("post", "/v1/auth/login") => {
                json!({"username": h.admin_username, "password": h.admin_password})
            }
            ("post", "/v1/api-keys") => json!({"name": r("key"), "role": "clerk"}),
            ("post", "/v1/operators") => json!({
                "username": format!("{}-{}", r("op"), huiyuan_core::crypto::random_token(4).to_lowercase()),
                "display_name": "x", "role": "clerk", "password": "long enough pw"}),
            ("post", "/v1/stores") => json!({"code": r("S"), "name": "店"}),
            ("post", "/v1/segments/preview") => json!({}),
            ("post", "/v1/members") => json!({"phone": phone(1)}),
            ("post", "/v1/members/search") => json!({"filter": {"phone": "13800138000"}}),
            ("post", "/v1/members/{id}/merge") => json!({"merge_from": self.merged}),
            ("post", "/v1/codes/verify") => json!({"code": "123456"}),
            ("post", "/v1/till/identify") => {
                json!({"phone": "13800138000", "enrol_if_unknown": false})
            }
            ("put", "/v1/programme") => {
                serde_json::from_str(huiyuan_domain::loyalty::programme::DEMO_PROGRAMME_JSON).unwrap()
            }
            ("post", "/v1/programme/preview") => json!({"channel": "pos", "lines": sale_lines,
                "paid_amount": 20_000, "member": {"tier": "gold"}}),
            ("post", "/v1/transactions") => sale(&r("ORD"), &self.member, 200),
            ("post", "/v1/transactions/batch") => {
                json!({"purchases": [sale(&r("BATCH"), &self.member, 200)]})
            }
            ("post", p) if p.ends_with("/refunds") || p.ends_with("/refund") => {
                json!({"refund_id": r("RF")})
            }
            ("post", p) if p.ends_with("/points/adjustments") => {
                json!({"points": 5, "reason": "matrix", "reference": r("ADJ")})
            }
            ("post", p) if p.ends_with("/points/redemptions") => {
                json!({"points": 5, "reference": r("RED")})
            }
            ("post", p) if p.ends_with("/points/transfers") => {
                json!({"to_member_id": self.other, "points": 5, "reference": r("TR")})
            }
            ("post", p) if p.ends_with("/points/actions") => {
                json!({"action": "check_in", "reference": r("ACT")})
            }
            ("post", "/v1/coupon-templates") => json!({"name": r("T"),
                "offer": {"kind": "fixed_amount", "amount": 500},
                "validity": {"kind": "days_after_issue", "days": 30}}),
            ("post", p) if p.ends_with("/issue-bulk") => {
                json!({"member_ids": [self.member], "reference": r("BULK")})
            }
            ("post", p) if p.ends_with("/coupons") || p.ends_with("/rewards") => {
                json!({"template_id": self.template, "reference": r("CPN")})
            }
            ("post", p) if p.ends_with("/coupons/claim") => json!({"claim_code": "NOSUCHCODE"}),
            ("post", p) if p.ends_with("/redeem") => json!({"order_id": r("CR"),
                "member_id": self.member, "channel": "pos", "lines": sale_lines}),
            ("post", "/v1/partner-pools") => json!({"name": r("pool"), "partner": "P"}),
            ("post", p) if p.ends_with("/codes") => json!({"codes": [r("C")]}),
            ("post", p) if p.ends_with("/partner-codes") => {
                json!({"pool_id": self.pool, "reference": r("PC")})
            }
            ("post", p) if p.ends_with("/plans") => {
                json!({"plan": "plus", "reference": r("PLAN"), "pay_with": "money"})
            }
            ("post", p) if p.ends_with("/perk-uses") => {
                json!({"perk": "免費禮品包裝 Free gift wrap", "reference": r("PERK")})
            }
            ("post", p) if p.ends_with("/wallet/top-ups") => {
                json!({"reference": r("TOP"), "amount": 1_000})
            }
            ("post", "/v1/checkout/quote") => {
                json!({"member_id": self.member, "channel": "pos", "lines": sale_lines})
            }
            ("post", "/v1/checkout/commit") => json!({"order_id": r("SALE"),
                "member_id": self.member, "channel": "pos", "lines": sale_lines}),
            _ => return None,
        })
    }

    /// Uploads for the import routes are CSV, not JSON.
    fn upload(&self, template: &str, role: &str) -> Option<String> {
        let i = ROLES.iter().position(|x| *x == role).unwrap_or(9);
        match template {
            "/v1/imports/members" => Some(format!("phone\n1370000{i:04}\n")),
            "/v1/imports/transactions" => Some(format!(
                "order_id,phone,occurred_at,amount\nIMP-{role},13800138000,2026-01-02 10:00,88.00\n"
            )),
            _ => None,
        }
    }
}

/// Every operation in the OpenAPI document, called by each role and without a key: a role the
/// table does not list gets `403 forbidden` and changes nothing it could show; a role it lists is
/// let through (whatever the route then decides: 2xx, 404, 409 or 422, never 401/403/5xx).
async fn every_route_answers_each_role_as_written(backend: Backend) {
    let h = Harness::start(backend).await;
    let fixtures = h.fixtures().await;
    let mut keys = Vec::new();
    for role in ROLES {
        keys.push((role, h.key_for(role).await));
    }
    let (_, doc) = h.call(None, Method::GET, "/openapi.json", None).await;
    let mut documented = Vec::new();
    for (template, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.push((method.clone(), template.clone()));
        }
    }
    for (method, template, _) in ROUTE_ROLES {
        assert!(
            documented.iter().any(|(m, t)| m == method && t == template),
            "ROUTE_ROLES lists {method} {template}, which the OpenAPI document does not have"
        );
    }
    let mut checked = 0;
    let mut wrong = Vec::new();
    for (method, template) in &documented {
        let Some((_, _, allowed)) = ROUTE_ROLES.iter().find(|(m, t, _)| m == method && t == template) else {
            panic!(
                "{method} {template} is not in ROUTE_ROLES (tests/api/security.rs): write down who may call it"
            )
        };
        let path = fixtures.path(template);
        let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let send = |key: Option<&str>, role: &str| {
            let mut req = h.http.request(m.clone(), format!("{}{path}", h.base));
            if let Some(k) = key {
                req = req.bearer_auth(k);
            }
            if let Some(csv) = fixtures.upload(template, role) {
                req = req.header("content-type", "text/csv").body(csv);
            } else if let Some(body) = fixtures.body(method, template, role, &h) {
                req = req.json(&body);
            }
            async move {
                let res = req.send().await.unwrap();
                let status = res.status();
                let text = res.text().await.unwrap();
                (
                    status,
                    serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text)),
                )
            }
        };
        if *allowed == PUBLIC {
            let (s, b) = send(None, "anonymous").await;
            assert!(s.is_success(), "{method} {template} is public: {s} {b}");
            checked += 1;
            continue;
        }
        let (s, b) = send(None, "anonymous").await;
        assert_eq!(
            s,
            StatusCode::UNAUTHORIZED,
            "{method} {template} without a key: {b}"
        );
        // Least privileged first, so that a forbidden call is made before an allowed one changes
        // the record.
        for (role, key) in keys.iter().rev() {
            let (s, b) = send(Some(key), role).await;
            let may = allowed.split_whitespace().any(|r| r == *role);
            // Let through: the route decided (a business outcome), on a request it could read.
            let malformed =
                ["invalid_request_body", "invalid_query"].contains(&b["code"].as_str().unwrap_or_default());
            let let_through = !malformed
                && (s.is_success()
                    || [
                        StatusCode::NOT_FOUND,
                        StatusCode::CONFLICT,
                        StatusCode::UNPROCESSABLE_ENTITY,
                    ]
                    .contains(&s));
            if may && !let_through {
                wrong.push(format!("{role} may call {method} {template} but got {s} {b}"));
            } else if !may && (s, b["code"].as_str()) != (StatusCode::FORBIDDEN, Some("forbidden")) {
                wrong.push(format!("{role} may not call {method} {template} but got {s} {b}"));
            }
            checked += 1;
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {checked} calls answered otherwise than written:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert!(checked >= ROUTE_ROLES.len(), "checked {checked}");
    // The matrix ran every kind of write at least once; the books still balance.
    h.verify_ok().await;
}

/// Search input that tries SQL injection, patterns, control characters or sheer size: a clear
/// 4xx or an empty result, never a 5xx, never another member.
async fn hostile_search_input_is_answered_safely(backend: Backend) {
    let h = Harness::start(backend).await;
    let m = h
        .enrol(json!({"phone": "13800138000", "name": "王小明", "tags": ["vip"]}))
        .await;
    h.enrol(json!({"phone": "13900139000", "name": "李四"})).await;
    let hostile = [
        "' OR '1'='1",
        "'; DROP TABLE members; --",
        "\" OR 1=1 --",
        "%",
        "_",
        "*",
        "\\",
        "王%",
        "1' UNION SELECT secret_hash FROM api_keys --",
        "\u{0}",
        "\u{202e}gnp.exe",
    ];
    for value in hostile {
        for field in [
            "phone",
            "name_prefix",
            "tag",
            "external_id",
            "email",
            "card_number",
        ] {
            let (s, b) = h
                .admin(
                    Method::POST,
                    "/v1/members/search",
                    Some(json!({"filter": {field: value}})),
                )
                .await;
            assert!(
                s.is_client_error() || s.is_success(),
                "{field}={value:?}: {s} {b}"
            );
            if s.is_success() {
                assert_eq!(b["data"], json!([]), "{field}={value:?} matched: {b}");
            } else {
                assert!(b["code"].is_string(), "{field}={value:?}: {b}");
            }
        }
        for query in [
            format!("/v1/members?tag={value}"),
            format!("/v1/members?status={value}"),
        ] {
            let url = format!("{}{}", h.base, query);
            let res = h
                .http
                .get(reqwest::Url::parse(&url).unwrap())
                .bearer_auth(&h.admin_key)
                .send()
                .await
                .unwrap();
            assert!(
                res.status().is_client_error() || res.status().is_success(),
                "{query}: {}",
                res.status()
            );
        }
    }
    // Oversized: a 1 MiB name filter, a 3 MiB body, 10,000 tags.
    let huge = "王".repeat(350_000);
    let (s, b) = h
        .admin(
            Method::POST,
            "/v1/members/search",
            Some(json!({"filter": {"name_prefix": huge}})),
        )
        .await;
    assert!(
        s == StatusCode::UNPROCESSABLE_ENTITY || s == StatusCode::PAYLOAD_TOO_LARGE,
        "{s} {b}"
    );
    let big_body = "x".repeat(3 * 1024 * 1024);
    let (s, _) = h
        .admin(
            Method::POST,
            "/v1/members",
            Some(json!({"phone": "13700137000", "name": big_body})),
        )
        .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    let tags: Vec<String> = (0..10_000).map(|i| format!("t{i}")).collect();
    let (s, b) = h
        .admin(
            Method::POST,
            "/v1/members",
            Some(json!({"phone": "13700137001", "tags": tags})),
        )
        .await;
    assert_problem(s, &b, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(field_of(&b), "tags");
    // None of it changed anything: still the two members, the first one intact.
    assert_eq!(h.member_count().await, 2);
    let (_, still) = h
        .admin(
            Method::GET,
            &format!("/v1/members/{}", m["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(still["tags"], json!(["vip"]));
}

/// The largest deduction of all, `points: i64::MIN`, once passed the bound check (`abs()`
/// wraps) and left the ledger and the audit log disagreeing. Refused, naming the field, and
/// nothing changes.
async fn an_adjustment_at_the_extremes_is_refused(backend: Backend) {
    let h = Harness::start(backend).await;
    h.publish_demo_programme().await;
    let m = h.member_id("13800138091").await;
    let path = format!("/v1/members/{m}/points/adjustments");
    for points in [i64::MIN, i64::MIN + 1, i64::MAX, -100_000_001] {
        let (s, b) = post(
            &h,
            &path,
            json!({"points": points, "reason": "x", "reference": format!("EX{points}")}),
        )
        .await;
        assert_problem(s, &b, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        assert_eq!(field_of(&b), "points", "{b}");
    }
    assert_eq!(h.balance(&m).await["available"], 0);
    let (_, audit) = h
        .admin(Method::GET, "/v1/audit-events?action=points.adjusted", None)
        .await;
    assert_eq!(audit["data"], json!([]), "{audit}");
    h.verify_ok().await;
}

/// A sale dated 1900 once earned points available at once, past their expiry, and spendable.
/// Live sales may be dated at most `backdate_window` back (180 days by default; the harness
/// allows [`BACKDATE_WINDOW`]); history comes in by
/// import, where points already expired are never spendable: spending expires due lots first,
/// without waiting for the expiry job.
async fn backdated_sales_earn_nothing_spendable(backend: Backend) {
    let h = Harness::start(backend).await;
    h.publish_demo_programme().await;
    let m = h.member_id("13800138090").await;
    let mut s = sale("BD-1", &m, 500);
    s["occurred_at"] = json!("1900-01-01T12:00:00+08:00");
    let (status, b) = h.buy(s).await;
    assert_problem(status, &b, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(field_of(&b), "occurred_at", "{b}");
    let mut s = sale("BD-2", &m, 500);
    s["occurred_at"] = json!((h.core.now() - BACKDATE_WINDOW - time::Duration::days(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap());
    assert_eq!(h.buy(s).await.0, StatusCode::UNPROCESSABLE_ENTITY);

    // By import, a sale of three years ago is history: recorded, its points (12 months' life
    // in the demo programme) long expired.
    let day = (h.core.now() - time::Duration::days(3 * 365)).date();
    let file =
        format!("order_id,phone,occurred_at,sku,quantity,amount\nBD-3,13800138090,{day} 12:00,TEE,1,500\n");
    let (s, job) = h.upload("/v1/imports/transactions", file.into_bytes()).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{job}");
    let done =
        super::commerce::wait_for_job(&h, &format!("/v1/bulk-jobs/{}", job["id"].as_str().unwrap())).await;
    assert_eq!(done["import"]["imported"], 1, "{done}");
    // Before the expiry job has run, none of them can be spent.
    let (s, b) = post(
        &h,
        &format!("/v1/members/{m}/points/redemptions"),
        json!({"points": 100, "reference": "BD-r"}),
    )
    .await;
    assert_problem(s, &b, StatusCode::CONFLICT, "insufficient_points");
    h.run_jobs().await;
    let balance = h.balance(&m).await;
    assert_eq!(
        (&balance["available"], &balance["pending"]),
        (&json!(0), &json!(0)),
        "{balance}"
    );
    h.verify_ok().await;
}

/// A new API key's secret was kept in clear with its idempotency key and sent again on a
/// replay. A response that holds a secret (a new key, a member code) is not stored: the replay
/// answers `secret_shown_once`, nothing is made twice, and (SQLite, whose files the test can
/// read) the secret is nowhere in the database or its write-ahead log.
async fn secrets_are_shown_once_even_to_a_replay(backend: Backend) {
    let h = Harness::start(backend).await;
    let m = h.member_id("13800138092").await;
    let mut shown = Vec::new();
    for (path, body, field) in [
        (
            "/v1/api-keys".to_owned(),
            json!({"name": "till-7", "role": "clerk"}),
            "secret",
        ),
        (format!("/v1/members/{m}/code"), json!({}), "code"),
    ] {
        let headers = [("idempotency-key", field)];
        let send = || {
            h.call_full(
                Some(&h.admin_key),
                Method::POST,
                &path,
                Some(body.clone()),
                &headers,
            )
        };
        let (s, _, first) = send().await;
        assert_eq!(s, StatusCode::CREATED, "{first}");
        let secret = first[field].as_str().unwrap().to_owned();
        let (s, replayed, again) = send().await;
        assert_problem(s, &again, StatusCode::CONFLICT, "secret_shown_once");
        assert_eq!(replayed.get("idempotent-replayed").unwrap(), "true");
        assert!(!again.to_string().contains(&secret), "{again}");
        shown.push(secret);
    }
    let keys = h.admin(Method::GET, "/v1/api-keys", None).await.1;
    let made = keys["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["name"] == "till-7")
        .count();
    assert_eq!(made, 1, "{keys}");
    if let Location::Sqlite(file) = &h.location {
        for suffix in ["", "-wal"] {
            let mut name = file.clone().into_os_string();
            name.push(suffix);
            let bytes = std::fs::read(&name).unwrap_or_default();
            for secret in &shown {
                let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
                assert!(!found, "a secret is in {name:?}");
            }
        }
    }
}

/// A name `=cmd|' /C calc'!A0`, a tag `=1+2` and a city `@SUM(1+1)` came out of the member
/// export as formulas a spreadsheet would run. Every text cell of every export, masked or
/// revealed, now starts inert (a leading `'`); plain numbers keep their signs.
async fn exports_never_hand_a_spreadsheet_a_formula(backend: Backend) {
    let h = Harness::start(backend).await;
    let name = "=cmd|' /C calc'!A0";
    h.enrol(json!({"phone": "13800138093", "name": name, "city": "@SUM(1+1)", "tags": ["=1+2"]}))
        .await;
    for path in ["/v1/exports/members?reveal=true", "/v1/exports/members"] {
        let (s, file) = h.download(&h.admin_key, path).await;
        assert_eq!(s, StatusCode::OK);
        let mut cells = Vec::new();
        for record in ::csv::Reader::from_reader(file.as_slice()).records() {
            cells.extend(record.unwrap().iter().map(str::to_owned));
        }
        let live: Vec<&String> = cells
            .iter()
            .filter(|c| {
                c.starts_with(['=', '@', '\t', '\r'])
                    || (c.starts_with(['+', '-']) && c.parse::<f64>().is_err())
            })
            .collect();
        assert!(live.is_empty(), "{path}: {live:?}");
        if path.contains("reveal") {
            assert!(cells.contains(&format!("'{name}")), "{cells:?}");
            assert!(cells.iter().any(|c| c == "'@SUM(1+1)"), "{cells:?}");
        }
    }
}

/// A reused `refund_id` with a different amount replayed the first refund as if it were the
/// one asked for; it is refused like a reused idempotency key. The same refund sent again is
/// still answered with its first outcome.
async fn a_refund_id_reused_for_another_amount_is_refused(backend: Backend) {
    let h = Harness::start(backend).await;
    h.publish_demo_programme().await;
    let m = h.member_id("13800138094").await;
    assert_eq!(h.buy(sale("RF-1", &m, 500)).await.0, StatusCode::CREATED);
    let refund = |amount: i64| json!({"refund_id": "RF-1-a", "amount": amount});
    let (s, first) = post(&h, "/v1/transactions/RF-1/refunds", refund(10_000)).await;
    assert_eq!(s, StatusCode::CREATED, "{first}");
    let (s, again) = post(&h, "/v1/transactions/RF-1/refunds", refund(10_000)).await;
    assert!(s.is_success(), "{again}");
    assert_eq!(again["amount"], first["amount"], "{again}");
    let (s, other) = post(&h, "/v1/transactions/RF-1/refunds", refund(20_000)).await;
    assert_problem(s, &other, StatusCode::CONFLICT, "refund_id_reused");
    let (_, purchase) = h.admin(Method::GET, "/v1/transactions/RF-1", None).await;
    assert_eq!(purchase["refunded_amount"], 10_000, "{purchase}");
}

/// U+202E and the other bidirectional controls were accepted in names: `\u{202E}moc.elgoog`
/// displays as `google.com`. Refused in every display field (names, cities, tags), naming it.
async fn bidirectional_controls_are_refused_in_display_fields(backend: Backend) {
    let h = Harness::start(backend).await;
    for (body, field) in [
        (
            json!({"phone": "13800138095", "name": "\u{202E}moc.elgoog"}),
            "name",
        ),
        (
            json!({"phone": "13800138095", "city": "Shanghai\u{2066}"}),
            "city",
        ),
        (
            json!({"phone": "13800138095", "tags": ["vip\u{200F}"]}),
            "tags[0]",
        ),
    ] {
        let (s, b) = h.admin(Method::POST, "/v1/members", Some(body)).await;
        assert_problem(s, &b, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        assert_eq!(field_of(&b), field, "{b}");
    }
    assert_eq!(h.member_count().await, 0);
}

/// A programme of 10,000 points per 0.01 yuan with no cap validated, and a purchase of 10^12
/// minor units then crashed with a 500 (decimal overflow). It is refused, naming the rule, and
/// the same rule with a per-order cap publishes and earns the cap.
async fn a_programme_that_could_overflow_a_sale_is_refused(backend: Backend) {
    let h = Harness::start(backend).await;
    let mut doc: Value =
        serde_json::from_str(huiyuan_domain::loyalty::programme::DEMO_PROGRAMME_JSON).unwrap();
    doc["earn_rules"][0]["points"] = json!("10000");
    doc["earn_rules"][0]["per_amount"] = json!(1);
    doc["caps"] = json!({});
    let (s, b) = h.admin(Method::PUT, "/v1/programme", Some(doc.clone())).await;
    assert_problem(s, &b, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(field_of(&b), "earn_rules[0].points", "{b}");
    doc["caps"] = json!({"per_order": 1_000_000});
    let (s, b) = h.admin(Method::PUT, "/v1/programme", Some(doc)).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let m = h.member_id("13800138096").await;
    let huge = json!({"order_id": "BIG-1", "member_id": m, "channel": "pos",
        "paid_amount": 1_000_000_000_000i64,
        "lines": [{"sku": "GOLD", "quantity": 1, "amount": 1_000_000_000_000i64}]});
    let (s, b) = h.buy(huge).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["purchase"]["points"], 1_000_000, "{b}");
}

/// Analysts and auditors read usable coupon codes in clear (`GET /v1/members/{id}/coupons`)
/// though exports masked them. One rule now: a code is shown in full to the roles that may
/// redeem coupons, masked to the others, wherever a coupon is shown.
async fn coupon_codes_are_shown_only_to_roles_that_redeem(backend: Backend) {
    let h = Harness::start(backend).await;
    let m = h.member_id("13800138097").await;
    let t = h.template(super::commerce::threshold_coupon()).await;
    let code = h.issue(&m, &t, "CODE-1").await["code"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/v1/members/{m}/coupons");
    for role in ["analyst", "auditor", "clerk", "marketer"] {
        let key = h.key_for(role).await;
        let (s, b) = h.call(Some(&key), Method::GET, &path, None).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let shown = b["data"][0]["code"].as_str().unwrap();
        let may_redeem = matches!(role, "clerk" | "marketer");
        assert_eq!(shown == code, may_redeem, "{role} sees {shown}");
        if !may_redeem {
            assert!(
                shown.starts_with("****") && code.ends_with(&shown[4..]),
                "{role}: {shown}"
            );
        }
    }
}

both_backends!(
    coupon_codes_are_shown_only_to_roles_that_redeem,
    a_programme_that_could_overflow_a_sale_is_refused,
    a_refund_id_reused_for_another_amount_is_refused,
    bidirectional_controls_are_refused_in_display_fields,
    exports_never_hand_a_spreadsheet_a_formula,
    secrets_are_shown_once_even_to_a_replay,
    every_route_answers_each_role_as_written,
    hostile_search_input_is_answered_safely,
    an_adjustment_at_the_extremes_is_refused,
    backdated_sales_earn_nothing_spendable,
);
