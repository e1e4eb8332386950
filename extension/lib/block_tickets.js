// One-time tickets for the block page. The block page is not web-accessible: only the
// service worker opens it (chrome.tabs.update), after a real block, with a ticket naming
// what it recorded. The page shows only what a ticket it holds says, so no other page can
// make it show, or record, anything.

export const MAX_TICKETS = 200;
export const TICKET_TTL_MS = 6 * 3600 * 1000;
const TICKET = /^[0-9a-f]{32}$/;

export function isTicket(value) {
  return typeof value === "string" && TICKET.test(value);
}

/** The tickets with `ticket` -> `entry` added, oldest dropped beyond MAX_TICKETS. */
export function addTicket(tickets, ticket, entry, now) {
  const kept = Object.entries(tickets ?? {})
    .filter(([, e]) => e && now - e.at < TICKET_TTL_MS)
    .sort((a, b) => a[1].at - b[1].at)
    .slice(-(MAX_TICKETS - 1));
  return Object.fromEntries([...kept, [ticket, { ...entry, at: now }]]);
}

/** The entry a ticket names, or null when unknown or expired. */
export function ticketEntry(tickets, ticket, now) {
  if (!isTicket(ticket)) return null;
  const entry = tickets?.[ticket];
  return entry && now - entry.at < TICKET_TTL_MS ? entry : null;
}
