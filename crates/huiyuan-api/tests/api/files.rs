//! Imports (CSV uploads run as background jobs) and exports (CSV, Parquet), over HTTP on both
//! backends.

use super::*;

impl Harness {
    /// Uploads a CSV body; returns the status and the job.
    pub(super) async fn upload(&self, path: &str, body: Vec<u8>) -> (StatusCode, Value) {
        let res = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.admin_key)
            .header("content-type", "text/csv")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = res.status();
        (status, res.json().await.unwrap())
    }

    async fn find_phone(&self, phone: &str) -> Value {
        let (s, b) = self
            .admin(
                Method::POST,
                "/v1/members/search",
                Some(json!({"filter": {"phone": phone}})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        b
    }

    /// A GET whose body is a file, not JSON.
    pub(super) async fn download(&self, key: &str, path: &str) -> (StatusCode, Vec<u8>) {
        let res = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        (res.status(), res.bytes().await.unwrap().to_vec())
    }
}

/// A members file of 100 lines, 5 of them bad: a phone that is no phone, a date that is no
/// date, a store that does not exist, a duplicate, and a line in GBK inside a UTF-8 file.
fn members_file() -> Vec<u8> {
    let mut text = String::from("会员编号,手机号,姓名,生日,性别,门店,Loyalty Level\n");
    for i in 1..=95 {
        text.push_str(&format!(
            "L{i:04},1380013{i:04},张{i},1990-01-{:02},女,SH01,gold\n",
            i % 28 + 1
        ));
    }
    text.push_str("L9001,12345,王五,1990-01-01,男,,\n");
    text.push_str("L9002,13900139002,李四,1990-13-45,男,,\n");
    text.push_str("L9003,13900139003,赵六,1990-02-02,男,NOPE,\n");
    text.push_str("L0001,13900139004,重复,1990-02-02,男,,\n");
    let mut bytes = text.into_bytes();
    bytes.extend_from_slice(b"L9005,13900139005,");
    bytes.extend_from_slice(&[0xB3, 0xC2, 0xC6, 0xDF]); // 陳七 in GBK
    bytes.extend_from_slice(b",1990-03-03,,,\n");
    bytes
}

/// Two-line orders of the first 40 members, and 2 bad orders.
fn transactions_file() -> Vec<u8> {
    let mut text =
        String::from("order_id,member_external_id,occurred_at,store,sku,category,quantity,amount\n");
    for i in 1..=40 {
        let day = i % 28 + 1;
        text.push_str(&format!(
            "IMP-{i},L{i:04},2026-01-{day:02} 12:30,SH01,TEE,apparel,1,{i}0.50\n"
        ));
        text.push_str(&format!(
            "IMP-{i},L{i:04},2026-01-{day:02} 12:30,SH01,CAP,apparel,2,20\n"
        ));
    }
    text.push_str("IMP-99,L9999,2026-01-02 10:00,,TEE,apparel,1,10\n");
    text.push_str("IMP-98,L0001,2026-01-02 10:00,,TEE,apparel,1,1.234\n");
    text.into_bytes()
}

fn rejected_lines(csv: &[u8]) -> Vec<(u64, String)> {
    let mut r = ::csv::Reader::from_reader(csv);
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            (rec[0].parse().unwrap(), rec[1].to_owned())
        })
        .collect()
}

async fn imports_take_good_rows_report_bad_ones_and_rerun_adds_nothing(backend: Backend) {
    let h = Harness::start(backend).await;
    h.publish_demo_programme().await;
    let (s, b) = h
        .admin(
            Method::POST,
            "/v1/stores",
            Some(json!({"code": "SH01", "name": "上海一店"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");

    // A file without a column that identifies members is refused at once, and makes no job.
    let (s, b) = h.upload("/v1/imports/members", "姓名\n张三\n".into()).await;
    assert_problem(s, &b, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert!(
        b["errors"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("external_id or phone"),
        "{b}"
    );

    let (s, job) = h.upload("/v1/imports/members", members_file()).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{job}");
    let url = format!("/v1/bulk-jobs/{}", job["id"].as_str().unwrap());
    let done = super::commerce::wait_for_job(&h, &url).await;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(
        (done["total"].as_i64(), done["failed"].as_i64()),
        (Some(100), Some(5)),
        "{done}"
    );
    assert_eq!(done["import"]["imported"], 95, "{done}");
    assert_eq!(
        done["import"]["ignored_columns"],
        json!(["Loyalty Level"]),
        "{done}"
    );
    let (s, csv) = h.download(&h.admin_key, &format!("{url}/rejected")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        rejected_lines(&csv),
        vec![
            (97, "phone".into()),
            (98, "birthday".into()),
            (99, "store".into()),
            (100, "external_id".into()),
            (101, String::new()),
        ]
    );
    let found = h.find_phone("13800130007").await;
    assert_eq!(
        found["data"][0]["store_id"]
            .as_str()
            .map(|s| s.starts_with("sto_")),
        Some(true),
        "{found}"
    );

    // The same upload is the same job; another run of the file adds nothing.
    let (s, again) = h.upload("/v1/imports/members", members_file()).await;
    assert_eq!((s, &again["id"]), (StatusCode::OK, &job["id"]));
    let (s, rerun) = h
        .upload("/v1/imports/members?reference=second-run", members_file())
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{rerun}");
    let rerun =
        super::commerce::wait_for_job(&h, &format!("/v1/bulk-jobs/{}", rerun["id"].as_str().unwrap())).await;
    assert_eq!(
        (
            rerun["import"]["imported"].as_i64(),
            rerun["import"]["unchanged"].as_i64()
        ),
        (Some(0), Some(95)),
        "{rerun}"
    );

    // Purchases go through the engine: points earned, the ledger verifies, a rerun earns nothing.
    let (s, job) = h.upload("/v1/imports/transactions", transactions_file()).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{job}");
    let url = format!("/v1/bulk-jobs/{}", job["id"].as_str().unwrap());
    let done = super::commerce::wait_for_job(&h, &url).await;
    assert_eq!(
        (done["total"].as_i64(), done["import"]["imported"].as_i64()),
        (Some(42), Some(40)),
        "{done}"
    );
    let (_, csv) = h.download(&h.admin_key, &format!("{url}/rejected")).await;
    assert_eq!(
        rejected_lines(&csv),
        vec![(82, "member_external_id".into()), (83, "amount".into())]
    );
    let found = h.find_phone("13800130007").await;
    let seventh = found["data"][0]["id"].as_str().unwrap().to_owned();
    let (_, bought) = h
        .admin(Method::GET, &format!("/v1/members/{seventh}/purchases"), None)
        .await;
    assert_eq!(bought["data"][0]["order_id"], "IMP-7", "{bought}");
    assert_eq!(bought["data"][0]["paid_amount"], 7050 + 2000, "{bought}");
    let points = |b: Value| {
        (
            b["available"].clone(),
            b["pending"].clone(),
            b["tier"]["qualifying"].clone(),
        )
    };
    let points_before = points(h.balance(&seventh).await);
    // 90 yuan on the 8th (member day, ×3) of the birthday month (×2), long matured.
    assert_eq!(
        (points_before.0.as_i64(), points_before.1.as_i64()),
        (Some(540), Some(0))
    );
    let (_, rerun) = h
        .upload("/v1/imports/transactions?reference=again", transactions_file())
        .await;
    let rerun =
        super::commerce::wait_for_job(&h, &format!("/v1/bulk-jobs/{}", rerun["id"].as_str().unwrap())).await;
    assert_eq!(
        (
            rerun["import"]["imported"].as_i64(),
            rerun["import"]["unchanged"].as_i64()
        ),
        (Some(0), Some(40)),
        "{rerun}"
    );
    assert_eq!(points(h.balance(&seventh).await), points_before);
    h.verify_ok().await;

    // A clerk may not import members' purchases in bulk as an analyst may not enrol.
    let analyst = h.key_for("analyst").await;
    let res = h
        .http
        .post(format!("{}/v1/imports/members", h.base))
        .bearer_auth(&analyst)
        .body(members_file())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let (s, _) = h.download(&analyst, &format!("{url}/rejected")).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

async fn exports_mask_personal_data_unless_revealed(backend: Backend) {
    let h = Harness::start(backend).await;
    h.publish_demo_programme().await;
    let m = h.enrol(json!({"phone": "13800138555", "name": "王小明"})).await;
    let id = m["id"].as_str().unwrap();
    let (s, b) = h.buy(sale("EXP-1", id, 120)).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");

    let analyst = h.key_for("analyst").await;
    let (s, csv) = h.download(&analyst, "/v1/exports/members").await;
    assert_eq!(s, StatusCode::OK);
    let text = String::from_utf8(csv).unwrap();
    assert!(
        text.contains("138****8555") && !text.contains("13800138555"),
        "{text}"
    );
    assert!(!text.contains("王小明"), "{text}");
    let (s, _) = h.download(&analyst, "/v1/exports/members?reveal=true").await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let clerk = h.key_for("clerk").await;
    let (s, _) = h.download(&clerk, "/v1/exports/transactions").await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    let (s, csv) = h.download(&h.admin_key, "/v1/exports/members?reveal=true").await;
    assert_eq!(s, StatusCode::OK);
    let text = String::from_utf8(csv).unwrap();
    assert!(
        text.contains("+8613800138555") && text.contains("王小明"),
        "{text}"
    );
    let (_, audit) = h
        .admin(
            Method::GET,
            "/v1/audit-events?action=data.exported_revealed",
            None,
        )
        .await;
    assert!(
        audit["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "data.exported_revealed"),
        "{audit}"
    );

    let (s, csv) = h.download(&analyst, "/v1/exports/transactions").await;
    assert_eq!(s, StatusCode::OK);
    let text = String::from_utf8(csv).unwrap();
    assert!(
        text.lines().nth(1).unwrap().contains(",EXP-1,") && text.contains(",120.00,"),
        "{text}"
    );
    let (s, ledger) = h.download(&analyst, "/v1/exports/ledger?format=parquet").await;
    assert_eq!(s, StatusCode::OK);
    assert!(ledger.starts_with(b"PAR1") && ledger.ends_with(b"PAR1"));
    let (s, body) = h
        .call(Some(&analyst), Method::GET, "/v1/exports/everything", None)
        .await;
    assert_problem(s, &body, StatusCode::NOT_FOUND, "not_found");
    let (s, body) = h
        .call(
            Some(&analyst),
            Method::GET,
            "/v1/exports/members?format=xlsx",
            None,
        )
        .await;
    assert_problem(s, &body, StatusCode::UNPROCESSABLE_ENTITY, "invalid_query");
}

both_backends!(
    imports_take_good_rows_report_bad_ones_and_rerun_adds_nothing,
    exports_mask_personal_data_unless_revealed,
);
