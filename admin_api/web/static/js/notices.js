// The banner every page shows while no block lists are loaded (only the starter lists).

import { apiGet } from "./api.js";
import { h, link } from "./elements.js";

export async function drawListBanner(container) {
  let status;
  try {
    status = await apiGet("/api/v1/lists/status");
  } catch {
    return;
  }
  if (status.loaded) {
    container.replaceChildren();
    container.hidden = true;
    return;
  }
  const missing = status.categories_without_lists.join(", ") || "none";
  container.replaceChildren(h("div", { class: "notice notice--warning site-banner" },
    h("p", {}, h("strong", {}, "No block lists are loaded: "), "only the built-in starter lists are active."),
    h("p", {}, `Categories without a list: ${missing}.`),
    h("p", {}, "Import lists in ", link("/setup?step=lists", "Set-up"), " or with ",
      h("code", {}, "esafety lists import"), ".")));
  container.hidden = false;
}
