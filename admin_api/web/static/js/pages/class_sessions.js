// Tutors and oversight: open the network for a lesson (a group, a named network or named
// learners, for some minutes, optionally only some sites), see the sessions and end one early.
// Managers, DSLs and admins see every session and may open any room.

import { apiGet, apiPost } from "../api.js";
import { h, link, notice, pageHeading, replaceContent, tag } from "../elements.js";
import { errorNotice, inputField, onSubmit, radioGroup, selectField, submitButton, textAreaField } from "../forms.js";
import { formatTime } from "../format.js";
import { dataTable } from "../tables.js";

const OVERSIGHT = ["manager", "dsl", "admin"];
const AUDIT_READERS = ["manager", "admin"];
const DEFAULT_MINUTES = 50;
const NAME_FIELDS = { group: "group_name", network: "network_name", learners: "learner_names" };
const STATUS = {
  open: ["Open", "success"], scheduled: ["Scheduled", "neutral"],
  ended: ["Ended", "neutral"], expired: ["Expired", "neutral"],
};

function windowsText(room) {
  return room.online_during ? `open at ${room.online_during}` : "no access times of its own (online at any time)";
}

function whatItOpens(session) {
  if (session.target === "learners") return `${session.describes}: ${session.names.join(", ")}`;
  return session.describes.charAt(0).toUpperCase() + session.describes.slice(1);
}

function ends(session) {
  if (session.ended_at !== null && session.ended_at !== undefined && session.ended_at < session.ends_at) {
    return `${formatTime(session.ended_at)} (ended early${session.ended_by ? ` by ${session.ended_by}` : ""})`;
  }
  return formatTime(session.ends_at);
}

/** "a.b, c.d" or one per line, as a list without blanks or repeats. */
function splitList(text) {
  return [...new Set((text || "").split(/[\s,]+/).map((part) => part.trim()).filter(Boolean))];
}

function roomsSection(rooms) {
  const section = h("section", { "aria-labelledby": "rooms-heading" }, h("h2", { id: "rooms-heading" }, "What you can open"));
  if (!rooms.groups.length && !rooms.networks.length) {
    section.append(notice("warning", h("p", {}, "You have no groups or networks to open yet. An administrator can add them for you under ",
      h("code", {}, "class_sessions.tutors"), " in the config.")));
    return section;
  }
  const items = [
    ...rooms.groups.map((group) => h("li", {}, h("strong", {}, `Group ${group.name}`), `: ${windowsText(group)}`)),
    ...rooms.networks.map((network) => h("li", {}, h("strong", {}, `Network ${network.name}`),
      ` (group ${network.group}): ${windowsText(network)}`)),
  ];
  section.append(h("ul", { class: "list" }, items),
    h("p", { class: "hint" }, `A session opens them outside these times for up to ${rooms.max_minutes} minutes. `
      + "It never opens a prohibited category."));
  return section;
}

function endButton(session, onEnded, messages) {
  const cell = h("div", { class: "button-group" });
  const what = whatItOpens(session);
  const end = h("button", { type: "button", class: "button button--secondary button--small",
    "aria-label": `End now: ${what}` }, "End now");
  cell.append(end);
  end.addEventListener("click", () => {
    const confirm = h("button", { type: "button", class: "button button--warning button--small",
      "aria-label": `Confirm: end the session for ${what}` }, "Confirm end");
    const cancel = h("button", { type: "button", class: "button button--secondary button--small",
      "aria-label": `Keep the session for ${what} open` }, "Keep open");
    cell.replaceChildren(confirm, cancel);
    confirm.focus();
    cancel.addEventListener("click", () => { cell.replaceChildren(end); end.focus(); });
    confirm.addEventListener("click", async () => {
      confirm.disabled = true;
      try {
        await apiPost(`/api/v1/class-sessions/${encodeURIComponent(session.id)}/end`);
        await onEnded(`Ended the session for ${what}. The proxies apply this within a second.`);
      } catch (error) {
        messages.replaceChildren(errorNotice(error));
        if (error.status === 409) await onEnded("");
        else confirm.disabled = false;
      }
    });
  });
  return cell;
}

function openForm(rooms, messages, onOpened) {
  const choices = [
    rooms.groups.length ? ["group", "A group"] : null,
    rooms.networks.length ? ["network", "A network"] : null,
    rooms.learners ? ["learners", "Named learners"] : null,
  ].filter(Boolean);
  const maxMinutes = rooms.max_minutes;
  const fields = {
    group: selectField({ label: "Which group", name: NAME_FIELDS.group,
      options: rooms.groups.map((group) => [group.name, group.name]) }),
    network: selectField({ label: "Which network", name: NAME_FIELDS.network,
      options: rooms.networks.map((network) => [network.name, `${network.name} (group ${network.group})`]) }),
    learners: inputField({ label: "Which learners", name: NAME_FIELDS.learners, autocomplete: "off",
      autocapitalize: "none", spellcheck: "false",
      hint: "Their account names, separated by commas, for example a.khan, b.smith" }),
  };
  const form = h("form", { class: "form", "aria-labelledby": "open-heading", novalidate: true },
    h("h2", { id: "open-heading" }, "Open a session"),
    radioGroup({ legend: "What to open", name: "target", value: choices[0][0], options: choices }),
    choices.map(([value]) => fields[value]),
    inputField({ label: "Minutes", name: "minutes", type: "number", inputmode: "numeric",
      value: String(Math.min(DEFAULT_MINUTES, maxMinutes)), min: 1, max: maxMinutes, step: 1,
      hint: `From 1 to ${maxMinutes}.` }),
    textAreaField({ label: "Only these sites (optional)", name: "sites", rows: 3, autocapitalize: "none", spellcheck: "false",
      hint: "One site name per line or separated by commas, such as www.bbc.co.uk. Leave empty to open every site the group may visit." }),
    inputField({ label: "Note (optional)", name: "note", autocomplete: "off", maxlength: 500,
      hint: "For example the lesson or room." }),
    submitButton("Open now"));

  function showChosen() {
    const chosen = form.elements.namedItem("target").value;
    for (const [value, field] of Object.entries(fields)) field.hidden = value !== chosen;
  }
  form.addEventListener("change", (event) => { if (event.target.name === "target") showChosen(); });
  showChosen();

  onSubmit(form, messages, async (values) => {
    const target = values.target;
    const nameField = NAME_FIELDS[target];
    const names = target === "learners" ? splitList(values[nameField]) : [values[nameField]].filter(Boolean);
    if (!names.length) {
      throw Object.assign(new Error(target === "learners" ? "Enter the learners' account names." : `Choose the ${target}.`), { field: nameField });
    }
    const minutes = Number(values.minutes);
    if (!/^[0-9]+$/.test(values.minutes) || minutes < 1 || minutes > maxMinutes) {
      throw Object.assign(new Error(`Minutes must be a whole number from 1 to ${maxMinutes}.`), { field: "minutes" });
    }
    const sites = splitList(values.sites);
    let created;
    try {
      created = await apiPost("/api/v1/class-sessions", {
        target, names, minutes, ...(sites.length ? { sites } : {}), ...(values.note ? { note: values.note } : {}) });
    } catch (error) {
      // a refused room (403) names no field: it is about the group, network or learners chosen
      if (error.field === "names" || error.field === "target" || (error.status === 403 && !error.field)) error.field = nameField;
      throw error;
    }
    const chosenTarget = target;
    form.reset();
    form.elements.namedItem("target").value = chosenTarget;
    showChosen();
    await onOpened(`Opened ${whatItOpens(created.session).replace(/^The /, "the ")} for ${minutes} minutes, until ${formatTime(created.session.ends_at)}. The proxies apply this within a second.`);
  });
  return form;
}

export async function render(view, { user, announce }) {
  const oversight = OVERSIGHT.includes(user.role);
  const messages = h("div", { class: "messages" });
  const listMessages = h("div", { class: "messages" });
  const list = h("section", { "aria-labelledby": "sessions-heading" });
  view.append(pageHeading("Class sessions"),
    h("p", { class: "lead" }, "Open the network for a lesson: a group, a network or named learners can go online outside their usual times, for the minutes you choose. A session ends by itself, or you can end it early."));

  const rooms = await apiGet("/api/v1/class-sessions/rooms");
  view.append(roomsSection(rooms), messages);

  async function drawList(message) {
    const { items } = await apiGet("/api/v1/class-sessions", oversight ? {} : { mine: 1 });
    const done = async (text) => {
      if (text) listMessages.replaceChildren();
      await drawList(text);
      if (text) announce(text);
      list.querySelector("h2").focus();
    };
    replaceContent(list,
      h("h2", { id: "sessions-heading", tabindex: "-1" }, oversight ? "Sessions" : "Your sessions"),
      h("p", { class: "hint" }, "Sessions still open, and those started in the last 7 days, newest first."),
      message ? notice("success", h("p", {}, message)) : null,
      listMessages,
      dataTable({
        caption: `${oversight ? "Class sessions" : "Your class sessions"}: ${items.length}`, captionHidden: true,
        columns: [
          { label: "What it opens", cell: whatItOpens },
          { label: "Sites", cell: (s) => (s.sites.length ? s.sites.join(", ") : "All sites") },
          oversight ? { label: "Opened by", cell: (s) => s.opened_by } : null,
          { label: "Status", cell: (s) => tag(...(STATUS[s.status] || [s.status, "neutral"])) },
          { label: "Minutes left", numeric: true, cell: (s) => (s.status === "open" ? String(s.minutes_left) : "–") },
          { label: "Started", cell: (s) => formatTime(s.starts_at) },
          { label: "Ends", cell: ends },
          { label: "Note", cell: (s) => s.note || "–" },
          { label: "Action", cell: (s) => (s.status === "open" || s.status === "scheduled" ? endButton(s, done, listMessages) : "–") },
        ].filter(Boolean),
        rows: items, empty: "There are no class sessions in the last 7 days." }),
      AUDIT_READERS.includes(user.role) ? h("p", {}, "Every session opened and ended is in the audit log: ",
        link("/audit?action=class_session.open", "sessions opened"), " and ",
        link("/audit?action=class_session.end", "sessions ended"), ".") : null);
  }

  if (rooms.groups.length || rooms.networks.length) {
    view.append(openForm(rooms, messages, async (text) => {
      listMessages.replaceChildren();
      await drawList(text);
      announce(text);
      list.querySelector("h2").focus();  // the new session is listed there, with its "End now"
    }));
  }
  view.append(list);
  await drawList("");
}
