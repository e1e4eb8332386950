// IT support: one unblock request — what was asked, why the site is blocked (the core's own
// explanation), earlier requests for the site — and the decision: approve or deny.

import { apiGet, apiPost } from "../api.js";
import { detailsList, h, link, notice, pageHeading, replaceContent, tag } from "../elements.js";
import { checkboxField, onSubmit, radioGroup, selectField, submitButton, textAreaField } from "../forms.js";
import { formatTime } from "../format.js";
import { dataTable } from "../tables.js";
import { STATUS_TAGS } from "./unblock_queue.js";

export const EXPIRY_CHOICES = [["1", "1 day"], ["7", "1 week"], ["30", "30 days"], ["90", "90 days"], ["", "Never (until removed)"]];

export function expiryFromDays(days) {
  return days ? new Date(Date.now() + Number(days) * 86400 * 1000).toISOString() : undefined;
}

function categoryName(categories, id) {
  const found = categories.find((category) => category.id === id);
  return found ? `${found.title} (${id})` : id || "–";
}

function scopeText(request) {
  return { user: `only ${request.user}`, group: `everyone in the ${request.group} group`, everyone: "everyone" }[request.scope] || "–";
}

/** The heading of the "why" section follows the request's outcome. */
export const WHY_HEADINGS = {
  open: "Why it is blocked",
  approved: "Approved: why it was unblocked",
  expired: "Approved, since expired: why it was unblocked",
  denied: "Declined: why it stays blocked",
};

function whyBlocked(detail, categories) {
  const { decision, hit, request } = detail;
  const heading = WHY_HEADINGS[request && request.status] || WHY_HEADINGS.open;
  const section = h("section", { "aria-labelledby": "why-heading" }, h("h2", { id: "why-heading" }, heading));
  section.append(detailsList([
    ["Decision now", tag(decision.action === "block" ? "Blocked" : "Allowed", decision.action === "block" ? "warning" : "success")],
    ["Category", categoryName(categories, decision.category)],
    ["Rule", decision.rule],
    ["Matched", decision.matched ? `${decision.matched}${decision.source ? ` in ${decision.source}` : ""}${decision.line ? ` line ${decision.line}` : ""}` : null],
    ["Explanation", h("span", { class: "explanation" }, decision.explanation)],
  ]));
  if (hit) {
    section.append(h("h3", {}, "The logged block"), detailsList([
      ["When", formatTime(hit.ts)],
      ["Address", `${hit.host}${hit.path || ""}`],
      ["Category", categoryName(categories, hit.category)],
      ["Rule", hit.rule],
      ["List", hit.source || "–"],
      ["Network site", hit.site],
    ]));
  }
  return section;
}

function decided(request) {
  return h("section", { "aria-labelledby": "decision-heading" }, h("h2", { id: "decision-heading" }, "Decision"),
    detailsList([
      ["Outcome", tag(...(STATUS_TAGS[request.status] || [request.status, "neutral"]))],
      ["Decided by", request.decided_by],
      ["Decided", formatTime(request.decided_at)],
      ["Open for", request.status === "approved" ? scopeText(request) : null],
      ["Until", request.status === "approved" ? (request.expires_at ? formatTime(request.expires_at) : "Until removed") : null],
      ["Note to the requester", request.note || "–"],
    ]));
}

// What approving opens, in the API's own words; when it is more than the entry that blocked
// the request (other listed paths or subdomains), the reviewer must tick a confirmation.
function whatItOpens(approval) {
  if (!approval) return null;
  // Not a live region (it is part of the form, read with it), so not notice().
  return h("div", { class: `notice approval-scope${approval.wider ? " notice--warning" : ""}`, id: "approval-scope" },
    h("h4", { class: "notice__title" }, approval.wider ? "Approving opens more than was blocked" : "What approving opens"),
    h("p", {}, approval.message));
}

function decisionForms(request, locked, approval, reload) {
  const section = h("section", { "aria-labelledby": "decide-heading" }, h("h2", { id: "decide-heading" }, "Decide"));
  const messages = h("div", { class: "messages" });
  section.append(messages);
  if (locked.length) {
    section.append(notice("warning", h("p", {}, `Locked: this site is in ${locked.join(", ")}, which can never be unblocked by anyone. If it is listed in error, report it to the list's owner.`)));
  } else {
    const wider = Boolean(approval && approval.wider);
    const approve = h("form", { class: "form decision-form", "aria-labelledby": "approve-heading", "aria-describedby": "approval-scope", novalidate: true },
      h("h3", { id: "approve-heading" }, "Approve"),
      whatItOpens(approval),
      radioGroup({ legend: "Open the site for", name: "scope", value: "user", options: [
        ["user", `Only ${request.user}`],
        ["group", `Everyone in the ${request.group} group`],
        ["everyone", "Everyone at the centre"]] }),
      selectField({ label: "For how long", name: "expires", value: "30", options: EXPIRY_CHOICES }),
      textAreaField({ label: "Note to the requester (optional)", name: "note", rows: 2, maxlength: 1000 }),
      wider ? checkboxField({ label: `Yes, open all of ${approval.target}, including the ${approval.also_opens_count === 1 ? "listed entry" : `${approval.also_opens_count} listed entries`} above`, name: "confirm_wider",
        hint: "Each of them is blocked by its own list entry today." }) : null,
      submitButton("Approve"));
    onSubmit(approve, messages, async (values) => {
      if (wider && values.confirm_wider !== "true") {
        throw Object.assign(new Error(`Approving opens more than was blocked: ${approval.message} Tick the box to confirm, or deny the request.`), { field: "confirm_wider" });
      }
      await apiPost(`/api/v1/unblock-requests/${request.id}/approve`, {
        scope: values.scope, note: values.note, ...(wider ? { confirm_wider: true } : {}),
        ...(values.expires ? { expires_at: expiryFromDays(values.expires) } : {}) });
      await reload(`Approved. ${request.target} is open for ${scopeText({ ...request, scope: values.scope })}; the proxies apply this within a second.`);
    });
    section.append(approve);
  }
  const deny = h("form", { class: "form decision-form", "aria-labelledby": "deny-heading", novalidate: true },
    h("h3", { id: "deny-heading" }, "Deny"),
    textAreaField({ label: "Note to the requester", name: "note", rows: 2, required: true, maxlength: 1000,
      hint: "Say why, kindly. The requester sees this note." }),
    submitButton("Deny", { class: "button button--warning" }));
  onSubmit(deny, messages, async (values) => {
    if (!values.note) throw Object.assign(new Error("Write a note saying why the request is denied."), { field: "note" });
    await apiPost(`/api/v1/unblock-requests/${request.id}/deny`, { note: values.note });
    await reload(`Denied. ${request.user} will see your note.`);
  });
  section.append(deny);
  return section;
}

export async function render(view, { id, announce }) {
  async function draw(message) {
    const [detail, policy] = await Promise.all([
      apiGet(`/api/v1/unblock-requests/${id}`), apiGet("/api/v1/categories")]);
    const { request } = detail;
    const categories = policy.categories;
    const locked = (detail.decision.categories || [])
      .map((categoryId) => categories.find((category) => category.id === categoryId))
      .filter((category) => category && !category.overridable).map((category) => category.title);
    replaceContent(view, 
      h("p", { class: "back-link" }, link("/unblock-requests", "Back to unblock requests")),
      pageHeading(`Unblock request ${request.id}: ${request.target}`),
      message ? notice("success", h("p", {}, message)) : null,
      detailsList([
        ["Address asked for", h("span", { class: "url" }, request.url)],
        ["Site", request.target],
        ["Requester", `${request.user} (group ${request.group})`],
        ["Asked", formatTime(request.created_at)],
        ["Reason", request.reasons.length > 1 ? h("ul", { class: "list" }, request.reasons.map((r) => h("li", {}, r))) : request.reasons[0]],
        ["Status", tag(...(STATUS_TAGS[request.status] || [request.status, "neutral"]))],
        ["Block reference", request.hit_id ? h("code", {}, request.hit_id) : null],
      ]),
      whyBlocked(detail, categories),
      request.status === "open" ? decisionForms(request, locked, detail.approval, draw) : decided(request),
      h("section", { "aria-labelledby": "earlier-heading" }, h("h2", { id: "earlier-heading" }, "Earlier requests for this site"),
        dataTable({
          caption: `Other requests for ${request.target}`, captionHidden: true,
          columns: [
            { label: "Asked", cell: (r) => link(`/unblock-requests/${r.id}`, formatTime(r.created_at)) },
            { label: "Requester", cell: (r) => r.user },
            { label: "Outcome", cell: (r) => tag(...(STATUS_TAGS[r.status] || [r.status, "neutral"])) },
            { label: "Decided by", cell: (r) => r.decided_by || "–" },
            { label: "Note", cell: (r) => r.note || "–" },
          ],
          rows: detail.earlier_requests, empty: "Nobody has asked for this site before." })));
    if (message) {
      view.querySelector("h1").focus();
      announce(message);
    }
  }
  await draw("");
}
