// IT support: the categories, their lists and list sources, entry counts and import times.

import { apiGet } from "../api.js";
import { detailsList, h, pageHeading, tag } from "../elements.js";
import { formatNumber } from "../format.js";
import { dataTable } from "../tables.js";

function importedAt(iso) {
  return iso ? new Intl.DateTimeFormat("en-GB", { dateStyle: "medium", timeStyle: "short" }).format(new Date(iso)) : "Never";
}

function listSources(category) {
  const items = category.lists.flatMap((item) => (item.sources.length
    ? item.sources.map((source) => h("li", {}, `${item.list}: ${source.source}, ${formatNumber(source.entries)} entries, imported ${importedAt(source.imported_at)}`))
    : [h("li", {}, `${item.list}: not imported`)]));
  return items.length ? h("ul", { class: "list list--compact" }, items) : "Curated entries only";
}

export async function render(view) {
  view.append(pageHeading("Categories and lists"));
  const policy = await apiGet("/api/v1/categories");
  view.append(
    detailsList([["List snapshot", policy.snapshot_version || "none imported yet"], ["Policy version", String(policy.policy_version)]]),
    h("h2", {}, "List sources"),
    dataTable({
      caption: "Imported list sources", captionHidden: true,
      columns: [
        { label: "Source", cell: (s) => s.source },
        { label: "Origin", cell: (s) => s.origin || "–" },
        { label: "Entries", numeric: true, cell: (s) => formatNumber(s.entries) },
        { label: "Last imported", cell: (s) => importedAt(s.imported_at) },
      ],
      rows: policy.sources, empty: "No lists have been imported. Run esafety lists update." }),
    h("h2", {}, "Categories"),
    dataTable({
      caption: "Categories with their lists", captionHidden: true,
      columns: [
        { label: "Category", cell: (c) => h("span", {}, c.title, h("br"), h("span", { class: "muted" }, c.id)) },
        { label: "Kind", cell: (c) => c.kind },
        { label: "Severity", cell: (c) => c.severity },
        { label: "Entries", numeric: true, cell: (c) => formatNumber(c.list_entries + c.curated_entries) },
        { label: "Lists and sources", cell: (c) => listSources(c) },
        { label: "Flags", cell: (c) => h("span", { class: "tags" },
          c.overridable ? null : tag("Locked", "warning"),
          c.safeguarding_alert ? tag("Alerts the DSL", "neutral") : null,
          c.illegal ? tag("Illegal content list", "warning") : null) },
      ],
      rows: policy.categories }));
}
