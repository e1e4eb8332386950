// Ask IT support to review a blocked site, from the block page's link.

import { apiPost } from "../api.js";
import { detailsList, h, link, notice, pageHeading } from "../elements.js";
import { inputField, onSubmit, submitButton, textAreaField } from "../forms.js";

const REFERENCE = /^[0-9]{8}-[0-9A-Za-z]{8}$/;

export async function render(view, { query, announce }) {
  const hitId = REFERENCE.test(query.get("hit_id") || "") ? query.get("hit_id") : null;
  const url = (query.get("url") || "").slice(0, 2000);
  view.append(pageHeading("Ask for a site to be reviewed"),
    h("p", { class: "lead" }, "If you need this site for your course or your work, IT support can look at it again."));
  if (hitId) view.append(detailsList([["Block reference", h("code", {}, hitId)]]));
  const messages = h("div", { class: "messages" });
  const form = h("form", { class: "form", novalidate: true },
    inputField({ label: "Address of the site", name: "url", value: url, required: true, autocomplete: "url",
      hint: "The page that was blocked. Change it if you need a different page on the same site." }),
    textAreaField({ label: "Why do you need it?", name: "reason", required: true, rows: 4, maxlength: 1000,
      hint: "For example: my tutor set this page for a health and social care assignment." }),
    submitButton("Send to IT support"));
  view.append(messages, form);
  onSubmit(form, messages, async (values) => {
    if (!values.url) throw Object.assign(new Error("Enter the address of the site."), { field: "url" });
    if (!values.reason) throw Object.assign(new Error("Tell IT support why you need the site."), { field: "reason" });
    const sent = await apiPost("/api/v1/unblock-requests", {
      url: values.url, reason: values.reason, ...(hitId ? { hit_id: hitId } : {}) });
    view.replaceChildren(pageHeading("Your request has been sent"),
      notice("success", h("p", {}, sent.merged
        ? `You had already asked about ${sent.request.target}; we have added your new reason to that request.`
        : `IT support will review ${sent.request.target}.`)),
      h("h2", {}, "What happens next"),
      h("ul", { class: "list" },
        h("li", {}, "Someone in IT support will check the site and decide, usually within a working day."),
        h("li", {}, "If it is unblocked, it will open for you straight away – just try the link again."),
        h("li", {}, "If it stays blocked, IT support will leave you a note saying why.")),
      h("p", {}, `Your request number is ${sent.id}. `, link("/my-requests", "See the outcome of your requests")));
    view.querySelector("h1").focus();
    announce("Your request has been sent");
  });
}
