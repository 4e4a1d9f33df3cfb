// The marketer's page: asks for the shop's API token once per tab, keeps it in
// sessionStorage (never in the URL), and draws the JSON of GET /v1/campaigns/crosssell/report.
"use strict";

const TOKEN_KEY = "loyalty-api-token";
const REPORT = "/v1/campaigns/crosssell/report";
const SVG = "http://www.w3.org/2000/svg";
const COLOURS = { nudged: "#1f6feb", held_out: "#d9822b" };
const LABELS = { nudged: "Nudged", held_out: "Held out" };

const $ = (id) => document.getElementById(id);
const number = (value) => value.toLocaleString("en-US");
const percent = (part, whole) => (whole ? `${((100 * part) / whole).toFixed(1)}%` : "–");
const points = (value) => `${value >= 0 ? "+" : ""}${(100 * value).toFixed(1)}`;

function upliftText(uplift) {
  if (uplift.conversion === null) return "–";
  const [low, high] = uplift.ci95;
  return `${points(uplift.conversion)} (${points(low)} to ${points(high)})`;
}

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text;
  row.appendChild(td);
}

function showSignIn(refused) {
  $("results").hidden = true;
  $("sign-in").hidden = false;
  $("refused").hidden = !refused;
  $("token").focus();
}

async function load() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) return showSignIn(false);
  const query = new URLSearchParams();
  for (const name of ["from", "to"]) if ($(name).value) query.set(name, $(name).value);
  $("status").textContent = "Loading…";
  const answer = await fetch(`${REPORT}?${query}`, {
    headers: { Authorization: `Bearer ${token}` }, cache: "no-store" });
  if (answer.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    return showSignIn(true);
  }
  $("sign-in").hidden = true;
  $("results").hidden = false;
  if (!answer.ok) {
    const body = await answer.json().catch(() => ({}));
    const problems = (body.detail || []).map((p) => `${p.field}: ${p.message}`).join("; ");
    $("status").textContent = `The server refused the range: ${problems || answer.status}`;
    return;
  }
  render(await answer.json());
}

function render(report) {
  $("from").value = report.from;
  $("to").value = report.to;
  const open = report.runs.filter((run) => !run.window_closed).length;
  $("status").textContent = `${report.runs.length} campaign day(s) from ${report.from} to ` +
    `${report.to}` + (open ? `; ${open} with the 72-hour window still open.` : ".");
  renderSummary(report);
  renderChart(report.runs);
  renderRuns(report.runs);
}

function renderSummary(report) {
  const { uplift, groups } = report;
  if (uplift.conversion === null) {
    $("uplift").textContent = "No uplift yet: it needs members in both groups.";
    $("uplift-meaning").textContent = "";
  } else {
    const [low, high] = uplift.ci95;
    $("uplift").textContent = `${upliftText(uplift)} percentage points; ` +
      `extra spend per nudged member ${number(uplift.extra_spend_per_nudged)} VND`;
    $("uplift-meaning").textContent = low > 0
      ? "The whole 95% interval is above 0: the nudge brings conversions beyond chance."
      : high < 0
        ? "The whole 95% interval is below 0: the nudged converted less than the held out."
        : "The 95% interval includes 0: not distinguishable from no effect yet.";
  }
  const rows = [
    ["Members", (g) => number(g.members)],
    ["Converted within 72 h", (g) => `${number(g.converted)} (${percent(g.converted, g.members)})`],
    ["Spend of those orders, VND", (g) => number(g.spend)],
    ["Reached the next tier within 72 h", (g) => number(g.reached_next_tier_72h)],
    ["… within the tag period", (g) => number(g.reached_next_tier_in_period)],
    ["Bonus points credited", (g) => number(g.bonus_credited)],
    ["Bonus points reversed", (g) => number(g.bonus_reversed)],
    ["Messages", (g) => Object.entries(g.messages).map(([s, n]) => `${s} ${n}`).join(", ") || "–"],
  ];
  const body = $("groups").tBodies[0];
  body.replaceChildren();
  for (const [label, value] of rows) {
    const row = body.insertRow();
    cell(row, label);
    cell(row, value(groups.nudged));
    cell(row, value(groups.held_out));
  }
}

function svg(name, attributes, parent) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
  if (parent) parent.appendChild(element);
  return element;
}

function renderChart(runs) {
  const width = 900, height = 260, left = 48, right = 16, top = 16, bottom = 40;
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img",
                             "aria-label": "Daily conversion, nudged against held out" });
  const rate = (run, group) =>
    run[group] ? run.groups[group].converted / run[group] : null;
  const highest = Math.max(0.1, ...runs.flatMap((run) =>
    ["nudged", "held_out"].map((group) => rate(run, group) || 0)));
  const ceiling = Math.ceil(highest * 10) / 10;
  const x = (i) => left + (runs.length < 2 ? (width - left - right) / 2
    : (i * (width - left - right)) / (runs.length - 1));
  const y = (value) => top + (1 - value / ceiling) * (height - top - bottom);
  for (let tick = 0; tick <= 4; tick += 1) {
    const value = (ceiling * tick) / 4;
    svg("line", { x1: left, x2: width - right, y1: y(value), y2: y(value), stroke: "#eee" },
        chart);
    svg("text", { x: left - 6, y: y(value) + 4, "text-anchor": "end" }, chart)
      .textContent = `${Math.round(value * 100)}%`;
  }
  const every = Math.max(1, Math.ceil(runs.length / 10));
  runs.forEach((run, i) => {
    if (i % every === 0 || i === runs.length - 1) {
      svg("text", { x: x(i), y: height - bottom + 16, "text-anchor": "middle" }, chart)
        .textContent = run.day.slice(5);
    }
  });
  for (const group of ["nudged", "held_out"]) {
    const placed = runs.map((run, i) => [run, i, rate(run, group)])
      .filter(([, , value]) => value !== null);
    svg("polyline", { class: `series ${group}`, fill: "none", stroke: COLOURS[group],
                      "stroke-width": 2,
                      points: placed.map(([, i, value]) => `${x(i)},${y(value)}`).join(" ") },
        chart);
    for (const [run, i, value] of placed) {
      const dot = svg("circle", { class: `point ${group}`, cx: x(i), cy: y(value), r: 4,
                                  stroke: COLOURS[group], "stroke-width": 2,
                                  fill: run.window_closed ? COLOURS[group] : "white" }, chart);
      svg("title", {}, dot).textContent =
        `${run.day} ${LABELS[group]}: ${percent(run.groups[group].converted, run[group])}`;
    }
  }
  ["nudged", "held_out"].forEach((group, n) => {
    const lx = left + 10 + n * 110;
    svg("rect", { x: lx, y: height - 14, width: 12, height: 4, fill: COLOURS[group] }, chart);
    svg("text", { x: lx + 18, y: height - 9 }, chart).textContent = LABELS[group];
  });
  $("chart").replaceChildren(chart);
}

function renderRuns(runs) {
  const body = $("runs").tBodies[0];
  body.replaceChildren();
  for (const run of runs) {
    const row = body.insertRow();
    cell(row, run.day);
    cell(row, number(run.selected));
    cell(row, number(run.nudged));
    cell(row, number(run.held_out));
    cell(row, percent(run.groups.nudged.converted, run.nudged));
    cell(row, percent(run.groups.held_out.converted, run.held_out));
    cell(row, upliftText(run.uplift));
    cell(row, run.uplift.extra_spend_per_nudged === null ? "–"
      : number(run.uplift.extra_spend_per_nudged));
    cell(row, !run.window_closed ? "open" : run.period_closed ? "closed"
      : "72 h closed, tag period open");
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value);
    $("token").value = "";
    load();
  });
  $("range-form").addEventListener("submit", (event) => {
    event.preventDefault();
    load();
  });
  $("forget").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    showSignIn(false);
  });
  load();
});
