// Sign in with the centre user name and password; then go where the person was heading.

import { apiGet, apiPost } from "../api.js";
import { h, link, notice, pageHeading } from "../elements.js";
import { inputField, onSubmit, submitButton } from "../forms.js";
import { homeFor } from "../pages.js";

/** Only paths inside this UI are followed after signing in. */
function safeNext(query) {
  const next = query.get("next") || "";
  return next.startsWith("/") && !next.startsWith("//") && !next.startsWith("/api/") ? next : null;
}

export async function render(view, { user, query, navigate, setUser, announce }) {
  view.append(pageHeading("Sign in"));
  if (query.get("signed_out")) view.append(notice("success", h("p", {}, "You have signed out.")));
  if (user) {
    view.append(h("p", {}, `You are signed in as ${user.name}. `, link(homeFor(user.role), "Go to your start page")));
    return;
  }
  const next = safeNext(query);
  if (next) {
    view.append(h("p", {}, "Sign in with your centre user name and password to carry on."));
  }
  const messages = h("div", { class: "messages" });
  const form = h("form", { class: "form form--narrow", novalidate: true },
    inputField({ label: "User name", name: "username", autocomplete: "username", required: true,
      autocapitalize: "none", spellcheck: "false" }),
    inputField({ label: "Password", name: "password", type: "password", autocomplete: "current-password", required: true }),
    submitButton("Sign in"));
  view.append(messages, form);
  onSubmit(form, messages, async (values) => {
    if (!values.username || !values.password) {
      throw Object.assign(new Error("Enter your user name and password."), { field: values.username ? "password" : "username" });
    }
    await apiPost("/api/v1/auth/login", { username: values.username, password: values.password });
    const me = (await apiGet("/api/v1/auth/me")).user;
    setUser(me);
    announce(`Signed in as ${me.name}`);
    await navigate(next || homeFor(me.role), { replace: true });
  });
}
