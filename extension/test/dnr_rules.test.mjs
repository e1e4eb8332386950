import { test } from "node:test";
import assert from "node:assert/strict";
import { RuleError, checkHostRule, planUpdate, ruleFor, toChromeRules } from "../lib/dnr_rules.js";

const PAGE = "chrome-extension://abc/block.html";
const gambling = { id: 1100, action: "block", priority: 12, category: "gambling", title: "Gambling",
  reason: "No gambling.", match: "domains", domains: ["casino.example", "bet.example"] };
const approved = { id: 900000, action: "allow", priority: 2800, category: "override", title: "Approved",
  reason: "", match: "domains", domains: ["casino.example"] };

test("a blocked category's page loads go to the block page and its other requests are blocked", () => {
  const [page, rest] = toChromeRules(gambling, PAGE);
  assert.equal(page.id, 2200);
  assert.equal(rest.id, 2201);
  assert.deepEqual(page.condition.requestDomains, ["casino.example", "bet.example"]);
  assert.deepEqual(page.condition.resourceTypes, ["main_frame"]);
  assert.equal(page.action.type, "redirect");
  assert.equal(page.action.redirect.regexSubstitution, `${PAGE}?via=rules&category=gambling#\\0`);
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
  const full = planUpdate({}, { version: "v1", full: true, rules: [gambling], remove: [] }, PAGE);
  assert.deepEqual(Object.keys(full.rules), ["1100"]);
  assert.equal(full.update.addRules.length, 2);
  const delta = planUpdate(full.rules, { version: "v2", full: false, rules: [approved], remove: [] }, PAGE);
  assert.deepEqual(delta.update.removeRuleIds, []);
  assert.deepEqual(delta.update.addRules.map((r) => r.id), [1800000, 1800001]);
  assert.deepEqual(Object.keys(delta.rules).sort(), ["1100", "900000"]);
  const removal = planUpdate(delta.rules, { version: "v3", full: false, rules: [], remove: [900000] }, PAGE);
  assert.deepEqual(removal.update.removeRuleIds, [1800000, 1800001]);
  const same = planUpdate(removal.rules, { version: "v3", unchanged: true }, PAGE);
  assert.equal(same.update, null);
});

test("malformed or oversized rule sets are refused without changing anything", () => {
  assert.throws(() => checkHostRule({ ...gambling, domains: ["bad domain"] }), RuleError);
  assert.throws(() => checkHostRule({ ...gambling, action: "redirect" }), RuleError);
  assert.throws(() => checkHostRule({ ...gambling, domains: [] }), RuleError);
  const many = Array.from({ length: 5001 }, (_, i) => ({ ...gambling, id: i + 1 }));
  assert.throws(() => planUpdate({}, { version: "v", full: true, rules: many, remove: [] }, PAGE),
    /too many/);
  assert.throws(() => planUpdate({}, { rules: [] }, PAGE), RuleError);
});

test("IP-literal and catch-all rules cover what they say", () => {
  const ip = { id: 2, action: "block", priority: 5, category: "circumvention", title: "", reason: "",
    match: "ip-literal", domains: [] };
  assert.equal(ruleFor("http://10.0.0.1:8080/x", { 2: checkHostRule(ip) }).id, 2);
  assert.equal(ruleFor("http://example.com/", { 2: ip }), null);
  const [page] = toChromeRules(ip, PAGE);
  assert.ok(new RegExp(page.condition.regexFilter).test("http://10.0.0.1:8080/x"));
  assert.ok(!new RegExp(page.condition.regexFilter).test("http://10.example.com/"));
});

test("the backend stays reachable above every other rule", async () => {
  const { backendAllowRule } = await import("../lib/dnr_rules.js");
  const rule = backendAllowRule("http://127.0.0.1:8090");
  assert.equal(rule.action.type, "allow");
  assert.equal(rule.condition.urlFilter, "|http://127.0.0.1:8090/");
  assert.ok(rule.priority > 5000);
  assert.ok(rule.condition.resourceTypes.includes("xmlhttprequest"));
});
