//! `huiyuan demo`: a data folder with the demo brand (see `huiyuan-demo`: stores, catalogue,
//! coupons and members simulated through the real engine), then the server. A second run on
//! the same folder reuses what the first made.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use huiyuan_core::crypto::MasterKey;
use huiyuan_core::ErrorCode;
use huiyuan_demo::{DemoOptions, DemoStats};
use huiyuan_store::Storage;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

/// What the demo prints on every start, kept (0600) in the data folder.
#[derive(Debug, Serialize, Deserialize)]
pub struct Credentials {
    pub brand_slug: String,
    pub username: String,
    pub password: String,
    pub api_key: String,
}

const CREDENTIALS_FILE: &str = "demo-credentials.json";

/// Where the demo keeps its admin login and API key (mode 0600).
pub fn credentials_file(data: &Path) -> PathBuf {
    data.join(CREDENTIALS_FILE)
}

/// Makes the demo brand on first run, or reads the credentials of the one already there. The
/// credentials are written last: a folder without them holds an unfinished demo.
pub async fn prepare(
    storage: Arc<dyn Storage>,
    master: &MasterKey,
    data: &Path,
    options: &DemoOptions,
) -> Result<Credentials, crate::AnyError> {
    let file = credentials_file(data);
    if file.exists() {
        return Ok(serde_json::from_str(&std::fs::read_to_string(&file)?)?);
    }
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new(1)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} demo data [{bar:30}] {pos}/{len} days {msg} ({elapsed})")
            .map_err(|e| e.to_string())?
            .progress_chars("=> "),
    );
    let started = Instant::now();
    let progress = |done: u64, total: u64, s: &DemoStats| {
        bar.set_length(total);
        bar.set_position(done);
        bar.set_message(format!(
            "{} members, {} purchases",
            s.members,
            s.purchases + s.coupon_sales
        ));
    };
    let made = huiyuan_demo::generate(storage, master, options, &progress)
        .await
        .map_err(|e| match e {
            huiyuan_demo::DemoError::Core(huiyuan_core::CoreError::Conflict {
                code: ErrorCode::SlugTaken,
                ..
            }) => {
                format!(
                    "{} holds an unfinished demo (a run was stopped): delete the folder and run again",
                    data.display()
                )
            }
            other => other.to_string(),
        })?;
    bar.finish_and_clear();
    let s = &made.stats;
    eprintln!(
        "demo data: {} members, {} purchases ({} with a coupon at the till), {} refunds, {} coupons issued, \
         {} check-ins, {} points rewards over {} days, in {:.1} s",
        s.members,
        s.purchases + s.coupon_sales,
        s.coupon_sales,
        s.refunds,
        s.coupons_issued,
        s.check_ins,
        s.rewards,
        s.days,
        started.elapsed().as_secs_f64()
    );
    let creds = Credentials {
        brand_slug: made.brand_slug,
        username: made.username,
        password: made.password,
        api_key: made.api_key,
    };
    crate::write_private(&file, &serde_json::to_string_pretty(&creds)?)?;
    Ok(creds)
}

/// A one-time sign-in link to the member pages of the demo's first member, made at each start.
pub async fn member_link(core: &huiyuan_core::Core, creds: &Credentials) -> Result<String, crate::AnyError> {
    let brand = core
        .find_brand(&creds.brand_slug)
        .await?
        .ok_or("the demo brand is missing")?;
    let system = huiyuan_core::Actor::system(brand.id);
    let first = core
        .search_members(&system, &Default::default(), &huiyuan_store::Page::first(1))
        .await?
        .into_iter()
        .next()
        .ok_or("the demo brand has no members")?;
    let (token, _) = core.member_sign_in_link(&system, &first.id).await?;
    Ok(format!("/m/sign-in?token={token}"))
}
