// The extension's block page address. The service worker alone opens the page, with a
// one-time ticket (see block_tickets.js); everything shown comes from the worker.

import { isTicket } from "./block_tickets.js";

export function blockPageUrl(base, ticket) {
  return `${base}?${new URLSearchParams({ t: ticket })}`;
}

/** The ticket in a block page location, or "" when missing or malformed. */
export function readBlockPageUrl(href) {
  try {
    const ticket = new URL(href).searchParams.get("t") ?? "";
    return isTicket(ticket) ? ticket : "";
  } catch {
    return "";
  }
}
