// Managers and administrators: the append-only audit log, newest first.

import { apiGet } from "../api.js";
import { h, pageHeading } from "../elements.js";
import { errorNotice, inputField, onSubmit, submitButton } from "../forms.js";
import { formatTime } from "../format.js";
import { dataTable } from "../tables.js";

const FILTERS = ["from", "to", "actor", "action"];

function change(entry) {
  if (entry.before === null && entry.after === null) return "–";
  return h("details", {}, h("summary", {}, "Show the change"),
    entry.before !== null ? h("p", {}, h("strong", {}, "Before: "), h("code", { class: "json" }, JSON.stringify(entry.before))) : null,
    entry.after !== null ? h("p", {}, h("strong", {}, "After: "), h("code", { class: "json" }, JSON.stringify(entry.after))) : null);
}

export async function render(view, { query, navigate }) {
  const filters = Object.fromEntries(FILTERS.map((name) => [name, query.get(name) || ""]));
  view.append(pageHeading("Audit log"),
    h("p", {}, "Every sign-in, decision, change and export, with who did it and when. Nobody can change or delete entries."));
  const messages = h("div", { class: "messages" });
  const form = h("form", { class: "filters", role: "search", "aria-label": "Filter the audit log" },
    inputField({ label: "From", name: "from", type: "date", value: filters.from }),
    inputField({ label: "To", name: "to", type: "date", value: filters.to }),
    inputField({ label: "Who", name: "actor", value: filters.actor, autocomplete: "off" }),
    inputField({ label: "Action", name: "action", value: filters.action, autocomplete: "off", hint: "For example unblock.approve" }),
    h("div", { class: "filters__actions" }, submitButton("Filter")));
  onSubmit(form, messages, async (values) => {
    const params = new URLSearchParams();
    for (const name of FILTERS) if (values[name]) params.set(name, values[name]);
    await navigate(`/audit?${params}`);
  });
  const results = h("div", { class: "results" });
  const more = h("button", { type: "button", class: "button button--secondary", hidden: true }, "Show older entries");
  view.append(form, messages, results, more);
  const rows = [];
  let cursor = "";
  async function load() {
    const page = await apiGet("/api/v1/audit", { ...filters, limit: 100, cursor });
    rows.push(...page.items);
    cursor = page.next_cursor || "";
    results.replaceChildren(dataTable({
      caption: `Audit entries, newest first: ${rows.length} shown`,
      columns: [
        { label: "When", cell: (entry) => formatTime(entry.ts) },
        { label: "Who", cell: (entry) => entry.actor },
        { label: "Action", cell: (entry) => h("code", {}, entry.action) },
        { label: "Target", cell: (entry) => entry.target },
        { label: "From address", cell: (entry) => entry.ip || "–" },
        { label: "Change", cell: change },
      ],
      rows, empty: "No entries match these filters." }));
    more.hidden = !cursor;
  }
  more.addEventListener("click", () => load().catch((error) => messages.replaceChildren(errorNotice(error))));
  await load();
}
