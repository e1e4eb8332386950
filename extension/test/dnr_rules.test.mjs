import { test } from "node:test";
import assert from "node:assert/strict";
import { RuleError, checkHostRule, planUpdate, ruleFor, toChromeRules } from "../lib/dnr_rules.js";

const gambling = { id: 1100, action: "block", priority: 12, category: "gambling", title: "Gambling",
  reason: "No gambling.", match: "domains", domains: ["casino.example", "bet.example"] };
const approved = { id: 900000, action: "allow", priority: 2800, category: "override", title: "Approved",
  reason: "", match: "domains", domains: ["casino.example"] };

test("a blocked category's page loads and other requests are blocked before they leave", () => {
  const [page, rest] = toChromeRules(gambling);
  assert.equal(page.id, 2200);
  assert.equal(rest.id, 2201);
  assert.deepEqual(page.condition.requestDomains, ["casino.example", "bet.example"]);
  assert.deepEqual(page.condition.resourceTypes, ["main_frame"]);
  // no redirect to the block page: the worker opens it, so it need not be web-accessible
  assert.equal(page.action.type, "block");
  assert.equal(JSON.stringify(page).includes("block.html"), false);
  assert.equal(rest.action.type, "block");
  assert.ok(!rest.condition.resourceTypes.includes("main_frame"));
});

test("an approved site beats its category, as on the proxy", () => {
  const held = { 1100: gambling, 900000: approved };
  assert.equal(ruleFor("https://www.casino.example/spin", held).action, "allow");
  assert.equal(ruleFor("https://bet.example/", held).category, "gambling");
  assert.equal(ruleFor("https://notcasino.example/", held), null);
  assert.equal(ruleFor("javascript:alert(1)", held), null);
});

test("a full answer replaces everything and a delta touches only the changed rules", () => {
  const full = planUpdate({}, { version: "v1", full: true, rules: [gambling], remove: [] });
  assert.deepEqual(Object.keys(full.rules), ["1100"]);
  assert.equal(full.update.addRules.length, 2);
  const delta = planUpdate(full.rules, { version: "v2", full: false, rules: [approved], remove: [] });
  assert.deepEqual(delta.update.removeRuleIds, []);
  assert.deepEqual(delta.update.addRules.map((r) => r.id), [1800000, 1800001]);
  assert.deepEqual(Object.keys(delta.rules).sort(), ["1100", "900000"]);
  const removal = planUpdate(delta.rules, { version: "v3", full: false, rules: [], remove: [900000] });
  assert.deepEqual(removal.update.removeRuleIds, [1800000, 1800001]);
  const same = planUpdate(removal.rules, { version: "v3", unchanged: true });
  assert.equal(same.update, null);
});

test("malformed or oversized rule sets are refused without changing anything", () => {
  assert.throws(() => checkHostRule({ ...gambling, domains: ["bad domain"] }), RuleError);
  assert.throws(() => checkHostRule({ ...gambling, action: "redirect" }), RuleError);
  assert.throws(() => checkHostRule({ ...gambling, domains: [] }), RuleError);
  const many = Array.from({ length: 15001 }, (_, i) => ({ ...gambling, id: i + 1 }));
  assert.throws(() => planUpdate({}, { version: "v", full: true, rules: many, remove: [] }),
    /too many/);
  assert.throws(() => planUpdate({}, { rules: [] }), RuleError);
  const paths = Array.from({ length: 496 }, (_, i) => ({ ...gambling, id: i + 1, match: "url-prefix",
    domains: [], prefixes: ["casino.example/spin"] }));
  assert.throws(() => planUpdate({}, { version: "v", full: true, rules: paths, remove: [] }), /regex/);
  assert.throws(() => checkHostRule({ ...paths[0], prefixes: ["no-path.example"] }), RuleError);
});

test("IP-literal and catch-all rules cover what they say", () => {
  const ip = { id: 2, action: "block", priority: 5, category: "circumvention", title: "", reason: "",
    match: "ip-literal", domains: [] };
  assert.equal(ruleFor("http://10.0.0.1:8080/x", { 2: checkHostRule(ip) }).id, 2);
  assert.equal(ruleFor("http://example.com/", { 2: ip }), null);
  const [page] = toChromeRules(ip);
  assert.ok(new RegExp(page.condition.regexFilter).test("http://10.0.0.1:8080/x"));
  assert.ok(!new RegExp(page.condition.regexFilter).test("http://10.example.com/"));
});

test("the backend stays reachable above every other rule", async () => {
  const { backendAllowRule } = await import("../lib/dnr_rules.js");
  const rule = backendAllowRule("http://10.1.2.3:8090");
  assert.equal(rule.action.type, "allow");
  const re = new RegExp(rule.condition.regexFilter);
  // whatever address backendUrl names (an IP literal too), and the proxy probe
  assert.ok(re.test("http://10.1.2.3:8090/api/v1/auth/login"));
  assert.ok(re.test("http://esafety-proxy.invalid/status?nonce=00"));
  assert.ok(!re.test("http://10.1.2.3:80900/"));
  assert.ok(!re.test("http://10.1.2.34:8090/"));
  assert.ok(rule.priority > 5000);
  assert.ok(rule.condition.resourceTypes.includes("xmlhttprequest"));
});

test("listed URL prefixes are Chrome regex rules that match as the proxy matches", async () => {
  const { urlPrefixRegex } = await import("../lib/dnr_rules.js");
  const adult = checkHostRule({ id: 1050, action: "block", priority: 259, category: "pornography",
    title: "Adult", reason: "", match: "url-prefix", domains: [],
    prefixes: ["mixed-content.test/adult-section", "mixed-content.test/x/rated"] });
  const [page, rest] = toChromeRules(adult);
  assert.equal(page.condition.regexFilter, urlPrefixRegex(adult.prefixes));
  assert.equal(rest.action.type, "block");
  const re = new RegExp(page.condition.regexFilter, "i");
  for (const hit of ["http://mixed-content.test/adult-section", "https://www.mixed-content.test/adult-section/a?b",
    "http://mixed-content.test:18001/x/rated?q=1", "http://mixed-content.test./adult-section"]) {
    assert.ok(re.test(hit), hit);
    assert.equal(ruleFor(hit, { 1050: adult }).id, 1050, hit);
  }
  for (const miss of ["http://mixed-content.test/", "http://mixed-content.test/adult-sectionx",
    "http://evilmixed-content.test/adult-section", "http://mixed-content.test.evil/adult-section",
    "http://mixed-content.test/y/x/rated"]) {
    assert.ok(!re.test(miss), miss);
    assert.equal(ruleFor(miss, { 1050: adult }), null, miss);
  }
});

test("the shipped rules are exactly what toChromeRules makes of the shipped host rules", async () => {
  const { readFile } = await import("node:fs/promises");
  const host = JSON.parse(await readFile(new URL("../rules/shipped_host_rules.json", import.meta.url)));
  const chrome = JSON.parse(await readFile(new URL("../rules/shipped_rules.json", import.meta.url)));
  const made = host.map(checkHostRule).flatMap((r) => toChromeRules(r));
  assert.deepEqual(chrome, JSON.parse(JSON.stringify(made)));
  assert.ok(host.some((r) => r.category === "self_harm" && r.action === "block"));
});

test("a domain lookup through the stored buckets picks what the full rules would", async () => {
  const { changedBuckets, described, indexedRuleFor, bucketKey } = await import("../lib/rule_index.js");
  const rules = [gambling, approved, checkHostRule({ id: 2, action: "block", priority: 5,
    category: "circumvention", title: "", reason: "", match: "ip-literal", domains: [] })];
  let buckets = changedBuckets({}, [], rules);
  const held = Object.fromEntries(rules.map((r) => [r.id, described(r)]));
  assert.deepEqual(held[1100].domains, []);
  const idsFor = async (d) => buckets[bucketKey(d)]?.[d] ?? [];
  for (const url of ["https://www.casino.example/spin", "https://bet.example/", "http://10.0.0.1/",
    "https://notcasino.example/"]) {
    const full = ruleFor(url, Object.fromEntries(rules.map((r) => [r.id, r])));
    const found = await indexedRuleFor(url, held, new URL(url).hostname, idsFor);
    assert.equal(found?.id ?? null, full?.id ?? null, url);
  }
  // the approval is withdrawn: only its entries go
  buckets = { ...buckets, ...changedBuckets(buckets, [900000], []) };
  delete held[900000];
  assert.equal((await indexedRuleFor("https://casino.example/", held, "casino.example", idsFor)).id, 1100);
});
