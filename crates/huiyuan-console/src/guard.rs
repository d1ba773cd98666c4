//! What every console and member page answer carries, and which posts the pages take.
//!
//! - A form posted from another site is refused: a browser names the page a `POST` comes from
//!   in `Origin` (or, failing that, `Referer`), and it must be this server. The sign-in form has
//!   no CSRF token (there is no session yet), so without this a page elsewhere could sign a
//!   visitor in as its own operator. A request naming neither (not a browser) is let through;
//!   signed-in forms still need their CSRF token.
//! - Headers: a Content-Security-Policy that runs only this server's scripts, refuses framing
//!   (`frame-ancestors 'none'`, and `X-Frame-Options` for old browsers), sends no referrer off
//!   the site (member sign-in links carry a token in the URL), and `Cache-Control: no-store` on
//!   pages, which hold personal data (a revealed phone above all); the compiled-in assets keep
//!   their own caching.

use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::session::PageError;

/// Scripts, styles and images from this server only (ECharts styles its tooltips inline).
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self' 'unsafe-inline'; img-src 'self' data:; object-src 'none'; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Refuses a post from another site (rendered as an error page by `session::finish_page`,
/// which this runs inside).
pub async fn refuse_cross_site_posts(req: Request, next: Next) -> Response {
    if req.method() == Method::POST && !same_origin(req.headers()) {
        return PageError::CrossSite.into_response();
    }
    next.run(req).await
}

/// Sets the security headers on every answer, error pages included (outermost layer).
pub async fn security_headers(req: Request, next: Next) -> Response {
    let is_asset = req.uri().path().starts_with("/console/assets/");
    let mut res = next.run(req).await;
    let headers = res.headers_mut();
    let set = |headers: &mut HeaderMap, name: header::HeaderName, value: &'static str| {
        headers.entry(name).or_insert(HeaderValue::from_static(value));
    };
    set(headers, header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY);
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    set(headers, header::REFERRER_POLICY, "same-origin");
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    if !is_asset {
        set(headers, header::CACHE_CONTROL, "no-store");
    }
    res
}

/// Whether a post comes from a page of this server, as far as the browser says: the host of
/// `Origin` (else of `Referer`) is the `Host` the request was sent to. Neither header: not a
/// browser's cross-site form, let through.
fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let source = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|v| v.to_str().ok());
    match source {
        None => true,
        Some(source) => {
            let authority = source
                .split_once("://")
                .map(|(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or(""));
            authority.is_some() && authority == host
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.insert(name.clone(), HeaderValue::from_static(value));
        }
        h
    }

    #[test]
    fn posts_from_this_server_pass_and_from_elsewhere_do_not() {
        let ours = headers(&[
            (header::HOST, "shop.example:8080"),
            (header::ORIGIN, "https://shop.example:8080"),
        ]);
        assert!(same_origin(&ours));
        let referred = headers(&[
            (header::HOST, "shop.example"),
            (header::REFERER, "https://shop.example/console/login?next=/x"),
        ]);
        assert!(same_origin(&referred));
        let elsewhere = headers(&[
            (header::HOST, "shop.example"),
            (header::ORIGIN, "https://evil.example"),
        ]);
        assert!(!same_origin(&elsewhere));
        let lookalike = headers(&[
            (header::HOST, "shop.example"),
            (header::ORIGIN, "https://shop.example.evil.example"),
        ]);
        assert!(!same_origin(&lookalike));
        let opaque = headers(&[(header::HOST, "shop.example"), (header::ORIGIN, "null")]);
        assert!(!same_origin(&opaque));
        assert!(same_origin(&headers(&[(header::HOST, "shop.example")])));
    }
}
