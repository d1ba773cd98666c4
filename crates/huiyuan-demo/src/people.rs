//! The demo's members: who they are (names, birthdays, phones, channels) and how they buy.

use huiyuan_domain::ids::StoreId;
use huiyuan_domain::member::{Channel, Consents, EnrolInput, ExternalIdInput, Gender};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;
use time::{Date, Duration, Month};

use crate::catalogue::CATEGORIES;
use crate::{beta, gamma, pick, Person};

const SURNAMES: &[&str] = &[
    "王", "李", "张", "刘", "陈", "杨", "赵", "黄", "周", "吴", "徐", "孙", "胡", "朱", "高", "林", "何",
    "郭", "马", "罗", "梁", "宋", "郑", "谢", "韩", "唐", "冯", "于", "董", "萧", "欧阳", "司马",
];
const GIVEN: &[&str] = &[
    "伟", "芳", "娜", "秀英", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明",
    "超", "秀兰", "霞", "平", "刚", "桂英", "小明", "子涵", "欣怡", "梓萱", "浩然", "宇轩", "一诺", "思远",
    "雨桐", "佳怡", "俊杰", "晓东", "婷婷",
];
const CITIES: &[&str] = &[
    "上海", "上海", "杭州", "北京", "成都", "深圳", "广州", "苏州", "南京", "武汉",
];
const TAGS: &[&str] = &[
    "高价值",
    "母婴",
    "美妆",
    "运动",
    "咖啡爱好者",
    "会员日常客",
    "企业客户",
];

/// BG/NBD-style heterogeneity: purchase rates gamma(r, 1/α) per day, dropout beta(a, b).
const RATE_SHAPE: f64 = 0.9;
const RATE_SCALE: f64 = 1.0 / 40.0;
const DROPOUT_A: f64 = 0.7;
const DROPOUT_B: f64 = 3.5;

/// How many join on a day, relative to others: growth over the period, and crowds at the
/// big shopping festivals.
fn joining_weight(day: Date, start: Date, end: Date) -> f64 {
    let span = (end - start).whole_days().max(1) as f64;
    let growth = 1.0 + 1.5 * (day - start).whole_days() as f64 / span;
    let festival = match (day.month(), day.day()) {
        (Month::November, 1..=11) | (Month::June, 10..=18) => 3.0,
        (Month::January, 15..=31) => 1.5,
        _ => 1.0,
    };
    growth * festival
}

/// Draws the members, in the order they join.
pub(crate) fn draw(rng: &mut StdRng, count: usize, start: Date, end: Date, stores: usize) -> Vec<Person> {
    let span = (end - start).whole_days().max(1);
    let max_weight = 2.5 * 3.0;
    let mut joins: Vec<Date> = (0..count)
        .map(|_| loop {
            let day = start + Duration::days(rng.gen_range(0..span));
            if rng.gen_bool((joining_weight(day, start, end) / max_weight).min(1.0)) {
                break day;
            }
        })
        .collect();
    joins.sort();
    joins
        .into_iter()
        .enumerate()
        .map(|(n, joins)| {
            let channel = *pick(
                rng,
                &[
                    Channel::Pos,
                    Channel::Pos,
                    Channel::Pos,
                    Channel::MiniProgram,
                    Channel::MiniProgram,
                    Channel::App,
                    Channel::WebShop,
                ],
            );
            let mut likes: Vec<&'static str> = CATEGORIES.to_vec();
            likes.shuffle(rng);
            likes.truncate(rng.gen_range(1..4));
            Person {
                n: n as u32 + 1,
                joins,
                id: None,
                rate: gamma(rng, RATE_SHAPE, RATE_SCALE),
                dropout: beta(rng, DROPOUT_A, DROPOUT_B),
                alive: true,
                next_purchase: None,
                // Mean basket about 200 yuan, varying between members (Gamma-Gamma).
                spend: gamma(rng, 3.0, 7_000.0),
                likes,
                // All but the online store.
                home: rng.gen_range(0..stores.saturating_sub(1).max(1)),
                channel,
                engaged: matches!(channel, Channel::App | Channel::MiniProgram) && rng.gen_bool(0.4),
                purchases: 0,
                sure: false,
            }
        })
        .collect()
}

/// What the member gives when they join.
pub(crate) fn enrolment(rng: &mut StdRng, p: &Person, stores: &[StoreId]) -> EnrolInput {
    let name = format!("{}{}", pick(rng, SURNAMES), pick(rng, GIVEN));
    // 170 is a virtual-operator mobile block: valid numbers no real demo user is likely to own.
    let digits = format!("{:08}", p.n);
    let phone = format!("170 {} {}", &digits[..4], &digits[4..]);
    let year = rng.gen_range(1962..2006);
    let tag_count = rng.gen_range(0..3);
    let tags: Vec<String> = TAGS
        .choose_multiple(rng, tag_count)
        .map(|t| (*t).to_owned())
        .collect();
    let store_id = (p.channel == Channel::Pos)
        .then(|| stores.get(p.home).cloned())
        .flatten();
    EnrolInput {
        name: Some(name.into()),
        phone: Some(phone.into()),
        email: rng
            .gen_bool(0.3)
            .then(|| format!("member{}@example.com", p.n).into()),
        birthday: Some(format!("{year}-{:02}-{:02}", rng.gen_range(1..=12), rng.gen_range(1..=28)).into()),
        gender: Some(*pick(
            rng,
            &[
                Gender::Female,
                Gender::Female,
                Gender::Female,
                Gender::Male,
                Gender::Male,
                Gender::Undisclosed,
            ],
        )),
        city: Some((*pick(rng, CITIES)).to_owned()),
        household_size: Some(rng.gen_range(1..6)),
        channel: Some(p.channel),
        store_id,
        external_ids: if p.channel == Channel::MiniProgram {
            vec![ExternalIdInput {
                channel: "wechat".into(),
                id: format!("oDemo{:08}", p.n),
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
