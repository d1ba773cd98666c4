//! The API, end to end over real HTTP, on SQLite and on PostgreSQL. Each check is an async fn
//! taking a [`Harness`]; `both_backends!` runs it once per backend.

use std::net::SocketAddr;
use std::sync::Arc;

use huiyuan_api::{app, ApiConfig, AppState};
use huiyuan_core::clock::{test_start, OffsetClock};
use huiyuan_core::crypto::MasterKey;
use huiyuan_core::{Core, CoreConfig};
use huiyuan_store::Storage;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Tuesday 2026-03-10, 10:00 in the brands' zone (Asia/Shanghai): a day on which no multiplier of
/// the demo programme applies, and from which the jumps the tests make (8 days for points to
/// mature, a year for them to expire) land on no member day either. Tests that assert on the
/// points a sale earns start here; the rest start at [`test_start`].
const ORDINARY_DAY: time::OffsetDateTime = time::macros::datetime!(2026-03-10 10:00 +08:00);

/// One server on a free port, with one freshly bootstrapped brand.
struct Harness {
    base: String,
    http: reqwest::Client,
    core: Core,
    clock: Arc<OffsetClock>,
    admin_key: String,
    admin_password: String,
    admin_username: String,
    master: MasterKey,
    location: Location,
}

#[derive(Clone, Copy)]
enum Backend {
    Sqlite,
    Postgres,
}

/// Where a harness's database is, so that a second server can open it too.
#[derive(Clone)]
enum Location {
    Sqlite(std::path::PathBuf),
    Postgres(Box<huiyuan_store_pg::PgConnectOptions>),
}

impl Location {
    async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
                    .join(format!("huiyuan-api-{}", std::process::id()));
                std::fs::create_dir_all(&dir).unwrap();
                Location::Sqlite(dir.join(format!("{}.db", huiyuan_core::crypto::random_token(8))))
            }
            // Its own database: tests move their clock and run the installation-wide jobs,
            // which would otherwise mature and expire the points of tests running beside them.
            Backend::Postgres => {
                Location::Postgres(Box::new(huiyuan_store_pg::testing::private_test_database().await))
            }
        }
    }

    async fn open(&self) -> Arc<dyn Storage> {
        match self {
            Location::Sqlite(file) => {
                Arc::new(huiyuan_store_sqlite::SqliteStorage::open(file).await.unwrap())
            }
            Location::Postgres(options) => Arc::new(
                huiyuan_store_pg::PgStorage::connect_with((**options).clone(), 16)
                    .await
                    .unwrap(),
            ),
        }
    }
}

/// Serves `core` on a free port; returns its base URL.
async fn serve(core: Core, config: ApiConfig) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = app(AppState::new(core, config));
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    format!("http://{addr}")
}

impl Harness {
    async fn start(backend: Backend) -> Self {
        Self::start_with(backend, ApiConfig::default()).await
    }

    async fn start_with(backend: Backend, config: ApiConfig) -> Self {
        Self::start_full(backend, config, None, test_start()).await
    }

    /// A harness whose clock starts at `at`, for a test whose figures depend on the date (the
    /// demo programme triples points on the 8th); every other test starts at [`test_start`],
    /// which CI moves to such dates to find the tests that depend on the date without saying so.
    async fn start_at(backend: Backend, at: time::OffsetDateTime) -> Self {
        Self::start_full(backend, ApiConfig::default(), None, at).await
    }

    /// A harness whose core calls `faults` between the steps of a till commit.
    async fn start_with_faults(backend: Backend, faults: huiyuan_core::commerce::FaultHook) -> Self {
        Self::start_full(backend, ApiConfig::default(), Some(faults), test_start()).await
    }

    async fn start_full(
        backend: Backend,
        config: ApiConfig,
        faults: Option<huiyuan_core::commerce::FaultHook>,
        clock_start: time::OffsetDateTime,
    ) -> Self {
        let clock = Arc::new(OffsetClock::starting_at(clock_start));
        let master = MasterKey::generate();
        let location = Location::new(backend).await;
        let mut core = Core::new(
            location.open().await,
            &master,
            clock.clone(),
            CoreConfig::default(),
        );
        if let Some(f) = faults {
            core = core.with_fault_hook(f);
        }
        let slug = format!(
            "t{}",
            huiyuan_core::crypto::random_token(6)
                .to_lowercase()
                .replace(['-', '_'], "x")
        );
        let admin_username = format!("admin-{slug}");
        let admin_password = "correct horse battery".to_owned();
        let made = core
            .bootstrap_brand(
                huiyuan_core::brands::NewBrand {
                    slug,
                    name: "Test".into(),
                    currency: None,
                    timezone: None,
                },
                &admin_username,
                &admin_password,
            )
            .await
            .unwrap();
        Self {
            base: serve(core.clone(), config).await,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            core,
            clock,
            admin_key: made.api_key.secret,
            admin_password,
            admin_username,
            master,
            location,
        }
    }

    /// A second server over the same database, with its own connections and caches: another
    /// node of the installation. Returns its base URL.
    async fn second_server(&self) -> String {
        let core = Core::new(
            self.location.open().await,
            &self.master,
            self.clock.clone(),
            CoreConfig::default(),
        );
        serve(core, ApiConfig::default()).await
    }

    /// Another brand in the same installation, with its own admin key.
    async fn other_brand(&self) -> String {
        let slug = format!(
            "o{}",
            huiyuan_core::crypto::random_token(6)
                .to_lowercase()
                .replace(['-', '_'], "x")
        );
        let made = self
            .core
            .bootstrap_brand(
                huiyuan_core::brands::NewBrand {
                    slug: slug.clone(),
                    name: "Other".into(),
                    currency: None,
                    timezone: None,
                },
                &format!("admin-{slug}"),
                "another long password",
            )
            .await
            .unwrap();
        made.api_key.secret
    }

    async fn call(
        &self,
        key: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let (status, _, body) = self.call_full(key, method, path, body, &[]).await;
        (status, body)
    }

    async fn call_full(
        &self,
        key: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        for (h, v) in headers {
            req = req.header(*h, *v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let text = res.text().await.unwrap();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, headers, value)
    }

    async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call(Some(&self.admin_key), method, path, body).await
    }

    async fn key_for(&self, role: &str) -> String {
        let (s, b) = self
            .admin(
                Method::POST,
                "/v1/api-keys",
                Some(json!({"name": role, "role": role})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        b["secret"].as_str().unwrap().to_owned()
    }

    async fn enrol(&self, body: Value) -> Value {
        let (s, b) = self.admin(Method::POST, "/v1/members", Some(body)).await;
        assert!(s == StatusCode::CREATED || s == StatusCode::OK, "{s} {b}");
        b
    }

    async fn member_count(&self) -> usize {
        let (s, b) = self.admin(Method::GET, "/v1/members?limit=100", None).await;
        assert_eq!(s, StatusCode::OK);
        b["data"].as_array().unwrap().len()
    }
}

fn assert_problem(status: StatusCode, body: &Value, expected: StatusCode, code: &str) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], expected.as_u16(), "{body}");
    assert!(body["type"].as_str().unwrap().ends_with(code), "{body}");
}

fn field_of(body: &Value) -> &str {
    body["errors"][0]["field"].as_str().unwrap_or_default()
}

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Postgres).await;
                }
            )*
        }
    };
}

both_backends!(
    health_and_openapi,
    every_documented_route_exists,
    no_key_is_401_problem,
    clerk_cannot_manage_keys_or_read_audit,
    another_brand_is_invisible_on_every_route,
    same_phone_formatted_differently_is_one_member,
    concurrent_enrolments_make_one_member,
    idempotency_key_replays_and_refuses_other_bodies,
    bad_input_names_the_field_and_writes_nothing,
    member_code_is_accepted_once,
    merged_member_redirects,
    erase_removes_personal_data,
    personal_data_is_masked_unless_revealed,
    operators_sign_in_and_out,
    till_identify_enrols_unknown_phone,
    update_member_checks_identities,
    rate_limit_answers_429,
    search_and_pagination,
    abandoned_request_still_completes,
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
    analytics_segment_and_retain_from_the_recorded_purchases,
    dashboard_insights_and_recommendations_follow_the_purchases,
    points_expire_after_maturing_and_ledger_verifies,
    bad_purchases_name_the_field_and_roles_are_enforced,
);

async fn health_and_openapi(backend: Backend) {
    let h = Harness::start(backend).await;
    let (s, b) = h.call(None, Method::GET, "/healthz", None).await;
    assert_eq!((s, b["status"].as_str()), (StatusCode::OK, Some("ok")));
    let (s, b) = h.call(None, Method::GET, "/readyz", None).await;
    assert_eq!((s, b["status"].as_str()), (StatusCode::OK, Some("ready")), "{b}");
    let (s, doc) = h.call(None, Method::GET, "/openapi.json", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let (s, _) = h.call(None, Method::GET, "/docs/", None).await;
    assert_eq!(s, StatusCode::OK, "the docs page is served from the binary");
    h.admin(Method::GET, "/v1/members", None).await;
    let (s, metrics) = h.call(None, Method::GET, "/metrics", None).await;
    assert_eq!(s, StatusCode::OK);
    let text = metrics.as_str().unwrap();
    assert!(
        text.contains("http_requests_total") && text.contains("route=\"/v1/members\""),
        "{text}"
    );
    assert!(text.contains("http_request_duration_seconds_bucket"), "{text}");
}

/// Every (method, path) in the OpenAPI document is served (not the 404/405 fallback), so the
/// document and the router cannot drift apart.
async fn every_documented_route_exists(backend: Backend) {
    let h = Harness::start(backend).await;
    let (_, doc) = h.call(None, Method::GET, "/openapi.json", None).await;
    let mut seen = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            // Path parameters are exactly the placeholders of the template.
            let declared: Vec<&str> = operation["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .filter(|p| p["in"] == "path")
                        .filter_map(|p| p["name"].as_str())
                        .collect()
                })
                .unwrap_or_default();
            let placeholders: Vec<&str> = path
                .split('{')
                .skip(1)
                .filter_map(|rest| rest.split_once('}').map(|(name, _)| name))
                .collect();
            assert_eq!(declared, placeholders, "{method} {path}: path parameters");
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let concrete = path.replace("{id}", "mem_01JD4ZQ7X8Y2K3M4N5P6Q7R8S9");
            let (s, b) = h.call(Some(&h.admin_key), m.clone(), &concrete, None).await;
            assert_ne!(b["detail"], "no such route", "{method} {path}");
            assert_ne!(s, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            seen += 1;
        }
    }
    assert!(seen >= 27, "expected every route to be documented, saw {seen}");
}

async fn no_key_is_401_problem(backend: Backend) {
    let h = Harness::start(backend).await;
    let (s, headers, b) = h.call_full(None, Method::GET, "/v1/members", None, &[]).await;
    assert_problem(s, &b, StatusCode::UNAUTHORIZED, "unauthenticated");
    assert_eq!(headers["content-type"], "application/problem+json");
    assert_eq!(headers["www-authenticate"], "Bearer");
    let (s, b) = h
        .call(Some("hy_nosuchkey0_xxxxxxxx"), Method::GET, "/v1/members", None)
        .await;
    assert_problem(s, &b, StatusCode::UNAUTHORIZED, "unauthenticated");
    let (s, b) = h
        .call(
            Some("garbage"),
            Method::POST,
            "/v1/members",
            Some(json!({"phone": "13800138000"})),
        )
        .await;
    assert_problem(s, &b, StatusCode::UNAUTHORIZED, "unauthenticated");
    assert_eq!(h.member_count().await, 0);
}

/// Roles limit what a key may do; a revoked key stops at once where it was revoked and within
/// the credential cache's lifetime on another node.
async fn clerk_cannot_manage_keys_or_read_audit(backend: Backend) {
    let h = Harness::start(backend).await;
    let clerk = h.key_for("clerk").await;
    let (s, b) = h
        .call(
            Some(&clerk),
            Method::POST,
            "/v1/api-keys",
            Some(json!({"name": "x", "role": "admin"})),
        )
        .await;
    assert_problem(s, &b, StatusCode::FORBIDDEN, "forbidden");
    let (s, b) = h.call(Some(&clerk), Method::GET, "/v1/audit-events", None).await;
    assert_problem(s, &b, StatusCode::FORBIDDEN, "forbidden");
    // …but a clerk can enrol at the till.
    let (s, _) = h
        .call(
            Some(&clerk),
            Method::POST,
            "/v1/members",
            Some(json!({"phone": "13800138000"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let auditor = h.key_for("auditor").await;
    let (s, b) = h
        .call(Some(&auditor), Method::GET, "/v1/audit-events", None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(b["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"] == "member.enrolled"));
    // A revoked key stops working at once.
    let keys = h.admin(Method::GET, "/v1/api-keys", None).await.1;
    let clerk_id = keys["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["role"] == "clerk")
        .unwrap()["id"]
        .clone();
    let (s, _) = h
        .admin(
            Method::POST,
            &format!("/v1/api-keys/{}/revoke", clerk_id.as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, b) = h.call(Some(&clerk), Method::GET, "/v1/members", None).await;
    assert_problem(s, &b, StatusCode::UNAUTHORIZED, "unauthenticated");

    // Another process that authenticated a key a moment ago trusts it for the credential
    // cache's few seconds after a revocation elsewhere, then no longer.
    let other = h.second_server().await;
    let marketer = h.key_for("marketer").await;
    let on_other = |key: String| {
        let (http, url) = (h.http.clone(), format!("{other}/v1/members"));
        async move { http.get(url).bearer_auth(key).send().await.unwrap().status() }
    };
    assert_eq!(on_other(marketer.clone()).await, StatusCode::OK);
    let keys = h.admin(Method::GET, "/v1/api-keys", None).await.1;
    let marketer_id = keys["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["role"] == "marketer" && k["revoked_at"].is_null())
        .unwrap()["id"]
        .clone();
    let (s, _) = h
        .admin(
            Method::POST,
            &format!("/v1/api-keys/{}/revoke", marketer_id.as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        on_other(marketer.clone()).await,
        StatusCode::OK,
        "cached on the other node"
    );
    h.clock.advance(time::Duration::seconds(6));
    assert_eq!(on_other(marketer).await, StatusCode::UNAUTHORIZED);
}

/// Brand A's admin names brand B's records on every route that takes an ID: always 404, never
/// B's data; lists and searches of A never contain B's records.
async fn another_brand_is_invisible_on_every_route(backend: Backend) {
    let h = Harness::start(backend).await;
    let b_key = h.other_brand().await;
    let call_b = |m: Method, p: &str, body: Option<Value>| {
        let h = &h;
        let b_key = b_key.clone();
        let p = p.to_owned();
        async move { h.call(Some(&b_key), m, &p, body).await }
    };
    let (_, b_member) = call_b(
        Method::POST,
        "/v1/members",
        Some(json!({"phone": "13900139000", "name": "乙品牌會員"})),
    )
    .await;
    let (_, b_store) = call_b(
        Method::POST,
        "/v1/stores",
        Some(json!({"code": "B1", "name": "B store"})),
    )
    .await;
    let (_, b_op) = call_b(
        Method::POST,
        "/v1/operators",
        Some(json!({"username": format!("b-clerk-{}", huiyuan_core::crypto::random_token(4).to_lowercase()), "display_name": "B", "role": "clerk", "password": "long enough pw"})),
    )
    .await;
    let (_, b_key_made) = call_b(
        Method::POST,
        "/v1/api-keys",
        Some(json!({"name": "b", "role": "clerk"})),
    )
    .await;
    let (_, b_code) = call_b(
        Method::POST,
        &format!("/v1/members/{}/code", b_member["id"].as_str().unwrap()),
        None,
    )
    .await;
    let (_, a_member) = h
        .admin(Method::POST, "/v1/members", Some(json!({"phone": "13700137000"})))
        .await;
    let (s, b_template) = call_b(
        Method::POST,
        "/v1/coupon-templates",
        Some(
            json!({"name": "B coupon", "offer": {"kind": "fixed_amount", "amount": 500},
                    "validity": {"kind": "days_after_issue", "days": 30}}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b_template}");
    let (s, b_coupon) = call_b(
        Method::POST,
        &format!("/v1/members/{}/coupons", b_member["id"].as_str().unwrap()),
        Some(json!({"template_id": b_template["id"], "reference": "B-1"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b_coupon}");

    let (s, b_pool) = call_b(
        Method::POST,
        "/v1/partner-pools",
        Some(json!({"name": "B pool", "partner": "P"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b_pool}");
    let (s, b_job) = call_b(
        Method::POST,
        &format!(
            "/v1/coupon-templates/{}/issue-bulk",
            b_template["id"].as_str().unwrap()
        ),
        Some(json!({"member_ids": [b_member["id"]], "reference": "B-BULK"})),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b_job}");

    let id_for = |path: &str| -> String {
        if path.starts_with("/v1/partner-pools") {
            b_pool["id"].as_str().unwrap().to_owned()
        } else if path.starts_with("/v1/bulk-jobs") {
            b_job["id"].as_str().unwrap().to_owned()
        } else if path.starts_with("/v1/coupon-templates") {
            b_template["id"].as_str().unwrap().to_owned()
        } else if path.starts_with("/v1/members") {
            b_member["id"].as_str().unwrap().to_owned()
        } else if path.starts_with("/v1/stores") {
            b_store["id"].as_str().unwrap().to_owned()
        } else if path.starts_with("/v1/operators") {
            b_op["id"].as_str().unwrap().to_owned()
        } else if path.starts_with("/v1/api-keys") {
            b_key_made["key"]["id"].as_str().unwrap().to_owned()
        } else {
            panic!("route {path} takes an ID but this test does not know which record of brand B to give it: add it")
        }
    };
    let bodies = |path: &str, method: &str| -> Option<Value> {
        match (path, method) {
            (p, "post") if p.ends_with("/merge") => Some(json!({"merge_from": a_member["id"]})),
            (p, "post") if p.ends_with("/points/adjustments") => {
                Some(json!({"points": 5, "reason": "test", "reference": "X-1"}))
            }
            (p, "post") if p.ends_with("/points/redemptions") => {
                Some(json!({"points": 5, "reference": "X-1"}))
            }
            (p, "post") if p.ends_with("/points/actions") => {
                Some(json!({"action": "check_in", "reference": "X-1"}))
            }
            (p, "post") if p.ends_with("/points/transfers") => {
                Some(json!({"to_member_id": a_member["id"], "points": 100, "reference": "X-1"}))
            }
            (p, "post") if p.ends_with("/coupons") => {
                Some(json!({"template_id": b_template["id"], "reference": "X-1"}))
            }
            (p, "post") if p.ends_with("/coupons/claim") => Some(json!({"claim_code": "NOSUCHCODE"})),
            (p, "post") if p.ends_with("/rewards") => {
                Some(json!({"template_id": b_template["id"], "reference": "X-1"}))
            }
            (p, "post") if p.ends_with("/wallet/top-ups") => {
                Some(json!({"reference": "X-1", "amount": 10_000}))
            }
            (p, "post") if p.ends_with("/refunds") => Some(json!({"refund_id": "R-1"})),
            (p, "post") if p.ends_with("/archive") => None,
            (p, "post") if p.ends_with("/issue-bulk") => {
                Some(json!({"member_ids": [a_member["id"]], "reference": "X-1"}))
            }
            (p, "post") if p.ends_with("/codes") => Some(json!({"codes": ["X"]})),
            (p, "post") if p.ends_with("/partner-codes") => {
                Some(json!({"pool_id": b_pool["id"], "reference": "X-1"}))
            }
            (p, "post") if p.ends_with("/plans") => Some(json!({"plan": "plus", "reference": "X-1"})),
            (p, "post") if p.ends_with("/perk-uses") => {
                Some(json!({"perk": "免費禮品包裝 Free gift wrap", "reference": "X-1"}))
            }
            (_, "patch") => Some(json!({})),
            _ => None,
        }
    };
    let (_, doc) = h.call(None, Method::GET, "/openapi.json", None).await;
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !path.contains("{id}") {
            continue;
        }
        for method in item.as_object().unwrap().keys() {
            let concrete = path.replace("{id}", &id_for(path)).replace("{reference}", "X-1");
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let (s, b) = h.admin(m, &concrete, bodies(path, method)).await;
            assert_problem(s, &b, StatusCode::NOT_FOUND, "not_found");
            checked += 1;
        }
    }
    assert!(checked >= 10, "checked {checked} routes");
    // Merging B's member into A's from A's side is also refused.
    let (s, b) = h
        .admin(
            Method::POST,
            &format!("/v1/members/{}/merge", a_member["id"].as_str().unwrap()),
            Some(json!({"merge_from": b_member["id"]})),
        )
        .await;
    assert_problem(s, &b, StatusCode::NOT_FOUND, "not_found");
    // B's coupon cannot be seen, redeemed or used at A's till.
    let code = b_coupon["code"].as_str().unwrap();
    let (s, b) = h.admin(Method::GET, &format!("/v1/coupons/{code}"), None).await;
    assert_problem(s, &b, StatusCode::NOT_FOUND, "not_found");
    let (s, b) = h
        .admin(
            Method::POST,
            &format!("/v1/coupons/{code}/redeem"),
            Some(
                json!({"order_id": "A-1", "member_id": a_member["id"], "channel": "web_shop",
                        "lines": [{"sku": "X", "quantity": 1, "amount": 10_000}]}),
            ),
        )
        .await;
    assert_problem(s, &b, StatusCode::NOT_FOUND, "not_found");
    // B's member code is not A's.
    for code in [&b_code["code"], &b_code["qr_payload"]] {
        let (s, b) = h
            .admin(Method::POST, "/v1/codes/verify", Some(json!({"code": code})))
            .await;
        assert!(
            s == StatusCode::NOT_FOUND || s == StatusCode::UNPROCESSABLE_ENTITY,
            "{s} {b}"
        );
    }
    // Lists, searches and the till never show B's records.
    let b_ids = [
        &b_member["id"],
        &b_store["id"],
        &b_op["id"],
        &b_key_made["key"]["id"],
    ];
    for path in [
        "/v1/members",
        "/v1/stores",
        "/v1/operators",
        "/v1/api-keys",
        "/v1/audit-events?limit=100",
    ] {
        let (s, body) = h.admin(Method::GET, path, None).await;
        assert_eq!(s, StatusCode::OK);
        for id in b_ids {
            assert!(
                !body.to_string().contains(id.as_str().unwrap()),
                "{path} leaks {id}"
            );
        }
    }
    let (_, found) = h
        .admin(
            Method::POST,
            "/v1/members/search",
            Some(json!({"filter": {"phone": "13900139000"}})),
        )
        .await;
    assert_eq!(found["data"], json!([]));
    let (s, till) = h
        .admin(
            Method::POST,
            "/v1/till/identify",
            Some(json!({"phone": "13900139000", "enrol_if_unknown": false})),
        )
        .await;
    assert_problem(s, &till, StatusCode::NOT_FOUND, "not_found");
    // And B still has its member, untouched.
    let (s, still) = call_b(
        Method::GET,
        &format!("/v1/members/{}", b_member["id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!((s, &still["status"]), (StatusCode::OK, &json!("active")));
}

async fn same_phone_formatted_differently_is_one_member(backend: Backend) {
    let h = Harness::start(backend).await;
    let (s1, first) = h
        .admin(
            Method::POST,
            "/v1/members",
            Some(json!({"phone": "138 0013 8000", "name": "王小明"})),
        )
        .await;
    let (s2, second) = h
        .admin(
            Method::POST,
            "/v1/members",
            Some(json!({"phone": "+86-138-0013-8000"})),
        )
        .await;
    let (s3, third) = h
        .admin(
            Method::POST,
            "/v1/members",
            Some(json!({"email": "x@y.cn", "phone": "008613800138000"})),
        )
        .await;
    assert_eq!(
        (s1, s2, s3),
        (StatusCode::CREATED, StatusCode::OK, StatusCode::OK)
    );
    assert_eq!(first["id"], second["id"]);
    assert_eq!(first["id"], third["id"]);
    assert_eq!(
        third["email"],
        Value::Null,
        "finding an existing member changes nothing"
    );
    let (s, _) = h
        .admin(
            Method::POST,
            "/v1/members",
            Some(json!({"email": "Li.Na@Example.COM"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, again) = h
        .admin(
            Method::POST,
            "/v1/members",
            Some(json!({"email": "li.na@example.com"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "emails are case-folded: {again}");
    // Identities of two different members in one enrolment: a conflict naming both fields.
    let (s, b) = h
        .admin(
            Method::POST,
            "/v1/members",
            Some(json!({"phone": "13800138000", "email": "li.na@example.com"})),
        )
        .await;
    assert_problem(s, &b, StatusCode::CONFLICT, "identity_conflict");
    assert_eq!(b["errors"].as_array().unwrap().len(), 2);
    assert_eq!(h.member_count().await, 2);
}

async fn concurrent_enrolments_make_one_member(backend: Backend) {
    let h = Arc::new(Harness::start(backend).await);
    let forms = [
        "13600136000",
        "136 0013 6000",
        "+8613600136000",
        "0086 136 0013 6000",
    ];
    let mut tasks = Vec::new();
    for i in 0..16 {
        let h = h.clone();
        let phone = forms[i % forms.len()];
        tasks.push(tokio::spawn(async move {
            h.admin(
                Method::POST,
                "/v1/members",
                Some(json!({"phone": phone, "channel": "pos"})),
            )
            .await
        }));
    }
    let mut ids = std::collections::HashSet::new();
    let mut created = 0;
    for t in tasks {
        let (s, b) = t.await.unwrap();
        assert!(s == StatusCode::CREATED || s == StatusCode::OK, "{s} {b}");
        created += usize::from(s == StatusCode::CREATED);
        ids.insert(b["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 1, "every caller got the same member");
    assert_eq!(created, 1, "exactly one enrolment created it");
    assert_eq!(h.member_count().await, 1);
}

async fn idempotency_key_replays_and_refuses_other_bodies(backend: Backend) {
    let h = Harness::start(backend).await;
    let body = json!({"code": "SH01", "name": "上海店"});
    let key = [("Idempotency-Key", "store-create-1")];
    let (s1, h1, b1) = h
        .call_full(
            Some(&h.admin_key),
            Method::POST,
            "/v1/stores",
            Some(body.clone()),
            &key,
        )
        .await;
    let (s2, h2, b2) = h
        .call_full(
            Some(&h.admin_key),
            Method::POST,
            "/v1/stores",
            Some(body.clone()),
            &key,
        )
        .await;
    assert_eq!(s1, StatusCode::CREATED);
    assert_eq!((s1, &b1), (s2, &b2), "the retry gets the identical response");
    assert!(h1.get("idempotent-replayed").is_none());
    assert_eq!(h2["idempotent-replayed"], "true");
    let (_, stores) = h.admin(Method::GET, "/v1/stores", None).await;
    assert_eq!(stores["data"].as_array().unwrap().len(), 1, "one effect");
    let (s, _, b) = h
        .call_full(
            Some(&h.admin_key),
            Method::POST,
            "/v1/stores",
            Some(json!({"code": "SH02", "name": "x"})),
            &key,
        )
        .await;
    assert_problem(s, &b, StatusCode::CONFLICT, "idempotency_key_reused");
    assert_eq!(field_of(&b), "Idempotency-Key");
    // Without a key, the same body is a second request (and here a conflict on the store code).
    let (s, b) = h.admin(Method::POST, "/v1/stores", Some(body)).await;
    assert_problem(s, &b, StatusCode::CONFLICT, "store_code_taken");
    // Concurrent retries of one enrolment with one key: one member, identical answers.
    let h = Arc::new(h);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let h = h.clone();
        tasks.push(tokio::spawn(async move {
            h.call_full(
                Some(&h.admin_key),
                Method::POST,
                "/v1/members",
                Some(json!({"phone": "13500135000"})),
                &[("Idempotency-Key", "enrol-1")],
            )
            .await
        }));
    }
    for t in tasks {
        let (s, _, b) = t.await.unwrap();
        assert!(
            s == StatusCode::CREATED || b["code"] == "idempotency_key_in_use",
            "{s} {b}"
        );
    }
    let (s, b) = h.admin(Method::GET, "/v1/members", None).await;
    assert_eq!((s, b["data"].as_array().unwrap().len()), (StatusCode::OK, 1));
}

async fn bad_input_names_the_field_and_writes_nothing(backend: Backend) {
    let h = Harness::start(backend).await;
    let send_raw = |body: Vec<u8>, content_type: &'static str| {
        // A fresh connection each time: after refusing an oversized body unread, the server
        // closes the connection, and a pooled client would trip over it on its next request.
        let req = reqwest::Client::new()
            .post(format!("{}/v1/members", h.base))
            .bearer_auth(&h.admin_key)
            .header("content-type", content_type)
            .body(body);
        async move {
            let res = req.send().await.unwrap();
            let status = res.status();
            let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
            (status, ct, res.json::<Value>().await.unwrap())
        }
    };
    let (s, ct, b) = send_raw(b"{\"phone\": ".to_vec(), "application/json").await;
    assert_problem(s, &b, StatusCode::BAD_REQUEST, "malformed_json");
    assert_eq!(ct, "application/problem+json");
    assert_eq!(field_of(&b), "body");
    let (s, _, b) = send_raw(br#"{"phnoe": "13800138000"}"#.to_vec(), "application/json").await;
    assert_problem(s, &b, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request_body");
    assert_eq!(field_of(&b), "phnoe");
    let (s, _, b) = send_raw(br#"{"phone": "12345"}"#.to_vec(), "application/json").await;
    assert_problem(s, &b, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(field_of(&b), "phone");
    let (s, _, b) = send_raw(br#"{"phone": 13800138000}"#.to_vec(), "application/json").await;
    assert_problem(s, &b, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request_body");
    assert_eq!(field_of(&b), "phone");
    let (s, _, b) = send_raw(
        br#"{"phone": "13800138000", "external_ids": [{"channel": "Bad Channel", "id": "1"}]}"#.to_vec(),
        "application/json",
    )
    .await;
    assert_problem(s, &b, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(field_of(&b), "external_ids[0].channel");
    let (s, _, b) = send_raw(br#"{"phone": "13800138000"}"#.to_vec(), "text/plain").await;
    assert_problem(
        s,
        &b,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    let big = format!(
        r#"{{"phone": "13800138000", "name": "{}"}}"#,
        "x".repeat(2 * 1024 * 1024)
    );
    let (s, _, b) = send_raw(big.into_bytes(), "application/json").await;
    assert_problem(s, &b, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    let (s, b) = h.admin(Method::GET, "/v1/members?limit=0", None).await;
    assert_problem(s, &b, StatusCode::UNPROCESSABLE_ENTITY, "invalid_query");
    assert_eq!(field_of(&b), "limit");
    let (s, b) = h.admin(Method::GET, "/v1/members?limit=abc", None).await;
    assert_problem(s, &b, StatusCode::UNPROCESSABLE_ENTITY, "invalid_query");
    assert_eq!(field_of(&b), "limit");
    let (s, b) = h.admin(Method::GET, "/v1/members/not-an-id", None).await;
    assert_problem(s, &b, StatusCode::NOT_FOUND, "not_found");
    assert_eq!(h.member_count().await, 0, "no bad request wrote a row");
}

async fn member_code_is_accepted_once(backend: Backend) {
    let h = Harness::start(backend).await;
    let clerk = h.key_for("clerk").await;
    let m = h.enrol(json!({"phone": "13800138000", "name": "王小明"})).await;
    let path = format!("/v1/members/{}/code", m["id"].as_str().unwrap());
    let (s, code) = h.admin(Method::POST, &path, None).await;
    assert_eq!(s, StatusCode::CREATED, "{code}");
    let digits = code["code"].as_str().unwrap().to_owned();
    assert_eq!(digits.len(), 18);
    let (s, v) = h
        .call(
            Some(&clerk),
            Method::POST,
            "/v1/codes/verify",
            Some(json!({"code": digits})),
        )
        .await;
    assert_eq!((s, &v["member"]["id"]), (StatusCode::OK, &m["id"]), "{v}");
    let (s, v) = h
        .call(
            Some(&clerk),
            Method::POST,
            "/v1/codes/verify",
            Some(json!({"code": digits})),
        )
        .await;
    assert_problem(s, &v, StatusCode::CONFLICT, "code_already_used");
    assert!(v["detail"].as_str().unwrap().contains("already used at"), "{v}");

    // The QR form, with one character flipped anywhere in the signed part, is refused.
    let (_, code) = h.admin(Method::POST, &path, None).await;
    let qr = code["qr_payload"].as_str().unwrap().to_owned();
    for pos in [4, qr.len() / 2, qr.len() - 3] {
        let mut bytes = qr.clone().into_bytes();
        bytes[pos] = if bytes[pos] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(bytes).unwrap();
        let (s, v) = h
            .call(
                Some(&clerk),
                Method::POST,
                "/v1/codes/verify",
                Some(json!({"code": forged})),
            )
            .await;
        assert!(
            s == StatusCode::UNPROCESSABLE_ENTITY,
            "flipping position {pos}: {s} {v}"
        );
    }
    let (s, _) = h
        .call(
            Some(&clerk),
            Method::POST,
            "/v1/codes/verify",
            Some(json!({"code": qr})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "the genuine payload still works once");
    let (s, v) = h
        .call(
            Some(&clerk),
            Method::POST,
            "/v1/codes/verify",
            Some(json!({"code": qr})),
        )
        .await;
    assert_problem(s, &v, StatusCode::CONFLICT, "code_already_used");

    // One digit changed: the check digit catches it.
    let (_, code) = h.admin(Method::POST, &path, None).await;
    let digits = code["code"].as_str().unwrap();
    let mut flipped = digits.as_bytes().to_vec();
    flipped[5] = b'0' + (flipped[5] - b'0' + 1) % 10;
    let (s, v) = h
        .call(
            Some(&clerk),
            Method::POST,
            "/v1/codes/verify",
            Some(json!({"code": String::from_utf8(flipped).unwrap()})),
        )
        .await;
    assert_problem(s, &v, StatusCode::UNPROCESSABLE_ENTITY, "code_malformed");

    // Expired after 60 seconds.
    h.clock.advance(time::Duration::seconds(61));
    let (s, v) = h
        .call(
            Some(&clerk),
            Method::POST,
            "/v1/codes/verify",
            Some(json!({"code": digits})),
        )
        .await;
    assert_problem(s, &v, StatusCode::GONE, "code_expired");
    // Concurrent verification of one fresh code: exactly one till wins.
    let (_, code) = h.admin(Method::POST, &path, None).await;
    let h = Arc::new(h);
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let (h, clerk, c) = (h.clone(), clerk.clone(), code["code"].clone());
        tasks.push(tokio::spawn(async move {
            h.call(
                Some(&clerk),
                Method::POST,
                "/v1/codes/verify",
                Some(json!({"code": c})),
            )
            .await
            .0
        }));
    }
    let mut ok = 0;
    for t in tasks {
        let s = t.await.unwrap();
        assert!(s == StatusCode::OK || s == StatusCode::CONFLICT, "{s}");
        ok += usize::from(s == StatusCode::OK);
    }
    assert_eq!(ok, 1);
}

async fn merged_member_redirects(backend: Backend) {
    let h = Harness::start(backend).await;
    let a = h
        .enrol(json!({"phone": "13800138000", "name": "王小明", "tags": ["vip"]}))
        .await;
    let b = h
        .enrol(json!({"email": "wang@example.com", "birthday": "1990-05-04", "tags": ["母嬰"], "external_ids": [{"channel": "wechat", "id": "oABC"}]}))
        .await;
    let (a_id, b_id) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    let (s, merged) = h
        .admin(
            Method::POST,
            &format!("/v1/members/{a_id}/merge"),
            Some(json!({"merge_from": b_id})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{merged}");
    assert_eq!(merged["tags"], json!(["vip", "母嬰"]));
    assert_eq!(merged["birth_month"], 5);
    assert_eq!(merged["identities"].as_array().unwrap().len(), 3);
    let (s, headers, body) = h
        .call_full(
            Some(&h.admin_key),
            Method::GET,
            &format!("/v1/members/{b_id}"),
            None,
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::PERMANENT_REDIRECT, "{body}");
    assert_eq!(headers["location"], format!("/v1/members/{a_id}"));
    assert_eq!(body["merged_into"], a["id"]);
    let (_, found) = h
        .admin(
            Method::POST,
            "/v1/members/search",
            Some(json!({"filter": {"email": "WANG@example.com"}})),
        )
        .await;
    assert_eq!(found["data"][0]["id"], a["id"]);
    let (_, found) = h
        .admin(
            Method::POST,
            "/v1/members/search",
            Some(json!({"filter": {"external_channel": "wechat", "external_id": "oABC"}})),
        )
        .await;
    assert_eq!(found["data"][0]["id"], a["id"]);
    // Writes to the merged-away ID say where to go instead.
    let (s, body) = h
        .admin(
            Method::PATCH,
            &format!("/v1/members/{b_id}"),
            Some(json!({"city": "上海"})),
        )
        .await;
    assert_problem(s, &body, StatusCode::CONFLICT, "member_merged");
    let (s, body) = h
        .admin(
            Method::POST,
            &format!("/v1/members/{a_id}/merge"),
            Some(json!({"merge_from": a_id})),
        )
        .await;
    assert_problem(s, &body, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    let (_, export) = h
        .admin(Method::GET, &format!("/v1/members/{a_id}/export"), None)
        .await;
    assert_eq!(export["merged_from"], json!([b_id]));
    assert_eq!(
        export["member"]["email"], "wang@example.com",
        "the export is in clear"
    );
}

async fn erase_removes_personal_data(backend: Backend) {
    let h = Harness::start(backend).await;
    let m = h.enrol(json!({"phone": "13800138000", "name": "王小明", "email": "w@x.cn", "tags": ["vip"], "city": "上海"})).await;
    let id = m["id"].as_str().unwrap();
    let marketer = h.key_for("marketer").await;
    let (s, b) = h
        .call(
            Some(&marketer),
            Method::POST,
            &format!("/v1/members/{id}/erase"),
            None,
        )
        .await;
    assert_problem(s, &b, StatusCode::FORBIDDEN, "forbidden");
    let (s, erased) = h
        .admin(Method::POST, &format!("/v1/members/{id}/erase"), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    for field in ["name", "phone", "email", "birthday", "city"] {
        assert_eq!(erased[field], Value::Null, "{field}");
    }
    assert_eq!(
        (&erased["status"], &erased["identities"], &erased["tags"]),
        (&json!("erased"), &json!([]), &json!([]))
    );
    let (_, found) = h
        .admin(
            Method::POST,
            "/v1/members/search",
            Some(json!({"filter": {"phone": "13800138000"}})),
        )
        .await;
    assert_eq!(found["data"], json!([]));
    // The phone is free again: the person can enrol afresh as a new member.
    let (s, again) = h
        .admin(Method::POST, "/v1/members", Some(json!({"phone": "13800138000"})))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    assert_ne!(again["id"], m["id"]);
    let (_, audit) = h
        .admin(Method::GET, &format!("/v1/audit-events?target_id={id}"), None)
        .await;
    let actions: Vec<_> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["member.erased", "member.enrolled"]);
    assert!(
        !audit.to_string().contains("13800138000"),
        "the audit log holds no personal data"
    );
    let (s, _) = h
        .admin(
            Method::PATCH,
            &format!("/v1/members/{id}"),
            Some(json!({"name": "x"})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
}

async fn personal_data_is_masked_unless_revealed(backend: Backend) {
    let h = Harness::start(backend).await;
    let m = h.enrol(json!({"phone": "13800138000", "name": "王小明", "email": "wang@example.com", "birthday": "1990-05-04"})).await;
    assert_eq!(m["phone"], "138****8000");
    assert_eq!(m["name"], "王**");
    assert_eq!(m["email"], "w***@example.com");
    assert_eq!(m["birthday"], "****-05-**");
    let id = m["id"].as_str().unwrap();
    let marketer = h.key_for("marketer").await;
    let (s, b) = h
        .call(
            Some(&marketer),
            Method::GET,
            &format!("/v1/members/{id}?reveal=true"),
            None,
        )
        .await;
    assert_problem(s, &b, StatusCode::FORBIDDEN, "forbidden");
    let (s, b) = h
        .admin(Method::GET, &format!("/v1/members/{id}?reveal=true"), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (&b["phone"], &b["name"], &b["pii_revealed"]),
        (&json!("+8613800138000"), &json!("王小明"), &json!(true))
    );
    let (_, audit) = h
        .admin(Method::GET, "/v1/audit-events?action=member.pii_revealed", None)
        .await;
    assert_eq!(audit["data"].as_array().unwrap().len(), 1);
    let (_, all_audit) = h.admin(Method::GET, "/v1/audit-events", None).await;
    let text = all_audit.to_string();
    assert!(
        !text.contains("13800138000") && !text.contains("wang@example.com") && !text.contains("王小明"),
        "{text}"
    );
}

async fn operators_sign_in_and_out(backend: Backend) {
    let h = Harness::start(backend).await;
    let (s, b) = h
        .call(
            None,
            Method::POST,
            "/v1/auth/login",
            Some(json!({"username": h.admin_username, "password": "wrong password"})),
        )
        .await;
    assert_problem(s, &b, StatusCode::UNAUTHORIZED, "unauthenticated");
    let (s, b) = h
        .call(
            None,
            Method::POST,
            "/v1/auth/login",
            Some(json!({"username": "nobody-here", "password": "wrong password"})),
        )
        .await;
    assert_problem(s, &b, StatusCode::UNAUTHORIZED, "unauthenticated");
    let (s, session) = h
        .call(
            None,
            Method::POST,
            "/v1/auth/login",
            Some(json!({"username": h.admin_username.to_uppercase(), "password": h.admin_password})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{session}");
    let token = session["token"].as_str().unwrap().to_owned();
    let (s, me) = h.call(Some(&token), Method::GET, "/v1/me", None).await;
    assert_eq!(
        (s, &me["role"], &me["kind"]),
        (StatusCode::OK, &json!("admin"), &json!("operator"))
    );
    // An admin creates a clerk; the clerk signs in and may not manage operators.
    let username = format!("clerk-{}", huiyuan_core::crypto::random_token(4).to_lowercase());
    let (s, clerk) = h
        .call(
            Some(&token),
            Method::POST,
            "/v1/operators",
            Some(json!({"username": username, "display_name": "店員", "role": "clerk", "password": "short"})),
        )
        .await;
    assert_problem(s, &clerk, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(field_of(&clerk), "password");
    let (s, clerk) = h
        .call(Some(&token), Method::POST, "/v1/operators", Some(json!({"username": username, "display_name": "店員", "role": "clerk", "password": "a long password"})))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{clerk}");
    let (_, clerk_session) = h
        .call(
            None,
            Method::POST,
            "/v1/auth/login",
            Some(json!({"username": username, "password": "a long password"})),
        )
        .await;
    let clerk_token = clerk_session["token"].as_str().unwrap().to_owned();
    let (s, b) = h
        .call(Some(&clerk_token), Method::GET, "/v1/operators", None)
        .await;
    assert_problem(s, &b, StatusCode::FORBIDDEN, "forbidden");
    // Disabling the clerk ends their session at once.
    let (s, _) = h
        .call(
            Some(&token),
            Method::PATCH,
            &format!("/v1/operators/{}", clerk["id"].as_str().unwrap()),
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, b) = h.call(Some(&clerk_token), Method::GET, "/v1/me", None).await;
    assert_problem(s, &b, StatusCode::UNAUTHORIZED, "unauthenticated");
    let (s, _) = h.call(Some(&token), Method::POST, "/v1/auth/logout", None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, b) = h.call(Some(&token), Method::GET, "/v1/me", None).await;
    assert_problem(s, &b, StatusCode::UNAUTHORIZED, "unauthenticated");
    // Sign-out reads the token exactly as sign-in checks it: a lower-case scheme works for both.
    let (_, session) = h
        .call(
            None,
            Method::POST,
            "/v1/auth/login",
            Some(json!({"username": h.admin_username, "password": h.admin_password})),
        )
        .await;
    let lower = format!("bearer {}", session["token"].as_str().unwrap());
    let (s, _, _) = h
        .call_full(None, Method::GET, "/v1/me", None, &[("authorization", &lower)])
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, _) = h
        .call_full(
            None,
            Method::POST,
            "/v1/auth/logout",
            None,
            &[("authorization", &lower)],
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _, b) = h
        .call_full(None, Method::GET, "/v1/me", None, &[("authorization", &lower)])
        .await;
    assert_problem(s, &b, StatusCode::UNAUTHORIZED, "unauthenticated");
}

async fn till_identify_enrols_unknown_phone(backend: Backend) {
    let h = Harness::start(backend).await;
    let clerk = h.key_for("clerk").await;
    let (_, store) = h
        .admin(
            Method::POST,
            "/v1/stores",
            Some(json!({"code": "SH01", "name": "上海店"})),
        )
        .await;
    let body = json!({"phone": "139 0013 9000", "store_id": store["id"]});
    let (s, first) = h
        .call(
            Some(&clerk),
            Method::POST,
            "/v1/till/identify",
            Some(body.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{first}");
    assert_eq!(
        (&first["enrolled"], &first["member"]["channel"]),
        (&json!(true), &json!("pos"))
    );
    assert_eq!(first["member"]["store_id"], store["id"]);
    let (s, second) = h
        .call(Some(&clerk), Method::POST, "/v1/till/identify", Some(body))
        .await;
    assert_eq!((s, &second["enrolled"]), (StatusCode::OK, &json!(false)));
    assert_eq!(first["member"]["id"], second["member"]["id"]);
    let (s, b) = h
        .call(Some(&clerk), Method::POST, "/v1/till/identify", Some(json!({})))
        .await;
    assert_problem(s, &b, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    let (s, b) = h
        .call(
            Some(&clerk),
            Method::POST,
            "/v1/till/identify",
            Some(json!({"phone": "13900139000", "store_id": "sto_01JD4ZQ7X8Y2K3M4N5P6Q7R8S9"})),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::OK,
        "known phone: the store is not checked again: {b}"
    );
    let (s, b) = h
        .call(
            Some(&clerk),
            Method::POST,
            "/v1/till/identify",
            Some(json!({"phone": "13700137000", "store_id": "sto_01JD4ZQ7X8Y2K3M4N5P6Q7R8S9"})),
        )
        .await;
    assert_problem(s, &b, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(field_of(&b), "store_id");
}

async fn update_member_checks_identities(backend: Backend) {
    let h = Harness::start(backend).await;
    let a = h.enrol(json!({"phone": "13800138000", "name": "甲"})).await;
    let b = h.enrol(json!({"phone": "13900139000"})).await;
    let b_path = format!("/v1/members/{}", b["id"].as_str().unwrap());
    let (s, body) = h
        .admin(Method::PATCH, &b_path, Some(json!({"phone": "138-0013-8000"})))
        .await;
    assert_problem(s, &body, StatusCode::CONFLICT, "identity_conflict");
    assert_eq!(field_of(&body), "phone");
    let (s, body) = h
        .admin(Method::PATCH, &b_path, Some(json!({"phone": "13700137000", "name": "乙", "add_tags": ["vip"], "attributes": {"level": 3}})))
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        (&body["phone"], &body["tags"]),
        (&json!("137****7000"), &json!(["vip"]))
    );
    // The old phone no longer finds B; the new one does.
    let (_, old) = h
        .admin(
            Method::POST,
            "/v1/members/search",
            Some(json!({"filter": {"phone": "13900139000"}})),
        )
        .await;
    assert_eq!(old["data"], json!([]));
    let (_, new) = h
        .admin(
            Method::POST,
            "/v1/members/search",
            Some(json!({"filter": {"phone": "13700137000"}})),
        )
        .await;
    assert_eq!(new["data"][0]["id"], b["id"]);
    let (s, body) = h
        .admin(
            Method::PATCH,
            &b_path,
            Some(json!({"name": null, "attributes": {"level": null}})),
        )
        .await;
    assert_eq!(
        (s, &body["name"], &body["attributes"]),
        (StatusCode::OK, &Value::Null, &json!({}))
    );
    let (_, audit) = h
        .admin(
            Method::GET,
            &format!(
                "/v1/audit-events?target_id={}&action=member.updated",
                b["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    let first = &audit["data"][1];
    assert_eq!(first["diff"]["before"]["phone"], "139****9000");
    assert_eq!(first["diff"]["after"]["phone"], "137****7000");
    let _ = a;
}

async fn rate_limit_answers_429(backend: Backend) {
    let h = Harness::start_with(
        backend,
        ApiConfig {
            rate_limit_per_minute: 5,
            ..ApiConfig::default()
        },
    )
    .await;
    for i in 0..5 {
        let (s, headers, _) = h
            .call_full(Some(&h.admin_key), Method::GET, "/v1/me", None, &[])
            .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(headers["ratelimit-limit"], "5");
        assert_eq!(headers["ratelimit-remaining"], (4 - i).to_string().as_str());
    }
    let (s, headers, b) = h
        .call_full(Some(&h.admin_key), Method::GET, "/v1/me", None, &[])
        .await;
    assert_problem(s, &b, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
}

async fn search_and_pagination(backend: Backend) {
    let h = Harness::start(backend).await;
    for (i, name) in ["王小明", "王小紅", "王大力", "李四", "Alexander Hamilton-Smith"]
        .iter()
        .enumerate()
    {
        h.enrol(json!({"phone": format!("1380013800{i}"), "name": name, "tags": if i % 2 == 0 { vec!["vip"] } else { vec![] }})).await;
    }
    let h = &h;
    let search = |filter: Value| async move {
        let (s, b) = h
            .admin(
                Method::POST,
                "/v1/members/search",
                Some(json!({"filter": filter})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        b["data"].as_array().unwrap().len()
    };
    assert_eq!(search(json!({"name_prefix": "王"})).await, 3);
    assert_eq!(search(json!({"name_prefix": "王小"})).await, 2);
    assert_eq!(search(json!({"name_prefix": "王小明"})).await, 1);
    assert_eq!(
        search(json!({"name_prefix": "alexander ham"})).await,
        1,
        "past the indexed prefix, confirmed on the name"
    );
    assert_eq!(search(json!({"name_prefix": "alexander hax"})).await, 0);
    assert_eq!(search(json!({"tag": "vip"})).await, 3);
    assert_eq!(search(json!({"tag": "vip", "name_prefix": "王"})).await, 2);
    let (s, b) = h
        .admin(
            Method::POST,
            "/v1/members/search",
            Some(json!({"filter": {"phone": "abc"}})),
        )
        .await;
    assert_problem(s, &b, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    let (s, b) = h
        .admin(
            Method::POST,
            "/v1/members/search",
            Some(json!({"filter": {"phnoe": "1"}})),
        )
        .await;
    assert_problem(s, &b, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request_body");
    assert_eq!(field_of(&b), "filter.phnoe");
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/members?limit=2&starting_after={c}"),
            None => "/v1/members?limit=2".to_owned(),
        };
        let (_, page) = h.admin(Method::GET, &path, None).await;
        let data = page["data"].as_array().unwrap();
        seen.extend(data.iter().map(|m| m["id"].as_str().unwrap().to_owned()));
        if !page["has_more"].as_bool().unwrap() {
            break;
        }
        cursor = seen.last().cloned();
    }
    assert_eq!(seen.len(), 5);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.reverse();
    assert_eq!(seen, sorted, "newest first, no overlap");
}

/// A client that gives up mid-request (a till losing its network) must not leave a half-done
/// request behind: the work completes, and the retry with the same key gets its response.
async fn abandoned_request_still_completes(backend: Backend) {
    let h = Harness::start(backend).await;
    let username = format!("late-{}", huiyuan_core::crypto::random_token(4).to_lowercase());
    let body =
        json!({"username": username, "display_name": "Late", "role": "clerk", "password": "a long password"});
    let impatient = reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(5))
        .build()
        .unwrap();
    let gave_up = impatient
        .post(format!("{}/v1/operators", h.base))
        .bearer_auth(&h.admin_key)
        .header("Idempotency-Key", "op-late-1")
        .json(&body)
        .send()
        .await;
    assert!(
        gave_up.is_err(),
        "the client was meant to time out (password hashing takes longer)"
    );
    let mut retried = None;
    for _ in 0..100 {
        let (s, _, b) = h
            .call_full(
                Some(&h.admin_key),
                Method::POST,
                "/v1/operators",
                Some(body.clone()),
                &[("Idempotency-Key", "op-late-1")],
            )
            .await;
        if b["code"] != "idempotency_key_in_use" {
            retried = Some((s, b));
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (s, b) = retried.expect("the abandoned request finished");
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (_, ops) = h.admin(Method::GET, "/v1/operators", None).await;
    let named = ops["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["username"] == json!(username))
        .count();
    assert_eq!(named, 1);
}

// ---- Loyalty engine -------------------------------------------------------------------------

impl Harness {
    async fn publish_demo_programme(&self) {
        let doc: Value =
            serde_json::from_str(huiyuan_domain::loyalty::programme::DEMO_PROGRAMME_JSON).unwrap();
        let (s, b) = self.admin(Method::PUT, "/v1/programme", Some(doc)).await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
    }

    /// Enrols a member by phone and returns their ID.
    async fn member_id(&self, phone: &str) -> String {
        self.enrol(json!({ "phone": phone })).await["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn buy(&self, body: Value) -> (StatusCode, Value) {
        self.admin(Method::POST, "/v1/transactions", Some(body)).await
    }

    async fn balance(&self, member: &str) -> Value {
        let (s, b) = self
            .admin(Method::GET, &format!("/v1/members/{member}/points"), None)
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        b
    }

    async fn run_jobs(&self) {
        let (s, b) = self.admin(Method::POST, "/v1/jobs/run", None).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert!(b.as_array().unwrap().iter().all(|r| r["error"].is_null()), "{b}");
    }

    async fn verify_ok(&self) {
        let (s, b) = self.admin(Method::GET, "/v1/ledger/verify", None).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(b["problems"], json!([]), "{b}");
    }
}

fn sale(order: &str, member: &str, yuan: i64) -> Value {
    json!({"order_id": order, "member_id": member, "channel": "pos",
           "lines": [{"sku": "TEE", "category": "apparel", "quantity": 1, "amount": yuan * 100}],
           "paid_amount": yuan * 100})
}

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

async fn post(h: &Harness, path: &str, body: Value) -> (StatusCode, Value) {
    h.admin(Method::POST, path, Some(body)).await
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

/// Coupons, the wallet and the till (a module of this binary, not a test binary of its own).
#[path = "api/commerce.rs"]
mod commerce;

/// Imports and exports.
#[path = "api/files.rs"]
mod files;

/// Every route × every role, hostile input.
#[path = "api/security.rs"]
mod security;
