// Captioned data tables with column headers; the table is also each chart's text alternative.

import { h } from "./elements.js";

/**
 * columns: [{label, cell: row => node|string, numeric?}]; the first column is a row header.
 * empty: the text shown in one row when there are no rows.
 */
export function dataTable({ caption, columns, rows, empty = "Nothing to show.", id, captionHidden = false }) {
  const head = h("thead", {}, h("tr", {}, columns.map((column) =>
    h("th", { scope: "col", class: column.numeric ? "numeric" : null }, column.label))));
  const body = h("tbody", {}, rows.length ? rows.map((row) => h("tr", {}, columns.map((column, index) => {
    const value = column.cell(row);
    const attributes = { class: column.numeric ? "numeric" : null };
    return index === 0 ? h("th", { scope: "row", ...attributes }, value) : h("td", attributes, value);
  }))) : h("tr", {}, h("td", { colspan: columns.length, class: "empty" }, empty)));
  return h("div", { class: "table-wrapper" },
    h("table", { class: "table", id },
      h("caption", { class: captionHidden ? "visually-hidden" : null }, caption), head, body));
}
