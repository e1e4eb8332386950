// "I reached this by accident": a no-blame report, linked to the block page's reference.

import { apiPost } from "../api.js";
import { detailsList, h, link, notice, pageHeading } from "../elements.js";
import { inputField, onSubmit, submitButton, textAreaField } from "../forms.js";

const REFERENCE = /^[0-9]{8}-[0-9A-Za-z]{8}$/;

export async function render(view, { query, announce }) {
  const hitId = REFERENCE.test(query.get("hit_id") || "") ? query.get("hit_id") : null;
  view.append(pageHeading("I reached this by accident"),
    h("p", { class: "lead" }, "Thank you for telling us. Reaching a blocked site by accident happens to everyone, and you are not in trouble."),
    h("p", {}, "Tell us in your own words what you were doing when the block page appeared. It helps us keep the filter right."));
  if (hitId) view.append(detailsList([["Block reference", h("code", {}, hitId)]]));
  const messages = h("div", { class: "messages" });
  const form = h("form", { class: "form", novalidate: true },
    hitId ? null : inputField({ label: "The address of the page (if you know it)", name: "url", type: "text",
      hint: "For example www.example.com. You can leave this empty if you do not know it.", autocomplete: "url" }),
    textAreaField({ label: "What happened?", name: "what_happened", required: true, rows: 5, maxlength: 2000,
      hint: "For example: I clicked a link in a search result for my coursework, or a pop-up opened by itself." }),
    submitButton("Send to the safeguarding team"));
  view.append(messages, form);
  onSubmit(form, messages, async (values) => {
    if (!values.what_happened) {
      throw Object.assign(new Error("Tell us briefly what happened."), { field: "what_happened" });
    }
    if (!hitId && !values.url) {
      throw Object.assign(new Error("Give the address of the page, as the report has no block reference."), { field: "url" });
    }
    const sent = await apiPost("/api/v1/accident-reports", {
      what_happened: values.what_happened, ...(hitId ? { hit_id: hitId } : { url: values.url }) });
    view.replaceChildren(pageHeading("Thank you – your report has been sent"),
      notice("success", h("p", {}, sent.message)),
      h("h2", {}, "What happens next"),
      h("ul", { class: "list" },
        h("li", {}, "The centre's safeguarding team reads every report."),
        h("li", {}, "You do not need to do anything else, and nobody will treat this as something you did wrong."),
        h("li", {}, "If the site should not have been blocked, or should be blocked more carefully, IT support will fix the filter.")),
      h("p", {}, `Your report number is ${sent.id}. `, link("/my-requests", "See your requests and reports")));
    view.querySelector("h1").focus();
    announce("Your report has been sent");
  });
}
