//! `huiyuan demo`: a data folder with a demo brand, its stores and a first set of members,
//! made through the same use cases as the API. A second run on the same folder reuses it.

use std::path::Path;

use huiyuan_core::brands::{NewBrand, NewStore};
use huiyuan_core::members::Enrolment;
use huiyuan_core::{Actor, Core};
use huiyuan_domain::ids::{MemberId, StoreId};
use huiyuan_domain::loyalty::programme::Programme;
use huiyuan_domain::loyalty::purchase::{LineInput, PurchaseInput};
use huiyuan_domain::member::{Channel, Consents, EnrolInput, ExternalIdInput, Gender};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use time::Duration;

/// What the demo prints on every start, kept (0600) in the data folder.
#[derive(Debug, Serialize, Deserialize)]
pub struct Credentials {
    pub brand_slug: String,
    pub username: String,
    pub password: String,
    pub api_key: String,
}

const CREDENTIALS_FILE: &str = "demo-credentials.json";

const SURNAMES: &[&str] = &[
    "王", "李", "張", "劉", "陳", "楊", "趙", "黃", "周", "吳", "徐", "孫", "胡", "朱", "高", "林", "何",
    "郭", "馬", "羅", "歐陽", "司馬",
];
const GIVEN: &[&str] = &[
    "偉", "芳", "娜", "秀英", "敏", "靜", "麗", "強", "磊", "軍", "洋", "勇", "艷", "傑", "娟", "濤", "明",
    "超", "秀蘭", "霞", "平", "剛", "桂英", "小明", "子涵", "欣怡", "梓萱", "浩然", "宇軒", "一諾",
];
const STORES: &[(&str, &str, &str, &str)] = &[
    ("SH01", "上海南京西路店", "上海", "華東"),
    ("SH02", "上海徐匯濱江店", "上海", "華東"),
    ("HZ01", "杭州西湖店", "杭州", "華東"),
    ("BJ01", "北京三里屯店", "北京", "華北"),
    ("CD01", "成都春熙路店", "成都", "西南"),
    ("SZ01", "深圳萬象城店", "深圳", "華南"),
    ("GZ01", "廣州天河店", "廣州", "華南"),
    ("WEB", "天貓旗艦店", "線上", "線上"),
];
const TAGS: &[&str] = &[
    "新客",
    "高價值",
    "母嬰",
    "美妝",
    "運動",
    "咖啡愛好者",
    "會員日常客",
];

/// Creates the demo brand on first run, or reads the credentials of the one already there.
pub async fn prepare(core: &Core, data: &Path, members: usize) -> Result<Credentials, crate::AnyError> {
    let file = data.join(CREDENTIALS_FILE);
    if file.exists() {
        return Ok(serde_json::from_str(&std::fs::read_to_string(&file)?)?);
    }
    let password = huiyuan_core::crypto::random_token(12);
    let made = core
        .bootstrap_brand(
            NewBrand {
                slug: "demo".into(),
                name: "匯源生活 Huiyuan Life".into(),
                currency: None,
                timezone: None,
            },
            "admin",
            &password,
        )
        .await?;
    let system = Actor::system(made.brand.id.clone());
    let mut store_ids = Vec::new();
    for (code, name, city, region) in STORES {
        let s = core
            .create_store(
                &system,
                NewStore {
                    code: (*code).into(),
                    name: (*name).into(),
                    city: Some((*city).into()),
                    region: Some((*region).into()),
                },
            )
            .await?;
        store_ids.push(s.id);
    }
    // The SPEC's default programme: 1 yuan = 1 point, member day ×3, birthday month ×2, 7 days
    // pending, 12-month expiry, 普通 / 銀卡 / 金卡 / 鉑金 / 鑽石.
    core.publish_programme(&system, Programme::demo()).await?;
    // Fixed seed: every fresh demo has the same members.
    let mut rng = StdRng::seed_from_u64(20261125);
    let mut enrolled = 0;
    let mut n = 0u32;
    while enrolled < members {
        n += 1;
        let input = demo_member(&mut rng, n, &store_ids);
        if let Enrolment::Created(m) = core.enrol(&system, input).await? {
            enrolled += 1;
            demo_purchases(core, &system, &mut rng, &m.id, &store_ids).await?;
        }
    }
    // Mature the purchases whose return window has closed, expire what is over a year old.
    core.run_jobs("demo", true).await?;
    let creds = Credentials {
        brand_slug: made.brand.slug,
        username: made.admin.username,
        password,
        api_key: made.api_key.secret,
    };
    crate::write_private(&file, &serde_json::to_string_pretty(&creds)?)?;
    Ok(creds)
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

/// A basket of one to three lines of the demo catalogue, and what was paid for it: now and then
/// with a 10% discount. Shared by the demo and the benchmarks.
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

/// A few purchases of the last 15 months through the real engine (rules, ledger, tiers).
async fn demo_purchases(
    core: &Core,
    system: &Actor,
    rng: &mut StdRng,
    member: &MemberId,
    stores: &[StoreId],
) -> Result<(), crate::AnyError> {
    let now = core.now();
    let count = rng.gen_range(0..8);
    let mut days: Vec<i64> = (0..count).map(|_| rng.gen_range(0..450)).collect();
    days.sort_unstable_by(|a, b| b.cmp(a));
    for (i, days_ago) in days.into_iter().enumerate() {
        let (lines, paid) = basket(rng);
        let store = stores.choose(rng).cloned();
        let channel = if store.as_ref() == stores.last() {
            Channel::WebShop
        } else {
            Channel::Pos
        };
        core.record_purchase(
            system,
            PurchaseInput {
                order_id: format!("DEMO-{}-{i}", &member.as_str()[4..]),
                member_id: Some(member.clone()),
                phone: None,
                member_code: None,
                enrol_if_unknown: None,
                store_id: store,
                channel,
                occurred_at: Some(now - Duration::days(days_ago) - Duration::minutes(rng.gen_range(0..600))),
                lines,
                paid_amount: paid,
            },
        )
        .await?;
    }
    Ok(())
}

fn demo_member(rng: &mut StdRng, n: u32, stores: &[huiyuan_domain::ids::StoreId]) -> EnrolInput {
    let name = format!(
        "{}{}",
        SURNAMES.choose(rng).unwrap_or(&"王"),
        GIVEN.choose(rng).unwrap_or(&"偉")
    );
    // 170 0000 xxxx: a mobile block of a virtual operator, formatted as members type it.
    let phone = format!("170 0000 {:04}", n);
    let channel = *[Channel::App, Channel::MiniProgram, Channel::WebShop, Channel::Pos]
        .choose(rng)
        .unwrap_or(&Channel::App);
    let store_id = (channel == Channel::Pos)
        .then(|| stores.choose(rng).cloned())
        .flatten();
    let year = rng.gen_range(1965..2006);
    let tag_count = rng.gen_range(0..3);
    let tags: Vec<String> = TAGS
        .choose_multiple(rng, tag_count)
        .map(|t| (*t).to_owned())
        .collect();
    EnrolInput {
        name: Some(name),
        phone: Some(phone),
        email: n.is_multiple_of(3).then(|| format!("member{n}@example.com")),
        birthday: Some(format!(
            "{year}-{:02}-{:02}",
            rng.gen_range(1..=12),
            rng.gen_range(1..=28)
        )),
        gender: Some(
            *[Gender::Female, Gender::Female, Gender::Male, Gender::Undisclosed]
                .choose(rng)
                .unwrap_or(&Gender::Female),
        ),
        city: Some(
            ["上海", "北京", "杭州", "成都", "深圳", "廣州"]
                .choose(rng)
                .unwrap_or(&"上海")
                .to_string(),
        ),
        household_size: Some(rng.gen_range(1..6)),
        channel: Some(channel),
        store_id,
        external_ids: if channel == Channel::MiniProgram {
            vec![ExternalIdInput {
                channel: "wechat".into(),
                id: format!("oDemo{n:08}"),
            }]
        } else {
            Vec::new()
        },
        card_number: None,
        consents: Some(Consents {
            sms: rng.gen_bool(0.6),
            email: rng.gen_bool(0.3),
            push: rng.gen_bool(0.5),
        }),
        attributes: None,
        tags,
    }
}
