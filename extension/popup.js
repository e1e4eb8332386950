// The popup: sign in, who is signed in, the network status and the learner's own requests.

const $ = (id) => document.getElementById(id);
const send = (message) => chrome.runtime.sendMessage(message);

const OUTCOMES = { open: "waiting for IT support", approved: "approved", denied: "not approved",
  expired: "expired" };

function describeNetwork(status) {
  if (status.network === "centre") {
    const who = status.proxy?.user ? ` (the proxy knows you as ${status.proxy.user})` : "";
    return `On the centre network${who}.`;
  }
  if (status.network === "off") {
    if (!status.offNetworkFiltering) return "Not on the centre network.";
    return status.user
      ? "Not on the centre network: this browser filters for you, as the centre's filter would."
      : "Not on the centre network: this browser blocks what the centre's filter blocks for "
        + "everyone. Sign in to use your own filtering group.";
  }
  return "Checking the network…";
}

async function showRequests() {
  const list = $("requests");
  list.replaceChildren();
  const answer = await send({ type: "myRequests" });
  if (!answer.ok) {
    const item = document.createElement("li");
    item.textContent = answer.message;
    list.append(item);
    return;
  }
  $("requests-empty").hidden = answer.items.length > 0;
  for (const request of answer.items) {
    const item = document.createElement("li");
    item.dataset.requestId = request.id;
    item.dataset.status = request.status;
    const when = request.created_at ? new Date(request.created_at * 1000).toLocaleString("en-GB",
      { dateStyle: "long", timeStyle: "short" }) : "";
    item.textContent = `${request.url}: ${OUTCOMES[request.status] ?? request.status}`
      + (request.note ? ` (${request.note})` : "") + (when ? `, asked ${when}` : "");
    list.append(item);
  }
}

async function refresh() {
  const status = await send({ type: "status" });
  $("setup-problem").hidden = status.configured;
  $("network").textContent = describeNetwork(status);
  $("network").dataset.network = status.network;
  const signedIn = Boolean(status.user);
  $("sign-in").hidden = signedIn || !status.configured;
  $("signed-in").hidden = !signedIn;
  if (signedIn) {
    $("user-name").textContent = status.user.display_name || status.user.name;
    $("user-group").textContent = `Filtering group: ${status.user.group}`;
    await showRequests();
  } else {
    // nobody signed in: nothing of the last user stays on the page
    $("user-name").textContent = "";
    $("user-group").textContent = "";
    $("requests").replaceChildren();
    if (status.configured) $("username").focus();
  }
}

$("sign-in").addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = $("sign-in-button");
  button.disabled = true;
  $("sign-in-problem").hidden = true;
  const answer = await send({ type: "signIn", username: $("username").value.trim(),
    password: $("password").value });
  $("password").value = "";
  button.disabled = false;
  if (!answer.ok) {
    $("sign-in-problem").textContent = answer.message;
    $("sign-in-problem").hidden = false;
    return;
  }
  const next = new URLSearchParams(location.search).get("next") ?? "";
  if (/^https?:\/\//i.test(next)) {
    location.href = next; // back to the page that asked for a sign-in
    return;
  }
  await refresh();
});

$("sign-out").addEventListener("click", async () => {
  await send({ type: "signOut" });
  await refresh();
});

refresh();
