// The service worker: signs the browser in to the centre proxy, turns blocks into the
// extension's block page, and filters off the centre network. The decisions live in lib/
// (plain modules, unit-tested with node --test); this file only wires them to Chrome.
//
// Filtering never waits for a sign-in: the strictest profile's rules ship with the extension
// (the static ruleset "shipped", built from the category definitions), are refreshed from
// the backend without a sign-in, and are replaced by the signed-in learner's own rules. At
// the centre the rules are stood down by one session rule, and only while the proxy's
// signed probe answer proves the network; they are never deleted for it.

import { resolveSettings } from "./lib/settings.js";
import { blockFromHeaders, isHitId, newHitId } from "./lib/block_reference.js";
import { blockPageUrl } from "./lib/block_page_address.js";
import { addTicket, ticketEntry } from "./lib/block_tickets.js";
import {
  BACKEND_RULE_ID, FIRST_CHECKED_RULE_ID, ON_NETWORK_RULE_ID, RuleError, SIGN_IN_RULE_ID,
  asCheckRule, backendAllowRule, checkedHostRule, checkedUrlAllowRule, hostOf,
  onNetworkAllowRule, planUpdate, ruleFor, signInFirstRules, urlPrefixRegex,
} from "./lib/dnr_rules.js";
import * as api from "./lib/api_requests.js";
import * as hitQueue from "./lib/hit_queue.js";
import * as reportQueue from "./lib/report_queue.js";
import { CheckCache } from "./lib/check_cache.js";
import {
  ALL_BUCKET_KEYS, bucketKey, changedBuckets, described, indexedRuleFor,
} from "./lib/rule_index.js";
import { messageProblem } from "./lib/messages.js";
import { isHexKey, navigationToken, newNonce, probeIsGenuine } from "./lib/signatures.js";
import { devicePublicKey, sessionProof } from "./lib/device_key.js";
import { managedDeviceId } from "./lib/managed_device.js";

const EXTENSION_ORIGIN = chrome.runtime.getURL("").replace(/\/$/, "");
const BLOCK_PAGE = chrome.runtime.getURL("block.html");
const POPUP_PAGE = chrome.runtime.getURL("popup.html");
const SHIPPED_RULESET = "shipped";
const SHIPPED_HOST_RULES = chrome.runtime.getURL("rules/shipped_host_rules.json");
const PROBE_TIMEOUT_MS = 4000;
const API_TIMEOUT_MS = 10000;
const TICK_ALARM = "esafety-tick";
const STATUS_WAIT_MS = 6000;

const state = {
  settings: resolveSettings(null, null),
  deviceId: "",
  device: null, // {refreshToken, hitKey, probeKey, user} while an install sign-in is valid
  token: null,
  network: "unknown", // "centre" | "off" | "unknown"
  proxy: null,
  rules: {},
  rulesVersion: null,
  rulesSource: "shipped", // "shipped" | "unsigned" | "signed"
  signInFirst: false,
  rulesFetchedAt: 0,
  refreshAfter: 0,
  queue: hitQueue.emptyQueue(),
  reports: reportQueue.emptyQueue(),
  lastError: "",
  serverProbeKey: "", // the proxy's public probe key, as the backend last gave it
};
const checks = new CheckCache();
const bucketCache = new Map(); // a few domain buckets, read on demand (see lib/rule_index.js)
const BUCKETS_CACHED = 8;
const triedAuth = new Set();
let flushing = false;
let flushTimer = null;
let nextCheckedRuleId = FIRST_CHECKED_RULE_ID;
let probed = null;

const user = () => (state.device && state.token ? state.device.user : null);

// -- storage ---------------------------------------------------------------------------------

async function loadSettings() {
  let managed = null;
  try {
    managed = await chrome.storage.managed.get(null);
  } catch {
    managed = null; // no policy schema support (e.g. some unpacked loads)
  }
  const { settings: local } = await chrome.storage.local.get("settings");
  state.settings = resolveSettings(managed, local);
}

function validDevice(device) {
  return device && typeof device.refreshToken === "string" && isHexKey(device.hitKey)
    && device.user && typeof device.user.name === "string" ? device : null;
}

async function shippedHostRules() {
  const response = await fetch(SHIPPED_HOST_RULES);
  const rules = await response.json();
  return Object.fromEntries(rules.map((r) => [r.id, r]));
}

async function useShippedRules() {
  const dynamic = await chrome.declarativeNetRequest.getDynamicRules();
  await chrome.declarativeNetRequest.updateEnabledRulesets({
    enableRulesetIds: [SHIPPED_RULESET] });
  await chrome.declarativeNetRequest.updateDynamicRules({
    removeRuleIds: dynamic.map((r) => r.id).filter((id) => id !== BACKEND_RULE_ID) });
  state.rules = await shippedHostRules();
  state.rulesVersion = null;
  state.rulesSource = "shipped";
  state.signInFirst = false;
  state.rulesFetchedAt = 0;
  checks.clear();
  bucketCache.clear();
  await chrome.storage.local.remove(ALL_BUCKET_KEYS);
  await chrome.storage.local.set({ rules: {}, rulesVersion: null, rulesSource: "shipped" });
}

async function idsFor(domain) {
  const key = bucketKey(domain);
  if (!bucketCache.has(key)) {
    const stored = await chrome.storage.local.get(key);
    bucketCache.set(key, stored[key] ?? {});
    while (bucketCache.size > BUCKETS_CACHED) bucketCache.delete(bucketCache.keys().next().value);
  }
  return bucketCache.get(key)[domain] ?? [];
}

/** The held rule that decides `url` (the shipped set is small and held whole). */
async function activeRuleFor(url) {
  if (state.rulesSource === "shipped") return ruleFor(url, state.rules);
  return indexedRuleFor(url, state.rules, hostOf(url), idsFor);
}

/** Store the domains of a new or changed rule set in buckets; keep only descriptions. */
async function storeRules(plan, answer, replacing) {
  let changed;
  if (replacing) {
    const empty = Object.fromEntries(ALL_BUCKET_KEYS.map((k) => [k, {}]));
    changed = { ...empty, ...changedBuckets({}, [], Object.values(plan.rules)) };
  } else {
    const incoming = answer.rules.map((r) => plan.rules[r.id]).filter(Boolean);
    const loaded = await chrome.storage.local.get(ALL_BUCKET_KEYS);
    changed = changedBuckets(loaded, [...answer.remove, ...incoming.map((r) => r.id)], incoming);
  }
  bucketCache.clear();
  const rules = Object.fromEntries(Object.entries(plan.rules).map(([id, r]) => [id, described(r)]));
  await chrome.storage.local.set(changed);
  return rules;
}

async function installBackendRule() {
  if (!state.settings.backendUrl) return;
  const wanted = backendAllowRule(state.settings.backendUrl);
  const [held] = await chrome.declarativeNetRequest.getDynamicRules({ ruleIds: [BACKEND_RULE_ID] });
  if (held?.condition?.regexFilter === wanted.condition.regexFilter) return; // a wake: as it was
  await chrome.declarativeNetRequest.updateDynamicRules({
    removeRuleIds: [BACKEND_RULE_ID], addRules: [wanted] });
}

async function loadState() {
  await loadSettings();
  const session = await chrome.storage.session.get(["token"]);
  state.token = typeof session.token === "string" ? session.token : null;
  const stored = await chrome.storage.local.get(["deviceId", "device", "rules", "rulesVersion",
    "rulesSource", "signInFirst", "hitQueue", "reportQueue", "serverProbeKey"]);
  state.serverProbeKey = isHexKey(stored.serverProbeKey) ? stored.serverProbeKey : "";
  state.deviceId = typeof stored.deviceId === "string" ? stored.deviceId : "";
  if (!/^[0-9a-f]{32}$/.test(state.deviceId)) {
    state.deviceId = newNonce();
    await chrome.storage.local.set({ deviceId: state.deviceId });
  }
  state.device = validDevice(stored.device);
  if (!state.device) state.token = null;
  state.queue = hitQueue.loadQueue(stored.hitQueue);
  state.reports = reportQueue.loadQueue(stored.reportQueue);
  await installBackendRule();
  const held = stored.rules && typeof stored.rules === "object" ? stored.rules : {};
  if ((stored.rulesSource === "signed" || stored.rulesSource === "unsigned")
      && typeof stored.rulesVersion === "string" && Object.keys(held).length) {
    state.rules = held;
    state.rulesVersion = stored.rulesVersion;
    state.rulesSource = stored.rulesSource;
    state.signInFirst = stored.signInFirst === true;
    if (state.rulesSource === "signed" && !state.device) await useShippedRules();
  } else {
    await useShippedRules();
  }
}

async function saveQueue() {
  await chrome.storage.local.set({ hitQueue: state.queue });
}

async function saveReports() {
  await chrome.storage.local.set({ reportQueue: state.reports });
}

const ready = loadState().then(() => {
  chrome.alarms.create(TICK_ALARM, { periodInMinutes: 1 });
  probed = tick();
});

// -- backend calls ---------------------------------------------------------------------------

async function send({ url, init }) {
  if (!state.settings.backendUrl) {
    return { ok: false, status: 0, body: null, message: "The extension is not set up yet." };
  }
  let response;
  try {
    response = await fetch(url, { ...init, signal: AbortSignal.timeout(API_TIMEOUT_MS) });
  } catch {
    return { ok: false, status: 0, body: null, message: api.errorMessage(0, null) };
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  return { ok: response.ok, status: response.status, body,
    message: response.ok ? "" : api.errorMessage(response.status, body) };
}

/** A signed-in call: `build(token)` makes the request; an expired token is renewed once. */
async function call(build) {
  if (!state.token && !(await renewSession())) {
    return { ok: false, status: 401, body: null, message: "Sign in first (click the esafety icon)." };
  }
  let answer = await send(build(state.token));
  if (answer.status === 401 && (await renewSession())) answer = await send(build(state.token));
  return answer;
}

/** A new bearer token from this install's refresh token; false (signed out) if refused. */
async function renewSession() {
  if (!state.device) return false;
  const answer = await send(api.sessionRequest(state.settings.backendUrl, state.deviceId,
    state.device.refreshToken, await sessionProof(state.deviceId)));
  if (answer.ok && typeof answer.body?.token === "string") {
    state.token = answer.body.token;
    await chrome.storage.session.set({ token: state.token });
    return true;
  }
  if (answer.status === 401) await forgetSignIn(); // revoked, expired or the account disabled
  return false;
}

/** The sign-in ends; the next tick puts the shipped rules back before anything else. */
async function forgetSignIn() {
  state.token = null;
  state.device = null;
  await chrome.storage.session.remove(["token"]);
  await chrome.storage.local.remove(["device"]);
  tick();
}

// -- network status: on the centre proxy (proven by its signature), or off it ---------------

async function probeNetwork() {
  const key = state.settings.probeKey || state.device?.probeKey || state.serverProbeKey;
  const nonce = newNonce();
  let info = null;
  try {
    const url = `${state.settings.probeUrl}?${new URLSearchParams({ nonce })}`;
    const response = await fetch(url, {
      cache: "no-store", credentials: "omit", signal: AbortSignal.timeout(PROBE_TIMEOUT_MS) });
    const body = response.ok ? await response.json() : null;
    if (await probeIsGenuine(key, nonce, body, { centreId: state.settings.centreId })) {
      info = body;
    }
  } catch {
    info = null;
  }
  state.proxy = info;
  state.network = info ? "centre" : "off";
  return state.network;
}

async function applyNetworkState() {
  const standDown = state.network === "centre" || !state.settings.offNetworkFiltering;
  const session = await chrome.declarativeNetRequest.getSessionRules();
  const has = session.some((r) => r.id === ON_NETWORK_RULE_ID);
  if (standDown && !has) {
    await chrome.declarativeNetRequest.updateSessionRules({ addRules: [onNetworkAllowRule()] });
  } else if (!standDown && has) {
    await chrome.declarativeNetRequest.updateSessionRules({ removeRuleIds: [ON_NETWORK_RULE_ID] });
  }
}

async function syncRules() {
  const signed = Boolean(state.device);
  const source = signed ? "signed" : "unsigned";
  const since = state.rulesSource === source ? state.rulesVersion : null;
  const answer = signed
    ? await call((token) => api.rulesRequest(state.settings.backendUrl, token, since))
    : await send(api.unsignedRulesRequest(state.settings.backendUrl, since));
  if (!answer.ok) {
    state.lastError = answer.message;
    return;
  }
  if (signed && !state.device) return; // the sign-in ended while asking
  if (isHexKey(answer.body.probe_key) && answer.body.probe_key !== state.serverProbeKey) {
    state.serverProbeKey = answer.body.probe_key;
    await chrome.storage.local.set({ serverProbeKey: state.serverProbeKey });
  }
  const held = state.rulesSource === source ? state.rules : {};
  let plan;
  try {
    plan = planUpdate(held, await compilable(answer.body));
  } catch (error) {
    if (!(error instanceof RuleError)) throw error;
    state.lastError = `The filter rules from the server were refused: ${error.message}`;
    return;
  }
  const signInFirst = !signed && (state.settings.offNetworkUnsigned
    || answer.body.offnetwork_unsigned) === "block_all";
  if (plan.update || signInFirst !== state.signInFirst) {
    const update = plan.update ?? { removeRuleIds: [], addRules: [] };
    if (plan.update && answer.body.full) {
      // a whole set (first fetch, or another source): nothing of the old one stays
      const existing = await chrome.declarativeNetRequest.getDynamicRules();
      update.removeRuleIds = existing.map((r) => r.id).filter((id) => id !== BACKEND_RULE_ID);
    }
    update.removeRuleIds = [...new Set([...update.removeRuleIds, SIGN_IN_RULE_ID])];
    if (signInFirst) update.addRules.push(...signInFirstRules());
    await chrome.declarativeNetRequest.updateDynamicRules(update);
  }
  // the backend's rules are in place: only now stand the shipped ones down
  await chrome.declarativeNetRequest.updateEnabledRulesets({
    disableRulesetIds: [SHIPPED_RULESET] });
  if (plan.update) {
    state.rules = await storeRules(plan, answer.body, answer.body.full || state.rulesSource !== source);
  }
  state.rulesVersion = plan.version;
  state.rulesSource = source;
  state.signInFirst = signInFirst;
  state.rulesFetchedAt = Date.now();
  state.refreshAfter = Math.max(30, Number(answer.body.refresh_after) || 300) * 1000;
  state.lastError = "";
  await chrome.storage.local.set({ rules: state.rules, rulesVersion: state.rulesVersion,
    rulesSource: source, signInFirst });
}

/** The answer with any url-prefix rule Chrome cannot compile turned into a check rule. */
async function compilable(body) {
  if (!Array.isArray(body?.rules)) return body;
  const rules = await Promise.all(body.rules.map(async (rule) => {
    if (rule?.match !== "url-prefix" || !Array.isArray(rule.prefixes)) return rule;
    const { isSupported } = await chrome.declarativeNetRequest.isRegexSupported({
      regex: urlPrefixRegex(rule.prefixes), isCaseSensitive: true });
    if (isSupported) return rule;
    // an allow prefix left out keeps its host's blocks (closed); a block one is checked
    return rule.action === "block" ? asCheckRule(rule) : null;
  }));
  return { ...body, rules: rules.filter(Boolean) };
}

// One tick at a time: two rule updates at once would compute their changes from the same
// starting point and collide.
let ticking = Promise.resolve();

function tick() {
  ticking = ticking.then(runTick, runTick).catch((error) => {
    state.lastError = `Something went wrong in the extension (${String(error?.message ?? error)}).`;
  });
  return ticking;
}

async function runTick() {
  await ready;
  if (state.rulesSource === "signed" && !state.device) {
    await useShippedRules(); // never a learner's allowances without a valid sign-in
  }
  if (!state.settings.backendUrl) return;
  if (state.device && !state.token) await renewSession();
  await probeNetwork();
  await applyNetworkState();
  const source = state.device ? "signed" : "unsigned";
  const due = state.rulesSource !== source || !state.rulesVersion
    || Date.now() - state.rulesFetchedAt >= state.refreshAfter;
  if (due) await syncRules();
  flushHits();
}

// -- the off-network hit queue and the accident-report queue --------------------------------

function randomBytes(n) {
  return crypto.getRandomValues(new Uint8Array(n));
}

function scheduleFlush(delayMs) {
  if (flushTimer !== null) clearTimeout(flushTimer);
  flushTimer = setTimeout(() => {
    flushTimer = null;
    flushHits();
  }, Math.max(0, delayMs));
}

async function signPendingHits() {
  const key = state.device?.hitKey;
  if (!key || state.queue.pending.every((h) => h.navToken)) return;
  const pending = await Promise.all(state.queue.pending.map(async (h) => (h.navToken ? h
    : { ...h, navToken: await navigationToken(key, h.id, h.ts, h.url) })));
  state.queue = { ...state.queue, pending };
  await saveQueue();
}

/** Send what waits: hits first (a report may name one), then accident reports. */
async function flushHits() {
  await ready;
  if (flushing) return;
  flushing = true;
  try {
    await signPendingHits();
    const hitsDone = await flushHitBatches();
    if (hitsDone) await flushReports();
    const retryAt = Math.min(...[state.queue.retryAt, state.reports.retryAt].filter((t) => t > 0));
    if (Number.isFinite(retryAt)) scheduleFlush(retryAt - Date.now());
  } finally {
    flushing = false;
  }
}

async function flushHitBatches() {
  while (state.device) {
    const now = Date.now();
    const step = hitQueue.nextBatch(state.queue, now, () => crypto.randomUUID());
    if (step.queue !== state.queue) {
      state.queue = step.queue;
      await saveQueue(); // sealed before it is first sent
    }
    if (!step.batch) return hitQueue.queuedCount(state.queue) === 0;
    const answer = await call((token) => api.hitsRequest(state.settings.backendUrl, token,
      state.deviceId, step.batch));
    if (answer.ok) {
      state.queue = hitQueue.acknowledge(state.queue, step.batch.batchId);
    } else if (answer.status === 401) {
      return false; // kept until the learner signs in again
    } else if (answer.status >= 400 && answer.status < 500 && answer.status !== 429) {
      state.queue = hitQueue.rejected(state.queue, step.batch.batchId);
    } else {
      state.queue = hitQueue.failed(state.queue, Date.now());
    }
    await saveQueue();
  }
  return false;
}

async function flushReports() {
  while (state.device) {
    const now = Date.now();
    const report = reportQueue.next(state.reports, now);
    if (!report) return;
    const answer = await call((token) => api.fileAccidentReport(state.settings.backendUrl, token,
      report));
    if (answer.ok) {
      state.reports = reportQueue.acknowledge(state.reports, report.key);
    } else if (answer.status === 401) {
      return;
    } else if (answer.status >= 400 && answer.status < 500 && answer.status !== 429) {
      state.reports = reportQueue.acknowledge(state.reports, report.key); // refused: dropped
    } else {
      state.reports = reportQueue.failed(state.reports, Date.now());
    }
    await saveReports();
  }
}

async function recordOffNetworkHit(url, category) {
  const ts = Date.now() / 1000;
  const id = newHitId(new Date(ts * 1000), randomBytes);
  const key = state.device?.hitKey;
  // minted for this navigation, with the key only this install holds
  const navToken = key ? await navigationToken(key, id, ts, url) : "";
  const hit = { id, ts, url, category, navToken };
  state.queue = hitQueue.enqueue(state.queue, hit);
  await saveQueue();
  flushHits();
  return hit;
}

// -- proxy sign-in (407) -------------------------------------------------------------------

async function answerProxyChallenge(details) {
  await ready;
  if (!details.isProxy || details.realm !== state.settings.proxyRealm) return {};
  if (state.device && !state.token) await renewSession();
  if (!state.token || !user()) {
    if (details.type === "main_frame" && details.tabId >= 0) {
      chrome.tabs.update(details.tabId, { url: POPUP_PAGE });
    }
    return { cancel: true };
  }
  if (triedAuth.has(details.requestId)) {
    // The proxy refused the token: give up on this request instead of looping.
    triedAuth.delete(details.requestId);
    return { cancel: true };
  }
  if (triedAuth.size > 5000) triedAuth.clear();
  triedAuth.add(details.requestId);
  return { authCredentials: { username: user().name, password: state.token } };
}

chrome.webRequest.onAuthRequired.addListener((details, callback) => {
  answerProxyChallenge(details).then(callback, () => callback({ cancel: true }));
}, { urls: ["<all_urls>"] }, ["asyncBlocking"]);

function forgetAuthAttempt(details) {
  triedAuth.delete(details.requestId);
}
chrome.webRequest.onCompleted.addListener(forgetAuthAttempt, { urls: ["<all_urls>"] });

// -- block pages ---------------------------------------------------------------------------

/** Open the block page in `tabId` with a fresh one-time ticket for `entry`. */
async function showBlockPage(tabId, entry) {
  if (tabId < 0) return;
  const ticket = newNonce();
  const { tickets } = await chrome.storage.session.get("tickets");
  await chrome.storage.session.set({
    tickets: addTicket(tickets, ticket, { when: new Date().toISOString(), ...entry },
      Date.now()) });
  await chrome.tabs.update(tabId, { url: blockPageUrl(BLOCK_PAGE, ticket) });
}

chrome.webRequest.onHeadersReceived.addListener((details) => {
  const block = blockFromHeaders(details.statusCode, details.responseHeaders);
  if (block) {
    showBlockPage(details.tabId, { url: details.url, via: "proxy", hitId: block.hitId,
      category: block.category, offNetwork: false });
  }
}, { urls: ["http://*/*", "https://*/*"], types: ["main_frame"] }, ["responseHeaders"]);

async function blockingRule(url) {
  const rule = await activeRuleFor(url);
  if (rule?.action === "block") {
    return { category: rule.category, title: rule.title, reason: rule.reason };
  }
  if (rule) return null;
  const host = hostOf(url);
  const checked = host ? checks.get(host) : null;
  if (checked?.blocked) {
    return { category: checked.category, title: checked.category_title, reason: checked.reason };
  }
  return null;
}

/**
 * A "check" rule held a page load (its host has listed paths Chrome could not be given):
 * ask the backend about the full address before anything reaches the site. Without a
 * sign-in, or with the backend out of reach, the page stays blocked.
 */
async function checkHeldPage(details, rule) {
  const answer = state.device ? await call((token) => api.checkRequest(
    state.settings.backendUrl, token, details.url)) : null;
  if (answer?.ok && answer.body?.blocked === false) {
    const allow = checkedUrlAllowRule(nextCheckedRuleId++, details.url);
    if (allow) {
      await chrome.declarativeNetRequest.updateSessionRules({ addRules: [allow] });
      await chrome.tabs.update(details.tabId, { url: details.url });
      return;
    }
  }
  const blocked = answer?.ok && answer.body?.blocked === true;
  const hit = blocked ? await recordOffNetworkHit(details.url, String(answer.body.category)) : null;
  await showBlockPage(details.tabId, { url: details.url, via: "check", hitId: hit?.id ?? "",
    category: blocked ? String(answer.body.category) : rule.category,
    title: blocked ? String(answer.body.category_title ?? "") : rule.title,
    reason: blocked ? String(answer.body.reason ?? "") : "Parts of this site are blocked, and "
      + "this browser could not check this page with the centre's server. Sign in (click the "
      + "esafety icon), or try again when you are online.",
    offNetwork: true });
}

/** Chrome's rules refused a page load: show why, and log it (the request never left). */
async function explainRuleBlock(details) {
  const held = await activeRuleFor(details.url);
  if (held?.action === "check") {
    await checkHeldPage(details, held);
    return;
  }
  const blocked = await blockingRule(details.url);
  if (blocked) {
    const hit = await recordOffNetworkHit(details.url, blocked.category);
    await showBlockPage(details.tabId, { url: details.url, via: "rules", hitId: hit.id,
      ...blocked, offNetwork: true });
  } else if (state.signInFirst && !state.device) {
    await chrome.tabs.update(details.tabId,
      { url: `${POPUP_PAGE}?${new URLSearchParams({ next: details.url })}` });
  }
}

async function explainFailedLoad(details) {
  await ready;
  forgetAuthAttempt(details);
  if (details.type !== "main_frame") return;
  if (details.error === "net::ERR_BLOCKED_BY_CLIENT") {
    await explainRuleBlock(details);
    return;
  }
  if (details.error === "net::ERR_PROXY_CONNECTION_FAILED") {
    tick();
    return;
  }
  if (details.error !== "net::ERR_TUNNEL_CONNECTION_FAILED" || !state.device) return;
  const answer = await call((token) => api.checkRequest(state.settings.backendUrl, token,
    details.url, { recent: true }));
  if (answer.ok && answer.body?.blocked === true) {
    const hit = answer.body.hit;
    await showBlockPage(details.tabId, { url: details.url, via: "tunnel",
      hitId: hit && isHitId(hit.id) ? hit.id : "", category: String(answer.body.category),
      title: String(answer.body.category_title ?? ""), reason: String(answer.body.reason ?? ""),
      offNetwork: false });
  }
}
chrome.webRequest.onErrorOccurred.addListener((details) => {
  explainFailedLoad(details);
}, { urls: ["http://*/*", "https://*/*"] });

// Off the centre network, a page load the rules do not cover is checked with the backend.
// Only the scheme and host are sent: the path and query stay in the browser.
async function checkUncoveredPage(details) {
  await ready;
  if (state.network !== "off" || !state.settings.offNetworkFiltering || !state.device) return;
  if (details.url.startsWith(state.settings.backendUrl)) return;
  if (await activeRuleFor(details.url)) return; // Chrome's rules decide
  const host = hostOf(details.url);
  if (!host) return;
  let answer = checks.get(host);
  if (!answer) {
    const origin = `${new URL(details.url).protocol}//${host}/`;
    const reply = await call((token) => api.checkRequest(state.settings.backendUrl, token,
      origin));
    if (!reply.ok || typeof reply.body?.blocked !== "boolean") return;
    answer = reply.body;
    checks.put(host, answer, answer.cache_seconds);
  }
  if (!answer.blocked) return;
  const id = nextCheckedRuleId++;
  await chrome.declarativeNetRequest.updateSessionRules({
    removeRuleIds: [id], addRules: [checkedHostRule(id, host)] });
  const hit = await recordOffNetworkHit(details.url, answer.category);
  await showBlockPage(details.tabId, { url: details.url, via: "check", hitId: hit.id,
    category: answer.category, title: answer.category_title, reason: answer.reason,
    offNetwork: true });
}
chrome.webRequest.onBeforeRequest.addListener((details) => {
  checkUncoveredPage(details);
}, { urls: ["http://*/*", "https://*/*"], types: ["main_frame"] });

// -- messages from the popup and the block page --------------------------------------------

async function ticketed(ticket) {
  const { tickets } = await chrome.storage.session.get("tickets");
  return ticketEntry(tickets, ticket, Date.now());
}

async function explainBlock({ ticket }) {
  const entry = await ticketed(ticket);
  if (!entry) return { ok: false, message: "This block page has expired; reload the site." };
  const out = { url: entry.url ?? "", hitId: entry.hitId ?? "", category: entry.category ?? "",
    title: entry.title ?? "", reason: entry.reason ?? "", when: entry.when,
    offNetwork: Boolean(entry.offNetwork) };
  if (entry.via === "proxy" && !out.title && out.url && state.device) {
    const answer = await call((token) => api.checkRequest(state.settings.backendUrl, token,
      out.url));
    if (answer.ok) {
      out.title = String(answer.body.category_title ?? "");
      out.reason = String(answer.body.reason ?? "");
      out.category = out.category || String(answer.body.category ?? "");
    }
  }
  return { ok: true, ...out };
}

async function signIn({ username, password }) {
  const answer = await send(api.loginRequest(state.settings.backendUrl, username, password));
  if (!answer.ok || typeof answer.body?.token !== "string") {
    return { ok: false, message: answer.status === 401
      ? "The user name or password is wrong." : answer.message };
  }
  const token = answer.body.token;
  const registered = await send(api.deviceRequest(state.settings.backendUrl, token,
    state.deviceId, await devicePublicKey(), await managedDeviceId()));
  const grant = registered.body;
  if (!registered.ok || typeof grant?.refresh_token !== "string" || !isHexKey(grant.hit_key)) {
    return { ok: false, message: registered.message || "The centre's server refused this browser." };
  }
  const given = answer.body.user ?? {};
  state.token = token;
  state.device = {
    refreshToken: grant.refresh_token, hitKey: grant.hit_key,
    probeKey: isHexKey(grant.probe_key) ? grant.probe_key : "",
    user: { name: String(given.name ?? username), role: String(given.role ?? ""),
      group: String(given.group ?? ""), display_name: String(given.display_name ?? "") },
  };
  await chrome.storage.session.set({ token });
  await chrome.storage.local.set({ device: state.device });
  state.rulesFetchedAt = 0;
  await tick();
  return { ok: true, user: state.device.user };
}

async function signOut() {
  if (state.token) {
    await send(api.forgetDeviceRequest(state.settings.backendUrl, state.token, state.deviceId));
  }
  await forgetSignIn();
  await tick();
  return { ok: true };
}

async function status() {
  // a popup opened as the worker starts waits for the first probe, not "Checking…" for ever
  if (probed) {
    await Promise.race([probed.catch(() => null),
      new Promise((r) => { setTimeout(r, STATUS_WAIT_MS); })]);
  }
  const held = Object.keys(state.rules).length;
  return {
    ok: true, configured: Boolean(state.settings.backendUrl), settingsFrom: state.settings.source,
    user: user() ?? (state.device ? state.device.user : null), network: state.network,
    proxy: state.proxy, offNetworkFiltering: state.settings.offNetworkFiltering,
    rulesVersion: state.rulesVersion, rulesSource: state.rulesSource, rules: held,
    signInFirst: state.signInFirst, queued: hitQueue.queuedCount(state.queue),
    reportsQueued: reportQueue.queuedCount(state.reports), lastError: state.lastError,
  };
}

async function myRequests() {
  const answer = await call((token) => api.listMyUnblockRequests(state.settings.backendUrl, token));
  if (!answer.ok) return { ok: false, message: answer.message };
  const items = Array.isArray(answer.body?.items) ? answer.body.items : [];
  return { ok: true, items: items.map((r) => ({ id: String(r.id), url: String(r.url ?? ""),
    status: String(r.status ?? ""), note: String(r.note ?? ""),
    created_at: Number(r.created_at) || 0 })) };
}

async function reportAccident({ ticket, whatHappened }) {
  const entry = await ticketed(ticket);
  if (!entry) return { ok: false, message: "This block page has expired; reload the site." };
  if (!state.device) return { ok: false, message: "Sign in first (click the esafety icon)." };
  const report = { hitId: entry.hitId || undefined, url: entry.url || undefined, whatHappened };
  state.reports = reportQueue.enqueue(state.reports, report, crypto.randomUUID());
  await saveReports();
  await flushHits();
  const sent = reportQueue.queuedCount(state.reports) === 0;
  return { ok: true, queued: !sent, id: "" };
}

async function askReview({ ticket, reason }) {
  const entry = await ticketed(ticket);
  if (!entry || !entry.url) return { ok: false, message: "This block page has expired; reload the site." };
  if (!state.device) return { ok: false, message: "Sign in first (click the esafety icon)." };
  const answer = await call((token) => api.fileUnblockRequest(state.settings.backendUrl, token,
    { url: entry.url, hitId: entry.hitId, reason }));
  if (!answer.ok) return { ok: false, message: answer.message };
  return { ok: true, id: String(answer.body?.id ?? ""), merged: Boolean(answer.body?.merged),
    message: String(answer.body?.message ?? "") };
}

async function handle(message) {
  await ready;
  switch (message.type) {
    case "status": return status();
    case "signIn": return signIn(message);
    case "signOut": return signOut();
    case "myRequests": return state.device ? myRequests() : { ok: false, message: "Sign in first." };
    case "explainBlock": return explainBlock(message);
    case "reportAccident": return reportAccident(message);
    case "askReview": return askReview(message);
    default: return { ok: false, message: "unknown message" };
  }
}

chrome.runtime.onMessage.addListener((message, sender, sendResponse) => {
  const problem = messageProblem(message, sender, chrome.runtime.id, EXTENSION_ORIGIN);
  if (problem) {
    sendResponse({ ok: false, message: `Refused: ${problem}` });
    return false;
  }
  handle(message).then(sendResponse, (error) => sendResponse({ ok: false,
    message: `Something went wrong in the extension (${String(error?.message ?? error)}).` }));
  return true;
});

// Pages on other sites may not talk to the service worker at all.
chrome.runtime.onMessageExternal?.addListener((_message, _sender, sendResponse) => {
  sendResponse({ ok: false, message: "Refused" });
  return false;
});

// -- lifecycle -----------------------------------------------------------------------------

chrome.alarms.onAlarm.addListener((alarm) => {
  if (alarm.name === TICK_ALARM) tick();
});
chrome.runtime.onStartup.addListener(() => tick());
chrome.storage.onChanged.addListener((changes, area) => {
  if (area === "managed" || (area === "local" && changes.settings)) {
    loadSettings().then(installBackendRule).then(() => tick());
  }
});

// For tests and troubleshooting from the service worker console: run a tick now.
globalThis.esafetyTick = tick;
globalThis.esafetyStatus = () => ready.then(status);
