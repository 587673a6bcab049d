// The dashboard in a real browser (scripts/dashboard/run starts the stack and sets the environment):
// Debian's chromium, headless, driven by playwright-core as a person would use the page. Every step that a
// person would look at is saved as a screenshot under SCREENSHOT_DIR.
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { join } from "node:path";

const require = createRequire(`${process.env.NODE_DIR}/`);
const { chromium } = require("playwright-core");

const QUERY_URL = process.env.QUERY_URL;
const COMMAND_URL = process.env.COMMAND_URL;
const TOKEN = process.env.TALLY_TOKEN;
const SCREENSHOTS = process.env.SCREENSHOT_DIR;
// SPEC §9: a command posted through the API appears in the live feed within this long.
const FEED_DELAY_MAX_MS = 2000;
const PHONE = { width: 390, height: 844 };

const origin = new URL(QUERY_URL).origin;
const headers = { Authorization: `Bearer ${TOKEN}` };
const steps = [];

async function step(name, body) {
  const started = Date.now();
  await body();
  steps.push(name);
  console.log(`ok   ${name} (${Date.now() - started} ms)`);
}

async function read(path) {
  const response = await fetch(`${QUERY_URL}${path}`, { headers });
  assert.equal(response.status, 200, `GET ${path}`);
  return response.json();
}

async function post(path, body) {
  const response = await fetch(`${COMMAND_URL}${path}`, {
    method: "POST",
    headers: { ...headers, "Content-Type": "application/json", "Idempotency-Key": `dashboard-${Date.now()}-${Math.random()}` },
    body: JSON.stringify(body),
  });
  assert.equal(response.status, 201, `POST ${path}: ${await response.clone().text()}`);
  return response.json();
}

const shot = (page, name) => page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: true });

// A page of its own context, with every request it makes and every error it logs recorded.
async function open(browser, options) {
  const context = await browser.newContext(options);
  const page = await context.newPage();
  const requests = [];
  const errors = [];
  page.on("request", (request) => requests.push(request.url()));
  page.on("pageerror", (error) => errors.push(error.message));
  page.on("response", (response) => {
    if (response.status() >= 400) errors.push(`${response.status()} ${response.url()}`);
  });
  await page.goto(`${QUERY_URL}/dashboard`);
  return { context, page, requests, errors };
}

async function signIn(page, token) {
  await page.fill("#token", token);
  await page.click("#token-form button[type=submit]");
}

// The page is no wider than its viewport: tables scroll inside their cards, the page never sideways.
async function fitsWidth(page, width) {
  const scrollWidth = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(scrollWidth <= width, `the page is ${scrollWidth} px wide in a ${width} px viewport`);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM,
  args: ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-default-apps", "--disable-sync", "--no-first-run"],
});
let desktop;
try {
  desktop = await open(browser, { viewport: { width: 1280, height: 800 }, colorScheme: "light" });
  const { page } = desktop;

  await step("asks for a token before it shows anything", async () => {
    await page.waitForSelector("#sign-in:not([hidden])");
    assert.equal(await page.isVisible("#nav"), false);
    await shot(page, "01-sign-in");
  });

  await step("a bad token shows its message", async () => {
    await signIn(page, "tally_not_a_token");
    await page.waitForSelector("#token-error:not([hidden])");
    assert.match(await page.textContent("#token-error"), /refused/i);
    assert.equal(await page.isVisible("#nav"), false);
    await shot(page, "02-bad-token");
  });

  const assets = (await read("/v1/assets")).items;
  await step("the overview shows each asset's figures", async () => {
    await signIn(page, TOKEN);
    await page.waitForSelector("#view-overview:not([hidden]) .asset");
    for (const asset of assets) {
      const card = page.locator(`.asset[data-asset="${asset.code}"]`);
      const text = await card.textContent();
      for (const figure of [asset.supply, asset.user_balance_total, asset.held_total, String(asset.wallet_count)]) {
        assert.ok(text.includes(figure), `${asset.code}'s card shows ${figure}: ${text}`);
      }
      assert.ok(text.includes("Σ 0"), `${asset.code}'s card shows its zero sum: ${text}`);
    }
    await shot(page, "03-overview");
  });

  await step("the token is asked for once: a reload keeps the session", async () => {
    await page.reload();
    await page.waitForSelector("#view-overview:not([hidden]) .asset");
    assert.equal(await page.isVisible("#sign-in"), false);
  });

  const [alice] = (await read("/v1/owners/alice/wallets")).items.filter((wallet) => wallet.asset === "NGN");
  const reference = `dashboard-${Date.now()}`;
  let topup;
  await step(`a command posted through the API appears in the live feed within ${FEED_DELAY_MAX_MS} ms`, async () => {
    await page.click("#nav a[data-view=live]");
    await page.waitForSelector("#view-live:not([hidden])");
    // The feed's backfill has arrived when the demo data's transfers are listed.
    await page.waitForSelector("#live-table tr[data-transfer]");
    const posted = Date.now();
    topup = await post(`/v1/wallets/${alice.wallet_id}/topup`, { amount: "12.34", reference });
    await page.waitForSelector(`#live-table tr[data-transfer="${topup.transfer_id}"]`, { timeout: FEED_DELAY_MAX_MS });
    console.log(`     delivered to the page ${Date.now() - posted} ms after the POST was sent`);
    const row = await page.textContent(`#live-table tr[data-transfer="${topup.transfer_id}"]`);
    assert.ok(row.includes("12.34") && row.includes(reference), row);
    await shot(page, "04-live");
  });

  await step("the live view pauses, resumes and filters by asset", async () => {
    await page.click("#pause");
    const second = await post(`/v1/wallets/${alice.wallet_id}/topup`, { amount: "1.00" });
    await page.waitForFunction(() => document.querySelector("#live-count").textContent.includes("paused"));
    await page.waitForTimeout(1500);
    assert.equal(await page.locator(`tr[data-transfer="${second.transfer_id}"]`).count(), 0, "paused, nothing is added");
    await page.click("#pause");
    await page.waitForSelector(`tr[data-transfer="${second.transfer_id}"]`, { timeout: FEED_DELAY_MAX_MS });
    await page.selectOption("#live-asset", "GOLD");
    const shownAssets = await page.$$eval("#live-table tr[data-transfer] td:nth-child(4)", (cells) =>
      [...new Set(cells.map((cell) => cell.textContent))]);
    assert.deepEqual(shownAssets, ["GOLD"]);
    await page.selectOption("#live-asset", "");
  });

  await step("the overview follows the feed: the new supply shows within 2 s", async () => {
    await page.click("#nav a[data-view=overview]");
    const ngn = (await read("/v1/assets/NGN"));
    await page.waitForFunction((supply) => document.querySelector('.asset[data-asset="NGN"]')?.textContent.includes(supply),
      ngn.supply, { timeout: FEED_DELAY_MAX_MS });
    const bars = await page.locator("#chart-rate rect").count();
    assert.ok(bars > 0, "the rate chart is drawn");
  });

  // The wallet of the demo data with money held: a partly captured hold leaves some.
  const owners = ["alice", "bob"];
  const wallets = (await Promise.all(owners.map((owner) => read(`/v1/owners/${owner}/wallets`)))).flatMap((list) => list.items);
  const heldWallet = wallets.find((wallet) => !/^0*(\.0*)?$/.test(wallet.held)) || wallets[0];
  await step("the wallet view finds an owner's wallets and shows balance, held and available", async () => {
    await page.click("#nav a[data-view=wallet]");
    await page.fill("#wallet-query", heldWallet.owner_id);
    await page.click("#wallet-form button");
    await page.click(`#wallet-result a[href="#/wallet/${heldWallet.wallet_id}"]`);
    await page.waitForSelector("#wallet-card");
    const expected = await read(`/v1/wallets/${heldWallet.wallet_id}`);
    assert.equal(await page.textContent("#wallet-balance"), expected.balance);
    assert.equal(await page.textContent("#wallet-held"), expected.held);
    assert.equal(await page.textContent("#wallet-available"), expected.available);
    const holds = (await read(`/v1/wallets/${heldWallet.wallet_id}/holds`)).items;
    await page.waitForSelector("#wallet-card .section table");
    const text = await page.textContent("#wallet-card");
    for (const hold of holds) assert.ok(text.includes(hold.status) && text.includes(hold.amount), `hold ${hold.hold_id}`);
    assert.ok(await page.locator('#wallet-card a[href^="#/transfer/"]').count() > 0, "history links to transfers");
    await shot(page, "05-wallet");
  });

  await step("the transfer view shows legs and, with audit, raw events with their hashes", async () => {
    await page.click("#nav a[data-view=transfer]");
    await page.fill("#transfer-query", reference);
    await page.click("#transfer-form button");
    await page.waitForSelector("#transfer-card");
    const text = await page.textContent("#transfer-card");
    assert.ok(text.includes(topup.transfer_id) && text.includes("12.34"), text);
    // The command's events: the transfer's record, then the treasury's debit and alice's credit.
    const [recorded] = (await read(`/v1/streams/transfer-${topup.transfer_id}/events`)).items;
    const log = await read(`/v1/events?after=${recorded.position - 1}&limit=${topup.position - recorded.position + 1}`);
    assert.equal(log.items.length, 3);
    await page.waitForSelector("#transfer-card td.hash");
    const hashes = await page.$$eval("#transfer-card td.hash", (cells) => cells.map((cell) => cell.textContent));
    assert.deepEqual(hashes, log.items.map((event) => event.hash));
    await shot(page, "06-transfer");
  });

  await step("health shows checkpoints, zero sums, the last digest and the last verify", async () => {
    await page.click("#nav a[data-view=health]");
    await page.waitForSelector("#projections tbody tr");
    await page.waitForFunction(() => document.querySelectorAll("#zero-sum tbody tr").length > 0);
    const states = await page.$$eval("#zero-sum tbody tr td:nth-child(3)", (cells) => cells.map((cell) => cell.textContent));
    assert.deepEqual(states, assets.map(() => "whole"));
    await page.waitForFunction(() => document.querySelector("#digest").textContent.includes("Log hash"), null, { timeout: 5000 });
    const digest = await read("/v1/digests/latest");
    assert.ok((await page.textContent("#digest")).length > 0 && digest.position > 0);
    assert.match(await page.textContent("#verify"), /Clean: no finding/);
    await shot(page, "07-health");
  });

  await step("no request left this origin, and the page logged no error", async () => {
    const foreign = desktop.requests.filter((url) => new URL(url).origin !== origin);
    assert.deepEqual(foreign, [], "requests to another host");
    // The one refusal expected: the bad token's.
    assert.deepEqual(desktop.errors, [`401 ${QUERY_URL}/v1/assets`], "errors in the page");
  });

  await step("a 390-px phone: every view fits, tables scroll inside their cards", async () => {
    const phone = await open(browser, { viewport: PHONE, isMobile: true, hasTouch: true, colorScheme: "light" });
    await signIn(phone.page, TOKEN);
    await phone.page.waitForSelector(".asset");
    for (const view of ["overview", "live", `wallet/${heldWallet.wallet_id}`, `transfer/${topup.transfer_id}`, "health"]) {
      await phone.page.evaluate((hash) => { location.hash = `#/${hash}`; }, view);
      await phone.page.waitForTimeout(600);
      await fitsWidth(phone.page, PHONE.width);
    }
    await phone.page.evaluate(() => { location.hash = "#/overview"; });
    await phone.page.waitForTimeout(400);
    await shot(phone.page, "08-phone-overview");
    await phone.page.evaluate((id) => { location.hash = `#/wallet/${id}`; }, heldWallet.wallet_id);
    await phone.page.waitForSelector("#wallet-card .section table");
    await shot(phone.page, "09-phone-wallet");
    await phone.context.close();
  });

  await step("dark when the system is: prefers-color-scheme", async () => {
    const dark = await open(browser, { viewport: { width: 1280, height: 800 }, colorScheme: "dark" });
    await signIn(dark.page, TOKEN);
    await dark.page.waitForSelector(".asset");
    const background = await dark.page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    const [r, g, b] = background.match(/\d+/g).map(Number);
    assert.ok(r + g + b < 120, `a dark background, not ${background}`);
    await dark.page.waitForTimeout(500);
    await shot(dark.page, "10-dark-overview");
    await dark.context.close();
  });

  console.log(`dashboard: ${steps.length} steps passed; screenshots in ${SCREENSHOTS}`);
} finally {
  await browser.close();
}
