//! The member's own pages: the member card with the rotating member code as a QR image, points,
//! tier progress, coupons and history. A member signs in with a one-time link an operator made
//! (member 360 → "sign-in link"); the demo prints one at start.

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use huiyuan_core::portal::{MemberSession, LINK_EXPIRED, LINK_USED, MEMBER_SESSION_TTL};
use huiyuan_core::Page;
use minijinja::context;
use qrcode::render::svg;
use qrcode::QrCode;
use serde::Deserialize;

use crate::render;
use crate::session::{cookie, language, secret_cookie, MEMBER_COOKIE};
use crate::ConsoleState;

#[derive(Deserialize)]
pub struct SignInQuery {
    token: Option<String>,
}

fn signed_out(headers: &HeaderMap, status: StatusCode, reason: &str) -> Response {
    render::page(
        status,
        "portal_signed_out.html",
        context! { lang => language(headers).code(), reason => reason },
    )
}

pub async fn sign_in(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
    Query(q): Query<SignInQuery>,
) -> Response {
    let Some(token) = q.token.filter(|t| !t.is_empty()) else {
        return signed_out(
            &headers,
            StatusCode::UNAUTHORIZED,
            "This sign-in link is not valid",
        );
    };
    match state.core.redeem_member_link(&token).await {
        Ok(session) => (
            [(
                header::SET_COOKIE,
                secret_cookie(
                    &headers,
                    MEMBER_COOKIE,
                    &session,
                    MEMBER_SESSION_TTL.whole_seconds(),
                ),
            )],
            Redirect::to("/m/"),
        )
            .into_response(),
        Err(huiyuan_core::CoreError::Unauthenticated(why)) => {
            let reason = match why {
                LINK_USED => "This sign-in link was already used",
                LINK_EXPIRED => "This sign-in link has expired",
                _ => "This sign-in link is not valid",
            };
            signed_out(&headers, StatusCode::UNAUTHORIZED, reason)
        }
        Err(e) => {
            tracing::error!(error = %e, "member sign-in failed");
            signed_out(
                &headers,
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
            )
        }
    }
}

async fn session(state: &ConsoleState, headers: &HeaderMap) -> Option<MemberSession> {
    let token = cookie(headers, MEMBER_COOKIE)?;
    state.core.member_session(token).await.ok()
}

pub async fn card(State(state): State<ConsoleState>, headers: HeaderMap) -> Response {
    let Some(s) = session(&state, &headers).await else {
        return signed_out(
            &headers,
            StatusCode::UNAUTHORIZED,
            "Sign in with the link you were given",
        );
    };
    match card_context(&state, &s).await {
        Ok(data) => {
            let base = context! { lang => language(&headers).code(), tz => data.1, currency => data.2 };
            render::page(StatusCode::OK, "portal.html", context! { ..base, ..data.0 })
        }
        Err(e) => {
            tracing::error!(error = %e, "member page failed");
            signed_out(
                &headers,
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
            )
        }
    }
}

async fn card_context(
    state: &ConsoleState,
    s: &MemberSession,
) -> Result<(minijinja::Value, String, String), huiyuan_core::CoreError> {
    let core = &state.core;
    let brand = core.get_brand(&s.actor).await?;
    let balance = core.points_balance(&s.actor, &s.member).await?;
    let coupons = core
        .member_coupons(&s.actor, &s.member, Some("issued"), &Page::first(20))
        .await?;
    let history = core
        .points_statement(&s.actor, &s.member, &Page::first(20))
        .await?;
    Ok((
        context! { brand_name => brand.name.clone(), member => &s.profile, balance => balance, coupons => coupons, history => history },
        brand.timezone,
        brand.currency,
    ))
}

/// A fresh member code as a QR image with the typed code under it. Each request issues a new
/// code (valid one minute); the page asks again before it expires.
pub async fn code(State(state): State<ConsoleState>, headers: HeaderMap) -> Response {
    let Some(s) = session(&state, &headers).await else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let code = match state.core.issue_code(&s.actor, &s.member).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "member code failed");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let Ok(qr) = QrCode::new(code.qr_payload.as_bytes()) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let image = qr
        .render::<svg::Color>()
        .min_dimensions(240, 240)
        .quiet_zone(true)
        .build();
    let inner = image
        .trim_start_matches(|c| c != '<')
        .split_once("?>")
        .map_or(image.as_str(), |(_, rest)| rest);
    let grouped: String = code
        .code
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let body = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="280" height="330" viewBox="0 0 280 330"><rect width="280" height="330" fill="#fff"/><g transform="translate(10,10)">{inner}</g><text x="140" y="315" font-family="monospace" font-size="15" text-anchor="middle" fill="#111">{grouped}</text></svg>"##
    );
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// Ends the member's session everywhere (a copied cookie stops working too), then clears the
/// cookie.
pub async fn sign_out(State(state): State<ConsoleState>, headers: HeaderMap) -> Response {
    if let Some(token) = cookie(&headers, MEMBER_COOKIE) {
        // A session already expired or ended has nothing left to end.
        let _ = state.core.end_member_session(token).await;
    }
    (
        [(
            header::SET_COOKIE,
            format!("{MEMBER_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
        )],
        Redirect::to("/m/"),
    )
        .into_response()
}
