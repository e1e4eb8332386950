// Block references (hit ids) like 20261122-7KQ2X9AB: the day, then 8 Crockford base32
// characters, exactly as the proxy makes them, and the headers the proxy marks a block with.

const ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
export const HIT_ID = /^[0-9]{8}-[0-9A-HJKMNP-TV-Z]{8}$/;

export function isHitId(value) {
  return typeof value === "string" && HIT_ID.test(value);
}

/** A new hit id for a block at `date`, using `randomBytes(n)` for the random part. */
export function newHitId(date, randomBytes) {
  const pad = (n) => String(n).padStart(2, "0");
  const day = `${date.getFullYear()}${pad(date.getMonth() + 1)}${pad(date.getDate())}`;
  const bytes = randomBytes(8);
  let token = "";
  for (let i = 0; i < 8; i += 1) token += ALPHABET[bytes[i] % 32];
  return `${day}-${token}`;
}

/** {hitId, category} from a response's headers when it is the proxy's block page. */
export function blockFromHeaders(statusCode, headers) {
  if (statusCode !== 403 || !Array.isArray(headers)) return null;
  let hitId = null;
  let category = "";
  for (const header of headers) {
    const name = String(header?.name ?? "").toLowerCase();
    if (name === "x-esafety-hit-id") hitId = String(header.value ?? "").trim();
    if (name === "x-esafety-category") {
      try {
        category = decodeURIComponent(String(header.value ?? ""));
      } catch {
        category = "";
      }
    }
  }
  if (!isHitId(hitId)) return null;
  if (!/^[a-z0-9_-]{0,41}$/.test(category)) category = "";
  return { hitId, category };
}
