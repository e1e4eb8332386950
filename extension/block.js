// The block page: what was blocked and why, and the two actions the e-safety policy asks for.

import { readBlockPageUrl } from "./lib/block_page_address.js";

const $ = (id) => document.getElementById(id);
const send = (message) => chrome.runtime.sendMessage(message);
const ACCIDENT_DEFAULT = "I reached this page by accident.";
const ACCIDENT_NEXT = "Thank you for telling us. Reaching a blocked site by accident happens, "
  + "and you are not in trouble. Your note is logged with this block, and the centre's "
  + "safeguarding team may look at it. You do not need to do anything else.";
const REVIEW_NEXT = "Your request has been sent to IT support. They will look at the site and "
  + "decide; you can see the outcome by clicking the esafety icon. If it is approved, the page "
  + "will open normally.";

let blocked = null;

function showProblem(message) {
  $("problem").textContent = message;
  $("problem").hidden = false;
}

function showConfirmation(message) {
  $("problem").hidden = true;
  $("confirmation").textContent = message;
  $("confirmation").hidden = false;
  $("confirmation").focus?.();
}

function toggle(button, panel, focus) {
  const open = panel.hidden;
  for (const [b, p] of [[$("accident"), $("accident-panel")], [$("review"), $("review-panel")]]) {
    p.hidden = true;
    b.setAttribute("aria-expanded", "false");
  }
  panel.hidden = !open;
  button.setAttribute("aria-expanded", String(open));
  if (open) focus.focus();
}

async function show() {
  const address = readBlockPageUrl(location.href) ?? { via: "", hitId: "", category: "", url: "" };
  const answer = await send({ type: "explainBlock", via: address.via || "proxy",
    url: address.url, hitId: address.hitId, category: address.category });
  blocked = answer.ok ? answer : { ...address, title: "", reason: "", when: new Date().toISOString() };
  if (blocked.hitId && blocked.hitId !== address.hitId) {
    // keep the reference on reload, so a reload is not logged twice
    const params = new URLSearchParams(location.search);
    params.set("hit", blocked.hitId);
    history.replaceState(null, "", `?${params}${location.hash}`);
  }
  const when = new Date(blocked.when);
  $("reason").textContent = blocked.reason || "The centre's web filter blocked this page.";
  $("category").textContent = blocked.title || blocked.category || "Blocked site";
  $("category").dataset.category = blocked.category || "";
  $("address").textContent = blocked.url || "(not known)";
  $("hit-id").textContent = blocked.hitId || "(none)";
  $("when").dateTime = when.toISOString();
  $("when").textContent = when.toLocaleString("en-GB", { dateStyle: "full", timeStyle: "short" });
  if (blocked.offNetwork) {
    $("reason").textContent += " (Blocked by this browser while away from the centre.)";
  }
  $("review").disabled = !blocked.url;
}

$("accident").addEventListener("click", () => toggle($("accident"), $("accident-panel"), $("what-happened")));
$("review").addEventListener("click", () => toggle($("review"), $("review-panel"), $("review-reason")));

$("accident-panel").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("accident-send").disabled = true;
  const answer = await send({ type: "reportAccident", hitId: blocked?.hitId || undefined,
    url: blocked?.url || undefined,
    whatHappened: $("what-happened").value.trim() || ACCIDENT_DEFAULT });
  $("accident-send").disabled = false;
  if (!answer.ok) return showProblem(answer.message);
  $("accident-panel").hidden = true;
  $("accident").setAttribute("aria-expanded", "false");
  showConfirmation(ACCIDENT_NEXT);
  $("confirmation").dataset.reportId = answer.id;
});

$("review-panel").addEventListener("submit", async (event) => {
  event.preventDefault();
  const reason = $("review-reason").value.trim();
  if (!reason) return showProblem("Please say why you need this site, so IT support can decide.");
  $("review-send").disabled = true;
  const answer = await send({ type: "askReview", url: blocked.url,
    hitId: blocked.hitId || undefined, reason });
  $("review-send").disabled = false;
  if (!answer.ok) return showProblem(answer.message);
  $("review-panel").hidden = true;
  $("review").setAttribute("aria-expanded", "false");
  showConfirmation(answer.merged ? `${REVIEW_NEXT} (You had already asked; your new reason was added.)`
    : REVIEW_NEXT);
  $("confirmation").dataset.requestId = answer.id;
});

if (window.top !== window) {
  // Never inside another site's frame: nobody may trick a click on these buttons.
  document.body.replaceChildren();
} else {
  show();
}
