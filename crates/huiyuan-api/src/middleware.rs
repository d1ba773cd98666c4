//! Cross-cutting request handling: authentication, rate limits, idempotency keys and metrics.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::{Quota, RateLimiter};
use huiyuan_core::idempotency::IdempotencyClaim;
use huiyuan_core::Actor;
use sha2::{Digest, Sha256};

use crate::extract::{bearer_token, request_id};
use crate::problem::{ApiError, ShownOnce, Transient};
use crate::AppState;
use huiyuan_core::ErrorCode;

type KeyedLimiter = RateLimiter<
    String,
    governor::state::keyed::DefaultKeyedStateStore<String>,
    DefaultClock,
    StateInformationMiddleware,
>;

/// Per-caller request budgets, one per API key or operator. (Sign-in attempts are limited by
/// `Core::login`, which the console's form uses too.)
pub struct RateLimits {
    per_caller: KeyedLimiter,
    per_caller_limit: u32,
    clock: DefaultClock,
}

impl RateLimits {
    pub fn new(per_minute: u32) -> Self {
        let quota = Quota::per_minute(NonZeroU32::new(per_minute.max(1)).unwrap_or(NonZeroU32::MIN));
        Self {
            per_caller: RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>(),
            per_caller_limit: per_minute.max(1),
            clock: DefaultClock::default(),
        }
    }

    fn check(&self, limiter: &KeyedLimiter, limit: u32, key: String) -> Result<HeaderMap, ApiError> {
        match limiter.check_key(&key) {
            Ok(snapshot) => {
                let mut h = HeaderMap::new();
                h.insert("ratelimit-limit", HeaderValue::from(limit));
                h.insert(
                    "ratelimit-remaining",
                    HeaderValue::from(snapshot.remaining_burst_capacity()),
                );
                Ok(h)
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                let mut err = ApiError::new(
                    ErrorCode::RateLimited,
                    format!("too many requests; the limit is {limit} a minute"),
                );
                err.retry_after = Some(wait.as_secs() + 1);
                Err(err)
            }
        }
    }

    /// Drops the state of callers that have been idle long enough to have a full budget again.
    pub fn shrink(&self) {
        self.per_caller.retain_recent();
    }
}

/// Authenticates the bearer token and applies the caller's rate limit.
pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let request_id = request_id(req.headers()).map(str::to_owned);
    let token = bearer_token(req.headers()).map(str::to_owned);
    let Some(token) = token else {
        return ApiError::new(
            ErrorCode::Unauthenticated,
            "send an API key or session token as `Authorization: Bearer <token>`",
        )
        .into_response();
    };
    let actor = match state.core.authenticate(&token, request_id).await {
        Ok(a) => a,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let limits = &state.limits;
    let headers = match limits.check(&limits.per_caller, limits.per_caller_limit, actor.id.clone()) {
        Ok(h) => h,
        Err(e) => return e.into_response(),
    };
    req.extensions_mut().insert(actor);
    let mut res = next.run(req).await;
    res.headers_mut().extend(headers);
    res
}

/// `Idempotency-Key`: the first request runs; a retry with the same key and body gets the same
/// response without running again; the same key with another body is refused.
pub async fn idempotency(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if !matches!(*req.method(), Method::POST | Method::PATCH | Method::DELETE) {
        return next.run(req).await;
    }
    let Some(key) = req
        .headers()
        .get("idempotency-key")
        .map(|v| v.to_str().map(str::to_owned))
    else {
        return next.run(req).await;
    };
    let Ok(key) = key else {
        return ApiError::field(
            ErrorCode::InvalidIdempotencyKey,
            "Idempotency-Key",
            "must be printable ASCII",
        )
        .into_response();
    };
    let Some(actor) = req.extensions().get::<Actor>().cloned() else {
        return next.run(req).await;
    };
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, state.config.body_limit_bytes).await {
        Ok(b) => b,
        Err(_) => {
            return ApiError::new(ErrorCode::PayloadTooLarge, "the request body is too large").into_response()
        }
    };
    let mut hasher = Sha256::new();
    hasher.update(parts.method.as_str().as_bytes());
    hasher.update([0]);
    hasher.update(parts.uri.path().as_bytes());
    hasher.update([0]);
    hasher.update(parts.uri.query().unwrap_or("").as_bytes());
    hasher.update([0]);
    hasher.update(&bytes);
    let request_hash = hasher.finalize().to_vec();

    match state.core.claim_idempotency(&actor, &key, request_hash).await {
        Err(e) => ApiError::from(e).into_response(),
        Ok(IdempotencyClaim::Replay { status, body }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            let content_type = if status.is_success() {
                "application/json"
            } else {
                "application/problem+json"
            };
            let mut res = (status, body).into_response();
            res.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            res.headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            res
        }
        Ok(IdempotencyClaim::InProgress) => ApiError::field(
            ErrorCode::IdempotencyKeyInUse,
            "Idempotency-Key",
            "a request with this key is still being processed; retry shortly",
        )
        .into_response(),
        Ok(IdempotencyClaim::Mismatch) => ApiError::field(
            ErrorCode::IdempotencyKeyReused,
            "Idempotency-Key",
            "was already used for a different request",
        )
        .into_response(),
        Ok(IdempotencyClaim::Proceed) => {
            let res = next.run(Request::from_parts(parts, Body::from(bytes))).await;
            let (res_parts, res_body) = res.into_parts();
            let Ok(res_bytes) = axum::body::to_bytes(res_body, usize::MAX).await else {
                let _ = state.core.release_idempotency(&actor, &key).await;
                return ApiError::new(ErrorCode::Internal, "the response could not be read").into_response();
            };
            // Server-side failures and lost races are not final: let a retry run again.
            // (Any 5xx counts, marked or not: it may not have come from an `ApiError`.)
            let retryable =
                res_parts.status.is_server_error() || res_parts.extensions.get::<Transient>().is_some();
            let stored = if retryable {
                state.core.release_idempotency(&actor, &key).await
            } else if res_parts.extensions.get::<ShownOnce>().is_some() {
                // A secret is never stored: the key's answer from now on says it was shown.
                let (status, body) = shown_once_answer().await;
                state.core.complete_idempotency(&actor, &key, status, &body).await
            } else {
                state
                    .core
                    .complete_idempotency(&actor, &key, res_parts.status.as_u16(), &res_bytes)
                    .await
            };
            if let Err(e) = stored {
                tracing::error!(error = %e, "could not record the idempotent response");
            }
            Response::from_parts(res_parts, Body::from(res_bytes))
        }
    }
}

/// What a replay of a response that carried a secret answers: its status and problem body.
async fn shown_once_answer() -> (u16, Vec<u8>) {
    let problem = ApiError::new(
        ErrorCode::SecretShownOnce,
        "the first request with this Idempotency-Key succeeded; its response held a secret, \
         which was shown then and is not kept (list what it made, or make another)",
    )
    .into_response();
    let status = problem.status().as_u16();
    let body = axum::body::to_bytes(problem.into_body(), usize::MAX)
        .await
        .map(|b| b.to_vec())
        .unwrap_or_default();
    (status, body)
}

/// Runs the rest of the request on its own task, so a client that disconnects cannot cancel it
/// half-way: a transaction is always committed or rolled back by the code that opened it, and an
/// idempotency key claimed for a request is always completed or released.
pub async fn run_to_completion(req: Request, next: Next) -> Response {
    use tracing::Instrument;
    match tokio::spawn(next.run(req).in_current_span()).await {
        Ok(res) => res,
        Err(e) => {
            tracing::error!(error = %e, "request task failed");
            ApiError::new(ErrorCode::Internal, "an internal error occurred").into_response()
        }
    }
}

/// Counts requests and records their latency per route (the route template, never the URL,
/// so no ID or personal data becomes a label).
pub async fn record_metrics(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let start = Instant::now();
    let res = next.run(req).await;
    let status = res.status().as_u16().to_string();
    let labels = [("method", method), ("route", route), ("status", status)];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels).record(start.elapsed().as_secs_f64());
    res
}

pub type SharedLimits = Arc<RateLimits>;
