// Learners and staff: the sites they asked to be reviewed (with IT's answer) and their
// accidental-hit reports.

import { apiGet } from "../api.js";
import { h, pageHeading, tag } from "../elements.js";
import { formatTime } from "../format.js";
import { dataTable } from "../tables.js";

const OUTCOME = { open: ["Waiting for IT", "neutral"], approved: ["Unblocked", "success"],
  denied: ["Not unblocked", "warning"], expired: ["Expired", "neutral"] };

export async function render(view) {
  view.append(pageHeading("My requests and reports"),
    h("p", {}, "When a site is blocked, the block page lets you ask for it to be reviewed, or tell us you reached it by accident. What you sent, and what happened next, is here."));
  const [requests, reports] = await Promise.all([
    apiGet("/api/v1/unblock-requests", { limit: 100 }), apiGet("/api/v1/accident-reports", { limit: 100 })]);
  view.append(
    h("h2", {}, "Sites I asked to be reviewed"),
    dataTable({
      caption: "Your review requests, newest first",
      columns: [
        { label: "Site", cell: (r) => r.target },
        { label: "Asked", cell: (r) => formatTime(r.created_at) },
        { label: "Your reason", cell: (r) => r.reasons.join(" / ") },
        { label: "Outcome", cell: (r) => tag(...(OUTCOME[r.status] || [r.status])) },
        { label: "Note from IT support", cell: (r) => r.note || "–" },
      ],
      rows: requests.items,
      empty: "You have not asked for any site to be reviewed.",
    }),
    h("h2", {}, "Times I told you I reached a site by accident"),
    dataTable({
      caption: "Your accidental-hit reports, newest first",
      columns: [
        { label: "Reported", cell: (r) => formatTime(r.created_at) },
        { label: "Site", cell: (r) => r.url || (r.hit ? r.hit.host : "–") },
        { label: "What you told us", cell: (r) => r.what_happened },
        { label: "Status", cell: (r) => (r.status === "reviewed" ? "Read by the safeguarding team" : "Received") },
      ],
      rows: reports.items,
      empty: "You have not sent any reports.",
    }));
}
