// IT support: test a URL — the same decision as `esafety check`, overrides included.

import { apiGet } from "../api.js";
import { detailsList, h, pageHeading, tag } from "../elements.js";
import { inputField, onSubmit, submitButton } from "../forms.js";

export async function render(view, { query, announce }) {
  view.append(pageHeading("Test a URL"),
    h("p", {}, "See what the filter would do with an address, and why. Give a user or a group to see their decision (with their overrides)."));
  const messages = h("div", { class: "messages" });
  const result = h("section", { class: "check-result", "aria-live": "polite" });
  const form = h("form", { class: "form", role: "search", "aria-label": "Test a URL", novalidate: true },
    inputField({ label: "Address or site", name: "url", value: query.get("url") || "", required: true, autocomplete: "off",
      hint: "For example https://www.example.com/page or example.com" }),
    inputField({ label: "User (optional)", name: "user", autocomplete: "off" }),
    inputField({ label: "Group (optional)", name: "group", autocomplete: "off", hint: "For example learner, staff or guest." }),
    submitButton("Test"));
  view.append(messages, form, result);
  onSubmit(form, messages, async (values) => {
    if (!values.url) throw Object.assign(new Error("Enter an address to test."), { field: "url" });
    const decision = await apiGet("/api/v1/check", { url: values.url, user: values.user, group: values.group });
    const blocked = decision.action === "block";
    result.replaceChildren(h("h2", {}, "Result"),
      detailsList([
        ["Decision", tag(blocked ? "Blocked" : "Allowed", blocked ? "warning" : "success")],
        ["Host", decision.host],
        ["Category", decision.category_title ? `${decision.category_title} (${decision.category})` : decision.category || "–"],
        ["Rule", decision.rule],
        ["All categories", decision.categories.length ? decision.categories.join(", ") : "–"],
        ["Explanation", h("span", { class: "explanation" }, decision.explanation)],
      ]));
    announce(`${blocked ? "Blocked" : "Allowed"}: ${decision.explanation}`);
  });
}
