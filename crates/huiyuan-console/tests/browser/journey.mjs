// The console in a real browser: sign in, dashboard, find a member, adjust points, issue a
// coupon, a till sale with a coupon and points, refund it, switch to English, the member card.
// Run by `cargo nextest` through tests/console.rs, which starts the server and passes:
// BASE_URL, ADMIN_PASSWORD, MEMBER_PHONE, CHROMIUM (the browser binary), SCREENSHOTS (a folder).
import { chromium } from "playwright-core";
import assert from "node:assert/strict";
import path from "node:path";

const base = process.env.BASE_URL;
const shots = process.env.SCREENSHOTS;
const phone = process.env.MEMBER_PHONE;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM,
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: "zh-CN" });
const page = await context.newPage();
const errors = [];
page.on("pageerror", (e) => errors.push(String(e)));
const shot = (name) => page.screenshot({ path: path.join(shots, name), fullPage: true });
const step = (what) => console.log("step:", what);
process.on("uncaughtException", async (e) => {
  console.error(e);
  await page.screenshot({ path: path.join(shots, "failure.png"), fullPage: true }).catch(() => {});
  process.exit(1);
});

step("sign in");
await page.goto(`${base}/console/`);
assert.match(page.url(), /\/console\/login/);
await page.fill("#username", "admin");
await page.fill("#password", process.env.ADMIN_PASSWORD);
await page.click("#sign-in");
await page.waitForURL(/\/console\/dashboard/);
await page.waitForSelector('#charts[data-drawn="4"]');
await shot("dashboard.png");

step("find a member");
await page.click('nav a[href="/console/members"]');
await page.waitForURL(/\/console\/members$/);
await page.fill("#member-query", phone);
await page.click("#search");
await page.waitForURL(/q=/);
await page.click("a.member-link");
await page.waitForSelector("#profile");
assert.ok(!(await page.content()).includes(phone), "the member page shows the phone masked");
const points = async () => Number((await page.textContent("#points-available")).replace(/,/g, ""));
const before = await points();

step("adjust points");
await page.fill("#adjust-points", "abc");
await page.click("#adjust-submit");
await page.waitForSelector('#adjust-form .error[data-field="points"]');
assert.equal(await points(), before, "a refused adjustment changes nothing");
await page.fill("#adjust-points", "500");
await page.fill("#adjust-reason", "browser test goodwill");
await page.click("#adjust-submit");
await page.waitForURL(/done=adjusted/);
assert.equal(await page.textContent("#done"), "积分已调整", "the notice says what was done, in Chinese");
assert.equal(await points(), before + 500);

step("issue a coupon");
const templates = await page.$$eval("#coupon-template option", (os) => os.map((o) => o.value).filter(Boolean));
assert.ok(templates.length > 0, "the demo has coupon templates");
const couponsBefore = await page.$$eval("#coupons tbody tr", (rs) => rs.length).catch(() => 0);
await page.selectOption("#coupon-template", templates[0]);
await page.click("#coupon-submit");
await page.waitForURL(/done=issued/);
const couponsAfter = await page.$$eval("#coupons tbody tr", (rs) => rs.length);
assert.ok(couponsAfter > couponsBefore, "the coupon is listed");
await shot("member-360.png");

step("till sale with a coupon and points");
await page.click('nav a[href="/console/till"]');
await page.waitForURL(/\/console\/till$/);
await page.fill("#till-query", phone);
await page.click("#identify");
await page.waitForSelector("#till-member");
await page.fill("#sku-0", "TEA-001");
await page.fill("#amount-0", "688.00");
await page.fill("#sku-1", "CUP-002");
await page.fill("#amount-1", "120.00");
await page.fill("#till-use-points", "100");
// One coupon at a time until one applies to this basket (the demo's coupons do not stack).
const codes = await page.$$eval('#till-coupons input[type="checkbox"]', (bs) => bs.map((b) => b.value));
for (const code of codes) {
  for (const other of codes) await page.uncheck(`#till-coupons input[value="${other}"]`);
  await page.check(`#till-coupons input[value="${code}"]`);
  await page.click("#quote");
  await page.waitForSelector("#quote-result");
  if ((await page.$$(".applied-coupon")).length > 0) break;
}
assert.ok((await page.$$(".applied-coupon")).length >= 1, "a coupon applies to the sale");
await shot("till.png");
await page.click("#commit");
await page.waitForURL(/\/console\/till\/sales\//);
assert.equal(await page.getAttribute("#sale", "data-status"), "completed");
await shot("sale.png");

step("refund it");
await page.click("#refund");
await page.waitForSelector('#refund-form .error[data-field="reason"]');
await page.fill("#refund-reason", "customer changed their mind");
await page.click("#refund");
await page.waitForURL(/done=refunded/);
assert.equal(await page.getAttribute("#sale", "data-status"), "refunded");

step("switch to English");
await page.click('a[hreflang="en"]');
await page.waitForLoadState();
assert.equal(await page.getAttribute("html", "lang"), "en");
assert.ok((await page.textContent("nav")).includes("Members"));
await page.goto(`${base}/console/dashboard`);
await page.waitForSelector('#charts[data-drawn="4"]');
await shot("dashboard-en.png");

step("the member card");
await page.goto(`${base}/console/members?q=${phone}`);
await page.click("a.member-link");
await page.click("#make-link");
const link = await page.getAttribute("#sign-in-link a", "href");
const memberPage = await (await browser.newContext({ viewport: { width: 420, height: 900 } })).newPage();
await memberPage.goto(`${base}${link}`);
await memberPage.waitForSelector("#member-qr");
const qrLoaded = await memberPage.$eval("#member-qr", (img) => img.complete && img.naturalWidth > 0);
assert.ok(qrLoaded, "the QR image loads");
await memberPage.screenshot({ path: path.join(shots, "member-card.png"), fullPage: true });

step("sign out");
await page.click("#sign-out");
await page.waitForURL(/\/console\/login/);
assert.deepEqual(errors, [], "no script errors");
await browser.close();
console.log("browser journey passed");
