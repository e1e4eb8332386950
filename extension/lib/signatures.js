// WebCrypto signatures: the navigation token (HMAC-SHA256) the install mints for each block
// it reports (the backend checks it with the hit key it gave this install), and the check
// of the centre proxy's probe answer, an Ed25519 signature made with a private key only the
// proxy holds (see proxy_addons/probe_signature.py): the extension has only the public key.

export const PROBE_MAX_AGE_S = 120;
const HEX_KEY = /^[0-9a-f]{64}$/;

function bytesOfHex(hex) {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i += 1) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

function hexOf(buffer) {
  return [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

export function isHexKey(value) {
  return typeof value === "string" && HEX_KEY.test(value);
}

/** Lowercase hex HMAC-SHA256 of the text `message` under the hex key `keyHex`. */
export async function hmacHex(keyHex, message) {
  const key = await crypto.subtle.importKey("raw", bytesOfHex(keyHex),
    { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return hexOf(await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(message)));
}

/** The token for one blocked navigation: hit id, time (epoch seconds) and address. */
export function navigationToken(hitKeyHex, hitId, ts, url) {
  return hmacHex(hitKeyHex, `esafety-hit-v1\n${hitId}\n${Math.round(ts * 1000)}\n${url}`);
}

/** A fresh probe nonce: 16 random bytes as 32 hex characters. */
export function newNonce() {
  return hexOf(crypto.getRandomValues(new Uint8Array(16)));
}

/**
 * True only when `answer` is the centre proxy's answer to this `nonce`: signed with the
 * private key whose public half is `publicKeyHex`, for this centre (when `centreId` is
 * set), and made in the last two minutes.
 */
export async function probeIsGenuine(publicKeyHex, nonce, answer, { centreId = "", now = Date.now() } = {}) {
  if (!isHexKey(publicKeyHex) || !answer || typeof answer !== "object") return false;
  if (answer.proxy !== "esafety" || answer.nonce !== nonce) return false;
  if (!Number.isInteger(answer.ts) || typeof answer.sig !== "string"
      || !/^[0-9a-f]{128}$/.test(answer.sig)) return false;
  if (Math.abs(now / 1000 - answer.ts) > PROBE_MAX_AGE_S) return false;
  const centre = typeof answer.centre === "string" ? answer.centre : "";
  if (centreId && centre !== centreId) return false;
  try {
    const key = await crypto.subtle.importKey("raw", bytesOfHex(publicKeyHex),
      { name: "Ed25519" }, false, ["verify"]);
    return await crypto.subtle.verify({ name: "Ed25519" }, key, bytesOfHex(answer.sig),
      new TextEncoder().encode(`esafety-probe-v1\n${nonce}\n${centre}\n${answer.ts}`));
  } catch {
    return false; // not a usable key or signature: not the centre
  }
}
