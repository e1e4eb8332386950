import { test } from "node:test";
import assert from "node:assert/strict";
import * as api from "../lib/api_requests.js";
import { blockFromHeaders, isHitId, newHitId } from "../lib/block_reference.js";
import { blockPageUrl, readBlockPageUrl } from "../lib/block_page_address.js";
import { resolveSettings } from "../lib/settings.js";
import { CheckCache } from "../lib/check_cache.js";

const BASE = "https://esafety.example";

test("requests carry the bearer token, JSON bodies and never cookies", () => {
  const { url, init } = api.reviewRequest(BASE, "tok", { url: "https://x.example/", reason: "course", hitId: "20261122-7KQ2X9AB" });
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
  const hits = JSON.parse(api.hitsRequest(BASE, "t", { batchId: "b1", hits: [{ id: "i", ts: 1, url: "u", category: "c", extra: 1 }] }).init.body);
  assert.deepEqual(hits, { batch_id: "b1", hits: [{ id: "i", ts: 1, url: "u", category: "c" }] });
  assert.equal(api.errorMessage(400, { error: { message: "bad" } }), "bad");
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

test("the block page address round-trips and drops anything malformed", () => {
  const href = blockPageUrl("chrome-extension://id/block.html", { url: "https://x.example/a?b=1#c", via: "proxy", hitId: "20261122-7KQ2X9AB", category: "gambling" });
  assert.deepEqual(readBlockPageUrl(href), { via: "proxy", hitId: "20261122-7KQ2X9AB", category: "gambling", url: "https://x.example/a?b=1#c" });
  assert.deepEqual(readBlockPageUrl("chrome-extension://id/block.html?via=evil&hit=x&category=%3Cb%3E#javascript:alert(1)"),
    { via: "", hitId: "", category: "", url: "" });
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
