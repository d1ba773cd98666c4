//! Huiyuan's HTTP API: `/v1/…` JSON over axum, errors as RFC 7807 problems, OpenAPI 3.1 at
//! `/openapi.json` with a browsable page at `/docs` whose assets are compiled in.

pub mod extract;
pub mod middleware;
pub mod problem;
pub mod routes;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Request};
use axum::response::IntoResponse;
use axum::Router;
use huiyuan_core::Core;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

use crate::extract::REQUEST_ID;
use crate::middleware::RateLimits;
use crate::problem::ApiError;
use crate::routes::{access, analytics, audit, brand, commerce, files, loyalty, members, ops};
use huiyuan_core::ErrorCode;

/// Limits of the HTTP layer.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Largest accepted request body.
    pub body_limit_bytes: usize,
    /// Requests a minute per API key or operator (also the burst).
    pub rate_limit_per_minute: u32,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            body_limit_bytes: 1024 * 1024,
            rate_limit_per_minute: 1200,
        }
    }
}

/// Cloned by every middleware layer of every request: everything in it sits behind one `Arc`
/// each, so a clone is a few counter increments.
#[derive(Clone)]
pub struct AppState {
    pub core: Arc<Core>,
    pub config: Arc<ApiConfig>,
    pub limits: Arc<RateLimits>,
    pub metrics: PrometheusHandle,
}

impl AppState {
    pub fn new(core: Core, config: ApiConfig) -> Self {
        let limits = Arc::new(RateLimits::new(config.rate_limit_per_minute));
        Self {
            core: Arc::new(core),
            config: Arc::new(config),
            limits,
            metrics: metrics_handle(),
        }
    }
}

/// The process-wide Prometheus recorder (the `metrics` facade has one global recorder).
fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("http_request_duration_seconds".into()),
                    &[
                        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    ],
                )
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder is installed, in which case ours stays empty.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Huiyuan API",
        description = "Membership and loyalty operations. Authenticate with `Authorization: Bearer <API key or session token>`. \
            Every POST, PATCH and DELETE accepts an `Idempotency-Key` header. Errors are RFC 7807 problems \
            (`application/problem+json`) with a stable `code` and per-field `errors`.",
        license(name = "Apache-2.0")
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "members", description = "Enrol, find, change, merge, erase and export members"),
        (name = "member codes", description = "Dynamic member codes (一碼通)"),
        (name = "till", description = "The path a clerk uses at the till"),
        (name = "brand"), (name = "stores"), (name = "auth"), (name = "operators"), (name = "api keys"),
        (name = "audit"), (name = "operations", description = "Health, readiness and metrics"),
        (name = "programme", description = "Earning rules, multipliers, caps, expiry and tiers, versioned"),
        (name = "purchases", description = "Purchases and refunds: points earned and reversed"),
        (name = "points", description = "Balances, statements, adjustments, redemptions, tiers, ledger verification"),
        (name = "events", description = "The event outbox and the maintenance jobs"),
        (name = "analytics", description = "RFM, cohorts, lifecycle stages, lifetime value, dashboard KPIs, member insights and recommendations, segment previews"),
        (name = "coupons", description = "Coupon templates, issuing, claim codes, the rewards catalogue, redemption and the usage report"),
        (name = "wallet", description = "Stored value (儲值): top-ups with bonus, refunds, balance and statement; paid membership plans (付費會員)"),
        (name = "checkout", description = "The till: quote a basket, commit a sale (coupons, points, wallet in one step), refund it"),
        (name = "imports", description = "Bulk import of members and purchases from CSV (background jobs), and exports as CSV or Parquet")
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("API key or session token")
                    .build(),
            ),
        );
    }
}

/// Request IDs for correlation in logs and problem responses (honoured when the caller sends one).
#[derive(Clone, Default)]
struct MakeId;

impl MakeRequestId for MakeId {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        huiyuan_core::crypto::random_token(12)
            .parse()
            .ok()
            .map(RequestId::new)
    }
}

fn split(state: &AppState) -> (Router<AppState>, serde_json::Value) {
    let authenticated = OpenApiRouter::new()
        .routes(routes!(members::enrol, members::list_members))
        .routes(routes!(members::search_members))
        .routes(routes!(members::get_member, members::update_member))
        .routes(routes!(members::merge_members))
        .routes(routes!(members::erase_member))
        .routes(routes!(members::export_member))
        .routes(routes!(members::issue_code))
        .routes(routes!(members::verify_code))
        .routes(routes!(members::till_identify))
        .routes(routes!(brand::get_brand, brand::update_brand))
        .routes(routes!(brand::list_stores, brand::create_store))
        .routes(routes!(brand::get_store, brand::update_store))
        .routes(routes!(access::logout))
        .routes(routes!(access::me))
        .routes(routes!(access::list_operators, access::create_operator))
        .routes(routes!(access::update_operator))
        .routes(routes!(access::list_api_keys, access::create_api_key))
        .routes(routes!(access::revoke_api_key))
        .routes(routes!(audit::list_audit))
        .routes(routes!(loyalty::get_programme, loyalty::publish_programme))
        .routes(routes!(loyalty::list_programme_versions))
        .routes(routes!(loyalty::preview_programme))
        .routes(routes!(loyalty::record_purchase))
        .routes(routes!(loyalty::record_purchases))
        .routes(routes!(loyalty::get_purchase))
        .routes(routes!(loyalty::refund_purchase))
        .routes(routes!(loyalty::balance))
        .routes(routes!(loyalty::statement))
        .routes(routes!(loyalty::adjust))
        .routes(routes!(loyalty::redeem))
        .routes(routes!(loyalty::transfer))
        .routes(routes!(loyalty::action))
        .routes(routes!(loyalty::verify_member))
        .routes(routes!(loyalty::tier_history))
        .routes(routes!(loyalty::member_purchases))
        .routes(routes!(loyalty::verify_brand))
        .routes(routes!(loyalty::list_events))
        .routes(routes!(loyalty::run_jobs))
        .routes(routes!(commerce::create_template, commerce::list_templates))
        .routes(routes!(commerce::get_template))
        .routes(routes!(commerce::archive_template))
        .routes(routes!(commerce::coupon_usage))
        .routes(routes!(commerce::coupon_redemptions))
        .routes(routes!(commerce::issue_bulk))
        .routes(routes!(commerce::bulk_job))
        .routes(routes!(commerce::create_pool, commerce::list_pools))
        .routes(routes!(commerce::get_pool))
        .routes(routes!(commerce::import_codes))
        .routes(routes!(commerce::hand_out_code, commerce::member_codes))
        .routes(routes!(commerce::buy_plan, commerce::member_plans))
        .routes(routes!(commerce::refund_plan))
        .routes(routes!(commerce::plan_renewals))
        .routes(routes!(commerce::use_perk))
        .routes(routes!(commerce::benefit_usage))
        .routes(routes!(commerce::issue, commerce::member_coupons))
        .routes(routes!(commerce::claim))
        .routes(routes!(commerce::reward))
        .routes(routes!(commerce::get_coupon))
        .routes(routes!(commerce::redeem_coupon))
        .routes(routes!(commerce::top_up))
        .routes(routes!(commerce::refund_top_up))
        .routes(routes!(commerce::wallet))
        .routes(routes!(commerce::wallet_entries))
        .routes(routes!(commerce::quote))
        .routes(routes!(commerce::commit))
        .routes(routes!(commerce::get_sale))
        .routes(routes!(commerce::refund))
        .routes(routes!(analytics::rfm))
        .routes(routes!(analytics::cohorts))
        .routes(routes!(analytics::lifecycle))
        .routes(routes!(analytics::clv))
        .routes(routes!(analytics::kpis))
        .routes(routes!(analytics::member_insights))
        .routes(routes!(analytics::recommendations))
        .routes(routes!(analytics::preview_segment))
        .routes(routes!(files::import_rejected))
        .routes(routes!(files::export))
        // Uploads may be larger than other requests.
        .merge(
            OpenApiRouter::new()
                .routes(routes!(files::import_members))
                .routes(routes!(files::import_transactions))
                .layer(DefaultBodyLimit::max(files::IMPORT_BODY_LIMIT)),
        )
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::idempotency,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::authenticate,
        ));
    // Sign-in attempts are limited by `Core::login` itself, for the console's form too.
    let sign_in = OpenApiRouter::new().routes(routes!(access::login));
    let operations = OpenApiRouter::new()
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics));
    let (router, api) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(authenticated)
        .merge(sign_in)
        .merge(operations)
        .split_for_parts();
    (router, finish_document(api))
}

/// Two corrections the route attributes cannot express, made once on the finished document
/// (schemathesis found both):
/// - problem responses are sent as `application/problem+json` (RFC 7807), not `application/json`;
/// - a schema that another extends with `#[serde(flatten)]` (an `allOf` branch) must not say
///   `additionalProperties: false`, or no extended object could ever match it. Such inputs still
///   refuse unknown fields on the server.
fn finish_document(api: utoipa::openapi::OpenApi) -> serde_json::Value {
    const PROBLEM: &str = "#/components/schemas/Problem";
    // The document as JSON: utoipa's types do not read back every schema they write.
    let mut doc = serde_json::to_value(&api).unwrap_or_default();
    let operations = doc
        .get_mut("paths")
        .and_then(|p| p.as_object_mut())
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(|item| item.as_object_mut())
        .flat_map(|item| item.values_mut());
    for operation in operations {
        // (`get_mut`, not indexing: a mutable index inserts the key it does not find.)
        let responses = operation
            .get_mut("responses")
            .and_then(|r| r.as_object_mut())
            .into_iter()
            .flat_map(|r| r.values_mut());
        for response in responses {
            if let Some(content) = response.get_mut("content").and_then(|c| c.as_object_mut()) {
                if content
                    .get("application/json")
                    .is_some_and(|c| c["schema"]["$ref"] == PROBLEM)
                {
                    if let Some(body) = content.remove("application/json") {
                        content.insert("application/problem+json".to_owned(), body);
                    }
                }
            }
        }
    }
    let mut extended = Vec::new();
    collect_all_of_refs(&doc["components"]["schemas"], &mut extended);
    for name in extended {
        let schema = doc.pointer_mut(&format!("/components/schemas/{name}"));
        if let Some(schema) = schema.and_then(|s| s.as_object_mut()) {
            if schema.get("additionalProperties") == Some(&serde_json::Value::Bool(false)) {
                schema.remove("additionalProperties");
            }
        }
    }
    doc
}

/// Names of the component schemas that appear as `allOf` branches anywhere under `value`.
fn collect_all_of_refs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            if let Some(branches) = map.get("allOf").and_then(|a| a.as_array()) {
                out.extend(branches.iter().filter_map(|b| {
                    b["$ref"]
                        .as_str()?
                        .strip_prefix("#/components/schemas/")
                        .map(str::to_owned)
                }));
            }
            map.values().for_each(|v| collect_all_of_refs(v, out));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_all_of_refs(v, out)),
        _ => {}
    }
}

/// The OpenAPI document of every route.
pub fn openapi(state: &AppState) -> serde_json::Value {
    split(state).1
}

/// The API alone, its front door the API docs (the tests' application).
pub fn app(state: AppState) -> Router {
    let front_door = Router::new().route(
        "/",
        axum::routing::get(|| async { axum::response::Redirect::temporary("/docs/") }),
    );
    app_with_pages(state, front_door)
}

/// The whole HTTP application: the API and `pages` (the console, merged in by the binary),
/// under the same limits, panic guard, request IDs and request log.
pub fn app_with_pages(state: AppState, pages: Router) -> Router {
    let (router, api) = split(&state);
    let request_id = HeaderName::from_static(REQUEST_ID);
    let body_limit = state.config.body_limit_bytes;
    router
        .route_layer(axum::middleware::from_fn(middleware::record_metrics))
        .merge(SwaggerUi::new("/docs").external_url_unchecked("/openapi.json", api))
        .fallback(|| async { ApiError::new(ErrorCode::NotFound, "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                ErrorCode::MethodNotAllowed,
                "this route does not take that method",
            )
        })
        .with_state(state)
        .merge(pages)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn(middleware::run_to_completion))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::new(ErrorCode::Internal, "an internal error occurred").into_response()
        }))
        .layer(
            // Only the route template and request ID are logged: never the query string or body,
            // which can carry personal data.
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request<_>| {
                    let route = req
                        .extensions()
                        .get::<axum::extract::MatchedPath>()
                        .map(|p| p.as_str().to_owned())
                        .unwrap_or_default();
                    let id = extract::request_id(req.headers()).unwrap_or("");
                    tracing::info_span!("request", method = %req.method(), route, request_id = id)
                })
                .on_response(
                    |res: &axum::response::Response, latency: Duration, _span: &tracing::Span| {
                        tracing::info!(
                            status = res.status().as_u16(),
                            latency_ms = latency.as_secs_f64() * 1000.0,
                            "response"
                        );
                    },
                ),
        )
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeId))
}
