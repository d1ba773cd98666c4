//! `huiyuan bench load` and `huiyuan bench crash`: the product under a realistic mix of
//! requests, seen from outside over HTTP as clients see it. `load` measures throughput and
//! latency per route at fixed rates against running servers (the demo, one `serve`, or several
//! `serve` processes on one PostgreSQL); `crash` starts its own servers, kills them with SIGKILL
//! in the middle of the load, restarts them, and checks after every kill that nothing
//! acknowledged was lost and nothing happened twice.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use crate::bench::percentile_ms;
use crate::AnyError;

/// A client of one brand, spread over one or more nodes of an installation.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    nodes: Arc<Vec<String>>,
    auth: Arc<String>,
}

/// A definite answer from a server.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

impl Client {
    pub fn new(nodes: Vec<String>, key: &str) -> Result<Self, AnyError> {
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .pool_max_idle_per_host(256)
                .build()?,
            nodes: Arc::new(nodes),
            auth: Arc::new(format!("Bearer {key}")),
        })
    }

    /// Sends one request to node `node` (modulo the node count). `Err` means no answer: the
    /// connection was refused or dropped, or the answer did not come in time — the request may
    /// or may not have taken effect.
    pub async fn send(
        &self,
        node: usize,
        method: Method,
        path: &str,
        body: Option<&Value>,
        idempotency_key: Option<&str>,
    ) -> Result<Reply, reqwest::Error> {
        let base = &self.nodes[node % self.nodes.len()];
        let mut req = self
            .http
            .request(method, format!("{base}{path}"))
            .header("authorization", self.auth.as_str());
        if let Some(b) = body {
            req = req.json(b);
        }
        if let Some(k) = idempotency_key {
            req = req.header("idempotency-key", k);
        }
        let res = req.send().await?;
        let status = res.status().as_u16();
        let text = res.text().await?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok(Reply { status, body })
    }

    /// Up to `max` items of a list route (`path` without a query), page after page.
    async fn list(&self, path: &str, max: usize) -> Result<Vec<Value>, AnyError> {
        let mut items: Vec<Value> = Vec::new();
        while items.len() < max {
            let page_path = match items.last().and_then(|i| i["id"].as_str()) {
                Some(after) => format!("{path}?limit=100&starting_after={after}"),
                None => format!("{path}?limit=100"),
            };
            let page = self.expect(Method::GET, &page_path, None).await?;
            let data = page["data"].as_array().cloned().unwrap_or_default();
            let more = page["has_more"] == json!(true) && !data.is_empty();
            items.extend(data);
            if !more {
                break;
            }
        }
        items.truncate(max);
        Ok(items)
    }

    /// A request that must succeed (set-up and checks), on the first node.
    async fn expect(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value, AnyError> {
        let reply = self.send(0, method.clone(), path, body.as_ref(), None).await?;
        if !reply.ok() {
            return Err(format!("{method} {path}: {} {}", reply.status, reply.body).into());
        }
        Ok(reply.body)
    }
}

/// Members and coupons the workloads use, made (or found) through the API.
pub struct Fixture {
    pub members: Vec<String>,
    /// Unredeemed coupons: (code, the member holding it).
    pub coupons: Mutex<Vec<(String, String)>>,
}

/// Finds up to `members` members of the brand (enrolling more when it has fewer), makes sure a
/// programme is published, and issues `coupons` coupons of a new template to them.
pub async fn prepare(
    client: &Client,
    members: usize,
    coupons: usize,
    run: &str,
) -> Result<Fixture, AnyError> {
    let programme = client.send(0, Method::GET, "/v1/programme", None, None).await?;
    if programme.status == 404 {
        let doc: Value = serde_json::from_str(huiyuan_domain::loyalty::programme::DEMO_PROGRAMME_JSON)?;
        client.expect(Method::PUT, "/v1/programme", Some(doc)).await?;
    }
    let mut ids: Vec<String> = client
        .list("/v1/members", members)
        .await?
        .iter()
        .filter_map(|m| m["id"].as_str().map(str::to_owned))
        .collect();
    let mut rng = StdRng::seed_from_u64(seed_of(run));
    while ids.len() < members {
        let phone = format!("175{:08}", rng.gen_range(0..100_000_000u32));
        let m = client
            .expect(
                Method::POST,
                "/v1/members",
                Some(json!({"phone": phone, "channel": "app"})),
            )
            .await?;
        if let Some(id) = m["id"].as_str() {
            if !ids.iter().any(|x| x == id) {
                ids.push(id.to_owned());
            }
        }
    }
    let template = client
        .expect(
            Method::POST,
            "/v1/coupon-templates",
            Some(
                json!({"name": format!("壓測券 {run}"), "offer": {"kind": "fixed_amount", "amount": 500},
                        "validity": {"kind": "days_after_issue", "days": 30}}),
            ),
        )
        .await?;
    let template = template["id"].clone();
    let gate = Arc::new(Semaphore::new(8));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..coupons {
        let member = ids[rng.gen_range(0..ids.len())].clone();
        let (client, template, permit) = (
            client.clone(),
            template.clone(),
            gate.clone().acquire_owned().await?,
        );
        let reference = format!("{run}-C{i}");
        tasks.spawn(async move {
            let _permit = permit;
            let c = client
                .expect(
                    Method::POST,
                    &format!("/v1/members/{member}/coupons"),
                    Some(json!({"template_id": template, "reference": reference})),
                )
                .await?;
            let code = c["code"]
                .as_str()
                .ok_or("an issued coupon has a code")?
                .to_owned();
            Ok::<_, AnyError>((code, member))
        });
    }
    let mut issued = Vec::with_capacity(coupons);
    while let Some(r) = tasks.join_next().await {
        issued.push(r??);
    }
    issued.shuffle(&mut rng);
    Ok(Fixture {
        members: ids,
        coupons: Mutex::new(issued),
    })
}

fn seed_of(run: &str) -> u64 {
    run.bytes()
        .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
}

/// A basket of one to three lines at the till, as the bench's purchases are: the body of a
/// quote, and what it paid.
fn basket_body(rng: &mut StdRng, member: &str) -> (Value, i64) {
    let (lines, paid) = crate::bench::basket(rng);
    (
        json!({"member_id": member, "channel": "pos", "lines": lines}),
        paid,
    )
}

/// A basket with an order ID: the body of a coupon redemption.
fn order_body(rng: &mut StdRng, order_id: &str, member: &str) -> Value {
    let (mut body, _) = basket_body(rng, member);
    body["order_id"] = json!(order_id);
    body
}

/// An order with what was paid: the body of a purchase.
fn sale_body(rng: &mut StdRng, order_id: &str, member: &str) -> Value {
    let (mut body, paid) = basket_body(rng, member);
    body["order_id"] = json!(order_id);
    body["paid_amount"] = json!(paid);
    body
}

// ---- load -------------------------------------------------------------------------------------

/// Routes of the mix, as reported.
const PURCHASE: &str = "POST /v1/transactions";
const QUOTE: &str = "POST /v1/checkout/quote";
const READ: &str = "GET /v1/members/{id}";
const REDEEM: &str = "POST /v1/coupons/{code}/redeem";

/// One step of the load: its rate and, per route, (requests, non-2xx, latencies).
pub struct Step {
    pub rate: u32,
    pub seconds: f64,
    pub routes: Vec<(&'static str, usize, usize, Vec<Duration>)>,
}

impl Step {
    fn all(&self) -> Vec<Duration> {
        let mut all: Vec<Duration> = self.routes.iter().flat_map(|r| r.3.iter().copied()).collect();
        all.sort_unstable();
        all
    }

    /// p99 of every request of the step, in ms.
    pub fn p99(&self) -> f64 {
        percentile_ms(&self.all(), 0.99)
    }

    pub fn print(&self) {
        let total: usize = self.routes.iter().map(|r| r.1).sum();
        println!(
            "\n### {} requests/s offered: {total} requests in {:.1} s = {:.0}/s\n",
            self.rate,
            self.seconds,
            total as f64 / self.seconds
        );
        println!("| route | requests | non-2xx | p50 ms | p99 ms | p99.9 ms | max ms |");
        println!("|---|---:|---:|---:|---:|---:|---:|");
        let mut rows: Vec<(&str, usize, usize, Vec<Duration>)> = self.routes.clone();
        rows.push(("all", total, self.routes.iter().map(|r| r.2).sum(), self.all()));
        for (route, n, errors, lat) in rows {
            println!(
                "| {route} | {n} | {errors} | {:.1} | {:.1} | {:.1} | {:.1} |",
                percentile_ms(&lat, 0.5),
                percentile_ms(&lat, 0.99),
                percentile_ms(&lat, 0.999),
                percentile_ms(&lat, 1.0)
            );
        }
    }
}

/// Runs the mix (70% purchases, 15% quotes, 10% member reads, 5% coupon redemptions) at `rate`
/// requests per second for `seconds`, open loop: latencies count from when each request was
/// due, so a server that falls behind shows it.
pub async fn load_step(
    client: &Client,
    fixture: &Arc<Fixture>,
    rate: u32,
    seconds: u64,
    connections: usize,
    run: &str,
) -> Result<Step, AnyError> {
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let started = Instant::now();
    let deadline = Duration::from_secs(seconds);
    let gate = Arc::new(Semaphore::new(connections.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    let mut n = 0u32;
    while started.elapsed() < deadline {
        let scheduled = started + interval * n;
        tokio::time::sleep_until(scheduled.into()).await;
        let permit = gate.clone().acquire_owned().await?;
        let (client, fixture) = (client.clone(), fixture.clone());
        let tag = format!("{run}-{rate}-{n}");
        tasks.spawn(async move {
            let _permit = permit;
            let mut rng = StdRng::seed_from_u64(seed_of(&tag));
            let member = fixture.members[rng.gen_range(0..fixture.members.len())].clone();
            let pick = rng.gen_range(0..100);
            let coupon = if pick >= 95 {
                fixture.coupons.lock().ok().and_then(|mut c| c.pop())
            } else {
                None
            };
            let node = n as usize;
            let (route, reply) = match (pick, coupon) {
                (95.., Some((code, holder))) => {
                    let body = order_body(&mut rng, &format!("L{tag}"), &holder);
                    let path = format!("/v1/coupons/{code}/redeem");
                    (
                        REDEEM,
                        client.send(node, Method::POST, &path, Some(&body), None).await,
                    )
                }
                (85..=94, _) => {
                    let path = format!("/v1/members/{member}");
                    (READ, client.send(node, Method::GET, &path, None, None).await)
                }
                (70..=84, _) => {
                    let (body, _) = basket_body(&mut rng, &member);
                    (
                        QUOTE,
                        client
                            .send(node, Method::POST, "/v1/checkout/quote", Some(&body), None)
                            .await,
                    )
                }
                _ => {
                    let body = sale_body(&mut rng, &format!("L{tag}"), &member);
                    (
                        PURCHASE,
                        client
                            .send(node, Method::POST, "/v1/transactions", Some(&body), None)
                            .await,
                    )
                }
            };
            let ok = reply.is_ok_and(|r| r.ok());
            (route, ok, scheduled.elapsed())
        });
        n += 1;
    }
    let mut by_route: HashMap<&'static str, (usize, usize, Vec<Duration>)> = HashMap::new();
    while let Some(r) = tasks.join_next().await {
        let (route, ok, latency) = r?;
        let e = by_route.entry(route).or_default();
        e.0 += 1;
        e.1 += usize::from(!ok);
        e.2.push(latency);
    }
    let seconds = started.elapsed().as_secs_f64();
    let mut routes = Vec::new();
    for route in [PURCHASE, QUOTE, READ, REDEEM] {
        let (n, errors, mut lat) = by_route.remove(route).unwrap_or_default();
        lat.sort_unstable();
        routes.push((route, n, errors, lat));
    }
    Ok(Step {
        rate,
        seconds,
        routes,
    })
}

/// `huiyuan bench load`: each rate in turn, a table per rate, then the first rate whose p99
/// passed 50 ms.
pub async fn load(
    nodes: Vec<String>,
    key: &str,
    rates: &[u32],
    seconds: u64,
    connections: usize,
) -> Result<(), AnyError> {
    let client = Client::new(nodes.clone(), key)?;
    let run = format!("{:x}", time::OffsetDateTime::now_utc().unix_timestamp());
    let max_rate = rates.iter().copied().max().unwrap_or(0) as u64;
    // Redemptions are 5% of the mix; enough coupons for every step.
    let coupons = (rates.iter().map(|r| u64::from(*r)).sum::<u64>() * seconds / 18 + 10) as usize;
    eprintln!("preparing: members, and {coupons} coupons to redeem…");
    let fixture = Arc::new(prepare(&client, 2_000, coupons, &run).await?);
    println!(
        "## Load: {} node(s) {}, {} members, {seconds} s per step, up to {connections} requests in flight",
        nodes.len(),
        nodes.join(" "),
        fixture.members.len()
    );
    // A short warm-up: connections opened, statements prepared.
    load_step(
        &client,
        &fixture,
        (max_rate / 4).max(50) as u32,
        2,
        connections,
        &format!("{run}w"),
    )
    .await?;
    let mut passed = None;
    for rate in rates {
        let step = load_step(&client, &fixture, *rate, seconds, connections, &run).await?;
        step.print();
        if passed.is_none() && step.p99() > 50.0 {
            passed = Some(*rate);
        }
    }
    match passed {
        Some(rate) => println!("\np99 passed 50 ms at {rate} requests/s."),
        None => println!("\np99 stayed under 50 ms up to {max_rate} requests/s."),
    }
    Ok(())
}

// ---- crash ------------------------------------------------------------------------------------

/// Where the crash test keeps its installation.
struct Installation {
    dir: PathBuf,
    database: Option<String>,
    ports: Vec<u16>,
    servers: Vec<Option<Child>>,
}

fn free_port() -> Result<u16, AnyError> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Installation {
    fn storage_args(&self) -> Vec<String> {
        let mut args = vec!["--data".to_owned(), self.dir.display().to_string()];
        if let Some(db) = &self.database {
            args.extend(["--database".to_owned(), db.clone()]);
        }
        args
    }

    fn base(&self, node: usize) -> String {
        format!("http://127.0.0.1:{}", self.ports[node])
    }

    /// Creates a brand with the binary's own `brand create`; returns its admin API key.
    fn create_brand(&self, slug: &str) -> Result<String, AnyError> {
        let out = Command::new(std::env::current_exe()?)
            .arg("brand")
            .arg("create")
            .args(self.storage_args())
            .args(["--slug", slug, "--name", "Crash test", "--admin-username"])
            .arg(format!("admin-{slug}"))
            .env("HUIYUAN_ADMIN_PASSWORD", huiyuan_core::crypto::random_token(16))
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find_map(|l| l.strip_prefix("API key: ").map(|k| k.trim().to_owned()))
            .ok_or_else(|| {
                format!(
                    "brand create printed no key: {}",
                    String::from_utf8_lossy(&out.stderr)
                )
                .into()
            })
    }

    fn start(&mut self, node: usize) -> Result<(), AnyError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("node{node}.log")))?;
        let child = Command::new(std::env::current_exe()?)
            .arg("serve")
            .args(self.storage_args())
            .args(["--listen", &format!("127.0.0.1:{}", self.ports[node])])
            .env("HUIYUAN_RATE_LIMIT_PER_MINUTE", "100000000")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        self.servers[node] = Some(child);
        Ok(())
    }

    async fn wait_ready(&self, node: usize) -> Result<(), AnyError> {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(60) {
            if let Ok(r) = reqwest::get(format!("{}/readyz", self.base(node))).await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!(
            "node {node} did not become ready (see {}/node{node}.log)",
            self.dir.display()
        )
        .into())
    }

    /// SIGKILL: no shutdown, no flush of the process's own buffers, as a crash or the OOM
    /// killer would. (The operating system's page cache survives it: a power cut is not this.)
    fn kill(&mut self, node: usize) -> Result<(), AnyError> {
        if let Some(mut child) = self.servers[node].take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }
}

impl Drop for Installation {
    fn drop(&mut self) {
        for node in 0..self.servers.len() {
            let _ = self.kill(node);
        }
    }
}

/// One request of the crash workload, with the identity that makes a retry safe.
#[derive(Debug, Clone)]
enum Op {
    Purchase {
        order_id: String,
        member: String,
        body: Value,
    },
    Redeem {
        code: String,
        order_id: String,
        body: Value,
    },
    TopUp {
        member: String,
        reference: String,
        amount: i64,
    },
    /// An enrolment made safe to retry by an `Idempotency-Key`.
    Enrol { phone: String, key: String },
}

#[derive(Debug, Clone)]
enum Outcome {
    /// 2xx: the client was told it happened.
    Acked(Value),
    /// A definite refusal (4xx).
    Refused(u16, Value),
    /// No answer: it may or may not have happened; the client retries.
    Unknown,
}

impl Op {
    async fn send(&self, client: &Client, node: usize) -> Outcome {
        let reply = match self {
            Op::Purchase { body, .. } => {
                client
                    .send(node, Method::POST, "/v1/transactions", Some(body), None)
                    .await
            }
            Op::Redeem { code, body, .. } => {
                client
                    .send(
                        node,
                        Method::POST,
                        &format!("/v1/coupons/{code}/redeem"),
                        Some(body),
                        None,
                    )
                    .await
            }
            Op::TopUp {
                member,
                reference,
                amount,
            } => {
                let body = json!({"reference": reference, "amount": amount});
                client
                    .send(
                        node,
                        Method::POST,
                        &format!("/v1/members/{member}/wallet/top-ups"),
                        Some(&body),
                        None,
                    )
                    .await
            }
            Op::Enrol { phone, key } => {
                let body = json!({"phone": phone, "channel": "pos"});
                client
                    .send(node, Method::POST, "/v1/members", Some(&body), Some(key))
                    .await
            }
        };
        match reply {
            Ok(r) if r.ok() => Outcome::Acked(r.body),
            // A server that is shutting down or overloaded answers 5xx/429 and did nothing the
            // client can rely on either way: retry.
            Ok(r) if r.status >= 500 || r.status == 429 => Outcome::Unknown,
            Ok(r) => Outcome::Refused(r.status, r.body),
            Err(_) => Outcome::Unknown,
        }
    }
}

/// Ops sent during one kill cycle and what the client last heard.
type Journal = Arc<Mutex<Vec<(Op, Outcome)>>>;

/// `huiyuan bench crash`: runs [`crash`] in `dir` (a scratch folder when absent), reports, and
/// fails naming every broken invariant; the folder, with the servers' logs, is kept then.
pub async fn crash_command(
    kills: usize,
    database: Option<String>,
    nodes: usize,
    seed: u64,
    dir: Option<PathBuf>,
) -> Result<(), AnyError> {
    if database.is_none() && nodes > 1 {
        return Err("SQLite is embedded in one process: --nodes > 1 needs --database".into());
    }
    let dir =
        dir.unwrap_or_else(|| std::env::temp_dir().join(format!("huiyuan-crash-{}", std::process::id())));
    let problems = crash(kills, database, nodes, seed, &dir).await?;
    if problems.is_empty() {
        println!("crash test passed: {kills} kills, every invariant held");
        let _ = std::fs::remove_dir_all(&dir);
        return Ok(());
    }
    for p in &problems {
        eprintln!("BROKEN: {p}");
    }
    Err(format!(
        "{} invariant(s) broken; servers' logs in {}",
        problems.len(),
        dir.display()
    )
    .into())
}

/// `kills` times: load the installation, SIGKILL one node at a random moment, restart it,
/// settle every unanswered request by retrying it, and check the invariants over everything
/// sent so far (a later crash must not lose what an earlier round had). Returns the problems
/// found (empty: passed).
async fn crash(
    kills: usize,
    database: Option<String>,
    nodes: usize,
    seed: u64,
    dir: &Path,
) -> Result<Vec<String>, AnyError> {
    std::fs::create_dir_all(dir)?;
    let mut inst = Installation {
        dir: dir.to_path_buf(),
        database,
        ports: (0..nodes.max(1)).map(|_| free_port()).collect::<Result<_, _>>()?,
        servers: (0..nodes.max(1)).map(|_| None).collect(),
    };
    let run = format!(
        "crash{:x}",
        time::OffsetDateTime::now_utc().unix_timestamp() % 1_000_000
    );
    let key = inst.create_brand(&run)?;
    for node in 0..inst.ports.len() {
        inst.start(node)?;
        inst.wait_ready(node).await?;
    }
    let client = Client::new((0..inst.ports.len()).map(|n| inst.base(n)).collect(), &key)?;
    let fixture = Arc::new(prepare(&client, 40, kills * 30 + 20, &run).await?);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut problems = Vec::new();
    let mut all: Vec<(Op, Outcome)> = Vec::new();
    let counter = Arc::new(AtomicUsize::new(0));
    let retries = Arc::new(AtomicUsize::new(0));
    for kill in 1..=kills {
        let journal: Journal = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut workers = tokio::task::JoinSet::new();
        for w in 0..8 {
            let (client, fixture, journal, stop, counter) = (
                client.clone(),
                fixture.clone(),
                journal.clone(),
                stop.clone(),
                counter.clone(),
            );
            let (run, retries) = (run.clone(), retries.clone());
            let mut rng = StdRng::seed_from_u64(seed ^ (kill as u64 * 1_000 + w));
            workers.spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    let member = fixture.members[rng.gen_range(0..fixture.members.len())].clone();
                    let ops = match rng.gen_range(0..100) {
                        // Two different orders race for one coupon, on two nodes when there are two.
                        0..=9 => match fixture.coupons.lock().ok().and_then(|mut c| c.pop()) {
                            Some((code, holder)) => (0..2)
                                .map(|k| {
                                    let order_id = format!("{run}-R{n}-{k}");
                                    let body = order_body(&mut rng, &order_id, &holder);
                                    Op::Redeem {
                                        code: code.clone(),
                                        order_id,
                                        body,
                                    }
                                })
                                .collect(),
                            None => vec![],
                        },
                        10..=19 => vec![Op::TopUp {
                            member,
                            reference: format!("{run}-T{n}"),
                            amount: rng.gen_range(1..50) * 1_000,
                        }],
                        20..=27 => vec![Op::Enrol {
                            phone: format!("176{:08}", n),
                            key: format!("{run}-E{n}"),
                        }],
                        _ => {
                            let order_id = format!("{run}-P{n}");
                            let body = sale_body(&mut rng, &order_id, &member);
                            vec![Op::Purchase {
                                order_id,
                                member,
                                body,
                            }]
                        }
                    };
                    let mut sent = send_together(&client, &ops, n).await;
                    // Like a till, retry what got no answer, a little later, until it gets one
                    // (a server is down for a moment) or the round ends (settled below).
                    let mut attempt = 0;
                    while sent.iter().any(|o| matches!(o, Outcome::Unknown)) && !stop.load(Ordering::Relaxed)
                    {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        attempt += 1;
                        for (k, (op, outcome)) in ops.iter().zip(sent.iter_mut()).enumerate() {
                            if matches!(outcome, Outcome::Unknown) {
                                retries.fetch_add(1, Ordering::Relaxed);
                                *outcome = op.send(&client, n + k + attempt).await;
                            }
                        }
                    }
                    if let Ok(mut j) = journal.lock() {
                        j.extend(ops.into_iter().zip(sent));
                    }
                }
            });
        }
        // Kill at a random moment of the load.
        tokio::time::sleep(Duration::from_millis(rng.gen_range(150..1_200))).await;
        let victim = rng.gen_range(0..inst.ports.len());
        inst.kill(victim)?;
        tokio::time::sleep(Duration::from_millis(rng.gen_range(50..400))).await;
        stop.store(true, Ordering::Relaxed);
        while workers.join_next().await.is_some() {}
        inst.start(victim)?;
        inst.wait_ready(victim).await?;

        // Settle: every request without an answer is retried, as a client would, until it has one.
        let mut journal = std::mem::take(&mut *journal.lock().map_err(|_| "journal poisoned")?);
        let unknown = journal
            .iter()
            .filter(|(_, o)| matches!(o, Outcome::Unknown))
            .count();
        let retried = retries.swap(0, Ordering::Relaxed);
        for (i, (op, outcome)) in journal.iter_mut().enumerate() {
            let mut tries = 0;
            while matches!(outcome, Outcome::Unknown) {
                tries += 1;
                if tries > 20 {
                    problems.push(format!(
                        "kill {kill}: {op:?} never got an answer after the restart"
                    ));
                    break;
                }
                *outcome = op.send(&client, i + tries).await;
                if matches!(outcome, Outcome::Unknown) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        // Replays of requests that were acknowledged: same answer, no second effect.
        let acked: Vec<usize> = (0..journal.len())
            .filter(|i| matches!(journal[*i].1, Outcome::Acked(_)))
            .collect();
        for i in acked.choose_multiple(&mut rng, 25) {
            let (op, first) = &journal[*i];
            let again = op.send(&client, *i + 1).await;
            check_replay(kill, op, first, &again, &mut problems);
        }
        let sent = journal.len();
        all.extend(journal);
        let found = check(&client, &all).await?;
        println!(
            "kill {kill}/{kills}: node {victim} killed; {sent} requests this round, {retried} retries \
             during the outage, {unknown} unanswered at its end and settled by retry; {} problem(s)",
            found.len()
        );
        problems.extend(found.into_iter().map(|p| format!("kill {kill}: {p}")));
        if problems.len() > 50 {
            break;
        }
    }
    problems.extend(check_the_checker(&client, &all, &fixture, &run).await?);
    Ok(problems)
}

/// A checker that cannot fail proves nothing: after the run, the journal gets three
/// acknowledgements that never happened — a purchase never sent, a second redemption of a
/// redeemed coupon, a top-up never made — and the checks must name each of them.
async fn check_the_checker(
    client: &Client,
    all: &[(Op, Outcome)],
    fixture: &Fixture,
    run: &str,
) -> Result<Vec<String>, AnyError> {
    let member = fixture.members[0].clone();
    let ghost_order = format!("{run}-GHOST");
    let ghost_top_up = format!("{run}-GHOST-TOP-UP");
    let mut forged: Vec<(Op, Outcome)> = all.to_vec();
    forged.push((
        Op::Purchase {
            order_id: ghost_order.clone(),
            member: member.clone(),
            body: Value::Null,
        },
        Outcome::Acked(Value::Null),
    ));
    forged.push((
        Op::TopUp {
            member,
            reference: ghost_top_up.clone(),
            amount: 1,
        },
        Outcome::Acked(Value::Null),
    ));
    let redeemed = all.iter().find_map(|(op, outcome)| match (op, outcome) {
        (Op::Redeem { code, .. }, Outcome::Acked(_)) => Some(code.clone()),
        _ => None,
    });
    if let Some(code) = &redeemed {
        forged.push((
            Op::Redeem {
                code: code.clone(),
                order_id: format!("{run}-GHOST-REDEMPTION"),
                body: Value::Null,
            },
            Outcome::Acked(Value::Null),
        ));
    }
    let found = check(client, &forged).await?;
    let mut missed = Vec::new();
    let mut expect = |what: &str, needle: &str| {
        if !found.iter().any(|p| p.contains(needle)) {
            missed.push(format!("the checks missed a forged {what} ({needle}): {found:?}"));
        }
    };
    expect("purchase", &ghost_order);
    expect("top-up", &ghost_top_up);
    if let Some(code) = &redeemed {
        expect("second redemption", code);
    }
    if missed.is_empty() {
        println!(
            "the checks caught all {} forged acknowledgements",
            2 + usize::from(redeemed.is_some())
        );
    }
    Ok(missed)
}

/// Sends ops (a pair racing for one coupon, or one op) at once, on different nodes.
async fn send_together(client: &Client, ops: &[Op], n: usize) -> Vec<Outcome> {
    let mut tasks = tokio::task::JoinSet::new();
    for (k, op) in ops.iter().enumerate() {
        let (client, op) = (client.clone(), op.clone());
        tasks.spawn(async move { (k, op.send(&client, n + k).await) });
    }
    let mut out = vec![Outcome::Unknown; ops.len()];
    while let Some(Ok((k, o))) = tasks.join_next().await {
        out[k] = o;
    }
    out
}

fn check_replay(kill: usize, op: &Op, first: &Outcome, again: &Outcome, problems: &mut Vec<String>) {
    let (Outcome::Acked(a), Outcome::Acked(b)) = (first, again) else {
        problems.push(format!(
            "kill {kill}: replaying acknowledged {op:?} got {again:?}"
        ));
        return;
    };
    let same = match op {
        Op::Purchase { .. } => a["purchase"] == b["purchase"],
        Op::Redeem { .. } => a["coupon"]["code"] == b["coupon"]["code"],
        Op::TopUp { .. } => a["amount"] == b["amount"] && a["bonus"] == b["bonus"],
        Op::Enrol { .. } => a["id"] == b["id"],
    };
    if !same {
        problems.push(format!("kill {kill}: replay of {op:?} answered {b} after {a}"));
    }
}

/// The invariants, over everything sent so far.
async fn check(client: &Client, all: &[(Op, Outcome)]) -> Result<Vec<String>, AnyError> {
    let mut problems = Vec::new();
    // Ledgers and wallets verify: hash chains intact, balances equal the sums of entries.
    let report = client.expect(Method::GET, "/v1/ledger/verify", None).await?;
    if report["problems"] != json!([]) {
        problems.push(format!("ledger verify: {}", report["problems"]));
    }
    let mut redeemed: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut top_ups: HashMap<&str, HashSet<&str>> = HashMap::new();
    for (op, outcome) in all {
        let Outcome::Acked(body) = outcome else {
            if let (Op::Purchase { order_id, .. }, Outcome::Refused(s, b)) = (op, outcome) {
                problems.push(format!("purchase {order_id} refused: {s} {b}"));
            }
            continue;
        };
        match op {
            // Every acknowledged purchase is there, once, for its member.
            Op::Purchase { order_id, member, .. } => {
                let r = client
                    .send(
                        0,
                        Method::GET,
                        &format!("/v1/transactions/{order_id}"),
                        None,
                        None,
                    )
                    .await?;
                if !r.ok() || r.body["member_id"] != json!(member) {
                    problems.push(format!(
                        "acknowledged purchase {order_id} reads {} {}",
                        r.status, r.body
                    ));
                }
            }
            Op::Redeem { code, order_id, .. } => redeemed.entry(code).or_default().push(order_id),
            Op::TopUp {
                member, reference, ..
            } => {
                top_ups.entry(member).or_default().insert(reference);
            }
            // One member per idempotency key and phone, the one the client was told about.
            Op::Enrol { phone, .. } => {
                let found = client
                    .expect(
                        Method::POST,
                        "/v1/members/search",
                        Some(json!({"filter": {"phone": phone}})),
                    )
                    .await?;
                let ids: Vec<&Value> = found["data"]
                    .as_array()
                    .map(|d| d.iter().map(|m| &m["id"]).collect())
                    .unwrap_or_default();
                if ids != vec![&body["id"]] {
                    problems.push(format!(
                        "enrolment of {phone}: told {}, found {ids:?}",
                        body["id"]
                    ));
                }
            }
        }
    }
    // No coupon redeemed twice, and each acknowledged redemption shows on the coupon.
    for (code, orders) in &redeemed {
        if orders.len() > 1 {
            problems.push(format!("coupon {code} redeemed by {orders:?}"));
        }
        let c = client
            .expect(Method::GET, &format!("/v1/coupons/{code}"), None)
            .await?;
        if c["status"] != "redeemed" {
            problems.push(format!(
                "coupon {code} acknowledged as redeemed but is {}",
                c["status"]
            ));
        }
    }
    // Every acknowledged top-up is in the wallet exactly once.
    for (member, references) in &top_ups {
        let mut seen: HashMap<String, usize> = HashMap::new();
        let entries = client
            .list(&format!("/v1/members/{member}/wallet/entries"), usize::MAX)
            .await?;
        for e in entries.iter().filter(|e| e["kind"] == "top_up") {
            *seen
                .entry(e["reference"].as_str().unwrap_or_default().to_owned())
                .or_default() += 1;
        }
        for r in references {
            if seen.get(*r) != Some(&1) {
                problems.push(format!(
                    "top-up {r} of {member} appears {} times",
                    seen.get(*r).unwrap_or(&0)
                ));
            }
        }
    }
    Ok(problems)
}
