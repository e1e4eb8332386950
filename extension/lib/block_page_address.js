// The extension's block page address: what was blocked, how, and the reference.
// Built by the service worker and the off-network redirect rules, read by block.js.

export const VIAS = Object.freeze(["proxy", "tunnel", "rules", "check"]);
const MAX_URL = 2000;

export function blockPageUrl(base, { url, via, hitId = "", category = "" }) {
  const params = new URLSearchParams({ via });
  if (hitId) params.set("hit", hitId);
  if (category) params.set("category", category);
  return `${base}?${params}#${String(url).slice(0, MAX_URL)}`;
}

/** Parse a block page location; unknown or malformed values come back empty. */
export function readBlockPageUrl(href) {
  let parsed;
  try {
    parsed = new URL(href);
  } catch {
    return null;
  }
  const via = parsed.searchParams.get("via") ?? "";
  const hitId = parsed.searchParams.get("hit") ?? "";
  const category = parsed.searchParams.get("category") ?? "";
  const url = parsed.hash.slice(1);
  return {
    via: VIAS.includes(via) ? via : "",
    hitId: /^[0-9]{8}-[0-9A-Za-z]{8}$/.test(hitId) ? hitId.toUpperCase() : "",
    category: /^[a-z0-9_-]{1,41}$/.test(category) ? category : "",
    url: /^https?:\/\//i.test(url) && url.length <= MAX_URL ? url : "",
  };
}
