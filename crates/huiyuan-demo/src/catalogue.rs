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

/// A product of the catalogue (its name in the comment beside it); price in minor units.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Product {
    pub sku: &'static str,
    pub category: &'static str,
    pub price: i64,
}

const fn p(sku: &'static str, category: &'static str, price: i64) -> Product {
    Product { sku, category, price }
}

pub(crate) const PRODUCTS: &[Product] = &[
    p("TEE-001", "apparel", 9_900),  // 纯棉圆领T恤
    p("TEE-002", "apparel", 12_900), // 速干运动T恤
    p("JKT-014", "apparel", 59_900), // 轻薄羽绒服
    p("JNS-031", "apparel", 29_900), // 直筒牛仔裤
    p("SCF-008", "apparel", 19_900), // 羊毛围巾
    p("SRM-203", "beauty", 32_800),  // 修护精华液
    p("LIP-077", "beauty", 18_900),  // 丝绒口红
    p("MSK-015", "beauty", 9_900),   // 补水面膜(5片)
    p("SUN-040", "beauty", 15_800),  // 清爽防晒乳
    p("CAF-010", "food", 3_200),     // 挂耳咖啡(10包)
    p("TEA-022", "food", 26_800),    // 龙井茶礼盒
    p("SNK-102", "food", 1_500),     // 坚果每日包
    p("CHO-005", "food", 2_900),     // 黑巧克力
    p("MLK-300", "baby", 35_800),    // 婴儿配方奶粉
    p("DPR-120", "baby", 16_900),    // 纸尿裤(大包)
    p("TOY-066", "baby", 19_900),    // 积木玩具
    p("YOG-011", "sports", 12_800),  // 瑜伽垫
    p("RUN-201", "sports", 49_900),  // 跑步鞋
    p("BTL-004", "sports", 6_900),   // 运动水壶
    p("HOM-050", "home", 8_900),     // 香薰蜡烛
    p("HOM-061", "home", 39_900),    // 四件套床品
    p("HOM-072", "home", 12_900),    // 保温杯
];

pub(crate) const CATEGORIES: &[&str] = &["apparel", "beauty", "food", "baby", "sports", "home"];

/// A basket near the member's spend level, mostly from the categories they like; paid in full,
/// or with a 10% markdown now and then.
pub(crate) fn basket(rng: &mut StdRng, spend: f64, likes: &[&'static str]) -> (Vec<LineInput>, i64) {
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
