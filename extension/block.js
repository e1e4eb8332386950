// The block page: what was blocked and why, and the two actions the e-safety policy asks for.

import { readBlockPageUrl } from "./lib/block_page_address.js";

const $ = (id) => document.getElementById(id);
const send = (message) => chrome.runtime.sendMessage(message);
const ACCIDENT_DEFAULT = "I reached this page by accident.";
const ACCIDENT_NEXT = "Thank you for telling us. Reaching a blocked site by accident happens, "
  + "and you are not in trouble. Your note is logged with this block, and the centre's "
  + "safeguarding team may look at it. You do not need to do anything else.";
const ACCIDENT_QUEUED = "(The centre's server cannot be reached just now: your note is "
  + "saved in this browser and will be sent when it can be.)";
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
  $("confirmation").focus(); // keyboard and screen-reader users land on the confirmation
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

/** The proxy's block page date: "Tuesday 01 December 2026, 21:05" (en-GB). */
function proxyStyleDate(date) {
  const part = (options) => date.toLocaleString("en-GB", options);
  return `${part({ weekday: "long" })} ${part({ day: "2-digit" })} ${part({ month: "long" })} `
    + `${part({ year: "numeric" })}, ${part({ hour: "2-digit", minute: "2-digit", hour12: false })}`;
}

async function show() {
  const ticket = readBlockPageUrl(location.href);
  const answer = ticket ? await send({ type: "explainBlock", ticket }) : { ok: false,
    message: "This page opens only when the centre's filter blocks a site." };
  if (!answer.ok) {
    blocked = null;
    $("reason").textContent = answer.message;
    $("accident").disabled = true;
    $("review").disabled = true;
    return;
  }
  blocked = answer;
  const when = new Date(blocked.when);
  $("reason").textContent = blocked.reason || "The centre's web filter blocked this page.";
  $("category").textContent = blocked.title || blocked.category || "Blocked site";
  $("category").dataset.category = blocked.category || "";
  $("address").textContent = blocked.url || "(not known)";
  $("hit-id").textContent = blocked.hitId || "(none)";
  $("when").dateTime = when.toISOString();
  $("when").textContent = proxyStyleDate(when);
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
  const answer = await send({ type: "reportAccident", ticket: readBlockPageUrl(location.href),
    whatHappened: $("what-happened").value.trim() || ACCIDENT_DEFAULT });
  $("accident-send").disabled = false;
  if (!answer.ok) return showProblem(answer.message);
  $("accident-panel").hidden = true;
  $("accident").setAttribute("aria-expanded", "false");
  showConfirmation(answer.queued ? `${ACCIDENT_NEXT} ${ACCIDENT_QUEUED}` : ACCIDENT_NEXT);
  $("confirmation").dataset.queued = String(Boolean(answer.queued));
});

$("review-panel").addEventListener("submit", async (event) => {
  event.preventDefault();
  const reason = $("review-reason").value.trim();
  if (!reason) return showProblem("Please say why you need this site, so IT support can decide.");
  $("review-send").disabled = true;
  const answer = await send({ type: "askReview", ticket: readBlockPageUrl(location.href),
    reason });
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
