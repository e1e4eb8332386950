// Set-up: the first admin (with the one-time link esafety up prints), the centre's name and
// addresses, networks and proxy sign-in, block lists, then the CA and onboarding steps.

import { apiGet, apiPost, apiRequest, apiUpload } from "../api.js";
import { h, link, notice, pageHeading } from "../elements.js";
import { checkboxField, errorNotice, formValues, inputField, onSubmit, radioGroup, selectField, submitButton } from "../forms.js";

const STEPS = [
  ["admin", "Admin account"],
  ["centre", "Centre"],
  ["networks", "Networks"],
  ["lists", "Block lists"],
  ["devices", "Devices"],
];
const DRAFT_KEY = "esafety-setup-centre";
const RESTART_WAIT_MS = 45_000;
const sleep = (ms) => new Promise((resolve) => { window.setTimeout(resolve, ms); });

function stepList(current) {
  return h("nav", { "aria-label": "Set-up steps" }, h("ol", { class: "setup-steps" },
    STEPS.map(([id, label], index) => h("li", { "aria-current": id === current ? "step" : null },
      `${index + 1}. ${label}`))));
}

function stepHeading(id) {
  const index = STEPS.findIndex(([step]) => step === id);
  return h("h2", { tabindex: "-1", class: "setup-step-heading" }, `Step ${index + 1} of ${STEPS.length}: ${STEPS[index][1]}`);
}

function focusStep(view) {
  const heading = view.querySelector(".setup-step-heading");
  if (heading) heading.focus();
}

export async function render(view, context) {
  const { user, query } = context;
  view.classList.add("setup");
  view.append(pageHeading("Set up esafety"));
  const token = query.get("token") || "";
  const status = await apiGet("/api/v1/setup", token ? { token } : {});
  if (!status.admin_exists) {
    if (!status.token_valid) {
      view.append(notice("error", h("p", {}, "This set-up link cannot be used: it is wrong, has expired, or was already used.")),
        h("p", {}, "Restart esafety (", h("code", {}, "esafety up"), ") and use the new link it prints, or make the first admin on the server with ",
          h("code", {}, "esafety users add NAME --role admin"), "."));
      return;
    }
    adminStep(view, context, token);
    return;
  }
  if (!user || user.role !== "admin") {
    view.append(notice("success", h("p", {}, "Set-up is done: an admin account exists.")),
      h("p", {}, link("/sign-in?next=%2Fsetup", "Sign in"), " as an admin to change the centre's settings or load block lists."));
    return;
  }
  const step = query.get("step") || "centre";
  const settings = status.settings;
  if (step === "networks") networksStep(view, context, status);
  else if (step === "lists") listsStep(view, context, settings);
  else if (step === "devices") devicesStep(view, context, settings);
  else centreStep(view, context, settings);
}

function adminStep(view, { navigate, setUser, announce }, token) {
  const messages = h("div", { class: "messages" });
  const form = h("form", { class: "form form--narrow", novalidate: true },
    inputField({ label: "User name", name: "username", autocomplete: "username", required: true,
      autocapitalize: "none", spellcheck: "false", hint: "Letters, digits, and . _ @ -" }),
    inputField({ label: "Your name", name: "display_name", autocomplete: "name" }),
    inputField({ label: "Password", name: "password", type: "password", autocomplete: "new-password", required: true,
      hint: "At least 8 characters. A few words you can remember are best." }),
    inputField({ label: "Password again", name: "password_again", type: "password", autocomplete: "new-password", required: true }),
    submitButton("Create the admin account"));
  view.append(stepList("admin"), stepHeading("admin"),
    h("p", {}, "No admin account exists yet. Make the first one: it can do everything, including adding other accounts."),
    messages, form);
  onSubmit(form, messages, async (values) => {
    if (!values.username) throw Object.assign(new Error("Enter a user name."), { field: "username" });
    if ((values.password || "").length < 8) throw Object.assign(new Error("The password needs at least 8 characters."), { field: "password" });
    if (values.password !== values.password_again) throw Object.assign(new Error("The two passwords are different."), { field: "password_again" });
    await apiPost("/api/v1/setup/admin", { token, username: values.username, password: values.password,
      display_name: values.display_name || undefined });
    const me = (await apiGet("/api/v1/auth/me")).user;
    setUser(me);
    announce(`Admin account made; signed in as ${me.name}`);
    await navigate("/setup?step=centre", { replace: true });
  });
  focusStep(view);
}

function readDraft() {
  try {
    return JSON.parse(window.sessionStorage.getItem(DRAFT_KEY) || "{}");
  } catch {
    return {};
  }
}

function fixedNote(settings, key) {
  return settings.from_config_file.includes(key) ? "Set in the config file, which wins over set-up." : undefined;
}

function centreStep(view, { navigate }, settings) {
  const draft = readDraft();
  const messages = h("div", { class: "messages" });
  const form = h("form", { class: "form", novalidate: true },
    inputField({ label: "Centre name", name: "centre_name", value: draft.centre_name || settings.centre_name, required: true,
      hint: fixedNote(settings, "centre_name") || "As people read it: on the block page, the reports and the certificate." }),
    inputField({ label: "Admin address", name: "admin_public_url", value: draft.admin_public_url || settings.admin_public_url, required: true,
      hint: fixedNote(settings, "admin_public_url") || "The address learners' browsers reach this admin service at, e.g. http://10.0.0.5:8090" }),
    inputField({ label: "Proxy address", name: "proxy_public_address", value: draft.proxy_public_address || settings.proxy_public_address, required: true,
      hint: fixedNote(settings, "proxy_public_address") || `host:port that devices use as their proxy. This server's address: ${settings.detected_address}` }),
    submitButton("Continue"));
  view.append(stepList("centre"), stepHeading("centre"), messages, form);
  onSubmit(form, messages, async (values) => {
    if (!values.centre_name) throw Object.assign(new Error("Enter the centre's name."), { field: "centre_name" });
    if (!/^https?:\/\/[^\s/]+/.test(values.admin_public_url)) {
      throw Object.assign(new Error("The admin address starts with http:// or https://"), { field: "admin_public_url" });
    }
    if (!/^[A-Za-z0-9.-]+:[0-9]{1,5}$/.test(values.proxy_public_address)) {
      throw Object.assign(new Error("The proxy address is host:port, e.g. 10.0.0.5:8080"), { field: "proxy_public_address" });
    }
    window.sessionStorage.setItem(DRAFT_KEY, JSON.stringify(values));
    await navigate("/setup?step=networks");
  });
  focusStep(view);
}

function networkFieldset(settings, network, number, onRemove) {
  const groups = settings.groups.map((group) => [group, group]);
  const box = h("fieldset", { class: "setup-network fieldset" },
    h("legend", {}, `Network ${number}`),
    inputField({ label: "Address range", name: "cidr", value: network.cidr || "", hint: "e.g. 10.0.20.0/24" }),
    inputField({ label: "Network name", name: "name", value: network.name || "", hint: "e.g. Learner Wi-Fi" }),
    selectField({ label: "Group", name: "group", options: groups, value: network.group || "learner",
      hint: "The filtering profile for devices on this network." }),
    inputField({ label: "Site", name: "site", value: network.site || "", hint: "Optional: lower-case letters, digits, - and _" }),
    selectField({ label: "Sign-in on this network", name: "auth", value: network.auth || "",
      options: [["", "As the proxy sign-in setting below"], ["required", "Required"], ["off", "Off (identify by address)"]] }),
    checkboxField({ label: "Managed devices: they trust the esafety certificate", name: "managed", checked: Boolean(network.managed) }),
    h("button", { type: "button", class: "button button--secondary", on: { click: onRemove } }, `Remove network ${number}`));
  return box;
}

function networksStep(view, context, status) {
  const { settings } = status;
  const draft = readDraft();
  if (!draft.centre_name) {
    context.navigate("/setup?step=centre", { replace: true });
    return;
  }
  const list = h("div", { class: "setup-networks" });
  let networks = settings.networks.length ? settings.networks.map((n) => ({ ...n })) : [];
  const readRows = () => [...list.querySelectorAll("fieldset.setup-network")].map((box) => {
    const value = (name) => box.querySelector(`[name=${name}]`);
    return { cidr: value("cidr").value.trim(), name: value("name").value.trim(), group: value("group").value,
      site: value("site").value.trim(), auth: value("auth").value, managed: value("managed").checked };
  });
  const draw = () => {
    list.replaceChildren(...networks.map((network, index) => networkFieldset(settings, network, index + 1, () => {
      networks = readRows();
      networks.splice(index, 1);
      draw();
      addButton.focus();
    })));
  };
  const addButton = h("button", { type: "button", class: "button button--secondary", on: { click: () => {
    networks = readRows();
    networks.push({ cidr: "", group: "learner" });
    draw();
    list.querySelectorAll("fieldset.setup-network input[name=cidr]")[networks.length - 1].focus();
  } } }, "Add a network");
  const messages = h("div", { class: "messages" });
  const form = h("form", { class: "form", novalidate: true },
    h("p", {}, "Each network's devices are filtered with its group's profile. Leave the list empty to filter every device as a guest until they sign in."),
    list, h("p", {}, addButton),
    radioGroup({ legend: "Proxy sign-in", name: "proxy_auth_mode", value: settings.proxy_auth_mode,
      hint: fixedNote(settings, "proxy_auth_mode"),
      options: [["off", "Off", "Devices are identified by the network they are on."],
        ["required", "Required", "People sign in to the proxy (except on networks where sign-in is off)."]] }),
    submitButton("Save and apply"));
  draw();
  view.append(stepList("networks"), stepHeading("networks"), messages, form);
  onSubmit(form, messages, async (values) => {
    const rows = readRows().filter((row) => row.cidr);
    const body = { ...draft, networks: rows.map((row) => ({ ...row, site: row.site || undefined, name: row.name || undefined,
      auth: row.auth || undefined })), proxy_auth_mode: values.proxy_auth_mode };
    await apiRequest("PUT", "/api/v1/setup/settings", { body });
    window.sessionStorage.removeItem(DRAFT_KEY);
    const waiting = notice("info", h("p", {}, "Applying the settings: the services are restarting…"));
    messages.replaceChildren(waiting);
    const back = await waitForRestart(status.service);
    if (!back) {
      messages.replaceChildren(notice("warning", h("p", {},
        "The settings are saved, but the services did not restart by themselves. Restart esafety to use them.")));
      return;
    }
    context.announce("Settings applied");
    await context.navigate("/setup?step=lists");
  });
  focusStep(view);
}

async function waitForRestart(previousService) {
  const deadline = Date.now() + RESTART_WAIT_MS;
  while (Date.now() < deadline) {
    await sleep(500);
    try {
      const status = await apiGet("/api/v1/setup");
      const ready = await fetch("/readyz", { credentials: "same-origin" });
      if (status.service !== previousService && ready.ok) return true;
    } catch {
      // the admin service is restarting
    }
  }
  return false;
}

function progressView() {
  const label = h("p", { id: "list-progress-label" }, "");
  const bar = h("progress", { max: "100", "aria-labelledby": "list-progress-label" });
  const box = h("div", { class: "list-progress", role: "status", "aria-live": "polite" }, label, bar);
  return { box, label, bar };
}

function describe(job) {
  const mb = (bytes) => `${(bytes / 1_048_576).toFixed(1)} MB`;
  if (job.phase === "downloading") {
    return job.total_bytes ? `Downloading ${job.source}: ${mb(job.received_bytes)} of ${mb(job.total_bytes)}`
      : `Downloading ${job.source}: ${mb(job.received_bytes)}`;
  }
  if (job.phase === "importing") return `Importing ${job.source}: reading and checking every list…`;
  if (job.phase === "done") return `Done. ${job.message}`;
  if (job.phase === "failed") return job.message;
  return "Starting…";
}

async function followJob(progress, messages, onDone) {
  for (;;) {
    const { job } = await apiGet("/api/v1/setup/lists/job");
    if (!job) return;
    progress.label.textContent = describe(job);
    if (job.phase === "downloading" && job.total_bytes) {
      progress.bar.value = Math.round((100 * job.received_bytes) / job.total_bytes);
    } else if (job.phase === "done") progress.bar.value = 100;
    else if (job.phase === "importing") progress.bar.removeAttribute("value");
    if (job.phase === "failed") {
      messages.replaceChildren(errorNotice(new Error(job.message)));
      return;
    }
    if (job.phase === "done") {
      onDone();
      return;
    }
    await sleep(400);
  }
}

function listsStep(view, _context, settings) {
  const messages = h("div", { class: "messages" });
  const progress = progressView();
  const next = h("p", { hidden: true }, link("/setup?step=devices", "Continue to devices"));
  const onDone = () => {
    intro.replaceWith(notice("success", h("p", {}, "Block lists are loaded. You can load newer ones here at any time.")));
    next.hidden = false;
    next.querySelector("a").focus();
    const banner = document.getElementById("site-notices");
    import("../notices.js").then(({ drawListBanner }) => drawListBanner(banner));
  };
  const intro = settings.lists.loaded
    ? notice("success", h("p", {}, "Block lists are loaded. You can load newer ones here at any time."))
    : h("p", {}, "No block lists are loaded yet: only the built-in starter lists are active. Categories without a list: ",
      settings.lists.categories_without_lists.join(", ") || "none", ".");
  view.append(stepList("lists"), stepHeading("lists"), intro, messages);
  for (const source of settings.list_sources) {
    const form = h("form", { class: "form", novalidate: true },
      h("p", {}, `Download the configured list source ${source.name} (${source.url}).`),
      submitButton(`Download ${source.name}`));
    onSubmit(form, messages, async () => {
      await apiPost("/api/v1/setup/lists/download", { source: source.name });
      await followJob(progress, messages, onDone);
    });
    view.append(form);
  }
  const upload = h("form", { class: "form", novalidate: true },
    inputField({ label: "Block list tarball (.tar.gz)", name: "file", type: "file", accept: ".tar.gz,.tgz,application/gzip",
      hint: "A squidGuard list tree, such as the UT1 lists' blacklists.tar.gz." }),
    submitButton("Upload and import"));
  onSubmit(upload, messages, async () => {
    const input = upload.querySelector("input[type=file]");
    const file = input.files && input.files[0];
    if (!file) throw Object.assign(new Error("Choose a .tar.gz file first."), { field: "file" });
    progress.label.textContent = `Uploading ${file.name}…`;
    progress.bar.removeAttribute("value");
    await apiUpload("/api/v1/setup/lists/upload", file, "application/gzip");
    await followJob(progress, messages, onDone);
  });
  view.append(upload, progress.box, next,
    h("p", {}, "Or on the server: ", h("code", {}, "esafety lists import blacklists.tar.gz"), ". ",
      link("/setup?step=devices", "Skip this step")));
  focusStep(view);
}

function devicesStep(view, _context, settings) {
  view.append(stepList("devices"), stepHeading("devices"),
    notice("success", h("p", {}, "Set-up is done. esafety is filtering.")),
    h("p", {}, "Devices use the proxy at ", h("code", {}, settings.proxy_public_address),
      ". To show a block page for HTTPS sites, they need to trust this centre's certificate."),
    h("p", {}, link("/onboarding", "Onboarding: the certificate and how to set up devices")),
    h("p", {}, link("/dashboard", "Go to the dashboard")));
  focusStep(view);
}
