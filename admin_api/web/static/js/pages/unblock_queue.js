// IT support: the unblock requests, newest first, with filters.

import { apiGet } from "../api.js";
import { h, link, pageHeading, tag } from "../elements.js";
import { errorNotice, inputField, onSubmit, selectField, submitButton } from "../forms.js";
import { formatTime } from "../format.js";
import { dataTable } from "../tables.js";

export const STATUS_TAGS = { open: ["Open", "warning"], approved: ["Approved", "success"],
  denied: ["Denied", "neutral"], expired: ["Expired", "neutral"] };
const FILTERS = ["status", "user", "site", "from", "to"];

export async function render(view, { query, navigate }) {
  const filters = Object.fromEntries(FILTERS.map((name) => [name, query.get(name) ?? (name === "status" ? "open" : "")]));
  view.append(pageHeading("Unblock requests"),
    h("p", {}, "Requests from learners and staff to open a blocked site, newest first. Open a request to see why the site is blocked and to decide."));
  const messages = h("div", { class: "messages" });
  const form = h("form", { class: "filters", role: "search", "aria-label": "Filter unblock requests" },
    selectField({ label: "Status", name: "status", value: filters.status,
      options: [["open", "Open"], ["approved", "Approved"], ["denied", "Denied"], ["expired", "Expired"], ["", "Any status"]] }),
    inputField({ label: "Requester", name: "user", value: filters.user, autocomplete: "off" }),
    inputField({ label: "Site or address", name: "site", value: filters.site, autocomplete: "off" }),
    inputField({ label: "From", name: "from", type: "date", value: filters.from }),
    inputField({ label: "To", name: "to", type: "date", value: filters.to }),
    h("div", { class: "filters__actions" }, submitButton("Filter")));
  view.append(form, messages);
  onSubmit(form, messages, async (values) => {
    const params = new URLSearchParams();
    for (const name of FILTERS) params.set(name, values[name] || "");
    await navigate(`/unblock-requests?${params}`);
  });

  const results = h("div", { class: "results" });
  view.append(results);
  const columns = [
    { label: "Asked", cell: (r) => link(`/unblock-requests/${r.id}`, formatTime(r.created_at), { "aria-label": `Request ${r.id}, ${r.target}, asked ${formatTime(r.created_at)}` }) },
    { label: "Site", cell: (r) => r.target },
    { label: "Requester", cell: (r) => `${r.user} (${r.group})` },
    { label: "Reason", cell: (r) => r.reasons[r.reasons.length - 1] + (r.request_count > 1 ? ` (asked ${r.request_count} times)` : "") },
    { label: "Status", cell: (r) => tag(...(STATUS_TAGS[r.status] || [r.status, "neutral"])) },
  ];
  const rows = [];
  let cursor = "";
  const more = h("button", { type: "button", class: "button button--secondary", hidden: true }, "Show more requests");
  async function load() {
    const page = await apiGet("/api/v1/unblock-requests", { ...filters, limit: 50, cursor });
    rows.push(...page.items);
    cursor = page.next_cursor || "";
    results.replaceChildren(dataTable({
      caption: `Unblock requests${filters.status ? ` (${filters.status})` : ""}, newest first: ${rows.length} shown`,
      columns, rows, empty: "No requests match these filters." }), more);
    more.hidden = !cursor;
  }
  more.addEventListener("click", () => load().catch((error) => messages.replaceChildren(errorNotice(error))));
  await load();
}
