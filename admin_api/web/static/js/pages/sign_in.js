// Sign in with the centre user name and password, or through the centre's single sign-on
// provider when one is configured; then go where the person was heading.

import { apiGet, apiPost } from "../api.js";
import { h, link, notice, pageHeading } from "../elements.js";
import { inputField, onSubmit, submitButton } from "../forms.js";
import { homeFor } from "../pages.js";

/** Only paths inside this UI are followed after signing in. */
function safeNext(query) {
  const next = query.get("next") || "";
  return next.startsWith("/") && !next.startsWith("//") && !next.startsWith("/api/") ? next : null;
}

/** The single sign-on provider, or null when there is none (or it cannot be asked). */
async function singleSignOn() {
  try {
    const found = await apiGet("/api/v1/auth/single-sign-on");
    return found.enabled ? found : null;
  } catch {
    return null;
  }
}

export async function render(view, { user, query, navigate, setUser, announce }) {
  view.append(pageHeading("Sign in"));
  const sso = user ? null : await singleSignOn();
  if (query.get("signed_out")) {
    view.append(notice("success", h("p", {}, "You have signed out.",
      sso && sso.end_session ? h("span", {}, " ", link(sso.end_session, `Sign out of ${sso.provider} too`)) : "")));
  }
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
  view.append(messages);
  if (sso) {
    const start = `${sso.start}?${new URLSearchParams({ next: next || "/" })}`;
    view.append(h("p", {}, link(start, `Sign in with ${sso.provider}`, { class: "button", id: "single-sign-on" })),
      h("p", {}, "Or sign in with an esafety user name and password:"));
  }
  view.append(form);
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
