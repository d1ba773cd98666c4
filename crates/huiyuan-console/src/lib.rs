//! The operator console at `/console` and the member's own pages at `/m`, served by the same
//! binary as the API. Pages are rendered on the server (minijinja templates compiled in) and
//! call the same use cases as the API, with the operator's session as the actor, so a page can
//! never do what the operator's role may not. Forms are plain HTML forms; the only scripts are
//! the vendored chart library and a few lines that refresh the member's QR code.

mod forms;
mod guard;
mod i18n;
mod pages;
mod render;
mod session;
mod snapshots;

use std::sync::Arc;

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use huiyuan_core::Core;

/// What every handler needs.
#[derive(Clone)]
pub struct ConsoleState {
    pub core: Arc<Core>,
    kpis: Arc<snapshots::KpiSnapshots>,
}

/// The console's and member pages' routes, to be merged into the API's router.
pub fn router(core: Arc<Core>) -> Router {
    let kpis = Arc::new(snapshots::KpiSnapshots::default());
    // Keeps the dashboard figures being viewed fresh; ends with the runtime.
    let (refresh_core, refresh_kpis) = (core.clone(), kpis.clone());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
        loop {
            tick.tick().await;
            refresh_kpis.refresh(&refresh_core).await;
        }
    });
    let state = ConsoleState { core, kpis };
    Router::new()
        .route("/", get(|| async { Redirect::temporary("/console/") }))
        .route("/console", get(|| async { Redirect::temporary("/console/") }))
        .route("/console/", get(pages::home))
        .route("/console/login", get(pages::login_page).post(pages::login))
        .route("/console/logout", post(pages::logout))
        .route("/console/lang/{lang}", get(pages::switch_language))
        .route("/console/dashboard", get(pages::dashboard::show))
        .route("/console/members", get(pages::members::search))
        .route("/console/members/{id}", get(pages::members::show))
        .route("/console/members/{id}/reveal", post(pages::members::reveal))
        .route("/console/members/{id}/adjust", post(pages::members::adjust))
        .route(
            "/console/members/{id}/coupons",
            post(pages::members::issue_coupon),
        )
        .route("/console/members/{id}/link", post(pages::members::sign_in_link))
        .route("/console/members/{id}/merge", post(pages::members::merge))
        .route("/console/members/{id}/erase", post(pages::members::erase))
        .route(
            "/console/programme",
            get(pages::programme::show).post(pages::programme::submit),
        )
        .route(
            "/console/coupons",
            get(pages::coupons::show).post(pages::coupons::create),
        )
        .route("/console/coupons/bulk", post(pages::coupons::issue_bulk))
        .route("/console/coupons/jobs/{id}", get(pages::coupons::job))
        .route("/console/till", get(pages::till::show).post(pages::till::submit))
        .route("/console/till/sales/{order}", get(pages::till::sale))
        .route("/console/till/sales/{order}/refund", post(pages::till::refund))
        .route("/console/audit", get(pages::audit::show))
        .route("/console/assets/{file}", get(asset))
        .route("/m", get(|| async { Redirect::temporary("/m/") }))
        .route("/m/", get(pages::portal::card))
        .route("/m/sign-in", get(pages::portal::sign_in))
        .route("/m/code.svg", get(pages::portal::code))
        .route("/m/sign-out", post(pages::portal::sign_out))
        .layer(axum::middleware::from_fn(guard::refuse_cross_site_posts))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            session::finish_page,
        ))
        .layer(axum::middleware::from_fn(guard::security_headers))
        .with_state(state)
}

/// The compiled-in static files. ECharts is vendored from npm (see assets/vendor/README.md).
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "console.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/console.css"),
    ),
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/console.js"),
    ),
    (
        "echarts.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/vendor/echarts.min.js"),
    ),
];

async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, mime, body)) => (
            [
                (header::CONTENT_TYPE, *mime),
                (header::CACHE_CONTROL, "public, max-age=86400"),
            ],
            *body,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
