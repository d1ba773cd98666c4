//! Bulk import of members and purchases from CSV: what a brand moving off a legacy CRM or POS
//! has. The file is read in UTF-8 or GBK, its headers are mapped to our fields (English or the
//! Chinese names such exports use), every row is validated, and the good rows go through the
//! real engine in batches of a thousand (`enrol_many`, `record_purchases`): one commit per batch,
//! rules and ledger applied, idempotent on external IDs and order IDs, so running a file again
//! changes nothing. A bad row is reported with its line number and reason and never stops the
//! rest.

use std::collections::{BTreeMap, HashMap};

use huiyuan_domain::error::Validator;
use huiyuan_domain::ids::{BrandId, MemberId, StoreId};
use huiyuan_domain::loyalty::purchase::{LineInput, PurchaseInput};
use huiyuan_domain::member::{Channel, EnrolInput, ExternalIdInput, Gender, Identity};
use huiyuan_domain::money::parse_minor_units;
use huiyuan_domain::pii::{Personal, Phone};
use huiyuan_domain::ValidationError;
use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime, Time};

use crate::files::table::spreadsheet_safe;
use crate::loyalty::calendar::BrandCalendar;
use crate::loyalty::purchases::SaleSource;
use crate::members::Enrolment;
use crate::{Actor, Core, CoreError, Result};

/// Rows handed to the engine per transaction.
pub const IMPORT_BATCH: usize = 1_000;
/// Largest file accepted (bytes): a few million rows.
pub const MAX_IMPORT_BYTES: usize = 256 * 1024 * 1024;

/// What a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ImportKind {
    Members,
    Transactions,
}

impl ImportKind {
    /// What importing this kind needs: the permission of what it writes.
    pub fn permission(self) -> huiyuan_domain::access::Permission {
        use huiyuan_domain::access::Permission;
        match self {
            ImportKind::Members => Permission::MembersEnrol,
            ImportKind::Transactions => Permission::PurchasesRecord,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ImportKind::Members => "members",
            ImportKind::Transactions => "transactions",
        }
    }

    /// Our fields and the headers each is known by (compared lower-cased, spaces and dashes
    /// as underscores). The first name is ours.
    fn fields(self) -> &'static [(&'static str, &'static [&'static str])] {
        match self {
            ImportKind::Members => &[
                (
                    "external_id",
                    &[
                        "external_id",
                        "外部id",
                        "会员编号",
                        "會員編號",
                        "member_no",
                        "customer_id",
                    ],
                ),
                (
                    "phone",
                    &[
                        "phone",
                        "mobile",
                        "手机",
                        "手机号",
                        "手机号码",
                        "手機",
                        "電話",
                        "电话",
                    ],
                ),
                ("name", &["name", "姓名", "名字"]),
                ("email", &["email", "邮箱", "電郵", "电子邮件"]),
                ("birthday", &["birthday", "birth_date", "生日", "出生日期"]),
                ("gender", &["gender", "sex", "性别", "性別"]),
                ("city", &["city", "城市"]),
                ("household_size", &["household_size", "家庭人数"]),
                ("channel", &["channel", "渠道", "注册渠道"]),
                (
                    "store",
                    &[
                        "store",
                        "store_id",
                        "store_code",
                        "门店",
                        "門店",
                        "门店编码",
                        "注册门店",
                    ],
                ),
                ("card_number", &["card_number", "card", "会员卡号", "卡号"]),
                ("tags", &["tags", "标签", "標籤"]),
            ],
            ImportKind::Transactions => &[
                ("order_id", &["order_id", "order_no", "订单号", "訂單號", "单号"]),
                ("member_id", &["member_id"]),
                (
                    "member_external_id",
                    &["member_external_id", "会员编号", "會員編號", "customer_id"],
                ),
                (
                    "phone",
                    &["phone", "mobile", "手机", "手机号", "手机号码", "手機"],
                ),
                (
                    "occurred_at",
                    &[
                        "occurred_at",
                        "date",
                        "time",
                        "datetime",
                        "下单时间",
                        "交易时间",
                        "日期",
                        "时间",
                    ],
                ),
                (
                    "store",
                    &["store", "store_id", "store_code", "门店", "門店", "门店编码"],
                ),
                ("channel", &["channel", "渠道"]),
                ("sku", &["sku", "商品编码", "货号", "item"]),
                ("category", &["category", "品类", "类别", "類別"]),
                ("quantity", &["quantity", "qty", "数量", "數量"]),
                ("amount", &["amount", "line_amount", "金额", "金額", "商品金额"]),
                (
                    "paid_amount",
                    &["paid_amount", "paid", "实付", "实付金额", "實付金額"],
                ),
            ],
        }
    }

    /// Columns a file must have (one of each group).
    fn required(self) -> &'static [&'static [&'static str]] {
        match self {
            ImportKind::Members => &[&["external_id", "phone", "card_number"]],
            ImportKind::Transactions => &[
                &["order_id"],
                &["member_id", "member_external_id", "phone"],
                &["occurred_at"],
                &["amount", "paid_amount"],
            ],
        }
    }
}

/// How the file's bytes are text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum FileEncoding {
    /// UTF-8 when the file is valid UTF-8 (a byte-order mark is allowed); GBK when most of its
    /// non-ASCII lines are not.
    #[default]
    Auto,
    #[serde(alias = "utf-8")]
    Utf8,
    /// GBK and its superset GB18030, as Excel and older Chinese systems save CSV.
    Gbk,
}

/// How to read a file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ImportOptions {
    #[serde(default)]
    pub encoding: FileEncoding,
    /// Their header → our field, for headers we do not recognise (`{"Mobile No": "phone"}`);
    /// map a header to `ignore` to silence it.
    #[serde(default)]
    pub columns: BTreeMap<String, String>,
    /// The system the file's external IDs belong to (`external_id`, `member_external_id`);
    /// default `import`.
    pub source: Option<String>,
    /// Transactions: enrol a phone number nobody has yet ("pay and you are a member");
    /// default false, so a typo in a phone number is reported instead.
    #[serde(default)]
    pub enrol_unknown_phones: bool,
}

/// A row left out, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Rejection {
    /// 1-based line of the file (the header is line 1).
    pub line: u64,
    /// Our field at fault; absent when it is the whole row.
    pub field: Option<String>,
    pub reason: String,
}

/// What an import did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImportReport {
    /// Members, or orders (several lines may make one order).
    pub items: u64,
    /// Newly enrolled or recorded.
    pub imported: u64,
    /// Already present (a file run again): nothing changed.
    pub unchanged: u64,
    pub rejected: u64,
    /// `utf-8` or `gbk`.
    pub encoding: String,
    /// Headers that are none of our fields and were not mapped.
    pub ignored_columns: Vec<String>,
}

/// A file read and checked: its items in file order, each ready or rejected.
#[derive(Debug)]
pub struct ParsedFile {
    pub kind: ImportKind,
    pub encoding: &'static str,
    pub ignored_columns: Vec<String>,
    pub items: Vec<Item>,
}

/// One member or one order of the file.
#[derive(Debug)]
pub struct Item {
    pub line: u64,
    pub row: std::result::Result<Row, Rejection>,
}

#[derive(Debug)]
pub enum Row {
    Member(Box<EnrolInput>),
    Purchase(Box<PurchaseRow>),
}

/// A purchase whose member may still have to be found by an external ID.
#[derive(Debug)]
pub struct PurchaseRow {
    pub input: PurchaseInput,
    pub member_external_id: Option<String>,
}

fn normalise_header(h: &str) -> String {
    h.trim_start_matches('\u{feff}')
        .trim()
        .to_lowercase()
        .replace([' ', '-'], "_")
}

/// The file's text, record by record, with the line each starts on.
struct Records {
    encoding: &'static str,
    header: Vec<String>,
    rows: Vec<(u64, std::result::Result<Vec<String>, String>)>,
}

fn read_records(bytes: &[u8], encoding: FileEncoding) -> std::result::Result<Records, ValidationError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let mut raw = Vec::new();
    let mut record = csv::ByteRecord::new();
    // Lines counted here: the reader's own count is taken before the blank lines it skips.
    let (mut counted_to, mut line) = (0, 1);
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                let mut start = record.position().map_or(counted_to, |p| p.byte() as usize);
                while matches!(bytes.get(start), Some(b'\r' | b'\n')) {
                    start += 1;
                }
                line += memchr_count(&bytes[counted_to..start]);
                counted_to = start;
                raw.push((line, record.clone()));
            }
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                return Err(ValidationError::field(
                    "file",
                    format!("line {line}: not readable as CSV ({e})"),
                ));
            }
        }
    }
    let utf8_ok = |r: &csv::ByteRecord| r.iter().all(|f| std::str::from_utf8(f).is_ok());
    let gbk = match encoding {
        FileEncoding::Utf8 => false,
        FileEncoding::Gbk => true,
        FileEncoding::Auto => {
            let non_ascii: Vec<&csv::ByteRecord> = raw
                .iter()
                .map(|(_, r)| r)
                .filter(|r| r.iter().any(|f| !f.is_ascii()))
                .collect();
            let bad = non_ascii.iter().filter(|r| !utf8_ok(r)).count();
            bad * 2 > non_ascii.len()
        }
    };
    let decode = |r: &csv::ByteRecord| -> std::result::Result<Vec<String>, String> {
        r.iter()
            .map(|f| {
                if gbk {
                    let (text, _, bad) = encoding_rs::GB18030.decode(f);
                    if bad {
                        Err("the line is not valid GBK text".to_owned())
                    } else {
                        Ok(text.trim().to_owned())
                    }
                } else {
                    std::str::from_utf8(f).map(|s| s.trim().to_owned()).map_err(|_| {
                        "the line is not valid UTF-8 (saved in another encoding, such as GBK?)".to_owned()
                    })
                }
            })
            .collect()
    };
    let mut rows = raw.iter().map(|(line, r)| (*line, decode(r)));
    let header = match rows.next() {
        None => {
            return Err(ValidationError::field(
                "file",
                "is empty: a header line is needed",
            ))
        }
        Some((_, Err(reason))) => return Err(ValidationError::field("file", format!("line 1: {reason}"))),
        Some((_, Ok(h))) => h,
    };
    Ok(Records {
        encoding: if gbk { "gbk" } else { "utf-8" },
        header,
        rows: rows
            .filter(|(_, r)| !matches!(r, Ok(v) if v.iter().all(String::is_empty)))
            .collect(),
    })
}

fn memchr_count(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
}

/// Which column holds each of our fields.
struct Columns {
    at: HashMap<&'static str, usize>,
    ignored: Vec<String>,
}

impl Columns {
    fn map(
        kind: ImportKind,
        header: &[String],
        options: &ImportOptions,
    ) -> std::result::Result<Self, ValidationError> {
        let fields = kind.fields();
        let mut errors = Validator::default();
        let custom: HashMap<String, &str> = options
            .columns
            .iter()
            .map(|(theirs, ours)| (normalise_header(theirs), ours.as_str()))
            .collect();
        for (theirs, ours) in &options.columns {
            if *ours != "ignore" && !fields.iter().any(|(f, _)| f == ours) {
                errors.push(
                    format!("columns.{theirs}"),
                    format!(
                        "`{ours}` is not a field of a {} file; one of {} or `ignore`",
                        kind.as_str(),
                        fields
                            .iter()
                            .map(|(f, _)| format!("`{f}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
            }
            if !header
                .iter()
                .any(|h| normalise_header(h) == normalise_header(theirs))
            {
                errors.push(format!("columns.{theirs}"), "the file has no such header");
            }
        }
        let mut at = HashMap::new();
        let mut ignored = Vec::new();
        for (i, h) in header.iter().enumerate() {
            let norm = normalise_header(h);
            let field = match custom.get(&norm) {
                Some(&"ignore") => continue,
                Some(ours) => fields.iter().find(|(f, _)| f == ours).map(|(f, _)| *f),
                None => fields
                    .iter()
                    .find(|(_, names)| names.iter().any(|n| *n == norm))
                    .map(|(f, _)| *f),
            };
            match field {
                Some(f) => {
                    if at.insert(f, i).is_some() {
                        errors.push(
                            "file",
                            format!("two columns are `{f}`; map one of them with `columns`"),
                        );
                    }
                }
                None if norm.is_empty() => {}
                None => ignored.push(h.clone()),
            }
        }
        for group in kind.required() {
            if !group.iter().any(|f| at.contains_key(f)) {
                errors.push(
                    "file",
                    format!(
                        "a {} file needs a column for {}",
                        kind.as_str(),
                        group.join(" or ")
                    ),
                );
            }
        }
        errors.finish()?;
        Ok(Self { at, ignored })
    }

    fn get<'r>(&self, row: &'r [String], field: &str) -> Option<&'r str> {
        self.at
            .get(field)
            .and_then(|&i| row.get(i))
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }
}

/// What the parser needs of the brand, read before it starts.
pub struct ImportContext {
    pub calendar: BrandCalendar,
    /// Store codes and IDs → store ID.
    pub stores: HashMap<String, StoreId>,
    pub now: OffsetDateTime,
}

fn reject(line: u64, field: &str, reason: impl Into<String>) -> Rejection {
    Rejection {
        line,
        field: Some(field.to_owned()),
        reason: reason.into(),
    }
}

/// `YYYY-MM-DD`, `YYYY/MM/DD`, `YYYY.MM.DD` or `YYYYMMDD`.
fn parse_day(s: &str) -> Option<Date> {
    let digits: String = s.chars().filter(char::is_ascii_digit).collect();
    let separated = s.split(['-', '/', '.']).collect::<Vec<_>>();
    let (y, m, d) = if separated.len() == 3 {
        (
            separated[0].parse().ok()?,
            separated[1].parse::<u8>().ok()?,
            separated[2].parse().ok()?,
        )
    } else if digits.len() == 8 && digits.len() == s.len() {
        (
            digits[..4].parse().ok()?,
            digits[4..6].parse::<u8>().ok()?,
            digits[6..].parse().ok()?,
        )
    } else {
        return None;
    };
    Date::from_calendar_date(y, time::Month::try_from(m).ok()?, d).ok()
}

/// An instant: RFC 3339 with its offset, or a local date and time in the brand's zone
/// (`2025-11-11 20:15[:30]`, `2025/11/11 20:15`), or a local date (its midnight).
fn parse_instant(s: &str, calendar: &BrandCalendar) -> Option<OffsetDateTime> {
    if let Ok(t) = OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
        return Some(t);
    }
    let (day, clock) = match s.split_once([' ', 'T']) {
        Some((d, c)) => (d, Some(c.trim())),
        None => (s, None),
    };
    let date = parse_day(day)?;
    let time = match clock {
        None => Time::MIDNIGHT,
        Some(c) => {
            let parts: Vec<&str> = c.split(':').collect();
            if !(2..=3).contains(&parts.len()) {
                return None;
            }
            let second = parts
                .get(2)
                .map_or(Some(0), |p| p.split('.').next()?.parse().ok())?;
            Time::from_hms(parts[0].parse().ok()?, parts[1].parse().ok()?, second).ok()?
        }
    };
    calendar.at(date, time)
}

/// Channels by our names and the words Chinese exports use.
fn parse_channel(s: &str) -> Option<Channel> {
    let known = match s.trim().to_lowercase().as_str() {
        "小程序" | "微信小程序" | "mini_program" | "miniprogram" => "mini_program",
        "app" | "应用" => "app",
        "门店" | "門店" | "pos" | "store" | "线下" => "pos",
        "网店" | "商城" | "web_shop" | "webshop" | "online" | "线上" => "web_shop",
        "会员卡" | "card" => "card",
        "导入" | "import" => "import",
        "api" => "api",
        _ => return None,
    };
    serde_json::from_value(serde_json::Value::String(known.into())).ok()
}

fn parse_gender(s: &str) -> Option<Gender> {
    Some(match s.trim().to_lowercase().as_str() {
        "f" | "female" | "女" | "woman" => Gender::Female,
        "m" | "male" | "男" | "man" => Gender::Male,
        "other" | "其他" => Gender::Other,
        "undisclosed" | "未知" | "保密" => Gender::Undisclosed,
        _ => return None,
    })
}

fn store_of(
    ctx: &ImportContext,
    line: u64,
    value: Option<&str>,
) -> std::result::Result<Option<StoreId>, Rejection> {
    match value {
        None => Ok(None),
        Some(v) => ctx
            .stores
            .get(v)
            .cloned()
            .map(Some)
            .ok_or_else(|| reject(line, "store", format!("no store has the code or ID {v:?}"))),
    }
}

fn source_of(options: &ImportOptions) -> String {
    options.source.clone().unwrap_or_else(|| "import".into())
}

/// Reads and checks a whole file. Whole-file problems (no header, a missing required column,
/// unreadable CSV) are one error naming what to fix; row problems become rejections.
pub fn parse_file(
    kind: ImportKind,
    bytes: &[u8],
    options: &ImportOptions,
    ctx: &ImportContext,
) -> std::result::Result<ParsedFile, ValidationError> {
    if bytes.len() > MAX_IMPORT_BYTES {
        return Err(ValidationError::field(
            "file",
            format!("is larger than {} MiB; split it", MAX_IMPORT_BYTES >> 20),
        ));
    }
    let records = read_records(bytes, options.encoding)?;
    let columns = Columns::map(kind, &records.header, options)?;
    let items = match kind {
        ImportKind::Members => member_items(&records, &columns, options, ctx),
        ImportKind::Transactions => purchase_items(&records, &columns, options, ctx),
    };
    Ok(ParsedFile {
        kind,
        encoding: records.encoding,
        ignored_columns: columns.ignored,
        items,
    })
}

fn member_items(
    records: &Records,
    columns: &Columns,
    options: &ImportOptions,
    ctx: &ImportContext,
) -> Vec<Item> {
    let source = source_of(options);
    // Identities seen so far in the file → the line they were on.
    let mut seen: HashMap<(&'static str, String), u64> = HashMap::new();
    let mut items = Vec::with_capacity(records.rows.len());
    for (line, row) in &records.rows {
        let line = *line;
        let parsed = row
            .as_ref()
            .map_err(|reason| Rejection {
                line,
                field: None,
                reason: reason.clone(),
            })
            .and_then(|row| member_row(line, row, columns, &source, ctx));
        let parsed = parsed.and_then(|input| {
            let keys = [
                ("external_id", input.external_ids.first().map(|e| e.id.clone())),
                ("phone", input.phone.clone().map(Personal::into_inner)),
                ("card_number", input.card_number.clone()),
            ];
            for (field, value) in keys.iter().filter_map(|(f, v)| v.clone().map(|v| (*f, v))) {
                // Phones are compared as the engine will, so 138… and +86 138… are one.
                let key = if field == "phone" {
                    Phone::parse(&value).map_or(value, |p| p.e164().to_owned())
                } else {
                    value
                };
                if let Some(first) = seen.get(&(field, key.clone())) {
                    return Err(reject(line, field, format!("duplicate of line {first}")));
                }
                seen.insert((field, key), line);
            }
            Ok(input)
        });
        items.push(Item {
            line,
            row: parsed.map(|m| Row::Member(Box::new(m))),
        });
    }
    items
}

fn member_row(
    line: u64,
    row: &[String],
    columns: &Columns,
    source: &str,
    ctx: &ImportContext,
) -> std::result::Result<EnrolInput, Rejection> {
    let get = |f: &str| columns.get(row, f);
    let birthday = match get("birthday") {
        None => None,
        Some(b) => Some(
            parse_day(b)
                .map(|d| d.to_string())
                .ok_or_else(|| reject(line, "birthday", format!("{b:?} is not a date (YYYY-MM-DD)")))?,
        ),
    };
    let gender = match get("gender") {
        None => None,
        Some(g) => Some(parse_gender(g).ok_or_else(|| {
            reject(
                line,
                "gender",
                format!("{g:?} is not one of female, male, other, undisclosed (女, 男)"),
            )
        })?),
    };
    let channel = match get("channel") {
        None => Some(Channel::Import),
        Some(c) => {
            Some(parse_channel(c).ok_or_else(|| reject(line, "channel", format!("{c:?} is not a channel")))?)
        }
    };
    let household_size = match get("household_size") {
        None => None,
        Some(h) => Some(
            h.parse()
                .map_err(|_| reject(line, "household_size", format!("{h:?} is not a whole number")))?,
        ),
    };
    let tags = get("tags")
        .map(|t| {
            t.split([';', '|', '、', '，'])
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    Ok(EnrolInput {
        name: get("name").map(Personal::from),
        phone: get("phone").map(Personal::from),
        email: get("email").map(Personal::from),
        birthday: birthday.map(Personal::from),
        gender,
        city: get("city").map(str::to_owned),
        household_size,
        channel,
        store_id: store_of(ctx, line, get("store"))?,
        external_ids: get("external_id")
            .map(|id| {
                vec![ExternalIdInput {
                    channel: source.to_owned(),
                    id: id.to_owned(),
                }]
            })
            .unwrap_or_default(),
        card_number: get("card_number").map(str::to_owned),
        consents: None,
        attributes: None,
        tags,
    })
}

/// The parts of a row that belong to the whole order: every line of an order must agree.
fn order_fields<'r>(row: &'r [String], columns: &Columns) -> Vec<Option<&'r str>> {
    [
        "member_id",
        "member_external_id",
        "phone",
        "occurred_at",
        "store",
        "channel",
        "paid_amount",
    ]
    .iter()
    .map(|f| columns.get(row, f))
    .collect()
}

/// The rows of one order: consecutive rows with one order ID.
struct OrderRows<'r> {
    line: u64,
    order: Option<&'r str>,
    rows: std::result::Result<Vec<&'r [String]>, Rejection>,
}

fn purchase_items(
    records: &Records,
    columns: &Columns,
    options: &ImportOptions,
    ctx: &ImportContext,
) -> Vec<Item> {
    let mut orders: Vec<OrderRows> = Vec::new();
    let mut first_line: HashMap<&str, u64> = HashMap::new();
    for (line, row) in &records.rows {
        let line = *line;
        let row = match row {
            Err(reason) => {
                orders.push(OrderRows {
                    line,
                    order: None,
                    rows: Err(Rejection {
                        line,
                        field: None,
                        reason: reason.clone(),
                    }),
                });
                continue;
            }
            Ok(r) => r.as_slice(),
        };
        let Some(order) = columns.get(row, "order_id") else {
            orders.push(OrderRows {
                line,
                order: None,
                rows: Err(reject(line, "order_id", "is empty")),
            });
            continue;
        };
        if let Some(current) = orders.last_mut().filter(|o| o.order == Some(order)) {
            if let Ok(rows) = &mut current.rows {
                if order_fields(rows[0], columns) == order_fields(row, columns) {
                    rows.push(row);
                } else {
                    current.rows = Err(reject(
                        line,
                        "order_id",
                        format!(
                            "the lines of order {order} (from line {}) disagree on the member, time, store, channel or paid amount",
                            current.line
                        ),
                    ));
                }
            }
            continue;
        }
        if let Some(first) = first_line.get(order) {
            orders.push(OrderRows {
                line,
                order: None,
                rows: Err(reject(
                    line,
                    "order_id",
                    format!("order {order} already appears at line {first}"),
                )),
            });
            continue;
        }
        first_line.insert(order, line);
        orders.push(OrderRows {
            line,
            order: Some(order),
            rows: Ok(vec![row]),
        });
    }
    orders
        .into_iter()
        .map(|o| Item {
            line: o.line,
            row: o
                .rows
                .and_then(|rows| purchase_row(o.line, &rows, columns, options, ctx))
                .map(|p| Row::Purchase(Box::new(p))),
        })
        .collect()
}

/// An amount of a sale: refunds are imported as refunds, so a negative amount is refused here,
/// with its line, rather than by the engine later.
fn amount(line: u64, field: &str, value: &str) -> std::result::Result<i64, Rejection> {
    let v = parse_minor_units(value.replace(['¥', '￥'], "").trim().as_bytes()).ok_or_else(|| {
        reject(
            line,
            field,
            format!("{value:?} is not an amount with at most two decimals"),
        )
    })?;
    if v < 0 {
        return Err(reject(line, field, format!("{value:?} is negative")));
    }
    Ok(v)
}

fn purchase_row(
    line: u64,
    rows: &[&[String]],
    columns: &Columns,
    options: &ImportOptions,
    ctx: &ImportContext,
) -> std::result::Result<PurchaseRow, Rejection> {
    let first = rows[0];
    let get = |f: &str| columns.get(first, f);
    let order_id = get("order_id").unwrap_or_default().to_owned();
    let occurred = get("occurred_at").ok_or_else(|| reject(line, "occurred_at", "is empty"))?;
    let occurred_at = parse_instant(occurred, &ctx.calendar).ok_or_else(|| {
        reject(
            line,
            "occurred_at",
            format!(
                "{occurred:?} is not a date and time (YYYY-MM-DD HH:MM:SS in the brand's zone, or RFC 3339)"
            ),
        )
    })?;
    if occurred_at > ctx.now + time::Duration::minutes(5) {
        return Err(reject(
            line,
            "occurred_at",
            format!("{occurred:?} is in the future"),
        ));
    }
    let channel = match get("channel") {
        None => Channel::Import,
        Some(c) => {
            parse_channel(c).ok_or_else(|| reject(line, "channel", format!("{c:?} is not a channel")))?
        }
    };
    let member_id = match get("member_id") {
        None => None,
        Some(m) => Some(
            m.parse::<MemberId>()
                .map_err(|_| reject(line, "member_id", format!("{m:?} is not a member ID")))?,
        ),
    };
    let member_external_id = get("member_external_id").map(str::to_owned);
    let phone = get("phone").map(str::to_owned);
    if member_id.is_none() && member_external_id.is_none() && phone.is_none() {
        return Err(reject(
            line,
            "member_id",
            "no member: give member_id, member_external_id or phone",
        ));
    }
    let mut lines = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        let at = line + i as u64;
        let get = |f: &str| columns.get(row, f);
        let quantity = match get("quantity") {
            None => 1,
            Some(q) => match q.parse::<i64>() {
                Ok(n) if (1..=1_000_000).contains(&n) => n,
                Ok(_) => {
                    return Err(reject(
                        at,
                        "quantity",
                        format!("{q:?} is not between 1 and 1000000"),
                    ))
                }
                Err(_) => return Err(reject(at, "quantity", format!("{q:?} is not a whole number"))),
            },
        };
        let line_amount = match (get("amount"), get("paid_amount")) {
            (Some(a), _) => amount(at, "amount", a)?,
            (None, Some(p)) if rows.len() == 1 => amount(at, "paid_amount", p)?,
            _ => return Err(reject(at, "amount", "is empty")),
        };
        lines.push(LineInput {
            sku: get("sku").unwrap_or("UNSPECIFIED").to_owned(),
            category: get("category").map(str::to_owned),
            quantity,
            amount: line_amount,
            reward: false,
        });
    }
    let paid_amount = match get("paid_amount") {
        Some(p) => amount(line, "paid_amount", p)?,
        None => lines.iter().map(|l| l.amount).sum(),
    };
    Ok(PurchaseRow {
        input: PurchaseInput {
            order_id,
            member_id: member_id.clone(),
            phone: if member_id.is_some() || member_external_id.is_some() {
                None
            } else {
                phone.map(Personal::from)
            },
            member_code: None,
            enrol_if_unknown: Some(options.enrol_unknown_phones),
            store_id: store_of(ctx, line, get("store"))?,
            channel,
            occurred_at: Some(occurred_at),
            lines,
            paid_amount,
        },
        member_external_id,
    })
}

/// The report of rejected lines as CSV: `line,field,reason`, what the CLI writes beside the
/// file and the API serves for a job.
pub fn rejections_csv(rejected: &[Rejection]) -> Result<Vec<u8>> {
    let failed = |e: csv::Error| CoreError::Corrupt(format!("writing CSV: {e}"));
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(["line", "field", "reason"]).map_err(failed)?;
    for r in rejected {
        w.write_record([
            r.line.to_string().as_str(),
            &spreadsheet_safe(r.field.as_deref().unwrap_or("")),
            &spreadsheet_safe(&r.reason),
        ])
        .map_err(failed)?;
    }
    w.into_inner()
        .map_err(|e| CoreError::Corrupt(format!("writing CSV: {e}")))
}

/// The field and reason of an engine error, for the report.
fn rejection_of(line: u64, e: &CoreError) -> Rejection {
    let first = match e {
        CoreError::Validation(v) => v.errors.first(),
        CoreError::Conflict { errors, .. } => errors.first(),
        _ => None,
    };
    match first {
        Some(f) => Rejection {
            line,
            field: Some(f.field.clone()),
            reason: f.reason.clone(),
        },
        None => Rejection {
            line,
            field: None,
            reason: e.to_string(),
        },
    }
}

impl Core {
    /// What parsing needs of the caller's brand: its time zone and its stores.
    pub async fn import_context(&self, brand: &BrandId) -> Result<ImportContext> {
        let mut tx = self.storage.read().await?;
        let record = tx.get_brand(brand).await?.ok_or(CoreError::NotFound("brand"))?;
        let mut stores = HashMap::new();
        let mut page = huiyuan_store::Page::first(1000);
        loop {
            let batch = tx.list_stores(brand, &page).await?;
            for s in &batch {
                stores.insert(s.code.clone(), s.id.clone());
                stores.insert(s.id.to_string(), s.id.clone());
            }
            match batch.last() {
                Some(last) if batch.len() == 1000 => page.starting_after = Some(last.id.to_string()),
                _ => break,
            }
        }
        Ok(ImportContext {
            calendar: BrandCalendar::new(&record.timezone)?,
            stores,
            now: self.now(),
        })
    }

    /// Hands a slice of a parsed file's items to the engine (at most [`IMPORT_BATCH`]): one
    /// transaction. Rejections are appended to `rejected`, counts to `report`.
    pub async fn import_items(
        &self,
        actor: &Actor,
        items: &[Item],
        options: &ImportOptions,
        report: &mut ImportReport,
        rejected: &mut Vec<Rejection>,
    ) -> Result<()> {
        report.items += items.len() as u64;
        let mut reject_item = |r: Rejection, report: &mut ImportReport| {
            report.rejected += 1;
            rejected.push(r);
        };
        let mut members = Vec::new();
        let mut purchases = Vec::new();
        let mut lines = Vec::new();
        let owners = self.members_by_external_id(actor, items, options).await?;
        for item in items {
            match &item.row {
                Err(r) => reject_item(r.clone(), report),
                Ok(Row::Member(m)) => {
                    members.push((**m).clone());
                    lines.push(item.line);
                }
                Ok(Row::Purchase(p)) => {
                    let mut input = p.input.clone();
                    if let Some(external) = &p.member_external_id {
                        match owners.get(external.as_str()) {
                            Some(id) => input.member_id = Some(id.clone()),
                            None => {
                                reject_item(
                                    reject(
                                        item.line,
                                        "member_external_id",
                                        format!("no member has the external ID {external:?}"),
                                    ),
                                    report,
                                );
                                continue;
                            }
                        }
                    }
                    purchases.push(input);
                    lines.push(item.line);
                }
            }
        }
        if !members.is_empty() {
            for (line, outcome) in lines.iter().zip(self.enrol_many(actor, members).await?) {
                match outcome {
                    Ok(Enrolment::Created(_)) => report.imported += 1,
                    Ok(Enrolment::Existing(_)) => report.unchanged += 1,
                    Err(e) => reject_item(rejection_of(*line, &e), report),
                }
            }
        }
        if !purchases.is_empty() {
            for (line, outcome) in lines.iter().zip(
                self.record_purchases_from(actor, purchases, SaleSource::History)
                    .await?,
            ) {
                match outcome {
                    Ok(o) if o.created => report.imported += 1,
                    Ok(_) => report.unchanged += 1,
                    Err(e) => reject_item(rejection_of(*line, &e), report),
                }
            }
        }
        rejected.sort_by_key(|r| r.line);
        Ok(())
    }

    /// The members the items' external IDs belong to, looked up in one read.
    async fn members_by_external_id<'i>(
        &self,
        actor: &Actor,
        items: &'i [Item],
        options: &ImportOptions,
    ) -> Result<HashMap<&'i str, MemberId>> {
        let source = source_of(options);
        let brand = &actor.brand_id;
        let mut owners = HashMap::new();
        let wanted: Vec<&str> = items
            .iter()
            .filter_map(|i| match &i.row {
                Ok(Row::Purchase(p)) => p.member_external_id.as_deref(),
                _ => None,
            })
            .collect();
        if wanted.is_empty() {
            return Ok(owners);
        }
        let mut tx = self.storage.read().await?;
        for external in wanted {
            if owners.contains_key(external) {
                continue;
            }
            let identity = Identity::External {
                channel: source.clone(),
                id: external.to_owned(),
            };
            if let Some(id) = tx
                .find_identity(brand, &identity.kind(), &self.identity_hash(brand, &identity))
                .await?
            {
                owners.insert(external, id);
            }
        }
        Ok(owners)
    }

    /// Imports a whole file in the caller's process (the CLI), batch by batch, telling
    /// `progress` the items done after each. Returns the report and every rejection.
    pub async fn import_file(
        &self,
        actor: &Actor,
        kind: ImportKind,
        bytes: &[u8],
        options: &ImportOptions,
        progress: &(dyn Fn(u64, u64) + Sync),
    ) -> Result<(ImportReport, Vec<Rejection>)> {
        actor.require(kind.permission())?;
        let ctx = self.import_context(&actor.brand_id).await?;
        let parsed = parse_file(kind, bytes, options, &ctx)?;
        let mut report = ImportReport {
            encoding: parsed.encoding.into(),
            ignored_columns: parsed.ignored_columns.clone(),
            ..ImportReport::default()
        };
        let mut rejected = Vec::new();
        let total = parsed.items.len() as u64;
        for chunk in parsed.items.chunks(IMPORT_BATCH) {
            self.import_items(actor, chunk, options, &mut report, &mut rejected)
                .await?;
            progress(report.items, total);
        }
        if total >= IMPORT_BATCH as u64 {
            self.refresh_statistics().await;
        }
        Ok((report, rejected))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> ImportContext {
        let store: StoreId = "sto_01JD4ZQ7X8Y2K3M4N5P6Q7R8S9".parse().unwrap();
        ImportContext {
            calendar: BrandCalendar::new("Asia/Shanghai").unwrap(),
            stores: HashMap::from([("SH01".to_owned(), store.clone()), (store.to_string(), store)]),
            now: OffsetDateTime::new_utc(
                Date::from_calendar_date(2026, time::Month::December, 1).unwrap(),
                Time::MIDNIGHT,
            ),
        }
    }

    fn parse(kind: ImportKind, bytes: &[u8]) -> ParsedFile {
        parse_file(kind, bytes, &ImportOptions::default(), &ctx()).unwrap()
    }

    fn rejected(p: &ParsedFile) -> Vec<(u64, Option<String>)> {
        p.items
            .iter()
            .filter_map(|i| i.row.as_ref().err().map(|r| (r.line, r.field.clone())))
            .collect()
    }

    #[test]
    fn a_gbk_file_is_recognised_and_read() {
        let text = "手机号,姓名,性别,渠道\n13800138000,陈七,女,小程序\n13800138001,王五,男,门店\n";
        let (gbk, _, _) = encoding_rs::GBK.encode(text);
        let p = parse(ImportKind::Members, &gbk);
        assert_eq!(p.encoding, "gbk");
        let Ok(Row::Member(m)) = &p.items[0].row else {
            panic!("{:?}", p.items[0])
        };
        assert_eq!(
            (m.name.as_deref(), m.gender, m.channel),
            (Some("陈七"), Some(Gender::Female), Some(Channel::MiniProgram))
        );
        let Ok(Row::Member(m)) = &p.items[1].row else {
            panic!()
        };
        assert_eq!(m.channel, Some(Channel::Pos));
        // The same bytes read as UTF-8 on request: every line is refused, naming the encoding.
        let forced = parse_file(
            ImportKind::Members,
            &gbk,
            &ImportOptions {
                encoding: FileEncoding::Utf8,
                ..Default::default()
            },
            &ctx(),
        );
        assert!(forced.unwrap_err().errors[0].reason.contains("UTF-8"));
    }

    #[test]
    fn a_bom_blank_lines_and_quoted_fields_are_fine() {
        let p = parse(
            ImportKind::Members,
            "\u{feff}phone,name,tags\n\n\"13800138000\",\"Li, Lei\",\"a;b、c\"\n".as_bytes(),
        );
        assert_eq!(p.items.len(), 1);
        let Ok(Row::Member(m)) = &p.items[0].row else {
            panic!()
        };
        assert_eq!((m.name.as_deref(), m.tags.len()), (Some("Li, Lei"), 3));
        assert_eq!(p.items[0].line, 3);
    }

    #[test]
    fn headers_missing_or_mapped_wrongly_refuse_the_file() {
        let err = parse_file(
            ImportKind::Transactions,
            b"order_id,phone\nA,1\n",
            &ImportOptions::default(),
            &ctx(),
        )
        .unwrap_err();
        let reasons: Vec<&str> = err.errors.iter().map(|e| e.reason.as_str()).collect();
        assert_eq!(reasons.len(), 2, "{reasons:?}");
        assert!(reasons[0].contains("occurred_at") && reasons[1].contains("amount or paid_amount"));
        let options = ImportOptions {
            columns: BTreeMap::from([
                ("Mobile".into(), "telephone".into()),
                ("Absent".into(), "phone".into()),
            ]),
            ..Default::default()
        };
        let err = parse_file(ImportKind::Members, b"Mobile,name\n1,a\n", &options, &ctx()).unwrap_err();
        let fields: Vec<&str> = err.errors.iter().map(|e| e.field.as_str()).collect();
        assert!(
            fields.contains(&"columns.Mobile") && fields.contains(&"columns.Absent"),
            "{fields:?}"
        );
        let mapped = ImportOptions {
            columns: BTreeMap::from([("Mobile".into(), "phone".into())]),
            ..Default::default()
        };
        let p = parse_file(
            ImportKind::Members,
            b"Mobile,name\n13800138000,a\n",
            &mapped,
            &ctx(),
        )
        .unwrap();
        assert!(p.items[0].row.is_ok());
    }

    #[test]
    fn order_lines_group_and_must_agree() {
        let file = "订单号,手机号,下单时间,门店,商品编码,数量,金额,实付金额\n\
                    A1,13800138000,2026/11/11 20:15,SH01,TEE,1,¥70.50,80.00\n\
                    A1,13800138000,2026/11/11 20:15,SH01,CAP,2,20,80.00\n\
                    A2,13800138000,2026-11-12,,TEE,1,10,\n\
                    A2,13800138001,2026-11-12,,CAP,1,10,\n\
                    A1,13800138000,2026/11/11 20:15,SH01,TEE,1,70.50,80.00\n\
                    A3,13800138000,2027-01-01,,TEE,1,10,\n\
                    A4,13800138000,2026-11-12 25:00,,TEE,1,10,\n\
                    A5,13800138000,2026-11-12,XX,TEE,1,10,\n";
        let p = parse(ImportKind::Transactions, file.as_bytes());
        let Ok(Row::Purchase(a1)) = &p.items[0].row else {
            panic!("{:?}", p.items[0])
        };
        assert_eq!(a1.input.lines.len(), 2);
        assert_eq!((a1.input.lines[0].amount, a1.input.paid_amount), (7_050, 8_000));
        assert_eq!(
            a1.input.occurred_at.map(|t| t.unix_timestamp()),
            Some(1_794_399_300),
            "20:15 in Shanghai is 12:15 UTC"
        );
        assert_eq!(a1.input.enrol_if_unknown, Some(false));
        assert_eq!(
            rejected(&p),
            vec![
                // The line that disagrees with the order's first line (4).
                (5, Some("order_id".into())),
                (6, Some("order_id".into())),
                (7, Some("occurred_at".into())),
                (8, Some("occurred_at".into())),
                (9, Some("store".into())),
            ]
        );
    }

    #[test]
    fn duplicate_members_are_caught_however_the_phone_is_written() {
        let p = parse(
            ImportKind::Members,
            b"phone,external_id\n13800138000,A\n+86 138 0013 8000,B\n139,A\n",
        );
        assert_eq!(
            rejected(&p),
            vec![(3, Some("phone".into())), (4, Some("external_id".into()))]
        );
    }

    // Fuzz targets (proptest: cargo-fuzz needs a nightly toolchain, which this project's CI does
    // not have). The parser sees files from other systems, so nothing it is given may panic, and
    // what it reports must point at real lines.
    mod fuzz {
        use proptest::prelude::*;

        use super::*;

        /// One CSV field of the kinds real exports hold, and the ones that break naive parsers.
        fn field() -> impl Strategy<Value = String> {
            prop_oneof![
                "1[3-9][0-9]{9}",
                "\\+86 1[3-9][0-9] [0-9]{4} [0-9]{4}",
                "[0-9]{1,12}",
                "20[0-9]{2}-[01][0-9]-[0-3][0-9]( [0-2][0-9]:[0-5][0-9])?",
                "-?[0-9]{1,7}(\\.[0-9]{0,3})?",
                "[\\p{Han}]{1,4}",
                "\"[^\"]{0,6}\"",
                "[ -~]{0,10}",
                Just(String::new()),
                Just("SH01".to_owned()),
            ]
        }

        fn csv_text(header: &'static str, width: usize) -> impl Strategy<Value = String> {
            prop::collection::vec(
                prop_oneof![
                    8 => prop::collection::vec(field(), width).prop_map(|f| f.join(",")),
                    1 => prop::collection::vec(field(), 0..width + 3).prop_map(|f| f.join(",")),
                    1 => Just(String::new()),
                ],
                0..40,
            )
            .prop_map(move |rows| format!("{header}\n{}\n", rows.join("\n")))
        }

        /// Every item's line is a line of the file, and lines only grow.
        fn lines_are_real(parsed: &ParsedFile, text_lines: u64) {
            let mut last = 1;
            for item in &parsed.items {
                assert!(item.line >= last.max(2), "line {} after {last}", item.line);
                assert!(item.line <= text_lines, "line {} of {text_lines}", item.line);
                if let Err(r) = &item.row {
                    // An order's rejection names the line at fault, which may follow its first.
                    assert!(
                        r.line >= item.line && r.line <= text_lines,
                        "{r:?} of item at {}",
                        item.line
                    );
                    assert!(!r.reason.is_empty());
                }
                last = item.line;
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(400))]

            #[test]
            fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2_000)) {
                for kind in [ImportKind::Members, ImportKind::Transactions] {
                    for encoding in [FileEncoding::Auto, FileEncoding::Utf8, FileEncoding::Gbk] {
                        let options = ImportOptions { encoding, ..Default::default() };
                        if let Ok(parsed) = parse_file(kind, &bytes, &options, &ctx()) {
                            let lines = bytes.iter().filter(|b| **b == b'\n' || **b == b'\r').count() as u64 + 1;
                            lines_are_real(&parsed, lines);
                        }
                    }
                }
            }

            #[test]
            fn member_files_account_for_every_line(
                text in csv_text("phone,name,birthday,gender,store,tags", 6),
            ) {
                let parsed = parse(ImportKind::Members, text.as_bytes());
                lines_are_real(&parsed, text.lines().count() as u64);
                // One item per non-blank line after the header, unless quotes joined lines.
                if !text.contains('"') {
                    let rows = text.lines().skip(1).filter(|l| !l.trim().is_empty()).count();
                    prop_assert_eq!(parsed.items.len(), rows);
                }
            }

            #[test]
            fn transaction_files_account_for_every_line(
                text in csv_text("order_id,phone,occurred_at,store,sku,quantity,amount", 7),
            ) {
                let parsed = parse(ImportKind::Transactions, text.as_bytes());
                lines_are_real(&parsed, text.lines().count() as u64);
                for item in &parsed.items {
                    if let Ok(Row::Purchase(p)) = &item.row {
                        // What is accepted is what the engine would accept.
                        prop_assert!(p.input.paid_amount >= 0);
                        prop_assert!(p.input.occurred_at.is_some_and(|t| t <= ctx().now));
                    }
                }
            }

            #[test]
            fn arbitrary_text_under_a_good_header_never_panics(
                body in "[^\u{0}]{0,600}",
                kind in prop_oneof![Just(ImportKind::Members), Just(ImportKind::Transactions)],
            ) {
                let header = match kind {
                    ImportKind::Members => "手机号,姓名,生日,门店",
                    ImportKind::Transactions => "订单号,手机号,下单时间,实付金额",
                };
                let text = format!("{header}\n{body}");
                if let Ok(parsed) = parse_file(kind, text.as_bytes(), &ImportOptions::default(), &ctx()) {
                    let lines = text.chars().filter(|c| *c == '\n' || *c == '\r').count() as u64 + 1;
                    lines_are_real(&parsed, lines);
                }
            }
        }
    }
}
