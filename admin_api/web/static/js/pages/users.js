// Administrators: user accounts and roles — list, add, disable (and enable again).

import { apiGetAll, apiPost } from "../api.js";
import { h, notice, pageHeading, replaceContent, tag } from "../elements.js";
import { errorNotice, inputField, onSubmit, selectField, submitButton } from "../forms.js";
import { ROLE_LABELS, formatTime, roleLabel } from "../format.js";
import { dataTable } from "../tables.js";

export async function render(view, { user: me, announce }) {
  const messages = h("div", { class: "messages" });
  const list = h("section", { "aria-labelledby": "users-heading" });
  view.append(pageHeading("Users and roles"), messages, list);

  async function drawList(message) {
    const users = await apiGetAll("/api/v1/users");
    replaceContent(list, h("h2", { id: "users-heading" }, "Users"),
      message ? notice("success", message) : null,
      dataTable({
        caption: `User accounts: ${users.length}`, captionHidden: true,
        columns: [
          { label: "User name", cell: (u) => u.name },
          { label: "Name", cell: (u) => u.display_name || "–" },
          { label: "Role", cell: (u) => roleLabel(u.role) },
          { label: "Group", cell: (u) => u.group },
          { label: "Created", cell: (u) => formatTime(u.created_at) },
          { label: "Status", cell: (u) => (u.disabled ? tag("Disabled", "warning") : tag("Active", "success")) },
          // A leaver the directory sync disabled comes back only through the directory.
          { label: "Action", cell: (u) => (u.name === me.name ? "(you)" : leftTheDirectory(u) ? "Left the directory's groups" : h("button", {
            type: "button", class: "button button--secondary button--small",
            "aria-label": `${u.disabled ? "Enable" : "Disable"} ${u.name}`,
            on: { click: async () => {
              try {
                await apiPost(`/api/v1/users/${encodeURIComponent(u.name)}/${u.disabled ? "enable" : "disable"}`);
                const text = u.disabled ? `${u.name} can sign in again.` : `${u.name} is disabled and signed out everywhere.`;
                await drawList(h("p", {}, text));
                announce(text);
              } catch (error) {
                messages.replaceChildren(errorNotice(error));
              }
            } } }, u.disabled ? "Enable" : "Disable")) },
        ],
        rows: users, empty: "There are no users." }));
  }

  function leftTheDirectory(u) {
    return u.disabled && u.disabled_by === "directory";
  }

  const form = h("form", { class: "form", "aria-labelledby": "add-user-heading", novalidate: true },
    h("h2", { id: "add-user-heading" }, "Add a user"),
    inputField({ label: "User name", name: "name", required: true, autocomplete: "off", autocapitalize: "none", spellcheck: "false",
      hint: "Letters, digits and . _ @ -, as they sign in to the centre's network." }),
    inputField({ label: "Full name (optional)", name: "display_name", autocomplete: "off" }),
    selectField({ label: "Role", name: "role", value: "learner", options: Object.entries(ROLE_LABELS) }),
    inputField({ label: "Filtering group (optional)", name: "group", autocomplete: "off",
      hint: "Leave empty for the role's usual group: learner for learners, staff for everyone else." }),
    inputField({ label: "Password (optional)", name: "password", type: "password", autocomplete: "new-password",
      hint: "At least 8 characters. Leave empty to generate one, shown once." }),
    submitButton("Add user"));
  view.append(form);
  onSubmit(form, messages, async (values) => {
    if (!values.name) throw Object.assign(new Error("Enter a user name."), { field: "name" });
    const body = { name: values.name, role: values.role };
    for (const optional of ["display_name", "group", "password"]) if (values[optional]) body[optional] = values[optional];
    const created = await apiPost("/api/v1/users", body);
    form.reset();
    const text = `Added ${created.user.name} as ${roleLabel(created.user.role)}.`;
    await drawList(h("div", {}, h("p", {}, text), created.password
      ? h("p", {}, "Their password (shown only this once): ", h("code", { class: "secret" }, created.password)) : null));
    announce(text);
    list.querySelector("h2").focus();
  });
  await drawList(null);
}
