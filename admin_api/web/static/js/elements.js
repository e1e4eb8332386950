// Building DOM nodes without innerHTML: text is always text, never markup.

/**
 * h("button", {type: "button", class: "button", on: {click: f}}, "Save")
 * Attributes: `class`, `text`, `on` (event listeners), `dataset`, booleans (set when true),
 * anything else as an attribute. Children: nodes, strings, numbers, arrays; null is skipped.
 */
export function h(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name === "on") {
      for (const [event, listener] of Object.entries(value)) node.addEventListener(event, listener);
    } else if (name === "dataset") Object.assign(node.dataset, value);
    else if (value === true) node.setAttribute(name, "");
    else node.setAttribute(name, String(value));
  }
  append(node, children);
  return node;
}

export function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Replace a node's children (null, false and undefined children are skipped). */
export function replaceContent(node, ...children) {
  node.replaceChildren();
  return append(node, children);
}

let counter = 0;
/** A unique id for label/aria wiring. */
export function uniqueId(prefix) {
  counter += 1;
  return `${prefix}-${counter}`;
}

/** The page's heading, focusable so navigation can move focus to it. */
export function pageHeading(text) {
  return h("h1", { tabindex: "-1", id: "page-heading" }, text);
}

/** A short description list: [[term, value], ...]; values may be nodes. */
export function detailsList(pairs, className = "summary-list") {
  return h("dl", { class: className },
    pairs.filter(([, value]) => value !== null && value !== undefined && value !== "")
      .map(([term, value]) => h("div", { class: "summary-list__row" }, h("dt", {}, term), h("dd", {}, value))));
}

/** A status message in the page (role=status, or role=alert for errors). */
export function notice(kind, ...children) {
  return h("div", { class: `notice notice--${kind}`, role: kind === "error" ? "alert" : "status" }, ...children);
}

export function link(href, text, attributes = {}) {
  return h("a", { href, ...attributes }, text);
}

export function tag(text, kind = "neutral") {
  return h("strong", { class: `tag tag--${kind}` }, text);
}
