//! The API, end to end over real HTTP, on SQLite and on PostgreSQL. Each check is an async fn
//! taking a [`Harness`], in the module of its resource (`api/*.rs`); `both_backends!` runs it
//! once per backend. This file holds the harness and the helpers the modules share.

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

/// How far back the tests' live sales may be dated: the analytics tests replay sales of
/// early 2026 whatever day the harness starts on (CI starts it as late as May 2027).
const BACKDATE_WINDOW: time::Duration = time::Duration::days(731);

fn core_config() -> CoreConfig {
    CoreConfig {
        backdate_window: BACKDATE_WINDOW,
        ..CoreConfig::default()
    }
}

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
                let dir = huiyuan_store_sqlite::testing::scratch_dir(std::path::Path::new(env!(
                    "CARGO_TARGET_TMPDIR"
                )));
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
        let mut core = Core::new(location.open().await, &master, clock.clone(), core_config());
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
            core_config(),
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

// ---- Helpers the loyalty, commerce and analytics checks share --------------------------------

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

async fn post(h: &Harness, path: &str, body: Value) -> (StatusCode, Value) {
    h.admin(Method::POST, path, Some(body)).await
}

// ---- The checks, by resource (modules of this binary, not test binaries of their own) --------

/// OpenAPI, authentication, idempotency, limits, bad input.
#[path = "api/platform.rs"]
mod platform;

/// Operators, roles, tenant isolation.
#[path = "api/access.rs"]
mod access;

/// Members and identities.
#[path = "api/members.rs"]
mod members;

/// The loyalty engine.
#[path = "api/loyalty.rs"]
mod loyalty;

/// Analytics.
#[path = "api/analytics.rs"]
mod analytics;

/// Coupons, the wallet and the till.
#[path = "api/commerce.rs"]
mod commerce;

/// Imports and exports.
#[path = "api/files.rs"]
mod files;

/// Every route × every role, hostile input.
#[path = "api/security.rs"]
mod security;
