//! The demo brand's stores, products and coupon templates, and how a member fills a basket.

use huiyuan_domain::commerce::coupons::{Limits, Offer, TemplateInput, Validity};
use huiyuan_domain::ids::StoreId;
use huiyuan_domain::loyalty::purchase::LineInput;
use huiyuan_domain::member::Channel;
use rand::rngs::StdRng;
use rand::Rng;
use rust_decimal::Decimal;

use crate::pick;

pub(crate) struct Store {
    pub code: &'static str,
    pub name: &'static str,
    pub city: &'static str,
    pub region: &'static str,
}

/// The last store is the online flagship: web-shop and mini-program sales are booked there.
pub(crate) const STORES: &[Store] = &[
    Store {
        code: "SH01",
        name: "上海南京西路店",
        city: "上海",
        region: "华东",
    },
    Store {
        code: "SH02",
        name: "上海徐汇滨江店",
        city: "上海",
        region: "华东",
    },
    Store {
        code: "HZ01",
        name: "杭州西湖店",
        city: "杭州",
        region: "华东",
    },
    Store {
        code: "BJ01",
        name: "北京三里屯店",
        city: "北京",
        region: "华北",
    },
    Store {
        code: "CD01",
        name: "成都春熙路店",
        city: "成都",
        region: "西南",
    },
    Store {
        code: "SZ01",
        name: "深圳万象城店",
        city: "深圳",
        region: "华南",
    },
    Store {
        code: "GZ01",
        name: "广州天河店",
        city: "广州",
        region: "华南",
    },
    Store {
        code: "WEB",
        name: "天猫旗舰店",
        city: "线上",
        region: "线上",
    },
];

/// A product of the catalogue; price in minor units.
#[derive(Debug, Clone, Copy)]
pub struct Product {
    pub sku: &'static str,
    pub name: &'static str,
    pub category: &'static str,
    pub price: i64,
}

const fn p(sku: &'static str, name: &'static str, category: &'static str, price: i64) -> Product {
    Product {
        sku,
        name,
        category,
        price,
    }
}

pub const PRODUCTS: &[Product] = &[
    p("TEE-001", "纯棉圆领T恤", "apparel", 9_900),
    p("TEE-002", "速干运动T恤", "apparel", 12_900),
    p("JKT-014", "轻薄羽绒服", "apparel", 59_900),
    p("JNS-031", "直筒牛仔裤", "apparel", 29_900),
    p("SCF-008", "羊毛围巾", "apparel", 19_900),
    p("SRM-203", "修护精华液", "beauty", 32_800),
    p("LIP-077", "丝绒口红", "beauty", 18_900),
    p("MSK-015", "补水面膜(5片)", "beauty", 9_900),
    p("SUN-040", "清爽防晒乳", "beauty", 15_800),
    p("CAF-010", "挂耳咖啡(10包)", "food", 3_200),
    p("TEA-022", "龙井茶礼盒", "food", 26_800),
    p("SNK-102", "坚果每日包", "food", 1_500),
    p("CHO-005", "黑巧克力", "food", 2_900),
    p("MLK-300", "婴儿配方奶粉", "baby", 35_800),
    p("DPR-120", "纸尿裤(大包)", "baby", 16_900),
    p("TOY-066", "积木玩具", "baby", 19_900),
    p("YOG-011", "瑜伽垫", "sports", 12_800),
    p("RUN-201", "跑步鞋", "sports", 49_900),
    p("BTL-004", "运动水壶", "sports", 6_900),
    p("HOM-050", "香薰蜡烛", "home", 8_900),
    p("HOM-061", "四件套床品", "home", 39_900),
    p("HOM-072", "保温杯", "home", 12_900),
];

pub(crate) const CATEGORIES: &[&str] = &["apparel", "beauty", "food", "baby", "sports", "home"];

/// A basket near the member's spend level, mostly from the categories they like; paid in full,
/// or with a 10% markdown now and then.
pub fn basket(rng: &mut StdRng, spend: f64, likes: &[&'static str]) -> (Vec<LineInput>, i64) {
    let mut lines: Vec<LineInput> = Vec::new();
    let mut total = 0i64;
    while lines.len() < 6 && (lines.is_empty() || (total as f64) < spend * rng.gen_range(0.6..1.2)) {
        let category = if rng.gen_bool(0.8) && !likes.is_empty() {
            *pick(rng, likes)
        } else {
            *pick(rng, CATEGORIES)
        };
        let choices: Vec<&Product> = PRODUCTS.iter().filter(|p| p.category == category).collect();
        let product = **pick(rng, &choices);
        if let Some(line) = lines.iter_mut().find(|l| l.sku == product.sku) {
            line.quantity += 1;
            line.amount += product.price;
        } else {
            lines.push(LineInput {
                sku: product.sku.into(),
                category: Some(product.category.into()),
                quantity: 1,
                amount: product.price,
                reward: false,
            });
        }
        total += product.price;
    }
    let paid = if rng.gen_bool(0.15) { total * 9 / 10 } else { total };
    (lines, paid)
}

/// Where a member buys: their home store at the till, or online.
pub(crate) fn where_bought(
    rng: &mut StdRng,
    joined_through: Channel,
    home: usize,
    stores: &[StoreId],
) -> (Channel, Option<StoreId>) {
    let online = stores.last().cloned();
    let roll: f64 = rng.gen();
    let channel = match joined_through {
        Channel::Pos if roll < 0.8 => Channel::Pos,
        Channel::MiniProgram if roll < 0.6 => Channel::MiniProgram,
        Channel::WebShop | Channel::App if roll < 0.6 => Channel::WebShop,
        _ if roll < 0.85 => Channel::Pos,
        _ => Channel::MiniProgram,
    };
    let store = match channel {
        Channel::Pos => stores.get(home).cloned(),
        _ => online,
    };
    (channel, store)
}

fn template(name: &str, description: &str, offer: Offer, days: u16, min_spend: i64) -> TemplateInput {
    TemplateInput {
        name: name.into(),
        description: Some(description.into()),
        offer,
        validity: Validity::DaysAfterIssue { days },
        limits: Limits {
            min_spend,
            ..Limits::default()
        },
        stackable: false,
        stock: None,
        cost_per_redemption: 0,
        claim_code: None,
        points_price: None,
    }
}

pub(crate) fn welcome_coupon() -> TemplateInput {
    template(
        "新会员9折券",
        "入会礼：全场9折，最多减50元 Welcome: 10% off, up to 50 yuan",
        Offer::Percentage {
            percent: Decimal::TEN,
            max_discount: Some(5_000),
        },
        30,
        0,
    )
}

pub(crate) fn campaign_coupon() -> TemplateInput {
    let mut t = template(
        "满100减20",
        "月度活动券 Monthly campaign: 20 yuan off 100",
        Offer::Threshold {
            min_spend: 10_000,
            amount: 2_000,
        },
        14,
        0,
    );
    t.cost_per_redemption = 2_000;
    t
}

pub(crate) fn reward_coupon() -> TemplateInput {
    let mut t = template(
        "1000积分兑50元券",
        "积分商城 Rewards: 1,000 points for 50 yuan off 200",
        Offer::FixedAmount { amount: 5_000 },
        60,
        20_000,
    );
    t.points_price = Some(1_000);
    t
}
