//! The demo brand: stores in Chinese cities, a catalogue, coupons, and members who behave like
//! customers, simulated day by day through the real engine (enrolment, rules, ledger, tiers,
//! coupons, refunds, jobs) under a clock the simulation moves — so every balance, tier and
//! ledger in the demo is what the engine made, and verifies.
//!
//! Members follow a buy-till-you-die process (Fader, Hardie & Lee 2005): each has a purchase
//! rate drawn from a gamma distribution and, after every purchase, a chance of dropping out
//! drawn from a beta distribution, so BG/NBD fits on the demo are meaningful. Purchases are
//! thinned by a seasonal curve (618, 雙11, Chinese New Year, the member day, weekends); basket
//! size follows a per-member spend level (the Gamma-Gamma assumption) and category preferences.
//!
//! The same options make the same data: IDs and coupon codes come from a generator seeded with
//! the seed and every step runs in order (see `CoreConfig::seed`).

mod catalogue;
mod people;

use std::collections::BTreeMap;
use std::sync::Arc;

use huiyuan_core::brands::{NewBrand, NewStore};
use huiyuan_core::clock::ManualClock;
use huiyuan_core::commerce::bulk::BulkIssueInput;
use huiyuan_core::commerce::coupons::RewardInput;
use huiyuan_core::crypto::MasterKey;
use huiyuan_core::members::Enrolment;
use huiyuan_core::{Actor, Core, CoreConfig, CoreError};
use huiyuan_domain::commerce::checkout::CheckoutInput;
use huiyuan_domain::ids::{BrandId, MemberId, StoreId};
use huiyuan_domain::loyalty::programme::{ActionKind, Programme};
use huiyuan_domain::loyalty::purchase::{ActionInput, PurchaseInput, RefundInput, RefundLineInput};
use huiyuan_domain::member::Channel;
use huiyuan_store::{Page, Storage};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_distr::{Beta, Distribution, Exp, Gamma};
use time::{Date, Duration, Month, OffsetDateTime, Time, UtcOffset};

/// What to make.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub members: usize,
    pub months: u32,
    pub seed: u64,
    /// The last simulated day (brand-local); the history ends the evening before it.
    pub until: Date,
}

/// What the simulation did, for the progress line and the tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DemoStats {
    pub days: u32,
    pub members: u64,
    pub purchases: u64,
    pub refunds: u64,
    pub coupons_issued: u64,
    pub coupon_sales: u64,
    pub rewards: u64,
    pub check_ins: u64,
}

/// The demo brand made, with what an operator needs to sign in.
#[derive(Debug, Clone)]
pub struct DemoBrand {
    pub brand_id: BrandId,
    pub brand_slug: String,
    pub username: String,
    pub password: String,
    pub api_key: String,
    pub stats: DemoStats,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{0}")]
    Core(#[from] CoreError),
    #[error("demo options: {0}")]
    Options(String),
}

/// The demo brand's local time: China has one zone and no daylight saving.
const LOCAL: UtcOffset = match UtcOffset::from_hms(8, 0, 0) {
    Ok(o) => o,
    Err(_) => UtcOffset::UTC,
};

fn at(day: Date, hour: u8, minute: u8) -> OffsetDateTime {
    let time = Time::from_hms(hour.min(23), minute.min(59), 0).unwrap_or(Time::MIDNIGHT);
    day.with_time(time).assume_offset(LOCAL)
}

/// How busy a day is compared with an ordinary weekday.
fn season(day: Date, member_day: u8) -> f64 {
    let (m, d) = (day.month(), day.day());
    let mut s = match (m, d) {
        // 雙11: the run-up from late October, the peak on the day.
        (Month::November, 11) => 4.0,
        (Month::November, 1..=10) => 1.6 + 0.15 * f64::from(d),
        (Month::October, 25..=31) => 1.3,
        // 618.
        (Month::June, 18) => 3.0,
        (Month::June, 1..=17) => 1.3 + 0.06 * f64::from(d),
        // Chinese New Year shopping (late January to mid February), then the quiet days.
        (Month::January, 15..=31) | (Month::February, 1..=5) => 1.8,
        (Month::February, 6..=15) => 0.7,
        (Month::December, 20..=31) => 1.4,
        _ => 1.0,
    };
    if d == member_day {
        s *= 1.6;
    }
    if matches!(day.weekday(), time::Weekday::Saturday | time::Weekday::Sunday) {
        s *= 1.2;
    }
    s
}
const SEASON_MAX: f64 = 4.0 * 1.6 * 1.2;

/// One simulated member.
struct Person {
    /// Index into the enrolment order; their phone and name derive from it.
    n: u32,
    joins: Date,
    id: Option<MemberId>,
    /// Purchases per day while alive.
    rate: f64,
    /// Chance of dropping out after each purchase.
    dropout: f64,
    alive: bool,
    next_purchase: Option<OffsetDateTime>,
    /// Mean basket value, minor units.
    spend: f64,
    /// Favourite categories, most liked first.
    likes: Vec<&'static str>,
    home: usize,
    channel: Channel,
    engaged: bool,
    purchases: u32,
    /// The next candidate purchase is kept whatever the season (made on joining).
    sure: bool,
}

/// Coupon templates of the demo, by role.
struct Templates {
    welcome: String,
    campaign: String,
    reward: String,
}

/// A purchase to refund a few days after it was made (the day is its key in the plan).
struct Refund {
    order_id: String,
    lines: usize,
}

/// Makes the demo brand in `storage` (already migrated), calling `progress(done, total)` once a
/// simulated day. The storage should hold no brand with the slug `demo`.
pub async fn generate(
    storage: Arc<dyn Storage>,
    master: &MasterKey,
    options: &DemoOptions,
    progress: &(dyn Fn(u64, u64, &DemoStats) + Sync),
) -> Result<DemoBrand, DemoError> {
    if options.members == 0 || options.months == 0 || options.months > 120 {
        return Err(DemoError::Options(
            "members must be at least 1 and months between 1 and 120".into(),
        ));
    }
    let start = options
        .until
        .checked_sub(Duration::days(i64::from(options.months) * 365 / 12))
        .ok_or_else(|| DemoError::Options("until is too early".into()))?;
    let clock = Arc::new(ManualClock::new(at(start, 8, 0)));
    let core = Core::new(
        storage,
        master,
        clock.clone(),
        CoreConfig {
            seed: Some(options.seed),
            background: false,
            ..CoreConfig::default()
        },
    );
    let mut rng = StdRng::seed_from_u64(options.seed);
    let password = huiyuan_core::crypto::random_token(12);
    let made = core
        .bootstrap_brand(
            NewBrand {
                slug: "demo".into(),
                name: "汇源生活 Huiyuan Life".into(),
                currency: None,
                timezone: Some("Asia/Shanghai".into()),
            },
            "admin",
            &password,
        )
        .await?;
    let system = Actor::system(made.brand.id.clone());
    let mut stores: Vec<StoreId> = Vec::new();
    for s in catalogue::STORES {
        let view = core
            .create_store(
                &system,
                NewStore {
                    code: s.code.into(),
                    name: s.name.into(),
                    city: Some(s.city.into()),
                    region: Some(s.region.into()),
                },
            )
            .await?;
        stores.push(view.id);
    }
    let programme = Programme::demo();
    let member_day = programme
        .multipliers
        .member_day
        .as_ref()
        .map_or(8, |m| m.day_of_month);
    core.publish_programme(&system, programme).await?;
    let templates = Templates {
        welcome: core
            .create_coupon_template(&system, catalogue::welcome_coupon())
            .await?
            .id,
        campaign: core
            .create_coupon_template(&system, catalogue::campaign_coupon())
            .await?
            .id,
        reward: core
            .create_coupon_template(&system, catalogue::reward_coupon())
            .await?
            .id,
    };

    let mut people = people::draw(&mut rng, options.members, start, options.until, stores.len());
    // Who joins on which day, in enrolment order.
    let mut joining: BTreeMap<Date, Vec<usize>> = BTreeMap::new();
    for (i, p) in people.iter().enumerate() {
        joining.entry(p.joins).or_default().push(i);
    }
    let mut refunds: BTreeMap<Date, Vec<Refund>> = BTreeMap::new();
    let mut stats = DemoStats::default();
    let total_days = (options.until - start).whole_days().max(1) as u64;
    let mut order_seq = 0u64;
    let mut day = start;
    while day < options.until {
        // Morning: the day's new members, in batches.
        clock.set(at(day, 9, 0));
        let new: Vec<usize> = joining.remove(&day).unwrap_or_default();
        for chunk in new.chunks(Core::MAX_ENROL_BATCH) {
            let inputs = chunk
                .iter()
                .map(|&i| people::enrolment(&mut rng, &people[i], &stores))
                .collect();
            let outcomes = core.enrol_many(&system, inputs).await?;
            for (&i, outcome) in chunk.iter().zip(outcomes) {
                match outcome? {
                    Enrolment::Created(m) | Enrolment::Existing(m) => people[i].id = Some(m.id),
                }
                stats.members += 1;
            }
            // Seven in ten join at a purchase (SPEC: pay and you are a member).
            for &i in chunk {
                let p = &mut people[i];
                let first = if rng.gen_bool(0.7) {
                    p.sure = true;
                    at(day, rng.gen_range(10..21), rng.gen_range(0..60))
                } else {
                    next_after(&mut rng, p, at(day, 12, 0))
                };
                p.next_purchase = Some(first);
            }
        }
        if !new.is_empty() {
            let members: Vec<MemberId> = new.iter().filter_map(|&i| people[i].id.clone()).collect();
            issue(
                &core,
                &system,
                &templates.welcome,
                members,
                &format!("WELCOME-{day}"),
            )
            .await?;
            stats.coupons_issued += new.len() as u64;
        }
        // A campaign on the 1st (雙11's run-up starts on November 1st) and before 618:
        // 滿100減20 to one in ten.
        if day.day() == 1 || (day.month() == Month::June && day.day() == 10) {
            let members: Vec<MemberId> = people
                .iter()
                .filter(|p| p.alive && p.id.is_some() && rng.gen_bool(0.1))
                .filter_map(|p| p.id.clone())
                .collect();
            if !members.is_empty() {
                stats.coupons_issued += members.len() as u64;
                issue(
                    &core,
                    &system,
                    &templates.campaign,
                    members,
                    &format!("CAMPAIGN-{day}"),
                )
                .await?;
            }
        }

        // The day's purchases, in time order.
        let end_of_day = at(day, 22, 0);
        let mut today: Vec<(OffsetDateTime, usize)> = Vec::new();
        for (i, p) in people.iter_mut().enumerate() {
            while let Some(t) = p.next_purchase.filter(|t| *t < end_of_day) {
                if !p.alive {
                    p.next_purchase = None;
                    break;
                }
                // Candidates come at the busiest rate; each is kept in proportion to how busy
                // the day is (thinning). A purchase made on joining always happens.
                if p.sure || rng.gen_bool(season(day, member_day) / SEASON_MAX) {
                    p.sure = false;
                    today.push((t, i));
                }
                p.next_purchase = Some(next_after(&mut rng, p, t));
            }
        }
        today.sort();
        let mut batch: Vec<PurchaseInput> = Vec::new();
        for &(t, i) in &today {
            order_seq += 1;
            let order_id = format!("D{order_seq:08}");
            let p = &mut people[i];
            let Some(member) = p.id.clone() else { continue };
            let (lines, paid) = catalogue::basket(&mut rng, p.spend, &p.likes);
            let (channel, store) = catalogue::where_bought(&mut rng, p.channel, p.home, &stores);
            p.purchases += 1;
            if rng.gen_bool(p.dropout) && p.purchases > 1 {
                p.alive = false;
            }
            let refund_on = rng
                .gen_bool(0.03)
                .then(|| (t + Duration::days(rng.gen_range(1..7))).to_offset(LOCAL).date());
            // One in four purchases of a member holding a coupon uses it at the till.
            let coupon = if rng.gen_bool(0.25) && paid >= 10_000 {
                usable_coupon(&core, &system, &member).await?
            } else {
                None
            };
            if let Some(code) = coupon {
                clock.set(t);
                let sale = core
                    .commit_sale(
                        &system,
                        CheckoutInput {
                            order_id: Some(order_id.clone()),
                            member_id: Some(member.clone()),
                            phone: None,
                            member_code: None,
                            store_id: store.clone(),
                            channel,
                            lines: lines.clone(),
                            shipping: 0,
                            coupons: vec![code],
                            points: 0,
                            wallet: 0,
                        },
                    )
                    .await;
                match sale {
                    Ok(_) => {
                        stats.coupon_sales += 1;
                        continue;
                    }
                    // The basket does not meet the coupon's terms: the clerk sells without it.
                    Err(CoreError::Conflict { .. } | CoreError::Validation(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            // Returns come back as purchase refunds; a till sale with a coupon would be refunded
            // as a sale, which the demo leaves.
            if let Some(on) = refund_on {
                refunds.entry(on).or_default().push(Refund {
                    order_id: order_id.clone(),
                    lines: lines.len(),
                });
            }
            batch.push(PurchaseInput {
                order_id,
                member_id: Some(member),
                phone: None,
                member_code: None,
                enrol_if_unknown: None,
                store_id: store,
                channel,
                occurred_at: Some(t),
                lines,
                paid_amount: paid,
            });
        }
        clock.set(end_of_day);
        for chunk in batch.chunks(1_000) {
            for outcome in core.record_purchases(&system, chunk.to_vec()).await? {
                outcome?;
                stats.purchases += 1;
            }
        }
        // Returns: whole orders mostly, one item now and then.
        clock.set(at(day, 20, 30));
        for r in refunds.remove(&day).unwrap_or_default() {
            let input = RefundInput {
                refund_id: format!("R-{}", r.order_id),
                amount: None,
                lines: (r.lines > 1 && rng.gen_bool(0.3))
                    .then(|| vec![RefundLineInput { line: 0, quantity: 1 }]),
                reason: Some("顾客退货 customer return".into()),
            };
            match core.refund_purchase(&system, &r.order_id, input).await {
                Ok(_) => stats.refunds += 1,
                Err(CoreError::NotFound(_) | CoreError::Conflict { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        // Engaged members check in now and then, and some spend points on a coupon.
        clock.set(at(day, 21, 0));
        for p in people.iter().filter(|p| p.alive && p.engaged) {
            let Some(member) = &p.id else { continue };
            if rng.gen_bool(0.006) {
                core.reward_action(
                    &system,
                    member,
                    ActionInput {
                        action: ActionKind::CheckIn,
                        reference: format!("CHECKIN-{day}-{}", p.n),
                    },
                )
                .await?;
                stats.check_ins += 1;
            }
            if p.purchases >= 3 && rng.gen_bool(0.002) {
                let reward = core
                    .redeem_reward(
                        &system,
                        member,
                        RewardInput {
                            template_id: templates.reward.clone(),
                            reference: format!("REWARD-{day}-{}", p.n),
                        },
                    )
                    .await;
                match reward {
                    Ok(_) => stats.rewards += 1,
                    Err(CoreError::Conflict { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        // Night: maturation, expiry, reminders, birthdays, tier review, coupon expiry.
        clock.set(at(day, 23, 30));
        core.run_jobs("demo", false).await?;
        stats.days += 1;
        progress(u64::from(stats.days), total_days, &stats);
        day = day.next_day().unwrap_or(day);
    }
    core.refresh_statistics().await;
    Ok(DemoBrand {
        brand_id: made.brand.id,
        brand_slug: made.brand.slug,
        username: made.admin.username,
        password,
        api_key: made.api_key.secret,
        stats,
    })
}

/// The member's next candidate purchase after `t`: exponential gaps at their rate on the
/// busiest days (thinned by the season where they land).
fn next_after(rng: &mut StdRng, p: &Person, t: OffsetDateTime) -> OffsetDateTime {
    let gap_days = Exp::new((p.rate * SEASON_MAX).max(1e-6)).map_or(365.0, |e| e.sample(rng));
    // Shops are open 10:00–22:00: land on a daytime minute of the day reached.
    let day = (t + Duration::seconds_f64((gap_days * 86_400.0).min(86_400.0 * 3_650.0)))
        .to_offset(LOCAL)
        .date();
    let day = if day <= t.to_offset(LOCAL).date() {
        day.next_day().unwrap_or(day)
    } else {
        day
    };
    at(day, rng.gen_range(10..22), rng.gen_range(0..60))
}

/// Issues a template to members through the bulk job, run here and now.
async fn issue(
    core: &Core,
    system: &Actor,
    template: &str,
    members: Vec<MemberId>,
    reference: &str,
) -> Result<(), DemoError> {
    core.issue_coupons_bulk(
        system,
        template,
        BulkIssueInput {
            member_ids: members,
            segment: None,
            reference: reference.into(),
        },
    )
    .await?;
    core.run_bulk_jobs("demo").await?;
    Ok(())
}

/// A coupon the member holds and could use now, if any.
async fn usable_coupon(core: &Core, system: &Actor, member: &MemberId) -> Result<Option<String>, DemoError> {
    let held = core
        .member_coupons(system, member, Some("issued"), &Page::first(10))
        .await?;
    let now = core.now();
    Ok(held
        .into_iter()
        .find(|c| c.valid_from <= now && now < c.valid_until)
        .map(|c| c.code))
}

/// Gamma and beta draws with parameters known to be valid.
fn gamma(rng: &mut StdRng, shape: f64, scale: f64) -> f64 {
    Gamma::new(shape, scale).map_or(shape * scale, |g| g.sample(rng))
}

fn beta(rng: &mut StdRng, a: f64, b: f64) -> f64 {
    Beta::new(a, b).map_or(a / (a + b), |d| d.sample(rng))
}

/// `choose` on a list known not to be empty.
fn pick<'a, T>(rng: &mut StdRng, list: &'a [T]) -> &'a T {
    list.choose(rng).unwrap_or(&list[0])
}
