//! `huiyuan bench`: throughput and latency of the loyalty engine on this machine, through the
//! same use cases (and, with `--http`, the same HTTP server) the product runs. Each run makes a
//! brand of its own in the given database, so it can run beside other data.
//!
//! The HTTP load generator is ours rather than wrk's: wrk cannot hold a fixed request rate, and
//! a latency percentile is only honest when measured from when a request *should* have been
//! sent (open loop), which is what `--rate` does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use huiyuan_api::{app, AppState};
use huiyuan_core::brands::NewBrand;
use huiyuan_core::members::Enrolment;
use huiyuan_core::{Actor, Core};
use huiyuan_domain::ids::MemberId;
use huiyuan_domain::loyalty::programme::Programme;
use huiyuan_domain::loyalty::purchase::{LineInput, PurchaseInput};
use huiyuan_domain::member::{Channel, EnrolInput};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tokio::sync::Semaphore;

use crate::AnyError;

/// A brand made for one benchmark run, with its members.
pub struct BenchBrand {
    pub actor: Actor,
    pub api_key: String,
    pub members: Vec<MemberId>,
    /// Prefix of this run's order IDs, so that runs on one database never collide.
    pub run: String,
}

/// Makes a brand with the demo programme and `members` members.
pub async fn setup(core: &Core, members: usize) -> Result<BenchBrand, AnyError> {
    let run = format!("{:x}", time::OffsetDateTime::now_utc().unix_timestamp());
    let made = core
        .bootstrap_brand(
            NewBrand {
                slug: format!("bench-{run}"),
                name: "Benchmark".into(),
                currency: None,
                timezone: None,
            },
            &format!("bench-{run}"),
            &huiyuan_core::crypto::random_token(16),
        )
        .await?;
    let actor = Actor::system(made.brand.id.clone());
    core.publish_programme(&actor, Programme::demo()).await?;
    let started = Instant::now();
    let mut ids = Vec::with_capacity(members);
    for n in 0..members {
        let input = EnrolInput {
            phone: Some(format!("171{:08}", n).into()),
            channel: Some(Channel::App),
            ..Default::default()
        };
        match core.enrol(&actor, input).await? {
            Enrolment::Created(m) | Enrolment::Existing(m) => ids.push(m.id),
        }
    }
    // With the statistics of a brand that has members (pgbench's setup analyses its tables too).
    core.refresh_statistics().await;
    eprintln!(
        "set up brand bench-{run}: {members} members enrolled in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(BenchBrand {
        actor,
        api_key: made.api_key.secret,
        members: ids,
        run,
    })
}

/// A sale of a small basket at the till.
pub fn purchase(
    rng: &mut StdRng,
    order_id: String,
    member: &MemberId,
    occurred_at: Option<time::OffsetDateTime>,
) -> PurchaseInput {
    let (lines, paid_amount) = basket(rng);
    PurchaseInput {
        order_id,
        member_id: Some(member.clone()),
        phone: None,
        member_code: None,
        enrol_if_unknown: None,
        store_id: None,
        channel: Channel::Pos,
        occurred_at,
        lines,
        paid_amount,
    }
}

/// Records `count` purchases through the batch use case, `batch` at a time, `concurrency`
/// batches in flight. Returns purchases per second.
pub async fn batches(
    core: &Core,
    brand: &BenchBrand,
    count: usize,
    batch: usize,
    concurrency: usize,
    occurred_at: Option<time::OffsetDateTime>,
) -> Result<f64, AnyError> {
    let mut rng = StdRng::seed_from_u64(7);
    let mut all: Vec<Vec<PurchaseInput>> = Vec::new();
    for chunk_start in (0..count).step_by(batch) {
        let n = batch.min(count - chunk_start);
        all.push(random_sales(
            &mut rng,
            brand,
            "B",
            chunk_start..chunk_start + n,
            occurred_at,
        ));
    }
    let gate = Arc::new(Semaphore::new(concurrency.max(1)));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in all {
        let permit = gate.clone().acquire_owned().await?;
        let core = core.clone();
        let actor = brand.actor.clone();
        tasks.spawn(async move {
            let _permit = permit;
            batch_call(&core, &actor, chunk).await
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

/// Sales numbered `numbers` by random members of the brand, with order IDs `{prefix}{run}-{n}`.
fn random_sales(
    rng: &mut StdRng,
    brand: &BenchBrand,
    prefix: &str,
    numbers: std::ops::Range<usize>,
    occurred_at: Option<time::OffsetDateTime>,
) -> Vec<PurchaseInput> {
    numbers
        .map(|i| {
            let member = &brand.members[rng.gen_range(0..brand.members.len())];
            purchase(rng, format!("{prefix}{}-{i}", brand.run), member, occurred_at)
        })
        .collect()
}

/// One call of the batch use case; any purchase refused fails the run.
async fn batch_call(core: &Core, actor: &Actor, chunk: Vec<PurchaseInput>) -> Result<(), AnyError> {
    let outcomes = core.record_purchases(actor, chunk).await?;
    let failed = outcomes.iter().filter(|o| o.is_err()).count();
    if let Some(Err(e)) = outcomes.into_iter().find(Result::is_err) {
        return Err(format!("{failed} purchases failed, first: {e}").into());
    }
    Ok(())
}

/// Batch calls of `batch` purchases, one after another, until `stop` is set: what a bulk
/// import or a store's end-of-day upload puts beside the till. Returns the purchases recorded
/// and the seconds taken.
pub async fn batches_until(
    core: Core,
    brand: Arc<BenchBrand>,
    batch: usize,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Result<(usize, f64), AnyError> {
    let mut rng = StdRng::seed_from_u64(11);
    let started = Instant::now();
    let mut recorded = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let chunk = random_sales(&mut rng, &brand, "M", recorded..recorded + batch, None);
        batch_call(&core, &brand.actor, chunk).await?;
        recorded += batch;
    }
    Ok((recorded, started.elapsed().as_secs_f64()))
}

/// What an HTTP run measured.
pub struct HttpFigures {
    pub requests: usize,
    pub errors: usize,
    pub seconds: f64,
    /// Latency percentiles (p50, p90, p99, p99.9, max) in milliseconds.
    pub latency_ms: [f64; 5],
}

impl std::fmt::Display for HttpFigures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [p50, p90, p99, p999, max] = self.latency_ms;
        write!(
            f,
            "{} requests in {:.1} s = {:.0}/s, {} errors; latency p50 {p50:.2} ms, p90 {p90:.2} ms, \
             p99 {p99:.2} ms, p99.9 {p999:.2} ms, max {max:.2} ms",
            self.requests,
            self.seconds,
            self.requests as f64 / self.seconds,
            self.errors
        )
    }
}

/// The `q` quantile (nearest rank) of sorted latencies, in milliseconds; 0 when there are none.
pub fn percentile_ms(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1e3
}

/// Serves the API on an ephemeral local port; the server runs until the process ends.
pub async fn serve(core: &Core) -> Result<SocketAddr, AnyError> {
    let config = huiyuan_api::ApiConfig {
        rate_limit_per_minute: u32::MAX / 2,
        ..Default::default()
    };
    let state = AppState::new(core.clone(), config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let service = app(state).into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(listener, service).await {
            eprintln!("bench server stopped: {e}");
        }
    });
    Ok(addr)
}

/// Sends single purchases to `POST /v1/transactions` for `seconds`: at a fixed `rate` (open
/// loop; latency counted from each request's scheduled time) or, without a rate, from
/// `connections` clients back to back (closed loop). `phase` keeps the order IDs of runs on
/// the same brand apart.
pub async fn http(
    addr: SocketAddr,
    brand: &BenchBrand,
    phase: &'static str,
    connections: usize,
    rate: Option<u32>,
    seconds: u64,
) -> Result<HttpFigures, AnyError> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections.max(1))
        .build()?;
    let url = Arc::new(format!("http://{addr}/v1/transactions"));
    let auth = Arc::new(format!("Bearer {}", brand.api_key));
    let members = Arc::new(brand.members.clone());
    let run = Arc::new(brand.run.clone());
    let deadline = Duration::from_secs(seconds);
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(connections.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    let send = move |n: usize, scheduled: Instant| {
        let (client, url, auth, members, run) = (
            client.clone(),
            url.clone(),
            auth.clone(),
            members.clone(),
            run.clone(),
        );
        async move {
            let mut rng = StdRng::seed_from_u64(n as u64);
            let member = &members[rng.gen_range(0..members.len())];
            let body = purchase(&mut rng, format!("H{run}-{phase}-{n}"), member, None);
            let ok = client
                .post(url.as_str())
                .header("authorization", auth.as_str())
                .json(&body)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            (ok, scheduled.elapsed())
        }
    };
    match rate {
        Some(rate) => {
            let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
            let mut n = 0u32;
            while started.elapsed() < deadline {
                let scheduled = started + interval * n;
                tokio::time::sleep_until(scheduled.into()).await;
                // Beyond `connections` requests in flight the schedule slips, and the slip
                // shows in the latencies, which count from the scheduled time.
                let permit = gate.clone().acquire_owned().await?;
                let request = send(n as usize, scheduled);
                tasks.spawn(async move {
                    let _permit = permit;
                    vec![request.await]
                });
                n += 1;
            }
        }
        None => {
            let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            for _ in 0..connections.max(1) {
                let (next, send) = (next.clone(), send.clone());
                tasks.spawn(async move {
                    let mut results = Vec::new();
                    while started.elapsed() < deadline {
                        let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        results.push(send(n, Instant::now()).await);
                    }
                    results
                });
            }
        }
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    while let Some(results) = tasks.join_next().await {
        for (ok, latency) in results? {
            errors += usize::from(!ok);
            latencies.push(latency);
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pick = |q: f64| percentile_ms(&latencies, q);
    Ok(HttpFigures {
        requests: latencies.len(),
        errors,
        seconds,
        latency_ms: [pick(0.5), pick(0.9), pick(0.99), pick(0.999), pick(1.0)],
    })
}

/// Till commits with one coupon, points and the wallet each: `sales` sales by the brand's
/// members, `concurrency` at a time, through the commit use case. Every member gets points and
/// wallet money first, and one coupon per sale is issued beforehand (not timed). Returns
/// commits per second.
pub async fn checkout(
    core: &Core,
    brand: &BenchBrand,
    sales: usize,
    concurrency: usize,
) -> Result<f64, AnyError> {
    use huiyuan_core::commerce::coupons::IssueInput;
    use huiyuan_core::commerce::wallet::TopUpInput;
    use huiyuan_domain::commerce::checkout::CheckoutInput;
    use huiyuan_domain::commerce::coupons::{Limits, Offer, TemplateInput, Validity};
    use huiyuan_domain::loyalty::purchase::{AdjustmentInput, LineInput};
    let actor = &brand.actor;
    let started = Instant::now();
    for (i, m) in brand.members.iter().enumerate() {
        core.adjust_points(
            actor,
            m,
            AdjustmentInput {
                points: 100_000,
                reason: "benchmark".into(),
                reference: format!("BP{}-{i}", brand.run),
            },
        )
        .await?;
        core.top_up_wallet(
            actor,
            m,
            TopUpInput {
                reference: format!("BW{}-{i}", brand.run),
                amount: 1_000_000,
            },
        )
        .await?;
    }
    let template = core
        .create_coupon_template(
            actor,
            TemplateInput {
                name: "滿100減20".into(),
                description: None,
                offer: Offer::Threshold {
                    min_spend: 10_000,
                    amount: 2_000,
                },
                validity: Validity::DaysAfterIssue { days: 30 },
                limits: Limits::default(),
                stackable: false,
                stock: None,
                cost_per_redemption: 2_000,
                claim_code: None,
                points_price: None,
            },
        )
        .await?;
    let mut planned = Vec::with_capacity(sales);
    for n in 0..sales {
        let member = brand.members[n % brand.members.len()].clone();
        let (coupon, _) = core
            .issue_coupon(
                actor,
                &member,
                IssueInput {
                    template_id: template.id.clone(),
                    reference: format!("BC{}-{n}", brand.run),
                },
            )
            .await?;
        planned.push(CheckoutInput {
            order_id: Some(format!("BS{}-{n}", brand.run)),
            member_id: Some(member),
            phone: None,
            member_code: None,
            store_id: None,
            channel: huiyuan_domain::member::Channel::Pos,
            lines: vec![
                LineInput {
                    sku: "TEE-001".into(),
                    category: Some("apparel".into()),
                    quantity: 2,
                    amount: 15_800,
                    reward: false,
                },
                LineInput {
                    sku: "MUG-002".into(),
                    category: Some("home".into()),
                    quantity: 1,
                    amount: 4_200,
                    reward: false,
                },
            ],
            shipping: 0,
            coupons: vec![coupon.code],
            points: 200,
            wallet: 5_000,
        });
    }
    eprintln!(
        "set up: points and wallets for {} members, {sales} coupons in {:.1} s",
        brand.members.len(),
        started.elapsed().as_secs_f64()
    );
    let gate = Arc::new(Semaphore::new(concurrency.max(1)));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for input in planned {
        let permit = gate.clone().acquire_owned().await?;
        let (core, actor) = (core.clone(), actor.clone());
        tasks.spawn(async move {
            let _permit = permit;
            core.commit_sale(&actor, input).await.map(drop)
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(sales as f64 / started.elapsed().as_secs_f64())
}

const PRODUCTS: &[(&str, &str, i64)] = &[
    ("TEE-001", "apparel", 9_900),
    ("JKT-014", "apparel", 59_900),
    ("SRM-203", "beauty", 32_800),
    ("LIP-077", "beauty", 18_900),
    ("CAF-010", "food", 3_200),
    ("SNK-102", "food", 1_500),
    ("GC-500", "gift_card", 50_000),
];

/// A basket of one to three lines of a small catalogue, and what was paid for it: now and then
/// with a 10% discount. Kept as it was when the benchmark figures began, so they compare.
pub fn basket(rng: &mut StdRng) -> (Vec<LineInput>, i64) {
    let mut lines = Vec::new();
    for _ in 0..rng.gen_range(1..4) {
        let (sku, category, price) = PRODUCTS.choose(rng).copied().unwrap_or(PRODUCTS[0]);
        let quantity = rng.gen_range(1..3);
        lines.push(LineInput {
            sku: sku.into(),
            category: Some(category.into()),
            quantity,
            amount: price * quantity,
            reward: false,
        });
    }
    let total: i64 = lines.iter().map(|l| l.amount).sum();
    let paid = if rng.gen_bool(0.2) { total * 9 / 10 } else { total };
    (lines, paid)
}
