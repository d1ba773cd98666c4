//! Recording purchases, the engine's hot path. A batch of sales earns its points in one
//! transaction with a few statements per table (members, replays, accounts and window totals
//! read for the whole batch; purchases, lots, entries, accounts and events written as
//! multi-row statements) instead of a dozen round trips per sale. Single sales that arrive
//! together are grouped into such batches (group commit): one durable commit serves them all,
//! so durability is kept while throughput grows with load.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use huiyuan_domain::access::Permission;
use huiyuan_domain::commerce::plans::Plan;
use huiyuan_domain::ids::{BrandId, MemberId, PurchaseId, StoreId};
use huiyuan_domain::loyalty::earning::{evaluate, EarnLine, EarnedSoFar, Earning, PurchaseFacts};
use huiyuan_domain::loyalty::ledger::EntryKind;
use huiyuan_domain::loyalty::purchase::{PurchaseInput, PurchaseLine, PurchaseStatus};
use huiyuan_domain::loyalty::tiers::TierMetrics;
use huiyuan_domain::member::Channel;

use crate::commerce::plans::active_plan;
use huiyuan_domain::member::MemberStatus;
use huiyuan_domain::ValidationError;
use huiyuan_store::{
    AccountRecord, MemberRecord, MembershipRecord, PurchaseRecord, PurchaseTotals, Sums, TierChangeRecord, Tx,
};
use serde_json::json;
use time::{Date, Duration, OffsetDateTime};
use tokio::sync::{oneshot, Semaphore};

use super::calendar::BrandCalendar;
use super::purchases::{replay, same_sale, view_of, Preparation, Prepared, SaleSource};
use super::tiers::change_view;
use super::views::PurchaseOutcome;
use super::{new_account, LoyaltyContext, NewLot, Posting, Writes};
use crate::members::enum_str;
use crate::{Actor, Core, CoreError, ErrorCode, Result, StorageFailure};

/// Most purchases accepted by one batch call.
pub const MAX_BATCH: usize = 1_000;
/// Most sales grouped into one commit: a few batch calls in flight together. A commit's cost
/// grows less than its size (index pages dirtied by one sale are often dirtied by others).
const MAX_GROUP: usize = 4 * MAX_BATCH;
/// How many times a batch is retried when another transaction recorded one of its orders at
/// the same moment, or PostgreSQL broke a deadlock by giving it up (SQLite serialises writers).
const RACE_RETRIES: usize = 3;
/// Sales between two hand-overs of a long batch's rows to the database
/// ([`Writes::send_ahead`]): small enough that little is left to write at the end, large
/// enough that each table's statement runs on many rows per message.
const AHEAD_EVERY: usize = 128;

/// How many sales must be waiting before a second or third leader starts (PostgreSQL). With
/// every leader free to start at once, nearly each arrival found one idle at moderate load:
/// groups of about two sales, each paying a group's nine round trips, kept the machine as busy
/// at 1,000 sales/s as at full load. With 16, the machine is a third less busy at 1,000/s, and
/// full-load throughput rose 13 - 20% (larger groups); 8 gained less, and 32 left leaders
/// idle at full load (docs/benchmarks.md, 2026-12-07).
const QUEUE_FOR_EXTRA_LEADER: usize = 16;
/// How long a sale waits for the first leader before a free extra leader takes it anyway: a
/// long group (a 1,000-sale batch call) must not hold up the till's single sales behind it.
/// Longer than a moderate load's group, so that it seldom starts a leader there.
const LEADER_PATIENCE: std::time::Duration = std::time::Duration::from_millis(10);

/// Single sales waiting to be written, shared by the requests of one process.
pub struct PurchaseQueue {
    waiting: Mutex<Waiters>,
    /// The first leader, who writes whatever is waiting.
    leader: Semaphore,
    /// Leaders who may write beside the first while the queue is deep: none on SQLite (it has
    /// one writer); some on PostgreSQL, whose row locks order sales of the same member.
    extra_leaders: Semaphore,
    /// How many extra leaders there are.
    extras: usize,
}

struct Waiting {
    brand: BrandId,
    item: Prepared,
    reply: oneshot::Sender<Result<PurchaseOutcome>>,
    /// Queued by a batch call (more than one sale), not by a till's single sale.
    bulk: bool,
}

/// The queue proper, in arrival order.
#[derive(Default)]
struct Waiters {
    list: Vec<Waiting>,
    /// The last group taken held batch sales: the next one takes the single sales first.
    bulk_taken_last: bool,
}

impl PurchaseQueue {
    pub fn new(writers: usize) -> Self {
        Self {
            waiting: Mutex::new(Waiters::default()),
            leader: Semaphore::new(1),
            extra_leaders: Semaphore::new(writers.saturating_sub(1)),
            extras: writers.saturating_sub(1),
        }
    }

    fn len(&self) -> usize {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner()).list.len()
    }

    /// A leader's permit: the first leader's, or an extra one's while the queue is deep or
    /// after [`LEADER_PATIENCE`]. A deep queue (a batch call) prefers an extra leader, leaving
    /// the first to the sales that arrive while it writes.
    async fn lead(&self) -> std::result::Result<tokio::sync::SemaphorePermit<'_>, tokio::sync::AcquireError> {
        // With one writer (SQLite) there is no extra leader to wait for, nor a queue to measure.
        let extra = self.extras > 0;
        let deep = extra && self.len() >= QUEUE_FOR_EXTRA_LEADER;
        let impatient = async {
            tokio::time::sleep(LEADER_PATIENCE).await;
            self.extra_leaders.acquire().await
        };
        tokio::select! {
            biased;
            permit = self.extra_leaders.acquire(), if deep => permit,
            permit = self.leader.acquire() => permit,
            permit = impatient, if extra && !deep => permit,
        }
    }

    fn push(
        &self,
        brand: &BrandId,
        item: Prepared,
        bulk: bool,
    ) -> oneshot::Receiver<Result<PurchaseOutcome>> {
        let (reply, receiver) = oneshot::channel();
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        waiting.list.push(Waiting {
            brand: brand.clone(),
            item,
            reply,
            bulk,
        });
        receiver
    }

    /// A group to write: everything waiting (up to [`MAX_GROUP`]), except right after a group
    /// that held batch sales, when the single sales waiting go alone. A till's sale then waits
    /// for at most one batch's commit, not also for the next batch call that queued meanwhile,
    /// and a batch waits for at most one small group.
    fn take(&self) -> Vec<Waiting> {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        let singles_first = waiting.bulk_taken_last && waiting.list.iter().any(|w| !w.bulk);
        let group: Vec<Waiting> = if singles_first {
            // What is not taken stays, in order.
            waiting.list.extract_if(.., |w| !w.bulk).take(MAX_GROUP).collect()
        } else {
            let n = waiting.list.len().min(MAX_GROUP);
            waiting.list.drain(..n).collect()
        };
        waiting.bulk_taken_last = group.iter().any(|w| w.bulk);
        group
    }
}

/// What a batch knows about its members' purchases since the instants the caps and the tier
/// window start: the stored totals (read once for the batch) and the sales of this batch
/// (added as they are recorded).
#[derive(Default)]
struct Totals {
    /// Per member, the stored totals since each instant read (a handful per member).
    stored: HashMap<MemberId, Vec<(OffsetDateTime, PurchaseTotals)>>,
    /// (occurred at, points, paid) of each member's sales recorded so far in this batch.
    batch: HashMap<MemberId, Vec<(OffsetDateTime, i64, i64)>>,
}

impl Totals {
    async fn read(
        tx: &mut dyn Tx,
        brand: &BrandId,
        members: &[MemberId],
        mut instants: Vec<(OffsetDateTime, Sums)>,
    ) -> Result<Self> {
        // One entry per instant, asking for what any of its askers wants; none for an
        // instant nobody needs a sum of (it would only widen the scan).
        instants.retain(|(_, wanted)| wanted.any());
        instants.sort_unstable_by_key(|(at, _)| *at);
        instants.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                kept.1 = kept.1.union(later.1);
            }
            same
        });
        let mut totals = Totals {
            stored: HashMap::with_capacity(members.len()),
            batch: HashMap::with_capacity(members.len()),
        };
        if members.is_empty() {
            return Ok(totals);
        }
        // One read: a batch of today's sales asks for three instants (day, month, tier window),
        // which the database sums; an import spanning months asks for many, which the store
        // sums from one read of the rows.
        for (member, sums) in tx.purchase_totals_since(brand, members, &instants).await? {
            totals
                .stored
                .insert(member, instants.iter().map(|(at, _)| *at).zip(sums).collect());
        }
        Ok(totals)
    }

    fn since(&self, member: &MemberId, since: OffsetDateTime) -> PurchaseTotals {
        let mut t = self
            .stored
            .get(member)
            .and_then(|known| known.iter().find(|(at, _)| *at == since))
            .map(|(_, t)| *t)
            .unwrap_or_default();
        for (at, points, paid) in self.batch.get(member).into_iter().flatten() {
            if *at >= since {
                t.points += points;
                t.spend += paid;
                t.visits += 1;
            }
        }
        t
    }

    /// Periods in a row with a purchase, ending with the current one (which the sale being
    /// recorded fills), given the periods' starts newest first.
    fn streak(&self, member: &MemberId, starts: &[OffsetDateTime]) -> u8 {
        let mut streak = 1;
        for pair in starts.windows(2) {
            let (newer, older) = (pair[0], pair[1]);
            let in_period = self.since(member, older).visits - self.since(member, newer).visits;
            if in_period <= 0 {
                break;
            }
            streak += 1;
        }
        streak
    }

    fn add(&mut self, member: &MemberId, at: OffsetDateTime, points: i64, paid: i64) {
        self.batch
            .entry(member.clone())
            .or_default()
            .push((at, points, paid));
    }
}

/// When a sale happened and the period starts its caps and streak bonus look at.
/// What [`Core::record_batch`] reads before its first sale.
struct BatchReads {
    /// Sales already recorded under the batch's order IDs.
    existing: HashMap<String, PurchaseRecord>,
    members: HashMap<MemberId, MemberRecord>,
    /// Each store named, with its code (`None`: not a store of this brand).
    stores: HashMap<StoreId, Option<String>>,
    /// The locked accounts of the members who can earn, taken out as their first sale posts.
    accounts: HashMap<MemberId, AccountRecord>,
    /// Where the tier window starts.
    window: OffsetDateTime,
    /// Per sale, in the batch's order.
    times: Vec<SaleTimes>,
    totals: Totals,
    terms: Vec<MembershipRecord>,
}

/// A sale whose order ID was recorded before: the earlier outcome when it is the same sale of
/// the same member, refused when the ID is reused for another.
fn repeated_sale(earlier: &PurchaseRecord, p: &Prepared) -> Result<PurchaseOutcome> {
    if earlier.member_id != p.member_id {
        return Err(CoreError::conflict(
            ErrorCode::OrderIdReused,
            format!(
                "order {} was recorded for another member; use a new order_id",
                p.input.order_id
            ),
        ));
    }
    same_sale(earlier, &p.input, &p.lines).and_then(|()| replay(earlier))
}

struct SaleTimes {
    at: OffsetDateTime,
    local_date: Date,
    cap_periods: Option<(OffsetDateTime, OffsetDateTime)>,
    /// Newest first; empty without a streak bonus.
    streak_starts: Vec<OffsetDateTime>,
}

impl SaleTimes {
    fn of(ctx: &LoyaltyContext, at: OffsetDateTime) -> Self {
        let programme = &ctx.programme;
        let caps =
            programme.caps.per_member_per_day.is_some() || programme.caps.per_member_per_month.is_some();
        let date = ctx.calendar.date_of(at);
        SaleTimes {
            at,
            local_date: date,
            cap_periods: caps.then(|| cap_periods(&ctx.calendar, at)),
            streak_starts: programme
                .multipliers
                .streak
                .as_ref()
                .map(|s| ctx.calendar.period_starts(date, s.period, s.periods))
                .unwrap_or_default(),
        }
    }

    /// The instants whose purchase totals the sale's caps (points) and streak (visits) need.
    fn instants(&self) -> impl Iterator<Item = (OffsetDateTime, Sums)> + '_ {
        self.cap_periods
            .iter()
            .flat_map(|&(d, m)| [(d, Sums::POINTS), (m, Sums::POINTS)])
            .chain(self.streak_starts.iter().map(|&at| (at, Sums::VISITS)))
    }
}

/// A sale as the earning rules see it.
pub(crate) struct SaleFacts<'a> {
    pub lines: &'a [PurchaseLine],
    pub paid_amount: i64,
    pub store_code: Option<&'a str>,
    pub channel: Channel,
}

/// What a sale earns a member, given their purchases so far: the one place a sale's facts
/// (caps, streak, tier, birthday) are gathered for the rules, for recording and for quotes.
fn sale_earning(
    ctx: &LoyaltyContext,
    totals: &Totals,
    member: (&MemberId, Option<u8>),
    account: &AccountRecord,
    times: &SaleTimes,
    sale: &SaleFacts<'_>,
    plan: Option<&Plan>,
) -> Earning {
    let (member_id, birth_month) = member;
    let so_far = match times.cap_periods {
        Some((day, month)) => EarnedSoFar {
            today: totals.since(member_id, day).points,
            this_month: totals.since(member_id, month).points,
        },
        None => EarnedSoFar::default(),
    };
    let earn_lines: Vec<EarnLine> = sale.lines.iter().map(PurchaseLine::earn_line).collect();
    evaluate(
        &ctx.programme,
        &PurchaseFacts {
            lines: &earn_lines,
            paid_amount: sale.paid_amount,
            store_code: sale.store_code,
            channel: sale.channel,
            at: times.at,
            local_date: times.local_date,
            birth_month,
            tier: ctx.programme.tiers.levels.get(ctx.level_of(account)),
            streak: totals.streak(member_id, &times.streak_starts),
            plan,
        },
        so_far,
    )
}

impl Core {
    /// What a sale now would earn the member (ID and birth month), computed as recording it
    /// would (caps, streak, tier, birthday), without writing anything: the till's quote.
    pub(crate) async fn estimate_earning(
        &self,
        tx: &mut dyn Tx,
        ctx: &LoyaltyContext,
        member: (&MemberId, Option<u8>),
        account: &AccountRecord,
        sale: &SaleFacts<'_>,
    ) -> Result<Earning> {
        let now = self.now();
        let times = SaleTimes::of(ctx, now);
        let totals = Totals::read(
            tx,
            &account.brand_id,
            std::slice::from_ref(member.0),
            times.instants().collect(),
        )
        .await?;
        let terms = self
            .plan_terms(tx, ctx, &account.brand_id, std::slice::from_ref(member.0))
            .await?;
        let plan = active_plan(&ctx.programme, &terms, member.0, now);
        Ok(sale_earning(ctx, &totals, member, account, &times, sale, plan))
    }
}

/// The start of the local day and month of a sale, for the caps.
fn cap_periods(calendar: &BrandCalendar, at: OffsetDateTime) -> (OffsetDateTime, OffsetDateTime) {
    let date = calendar.date_of(at);
    (
        calendar.start_of(date),
        calendar.start_of(BrandCalendar::month_start(date)),
    )
}

impl Core {
    /// Records a purchase: earns points by the programme, in one transaction with the ledger
    /// entry, the balance and the tier. Sending the same `order_id` again changes nothing.
    /// Sales arriving together share a transaction (group commit).
    pub async fn record_purchase(&self, actor: &Actor, input: PurchaseInput) -> Result<PurchaseOutcome> {
        actor.require(Permission::PurchasesRecord)?;
        match self.prepare_purchase(actor, input, SaleSource::Live).await? {
            Preparation::Replay(outcome) => Ok(*outcome),
            Preparation::Ready(p) => self
                .group_commit(&actor.brand_id, vec![*p])
                .await?
                .pop()
                .unwrap_or_else(|| Err(CoreError::Corrupt("a queued sale was not answered".into()))),
        }
    }

    /// Records up to [`MAX_BATCH`] purchases, in one transaction or (with other batches and
    /// sales waiting at the same moment) in a larger one. Each item gets its own outcome or
    /// error; a database failure fails the whole call (retry it: it is idempotent).
    pub async fn record_purchases(
        &self,
        actor: &Actor,
        inputs: Vec<PurchaseInput>,
    ) -> Result<Vec<Result<PurchaseOutcome>>> {
        self.record_purchases_from(actor, inputs, SaleSource::Live).await
    }

    /// [`Core::record_purchases`] for sales from `source`: a purchase import records history.
    pub(crate) async fn record_purchases_from(
        &self,
        actor: &Actor,
        inputs: Vec<PurchaseInput>,
        source: SaleSource,
    ) -> Result<Vec<Result<PurchaseOutcome>>> {
        actor.require(Permission::PurchasesRecord)?;
        if inputs.is_empty() || inputs.len() > MAX_BATCH {
            return Err(ValidationError::field(
                "purchases",
                format!("must hold between 1 and {MAX_BATCH} purchases"),
            )
            .into());
        }
        let mut slots: Vec<Option<Result<PurchaseOutcome>>> = Vec::with_capacity(inputs.len());
        let mut ready = Vec::new();
        let mut positions = Vec::new();
        for (i, input) in inputs.into_iter().enumerate() {
            match self.prepare_purchase(actor, input, source).await {
                Ok(Preparation::Ready(p)) => {
                    ready.push(*p);
                    positions.push(i);
                    slots.push(None);
                }
                Ok(Preparation::Replay(outcome)) => slots.push(Some(Ok(*outcome))),
                Err(e) => slots.push(Some(Err(e))),
            }
        }
        if !ready.is_empty() {
            // Through the queue: batches in flight together share one commit.
            let outcomes = self.group_commit(&actor.brand_id, ready).await?;
            for (i, outcome) in positions.into_iter().zip(outcomes) {
                if let Err(CoreError::Storage(e)) = outcome {
                    return Err(CoreError::Storage(e));
                }
                slots[i] = Some(outcome);
            }
        }
        Ok(slots
            .into_iter()
            .map(|s| s.unwrap_or_else(|| Err(CoreError::Corrupt("batch slot left empty".into()))))
            .collect())
    }

    /// Queues sales and waits for their outcomes. Whoever gets a leader's permit leads: takes
    /// what is waiting, writes it in one transaction per brand and answers everyone. A leader
    /// that is cancelled mid-way drops its replies; their owners queue again (a sale is
    /// idempotent on its order ID, so nothing happens twice).
    async fn group_commit(
        &self,
        brand: &BrandId,
        items: Vec<Prepared>,
    ) -> Result<Vec<Result<PurchaseOutcome>>> {
        let queue = &self.purchase_queue;
        let bulk = items.len() > 1;
        let mut waiting: Vec<_> = items
            .into_iter()
            .map(|item| {
                let reply = queue.push(brand, item.clone(), bulk);
                (item, reply)
            })
            .collect();
        let mut outcomes: Vec<Option<Result<PurchaseOutcome>>> = Vec::with_capacity(waiting.len());
        outcomes.resize_with(waiting.len(), || None);
        let mut next = 0;
        while next < waiting.len() {
            // Replies already in: collected without waiting; a dropped one queues again.
            let (item, reply) = &mut waiting[next];
            match reply.try_recv() {
                Ok(result) => {
                    outcomes[next] = Some(result);
                    next += 1;
                    continue;
                }
                Err(oneshot::error::TryRecvError::Closed) => {
                    *reply = queue.push(brand, item.clone(), bulk);
                    continue;
                }
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            tokio::select! {
                biased;
                result = &mut *reply => {
                    if let Ok(result) = result {
                        outcomes[next] = Some(result);
                        next += 1;
                    }
                    // Err: the leader dropped it; `try_recv` sees it closed and queues it again.
                }
                permit = queue.lead() => {
                    let _permit = permit.map_err(|_| CoreError::Corrupt("purchase queue closed".into()))?;
                    let group = queue.take();
                    if group.is_empty() {
                        // Ours are being written by another leader: wait for the next reply.
                        drop(_permit);
                        if let Ok(result) = (&mut *reply).await {
                            outcomes[next] = Some(result);
                            next += 1;
                        }
                    } else {
                        self.write_group(group).await;
                    }
                }
            }
        }
        Ok(outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Err(CoreError::Corrupt("a queued sale was not answered".into()))))
            .collect())
    }

    /// Writes a group of queued sales, one transaction per brand. When a transaction fails as
    /// a whole, each sale is tried alone, so that one bad sale cannot fail its neighbours.
    async fn write_group(&self, group: Vec<Waiting>) {
        let mut by_brand: Vec<(BrandId, Vec<Waiting>)> = Vec::new();
        for w in group {
            match by_brand.iter_mut().find(|(b, _)| *b == w.brand) {
                Some((_, list)) => list.push(w),
                None => by_brand.push((w.brand.clone(), vec![w])),
            }
        }
        for (brand, list) in by_brand {
            let (items, replies): (Vec<Prepared>, Vec<_>) =
                list.into_iter().map(|w| (w.item, w.reply)).unzip();
            match self.commit_batch(&brand, &items).await {
                Ok(outcomes) => {
                    for (reply, outcome) in replies.into_iter().zip(outcomes) {
                        let _ = reply.send(outcome);
                    }
                }
                Err(e) if items.len() == 1 => {
                    if let Some(reply) = replies.into_iter().next() {
                        let _ = reply.send(Err(e));
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, sales = items.len(), "a group of sales failed as a whole; writing them one by one");
                    for (item, reply) in items.into_iter().zip(replies) {
                        let outcome = self
                            .commit_batch(&brand, std::slice::from_ref(&item))
                            .await
                            .and_then(|mut o| {
                                o.pop()
                                    .unwrap_or_else(|| Err(CoreError::Corrupt("no outcome".into())))
                            });
                        let _ = reply.send(outcome);
                    }
                }
            }
        }
    }

    /// One transaction for a brand's sales; retried when another transaction recorded one of
    /// its orders at the same moment or the database gave it up to break a deadlock.
    async fn commit_batch(
        &self,
        brand: &BrandId,
        items: &[Prepared],
    ) -> Result<Vec<Result<PurchaseOutcome>>> {
        let mut attempt = 0;
        loop {
            let mut tx = self.storage.write().await?;
            let ctx = self.loyalty_context(&mut *tx, brand).await?;
            match self.record_batch(&mut *tx, &ctx, brand, items).await {
                Ok(outcomes) => {
                    tx.commit().await?;
                    return Ok(outcomes);
                }
                Err(CoreError::Conflict {
                    code: ErrorCode::OrderIdRace,
                    ..
                })
                | Err(CoreError::Storage(StorageFailure::Stale))
                    if attempt < RACE_RETRIES =>
                {
                    attempt += 1
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Records a brand's sales in the caller's transaction. Each sale gets an outcome; a sale
    /// refused (unknown member, store, an order ID reused for another sale) writes nothing.
    /// An error of the whole (the database, a broken invariant) must roll the transaction back.
    ///
    /// In phases: everything the batch needs is read at once ([`Core::read_batch`]); then each
    /// sale in turn is checked against earlier ones and its parties, earns, is credited and may
    /// lift the member's tier, its rows gathered in [`Writes`]; then they are written together.
    pub(crate) async fn record_batch(
        &self,
        tx: &mut dyn Tx,
        ctx: &LoyaltyContext,
        brand: &BrandId,
        items: &[Prepared],
    ) -> Result<Vec<Result<PurchaseOutcome>>> {
        let now = self.now();
        let mut reads = self.read_batch(tx, ctx, brand, items, now).await?;
        let mut postings: HashMap<MemberId, Posting<'_>> = HashMap::with_capacity(reads.accounts.len());
        // Room for a purchase, a lot, an entry and two events per sale, made once.
        let mut writes = Writes::with_capacity(items.len(), reads.accounts.len());
        // A long batch on SQLite: its rows go to the writer's thread while the next sales'
        // rules run on this one.
        let ahead = tx.writes_ahead() && items.len() > AHEAD_EVERY;
        let mut recorded: HashMap<String, usize> = HashMap::with_capacity(items.len());
        let mut outcomes = Vec::with_capacity(items.len());
        for (p, times) in items.iter().zip(&reads.times) {
            let order_id = &p.input.order_id;
            let earlier = reads
                .existing
                .get(order_id)
                .or_else(|| recorded.get(order_id).map(|&i| &writes.purchases[i]));
            if let Some(earlier) = earlier {
                outcomes.push(repeated_sale(earlier, p));
                continue;
            }
            let (member, store_code) = match self
                .sale_parties(tx, brand, &reads.members, &reads.stores, p)
                .await
            {
                Ok(parties) => parties,
                Err(refused) => {
                    outcomes.push(Err(refused));
                    continue;
                }
            };
            let posting = match postings.entry(member.id.clone()) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    let account = reads.accounts.remove(&member.id).ok_or_else(|| {
                        CoreError::Corrupt("an active member's account was not locked".into())
                    })?;
                    e.insert(Posting::with_account(self, account, &p.actor))
                }
            };
            posting.actor.clone_from(&p.actor);
            let earning = sale_earning(
                ctx,
                &reads.totals,
                (&member.id, member.birth_month),
                &posting.account,
                times,
                &SaleFacts {
                    lines: &p.lines,
                    paid_amount: p.input.paid_amount,
                    store_code: store_code.as_deref(),
                    channel: p.input.channel,
                },
                active_plan(&ctx.programme, &reads.terms, &member.id, times.at),
            );
            let (record, lines) = self.purchase_record(ctx, brand, p, member, &earning, times.at, now)?;
            let debt_repaid = self.credit_sale(ctx, brand, posting, &record, &earning, &mut writes)?;
            reads
                .totals
                .add(&member.id, times.at, earning.points, p.input.paid_amount);
            let tier_change = self.tier_after_sale(ctx, posting, &reads, order_id, &mut writes);
            writes.events.push(self.event(
                brand,
                "purchase.recorded",
                member.id.as_str(),
                json!({ "member_id": member.id, "order_id": order_id, "paid_amount": record.paid_amount,
                        "store_id": record.store_id, "channel": record.channel }),
            ));
            outcomes.push(Ok(PurchaseOutcome {
                purchase: view_of(&record, lines, earning)?,
                created: true,
                member_enrolled: p.enrolled,
                debt_repaid,
                tier_change: tier_change.as_ref().map(change_view),
            }));
            recorded.insert(order_id.clone(), writes.purchases.len());
            writes.purchases.push(record);
            if ahead && writes.purchases.len().is_multiple_of(AHEAD_EVERY) {
                for posting in postings.values_mut() {
                    posting.hand_over_new_rows(&mut writes);
                }
                writes.send_ahead(tx).await?;
            }
        }
        for (_, posting) in postings {
            posting.stage(&mut writes);
        }
        writes.flush(tx).await?;
        Ok(outcomes)
    }

    /// The batch's reads, a few statements for all its sales: earlier sales under its order
    /// IDs, its members and stores, the accounts of the members who can earn (locked), the
    /// totals its caps and tier window need, and the members' plan terms.
    async fn read_batch(
        &self,
        tx: &mut dyn Tx,
        ctx: &LoyaltyContext,
        brand: &BrandId,
        items: &[Prepared],
        now: OffsetDateTime,
    ) -> Result<BatchReads> {
        let order_ids: Vec<String> = unique(items.iter().map(|p| p.input.order_id.clone()));
        let existing: HashMap<String, PurchaseRecord> = tx
            .get_purchases(brand, &order_ids)
            .await?
            .into_iter()
            .map(|p| (p.order_id.clone(), p))
            .collect();
        let member_ids: Vec<MemberId> = unique(items.iter().map(|p| p.member_id.clone()));
        let members: HashMap<MemberId, MemberRecord> = tx
            .get_members(brand, &member_ids)
            .await?
            .into_iter()
            .map(|m| (m.id.clone(), m))
            .collect();
        let mut stores: HashMap<StoreId, Option<String>> = HashMap::new();
        for id in unique(items.iter().filter_map(|p| p.input.store_id.clone())) {
            let code = tx.get_store(brand, &id).await?.map(|s| s.code);
            stores.insert(id, code);
        }
        // Accounts of the members who can earn, locked in member order, created on first use.
        let earners: Vec<MemberId> = member_ids
            .iter()
            .filter(|id| members.get(*id).is_some_and(|m| m.status == MemberStatus::Active))
            .cloned()
            .collect();
        let accounts = self.lock_accounts(tx, brand, &earners).await?;
        // The periods the caps and the tier window cover, summed per member in one query each.
        let window = ctx.window_start(now);
        // Each sale's time, (with caps) the start of its local day and month and (with a streak
        // bonus) the starts of the streak's periods, worked out once.
        let times: Vec<SaleTimes> = items
            .iter()
            .map(|p| SaleTimes::of(ctx, sale_time(&p.input, now)))
            .collect();
        let mut instants = vec![(window, ctx.tier_sums())];
        for t in &times {
            instants.extend(t.instants());
        }
        let totals = Totals::read(tx, brand, &earners, instants).await?;
        let terms = self.plan_terms(tx, ctx, brand, &earners).await?;
        Ok(BatchReads {
            existing,
            members,
            stores,
            accounts,
            window,
            times,
            totals,
            terms,
        })
    }

    /// The sale's member and store code, or why the sale is refused: a member unknown, merged
    /// (naming the survivor) or erased; a store not of this brand.
    async fn sale_parties<'m>(
        &self,
        tx: &mut dyn Tx,
        brand: &BrandId,
        members: &'m HashMap<MemberId, MemberRecord>,
        stores: &HashMap<StoreId, Option<String>>,
        p: &Prepared,
    ) -> Result<(&'m MemberRecord, Option<String>)> {
        let member = match members.get(&p.member_id) {
            None => return Err(CoreError::NotFound("member")),
            Some(m) if m.status == MemberStatus::Merged => {
                // Names the survivor (following merges), as every other use case does.
                return self
                    .active_member(tx, brand, &m.id, false)
                    .await
                    .and_then(|_| Err(CoreError::Corrupt("a merged member read as active".into())));
            }
            Some(m) if m.status == MemberStatus::Erased => {
                return Err(CoreError::conflict(
                    ErrorCode::MemberErased,
                    "the member was erased and cannot earn points",
                ))
            }
            Some(m) => m,
        };
        let store_code = match &p.input.store_id {
            None => None,
            Some(id) => Some(
                stores
                    .get(id)
                    .cloned()
                    .flatten()
                    .ok_or_else(|| ValidationError::field("store_id", "no such store in this brand"))?,
            ),
        };
        Ok((member, store_code))
    }

    /// The purchase row of a new sale, and its lines with the points each earned.
    #[allow(clippy::too_many_arguments)]
    fn purchase_record(
        &self,
        ctx: &LoyaltyContext,
        brand: &BrandId,
        p: &Prepared,
        member: &MemberRecord,
        earning: &Earning,
        occurred_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<(PurchaseRecord, Vec<PurchaseLine>)> {
        let mut lines = p.lines.clone();
        for (line, points) in lines.iter_mut().zip(&earning.line_points) {
            line.points = *points;
        }
        let record = PurchaseRecord {
            brand_id: brand.clone(),
            order_id: p.input.order_id.clone(),
            id: self.new_id(PurchaseId::generate).to_string(),
            member_id: member.id.clone(),
            store_id: p.input.store_id.clone(),
            channel: enum_str(p.input.channel),
            occurred_at,
            paid_amount: p.input.paid_amount,
            eligible_amount: earning.eligible_amount,
            points: earning.points,
            points_reversed: 0,
            refunded_amount: 0,
            status: PurchaseStatus::Completed,
            // Serialised straight from the types (not through a `serde_json::Value` tree).
            lines: to_json(&lines)?,
            earning: to_json(earning)?,
            programme_version: ctx.version,
            created_at: now,
        };
        Ok((record, lines))
    }

    /// Credits what a sale earned (pending until it matures; debt repaid first) and returns
    /// the debt it repaid.
    fn credit_sale(
        &self,
        ctx: &LoyaltyContext,
        brand: &BrandId,
        posting: &mut Posting<'_>,
        record: &PurchaseRecord,
        earning: &Earning,
        writes: &mut Writes,
    ) -> Result<i64> {
        if earning.points <= 0 {
            return Ok(0);
        }
        let occurred_at = record.occurred_at;
        let matures_at = occurred_at + Duration::days(i64::from(ctx.programme.pending_days));
        let (repaid, pending) = posting.credit(
            earning.points,
            NewLot {
                source: EntryKind::Earn,
                reference: Some(&record.order_id),
                earned_at: occurred_at,
                matures_at: Some(matures_at),
                expires_at: ctx.expires_at(occurred_at),
            },
            Some(ctx.version),
            json!({
                "purchase_id": record.id,
                "eligible_amount": earning.eligible_amount,
                "items": earning.items,
            }),
        )?;
        writes.events.push(self.event(
            brand,
            "points.earned",
            record.member_id.as_str(),
            json!({ "member_id": record.member_id, "order_id": record.order_id, "points": earning.points,
                    "pending": pending, "debt_repaid": repaid }),
        ));
        Ok(repaid)
    }

    /// The tier the member qualifies for after this sale (window totals including it), when
    /// higher than theirs; the change and its event go into `writes`.
    fn tier_after_sale(
        &self,
        ctx: &LoyaltyContext,
        posting: &mut Posting<'_>,
        reads: &BatchReads,
        order_id: &str,
        writes: &mut Writes,
    ) -> Option<TierChangeRecord> {
        let window_totals = reads.totals.since(&posting.account.member_id, reads.window);
        let metrics = TierMetrics {
            points: window_totals.points,
            spend: window_totals.spend,
            visits: window_totals.visits,
        };
        let (change, event) = self.upgrade_to_qualified(
            ctx,
            &mut posting.account,
            &metrics,
            &format!("purchase {order_id}"),
        )?;
        writes.events.push(event);
        writes.tier_changes.push(change.clone());
        Some(change)
    }

    /// Locks the members' accounts (creating those that do not exist yet), by member.
    async fn lock_accounts(
        &self,
        tx: &mut dyn Tx,
        brand: &BrandId,
        members: &[MemberId],
    ) -> Result<HashMap<MemberId, AccountRecord>> {
        let mut accounts: HashMap<MemberId, AccountRecord> = HashMap::new();
        if members.is_empty() {
            return Ok(accounts);
        }
        // In member order throughout, as `Tx::lock_accounts` locks: two batches creating the
        // same new accounts then wait for each other in one order and cannot deadlock.
        let mut members = members.to_vec();
        members.sort();
        let members = &members[..];
        for a in tx.lock_accounts(brand, members).await? {
            accounts.insert(a.member_id.clone(), a);
        }
        let missing: Vec<MemberId> = members
            .iter()
            .filter(|m| !accounts.contains_key(*m))
            .cloned()
            .collect();
        if !missing.is_empty() {
            let now = self.now();
            let new: Vec<AccountRecord> = missing.iter().map(|m| new_account(brand, m, now)).collect();
            tx.ensure_accounts(&new).await?;
            // Read back under the lock: another transaction may have created one meanwhile.
            for a in tx.lock_accounts(brand, &missing).await? {
                accounts.insert(a.member_id.clone(), a);
            }
        }
        Ok(accounts)
    }
}

fn to_json(value: &impl serde::Serialize) -> Result<String> {
    serde_json::to_string(value).map_err(|e| CoreError::Corrupt(format!("cannot serialise a purchase: {e}")))
}

/// When a sale happened: as given (to the millisecond the database keeps), else now.
fn sale_time(input: &PurchaseInput, now: OffsetDateTime) -> OffsetDateTime {
    input.occurred_at.map(crate::clock::truncate_ms).unwrap_or(now)
}

/// The distinct values, in first-seen order.
fn unique<T: Clone + Eq + std::hash::Hash>(values: impl Iterator<Item = T>) -> Vec<T> {
    let mut seen = HashSet::new();
    values.filter(|v| seen.insert(v.clone())).collect()
}

/// Used by [`Core::new`]: how many group-commit leaders may write at once. On PostgreSQL a
/// group is a dozen round trips, during which the database is mostly waiting: three leaders
/// gave 7% more single purchases per second than two (64 connections, 2026-12-03), four no more.
/// Only the first leader starts whenever sales wait; see [`QUEUE_FOR_EXTRA_LEADER`].
pub(crate) fn writers_for(backend: &str) -> usize {
    if backend == "sqlite" {
        1
    } else {
        3
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sale waiting behind a long group (the first leader busy with a batch call) is taken
    /// by an extra leader once its patience runs out, rather than waiting for the batch.
    #[tokio::test]
    async fn an_extra_leader_takes_over_when_the_first_is_busy() {
        let queue = PurchaseQueue::new(3);
        let _busy = queue.leader.acquire().await.unwrap();
        let started = std::time::Instant::now();
        let permit = tokio::time::timeout(std::time::Duration::from_secs(5), queue.lead())
            .await
            .expect("an extra leader within the patience")
            .unwrap();
        assert!(started.elapsed() >= LEADER_PATIENCE);
        assert_eq!(queue.extra_leaders.available_permits(), 1);
        drop(permit);
    }

    /// With one writer (SQLite) there is no extra leader: the sale waits for the first.
    #[tokio::test]
    async fn one_writer_means_one_leader() {
        let queue = PurchaseQueue::new(1);
        let busy = queue.leader.acquire().await.unwrap();
        let waited = tokio::time::timeout(LEADER_PATIENCE * 5, queue.lead()).await;
        assert!(
            waited.is_err(),
            "a second leader started beside SQLite's one writer"
        );
        drop(busy);
        let permit = queue.lead().await.unwrap();
        assert_eq!(queue.leader.available_permits(), 0);
        drop(permit);
    }

    fn sale(order_id: &str) -> Prepared {
        Prepared {
            input: PurchaseInput {
                order_id: order_id.into(),
                member_id: None,
                phone: None,
                member_code: None,
                enrol_if_unknown: None,
                store_id: None,
                channel: Channel::Pos,
                occurred_at: None,
                lines: Vec::new(),
                paid_amount: 0,
            },
            lines: Vec::new(),
            member_id: MemberId::generate(0, 1),
            enrolled: false,
            actor: "test".into(),
        }
    }

    /// Right after a group with batch sales, the single sales waiting go alone, ahead of a
    /// batch call that queued before them; the group after that takes everything again.
    #[test]
    fn after_a_batch_group_the_single_sales_go_first() {
        let queue = PurchaseQueue::new(1);
        let brand = BrandId::generate(0, 1);
        let mut replies = Vec::new();
        let mut push = |order: &str, bulk: bool| replies.push(queue.push(&brand, sale(order), bulk));
        let orders = |group: Vec<Waiting>| {
            group
                .into_iter()
                .map(|w| w.item.input.order_id)
                .collect::<Vec<_>>()
        };
        push("b1", true);
        push("b2", true);
        push("s1", false);
        assert_eq!(orders(queue.take()), ["b1", "b2", "s1"]);
        push("b3", true);
        push("b4", true);
        push("s2", false);
        assert_eq!(
            orders(queue.take()),
            ["s2"],
            "the till's sale before the next batch"
        );
        push("s3", false);
        assert_eq!(
            orders(queue.take()),
            ["b3", "b4", "s3"],
            "then the batch, not more singles"
        );
        push("s4", false);
        assert_eq!(orders(queue.take()), ["s4"]);
        assert!(queue.take().is_empty());
    }

    /// A leader who is free is taken at once, without waiting out the patience.
    #[tokio::test]
    async fn a_free_first_leader_starts_at_once() {
        let queue = PurchaseQueue::new(3);
        let permit = tokio::time::timeout(LEADER_PATIENCE / 2, queue.lead())
            .await
            .expect("the free first leader at once")
            .unwrap();
        assert_eq!(queue.leader.available_permits(), 0);
        assert_eq!(queue.extra_leaders.available_permits(), 2);
        drop(permit);
    }
}
