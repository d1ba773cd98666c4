//! Extractors that turn every kind of bad input into a problem naming the field.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use huiyuan_core::Actor;
use serde::de::DeserializeOwned;

use crate::problem::ApiError;
use huiyuan_core::ErrorCode;

/// A JSON body. Syntax errors say where (line and column); type errors, missing and unknown
/// fields name the field; an oversized body is a 413.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| {
                let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
                mime == "application/json" || mime.ends_with("+json")
            });
        if !is_json {
            return Err(ApiError::field(
                ErrorCode::UnsupportedMediaType,
                "Content-Type",
                "must be application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(ErrorCode::PayloadTooLarge, "the request body is too large")
            } else {
                ApiError::new(ErrorCode::UnreadableBody, rejection.body_text())
            }
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let syntax = |e: &serde_json::Error| {
        ApiError::field(
            ErrorCode::MalformedJson,
            "body",
            format!("is not valid JSON (line {}, column {})", e.line(), e.column()),
        )
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if inner.classify() == serde_json::error::Category::Data {
            let message = strip_position(&inner.to_string());
            let field = field_of(&path, &message);
            ApiError::field(ErrorCode::InvalidRequestBody, &field, message)
        } else {
            syntax(&inner)
        }
    })?;
    de.end().map_err(|e| syntax(&e))?;
    Ok(value)
}

/// serde appends " at line L column C"; the field path already says where.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// The path of the offending field; for unknown and missing fields serde names it in the message.
fn field_of(path: &str, message: &str) -> String {
    let named = ["unknown field `", "missing field `"].iter().find_map(|p| {
        message
            .split_once(p)
            .and_then(|(_, rest)| rest.split_once('`'))
            .map(|(f, _)| f.to_owned())
    });
    match (path, named) {
        (".", Some(f)) => f,
        (p, Some(f)) if message.starts_with("missing") => format!("{p}.{f}"),
        (".", None) => "body".to_owned(),
        (p, _) => p.to_owned(),
    }
}

/// Query parameters, with the same error shape as bodies.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de).map(ApiQuery).map_err(|err| {
            let path = err.path().to_string();
            let message = err.into_inner().to_string();
            let field = field_of(&path, &message);
            ApiError::field(ErrorCode::InvalidQuery, &field, message)
        })
    }
}

/// The authenticated caller, put in place by the auth middleware.
pub struct Auth(pub Actor);

impl<S: Send + Sync> FromRequestParts<S> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Actor>()
            .cloned()
            .map(Auth)
            .ok_or_else(|| ApiError::new(ErrorCode::Unauthenticated, "no credentials were given"))
    }
}

/// The token of an `Authorization: Bearer <token>` header. The scheme name is case-insensitive
/// (RFC 7235), so `bearer` works too. The one place the header is read: authentication and
/// sign-out must agree on which token a request carries.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The header that carries a request's ID, set (or passed through) by the request-ID layer.
pub const REQUEST_ID: &str = "x-request-id";

/// The request's ID, as set (or passed through) by the request-ID layer.
pub fn request_id(headers: &HeaderMap) -> Option<&str> {
    headers.get(REQUEST_ID)?.to_str().ok()
}

/// Parses a path ID; a malformed ID is reported as not found, exactly like an ID of another brand.
pub fn path_id<T: std::str::FromStr>(raw: &str, what: &'static str) -> Result<T, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::new(ErrorCode::NotFound, format!("{what} not found")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        inner: Option<Inner>,
    }
    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        count: u8,
    }

    fn err(json: &str) -> (u16, String, String) {
        let e = parse_json::<Body>(json.as_bytes()).unwrap_err();
        (
            e.problem.status,
            e.problem.code,
            e.problem.errors[0].field.clone(),
        )
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, v.parse().unwrap());
            bearer_token(&h).map(str::to_owned)
        };
        assert_eq!(with("Bearer hy_x_y").as_deref(), Some("hy_x_y"));
        assert_eq!(with("bearer  hys_tok ").as_deref(), Some("hys_tok"));
        assert_eq!(with("BEARER t").as_deref(), Some("t"));
        assert_eq!(with("Basic dXNlcjpwdw=="), None);
        assert_eq!(with("Bearer "), None);
        assert_eq!(bearer_token(&HeaderMap::new()), None);
    }

    #[test]
    fn names_the_field() {
        assert_eq!(
            err(r#"{"name":"a","nmae":1}"#),
            (422, "invalid_request_body".into(), "nmae".into())
        );
        assert_eq!(err(r#"{}"#), (422, "invalid_request_body".into(), "name".into()));
        assert_eq!(
            err(r#"{"name":5}"#),
            (422, "invalid_request_body".into(), "name".into())
        );
        assert_eq!(
            err(r#"{"name":"a","inner":{"count":-1}}"#),
            (422, "invalid_request_body".into(), "inner.count".into())
        );
        assert_eq!(
            err(r#"{"name":"a","inner":{}}"#),
            (422, "invalid_request_body".into(), "inner.count".into())
        );
        assert_eq!(err(r#"{"name": "#), (400, "malformed_json".into(), "body".into()));
        assert_eq!(
            err(r#"{"name":"a"} trailing"#),
            (400, "malformed_json".into(), "body".into())
        );
    }
}
