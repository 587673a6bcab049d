// Tally dashboard: five views over query-service's API, live over its transfers feed.
// Everything comes from this origin; the token is kept in sessionStorage and sent as a bearer token.
"use strict";

const TOKEN_KEY = "tally.token";
// Events before the projection's position that the feed starts from, so that the charts have a recent past.
const BACKFILL_EVENTS = 3000;
// Transfers kept for the live table and the charts.
const RECENT_TRANSFERS_MAX = 2000;
// Rows the live table shows.
const LIVE_ROWS_MAX = 200;
// The charts' window and bucket, in seconds.
const CHART_WINDOW_S = 300;
const CHART_BUCKET_S = 5;
// Reads are refreshed at most this often when the feed moves, and at least this often without it.
const REFRESH_MIN_MS = 1000;
const REFRESH_IDLE_MS = 5000;
// A feed that ended or failed is opened again after this long.
const FEED_RETRY_MS = 1000;
const PAGE_ITEMS = 25;

const $ = (selector) => document.querySelector(selector);

// ---- DOM helpers: text only, never HTML from data ------------------------------------------------

function h(tag, attributes, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") element.className = value;
    else if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else element.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

const num = (value) => h("td", { class: "num" }, value ?? "—");
const cell = (value) => h("td", {}, value ?? "—");
// UUIDv7 ids share their leading (time) digits: the last ones tell them apart.
const short = (id) => (id ? `…${String(id).slice(-8)}` : "—");
const walletLink = (id) => (id ? h("a", { href: `#/wallet/${id}`, class: "mono", title: id }, short(id)) : "—");
const transferLink = (id) => (id ? h("a", { href: `#/transfer/${id}`, class: "mono", title: id }, short(id)) : "—");
const time = (iso) => (iso ? new Date(iso).toLocaleTimeString([], { hour12: false }) : "—");
const dateTime = (iso) => (iso ? new Date(iso).toLocaleString([], { hour12: false }) : "—");

function facts(pairs) {
  return h("dl", { class: "facts" }, pairs.map(([name, value, numeric]) => [
    h("dt", {}, name),
    h("dd", { class: numeric ? "num" : "" }, value ?? "—"),
  ]));
}

function table(headers, rows, emptyText) {
  const head = h("tr", {}, headers.map((name) => h("th", { class: name.startsWith("#") ? "num" : "" },
    name.replace(/^#/, ""))));
  const body = rows.length ? rows : [h("tr", {}, h("td", { colspan: headers.length, class: "muted" }, emptyText))];
  return h("div", { class: "scroll" }, h("table", {}, h("thead", {}, head), h("tbody", {}, body)));
}

function ago(iso) {
  const seconds = Math.max(0, Math.round((Date.now() - new Date(iso).getTime()) / 1000));
  if (seconds < 90) return `${seconds} s ago`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 129600) return `${Math.round(seconds / 3600)} h ago`;
  return `${Math.round(seconds / 86400)} days ago`;
}

// A decimal string is zero when it has no digit but 0.
const isZero = (text) => /^[-+]?0*(\.0*)?$/.test(text);

// ---- The API ---------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.code = problem.code || "";
  }
}

const session = {
  token: sessionStorage.getItem(TOKEN_KEY),
  feed: null,
  paused: false,
  recent: [],
  assets: [],
  lastPosition: 0,
  onTransfer: [],
};

async function api(path) {
  const response = await fetch(path, { headers: { Authorization: `Bearer ${session.token}` } });
  if (response.ok) {
    const position = Number(response.headers.get("X-Projection-Position"));
    if (position > session.lastPosition) session.lastPosition = position;
    return response.json();
  }
  let problem = {};
  try { problem = await response.json(); } catch (_) { /* not a problem document */ }
  const error = new ApiError(response.status, problem);
  if (response.status === 401) signOut(`This token was refused: ${error.message}`);
  throw error;
}

// An error shown where the data would have been.
function failure(error, scope) {
  if (error instanceof ApiError && error.status === 403) {
    return h("p", { class: "muted" }, `This token lacks the ${scope || "needed"} scope.`);
  }
  if (error instanceof ApiError && error.status === 404) return h("p", { class: "warn" }, error.message);
  return h("p", { class: "error" }, `Could not read it: ${error.message}`);
}

// ---- Signing in ------------------------------------------------------------------------------------

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  session.token = null;
  if (session.feed) session.feed.abort();
  session.feed = null;
  $("#token-error").hidden = !message;
  $("#token-error").textContent = message || "";
  render();
}

async function signIn(token) {
  session.token = token;
  try {
    await api("/v1/assets");
  } catch (error) {
    if (error.status !== 401) {
      session.token = null;
      $("#token-error").hidden = false;
      $("#token-error").textContent = error.status === 403
        ? "This token lacks the read scope the dashboard needs."
        : `Could not reach query-service: ${error.message}`;
    }
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  $("#token-error").hidden = true;
  startFeed();
  render();
}

// ---- The transfers feed: Server-Sent Events read through fetch, so that it carries the token ----------

async function* serverSentEvents(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const message = { event: "message", data: [], id: null };
      for (const line of block.split("\n")) {
        if (line === "" || line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "data") message.data.push(text);
        else if (field === "event") message.event = text;
        else if (field === "id") message.id = text;
      }
      if (message.data.length || message.event !== "message") yield { ...message, data: message.data.join("\n") };
    }
  }
}

async function startFeed() {
  if (session.feed) return;
  const controller = new AbortController();
  session.feed = controller;
  let after = null;
  while (!controller.signal.aborted) {
    try {
      if (after === null) {
        await api("/v1/projections");
        after = Math.max(0, session.lastPosition - BACKFILL_EVENTS);
      }
      const response = await fetch(`/v1/transfers/stream?after=${after}`, {
        headers: { Authorization: `Bearer ${session.token}`, Accept: "text/event-stream" },
        signal: controller.signal,
      });
      if (response.status === 401) return signOut("This token was refused by the live feed.");
      if (!response.ok) throw new Error(`the feed answered ${response.status}`);
      setStatus("live", "live");
      for await (const message of serverSentEvents(response)) {
        if (message.id !== null) after = Number(message.id);
        if (message.event === "transfer") received(JSON.parse(message.data));
        // A reset names the last id sent: the loop resumes after it, so nothing is skipped.
      }
    } catch (error) {
      if (controller.signal.aborted) return;
      setStatus("down", `feed: ${error.message}; reconnecting`);
    }
    await new Promise((resolve) => setTimeout(resolve, FEED_RETRY_MS));
  }
}

function received(transfer) {
  session.recent.push(transfer);
  if (session.recent.length > RECENT_TRANSFERS_MAX) session.recent.splice(0, session.recent.length - RECENT_TRANSFERS_MAX);
  setStatus("live", `live · position ${transfer.position}`);
  for (const listener of session.onTransfer) listener(transfer);
}

function setStatus(kind, text) {
  const status = $("#status");
  status.className = `status ${kind}`;
  status.textContent = text;
}

// Calls `refresh` when the feed moves, at most once a second, and every REFRESH_IDLE_MS without it.
function liveRefresh(refresh) {
  let timer = null;
  let last = 0;
  const run = () => { timer = null; last = Date.now(); refresh(); };
  const soon = () => {
    if (timer === null) timer = setTimeout(run, Math.max(0, last + REFRESH_MIN_MS - Date.now()));
  };
  session.onTransfer.push(soon);
  const idle = setInterval(soon, REFRESH_IDLE_MS);
  run();
  return () => {
    clearInterval(idle);
    clearTimeout(timer);
    session.onTransfer = session.onTransfer.filter((listener) => listener !== soon);
  };
}

// ---- Overview ----------------------------------------------------------------------------------------

async function overview() {
  let assets;
  try {
    assets = (await api("/v1/assets")).items;
  } catch (error) {
    $("#assets").replaceChildren(failure(error));
    return;
  }
  session.assets = assets;
  $("#assets").replaceChildren(...assets.map(assetCard));
  fillAssetSelect($("#chart-asset"), false);
  fillAssetSelect($("#live-asset"), true);
  drawCharts();
}

function assetCard(asset) {
  const kinds = Object.entries(asset.volume_by_kind);
  return h("div", { class: "card asset", "data-asset": asset.code },
    h("h2", {}, asset.code, " ", zeroSumPill(asset)),
    facts([
      ["Supply", asset.supply, true],
      ["User balances", asset.user_balance_total, true],
      ["Held", asset.held_total, true],
      ["Active holds", asset.active_hold_count, true],
      ["Wallets", asset.wallet_count, true],
    ]),
    h("div", { class: "section" }, table(["Kind", "#Volume"], kinds.map(([kind, volume]) =>
      h("tr", {}, cell(kind), num(volume))), "nothing moved yet")));
}

function zeroSumPill(asset) {
  return isZero(asset.balance_sum)
    ? h("span", { class: "pill ok", title: "the balances of all its wallets sum to zero" }, "Σ 0")
    : h("span", { class: "pill warn", title: "a command is being projected, or the ledger is not whole" },
      `Σ ${asset.balance_sum}`);
}

function fillAssetSelect(select, withAll) {
  const chosen = select.value;
  const options = session.assets.map((asset) => h("option", { value: asset.code }, asset.code));
  select.replaceChildren(...(withAll ? [h("option", { value: "" }, "all")] : []), ...options);
  if ([...select.options].some((option) => option.value === chosen)) select.value = chosen;
}

function buckets(asset) {
  const now = Date.now() / 1000;
  const count = CHART_WINDOW_S / CHART_BUCKET_S;
  const start = Math.floor(now / CHART_BUCKET_S) * CHART_BUCKET_S - (count - 1) * CHART_BUCKET_S;
  const rate = new Array(count).fill(0);
  const volume = new Array(count).fill(0);
  for (const transfer of session.recent) {
    const index = Math.floor((new Date(transfer.recorded_at).getTime() / 1000 - start) / CHART_BUCKET_S);
    if (index < 0 || index >= count) continue;
    rate[index] += 1 / CHART_BUCKET_S;
    // A chart's scale only: money itself is never computed with floating point here.
    if (transfer.asset === asset) volume[index] += Number(transfer.amount);
  }
  return { rate, volume };
}

function drawCharts() {
  const asset = $("#chart-asset").value;
  const { rate, volume } = buckets(asset);
  barChart($("#chart-rate"), rate);
  lineChart($("#chart-volume"), volume);
  const format = (value) => value.toLocaleString([], { maximumFractionDigits: 2 });
  $("#legend-rate").replaceChildren(h("span", {}, "−5 min"),
    h("span", { class: "num" }, `now ${format(rate[rate.length - 1])}/s · peak ${format(Math.max(...rate))}/s`));
  $("#legend-volume").replaceChildren(h("span", {}, "−5 min"),
    h("span", { class: "num" }, `${asset || ""} peak ${format(Math.max(...volume))}`));
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attributes) {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, value);
  return element;
}

function barChart(target, values) {
  const peak = Math.max(1, ...values);
  const width = 600 / values.length;
  target.replaceChildren(svg("line", { class: "axis", x1: 0, y1: 159, x2: 600, y2: 159 }),
    ...values.map((value, index) => svg("rect", {
      class: "bar1", x: index * width + 0.5, width: Math.max(1, width - 1),
      y: 160 - (value / peak) * 150, height: (value / peak) * 150,
    })));
}

function lineChart(target, values) {
  const peak = Math.max(1e-9, ...values);
  const step = 600 / (values.length - 1);
  const points = values.map((value, index) => `${index * step},${158 - (value / peak) * 148}`).join(" ");
  target.replaceChildren(svg("line", { class: "axis", x1: 0, y1: 159, x2: 600, y2: 159 }),
    svg("polyline", { class: "line2", points }));
}

// ---- Live transfers ----------------------------------------------------------------------------------

function transferRow(transfer) {
  const leg = transfer.legs[0] || {};
  const legs = transfer.legs.length > 1 ? ` +${transfer.legs.length - 1}` : "";
  return h("tr", { "data-transfer": transfer.transfer_id },
    h("td", { class: "num" }, h("a", { href: `#/transfer/${transfer.transfer_id}` }, transfer.position)),
    cell(time(transfer.recorded_at)), cell(transfer.kind), cell(transfer.asset), num(transfer.amount),
    num(transfer.fee), h("td", {}, walletLink(leg.from_wallet_id), " → ", walletLink(leg.to_wallet_id), legs),
    cell(transfer.reference));
}

function live() {
  const body = $("#live-table tbody");
  const shown = () => {
    const asset = $("#live-asset").value;
    return session.recent.filter((transfer) => !asset || transfer.asset === asset);
  };
  const redraw = () => {
    const rows = shown().slice(-LIVE_ROWS_MAX).reverse().map(transferRow);
    body.replaceChildren(...(rows.length ? rows : [h("tr", {}, h("td", { colspan: 8, class: "muted" },
      "No transfer yet: they appear here as they are projected."))]));
    $("#live-count").textContent = `${shown().length} received${session.paused ? " · paused" : ""}`;
  };
  const onTransfer = (transfer) => {
    const asset = $("#live-asset").value;
    if (session.paused || (asset && transfer.asset !== asset)) {
      $("#live-count").textContent = `${shown().length} received${session.paused ? " · paused" : ""}`;
      return;
    }
    if (!body.querySelector("tr[data-transfer]")) body.replaceChildren();
    const row = transferRow(transfer);
    row.classList.add("new");
    body.prepend(row);
    while (body.children.length > LIVE_ROWS_MAX) body.lastChild.remove();
    $("#live-count").textContent = `${shown().length} received`;
  };
  $("#live-asset").onchange = redraw;
  $("#pause").onclick = () => {
    session.paused = !session.paused;
    $("#pause").textContent = session.paused ? "Resume" : "Pause";
    if (!session.paused) redraw();
    else $("#live-count").textContent = `${shown().length} received · paused`;
  };
  redraw();
  session.onTransfer.push(onTransfer);
  return () => { session.onTransfer = session.onTransfer.filter((listener) => listener !== onTransfer); };
}

// ---- Wallet --------------------------------------------------------------------------------------------

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

async function wallet(argument) {
  const result = $("#wallet-result");
  $("#wallet-query").value = argument || "";
  if (!argument) return result.replaceChildren(h("p", { class: "muted" }, "Find a wallet by its id, or an owner's wallets."));
  if (!UUID.test(argument)) return owner(argument, result);
  let view;
  try {
    view = await api(`/v1/wallets/${argument}`);
  } catch (error) {
    return result.replaceChildren(failure(error));
  }
  const holds = h("div", { class: "section" }, h("h2", {}, "Holds"));
  const history = h("div", { class: "section" }, h("h2", {}, "History"));
  result.replaceChildren(h("div", { class: "card", id: "wallet-card" },
    h("h2", {}, `${view.owner_id} · ${view.asset} · ${view.kind}`),
    facts([
      ["Wallet", h("span", { class: "mono" }, view.wallet_id)],
      ["Status", view.status],
      ["Balance", h("span", { id: "wallet-balance" }, view.balance), true],
      ["Held", h("span", { id: "wallet-held" }, view.held), true],
      ["Available", h("span", { id: "wallet-available" }, view.available), true],
      ["Overdraft limit", view.overdraft_limit ?? "0", true],
      ["Version", view.version, true],
      ["Opened", dateTime(view.opened_at)],
      ["Updated", dateTime(view.updated_at)],
    ]), holds, history));
  pages(holds, `/v1/wallets/${argument}/holds`, ["Hold", "Status", "#Amount", "#Captured", "#Released",
    "#Remaining", "Expires", "Reference"], (hold) => h("tr", {},
    h("td", { class: "mono", title: hold.hold_id }, short(hold.hold_id)), cell(hold.status), num(hold.amount),
    num(hold.captured), num(hold.released), num(hold.remaining), cell(dateTime(hold.expires_at)),
    cell(hold.reference)), "no holds");
  pages(history, `/v1/wallets/${argument}/history`, ["#Version", "Time", "Kind", "Direction", "#Amount",
    "#Balance after", "Counterparty", "Transfer"], (entry) => h("tr", {}, num(entry.version),
    cell(dateTime(entry.recorded_at)), cell(entry.kind), cell(entry.direction), num(entry.amount),
    num(entry.balance_after), h("td", {}, walletLink(entry.counterparty_wallet_id)),
    h("td", {}, transferLink(entry.transfer_id))), "no history yet");
}

// A keyset-paged list: the first page, then "More" for each next cursor.
async function pages(target, path, headers, row, emptyText) {
  let rows = [];
  const load = async (cursor) => {
    let page;
    try {
      page = await api(`${path}?limit=${PAGE_ITEMS}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
    } catch (error) {
      return target.replaceChildren(target.firstChild, failure(error));
    }
    rows = rows.concat(page.items.map(row));
    const more = page.next_cursor
      ? h("button", { type: "button", class: "more", onclick: () => load(page.next_cursor) }, "More")
      : null;
    target.replaceChildren(...[target.firstChild, table(headers, rows, emptyText), more].filter(Boolean));
  };
  await load(null);
}

async function owner(ownerId, result) {
  let list;
  try {
    list = await api(`/v1/owners/${encodeURIComponent(ownerId)}/wallets`);
  } catch (error) {
    return result.replaceChildren(failure(error));
  }
  result.replaceChildren(h("div", { class: "card" }, h("h2", {}, `Wallets of ${ownerId}`),
    table(["Wallet", "Asset", "Status", "#Balance", "#Held", "#Available"], list.items.map((view) =>
      h("tr", {}, h("td", {}, h("a", { href: `#/wallet/${view.wallet_id}`, class: "mono" }, view.wallet_id)),
        cell(view.asset), cell(view.status), num(view.balance), num(view.held), num(view.available))),
    "this owner has no wallets")));
}

// ---- Transfer ------------------------------------------------------------------------------------------

async function transfer(argument) {
  const result = $("#transfer-result");
  $("#transfer-query").value = argument || "";
  if (!argument) return result.replaceChildren(h("p", { class: "muted" }, "Find a transfer by its id or reference."));
  let view;
  try {
    if (UUID.test(argument)) {
      view = await api(`/v1/transfers/${argument}`);
    } else {
      const found = (await api(`/v1/transfers?reference=${encodeURIComponent(argument)}`)).items;
      if (found.length !== 1) {
        return result.replaceChildren(found.length
          ? table(["Transfer", "Kind", "Asset", "#Amount"], found.map((item) => h("tr", {},
            h("td", {}, transferLink(item.transfer_id)), cell(item.kind), cell(item.asset), num(item.amount))), "")
          : h("p", { class: "warn" }, `No transfer has the reference ${argument}.`));
      }
      view = found[0];
    }
  } catch (error) {
    return result.replaceChildren(failure(error));
  }
  const events = h("div", { class: "section" }, h("h2", {}, "Raw events"));
  result.replaceChildren(h("div", { class: "card", id: "transfer-card" },
    h("h2", {}, `${view.kind} · ${view.amount} ${view.asset}`),
    facts([
      ["Transfer", h("span", { class: "mono" }, view.transfer_id)],
      ["Amount", view.amount, true],
      ["Fee", view.fee, true],
      ["Reference", view.reference],
      ["Position", view.position, true],
      ["Recorded", dateTime(view.recorded_at)],
      view.reverses ? ["Reverses", transferLink(view.reverses)] : null,
      view.reason ? ["Reason", view.reason] : null,
      view.hold ? ["Hold", h("span", {}, h("span", { class: "mono" }, short(view.hold.hold_id)),
        ` ${view.hold.status}, ${view.hold.captured} of ${view.hold.amount} captured, on `,
        walletLink(view.hold.wallet_id))] : null,
    ].filter(Boolean)),
    h("div", { class: "section" }, h("h2", {}, "Legs"), table(["From", "To", "#Amount"], view.legs.map((leg) =>
      h("tr", {}, h("td", {}, walletLink(leg.from_wallet_id)), h("td", {}, walletLink(leg.to_wallet_id)),
        num(leg.amount))), "")),
    h("div", { class: "section" }, h("h2", {}, "Balances after"), table(["Wallet", "#Balance", "#Version"],
      view.balances.map((balance) => h("tr", {}, h("td", {}, walletLink(balance.wallet_id)), num(balance.balance),
        num(balance.version))), "")),
    h("div", { class: "section" }, h("h2", {}, "Reversals"), table(["Transfer", "#Amount", "#Fee", "Recorded"],
      (view.reversals || []).map((reversal) => h("tr", {}, h("td", {}, transferLink(reversal.transfer_id)),
        num(reversal.amount), num(reversal.fee), cell(dateTime(reversal.recorded_at)))), "not reversed")),
    events));
  try {
    events.append(table(["Stream", "#Version", "#Position", "Type", "Hash"], (await commandEvents(view)).map((event) =>
      h("tr", {}, cell(event.stream_id.replace(/-.*(.{8})$/, "-…$1")), num(event.version), num(event.position),
        cell(event.type), h("td", { class: "hash" }, event.hash))), "no events"));
  } catch (error) {
    events.append(failure(error, "audit"));
  }
}

// The events of the command that recorded a transfer: they are consecutive in the log, from the transfer's
// first event to the position its command answered (its legs on the wallets, a hold's capture).
async function commandEvents(view) {
  const [first] = (await api(`/v1/streams/transfer-${view.transfer_id}/events?limit=1`)).items;
  const count = Math.min(1000, view.position - first.position + 1);
  return (await api(`/v1/events?after=${first.position - 1}&limit=${count}`)).items;
}

// ---- Health and integrity ------------------------------------------------------------------------------

async function health() {
  const [projections, assets, digest, verification] = await Promise.allSettled([
    api("/v1/projections"), api("/v1/assets"), api("/v1/digests/latest"), api("/v1/verifications?limit=1"),
  ]);
  const body = (id) => $(`#${id} tbody`);
  if (projections.status === "fulfilled") {
    body("projections").replaceChildren(...projections.value.items.map((projection) => h("tr", {},
      cell(projection.projection), num(projection.position), num(projection.head), num(projection.lag_events),
      h("td", { class: `num ${projection.lag_ms > 1000 ? "warn" : ""}` }, `${projection.lag_ms} ms`),
      cell(projection.updated_at ? ago(projection.updated_at) : "never"))));
  }
  if (assets.status === "fulfilled") {
    body("zero-sum").replaceChildren(...assets.value.items.map((asset) => h("tr", { "data-asset": asset.code },
      cell(asset.code), num(asset.balance_sum), h("td", {}, isZero(asset.balance_sum)
        ? h("span", { class: "ok" }, "whole") : h("span", { class: "warn" }, "in flight or damaged")))));
  }
  $("#digest").replaceChildren(digest.status === "fulfilled"
    ? facts([
      ["Position", digest.value.position, true],
      ["Recorded", `${dateTime(digest.value.recorded_at)} (${ago(digest.value.recorded_at)})`],
      ["Log hash", h("span", { class: "hash" }, digest.value.log_hash)],
      ["Public key", h("span", { class: "hash" }, digest.value.public_key)],
    ])
    : digest.reason.status === 404 ? h("p", { class: "muted" }, "No digest is recorded yet.")
      : failure(digest.reason, "audit"));
  const last = verification.status === "fulfilled" ? verification.value.items[0] : null;
  $("#verify").replaceChildren(verification.status === "rejected" ? failure(verification.reason)
    : !last ? h("p", { class: "muted" }, "projector verify has not run yet.")
      : h("div", {}, h("p", { class: last.clean ? "ok" : "bad" }, last.clean
        ? `Clean: no finding, ${ago(last.finished_at)}`
        : `${last.findings} findings, ${ago(last.finished_at)}`),
      facts([
        ["Finished", dateTime(last.finished_at)],
        ["Events", last.events, true],
        ["Streams", last.streams, true],
        ["Up to position", last.checkpoint, true],
        ...Object.entries(last.by_check).filter(([, count]) => count > 0).map(([check, count]) => [check, count, true]),
      ])));
}

// ---- Routing -------------------------------------------------------------------------------------------

const VIEWS = {
  overview: () => liveRefresh(overview),
  live: () => live(),
  wallet: (argument) => { wallet(argument); return null; },
  transfer: (argument) => { transfer(argument); return null; },
  health: () => liveRefresh(health),
};
let leaveView = null;

function render() {
  if (leaveView) leaveView();
  leaveView = null;
  const signedIn = Boolean(session.token);
  $("#sign-in").hidden = signedIn;
  $("#nav").hidden = !signedIn;
  $("#sign-out").hidden = !signedIn;
  if (!signedIn) {
    document.querySelectorAll(".view").forEach((view) => { view.hidden = true; });
    setStatus("", "");
    $("#token").focus();
    return;
  }
  const [, name = "overview", ...rest] = location.hash.split("/");
  const view = VIEWS[name] ? name : "overview";
  let argument = rest.join("/");
  try { argument = decodeURIComponent(argument); } catch (_) { /* a malformed escape: taken as typed */ }
  document.querySelectorAll(".view").forEach((section) => { section.hidden = section.id !== `view-${view}`; });
  document.querySelectorAll("#nav a").forEach((link) => {
    if (link.dataset.view === view) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  });
  leaveView = VIEWS[view](argument);
}

function search(form, input, view) {
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    location.hash = `#/${view}/${encodeURIComponent(input.value.trim())}`;
  });
}

document.addEventListener("DOMContentLoaded", () => {
  $("#token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    signIn($("#token").value.trim());
  });
  $("#sign-out").addEventListener("click", () => signOut(""));
  $("#chart-asset").addEventListener("change", drawCharts);
  search($("#wallet-form"), $("#wallet-query"), "wallet");
  search($("#transfer-form"), $("#transfer-query"), "transfer");
  // The charts follow the feed, drawn at most once a frame (the backfill brings thousands at once).
  let drawing = false;
  session.onTransfer.push(() => {
    if (drawing || $("#view-overview").hidden) return;
    drawing = true;
    requestAnimationFrame(() => { drawing = false; drawCharts(); });
  });
  setInterval(() => { if (!$("#view-overview").hidden) drawCharts(); }, REFRESH_MIN_MS);
  window.addEventListener("hashchange", render);
  if (session.token) startFeed();
  render();
});
