// The plan page: the form goes to GET /api/v1/plan (the model of `chunkcast plan`); the answer
// becomes a table of figures, each with its formula and inputs' sources, and a chart of the
// machines against the audience (plain SVG, drawn here).

import { api, clearError, showError } from "./api.js";

const SVG = "http://www.w3.org/2000/svg";
const form = document.getElementById("plan-form");
const errorBox = document.getElementById("plan-error");
const result = document.getElementById("plan-result");
const tbody = document.querySelector("#plan-table tbody");
const chart = document.getElementById("plan-chart");
const legend = document.getElementById("plan-chart-legend");
// The series of the chart: a key of each growth point, its label and colour.
const SERIES = [
  ["edge_nodes", "edge nodes", "#2563eb"],
  ["api_hosts", "API hosts", "#d32f2f"],
];

const params = new URLSearchParams(location.search);
for (const input of form.querySelectorAll("input[name]")) {
  if (params.has(input.name)) input.value = params.get(input.name);
}
if (params.has("viewers")) plan();

form.addEventListener("submit", (event) => {
  event.preventDefault();
  plan();
});

async function plan() {
  clearError(errorBox);
  const query = new URLSearchParams();
  for (const [name, value] of new FormData(form)) {
    if (String(value).trim()) query.set(name, String(value).trim());
  }
  history.replaceState(null, "", `?${query}`);
  try {
    const answer = await api(`/api/v1/plan?${query}`);
    renderTable(answer);
    renderChart(answer.growth);
    result.hidden = false;
  } catch (error) {
    result.hidden = true;
    showError(errorBox, error);
  }
}

/** "93.1 Tbps", "1,574 nodes": Gbps above 1,000 as Tbps, whole numbers with separators. */
export function amount(value, unit) {
  if (unit === "Gbps" && value >= 1000) {
    value /= 1000;
    unit = "Tbps";
  }
  const shown = Number.isInteger(value) || value >= 100
    ? value.toLocaleString("en", { maximumFractionDigits: 1 })
    : String(Number(value.toPrecision(3))); // as `chunkcast plan` prints it
  return `${shown} ${unit}`;
}

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function renderTable(answer) {
  tbody.replaceChildren();
  for (const [key, line] of Object.entries(answer)) {
    if (key === "growth") continue;
    const row = tbody.insertRow();
    row.dataset.key = key;
    cell(row, line.label);
    cell(row, amount(line.value, line.unit), "value");
    const how = cell(row, line.formula);
    const list = document.createElement("ul");
    for (const [name, input] of Object.entries(line.inputs)) {
      const item = document.createElement("li");
      item.textContent = `${name}: ${amount(input.value, input.unit)} (${input.source})`;
      list.append(item);
    }
    how.append(list);
    for (const [name, value] of Object.entries(line.parts)) {
      const part = tbody.insertRow();
      part.className = "part";
      cell(part, `  ${name.replaceAll("_", " ")}`);
      cell(part, amount(value, line.unit), "value");
      cell(part, "");
    }
  }
}

function node(name, attributes, text) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
  if (text !== undefined) element.textContent = text;
  return element;
}

function renderChart(growth) {
  const width = 640, height = 320, left = 60, right = 16, top = 16, bottom = 40;
  const maxX = Math.max(...growth.map((p) => p.viewers));
  const maxY = Math.max(1, ...growth.flatMap((p) => SERIES.map(([key]) => p[key])));
  const x = (v) => left + (v / maxX) * (width - left - right);
  const y = (v) => height - bottom - (v / maxY) * (height - top - bottom);
  chart.replaceChildren();
  chart.append(node("line", { class: "axis", x1: left, y1: y(0), x2: width - right, y2: y(0) }));
  chart.append(node("line", { class: "axis", x1: left, y1: y(0), x2: left, y2: top }));
  for (const fraction of [0, 0.5, 1]) {
    chart.append(node("text", { x: left - 6, y: y(maxY * fraction) + 4, "text-anchor": "end" },
      Math.round(maxY * fraction).toLocaleString("en")));
    const anchor = ["start", "middle", "end"][fraction * 2];
    chart.append(node("text", { x: x(maxX * fraction), y: height - bottom + 16,
      "text-anchor": anchor }, amount(Math.round(maxX * fraction), "viewers")));
  }
  chart.append(node("text", { x: width - right, y: height - 6, "text-anchor": "end" },
    "viewers at once"));
  chart.append(node("text", { x: left + 6, y: top + 4 }, "machines"));
  for (const [key, label, colour] of SERIES) {
    const points = [[0, 0], ...growth.map((p) => [p.viewers, p[key]])];
    chart.append(node("polyline", {
      points: points.map(([v, m]) => `${x(v).toFixed(1)},${y(m).toFixed(1)}`).join(" "),
      fill: "none", stroke: colour, "stroke-width": 2, "data-series": key,
    }));
    for (const [v, m] of points.slice(1)) {
      const dot = node("circle", { cx: x(v).toFixed(1), cy: y(m).toFixed(1), r: 3,
        fill: colour });
      dot.append(node("title", {}, `${amount(v, "viewers")}: ${m.toLocaleString("en")} ${label}`));
      chart.append(dot);
    }
  }
  const last = growth.at(-1);
  legend.textContent = SERIES.map(([key, label, colour]) =>
    `${label} (${colour === "#2563eb" ? "blue" : "red"}): ${last[key].toLocaleString("en")}`)
    .join("; ") + ` at ${amount(last.viewers, "viewers")}`;
}
