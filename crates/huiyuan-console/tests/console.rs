//! The console and the member pages over real HTTP, on a small demo brand in SQLite: every page
//! for every role, what each role may open, masking, CSRF, forms that refuse bad input without
//! changing anything, the member's one-time link, and the browser journey (Playwright driving
//! Debian's Chromium; see `browser/`).

use std::net::SocketAddr;
use std::sync::Arc;

use huiyuan_api::{app_with_pages, ApiConfig, AppState};
use huiyuan_core::auth::NewOperator;
use huiyuan_core::clock::{test_start, OffsetClock};
use huiyuan_core::crypto::MasterKey;
use huiyuan_core::{Actor, Core, CoreConfig};
use huiyuan_domain::access::Role;
use huiyuan_domain::ids::MemberId;
use huiyuan_store::Page;
use reqwest::StatusCode;

const PASSWORD: &str = "console test password";

struct Site {
    base: String,
    core: Arc<Core>,
    admin: Actor,
    admin_password: String,
}

/// A demo brand (300 members, two months) served with the console on a free port.
async fn site() -> Site {
    let dir = huiyuan_store_sqlite::testing::scratch_dir(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")));
    let file = dir.join(format!("{}.db", huiyuan_core::crypto::random_token(8)));
    let storage: Arc<dyn huiyuan_store::Storage> =
        Arc::new(huiyuan_store_sqlite::SqliteStorage::open(&file).await.unwrap());
    let master = MasterKey::generate();
    // The demo runs up to the harness's day (in the demo brand's zone), and the site's clock goes
    // on from there: CI moves that day to member days and month ends.
    let start = test_start();
    let today = start.to_offset(time::macros::offset!(+8)).date();
    let options = huiyuan_demo::DemoOptions {
        members: 300,
        months: 2,
        seed: 7,
        until: today,
    };
    let made = huiyuan_demo::generate(storage.clone(), &master, &options, &|_, _, _| {})
        .await
        .unwrap();
    let clock = Arc::new(OffsetClock::starting_at(start));
    let core = Core::new(storage, &master, clock, CoreConfig::default());
    let admin = Actor::system(made.brand_id.clone());
    for role in [Role::Marketer, Role::Clerk, Role::Analyst, Role::Auditor] {
        core.create_operator(
            &admin,
            NewOperator {
                username: format!("{}-1", role.as_str()),
                display_name: format!("{} one", role.as_str()),
                role,
                password: PASSWORD.into(),
            },
        )
        .await
        .unwrap();
    }
    let state = AppState::new(core, ApiConfig::default());
    let core = state.core.clone();
    let router = app_with_pages(state, huiyuan_console::router(core.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    Site {
        base: format!("http://{addr}"),
        core,
        admin,
        admin_password: made.password,
    }
}

/// A browser-like client signed in as `username`.
struct Browser {
    http: reqwest::Client,
    base: String,
}

impl Browser {
    async fn sign_in(site: &Site, username: &str, password: &str) -> Browser {
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let res = http
            .post(format!("{}/console/login", site.base))
            .form(&[
                ("username", username),
                ("password", password),
                ("next", "/console/"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "{username} signs in");
        Browser {
            http,
            base: site.base.clone(),
        }
    }

    async fn get(&self, path: &str) -> (StatusCode, String) {
        let res = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let status = res.status();
        (status, res.text().await.unwrap())
    }

    /// Posts a form with the CSRF token of `page` (as a browser posts the form it was shown).
    async fn post(&self, page: &str, action: &str, fields: &[(&str, &str)]) -> (StatusCode, String) {
        let (_, html) = self.get(page).await;
        let csrf = attr_after(&html, "name=\"csrf\" value=\"").unwrap_or_default();
        let nonce = attr_after(&html, "name=\"nonce\" value=\"").unwrap_or_default();
        let mut form: Vec<(&str, &str)> = vec![("csrf", &csrf), ("nonce", &nonce)];
        form.extend_from_slice(fields);
        let res = self
            .http
            .post(format!("{}{action}", self.base))
            .form(&form)
            .send()
            .await
            .unwrap();
        let status = res.status();
        (status, res.text().await.unwrap())
    }
}

fn attr_after(html: &str, marker: &str) -> Option<String> {
    let start = html.find(marker)? + marker.len();
    Some(html[start..].split('"').next()?.to_owned())
}

async fn some_member(site: &Site) -> (MemberId, String) {
    let members = site
        .core
        .search_members(&site.admin, &Default::default(), &Page::first(50))
        .await
        .unwrap();
    for m in members {
        let clear = site.core.get_member(&site.admin, &m.id, true).await.unwrap();
        if let Some(phone) = clear.phone {
            let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
            return (m.id, digits[digits.len() - 11..].to_owned());
        }
    }
    panic!("the demo has members with phones");
}

async fn balance(site: &Site, id: &MemberId) -> i64 {
    site.core.points_balance(&site.admin, id).await.unwrap().available
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console() {
    let site = site().await;
    let admin = Browser::sign_in(&site, "admin", &site.admin_password).await;
    let (member, phone) = some_member(&site).await;

    // Every page renders for the admin, with no server error and no unmasked phone.
    let pages = [
        "/console/dashboard".to_owned(),
        "/console/dashboard?granularity=week".to_owned(),
        "/console/dashboard?granularity=month&fresh=1".to_owned(),
        "/console/members".to_owned(),
        "/console/members?q=a".to_owned(),
        format!("/console/members/{member}"),
        "/console/programme".to_owned(),
        "/console/coupons".to_owned(),
        "/console/till".to_owned(),
        "/console/audit".to_owned(),
    ];
    for page in &pages {
        let (status, html) = admin.get(page).await;
        assert_eq!(status, StatusCode::OK, "{page}: {html}");
        assert!(!html.contains(&phone), "{page} shows a phone in clear");
    }
    let (_, coupons) = admin.get("/console/coupons").await;
    assert!(
        coupons.contains("id=\"redemptions\""),
        "the demo's till redemptions are listed"
    );
    // Searching by the phone finds the member, masked.
    let (status, html) = admin.get(&format!("/console/members?q={phone}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains(member.as_str()) && !html.contains(&phone));

    // Roles: a clerk lands on the till and gets the 403 page for the audit log and programme.
    let clerk = Browser::sign_in(&site, "clerk-1", PASSWORD).await;
    let res = clerk
        .http
        .get(format!("{}/console/", site.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["location"], "/console/till");
    for page in [
        "/console/audit",
        "/console/programme",
        "/console/dashboard",
        "/console/coupons",
    ] {
        let (status, html) = clerk.get(page).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "clerk opens {page}");
        assert!(html.contains("data-status=\"403\""), "{page} is the 403 page");
    }
    let (_, till) = clerk.get("/console/till").await;
    assert!(
        !till.contains("/console/audit"),
        "the clerk's menu has no audit log"
    );
    let auditor = Browser::sign_in(&site, "auditor-1", PASSWORD).await;
    assert_eq!(auditor.get("/console/audit").await.0, StatusCode::OK);
    assert_eq!(auditor.get("/console/till").await.0, StatusCode::FORBIDDEN);
    let analyst = Browser::sign_in(&site, "analyst-1", PASSWORD).await;
    assert_eq!(analyst.get("/console/dashboard").await.0, StatusCode::OK);
    assert_eq!(analyst.get("/console/audit").await.0, StatusCode::FORBIDDEN);

    // Masking: no role sees the phone without revealing; only a role with pii.reveal may, and
    // the reveal is audited.
    let page = format!("/console/members/{member}");
    for who in [&clerk, &auditor, &analyst] {
        let (status, html) = who.get(&page).await;
        assert_eq!(status, StatusCode::OK);
        assert!(!html.contains(&phone));
        assert!(!html.contains("/reveal\""), "no reveal button without pii.reveal");
    }
    let (status, _) = clerk.post(&page, &format!("{page}/reveal"), &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, html) = admin.post(&page, &format!("{page}/reveal"), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains(&phone), "the admin's reveal shows the phone");
    let (_, audit) = admin
        .get(&format!(
            "/console/audit?action=member.pii_revealed&target={member}"
        ))
        .await;
    assert!(audit.contains("member.pii_revealed"));

    // CSRF: a form without the session's token changes nothing.
    let before = balance(&site, &member).await;
    let res = admin
        .http
        .post(format!("{}{page}/adjust", site.base))
        .form(&[("csrf", "forged"), ("points", "100"), ("reason", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(balance(&site, &member).await, before);

    // Bad input: messages next to the field, nothing saved.
    let (status, html) = admin
        .post(
            &page,
            &format!("{page}/adjust"),
            &[("points", "lots"), ("reason", "")],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        html.contains(r#"data-field="points""#) && html.contains(r#"data-field="reason""#),
        "{html}"
    );
    assert_eq!(balance(&site, &member).await, before);
    // A good adjustment lands once, even when the same form is sent twice.
    let (_, form_page) = admin.get(&page).await;
    let csrf = attr_after(&form_page, "name=\"csrf\" value=\"").unwrap();
    let nonce = attr_after(&form_page, "name=\"nonce\" value=\"").unwrap();
    for _ in 0..2 {
        let res = admin
            .http
            .post(format!("{}{page}/adjust", site.base))
            .form(&[
                ("csrf", csrf.as_str()),
                ("nonce", nonce.as_str()),
                ("points", "150"),
                ("reason", "goodwill"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::SEE_OTHER);
    }
    assert_eq!(balance(&site, &member).await, before + 150);

    let version = site.core.get_programme(&site.admin, None).await.unwrap().version;
    let (_, programme_page) = admin.get("/console/programme").await;
    let mut fields = inputs(&programme_page);
    fields.retain(|(k, _)| k != "csrf" && k != "nonce");
    let mut bad = fields.clone();
    set(&mut bad, "multipliers.member_day.day_of_month", "40");
    set(&mut bad, "tiers.levels[1].multiplier", "many");
    set(&mut bad, "action", "publish");
    let (status, html) = admin
        .post("/console/programme", "/console/programme", &pairs(&bad))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        html.contains(r#"data-field="tiers.levels[1].multiplier""#),
        "{html}"
    );
    set(&mut bad, "tiers.levels[1].multiplier", "1.2");
    let (status, html) = admin
        .post("/console/programme", "/console/programme", &pairs(&bad))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        html.contains(r#"data-field="multipliers.member_day.day_of_month""#),
        "{html}"
    );
    assert_eq!(
        site.core.get_programme(&site.admin, None).await.unwrap().version,
        version
    );
    // The preview uses the edited draft; publishing makes a new version.
    set(&mut fields, "multipliers.member_day.multiplier", "5");
    set(&mut fields, "preview_amount", "200.00");
    set(&mut fields, "preview_tier", "gold");
    set(&mut fields, "action", "preview");
    let (status, html) = admin
        .post("/console/programme", "/console/programme", &pairs(&fields))
        .await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("id=\"preview-result\""));
    set(&mut fields, "action", "publish");
    let (status, _) = admin
        .post("/console/programme", "/console/programme", &pairs(&fields))
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let now = site.core.get_programme(&site.admin, None).await.unwrap();
    assert_eq!(now.version, version + 1);
    assert_eq!(
        now.programme
            .multipliers
            .member_day
            .map(|d| d.multiplier.to_string()),
        Some("5".to_owned())
    );

    // The till: a basket with a bad amount is refused next to the line; nothing is sold.
    let (status, html) = clerk
        .post(
            "/console/till",
            "/console/till",
            &[
                ("action", "quote"),
                ("member_id", member.as_str()),
                ("sku", "TEA-1"),
                ("quantity", "1"),
                ("amount", "abc"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains(r#"data-field="amount[0]""#), "{html}");

    // The member's one-time link opens the member card once.
    let (status, html) = admin.post(&page, &format!("{page}/link"), &[]).await;
    assert_eq!(status, StatusCode::OK);
    let html = html.replace("&#x2f;", "/");
    let at = html.find("/m/sign-in?token=").expect("the page shows the link");
    let link = html[at..].split(['<', '"']).next().unwrap().replace("&amp;", "&");
    let jar = Arc::new(reqwest::cookie::Jar::default());
    let member_browser = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .build()
        .unwrap();
    let res = member_browser
        .get(format!("{}{link}", site.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let card = res.text().await.unwrap();
    assert!(card.contains("id=\"member-card\"") && !card.contains(&phone));
    let qr = member_browser
        .get(format!("{}/m/code.svg", site.base))
        .send()
        .await
        .unwrap();
    assert_eq!(qr.status(), StatusCode::OK);
    assert!(qr.text().await.unwrap().starts_with("<svg"));
    let again = reqwest::get(format!("{}{link}", site.base)).await.unwrap();
    assert_eq!(again.status(), StatusCode::UNAUTHORIZED, "a link works once");
    // Signing out ends the session itself: a copy of the cookie (another tab, a shared
    // computer's history) no longer opens the card.
    let copied = reqwest::cookie::CookieStore::cookies(&*jar, &site.base.parse().unwrap())
        .expect("the member is signed in");
    member_browser
        .post(format!("{}/m/sign-out", site.base))
        .send()
        .await
        .unwrap();
    let replayed = reqwest::Client::new()
        .get(format!("{}/m/", site.base))
        .header(reqwest::header::COOKIE, copied)
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status(), StatusCode::UNAUTHORIZED, "the session ended");
    assert_eq!(
        reqwest::get(format!("{}/m/", site.base)).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );

    // Merge and erase: confirmed or nothing happens; a clerk may do neither.
    let others: Vec<MemberId> = site
        .core
        .search_members(&site.admin, &Default::default(), &Page::first(10))
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .filter(|m| *m != member)
        .collect();
    let (duplicate, erased) = (&others[0], &others[1]);
    let merge = format!("{page}/merge");
    let (status, html) = admin
        .post(&page, &merge, &[("merge_from", duplicate.as_str())])
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains(r#"data-field="confirm""#));
    let (status, _) = clerk
        .post(
            &page,
            &merge,
            &[("merge_from", duplicate.as_str()), ("confirm", "1")],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        admin.get(&format!("/console/members/{duplicate}")).await.0,
        StatusCode::OK
    );
    let (status, _) = admin
        .post(
            &page,
            &merge,
            &[("merge_from", duplicate.as_str()), ("confirm", "1")],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, html) = admin.get(&format!("/console/members/{duplicate}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        html.contains(member.as_str()),
        "the merged member's page names the survivor"
    );
    let erase_page = format!("/console/members/{erased}");
    let (status, _) = admin.post(&erase_page, &format!("{erase_page}/erase"), &[]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = admin
        .post(&erase_page, &format!("{erase_page}/erase"), &[("confirm", "1")])
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, html) = admin.get(&erase_page).await;
    assert!(
        html.contains(r#"id="member-phone">–<"#),
        "the erased member has no phone"
    );

    // Signing in: one answer for a wrong password and an unknown user; no open redirect.
    for (user, pass) in [("admin", "wrong password"), ("nobody", "wrong password")] {
        let res = reqwest::Client::new()
            .post(format!("{}/console/login", site.base))
            .form(&[("username", user), ("password", pass)])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let res = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("{}/console/login", site.base))
        .form(&[
            ("username", "admin"),
            ("password", site.admin_password.as_str()),
            ("next", "//evil.example/"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["location"], "/console/");
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );

    browser_journey(&site, &phone).await;
}

/// Every `<input>` of the page with its value, by name, unchecked boxes left out: what the
/// programme form posts (it has no selects the tests change).
fn inputs(html: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for chunk in html.split("<input").skip(1) {
        let tag = chunk.split('>').next().unwrap_or_default();
        let (Some(name), value) = (attr_after(tag, "name=\""), attr_after(tag, "value=\"")) else {
            continue;
        };
        if tag.contains("type=\"checkbox\"") && !tag.contains("checked") {
            continue;
        }
        out.push((name, value.unwrap_or_default()));
    }
    out
}

/// Owned form fields as the `&str` pairs [`Browser::post`] takes.
fn pairs(fields: &[(String, String)]) -> Vec<(&str, &str)> {
    fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

fn set(fields: &mut Vec<(String, String)>, name: &str, value: &str) {
    fields.retain(|(k, _)| k != name);
    fields.push((name.to_owned(), value.to_owned()));
}

/// The journey in a real browser: Playwright (`browser/journey.mjs`) drives Debian's Chromium.
/// Needs `node`, the `browser/node_modules` that `.ci/run` installs, and `HUIYUAN_CHROMIUM`
/// (or /usr/bin/chromium); without them the test fails rather than skips.
async fn browser_journey(site: &Site, phone: &str) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let chromium = std::env::var("HUIYUAN_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "no Chromium at {chromium}: run .ci/run (it installs Debian's chromium) or set HUIYUAN_CHROMIUM"
    );
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "Playwright is not installed: run `npm ci` in {} (.ci/run does)",
        dir.display()
    );
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let (base, password, phone, shots_dir) = (
        site.base.clone(),
        site.admin_password.clone(),
        phone.to_owned(),
        shots.clone(),
    );
    // The server runs on this test's runtime, so node waits on a blocking thread.
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node")
            .arg(dir.join("journey.mjs"))
            .env("BASE_URL", base)
            .env("ADMIN_PASSWORD", password)
            .env("MEMBER_PHONE", phone)
            .env("CHROMIUM", &chromium)
            .env("SCREENSHOTS", shots_dir)
            .output()
    })
    .await
    .unwrap()
    .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "browser journey failed:\n{stdout}\n{stderr}"
    );
    println!("{stdout}\nscreenshots in {}", shots.display());
}

/// The console's form had no attempt limit (100 guesses in 4 s). Now the form and the API share
/// one: after 10 failures on an account, from any address, the right password is refused too,
/// with the same answer as for an account that does not exist; and one address gets 20
/// attempts a minute whatever accounts it names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_attempts_are_limited_on_the_form_and_the_api() {
    let site = site().await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let form = |username: &'static str, password: String| {
        let request = http.post(format!("{}/console/login", site.base)).form(&[
            ("username", username),
            ("password", &password),
            ("next", "/console/"),
        ]);
        async move { request.send().await.unwrap().status() }
    };
    for i in 0..10 {
        assert_eq!(
            form("clerk-1", format!("guess-{i}")).await,
            StatusCode::UNAUTHORIZED
        );
    }
    // The 11th, even with the right password, and through the API as well.
    assert_eq!(
        form("clerk-1", PASSWORD.into()).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    let api = http
        .post(format!("{}/v1/auth/login", site.base))
        .json(&serde_json::json!({"username": "clerk-1", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(api.headers().contains_key("retry-after"));
    let body: serde_json::Value = api.json().await.unwrap();
    assert_eq!(body["code"], "rate_limited");
    // An account that does not exist answers the same way once guessed at as often.
    for i in 0..10 {
        assert_eq!(
            form("nobody-here", format!("guess-{i}")).await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        form("nobody-here", "x".into()).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // This address has made its 20 attempts this minute: even another account is refused.
    assert_eq!(
        form("analyst-1", PASSWORD.into()).await,
        StatusCode::TOO_MANY_REQUESTS
    );
}

/// A sign-in form posted from another site was accepted (login CSRF); a `next` with CR/LF after
/// a good sign-in answered 500 and stranded the new session; pages had no CSP, framing or
/// caching headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_refuse_cross_site_posts_and_carry_security_headers() {
    let site = site().await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let login = |origin: Option<String>, next: &'static str| {
        let mut request = http.post(format!("{}/console/login", site.base)).form(&[
            ("username", "admin"),
            ("password", site.admin_password.as_str()),
            ("next", next),
        ]);
        if let Some(origin) = origin {
            request = request.header(reqwest::header::ORIGIN, origin);
        }
        async move { request.send().await.unwrap() }
    };
    let forged = login(Some("https://evil.example".into()), "/console/").await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert!(forged.headers().get(reqwest::header::SET_COOKIE).is_none());
    let page = forged.text().await.unwrap();
    assert!(
        page.contains("其他网站") || page.contains("another site"),
        "{page}"
    );

    let opaque = login(Some("null".into()), "/console/").await;
    assert_eq!(
        opaque.status(),
        StatusCode::FORBIDDEN,
        "an opaque origin is not ours"
    );
    let ours = login(Some(site.base.clone()), "/console/").await;
    assert_eq!(
        ours.status(),
        StatusCode::SEE_OTHER,
        "a form of this server signs in"
    );

    let split = login(None, "/console/members\r\nSet-Cookie: planted=1").await;
    assert_eq!(split.status(), StatusCode::SEE_OTHER);
    assert_eq!(split.headers()[reqwest::header::LOCATION], "/console/");
    let cookies: Vec<_> = split
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .collect();
    assert_eq!(cookies.len(), 1, "only the session cookie: {cookies:?}");

    for path in [
        "/console/login",
        "/m/",
        "/console/members/mem_01JABCDEFGHJKMNPQRSTVWXYZ0",
    ] {
        let res = http.get(format!("{}{path}", site.base)).send().await.unwrap();
        let h = res.headers();
        let csp = h[reqwest::header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(
            csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"),
            "{path}: {csp}"
        );
        assert_eq!(h[reqwest::header::X_FRAME_OPTIONS], "DENY", "{path}");
        assert_eq!(h[reqwest::header::CACHE_CONTROL], "no-store", "{path}");
        assert_eq!(h[reqwest::header::REFERRER_POLICY], "same-origin", "{path}");
    }
}
