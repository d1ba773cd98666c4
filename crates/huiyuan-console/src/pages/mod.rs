//! The pages, one module per area of the console.

pub mod audit;
pub mod coupons;
pub mod dashboard;
pub mod members;
pub mod portal;
pub mod programme;
pub mod till;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use huiyuan_core::auth::LoginInput;
use minijinja::context;
use serde::Deserialize;

use crate::forms::Form;
use crate::i18n::Lang;
use crate::render;
use crate::session::{language, secret_cookie, Operator, PageError, LANG_COOKIE, SESSION_COOKIE};
use crate::ConsoleState;

/// The first page of the menu the operator may open (a clerk lands on the till).
pub async fn home(op: Operator) -> Response {
    match op.menu().first().and_then(|m| m.get_attr("href").ok()) {
        Some(href) => Redirect::to(href.as_str().unwrap_or("/console/members")).into_response(),
        None => Redirect::to("/console/members").into_response(),
    }
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

/// Only a path of the console is a place to go back to after signing in (no open redirect).
fn safe_next(next: Option<&str>) -> String {
    // A control character (CR/LF) would end the `Location` header: refused, like another site.
    next.filter(|n| {
        n.starts_with("/console/")
            && !n.starts_with("//")
            && !n.contains('\\')
            && !n.chars().any(char::is_control)
    })
    .unwrap_or("/console/")
    .to_owned()
}

/// The console's or the member pages' path to return to after switching language.
fn back_to(path: &str) -> String {
    if path.starts_with("/m/") && !path.contains('\\') {
        path.to_owned()
    } else {
        safe_next(Some(path))
    }
}

pub async fn login_page(headers: HeaderMap, Query(q): Query<NextQuery>) -> Response {
    render::page(
        StatusCode::OK,
        "login.html",
        context! { lang => language(&headers).code(), next => safe_next(q.next.as_deref()), values => context!{}, errors => context!{} },
    )
}

pub async fn login(
    State(state): State<ConsoleState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let lang = language(&headers);
    let form = Form::parse(&body).unwrap_or_default();
    let next = safe_next(form.get("next"));
    let input = LoginInput {
        username: form.get("username").unwrap_or_default().to_owned(),
        password: form.get("password").unwrap_or_default().to_owned(),
    };
    let address = client.ip().to_string();
    match state.core.login(input, None, Some(&address)).await {
        Ok(session) => {
            let ttl = (session.expires_at - state.core.now()).whole_seconds().max(0);
            (
                [(
                    header::SET_COOKIE,
                    secret_cookie(&headers, SESSION_COOKIE, &session.token, ttl),
                )],
                Redirect::to(&next),
            )
                .into_response()
        }
        Err(e) => {
            // The same words for an unknown user and a wrong password.
            let (status, message) = match e {
                huiyuan_core::CoreError::Unauthenticated(_) => {
                    (StatusCode::UNAUTHORIZED, "Wrong username or password")
                }
                huiyuan_core::CoreError::TooManyAttempts { .. } => (
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too many sign-in attempts; wait a few minutes and try again",
                ),
                _ => (StatusCode::UNAUTHORIZED, "Signing in failed; try again"),
            };
            render::page(
                status,
                "login.html",
                context! {
                    lang => lang.code(),
                    next => next,
                    values => context!{ username => form.get("username").unwrap_or_default() },
                    errors => context!{ _form => message },
                },
            )
        }
    }
}

pub async fn logout(State(state): State<ConsoleState>, posted: crate::session::Posted) -> Response {
    let op = posted.op;
    let _ = state.core.logout(&op.actor, &op.token).await;
    (
        [(
            header::SET_COOKIE,
            format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
        )],
        Redirect::to("/console/login"),
    )
        .into_response()
}

/// Switches the console's language and returns to the page the link was on.
pub async fn switch_language(Path(lang): Path<String>, headers: HeaderMap) -> Result<Response, PageError> {
    let lang = match lang.as_str() {
        "zh" => Lang::Zh,
        "en" => Lang::En,
        _ => return Err(PageError::Core(huiyuan_core::CoreError::NotFound("language"))),
    };
    let back = headers
        .get(header::REFERER)
        .and_then(|r| r.to_str().ok())
        .and_then(|r| {
            r.find("/console/")
                .or_else(|| r.find("/m/"))
                .map(|i| r[i..].to_owned())
        })
        .unwrap_or_else(|| "/console/".to_owned());
    Ok((
        [(
            header::SET_COOKIE,
            format!(
                "{LANG_COOKIE}={}; Path=/; SameSite=Lax; Max-Age=31536000",
                lang.code()
            ),
        )],
        Redirect::to(&back_to(&back)),
    )
        .into_response())
}
