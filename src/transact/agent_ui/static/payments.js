// Payments: the list (an agent's own, a supervisor's whole tenant), one payment's detail
// with its attempts, and refunds for supervisors after a confirmation.

import { $, el, setText, show, when } from "./dom.js";
import { BRANDS, STATUS_NAMES, declineReason, formatMoney, friendly, parseAmount } from "./text.js";

const REFUNDABLE = new Set(["authorized", "partially_refunded"]);

export class Payments {
  constructor(ctx) {
    this.ctx = ctx;
    this.shown = null; // the payment whose detail is on screen
    $("payments-filter").addEventListener("submit", (event) => {
      event.preventDefault();
      this.list();
    });
    $("refund-open").addEventListener("click", () => this.askRefund());
    $("refund-close").addEventListener("click", () => $("refund-dialog").close());
    $("refund-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.refund();
    });
  }

  money(minor, currency) {
    const exponent = this.ctx.state.settings?.exponents?.[currency] ?? 2;
    return formatMoney(minor, currency, exponent);
  }

  async list() {
    const query = new URLSearchParams({ limit: "100" });
    const status = $("payments-status").value;
    if (status) query.set("status", status);
    setText("payments-message", "");
    let payments = [];
    try {
      payments = await this.ctx.api.get(`/api/v1/payments?${query}`);
    } catch (problem) {
      setText("payments-message", friendly(problem));
    }
    $("payment-rows").replaceChildren(...payments.map((payment) => this.row(payment)));
    show("payments-empty", payments.length === 0);
  }

  row(payment) {
    const link = el("a", { href: `#/payments/${encodeURIComponent(payment.id)}` }, payment.reference);
    return el(
      "tr",
      { "data-payment": payment.id, "data-status": payment.status },
      el("td", {}, when(payment.created_at)),
      el("td", {}, link),
      el("td", { class: "number" }, this.money(payment.amount, payment.currency)),
      el("td", {}, maskedCard(payment.card)),
      el("td", {}, STATUS_NAMES[payment.status] ?? payment.status),
    );
  }

  async detail(id) {
    setText("payment-message", "");
    try {
      this.shown = await this.ctx.api.get(`/api/v1/payments/${encodeURIComponent(id)}`);
    } catch (problem) {
      this.shown = null;
      $("payment-facts").replaceChildren();
      $("attempt-rows").replaceChildren();
      setText("payment-message", friendly(problem));
      show("refund-open", false);
      return;
    }
    this.renderDetail();
    await this.attempts();
  }

  renderDetail() {
    const payment = this.shown;
    const outcome = payment.outcome ?? {};
    const facts = [
      ["Reference", payment.reference],
      ["Amount", this.money(payment.amount, payment.currency)],
      ["Status", STATUS_NAMES[payment.status] ?? payment.status],
      ["Channel", payment.channel === "link" ? "Payment link" : "Phone"],
      ["Card", maskedCard(payment.card, true)],
      ["Provider", outcome.connector ?? "–"],
      ["Provider reference", outcome.psp_reference ?? "–"],
      ["Taken by", payment.agent_id ? this.ctx.username(payment.agent_id) : "–"],
      ["Started", when(payment.created_at)],
    ];
    if (outcome.decline_code) facts.push(["Why declined", declineReason(outcome.decline_code)]);
    if (outcome.refunded) facts.push(["Refunded", this.money(outcome.refunded, payment.currency)]);
    $("payment-facts").replaceChildren(
      ...facts.map(([name, value]) => el("div", {}, el("dt", {}, name), el("dd", {}, value))),
    );
    setText("payment-title", `Payment ${payment.reference}`);
    show("refund-open", this.ctx.state.supervises && REFUNDABLE.has(payment.status));
  }

  async attempts() {
    const payment = this.shown;
    if (!this.ctx.state.supervises) {
      $("attempt-rows").replaceChildren();
      const count = payment.outcome?.attempts;
      setText("attempts-note", count ? `${count} attempt(s) with the payment provider.` : "None yet.");
      return;
    }
    try {
      const attempts = await this.ctx.api.get(
        `/api/v1/payments/${encodeURIComponent(payment.id)}/attempts`,
      );
      setText("attempts-note", attempts.length ? "" : "None yet.");
      $("attempt-rows").replaceChildren(
        ...attempts.map((attempt) =>
          el(
            "tr",
            {},
            el("td", {}, String(attempt.seq)),
            el("td", {}, `${attempt.connector} (${attempt.operation})`),
            el("td", {}, attempt.outcome),
            el("td", {}, attempt.decline_code ?? ""),
            el("td", {}, when(attempt.started_at)),
          ),
        ),
      );
    } catch (problem) {
      setText("attempts-note", friendly(problem));
    }
  }

  askRefund() {
    const payment = this.shown;
    const left = payment.amount - (payment.outcome?.refunded ?? 0);
    const exponent = this.ctx.state.settings?.exponents?.[payment.currency] ?? 2;
    setText(
      "refund-text",
      `Refund ${payment.reference} to the card ${maskedCard(payment.card)}? ` +
        `Up to ${this.money(left, payment.currency)} can be refunded. This cannot be undone.`,
    );
    $("refund-amount").value = (left / 10 ** exponent).toFixed(exponent);
    setText("refund-message", "");
    $("refund-dialog").showModal();
    $("refund-amount").focus();
  }

  async refund() {
    const payment = this.shown;
    const exponent = this.ctx.state.settings?.exponents?.[payment.currency] ?? 2;
    const amount = parseAmount($("refund-amount").value, exponent);
    if (amount === null) {
      setText("refund-message", "Enter the amount to refund, for example 12.50.");
      return;
    }
    $("refund-confirm").disabled = true;
    try {
      const left = payment.amount - (payment.outcome?.refunded ?? 0);
      const body = amount === left && !payment.outcome?.refunded ? {} : { amount };
      await this.ctx.api.postOnce(`/api/v1/payments/${encodeURIComponent(payment.id)}/refund`, body);
      $("refund-dialog").close();
      this.ctx.notify(`Refunded ${this.money(amount, payment.currency)}.`);
      // Card capture records the refund from the PSP adapter's event; show it once in.
      setTimeout(() => this.detail(payment.id), 500);
    } catch (problem) {
      setText("refund-message", friendly(problem));
    } finally {
      $("refund-confirm").disabled = false;
    }
  }

  changed(paymentId) {
    if (this.shown?.id === paymentId && !$("view-payment").hidden) this.detail(paymentId);
  }
}

function maskedCard(card, withBin = false) {
  if (!card) return "–";
  const brand = BRANDS[card.brand] ?? card.brand;
  return withBin ? `${brand} · ${card.bin}… •••• ${card.last4}` : `${brand} •••• ${card.last4}`;
}
