//! Row mappings: each table's column list, how a row decodes into its record and how a record
//! encodes into values, shared by the queries of every area.

use huiyuan_domain::ids::{BrandId, MemberId};
use huiyuan_domain::loyalty::ledger::LotStatus;
use huiyuan_domain::loyalty::purchase::PurchaseStatus;
use huiyuan_domain::member::MemberStatus;

use super::table::table;
use super::{push_unnest_insert, v, Query, Row, Value};
use crate::records::*;
use crate::{Result, StoreError};

table! { BrandRecord in "brands" {
    id: id, slug: text, name: text, currency: text, timezone: text, code_key_ciphertext: bytes,
    created_at: time,
}}

table! { StoreRecord in "stores" {
    id: id, brand_id: id, code: text, name: text, city: opt_text, region: opt_text, active: bool,
    created_at: time,
}}

table! { OperatorRecord in "operators" {
    id: id, brand_id: id, username: text, display_name: text, role: role, password_hash: text,
    disabled: bool, created_at: time,
}}

table! { SessionRecord in "sessions" {
    token_hash: bytes, operator_id: id, brand_id: id, created_at: time, expires_at: time,
}}

table! { ApiKeyRecord in "api_keys" {
    id: id, brand_id: id, name: text, role: role, prefix: text, secret_hash: bytes,
    created_by: text, created_at: time, revoked_at: opt_time,
}}

pub(super) const MEMBER_COLS: &str =
    "m.id, m.brand_id, m.status, m.merged_into, m.pii_ciphertext, m.birth_month, m.gender, \
     m.city, m.household_size, m.channel, m.store_id, m.consents, m.attributes, m.enrolled_at, m.updated_at, \
     m.erased_at, m.version";
pub(super) fn member_row(r: &Row) -> Result<MemberRecord> {
    let status = r.text("status")?;
    Ok(MemberRecord {
        id: r.parsed("id")?,
        brand_id: r.parsed("brand_id")?,
        status: MemberStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("status {status:?}")))?,
        merged_into: r.opt_parsed("merged_into")?,
        pii_ciphertext: r.opt_bytes("pii_ciphertext")?,
        birth_month: r.opt_u8("birth_month")?,
        gender: r.opt_text("gender")?,
        city: r.opt_text("city")?,
        household_size: r.opt_u8("household_size")?,
        channel: r.text("channel")?,
        store_id: r.opt_parsed("store_id")?,
        consents: r.text("consents")?,
        attributes: r.text("attributes")?,
        enrolled_at: r.time("enrolled_at")?,
        updated_at: r.time("updated_at")?,
        erased_at: r.opt_time("erased_at")?,
        version: r.i64("version")?,
    })
}

pub(super) fn identity_row(r: &Row) -> Result<IdentityRecord> {
    Ok(IdentityRecord {
        brand_id: r.parsed("brand_id")?,
        kind: r.text("kind")?,
        hash: r.bytes("hash")?,
        member_id: r.parsed("member_id")?,
        value_ciphertext: r.bytes("value_ciphertext")?,
    })
}

pub(super) const CODE_COLS: &str = "brand_id, nonce, code_hash, member_id, expires_at, used_at, used_by";
pub(super) fn code_row(r: &Row) -> Result<MemberCodeRecord> {
    Ok(MemberCodeRecord {
        brand_id: r.parsed("brand_id")?,
        nonce: r.text("nonce")?,
        code_hash: r.bytes("code_hash")?,
        member_id: r.parsed("member_id")?,
        expires_at: r.time("expires_at")?,
        used_at: r.opt_time("used_at")?,
        used_by: r.opt_text("used_by")?,
    })
}

pub(super) const AUDIT_COLS: &str =
    "id, brand_id, actor_kind, actor_id, action, target_kind, target_id, diff, request_id, created_at";
pub(super) fn audit_row(r: &Row) -> Result<AuditRecord> {
    Ok(AuditRecord {
        id: r.parsed("id")?,
        brand_id: r.parsed("brand_id")?,
        actor_kind: r.text("actor_kind")?,
        actor_id: r.text("actor_id")?,
        action: r.text("action")?,
        target_kind: r.text("target_kind")?,
        target_id: r.text("target_id")?,
        diff: r.text("diff")?,
        request_id: r.opt_text("request_id")?,
        created_at: r.time("created_at")?,
    })
}

pub(super) const IDEMPOTENCY_COLS: &str = "brand_id, scope, idem_key, request_hash, status, body, created_at";
pub(super) fn idempotency_row(r: &Row) -> Result<IdempotencyRecord> {
    Ok(IdempotencyRecord {
        brand_id: r.parsed("brand_id")?,
        scope: r.text("scope")?,
        key: r.text("idem_key")?,
        request_hash: r.bytes("request_hash")?,
        status: r
            .opt_i64("status")?
            .map(|s| u16::try_from(s).map_err(|_| StoreError::Corrupt(format!("status {s}"))))
            .transpose()?,
        body: r.opt_bytes("body")?,
        created_at: r.time("created_at")?,
    })
}

pub(super) const PROGRAMME_COLS: &str = "brand_id, version, document, created_by, created_at";
pub(super) fn programme_row(r: &Row) -> Result<ProgrammeRecord> {
    Ok(ProgrammeRecord {
        brand_id: r.parsed("brand_id")?,
        version: r.i64("version")?,
        document: r.text("document")?,
        created_by: r.text("created_by")?,
        created_at: r.time("created_at")?,
    })
}

pub(super) const ACCOUNT_COLS: &str =
    "brand_id, member_id, available, pending, debt, last_seq, last_hash, tier_code, \
     tier_since, tier_review_at, tier_grace_until, updated_at";
pub(super) fn account_row(r: &Row) -> Result<AccountRecord> {
    Ok(AccountRecord {
        brand_id: r.parsed("brand_id")?,
        member_id: r.parsed("member_id")?,
        available: r.i64("available")?,
        pending: r.i64("pending")?,
        debt: r.i64("debt")?,
        last_seq: r.i64("last_seq")?,
        last_hash: r.bytes("last_hash")?,
        tier_code: r.opt_text("tier_code")?,
        tier_since: r.opt_time("tier_since")?,
        tier_review_at: r.opt_time("tier_review_at")?,
        tier_grace_until: r.opt_time("tier_grace_until")?,
        updated_at: r.time("updated_at")?,
    })
}
pub(super) fn account_values(a: &AccountRecord) -> Vec<Value> {
    vec![
        v(a.brand_id.as_str()),
        v(a.member_id.as_str()),
        v(a.available),
        v(a.pending),
        v(a.debt),
        v(a.last_seq),
        v(&a.last_hash),
        v(a.tier_code.clone()),
        v(a.tier_since),
        v(a.tier_review_at),
        v(a.tier_grace_until),
        v(a.updated_at),
    ]
}

pub(super) fn lot_values(l: &LotRecord) -> Vec<Value> {
    vec![
        v(&l.id),
        v(l.brand_id.as_str()),
        v(l.member_id.as_str()),
        v(l.status.as_str()),
        v(&l.source),
        v(l.reference.clone()),
        v(l.amount),
        v(l.remaining),
        v(l.earned_at),
        v(l.matures_at),
        v(l.expires_at),
        v(l.expiry_notified),
    ]
}

pub(super) fn entry_values(e: &LedgerEntryRecord) -> Vec<Value> {
    vec![
        v(&e.id),
        v(e.brand_id.as_str()),
        v(e.member_id.as_str()),
        v(e.seq),
        v(&e.kind),
        v(e.available_delta),
        v(e.pending_delta),
        v(e.debt_delta),
        v(e.lot_id.clone()),
        v(e.reference.clone()),
        Value::Int(e.programme_version),
        v(&e.detail),
        v(&e.actor),
        v(e.created_at),
        v(&e.prev_hash),
        v(&e.hash),
    ]
}

pub(super) fn purchase_values(p: &PurchaseRecord) -> Vec<Value> {
    vec![
        v(p.brand_id.as_str()),
        v(&p.order_id),
        v(&p.id),
        v(p.member_id.as_str()),
        v(p.store_id.as_ref().map(|s| s.as_str())),
        v(&p.channel),
        v(p.occurred_at),
        v(p.paid_amount),
        v(p.eligible_amount),
        v(p.points),
        v(p.points_reversed),
        v(p.refunded_amount),
        v(p.status.as_str()),
        v(&p.lines),
        v(&p.earning),
        v(p.programme_version),
        v(p.created_at),
    ]
}

pub(super) const LOT_COLS: &str =
    "id, brand_id, member_id, status, source, reference, amount, remaining, earned_at, \
     matures_at, expires_at, expiry_notified";
pub(super) fn lot_row(r: &Row) -> Result<LotRecord> {
    Ok(LotRecord {
        id: r.text("id")?,
        brand_id: r.parsed("brand_id")?,
        member_id: r.parsed("member_id")?,
        status: r.word("status", LotStatus::parse)?,
        source: r.text("source")?,
        reference: r.opt_text("reference")?,
        amount: r.i64("amount")?,
        remaining: r.i64("remaining")?,
        earned_at: r.time("earned_at")?,
        matures_at: r.opt_time("matures_at")?,
        expires_at: r.opt_time("expires_at")?,
        expiry_notified: r.bool("expiry_notified")?,
    })
}

pub(super) const ENTRY_COLS: &str =
    "id, brand_id, member_id, seq, kind, available_delta, pending_delta, debt_delta, lot_id, \
     reference, programme_version, detail, actor, created_at, prev_hash, hash";
pub(super) fn entry_row(r: &Row) -> Result<LedgerEntryRecord> {
    Ok(LedgerEntryRecord {
        id: r.text("id")?,
        brand_id: r.parsed("brand_id")?,
        member_id: r.parsed("member_id")?,
        seq: r.i64("seq")?,
        kind: r.text("kind")?,
        available_delta: r.i64("available_delta")?,
        pending_delta: r.i64("pending_delta")?,
        debt_delta: r.i64("debt_delta")?,
        lot_id: r.opt_text("lot_id")?,
        reference: r.opt_text("reference")?,
        programme_version: r.opt_i64("programme_version")?,
        detail: r.text("detail")?,
        actor: r.text("actor")?,
        created_at: r.time("created_at")?,
        prev_hash: r.bytes("prev_hash")?,
        hash: r.bytes("hash")?,
    })
}

pub(super) const PURCHASE_COLS: &str = "brand_id, order_id, id, member_id, store_id, channel, occurred_at, paid_amount, \
     eligible_amount, points, points_reversed, refunded_amount, status, lines, earning, programme_version, created_at";
pub(super) fn purchase_row(r: &Row) -> Result<PurchaseRecord> {
    Ok(PurchaseRecord {
        brand_id: r.parsed("brand_id")?,
        order_id: r.text("order_id")?,
        id: r.text("id")?,
        member_id: r.parsed("member_id")?,
        store_id: r.opt_parsed("store_id")?,
        channel: r.text("channel")?,
        occurred_at: r.time("occurred_at")?,
        paid_amount: r.i64("paid_amount")?,
        eligible_amount: r.i64("eligible_amount")?,
        points: r.i64("points")?,
        points_reversed: r.i64("points_reversed")?,
        refunded_amount: r.i64("refunded_amount")?,
        status: r.word("status", PurchaseStatus::parse)?,
        lines: r.text("lines")?,
        earning: r.text("earning")?,
        programme_version: r.i64("programme_version")?,
        created_at: r.time("created_at")?,
    })
}

pub(super) const REFUND_COLS: &str =
    "brand_id, refund_id, order_id, member_id, amount, points_reversed, detail, created_at";
pub(super) fn refund_row(r: &Row) -> Result<RefundRecord> {
    Ok(RefundRecord {
        brand_id: r.parsed("brand_id")?,
        refund_id: r.text("refund_id")?,
        order_id: r.text("order_id")?,
        member_id: r.parsed("member_id")?,
        amount: r.i64("amount")?,
        points_reversed: r.i64("points_reversed")?,
        detail: r.text("detail")?,
        created_at: r.time("created_at")?,
    })
}

pub(super) const OPERATION_COLS: &str = "brand_id, kind, reference, member_id, result, created_at";
pub(super) fn operation_row(r: &Row) -> Result<OperationRecord> {
    Ok(OperationRecord {
        brand_id: r.parsed("brand_id")?,
        kind: r.text("kind")?,
        reference: r.text("reference")?,
        member_id: r.parsed("member_id")?,
        result: r.text("result")?,
        created_at: r.time("created_at")?,
    })
}

pub(super) const TIER_CHANGE_COLS: &str = "id, brand_id, member_id, from_tier, to_tier, reason, created_at";
pub(super) fn tier_change_row(r: &Row) -> Result<TierChangeRecord> {
    Ok(TierChangeRecord {
        id: r.text("id")?,
        brand_id: r.parsed("brand_id")?,
        member_id: r.parsed("member_id")?,
        from_tier: r.opt_text("from_tier")?,
        to_tier: r.text("to_tier")?,
        reason: r.text("reason")?,
        created_at: r.time("created_at")?,
    })
}

pub(super) const EVENT_COLS: &str = "id, brand_id, event_type, subject, payload, dedupe_key, created_at";
pub(super) fn event_values(e: &OutboxRecord) -> Vec<Value> {
    vec![
        v(&e.id),
        v(e.brand_id.as_str()),
        v(&e.event_type),
        v(&e.subject),
        v(&e.payload),
        v(e.dedupe_key.clone()),
        v(e.created_at),
    ]
}

/// Skips rows whose key is taken: a purchase whose order ID the brand has, an event whose
/// dedupe key was used, an account that exists.
pub(super) const SKIP_EXISTING: &str = " ON CONFLICT DO NOTHING";
/// An upsert for several rows per statement; the lots exist, so only the update applies.
pub(super) const LOT_UPDATE: &str = " ON CONFLICT (id) DO UPDATE SET status = excluded.status, \
     remaining = excluded.remaining, expiry_notified = excluded.expiry_notified";
/// An upsert rather than UPDATE … FROM (VALUES …): one form both dialects share. The rows
/// exist and are locked by the caller, so it always takes the update branch.
pub(super) const ACCOUNT_SAVE: &str =
    " ON CONFLICT (brand_id, member_id) DO UPDATE SET available = excluded.available, \
     pending = excluded.pending, debt = excluded.debt, last_seq = excluded.last_seq, \
     last_hash = excluded.last_hash, tier_code = excluded.tier_code, tier_since = excluded.tier_since, \
     tier_review_at = excluded.tier_review_at, tier_grace_until = excluded.tier_grace_until, \
     updated_at = excluded.updated_at";

pub(super) fn tier_change_values(c: &TierChangeRecord) -> Vec<Value> {
    vec![
        v(&c.id),
        v(c.brand_id.as_str()),
        v(c.member_id.as_str()),
        v(c.from_tier.clone()),
        v(&c.to_tier),
        v(&c.reason),
        v(c.created_at),
    ]
}

/// One multi-row insert: the table and columns, the rows, what follows them.
pub(super) type InsertParts = (String, Vec<Vec<Value>>, &'static str);

pub(super) fn lot_inserts(lots: &[LotRecord], tail: &'static str) -> InsertParts {
    (
        format!("point_lots ({LOT_COLS})"),
        lots.iter().map(lot_values).collect(),
        tail,
    )
}

pub(super) fn account_inserts(accounts: &[AccountRecord], tail: &'static str) -> InsertParts {
    (
        format!("point_accounts ({ACCOUNT_COLS})"),
        accounts.iter().map(account_values).collect(),
        tail,
    )
}

pub(super) fn event_inserts(events: &[OutboxRecord], tail: &'static str) -> InsertParts {
    (
        format!("outbox_events ({EVENT_COLS})"),
        events.iter().map(event_values).collect(),
        tail,
    )
}

/// A posting's events are new (fresh IDs), so only a dedupe key can collide. Most have none,
/// and a plain insert then spares PostgreSQL the speculative insertion (an extra WAL record and
/// index probe per row) that ON CONFLICT costs even when nothing conflicts.
pub(super) fn new_events_tail(events: &[OutboxRecord]) -> &'static str {
    if events.iter().any(|e| e.dedupe_key.is_some()) {
        SKIP_EXISTING
    } else {
        ""
    }
}

/// The inserts of [`Tx::write_postings`], referenced rows first; purchases first of all.
pub(super) fn posting_inserts(w: &crate::PostingWrites<'_>) -> [InsertParts; 7] {
    [
        (
            format!("purchases ({PURCHASE_COLS})"),
            w.purchases.iter().map(purchase_values).collect(),
            SKIP_EXISTING,
        ),
        lot_inserts(w.new_lots, ""),
        (
            format!("ledger_entries ({ENTRY_COLS})"),
            w.entries.iter().map(entry_values).collect(),
            "",
        ),
        lot_inserts(w.changed_lots, LOT_UPDATE),
        account_inserts(w.accounts, ACCOUNT_SAVE),
        (
            format!("tier_changes ({TIER_CHANGE_COLS})"),
            w.tier_changes.iter().map(tier_change_values).collect(),
            "",
        ),
        event_inserts(w.events, new_events_tail(w.events)),
    ]
}

/// `INSERT INTO {into} VALUES ($1, …) {tail}`, one placeholder per column of `rows`.
pub(super) fn single_row_insert(into: &str, rows: &[Vec<Value>], tail: &str) -> String {
    let width = rows.first().map_or(1, Vec::len).max(1);
    let mut q = Query::new(&format!("INSERT INTO {into} VALUES "));
    q.tuple(vec![Value::Int(None); width]);
    q.push(tail);
    q.sql
}

/// [`posting_inserts`] as one PostgreSQL statement of data-modifying CTEs (all run to
/// completion whether or not the final SELECT reads them), returning how many purchases were
/// written; `None` when a part cannot be unnested.
pub(super) fn postings_statement(parts: [InsertParts; 7]) -> Option<Query> {
    let mut q = Query::new("WITH ");
    let mut any = false;
    let mut purchases = false;
    for (i, (into, rows, tail)) in parts.into_iter().enumerate() {
        if rows.is_empty() {
            continue;
        }
        if any {
            q.push(", ");
        }
        any = true;
        q.push(&format!("w{i} AS ("));
        push_unnest_insert(&mut q, &into, rows, tail).ok()?;
        // Purchases come first: their count is the statement's answer.
        purchases |= i == 0;
        q.push(if i == 0 { " RETURNING 1)" } else { ")" });
    }
    if !any {
        return None;
    }
    q.push(if purchases {
        " SELECT COUNT(*) AS written FROM w0"
    } else {
        " SELECT CAST(0 AS BIGINT) AS written"
    });
    Some(q)
}
pub(super) fn event_row(r: &Row) -> Result<OutboxRecord> {
    Ok(OutboxRecord {
        id: r.text("id")?,
        brand_id: r.parsed("brand_id")?,
        event_type: r.text("event_type")?,
        subject: r.text("subject")?,
        payload: r.text("payload")?,
        dedupe_key: r.opt_text("dedupe_key")?,
        created_at: r.time("created_at")?,
    })
}

pub(super) const JOB_COLS: &str =
    "name, due_at, lease_owner, lease_until, last_started_at, last_finished_at, last_error, runs";
pub(super) fn job_row(r: &Row) -> Result<JobRecord> {
    Ok(JobRecord {
        name: r.text("name")?,
        due_at: r.time("due_at")?,
        lease_owner: r.opt_text("lease_owner")?,
        lease_until: r.opt_time("lease_until")?,
        last_started_at: r.opt_time("last_started_at")?,
        last_finished_at: r.opt_time("last_finished_at")?,
        last_error: r.opt_text("last_error")?,
        runs: r.i64("runs")?,
    })
}

pub(super) fn member_pair(r: &Row) -> Result<(BrandId, MemberId)> {
    Ok((r.parsed("brand_id")?, r.parsed("member_id")?))
}

pub(super) fn member_values(m: &MemberRecord) -> Vec<Value> {
    vec![
        v(m.id.as_str()),
        v(m.brand_id.as_str()),
        v(m.status.as_str()),
        v(m.merged_into.as_ref().map(|i| i.as_str())),
        v(m.pii_ciphertext.clone()),
        v(m.birth_month),
        v(m.gender.clone()),
        v(m.city.clone()),
        v(m.household_size),
        v(&m.channel),
        v(m.store_id.as_ref().map(|s| s.as_str())),
        v(&m.consents),
        v(&m.attributes),
        v(m.enrolled_at),
        v(m.updated_at),
        v(m.erased_at),
        v(m.version),
    ]
}
