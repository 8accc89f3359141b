// Sending my call to a payment line (an IVR flow) and getting it back: the lines to
// choose from, "With the payment line: <stage>" while the customer is with it, and the
// outcome when the call returns. What comes by push (`ivr.step`) is stages, counts and
// the outcome (brand, last 4, confirmation number): never a key the customer pressed.

import { $, el, randomId, setText, show, sleep } from "./dom.js";
import { BRANDS, formatMoney, friendly } from "./text.js";

const STAGES = {
  greeting: "greeting the customer",
  account: "the customer is keying their account number",
  lookup: "looking up the account",
  opening: "getting ready for the card",
  card: "the customer is keying the card",
  confirm: "the customer is confirming the payment",
  paying: "sending the payment",
  retry: "the card was declined; the customer is choosing what to do",
  outcome: "telling the customer the outcome",
  goodbye: "returning the call to you",
};
const OUTCOMES = {
  paid: "Paid",
  declined: "Declined: no money was taken",
  failed: "The payment failed: no money was taken",
  abandoned: "The customer hung up before paying",
  too_many_attempts: "Too many attempts: no money was taken",
  account_not_found: "The account was not found: no money was taken",
  lookup_failed: "The account could not be looked up: no money was taken",
  unavailable: "The payment line was not available",
};
// ivr learns that the call is mine from the bus, a moment after the page may.
const PROJECTION_RETRY_MS = 3000;

export class Handover {
  constructor(desk) {
    this.desk = desk;
    this.lines = [];
    this.loading = null; // the lines are fetched when first needed
    this.session = null; // the latest ivr.step of my current call's handover
    $("handover").addEventListener("submit", (event) => {
      event.preventDefault();
      this.send();
    });
  }

  async loadLines() {
    this.loading = this.loading ?? Promise.resolve();
    try {
      this.lines = await this.desk.ctx.api.get("/api/v1/ivr/lines");
    } catch {
      this.lines = []; // no ivr service here: nothing to offer
    }
    $("handover-line").replaceChildren(
      ...this.lines.map((line) => el("option", { value: line.name }, line.name)),
    );
  }

  // The customer is with a payment line now: the start menu waits.
  away(callId) {
    return Boolean(this.session && this.session.call_id === callId && this.session.stage !== "ended");
  }

  async send() {
    const desk = this.desk;
    const body = { flow: $("handover-line").value };
    if ($("pay-amount").value.trim()) {
      // The amount typed in the start menu goes with the call; else the line's own.
      const read = desk.readStart();
      if (read.problem) {
        setText("handover-message", read.problem);
        $(read.focus).focus();
        return;
      }
      Object.assign(body, read.body);
    }
    const path = `/api/v1/calls/${encodeURIComponent(desk.callId)}/ivr`;
    const key = randomId();
    const deadline = Date.now() + PROJECTION_RETRY_MS;
    $("handover-submit").disabled = true;
    try {
      for (;;) {
        try {
          const session = await desk.ctx.api.postOnce(path, body, key);
          this.session = { ...session, session_id: session.id };
          break;
        } catch (problem) {
          const lagging = ["call_not_found", "not_your_call"].includes(problem.code);
          if (!lagging || Date.now() > deadline) throw problem;
          await sleep(150);
        }
      }
      setText("handover-message", "");
      $("pay-amount").value = "";
      $("pay-reference").value = "";
    } catch (problem) {
      setText("handover-message", friendly(problem));
    } finally {
      $("handover-submit").disabled = false;
    }
    desk.render();
  }

  step(data) {
    if (data.agent_id !== this.desk.me.id || data.call_id !== this.desk.callId) return;
    if (this.session && this.session.session_id !== data.session_id && data.stage !== "greeting") {
      return; // an older handover's late news
    }
    this.session = { ...data };
    if (data.stage === "ended") this.desk.ctx.notify("The call is back with you.");
    this.desk.render();
  }

  // `canSend`: the start menu is showing (a live call of mine, no payment open).
  render(canSend) {
    if (canSend && this.loading === null) {
      this.loading = this.loadLines().then(() => this.desk.render());
    }
    const session = this.session?.call_id === this.desk.callId ? this.session : null;
    const away = session && session.stage !== "ended";
    show("handover", canSend && !away && this.lines.length > 0);
    show("handover-status", Boolean(session));
    if (!session) return;
    if (away) {
      setText("handover-status", `With the payment line: ${STAGES[session.stage] ?? session.stage}`);
      return;
    }
    setText("handover-status", `Back from the payment line. ${this.outcomeText(session)}`);
  }

  outcomeText(session) {
    const said = OUTCOMES[session.outcome] ?? session.outcome ?? "";
    if (session.outcome !== "paid") return said;
    const exponent = this.desk.ctx.state.settings.exponents[session.currency] ?? 2;
    const parts = [said, formatMoney(session.amount, session.currency, exponent)];
    if (session.last4) parts.push(`${BRANDS[session.brand] ?? session.brand ?? "Card"} •••• ${session.last4}`);
    if (session.confirmation) parts.push(`confirmation ${session.confirmation}`);
    return parts.join(" · ");
  }
}
