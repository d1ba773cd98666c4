//! Reliability from outside the process: SIGKILL in the middle of the load, two `serve`
//! processes on one PostgreSQL, the API fuzzed by schemathesis, and logs scanned for secrets.

use super::*;

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = scratch_dir().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A PostgreSQL database of this test's own, as a URL for the binary's `--database`.
async fn private_database_url() -> String {
    let options = huiyuan_store_pg::testing::private_test_database().await;
    let name = options.get_database().expect("a database name").to_owned();
    let admin = huiyuan_store_pg::testing::admin_url();
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
    format!("{base}/{name}")
}

fn crash(args: &[&str], dir: &std::path::Path) {
    let out = huiyuan()
        .args(["bench", "crash", "--dir", dir.to_str().unwrap()])
        .args(args)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("crash test passed"), "{stdout}");
}

/// The fast version of `bench/crash.sh` (which kills 20 times): three SIGKILLs mid-load on
/// SQLite; after each, nothing acknowledged is lost and nothing happened twice.
#[test]
fn sigkill_mid_load_loses_nothing_on_sqlite() {
    crash(&["--kills", "3", "--seed", "11"], &scratch("crash-sqlite"));
}

/// Two processes on one PostgreSQL, one of them killed each time; coupons raced across them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_one_node_loses_nothing_on_postgres() {
    let url = private_database_url().await;
    let dir = scratch("crash-pg");
    tokio::task::spawn_blocking(move || {
        crash(
            &["--kills", "3", "--nodes", "2", "--database", &url, "--seed", "12"],
            &dir,
        )
    })
    .await
    .unwrap();
}

/// A `serve` process of a test installation, killed when dropped.
struct Node {
    child: Child,
    base: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `serve` process on `database`, its key in `data`, logging to `data/{name}.log`.
fn serve(data: &std::path::Path, database: &str, name: &str) -> Node {
    let port = free_port();
    let child = huiyuan()
        .args(["serve", "--data", data.to_str().unwrap(), "--database", database])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        // As much logging as the server can produce: nothing secret may be in any of it.
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(data.join(format!("{name}.log"))).unwrap())
        .spawn()
        .unwrap();
    Node {
        child,
        base: format!("http://127.0.0.1:{port}"),
    }
}

fn create_brand(data: &std::path::Path, database: &str, slug: &str, password: &str) -> String {
    let out = huiyuan()
        .args([
            "brand",
            "create",
            "--data",
            data.to_str().unwrap(),
            "--database",
            database,
        ])
        .args(["--slug", slug, "--name", "兩個節點", "--admin-username", slug])
        .env("HUIYUAN_ADMIN_PASSWORD", password)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("API key: ").map(|k| k.trim().to_owned()))
        .unwrap()
}

async fn send(
    http: &reqwest::Client,
    key: &str,
    method: reqwest::Method,
    url: String,
    body: Option<serde_json::Value>,
    idempotency_key: Option<&str>,
) -> (u16, serde_json::Value) {
    let mut req = http.request(method, url).bearer_auth(key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    if let Some(k) = idempotency_key {
        req = req.header("idempotency-key", k);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(serde_json::Value::Null))
}

/// Two `huiyuan serve` processes on one PostgreSQL: an idempotency key replayed on the other
/// node, one coupon redeemed from both at once, the scheduled jobs run by one of them; and
/// neither log holds a phone, a name, a password, a key, a session token or a member code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_one_postgres_agree() {
    use reqwest::Method;
    let url = private_database_url().await;
    let data = scratch("two-nodes");
    let password = "two nodes, one database";
    let key = create_brand(&data, &url, "twonodes", password);
    let (a, b) = (serve(&data, &url, "a"), serve(&data, &url, "b"));
    wait_healthy(&a.base).await;
    wait_healthy(&b.base).await;
    let http = reqwest::Client::new();
    let doc: serde_json::Value =
        serde_json::from_str(huiyuan_domain::loyalty::programme::DEMO_PROGRAMME_JSON).unwrap();
    let (s, _) = send(
        &http,
        &key,
        Method::PUT,
        format!("{}/v1/programme", a.base),
        Some(doc),
        None,
    )
    .await;
    assert_eq!(s, 201);

    // An enrolment sent to A, its answer lost, retried on B with the same key: one member.
    let enrol = json!({"phone": "139 8765 4321", "name": "節點測試", "email": "nodes@example.com"});
    let (s1, first) = send(
        &http,
        &key,
        Method::POST,
        format!("{}/v1/members", a.base),
        Some(enrol.clone()),
        Some("enrol-1"),
    )
    .await;
    let (s2, again) = send(
        &http,
        &key,
        Method::POST,
        format!("{}/v1/members", b.base),
        Some(enrol.clone()),
        Some("enrol-1"),
    )
    .await;
    assert_eq!((s1, s2), (201, 201), "{first} {again}");
    assert_eq!(first, again, "the replay on the other node is the first answer");
    let mut other = enrol.clone();
    other["name"] = json!("別的");
    let (s, refused) = send(
        &http,
        &key,
        Method::POST,
        format!("{}/v1/members", b.base),
        Some(other),
        Some("enrol-1"),
    )
    .await;
    assert_eq!(
        (s, refused["code"].as_str()),
        (409, Some("idempotency_key_reused")),
        "the same key with another body is refused: {refused}"
    );
    let member = first["id"].as_str().unwrap().to_owned();

    // One coupon, two tills on two nodes, two orders at once: one redemption.
    let (s, template) = send(
        &http,
        &key,
        Method::POST,
        format!("{}/v1/coupon-templates", a.base),
        Some(
            json!({"name": "5元券", "offer": {"kind": "fixed_amount", "amount": 500},
                    "validity": {"kind": "days_after_issue", "days": 30}}),
        ),
        None,
    )
    .await;
    assert_eq!(s, 201, "{template}");
    for round in 0..5 {
        let (s, coupon) = send(
            &http,
            &key,
            Method::POST,
            format!("{}/v1/members/{member}/coupons", b.base),
            Some(json!({"template_id": template["id"], "reference": format!("C-{round}")})),
            None,
        )
        .await;
        assert_eq!(s, 201, "{coupon}");
        let code = coupon["code"].as_str().unwrap().to_owned();
        let redeem = |base: String, order: String| {
            let (http, key, member, code) = (http.clone(), key.clone(), member.clone(), code.clone());
            tokio::spawn(async move {
                send(
                    &http,
                    &key,
                    Method::POST,
                    format!("{base}/v1/coupons/{code}/redeem"),
                    Some(json!({"order_id": order, "member_id": member, "channel": "pos",
                                "lines": [{"sku": "TEE", "quantity": 1, "amount": 10_000}]})),
                    None,
                )
                .await
            })
        };
        let x = redeem(a.base.clone(), format!("A-{round}"));
        let y = redeem(b.base.clone(), format!("B-{round}"));
        let (x, y) = (x.await.unwrap(), y.await.unwrap());
        let mut statuses = [x.0, y.0];
        statuses.sort_unstable();
        assert_eq!(statuses, [201, 409], "round {round}: {x:?} {y:?}");
    }

    // Both nodes' schedulers ticked at start; each job ran on one of them only.
    let (s, _) = send(
        &http,
        &key,
        Method::GET,
        format!("{}/v1/members/{member}", a.base),
        None,
        None,
    )
    .await;
    assert_eq!(s, 200);
    drop((a, b));
    let logs: Vec<String> = ["a", "b"]
        .iter()
        .map(|n| std::fs::read_to_string(data.join(format!("{n}.log"))).unwrap())
        .collect();
    let ran: Vec<String> = logs
        .iter()
        .flat_map(|l| l.lines())
        .filter(|l| l.contains("job ran"))
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            v["job"].as_str().map(str::to_owned)
        })
        .collect();
    let mut unique = ran.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(ran.len(), unique.len(), "a job ran on both nodes: {ran:?}");
    assert!(!ran.is_empty(), "the schedulers ran the due jobs");

    // Nothing personal or secret in either log, in any form it was sent.
    for secret in [
        "13987654321",
        "139 8765 4321",
        "8765 4321",
        "節點測試",
        "nodes@example.com",
        password,
        key.as_str(),
        &key[key.len() - 12..],
    ] {
        for (n, log) in logs.iter().enumerate() {
            assert!(!log.contains(secret), "log {n} contains {secret:?}");
        }
    }
}

/// schemathesis (from PyPI; `.ci/run` installs it) against the OpenAPI document of a demo
/// server with a valid key: no 5xx on any route, and no response that breaks the schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_errors() {
    let exe = std::env::var("HUIYUAN_SCHEMATHESIS").unwrap_or_else(|_| "schemathesis".to_owned());
    let version = Command::new(&exe).arg("--version").output();
    assert!(
        version.is_ok_and(|o| o.status.success()),
        "schemathesis is needed (`pip install -r .ci/requirements.txt`, or run .ci/run); \
         set HUIYUAN_SCHEMATHESIS to its path"
    );
    let data = scratch("schemathesis");
    let db = data.join("demo");
    let port = free_port();
    let (demo, key) = start_demo(&db, port);
    let base = format!("http://127.0.0.1:{port}");
    wait_healthy(&base).await;
    let report = data.join("report");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(exe)
            // Its cache of crashes goes beside the report, not into the source tree.
            .current_dir(&data)
            .args([
                "--no-color",
                "run",
                &format!("{base}/openapi.json"),
                "--url",
                &base,
            ])
            .args(["--header", &format!("Authorization: Bearer {key}")])
            .args([
                "--checks",
                "not_a_server_error,response_schema_conformance,content_type_conformance",
            ])
            .args(["--phases", "examples,coverage,fuzzing"])
            .args(["--max-examples", "25", "--seed", "2026", "--workers", "2"])
            .args(["--suppress-health-check", "all"])
            .args(["--report", "junit", "--report-dir", report.to_str().unwrap()])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(stop(demo).success());
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
