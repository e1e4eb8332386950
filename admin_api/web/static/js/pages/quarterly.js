// Managers and the DSL: the quarterly e-safety report (aggregates only), printable to PDF.
// The report itself is drawn by the server (/api/v1/reports/quarterly, with SVG charts and
// tables); this page picks the quarter, shows it, and prints it with the print stylesheet.

import { apiRequest } from "../api.js";
import { h, pageHeading } from "../elements.js";
import { inputField, onSubmit, selectField, submitButton } from "../forms.js";

function recentQuarters(count) {
  const now = new Date();
  let year = now.getFullYear();
  let quarter = Math.floor(now.getMonth() / 3) + 1;
  const out = [];
  for (let i = 0; i < count; i += 1) {
    out.push([`${year}Q${quarter}`, `${year} Q${quarter}${i === 0 ? " (this quarter)" : ""}`]);
    quarter -= 1;
    if (quarter === 0) { quarter = 4; year -= 1; }
  }
  return out;
}

/** The report's sections, copied out of the server's HTML (parsed, never run). Its own
    stylesheet is left out: this page styles the report, and its CSP allows no inline style. */
function reportContent(html) {
  const parsed = new DOMParser().parseFromString(html.replace(/<style>[^<]*<\/style>/g, ""), "text/html");
  const main = parsed.querySelector("main");
  const article = h("article", { class: "quarterly-report", "aria-labelledby": "report-title" });
  for (const node of main ? [...main.childNodes] : []) article.append(document.importNode(node, true));
  const title = article.querySelector("h1");
  if (title) {
    const heading = h("h2", { id: "report-title", class: "report-title" }, title.textContent);
    title.replaceWith(heading);
  }
  article.querySelectorAll("h2:not(.report-title)").forEach((node) => node.replaceWith(h("h3", {}, node.textContent)));
  return article;
}

export async function render(view, { query, navigate }) {
  const choices = recentQuarters(8);
  const quarter = choices.some(([value]) => value === query.get("quarter")) ? query.get("quarter") : choices[0][0];
  view.append(pageHeading("Quarterly report"),
    h("p", { class: "no-print" }, "For governors and inspection: totals only, no learner is named. Choose a quarter, then print it or save it as a PDF from the print dialogue."));
  const messages = h("div", { class: "messages" });
  const site = query.get("site") || "";
  const form = h("form", { class: "filters no-print", "aria-label": "Choose the quarter" },
    selectField({ label: "Quarter", name: "quarter", value: quarter, options: choices }),
    inputField({ label: "Site (optional)", name: "site", value: site, autocomplete: "off",
      hint: "A site's id, as the access log shows it; empty for every site" }),
    h("div", { class: "filters__actions" }, submitButton("Show report"),
      h("button", { type: "button", class: "button button--secondary", on: { click: () => window.print() } }, "Print or save as PDF")));
  onSubmit(form, messages, async (values) => navigate(`/quarterly?${new URLSearchParams({ quarter: values.quarter, ...(values.site ? { site: values.site } : {}) })}`));
  view.append(form, messages);
  const html = await apiRequest("GET", "/api/v1/reports/quarterly", { query: site ? { quarter, site } : { quarter } });
  view.append(reportContent(html));
}
