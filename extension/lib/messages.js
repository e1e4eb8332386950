// Messages between the extension's pages and its service worker, checked on arrival.
// Only the extension's own popup and block page may send them; each type has a fixed shape.

const USER_NAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;
const HIT_ID = /^[0-9]{8}-[0-9A-Za-z]{8}$/;

const text = (max, { required = true } = {}) => (v) => (typeof v === "string"
  && v.length <= max && (!required || v.trim().length > 0) ? null : `must be text up to ${max}`);
const webUrl = (v) => (typeof v === "string" && v.length <= 2000 && /^https?:\/\//i.test(v)
  ? null : "must be an http(s) address");
const optional = (check) => (v) => (v === undefined || v === "" ? null : check(v));
const matches = (re, what) => (v) => (typeof v === "string" && re.test(v) ? null : what);

// type -> {field: check}; the sender page each type may come from.
export const SHAPES = Object.freeze({
  status: { from: ["popup.html", "block.html"], fields: {} },
  signIn: { from: ["popup.html"], fields: {
    username: matches(USER_NAME, "must be a user name"), password: text(1024) } },
  signOut: { from: ["popup.html"], fields: {} },
  myRequests: { from: ["popup.html"], fields: {} },
  explainBlock: { from: ["block.html"], fields: {
    url: optional(webUrl), hitId: optional(matches(HIT_ID, "must be a block reference")),
    category: optional(matches(/^[a-z0-9_-]{1,41}$/, "must be a category id")),
    via: matches(/^(proxy|tunnel|rules|check)$/, "must be how it was blocked") } },
  reportAccident: { from: ["block.html"], fields: {
    url: optional(webUrl), hitId: optional(matches(HIT_ID, "must be a block reference")),
    whatHappened: text(2000) } },
  askReview: { from: ["block.html"], fields: {
    url: webUrl, hitId: optional(matches(HIT_ID, "must be a block reference")),
    reason: text(1000) } },
});

/**
 * null when `message` from `sender` is acceptable, else a reason. `extensionOrigin` is
 * chrome-extension://<id> and `extensionId` the extension's id.
 */
export function messageProblem(message, sender, extensionId, extensionOrigin) {
  if (!sender || sender.id !== extensionId) return "not from this extension";
  if (!message || typeof message !== "object" || Array.isArray(message)) return "not an object";
  const shape = Object.hasOwn(SHAPES, message.type) ? SHAPES[message.type] : null;
  if (!shape) return "unknown message type";
  let page;
  try {
    const url = new URL(sender.url);
    if (`${url.protocol}//${url.host}` !== extensionOrigin) return "not from an extension page";
    page = url.pathname.replace(/^\//, "");
  } catch {
    return "no sender page";
  }
  if (!shape.from.includes(page)) return `${message.type} is not accepted from ${page}`;
  for (const key of Object.keys(message)) {
    if (key !== "type" && !Object.hasOwn(shape.fields, key)) return `unexpected field ${key}`;
  }
  for (const [field, check] of Object.entries(shape.fields)) {
    const problem = check(message[field]);
    if (problem) return `${field} ${problem}`;
  }
  return null;
}
