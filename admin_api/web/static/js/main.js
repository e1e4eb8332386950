// The UI's entry point: who is signed in, the navigation for their role, and drawing the
// page for the current address (links inside the UI change the page without a reload).

import { apiGet, apiPost, hasSession } from "./api.js";
import { h, link, notice, pageHeading } from "./elements.js";
import { errorNotice } from "./forms.js";
import { roleLabel } from "./format.js";
import { drawListBanner } from "./notices.js";
import { findPage, homeFor, mayUse, navigationFor } from "./pages.js";

const main = document.getElementById("main");
const announcer = document.getElementById("announcer");
let user = null;
let renders = 0;

async function signedInUser() {
  if (!hasSession()) return null;
  try {
    return (await apiGet("/api/v1/auth/me")).user;
  } catch (error) {
    if (error.status === 401) return null;
    throw error;
  }
}

function announce(message) {
  announcer.textContent = "";
  window.setTimeout(() => { announcer.textContent = message; }, 50);
}

function drawHeader() {
  const nav = document.getElementById("site-nav");
  const list = document.getElementById("site-nav-list");
  const pages = navigationFor(user);
  list.replaceChildren(...pages.map((page) => h("li", {}, link(page.path, page.nav))));
  nav.hidden = pages.length === 0;
  const signingIn = window.location.pathname === "/sign-in";
  document.getElementById("signed-in").hidden = user === null || signingIn;
  document.getElementById("signed-in-as").textContent =
    user ? `Signed in as ${user.display_name || user.name} (${roleLabel(user.role)})` : "";
}

function markCurrentPage(pathname) {
  for (const anchor of document.querySelectorAll("#site-nav-list a")) {
    const current = pathname === anchor.pathname || pathname.startsWith(`${anchor.pathname}/`);
    if (current) anchor.setAttribute("aria-current", "page");
    else anchor.removeAttribute("aria-current");
  }
}

function notAllowed(view, page) {
  document.title = "Not allowed – esafety";
  view.append(pageHeading("Not allowed"),
    notice("warning", h("p", {}, `Your role (${roleLabel(user.role)}) cannot use the “${page.title}” page.`)),
    h("p", {}, "If you need it for your work, ask an administrator to change your role."),
    h("p", {}, link(homeFor(user.role), "Go to your start page")));
}

function notFound(view) {
  document.title = "Page not found – esafety";
  view.append(pageHeading("Page not found"),
    h("p", {}, "There is no page at this address. Check it, or use the links above."),
    h("p", {}, link("/", "Go to your start page")));
}

export function navigate(path, { replace = false } = {}) {
  if (replace) window.history.replaceState(null, "", path);
  else window.history.pushState(null, "", path);
  return render(true);
}

function setUser(signedIn) {
  user = signedIn;
  drawHeader();
}

async function render(moveFocus) {
  const ticket = ++renders;
  const url = new URL(window.location.href);
  drawHeader();  // "Sign out" is never offered on the sign-in page
  if (url.pathname === "/") {
    return navigate(user ? homeFor(user.role) : "/sign-in", { replace: true });
  }
  const view = h("div", { class: "view" });
  main.replaceChildren(view);
  main.setAttribute("aria-busy", "true");
  const found = findPage(url.pathname);
  try {
    if (!found) notFound(view);
    else if (found.page.roles !== null && user === null) {
      return navigate(`/sign-in?next=${encodeURIComponent(url.pathname + url.search)}`, { replace: true });
    } else if (!mayUse(found.page, user)) notAllowed(view, found.page);
    else {
      document.title = `${found.page.title} – esafety`;
      const module = await found.page.load();
      if (ticket !== renders) return undefined;
      await module.render(view, {
        user, id: found.id, query: url.searchParams, navigate, announce, setUser,
      });
    }
  } catch (error) {
    if (ticket !== renders) return undefined;
    if (error.status === 401) {
      setUser(null);
      return navigate(`/sign-in?next=${encodeURIComponent(url.pathname + url.search)}`, { replace: true });
    }
    view.append(errorNotice(error));
  }
  if (ticket !== renders) return undefined;
  drawListBanner(document.getElementById("site-notices"));
  main.setAttribute("aria-busy", "false");
  markCurrentPage(url.pathname);
  if (moveFocus) {
    const heading = view.querySelector("h1");
    (heading || main).focus();
    announce(document.title.replace(" – esafety", ""));
  }
  return undefined;
}

function isAppLink(anchor) {
  if (!anchor || anchor.hasAttribute("download") || anchor.target || anchor.origin !== window.location.origin) return false;
  return anchor.pathname === "/" || findPage(anchor.pathname) !== null;
}

document.addEventListener("click", (event) => {
  if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const anchor = event.target.closest("a[href]");
  if (!isAppLink(anchor)) return;
  event.preventDefault();
  navigate(anchor.pathname + anchor.search);
});

window.addEventListener("popstate", () => render(true));

document.getElementById("sign-out").addEventListener("click", async () => {
  try {
    await apiPost("/api/v1/auth/logout");
  } catch (error) {
    if (error.status !== 401) {
      main.prepend(errorNotice(error));
      return;
    }
  }
  setUser(null);
  await navigate("/sign-in?signed_out=1");
});

async function start() {
  try {
    setUser(await signedInUser());
  } catch (error) {
    main.replaceChildren(errorNotice(error));
    return;
  }
  await render(false);
}

start();
