// Managers and the DSL: blocks by category over time, top blocked sites, blocks by group and
// network site, unblock turnaround and accidental-hit reports, over a chosen period.
// Figures come from the daily counters (/reports/summary), never from learners' raw hits.

import { apiGet, apiGetAll, apiPost } from "../api.js";
import { chartFigure } from "../charts.js";
import { detailsList, h, link, pageHeading, tag } from "../elements.js";
import { errorNotice, onSubmit, selectField, submitButton } from "../forms.js";
import {
  daysAgo, formatDay, formatDuration, formatNumber, formatShortDate, formatTime, isoDate, median, percentile,
} from "../format.js";
import { dataTable } from "../tables.js";

const RANGES = [["7", "Last 7 days"], ["30", "Last 30 days"], ["90", "Last 90 days"], ["365", "Last 12 months"]];
const TOP_CATEGORIES = 7;

/** Days for short periods, weeks (starting on the period's first day) for longer ones. */
function buckets(days) {
  const out = [];
  const step = days <= 31 ? 1 : 7;
  for (let offset = days - 1; offset >= 0; offset -= step) {
    const from = isoDate(daysAgo(offset));
    const to = isoDate(daysAgo(Math.max(0, offset - step + 1)));
    out.push({ from, to, label: step === 1 ? formatShortDate(from) : `w/c ${formatShortDate(from)}` });
  }
  return out;
}

function summary(from, to, groupBy) {
  return apiGet("/api/v1/reports/summary", { from, to, group_by: groupBy });
}

async function categoryChart(section, periods, titles, rangeLabel) {
  const perPeriod = await Promise.all(periods.map((period) => summary(period.from, period.to, "category")));
  const totals = new Map();
  for (const result of perPeriod) {
    for (const row of result.rows) totals.set(row.key, (totals.get(row.key) || 0) + row.block);
  }
  const ranked = [...totals.entries()].filter(([, blocks]) => blocks > 0).sort((a, b) => b[1] - a[1]).map(([key]) => key);
  const shown = ranked.slice(0, TOP_CATEGORIES);
  const datasets = shown.map((key) => ({
    label: titles.get(key) || key,
    data: perPeriod.map((result) => (result.rows.find((row) => row.key === key) || { block: 0 }).block),
  }));
  if (ranked.length > shown.length) {
    datasets.push({ label: "Other categories", data: perPeriod.map((result) =>
      result.rows.filter((row) => !shown.includes(row.key)).reduce((sum, row) => sum + row.block, 0)) });
  }
  const anyBlocks = ranked.length > 0;
  await chartFigure(section, {
    id: "blocks-by-category", stacked: true,
    title: `Blocked requests by category, ${rangeLabel}`,
    description: `Stacked bars, one per ${periods[0].from === periods[0].to ? "day" : "week"}; each colour is a category.`,
    labels: anyBlocks ? periods.map((period) => period.label) : [],
    datasets,
    table: {
      columns: [{ label: "Period", cell: (row) => row.label },
        ...datasets.map((set, index) => ({ label: set.label, numeric: true, cell: (row) => formatNumber(row.values[index]) })),
        { label: "Total", numeric: true, cell: (row) => formatNumber(row.values.reduce((a, b) => a + b, 0)) }],
      rows: anyBlocks ? periods.map((period, index) => ({ label: period.label, values: datasets.map((set) => set.data[index]) })) : [],
    },
  });
}

async function barChart(section, { id, title, description, labelHeading, rows }) {
  await chartFigure(section, {
    id, title, description, labelHeading, horizontal: true,
    labels: rows.map((row) => row.label),
    datasets: [{ label: "Blocks", data: rows.map((row) => row.blocks) }],
  });
}

function turnaround(section, requests) {
  const decided = requests.filter((r) => r.turnaround_seconds !== null && r.turnaround_seconds !== undefined);
  const times = decided.map((r) => r.turnaround_seconds);
  const byStatus = ["open", "approved", "denied", "expired"].map((status) => ({
    label: status, count: requests.filter((r) => r.status === status).length }));
  section.append(
    detailsList([
      ["Requests made", formatNumber(requests.length)],
      ["Decided", formatNumber(decided.length)],
      ["Still open", formatNumber(requests.filter((r) => r.status === "open").length)],
      ["Median time to decide", formatDuration(median(times))],
      ["90% decided within", formatDuration(percentile(times, 0.9))],
    ], "summary-list summary-list--figures"),
    dataTable({ caption: "Unblock requests by outcome", columns: [
      { label: "Outcome", cell: (row) => row.label }, { label: "Requests", numeric: true, cell: (row) => formatNumber(row.count) }],
    rows: byStatus }));
}

function accidentReports(section, reports, reload) {
  const open = reports.filter((r) => r.status === "open");
  const messages = h("div", { class: "messages" });
  section.append(
    detailsList([["Reports", formatNumber(reports.length)], ["Not yet reviewed", formatNumber(open.length)]],
      "summary-list summary-list--figures"),
    messages,
    dataTable({
      caption: "Accidental-hit reports, newest first (up to 10)",
      columns: [
        { label: "Reported", cell: (r) => formatTime(r.created_at) },
        { label: "By", cell: (r) => `${r.user} (${r.group})` },
        { label: "Site", cell: (r) => (r.hit ? `${r.hit.host} (${r.hit.category || "uncategorised"})` : r.url || "–") },
        { label: "What happened", cell: (r) => r.what_happened },
        { label: "Status", cell: (r) => (r.status === "reviewed" ? tag(`Reviewed by ${r.reviewed_by}`, "success") : h("button", {
          type: "button", class: "button button--secondary button--small", "aria-label": `Mark report ${r.id} reviewed`,
          on: { click: async () => {
            try {
              await apiPost(`/api/v1/accident-reports/${r.id}/review`, {});
              await reload();
            } catch (error) {
              messages.replaceChildren(errorNotice(error));
            }
          } } }, "Mark reviewed")) },
      ],
      rows: reports.slice(0, 10), empty: "No accidental-hit reports in this period." }));
}

/** Hours opened by class sessions over the last 30 days, per group; nothing when refused. */
function classSessionHours(view, opened) {
  if (opened === null) return;
  const rows = Object.entries(opened.hours).map(([group, hours]) => ({ group, hours }));
  view.append(h("section", { class: "dashboard-section", "aria-labelledby": "class-sessions-heading" },
    h("h2", { id: "class-sessions-heading" }, "Hours opened by class sessions (last 30 days)"),
    detailsList([["Class sessions", formatNumber(opened.sessions)]], "summary-list summary-list--figures"),
    dataTable({ caption: "Hours opened by class sessions per group, last 30 days", columns: [
      { label: "Group", cell: (row) => (row.group === "(named learners)" ? "Named learners" : row.group) },
      { label: "Hours", numeric: true, cell: (row) => row.hours.toFixed(1) }],
    rows, empty: "No class sessions in the last 30 days." }),
    h("p", {}, link("/class-sessions", "See the class sessions"))));
}

export async function render(view, { query, navigate }) {
  const days = RANGES.some(([value]) => value === query.get("days")) ? Number(query.get("days")) : 30;
  const rangeLabel = RANGES.find(([value]) => Number(value) === days)[1].toLowerCase();
  const from = isoDate(daysAgo(days - 1));
  const to = isoDate(new Date());
  view.append(pageHeading("Dashboard"));
  const messages = h("div", { class: "messages" });
  const form = h("form", { class: "filters", "aria-label": "Choose the period" },
    selectField({ label: "Period", name: "days", value: String(days), options: RANGES }),
    h("div", { class: "filters__actions" }, submitButton("Show")));
  onSubmit(form, messages, async (values) => navigate(`/dashboard?days=${values.days}`));
  view.append(form, messages, h("p", { class: "meta" }, `${formatDay(from)} to ${formatDay(to)}. Figures are totals from the proxies' daily counters.`));

  const [policy, overall, groups, sites, requests, reports, alerts, opened] = await Promise.all([
    apiGet("/api/v1/categories"),
    summary(from, to, "category"), summary(from, to, "group"), summary(from, to, "site"),
    apiGetAll("/api/v1/unblock-requests", { from, to }),
    apiGetAll("/api/v1/accident-reports", { from, to }),
    apiGet("/api/v1/alerts", { status: "open", limit: 500 }),
    apiGet("/api/v1/class-sessions/hours").catch(() => null),
  ]);
  const titles = new Map(policy.categories.map((category) => [category.id, category.title]));
  titles.set("(uncategorised)", "Uncategorised");

  view.append(detailsList([
    ["Blocked requests", formatNumber(overall.totals.block)],
    ["Unblock requests", formatNumber(requests.length)],
    ["Accidental-hit reports", formatNumber(reports.length)],
    ["Open safeguarding alerts", link("/alerts", formatNumber(alerts.items.length))],
  ], "summary-list summary-list--figures summary-list--headline"));
  classSessionHours(view, opened);

  const sections = {};
  for (const [key, heading] of [["category", "Blocked requests by category"], ["sites", "Most blocked sites"],
    ["groups", "Blocks by group and network site"], ["turnaround", "Unblock requests and turnaround"],
    ["reports", "Accidental-hit reports"]]) {
    sections[key] = h("section", { class: "dashboard-section", "aria-labelledby": `${key}-heading` },
      h("h2", { id: `${key}-heading` }, heading));
    view.append(sections[key]);
  }
  await categoryChart(sections.category, buckets(days), titles, rangeLabel);
  await barChart(sections.sites, {
    id: "top-blocked-sites", title: `Most blocked sites, ${rangeLabel}`, labelHeading: "Site",
    description: "Horizontal bars, one per site, most blocked first.",
    rows: overall.top_blocked_sites.map((site) => ({ label: site.host, blocks: site.blocks })) });
  const columns = h("div", { class: "columns" });
  sections.groups.append(columns);
  await barChart(columns, {
    id: "blocks-by-group", title: `Blocks by group, ${rangeLabel}`, labelHeading: "Group",
    description: "Horizontal bars, one per filtering group.",
    rows: groups.rows.filter((row) => row.block > 0).map((row) => ({ label: row.key, blocks: row.block })) });
  await barChart(columns, {
    id: "blocks-by-site", title: `Blocks by network site, ${rangeLabel}`, labelHeading: "Network site",
    description: "Horizontal bars, one per centre or network site.",
    rows: sites.rows.filter((row) => row.block > 0).map((row) => ({ label: row.key, blocks: row.block })) });
  turnaround(sections.turnaround, requests);
  accidentReports(sections.reports, reports, () => navigate(`/dashboard?days=${days}`, { replace: true }));
}
