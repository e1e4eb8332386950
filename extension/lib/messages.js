// Messages between the extension's pages and its service worker, checked on arrival.
// Only the extension's own popup and block page may send them; each type has a fixed shape.
// The block page names what it shows only by the one-time ticket the worker opened it with.

const USER_NAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;
const TICKET = /^[0-9a-f]{32}$/;

const text = (max, { required = true } = {}) => (v) => (typeof v === "string"
  && v.length <= max && (!required || v.trim().length > 0) ? null : `must be text up to ${max}`);
const matches = (re, what) => (v) => (typeof v === "string" && re.test(v) ? null : what);

// type -> {field: check}; the sender page each type may come from.
export const SHAPES = Object.freeze({
  status: { from: ["popup.html", "block.html"], fields: {} },
  signIn: { from: ["popup.html"], fields: {
    username: matches(USER_NAME, "must be a user name"), password: text(1024) } },
  signOut: { from: ["popup.html"], fields: {} },
  myRequests: { from: ["popup.html"], fields: {} },
  explainBlock: { from: ["block.html"], fields: { ticket: matches(TICKET, "must be a block ticket") } },
  reportAccident: { from: ["block.html"], fields: {
    ticket: matches(TICKET, "must be a block ticket"), whatHappened: text(2000) } },
  askReview: { from: ["block.html"], fields: {
    ticket: matches(TICKET, "must be a block ticket"), reason: text(1000) } },
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
