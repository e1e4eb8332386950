// One safeguarding alert with its context (the user's recent blocked hits); the DSL (and
// admins) acknowledge it with a note.

import { apiGet, apiPost } from "../api.js";
import { detailsList, h, link, notice, pageHeading, replaceContent, tag } from "../elements.js";
import { onSubmit, submitButton, textAreaField } from "../forms.js";
import { formatTime } from "../format.js";
import { dataTable } from "../tables.js";
import { SEVERITY_TAGS, deliveryState } from "./alerts.js";

const ACKNOWLEDGERS = ["dsl", "admin"];
const IDENTIFIED_BY = { auth: "sign-in on the connection", portal: "Wi-Fi portal sign-in",
  radius: "RADIUS (Wi-Fi controller)", kerberos: "Kerberos (Windows sign-in)", oidc: "single sign-on",
  network: "network range", unidentified: "not identified" };

export async function render(view, { id, user, announce }) {
  async function draw(message) {
    const { alert, recent_blocked_hits: recent } = await apiGet(`/api/v1/alerts/${id}`);
    const messages = h("div", { class: "messages" });
    replaceContent(view, 
      h("p", { class: "back-link" }, link("/alerts", "Back to alerts")),
      pageHeading(`Alert ${alert.id}: ${alert.category}`),
      message ? notice("success", h("p", {}, message)) : null,
      detailsList([
        ["User", alert.user ? `${alert.user} (group ${alert.group})` : "Not identified"],
        ["Device", (alert.devices || []).length ? alert.devices.join(", ") : null],
        ["Identified by", alert.identified_by ? (IDENTIFIED_BY[alert.identified_by] || alert.identified_by) : null],
        ["Device address", alert.client_ip],
        ["Network site", alert.site],
        ["Category", alert.category],
        ["Severity", tag(alert.severity, SEVERITY_TAGS[alert.severity] || "neutral")],
        ["Hits grouped", String(alert.count)],
        ["First seen", formatTime(alert.first_seen)],
        ["Last seen", formatTime(alert.last_seen)],
        ["Sites", alert.hosts.length ? alert.hosts.join(", ") : null],
        ["Searches", alert.search_terms.length ? alert.search_terms.join(", ") : null],
        ["Delivery", deliveryState(alert)],
        ["Status", alert.status === "open" ? tag("Open", "warning") : tag("Acknowledged", "success")],
        ["Acknowledged", alert.acknowledged_at ? `${formatTime(alert.acknowledged_at)} by ${alert.acknowledged_by}` : null],
        ["Note", alert.note || null],
      ]),
      h("section", { "aria-labelledby": "context-heading" },
        h("h2", { id: "context-heading" }, "Context: this user's recent blocked requests"),
        dataTable({
          caption: `Recent blocked requests by ${alert.user || "this device"}, newest first`, captionHidden: true,
          columns: [
            { label: "Time", cell: (hit) => formatTime(hit.ts) },
            { label: "Address", cell: (hit) => h("span", { class: "url" }, `${hit.host}${hit.path || ""}`) },
            { label: "Category", cell: (hit) => hit.category || "–" },
            { label: "Search", cell: (hit) => hit.search_terms || "–" },
            { label: "Device", cell: (hit) => hit.device || "–" },
            { label: "Reference", cell: (hit) => h("code", {}, hit.id) },
          ],
          rows: recent, empty: alert.user ? "No other blocked requests are logged for this user." : "The user was not identified, so there is no history." })),
      messages);
    if (alert.status === "open" && ACKNOWLEDGERS.includes(user.role)) {
      const form = h("form", { class: "form", "aria-labelledby": "ack-heading", novalidate: true },
        h("h2", { id: "ack-heading" }, "Acknowledge"),
        textAreaField({ label: "What you did or decided", name: "note", required: true, rows: 4, maxlength: 2000,
          hint: "This note is kept with the alert and in the audit log." }),
        submitButton("Acknowledge alert"));
      onSubmit(form, messages, async (values) => {
        if (!values.note) throw Object.assign(new Error("Write a note before acknowledging."), { field: "note" });
        await apiPost(`/api/v1/alerts/${alert.id}/acknowledge`, { note: values.note });
        await draw("Alert acknowledged.");
      });
      view.append(form);
    } else if (alert.status === "open") {
      view.append(h("p", {}, "The designated safeguarding lead acknowledges alerts."));
    }
    if (message) {
      view.querySelector("h1").focus();
      announce(message);
    }
  }
  await draw("");
}
