// The DSL's queue of safeguarding alerts (managers and admins may read it).

import { apiGet } from "../api.js";
import { h, link, pageHeading, tag } from "../elements.js";
import { inputField, onSubmit, selectField, submitButton } from "../forms.js";
import { formatTime } from "../format.js";
import { dataTable } from "../tables.js";

const CHANNEL_NAMES = { webhook: "Webhook", email: "Email" };

/** Each channel's delivery: delivered at, retrying (next try at), or expired. */
export function deliveryState(alert) {
  const entries = Object.entries(alert.deliveries || {});
  if (!entries.length) return "Not sent (no channel set up)";
  return h("ul", { class: "plain-list" }, entries.map(([channel, record]) => {
    const name = CHANNEL_NAMES[channel] || channel;
    if (record.state === "delivered") return h("li", {}, tag(`${name}: delivered ${formatTime(record.delivered_at)}`, "success"));
    if (record.state === "expired") return h("li", {}, tag(`${name}: not delivered, gave up after ${record.attempts} tries`, "warning"));
    const next = record.attempts ? `retrying, next try ${formatTime(record.next_attempt_at)}` : "sending";
    return h("li", {}, tag(`${name}: ${next}`, record.attempts ? "warning" : "neutral"));
  }));
}

export const SEVERITY_TAGS = { critical: "warning", high: "warning", medium: "neutral", low: "neutral" };
const FILTERS = ["status", "category", "user", "from", "to"];

export async function render(view, { query, navigate }) {
  const filters = Object.fromEntries(FILTERS.map((name) => [name, query.get(name) ?? (name === "status" ? "open" : "")]));
  view.append(pageHeading("Safeguarding alerts"),
    h("p", {}, "Alerts are raised when someone reaches, or searches for, content the centre watches for safeguarding. Repeated hits by one person in one category are grouped into one alert."));
  const messages = h("div", { class: "messages" });
  const form = h("form", { class: "filters", role: "search", "aria-label": "Filter alerts" },
    selectField({ label: "Status", name: "status", value: filters.status,
      options: [["open", "Open"], ["acknowledged", "Acknowledged"], ["", "Any status"]] }),
    inputField({ label: "Category", name: "category", value: filters.category, autocomplete: "off" }),
    inputField({ label: "User", name: "user", value: filters.user, autocomplete: "off" }),
    inputField({ label: "From", name: "from", type: "date", value: filters.from }),
    inputField({ label: "To", name: "to", type: "date", value: filters.to }),
    h("div", { class: "filters__actions" }, submitButton("Filter")));
  onSubmit(form, messages, async (values) => {
    const params = new URLSearchParams();
    for (const name of FILTERS) params.set(name, values[name] || "");
    await navigate(`/alerts?${params}`);
  });
  view.append(form, messages);
  const { items } = await apiGet("/api/v1/alerts", { ...filters, limit: 200 });
  view.append(dataTable({
    caption: `Safeguarding alerts${filters.status ? ` (${filters.status})` : ""}, newest first: ${items.length}`,
    columns: [
      { label: "Last seen", cell: (a) => link(`/alerts/${a.id}`, formatTime(a.last_seen), { "aria-label": `Alert ${a.id}: ${a.category}, ${a.user || "unidentified user"}, last seen ${formatTime(a.last_seen)}` }) },
      { label: "User", cell: (a) => (a.user ? `${a.user} (${a.group})` : `Not identified (${a.client_ip})`) },
      { label: "Category", cell: (a) => a.category },
      { label: "Severity", cell: (a) => tag(a.severity, SEVERITY_TAGS[a.severity] || "neutral") },
      { label: "Hits", numeric: true, cell: (a) => String(a.count) },
      { label: "Status", cell: (a) => (a.status === "open" ? tag("Open", "warning") : tag(`Acknowledged by ${a.acknowledged_by}`, "success")) },
      { label: "Delivery", cell: (a) => deliveryState(a) },
    ],
    rows: items, empty: "No alerts match these filters." }));
}
