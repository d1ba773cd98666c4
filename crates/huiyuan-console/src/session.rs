//! Operator sessions in cookies, CSRF tokens, and the page errors.
//!
//! The cookie holds the same session token `POST /v1/auth/login` returns (`HttpOnly`,
//! `SameSite=Strict`, `Secure` behind HTTPS), so signing out in either place ends both. Every
//! form that changes something carries a CSRF token derived from the session token; a form
//! posted from another site has neither the cookie (SameSite) nor the token.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use huiyuan_core::views::BrandView;
use huiyuan_core::{Actor, CoreError};
use huiyuan_domain::access::Permission;
use minijinja::context;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::forms::Form;
use crate::i18n::Lang;
use crate::{render, ConsoleState};

pub const SESSION_COOKIE: &str = "hy_session";
pub const LANG_COOKIE: &str = "hy_lang";
pub const MEMBER_COOKIE: &str = "hy_member";

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// `Set-Cookie` for a secret: script cannot read it and other sites do not send it.
pub fn secret_cookie(headers: &HeaderMap, name: &str, value: &str, max_age_secs: i64) -> String {
    let secure = headers
        .get("x-forwarded-proto")
        .is_some_and(|p| p.as_bytes().eq_ignore_ascii_case(b"https"));
    format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{}",
        if secure { "; Secure" } else { "" }
    )
}

pub fn language(headers: &HeaderMap) -> Lang {
    if let Some(l) = cookie(headers, LANG_COOKIE) {
        return Lang::parse(l);
    }
    let accept = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if accept.trim_start().to_ascii_lowercase().starts_with("en") {
        Lang::En
    } else {
        Lang::Zh
    }
}

fn csrf_token(session: &str) -> String {
    let digest = Sha256::new()
        .chain_update(b"huiyuan console csrf\0")
        .chain_update(session.as_bytes())
        .finalize();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..18])
}

/// A signed-in operator, their brand and language.
pub struct Operator {
    pub actor: Actor,
    pub name: String,
    pub token: String,
    pub csrf: String,
    pub lang: Lang,
    pub brand: BrandView,
    /// What the previous step did (`?done=adjusted` after a redirect), for the page's notice.
    pub done: Option<String>,
}

/// The pages of the console's menu, each with what opens it.
pub const NAV: &[(&str, &str, &[Permission])] = &[
    ("/console/dashboard", "Overview", &[Permission::AnalyticsRead]),
    // Before members: the first page a role may open is its home, and a clerk's is the till.
    ("/console/till", "Till", &[Permission::Checkout]),
    ("/console/members", "Members", &[Permission::MembersRead]),
    (
        "/console/coupons",
        "Coupons",
        &[Permission::CouponsManage, Permission::CouponsIssue],
    ),
    (
        "/console/programme",
        "Programme",
        &[
            Permission::ProgrammeManage,
            Permission::AnalyticsRead,
            Permission::AuditRead,
        ],
    ),
    ("/console/audit", "Audit log", &[Permission::AuditRead]),
];

impl Operator {
    /// Refuses with the 403 page unless the operator's role opens the page at `path`.
    pub fn require_page(&self, path: &str) -> Result<(), PageError> {
        match NAV.iter().find(|(p, _, _)| *p == path) {
            Some((_, _, any)) if any.iter().any(|p| self.actor.may(*p)) => Ok(()),
            Some((_, _, any)) => Err(PageError::Core(CoreError::Forbidden {
                role: self.actor.role,
                permission: any[0],
            })),
            None => Ok(()),
        }
    }

    pub fn require(&self, permission: Permission) -> Result<(), PageError> {
        self.actor.require(permission).map_err(PageError::Core)
    }

    /// The menu entries this operator may open.
    pub fn menu(&self) -> Vec<minijinja::Value> {
        NAV.iter()
            .filter(|(_, _, any)| any.iter().any(|p| self.actor.may(*p)))
            .map(|(href, label, _)| {
                minijinja::Value::from_serialize(serde_json::json!({"href": href, "label": label}))
            })
            .collect()
    }

    /// The context every console page starts from.
    pub fn context(&self, page: &str) -> minijinja::Value {
        context! {
            lang => self.lang.code(),
            tz => self.brand.timezone.clone(),
            currency => self.brand.currency.clone(),
            brand_name => self.brand.name.clone(),
            operator => self.name.clone(),
            role => self.actor.role.as_str(),
            csrf => self.csrf.clone(),
            menu => self.menu(),
            page => page,
            done => self.done.as_ref().map(|d| format!("done:{d}")),
            // Idempotency for the page's forms: a form sent twice does its work once.
            nonce => huiyuan_core::crypto::random_token(12),
            may => Permission::ALL.iter().filter(|p| self.actor.may(**p)).map(|p| p.as_str()).collect::<Vec<_>>(),
        }
    }
}

impl FromRequestParts<ConsoleState> for Operator {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &ConsoleState) -> Result<Self, Self::Rejection> {
        let lang = language(&parts.headers);
        let next = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default();
        let login = || PageError::SignIn { next: next.clone() };
        // Only session tokens: an API key pasted into a cookie does not open the console.
        let token = cookie(&parts.headers, SESSION_COOKIE)
            .filter(|t| t.starts_with(huiyuan_core::auth::SESSION_PREFIX))
            .ok_or_else(login)?
            .to_owned();
        let actor = state.core.authenticate(&token, None).await.map_err(|_| login())?;
        let operator = state.core.current_operator(&actor).await?;
        let brand = state.core.get_brand(&actor).await?;
        let done = parts
            .uri
            .query()
            .and_then(|q| Form::parse(q.as_bytes()))
            .and_then(|f| f.get("done").filter(|v| DONE.contains(v)).map(str::to_owned));
        Ok(Operator {
            done,
            name: operator.map(|o| o.display_name).unwrap_or_default(),
            csrf: csrf_token(&token),
            token,
            actor,
            lang,
            brand,
        })
    }
}

/// A form posted by a signed-in operator, its CSRF token checked.
pub struct Posted {
    pub op: Operator,
    pub form: Form,
}

impl FromRequest<ConsoleState> for Posted {
    type Rejection = PageError;

    async fn from_request(req: Request, state: &ConsoleState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let op = Operator::from_request_parts(&mut parts, state).await?;
        let bytes = axum::body::to_bytes(body, 1024 * 1024)
            .await
            .map_err(|_| PageError::BadForm)?;
        let form = Form::parse(&bytes).ok_or(PageError::BadForm)?;
        let sent = form.get("csrf").unwrap_or_default().as_bytes();
        if !bool::from(sent.ct_eq(op.csrf.as_bytes())) {
            return Err(PageError::StaleForm);
        }
        Ok(Posted { op, form })
    }
}

/// Why a page could not be shown; rendered in the reader's language by [`finish_page`].
#[derive(Debug)]
pub enum PageError {
    SignIn {
        next: String,
    },
    BadForm,
    StaleForm,
    /// A form posted from a page of another site (see `guard`).
    CrossSite,
    Core(CoreError),
}

impl From<CoreError> for PageError {
    fn from(e: CoreError) -> Self {
        PageError::Core(e)
    }
}

impl PageError {
    fn status_and_message(&self) -> (StatusCode, &'static str, String) {
        match self {
            PageError::SignIn { .. } => (StatusCode::UNAUTHORIZED, "Please sign in", String::new()),
            PageError::BadForm => (
                StatusCode::BAD_REQUEST,
                "The form could not be read",
                String::new(),
            ),
            PageError::CrossSite => (
                StatusCode::FORBIDDEN,
                "This form was sent from another site and was refused",
                String::new(),
            ),
            PageError::StaleForm => (
                StatusCode::FORBIDDEN,
                "This form has expired. Go back, reload the page and try again.",
                String::new(),
            ),
            PageError::Core(CoreError::Forbidden { permission, .. }) => (
                StatusCode::FORBIDDEN,
                "Your role may not open this page",
                permission.as_str().to_owned(),
            ),
            PageError::Core(CoreError::NotFound(what)) => {
                (StatusCode::NOT_FOUND, "Not found", (*what).to_owned())
            }
            PageError::Core(CoreError::Merged { into, .. }) => (
                StatusCode::NOT_FOUND,
                "This member was merged into another",
                into.to_string(),
            ),
            PageError::Core(CoreError::Unauthenticated(_)) => {
                (StatusCode::UNAUTHORIZED, "Please sign in", String::new())
            }
            PageError::Core(
                e @ (CoreError::Validation(_) | CoreError::Conflict { .. } | CoreError::CodeRejected(_)),
            ) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "The request was refused",
                e.to_string(),
            ),
            PageError::Core(e) => {
                tracing::error!(error = %e, "console page failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    String::new(),
                )
            }
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        if let PageError::SignIn { next } = &self {
            let target = form_urlencoded_component(next);
            return Redirect::to(&format!("/console/login?next={target}")).into_response();
        }
        let (status, title, detail) = self.status_and_message();
        // The language is not known here; [`finish_page`] renders the page.
        let mut res = status.into_response();
        res.extensions_mut().insert(ErrorPage { title, detail });
        res
    }
}

/// A page error waiting to be rendered by [`finish_page`].
#[derive(Clone)]
pub struct ErrorPage {
    title: &'static str,
    detail: String,
}

/// Renders error responses as a page in the reader's language, with the operator's menu when
/// the reader is signed in; and reports the server's time for the page in a `Server-Timing`
/// header (how the page budget is measured, see docs/benchmarks.md).
pub async fn finish_page(
    axum::extract::State(state): axum::extract::State<ConsoleState>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    let started = std::time::Instant::now();
    let (parts, body) = req.into_parts();
    let mut op_parts = parts.clone();
    let res = next.run(Request::from_parts(parts, body)).await;
    let Some(error) = res.extensions().get::<ErrorPage>().cloned() else {
        return with_server_timing(res, started);
    };
    let status = res.status();
    let ctx = match Operator::from_request_parts(&mut op_parts, &state).await {
        Ok(op) => {
            let base = op.context("error");
            context! { title => error.title, detail => error.detail, status => status.as_u16(), ..base }
        }
        Err(_) => context! {
            lang => language(&op_parts.headers).code(),
            title => error.title,
            detail => error.detail,
            status => status.as_u16(),
        },
    };
    with_server_timing(render::page(status, "error.html", ctx), started)
}

fn with_server_timing(mut res: Response, started: std::time::Instant) -> Response {
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    if let Ok(v) = axum::http::HeaderValue::from_str(&format!("app;dur={ms:.1}")) {
        res.headers_mut().insert("server-timing", v);
    }
    res
}

/// The notices a page may show after a redirect (`?done=…`); anything else is ignored.
const DONE: &[&str] = &[
    "adjusted",
    "issued",
    "merged",
    "erased",
    "refunded",
    "published",
    "created",
];

/// Percent-encodes a path for a query string.
pub fn form_urlencoded_component(s: &str) -> String {
    serde_urlencoded::to_string([("", s)])
        .map(|e| e.trim_start_matches('=').to_owned())
        .unwrap_or_default()
}
