// IT support: local allow and block rules — list, add, remove — and the categories that are
// locked (nobody may allow them).

import { apiDelete, apiGet, apiPost } from "../api.js";
import { h, notice, pageHeading, replaceContent, tag } from "../elements.js";
import { errorNotice, inputField, onSubmit, selectField, submitButton, textAreaField } from "../forms.js";
import { formatTime } from "../format.js";
import { dataTable } from "../tables.js";
import { EXPIRY_CHOICES, expiryFromDays } from "./unblock_detail.js";

function appliesTo(override) {
  if (override.scope === "everyone") return "Everyone";
  return `${override.scope === "user" ? "User" : "Group"} ${override.subject}`;
}

function removeButton(override, onRemoved, messages) {
  const cell = h("div", { class: "button-group" });
  const remove = h("button", { type: "button", class: "button button--secondary button--small",
    "aria-label": `Remove override for ${override.target} (${appliesTo(override)})` }, "Remove");
  cell.append(remove);
  remove.addEventListener("click", () => {
    const confirm = h("button", { type: "button", class: "button button--warning button--small",
      "aria-label": `Confirm: remove override for ${override.target}` }, "Confirm removal");
    const cancel = h("button", { type: "button", class: "button button--secondary button--small",
      "aria-label": `Keep override for ${override.target}` }, "Keep");
    cell.replaceChildren(confirm, cancel);
    confirm.focus();
    cancel.addEventListener("click", () => { cell.replaceChildren(remove); remove.focus(); });
    confirm.addEventListener("click", async () => {
      try {
        await apiDelete(`/api/v1/overrides/${encodeURIComponent(override.id)}`);
        await onRemoved(`Removed the override for ${override.target}. The proxies apply this within a second.`);
      } catch (error) {
        messages.replaceChildren(errorNotice(error));
      }
    });
  });
  return cell;
}

export async function render(view, { announce }) {
  const messages = h("div", { class: "messages" });
  const list = h("section", { "aria-labelledby": "current-heading" });
  const locked = h("section", { "aria-labelledby": "locked-heading" });
  view.append(pageHeading("Overrides"),
    h("p", {}, "Overrides open a blocked site, or block a site the lists allow, for one user, one group or everyone. They apply within a second on every proxy."),
    messages, list);

  async function drawList(message) {
    const { items } = await apiGet("/api/v1/overrides");
    replaceContent(list, h("h2", { id: "current-heading" }, "Current overrides"),
      message ? notice("success", h("p", {}, message)) : null,
      dataTable({
        caption: `Overrides: ${items.length}`, captionHidden: true,
        columns: [
          { label: "Site", cell: (o) => o.target },
          { label: "Action", cell: (o) => tag(o.action === "allow" ? "Allow" : "Block", o.action === "allow" ? "success" : "warning") },
          { label: "Applies to", cell: (o) => appliesTo(o) },
          { label: "Expires", cell: (o) => (o.expires_at ? `${formatTime(o.expires_at)}${o.expired ? " (expired)" : ""}` : "Never") },
          { label: "Added by", cell: (o) => `${o.created_by}, ${formatTime(o.created_at)}` },
          { label: "Note", cell: (o) => o.note || (o.request_id ? `Unblock request ${o.request_id}` : "–") },
          { label: "Remove", cell: (o) => removeButton(o, async (text) => { await drawList(text); announce(text); list.querySelector("h2").focus(); }, messages) },
        ],
        rows: items, empty: "There are no overrides." }));
  }

  const form = h("form", { class: "form", "aria-labelledby": "add-heading", novalidate: true },
    h("h2", { id: "add-heading" }, "Add an override"),
    inputField({ label: "Site or address", name: "target", required: true, autocomplete: "off",
      hint: "A host such as quiz.example.com (includes its subdomains), or a host and path." }),
    selectField({ label: "Action", name: "action", value: "allow", options: [["allow", "Allow (open the site)"], ["block", "Block"]] }),
    selectField({ label: "Applies to", name: "scope", value: "everyone", options: [["everyone", "Everyone"], ["group", "One group"], ["user", "One user"]] }),
    inputField({ label: "Group or user name", name: "subject", autocomplete: "off", hint: "Needed when it applies to one group or one user." }),
    selectField({ label: "For how long", name: "expires", value: "", options: EXPIRY_CHOICES }),
    textAreaField({ label: "Note (why)", name: "note", rows: 2, maxlength: 1000 }),
    submitButton("Add override"));
  view.append(form, locked);
  onSubmit(form, messages, async (values) => {
    const created = await apiPost("/api/v1/overrides", {
      target: values.target, action: values.action, scope: values.scope, note: values.note,
      ...(values.scope === "everyone" ? {} : { subject: values.subject }),
      ...(values.expires ? { expires_at: expiryFromDays(values.expires) } : {}) });
    form.reset();
    const text = `Added: ${created.override.action} ${created.override.target} for ${appliesTo(created.override).toLowerCase()}.`;
    await drawList(text);
    announce(text);
  });

  await drawList("");
  const { categories } = await apiGet("/api/v1/categories");
  const lockedCategories = categories.filter((category) => !category.overridable);
  locked.append(h("h2", { id: "locked-heading" }, "Locked categories"),
    h("p", {}, "Sites in these categories can never be allowed by an override, by anyone. If a site is listed in error, report it to the list's owner."),
    h("ul", { class: "locked-list" }, lockedCategories.length
      ? lockedCategories.map((category) => h("li", {}, tag("Locked", "warning"), ` ${category.title} `, h("span", { class: "muted" }, `(${category.id})`)))
      : h("li", {}, "No category is locked.")));
}
