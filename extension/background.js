// The service worker: signs the browser in to the centre proxy, turns blocks into the
// extension's block page, and filters off the centre network. The decisions live in lib/
// (plain modules, unit-tested with node --test); this file only wires them to Chrome.

import { resolveSettings } from "./lib/settings.js";
import { blockFromHeaders, isHitId, newHitId } from "./lib/block_reference.js";
import { blockPageUrl } from "./lib/block_page_address.js";
import {
  BACKEND_RULE_ID, RuleError, allChromeRuleIds, backendAllowRule, checkedHostRule, hostOf,
  planUpdate, ruleFor,
} from "./lib/dnr_rules.js";
import * as api from "./lib/api_requests.js";
import * as hitQueue from "./lib/hit_queue.js";
import { CheckCache } from "./lib/check_cache.js";
import { messageProblem } from "./lib/messages.js";

const EXTENSION_ORIGIN = chrome.runtime.getURL("").replace(/\/$/, "");
const BLOCK_PAGE = chrome.runtime.getURL("block.html");
const POPUP_PAGE = chrome.runtime.getURL("popup.html");
const PROBE_TIMEOUT_MS = 4000;
const API_TIMEOUT_MS = 10000;
const TICK_ALARM = "esafety-tick";
const FIRST_SESSION_RULE_ID = 1;

const state = {
  settings: resolveSettings(null, null),
  token: null,
  user: null,
  network: "unknown", // "centre" | "off" | "unknown"
  proxy: null,
  rules: {},
  rulesVersion: null,
  rulesFetchedAt: 0,
  refreshAfter: 0,
  queue: hitQueue.emptyQueue(),
  lastError: "",
};
const checks = new CheckCache();
const triedAuth = new Set();
let flushing = false;
let flushTimer = null;
let nextSessionRuleId = FIRST_SESSION_RULE_ID;

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

async function loadState() {
  await loadSettings();
  const session = await chrome.storage.session.get(["token", "user"]);
  state.token = typeof session.token === "string" ? session.token : null;
  state.user = session.user && typeof session.user.name === "string" ? session.user : null;
  const stored = await chrome.storage.local.get(["rules", "rulesVersion", "hitQueue"]);
  state.rules = stored.rules && typeof stored.rules === "object" ? stored.rules : {};
  state.rulesVersion = typeof stored.rulesVersion === "string" ? stored.rulesVersion : null;
  state.queue = hitQueue.loadQueue(stored.hitQueue);
}

async function saveQueue() {
  await chrome.storage.local.set({ hitQueue: state.queue });
}

const ready = loadState().then(() => {
  chrome.alarms.create(TICK_ALARM, { periodInMinutes: 1 });
  tick();
});

// -- backend calls ---------------------------------------------------------------------------

async function call({ url, init }) {
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
  if (response.status === 401 && state.token) await forgetSignIn();
  return { ok: response.ok, status: response.status, body,
    message: response.ok ? "" : api.errorMessage(response.status, body) };
}

async function forgetSignIn() {
  state.token = null;
  state.user = null;
  await chrome.storage.session.remove(["token", "user"]);
}

// -- network status: on the centre proxy, or off it ----------------------------------------

async function probeNetwork() {
  let info = null;
  try {
    const response = await fetch(state.settings.probeUrl, {
      cache: "no-store", credentials: "omit", signal: AbortSignal.timeout(PROBE_TIMEOUT_MS) });
    const body = response.ok ? await response.json() : null;
    if (body && body.proxy === "esafety") info = body;
  } catch {
    info = null;
  }
  state.proxy = info;
  state.network = info ? "centre" : "off";
  return state.network;
}

async function clearOffNetworkRules() {
  const dynamic = await chrome.declarativeNetRequest.getDynamicRules();
  const session = await chrome.declarativeNetRequest.getSessionRules();
  await chrome.declarativeNetRequest.updateDynamicRules({
    removeRuleIds: [...new Set([...dynamic.map((r) => r.id), ...allChromeRuleIds(state.rules)])] });
  await chrome.declarativeNetRequest.updateSessionRules({
    removeRuleIds: session.map((r) => r.id) });
  state.rules = {};
  state.rulesVersion = null;
  checks.clear();
  await chrome.storage.local.set({ rules: {}, rulesVersion: null });
}

async function syncRules() {
  if (!state.token) return;
  const answer = await call(api.rulesRequest(state.settings.backendUrl, state.token,
    state.rulesVersion));
  if (!answer.ok) {
    state.lastError = answer.message;
    return;
  }
  let plan;
  try {
    plan = planUpdate(state.rules, answer.body, BLOCK_PAGE);
  } catch (error) {
    if (!(error instanceof RuleError)) throw error;
    state.lastError = `The filter rules from the server were refused: ${error.message}`;
    return;
  }
  if (plan.update) {
    if (answer.body.full) {
      const existing = await chrome.declarativeNetRequest.getDynamicRules();
      plan.update.removeRuleIds = existing.map((r) => r.id);
    }
    // our own rules must never cut the extension off from its backend
    plan.update.removeRuleIds = [...new Set([...plan.update.removeRuleIds, BACKEND_RULE_ID])];
    plan.update.addRules.push(backendAllowRule(state.settings.backendUrl));
    await chrome.declarativeNetRequest.updateDynamicRules(plan.update);
  }
  state.rules = plan.rules;
  state.rulesVersion = plan.version;
  state.rulesFetchedAt = Date.now();
  state.refreshAfter = Math.max(30, Number(answer.body.refresh_after) || 300) * 1000;
  await chrome.storage.local.set({ rules: state.rules, rulesVersion: state.rulesVersion });
}

async function applyNetworkState() {
  if (state.network === "centre") {
    if (state.rulesVersion !== null || Object.keys(state.rules).length) {
      await clearOffNetworkRules();
    }
    return;
  }
  if (state.network === "off" && state.settings.offNetworkFiltering) {
    const due = !state.rulesVersion || Date.now() - state.rulesFetchedAt >= state.refreshAfter;
    if (due) await syncRules();
  }
}

async function tick() {
  await ready;
  if (!state.settings.backendUrl) return;
  await probeNetwork();
  await applyNetworkState();
  flushHits();
}

// -- the off-network hit queue -------------------------------------------------------------

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

async function flushHits() {
  await ready;
  if (flushing) return;
  flushing = true;
  try {
    while (state.token) {
      const now = Date.now();
      const step = hitQueue.nextBatch(state.queue, now, () => crypto.randomUUID());
      if (step.queue !== state.queue) {
        state.queue = step.queue;
        await saveQueue(); // sealed before it is first sent
      }
      if (!step.batch) {
        if (state.queue.retryAt > now) scheduleFlush(state.queue.retryAt - now);
        return;
      }
      const answer = await call(api.hitsRequest(state.settings.backendUrl, state.token,
        step.batch));
      if (answer.ok) {
        state.queue = hitQueue.acknowledge(state.queue, step.batch.batchId);
      } else if (answer.status === 401) {
        return; // kept until the learner signs in again
      } else if (answer.status >= 400 && answer.status < 500 && answer.status !== 429) {
        state.queue = hitQueue.rejected(state.queue, step.batch.batchId);
      } else {
        state.queue = hitQueue.failed(state.queue, Date.now());
      }
      await saveQueue();
    }
  } finally {
    flushing = false;
  }
}

async function recordOffNetworkHit(url, category) {
  const now = new Date();
  const hit = { id: newHitId(now, randomBytes), ts: now.getTime() / 1000, url, category };
  state.queue = hitQueue.enqueue(state.queue, hit);
  await saveQueue();
  flushHits();
  return hit;
}

// -- proxy sign-in (407) -------------------------------------------------------------------

async function answerProxyChallenge(details) {
  await ready;
  if (!details.isProxy || details.realm !== state.settings.proxyRealm) return {};
  if (!state.token || !state.user) {
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
  return { authCredentials: { username: state.user.name, password: state.token } };
}

chrome.webRequest.onAuthRequired.addListener((details, callback) => {
  answerProxyChallenge(details).then(callback, () => callback({ cancel: true }));
}, { urls: ["<all_urls>"] }, ["asyncBlocking"]);

function forgetAuthAttempt(details) {
  triedAuth.delete(details.requestId);
}
chrome.webRequest.onCompleted.addListener(forgetAuthAttempt, { urls: ["<all_urls>"] });

// -- block pages ---------------------------------------------------------------------------

function showBlockPage(tabId, address) {
  if (tabId < 0) return;
  chrome.tabs.update(tabId, { url: blockPageUrl(BLOCK_PAGE, address) });
}

chrome.webRequest.onHeadersReceived.addListener((details) => {
  const block = blockFromHeaders(details.statusCode, details.responseHeaders);
  if (block) {
    showBlockPage(details.tabId, { url: details.url, via: "proxy", hitId: block.hitId,
      category: block.category });
  }
}, { urls: ["http://*/*", "https://*/*"], types: ["main_frame"] }, ["responseHeaders"]);

async function explainTunnelError(details) {
  await ready;
  forgetAuthAttempt(details);
  if (details.type !== "main_frame") return;
  if (details.error === "net::ERR_PROXY_CONNECTION_FAILED") {
    tick();
    return;
  }
  if (details.error !== "net::ERR_TUNNEL_CONNECTION_FAILED" || !state.token) return;
  const answer = await call(api.checkRequest(state.settings.backendUrl, state.token,
    details.url, { recent: true }));
  if (answer.ok && answer.body?.blocked === true) {
    const hit = answer.body.hit;
    showBlockPage(details.tabId, { url: details.url, via: "tunnel",
      hitId: hit && isHitId(hit.id) ? hit.id : "", category: String(answer.body.category) });
  }
}
chrome.webRequest.onErrorOccurred.addListener((details) => {
  explainTunnelError(details);
}, { urls: ["http://*/*", "https://*/*"] });

// Off the centre network, a page load the rules do not cover is checked with the backend.
async function checkUncoveredPage(details) {
  await ready;
  if (state.network !== "off" || !state.settings.offNetworkFiltering || !state.token) return;
  if (details.url.startsWith(state.settings.backendUrl)) return;
  if (ruleFor(details.url, state.rules)) return; // Chrome's rules decide
  const host = hostOf(details.url);
  if (!host) return;
  let answer = checks.get(host);
  if (!answer) {
    const reply = await call(api.checkRequest(state.settings.backendUrl, state.token,
      details.url));
    if (!reply.ok || typeof reply.body?.blocked !== "boolean") return;
    answer = reply.body;
    checks.put(host, answer, answer.cache_seconds);
  }
  if (!answer.blocked) return;
  const id = nextSessionRuleId++;
  await chrome.declarativeNetRequest.updateSessionRules({
    removeRuleIds: [id], addRules: [checkedHostRule(id, host, answer.category, BLOCK_PAGE)] });
  showBlockPage(details.tabId, { url: details.url, via: "check", category: answer.category });
}
chrome.webRequest.onBeforeRequest.addListener((details) => {
  checkUncoveredPage(details);
}, { urls: ["http://*/*", "https://*/*"], types: ["main_frame"] });

// -- messages from the popup and the block page --------------------------------------------

async function explainBlock({ url = "", hitId = "", category = "", via }) {
  const out = { url, hitId, category, title: "", reason: "", when: new Date().toISOString(),
    offNetwork: via === "rules" || via === "check" };
  if (via === "rules" || via === "check") {
    const rule = url ? ruleFor(url, state.rules) : null;
    const host = url ? hostOf(url) : null;
    const checked = host ? checks.get(host) : null;
    const blocked = rule?.action === "block" ? rule
      : checked?.blocked ? { category: checked.category, title: checked.category_title,
        reason: checked.reason } : null;
    if (blocked) {
      out.category = blocked.category;
      out.title = blocked.title;
      out.reason = blocked.reason;
      if (!hitId && state.network !== "centre") {
        out.hitId = (await recordOffNetworkHit(url, blocked.category)).id;
      }
    }
    return out;
  }
  if (url && state.token) {
    const answer = await call(api.checkRequest(state.settings.backendUrl, state.token, url));
    if (answer.ok) {
      out.title = String(answer.body.category_title ?? "");
      out.reason = String(answer.body.reason ?? "");
      out.category = out.category || String(answer.body.category ?? "");
    }
  }
  return out;
}

async function signIn({ username, password }) {
  const answer = await call(api.loginRequest(state.settings.backendUrl, username, password));
  if (!answer.ok || typeof answer.body?.token !== "string") {
    return { ok: false, message: answer.status === 401
      ? "The user name or password is wrong." : answer.message };
  }
  const user = answer.body.user ?? {};
  state.token = answer.body.token;
  state.user = { name: String(user.name ?? username), role: String(user.role ?? ""),
    group: String(user.group ?? ""), display_name: String(user.display_name ?? "") };
  await chrome.storage.session.set({ token: state.token, user: state.user });
  state.rulesFetchedAt = 0;
  await tick();
  return { ok: true, user: state.user };
}

async function signOut() {
  if (state.token) await call(api.logoutRequest(state.settings.backendUrl, state.token));
  await forgetSignIn();
  return { ok: true };
}

function status() {
  return {
    ok: true, configured: Boolean(state.settings.backendUrl), settingsFrom: state.settings.source,
    user: state.user, network: state.network, proxy: state.proxy,
    offNetworkFiltering: state.settings.offNetworkFiltering, rulesVersion: state.rulesVersion,
    rules: Object.keys(state.rules).length, queued: hitQueue.queuedCount(state.queue),
    lastError: state.lastError,
  };
}

async function myRequests() {
  const answer = await call(api.myRequestsRequest(state.settings.backendUrl, state.token));
  if (!answer.ok) return { ok: false, message: answer.message };
  const items = Array.isArray(answer.body?.items) ? answer.body.items : [];
  return { ok: true, items: items.map((r) => ({ id: String(r.id), url: String(r.url ?? ""),
    status: String(r.status ?? ""), note: String(r.note ?? ""),
    created_at: Number(r.created_at) || 0 })) };
}

async function postAndConfirm(request) {
  const answer = await call(request);
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
    case "myRequests": return state.token ? myRequests() : { ok: false, message: "Sign in first." };
    case "explainBlock": return { ok: true, ...(await explainBlock(message)) };
    case "reportAccident":
      if (!state.token) return { ok: false, message: "Sign in first (click the esafety icon)." };
      return postAndConfirm(api.reportRequest(state.settings.backendUrl, state.token, message));
    case "askReview":
      if (!state.token) return { ok: false, message: "Sign in first (click the esafety icon)." };
      return postAndConfirm(api.reviewRequest(state.settings.backendUrl, state.token, message));
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
    loadSettings().then(() => tick());
  }
});

// For tests and troubleshooting from the service worker console: run a tick now.
globalThis.esafetyTick = tick;
globalThis.esafetyStatus = () => ready.then(status);
