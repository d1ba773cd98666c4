//! Members: enrolment and identities, member codes, merges, erasure, masking, the till's identify, search.

use super::*;

async fn same_phone_formatted_differently_is_one_member(backend: Backend) {
    let h = Harness::start(backend).await;
    let (s1, first) = h
        .admin(
            Method::POST,
            "/v1/members",
            Some(json!({"phone": "138 0013 8000", "name": "王小明"})),
        )
        .await;
    let (s2, second) = h
        .admin(
            Method::POST,
            "/v1/members",
            Some(json!({"phone": "+86-138-0013-8000"})),
        )
        .await;
    let (s3, third) = h
        .admin(
            Method::POST,
            "/v1/members",
            Some(json!({"email": "x@y.cn", "phone": "008613800138000"})),
        )
        .await;
    assert_eq!(
        (s1, s2, s3),
        (StatusCode::CREATED, StatusCode::OK, StatusCode::OK)
    );
    assert_eq!(first["id"], second["id"]);
    assert_eq!(first["id"], third["id"]);
    assert_eq!(
        third["email"],
        Value::Null,
        "finding an existing member changes nothing"
    );
    let (s, _) = h
        .admin(
            Method::POST,
            "/v1/members",
            Some(json!({"email": "Li.Na@Example.COM"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, again) = h
        .admin(
            Method::POST,
            "/v1/members",
            Some(json!({"email": "li.na@example.com"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "emails are case-folded: {again}");
    // Identities of two different members in one enrolment: a conflict naming both fields.
    let (s, b) = h
        .admin(
            Method::POST,
            "/v1/members",
            Some(json!({"phone": "13800138000", "email": "li.na@example.com"})),
        )
        .await;
    assert_problem(s, &b, StatusCode::CONFLICT, "identity_conflict");
    assert_eq!(b["errors"].as_array().unwrap().len(), 2);
    assert_eq!(h.member_count().await, 2);
}

async fn concurrent_enrolments_make_one_member(backend: Backend) {
    let h = Arc::new(Harness::start(backend).await);
    let forms = [
        "13600136000",
        "136 0013 6000",
        "+8613600136000",
        "0086 136 0013 6000",
    ];
    let mut tasks = Vec::new();
    for i in 0..16 {
        let h = h.clone();
        let phone = forms[i % forms.len()];
        tasks.push(tokio::spawn(async move {
            h.admin(
                Method::POST,
                "/v1/members",
                Some(json!({"phone": phone, "channel": "pos"})),
            )
            .await
        }));
    }
    let mut ids = std::collections::HashSet::new();
    let mut created = 0;
    for t in tasks {
        let (s, b) = t.await.unwrap();
        assert!(s == StatusCode::CREATED || s == StatusCode::OK, "{s} {b}");
        created += usize::from(s == StatusCode::CREATED);
        ids.insert(b["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 1, "every caller got the same member");
    assert_eq!(created, 1, "exactly one enrolment created it");
    assert_eq!(h.member_count().await, 1);
}

async fn member_code_is_accepted_once(backend: Backend) {
    let h = Harness::start(backend).await;
    let clerk = h.key_for("clerk").await;
    let m = h.enrol(json!({"phone": "13800138000", "name": "王小明"})).await;
    let path = format!("/v1/members/{}/code", m["id"].as_str().unwrap());
    let (s, code) = h.admin(Method::POST, &path, None).await;
    assert_eq!(s, StatusCode::CREATED, "{code}");
    let digits = code["code"].as_str().unwrap().to_owned();
    assert_eq!(digits.len(), 18);
    let (s, v) = h
        .call(
            Some(&clerk),
            Method::POST,
            "/v1/codes/verify",
            Some(json!({"code": digits})),
        )
        .await;
    assert_eq!((s, &v["member"]["id"]), (StatusCode::OK, &m["id"]), "{v}");
    let (s, v) = h
        .call(
            Some(&clerk),
            Method::POST,
            "/v1/codes/verify",
            Some(json!({"code": digits})),
        )
        .await;
    assert_problem(s, &v, StatusCode::CONFLICT, "code_already_used");
    assert!(v["detail"].as_str().unwrap().contains("already used at"), "{v}");

    // The QR form, with one character flipped anywhere in the signed part, is refused.
    let (_, code) = h.admin(Method::POST, &path, None).await;
    let qr = code["qr_payload"].as_str().unwrap().to_owned();
    for pos in [4, qr.len() / 2, qr.len() - 3] {
        let mut bytes = qr.clone().into_bytes();
        bytes[pos] = if bytes[pos] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(bytes).unwrap();
        let (s, v) = h
            .call(
                Some(&clerk),
                Method::POST,
                "/v1/codes/verify",
                Some(json!({"code": forged})),
            )
            .await;
        assert!(
            s == StatusCode::UNPROCESSABLE_ENTITY,
            "flipping position {pos}: {s} {v}"
        );
    }
    let (s, _) = h
        .call(
            Some(&clerk),
            Method::POST,
            "/v1/codes/verify",
            Some(json!({"code": qr})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "the genuine payload still works once");
    let (s, v) = h
        .call(
            Some(&clerk),
            Method::POST,
            "/v1/codes/verify",
            Some(json!({"code": qr})),
        )
        .await;
    assert_problem(s, &v, StatusCode::CONFLICT, "code_already_used");

    // One digit changed: the check digit catches it.
    let (_, code) = h.admin(Method::POST, &path, None).await;
    let digits = code["code"].as_str().unwrap();
    let mut flipped = digits.as_bytes().to_vec();
    flipped[5] = b'0' + (flipped[5] - b'0' + 1) % 10;
    let (s, v) = h
        .call(
            Some(&clerk),
            Method::POST,
            "/v1/codes/verify",
            Some(json!({"code": String::from_utf8(flipped).unwrap()})),
        )
        .await;
    assert_problem(s, &v, StatusCode::UNPROCESSABLE_ENTITY, "code_malformed");

    // Expired after 60 seconds.
    h.clock.advance(time::Duration::seconds(61));
    let (s, v) = h
        .call(
            Some(&clerk),
            Method::POST,
            "/v1/codes/verify",
            Some(json!({"code": digits})),
        )
        .await;
    assert_problem(s, &v, StatusCode::GONE, "code_expired");
    // Concurrent verification of one fresh code: exactly one till wins.
    let (_, code) = h.admin(Method::POST, &path, None).await;
    let h = Arc::new(h);
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let (h, clerk, c) = (h.clone(), clerk.clone(), code["code"].clone());
        tasks.push(tokio::spawn(async move {
            h.call(
                Some(&clerk),
                Method::POST,
                "/v1/codes/verify",
                Some(json!({"code": c})),
            )
            .await
            .0
        }));
    }
    let mut ok = 0;
    for t in tasks {
        let s = t.await.unwrap();
        assert!(s == StatusCode::OK || s == StatusCode::CONFLICT, "{s}");
        ok += usize::from(s == StatusCode::OK);
    }
    assert_eq!(ok, 1);
}

async fn merged_member_redirects(backend: Backend) {
    let h = Harness::start(backend).await;
    let a = h
        .enrol(json!({"phone": "13800138000", "name": "王小明", "tags": ["vip"]}))
        .await;
    let b = h
        .enrol(json!({"email": "wang@example.com", "birthday": "1990-05-04", "tags": ["母嬰"], "external_ids": [{"channel": "wechat", "id": "oABC"}]}))
        .await;
    let (a_id, b_id) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    let (s, merged) = h
        .admin(
            Method::POST,
            &format!("/v1/members/{a_id}/merge"),
            Some(json!({"merge_from": b_id})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{merged}");
    assert_eq!(merged["tags"], json!(["vip", "母嬰"]));
    assert_eq!(merged["birth_month"], 5);
    assert_eq!(merged["identities"].as_array().unwrap().len(), 3);
    let (s, headers, body) = h
        .call_full(
            Some(&h.admin_key),
            Method::GET,
            &format!("/v1/members/{b_id}"),
            None,
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::PERMANENT_REDIRECT, "{body}");
    assert_eq!(headers["location"], format!("/v1/members/{a_id}"));
    assert_eq!(body["merged_into"], a["id"]);
    let (_, found) = h
        .admin(
            Method::POST,
            "/v1/members/search",
            Some(json!({"filter": {"email": "WANG@example.com"}})),
        )
        .await;
    assert_eq!(found["data"][0]["id"], a["id"]);
    let (_, found) = h
        .admin(
            Method::POST,
            "/v1/members/search",
            Some(json!({"filter": {"external_channel": "wechat", "external_id": "oABC"}})),
        )
        .await;
    assert_eq!(found["data"][0]["id"], a["id"]);
    // Writes to the merged-away ID say where to go instead.
    let (s, body) = h
        .admin(
            Method::PATCH,
            &format!("/v1/members/{b_id}"),
            Some(json!({"city": "上海"})),
        )
        .await;
    assert_problem(s, &body, StatusCode::CONFLICT, "member_merged");
    let (s, body) = h
        .admin(
            Method::POST,
            &format!("/v1/members/{a_id}/merge"),
            Some(json!({"merge_from": a_id})),
        )
        .await;
    assert_problem(s, &body, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    let (_, export) = h
        .admin(Method::GET, &format!("/v1/members/{a_id}/export"), None)
        .await;
    assert_eq!(export["merged_from"], json!([b_id]));
    assert_eq!(
        export["member"]["email"], "wang@example.com",
        "the export is in clear"
    );
}

async fn erase_removes_personal_data(backend: Backend) {
    let h = Harness::start(backend).await;
    let m = h.enrol(json!({"phone": "13800138000", "name": "王小明", "email": "w@x.cn", "tags": ["vip"], "city": "上海"})).await;
    let id = m["id"].as_str().unwrap();
    let marketer = h.key_for("marketer").await;
    let (s, b) = h
        .call(
            Some(&marketer),
            Method::POST,
            &format!("/v1/members/{id}/erase"),
            None,
        )
        .await;
    assert_problem(s, &b, StatusCode::FORBIDDEN, "forbidden");
    let (s, erased) = h
        .admin(Method::POST, &format!("/v1/members/{id}/erase"), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    for field in ["name", "phone", "email", "birthday", "city"] {
        assert_eq!(erased[field], Value::Null, "{field}");
    }
    assert_eq!(
        (&erased["status"], &erased["identities"], &erased["tags"]),
        (&json!("erased"), &json!([]), &json!([]))
    );
    let (_, found) = h
        .admin(
            Method::POST,
            "/v1/members/search",
            Some(json!({"filter": {"phone": "13800138000"}})),
        )
        .await;
    assert_eq!(found["data"], json!([]));
    // The phone is free again: the person can enrol afresh as a new member.
    let (s, again) = h
        .admin(Method::POST, "/v1/members", Some(json!({"phone": "13800138000"})))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    assert_ne!(again["id"], m["id"]);
    let (_, audit) = h
        .admin(Method::GET, &format!("/v1/audit-events?target_id={id}"), None)
        .await;
    let actions: Vec<_> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["member.erased", "member.enrolled"]);
    assert!(
        !audit.to_string().contains("13800138000"),
        "the audit log holds no personal data"
    );
    let (s, _) = h
        .admin(
            Method::PATCH,
            &format!("/v1/members/{id}"),
            Some(json!({"name": "x"})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
}

async fn personal_data_is_masked_unless_revealed(backend: Backend) {
    let h = Harness::start(backend).await;
    let m = h.enrol(json!({"phone": "13800138000", "name": "王小明", "email": "wang@example.com", "birthday": "1990-05-04"})).await;
    assert_eq!(m["phone"], "138****8000");
    assert_eq!(m["name"], "王**");
    assert_eq!(m["email"], "w***@example.com");
    assert_eq!(m["birthday"], "****-05-**");
    let id = m["id"].as_str().unwrap();
    let marketer = h.key_for("marketer").await;
    let (s, b) = h
        .call(
            Some(&marketer),
            Method::GET,
            &format!("/v1/members/{id}?reveal=true"),
            None,
        )
        .await;
    assert_problem(s, &b, StatusCode::FORBIDDEN, "forbidden");
    let (s, b) = h
        .admin(Method::GET, &format!("/v1/members/{id}?reveal=true"), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (&b["phone"], &b["name"], &b["pii_revealed"]),
        (&json!("+8613800138000"), &json!("王小明"), &json!(true))
    );
    let (_, audit) = h
        .admin(Method::GET, "/v1/audit-events?action=member.pii_revealed", None)
        .await;
    assert_eq!(audit["data"].as_array().unwrap().len(), 1);
    let (_, all_audit) = h.admin(Method::GET, "/v1/audit-events", None).await;
    let text = all_audit.to_string();
    assert!(
        !text.contains("13800138000") && !text.contains("wang@example.com") && !text.contains("王小明"),
        "{text}"
    );
}

async fn till_identify_enrols_unknown_phone(backend: Backend) {
    let h = Harness::start(backend).await;
    let clerk = h.key_for("clerk").await;
    let (_, store) = h
        .admin(
            Method::POST,
            "/v1/stores",
            Some(json!({"code": "SH01", "name": "上海店"})),
        )
        .await;
    let body = json!({"phone": "139 0013 9000", "store_id": store["id"]});
    let (s, first) = h
        .call(
            Some(&clerk),
            Method::POST,
            "/v1/till/identify",
            Some(body.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{first}");
    assert_eq!(
        (&first["enrolled"], &first["member"]["channel"]),
        (&json!(true), &json!("pos"))
    );
    assert_eq!(first["member"]["store_id"], store["id"]);
    let (s, second) = h
        .call(Some(&clerk), Method::POST, "/v1/till/identify", Some(body))
        .await;
    assert_eq!((s, &second["enrolled"]), (StatusCode::OK, &json!(false)));
    assert_eq!(first["member"]["id"], second["member"]["id"]);
    let (s, b) = h
        .call(Some(&clerk), Method::POST, "/v1/till/identify", Some(json!({})))
        .await;
    assert_problem(s, &b, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    let (s, b) = h
        .call(
            Some(&clerk),
            Method::POST,
            "/v1/till/identify",
            Some(json!({"phone": "13900139000", "store_id": "sto_01JD4ZQ7X8Y2K3M4N5P6Q7R8S9"})),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::OK,
        "known phone: the store is not checked again: {b}"
    );
    let (s, b) = h
        .call(
            Some(&clerk),
            Method::POST,
            "/v1/till/identify",
            Some(json!({"phone": "13700137000", "store_id": "sto_01JD4ZQ7X8Y2K3M4N5P6Q7R8S9"})),
        )
        .await;
    assert_problem(s, &b, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(field_of(&b), "store_id");
}

async fn update_member_checks_identities(backend: Backend) {
    let h = Harness::start(backend).await;
    let a = h.enrol(json!({"phone": "13800138000", "name": "甲"})).await;
    let b = h.enrol(json!({"phone": "13900139000"})).await;
    let b_path = format!("/v1/members/{}", b["id"].as_str().unwrap());
    let (s, body) = h
        .admin(Method::PATCH, &b_path, Some(json!({"phone": "138-0013-8000"})))
        .await;
    assert_problem(s, &body, StatusCode::CONFLICT, "identity_conflict");
    assert_eq!(field_of(&body), "phone");
    let (s, body) = h
        .admin(Method::PATCH, &b_path, Some(json!({"phone": "13700137000", "name": "乙", "add_tags": ["vip"], "attributes": {"level": 3}})))
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        (&body["phone"], &body["tags"]),
        (&json!("137****7000"), &json!(["vip"]))
    );
    // The old phone no longer finds B; the new one does.
    let (_, old) = h
        .admin(
            Method::POST,
            "/v1/members/search",
            Some(json!({"filter": {"phone": "13900139000"}})),
        )
        .await;
    assert_eq!(old["data"], json!([]));
    let (_, new) = h
        .admin(
            Method::POST,
            "/v1/members/search",
            Some(json!({"filter": {"phone": "13700137000"}})),
        )
        .await;
    assert_eq!(new["data"][0]["id"], b["id"]);
    let (s, body) = h
        .admin(
            Method::PATCH,
            &b_path,
            Some(json!({"name": null, "attributes": {"level": null}})),
        )
        .await;
    assert_eq!(
        (s, &body["name"], &body["attributes"]),
        (StatusCode::OK, &Value::Null, &json!({}))
    );
    let (_, audit) = h
        .admin(
            Method::GET,
            &format!(
                "/v1/audit-events?target_id={}&action=member.updated",
                b["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    let first = &audit["data"][1];
    assert_eq!(first["diff"]["before"]["phone"], "139****9000");
    assert_eq!(first["diff"]["after"]["phone"], "137****7000");
    let _ = a;
}

async fn search_and_pagination(backend: Backend) {
    let h = Harness::start(backend).await;
    for (i, name) in ["王小明", "王小紅", "王大力", "李四", "Alexander Hamilton-Smith"]
        .iter()
        .enumerate()
    {
        h.enrol(json!({"phone": format!("1380013800{i}"), "name": name, "tags": if i % 2 == 0 { vec!["vip"] } else { vec![] }})).await;
    }
    let h = &h;
    let search = |filter: Value| async move {
        let (s, b) = h
            .admin(
                Method::POST,
                "/v1/members/search",
                Some(json!({"filter": filter})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        b["data"].as_array().unwrap().len()
    };
    assert_eq!(search(json!({"name_prefix": "王"})).await, 3);
    assert_eq!(search(json!({"name_prefix": "王小"})).await, 2);
    assert_eq!(search(json!({"name_prefix": "王小明"})).await, 1);
    assert_eq!(
        search(json!({"name_prefix": "alexander ham"})).await,
        1,
        "past the indexed prefix, confirmed on the name"
    );
    assert_eq!(search(json!({"name_prefix": "alexander hax"})).await, 0);
    assert_eq!(search(json!({"tag": "vip"})).await, 3);
    assert_eq!(search(json!({"tag": "vip", "name_prefix": "王"})).await, 2);
    let (s, b) = h
        .admin(
            Method::POST,
            "/v1/members/search",
            Some(json!({"filter": {"phone": "abc"}})),
        )
        .await;
    assert_problem(s, &b, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    let (s, b) = h
        .admin(
            Method::POST,
            "/v1/members/search",
            Some(json!({"filter": {"phnoe": "1"}})),
        )
        .await;
    assert_problem(s, &b, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request_body");
    assert_eq!(field_of(&b), "filter.phnoe");
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/members?limit=2&starting_after={c}"),
            None => "/v1/members?limit=2".to_owned(),
        };
        let (_, page) = h.admin(Method::GET, &path, None).await;
        let data = page["data"].as_array().unwrap();
        seen.extend(data.iter().map(|m| m["id"].as_str().unwrap().to_owned()));
        if !page["has_more"].as_bool().unwrap() {
            break;
        }
        cursor = seen.last().cloned();
    }
    assert_eq!(seen.len(), 5);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.reverse();
    assert_eq!(seen, sorted, "newest first, no overlap");
}

both_backends!(
    same_phone_formatted_differently_is_one_member,
    concurrent_enrolments_make_one_member,
    member_code_is_accepted_once,
    merged_member_redirects,
    erase_removes_personal_data,
    personal_data_is_masked_unless_revealed,
    till_identify_enrols_unknown_phone,
    update_member_checks_identities,
    search_and_pagination,
);
