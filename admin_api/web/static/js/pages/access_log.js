// Managers and the DSL: search the access log with the API's filters; export the selection
// as CSV (every export is in the audit log).

import { apiGet, apiUrl } from "../api.js";
import { h, pageHeading, tag } from "../elements.js";
import { checkboxField, errorNotice, inputField, onSubmit, selectField, submitButton } from "../forms.js";
import { formatTime } from "../format.js";
import { dataTable } from "../tables.js";

const FILTERS = ["from", "to", "user", "group", "site", "host", "category", "action", "q", "device"];
// How the person was identified, as the log shows it (the API's identified_by).
const IDENTIFIED_BY = { auth: "signed in", portal: "portal", radius: "radius", kerberos: "kerberos",
  oidc: "single sign-on", network: "network range", unidentified: "not identified" };

// "Sam Learner · radius · aa:bb:cc:dd:ee:ff": who, how they were identified, on which device.
// "(not identified)" only when nobody was.
export function whoCell(hit) {
  const name = hit.display_name ? `${hit.display_name} (${hit.user})` : hit.user;
  if (!name && !hit.device) return hit.identified_by === "network" ? "(no user) · network range" : "(not identified)";
  const how = IDENTIFIED_BY[hit.identified_by] || hit.identified_by;
  return h("span", { class: "who" }, [name || "(not identified)", how, hit.device].filter(Boolean).join(" · "));
}
const EXPORTERS = ["manager", "dsl", "admin"];

export async function render(view, { query, navigate, user }) {
  const filters = Object.fromEntries(FILTERS.map((name) => [name, query.get(name) || ""]));
  const { categories } = await apiGet("/api/v1/categories");
  view.append(pageHeading("Access log"),
    h("p", {}, "Blocked requests (and allowed ones, where the centre logs them), newest first. Searches are not recorded; exports are, in the audit log."));
  const messages = h("div", { class: "messages" });
  const form = h("form", { class: "filters filters--wide", role: "search", "aria-label": "Search the access log" },
    inputField({ label: "From", name: "from", type: "date", value: filters.from }),
    inputField({ label: "To", name: "to", type: "date", value: filters.to }),
    inputField({ label: "User", name: "user", value: filters.user, autocomplete: "off" }),
    inputField({ label: "Group", name: "group", value: filters.group, autocomplete: "off" }),
    inputField({ label: "Network site", name: "site", value: filters.site, autocomplete: "off" }),
    inputField({ label: "Host", name: "host", value: filters.host, autocomplete: "off", hint: "Exact host, e.g. www.example.com" }),
    selectField({ label: "Category", name: "category", value: filters.category,
      options: [["", "Any category"], ...categories.map((category) => [category.id, category.title])] }),
    selectField({ label: "Action", name: "action", value: filters.action, options: [["", "Blocked or allowed"], ["block", "Blocked"], ["allow", "Allowed"]] }),
    inputField({ label: "Text in the address", name: "q", value: filters.q, autocomplete: "off" }),
    inputField({ label: "Device", name: "device", value: filters.device, autocomplete: "off",
      hint: "Exact device id, e.g. a MAC address aa:bb:cc:dd:ee:ff" }),
    h("div", { class: "filters__actions" }, submitButton("Search")));
  view.append(form, messages);
  onSubmit(form, messages, async (values) => {
    const params = new URLSearchParams();
    for (const name of FILTERS) if (values[name]) params.set(name, values[name]);
    await navigate(`/access-log?${params}`);
  });

  if (EXPORTERS.includes(user.role)) {
    const pseudonymise = checkboxField({ label: "Replace user names, addresses and devices with pseudonyms", name: "pseudonymise",
      hint: "Use this when the export leaves the safeguarding team." });
    const download = h("a", { class: "button button--secondary", download: "esafety-hits.csv", href: apiUrl("/api/v1/hits.csv", filters) },
      "Export these results as CSV");
    pseudonymise.querySelector("input").addEventListener("change", (event) => {
      download.href = apiUrl("/api/v1/hits.csv", { ...filters, pseudonymise: event.target.checked ? "true" : "" });
    });
    view.append(h("section", { class: "export", "aria-labelledby": "export-heading" },
      h("h2", { id: "export-heading", class: "heading-small" }, "Export"), pseudonymise, download));
  }

  const results = h("div", { class: "results" });
  const more = h("button", { type: "button", class: "button button--secondary", hidden: true }, "Show more");
  view.append(results, more);
  const rows = [];
  let cursor = "";
  async function load() {
    const page = await apiGet("/api/v1/hits", { ...filters, limit: 100, cursor });
    rows.push(...page.items);
    cursor = page.next_cursor || "";
    results.replaceChildren(dataTable({
      caption: `Access log: ${rows.length}${cursor ? "+" : ""} requests`, id: "access-log-table",
      columns: [
        { label: "Time", cell: (hit) => formatTime(hit.ts) },
        { label: "User · identified by · device", cell: whoCell },
        { label: "Group", cell: (hit) => hit.group },
        { label: "Network site", cell: (hit) => hit.site },
        { label: "Address", cell: (hit) => h("span", { class: "url" }, `${hit.host}${hit.path || ""}`) },
        { label: "Action", cell: (hit) => tag(hit.action === "block" ? "Blocked" : "Allowed", hit.action === "block" ? "warning" : "neutral") },
        { label: "Category", cell: (hit) => hit.category || "–" },
        { label: "Rule", cell: (hit) => hit.rule },
      ],
      rows, empty: "No requests match these filters." }));
    more.hidden = !cursor;
  }
  more.addEventListener("click", () => load().catch((error) => messages.replaceChildren(errorNotice(error))));
  await load();
}
