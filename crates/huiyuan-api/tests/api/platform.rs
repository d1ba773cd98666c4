//! Requests as such: the OpenAPI document and the router agree, authentication, idempotency keys, rate limits, bad input, abandoned requests.

use super::*;

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

both_backends!(
    health_and_openapi,
    every_documented_route_exists,
    no_key_is_401_problem,
    idempotency_key_replays_and_refuses_other_bodies,
    bad_input_names_the_field_and_writes_nothing,
    rate_limit_answers_429,
    abandoned_request_still_completes,
);
