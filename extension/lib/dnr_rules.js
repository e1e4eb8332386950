// Off-network rules: the backend's compact host rules, checked, turned into Chrome
// declarativeNetRequest rules, and matched against a URL (the same precedence Chrome uses).
//
// Each host rule becomes two Chrome rules with ids 2n and 2n+1:
//   2n    page loads (main_frame): a redirect to the block page ("allow" for allow rules);
//   2n+1  everything else (frames, scripts, images, XHR...): block ("allow" for allow rules).

export const MAX_DYNAMIC_RULES = 30000;
export const MAX_UNSAFE_RULES = 5000;
export const MAX_DOMAINS_PER_RULE = 50000;
const SUBRESOURCES = ["sub_frame", "stylesheet", "script", "image", "font", "object",
  "xmlhttprequest", "ping", "media", "websocket", "webtransport", "other"];
const DOMAIN = /^(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*$/;
const MATCHES = ["domains", "ip-literal", "everything"];
const IP_LITERAL_REGEX = "^[a-z][a-z0-9+.-]*://(\\[[0-9a-fA-F:.]+\\]|[0-9]+(\\.[0-9]+){3})(:[0-9]+)?(/|$)";

export class RuleError extends Error {}

/** Check one host rule from the backend; returns a clean copy or throws RuleError. */
export function checkHostRule(rule) {
  if (!rule || typeof rule !== "object") throw new RuleError("rule is not an object");
  const { id, action, priority, category, title, reason, match, domains } = rule;
  if (!Number.isInteger(id) || id < 1 || id > 1e6) throw new RuleError("bad rule id");
  if (action !== "block" && action !== "allow") throw new RuleError(`rule ${id}: bad action`);
  if (!Number.isInteger(priority) || priority < 1 || priority > 1e6) {
    throw new RuleError(`rule ${id}: bad priority`);
  }
  if (!MATCHES.includes(match)) throw new RuleError(`rule ${id}: bad match`);
  if (typeof category !== "string" || !/^[a-z0-9_-]{0,41}$/.test(category)) {
    throw new RuleError(`rule ${id}: bad category`);
  }
  if (!Array.isArray(domains) || domains.length > MAX_DOMAINS_PER_RULE) {
    throw new RuleError(`rule ${id}: bad domains`);
  }
  if (match === "domains" && domains.length === 0) throw new RuleError(`rule ${id}: no domains`);
  for (const domain of domains) {
    if (typeof domain !== "string" || !DOMAIN.test(domain)) {
      throw new RuleError(`rule ${id}: bad domain ${String(domain).slice(0, 80)}`);
    }
  }
  return {
    id, action, priority, category, match, domains: [...domains],
    title: typeof title === "string" ? title.slice(0, 100) : "",
    reason: typeof reason === "string" ? reason.slice(0, 500) : "",
  };
}

/** The two Chrome rules for a host rule; `blockPage` is the block page's extension path. */
export function toChromeRules(rule, blockPage) {
  const condition = {};
  if (rule.match === "domains") condition.requestDomains = rule.domains;
  if (rule.match === "ip-literal") condition.regexFilter = IP_LITERAL_REGEX;
  const page = { ...condition, resourceTypes: ["main_frame"] };
  const rest = { ...condition, resourceTypes: SUBRESOURCES };
  if (rule.action === "allow") {
    return [
      { id: rule.id * 2, priority: rule.priority, action: { type: "allow" }, condition: page },
      { id: rule.id * 2 + 1, priority: rule.priority, action: { type: "allow" }, condition: rest },
    ];
  }
  const params = new URLSearchParams({ via: "rules" });
  if (rule.category) params.set("category", rule.category);
  const redirect = {
    id: rule.id * 2, priority: rule.priority,
    action: { type: "redirect", redirect: { regexSubstitution: `${blockPage}?${params}#\\0` } },
    condition: { ...page, regexFilter: page.regexFilter ?? "^.+$" },
  };
  return [redirect,
    { id: rule.id * 2 + 1, priority: rule.priority, action: { type: "block" }, condition: rest }];
}

/**
 * Apply the backend's answer to the host rules held now. Returns {rules, update} where
 * `rules` is the new {id: hostRule} map and `update` the argument for
 * chrome.declarativeNetRequest.updateDynamicRules. Throws RuleError (changing nothing) when
 * anything in the answer is malformed or the result would pass Chrome's limits.
 */
export function planUpdate(held, answer, blockPage) {
  if (!answer || typeof answer !== "object" || typeof answer.version !== "string") {
    throw new RuleError("answer has no version");
  }
  if (answer.unchanged === true) return { rules: held, update: null, version: answer.version };
  if (!Array.isArray(answer.rules) || !Array.isArray(answer.remove)) {
    throw new RuleError("answer has no rules");
  }
  const next = answer.full ? {} : { ...held };
  for (const id of answer.remove) {
    if (!Number.isInteger(id)) throw new RuleError("bad id to remove");
    delete next[id];
  }
  const incoming = answer.rules.map(checkHostRule);
  for (const rule of incoming) next[rule.id] = rule;
  const all = Object.values(next);
  if (all.length * 2 > MAX_DYNAMIC_RULES) throw new RuleError("too many rules for Chrome");
  if (all.filter((r) => r.action === "block").length > MAX_UNSAFE_RULES) {
    throw new RuleError("too many redirect rules for Chrome");
  }
  const replaced = answer.full ? Object.keys(held).map(Number)
    : [...new Set([...answer.remove, ...incoming.map((r) => r.id)])].filter((id) => id in held);
  const removeRuleIds = replaced.flatMap((id) => [id * 2, id * 2 + 1]);
  const addRules = incoming.flatMap((r) => toChromeRules(r, blockPage));
  return { rules: next, update: { removeRuleIds, addRules }, version: answer.version };
}

/** Every Chrome rule id for the held host rules (to remove them all when back on site). */
export function allChromeRuleIds(held) {
  return Object.keys(held).flatMap((id) => [Number(id) * 2, Number(id) * 2 + 1]);
}

function hostOf(url) {
  try {
    const parsed = new URL(url);
    if (parsed.protocol !== "http:" && parsed.protocol !== "https:") return null;
    return parsed.hostname.toLowerCase().replace(/\.$/, "");
  } catch {
    return null;
  }
}

function covers(rule, host) {
  if (rule.match === "everything") return true;
  if (rule.match === "ip-literal") return /^(\[.*\]|[0-9]+(\.[0-9]+){3})$/.test(host);
  return rule.domains.some((d) => host === d || host.endsWith(`.${d}`));
}

/**
 * The host rule that decides a page load of `url`, as Chrome would pick it: the highest
 * priority, and "allow" over "block" at equal priority. null when no rule covers the URL.
 */
export function ruleFor(url, held) {
  const host = hostOf(url);
  if (host === null) return null;
  let best = null;
  for (const rule of Object.values(held)) {
    if (!covers(rule, host)) continue;
    if (best === null || rule.priority > best.priority
        || (rule.priority === best.priority && rule.action === "allow" && best.action !== "allow")) {
      best = rule;
    }
  }
  return best;
}

/** A session rule that blocks one host the backend check said is blocked. */
export function checkedHostRule(id, host, category, blockPage) {
  const params = new URLSearchParams({ via: "check" });
  if (category) params.set("category", category);
  return {
    id, priority: 3,
    action: { type: "redirect", redirect: { regexSubstitution: `${blockPage}?${params}#\\0` } },
    condition: { requestDomains: [host], regexFilter: "^.+$", resourceTypes: ["main_frame"] },
  };
}

export { hostOf };

export const BACKEND_RULE_ID = 1;

/** The highest-priority rule: the centre's backend is always reachable, whatever blocks. */
export function backendAllowRule(backendUrl) {
  return {
    id: BACKEND_RULE_ID, priority: 1e6, action: { type: "allow" },
    condition: { urlFilter: `|${backendUrl}/`, resourceTypes: ["main_frame", ...SUBRESOURCES] },
  };
}
