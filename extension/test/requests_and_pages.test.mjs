import { test } from "node:test";
import assert from "node:assert/strict";
import * as api from "../lib/api_requests.js";
import { blockFromHeaders, isHitId, newHitId } from "../lib/block_reference.js";
import { blockPageUrl, readBlockPageUrl } from "../lib/block_page_address.js";
import { resolveSettings } from "../lib/settings.js";
import { CheckCache } from "../lib/check_cache.js";

const BASE = "https://esafety.example";

test("requests carry the bearer token, JSON bodies and never cookies", () => {
  const { url, init } = api.fileUnblockRequest(BASE, "tok", { url: "https://x.example/", reason: "course", hitId: "20261122-7KQ2X9AB" });
  assert.equal(url, `${BASE}/api/v1/unblock-requests`);
  assert.equal(init.method, "POST");
  assert.equal(init.credentials, "omit");
  assert.equal(init.headers.Authorization, "Bearer tok");
  assert.deepEqual(JSON.parse(init.body), { url: "https://x.example/", reason: "course", hit_id: "20261122-7KQ2X9AB" });
  assert.equal(api.checkRequest(BASE, "t", "https://a.example/?q=1&x", { recent: true }).url,
    `${BASE}/api/v1/extension/check?url=https%3A%2F%2Fa.example%2F%3Fq%3D1%26x&recent=true`);
  assert.equal(api.rulesRequest(BASE, "t", "abc").url, `${BASE}/api/v1/extension/rules?since=abc`);
  const login = api.loginRequest(BASE, "l1", "pw");
  assert.equal(login.init.headers.Authorization, undefined);
  const hits = JSON.parse(api.hitsRequest(BASE, "t", "dev1", { batchId: "b1", hits: [{ id: "i", ts: 1, url: "u", category: "c", navToken: "n", extra: 1 }] }).init.body);
  assert.deepEqual(hits, { batch_id: "b1", device_id: "dev1", hits: [{ id: "i", ts: 1, url: "u", category: "c", nav_token: "n" }] });
  const session = api.sessionRequest(BASE, "dev1", "refresh", { ts: 5, sig: "ab" });
  assert.equal(session.init.headers.Authorization, undefined);
  assert.deepEqual(JSON.parse(session.init.body), { device_id: "dev1", refresh_token: "refresh", ts: 5, sig: "ab" });
  assert.equal(api.unsignedRulesRequest(BASE, null).init.headers.Authorization, undefined);
  assert.equal(api.forgetDeviceRequest(BASE, "t", "dev1").init.headers["X-Esafety-Device"], "dev1");
  assert.equal(api.errorMessage(400, { error: { message: "bad" } }), "bad");
});

test("queued accident reports go to the accident-reports resource", () => {
  const { url, init } = api.fileAccidentReport(BASE, "tok", { hitId: "20261122-7KQ2X9AB", url: "https://x.example/", whatHappened: "a typo" });
  assert.equal(url, `${BASE}/api/v1/accident-reports`);
  assert.equal(init.method, "POST");
  assert.deepEqual(JSON.parse(init.body), { what_happened: "a typo", hit_id: "20261122-7KQ2X9AB", url: "https://x.example/" });
});

test("the proxy's block headers are recognised, and nothing else is", () => {
  const headers = [{ name: "X-Esafety-Hit-Id", value: "20261122-7KQ2X9AB" }, { name: "x-esafety-category", value: "social%5Fnetworks" }];
  assert.deepEqual(blockFromHeaders(403, headers), { hitId: "20261122-7KQ2X9AB", category: "social_networks" });
  assert.equal(blockFromHeaders(200, headers), null);
  assert.equal(blockFromHeaders(403, [{ name: "X-Esafety-Hit-Id", value: "<script>" }]), null);
  assert.equal(blockFromHeaders(403, [headers[0], { name: "X-Esafety-Category", value: "%3Cb%3E" }]).category, "");
});

test("new hit ids look like the proxy's and carry the local day", () => {
  const id = newHitId(new Date(2026, 10, 22, 9, 0), (n) => new Uint8Array(n).fill(7));
  assert.equal(id, "20261122-77777777");
  assert.ok(isHitId(newHitId(new Date(), (n) => crypto.getRandomValues(new Uint8Array(n)))));
});

test("the block page address carries only a ticket, and tickets are one per block", async () => {
  const { addTicket, ticketEntry, MAX_TICKETS, TICKET_TTL_MS } = await import("../lib/block_tickets.js");
  const ticket = "0123456789abcdef0123456789abcdef";
  const href = blockPageUrl("chrome-extension://id/block.html", ticket);
  assert.equal(readBlockPageUrl(href), ticket);
  // the old address form (anyone could write it) names nothing
  assert.equal(readBlockPageUrl("chrome-extension://id/block.html?via=rules#https://x.example/"), "");
  let tickets = addTicket({}, ticket, { url: "https://x.example/" }, 1000);
  assert.equal(ticketEntry(tickets, ticket, 2000).url, "https://x.example/");
  assert.equal(ticketEntry(tickets, "f".repeat(32), 2000), null);
  assert.equal(ticketEntry(tickets, ticket, 1000 + TICKET_TTL_MS), null);
  for (let i = 0; i < MAX_TICKETS + 5; i += 1) tickets = addTicket(tickets, i.toString(16).padStart(32, "0"), {}, 2000 + i);
  assert.equal(Object.keys(tickets).length, MAX_TICKETS);
});

test("the probe answer counts only when signed for this nonce, recently", async () => {
  const { probeIsGenuine, navigationToken } = await import("../lib/signatures.js");
  const hex = (b) => [...new Uint8Array(b)].map((x) => x.toString(16).padStart(2, "0")).join("");
  const pair = await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"]);
  const other = await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"]);
  const key = hex(await crypto.subtle.exportKey("raw", pair.publicKey));
  const otherKey = hex(await crypto.subtle.exportKey("raw", other.publicKey));
  const nonce = "ab".repeat(16);
  const ts = 1764600000;
  const sign = async (k, n, centre) => hex(await crypto.subtle.sign({ name: "Ed25519" }, k,
    new TextEncoder().encode(`esafety-probe-v1\n${n}\n${centre}\n${ts}`)));
  const answer = { proxy: "esafety", centre: "main", nonce, ts, sig: await sign(pair.privateKey, nonce, "main") };
  const now = ts * 1000;
  assert.equal(await probeIsGenuine(key, nonce, answer, { now }), true);
  assert.equal(await probeIsGenuine(key, nonce, answer, { now, centreId: "main" }), true);
  assert.equal(await probeIsGenuine(key, nonce, answer, { now, centreId: "north" }), false);
  assert.equal(await probeIsGenuine(key, "cd".repeat(16), answer, { now }), false); // replayed
  assert.equal(await probeIsGenuine(key, nonce, answer, { now: now + 600000 }), false); // stale
  assert.equal(await probeIsGenuine(otherKey, nonce, answer, { now }), false); // another key
  assert.equal(await probeIsGenuine(key, nonce, { ...answer, centre: "x" }, { now }), false);
  assert.equal(await probeIsGenuine("", nonce, { proxy: "esafety" }, { now }), false); // no key
  assert.equal(await probeIsGenuine(key, nonce, { ...answer, proxy: "other" }, { now }), false);
  assert.equal(await probeIsGenuine(key, nonce, { ...answer, sig: "00".repeat(64) }, { now }), false);
  assert.match(await navigationToken("11".repeat(32), "20261122-7KQ2X9AB", 1.5, "https://x.example/"), /^[0-9a-f]{64}$/);
});

test("managed settings win over the local fallback, and bad values are ignored", () => {
  const local = { backendUrl: "http://127.0.0.1:8090/", offNetworkFiltering: false };
  assert.equal(resolveSettings(null, local).backendUrl, "http://127.0.0.1:8090");
  assert.equal(resolveSettings(null, local).source, "local");
  const managed = resolveSettings({ backendUrl: "https://esafety.example", centreId: "north", offNetworkFiltering: true }, local);
  assert.deepEqual([managed.backendUrl, managed.centreId, managed.offNetworkFiltering, managed.source],
    ["https://esafety.example", "north", true, "managed"]);
  assert.equal(resolveSettings({ backendUrl: "javascript:alert(1)" }, null).backendUrl, "");
  assert.equal(resolveSettings({ backendUrl: "https://u:p@x.example" }, null).backendUrl, "");
});

test("check answers are remembered briefly", () => {
  let now = 0;
  const cache = new CheckCache(() => now);
  cache.put("a.example", { blocked: true }, 60);
  assert.deepEqual(cache.get("a.example"), { blocked: true });
  now = 61000;
  assert.equal(cache.get("a.example"), null);
});
