//! Bulk exports: the brand's members, purchases, ledger, coupons and model results as a table,
//! read page by page in ID order from one snapshot, so the same data always gives the same
//! bytes. Personal data is masked unless the caller asks to reveal it and may (audited), and
//! coupon codes — bearer secrets — are masked the same way.

use std::collections::HashMap;

use huiyuan_domain::access::Permission;
use huiyuan_domain::ids::{BrandId, MemberId};
use huiyuan_domain::loyalty::purchase::PurchaseLine;
use huiyuan_store::{AccountRecord, Tx};
use serde::{Deserialize, Serialize};

use super::table::{Column, Format, Table, Values};
use crate::commerce::coupons::masked_code;
use crate::loyalty::calendar::BrandCalendar;
use crate::{Actor, Core, CoreError, Result};

/// Rows read per query.
const PAGE: u32 = 5_000;

/// What to export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ExportKind {
    /// One row per member: profile (masked), tier and points.
    Members,
    /// One row per purchase.
    Transactions,
    /// One row per line of every purchase: what analysts join to products.
    TransactionLines,
    /// Every ledger entry with its hash.
    Ledger,
    Coupons,
    /// Each member's RFM scores and segment, lifecycle stage, P(alive) and lifetime value.
    Insights,
}

impl ExportKind {
    pub const ALL: [ExportKind; 6] = [
        ExportKind::Members,
        ExportKind::Transactions,
        ExportKind::TransactionLines,
        ExportKind::Ledger,
        ExportKind::Coupons,
        ExportKind::Insights,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ExportKind::Members => "members",
            ExportKind::Transactions => "transactions",
            ExportKind::TransactionLines => "transaction_lines",
            ExportKind::Ledger => "ledger",
            ExportKind::Coupons => "coupons",
            ExportKind::Insights => "insights",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

fn text(name: &'static str, v: Vec<Option<String>>) -> Column {
    Column {
        name,
        values: Values::Text(v),
    }
}
fn int(name: &'static str, v: Vec<Option<i64>>) -> Column {
    Column {
        name,
        values: Values::Int(v),
    }
}
fn money(name: &'static str, v: Vec<Option<i64>>) -> Column {
    Column {
        name,
        values: Values::Money(v),
    }
}
fn time_col(name: &'static str, v: Vec<Option<time::OffsetDateTime>>) -> Column {
    Column {
        name,
        values: Values::Time(v),
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Walks a brand's rows in ID order, a page at a time.
macro_rules! every {
    ($tx:expr, $method:ident, $brand:expr, $id:expr) => {{
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = $tx.$method($brand, after.as_deref(), PAGE).await?;
            let full = page.len() == PAGE as usize;
            after = page.last().map($id);
            all.extend(page);
            if !full {
                break;
            }
        }
        all
    }};
}

impl Core {
    /// Builds the table of one export. `reveal` shows personal data and coupon codes in clear:
    /// it needs the `pii.reveal` permission and is audited.
    pub async fn export(&self, actor: &Actor, kind: ExportKind, reveal: bool) -> Result<Table> {
        actor.require(match kind {
            ExportKind::Insights => Permission::AnalyticsRead,
            _ => Permission::DataExport,
        })?;
        if reveal {
            actor.require(Permission::PiiReveal)?;
            let mut tx = self.storage.write().await?;
            self.audit(
                &mut *tx,
                actor,
                "data.exported_revealed",
                ("export", kind.as_str()),
                serde_json::json!({ "kind": kind.as_str() }),
            )
            .await?;
            tx.commit().await?;
        }
        let brand = &actor.brand_id;
        if kind == ExportKind::Insights {
            return self.insights_table(brand).await;
        }
        let mut tx = self.storage.read().await?;
        match kind {
            ExportKind::Members => self.members_table(&mut *tx, brand, reveal).await,
            ExportKind::Transactions => purchases_table(&mut *tx, brand).await,
            ExportKind::TransactionLines => lines_table(&mut *tx, brand).await,
            ExportKind::Ledger => ledger_table(&mut *tx, brand).await,
            ExportKind::Coupons => coupons_table(&mut *tx, brand, reveal).await,
            ExportKind::Insights => unreachable!("built from the model above"),
        }
    }

    /// [`Core::export`] written as a file.
    pub async fn export_file(
        &self,
        actor: &Actor,
        kind: ExportKind,
        format: Format,
        reveal: bool,
    ) -> Result<Vec<u8>> {
        let table = self.export(actor, kind, reveal).await?;
        let calendar = {
            let mut tx = self.storage.read().await?;
            let brand = tx
                .get_brand(&actor.brand_id)
                .await?
                .ok_or(CoreError::NotFound("brand"))?;
            BrandCalendar::new(&brand.timezone)?
        };
        table.write(format, &|t| calendar.local(t))
    }

    async fn members_table(&self, tx: &mut dyn Tx, brand: &BrandId, reveal: bool) -> Result<Table> {
        let members = every!(tx, members_in_order, brand, |m: &huiyuan_store::MemberRecord| m
            .id
            .to_string());
        let mut accounts: HashMap<MemberId, AccountRecord> = HashMap::with_capacity(members.len());
        let mut after: Option<(BrandId, MemberId)> = None;
        loop {
            let page = tx.list_accounts(Some(brand), after.as_ref(), PAGE).await?;
            let full = page.len() == PAGE as usize;
            after = page.last().map(|a| (a.brand_id.clone(), a.member_id.clone()));
            accounts.extend(page.into_iter().map(|a| (a.member_id.clone(), a)));
            if !full {
                break;
            }
        }
        let n = members.len();
        let mut cols: [Vec<Option<String>>; 13] = Default::default();
        let (mut household, mut available, mut pending, mut debt) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut enrolled, mut erased) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for record in &members {
            let view = self.member_view(&mut *tx, record, reveal).await?;
            let account = accounts.get(&record.id);
            let identity = |kind: &str| {
                view.identities
                    .iter()
                    .filter(|i| i.kind == kind || (kind == "ext" && i.kind.starts_with("ext:")))
                    .map(|i| i.value.clone())
                    .next()
            };
            let values = [
                Some(view.id.to_string()),
                Some(crate::members::enum_str(view.status)),
                view.name.clone(),
                view.phone.clone(),
                view.email.clone(),
                view.birthday.clone(),
                view.gender.map(crate::members::enum_str),
                view.city.clone(),
                Some(crate::members::enum_str(view.channel)),
                view.store_id.as_ref().map(ToString::to_string),
                identity("card"),
                (!view.tags.is_empty()).then(|| view.tags.join(";")),
                account.and_then(|a| a.tier_code.clone()),
            ];
            for (col, v) in cols.iter_mut().zip(values) {
                col.push(v);
            }
            household.push(view.household_size.map(i64::from));
            available.push(Some(account.map_or(0, |a| a.available)));
            pending.push(Some(account.map_or(0, |a| a.pending)));
            debt.push(Some(account.map_or(0, |a| a.debt)));
            enrolled.push(Some(view.enrolled_at));
            erased.push(view.erased_at);
        }
        let [id, status, name, phone, email, birthday, gender, city, channel, store, card, tags, tier] = cols;
        Ok(Table {
            columns: vec![
                text("member_id", id),
                text("status", status),
                text("name", name),
                text("phone", phone),
                text("email", email),
                text("birthday", birthday),
                text("gender", gender),
                text("city", city),
                int("household_size", household),
                text("channel", channel),
                text("store_id", store),
                text("card_number", card),
                text("tags", tags),
                text("tier", tier),
                int("points_available", available),
                int("points_pending", pending),
                int("points_debt", debt),
                time_col("enrolled_at", enrolled),
                time_col("erased_at", erased),
            ],
        })
    }
}

async fn purchases_table(tx: &mut dyn Tx, brand: &BrandId) -> Result<Table> {
    let rows = every!(
        tx,
        purchases_in_order,
        brand,
        |p: &huiyuan_store::PurchaseRecord| p.id.clone()
    );
    let t = |f: fn(&huiyuan_store::PurchaseRecord) -> Option<String>| rows.iter().map(f).collect();
    let i = |f: fn(&huiyuan_store::PurchaseRecord) -> i64| rows.iter().map(|p| Some(f(p))).collect();
    Ok(Table {
        columns: vec![
            text("purchase_id", t(|p| Some(p.id.clone()))),
            text("order_id", t(|p| Some(p.order_id.clone()))),
            text("member_id", t(|p| Some(p.member_id.to_string()))),
            text("store_id", t(|p| p.store_id.as_ref().map(ToString::to_string))),
            text("channel", t(|p| Some(p.channel.clone()))),
            time_col("occurred_at", rows.iter().map(|p| Some(p.occurred_at)).collect()),
            money("paid_amount", i(|p| p.paid_amount)),
            money("eligible_amount", i(|p| p.eligible_amount)),
            money("refunded_amount", i(|p| p.refunded_amount)),
            int("points", i(|p| p.points)),
            int("points_reversed", i(|p| p.points_reversed)),
            text("status", t(|p| Some(p.status.as_str().to_owned()))),
            int("programme_version", i(|p| p.programme_version)),
        ],
    })
}

async fn lines_table(tx: &mut dyn Tx, brand: &BrandId) -> Result<Table> {
    let rows = every!(
        tx,
        purchases_in_order,
        brand,
        |p: &huiyuan_store::PurchaseRecord| p.id.clone()
    );
    let mut cols: [Vec<Option<String>>; 4] = Default::default();
    let mut nums: [Vec<Option<i64>>; 5] = Default::default();
    for p in &rows {
        let lines: Vec<PurchaseLine> = serde_json::from_str(&p.lines)
            .map_err(|e| CoreError::Corrupt(format!("purchase {}: {e}", p.id)))?;
        for (n, l) in lines.into_iter().enumerate() {
            for (c, v) in cols.iter_mut().zip([
                Some(p.order_id.clone()),
                Some(p.member_id.to_string()),
                Some(l.sku),
                l.category,
            ]) {
                c.push(v);
            }
            for (c, v) in
                nums.iter_mut()
                    .zip([n as i64 + 1, l.quantity, l.amount, l.points, l.refunded_quantity])
            {
                c.push(Some(v));
            }
        }
    }
    let [order, member, sku, category] = cols;
    let [line, quantity, amount, points, refunded] = nums;
    Ok(Table {
        columns: vec![
            text("order_id", order),
            int("line", line),
            text("member_id", member),
            text("sku", sku),
            text("category", category),
            int("quantity", quantity),
            money("amount", amount),
            int("points", points),
            int("refunded_quantity", refunded),
        ],
    })
}

async fn ledger_table(tx: &mut dyn Tx, brand: &BrandId) -> Result<Table> {
    let rows = every!(
        tx,
        entries_in_order,
        brand,
        |e: &huiyuan_store::LedgerEntryRecord| e.id.clone()
    );
    let t = |f: fn(&huiyuan_store::LedgerEntryRecord) -> Option<String>| rows.iter().map(f).collect();
    let i = |f: fn(&huiyuan_store::LedgerEntryRecord) -> Option<i64>| rows.iter().map(f).collect();
    Ok(Table {
        columns: vec![
            text("entry_id", t(|e| Some(e.id.clone()))),
            text("member_id", t(|e| Some(e.member_id.to_string()))),
            int("seq", i(|e| Some(e.seq))),
            text("kind", t(|e| Some(e.kind.clone()))),
            int("available_delta", i(|e| Some(e.available_delta))),
            int("pending_delta", i(|e| Some(e.pending_delta))),
            int("debt_delta", i(|e| Some(e.debt_delta))),
            text("lot_id", t(|e| e.lot_id.clone())),
            text("reference", t(|e| e.reference.clone())),
            int("programme_version", i(|e| e.programme_version)),
            text("actor", t(|e| Some(e.actor.clone()))),
            time_col("created_at", rows.iter().map(|e| Some(e.created_at)).collect()),
            text("detail", t(|e| Some(e.detail.clone()))),
            text("prev_hash", t(|e| Some(hex(&e.prev_hash)))),
            text("hash", t(|e| Some(hex(&e.hash)))),
        ],
    })
}

async fn coupons_table(tx: &mut dyn Tx, brand: &BrandId, reveal: bool) -> Result<Table> {
    let rows = every!(tx, coupons_in_order, brand, |c: &huiyuan_store::CouponRecord| c
        .id
        .clone());
    let t = |f: &dyn Fn(&huiyuan_store::CouponRecord) -> Option<String>| rows.iter().map(f).collect();
    let at =
        |f: fn(&huiyuan_store::CouponRecord) -> Option<time::OffsetDateTime>| rows.iter().map(f).collect();
    Ok(Table {
        columns: vec![
            text("coupon_id", t(&|c| Some(c.id.clone()))),
            text("template_id", t(&|c| Some(c.template_id.clone()))),
            text(
                "code",
                t(&|c| {
                    Some(if reveal {
                        c.code.clone()
                    } else {
                        masked_code(&c.code)
                    })
                }),
            ),
            text("member_id", t(&|c| Some(c.member_id.to_string()))),
            text("status", t(&|c| Some(c.status.to_string()))),
            text("source", t(&|c| Some(c.source.clone()))),
            time_col("valid_from", at(|c| Some(c.valid_from))),
            time_col("valid_until", at(|c| Some(c.valid_until))),
            time_col("issued_at", at(|c| Some(c.issued_at))),
            time_col("redeemed_at", at(|c| c.redeemed_at)),
            text("redeemed_order_id", t(&|c| c.redeemed_order_id.clone())),
            text("redeemed_store_id", t(&|c| c.redeemed_store_id.clone())),
            text("redeemed_channel", t(&|c| c.redeemed_channel.clone())),
            money("discount", rows.iter().map(|c| c.discount).collect()),
        ],
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn coupon_codes_keep_their_last_four() {
        assert_eq!(
            crate::commerce::coupons::masked_code("ABCD-EFGH-JKLM-NP"),
            "****M-NP"
        );
    }
}
