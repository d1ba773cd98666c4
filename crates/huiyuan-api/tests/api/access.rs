//! Operators, roles and brands: sign-in and sign-out, what each role may do, and one brand never seeing another.

use super::*;

/// Roles limit what a key may do; a revoked key stops at once where it was revoked and within
/// the credential cache's lifetime on another node.
async fn clerk_cannot_manage_keys_or_read_audit(backend: Backend) {
    let h = Harness::start(backend).await;
    let clerk = h.key_for("clerk").await;
    let (s, b) = h
        .call(
            Some(&clerk),
            Method::POST,
            "/v1/api-keys",
            Some(json!({"name": "x", "role": "admin"})),
        )
        .await;
    assert_problem(s, &b, StatusCode::FORBIDDEN, "forbidden");
    let (s, b) = h.call(Some(&clerk), Method::GET, "/v1/audit-events", None).await;
    assert_problem(s, &b, StatusCode::FORBIDDEN, "forbidden");
    // …but a clerk can enrol at the till.
    let (s, _) = h
        .call(
            Some(&clerk),
            Method::POST,
            "/v1/members",
            Some(json!({"phone": "13800138000"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let auditor = h.key_for("auditor").await;
    let (s, b) = h
        .call(Some(&auditor), Method::GET, "/v1/audit-events", None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(b["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"] == "member.enrolled"));
    // A revoked key stops working at once.
    let keys = h.admin(Method::GET, "/v1/api-keys", None).await.1;
    let clerk_id = keys["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["role"] == "clerk")
        .unwrap()["id"]
        .clone();
    let (s, _) = h
        .admin(
            Method::POST,
            &format!("/v1/api-keys/{}/revoke", clerk_id.as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, b) = h.call(Some(&clerk), Method::GET, "/v1/members", None).await;
    assert_problem(s, &b, StatusCode::UNAUTHORIZED, "unauthenticated");

    // Another process that authenticated a key a moment ago trusts it for the credential
    // cache's few seconds after a revocation elsewhere, then no longer.
    let other = h.second_server().await;
    let marketer = h.key_for("marketer").await;
    let on_other = |key: String| {
        let (http, url) = (h.http.clone(), format!("{other}/v1/members"));
        async move { http.get(url).bearer_auth(key).send().await.unwrap().status() }
    };
    assert_eq!(on_other(marketer.clone()).await, StatusCode::OK);
    let keys = h.admin(Method::GET, "/v1/api-keys", None).await.1;
    let marketer_id = keys["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["role"] == "marketer" && k["revoked_at"].is_null())
        .unwrap()["id"]
        .clone();
    let (s, _) = h
        .admin(
            Method::POST,
            &format!("/v1/api-keys/{}/revoke", marketer_id.as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        on_other(marketer.clone()).await,
        StatusCode::OK,
        "cached on the other node"
    );
    h.clock.advance(time::Duration::seconds(6));
    assert_eq!(on_other(marketer).await, StatusCode::UNAUTHORIZED);
}

/// Brand A's admin names brand B's records on every route that takes an ID: always 404, never
/// B's data; lists and searches of A never contain B's records.
async fn another_brand_is_invisible_on_every_route(backend: Backend) {
    let h = Harness::start(backend).await;
    let b_key = h.other_brand().await;
    let call_b = |m: Method, p: &str, body: Option<Value>| {
        let h = &h;
        let b_key = b_key.clone();
        let p = p.to_owned();
        async move { h.call(Some(&b_key), m, &p, body).await }
    };
    let (_, b_member) = call_b(
        Method::POST,
        "/v1/members",
        Some(json!({"phone": "13900139000", "name": "乙品牌會員"})),
    )
    .await;
    let (_, b_store) = call_b(
        Method::POST,
        "/v1/stores",
        Some(json!({"code": "B1", "name": "B store"})),
    )
    .await;
    let (_, b_op) = call_b(
        Method::POST,
        "/v1/operators",
        Some(json!({"username": format!("b-clerk-{}", huiyuan_core::crypto::random_token(4).to_lowercase()), "display_name": "B", "role": "clerk", "password": "long enough pw"})),
    )
    .await;
    let (_, b_key_made) = call_b(
        Method::POST,
        "/v1/api-keys",
        Some(json!({"name": "b", "role": "clerk"})),
    )
    .await;
    let (_, b_code) = call_b(
        Method::POST,
        &format!("/v1/members/{}/code", b_member["id"].as_str().unwrap()),
        None,
    )
    .await;
    let (_, a_member) = h
        .admin(Method::POST, "/v1/members", Some(json!({"phone": "13700137000"})))
        .await;
    let (s, b_template) = call_b(
        Method::POST,
        "/v1/coupon-templates",
        Some(
            json!({"name": "B coupon", "offer": {"kind": "fixed_amount", "amount": 500},
                    "validity": {"kind": "days_after_issue", "days": 30}}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b_template}");
    let (s, b_coupon) = call_b(
        Method::POST,
        &format!("/v1/members/{}/coupons", b_member["id"].as_str().unwrap()),
        Some(json!({"template_id": b_template["id"], "reference": "B-1"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b_coupon}");

    let (s, b_pool) = call_b(
        Method::POST,
        "/v1/partner-pools",
        Some(json!({"name": "B pool", "partner": "P"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b_pool}");
    let (s, b_job) = call_b(
        Method::POST,
        &format!(
            "/v1/coupon-templates/{}/issue-bulk",
            b_template["id"].as_str().unwrap()
        ),
        Some(json!({"member_ids": [b_member["id"]], "reference": "B-BULK"})),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b_job}");

    let id_for = |path: &str| -> String {
        if path.starts_with("/v1/partner-pools") {
            b_pool["id"].as_str().unwrap().to_owned()
        } else if path.starts_with("/v1/bulk-jobs") {
            b_job["id"].as_str().unwrap().to_owned()
        } else if path.starts_with("/v1/coupon-templates") {
            b_template["id"].as_str().unwrap().to_owned()
        } else if path.starts_with("/v1/members") {
            b_member["id"].as_str().unwrap().to_owned()
        } else if path.starts_with("/v1/stores") {
            b_store["id"].as_str().unwrap().to_owned()
        } else if path.starts_with("/v1/operators") {
            b_op["id"].as_str().unwrap().to_owned()
        } else if path.starts_with("/v1/api-keys") {
            b_key_made["key"]["id"].as_str().unwrap().to_owned()
        } else {
            panic!("route {path} takes an ID but this test does not know which record of brand B to give it: add it")
        }
    };
    let bodies = |path: &str, method: &str| -> Option<Value> {
        match (path, method) {
            (p, "post") if p.ends_with("/merge") => Some(json!({"merge_from": a_member["id"]})),
            (p, "post") if p.ends_with("/points/adjustments") => {
                Some(json!({"points": 5, "reason": "test", "reference": "X-1"}))
            }
            (p, "post") if p.ends_with("/points/redemptions") => {
                Some(json!({"points": 5, "reference": "X-1"}))
            }
            (p, "post") if p.ends_with("/points/actions") => {
                Some(json!({"action": "check_in", "reference": "X-1"}))
            }
            (p, "post") if p.ends_with("/points/transfers") => {
                Some(json!({"to_member_id": a_member["id"], "points": 100, "reference": "X-1"}))
            }
            (p, "post") if p.ends_with("/coupons") => {
                Some(json!({"template_id": b_template["id"], "reference": "X-1"}))
            }
            (p, "post") if p.ends_with("/coupons/claim") => Some(json!({"claim_code": "NOSUCHCODE"})),
            (p, "post") if p.ends_with("/rewards") => {
                Some(json!({"template_id": b_template["id"], "reference": "X-1"}))
            }
            (p, "post") if p.ends_with("/wallet/top-ups") => {
                Some(json!({"reference": "X-1", "amount": 10_000}))
            }
            (p, "post") if p.ends_with("/refunds") => Some(json!({"refund_id": "R-1"})),
            (p, "post") if p.ends_with("/archive") => None,
            (p, "post") if p.ends_with("/issue-bulk") => {
                Some(json!({"member_ids": [a_member["id"]], "reference": "X-1"}))
            }
            (p, "post") if p.ends_with("/codes") => Some(json!({"codes": ["X"]})),
            (p, "post") if p.ends_with("/partner-codes") => {
                Some(json!({"pool_id": b_pool["id"], "reference": "X-1"}))
            }
            (p, "post") if p.ends_with("/plans") => Some(json!({"plan": "plus", "reference": "X-1"})),
            (p, "post") if p.ends_with("/perk-uses") => {
                Some(json!({"perk": "免費禮品包裝 Free gift wrap", "reference": "X-1"}))
            }
            (_, "patch") => Some(json!({})),
            _ => None,
        }
    };
    let (_, doc) = h.call(None, Method::GET, "/openapi.json", None).await;
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !path.contains("{id}") {
            continue;
        }
        for method in item.as_object().unwrap().keys() {
            let concrete = path.replace("{id}", &id_for(path)).replace("{reference}", "X-1");
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let (s, b) = h.admin(m, &concrete, bodies(path, method)).await;
            assert_problem(s, &b, StatusCode::NOT_FOUND, "not_found");
            checked += 1;
        }
    }
    assert!(checked >= 10, "checked {checked} routes");
    // Merging B's member into A's from A's side is also refused.
    let (s, b) = h
        .admin(
            Method::POST,
            &format!("/v1/members/{}/merge", a_member["id"].as_str().unwrap()),
            Some(json!({"merge_from": b_member["id"]})),
        )
        .await;
    assert_problem(s, &b, StatusCode::NOT_FOUND, "not_found");
    // B's coupon cannot be seen, redeemed or used at A's till.
    let code = b_coupon["code"].as_str().unwrap();
    let (s, b) = h.admin(Method::GET, &format!("/v1/coupons/{code}"), None).await;
    assert_problem(s, &b, StatusCode::NOT_FOUND, "not_found");
    let (s, b) = h
        .admin(
            Method::POST,
            &format!("/v1/coupons/{code}/redeem"),
            Some(
                json!({"order_id": "A-1", "member_id": a_member["id"], "channel": "web_shop",
                        "lines": [{"sku": "X", "quantity": 1, "amount": 10_000}]}),
            ),
        )
        .await;
    assert_problem(s, &b, StatusCode::NOT_FOUND, "not_found");
    // B's member code is not A's.
    for code in [&b_code["code"], &b_code["qr_payload"]] {
        let (s, b) = h
            .admin(Method::POST, "/v1/codes/verify", Some(json!({"code": code})))
            .await;
        assert!(
            s == StatusCode::NOT_FOUND || s == StatusCode::UNPROCESSABLE_ENTITY,
            "{s} {b}"
        );
    }
    // Lists, searches and the till never show B's records.
    let b_ids = [
        &b_member["id"],
        &b_store["id"],
        &b_op["id"],
        &b_key_made["key"]["id"],
    ];
    for path in [
        "/v1/members",
        "/v1/stores",
        "/v1/operators",
        "/v1/api-keys",
        "/v1/audit-events?limit=100",
    ] {
        let (s, body) = h.admin(Method::GET, path, None).await;
        assert_eq!(s, StatusCode::OK);
        for id in b_ids {
            assert!(
                !body.to_string().contains(id.as_str().unwrap()),
                "{path} leaks {id}"
            );
        }
    }
    let (_, found) = h
        .admin(
            Method::POST,
            "/v1/members/search",
            Some(json!({"filter": {"phone": "13900139000"}})),
        )
        .await;
    assert_eq!(found["data"], json!([]));
    let (s, till) = h
        .admin(
            Method::POST,
            "/v1/till/identify",
            Some(json!({"phone": "13900139000", "enrol_if_unknown": false})),
        )
        .await;
    assert_problem(s, &till, StatusCode::NOT_FOUND, "not_found");
    // And B still has its member, untouched.
    let (s, still) = call_b(
        Method::GET,
        &format!("/v1/members/{}", b_member["id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!((s, &still["status"]), (StatusCode::OK, &json!("active")));
}

async fn operators_sign_in_and_out(backend: Backend) {
    let h = Harness::start(backend).await;
    let (s, b) = h
        .call(
            None,
            Method::POST,
            "/v1/auth/login",
            Some(json!({"username": h.admin_username, "password": "wrong password"})),
        )
        .await;
    assert_problem(s, &b, StatusCode::UNAUTHORIZED, "unauthenticated");
    let (s, b) = h
        .call(
            None,
            Method::POST,
            "/v1/auth/login",
            Some(json!({"username": "nobody-here", "password": "wrong password"})),
        )
        .await;
    assert_problem(s, &b, StatusCode::UNAUTHORIZED, "unauthenticated");
    let (s, session) = h
        .call(
            None,
            Method::POST,
            "/v1/auth/login",
            Some(json!({"username": h.admin_username.to_uppercase(), "password": h.admin_password})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{session}");
    let token = session["token"].as_str().unwrap().to_owned();
    let (s, me) = h.call(Some(&token), Method::GET, "/v1/me", None).await;
    assert_eq!(
        (s, &me["role"], &me["kind"]),
        (StatusCode::OK, &json!("admin"), &json!("operator"))
    );
    // An admin creates a clerk; the clerk signs in and may not manage operators.
    let username = format!("clerk-{}", huiyuan_core::crypto::random_token(4).to_lowercase());
    let (s, clerk) = h
        .call(
            Some(&token),
            Method::POST,
            "/v1/operators",
            Some(json!({"username": username, "display_name": "店員", "role": "clerk", "password": "short"})),
        )
        .await;
    assert_problem(s, &clerk, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(field_of(&clerk), "password");
    let (s, clerk) = h
        .call(Some(&token), Method::POST, "/v1/operators", Some(json!({"username": username, "display_name": "店員", "role": "clerk", "password": "a long password"})))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{clerk}");
    let (_, clerk_session) = h
        .call(
            None,
            Method::POST,
            "/v1/auth/login",
            Some(json!({"username": username, "password": "a long password"})),
        )
        .await;
    let clerk_token = clerk_session["token"].as_str().unwrap().to_owned();
    let (s, b) = h
        .call(Some(&clerk_token), Method::GET, "/v1/operators", None)
        .await;
    assert_problem(s, &b, StatusCode::FORBIDDEN, "forbidden");
    // Disabling the clerk ends their session at once.
    let (s, _) = h
        .call(
            Some(&token),
            Method::PATCH,
            &format!("/v1/operators/{}", clerk["id"].as_str().unwrap()),
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, b) = h.call(Some(&clerk_token), Method::GET, "/v1/me", None).await;
    assert_problem(s, &b, StatusCode::UNAUTHORIZED, "unauthenticated");
    let (s, _) = h.call(Some(&token), Method::POST, "/v1/auth/logout", None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, b) = h.call(Some(&token), Method::GET, "/v1/me", None).await;
    assert_problem(s, &b, StatusCode::UNAUTHORIZED, "unauthenticated");
    // Sign-out reads the token exactly as sign-in checks it: a lower-case scheme works for both.
    let (_, session) = h
        .call(
            None,
            Method::POST,
            "/v1/auth/login",
            Some(json!({"username": h.admin_username, "password": h.admin_password})),
        )
        .await;
    let lower = format!("bearer {}", session["token"].as_str().unwrap());
    let (s, _, _) = h
        .call_full(None, Method::GET, "/v1/me", None, &[("authorization", &lower)])
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, _) = h
        .call_full(
            None,
            Method::POST,
            "/v1/auth/logout",
            None,
            &[("authorization", &lower)],
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _, b) = h
        .call_full(None, Method::GET, "/v1/me", None, &[("authorization", &lower)])
        .await;
    assert_problem(s, &b, StatusCode::UNAUTHORIZED, "unauthenticated");
}

both_backends!(
    clerk_cannot_manage_keys_or_read_audit,
    another_brand_is_invisible_on_every_route,
    operators_sign_in_and_out,
);
