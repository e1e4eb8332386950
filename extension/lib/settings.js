// The extension's configuration: the managed policy (chrome.storage.managed) wins; an
// unpacked test load may instead put the same fields under "settings" in chrome.storage.local.
// Pure functions only (no chrome global), so they run under `node --test`.

export const DEFAULTS = Object.freeze({
  backendUrl: "",
  centreId: "",
  offNetworkFiltering: true,
  proxyRealm: "esafety",
  probeUrl: "http://esafety-proxy.invalid/status",
  probeKey: "",
  offNetworkUnsigned: "",
});

export const OFFNETWORK_UNSIGNED = Object.freeze(["block_prohibited", "block_all"]);

const CENTRE_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,40}$/;

/** A backend base URL without a trailing slash, or "" when unusable. */
export function cleanBackendUrl(value) {
  if (typeof value !== "string" || value.length > 500) return "";
  let parsed;
  try {
    parsed = new URL(value);
  } catch {
    return "";
  }
  if (parsed.protocol !== "https:" && parsed.protocol !== "http:") return "";
  if (parsed.username || parsed.password || parsed.search || parsed.hash) return "";
  return parsed.origin + parsed.pathname.replace(/\/+$/, "");
}

/** Merge managed and local settings; every field is validated, bad values fall back. */
export function resolveSettings(managed, local) {
  const out = { ...DEFAULTS, source: "none" };
  for (const [source, given] of [["local", local], ["managed", managed]]) {
    if (!given || typeof given !== "object") continue;
    const backendUrl = cleanBackendUrl(given.backendUrl);
    if (!backendUrl) continue;
    out.backendUrl = backendUrl;
    out.source = source;
    if (typeof given.centreId === "string" && CENTRE_ID.test(given.centreId)) {
      out.centreId = given.centreId;
    }
    if (typeof given.offNetworkFiltering === "boolean") {
      out.offNetworkFiltering = given.offNetworkFiltering;
    }
    if (typeof given.proxyRealm === "string" && /^[\w .-]{1,64}$/.test(given.proxyRealm)) {
      out.proxyRealm = given.proxyRealm;
    }
    if (typeof given.probeKey === "string" && /^[0-9a-f]{64}$/.test(given.probeKey)) {
      out.probeKey = given.probeKey;
    }
    if (OFFNETWORK_UNSIGNED.includes(given.offNetworkUnsigned)) {
      out.offNetworkUnsigned = given.offNetworkUnsigned;
    }
  }
  return Object.freeze(out);
}
