// Supervisors' dashboard: payments over time, by channel, connector and agent, decline
// reasons and the funnels, from /api/v1/reports/summary. Charts are drawn with uPlot
// (vendored: uplot-1.6.32.iife.min.js, MIT, see uplot-LICENSE.txt); every chart has a
// table with the same numbers beside it, for screen readers and keyboards.

import { $, el, setText } from "./dom.js";
import { formatMoney, friendly } from "./text.js";

const CHANNEL_NAMES = {
  keypad: "Phone keypad",
  speech: "Phone speech",
  link: "Payment link",
  ivr: "Self-service (IVR)",
  stored_card: "Stored card",
};
const COLOURS = { authorized: "#1b7f3b", declined: "#b3261e", failed: "#8a5a00" };

function day(offset) {
  const moment = new Date();
  moment.setUTCHours(0, 0, 0, 0);
  moment.setUTCDate(moment.getUTCDate() + offset);
  return moment.toISOString().slice(0, 10);
}

function percent(rate) {
  return rate === null || rate === undefined ? "–" : `${(rate * 100).toFixed(1)}%`;
}

function amounts(values) {
  const listed = Object.entries(values ?? {}).map(([currency, sums]) =>
    formatMoney(sums.authorized, currency),
  );
  return listed.length ? listed.join(", ") : "–";
}

// A table: caption, column names, rows of cells.
function table(id, caption, head, rows) {
  return el(
    "table",
    { id, class: "report-table" },
    el("caption", {}, caption),
    el("thead", {}, el("tr", {}, head.map((name) => el("th", { scope: "col" }, name)))),
    el(
      "tbody",
      {},
      rows.length
        ? rows.map((cells) =>
            el(
              "tr",
              {},
              cells.map((cell, index) =>
                index === 0 ? el("th", { scope: "row" }, cell) : el("td", {}, cell),
              ),
            ),
          )
        : el("tr", {}, el("td", { colspan: head.length }, "No payments in this period.")),
    ),
  );
}

function outcomeRows(list, name) {
  return list.map((entry) => [
    name(entry),
    entry.payments,
    entry.authorized,
    entry.declined,
    entry.failed,
    percent(entry.approval_rate),
    amounts(entry.amounts),
  ]);
}

const OUTCOME_HEAD = ["Payments", "Approved", "Declined", "Failed", "Approval rate", "Approved amount"];

export class ReportsView {
  constructor(ctx) {
    this.ctx = ctx;
    this.chart = null;
    $("reports-from").value = day(-6);
    $("reports-to").value = day(0);
    $("reports-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.load();
    });
  }

  query() {
    const params = new URLSearchParams();
    const from = $("reports-from").value;
    const to = $("reports-to").value;
    if (from) params.set("from", `${from}T00:00:00Z`);
    if (to) {
      const end = new Date(`${to}T00:00:00Z`);
      end.setUTCDate(end.getUTCDate() + 1); // the whole last day
      params.set("to", end.toISOString());
    }
    for (const name of ["channel", "connector", "agent"]) {
      const value = $(`reports-${name}`).value;
      if (value) params.set(name, value);
    }
    const days = from && to ? (new Date(to) - new Date(from)) / 86_400_000 : 7;
    params.set("granularity", days <= 2 ? "hour" : "day");
    return params;
  }

  async load() {
    setText("reports-message", "Loading…");
    try {
      const summary = await this.ctx.api.get(`/api/v1/reports/summary?${this.query()}`);
      this.render(summary);
      setText("reports-message", "");
    } catch (problem) {
      setText("reports-message", friendly(problem));
    }
  }

  choices(select, values, current) {
    const first = select.options[0];
    select.replaceChildren(
      first,
      ...values.map(([value, name]) => el("option", { value, selected: value === current }, name)),
    );
  }

  render(summary) {
    const { totals, filters, choices } = summary;
    this.choices(
      $("reports-channel"),
      choices.channels.map((c) => [c, CHANNEL_NAMES[c] ?? c]),
      filters.channel,
    );
    this.choices($("reports-connector"), choices.connectors.map((c) => [c, c]), filters.connector);
    this.choices($("reports-agent"), choices.agents.map((a) => [a.id, a.name]), filters.agent);
    setText("reports-total-payments", String(totals.payments));
    setText("reports-total-approved", String(totals.authorized));
    setText("reports-total-declined", String(totals.declined + totals.failed));
    setText("reports-total-rate", percent(totals.approval_rate));
    setText("reports-total-amount", amounts(totals.amounts));
    this.drawSeries(summary);
    $("reports-tables").replaceChildren(
      table(
        "reports-series-table",
        "Payments per period",
        ["Period", ...OUTCOME_HEAD],
        outcomeRows(
          summary.series.filter((s) => s.payments),
          (s) => s.period.replace("T", " ").slice(0, summary.granularity === "day" ? 10 : 16),
        ),
      ),
      table(
        "reports-declines-table",
        "Decline reasons",
        ["Reason", "Outcome", "Payments"],
        summary.declines.map((d) => [d.code, d.outcome, d.count]),
      ),
      table(
        "reports-channels-table",
        "By channel",
        ["Channel", ...OUTCOME_HEAD],
        outcomeRows(summary.channels, (c) => CHANNEL_NAMES[c.channel] ?? c.channel),
      ),
      table(
        "reports-connectors-table",
        "By payment provider",
        ["Provider", "Payments", "Approved", "Approval rate", "Attempts", "Failovers", "Errors", "Mean latency"],
        summary.connectors.map((c) => [
          c.connector,
          c.payments,
          c.authorized,
          percent(c.approval_rate),
          c.attempts,
          c.failovers,
          c.errors,
          c.avg_latency_ms === null ? "–" : `${c.avg_latency_ms} ms`,
        ]),
      ),
      table(
        "reports-agents-table",
        "By agent",
        ["Agent", ...OUTCOME_HEAD],
        outcomeRows(summary.agents, (a) => a.agent),
      ),
      table(
        "reports-capture-table",
        "Capture funnel (by the hour the capture started)",
        ["Stage", "Captures"],
        [
          ...summary.capture_funnel.stages.map((s) => [s.stage, s.count]),
          ...summary.capture_funnel.abandoned.map((a) => [`abandoned on ${a.field}`, a.count]),
        ],
      ),
      table(
        "reports-link-table",
        "Link funnel",
        ["Stage", "Links"],
        summary.link_funnel.stages.map((s) => [s.stage, s.count]),
      ),
    );
  }

  drawSeries(summary) {
    const holder = $("reports-chart");
    const times = summary.series.map((s) => Date.parse(s.period) / 1000);
    const data = [times, ...["authorized", "declined", "failed"].map((o) => summary.series.map((s) => s[o]))];
    if (this.chart) this.chart.destroy();
    holder.replaceChildren();
    if (typeof window.uPlot !== "function") return; // the table says it all
    const width = Math.max(320, Math.min(holder.clientWidth || 900, 1200));
    this.chart = new window.uPlot(
      {
        width,
        height: 220,
        title: "Payments over time",
        series: [
          {},
          ...["authorized", "declined", "failed"].map((outcome) => ({
            label: outcome,
            stroke: COLOURS[outcome],
            width: 2,
          })),
        ],
        axes: [{}, { label: "payments" }],
      },
      data,
      holder,
    );
  }
}
