// Form controls that always have a visible label (and a hint wired with aria-describedby).

import { h, notice, uniqueId } from "./elements.js";
import { britishDate, isoFromBritish } from "./format.js";

const DATE_HINT = "For example, 21/11/2026";

function described(id, hint) {
  return hint ? { hintId: `${id}-hint`, hintNode: h("p", { class: "hint", id: `${id}-hint` }, hint) } : {};
}

/** A labelled <input>. Options: label, name, type, value, hint, required, and any attribute.
    type "date" is a text box written dd/mm/yyyy whatever the browser's language (a native
    date picker follows the browser's locale: mm/dd/yyyy in a US-English browser); its value
    (given and read back by formValues) stays an ISO date. */
export function inputField({ label, name, type = "text", value = "", hint, required, className, ...attributes }) {
  if (type === "date") {
    return inputField({ label, name, value: britishDate(value), hint: hint || DATE_HINT, required, className: `${className || ""} input--date`.trim(),
      inputmode: "numeric", autocomplete: "off", placeholder: "dd/mm/yyyy", pattern: "\\d{1,2}/\\d{1,2}/\\d{4}", "data-date": "dd/mm/yyyy", ...attributes });
  }
  const id = uniqueId(name);
  const { hintId, hintNode } = described(id, hint);
  const input = h("input", {
    id, name, type, value, required, class: `input ${className || ""}`.trim(),
    "aria-describedby": hintId, ...attributes,
  });
  return h("div", { class: "field" }, h("label", { for: id }, label), hintNode, input);
}

export function textAreaField({ label, name, value = "", hint, required, rows = 4, ...attributes }) {
  const id = uniqueId(name);
  const { hintId, hintNode } = described(id, hint);
  const area = h("textarea", { id, name, rows, required, class: "textarea", "aria-describedby": hintId, ...attributes });
  area.value = value;
  return h("div", { class: "field" }, h("label", { for: id }, label), hintNode, area);
}

/** options: [[value, label], ...] */
export function selectField({ label, name, options, value = "", hint, ...attributes }) {
  const id = uniqueId(name);
  const { hintId, hintNode } = described(id, hint);
  const select = h("select", { id, name, class: "select", "aria-describedby": hintId, ...attributes },
    options.map(([optionValue, optionLabel]) =>
      h("option", { value: optionValue, selected: String(optionValue) === String(value) }, optionLabel)));
  return h("div", { class: "field" }, h("label", { for: id }, label), hintNode, select);
}

/** A fieldset of radio buttons: options [[value, label, hint?], ...] */
export function radioGroup({ legend, name, options, value, hint }) {
  const id = uniqueId(name);
  const { hintId, hintNode } = described(id, hint);
  return h("fieldset", { class: "fieldset", "aria-describedby": hintId },
    h("legend", {}, legend), hintNode,
    h("div", { class: "radios" }, options.map(([optionValue, optionLabel, optionHint]) => {
      const optionId = uniqueId(`${name}-${optionValue}`);
      return h("div", { class: "radio" },
        h("input", { type: "radio", id: optionId, name, value: optionValue, checked: optionValue === value,
          "aria-describedby": optionHint ? `${optionId}-hint` : null }),
        h("label", { for: optionId }, optionLabel),
        optionHint ? h("p", { class: "hint", id: `${optionId}-hint` }, optionHint) : null);
    })));
}

export function checkboxField({ label, name, checked = false, hint }) {
  const id = uniqueId(name);
  const { hintId, hintNode } = described(id, hint);
  return h("div", { class: "field checkbox" },
    h("input", { type: "checkbox", id, name, value: "true", checked, "aria-describedby": hintId }),
    h("label", { for: id }, label), hintNode);
}

export function submitButton(text, attributes = {}) {
  return h("button", { type: "submit", class: "button", ...attributes }, text);
}

/** The form's values as a plain object of trimmed strings (checkboxes: "true" or absent).
    Date boxes (dd/mm/yyyy) come back as ISO dates; one that is not a date is an error naming
    the field. */
export function formValues(form) {
  const values = {};
  for (const [name, value] of new FormData(form).entries()) values[name] = String(value).trim();
  for (const input of form.querySelectorAll("input[data-date]")) {
    const text = values[input.name] || "";
    if (!text) continue;
    const iso = isoFromBritish(text);
    if (iso === null) {
      const label = form.querySelector(`label[for="${input.id}"]`);
      const error = new Error(`${label ? label.textContent : input.name}: "${text}" is not a date. Write it as day/month/year, for example 21/11/2026.`);
      error.field = input.name;
      throw error;
    }
    values[input.name] = iso;
  }
  return values;
}

/**
 * Run `action` on submit with the form's values; show errors in `messages` and keep the
 * button from being pressed twice while the request is under way.
 */
export function onSubmit(form, messages, action) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const buttons = form.querySelectorAll("button[type=submit]");
    buttons.forEach((button) => { button.disabled = true; });
    messages.replaceChildren();
    try {
      await action(formValues(form), event.submitter);  // a bad date throws here, shown below
    } catch (error) {
      messages.replaceChildren(errorNotice(error));
      const field = error.field && form.elements.namedItem(error.field);
      if (field && field.focus) field.focus();
      else messages.firstChild.focus();
    } finally {
      buttons.forEach((button) => { button.disabled = false; });
    }
  });
}

export function errorNotice(error) {
  const box = notice("error", h("h2", { class: "notice__title" }, "There is a problem"), h("p", {}, error.message));
  box.tabIndex = -1;
  return box;
}
