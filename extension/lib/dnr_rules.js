// Off-network rules: the backend's compact host rules, checked, turned into Chrome
// declarativeNetRequest rules, and matched against a URL (the same precedence Chrome uses).
//
// Each host rule becomes two Chrome rules with ids 2n and 2n+1:
//   2n    page loads (main_frame): block ("allow" for allow rules); the service worker sees
//         the blocked navigation (net::ERR_BLOCKED_BY_CLIENT) and opens the block page;
//   2n+1  everything else (frames, scripts, images, XHR...): block ("allow" for allow rules).
// Nothing redirects to the block page, so it need not be (and is not) web-accessible.

export const MAX_DYNAMIC_RULES = 30000;
export const MAX_REGEX_RULES = 990; // Chrome allows 1,000; the backend rule uses one
export const MAX_DOMAINS_PER_RULE = 50000;
const SUBRESOURCES = ["sub_frame", "stylesheet", "script", "image", "font", "object",
  "xmlhttprequest", "ping", "media", "websocket", "webtransport", "other"];
const DOMAIN = /^(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*$/;
const MATCHES = ["domains", "ip-literal", "everything", "url-prefix"];
export const MAX_PREFIXES_PER_RULE = 8; // the backend sends 4
const PREFIX = /^(?=.{3,200}$)[a-z0-9_]([a-z0-9_.-]*)\/[^\s]*$/;
const IP_LITERAL_REGEX = "^[a-z][a-z0-9+.-]*://(\\[[0-9a-fA-F:.]+\\]|[0-9]+(\\.[0-9]+){3})(:[0-9]+)?(/|$)";

export class RuleError extends Error {}

/** Check one host rule from the backend; returns a clean copy or throws RuleError. */
export function checkHostRule(rule) {
  if (!rule || typeof rule !== "object") throw new RuleError("rule is not an object");
  const { id, action, priority, category, title, reason, match, domains } = rule;
  if (!Number.isInteger(id) || id < 1 || id > 1e6) throw new RuleError("bad rule id");
  if (!["block", "allow", "check"].includes(action)) throw new RuleError(`rule ${id}: bad action`);
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
  let prefixes = [];
  if (match === "url-prefix") {
    const given = rule.prefixes;
    if (!Array.isArray(given) || given.length === 0 || given.length > MAX_PREFIXES_PER_RULE) {
      throw new RuleError(`rule ${id}: bad prefixes`);
    }
    for (const prefix of given) {
      if (typeof prefix !== "string" || !PREFIX.test(prefix)) {
        throw new RuleError(`rule ${id}: bad prefix ${String(prefix).slice(0, 80)}`);
      }
    }
    prefixes = [...given];
  }
  return {
    id, action, priority, category, match, domains: [...domains], prefixes,
    title: typeof title === "string" ? title.slice(0, 100) : "",
    reason: typeof reason === "string" ? reason.slice(0, 500) : "",
  };
}

/** The two Chrome rules for a host rule. */
export function toChromeRules(rule) {
  const condition = {};
  if (rule.match === "domains") condition.requestDomains = rule.domains;
  if (rule.match === "ip-literal") condition.regexFilter = IP_LITERAL_REGEX;
  if (rule.match === "url-prefix") {
    condition.regexFilter = urlPrefixRegex(rule.prefixes);
    condition.isUrlFilterCaseSensitive = true; // paths are; Chrome lowercases hosts
  }
  const page = { ...condition, resourceTypes: ["main_frame"] };
  const rest = { ...condition, resourceTypes: SUBRESOURCES };
  if (rule.action === "allow") {
    return [
      { id: rule.id * 2, priority: rule.priority, action: { type: "allow" }, condition: page },
      { id: rule.id * 2 + 1, priority: rule.priority, action: { type: "allow" }, condition: rest },
    ];
  }
  const pageRule = { id: rule.id * 2, priority: rule.priority, action: { type: "block" }, condition: page };
  // "check": page loads wait for the worker to ask the backend about the full address
  if (rule.action === "check") return [pageRule];
  return [pageRule,
    { id: rule.id * 2 + 1, priority: rule.priority, action: { type: "block" }, condition: rest }];
}

/**
 * Apply the backend's answer to the host rules held now. Returns {rules, update} where
 * `rules` is the new {id: hostRule} map and `update` the argument for
 * chrome.declarativeNetRequest.updateDynamicRules. Throws RuleError (changing nothing) when
 * anything in the answer is malformed or the result would pass Chrome's limits.
 */
export function planUpdate(held, answer) {
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
  if (all.filter((r) => r.match === "url-prefix" || r.match === "ip-literal").length * 2
      > MAX_REGEX_RULES) {
    throw new RuleError("too many regex rules for Chrome");
  }
  const replaced = answer.full ? Object.keys(held).map(Number)
    : [...new Set([...answer.remove, ...incoming.map((r) => r.id)])].filter((id) => id in held);
  const removeRuleIds = replaced.flatMap((id) => [id * 2, id * 2 + 1]);
  const addRules = incoming.flatMap((r) => toChromeRules(r));
  return { rules: next, update: { removeRuleIds, addRules }, version: answer.version };
}

/**
 * A url-prefix rule Chrome cannot compile (over RE2's memory limit) as a "check" rule on
 * its hosts: their page loads then wait for the backend, rather than the whole update
 * failing and leaving the learner without their rules.
 */
export function asCheckRule(rule) {
  const hosts = [...new Set(rule.prefixes.map((p) => p.slice(0, p.indexOf("/"))))];
  return { ...rule, action: "check", match: "domains", domains: hosts, prefixes: [] };
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

function covers(rule, host, url) {
  if (rule.match === "everything") return true;
  if (rule.match === "ip-literal") return /^(\[.*\]|[0-9]+(\.[0-9]+){3})$/.test(host);
  if (rule.match === "url-prefix") return new RegExp(urlPrefixRegex(rule.prefixes)).test(url);
  return rule.domains.some((d) => host === d || host.endsWith(`.${d}`));
}

const REGEX_SPECIAL = new Set(".*+?^${}()|[]\\/");
const regexEscape = (text) => [...text].map((c) => (REGEX_SPECIAL.has(c) ? `\\${c}` : c)).join("");

/**
 * One RE2 pattern for `host/path` prefixes: the host or a subdomain, any port, then the
 * path, ending at a boundary, as the proxy matches URL entries (the backend's
 * admin_api/extension_rules.py url_prefix_regex builds the same text).
 */
export function urlPrefixRegex(prefixes) {
  const parts = prefixes.map((prefix) => {
    const slash = prefix.indexOf("/");
    return `${regexEscape(prefix.slice(0, slash))}\\.?(:[0-9]+)?/${regexEscape(prefix.slice(slash + 1))}`;
  });
  return `^https?://([^/?#@]*\\.)?(${parts.join("|")})([/?&;#]|$)`;
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
    if (!covers(rule, host, url)) continue;
    if (best === null || rule.priority > best.priority
        || (rule.priority === best.priority && rule.action === "allow" && best.action !== "allow")) {
      best = rule;
    }
  }
  return best;
}

/** A session rule that blocks one host the backend check said is blocked. */
export function checkedHostRule(id, host) {
  return {
    id, priority: 3, action: { type: "block" },
    condition: { requestDomains: [host], resourceTypes: ["main_frame", ...SUBRESOURCES] },
  };
}

export { hostOf };

export const BACKEND_RULE_ID = 1;
export const PROBE_HOST = "esafety-proxy.invalid";

/**
 * The highest-priority rule: the centre's backend (at whatever address backendUrl names,
 * an IP literal too) and the proxy probe stay reachable, whatever else blocks. It is
 * installed at start-up and whenever the settings change, before anything is fetched.
 */
export function backendAllowRule(backendUrl) {
  return {
    id: BACKEND_RULE_ID, priority: 1e6, action: { type: "allow" },
    condition: {
      regexFilter: `^(${escapeRegex(backendUrl)}/|http://${escapeRegex(PROBE_HOST)}/)`,
      resourceTypes: ["main_frame", ...SUBRESOURCES],
    },
  };
}

function escapeRegex(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** The session rule id that stands the filter down while the centre network is proven. */
export const ON_NETWORK_RULE_ID = 1;
export const FIRST_CHECKED_RULE_ID = 100;

/**
 * While (and only while) the signed probe proves the centre network, the proxy filters;
 * this session rule lets everything through to it. Session rules end with the browser, so
 * a restart filters again until the probe is proven afresh.
 */
export function onNetworkAllowRule() {
  return {
    id: ON_NETWORK_RULE_ID, priority: 999_999, action: { type: "allow" },
    condition: { resourceTypes: ["main_frame", ...SUBRESOURCES] },
  };
}

/**
 * A session rule letting one page load through a "check" rule, once the backend said the
 * address is not blocked. null when the address cannot be written as a urlFilter.
 */
export function checkedUrlAllowRule(id, url) {
  if (/[*^|\s]/.test(url)) return null;
  return {
    id, priority: 999_990, action: { type: "allow" },
    condition: { urlFilter: `|${url}|`, resourceTypes: ["main_frame"] },
  };
}

/** Chrome ids of the "ask to sign in" catch-all (offnetwork_unsigned: block_all). */
export const SIGN_IN_RULE_ID = 999_998;

/** block_all: every page load nothing else allows asks the learner to sign in first. */
export function signInFirstRules() {
  return [{
    id: SIGN_IN_RULE_ID, priority: 1, action: { type: "block" },
    condition: { resourceTypes: ["main_frame"] },
  }];
}
