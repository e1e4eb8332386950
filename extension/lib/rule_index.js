// The off-network rules' domains, kept out of the service worker's memory. Chrome holds the
// rules themselves; the worker needs a rule's category only to explain a block. So the
// domains are stored once, in chrome.storage.local, split into BUCKETS small buckets by a
// hash of the domain, and a lookup reads just the buckets of the host and its parents. The
// worker keeps only each rule's small description (no domains) in memory.

import { ruleFor } from "./dnr_rules.js";

export const BUCKETS = 64;
export const BUCKET_PREFIX = "ruleDomains:";

/** FNV-1a, 32 bits: a stable spread of domains over the buckets. */
function hash(text) {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i += 1) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

export function bucketKey(domain) {
  return `${BUCKET_PREFIX}${hash(domain) % BUCKETS}`;
}

export const ALL_BUCKET_KEYS = Object.freeze(
  Array.from({ length: BUCKETS }, (_, n) => `${BUCKET_PREFIX}${n}`));

/** The host and each parent domain: a.b.example -> a.b.example, b.example, example. */
export function candidateDomains(host) {
  const out = [];
  let rest = host;
  while (rest) {
    out.push(rest);
    const dot = rest.indexOf(".");
    rest = dot === -1 ? "" : rest.slice(dot + 1);
  }
  return out;
}

/** A rule's description without its domains (what the worker keeps in memory). */
export function described(rule) {
  return { ...rule, domains: [], domainCount: rule.domains?.length ?? rule.domainCount ?? 0 };
}

/**
 * The buckets after a change: `buckets` ({key: {domain: [ids]}}, every key loaded; empty
 * for a whole new set), with the rules `dropIds` taken out and `added` rules put in.
 * Returns only the buckets that changed.
 */
export function changedBuckets(buckets, dropIds, added) {
  const drop = new Set(dropIds.map(Number));
  const out = {};
  const touch = (key) => {
    if (!out[key]) out[key] = { ...(buckets[key] ?? {}) };
    return out[key];
  };
  if (drop.size) {
    for (const [key, bucket] of Object.entries(buckets)) {
      for (const [domain, ids] of Object.entries(bucket ?? {})) {
        if (!ids.some((id) => drop.has(id))) continue;
        const kept = ids.filter((id) => !drop.has(id));
        const into = touch(key);
        if (kept.length) into[domain] = kept;
        else delete into[domain];
      }
    }
  }
  for (const rule of added) {
    for (const domain of rule.domains ?? []) {
      const into = touch(bucketKey(domain));
      into[domain] = [...new Set([...(into[domain] ?? []), rule.id])];
    }
  }
  return out;
}

/**
 * The rule that decides `url`, as ruleFor would pick it from the full rules: `held` holds
 * the descriptions, `idsFor(domain)` (async) the ids of the domain rules listing `domain`.
 */
export async function indexedRuleFor(url, held, host, idsFor) {
  if (!host) return null;
  const candidates = {};
  for (const [id, rule] of Object.entries(held)) {
    if (rule.match !== "domains") candidates[id] = rule;
  }
  for (const domain of candidateDomains(host)) {
    for (const id of await idsFor(domain)) {
      const rule = held[id];
      if (rule) candidates[`${id}:${domain}`] = { ...rule, domains: [domain] };
    }
  }
  return ruleFor(url, candidates);
}
