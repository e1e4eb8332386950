// Charts drawn with Chart.js (vendored by `make ui-vendor`), each with the same figures in a
// table next to it, so nothing is only in the picture.

import { h } from "./elements.js";
import { dataTable } from "./tables.js";

// Distinguishable in greyscale print and for common colour-vision deficiencies
// (the same palette as the printable reports, svg_charts.py).
export const PALETTE = ["#1b4f72", "#d35400", "#117a65", "#7d3c98", "#b7950b", "#922b21", "#5d6d7e", "#2e86c1"];

let loading = null;

/** Chart.js, loaded once on first use; null when it could not be loaded (tables still show). */
export function chartLibrary() {
  if (window.Chart) return Promise.resolve(window.Chart);
  if (!loading) {
    loading = new Promise((resolve) => {
      const script = h("script", { src: "/static/vendor/chart.umd.min.js" });
      script.addEventListener("load", () => resolve(window.Chart || null));
      script.addEventListener("error", () => resolve(null));
      document.head.append(script);
    });
  }
  return loading;
}

/**
 * Append to `container` a <figure> with a canvas chart and its figures as a captioned table.
 * spec: {id, title, description, labels, datasets: [{label, data}], stacked, horizontal,
 *        table: {columns, rows} (optional: default one row per label)}
 */
export async function chartFigure(container, spec) {
  const canvas = h("canvas", { role: "img", "aria-label": `${spec.title}. ${spec.description}` });
  const holder = h("div", { class: `chart ${spec.horizontal ? "chart--horizontal" : ""}` }, canvas);
  const table = spec.table || {
    columns: [{ label: spec.labelHeading || "Label", cell: (row) => row.label },
      ...spec.datasets.map((set, index) => ({ label: set.label, numeric: true, cell: (row) => row.values[index] }))],
    rows: spec.labels.map((label, index) => ({ label, values: spec.datasets.map((set) => set.data[index]) })),
  };
  const figure = h("figure", { class: "figure", id: spec.id },
    holder,
    h("figcaption", {}, spec.description),
    h("details", { class: "chart-figures" },
      h("summary", {}, `The figures in this chart as a table`),
      dataTable({ caption: spec.title, columns: table.columns, rows: table.rows, empty: "No data in this period." })));
  container.append(figure);
  const Chart = await chartLibrary();
  if (!Chart || !spec.labels.length) {
    holder.replaceChildren(h("p", { class: "chart-empty" },
      spec.labels.length ? "The chart could not be drawn; the figures are in the table below." : "No data in this period."));
    figure.querySelector("details").open = true;
    return figure;
  }
  const axisTicks = { color: "#1f2933", font: { size: 12 }, precision: 0 };
  if (spec.horizontal) holder.style.height = `${4 + 2.4 * spec.labels.length}rem`;
  new Chart(canvas, {
    type: "bar",
    data: {
      labels: spec.labels,
      datasets: spec.datasets.map((set, index) => ({
        label: set.label, data: set.data, backgroundColor: PALETTE[index % PALETTE.length],
        borderColor: "#ffffff", borderWidth: spec.stacked ? 1 : 0, maxBarThickness: 48,
      })),
    },
    options: {
      animation: false,
      maintainAspectRatio: false,
      indexAxis: spec.horizontal ? "y" : "x",
      plugins: {
        legend: { display: spec.datasets.length > 1, position: "bottom", labels: { color: "#1f2933" } },
        title: { display: false },
      },
      scales: {
        x: { stacked: Boolean(spec.stacked), ticks: axisTicks, grid: { color: "#d8dde3" }, beginAtZero: true },
        y: { stacked: Boolean(spec.stacked), ticks: axisTicks, grid: { color: "#d8dde3" }, beginAtZero: true },
      },
    },
  });
  return figure;
}
